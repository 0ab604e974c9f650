//! Kafka source: a consumer in a group (every instance naming the same
//! group shares the topics' partitions), each record one or more lines.
//!
//! At-least-once: offsets are committed only for lines whose hits every
//! sink has accepted. Each batch sent into the pipeline carries the next
//! offset of every partition it holds lines of; the [`AckTracker`] yields
//! acknowledged batches in send order, so a commit never passes a batch
//! still in flight even when later batches finish first. Commits only move
//! forward, and only for partitions still assigned: when a rebalance
//! revokes a partition, what was acknowledged is committed at once and the
//! batches in flight for it are abandoned (their lines will be read again
//! by the next owner: duplicates, never a gap).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::acks::AckTracker;
use super::{send_tracked, shutdown_signalled, SourceContext};
use crate::hit::Origin;
use crate::kafka::{Connection, KafkaSasl, KafkaTls};
use crate::metrics::Metrics;
use crate::settings::{in_range, Invalid};

/// `[sources.NAME] type = "kafka"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap list, `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group shared by every instance that should split the topics.
    pub group: String,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
    pub client_id: Option<String>,
    /// Where a group with no committed offset starts.
    #[serde(default)]
    pub start: StartAt,
    /// How long the group waits for a silent member before giving its
    /// partitions to others.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Most time between two commits while lines are acknowledged.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a batch of fewer than `engine.batch_lines` lines waits for
    /// more records before it is matched.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    /// Any other librdkafka consumer property, passed through.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// `start`: where to begin without a committed offset.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The oldest record kept (nothing already in the topic is missed).
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_commit_interval_ms() -> u64 {
    1_000
}
fn default_linger_ms() -> u64 {
    5
}

impl KafkaSourceConfig {
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
        if self.topics.is_empty() || self.topics.iter().any(|t| t.is_empty()) {
            return Err(Invalid::new("topics", "at least one topic name is needed"));
        }
        if self.group.is_empty() {
            return Err(Invalid::new("group", "a consumer group name is needed"));
        }
        in_range(
            "session_timeout_ms",
            self.session_timeout_ms,
            1_000,
            3_600_000,
        )?;
        in_range("commit_interval_ms", self.commit_interval_ms, 0, 3_600_000)?;
        in_range("linger_ms", self.linger_ms, 0, 60_000)
    }

    /// The consumer's librdkafka configuration.
    ///
    /// # Errors
    /// A secret that cannot be read.
    pub(crate) fn client_config(&self) -> Result<rdkafka::ClientConfig, String> {
        let mut c = self.connection().client_config()?;
        c.set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "auto.offset.reset",
                match self.start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            );
        // What librdkafka prefetches while the pipeline pushes back: bounded
        // well below its 64 MiB default per partition set.
        if !self.librdkafka.contains_key("queued.max.messages.kbytes") {
            c.set("queued.max.messages.kbytes", "16384");
        }
        // A broker that holds an empty fetch for the whole wait (rather than
        // answering when records arrive) adds up to this much latency.
        if !self.librdkafka.contains_key("fetch.wait.max.ms") {
            c.set("fetch.wait.max.ms", "100");
        }
        // A topic that appears (or comes back with a restarted broker) is
        // noticed within seconds, not librdkafka's default 5 minutes.
        if !self
            .librdkafka
            .contains_key("topic.metadata.refresh.interval.ms")
        {
            c.set("topic.metadata.refresh.interval.ms", "10000");
        }
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// A partition: topic and number.
type Partition = (Arc<str>, i32);

/// What the consumer's callbacks and the source task share.
struct Shared {
    name: Arc<str>,
    metrics: Arc<Metrics>,
    /// Partitions assigned now.
    assigned: Mutex<std::collections::HashSet<Partition>>,
    /// Per partition, the next offset acknowledged and not yet committed
    /// (committed at a revocation, or by the task).
    acked: Mutex<HashMap<Partition, i64>>,
    /// Per partition, the highest offset committed: commits only go forward.
    committed: Mutex<HashMap<Partition, i64>>,
}

impl Shared {
    /// Commits what was acknowledged for `only` (or every assigned
    /// partition), forward only.
    fn commit<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
        only: Option<&TopicPartitionList>,
        mode: CommitMode,
    ) {
        let assigned = self.assigned.lock().expect("assigned");
        let mut acked = self.acked.lock().expect("acked");
        let mut committed = self.committed.lock().expect("committed");
        let mut list = TopicPartitionList::new();
        let mut done = Vec::new();
        for (p, &offset) in acked.iter() {
            let wanted = only.is_none_or(|l| l.find_partition(&p.0, p.1).is_some());
            if !wanted || !assigned.contains(p) {
                continue;
            }
            done.push(p.clone());
            if committed.get(p).is_some_and(|&c| c >= offset) {
                continue;
            }
            let _ = list.add_partition_offset(&p.0, p.1, Offset::Offset(offset));
            committed.insert(p.clone(), offset);
        }
        for p in done {
            acked.remove(&p);
        }
        drop((assigned, acked, committed));
        if list.count() == 0 {
            return;
        }
        let result = match consumer.commit(&list, mode) {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "offset commit failed; the lines after the last commit will be read again");
                "failed"
            }
        };
        self.metrics
            .source_commits
            .with_label_values(&[&self.name, result])
            .inc();
    }
}

/// The consumer's context: rebalances, statistics (lag, broker state) and
/// errors.
struct KafkaContext(Arc<Shared>);

impl ClientContext for KafkaContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log(&self.0.name, level, fac, log_message);
    }

    fn stats(&self, stats: Statistics) {
        let s = &self.0;
        for (topic, t) in &stats.topics {
            for (n, p) in &t.partitions {
                if *n < 0 || p.consumer_lag < 0 {
                    continue;
                }
                s.metrics
                    .source_lag
                    .with_label_values(&[&*s.name, format!("{topic}/{n}").as_str()])
                    .set(p.consumer_lag);
            }
        }
        let up = crate::kafka::any_broker_up(&stats);
        s.metrics.set_source_down(
            &s.name,
            (!up).then(|| "no Kafka broker reachable".to_owned()),
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let s = &self.0;
        if error.rdkafka_error_code() == Some(C::AllBrokersDown) {
            s.metrics
                .set_source_down(&s.name, Some("no Kafka broker reachable".to_owned()));
        }
        tracing::warn!(source = %s.name, error = %error, reason, "Kafka consumer error");
    }
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let s = &self.0;
        if let Rebalance::Revoke(list) = rebalance {
            // What is acknowledged is committed before the partitions go;
            // batches still in flight for them are abandoned.
            s.commit(consumer, Some(list), CommitMode::Sync);
            let mut assigned = s.assigned.lock().expect("assigned");
            let mut committed = s.committed.lock().expect("committed");
            for e in list.elements() {
                let p = (Arc::from(e.topic()), e.partition());
                assigned.remove(&p);
                committed.remove(&p);
                s.metrics
                    .source_lag
                    .with_label_values(&[
                        &*s.name,
                        format!("{}/{}", e.topic(), e.partition()).as_str(),
                    ])
                    .set(0);
            }
            s.metrics
                .source_partitions
                .with_label_values(&[&*s.name])
                .set(assigned.len() as i64);
            tracing::info!(source = %s.name, partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let s = &self.0;
        match rebalance {
            Rebalance::Assign(list) => {
                let mut assigned = s.assigned.lock().expect("assigned");
                for e in list.elements() {
                    assigned.insert((Arc::from(e.topic()), e.partition()));
                }
                s.metrics
                    .source_partitions
                    .with_label_values(&[&*s.name])
                    .set(assigned.len() as i64);
                tracing::info!(source = %s.name, partitions = list.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(source = %s.name, error = %e, "rebalance failed")
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Creates the consumer and subscribes (no connection is awaited: the
/// brokers may come later), then spawns the task.
///
/// # Errors
/// A secret that cannot be read, or a configuration librdkafka refuses.
pub async fn start(
    name: Arc<str>,
    config: KafkaSourceConfig,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let shared = Arc::new(Shared {
        name: name.clone(),
        metrics: ctx.metrics.clone(),
        assigned: Default::default(),
        acked: Default::default(),
        committed: Default::default(),
    });
    let client = config.client_config().map_err(std::io::Error::other)?;
    let consumer: StreamConsumer<KafkaContext> = client
        .create_with_context(KafkaContext(shared.clone()))
        .map_err(|e| std::io::Error::other(format!("Kafka consumer: {e}")))?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| std::io::Error::other(format!("subscribing to {topics:?}: {e}")))?;
    tracing::info!(source = %name, brokers = %config.brokers, topics = ?config.topics, group = %config.group, "Kafka consumer started");
    Ok(tokio::spawn(consume(name, config, consumer, shared, ctx)))
}

/// Next offsets of the partitions a batch holds lines of.
type Positions = Vec<(Partition, i64)>;

async fn consume(
    name: Arc<str>,
    config: KafkaSourceConfig,
    consumer: StreamConsumer<KafkaContext>,
    shared: Arc<Shared>,
    ctx: SourceContext,
) {
    let mut shutdown = ctx.shutdown.clone();
    let mut batcher = ctx.batcher(&name);
    let mut tracker: AckTracker<Positions> = AckTracker::default();
    let mut positions: Positions = Vec::new();
    let linger = Duration::from_millis(config.linger_ms);
    let commit_every = Duration::from_millis(config.commit_interval_ms);
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut commit_at: Option<tokio::time::Instant> = None;
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let errors = ctx
        .metrics
        .source_errors
        .with_label_values(&[&name, "consume"]);
    loop {
        tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break,
            () = tracker.oldest_acknowledged(), if tracker.in_flight() > 0 => {
                record_acked(&shared, tracker.acknowledged_all());
                if commit_at.is_none() {
                    commit_at = Some(tokio::time::Instant::now() + commit_every);
                }
            }
            () = tokio::time::sleep_until(commit_at.unwrap_or_else(tokio::time::Instant::now)), if commit_at.is_some() => {
                commit_at = None;
                shared.commit(&consumer, None, CommitMode::Async);
            }
            () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                flush_at = None;
                if !send_tracked(&mut batcher, &mut tracker, &mut positions, &ctx.queue).await {
                    return;
                }
            }
            m = consumer.recv() => match m {
                Ok(m) => {
                    ctx.metrics.set_source_down(&name, None);
                    let topic = match topics.get(m.topic()) {
                        Some(t) => t.clone(),
                        None => {
                            let t: Arc<str> = Arc::from(m.topic());
                            topics.insert(m.topic().to_owned(), t.clone());
                            t
                        }
                    };
                    let (partition, offset) = (m.partition(), m.offset());
                    batcher.push_message(
                        Origin::Kafka { topic: topic.clone(), partition, offset },
                        m.payload().unwrap_or_default(),
                    );
                    let p = (topic, partition);
                    match positions.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, next)) => *next = offset + 1,
                        None => positions.push((p, offset + 1)),
                    }
                    if batcher.is_full() {
                        flush_at = None;
                        if !send_tracked(&mut batcher, &mut tracker, &mut positions, &ctx.queue).await {
                            return;
                        }
                    } else if flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + linger);
                    }
                }
                Err(e) => {
                    errors.inc();
                    tracing::warn!(source = %name, error = %e, "Kafka consume error");
                }
            },
        }
    }
    // Shutdown: what was read is matched, and its offsets committed once
    // every sink has written its hits (within the grace period).
    if send_tracked(&mut batcher, &mut tracker, &mut positions, &ctx.queue).await {
        record_acked(&shared, tracker.drain_all().await);
    }
    shared.commit(&consumer, None, CommitMode::Sync);
    tracing::info!(source = %name, "Kafka consumer stopped; offsets committed");
}

/// Folds acknowledged batches' positions into what is to be committed.
fn record_acked(shared: &Shared, done: Vec<Positions>) {
    if done.is_empty() {
        return;
    }
    let mut acked = shared.acked.lock().expect("acked");
    for (p, next) in done.into_iter().flatten() {
        let e = acked.entry(p).or_insert(next);
        *e = (*e).max(next);
    }
}
