//! Hits appended to a file as JSON lines. The file is reopened on SIGUSR1
//! and when it has been rotated away (renamed or removed), for logrotate.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::config::HitFormat;
use crate::metrics::Metrics;
use crate::pipeline::HitBatch;

/// How often the path is checked for rotation while writing.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

pub struct FileSink {
    name: Arc<str>,
    path: PathBuf,
    file: tokio::fs::File,
    inode: u64,
    metrics: Arc<Metrics>,
}

async fn open(path: &PathBuf) -> std::io::Result<(tokio::fs::File, u64)> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    let inode = file.metadata().await?.ino();
    Ok((file, inode))
}

impl FileSink {
    pub async fn open(
        name: Arc<str>,
        path: PathBuf,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<FileSink> {
        let (file, inode) = open(&path)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        metrics.set_sink_up(&name, true);
        Ok(FileSink {
            name,
            path,
            file,
            inode,
            metrics,
        })
    }

    async fn reopen(&mut self, why: &str) {
        let _ = self.file.flush().await;
        match open(&self.path).await {
            Ok((file, inode)) => {
                tracing::info!(sink = %self.name, path = %self.path.display(), why, "reopened hit file");
                self.file = file;
                self.inode = inode;
                self.metrics.set_sink_up(&self.name, true);
            }
            Err(e) => {
                tracing::error!(sink = %self.name, path = %self.path.display(), error = %e, "cannot reopen hit file");
                self.metrics.set_sink_up(&self.name, false);
            }
        }
    }

    fn rotated_away(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |m| m.ino() != self.inode)
    }

    pub async fn run(
        mut self,
        format: HitFormat,
        mut rx: mpsc::Receiver<Arc<HitBatch>>,
        mut reopen: watch::Receiver<u64>,
    ) {
        let sent = self.metrics.sink_sent.with_label_values(&[&self.name]);
        let retried = self.metrics.sink_retried.with_label_values(&[&self.name]);
        let mut checked = Instant::now();
        loop {
            let batch = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => break },
                Ok(()) = reopen.changed() => {
                    self.reopen("SIGUSR1").await;
                    continue;
                }
            };
            if checked.elapsed() >= ROTATION_CHECK {
                checked = Instant::now();
                if self.rotated_away() {
                    self.reopen("rotated away").await;
                }
            }
            // A failed write is retried (reopening the file) until it succeeds:
            // hits are never dropped, and the wait pushes back on the pipeline.
            let mut backoff = Duration::from_millis(100);
            loop {
                let r = async {
                    self.file.write_all(batch.lines(format)).await?;
                    self.file.flush().await
                }
                .await;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(sink = %self.name, path = %self.path.display(), error = %e, "cannot write hits; retrying");
                        self.metrics.set_sink_up(&self.name, false);
                        retried.inc();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        self.reopen("write failed").await;
                    }
                }
            }
            self.metrics.set_sink_up(&self.name, true);
            sent.inc_by(batch.hits as u64);
        }
        let _ = self.file.flush().await;
    }
}
