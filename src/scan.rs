//! `iocd scan`: log lines in, hits out, in input order, on every core.
//!
//! The input is read in blocks cut at newlines; matcher threads scan whole
//! blocks; a writer puts their hits back in block order. Only the reader
//! touches the input and only the writer (the calling thread) the output.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::context::{LineContext, LineFormat};
use crate::engine::{Engine, Match, ScanState};
use crate::hit::{self, Event, Found, Grouping, HitFormat, Sighting};
use crate::lines::LineRule;

/// Default longest line scanned; longer lines are scanned up to it.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

#[derive(Clone, Debug)]
/// How `iocd scan` reads and matches.
pub struct ScanOptions {
    /// Longest line scanned, in bytes; the rest of a longer line is skipped
    /// and the line counted as truncated.
    pub max_line: usize,
    /// Matcher threads.
    pub threads: usize,
    /// Bytes read per block (at least `max_line` is carried on top).
    pub block_size: usize,
    /// The hits' shape (`--format`).
    pub format: HitFormat,
    /// One document per hit or per line (`--group`).
    pub group: Grouping,
    /// Put the line in each hit as `event.original` (`--with-line`).
    pub with_line: bool,
    /// How lines are read for context (`--parse`).
    pub parse: LineFormat,
}

impl ScanOptions {
    /// True when the writer needs the text of lines with hits.
    fn keeps_lines(&self) -> bool {
        self.with_line || self.parse != LineFormat::None || self.format == HitFormat::Ecs
    }
}

impl Default for ScanOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ScanOptions {
            max_line: DEFAULT_MAX_LINE,
            threads,
            block_size: 1 << 20,
            format: HitFormat::Native,
            group: Grouping::Hit,
            with_line: false,
            parse: LineFormat::None,
        }
    }
}

/// Counts for one input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Hits written.
    pub hits: u64,
    /// Lines longer than the maximum, scanned up to it.
    pub truncated: u64,
}

struct Block {
    seq: u64,
    data: Vec<u8>,
    /// The final block may end without a newline; its last piece is a line.
    last: bool,
}

/// A line with hits, as the writer needs it.
struct LineHits {
    /// Its number within the block, from 1.
    line: u64,
    /// Its text, when the output or context needs it.
    text: Option<Box<[u8]>>,
    /// Whether it was cut to the maximum length.
    cut: bool,
    hits: Vec<(Match, Box<[u8]>)>,
}

struct BlockResult {
    seq: u64,
    lines: u64,
    truncated: u64,
    hits: Vec<LineHits>,
}

/// Why a scan stopped early: its input, or its output. The two end a
/// command differently (a closed output pipe is a normal end for a filter;
/// a full disk is not).
#[derive(Debug)]
pub enum ScanError {
    /// Reading the input failed.
    Read(io::Error),
    /// Writing hits failed.
    Write(io::Error),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Read(e) => write!(f, "reading: {e}"),
            ScanError::Write(e) => write!(f, "writing hits: {e}"),
        }
    }
}

impl std::error::Error for ScanError {}

/// `input` as lines: decompressed when it starts like a gzip or zstd
/// stream (archives need no unpacking), as is otherwise.
///
/// # Errors
/// The first bytes cannot be read, or a decoder cannot start.
pub fn open_input<'a>(input: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
    use std::io::BufRead;
    let mut r = io::BufReader::with_capacity(1 << 16, input);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Scans `input` (named `name` in hits) and writes hits to `out`.
///
/// # Errors
/// Writing the output failed (first: once output fails, nothing more is
/// read), or reading the input failed.
pub fn scan_stream(
    engine: &Engine,
    name: &str,
    input: impl Read + Send,
    out: &mut impl Write,
    opts: &ScanOptions,
) -> Result<ScanSummary, ScanError> {
    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = sync_channel::<Block>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<BlockResult>(threads * 2);
    // Scanned blocks' buffers go back to the reader, so steady state
    // allocates no block buffers.
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(threads * 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx, free) = (job_rx.clone(), res_tx.clone(), free_tx.clone());
            s.spawn(move || matcher(engine, rx, tx, free, opts));
        }
        // Only the matchers may hold the job queue's receiver: once they
        // stop (the output closed), the reader's next send must fail, or it
        // would wait on a full queue for ever while we wait for it.
        drop(job_rx);
        drop(free_tx);
        drop(res_tx);
        let reader = s.spawn(move || {
            let recycled = || free_rx.try_recv().ok();
            read_blocks(input, opts, recycled, |b| job_tx.send(b).is_ok())
        });
        let written = write_in_order(engine, name, res_rx, out, opts);
        // On a write error the results channel closes, matchers stop, and the
        // reader stops at its next send.
        let read = reader.join().expect("reader panicked");
        let mut summary = written.map_err(ScanError::Write)?;
        let (bytes, truncated) = read.map_err(ScanError::Read)?;
        summary.bytes = bytes;
        summary.truncated += truncated;
        Ok(summary)
    })
}

fn matcher(
    engine: &Engine,
    jobs: Arc<Mutex<Receiver<Block>>>,
    results: SyncSender<BlockResult>,
    free: SyncSender<Vec<u8>>,
    opts: &ScanOptions,
) {
    let (max_line, keep) = (opts.max_line, opts.keeps_lines());
    let mut st = ScanState::new();
    loop {
        let job = jobs.lock().expect("job queue").recv();
        let Ok(block) = job else { return };
        let mut r = BlockResult {
            seq: block.seq,
            lines: 0,
            truncated: 0,
            hits: Vec::new(),
        };
        let data = &block.data[..];
        debug_assert!(
            block.last || data.ends_with(b"\n"),
            "blocks end at a newline"
        );
        let rule = LineRule::new(max_line);
        let sum = engine.scan_lines(data, rule, &mut st, |l| {
            let line = &data[l.range];
            r.hits.push(LineHits {
                line: l.index + 1,
                text: keep.then(|| line.into()),
                cut: l.cut,
                hits: l
                    .matches
                    .iter()
                    .map(|m| (*m, line[m.start as usize..m.end as usize].into()))
                    .collect(),
            });
        });
        r.lines = sum.lines;
        r.truncated = sum.cut;
        let mut spent = block.data;
        spent.clear();
        // A full return queue only means the reader has enough buffers.
        let _ = free.try_send(spent);
        if results.send(r).is_err() {
            return;
        }
    }
}

fn write_in_order(
    engine: &Engine,
    name: &str,
    results: Receiver<BlockResult>,
    out: &mut impl Write,
    opts: &ScanOptions,
) -> io::Result<ScanSummary> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut summary = ScanSummary::default();
    let mut buf = hit::EncodedHits::default();
    for r in results {
        pending.insert(r.seq, r);
        while let Some(r) = pending.remove(&next) {
            next += 1;
            if !r.hits.is_empty() {
                let ts = hit::now_rfc3339();
                for l in &r.hits {
                    let text = l.text.as_deref().unwrap_or_default();
                    let context = LineContext::read(text, opts.parse, None, None);
                    let found: Vec<Found> = l
                        .hits
                        .iter()
                        .map(|(m, matched)| Found {
                            indicator: engine.indicator(m.indicator),
                            m: *m,
                            matched,
                            repeats: None,
                        })
                        .collect();
                    let ev = Event {
                        sighting: Sighting {
                            timestamp: &ts,
                            input: name,
                            line_number: summary.lines + l.line,
                            origin: None,
                        },
                        original: opts.with_line.then_some((text, l.cut)),
                        context: &context,
                        retro: false,
                    };
                    hit::encode(opts.format, opts.group, &mut buf, &ev, &found);
                }
                out.write_all(buf.bytes())?;
                // Hits leave as soon as their block is done, so a pipeline
                // (or a person typing lines) sees them without waiting for EOF.
                out.flush()?;
                summary.hits += buf.len() as u64;
                buf.clear();
            }
            summary.lines += r.lines;
            summary.truncated += r.truncated;
        }
    }
    out.flush()?;
    Ok(summary)
}

/// Reads `input` into newline-cut blocks. A line longer than `max_line`
/// spanning blocks is cut to `max_line` bytes here (and counted), its rest
/// skipped up to the next newline. Returns (bytes read, lines truncated).
fn read_blocks(
    mut input: impl Read,
    opts: &ScanOptions,
    mut recycled: impl FnMut() -> Option<Vec<u8>>,
    mut send: impl FnMut(Block) -> bool,
) -> io::Result<(u64, u64)> {
    let capacity = opts.block_size + opts.max_line.min(opts.block_size);
    let mut fresh = |carry: &[u8]| {
        let mut b = recycled().unwrap_or_else(|| Vec::with_capacity(capacity));
        b.extend_from_slice(carry);
        b
    };
    let mut buf = fresh(&[]);
    let (mut seq, mut total, mut truncated) = (0u64, 0u64, 0u64);
    let mut skipping = false;
    loop {
        let before = buf.len();
        // read_to_end fills spare capacity without zeroing it first.
        let n = loop {
            match (&mut input)
                .take(opts.block_size as u64)
                .read_to_end(&mut buf)
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        debug_assert_eq!(buf.len(), before + n);
        total += n as u64;
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(nl) => {
                    buf.drain(..=nl);
                    skipping = false;
                }
                None => {
                    buf.clear();
                    if n == 0 {
                        break;
                    }
                    continue;
                }
            }
        }
        if n == 0 {
            if !buf.is_empty() {
                send(Block {
                    seq,
                    data: buf,
                    last: true,
                });
            }
            break;
        }
        // The block to send now, and the carried rest that starts the next.
        let next = match memchr::memrchr(b'\n', &buf) {
            Some(nl) => {
                let next = fresh(&buf[nl + 1..]);
                buf.truncate(nl + 1);
                next
            }
            None if buf.len() > opts.max_line => {
                // One line longer than any we scan: keep its head, drop the rest.
                buf.truncate(opts.max_line);
                buf.push(b'\n');
                truncated += 1;
                skipping = true;
                fresh(&[])
            }
            None => continue,
        };
        if !send(Block {
            seq,
            data: std::mem::replace(&mut buf, next),
            last: false,
        }) {
            break;
        }
        seq += 1;
    }
    Ok((total, truncated))
}
