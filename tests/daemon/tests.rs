use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::common;
use super::harness::*;

const FEED: &str = "198.51.100.7\nmalware.example\n";

fn tcp_config(dir: &std::path::Path, port: u16, extra: &str) -> String {
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    if !dir.join("feeds/test.txt").exists() {
        std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    }
    format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.out]\ntype = \"stdout\"\n[reload]\ninterval_secs = 3600\ndebounce_ms = 100\n{extra}",
        feed_config(&dir.join("feeds"))
    )
}

fn send_tcp(port: u16, data: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(data).unwrap();
}

fn values(hits: &[serde_json::Value]) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = hits
        .iter()
        .map(|h| {
            (
                h["line_number"].as_u64().unwrap(),
                h["indicator"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn embedded_default_reads_stdin_and_exits_at_eof() {
    let log = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/sample.log"
    ))
    .unwrap();
    let mut child = common::iocd()
        .arg("run")
        .env_remove("IOCD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 11);
    assert_eq!(hits[0]["input"], "stdin");
    assert!(hits[0]["event"]["original"]
        .as_str()
        .unwrap()
        .contains("198.51.100.7"));
}

#[test]
fn tcp_newline_and_octet_counting_number_lines_per_connection() {
    let dir = test_dir("tcp");
    let (port, mport) = (free_port(), free_port());
    let d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    send_tcp(port, b"a 198.51.100.7\nb nothing\r\nc malware.example\n");
    let mut got = values(&d.read_hits(2));
    send_tcp(
        port,
        b"25 <13>x 198.51.100.7 octets25 <13>y\nmalware.example end",
    );
    got.extend(values(&d.read_hits(2)));
    assert_eq!(
        got,
        [
            (1, "198.51.100.7".into()),
            (3, "malware.example".into()),
            (1, "198.51.100.7".into()),
            (2, "malware.example".into())
        ]
    );
    // The real syslog client: RFC 6587 octet counting over TCP.
    if Command::new("logger").arg("--version").output().is_err() {
        common::skipped(
            "tcp_newline_and_octet_counting (logger part)",
            "logger (util-linux/bsdutils) is not installed",
        );
    } else {
        let ok = Command::new("logger")
            .args([
                "--tcp",
                "--server",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--octet-count",
                "-t",
                "iocdtest",
                "beacon to cdn.malware.example",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "logger failed");
        let h = d.read_hits(1);
        assert_eq!(h[0]["indicator"]["value"], "malware.example");
        assert!(h[0]["event"]["original"]
            .as_str()
            .unwrap()
            .contains("iocdtest"));
    }
    let (status, body) = http_get(mport, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metric(&body, "iocd_source_lines_received_total{source=\"syslog\"}").unwrap() >= 5.0,
        "{body}"
    );
    assert_eq!(http_get(mport, "/ready").0, 200);
    assert_eq!(http_get(mport, "/live").0, 200);
    assert_eq!(http_get(mport, "/nope").0, 404);
    let (status, rest) = d.stop();
    assert!(status.success());
    assert!(rest.is_empty());
}

#[test]
fn udp_and_unix_stream_and_datagram_sources() {
    let dir = test_dir("sockets");
    let port = free_port();
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let (stream, dgram) = (dir.join("stream.sock"), dir.join("dgram.sock"));
    let config = format!(
        "{}[sources.udp]\ntype = \"udp\"\naddress = \"127.0.0.1:{port}\"\n[sources.us]\ntype = \"unix\"\npath = {:?}\n[sources.ud]\ntype = \"unix\"\nmode = \"datagram\"\npath = {:?}\n[sinks.out]\ntype = \"stdout\"\n",
        feed_config(&dir.join("feeds")),
        stream.display().to_string(),
        dgram.display().to_string()
    );
    let d = Daemon::start(&dir, &config);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"x 198.51.100.7\ny malware.example", ("127.0.0.1", port))
        .unwrap();
    let mut inputs: Vec<(String, u64)> = d
        .read_hits(2)
        .iter()
        .map(|h| {
            (
                h["input"].as_str().unwrap().to_owned(),
                h["line_number"].as_u64().unwrap(),
            )
        })
        .collect();
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"one\ntwo malware.example\n")
        .unwrap();
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"198.51.100.7 via datagram", &dgram)
        .unwrap();
    inputs.extend(d.read_hits(2).iter().map(|h| {
        (
            h["input"].as_str().unwrap().to_owned(),
            h["line_number"].as_u64().unwrap(),
        )
    }));
    inputs.sort();
    assert_eq!(
        inputs,
        [
            ("ud".into(), 1),
            ("udp".into(), 1),
            ("udp".into(), 2),
            ("us".into(), 2)
        ]
    );
    let (status, _) = d.stop();
    assert!(status.success());
    assert!(
        !stream.exists() && !dgram.exists(),
        "socket files are removed at exit"
    );
}

#[test]
fn feed_edit_reloads_with_every_line_scanned_exactly_once() {
    let dir = test_dir("reload");
    let port = free_port();
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), "old.example\n").unwrap();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, ""));
    const N: u64 = 40_000;
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (half_tx, half_rx) = std::sync::mpsc::channel::<()>();
    let streamer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for i in 1..=N {
            writeln!(
                s,
                "seq={i} host old.example and new.example padding padding padding"
            )
            .unwrap();
            if i == N / 2 {
                half_tx.send(()).unwrap();
                go_rx.recv().unwrap(); // keep the stream open while the feed changes
            }
        }
    });
    half_rx.recv_timeout(WAIT).unwrap();
    // Edit the feed as editors and ConfigMaps do: write aside, rename over.
    std::fs::write(dir.join("feeds/.test.txt.tmp"), "new.example\n").unwrap();
    std::fs::rename(dir.join("feeds/.test.txt.tmp"), dir.join("feeds/test.txt")).unwrap();
    d.wait_log("engine reloaded");
    go_tx.send(()).unwrap();
    streamer.join().unwrap();
    let hits = d.read_hits(N as usize);
    let mut seen = vec![0u8; N as usize + 1];
    let (mut old, mut new) = (0, 0);
    for h in &hits {
        assert_eq!(h["input"], "syslog");
        seen[h["line_number"].as_u64().unwrap() as usize] += 1;
        match h["indicator"]["value"].as_str().unwrap() {
            "old.example" => old += 1,
            "new.example" => new += 1,
            v => panic!("unexpected {v}"),
        }
    }
    assert!(
        seen[1..].iter().all(|&c| c == 1),
        "every line scanned exactly once"
    );
    assert!(old >= N / 2 && new > 0, "old {old}, new {new}");
    // The removed indicator no longer matches.
    send_tcp(port, b"late old.example\nlate new.example\n");
    let late = d.read_hits(1);
    assert_eq!(late[0]["indicator"]["value"], "new.example");
    let (status, rest) = d.stop();
    assert!(status.success());
    assert!(rest.is_empty(), "no more hits: {rest:?}");
}

#[test]
fn sighup_rereads_the_config_and_adds_a_feed() {
    let dir = test_dir("sighup");
    let port = free_port();
    std::fs::create_dir_all(dir.join("more")).unwrap();
    std::fs::write(dir.join("more/more.txt"), "added.example\n").unwrap();
    let config = tcp_config(&dir, port, "");
    let mut d = Daemon::start(&dir, &config);
    send_tcp(port, b"1 added.example\n2 malware.example\n");
    assert_eq!(d.read_hits(1)[0]["line_number"], 2);
    std::fs::write(
        dir.join("iocd.toml"),
        format!(
            "{config}[feeds.more]\npath = {:?}\n",
            dir.join("more").display().to_string()
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_log("engine reloaded");
    send_tcp(port, b"3 added.example\n");
    let h = d.read_hits(1);
    assert_eq!(
        (
            h[0]["line_number"].as_u64(),
            h[0]["indicator"]["feed"].as_str()
        ),
        (Some(1), Some("more"))
    );
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty());
}

#[test]
fn broken_feed_keeps_its_last_good_indicators() {
    let dir = test_dir("broken");
    let (port, mport) = (free_port(), free_port());
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    // A failed download saved over the feed.
    std::fs::write(
        dir.join("feeds/test.txt"),
        "<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>\n",
    )
    .unwrap();
    let line = d.wait_log("feed failed to load");
    assert!(line.contains("test.txt") && line.contains("HTML"), "{line}");
    d.wait_log("engine reloaded");
    send_tcp(
        port,
        b"still 198.51.100.7\n<html><body>502 Bad Gateway</body></html>\n",
    );
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "198.51.100.7");
    let (_, body) = http_get(mport, "/metrics");
    assert!(
        metric(
            &body,
            "iocd_feed_failures_total{feed=\"test\",reason=\"not_a_feed\"}"
        )
        .unwrap()
            >= 1.0,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "iocd_indicators_loaded{feed=\"test\",type=\"ipv4-addr\"}"
        ),
        Some(1.0)
    );
    let (status, rest) = d.stop();
    assert!(
        status.success() && rest.is_empty(),
        "the HTML line hit nothing: {rest:?}"
    );
}

#[test]
fn file_source_follows_rotation_and_truncation_and_resumes_after_restart() {
    let dir = test_dir("file");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let log = dir.join("app.log");
    std::fs::write(&log, "1 198.51.100.7\n").unwrap();
    let config = format!(
        "state_dir = \"state\"\n{}[sources.app]\ntype = \"file\"\npath = {:?}\nstart_at = \"beginning\"\n[sinks.out]\ntype = \"stdout\"\n",
        feed_config(&dir.join("feeds")),
        log.display().to_string()
    );
    let append = |text: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap()
    };
    let mut d = Daemon::start(&dir, &config);
    assert_eq!(d.read_hits(1)[0]["line_number"], 1);
    append("2 malware.example\n");
    assert_eq!(d.read_hits(1)[0]["line_number"], 2);
    // Rotation by rename: the new file is read from its start.
    std::fs::rename(&log, dir.join("app.log.1")).unwrap();
    std::fs::write(&log, "3 198.51.100.7\n").unwrap();
    d.wait_log("file rotated");
    let h = d.read_hits(1);
    assert_eq!(
        (
            h[0]["line_number"].as_u64(),
            h[0]["event"]["original"].as_str()
        ),
        (Some(1), Some("3 198.51.100.7"))
    );
    // Truncation (copytruncate): read again from the start.
    std::fs::write(&log, "").unwrap();
    d.wait_log("file truncated");
    append("4 malware.example\n");
    assert_eq!(d.read_hits(1)[0]["event"]["original"], "4 malware.example");
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty());
    assert!(dir.join("state/file-app.json").exists());
    // A restart resumes after what was delivered: nothing is read twice.
    append("5 198.51.100.7\n");
    let d = Daemon::start(&dir, &config);
    assert_eq!(d.read_hits(1)[0]["event"]["original"], "5 198.51.100.7");
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "re-read: {rest:?}");
}

#[test]
fn http_sink_retries_until_the_server_recovers_and_loses_nothing() {
    let dir = test_dir("http");
    let (port, mport) = (free_port(), free_port());
    let (server, bodies) = http_server(|n| n < 3);
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.siem]\ntype = \"http\"\nurl = \"http://127.0.0.1:{server}/ingest\"\nformat = \"ecs\"\nbatch_timeout_ms = 20\nbatch_max_events = 40\nmax_backoff_secs = 1\nheaders = {{ Authorization = \"Bearer s3cret\" }}\n[metrics]\naddress = \"127.0.0.1:{mport}\"\n",
        feed_config(&dir.join("feeds"))
    );
    let d = Daemon::start(&dir, &config);
    let lines: String = (1..=100)
        .map(|i| format!("{i} to 198.51.100.7\n"))
        .collect();
    send_tcp(port, lines.as_bytes());
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 100 {
        let (head, body) = bodies
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("all hits delivered");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer s3cret")
                && head.contains("POST /ingest"),
            "{head}"
        );
        for l in String::from_utf8(body).unwrap().lines() {
            let h: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(h["event"]["kind"], "enrichment");
            assert!(
                seen.insert(h["iocd"]["line_number"].as_u64().unwrap()),
                "delivered twice"
            );
        }
    }
    // The sink counts a delivery once it has read the server's answer.
    let body = wait_metric(mport, "iocd_sink_events_sent_total{sink=\"siem\"}", |v| {
        v >= 100.0
    });
    assert_eq!(
        metric(&body, "iocd_sink_events_sent_total{sink=\"siem\"}"),
        Some(100.0)
    );
    assert!(
        metric(&body, "iocd_sink_requests_retried_total{sink=\"siem\"}").unwrap() >= 3.0,
        "{body}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn metrics_pass_promtool_and_move() {
    let dir = test_dir("metrics");
    let (port, mport) = (free_port(), free_port());
    let d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    let before = metric(
        &http_get(mport, "/metrics").1,
        "iocd_hits_total{feed=\"test\",type=\"ipv4-addr\"}",
    )
    .unwrap_or(0.0);
    send_tcp(port, b"198.51.100.7\n");
    d.read_hits(1);
    let (_, body) = http_get(mport, "/metrics");
    assert_eq!(
        metric(&body, "iocd_hits_total{feed=\"test\",type=\"ipv4-addr\"}"),
        Some(before + 1.0)
    );
    for name in [
        "iocd_source_bytes_received_total",
        "iocd_lines_scanned_total",
        "iocd_indicators_loaded",
        "iocd_engine_build_seconds",
        "iocd_last_successful_reload_timestamp_seconds",
        "iocd_match_latency_seconds_bucket",
        "iocd_queue_batches",
        "iocd_build_info",
        "iocd_sink_up",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
    // Every type of a feed has its series, zeros included.
    assert_eq!(
        metric(
            &body,
            "iocd_indicators_loaded{feed=\"test\",type=\"sha256\"}"
        ),
        Some(0.0),
        "{body}"
    );
    match Command::new("promtool").arg("--version").output() {
        Ok(_) => {
            let mut p = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => common::skipped(
            "metrics_pass_promtool_and_move (promtool part)",
            "promtool is not installed (Debian package prometheus)",
        ),
    }
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn sigterm_drains_every_line_already_read() {
    let dir = test_dir("drain");
    let (port, mport) = (free_port(), free_port());
    let d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    const N: usize = 20_000;
    let lines: String = (1..=N)
        .map(|i| format!("{i} beacon malware.example\n"))
        .collect();
    send_tcp(port, lines.as_bytes());
    // Wait until iocd has read every line (seen through its metrics), then stop at once.
    wait_metric(
        mport,
        "iocd_source_lines_received_total{source=\"syslog\"}",
        |v| v >= N as f64,
    );
    let (status, hits) = d.stop();
    assert!(status.success());
    assert_eq!(
        hits.len(),
        N,
        "hits of lines read before SIGTERM are all written"
    );
}

#[test]
fn ecs_file_sink_reopens_on_sigusr1() {
    let dir = test_dir("filesink");
    let port = free_port();
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.alerts]\ntype = \"file\"\npath = \"hits.jsonl\"\nformat = \"ecs\"\n[sinks.out]\ntype = \"stdout\"\n",
        feed_config(&dir.join("feeds"))
    );
    let mut d = Daemon::start(&dir, &config);
    send_tcp(port, b"1 198.51.100.7\n");
    d.read_hits(1); // stdout has it; the file sink wrote the same batch
    std::fs::rename(dir.join("hits.jsonl"), dir.join("hits.jsonl.1")).unwrap();
    d.signal("USR1");
    d.wait_log("reopened hit file");
    send_tcp(port, b"2 malware.example\n");
    d.read_hits(1);
    let (status, _) = d.stop();
    assert!(status.success());
    let old: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("hits.jsonl.1"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(
        old["threat"]["enrichments"][0]["indicator"]["ip"],
        "198.51.100.7"
    );
    assert_eq!(old["event"]["kind"], "enrichment");
    let new = std::fs::read_to_string(dir.join("hits.jsonl")).unwrap();
    assert!(
        new.contains("\"domain\":\"malware.example\"") && new.lines().count() == 1,
        "{new}"
    );
}

#[test]
fn check_validates_config_and_feeds() {
    let dir = test_dir("check");
    let port = free_port();
    let config = tcp_config(&dir, port, "");
    std::fs::write(dir.join("good.toml"), &config).unwrap();
    let out = common::check(&dir.join("good.toml"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("feed test (plain; 1 file): 2 indicators")
    );
    std::fs::write(
        dir.join("bad.toml"),
        format!("{config}[sinks.out2]\ntype = \"file\"\npaht = \"x\"\n"),
    )
    .unwrap();
    let out = common::iocd()
        .args(["check", "-c"])
        .arg(dir.join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("sinks.out2") && err.contains("paht"),
        "{err}"
    );
    std::fs::write(
        dir.join("missing.toml"),
        config.replace("feeds\"", "nonexistent\""),
    )
    .unwrap();
    let out = common::iocd()
        .args(["check", "-c"])
        .arg(dir.join("missing.toml"))
        .env("IOCD_CONFIG", "ignored")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
    // A feed that yields nothing is a warning, not silence, and not an error.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("empty/README.md"), "203.0.113.9\n").unwrap();
    std::fs::write(
        dir.join("empty.toml"),
        format!(
            "{config}[feeds.nothing]\npath = {:?}\n",
            dir.join("empty").display().to_string()
        ),
    )
    .unwrap();
    let out = common::check(&dir.join("empty.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("feed nothing (-; 0 files): 0 indicators")
            && stdout.contains("warning: feed nothing yields no indicator: no feed file in it"),
        "{stdout}"
    );
}

#[test]
fn a_down_sink_pushes_back_to_tcp_and_nothing_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = test_dir("backpressure");
    let (port, mport) = (free_port(), free_port());
    let down = Arc::new(AtomicBool::new(true));
    let (server, bodies) = {
        let down = down.clone();
        http_server(move |_| down.load(Ordering::SeqCst))
    };
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.siem]\ntype = \"http\"\nurl = \"http://127.0.0.1:{server}/\"\nbatch_timeout_ms = 10\nbatch_max_events = 100\nbuffer_max_events = 200\nmax_backoff_secs = 1\n[engine]\nqueue_batches = 2\nbatch_lines = 64\n[metrics]\naddress = \"127.0.0.1:{mport}\"\n",
        feed_config(&dir.join("feeds"))
    );
    let d = Daemon::start(&dir, &config);
    const N: u64 = 300_000;
    let sent_all = Arc::new(AtomicBool::new(false));
    let sender = {
        let sent_all = sent_all.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut buf = Vec::new();
            for i in 1..=N {
                // ~100 bytes a line: 30 MB, far more than loopback socket buffers hold.
                let pad = "padding.padding.padding.padding.padding.padding.padding.padding.padding.padding";
                if i % 10 == 0 {
                    writeln!(buf, "{i} to 198.51.100.7 {pad}").unwrap();
                } else {
                    writeln!(buf, "{i} quiet line {pad}").unwrap();
                }
            }
            s.write_all(&buf).unwrap();
            sent_all.store(true, Ordering::SeqCst);
        })
    };
    // While the sink keeps failing (several retries seen), the source must have stopped reading.
    wait_metric(
        mport,
        "iocd_sink_requests_retried_total{sink=\"siem\"}",
        |v| v >= 5.0,
    );
    let body = http_get(mport, "/metrics").1;
    let received =
        metric(&body, "iocd_source_lines_received_total{source=\"syslog\"}").unwrap_or(0.0);
    assert!(
        received < N as f64,
        "iocd read all {received} lines while its sink was down"
    );
    assert!(
        !sent_all.load(Ordering::SeqCst),
        "the sender finished: no backpressure reached TCP"
    );
    let dropped: f64 = body
        .lines()
        .filter(|l| l.starts_with("iocd_lines_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, 0.0, "nothing is dropped");
    assert_eq!(
        http_get(mport, "/ready").0,
        503,
        "a failing sink is not ready"
    );
    // The server recovers: every hit arrives, none twice.
    down.store(false, Ordering::SeqCst);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < (N / 10) as usize {
        let (_, body) = bodies.recv_timeout(WAIT).expect("hits keep arriving");
        for line in String::from_utf8(body).unwrap().lines() {
            let n = serde_json::from_str::<serde_json::Value>(line).unwrap()["line_number"]
                .as_u64()
                .unwrap();
            assert!(seen.insert(n), "line {n} delivered twice");
        }
    }
    sender.join().unwrap();
    assert!(seen.iter().all(|n| n % 10 == 0));
    assert_eq!(http_get(mport, "/ready").0, 200);
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn kubernetes_configmap_symlink_swap_reloads() {
    use std::os::unix::fs::symlink;
    let dir = test_dir("configmap");
    let port = free_port();
    // How the kubelet lays out a mounted ConfigMap.
    let feeds = dir.join("feeds");
    std::fs::create_dir_all(feeds.join("..2026_11_22_01")).unwrap();
    std::fs::write(feeds.join("..2026_11_22_01/test.txt"), "old.example\n").unwrap();
    symlink("..2026_11_22_01", feeds.join("..data")).unwrap();
    symlink("..data/test.txt", feeds.join("test.txt")).unwrap();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, ""));
    send_tcp(port, b"a old.example\n");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "old.example");
    // The update: a new timestamped directory, then an atomic swap of ..data.
    std::fs::create_dir_all(feeds.join("..2026_11_22_02")).unwrap();
    std::fs::write(feeds.join("..2026_11_22_02/test.txt"), "new.example\n").unwrap();
    symlink("..2026_11_22_02", feeds.join("..data_tmp")).unwrap();
    std::fs::rename(feeds.join("..data_tmp"), feeds.join("..data")).unwrap();
    std::fs::remove_dir_all(feeds.join("..2026_11_22_01")).unwrap();
    d.wait_log("engine reloaded");
    send_tcp(port, b"b old.example new.example\n");
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "new.example");
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
}

#[test]
fn the_example_config_is_valid() {
    let out = common::iocd()
        .args(["check", "--config", "deploy/examples/iocd.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("feed examples (plain; 1 file): 12 indicators"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = test_dir("jsonlog");
    let port = free_port();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, "[log]\nformat = \"json\"\n"));
    d.signal("HUP");
    let line = d.wait_log("configuration re-read");
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], "INFO");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn garbage_and_cut_lines_hurt_no_other_client_and_the_limit_holds() {
    let dir = test_dir("clients");
    let (port, mport) = (free_port(), free_port());
    // The limit goes into the TCP source (the first `address`), not [metrics].
    let config = tcp_config(&dir, port, &metrics_at(mport)).replacen(
        "address = \"127.0.0.1:",
        "max_connections = 2\naddress = \"127.0.0.1:",
        1,
    );
    let d = Daemon::start(&dir, &config);
    // Client A: binary garbage, then a line cut off by disconnecting.
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    a.write_all(b"\x00\xff\xfe\x80garbage\x1b[31m\n\xc3\x28 partial 198.51.100.7")
        .unwrap();
    // Client B, at the same time: ordinary lines.
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.write_all(b"b1 fine\nb2 malware.example\n").unwrap();
    let h = d.read_hits(1);
    assert_eq!(
        (
            h[0]["line_number"].as_u64(),
            h[0]["indicator"]["value"].as_str()
        ),
        (Some(2), Some("malware.example"))
    );
    // A third client is over the limit of 2: refused and counted.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut c, &mut buf).unwrap_or(0),
        0,
        "the connection over the limit is closed"
    );
    wait_metric(
        mport,
        "iocd_source_connections_rejected_total{reason=\"limit\",source=\"syslog\"}",
        |v| v == 1.0,
    );
    // A disconnects mid-line: its last partial line is still a line, scanned.
    drop(a);
    let h = d.read_hits(1);
    assert_eq!(
        (
            h[0]["line_number"].as_u64(),
            h[0]["indicator"]["value"].as_str()
        ),
        (Some(2), Some("198.51.100.7"))
    );
    drop(b);
    wait_metric(mport, "iocd_source_connections{source=\"syslog\"}", |v| {
        v == 0.0
    });
    send_tcp(port, b"after 198.51.100.7\n");
    assert_eq!(d.read_hits(1)[0]["line_number"], 1);
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn long_lines_are_dropped_or_truncated_as_configured_and_counted() {
    for (mode, want) in [
        ("drop", vec![(3u64, "malware.example")]),
        (
            "truncate",
            vec![(1, "198.51.100.7"), (3, "malware.example")],
        ),
    ] {
        let dir = test_dir(&format!("oversize-{mode}"));
        let (port, mport) = (free_port(), free_port());
        std::fs::create_dir_all(dir.join("feeds")).unwrap();
        // A regex for empty lines must not fire on the slot a dropped line leaves.
        std::fs::write(dir.join("feeds/test.txt"), format!("{FEED}regex\t^$\n")).unwrap();
        let extra = format!("[metrics]\naddress = \"127.0.0.1:{mport}\"\n[engine]\nmax_line_bytes = 40\noversize = \"{mode}\"\n");
        let d = Daemon::start(&dir, &tcp_config(&dir, port, &extra));
        let long = format!("198.51.100.7 {} malware.example\n", "x".repeat(100));
        send_tcp(
            port,
            format!("{long}short line\n3 malware.example\n").as_bytes(),
        );
        let got = values(&d.read_hits(want.len()));
        let want: Vec<(u64, String)> = want.into_iter().map(|(n, v)| (n, v.to_owned())).collect();
        assert_eq!(got, want, "{mode}");
        let reason = if mode == "drop" {
            "iocd_lines_dropped_total{reason=\"oversize\",source=\"syslog\"}"
        } else {
            "iocd_lines_truncated_total{source=\"syslog\"}"
        };
        wait_metric(mport, reason, |v| v == 1.0);
        let (status, rest) = d.stop();
        assert!(status.success() && rest.is_empty(), "{mode}: {rest:?}");
    }
}

#[test]
fn stix_indicators_expire_and_activate_while_running() {
    let dir = test_dir("lifecycle");
    let (port, mport) = (free_port(), free_port());
    let at = |secs: i64| iocd::hit::rfc3339(iocd::feeds::unix_now() + secs, 0);
    let ind = |id: &str, domain: &str, validity: String| {
        format!(
            r#"{{"type":"indicator","spec_version":"2.1","id":"indicator--{id}","created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","pattern_type":"stix","pattern":"[domain-name:value = '{domain}']",{validity}}}"#
        )
    };
    let bundle = format!(
        r#"{{"type":"bundle","id":"bundle--1","objects":[{},{}]}}"#,
        ind(
            "1",
            "leaving.example",
            format!(
                r#""valid_from":"2026-01-01T00:00:00Z","valid_until":"{}""#,
                at(2)
            )
        ),
        ind(
            "2",
            "arriving.example",
            format!(r#""valid_from":"{}""#, at(2))
        ),
    );
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/bundle.json"), bundle).unwrap();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    let body = http_get(mport, "/metrics").1;
    assert_eq!(
        metric(
            &body,
            "iocd_feed_entries_skipped{feed=\"test\",reason=\"not_yet_valid\"}"
        ),
        Some(1.0),
        "{body}"
    );
    send_tcp(port, b"1 leaving.example arriving.example\n");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "leaving.example");
    // No file changes: the daemon rebuilds when the validity changes.
    d.wait_log("validity changes now");
    d.wait_log("engine reloaded");
    send_tcp(port, b"2 leaving.example arriving.example\n");
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "arriving.example");
    assert_eq!(h[0]["indicator"]["stix_id"], "indicator--2");
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
}

/// A MISP event of `domain` whose byte 65,536 falls inside `é`: the format
/// sniffers once sliced there and panicked the reload task for good.
fn event_with_a_character_across_64_kib(domain: &str) -> String {
    let head = r#"{"Event": {"info": ""#;
    let pad = "x".repeat(65_535 - head.len()) + "é and more";
    let text = format!(
        r#"{head}{pad}", "Attribute": [{{"uuid": "a1", "type": "domain", "to_ids": true, "value": "{domain}"}}]}}}}"#
    );
    assert!(!text.is_char_boundary(65_536));
    text
}

#[test]
fn a_character_across_64_kib_loads_at_start_and_reloads_go_on_after_it() {
    let dir = test_dir("multibyte-64k");
    // At start: `iocd check` loads it.
    std::fs::create_dir_all(dir.join("start")).unwrap();
    std::fs::write(
        dir.join("start/event.json"),
        event_with_a_character_across_64_kib("first.example"),
    )
    .unwrap();
    std::fs::write(
        dir.join("check.toml"),
        feed_config(&dir.join("start"))
            + "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let out = common::check(&dir.join("check.toml"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("domain-name 1"),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Dropped into a running daemon's feed folder.
    let port = free_port();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, ""));
    std::fs::write(
        dir.join("feeds/event.json"),
        event_with_a_character_across_64_kib("dropped.example"),
    )
    .unwrap();
    d.wait_log("engine reloaded");
    send_tcp(port, b"q dropped.example\n");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "dropped.example");
    // Reloading goes on working after it.
    std::fs::write(dir.join("feeds/test.txt"), "later.example\n").unwrap();
    d.wait_log("engine reloaded");
    send_tcp(port, b"q later.example\n");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "later.example");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn sigterm_exits_in_the_grace_period_while_stdin_stays_open() {
    let dir = test_dir("stdin-open");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = "shutdown_grace_secs = 5\n".to_owned()
        + &feed_config(&dir.join("feeds"))
        + "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\n";
    let mut d = Daemon::start(&dir, &config);
    // The harness keeps the daemon's stdin open, as `tail -F log | iocd run` does.
    let stdin = d.child.stdin.as_mut().unwrap();
    stdin.write_all(b"q malware.example\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "malware.example");
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

/// A recorded Elasticsearch `_bulk` answer: the first document created,
/// the second refused by the mapping, the third rejected for load.
const BULK_PARTIAL: &str = r#"{"took":30,"errors":true,"items":[
  {"create":{"_index":"iocd-hits","status":201,"result":"created"}},
  {"create":{"_index":"iocd-hits","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [threat.enrichments.indicator.ip] of type [ip]"}}},
  {"create":{"_index":"iocd-hits","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}}
]}"#;

#[test]
fn elasticsearch_bulk_retries_only_what_may_be_retried() {
    let dir = test_dir("es-bulk");
    let (port, mport) = (free_port(), free_port());
    let (server, requests) = http_server_answering(|n, _| match n {
        0 => (200, BULK_PARTIAL.to_owned()),
        _ => (200, r#"{"took":1,"errors":false,"items":[]}"#.to_owned()),
    });
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(
        dir.join("feeds/test.txt"),
        "198.51.100.7\nmalware.example\nphish.example\n",
    )
    .unwrap();
    let config = format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.es]\ntype = \"http\"\nurl = \"http://127.0.0.1:{server}/_bulk\"\nformat = \"ecs\"\nencoding = \"es_bulk\"\nindex = \"iocd-hits\"\nbatch_max_events = 3\nbatch_timeout_ms = 200\nmax_backoff_secs = 1\n{}",
        feed_config(&dir.join("feeds")),
        metrics_at(mport)
    );
    let d = Daemon::start(&dir, &config);
    send_tcp(port, b"198.51.100.7 malware.example phish.example\n");
    // An action line and a document per hit.
    let docs = |body: &[u8]| -> Vec<serde_json::Value> {
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for action in lines.iter().step_by(2) {
            assert_eq!(action["create"]["_index"], "iocd-hits", "{action}");
        }
        lines.into_iter().skip(1).step_by(2).collect()
    };
    let (head, first) = requests.recv_timeout(WAIT).expect("a _bulk request");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let first = docs(&first);
    assert_eq!(first.len(), 3);
    let (_, second) = requests.recv_timeout(WAIT).expect("the retry");
    let second = docs(&second);
    // Only the document answered 429 is sent again; the one the mapping
    // refused is dropped and counted.
    assert_eq!(second, [first[2].clone()]);
    let body = wait_metric(mport, "iocd_sink_events_failed_total{sink=\"es\"}", |v| {
        v >= 1.0
    });
    assert_eq!(
        metric(&body, "iocd_sink_events_failed_total{sink=\"es\"}"),
        Some(1.0)
    );
    let body = wait_metric(mport, "iocd_sink_events_sent_total{sink=\"es\"}", |v| {
        v >= 2.0
    });
    assert_eq!(
        metric(&body, "iocd_sink_events_sent_total{sink=\"es\"}"),
        Some(2.0)
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn https_sink_verifies_the_server_and_presents_a_client_certificate() {
    const TEST: &str = "https sink with mTLS";
    if !common::installed("openssl", TEST) || !common::installed("socat", TEST) {
        return;
    }
    let dir = test_dir("https-sink");
    throwaway_pki(&dir);
    let (port, tls_port) = (free_port(), free_port());
    let (server, bodies) = http_server(|_| false);
    // Only clients with a certificate from the test CA get through.
    let _proxy = TlsProxy::start(&dir, tls_port, server, true);
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let ca = |f: &str| dir.join(f).display().to_string();
    let config = format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.siem]\ntype = \"http\"\nurl = \"https://127.0.0.1:{tls_port}/ingest\"\nbatch_timeout_ms = 10\n[sinks.siem.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        feed_config(&dir.join("feeds")),
        ca("ca.pem"),
        ca("client.pem"),
        ca("client.key")
    );
    let d = Daemon::start(&dir, &config);
    send_tcp(port, b"beacon to 198.51.100.7\n");
    let (head, body) = bodies.recv_timeout(WAIT).expect("the hit over https");
    assert!(head.starts_with("POST /ingest"), "{head}");
    let hit: serde_json::Value =
        serde_json::from_str(String::from_utf8(body).unwrap().trim()).unwrap();
    assert_eq!(hit["indicator"]["value"], "198.51.100.7");
    // The front really demands the certificate: a client without one fails.
    if common::installed("curl", TEST) {
        let without = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "10", "--cacert"])
            .arg(dir.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{tls_port}/ingest"))
            .status()
            .unwrap();
        assert!(
            !without.success(),
            "a client without a certificate got through"
        );
    }
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn an_update_that_would_empty_a_feed_keeps_its_last_good_content() {
    let dir = test_dir("shrink");
    let (port, mport) = (free_port(), free_port());
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    let many: String = (1..=200).map(|i| format!("203.0.113.{i}\n")).collect();
    std::fs::write(dir.join("feeds/test.txt"), &many).unwrap();
    let mut d = Daemon::start(&dir, &tcp_config(&dir, port, &metrics_at(mport)));
    // A truncated download: two valid addresses of 200.
    std::fs::write(dir.join("feeds/test.txt"), "203.0.113.1\n203.0.113.2\n").unwrap();
    let refused = d.wait_log("feed update refused");
    assert!(refused.contains("from 200 to 2 indicators"), "{refused}");
    d.wait_log("engine reloaded");
    // An error page of one line: not a feed at all.
    std::fs::write(dir.join("feeds/test.txt"), "error code: 1020\n").unwrap();
    let failed = d.wait_log("feed failed to load");
    assert!(failed.contains("no usable entry"), "{failed}");
    d.wait_log("engine reloaded");
    send_tcp(port, b"still 203.0.113.150\n");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "203.0.113.150");
    let body = wait_metric(
        mport,
        "iocd_feed_failures_total{feed=\"test\",reason=\"shrink\"}",
        |v| v >= 1.0,
    );
    assert!(
        metric(
            &body,
            "iocd_indicators_loaded{feed=\"test\",type=\"ipv4-addr\"}"
        ) == Some(200.0),
        "{body}"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// The finding: a line holding 70k distinct indicators made 70k hits, each
/// carrying the line (4.4 GB RSS). Hits per line are capped and the rest
/// counted.
#[test]
fn hits_per_line_are_capped_and_counted() {
    let dir = test_dir("hit-cap");
    let (port, mport) = (free_port(), free_port());
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    let ips: Vec<String> = (0..150)
        .map(|i| format!("45.1.{}.{}", i / 100, i % 100 + 1))
        .collect();
    std::fs::write(dir.join("feeds/test.txt"), ips.join("\n")).unwrap();
    let config = tcp_config(
        &dir,
        port,
        &format!("[engine]\nmax_hits_per_line = 100\n{}", metrics_at(mport)),
    );
    let d = Daemon::start(&dir, &config);
    send_tcp(
        port,
        format!("{}\nafter 45.1.0.1\n", ips.join(" ")).as_bytes(),
    );
    let h = d.read_hits(101);
    assert!(h[..100].iter().all(|h| h["line_number"] == 1));
    assert_eq!(h[100]["line_number"], 2);
    wait_metric(
        mport,
        "iocd_hits_dropped_total{reason=\"max_hits_per_line\"}",
        |v| v == 50.0,
    );
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty());
}

/// The finding: 1,024 connections at a byte a second locked every sender
/// out. At the limit the connection idle the longest gives way to a new
/// one; a silent connection is closed after its idle timeout; one peer may
/// be held to fewer connections.
#[test]
fn slowloris_cannot_lock_senders_out() {
    let dir = test_dir("slowloris");
    let (port, mport) = (free_port(), free_port());
    let config = tcp_config(&dir, port, &metrics_at(mport)).replacen(
        "address = ",
        "max_connections = 4\nevict_idle_secs = 0\nidle_timeout_secs = 1\nmax_connections_per_peer = 5\naddress = ",
        1,
    );
    let d = Daemon::start(&dir, &config);
    // The attacker's sockets: each sent part of a line, then nothing.
    let attackers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"x").unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    wait_metric(mport, "iocd_source_connections{source=\"syslog\"}", |v| {
        v == 4.0
    });
    // A real sender at the limit gets in, and its line is matched.
    send_tcp(port, b"from a real sender 198.51.100.7\n");
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "198.51.100.7");
    wait_metric(
        mport,
        "iocd_source_connections_closed_total{reason=\"evicted\",source=\"syslog\"}",
        |v| v >= 1.0,
    );
    // The rest are closed by the idle timeout: each sees the end of stream.
    for mut a in attackers {
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut a, &mut buf).unwrap_or(0), 0);
    }
    wait_metric(
        mport,
        "iocd_source_connections_closed_total{reason=\"idle_timeout\",source=\"syslog\"}",
        |v| v >= 1.0,
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn one_peer_is_held_to_its_connection_limit() {
    let dir = test_dir("per-peer");
    let (port, mport) = (free_port(), free_port());
    let config = tcp_config(&dir, port, &metrics_at(mport)).replacen(
        "address = ",
        "max_connections_per_peer = 2\naddress = ",
        1,
    );
    let d = Daemon::start(&dir, &config);
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    wait_metric(mport, "iocd_source_connections{source=\"syslog\"}", |v| {
        v == 2.0
    });
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut third, &mut buf).unwrap_or(0), 0);
    wait_metric(
        mport,
        "iocd_source_connections_rejected_total{reason=\"per_peer\",source=\"syslog\"}",
        |v| v == 1.0,
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// Ready means "accepting input without loss": a down sink with buffer room
/// is said in `/ready`'s body and in `iocd_sink_up`, but stays 200, so a
/// SIEM outage does not pull every collector out of its Service.
#[test]
fn a_down_sink_with_buffer_room_stays_ready() {
    let dir = test_dir("ready-buffering");
    let (port, mport) = (free_port(), free_port());
    let (server, _bodies) = http_server(|_| true); // always failing
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let config = format!(
        "shutdown_grace_secs = 1\n{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.siem]\ntype = \"http\"\nurl = \"http://127.0.0.1:{server}/\"\nbatch_timeout_ms = 10\nbuffer_max_events = 100000\nbuffer_max_bytes = 65536\nmax_backoff_secs = 1\n{}",
        feed_config(&dir.join("feeds")),
        metrics_at(mport)
    );
    let d = Daemon::start(&dir, &config);
    send_tcp(port, b"to 198.51.100.7\n");
    wait_metric(mport, "iocd_sink_up{sink=\"siem\"}", |v| v == 0.0);
    let (status, body) = http_get(mport, "/ready");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sink siem is down; buffering"), "{body}");
    // The buffer is bounded in bytes too (64 KiB here): a flood of hits
    // fills it, and only then is the daemon not ready.
    let lines: String = (0..2000)
        .map(|i| format!("{i} to 198.51.100.7\n"))
        .collect();
    send_tcp(port, lines.as_bytes());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(mport, "/ready");
        if status == 503 {
            assert!(body.contains("sink siem: its buffer is full"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never full: {body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The hits cannot be delivered: the drain gives up after the grace.
    let _ = d.stop();
}

/// Per-source peer allowlists: a TCP peer outside them is refused, a UDP
/// datagram from outside is dropped; both counted by reason.
#[test]
fn peers_outside_a_sources_allowlist_are_refused() {
    let dir = test_dir("peers");
    let (port, uport, mport) = (free_port(), free_port(), free_port());
    let config = tcp_config(&dir, port, &metrics_at(mport)).replacen(
        "address = ",
        "allowed_peers = [\"10.0.0.0/8\"]\naddress = ",
        1,
    ) + &format!(
        "[sources.udp_in]\ntype = \"udp\"\naddress = \"127.0.0.1:{uport}\"\nallowed_peers = [\"192.0.2.0/24\"]\n"
    );
    let d = Daemon::start(&dir, &config);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut c, &mut buf).unwrap_or(0), 0);
    wait_metric(
        mport,
        "iocd_source_connections_rejected_total{reason=\"peer_not_allowed\",source=\"syslog\"}",
        |v| v == 1.0,
    );
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"to 198.51.100.7\n", ("127.0.0.1", uport))
        .unwrap();
    wait_metric(
        mport,
        "iocd_lines_dropped_total{reason=\"peer_not_allowed\",source=\"udp_in\"}",
        |v| v == 1.0,
    );
    let (status, hits) = d.stop();
    assert!(status.success() && hits.is_empty(), "{hits:?}");
}

fn file_source_config(
    dir: &std::path::Path,
    log: &std::path::Path,
    extra: &str,
    mport: u16,
) -> String {
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    format!(
        "state_dir = \"state\"\n{}[sources.app]\ntype = \"file\"\npath = {:?}\nstart_at = \"beginning\"\n{extra}[sinks.out]\ntype = \"stdout\"\n{}",
        feed_config(&dir.join("feeds")),
        log.display().to_string(),
        metrics_at(mport)
    )
}

/// The finding: a file truncated and written again between two polls, as
/// long as before, lost its new lines (same inode, no shrink seen). The
/// head of the file is compared too.
#[test]
fn a_file_rewritten_within_one_poll_is_read_again() {
    let dir = test_dir("file-rewrite");
    let log = dir.join("app.log");
    let first: String = (1..=1000).map(|i| format!("old line {i}\n")).collect();
    std::fs::write(&log, format!("{first}old 198.51.100.7\n")).unwrap();
    let mport = free_port();
    let d = Daemon::start(&dir, &file_source_config(&dir, &log, "", mport));
    assert_eq!(d.read_hits(1)[0]["line_number"], 1001);
    // One write: truncate, then more bytes than before, at once.
    let second: String = (1..=1000).map(|i| format!("new line {i}\n")).collect();
    std::fs::write(
        &log,
        format!("new 198.51.100.7\n{second}x malware.example\n"),
    )
    .unwrap();
    let h = d.read_hits(2);
    assert_eq!(
        (h[0]["line_number"].as_u64(), h[1]["line_number"].as_u64()),
        (Some(1), Some(1002)),
        "every new line is read from the start"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// The finding: a symlink planted at the log path was followed (into
/// /etc/shadow, say). It is refused unless `follow_symlinks = true`, said
/// in the log, counted, and shown in `/ready`'s body.
#[test]
fn a_symlink_at_a_log_path_is_not_followed() {
    let dir = test_dir("file-symlink");
    let target = dir.join("secret.txt");
    std::fs::write(&target, "root 198.51.100.7\n").unwrap();
    let log = dir.join("app.log");
    let _ = std::fs::remove_file(&log);
    std::os::unix::fs::symlink(&target, &log).unwrap();
    let mport = free_port();
    // (The warning may be logged before "iocd running", which Daemon::start
    // reads past: the metric and /ready's body are what can be awaited.)
    let d = Daemon::start(&dir, &file_source_config(&dir, &log, "", mport));
    wait_metric(
        mport,
        "iocd_source_errors_total{reason=\"symlink\",source=\"app\"}",
        |v| v >= 1.0,
    );
    let (status, body) = http_get(mport, "/ready");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("source app: cannot open") && body.contains("app.log"),
        "{body}"
    );
    let (status, hits) = d.stop();
    assert!(status.success() && hits.is_empty(), "{hits:?}");
    // Asked for, it is followed.
    let mport = free_port();
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let d = Daemon::start(
        &dir,
        &file_source_config(&dir, &log, "follow_symlinks = true\n", mport),
    );
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "198.51.100.7");
    let (status, _) = d.stop();
    assert!(status.success());
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY once running,
/// WATCHDOG pings, RELOADING then READY around a reload, STOPPING on stop;
/// read from a notify socket of the test's own.
#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = test_dir("sd-notify");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let port = free_port();
    let mut d = Daemon::start_with_env(
        &dir,
        &tcp_config(&dir, port, ""),
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    let mut buf = vec![0u8; 4096];
    // Every state iocd sends, until `want` is among them.
    let mut wait_for = |want: &str| {
        for _ in 0..1000 {
            let n = socket.recv(&mut buf).expect("a notification");
            let said = String::from_utf8_lossy(&buf[..n]).into_owned();
            if said.lines().any(|l| l == want) {
                return said;
            }
        }
        panic!("never said {want}");
    };
    assert!(wait_for("READY=1").contains("STATUS=matching"));
    wait_for("WATCHDOG=1");
    d.signal("HUP");
    wait_for("RELOADING=1");
    wait_for("READY=1");
    d.wait_log("engine reloaded");
    d.signal("TERM");
    wait_for("STOPPING=1");
    let (status, _) = d.finish();
    assert!(status.success());
}

/// With `metrics.token`, the admin endpoints answer only requests that
/// carry it; the token comes from the environment and is never logged.
#[test]
fn admin_endpoints_want_their_bearer_token() {
    let dir = test_dir("admin-token");
    let (port, mport) = (free_port(), free_port());
    let config = tcp_config(
        &dir,
        port,
        &format!(
            "{}token = {{ env = \"IOCD_TEST_ADMIN_TOKEN\" }}\n",
            metrics_at(mport)
        ),
    );
    let d = Daemon::start_with_env(&dir, &config, &[("IOCD_TEST_ADMIN_TOKEN", "s3cret-admin")]);
    for path in ["/metrics", "/ready", "/live"] {
        assert_eq!(http_get(mport, path).0, 401, "{path}");
        assert_eq!(
            http_get_with(mport, path, "Authorization: Bearer wrong-token!\r\n").0,
            401
        );
        assert_eq!(
            http_get_with(mport, path, "Authorization: Bearer s3cret-admin\r\n").0,
            200,
            "{path}"
        );
    }
    let (status, _) = d.stop();
    assert!(status.success());
}

/// A glob in the file name follows every match, each file its own input;
/// a file that appears later is read from its start; others are ignored.
#[test]
fn a_file_glob_follows_every_match_and_new_ones() {
    let dir = test_dir("file-glob");
    let logs = dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "a 198.51.100.7\n").unwrap();
    std::fs::write(logs.join("b.txt"), "b malware.example\n").unwrap();
    let mport = free_port();
    let d = Daemon::start(
        &dir,
        &file_source_config(&dir, &logs.join("*.log"), "", mport),
    );
    let h = d.read_hits(1);
    assert_eq!(
        (h[0]["input"].as_str(), h[0]["indicator"]["value"].as_str()),
        (Some("app:a.log"), Some("198.51.100.7"))
    );
    std::fs::write(logs.join("c.log"), "c malware.example\n").unwrap();
    let h = d.read_hits(1);
    assert_eq!(
        (h[0]["input"].as_str(), h[0]["line_number"].as_u64()),
        (Some("app:c.log"), Some(1))
    );
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
}

/// Syslog over TLS (RFC 5425) with client certificates: a client with a
/// certificate from the CA is read; one without is refused at the
/// handshake and counted. Clients are Python's ssl module.
#[test]
fn syslog_over_tls_with_client_certificates() {
    const TEST: &str = "syslog_over_tls_with_client_certificates";
    if !common::installed("openssl", TEST) || !common::installed("python3", TEST) {
        return;
    }
    let dir = test_dir("syslog-tls");
    throwaway_pki(&dir);
    let (port, mport) = (free_port(), free_port());
    let config = tcp_config(&dir, port, &metrics_at(mport)).replacen(
        "address = ",
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\", client_ca_file = \"ca.pem\" }\naddress = ",
        1,
    );
    let d = Daemon::start(&dir, &config);
    let client_dir = dir.clone();
    let send = move |with_cert: bool| {
        let (cert, value) = if with_cert {
            (
                "c.load_cert_chain('client.pem', 'client.key')",
                "198.51.100.7",
            )
        } else {
            ("pass", "malware.example")
        };
        let script = format!(
            "import socket, ssl\nc = ssl.create_default_context(cafile='ca.pem')\n{cert}\ns = c.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname='127.0.0.1')\ns.sendall(b'<13>tls {value}\\n')\ns.close()\n"
        );
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .current_dir(&client_dir)
            .output()
            .unwrap()
    };
    // (Under TLS 1.3 the client learns of the refusal only after it wrote:
    // what shows it is the count, and that its line never hits.)
    send(false);
    wait_metric(
        mport,
        "iocd_source_connections_closed_total{reason=\"tls_handshake\",source=\"syslog\"}",
        |v| v >= 1.0,
    );
    let sender = std::thread::spawn(move || send(true));
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "198.51.100.7");
    // The client's certificate names it in the hit.
    assert_eq!(h[0]["tls"]["client"]["subject"], "CN=iocd client");
    assert_eq!(h[0]["source"]["ip"], "127.0.0.1");
    assert!(sender.join().unwrap().status.success());
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
}

/// Hit batches are bounded in bytes: with a bound of one byte every line's
/// hits go on by themselves. Every hit arrives once, in order, and the file
/// source's offset is committed only once all parts of a batch are written.
#[test]
fn hit_batches_split_by_bytes_keep_order_and_acks() {
    let dir = test_dir("hit-batch-bytes");
    let log = dir.join("app.log");
    let lines: String = (1..=300)
        .map(|i| format!("{i} to 198.51.100.7\n"))
        .collect();
    std::fs::write(&log, &lines).unwrap();
    let mport = free_port();
    let config = file_source_config(&dir, &log, "", mport)
        + "[engine]\nhit_batch_max_bytes = 1\nbatch_lines = 1024\n";
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let d = Daemon::start(&dir, &config);
    let h = d.read_hits(300);
    let numbers: Vec<u64> = h
        .iter()
        .map(|h| h["line_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=300).collect::<Vec<u64>>());
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/file-app.json")).unwrap()).unwrap();
    assert_eq!(state["offset"].as_u64(), Some(lines.len() as u64));
}

/// The admin endpoints over HTTPS (`[metrics] tls`), with a client
/// certificate required: curl with the CA and a client certificate gets
/// `/ready`; plain HTTP and a client without a certificate get nothing.
#[test]
fn admin_endpoints_over_tls() {
    const TEST: &str = "admin_endpoints_over_tls";
    if !common::installed("openssl", TEST) || !common::installed("curl", TEST) {
        return;
    }
    let dir = test_dir("admin-tls");
    throwaway_pki(&dir);
    let (port, mport) = (free_port(), free_port());
    let config = tcp_config(
        &dir,
        port,
        &format!(
            "[metrics]\naddress = \"127.0.0.1:{mport}\"\ntls = {{ cert_file = \"server.pem\", key_file = \"server.key\", client_ca_file = \"ca.pem\" }}\n"
        ),
    );
    let d = Daemon::start(&dir, &config);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{mport}/ready");
    let ok = curl(&[
        "--cacert",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{ok:?}");
    let no_cert = curl(&["--cacert", "ca.pem", &url]);
    assert_ne!(String::from_utf8_lossy(&no_cert.stdout), "200");
    let plain = curl(&[&format!("http://127.0.0.1:{mport}/ready")]);
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    let (status, _) = d.stop();
    assert!(status.success());
}

/// A burst of datagrams is batched: datagrams already waiting join one
/// batch (one batch per datagram filled the 64-batch queue and lost 55% of
/// a burst), and the socket buffer (`receive_buffer_bytes`) holds the
/// burst. Every datagram is accounted for: received, then scanned or
/// counted as dropped; the loss stays far under the finding's even on a
/// loaded test machine.
#[test]
fn a_udp_burst_is_batched_not_dropped() {
    let dir = test_dir("udp-burst");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/test.txt"), FEED).unwrap();
    let (port, mport) = (free_port(), free_port());
    let config = format!(
        "{}[sources.udp]\ntype = \"udp\"\naddress = \"127.0.0.1:{port}\"\nreceive_buffer_bytes = 4194304\n[sinks.out]\ntype = \"stdout\"\n{}",
        feed_config(&dir.join("feeds")),
        metrics_at(mport)
    );
    let d = Daemon::start(&dir, &config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    const N: usize = 2000;
    for i in 0..N {
        let line = if i % 100 == 0 {
            format!("{i} 198.51.100.7")
        } else {
            format!("{i} nothing to see")
        };
        sock.send_to(line.as_bytes(), ("127.0.0.1", port)).unwrap();
    }
    let received = "iocd_source_lines_received_total{source=\"udp\"}";
    let dropped_of = |body: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("iocd_lines_dropped_total") && l.contains("queue_full"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Received, then scanned or dropped: both counters from one exposition.
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let body = http_get(mport, "/metrics").1;
        let scanned = metric(&body, "iocd_lines_scanned_total").unwrap_or(0.0);
        if metric(&body, received) == Some(N as f64) && scanned + dropped_of(&body) >= N as f64 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all accounted for:\n{body}"
        );
        // Counters have no change notification: poll them.
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(
        metric(&body, "iocd_lines_scanned_total").unwrap() + dropped_of(&body),
        N as f64,
        "every datagram scanned or counted"
    );
    assert!(
        dropped_of(&body) < (N / 10) as f64,
        "lost {}",
        dropped_of(&body)
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// Out of file descriptors, the accept loop backs off instead of spinning,
/// says so once (not per try), and serves again once descriptors are free.
#[test]
fn out_of_descriptors_backs_off_and_recovers() {
    let dir = test_dir("emfile");
    let port = free_port();
    let config = tcp_config(&dir, port, "");
    let path = dir.join("iocd.toml");
    std::fs::write(&path, &config).unwrap();
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!(
        "ulimit -n 64 && exec {} run --config {}",
        env!("CARGO_BIN_EXE_iocd"),
        path.display()
    ));
    let mut d = Daemon::spawn(shell, &dir);
    // Hold more connections than there are descriptors left.
    let held: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    d.wait_log("accept failed; backing off");
    drop(held);
    // Free again: a new sender is read (the backlog drains as descriptors return).
    send_tcp(port, b"after 198.51.100.7\n");
    let h = d.read_hits(1);
    assert_eq!(h[0]["indicator"]["value"], "198.51.100.7");
    let warnings = d
        .log
        .try_iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        warnings <= 1,
        "{warnings} more accept warnings: rate-limited to one per 10 s"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}
