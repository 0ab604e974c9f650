//! Hits to Kafka: one record per hit, in the sink's format, from an
//! idempotent producer with `acks=all`. A hit counts as written when its
//! delivery report says the brokers have it; a failed delivery goes back to
//! the driver, which retries it with backoff and, past its buffer, pushes
//! back to the sources (which then stop committing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};
use serde::Deserialize;

use super::driver::{DriverSettings, HitWriter, Outcome, PendingHit};
use super::template::NameTemplate;
use crate::hit::HitFormat;
use crate::kafka::{topic_char, topic_safe, Connection, KafkaSasl, KafkaTls};
use crate::metrics::Metrics;
use crate::settings::{in_range, Invalid};

/// `[sinks.NAME] type = "kafka"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    /// The topic; `{type}` and `{feed}` are replaced per hit.
    pub topic: String,
    #[serde(default)]
    pub format: HitFormat,
    /// The record key, which picks the partition.
    #[serde(default)]
    pub key: RecordKey,
    pub client_id: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka keeps trying to deliver one record before
    /// reporting it failed (the driver then retries it).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Hits held while the brokers are unreachable; past this, backpressure.
    #[serde(default = "default_buffer_max_events")]
    pub buffer_max_events: usize,
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: usize,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    /// Any other librdkafka producer property, passed through.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// `key`: what a hit's record is keyed by.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordKey {
    /// The indicator's value: every hit of one indicator in one partition.
    #[default]
    Indicator,
    /// The line: the hits of one line together.
    Line,
    /// No key: records spread over partitions.
    None,
}

/// `compression` of the records. (zstd is not built in: its C library
/// would double the build's C compile time for a small gain over lz4.)
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_buffer_max_events() -> usize {
    100_000
}
fn default_buffer_max_bytes() -> usize {
    64 << 20
}

impl KafkaSinkConfig {
    pub(crate) fn connection(&self) -> Connection<'_> {
        Connection {
            brokers: &self.brokers,
            client_id: self.client_id.as_deref(),
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            librdkafka: &self.librdkafka,
        }
    }

    /// # Errors
    /// The first setting that is wrong, by its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.connection().validate()?;
        NameTemplate::parse(&self.topic, topic_char).map_err(|e| Invalid::new("topic", e))?;
        in_range(
            "delivery_timeout_ms",
            self.delivery_timeout_ms,
            1_000,
            3_600_000,
        )?;
        in_range("buffer_max_events", self.buffer_max_events, 1, 10_000_000)?;
        in_range("buffer_max_bytes", self.buffer_max_bytes, 1, 1 << 34)
    }

    pub(crate) fn driver_settings(&self) -> DriverSettings {
        DriverSettings::per_message(self.buffer_max_events, self.buffer_max_bytes)
    }

    /// The producer's librdkafka configuration.
    ///
    /// # Errors
    /// A secret that cannot be read.
    pub(crate) fn client_config(&self) -> Result<rdkafka::ClientConfig, String> {
        let mut c = self.connection().client_config()?;
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", self.compression.as_str())
            .set("delivery.timeout.ms", self.delivery_timeout_ms.to_string());
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// The producer's context: statistics give the queue depth and whether a
/// broker is reachable.
struct SinkContext {
    name: Arc<str>,
    metrics: Arc<Metrics>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(&self.name, level, fac, log_message);
    }

    fn stats(&self, stats: Statistics) {
        self.metrics
            .sink_in_flight
            .with_label_values(&[&*self.name])
            .set(stats.msg_cnt as i64);
    }
}

/// Writes hits as Kafka records.
pub struct KafkaWriter {
    name: Arc<str>,
    producer: FutureProducer<SinkContext>,
    /// To make the producer again after a fatal error.
    client: rdkafka::ClientConfig,
    metrics: Arc<Metrics>,
    topic: NameTemplate,
    key: RecordKey,
    publish: prometheus::Histogram,
}

impl KafkaWriter {
    /// Creates the producer; it connects in the background.
    ///
    /// # Errors
    /// A secret that cannot be read, or a configuration librdkafka refuses.
    pub fn new(
        name: Arc<str>,
        config: &KafkaSinkConfig,
        metrics: Arc<Metrics>,
    ) -> Result<KafkaWriter, String> {
        let topic = NameTemplate::parse(&config.topic, topic_char)?;
        let client = config.client_config()?;
        let producer = producer(&client, &name, &metrics)?;
        Ok(KafkaWriter {
            publish: metrics.sink_publish.with_label_values(&[&*name]),
            name,
            producer,
            client,
            metrics,
            topic,
            key: config.key,
        })
    }

    /// An idempotent producer that hit a fatal error (the broker lost its
    /// sequence state, as when it restarts without its data) refuses every
    /// record from then on: it is made anew, and the hits it failed are
    /// retried by the driver (duplicates are possible, losses are not).
    ///
    /// So is one whose every delivery of a write timed out: after a broker
    /// restart librdkafka can keep a stale view of the topic (or wait for a
    /// producer id it will not get) and time out forever.
    fn renew_if_stuck(&mut self, all_timed_out: bool) {
        let why = match self.producer.client().fatal_error() {
            Some((code, why)) => format!("fatal error {code:?}: {why}"),
            None if all_timed_out => "every delivery of a write timed out".to_owned(),
            None => return,
        };
        tracing::warn!(sink = %self.name, reason = %why, "making a new Kafka producer");
        match producer(&self.client, &self.name, &self.metrics) {
            Ok(p) => self.producer = p,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot make a new Kafka producer")
            }
        }
    }
}

fn producer(
    client: &rdkafka::ClientConfig,
    name: &Arc<str>,
    metrics: &Arc<Metrics>,
) -> Result<FutureProducer<SinkContext>, String> {
    client
        .create_with_context(SinkContext {
            name: name.clone(),
            metrics: metrics.clone(),
        })
        .map_err(|e| format!("Kafka producer: {e}"))
}

impl HitWriter for KafkaWriter {
    async fn write(&mut self, hits: &[PendingHit], format: HitFormat) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::written();
        let mut deliveries = Vec::with_capacity(hits.len());
        for (i, hit) in hits.iter().enumerate() {
            let meta = hit.meta();
            let topic = match self.topic.fixed() {
                Some(t) => std::borrow::Cow::Borrowed(t),
                None => self
                    .topic
                    .render(meta.kind.as_str(), &meta.feed, topic_safe)
                    .into(),
            };
            let key: Option<&[u8]> = match self.key {
                RecordKey::Indicator => Some(meta.value.as_bytes()),
                RecordKey::Line => Some(hit.line()),
                RecordKey::None => None,
            };
            let mut record = FutureRecord::<[u8], [u8]>::to(&topic).payload(hit.document(format));
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((i, delivery)),
                // The local queue is full: the rest waits for the retry.
                Err((e, _)) => {
                    outcome.why.get_or_insert_with(|| e.to_string());
                    outcome.retry.extend(i..hits.len());
                    break;
                }
            }
        }
        let mut timed_out = 0;
        for (i, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => self.publish.observe(started.elapsed().as_secs_f64()),
                Ok(Err((e, _))) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                        timed_out += 1;
                    }
                    if is_permanent(&e) {
                        outcome.rejected.push(i);
                    } else {
                        outcome.retry.push(i);
                    }
                    outcome.why.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    outcome.retry.push(i);
                    outcome.why.get_or_insert_with(|| "producer closed".into());
                }
            }
        }
        outcome.retry.sort_unstable();
        if !outcome.retry.is_empty() {
            self.renew_if_stuck(timed_out == hits.len());
        }
        if outcome.why.is_some() {
            tracing::debug!(sink = %self.name, retry = outcome.retry.len(), rejected = outcome.rejected.len(), "Kafka deliveries failed");
        }
        outcome
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        // Every hit was already delivered or handed back; nothing to flush
        // but librdkafka's own requests.
        let _ = self.producer.flush(std::time::Duration::from_secs(5));
    }
}

/// A delivery error no retry can mend: the record itself is refused.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}
