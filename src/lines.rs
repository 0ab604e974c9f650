//! What a line is (`MATCHING.md`, "Lines"): it ends at `\n`, one trailing
//! `\r` is removed, and it is scanned up to a maximum length. The one rule
//! both `iocd scan`'s block reader and the daemon's line batcher apply.

/// `line` (without its `\n`) as it is scanned: one trailing `\r` removed,
/// cut to `max` bytes. Also whether it was cut.
#[inline]
pub fn as_scanned(line: &[u8], max: usize) -> (&[u8], bool) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        (&line[..max], true)
    } else {
        (line, false)
    }
}

#[cfg(test)]
mod tests {
    use super::as_scanned;

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
}
