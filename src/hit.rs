//! Hits as JSON lines: one object per (line, indicator).
//!
//! Shape (`native`):
//! `{"@timestamp", "input", "line_number", "indicator": {"value", "type",
//! "feed", "feed_line", ...metadata}, "matched": {"value", "start", "end"}}`.
//! Text from the line is written lossily (invalid UTF-8 as U+FFFD).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::Match;
use crate::indicator::Indicator;

/// Where a hit was seen.
pub struct Sighting<'a> {
    pub timestamp: &'a str,
    pub input: &'a str,
    pub line_number: u64,
}

/// Writes one hit as a JSON line (with the trailing newline).
pub fn write_native(out: &mut Vec<u8>, s: &Sighting, ind: &Indicator, m: &Match, matched: &[u8]) {
    let str_ =
        |out: &mut Vec<u8>, v: &str| serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
    out.extend_from_slice(b"{\"@timestamp\":");
    str_(out, s.timestamp);
    out.extend_from_slice(b",\"input\":");
    str_(out, s.input);
    let _ = write!(
        out,
        ",\"line_number\":{},\"indicator\":{{\"value\":",
        s.line_number
    );
    str_(out, &ind.value);
    out.extend_from_slice(b",\"type\":");
    str_(out, ind.kind.as_str());
    out.extend_from_slice(b",\"feed\":");
    str_(out, &ind.provenance.feed);
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
