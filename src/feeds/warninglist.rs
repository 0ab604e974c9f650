//! MISP warninglists: `{"name": ..., "type": ..., "list": [...]}` JSON files
//! of known-benign values, used as allowlists.

use serde::Deserialize;

/// How a warninglist's entries match (MISP's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Equal to the indicator's canonical value.
    String,
    /// Contained in the indicator's value, ignoring ASCII case.
    Substring,
    /// The domain itself and every subdomain.
    Hostname,
    /// Addresses and networks inside the CIDR.
    Cidr,
    /// A regex matching the indicator's value.
    Regex,
}

/// A parsed warninglist.
#[derive(Clone, Debug, Deserialize)]
pub struct Warninglist {
    #[serde(default)]
    /// The list's own name.
    pub name: String,
    #[serde(rename = "type", default = "default_type")]
    /// How entries match.
    pub match_type: MatchType,
    /// The entries.
    pub list: Vec<String>,
}

fn default_type() -> MatchType {
    MatchType::String
}

/// Parses a warninglist.
///
/// # Errors
/// The JSON error, whose line and column name the place.
pub fn parse(text: &str) -> Result<Warninglist, serde_json::Error> {
    serde_json::from_str(text)
}
