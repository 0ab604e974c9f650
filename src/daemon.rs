//! `iocd run`: wires a [`Config`] into sources → pipeline → sinks, with the
//! reloader and the admin endpoints beside them.
//!
//! [`run`] takes its shutdown as a future (mini-redis style): `main` passes
//! SIGTERM/SIGINT, and `tests/in_process.rs` drives it in-process with a
//! oneshot channel and waits on [`Controls::ready`]. Shutdown drains: sources stop reading and
//! send what they have, matchers finish the queue, sinks flush, then `run`
//! returns. It also returns when every source has ended on its own (stdin
//! at end of file).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::exit::Exit;
use crate::load::Loader;
use crate::metrics::{self, Metrics};
use crate::pipeline;
use crate::reload::{self, Reloader};
use crate::sinks;
use crate::sources::{self, SourceContext};
use crate::suppress::Suppressor;

/// Why the daemon could not start or stop cleanly; each maps to an exit code.
#[derive(Debug)]
pub enum DaemonError {
    /// Feed data unreadable at start, or an engine that cannot be built (65).
    Feeds(String),
    /// A socket, file or sink that cannot be opened (71, EX_OSERR).
    Start(String),
    /// Draining took longer than the grace period (70, EX_SOFTWARE).
    DrainTimeout(u64),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Feeds(e) | DaemonError::Start(e) => f.write_str(e),
            DaemonError::DrainTimeout(s) => write!(
                f,
                "draining took longer than the {s} s grace period; hits may be lost"
            ),
        }
    }
}

impl std::error::Error for DaemonError {}

impl DaemonError {
    /// How `iocd run` exits with this error.
    pub fn exit(&self) -> Exit {
        match self {
            DaemonError::Feeds(_) => Exit::DataErr,
            DaemonError::Start(_) => Exit::OsErr,
            DaemonError::DrainTimeout(_) => Exit::Software,
        }
    }
}

/// Signals other than shutdown: SIGHUP reloads, SIGUSR1 reopens file
/// sinks; and a notice once the daemon is up.
pub struct Controls {
    /// Ticks on SIGHUP: re-read the config's feeds and reload.
    pub reload: mpsc::Receiver<()>,
    /// Ticks on SIGUSR1: reopen hit files.
    pub reopen: watch::Receiver<u64>,
    /// Fired once the first engine is built, the sinks are open and every
    /// source is listening: what systemd's READY=1 and tests wait for.
    pub ready: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Runs the daemon until `shutdown` resolves (then drains) or every source ends.
///
/// # Errors
/// See [`DaemonError`].
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    controls: Controls,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = Metrics::new();
    let watch = reload::FeedWatch::start(&config);
    tokio::pin!(shutdown);
    // TAXII polls never hold a build: they run beside it and wake a reload.
    let mut loader = Loader::default();
    loader.detached_polls = Some(watch.waker());
    // A stop asked for while the first engine is built (millions of
    // indicators, a TAXII server that answers a byte at a time) is obeyed
    // at once: there is nothing to drain yet. The build's thread is left
    // behind; the process exits without waiting for it.
    let (loader, built) = tokio::select! {
        done = reload::build_off_thread(loader, config.load_plan(), true) => done,
        () = &mut shutdown => {
            tracing::info!("stopped while loading feeds: nothing to drain");
            return Ok(());
        }
    };
    let built = built.map_err(|e| DaemonError::Feeds(e.to_string()))?;
    let (next_change, next_poll) = (built.next_change, built.next_poll);
    let engine = Arc::new(ArcSwap::from_pointee(crate::engine::Engine::build(
        Vec::new(),
        &Default::default(),
    )));
    reload::install(&engine, &metrics, built, "engine built", None);

    let (stop_tx, stop_rx) = watch::channel(false);

    // Sinks first, so nothing is read before there is somewhere to write it.
    let mut sink_senders = Vec::new();
    let mut sink_tasks = Vec::new();
    for (name, sc) in &config.sinks {
        let (tx, task) = sinks::start(name, sc, metrics.clone(), controls.reopen.clone())
            .await
            .map_err(|e| DaemonError::Start(format!("sinks.{name}: {e}")))?;
        sink_senders.push(tx);
        sink_tasks.push(task);
    }
    let formats = pipeline::Formats::of(config.sinks.values().map(sinks::SinkConfig::format));
    let suppressor = config.suppress.as_ref().map(|c| {
        let mut s = Suppressor::new(c, metrics.suppress_evictions.clone());
        if let Some(dir) = &config.state_dir {
            s.restore(dir);
        }
        Arc::new(s)
    });
    let ring = config
        .retro
        .as_ref()
        .map(|rc| start_ring(rc, &config.engine, &metrics));
    let tally = config
        .sightings
        .as_ref()
        .map(|_| Arc::new(crate::sightings::Tally::default()));
    let output = pipeline::HitOutput {
        group: config.output.group,
        suppressor: suppressor.clone(),
        ring: ring.clone(),
        sightings: tally.clone(),
    };
    let (queue, hits, matchers, weak_hits) = pipeline::start_matchers(
        engine.clone(),
        &config.engine,
        formats,
        output,
        metrics.clone(),
    );
    let dispatcher = tokio::spawn(pipeline::dispatch(hits, sink_senders));
    let retro_jobs = match (&config.retro, &ring) {
        (Some(rc), Some(ring)) => {
            let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
            let hunter = crate::retro::hunt::Hunter {
                dir: rc.dir.clone(),
                ring: ring.tx.clone(),
                engines: ring.engines.clone(),
                hits: weak_hits,
                formats,
                group: config.output.group,
                threads: rc.threads,
                rate_bytes_per_sec: rc.rate_mb_per_sec.map(|r| r * 1_000_000),
                original_max: config.engine.original_max_bytes,
                metrics: crate::retro::hunt::HuntMetrics {
                    scan_bytes: metrics.retro_scan_bytes.clone(),
                    hits: metrics.retro_hits.clone(),
                    scan_seconds: metrics.retro_scan_seconds.clone(),
                },
                sightings: tally.clone(),
            };
            std::thread::Builder::new()
                .name("iocd-retro".into())
                .spawn(move || hunter.run(jobs_rx))
                .map_err(|e| DaemonError::Start(format!("retro: {e}")))?;
            Some(jobs_tx)
        }
        _ => None,
    };

    let admin = match &config.metrics {
        Some(m) => {
            let listener = tokio::net::TcpListener::bind(m.address)
                .await
                .map_err(|e| DaemonError::Start(format!("metrics.address {}: {e}", m.address)))?;
            let token = match &m.token {
                Some(t) => Some(
                    t.resolve()
                        .map_err(|e| DaemonError::Start(format!("metrics.token: {e}")))?,
                ),
                None => None,
            };
            let tls: Option<metrics::AdminTls> = match &m.tls {
                Some(t) => {
                    let mut acceptor = crate::sources::tls::Acceptor::new(t.clone())
                        .map_err(|e| DaemonError::Start(format!("metrics.tls: {e}")))?;
                    Some(Box::new(move || acceptor.current()))
                }
                None => None,
            };
            tracing::info!(address = %m.address, token = token.is_some(), tls = tls.is_some(), "serving /metrics, /live, /ready");
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                token.map(Arc::from),
                tls,
                stop_rx.clone(),
            )))
        }
        None => None,
    };

    // Sightings export after the drain: spawned with its own stop signal,
    // given once every matcher has counted its last hit.
    let (sightings_stop, sightings_task) = match (&config.sightings, &tally) {
        (Some(sc), Some(t)) => {
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(crate::sightings::export::run(
                t.clone(),
                sc.clone(),
                config.state_dir.clone(),
                crate::sightings::export::ExportMetrics {
                    exported: metrics.sightings_exported.clone(),
                    withheld: metrics.sightings_withheld.clone(),
                    pending: metrics.sightings_pending.clone(),
                },
                rx,
            ));
            (Some(tx), Some(task))
        }
        _ => (None, None),
    };

    let ctx = SourceContext {
        queue,
        engine: config.engine.clone(),
        metrics: metrics.clone(),
        shutdown: stop_rx.clone(),
        state_dir: config.state_dir.clone(),
        format: Default::default(),
    };
    let mut source_tasks = Vec::new();
    for (name, sc) in &config.sources {
        match sources::start(name, sc, ctx.clone()).await {
            Ok(task) => source_tasks.push(task),
            Err(e) => {
                let _ = stop_tx.send(true);
                return Err(DaemonError::Start(format!("sources.{name}: {e}")));
            }
        }
    }
    drop(ctx); // the queue closes when the last source ends

    let grace = config.shutdown_grace_secs;
    let reloader = Reloader {
        config,
        config_path,
        loader,
        engine,
        metrics: metrics.clone(),
        watch,
        next_change,
        next_poll,
        retro: retro_jobs,
    };
    let reload_task = {
        // A reload loop that ends before shutdown means feed changes are
        // no longer loaded: /ready must say so.
        let (metrics, mut stop) = (metrics.clone(), stop_rx.clone());
        let task = tokio::spawn(reloader.run(controls.reload, stop_rx.clone()));
        tokio::spawn(async move {
            let ended = task.await;
            if !*stop.borrow_and_update() {
                metrics.reloader_alive.store(false, Ordering::Release);
                tracing::error!(outcome = ?ended.err(), "the reload task has ended; feed changes are no longer loaded");
            }
        })
    };
    tracing::info!(sources = source_tasks.len(), "iocd running");
    crate::systemd::ready("matching");
    let watchdog = crate::systemd::spawn_watchdog(metrics.clone());
    if let Some(ready) = controls.ready {
        let _ = ready.send(());
    }

    let all_sources = futures_all(source_tasks);
    tokio::pin!(all_sources);
    let sources_ended = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down: draining");
            false
        }
        _ = &mut all_sources => {
            tracing::info!("every source has ended: draining");
            true
        }
    };
    crate::systemd::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = stop_tx.send(true);
    let drain = async {
        if !sources_ended {
            all_sources.await;
        }
        // Sources are done and the queue is closed: matchers finish what is queued.
        tokio::task::spawn_blocking(move || {
            matchers
                .into_iter()
                .for_each(|m| m.join().expect("matcher thread panicked"))
        })
        .await
        .expect("joining matchers");
        if let Some(ring) = ring {
            // Close the open segment: every line scanned is then kept.
            let _ = tokio::task::spawn_blocking(move || crate::retro::ring::rotate(&ring.tx)).await;
        }
        let _ = dispatcher.await;
        for t in sink_tasks {
            let _ = t.await;
        }
        if let (Some(stop), Some(task)) = (sightings_stop, sightings_task) {
            let _ = stop.send(true);
            let _ = task.await;
        }
    };
    let drained = tokio::time::timeout(Duration::from_secs(grace), drain).await;
    if let Some(Err(e)) = suppressor.map(|s| s.save()) {
        tracing::warn!(error = %e, "cannot save the suppression state; a restart re-alerts");
    }
    reload_task.abort();
    if let Some(a) = admin {
        a.abort();
    }
    match drained {
        Ok(()) => {
            tracing::info!("drained; exiting");
            Ok(())
        }
        Err(_) => Err(DaemonError::DrainTimeout(grace)),
    }
}

/// Resolves when every task has finished.
async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn start_ring(
    rc: &crate::retro::RetroConfig,
    engine: &pipeline::EngineConfig,
    metrics: &Arc<Metrics>,
) -> crate::retro::RingTap {
    let (tx, rx) = std::sync::mpsc::sync_channel(rc.queue_batches);
    let limits = rc.limits();
    let ring_metrics = crate::retro::ring::RingMetrics {
        bytes_stored: metrics.retro_bytes_stored.clone(),
        write_errors: metrics.retro_write_errors.clone(),
    };
    std::thread::Builder::new()
        .name("iocd-ring".into())
        .spawn(move || crate::retro::ring::write_loop(rx, limits, ring_metrics))
        .expect("spawning the ring writer");
    crate::retro::RingTap {
        tx,
        engines: Arc::new(crate::retro::MatcherEngines::new(engine.matcher_threads())),
        dropped: metrics.retro_lines_dropped.clone(),
    }
}
