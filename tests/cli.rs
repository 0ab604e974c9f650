//! `iocd scan` as a user runs it: the real binary, files and pipes.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use common::iocd;

/// A file of the CLI tests' shared directory.
fn tmp(name: &str, content: &[u8]) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let p = DIR.get_or_init(|| common::test_dir("cli")).join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = iocd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn hits(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("hit is one JSON object per line"))
        .collect()
}

const FEED: &str = "# test feed\n198.51.100.7 # scanner\nmalware.example\n44d88612fea8a8f36de82e1278abb02f;EICAR\n";

#[test]
fn stdin_to_json_hits() {
    let feed = tmp("feed.txt", FEED.as_bytes());
    let out = run(
        &["scan", "--indicators", feed.to_str().unwrap()],
        b"nothing here\nGET http://www.MALWARE.example/x from 198.51.100.7\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = hits(&out);
    assert_eq!(h.len(), 2);
    let d = &h[0];
    assert_eq!(d["input"], "-");
    assert_eq!(d["line_number"], 2);
    assert_eq!(d["indicator"]["value"], "malware.example");
    assert_eq!(d["indicator"]["type"], "domain-name");
    assert_eq!(d["indicator"]["feed"], "feed.txt");
    assert_eq!(d["indicator"]["feed_file"], "feed.txt");
    assert_eq!(d["indicator"]["feed_line"], 3);
    assert_eq!(d["matched"]["value"], "www.MALWARE.example");
    assert_eq!(d["matched"]["start"], 11);
    assert_eq!(d["matched"]["end"], 30);
    assert!(d["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(h[1]["indicator"]["comment"], "scanner");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "feed feed.txt (plain; 1 file): 3 indicators [ipv4-addr 1, domain-name 1, md5 1]"
        ),
        "{stderr}"
    );
}

#[test]
fn embedded_example_feed_matches_the_sample_log() {
    let log = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/sample.log"
    ))
    .unwrap();
    let out = run(&["scan"], &log);
    assert!(out.status.success());
    let lines: Vec<u64> = hits(&out)
        .iter()
        .map(|h| h["line_number"].as_u64().unwrap())
        .collect();
    // Line 2 (198.51.100.70) and line 4 (notmalware.example) are near misses.
    assert_eq!(lines, [1, 3, 5, 5, 5, 6, 6, 7, 8, 9, 10]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in example feed"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate"], b"").status.code(), Some(2));
    assert_eq!(
        run(
            &["scan", "--indicators", "x", "--max-line-bytes", "lots"],
            b""
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn unreadable_feed_exits_65_naming_it() {
    let out = run(&["scan", "--indicators", "/nonexistent/feed.txt"], b"");
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/feed.txt"));
}

#[test]
fn unreadable_input_exits_66_after_the_others() {
    let feed = tmp("feed66.txt", FEED.as_bytes());
    let log = tmp("log66.txt", b"198.51.100.7\n");
    let out = run(
        &[
            "scan",
            "-i",
            feed.to_str().unwrap(),
            "/nonexistent/log",
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(66));
    assert_eq!(hits(&out).len(), 1, "the readable input is still scanned");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/log"));
}

#[test]
fn bad_entries_warn_with_file_and_line_and_are_not_fatal() {
    let feed = tmp("bad.csv", b"date,user,type,value,tags\n2026-01-01,u,ip,07:01:24,#x\n2026-01-01,u,ip,198.51.100.7,#c2\n");
    let out = run(&["scan", "-i", feed.to_str().unwrap()], b"198.51.100.7\n");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.csv:2: skipped:") && stderr.contains("07:01:24"),
        "{stderr}"
    );
    let h = hits(&out);
    assert_eq!(h[0]["indicator"]["tags"], "#c2");
}

#[test]
fn many_blocks_keep_input_order_and_line_numbers() {
    let feed = tmp("order.txt", b"198.51.100.7\n");
    let mut log = Vec::new();
    let mut want = Vec::new();
    for i in 1..=120_000u64 {
        if i % 997 == 0 {
            log.extend_from_slice(b"padding padding padding padding src=198.51.100.7 padding padding padding padding\n");
            want.push(i);
        } else {
            log.extend_from_slice(format!("line {i} 198.51.100.{} padding padding padding padding padding padding padding\n", i % 7).as_bytes());
        }
    }
    let log = tmp("order.log", &log);
    let out = run(
        &[
            "scan",
            "-q",
            "--threads",
            "3",
            "-i",
            feed.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success());
    let got: Vec<u64> = hits(&out)
        .iter()
        .map(|h| h["line_number"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn long_lines_are_scanned_up_to_the_maximum() {
    let feed = tmp("long.txt", b"198.51.100.7\nmalware.example\n");
    let mut log = Vec::new();
    // Line 1: a hit inside the first 100 bytes, another past them.
    log.extend_from_slice(b"198.51.100.7 ");
    log.extend(std::iter::repeat_n(b'x', 200));
    log.extend_from_slice(b" malware.example\n");
    // Line 2: longer than a read block, a hit only at its very end.
    log.extend(std::iter::repeat_n(b'y', 3 << 20));
    log.extend_from_slice(b" malware.example\n");
    // Line 3: normal, after the long ones; its number must be right.
    log.extend_from_slice(b"to malware.example");
    let log = tmp("long.log", &log);
    let out = run(
        &[
            "scan",
            "--max-line-bytes",
            "100",
            "-i",
            feed.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success());
    let got: Vec<(u64, String)> = hits(&out)
        .iter()
        .map(|h| {
            (
                h["line_number"].as_u64().unwrap(),
                h["indicator"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "198.51.100.7".to_owned()),
            (3, "malware.example".to_owned())
        ]
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 lines, 2 hits, 2 truncated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crlf_nul_and_invalid_utf8() {
    let feed = tmp("bytes.txt", b"malware.example\n");
    let out = run(
        &["scan", "-i", feed.to_str().unwrap()],
        b"a\xff\x00malware.example\r\n\xc3\x28 malware.example",
    );
    assert!(out.status.success());
    let h = hits(&out);
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["line_number"], 2);
    assert_eq!(h[0]["matched"]["value"], "malware.example");
}

#[test]
fn allowlists_remove_indicators_at_load() {
    let feed = tmp(
        "allow-feed.txt",
        b"10.1.2.3\n198.51.100.7\nmail.google.com\nmalware.example\n",
    );
    let wl = tmp(
        "rfc1918.json",
        br#"{"name":"RFC1918","type":"cidr","list":["10.0.0.0/8","172.16.0.0/12"]}"#,
    );
    let mine = tmp("mine.txt", b"google.com\n");
    let out = run(
        &[
            "scan",
            "--allow-special-addresses",
            "-i",
            feed.to_str().unwrap(),
            "--allowlist",
            wl.to_str().unwrap(),
            "--allowlist",
            mine.to_str().unwrap(),
        ],
        b"10.1.2.3 198.51.100.7 mail.google.com malware.example\n",
    );
    assert!(out.status.success());
    let values: Vec<String> = hits(&out)
        .iter()
        .map(|h| h["indicator"]["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, ["198.51.100.7", "malware.example"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("allowlist rfc1918.json: removed 1 indicators"),
        "{stderr}"
    );
    assert!(
        stderr.contains("allowlist mine.txt: removed 1 indicators"),
        "{stderr}"
    );
}

#[test]
fn feed_directories_load_every_file() {
    let dir = common::test_dir("cli-feeddir");
    std::fs::write(dir.join("a.txt"), "198.51.100.7\n").unwrap();
    std::fs::write(dir.join("b.intel"), "#fields\tindicator\tindicator_type\tmeta.source\nmalware.example\tIntel::DOMAIN\tunit-test\n").unwrap();
    std::fs::write(dir.join(".hidden"), "192.0.2.1\n").unwrap();
    let out = run(
        &["scan", "-i", dir.to_str().unwrap()],
        b"192.0.2.1 198.51.100.7 malware.example\n",
    );
    let h = hits(&out);
    assert_eq!(h.len(), 2);
    // The feed is named by the argument; its files by their path in it.
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(h[1]["indicator"]["feed"], name);
    assert_eq!(h[1]["indicator"]["feed_file"], "b.intel");
    assert_eq!(h[1]["indicator"]["meta.source"], "unit-test");
}

#[test]
fn stix_bundle_hits_carry_stix_metadata() {
    let bundle = r#"{"type": "bundle", "id": "bundle--1", "objects": [
      {"type": "indicator", "spec_version": "2.1", "id": "indicator--aa", "created": "2026-01-01T00:00:00Z",
       "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z", "name": "C2 server",
       "indicator_types": ["malicious-activity"], "confidence": 85, "pattern_type": "stix",
       "pattern": "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7'] OR [domain-name:value = 'malware.example']",
       "object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]},
      {"type": "indicator", "spec_version": "2.1", "id": "indicator--bb", "created": "2026-01-01T00:00:00Z",
       "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-02-01T00:00:00Z",
       "pattern_type": "stix", "pattern": "[domain-name:value = 'expired.example']"}
    ]}"#;
    let feed = tmp("bundle.json", bundle.as_bytes());
    let out = run(
        &["scan", "-i", feed.to_str().unwrap()],
        b"to 198.51.100.7 and www.malware.example and expired.example\n",
    );
    assert!(out.status.success());
    let h = hits(&out);
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["indicator"]["stix_id"], "indicator--aa");
    assert_eq!(h[0]["indicator"]["tlp"], "amber");
    assert_eq!(h[0]["indicator"]["confidence"], "85");
    assert_eq!(h[1]["indicator"]["value"], "malware.example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feed bundle.json (stix; 1 file): 2 indicators")
            && stderr.contains("indicator--bb: expired"),
        "{stderr}"
    );
}

#[test]
fn real_stix_bundles_load() {
    let Some(shared) = common::shared_dir() else {
        return common::skipped("real_stix_bundles_load", "../shared/data is not present");
    };
    let week = shared.join("data/feeds/stix/tweetfeed/week.json");
    let f = iocd::feeds::load_path(&week).unwrap().pop().unwrap();
    assert_eq!(f.format, iocd::feeds::Format::Stix);
    assert_eq!((f.indicators.len(), f.skipped.count), (1536, 0));
    assert!(f
        .indicators
        .iter()
        .all(|i| i.provenance.meta.iter().any(|(k, _)| &**k == "stix_id")));
}

#[test]
fn real_misp_events_and_feed_load() {
    let Some(shared) = common::shared_dir() else {
        return common::skipped(
            "real_misp_events_and_feed_load",
            "../shared/data is not present",
        );
    };
    for dir in [
        "data/feeds/misp/eset_malware-ioc_events",
        "data/feeds/misp/tweetfeed_misp_feed",
    ] {
        let feeds = iocd::feeds::load_path(&shared.join(dir)).unwrap();
        assert!(feeds.len() > 20, "{dir}");
        for f in &feeds {
            assert_eq!(f.failure, None, "{}", f.path.display());
            assert_eq!(f.format, iocd::feeds::Format::Misp, "{}", f.path.display());
            assert!(f.indicators.iter().all(|i| i
                .provenance
                .meta
                .iter()
                .any(|(k, _)| &**k == "misp_event_uuid")));
        }
        let total: usize = feeds.iter().map(|f| f.indicators.len()).sum();
        assert!(total > 1000, "{dir}: {total}");
    }
}

/// A feed repository as cloned: nested folders, documentation, a `.git/`
/// folder, a symlink loop and a FIFO. Exactly the feed files load.
#[test]
fn feed_repositories_are_walked_as_cloned() {
    let dir = common::test_dir("cli-repo");
    let put = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("2024/05/ips.txt", "198.51.100.7\n198.51.100.0/24\n");
    // Listed again in another file of the same feed: one hit, the first file's.
    put(
        "2024/06/ips.txt",
        "198.51.100.8\n198.51.100.7\n198.51.100.0/24\n",
    );
    put("domains.txt", "malware.example\n");
    // OpenIOC next to it loads; other XML and binary files are not feeds.
    put(
        "vendor/report.ioc",
        r#"<?xml version="1.0" encoding="us-ascii"?>
<ioc xmlns="http://schemas.mandiant.com/2010/ioc" id="x"><definition>
<Indicator operator="OR" id="i1"><IndicatorItem id="a" condition="is">
<Context document="DnsEntryItem" search="DnsEntryItem/Host" type="mir"/>
<Content type="string">openioc.example</Content></IndicatorItem></Indicator>
</definition></ioc>"#,
    );
    put(
        "vendor/layout.xml",
        "<?xml version=\"1.0\"?><note><to>xml.example</to></note>",
    );
    put("vendor/blob.dat", "binary.example\0\0\0\x01\n");
    // STIX 2.0: `type` and `spec_version` after more than 64 KiB of objects.
    let padding = "x".repeat(70_000);
    put(
        "stix/late-type.json",
        &format!(
            r#"{{"id": "bundle--1", "objects": [{{"type": "indicator", "id": "indicator--1", "created": "2020-01-01T00:00:00Z", "modified": "2020-01-01T00:00:00Z", "labels": ["malicious-activity"], "description": "{padding}", "pattern": "[domain-name:value = 'stix20.example']", "valid_from": "2020-01-01T00:00:00Z"}}], "spec_version": "2.0", "type": "bundle"}}"#
        ),
    );
    put(
        "README.md",
        "Feeds from https://github.com/example/iocs, see 203.0.113.5\n",
    );
    put("LICENSE", "Copyright 2020 evil.example\n");
    put(".git/objects/ab/cdef", "203.0.113.6\n");
    std::os::unix::fs::symlink(&dir, dir.join("2024/loop")).unwrap();
    let fifo = dir.join("pipe.txt");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let line = b"198.51.100.7 198.51.100.8 malware.example 203.0.113.5 203.0.113.6 evil.example github.com openioc.example xml.example binary.example stix20.example\n";
    let out = run(&["scan", "-i", dir.to_str().unwrap()], line);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut got: Vec<(String, String)> = hits(&out)
        .iter()
        .map(|h| {
            (
                h["indicator"]["value"].as_str().unwrap().to_owned(),
                h["indicator"]["feed_file"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("198.51.100.0/24".to_owned(), "2024/05/ips.txt".to_owned()),
            ("198.51.100.7".to_owned(), "2024/05/ips.txt".to_owned()),
            ("198.51.100.8".to_owned(), "2024/06/ips.txt".to_owned()),
            ("malware.example".to_owned(), "domains.txt".to_owned()),
            ("openioc.example".to_owned(), "vendor/report.ioc".to_owned()),
            (
                "stix20.example".to_owned(),
                "stix/late-type.json".to_owned()
            ),
        ],
        "{stderr}"
    );
    assert!(stderr.contains("pipe.txt: a FIFO"), "{stderr}");
    assert!(stderr.contains("vendor/layout.xml"), "{stderr}");
    assert!(stderr.contains("vendor/blob.dat"), "{stderr}");
    // A feed's own globs: exclude a year.
    let out = run(
        &[
            "scan",
            "--exclude",
            "2024/06/**",
            "-i",
            dir.to_str().unwrap(),
        ],
        line,
    );
    let values: Vec<String> = hits(&out)
        .iter()
        .map(|h| h["indicator"]["value"].as_str().unwrap().to_owned())
        .collect();
    assert!(!values.contains(&"198.51.100.8".to_owned()), "{values:?}");
    assert!(values.contains(&"198.51.100.7".to_owned()));
}

/// `iocd scan … | head -1`: a closed output pipe ends the scan at once,
/// with exit 0 and no message, as grep and rg do. The input never ends
/// (a writer feeds stdin until iocd stops reading), so the scan cannot
/// end by running out of input: it must stop because its output closed.
/// (With a file that outran the queues, the reader once waited for ever
/// on a full job queue nobody drained.)
#[test]
fn scan_stops_quietly_when_its_output_closes() {
    let feed = tmp("pipe-feed.txt", b"malware.example\n");
    let mut child = iocd()
        .args(["scan", "-q", "-i", feed.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = b"to malware.example\n".repeat(10_000);
        // Bounded: 4 GiB is far past every queue; a hung scan fails below.
        (0..20_000u64).find(|_| stdin.write_all(&chunk).is_err())
    });
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("malware.example"));
    drop(stdout); // the `head` of the pipeline exits
                  // A hung scan stops reading, which would block the writer for ever:
                  // a generous bound turns a hang into a failure, never a stuck test.
    let exited = (0..600).find_map(|_| {
        let status = child.try_wait().unwrap();
        if status.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        status
    });
    if exited.is_none() {
        child.kill().unwrap();
    }
    let stopped_reading = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        exited.is_some(),
        "iocd still ran 60 s after its output closed"
    );
    assert!(
        stopped_reading.is_some(),
        "iocd read 4 GiB after its output closed"
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A full disk under the output is an I/O error (exit 74), said once.
#[test]
fn scan_exits_74_when_its_output_cannot_be_written() {
    let feed = tmp("full-feed.txt", b"malware.example\n");
    let input = tmp("full-input.log", &b"to malware.example\n".repeat(10_000));
    let out = iocd()
        .args([
            "scan",
            "-q",
            "-i",
            feed.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .stdout(
            std::fs::File::options()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("writing hits") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// The finding: one `\w{60}q` regex (3 MiB compiled, a few MB/s) slowed
/// every line, and 400 of them failed the whole engine build. Now each is
/// skipped with its reason and everything else loads.
#[test]
fn a_costly_regex_is_skipped_and_the_rest_loads() {
    let mut feed = String::from("malware.example\nregex\t(?-u:\\w){60}q\n");
    for i in 0..40 {
        feed.push_str(&format!("regex\t\\w{{60}}q{i}\n"));
    }
    let feed = tmp("costly.txt", feed.as_bytes());
    let out = run(
        &["scan", "-i", feed.to_str().unwrap()],
        b"to malware.example\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(hits(&out).len(), 1, "{stderr}");
    assert!(
        stderr.contains("2 indicators [domain-name 1, regex 1], 40 skipped [too_costly 40]"),
        "{stderr}"
    );
}

/// A feed file larger than max_bytes is not read past the limit: a failure
/// that names the limit, the rest of the feed loads.
#[test]
fn a_feed_file_past_max_bytes_is_refused() {
    let dir = common::test_dir("cli-max-bytes");
    std::fs::write(dir.join("small.txt"), "malware.example\n").unwrap();
    std::fs::write(dir.join("huge.txt"), "203.0.113.7\n".repeat(300_000)).unwrap();
    std::fs::write(
        dir.join("iocd.toml"),
        format!(
            "[feeds.f]\npath = {:?}\nmax_bytes = 1048576\n[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let out = common::check(&dir.join("iocd.toml"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: feed f (huge.txt): larger than max_bytes (1048576)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("feed f (plain; 2 files): 1 indicators"),
        "{stdout}"
    );
}
