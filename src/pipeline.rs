//! Sources → bounded queue → matcher threads → sinks.
//!
//! Sources are tokio tasks that cut bytes into lines ([`LineBatcher`]) and
//! send [`Batch`]es into one bounded queue; when it is full they wait, so
//! backpressure reaches the socket or file. Matcher threads (plain OS
//! threads, off the runtime) take a batch, load the current engine once for
//! the whole batch (so a reload swaps between batches: no line is scanned
//! twice or skipped), scan, and encode hits in every format a sink needs.
//! A dispatcher hands each [`HitBatch`] to every sink. A batch's [`Ack`]
//! fires when the last sink has written its hits, which is when a file
//! source may commit the offset of those lines (at-least-once).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use serde::Deserialize;

use std::net::SocketAddr;

use crate::context::{LineContext, LineFormat};
use crate::engine::{Engine, ScanState};
use crate::hit::{self, EncodedHits, Event, Found, Grouping, HitFormat, Origin, Sighting};
use crate::indicator::IndicatorType;
use crate::lines::Lines;
use crate::metrics::Metrics;
use crate::retro::ring::{RingBatch, RingMsg};
use crate::retro::RingTap;
use crate::settings::{in_range, Invalid};
use crate::sightings::Tally;
use crate::suppress::{KeyParts, Suppressor, Verdict};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
/// `[engine]`: how lines are cut, batched, queued and matched.
pub struct EngineConfig {
    #[serde(default = "defaults_max_line_bytes")]
    pub max_line_bytes: usize,
    /// What happens to a longer line.
    #[serde(default)]
    pub oversize: Oversize,
    /// Matcher threads (default: one per core).
    pub threads: Option<usize>,
    /// Lines per batch handed to a matcher thread.
    #[serde(default = "defaults_batch_lines")]
    pub batch_lines: usize,
    /// Batches queued between sources and matchers (the backpressure bound).
    #[serde(default = "defaults_queue_batches")]
    pub queue_batches: usize,
    #[serde(default)]
    pub bloom_min_keys: usize,
    /// Bytes of the line kept in a hit's `event.original`.
    #[serde(default = "defaults_original_max_bytes")]
    pub original_max_bytes: usize,
    /// Most hits emitted for one line; the rest are counted
    /// (`iocd_hits_dropped_total{reason="max_hits_per_line"}`). A line that
    /// lists tens of thousands of indicators would otherwise make as many
    /// hits, each carrying the line.
    #[serde(default = "defaults_max_hits_per_line")]
    pub max_hits_per_line: usize,
    /// Bytes of encoded hits a matcher holds before handing them on (the
    /// hit queue is bounded in batches; this bounds each batch).
    #[serde(default = "defaults_hit_batch_max_bytes")]
    pub hit_batch_max_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_line_bytes: defaults_max_line_bytes(),
            oversize: Oversize::default(),
            threads: None,
            batch_lines: defaults_batch_lines(),
            queue_batches: defaults_queue_batches(),
            bloom_min_keys: 0,
            original_max_bytes: defaults_original_max_bytes(),
            max_hits_per_line: defaults_max_hits_per_line(),
            hit_batch_max_bytes: defaults_hit_batch_max_bytes(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// Scan the first `max_line_bytes` bytes.
    #[default]
    Truncate,
    /// Skip the line (counted).
    Drop,
}

/// Largest `max_line_bytes` (a batch's offsets are `u32`).
pub const MAX_LINE_BYTES: usize = 1 << 30;
/// Most matcher threads.
pub const MAX_THREADS: usize = 1024;
/// Most lines in one batch.
pub const MAX_BATCH_LINES: usize = 1 << 20;
/// Most batches queued between sources and matchers.
pub const MAX_QUEUE_BATCHES: usize = 1 << 16;

impl EngineConfig {
    /// Matcher threads: `threads`, or one per core.
    pub fn matcher_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Checks every number against its documented range.
    ///
    /// # Errors
    /// The first setting out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("max_line_bytes", self.max_line_bytes, 1, MAX_LINE_BYTES)?;
        in_range("batch_lines", self.batch_lines, 1, MAX_BATCH_LINES)?;
        in_range("queue_batches", self.queue_batches, 1, MAX_QUEUE_BATCHES)?;
        if let Some(t) = self.threads {
            in_range("threads", t, 1, MAX_THREADS)?;
        }
        in_range("max_hits_per_line", self.max_hits_per_line, 1, 1_000_000)?;
        in_range("hit_batch_max_bytes", self.hit_batch_max_bytes, 1, 1 << 30)?;
        in_range(
            "original_max_bytes",
            self.original_max_bytes,
            0,
            MAX_LINE_BYTES,
        )
    }
}

fn defaults_hit_batch_max_bytes() -> usize {
    4 << 20
}
fn defaults_max_hits_per_line() -> usize {
    100
}
fn defaults_max_line_bytes() -> usize {
    1 << 20
}
fn defaults_batch_lines() -> usize {
    1024
}
fn defaults_queue_batches() -> usize {
    64
}
fn defaults_original_max_bytes() -> usize {
    4096
}

/// Fires (by being dropped) when a batch's hits are all written.
pub struct Ack(Option<oneshot::Sender<()>>);

impl Ack {
    pub fn new() -> (Ack, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ack(Some(tx)), rx)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Lines from one input, in order.
pub struct Batch {
    /// The source's name (`input` in hits).
    pub input: Arc<str>,
    /// Number of the first line within its input stream (from 1).
    pub first_line: u64,
    /// The lines, as read (cut to the maximum, one `\r` removed).
    pub lines: Lines,
    /// Lines cut to the maximum length, by index.
    pub truncated: Vec<u32>,
    /// Slots of lines dropped as too long, by index: numbered, never scanned.
    pub dropped: Vec<u32>,
    pub read_at: Instant,
    pub ack: Option<Ack>,
    /// For lines from a message broker: where each message's lines start,
    /// in line order. Empty for other sources.
    pub messages: Vec<MessageLines>,
    /// How the source's lines are read for context.
    pub format: LineFormat,
    /// The peer that sent the lines from each index on (TCP: one for the
    /// batch; UDP: one per run of datagrams from one sender).
    pub peers: Vec<(u32, SocketAddr)>,
    /// The file the lines were read from, with [`Self::offsets`].
    pub file: Option<Arc<str>>,
    /// For a file: the byte offset of each line in it.
    pub offsets: Vec<u64>,
    /// The subject of the TLS client certificate the lines came with.
    pub tls_client: Option<Arc<str>>,
}

/// Where the lines of one broker message start in a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageLines {
    /// Index in the batch of the first of its lines there.
    pub first: u32,
    /// That line's number within the message, from 1 (above 1 when the
    /// message began in the batch before).
    pub line: u32,
    pub origin: Origin,
}

impl Batch {
    /// The message and line within it of line `i`, given `cursor`, the
    /// index into `messages` where the previous lookup ended (lookups go
    /// forward, so a batch costs one pass).
    fn origin_of(&self, i: usize, cursor: &mut usize) -> Option<(&Origin, u32)> {
        while *cursor + 1 < self.messages.len() && self.messages[*cursor + 1].first as usize <= i {
            *cursor += 1;
        }
        let m = self.messages.get(*cursor)?;
        let first = m.first as usize;
        (first <= i).then(|| (&m.origin, m.line + (i - first) as u32))
    }

    /// The peer that sent line `i`, with a forward `cursor` as
    /// [`Self::origin_of`].
    fn peer_of(&self, i: usize, cursor: &mut usize) -> Option<SocketAddr> {
        while *cursor + 1 < self.peers.len() && self.peers[*cursor + 1].0 as usize <= i {
            *cursor += 1;
        }
        self.peers
            .get(*cursor)
            .filter(|(first, _)| *first as usize <= i)
            .map(|(_, p)| *p)
    }

    /// The file and byte offset of line `i`.
    fn file_of(&self, i: usize) -> Option<(&str, u64)> {
        Some((self.file.as_deref()?, *self.offsets.get(i)?))
    }
}

/// The hit documents of one batch, encoded once in each format some sink wants.
/// Its ack fires when the last reference to it is dropped: when every sink
/// has written (or given up on) every hit of it.
pub struct HitBatch {
    encoded: [EncodedHits; HitFormat::ALL.len()],
    /// Number of hit documents (the same in every format): hits, or lines
    /// with hits when grouped by line.
    pub hits: usize,
    /// One per hit, in order: what a sink that sends one message per hit
    /// (Kafka, NATS) routes and keys it by.
    meta: Vec<HitMeta>,
    /// The lines that had hits (cut like `event.original`), back to back;
    /// [`HitMeta::line`] ranges index into it.
    lines: Vec<u8>,
    /// Shared by every part of one line batch's hits: the line batch is
    /// acknowledged when the last part has left every sink.
    _ack: Option<Arc<Ack>>,
}

impl HitBatch {
    /// No hit yet; `ack` fires when the last part of its line batch is written.
    pub(crate) fn empty(ack: Option<Arc<Ack>>) -> HitBatch {
        HitBatch {
            encoded: Default::default(),
            hits: 0,
            meta: Vec::new(),
            lines: Vec::new(),
            _ack: ack,
        }
    }

    /// Bytes of its encoded hits, all formats, and of the lines kept.
    pub(crate) fn bytes(&self) -> usize {
        self.encoded.iter().map(|e| e.bytes().len()).sum::<usize>() + self.lines.len()
    }

    /// What hit `i` is keyed and routed by.
    ///
    /// # Panics
    /// When `i >= self.hits`.
    pub fn meta(&self, i: usize) -> &HitMeta {
        &self.meta[i]
    }

    /// The line hit `i` was found in (cut like `event.original`).
    pub fn line(&self, i: usize) -> &[u8] {
        &self.lines[self.meta[i].line.clone()]
    }
}

/// What a per-hit sink needs of a hit besides its encoded bytes.
#[derive(Clone, Debug)]
pub struct HitMeta {
    pub kind: IndicatorType,
    /// The feed's name.
    pub feed: Arc<str>,
    /// The indicator's canonical value.
    pub value: Box<str>,
    /// For a line from a broker message: the same for the same hit of a
    /// redelivered message ([`Origin::hit_id`]).
    pub id: Option<String>,
    line: std::ops::Range<usize>,
}

impl HitBatch {
    /// The hits in `format`. Empty for a format no sink asked for.
    pub fn encoded(&self, format: HitFormat) -> &EncodedHits {
        &self.encoded[format.index()]
    }
}

/// Bytes of lines that make a batch full, whatever its line count.
const FULL_BATCH_BYTES: usize = 1 << 20;

/// Cuts a byte stream (or datagrams, or framed messages) into lines and
/// batches them for one input, applying the maximum line length.
pub struct LineBatcher {
    input: Arc<str>,
    next_line: u64,
    /// Lines up to here are in the received counter.
    counted_to: u64,
    batch_lines: usize,
    max_line: usize,
    oversize: Oversize,
    /// An incomplete line carried between reads (at most `max_line` bytes kept).
    partial: Vec<u8>,
    partial_overflow: bool,
    carried: u64,
    current: Option<Batch>,
    /// Bytes the last batch held: the next one starts with that much room,
    /// so a busy stream's batches do not grow by copying.
    last_batch_bytes: usize,
    /// The broker message being cut into lines, and the number within it
    /// of its next line; `message_begun` until its first line is placed.
    message: Option<(Origin, u32)>,
    message_begun: bool,
    format: LineFormat,
    /// The peer sending now; `peer_begun` until a batch records it.
    peer: Option<SocketAddr>,
    peer_begun: bool,
    /// For a file: its path, the offset of the next byte pushed, and that
    /// of the line being carried.
    file: Option<Arc<str>>,
    position: u64,
    line_start: u64,
    tls_client: Option<Arc<str>>,
    bytes: prometheus::IntCounter,
    received: prometheus::IntCounter,
    truncated: prometheus::IntCounter,
    dropped_oversize: prometheus::IntCounter,
}

impl LineBatcher {
    pub fn new(input: Arc<str>, engine: &EngineConfig, metrics: Arc<Metrics>) -> LineBatcher {
        let name: &str = &input;
        LineBatcher {
            bytes: metrics.bytes_received.with_label_values(&[name]),
            received: metrics.lines_received.with_label_values(&[name]),
            truncated: metrics.lines_truncated.with_label_values(&[name]),
            dropped_oversize: metrics.lines_dropped.with_label_values(&[name, "oversize"]),
            next_line: 1,
            counted_to: 1,
            batch_lines: engine.batch_lines,
            max_line: engine.max_line_bytes,
            oversize: engine.oversize,
            partial: Vec::new(),
            partial_overflow: false,
            carried: 0,
            current: None,
            last_batch_bytes: 16 << 10,
            message: None,
            message_begun: false,
            format: LineFormat::None,
            peer: None,
            peer_begun: false,
            file: None,
            position: 0,
            line_start: 0,
            tls_client: None,
            input,
        }
    }

    /// Lines are read for context as `format` says.
    pub fn with_format(mut self, format: LineFormat) -> LineBatcher {
        self.format = format;
        self
    }

    /// The lines pushed from now on come from `peer`.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        if self.peer != Some(peer) {
            self.peer = Some(peer);
            self.peer_begun = true;
        }
    }

    /// The lines come over TLS from a client whose certificate has this subject.
    pub fn set_tls_client(&mut self, subject: Arc<str>) {
        self.tls_client = Some(subject);
    }

    /// The bytes pushed from now on are those of file `path` from byte
    /// `offset`: each line records where it starts.
    pub fn set_file(&mut self, path: Arc<str>, offset: u64) {
        self.file = Some(path);
        self.position = offset;
        self.line_start = offset;
    }

    /// The lines pushed until the message ends are those of the broker
    /// message at `origin` (hits carry its coordinates and the line in it).
    fn begin_message(&mut self, origin: Origin) {
        self.message = Some((origin, 1));
        self.message_begun = true;
    }

    /// Bytes of a stream: complete lines are batched, the rest is carried.
    pub fn push_bytes(&mut self, mut data: &[u8]) {
        self.bytes.inc_by(data.len() as u64);
        while let Some(nl) = memchr::memchr(b'\n', data) {
            self.position += nl as u64 + 1;
            if self.partial.is_empty() && !self.partial_overflow {
                self.line(&data[..nl], false);
            } else {
                self.extend_partial(&data[..nl]);
                let p = std::mem::take(&mut self.partial);
                let overflow = std::mem::replace(&mut self.partial_overflow, false);
                self.line(&p, overflow);
                self.partial = p;
                self.partial.clear();
            }
            data = &data[nl + 1..];
            self.carried = 0;
            self.line_start = self.position;
        }
        self.position += data.len() as u64;
        self.carried += data.len() as u64;
        self.extend_partial(data);
    }

    fn extend_partial(&mut self, data: &[u8]) {
        let room = self.max_line.saturating_sub(self.partial.len());
        if data.len() > room {
            self.partial_overflow = true;
        }
        self.partial
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// One complete line (a datagram piece or a framed message).
    pub fn push_line(&mut self, line: &[u8]) {
        self.push_line_cut(line, false);
    }

    /// [`Self::push_line`] for a line its source already cut to
    /// [`Self::max_line`] (`cut`: bytes beyond it were discarded, and
    /// counted with [`Self::count_bytes`]).
    pub fn push_line_cut(&mut self, line: &[u8], cut: bool) {
        self.bytes.inc_by(line.len() as u64 + 1);
        self.line(line, cut);
    }

    /// The most bytes of a line kept (`engine.max_line_bytes`): a source
    /// holding a message need keep no more.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Counts bytes that arrive as framing around [`Self::push_line`] lines.
    pub fn count_bytes(&mut self, n: usize) {
        self.bytes.inc_by(n as u64);
    }

    fn line(&mut self, line: &[u8], already_cut: bool) {
        let (line, cut_here) = crate::lines::as_scanned(line, self.max_line);
        let number = self.next_line;
        self.next_line += 1;
        let in_message = self.message.as_mut().map(|(_, n)| {
            *n += 1;
            *n - 1
        });
        let cut = already_cut || cut_here;
        if cut && self.oversize == Oversize::Drop {
            self.dropped_oversize.inc();
            return;
        }
        let fresh = self.current.is_none();
        let b = self.current.get_or_insert_with(|| Batch {
            input: self.input.clone(),
            first_line: number,
            lines: Lines::with_capacity(self.last_batch_bytes, self.batch_lines),
            truncated: Vec::new(),
            dropped: Vec::new(),
            read_at: Instant::now(),
            ack: None,
            messages: Vec::new(),
            format: self.format,
            peers: Vec::new(),
            file: self.file.clone(),
            offsets: Vec::new(),
            tls_client: self.tls_client.clone(),
        });
        // Dropped lines still take a number; a batch's numbers stay contiguous
        // because a drop inside a batch is recorded as an empty, unscanned slot.
        while b.first_line + (b.lines.len() as u64) < number {
            b.dropped.push(b.lines.len() as u32);
            b.lines.push(b"");
            if self.file.is_some() {
                b.offsets.push(0); // never read: the slot is not scanned
            }
        }
        if let (Some((origin, _)), Some(line)) = (&self.message, in_message) {
            if fresh || self.message_begun {
                b.messages.push(MessageLines {
                    first: b.lines.len() as u32,
                    line,
                    origin: origin.clone(),
                });
                self.message_begun = false;
            }
        }
        if let Some(peer) = self.peer {
            if fresh || self.peer_begun {
                b.peers.push((b.lines.len() as u32, peer));
                self.peer_begun = false;
            }
        }
        if self.file.is_some() {
            b.offsets.push(self.line_start);
        }
        if cut {
            self.truncated.inc();
            b.truncated.push(b.lines.len() as u32);
        }
        b.lines.push(line);
    }

    /// Bytes read since the last newline (an incomplete line being carried),
    /// counting any part beyond the maximum length that was not kept.
    pub fn carried_bytes(&self) -> u64 {
        self.carried
    }

    /// True when the batch in progress should be sent before reading more.
    pub fn is_full(&self) -> bool {
        self.current.as_ref().is_some_and(|b| {
            b.lines.len() >= self.batch_lines || b.lines.bytes().len() >= FULL_BATCH_BYTES
        })
    }

    /// True while a batch is in progress.
    pub fn holds_batch(&self) -> bool {
        self.current.is_some()
    }

    /// Takes back a batch [`Self::take`] gave that could not be sent, to
    /// keep filling it. Only valid while no batch is in progress.
    pub fn put_back(&mut self, batch: Batch) {
        debug_assert!(self.current.is_none());
        self.current = Some(batch);
    }

    /// The batch in progress, if it holds any line.
    pub fn take(&mut self) -> Option<Batch> {
        // Counted per batch, not per line: one atomic add instead of thousands.
        self.received.inc_by(self.next_line - self.counted_to);
        self.counted_to = self.next_line;
        let batch = self.current.take()?;
        // Up to the most a batch holds before it counts as full.
        self.last_batch_bytes = batch.lines.bytes().len().clamp(16 << 10, FULL_BATCH_BYTES);
        Some(batch)
    }

    /// End of input: a final line without newline is a line too.
    pub fn finish(&mut self) -> Option<Batch> {
        self.end_partial();
        self.take()
    }

    /// A carried partial line becomes a line.
    fn end_partial(&mut self) {
        if !self.partial.is_empty() || self.partial_overflow {
            let mut p = std::mem::take(&mut self.partial);
            let overflow = std::mem::replace(&mut self.partial_overflow, false);
            self.line(&p, overflow);
            p.clear();
            self.partial = p;
        }
        self.carried = 0;
    }

    /// One broker message holding one or more lines (its last line needs
    /// no `\n`), from `origin`. Its lines all go into the batch in
    /// progress, so a batch never ends inside a message.
    pub fn push_message(&mut self, origin: Origin, payload: &[u8]) {
        self.begin_message(origin);
        self.push_bytes(payload);
        self.end_partial();
        self.message = None;
    }
}

/// The sending side of the line queue, shared by every source.
#[derive(Clone)]
pub struct LineQueue {
    tx: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
}

impl LineQueue {
    /// Sends a batch, waiting while the queue is full (backpressure).
    /// Returns false when the pipeline has shut down.
    pub async fn send(&self, batch: Batch) -> bool {
        self.metrics.queue_depth.inc();
        let ok = self.tx.send(batch).await.is_ok();
        if !ok {
            self.metrics.queue_depth.dec();
        }
        ok
    }

    /// Whether no batch waits for a matcher: the matchers keep up, and
    /// a small batch sent now costs them nothing.
    pub fn is_idle(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }

    /// Sends without waiting (for sources that cannot push back, like UDP).
    /// When the queue is full the batch comes back, for the caller to keep
    /// filling or to drop and count.
    // The refused batch comes back whole, to be filled on: boxing it would
    // allocate on every refusal for nothing.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, batch: Batch) -> Result<(), Batch> {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) => {
                Err(b)
            }
        }
    }

    /// Sends the batch in progress, if any.
    pub async fn flush(&self, batcher: &mut LineBatcher) -> bool {
        match batcher.take() {
            Some(b) => self.send(b).await,
            None => true,
        }
    }
}

/// Which encodings the configured sinks need, indexed by [`HitFormat::index`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Formats([bool; HitFormat::ALL.len()]);

impl Formats {
    /// The set of `formats`.
    pub fn of(formats: impl IntoIterator<Item = HitFormat>) -> Formats {
        let mut f = Formats::default();
        for format in formats {
            f.0[format.index()] = true;
        }
        f
    }

    fn iter(self) -> impl Iterator<Item = HitFormat> {
        HitFormat::ALL
            .into_iter()
            .filter(move |f| self.0[f.index()])
    }
}

/// What becomes of the hits a matcher finds: how they are grouped into
/// documents, and whether repeats are suppressed.
#[derive(Clone, Default)]
pub struct HitOutput {
    pub group: Grouping,
    pub suppressor: Option<Arc<Suppressor>>,
    /// Where scanned batches go for retro-hunt, if `[retro]` is on.
    pub ring: Option<RingTap>,
    /// Where hits are counted for sightings, if `[sightings]` is on.
    pub sightings: Option<Arc<Tally>>,
}

/// Starts the matcher threads. Returns the queue sources send to, the
/// channel of hit batches for the dispatcher, the threads to join, and a
/// weak sender into that channel for the retro-hunt (which must not keep
/// it open once the matchers are gone).
pub fn start_matchers(
    engine: Arc<ArcSwap<Engine>>,
    config: &EngineConfig,
    formats: Formats,
    output: HitOutput,
    metrics: Arc<Metrics>,
) -> (
    LineQueue,
    mpsc::Receiver<HitBatch>,
    Vec<std::thread::JoinHandle<()>>,
    mpsc::WeakSender<HitBatch>,
) {
    let (tx, rx) = mpsc::channel::<Batch>(config.queue_batches);
    let (hits_tx, hits_rx) = mpsc::channel::<HitBatch>(config.queue_batches);
    let rx = Arc::new(Mutex::new(rx));
    let threads = config.matcher_threads();
    let weak = hits_tx.downgrade();
    let limits = HitLimits {
        original_max: config.original_max_bytes,
        per_line: config.max_hits_per_line,
        batch_bytes: config.hit_batch_max_bytes,
    };
    let handles = (0..threads)
        .map(|i| {
            let (rx, hits_tx, engine, metrics, output) = (
                rx.clone(),
                hits_tx.clone(),
                engine.clone(),
                metrics.clone(),
                output.clone(),
            );
            std::thread::Builder::new()
                .name(format!("iocd-match-{i}"))
                .spawn(move || {
                    let m = Matcher {
                        index: i,
                        engine: &engine,
                        hits_tx: &hits_tx,
                        metrics: &metrics,
                        formats,
                        limits,
                        output: &output,
                    };
                    m.run(&rx)
                })
                .expect("spawning a matcher thread")
        })
        .collect();
    (LineQueue { tx, metrics }, hits_rx, handles, weak)
}

/// What one line's hits may hold.
#[derive(Clone, Copy)]
struct HitLimits {
    /// Bytes of the line in `event.original`.
    original_max: usize,
    /// Hits emitted per line.
    per_line: usize,
    /// Bytes of encoded hits in one hit batch: past it, the batch goes to
    /// the sinks and the line batch's next hits start another, so memory
    /// follows this bound and not the number of hits.
    batch_bytes: usize,
}

/// Appends the documents of one line's hits to `out`, in every format in
/// `formats`, grouped as `group` says; `ev.original` is kept for per-hit
/// sinks (keys, ids).
pub(crate) fn push_docs(
    out: &mut HitBatch,
    formats: Formats,
    group: Grouping,
    ev: &Event,
    found: &[Found],
) {
    let original = ev.original.map_or(&[][..], |(o, _)| o);
    let kept = out.lines.len()..out.lines.len() + original.len();
    out.lines.extend_from_slice(original);
    let docs: Vec<&[Found]> = match group {
        Grouping::Hit => found.chunks(1).collect(),
        Grouping::Line => vec![found],
    };
    let origin = ev.sighting.origin;
    for doc in &docs {
        out.meta.push(HitMeta {
            kind: doc[0].indicator.kind,
            feed: doc[0].indicator.provenance.feed.name.clone(),
            value: match doc {
                [one] => one.indicator.value.clone(),
                many => many
                    .iter()
                    .map(|f| &*f.indicator.value)
                    .collect::<Vec<_>>()
                    .join(",")
                    .into(),
            },
            id: origin.map(|(o, l)| o.hit_id(l, doc.iter().map(|f| f.indicator))),
            line: kept.clone(),
        });
    }
    for format in formats.iter() {
        hit::encode(format, group, &mut out.encoded[format.index()], ev, found);
    }
    out.hits += docs.len();
}

/// One matcher thread's view of the pipeline.
struct Matcher<'a> {
    /// Its slot in [`RingTap::engines`].
    index: usize,
    engine: &'a ArcSwap<Engine>,
    hits_tx: &'a mpsc::Sender<HitBatch>,
    metrics: &'a Metrics,
    formats: Formats,
    limits: HitLimits,
    output: &'a HitOutput,
}

impl Matcher<'_> {
    fn run(&self, rx: &Mutex<mpsc::Receiver<Batch>>) {
        let mut st = ScanState::new();
        loop {
            // Holding the lock while waiting is fine: whoever holds it takes the next batch.
            let Some(batch) = rx.lock().expect("line queue").blocking_recv() else {
                return;
            };
            self.metrics.queue_depth.dec();
            if !self.batch(batch, &mut st) {
                return;
            }
        }
    }

    /// Scans one batch and hands its hits on; false when the sinks are gone.
    fn batch(&self, mut batch: Batch, st: &mut ScanState) -> bool {
        let HitLimits {
            original_max,
            per_line,
            batch_bytes,
        } = self.limits;
        let capped = self
            .metrics
            .hits_dropped
            .with_label_values(&["max_hits_per_line"]);
        let started = Instant::now();
        if let Some(tap) = &self.output.ring {
            tap.engines
                .set(self.index, crate::retro::MatcherEngines::LOADING);
        }
        let engine = self.engine.load_full();
        if let Some(tap) = &self.output.ring {
            tap.engines.set(self.index, engine.build_id());
        }
        let ack = batch.ack.take().map(Arc::new);
        let mut out = HitBatch::empty(ack.clone());
        let mut timestamp: Option<(String, i64)> = None;
        let mut truncated = batch.truncated.iter().peekable();
        let mut dropped = batch.dropped.iter().peekable();
        let (mut message, mut peer_cursor) = (0usize, 0usize);
        let mut sinks_gone = false;
        engine.scan_batch(&batch.lines, st, |l| {
            let i = l.index as usize;
            // The marks of the lines before, which had no hits, are passed.
            while truncated.next_if(|&&t| (t as usize) < i).is_some() {}
            while dropped.next_if(|&&d| (d as usize) < i).is_some() {}
            let cut = truncated.next_if(|&&t| t as usize == i).is_some();
            if dropped.next_if(|&&d| d as usize == i).is_some() || sinks_gone {
                return;
            }
            let line = &batch.lines.bytes()[l.range];
            let scanned = l.matches;
            if scanned.len() > per_line {
                capped.inc_by((scanned.len() - per_line) as u64);
            }
            let origin = batch.origin_of(i, &mut message);
            let peer = batch.peer_of(i, &mut peer_cursor);
            let mut context = LineContext::read(line, batch.format, peer, batch.file_of(i));
            context.tls_client = batch.tls_client.as_deref();
            let (ts, now_ms) = timestamp.get_or_insert_with(|| {
                let ms = crate::time::unix_millis_now();
                (crate::time::rfc3339_ms(ms), ms)
            });
            let mut found = Vec::with_capacity(scanned.len().min(per_line));
            for m in &scanned[..scanned.len().min(per_line)] {
                let ind = engine.indicator(m.indicator);
                if let Some(t) = &self.output.sightings {
                    // Every sighting counts, suppressed or not.
                    t.count(ind, *now_ms);
                }
                let repeats = match &self.output.suppressor {
                    None => None,
                    Some(sup) => {
                        let key = sup.key(&KeyParts {
                            kind: ind.kind.as_str(),
                            value: &ind.value,
                            feed: &ind.provenance.feed.name,
                            input: &batch.input,
                            source_ip: peer.map(|p| p.ip()),
                            host: context.syslog.as_ref().and_then(|h| h.hostname),
                        });
                        match sup.check(key, *now_ms) {
                            Verdict::Suppress => {
                                self.metrics
                                    .hits_suppressed
                                    .with_label_values(&[
                                        ind.kind.as_str(),
                                        &ind.provenance.feed.name,
                                    ])
                                    .inc();
                                continue;
                            }
                            Verdict::Emit(r) => r,
                        }
                    }
                };
                self.metrics
                    .hits
                    .with_label_values(&[ind.kind.as_str(), &ind.provenance.feed.name])
                    .inc();
                found.push(Found {
                    indicator: ind,
                    m: *m,
                    matched: &line[m.start as usize..m.end as usize],
                    repeats,
                });
            }
            if found.is_empty() {
                return;
            }
            let original = &line[..line.len().min(original_max)];
            let ev = Event {
                sighting: Sighting {
                    timestamp: ts,
                    input: &batch.input,
                    line_number: batch.first_line + i as u64,
                    origin,
                },
                original: Some((original, cut || original.len() < line.len())),
                context: &context,
                retro: false,
            };
            push_docs(&mut out, self.formats, self.output.group, &ev, &found);
            // Only a line that added hits can have filled the batch.
            if out.bytes() >= batch_bytes {
                let full = std::mem::replace(&mut out, HitBatch::empty(ack.clone()));
                sinks_gone = self.hits_tx.blocking_send(full).is_err();
            }
        });
        if sinks_gone {
            return false;
        }
        drop(ack);
        self.metrics
            .lines_scanned
            .inc_by((batch.lines.len() - batch.dropped.len()) as u64);
        self.metrics
            .batch_scan
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .match_latency
            .observe(batch.read_at.elapsed().as_secs_f64());
        // A batch without hits needs no sink: dropping it fires its ack.
        let sent = out.hits == 0 || self.hits_tx.blocking_send(out).is_ok();
        if let Some(tap) = &self.output.ring {
            let lines = batch.lines.len();
            let record = RingMsg::Batch(RingBatch {
                time_ms: crate::time::unix_millis_now()
                    - batch.read_at.elapsed().as_millis() as i64,
                input: batch.input,
                first_line: batch.first_line,
                engine_id: engine.build_id(),
                lines: batch.lines,
                dropped: batch.dropped,
            });
            // Never wait for the disk: a full ring queue loses the batch.
            if tap.tx.try_send(record).is_err() {
                tap.dropped.inc_by(lines as u64);
            }
            tap.engines.set(self.index, 0);
        }
        sent
    }
}

/// Hands every hit batch to every sink (each through its own bounded
/// channel, so a slow sink pushes back on the matchers).
pub async fn dispatch(mut hits: mpsc::Receiver<HitBatch>, sinks: Vec<mpsc::Sender<Arc<HitBatch>>>) {
    while let Some(batch) = hits.recv().await {
        let batch = Arc::new(batch);
        for s in &sinks {
            let _ = s.send(batch.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher(max: usize, oversize: Oversize) -> LineBatcher {
        let cfg = EngineConfig {
            max_line_bytes: max,
            oversize,
            ..EngineConfig::default()
        };
        LineBatcher::new(Arc::from("t"), &cfg, Metrics::new())
    }

    fn lines(b: &Batch) -> Vec<&[u8]> {
        b.lines.iter().collect()
    }

    #[test]
    fn stream_lines_across_reads() {
        let mut b = batcher(100, Oversize::Truncate);
        b.push_bytes(b"one\r\ntw");
        b.push_bytes(b"o\nthree\n\nfo");
        let batch = b.finish().unwrap();
        assert_eq!(lines(&batch), [&b"one"[..], b"two", b"three", b"", b"fo"]);
        assert_eq!(batch.first_line, 1);
    }

    #[test]
    fn long_lines_truncated_or_dropped() {
        let mut b = batcher(4, Oversize::Truncate);
        b.push_bytes(b"abcdefgh\nij");
        b.push_bytes(b"klmnop\nqr\n");
        let batch = b.take().unwrap();
        assert_eq!(lines(&batch), [&b"abcd"[..], b"ijkl", b"qr"]);
        assert_eq!(batch.truncated, [0, 1]);

        let mut b = batcher(4, Oversize::Drop);
        b.push_bytes(b"ok\nabcdefgh\nyes\n");
        let batch = b.take().unwrap();
        // The dropped line keeps its number (line 3 is still line 3) and is
        // marked, so it is never scanned.
        assert_eq!(lines(&batch), [&b"ok"[..], b"", b"yes"]);
        assert_eq!(batch.first_line, 1);
        assert_eq!(batch.dropped, [1]);
    }

    #[test]
    fn message_lines_keep_their_origin() {
        let mut b = batcher(100, Oversize::Truncate);
        let origin = |offset| Origin::Kafka {
            topic: Arc::from("logs"),
            partition: 1,
            offset,
        };
        b.push_bytes(b"plain\n");
        b.push_message(origin(7), b"a\nb");
        b.push_message(origin(8), b"c\n");
        let batch = b.take().unwrap();
        assert_eq!(lines(&batch), [&b"plain"[..], b"a", b"b", b"c"]);
        let mut cursor = 0;
        let got: Vec<_> = (0..4)
            .map(|i| batch.origin_of(i, &mut cursor).map(|(o, l)| (o.clone(), l)))
            .collect();
        assert_eq!(
            got,
            [
                None,
                Some((origin(7), 1)),
                Some((origin(7), 2)),
                Some((origin(8), 1))
            ]
        );
    }

    #[test]
    fn numbering_continues_across_batches() {
        let mut b = batcher(100, Oversize::Truncate);
        b.push_bytes(b"a\nb\n");
        assert_eq!(b.take().unwrap().first_line, 1);
        b.push_line(b"c");
        assert_eq!(b.take().unwrap().first_line, 3);
    }
}
