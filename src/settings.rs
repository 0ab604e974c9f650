//! What every component's settings share: the validation error a
//! component's `validate()` returns, and range checks. A leaf module: it
//! imports nothing of iocd, so components and the top-level config can
//! both use it without importing each other.

use std::fmt;

/// A setting a component cannot run with: the key, relative to the
/// component's table (`url`, `buffer_max_events`), and why. The top-level
/// config prefixes the table's path (`sinks.siem.url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The key within the component's table; empty for the table as a whole.
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: &str, message: impl Into<String>) -> Invalid {
        Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The same error seen from the enclosing table `prefix`.
    pub fn within(self, prefix: &str) -> Invalid {
        let key = match (prefix.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        Invalid { key, ..self }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks that `value` of setting `key` lies in `min..=max`.
///
/// # Errors
/// When it does not, naming the key and the range.
pub fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Invalid> {
    if value < min || value > max {
        return Err(Invalid::new(
            key,
            format!("{value} is out of range: it must be from {min} to {max}"),
        ));
    }
    Ok(())
}

/// TLS settings of a client (`[sinks.NAME.tls]`, say): HTTP, Kafka and
/// NATS clients alike. The table's presence may turn TLS on where the
/// protocol has no `https://` to say so.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA(s) to trust instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for servers that verify clients.
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
}

/// A secret setting: given inline, or read from the environment or a file
/// when the component starts (`{ env = "FEED_TOKEN" }`, `{ file =
/// "/run/secrets/token" }`), so configs can be shared without it. Its
/// `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// The value of an environment variable.
    Env {
        /// The variable's name.
        env: String,
    },
    /// The content of a file, one trailing newline removed.
    File {
        /// The file's path.
        file: std::path::PathBuf,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(..)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
        }
    }
}

impl Secret {
    /// The secret's value.
    ///
    /// # Errors
    /// An unset variable or an unreadable file, named (the value never is).
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::Env { env } => {
                std::env::var(env).map_err(|_| format!("environment variable {env} is not set"))
            }
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|s| {
                    let s = s.strip_suffix('\n').unwrap_or(&s);
                    s.strip_suffix('\r').unwrap_or(s).to_owned()
                })
                .map_err(|e| format!("secret file {}: {e}", file.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_resolve_and_never_show() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Secret,
            b: Secret,
            c: Secret,
        }
        let dir = std::env::temp_dir().join(format!("iocd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s"), "from-file\n").unwrap();
        let t: T = toml::from_str(&format!(
            "a = \"inline\"\nb = {{ env = \"IOCD_TEST_SURELY_UNSET\" }}\nc = {{ file = {:?} }}\n",
            dir.join("s").display().to_string()
        ))
        .unwrap();
        assert_eq!(t.a.resolve().unwrap(), "inline");
        assert!(t
            .b
            .resolve()
            .unwrap_err()
            .contains("IOCD_TEST_SURELY_UNSET"));
        assert_eq!(t.c.resolve().unwrap(), "from-file");
        assert_eq!(format!("{:?}", t.a), "Secret(..)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_nest_and_ranges_name_their_bounds() {
        let e = Invalid::new("url", "bad").within("sinks.siem");
        assert_eq!(e.to_string(), "sinks.siem.url: bad");
        assert_eq!(Invalid::new("", "x").within("sources.a").key, "sources.a");
        assert!(in_range("n", 5u64, 1, 10).is_ok());
        let e = in_range("n", 0u64, 1, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "n: 0 is out of range: it must be from 1 to 10"
        );
    }
}
