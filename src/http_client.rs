//! The one HTTP client stack: `reqwest` over rustls (ring), for the HTTP
//! sink and every component that fetches over HTTP(S). `https://` is
//! verified against the system's roots or a configured CA file, with an
//! optional client certificate (mTLS); `http://` stays allowed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::settings::TlsSettings;

/// The PEM certificates in `path`.
///
/// # Errors
/// The file cannot be read, or holds no certificate.
pub fn pem_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// A rustls client configuration: roots from `tls.ca_file` or the system,
/// and the client certificate when one is configured.
///
/// # Errors
/// A file that cannot be read or holds no usable certificate or key; no
/// root at all to verify servers with.
pub fn rustls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let certs_in = pem_certs;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for c in certs_in(path)? {
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
        return Err("no CA certificate to verify servers with".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("key file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs_in(cert)?, key)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))
        }
        _ => Err("cert_file and key_file go together".into()),
    }
}

/// An async client with `timeout` per request and `tls` for https.
///
/// # Errors
/// As [`rustls_config`], or a client reqwest cannot build.
pub fn client(timeout: Duration, tls: &TlsSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls_config(tls)?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("iocd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Configured headers as a header map, secrets resolved and every value
/// marked sensitive (an `Authorization` value is never logged).
///
/// # Errors
/// A secret that cannot be read, or a name or value that is not valid HTTP.
pub fn header_map(
    headers: &std::collections::BTreeMap<String, crate::settings::Secret>,
) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header {k:?}: {e}"))?;
        let value = v.resolve().map_err(|e| format!("header {k}: {e}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("header {k}: the value is not valid in a header"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// The first line of an error chain with its causes: reqwest's own
/// `Display` says only "error sending request".
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Runs `fut` to completion from blocking code: on the runtime's handle
/// when called from a blocking thread of it (the reload thread), else on a
/// runtime of its own (`iocd scan`, `iocd check`).
///
/// # Panics
/// When called from an async task (a runtime worker thread), which must
/// `.await` instead.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(fut),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(fut),
    }
}
