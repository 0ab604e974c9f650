//! Where a scan's time goes: each token pass of the engine alone over the
//! benchmark corpus's logs in 16 KiB windows of lines (as the engine
//! scans a block), then the whole engine at 1k, 100k and the full set,
//! line by line and by blocks, one thread. Run:
//! `IOCD_CORPUS=DIR cargo bench --bench passes` (DIR from
//! `../shared/bench/make_corpus.py`). Figures are printed, never asserted.

use std::time::Instant;

use iocd::engine::classify::{Classifier, LineMasks};
use iocd::engine::tokens;

fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn main() {
    let Some(dir) = std::env::var_os("IOCD_CORPUS") else {
        eprintln!("SKIPPED: set IOCD_CORPUS to a make_corpus.py output directory");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut data = std::fs::read(dir.join("logs.txt")).expect("logs.txt");
    if let Some(mb) = std::env::var("IOCD_PASSES_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        // The first MB megabytes, cut at a line's end.
        let cut = memchr::memrchr(b'\n', &data[..(mb << 20).min(data.len())]).map_or(0, |p| p + 1);
        data.truncate(cut);
    }
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    // Windows of whole lines, as the engine classifies and scans a block.
    let mut windows: Vec<&[u8]> = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        // A line longer than a window is a window of its own.
        let cut = memchr::memrchr(b'\n', &rest[..rest.len().min(16 << 10)])
            .or_else(|| memchr::memchr(b'\n', rest))
            .map_or(rest.len(), |p| p + 1);
        windows.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let mb = data.len() as f64 / 1e6;
    // Best of five, in this thread's CPU time and in wall time: on a
    // shared VM the wall clock also counts time stolen by its neighbours.
    // IOCD_PASSES=NAME runs only the passes whose name holds NAME, once
    // (for instruction counts under `valgrind --tool=cachegrind`), or
    // IOCD_PASSES_RUNS times.
    let only = std::env::var("IOCD_PASSES").ok();
    let runs = std::env::var("IOCD_PASSES_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if only.is_some() { 1 } else { 5 });
    let time = |name: &str, f: &mut dyn FnMut() -> u64| {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            return;
        }
        let (mut cpu, mut wall) = (f64::MAX, f64::MAX);
        let mut n = 0;
        for _ in 0..runs {
            let (c, s) = (thread_cpu_secs(), Instant::now());
            n = std::hint::black_box(f());
            wall = wall.min(s.elapsed().as_secs_f64());
            cpu = cpu.min(thread_cpu_secs() - c);
        }
        println!(
            "{name:22} {:6.0} MB/s cpu {:6.0} MB/s wall  ({n})",
            mb / cpu,
            mb / wall
        );
    };
    time("newlines (memchr)", &mut || {
        memchr::memchr_iter(b'\n', &data).count() as u64
    });
    let mut m = LineMasks::new();
    for how in Classifier::available() {
        time(&format!("classify {how:?}"), &mut || {
            windows
                .iter()
                .map(|l| {
                    m.classify_with(l, how);
                    m.dot.len() as u64
                })
                .sum()
        });
    }
    // Each pass below includes classifying its window (the engine does it once).
    time("+ dotted runs", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::dotted_runs(&m, |s, e| n += (e - s) as u64);
        }
        n
    });
    time("+ host tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::dotted_runs(&m, |s, e| {
                if let Some((a, b)) = tokens::host_token(&m, s, e) {
                    n += (b - a) as u64
                }
            });
        }
        n
    });
    time("+ ipv4 tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::ipv4_tokens(l, &m, |_| true, |_, _, _| n += 1);
        }
        n
    });
    time("+ hash tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::hash_tokens(&m, |_, _| n += 1);
        }
        n
    });
    time("+ ipv6 tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::ipv6_tokens(l, &m, |_, _, _| n += 1);
        }
        n
    });
    time("+ url tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::url_tokens(l, &m, |_, _| n += 1);
        }
        n
    });
    time("+ email tokens", &mut || {
        let mut n = 0;
        for l in &windows {
            m.classify(l);
            tokens::email_tokens(l, &m, |_, _, _| n += 1);
        }
        n
    });
    for set in ["1k", "100k", "full"] {
        if only.as_ref().is_some_and(|o| {
            !format!("engine, {set}").contains(o.as_str())
                && !format!("engine blocks, {set}").contains(o.as_str())
        }) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(format!("ind-{set}.txt"))).expect("set");
        let inds = iocd::feeds::parse("bench", std::path::Path::new("bench"), &text).indicators;
        let engine = iocd::Engine::build(inds, &Default::default());
        let mut st = iocd::ScanState::new();
        time(&format!("engine, {set}"), &mut || {
            lines
                .iter()
                .map(|l| engine.scan(l, &mut st).len() as u64)
                .sum()
        });
        // The whole corpus as blocks of lines, as `iocd scan` reads it.
        let rule = iocd::lines::LineRule::new(iocd::scan::DEFAULT_MAX_LINE);
        time(&format!("engine blocks, {set}"), &mut || {
            let mut n = 0;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let cut = memchr::memrchr(b'\n', &rest[..rest.len().min(1 << 20)])
                    .map_or(rest.len(), |p| p + 1);
                engine.scan_lines(&rest[..cut], rule, &mut st, |l| n += l.matches.len() as u64);
                rest = &rest[cut..];
            }
            n
        });
    }
}
