//! Engine benchmarks: scan throughput by indicator count (1k to 1M), build
//! time, the Bloom filter's effect, and memory per indicator.
//!
//! With `IOCD_CORPUS=DIR` (the output of `../shared/bench/make_corpus.py`) it
//! uses that corpus's real indicator sets and the first 32 MB of its logs;
//! otherwise a deterministic synthetic mix (Zeek-JSON-like lines whose
//! tokens almost never match, as in production). Run:
//! `cargo bench --bench engine` (single-threaded figures: `iocd scan` adds
//! threads on top). `scan/*/lines/N` calls the engine a line at a time;
//! `scan/*/blocks/N` hands it the whole buffer, as `iocd scan` and the
//! daemon's batches do.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use iocd::{feeds, Engine, EngineOptions, Indicator, ScanState};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn ip(&mut self) -> String {
        let v = self.next();
        format!(
            "{}.{}.{}.{}",
            1 + v % 223,
            (v >> 8) % 256,
            (v >> 16) % 256,
            (v >> 24) % 256
        )
    }
    fn host(&mut self) -> String {
        const TLDS: [&str; 6] = ["com", "net", "org", "ru", "io", "info"];
        let v = self.next();
        format!(
            "{:x}.{:x}.{}",
            v % 0xfffff,
            (v >> 20) % 0xffffff,
            TLDS[(v >> 50) as usize % TLDS.len()]
        )
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n.div_ceil(16))
            .map(|_| format!("{:016x}", self.next()))
            .collect::<String>()[..n]
            .to_owned()
    }
}

/// Plain-list feed text of `n` mixed indicators.
fn synthetic_feed(n: usize) -> String {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for i in 0..n {
        let line = match i % 10 {
            0..=2 => r.ip(),
            3..=5 => r.host(),
            6 | 7 => format!("http://{}/{}", r.host(), r.hex(8)),
            8 => r.hex(64),
            _ => {
                if i % 100 == 9 {
                    format!("{}/24", r.ip())
                } else {
                    r.hex(32)
                }
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// About `bytes` of Zeek-JSON-like lines with fresh random tokens.
fn synthetic_logs(bytes: usize) -> Vec<u8> {
    let mut r = Rng(42);
    let mut out = Vec::with_capacity(bytes + 512);
    while out.len() < bytes {
        let line = format!(
            "{{\"ts\":1521911721.{:06},\"uid\":\"C{}\",\"id.orig_h\":\"10.47.{}.{}\",\"id.orig_p\":49211,\"id.resp_h\":\"{}\",\"id.resp_p\":443,\"query\":\"{}\",\"uri\":\"http://{}/{}\",\"md5\":\"{}\"}}\n",
            r.next() % 1_000_000,
            r.hex(17),
            r.next() % 256,
            r.next() % 256,
            r.ip(),
            r.host(),
            r.host(),
            r.hex(6),
            r.hex(32)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

struct Data {
    label: &'static str,
    feeds: Vec<(&'static str, String)>,
    logs: Vec<u8>,
}

fn data() -> Data {
    if let Ok(dir) = std::env::var("IOCD_CORPUS") {
        let dir = Path::new(&dir);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("corpus feed");
        let mut logs = std::fs::read(dir.join("logs.txt")).expect("corpus logs");
        logs.truncate(32 << 20);
        let cut = logs.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        logs.truncate(cut);
        let feeds = vec![
            ("1k", read("ind-1k.txt")),
            ("10k", read("ind-10k.txt")),
            ("100k", read("ind-100k.txt")),
            ("1M", read("ind-full.txt")),
        ];
        return Data {
            label: "corpus",
            feeds,
            logs,
        };
    }
    let feeds = vec![
        ("1k", synthetic_feed(1_000)),
        ("10k", synthetic_feed(10_000)),
        ("100k", synthetic_feed(100_000)),
        ("1M", synthetic_feed(1_000_000)),
    ];
    Data {
        label: "synthetic",
        feeds,
        logs: synthetic_logs(16 << 20),
    }
}

fn indicators(text: &str) -> Vec<Indicator> {
    feeds::parse("bench", Path::new("bench"), text).indicators
}

/// Line by line, as the per-line API (`Engine::scan`) is called; the
/// lines are split beforehand, so only the engine is timed.
fn scan_all(engine: &Engine, lines: &[&[u8]]) -> usize {
    let mut st = ScanState::new();
    lines.iter().map(|l| engine.scan(l, &mut st).len()).sum()
}

/// The whole buffer as one block, as `iocd scan` hands the engine each
/// block it reads (`Engine::scan_lines`): the same hits as [`scan_all`].
fn scan_block(engine: &Engine, logs: &[u8]) -> usize {
    let mut st = ScanState::new();
    let rule = iocd::lines::LineRule::new(iocd::scan::DEFAULT_MAX_LINE);
    let mut n = 0;
    engine.scan_lines(logs, rule, &mut st, |l| n += l.matches.len());
    n
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}

fn benches(c: &mut Criterion) {
    let d = data();
    let lines: Vec<&[u8]> = d.logs.split(|&b| b == b'\n').collect();
    let mut scan = c.benchmark_group(format!("scan/{}", d.label));
    scan.throughput(Throughput::Bytes(d.logs.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, feed) in &d.feeds {
        for bloom in [0usize, 1] {
            if bloom == 1 && *name != "1M" {
                continue;
            }
            let before = rss_bytes();
            let inds = indicators(feed);
            let n = inds.len();
            let t = Instant::now();
            let engine = Engine::build(
                inds,
                &EngineOptions {
                    bloom_min_keys: bloom,
                },
            );
            let built = t.elapsed();
            let after = rss_bytes();
            eprintln!(
                "memory/{}/{name} bloom={bloom}: {n} indicators, index {:.1} B/indicator, RSS +{:.1} B/indicator (indicators and index), build {:.3} s, hits {}",
                d.label,
                engine.stats().index_bytes as f64 / n as f64,
                after.saturating_sub(before) as f64 / n as f64,
                built.as_secs_f64(),
                scan_all(&engine, &lines)
            );
            assert_eq!(scan_block(&engine, &d.logs), scan_all(&engine, &lines));
            let id = if bloom == 1 {
                format!("{name}+bloom")
            } else {
                name.to_string()
            };
            scan.bench_function(BenchmarkId::new("lines", &id), |b| {
                b.iter(|| black_box(scan_all(&engine, &lines)))
            });
            scan.bench_function(BenchmarkId::new("blocks", &id), |b| {
                b.iter(|| black_box(scan_block(&engine, &d.logs)))
            });
        }
    }
    scan.finish();

    let mut build = c.benchmark_group(format!("build/{}", d.label));
    build
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, feed) in &d.feeds {
        let inds = indicators(feed);
        build.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || inds.clone(),
                |i| black_box(Engine::build(i, &EngineOptions::default())),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    build.finish();

    let mut parse = c.benchmark_group(format!("parse/{}", d.label));
    parse
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let (name, feed) = d.feeds.last().unwrap();
    parse.throughput(Throughput::Bytes(feed.len() as u64));
    parse.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| black_box(indicators(feed).len()))
    });
    parse.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
