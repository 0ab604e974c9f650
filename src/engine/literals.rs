//! `string` indicators: case-sensitive substrings, found with one
//! Aho-Corasick automaton (overlapping search, so `Evil` and `EvilMutex`
//! both hit the same line).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

pub struct Literals {
    ac: AhoCorasick,
    /// Pattern id → head of the id chain of indicators with that value.
    heads: Vec<u32>,
}

impl Literals {
    /// `patterns` are unique values with the head of their id chain.
    pub fn new(patterns: Vec<(&[u8], u32)>) -> Option<Literals> {
        if patterns.is_empty() {
            return None;
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|(p, _)| p))
            .expect("literal patterns within aho-corasick limits");
        Some(Literals {
            ac,
            heads: patterns.iter().map(|(_, h)| *h).collect(),
        })
    }

    /// `visit(chain_head, start, end)` for every occurrence.
    #[inline]
    pub fn scan(&self, line: &[u8], mut visit: impl FnMut(u32, usize, usize)) {
        for m in self.ac.find_overlapping_iter(line) {
            visit(self.heads[m.pattern().as_usize()], m.start(), m.end());
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.ac.memory_usage() + self.heads.capacity() * 4
    }
}
