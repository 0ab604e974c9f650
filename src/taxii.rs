//! A TAXII 2.1 collection as a feed: polls `GET {collection}/objects/` with
//! `added_after` (resuming from the last `X-TAXII-Date-Added-Last`),
//! following `next` while `more` is true, and keeps the newest version of
//! every object. The checkpoint and the objects are persisted, so a restart
//! neither downloads the whole collection again nor, with the server down,
//! stops matching. A failed poll keeps what was loaded; polls are retried
//! with backoff. Objects become indicators through the STIX reader, so the
//! lifecycle (revoked, expired, newest version) is the same as for files.
//!
//! A small blocking HTTP/1.1 client (it runs on the reload thread):
//! `http://` or `https://` (rustls, verified against the system's roots or a
//! configured CA file), basic or bearer authentication, timeouts.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sinks::http::Target;

pub const MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// How to reach a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    /// `http://host:port/api-root/collections/ID/`
    pub url: String,
    pub auth: Auth,
    pub timeout: Duration,
    /// Objects asked for per page (`limit`); servers may send fewer.
    pub page_size: usize,
    /// PEM file of the CA(s) to trust for https, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    Bearer(String),
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

    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

/// The state of one collection: objects by id and the resume point.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The `X-TAXII-Date-Added-Last` of the last page read.
    pub checkpoint: Option<String>,
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

/// What one poll did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub requests: usize,
    pub objects: usize,
}

/// Polls `c` from `state`'s checkpoint, merging what is new.
///
/// # Errors
/// A request failed or an answer was not TAXII; `state` keeps whatever pages
/// were merged before, but its checkpoint only moves on a complete poll.
pub fn poll(c: &Collection, state: &mut State) -> Result<Poll, String> {
    if !state.checked {
        check(c)?;
        state.checked = true;
    }
    let base = format!("{}/objects/", c.url.trim_end_matches('/'));
    let mut result = Poll::default();
    let mut next: Option<String> = None;
    let mut last_added = state.checkpoint.clone();
    loop {
        // The same filters on every page (servers check), `limit` included.
        let mut query = vec![format!("limit={}", c.page_size.max(1))];
        if let Some(after) = &state.checkpoint {
            query.push(format!("added_after={}", encode(after)));
        }
        if let Some(n) = &next {
            query.push(format!("next={}", encode(n)));
        }
        let url = format!("{base}?{}", query.join("&"));
        let (status, headers, body) = get(&url, c)?;
        result.requests += 1;
        if status == 204 || (status == 404 && result.requests == 1 && body.is_empty()) {
            break;
        }
        if status != 200 {
            return Err(format!(
                "GET {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        let envelope: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {url}: not a TAXII envelope: {e}"))?;
        for o in envelope["objects"].as_array().into_iter().flatten() {
            state.merge(o.clone());
            result.objects += 1;
        }
        if let Some(last) = headers.get("x-taxii-date-added-last") {
            last_added = Some(last.clone());
        }
        if envelope["more"].as_bool() == Some(true) {
            match envelope["next"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => return Err(format!("GET {url}: more is true but there is no next")),
            }
        } else {
            break;
        }
        if result.requests > 100_000 {
            return Err("more than 100000 pages: giving up".into());
        }
    }
    state.checkpoint = last_added;
    Ok(result)
}

/// Checks, once, that the API root speaks TAXII 2.1 and that the collection
/// exists and may be read, so a wrong URL or account says so plainly.
fn check(c: &Collection) -> Result<(), String> {
    let url = c.url.trim_end_matches('/');
    let (root, _) = url.rsplit_once("/collections/").ok_or_else(|| {
        format!(
            "{}: not a collection URL (…/API-ROOT/collections/ID/)",
            c.url
        )
    })?;
    let json = |u: &str| -> Result<Value, String> {
        let (status, _, body) = get(u, c)?;
        if status != 200 {
            return Err(format!(
                "GET {u}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {u}: not JSON: {e}"))
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
        return Err(format!(
            "{root}/ does not list {MEDIA_TYPE} among its versions"
        ));
    }
    let collection = json(&format!("{url}/"))?;
    if collection["can_read"].as_bool() != Some(true) {
        return Err(format!(
            "{url}/: the collection cannot be read with these credentials (can_read is not true)"
        ));
    }
    Ok(())
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

type Response = (u16, HashMap<String, String>, Vec<u8>);

/// `http[s]://host[:port]/path` → (TLS?, target); https defaults to port 443.
pub fn endpoint(url: &str) -> Option<(bool, Target)> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://")?),
    };
    let mut t = Target::parse(&format!("http://{rest}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let explicit_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.starts_with('[') || h.ends_with(']'))
    });
    if tls && !explicit_port {
        t.port = 443;
    }
    Some((tls, t))
}

/// A TLS client configuration trusting `ca_file`, or the system's roots.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c); // an unusable system root is no reason to fail
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to verify the server with".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// One GET on a fresh connection.
fn get(url: &str, c: &Collection) -> Result<Response, String> {
    let (tls, t) = endpoint(url).ok_or_else(|| format!("{url}: not an http:// or https:// URL"))?;
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, c.timeout).map_err(|e| format!("{url}: {e}"))?;
    s.set_read_timeout(Some(c.timeout))
        .and_then(|()| s.set_write_timeout(Some(c.timeout)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: {MEDIA_TYPE}\r\nUser-Agent: iocd/{}\r\nConnection: close\r\n", t.path, t.host, t.port, env!("CARGO_PKG_VERSION"));
    if let Some(a) = c.auth.header() {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = Vec::new();
    if tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| format!("{url}: {e}"))?;
        let conn = rustls::ClientConnection::new(tls_config(c.ca_file.as_ref())?, name)
            .map_err(|e| format!("{url}: {e}"))?;
        let mut tls = rustls::StreamOwned::new(conn, s);
        tls.write_all(req.as_bytes())
            .map_err(|e| format!("{url}: {e}"))?;
        // Servers often close without close_notify after a complete answer;
        // the body is still checked against its length below.
        if let Err(e) = tls.read_to_end(&mut raw) {
            if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() {
                return Err(format!("{url}: {e}"));
            }
        }
    } else {
        s.write_all(req.as_bytes())
            .map_err(|e| format!("{url}: {e}"))?;
        s.read_to_end(&mut raw).map_err(|e| format!("{url}: {e}"))?;
    }
    parse_response(&raw).ok_or_else(|| format!("{url}: not an HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Some((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_encoding() {
        assert_eq!(base64(b"u:p"), "dTpw");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            encode("2026-01-01T00:00:00.000Z"),
            "2026-01-01T00%3A00%3A00.000Z"
        );
    }

    #[test]
    fn endpoints() {
        let e = |u: &str| endpoint(u).map(|(tls, t)| (tls, t.host, t.port, t.path));
        assert_eq!(
            e("https://cti.example/api/collections/x/"),
            Some((
                true,
                "cti.example".into(),
                443,
                "/api/collections/x/".into()
            ))
        );
        assert_eq!(
            e("https://127.0.0.1:8443/a/"),
            Some((true, "127.0.0.1".into(), 8443, "/a/".into()))
        );
        assert_eq!(
            e("http://127.0.0.1/a/"),
            Some((false, "127.0.0.1".into(), 80, "/a/".into()))
        );
        assert_eq!(e("ftp://x/"), None);
    }

    #[test]
    fn responses() {
        let (s, h, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nX-TAXII-Date-Added-Last: 2026\r\nContent-Length: 2\r\n\r\n{}xx",
        )
        .unwrap();
        assert_eq!(
            (s, h["x-taxii-date-added-last"].as_str(), b.as_slice()),
            (200, "2026", &b"{}"[..])
        );
        let (_, _, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(b, b"{}");
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
