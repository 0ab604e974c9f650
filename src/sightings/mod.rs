//! Sightings shared back: every indicator that hit is reported, per
//! interval, as a STIX 2.1 Sighting (and a MISP sighting), so that the
//! community that shared it can weigh it.
//!
//! Invariants:
//! - Sightings of an indicator marked TLP:RED are never exported; the TLP
//!   of the source indicator is kept on the sighting (`object_marking_refs`).
//! - Nothing accepted is lost: a bundle for TAXII is written to `state_dir`
//!   before it is sent, and deleted only once the server accepted it.
//! - Ids are derived from (identity, indicator, interval), so a bundle sent
//!   twice (an answer lost) repeats ids rather than making new sightings.
//! - Log lines are never exported: `observed_data_refs`, off by default,
//!   points at observed-data holding only the indicator's value.

pub mod export;

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::indicator::{Indicator, IndicatorType};
use crate::settings::{in_range, Invalid};
use crate::taxii::TaxiiConfig;

/// `[sightings]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingsConfig {
    /// Hits are aggregated over this many seconds, then exported.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Who sighted: the name of the STIX identity in `where_sighted_refs`
    /// (its id is derived from the name), and the MISP sighting's source.
    pub identity: String,
    /// Add observed-data objects (the indicator's value, counts and times;
    /// never a log line) and point at them with `observed_data_refs`.
    #[serde(default)]
    pub observed_data: bool,
    /// Append each interval's STIX bundle here, one JSON line per bundle.
    pub file: Option<std::path::PathBuf>,
    /// Append MISP sightings here (JSON lines: value, source, timestamp,
    /// type), for `misp-sighting` import.
    pub misp_file: Option<std::path::PathBuf>,
    /// POST each bundle to this TAXII 2.1 collection (`can_write`); kept in
    /// `state_dir` until accepted.
    pub taxii: Option<TaxiiConfig>,
}

fn default_interval_secs() -> u64 {
    300
}

impl SightingsConfig {
    /// # Errors
    /// An interval out of range, an empty identity, no exporter, or a
    /// TAXII collection that is not valid.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("interval_secs", self.interval_secs, 1, 7 * 86_400)?;
        if self.identity.trim().is_empty() {
            return Err(Invalid::new("identity", "name who sighted"));
        }
        if self.file.is_none() && self.misp_file.is_none() && self.taxii.is_none() {
            return Err(Invalid::new(
                "sightings",
                "name at least one of file, misp_file, taxii",
            ));
        }
        if let Some(t) = &self.taxii {
            t.validate().map_err(|e| e.within("taxii"))?;
        }
        Ok(())
    }
}

/// One indicator's sightings in the interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: IndicatorType,
    pub value: Box<str>,
    pub feed: std::sync::Arc<str>,
    /// The STIX indicator's id, when it came from STIX.
    pub stix_id: Option<Box<str>>,
    /// Its TLP (lowercase), when marked.
    pub tlp: Option<Box<str>>,
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// The hits of the current interval, by value; the few indicators of one
/// value (other types or feeds) share its entry, so a repeated hit finds
/// its count with the borrowed value and allocates nothing.
#[derive(Default)]
pub struct Tally {
    seen: Mutex<HashMap<Box<str>, Vec<Seen>>>,
}

impl Tally {
    /// Counts one hit of `ind` on a line seen at `at_ms`.
    pub fn count(&self, ind: &Indicator, at_ms: i64) {
        let feed = &ind.provenance.feed.name;
        let mut t = self.seen.lock().expect("sightings");
        let same = |s: &Seen| s.kind == ind.kind && s.feed == *feed;
        if let Some(e) = t
            .get_mut(&*ind.value)
            .and_then(|v| v.iter_mut().find(|s| same(s)))
        {
            e.count += 1;
            e.first_seen_ms = e.first_seen_ms.min(at_ms);
            e.last_seen_ms = e.last_seen_ms.max(at_ms);
            return;
        }
        let meta = |k: &str| {
            ind.provenance
                .meta
                .iter()
                .find(|(m, _)| &**m == k)
                .map(|(_, v)| v.clone())
        };
        t.entry(ind.value.clone()).or_default().push(Seen {
            kind: ind.kind,
            value: ind.value.clone(),
            feed: feed.clone(),
            stix_id: meta("stix_id").filter(|v| v.starts_with("indicator--")),
            tlp: meta("tlp").map(|t| t.to_ascii_lowercase().into()),
            count: 1,
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
        });
    }

    /// Everything counted since the last call, emptied.
    pub fn take(&self) -> Vec<Seen> {
        let mut t = self.seen.lock().expect("sightings");
        let mut out: Vec<Seen> = std::mem::take(&mut *t).into_values().flatten().collect();
        out.sort_by(|a, b| (a.kind, &a.value, &a.feed).cmp(&(b.kind, &b.value, &b.feed)));
        out
    }
}

/// iocd's UUID namespace for derived STIX ids (a fixed random UUID).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c1f_3a2e_9b4d_4e8a_a1f0_5d7c_2e9b_4a31);

fn derived(kind: &str, parts: &[&str]) -> String {
    let name = parts.join("\u{1f}");
    format!(
        "{kind}--{}",
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes())
    )
}

/// The STIX identity of `name`.
pub fn identity(name: &str) -> Value {
    json!({
        "type": "identity", "spec_version": "2.1", "id": derived("identity", &["identity", name]),
        "created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z",
        "name": name, "identity_class": "organization",
    })
}

/// A STIX pattern for an indicator from a non-STIX feed; none for strings
/// and regexes, which have no STIX observable.
pub fn pattern(kind: IndicatorType, value: &str) -> Option<String> {
    use IndicatorType as T;
    let v = value.replace('\\', "\\\\").replace('\'', "\\'");
    let cidr = value.contains('/');
    Some(match kind {
        T::Ipv4 if cidr => format!("[ipv4-addr:value ISSUBSET '{v}']"),
        T::Ipv4 => format!("[ipv4-addr:value = '{v}']"),
        T::Ipv6 if cidr => format!("[ipv6-addr:value ISSUBSET '{v}']"),
        T::Ipv6 => format!("[ipv6-addr:value = '{v}']"),
        T::Domain => format!("[domain-name:value = '{v}']"),
        T::Url => format!("[url:value = '{v}']"),
        T::Email => format!("[email-addr:value = '{v}']"),
        T::Md5 => format!("[file:hashes.MD5 = '{v}']"),
        T::Sha1 => format!("[file:hashes.'SHA-1' = '{v}']"),
        T::Sha256 => format!("[file:hashes.'SHA-256' = '{v}']"),
        T::Sha512 => format!("[file:hashes.'SHA-512' = '{v}']"),
        T::String | T::Regex => return None,
    })
}

/// The STIX cyber-observable of a value, for observed-data.
fn observable(kind: IndicatorType, value: &str) -> Option<Value> {
    use IndicatorType as T;
    let hash = |alg: &str| json!({ "type": "file", "hashes": { alg: value } });
    let sco = match kind {
        T::Ipv4 if !value.contains('/') => json!({ "type": "ipv4-addr", "value": value }),
        T::Ipv6 if !value.contains('/') => json!({ "type": "ipv6-addr", "value": value }),
        T::Domain => json!({ "type": "domain-name", "value": value }),
        T::Url => json!({ "type": "url", "value": value }),
        T::Email => json!({ "type": "email-addr", "value": value }),
        T::Md5 => hash("MD5"),
        T::Sha1 => hash("SHA-1"),
        T::Sha256 => hash("SHA-256"),
        T::Sha512 => hash("SHA-512"),
        _ => return None,
    };
    let mut sco = sco;
    let type_ = sco["type"].as_str().unwrap_or_default().to_owned();
    sco["id"] = json!(derived(&type_, &[&type_, value]));
    sco["spec_version"] = json!("2.1");
    Some(sco)
}

/// The marking-definition id of a TLP name.
fn tlp_marking(tlp: &str) -> Option<&'static str> {
    let name = if tlp == "clear" { "white" } else { tlp };
    crate::feeds::stix::TLP_IDS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(id, _)| *id)
}

/// What one interval exports.
#[derive(Debug, Default)]
pub struct Export {
    /// The STIX objects: identity, indicators made for non-STIX values,
    /// observed-data (when asked), sightings.
    pub objects: Vec<Value>,
    /// MISP sightings, one object each.
    pub misp: Vec<Value>,
    /// Sightings left out because their indicator is TLP:RED.
    pub withheld_red: usize,
    /// Sightings left out because their value has no STIX observable.
    pub no_pattern: usize,
}

/// Builds the export of one interval ending at `now_ms`.
pub fn build(seen: &[Seen], identity_name: &str, observed_data: bool, now_ms: i64) -> Export {
    let mut ex = Export::default();
    let who = identity(identity_name);
    let who_id = who["id"].as_str().unwrap_or_default().to_owned();
    let now = crate::time::rfc3339_ms(now_ms);
    let mut any = false;
    for s in seen {
        if s.tlp.as_deref() == Some("red") {
            ex.withheld_red += 1;
            continue;
        }
        let marking: Vec<&str> = s.tlp.as_deref().and_then(tlp_marking).into_iter().collect();
        let first = crate::time::rfc3339_ms(s.first_seen_ms);
        let last = crate::time::rfc3339_ms(s.last_seen_ms);
        let of = match &s.stix_id {
            Some(id) => id.to_string(),
            None => {
                let Some(p) = pattern(s.kind, &s.value) else {
                    ex.no_pattern += 1;
                    continue;
                };
                let id = derived("indicator", &["indicator", s.kind.as_str(), &s.value]);
                let mut ind = json!({
                    "type": "indicator", "spec_version": "2.1", "id": id,
                    "created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z",
                    "pattern": p, "pattern_type": "stix", "valid_from": "2020-01-01T00:00:00Z",
                    "name": format!("{} {}", s.kind, s.value), "created_by_ref": who_id,
                    "labels": [format!("iocd-feed:{}", s.feed)],
                });
                if !marking.is_empty() {
                    ind["object_marking_refs"] = json!(marking);
                }
                ex.objects.push(ind);
                id
            }
        };
        let key = [identity_name, s.kind.as_str(), &s.value, &s.feed, &now];
        let mut sighting = json!({
            "type": "sighting", "spec_version": "2.1", "id": derived("sighting", &key),
            "created": now, "modified": now, "created_by_ref": who_id,
            "sighting_of_ref": of, "count": s.count.min(999_999_999),
            "first_seen": first, "last_seen": last, "where_sighted_refs": [who_id],
        });
        if !marking.is_empty() {
            sighting["object_marking_refs"] = json!(marking);
        }
        if observed_data {
            if let Some(sco) = observable(s.kind, &s.value) {
                let od_id = derived("observed-data", &key);
                ex.objects.push(json!({
                    "type": "observed-data", "spec_version": "2.1", "id": od_id,
                    "created": now, "modified": now, "created_by_ref": who_id,
                    "first_observed": first, "last_observed": last,
                    "number_observed": s.count.clamp(1, 999_999_999),
                    "object_refs": [sco["id"]],
                }));
                ex.objects.push(sco);
                sighting["observed_data_refs"] = json!([od_id]);
            }
        }
        ex.objects.push(sighting);
        ex.misp.push(json!({
            "value": &*s.value, "source": identity_name,
            "timestamp": (s.last_seen_ms / 1000).to_string(), "type": "0",
        }));
        any = true;
    }
    if any {
        ex.objects.insert(0, who);
    }
    ex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::FeedContext;

    fn ind(kind: IndicatorType, value: &str, meta: &[(&str, &str)]) -> Indicator {
        FeedContext::named("f").indicator(
            (kind, value.into()),
            1,
            meta.iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn sightings_of_stix_and_plain_indicators() {
        let t = Tally::default();
        let stix = ind(
            IndicatorType::Domain,
            "c2.example",
            &[
                ("stix_id", "indicator--9d2f1e8c-0000-4000-8000-000000000002"),
                ("tlp", "amber"),
            ],
        );
        let plain = ind(IndicatorType::Ipv4, "198.51.100.7", &[]);
        let red = ind(IndicatorType::Ipv4, "203.0.113.9", &[("tlp", "red")]);
        let string = ind(IndicatorType::String, "EvilMutex", &[]);
        for (i, at) in [
            (&stix, 5_000),
            (&stix, 1_000),
            (&plain, 2_000),
            (&red, 3_000),
            (&string, 4_000),
        ] {
            t.count(i, at);
        }
        let ex = build(&t.take(), "ACME SOC", false, 10_000);
        assert!(t.take().is_empty());
        assert_eq!((ex.withheld_red, ex.no_pattern), (1, 1));
        let sightings: Vec<&Value> = ex
            .objects
            .iter()
            .filter(|o| o["type"] == "sighting")
            .collect();
        assert_eq!(sightings.len(), 2);
        let s = sightings
            .iter()
            .find(|s| s["sighting_of_ref"] == "indicator--9d2f1e8c-0000-4000-8000-000000000002")
            .unwrap();
        assert_eq!(s["count"], 2);
        assert_eq!(s["first_seen"], "1970-01-01T00:00:01.000Z");
        assert_eq!(s["last_seen"], "1970-01-01T00:00:05.000Z");
        assert_eq!(
            s["object_marking_refs"][0],
            "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
        );
        assert_eq!(s["where_sighted_refs"][0], ex.objects[0]["id"]);
        assert!(s.get("observed_data_refs").is_none());
        let made = ex
            .objects
            .iter()
            .find(|o| o["type"] == "indicator")
            .unwrap();
        assert_eq!(made["pattern"], "[ipv4-addr:value = '198.51.100.7']");
        assert_eq!(ex.misp.len(), 2);
        assert!(!serde_json::to_string(&ex.objects)
            .unwrap()
            .contains("203.0.113.9"));
        // The same interval built again has the same ids.
        t.count(&plain, 2_000);
        let again = build(&t.take(), "ACME SOC", false, 10_000);
        let id =
            |e: &Export| e.objects.iter().find(|o| o["type"] == "sighting").unwrap()["id"].clone();
        assert_eq!(
            id(&again),
            sightings
                .iter()
                .find(|s| s["sighting_of_ref"] == made["id"])
                .unwrap()["id"]
        );
    }

    #[test]
    fn observed_data_only_when_asked() {
        let t = Tally::default();
        t.count(&ind(IndicatorType::Sha256, &"a".repeat(64), &[]), 1_000);
        let ex = build(&t.take(), "me", true, 2_000);
        let s = ex.objects.iter().find(|o| o["type"] == "sighting").unwrap();
        let od = ex
            .objects
            .iter()
            .find(|o| o["type"] == "observed-data")
            .unwrap();
        assert_eq!(s["observed_data_refs"][0], od["id"]);
        let file = ex.objects.iter().find(|o| o["type"] == "file").unwrap();
        assert_eq!(od["object_refs"][0], file["id"]);
    }
}
