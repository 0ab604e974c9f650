//! The ring: every line the daemon scanned, in zstd-compressed segment
//! files, oldest deleted first by size and age.
//!
//! A segment is one zstd stream of records, one per line batch:
//! `u32 input length, input, u64 first line number, i64 time (ms since the
//! epoch), u64 engine build id, u32 line count, then per line u32 length
//! and bytes` (little-endian). A line the pipeline dropped unscanned is
//! stored empty, so numbering stays whole. The segment being written is
//! `NAME.zst.open`; it is renamed to `NAME.zst` when closed, so a reader
//! never sees a torn stream.
//!
//! Invariants:
//! - Nothing on the hot path waits for the disk: matchers hand batches
//!   over with `try_send` on a bounded channel; when it is full the batch
//!   is not stored and its lines are counted (`iocd_retro_lines_dropped_total`).
//! - The bytes kept stay within `max_bytes` plus one open segment.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lines::Lines;

/// One scanned batch, as stored.
pub struct RingBatch {
    pub input: Arc<str>,
    pub first_line: u64,
    /// When the batch was read (ms since the epoch).
    pub time_ms: i64,
    /// The engine that scanned it ([`crate::engine::Engine::build_id`]).
    pub engine_id: u64,
    pub lines: Lines,
    /// Indices of lines dropped unscanned (stored empty).
    pub dropped: Vec<u32>,
}

/// What the writer thread is told.
pub enum RingMsg {
    /// Store a batch.
    Batch(RingBatch),
    /// Close the open segment, then answer: what was sent before is in a
    /// closed segment when the answer comes.
    Rotate(SyncSender<()>),
}

/// Has the writer close its open segment and waits until it has: what
/// was sent before is then in a closed segment. False when the writer is gone.
pub fn rotate(tx: &SyncSender<RingMsg>) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    tx.send(RingMsg::Rotate(done_tx)).is_ok() && done_rx.recv().is_ok()
}

/// Where and how much to keep.
#[derive(Clone, Debug)]
pub struct RingLimits {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// A segment is closed past this many uncompressed bytes...
    pub segment_bytes: u64,
    /// ... or when open this long.
    pub segment_age: Duration,
}

/// The metrics the ring moves.
#[derive(Clone)]
pub struct RingMetrics {
    pub bytes_stored: prometheus::IntGauge,
    pub write_errors: prometheus::IntCounter,
}

struct Open {
    path: PathBuf,
    enc: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    raw: u64,
    opened: Instant,
}

/// Closed segments, oldest first: (path, bytes, modified).
pub fn segments(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".zst"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs the writer until every sender is gone, then closes the segment.
pub fn write_loop(rx: Receiver<RingMsg>, limits: RingLimits, metrics: RingMetrics) {
    if let Err(e) = std::fs::create_dir_all(&limits.dir) {
        tracing::error!(dir = %limits.dir.display(), error = %e, "retro: cannot create the ring directory; nothing is kept");
    }
    // A segment left open by a crash is incomplete: its frames up to the
    // cut still decode, so keep it as closed.
    for e in std::fs::read_dir(&limits.dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if p.to_string_lossy().ends_with(".zst.open") {
            let _ = std::fs::rename(&p, p.with_extension(""));
        }
    }
    let mut seq = 0u64;
    let mut open: Option<Open> = None;
    enforce(&limits, &metrics);
    loop {
        let msg = match rx.recv_timeout(limits.segment_age) {
            Ok(m) => Some(m),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Some(RingMsg::Batch(b)) => {
                if open.is_none() {
                    open = start(&limits.dir, &mut seq)
                        .map_err(|e| {
                            metrics.write_errors.inc();
                            tracing::warn!(error = %e, "retro: cannot open a segment");
                        })
                        .ok();
                }
                if let Some(o) = open.as_mut() {
                    match write_batch(&mut o.enc, &b) {
                        Ok(n) => o.raw += n,
                        Err(e) => {
                            metrics.write_errors.inc();
                            tracing::warn!(error = %e, "retro: segment write failed; segment dropped");
                            let path = o.path.clone();
                            open = None;
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                if open.as_ref().is_some_and(|o| {
                    o.raw >= limits.segment_bytes || o.opened.elapsed() >= limits.segment_age
                }) {
                    close(open.take(), &metrics);
                    enforce(&limits, &metrics);
                }
            }
            Some(RingMsg::Rotate(done)) => {
                close(open.take(), &metrics);
                enforce(&limits, &metrics);
                let _ = done.send(());
            }
            None => {
                if open
                    .as_ref()
                    .is_some_and(|o| o.opened.elapsed() >= limits.segment_age)
                {
                    close(open.take(), &metrics);
                }
                enforce(&limits, &metrics);
            }
        }
    }
    close(open.take(), &metrics);
    enforce(&limits, &metrics);
}

fn start(dir: &Path, seq: &mut u64) -> io::Result<Open> {
    *seq += 1;
    // Named by time then sequence: names sort in write order.
    let name = format!(
        "seg-{:016}-{:08}.zst.open",
        crate::time::unix_millis_now(),
        seq
    );
    let path = dir.join(name);
    let file = File::create(&path)?;
    let enc = zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), 1)?;
    Ok(Open {
        path,
        enc,
        raw: 0,
        opened: Instant::now(),
    })
}

fn close(open: Option<Open>, metrics: &RingMetrics) {
    let Some(o) = open else { return };
    let done = o
        .enc
        .finish()
        .and_then(|mut w| w.flush().map(|_| w))
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()));
    match done {
        Ok(_) => {
            if let Err(e) = std::fs::rename(&o.path, o.path.with_extension("")) {
                metrics.write_errors.inc();
                tracing::warn!(error = %e, "retro: cannot close a segment");
            }
        }
        Err(e) => {
            metrics.write_errors.inc();
            tracing::warn!(error = %e, "retro: cannot finish a segment; dropped");
            let _ = std::fs::remove_file(&o.path);
        }
    }
}

/// Deletes the oldest closed segments past `max_bytes` or `max_age`.
fn enforce(limits: &RingLimits, metrics: &RingMetrics) {
    let segs = segments(&limits.dir);
    let mut total: u64 = segs.iter().map(|s| s.1).sum();
    let now = std::time::SystemTime::now();
    for (path, bytes, modified) in &segs {
        let too_old = now
            .duration_since(*modified)
            .is_ok_and(|age| age > limits.max_age);
        if total <= limits.max_bytes && !too_old {
            break;
        }
        if std::fs::remove_file(path).is_ok() {
            total -= bytes;
        }
    }
    metrics.bytes_stored.set(total as i64);
}

fn write_batch(w: &mut impl Write, b: &RingBatch) -> io::Result<u64> {
    let mut n = 0u64;
    let mut put = |w: &mut dyn Write, bytes: &[u8]| -> io::Result<()> {
        n += bytes.len() as u64;
        w.write_all(bytes)
    };
    put(w, &(b.input.len() as u32).to_le_bytes())?;
    put(w, b.input.as_bytes())?;
    put(w, &b.first_line.to_le_bytes())?;
    put(w, &b.time_ms.to_le_bytes())?;
    put(w, &b.engine_id.to_le_bytes())?;
    put(w, &(b.lines.len() as u32).to_le_bytes())?;
    let mut dropped = b.dropped.iter().peekable();
    for (i, line) in b.lines.iter().enumerate() {
        let line: &[u8] = if dropped.next_if(|&&d| d as usize == i).is_some() {
            &[]
        } else {
            line
        };
        put(w, &(line.len() as u32).to_le_bytes())?;
        put(w, line)?;
    }
    Ok(n)
}

/// One stored batch, read back.
pub struct Record {
    pub input: String,
    pub first_line: u64,
    pub time_ms: i64,
    pub engine_id: u64,
    pub lines: Lines,
}

/// Reads the records of one closed segment, calling `visit` for each; a
/// segment cut short (a crash) yields what it holds up to the cut.
///
/// # Errors
/// The file cannot be opened.
pub fn read_segment(path: &Path, mut visit: impl FnMut(&Record) -> bool) -> io::Result<u64> {
    let file = File::open(path)?;
    let bytes = file.metadata()?.len();
    let mut r = BufReader::new(zstd::stream::read::Decoder::new(file)?);
    let mut rec = Record {
        input: String::new(),
        first_line: 0,
        time_ms: 0,
        engine_id: 0,
        lines: Lines::default(),
    };
    while read_record(&mut r, &mut rec).is_ok() {
        if !visit(&rec) {
            break;
        }
    }
    Ok(bytes)
}

fn read_record(r: &mut impl Read, rec: &mut Record) -> io::Result<()> {
    let mut u32b = [0u8; 4];
    let mut u64b = [0u8; 8];
    r.read_exact(&mut u32b)?;
    let n = u32::from_le_bytes(u32b) as usize;
    if n > 1 << 20 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut input = vec![0u8; n];
    r.read_exact(&mut input)?;
    rec.input = String::from_utf8_lossy(&input).into_owned();
    r.read_exact(&mut u64b)?;
    rec.first_line = u64::from_le_bytes(u64b);
    r.read_exact(&mut u64b)?;
    rec.time_ms = i64::from_le_bytes(u64b);
    r.read_exact(&mut u64b)?;
    rec.engine_id = u64::from_le_bytes(u64b);
    r.read_exact(&mut u32b)?;
    let lines = u32::from_le_bytes(u32b) as usize;
    rec.lines.clear();
    for _ in 0..lines {
        r.read_exact(&mut u32b)?;
        let len = u32::from_le_bytes(u32b) as usize;
        if len > crate::pipeline::MAX_LINE_BYTES {
            return Err(io::ErrorKind::InvalidData.into());
        }
        rec.lines.push_with(len, |room| r.read_exact(room))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> RingMetrics {
        RingMetrics {
            bytes_stored: prometheus::IntGauge::new("b", "b").unwrap(),
            write_errors: prometheus::IntCounter::new("e", "e").unwrap(),
        }
    }

    #[test]
    fn batches_round_trip_and_rotate() {
        let dir = std::env::temp_dir().join(format!("iocd-ring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let limits = RingLimits {
            dir: dir.clone(),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(3600),
            segment_bytes: 1 << 30,
            segment_age: Duration::from_secs(3600),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let m = metrics();
        let writer = std::thread::spawn(move || write_loop(rx, limits, m));
        let batch = |first: u64, lines: &[&str], dropped: Vec<u32>| {
            let mut kept = Lines::default();
            for l in lines {
                kept.push(l.as_bytes());
            }
            RingMsg::Batch(RingBatch {
                input: Arc::from("in"),
                first_line: first,
                time_ms: 42,
                engine_id: 7,
                lines: kept,
                dropped,
            })
        };
        tx.send(batch(1, &["a 1.2.3.4", "b", "c"], vec![1]))
            .unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        tx.send(RingMsg::Rotate(done_tx)).unwrap();
        done_rx.recv().unwrap();
        tx.send(batch(4, &["d"], vec![])).unwrap();
        drop(tx);
        writer.join().unwrap();
        let segs = segments(&dir);
        assert_eq!(segs.len(), 2);
        let mut got = Vec::new();
        for (p, _, _) in &segs {
            read_segment(p, |r| {
                for line in r.lines.iter() {
                    got.push((
                        r.first_line,
                        r.time_ms,
                        r.engine_id,
                        String::from_utf8_lossy(line).into_owned(),
                    ));
                }
                true
            })
            .unwrap();
        }
        let want: Vec<(u64, i64, u64, String)> = [(1, "a 1.2.3.4"), (1, ""), (1, "c"), (4, "d")]
            .iter()
            .map(|(f, l)| (*f, 42, 7, l.to_string()))
            .collect();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
