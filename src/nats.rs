//! How iocd reaches a NATS server, for the NATS JetStream source and sink
//! alike: server URLs, credentials (token, user and password, NKey seed or
//! a creds file) and TLS. async-nats reconnects by itself; the connection's
//! events tell readiness whether it is up.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::metrics::Metrics;
use crate::settings::{Invalid, Secret, TlsSettings};

/// `[sources.NAME.auth]` / `[sinks.NAME.auth]`: one way to authenticate.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsAuth {
    pub token: Option<Secret>,
    pub user: Option<Secret>,
    pub password: Option<Secret>,
    /// An NKey seed (`SU...`).
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
}

impl NatsAuth {
    /// # Errors
    /// More than one method, or a user without a password.
    pub fn validate(&self) -> Result<(), Invalid> {
        let methods = [
            self.token.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(Invalid::new(
                "auth",
                "give one of token, user and password, nkey_seed or creds_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(Invalid::new("auth", "user and password go together"));
        }
        Ok(())
    }
}

/// What a NATS source or sink says of its connection.
pub struct Connection<'a> {
    /// `nats://host:port` (or `tls://`), several separated by commas.
    pub url: &'a str,
    pub auth: &'a NatsAuth,
    pub tls: Option<&'a TlsSettings>,
}

impl Connection<'_> {
    /// # Errors
    /// A URL list with no server, or a bad `auth` table.
    pub fn validate(&self) -> Result<(), Invalid> {
        for u in self.url.split(',') {
            let u = u.trim();
            let ok =
                ["nats://", "tls://"].iter().any(|s| u.starts_with(s)) && u.len() > "tls://".len();
            if !ok {
                return Err(Invalid::new(
                    "url",
                    format!("{u:?} is not a nats:// or tls:// URL"),
                ));
            }
        }
        self.auth.validate()
    }

    /// Connects, retrying in the background when the server is not up yet
    /// (so a daemon started before its broker still starts). `component`
    /// names the source or sink in readiness and logs; while the
    /// connection is down, `down` is called with the reason.
    ///
    /// # Errors
    /// A secret or creds file that cannot be read, or a TLS file.
    pub async fn connect(
        &self,
        component: Arc<str>,
        down: impl Fn(&Metrics, &str, Option<String>) + Send + Sync + 'static,
        metrics: Arc<Metrics>,
    ) -> Result<async_nats::Client, String> {
        let mut o = async_nats::ConnectOptions::new()
            .name(format!("iocd {component}"))
            .retry_on_initial_connect()
            .max_reconnects(None);
        let a = self.auth;
        if let Some(t) = &a.token {
            o = o.token(t.resolve().map_err(|e| format!("auth.token: {e}"))?);
        }
        if let (Some(u), Some(p)) = (&a.user, &a.password) {
            o = o.user_and_password(
                u.resolve().map_err(|e| format!("auth.user: {e}"))?,
                p.resolve().map_err(|e| format!("auth.password: {e}"))?,
            );
        }
        if let Some(s) = &a.nkey_seed {
            o = o.nkey(s.resolve().map_err(|e| format!("auth.nkey_seed: {e}"))?);
        }
        if let Some(f) = &a.creds_file {
            o = o
                .credentials_file(f)
                .await
                .map_err(|e| format!("auth.creds_file {}: {e}", f.display()))?;
        }
        if let Some(tls) = self.tls {
            o = o.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                o = o.add_root_certificates(ca.clone());
            }
            if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                o = o.add_client_certificate(c.clone(), k.clone());
            }
        }
        let (name, m) = (component.clone(), metrics.clone());
        down(&m, &name, Some("connecting to NATS".into()));
        let down = Arc::new(down);
        o = o.event_callback(move |event| {
            let (name, m, down) = (name.clone(), m.clone(), down.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(component = %name, "NATS connected");
                        down(&m, &name, None);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(component = %name, "NATS disconnected; reconnecting");
                        down(&m, &name, Some("NATS server unreachable".into()));
                    }
                    other => tracing::warn!(component = %name, event = %other, "NATS"),
                }
            }
        });
        o.connect(self.url)
            .await
            .map_err(|e| format!("NATS {}: {e}", self.url))
    }
}

/// Characters a literal part of a NATS subject may hold (tokens are
/// separated by `.`; `*` and `>` are wildcards, not for publishing).
pub fn subject_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !matches!(c, '*' | '>')
}

/// A placeholder's character as one a single subject token may hold.
pub fn subject_safe(c: char) -> char {
    if subject_char(c) && c != '.' {
        c
    } else {
        '_'
    }
}

/// `iocd check --connect`: connects (10 s at most) and says whether
/// `stream` exists (with `consumer`, or that it will be created), or
/// whether some stream takes `subject`.
///
/// # Errors
/// The server cannot be reached, a secret read, or the stream is missing.
pub async fn probe(
    conn: &Connection<'_>,
    stream: Option<(&str, &str)>,
    subject: Option<&str>,
) -> Result<String, String> {
    let client = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.connect(Arc::from("check"), |_, _, _| {}, Metrics::new()),
    )
    .await
    .map_err(|_| format!("{}: no answer within 10 s", conn.url))??;
    let connected = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    if connected.is_err() {
        return Err(format!("{}: cannot connect within 10 s", conn.url));
    }
    let js = async_nats::jetstream::new(client);
    let mut said = Vec::new();
    if let Some((stream, consumer)) = stream {
        let s = js
            .get_stream(stream)
            .await
            .map_err(|e| format!("stream {stream}: {e}"))?;
        let has_consumer = s.consumer_info(consumer).await.is_ok();
        said.push(format!(
            "stream {stream} exists; consumer {consumer} {}",
            if has_consumer {
                "exists"
            } else {
                "will be created"
            }
        ));
    }
    if let Some(subject) = subject {
        let name = js
            .stream_by_subject(subject)
            .await
            .map_err(|e| format!("no stream takes subject {subject}: {e}"))?;
        said.push(format!("stream {name} takes {subject}"));
    }
    Ok(said.join("; "))
}
