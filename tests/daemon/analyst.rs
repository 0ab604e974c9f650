//! Hits an analyst can act on (issue 10): grouping, suppression, context
//! from the line (syslog headers from real `logger`, peers, file path and
//! offset, the JSON field that held the token).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use super::common;
use super::harness::*;

const FEED: &str = "198.51.100.7\nmalware.example\n203.0.113.9\n";

/// Lines with repeats: the same indicators over and over, some lines
/// holding two.
fn repeated_input() -> String {
    let mut s = String::new();
    for i in 0..60 {
        match i % 4 {
            0 => s.push_str(&format!("{i} conn to 198.51.100.7\n")),
            1 => s.push_str(&format!("{i} dns malware.example from 203.0.113.9\n")),
            2 => s.push_str(&format!("{i} nothing here 198.51.100.8\n")),
            _ => s.push_str(&format!("{i} again 198.51.100.7 and malware.example\n")),
        }
    }
    s
}

/// Runs the daemon on stdin to its end with `extra` config; every hit.
fn run_stdin(dir: &Path, extra: &str, input: &str) -> Vec<serde_json::Value> {
    // Top-level keys (state_dir) must come before the tables.
    let (top, extra) = match extra.split_once("\n[") {
        Some((top, rest)) if top.starts_with("state_dir") => {
            (format!("{top}\n"), format!("[{rest}"))
        }
        _ => (String::new(), extra.to_owned()),
    };
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = format!(
        "{top}{}[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\n{extra}",
        feed_config(&dir.join("feeds"))
    );
    let mut d = Daemon::start(dir, &config);
    let mut stdin = d.child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let (status, hits) = d.finish();
    assert!(status.success(), "{status}");
    hits
}

/// (line number, indicator) of every hit, grouped or not.
fn pairs(hits: &[serde_json::Value]) -> BTreeSet<(u64, String)> {
    let mut out = BTreeSet::new();
    for h in hits {
        let line = h["line_number"].as_u64().unwrap();
        match h["indicators"].as_array() {
            Some(group) => {
                for i in group {
                    out.insert((line, i["value"].as_str().unwrap().to_owned()));
                }
            }
            None => {
                out.insert((line, h["indicator"]["value"].as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

#[test]
fn grouping_and_suppression_change_counts_not_pairs() {
    let dir = test_dir("analyst-grouping");
    let input = repeated_input();
    let each = run_stdin(&dir.join("each"), "", &input);
    let by_line = run_stdin(&dir.join("line"), "[output]\ngroup = \"line\"\n", &input);
    let all = pairs(&each);
    // 15 lines of each shape; shape 2 has no hit.
    assert_eq!(all.len(), 15 + 30 + 30);
    assert_eq!(each.len(), all.len());
    assert_eq!(
        pairs(&by_line),
        all,
        "grouping by line loses or adds no pair"
    );
    assert_eq!(by_line.len(), 45, "one document per line with hits");

    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let suppress = format!(
        "state_dir = {:?}\n[suppress]\nwindow_secs = 300\nkey = [\"indicator\", \"input\"]\n",
        state.display().to_string()
    );
    let first = run_stdin(&dir.join("s1"), &suppress, &input);
    let kept = pairs(&first);
    assert!(kept.is_subset(&all));
    // One hit per indicator key inside the window: the first sighting.
    let values: Vec<&str> = first
        .iter()
        .map(|h| h["indicator"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["198.51.100.7", "malware.example", "203.0.113.9"]);
    assert_eq!(first[0]["line_number"], 1);
    assert!(state.join("suppress.json").exists());
    // A restart inside the window does not re-alert on everything.
    let again = run_stdin(&dir.join("s2"), &suppress, &input);
    assert!(again.is_empty(), "re-alerted after restart: {again:?}");
}

/// The shared Zeek and Windows logs with the shared feeds: the numbers of
/// documents before and after grouping and suppression (for the report;
/// the assertions are the same invariants as above).
#[test]
fn shared_logs_grouping_and_suppression_counts() {
    let Some(shared) = common::shared_dir() else {
        eprintln!("shared_logs_grouping_and_suppression_counts: no ../shared/data, not run");
        return;
    };
    let data = shared.join("data");
    let logs = [
        data.join("logs/zeek_wrccdc2018_brimdata/json"),
        data.join("logs/otrf_security-datasets"),
    ];
    if !logs.iter().all(|p| p.exists()) || !data.join("feeds").exists() {
        eprintln!("shared_logs_grouping_and_suppression_counts: no shared logs or feeds, not run");
        return;
    }
    let mut files = Vec::new();
    let mut todo: Vec<std::path::PathBuf> = logs.to_vec();
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(p);
        }
    }
    files.sort();
    let mut input = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        // Text logs only (the Windows datasets are JSON lines).
        if bytes.iter().take(1024).any(|&b| b == 0) {
            continue;
        }
        input.extend_from_slice(&bytes);
        if !input.ends_with(b"\n") {
            input.push(b'\n');
        }
    }
    let input = String::from_utf8_lossy(&input).into_owned();
    let dir = test_dir("analyst-shared");
    let feed_cfg = format!(
        "[feeds.shared]\npath = {:?}\n",
        data.join("feeds").display().to_string()
    );
    let run = |name: &str, extra: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let config = format!(
            "{feed_cfg}[sources.in]\ntype = \"stdin\"\nparse = \"json\"\n[sinks.out]\ntype = \"stdout\"\n{extra}"
        );
        let mut daemon = Daemon::start(&d, &config);
        let mut stdin = daemon.child.stdin.take().unwrap();
        let text = input.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        let (status, hits) = daemon.finish();
        writer.join().unwrap();
        assert!(status.success());
        hits
    };
    let each = run("each", "");
    let by_line = run("line", "[output]\ngroup = \"line\"\n");
    let suppressed = run("suppress", "[suppress]\nwindow_secs = 300\n");
    assert_eq!(pairs(&by_line), pairs(&each));
    assert!(pairs(&suppressed).is_subset(&pairs(&each)));
    eprintln!(
        "shared logs ({} lines): {} hit documents; {} grouped by line; {} with a 300 s suppression window",
        input.lines().count(),
        each.len(),
        by_line.len(),
        suppressed.len()
    );
}

/// Real `logger` in both RFC formats, over TCP (octet-counted) and UDP:
/// hits carry the syslog header, the event's own time, and the peer.
#[test]
fn syslog_headers_from_logger_over_tcp_and_udp() {
    let test = "syslog_headers_from_logger_over_tcp_and_udp";
    if !common::installed("logger", test) {
        return;
    }
    let dir = test_dir("analyst-logger");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let (tcp, udp) = (free_port(), free_port());
    let config = format!(
        "{}[sources.tcp]\ntype = \"tcp\"\naddress = \"127.0.0.1:{tcp}\"\nparse = \"auto\"\n[sources.udp]\ntype = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nparse = \"syslog\"\n[sinks.out]\ntype = \"stdout\"\nformat = \"ecs\"\n",
        feed_config(&dir.join("feeds"))
    );
    let d = Daemon::start(&dir, &config);
    let sends = [
        ("--rfc5424", "-T", tcp, "sshd5424"),
        ("--rfc3164", "-T", tcp, "sshd3164"),
        ("--rfc5424", "-d", udp, "cron5424"),
        ("--rfc3164", "-d", udp, "cron3164"),
    ];
    for (rfc, proto, port, tag) in sends {
        let ok = std::process::Command::new("logger")
            .args([rfc, proto, "-n", "127.0.0.1", "-P", &port.to_string()])
            .args(["-t", tag, "--id=4242", "-p", "auth.warning"])
            .arg("Failed password for root from 198.51.100.7 port 22")
            .status()
            .unwrap()
            .success();
        assert!(ok, "logger {rfc} {proto}");
    }
    let hits = d.read_hits(4);
    let mut tags = BTreeSet::new();
    for h in &hits {
        let sl = &h["log"]["syslog"];
        let tag = sl["appname"]
            .as_str()
            .unwrap_or_else(|| panic!("no appname: {h}"));
        tags.insert(tag.to_owned());
        assert_eq!(sl["procid"], "4242", "{h}");
        assert_eq!(sl["facility"]["name"], "auth", "{h}");
        assert_eq!(sl["severity"]["name"], "Warning", "{h}");
        assert!(
            sl["hostname"].as_str().is_some_and(|s| !s.is_empty()),
            "{h}"
        );
        if tag.ends_with("5424") {
            assert_eq!(sl["version"], "1", "{h}");
        }
        assert_eq!(h["source"]["ip"], "127.0.0.1", "{h}");
        assert!(h["source"]["port"].as_u64().is_some_and(|p| p > 0), "{h}");
        assert!(h["event"]["ingested"].is_string(), "{h}");
        assert!(h["@timestamp"].is_string(), "{h}");
        let original = h["event"]["original"].as_str().unwrap();
        assert!(
            original.starts_with("<36>"),
            "the line stays whole: {original}"
        );
        assert_eq!(
            h["threat"]["enrichments"][0]["indicator"]["ip"],
            "198.51.100.7"
        );
    }
    assert_eq!(
        tags,
        BTreeSet::from(["sshd5424", "sshd3164", "cron5424", "cron3164"].map(String::from))
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// A followed file puts its path and each line's byte offset in hits; a
/// JSON source names the field that held the token.
#[test]
fn file_path_offset_and_json_field() {
    let dir = test_dir("analyst-file-json");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let log = dir.join("conn.log");
    let lines = [
        r#"{"ts":1700000000.1,"uid":"C1","id.orig_h":"10.0.0.5","id.resp_h":"203.0.113.9","id.resp_p":443}"#,
        r#"{"event_type":"dns","src_ip":"10.0.0.5","dns":{"type":"query","rrname":"malware.example"}}"#,
        "not json but 198.51.100.7",
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    // Top-level keys before the tables: state_dir first.
    let config = format!(
        "state_dir = {:?}\n{}[sources.app]\ntype = \"file\"\npath = {:?}\nstart_at = \"beginning\"\nparse = \"json\"\n[sinks.out]\ntype = \"stdout\"\n",
        dir.join("state").display().to_string(),
        feed_config(&dir.join("feeds")),
        log.display().to_string()
    );
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let d = Daemon::start(&dir, &config);
    let mut hits = d.read_hits(3);
    hits.sort_by_key(|h| h["line_number"].as_u64());
    let text = std::fs::read_to_string(&log).unwrap();
    let want_fields = [Some("id.resp_h"), Some("dns.rrname"), None];
    for (h, (line, field)) in hits.iter().zip(lines.iter().zip(want_fields)) {
        assert_eq!(h["log"]["file"]["path"], log.display().to_string());
        let offset = h["log"]["offset"].as_u64().unwrap() as usize;
        assert!(
            text[offset..].starts_with(line),
            "offset {offset} of {line}"
        );
        assert_eq!(h["matched"]["field"].as_str(), field, "{h}");
    }
    let (status, _) = d.stop();
    assert!(status.success());
}
