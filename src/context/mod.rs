//! Context from the line: what a hit can say besides the indicator, read
//! from the line that matched and from where it came. Only lines with a hit
//! are parsed, so none of this is on the hot path of a line without one.
//!
//! Parsing never changes what matches: the engine always scans the whole
//! line (`MATCHING.md`); the context only makes the report richer.

pub mod json;
pub mod syslog;

use std::net::SocketAddr;

use serde::Deserialize;

pub use json::JsonLeaves;
pub use syslog::SyslogHeader;

/// `parse` of a source: how its lines are read for context. A closed set.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// No parsing: the line is only matched.
    #[default]
    None,
    /// A syslog header (RFC 5424, or RFC 3164 / BSD, with or without its
    /// `<PRI>`), giving `log.syslog.*` and the event's own time.
    Syslog,
    /// Syslog when the line starts with `<PRI>`; otherwise none.
    Auto,
    /// A JSON object (Zeek JSON, Suricata EVE, ECS): a hit names the field
    /// that held the matched token (`matched.field`).
    Json,
}

/// What is known of one line with hits, for every hit of it.
#[derive(Clone, Debug, Default)]
pub struct LineContext<'a> {
    /// The peer that sent it (TCP connection, UDP datagram).
    pub peer: Option<SocketAddr>,
    /// The file it was read from and the byte offset of its first byte.
    pub file: Option<(&'a str, u64)>,
    /// Its syslog header, when the source parses syslog and it has one.
    pub syslog: Option<SyslogHeader<'a>>,
    /// Its JSON fields, when the source parses JSON and it is an object.
    pub json: Option<JsonLeaves>,
    /// The subject of the TLS client certificate it came with (mTLS).
    pub tls_client: Option<&'a str>,
}

impl<'a> LineContext<'a> {
    /// Parses `line` as `format` says, keeping `peer` and `file`.
    pub fn read(
        line: &'a [u8],
        format: LineFormat,
        peer: Option<SocketAddr>,
        file: Option<(&'a str, u64)>,
    ) -> LineContext<'a> {
        let (syslog, json) = match format {
            LineFormat::None => (None, None),
            LineFormat::Syslog => (SyslogHeader::parse(line, false), None),
            LineFormat::Auto => (SyslogHeader::parse(line, true), None),
            LineFormat::Json => (None, JsonLeaves::parse(line)),
        };
        LineContext {
            peer,
            file,
            syslog,
            json,
            tls_client: None,
        }
    }

    /// The JSON field whose value holds bytes `start..end` of the line.
    pub fn field(&self, start: u32, end: u32) -> Option<&str> {
        self.json.as_ref()?.field(start as usize, end as usize)
    }
}
