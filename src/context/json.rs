//! Which JSON field of a line holds a matched token.
//!
//! The line is parsed once with serde_json into borrowed raw values; each
//! leaf (string, number, literal) keeps its byte span in the line and its
//! dotted path (`id.resp_h` as Zeek flattens it, `dns.rrname` from nested
//! objects; an array's elements take the array's path, as ECS does).
//!
//! Limits: at most [`MAX_DEPTH`] levels of nesting and [`MAX_LEAVES`]
//! leaves; past them the line has no fields (the hit still stands).

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// Deepest nesting read.
pub const MAX_DEPTH: usize = 32;
/// Most leaves kept from one line.
pub const MAX_LEAVES: usize = 4096;

/// The leaves of one JSON line: byte span and dotted path, in line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonLeaves {
    leaves: Vec<(usize, usize, Box<str>)>,
}

impl JsonLeaves {
    /// The leaves of `line` when it is a JSON object; none otherwise.
    pub fn parse(line: &[u8]) -> Option<JsonLeaves> {
        let text = std::str::from_utf8(line).ok()?;
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let base = text.as_ptr() as usize;
        let mut leaves = Vec::new();
        let root: &RawValue = serde_json::from_str(text).ok()?;
        walk(root, base, "", 0, &mut leaves)?;
        leaves.sort_unstable_by_key(|l| l.0);
        Some(JsonLeaves { leaves })
    }

    /// The path of the leaf holding bytes `start..end`, if one does.
    pub fn field(&self, start: usize, end: usize) -> Option<&str> {
        let i = self.leaves.partition_point(|l| l.0 <= start);
        let (s, e, path) = self.leaves.get(i.checked_sub(1)?)?;
        (*s <= start && end <= *e).then_some(&**path)
    }
}

fn walk(
    v: &RawValue,
    base: usize,
    path: &str,
    depth: usize,
    out: &mut Vec<(usize, usize, Box<str>)>,
) -> Option<()> {
    if depth > MAX_DEPTH || out.len() > MAX_LEAVES {
        return None;
    }
    let raw = v.get();
    match raw.as_bytes().first()? {
        b'{' => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(raw).ok()?;
            for (k, child) in members {
                let p = if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                };
                walk(child, base, &p, depth + 1, out)?;
            }
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            for child in items {
                walk(child, base, path, depth + 1, out)?;
            }
        }
        _ => {
            let start = raw.as_ptr() as usize - base;
            out.push((start, start + raw.len(), path.into()));
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, matched text, field) from Zeek JSON, Suricata EVE and ECS.
    #[test]
    fn fields_of_real_shapes() {
        let cases = [
            (
                r#"{"ts":1700000000.1,"uid":"C1","id.orig_h":"10.0.0.5","id.resp_h":"203.0.113.9","id.resp_p":443}"#,
                "203.0.113.9",
                Some("id.resp_h"),
            ),
            (
                r#"{"event_type":"dns","src_ip":"10.0.0.5","dest_ip":"198.51.100.7","dns":{"type":"query","rrname":"evil.example"}}"#,
                "evil.example",
                Some("dns.rrname"),
            ),
            (
                r#"{"event_type":"alert","dest_ip":"198.51.100.7"}"#,
                "198.51.100.7",
                Some("dest_ip"),
            ),
            (
                r#"{"dns":{"answers":[{"data":"1.2.3.4"},{"data":"5.6.7.8"}]}}"#,
                "5.6.7.8",
                Some("dns.answers.data"),
            ),
            (
                r#"{"url":{"full":"http://a.example/x"},"message":"GET http://a.example/x"}"#,
                "a.example",
                Some("url.full"),
            ),
            (r#"{"n":"x"} trailing"#, "x", None),
            ("not json 1.2.3.4", "1.2.3.4", None),
        ];
        for (line, token, want) in cases {
            let start = line.find(token).unwrap();
            let leaves = JsonLeaves::parse(line.as_bytes());
            let got = leaves
                .as_ref()
                .and_then(|l| l.field(start, start + token.len()));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn escaped_keys_and_deep_nesting() {
        let line = r#"{"a\"b":{"c":"evil.example"}}"#;
        let l = JsonLeaves::parse(line.as_bytes()).unwrap();
        let s = line.find("evil").unwrap();
        assert_eq!(l.field(s, s + 12), Some("a\"b.c"));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            JsonLeaves::parse(format!("{{\"a\":{deep}}}").as_bytes()),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Some(l) = JsonLeaves::parse(&bytes) {
                let _ = l.field(0, bytes.len());
            }
        }
    }
}
