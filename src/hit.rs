//! Hits as JSON lines: one object per (line, indicator).
//!
//! Shape (`native`):
//! `{"@timestamp", "input", "line_number", "indicator": {"value", "type",
//! "feed", "feed_file", "feed_line", ...metadata}, "matched": {"value", "start", "end"}}`.
//! Text from the line is written lossily (invalid UTF-8 as U+FFFD).

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::engine::Match;
use crate::indicator::Indicator;

/// The JSON shape of a hit.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HitFormat {
    /// iocd's own shape (that of `iocd scan`, plus `event.original`).
    #[default]
    Native,
    /// Elastic Common Schema 8: `threat.enrichments[]`, `event.kind: enrichment`.
    Ecs,
}

impl HitFormat {
    /// Every format, in [`Self::index`] order.
    pub const ALL: [HitFormat; 2] = [HitFormat::Native, HitFormat::Ecs];

    /// Position in [`Self::ALL`], for per-format tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The hits of one batch in one format: JSON lines back to back, with the
/// end of each, so a sink that sends one message per hit (Kafka, NATS, an
/// Elasticsearch bulk action) takes hits one by one without re-parsing.
///
/// Invariant: `ends` is increasing and its last value is `bytes.len()`;
/// every hit ends with `\n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedHits {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedHits {
    /// Every hit, as JSON lines.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of hits.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there is no hit.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Hit `i` as one JSON line, newline included.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Appends one hit written by `write` (which must write one JSON line).
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        debug_assert_eq!(self.bytes.last(), Some(&b'\n'));
        self.ends.push(self.bytes.len());
    }
}

/// Encodes one hit in `format`: the table every sink's format goes through.
pub fn encode(
    format: HitFormat,
    out: &mut EncodedHits,
    ev: &Event,
    ind: &Indicator,
    m: &Match,
    matched: &[u8],
) {
    match format {
        HitFormat::Native => out.push(|o| write_native_event(o, ev, ind, m, matched)),
        HitFormat::Ecs => out.push(|o| write_ecs(o, ev, ind, m, matched)),
    }
}

/// Where a hit was seen.
pub struct Sighting<'a> {
    /// When iocd saw the line (RFC 3339).
    pub timestamp: &'a str,
    /// The source's name.
    pub input: &'a str,
    /// The line's number within its input, from 1.
    pub line_number: u64,
    /// For a line from a message broker: the message, and the line's
    /// number within it (from 1).
    pub origin: Option<(&'a Origin, u32)>,
}

/// The message a line came from, in a message broker: enough to find it
/// again, and for a consumer of hits to recognise one delivered twice
/// (at-least-once: a redelivered message gives the same coordinates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A Kafka record.
    Kafka {
        /// The record's topic.
        topic: Arc<str>,
        /// Its partition.
        partition: i32,
        /// Its offset in the partition.
        offset: i64,
    },
    /// A NATS JetStream message.
    Nats {
        /// The stream the consumer reads.
        stream: Arc<str>,
        /// The subject the message was published to.
        subject: Arc<str>,
        /// The message's sequence number in its stream.
        sequence: u64,
    },
}

impl Origin {
    /// The JSON object of `"origin"`: the broker, the coordinates and the
    /// line within the message.
    fn write_json(&self, out: &mut Vec<u8>, line: u32) {
        let str_ = |out: &mut Vec<u8>, v: &str| {
            serde_json::to_writer(&mut *out, v).expect("writing to a Vec")
        };
        match self {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => {
                out.extend_from_slice(b"{\"broker\":\"kafka\",\"topic\":");
                str_(out, topic);
                let _ = write!(out, ",\"partition\":{partition},\"offset\":{offset}");
            }
            Origin::Nats {
                stream,
                subject,
                sequence,
            } => {
                out.extend_from_slice(b"{\"broker\":\"nats\",\"stream\":");
                str_(out, stream);
                out.extend_from_slice(b",\"subject\":");
                str_(out, subject);
                let _ = write!(out, ",\"sequence\":{sequence}");
            }
        }
        let _ = write!(out, ",\"line\":{line}}}");
    }

    /// A stable identifier of one hit from this message: the same for the
    /// same line of a redelivered message and the same indicator, whichever
    /// instance matched it (NATS `Nats-Msg-Id`). 32 hex digits of SHA-256.
    pub fn hit_id(&self, line: u32, ind: &Indicator) -> String {
        // Fed piece by piece, NUL-separated: no string is built per hit.
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        let mut field = |b: &[u8]| {
            d.update(b);
            d.update(b"\0");
        };
        match self {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => {
                field(b"kafka");
                field(topic.as_bytes());
                field(&partition.to_le_bytes());
                field(&offset.to_le_bytes());
            }
            Origin::Nats {
                stream, sequence, ..
            } => {
                field(b"nats");
                field(stream.as_bytes());
                field(&sequence.to_le_bytes());
            }
        }
        field(&line.to_le_bytes());
        field(ind.kind.as_str().as_bytes());
        field(ind.provenance.feed.name.as_bytes());
        field(ind.value.as_bytes());
        let digest = d.finish();
        let mut id = String::with_capacity(32);
        for b in &digest.as_ref()[..16] {
            use std::fmt::Write as _;
            let _ = write!(id, "{b:02x}");
        }
        id
    }
}

/// Writes one hit as a JSON line (with the trailing newline).
pub fn write_native(out: &mut Vec<u8>, s: &Sighting, ind: &Indicator, m: &Match, matched: &[u8]) {
    let str_ =
        |out: &mut Vec<u8>, v: &str| serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
    out.extend_from_slice(b"{\"@timestamp\":");
    str_(out, s.timestamp);
    out.extend_from_slice(b",\"input\":");
    str_(out, s.input);
    let _ = write!(out, ",\"line_number\":{}", s.line_number);
    if let Some((origin, line)) = s.origin {
        out.extend_from_slice(b",\"origin\":");
        origin.write_json(out, line);
    }
    out.extend_from_slice(b",\"indicator\":{\"value\":");
    str_(out, &ind.value);
    out.extend_from_slice(b",\"type\":");
    str_(out, ind.kind.as_str());
    out.extend_from_slice(b",\"feed\":");
    str_(out, &ind.provenance.feed.name);
    out.extend_from_slice(b",\"feed_file\":");
    str_(out, &ind.provenance.feed.file);
    let _ = write!(out, ",\"feed_line\":{}", ind.provenance.line);
    for (k, v) in &ind.provenance.meta {
        out.push(b',');
        str_(out, k);
        out.push(b':');
        str_(out, v);
    }
    out.extend_from_slice(b"},\"matched\":{\"value\":");
    str_(out, &String::from_utf8_lossy(matched));
    let _ = writeln!(out, ",\"start\":{},\"end\":{}}}}}", m.start, m.end);
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the epoch (days-to-civil, proleptic Gregorian).
pub fn rfc3339(secs: i64, millis: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_348_800, 999), "2026-11-22T12:00:00.999Z");
    }
}

/// What the daemon knows of a hit besides the indicator and match.
pub struct Event<'a> {
    /// Where the line was seen.
    pub sighting: Sighting<'a>,
    /// The line, for `event.original` / `message` (cut by the caller).
    pub original: &'a [u8],
    /// True when `original` was cut short.
    pub original_truncated: bool,
}

/// `native` with the line: the scan shape plus `event.original`.
pub fn write_native_event(
    out: &mut Vec<u8>,
    ev: &Event,
    ind: &Indicator,
    m: &Match,
    matched: &[u8],
) {
    write_native(out, &ev.sighting, ind, m, matched);
    // Reopen the object written above to add the event.
    let closing = out.len() - 2; // "}\n"
    out.truncate(closing);
    out.extend_from_slice(b",\"event\":{\"original\":");
    serde_json::to_writer(&mut *out, &String::from_utf8_lossy(ev.original))
        .expect("writing to a Vec");
    if ev.original_truncated {
        out.extend_from_slice(b",\"original_truncated\":true");
    }
    out.extend_from_slice(b"}}\n");
}

/// The ECS indicator type and the field that holds the value.
///
/// ECS maps `threat.enrichments.indicator.ip` as `ip`, which holds one
/// address: for a network indicator it holds the address matched in the
/// line, and the network goes under `iocd.indicator.network`.
fn ecs_indicator(ind: &Indicator, matched: &[u8]) -> (&'static str, serde_json::Value) {
    use crate::indicator::IndicatorType as T;
    use serde_json::json;
    let v = &*ind.value;
    let ip = || {
        if ind.is_cidr() {
            String::from_utf8_lossy(matched).into_owned()
        } else {
            v.to_owned()
        }
    };
    match ind.kind {
        T::Ipv4 => ("ipv4-addr", json!({ "ip": ip() })),
        T::Ipv6 => ("ipv6-addr", json!({ "ip": ip() })),
        T::Domain => ("domain-name", json!({ "url": { "domain": v } })),
        T::Url => ("url", json!({ "url": { "full": v, "original": v } })),
        T::Email => ("email-addr", json!({ "email": { "address": v } })),
        T::Md5 => ("file", json!({ "file": { "hash": { "md5": v } } })),
        T::Sha1 => ("file", json!({ "file": { "hash": { "sha1": v } } })),
        T::Sha256 => ("file", json!({ "file": { "hash": { "sha256": v } } })),
        T::Sha512 => ("file", json!({ "file": { "hash": { "sha512": v } } })),
        T::String | T::Regex => (
            "artifact",
            json!({ "description": format!("{}: {v}", ind.kind) }),
        ),
    }
}

/// ECS 8: an enrichment event Elastic and OpenSearch index as is:
/// `event.kind: enrichment`, the line as `message`/`event.original`, and one
/// `threat.enrichments[]` entry with `indicator.*` and `matched.*`. iocd's own
/// fields (input, line number, feed line, feed metadata) sit under `iocd`.
pub fn write_ecs(out: &mut Vec<u8>, ev: &Event, ind: &Indicator, m: &Match, matched: &[u8]) {
    use serde_json::{json, Map, Value};
    let (ecs_type, fields) = ecs_indicator(ind, matched);
    let mut indicator = match fields {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    indicator.insert("type".into(), json!(ecs_type));
    indicator.insert("provider".into(), json!(&*ind.provenance.feed.name));
    let meta: Map<String, Value> = ind
        .provenance
        .meta
        .iter()
        .map(|(k, v)| (k.to_string(), json!(&**v)))
        .collect();
    if let Some(d) = ind
        .provenance
        .meta
        .iter()
        .find(|(k, _)| matches!(&**k, "comment" | "meta.desc" | "description"))
    {
        indicator.entry("description").or_insert(json!(&*d.1));
    }
    if let Some((_, tlp)) = ind.provenance.meta.iter().find(|(k, _)| &**k == "tlp") {
        // ECS's marking.tlp values are upper case: CLEAR, GREEN, AMBER, RED.
        indicator.insert("marking".into(), json!({ "tlp": tlp.to_ascii_uppercase() }));
    }
    let mut iocd_indicator = json!({ "value": &*ind.value, "type": ind.kind.as_str(), "feed_file": &*ind.provenance.feed.file, "feed_line": ind.provenance.line, "meta": meta });
    if ind.is_cidr() {
        iocd_indicator["network"] = json!(&*ind.value);
    }
    let original = String::from_utf8_lossy(ev.original);
    let doc = json!({
        "@timestamp": ev.sighting.timestamp,
        "message": original,
        "event": { "kind": "enrichment", "category": ["threat"], "type": ["indicator"], "dataset": "iocd.hit", "original": original },
        "threat": { "enrichments": [{
            "indicator": indicator,
            "matched": { "atomic": String::from_utf8_lossy(matched), "field": "message", "type": "indicator_match_rule" },
        }]},
        "iocd": {
            "input": ev.sighting.input,
            "line_number": ev.sighting.line_number,
            "indicator": iocd_indicator,
            "matched": { "start": m.start, "end": m.end },
            "original_truncated": ev.original_truncated,
        },
    });
    let mut doc = doc;
    if let Some((origin, line)) = ev.sighting.origin {
        let mut o = Vec::new();
        origin.write_json(&mut o, line);
        doc["iocd"]["origin"] = serde_json::from_slice(&o).expect("valid JSON");
    }
    serde_json::to_writer(&mut *out, &doc).expect("writing to a Vec");
    out.push(b'\n');
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::feeds::FeedContext;
    use crate::indicator::IndicatorType;

    fn example() -> (Indicator, Match) {
        let ctx = FeedContext::named("feed.txt");
        let ind = ctx.indicator(
            (
                IndicatorType::Md5,
                "44d88612fea8a8f36de82e1278abb02f".into(),
            ),
            3,
            vec![("comment".into(), "EICAR".into())],
        );
        (
            ind,
            Match {
                indicator: 0,
                start: 4,
                end: 36,
            },
        )
    }

    #[test]
    fn native_event_adds_the_original_line() {
        let (ind, m) = example();
        let line = b"md5=44D88612FEA8A8F36DE82E1278ABB02F \xff";
        let ev = Event {
            sighting: Sighting {
                timestamp: "t",
                input: "syslog",
                line_number: 9,
                origin: None,
            },
            original: line,
            original_truncated: false,
        };
        let mut out = Vec::new();
        write_native_event(&mut out, &ev, &ind, &m, &line[4..36]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["event"]["original"],
            "md5=44D88612FEA8A8F36DE82E1278ABB02F \u{fffd}"
        );
        assert_eq!(v["indicator"]["comment"], "EICAR");
        assert_eq!(v["line_number"], 9);
        assert!(out.ends_with(b"}\n") && out.iter().filter(|&&b| b == b'\n').count() == 1);
    }

    #[test]
    fn ecs_enrichment_shape() {
        let (ind, m) = example();
        let line = b"md5=44D88612FEA8A8F36DE82E1278ABB02F";
        let ev = Event {
            sighting: Sighting {
                timestamp: "2026-11-22T00:00:00.000Z",
                input: "syslog",
                line_number: 9,
                origin: None,
            },
            original: line,
            original_truncated: true,
        };
        let mut out = Vec::new();
        write_ecs(&mut out, &ev, &ind, &m, &line[4..36]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"]["kind"], "enrichment");
        let e = &v["threat"]["enrichments"][0];
        assert_eq!(e["indicator"]["type"], "file");
        assert_eq!(
            e["indicator"]["file"]["hash"]["md5"],
            "44d88612fea8a8f36de82e1278abb02f"
        );
        assert_eq!(e["indicator"]["provider"], "feed.txt");
        assert_eq!(e["indicator"]["description"], "EICAR");
        assert_eq!(e["matched"]["atomic"], "44D88612FEA8A8F36DE82E1278ABB02F");
        assert_eq!(e["matched"]["field"], "message");
        assert_eq!(e["matched"]["type"], "indicator_match_rule");
        assert_eq!(v["iocd"]["original_truncated"], true);
    }

    /// The ECS fields mapped as `ip` must hold one address each, or the
    /// index template rejects the document; TLP goes in `marking.tlp`.
    #[test]
    fn ecs_ip_fields_hold_addresses_only() {
        let ctx = FeedContext::named("nets.txt");
        let line = b"deny 203.0.113.99 and 2001:db8:bad::1";
        let cases = [
            (IndicatorType::Ipv4, "203.0.113.0/24", 5, 17),
            (IndicatorType::Ipv4, "203.0.113.99", 5, 17),
            (IndicatorType::Ipv6, "2001:db8:bad::/48", 22, 37),
        ];
        for (kind, value, start, end) in cases {
            let ind = ctx.indicator(
                (kind, value.into()),
                1,
                vec![("tlp".into(), "amber".into())],
            );
            let m = Match {
                indicator: 0,
                start,
                end,
            };
            let ev = Event {
                sighting: Sighting {
                    timestamp: "t",
                    input: "i",
                    line_number: 1,
                    origin: None,
                },
                original: line,
                original_truncated: false,
            };
            let mut out = Vec::new();
            write_ecs(&mut out, &ev, &ind, &m, &line[start as usize..end as usize]);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let e = &v["threat"]["enrichments"][0]["indicator"];
            let ip = e["ip"].as_str().unwrap();
            assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{value}: ip {ip:?}");
            assert_eq!(ip.as_bytes(), &line[start as usize..end as usize]);
            assert_eq!(e["marking"]["tlp"], "AMBER");
            if value.contains('/') {
                assert_eq!(v["iocd"]["indicator"]["network"], value);
            }
        }
    }
}
