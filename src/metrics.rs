//! Prometheus metrics and the admin endpoints `/metrics`, `/live`, `/ready`.
//!
//! Names carry the `iocd_` prefix and base units; counters end in `_total`.
//! Labels are component names (sources, sinks, feeds), reasons and
//! indicator types, never indicator values or log content.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

pub struct Metrics {
    registry: Registry,
    pub lines_received: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub lines_dropped: IntCounterVec,
    pub lines_truncated: IntCounterVec,
    pub lines_scanned: IntCounter,
    pub hits: IntCounterVec,
    pub hits_dropped: IntCounterVec,
    /// Hits counted but not emitted by `[suppress]`, by type and feed.
    pub hits_suppressed: IntCounterVec,
    /// Suppression keys evicted by `max_keys` (their counts are lost).
    pub suppress_evictions: IntCounter,
    /// Compressed bytes in the retro ring.
    pub retro_bytes_stored: IntGauge,
    /// Lines not stored in the ring (its writer fell behind).
    pub retro_lines_dropped: IntCounter,
    /// Ring segment writes that failed.
    pub retro_write_errors: IntCounter,
    /// Bytes of lines a retro scan read.
    pub retro_scan_bytes: IntCounter,
    /// Hits a retro scan found.
    pub retro_hits: IntCounter,
    /// How long a retro scan took.
    pub retro_scan_seconds: Histogram,
    /// Sightings exported, by exporter.
    pub sightings_exported: IntCounterVec,
    /// Sightings not exported, by reason.
    pub sightings_withheld: IntCounterVec,
    /// Sighting bundles waiting for the TAXII server.
    pub sightings_pending: IntGauge,
    pub indicators_loaded: IntGaugeVec,
    pub feed_failures: IntCounterVec,
    pub taxii_polls: IntCounterVec,
    pub feed_fetches: IntCounterVec,
    pub taxii_last_poll: GaugeVec,
    pub feed_skipped: IntGaugeVec,
    pub feed_entries: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub reload_duration: Histogram,
    pub last_reload_success: Gauge,
    pub engine_build: Gauge,
    pub match_latency: Histogram,
    pub sink_sent: IntCounterVec,
    pub sink_failed: IntCounterVec,
    pub sink_retried: IntCounterVec,
    pub queue_depth: IntGauge,
    pub connections_open: IntGaugeVec,
    pub connections_rejected: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub source_errors: IntCounterVec,
    /// Messages in a broker not yet consumed, per partition (Kafka
    /// `topic/N`) or consumer (NATS `stream/consumer`).
    pub source_lag: IntGaugeVec,
    /// Kafka partitions assigned to a source now.
    pub source_partitions: IntGaugeVec,
    /// Kafka offset commits and NATS acks, by result.
    pub source_commits: IntCounterVec,
    /// Time from handing a hit to a broker to its acknowledgement.
    pub sink_publish: prometheus::HistogramVec,
    /// Hits handed to a broker client and not yet acknowledged.
    pub sink_in_flight: IntGaugeVec,
    sink_up: GaugeVec,
    /// Time a matcher thread spends scanning one batch.
    pub batch_scan: Histogram,
    /// Set when the first engine is built.
    pub engine_ready: AtomicBool,
    /// False once the reload task has ended before shutdown (it panicked).
    pub reloader_alive: AtomicBool,
    /// Each sink's last known state, for readiness.
    /// Per sink: (writing, its buffer full).
    sinks: Mutex<BTreeMap<String, (bool, bool)>>,
    /// Per source: what keeps it from reading (a file it cannot open).
    source_problems: Mutex<BTreeMap<String, String>>,
    /// Per source: why it cannot consume now (its broker is unreachable);
    /// a reason the daemon is not ready.
    sources_down: Mutex<BTreeMap<String, String>>,
    /// Why the engine in service is older than the feeds (a failed reload).
    stale_engine: Mutex<Option<String>>,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let latency = prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("buckets");
        let m = Metrics {
            lines_received: counter(
                &r,
                "iocd_source_lines_received_total",
                "Lines received, by source.",
                &["source"],
            ),
            bytes_received: counter(
                &r,
                "iocd_source_bytes_received_total",
                "Bytes received, by source.",
                &["source"],
            ),
            hits_suppressed: counter(
                &r,
                "iocd_hits_suppressed_total",
                "Hits counted but not emitted inside a suppression window, by indicator type and feed.",
                &["type", "feed"],
            ),
            suppress_evictions: plain_counter(
                &r,
                "iocd_suppress_evictions_total",
                "Suppression keys evicted because max_keys was reached.",
            ),
            retro_bytes_stored: {
                let g = IntGauge::new(
                    "iocd_retro_bytes_stored",
                    "Compressed bytes of lines kept in the retro-hunt ring.",
                )
                .expect("metric");
                r.register(Box::new(g.clone())).expect("register");
                g
            },
            retro_lines_dropped: plain_counter(
                &r,
                "iocd_retro_lines_dropped_total",
                "Lines not kept in the retro-hunt ring because its writer fell behind.",
            ),
            retro_write_errors: plain_counter(
                &r,
                "iocd_retro_write_errors_total",
                "Retro-hunt ring segment writes that failed.",
            ),
            retro_scan_bytes: plain_counter(
                &r,
                "iocd_retro_scan_bytes_total",
                "Bytes of stored lines read by retro scans.",
            ),
            retro_hits: plain_counter(
                &r,
                "iocd_retro_hits_total",
                "Hits found by retro scans of the ring.",
            ),
            retro_scan_seconds: {
                let h = Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "iocd_retro_scan_seconds",
                        "Time a retro scan of the ring took.",
                    )
                    .buckets(vec![0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 7200.0]),
                )
                .expect("metric");
                r.register(Box::new(h.clone())).expect("register");
                h
            },
            sightings_exported: counter(
                &r,
                "iocd_sightings_exported_total",
                "Sightings exported, by exporter (file, misp_file, taxii).",
                &["exporter"],
            ),
            sightings_withheld: counter(
                &r,
                "iocd_sightings_withheld_total",
                "Sightings not exported, by reason (tlp_red, no_pattern).",
                &["reason"],
            ),
            sightings_pending: {
                let g = IntGauge::new(
                    "iocd_sightings_pending_bundles",
                    "Sighting bundles queued in state_dir for the TAXII server.",
                )
                .expect("metric");
                r.register(Box::new(g.clone())).expect("register");
                g
            },
            hits_dropped: counter(
                &r,
                "iocd_hits_dropped_total",
                "Hits found but not emitted, by reason (max_hits_per_line).",
                &["reason"],
            ),
            lines_dropped: counter(
                &r,
                "iocd_lines_dropped_total",
                "Lines not scanned, by source and reason.",
                &["source", "reason"],
            ),
            lines_truncated: counter(
                &r,
                "iocd_lines_truncated_total",
                "Lines scanned only up to the maximum length, by source.",
                &["source"],
            ),
            lines_scanned: {
                let c = IntCounter::new(
                    "iocd_lines_scanned_total",
                    "Lines scanned against the indicators.",
                )
                .expect("valid");
                r.register(Box::new(c.clone())).expect("unique");
                c
            },
            hits: counter(
                &r,
                "iocd_hits_total",
                "Hits, by indicator type and feed.",
                &["type", "feed"],
            ),
            indicators_loaded: gauge_vec(
                &r,
                "iocd_indicators_loaded",
                "Indicators in the active engine, by feed and type.",
                &["feed", "type"],
            ),
            feed_failures: counter(
                &r,
                "iocd_feed_failures_total",
                "Feed loads that failed (last good indicators kept), by feed and reason.",
                &["feed", "reason"],
            ),
            taxii_last_poll: {
                let g = GaugeVec::new(Opts::new("iocd_taxii_last_poll_timestamp_seconds", "Unix time of a TAXII feed's last poll, by result."), &["feed", "result"]).expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            feed_skipped: gauge_vec(&r, "iocd_feed_entries_skipped", "Entries of the active feeds not loaded, by feed and reason (revoked, expired, not_yet_valid, not_for_detection, ...).", &["feed", "reason"]),
            feed_entries: gauge_vec(&r, "iocd_feed_entries", "Entries (lines, objects, attributes) read from each active feed, loaded or skipped.", &["feed"]),
            taxii_polls: counter(
                &r,
                "iocd_taxii_polls_total",
                "TAXII collection polls, by feed and result.",
                &["feed", "result"],
            ),
            feed_fetches: counter(
                &r,
                "iocd_feed_fetches_total",
                "URL feed fetches, by feed and result (changed, not_modified, refused, failure).",
                &["feed", "result"],
            ),
            reloads: counter(
                &r,
                "iocd_reloads_total",
                "Engine reloads, by result.",
                &["result"],
            ),
            reload_duration: histogram(
                &r,
                "iocd_reload_duration_seconds",
                "Time to load feeds and build a new engine.",
                prometheus::exponential_buckets(0.001, 2.0, 16).expect("buckets"),
            ),
            last_reload_success: {
                let g = Gauge::new(
                    "iocd_last_successful_reload_timestamp_seconds",
                    "Unix time of the last successful reload.",
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            engine_build: {
                let g = Gauge::new(
                    "iocd_engine_build_seconds",
                    "Time the active engine took to build.",
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            match_latency: histogram(
                &r,
                "iocd_match_latency_seconds",
                "Time from a batch of lines being read to its hits being encoded.",
                latency,
            ),
            sink_sent: counter(
                &r,
                "iocd_sink_events_sent_total",
                "Hits written, by sink.",
                &["sink"],
            ),
            sink_failed: counter(
                &r,
                "iocd_sink_events_failed_total",
                "Hits a sink could not deliver and gave up on, by sink.",
                &["sink"],
            ),
            sink_retried: counter(
                &r,
                "iocd_sink_requests_retried_total",
                "Sink requests retried, by sink.",
                &["sink"],
            ),
            queue_depth: {
                let g = IntGauge::new(
                    "iocd_queue_batches",
                    "Batches of lines waiting for a matcher thread.",
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            connections_open: gauge_vec(
                &r,
                "iocd_source_connections",
                "Open connections, by source.",
                &["source"],
            ),
            connections_rejected: counter(
                &r,
                "iocd_source_connections_rejected_total",
                "Connections refused, by source and reason (limit, per_peer).",
                &["source", "reason"],
            ),
            source_errors: counter(
                &r,
                "iocd_source_errors_total",
                "Source failures (a file that cannot be opened), by source and reason.",
                &["source", "reason"],
            ),
            connections_closed: counter(
                &r,
                "iocd_source_connections_closed_total",
                "Connections closed by iocd, by source and reason (idle_timeout, evicted).",
                &["source", "reason"],
            ),
            source_lag: gauge_vec(
                &r,
                "iocd_source_lag_messages",
                "Messages in the broker not yet consumed, by source and partition (Kafka topic/N, NATS stream/consumer).",
                &["source", "partition"],
            ),
            source_partitions: gauge_vec(
                &r,
                "iocd_source_partitions_assigned",
                "Kafka partitions this instance consumes now, by source (the group's share).",
                &["source"],
            ),
            source_commits: counter(
                &r,
                "iocd_source_commits_total",
                "Kafka offset commits and NATS message acks, by source and result (ok, failed).",
                &["source", "result"],
            ),
            sink_publish: {
                let h = prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "iocd_sink_publish_duration_seconds",
                        "Time from handing a hit to a broker to its acknowledgement, by sink.",
                    )
                    .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("buckets")),
                    &["sink"],
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            sink_in_flight: gauge_vec(
                &r,
                "iocd_sink_in_flight_messages",
                "Hits handed to a broker client and not yet acknowledged, by sink (the producer queue).",
                &["sink"],
            ),
            sink_up: {
                let g = GaugeVec::new(
                    Opts::new("iocd_sink_up", "1 when the sink's last write succeeded."),
                    &["sink"],
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            batch_scan: histogram(
                &r,
                "iocd_batch_scan_seconds",
                "Time to scan one batch of lines.",
                prometheus::exponential_buckets(0.000_01, 2.0, 18).expect("buckets"),
            ),
            engine_ready: AtomicBool::new(false),
            reloader_alive: AtomicBool::new(true),
            sinks: Mutex::new(BTreeMap::new()),
            source_problems: Mutex::new(BTreeMap::new()),
            sources_down: Mutex::new(BTreeMap::new()),
            stale_engine: Mutex::new(None),
            registry: r,
        };
        let info = IntGaugeVec::new(
            Opts::new("iocd_build_info", "Build information; the value is 1."),
            &["version"],
        )
        .expect("valid");
        m.registry.register(Box::new(info.clone())).expect("unique");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding metrics");
        out
    }

    /// Records whether a sink can write (opened its file, last request succeeded).
    pub fn set_sink_up(&self, sink: &str, up: bool) {
        self.sink_up
            .with_label_values(&[sink])
            .set(if up { 1.0 } else { 0.0 });
        self.sinks
            .lock()
            .expect("sink states")
            .entry(sink.to_owned())
            .or_insert((up, false))
            .0 = up;
    }

    /// Records why the engine in service is stale (`None`: it is current).
    pub fn set_stale_engine(&self, why: Option<String>) {
        *self.stale_engine.lock().expect("stale engine") = why;
    }

    /// Records what keeps a source from reading (`None`: nothing any more).
    pub fn set_source_problem(&self, source: &str, problem: Option<String>) {
        let mut p = self.source_problems.lock().expect("source problems");
        match problem {
            Some(what) => p.insert(source.to_owned(), what),
            None => p.remove(source),
        };
    }

    /// Records why a source cannot consume now (`None`: it can again).
    /// Unlike [`Self::set_source_problem`], this makes the daemon unready:
    /// a broker consumer that cannot consume should let its partitions go
    /// to instances that can, and an orchestrator should know.
    pub fn set_source_down(&self, source: &str, why: Option<String>) {
        let mut p = self.sources_down.lock().expect("sources down");
        match why {
            Some(what) => p.insert(source.to_owned(), what),
            None => p.remove(source),
        };
    }

    /// Records whether a sink's buffer is full, so that it takes no more
    /// hits and input is being held back.
    pub fn set_sink_full(&self, sink: &str, full: bool) {
        self.sinks
            .lock()
            .expect("sink states")
            .entry(sink.to_owned())
            .or_insert((true, full))
            .1 = full;
    }

    /// Readiness: why the daemon is not ready (empty when ready; the body
    /// of a 503 from `/ready`), and what a ready daemon should still say.
    ///
    /// Ready means "accepting input without loss": a sink that is down but
    /// still has buffer room is a note, not a reason, so a SIEM outage does
    /// not pull every collector out of its Service at once; a full buffer
    /// (input held back) is a reason.
    pub fn readiness(&self) -> (Vec<String>, Vec<String>) {
        let (mut why, mut notes) = (Vec::new(), Vec::new());
        if !self.engine_ready.load(Ordering::Acquire) {
            why.push("no engine built yet".to_owned());
        }
        if !self.reloader_alive.load(Ordering::Acquire) {
            why.push("the reload task has died: feed changes are no longer loaded".to_owned());
        }
        for (sink, (up, full)) in self.sinks.lock().expect("sink states").iter() {
            match (up, full) {
                (_, true) => why.push(format!(
                    "sink {sink}: its buffer is full; input is held back"
                )),
                (false, false) => notes.push(format!("sink {sink} is down; buffering")),
                (true, false) => {}
            }
        }
        for (source, what) in self.sources_down.lock().expect("sources down").iter() {
            why.push(format!("source {source}: {what}"));
        }
        for (source, what) in self.source_problems.lock().expect("source problems").iter() {
            notes.push(format!("source {source}: {what}"));
        }
        // Still matching, with what loaded last: a note, not a reason.
        notes.extend(self.stale_engine.lock().expect("stale engine").clone());
        (why, notes)
    }
}

/// Serves `/metrics`, `/live` and `/ready` until `shutdown` turns true,
/// with hyper (HTTP/1.1). `/ready` answers 503 with the reasons, one a line.
/// With a `token`, a request without `Authorization: Bearer TOKEN` is
/// answered 401.
/// Gives the TLS acceptor for the next admin connection (the certificate
/// re-read when its files changed); none: plain HTTP.
pub type AdminTls = Box<dyn FnMut() -> tokio_rustls::TlsAcceptor + Send>;

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    token: Option<Arc<str>>,
    mut tls: Option<AdminTls>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper::service::service_fn;
    loop {
        let (conn, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors, say: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (metrics, token) = (metrics.clone(), token.clone());
        let acceptor = tls.as_mut().map(|next| next());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (metrics, token) = (metrics.clone(), token.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(match token {
                        Some(t) if !bearer_is(&req, &t) => unauthorized(),
                        _ => respond(&metrics, &req),
                    })
                }
            });
            let builder = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .clone();
            let limit = std::time::Duration::from_secs(30);
            // A client that holds a connection open (or a handshake) cannot
            // hold a task for long.
            let _ = tokio::time::timeout(limit, async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(conn).await {
                            let io = hyper_util::rt::TokioIo::new(s);
                            let _ = builder.serve_connection(io, service).await;
                        }
                    }
                    None => {
                        let io = hyper_util::rt::TokioIo::new(conn);
                        let _ = builder.serve_connection(io, service).await;
                    }
                }
            })
            .await;
        });
    }
}

/// True when `req` carries `Authorization: Bearer token`, compared in
/// constant time so the comparison says nothing of how much matched.
fn bearer_is<B>(req: &hyper::Request<B>, token: &str) -> bool {
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    hyper::Response::builder()
        .status(hyper::StatusCode::UNAUTHORIZED)
        .header(hyper::header::WWW_AUTHENTICATE, "Bearer")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"a bearer token is required\n",
        )))
        .expect("a valid response")
}

/// The answer to one admin request.
fn respond<B>(
    metrics: &Metrics,
    req: &hyper::Request<B>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use hyper::{Method, StatusCode};
    let text = "text/plain; charset=utf-8";
    let (status, ctype, body): (StatusCode, &str, Vec<u8>) = match (req.method(), req.uri().path())
    {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (&Method::GET, "/live") => (StatusCode::OK, text, b"live\n".to_vec()),
        (&Method::GET, "/ready") => match metrics.readiness() {
            (why, notes) if why.is_empty() => (
                StatusCode::OK,
                text,
                notes
                    .iter()
                    .fold(String::from("ready\n"), |body, n| body + n + "\n")
                    .into_bytes(),
            ),
            (why, _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                format!("not ready\n{}\n", why.join("\n")).into_bytes(),
            ),
        },
        (&Method::GET, _) => (StatusCode::NOT_FOUND, text, b"not found\n".to_vec()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, text, b"GET only\n".to_vec()),
    };
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, ctype)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("a valid response")
}

/// A counter without labels, registered.
fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric");
    r.register(Box::new(c.clone())).expect("register");
    c
}
