//! What an indicator is: a type, a canonical value, and where it came from.
//!
//! The types and canonical forms are those of `MATCHING.md` (the matching
//! contract); [`canon`] turns raw feed values into them. Nothing here knows how
//! indicators are matched: that is the engine's job.

pub mod canon;
pub mod guard;

use std::fmt;
use std::sync::Arc;

/// The kind of observable an indicator describes.
///
/// A closed set: every variant has a token kind in the engine (or is a
/// `string`/`regex` matched against the whole line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorType {
    /// An IPv4 address or network.
    Ipv4,
    /// An IPv6 address or network.
    Ipv6,
    /// A domain name and its subdomains.
    Domain,
    /// A URL (with or without scheme).
    Url,
    /// An email address.
    Email,
    /// An MD5 digest.
    Md5,
    /// A SHA-1 digest.
    Sha1,
    /// A SHA-256 digest.
    Sha256,
    /// A SHA-512 digest.
    Sha512,
    /// Bytes anywhere in a line.
    String,
    /// A regular expression over the line.
    Regex,
}

impl IndicatorType {
    /// Every type, in a fixed order (used for per-type counters).
    pub const ALL: [IndicatorType; 11] = [
        Self::Ipv4,
        Self::Ipv6,
        Self::Domain,
        Self::Url,
        Self::Email,
        Self::Md5,
        Self::Sha1,
        Self::Sha256,
        Self::Sha512,
        Self::String,
        Self::Regex,
    ];

    /// The name used in hits and typed feeds (`ipv4-addr`, `domain-name`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4-addr",
            Self::Ipv6 => "ipv6-addr",
            Self::Domain => "domain-name",
            Self::Url => "url",
            Self::Email => "email-addr",
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::String => "string",
            Self::Regex => "regex",
        }
    }

    /// Parses a type name as written in typed lists (the names of [`Self::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The hash type of a hex digest of `len` characters, if it is one.
    pub fn hash_for_hex_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Self::Md5),
            40 => Some(Self::Sha1),
            64 => Some(Self::Sha256),
            128 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Index into [`Self::ALL`], for per-type counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for IndicatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feed as hits name it: the configured feed, and the file in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeedId {
    /// The feed's name: its config block (`[feeds.NAME]`), or in `iocd
    /// scan` the base name of the argument. Metrics are labelled by it.
    pub name: Arc<str>,
    /// The file read, relative to the feed's root (`2024/05/iocs.txt`);
    /// the file name when the feed is one file, the URL's last segment or
    /// the MISP event file for a feed fetched over HTTP.
    pub file: Arc<str>,
}

impl FeedId {
    /// The feed `name`'s file `file`.
    pub fn new(name: &str, file: &str) -> FeedId {
        FeedId {
            name: Arc::from(name),
            file: Arc::from(file),
        }
    }

    /// A feed of one file named like the feed.
    pub fn single(name: &str) -> FeedId {
        let name: Arc<str> = Arc::from(name);
        FeedId {
            file: name.clone(),
            name,
        }
    }
}

impl fmt::Display for FeedId {
    /// `name`, or `name (file)` when the file is named otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.file {
            f.write_str(&self.name)
        } else {
            write!(f, "{} ({})", self.name, self.file)
        }
    }
}

/// Where an indicator came from: carried into every hit so an analyst can
/// trace an alert back to the feed entry that raised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The feed and file (shared by every indicator of that file).
    pub feed: Arc<FeedId>,
    /// 1-based line of the entry in the feed file (0 when not line-based).
    pub line: u32,
    /// What the format says about the entry (Zeek `meta.source`, CSV tags,
    /// LOKI comment, ...), as ordered key/value pairs.
    pub meta: Vec<(Box<str>, Box<str>)>,
}

/// One indicator of compromise: a type, its canonical value and provenance.
///
/// Invariant: `value` is already canonical for `kind` (see [`canon`]), so two
/// indicators describing the same observable have equal `(kind, value)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    /// What kind of observable it is.
    pub kind: IndicatorType,
    /// The canonical value.
    pub value: Box<str>,
    /// Where it came from.
    pub provenance: Provenance,
}

impl Indicator {
    /// True for `a.b.c.d/n` and `addr/n` values, which match by containment.
    pub fn is_cidr(&self) -> bool {
        matches!(self.kind, IndicatorType::Ipv4 | IndicatorType::Ipv6) && self.value.contains('/')
    }
}
