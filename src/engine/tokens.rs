//! The byte scanner: cuts a line into the token kinds of `MATCHING.md`.
//!
//! Each function walks the line once for its kind and calls `visit` with the
//! token's byte range (and decoded value where that is cheap); nothing here
//! allocates or knows about indicators. Lines are bytes: invalid UTF-8 and
//! NUL are ordinary non-token bytes.
//!
//! Boundary rules, in short (see `MATCHING.md` for the full text):
//! - IPv4: four 1-3 digit octets, no leading zero, <= 255; not preceded by
//!   `[A-Za-z0-9_.]`; not followed by `[A-Za-z0-9_]` nor by `.` + one of those.
//! - IPv6: a maximal run of `[0-9A-Fa-f:.]` (trailing dots dropped) with two or
//!   more colons, not touching `[A-Za-z0-9_]`, that parses strictly.
//! - Host: a maximal run of `[A-Za-z0-9_.-]`, dots and hyphens trimmed at both
//!   ends, holding a dot.
//! - URL: `scheme://` (scheme not preceded by a letter or digit) up to
//!   whitespace, a quote, `<`, `>` or a backtick, trailing `.,;:!?)]}` dropped.
//! - Email: `local@host`, local of `[A-Za-z0-9._%+-]` not preceded by one.
//! - Hash: a maximal `[A-Za-z0-9]` run, all hex, of 32, 40, 64 or 128.

use std::net::Ipv6Addr;

use super::bits::{bit, bits_from, count, next_set, prev_set, run_end, run_start};
use super::classify::LineMasks;

const HOST: u8 = 1; // [A-Za-z0-9_.-]
const WORD: u8 = 2; // [A-Za-z0-9_]
const ALNUM: u8 = 4; // [A-Za-z0-9]
const HEX: u8 = 8; // [0-9A-Fa-f]
const LOCAL: u8 = 16; // [A-Za-z0-9._%+-]
const V6: u8 = 32; // [0-9A-Fa-f:.]
const SCHEME: u8 = 64; // [A-Za-z0-9+.-]
const URL_END: u8 = 128; // whitespace (Python's bytes \s), " ' < > `

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alpha = c.is_ascii_alphabetic();
        let digit = c.is_ascii_digit();
        let hex = c.is_ascii_hexdigit();
        let mut f = 0;
        if alpha || digit {
            f |= HOST | WORD | ALNUM | LOCAL | SCHEME;
        }
        if hex {
            f |= HEX | V6;
        }
        match c {
            b'_' => f |= HOST | WORD | LOCAL,
            b'.' => f |= HOST | LOCAL | V6 | SCHEME,
            b'-' => f |= HOST | LOCAL | SCHEME,
            b'%' => f |= LOCAL,
            b'+' => f |= LOCAL | SCHEME,
            b':' => f |= V6,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'"' | b'\'' | b'<' | b'>' | b'`' => {
                f |= URL_END
            }
            _ => {}
        }
        t[i] = f;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

#[inline(always)]
fn is(c: u8, class: u8) -> bool {
    CLASS[c as usize] & class != 0
}

/// The maximal run of `class` bytes around `line[at]` (which is one).
#[cfg(test)]
#[inline(always)]
fn run_around(line: &[u8], at: usize, class: u8) -> (usize, usize) {
    let mut s = at;
    while s > 0 && is(line[s - 1], class) {
        s -= 1;
    }
    let mut e = at + 1;
    while e < line.len() && is(line[e], class) {
        e += 1;
    }
    (s, e)
}

/// Calls `visit(start, end)` for every maximal run of host bytes
/// `[A-Za-z0-9_.-]` that holds a dot: the only runs that can hold host
/// tokens. Runs come from the masks of the line (`classify.rs`), with no
/// byte of the line looked at: adding the dot bits to the host bits makes
/// each dot's carry run to the end of its run and stop on the clear bit
/// past it, so `(host + dot) & !host` marks the end of every dotted run at
/// once (a second dot in a run adds onto a bit the first one's carry
/// cleared, and stays inside the run); the carry out of a word goes on
/// into the next.
#[inline]
pub fn dotted_runs(m: &LineMasks, mut visit: impl FnMut(usize, usize)) {
    dotted_run_ends(m, |e| visit(run_start(&m.host, e - 1), e));
}

/// Calls `visit(end)` with the end of every maximal run of host bytes
/// that holds a dot, as [`dotted_runs`] finds them, without their starts:
/// most runs are ruled out from their last label alone
/// ([`host_token_from_end`]).
#[inline]
pub fn dotted_run_ends(m: &LineMasks, mut visit: impl FnMut(usize)) {
    let mut carry = false;
    for (w, (&host, &dot)) in m.host.iter().zip(&m.dot).enumerate() {
        let (sum, c1) = host.overflowing_add(dot);
        let (sum, c2) = sum.overflowing_add(u64::from(carry));
        carry = c1 | c2;
        let mut ends = sum & !host;
        while ends != 0 {
            visit(w * 64 + ends.trailing_zeros() as usize);
            ends &= ends - 1;
        }
    }
}

/// The host token of the dotted run ending at `end`, as [`host_token`]
/// gives it, when `wanted(label, token_end)` says so, given where the
/// token's last label starts and where it ends: the run's start, and
/// whether the token holds a dot at all, are found only for tokens the
/// caller wants (a TLD it has).
#[inline]
pub fn host_token_from_end(
    m: &LineMasks,
    end: usize,
    wanted: impl FnOnce(usize, usize) -> bool,
) -> Option<(usize, usize)> {
    // Trailing dots and hyphens trimmed: the token ends after its last
    // word byte (perhaps before the run, which then holds no token).
    let te = if bit(&m.word, end - 1) {
        end
    } else {
        prev_set(&m.word, end)? + 1
    };
    // The run holds a dot, so one comes before any word byte it ends with.
    let last_dot = prev_set(&m.dot, te)?;
    if !wanted(last_dot + 1, te) {
        return None;
    }
    let ts = next_set(&m.word, run_start(&m.host, end - 1))?;
    (ts < te && last_dot > ts).then_some((ts, te))
}

/// The host token of a host run: dots and hyphens trimmed, `None` without a
/// dot. The trimmed ends are the first and last word bytes of the run.
#[inline]
pub fn host_token(m: &LineMasks, start: usize, end: usize) -> Option<(usize, usize)> {
    // Most runs start and end with a word byte: nothing to trim, and an
    // untrimmed run from `dotted_runs` holds its dot.
    if bit(&m.word, start) && bit(&m.word, end - 1) {
        return Some((start, end));
    }
    let s = next_set(&m.word, start).filter(|&s| s < end)?;
    let e = prev_set(&m.word, end).expect("the run holds a word byte at s") + 1;
    (s == start && e == end || count(&m.dot, s, e) > 0).then_some((s, e))
}

/// IPv4 tokens: `visit(addr, start, end)`. A token can start only at a
/// digit whose previous byte is not `[A-Za-z0-9_.]` (the start of a host
/// run, or after a hyphen inside one) and with a dot one to three bytes on;
/// those bits are found a word at a time, so numbers, timestamps and words
/// cost a few bit operations per 64 bytes and no parse.
///
/// `wanted(top)` is asked with an address's first two octets (`a << 8 |
/// b`) once they are known to be valid; when it says no (no indicator can
/// be in that /16: the addresses of a network's own hosts, typically),
/// the rest is not parsed and the token not visited.
#[inline]
pub fn ipv4_tokens(
    line: &[u8],
    m: &LineMasks,
    wanted: impl Fn(u32) -> bool,
    mut visit: impl FnMut(u32, usize, usize),
) {
    let mut prev_top = 0u64; // whether the last byte of the word before is a word byte or dot
    for w in 0..m.digit.len() {
        let joins = m.word[w] | m.dot[w];
        let after_boundary = !(joins << 1 | prev_top);
        prev_top = joins >> 63;
        let (dot, next) = (m.dot[w], m.dot.get(w + 1).copied().unwrap_or(0));
        let dot_near = dot >> 1 | next << 63 | dot >> 2 | next << 62 | dot >> 3 | next << 61;
        let mut starts = m.digit[w] & after_boundary & dot_near;
        while starts != 0 {
            let p = w * 64 + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            if let Some((addr, e)) = ipv4_at(line, m, p, &wanted) {
                visit(addr, p, e);
            }
        }
    }
}

/// Parses the IPv4 token starting at `p` (a digit at a token boundary) and
/// checks what follows it. Returns the address and the token's end.
///
/// The shape is judged on the masks: the first three dots give the
/// octets' lengths, and every other byte before the end must be a digit.
/// The values come from the bytes, each octet at once (masked, its digits
/// aligned, weighted). Nothing branches on a byte or an octet's length,
/// so addresses of any mix of lengths cost the same and mispredict at
/// most once, on whether this is an address at all.
#[inline]
fn ipv4_at(
    line: &[u8],
    m: &LineMasks,
    p: usize,
    wanted: impl Fn(u32) -> bool,
) -> Option<(u32, usize)> {
    let digits = bits_from(&m.digit, p);
    let dots = bits_from(&m.dot, p);
    let d1 = dots.trailing_zeros() as usize;
    let rest = dots & dots.wrapping_sub(1);
    let d2 = rest.trailing_zeros() as usize;
    let d3 = (rest & rest.wrapping_sub(1)).trailing_zeros() as usize;
    // Three octets of at most three digits and their dots end by 11.
    if d3 > 11 {
        return None;
    }
    let l4 = (!(digits >> (d3 + 1))).trailing_zeros() as usize;
    let lens = [d1, d2 - d1 - 1, d3 - d2 - 1, l4];
    // Each octet 1 to 3 digits (four in a row: no octet ends there).
    if lens.iter().any(|&l| l.wrapping_sub(1) >= 3) {
        return None;
    }
    let end = d3 + 1 + l4;
    let span = (1u64 << end) - 1;
    // Not followed by a word byte, nor by a dot and a word byte.
    let word = bits_from(&m.word, p);
    let followed = word >> end & 1 != 0 || (dots >> end & 1 != 0 && word >> (end + 1) & 1 != 0);
    if (digits | dots) & span != span || followed {
        return None;
    }
    // Four bytes at each octet's start (at most 12 in), read in place when
    // the line runs on for 16 bytes, else from a padded copy.
    let mut pad = [0u8; 16];
    let bytes: &[u8; 16] = match line.get(p..p + 16) {
        Some(b) => b.try_into().expect("16 bytes"),
        None => {
            pad[..line.len() - p].copy_from_slice(&line[p..]);
            &pad
        }
    };
    // An octet's value, and whether it is out of range or has a leading 0.
    let octet = |at: usize, len: usize| {
        let at = at.min(12);
        let x = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        // The octet's digits as values, moved so the last is the third byte.
        let keep = u32::MAX >> (32 - 8 * len);
        let d = ((x & keep) - (0x3030_3030 & keep)) << (8 * (3 - len));
        let v = (d & 0xff) * 100 + (d >> 8 & 0xff) * 10 + (d >> 16 & 0xff);
        (v, v > 255 || (len > 1) & (x & 0xff == u32::from(b'0')))
    };
    let ((a, bad_a), (b, bad_b)) = (octet(0, lens[0]), octet(d1 + 1, lens[1]));
    if bad_a || bad_b || !wanted(a << 8 | b) {
        return None;
    }
    let ((c, bad_c), (d, bad_d)) = (octet(d2 + 1, lens[2]), octet(d3 + 1, lens[3]));
    (!(bad_c || bad_d)).then_some((a << 24 | b << 16 | c << 8 | d, p + end))
}

/// Hash tokens: maximal alphanumeric runs that are all hex and of a digest
/// length. `visit(start, end)`.
///
/// Every such run is at least 32 bytes long: a word of the alphanumeric
/// mask is looked at only when a run of 32 set bits starts in it (found by
/// shifting and AND-ing the word with the next), so ordinary text costs a
/// few bit operations per 64 bytes.
#[inline]
pub fn hash_tokens(m: &LineMasks, mut visit: impl FnMut(usize, usize)) {
    let mut from = 0;
    for w in 0..m.alnum.len() {
        let next = m.alnum.get(w + 1).copied().unwrap_or(0);
        // A hash is a run of 32 hex digits or more, and any 32 bits in a
        // row hold a whole aligned 16-bit chunk: one starting in this word
        // makes one of its four chunks all hex, or the next word's first.
        // Without (nearly every word of text, CamelCase names and ids
        // included), no hash starts here. A chunk is all hex when it is
        // zero in `!hex`: the has-a-zero-lane test, four operations.
        const LOW: u64 = 0x0001_0001_0001_0001;
        const HIGH: u64 = 0x8000_8000_8000_8000;
        let hex = m.hex[w];
        let full_chunk = (!hex).wrapping_sub(LOW) & hex & HIGH != 0;
        let next_hex = m.hex.get(w + 1).copied().unwrap_or(0);
        if !full_chunk && next_hex & 0xffff != 0xffff {
            continue;
        }
        let mut r = u128::from(m.alnum[w]) | u128::from(next) << 64;
        // Bit i stays set iff bits i..i+32 are all set.
        for k in [1, 2, 4, 8, 16] {
            r &= r >> k;
        }
        let mut starts = r as u64;
        if from > w * 64 {
            // Starts inside the run measured from the word before.
            starts &= u64::MAX.checked_shl((from - w * 64) as u32).unwrap_or(0);
        }
        while starts != 0 {
            let i = w * 64 + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            if i < from {
                continue; // inside the run already measured
            }
            let (s, e) = (run_start(&m.alnum, i), run_end(&m.alnum, i));
            from = e;
            // The run's other starts in this word are inside it.
            starts &= u64::MAX.checked_shl((e - w * 64) as u32).unwrap_or(0);
            if matches!(e - s, 32 | 40 | 64 | 128) && count(&m.hex, s, e) == e - s {
                visit(s, e);
            }
        }
    }
}

/// IPv6 tokens: `visit(addr, start, end)`. Runs come from the colon and
/// `[0-9A-Fa-f:.]` masks, and only runs that can parse are parsed.
#[inline]
pub fn ipv6_tokens(line: &[u8], m: &LineMasks, mut visit: impl FnMut(Ipv6Addr, usize, usize)) {
    let n = line.len();
    let mut from = 0;
    for w in 0..m.colon.len() {
        let c = m.colon[w];
        if c == 0 {
            continue;
        }
        // An address's groups hold at most four hex digits, so its first
        // colon has another within five bytes, and is followed by a hex
        // digit or a colon: only such colons start a look (JSON's `":"`
        // and a `key: value` have neither).
        let v6_after = m.v6[w] >> 1 | m.v6.get(w + 1).copied().unwrap_or(0) << 63;
        if c & v6_after == 0 {
            continue;
        }
        let next = m.colon.get(w + 1).copied().unwrap_or(0);
        let mut near = 0;
        for k in 1..=5 {
            near |= c >> k | next << (64 - k);
        }
        let mut cands = c & near & v6_after;
        while cands != 0 {
            let colon = w * 64 + cands.trailing_zeros() as usize;
            cands &= cands - 1;
            if colon < from {
                continue; // inside the run already looked at
            }
            let (s, e) = (run_start(&m.v6, colon), run_end(&m.v6, colon));
            from = e;
            let mut te = e;
            while te > s && line[te - 1] == b'.' {
                te -= 1;
            }
            let before_ok = s == 0 || !bit(&m.word, s - 1);
            let after_ok = te >= n || !bit(&m.word, te);
            if before_ok && after_ok && te - s >= 2 && may_be_ipv6(m, s, te) {
                if let Some(addr) = crate::indicator::canon::parse_ipv6(&line[s..te]) {
                    visit(addr, s, te);
                }
            }
        }
    }
}

/// Whether `[s, e)` can be an IPv6 address for its colons: one holds `::`
/// or six colons or more (eight groups, or six and an IPv4 address).
/// Times (`15:04:10.500`) and MAC addresses have neither, and are never
/// handed to the parser.
#[inline]
fn may_be_ipv6(m: &LineMasks, s: usize, e: usize) -> bool {
    if e - s > 64 {
        return true; // longer than any address: the parser says no
    }
    let colons = bits_from(&m.colon, s) & (u64::MAX >> (64 - (e - s)));
    colons & colons >> 1 != 0 || colons.count_ones() >= 6
}

/// URL tokens: `visit(start, end)`. Each `://` is a colon bit with slash
/// bits after it in the masks.
#[inline]
pub fn url_tokens(line: &[u8], m: &LineMasks, mut visit: impl FnMut(usize, usize)) {
    let mut last_end = 0;
    let seps = |w: usize, colons: u64| {
        let (sl, next) = (m.slash[w], m.slash.get(w + 1).copied().unwrap_or(0));
        colons & (sl >> 1 | next << 63) & (sl >> 2 | next << 62)
    };
    for_each_bit(&m.colon, seps, |sep| {
        if let Some((start, end)) = url_at(line, sep, &mut last_end) {
            visit(start, end);
        }
    });
}

/// The URL token around the `://` at `sep`, if one starts there; `last_end`
/// is where the previous URL's scan stopped, moved past this one's.
#[inline]
fn url_at(line: &[u8], sep: usize, last_end: &mut usize) -> Option<(usize, usize)> {
    if sep < *last_end {
        return None; // inside the previous URL
    }
    // The scheme is the leftmost start in the run of scheme bytes before
    // `://` that begins with a letter and is not preceded by a letter or
    // digit (only `+`, `.` or `-` can precede it inside the run).
    let mut run = sep;
    while run > *last_end && is(line[run - 1], SCHEME) {
        run -= 1;
    }
    let start = (run..sep)
        .find(|&s| line[s].is_ascii_alphabetic() && (s == 0 || !is(line[s - 1], ALNUM)))?;
    let mut end = sep + 3;
    while end < line.len() && !is(line[end], URL_END) {
        end += 1;
    }
    *last_end = end;
    while end > sep + 3
        && matches!(
            line[end - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b']' | b'}'
        )
    {
        end -= 1;
    }
    Some((start, end))
}

/// Email tokens: `visit(start, at, end)` with `line[at] == b'@'`; the host
/// part `[at + 1, end)` still holds the dots and hyphens to trim.
#[inline]
pub fn email_tokens(line: &[u8], m: &LineMasks, mut visit: impl FnMut(usize, usize, usize)) {
    let mut last_end = 0;
    for_each_bit(
        &m.at,
        |_, ats| ats,
        |at| {
            if let Some((s, e)) = email_at(line, at, &mut last_end) {
                visit(s, at, e);
            }
        },
    );
}

/// The email token around the `@` at `at`, if there is one; `last_end` is
/// the end of the previous email, moved to this one's.
#[inline]
fn email_at(line: &[u8], at: usize, last_end: &mut usize) -> Option<(usize, usize)> {
    if at < *last_end {
        return None;
    }
    let mut s = at;
    while s > 0 && is(line[s - 1], LOCAL) {
        s -= 1;
    }
    // The local part must start at a boundary, not inside the previous match.
    if s == at || s < *last_end {
        return None;
    }
    let mut e = at + 1;
    while e < line.len() && is(line[e], HOST) {
        e += 1;
    }
    if e == at + 1 {
        return None;
    }
    *last_end = e;
    Some((s, e))
}

/// Calls `f(position)` for each set bit of `select(word_index, word)` over
/// the words of `mask`, in order.
#[inline(always)]
fn for_each_bit(mask: &[u64], select: impl Fn(usize, u64) -> u64, mut f: impl FnMut(usize)) {
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = select(w, word);
        while bits != 0 {
            f(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// Decodes the first 16 hex digits of a hash token into a u64 (its key).
///
/// Eight digits at a time, without a branch per digit: a hex digit's value
/// is its low nibble, plus 9 for a letter (bit 6 set), and the nibbles are
/// then gathered in order by three shift-and-mask steps.
#[inline]
pub fn hex_prefix(h: &[u8]) -> u64 {
    let half = |b: &[u8]| -> u64 {
        let x = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        // One nibble a byte, the first digit in the lowest byte.
        let v = (x & 0x0f0f_0f0f_0f0f_0f0f) + (x >> 6 & 0x0101_0101_0101_0101) * 9;
        // Pairs, then quads, then the eight: earlier digits to the top.
        let v = (v << 4 | v >> 8) & 0x00ff_00ff_00ff_00ff;
        let v = (v << 8 | v >> 16) & 0x0000_ffff_0000_ffff;
        (v << 16 | v >> 32) & 0xffff_ffff
    };
    half(&h[..8]) << 32 | half(&h[8..16])
}

/// The byte-at-a-time token finders the masks replaced: the reference the
/// property tests hold every classifier's tokens to.
#[cfg(test)]
mod reference {
    use super::*;

    /// The host token of a host run: dots and hyphens trimmed, `None` without a dot.
    #[inline]
    pub(super) fn host_token(line: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
        let (mut s, mut e) = (start, end);
        while s < e && matches!(line[s], b'.' | b'-') {
            s += 1;
        }
        while e > s && matches!(line[e - 1], b'.' | b'-') {
            e -= 1;
        }
        // An untrimmed run from `dotted_runs` holds its dot: no need to look.
        (s == start && e == end || line[s..e].contains(&b'.')).then_some((s, e))
    }

    // The candidates as the byte loops found them (`memmem`, `memchr`);
    // what a candidate is, is shared with the mask finders.
    pub(super) fn url_tokens(line: &[u8], mut visit: impl FnMut(usize, usize)) {
        let mut last_end = 0;
        for sep in memchr::memmem::find_iter(line, b"://") {
            if let Some((s, e)) = url_at(line, sep, &mut last_end) {
                visit(s, e);
            }
        }
    }

    pub(super) fn email_tokens(line: &[u8], mut visit: impl FnMut(usize, usize, usize)) {
        let mut last_end = 0;
        for at in memchr::memchr_iter(b'@', line) {
            if let Some((s, e)) = email_at(line, at, &mut last_end) {
                visit(s, at, e);
            }
        }
    }

    /// Parses the IPv4 token starting at `p` byte by byte: the reference
    /// [`ipv4_at`] is held to.
    pub(super) fn parse_ipv4(line: &[u8], p: usize) -> Option<(u32, usize)> {
        let n = line.len();
        let mut i = p;
        let mut addr = 0u32;
        for octet in 0..4 {
            let s = i;
            let mut v = 0u32;
            while i < n && line[i].is_ascii_digit() {
                if i - s == 3 {
                    return None; // four digits: no octet ends here
                }
                v = v * 10 + (line[i] - b'0') as u32;
                i += 1;
            }
            let len = i - s;
            if len == 0 || v > 255 || (len > 1 && line[s] == b'0') {
                return None;
            }
            addr = addr << 8 | v;
            if octet < 3 {
                if i >= n || line[i] != b'.' {
                    return None;
                }
                i += 1;
            }
        }
        if i < n {
            let c = line[i];
            if is(c, WORD) || (c == b'.' && i + 1 < n && is(line[i + 1], WORD)) {
                return None;
            }
        }
        Some((addr, i))
    }

    /// IPv4 tokens inside the host run `[start, end)`: `visit(addr, start, end)`.
    #[inline]
    pub(super) fn ipv4_in_run(
        line: &[u8],
        start: usize,
        end: usize,
        mut visit: impl FnMut(u32, usize, usize),
    ) {
        if end - start < 7 {
            return;
        }
        // A token starts where the previous byte is not [A-Za-z0-9_.]: at the
        // run's start or right after a hyphen inside it.
        let mut p = start;
        while p < end {
            if line[p].is_ascii_digit() {
                if let Some((addr, e)) = parse_ipv4(line, p) {
                    visit(addr, p, e);
                }
            }
            match line[p..end].iter().position(|&c| c == b'-') {
                Some(d) => p += d + 1,
                None => return,
            }
        }
    }

    /// Calls `visit(start, end)` for every maximal run of host bytes
    /// `[A-Za-z0-9_.-]` that holds a dot: the only runs that can hold host and
    /// IPv4 tokens. Runs are found from their dots with a SIMD `memchr`, so the
    /// bytes between dotted runs are never looked at one by one.
    #[inline]
    pub(super) fn dotted_runs(line: &[u8], mut visit: impl FnMut(usize, usize)) {
        let mut next = 0;
        for dot in memchr::memchr_iter(b'.', line) {
            if dot < next {
                continue; // inside the run already visited
            }
            let (s, e) = run_around(line, dot, HOST);
            next = e;
            visit(s, e);
        }
    }

    /// Hash tokens: maximal alphanumeric runs that are all hex and of a digest
    /// length. `visit(start, end)`.
    ///
    /// Every such run is at least 32 bytes long, so it covers a position that
    /// is a multiple of 16 holding a hex digit: only those positions are looked
    /// at, and the run around one is expanded only when it is hex.
    #[inline]
    pub(super) fn hash_tokens(line: &[u8], mut visit: impl FnMut(usize, usize)) {
        const STRIDE: usize = 16;
        let n = line.len();
        let mut i = 0;
        while i < n {
            if !is(line[i], HEX) {
                i += STRIDE;
                continue;
            }
            let (s, e) = run_around(line, i, ALNUM);
            if matches!(e - s, 32 | 40 | 64 | 128) && line[s..e].iter().all(|&c| is(c, HEX)) {
                visit(s, e);
            }
            i = e.next_multiple_of(STRIDE).max(i + STRIDE);
        }
    }

    /// IPv6 tokens: `visit(addr, start, end)`. Cost is proportional to the runs
    /// around each colon, so lines without `:` cost one memchr.
    #[inline]
    pub(super) fn ipv6_tokens(line: &[u8], mut visit: impl FnMut(Ipv6Addr, usize, usize)) {
        let n = line.len();
        let mut next = 0;
        for colon in memchr::memchr_iter(b':', line) {
            if colon < next {
                continue;
            }
            let mut s = colon;
            while s > 0 && is(line[s - 1], V6) {
                s -= 1;
            }
            let mut e = colon + 1;
            let mut colons = 1;
            while e < n && is(line[e], V6) {
                colons += (line[e] == b':') as u32;
                e += 1;
            }
            next = e;
            if colons < 2 {
                continue;
            }
            let mut te = e;
            while te > s && line[te - 1] == b'.' {
                te -= 1;
            }
            let before_ok = s == 0 || !is(line[s - 1], WORD);
            let after_ok = te >= n || !is(line[te], WORD);
            if before_ok && after_ok && te - s >= 2 {
                if let Some(addr) = crate::indicator::canon::parse_ipv6(&line[s..te]) {
                    visit(addr, s, te);
                }
            }
        }
    }
}

/// Every token the mask-driven finders give for `line`, in one list.
#[cfg(test)]
fn all_tokens(line: &[u8], m: &LineMasks) -> Vec<(&'static str, usize, usize)> {
    let mut out = Vec::new();
    dotted_runs(m, |s, e| {
        out.push(("run", s, e));
        if let Some((s, e)) = host_token(m, s, e) {
            out.push(("host", s, e));
        }
    });
    // The same host tokens found from the runs' ends.
    let mut from_ends = Vec::new();
    dotted_run_ends(m, |e| {
        if let Some((s, e)) = host_token_from_end(m, e, |label, end| {
            assert!(label < end && bit(&m.dot, label - 1));
            true
        }) {
            from_ends.push(("host", s, e));
        }
    });
    let hosts: Vec<_> = out.iter().filter(|t| t.0 == "host").copied().collect();
    assert_eq!(from_ends, hosts, "host tokens from the runs' ends");
    ipv4_tokens(
        line,
        m,
        |_| true,
        |a, s, e| {
            out.push(("ipv4", s, e));
            out.push(("ipv4 value", a as usize, s));
        },
    );
    hash_tokens(m, |s, e| out.push(("hash", s, e)));
    ipv6_tokens(line, m, |_, s, e| out.push(("ipv6", s, e)));
    url_tokens(line, m, |s, e| out.push(("url", s, e)));
    email_tokens(line, m, |s, a, e| out.push(("email", s, e + a - a)));
    out
}

#[cfg(test)]
mod tests {
    use super::super::classify::Classifier;
    use super::*;

    fn masks(line: &[u8]) -> LineMasks {
        let mut m = LineMasks::new();
        m.classify(line);
        m
    }

    fn ipv4s(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let m = masks(line.as_bytes());
        ipv4_tokens(
            line.as_bytes(),
            &m,
            |_| true,
            |a, ts, te| {
                assert_eq!(std::net::Ipv4Addr::from(a).to_string(), &line[ts..te]);
                out.push(line[ts..te].to_owned())
            },
        );
        out
    }

    #[test]
    fn ipv4_boundaries() {
        let cases: &[(&str, &[&str])] = &[
            ("conn from 1.2.3.4 to 10.0.0.1", &["1.2.3.4", "10.0.0.1"]),
            (
                "dst=1.2.3.4:443 1.2.3.4/24 (1.2.3.4) ip=1.2.3.4",
                &["1.2.3.4", "1.2.3.4", "1.2.3.4", "1.2.3.4"],
            ),
            ("::ffff:1.2.3.4 blocked 1.2.3.4.", &["1.2.3.4", "1.2.3.4"]),
            (
                "v1.2.3.4 1.2.3.4.5 Chrome/1.2.3.4.12 4.3.2.1.in-addr.arpa",
                &[],
            ),
            (
                "11.2.3.45 01.2.3.4 1.2.3.04 1.2.3.400 1.2.3.4567 1234.1.1.1",
                &["11.2.3.45"],
            ),
            (
                "a-1.2.3.4-b x_1.2.3.4 1.2.3.4_x 1.2.3.4..5",
                &["1.2.3.4", "1.2.3.4"],
            ),
            (
                "0.0.0.0 255.255.255.255 256.1.1.1",
                &["0.0.0.0", "255.255.255.255"],
            ),
        ];
        for (line, want) in cases {
            assert_eq!(ipv4s(line), *want, "{line}");
        }
    }

    fn hosts(line: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let m = masks(line.as_bytes());
        dotted_runs(&m, |s, e| {
            if let Some((s, e)) = host_token(&m, s, e) {
                out.push(&line[s..e]);
            }
        });
        out
    }

    #[test]
    fn host_boundaries() {
        assert_eq!(hosts("query www.EVIL.com. A"), ["www.EVIL.com"]);
        assert_eq!(
            hosts("evil.com-login.net -x.y- nodot"),
            ["evil.com-login.net", "x.y"]
        );
        assert_eq!(
            hosts("https://cdn.evil.com:8443/x.js bob@evil.com"),
            ["cdn.evil.com", "x.js", "evil.com"]
        );
    }

    fn v6(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        ipv6_tokens(line.as_bytes(), &masks(line.as_bytes()), |a, _, _| {
            out.push(a.to_string())
        });
        out
    }

    #[test]
    fn ipv6_boundaries() {
        assert_eq!(
            v6("[2001:db8::1]:443 fe80::1%eth0"),
            ["2001:db8::1", "fe80::1"]
        );
        assert_eq!(
            v6("v6 2001:0DB8:0000:0000:0000:0000:0000:0001."),
            ["2001:db8::1"]
        );
        assert_eq!(
            v6("at 10:22:33 mac 00:1a:2b:3c:4d:5e x2001:db8::1 2001:db8::1g"),
            Vec::<String>::new()
        );
        assert_eq!(v6("src ::ffff:1.2.3.4 ok"), ["::ffff:1.2.3.4"]);
    }

    fn urls(line: &str) -> Vec<&str> {
        let mut out = Vec::new();
        url_tokens(line.as_bytes(), &masks(line.as_bytes()), |s, e| {
            out.push(&line[s..e])
        });
        out
    }

    #[test]
    fn url_boundaries() {
        assert_eq!(
            urls("see (http://bad.example/dl/a.exe)."),
            ["http://bad.example/dl/a.exe"]
        );
        assert_eq!(
            urls("u=\"https://a.example/x?y=http://b.example/\" z"),
            ["https://a.example/x?y=http://b.example/"]
        );
        assert_eq!(
            urls("xhttp://a.example 1http://b.example +http://c.example"),
            ["xhttp://a.example", "http://c.example"]
        );
        assert_eq!(
            urls("<ftp://a.example/p>,hxxp://b.example/q."),
            ["ftp://a.example/p", "hxxp://b.example/q"]
        );
    }

    fn emails(line: &str) -> Vec<&str> {
        let mut out = Vec::new();
        email_tokens(line.as_bytes(), &masks(line.as_bytes()), |s, _, e| {
            out.push(&line[s..e])
        });
        out
    }

    #[test]
    fn email_boundaries() {
        assert_eq!(
            emails("from PHISH@bad.example, to a.b+c@x.y"),
            ["PHISH@bad.example", "a.b+c@x.y"]
        );
        assert_eq!(emails("x@a.b@c.d @nolocal a@"), ["x@a.b"]);
    }

    #[test]
    fn hash_runs() {
        let line = "md5=D41D8CD98F00B204E9800998ECF8427E x d41d8cd98f00b204e9800998ecf8427e0 zd41d8cd98f00b204e9800998ecf8427e";
        let mut out = Vec::new();
        hash_tokens(&masks(line.as_bytes()), |s, e| out.push(&line[s..e]));
        assert_eq!(out, ["D41D8CD98F00B204E9800998ECF8427E"]);
        // At every offset against the sampling stride, and at the line's ends.
        let h = "3395856ce81f2b7382dee72602f798b642f14140";
        for pad in 0..40 {
            let cases = [
                (format!("{}{h}", "x".repeat(pad)), pad == 0),
                (format!("{}-{h}-g", " ".repeat(pad)), true),
                (format!("{}{h}0", "y".repeat(pad)), false),
            ];
            for (line, hit) in cases {
                let mut got = Vec::new();
                hash_tokens(&masks(line.as_bytes()), |s, e| {
                    got.push(line[s..e].to_owned())
                });
                assert_eq!(got, if hit { vec![h.to_owned()] } else { vec![] }, "{line}");
            }
        }
        assert_eq!(hex_prefix(b"d41d8cd98f00b204"), 0xd41d8cd98f00b204);
        // Every digit, in either case, at every place.
        let digits = b"0123456789abcdefABCDEF";
        for (i, _) in digits.iter().enumerate() {
            let h: Vec<u8> = (0..16)
                .map(|k| digits[(i + k * 7) % digits.len()])
                .collect();
            let want = h.iter().fold(0u64, |v, &c| {
                v << 4 | (c as char).to_digit(16).unwrap() as u64
            });
            assert_eq!(hex_prefix(&h), want, "{}", String::from_utf8_lossy(&h));
        }
    }

    /// The byte loops' tokens for `line`, in the order of [`all_tokens`].
    fn reference_tokens(line: &[u8]) -> Vec<(&'static str, usize, usize)> {
        let mut out = Vec::new();
        reference::dotted_runs(line, |s, e| {
            out.push(("run", s, e));
            if let Some((s, e)) = reference::host_token(line, s, e) {
                out.push(("host", s, e));
            }
            reference::ipv4_in_run(line, s, e, |a, s, e| {
                out.push(("ipv4", s, e));
                out.push(("ipv4 value", a as usize, s));
            });
        });
        reference::hash_tokens(line, |s, e| out.push(("hash", s, e)));
        reference::ipv6_tokens(line, |_, s, e| out.push(("ipv6", s, e)));
        reference::url_tokens(line, |s, e| out.push(("url", s, e)));
        reference::email_tokens(line, |s, a, e| out.push(("email", s, e + a - a)));
        out
    }

    /// Every classifier of this CPU gives the reference's tokens for `line`.
    fn same_tokens(line: &[u8]) {
        // The finders visit their kinds in their own orders: compare sets.
        let mut want = reference_tokens(line);
        want.sort_unstable();
        for how in Classifier::available() {
            let mut m = LineMasks::new();
            m.classify_with(line, how);
            let mut got = all_tokens(line, &m);
            got.sort_unstable();
            assert_eq!(got, want, "{how:?} on {:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn every_token_kind_at_every_alignment() {
        let kinds = [
            "1.2.3.4",
            "evil.example.com",
            "d41d8cd98f00b204e9800998ecf8427e",
            "3395856ce81f2b7382dee72602f798b642f14140",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fe80::1%eth0",
            "10.0.0.1-192.168.1.1",
        ];
        for kind in kinds {
            for pad in 0..130 {
                for (before, after) in [(" ", " "), ("x", ""), ("\"", "\":"), (".", ".x")] {
                    let line = format!("{}{before}{kind}{after} tail", "a".repeat(pad));
                    same_tokens(line.as_bytes());
                }
            }
        }
    }

    #[test]
    fn real_logs_give_the_reference_tokens() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/logs");
        if !root.is_dir() {
            let why = "../shared/data/logs not found";
            assert!(
                std::env::var("IOCD_REQUIRE_SERVERS").as_deref() != Ok("1"),
                "{why}"
            );
            eprintln!("SKIPPED: real-log token test: {why}");
            return;
        }
        let (mut dirs, mut lines) = (vec![root], 0);
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("logs dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let data = std::fs::read(&path).expect("log");
                for line in data.split(|&c| c == b'\n').take(2_000) {
                    same_tokens(line);
                    lines += 1;
                }
            }
        }
        assert!(lines > 1_000, "{lines} lines");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]
        #[test]
        fn random_bytes_give_the_reference_tokens(
            line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            same_tokens(&line);
        }

        #[test]
        fn token_alphabet_gives_the_reference_tokens(
            line in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefABCxyz.:-_ \"@/".to_vec()), 0..400),
        ) {
            same_tokens(&line);
        }
    }
}
