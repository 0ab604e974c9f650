//! Type names that feeds state (CSV type columns, and later MISP attribute
//! types) mapped to iocd's indicator types.

use crate::indicator::canon::{domain, typed, Canonical, TypeHint};
use crate::indicator::IndicatorType;

/// Canonicalises `value` stated to be of feed type `kind` (case-insensitive).
///
/// # Errors
/// A reason, naming the type, when the type is not one iocd matches or the
/// value is not of that type.
pub fn canonical(kind: &str, value: &str) -> Result<Vec<Canonical>, String> {
    let kind = kind.trim().to_ascii_lowercase();
    let value = value.trim();
    let bad = || format!("{value:?} is not a valid {kind}");
    let one = |c: Option<Canonical>| c.map(|c| vec![c]).ok_or_else(bad);
    let before_pipe = |v: &str| v.split_once('|').map_or(v, |(a, _)| a).to_owned();
    let after_pipe = |v: &str| v.rsplit_once('|').map_or(v, |(_, b)| b).to_owned();
    match kind.as_str() {
        "ip" | "ipv4" | "ipv6" | "ip-src" | "ip-dst" | "ipv4-addr" | "ipv6-addr" | "cidr"
        | "subnet" => one(typed(TypeHint::Ip, value)),
        "ip-src|port" | "ip-dst|port" => one(typed(TypeHint::Ip, &before_pipe(value))),
        "hostname|port" => one(domain(&before_pipe(value)).map(|d| (IndicatorType::Domain, d))),
        "domain" | "hostname" | "domain-name" | "fqdn" => {
            one(domain(value).map(|d| (IndicatorType::Domain, d)))
        }
        "domain|ip" => {
            let (d, ip) = value.split_once('|').ok_or_else(bad)?;
            let d = domain(d).ok_or_else(bad)?;
            let ip = typed(TypeHint::Ip, ip).ok_or_else(bad)?;
            Ok(vec![(IndicatorType::Domain, d), ip])
        }
        "url" | "uri-full" => one(typed(TypeHint::Exactly(IndicatorType::Url), value)),
        "email" | "email-src" | "email-dst" | "email-addr" | "email-address" => {
            one(typed(TypeHint::Exactly(IndicatorType::Email), value))
        }
        "md5"
        | "sha1"
        | "sha256"
        | "sha512"
        | "hash"
        | "filehash"
        | "ja3-fingerprint-md5"
        | "x509-fingerprint-sha1"
        | "x509-fingerprint-sha256"
        | "x509-fingerprint-md5" => one(typed(TypeHint::Hash, value)),
        k if k.starts_with("filename|") || k == "malware-sample" => {
            one(typed(TypeHint::Hash, &after_pipe(value)))
        }
        "user-agent"
        | "mutex"
        | "filename"
        | "regkey"
        | "named pipe"
        | "pattern-in-file"
        | "pattern-in-traffic"
        | "pattern-in-memory"
        | "uri"
        | "string"
        | "windows-service-name"
        | "process-name"
        | "pdb" => one(typed(TypeHint::Exactly(IndicatorType::String), value)),
        "regkey|value" => one(typed(
            TypeHint::Exactly(IndicatorType::String),
            &before_pipe(value),
        )),
        "regex" => one(typed(TypeHint::Exactly(IndicatorType::Regex), value)),
        _ => Err(format!(
            "type {kind:?} is not an indicator type iocd matches"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IndicatorType::*;

    #[test]
    fn table() {
        type Case<'a> = (&'a str, &'a str, &'a [(IndicatorType, &'a str)]);
        let ok: &[Case] = &[
            ("ip", "1.2.3.4", &[(Ipv4, "1.2.3.4")]),
            ("ip-dst|port", "1.2.3.4|443", &[(Ipv4, "1.2.3.4")]),
            ("domain", "Evil.Example", &[(Domain, "evil.example")]),
            (
                "domain|ip",
                "evil.example|1.2.3.4",
                &[(Domain, "evil.example"), (Ipv4, "1.2.3.4")],
            ),
            ("url", "https://a.example", &[(Url, "https://a.example/")]),
            (
                "sha256",
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                &[(
                    Sha256,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                )],
            ),
            (
                "filename|md5",
                "a.exe|d41d8cd98f00b204e9800998ecf8427e",
                &[(Md5, "d41d8cd98f00b204e9800998ecf8427e")],
            ),
            ("user-agent", "EvilBot/1.0", &[(String, "EvilBot/1.0")]),
        ];
        for (k, v, want) in ok {
            let want: Vec<Canonical> = want.iter().map(|(t, v)| (*t, (*v).to_owned())).collect();
            assert_eq!(canonical(k, v), Ok(want), "{k} {v}");
        }
        for (k, v) in [
            ("ip", "07:01:24"),
            ("sha256", "abc"),
            ("domain", "not a domain"),
            ("comment", "x"),
        ] {
            assert!(canonical(k, v).is_err(), "{k} {v}");
        }
    }
}
