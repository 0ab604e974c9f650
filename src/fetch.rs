//! One bounded, conditional HTTP(S) GET of a feed: the request half of
//! [`crate::remote`].
//!
//! Invariants a caller can rely on:
//! - a body never exceeds `max_bytes`, compressed or not: `Content-Encoding:
//!   gzip` (decoded by reqwest) and gzip bodies (`.gz` files, detected by
//!   their magic bytes, decoded with flate2) are counted after decoding, and
//!   reading stops at the limit;
//! - a `304 Not Modified` is only possible when validators were sent;
//! - configured header values are marked sensitive and never appear in an
//!   error.

use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http_client::{self, TlsSettings};

/// What the server said identifies a version of the body, sent back as
/// `If-None-Match` and `If-Modified-Since`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The `ETag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` date, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// The answer to a GET.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// `304`: what is held is current.
    NotModified,
    /// A new body (decoded) and its validators.
    Body {
        /// The body, at most `max_bytes`.
        bytes: Vec<u8>,
        /// The body's validators (none when the server sent none).
        validators: Validators,
    },
}

/// Why a GET failed. Each names its URL, never a header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The client could not be built (a CA file, a secret that cannot be read).
    Client(String),
    /// No answer: connection, TLS or timeout.
    Transport {
        /// The URL requested.
        url: String,
        /// What failed, with its causes.
        message: String,
    },
    /// An error status.
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, which often says why.
        body: String,
    },
    /// The body is larger than `max_bytes` (after decoding).
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        max_bytes: u64,
    },
    /// A gzip body that does not decode.
    Gzip {
        /// The URL requested.
        url: String,
        /// The decoder's message.
        message: String,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Client(e) => write!(f, "HTTP client: {e}"),
            FetchError::Transport { url, message } => write!(f, "GET {url}: {message}"),
            FetchError::Status { url, status, body } => {
                write!(f, "GET {url}: HTTP {status}: {body}")
            }
            FetchError::TooLarge { url, max_bytes } => {
                write!(f, "GET {url}: the body exceeds max_bytes ({max_bytes})")
            }
            FetchError::Gzip { url, message } => write!(f, "GET {url}: bad gzip body: {message}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// How to fetch: one client (the shared stack, with this feed's TLS and
/// timeout) and the headers sent with every request.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    max_bytes: u64,
}

impl Fetcher {
    /// A fetcher with `timeout` per request (connect and whole answer).
    ///
    /// # Errors
    /// TLS files that cannot be read, a secret that cannot be resolved, a
    /// header that is not valid HTTP.
    pub fn new(
        timeout: Duration,
        tls: &TlsSettings,
        headers: &std::collections::BTreeMap<String, crate::settings::Secret>,
        max_bytes: u64,
    ) -> Result<Fetcher, FetchError> {
        Ok(Fetcher {
            client: http_client::client(timeout, tls).map_err(FetchError::Client)?,
            headers: http_client::header_map(headers).map_err(FetchError::Client)?,
            max_bytes,
        })
    }

    /// GETs `url`, conditionally when `held` has validators.
    ///
    /// # Errors
    /// See [`FetchError`].
    pub async fn get(&self, url: &str, held: &Validators) -> Result<Fetched, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_owned(),
            message: http_client::describe(&e),
        };
        let mut req = self.client.get(url).headers(self.headers.clone());
        if let Some(etag) = &held.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = &held.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, date);
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
        };
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            max_bytes: self.max_bytes,
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            // An error page is kept short; a body never past the limit.
            let cap = if status.is_success() {
                self.max_bytes
            } else {
                200
            };
            if bytes.len() as u64 + chunk.len() as u64 > cap {
                if !status.is_success() {
                    bytes
                        .extend_from_slice(&chunk[..(cap as usize - bytes.len()).min(chunk.len())]);
                    break;
                }
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).trim().to_owned(),
            });
        }
        let bytes = gunzip_bounded(bytes, self.max_bytes).map_err(|e| match e {
            Gunzip::TooLarge => too_large(),
            Gunzip::Bad(message) => FetchError::Gzip {
                url: url.to_owned(),
                message,
            },
        })?;
        Ok(Fetched::Body { bytes, validators })
    }
}

enum Gunzip {
    TooLarge,
    Bad(String),
}

/// `bytes` decoded when they are gzip (a `.gz` file served as is), else
/// unchanged; the decoded size is bounded by `max_bytes`.
fn gunzip_bounded(bytes: Vec<u8>, max_bytes: u64) -> Result<Vec<u8>, Gunzip> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(max_bytes + 1)
        .read_to_end(&mut out)
        .map_err(|e| Gunzip::Bad(e.to_string()))?;
    if out.len() as u64 > max_bytes {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(text: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_decode_within_the_limit() {
        let text = b"198.51.100.7\nmalware.example\n".repeat(100);
        assert!(matches!(gunzip_bounded(gz(&text), 1 << 20), Ok(t) if t == text));
        assert!(matches!(gunzip_bounded(text.clone(), 10), Ok(t) if t == text));
        // A gzip bomb stops at the limit.
        let bomb = gz(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 100_000);
        assert!(matches!(
            gunzip_bounded(bomb, 1 << 20),
            Err(Gunzip::TooLarge)
        ));
        assert!(matches!(
            gunzip_bounded(vec![0x1f, 0x8b, 0, 0], 100),
            Err(Gunzip::Bad(_))
        ));
    }
}
