//! Stream framing: newline-delimited, or RFC 6587 octet counting
//! (`LEN SP MSG`) as syslog senders use over TCP and Unix streams.

use serde::Deserialize;

use crate::pipeline::LineBatcher;

/// How a stream is cut into messages.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// RFC 6587 octet counting when a connection starts with `LEN SP <`, else newlines.
    #[default]
    Auto,
    Newline,
    OctetCounting,
}

/// Longest `LEN` accepted (10 digits); a longer prefix is not a frame header.
const MAX_LEN_DIGITS: usize = 10;

enum State {
    /// Auto: nothing seen yet; bytes are held until the mode is known.
    Undecided(Vec<u8>),
    Newline,
    /// Octet counting, reading the length digits.
    Length(Vec<u8>),
    /// Octet counting, reading a message: bytes kept (at most the line
    /// limit: a `LEN` of 9999999999 is a promise, not a reason to buffer
    /// 10 GB), bytes still to come, and whether any were discarded.
    Message {
        kept: Vec<u8>,
        remaining: usize,
        cut: bool,
    },
}

pub struct Framer {
    state: State,
}

impl Framer {
    pub fn new(framing: Framing) -> Framer {
        let state = match framing {
            Framing::Auto => State::Undecided(Vec::new()),
            Framing::Newline => State::Newline,
            Framing::OctetCounting => State::Length(Vec::new()),
        };
        Framer { state }
    }

    pub fn feed(&mut self, mut data: &[u8], out: &mut LineBatcher) {
        while !data.is_empty() {
            match &mut self.state {
                State::Undecided(held) => {
                    held.extend_from_slice(data);
                    data = &[];
                    // RFC 6587 frames carry syslog messages, which start with
                    // `<PRI>`: `LEN SP <` decides, so a plain line such as
                    // `1 added.example` is never taken for a frame header.
                    let digits = held.iter().take_while(|b| b.is_ascii_digit()).count();
                    let decided = digits + 1 < held.len()
                        || digits > MAX_LEN_DIGITS
                        || held.get(digits).is_some_and(|&b| b != b' ');
                    if decided {
                        let octets = digits > 0
                            && digits <= MAX_LEN_DIGITS
                            && held[0] != b'0'
                            && held.get(digits) == Some(&b' ')
                            && held.get(digits + 1) == Some(&b'<');
                        let held = std::mem::take(held);
                        self.state = if octets {
                            State::Length(Vec::new())
                        } else {
                            State::Newline
                        };
                        self.feed(&held, out);
                    }
                }
                State::Newline => {
                    out.push_bytes(data);
                    data = &[];
                }
                State::Length(digits) => {
                    let b = data[0];
                    data = &data[1..];
                    if b == b' ' && !digits.is_empty() {
                        let len: usize = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(0);
                        out.count_bytes(digits.len() + 1);
                        self.state = State::Message {
                            kept: Vec::with_capacity(len.min(64 * 1024).min(out.max_line())),
                            remaining: len,
                            cut: false,
                        };
                    } else if b.is_ascii_digit() && digits.len() < MAX_LEN_DIGITS {
                        digits.push(b);
                    } else if digits.is_empty() && (b == b'\n' || b == b'\r') {
                        out.count_bytes(1); // stray terminator between frames
                    } else {
                        // Not a frame header: the sender is not octet counting
                        // after all; what follows is read as newline text.
                        let mut held = std::mem::take(digits);
                        held.push(b);
                        self.state = State::Newline;
                        out.push_bytes(&held);
                    }
                }
                State::Message {
                    kept,
                    remaining,
                    cut,
                } => {
                    let take = (*remaining).min(data.len());
                    let room = out.max_line().saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..take.min(room)]);
                    if take > room {
                        *cut = true;
                        out.count_bytes(take - room);
                    }
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        let msg = std::mem::take(kept);
                        let line = if *cut {
                            &msg[..]
                        } else {
                            msg.strip_suffix(b"\n").unwrap_or(&msg)
                        };
                        out.push_line_cut(line, *cut);
                        self.state = State::Length(Vec::new());
                    }
                }
            }
        }
    }

    /// End of stream: held bytes and a partial message are lines too.
    pub fn finish(&mut self, out: &mut LineBatcher) {
        match std::mem::replace(&mut self.state, State::Newline) {
            State::Undecided(held) | State::Length(held) if !held.is_empty() => {
                out.push_bytes(&held)
            }
            State::Message { kept, cut, .. } if !kept.is_empty() => out.push_line_cut(&kept, cut),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::EngineConfig;
    use std::sync::Arc;

    fn frame(framing: Framing, chunks: &[&[u8]]) -> Vec<String> {
        frame_with(framing, chunks, &EngineConfig::default()).0
    }

    /// The lines framed, and which were cut.
    fn frame_with(
        framing: Framing,
        chunks: &[&[u8]],
        engine: &EngineConfig,
    ) -> (Vec<String>, Vec<u32>) {
        let mut b = LineBatcher::new(Arc::from("t"), engine, Metrics::new());
        let mut f = Framer::new(framing);
        for c in chunks {
            f.feed(c, &mut b);
        }
        f.finish(&mut b);
        let Some(batch) = b.finish() else {
            return (vec![], vec![]);
        };
        let lines = batch
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        (lines, batch.truncated)
    }

    /// Bytes shaped like framed syslog: digits, spaces, `<`, newlines, text.
    fn framed_noise() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(b"0123456789 <>\n".to_vec()),
                1 => any::<u8>(),
                4 => prop::sample::select(b"abc.example ".to_vec()),
            ],
            0..150_000,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

        /// Past 64 KiB, however the stream is cut into reads: the same
        /// lines, none longer than the limit, never a panic.
        #[test]
        fn framing_is_the_same_however_the_stream_is_cut(
            data in framed_noise(),
            cuts in proptest::collection::vec(1usize..70_000, 0..8),
            framing in proptest::sample::select(vec![Framing::Auto, Framing::Newline, Framing::OctetCounting]),
        ) {
            let engine = EngineConfig { max_line_bytes: 4096, ..EngineConfig::default() };
            let whole = frame_with(framing, &[&data], &engine);
            let mut chunks = Vec::new();
            let mut rest: &[u8] = &data;
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                chunks.push(a);
                rest = b;
            }
            chunks.push(rest);
            let cut = frame_with(framing, &chunks, &engine);
            proptest::prop_assert_eq!(&whole, &cut);
            proptest::prop_assert!(whole.0.iter().all(|l| l.len() <= 4096 * 3)); // lossy UTF-8 may triple
        }
    }

    #[test]
    fn a_huge_length_is_not_buffered() {
        // The finding: `9999999999 <13>…` made one connection buffer what
        // the header promised. Only max_line_bytes are kept; the rest of
        // the message streams past and the line counts as truncated.
        let engine = EngineConfig {
            max_line_bytes: 16,
            ..EngineConfig::default()
        };
        let mut f = Framer::new(Framing::Auto);
        let mut b = LineBatcher::new(Arc::from("t"), &engine, Metrics::new());
        f.feed(b"9999999999 <13>", &mut b);
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            f.feed(&chunk, &mut b);
            match &f.state {
                State::Message { kept, .. } => assert!(kept.capacity() <= 64 * 1024),
                _ => panic!("still in the message"),
            }
        }
        let (lines, cut) = frame_with(
            Framing::Auto,
            &[b"30 <13>0123456789abcdefghijklmnop4 <1>x"],
            &engine,
        );
        assert_eq!(lines, ["<13>0123456789ab", "<1>x"]);
        assert_eq!(cut, [0]);
    }

    #[test]
    fn octet_counting_detected_and_split_anywhere() {
        let msg: &[u8] = b"11 <13>hello a13 <13>two\nlines";
        let want = ["<13>hello a", "<13>two\nlines"];
        assert_eq!(frame(Framing::Auto, &[msg]), want);
        for cut in 1..msg.len() {
            assert_eq!(
                frame(Framing::Auto, &[&msg[..cut], &msg[cut..]]),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn newline_text_is_not_mistaken() {
        assert_eq!(
            frame(Framing::Auto, &[b"2026-11-22 x\n12:00 y\n"]),
            ["2026-11-22 x", "12:00 y"]
        );
        assert_eq!(frame(Framing::Auto, &[b"<13>a\n<13>b"]), ["<13>a", "<13>b"]);
        assert_eq!(frame(Framing::Newline, &[b"5 abcde\n"]), ["5 abcde"]);
        assert_eq!(
            frame(Framing::Auto, &[b"1 added.example\n2 b\n"]),
            ["1 added.example", "2 b"]
        );
        for cut in 1..6 {
            let msg: &[u8] = b"12 plain text\n";
            assert_eq!(
                frame(Framing::Auto, &[&msg[..cut], &msg[cut..]]),
                ["12 plain text"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_bad_header_falls_back_to_newlines() {
        assert_eq!(
            frame(Framing::OctetCounting, &[b"3 abc3x junk\nok\n"]),
            ["abc", "3x junk", "ok"]
        );
        assert_eq!(frame(Framing::Auto, &[b"5 <1"]), ["<1"]);
    }
}
