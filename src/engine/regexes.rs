//! `regex` indicators: one RegexSet answers "does any match" without
//! allocating; on a hit, the individual regexes give the positions.

use regex::bytes::{Regex, RegexSet, RegexSetBuilder};

pub struct Regexes {
    set: RegexSet,
    each: Vec<Regex>,
    heads: Vec<u32>,
}

/// Compiled size allowed for the whole set; generous because feeds of a few
/// thousand regexes are normal, and the build is off the hot path.
const SET_SIZE_LIMIT: usize = 1 << 30;

impl Regexes {
    /// `patterns` are unique, already validated regexes with their chain head.
    ///
    /// # Errors
    /// When the set as a whole exceeds the compiled size limit.
    pub fn new(patterns: Vec<(&str, u32)>) -> Result<Option<Regexes>, regex::Error> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|(p, _)| p))
            .size_limit(SET_SIZE_LIMIT)
            .build()?;
        let each = patterns
            .iter()
            .map(|(p, _)| Regex::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Some(Regexes {
            set,
            each,
            heads: patterns.iter().map(|(_, h)| *h).collect(),
        }))
    }

    /// `visit(chain_head, start, end)` for the first match of each matching regex.
    #[inline]
    pub fn scan(&self, line: &[u8], mut visit: impl FnMut(u32, usize, usize)) {
        if !self.set.is_match(line) {
            return;
        }
        for i in self.set.matches(line).iter() {
            if let Some(m) = self.each[i].find(line) {
                visit(self.heads[i], m.start(), m.end());
            }
        }
    }
}
