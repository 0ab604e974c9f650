//! `regex` indicators: one RegexSet answers "does any match" without
//! allocating; on a hit, the individual regexes give the positions.

use regex::bytes::{Regex, RegexSet, RegexSetBuilder};

pub struct Regexes {
    set: RegexSet,
    each: Vec<Regex>,
    heads: Vec<u32>,
}

/// Compiled size allowed for the whole set. Each regex indicator was held
/// to [`crate::indicator::guard::MAX_REGEX_BYTES`] when it was read, so
/// this allows hundreds of the largest; past it, the newest are left out
/// ([`Regexes::new`]), never the build.
pub const SET_SIZE_LIMIT: usize = 128 << 20;

impl Regexes {
    /// `patterns` are unique, already validated regexes with their chain
    /// head, which is also their order of loading. Returns the set, and the
    /// heads of the regexes left out because the set would pass
    /// [`SET_SIZE_LIMIT`] with them: the newest ones, the fewest needed.
    pub fn new(mut patterns: Vec<(&str, u32)>) -> (Option<Regexes>, Vec<u32>) {
        patterns.sort_unstable_by_key(|&(_, head)| head);
        // Each alone must compile (they were checked when read; a regex
        // that does not is left out too rather than failing the build).
        let (patterns, mut left_out): (Vec<_>, Vec<_>) = patterns
            .into_iter()
            .partition(|(p, _)| Regex::new(p).is_ok());
        let mut left_out: Vec<u32> = left_out.drain(..).map(|(_, h)| h).collect();
        let build = |n: usize| {
            RegexSetBuilder::new(patterns[..n].iter().map(|(p, _)| p))
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .ok()
        };
        let (set, kept) = match build(patterns.len()) {
            Some(set) => (set, patterns.len()),
            None => {
                // The largest prefix that builds: a set of one always does.
                let (mut lo, mut hi) = (0, patterns.len());
                while lo + 1 < hi {
                    let mid = (lo + hi) / 2;
                    if build(mid).is_some() {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                (build(lo).expect("a prefix that built"), lo)
            }
        };
        left_out.extend(patterns[kept..].iter().map(|(_, h)| *h));
        if kept == 0 {
            return (None, left_out);
        }
        let each = patterns[..kept]
            .iter()
            .map(|(p, _)| Regex::new(p).expect("compiled above"))
            .collect();
        let regexes = Regexes {
            set,
            each,
            heads: patterns[..kept].iter().map(|(_, h)| *h).collect(),
        };
        (Some(regexes), left_out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_the_newest_are_left_out_not_the_build() {
        // Each compiles to about 3 MiB (Unicode \w): about 40 fit in 128 MiB.
        let pats: Vec<String> = (0..60).map(|i| format!("\\w{{60}}q{i}")).collect();
        let (set, left_out) = Regexes::new(
            pats.iter()
                .enumerate()
                .map(|(i, p)| (p.as_str(), i as u32))
                .collect(),
        );
        let set = set.expect("a set of the oldest");
        assert!(
            !left_out.is_empty() && left_out.len() < 60,
            "{}",
            left_out.len()
        );
        let kept = set.heads.len() as u32;
        assert_eq!(left_out, (kept..60).collect::<Vec<u32>>());
        assert_eq!(Regexes::new(Vec::new()).1, Vec::<u32>::new());
    }
}
