//! URL feeds against a real nginx (Debian's), started on loopback ports
//! with a temporary configuration: conditional GET (304), gzip, a 500 then
//! recovery, an update refused by the shrink guard, a MISP feed root with
//! an event changed and one removed, https with a throwaway CA and a
//! secret header, and a restart with the server gone.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common;
use super::harness::*;

/// nginx serving `dir/www` on `port` (http) and `tls_port` (https with the
/// certificates of [`throwaway_pki`]); stopped on drop.
struct Nginx(Child);

fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
}

impl Nginx {
    fn start(bin: &Path, dir: &Path, port: u16, tls_port: u16) -> Nginx {
        let d = dir.display();
        // One process (no master, no user switch), everything under `dir`.
        // `fail` beside www makes every answer a 500; /secure/ wants the key.
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{}}
http {{
    types {{ text/plain txt; application/json json; }}
    default_type application/octet-stream;
    log_format fetches '$request_uri $status $gzip_ratio';
    access_log {d}/access.log fetches;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    gzip on;
    gzip_min_length 0;
    gzip_types text/plain application/json;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        root {d}/www;
        location / {{
            if (-f {d}/fail) {{ return 500 "upstream down"; }}
        }}
        location /secure/ {{
            if ($http_x_api_key != "s3cret-key") {{ return 401; }}
        }}
    }}
}}
"#
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // nginx says nothing when it listens: connect, bounded.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn send_tcp(port: u16, data: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(data).unwrap();
}

/// 3,000 public addresses, one a line: 45.0.x.y.
fn address_list(extra: &str) -> String {
    let mut s: String = (0..3000)
        .map(|i| format!("45.0.{}.{}\n", i / 250, i % 250 + 1))
        .collect();
    s.push_str(extra);
    s
}

/// Requests nginx logged for `uri_part`: (status, gzip ratio).
fn requests(dir: &Path, uri_part: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("access.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(uri_part))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

/// Sends `line` and then a line that surely hits; returns the values the
/// first line hit (the marker's hit ends the read: lines keep their order).
fn hits_of(d: &Daemon, port: u16, line: &str) -> Vec<String> {
    send_tcp(port, format!("{line}\nmarker 45.0.0.1\n").as_bytes());
    let mut got = Vec::new();
    loop {
        let h = d.read_hits(1).pop().unwrap();
        let v = h["indicator"]["value"].as_str().unwrap().to_owned();
        if v == "45.0.0.1" {
            return got;
        }
        got.push(v);
        assert!(got.len() < 1000, "no marker hit");
    }
}

/// Sends SIGHUP (every URL feed fetches now) and waits for the reload.
fn refetch(d: &mut Daemon) {
    d.signal("HUP");
    d.wait_log("engine reloaded");
}

#[test]
fn url_feeds_against_nginx() {
    const TEST: &str = "url_feeds_against_nginx";
    let Some(nginx) = nginx_binary() else {
        common::installed("nginx", TEST);
        return;
    };
    if !common::installed("openssl", TEST) {
        return;
    }
    let dir = test_dir("url-feeds");
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("secure")).unwrap();
    throwaway_pki(&dir);
    std::fs::write(www.join("list.txt"), address_list("")).unwrap();
    std::fs::write(www.join("secure/list.txt"), "secure.example\n").unwrap();
    {
        use flate2::write::GzEncoder;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"gzipped.example\n").unwrap();
        std::fs::write(www.join("extra.txt.gz"), gz.finish().unwrap()).unwrap();
    }
    // The MISP feed of ../shared/data, served as published.
    let misp_src = common::shared_dir().map(|s| s.join("data/feeds/misp/tweetfeed_misp_feed"));
    let misp = misp_src.as_ref().filter(|p| p.is_dir());
    match misp {
        Some(src) => {
            std::fs::create_dir_all(www.join("misp")).unwrap();
            for e in std::fs::read_dir(src).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), www.join("misp").join(e.file_name())).unwrap();
            }
        }
        None => common::skipped(
            TEST,
            "../shared/data is missing: the MISP feed part does not run",
        ),
    }
    let (http, https, port, mport) = (free_port(), free_port(), free_port(), free_port());
    let server = Nginx::start(&nginx, &dir, http, https);
    let mut config = format!(
        r#"state_dir = "state"
[feeds.ipsum]
url = "http://127.0.0.1:{http}/list.txt"
[feeds.packed]
url = "http://127.0.0.1:{http}/extra.txt.gz"
[feeds.secure]
url = "https://127.0.0.1:{https}/secure/list.txt"
headers = {{ "X-Api-Key" = {{ env = "IOCD_TEST_API_KEY" }} }}
tls = {{ ca_file = "ca.pem" }}
[sources.in]
type = "tcp"
address = "127.0.0.1:{port}"
[sinks.out]
type = "stdout"
[reload]
interval_secs = 3600
{}
"#,
        metrics_at(mport)
    );
    if misp.is_some() {
        config.push_str(&format!(
            "[feeds.tweetfeed]\nurl = \"http://127.0.0.1:{http}/misp/\"\n"
        ));
    }
    std::env::set_var("IOCD_TEST_API_KEY", "s3cret-key");
    let mut d = Daemon::start(&dir, &config);

    // Every feed loaded: the plain list (gzip on the wire), the .gz body,
    // https with the throwaway CA and the secret header.
    let h = hits_of(&d, port, "45.0.11.250 gzipped.example secure.example");
    assert_eq!(h, ["45.0.11.250", "gzipped.example", "secure.example"]);
    assert_eq!(requests(&dir, "/list.txt")[0].0, "200");
    let ratio = &requests(&dir, "/list.txt")[0].1;
    assert!(ratio != "-", "the list was not sent gzipped");

    // Unchanged: a conditional GET answered 304.
    refetch(&mut d);
    wait_metric(
        mport,
        "iocd_feed_fetches_total{feed=\"ipsum\",result=\"not_modified\"}",
        |v| v >= 1.0,
    );
    assert_eq!(requests(&dir, "/list.txt").last().unwrap().0, "304");

    // A truncated download: refused by the shrink guard, the list stays.
    std::fs::write(www.join("list.txt"), "45.0.0.1\n45.0.0.2\n").unwrap();
    refetch(&mut d);
    wait_metric(
        mport,
        "iocd_feed_fetches_total{feed=\"ipsum\",result=\"refused\"}",
        |v| v >= 1.0,
    );
    assert_eq!(hits_of(&d, port, "still 45.0.5.5"), ["45.0.5.5"]);

    // An error body served as 200: not a feed, the list stays.
    std::fs::write(www.join("list.txt"), "error code: 1020\n").unwrap();
    refetch(&mut d);
    assert_eq!(hits_of(&d, port, "still 45.0.5.6"), ["45.0.5.6"]);

    // A 500, then recovery with new content.
    std::fs::write(dir.join("fail"), "").unwrap();
    refetch(&mut d);
    wait_metric(
        mport,
        "iocd_feed_failures_total{feed=\"ipsum\",reason=\"fetch\"}",
        |v| v >= 1.0,
    );
    assert_eq!(hits_of(&d, port, "still 45.0.5.7"), ["45.0.5.7"]);
    std::fs::remove_file(dir.join("fail")).unwrap();
    std::fs::write(www.join("list.txt"), address_list("45.9.9.9\n")).unwrap();
    refetch(&mut d);
    assert_eq!(hits_of(&d, port, "new 45.9.9.9"), ["45.9.9.9"]);

    if misp.is_some() {
        misp_feed_changes(&dir, &mut d, port);
    }

    // `iocd scan` takes a URL like a path (https with IOCD_CA_FILE).
    let out = {
        let mut scan = common::iocd()
            .args([
                "scan",
                "-q",
                "-i",
                &format!("https://127.0.0.1:{https}/list.txt"),
            ])
            .env("IOCD_CA_FILE", dir.join("ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        scan.stdin
            .take()
            .unwrap()
            .write_all(b"a 45.9.9.9 b\n")
            .unwrap();
        scan.wait_with_output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let hit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one hit");
    assert_eq!(hit["indicator"]["feed"], "list.txt", "{stderr}");
    // A URL that fails is an error there: nothing earlier to fall back on.
    let out = common::iocd()
        .args([
            "scan",
            "-q",
            "-i",
            &format!("http://127.0.0.1:{http}/missing.txt"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));

    // A restart with the server gone still matches what was fetched.
    drop(server);
    let (status, _) = d.stop();
    assert!(status.success());
    let d = Daemon::start(&dir, &config);
    wait_metric(
        mport,
        "iocd_feed_failures_total{feed=\"ipsum\",reason=\"fetch\"}",
        |v| v >= 1.0,
    );
    assert_eq!(
        hits_of(&d, port, "45.9.9.9 gzipped.example secure.example"),
        ["45.9.9.9", "gzipped.example", "secure.example"]
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

/// The MISP feed root: one event changed (new attribute, new timestamp),
/// one removed from the manifest. Only the changed event is fetched again.
fn misp_feed_changes(dir: &Path, d: &mut Daemon, port: u16) {
    let root = dir.join("www/misp");
    let manifest_path = root.join("manifest.json");
    let mut manifest: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    // (The manifest as published names a few events the feed lacks.)
    let uuids: Vec<String> = manifest
        .keys()
        .filter(|u| root.join(format!("{u}.json")).exists())
        .cloned()
        .collect();
    let event = |uuid: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join(format!("{uuid}.json"))).unwrap()).unwrap()
    };
    // The event to remove, and a domain only it lists.
    let (removed, only_there) = uuids
        .iter()
        .find_map(|u| {
            let others: String = uuids
                .iter()
                .filter(|o| *o != u)
                .map(|o| std::fs::read_to_string(root.join(format!("{o}.json"))).unwrap())
                .collect();
            event(u)["Event"]["Attribute"]
                .as_array()?
                .iter()
                .filter(|a| a["type"] == "domain" && a["to_ids"] == true)
                .map(|a| a["value"].as_str().unwrap().to_owned())
                .find(|v| !others.contains(&format!("\"{v}\"")))
                .map(|v| (u.clone(), v))
        })
        .expect("an event with a domain of its own");
    assert_eq!(
        hits_of(d, port, &format!("was {only_there}")),
        [only_there.as_str()]
    );
    let changed = uuids.iter().find(|u| **u != removed).unwrap().clone();
    let unchanged = uuids
        .iter()
        .find(|u| **u != removed && **u != changed)
        .unwrap()
        .clone();
    let mut e = event(&changed);
    e["Event"]["Attribute"].as_array_mut().unwrap().push(
        serde_json::json!({"uuid": "0f0f0f0f-0000-4000-8000-000000000001", "type": "domain",
            "category": "Network activity", "to_ids": true, "value": "changed-event.example"}),
    );
    e["Event"]["timestamp"] = "1999999999".into();
    std::fs::write(root.join(format!("{changed}.json")), e.to_string()).unwrap();
    manifest[&changed]["timestamp"] = "1999999999".into();
    manifest.remove(&removed);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let before = |u: &str| requests(dir, &format!("/misp/{u}.json")).len();
    let (changed_before, other_before) = (before(&changed), before(&unchanged));
    refetch(d);
    assert_eq!(
        hits_of(d, port, &format!("now {only_there} changed-event.example")),
        ["changed-event.example"]
    );
    assert_eq!(
        before(&changed),
        changed_before + 1,
        "the changed event is fetched"
    );
    assert_eq!(before(&unchanged), other_before, "unchanged events are not");
}
