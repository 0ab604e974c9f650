//! A running daemon for a test: its config, its output as channels of
//! lines, signals, and a clean stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// A fresh directory for one daemon test.
pub fn test_dir(name: &str) -> PathBuf {
    crate::common::test_dir(&format!("daemon/{name}"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    pub child: Child,
    pub hits: Receiver<String>,
    pub log: Receiver<String>,
}

/// The lines `r` yields, as they come, on a channel (a thread reads).
pub fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Daemon {
    /// Starts `iocd run` with `config` (TOML) written into `dir`, and waits
    /// until it says it is running.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    /// [`Daemon::start`] with environment variables for the daemon alone.
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let path = dir.join("iocd.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = crate::common::iocd();
        cmd.envs(env.iter().copied())
            .args(["run", "--config", path.to_str().unwrap()]);
        Daemon::spawn(cmd, dir)
    }

    /// Runs `cmd` (an `iocd run`, perhaps behind a shell) in `dir` with
    /// piped stdio, and waits until it says it is running.
    pub fn spawn(mut cmd: std::process::Command, dir: &Path) -> Daemon {
        let mut child = cmd
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let hits = lines_of(child.stdout.take().unwrap());
        let log = lines_of(child.stderr.take().unwrap());
        let mut d = Daemon { child, hits, log };
        d.wait_log("iocd running");
        d
    }

    /// Waits for a log line containing `needle`; returns it. On failure the
    /// panic shows what the daemon did log (a config error, say).
    pub fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(l) => seen.push(l),
                Err(e) => panic!(
                    "no log line with {needle:?} ({e:?}); the daemon logged:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Reads `n` hit lines (JSON) from stdout.
    pub fn read_hits(&self, n: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| {
                let l = self
                    .hits
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|_| panic!("only {i} of {n} hits arrived"));
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("hit is not JSON ({e}): {l}"))
            })
            .collect()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, then the exit status and every hit written until exit.
    pub fn stop(self) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        self.signal("TERM");
        self.finish()
    }

    /// Waits for exit (bounded) and collects the remaining hits.
    pub fn finish(mut self) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("iocd did not exit within {WAIT:?}");
            }
            // Exit is a process event with no portable wait-with-timeout; poll it.
            std::thread::sleep(Duration::from_millis(20));
        };
        let hits = self
            .hits
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect();
        (status, hits)
    }
}

impl Drop for Daemon {
    /// A failed test must not leave a daemon holding its ports.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A GET on loopback; returns (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled (or fully matched) metric line.
pub fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (bounded) until metric `prefix` satisfies `ok`; returns the whole exposition.
pub fn wait_metric(port: u16, prefix: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = http_get(port, "/metrics").1;
        if metric(&body, prefix).is_some_and(&ok) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix} never got there:\n{body}"
        );
        // A counter has no change notification: poll it.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test HTTP server on loopback: request `n` (from 0) is answered 503 when
/// `fails(n)`, else 200 and its head and body are handed over.
pub fn http_server(
    fails: impl Fn(usize) -> bool + Send + 'static,
) -> (u16, Receiver<(String, Vec<u8>)>) {
    http_server_answering(move |n, _| {
        if fails(n) {
            (503, String::new())
        } else {
            (200, String::new())
        }
    })
}

/// A test HTTP server on loopback whose answer to request `n` (from 0) with
/// body `b` is `answer(n, b)`: (status, body). Every request answered 2xx
/// is handed over as (head, body).
pub fn http_server_answering(
    answer: impl Fn(usize, &[u8]) -> (u16, String) + Send + 'static,
) -> (u16, Receiver<(String, Vec<u8>)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut head, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                // Header names are case-insensitive (reqwest writes them lowercase).
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let (status, reply) = answer(n, &body);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            if (200..300).contains(&status) && tx.send((head, body)).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// The `[metrics]` table serving on `port`.
pub fn metrics_at(port: u16) -> String {
    format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")
}

pub fn feed_config(feed: &Path) -> String {
    crate::common::minimal_config(feed, "")
}

/// A throwaway CA in `dir` (`ca.pem`), a server certificate for 127.0.0.1
/// (`server.pem`, `server.key`) and a client certificate (`client.pem`,
/// `client.key`) signed by it, made with openssl.
pub fn throwaway_pki(dir: &Path) {
    let sh = |script: &str| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj '/CN=iocd test CA' 2>/dev/null");
    std::fs::write(
        dir.join("server.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        let cn = if who == "server" {
            "127.0.0.1"
        } else {
            "iocd client"
        };
        sh(&format!("openssl req -newkey rsa:2048 -nodes -keyout {who}.key -out {who}.csr -subj '/CN={cn}' 2>/dev/null"));
        sh(&format!("openssl x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {who}.pem -days 1 -extfile {who}.cnf 2>/dev/null"));
    }
}

/// A TLS front (socat) on `port` for the plain server on `backend`, with
/// the certificates of [`throwaway_pki`]; with `verify_clients`, only
/// clients with a certificate from that CA get through. Stopped on drop.
pub struct TlsProxy(std::process::Child);

impl TlsProxy {
    pub fn start(dir: &Path, port: u16, backend: u16, verify_clients: bool) -> TlsProxy {
        let verify = if verify_clients {
            "verify=1,cafile=ca.pem"
        } else {
            "verify=0"
        };
        let child = std::process::Command::new("socat")
            .arg(format!("OPENSSL-LISTEN:{port},cert=server.pem,key=server.key,{verify},fork,reuseaddr,bind=127.0.0.1"))
            .arg(format!("TCP:127.0.0.1:{backend}"))
            .current_dir(dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        // socat says nothing when it listens: try to connect, bounded.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsProxy(child)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
