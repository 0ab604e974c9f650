//! Zeek intel framework files: a `#fields` header naming `indicator` and
//! `indicator_type` columns, tab-separated rows, `meta.*` columns as metadata.

use super::{FeedContext, Parsed, SkipLog};
use crate::indicator::canon::{typed, TypeHint};
use crate::indicator::IndicatorType;

/// The Zeek `Intel::` types iocd matches, and what each holds.
fn kind_of(intel_type: &str) -> Option<TypeHint> {
    use IndicatorType as T;
    Some(match intel_type {
        "Intel::ADDR" | "Intel::SUBNET" => TypeHint::Ip,
        "Intel::DOMAIN" => TypeHint::Exactly(T::Domain),
        "Intel::URL" => TypeHint::Exactly(T::Url),
        "Intel::EMAIL" => TypeHint::Exactly(T::Email),
        "Intel::FILE_HASH" | "Intel::CERT_HASH" | "Intel::PUBKEY_HASH" => TypeHint::Hash,
        "Intel::FILE_NAME" | "Intel::USER_NAME" | "Intel::SOFTWARE" => TypeHint::Exactly(T::String),
        _ => return None,
    })
}

pub fn parse(ctx: &FeedContext, text: &str) -> Parsed {
    let mut indicators = Vec::new();
    let mut skipped = SkipLog::default();
    let mut columns: Option<(Vec<&str>, usize, usize)> = None;
    for (n, line) in super::numbered_lines(text) {
        if let Some(fields) = line.strip_prefix("#fields") {
            let names: Vec<&str> = fields.split('\t').skip(1).collect();
            let pos = |want| names.iter().position(|&f| f == want);
            match (pos("indicator"), pos("indicator_type")) {
                (Some(v), Some(t)) => columns = Some((names, v, t)),
                _ => skipped.push(n, "#fields names no indicator and indicator_type columns"),
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((names, iv, it)) = &columns else {
            skipped.push(n, "row before a usable #fields header");
            continue;
        };
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() <= (*iv).max(*it) {
            skipped.push(
                n,
                format!("{} columns, the header names {}", cols.len(), names.len()),
            );
            continue;
        }
        let Some(kind) = kind_of(cols[*it]) else {
            skipped.push(n, format!("unsupported indicator_type {:?}", cols[*it]));
            continue;
        };
        let Some(c) = typed(kind, cols[*iv]) else {
            skipped.push(n, format!("{:?} is not a valid {}", cols[*iv], cols[*it]));
            continue;
        };
        // `-` is Zeek's "unset"; metadata keeps what is set.
        let meta = names
            .iter()
            .zip(&cols)
            .filter(|(name, v)| name.starts_with("meta.") && !v.is_empty() && **v != "-")
            .map(|(name, v)| ((*name).into(), (*v).into()))
            .collect();
        indicators.push(ctx.indicator(c, n, meta));
    }
    Parsed {
        indicators,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::test_support::pairs;

    #[test]
    fn reads_types_and_meta() {
        let text = "#separator \\x09\n#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n\
            evil.example\tIntel::DOMAIN\tCPS\t-\n\
            198.51.100.0/24\tIntel::SUBNET\tCPS\tbad net\n\
            bad.example/x\tIntel::URL\tCPS\t-\n\
            07:01:24\tIntel::ADDR\tCPS\t-\n\
            x\tIntel::CERT_THING\tCPS\t-\n\
            short\n";
        let p = parse(&FeedContext::named("z"), text);
        let got = pairs(&p.indicators);
        assert_eq!(
            got,
            [
                ("domain-name", "evil.example"),
                ("ipv4-addr", "198.51.100.0/24"),
                ("url", "bad.example/x")
            ]
        );
        assert_eq!(p.indicators[1].provenance.meta.len(), 2);
        assert_eq!(&*p.indicators[1].provenance.meta[1].1, "bad net");
        assert_eq!(p.indicators[0].provenance.line, 3);
        let lines: Vec<u32> = p.skipped.examples.iter().map(|s| s.line).collect();
        assert_eq!(lines, [6, 7, 8]);
    }
}
