//! Where a scan's time goes: each token pass of the engine alone over the
//! benchmark corpus's logs, then the whole engine at 1k, 100k and the full
//! set, one thread. Run:
//! `IOCD_CORPUS=DIR cargo bench --bench passes` (DIR from
//! `../shared/bench/make_corpus.py`). Figures are printed, never asserted.

use std::time::Instant;

use iocd::engine::classify::{Classifier, LineMasks};
use iocd::engine::tokens;

fn main() {
    let Some(dir) = std::env::var_os("IOCD_CORPUS") else {
        eprintln!("SKIPPED: set IOCD_CORPUS to a make_corpus.py output directory");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let data = std::fs::read(dir.join("logs.txt")).expect("logs.txt");
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    let mb = data.len() as f64 / 1e6;
    // Best of three: the figure least disturbed by the rest of the machine.
    let time = |name: &str, f: &mut dyn FnMut() -> u64| {
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..3 {
            let s = Instant::now();
            n = std::hint::black_box(f());
            best = best.min(s.elapsed().as_secs_f64());
        }
        println!("{name:22} {:6.0} MB/s {:7.3} s  ({n})", mb / best, best);
    };
    time("newlines (memchr)", &mut || {
        memchr::memchr_iter(b'\n', &data).count() as u64
    });
    let mut m = LineMasks::new();
    for how in Classifier::available() {
        time(&format!("classify {how:?}"), &mut || {
            lines
                .iter()
                .map(|l| {
                    m.classify_with(l, how);
                    m.dot.len() as u64
                })
                .sum()
        });
    }
    // Each pass below includes classifying its line (the engine does it once).
    time("+ dotted runs", &mut || {
        let mut n = 0;
        for l in &lines {
            m.classify(l);
            tokens::dotted_runs(&m, |s, e| n += (e - s) as u64);
        }
        n
    });
    time("+ host tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            m.classify(l);
            tokens::dotted_runs(&m, |s, e| {
                if let Some((a, b)) = tokens::host_token(l, s, e) {
                    n += (b - a) as u64
                }
            });
        }
        n
    });
    time("+ ipv4 tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            m.classify(l);
            tokens::dotted_runs(&m, |s, e| tokens::ipv4_in_run(l, s, e, |_, _, _| n += 1));
        }
        n
    });
    time("+ hash tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            m.classify(l);
            tokens::hash_tokens(&m, |_, _| n += 1);
        }
        n
    });
    time("+ ipv6 tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            m.classify(l);
            tokens::ipv6_tokens(l, &m, |_, _, _| n += 1);
        }
        n
    });
    let sep = tokens::scheme_separator();
    time("url tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            tokens::url_tokens(l, &sep, |_, _| n += 1);
        }
        n
    });
    time("email tokens", &mut || {
        let mut n = 0;
        for l in &lines {
            tokens::email_tokens(l, |_, _, _| n += 1);
        }
        n
    });
    for set in ["1k", "100k", "full"] {
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
    }
}
