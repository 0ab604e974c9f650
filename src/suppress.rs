//! Suppression against alert fatigue: the first hit for a key is emitted;
//! repeats inside `window_secs` are counted, not emitted; the next hit
//! emitted for that key carries the count and when the key was first seen.
//!
//! Invariants:
//! - Suppression never hides a (line, indicator) pair for longer than one
//!   window after the last one emitted for its key: after the window the
//!   next hit is emitted whatever happened before.
//! - Memory is bounded by `max_keys`: the least recently seen key is
//!   evicted (counted), and its pending count is lost with it.
//! - State survives a restart through `state_dir` ([`Suppressor::save`] at
//!   shutdown, [`Suppressor::restore`] at start).
//!
//! Time is wall-clock milliseconds, given by the caller, so tests drive it.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, Invalid};

/// `[suppress]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SuppressConfig {
    /// Seconds after an emitted hit during which repeats of its key are
    /// only counted.
    pub window_secs: u64,
    /// What makes two hits "the same": any of `indicator`, `feed`,
    /// `input`, `source.ip` (the sending peer), `host` (the syslog host).
    #[serde(default = "default_key")]
    pub key: Vec<KeyField>,
    /// Keys remembered at once; the least recently seen is evicted.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_key() -> Vec<KeyField> {
    vec![KeyField::Indicator, KeyField::Input]
}
fn default_max_keys() -> usize {
    1_000_000
}

impl SuppressConfig {
    /// # Errors
    /// A window or size out of range, or an empty key.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("window_secs", self.window_secs, 1, 30 * 86_400)?;
        in_range("max_keys", self.max_keys, 1, 100_000_000)?;
        if self.key.is_empty() {
            return Err(Invalid::new("key", "name at least one field"));
        }
        Ok(())
    }
}

/// One part of a suppression key: a closed set.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum KeyField {
    /// The indicator's type and canonical value.
    #[serde(rename = "indicator")]
    Indicator,
    /// The feed's name.
    #[serde(rename = "feed")]
    Feed,
    /// The source's name.
    #[serde(rename = "input")]
    Input,
    /// The peer address the line came from (none: `-`).
    #[serde(rename = "source.ip")]
    SourceIp,
    /// The syslog header's host (none: `-`).
    #[serde(rename = "host")]
    Host,
}

/// What one hit's key is made of; the caller fills what it knows.
pub struct KeyParts<'a> {
    /// The indicator's type.
    pub kind: &'a str,
    /// Its canonical value.
    pub value: &'a str,
    /// Its feed.
    pub feed: &'a str,
    /// The source's name.
    pub input: &'a str,
    /// The peer the line came from.
    pub source_ip: Option<std::net::IpAddr>,
    /// The syslog host of the line.
    pub host: Option<&'a str>,
}

/// What an emitted hit says of the repeats before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeats {
    /// Hits for the key not emitted since the last one that was.
    pub suppressed: u64,
    /// When the key was first seen (ms since the epoch).
    pub first_seen_ms: i64,
}

/// The decision for one hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Emit it; with the repeats it closes, if any were suppressed.
    Emit(Option<Repeats>),
    /// Count it, do not emit it.
    Suppress,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    first_seen_ms: i64,
    emitted_ms: i64,
    suppressed: u64,
}

/// The shared suppression table (behind one lock: it is touched only for
/// lines with hits).
pub struct Suppressor {
    window_ms: i64,
    fields: Vec<KeyField>,
    table: Mutex<lru::LruCache<Box<str>, Entry>>,
    evicted: prometheus::IntCounter,
    state: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    window_secs: u64,
    entries: Vec<(Box<str>, Entry)>,
}

impl Suppressor {
    /// An empty table; `evicted` counts keys pushed out by `max_keys`.
    pub fn new(config: &SuppressConfig, evicted: prometheus::IntCounter) -> Suppressor {
        let cap = NonZeroUsize::new(config.max_keys).unwrap_or(NonZeroUsize::MIN);
        Suppressor {
            window_ms: config.window_secs as i64 * 1000,
            fields: config.key.clone(),
            table: Mutex::new(lru::LruCache::new(cap)),
            evicted,
            state: None,
        }
    }

    /// The key of a hit: its fields in the configured order, joined by
    /// U+001F (which no field holds).
    pub fn key(&self, p: &KeyParts) -> String {
        let mut k = String::with_capacity(64);
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                k.push('\u{1f}');
            }
            match f {
                KeyField::Indicator => {
                    k.push_str(p.kind);
                    k.push(':');
                    k.push_str(p.value);
                }
                KeyField::Feed => k.push_str(p.feed),
                KeyField::Input => k.push_str(p.input),
                KeyField::SourceIp => match p.source_ip {
                    Some(ip) => k.push_str(&ip.to_string()),
                    None => k.push('-'),
                },
                KeyField::Host => k.push_str(p.host.unwrap_or("-")),
            }
        }
        k
    }

    /// Decides for one hit of `key` seen at `now_ms`.
    pub fn check(&self, key: String, now_ms: i64) -> Verdict {
        let mut t = self.table.lock().expect("suppression table");
        if let Some(e) = t.get_mut(key.as_str()) {
            if now_ms < e.emitted_ms + self.window_ms {
                e.suppressed += 1;
                return Verdict::Suppress;
            }
            let repeats = (e.suppressed > 0).then_some(Repeats {
                suppressed: e.suppressed,
                first_seen_ms: e.first_seen_ms,
            });
            e.emitted_ms = now_ms;
            e.suppressed = 0;
            return Verdict::Emit(repeats);
        }
        let entry = Entry {
            first_seen_ms: now_ms,
            emitted_ms: now_ms,
            suppressed: 0,
        };
        if t.push(key.into_boxed_str(), entry).is_some() {
            self.evicted.inc();
        }
        Verdict::Emit(None)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.table.lock().expect("suppression table").len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the table saved in `state_dir` (if any) and saves there from
    /// now on. A file for another window, or unreadable, is ignored with a
    /// warning: suppression then starts empty, which only re-alerts.
    pub fn restore(&mut self, state_dir: &Path) {
        let path = state_dir.join("suppress.json");
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) if saved.window_secs as i64 * 1000 == self.window_ms => {
                    let mut t = self.table.lock().expect("suppression table");
                    // Saved most recent first: push oldest first so LRU order holds.
                    for (k, e) in saved.entries.into_iter().rev() {
                        t.push(k, e);
                    }
                    tracing::info!(keys = t.len(), path = %path.display(), "suppression state restored");
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "suppression state is for another window; starting empty")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "suppression state unreadable; starting empty")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "suppression state unreadable; starting empty")
            }
        }
        self.state = Some(path);
    }

    /// Writes the table to `state_dir` (temp file, then rename), most
    /// recently seen first.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.state else {
            return Ok(());
        };
        let saved = {
            let t = self.table.lock().expect("suppression table");
            Saved {
                window_secs: (self.window_ms / 1000) as u64,
                entries: t.iter().map(|(k, e)| (k.clone(), *e)).collect(),
            }
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&saved)?)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suppressor(window_secs: u64, max_keys: usize) -> Suppressor {
        let c = SuppressConfig {
            window_secs,
            key: default_key(),
            max_keys,
        };
        Suppressor::new(&c, prometheus::IntCounter::new("e", "e").unwrap())
    }

    /// (time in s, key, verdict): a table of one key's life.
    #[test]
    fn window_counts_then_reports() {
        let s = suppressor(300, 10);
        let steps = [
            (0, "a", Verdict::Emit(None)),
            (1, "a", Verdict::Suppress),
            (2, "b", Verdict::Emit(None)),
            (299, "a", Verdict::Suppress),
            (
                300,
                "a",
                Verdict::Emit(Some(Repeats {
                    suppressed: 2,
                    first_seen_ms: 0,
                })),
            ),
            (301, "a", Verdict::Suppress),
            (
                700,
                "a",
                Verdict::Emit(Some(Repeats {
                    suppressed: 1,
                    first_seen_ms: 0,
                })),
            ),
            (1100, "a", Verdict::Emit(None)),
        ];
        for (t, k, want) in steps {
            assert_eq!(s.check(k.into(), t * 1000), want, "at {t}s key {k}");
        }
    }

    #[test]
    fn bounded_and_evicts_least_recent() {
        let s = suppressor(300, 2);
        s.check("a".into(), 0);
        s.check("b".into(), 0);
        s.check("a".into(), 1);
        s.check("c".into(), 2); // evicts b, the least recently seen
        assert_eq!(s.len(), 2);
        assert_eq!(s.evicted.get(), 1);
        assert_eq!(s.check("b".into(), 3), Verdict::Emit(None));
        assert_eq!(s.check("c".into(), 3), Verdict::Suppress);
    }

    #[test]
    fn survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("iocd-suppress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = suppressor(300, 10);
        s.restore(&dir);
        s.check("a".into(), 0);
        s.check("a".into(), 1000);
        s.save().unwrap();
        let mut again = suppressor(300, 10);
        again.restore(&dir);
        assert_eq!(again.check("a".into(), 2000), Verdict::Suppress);
        let mut other_window = suppressor(60, 10);
        other_window.restore(&dir);
        assert!(other_window.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_fields_in_order() {
        let c = SuppressConfig {
            window_secs: 1,
            key: vec![KeyField::Host, KeyField::Indicator, KeyField::SourceIp],
            max_keys: 1,
        };
        let s = Suppressor::new(&c, prometheus::IntCounter::new("e", "e").unwrap());
        let p = KeyParts {
            kind: "ipv4-addr",
            value: "1.2.3.4",
            feed: "f",
            input: "i",
            source_ip: None,
            host: Some("web1"),
        };
        assert_eq!(s.key(&p), "web1\u{1f}ipv4-addr:1.2.3.4\u{1f}-");
    }
}
