//! A TAXII 2.1 collection as a feed: polls `GET {collection}/objects/` with
//! `added_after` (resuming from the last `X-TAXII-Date-Added-Last`),
//! following `next` while `more` is true, and keeps the newest version of
//! every object. The checkpoint and the objects are persisted, so a restart
//! neither downloads the whole collection again nor, with the server down,
//! stops matching. A failed poll keeps what was loaded; polls are retried
//! with backoff. Objects become indicators through the STIX reader, so the
//! lifecycle (revoked, expired, newest version) is the same as for files.
//!
//! Requests go through the shared HTTP client ([`crate::http_client`]):
//! `http://` or `https://` (rustls, verified against the system's roots or a
//! configured CA file), basic or bearer authentication, timeouts. A poll is
//! called from a blocking thread (the reload thread, or `iocd scan`), and
//! waits there for its async requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backoff::Backoff;
use crate::http_client::{self, TlsSettings};
use crate::settings::{in_range, Invalid};

/// A TAXII 2.1 collection polled for STIX indicators.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaxiiConfig {
    /// `http://host:port/api-root/collections/ID/`
    pub url: String,
    #[serde(default = "default_poll_interval_secs")]
    /// Seconds between polls (plus jitter).
    pub poll_interval_secs: u64,
    #[serde(default = "default_timeout_secs")]
    /// Seconds a request may take.
    pub timeout_secs: u64,
    /// Objects per page (`limit`).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Basic authentication (or set IOCD_TAXII_USER / IOCD_TAXII_PASSWORD).
    pub username: Option<String>,
    /// Password for `username`.
    /// Password for `username`: a value, `{ env = "VAR" }` or `{ file = "PATH" }`.
    pub password: Option<crate::settings::Secret>,
    /// Bearer token (or set IOCD_TAXII_TOKEN), given like `password`.
    pub token: Option<crate::settings::Secret>,
    /// PEM CA file to verify an https server with (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// The largest response body read, in bytes; a larger page fails the poll.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most pages one poll follows (`more: true` without end fails it).
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// Longest a whole poll may take, over all its pages.
    #[serde(default = "default_poll_timeout_secs")]
    pub poll_timeout_secs: u64,
    /// The largest fraction of its indicators the collection may lose in
    /// one poll (revocations); past it, or to zero, the last good content
    /// is kept. 1.0 turns the guard off.
    #[serde(default = "default_max_shrink")]
    pub max_shrink: f64,
}

fn default_max_shrink() -> f64 {
    0.5
}
fn default_max_response_bytes() -> usize {
    64 << 20
}
fn default_max_pages() -> usize {
    1000
}
fn default_poll_timeout_secs() -> u64 {
    600
}

impl TaxiiConfig {
    /// A collection named only by its URL (`iocd scan -i URL`): default
    /// settings, credentials from `IOCD_TAXII_*`, a CA file from
    /// `IOCD_TAXII_CA_FILE`.
    pub fn for_url(url: &str) -> TaxiiConfig {
        TaxiiConfig {
            url: url.to_owned(),
            poll_interval_secs: default_poll_interval_secs(),
            timeout_secs: 30,
            page_size: default_page_size(),
            username: None,
            password: None,
            token: None,
            ca_file: std::env::var_os("IOCD_TAXII_CA_FILE").map(PathBuf::from),
            max_response_bytes: default_max_response_bytes(),
            max_pages: default_max_pages(),
            poll_timeout_secs: default_poll_timeout_secs(),
            max_shrink: 1.0, // one load: nothing earlier to guard
        }
    }

    /// # Errors
    /// A URL that is not an http(s) collection URL, or a setting out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| Invalid::new("url", format!("{:?} is not a URL: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || !self.url.contains("/collections/") {
            return Err(Invalid::new(
                "url",
                format!("{:?} is not an http:// or https:// collection URL (…/API-ROOT/collections/ID/)", self.url),
            ));
        }
        in_range(
            "poll_interval_secs",
            self.poll_interval_secs,
            1,
            366 * 86_400,
        )?;
        in_range("timeout_secs", self.timeout_secs, 1, 3600)?;
        in_range("max_response_bytes", self.max_response_bytes, 1024, 1 << 32)?;
        in_range("max_pages", self.max_pages, 1, 1_000_000)?;
        in_range("poll_timeout_secs", self.poll_timeout_secs, 1, 86_400)?;
        if !(0.0..=1.0).contains(&self.max_shrink) {
            return Err(Invalid::new(
                "max_shrink",
                format!(
                    "{} is out of range: it must be from 0.0 to 1.0",
                    self.max_shrink
                ),
            ));
        }
        in_range("page_size", self.page_size, 1, 100_000)?;
        for (key, secret) in [("password", &self.password), ("token", &self.token)] {
            if let Some(secret) = secret {
                secret.resolve().map_err(|e| Invalid::new(key, e))?;
            }
        }
        Ok(())
    }

    /// How to reach the collection, credentials resolved.
    pub fn collection(&self) -> Collection {
        use Auth;
        // Checked by validate(); a secret gone since reads as empty, and the
        // server says 401.
        let reveal = |s: &crate::settings::Secret| s.resolve().unwrap_or_default();
        let auth = match (&self.token, &self.username, &self.password) {
            (Some(t), _, _) => Auth::Bearer(reveal(t)),
            (None, Some(u), Some(p)) => Auth::Basic {
                user: u.clone(),
                password: reveal(p),
            },
            _ => Auth::from_env(),
        };
        Collection {
            url: self.url.clone(),
            auth,
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            page_size: self.page_size,
            ca_file: self.ca_file.clone(),
            max_response_bytes: self.max_response_bytes,
            max_pages: self.max_pages,
            poll_timeout: std::time::Duration::from_secs(self.poll_timeout_secs),
        }
    }
}

fn default_poll_interval_secs() -> u64 {
    300
}
fn default_timeout_secs() -> u64 {
    10
}
fn default_page_size() -> usize {
    1000
}

/// The TAXII 2.1 media type, sent as `Accept`.
pub const MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// How to reach a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    /// `http://host:port/api-root/collections/ID/`
    pub url: String,
    /// Credentials sent with every request.
    pub auth: Auth,
    /// Time a request may take.
    pub timeout: Duration,
    /// Objects asked for per page (`limit`); servers may send fewer.
    pub page_size: usize,
    /// PEM file of the CA(s) to trust for https, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The largest response body read.
    pub max_response_bytes: usize,
    /// Most pages one poll follows.
    pub max_pages: usize,
    /// Longest a whole poll may take.
    pub poll_timeout: Duration,
}

#[derive(Clone, PartialEq, Eq)]
/// How requests authenticate. Its `Debug` shows no secret.
pub enum Auth {
    /// No credentials.
    None,
    /// HTTP basic authentication.
    Basic {
        /// The account.
        user: String,
        /// Its password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ..)"),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

impl Auth {
    /// Credentials from `IOCD_TAXII_TOKEN`, or `IOCD_TAXII_USER` and `IOCD_TAXII_PASSWORD`.
    pub fn from_env() -> Auth {
        if let Ok(t) = std::env::var("IOCD_TAXII_TOKEN") {
            return Auth::Bearer(t);
        }
        match (
            std::env::var("IOCD_TAXII_USER"),
            std::env::var("IOCD_TAXII_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => Auth::Basic { user, password },
            _ => Auth::None,
        }
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            Auth::Bearer(t) => req.bearer_auth(t),
        }
    }
}

/// The state of one collection: objects by id and the resume point.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The `X-TAXII-Date-Added-Last` of the last page read.
    pub checkpoint: Option<String>,
    /// The newest version of every object, by id.
    pub objects: HashMap<String, Value>,
    /// The API root and collection were checked (by this process).
    #[serde(skip)]
    pub checked: bool,
}

impl State {
    /// Loads a persisted state (empty when there is none).
    pub fn load(path: &std::path::Path) -> State {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Persists the state atomically.
    ///
    /// # Errors
    /// The state directory cannot be written.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::state::save(path, self)
    }

    /// The objects as STIX JSON for the STIX reader.
    pub fn as_stix_json(&self) -> String {
        let mut objects: Vec<&Value> = self.objects.values().collect();
        objects.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        serde_json::to_string(
            &serde_json::json!({"type": "bundle", "id": "bundle--taxii", "objects": objects}),
        )
        .expect("serialisable")
    }

    /// Adds `o` unless a version as new or newer is held.
    fn merge(&mut self, o: Value) {
        let Some(id) = o["id"].as_str().map(str::to_owned) else {
            return;
        };
        let newer = match self.objects.get(&id) {
            Some(old) => o["modified"].as_str() > old["modified"].as_str(),
            None => true,
        };
        if newer {
            self.objects.insert(id, o);
        }
    }
}

/// A collection followed over time: its state, and when to poll next.
/// Polls are due every `poll_interval_secs` (plus jitter, so many daemons
/// do not poll at once); after a failure, sooner, with doubling backoff.
#[derive(Debug)]
pub struct Subscription {
    state: State,
    /// Unix time the next poll is due.
    next_poll: i64,
    /// The wait after a failed poll: from 5 s, doubling, up to the interval.
    backoff: Backoff,
    /// A poll running on its own thread (daemon): its copy of the state,
    /// and what the poll said, once it ends.
    inflight: Option<std::thread::JoinHandle<(State, Result<Poll, TaxiiError>)>>,
}

/// Called when a detached poll ends: the daemon reloads then, so the
/// poll's objects are applied as soon as they are in.
pub type PollDone = std::sync::Arc<dyn Fn() + Send + Sync>;

impl Subscription {
    /// Starts from the state persisted in `state_file` (if any), due now.
    pub fn resume(
        tc: &TaxiiConfig,
        state_file: Option<&std::path::Path>,
        now: i64,
    ) -> Subscription {
        Subscription {
            state: state_file.map(State::load).unwrap_or_default(),
            next_poll: now,
            backoff: Backoff::new(
                Duration::from_secs(5),
                Duration::from_secs(tc.poll_interval_secs.max(1)),
            ),
            inflight: None,
        }
    }

    /// What is held of the collection.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Makes the next poll due now (SIGHUP: the operator asks for it).
    pub fn due_now(&mut self) {
        self.next_poll = i64::MIN;
    }

    /// Unix time the next poll is due; never while one runs detached (its
    /// end wakes the daemon instead).
    pub fn next_poll(&self) -> i64 {
        if self.inflight.is_some() {
            i64::MAX
        } else {
            self.next_poll
        }
    }

    /// Polls when due (`None` when not), persisting the state after a
    /// complete poll and scheduling the next one.
    ///
    /// With `detach` (the daemon) a due poll runs on its own thread on a
    /// copy of the state, and `done` is called when it ends; the call
    /// that finds it ended applies it. Start-up and reloads never wait
    /// for a server: they use the state held until then.
    pub fn poll_if_due(
        &mut self,
        name: &str,
        tc: &TaxiiConfig,
        state_file: Option<&std::path::Path>,
        now: i64,
        detach: Option<&PollDone>,
    ) -> Option<Result<(), TaxiiError>> {
        if let Some(h) = &self.inflight {
            if !h.is_finished() {
                return None;
            }
            let h = self.inflight.take().expect("checked above");
            let result = match h.join() {
                Ok((state, result)) => {
                    self.state = state;
                    result
                }
                Err(panic) => Err(TaxiiError::Protocol {
                    url: tc.url.clone(),
                    message: format!("the poll panicked: {}", crate::load::panic_message(&*panic)),
                }),
            };
            return Some(self.finish(name, tc, state_file, now, result));
        }
        if self.next_poll > now {
            return None;
        }
        if let Some(done) = detach {
            let (mut state, collection, done) = (self.state.clone(), tc.collection(), done.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("iocd-taxii-{name}"))
                .spawn(move || {
                    let result = poll(&collection, &mut state);
                    done();
                    (state, result)
                });
            match spawned {
                Ok(h) => {
                    self.inflight = Some(h);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(feed = name, error = %e, "cannot start a poll thread; polling here")
                }
            }
        }
        let result = poll(&tc.collection(), &mut self.state);
        Some(self.finish(name, tc, state_file, now, result))
    }

    /// Saves and schedules after a poll that ended with `result`.
    fn finish(
        &mut self,
        name: &str,
        tc: &TaxiiConfig,
        state_file: Option<&std::path::Path>,
        now: i64,
        result: Result<Poll, TaxiiError>,
    ) -> Result<(), TaxiiError> {
        let interval = tc.poll_interval_secs.max(1) as i64;
        match result {
            Ok(p) => {
                tracing::info!(
                    feed = name,
                    requests = p.requests,
                    objects = p.objects,
                    "TAXII poll"
                );
                if let Some(Err(e)) = state_file.map(|f| self.state.save(f)) {
                    tracing::warn!(feed = name, error = %e, "cannot save TAXII state");
                }
                self.next_poll = now + interval + crate::backoff::jitter_secs(interval);
                self.backoff.reset();
                Ok(())
            }
            Err(e) => {
                self.next_poll = now + self.backoff.next_wait().as_secs() as i64;
                Err(e)
            }
        }
    }
}

/// What one poll did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Requests made.
    pub requests: usize,
    /// Objects received.
    pub objects: usize,
}

/// Why a poll failed. Each names the URL it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaxiiError {
    /// The shared HTTP client could not be built (a CA file, say).
    Client(String),
    /// No answer: connection, TLS or timeout.
    Transport {
        /// The URL requested.
        url: String,
        /// What failed, with its causes.
        message: String,
    },
    /// An error status (401 wrong credentials, 404 no such collection, ...).
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, which often says why.
        body: String,
    },
    /// An answer that is not what TAXII 2.1 says.
    Protocol {
        /// The URL requested.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The collection exists but these credentials may not read it.
    NotReadable {
        /// The collection's URL.
        url: String,
    },
    /// The server kept saying `more` past this many pages.
    TooManyPages(usize),
    /// A response body larger than `max_response_bytes`.
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        max_bytes: usize,
    },
    /// The poll took longer than `poll_timeout_secs` over all its pages.
    PollTimeout(u64),
}

impl TaxiiError {
    fn status(url: &str, status: u16, body: &[u8]) -> TaxiiError {
        TaxiiError::Status {
            url: url.to_owned(),
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }
    }

    fn transport(url: &str, e: &reqwest::Error) -> TaxiiError {
        TaxiiError::Transport {
            url: url.to_owned(),
            message: http_client::describe(e),
        }
    }
}

impl std::fmt::Display for TaxiiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaxiiError::Client(e) => write!(f, "TAXII client: {e}"),
            TaxiiError::Transport { url, message } => write!(f, "{url}: {message}"),
            TaxiiError::Status { url, status, body } => {
                write!(f, "GET {url}: HTTP {status}: {body}")
            }
            TaxiiError::Protocol { url, message } => write!(f, "{url}: {message}"),
            TaxiiError::NotReadable { url } => write!(
                f,
                "{url}: the collection cannot be read with these credentials (can_read is not true)"
            ),
            TaxiiError::TooManyPages(n) => write!(f, "more than {n} pages (max_pages): giving up"),
            TaxiiError::TooLarge { url, max_bytes } => write!(
                f,
                "{url}: the response exceeds max_response_bytes ({max_bytes})"
            ),
            TaxiiError::PollTimeout(secs) => {
                write!(
                    f,
                    "the poll took longer than poll_timeout_secs ({secs}): giving up"
                )
            }
        }
    }
}

impl std::error::Error for TaxiiError {}

/// Polls `c` from `state`'s checkpoint, merging what is new.
///
/// # Errors
/// A request failed or an answer was not TAXII; `state` keeps whatever pages
/// were merged before, but its checkpoint only moves on a complete poll.
pub fn poll(c: &Collection, state: &mut State) -> Result<Poll, TaxiiError> {
    let tls = TlsSettings {
        ca_file: c.ca_file.clone(),
        ..TlsSettings::default()
    };
    let client = http_client::client(c.timeout, &tls).map_err(TaxiiError::Client)?;
    let get = |url: &str| get(&client, url, c);
    if !state.checked {
        check(c, &get)?;
        state.checked = true;
    }
    let base = format!("{}/objects/", c.url.trim_end_matches('/'));
    let mut result = Poll::default();
    let mut next: Option<String> = None;
    let mut last_added = state.checkpoint.clone();
    let started = std::time::Instant::now();
    loop {
        if started.elapsed() > c.poll_timeout {
            return Err(TaxiiError::PollTimeout(c.poll_timeout.as_secs()));
        }
        // The same filters on every page (servers check), `limit` included.
        let mut url = reqwest::Url::parse(&base).map_err(|e| TaxiiError::Protocol {
            url: base.clone(),
            message: e.to_string(),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &c.page_size.max(1).to_string());
            if let Some(after) = &state.checkpoint {
                q.append_pair("added_after", after);
            }
            if let Some(n) = &next {
                q.append_pair("next", n);
            }
        }
        let url = url.to_string();
        let (status, headers, body) = get(&url)?;
        result.requests += 1;
        if status == 204 || (status == 404 && result.requests == 1 && body.is_empty()) {
            break;
        }
        if status != 200 {
            return Err(TaxiiError::status(&url, status, &body));
        }
        let mut objects = 0;
        let mut de = serde_json::Deserializer::from_slice(&body);
        let envelope = serde::de::DeserializeSeed::deserialize(
            EnvelopeSeed {
                state: &mut *state,
                objects: &mut objects,
            },
            &mut de,
        )
        .and_then(|e| de.end().map(|()| e))
        .map_err(|e| TaxiiError::Protocol {
            url: url.clone(),
            message: format!("not a TAXII envelope: {e}"),
        })?;
        drop(body);
        result.objects += objects;
        if let Some(last) = headers.get("x-taxii-date-added-last") {
            last_added = Some(last.clone());
        }
        if envelope.more {
            match envelope.next {
                Some(n) => next = Some(n),
                None => {
                    return Err(TaxiiError::Protocol {
                        url,
                        message: "more is true but there is no next".into(),
                    })
                }
            }
        } else {
            break;
        }
        if result.requests >= c.max_pages {
            return Err(TaxiiError::TooManyPages(c.max_pages));
        }
    }
    state.checkpoint = last_added;
    Ok(result)
}

/// What a TAXII envelope says beyond its objects.
struct Envelope {
    more: bool,
    next: Option<String>,
}

/// Reads one TAXII envelope, merging each object into the state as it is
/// parsed: a page is never held as a tree of values, only the object being
/// read (the body itself is bounded by `max_response_bytes`). As before,
/// `objects` that is not an array holds nothing, and a `next` that is not a
/// string is no `next`.
struct EnvelopeSeed<'a> {
    state: &'a mut State,
    objects: &'a mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Envelope, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a TAXII envelope (a JSON object)")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut env = Envelope {
            more: false,
            next: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "objects" => map.next_value_seed(ObjectsSeed {
                    state: &mut *self.state,
                    objects: &mut *self.objects,
                })?,
                "more" => env.more = map.next_value::<Value>()?.as_bool() == Some(true),
                "next" => env.next = map.next_value::<Value>()?.as_str().map(str::to_owned),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

/// The `objects` member: each element merged as soon as it is read.
struct ObjectsSeed<'a> {
    state: &'a mut State,
    objects: &'a mut usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for ObjectsSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ObjectsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of STIX objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(o) = seq.next_element::<Value>()? {
            self.state.merge(o);
            *self.objects += 1;
        }
        Ok(())
    }
    // Anything else is not an array of objects: it holds none.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// Checks, once, that the API root speaks TAXII 2.1 and that the collection
/// exists and may be read, so a wrong URL or account says so plainly.
fn check(
    c: &Collection,
    get: &dyn Fn(&str) -> Result<Response, TaxiiError>,
) -> Result<(), TaxiiError> {
    let url = c.url.trim_end_matches('/');
    let protocol = |u: &str, message: String| TaxiiError::Protocol {
        url: u.to_owned(),
        message,
    };
    let (root, _) = url.rsplit_once("/collections/").ok_or_else(|| {
        protocol(
            &c.url,
            "not a collection URL (…/API-ROOT/collections/ID/)".into(),
        )
    })?;
    let json = |u: &str| -> Result<Value, TaxiiError> {
        let (status, _, body) = get(u)?;
        if status != 200 {
            return Err(TaxiiError::status(u, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| protocol(u, format!("not JSON: {e}")))
    };
    let api_root = json(&format!("{root}/"))?;
    let versions = api_root["versions"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .any(|v| v.starts_with(MEDIA_TYPE))
        })
        .unwrap_or(false);
    if !versions {
        return Err(protocol(
            &format!("{root}/"),
            format!("does not list {MEDIA_TYPE} among its versions"),
        ));
    }
    let collection = json(&format!("{url}/"))?;
    if collection["can_read"].as_bool() != Some(true) {
        return Err(TaxiiError::NotReadable {
            url: format!("{url}/"),
        });
    }
    Ok(())
}

/// Adds `objects` to the collection (`POST .../objects/`, a TAXII 2.1
/// envelope). Accepted means a 2xx whose status resource reports no
/// failure.
///
/// # Errors
/// No answer, an error status, or a status resource with failures.
pub async fn post_objects(
    client: &reqwest::Client,
    c: &Collection,
    objects: &[Value],
) -> Result<(), TaxiiError> {
    let url = format!("{}/objects/", c.url.trim_end_matches('/'));
    let body = serde_json::to_vec(&serde_json::json!({ "objects": objects }))
        .expect("serialisable objects");
    let req = client
        .post(&url)
        .header(reqwest::header::ACCEPT, MEDIA_TYPE)
        .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
        .body(body);
    let resp = c
        .auth
        .apply(req)
        .send()
        .await
        .map_err(|e| TaxiiError::transport(&url, &e))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| TaxiiError::transport(&url, &e))?;
    if !(200..300).contains(&status) {
        return Err(TaxiiError::Status {
            url,
            status,
            body: text.chars().take(200).collect(),
        });
    }
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match answer["failure_count"].as_u64() {
        Some(n) if n > 0 => Err(TaxiiError::Protocol {
            url,
            message: format!(
                "{n} of {} objects refused: {}",
                objects.len(),
                answer["failures"]
            ),
        }),
        _ => Ok(()),
    }
}

type Response = (u16, HashMap<String, String>, Vec<u8>);

/// One GET: the status, the headers (names lowercase) and the body.
fn get(client: &reqwest::Client, url: &str, c: &Collection) -> Result<Response, TaxiiError> {
    http_client::block_on(async {
        let req = client.get(url).header(reqwest::header::ACCEPT, MEDIA_TYPE);
        let resp = c
            .auth
            .apply(req)
            .send()
            .await
            .map_err(|e| TaxiiError::transport(url, &e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // Read no more than the limit, whatever the server sends or claims.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TaxiiError::transport(url, &e))?
        {
            if body.len() + chunk.len() > c.max_response_bytes {
                return Err(TaxiiError::TooLarge {
                    url: url.to_owned(),
                    max_bytes: c.max_response_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(text: &str) -> Result<(Envelope, usize, State), serde_json::Error> {
        let (mut state, mut objects) = (State::default(), 0);
        let mut de = serde_json::Deserializer::from_str(text);
        let env = serde::de::DeserializeSeed::deserialize(
            EnvelopeSeed {
                state: &mut state,
                objects: &mut objects,
            },
            &mut de,
        )?;
        de.end()?;
        Ok((env, objects, state))
    }

    #[test]
    fn envelopes_are_read_object_by_object() {
        let (env, n, state) = envelope(
            r#"{"more": true, "next": "p2", "x": [1, {"a": null}],
                "objects": [{"id": "indicator--1", "modified": "2026-01-01T00:00:00Z"},
                            {"id": "indicator--2"}, {"no_id": 1}]}"#,
        )
        .unwrap();
        assert!(env.more);
        assert_eq!(env.next.as_deref(), Some("p2"));
        assert_eq!((n, state.objects.len()), (3, 2));
        for (text, more, next) in [
            (
                r#"{"objects": null, "more": "yes", "next": 5}"#,
                false,
                None,
            ),
            (
                r#"{"objects": {"id": "indicator--1"}, "more": false}"#,
                false,
                None,
            ),
            ("{}", false, None),
        ] {
            let (env, n, _) = envelope(text).unwrap();
            assert_eq!((env.more, env.next, n), (more, next, 0), "{text}");
        }
        for bad in ["[]", r#"{"objects": [1,"#, r#"{"more": true} x"#, "null"] {
            assert!(envelope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_keeps_the_newest_version() {
        let mut s = State::default();
        s.merge(
            serde_json::json!({"id": "indicator--1", "modified": "2026-01-02T00:00:00Z", "v": 2}),
        );
        s.merge(
            serde_json::json!({"id": "indicator--1", "modified": "2026-01-01T00:00:00Z", "v": 1}),
        );
        assert_eq!(s.objects["indicator--1"]["v"], 2);
        s.merge(serde_json::json!({"id": "indicator--1", "modified": "2026-01-03T00:00:00Z", "v": 3, "revoked": true}));
        assert_eq!(s.objects["indicator--1"]["v"], 3);
    }
}
