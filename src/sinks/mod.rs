//! Sinks: where hits go. A closed set; each variant holds its component's
//! own settings, defined beside the component. Every sink is a
//! [`driver::HitWriter`] run by the one [`driver::run`] loop, fed through
//! its own bounded channel of hit batches; it ends (after flushing) when
//! the channel closes.

pub mod driver;
mod file;
pub mod http;
pub mod kafka;
pub mod nats;
mod stdout;
pub(crate) mod template;

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::hit::HitFormat;
use crate::metrics::Metrics;
use crate::pipeline::HitBatch;
use crate::settings::Invalid;
pub use file::FileSinkConfig;
pub use http::HttpSinkConfig;
pub use stdout::StdoutConfig;

/// Batches queued per sink before the dispatcher waits.
const SINK_QUEUE: usize = 16;

/// Where hits go.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON lines on standard output.
    Stdout(StdoutConfig),
    /// JSON lines appended to a file, reopened on SIGUSR1 or when rotated away.
    File(FileSinkConfig),
    /// Batched POSTs (NDJSON, a JSON array or an Elasticsearch `_bulk`
    /// body) with retry and exponential backoff.
    Http(Box<HttpSinkConfig>),
    /// One Kafka record per hit, from an idempotent producer (`acks=all`).
    Kafka(Box<kafka::KafkaSinkConfig>),
    /// One JetStream message per hit, acknowledged by the stream.
    Nats(Box<nats::NatsSinkConfig>),
}

impl SinkConfig {
    /// The hit format this sink writes.
    pub fn format(&self) -> HitFormat {
        match self {
            SinkConfig::Stdout(c) => c.format,
            SinkConfig::File(c) => c.format,
            SinkConfig::Http(c) => c.format,
            SinkConfig::Kafka(c) => c.format,
            SinkConfig::Nats(c) => c.format,
        }
    }

    /// Checks the sink's own settings (keys relative to its table).
    ///
    /// # Errors
    /// The first setting it cannot run with.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SinkConfig::Http(c) => c.validate(),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Nats(c) => c.validate(),
            SinkConfig::Stdout(_) | SinkConfig::File(_) => Ok(()),
        }
    }
}

/// Opens the sink (a file sink fails here if its file cannot be opened, an
/// https sink if its certificates cannot be read) and spawns its driver.
/// `reopen` ticks on SIGUSR1.
///
/// # Errors
/// The sink cannot be opened.
pub async fn start(
    name: &str,
    config: &SinkConfig,
    metrics: Arc<Metrics>,
    reopen: watch::Receiver<u64>,
) -> std::io::Result<(mpsc::Sender<Arc<HitBatch>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(SINK_QUEUE);
    let name: Arc<str> = Arc::from(name);
    let inputs = driver::SinkInputs {
        name: name.clone(),
        format: config.format(),
        batches: rx,
        reopen,
        metrics,
    };
    // Opening is per sink; the loop that drives every writer is one.
    let task = match config {
        SinkConfig::Stdout(_) => {
            driver::spawn(inputs, stdout::StdoutWriter::new(), Default::default())
        }
        SinkConfig::File(c) => {
            let writer = file::FileWriter::open(name, c.path.clone()).await?;
            driver::spawn(inputs, writer, Default::default())
        }
        SinkConfig::Http(c) => {
            let writer = http::HttpWriter::new(name, c).map_err(std::io::Error::other)?;
            driver::spawn(inputs, writer, c.driver_settings())
        }
        SinkConfig::Kafka(c) => {
            let writer = kafka::KafkaWriter::new(name, c, inputs.metrics.clone())
                .map_err(std::io::Error::other)?;
            driver::spawn(inputs, writer, c.driver_settings())
        }
        SinkConfig::Nats(c) => {
            let writer = nats::NatsWriter::new(name, c, inputs.metrics.clone())
                .await
                .map_err(std::io::Error::other)?;
            driver::spawn(inputs, writer, c.driver_settings())
        }
    };
    Ok((tx, task))
}
