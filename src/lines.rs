//! What a line is (`MATCHING.md`, "Lines"): it ends at `\n`, one trailing
//! `\r` is removed, and it is scanned up to a maximum length. The one rule
//! both `iocd scan`'s block reader and the daemon's line batcher apply.

/// How raw lines are read before they are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRule {
    /// Remove one trailing `\r`.
    pub strip_cr: bool,
    /// Longest line scanned, in bytes; longer ones are scanned up to it.
    pub max: usize,
}

impl LineRule {
    /// Lines already read by a rule (the daemon's batches): taken as they are.
    pub const AS_READ: LineRule = LineRule {
        strip_cr: false,
        max: usize::MAX,
    };

    /// The contract's rule, with lines cut to `max` bytes.
    pub fn new(max: usize) -> LineRule {
        LineRule {
            strip_cr: true,
            max,
        }
    }

    /// `line` (without its `\n`) as it is scanned, and whether it was cut.
    #[inline]
    pub fn apply<'a>(&self, line: &'a [u8]) -> (&'a [u8], bool) {
        let line = match self.strip_cr {
            true => line.strip_suffix(b"\r").unwrap_or(line),
            false => line,
        };
        if line.len() > self.max {
            (&line[..self.max], true)
        } else {
            (line, false)
        }
    }
}

/// `line` (without its `\n`) as it is scanned: one trailing `\r` removed,
/// cut to `max` bytes. Also whether it was cut.
#[inline]
pub fn as_scanned(line: &[u8], max: usize) -> (&[u8], bool) {
    LineRule::new(max).apply(line)
}

#[cfg(test)]
mod tests {
    use super::{as_scanned, LineRule};

    #[test]
    fn one_cr_removed_then_cut() {
        let cases: &[(&[u8], usize, &[u8], bool)] = &[
            (b"abc\r", 10, b"abc", false),
            (b"abc\r\r", 10, b"abc\r", false),
            (b"abcdef", 4, b"abcd", true),
            (b"abcd\r", 4, b"abcd", false),
            (b"", 4, b"", false),
        ];
        for &(line, max, want, cut) in cases {
            assert_eq!(as_scanned(line, max), (want, cut), "{line:?}");
        }
    }

    #[test]
    fn lines_as_read_are_kept() {
        assert_eq!(LineRule::AS_READ.apply(b"abc\r"), (&b"abc\r"[..], false));
    }
}
