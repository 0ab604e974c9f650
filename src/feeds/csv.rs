//! CSV feeds: a header naming a value column (`value`, `indicator`, `ioc`)
//! and optionally a type column (`type`, `indicator_type`, `ioc_type`); every
//! other column is metadata. TweetFeed's CSV has no header but a fixed shape
//! (`date,user,type,value,tags,tweet_url`) and is recognised by it. MISP's CSV
//! export (`uuid,event_id,category,type,value,comment,to_ids,...`) honours
//! `to_ids`: rows marked not for detection are skipped.

use super::{types, FeedContext, Parsed, SkipLog, SkipReason};
use crate::indicator::canon::{classify, refang};
use crate::indicator::IndicatorType;

const VALUE_COLUMNS: [&str; 4] = ["value", "indicator", "ioc", "observable"];
const TYPE_COLUMNS: [&str; 3] = ["type", "indicator_type", "ioc_type"];
const TWEETFEED_HEADER: [&str; 6] = ["date", "user", "type", "value", "tags", "tweet_url"];
const TWEETFEED_TYPES: [&str; 5] = ["ip", "domain", "url", "sha256", "md5"];

/// True when the first meaningful line is a CSV header with a value column,
/// or a TweetFeed row.
pub fn looks_like(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    if !first.contains(',') {
        return false;
    }
    let fields = split_record(first);
    header_columns(&fields).is_some() || is_tweetfeed_row(&fields)
}

fn header_columns(fields: &[String]) -> Option<(usize, Option<usize>)> {
    let pos = |names: &[&str]| {
        fields
            .iter()
            .position(|f| names.contains(&f.trim().to_ascii_lowercase().as_str()))
    };
    Some((pos(&VALUE_COLUMNS)?, pos(&TYPE_COLUMNS)))
}

fn is_tweetfeed_row(f: &[String]) -> bool {
    let date = f.first().map(|d| d.as_bytes()).unwrap_or_default();
    f.len() >= 4
        && date.len() >= 10
        && date[..4].iter().all(u8::is_ascii_digit)
        && date[4] == b'-'
        && TWEETFEED_TYPES.contains(&f[2].as_str())
}

pub fn parse(ctx: &FeedContext, text: &str) -> Parsed {
    let mut indicators = Vec::new();
    let mut skipped = SkipLog::default();
    let mut header: Option<(Vec<String>, usize, Option<usize>)> = None;
    for (n, fields) in records(text) {
        if fields.len() == 1 && (fields[0].trim().is_empty() || fields[0].starts_with('#')) {
            continue;
        }
        if header.is_none() {
            if let Some((v, t)) = header_columns(&fields) {
                header = Some((fields.iter().map(|f| f.trim().to_owned()).collect(), v, t));
                continue;
            }
            if is_tweetfeed_row(&fields) {
                header = Some((
                    TWEETFEED_HEADER.iter().map(|s| s.to_string()).collect(),
                    3,
                    Some(2),
                ));
            } else {
                skipped.push(n, "row before a header naming a value column");
                continue;
            }
        }
        let (names, vi, ti) = header.as_ref().expect("set above");
        let Some(value) = fields.get(*vi).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            skipped.push(n, format!("no value in column {:?}", names[*vi]));
            continue;
        };
        if let Some(i) = names.iter().position(|c| c == "to_ids") {
            if matches!(
                fields.get(i).map(|s| s.trim()),
                Some("0" | "False" | "false")
            ) {
                skipped.push(n, "to_ids is false");
                continue;
            }
        }
        let canon = match ti
            .and_then(|t| fields.get(t))
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
        {
            Some(kind) => types::canonical(kind, &refang(value)),
            // No type column: typed by shape, as a plain list is, so a
            // shapeless value is not loaded as a string.
            None => match classify(&refang(value)) {
                Some((IndicatorType::String, _)) => {
                    skipped.push_reason(
                        n,
                        SkipReason::NoShape,
                        format!("{value:?} has no indicator shape"),
                    );
                    continue;
                }
                Some(c) => Ok(vec![c]),
                None => Err("empty value".to_owned()),
            },
        };
        let meta: Vec<(Box<str>, Box<str>)> = names
            .iter()
            .zip(&fields)
            .enumerate()
            .filter(|(i, (_, v))| *i != *vi && Some(*i) != *ti && !v.trim().is_empty())
            .map(|(_, (k, v))| (k.as_str().into(), v.trim().into()))
            .collect();
        match canon {
            Ok(cs) => indicators.extend(cs.into_iter().map(|c| ctx.indicator(c, n, meta.clone()))),
            Err(reason) => skipped.push(n, reason),
        }
    }
    Parsed {
        indicators,
        skipped,
    }
}

/// RFC 4180 records with the line each starts on: quoted fields may hold
/// commas, doubled quotes and newlines.
fn records(text: &str) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut in_quotes, mut line, mut start_line) = (false, 1u32, 1u32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if field.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\n', false) => {
                if field.ends_with('\r') {
                    field.pop();
                }
                fields.push(std::mem::take(&mut field));
                out.push((start_line, std::mem::take(&mut fields)));
                line += 1;
                start_line = line;
            }
            ('\n', true) => {
                line += 1;
                field.push(c);
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push((start_line, fields));
    }
    out
}

fn split_record(line: &str) -> Vec<String> {
    records(line)
        .into_iter()
        .next()
        .map(|(_, f)| f)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::test_support::pairs;

    fn read(text: &str) -> Parsed {
        parse(&FeedContext::named("c"), text)
    }

    #[test]
    fn tweetfeed_headerless() {
        let text = "2026-08-16 01:04:58,masaomi346,domain,hndjsy.com,#phishing,https://x.com/s/1\n\
                    2026-08-16 01:04:58,masaomi346,ip,07:01:24,#c2,https://x.com/s/2\n\
                    2026-08-16 01:04:58,masaomi346,url,hxxps://bad[.]example/a,#phishing,https://x.com/s/3\n";
        assert!(looks_like(text));
        let p = read(text);
        let got = pairs(&p.indicators);
        assert_eq!(
            got,
            [
                ("domain-name", "hndjsy.com"),
                ("url", "https://bad.example/a")
            ]
        );
        let tags = p.indicators[0]
            .provenance
            .meta
            .iter()
            .find(|(k, _)| &**k == "tags")
            .unwrap();
        assert_eq!(&*tags.1, "#phishing");
        assert_eq!(p.skipped.count, 1);
        assert_eq!(p.skipped.examples[0].line, 2);
    }

    #[test]
    fn misp_export_with_quotes_and_to_ids() {
        let text = "uuid,event_id,category,type,value,comment,to_ids,date\n\
                    u1,7,Network activity,ip-dst,1.2.3.4,\"c2, \"\"primary\"\"\",1,1600000000\n\
                    u2,7,Network activity,domain,benign.example,,0,1600000000\n\
                    u3,7,Payload delivery,filename|md5,\"a.exe|d41d8cd98f00b204e9800998ecf8427e\",\"multi\nline\",1,1600000000\n\
                    u4,7,Other,comment,hello,,1,1600000000\n";
        assert!(looks_like(text));
        let p = read(text);
        let got: Vec<(&str, &str, u32)> = p
            .indicators
            .iter()
            .map(|i| (i.kind.as_str(), &*i.value, i.provenance.line))
            .collect();
        assert_eq!(
            got,
            [
                ("ipv4-addr", "1.2.3.4", 2),
                ("md5", "d41d8cd98f00b204e9800998ecf8427e", 4)
            ]
        );
        let comment = p.indicators[0]
            .provenance
            .meta
            .iter()
            .find(|(k, _)| &**k == "comment")
            .unwrap();
        assert_eq!(&*comment.1, "c2, \"primary\"");
        let lines: Vec<u32> = p.skipped.examples.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 6]);
    }

    #[test]
    fn plain_lists_are_not_csv() {
        assert!(!looks_like("1.2.3.4\nevil.example\n"));
        assert!(!looks_like("Mozilla/5.0 (a, b)\n"));
    }
}
