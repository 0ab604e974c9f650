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

/// Lines back to back, each followed by `\n`, with where each ends: the
/// layout [`crate::engine::Engine::scan_batch`] scans many lines of at
/// once, shared by the daemon's batches, the retro ring's records and the
/// hunt. Line `i` is `bytes()[start(i)..ends()[i]]`. A line may hold a
/// `\n` of its own (an octet-counted syslog message): its end, not the
/// newline, says where it stops.
///
/// Limits: at most `u32::MAX` bytes in all (batches are a few MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    data: Vec<u8>,
    /// Where each line ends (its `\n`).
    ends: Vec<u32>,
}

impl Lines {
    /// Room for `bytes` bytes of lines and `lines` lines.
    pub fn with_capacity(bytes: usize, lines: usize) -> Lines {
        Lines {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// Appends `line`.
    #[inline]
    pub fn push(&mut self, line: &[u8]) {
        self.data.extend_from_slice(line);
        self.ends.push(self.data.len() as u32);
        self.data.push(b'\n');
    }

    /// Appends a line of `len` bytes read by `fill` (given the room for them).
    ///
    /// # Errors
    /// Whatever `fill` returns; the line is not added then.
    pub fn push_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.data.len();
        self.data.resize(at + len, 0);
        if let Err(e) = fill(&mut self.data[at..]) {
            self.data.truncate(at);
            return Err(e);
        }
        self.ends.push(self.data.len() as u32);
        self.data.push(b'\n');
        Ok(())
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where line `i` starts in [`Self::bytes`].
    #[inline]
    pub fn start(&self, i: usize) -> usize {
        match i {
            0 => 0,
            _ => self.ends[i - 1] as usize + 1,
        }
    }

    /// Line `i`, without its `\n`.
    #[inline]
    pub fn line(&self, i: usize) -> &[u8] {
        &self.data[self.start(i)..self.ends[i] as usize]
    }

    /// Every line, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.line(i))
    }

    /// The lines with their `\n`s, as one block.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Where each line ends in [`Self::bytes`] (at its `\n`).
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }

    /// Removes every line, keeping the room.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
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
    use super::{as_scanned, LineRule, Lines};

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
    fn lines_keep_their_bytes_and_newlines() {
        let mut l = Lines::default();
        for line in [&b"one"[..], b"", b"three\r"] {
            l.push(line);
        }
        assert_eq!(l.bytes(), b"one\n\nthree\r\n");
        assert_eq!(l.iter().collect::<Vec<_>>(), [&b"one"[..], b"", b"three\r"]);
        assert_eq!((l.len(), l.start(2)), (3, 5));
        let r: Result<(), ()> = l.push_with(2, |room| {
            room.copy_from_slice(b"ok");
            Ok(())
        });
        assert!(r.is_ok() && l.line(3) == b"ok");
        assert!(l.push_with(4, |_| Err(())).is_err());
        assert_eq!((l.len(), l.bytes().len()), (4, 15));
    }

    #[test]
    fn lines_as_read_are_kept() {
        assert_eq!(LineRule::AS_READ.apply(b"abc\r"), (&b"abc\r"[..], false));
    }
}
