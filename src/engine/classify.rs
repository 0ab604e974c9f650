//! Byte classes as bitmasks: one pass over a line turns every byte into a
//! bit in each class mask it belongs to, 64 bytes to a `u64`, so the token
//! finders in `tokens.rs` find runs, dots and colons with bit operations
//! instead of a loop per byte (the approach of simdjson's structural index).
//!
//! Four classifiers give identical masks: AVX-512BW (64 bytes per step,
//! each class straight into a mask register) and AVX2 (32 bytes), chosen
//! at run time when the CPU has them, SSE2 (16 bytes, always present on
//! x86-64) and a portable table-driven one. The property tests in
//! `tokens.rs` hold them to that on random and real input at every
//! alignment.
//!
//! Invariants of [`LineMasks`] after [`LineMasks::classify`]:
//! - bit `i % 64` of word `i / 64` of a mask is set iff `line[i]` is in the
//!   class;
//! - bits at and past `line.len()` are clear in every mask, so a run never
//!   extends past the line and "the byte after the end" is in no class;
//! - every mask has `line.len().div_ceil(64) + 1` words, the last one zero,
//!   so a read of the word after any position's word needs no check of
//!   its own ([`super::bits::bits_from`]).

/// The classes the token finders need, as masks over one line.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct LineMasks {
    /// `[A-Za-z0-9_.-]`: host runs.
    pub host: Vec<u64>,
    /// `.`
    pub dot: Vec<u64>,
    /// `:`
    pub colon: Vec<u64>,
    /// `[0-9A-Fa-f:.]`: IPv6 runs.
    pub v6: Vec<u64>,
    /// `[A-Za-z0-9]`: hash runs.
    pub alnum: Vec<u64>,
    /// `[0-9A-Fa-f]`
    pub hex: Vec<u64>,
    /// `[A-Za-z0-9_]`: token boundaries.
    pub word: Vec<u64>,
    /// `@`: email tokens.
    pub at: Vec<u64>,
    /// `/`: with the colons, a URL's `://`.
    pub slash: Vec<u64>,
    /// `[0-9]`: IPv4 octets, numeric labels.
    pub digit: Vec<u64>,
    /// `\n`: the line ends of a block of lines.
    pub newline: Vec<u64>,
}

/// Which classifier computes the masks. All give identical masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classifier {
    /// A table lookup per byte; runs everywhere.
    Scalar,
    /// 16 bytes per step (x86-64 only).
    Sse2,
    /// 32 bytes per step (x86-64 CPUs with AVX2).
    Avx2,
    /// 64 bytes per step, each class straight into a mask register
    /// (x86-64 CPUs with AVX-512BW).
    Avx512,
}

impl Classifier {
    /// The fastest classifier this CPU supports.
    pub fn best() -> Classifier {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bw") {
                return Classifier::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Classifier::Avx2;
            }
            Classifier::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Classifier::Scalar
    }

    /// Every classifier this CPU can run (for the tests).
    pub fn available() -> Vec<Classifier> {
        let mut all = vec![Classifier::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Classifier::Sse2);
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Classifier::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512bw") {
                all.push(Classifier::Avx512);
            }
        }
        all
    }
}

/// Number of masks in [`LineMasks`].
const MASKS: usize = 11;

/// One 64-byte chunk's masks, in the field order of [`LineMasks`].
type Chunk = [u64; MASKS];

impl LineMasks {
    /// Empty masks; they grow to the longest line once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies `line` with the fastest classifier of this CPU.
    #[inline]
    pub fn classify(&mut self, line: &[u8]) {
        // std caches the CPU feature check: no need for our own.
        self.classify_with_ahead(line, &[], Classifier::best());
    }

    /// Classifies `line`, asking the CPU on the way to bring `ahead` (what
    /// will be classified next) into its L2 cache, a cache line for each
    /// chunk classified: by the time the caller has looked up this line's
    /// tokens, the next bytes are near. (The hardware prefetcher follows
    /// the classifier's sweep, not the token passes' scattered reads; and
    /// a burst of prefetches at once stalls the core instead.)
    #[inline]
    pub fn classify_ahead(&mut self, line: &[u8], ahead: &[u8]) {
        self.classify_with_ahead(line, ahead, Classifier::best());
    }

    /// Classifies `line` with `how`.
    ///
    /// # Panics
    /// When `how` is not in [`Classifier::available`].
    pub fn classify_with(&mut self, line: &[u8], how: Classifier) {
        self.classify_with_ahead(line, &[], how);
    }

    fn classify_with_ahead(&mut self, line: &[u8], ahead: &[u8], how: Classifier) {
        let words = line.len().div_ceil(64);
        for m in self.masks_mut() {
            // Every word is written below; a shorter line only shortens it.
            m.resize(words + 1, 0);
            m[words] = 0;
        }
        let out = self.masks_mut();
        match how {
            Classifier::Scalar => fill!(line, ahead, out, chunk_scalar),
            #[cfg(target_arch = "x86_64")]
            Classifier::Sse2 => fill!(line, ahead, out, chunk_sse2),
            #[cfg(target_arch = "x86_64")]
            Classifier::Avx2 => {
                assert!(std::arch::is_x86_feature_detected!("avx2"));
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { fill_avx2(line, ahead, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Classifier::Avx512 => {
                assert!(std::arch::is_x86_feature_detected!("avx512bw"));
                // SAFETY: the CPU has AVX-512BW (checked above).
                unsafe { fill_avx512(line, ahead, out) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => panic!("{how:?} needs x86-64"),
        }
    }

    fn masks_mut(&mut self) -> [&mut Vec<u64>; MASKS] {
        [
            &mut self.host,
            &mut self.dot,
            &mut self.colon,
            &mut self.v6,
            &mut self.alnum,
            &mut self.hex,
            &mut self.word,
            &mut self.digit,
            &mut self.at,
            &mut self.slash,
            &mut self.newline,
        ]
    }
}

/// Runs a chunk classifier over `line` into the masks `out` (each
/// `line.len().div_ceil(64) + 1` words, the last one left as it is). A macro so the classifier inlines into
/// the loop, in the AVX2 case inside a function compiled for AVX2.
macro_rules! fill {
    ($line:expr, $ahead:expr, $out:expr, $chunk:expr) => {{
        let (line, ahead, mut out): (&[u8], &[u8], [&mut Vec<u64>; MASKS]) = ($line, $ahead, $out);
        let ahead_lines = ahead.len().div_ceil(64);
        // The masks' pointers, taken once: indexing `out` in the loop
        // reloads each Vec's pointer before each store (two loads a mask).
        let ptrs: [*mut u64; MASKS] = std::array::from_fn(|k| out[k].as_mut_ptr());
        let mut chunks = line.chunks_exact(64);
        let mut w = 0;
        for c in &mut chunks {
            if w < ahead_lines {
                prefetch(ahead, w * 64);
            }
            let c = $chunk(c.try_into().expect("64 bytes"));
            for k in 0..MASKS {
                // SAFETY: every mask was resized to `line.len().div_ceil(64)`
                // words and more, and `w` counts the full chunks, fewer.
                unsafe { *ptrs[k].add(w) = c[k] };
            }
            w += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Zero padding: NUL is in no class, so bits past the end stay clear.
            let mut pad = [0u8; 64];
            pad[..rest.len()].copy_from_slice(rest);
            let c = $chunk(&pad);
            for k in 0..MASKS {
                out[k][w] = c[k];
            }
        }
    }};
}
use fill;

/// Asks the CPU to bring the cache line of `bytes[at]` into its L2 cache.
#[inline(always)]
fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults; the pointer is
    // inside `bytes`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(bytes[at..].as_ptr() as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(line: &[u8], ahead: &[u8], out: [&mut Vec<u64>; MASKS]) {
    fill!(line, ahead, out, chunk_avx2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn fill_avx512(line: &[u8], ahead: &[u8], out: [&mut Vec<u64>; MASKS]) {
    fill!(line, ahead, out, chunk_avx512)
}

const HOST: u16 = 1;
const DOT: u16 = 2;
const COLON: u16 = 4;
const V6: u16 = 8;
const ALNUM: u16 = 16;
const HEX: u16 = 32;
const WORD: u16 = 64;
const DIGIT: u16 = 128;
const AT: u16 = 256;
const SLASH: u16 = 512;
const NEWLINE: u16 = 1024;

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        if c.is_ascii_alphanumeric() {
            f |= HOST | ALNUM | WORD;
        }
        if c.is_ascii_hexdigit() {
            f |= HEX | V6;
        }
        if c.is_ascii_digit() {
            f |= DIGIT;
        }
        match c {
            b'_' => f |= HOST | WORD,
            b'-' => f |= HOST,
            b'.' => f |= HOST | DOT | V6,
            b':' => f |= COLON | V6,
            b'@' => f |= AT,
            b'/' => f |= SLASH,
            b'\n' => f |= NEWLINE,
            _ => {}
        }
        t[i] = f;
        i += 1;
    }
    t
}

static TABLE: [u16; 256] = table();

#[inline(always)]
fn chunk_scalar(bytes: &[u8; 64]) -> Chunk {
    let mut out = [0u64; MASKS];
    for (g, eight) in bytes.chunks_exact(8).enumerate() {
        // Eight bytes' class bits as an 8x8 bit matrix (row = byte), then
        // transposed (Hacker's Delight 7-3) so that row k holds class k's
        // bits for the eight bytes.
        let mut x = 0u64;
        for (j, &b) in eight.iter().enumerate() {
            x |= u64::from(TABLE[b as usize] as u8) << (8 * j);
            // The classes past the matrix's eight, one bit each.
            let high = TABLE[b as usize] >> 8;
            for k in 0..MASKS - 8 {
                out[8 + k] |= u64::from(high >> k & 1) << (8 * g + j);
            }
        }
        let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
        x ^= t ^ (t << 7);
        let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
        x ^= t ^ (t << 14);
        let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
        x ^= t ^ (t << 28);
        for (k, w) in out.iter_mut().take(8).enumerate() {
            *w |= (x >> (8 * k) & 0xff) << (8 * g);
        }
    }
    out
}

/// The class vectors of one SIMD register of bytes, built from the same
/// few range tests on both widths, given that width's intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! classes {
    ($x:expr, $set1:ident, $or:ident, $sub:ident, $min:ident, $eq:ident, $mask:ident) => {{
        let x = $x;
        // t <= hi - lo (unsigned) after t = x - lo (wrapping): lo <= x <= hi.
        // Macros, not closures: a closure would not inherit the caller's
        // target features and would not inline into the AVX2 body.
        macro_rules! range {
            ($v:expr, $lo:expr, $hi:expr) => {{
                let t = $sub($v, $set1($lo as i8));
                $eq($min(t, $set1(($hi - $lo) as i8)), t)
            }};
        }
        macro_rules! m {
            ($v:expr) => {
                $mask($v) as u32 as u64
            };
        }
        let lower = $or(x, $set1(0x20));
        let digit = m!(range!(x, b'0', b'9'));
        let alpha = m!(range!(lower, b'a', b'z'));
        let hexalpha = m!(range!(lower, b'a', b'f'));
        let dot = m!($eq(x, $set1(b'.' as i8)));
        let colon = m!($eq(x, $set1(b':' as i8)));
        let under = m!($eq(x, $set1(b'_' as i8)));
        let hyphen = m!($eq(x, $set1(b'-' as i8)));
        let at = m!($eq(x, $set1(b'@' as i8)));
        let slash = m!($eq(x, $set1(b'/' as i8)));
        let newline = m!($eq(x, $set1(b'\n' as i8)));
        // Combined as integers: OR-ing the compare vectors first makes LLVM
        // scalarise them byte by byte (measured 10x slower).
        let alnum = alpha | digit;
        let hex = hexalpha | digit;
        let word = alnum | under;
        [
            word | dot | hyphen,
            dot,
            colon,
            hex | colon | dot,
            alnum,
            hex,
            word,
            digit,
            at,
            slash,
            newline,
        ]
    }};
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn chunk_sse2(bytes: &[u8; 64]) -> Chunk {
    use std::arch::x86_64::*;
    let mut out = [0u64; MASKS];
    for q in 0..4 {
        // SAFETY: SSE2 is part of x86-64; the load reads 16 of the 64 bytes.
        let bits = unsafe {
            let x = _mm_loadu_si128(bytes.as_ptr().add(q * 16) as *const __m128i);
            classes!(
                x,
                _mm_set1_epi8,
                _mm_or_si128,
                _mm_sub_epi8,
                _mm_min_epu8,
                _mm_cmpeq_epi8,
                _mm_movemask_epi8
            )
        };
        for (w, b) in out.iter_mut().zip(bits) {
            *w |= b << (q * 16);
        }
    }
    out
}

// AVX2 classifies with two nibble lookups (`vpshufb`), as simdjson does:
// each byte's class bits are lo[byte & 15] & hi[byte >> 4], where every bit
// below is a product of a set of low nibbles and a set of high nibbles.
// (The range compares of the SSE2 path, OR-ed as vectors or as masks, make
// LLVM rebuild the vectors byte by byte under AVX2: 4x slower than SSE2.)
const N_DIGIT: u8 = 1; // hi 3, lo 0-9
const N_A_O: u8 = 2; // hi 4 and 6, lo 1-F
const N_P_Z: u8 = 4; // hi 5 and 7, lo 0-A
const N_HEXL: u8 = 8; // hi 4 and 6, lo 1-6
const N_DOT: u8 = 16; // 0x2E
const N_HYPHEN: u8 = 32; // 0x2D
const N_COLON: u8 = 64; // 0x3A
const N_UNDER: u8 = 128; // 0x5F

const fn nibble_lo() -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut l = 0;
    while l < 16 {
        let mut f = 0;
        if l <= 9 {
            f |= N_DIGIT;
        }
        if l >= 1 {
            f |= N_A_O;
        }
        if l <= 0xA {
            f |= N_P_Z;
        }
        if l >= 1 && l <= 6 {
            f |= N_HEXL;
        }
        f |= match l {
            0xE => N_DOT,
            0xD => N_HYPHEN,
            0xA => N_COLON,
            0xF => N_UNDER,
            _ => 0,
        };
        t[l] = f;
        l += 1;
    }
    t
}

const NIBBLE_LO: [u8; 16] = nibble_lo();
const NIBBLE_HI: [u8; 16] = [
    0,
    0,
    N_DOT | N_HYPHEN,
    N_DIGIT | N_COLON,
    N_A_O | N_HEXL,
    N_P_Z | N_UNDER,
    N_A_O | N_HEXL,
    N_P_Z,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// The nibble bits of each mask, in the order of [`Chunk`] (the last three,
/// `@`, `/` and `\n`, are single bytes compared directly).
const NIBBLE_CLASSES: [u8; 8] = [
    N_DIGIT | N_A_O | N_P_Z | N_UNDER | N_DOT | N_HYPHEN,
    N_DOT,
    N_COLON,
    N_DIGIT | N_HEXL | N_COLON | N_DOT,
    N_DIGIT | N_A_O | N_P_Z,
    N_DIGIT | N_HEXL,
    N_DIGIT | N_A_O | N_P_Z | N_UNDER,
    N_DIGIT,
];

/// The classes found by comparing bytes, after [`NIBBLE_CLASSES`].
const SINGLE_BYTES: [(usize, u8); 3] = [(8, b'@'), (9, b'/'), (10, b'\n')];

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn chunk_avx2(bytes: &[u8; 64]) -> Chunk {
    use std::arch::x86_64::*;
    let table = |t: &[u8; 16]| {
        let lane = _mm_loadu_si128(t.as_ptr() as *const __m128i);
        _mm256_broadcastsi128_si256(lane)
    };
    let (lo_t, hi_t) = (table(&NIBBLE_LO), table(&NIBBLE_HI));
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let mut out = [0u64; MASKS];
    for half in 0..2 {
        let x = _mm256_loadu_si256(bytes.as_ptr().add(half * 32) as *const __m256i);
        let lo = _mm256_shuffle_epi8(lo_t, _mm256_and_si256(x, low));
        let hi = _mm256_shuffle_epi8(hi_t, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
        let class = _mm256_and_si256(lo, hi);
        for (w, k) in out.iter_mut().zip(NIBBLE_CLASSES) {
            let none = _mm256_cmpeq_epi8(_mm256_and_si256(class, _mm256_set1_epi8(k as i8)), zero);
            *w |= u64::from(!(_mm256_movemask_epi8(none) as u32)) << (half * 32);
        }
        for (k, byte) in SINGLE_BYTES {
            let eq = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(byte as i8));
            out[k] |= u64::from(_mm256_movemask_epi8(eq) as u32) << (half * 32);
        }
    }
    out
}

/// The same nibble lookups as [`chunk_avx2`] on all 64 bytes at once; each
/// class is one `vptestmb` straight into a 64-bit mask register, with no
/// movemask, shift or OR to assemble it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
unsafe fn chunk_avx512(bytes: &[u8; 64]) -> Chunk {
    use std::arch::x86_64::*;
    let table = |t: &[u8; 16]| {
        let lane = _mm_loadu_si128(t.as_ptr() as *const __m128i);
        _mm512_broadcast_i32x4(lane)
    };
    let (lo_t, hi_t) = (table(&NIBBLE_LO), table(&NIBBLE_HI));
    let low = _mm512_set1_epi8(0x0f);
    let x = _mm512_loadu_si512(bytes.as_ptr() as *const __m512i);
    let lo = _mm512_shuffle_epi8(lo_t, _mm512_and_si512(x, low));
    let hi = _mm512_shuffle_epi8(hi_t, _mm512_and_si512(_mm512_srli_epi16(x, 4), low));
    let class = _mm512_and_si512(lo, hi);
    let mut out = [0u64; MASKS];
    for (w, k) in out.iter_mut().zip(NIBBLE_CLASSES) {
        *w = _mm512_test_epi8_mask(class, _mm512_set1_epi8(k as i8));
    }
    for (k, byte) in SINGLE_BYTES {
        out[k] = _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(byte as i8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(line: &[u8], class: impl Fn(u8) -> bool) -> Vec<u64> {
        let mut m = vec![0u64; line.len().div_ceil(64) + 1];
        for (i, &c) in line.iter().enumerate() {
            if class(c) {
                m[i / 64] |= 1 << (i % 64);
            }
        }
        m
    }

    #[test]
    fn every_byte_value_in_every_lane() {
        // Each byte value at each position of a 64-byte chunk, and a tail.
        for shift in 0..64usize {
            let line: Vec<u8> = (0..=255u8).cycle().skip(shift).take(256 + shift).collect();
            let want = [
                reference(&line, |c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)),
                reference(&line, |c| c == b'.'),
                reference(&line, |c| c == b':'),
                reference(&line, |c| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
                reference(&line, |c| c.is_ascii_alphanumeric()),
                reference(&line, |c| c.is_ascii_hexdigit()),
                reference(&line, |c| c.is_ascii_alphanumeric() || c == b'_'),
                reference(&line, |c| c.is_ascii_digit()),
                reference(&line, |c| c == b'@'),
                reference(&line, |c| c == b'/'),
                reference(&line, |c| c == b'\n'),
            ];
            for how in Classifier::available() {
                let mut m = LineMasks::new();
                m.classify_with(&line, how);
                let got = [
                    &m.host, &m.dot, &m.colon, &m.v6, &m.alnum, &m.hex, &m.word, &m.digit, &m.at,
                    &m.slash, &m.newline,
                ];
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(*g, w, "{how:?} mask {k} shift {shift}");
                }
            }
        }
    }
}
