//! A file followed like `tail -F`: survives rotation by rename (the old file
//! is read to its end, then the new one from its start) and by truncation
//! (read again from the start). The offset is committed only when every
//! line before it has had its hits written (the batches' acks), and is kept
//! in `state_dir`, so a restart resumes where the last run had delivered:
//! at-least-once.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinHandle;

use super::acks::AckTracker;
use super::{shutdown_signalled, SourceContext};
use crate::pipeline::LineBatcher;

/// `[sources.NAME] type = "file"`: a file followed like `tail -F`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub start_at: StartAt,
}

/// Where a file is first read from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written after iocd starts (when no offset is remembered).
    #[default]
    End,
    Beginning,
}

/// How often the file is checked for new data, rotation and truncation.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Checkpoint {
    path: PathBuf,
    inode: u64,
    offset: u64,
}

/// Starts following the file; its offset is kept in `state_dir`.
///
/// # Errors
/// `state_dir` cannot be created.
pub async fn start(
    name: Arc<str>,
    config: FileSourceConfig,
    state_dir: PathBuf,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let FileSourceConfig { path, start_at } = config;
    std::fs::create_dir_all(&state_dir)?;
    let state = state_dir.join(format!("file-{name}.json"));
    Ok(tokio::spawn(async move {
        follow(name, path, start_at, state, ctx).await
    }))
}

struct Open {
    file: tokio::fs::File,
    inode: u64,
    /// Bytes read so far.
    read_to: u64,
    batcher: LineBatcher,
}

async fn follow(
    name: Arc<str>,
    path: PathBuf,
    start_at: StartAt,
    state: PathBuf,
    ctx: SourceContext,
) {
    let mut saved: Option<Checkpoint> = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Checkpoint| c.path == path);
    let mut shutdown = ctx.shutdown.clone();
    let mut current: Option<Open> = None;
    // Sent batches not yet acknowledged: (inode, offset after the batch).
    let mut pending: AckTracker<(u64, u64)> = AckTracker::default();
    // After a rotation the next file is new: read it from its start.
    let mut rotated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if current.is_none() {
            current = open(&name, &path, start_at, saved.take(), rotated, &ctx).await;
        }
        if let Some(f) = current.as_mut() {
            // Read everything there is now, sending batches as they fill.
            loop {
                let n = match f.file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(source = %name, path = %path.display(), error = %e, "read failed");
                        0
                    }
                };
                if n == 0 {
                    break;
                }
                f.read_to += n as u64;
                f.batcher.push_bytes(&buf[..n]);
                if f.batcher.is_full() && !send(f, &ctx, &mut pending).await {
                    return;
                }
            }
            if !send(f, &ctx, &mut pending).await {
                return;
            }
            // At the end of what is there: rotated away, or truncated?
            match std::fs::metadata(&path) {
                Ok(m) if m.ino() == f.inode && m.len() < f.read_to => {
                    tracing::info!(source = %name, path = %path.display(), "file truncated: reading from the start");
                    let _ = f.file.seek(std::io::SeekFrom::Start(0)).await;
                    f.read_to = 0;
                    f.batcher = ctx.batcher(&name);
                }
                Ok(m) if m.ino() == f.inode => {}
                _ => {
                    // Renamed or removed: what was read is complete, including a last line without newline.
                    tracing::info!(source = %name, path = %path.display(), "file rotated: following the new file");
                    if let Some(mut b) = f.batcher.finish() {
                        b.ack = Some(pending.track((f.inode, f.read_to)));
                        if !ctx.queue.send(b).await {
                            return;
                        }
                    }
                    current = None;
                    rotated = true;
                }
            }
        }
        if let Some(at) = pending.acknowledged() {
            write_checkpoint(&state, &path, at);
        }
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    // Drain: what was read is sent; wait for its hits to be written so the
    // committed offset covers it (bounded by the daemon's grace period).
    if let Some(f) = current.as_mut() {
        send(f, &ctx, &mut pending).await;
    }
    if let Some(at) = pending.drain().await {
        write_checkpoint(&state, &path, at);
    }
}

async fn open(
    name: &Arc<str>,
    path: &Path,
    start_at: StartAt,
    saved: Option<Checkpoint>,
    rotated: bool,
    ctx: &SourceContext,
) -> Option<Open> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    let offset = match saved {
        Some(c) if c.inode == meta.ino() && c.offset <= meta.len() => c.offset,
        _ if rotated || start_at == StartAt::Beginning => 0,
        _ => meta.len(),
    };
    file.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    tracing::info!(source = %name, path = %path.display(), offset, "following file");
    Some(Open {
        file,
        inode: meta.ino(),
        read_to: offset,
        batcher: ctx.batcher(name),
    })
}

/// Sends the batch in progress with an ack, remembering the offset its end
/// stands for (bytes read minus the incomplete line still carried).
async fn send(f: &mut Open, ctx: &SourceContext, pending: &mut AckTracker<(u64, u64)>) -> bool {
    let Some(mut b) = f.batcher.take() else {
        return true;
    };
    b.ack = Some(pending.track((f.inode, f.read_to - f.batcher.carried_bytes())));
    ctx.queue.send(b).await
}

/// Writes the checkpoint `(inode, offset)` of `path` atomically (temp file,
/// then rename).
fn write_checkpoint(state: &Path, path: &Path, (inode, offset): (u64, u64)) {
    let c = Checkpoint {
        path: path.to_owned(),
        inode,
        offset,
    };
    if let Err(e) = crate::state::save(state, &c) {
        tracing::warn!(state = %state.display(), error = %e, "cannot save file offset");
    }
}
