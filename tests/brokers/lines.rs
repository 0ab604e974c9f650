//! What both brokers' tests share: a feed, numbered log lines, the hits
//! `iocd scan` expects of them, and a comparison that reports duplicates.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The tests' feed: addresses, a network and domains.
pub const FEED: &str = "198.51.100.7\n203.0.113.0/24\nevil.example\nbad.example.net\n";
/// Added by the reload test: the full set.
pub const FEED_MORE: &str = "192.0.2.99\nworse.example\n";

/// Line `i`: every third holds an indicator of [`FEED`], every seventh one
/// of [`FEED_MORE`]; each line is unique.
pub fn line(i: usize) -> String {
    let dst = match i % 3 {
        0 => "198.51.100.7".to_owned(),
        1 => format!("203.0.113.{}", i % 250),
        _ => "192.0.2.1".to_owned(),
    };
    let host = if i.is_multiple_of(7) {
        "worse.example"
    } else {
        "fine.example"
    };
    let q = if i.is_multiple_of(5) {
        "evil.example"
    } else {
        "quiet.example"
    };
    format!(
        "{i} conn 10.1.{}.{} -> {dst} host={host} q={q}",
        i / 256 % 256,
        i % 256
    )
}

pub fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(line).collect()
}

/// A hit's identity: the line, the indicator's type and value.
pub type HitKey = (String, String, String);

/// The hits `iocd scan` finds in `lines` with `feed`, counted.
pub fn expected(dir: &Path, feed: &str, lines: &[String]) -> BTreeMap<HitKey, usize> {
    // Beside, not inside, the daemon's directory: its feed watcher need not see them.
    let scratch = dir.with_extension("expected");
    std::fs::create_dir_all(&scratch).unwrap();
    let (f, l) = (scratch.join("feed.txt"), scratch.join("lines.log"));
    std::fs::write(&f, feed).unwrap();
    std::fs::write(&l, lines.join("\n") + "\n").unwrap();
    let out = crate::common::iocd()
        .args(["scan", "-q", "-i"])
        .arg(&f)
        .arg(&l)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = BTreeMap::new();
    for h in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(h).unwrap();
        let n = v["line_number"].as_u64().unwrap() as usize;
        let key = (
            lines[n - 1].clone(),
            v["indicator"]["type"].as_str().unwrap().to_owned(),
            v["indicator"]["value"].as_str().unwrap().to_owned(),
        );
        *want.entry(key).or_insert(0) += 1;
    }
    want
}

/// The identity of a hit as a broker sink published it (native format).
pub fn key_of(hit: &serde_json::Value) -> HitKey {
    (
        hit["event"]["original"]
            .as_str()
            .expect("event.original")
            .to_owned(),
        hit["indicator"]["type"].as_str().unwrap().to_owned(),
        hit["indicator"]["value"].as_str().unwrap().to_owned(),
    )
}

/// Hits read from a broker, as they arrive.
pub struct HitReader {
    pub child: Option<Child>,
    pub rx: Receiver<String>,
    /// Every hit read so far, by identity.
    pub seen: BTreeMap<HitKey, usize>,
    pub docs: Vec<serde_json::Value>,
}

impl HitReader {
    /// Lines (JSON hits) from `child`'s stdout, after it prints `ready`.
    pub fn from_child(mut child: Child, ready: &str) -> HitReader {
        let rx = crate::harness::lines_of(child.stdout.take().unwrap());
        let first = rx
            .recv_timeout(crate::harness::WAIT)
            .expect("the reader started");
        assert_eq!(first, ready);
        HitReader {
            child: Some(child),
            rx,
            seen: BTreeMap::new(),
            docs: Vec::new(),
        }
    }

    /// Lines sent into `rx` by the caller's own reader.
    pub fn from_channel(rx: Receiver<String>) -> HitReader {
        HitReader {
            child: None,
            rx,
            seen: BTreeMap::new(),
            docs: Vec::new(),
        }
    }

    /// Reads until every hit of `want` has been seen at least once
    /// (bounded by `within`); panics naming what is missing, with what the
    /// `daemons` logged.
    pub fn read_until_all(&mut self, want: &BTreeMap<HitKey, usize>, within: Duration) {
        self.read_until_all_or_show(want, within, &[]);
    }

    /// [`Self::read_until_all`], showing `daemons`' logs on failure.
    pub fn read_until_all_or_show(
        &mut self,
        want: &BTreeMap<HitKey, usize>,
        within: Duration,
        daemons: &[&crate::harness::Daemon],
    ) {
        let deadline = Instant::now() + within;
        let missing =
            |seen: &BTreeMap<HitKey, usize>| want.keys().filter(|k| !seen.contains_key(*k)).count();
        while missing(&self.seen) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    let v: serde_json::Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("a hit that is not JSON ({e}): {l}"));
                    *self.seen.entry(key_of(&v)).or_insert(0) += 1;
                    self.docs.push(v);
                }
                Err(_) => {
                    let m: Vec<_> = want
                        .keys()
                        .filter(|k| !self.seen.contains_key(*k))
                        .take(5)
                        .collect();
                    let logs: Vec<String> = daemons
                        .iter()
                        .flat_map(|d| d.log.try_iter().collect::<Vec<_>>())
                        .collect();
                    panic!(
                        "{} of {} hits missing after {within:?}, e.g. {m:?}\ndaemon logs:\n{}",
                        missing(&self.seen),
                        want.len(),
                        logs.join("\n")
                    );
                }
            }
        }
    }

    /// The hits of a stream whose feed was reloaded from [`FEED`] to `full`
    /// while `first` streamed, then `second` after: every hit the old set
    /// gives on `first` and the full set on `second` arrives, and any other
    /// is one the full set gives on `first` (lines in flight at the swap
    /// may be matched by either engine).
    pub fn assert_reload_hits(
        &mut self,
        dir: &Path,
        full: &str,
        (first, second): (&[String], &[String]),
        daemons: &[&crate::harness::Daemon],
    ) {
        let mut want = expected(dir, FEED, first);
        want.extend(expected(dir, full, second));
        self.read_until_all_or_show(&want, Duration::from_secs(90), daemons);
        let full_set = expected(dir, full, first);
        let extra = self.unexpected(&want);
        assert!(
            extra.iter().all(|k| full_set.contains_key(k)),
            "hits no indicator set gives: {extra:?}"
        );
    }

    /// Hits seen more than once (at-least-once: reported, not failed).
    pub fn duplicates(&self) -> usize {
        self.seen.values().map(|n| n - 1).sum()
    }

    /// Hits seen that `want` does not hold: false positives.
    pub fn unexpected(&self, want: &BTreeMap<HitKey, usize>) -> Vec<HitKey> {
        self.seen
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect()
    }
}

impl Drop for HitReader {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until something accepts TCP connections on `port` (a server
/// that has no readiness signal of its own); bounded.
pub fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + crate::harness::WAIT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}"
        );
        // No event says "listening": poll the port.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args` with `input` on stdin; its stdout. Panics on failure.
pub fn run_with_input(program: &str, args: &[&str], input: &[u8]) -> String {
    let mut c = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = c.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = c.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of a metric across daemons' admin ports.
pub fn metric_sum(ports: &[u16], name: &str) -> f64 {
    ports
        .iter()
        .filter_map(|p| crate::harness::metric(&crate::harness::http_get(*p, "/metrics").1, name))
        .sum()
}

/// Waits (bounded) until `/ready` answers `status` with `says` in its body.
pub fn wait_ready(admin: u16, status: u16, says: &str) {
    let deadline = std::time::Instant::now() + crate::harness::WAIT;
    loop {
        let (got, body) = crate::harness::http_get(admin, "/ready");
        if got == status && body.contains(says) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never answered {status} with {says:?}: {got} {body}"
        );
        // Readiness has no change notification: poll it.
        std::thread::sleep(Duration::from_millis(20));
    }
}
