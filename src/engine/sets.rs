//! Exact sets: fixed-size keys (an IPv4 or IPv6 address, or a 64-bit
//! fingerprint of a text value) mapped to the indicators with that key.
//!
//! Invariants: a key maps to the head of a chain of indicator ids threaded
//! through the engine's `next` array; fingerprint keys may collide, so the
//! caller verifies each id against the token (addresses need no check).
//! Only lookups are attacker-controlled (log tokens); the table's layout is
//! fixed by the indicators, so a weak but fast hash cannot be turned into
//! slow probing.

use std::hash::Hash;

use bloomfilter::Bloom;
use rustc_hash::FxHashMap;

/// Marks the end of an id chain.
pub const NONE: u32 = u32::MAX;

/// Rolling fingerprint state over bytes (FNV-1a, 64-bit), finished by
/// [`finish`].
pub const SEED: u64 = 0xcbf2_9ce4_8422_2325;

#[inline(always)]
pub fn step(h: u64, byte: u8) -> u64 {
    (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Avalanche (murmur3 fmix64) so the low bits the table uses are well mixed.
#[inline(always)]
pub fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Fingerprint of bytes, left to right.
#[inline]
pub fn fingerprint(bytes: &[u8]) -> u64 {
    finish(bytes.iter().fold(SEED, |h, &b| step(h, b)))
}

/// Folds the case of host bytes eight at a time: OR-ing 0x20 lowercases
/// `A-Z` and leaves `a-z0-9.-` as they are; `_` becomes 0x7F, which no
/// other host byte does. So two host tokens equal ignoring ASCII case fold
/// to the same bytes (other bytes may collide, which the callers' check of
/// every candidate against the token makes harmless).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// One label's step of a domain fingerprint: the label's bytes, case
/// folded, eight at a time, then its length (so labels never run together).
#[inline(always)]
pub fn label_step(h: u64, label: &[u8]) -> u64 {
    label_step_at(h, label, 0, label.len())
}

/// [`label_step`] of the label `text[start..end]`, reading its last
/// partial word straight from `text` (through the bytes around the label,
/// masked off) instead of copying it out: a copy of a few bytes then a
/// load of eight stalls on store forwarding, and labels are short.
#[inline(always)]
pub fn label_step_at(mut h: u64, text: &[u8], start: usize, end: usize) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut at = start;
    while end - at >= 8 {
        h = (h ^ (word_at(text, at) | FOLD))
            .wrapping_mul(K)
            .rotate_left(29);
        at += 8;
    }
    let rest = end - at;
    if rest > 0 {
        h = (h ^ (partial_word(text, at, rest) | FOLD))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    (h ^ (end - start) as u64).wrapping_mul(K)
}

/// The eight bytes of `text` at `at`, little-endian.
#[inline(always)]
fn word_at(text: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(text[at..at + 8].try_into().expect("8 bytes"))
}

/// The `len` (1 to 7) bytes of `text` at `at` as a little-endian word,
/// zero above them.
#[inline(always)]
fn partial_word(text: &[u8], at: usize, len: usize) -> u64 {
    debug_assert!((1..8).contains(&len));
    if at + 8 <= text.len() {
        word_at(text, at) & (u64::MAX >> (64 - 8 * len))
    } else if at + len >= 8 {
        word_at(text, at + len - 8) >> (64 - 8 * len)
    } else {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&text[at..at + len]);
        u64::from_le_bytes(b)
    }
}

/// The TLD prefilter's key: 16 bits mixed from a label's first two bytes,
/// its last byte (all case folded) and its length. Labels are never empty
/// here. The length and last byte tell `orig_h` and `resp_h` (Zeek's
/// `id.orig_h`) from `org` and `re`.
#[inline(always)]
pub fn tld_key(text: &[u8], start: usize, end: usize) -> usize {
    let len = end - start;
    let x = u32::from(text[start] | 0x20)
        | u32::from(text[start + usize::from(len > 1)] | 0x20) << 8
        | u32::from(text[end - 1] | 0x20) << 16
        | (len.min(255) as u32) << 24;
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

/// Fingerprint of a domain, ignoring ASCII case: its labels from the right,
/// each through [`label_step`], so the scanner gets every parent domain's
/// fingerprint at each dot of one pass over a host token.
#[inline]
pub fn domain_fingerprint(bytes: &[u8]) -> u64 {
    finish(bytes.rsplit(|&c| c == b'.').fold(SEED, label_step))
}

/// Fingerprint of a domain's last label, the key of the TLD prefilter.
pub fn tld_fingerprint(domain: &[u8]) -> Option<u64> {
    let dot = memchr::memrchr(b'.', domain)?;
    Some(domain_fingerprint(&domain[dot + 1..]))
}

/// The Bloom filter's target false-positive rate, where one is used.
const BLOOM_FP_RATE: f64 = 0.01;

/// A set of keys, each the head of a chain of indicator ids.
pub struct ExactSet<K> {
    map: FxHashMap<K, u32>,
    bloom: Option<Bloom<K>>,
}

impl<K: Hash + Eq + Copy> Default for ExactSet<K> {
    fn default() -> Self {
        ExactSet {
            map: FxHashMap::default(),
            bloom: None,
        }
    }
}

impl<K: Hash + Eq + Copy> ExactSet<K> {
    /// Adds indicator `id` under `key`, linking it into `next`. Returns false
    /// (and adds nothing) when `same(existing_id)` holds for an id already
    /// under the key: a duplicate.
    pub fn insert(
        &mut self,
        key: K,
        id: u32,
        next: &mut [u32],
        same: impl Fn(u32) -> bool,
    ) -> bool {
        match self.map.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
                true
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let mut cur = *o.get();
                while cur != NONE {
                    if same(cur) {
                        return false;
                    }
                    cur = next[cur as usize];
                }
                next[id as usize] = *o.get();
                *o.get_mut() = id;
                true
            }
        }
    }

    /// Puts a Bloom filter in front of the map when it holds at least
    /// `min_keys` keys (0 disables it).
    pub fn finish(&mut self, min_keys: usize) {
        self.map.shrink_to_fit();
        if min_keys == 0 || self.map.len() < min_keys {
            return;
        }
        // A fixed seed: the filter is rebuilt with the engine, never persisted.
        let mut bloom = Bloom::new_for_fp_rate_with_seed(self.map.len(), BLOOM_FP_RATE, &[7; 32])
            .expect("valid rate");
        for k in self.map.keys() {
            bloom.set(k);
        }
        self.bloom = Some(bloom);
    }

    /// The head of the chain of ids under `key`.
    #[inline(always)]
    pub fn get(&self, key: &K) -> Option<u32> {
        if let Some(b) = &self.bloom {
            if !b.check(key) {
                return None;
            }
        }
        self.map.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn has_bloom(&self) -> bool {
        self.bloom.is_some()
    }

    /// Approximate heap bytes (table slots plus filter bits).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(K, u32)>() + 1;
        self.map.capacity() * slot + self.bloom.as_ref().map_or(0, |b| (b.len() / 8) as usize)
    }
}
