//! Loading what an engine is built from: indicator feeds minus allowlists,
//! with a report for the operator.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{Engine, EngineOptions, EngineStats};
use crate::feeds::allowlist::Allowlist;
use crate::feeds::{self, Feed, FeedError, Format, SkipLog};
use crate::remote::{self, Remote, RemoteSettings, Update};
use crate::taxii::{Subscription, TaxiiConfig};

use crate::indicator::{FeedId, Indicator, IndicatorType};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
/// `[feeds.NAME]` or `[allowlists.NAME]`: a file or directory, watched;
/// or a URL, fetched.
pub struct FeedConfig {
    /// A feed file or a directory of them (or `url`).
    #[serde(default)]
    pub path: PathBuf,
    /// An `http(s)://` URL of a feed file of any format, or of a MISP feed
    /// root (ending in `/`, or its `manifest.json`) (or `path`).
    #[serde(default)]
    pub url: Option<String>,
    /// With `url`: seconds between fetches (plus up to a tenth as jitter).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// With `url`: seconds a request may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The largest feed file, or URL body after decoding, accepted; a
    /// larger one is a failure that keeps the last good content.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// With `url`: headers sent (`Authorization`, an API key): a value, or
    /// `{ env = "VAR" }` or `{ file = "PATH" }`. Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, crate::settings::Secret>,
    /// With `url`: CA file and client certificate for https.
    #[serde(default)]
    pub tls: crate::http_client::TlsSettings,
    /// MISP: load attributes not marked `to_ids` too.
    #[serde(default)]
    pub misp_all_attributes: bool,
    /// Load addresses in special-purpose space (private, loopback, ...):
    /// for an internal list of compromised hosts. Network breadth, short
    /// strings and empty-matching regexes are still refused.
    #[serde(default)]
    pub allow_special_addresses: bool,
    /// Globs of the files below `path` that are feeds; when given, only
    /// those (and they override the default excludes).
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of files below `path` that are not feeds.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The largest fraction of its indicators a file may lose in one
    /// update; past it (or to zero) the last good content is kept. 1.0
    /// turns the guard off.
    #[serde(default = "default_max_shrink")]
    pub max_shrink: f64,
    /// Read every file as this format (`plain`, `zeek-intel`, `csv`,
    /// `stix`, `misp`, `misp-warninglist`, `openioc`) instead of detecting it.
    #[serde(default)]
    pub format: Option<Format>,
}

fn default_max_shrink() -> f64 {
    0.5
}
fn default_interval_secs() -> u64 {
    3600
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_max_bytes() -> u64 {
    256 << 20
}

impl FeedConfig {
    /// Checks the globs and `max_shrink` (0.0 to 1.0).
    ///
    /// # Errors
    /// The first setting it cannot run with.
    pub fn validate(&self) -> Result<(), crate::settings::Invalid> {
        use crate::settings::{in_range, Invalid};
        self.filter()?;
        in_range("max_bytes", self.max_bytes, 1024, 16 << 30)?;
        match (&self.url, self.path.as_os_str().is_empty()) {
            (None, true) => return Err(Invalid::new("path", "a feed needs a path or a url")),
            (Some(_), false) => {
                return Err(Invalid::new("url", "a feed has a path or a url, not both"))
            }
            (Some(url), true) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| Invalid::new("url", format!("{url:?} is not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(Invalid::new(
                        "url",
                        format!("{url:?}: only http:// and https:// are fetched"),
                    ));
                }
                in_range("interval_secs", self.interval_secs, 10, 366 * 86_400)?;
                in_range("timeout_secs", self.timeout_secs, 1, 3600)?;
                for name in self.headers.keys() {
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        Invalid::new("headers", format!("{name:?} is not a header name"))
                    })?;
                }
                crate::http_client::rustls_config(&self.tls).map_err(|e| Invalid::new("tls", e))?;
            }
            (None, false) => {}
        }
        if !(0.0..=1.0).contains(&self.max_shrink) {
            return Err(crate::settings::Invalid::new(
                "max_shrink",
                format!(
                    "{} is out of range: it must be from 0.0 to 1.0",
                    self.max_shrink
                ),
            ));
        }
        Ok(())
    }

    /// The feed's file selection.
    ///
    /// # Errors
    /// A glob that does not parse.
    pub fn filter(&self) -> Result<feeds::walk::FileFilter, crate::settings::Invalid> {
        feeds::walk::FileFilter::new(&self.include, &self.exclude)
            .map_err(|e| crate::settings::Invalid::new("include", e))
    }

    /// The fetch settings of a URL feed; `None` for a path.
    pub fn remote(&self) -> Option<crate::remote::RemoteSettings> {
        Some(crate::remote::RemoteSettings {
            url: self.url.clone()?,
            interval_secs: self.interval_secs,
            timeout_secs: self.timeout_secs,
            max_bytes: self.max_bytes,
            headers: self.headers.clone(),
            tls: self.tls.clone(),
        })
    }

    /// A feed of the file or folder `path`, every other setting at its default.
    pub fn at(path: impl Into<PathBuf>) -> FeedConfig {
        FeedConfig {
            path: path.into(),
            url: None,
            interval_secs: default_interval_secs(),
            timeout_secs: default_timeout_secs(),
            max_bytes: default_max_bytes(),
            headers: Default::default(),
            tls: Default::default(),
            misp_all_attributes: false,
            allow_special_addresses: false,
            include: Vec::new(),
            exclude: Vec::new(),
            max_shrink: default_max_shrink(),
            format: None,
        }
    }

    /// How this feed's files are parsed.
    pub fn parse_options(&self) -> crate::feeds::ParseOptions {
        use crate::indicator::guard::GuardPolicy;
        crate::feeds::ParseOptions {
            misp_all_attributes: self.misp_all_attributes,
            guard: if self.allow_special_addresses {
                GuardPolicy::AllowSpecialAddresses
            } else {
                GuardPolicy::All
            },
            format: self.format,
        }
    }
}

/// What one file of a feed gave.
pub struct FileSummary {
    /// The file as hits name it ([`crate::indicator::FeedId::file`]).
    pub file: Arc<str>,
    /// Where it was read from.
    pub path: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// Indicators loaded, by [`IndicatorType::index`].
    pub by_type: [usize; IndicatorType::ALL.len()],
    /// Entries skipped, with reasons.
    pub skipped: SkipLog,
    /// Its slowest regex: measured MB/s on ordinary log lines, and line.
    pub slowest_regex: Option<(f64, u32)>,
}

/// One configured feed in the load summary: its files, and their sums.
pub struct FeedSummary {
    /// The feed's name.
    pub name: Arc<str>,
    /// What each of its files gave, in the order read.
    pub files: Vec<FileSummary>,
    /// Indicators loaded over all its files, by [`IndicatorType::index`].
    pub by_type: [usize; IndicatorType::ALL.len()],
    /// Entries skipped over all its files, by reason.
    pub skipped_by_reason: std::collections::BTreeMap<crate::feeds::SkipReason, usize>,
}

impl FeedSummary {
    /// A feed with no file read yet.
    fn empty(name: Arc<str>) -> FeedSummary {
        FeedSummary {
            name,
            files: Vec::new(),
            by_type: [0; IndicatorType::ALL.len()],
            skipped_by_reason: Default::default(),
        }
    }

    /// Indicators loaded from the feed.
    pub fn loaded(&self) -> usize {
        self.by_type.iter().sum()
    }

    /// Entries skipped in the feed.
    pub fn skipped(&self) -> usize {
        self.files.iter().map(|f| f.skipped.count).sum()
    }

    /// A feed that yields no indicator (an empty folder, every entry
    /// skipped): worth a warning, never silence.
    pub fn is_empty(&self) -> bool {
        self.loaded() == 0
    }
}

/// What loading did: per feed, and what each allowlist removed.
pub struct LoadReport {
    /// One entry per configured feed, in the order configured.
    pub feeds: Vec<FeedSummary>,
    /// Per allowlist: its name, the indicators it removed, its own skipped entries.
    pub allowlists: Vec<(Arc<str>, usize, SkipLog)>,
}

/// The example feed compiled into the binary: what iocd matches when it is
/// given no feed, so a first run shows hits (`deploy/examples/feeds/`).
pub const EXAMPLE_FEED: (&str, &str) = (
    "example.txt",
    include_str!("../deploy/examples/feeds/example.txt"),
);

/// What to load: the one input of the one [`Loader`]. `iocd scan` makes it
/// from its arguments, `iocd run` and `iocd check` from the config.
#[derive(Clone, Debug, Default)]
pub struct LoadPlan {
    /// Feed files and directories, by name.
    pub feeds: Vec<(String, FeedConfig)>,
    /// TAXII collections, by name.
    pub taxii: Vec<(String, TaxiiConfig)>,
    /// Allowlist files and directories, by name.
    pub allowlists: Vec<(String, FeedConfig)>,
    /// Also load the built-in example feed ([`EXAMPLE_FEED`]).
    pub example_feed: bool,
    /// Where TAXII state persists; none: nothing is kept (`iocd scan`).
    pub state_dir: Option<PathBuf>,
    /// How the engine is built.
    pub engine: EngineOptions,
}

/// Loads feeds with memory of each file's last good text.
#[derive(Default)]
pub struct Loader {
    /// Each file's last good text and how many indicators it gave.
    last_good: HashMap<PathBuf, (Arc<str>, usize)>,
    /// Parsed MISP event files by (modification time, size): a MISP feed
    /// directory of thousands of events re-reads only those that changed.
    /// (STIX is not cached: its content depends on the time of reading.)
    unchanged: HashMap<PathBuf, ((std::time::SystemTime, u64), Feed)>,
    taxii: HashMap<String, Subscription>,
    /// Each TAXII collection's last good content (as STIX JSON) and the
    /// indicators it gave: what the update guard keeps.
    taxii_good: HashMap<String, (Arc<str>, usize)>,
    /// URL feeds followed, by feed name.
    remotes: HashMap<String, Remote>,
    /// Parsed MISP events of URL feeds, by (feed, file), with the text
    /// they were parsed from: reused while that text is held.
    remote_parsed: HashMap<(String, String), (Arc<str>, Feed)>,
    /// The daemon's: TAXII polls run on their own threads, and this is
    /// called when one ends. None (`scan`, `check`): polls run in the build.
    pub detached_polls: Option<crate::taxii::PollDone>,
}

/// A feed (or one of its files) that did not load as read: what it is,
/// why, and what was done instead (its last good content kept, or nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The configured feed (the metric label).
    pub name: String,
    /// The feed, file or path concerned, as the log names it.
    pub feed: String,
    /// The class of failure (the metric label).
    pub reason: FailureReason,
    /// What happened, for the log.
    pub message: String,
}

/// Why a feed did not load as read. A closed set; each owns its label
/// (`iocd_feed_failures_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The file or folder cannot be read.
    Unreadable,
    /// Not a feed: an HTML page, JSON of no feed format, nothing usable.
    NotAFeed,
    /// A FIFO, device or socket where a feed file was expected.
    SpecialFile,
    /// An update would shrink the feed by more than `max_shrink`.
    Shrink,
    /// A TAXII poll failed.
    Poll,
    /// A URL feed could not be fetched.
    Fetch,
}

impl FailureReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Unreadable => "unreadable",
            FailureReason::NotAFeed => "not_a_feed",
            FailureReason::SpecialFile => "special_file",
            FailureReason::Shrink => "shrink",
            FailureReason::Poll => "poll",
            FailureReason::Fetch => "fetch",
        }
    }
}

fn failure(
    name: &str,
    feed: impl Into<String>,
    reason: FailureReason,
    message: String,
) -> LoadFailure {
    LoadFailure {
        name: name.to_owned(),
        feed: feed.into(),
        reason,
        message,
    }
}

/// An update of feed `name` refused by the shrink guard: warned about now
/// (with the before and after counts in `why`), and the failure to count.
fn shrink_failure(name: &str, why: String) -> LoadFailure {
    tracing::warn!(feed = %name, reason = %why, "feed update refused; keeping its last good content");
    failure(
        name,
        name,
        FailureReason::Shrink,
        format!("{why}; keeping its last good content"),
    )
}

/// Why an update from `before` to `after` indicators is refused under
/// `max_shrink` (the largest fraction a feed may lose in one update; 1.0
/// refuses nothing), or `None`.
fn shrink_refused(before: usize, after: usize, max_shrink: f64) -> Option<String> {
    let lost = before.saturating_sub(after) as f64;
    let too_much = before > 0 && (after == 0 || lost > max_shrink * before as f64);
    (max_shrink < 1.0 && too_much).then(|| {
        format!(
            "would shrink from {before} to {after} indicators (more than max_shrink {max_shrink})"
        )
    })
}

/// Why loading cannot produce an engine at all.
#[derive(Debug)]
pub enum LoadError {
    /// A feed path unreadable and never loaded before (exit 65 at start).
    Unreadable(FeedError),
    /// Loading or building panicked (a bug, or input no check foresaw).
    /// The running engine stays; the message is the panic's.
    Panicked(String),
}

impl std::error::Error for LoadError {}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreadable(e) => e.fmt(f),
            LoadError::Panicked(why) => write!(f, "loading feeds panicked: {why}"),
        }
    }
}

/// A built engine and what went into it.
pub struct Built {
    /// The engine, ready to scan.
    pub engine: Engine,
    /// What each feed and allowlist contributed.
    pub report: LoadReport,
    /// Feeds that kept their last good content (or were left out): (feed, why).
    pub failures: Vec<LoadFailure>,
    /// Seconds loading and building took.
    pub seconds: f64,
    /// TAXII polls made by this build: (feed, error if it failed).
    pub polls: Vec<(String, Option<crate::taxii::TaxiiError>)>,
    /// URL feed fetches made by this build: (feed, result).
    pub fetches: Vec<(String, FetchResult)>,
    /// The next moment a feed's content changes by itself (STIX validity).
    pub next_change: Option<i64>,
    /// The next moment a URL feed fetch or a TAXII poll is due.
    pub next_poll: Option<i64>,
    /// The allowlists as loaded, for `iocd lookup`.
    pub allowlist: Allowlist,
}

impl Loader {
    /// Makes every URL feed fetch and every TAXII collection poll at the
    /// next build, whatever their schedule (SIGHUP).
    pub fn fetch_now(&mut self) {
        self.remotes.values_mut().for_each(Remote::due_now);
        self.taxii.values_mut().for_each(Subscription::due_now);
    }

    /// [`Self::build`], with a panic turned into [`LoadError::Panicked`] so
    /// that one bad feed file cannot end the reload loop.
    ///
    /// The loader stays usable after a panic: it records a file's last good
    /// text and parse only after the file was read and parsed whole, so a
    /// panic leaves each entry either as before or updated.
    ///
    /// # Errors
    /// As [`Self::build`], and [`LoadError::Panicked`].
    pub fn build_catching(&mut self, plan: &LoadPlan, startup: bool) -> Result<Built, LoadError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build(plan, startup)))
            .unwrap_or_else(|panic| Err(LoadError::Panicked(panic_message(&*panic))))
    }

    /// Reads every feed and allowlist of `plan` and builds an engine. At
    /// `startup` an unreadable feed is an error; later it keeps its last good
    /// content, or is left out, and is reported in [`Built::failures`].
    ///
    /// # Errors
    /// At startup, a feed that cannot be read; always, an engine that cannot
    /// be built.
    pub fn build(&mut self, plan: &LoadPlan, startup: bool) -> Result<Built, LoadError> {
        let started = Instant::now();
        let mut failures = Vec::new();
        let mut feeds = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        if plan.example_feed {
            let (name, text) = EXAMPLE_FEED;
            names.push(Arc::from(name));
            feeds.push(feeds::parse_with(
                FeedId::single(name),
                Path::new(name),
                text,
                &feeds::ParseOptions::default(),
                feeds::unix_now(),
            ));
        }
        let mut fetches = Vec::new();
        for (name, fc) in &plan.feeds {
            names.push(Arc::from(name.as_str()));
            match fc.remote() {
                Some(settings) => feeds.extend(self.remote_feed(
                    name,
                    fc,
                    &settings,
                    plan.state_dir.as_deref(),
                    &mut fetches,
                    &mut failures,
                )),
                None => feeds.extend(self.read(
                    name,
                    fc,
                    &fc.parse_options(),
                    startup,
                    &mut failures,
                )?),
            }
        }
        let mut polls = Vec::new();
        for (name, tc) in &plan.taxii {
            names.push(Arc::from(name.as_str()));
            let state_file = plan
                .state_dir
                .as_ref()
                .map(|d| d.join(format!("taxii-{name}.json")));
            feeds.push(self.taxii_feed(name, tc, state_file.as_deref(), &mut polls, &mut failures));
        }
        let mut allow_feeds = Vec::new();
        for (name, fc) in &plan.allowlists {
            allow_feeds.extend(self.read(
                name,
                fc,
                &fc.parse_options().for_allowlist(),
                startup,
                &mut failures,
            )?);
        }
        let next_poll = self
            .taxii
            .values()
            .map(Subscription::next_poll)
            .chain(self.remotes.values().map(Remote::next_fetch))
            .min();
        let next_change = feeds
            .iter()
            .chain(&allow_feeds)
            .filter_map(|f| f.next_change)
            .min();
        let allowlist = Allowlist::new(&allow_feeds);
        let (indicators, report) = apply_allowlists(&names, feeds, &allowlist);
        let engine = Engine::build(indicators, &plan.engine);
        Ok(Built {
            engine,
            report,
            failures,
            seconds: started.elapsed().as_secs_f64(),
            polls,
            fetches,
            next_change,
            next_poll,
            allowlist,
        })
    }

    /// A URL feed: fetched when due; a new version is parsed and guarded
    /// like a file (not a feed, or shrinking past `max_shrink`: the last
    /// good content stays), committed and persisted; what is held is read.
    fn remote_feed(
        &mut self,
        name: &str,
        fc: &FeedConfig,
        settings: &RemoteSettings,
        state_dir: Option<&Path>,
        fetches: &mut Vec<(String, FetchResult)>,
        failures: &mut Vec<LoadFailure>,
    ) -> Vec<Feed> {
        let now = feeds::unix_now();
        let options = fc.parse_options();
        let remote = self.remotes.entry(name.to_owned()).or_insert_with(|| {
            Remote::resume(settings, state_dir.map(|d| remote::state_dir(d, name)), now)
        });
        let result = match remote.fetch_if_due(settings, now) {
            None => None,
            Some(Ok(Update::NotModified)) => Some(FetchResult::NotModified),
            Some(Err(e)) => {
                failures.push(failure(
                    name,
                    name,
                    FailureReason::Fetch,
                    format!("{e}; keeping what was loaded"),
                ));
                Some(FetchResult::Failure)
            }
            Some(Ok(Update::Changed { mut held, errors })) => {
                // One failure per fetch, not per event: a manifest naming
                // hundreds of missing events must not flood the log.
                if let Some(first) = errors.first() {
                    failures.push(failure(
                        name,
                        name,
                        FailureReason::Fetch,
                        format!(
                            "{} event(s) could not be fetched (the first: {first}); keeping the versions held",
                            errors.len()
                        ),
                    ));
                }
                // A file that is not a feed keeps its version held, if any.
                let before = remote.held().clone();
                let mut total = 0;
                let files: Vec<String> = held.files.keys().cloned().collect();
                for file in files {
                    let text = held.files[&file].text.clone();
                    let feed = parse_remote(name, &file, &text, &options, now);
                    match (&feed.failure, before.files.get(&file)) {
                        (None, _) => total += feed.indicators.len(),
                        (Some(why), old) => {
                            failures.push(failure(
                                name,
                                FeedId::new(name, &file).to_string(),
                                FailureReason::NotAFeed,
                                format!(
                                    "{why}; {}",
                                    if old.is_some() {
                                        "keeping its last good content"
                                    } else {
                                        "no earlier content to keep"
                                    }
                                ),
                            ));
                            match old {
                                Some(old) => {
                                    total += parse_remote(name, &file, &old.text, &options, now)
                                        .indicators
                                        .len();
                                    held.files.insert(file, old.clone());
                                }
                                None => {
                                    held.files.remove(&file);
                                }
                            }
                        }
                    }
                }
                let had = (!before.files.is_empty()).then_some(before.indicators);
                match had.and_then(|n| shrink_refused(n, total, fc.max_shrink)) {
                    Some(why) => {
                        failures.push(shrink_failure(name, why));
                        Some(FetchResult::Refused)
                    }
                    None => {
                        held.indicators = total;
                        remote.commit(held, name);
                        Some(FetchResult::Changed)
                    }
                }
            }
        };
        if let Some(r) = result {
            fetches.push((name.to_owned(), r));
        }
        let held = remote.held();
        let mut out = Vec::with_capacity(held.files.len());
        for (file, f) in &held.files {
            let key = (name.to_owned(), file.clone());
            if let Some((text, feed)) = self.remote_parsed.get(&key) {
                if Arc::ptr_eq(text, &f.text) {
                    out.push(feed.clone());
                    continue;
                }
            }
            let feed = parse_remote(name, file, &f.text, &options, now);
            if feed.format == Format::Misp {
                self.remote_parsed
                    .insert(key, (f.text.clone(), feed.clone()));
            }
            out.push(feed);
        }
        self.remote_parsed
            .retain(|(n, file), _| n != name || held.files.contains_key(file));
        out
    }

    /// A TAXII collection as a feed: polled when due (a failure keeps what
    /// was loaded and retries with backoff), persisted, read as STIX.
    fn taxii_feed(
        &mut self,
        name: &str,
        tc: &crate::taxii::TaxiiConfig,
        state_file: Option<&Path>,
        polls: &mut Vec<(String, Option<crate::taxii::TaxiiError>)>,
        failures: &mut Vec<LoadFailure>,
    ) -> Feed {
        let now = feeds::unix_now();
        let t = self
            .taxii
            .entry(name.to_owned())
            .or_insert_with(|| Subscription::resume(tc, state_file, now));
        match t.poll_if_due(name, tc, state_file, now, self.detached_polls.as_ref()) {
            None => {}
            Some(Ok(())) => polls.push((name.to_owned(), None)),
            Some(Err(e)) => {
                failures.push(failure(
                    name,
                    name,
                    FailureReason::Poll,
                    format!("TAXII poll failed: {e}; keeping what was loaded"),
                ));
                polls.push((name.to_owned(), Some(e)));
            }
        }
        let json: Arc<str> = Arc::from(t.state().as_stix_json());
        let parse = |json: &str| {
            feeds::parse_with(
                FeedId::single(name),
                Path::new(&tc.url),
                json,
                &feeds::ParseOptions::default(),
                now,
            )
        };
        let feed = parse(&json);
        match self.taxii_good.get(name) {
            Some((good, _)) if *good == json => feed,
            Some((good, before)) => {
                match shrink_refused(*before, feed.indicators.len(), tc.max_shrink) {
                    Some(why) => {
                        failures.push(shrink_failure(name, why));
                        parse(good)
                    }
                    None => {
                        self.taxii_good
                            .insert(name.to_owned(), (json, feed.indicators.len()));
                        feed
                    }
                }
            }
            None => {
                self.taxii_good
                    .insert(name.to_owned(), (json, feed.indicators.len()));
                feed
            }
        }
    }

    /// The feeds of one configured path, each file falling back to its last
    /// good text when it cannot be read or is not a usable feed.
    fn read(
        &mut self,
        feed_name: &str,
        fc: &FeedConfig,
        options: &feeds::ParseOptions,
        startup: bool,
        failures: &mut Vec<LoadFailure>,
    ) -> Result<Vec<Feed>, LoadError> {
        // Validated with the config; a plan made in code falls back to the defaults.
        let filter = fc.filter().unwrap_or_default();
        let files = match feeds::walk::list(&fc.path, &filter) {
            Ok(listing) => {
                for (path, why) in listing.skipped {
                    failures.push(failure(
                        feed_name,
                        path.display().to_string(),
                        FailureReason::SpecialFile,
                        why,
                    ));
                }
                listing.files
            }
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
                failures.push(failure(
                    feed_name,
                    fc.path.display().to_string(),
                    FailureReason::Unreadable,
                    e.to_string(),
                ));
                kept
            }
        };
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let id = FeedId::new(feed_name, &feeds::feed_file(&fc.path, &file));
            let name = id.to_string();
            let stamp = std::fs::metadata(&file)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            if let (Some(stamp), Some((cached_stamp, feed))) = (stamp, self.unchanged.get(&file)) {
                if *cached_stamp == stamp {
                    out.push(feed.clone());
                    continue;
                }
            }
            let fresh = match stamp {
                // Too large is the content's failure, like a binary file:
                // the last good content stays, and the rest of the feed loads.
                Some((_, len)) if len > fc.max_bytes => {
                    let mut feed = feeds::parse_with(id.clone(), &file, "", options, 0);
                    feed.failure = Some(feeds::FeedFailure::TooLarge(fc.max_bytes));
                    Ok((feed, String::new()))
                }
                _ => feeds::read_text_max(&file, fc.max_bytes).map(|text| {
                    let feed =
                        feeds::parse_with(id.clone(), &file, &text, options, feeds::unix_now());
                    (feed, text)
                }),
            };
            // A file that reads as a feed but would lose too much of what it
            // held is refused like a broken one (an error page of one valid
            // line, a truncated download).
            let shrunk = match (&fresh, self.last_good.get(&file)) {
                (Ok((feed, _)), Some((_, before))) if feed.failure.is_none() => {
                    shrink_refused(*before, feed.indicators.len(), fc.max_shrink)
                }
                _ => None,
            };
            match fresh {
                Ok((feed, text)) if feed.failure.is_none() && shrunk.is_none() => {
                    if let (Some(stamp), feeds::Format::Misp) = (stamp, feed.format) {
                        self.unchanged.insert(file.clone(), (stamp, feed.clone()));
                    }
                    self.last_good
                        .insert(file.clone(), (Arc::from(text), feed.indicators.len()));
                    out.push(feed);
                }
                other => {
                    let (reason, why) = match (&other, shrunk) {
                        (_, Some(why)) => (FailureReason::Shrink, why),
                        (Ok((feed, _)), None) => (
                            FailureReason::NotAFeed,
                            feed.failure
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                        ),
                        (Err(e), None) => (FailureReason::Unreadable, e.to_string()),
                    };
                    match self.last_good.get(&file) {
                        Some((text, _)) => {
                            if reason == FailureReason::Shrink {
                                tracing::warn!(feed = %name, reason = %why, "feed update refused; keeping its last good content");
                            }
                            failures.push(failure(
                                feed_name,
                                name.clone(),
                                reason,
                                format!("{why}; keeping its last good content"),
                            ));
                            out.push(feeds::parse_with(
                                id.clone(),
                                &file,
                                text,
                                options,
                                feeds::unix_now(),
                            ));
                        }
                        None => match other {
                            // At start an unreadable feed is an error the operator must see (exit 65).
                            Err(e) if startup => return Err(LoadError::Unreadable(e)),
                            Err(_) => failures.push(failure(
                                feed_name,
                                name.clone(),
                                reason,
                                format!("{why}; no earlier content to keep"),
                            )),
                            Ok((feed, _)) => {
                                failures.push(failure(
                                    feed_name,
                                    name.clone(),
                                    reason,
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

/// TLS settings for a URL given to `iocd scan`: a CA file from
/// `IOCD_CA_FILE` (or `IOCD_TAXII_CA_FILE`), else the system's roots.
pub fn tls_from_env() -> crate::http_client::TlsSettings {
    crate::http_client::TlsSettings {
        ca_file: std::env::var_os("IOCD_CA_FILE")
            .or_else(|| std::env::var_os("IOCD_TAXII_CA_FILE"))
            .map(PathBuf::from),
        ..Default::default()
    }
}

/// File `file` of URL feed `name`, parsed.
fn parse_remote(
    name: &str,
    file: &str,
    text: &str,
    options: &feeds::ParseOptions,
    now: i64,
) -> Feed {
    feeds::parse_with(FeedId::new(name, file), Path::new(file), text, options, now)
}

/// What a URL feed's fetch did (the `result` label of
/// `iocd_feed_fetches_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// New content, committed.
    Changed,
    /// The server said nothing changed (304).
    NotModified,
    /// New content refused by the update guard.
    Refused,
    /// The fetch failed.
    Failure,
}

impl FetchResult {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FetchResult::Changed => "changed",
            FetchResult::NotModified => "not_modified",
            FetchResult::Refused => "refused",
            FetchResult::Failure => "failure",
        }
    }
}

/// Removes what the allowlists cover from the feeds and gathers the
/// indicators left, with the report of what each feed and allowlist did.
/// `names` are the configured feeds, in order: each has its entry in the
/// report, even when it gave no file at all.
pub fn apply_allowlists(
    names: &[Arc<str>],
    feeds: Vec<Feed>,
    allow: &Allowlist,
) -> (Vec<Indicator>, LoadReport) {
    let mut summaries: Vec<FeedSummary> = names
        .iter()
        .map(|name| FeedSummary::empty(name.clone()))
        .collect();
    let mut indicators = Vec::with_capacity(feeds.iter().map(|f| f.indicators.len()).sum());
    let mut removed = vec![0; allow.names().len()];
    for mut feed in feeds {
        if feed.format == Format::Warninglist {
            feed.skipped
                .push(0, "a MISP warninglist is an allowlist: configure it as one");
        }
        for (total, r) in removed.iter_mut().zip(allow.apply(&mut feed.indicators)) {
            *total += r;
        }
        let at = match summaries.iter().position(|s| s.name == feed.id.name) {
            Some(at) => at,
            None => {
                summaries.push(FeedSummary::empty(feed.id.name.clone()));
                summaries.len() - 1
            }
        };
        let summary = &mut summaries[at];
        let by_type = feed.counts_by_type();
        for (sum, n) in summary.by_type.iter_mut().zip(by_type) {
            *sum += n;
        }
        for (reason, n) in &feed.skipped.by_reason {
            *summary.skipped_by_reason.entry(*reason).or_default() += n;
        }
        summary.files.push(FileSummary {
            file: feed.id.file.clone(),
            path: feed.path,
            format: feed.format,
            by_type,
            skipped: feed.skipped,
            slowest_regex: feed.slowest_regex,
        });
        indicators.append(&mut feed.indicators);
    }
    let allowlists = allow
        .names()
        .iter()
        .cloned()
        .zip(removed)
        .zip(allow.skipped.iter().cloned())
        .map(|((n, r), s)| (n, r, s))
        .collect();
    (
        indicators,
        LoadReport {
            feeds: summaries,
            allowlists,
        },
    )
}

impl LoadReport {
    /// Writes the human summary: a line per feed with counts by type, the
    /// first skipped entries as `file:line` warnings, allowlist removals.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        for f in &self.feeds {
            let types: Vec<String> = IndicatorType::ALL
                .iter()
                .zip(f.by_type)
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            let reasons: Vec<String> = f
                .skipped_by_reason
                .iter()
                .map(|(r, n)| format!("{} {n}", r.label()))
                .collect();
            let mut formats: Vec<String> = f.files.iter().map(|x| x.format.to_string()).collect();
            formats.sort();
            formats.dedup();
            writeln!(
                w,
                "iocd: feed {} ({}; {} file{}): {} indicators [{}], {} skipped{}",
                f.name,
                if formats.is_empty() {
                    "-".to_owned()
                } else {
                    formats.join(", ")
                },
                f.files.len(),
                if f.files.len() == 1 { "" } else { "s" },
                f.loaded(),
                types.join(", "),
                f.skipped(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", reasons.join(", "))
                }
            )?;
            if f.is_empty() {
                writeln!(
                    w,
                    "iocd: warning: feed {} yields no indicator{}",
                    f.name,
                    if f.files.is_empty() {
                        ": no feed file in it"
                    } else {
                        ": every entry was skipped"
                    }
                )?;
            }
            let slowest = f
                .files
                .iter()
                .filter_map(|file| file.slowest_regex.map(|(s, l)| (s, l, &file.file)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((mb_s, line, file)) = slowest {
                writeln!(
                    w,
                    "iocd: feed {}: {} regexes; the slowest ({file}:{line}) scans ordinary log lines at {mb_s:.0} MB/s",
                    f.name,
                    f.by_type[IndicatorType::Regex.index()],
                )?;
            }
            let mut shown = 0;
            for file in &f.files {
                if shown >= SKIP_EXAMPLES_PER_FEED {
                    break;
                }
                shown += write_skips(w, &file.path.display().to_string(), &file.skipped)?;
            }
            let more = f.skipped().saturating_sub(shown);
            if more > 0 {
                writeln!(
                    w,
                    "iocd: warning: feed {}: {more} more skipped entries",
                    f.name
                )?;
            }
        }
        for (name, removed, skipped) in &self.allowlists {
            writeln!(
                w,
                "iocd: allowlist {name}: removed {removed} indicators, {} entries skipped",
                skipped.count
            )?;
            let shown = write_skips(w, name, skipped)?;
            if skipped.count > shown {
                writeln!(
                    w,
                    "iocd: warning: {name}: {} more skipped entries",
                    skipped.count - shown
                )?;
            }
        }
        Ok(())
    }
}

/// Skipped entries shown per feed before the rest are only counted: a
/// repository of a thousand files must not flood the log.
const SKIP_EXAMPLES_PER_FEED: usize = 10;

/// Writes the skipped entries `s` keeps as examples; returns how many.
fn write_skips(w: &mut impl Write, path: &str, s: &SkipLog) -> std::io::Result<usize> {
    for e in &s.examples {
        writeln!(w, "iocd: warning: {path}:{}: skipped: {}", e.line, e.reason)?;
    }
    Ok(s.examples.len())
}

/// One line about the built engine.
pub fn write_engine_summary(
    w: &mut impl Write,
    stats: &EngineStats,
    build_secs: f64,
) -> std::io::Result<()> {
    if !stats.regexes_left_out.is_empty() {
        writeln!(
            w,
            "iocd: warning: {} regex indicators left out: the regex set would pass its {} MiB budget with them (the newest are left out)",
            stats.regexes_left_out.len(),
            crate::engine::REGEX_SET_BUDGET >> 20
        )?;
    }
    writeln!(
        w,
        "iocd: engine: {} indicators ({} duplicates dropped) built in {:.3} s; index {:.1} MiB, {} Bloom-fronted sets",
        stats.indicators,
        stats.duplicates,
        build_secs,
        stats.index_bytes as f64 / (1 << 20) as f64,
        stats.bloom_sets
    )
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_guard_table() {
        let cases = [
            (3000, 1, 0.5, true),
            (3000, 0, 1.0, false),
            (10, 5, 0.5, false),
            (10, 4, 0.5, true),
            (10, 0, 0.9, true),
            (0, 0, 0.5, false),
            (10, 20, 0.0, false),
            (10, 9, 0.0, true),
        ];
        for (before, after, max, refused) in cases {
            assert_eq!(
                shrink_refused(before, after, max).is_some(),
                refused,
                "{before} -> {after} at {max}"
            );
        }
    }

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
        let plan = LoadPlan {
            feeds: vec![("misp".to_owned(), FeedConfig::at(dir.clone()))],
            ..LoadPlan::default()
        };
        let mut loader = Loader::default();
        assert_eq!(
            domains(&loader.build(&plan, true).unwrap()),
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
            domains(&loader.build(&plan, false).unwrap()),
            ["fwo.example", "one.example"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
