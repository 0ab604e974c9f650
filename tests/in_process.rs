//! `daemon::run` driven in-process, as `main` drives it: a config, the
//! controls and a shutdown future, with no binary and no signals.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use iocd::config::Config;
use iocd::daemon::{run, Controls};
use tokio::sync::{mpsc, oneshot, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_its_shutdown_as_a_future_and_drains() {
    let dir = common::test_dir("in-process");
    let feed = dir.join("feed.txt");
    std::fs::write(&feed, "198.51.100.7\nmalware.example\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hits = dir.join("hits.jsonl");
    let text = common::minimal_config(
        &feed,
        &format!(
            "[sources.net]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n[sinks.out]\ntype = \"file\"\npath = {:?}\n",
            hits.display().to_string()
        ),
    );
    let config = Config::parse("in-process.toml", &text).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready) = oneshot::channel();
    let (_reload_tx, reload) = mpsc::channel(1);
    let (_reopen_tx, reopen) = watch::channel(0);
    let controls = Controls {
        reload,
        reopen,
        ready: Some(ready_tx),
    };
    let daemon = tokio::spawn(run(config, None, controls, async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("ready in time")
        .expect("ready fired");

    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"1 to 198.51.100.7\n2 quiet\n3 via cdn.malware.example\n")
        .unwrap();
    drop(conn);
    // The file sink has no change notification: poll it, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&hits).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(Instant::now() < deadline, "hits never arrived: {text:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
    let mut values: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["indicator"]["value"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["198.51.100.7", "malware.example"]);
    assert_eq!(std::fs::read_to_string(&hits).unwrap().lines().count(), 2);
}
