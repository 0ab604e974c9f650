//! Hits to NATS JetStream: one message per hit, published with JetStream
//! acknowledgements (the hit counts as written when the stream has stored
//! it). A hit from a broker source carries a `Nats-Msg-Id` derived from the
//! source message, the line and the indicator, so a redelivered source
//! message does not store the same hit twice within the stream's
//! duplicate window.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use serde::Deserialize;

use super::driver::{DriverSettings, HitWriter, Outcome, PendingHit};
use super::template::NameTemplate;
use crate::hit::HitFormat;
use crate::metrics::Metrics;
use crate::nats::{subject_char, subject_safe, Connection, NatsAuth};
use crate::settings::{in_range, Invalid, TlsSettings};

/// `[sinks.NAME] type = "nats"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://host:port`, several separated by commas.
    pub url: String,
    /// The subject; `{type}` and `{feed}` are replaced per hit. A stream
    /// must take it.
    pub subject: String,
    #[serde(default)]
    pub format: HitFormat,
    /// How long one write (up to 10,000 hits) waits for the stream's
    /// acknowledgements; those not in by then are published again.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// Hits held while the server is unreachable; past this, backpressure.
    #[serde(default = "default_buffer_max_events")]
    pub buffer_max_events: usize,
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: usize,
    #[serde(default)]
    pub auth: NatsAuth,
    pub tls: Option<TlsSettings>,
}

fn default_ack_timeout_secs() -> u64 {
    10
}
fn default_buffer_max_events() -> usize {
    100_000
}
fn default_buffer_max_bytes() -> usize {
    64 << 20
}

impl NatsSinkConfig {
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
        NameTemplate::parse(&self.subject, subject_char).map_err(|e| Invalid::new("subject", e))?;
        in_range("ack_timeout_secs", self.ack_timeout_secs, 1, 3_600)?;
        in_range("buffer_max_events", self.buffer_max_events, 1, 10_000_000)?;
        in_range("buffer_max_bytes", self.buffer_max_bytes, 1, 1 << 34)
    }

    pub(crate) fn driver_settings(&self) -> DriverSettings {
        DriverSettings::per_message(self.buffer_max_events, self.buffer_max_bytes)
    }
}

/// Publishes hits to JetStream.
pub struct NatsWriter {
    js: jetstream::Context,
    subject: NameTemplate,
    /// The longest one write waits for its acknowledgements.
    ack_timeout: std::time::Duration,
    publish: prometheus::Histogram,
    in_flight: prometheus::IntGauge,
}

impl NatsWriter {
    /// Connects (in the background when the server is not up yet).
    ///
    /// # Errors
    /// A secret, creds or TLS file that cannot be read.
    pub async fn new(
        name: Arc<str>,
        config: &NatsSinkConfig,
        metrics: Arc<Metrics>,
    ) -> Result<NatsWriter, String> {
        let subject = NameTemplate::parse(&config.subject, subject_char)?;
        // The driver's write outcomes say whether the sink is up.
        let client = config
            .connection()
            .connect(name.clone(), |_, _, _| {}, metrics.clone())
            .await?;
        let mut js = jetstream::new(client);
        js.set_timeout(std::time::Duration::from_secs(config.ack_timeout_secs));
        Ok(NatsWriter {
            js,
            subject,
            ack_timeout: std::time::Duration::from_secs(config.ack_timeout_secs),
            publish: metrics.sink_publish.with_label_values(&[&*name]),
            in_flight: metrics.sink_in_flight.with_label_values(&[&*name]),
        })
    }
}

/// Publishes awaiting their acknowledgement, at most.
const ACK_WINDOW: usize = 1024;

impl NatsWriter {
    /// Awaits hit `i`'s acknowledgement, recording the outcome.
    async fn settle(
        &self,
        i: usize,
        ack: jetstream::context::PublishAckFuture,
        started: Instant,
        outcome: &mut Outcome,
    ) {
        // One deadline for the whole write: when the connection drops, the
        // acks in flight never come, and waiting out each one's own
        // timeout in turn would take hours.
        let deadline = tokio::time::Instant::from_std(started) + self.ack_timeout;
        match tokio::time::timeout_at(deadline, ack.into_future()).await {
            Ok(Ok(_)) => self.publish.observe(started.elapsed().as_secs_f64()),
            Ok(Err(e)) => {
                outcome.retry.push(i);
                outcome.why.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                outcome.retry.push(i);
                outcome
                    .why
                    .get_or_insert_with(|| "no acknowledgement in time".into());
            }
        }
    }
}

impl HitWriter for NatsWriter {
    async fn write(&mut self, hits: &[PendingHit], format: HitFormat) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::written();
        // Acks awaited in a sliding window: async-nats holds at most 5,000
        // unacknowledged publishes and waits for room, so publishing a whole
        // write before awaiting any ack would wait forever.
        let mut acks = std::collections::VecDeque::with_capacity(ACK_WINDOW);
        for (i, hit) in hits.iter().enumerate() {
            if acks.len() >= ACK_WINDOW {
                let (j, ack) = acks.pop_front().expect("a full window");
                self.settle(j, ack, started, &mut outcome).await;
            }
            let meta = hit.meta();
            let subject = match self.subject.fixed() {
                Some(s) => s.to_owned(),
                None => self
                    .subject
                    .render(meta.kind.as_str(), &meta.feed, subject_safe),
            };
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &meta.id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let payload = bytes::Bytes::copy_from_slice(hit.document(format));
            match self
                .js
                .publish_with_headers(subject, headers, payload)
                .await
            {
                Ok(ack) => acks.push_back((i, ack)),
                Err(e) => {
                    outcome.why.get_or_insert_with(|| e.to_string());
                    outcome.retry.extend(i..hits.len());
                    break;
                }
            }
            self.in_flight.set(acks.len() as i64);
        }
        for (i, ack) in acks {
            self.settle(i, ack, started, &mut outcome).await;
        }
        self.in_flight.set(0);
        outcome.retry.sort_unstable();
        outcome
    }
}
