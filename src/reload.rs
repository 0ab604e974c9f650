//! Keeping the engine current: feeds are watched (notify, on their
//! directories, so editors that write by rename and Kubernetes ConfigMap
//! `..data` symlink swaps are seen), reloaded on SIGHUP and on an interval;
//! a new engine is built off the hot path and swapped in atomically.
//!
//! A feed file that cannot be read or is not a usable feed (see
//! [`crate::feeds::Feed::failure`]) keeps its last good content: the reload
//! goes on with it, and the failure is counted and logged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::Engine;
use crate::indicator::IndicatorType;
use crate::load::{Built, LoadError, LoadPlan, Loader};
use crate::metrics::Metrics;

/// Publishes a built engine's indicator counts and build time.
pub fn publish(metrics: &Metrics, built: &Built) {
    metrics.indicators_loaded.reset();
    metrics.feed_skipped.reset();
    metrics.feed_entries.reset();
    for f in &built.report.feeds {
        metrics
            .feed_entries
            .with_label_values(&[&*f.name])
            .set((f.loaded() + f.skipped()) as i64);
        for (reason, n) in &f.skipped_by_reason {
            metrics
                .feed_skipped
                .with_label_values(&[&*f.name, reason.label()])
                .set(*n as i64);
        }
        // Every type of every feed, zeros included: an empty feed shows
        // as 0, never as a missing series an alert cannot see.
        for (t, n) in IndicatorType::ALL.iter().zip(f.by_type) {
            metrics
                .indicators_loaded
                .with_label_values(&[&f.name, t.as_str()])
                .set(n as i64);
        }
        if f.is_empty() {
            tracing::warn!(feed = %f.name, files = f.files.len(), "feed yields no indicator");
        }
    }
    for (feed, error) in &built.polls {
        let result = if error.is_none() {
            "success"
        } else {
            "failure"
        };
        metrics.taxii_polls.with_label_values(&[feed, result]).inc();
        metrics
            .taxii_last_poll
            .with_label_values(&[feed, result])
            .set(crate::feeds::unix_now() as f64);
    }
    for (feed, result) in &built.fetches {
        metrics
            .feed_fetches
            .with_label_values(&[feed, result.label()])
            .inc();
    }
    for f in &built.failures {
        let (feed, why) = (&f.feed, &f.message);
        metrics
            .feed_failures
            .with_label_values(&[f.name.as_str(), f.reason.label()])
            .inc();
        tracing::error!(feed = %feed, reason = %why, "feed failed to load");
    }
    metrics.engine_build.set(built.seconds);
}

/// The directories to watch for the configured feeds and allowlists.
pub fn watch_dirs(config: &Config) -> BTreeSet<PathBuf> {
    config
        .feeds
        .values()
        .chain(config.allowlists.values())
        .filter(|fc| fc.url.is_none())
        .map(|fc| {
            if fc.path.is_dir() {
                fc.path.clone()
            } else {
                fc.path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf()
            }
        })
        .collect()
}

/// Change events for the feed directories. Started before the first load,
/// so a change made while the daemon starts is not missed.
pub struct FeedWatch {
    watcher: Option<notify::RecommendedWatcher>,
    tx: mpsc::Sender<()>,
    events: mpsc::Receiver<()>,
}

impl FeedWatch {
    /// Something that asks for a reload as a feed change does (a TAXII
    /// poll that ended).
    pub fn waker(&self) -> crate::taxii::PollDone {
        let tx = self.tx.clone();
        Arc::new(move || {
            // A reload already pending covers this one.
            let _ = tx.try_send(());
        })
    }

    pub fn start(config: &Config) -> FeedWatch {
        let (tx, events) = mpsc::channel::<()>(1);
        let mut watcher = new_watcher(tx.clone(), Relevant::of(config));
        watch_all(&mut watcher, config);
        FeedWatch {
            watcher,
            tx,
            events,
        }
    }

    /// Watches the directories of a changed configuration instead.
    fn rewatch(&mut self, config: &Config) {
        self.watcher = new_watcher(self.tx.clone(), Relevant::of(config));
        watch_all(&mut self.watcher, config);
    }
}

/// Everything the reload task needs.
pub struct Reloader {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub loader: Loader,
    pub engine: Arc<ArcSwap<Engine>>,
    pub metrics: Arc<Metrics>,
    pub watch: FeedWatch,
    /// When the loaded content changes by itself; a reload is due then.
    pub next_change: Option<i64>,
    /// When a URL feed fetch or a TAXII poll is due next.
    pub next_poll: Option<i64>,
    /// Each reload's engines go here for the retro-hunt (`[retro]`).
    pub retro: Option<std::sync::mpsc::Sender<crate::retro::hunt::Job>>,
}

impl Reloader {
    /// Runs until shutdown: reloads on feed changes (debounced), on `hup`
    /// (re-reading the config file too), and every `reload.interval_secs`.
    pub async fn run(mut self, mut hup: mpsc::Receiver<()>, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.reload.interval_secs.max(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let periodic = self.config.reload.interval_secs > 0;
        loop {
            let reread_config = tokio::select! {
                _ = crate::sources::shutdown_signalled(&mut shutdown) => return,
                Some(()) = self.watch.events.recv() => {
                    // Debounce: wait for a quiet period after the last change.
                    let quiet = Duration::from_millis(self.config.reload.debounce_ms);
                    while tokio::time::timeout(quiet, self.watch.events.recv()).await.is_ok() {}
                    false
                }
                _ = ticker.tick(), if periodic => false,
                // A fetch or poll falls due (its own schedule, not a validity change).
                _ = until_unix(self.next_poll.unwrap_or(i64::MAX)), if self.next_poll.is_some() => {
                    tracing::debug!("a feed fetch or poll is due");
                    false
                }
                // An indicator expires or becomes valid: rebuild without any file event.
                _ = until_unix(self.next_change.unwrap_or(i64::MAX)), if self.next_change.is_some() => {
                    tracing::info!("an indicator's validity changes now: rebuilding the engine");
                    false
                }
                Some(()) = hup.recv() => true,
            };
            if reread_config {
                self.reread_config();
                self.watch.rewatch(&self.config);
                self.loader.fetch_now();
            }
            self.reload().await;
        }
    }

    fn reread_config(&mut self) {
        let Some(path) = &self.config_path else {
            return;
        };
        match Config::load(path) {
            Ok(new) => {
                if new.sources != self.config.sources
                    || new.sinks != self.config.sinks
                    || new.metrics != self.config.metrics
                {
                    tracing::warn!(config = %path.display(), "sources, sinks and metrics changes need a restart; applying feed, allowlist and reload changes only");
                }
                self.config.feeds = new.feeds;
                self.config.allowlists = new.allowlists;
                self.config.reload = new.reload;
                tracing::info!(config = %path.display(), "configuration re-read");
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; keeping the running one")
            }
        }
    }

    /// Builds a new engine on a blocking thread and swaps it in.
    pub async fn reload(&mut self) {
        crate::systemd::reloading();
        let started = Instant::now();
        let loader = std::mem::take(&mut self.loader);
        let (loader, result) = build_off_thread(loader, self.config.load_plan(), false).await;
        self.loader = loader;
        let m = &self.metrics;
        m.reload_duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(built) => {
                m.set_stale_engine(None);
                self.next_change = built.next_change;
                self.next_poll = built.next_poll;
                install(
                    &self.engine,
                    m,
                    built,
                    "engine reloaded",
                    self.retro.as_ref(),
                );
                m.reloads.with_label_values(&["success"]).inc();
            }
            Err(e) => {
                m.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(error = %e, "reload failed; the running engine stays");
                m.set_stale_engine(Some(format!(
                    "the last reload failed ({e}); matching with the engine before it"
                )));
            }
        }
        // The old engine or the new one: either way the daemon matches.
        crate::systemd::ready("matching");
    }
}

/// Runs the loader on a blocking thread (loading and building take seconds
/// at millions of indicators) and gives it back with what it built.
pub async fn build_off_thread(
    mut loader: Loader,
    plan: LoadPlan,
    startup: bool,
) -> (Loader, Result<Built, LoadError>) {
    let joined = tokio::task::spawn_blocking(move || {
        let r = loader.build_catching(&plan, startup);
        (loader, r)
    })
    .await;
    match joined {
        Ok(done) => done,
        // The build's panics are caught inside; this is a cancelled task.
        // The loader's memory is lost: start afresh, do not die.
        Err(e) => (Loader::default(), Err(LoadError::Panicked(e.to_string()))),
    }
}

/// Puts a built engine in service: publishes its counts, swaps it in, and
/// marks the daemon's engine ready. The one way an engine is published, at
/// start and on every reload.
pub fn install(
    engine: &ArcSwap<Engine>,
    metrics: &Metrics,
    built: Built,
    what: &str,
    retro: Option<&std::sync::mpsc::Sender<crate::retro::hunt::Job>>,
) {
    publish(metrics, &built);
    let stats = built.engine.stats().clone();
    if !stats.regexes_left_out.is_empty() {
        let first = &built.engine.indicators()[stats.regexes_left_out[0] as usize];
        tracing::warn!(
            left_out = stats.regexes_left_out.len(),
            first_feed = %first.provenance.feed,
            "regex indicators left out: the regex set would pass its size budget with them"
        );
    }
    let new = Arc::new(built.engine);
    let old = engine.swap(new.clone());
    if let Some(jobs) = retro {
        // The hunter may be gone at shutdown; then there is nothing to hunt for.
        let _ = jobs.send(crate::retro::hunt::Job { old, new });
    }
    metrics
        .engine_ready
        .store(true, std::sync::atomic::Ordering::Release);
    metrics.last_reload_success.set(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    );
    tracing::info!(
        indicators = stats.indicators,
        duplicates = stats.duplicates,
        seconds = built.seconds,
        "{what}"
    );
}

/// Sleeps until Unix time `t` (plus a second, so `now > t` when it wakes).
async fn until_unix(t: i64) {
    let wait = (t - crate::feeds::unix_now()).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
}

/// Which changes concern the feeds: anything below a feed folder, a feed
/// file itself, and Kubernetes' `..data` swaps; not the other files beside
/// a single-file feed (a log written next to it would reload forever).
#[derive(Clone, Default)]
struct Relevant {
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Relevant {
    fn of(config: &Config) -> Relevant {
        let mut r = Relevant::default();
        for f in config.feeds.values().chain(config.allowlists.values()) {
            if f.url.is_some() {
                continue;
            }
            if f.path.is_dir() {
                r.folders.push(f.path.clone());
            } else {
                r.files.push(f.path.clone());
            }
        }
        r
    }

    fn concerns(&self, ev: &notify::Event) -> bool {
        // An event without paths says too little to ignore.
        ev.paths.is_empty()
            || ev.paths.iter().any(|p| {
                self.folders.iter().any(|d| p.starts_with(d))
                    || self
                        .files
                        .iter()
                        .any(|f| p == f || p.file_name() == f.file_name())
                    || p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(".."))
            })
    }
}

fn new_watcher(tx: mpsc::Sender<()>, relevant: Relevant) -> Option<notify::RecommendedWatcher> {
    let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) && relevant.concerns(&ev) {
                let _ = tx.try_send(()); // a pending reload covers this change too
            }
        }
    });
    match w {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch feeds; relying on the reload interval and SIGHUP");
            None
        }
    }
}

fn watch_all(watcher: &mut Option<notify::RecommendedWatcher>, config: &Config) {
    let Some(w) = watcher else { return };
    for dir in watch_dirs(config) {
        // Feed folders are read recursively, so they are watched so too; a
        // single file's parent folder is not.
        let recursive = config
            .feeds
            .values()
            .chain(config.allowlists.values())
            .any(|f| f.path == dir && dir.is_dir());
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = w.watch(&dir, mode) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch feed directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_to_feeds_reload() {
        let r = Relevant {
            folders: vec![PathBuf::from("/feeds/dir")],
            files: vec![PathBuf::from("/etc/iocd/ips.txt")],
        };
        let ev = |p: &str| notify::Event::new(notify::EventKind::Any).add_path(PathBuf::from(p));
        let cases = [
            ("/feeds/dir/2024/a.txt", true),
            ("/etc/iocd/ips.txt", true),
            // An editor's rename over the file, a ConfigMap's swap.
            ("/etc/iocd/..data", true),
            ("/etc/iocd/..2026_11_23_01", true),
            // A log written beside the file feed.
            ("/etc/iocd/run.log", false),
            ("/etc/iocd/iocd.toml", false),
        ];
        for (path, want) in cases {
            assert_eq!(r.concerns(&ev(path)), want, "{path}");
        }
        assert!(r.concerns(&notify::Event::new(notify::EventKind::Any)));
    }
}
