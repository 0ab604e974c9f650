//! Feed readers: bytes of a feed file in, indicators and skipped entries out.
//!
//! Line formats (plain lists, Zeek intel, CSV) are one module each with a
//! `parse(&FeedContext, &str) -> Parsed` function that does no I/O. JSON is
//! parsed once and dispatched by its structure ([`json`]) to the STIX, MISP
//! or warninglist reader, each taking the parsed value. [`parse_with`] picks
//! the reader; [`load_path`] reads files and directories. Adding a format is
//! one module and one arm in [`Format`].
//!
//! A bad entry never fails a feed: it is skipped, counted by
//! [`SkipReason`], and the first few are kept with their line and reason so
//! the operator can fix the feed. Indicators too broad to match
//! ([`crate::indicator::guard`]) are skipped the same way, in every format.

mod csv;
pub mod json;
pub mod misp;
pub mod openioc;
mod plain;
pub mod stix;
pub mod types;
pub mod walk;
pub mod warninglist;
mod zeek;

pub mod allowlist;

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::indicator::canon::Canonical;
use crate::indicator::guard::{regex_cost, too_broad, GuardPolicy, MIN_REGEX_MB_PER_S};
use crate::indicator::{FeedId, Indicator, IndicatorType, Provenance};

/// How many skipped entries per feed are kept with their line and reason.
pub const SKIP_EXAMPLES: usize = 5;

/// Longest skip reason kept, in bytes.
pub const REASON_MAX: usize = 200;

/// The feed formats iocd reads. Closed: a new format is a new variant.
/// Named in configs and `scan --format` as [`Format`]'s `Display` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Format {
    /// One value a line, typed by shape; also typed lists, hosts files, LOKI.
    Plain,
    /// Zeek intel framework files (`#fields indicator indicator_type ...`).
    Zeek,
    /// CSV with a header naming a value column (or TweetFeed's headerless CSV).
    Csv,
    /// STIX 2.x JSON: a bundle, an indicator object or an array of them.
    Stix,
    /// MISP event JSON (`{"Event": ...}` or a REST `{"response": [...]}`).
    Misp,
    /// A MISP warninglist (`{"list": [...], "type": ...}`); allowlists only.
    Warninglist,
    /// OpenIOC 1.0/1.1 XML.
    OpenIoc,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Plain => "plain",
            Format::Zeek => "zeek-intel",
            Format::Csv => "csv",
            Format::Stix => "stix",
            Format::Misp => "misp",
            Format::Warninglist => "misp-warninglist",
            Format::OpenIoc => "openioc",
        })
    }
}

impl Format {
    /// Every format, for names and errors.
    pub const ALL: [Format; 7] = [
        Format::Plain,
        Format::Zeek,
        Format::Csv,
        Format::Stix,
        Format::Misp,
        Format::Warninglist,
        Format::OpenIoc,
    ];
}

impl std::str::FromStr for Format {
    type Err = String;

    /// A format by its name (`plain`, `zeek-intel`, `csv`, `stix`, `misp`,
    /// `misp-warninglist`, `openioc`).
    fn from_str(name: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.to_string() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Format::ALL.iter().map(ToString::to_string).collect();
                format!("{name:?} is not a feed format ({})", names.join(", "))
            })
    }
}

impl TryFrom<String> for Format {
    type Error = String;

    fn try_from(name: String) -> Result<Format, String> {
        name.parse()
    }
}

thread_local! {
    static KEEP_EVERY_SKIP: Cell<bool> = const { Cell::new(false) };
}

/// Keep every skipped entry with its reason on this thread, not only the
/// first [`SKIP_EXAMPLES`]: `iocd lookup` and `explain` say why a given
/// value is not loaded. The daemon never sets it (memory would follow the
/// size of a bad feed).
pub fn keep_every_skip(on: bool) {
    KEEP_EVERY_SKIP.with(|k| k.set(on));
}

/// An entry a reader could not turn into an indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line of the entry in its file (0 when the format has no lines).
    pub line: u32,
    /// Why it was skipped.
    pub reason: String,
}

/// The skipped entries of one feed: all counted, the first few kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipLog {
    /// Entries skipped in all.
    pub count: usize,
    /// The first [`SKIP_EXAMPLES`] skipped, with line and reason.
    pub examples: Vec<Skipped>,
    /// Counts by reason, for metrics.
    pub by_reason: std::collections::BTreeMap<SkipReason, usize>,
}

/// Why a feed entry was skipped: a closed set, each owning its metric label
/// (`iocd_feed_entries_skipped{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Not a valid value of its type, or a malformed entry.
    Invalid,
    /// A plain-list value with no indicator shape (strings must be typed).
    NoShape,
    /// Too broad to match (`MATCHING.md`): a short network, special-purpose
    /// space, a short string, an empty-matching regex.
    TooBroad,
    /// A regex too costly to run on every line (its compiled size).
    TooCostly,
    /// A revoked STIX indicator.
    Revoked,
    /// A STIX indicator past its `valid_until`.
    Expired,
    /// A STIX indicator before its `valid_from`.
    NotYetValid,
    /// A STIX pattern iocd cannot turn into indicators.
    UnsupportedPattern,
    /// A `pattern_type` other than `stix`.
    UnsupportedPatternType,
    /// A MISP attribute not marked `to_ids`.
    NotForDetection,
    /// A MISP attribute type iocd does not match on.
    UnsupportedType,
}

impl SkipReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Invalid => "invalid",
            SkipReason::NoShape => "no_shape",
            SkipReason::TooBroad => "too_broad",
            SkipReason::TooCostly => "too_costly",
            SkipReason::Revoked => "revoked",
            SkipReason::Expired => "expired",
            SkipReason::NotYetValid => "not_yet_valid",
            SkipReason::UnsupportedPattern => "unsupported_pattern",
            SkipReason::UnsupportedPatternType => "unsupported_pattern_type",
            SkipReason::NotForDetection => "not_for_detection",
            SkipReason::UnsupportedType => "unsupported_type",
        }
    }
}

impl SkipLog {
    /// Counts a skipped entry; keeps its reason (cut to [`REASON_MAX`]
    /// bytes, so a megabyte-long bad line stays a readable warning) while
    /// fewer than [`SKIP_EXAMPLES`] are kept.
    pub fn push(&mut self, line: u32, reason: impl Into<String>) {
        self.push_reason(line, SkipReason::Invalid, reason);
    }

    /// [`Self::push`] with a reason other than [`SkipReason::Invalid`].
    pub fn push_reason(&mut self, line: u32, kind: SkipReason, reason: impl Into<String>) {
        *self.by_reason.entry(kind).or_default() += 1;
        self.count += 1;
        if self.examples.len() < SKIP_EXAMPLES || KEEP_EVERY_SKIP.with(Cell::get) {
            let mut reason = reason.into();
            if reason.len() > REASON_MAX {
                let cut = (0..=REASON_MAX)
                    .rev()
                    .find(|&i| reason.is_char_boundary(i))
                    .unwrap_or(0);
                reason.truncate(cut);
                reason.push_str("...");
            }
            self.examples.push(Skipped { line, reason });
        }
    }

    /// Adds the skips of a later part of the same feed.
    pub fn merge(&mut self, later: SkipLog) {
        self.count += later.count;
        for (k, n) in later.by_reason {
            *self.by_reason.entry(k).or_default() += n;
        }
        let room = if KEEP_EVERY_SKIP.with(Cell::get) {
            usize::MAX
        } else {
            SKIP_EXAMPLES.saturating_sub(self.examples.len())
        };
        self.examples.extend(later.examples.into_iter().take(room));
    }
}

/// What a reader gets besides the text: the feed's name, shared by every
/// indicator's provenance.
pub struct FeedContext {
    /// The feed and file, carried by every indicator read.
    pub feed: Arc<FeedId>,
}

impl FeedContext {
    /// A context for a feed of one file named `name` (tests, examples).
    pub fn named(name: &str) -> FeedContext {
        FeedContext {
            feed: Arc::new(FeedId::single(name)),
        }
    }

    /// Attaches provenance to a canonical value.
    pub fn indicator(
        &self,
        (kind, value): Canonical,
        line: u32,
        meta: Vec<(Box<str>, Box<str>)>,
    ) -> Indicator {
        Indicator {
            kind,
            value: value.into_boxed_str(),
            provenance: Provenance {
                feed: self.feed.clone(),
                line,
                meta,
            },
        }
    }
}

/// The result of reading one feed file.
#[derive(Debug)]
pub struct Parsed {
    /// The indicators read.
    pub indicators: Vec<Indicator>,
    /// The entries that could not be used.
    pub skipped: SkipLog,
}

/// One loaded feed: its name, path, format and content.
#[derive(Clone, Debug)]
pub struct Feed {
    /// The feed and file, carried by its indicators' hits.
    pub id: Arc<FeedId>,
    /// The file read.
    pub path: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// What it holds (before allowlists).
    pub indicators: Vec<Indicator>,
    /// Entries skipped, counted by reason.
    pub skipped: SkipLog,
    /// Warninglist rules, when `format` is [`Format::Warninglist`].
    pub warninglist: Option<warninglist::Warninglist>,
    /// Why the file as a whole is not a usable feed (an HTML error page, a
    /// warninglist that is not JSON, nothing but bad entries). A daemon keeps
    /// the last good version of such a feed.
    pub failure: Option<FeedFailure>,
    /// When the feed's content changes by itself (a STIX indicator becomes
    /// valid or expires), in Unix seconds: the engine must be rebuilt then.
    pub next_change: Option<i64>,
    /// The slowest regex kept: its measured MB/s on ordinary log lines and
    /// its line (`iocd check` shows it).
    pub slowest_regex: Option<(f64, u32)>,
}

impl Feed {
    /// Indicator counts by type, indexed by [`IndicatorType::index`].
    pub fn counts_by_type(&self) -> [usize; IndicatorType::ALL.len()] {
        let mut counts = [0; IndicatorType::ALL.len()];
        for i in &self.indicators {
            counts[i.kind.index()] += 1;
        }
        counts
    }
}

/// Why a file as a whole is not a usable feed. A daemon keeps such a
/// file's last good content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedFailure {
    /// An HTML page: a failed download saved over the feed.
    Html,
    /// A binary file (a NUL byte in its first KiB).
    Binary,
    /// A file larger than its feed's `max_bytes`, not read.
    TooLarge(u64),
    /// XML that does not parse: the message.
    InvalidXml(String),
    /// Well-formed XML that is not OpenIOC: its root element.
    XmlNotAFeed(String),
    /// JSON that does not parse (serde's message names line and column).
    InvalidJson(String),
    /// JSON that is no format iocd reads.
    JsonNotAFeed,
    /// A warninglist whose fields are wrong.
    BadWarninglist(String),
    /// A line-based file with entries, none of them usable (this many).
    NoUsableEntry(usize),
}

impl fmt::Display for FeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedFailure::Html => f.write_str("an HTML page, not a feed (a failed download?)"),
            FeedFailure::Binary => f.write_str("a binary file (NUL bytes), not a feed"),
            FeedFailure::TooLarge(max) => write!(f, "larger than max_bytes ({max}), not read"),
            FeedFailure::InvalidXml(e) => write!(f, "invalid XML: {e}"),
            FeedFailure::XmlNotAFeed(root) => {
                write!(f, "XML with root <{root}>, not OpenIOC: not a feed")
            }
            FeedFailure::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            FeedFailure::JsonNotAFeed => {
                f.write_str("JSON, but not STIX, MISP or a MISP warninglist")
            }
            FeedFailure::BadWarninglist(e) => write!(f, "not a MISP warninglist: {e}"),
            FeedFailure::NoUsableEntry(n) => write!(f, "no usable entry ({n} skipped)"),
        }
    }
}

impl std::error::Error for FeedFailure {}

/// A feed that could not be read at all (missing, unreadable, not a file).
#[derive(Debug)]
pub struct FeedError {
    /// The path that could not be read.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read feed {}: {}",
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for FeedError {}

/// Detects the format of a line-based feed from its first meaningful lines.
/// (JSON is told apart by its structure: see [`json`].)
pub fn detect(text: &str) -> Format {
    if text.lines().take(8).any(|l| l.starts_with("#fields")) {
        return Format::Zeek;
    }
    if csv::looks_like(text) {
        return Format::Csv;
    }
    Format::Plain
}

/// Parses feed text (named `name` in provenance) in the format detected from
/// it. Time-dependent formats (STIX validity) are judged as of now.
pub fn parse(name: &str, path: &Path, text: &str) -> Feed {
    parse_with(
        FeedId::single(name),
        path,
        text,
        &ParseOptions::default(),
        unix_now(),
    )
}

/// Choices a feed's configuration can make about its content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Load MISP attributes not marked `to_ids` too (default: only `to_ids`).
    pub misp_all_attributes: bool,
    /// Which "too broad to match" rules apply ([`GuardPolicy::Off`] for
    /// allowlists, whose entries are not indicators).
    pub guard: GuardPolicy,
    /// Read as this format instead of detecting it from the content.
    pub format: Option<Format>,
}

impl ParseOptions {
    /// These options for reading an allowlist: no breadth guard.
    pub fn for_allowlist(&self) -> ParseOptions {
        ParseOptions {
            guard: GuardPolicy::Off,
            ..self.clone()
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// [`parse`] with options, as of `now` (Unix seconds).
pub fn parse_with(id: FeedId, path: &Path, text: &str, options: &ParseOptions, now: i64) -> Feed {
    let ctx = FeedContext { feed: Arc::new(id) };
    let empty = || Parsed {
        indicators: Vec::new(),
        skipped: SkipLog::default(),
    };
    let mut warninglist = None;
    let mut next_change = None;
    if misp::looks_like_hashes_index(text) {
        let mut skipped = SkipLog::default();
        skipped.push(
            1,
            "a MISP feed's hashes.csv: an index of attribute hashes, not indicators",
        );
        return Feed {
            id: ctx.feed,
            path: path.to_owned(),
            format: Format::Misp,
            indicators: Vec::new(),
            skipped,
            warninglist: None,
            failure: None,
            next_change: None,
            slowest_regex: None,
        };
    }
    // A file that is not a usable feed at all: one skip naming why, and a
    // failure, so a daemon keeps the file's last good content.
    let broken = |line: u32, why: FeedFailure| {
        let mut p = empty();
        p.skipped.push(line, why.to_string());
        (p, Some(why))
    };
    let forced = options.format;
    let (format, (mut parsed, mut failure)) = if is_binary(text) {
        (Format::Plain, broken(1, FeedFailure::Binary))
    } else if looks_like_html(text) {
        (Format::Plain, broken(1, FeedFailure::Html))
    } else if forced.map_or_else(
        || json::must_be_json(text),
        |f| matches!(f, Format::Stix | Format::Misp | Format::Warninglist),
    ) {
        let forced_kind = forced.map(|f| match f {
            Format::Stix => json::JsonKind::Stix,
            Format::Misp => json::JsonKind::Misp,
            _ => json::JsonKind::Warninglist,
        });
        match serde_json::from_str::<serde_json::Value>(text) {
            Err(e) => (
                forced.unwrap_or(Format::Plain),
                broken(e.line() as u32, FeedFailure::InvalidJson(e.to_string())),
            ),
            Ok(root) => match forced_kind.or_else(|| json::kind(&root)) {
                Some(json::JsonKind::Stix) => {
                    let (p, next) = stix::parse_value(&ctx, &root, now);
                    next_change = next;
                    (Format::Stix, (p, None))
                }
                Some(json::JsonKind::Misp) => (
                    Format::Misp,
                    (
                        misp::parse_value(&ctx, &root, options.misp_all_attributes),
                        None,
                    ),
                ),
                // An index of a feed's events or bundles: nothing to load, no failure.
                Some(json::JsonKind::MispManifest) => (Format::Misp, (empty(), None)),
                Some(json::JsonKind::StixIndex) => (Format::Stix, (empty(), None)),
                Some(json::JsonKind::Warninglist) => {
                    match serde_json::from_value::<warninglist::Warninglist>(root) {
                        Ok(w) => {
                            warninglist = Some(w);
                            (Format::Warninglist, (empty(), None))
                        }
                        Err(e) => (
                            Format::Warninglist,
                            broken(1, FeedFailure::BadWarninglist(e.to_string())),
                        ),
                    }
                }
                None => (Format::Plain, broken(1, FeedFailure::JsonNotAFeed)),
            },
        }
    } else if forced.map_or_else(|| openioc::looks_like_xml(text), |f| f == Format::OpenIoc) {
        match openioc::parse(&ctx, text) {
            Ok(p) => (Format::OpenIoc, (p, None)),
            Err(openioc::NotOpenIoc::Invalid(e, line)) => {
                (Format::OpenIoc, broken(line, FeedFailure::InvalidXml(e)))
            }
            Err(openioc::NotOpenIoc::OtherRoot(root)) => {
                (Format::OpenIoc, broken(1, FeedFailure::XmlNotAFeed(root)))
            }
        }
    } else {
        let format = forced.unwrap_or_else(|| detect(text));
        let parsed = match format {
            Format::Zeek => zeek::parse(&ctx, text),
            Format::Csv => csv::parse(&ctx, text),
            _ => plain::parse(&ctx, text),
        };
        (format, (parsed, None))
    };
    // A line-based feed in which nothing at all could be used is broken too.
    // JSON formats judge for themselves: a STIX bundle whose indicators have
    // all expired is legitimately empty.
    let line_based = matches!(format, Format::Plain | Format::Zeek | Format::Csv);
    if failure.is_none() && line_based && parsed.indicators.is_empty() && parsed.skipped.count > 0 {
        failure = Some(FeedFailure::NoUsableEntry(parsed.skipped.count));
    }
    // After the failure verdict: a feed of nothing but private addresses is
    // a feed that loads nothing, not a broken download to fall back from.
    let slowest_regex = drop_too_broad(&mut parsed, options.guard);
    let skipped = std::mem::take(&mut parsed.skipped);
    Feed {
        id: ctx.feed,
        path: path.to_owned(),
        format,
        indicators: parsed.indicators,
        skipped,
        warninglist,
        failure,
        next_change,
        slowest_regex,
    }
}

/// Removes the indicators too broad to match (`MATCHING.md`, "Indicators
/// too broad to match") and the regexes too costly to run, each a skipped
/// entry with its line and reason.
///
/// Returns the slowest regex kept: its measured MB/s and line.
fn drop_too_broad(parsed: &mut Parsed, policy: GuardPolicy) -> Option<(f64, u32)> {
    if policy == GuardPolicy::Off {
        return None;
    }
    let skipped = &mut parsed.skipped;
    let mut slowest: Option<(f64, u32)> = None;
    parsed.indicators.retain(|i| {
        let why = match too_broad(i.kind, &i.value, policy) {
            Some(why) => Some((SkipReason::TooBroad, why.to_string())),
            None if i.kind == IndicatorType::Regex => {
                match regex_cost(&i.value, MIN_REGEX_MB_PER_S) {
                    Ok(mb_s) => {
                        if slowest.is_none_or(|(s, _)| mb_s < s) {
                            slowest = Some((mb_s, i.provenance.line));
                        }
                        None
                    }
                    Err(why) => Some((SkipReason::TooCostly, why)),
                }
            }
            None => None,
        };
        match why {
            None => true,
            Some((reason, why)) => {
                skipped.push_reason(
                    i.provenance.line,
                    reason,
                    format!("{} {}: {why}", i.kind, i.value),
                );
                false
            }
        }
    });
    slowest
}

/// A binary file (a NUL byte in the first KiB): an archive, an executable,
/// random bytes. Read as a plain list, its lines would be noise.
fn is_binary(text: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(1024)];
    memchr::memchr(0, head).is_some()
}

/// An HTML page (what a failed feed download often leaves) is not a feed:
/// read as a plain list, its lines would become `string` indicators.
fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// The files a feed path stands for: the file itself, or every wanted
/// regular file below a directory ([`walk`], default filter), in path order.
///
/// # Errors
/// The path cannot be read.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, FeedError> {
    walk::list(path, &walk::FileFilter::default()).map(|l| l.files)
}

/// How hits name `file` found under the feed path `root` (`feed_file`):
/// its path below the root (`2024/05/iocs.txt`), so same-named files in
/// different folders stay distinct, or its file name when it is the root.
pub fn feed_file(root: &Path, file: &Path) -> String {
    match file.strip_prefix(root) {
        Ok(rel) if rel.components().count() > 0 => rel.display().to_string(),
        _ => base_name(file),
    }
}

/// A path's last component (`iocs` for `feeds/iocs/`), or the whole path
/// when it has none: the name `iocd scan` gives a feed argument.
pub fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads a file as text (invalid UTF-8 replaced).
///
/// # Errors
/// The file cannot be read.
pub fn read_text(file: &Path) -> Result<String, FeedError> {
    read_text_max(file, u64::MAX)
}

/// [`read_text`], refusing a file larger than `max_bytes` (read no
/// further than that, whatever the file claims or grows to).
///
/// # Errors
/// The file cannot be read, or is larger than `max_bytes` (a file that
/// grew past it while read; [`FeedFailure::TooLarge`] is for one already
/// larger).
pub fn read_text_max(file: &Path, max_bytes: u64) -> Result<String, FeedError> {
    use std::io::Read;
    let fail = |error| FeedError {
        path: file.to_owned(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(fail)?;
    if bytes.len() as u64 > max_bytes {
        return Err(fail(std::io::Error::other(format!(
            "larger than max_bytes ({max_bytes})"
        ))));
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
/// Reads a feed file, or every wanted regular file below a directory (in
/// path order, recursing): the feed named by the path's [`base_name`], each
/// file named by [`feed_file`].
///
/// # Errors
/// When the path (or a file in the directory) cannot be read at all. Content
/// problems are never errors: they are skipped entries.
pub fn load_path(path: &Path) -> Result<Vec<Feed>, FeedError> {
    load_path_with(path, &ParseOptions::default())
}

/// [`load_path`] with parse options.
///
/// # Errors
/// As [`load_path`].
pub fn load_path_with(path: &Path, options: &ParseOptions) -> Result<Vec<Feed>, FeedError> {
    let now = unix_now();
    let name = base_name(path);
    list_files(path)?
        .into_iter()
        .map(|file| {
            Ok(parse_with(
                FeedId::new(&name, &feed_file(path, &file)),
                &file,
                &read_text(&file)?,
                options,
                now,
            ))
        })
        .collect()
}

/// Splits text into lines as `MATCHING.md` does for feeds: at `\n`, one
/// trailing `\r` removed, numbered from 1.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| ((i + 1) as u32, l.strip_suffix('\r').unwrap_or(l)))
}

/// What reader tests look at: (type, value) pairs and metadata by key.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;

    use crate::indicator::Indicator;

    pub fn pairs(indicators: &[Indicator]) -> Vec<(&str, &str)> {
        indicators
            .iter()
            .map(|i| (i.kind.as_str(), &*i.value))
            .collect()
    }

    pub fn meta(indicator: &Indicator) -> HashMap<&str, &str> {
        indicator
            .provenance
            .meta
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multi-byte character across byte 65,536 once panicked the format
    /// sniffers (a slice at a fixed offset); JSON is now parsed whole.
    #[test]
    fn multibyte_character_across_64_kib_and_keys_in_any_order() {
        for (open, close) in [
            (
                "{\"objects\": [",
                "], \"type\": \"bundle\", \"id\": \"bundle--1\"}",
            ),
            ("", ""),
        ] {
            let mut text = open.to_owned();
            let object = r#"{"type":"indicator","spec_version":"2.1","id":"indicator--ID","pattern":"[domain-name:value = 'nNUM.example']","valid_from":"2020-01-01T00:00:00Z","name":"PAD"},"#;
            let object = |n: usize, pad: &str| {
                object
                    .replace("ID", &format!("{n:08}"))
                    .replace("NUM", &n.to_string())
                    .replace("PAD", pad)
            };
            let mut n = 0;
            while text.len() + 2 * object(n, "").len() < 65_536 {
                text.push_str(&object(n, ""));
                n += 1;
            }
            // Pad the next name so that `é` starts at byte 65,535.
            let at = text.len() + object(n, "PAD").find("PAD").unwrap();
            text.push_str(&object(n, &("x".repeat(65_535 - at) + "é")));
            n += 1;
            while text.len() < 70_000 {
                text.push_str(&object(n, ""));
                n += 1;
            }
            assert!(
                !text.is_char_boundary(65_536),
                "the test must split a character"
            );
            if open.is_empty() {
                // The same bytes as a plain list: no JSON, no panic.
                let feed = parse("p.txt", Path::new("p.txt"), &text);
                assert!(feed.indicators.is_empty());
                continue;
            }
            text.pop();
            text.push_str(close);
            let feed = parse("s.json", Path::new("s.json"), &text);
            assert_eq!(feed.format, Format::Stix);
            assert_eq!(feed.indicators.len(), n, "{:?}", feed.skipped.examples);
            assert!(feed.failure.is_none());
        }
    }

    #[test]
    fn a_format_override_decides_where_content_cannot() {
        // A Zeek file whose header was cut off reads as a plain list...
        let text = "198.51.100.7\tIntel::ADDR\tsrc\nevil.example\tIntel::DOMAIN\tsrc\n";
        let plain = parse("z", Path::new("z"), text);
        assert_eq!(plain.format, Format::Plain);
        // ...and a JSON feed of no known shape is refused; forcing says what it is.
        let stix = r#"{"objects": [{"type": "indicator", "id": "indicator--1", "pattern": "[domain-name:value = 'forced.example']", "valid_from": "2020-01-01T00:00:00Z"}]}"#;
        assert!(parse("s", Path::new("s"), stix).failure.is_some());
        let options = ParseOptions {
            format: Some("stix".parse().unwrap()),
            ..ParseOptions::default()
        };
        let forced = parse_with(
            FeedId::single("s"),
            Path::new("s"),
            stix,
            &options,
            unix_now(),
        );
        assert_eq!(forced.format, Format::Stix);
        assert_eq!(
            test_support::pairs(&forced.indicators),
            [("domain-name", "forced.example")]
        );
        assert!("yaml".parse::<Format>().unwrap_err().contains("zeek-intel"));
    }

    #[test]
    fn binary_files_are_failures_not_lines() {
        let mut text = String::from("198.51.100.7\n");
        text.push_str("\0\u{1}\u{7f}PK\u{3}\u{4}evil.example\n");
        let feed = parse("blob.bin", Path::new("blob.bin"), &text);
        assert!(feed.indicators.is_empty());
        assert_eq!(feed.failure, Some(FeedFailure::Binary));
    }

    #[test]
    fn json_that_is_no_feed_is_a_failure_with_a_reason() {
        for (text, why) in [
            ("{\"a\": 1}", "JSON, but not STIX"),
            ("{\"type\": \"bundle\", \"objects\": [", "invalid JSON"),
            ("[{\"x\": 1}]", "JSON, but not STIX"),
        ] {
            let feed = parse("j.json", Path::new("j.json"), text);
            assert!(feed.indicators.is_empty());
            assert!(
                feed.failure
                    .as_ref()
                    .is_some_and(|f| f.to_string().starts_with(why)),
                "{text}: {:?}",
                feed.failure
            );
        }
        // A plain list may open with a bracket.
        let feed = parse("p.txt", Path::new("p.txt"), "[2001:db8::1]:443\n");
        assert_eq!(feed.indicators.len(), 1);
    }

    #[test]
    fn skip_log_keeps_few_short_reasons() {
        let mut log = SkipLog::default();
        log.push(1, "é".repeat(300));
        for n in 2..=10 {
            log.push(n, "bad");
        }
        assert_eq!(log.count, 10);
        assert_eq!(log.examples.len(), SKIP_EXAMPLES);
        assert!(
            log.examples[0].reason.len() <= REASON_MAX + 3
                && log.examples[0].reason.ends_with("...")
        );
        let mut later = SkipLog::default();
        later.push(11, "x");
        let mut first = SkipLog::default();
        first.push(1, "y");
        first.merge(later);
        assert_eq!(
            (first.count, first.examples.len(), first.examples[1].line),
            (2, 2, 11)
        );
    }
}
