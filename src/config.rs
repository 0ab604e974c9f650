//! The daemon's TOML configuration: named feeds, allowlists, sources and
//! sinks (closed sets of component types), plus engine, reload, metrics and
//! log settings. Unknown keys are rejected, and every error names the key's
//! path (`sources.syslog.adress`) and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hit::{HitFormat, OutputConfig};
use crate::load::{FeedConfig, LoadPlan};
use crate::pipeline::EngineConfig;
use crate::settings::{in_range, Invalid};
use crate::sinks::{SinkConfig, StdoutConfig};
use crate::sources::{SourceConfig, StdinConfig};
use crate::suppress::SuppressConfig;
use crate::taxii::TaxiiConfig;

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
    /// Log sources, by name (the `input` of their hits).
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    /// Hit sinks, by name; every hit goes to every sink.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// The admin endpoints (`/metrics`, `/live`, `/ready`); none when absent.
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    /// Line cutting, batching, queueing and matching (`[engine]`).
    pub engine: EngineConfig,
    #[serde(default)]
    /// How hits are shaped into documents (`[output]`).
    pub output: OutputConfig,
    /// Repeats of a hit counted instead of emitted (`[suppress]`).
    pub suppress: Option<SuppressConfig>,
    /// Lines kept to hunt new indicators in the recent past (`[retro]`).
    pub retro: Option<crate::retro::RetroConfig>,
    /// Sightings shared back (`[sightings]`).
    pub sightings: Option<crate::sightings::SightingsConfig>,
    #[serde(default)]
    /// When feeds are reloaded (`[reload]`).
    pub reload: ReloadConfig,
    #[serde(default)]
    /// iocd's own log (`[log]`).
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
/// `[metrics]`: where the admin endpoints listen, and who may ask them.
pub struct MetricsConfig {
    /// Serves `/metrics`, `/live` and `/ready` (default: loopback only,
    /// `127.0.0.1:9464`; `0.0.0.0:9464` for a Prometheus elsewhere).
    #[serde(default = "defaults::metrics_address")]
    pub address: SocketAddr,
    /// A bearer token every request must carry (`Authorization: Bearer …`):
    /// a value, `{ env = "VAR" }` or `{ file = "PATH" }`. Never logged.
    #[serde(default)]
    pub token: Option<crate::settings::Secret>,
    /// Serve over HTTPS: `{ cert_file, key_file }`, and `client_ca_file`
    /// to require client certificates (re-read when the files change).
    #[serde(default)]
    pub tls: Option<crate::sources::tls::ServerTls>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
/// `[reload]`: when feeds are read again besides file events and SIGHUP.
pub struct ReloadConfig {
    /// Reload feeds at least this often, for filesystems without events (0: never).
    #[serde(default = "defaults::reload_interval_secs")]
    pub interval_secs: u64,
    /// Quiet time after the last change event before a reload.
    #[serde(default = "defaults::debounce_ms")]
    pub debounce_ms: u64,
}

impl ReloadConfig {
    /// # Errors
    /// A setting out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        // At most a year: a longer interval is "never", which is 0.
        in_range("interval_secs", self.interval_secs, 0, 366 * 86_400)?;
        in_range("debounce_ms", self.debounce_ms, 0, 3_600_000)
    }
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            interval_secs: defaults::reload_interval_secs(),
            debounce_ms: defaults::debounce_ms(),
        }
    }
}

/// `[log]`: iocd's own log on stderr.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    /// Text or JSON lines.
    pub format: LogFormat,
    #[serde(default)]
    /// The least severe events written.
    pub level: LogLevel,
}

/// The least severe log events written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and what is kept going around them (a feed kept at its last good content).
    Warn,
    #[default]
    /// Start, reloads, polls and stops.
    Info,
    /// Per-decision detail.
    Debug,
    /// Everything.
    Trace,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
/// How iocd's own log lines are written.
pub enum LogFormat {
    #[default]
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for a log shipper.
    Json,
}

mod defaults {
    pub fn metrics_address() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 9464))
    }
    pub fn grace_secs() -> u64 {
        30
    }
    pub fn reload_interval_secs() -> u64 {
        300
    }
    pub fn debounce_ms() -> u64 {
        500
    }
}

/// A configuration that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, as given.
    pub file: String,
    /// The key's path, e.g. `sources.syslog.address` (empty for the whole file).
    pub path: String,
    /// What is wrong, on one line.
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
        c.sources
            .insert("stdin".into(), SourceConfig::Stdin(StdinConfig::default()));
        c.sinks.insert(
            "stdout".into(),
            SinkConfig::Stdout(StdoutConfig {
                format: HitFormat::Native,
            }),
        );
        c
    }

    /// What the loader reads for this configuration.
    pub fn load_plan(&self) -> LoadPlan {
        LoadPlan {
            feeds: self
                .feeds
                .iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
            taxii: self
                .taxii
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
            allowlists: self
                .allowlists
                .iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
            example_feed: self.example_feed,
            state_dir: self.state_dir.clone(),
            engine: crate::engine::EngineOptions {
                bloom_min_keys: self.engine.bloom_min_keys,
            },
        }
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
            .map_err(|Invalid { key, message }| err(key, message))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.sources.is_empty() {
            return Err(Invalid::new("sources", "at least one source is needed"));
        }
        if self.sinks.is_empty() {
            return Err(Invalid::new("sinks", "at least one sink is needed"));
        }
        for (name, t) in &self.taxii {
            t.validate()
                .map_err(|e| e.within(&format!("taxii.{name}")))?;
            if self.state_dir.is_none() {
                return Err(Invalid::new(
                    &format!("taxii.{name}"),
                    "a TAXII feed needs `state_dir` to keep its checkpoint and objects",
                ));
            }
        }
        for (table, feeds) in [("feeds", &self.feeds), ("allowlists", &self.allowlists)] {
            for (name, f) in feeds {
                f.validate()
                    .map_err(|e| e.within(&format!("{table}.{name}")))?;
            }
        }
        if let Some(tls) = self.metrics.as_ref().and_then(|m| m.tls.as_ref()) {
            tls.server_config()
                .map_err(|e| Invalid::new("metrics.tls", e))?;
        }
        if let Some(s) = &self.suppress {
            s.validate().map_err(|e| e.within("suppress"))?;
        }
        if let Some(r) = &self.retro {
            r.validate().map_err(|e| e.within("retro"))?;
        }
        if let Some(s) = &self.sightings {
            s.validate().map_err(|e| e.within("sightings"))?;
            if s.taxii.is_some() && self.state_dir.is_none() {
                return Err(Invalid::new(
                    "sightings.taxii",
                    "sightings for TAXII need `state_dir`, where they wait until the server accepts them",
                ));
            }
        }
        if self.feeds.is_empty() && self.taxii.is_empty() && !self.example_feed {
            return Err(Invalid::new("feeds", "at least one feed is needed"));
        }
        let count =
            |f: &dyn Fn(&SourceConfig) -> bool| self.sources.values().filter(|s| f(s)).count();
        if count(&|s| matches!(s, SourceConfig::Stdin(_))) > 1 {
            return Err(Invalid::new(
                "sources",
                "stdin can be read by one source only",
            ));
        }
        let stdouts = self
            .sinks
            .values()
            .filter(|s| matches!(s, SinkConfig::Stdout(_)))
            .count();
        if stdouts > 1 {
            return Err(Invalid::new(
                "sinks",
                "stdout can be written by one sink only",
            ));
        }
        for (name, s) in &self.sources {
            s.validate()
                .map_err(|e| e.within(&format!("sources.{name}")))?;
            if matches!(s, SourceConfig::File(_)) && self.state_dir.is_none() {
                return Err(Invalid::new(
                    &format!("sources.{name}"),
                    "a file source needs `state_dir` to remember its offset across restarts",
                ));
            }
        }
        for (name, s) in &self.sinks {
            s.validate()
                .map_err(|e| e.within(&format!("sinks.{name}")))?;
        }
        self.engine.validate().map_err(|e| e.within("engine"))?;
        self.reload.validate().map_err(|e| e.within("reload"))?;
        in_range("shutdown_grace_secs", self.shutdown_grace_secs, 1, 86_400)
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
            SourceConfig::Tcp(crate::sources::TcpConfig {
                address: "127.0.0.1:5140".parse().unwrap(),
                tls: None,
                allowed_peers: Vec::new(),
                max_connections: 1024,
                max_connections_per_peer: None,
                idle_timeout_secs: 600,
                evict_idle_secs: 10,
                framing: crate::sources::Framing::Auto,
                parse: Default::default(),
            })
        );
        assert_eq!(
            c.sources["app"],
            SourceConfig::File(crate::sources::FileSourceConfig {
                path: "/var/log/app.log".into(),
                start_at: crate::sources::file::StartAt::Beginning,
                follow_symlinks: false,
                parse: Default::default(),
            })
        );
        assert!(matches!(
            &c.sinks["siem"],
            SinkConfig::Http(h) if h.batch_max_events == 500
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
                "[sinks.h]\ntype = \"http\"\nurl = \"ftp://x\"\n",
                "sinks.h",
                "not an http:// or https:// URL",
            ),
            (
                "[sinks.h]\ntype = \"http\"\nurl = \"http://x/\"\nbatch_max_events = 10\nbuffer_max_events = 5\n",
                "sinks.h.buffer_max_events",
                "out of range",
            ),
            (
                "[engine]\nqueue_batches = 4611686018427387904\n",
                "engine.queue_batches",
                "out of range",
            ),
            (
                "[engine]\nbatch_lines = 9223372036854775808\n",
                "engine.batch_lines",
                "out of range",
            ),
            ("[engine]\nthreads = 100000\n", "engine.threads", "out of range"),
            (
                "[reload]\ninterval_secs = 18446744073709551615\n",
                "reload.interval_secs",
                "out of range",
            ),
            (
                "[sources.t]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nmax_connections = 0\n",
                "sources.t.max_connections",
                "out of range",
            ),
            (
                "[sources.t]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nidle_timeout_secs = 0\n",
                "sources.t.idle_timeout_secs",
                "out of range",
            ),
            (
                "[sources.t]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nmax_conections = 5\n",
                "sources.t",
                "max_conections",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level", "loud"),
            ("[feeds.u]\nmax_shrink = 0.5\n", "feeds.u.path", "a path or a url"),
            (
                "[taxii.t]\nurl = \"https://h.example/api/collections/c/\"\nusername = \"u\"\npassword = { env = \"IOCD_SURELY_UNSET_PW\" }\n",
                "taxii.t.password",
                "IOCD_SURELY_UNSET_PW",
            ),
            (
                "[feeds.u]\npath = \"x\"\nurl = \"https://h.example/a.txt\"\n",
                "feeds.u.url",
                "not both",
            ),
            (
                "[feeds.u]\nurl = \"ftp://h.example/a.txt\"\n",
                "feeds.u.url",
                "only http",
            ),
            (
                "[feeds.u]\nurl = \"https://h.example/a.txt\"\ninterval_secs = 1\n",
                "feeds.u.interval_secs",
                "out of range",
            ),
            (
                "[feeds.u]\nurl = \"https://h.example/a.txt\"\nheaders = { \"Bad Name\" = \"x\" }\n",
                "feeds.u.headers",
                "not a header name",
            ),
            (
                "[feeds.u]\nurl = \"https://h.example/a.txt\"\nheaders = { \"X-Key\" = { env = \"A\", file = \"b\" } }\n",
                "feeds.u",
                "headers",
            ),
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
