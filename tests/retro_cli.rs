//! `iocd scan --since-indicators`: a retro-hunt over archived logs, read
//! as gzip or zstd without unpacking.

mod common;

use std::io::Write;
use std::path::PathBuf;

fn tmp(name: &str, content: &[u8]) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let p = DIR.get_or_init(|| common::test_dir("retro-cli")).join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn since_indicators_scans_only_for_what_is_new_in_compressed_archives() {
    let old = tmp("old.txt", b"198.51.100.7\nstill.example\n");
    let new = tmp(
        "new.txt",
        b"198.51.100.7\nstill.example\nfresh.example\n203.0.113.9\n",
    );
    let mut log = String::new();
    for i in 0..5000 {
        log.push_str(&format!(
            "{i} 198.51.100.7 still.example {}\n",
            match i % 100 {
                0 => "fresh.example",
                50 => "203.0.113.9",
                _ => "-",
            }
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(log.as_bytes()).unwrap();
    let gz = tmp("archive.log.gz", &gz.finish().unwrap());
    let zst = tmp(
        "archive.log.zst",
        &zstd::encode_all(log.as_bytes(), 3).unwrap(),
    );
    let plain = tmp("archive.log", log.as_bytes());
    let mut outputs = Vec::new();
    for f in [&plain, &gz, &zst] {
        let out = common::iocd()
            .args(["scan", "-q", "-i"])
            .arg(&new)
            .arg("--since-indicators")
            .arg(&old)
            .arg(f)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let hits: Vec<(u64, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["line_number"].as_u64().unwrap(),
                    v["indicator"]["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        outputs.push(hits);
    }
    let want: Vec<(u64, String)> = (0..5000u64)
        .filter_map(|i| match i % 100 {
            0 => Some((i + 1, "fresh.example".to_owned())),
            50 => Some((i + 1, "203.0.113.9".to_owned())),
            _ => None,
        })
        .collect();
    for o in &outputs {
        // Compared by count first: a failure must not print 10,000 hits.
        assert_eq!(o.len(), want.len(), "only what is new, once each");
        assert!(
            o == &want,
            "only what is new, once each, from any archive form"
        );
    }
}
