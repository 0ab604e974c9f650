//! TAXII 2.1 against the OASIS reference server `medallion` (PyPI), started
//! on a free loopback port with a small page size: paging, `added_after`, a
//! revoked object and a `valid_until` that passes during the test, the
//! server going away and coming back, and a restart with the server down.

mod common;
#[path = "daemon/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use harness::{free_port, test_dir, throwaway_pki, Daemon, TlsProxy, WAIT};
use serde_json::{json, Value};

struct Medallion {
    child: Child,
    port: u16,
}

impl Drop for Medallion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn indicator(n: u32, domain: &str, extra: Value) -> Value {
    let mut o = json!({
        "type": "indicator", "spec_version": "2.1", "id": format!("indicator--{n:08}-0000-4000-8000-000000000000"),
        "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "valid_from": "2026-01-01T00:00:00Z",
        "pattern_type": "stix", "pattern": format!("[domain-name:value = '{domain}']"),
    });
    o.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    o
}

/// Starts medallion serving `objects` in collection `c1` of api root `api1`
/// (page size 2, user `u`/`p`). `None` (said loudly) when not installed.
fn medallion(dir: &Path, port: u16, objects: &[Value]) -> Option<Medallion> {
    if Command::new("medallion")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        common::skipped(
            "taxii tests",
            "medallion is not installed (pip install medallion)",
        );
        return None;
    }
    let manifest: Vec<Value> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| json!({"id": o["id"], "date_added": format!("2026-01-01T00:00:{:02}.000000Z", i % 60), "version": o["modified"], "media_type": "application/stix+json;version=2.1"}))
        .collect();
    let data = json!({
        "/discovery": {"title": "test", "api_roots": [format!("http://127.0.0.1:{port}/api1/")]},
        "api1": {"information": {"title": "a", "versions": ["application/taxii+json;version=2.1"], "max_content_length": 9765625}, "status": [],
                 "collections": [{"id": "c1", "title": "c", "can_read": true, "can_write": true, "media_types": ["application/stix+json;version=2.1"], "objects": objects, "manifest": manifest}]}
    });
    std::fs::write(dir.join("data.json"), data.to_string()).unwrap();
    let config = json!({"backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend", "filename": dir.join("data.json")}, "users": {"u": "p"}, "taxii": {"max_page_size": 2}});
    std::fs::write(dir.join("medallion.json"), config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("medallion.log")).unwrap();
    let child = Command::new("medallion")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(dir.join("medallion.json"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let m = Medallion { child, port };
    let deadline = Instant::now() + WAIT;
    // The server is up when it accepts a connection; there is no other signal.
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "medallion did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(m)
}

impl Medallion {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api1/collections/c1/", self.port)
    }

    fn post(&self, objects: &[Value]) {
        let body = json!({ "objects": objects }).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST /api1/collections/c1/objects/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic dTpw\r\nAccept: application/taxii+json;version=2.1\r\nContent-Type: application/taxii+json;version=2.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    }
}

fn objects(n: u32) -> Vec<Value> {
    (0..n)
        .map(|i| indicator(i, &format!("d{i}.example"), json!({})))
        .collect()
}

#[test]
fn scan_pages_through_a_collection() {
    let dir = test_dir("taxii-scan");
    let port = free_port();
    let mut objs = objects(7);
    objs.push(json!({"type": "malware", "spec_version": "2.1", "id": "malware--00000000-0000-4000-8000-000000000000", "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "name": "m", "is_family": false}));
    // Real indicators too, when the shared data is there.
    if let Some(shared) = common::shared_dir() {
        let week: Value = serde_json::from_slice(
            &std::fs::read(shared.join("data/feeds/stix/tweetfeed/week.json")).unwrap(),
        )
        .unwrap();
        objs.extend(
            week["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["type"] == "indicator")
                .take(40)
                .cloned(),
        );
    }
    let Some(m) = medallion(&dir, port, &objs) else {
        return;
    };
    let indicators = objs.iter().filter(|o| o["type"] == "indicator").count();
    let out = common::iocd()
        .args(["scan", "-i", &m.url()])
        .env("IOCD_TAXII_USER", "u")
        .env("IOCD_TAXII_PASSWORD", "p")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"to d0.example and d6.example\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("(stix; 1 file): {indicators} indicators")),
        "all {indicators} indicators over pages of 2: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // Wrong credentials: the feed cannot be read, said with the server's answer.
    let bad = common::iocd()
        .args(["scan", "-i", &m.url(), "/dev/null"])
        .env("IOCD_TAXII_USER", "u")
        .env("IOCD_TAXII_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("HTTP 401"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

fn send(port: u16, line: &str) {
    TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
}

fn config(dir: &Path, taxii: &str, port: u16) -> String {
    let state: PathBuf = dir.join("state");
    format!(
        "state_dir = {:?}\n[taxii.cti]\nurl = \"{taxii}\"\npoll_interval_secs = 1\nusername = \"u\"\npassword = \"p\"\npage_size = 2\n[sources.syslog]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.out]\ntype = \"stdout\"\n",
        state.display().to_string()
    )
}

#[test]
fn daemon_follows_revocation_expiry_outage_and_restart() {
    let dir = test_dir("taxii-daemon");
    let (mport, port) = (free_port(), free_port());
    let Some(m) = medallion(&dir, mport, &objects(5)) else {
        return;
    };
    let conf = config(&dir, &m.url(), port);
    let mut d = Daemon::start(&dir, &conf);
    // Start-up does not wait for the server: the first poll runs beside
    // the daemon and its objects are applied by a reload when it ends.
    d.wait_log("objects=5");
    d.wait_log("engine reloaded");
    send(port, "1 d1.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "d1.example");

    // A revocation and an indicator that expires in a few seconds arrive.
    // (A poll beside the daemon is applied by the reload its end wakes: up
    // to two poll intervals and a build after the post, so the expiry must
    // leave room for that.)
    let until_secs = iocd::feeds::unix_now() + 10;
    let until = iocd::hit::rfc3339(until_secs, 0);
    m.post(&[
        indicator(
            1,
            "d1.example",
            json!({"modified": "2026-06-01T00:00:00.000Z", "revoked": true}),
        ),
        indicator(9, "d9.example", json!({"valid_until": until})),
    ]);
    d.wait_log("objects=2");
    d.wait_log("engine reloaded");
    send(port, "2 d1.example d9.example");
    let h = d.read_hits(1);
    assert_eq!(
        (
            h[0]["line_number"].as_u64(),
            h[0]["indicator"]["value"].as_str()
        ),
        (Some(1), Some("d9.example"))
    );
    // d9 expires. Polls every second rebuild the engine too, so the build
    // that drops it may be a poll's: wait for a build that began after the
    // expiry (the second reload logged past it).
    let mut after = 0;
    while after < 2 {
        d.wait_log("engine reloaded");
        if iocd::feeds::unix_now() > until_secs {
            after += 1;
        }
    }
    send(port, "3 d9.example d2.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "d2.example");

    // The server goes away: what was loaded keeps matching.
    drop(m);
    d.wait_log("TAXII poll failed");
    send(port, "4 d2.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "d2.example");
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");

    // A restart with the server still down matches from the persisted objects.
    let mut d = Daemon::start(&dir, &conf);
    send(port, "5 d1.example d3.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "d3.example");
    // The server comes back: polling resumes from the checkpoint.
    let m = medallion(&dir, mport, &objects(5)).expect("medallion ran before");
    d.wait_log("objects=0");
    send(port, "6 d1.example d4.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "d4.example");
    drop(m);
    let (status, rest) = d.stop();
    assert!(status.success() && rest.is_empty(), "{rest:?}");
}

#[test]
fn taxii_over_https_verifies_the_server() {
    let dir = test_dir("taxii-tls");
    let (mport, tport) = (free_port(), free_port());
    let Some(m) = medallion(&dir, mport, &objects(3)) else {
        return;
    };
    if !common::installed("openssl", "taxii over https")
        || !common::installed("socat", "taxii over https")
    {
        return;
    }
    throwaway_pki(&dir);
    // TLS in front of medallion, as a reverse proxy would be.
    let _proxy = TlsProxy::start(&dir, tport, m.port, false);
    let url = format!("https://127.0.0.1:{tport}/api1/collections/c1/");
    let scan = |ca: Option<&Path>| {
        let mut c = common::iocd();
        c.args(["scan", "-i", &url, "/dev/null"])
            .env("IOCD_TAXII_USER", "u")
            .env("IOCD_TAXII_PASSWORD", "p");
        if let Some(ca) = ca {
            c.env("IOCD_TAXII_CA_FILE", ca);
        }
        c.output().unwrap()
    };
    let ok = scan(Some(&dir.join("ca.pem")));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("(stix; 1 file): 3 indicators"));
    // The system's roots do not know this CA: refused, and said why.
    let refused = scan(None);
    assert_eq!(refused.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("UnknownIssuer"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn a_wrong_collection_is_named() {
    let dir = test_dir("taxii-wrong");
    let port = free_port();
    let Some(m) = medallion(&dir, port, &objects(1)) else {
        return;
    };
    let url = m.url().replace("/c1/", "/nope/");
    let out = common::iocd()
        .args(["scan", "-i", &url, "/dev/null"])
        .env("IOCD_TAXII_USER", "u")
        .env("IOCD_TAXII_PASSWORD", "p")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("collections/nope/") && err.contains("HTTP 404"),
        "{err}"
    );
}

/// A hostile TAXII server, answering every request on `port` with what
/// `answer(path)` gives (status, body); stopped when the test ends.
fn hostile_server(answer: fn(&str) -> (u16, Vec<u8>)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match std::io::Read::read(&mut conn, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = answer(&path);
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/taxii+json;version=2.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    port
}

fn discovery(path: &str) -> Option<(u16, Vec<u8>)> {
    if path == "/api/" {
        return Some((200, br#"{"title":"t","versions":["application/taxii+json;version=2.1"],"max_content_length":1000}"#.to_vec()));
    }
    if path == "/api/collections/c/" {
        return Some((
            200,
            br#"{"id":"c","title":"c","can_read":true,"can_write":false}"#.to_vec(),
        ));
    }
    None
}

/// The findings: an endless `more: true` never finished start-up, and a
/// 2 GB response reached 13 GB of RSS. Pages per poll and bytes per
/// response are bounded; either ends the poll with an error that says so.
#[test]
fn a_hostile_taxii_server_cannot_hold_or_flood_a_poll() {
    let endless = hostile_server(|path| {
        discovery(path).unwrap_or_else(|| {
            (
                200,
                br#"{"more":true,"next":"again","objects":[]}"#.to_vec(),
            )
        })
    });
    let huge = hostile_server(|path| {
        discovery(path).unwrap_or_else(|| {
            let mut body = br#"{"more":false,"objects":[{"pad":""#.to_vec();
            body.resize(body.len() + (65 << 20), b'x');
            body.extend_from_slice(br#""}]}"#);
            (200, body)
        })
    });
    for (port, says) in [(endless, "max_pages"), (huge, "max_response_bytes")] {
        let out = common::iocd()
            .args([
                "scan",
                "-q",
                "-i",
                &format!("http://127.0.0.1:{port}/api/collections/c/"),
                "/dev/null",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// A server on a free loopback port that accepts connections, says so on
/// the channel, and never answers. It lives as long as the test process.
fn silent_server() -> (u16, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    (port, accepted)
}

/// The finding: a TAXII server that answers a byte at a time blocked
/// start-up, and SIGTERM was ignored until it was done. A stop during the
/// first load is obeyed at once.
#[test]
fn sigterm_while_a_poll_hangs_at_start_exits_at_once() {
    let (taxii, accepted) = silent_server();
    let dir = test_dir("taxii-hang");
    let port = free_port();
    std::fs::write(
        dir.join("iocd.toml"),
        format!(
            "state_dir = \"state\"\n[taxii.slow]\nurl = \"http://127.0.0.1:{taxii}/api/collections/c/\"\ntimeout_secs = 3600\n[sources.in]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.out]\ntype = \"stdout\"\n"
        ),
    )
    .unwrap();
    let mut child = common::iocd()
        .args(["run", "--config", "iocd.toml"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The poll is under way once its connection reaches the server.
    accepted
        .recv_timeout(WAIT)
        .expect("the daemon polls the server");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM ignored while the poll hangs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// Every object of type `kind` in collection c1, following `next` pages.
fn read_back(port: u16, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1000 {
        // medallion wants `limit` beside `next`.
        let mut path = format!("/api1/collections/c1/objects/?match[type]={kind}&limit=2");
        if let Some(n) = &next {
            path.push_str(&format!("&next={n}"));
        }
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic dTpw\r\nAccept: application/taxii+json;version=2.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        if body.trim().is_empty() {
            return out;
        }
        let page: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"));
        out.extend(page["objects"].as_array().cloned().unwrap_or_default());
        match (page["more"].as_bool(), page["next"].as_str()) {
            (Some(true), Some(n)) => next = Some(n.to_owned()),
            _ => return out,
        }
    }
    panic!("more than 1000 pages");
}

const AMBER: &str = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82";
const RED: &str = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";

/// Runs the daemon on `lines` from stdin to its end (sightings are
/// exported at the drain), writing them once it logged `after`.
fn run_lines(dir: &Path, config: &str, after: Option<&str>, lines: &str) {
    let mut d = Daemon::start(dir, config);
    if let Some(needle) = after {
        d.wait_log(needle);
    }
    let mut stdin = d.child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    let (status, _) = d.finish();
    assert!(status.success(), "{status}");
}

fn sightings_config(dir: &Path, intel: Option<&str>, taxii_port: u16) -> String {
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/plain.txt"), "198.51.100.7\n").unwrap();
    let intel = intel.map_or(String::new(), |url| {
        format!(
            "[taxii.intel]\nurl = \"{url}\"\nusername = \"u\"\npassword = \"p\"\npage_size = 2\n"
        )
    });
    format!(
        "state_dir = {:?}\n[feeds.plain]\npath = {:?}\n{intel}[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"stdout\"\n[sightings]\ninterval_secs = 3600\nidentity = \"ACME SOC\"\nfile = {:?}\nmisp_file = {:?}\n[sightings.taxii]\nurl = \"http://127.0.0.1:{taxii_port}/api1/collections/c1/\"\nusername = \"u\"\npassword = \"p\"\ntimeout_secs = 5\n",
        dir.join("state").display().to_string(),
        dir.join("feeds/plain.txt").display().to_string(),
        dir.join("sightings.jsonl").display().to_string(),
        dir.join("misp-sightings.jsonl").display().to_string(),
    )
}

/// Sightings go to a writable collection of the real server and are read
/// back over TAXII; TLP:RED is withheld, TLP:AMBER kept on the sighting.
#[test]
fn sightings_are_posted_and_read_back() {
    let dir = test_dir("taxii-sightings");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mport = free_port();
    let objects = vec![
        indicator(1, "c2.example", json!({"object_marking_refs": [AMBER]})),
        indicator(2, "red.example", json!({"object_marking_refs": [RED]})),
    ];
    let Some(m) = medallion(&dir, mport, &objects) else {
        return;
    };
    let conf = sightings_config(&dir, Some(&m.url()), mport);
    // The collection's first poll is applied by a reload after start-up.
    run_lines(
        &dir,
        &conf,
        Some("engine reloaded"),
        "a c2.example\nb red.example\nc 198.51.100.7\nd c2.example\ne c2.example red.example\n",
    );
    let sightings = read_back(mport, "sighting");
    assert_eq!(sightings.len(), 2, "{sightings:?}");
    let of = |id: &str| sightings.iter().find(|s| s["sighting_of_ref"] == id);
    let c2 = of("indicator--00000001-0000-4000-8000-000000000000").expect("sighting of c2.example");
    assert_eq!(c2["count"], 3);
    assert_eq!(c2["object_marking_refs"], json!([AMBER]));
    assert!(
        of("indicator--00000002-0000-4000-8000-000000000000").is_none(),
        "TLP:RED withheld"
    );
    let made: Vec<Value> = read_back(mport, "indicator")
        .into_iter()
        .filter(|i| i["pattern"] == "[ipv4-addr:value = '198.51.100.7']")
        .collect();
    assert_eq!(made.len(), 1, "an indicator for the plain feed's value");
    let plain = of(made[0]["id"].as_str().unwrap()).expect("sighting of 198.51.100.7");
    assert_eq!(plain["count"], 1);
    let identity = &read_back(mport, "identity")[0];
    assert_eq!(identity["name"], "ACME SOC");
    assert_eq!(plain["where_sighted_refs"], json!([identity["id"]]));
    assert!(plain.get("observed_data_refs").is_none());
    // The same bundle went to the file; MISP sightings to theirs.
    let bundle: Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("sightings.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(bundle["type"], "bundle");
    assert!(!bundle.to_string().contains("red.example"));
    let misp: Vec<Value> = std::fs::read_to_string(dir.join("misp-sightings.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(misp.len(), 2);
    for s in &misp {
        // MISP's Sighting: value, source, timestamp (epoch seconds as a
        // string), type "0" (a sighting; 1 false positive, 2 expiration).
        assert_eq!(s["type"], "0");
        assert_eq!(s["source"], "ACME SOC");
        assert!(s["timestamp"].as_str().unwrap().parse::<u64>().unwrap() > 1_600_000_000);
        assert_ne!(s["value"], "red.example");
    }
    assert!(
        std::fs::read_dir(dir.join("state/sightings"))
            .unwrap()
            .next()
            .is_none(),
        "queue empty"
    );
}

/// With the server down the sightings wait in state_dir; once it is up
/// they are sent exactly once.
#[test]
fn sightings_wait_for_the_server_and_are_not_duplicated() {
    let dir = test_dir("taxii-sightings-down");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mport = free_port();
    let conf = sightings_config(&dir, None, mport);
    // Nothing listens on mport yet.
    run_lines(&dir, &conf, None, "x 198.51.100.7\ny 198.51.100.7\n");
    let queued: Vec<_> = std::fs::read_dir(dir.join("state/sightings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(queued.len(), 1, "one bundle kept: {queued:?}");
    let Some(_m) = medallion(&dir, mport, &[]) else {
        return;
    };
    // A restart with no new line sends what waited, once.
    run_lines(&dir, &conf, None, "");
    run_lines(&dir, &conf, None, "");
    let sightings = read_back(mport, "sighting");
    assert_eq!(sightings.len(), 1, "{sightings:?}");
    assert_eq!(sightings[0]["count"], 2);
    assert!(std::fs::read_dir(dir.join("state/sightings"))
        .unwrap()
        .next()
        .is_none());
}

/// A TAXII server that never answers holds neither start-up nor the
/// reloads of the other feeds: the poll runs on its own.
#[test]
fn a_hanging_poll_does_not_hold_start_up_or_reloads() {
    let (taxii, accepted) = silent_server();
    let dir = test_dir("taxii-hang-reload");
    let port = free_port();
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/local.txt"), "198.51.100.7\n").unwrap();
    let conf = format!(
        "state_dir = \"state\"\n[feeds.local]\npath = {:?}\n[taxii.slow]\nurl = \"http://127.0.0.1:{taxii}/api/collections/c/\"\ntimeout_secs = 3600\n[sources.in]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.out]\ntype = \"stdout\"\n[reload]\ninterval_secs = 3600\ndebounce_ms = 100\n",
        dir.join("feeds").display().to_string()
    );
    let mut d = Daemon::start(&dir, &conf);
    accepted
        .recv_timeout(WAIT)
        .expect("the daemon polls the server");
    send(port, "1 198.51.100.7");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "198.51.100.7");
    // The poll still hangs; a change to another feed is loaded all the same.
    std::fs::write(dir.join("feeds/local.txt"), "198.51.100.7\nlate.example\n").unwrap();
    d.wait_log("engine reloaded");
    send(port, "2 late.example");
    assert_eq!(d.read_hits(1)[0]["indicator"]["value"], "late.example");
    let (status, _) = d.stop();
    assert!(status.success());
}
