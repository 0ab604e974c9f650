//! A feed fetched over HTTP(S) (`[feeds.NAME] url = "…"`), followed over
//! time: fetched when due (every `interval_secs` plus up to a tenth of it
//! as jitter, so many daemons do not fetch at once; after a failure sooner,
//! with doubling backoff), conditionally (`ETag`, `Last-Modified`), and
//! persisted in `state_dir` so that a restart without network still
//! matches.
//!
//! Two shapes of URL:
//! - a file of any feed format: one body, held as one file;
//! - a MISP feed root (a URL ending in `/`, or its `manifest.json`): the
//!   manifest is fetched, then only the events whose timestamp changed;
//!   events that left the manifest are dropped. Each event is one file of
//!   the feed (`UUID.json`).
//!
//! What is held changes only as a whole and only through
//! [`Remote::commit`]: the loader parses a fetch, applies its update guard,
//! and commits or drops it, so a refused update leaves the last good
//! content and its validators (the next fetch is a full GET again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::fetch::{FetchError, Fetched, Fetcher, Validators};

/// A URL feed's settings, from its `[feeds.NAME]` block.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSettings {
    /// The URL.
    pub url: String,
    /// Seconds between fetches (plus jitter).
    pub interval_secs: u64,
    /// Seconds a request may take.
    pub timeout_secs: u64,
    /// The largest body accepted, after decoding.
    pub max_bytes: u64,
    /// Headers sent with every request.
    pub headers: BTreeMap<String, crate::settings::Secret>,
    /// CA file and client certificate for https.
    pub tls: crate::http_client::TlsSettings,
}

impl RemoteSettings {
    /// True when the URL names a MISP feed root (or its manifest).
    pub fn is_misp_root(&self) -> bool {
        let path = self.url.split(['?', '#']).next().unwrap_or("");
        path.ends_with('/') || path.ends_with("/manifest.json")
    }

    /// The manifest's URL, and the base events are fetched relative to.
    fn misp_urls(&self) -> (String, String) {
        let path = self.url.split(['?', '#']).next().unwrap_or("");
        let base = path
            .strip_suffix("manifest.json")
            .unwrap_or(path)
            .to_owned();
        (format!("{base}manifest.json"), base)
    }

    /// The name hits give the single file of a non-MISP URL feed: the URL's
    /// last path segment (`ipsum.txt`), or the host when it has none.
    pub fn file_name(&self) -> String {
        let url = reqwest::Url::parse(&self.url).ok();
        url.as_ref()
            .and_then(|u| u.path_segments()?.next_back().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .or_else(|| url.as_ref().and_then(|u| u.host_str().map(str::to_owned)))
            .unwrap_or_else(|| self.url.clone())
    }
}

/// One file of a URL feed as held: its text and what identifies its version.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldFile {
    /// The body, as text (invalid UTF-8 replaced).
    #[serde(skip)]
    pub text: Arc<str>,
    /// The validators it came with.
    #[serde(default)]
    pub validators: Validators,
    /// For a MISP event: the manifest's timestamp of this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// What is held of a URL feed: its files by name, the manifest's
/// validators for a MISP feed, and how many indicators the content gave
/// (the update guard's "before").
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Held {
    /// The files, by the name hits give them.
    pub files: BTreeMap<String, HeldFile>,
    /// The MISP manifest's validators.
    #[serde(default)]
    pub manifest: Validators,
    /// Indicators the content gave when it was committed.
    #[serde(default)]
    pub indicators: usize,
}

/// The result of a due fetch.
#[derive(Debug)]
pub enum Update {
    /// Nothing changed on the server.
    NotModified,
    /// New content, to be parsed, guarded and committed (or dropped).
    /// `errors` are events of a MISP feed that could not be fetched; they
    /// keep the version held, and are tried again at the next fetch.
    Changed {
        /// The whole content as it would be held.
        held: Held,
        /// Fetches of single events that failed.
        errors: Vec<FetchError>,
    },
}

/// A URL feed followed over time.
#[derive(Debug)]
pub struct Remote {
    url: String,
    held: Held,
    next_fetch: i64,
    backoff: Backoff,
    dir: Option<PathBuf>,
}

impl Remote {
    /// Starts from what `dir` holds (if anything), due now.
    pub fn resume(settings: &RemoteSettings, dir: Option<PathBuf>, now: i64) -> Remote {
        let held = dir.as_deref().map(load).unwrap_or_default();
        Remote {
            url: settings.url.clone(),
            held,
            next_fetch: now,
            backoff: Backoff::new(
                Duration::from_secs(5),
                Duration::from_secs(settings.interval_secs.max(1)),
            ),
            dir,
        }
    }

    /// Makes the next fetch due now (SIGHUP: the operator asks for it).
    pub fn due_now(&mut self) {
        self.next_fetch = i64::MIN;
    }

    /// What is held.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Unix time the next fetch is due.
    pub fn next_fetch(&self) -> i64 {
        self.next_fetch
    }

    /// Fetches when due (`None` when not) and schedules the next fetch.
    /// Blocks the calling thread (the reload thread, or `iocd scan`).
    pub fn fetch_if_due(
        &mut self,
        settings: &RemoteSettings,
        now: i64,
    ) -> Option<Result<Update, FetchError>> {
        if settings.url != self.url {
            // Moved to another URL: what is held stays until the new one
            // answers, but its validators belong to the old one.
            self.url = settings.url.clone();
            self.held.manifest = Validators::default();
            for f in self.held.files.values_mut() {
                f.validators = Validators::default();
            }
            self.next_fetch = i64::MIN;
        }
        if self.next_fetch > now {
            return None;
        }
        let result = crate::http_client::block_on(self.fetch(settings));
        self.next_fetch = match &result {
            Ok(_) => {
                self.backoff.reset();
                let interval = settings.interval_secs.max(1) as i64;
                now + interval + crate::backoff::jitter_secs(interval)
            }
            Err(_) => now + self.backoff.next_wait().as_secs() as i64,
        };
        Some(result)
    }

    async fn fetch(&self, settings: &RemoteSettings) -> Result<Update, FetchError> {
        let fetcher = Fetcher::new(
            Duration::from_secs(settings.timeout_secs.max(1)),
            &settings.tls,
            &settings.headers,
            settings.max_bytes,
        )?;
        if settings.is_misp_root() {
            return self.fetch_misp(settings, &fetcher).await;
        }
        let name = settings.file_name();
        let held = self.held.files.get(&name);
        let validators = held.map(|f| f.validators.clone()).unwrap_or_default();
        match fetcher.get(&settings.url, &validators).await? {
            Fetched::NotModified if held.is_some() => Ok(Update::NotModified),
            // A 304 for nothing held (a state directory lost): fetch whole.
            Fetched::NotModified => self.fetch_whole(settings, &fetcher, name).await,
            Fetched::Body { bytes, validators } => Ok(Update::Changed {
                held: single(name, bytes, validators),
                errors: Vec::new(),
            }),
        }
    }

    async fn fetch_whole(
        &self,
        settings: &RemoteSettings,
        fetcher: &Fetcher,
        name: String,
    ) -> Result<Update, FetchError> {
        match fetcher.get(&settings.url, &Validators::default()).await? {
            Fetched::Body { bytes, validators } => Ok(Update::Changed {
                held: single(name, bytes, validators),
                errors: Vec::new(),
            }),
            Fetched::NotModified => Ok(Update::NotModified),
        }
    }

    async fn fetch_misp(
        &self,
        settings: &RemoteSettings,
        fetcher: &Fetcher,
    ) -> Result<Update, FetchError> {
        let (manifest_url, base) = settings.misp_urls();
        let validators = if self.held.files.is_empty() {
            Validators::default()
        } else {
            self.held.manifest.clone()
        };
        let (bytes, manifest_validators) = match fetcher.get(&manifest_url, &validators).await? {
            Fetched::NotModified => return Ok(Update::NotModified),
            Fetched::Body { bytes, validators } => (bytes, validators),
        };
        let manifest: BTreeMap<String, ManifestEntry> =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Status {
                url: manifest_url.clone(),
                status: 200,
                body: format!("not a MISP feed manifest: {e}"),
            })?;
        let mut held = Held {
            manifest: manifest_validators,
            ..Held::default()
        };
        let mut errors = Vec::new();
        for (uuid, entry) in manifest {
            // A uuid is hex and dashes; anything else would be a path.
            if !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                continue;
            }
            let name = format!("{uuid}.json");
            let timestamp = entry.timestamp.as_ref().map(timestamp_text);
            let old = self.held.files.get(&name);
            if let Some(old) = old.filter(|o| o.timestamp == timestamp) {
                held.files.insert(name, old.clone());
                continue;
            }
            match fetcher
                .get(&format!("{base}{name}"), &Validators::default())
                .await
            {
                Ok(Fetched::Body { bytes, validators }) => {
                    held.files.insert(
                        name,
                        HeldFile {
                            text: text_of(bytes),
                            validators,
                            timestamp,
                        },
                    );
                }
                Ok(Fetched::NotModified) => {}
                Err(e) => {
                    if let Some(old) = old {
                        held.files.insert(name, old.clone());
                    }
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            // Not the manifest's validators: a 304 next time would leave
            // the failed events unfetched for ever.
            held.manifest = Validators::default();
        }
        Ok(Update::Changed { held, errors })
    }

    /// Makes `held` the content (it passed the loader's guard) and persists it.
    pub fn commit(&mut self, held: Held, feed: &str) {
        if let Some(dir) = &self.dir {
            if let Err(e) = save(dir, &held) {
                tracing::warn!(feed, error = %e, "cannot save the feed's last good content");
            }
        }
        self.held = held;
    }
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

fn timestamp_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn single(name: String, bytes: Vec<u8>, validators: Validators) -> Held {
    let mut held = Held::default();
    held.files.insert(
        name,
        HeldFile {
            text: text_of(bytes),
            validators,
            timestamp: None,
        },
    );
    held
}

fn text_of(bytes: Vec<u8>) -> Arc<str> {
    match String::from_utf8(bytes) {
        Ok(s) => Arc::from(s),
        Err(e) => Arc::from(String::from_utf8_lossy(e.as_bytes())),
    }
}

/// The state directory of URL feed `name` (a name made safe for a path).
pub fn state_dir(root: &Path, name: &str) -> PathBuf {
    root.join("url-feeds")
        .join(crate::state::path_component(name))
}

/// What `dir` holds: `held.json` and the bodies under `files/`. A file
/// that cannot be read drops out (it is fetched again).
fn load(dir: &Path) -> Held {
    let Ok(bytes) = std::fs::read(dir.join("held.json")) else {
        return Held::default();
    };
    let Ok(mut held) = serde_json::from_slice::<Held>(&bytes) else {
        return Held::default();
    };
    held.files.retain(
        |name, f| match std::fs::read(dir.join("files").join(name)) {
            Ok(bytes) => {
                f.text = text_of(bytes);
                true
            }
            Err(_) => false,
        },
    );
    if held.files.is_empty() {
        held.indicators = 0;
    }
    held
}

/// Persists `held` in `dir`: the bodies first, then `held.json` by rename,
/// then bodies no longer held are removed. A crash leaves either the old
/// index (with every body it names) or the new one.
fn save(dir: &Path, held: &Held) -> std::io::Result<()> {
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    for (name, f) in &held.files {
        let path = files.join(name);
        let tmp = files.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, f.text.as_bytes())?;
        std::fs::rename(&tmp, &path)?;
    }
    crate::state::save(&dir.join("held.json"), held)?;
    for entry in std::fs::read_dir(&files)?.flatten() {
        let name = entry.file_name();
        if !held.files.contains_key(&*name.to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> RemoteSettings {
        RemoteSettings {
            url: url.to_owned(),
            interval_secs: 60,
            timeout_secs: 5,
            max_bytes: 1 << 20,
            headers: BTreeMap::new(),
            tls: Default::default(),
        }
    }

    #[test]
    fn urls_name_their_files_and_misp_roots() {
        let table = [
            ("https://h.example/lists/ipsum.txt", false, "ipsum.txt"),
            ("https://h.example/feed-osint/", true, "h.example"),
            (
                "https://h.example/feed/manifest.json",
                true,
                "manifest.json",
            ),
            ("https://h.example", false, "h.example"),
            ("https://h.example/a.txt?key=1", false, "a.txt"),
        ];
        for (url, misp, file) in table {
            let s = settings(url);
            assert_eq!(s.is_misp_root(), misp, "{url}");
            assert_eq!(s.file_name(), file, "{url}");
        }
        assert_eq!(
            settings("https://h.example/feed/manifest.json").misp_urls(),
            (
                "https://h.example/feed/manifest.json".to_owned(),
                "https://h.example/feed/".to_owned()
            )
        );
    }

    #[test]
    fn held_content_persists_and_drops_what_left() {
        let dir = std::env::temp_dir().join(format!("iocd-remote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut held = single(
            "a.txt".into(),
            b"198.51.100.7\n".to_vec(),
            Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
        );
        held.indicators = 1;
        save(&dir, &held).unwrap();
        let back = load(&dir);
        assert_eq!(&*back.files["a.txt"].text, "198.51.100.7\n");
        assert_eq!(
            back.files["a.txt"].validators.etag.as_deref(),
            Some("\"v1\"")
        );
        assert_eq!(back.indicators, 1);
        let other = single("b.txt".into(), b"x\n".to_vec(), Validators::default());
        save(&dir, &other).unwrap();
        assert!(!dir.join("files/a.txt").exists());
        assert_eq!(load(&dir).files.keys().collect::<Vec<_>>(), ["b.txt"]);
        assert!(state_dir(Path::new("/s"), "a/../b c").ends_with("url-feeds/a_.._b_c"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
