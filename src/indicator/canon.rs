//! Canonical forms and type detection, exactly as `MATCHING.md` states them.
//!
//! Every function here is pure and total: it returns `None` (or a `string`)
//! rather than failing, so a feed reader decides what counts as skipped.
//! The same functions canonicalise log tokens in the engine (URL), so an
//! indicator and a token that denote the same observable always compare equal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::IndicatorType;

/// A typed, canonical value: what a feed entry becomes before provenance is attached.
pub type Canonical = (IndicatorType, String);

/// Undoes the usual defanging of shared indicators: a leading `hxxp` (any
/// case) becomes `http`; `[.]`, `(.)`, `{.}`, `[dot]`, `(dot)` become `.`;
/// `[://]`, `[:]`, `[@]` lose their brackets and `[at]` becomes `@`.
pub fn refang(value: &str) -> String {
    let mut v = String::with_capacity(value.len());
    if value.len() >= 4 && value.as_bytes()[..4].eq_ignore_ascii_case(b"hxxp") {
        v.push_str("http");
        v.push_str(&value[4..]);
    } else {
        v.push_str(value);
    }
    if !v.contains(['[', '(', '{']) {
        return v;
    }
    v.replace("[.]", ".")
        .replace("(.)", ".")
        .replace("{.}", ".")
        .replace("[dot]", ".")
        .replace("(dot)", ".")
        .replace("[://]", "://")
        .replace("[:]", ":")
        .replace("[@]", "@")
        .replace("[at]", "@")
}

/// Types a value by its shape (plain lists): IP or CIDR, hash, URL, email,
/// domain, else `string`. `None` only for a blank value.
pub fn classify(value: &str) -> Option<Canonical> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let v = strip_port(v).unwrap_or(v);
    if let Some(ip) = ip_or_cidr(v) {
        return Some(ip);
    }
    if let Some(kind) = IndicatorType::hash_for_hex_len(v.len()) {
        if v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some((kind, v.to_ascii_lowercase()));
        }
    }
    if v.contains("://") {
        if let Some(url) = canon_url(v) {
            return Some((IndicatorType::Url, url));
        }
    }
    if let Some(url) = schemeless_url(v) {
        return Some(url);
    }
    if v.contains('@') && !v.contains(' ') {
        let (local, host) = v.rsplit_once('@').expect("contains @");
        if !local.is_empty() && is_domain(host.to_lowercase().trim_end_matches('.')) {
            return Some((IndicatorType::Email, v.to_lowercase()));
        }
    }
    if let Some(d) = domain(v) {
        return Some((IndicatorType::Domain, d));
    }
    Some((
        IndicatorType::String,
        value.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// `host[:port]/path` with a domain or IPv4 host: a URL without scheme.
fn schemeless_url(v: &str) -> Option<Canonical> {
    let slash = v.find('/')?;
    let (hostport, path) = v.split_at(slash);
    if path.contains(char::is_whitespace) {
        return None;
    }
    let host = match hostport.rsplit_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => hostport,
    };
    let host_chars = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if host.is_empty() || !host.bytes().all(host_chars) {
        return None;
    }
    let lower = host.to_ascii_lowercase();
    if !is_domain(lower.trim_end_matches('.')) && !is_ipv4_token(host) {
        return None;
    }
    typed(TypeHint::Exactly(IndicatorType::Url), v)
}

/// `d.d.d.d` as the scanner accepts it: 1-3 digits a part, at most 255, no
/// leading zero.
fn is_ipv4_token(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            (1..=3).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// What a feed says a value is, before canonicalisation: one indicator
/// type, or a family the value's own shape settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeHint {
    /// Exactly this type (a digest type still takes its length's type: a
    /// 40-digit "md5" is a SHA-1).
    Exactly(IndicatorType),
    /// An IPv4 or IPv6 address or network.
    Ip,
    /// A hex digest of any supported length.
    Hash,
}

impl TypeHint {
    /// The hint a typed feed names: `ip`, `hash`, or a type name
    /// ([`IndicatorType::from_name`]).
    pub fn from_name(name: &str) -> Option<TypeHint> {
        match name {
            "ip" => Some(TypeHint::Ip),
            "hash" => Some(TypeHint::Hash),
            other => IndicatorType::from_name(other).map(TypeHint::Exactly),
        }
    }
}

/// Canonicalises a value whose type the feed states. `None` when the value
/// is not of that type.
pub fn typed(hint: TypeHint, value: &str) -> Option<Canonical> {
    use IndicatorType as T;
    match hint {
        TypeHint::Ip | TypeHint::Exactly(T::Ipv4 | T::Ipv6) => {
            classify(value).filter(|(t, _)| matches!(t, IndicatorType::Ipv4 | IndicatorType::Ipv6))
        }
        TypeHint::Hash | TypeHint::Exactly(T::Md5 | T::Sha1 | T::Sha256 | T::Sha512) => {
            let v = value.trim().to_ascii_lowercase();
            let kind = IndicatorType::hash_for_hex_len(v.len())?;
            v.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then_some((kind, v))
        }
        TypeHint::Exactly(T::Domain) => {
            let d = value.trim().to_lowercase();
            let d = d.trim_end_matches('.');
            (!d.is_empty()).then(|| (IndicatorType::Domain, d.to_owned()))
        }
        TypeHint::Exactly(T::Email) => {
            let v = value.trim().to_lowercase();
            v.contains('@').then_some((IndicatorType::Email, v))
        }
        TypeHint::Exactly(T::Url) => {
            let v = value.trim();
            if v.contains("://") {
                canon_url(v).map(|u| (IndicatorType::Url, u))
            } else {
                // A URL without scheme matches a URL token of any scheme.
                let mut out = Vec::new();
                let rest = canon_url_into(format!("x://{v}").as_bytes(), &mut out)?;
                let s = String::from_utf8(out.split_off(rest)).ok()?;
                Some((IndicatorType::Url, s))
            }
        }
        TypeHint::Exactly(T::String) => {
            (!value.is_empty()).then(|| (IndicatorType::String, value.to_owned()))
        }
        // Validated here so a bad pattern is a skipped entry with its line,
        // never an engine that fails to build.
        TypeHint::Exactly(T::Regex) => (!value.is_empty()
            && super::guard::check_regex_syntax(value).is_ok())
        .then(|| (IndicatorType::Regex, value.to_owned())),
    }
}

/// `IP:port` or `[IPv6]:port` → the address (the port is only metadata).
fn strip_port(v: &str) -> Option<&str> {
    if let Some(rest) = v.strip_prefix('[') {
        let (addr, port) = rest.split_once("]:")?;
        let ok = !addr.is_empty()
            && addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            && is_port(port);
        return ok.then_some(addr);
    }
    let (addr, port) = v.rsplit_once(':')?;
    let parts: Vec<&str> = addr.split('.').collect();
    let ok = parts.len() == 4
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        && is_port(port);
    ok.then_some(addr)
}

fn is_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

/// An address or a network (`a.b.c.d/n`, `a.b.c.d/netmask`, `addr/n`), host bits cleared.
fn ip_or_cidr(v: &str) -> Option<Canonical> {
    let kind = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => IndicatorType::Ipv4,
        IpAddr::V6(_) => IndicatorType::Ipv6,
    };
    if v.contains('/') && !v.contains("://") {
        let (addr, len) = v.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let len: u8 = if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) {
            len.parse().ok()?
        } else {
            netmask_len(len.parse::<Ipv4Addr>().ok()?)?
        };
        let net = IpNet::new(addr, len).ok()?.trunc();
        return Some((kind(&addr), net.to_string()));
    }
    let ip: IpAddr = v.parse().ok()?;
    Some((kind(&ip), ip.to_string()))
}

/// Prefix length of a contiguous dotted netmask (`255.255.0.0` → 16).
fn netmask_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// A domain value: lowercase, trailing dots, a leading `*.` or `.` dropped,
/// IDN labels as punycode (the `idna` crate's UTS 46 processing). `None` when the result is not a domain name.
pub fn domain(v: &str) -> Option<String> {
    let lower = v.to_lowercase();
    let d = lower.trim_end_matches('.');
    let d = match d.strip_prefix("*.") {
        Some(rest) => rest,
        None => d.trim_start_matches('.'),
    };
    let d = if d.is_ascii() {
        d.to_owned()
    } else {
        // UTS 46, as browsers and resolvers map names (`ß` stays `ß`).
        idna::domain_to_ascii(d).ok()?
    };
    is_domain(&d).then_some(d)
}

/// The `DOMAIN_RE` of `MATCHING.md`: dot-separated labels of `[a-z0-9_-]`
/// (1-63 bytes, no hyphen at either end) and a TLD that starts with a letter
/// (or is an `xn--` label), at most 253 bytes in all.
pub fn is_domain(d: &str) -> bool {
    let Some((labels, tld)) = d.rsplit_once('.') else {
        return false;
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        (1..=63).contains(&b.len())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if !labels.split('.').all(label_ok) {
        return false;
    }
    let t = tld.as_bytes();
    if let Some(rest) = tld.strip_prefix("xn--") {
        return !rest.is_empty()
            && rest
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    }
    d.len() <= 253
        && t.len() >= 2
        && t[0].is_ascii_lowercase()
        && t.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && t[t.len() - 1] != b'-'
}

/// Canonical URL: scheme and host lowercase, host's trailing dots and the
/// scheme's default port dropped, an empty path made `/`. `None` when the
/// value is not `scheme://...`.
pub fn canon_url(u: &str) -> Option<String> {
    let mut out = Vec::with_capacity(u.len() + 1);
    canon_url_into(u.as_bytes(), &mut out)?;
    String::from_utf8(out).ok()
}

/// Writes the canonical form of URL `u` into `out` (cleared first) and returns
/// the offset of the part after `scheme://` (the form a scheme-less indicator
/// has). Works on bytes so the engine can use it without allocating; a host
/// that is not ASCII is lowercased as Unicode.
pub fn canon_url_into(u: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    out.clear();
    let colon = memchr::memchr(b':', u)?;
    let scheme = &u[..colon];
    if !u[colon..].starts_with(b"://")
        || !scheme.first()?.is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
    {
        return None;
    }
    let after = &u[colon + 3..];
    let auth_len = after
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    let (authority, tail) = after.split_at(auth_len);
    let (userinfo, hostport) = match memchr::memrchr(b'@', authority) {
        Some(at) => authority.split_at(at + 1),
        None => (&authority[..0], authority),
    };
    let (host, port) = split_host_port(hostport);
    out.extend(scheme.iter().map(u8::to_ascii_lowercase));
    out.extend_from_slice(b"://");
    let rest = out.len();
    out.extend_from_slice(userinfo);
    let host_start = out.len();
    if host.is_ascii() {
        out.extend(host.iter().map(u8::to_ascii_lowercase));
    } else {
        out.extend_from_slice(String::from_utf8_lossy(host).to_lowercase().as_bytes());
    }
    while out.len() > host_start && out[out.len() - 1] == b'.' {
        out.pop();
    }
    let default_port: &[u8] = match &out[..rest - 3] {
        b"http" => b"80",
        b"https" => b"443",
        b"ftp" => b"21",
        _ => b"",
    };
    if !port.is_empty() && port != default_port {
        out.push(b':');
        out.extend_from_slice(port);
    }
    if tail.is_empty() || tail[0] == b'?' || tail[0] == b'#' {
        out.push(b'/');
    }
    out.extend_from_slice(tail);
    Some(rest)
}

/// `host[:digits]` or `[v6][:digits]`; anything else is all host.
fn split_host_port(hp: &[u8]) -> (&[u8], &[u8]) {
    let host_end = if hp.first() == Some(&b'[') {
        match memchr::memchr(b']', hp) {
            Some(i) => i + 1,
            None => return (hp, &hp[..0]),
        }
    } else {
        memchr::memchr(b':', hp).unwrap_or(hp.len())
    };
    let (host, rest) = hp.split_at(host_end);
    match rest.split_first() {
        None => (host, rest),
        Some((b':', port)) if port.iter().all(u8::is_ascii_digit) => (host, port),
        Some(_) => (hp, &hp[..0]),
    }
}

/// Parses a whole token as an IPv6 address (RFC 4291 text forms).
pub fn parse_ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use IndicatorType::*;

    #[test]
    fn classify_table() {
        let cases: &[(&str, Option<(IndicatorType, &str)>)] = &[
            ("1.2.3.4", Some((Ipv4, "1.2.3.4"))),
            (" 1.2.3.4 ", Some((Ipv4, "1.2.3.4"))),
            ("9.9.9.9:8080", Some((Ipv4, "9.9.9.9"))),
            ("198.51.100.9/24", Some((Ipv4, "198.51.100.0/24"))),
            ("1.2.3.4/32", Some((Ipv4, "1.2.3.4/32"))),
            ("1.2.3.4/255.255.0.0", Some((Ipv4, "1.2.0.0/16"))),
            ("01.2.3.4", Some((String, "01.2.3.4"))),
            ("2001:0DB8::1", Some((Ipv6, "2001:db8::1"))),
            ("[2001:db8::1]:443", Some((Ipv6, "2001:db8::1"))),
            ("2001:db8:beef::7/48", Some((Ipv6, "2001:db8:beef::/48"))),
            ("10:22:33", Some((String, "10:22:33"))),
            (
                "D41D8CD98F00B204E9800998ECF8427E",
                Some((Md5, "d41d8cd98f00b204e9800998ecf8427e")),
            ),
            ("https://Bad.Example", Some((Url, "https://bad.example/"))),
            (
                "http://bad.example:80/a?b",
                Some((Url, "http://bad.example/a?b")),
            ),
            (
                "http://bad.example:8080?q",
                Some((Url, "http://bad.example:8080/?q")),
            ),
            ("Phish@Bad.Example", Some((Email, "phish@bad.example"))),
            ("EVIL.com.", Some((Domain, "evil.com"))),
            ("*.evil.com", Some((Domain, "evil.com"))),
            (".evil.com", Some((Domain, "evil.com"))),
            ("bücher.de", Some((Domain, "xn--bcher-kva.de"))),
            ("MÜNCHEN.example", Some((Domain, "xn--mnchen-3ya.example"))),
            ("пример.рф", Some((Domain, "xn--e1afmkfd.xn--p1ai"))),
            ("例え.テスト", Some((Domain, "xn--r8jz45g.xn--zckzah"))),
            ("straße.example", Some((Domain, "xn--strae-oqa.example"))),
            ("evil", Some((String, "evil"))),
            ("bad.example/p", Some((Url, "bad.example/p"))),
            ("Bad.Example:8080/p?q", Some((Url, "bad.example:8080/p?q"))),
            (
                "198.51.100.7/gate.php",
                Some((Url, "198.51.100.7/gate.php")),
            ),
            ("nohost/p", Some((String, "nohost/p"))),
            ("bad.example:x/p", Some((String, "bad.example:x/p"))),
            (
                "Mozilla/4.0 (compatible; EvilBot)",
                Some((String, "Mozilla/4.0 (compatible; EvilBot)")),
            ),
            ("   ", None),
        ];
        for (input, want) in cases {
            let got = classify(input);
            let want = want.map(|(t, v)| (t, v.to_owned()));
            assert_eq!(got, want, "classify({input:?})");
        }
    }

    #[test]
    fn refang_table() {
        for (input, want) in [
            ("hxxps://bad[.]example/p", "https://bad.example/p"),
            ("HXXP://a(.)b{.}c", "http://a.b.c"),
            ("user[@]evil[.]com", "user@evil.com"),
            ("1.2.3.4[:]80", "1.2.3.4:80"),
            ("plain.example", "plain.example"),
            ("evil[dot]com", "evil.com"),
            ("evil(dot)com", "evil.com"),
            ("hXXps[://]evil.com", "https://evil.com"),
            ("a[at]b.example", "a@b.example"),
        ] {
            assert_eq!(refang(input), want);
        }
    }

    #[test]
    fn typed_table() {
        assert_eq!(typed(TypeHint::Ip, "07:01:24"), None);
        assert_eq!(
            typed(
                TypeHint::Exactly(Md5),
                "da39a3ee5e6b4b0d3255bfef95601890afd80709"
            ),
            Some((Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709".into()))
        );
        assert_eq!(
            typed(
                TypeHint::Exactly(Sha1),
                "da39a3ee5e6b4b0d3255bfef95601890afd807091"
            ),
            None
        );
        assert_eq!(
            typed(TypeHint::Exactly(Url), "Bad.Example/p"),
            Some((Url, "bad.example/p".into()))
        );
        assert_eq!(
            typed(TypeHint::Exactly(Url), "bad.example"),
            Some((Url, "bad.example/".into()))
        );
        assert_eq!(
            typed(TypeHint::Exactly(Domain), "Evil.COM."),
            Some((Domain, "evil.com".into()))
        );
        assert_eq!(
            typed(TypeHint::Exactly(String), "needle"),
            Some((String, "needle".into()))
        );
        assert_eq!(TypeHint::from_name("nonsense"), None);
    }

    #[test]
    fn domain_shape() {
        for ok in [
            "evil.com",
            "a_b.example",
            "xn--bcher-kva.de",
            "a.xn--p1ai",
            "1.2.3.co",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "evil",
            "evil.c",
            "evil.1com",
            "-a.com",
            "a-.com",
            "a..com",
            "evil.com-",
            "",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
