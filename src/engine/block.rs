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
use crate::lines::{LineRule, Lines};

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
                let first = sum.lines;
                let window = &rest[..len];
                sum.lines +=
                    self.scan_window(window, ahead, Layout::Newlines, rule, st, |i, r, m| {
                        visit(LineMatches {
                            index: first + u64::from(i),
                            range: pos + r.start..pos + r.end,
                            cut: false,
                            matches: m,
                        })
                    });
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

    /// Scans every line of `lines` (the daemon's batches, the retro
    /// ring's records: lines already read by the rule, which may hold a
    /// `\n` of their own, as an octet-counted syslog message can) and calls
    /// `visit` for each line with hits, in order, with what
    /// [`Engine::scan`] finds in it. `range` is the line in
    /// [`Lines::bytes`]; `cut` is always false (the lines were cut when
    /// read). Allocates nothing for lines without hits once `st` has grown.
    pub fn scan_batch(
        &self,
        lines: &Lines,
        st: &mut ScanState,
        mut visit: impl FnMut(LineMatches<'_>),
    ) {
        let (bytes, ends) = (lines.bytes(), lines.ends());
        let mut first = 0;
        while first < ends.len() {
            // Whole lines up to a window's worth, and at least one.
            let start = lines.start(first);
            let last = first + ends[first..].partition_point(|&e| e as usize - start < WINDOW);
            let last = last.max(first + 1);
            let end = ends[last - 1] as usize + 1;
            let ahead = &bytes[end..bytes.len().min(end + WINDOW)];
            let layout = Layout::Ends(&ends[first..last], start);
            self.scan_window(
                &bytes[start..end],
                ahead,
                layout,
                LineRule::AS_READ,
                st,
                |i, range, matches| {
                    visit(LineMatches {
                        index: (first + i as usize) as u64,
                        range: start + range.start..start + range.end,
                        cut: false,
                        matches,
                    })
                },
            );
            first = last;
        }
    }

    /// Scans the whole lines of `window` at once, fetching `ahead` (what
    /// comes next) into the cache meanwhile, and calls `visit(line, range,
    /// matches)` for each line with hits: its index among the window's
    /// lines and its range in the window as `rule` reads it. Returns the
    /// window's line count.
    fn scan_window(
        &self,
        window: &[u8],
        ahead: &[u8],
        layout: Layout<'_>,
        rule: LineRule,
        st: &mut ScanState,
        mut visit: impl FnMut(u32, Range<usize>, &[Match]),
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
        let lines = match layout {
            Layout::Newlines => {
                let newlines: u64 = nl.iter().map(|w| u64::from(w.count_ones())).sum();
                newlines + u64::from(!window.ends_with(b"\n"))
            }
            Layout::Ends(ends, _) => ends.len() as u64,
        };
        hits.clear();
        if self.wants_tokens() {
            self.token_hits(window, masks, buf, hits);
        }
        if self.wants_strings() {
            layout.each_line(window, nl, |r| {
                self.string_hits(rule.apply(&window[r.clone()]).0, r.start, hits)
            });
        }
        if hits.is_empty() {
            return lines;
        }
        if let Layout::Newlines = layout {
            // The newlines before each word, counted once.
            newlines_before.clear();
            let mut seen = 0;
            for w in nl {
                newlines_before.push(seen);
                seen += w.count_ones();
            }
        }
        keyed.clear();
        keyed.extend(
            hits.iter()
                .map(|m| (layout.line_of(m.start as usize, nl, newlines_before), *m)),
        );
        // As `scan` orders one line's hits: each indicator once (its first
        // position), then by position.
        keyed.sort_unstable_by_key(|(l, m)| (*l, m.indicator, m.start));
        keyed.dedup_by_key(|(l, m)| (*l, m.indicator));
        keyed.sort_unstable_by_key(|(l, m)| (*l, m.start, m.indicator));
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            let r = layout.line(group[0].0, group[0].1.start as usize, window, nl);
            let line = rule.apply(&window[r.clone()]).0;
            hits.clear();
            hits.extend(group.iter().map(|(_, m)| Match {
                indicator: m.indicator,
                start: m.start - r.start as u32,
                end: m.end - r.start as u32,
            }));
            visit(group[0].0, r.start..r.start + line.len(), hits);
        }
        lines
    }
}

/// Where a window's lines end: what the two block layouts differ in.
#[derive(Clone, Copy)]
enum Layout<'a> {
    /// At each `\n` (the window's newline mask); the last line may lack one.
    Newlines,
    /// At these offsets of the batch, a `\n` after each; the window starts
    /// at the batch offset given.
    Ends(&'a [u32], usize),
}

impl Layout<'_> {
    /// Line `i` of the window, which holds offset `at`, as a range of it.
    fn line(&self, i: u32, at: usize, window: &[u8], nl: &[u64]) -> Range<usize> {
        match *self {
            Layout::Newlines => {
                let start = prev_set(nl, at).map_or(0, |p| p + 1);
                start..next_set(nl, at).unwrap_or(window.len())
            }
            Layout::Ends(ends, base) => {
                let end = ends[i as usize] as usize - base;
                let start = match i {
                    0 => 0,
                    _ => ends[i as usize - 1] as usize - base + 1,
                };
                start..end
            }
        }
    }

    /// Calls `f(range)` for each line of the window, in order.
    fn each_line(&self, window: &[u8], nl: &[u64], mut f: impl FnMut(Range<usize>)) {
        match *self {
            Layout::Newlines => {
                let mut start = 0;
                while start < window.len() {
                    let end = next_set(nl, start).unwrap_or(window.len());
                    f(start..end);
                    start = end + 1;
                }
            }
            Layout::Ends(ends, base) => {
                let mut start = 0;
                for &e in ends {
                    f(start..e as usize - base);
                    start = e as usize - base + 1;
                }
            }
        }
    }

    /// The index of the line holding window offset `at`.
    fn line_of(&self, at: usize, nl: &[u64], newlines_before: &[u32]) -> u32 {
        match *self {
            Layout::Newlines => {
                let below = nl[at / 64] & ((1u64 << (at % 64)) - 1);
                newlines_before[at / 64] + below.count_ones()
            }
            Layout::Ends(ends, base) => ends.partition_point(|&e| e as usize - base <= at) as u32,
        }
    }
}
