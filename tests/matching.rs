//! Table-driven tests of the matching contract (`MATCHING.md`): every token
//! kind, every near miss it names, through feed parsing and the engine.

mod common;

use common::{engine, hits};

/// (case, feed, line, expected hits as "type value").
const CASES: &[(&str, &str, &str, &[&str])] = &[
    // IPv4
    (
        "ipv4 plain",
        "192.0.2.10",
        "src 192.0.2.10 dst 192.0.2.11",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 port",
        "192.0.2.10",
        "dst=192.0.2.10:8443",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 slash",
        "192.0.2.10",
        "net 192.0.2.10/24",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 parens",
        "192.0.2.10",
        "peer (192.0.2.10) [192.0.2.10]",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 key=value",
        "192.0.2.10",
        "ip=192.0.2.10,x=1",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 mapped",
        "192.0.2.10",
        "::ffff:192.0.2.10",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 sentence end",
        "192.0.2.10",
        "banned 192.0.2.10.",
        &["ipv4-addr 192.0.2.10"],
    ),
    (
        "ipv4 after hyphen",
        "192.0.2.10",
        "host-192.0.2.10",
        &["ipv4-addr 192.0.2.10"],
    ),
    ("ipv4 prefix digit", "1.2.3.4", "11.2.3.4", &[]),
    ("ipv4 suffix digit", "1.2.3.4", "1.2.3.45 11.2.3.45", &[]),
    ("ipv4 letter before", "1.2.3.4", "v1.2.3.4", &[]),
    ("ipv4 five parts", "1.2.3.4", "1.2.3.4.5", &[]),
    ("ipv4 version string", "1.2.3.4", "Chrome/1.2.3.4.12", &[]),
    (
        "ipv4 reverse dns",
        "1.2.3.4",
        "4.3.2.1.in-addr.arpa 1.2.3.4.in-addr.arpa",
        &[],
    ),
    (
        "ipv4 leading zero",
        "1.2.3.4",
        "01.2.3.4 1.02.3.4 1.2.3.04",
        &[],
    ),
    ("ipv4 big octet", "1.2.3.4", "1.2.3.256 1.2.3.4000", &[]),
    ("ipv4 underscore", "1.2.3.4", "x_1.2.3.4 1.2.3.4_x", &[]),
    // CIDR
    (
        "cidr v4 inside",
        "203.0.113.0/24",
        "to 203.0.113.99",
        &["ipv4-addr 203.0.113.0/24"],
    ),
    (
        "cidr v4 edges",
        "203.0.113.0/24",
        "203.0.112.255 203.0.113.0 203.0.113.255 203.0.114.0",
        &["ipv4-addr 203.0.113.0/24"],
    ),
    (
        "cidr v4 outside",
        "203.0.113.0/24",
        "203.0.112.255 203.0.114.0",
        &[],
    ),
    (
        "cidr host bits cleared",
        "203.0.113.77/24",
        "203.0.113.1",
        &["ipv4-addr 203.0.113.0/24"],
    ),
    (
        "cidr and member",
        "203.0.113.0/24\n203.0.113.5\n203.0.0.0/16",
        "203.0.113.5",
        &[
            "ipv4-addr 203.0.0.0/16",
            "ipv4-addr 203.0.113.0/24",
            "ipv4-addr 203.0.113.5",
        ],
    ),
    (
        "cidr /32",
        "203.0.113.5/32",
        "203.0.113.5 203.0.113.6",
        &["ipv4-addr 203.0.113.5/32"],
    ),
    (
        "cidr v6",
        "2001:db8:aa::/48",
        "2001:db8:aa:1::9 2001:db8:ab::1",
        &["ipv6-addr 2001:db8:aa::/48"],
    ),
    // IPv6
    (
        "ipv6 compressed",
        "2001:db8::7",
        "to 2001:db8::7 ok",
        &["ipv6-addr 2001:db8::7"],
    ),
    (
        "ipv6 expanded",
        "2001:db8::7",
        "2001:0DB8:0:0:0:0:0:0007",
        &["ipv6-addr 2001:db8::7"],
    ),
    (
        "ipv6 brackets",
        "2001:db8::7",
        "[2001:db8::7]:443",
        &["ipv6-addr 2001:db8::7"],
    ),
    (
        "ipv6 zone",
        "2001:db8::7",
        "2001:db8::7%eth0",
        &["ipv6-addr 2001:db8::7"],
    ),
    (
        "ipv6 neighbours",
        "2001:db8::7",
        "2001:db8::70 2001:db8::7:0 2001:db8::7g",
        &[],
    ),
    (
        "ipv6 not mac or time",
        "2001:db8::7",
        "00:1a:2b:3c:4d:5e 10:22:33",
        &[],
    ),
    (
        "time is shapeless, not loaded from a plain list",
        "10:22:33",
        "at 10:22:33",
        &[],
    ),
    // Domains
    (
        "domain exact",
        "malware.example",
        "GET malware.example",
        &["domain-name malware.example"],
    ),
    (
        "domain subdomain",
        "malware.example",
        "x.y.malware.example",
        &["domain-name malware.example"],
    ),
    (
        "domain case and root dot",
        "malware.example",
        "WWW.MALWARE.EXAMPLE.",
        &["domain-name malware.example"],
    ),
    (
        "domain letter prefix",
        "malware.example",
        "notmalware.example",
        &[],
    ),
    (
        "domain longer tld",
        "malware.example",
        "malware.example.net",
        &[],
    ),
    (
        "domain hyphen join",
        "malware.example",
        "malware.example-cdn.net",
        &[],
    ),
    (
        "domain underscore join",
        "malware.example",
        "malware.example_old",
        &[],
    ),
    (
        "domain in url and email",
        "malware.example",
        "https://cdn.malware.example:8443/a bob@malware.example",
        &["domain-name malware.example"],
    ),
    (
        "domain parent and child",
        "malware.example\nwww.malware.example",
        "www.malware.example",
        &[
            "domain-name malware.example",
            "domain-name www.malware.example",
        ],
    ),
    (
        "domain wildcard",
        "*.malware.example",
        "a.malware.example",
        &["domain-name malware.example"],
    ),
    (
        "domain defanged",
        "malware[.]example",
        "malware.example",
        &["domain-name malware.example"],
    ),
    (
        "domain idn",
        "bücher.example",
        "xn--bcher-kva.example",
        &["domain-name xn--bcher-kva.example"],
    ),
    (
        "hosts file",
        "0.0.0.0 ads.example trk.example",
        "trk.example",
        &["domain-name trk.example"],
    ),
    // URLs
    (
        "url exact",
        "http://dl.example/a.exe",
        "GET http://dl.example/a.exe 200",
        &["url http://dl.example/a.exe"],
    ),
    (
        "url host case default port",
        "http://dl.example/a.exe",
        "http://DL.EXAMPLE:80/a.exe",
        &["url http://dl.example/a.exe"],
    ),
    (
        "url other port",
        "http://dl.example/a.exe",
        "http://dl.example:8080/a.exe",
        &[],
    ),
    (
        "url trailing punctuation",
        "http://dl.example/a.exe",
        "(http://dl.example/a.exe).",
        &["url http://dl.example/a.exe"],
    ),
    (
        "url in quotes",
        "http://dl.example/a.exe",
        "u=\"http://dl.example/a.exe\"",
        &["url http://dl.example/a.exe"],
    ),
    (
        "url longer path",
        "http://dl.example/a.exe",
        "http://dl.example/a.exe2",
        &[],
    ),
    (
        "url query",
        "http://dl.example/a.exe",
        "http://dl.example/a.exe?x=1",
        &[],
    ),
    (
        "url path case",
        "http://dl.example/a.exe",
        "http://dl.example/A.EXE",
        &[],
    ),
    (
        "url empty path",
        "https://dl.example",
        "https://dl.example/ and https://dl.example",
        &["url https://dl.example/"],
    ),
    (
        "url defanged",
        "hxxps://dl[.]example/p",
        "https://dl.example/p",
        &["url https://dl.example/p"],
    ),
    (
        "url scheme-less typed",
        "url\tdl.example/p",
        "ftp://dl.example/p https://dl.example/p",
        &["url dl.example/p"],
    ),
    // Email
    (
        "email",
        "ceo@phish.example",
        "from CEO@Phish.Example",
        &["email-addr ceo@phish.example"],
    ),
    (
        "email prefix",
        "ceo@phish.example",
        "from xceo@phish.example",
        &[],
    ),
    (
        "email longer host",
        "ceo@phish.example",
        "ceo@phish.example.org",
        &[],
    ),
    // Hashes
    (
        "md5",
        "44d88612fea8a8f36de82e1278abb02f",
        "md5=44D88612FEA8A8F36DE82E1278ABB02F",
        &["md5 44d88612fea8a8f36de82e1278abb02f"],
    ),
    (
        "md5 in longer hex",
        "44d88612fea8a8f36de82e1278abb02f",
        "44d88612fea8a8f36de82e1278abb02f0",
        &[],
    ),
    (
        "md5 after letter",
        "44d88612fea8a8f36de82e1278abb02f",
        "g44d88612fea8a8f36de82e1278abb02f",
        &[],
    ),
    (
        "sha1",
        "3395856ce81f2b7382dee72602f798b642f14140",
        "sha1:3395856ce81f2b7382dee72602f798b642f14140;",
        &["sha1 3395856ce81f2b7382dee72602f798b642f14140"],
    ),
    (
        "sha256 prefix no md5",
        "275a021bbfb6489e54d471899f7db9d1",
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
        &[],
    ),
    (
        "loki hash",
        "3395856ce81f2b7382dee72602f798b642f14140;EICAR",
        "3395856ce81f2b7382dee72602f798b642f14140",
        &["sha1 3395856ce81f2b7382dee72602f798b642f14140"],
    ),
    // Strings and regexes
    (
        "string case-sensitive",
        "string\tEvilAgent/1.0",
        "ua=EvilAgent/1.0 ua=evilagent/1.0",
        &["string EvilAgent/1.0"],
    ),
    (
        "string lower miss",
        "string\tEvilAgent/1.0",
        "ua=evilagent/1.0",
        &[],
    ),
    (
        "string substring",
        "string\tEvilMutex",
        "Global\\EvilMutexV2",
        &["string EvilMutex"],
    ),
    (
        "strings overlapping",
        "string\tEvil\nstring\tEvilMutex",
        "EvilMutex",
        &["string Evil", "string EvilMutex"],
    ),
    (
        "regex",
        "regex\tpowershell(\\.exe)? -enc [A-Za-z0-9+/=]{8,}",
        "powershell.exe -enc SQBFAFgAIAAo",
        &["regex powershell(\\.exe)? -enc [A-Za-z0-9+/=]{8,}"],
    ),
    // Feed line forms
    (
        "ipsum tsv",
        "198.51.100.3\t7",
        "198.51.100.3",
        &["ipv4-addr 198.51.100.3"],
    ),
    (
        "ip:port feed",
        "198.51.100.3:8080",
        "198.51.100.3:22",
        &["ipv4-addr 198.51.100.3"],
    ),
    (
        "comments",
        "198.51.100.3 # scanner\n198.51.100.0/28 ; drop",
        "198.51.100.3",
        &["ipv4-addr 198.51.100.0/28", "ipv4-addr 198.51.100.3"],
    ),
    (
        "many kinds one line",
        "198.51.100.3\nmalware.example\n44d88612fea8a8f36de82e1278abb02f",
        "198.51.100.3 malware.example 44d88612fea8a8f36de82e1278abb02f",
        &[
            "domain-name malware.example",
            "ipv4-addr 198.51.100.3",
            "md5 44d88612fea8a8f36de82e1278abb02f",
        ],
    ),
    // What a plain list may load, and what is too broad to match
    (
        "url without scheme: host:port/path",
        "Evil.Example:8080/gate.php",
        "GET https://evil.example:8080/gate.php and http://evil.example/gate.php",
        &["url evil.example:8080/gate.php"],
    ),
    (
        "value then a comment",
        "185[.]196[.]10[.]136 (C2 server)",
        "conn to 185.196.10.136:443",
        &["ipv4-addr 185.196.10.136"],
    ),
    (
        "private address not loaded",
        "10.1.2.3\n192.168.0.0/16\n198.51.100.3",
        "10.1.2.3 192.168.4.4 198.51.100.3",
        &["ipv4-addr 198.51.100.3"],
    ),
    (
        "network shorter than /8 not loaded",
        "8.0.0.0/7\n2a00::/12\n9.0.0.0/8",
        "9.9.9.9 8.8.8.8 2a00::1",
        &["ipv4-addr 9.0.0.0/8"],
    ),
    (
        "short string and empty regex not loaded",
        "string\tabc\nregex\tx*\nstring\tabcd",
        "abcd",
        &["string abcd"],
    ),
];

#[test]
fn contract_table() {
    let mut failures = Vec::new();
    for (name, feed, line, want) in CASES {
        let got = hits(&engine(feed), line.as_bytes());
        let got: Vec<String> = got.into_iter().map(|(t, v)| format!("{t} {v}")).collect();
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bytes_not_text() {
    let e = engine("198.51.100.3\nmalware.example\nstring\tNeedle");
    let mut line = b"\xff\xfe\x00 198.51.100.3\x00malware.example\xc3(Needle".to_vec();
    line.extend_from_slice(&[0x80; 5]);
    let got = hits(&e, &line);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn hit_ranges_point_at_tokens() {
    let e = engine("malware.example\n198.51.100.0/24");
    let line = b"q WWW.Malware.Example. from 198.51.100.9";
    let mut st = iocd::ScanState::new();
    let ranges: Vec<&[u8]> = e
        .scan(line, &mut st)
        .iter()
        .map(|m| &line[m.start as usize..m.end as usize])
        .collect();
    assert_eq!(ranges, [&b"WWW.Malware.Example"[..], b"198.51.100.9"]);
}

#[test]
fn one_hit_per_indicator_per_line() {
    let e = engine("198.51.100.3\nstring\tEvil");
    assert_eq!(hits(&e, b"198.51.100.3 198.51.100.3 EvilEvil").len(), 2);
}

#[test]
fn same_value_in_two_feeds_hits_for_both() {
    let mut inds = iocd::feeds::parse(
        "a",
        std::path::Path::new("a"),
        "198.51.100.3\n198.51.100.3\n",
    )
    .indicators;
    inds.extend(iocd::feeds::parse("b", std::path::Path::new("b"), "198.51.100.3\n").indicators);
    let e = iocd::Engine::build(inds, &Default::default());
    assert_eq!(e.stats().duplicates, 1);
    let mut st = iocd::ScanState::new();
    let feeds: Vec<String> = e
        .scan(b"198.51.100.3", &mut st)
        .iter()
        .map(|m| e.indicator(m.indicator).provenance.feed.to_string())
        .collect();
    assert_eq!(feeds.len(), 2);
    assert!(feeds.contains(&"a".to_owned()) && feeds.contains(&"b".to_owned()));
}

#[test]
fn bloom_fronted_sets_find_the_same_hits() {
    let feed = "198.51.100.3\nmalware.example\nhttp://dl.example/a\nceo@phish.example\n44d88612fea8a8f36de82e1278abb02f\n2001:db8::7";
    let line = b"198.51.100.3 a.malware.example http://dl.example/a ceo@phish.example 44d88612fea8a8f36de82e1278abb02f 2001:db8::7 198.51.100.4";
    let plain = hits(&common::engine(feed), line);
    let bloomed = common::engine_with(feed, &iocd::EngineOptions { bloom_min_keys: 1 });
    assert_eq!(bloomed.stats().bloom_sets, 6);
    assert_eq!(hits(&bloomed, line), plain);
    assert_eq!(plain.len(), 6);
}

/// The shared worked cases, when `../shared` is present.
#[test]
fn shared_worked_cases() {
    let Some(cases) = common::shared_cases() else {
        return common::skipped("shared_worked_cases", "../shared/spec is not present");
    };
    let mut n = 0;
    for case in cases {
        let got = hits(&engine(&case.feed.join("\n")), case.line.as_bytes());
        let mut want: Vec<(String, String)> = case
            .hits
            .iter()
            .map(|h| {
                (
                    h["type"].as_str().unwrap().to_owned(),
                    h["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "case {}", case.name);
        n += 1;
    }
    assert!(n >= 60, "only {n} cases read");
}

/// Past a handful of literals the engine switches from one SIMD search per
/// literal to Aho-Corasick; both must find every literal, nested ones too.
#[test]
fn few_and_many_literals_find_the_same() {
    let names: Vec<String> = (0..20).map(|i| format!("string\tMutex{i:02}")).collect();
    let mut feed = names.join("\n");
    feed.push_str("\nstring\tEvil\nstring\tEvilMutex07\nstring\tex2x");
    let line = b"Global\\EvilMutex07 and Mutex19; Mutex07 again; no mutex2x";
    let want = [
        "string Evil",
        "string EvilMutex07",
        "string Mutex07",
        "string Mutex19",
        "string ex2x",
    ];
    let many = engine(&feed);
    let got: Vec<String> = hits(&many, line)
        .into_iter()
        .map(|(t, v)| format!("{t} {v}"))
        .collect();
    assert_eq!(got, want);
    let few = engine("string\tEvil\nstring\tEvilMutex07\nstring\tMutex07\nstring\tMutex19\nstring\tex2x\nstring\tMutex99");
    let got: Vec<String> = hits(&few, line)
        .into_iter()
        .map(|(t, v)| format!("{t} {v}"))
        .collect();
    assert_eq!(got, want);
}
