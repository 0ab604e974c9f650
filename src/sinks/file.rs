//! Hits appended to a file as JSON lines. The file is reopened on SIGUSR1
//! and when it has been rotated away (renamed or removed), for logrotate.
//! A failed write (a full disk) is cut back to the last whole hit before it
//! is retried, so the file never holds a torn line or a hit twice.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::driver::{HitWriter, Outcome, PendingHit};
use crate::hit::HitFormat;

/// How often the path is checked for rotation while writing.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// `[sinks.NAME] type = "file"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub format: HitFormat,
}

pub struct FileWriter {
    name: Arc<str>,
    path: PathBuf,
    file: Option<tokio::fs::File>,
    inode: u64,
    /// The file's length after the last whole hit written.
    good_len: u64,
    checked: Instant,
    buf: Vec<u8>,
}

async fn open(path: &PathBuf) -> std::io::Result<(tokio::fs::File, u64, u64)> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    let meta = file.metadata().await?;
    Ok((file, meta.ino(), meta.len()))
}

impl FileWriter {
    /// Opens (creating) the file for appending.
    ///
    /// # Errors
    /// It cannot be opened; the error names the path.
    pub async fn open(name: Arc<str>, path: PathBuf) -> std::io::Result<FileWriter> {
        let (file, inode, good_len) = open(&path)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(FileWriter {
            name,
            path,
            file: Some(file),
            inode,
            good_len,
            checked: Instant::now(),
            buf: Vec::new(),
        })
    }

    async fn reopen_because(&mut self, why: &str) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush().await;
        }
        match open(&self.path).await {
            Ok((file, inode, len)) => {
                tracing::info!(sink = %self.name, path = %self.path.display(), why, "reopened hit file");
                self.file = Some(file);
                self.inode = inode;
                self.good_len = len;
            }
            Err(e) => {
                tracing::error!(sink = %self.name, path = %self.path.display(), error = %e, "cannot reopen hit file");
                self.file = None;
            }
        }
    }

    fn rotated_away(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |m| m.ino() != self.inode)
    }
}

impl HitWriter for FileWriter {
    async fn write(&mut self, hits: &[PendingHit], format: HitFormat) -> Outcome {
        if self.checked.elapsed() >= ROTATION_CHECK {
            self.checked = Instant::now();
            if self.rotated_away() {
                self.reopen_because("rotated away").await;
            }
        }
        if self.file.is_none() {
            self.reopen_because("not open").await;
        }
        let Some(file) = self.file.as_mut() else {
            return Outcome::retry_all(
                hits.len(),
                format!("{} cannot be opened", self.path.display()),
            );
        };
        self.buf.clear();
        for h in hits {
            self.buf.extend_from_slice(h.bytes(format));
        }
        let r = async {
            file.write_all(&self.buf).await?;
            file.flush().await
        }
        .await;
        match r {
            Ok(()) => {
                self.good_len += self.buf.len() as u64;
                Outcome::written()
            }
            Err(e) => {
                // Cut what part of the write landed, so the retry starts at
                // a whole line and writes no hit twice.
                let _ = file.set_len(self.good_len).await;
                let why = format!("{}: {e}", self.path.display());
                self.reopen_because("write failed").await;
                Outcome::retry_all(hits.len(), why)
            }
        }
    }

    async fn reopen(&mut self) {
        self.reopen_because("SIGUSR1").await;
    }
}
