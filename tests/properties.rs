//! Properties of the scanner over random input: it never panics, every hit
//! range lies inside the line, and indicators planted at token boundaries in
//! random noise are always found.

mod common;

use std::sync::OnceLock;

use iocd::lines::{LineRule, Lines};
use iocd::{Engine, ScanState};
use proptest::prelude::*;

/// One indicator of every kind, as a plain list.
const FEED: &[&str] = &[
    "198.51.100.7",
    "203.0.113.0/24",
    "2001:db8::7",
    "2001:db8:aa::/48",
    "malware.example",
    "http://dl.example/a.exe",
    "ceo@phish.example",
    "44d88612fea8a8f36de82e1278abb02f",
    "3395856ce81f2b7382dee72602f798b642f14140",
    "string\tEvilMutex",
];

/// How each planted value appears in a line, and what it must hit.
const PLANTS: &[(&str, &str)] = &[
    ("198.51.100.7", "198.51.100.7"),
    ("203.0.113.99", "203.0.113.0/24"),
    ("2001:DB8:0::7", "2001:db8::7"),
    ("2001:db8:aa:1::1", "2001:db8:aa::/48"),
    ("x.MALWARE.example", "malware.example"),
    ("http://DL.example:80/a.exe", "http://dl.example/a.exe"),
    ("CEO@phish.example", "ceo@phish.example"),
    (
        "44D88612FEA8A8F36DE82E1278ABB02F",
        "44d88612fea8a8f36de82e1278abb02f",
    ),
    (
        "3395856ce81f2b7382dee72602f798b642f14140",
        "3395856ce81f2b7382dee72602f798b642f14140",
    ),
    ("EvilMutex", "EvilMutex"),
];

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| common::engine(&FEED.join("\n")))
}

/// Noise made of the bytes that build tokens, so it often makes near misses.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"0123456789abcdefxyzABC.:-_@/%+ \t\"'<>()[]".to_vec()),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_ranges_are_in_bounds(line in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut st = ScanState::new();
        for m in engine().scan(&line, &mut st) {
            prop_assert!(m.start <= m.end && (m.end as usize) <= line.len());
        }
    }

    #[test]
    fn never_panics_on_token_noise(line in noise()) {
        let mut st = ScanState::new();
        for m in engine().scan(&line, &mut st) {
            prop_assert!(m.start <= m.end && (m.end as usize) <= line.len());
        }
    }

    #[test]
    fn planted_indicators_are_found(before in noise(), after in noise(), which in 0..PLANTS.len()) {
        let (planted, indicator) = PLANTS[which];
        let mut line = before.clone();
        line.extend_from_slice(b" ");
        line.extend_from_slice(planted.as_bytes());
        line.extend_from_slice(b" ");
        line.extend_from_slice(&after);
        // A newline in the noise would end the line before the plant.
        line.retain(|&b| b != b'\n');
        let e = engine();
        let mut st = ScanState::new();
        let found = e.scan(&line, &mut st).iter().any(|m| &*e.indicator(m.indicator).value == indicator);
        prop_assert!(found, "{} not found in {:?}", indicator, String::from_utf8_lossy(&line));
    }
}

/// One line for a block: noise, perhaps a planted value, perhaps a `\r`.
fn block_line() -> impl Strategy<Value = Vec<u8>> {
    (
        noise(),
        noise(),
        prop::option::of(0..PLANTS.len()),
        any::<bool>(),
    )
        .prop_map(|(mut line, after, plant, cr)| {
            if let Some(i) = plant {
                line.push(b' ');
                line.extend_from_slice(PLANTS[i].0.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&after);
            line.retain(|&b| b != b'\n');
            if cr {
                line.push(b'\r');
            }
            line
        })
}

/// What `scan` finds line by line in `block`, as `rule` reads each line:
/// (index, line as scanned, cut, matches) for the lines with hits, and the
/// line and cut counts.
type LinesFound = (Vec<(u64, Vec<u8>, bool, Vec<iocd::Match>)>, u64, u64);

fn line_by_line(block: &[u8], rule: LineRule) -> LinesFound {
    let mut pieces: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop(); // a block ending in \n has no line after it
    }
    let (mut found, mut cut) = (Vec::new(), 0);
    let mut st = ScanState::new();
    for (i, piece) in pieces.iter().enumerate() {
        let (line, was_cut) = rule.apply(piece);
        cut += u64::from(was_cut);
        let m = engine().scan(line, &mut st);
        if !m.is_empty() {
            found.push((i as u64, line.to_vec(), was_cut, m.to_vec()));
        }
    }
    (found, pieces.len() as u64, cut)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A block scanned at once gives each line exactly the hits the line
    /// alone gives: across windows (blocks past the window's 16 KiB come
    /// from repeating the lines), with `\r` endings, with and without a
    /// final newline, and with lines past the maximum, which are cut.
    #[test]
    fn a_block_scans_as_its_lines(
        lines in prop::collection::vec(block_line(), 0..120),
        repeat in 1usize..4,
        final_newline in any::<bool>(),
        max in prop_oneof![Just(iocd::scan::DEFAULT_MAX_LINE), 1usize..300],
    ) {
        let mut block = Vec::new();
        for _ in 0..repeat {
            for line in &lines {
                block.extend_from_slice(line);
                block.push(b'\n');
            }
        }
        if !final_newline {
            block.pop();
        }
        let rule = LineRule::new(max);
        let want = line_by_line(&block, rule);
        let mut st = ScanState::new();
        let mut found = Vec::new();
        let sum = engine().scan_lines(&block, rule, &mut st, |l| {
            found.push((l.index, block[l.range].to_vec(), l.cut, l.matches.to_vec()));
        });
        prop_assert_eq!((found, sum.lines, sum.cut), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A batch of lines as read (the daemon's, the retro ring's) gives each
    /// line exactly the hits the line alone gives, its `\r` kept, and a
    /// line holding a `\n` of its own (an octet-counted syslog message)
    /// stays one line.
    #[test]
    fn a_batch_scans_as_its_lines(
        lines in prop::collection::vec((block_line(), any::<bool>()), 0..120),
        repeat in 1usize..4,
    ) {
        let mut batch = Lines::default();
        let mut want = Vec::new();
        let mut st = ScanState::new();
        for _ in 0..repeat {
            for (line, inner_newline) in &lines {
                let mut line = line.clone();
                if *inner_newline {
                    line.insert(line.len() / 2, b'\n');
                }
                let m = engine().scan(&line, &mut st);
                if !m.is_empty() {
                    want.push((batch.len() as u64, line.clone(), m.to_vec()));
                }
                batch.push(&line);
            }
        }
        let mut found = Vec::new();
        engine().scan_batch(&batch, &mut st, |l| {
            assert!(!l.cut, "lines as read are never cut again");
            found.push((l.index, batch.bytes()[l.range].to_vec(), l.matches.to_vec()));
        });
        prop_assert_eq!(found, want);
    }
}

/// Feed-value-like strings: the characters indicators are made of.
fn feed_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            "0123456789abcdefxyzXYZ.:-_@/%+*[]()?#ü "
                .chars()
                .collect::<Vec<_>>(),
        ),
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// A canonical value classifies to itself: reading it again (from another
    /// feed, or after a reload) gives the same indicator.
    #[test]
    fn canonical_values_are_fixed_points(v in feed_value()) {
        use iocd::indicator::canon::{classify, refang};
        if let Some((kind, canon)) = classify(&refang(&v)) {
            if kind != iocd::IndicatorType::String {
                prop_assert_eq!(classify(&canon), Some((kind, canon.clone())), "from {:?}", v);
            }
        }
    }
}

/// Pattern-like text: the characters STIX patterns are made of.
fn pattern_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec!["[", "]", "(", ")", "'", "\\", ":", ".", "=", "!=", " AND ", " OR ", " IN ", " MATCHES ", " LIKE ", " ISSUBSET ", " FOLLOWEDBY ", " WITHIN ", ",", "ipv4-addr", "value", "file", "hashes", "'SHA-256'", "domain-name", "network-traffic", "dst_ref", "type", "1.2.3.4", "10.0.0.0/8", "*", "%", "_"]).prop_map(str::to_owned),
            1 => prop::collection::vec(prop::sample::select(b"az09 -".to_vec()), 0..4).prop_map(|v| String::from_utf8(v).expect("ascii")),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// The STIX pattern parser answers every input with indicators or a
    /// reason, never a panic.
    #[test]
    fn stix_patterns_never_panic(p in pattern_text()) {
        let _ = iocd::feeds::stix::pattern::indicators(&p);
        let _ = iocd::feeds::stix::pattern::indicators(&format!("[{p}]"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Hostile depth and size: every feed reader (detected by content)
    /// answers nesting far past any real feed, in inputs past 64 KiB, with
    /// a skip or a failure, never a stack overflow or a panic.
    #[test]
    fn deep_nesting_in_every_format_is_refused_not_a_crash(
        depth in 1_000usize..200_000,
        shape in 0usize..5,
    ) {
        let text = match shape {
            0 => format!("{{\"type\":\"bundle\",\"objects\":{}{}}}", "[".repeat(depth), "]".repeat(depth)),
            1 => format!("{{\"Event\":{}{}}}", "{\"a\":".repeat(depth), "}".repeat(depth)),
            2 => format!("<ioc>{}{}</ioc>", "<a>".repeat(depth), "</a>".repeat(depth)),
            3 => format!(
                "{{\"type\":\"bundle\",\"objects\":[{{\"type\":\"indicator\",\"id\":\"indicator--1\",\"pattern_type\":\"stix\",\"valid_from\":\"2020-01-01T00:00:00Z\",\"pattern\":\"{}[domain-name:value = 'a.example']{}\"}}]}}",
                "(".repeat(depth), ")".repeat(depth)
            ),
            _ => format!("{}\n", "(".repeat(depth)),
        };
        let feed = iocd::feeds::parse("deep", std::path::Path::new("deep"), &text);
        prop_assert!(feed.indicators.is_empty());
    }
}

/// Config-like text: tables, keys, values, brackets and quotes.
fn config_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "[feeds.f]\n",
            "[sources.s]\n",
            "[sinks.o]\n",
            "[engine]\n",
            "type = \"tcp\"\n",
            "type = \"stdout\"\n",
            "path = \"x\"\n",
            "url = \"https://h.example/\"\n",
            "address = \"127.0.0.1:1\"\n",
            "threads = 99999999999\n",
            "max_line_bytes = -1\n",
            "headers = { a = { env = \"X\" } }\n",
            "[",
            "]",
            "{",
            "}",
            "\"",
            "=",
            "\n",
            "[[a]]\n",
            "x = [[[[[[[[",
            "]]]]]]]]",
            "é",
            "\u{0}",
        ]),
        0..4000,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The config reader answers any text, past 64 KiB and nested deep,
    /// with a config or an error naming the file, never a panic.
    #[test]
    fn config_text_never_panics(text in config_text()) {
        if let Err(e) = iocd::config::Config::parse("fuzz.toml", &text) {
            prop_assert!(e.to_string().starts_with("fuzz.toml"), "{}", e);
        }
    }
}
