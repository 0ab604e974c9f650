//! Plain lists: one value a line, typed by shape (`MATCHING.md`, "Plain list").
//!
//! Also covers the line formats that are plain lists with a twist: typed
//! lists (`type<TAB>value`), ipsum (`IP<TAB>count`), hosts files
//! (`0.0.0.0 name ...`) and LOKI (`VALUE;comment`).

use super::{FeedContext, Parsed, SkipLog, SkipReason};
use crate::indicator::canon::{classify, refang, typed, TypeHint};
use crate::indicator::IndicatorType;

const HOSTS_SINKS: [&str; 4] = ["0.0.0.0", "127.0.0.1", "::", "::1"];

/// Plain lists larger than this are parsed on every core, in pieces cut at
/// newlines (a million-line feed is the common case for reloads).
const PARALLEL_BYTES: usize = 4 << 20;

pub fn parse(ctx: &FeedContext, text: &str) -> Parsed {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if text.len() < PARALLEL_BYTES || threads == 1 {
        return parse_lines(ctx, text, 0);
    }
    // Pieces cut after a newline, each with the number of lines before it.
    let mut pieces = Vec::with_capacity(threads);
    let (mut start, mut lines_before) = (0, 0u32);
    for i in 1..=threads {
        let want = text.len() * i / threads;
        let end = if i == threads {
            text.len()
        } else {
            memchr::memchr(b'\n', &text.as_bytes()[want.max(start)..])
                .map_or(text.len(), |p| want.max(start) + p + 1)
        };
        let piece = &text[start..end];
        pieces.push((piece, lines_before));
        lines_before += memchr::memchr_iter(b'\n', piece.as_bytes()).count() as u32;
        start = end;
    }
    let parsed: Vec<Parsed> = std::thread::scope(|s| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|&(p, before)| s.spawn(move || parse_lines(ctx, p, before)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("feed parser panicked"))
            .collect()
    });
    let mut all = Parsed {
        indicators: Vec::with_capacity(parsed.iter().map(|p| p.indicators.len()).sum()),
        skipped: SkipLog::default(),
    };
    for mut p in parsed {
        all.indicators.append(&mut p.indicators);
        all.skipped.merge(p.skipped);
    }
    all
}

/// Parses `text` whose first line is line `lines_before + 1` of the feed.
fn parse_lines(ctx: &FeedContext, text: &str, lines_before: u32) -> Parsed {
    let mut indicators = Vec::new();
    let mut skipped = SkipLog::default();
    for (n, line) in super::numbered_lines(text) {
        let n = n + lines_before;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some((first, rest)) = line.split_once('\t') {
            if let Some(hint) = IndicatorType::from_name(first).map(TypeHint::Exactly) {
                match typed(hint, rest) {
                    Some(c) => indicators.push(ctx.indicator(c, n, Vec::new())),
                    None => skipped.push(n, format!("not a valid {first}: {rest:?}")),
                }
                continue;
            }
        }
        let (value, comment) = split_comment(line);
        let mut v = value.trim();
        if let Some((first, _)) = v.split_once('\t') {
            v = first.trim(); // ipsum's `IP<TAB>count`: the first field
        }
        let fields: Vec<&str> = v.split_whitespace().collect();
        if fields.len() > 1 && HOSTS_SINKS.contains(&fields[0]) {
            for name in &fields[1..] {
                match classify(&refang(name)) {
                    Some(c) if c.0 == IndicatorType::Domain => {
                        indicators.push(ctx.indicator(c, n, Vec::new()))
                    }
                    _ => skipped.push(n, format!("hosts entry {name:?} is not a domain name")),
                }
            }
            continue;
        }
        let mut meta = Vec::new();
        if let Some(c) = comment {
            meta.push(("comment".into(), c.into()));
        }
        if let Some((head, tail)) = v.split_once(';') {
            // LOKI's `VALUE;comment`, when VALUE has a shape other than string.
            if !head.is_empty() && !head.contains(char::is_whitespace) {
                if let Some(c) = classify(&refang(head)).filter(|c| c.0 != IndicatorType::String) {
                    meta.push(("comment".into(), tail.trim().into()));
                    indicators.push(ctx.indicator(c, n, meta));
                    continue;
                }
            }
        }
        let mut found = classify(&refang(v));
        if matches!(found, Some((IndicatorType::String, _))) && fields.len() > 1 {
            // `VALUE comment`: the first field has a shape, the rest is prose.
            if let Some(c) = classify(&refang(fields[0])).filter(|c| c.0 != IndicatorType::String) {
                let rest = v[fields[0].len()..].trim();
                meta.push(("comment".into(), rest.into()));
                found = Some(c);
            }
        }
        match found {
            Some((IndicatorType::String, s)) if looks_like_damaged_hash(&s) => skipped.push(
                n,
                format!(
                    "{} hex digits is not a hash length (32, 40, 64 or 128)",
                    s.len()
                ),
            ),
            // A plain list holds shapes; headers, prose and fragments (`tc`,
            // `.ws`) would fire everywhere as substrings. Strings must be typed.
            Some((IndicatorType::String, s)) => skipped.push_reason(
                n,
                SkipReason::NoShape,
                format!("{s:?} has no indicator shape (type it as `string<TAB>value` to match it as text)"),
            ),
            Some(c) => indicators.push(ctx.indicator(c, n, meta)),
            None => {}
        }
    }
    Parsed {
        indicators,
        skipped,
    }
}

/// Splits `value # comment` / `value ; comment` (whitespace before the mark).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let b = line.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b'#' || b[i] == b';') && b[i - 1].is_ascii_whitespace() {
            let comment = line[i + 1..].trim();
            return (&line[..i], (!comment.is_empty()).then_some(comment));
        }
    }
    (line, None)
}

/// 30-130 alphanumerics, all but at most two of them hex, that did not
/// classify as a digest: a damaged hash (a 41-character "SHA-1", a digest
/// with a stray letter), not a string worth matching anywhere.
fn looks_like_damaged_hash(s: &str) -> bool {
    let non_hex = s.bytes().filter(|b| !b.is_ascii_hexdigit()).count();
    (30..=130).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) && non_hex <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, value, metadata) of each indicator read.
    type Read = Vec<(String, String, Vec<(String, String)>)>;

    fn read(text: &str) -> (Read, SkipLog) {
        let ctx = FeedContext::named("t");
        let p = parse(&ctx, text);
        let inds = p
            .indicators
            .into_iter()
            .map(|i| {
                let meta = i
                    .provenance
                    .meta
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (i.kind.as_str().to_owned(), i.value.to_string(), meta)
            })
            .collect();
        (inds, p.skipped)
    }

    #[test]
    fn line_forms() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("1.2.3.4", &[("ipv4-addr", "1.2.3.4")]),
            ("# comment\n\n  \n", &[]),
            ("5.6.7.8\t3", &[("ipv4-addr", "5.6.7.8")]),
            ("1.2.3.4 # scanner", &[("ipv4-addr", "1.2.3.4")]),
            ("5.6.7.0/24 ; SBL1", &[("ipv4-addr", "5.6.7.0/24")]),
            (
                "0.0.0.0 ads.example badads.example",
                &[
                    ("domain-name", "ads.example"),
                    ("domain-name", "badads.example"),
                ],
            ),
            (
                "d41d8cd98f00b204e9800998ecf8427e;Empty file",
                &[("md5", "d41d8cd98f00b204e9800998ecf8427e")],
            ),
            (
                "domain-name\tlocalhost.test",
                &[("domain-name", "localhost.test")],
            ),
            (
                "regex\tcmd\\.exe /c [a-z]+",
                &[("regex", "cmd\\.exe /c [a-z]+")],
            ),
            ("evil[.]com", &[("domain-name", "evil.com")]),
            (
                "185[.]196[.]10[.]136 (C2 server)",
                &[("ipv4-addr", "185.196.10.136")],
            ),
            (
                "evil[dot]example/gate.php",
                &[("url", "evil.example/gate.php")],
            ),
            (
                "hXXps[://]evil(dot)example",
                &[("url", "https://evil.example/")],
            ),
            (
                "ceo[at]phish.example",
                &[("email-addr", "ceo@phish.example")],
            ),
            (
                "string\tMozilla/4.0 (EvilBot)",
                &[("string", "Mozilla/4.0 (EvilBot)")],
            ),
            (
                "a.example\r\nb.example\r\n",
                &[("domain-name", "a.example"), ("domain-name", "b.example")],
            ),
        ];
        for (text, want) in cases {
            let (got, skipped) = read(text);
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|(t, v, _)| (t.as_str(), v.as_str()))
                .collect();
            assert_eq!(&got, want, "feed {text:?}");
            assert_eq!(skipped.count, 0, "feed {text:?}");
        }
    }

    #[test]
    fn shapeless_values_are_skipped_not_loaded_as_strings() {
        for text in [
            "\\\\evil\\.sys;80",
            "Mozilla/4.0 (compatible; EvilBot)",
            "tc",
            ".ws",
            "All rights reserved.",
        ] {
            let (got, skipped) = read(text);
            assert!(got.is_empty(), "feed {text:?} loaded {got:?}");
            assert_eq!(skipped.count, 1, "feed {text:?}");
            assert_eq!(
                skipped.by_reason.get(&SkipReason::NoShape),
                Some(&1),
                "feed {text:?}"
            );
            assert!(skipped.examples[0].reason.contains("no indicator shape"));
        }
    }

    #[test]
    fn comments_become_metadata() {
        let (got, _) = read(
            "d41d8cd98f00b204e9800998ecf8427e;Empty file\n1.2.3.4 # scanner\n198.51.100.7 (C2 server)\n",
        );
        assert_eq!(
            got[0].2,
            vec![("comment".to_owned(), "Empty file".to_owned())]
        );
        assert_eq!(got[1].2, vec![("comment".to_owned(), "scanner".to_owned())]);
        assert_eq!(
            got[2].2,
            vec![("comment".to_owned(), "(C2 server)".to_owned())]
        );
    }

    #[test]
    fn large_feeds_parse_in_parallel_with_the_same_result() {
        let mut text = String::new();
        for i in 0..400_000u32 {
            text.push_str(&format!(
                "10.{}.{}.{} # n{i}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
            if i % 100_000 == 7 {
                text.push_str("0.0.0.0 not_a_domain\n");
            }
        }
        assert!(text.len() > PARALLEL_BYTES);
        let ctx = FeedContext::named("big");
        let whole = parse(&ctx, &text);
        let serial = parse_lines(&ctx, &text, 0);
        assert_eq!(whole.indicators, serial.indicators);
        assert_eq!(whole.skipped, serial.skipped);
        assert_eq!(whole.indicators.len(), 400_000);
        assert_eq!(whole.indicators[399_999].provenance.line, 400_004);
        assert_eq!(whole.skipped.count, 4);
    }

    #[test]
    fn bad_entries_are_skipped_with_line() {
        let (got, skipped) = read("1.2.3.4\nda39a3ee5e6b4b0d3255bfef95601890afd807091\nsha1\tnothex\n0.0.0.0 ok.example not_a_domain\nf0295f2e46cebffaf7892a5b33ba54122781c20bs\n");
        assert_eq!(got.len(), 2);
        assert_eq!(skipped.count, 4);
        assert_eq!(skipped.examples[0].line, 2);
        assert!(
            skipped.examples[0].reason.contains("41 hex digits"),
            "{:?}",
            skipped.examples[0]
        );
        assert_eq!(skipped.examples[1].line, 3);
        assert_eq!(skipped.examples[2].line, 4);
    }
}
