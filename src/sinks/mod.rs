//! Sinks: where hits go. Each runs as a tokio task fed through its own
//! bounded channel of [`HitBatch`]es; it ends (after flushing) when the
//! channel closes. A batch is released, and its ack may fire, only once the
//! sink has written it.

mod file;
pub mod http;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{HitFormat, SinkConfig};
use crate::metrics::Metrics;
use crate::pipeline::{Formats, HitBatch};

/// Batches queued per sink before the dispatcher waits.
const SINK_QUEUE: usize = 16;

/// The encodings `sinks` need.
pub fn formats<'a>(sinks: impl IntoIterator<Item = &'a SinkConfig>) -> Formats {
    let mut f = Formats::default();
    for s in sinks {
        match format_of(s) {
            HitFormat::Native => f.native = true,
            HitFormat::Ecs => f.ecs = true,
        }
    }
    f
}

fn format_of(s: &SinkConfig) -> HitFormat {
    match s {
        SinkConfig::Stdout { format }
        | SinkConfig::File { format, .. }
        | SinkConfig::Http { format, .. } => *format,
    }
}

/// Opens the sink (a file sink fails here if its file cannot be opened) and
/// spawns its task. `reopen` ticks on SIGUSR1.
///
/// # Errors
/// The sink's file cannot be opened.
pub async fn start(
    name: &str,
    config: &SinkConfig,
    metrics: Arc<Metrics>,
    reopen: watch::Receiver<u64>,
) -> std::io::Result<(mpsc::Sender<Arc<HitBatch>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(SINK_QUEUE);
    let name: Arc<str> = Arc::from(name);
    let format = format_of(config);
    let task = match config.clone() {
        SinkConfig::Stdout { .. } => {
            metrics.set_sink_up(&name, true);
            tokio::spawn(stdout(name, format, rx, metrics))
        }
        SinkConfig::File { path, .. } => {
            let f = file::FileSink::open(name.clone(), path, metrics.clone()).await?;
            tokio::spawn(f.run(format, rx, reopen))
        }
        SinkConfig::Http { .. } => {
            let h = http::HttpSink::new(name.clone(), config, metrics.clone());
            tokio::spawn(h.run(format, rx))
        }
    };
    Ok((tx, task))
}

async fn stdout(
    name: Arc<str>,
    format: HitFormat,
    mut rx: mpsc::Receiver<Arc<HitBatch>>,
    metrics: Arc<Metrics>,
) {
    let mut out = tokio::io::stdout();
    let sent = metrics.sink_sent.with_label_values(&[&name]);
    let failed = metrics.sink_failed.with_label_values(&[&name]);
    while let Some(batch) = rx.recv().await {
        match out.write_all(batch.lines(format)).await {
            Ok(()) => sent.inc_by(batch.hits as u64),
            Err(e) => {
                // A closed stdout (the reader went away) cannot come back.
                failed.inc_by(batch.hits as u64);
                metrics.set_sink_up(&name, false);
                tracing::error!(sink = %name, error = %e, "cannot write to stdout");
            }
        }
        let _ = out.flush().await;
    }
}
