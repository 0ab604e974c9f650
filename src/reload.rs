//! Keeping the engine current: feeds are watched (notify, on their
//! directories, so editors that write by rename and Kubernetes ConfigMap
//! `..data` symlink swaps are seen), reloaded on SIGHUP and on an interval;
//! a new engine is built off the hot path and swapped in atomically.
//!
//! A feed file that cannot be read or is not a usable feed (see
//! [`crate::feeds::Feed::failure`]) keeps its last good content: the reload
//! goes on with it, and the failure is counted and logged.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::feeds::{self, Feed, FeedError};
use crate::indicator::IndicatorType;
use crate::load::FeedConfig;
use crate::load::{LoadReport, EXAMPLE_FEED};
use crate::metrics::Metrics;

/// Loads feeds with memory of each file's last good text.
#[derive(Default)]
pub struct Loader {
    last_good: HashMap<PathBuf, Arc<str>>,
    /// Parsed MISP event files by (modification time, size): a MISP feed
    /// directory of thousands of events re-reads only those that changed.
    /// (STIX is not cached: its content depends on the time of reading.)
    unchanged: HashMap<PathBuf, ((std::time::SystemTime, u64), Feed)>,
    taxii: HashMap<String, TaxiiFeed>,
}

/// A TAXII collection's state between reloads.
struct TaxiiFeed {
    state: crate::taxii::State,
    /// Unix time the next poll is due.
    next_poll: i64,
    /// Seconds to wait after a failed poll (doubles, capped at the interval).
    backoff: i64,
}

/// Why loading cannot produce an engine at all.
#[derive(Debug)]
pub enum LoadError {
    /// A feed path unreadable and never loaded before (exit 65 at start).
    Unreadable(FeedError),
    /// The engine could not be built from what was loaded.
    Build(crate::engine::BuildError),
    /// Loading or building panicked (a bug, or input no check foresaw).
    /// The running engine stays; the message is the panic's.
    Panicked(String),
}

impl std::error::Error for LoadError {}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreadable(e) => e.fmt(f),
            LoadError::Build(e) => e.fmt(f),
            LoadError::Panicked(why) => write!(f, "loading feeds panicked: {why}"),
        }
    }
}

/// A built engine and what went into it.
pub struct Built {
    pub engine: Engine,
    pub report: LoadReport,
    /// Feeds that kept their last good content (or were left out): (feed, why).
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
    /// TAXII polls made by this build: (feed, error if it failed).
    pub polls: Vec<(String, Option<String>)>,
    /// The next moment a feed's content changes by itself (STIX validity).
    pub next_change: Option<i64>,
}

impl Loader {
    /// [`Self::build`], with a panic turned into [`LoadError::Panicked`] so
    /// that one bad feed file cannot end the reload loop.
    ///
    /// The loader stays usable after a panic: it records a file's last good
    /// text and parse only after the file was read and parsed whole, so a
    /// panic leaves each entry either as before or updated.
    ///
    /// # Errors
    /// As [`Self::build`], and [`LoadError::Panicked`].
    pub fn build_catching(&mut self, config: &Config, startup: bool) -> Result<Built, LoadError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build(config, startup)))
            .unwrap_or_else(|panic| Err(LoadError::Panicked(panic_message(&*panic))))
    }

    /// Reads every feed and allowlist of `config` and builds an engine. At
    /// `startup` an unreadable feed is an error; later it keeps its last good
    /// content, or is left out, and is reported in [`Built::failures`].
    ///
    /// # Errors
    /// At startup, a feed that cannot be read; always, an engine that cannot
    /// be built.
    pub fn build(&mut self, config: &Config, startup: bool) -> Result<Built, LoadError> {
        let started = Instant::now();
        let mut failures = Vec::new();
        let mut feeds = Vec::new();
        if config.example_feed {
            let (name, text) = EXAMPLE_FEED;
            feeds.push(feeds::parse_with(
                name,
                Path::new(name),
                text,
                &feeds::ParseOptions::default(),
                feeds::unix_now(),
            ));
        }
        for fc in config.feeds.values() {
            feeds.extend(self.read(fc, &fc.parse_options(), startup, &mut failures)?);
        }
        let mut polls = Vec::new();
        for (name, tc) in &config.taxii {
            let state_file = config
                .state_dir
                .clone()
                .unwrap_or_default()
                .join(format!("taxii-{name}.json"));
            feeds.push(self.taxii_feed(name, tc, &state_file, &mut polls, &mut failures));
        }
        let mut allow_feeds = Vec::new();
        for fc in config.allowlists.values() {
            allow_feeds.extend(self.read(fc, &fc.parse_options(), startup, &mut failures)?);
        }
        let next_poll = self.taxii.values().map(|t| t.next_poll).min();
        let next_change = feeds
            .iter()
            .chain(&allow_feeds)
            .filter_map(|f| f.next_change)
            .chain(next_poll)
            .min();
        let (indicators, report) = crate::load::apply_allowlists(feeds, &allow_feeds);
        let options = EngineOptions {
            bloom_min_keys: config.engine.bloom_min_keys,
        };
        let engine = Engine::build(indicators, &options).map_err(LoadError::Build)?;
        Ok(Built {
            engine,
            report,
            failures,
            seconds: started.elapsed().as_secs_f64(),
            polls,
            next_change,
        })
    }

    /// A TAXII collection as a feed: polled when due (a failure keeps what
    /// was loaded and retries with backoff), persisted, read as STIX.
    fn taxii_feed(
        &mut self,
        name: &str,
        tc: &crate::taxii::TaxiiConfig,
        state_file: &Path,
        polls: &mut Vec<(String, Option<String>)>,
        failures: &mut Vec<(String, String)>,
    ) -> Feed {
        let now = feeds::unix_now();
        let t = self
            .taxii
            .entry(name.to_owned())
            .or_insert_with(|| TaxiiFeed {
                state: crate::taxii::State::load(state_file),
                next_poll: now,
                backoff: 5,
            });
        if t.next_poll <= now {
            let interval = tc.poll_interval_secs.max(1) as i64;
            match crate::taxii::poll(&tc.collection(), &mut t.state) {
                Ok(p) => {
                    tracing::info!(
                        feed = name,
                        requests = p.requests,
                        objects = p.objects,
                        "TAXII poll"
                    );
                    if let Err(e) = t.state.save(state_file) {
                        tracing::warn!(feed = name, error = %e, "cannot save TAXII state");
                    }
                    // Jitter (up to a tenth of the interval) spreads many daemons' polls.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos());
                    t.next_poll = now + interval + (nanos as i64) % (interval / 10 + 1);
                    t.backoff = 5;
                    polls.push((name.to_owned(), None));
                }
                Err(e) => {
                    failures.push((
                        name.to_owned(),
                        format!("TAXII poll failed: {e}; keeping what was loaded"),
                    ));
                    t.next_poll = now + t.backoff.min(interval);
                    t.backoff = (t.backoff * 2).min(interval);
                    polls.push((name.to_owned(), Some(e)));
                }
            }
        }
        feeds::parse_with(
            name,
            Path::new(&tc.url),
            &t.state.as_stix_json(),
            &feeds::ParseOptions::default(),
            now,
        )
    }

    /// The feeds of one configured path, each file falling back to its last
    /// good text when it cannot be read or is not a usable feed.
    fn read(
        &mut self,
        fc: &FeedConfig,
        options: &feeds::ParseOptions,
        startup: bool,
        failures: &mut Vec<(String, String)>,
    ) -> Result<Vec<Feed>, LoadError> {
        let files = match feeds::list_files(&fc.path) {
            Ok(files) => files,
            Err(e) => {
                // The directory (or file) is gone: keep every file we had from it.
                let kept: Vec<PathBuf> = self
                    .last_good
                    .keys()
                    .filter(|p| *p == &fc.path || p.starts_with(&fc.path))
                    .cloned()
                    .collect();
                if kept.is_empty() && startup {
                    return Err(LoadError::Unreadable(e));
                }
                failures.push((fc.path.display().to_string(), e.to_string()));
                kept
            }
        };
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let name = feeds::feed_name(&file);
            let stamp = std::fs::metadata(&file)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            if let (Some(stamp), Some((cached_stamp, feed))) = (stamp, self.unchanged.get(&file)) {
                if *cached_stamp == stamp {
                    out.push(feed.clone());
                    continue;
                }
            }
            let fresh = feeds::read_text(&file).map(|text| {
                let feed = feeds::parse_with(&name, &file, &text, options, feeds::unix_now());
                (feed, text)
            });
            match fresh {
                Ok((feed, text)) if feed.failure.is_none() => {
                    if let (Some(stamp), feeds::Format::Misp) = (stamp, feed.format) {
                        self.unchanged.insert(file.clone(), (stamp, feed.clone()));
                    }
                    self.last_good.insert(file.clone(), Arc::from(text));
                    out.push(feed);
                }
                other => {
                    let why = match &other {
                        Ok((feed, _)) => feed.failure.clone().unwrap_or_default(),
                        Err(e) => e.to_string(),
                    };
                    match self.last_good.get(&file) {
                        Some(text) => {
                            failures.push((
                                name.clone(),
                                format!("{why}; keeping its last good content"),
                            ));
                            out.push(feeds::parse_with(
                                &name,
                                &file,
                                text,
                                &fc.parse_options(),
                                feeds::unix_now(),
                            ));
                        }
                        None => match other {
                            // At start an unreadable feed is an error the operator must see (exit 65).
                            Err(e) if startup => return Err(LoadError::Unreadable(e)),
                            Err(_) => failures
                                .push((name.clone(), format!("{why}; no earlier content to keep"))),
                            Ok((feed, _)) => {
                                failures.push((
                                    name.clone(),
                                    format!("{why}; no earlier content to keep"),
                                ));
                                out.push(feed); // its skip log still reaches the report
                            }
                        },
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Publishes a built engine's indicator counts and build time.
pub fn publish(metrics: &Metrics, built: &Built) {
    metrics.indicators_loaded.reset();
    metrics.feed_skipped.reset();
    metrics.feed_entries.reset();
    for f in &built.report.feeds {
        let loaded: usize = f.by_type.iter().sum();
        metrics
            .feed_entries
            .with_label_values(&[&*f.name])
            .set((loaded + f.skipped.count) as i64);
        for (reason, n) in &f.skipped.by_reason {
            metrics
                .feed_skipped
                .with_label_values(&[&*f.name, reason.label()])
                .set(*n as i64);
        }
    }
    for f in &built.report.feeds {
        for (t, n) in IndicatorType::ALL.iter().zip(f.by_type) {
            if n > 0 {
                metrics
                    .indicators_loaded
                    .with_label_values(&[&f.name, t.as_str()])
                    .add(n as i64);
            }
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
    for (feed, why) in &built.failures {
        metrics.feed_failures.with_label_values(&[feed]).inc();
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
    pub fn start(config: &Config) -> FeedWatch {
        let (tx, events) = mpsc::channel::<()>(1);
        let mut watcher = new_watcher(tx.clone());
        watch_all(&mut watcher, config);
        FeedWatch {
            watcher,
            tx,
            events,
        }
    }

    /// Watches the directories of a changed configuration instead.
    fn rewatch(&mut self, config: &Config) {
        self.watcher = new_watcher(self.tx.clone());
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
        let config = self.config.clone();
        let mut loader = std::mem::take(&mut self.loader);
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let r = loader.build_catching(&config, false);
            (loader, r)
        })
        .await;
        let result = match joined {
            Ok((loader, result)) => {
                self.loader = loader;
                result
            }
            // The build's panics are caught inside; this is a cancelled
            // task. The loader's memory is lost: start afresh, do not die.
            Err(e) => Err(LoadError::Panicked(e.to_string())),
        };
        let m = &self.metrics;
        m.reload_duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(built) => {
                publish(m, &built);
                self.next_change = built.next_change;
                let stats = built.engine.stats().clone();
                self.engine.store(Arc::new(built.engine));
                m.reloads.with_label_values(&["success"]).inc();
                m.last_reload_success.set(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
                tracing::info!(
                    indicators = stats.indicators,
                    duplicates = stats.duplicates,
                    seconds = built.seconds,
                    "engine reloaded"
                );
            }
            Err(e) => {
                m.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(error = %e, "reload failed; the running engine stays");
            }
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Sleeps until Unix time `t` (plus a second, so `now > t` when it wakes).
async fn until_unix(t: i64) {
    let wait = (t - crate::feeds::unix_now()).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
}

fn new_watcher(tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
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
        if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch feed directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uuid: &str, domain: &str) -> String {
        format!(
            r#"{{"Event": {{"uuid": "{uuid}", "info": "i", "Attribute": [{{"uuid": "a-{uuid}", "type": "domain", "to_ids": true, "value": "{domain}"}}]}}}}"#
        )
    }

    fn domains(built: &Built) -> Vec<String> {
        let mut v: Vec<String> = built
            .engine
            .indicators()
            .iter()
            .map(|i| i.value.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn misp_events_are_reread_only_when_changed() {
        let dir = std::env::temp_dir().join(format!("iocd-misp-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("aaaaaaaa.json"), dir.join("bbbbbbbb.json"));
        std::fs::write(&a, event("e-a", "one.example")).unwrap();
        std::fs::write(&b, event("e-b", "two.example")).unwrap();
        let text = format!(
            "[feeds.m]\npath = {:?}\n[sources.i]\ntype = \"stdin\"\n[sinks.o]\ntype = \"stdout\"\n",
            dir.display().to_string()
        );
        let config = Config::parse("t", &text).unwrap();
        let mut loader = Loader::default();
        assert_eq!(
            domains(&loader.build(&config, true).unwrap()),
            ["one.example", "two.example"]
        );
        // b changes: it is read again.
        std::fs::write(&b, event("e-b", "fwo.example")).unwrap();
        // a's bytes change but its size and time are put back: it is not read again.
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, event("e-a", "xne.example")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            domains(&loader.build(&config, false).unwrap()),
            ["fwo.example", "one.example"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
