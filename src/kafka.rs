//! How iocd reaches a Kafka cluster, for the Kafka source and sink alike:
//! bootstrap servers, TLS, SASL (PLAIN, SCRAM) and any librdkafka property
//! passed through. Secrets (SASL password, say) are read when the client is
//! made, from the config, the environment or a file, and never logged.
//!
//! librdkafka does the protocol, reconnection and retries; this module only
//! turns settings into its `ClientConfig` and reads its statistics.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::settings::{Invalid, Secret};

/// `[sources.NAME.tls]` / `[sinks.NAME.tls]`: TLS to the brokers. Its
/// presence turns TLS on (`security.protocol` `ssl` or `sasl_ssl`).
pub type KafkaTls = crate::settings::TlsSettings;

/// SASL mechanisms iocd supports (GSSAPI needs Cyrus SASL, not built in).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[sources.NAME.sasl]` / `[sinks.NAME.sasl]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: Secret,
    pub password: Secret,
}

/// What a Kafka source or sink says of its connection (each component's
/// own config struct holds these fields; this is the view both share).
pub struct Connection<'a> {
    pub brokers: &'a str,
    pub client_id: Option<&'a str>,
    pub tls: Option<&'a KafkaTls>,
    pub sasl: Option<&'a KafkaSasl>,
    pub librdkafka: &'a BTreeMap<String, String>,
}

/// librdkafka properties iocd sets itself because its guarantees rest on
/// them: passing them through is refused, naming the setting to use.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("group.id", "group"),
    ("client.id", "client_id"),
    ("enable.auto.commit", "(iocd commits after the sinks write)"),
    (
        "enable.auto.offset.store",
        "(iocd commits after the sinks write)",
    ),
    ("enable.idempotence", "(always on)"),
    ("acks", "(always all)"),
    ("security.protocol", "tls / sasl"),
    ("sasl.mechanism", "sasl.mechanism"),
    ("sasl.mechanisms", "sasl.mechanism"),
    ("sasl.username", "sasl.username"),
    ("sasl.password", "sasl.password"),
];

impl Connection<'_> {
    /// Checks what can be checked without connecting: a broker list, and
    /// pass-through properties librdkafka knows and iocd does not own.
    ///
    /// # Errors
    /// The first setting that is wrong, by its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(Invalid::new("brokers", "at least one host:port is needed"));
        }
        for key in self.librdkafka.keys() {
            if let Some((_, instead)) = OWNED.iter().find(|(k, _)| k == key) {
                return Err(Invalid::new(
                    &format!("librdkafka.{key}"),
                    format!("set by iocd; use {instead}"),
                ));
            }
        }
        // librdkafka checks every property when a configuration is made,
        // without connecting.
        let mut c = ClientConfig::new();
        for (k, v) in self.librdkafka {
            c.set(k, v);
        }
        c.create_native_config()
            .map(drop)
            .map_err(|e| Invalid::new("librdkafka", e.to_string()))
    }

    /// The librdkafka configuration, secrets resolved.
    ///
    /// # Errors
    /// A secret that cannot be read, named.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers);
        if let Some(id) = self.client_id {
            c.set("client.id", id);
        }
        // Lag and broker state come from librdkafka's statistics.
        c.set("statistics.interval.ms", "1000");
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(tls) = self.tls {
            for (key, path) in [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
            ] {
                if let Some(p) = path {
                    c.set(key, p.display().to_string());
                }
            }
        }
        if let Some(sasl) = self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.as_str());
            let user = sasl
                .username
                .resolve()
                .map_err(|e| format!("sasl.username: {e}"))?;
            let pass = sasl
                .password
                .resolve()
                .map_err(|e| format!("sasl.password: {e}"))?;
            c.set("sasl.username", user);
            c.set("sasl.password", pass);
        }
        for (k, v) in self.librdkafka {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// True when librdkafka's statistics show a broker connection that is up:
/// whether a Kafka client can reach its cluster now.
pub fn any_broker_up(stats: &rdkafka::Statistics) -> bool {
    stats
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP")
}

/// Characters a Kafka topic name may hold.
pub fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A placeholder's character as one a topic may hold.
pub fn topic_safe(c: char) -> char {
    if topic_char(c) {
        c
    } else {
        '_'
    }
}

/// librdkafka's own log lines, into iocd's log (`component` names the
/// source or sink): errors and warnings as such, the rest at debug.
pub fn log(
    component: &str,
    level: rdkafka::config::RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(component, facility, "librdkafka: {message}")
        }
        L::Warning => tracing::warn!(component, facility, "librdkafka: {message}"),
        L::Notice | L::Info => tracing::info!(component, facility, "librdkafka: {message}"),
        L::Debug => tracing::debug!(component, facility, "librdkafka: {message}"),
    }
}

/// `iocd check --connect`: reaches the cluster and says whether each of
/// `topics` exists, naming what is missing.
///
/// # Errors
/// No broker answers within 10 s, a secret cannot be read, or a topic is
/// missing.
pub fn probe(conn: &Connection<'_>, topics: &[&str]) -> Result<String, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = conn
        .client_config()?
        .create()
        .map_err(|e| format!("Kafka client: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, std::time::Duration::from_secs(10))
        .map_err(|e| format!("no broker of {} answered: {e}", conn.brokers))?;
    let missing: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| {
            !metadata
                .topics()
                .iter()
                .any(|m| m.name() == *t && m.error().is_none() && !m.partitions().is_empty())
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "topics missing on {}: {}",
            conn.brokers,
            missing.join(", ")
        ));
    }
    Ok(format!(
        "{} broker(s) reachable; topics {} exist",
        metadata.brokers().len(),
        topics.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_is_checked_without_connecting() {
        let mut props = BTreeMap::new();
        let conn = |p: &BTreeMap<String, String>| {
            Connection {
                brokers: "127.0.0.1:1",
                client_id: None,
                tls: None,
                sasl: None,
                librdkafka: p,
            }
            .validate()
        };
        props.insert("fetch.min.bytes".into(), "1024".into());
        assert!(conn(&props).is_ok());
        props.insert("fetch.min.bytez".into(), "1".into());
        let e = conn(&props).unwrap_err();
        assert!(e.to_string().contains("fetch.min.bytez"), "{e}");
        props.clear();
        props.insert("enable.auto.commit".into(), "true".into());
        let e = conn(&props).unwrap_err();
        assert_eq!(e.key, "librdkafka.enable.auto.commit");
    }
}
