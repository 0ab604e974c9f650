//! Loading what an engine is built from: indicator feeds minus allowlists,
//! with a report for the operator.

use std::io::Write;

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::EngineStats;
use crate::feeds::allowlist::Allowlist;
use crate::feeds::{self, Feed, FeedError, Format, SkipLog};
use crate::indicator::{Indicator, IndicatorType};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
/// `[feeds.NAME]` or `[allowlists.NAME]`: a file or directory, watched.
pub struct FeedConfig {
    pub path: PathBuf,
    /// MISP: load attributes not marked `to_ids` too.
    #[serde(default)]
    pub misp_all_attributes: bool,
    /// Load addresses in special-purpose space (private, loopback, ...):
    /// for an internal list of compromised hosts. Network breadth, short
    /// strings and empty-matching regexes are still refused.
    #[serde(default)]
    pub allow_special_addresses: bool,
}

impl FeedConfig {
    pub fn parse_options(&self) -> crate::feeds::ParseOptions {
        use crate::indicator::guard::GuardPolicy;
        crate::feeds::ParseOptions {
            misp_all_attributes: self.misp_all_attributes,
            guard: if self.allow_special_addresses {
                GuardPolicy::AllowSpecialAddresses
            } else {
                GuardPolicy::All
            },
        }
    }
}

/// One feed's line in the load summary.
pub struct FeedSummary {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub format: Format,
    pub by_type: [usize; IndicatorType::ALL.len()],
    pub skipped: SkipLog,
}

/// What loading did: per feed, and what each allowlist removed.
pub struct LoadReport {
    pub feeds: Vec<FeedSummary>,
    pub allowlists: Vec<(Arc<str>, usize, SkipLog)>,
}

/// The example feed compiled into the binary: what iocd matches when it is
/// given no feed, so a first run shows hits (`deploy/examples/feeds/`).
pub const EXAMPLE_FEED: (&str, &str) = (
    "example.txt",
    include_str!("../deploy/examples/feeds/example.txt"),
);

/// Where indicators come from: files and directories, or the embedded example.
pub enum FeedSource {
    Path(PathBuf),
    /// A TAXII 2.1 collection URL, fetched whole once.
    Taxii(String),
    Embedded {
        name: &'static str,
        text: &'static str,
    },
}

/// Reads every feed source and allowlist path and removes allowed indicators.
///
/// # Errors
/// The first path that cannot be read at all.
pub fn load(
    sources: &[FeedSource],
    allowlist_paths: &[PathBuf],
    options: &feeds::ParseOptions,
) -> Result<(Vec<Indicator>, LoadReport), FeedError> {
    let read_all =
        |paths: &[PathBuf], options: &feeds::ParseOptions| -> Result<Vec<Feed>, FeedError> {
            let per_path: Vec<Result<Vec<Feed>, FeedError>> = std::thread::scope(|s| {
                let handles: Vec<_> = paths
                    .iter()
                    .map(|p| s.spawn(move || feeds::load_path_with(p, options)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("feed reader panicked"))
                    .collect()
            });
            Ok(per_path
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect())
        };
    let paths: Vec<PathBuf> = sources
        .iter()
        .filter_map(|s| {
            if let FeedSource::Path(p) = s {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect();
    let mut feeds = read_all(&paths, options)?;
    for s in sources {
        match s {
            FeedSource::Embedded { name, text } => {
                feeds.push(feeds::parse_with(
                    name,
                    std::path::Path::new(&format!("(embedded) {name}")),
                    text,
                    options,
                    feeds::unix_now(),
                ));
            }
            FeedSource::Taxii(url) => {
                let collection = crate::taxii::Collection {
                    url: url.clone(),
                    auth: crate::taxii::Auth::from_env(),
                    timeout: std::time::Duration::from_secs(30),
                    ca_file: std::env::var_os("IOCD_TAXII_CA_FILE").map(PathBuf::from),
                    page_size: 1000,
                };
                let mut state = crate::taxii::State::default();
                crate::taxii::poll(&collection, &mut state).map_err(|e| FeedError {
                    path: PathBuf::from(url),
                    error: std::io::Error::other(e),
                })?;
                feeds.push(feeds::parse_with(
                    url,
                    std::path::Path::new(url),
                    &state.as_stix_json(),
                    options,
                    feeds::unix_now(),
                ));
            }
            FeedSource::Path(_) => {}
        }
    }
    let allow_feeds = read_all(allowlist_paths, &options.for_allowlist())?;
    Ok(apply_allowlists(feeds, &allow_feeds))
}

/// Removes what the allowlists cover from the feeds and gathers the
/// indicators left, with the report of what each feed and allowlist did.
pub fn apply_allowlists(feeds: Vec<Feed>, allow_feeds: &[Feed]) -> (Vec<Indicator>, LoadReport) {
    let allow = Allowlist::new(allow_feeds);
    let mut summaries = Vec::with_capacity(feeds.len());
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
        summaries.push(FeedSummary {
            by_type: feed.counts_by_type(),
            name: feed.name,
            path: feed.path,
            format: feed.format,
            skipped: feed.skipped,
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
            let total: usize = f.by_type.iter().sum();
            let types: Vec<String> = IndicatorType::ALL
                .iter()
                .zip(f.by_type)
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            writeln!(
                w,
                "iocd: feed {} ({}): {total} indicators [{}], {} skipped",
                f.name,
                f.format,
                types.join(", "),
                f.skipped.count
            )?;
            write_skips(w, &f.path.display().to_string(), &f.skipped)?;
        }
        for (name, removed, skipped) in &self.allowlists {
            writeln!(
                w,
                "iocd: allowlist {name}: removed {removed} indicators, {} entries skipped",
                skipped.count
            )?;
            write_skips(w, name, skipped)?;
        }
        Ok(())
    }
}

fn write_skips(w: &mut impl Write, path: &str, s: &SkipLog) -> std::io::Result<()> {
    for e in &s.examples {
        writeln!(w, "iocd: warning: {path}:{}: skipped: {}", e.line, e.reason)?;
    }
    if s.count > s.examples.len() {
        writeln!(
            w,
            "iocd: warning: {path}: {} more skipped entries",
            s.count - s.examples.len()
        )?;
    }
    Ok(())
}

/// One line about the built engine.
pub fn write_engine_summary(
    w: &mut impl Write,
    stats: &EngineStats,
    build_secs: f64,
) -> std::io::Result<()> {
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
