//! MISP events: `{"Event": ...}` exports and REST `{"response": [{"Event":
//! ...}]}` answers, attributes at the event's top level and inside its
//! objects. Attributes not marked `to_ids` are not for detection and are
//! skipped (counted). A MISP feed directory's `manifest.json` is an index,
//! not a feed: it yields nothing and is no failure. Hits carry the event
//! uuid, info and threat level, the attribute uuid, category and comment,
//! the event's and attribute's tags, and the TLP tag.

use serde_json::Value;

use super::{types, FeedContext, Parsed, SkipLog, SkipReason};

/// A MISP feed's `hashes.csv`: `md5-of-value,event-uuid` lines, an index
/// for correlation, not indicators.
pub fn looks_like_hashes_index(text: &str) -> bool {
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(5)
        .peekable();
    lines.peek().is_some()
        && lines.all(|l| {
            let (h, u) = l.trim().split_once(',').unwrap_or(("", ""));
            h.len() == 32
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && u.len() == 36
                && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        })
}

fn threat_level(id: &str) -> &str {
    match id {
        "1" => "high",
        "2" => "medium",
        "3" => "low",
        "4" => "undefined",
        other => other,
    }
}

fn tags(v: &Value) -> Vec<String> {
    v["Tag"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses MISP JSON. With `all_attributes`, attributes not marked `to_ids`
/// are loaded too.
///
/// # Errors
/// The text is not JSON.
pub fn parse(
    ctx: &FeedContext,
    text: &str,
    all_attributes: bool,
) -> Result<Parsed, serde_json::Error> {
    Ok(parse_value(
        ctx,
        &serde_json::from_str(text)?,
        all_attributes,
    ))
}

/// [`parse`] of JSON already parsed.
pub fn parse_value(ctx: &FeedContext, root: &Value, all_attributes: bool) -> Parsed {
    let mut skipped = SkipLog::default();
    let mut indicators = Vec::new();
    let events: Vec<&Value> = if let Some(e) = root.get("Event") {
        vec![e]
    } else if let Some(r) = root.get("response").and_then(Value::as_array) {
        r.iter().filter_map(|x| x.get("Event")).collect()
    } else if root.as_object().is_some_and(super::json::is_bare_event) {
        vec![root]
    } else {
        // A feed manifest (uuid -> event summary) or something else without events.
        return Parsed {
            indicators,
            skipped,
        };
    };
    for event in events {
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let event_tags = tags(event);
        let mut event_meta: Vec<(Box<str>, Box<str>)> = vec![
            ("misp_event_uuid".into(), str_of(&event["uuid"]).into()),
            ("misp_event_info".into(), str_of(&event["info"]).into()),
            (
                "misp_threat_level".into(),
                threat_level(event["threat_level_id"].as_str().unwrap_or_default()).into(),
            ),
        ];
        event_meta.retain(|(_, v)| !v.is_empty());
        let objects = event["Object"].as_array().into_iter().flatten();
        let attributes = event["Attribute"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(objects.flat_map(|o| o["Attribute"].as_array().into_iter().flatten()));
        for a in attributes {
            let uuid = str_of(&a["uuid"]);
            if a["deleted"].as_bool() == Some(true) {
                continue;
            }
            let to_ids = a["to_ids"]
                .as_bool()
                .unwrap_or_else(|| a["to_ids"].as_str() == Some("1"));
            if !to_ids && !all_attributes {
                skipped.push_reason(
                    0,
                    SkipReason::NotForDetection,
                    format!("attribute {uuid}: to_ids is false"),
                );
                continue;
            }
            let (kind, value) = (str_of(&a["type"]), str_of(&a["value"]));
            let found = match types::canonical(&kind, &value) {
                Ok(found) => found,
                Err(why) => {
                    skipped.push_reason(
                        0,
                        SkipReason::UnsupportedType,
                        format!("attribute {uuid}: {why}"),
                    );
                    continue;
                }
            };
            let mut meta = event_meta.clone();
            for (k, v) in [
                ("misp_attribute_uuid", uuid.as_str()),
                ("misp_category", a["category"].as_str().unwrap_or_default()),
                ("comment", a["comment"].as_str().unwrap_or_default()),
            ] {
                if !v.is_empty() {
                    meta.push((k.into(), v.into()));
                }
            }
            let all_tags: Vec<String> = event_tags.iter().cloned().chain(tags(a)).collect();
            if let Some(tlp) = all_tags.iter().find_map(|t| {
                t.to_ascii_lowercase()
                    .strip_prefix("tlp:")
                    .map(str::to_owned)
            }) {
                meta.push(("tlp".into(), tlp.into()));
            }
            if !all_tags.is_empty() {
                meta.push(("tags".into(), all_tags.join(",").into()));
            }
            indicators.extend(found.into_iter().map(|c| ctx.indicator(c, 0, meta.clone())));
        }
    }
    Parsed {
        indicators,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::test_support::{meta, pairs};

    const EVENT: &str = r#"{"Event": {"uuid": "ev-1", "info": "Campaign X", "threat_level_id": "1",
        "Tag": [{"name": "tlp:amber"}, {"name": "apt"}],
        "Attribute": [
          {"uuid": "a1", "type": "ip-dst", "category": "Network activity", "to_ids": true, "value": "198.51.100.7", "comment": "C2"},
          {"uuid": "a2", "type": "domain", "to_ids": false, "value": "benign.example"},
          {"uuid": "a3", "type": "domain|ip", "to_ids": true, "value": "c2.example|203.0.113.9", "Tag": [{"name": "c2"}]},
          {"uuid": "a4", "type": "text", "to_ids": true, "value": "free text"},
          {"uuid": "a5", "type": "sha256", "to_ids": true, "value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "deleted": true}
        ],
        "Object": [{"name": "file", "Attribute": [
          {"uuid": "o1", "type": "filename|md5", "to_ids": true, "value": "a.exe|d41d8cd98f00b204e9800998ecf8427e"}
        ]}]}}"#;

    #[test]
    fn events_attributes_objects_and_metadata() {
        let p = parse(&FeedContext::named("m"), EVENT, false).unwrap();
        assert_eq!(
            pairs(&p.indicators),
            [
                ("ipv4-addr", "198.51.100.7"),
                ("domain-name", "c2.example"),
                ("ipv4-addr", "203.0.113.9"),
                ("md5", "d41d8cd98f00b204e9800998ecf8427e")
            ]
        );
        let m = meta(&p.indicators[0]);
        assert_eq!(m["misp_event_uuid"], "ev-1");
        assert_eq!(m["misp_event_info"], "Campaign X");
        assert_eq!(m["misp_threat_level"], "high");
        assert_eq!(m["misp_attribute_uuid"], "a1");
        assert_eq!(m["misp_category"], "Network activity");
        assert_eq!(m["comment"], "C2");
        assert_eq!(m["tlp"], "amber");
        assert!(meta(&p.indicators[1])["tags"].contains("c2"));
        assert_eq!(p.skipped.count, 2);
        assert!(p
            .skipped
            .examples
            .iter()
            .any(|s| s.reason.contains("a2: to_ids is false")));
        assert!(p.skipped.examples.iter().any(|s| s.reason.contains("a4:")));
        let all = parse(&FeedContext::named("m"), EVENT, true).unwrap();
        assert_eq!(all.indicators.len(), 5);
        assert!(parse(&FeedContext::named("m"), "{\"Event\": [", false).is_err());
    }

    #[test]
    fn feed_hash_index_is_not_indicators() {
        assert!(looks_like_hashes_index(
            "a8ba23fe226c0220aded7950d4065231,fbd854da-9574-5fb6-b297-c483f9d5daf0\n"
        ));
        assert!(!looks_like_hashes_index(
            "a8ba23fe226c0220aded7950d4065231\n"
        ));
        assert!(!looks_like_hashes_index(""));
    }

    #[test]
    fn rest_answers_and_manifests() {
        let rest = format!(r#"{{"response": [{EVENT}, {EVENT}]}}"#);
        let p = parse(&FeedContext::named("m"), &rest, false).unwrap();
        assert_eq!(p.indicators.len(), 8);
        let manifest = r#"{"2e03": {"info": "TweetFeed IOCs", "date": "2025-08-23", "timestamp": "1755989538", "threat_level_id": "4"}}"#;
        let p = parse(&FeedContext::named("manifest.json"), manifest, false).unwrap();
        assert!(p.indicators.is_empty() && p.skipped.count == 0);
    }
}
