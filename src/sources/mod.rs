//! Sources: where log lines come from. Each is a tokio task that reads
//! bytes, cuts them into lines with a [`LineBatcher`] and sends batches into
//! the pipeline's bounded queue, waiting when it is full (backpressure).
//! Every source stops reading when shutdown is signalled, sends what it has,
//! and ends.

pub mod acks;
mod conns;
pub(crate) mod file;
mod framing;
pub mod kafka;
pub mod nats;
mod net;
pub(crate) mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use serde::Deserialize;

use crate::context::LineFormat;
use crate::metrics::Metrics;
use crate::pipeline::{EngineConfig, LineBatcher, LineQueue};
use crate::settings::Invalid;
pub use file::FileSourceConfig;
pub use framing::Framing;
pub use net::{TcpConfig, UdpConfig, UnixConfig};

/// Where log lines come from: a closed set, each variant holding its
/// component's own settings (defined beside the component). Every source
/// is named in hits as `input`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// Standard input, read to its end.
    Stdin(StdinConfig),
    /// A file followed like `tail -F`.
    File(FileSourceConfig),
    /// TCP, newline-framed or RFC 6587 octet-counted.
    Tcp(TcpConfig),
    /// UDP, one or more lines per datagram.
    Udp(UdpConfig),
    /// A Unix socket, stream or datagram.
    Unix(UnixConfig),
    /// A Kafka consumer group: records of one or more lines.
    Kafka(Box<kafka::KafkaSourceConfig>),
    /// A NATS JetStream durable pull consumer: messages of one or more lines.
    Nats(Box<nats::NatsSourceConfig>),
}

/// `[sources.NAME] type = "stdin"`: no settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
}

impl SourceConfig {
    /// Checks the source's own settings (keys relative to its table).
    ///
    /// # Errors
    /// The first setting it cannot run with.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SourceConfig::Tcp(c) => c.validate(),
            SourceConfig::Unix(c) => c.validate(),
            SourceConfig::Udp(c) => c.validate(),
            SourceConfig::Kafka(c) => c.validate(),
            SourceConfig::Nats(c) => c.validate(),
            SourceConfig::Stdin(_) | SourceConfig::File(_) => Ok(()),
        }
    }

    /// How the source's lines are read for context.
    pub fn parse(&self) -> LineFormat {
        match self {
            SourceConfig::Stdin(c) => c.parse,
            SourceConfig::File(c) => c.parse,
            SourceConfig::Tcp(c) => c.parse,
            SourceConfig::Udp(c) => c.parse,
            SourceConfig::Unix(c) => c.parse,
            SourceConfig::Kafka(c) => c.parse,
            SourceConfig::Nats(c) => c.parse,
        }
    }
}

/// What every source gets.
#[derive(Clone)]
pub struct SourceContext {
    pub queue: LineQueue,
    pub engine: EngineConfig,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
    pub state_dir: Option<PathBuf>,
    /// How this source's lines are read for context (set per source).
    pub format: LineFormat,
}

impl SourceContext {
    pub fn batcher(&self, input: &Arc<str>) -> LineBatcher {
        LineBatcher::new(input.clone(), &self.engine, self.metrics.clone()).with_format(self.format)
    }
}

/// Resolves when shutdown has been signalled (now or before).
pub async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds the source (so a bad address fails at start, naming the source)
/// and spawns its task.
///
/// # Errors
/// The socket cannot be bound or the file's directory read.
pub async fn start(
    name: &str,
    config: &SourceConfig,
    mut ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let name: Arc<str> = Arc::from(name);
    ctx.format = config.parse();
    Ok(match config.clone() {
        SourceConfig::Stdin(_) => tokio::spawn(async move {
            let mut shutdown = ctx.shutdown.clone();
            let batcher = ctx.batcher(&name);
            read_stream(
                tokio::io::stdin(),
                batcher,
                Framing::Newline,
                &ctx.queue,
                &mut shutdown,
                None,
            )
            .await;
        }),
        SourceConfig::Tcp(c) => net::tcp(name, c, ctx).await?,
        SourceConfig::Udp(c) => net::udp(name, c, ctx).await?,
        SourceConfig::Unix(c) => net::unix(name, c, ctx).await?,
        SourceConfig::Kafka(c) => kafka::start(name, *c, ctx).await?,
        SourceConfig::Nats(c) => nats::start(name, *c, ctx).await?,
        SourceConfig::File(c) => {
            let state_dir = ctx.state_dir.clone().ok_or_else(|| {
                std::io::Error::other("a file source needs `state_dir` to keep its offset")
            })?;
            file::start(name, c, state_dir, ctx).await?
        }
    })
}

/// Sends the batch in progress with an ack standing for `positions` (what
/// the source commits once the batch's hits are written). Positions with no
/// line to send (empty records) are acknowledged in their turn.
/// False when the pipeline has shut down.
pub(crate) async fn send_tracked<P>(
    batcher: &mut LineBatcher,
    tracker: &mut acks::AckTracker<Vec<P>>,
    positions: &mut Vec<P>,
    queue: &LineQueue,
) -> bool {
    let Some(mut batch) = batcher.take() else {
        if !positions.is_empty() {
            drop(tracker.track(std::mem::take(positions)));
        }
        return true;
    };
    batch.ack = Some(tracker.track(std::mem::take(positions)));
    tracing::debug!(
        lines = batch.lines.len(),
        in_flight = tracker.in_flight(),
        "sending a tracked batch"
    );
    queue.send(batch).await
}

/// Reads a byte stream to its end (or shutdown), batching its lines.
///
/// A network connection also ends when it sends nothing for
/// `guard.idle_timeout`, or when it is evicted for a new one; either way
/// what it sent is batched, its last partial line too.
pub async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    mut batcher: LineBatcher,
    framing: Framing,
    queue: &LineQueue,
    shutdown: &mut watch::Receiver<bool>,
    guard: Option<StreamGuard<'_>>,
) -> StreamEnd {
    let mut buf = vec![0u8; 256 * 1024];
    let mut framer = framing::Framer::new(framing);
    let idle = guard.map_or(std::time::Duration::MAX, |g| g.idle_timeout);
    let mut end = StreamEnd::Closed;
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown_signalled(shutdown) => break,
            _ = async { guard.expect("guarded").activity.evicted().await }, if guard.is_some() => {
                end = StreamEnd::Evicted;
                break;
            }
            _ = tokio::time::sleep(idle), if guard.is_some() => {
                end = StreamEnd::IdleTimeout;
                break;
            }
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        if let Some(g) = guard {
            g.activity.touch();
        }
        framer.feed(&buf[..n], &mut batcher);
        // While more is already waiting, read it into the same batch (up
        // to a full one); send when the stream pauses. A busy stream makes
        // full batches (fewer hand-offs to the matchers), and a trickle is
        // still sent line by line without waiting for more.
        let mut waiting = true;
        while waiting && !batcher.is_full() {
            match reader.read(&mut buf).now_or_never() {
                Some(Ok(n)) if n > 0 => {
                    if let Some(g) = guard {
                        g.activity.touch();
                    }
                    framer.feed(&buf[..n], &mut batcher);
                }
                // End of stream or an error: the next read says so again.
                Some(_) | None => waiting = false,
            }
        }
        if !queue.flush(&mut batcher).await {
            return end;
        }
    }
    framer.finish(&mut batcher);
    if let Some(b) = batcher.finish() {
        queue.send(b).await;
    }
    end
}

/// What guards a network connection: its activity in the registry, and
/// how long it may stay silent.
#[derive(Clone, Copy)]
pub struct StreamGuard<'a> {
    /// Touched on every read; signals eviction.
    pub activity: &'a conns::Activity,
    /// Silence longer than this closes the connection.
    pub idle_timeout: std::time::Duration,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The peer closed it, it failed, or iocd is shutting down.
    Closed,
    /// It sent nothing for the idle timeout.
    IdleTimeout,
    /// It gave way to a new connection at the limit.
    Evicted,
}
