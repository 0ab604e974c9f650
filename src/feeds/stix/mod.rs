//! STIX 2.1 (and 2.0) indicators: bundles, single objects or arrays of
//! objects in JSON. `pattern_type: stix` patterns become indicators
//! ([`pattern`]); the lifecycle is applied at load: a revoked indicator, one
//! whose `valid_until` has passed or whose `valid_from` is still ahead is
//! skipped (counted, named by id), and of several versions of one `id` the
//! newest `modified` wins. Hits carry the STIX id, name, types, confidence,
//! TLP marking, kill chain phases and creator.

pub mod pattern;

use std::collections::HashMap;

use serde_json::Value;

use super::{FeedContext, Parsed, SkipLog, SkipReason};

/// TLP marking-definition ids fixed by the STIX 2.0/2.1 specifications.
pub const TLP_IDS: [(&str, &str); 4] = [
    (
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        "white",
    ),
    (
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        "green",
    ),
    (
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        "amber",
    ),
    (
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        "red",
    ),
];

/// Parses STIX JSON, applying the lifecycle as of `now` (Unix seconds).
/// Also returns the next moment an indicator becomes valid or expires, when
/// the engine must be rebuilt even if no file changes.
///
/// # Errors
/// The text is not JSON.
pub fn parse(
    ctx: &FeedContext,
    text: &str,
    now: i64,
) -> Result<(Parsed, Option<i64>), serde_json::Error> {
    Ok(parse_value(ctx, &serde_json::from_str(text)?, now))
}

/// [`parse`] of JSON already parsed.
pub fn parse_value(ctx: &FeedContext, root: &Value, now: i64) -> (Parsed, Option<i64>) {
    let mut next_change: Option<i64> = None;
    let mut note = |t: i64| next_change = Some(next_change.map_or(t, |n: i64| n.min(t)));
    let mut skipped = SkipLog::default();
    let objects: Vec<&Value> = match root {
        Value::Array(a) => a.iter().collect(),
        // A bundle; or, read as STIX by a feed's `format`, any object with
        // an `objects` array (a bundle missing its `type`).
        Value::Object(o)
            if o.get("type").and_then(Value::as_str) == Some("bundle")
                || o.get("objects").is_some_and(Value::is_array) =>
        {
            o.get("objects")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        }
        Value::Object(_) => vec![root],
        _ => Vec::new(),
    };
    // Markings defined in this file, for TLP names.
    let mut tlp: HashMap<String, String> = TLP_IDS
        .iter()
        .map(|(id, t)| (id.to_string(), t.to_string()))
        .collect();
    for o in objects.iter().filter(|o| o["type"] == "marking-definition") {
        let id = o["id"].as_str().unwrap_or_default().to_owned();
        let name = o["definition"]["tlp"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                o["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("TLP:"))
                    .map(str::to_ascii_lowercase)
            });
        if let Some(n) = name {
            tlp.insert(id, n.to_ascii_lowercase());
        }
    }
    // Newest version of each indicator id.
    let mut newest: HashMap<&str, &Value> = HashMap::new();
    let mut order = Vec::new();
    for o in objects.iter().filter(|o| o["type"] == "indicator") {
        let id = o["id"].as_str().unwrap_or_default();
        match newest.get(id) {
            Some(old) if old["modified"].as_str() >= o["modified"].as_str() => {}
            Some(_) => {
                newest.insert(id, o);
            }
            None => {
                newest.insert(id, o);
                order.push(id);
            }
        }
    }
    let mut indicators = Vec::new();
    for id in order {
        let o = newest[id];
        // The pattern goes last: `lookup` finds a skipped value in it, and a
        // long one is what the reason's length limit cuts.
        let pattern = o["pattern"].as_str().unwrap_or_default();
        let skip = |reason: SkipReason, why: String, skipped: &mut SkipLog| {
            skipped.push_reason(0, reason, format!("{id}: {why}: {pattern}"))
        };
        if o["revoked"].as_bool() == Some(true) {
            skip(SkipReason::Revoked, "revoked".into(), &mut skipped);
            continue;
        }
        let pattern_type = o["pattern_type"].as_str().unwrap_or("stix"); // 2.0 has no pattern_type
        if pattern_type != "stix" {
            skip(
                SkipReason::UnsupportedPatternType,
                format!("pattern_type {pattern_type:?} is not stix"),
                &mut skipped,
            );
            continue;
        }
        if let Some(until) = o["valid_until"].as_str() {
            match timestamp(until) {
                Some(t) if t <= now => {
                    skip(
                        SkipReason::Expired,
                        format!("expired (valid_until {until})"),
                        &mut skipped,
                    );
                    continue;
                }
                Some(t) => note(t),
                None => {
                    skip(
                        SkipReason::Invalid,
                        format!("valid_until {until:?} is not a timestamp"),
                        &mut skipped,
                    );
                    continue;
                }
            }
        }
        if let Some(from) = o["valid_from"].as_str().and_then(timestamp) {
            if from > now {
                note(from);
                skip(
                    SkipReason::NotYetValid,
                    format!(
                        "not valid until {}",
                        o["valid_from"].as_str().unwrap_or_default()
                    ),
                    &mut skipped,
                );
                continue;
            }
        }
        let Some(pat) = o["pattern"].as_str() else {
            skip(SkipReason::Invalid, "no pattern".into(), &mut skipped);
            continue;
        };
        match pattern::indicators_with_context(pat) {
            Ok((found, context)) => {
                let mut meta = metadata(o, &tlp);
                meta.extend(
                    context
                        .into_iter()
                        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str())),
                );
                indicators.extend(found.into_iter().map(|c| ctx.indicator(c, 0, meta.clone())));
            }
            Err(e) => skip(
                SkipReason::UnsupportedPattern,
                format!("pattern {pat:?}: {e}"),
                &mut skipped,
            ),
        }
    }
    (
        Parsed {
            indicators,
            skipped,
        },
        next_change,
    )
}

fn metadata(o: &Value, tlp: &HashMap<String, String>) -> Vec<(Box<str>, Box<str>)> {
    let mut meta: Vec<(Box<str>, Box<str>)> = Vec::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            meta.push((k.into(), v.into()));
        }
    };
    put("stix_id", o["id"].as_str().unwrap_or_default().to_owned());
    put("name", o["name"].as_str().unwrap_or_default().to_owned());
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    put("indicator_types", list(&o["indicator_types"]));
    put("labels", list(&o["labels"]));
    if let Some(c) = o["confidence"].as_i64() {
        put("confidence", c.to_string());
    }
    let marks: Vec<&str> = o["object_marking_refs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| tlp.get(m.as_str()?).map(String::as_str))
                .collect()
        })
        .unwrap_or_default();
    if let Some(t) = marks.first() {
        put("tlp", (*t).to_owned());
    }
    let phases: Vec<String> = o["kill_chain_phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some(format!(
                        "{}:{}",
                        p["kill_chain_name"].as_str()?,
                        p["phase_name"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    put("kill_chain_phases", phases.join(","));
    put(
        "created_by_ref",
        o["created_by_ref"].as_str().unwrap_or_default().to_owned(),
    );
    put(
        "valid_until",
        o["valid_until"].as_str().unwrap_or_default().to_owned(),
    );
    meta
}

/// RFC 3339 (`2026-08-16T01:04:58.000Z`) to Unix seconds.
pub fn timestamp(s: &str) -> Option<i64> {
    crate::time::rfc3339_millis(s).map(|ms| ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::test_support::{meta, pairs};

    const NOW: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

    fn ind(id: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"indicator","spec_version":"2.1","id":"indicator--{id}","created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","valid_from":"2026-01-01T00:00:00Z","pattern_type":"stix",{extra}}}"#
        )
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2026-11-22T12:00:00Z"), Some(NOW));
        assert_eq!(timestamp("2026-11-22T12:00:00.123456Z"), Some(NOW));
        assert_eq!(timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(timestamp("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(timestamp("2026-11-22 12:00:00"), None);
        assert_eq!(timestamp("2026-13-22T12:00:00Z"), None);
    }

    #[test]
    fn bundle_lifecycle_and_metadata() {
        let objects = [
            ind("1", r#""name":"c2","pattern":"[ipv4-addr:value = '198.51.100.7']","confidence":80,"indicator_types":["malicious-activity"],"object_marking_refs":["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"],"kill_chain_phases":[{"kill_chain_name":"mitre-attack","phase_name":"command-and-control"}],"created_by_ref":"identity--x""#),
            ind("2", r#""pattern":"[domain-name:value = 'gone.example']","revoked":true"#),
            ind("3", r#""pattern":"[domain-name:value = 'old.example']","valid_until":"2026-02-01T00:00:00Z""#),
            ind("4", r#""pattern":"[domain-name:value = 'future.example']","valid_from":"2027-01-01T00:00:00Z""#),
            ind("5", r#""pattern":"[domain-name:value = 'v1.example']""#),
            ind("5", r#""pattern":"[domain-name:value = 'v2.example']","modified":"2026-06-01T00:00:00Z""#).replace(r#""modified":"2026-01-01T00:00:00Z","#, ""),
            ind("6", r#""pattern":"[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']""#),
            ind("7", r#""pattern":"alert tcp any any","pattern_type":"snort""#).replacen(r#""pattern_type":"stix","#, "", 1),
            ind("8", r#""pattern":"[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']","object_marking_refs":["marking-definition--local"]"#),
            r#"{"type":"marking-definition","id":"marking-definition--local","definition_type":"tlp","definition":{"tlp":"amber"}}"#.to_owned(),
        ];
        let bundle = format!(
            r#"{{"type":"bundle","id":"bundle--1","objects":[{}]}}"#,
            objects.join(",")
        );
        let (p, next) = parse(&FeedContext::named("s.json"), &bundle, NOW).unwrap();
        // Indicator 4 becomes valid on 2027-01-01: the engine must change then.
        assert_eq!(next, timestamp("2027-01-01T00:00:00Z"));
        assert_eq!(
            pairs(&p.indicators),
            [
                ("ipv4-addr", "198.51.100.7"),
                ("domain-name", "v2.example"),
                (
                    "sha256",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                )
            ]
        );
        let m = meta(&p.indicators[0]);
        assert_eq!(m["stix_id"], "indicator--1");
        assert_eq!(m["name"], "c2");
        assert_eq!(m["confidence"], "80");
        assert_eq!(m["tlp"], "green");
        assert_eq!(m["indicator_types"], "malicious-activity");
        assert_eq!(m["kill_chain_phases"], "mitre-attack:command-and-control");
        assert_eq!(m["created_by_ref"], "identity--x");
        assert_eq!(meta(&p.indicators[2])["tlp"], "amber");
        let reasons: Vec<&str> = p
            .skipped
            .examples
            .iter()
            .map(|s| s.reason.as_str())
            .collect();
        assert_eq!(p.skipped.count, 5, "{reasons:?}");
        for (id, why) in [
            ("2", "revoked"),
            ("3", "expired"),
            ("4", "not valid until"),
            ("6", "FOLLOWEDBY"),
            ("7", "snort"),
        ] {
            assert!(
                reasons
                    .iter()
                    .any(|r| r.starts_with(&format!("indicator--{id}:")) && r.contains(why)),
                "{id} {why}: {reasons:?}"
            );
        }
    }

    #[test]
    fn stix_2_0_objects() {
        // 2.0: no spec_version or pattern_type, `labels` for the indicator types.
        let v20 = r#"{"type": "bundle", "id": "bundle--1", "spec_version": "2.0", "objects": [{"type": "indicator", "id": "indicator--20",
            "created": "2016-04-06T20:03:48.000Z", "modified": "2016-04-06T20:03:48.000Z", "labels": ["malicious-activity"],
            "pattern": "[file:hashes.'SHA-256' = 'ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c']",
            "valid_from": "2016-01-01T00:00:00Z", "object_marking_refs": ["marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"]}]}"#;
        let (p, _) = parse(&FeedContext::named("v20"), v20, NOW).unwrap();
        assert_eq!(p.indicators.len(), 1);
        let m = meta(&p.indicators[0]);
        assert_eq!((m["labels"], m["tlp"]), ("malicious-activity", "white"));
    }

    #[test]
    fn single_objects_arrays_and_broken_json() {
        let ctx = FeedContext::named("s");
        let one = ind("1", r#""pattern":"[url:value = 'http://a.example/x']""#);
        assert_eq!(parse(&ctx, &one, NOW).unwrap().0.indicators.len(), 1);
        let two = format!(
            "[{one},{}]",
            ind("2", r#""pattern":"[url:value = 'http://b.example/']""#)
        );
        assert_eq!(parse(&ctx, &two, NOW).unwrap().0.indicators.len(), 2);
        let broken = "{\"type\": \"bundle\", \"objects\": [";
        assert!(parse(&ctx, broken, NOW).is_err());
        // As a feed file: a failure (the last good content is kept) with the reason.
        let feed = crate::feeds::parse("s.json", std::path::Path::new("s.json"), broken);
        assert!(
            feed.indicators.is_empty() && feed.skipped.examples[0].reason.contains("invalid JSON")
        );
        assert!(matches!(
            feed.failure,
            Some(crate::feeds::FeedFailure::InvalidJson(_))
        ));
    }

    #[test]
    fn descriptive_values_of_an_and_become_context() {
        let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[{"type":"indicator","spec_version":"2.1","id":"indicator--c2","created":"2020-01-01T00:00:00Z","modified":"2020-01-01T00:00:00Z","valid_from":"2020-01-01T00:00:00Z","pattern_type":"stix","pattern":"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_port = '443']"}]}"#;
        let ctx = FeedContext::named("c2.json");
        let (p, _) = parse(&ctx, bundle, NOW).unwrap();
        assert_eq!(p.indicators.len(), 1);
        assert_eq!(&*p.indicators[0].value, "198.51.100.7");
        assert_eq!(meta(&p.indicators[0])["dst_port"], "443");
    }
}
