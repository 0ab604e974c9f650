//! Syslog over TLS (RFC 5425) for TCP sources, with rustls: a server
//! certificate and key, and optionally client certificates checked against
//! a CA (mTLS). The certificate and key are read again when their files
//! change, so a renewed certificate (certbot, cert-manager) is served to
//! the next connection without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// `[sources.NAME.tls]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain the source presents.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA(s): when given, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// A rustls server configuration from the files.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate or key.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let certs = crate::http_client::pem_certs;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| format!("{}: {e}", self.key_file.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(certs(&self.cert_file)?, key)
            .map_err(|e| format!("{}: {e}", self.cert_file.display()))
    }

    fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert_file)?, m(&self.key_file)?))
    }
}

/// The acceptor in use, rebuilt when the certificate or key file changes.
pub struct Acceptor {
    settings: ServerTls,
    stamp: Option<(SystemTime, SystemTime)>,
    current: TlsAcceptor,
}

impl Acceptor {
    /// # Errors
    /// As [`ServerTls::server_config`].
    pub fn new(settings: ServerTls) -> Result<Acceptor, String> {
        let stamp = settings.stamp();
        let current = TlsAcceptor::from(Arc::new(settings.server_config()?));
        Ok(Acceptor {
            settings,
            stamp,
            current,
        })
    }

    /// The acceptor for the next connection: re-read when the files
    /// changed; a renewal that does not load keeps the one that did.
    pub fn current(&mut self) -> TlsAcceptor {
        let stamp = self.settings.stamp();
        if stamp != self.stamp {
            self.stamp = stamp;
            match self.settings.server_config() {
                Ok(c) => {
                    self.current = TlsAcceptor::from(Arc::new(c));
                    tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate changed but does not load; keeping the previous one")
                }
            }
        }
        self.current.clone()
    }
}

/// The subject of a client certificate (DER), as a distinguished name
/// (`CN=collector1,O=ACME`): what hits say in `tls.client.subject`.
pub fn subject(cert: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(c.subject().to_string().replace(", ", ","))
}
