//! Questions about bitmasks over a line or window (bit `i % 64` of word
//! `i / 64` stands for byte `i`), as the token finders ask them: the next
//! or previous set bit, the run of set bits around one, a count.
//!
//! Each answers from the word holding the position when it can, which on
//! log text is nearly always (runs are short); crossing words is a cold
//! path of its own, so the hot loops that inline these stay small.
//!
//! Invariant relied on: bits past the end of the line are clear (the
//! classifier guarantees it), so a run never extends past the line.

/// Bit `i` of a mask.
#[inline(always)]
pub fn bit(m: &[u64], i: usize) -> bool {
    m.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
}

/// Sets bit `i` of a mask (which must hold it).
#[inline(always)]
pub fn set(m: &mut [u64], i: usize) {
    m[i / 64] |= 1 << (i % 64);
}

/// The 64 bits of `m` from position `p` on (zero past the end). Two
/// loads and shifts: masks end in a zero word, so the word after `p`'s
/// nearly always exists, and the shift in two steps needs no case for
/// `p % 64 == 0`.
#[inline(always)]
pub fn bits_from(m: &[u64], p: usize) -> u64 {
    let (w, b) = (p / 64, p % 64);
    let lo = m.get(w).copied().unwrap_or(0);
    let hi = m.get(w + 1).copied().unwrap_or(0);
    lo >> b | hi << 1 << (63 - b)
}

/// The first set bit at or after `from`.
#[inline(always)]
pub fn next_set(m: &[u64], from: usize) -> Option<usize> {
    let w = from / 64;
    let x = *m.get(w)? & (u64::MAX << (from % 64));
    if x != 0 {
        return Some(w * 64 + x.trailing_zeros() as usize);
    }
    next_set_after_word(m, w)
}

#[cold]
fn next_set_after_word(m: &[u64], w: usize) -> Option<usize> {
    let (i, x) = m.iter().enumerate().skip(w + 1).find(|(_, &x)| x != 0)?;
    Some(i * 64 + x.trailing_zeros() as usize)
}

/// The last set bit before `before`.
#[inline(always)]
pub fn prev_set(m: &[u64], before: usize) -> Option<usize> {
    if before == 0 {
        return None;
    }
    let last = before - 1;
    let w = last / 64;
    let x = m[w] & (u64::MAX >> (63 - last % 64));
    if x != 0 {
        return Some(w * 64 + 63 - x.leading_zeros() as usize);
    }
    prev_set_before_word(m, w)
}

#[cold]
fn prev_set_before_word(m: &[u64], w: usize) -> Option<usize> {
    let (i, x) = m[..w].iter().enumerate().rev().find(|(_, &x)| x != 0)?;
    Some(i * 64 + 63 - x.leading_zeros() as usize)
}

/// Start of the run of set bits holding bit `at` (which is set).
#[inline(always)]
pub fn run_start(m: &[u64], at: usize) -> usize {
    let w = at / 64;
    // Clear bits below `at`, as positions: the highest one is the run's edge.
    let gaps = !m[w] & ((1u64 << (at % 64)) - 1);
    if gaps != 0 {
        return w * 64 + 64 - gaps.leading_zeros() as usize;
    }
    run_start_before_word(m, w)
}

#[cold]
fn run_start_before_word(m: &[u64], w: usize) -> usize {
    match m[..w]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, &x)| x != u64::MAX)
    {
        Some((i, x)) => i * 64 + 64 - (!x).leading_zeros() as usize,
        None => 0,
    }
}

/// End (exclusive) of the run of set bits holding bit `at` (which is set).
#[inline(always)]
pub fn run_end(m: &[u64], at: usize) -> usize {
    let w = at / 64;
    let gaps = !m[w] & (u64::MAX << (at % 64) << 1);
    if gaps != 0 {
        return w * 64 + gaps.trailing_zeros() as usize;
    }
    run_end_after_word(m, w)
}

#[cold]
fn run_end_after_word(m: &[u64], w: usize) -> usize {
    match m
        .iter()
        .enumerate()
        .skip(w + 1)
        .find(|(_, &x)| x != u64::MAX)
    {
        Some((i, x)) => i * 64 + (!x).trailing_zeros() as usize,
        None => m.len() * 64,
    }
}

/// Number of set bits in `[s, e)`.
#[inline(always)]
pub fn count(m: &[u64], s: usize, e: usize) -> usize {
    if s >= e {
        return 0;
    }
    let (ws, we) = (s / 64, (e - 1) / 64);
    let lo = u64::MAX << (s % 64);
    let hi = u64::MAX >> (63 - (e - 1) % 64);
    if ws == we {
        return (m[ws] & lo & hi).count_ones() as usize;
    }
    let mut n = (m[ws] & lo).count_ones() + (m[we] & hi).count_ones();
    for &w in &m[ws + 1..we] {
        n += w.count_ones();
    }
    n as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        // Runs: [3, 70), [130, 192) (ends at a word boundary), [200, 201).
        let mut m = vec![0u64; 4];
        for i in (3..70).chain(130..192).chain(200..201) {
            m[i / 64] |= 1 << (i % 64);
        }
        for (at, s, e) in [(3, 3, 70), (64, 3, 70), (69, 3, 70), (130, 130, 192)] {
            assert_eq!((run_start(&m, at), run_end(&m, at)), (s, e), "{at}");
        }
        assert_eq!((run_start(&m, 191), run_end(&m, 191)), (130, 192));
        assert_eq!((run_start(&m, 200), run_end(&m, 200)), (200, 201));
        assert_eq!(next_set(&m, 0), Some(3));
        assert_eq!(next_set(&m, 70), Some(130));
        assert_eq!(next_set(&m, 192), Some(200));
        assert_eq!(next_set(&m, 201), None);
        assert_eq!(prev_set(&m, 201), Some(200));
        assert_eq!(prev_set(&m, 200), Some(191));
        assert_eq!(prev_set(&m, 130), Some(69));
        assert_eq!(prev_set(&m, 3), None);
        assert_eq!(prev_set(&m, 0), None);
        assert_eq!(next_set(&m, 400), None);
        assert_eq!(count(&m, 0, 256), 67 + 62 + 1);
        assert_eq!(count(&m, 60, 140), 10 + 10);
        assert_eq!(count(&m, 5, 5), 0);
        let full = vec![u64::MAX; 2];
        assert_eq!((run_start(&full, 100), run_end(&full, 100)), (0, 128));
        assert!(bit(&m, 3) && !bit(&m, 2) && !bit(&m, 10_000));
        let mut s = vec![0u64; 2];
        set(&mut s, 0);
        set(&mut s, 127);
        assert_eq!(s, [1, 1 << 63]);
    }

    #[test]
    fn every_question_at_every_position_against_a_byte_loop() {
        // Runs of every length at every offset across three words.
        let mut seed = 7u64;
        for _ in 0..200 {
            let mut m = vec![0u64; 3];
            for w in m.iter_mut() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Long runs and gaps: a random word smeared.
                *w = seed | seed >> 1 | seed >> 3;
                if seed.is_multiple_of(5) {
                    *w = u64::MAX;
                }
            }
            let n = 192;
            let set = |i: usize| i < n && m[i / 64] >> (i % 64) & 1 == 1;
            for i in 0..n {
                assert_eq!(next_set(&m, i), (i..n).find(|&j| set(j)), "next {i}");
                assert_eq!(prev_set(&m, i), (0..i).rev().find(|&j| set(j)), "prev {i}");
                let from: u64 = (0..64).filter(|&k| set(i + k)).map(|k| 1 << k).sum();
                assert_eq!(bits_from(&m, i), from, "bits_from {i}");
                if set(i) {
                    let s = (0..=i).rev().take_while(|&j| set(j)).last().unwrap();
                    let e = (i..n).take_while(|&j| set(j)).last().unwrap() + 1;
                    assert_eq!((run_start(&m, i), run_end(&m, i)), (s, e), "run {i}");
                }
            }
        }
    }
}
