//! The daemon's TOML configuration: named feeds, allowlists, sources and
//! sinks (closed sets of component types), plus engine, reload, metrics and
//! log settings. Unknown keys are rejected, and every error names the key's
//! path (`sources.syslog.adress`) and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Indicator feeds, by name: a file or a directory, watched for changes.
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedConfig>,
    /// TAXII 2.1 collections, by name: polled feeds of STIX indicators.
    #[serde(default)]
    pub taxii: BTreeMap<String, TaxiiConfig>,
    /// Allowlists, by name: indicators they cover are never loaded.
    #[serde(default)]
    pub allowlists: BTreeMap<String, FeedConfig>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Where file sources keep their offsets across restarts.
    pub state_dir: Option<PathBuf>,
    /// Seconds SIGTERM/SIGINT may take to drain before iocd gives up.
    #[serde(default = "defaults::grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Set by [`Config::embedded_default`]: match with the built-in example feed.
    #[serde(skip)]
    pub example_feed: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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

/// A TAXII 2.1 collection polled for STIX indicators.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TaxiiConfig {
    /// `http://host:port/api-root/collections/ID/`
    pub url: String,
    #[serde(default = "defaults::poll_interval_secs")]
    pub poll_interval_secs: u64,
    #[serde(default = "defaults::request_timeout_secs")]
    pub timeout_secs: u64,
    /// Objects per page (`limit`).
    #[serde(default = "defaults::page_size")]
    pub page_size: usize,
    /// Basic authentication (or set IOCD_TAXII_USER / IOCD_TAXII_PASSWORD).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Bearer token (or set IOCD_TAXII_TOKEN).
    pub token: Option<String>,
    /// PEM CA file to verify an https server with (default: the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl TaxiiConfig {
    pub fn collection(&self) -> crate::taxii::Collection {
        use crate::taxii::Auth;
        let auth = match (&self.token, &self.username, &self.password) {
            (Some(t), _, _) => Auth::Bearer(t.clone()),
            (None, Some(u), Some(p)) => Auth::Basic {
                user: u.clone(),
                password: p.clone(),
            },
            _ => Auth::from_env(),
        };
        crate::taxii::Collection {
            url: self.url.clone(),
            auth,
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            page_size: self.page_size,
            ca_file: self.ca_file.clone(),
        }
    }
}

/// Where log lines come from. Every source is named in hits as `input`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Stdin {},
    /// A file followed like `tail -F`.
    File {
        path: PathBuf,
        #[serde(default)]
        start_at: StartAt,
    },
    /// TCP, newline-framed or RFC 6587 octet-counted.
    Tcp {
        address: SocketAddr,
        #[serde(default = "defaults::max_connections")]
        max_connections: usize,
        #[serde(default)]
        framing: Framing,
    },
    /// UDP, one or more lines per datagram.
    Udp {
        address: SocketAddr,
    },
    /// A Unix socket, stream or datagram.
    Unix {
        path: PathBuf,
        #[serde(default)]
        mode: UnixMode,
        #[serde(default = "defaults::max_connections")]
        max_connections: usize,
        #[serde(default)]
        framing: Framing,
    },
}

/// How a stream is cut into messages.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// RFC 6587 octet counting when a connection starts with `LEN SP <`, else newlines.
    #[default]
    Auto,
    Newline,
    OctetCounting,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written after iocd starts (when no offset is remembered).
    #[default]
    End,
    Beginning,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnixMode {
    #[default]
    Stream,
    Datagram,
}

/// Where hits go.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    Stdout {
        #[serde(default)]
        format: HitFormat,
    },
    /// JSON lines appended to a file, reopened on SIGUSR1 or when rotated away.
    File {
        path: PathBuf,
        #[serde(default)]
        format: HitFormat,
    },
    /// Batched POSTs with retry and exponential backoff.
    Http {
        url: String,
        #[serde(default)]
        format: HitFormat,
        #[serde(default)]
        encoding: HttpEncoding,
        /// Extra headers, e.g. `Authorization`.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default = "defaults::batch_max_events")]
        batch_max_events: usize,
        #[serde(default = "defaults::batch_timeout_ms")]
        batch_timeout_ms: u64,
        /// Hits held while the server is down; past this, backpressure.
        #[serde(default = "defaults::buffer_max_events")]
        buffer_max_events: usize,
        #[serde(default = "defaults::request_timeout_secs")]
        request_timeout_secs: u64,
        #[serde(default = "defaults::max_backoff_secs")]
        max_backoff_secs: u64,
    },
}

/// The JSON shape of a hit.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HitFormat {
    /// iocd's own shape (that of `iocd scan`, plus `event.original`).
    #[default]
    Native,
    /// Elastic Common Schema 8: `threat.enrichments[]`, `event.kind: enrichment`.
    Ecs,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array per request (`application/json`).
    JsonArray,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serves `/metrics`, `/live` and `/ready`.
    pub address: SocketAddr,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// What happens to a longer line.
    #[serde(default)]
    pub oversize: Oversize,
    /// Matcher threads (default: one per core).
    pub threads: Option<usize>,
    /// Lines per batch handed to a matcher thread.
    #[serde(default = "defaults::batch_lines")]
    pub batch_lines: usize,
    /// Batches queued between sources and matchers (the backpressure bound).
    #[serde(default = "defaults::queue_batches")]
    pub queue_batches: usize,
    #[serde(default)]
    pub bloom_min_keys: usize,
    /// Bytes of the line kept in a hit's `event.original`.
    #[serde(default = "defaults::original_max_bytes")]
    pub original_max_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_line_bytes: defaults::max_line_bytes(),
            oversize: Oversize::default(),
            threads: None,
            batch_lines: defaults::batch_lines(),
            queue_batches: defaults::queue_batches(),
            bloom_min_keys: 0,
            original_max_bytes: defaults::original_max_bytes(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// Scan the first `max_line_bytes` bytes.
    #[default]
    Truncate,
    /// Skip the line (counted).
    Drop,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload feeds at least this often, for filesystems without events (0: never).
    #[serde(default = "defaults::reload_interval_secs")]
    pub interval_secs: u64,
    /// Quiet time after the last change event before a reload.
    #[serde(default = "defaults::debounce_ms")]
    pub debounce_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            interval_secs: defaults::reload_interval_secs(),
            debounce_ms: defaults::debounce_ms(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: defaults::log_level(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

mod defaults {
    pub fn grace_secs() -> u64 {
        30
    }
    pub fn max_connections() -> usize {
        1024
    }
    pub fn batch_max_events() -> usize {
        500
    }
    pub fn batch_timeout_ms() -> u64 {
        1000
    }
    pub fn buffer_max_events() -> usize {
        100_000
    }
    pub fn request_timeout_secs() -> u64 {
        10
    }
    pub fn max_backoff_secs() -> u64 {
        30
    }
    pub fn max_line_bytes() -> usize {
        1 << 20
    }
    pub fn batch_lines() -> usize {
        1024
    }
    pub fn queue_batches() -> usize {
        64
    }
    pub fn original_max_bytes() -> usize {
        4096
    }
    pub fn page_size() -> usize {
        1000
    }
    pub fn poll_interval_secs() -> u64 {
        300
    }
    pub fn reload_interval_secs() -> u64 {
        300
    }
    pub fn debounce_ms() -> u64 {
        500
    }
    pub fn log_level() -> String {
        "info".into()
    }
}

/// A configuration that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// The key's path, e.g. `sources.syslog.address` (empty for the whole file).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The configuration used without a config file: stdin in, hits on
    /// stdout, the built-in example feed.
    pub fn embedded_default() -> Config {
        let mut c = Config {
            example_feed: true,
            shutdown_grace_secs: defaults::grace_secs(),
            ..Config::default()
        };
        c.sources.insert("stdin".into(), SourceConfig::Stdin {});
        c.sinks.insert(
            "stdout".into(),
            SinkConfig::Stdout {
                format: HitFormat::Native,
            },
        );
        c
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has unknown keys or bad values.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            path: String::new(),
            message: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates config text; `file` names it in errors.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let err = |path: String, message: String| ConfigError {
            file: file.to_owned(),
            path,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(String::new(), one_line(&e.to_string())))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            err(
                if path == "." { String::new() } else { path },
                one_line(&e.into_inner().to_string()),
            )
        })?;
        config
            .validate()
            .map_err(|(path, message)| err(path, message))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.sources.is_empty() {
            return Err(("sources".into(), "at least one source is needed".into()));
        }
        if self.sinks.is_empty() {
            return Err(("sinks".into(), "at least one sink is needed".into()));
        }
        for (name, t) in &self.taxii {
            if crate::taxii::endpoint(&t.url).is_none() {
                return Err((
                    format!("taxii.{name}.url"),
                    format!("{:?} is not an http:// or https:// collection URL", t.url),
                ));
            }
            if self.state_dir.is_none() {
                return Err((
                    format!("taxii.{name}"),
                    "a TAXII feed needs `state_dir` to keep its checkpoint and objects".into(),
                ));
            }
        }
        if self.feeds.is_empty() && self.taxii.is_empty() && !self.example_feed {
            return Err(("feeds".into(), "at least one feed is needed".into()));
        }
        let stdins = self
            .sources
            .values()
            .filter(|s| matches!(s, SourceConfig::Stdin {}))
            .count();
        if stdins > 1 {
            return Err((
                "sources".into(),
                "stdin can be read by one source only".into(),
            ));
        }
        let stdouts = self
            .sinks
            .values()
            .filter(|s| matches!(s, SinkConfig::Stdout { .. }))
            .count();
        if stdouts > 1 {
            return Err((
                "sinks".into(),
                "stdout can be written by one sink only".into(),
            ));
        }
        for (name, s) in &self.sources {
            if matches!(s, SourceConfig::File { .. }) && self.state_dir.is_none() {
                return Err((
                    format!("sources.{name}"),
                    "a file source needs `state_dir` to remember its offset across restarts".into(),
                ));
            }
        }
        for (name, s) in &self.sinks {
            if let SinkConfig::Http {
                url,
                batch_max_events,
                buffer_max_events,
                ..
            } = s
            {
                let at = |k: &str| format!("sinks.{name}.{k}");
                if !url.starts_with("http://") {
                    return Err((at("url"), format!("{url:?}: only http:// URLs are supported (put a TLS proxy in front for https)")));
                }
                if crate::sinks::http::Target::parse(url).is_none() {
                    return Err((at("url"), format!("{url:?} is not a valid http:// URL")));
                }
                if *batch_max_events == 0 || buffer_max_events < batch_max_events {
                    return Err((
                        at("buffer_max_events"),
                        "must be at least batch_max_events, which must be at least 1".into(),
                    ));
                }
            }
        }
        let e = &self.engine;
        if e.max_line_bytes == 0
            || e.batch_lines == 0
            || e.queue_batches == 0
            || e.threads == Some(0)
        {
            return Err((
                "engine".into(),
                "max_line_bytes, batch_lines, queue_batches and threads must be at least 1".into(),
            ));
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err((
                "log.level".into(),
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}

/// toml's messages quote the source over several lines; one line reads
/// better in a log and keeps the line number.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    lines.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "/var/lib/iocd"
[feeds.local]
path = "feeds/"
[allowlists.top]
path = "allow/"
[sources.syslog]
type = "tcp"
address = "127.0.0.1:5140"
[sources.app]
type = "file"
path = "/var/log/app.log"
start_at = "beginning"
[sources.dgram]
type = "unix"
path = "/run/iocd.sock"
mode = "datagram"
[sinks.alerts]
type = "file"
path = "hits.jsonl"
format = "ecs"
[sinks.siem]
type = "http"
url = "http://127.0.0.1:8080/ingest"
headers = { Authorization = "Bearer t" }
[metrics]
address = "127.0.0.1:9464"
"#;

    #[test]
    fn reads_a_full_config() {
        let c = Config::parse("iocd.toml", GOOD).unwrap();
        assert_eq!(c.feeds["local"].path, PathBuf::from("feeds/"));
        assert_eq!(
            c.sources["syslog"],
            SourceConfig::Tcp {
                address: "127.0.0.1:5140".parse().unwrap(),
                max_connections: 1024,
                framing: Framing::Auto
            }
        );
        assert_eq!(
            c.sources["app"],
            SourceConfig::File {
                path: "/var/log/app.log".into(),
                start_at: StartAt::Beginning
            }
        );
        assert!(matches!(
            c.sinks["siem"],
            SinkConfig::Http {
                batch_max_events: 500,
                ..
            }
        ));
        assert_eq!(c.engine.max_line_bytes, 1 << 20);
        assert_eq!(c.shutdown_grace_secs, 30);
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[sources.syslog]\ntype = \"tcp\"\nadress = \"127.0.0.1:1\"\n",
                "sources.syslog",
                "adress",
            ),
            (
                "[sources.s]\ntype = \"carrier-pigeon\"\n",
                "sources.s",
                "carrier-pigeon",
            ),
            // Inside a tagged component the path stops at the component; the line is named.
            (
                "[sources.s]\ntype = \"tcp\"\naddress = \"localhost:x\"\n",
                "sources.s",
                "line 7, column 1: invalid socket address",
            ),
            ("colour = 1\n", "", "colour"),
            (
                "[engine]\nmax_line_bytes = -1\n",
                "engine.max_line_bytes",
                "invalid value",
            ),
            (
                "[sinks.h]\ntype = \"http\"\nurl = \"https://x\"\n",
                "sinks.h.url",
                "only http://",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level", "loud"),
            (
                "[sources.f]\ntype = \"file\"\npath = \"/x\"\n",
                "sources.f",
                "state_dir",
            ),
        ];
        let base = "[feeds.f]\npath = \"f\"\n[sinks.out]\ntype = \"stdout\"\n[sources.in]\ntype = \"stdin\"\n";
        for (text, path, needle) in cases {
            let full = format!("{base}{text}");
            let e = Config::parse("c.toml", &full).expect_err(text);
            assert!(
                e.path.starts_with(path),
                "{text:?}: path {:?}, want {path:?} ({e})",
                e.path
            );
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn needs_sources_sinks_and_feeds() {
        for text in [
            "[sinks.o]\ntype = \"stdout\"\n[feeds.f]\npath = \"f\"\n",
            "[sources.i]\ntype = \"stdin\"\n[feeds.f]\npath = \"f\"\n",
            "[sources.i]\ntype = \"stdin\"\n[sinks.o]\ntype = \"stdout\"\n",
        ] {
            assert!(Config::parse("c.toml", text).is_err(), "{text}");
        }
        assert!(Config::embedded_default().validate().is_ok());
    }
}
