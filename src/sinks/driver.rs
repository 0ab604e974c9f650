//! The one loop every sink runs in. A sink only writes encoded hits
//! ([`HitWriter`]); the driver owns the rest: taking batches from the
//! sink's bounded channel, gathering them into writes, retrying what failed
//! with backoff while holding at most `buffer_max_events` hits and
//! `buffer_max_bytes` of them, counting
//! sent, failed and retried hits, `iocd_sink_up`, SIGUSR1 reopens, and the
//! acknowledgement: a batch's ack fires when the last of its hits leaves
//! every sink's driver (written, or refused for good).
//!
//! When the buffer is full the driver stops taking batches, so a sink that
//! cannot write pushes back through the pipeline to the sources.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::hit::HitFormat;
use crate::metrics::Metrics;
use crate::pipeline::HitBatch;

/// One hit waiting in a sink's driver. Holding it holds its batch's ack.
#[derive(Clone)]
pub struct PendingHit {
    batch: Arc<HitBatch>,
    index: usize,
}

impl PendingHit {
    /// The hit as one JSON line (newline included) in `format`.
    pub fn bytes(&self, format: HitFormat) -> &[u8] {
        self.batch.encoded(format).get(self.index)
    }

    /// The hit as one JSON document (no newline): one broker message.
    pub fn document(&self, format: HitFormat) -> &[u8] {
        let b = self.bytes(format);
        b.strip_suffix(b"\n").unwrap_or(b)
    }

    /// What the hit is keyed and routed by.
    pub fn meta(&self) -> &crate::pipeline::HitMeta {
        self.batch.meta(self.index)
    }

    /// The line the hit was found in (cut like `event.original`).
    pub fn line(&self) -> &[u8] {
        self.batch.line(self.index)
    }
}

/// What became of one write. Indexes are into the slice that was written;
/// every hit not named was written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Hits to write again after a backoff.
    pub retry: Vec<usize>,
    /// Hits the destination refused for good (a malformed document): never
    /// retried, counted as failed.
    pub rejected: Vec<usize>,
    /// Why some hits were not written, for the log.
    pub why: Option<String>,
}

impl Outcome {
    /// Every hit written.
    pub fn written() -> Outcome {
        Outcome::default()
    }

    /// None of `n` hits written; all to be retried.
    pub fn retry_all(n: usize, why: impl Into<String>) -> Outcome {
        Outcome {
            retry: (0..n).collect(),
            rejected: Vec::new(),
            why: Some(why.into()),
        }
    }

    /// All `n` hits refused for good.
    pub fn rejected_all(n: usize, why: impl Into<String>) -> Outcome {
        Outcome {
            retry: Vec::new(),
            rejected: (0..n).collect(),
            why: Some(why.into()),
        }
    }
}

/// What a sink implements: write these hits, say what became of them.
pub trait HitWriter: Send + 'static {
    /// Writes `hits` (each a JSON line in `format`).
    fn write(
        &mut self,
        hits: &[PendingHit],
        format: HitFormat,
    ) -> impl Future<Output = Outcome> + Send;

    /// Reopens what the sink writes to (SIGUSR1, for log rotation).
    fn reopen(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How a driver gathers and retries.
#[derive(Clone, Debug)]
pub struct DriverSettings {
    /// Most hits in one write (one HTTP request, say).
    pub max_events: usize,
    /// How long to wait for more hits before writing fewer than
    /// `max_events` (zero: write what is there at once).
    pub linger: Duration,
    /// Most hits held; past it, no more batches are taken (backpressure).
    pub buffer_max_events: usize,
    /// Most bytes of hits held (as encoded); past it, no more batches.
    pub buffer_max_bytes: usize,
    /// First and longest wait between retries.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings {
            max_events: 10_000,
            linger: Duration::ZERO,
            buffer_max_events: 100_000,
            buffer_max_bytes: 64 << 20,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl DriverSettings {
    /// A sink that sends one message per hit to a broker and awaits each
    /// one's acknowledgement (Kafka, NATS): writes of up to 10,000 hits, no
    /// linger, the given buffer.
    pub fn per_message(buffer_max_events: usize, buffer_max_bytes: usize) -> DriverSettings {
        DriverSettings {
            max_events: 10_000,
            buffer_max_events,
            buffer_max_bytes,
            ..DriverSettings::default()
        }
    }
}

/// What every sink's driver is given besides its writer.
pub struct SinkInputs {
    /// The sink's name (its metrics label).
    pub name: Arc<str>,
    /// The format the sink writes.
    pub format: HitFormat,
    /// The sink's bounded channel of hit batches.
    pub batches: mpsc::Receiver<Arc<HitBatch>>,
    /// Ticks on SIGUSR1.
    pub reopen: watch::Receiver<u64>,
    pub metrics: Arc<Metrics>,
}

/// Spawns the driver of `writer`.
pub fn spawn<W: HitWriter>(
    inputs: SinkInputs,
    writer: W,
    settings: DriverSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(inputs, writer, settings))
}

/// Runs `writer` until `batches` closes and every held hit is written or
/// refused. `reopen` ticks on SIGUSR1.
async fn run<W: HitWriter>(inputs: SinkInputs, mut writer: W, settings: DriverSettings) {
    let SinkInputs {
        name,
        format,
        mut batches,
        mut reopen,
        metrics,
    } = inputs;
    let sent = metrics.sink_sent.with_label_values(&[&name]);
    let failed = metrics.sink_failed.with_label_values(&[&name]);
    let retried = metrics.sink_retried.with_label_values(&[&name]);
    let max_events = settings.max_events.max(1);
    let mut backoff = Backoff::new(settings.first_backoff, settings.max_backoff);
    let mut pending: VecDeque<PendingHit> = VecDeque::new();
    let mut open = true;
    // While set, the last write failed: wait until then before the next.
    let mut retry_at: Option<Instant> = None;
    // When gathering stops and a write of fewer than max_events begins.
    let mut write_by: Option<Instant> = None;
    metrics.set_sink_up(&name, true);
    let mut was_full = false;
    // Bytes of the hits in `pending`, as encoded for this sink.
    let mut held_bytes = 0usize;
    let size = |h: &PendingHit| h.bytes(format).len();
    loop {
        let room =
            pending.len() < settings.buffer_max_events && held_bytes < settings.buffer_max_bytes;
        if room == was_full {
            was_full = !room;
            metrics.set_sink_full(&name, was_full);
        }
        let now = Instant::now();
        let waiting_retry = retry_at.is_some_and(|t| t > now);
        let full = pending.len() >= max_events;
        let lingering = !pending.is_empty() && open && !full && write_by.is_some_and(|t| t > now);
        if pending.is_empty() && !open {
            break;
        }
        if pending.is_empty() || waiting_retry || lingering {
            let wake = if waiting_retry { retry_at } else { write_by };
            tokio::select! {
                b = batches.recv(), if open && room => match b {
                    Some(b) => {
                        if pending.is_empty() && !settings.linger.is_zero() {
                            write_by = Some(Instant::now() + settings.linger);
                        }
                        held_bytes += b.encoded(format).bytes().len();
                        pending.extend((0..b.hits).map(|index| PendingHit { batch: b.clone(), index }));
                    }
                    None => open = false,
                },
                Ok(()) = reopen.changed() => writer.reopen().await,
                _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            }
            continue;
        }
        // Take whatever else is already queued, up to one write.
        while open && pending.len() < max_events {
            match batches.try_recv() {
                Ok(b) => {
                    held_bytes += b.encoded(format).bytes().len();
                    pending.extend((0..b.hits).map(|index| PendingHit {
                        batch: b.clone(),
                        index,
                    }))
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let n = pending.len().min(max_events);
        let attempt: Vec<PendingHit> = pending.drain(..n).collect();
        held_bytes -= attempt.iter().map(size).sum::<usize>();
        tracing::debug!(sink = %name, hits = n, "writing");
        let outcome = writer.write(&attempt, format).await;
        tracing::debug!(sink = %name, retry = outcome.retry.len(), rejected = outcome.rejected.len(), "written");
        let (n_retry, n_rejected) = (outcome.retry.len(), outcome.rejected.len());
        sent.inc_by((n - n_retry - n_rejected) as u64);
        if n_rejected > 0 {
            failed.inc_by(n_rejected as u64);
            tracing::error!(sink = %name, hits = n_rejected, reason = outcome.why.as_deref().unwrap_or(""), "hits refused for good; dropped");
        }
        write_by = None;
        if n_retry == 0 {
            retry_at = None;
            backoff.reset();
            metrics.set_sink_up(&name, true);
            continue;
        }
        // Retried hits go back to the front, in their order.
        for i in outcome.retry.into_iter().rev() {
            held_bytes += size(&attempt[i]);
            pending.push_front(attempt[i].clone());
        }
        let wait = backoff.next_wait();
        retried.inc();
        metrics.set_sink_up(&name, false);
        tracing::warn!(sink = %name, hits = n_retry, error = outcome.why.as_deref().unwrap_or(""), retry_in_ms = wait.as_millis() as u64, "write failed; retrying");
        retry_at = Some(Instant::now() + wait);
    }
}
