//! JSON feeds are parsed first, then dispatched by their structure: a STIX
//! bundle, object or array; a MISP event, REST answer or feed manifest; a
//! MISP warninglist. Key order and file size do not matter (a bundle whose
//! `type` comes after megabytes of `objects` is still a bundle), and no
//! sniffing of a text prefix is involved.
//!
//! Nesting is bounded by serde_json's recursion limit (128 levels): deeper
//! input is an error, never a stack overflow.

use serde_json::{Map, Value};

/// What a JSON document is, judged by its structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    /// A STIX bundle, a STIX object, or an array of STIX objects.
    Stix,
    /// A MISP event (`{"Event": …}` or a bare event) or REST answer.
    Misp,
    /// A MISP feed's `manifest.json`: an index of events, not indicators.
    MispManifest,
    /// A STIX feed's index of its bundles (TweetFeed's `manifest.json`:
    /// `{"bundles": {"week": {"id": "bundle--…", "url": …}}}`).
    StixIndex,
    /// A MISP warninglist (`{"list": […], …}`).
    Warninglist,
}

/// True when `text` must be JSON: it opens with `{`, or with `[` followed by
/// `{`, `"` or `]`. A plain list may open with `[` (`[2001:db8::1]:443`),
/// never with `{`.
pub fn must_be_json(text: &str) -> bool {
    let head = text.trim_start_matches('\u{feff}').trim_start();
    match head.as_bytes().first() {
        Some(b'{') => true,
        Some(b'[') => matches!(
            head[1..].trim_start().as_bytes().first(),
            Some(b'{' | b'"' | b']')
        ),
        _ => false,
    }
}

/// The kind of `root`, or `None` for JSON that is no feed iocd reads.
pub fn kind(root: &Value) -> Option<JsonKind> {
    match root {
        Value::Array(items) => {
            let stix = !items.is_empty() && items.iter().all(|i| is_stix_object(i.as_object()));
            stix.then_some(JsonKind::Stix)
        }
        Value::Object(o) => {
            let bundle = o.get("type").and_then(Value::as_str) == Some("bundle")
                && o.get("objects").is_none_or(Value::is_array);
            if bundle || is_stix_object(Some(o)) {
                Some(JsonKind::Stix)
            } else if o.get("Event").is_some_and(Value::is_object)
                || o.get("response").is_some_and(Value::is_array)
                || is_bare_event(o)
            {
                Some(JsonKind::Misp)
            } else if o.get("list").is_some_and(Value::is_array) {
                Some(JsonKind::Warninglist)
            } else if is_manifest(o) {
                Some(JsonKind::MispManifest)
            } else if is_bundle_index(o) {
                Some(JsonKind::StixIndex)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A STIX object: a `type` and an `id` of the form `TYPE--…`.
fn is_stix_object(o: Option<&Map<String, Value>>) -> bool {
    let Some(o) = o else { return false };
    match (
        o.get("type").and_then(Value::as_str),
        o.get("id").and_then(Value::as_str),
    ) {
        (Some(t), Some(id)) => id.strip_prefix(t).is_some_and(|r| r.starts_with("--")),
        _ => false,
    }
}

/// An event exported without the `{"Event": …}` wrapper.
pub fn is_bare_event(o: &Map<String, Value>) -> bool {
    o.contains_key("info") && (o.contains_key("Attribute") || o.contains_key("Object"))
}

/// An index of STIX bundles: `bundles` maps names to `{"id": "bundle--…"}`.
fn is_bundle_index(o: &Map<String, Value>) -> bool {
    o.get("bundles")
        .and_then(Value::as_object)
        .is_some_and(|b| {
            !b.is_empty()
                && b.values().all(|v| {
                    v.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with("bundle--"))
                })
        })
}

/// A MISP feed manifest: event UUIDs mapping to summaries with `info` and
/// `timestamp`.
fn is_manifest(o: &Map<String, Value>) -> bool {
    !o.is_empty()
        && o.values()
            .all(|v| v.get("info").is_some() && v.get("timestamp").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_decides_whatever_the_key_order() {
        let filler = format!(
            "[{}]",
            vec!["{\"type\":\"note\",\"id\":\"note--1\"}"; 2000].join(",")
        );
        let cases: &[(String, Option<JsonKind>)] = &[
            (
                format!(r#"{{"objects": {filler}, "id": "bundle--1", "type": "bundle"}}"#),
                Some(JsonKind::Stix),
            ),
            (
                r#"{"id":"indicator--1","type":"indicator","pattern":"[x]"}"#.into(),
                Some(JsonKind::Stix),
            ),
            (
                r#"[{"type":"indicator","id":"indicator--1"}]"#.into(),
                Some(JsonKind::Stix),
            ),
            (r#"{"Event": {"info": "x"}}"#.into(), Some(JsonKind::Misp)),
            (r#"{"response": []}"#.into(), Some(JsonKind::Misp)),
            (
                r#"{"info": "x", "Attribute": []}"#.into(),
                Some(JsonKind::Misp),
            ),
            (
                r#"{"u1": {"info": "x", "timestamp": "1"}}"#.into(),
                Some(JsonKind::MispManifest),
            ),
            (
                r#"{"name": "n", "type": "cidr", "list": ["10.0.0.0/8"]}"#.into(),
                Some(JsonKind::Warninglist),
            ),
            (
                r#"{"spec_version": "2.1", "bundles": {"week": {"id": "bundle--3b1a", "url": "https://x/week.json"}}}"#.into(),
                Some(JsonKind::StixIndex),
            ),
            (r#"{"type": "indicator"}"#.into(), None),
            (r#"[1, 2]"#.into(), None),
            (r#"{"a": 1}"#.into(), None),
            ("[]".into(), None),
        ];
        for (text, want) in cases {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(kind(&v), *want, "{}", &text[..text.len().min(80)]);
        }
    }

    #[test]
    fn what_must_be_json() {
        assert!(must_be_json("{\"a\": 1}"));
        assert!(must_be_json("\u{feff}  [\n  {"));
        assert!(must_be_json("[]"));
        assert!(!must_be_json("[2001:db8::1]:443\n"));
        assert!(!must_be_json("1.2.3.4"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(serde_json::from_str::<Value>(&deep).is_err());
    }
}
