//! Retro-hunt (issue 11): lines streamed before an indicator arrived are
//! found when it arrives, once each, and the ring keeps to its size.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::net::TcpStream;

use super::harness::*;

fn config(dir: &std::path::Path, tcp: u16, admin: u16, max_bytes: u64) -> String {
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/base.txt"), "198.51.100.7\n").unwrap();
    format!(
        "{}[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{tcp}\"\n[sinks.out]\ntype = \"stdout\"\n[metrics]\naddress = \"127.0.0.1:{admin}\"\n[reload]\ninterval_secs = 3600\ndebounce_ms = 100\n[retro]\ndir = {:?}\nmax_bytes = {max_bytes}\n",
        feed_config(&dir.join("feeds")),
        dir.join("ring").display().to_string()
    )
}

#[test]
fn new_indicators_are_hunted_in_lines_seen_before() {
    let dir = test_dir("retro-hunt");
    let (tcp, admin) = (free_port(), free_port());
    let mut d = Daemon::start(&dir, &config(&dir, tcp, admin, 64 << 20));
    let mut conn = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let mut earlier = BTreeSet::new();
    let mut live_before = 0;
    for i in 0..300 {
        let line = match i % 3 {
            0 => format!("early {i} beacon to late-c2.example"),
            1 => {
                live_before += 1;
                format!("early {i} conn 198.51.100.7")
            }
            _ => format!("early {i} quiet"),
        };
        if i % 3 == 0 {
            earlier.insert(line.clone());
        }
        writeln!(conn, "{line}").unwrap();
    }
    conn.flush().unwrap();
    wait_metric(admin, "iocd_lines_scanned_total", |n| n >= 300.0);
    let live = d.read_hits(live_before);
    assert!(live.iter().all(|h| h.get("retro").is_none()));

    // The indicator arrives: every earlier line holding it is reported, marked.
    std::fs::write(dir.join("feeds/late.txt"), "late-c2.example\n").unwrap();
    d.wait_log("engine reloaded");
    let retro = d.read_hits(earlier.len());
    let mut seen = BTreeSet::new();
    for h in &retro {
        assert_eq!(h["retro"], true, "{h}");
        assert_eq!(h["indicator"]["value"], "late-c2.example");
        assert_eq!(h["input"], "syslog");
        let original = h["event"]["original"].as_str().unwrap().to_owned();
        assert!(seen.insert(original), "reported twice: {h}");
    }
    assert_eq!(seen, earlier, "exactly the earlier lines");
    wait_metric(admin, "iocd_retro_hits_total", |n| {
        n == earlier.len() as f64
    });

    // From now on it is matched live, and nothing is hunted twice.
    writeln!(conn, "later beacon to late-c2.example").unwrap();
    conn.flush().unwrap();
    let later = d.read_hits(1);
    assert!(later[0].get("retro").is_none(), "{}", later[0]);
    drop(conn);
    let (status, rest) = d.stop();
    assert!(status.success());
    assert!(rest.is_empty(), "unexpected hits after: {rest:?}");
}

/// Streams a lot through a ring of 1 MiB: what it keeps stays within the
/// budget (plus the segment being written), the oldest going first.
#[test]
fn the_ring_keeps_to_max_bytes() {
    let dir = test_dir("retro-ring-size");
    let (tcp, admin) = (free_port(), free_port());
    let max = 1u64 << 20;
    let d = Daemon::start(&dir, &config(&dir, tcp, admin, max));
    let mut conn = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    // Lines that compress like logs do, not like repeated text.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = String::new();
    let mut sent = 0u64;
    let target: u64 = std::env::var("IOCD_RETRO_TEST_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let mut lines = 0u64;
    while sent < target {
        block.clear();
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = writeln!(
                block,
                "Nov 23 05:{:02}:{:02} host{} sshd[{}]: Failed password for user{} from 10.{}.{}.{} port {}",
                x % 60, (x >> 8) % 60, x % 97, x % 65_536, (x >> 16) % 1000,
                (x >> 20) % 256, (x >> 28) % 256, (x >> 36) % 256, (x >> 44) % 65_536
            );
        }
        conn.write_all(block.as_bytes()).unwrap();
        sent += block.len() as u64;
        lines += 10_000;
    }
    drop(conn);
    let body = wait_metric(admin, "iocd_lines_scanned_total", |n| n >= lines as f64);
    let dropped = metric(&body, "iocd_retro_lines_dropped_total").unwrap_or(0.0);
    let (status, _) = d.stop();
    assert!(status.success());
    let kept: u64 = std::fs::read_dir(dir.join("ring"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!("ring: {sent} bytes streamed ({lines} lines, {dropped} not stored: writer behind), {kept} bytes kept (max {max})");
    assert!(kept <= max, "ring holds {kept} bytes, over {max}");
    assert!(kept > max / 4, "ring kept too little: {kept}");
}
