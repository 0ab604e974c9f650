//! A file followed like `tail -F`: survives rotation by rename (the old file
//! is read to its end, then the new one from its start) and by truncation
//! (read again from the start). The offset is committed only when every
//! line before it has had its hits written (the batches' acks), and is kept
//! in `state_dir`, so a restart resumes where the last run had delivered:
//! at-least-once.
//!
//! A file truncated and rewritten between two polls keeps its inode and may
//! be as long as before: the first bytes of the file (its head) are
//! compared at every poll, so that is seen as a truncation too. A symlink
//! at the path is not followed unless `follow_symlinks = true` (a link
//! planted at a log path must not lead iocd into `/etc/shadow`). A file
//! that cannot be opened is warned about once per cause, counted in
//! `iocd_source_errors_total{reason}` and said in `/ready`'s body.

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

/// `[sources.NAME] type = "file"`: a file followed like `tail -F`; a glob
/// in the file name (`/var/log/nginx/*.log`) follows every match.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub start_at: StartAt,
    /// Follow a symlink at `path` (off: a symlink there is refused).
    #[serde(default)]
    pub follow_symlinks: bool,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
}

/// Bytes at the start of a file compared at every poll.
const HEAD_BYTES: usize = 256;

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
    std::fs::create_dir_all(&state_dir)?;
    if let Some(pattern) = file_glob(&config.path)? {
        return Ok(tokio::spawn(follow_glob(
            name, config, pattern, state_dir, ctx,
        )));
    }
    let state = state_dir.join(format!("file-{name}.json"));
    Ok(tokio::spawn(async move {
        follow(name, config, state, ctx).await
    }))
}

/// How often a glob's folder is listed for new files.
const GLOB_POLL: Duration = Duration::from_secs(1);

/// The glob in `path`'s file name (`/var/log/nginx/*.log`), if it has one.
/// Only the last component may be a glob: its folder is listed.
///
/// # Errors
/// A glob that does not parse, or one in a folder component.
fn file_glob(path: &Path) -> std::io::Result<Option<globset::GlobMatcher>> {
    let is_glob = |s: &str| s.contains(['*', '?', '[', '{']);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let folder_has_glob = path.parent().is_some_and(|p| is_glob(&p.to_string_lossy()));
    if folder_has_glob {
        return Err(std::io::Error::other(format!(
            "{}: only the file name may be a glob",
            path.display()
        )));
    }
    match name {
        Some(n) if is_glob(&n) => globset::Glob::new(&n)
            .map(|g| Some(g.compile_matcher()))
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        _ => Ok(None),
    }
}

/// Follows every file in the glob's folder whose name matches, each its
/// own input (`NAME:FILE`) with its own offset; files that appear later are
/// followed from their start. Ends when every follower has drained.
async fn follow_glob(
    name: Arc<str>,
    config: FileSourceConfig,
    pattern: globset::GlobMatcher,
    state_dir: PathBuf,
    ctx: SourceContext,
) {
    let folder = config
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut followed = std::collections::HashSet::new();
    let mut followers = tokio::task::JoinSet::new();
    let mut shutdown = ctx.shutdown.clone();
    let mut first = true;
    loop {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| pattern.is_match(e.file_name()))
            .map(|e| e.path())
            .filter(|p| !followed.contains(p))
            .collect();
        found.sort();
        for path in found {
            followed.insert(path.clone());
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let input: Arc<str> = Arc::from(format!("{name}:{file}"));
            let safe = crate::state::path_component(&file);
            let state = state_dir.join(format!("file-{name}-{safe}.json"));
            let one = FileSourceConfig {
                path,
                // A file that appears while iocd runs is new: all of it.
                start_at: if first {
                    config.start_at
                } else {
                    StartAt::Beginning
                },
                follow_symlinks: config.follow_symlinks,
                parse: config.parse,
            };
            followers.spawn(follow(input, one, state, ctx.clone()));
        }
        first = false;
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            _ = tokio::time::sleep(GLOB_POLL) => {}
        }
    }
    while followers.join_next().await.is_some() {}
}

struct Open {
    file: tokio::fs::File,
    /// The same file, for reading its head without moving `file`.
    probe: std::fs::File,
    /// Its first bytes (up to [`HEAD_BYTES`]) as last seen.
    head: Vec<u8>,
    inode: u64,
    /// Bytes read so far.
    read_to: u64,
    batcher: LineBatcher,
}

impl Open {
    /// True when the file's first bytes are no longer those seen: it was
    /// truncated and written again. Learns more of the head as the file grows.
    fn rewritten(&mut self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut now = vec![0u8; HEAD_BYTES];
        let n = self.probe.read_at(&mut now, 0).unwrap_or(0);
        now.truncate(n);
        let common = now.len().min(self.head.len());
        if now[..common] != self.head[..common] {
            return true;
        }
        if now.len() > self.head.len() {
            self.head = now;
        }
        false
    }
}

async fn follow(name: Arc<str>, config: FileSourceConfig, state: PathBuf, ctx: SourceContext) {
    let FileSourceConfig {
        path,
        start_at,
        follow_symlinks,
        parse: _, // already in ctx
    } = config;
    let errors = |reason: &str| {
        ctx.metrics
            .source_errors
            .with_label_values(&[&name, reason])
    };
    // The cause of the last failed open: warned once, until it changes.
    let mut failing: Option<&'static str> = None;
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
            match open(
                &name,
                &path,
                start_at,
                saved.take(),
                rotated,
                follow_symlinks,
                &ctx,
            )
            .await
            {
                Ok(f) => {
                    if failing.take().is_some() {
                        ctx.metrics.set_source_problem(&name, None);
                    }
                    current = Some(f);
                }
                Err((reason, e)) => {
                    errors(reason).inc();
                    if failing != Some(reason) {
                        failing = Some(reason);
                        let what = format!("cannot open {}: {e}", path.display());
                        tracing::warn!(source = %name, reason, "{what}");
                        ctx.metrics.set_source_problem(&name, Some(what));
                    }
                }
            }
        }
        let meta = |path: &Path| {
            if follow_symlinks {
                std::fs::metadata(path)
            } else {
                std::fs::symlink_metadata(path)
            }
        };
        if let Some(f) = current.as_mut() {
            // Truncated (and perhaps written again) since the last poll?
            // Seen before reading, or the new bytes past the old offset
            // would be taken for an append.
            if matches!(meta(&path), Ok(m) if m.ino() == f.inode && (m.len() < f.read_to || f.rewritten()))
            {
                tracing::info!(source = %name, path = %path.display(), "file truncated: reading from the start");
                let _ = f.file.seek(std::io::SeekFrom::Start(0)).await;
                f.read_to = 0;
                f.head.clear();
                f.batcher = file_batcher(&ctx, &name, &path, 0);
            }
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
            // At the end of what is there: rotated away? (A truncation is
            // seen at the next poll, before reading.)
            match meta(&path) {
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

/// Opens the file at its resume point. Fails with a reason label
/// (`not_found`, `permission_denied`, `symlink`, `other`) and the error.
async fn open(
    name: &Arc<str>,
    path: &Path,
    start_at: StartAt,
    saved: Option<Checkpoint>,
    rotated: bool,
    follow_symlinks: bool,
    ctx: &SourceContext,
) -> Result<Open, (&'static str, std::io::Error)> {
    use std::os::unix::fs::OpenOptionsExt;
    let classify = |e: std::io::Error| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "not_found",
            std::io::ErrorKind::PermissionDenied => "permission_denied",
            // O_NOFOLLOW on a symlink: ELOOP.
            _ if e.raw_os_error() == Some(libc::ELOOP) => "symlink",
            _ => "other",
        };
        (reason, e)
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if !follow_symlinks {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let probe = options.open(path).map_err(classify)?;
    let meta = probe.metadata().map_err(classify)?;
    if !meta.is_file() {
        return Err(("other", std::io::Error::other("not a regular file")));
    }
    let mut file = tokio::fs::File::from_std(probe.try_clone().map_err(classify)?);
    let offset = match saved {
        Some(c) if c.inode == meta.ino() && c.offset <= meta.len() => c.offset,
        _ if rotated || start_at == StartAt::Beginning => 0,
        _ => meta.len(),
    };
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(classify)?;
    tracing::info!(source = %name, path = %path.display(), offset, "following file");
    let mut f = Open {
        file,
        probe,
        head: Vec::new(),
        inode: meta.ino(),
        read_to: offset,
        batcher: file_batcher(ctx, name, path, offset),
    };
    f.rewritten(); // learn the head as it is now
    Ok(f)
}

/// A batcher for `path` read from `offset`: its lines carry the path and
/// their byte offsets (`log.file.path`, `log.offset`).
fn file_batcher(ctx: &SourceContext, name: &Arc<str>, path: &Path, offset: u64) -> LineBatcher {
    let mut b = ctx.batcher(name);
    b.set_file(Arc::from(path.to_string_lossy()), offset);
    b
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
