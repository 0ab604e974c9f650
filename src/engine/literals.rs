//! `string` indicators: case-sensitive substrings.
//!
//! Two strategies, chosen at build by the number of distinct literals:
//! a few are each found with a SIMD `memmem` searcher (a hit needs only the
//! first occurrence, and a rare-byte search skips most of a line); many are
//! found with one Aho-Corasick automaton in overlapping mode, so `Evil` and
//! `EvilMutex` both hit the same line. Aho-Corasick's own prefilter looks
//! for pattern start bytes, which in log text fire constantly: with three
//! URL-like literals it cost more than scanning every other token kind.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use memchr::memmem::Finder;

/// Up to this many distinct literals are searched one by one.
const FEW: usize = 8;

pub enum Literals {
    /// Each literal's searcher and the head of its indicator chain.
    Few(Vec<(Finder<'static>, u32)>),
    /// One automaton; pattern id → head of the indicator chain.
    Many { ac: AhoCorasick, heads: Vec<u32> },
}

impl Literals {
    /// `patterns` are unique values with the head of their id chain.
    pub fn new(patterns: Vec<(&[u8], u32)>) -> Option<Literals> {
        if patterns.is_empty() {
            return None;
        }
        if patterns.len() <= FEW {
            let finders = patterns
                .into_iter()
                .map(|(p, h)| (Finder::new(p).into_owned(), h))
                .collect();
            return Some(Literals::Few(finders));
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|(p, _)| p))
            .expect("literal patterns within aho-corasick limits");
        Some(Literals::Many {
            ac,
            heads: patterns.iter().map(|(_, h)| *h).collect(),
        })
    }

    /// `visit(chain_head, start, end)` for at least the first occurrence of
    /// every literal in the line.
    #[inline]
    pub fn scan(&self, line: &[u8], mut visit: impl FnMut(u32, usize, usize)) {
        match self {
            Literals::Few(finders) => {
                for (f, head) in finders {
                    if let Some(at) = f.find(line) {
                        visit(*head, at, at + f.needle().len());
                    }
                }
            }
            Literals::Many { ac, heads } => {
                for m in ac.find_overlapping_iter(line) {
                    visit(heads[m.pattern().as_usize()], m.start(), m.end());
                }
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Literals::Few(f) => f.iter().map(|(f, _)| f.needle().len() + 64).sum(),
            Literals::Many { ac, heads } => ac.memory_usage() + heads.capacity() * 4,
        }
    }
}
