//! Differential test against the reference oracle (`../shared/tools/ioc_oracle.py`):
//! on every real log in `../shared/data/logs` and the real feeds the oracle
//! reads, plus a feed this test derives from the logs so every token kind
//! has hits, `iocd scan` must report exactly the oracle's (line, indicator)
//! pairs. Runs only when `../shared/data` exists and `python3` is installed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

const REAL_FEEDS: &[&str] = &[
    "feeds/ip/stamparm_ipsum.txt",
    "feeds/tweetfeed/tweetfeed_alltime_unique_domain.txt",
    "feeds/tweetfeed/tweetfeed_alltime_unique_url.txt",
    "feeds/tweetfeed/tweetfeed_alltime_unique_ip.txt",
    "feeds/tweetfeed/tweetfeed_alltime_unique_md5.txt",
    "feeds/tweetfeed/tweetfeed_alltime_unique_sha256.txt",
    "feeds/tweetfeed/blocklists/domains.txt",
    "feeds/tweetfeed/blocklists/hosts.txt",
    "feeds/tweetfeed/blocklists/ips.txt",
    "feeds/tweetfeed/blocklists/urls.txt",
    "feeds/loki_signature-base/c2-iocs.txt",
    "feeds/loki_signature-base/hash-iocs.txt",
    "feeds/hashes/eset_malware-ioc_all.md5",
    "feeds/hashes/eset_malware-ioc_all.sha1",
    "feeds/hashes/eset_malware-ioc_all.sha256",
];

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A feed of values sampled from the logs (every n-th candidate of loose
/// patterns, independent of iocd's scanner), with their near relatives:
/// parent domains, /24 and /16 networks, scheme-less URLs, upper-case hashes.
fn derive_feed(logs: &str) -> String {
    let mut out = BTreeSet::new();
    let mut sample =
        |pattern: &str, every: usize, f: &mut dyn FnMut(&str, &mut BTreeSet<String>)| {
            let re = Regex::new(pattern).unwrap();
            for (i, m) in re.find_iter(logs).enumerate() {
                if i % every == 0 && out.len() < 20_000 {
                    f(m.as_str(), &mut out);
                }
            }
        };
    sample(
        r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
        37,
        &mut |v, o| {
            o.insert(v.to_owned());
            let parts: Vec<&str> = v.split('.').collect();
            o.insert(format!("{}.{}.{}.0/24", parts[0], parts[1], parts[2]));
            if parts[3].ends_with('7') {
                o.insert(format!("{}.{}.0.0/16", parts[0], parts[1]));
            }
            if parts[3].ends_with('3') {
                o.insert(format!("{v}/32"));
            }
        },
    );
    sample(
        r"[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){2,7}",
        3,
        &mut |v, o| {
            if v.contains("::") || v.matches(':').count() >= 5 {
                o.insert(v.to_owned());
                if let Some((head, _)) = v.split_once("::") {
                    o.insert(format!("{head}::/32"));
                }
            }
        },
    );
    sample(
        r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>`\\]+"#,
        7,
        &mut |v, o| {
            o.insert(v.to_owned());
            if let Some((_, rest)) = v.split_once("://") {
                o.insert(format!("url\t{rest}"));
            }
        },
    );
    sample(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        2,
        &mut |v, o| {
            o.insert(v.to_owned());
        },
    );
    sample(
        r"\b(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})\b",
        11,
        &mut |v, o| {
            o.insert(v.to_uppercase());
        },
    );
    sample(
        r"\b(?:[A-Za-z0-9-]+\.)+(?:com|net|org|local|edu|gov|io|ru)\b",
        29,
        &mut |v, o| {
            o.insert(v.to_owned());
            if let Some((_, parent)) = v.split_once('.') {
                if parent.contains('.') {
                    o.insert(format!("*.{parent}"));
                }
            }
        },
    );
    for s in [
        "string\tMicrosoft-Windows-Sysmon",
        "string\tpowershell",
        "string\tsvchost.exe",
        "regex\t[Ll]sass\\.(exe|dmp)",
    ] {
        out.insert(s.to_owned());
    }
    out.into_iter()
        .filter(|v| !v.contains("::ffff:"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// (line, indicator value) → indicator type, from a JSON-lines hit file.
fn pairs(jsonl: &[u8]) -> BTreeMap<(u64, String), String> {
    let mut out = BTreeMap::new();
    for line in jsonl.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let h: serde_json::Value = serde_json::from_slice(line).expect("hit is JSON");
        let ind = &h["indicator"];
        out.insert(
            (
                h["line_number"].as_u64().unwrap(),
                ind["value"].as_str().unwrap().to_owned(),
            ),
            ind["type"].as_str().unwrap().to_owned(),
        );
    }
    out
}

#[test]
fn same_hits_as_oracle_on_real_data() {
    let Some(shared) = common::shared_dir() else {
        return common::skipped(
            "same_hits_as_oracle_on_real_data",
            "../shared/data is not present",
        );
    };
    if Command::new("python3").arg("--version").output().is_err() {
        return common::skipped(
            "same_hits_as_oracle_on_real_data",
            "python3 is not installed",
        );
    }
    let data = shared.join("data");
    let tmp = common::test_dir("differential");

    // One log, so line numbers are unambiguous: every real log, concatenated.
    let mut logs = Vec::new();
    for f in files_under(&data.join("logs")) {
        let mut bytes = std::fs::read(&f).unwrap();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        logs.extend_from_slice(&bytes);
    }
    let log_path = tmp.join("all.log");
    std::fs::write(&log_path, &logs).unwrap();
    let derived = tmp.join("derived.txt");
    std::fs::write(&derived, derive_feed(&String::from_utf8_lossy(&logs))).unwrap();

    let mut feeds: Vec<PathBuf> = REAL_FEEDS.iter().map(|f| data.join(f)).collect();
    feeds.extend(files_under(&data.join("feeds/zeek_intel")));
    feeds.push(derived);
    let feed_args: Vec<String> = feeds
        .iter()
        .flat_map(|f| ["--indicators".to_owned(), f.display().to_string()])
        .collect();

    let oracle = Command::new("python3")
        .arg(shared.join("tools/ioc_oracle.py"))
        .args(&feed_args)
        .arg(&log_path)
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let ours = common::iocd()
        .arg("scan")
        .arg("-q")
        .args(&feed_args)
        .arg(&log_path)
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "iocd failed: {}",
        String::from_utf8_lossy(&ours.stderr)
    );

    let (want, got) = (pairs(&oracle.stdout), pairs(&ours.stdout));
    let missed: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(10)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(10)
        .collect();
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for t in want.values() {
        *by_type.entry(t).or_default() += 1;
    }
    eprintln!(
        "differential: {} lines, {} oracle hits by type {by_type:?}",
        logs.split(|&b| b == b'\n').count() - 1,
        want.len()
    );
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}\nextra {extra:?}"
    );
    for t in [
        "ipv4-addr",
        "ipv6-addr",
        "domain-name",
        "url",
        "email-addr",
        "md5",
        "sha1",
        "sha256",
        "string",
        "regex",
    ] {
        assert!(
            by_type.get(t).copied().unwrap_or(0) > 0,
            "no {t} hits: the derived feed no longer covers every kind"
        );
    }
}
