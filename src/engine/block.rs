//! Scanning a block of lines at once: the masks are computed and the token
//! passes run over windows of many lines, so what a scan costs per line
//! (sizing the masks, padding the last chunk, the passes' set-up, finding
//! the line's end) is paid per window instead, and lines without hits are
//! never looked at one by one.
//!
//! Why this gives the same hits as [`Engine::scan`] line by line: `\n` is
//! in no token class, so no token found in a window crosses a line (every
//! finder stops at a byte outside its class, exactly as at a line's end),
//! and the one-byte look-arounds of the boundary rules see `\n` where a
//! line alone would see its end, which they treat alike. A trailing `\r`
//! is in no class either. `string` and `regex` indicators, which can match
//! any byte, are looked for line by line, in each line as the rule reads
//! it. The property tests in `tests/properties.rs` hold the two paths to
//! the same hits.

use std::ops::Range;

use super::bits::{next_set, prev_set};
use super::{Engine, Match, ScanState};
use crate::lines::LineRule;

/// Bytes classified and scanned at once: the window's bytes and its masks
/// (11 bits a byte) stay in the L1 cache, and per-window costs are spread
/// over some forty lines of a typical log.
const WINDOW: usize = 16 << 10;

/// One line of a block that has hits.
#[derive(Debug)]
pub struct LineMatches<'a> {
    /// Its index among the block's lines, from 0.
    pub index: u64,
    /// The line as scanned, as a range of the block (its `\r` removed and
    /// cut to the maximum, as the rule says).
    pub range: Range<usize>,
    /// Whether it was cut to the rule's maximum.
    pub cut: bool,
    /// What [`Engine::scan`] gives for the line alone, positions relative
    /// to the line.
    pub matches: &'a [Match],
}

/// What a block held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockSummary {
    /// Lines in the block.
    pub lines: u64,
    /// Lines longer than the rule's maximum, scanned up to it.
    pub cut: u64,
}

impl Engine {
    /// Scans every line of `block` and calls `visit` for each line with
    /// hits, in order, with what [`Engine::scan`] finds in that line as
    /// `rule` reads it.
    ///
    /// Lines end at `\n`; the last one may lack it (a block ending in `\n`
    /// has no empty line after it). Allocates nothing for lines without
    /// hits once `st` has grown.
    pub fn scan_lines(
        &self,
        block: &[u8],
        rule: LineRule,
        st: &mut ScanState,
        mut visit: impl FnMut(LineMatches<'_>),
    ) -> BlockSummary {
        // Every line inside a window is shorter than this, so never cut.
        let cap = WINDOW.min(rule.max).max(1);
        let mut sum = BlockSummary::default();
        let mut pos = 0;
        while pos < block.len() {
            let rest = &block[pos..];
            let len = if rest.len() <= cap {
                rest.len()
            } else {
                memchr::memrchr(b'\n', &rest[..cap]).map_or(0, |k| k + 1)
            };
            if len > 0 {
                let ahead = &rest[len..rest.len().min(len + WINDOW)];
                sum.lines +=
                    self.scan_window(&rest[..len], ahead, pos, sum.lines, rule, st, &mut visit);
                pos += len;
                continue;
            }
            // A line of `cap` bytes or more: alone, as the rule reads it.
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let (line, cut) = rule.apply(&rest[..end]);
            let matches = self.scan(line, st);
            if !matches.is_empty() {
                visit(LineMatches {
                    index: sum.lines,
                    range: pos..pos + line.len(),
                    cut,
                    matches,
                });
            }
            sum.lines += 1;
            sum.cut += u64::from(cut);
            pos += end + 1;
        }
        sum
    }

    /// Scans the whole lines of `window` (at `base` in the block; its first
    /// line is line `first` of the block) at once, fetching `ahead` (the
    /// next window) into the cache meanwhile. Returns its line count.
    #[allow(clippy::too_many_arguments)]
    fn scan_window(
        &self,
        window: &[u8],
        ahead: &[u8],
        base: usize,
        first: u64,
        rule: LineRule,
        st: &mut ScanState,
        visit: &mut impl FnMut(LineMatches<'_>),
    ) -> u64 {
        let ScanState {
            hits,
            buf,
            masks,
            keyed,
            newlines_before,
        } = st;
        masks.classify_ahead(window, ahead);
        let nl = &masks.newline;
        let newlines: u64 = nl.iter().map(|w| u64::from(w.count_ones())).sum();
        let lines = newlines + u64::from(!window.ends_with(b"\n"));
        hits.clear();
        if self.wants_tokens() {
            self.token_hits(window, masks, buf, hits);
        }
        if self.wants_strings() {
            let mut start = 0;
            while start < window.len() {
                let end = next_set(nl, start).unwrap_or(window.len());
                self.string_hits(rule.apply(&window[start..end]).0, start, hits);
                start = end + 1;
            }
        }
        if hits.is_empty() {
            return lines;
        }
        // Each hit's line: the newlines before it, counted per word once.
        newlines_before.clear();
        let mut seen = 0;
        for w in nl {
            newlines_before.push(seen);
            seen += w.count_ones();
        }
        let line_of = |at: usize| {
            let below = nl[at / 64] & ((1u64 << (at % 64)) - 1);
            newlines_before[at / 64] + below.count_ones()
        };
        keyed.clear();
        keyed.extend(hits.iter().map(|m| (line_of(m.start as usize), *m)));
        // As `scan` orders one line's hits: each indicator once (its first
        // position), then by position.
        keyed.sort_unstable_by_key(|(l, m)| (*l, m.indicator, m.start));
        keyed.dedup_by_key(|(l, m)| (*l, m.indicator));
        keyed.sort_unstable_by_key(|(l, m)| (*l, m.start, m.indicator));
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            let at = group[0].1.start as usize;
            let start = prev_set(nl, at).map_or(0, |p| p + 1);
            let end = next_set(nl, at).unwrap_or(window.len());
            let line = rule.apply(&window[start..end]).0;
            hits.clear();
            hits.extend(group.iter().map(|(_, m)| Match {
                indicator: m.indicator,
                start: m.start - start as u32,
                end: m.end - start as u32,
            }));
            visit(LineMatches {
                index: first + u64::from(group[0].0),
                range: base + start..base + start + line.len(),
                cut: false,
                matches: hits,
            });
        }
        lines
    }
}
