//! Hits POSTed to an HTTP(S) endpoint in batches: JSON lines, one JSON
//! array per request, or an Elasticsearch `_bulk` body. Failed requests are
//! retried by the sink driver with exponential backoff; while the server is
//! down, hits wait in the driver's bounded buffer, and past it the sink
//! stops taking batches, which pushes back through the pipeline to the
//! sources.
//!
//! Nothing is dropped except what the server refuses as malformed: a whole
//! request answered 400, 413 or 422, or, in a `_bulk` answer, an item whose
//! status is neither 2xx, 429 nor 5xx. Those are counted as failed and
//! logged with the reason; 429 and 5xx items are retried alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::driver::{DriverSettings, HitWriter, Outcome, PendingHit};
use crate::hit::HitFormat;
use crate::http_client::{self, TlsSettings};
use crate::settings::{in_range, Invalid};

/// `[sinks.NAME] type = "http"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `http://` or `https://` endpoint.
    pub url: HttpUrl,
    #[serde(default)]
    pub format: HitFormat,
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// With `encoding = "es_bulk"`: the index (or data stream) written to.
    #[serde(default = "default_index")]
    pub index: String,
    /// Extra headers, e.g. `Authorization`: a value, or `{ env = "VAR" }`
    /// or `{ file = "PATH" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, crate::settings::Secret>,
    /// Most hits per request.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long to wait for more hits before sending fewer than a full request.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Hits held while the server is down; past this, backpressure.
    #[serde(default = "default_buffer_max_events")]
    pub buffer_max_events: usize,
    /// Bytes of hits held while the server is down; past this, backpressure
    /// (hits carry their line: a count alone would not bound memory).
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: usize,
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// CA file and client certificate for https.
    #[serde(default)]
    pub tls: TlsSettings,
}

fn default_index() -> String {
    "iocd-hits".into()
}
fn default_batch_max_events() -> usize {
    500
}
fn default_batch_timeout_ms() -> u64 {
    1000
}
fn default_buffer_max_bytes() -> usize {
    64 << 20
}
fn default_buffer_max_events() -> usize {
    100_000
}
fn default_request_timeout_secs() -> u64 {
    10
}
fn default_max_backoff_secs() -> u64 {
    30
}

/// An `http://` or `https://` URL, checked when the config is read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(reqwest::Url);

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(s: String) -> Result<HttpUrl, String> {
        let url = reqwest::Url::parse(&s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("{s:?} is not an http:// or https:// URL"));
        }
        Ok(HttpUrl(url))
    }
}

/// How hits are put in a request body.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array per request (`application/json`).
    JsonArray,
    /// Elasticsearch `_bulk`: a `create` action line before each document.
    EsBulk,
}

impl HttpSinkConfig {
    /// # Errors
    /// A setting out of range, or TLS files given for a plain http:// URL.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("batch_max_events", self.batch_max_events, 1, 1_000_000)?;
        in_range(
            "buffer_max_events",
            self.buffer_max_events,
            self.batch_max_events,
            100_000_000,
        )?;
        in_range("buffer_max_bytes", self.buffer_max_bytes, 1 << 16, 1 << 36)?;
        in_range("batch_timeout_ms", self.batch_timeout_ms, 0, 3_600_000)?;
        in_range("request_timeout_secs", self.request_timeout_secs, 1, 3600)?;
        in_range("max_backoff_secs", self.max_backoff_secs, 1, 86_400)?;
        if self.encoding == HttpEncoding::EsBulk && self.index.is_empty() {
            return Err(Invalid::new("index", "an es_bulk sink needs an index name"));
        }
        if self.tls != TlsSettings::default() && self.url.0.scheme() != "https" {
            return Err(Invalid::new("tls", "TLS settings need an https:// URL"));
        }
        Ok(())
    }

    /// How the driver gathers and retries for this sink.
    pub fn driver_settings(&self) -> DriverSettings {
        DriverSettings {
            max_events: self.batch_max_events,
            linger: Duration::from_millis(self.batch_timeout_ms),
            buffer_max_events: self.buffer_max_events,
            buffer_max_bytes: self.buffer_max_bytes,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(self.max_backoff_secs),
        }
    }
}

pub struct HttpWriter {
    name: Arc<str>,
    client: reqwest::Client,
    url: reqwest::Url,
    encoding: HttpEncoding,
    /// `{"create":{"_index":…}}` and a newline, for `es_bulk`.
    bulk_action: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl HttpWriter {
    /// # Errors
    /// TLS files that cannot be read, or a header that is not valid HTTP.
    pub fn new(name: Arc<str>, c: &HttpSinkConfig) -> Result<HttpWriter, String> {
        let client = http_client::client(Duration::from_secs(c.request_timeout_secs), &c.tls)?;
        let headers = http_client::header_map(&c.headers)?;
        let mut bulk_action =
            serde_json::to_vec(&serde_json::json!({ "create": { "_index": c.index } }))
                .expect("JSON of strings");
        bulk_action.push(b'\n');
        Ok(HttpWriter {
            name,
            client,
            url: c.url.0.clone(),
            encoding: c.encoding,
            bulk_action,
            headers,
        })
    }

    /// The request body for `hits`.
    fn body(&self, hits: &[PendingHit], format: HitFormat) -> Vec<u8> {
        let mut body = Vec::new();
        match self.encoding {
            HttpEncoding::Ndjson => hits
                .iter()
                .for_each(|h| body.extend_from_slice(h.bytes(format))),
            HttpEncoding::JsonArray => {
                body.push(b'[');
                for (i, h) in hits.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    let line = h.bytes(format);
                    body.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
                }
                body.push(b']');
            }
            HttpEncoding::EsBulk => {
                for h in hits {
                    body.extend_from_slice(&self.bulk_action);
                    body.extend_from_slice(h.bytes(format));
                }
            }
        }
        body
    }
}

impl HitWriter for HttpWriter {
    async fn write(&mut self, hits: &[PendingHit], format: HitFormat) -> Outcome {
        let ctype = match self.encoding {
            HttpEncoding::JsonArray => "application/json",
            HttpEncoding::Ndjson | HttpEncoding::EsBulk => "application/x-ndjson",
        };
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, ctype)
            .body(self.body(hits, format))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::retry_all(hits.len(), http_client::describe(&e)),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 if self.encoding == HttpEncoding::EsBulk => match response.bytes().await {
                Ok(body) => bulk_outcome(&body, hits.len()),
                Err(e) => Outcome::retry_all(hits.len(), http_client::describe(&e)),
            },
            200..=299 => Outcome::written(),
            400 | 413 | 422 => {
                tracing::error!(sink = %self.name, status, "the server refused the request as malformed");
                Outcome::rejected_all(hits.len(), format!("HTTP {status}"))
            }
            _ => Outcome::retry_all(hits.len(), format!("HTTP {status}")),
        }
    }
}

/// What a `_bulk` answer says of each of `n` documents sent in order:
/// 2xx written, 429 and 5xx retried, anything else refused for good.
fn bulk_outcome(body: &[u8], n: usize) -> Outcome {
    #[derive(Deserialize)]
    struct Bulk {
        #[serde(default)]
        errors: bool,
        #[serde(default)]
        items: Vec<BTreeMap<String, Item>>,
    }
    #[derive(Deserialize)]
    struct Item {
        status: u16,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    let bulk: Bulk = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Outcome::retry_all(n, format!("not a _bulk answer: {e}")),
    };
    if !bulk.errors {
        return Outcome::written();
    }
    if bulk.items.len() != n {
        return Outcome::retry_all(
            n,
            format!(
                "the _bulk answer has {} items for {n} documents",
                bulk.items.len()
            ),
        );
    }
    let mut out = Outcome::default();
    let mut reasons = Vec::new();
    for (i, item) in bulk.items.iter().enumerate() {
        let Some(item) = item.values().next() else {
            out.retry.push(i);
            continue;
        };
        match item.status {
            200..=299 => {}
            429 | 500..=599 => out.retry.push(i),
            _ => {
                out.rejected.push(i);
                if reasons.len() < 3 {
                    let e = item.error.as_ref();
                    let kind = e.and_then(|e| e["type"].as_str()).unwrap_or("error");
                    let reason = e.and_then(|e| e["reason"].as_str()).unwrap_or("");
                    reasons.push(format!("{} {kind}: {reason}", item.status));
                }
            }
        }
    }
    let mut why = reasons.join("; ");
    if !out.retry.is_empty() {
        if !why.is_empty() {
            why.push_str("; ");
        }
        why.push_str(&format!(
            "{} documents to retry (429 or 5xx)",
            out.retry.len()
        ));
    }
    out.why = Some(why);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_when_read() {
        assert!(HttpUrl::try_from("http://127.0.0.1:8080/ingest?x=1".to_owned()).is_ok());
        assert!(HttpUrl::try_from("https://[::1]:9200/_bulk".to_owned()).is_ok());
        for bad in ["ftp://x/", "http://", "not a url", "/_bulk"] {
            assert!(HttpUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    /// A recorded `_bulk` answer: one document created, one refused by the
    /// mapping, one rejected for load (429).
    const RECORDED: &str = r#"{"took":30,"errors":true,"items":[
      {"create":{"_index":"iocd-hits","_id":"a","status":201,"result":"created"}},
      {"create":{"_index":"iocd-hits","_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [threat.enrichments.indicator.ip] of type [ip]"}}},
      {"create":{"_index":"iocd-hits","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}
    ]}"#;

    #[test]
    fn bulk_answers_retry_only_what_may_be_retried() {
        let o = bulk_outcome(RECORDED.as_bytes(), 3);
        assert_eq!((o.retry, o.rejected), (vec![2], vec![1]));
        assert!(o.why.unwrap().contains("mapper_parsing_exception"));
        assert_eq!(
            bulk_outcome(br#"{"errors":false,"items":[]}"#, 5),
            Outcome::written()
        );
        assert_eq!(bulk_outcome(b"<html>", 2).retry, vec![0, 1]);
    }
}
