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
    /// Octet counting, reading a message: bytes kept and still to come.
    Message {
        kept: Vec<u8>,
        remaining: usize,
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
                            kept: Vec::with_capacity(len.min(64 * 1024)),
                            remaining: len,
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
                State::Message { kept, remaining } => {
                    let take = (*remaining).min(data.len());
                    kept.extend_from_slice(&data[..take]);
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        let msg = std::mem::take(kept);
                        out.push_line(msg.strip_suffix(b"\n").unwrap_or(&msg));
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
            State::Message { kept, .. } if !kept.is_empty() => out.push_line(&kept),
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
        let mut b = LineBatcher::new(Arc::from("t"), &EngineConfig::default(), Metrics::new());
        let mut f = Framer::new(framing);
        for c in chunks {
            f.feed(c, &mut b);
        }
        f.finish(&mut b);
        let Some(batch) = b.finish() else {
            return vec![];
        };
        let mut start = 0;
        batch
            .ends
            .iter()
            .map(|&e| {
                let l = String::from_utf8_lossy(&batch.data[start..e as usize]).into_owned();
                start = e as usize;
                l
            })
            .collect()
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
