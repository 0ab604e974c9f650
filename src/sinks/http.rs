//! Hits POSTed to an HTTP endpoint in batches: JSON lines or one JSON array
//! per request, with configured headers (e.g. `Authorization`). Failed
//! requests are retried with exponential backoff; while the server is down,
//! hits wait in a bounded buffer, and past it the sink stops taking batches,
//! which pushes back through the pipeline to the sources. Nothing is dropped
//! except what the server rejects as malformed (400, 413, 422), counted as
//! failed.
//!
//! A small HTTP/1.1 client of its own (one request per connection, plain
//! http://): enough for a SIEM's ingest endpoint or a local collector, with
//! no TLS stack to build.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::{HitFormat, HttpEncoding, SinkConfig};
use crate::metrics::Metrics;
use crate::pipeline::HitBatch;

/// Where requests go: `http://host[:port]/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Option<Target> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = rest
            .find('/')
            .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().ok()?),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| Target {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

pub struct HttpSink {
    name: Arc<str>,
    target: Target,
    encoding: HttpEncoding,
    headers: BTreeMap<String, String>,
    batch_max: usize,
    batch_timeout: Duration,
    buffer_max: usize,
    timeout: Duration,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
}

enum Outcome {
    Delivered,
    /// The server refused the payload itself: retrying cannot help.
    Rejected(u16),
    Retry(String),
}

impl HttpSink {
    pub fn new(name: Arc<str>, config: &SinkConfig, metrics: Arc<Metrics>) -> HttpSink {
        let SinkConfig::Http {
            url,
            encoding,
            headers,
            batch_max_events,
            batch_timeout_ms,
            buffer_max_events,
            request_timeout_secs,
            max_backoff_secs,
            ..
        } = config
        else {
            unreachable!("an http sink config")
        };
        metrics.set_sink_up(&name, true);
        HttpSink {
            target: Target::parse(url).expect("validated URL"),
            encoding: *encoding,
            headers: headers.clone(),
            batch_max: *batch_max_events,
            batch_timeout: Duration::from_millis(*batch_timeout_ms),
            buffer_max: *buffer_max_events,
            timeout: Duration::from_secs(*request_timeout_secs),
            max_backoff: Duration::from_secs(*max_backoff_secs),
            metrics,
            name,
        }
    }

    pub async fn run(self, format: HitFormat, mut rx: mpsc::Receiver<Arc<HitBatch>>) {
        let mut buffer: VecDeque<Arc<HitBatch>> = VecDeque::new();
        let mut buffered = 0usize;
        let mut open = true;
        while open || !buffer.is_empty() {
            // Fill up to a request's worth, waiting at most batch_timeout for more.
            let deadline = tokio::time::Instant::now() + self.batch_timeout;
            while open && buffered < self.batch_max.min(self.buffer_max) {
                let next = if buffer.is_empty() {
                    rx.recv().await
                } else {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(b) => b,
                        Err(_) => break,
                    }
                };
                match next {
                    Some(b) => {
                        buffered += b.hits;
                        buffer.push_back(b);
                    }
                    None => open = false,
                }
            }
            if buffer.is_empty() {
                continue;
            }
            // One request: whole batches up to batch_max hits (at least one batch).
            let mut take = 0;
            let mut events = 0;
            for b in &buffer {
                if take > 0 && events + b.hits > self.batch_max {
                    break;
                }
                take += 1;
                events += b.hits;
            }
            let body = self.body(buffer.iter().take(take).map(|b| b.lines(format)));
            self.deliver(&body, events).await;
            for _ in 0..take {
                let b = buffer.pop_front().expect("taken from the buffer");
                buffered -= b.hits;
            }
        }
    }

    fn body<'a>(&self, parts: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut body = Vec::new();
        match self.encoding {
            HttpEncoding::Ndjson => parts.for_each(|p| body.extend_from_slice(p)),
            HttpEncoding::JsonArray => {
                body.push(b'[');
                for line in parts
                    .flat_map(|p| p.split(|&b| b == b'\n'))
                    .filter(|l| !l.is_empty())
                {
                    if body.len() > 1 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line);
                }
                body.push(b']');
            }
        }
        body
    }

    /// Sends until delivered (or rejected), backing off between attempts.
    async fn deliver(&self, body: &[u8], events: usize) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.post(body).await {
                Outcome::Delivered => {
                    self.metrics
                        .sink_sent
                        .with_label_values(&[&self.name])
                        .inc_by(events as u64);
                    self.metrics.set_sink_up(&self.name, true);
                    return;
                }
                Outcome::Rejected(status) => {
                    tracing::error!(sink = %self.name, status, events, "server rejected the hits; dropping this request");
                    self.metrics
                        .sink_failed
                        .with_label_values(&[&self.name])
                        .inc_by(events as u64);
                    return;
                }
                Outcome::Retry(why) => {
                    tracing::warn!(sink = %self.name, error = %why, retry_in_ms = backoff.as_millis() as u64, "request failed; retrying");
                    self.metrics.set_sink_up(&self.name, false);
                    self.metrics
                        .sink_retried
                        .with_label_values(&[&self.name])
                        .inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    async fn post(&self, body: &[u8]) -> Outcome {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Err(_) => Outcome::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Outcome::Retry(e.to_string()),
            Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Delivered,
            Ok(Ok(status @ (400 | 413 | 422))) => Outcome::Rejected(status),
            Ok(Ok(status)) => Outcome::Retry(format!("HTTP {status}")),
        }
    }

    /// One request on a fresh connection; returns the response status.
    async fn exchange(&self, body: &[u8]) -> std::io::Result<u16> {
        let t = &self.target;
        let mut conn = TcpStream::connect((t.host.as_str(), t.port)).await?;
        let ctype = match self.encoding {
            HttpEncoding::Ndjson => "application/x-ndjson",
            HttpEncoding::JsonArray => "application/json",
        };
        let host = if t.host.contains(':') {
            format!("[{}]:{}", t.host, t.port)
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: iocd/{}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
            t.path,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body).await?;
        // The status line is all we need; read until it is complete.
        let mut resp = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        while !resp.contains(&b'\n') {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                ));
            }
            resp.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(
            &resp[..resp.iter().position(|&b| b == b'\n').unwrap_or(resp.len())],
        )
        .into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not an HTTP response: {line:?}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |u: &str| Target::parse(u);
        assert_eq!(
            t("http://127.0.0.1:8080/ingest?x=1"),
            Some(Target {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/ingest?x=1".into()
            })
        );
        assert_eq!(
            t("http://siem.example"),
            Some(Target {
                host: "siem.example".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            t("http://[::1]:9200/_bulk").map(|t| (t.host, t.port)),
            Some(("::1".into(), 9200))
        );
        assert_eq!(t("https://x"), None);
        assert_eq!(t("http://:80/"), None);
        assert_eq!(t("http://host:notaport/"), None);
    }

    #[test]
    fn bodies_in_both_encodings() {
        let mut cfg: crate::config::Config = crate::config::Config::parse(
            "t",
            "[feeds.f]\npath = \"f\"\n[sources.i]\ntype = \"stdin\"\n[sinks.h]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\nencoding = \"json_array\"\n",
        )
        .unwrap();
        let sink = HttpSink::new(Arc::from("h"), &cfg.sinks["h"], Metrics::new());
        let parts: [&[u8]; 2] = [b"{\"a\":1}\n{\"b\":2}\n", b"{\"c\":3}\n"];
        let array = sink.body(parts.iter().copied());
        let v: serde_json::Value = serde_json::from_slice(&array).unwrap();
        assert_eq!(v, serde_json::json!([{"a": 1}, {"b": 2}, {"c": 3}]));
        if let Some(SinkConfig::Http { encoding, .. }) = cfg.sinks.get_mut("h") {
            *encoding = HttpEncoding::Ndjson;
        }
        let sink = HttpSink::new(Arc::from("h"), &cfg.sinks["h"], Metrics::new());
        assert_eq!(
            sink.body(parts.iter().copied()),
            b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
    }
}
