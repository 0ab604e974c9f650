//! Retro-hunt: new indicators checked against the recent past.
//!
//! The daemon keeps every line it scans in a ring of zstd segments
//! ([`ring`]). When a reload adds indicators, a background job
//! ([`hunt`]) builds an engine of only those and scans the ring from
//! newest to oldest, emitting hits marked `retro` with the line's original
//! time and input.
//!
//! Invariants:
//! - Exactly the lines scanned before the new indicators arrived are
//!   hunted: each stored batch carries the build id of the engine that
//!   scanned it, and the job takes only batches scanned by an older one;
//!   it first waits until no matcher still holds an older engine, then has
//!   the open segment closed, so no such batch is left out.
//! - Matching never waits for the ring: see [`ring`].

pub mod hunt;
pub mod ring;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{in_range, Invalid};

/// `[retro]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetroConfig {
    /// Where the ring's segments are kept.
    pub dir: PathBuf,
    /// Compressed bytes kept at most (the oldest segments go first).
    pub max_bytes: u64,
    /// Segments older than this are deleted.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Threads a retro scan uses.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// A retro scan reads at most this many MB (10^6 bytes) of lines a
    /// second; none: as fast as its threads go.
    pub rate_mb_per_sec: Option<u64>,
    /// Batches waiting for the ring writer; past it, batches are not stored
    /// (counted), so a slow disk never slows matching.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
}

fn default_max_age_secs() -> u64 {
    7 * 86_400
}
fn default_threads() -> usize {
    1
}
fn default_queue_batches() -> usize {
    256
}

impl RetroConfig {
    /// # Errors
    /// A number out of its range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("max_bytes", self.max_bytes, 1 << 20, 1 << 50)?;
        in_range("max_age_secs", self.max_age_secs, 60, 366 * 86_400)?;
        in_range("threads", self.threads, 1, 64)?;
        in_range("queue_batches", self.queue_batches, 1, 1 << 16)?;
        if let Some(r) = self.rate_mb_per_sec {
            in_range("rate_mb_per_sec", r, 1, 1 << 20)?;
        }
        Ok(())
    }

    /// The ring's limits: segments of at most an eighth of the budget
    /// (so deleting one frees little), 64 MiB of lines, or a minute.
    pub fn limits(&self) -> ring::RingLimits {
        ring::RingLimits {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            max_age: Duration::from_secs(self.max_age_secs),
            segment_bytes: (self.max_bytes / 8).clamp(64 << 10, 64 << 20),
            segment_age: Duration::from_secs(60),
        }
    }
}

/// What every matcher thread holds of the engine it is scanning with: the
/// build id while it works on a batch, 0 when idle. A retro job waits
/// until none holds an engine older than the one that brought its
/// indicators.
#[derive(Default)]
pub struct MatcherEngines(Vec<AtomicU64>);

impl MatcherEngines {
    /// Slots for `n` matcher threads.
    pub fn new(n: usize) -> MatcherEngines {
        MatcherEngines((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    /// Matcher `i` works with engine `id` (0: idle; [`Self::LOADING`]:
    /// about to load one, which counts as older than any).
    ///
    /// A matcher sets `LOADING` *before* it loads the engine: a job that
    /// saw its slot idle after the swap knows the matcher will load the
    /// new engine (sequentially consistent store and load).
    pub fn set(&self, i: usize, id: u64) {
        if let Some(s) = self.0.get(i) {
            s.store(id, Ordering::SeqCst);
        }
    }

    /// A slot value older than every engine: a matcher about to load one.
    pub const LOADING: u64 = 1;

    /// True when no matcher holds (or is loading) an engine older than `id`.
    pub fn none_older_than(&self, id: u64) -> bool {
        self.0.iter().all(|s| {
            let v = s.load(Ordering::SeqCst);
            v == 0 || v >= id
        })
    }
}

/// What a matcher needs to feed the ring.
#[derive(Clone)]
pub struct RingTap {
    pub tx: std::sync::mpsc::SyncSender<ring::RingMsg>,
    pub engines: Arc<MatcherEngines>,
    pub dropped: prometheus::IntCounter,
}
