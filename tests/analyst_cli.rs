//! `iocd explain`, `iocd lookup` and the analyst options of `iocd scan`
//! (`--format`, `--group`, `--with-line`, `--parse`), as a user runs them.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;

use common::iocd;

fn tmp(name: &str, content: &[u8]) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let p = DIR
        .get_or_init(|| common::test_dir("analyst-cli"))
        .join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    iocd().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn docs(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every near-miss case of the shared contract (a case with no expected
/// hit): `explain` names the indicator and the boundary rule that stopped
/// it, or says the entry was not loaded and why.
#[test]
fn explain_names_the_rule_of_every_near_miss_case() {
    let Some(cases) = common::shared_cases() else {
        eprintln!("explain_names_the_rule_of_every_near_miss_case: no ../shared, not run");
        return;
    };
    let mut checked = 0;
    for (n, case) in cases.iter().enumerate() {
        if !case.hits.is_empty() {
            continue;
        }
        let name = case.name.as_str();
        let feed_file = tmp(
            &format!("case{n}.txt"),
            (case.feed.join("\n") + "\n").as_bytes(),
        );
        let line = case.line.as_str();
        let out = run(&["explain", "-q", "-i", feed_file.to_str().unwrap(), line]);
        assert!(out.status.success(), "{name}: {out:?}");
        let said = stdout(&out);
        assert!(said.ends_with("0 hits\n"), "{name}: {said}");
        let json = run(&[
            "explain",
            "-q",
            "--json",
            "-i",
            feed_file.to_str().unwrap(),
            line,
        ]);
        let ex: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let near = ex["near_misses"].as_array().unwrap();
        let not_loaded = ex["not_loaded"].as_array().unwrap();
        match name {
            // A MAC address holds no IPv6 token and no indicator's value.
            "not ipv6 mac" => {
                assert!(
                    near.is_empty() && ex["tokens"].as_array().unwrap().is_empty(),
                    "{name}: {said}"
                );
            }
            _ if !not_loaded.is_empty() => {
                for nl in not_loaded {
                    let nl = nl.as_str().unwrap();
                    assert!(
                        nl.contains("no indicator shape") || nl.contains("special-purpose"),
                        "{name}: {nl}"
                    );
                }
            }
            _ => {
                assert!(!near.is_empty(), "{name}: no near miss named: {said}");
                for m in near {
                    let rule = m["rule"].as_str().unwrap();
                    let ind = m["indicator"].as_str().unwrap();
                    // "type value (feed:line)"
                    let value = ind.split_once(' ').unwrap().1.rsplit_once(" (").unwrap().0;
                    assert!(
                        rule.starts_with(&format!("{value} is loaded but ")),
                        "{name}: {rule}"
                    );
                    assert!(said.contains(rule), "{name}: text and JSON agree");
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} near-miss cases");
}

/// The issue's own example, word for word.
#[test]
fn explain_longer_tld() {
    let feed = tmp("evil.txt", b"evil.com\n");
    let out = run(&[
        "explain",
        "-q",
        "-i",
        feed.to_str().unwrap(),
        "query evil.com.au A",
    ]);
    let said = stdout(&out);
    assert!(
        said.contains("evil.com.au: no indicator; evil.com is loaded but a host token must end at the label boundary"),
        "{said}"
    );
    let hit = run(&[
        "explain",
        "-q",
        "-i",
        feed.to_str().unwrap(),
        "query www.EVIL.com A",
    ]);
    let said = stdout(&hit);
    assert!(
        said.contains("host [6..18] www.evil.com: hit domain-name evil.com"),
        "{said}"
    );
    assert!(said.ends_with("1 hit\n"), "{said}");
}

#[test]
fn lookup_says_where_a_value_is_and_why_not() {
    let feed = tmp(
        "lookup.txt",
        b"198.51.100.0/24\nevil.example\nhxxp://bad[.]example/x\n10.1.1.1\n",
    );
    let stix = tmp(
        "lookup.json",
        br#"[{"type":"indicator","spec_version":"2.1","id":"indicator--9d2f1e8c-0000-4000-8000-000000000001","created":"2020-01-01T00:00:00Z","modified":"2020-01-01T00:00:00Z","valid_from":"2020-01-01T00:00:00Z","valid_until":"2021-01-01T00:00:00Z","pattern_type":"stix","pattern":"[ipv4-addr:value = '203.0.113.50']"},
{"type":"indicator","spec_version":"2.1","id":"indicator--9d2f1e8c-0000-4000-8000-000000000002","created":"2020-01-01T00:00:00Z","modified":"2020-01-01T00:00:00Z","valid_from":"2020-01-01T00:00:00Z","pattern_type":"stix","pattern":"[domain-name:value = 'c2.example']"}]"#,
    );
    let allow = tmp("allow.txt", b"sub.evil.example\n");
    let lookup = |v: &str| {
        let out = run(&[
            "lookup",
            "-q",
            "--json",
            "-i",
            feed.to_str().unwrap(),
            "-i",
            stix.to_str().unwrap(),
            "--allowlist",
            allow.to_str().unwrap(),
            v,
        ]);
        let l: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (out.status.code(), l)
    };
    let text = |l: &serde_json::Value, k: &str| l[k].to_string();

    let (code, l) = lookup("c2[.]example");
    assert_eq!(code, Some(0));
    assert_eq!(l["canonical"], "domain-name c2.example");
    assert!(
        text(&l, "active").contains("indicator--9d2f1e8c-0000-4000-8000-000000000002"),
        "{l}"
    );

    let (code, l) = lookup("hxxp://bad[.]example/x");
    assert_eq!(code, Some(0));
    assert!(text(&l, "active").contains("lookup.txt:3"), "{l}");

    let (code, l) = lookup("198.51.100.7");
    assert_eq!(code, Some(0), "matched by the network around it");
    assert!(
        text(&l, "also_matched_by").contains("198.51.100.0/24"),
        "{l}"
    );

    let (_, l) = lookup("sub.evil.example");
    assert!(
        text(&l, "inactive").contains("allowlisted by allowlist allow.txt"),
        "{l}"
    );

    let (code, l) = lookup("10.1.1.1");
    assert_eq!(code, Some(1));
    assert!(text(&l, "inactive").contains("too broad"), "{l}");
    assert!(text(&l, "inactive").contains("lookup.txt:4"), "{l}");

    let (code, l) = lookup("203.0.113.50");
    assert_eq!(code, Some(1));
    assert!(text(&l, "inactive").contains("expired"), "{l}");

    let (code, l) = lookup("unknown.example");
    assert_eq!(code, Some(1));
    assert!(text(&l, "inactive").contains("no feed holds"), "{l}");
}

/// `scan` has the daemon's choices: the same (line, indicator) pairs in
/// every shape.
#[test]
fn scan_formats_and_grouping_keep_the_pairs() {
    let feed = tmp(
        "scan-feed.txt",
        b"198.51.100.7\nevil.example\n203.0.113.9\n",
    );
    let log = tmp(
        "scan.log",
        b"a 198.51.100.7 evil.example\n<34>Nov 23 05:10:00 web1 sshd[7]: from 203.0.113.9\nnothing\n{\"dns\":{\"rrname\":\"evil.example\"}}\n",
    );
    let (f, l) = (feed.to_str().unwrap(), log.to_str().unwrap());
    let pairs = |docs: &[serde_json::Value], ecs: bool| -> BTreeSet<(u64, String)> {
        let mut out = BTreeSet::new();
        for d in docs {
            let (line, list) = if ecs {
                let i = &d["iocd"];
                let list = match i["indicators"].as_array() {
                    Some(a) => a.clone(),
                    None => vec![i["indicator"].clone()],
                };
                (i["line_number"].as_u64().unwrap(), list)
            } else {
                let list = match d["indicators"].as_array() {
                    Some(a) => a.clone(),
                    None => vec![d["indicator"].clone()],
                };
                (d["line_number"].as_u64().unwrap(), list)
            };
            for i in list {
                out.insert((line, i["value"].as_str().unwrap().to_owned()));
            }
        }
        out
    };
    let base = docs(&run(&["scan", "-q", "-i", f, l]));
    let want = pairs(&base, false);
    assert_eq!(want.len(), 4);
    for (args, ecs, n) in [
        (&["--group", "line"][..], false, 3),
        (&["--format", "ecs"][..], true, 4),
        (
            &["--format", "ecs", "--group", "line", "--with-line"][..],
            true,
            3,
        ),
    ] {
        let mut all = vec!["scan", "-q", "-i", f];
        all.extend_from_slice(args);
        all.push(l);
        let got = docs(&run(&all));
        assert_eq!(got.len(), n, "{args:?}");
        assert_eq!(pairs(&got, ecs), want, "{args:?}");
    }
    assert!(base[0].get("event").is_none(), "no line unless asked");
    let with = docs(&run(&[
        "scan",
        "-q",
        "--with-line",
        "--parse",
        "auto",
        "-i",
        f,
        l,
    ]));
    assert_eq!(with[0]["event"]["original"], "a 198.51.100.7 evil.example");
    assert_eq!(with[2]["log"]["syslog"]["hostname"], "web1");
    assert_eq!(with[2]["log"]["syslog"]["appname"], "sshd");
    assert!(with[2]["@timestamp"]
        .as_str()
        .unwrap()
        .contains("T05:10:00.000Z"));
    let json = docs(&run(&["scan", "-q", "--parse", "json", "-i", f, l]));
    assert_eq!(json[3]["matched"]["field"], "dns.rrname");
    let bad = run(&["scan", "-q", "--group", "feed", "-i", f, l]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Syslog headers as a real network carried them: Zeek's syslog.log of the
/// shared WRCCDC capture keeps each message with its facility and severity;
/// put back behind its `<PRI>`, every one parses, with the host and time
/// the message itself states.
#[test]
fn syslog_headers_of_the_shared_zeek_capture() {
    let Some(shared) = common::shared_dir() else {
        eprintln!("syslog_headers_of_the_shared_zeek_capture: no ../shared, not run");
        return;
    };
    let path = shared.join("data/logs/zeek_wrccdc2018_brimdata/json/syslog.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "syslog_headers_of_the_shared_zeek_capture: no {}, not run",
            path.display()
        );
        return;
    };
    let facilities = iocd::context::syslog::FACILITIES;
    let severities = [
        "EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG",
    ];
    let mut parsed = 0;
    for l in text.lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let f = facilities
            .iter()
            .position(|f| f.eq_ignore_ascii_case(r["facility"].as_str().unwrap()))
            .unwrap();
        let s = severities
            .iter()
            .position(|s| *s == r["severity"].as_str().unwrap())
            .unwrap();
        let message = r["message"].as_str().unwrap();
        let line = format!("<{}>{message}", f * 8 + s);
        let h = iocd::context::SyslogHeader::parse(line.as_bytes(), true)
            .unwrap_or_else(|| panic!("no header: {line}"));
        let fields: Vec<&str> = message.split(' ').collect();
        assert_eq!(h.hostname, Some(fields[2]), "{line}");
        assert_eq!(h.appname, Some(fields[3]), "{line}");
        assert_eq!(
            h.timestamp_ms,
            iocd::time::rfc3339_millis(fields[1]),
            "{line}"
        );
        assert_eq!((h.facility(), h.severity()), (Some(f as u8), Some(s as u8)));
        parsed += 1;
    }
    assert!(parsed > 2000, "{parsed} messages");
}
