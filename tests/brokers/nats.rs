//! NATS JetStream: Debian's `nats-server -js` with a file store (so a
//! restart keeps the streams), async-nats as the client producing the logs
//! and reading the hits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

use crate::harness::{free_port, http_get, test_dir, wait_metric, Daemon};
use crate::lines::{self, expected, metric_sum, HitReader};

/// A JetStream server on a loopback port, storing in `store`; killed on drop.
struct NatsServer {
    port: u16,
    store: PathBuf,
    child: Child,
}

impl NatsServer {
    fn start(port: u16, store: &Path) -> NatsServer {
        let mut child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lines::wait_listening(port, &mut child, "nats-server");
        NatsServer {
            port,
            store: store.to_owned(),
            child,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        *self = NatsServer::start(self.port, &self.store.clone());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A JetStream context; `nats://TOKEN@host:port` authenticates with TOKEN.
async fn js(url: &str) -> jetstream::Context {
    let client = match url.strip_prefix("nats://").and_then(|r| r.split_once('@')) {
        Some((token, host)) => async_nats::ConnectOptions::with_token(token.to_owned())
            .connect(format!("nats://{host}"))
            .await
            .unwrap(),
        None => async_nats::connect(url).await.unwrap(),
    };
    jetstream::new(client)
}

/// The logs' stream, and (unless `hits` is false) the hits' stream with
/// a duplicate window.
fn streams(url: &str, hits: bool) {
    runtime().block_on(async {
        let js = js(url).await;
        js.create_stream(jetstream::stream::Config {
            name: "LOGS".into(),
            subjects: vec!["logs.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        if hits {
            hits_stream(&js).await;
        }
    });
}

async fn hits_stream(js: &jetstream::Context) {
    js.create_stream(jetstream::stream::Config {
        name: "HITS".into(),
        subjects: vec!["iocd.hits.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Publishes `lines`, `per_message` to a message, with JetStream acks.
fn publish(url: &str, lines: &[String], per_message: usize) {
    runtime().block_on(async {
        let js = js(url).await;
        let mut acks = Vec::new();
        for chunk in lines.chunks(per_message) {
            acks.push(
                js.publish("logs.app", chunk.join("\n").into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    });
}

/// Reads the hits' stream from its start, as hits arrive.
fn reader(url: &str) -> HitReader {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = url.to_owned();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let js = js(&url).await;
            let stream = js.get_stream("HITS").await.unwrap();
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
                .await
                .unwrap();
            let mut messages = consumer.messages().await.unwrap();
            // Ends with the server (the test's end) or when the test stops reading.
            while let Some(Ok(m)) = messages.next().await {
                if tx
                    .send(String::from_utf8(m.payload.to_vec()).unwrap())
                    .is_err()
                {
                    return;
                }
            }
        })
    });
    HitReader::from_channel(rx)
}

fn config(dir: &Path, url: &str, admin: u16, extra: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let feed = dir.join("feed.txt");
    if !feed.exists() {
        std::fs::write(&feed, lines::FEED).unwrap();
    }
    format!(
        "[feeds.test]\npath = {feed:?}\n\
         [sources.js]\ntype = \"nats\"\nurl = \"{url}\"\nstream = \"LOGS\"\nconsumer = \"iocd\"\nsubject = \"logs.>\"\n{extra}\n\
         [sinks.js]\ntype = \"nats\"\nurl = \"{url}\"\nsubject = \"iocd.hits.{{type}}\"\n\
         [metrics]\naddress = \"127.0.0.1:{admin}\"\n",
    )
}

/// Debian installs it in /usr/sbin, which a user's PATH may lack.
fn nats_server() -> &'static str {
    let on_path = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    if on_path || !Path::new("/usr/sbin/nats-server").exists() {
        "nats-server"
    } else {
        "/usr/sbin/nats-server"
    }
}

fn server(test: &str, dir: &Path) -> Option<NatsServer> {
    if !crate::common::installed(nats_server(), test) {
        return None;
    }
    Some(NatsServer::start(free_port(), &dir.join("store")))
}

const RECEIVED: &str = "iocd_source_lines_received_total{source=\"js\"}";
const ACKS_OK: &str = "iocd_source_commits_total{result=\"ok\",source=\"js\"}";
const READY: &str = "/ready";

/// One instance: exactly `iocd scan`'s hits, each naming its stream,
/// subject and sequence, on subjects by indicator type.
#[test]
fn nats_one_instance_hits_every_line() {
    let test = "nats_one_instance_hits_every_line";
    let dir = test_dir("nats-one");
    let Some(server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), true);
    let admin = free_port();
    let d = Daemon::start(&dir, &config(&dir, &server.url(), admin, ""));
    let lines = lines::lines(0..3000);
    let want = expected(&dir, lines::FEED, &lines);
    let mut hits = reader(&server.url());
    publish(&server.url(), &lines, 100);
    hits.read_until_all_or_show(&want, Duration::from_secs(60), &[&d]);
    assert!(hits.unexpected(&want).is_empty());
    assert_eq!(hits.duplicates(), 0);
    for h in &hits.docs {
        let o = &h["origin"];
        assert_eq!(o["broker"], "nats", "{h}");
        assert_eq!(o["stream"], "LOGS");
        assert_eq!(o["subject"], "logs.app");
        assert!(o["sequence"].as_u64().unwrap() >= 1 && o["line"].as_u64().unwrap() >= 1);
    }
    wait_metric(admin, RECEIVED, |n| n == 3000.0);
    wait_metric(admin, ACKS_OK, |n| n == 30.0);
    assert!(d.stop().0.success());
}

/// Two and three instances on one durable consumer: the same hits as one,
/// each line read once.
#[test]
fn nats_instances_share_one_consumer() {
    let test = "nats_instances_share_one_consumer";
    let dir = test_dir("nats-group");
    let Some(server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), true);
    let mut hits = reader(&server.url());
    let (mut daemons, mut admins) = (Vec::new(), Vec::new());
    let mut produced = 0;
    for n in [2usize, 3] {
        while daemons.len() < n {
            let admin = free_port();
            let d = dir.join(format!("i{}", daemons.len()));
            daemons.push(Daemon::start(&d, &config(&d, &server.url(), admin, "")));
            admins.push(admin);
        }
        let lines = lines::lines(produced..produced + 4000);
        let want = expected(&dir, lines::FEED, &lines);
        publish(&server.url(), &lines, 20);
        produced += 4000;
        hits.read_until_all(&want, Duration::from_secs(60));
        let deadline = std::time::Instant::now() + crate::harness::WAIT;
        while metric_sum(&admins, RECEIVED) < produced as f64 {
            assert!(
                std::time::Instant::now() < deadline,
                "lines not all received"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            metric_sum(&admins, RECEIVED),
            produced as f64,
            "each line read once"
        );
        let busy = admins
            .iter()
            .filter(|a| {
                crate::harness::metric(&http_get(**a, "/metrics").1, RECEIVED).unwrap_or(0.0) > 0.0
            })
            .count();
        assert!(busy >= 2, "{n} instances, only {busy} read anything");
    }
    assert_eq!(hits.duplicates(), 0);
    for d in daemons {
        assert!(d.stop().0.success());
    }
}

/// kill -9 one of two instances mid-stream: its unacknowledged messages
/// are delivered to the other after the ack wait; no hit is missing, and
/// the `Nats-Msg-Id` of each hit keeps the stream from storing one twice.
#[test]
fn nats_kill_9_loses_no_hit() {
    let test = "nats_kill_9_loses_no_hit";
    let dir = test_dir("nats-kill");
    let Some(server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), true);
    let (a0, a1) = (free_port(), free_port());
    let extra = "ack_wait_secs = 2";
    let survivor = Daemon::start(
        &dir.join("a"),
        &config(&dir.join("a"), &server.url(), a0, extra),
    );
    let mut victim = Daemon::start(
        &dir.join("b"),
        &config(&dir.join("b"), &server.url(), a1, extra),
    );
    let lines = lines::lines(0..20_000);
    let want = expected(&dir, lines::FEED, &lines);
    let mut hits = reader(&server.url());
    let publisher = {
        let (u, l) = (server.url(), lines.clone());
        std::thread::spawn(move || publish(&u, &l, 50))
    };
    wait_metric(a1, RECEIVED, |n| n > 0.0);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    publisher.join().unwrap();
    hits.read_until_all_or_show(&want, Duration::from_secs(90), &[&survivor]);
    assert!(hits.unexpected(&want).is_empty());
    eprintln!(
        "nats kill -9: {} hits, all present; {} stored twice (Nats-Msg-Id de-duplicates redeliveries)",
        want.len(),
        hits.duplicates()
    );
    assert!(survivor.stop().0.success());
}

/// The server restarts mid-stream (its file store keeps the streams and
/// the consumer's acks): nothing is missing afterwards.
#[test]
fn nats_server_restart_loses_no_hit() {
    let test = "nats_server_restart_loses_no_hit";
    let dir = test_dir("nats-restart");
    let Some(mut server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), true);
    let admin = free_port();
    let d = Daemon::start(
        &dir,
        &config(&dir, &server.url(), admin, "ack_wait_secs = 5"),
    );
    let lines = lines::lines(0..10_000);
    let want = expected(&dir, lines::FEED, &lines);
    publish(&server.url(), &lines[..5000], 50);
    wait_metric(admin, RECEIVED, |n| n > 0.0);
    server.stop();
    // Disconnected, the source cannot consume: not ready.
    lines::wait_ready(admin, 503, "NATS server unreachable");
    server.restart();
    let restarted = std::time::Instant::now();
    publish(&server.url(), &lines[5000..], 50);
    let mut hits = reader(&server.url());
    hits.read_until_all_or_show(&want, Duration::from_secs(120), &[&d]);
    assert!(hits.unexpected(&want).is_empty());
    lines::wait_ready(admin, 200, "");
    eprintln!(
        "nats server restart: all {} hits within {:.1} s of the restart; {} stored twice",
        want.len(),
        restarted.elapsed().as_secs_f64(),
        hits.duplicates()
    );
    assert!(d.stop().0.success());
}

/// A sink that cannot publish (no stream takes its subject yet): nothing
/// is acknowledged; once a stream takes it, every hit arrives and the
/// messages are acknowledged.
#[test]
fn nats_sink_down_holds_acks() {
    let test = "nats_sink_down_holds_acks";
    let dir = test_dir("nats-sink-down");
    let Some(server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), false);
    let admin = free_port();
    let d = Daemon::start(&dir, &config(&dir, &server.url(), admin, ""));
    let lines = lines::lines(0..1000);
    let want = expected(&dir, lines::FEED, &lines);
    publish(&server.url(), &lines, 100);
    wait_metric(admin, RECEIVED, |n| n == 1000.0);
    wait_metric(
        admin,
        "iocd_sink_requests_retried_total{sink=\"js\"}",
        |n| n >= 1.0,
    );
    let body = http_get(admin, "/metrics").1;
    assert_eq!(
        crate::harness::metric(&body, ACKS_OK).unwrap_or(0.0),
        0.0,
        "{body}"
    );
    runtime().block_on(async { hits_stream(&js(&server.url()).await).await });
    let mut hits = reader(&server.url());
    hits.read_until_all_or_show(&want, Duration::from_secs(90), &[&d]);
    wait_metric(admin, ACKS_OK, |n| n == 10.0);
    assert_eq!(http_get(admin, READY).0, 200);
    assert!(d.stop().0.success());
}

/// Swapping to the full indicator set while lines stream in loses nothing:
/// every line gives the hits of the small set, and every line sent after
/// the reload those of the full set.
#[test]
fn nats_reload_under_load_loses_nothing() {
    let test = "nats_reload_under_load_loses_nothing";
    let dir = test_dir("nats-reload");
    let Some(server) = server(test, &dir) else {
        return;
    };
    streams(&server.url(), true);
    let admin = free_port();
    let mut d = Daemon::start(&dir, &config(&dir, &server.url(), admin, ""));
    let first = lines::lines(0..20_000);
    let mut hits = reader(&server.url());
    let publisher = {
        let (u, l) = (server.url(), first.clone());
        std::thread::spawn(move || publish(&u, &l, 100))
    };
    wait_metric(admin, RECEIVED, |n| n > 0.0);
    let full = format!("{}{}", lines::FEED, lines::FEED_MORE);
    std::fs::write(dir.join("feed.new"), &full).unwrap();
    std::fs::rename(dir.join("feed.new"), dir.join("feed.txt")).unwrap();
    d.wait_log("engine reloaded");
    publisher.join().unwrap();
    let second = lines::lines(20_000..22_000);
    publish(&server.url(), &second, 100);
    hits.assert_reload_hits(&dir, &full, (&first, &second), &[&d]);
    assert!(d.stop().0.success());
}

/// `check --connect` names a missing stream, and a hits subject no
/// stream takes.
#[test]
fn nats_check_connect_names_what_is_missing() {
    let test = "nats_check_connect_names_what_is_missing";
    let dir = test_dir("nats-check");
    let Some(server) = server(test, &dir) else {
        return;
    };
    let cfg = dir.join("check.toml");
    std::fs::write(&cfg, config(&dir, &server.url(), free_port(), "")).unwrap();
    let connect = || {
        crate::common::iocd()
            .args(["check", "--connect", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = connect();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("sources.js") && err.contains("stream LOGS"),
        "{err}"
    );
    assert!(
        err.contains("sinks.js") && err.contains("iocd.hits"),
        "{err}"
    );
    streams(&server.url(), true);
    let out = connect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("consumer iocd will be created") && said.contains("stream HITS takes"),
        "{said}"
    );
}

/// A server that wants a token: the token from the environment is used
/// (and never logged), and hits flow.
#[test]
fn nats_token_from_the_environment() {
    let test = "nats_token_from_the_environment";
    let dir = test_dir("nats-token");
    if !crate::common::installed(nats_server(), test) {
        return;
    }
    let port = free_port();
    let mut child = Command::new(nats_server())
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--auth",
            "s3cret-t0ken",
            "-sd",
        ])
        .arg(dir.join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lines::wait_listening(port, &mut child, "nats-server");
    let server = NatsServer {
        port,
        store: dir.join("store"),
        child,
    };
    let url = format!("nats://s3cret-t0ken@127.0.0.1:{port}");
    streams(&url, true);
    let admin = free_port();
    let cfg = config(
        &dir,
        &server.url(),
        admin,
        "[sources.js.auth]\ntoken = { env = \"NATS_TOKEN\" }",
    )
    .replace(
        "subject = \"iocd.hits.{type}\"\n",
        "subject = \"iocd.hits.{type}\"\n[sinks.js.auth]\ntoken = { env = \"NATS_TOKEN\" }\n",
    );
    let d = Daemon::start_with_env(&dir, &cfg, &[("NATS_TOKEN", "s3cret-t0ken")]);
    let lines = lines::lines(0..300);
    let want = expected(&dir, lines::FEED, &lines);
    let mut hits = reader(&url);
    publish(&url, &lines, 100);
    hits.read_until_all_or_show(&want, Duration::from_secs(60), &[&d]);
    let logged: Vec<String> = d.log.try_iter().collect();
    assert!(
        !logged.iter().any(|l| l.contains("s3cret")),
        "the token was logged"
    );
    assert!(d.stop().0.success());
}
