//! NATS JetStream source: a durable pull consumer on a stream, shared by
//! every instance naming it (the server hands each message to one of
//! them), each message one or more lines.
//!
//! A message is acknowledged only once every sink has accepted the hits of
//! its lines; one not acknowledged within the consumer's ack wait (iocd
//! crashed, or a sink could not write) is delivered again. The stream is
//! the operator's; the consumer is created when missing, with explicit acks
//! and the configured filter subject.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::acks::AckTracker;
use super::{send_tracked, shutdown_signalled, SourceContext};
use crate::backoff::Backoff;
use crate::hit::Origin;
use crate::metrics::Metrics;
use crate::nats::{Connection, NatsAuth};
use crate::settings::{in_range, Invalid, TlsSettings};

/// `[sources.NAME] type = "nats"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://host:port`, several separated by commas.
    pub url: String,
    /// The JetStream stream holding the logs.
    pub stream: String,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
    /// The durable pull consumer every instance shares.
    pub consumer: String,
    /// Which of the stream's subjects the consumer takes (`logs.>`); all
    /// when unset. Used only when the consumer is created.
    pub subject: Option<String>,
    /// How long the server waits for an ack before delivering a message
    /// again. Used only when the consumer is created.
    #[serde(default = "default_ack_wait_secs")]
    pub ack_wait_secs: u64,
    /// Messages delivered and not yet acknowledged, at most (the server's
    /// bound on what one consumer holds). Used only when it is created.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// How long a batch of fewer than `engine.batch_lines` lines waits for
    /// more messages before it is matched.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    #[serde(default)]
    pub auth: NatsAuth,
    pub tls: Option<TlsSettings>,
}

fn default_ack_wait_secs() -> u64 {
    30
}
fn default_max_ack_pending() -> i64 {
    10_000
}
fn default_linger_ms() -> u64 {
    5
}

impl NatsSourceConfig {
    pub(crate) fn connection(&self) -> Connection<'_> {
        Connection {
            url: &self.url,
            auth: &self.auth,
            tls: self.tls.as_ref(),
        }
    }

    /// # Errors
    /// The first setting that is wrong, by its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.connection().validate()?;
        for (key, v) in [("stream", &self.stream), ("consumer", &self.consumer)] {
            if v.is_empty()
                || v.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
            {
                return Err(Invalid::new(key, format!("{v:?} is not a JetStream name")));
            }
        }
        in_range("ack_wait_secs", self.ack_wait_secs, 1, 86_400)?;
        in_range("max_ack_pending", self.max_ack_pending, 1, 10_000_000)?;
        in_range("linger_ms", self.linger_ms, 0, 60_000)
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.consumer.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_ack_pending: self.max_ack_pending,
            filter_subject: self.subject.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// Connects (in the background when the server is not up yet) and spawns
/// the task.
///
/// # Errors
/// A secret, creds or TLS file that cannot be read.
pub async fn start(
    name: Arc<str>,
    config: NatsSourceConfig,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let client = config
        .connection()
        .connect(name.clone(), Metrics::set_source_down, ctx.metrics.clone())
        .await
        .map_err(std::io::Error::other)?;
    tracing::info!(source = %name, url = %config.url, stream = %config.stream, consumer = %config.consumer, "NATS consumer starting");
    Ok(tokio::spawn(run(name, config, client, ctx)))
}

/// Acks of the messages whose lines a batch holds.
type Acks = Vec<jetstream::message::Acker>;

async fn run(
    name: Arc<str>,
    config: NatsSourceConfig,
    client: async_nats::Client,
    ctx: SourceContext,
) {
    let js = jetstream::new(client);
    let mut shutdown = ctx.shutdown.clone();
    let mut batcher = ctx.batcher(&name);
    let mut tracker: AckTracker<Acks> = AckTracker::default();
    let mut acks: Acks = Vec::new();
    let linger = Duration::from_millis(config.linger_ms);
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let stream_name: Arc<str> = Arc::from(config.stream.as_str());
    let lag = ctx.metrics.source_lag.with_label_values(&[
        &*name,
        format!("{}/{}", config.stream, config.consumer).as_str(),
    ]);
    let errors = ctx
        .metrics
        .source_errors
        .with_label_values(&[&*name, "consume"]);
    let commits = |result: &str| {
        ctx.metrics
            .source_commits
            .with_label_values(&[&*name, result])
    };
    let (acked_ok, acked_failed) = (commits("ok"), commits("failed"));
    'connect: loop {
        // The consumer, then its message stream; either failing (server
        // down, stream missing) is retried with backoff.
        let messages = tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break 'connect,
            m = open(&js, &config) => m,
        };
        let mut messages = match messages {
            Ok(m) => {
                backoff.reset();
                m
            }
            Err(e) => {
                errors.inc();
                ctx.metrics.set_source_down(&name, Some(e.clone()));
                let wait = backoff.next_wait();
                tracing::warn!(source = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot consume from NATS");
                tokio::select! {
                    _ = shutdown_signalled(&mut shutdown) => break 'connect,
                    () = tokio::time::sleep(wait) => continue 'connect,
                }
            }
        };
        ctx.metrics.set_source_down(&name, None);
        loop {
            tokio::select! {
                biased;
                _ = shutdown_signalled(&mut shutdown) => break 'connect,
                () = tracker.oldest_acknowledged(), if tracker.in_flight() > 0 => {
                    let done = tracker.acknowledged_all();
                    tracing::debug!(source = %name, batches = done.len(), "acknowledging");
                    for acker in done.into_iter().flatten() {
                        match acker.ack_with(AckKind::Ack).await {
                            Ok(()) => acked_ok.inc(),
                            // Delivered again after the ack wait: a duplicate, not a loss.
                            Err(_) => acked_failed.inc(),
                        }
                    }
                }
                () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                    flush_at = None;
                    if !send_tracked(&mut batcher, &mut tracker, &mut acks, &ctx.queue).await {
                        return;
                    }
                }
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        tracing::trace!(source = %name, "message");
                        let (sequence, pending) = match m.info() {
                            Ok(i) => (i.stream_sequence, i.pending),
                            Err(_) => (0, 0),
                        };
                        lag.set(pending as i64);
                        let (m, acker) = m.split();
                        batcher.push_message(
                            Origin::Nats {
                                stream: stream_name.clone(),
                                subject: Arc::from(m.subject.as_str()),
                                sequence,
                            },
                            &m.payload,
                        );
                        acks.push(acker);
                        if batcher.is_full() {
                            flush_at = None;
                            if !send_tracked(&mut batcher, &mut tracker, &mut acks, &ctx.queue).await {
                                return;
                            }
                        } else if flush_at.is_none() {
                            flush_at = Some(tokio::time::Instant::now() + linger);
                        }
                    }
                    Some(Err(e)) => {
                        // Heartbeats missed (the server went away), the
                        // consumer deleted: open it again.
                        errors.inc();
                        tracing::warn!(source = %name, error = %e, "NATS consume error; reopening the consumer");
                        continue 'connect;
                    }
                    None => continue 'connect,
                },
            }
        }
    }
    // Shutdown: what was read is matched and acknowledged once every sink
    // has written its hits (within the grace period); the rest is
    // delivered again after the ack wait.
    if send_tracked(&mut batcher, &mut tracker, &mut acks, &ctx.queue).await {
        for acker in tracker.drain_all().await.into_iter().flatten() {
            match acker.ack_with(AckKind::Ack).await {
                Ok(()) => acked_ok.inc(),
                Err(_) => acked_failed.inc(),
            }
        }
    }
    tracing::info!(source = %name, "NATS consumer stopped");
}

/// The consumer (created when missing) and its message stream.
async fn open(js: &jetstream::Context, config: &NatsSourceConfig) -> Result<pull::Stream, String> {
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| format!("stream {}: {e}", config.stream))?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&config.consumer, config.consumer_config())
        .await
        .map_err(|e| format!("consumer {}: {e}", config.consumer))?;
    consumer
        .stream()
        .max_messages_per_batch(500)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| format!("consumer {}: {e}", config.consumer))
}
