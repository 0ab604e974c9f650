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

#[cfg(test)]
mod tests {
    use super::*;

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
