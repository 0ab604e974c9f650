//! Hits as JSON lines: one object per (line, indicator).
//!
//! Shape (`native`):
//! `{"@timestamp", "input", "line_number", "indicator": {"value", "type",
//! "feed", "feed_file", "feed_line", ...metadata}, "matched": {"value", "start", "end"}}`.
//! Text from the line is written lossily (invalid UTF-8 as U+FFFD).

use std::io::Write;
use std::sync::Arc;

use serde::Deserialize;

use crate::context::syslog::{FACILITIES, SEVERITIES};
use crate::context::LineContext;
use crate::engine::Match;
use crate::indicator::Indicator;
use crate::suppress::Repeats;
pub use crate::time::{now_rfc3339, rfc3339};

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

    /// Forgets every hit, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Appends one hit written by `write` (which must write one JSON line).
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        debug_assert_eq!(self.bytes.last(), Some(&b'\n'));
        self.ends.push(self.bytes.len());
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

    /// A stable identifier of one hit document from this message: the same
    /// for the same line of a redelivered message and the same indicators
    /// (one, or a line's group), whichever instance matched it (NATS
    /// `Nats-Msg-Id`). 32 hex digits of SHA-256.
    pub fn hit_id<'i>(&self, line: u32, inds: impl IntoIterator<Item = &'i Indicator>) -> String {
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
        for ind in inds {
            field(ind.kind.as_str().as_bytes());
            field(ind.provenance.feed.name.as_bytes());
            field(ind.value.as_bytes());
        }
        let digest = d.finish();
        let mut id = String::with_capacity(32);
        for b in &digest.as_ref()[..16] {
            use std::fmt::Write as _;
            let _ = write!(id, "{b:02x}");
        }
        id
    }
}

/// One indicator found in a line, as a hit reports it.
#[derive(Clone, Copy)]
pub struct Found<'a> {
    /// The indicator.
    pub indicator: &'a Indicator,
    /// Where in the line it matched.
    pub m: Match,
    /// The bytes of the line it matched.
    pub matched: &'a [u8],
    /// Repeats of its suppression key it closes ([`crate::suppress`]).
    pub repeats: Option<Repeats>,
}

/// What the daemon (or `scan`) knows of a line with hits besides its hits.
pub struct Event<'a> {
    /// Where the line was seen; `timestamp` is when iocd saw it.
    pub sighting: Sighting<'a>,
    /// The line for `event.original` (cut by the caller) and whether it
    /// was cut short; none: `scan` without `--with-line`.
    pub original: Option<(&'a [u8], bool)>,
    /// What was read from the line and its source.
    pub context: &'a LineContext<'a>,
    /// Found by a retro-hunt in lines seen before the indicator arrived
    /// (`retro: true`; `iocd.retro` in ECS); `@timestamp` is then when the
    /// line was seen.
    pub retro: bool,
}

impl Event<'_> {
    /// The event's own time when the line carries one (a syslog header),
    /// else when iocd saw it.
    fn timestamp(&self) -> std::borrow::Cow<'_, str> {
        match self.context.syslog.as_ref().and_then(|h| h.timestamp_ms) {
            Some(ms) => crate::time::rfc3339_ms(ms).into(),
            None => self.sighting.timestamp.into(),
        }
    }
}

/// How hits are grouped into documents (`[output] group`): a closed set.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// One document per (line, indicator).
    #[default]
    Hit,
    /// One document per line, holding every indicator that matched it.
    Line,
}

/// `[output]`: the shape of hit documents, for every sink.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// One document per hit (default) or per line.
    #[serde(default)]
    pub group: Grouping,
}

/// Encodes the hits of one line in `format`, one document per hit or one
/// for the line: the table every sink's format goes through.
pub fn encode(
    format: HitFormat,
    group: Grouping,
    out: &mut EncodedHits,
    ev: &Event,
    found: &[Found],
) {
    match (group, format) {
        (Grouping::Hit, HitFormat::Native) => {
            for f in found {
                out.push(|o| write_native(o, ev, std::slice::from_ref(f), false))
            }
        }
        (Grouping::Hit, HitFormat::Ecs) => {
            for f in found {
                out.push(|o| write_ecs(o, ev, std::slice::from_ref(f), false))
            }
        }
        (Grouping::Line, HitFormat::Native) => out.push(|o| write_native(o, ev, found, true)),
        (Grouping::Line, HitFormat::Ecs) => out.push(|o| write_ecs(o, ev, found, true)),
    }
}

fn json_str(out: &mut Vec<u8>, v: &str) {
    serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
}

/// The indicator object of native hits (`{"value", "type", "feed", ...}`),
/// without its closing brace.
fn native_indicator(out: &mut Vec<u8>, ind: &Indicator) {
    out.extend_from_slice(b"{\"value\":");
    json_str(out, &ind.value);
    out.extend_from_slice(b",\"type\":");
    json_str(out, ind.kind.as_str());
    out.extend_from_slice(b",\"feed\":");
    json_str(out, &ind.provenance.feed.name);
    out.extend_from_slice(b",\"feed_file\":");
    json_str(out, &ind.provenance.feed.file);
    let _ = write!(out, ",\"feed_line\":{}", ind.provenance.line);
    for (k, v) in &ind.provenance.meta {
        out.push(b',');
        json_str(out, k);
        out.push(b':');
        json_str(out, v);
    }
}

/// `"matched":{"value","start","end","field"?}`.
fn native_matched(out: &mut Vec<u8>, ev: &Event, f: &Found) {
    out.extend_from_slice(b"\"matched\":{\"value\":");
    json_str(out, &String::from_utf8_lossy(f.matched));
    let _ = write!(out, ",\"start\":{},\"end\":{}", f.m.start, f.m.end);
    if let Some(field) = ev.context.field(f.m.start, f.m.end) {
        out.extend_from_slice(b",\"field\":");
        json_str(out, field);
    }
    out.push(b'}');
}

/// `"matched":{...}` and, when it closes suppressed repeats, their count
/// and first sighting: the same inside a group as alone.
fn native_match_and_repeats(out: &mut Vec<u8>, ev: &Event, f: &Found) {
    native_matched(out, ev, f);
    if let Some(r) = &f.repeats {
        out.push(b',');
        native_repeats(out, r);
    }
}

fn native_repeats(out: &mut Vec<u8>, r: &Repeats) {
    let _ = write!(out, "\"suppressed\":{},\"first_seen\":", r.suppressed);
    json_str(out, &crate::time::rfc3339_ms(r.first_seen_ms));
}

/// Writes one native document (with the trailing newline): one hit, or
/// with `grouped` a line's hits under `indicators`.
///
/// Shape: `{"@timestamp", "input", "line_number", "origin"?, "source"?,
/// "log"?, "indicator", "matched", "suppressed"?, "first_seen"?,
/// "event"?}`; grouped, `indicator`/`matched` become `"indicators": [{...,
/// "matched": {...}}]`.
pub fn write_native(out: &mut Vec<u8>, ev: &Event, found: &[Found], grouped: bool) {
    let s = &ev.sighting;
    out.extend_from_slice(b"{\"@timestamp\":");
    json_str(out, &ev.timestamp());
    out.extend_from_slice(b",\"input\":");
    json_str(out, s.input);
    let _ = write!(out, ",\"line_number\":{}", s.line_number);
    if let Some((origin, line)) = s.origin {
        out.extend_from_slice(b",\"origin\":");
        origin.write_json(out, line);
    }
    let context = context_json(ev.context);
    for (k, v) in context.iter() {
        out.push(b',');
        json_str(out, k);
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
    }
    if grouped {
        out.extend_from_slice(b",\"indicators\":[");
        for (i, f) in found.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            native_indicator(out, f.indicator);
            out.push(b',');
            native_match_and_repeats(out, ev, f);
            out.push(b'}');
        }
        out.push(b']');
    } else if let Some(f) = found.first() {
        out.extend_from_slice(b",\"indicator\":");
        native_indicator(out, f.indicator);
        out.extend_from_slice(b"},");
        native_match_and_repeats(out, ev, f);
    }
    if ev.retro {
        out.extend_from_slice(b",\"retro\":true");
    }
    let ingested = ev
        .context
        .syslog
        .as_ref()
        .is_some_and(|h| h.timestamp_ms.is_some());
    if ev.original.is_some() || ingested {
        out.extend_from_slice(b",\"event\":{");
        let mut sep = "";
        if let Some((original, truncated)) = ev.original {
            out.extend_from_slice(b"\"original\":");
            json_str(out, &String::from_utf8_lossy(original));
            if truncated {
                out.extend_from_slice(b",\"original_truncated\":true");
            }
            sep = ",";
        }
        if ingested {
            let _ = write!(out, "{sep}\"ingested\":");
            json_str(out, s.timestamp);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// The ECS fields from the line's context, as top-level objects: `source`
/// (the peer), `log` (`file.path`, `offset`, `syslog.*`).
fn context_json(c: &LineContext) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Map, Value};
    let mut top = Map::new();
    if let Some(peer) = c.peer {
        top.insert(
            "source".into(),
            json!({ "address": peer.ip().to_string(), "ip": peer.ip().to_string(), "port": peer.port() }),
        );
    }
    if let Some(subject) = c.tls_client {
        top.insert(
            "tls".into(),
            json!({ "client": { "subject": subject, "x509": { "subject": { "distinguished_name": subject } } } }),
        );
    }
    let mut log = Map::new();
    if let Some((path, offset)) = c.file {
        log.insert("file".into(), json!({ "path": path }));
        log.insert("offset".into(), json!(offset));
    }
    if let Some(h) = &c.syslog {
        let mut sl = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                sl.insert(k.into(), Value::from(v));
            }
        };
        put("hostname", h.hostname);
        put("appname", h.appname);
        put("procid", h.procid);
        put("msgid", h.msgid);
        if let (Some(p), Some(f), Some(sev)) = (h.priority, h.facility(), h.severity()) {
            sl.insert("priority".into(), json!(p));
            sl.insert(
                "facility".into(),
                json!({ "code": f, "name": FACILITIES[usize::from(f)] }),
            );
            sl.insert(
                "severity".into(),
                json!({ "code": sev, "name": SEVERITIES[usize::from(sev)] }),
            );
        }
        if let Some(v) = h.version {
            sl.insert("version".into(), json!(v.to_string()));
        }
        log.insert("syslog".into(), Value::Object(sl));
    }
    if !log.is_empty() {
        top.insert("log".into(), Value::Object(log));
    }
    top
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
/// `event.kind: enrichment`, the line as `message`/`event.original`, one
/// `threat.enrichments[]` entry per hit (several when `grouped`) with
/// `indicator.*` and `matched.*`, the line's context (`source.*`,
/// `log.file.path`, `log.offset`, `log.syslog.*`). iocd's own fields (input,
/// line number, feed line, feed metadata, broker coordinates, suppression)
/// sit under `iocd`.
pub fn write_ecs(out: &mut Vec<u8>, ev: &Event, found: &[Found], grouped: bool) {
    use serde_json::{json, Map, Value};
    let mut enrichments = Vec::with_capacity(found.len());
    let mut iocd_indicators = Vec::with_capacity(found.len());
    for f in found {
        let ind = f.indicator;
        let (ecs_type, fields) = ecs_indicator(ind, f.matched);
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
        let field = ev.context.field(f.m.start, f.m.end).unwrap_or("message");
        enrichments.push(json!({
            "indicator": indicator,
            "matched": { "atomic": String::from_utf8_lossy(f.matched), "field": field, "type": "indicator_match_rule" },
        }));
        let mut iocd_indicator = json!({ "value": &*ind.value, "type": ind.kind.as_str(), "feed_file": &*ind.provenance.feed.file, "feed_line": ind.provenance.line, "meta": meta });
        if ind.is_cidr() {
            iocd_indicator["network"] = json!(&*ind.value);
        }
        let matched = json!({ "start": f.m.start, "end": f.m.end });
        let repeats = f.repeats.map(|r| {
            (
                json!(r.suppressed),
                json!(crate::time::rfc3339_ms(r.first_seen_ms)),
            )
        });
        if grouped {
            iocd_indicator["matched"] = matched;
            if let Some((n, first)) = repeats {
                iocd_indicator["suppressed"] = n;
                iocd_indicator["first_seen"] = first;
            }
            iocd_indicators.push(iocd_indicator);
        } else {
            iocd_indicators.push(json!({ "indicator": iocd_indicator, "matched": matched }));
            if let Some((n, first)) = repeats {
                iocd_indicators.push(json!({ "suppressed": n, "first_seen": first }));
            }
        }
    }
    let original = ev.original.map(|(o, _)| String::from_utf8_lossy(o));
    let mut iocd = Map::new();
    iocd.insert("input".into(), json!(ev.sighting.input));
    iocd.insert("line_number".into(), json!(ev.sighting.line_number));
    if grouped {
        iocd.insert("indicators".into(), Value::Array(iocd_indicators));
    } else {
        for part in iocd_indicators {
            if let Value::Object(o) = part {
                iocd.extend(o);
            }
        }
    }
    if ev.retro {
        iocd.insert("retro".into(), json!(true));
    }
    iocd.insert(
        "original_truncated".into(),
        json!(ev.original.is_some_and(|(_, t)| t)),
    );
    if let Some((origin, line)) = ev.sighting.origin {
        let mut o = Vec::new();
        origin.write_json(&mut o, line);
        iocd.insert(
            "source".into(),
            serde_json::from_slice(&o).expect("valid JSON"),
        );
    }
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(ev.timestamp()));
    let mut event = json!({ "kind": "enrichment", "category": ["threat"], "type": ["indicator"], "dataset": "iocd.hit", "ingested": ev.sighting.timestamp });
    if let Some(original) = original {
        doc.insert("message".into(), json!(original));
        event["original"] = json!(original);
    }
    doc.insert("event".into(), event);
    doc.extend(context_json(ev.context));
    doc.insert("threat".into(), json!({ "enrichments": enrichments }));
    doc.insert("iocd".into(), Value::Object(iocd));
    serde_json::to_writer(&mut *out, &doc).expect("writing to a Vec");
    out.push(b'\n');
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::context::LineContext;
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

    fn found<'a>(ind: &'a Indicator, m: Match, line: &'a [u8]) -> Found<'a> {
        Found {
            indicator: ind,
            m,
            matched: &line[m.start as usize..m.end as usize],
            repeats: None,
        }
    }

    /// Grouped by line: one document whose indicators are the per-hit
    /// documents' indicators, in order; context fields appear once.
    #[test]
    fn grouping_keeps_every_pair() {
        let ctx = FeedContext::named("f.txt");
        let line = b"<13>1 2026-11-23T05:10:00Z web1 sshd 7 - - from 203.0.113.9 evil.example";
        let a = ctx.indicator((IndicatorType::Ipv4, "203.0.113.9".into()), 1, vec![]);
        let b = ctx.indicator((IndicatorType::Domain, "evil.example".into()), 2, vec![]);
        let at = |v: &str| {
            let s = line
                .windows(v.len())
                .position(|w| w == v.as_bytes())
                .unwrap() as u32;
            Match {
                indicator: 0,
                start: s,
                end: s + v.len() as u32,
            }
        };
        let context = LineContext::read(
            line,
            crate::context::LineFormat::Syslog,
            Some("127.0.0.1:5514".parse().unwrap()),
            None,
        );
        let ev = Event {
            sighting: Sighting {
                timestamp: "2026-11-23T06:00:00.000Z",
                input: "syslog",
                line_number: 3,
                origin: None,
            },
            original: Some((line, false)),
            context: &context,
            retro: false,
        };
        let hits = [
            found(&a, at("203.0.113.9"), line),
            found(&b, at("evil.example"), line),
        ];
        for format in HitFormat::ALL {
            let (mut each, mut grouped) = (EncodedHits::default(), EncodedHits::default());
            encode(format, Grouping::Hit, &mut each, &ev, &hits);
            encode(format, Grouping::Line, &mut grouped, &ev, &hits);
            assert_eq!((each.len(), grouped.len()), (2, 1));
            let g: serde_json::Value = serde_json::from_slice(grouped.get(0)).unwrap();
            let values: Vec<serde_json::Value> = match format {
                HitFormat::Native => g["indicators"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["value"].clone())
                    .collect(),
                HitFormat::Ecs => g["iocd"]["indicators"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["value"].clone())
                    .collect(),
            };
            let singles: Vec<serde_json::Value> = (0..2)
                .map(|i| {
                    let v: serde_json::Value = serde_json::from_slice(each.get(i)).unwrap();
                    match format {
                        HitFormat::Native => v["indicator"]["value"].clone(),
                        HitFormat::Ecs => v["iocd"]["indicator"]["value"].clone(),
                    }
                })
                .collect();
            assert_eq!(values, singles, "{format:?}");
            assert_eq!(g["@timestamp"], "2026-11-23T05:10:00.000Z");
            assert_eq!(g["event"]["ingested"], "2026-11-23T06:00:00.000Z");
            assert_eq!(g["log"]["syslog"]["hostname"], "web1");
            assert_eq!(g["log"]["syslog"]["appname"], "sshd");
            assert_eq!(g["source"]["ip"], "127.0.0.1");
            assert_eq!(g["source"]["port"], 5514);
        }
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
            original: Some((line, false)),
            context: &LineContext::default(),
            retro: false,
        };
        let f = found(&ind, m, line);
        let mut out = Vec::new();
        write_native(&mut out, &ev, &[f], false);
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
            original: Some((line, true)),
            context: &LineContext::default(),
            retro: false,
        };
        let mut out = Vec::new();
        write_ecs(&mut out, &ev, &[found(&ind, m, line)], false);
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
                original: Some((line, false)),
                context: &LineContext::default(),
                retro: false,
            };
            let mut out = Vec::new();
            write_ecs(&mut out, &ev, &[found(&ind, m, line)], false);
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
