//! Indicators too broad to match (`MATCHING.md`, "Indicators too broad to
//! match"): values that would fire on ordinary traffic, whatever feed format
//! they arrive in.
//!
//! The rule is applied to indicator feeds only. Allowlist entries are not
//! indicators (`10.0.0.0/8` in an allowlist still removes what it covers).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::IndicatorType;

/// Why an indicator is too broad to load. Each reason owns its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooBroad {
    /// An IPv4 network shorter than /8, or IPv6 shorter than /16.
    Network,
    /// An address or network inside special-purpose space.
    SpecialAddress,
    /// A `string` shorter than [`MIN_STRING_BYTES`].
    ShortString,
    /// A `regex` that matches the empty string (and so every line).
    EmptyRegex,
}

impl fmt::Display for TooBroad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TooBroad::Network => "network too broad",
            TooBroad::SpecialAddress => "special-purpose address",
            TooBroad::ShortString => "string shorter than 4 bytes",
            TooBroad::EmptyRegex => "regex matches the empty string",
        })
    }
}

/// Largest compiled size of one `regex` indicator. Ordinary regexes
/// compile to a few KiB; a Unicode class in a counted repetition (`\w{60}`)
/// compiles to megabytes and scans at a few MB/s (one cut `iocd scan` from
/// about 1,150 to 13-21 MB/s).
pub const MAX_REGEX_BYTES: usize = 256 << 10;

/// Slowest a regex may scan [`sample_lines`], in MB/s, before it is left
/// out: every line goes through it. Far below what ordinary regexes do
/// (hundreds of MB/s to GB/s), so a loaded machine does not push a sound
/// regex under it.
pub const MIN_REGEX_MB_PER_S: f64 = 10.0;

/// About 16 KB of ordinary log lines (syslog, web, Zeek, Windows shapes):
/// what a regex's cost is measured on.
pub fn sample_lines() -> &'static [u8] {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let shapes = [
            "Nov 23 05:10:{s:02} web{i} sshd[{p}]: Failed password for invalid user admin{i} from 10.{a}.{b}.{c} port {p} ssh2",
            "10.{a}.{b}.{c} - - [23/Nov/2026:05:10:{s:02} +0000] \"GET /static/app{i}.js?v={p} HTTP/1.1\" 200 {p} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
            "{{\"ts\":1700000{p}.{s},\"uid\":\"C{p}x{i}\",\"id.orig_h\":\"10.{a}.{b}.{c}\",\"id.resp_h\":\"192.0.2.{c}\",\"query\":\"host{i}.corp.example\",\"qtype_name\":\"A\"}}",
            "<13>1 2026-11-23T05:10:{s:02}Z dc{i} Microsoft-Windows-Security-Auditing {p} 4624 - An account was successfully logged on. Account Name: user{i} Workstation: WS{p}",
        ];
        let mut out = Vec::with_capacity(17 << 10);
        let mut i = 0u32;
        while out.len() < 16 << 10 {
            let shape = shapes[i as usize % shapes.len()];
            let line = shape
                .replace("{i}", &(i % 97).to_string())
                .replace("{p}", &(1000 + i * 37 % 60000).to_string())
                .replace("{a}", &(i % 256).to_string())
                .replace("{b}", &(i * 7 % 256).to_string())
                .replace("{c}", &(i * 13 % 256).to_string())
                .replace("{s:02}", &format!("{:02}", i % 60))
                .replace("{{", "{")
                .replace("}}", "}");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            i += 1;
        }
        out
    })
}

/// A regex's cost: its scan speed over [`sample_lines`] in MB/s (line by
/// line, best of three), or why it is not loaded: it does not compile,
/// compiles past [`MAX_REGEX_BYTES`], or scans slower than `floor_mb_s`.
/// For the size, the remedy is named: ASCII classes (`(?-u:\w)`) compile a
/// thousand times smaller. iocd does not narrow a feed's regex to ASCII by
/// itself, which would miss matches in non-ASCII lines without a word.
///
/// # Errors
/// The reason it is left out.
pub fn regex_cost(value: &str, floor_mb_s: f64) -> Result<f64, String> {
    let too_big = || {
        format!(
            "regex compiles past {} KiB: Unicode classes in counted repetitions (\\w{{60}}) do; (?-u:\\w) is ASCII-only and small",
            MAX_REGEX_BYTES >> 10
        )
    };
    // Compiling up to the size limit costs ~40 ms a regex, so a feed of
    // thousands of them would take minutes to refuse: the plainly too big
    // are refused from their syntax tree first.
    if let Ok(hir) = parse_regex(value) {
        if class_ranges_compiled(&hir) > MAX_CLASS_RANGES_COMPILED {
            return Err(too_big());
        }
    }
    let re = match regex::bytes::RegexBuilder::new(value)
        .size_limit(MAX_REGEX_BYTES)
        .build()
    {
        Ok(re) => re,
        Err(regex::Error::CompiledTooBig(_)) => return Err(too_big()),
        Err(e) => return Err(format!("regex does not compile: {e}")),
    };
    let sample = sample_lines();
    let mut best = std::time::Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let mut found = 0usize;
        for line in sample.split(|&b| b == b'\n') {
            found += re.find_iter(line).count();
        }
        std::hint::black_box(found);
        best = best.min(started.elapsed());
    }
    let mb_s = sample.len() as f64 / 1e6 / best.as_secs_f64().max(1e-9);
    if mb_s < floor_mb_s {
        return Err(format!(
            "regex scans ordinary log lines at {mb_s:.1} MB/s, under the {floor_mb_s} MB/s every line could bear"
        ));
    }
    Ok(mb_s)
}

/// `value` as the engine's byte regexes parse it (Unicode classes, and
/// free to match bytes that are not UTF-8).
fn parse_regex(value: &str) -> Result<regex_syntax::hir::Hir, String> {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(value)
        .map_err(|e| e.to_string())
}

/// Checks that `value` is a regex the engine accepts, without compiling
/// it: compiling a large one costs tens of milliseconds (thousands of them
/// would stall a load), and its size and speed are judged later, with
/// the entry's line, by [`regex_cost`].
///
/// # Errors
/// The parser's message.
pub fn check_regex_syntax(value: &str) -> Result<(), String> {
    parse_regex(value).map(drop)
}

/// Most Unicode class ranges a regex may compile, counting every copy a
/// counted repetition makes. Each range becomes several NFA states, so
/// past this the compiled size is far past [`MAX_REGEX_BYTES`] (`\w` has
/// ~770 ranges: `\w{60}` is ~46,000); below it, the compiler's own limit
/// decides.
const MAX_CLASS_RANGES_COMPILED: u64 = 20_000;

/// Unicode class ranges the compiler sees in `hir`: a repetition `{n,m}`
/// compiles its body `m` times (`n + 1` when unbounded). Saturating, so
/// nested repetitions cannot overflow.
fn class_ranges_compiled(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().len() as u64,
        HirKind::Repetition(r) => {
            let copies = r.max.unwrap_or(r.min.saturating_add(1)).max(1);
            class_ranges_compiled(&r.sub).saturating_mul(u64::from(copies))
        }
        HirKind::Capture(c) => class_ranges_compiled(&c.sub),
        HirKind::Concat(all) | HirKind::Alternation(all) => all
            .iter()
            .fold(0u64, |sum, h| sum.saturating_add(class_ranges_compiled(h))),
        HirKind::Empty
        | HirKind::Literal(_)
        | HirKind::Class(Class::Bytes(_))
        | HirKind::Look(_) => 0,
    }
}

/// Shortest `string` indicator loaded, in bytes.
pub const MIN_STRING_BYTES: usize = 4;

/// Special-purpose address space (IANA registries) minus the documentation
/// ranges, which never occur in real traffic and which examples use.
const SPECIAL: [&str; 17] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "100::/64",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// [`SPECIAL`], parsed once (a million-indicator feed asks for each).
fn special_nets() -> &'static [IpNet] {
    static NETS: std::sync::LazyLock<Vec<IpNet>> = std::sync::LazyLock::new(|| {
        SPECIAL
            .iter()
            .map(|s| s.parse().expect("constant network"))
            .collect()
    });
    &NETS
}

/// What the guard checks for one feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuardPolicy {
    /// Every rule (the default for indicator feeds).
    #[default]
    All,
    /// Every rule but the special-purpose address one: an internal list of
    /// compromised hosts (`allow_special_addresses = true`).
    AllowSpecialAddresses,
    /// No rule: allowlists, whose entries are not indicators.
    Off,
}

/// Why `(kind, value)` is too broad to load under `policy`, or `None`.
/// `value` is canonical for `kind`.
pub fn too_broad(kind: IndicatorType, value: &str, policy: GuardPolicy) -> Option<TooBroad> {
    if policy == GuardPolicy::Off {
        return None;
    }
    match kind {
        IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
            let net = match value.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => IpNet::from(value.parse::<IpAddr>().ok()?),
            };
            let min_len = if net.addr().is_ipv4() { 8 } else { 16 };
            if net.prefix_len() < min_len {
                return Some(TooBroad::Network);
            }
            let special =
                policy == GuardPolicy::All && special_nets().iter().any(|s| s.contains(&net));
            special.then_some(TooBroad::SpecialAddress)
        }
        IndicatorType::String => (value.len() < MIN_STRING_BYTES).then_some(TooBroad::ShortString),
        // Only a regex whose shortest match is empty can match an empty
        // line; the syntax tree says so without compiling (which costs tens
        // of milliseconds for a large regex), and only those few compile.
        IndicatorType::Regex => parse_regex(value)
            .is_ok_and(|hir| hir.properties().minimum_len() == Some(0))
            .then(|| {
                regex::bytes::RegexBuilder::new(value)
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
            })
            .is_some_and(|r| r.is_ok_and(|r| r.is_match(b"")))
            .then_some(TooBroad::EmptyRegex),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IndicatorType::*;

    #[test]
    fn regex_cost_is_measured_against_a_floor() {
        let mb_s = regex_cost("(?i)mimikatz", 0.0).expect("compiles");
        assert!(mb_s > 0.0);
        // No timing is asserted: an impossible floor shows the refusal.
        let why = regex_cost("(?i)mimikatz", f64::INFINITY).unwrap_err();
        assert!(why.contains("MB/s"), "{why}");
        assert!(sample_lines().len() >= 16 << 10);
        assert!(std::str::from_utf8(sample_lines())
            .unwrap()
            .contains("sshd["));
    }

    #[test]
    fn costly_regexes_are_named_and_ordinary_ones_pass() {
        for ok in [
            "evil\\.example",
            "\\d{1,3}\\.\\d{1,3}",
            "(?-u:\\w){60}q",
            ".{200}x",
            "(?i)malware[0-9]+\\.exe",
        ] {
            assert_eq!(regex_cost(ok, MIN_REGEX_MB_PER_S).err(), None, "{ok}");
        }
        let why = regex_cost("\\w{60}q", MIN_REGEX_MB_PER_S).expect_err("3 MiB compiled");
        assert!(why.contains("(?-u:"), "{why}");
        // A STIX LIKE of 10 KB became one anchored regex of that size.
        assert!(regex_cost(
            &format!("^{}$", "a_".repeat(5000).replace('_', ".{1,100}")),
            MIN_REGEX_MB_PER_S
        )
        .is_err());
    }

    /// The syntax-tree estimate only refuses what the compiler would: at
    /// and past its bound, the compiler's own size limit refuses too.
    #[test]
    fn regexes_refused_uncompiled_are_those_the_compiler_refuses() {
        let ranges = |p: &str| class_ranges_compiled(&parse_regex(p).unwrap());
        assert_eq!(ranges("(?-u:\\w){60}q"), 0);
        assert!(ranges("\\w") > 700, "{}", ranges("\\w"));
        // Nested repetitions multiply, saturating rather than overflowing.
        assert_eq!(
            ranges("(((((\\w{1000}){1000}){1000}){1000}){1000}){1000}"),
            u64::MAX
        );
        let smallest_refused = (1..100)
            .find(|n| ranges(&format!("\\w{{{n}}}")) > MAX_CLASS_RANGES_COMPILED)
            .unwrap();
        for n in [smallest_refused, smallest_refused + 1, 60] {
            let p = format!("\\w{{{n}}}q");
            let compiled = regex::bytes::RegexBuilder::new(&p)
                .size_limit(MAX_REGEX_BYTES)
                .build();
            assert!(
                matches!(compiled, Err(regex::Error::CompiledTooBig(_))),
                "{p}"
            );
            assert!(regex_cost(&p, MIN_REGEX_MB_PER_S)
                .unwrap_err()
                .contains("KiB"));
        }
    }

    #[test]
    fn table() {
        let all = GuardPolicy::All;
        let cases: &[(IndicatorType, &str, Option<TooBroad>)] = &[
            (Ipv4, "1.0.0.0/7", Some(TooBroad::Network)),
            (Ipv4, "1.0.0.0/8", None),
            (Ipv4, "0.0.0.0/0", Some(TooBroad::Network)),
            (Ipv6, "2a00::/15", Some(TooBroad::Network)),
            (Ipv6, "2a00::/16", None),
            (Ipv4, "10.1.2.3", Some(TooBroad::SpecialAddress)),
            (Ipv4, "10.1.0.0/16", Some(TooBroad::SpecialAddress)),
            (Ipv4, "8.0.0.0/7", Some(TooBroad::Network)),
            (Ipv4, "172.32.0.1", None),
            (Ipv4, "100.63.255.255", None),
            (Ipv4, "100.64.0.1", Some(TooBroad::SpecialAddress)),
            (Ipv4, "192.0.2.1", None),
            (Ipv4, "198.51.100.0/24", None),
            (Ipv4, "203.0.113.9", None),
            (Ipv4, "255.255.255.255", Some(TooBroad::SpecialAddress)),
            (Ipv6, "2001:db8::1", None),
            (Ipv6, "::1", Some(TooBroad::SpecialAddress)),
            (Ipv6, "fe80::1", Some(TooBroad::SpecialAddress)),
            (Ipv6, "fd00:1::/48", Some(TooBroad::SpecialAddress)),
            (String, "abc", Some(TooBroad::ShortString)),
            (String, "abcd", None),
            (String, "éé", None),
            (Regex, "a*", Some(TooBroad::EmptyRegex)),
            (Regex, "^", Some(TooBroad::EmptyRegex)),
            (Regex, "a+", None),
            // Shortest match empty, yet no match on an empty line.
            (Regex, "\\b", None),
            (Regex, "(?:\\b|x)", None),
            // Not broad; its size is regex_cost's to judge.
            (Regex, "\\w{60}q", None),
            (Domain, "a.b", None),
        ];
        for &(kind, value, want) in cases {
            assert_eq!(too_broad(kind, value, all), want, "{kind} {value}");
        }
    }

    #[test]
    fn policies() {
        let p = GuardPolicy::AllowSpecialAddresses;
        assert_eq!(too_broad(Ipv4, "10.1.2.3", p), None);
        assert_eq!(too_broad(Ipv4, "10.0.0.0/7", p), Some(TooBroad::Network));
        assert_eq!(too_broad(String, "ab", p), Some(TooBroad::ShortString));
        assert_eq!(too_broad(Ipv4, "0.0.0.0/0", GuardPolicy::Off), None);
    }
}
