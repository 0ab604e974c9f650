//! The retro job: for each reload that added indicators, scan the ring
//! for them, newest segment first, and hand the hits to the sinks.
//!
//! Jobs queue: a reload during a scan waits for it to end, and its own
//! indicators (those new since the engine before it) are hunted next.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::ring::{read_segment, segments, RingMsg};
use super::MatcherEngines;
use crate::context::LineContext;
use crate::engine::{Engine, EngineOptions, ScanState};
use crate::hit::{Event, Found, Grouping, Sighting};
use crate::pipeline::{push_docs, Formats, HitBatch};

/// A reload's engines: the one before, and the one it installed.
pub struct Job {
    pub old: Arc<Engine>,
    pub new: Arc<Engine>,
}

/// What the job needs.
pub struct Hunter {
    pub dir: PathBuf,
    pub ring: SyncSender<RingMsg>,
    pub engines: Arc<MatcherEngines>,
    /// Into the dispatcher's channel; weak, so shutdown is not held up.
    pub hits: mpsc::WeakSender<HitBatch>,
    pub formats: Formats,
    pub group: Grouping,
    pub threads: usize,
    pub rate_bytes_per_sec: Option<u64>,
    pub original_max: usize,
    pub metrics: HuntMetrics,
    /// Retro hits are sightings too (at the line's own time).
    pub sightings: Option<Arc<crate::sightings::Tally>>,
}

/// The metrics a retro scan moves.
#[derive(Clone)]
pub struct HuntMetrics {
    pub scan_bytes: prometheus::IntCounter,
    pub hits: prometheus::IntCounter,
    pub scan_seconds: prometheus::Histogram,
}

impl Hunter {
    /// Runs jobs until the queue closes.
    pub fn run(self, jobs: Receiver<Job>) {
        for job in jobs {
            let fresh = job.new.added_since(&job.old);
            if fresh.is_empty() {
                continue;
            }
            let new_id = job.new.build_id();
            drop(job);
            let engine = Engine::build(fresh, &EngineOptions::default());
            tracing::info!(
                indicators = engine.stats().indicators,
                "retro: hunting new indicators in the ring"
            );
            // Every batch scanned with an older engine must be in a closed
            // segment: wait until no matcher still works with one...
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.engines.none_older_than(new_id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // ...then close the open segment behind what they sent.
            if !super::ring::rotate(&self.ring) {
                return;
            }
            let started = Instant::now();
            let (found, bytes) = self.scan(&engine, new_id);
            self.metrics
                .scan_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                hits = found,
                bytes,
                seconds = started.elapsed().as_secs_f64(),
                "retro: scan done"
            );
        }
    }

    /// Scans every closed segment, newest first, on `threads` threads;
    /// returns (hits, bytes of lines scanned).
    fn scan(&self, engine: &Engine, new_id: u64) -> (u64, u64) {
        let mut segs = segments(&self.dir);
        segs.reverse();
        let next = AtomicUsize::new(0);
        let totals = Mutex::new((0u64, 0u64));
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..self.threads.max(1) {
                s.spawn(|| {
                    let mut st = ScanState::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, _, _)) = segs.get(i) else { return };
                        let mut out = HitBatch::empty(None);
                        let (mut hits, mut bytes) = (0u64, 0u64);
                        let read = read_segment(path, |rec| {
                            if rec.engine_id >= new_id {
                                return true; // scanned live with these indicators
                            }
                            bytes += rec.lines.bytes().len() as u64;
                            hits += self.record(engine, rec, &mut st, &mut out);
                            if out.bytes() >= 4 << 20 {
                                let full = std::mem::replace(&mut out, HitBatch::empty(None));
                                if !self.send(full) {
                                    return false;
                                }
                            }
                            self.pace(&totals, bytes, started);
                            true
                        });
                        if let Err(e) = read {
                            tracing::warn!(segment = %path.display(), error = %e, "retro: segment unreadable");
                        }
                        if out.hits > 0 && !self.send(out) {
                            return;
                        }
                        self.metrics.scan_bytes.inc_by(bytes);
                        self.metrics.hits.inc_by(hits);
                        let mut t = totals.lock().expect("totals");
                        t.0 += hits;
                        t.1 += bytes;
                    }
                });
            }
        });
        totals.into_inner().expect("totals")
    }

    /// Hands hits to the sinks; false once the pipeline is shutting down.
    fn send(&self, batch: HitBatch) -> bool {
        match self.hits.upgrade() {
            Some(tx) => tx.blocking_send(batch).is_ok(),
            None => false,
        }
    }

    /// Holds the scan to `rate_bytes_per_sec` over its life.
    fn pace(&self, totals: &Mutex<(u64, u64)>, pending: u64, started: Instant) {
        let Some(rate) = self.rate_bytes_per_sec else {
            return;
        };
        let done = totals.lock().expect("totals").1 + pending;
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_secs(1)));
        }
    }

    /// Scans one stored batch; its hits go into `out`. Returns the hits.
    fn record(
        &self,
        engine: &Engine,
        rec: &super::ring::Record,
        st: &mut ScanState,
        out: &mut HitBatch,
    ) -> u64 {
        let mut n = 0;
        let mut ts: Option<String> = None;
        engine.scan_batch(&rec.lines, st, |l| {
            let line = &rec.lines.bytes()[l.range];
            let found: Vec<Found> = l
                .matches
                .iter()
                .map(|m| Found {
                    indicator: engine.indicator(m.indicator),
                    m: *m,
                    matched: &line[m.start as usize..m.end as usize],
                    repeats: None,
                })
                .collect();
            let ts = ts.get_or_insert_with(|| crate::time::rfc3339_ms(rec.time_ms));
            let original = &line[..line.len().min(self.original_max)];
            let context = LineContext::default();
            let ev = Event {
                sighting: Sighting {
                    timestamp: ts,
                    input: &rec.input,
                    line_number: rec.first_line + l.index,
                    origin: None,
                },
                original: Some((original, original.len() < line.len())),
                context: &context,
                retro: true,
            };
            if let Some(t) = &self.sightings {
                for f in &found {
                    t.count(f.indicator, rec.time_ms);
                }
            }
            n += found.len() as u64;
            push_docs(out, self.formats, self.group, &ev, &found);
        });
        n
    }
}
