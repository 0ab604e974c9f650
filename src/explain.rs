//! `iocd explain` and `iocd lookup`: why a line did or did not fire, and
//! where a value stands in the loaded feeds.
//!
//! Both ask the loaded [`Engine`] and the [`LoadReport`], never a second
//! copy of the rules: tokens come from the engine's own scanners
//! ([`crate::engine::tokens`]), hits from [`Engine::scan`], breadth from
//! [`crate::indicator::guard`], allowlisting from the allowlists as loaded.
//! What is added here is only the wording of a near miss: which boundary
//! rule of `MATCHING.md` kept an indicator that occurs in the line from
//! matching it.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::engine::classify::LineMasks;
use crate::engine::{tokens, Engine, Match, ScanState};
use crate::indicator::canon::{canon_url, classify, refang};
use crate::indicator::guard::{too_broad, GuardPolicy};
use crate::indicator::{Indicator, IndicatorType};
use crate::load::LoadReport;

/// One token the scanner cut from the line.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Token {
    /// `ipv4`, `ipv6`, `host`, `url`, `email` or `hash`.
    pub kind: &'static str,
    /// Its first byte in the line.
    pub start: usize,
    /// The byte after it.
    pub end: usize,
    /// The value looked up: canonical form of the token.
    pub canonical: String,
    /// Indicators that matched it (by description).
    pub hits: Vec<String>,
}

/// An indicator whose value occurs in the line but did not match, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NearMiss {
    /// The indicator, as `type value (feed)`.
    pub indicator: String,
    /// Where its value occurs in the line.
    pub start: usize,
    /// The byte after that occurrence.
    pub end: usize,
    /// The token the scanner cut around it (or the bytes it sits in).
    pub token: String,
    /// The kind of token the indicator matches (`host` for a domain).
    pub token_kind: &'static str,
    /// The rule of `MATCHING.md` that kept it from matching.
    pub rule: String,
}

/// Everything `explain` says of one line.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Explanation {
    /// Every token cut from the line, in line order.
    pub tokens: Vec<Token>,
    /// String and regex hits (they match bytes, not tokens).
    pub literal_hits: Vec<String>,
    /// Indicators that occur in the line without matching, and why.
    pub near_misses: Vec<NearMiss>,
    /// Entries of the feeds that were not loaded and whose value occurs in
    /// the line: `file:line: reason`.
    pub not_loaded: Vec<String>,
    /// Hits in all.
    pub hits: usize,
}

fn describe(ind: &Indicator) -> String {
    let p = &ind.provenance;
    format!("{} {} ({}:{})", ind.kind, ind.value, p.feed, p.line)
}

/// The byte class rules of `MATCHING.md`, for wording near misses.
fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn host_byte(b: u8) -> bool {
    word(b) || b == b'-' || b == b'.'
}
fn email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

/// Explains `line` against `engine`; `report` (when the feeds were loaded
/// here) adds the entries left out that occur in the line.
pub fn explain(engine: &Engine, report: Option<&LoadReport>, line: &[u8]) -> Explanation {
    let mut st = ScanState::new();
    let hits: Vec<Match> = engine.scan(line, &mut st).to_vec();
    let mut ex = Explanation {
        hits: hits.len(),
        ..Explanation::default()
    };
    let hits_at = |kinds: &[IndicatorType], s: usize, e: usize| -> Vec<String> {
        hits.iter()
            .filter(|m| m.start as usize == s && m.end as usize == e)
            .map(|m| engine.indicator(m.indicator))
            .filter(|i| kinds.contains(&i.kind))
            .map(describe)
            .collect()
    };
    let text = |s: usize, e: usize| String::from_utf8_lossy(&line[s..e]).into_owned();
    let mut push = |kind, s, e, canonical: String, kinds: &[IndicatorType]| {
        ex.tokens.push(Token {
            kind,
            start: s,
            end: e,
            canonical,
            hits: hits_at(kinds, s, e),
        })
    };
    use IndicatorType as T;
    let mut masks = LineMasks::new();
    masks.classify(line);
    tokens::dotted_runs(&masks, |s, e| {
        if let Some((ts, te)) = tokens::host_token(&masks, s, e) {
            push(
                "host",
                ts,
                te,
                text(ts, te).to_ascii_lowercase(),
                &[T::Domain],
            );
        }
    });
    tokens::ipv4_tokens(
        line,
        &masks,
        |_| true,
        |addr, ts, te| {
            push("ipv4", ts, te, Ipv4Addr::from(addr).to_string(), &[T::Ipv4]);
        },
    );
    tokens::ipv6_tokens(line, &masks, |addr, ts, te| {
        push("ipv6", ts, te, addr.to_string(), &[T::Ipv6])
    });
    tokens::url_tokens(line, &masks, |ts, te| {
        let canonical = canon_url(&text(ts, te)).unwrap_or_else(|| text(ts, te));
        push("url", ts, te, canonical, &[T::Url]);
    });
    tokens::email_tokens(line, &masks, |ts, _, te| {
        let t = text(ts, te).to_ascii_lowercase();
        let t = t.trim_end_matches(['.', '-']).to_owned();
        let te = ts + t.len();
        push("email", ts, te, t, &[T::Email]);
    });
    tokens::hash_tokens(&masks, |ts, te| {
        let kinds = [T::Md5, T::Sha1, T::Sha256, T::Sha512];
        push("hash", ts, te, text(ts, te).to_ascii_lowercase(), &kinds);
    });
    ex.tokens.sort_by_key(|t| (t.start, t.end));
    ex.literal_hits = hits
        .iter()
        .map(|m| engine.indicator(m.indicator))
        .filter(|i| matches!(i.kind, T::String | T::Regex))
        .map(describe)
        .collect();
    ex.near_misses = near_misses(engine, line, &hits, &ex.tokens);
    if let Some(report) = report {
        ex.not_loaded = not_loaded(report, line);
    }
    ex
}

/// Indicators whose value occurs in the line (as their kind compares:
/// case-blind but for strings) and which did not match there.
fn near_misses(engine: &Engine, line: &[u8], hits: &[Match], toks: &[Token]) -> Vec<NearMiss> {
    let lower = line.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (id, ind) in engine.indicators().iter().enumerate() {
        if ind.kind == IndicatorType::Regex
            || ind.is_cidr()
            || hits.iter().any(|m| m.indicator as usize == id)
            || !seen.insert((ind.kind, ind.value.clone()))
        {
            continue;
        }
        let needle = ind.value.to_ascii_lowercase();
        if needle.is_empty() {
            continue;
        }
        for s in memchr::memmem::find_iter(&lower, needle.as_bytes()) {
            let e = s + needle.len();
            if let Some((token, rule)) = rule_for(ind, line, s, e, toks) {
                out.push(NearMiss {
                    indicator: describe(ind),
                    start: s,
                    end: e,
                    token,
                    token_kind: token_kind(ind.kind),
                    rule,
                });
                break; // one reason per indicator is enough
            }
        }
    }
    out
}

/// The kind of token an indicator of `kind` is compared with.
fn token_kind(kind: IndicatorType) -> &'static str {
    use IndicatorType as T;
    match kind {
        T::Ipv4 => "ipv4",
        T::Ipv6 => "ipv6",
        T::Domain => "host",
        T::Url => "url",
        T::Email => "email",
        T::Md5 | T::Sha1 | T::Sha256 | T::Sha512 => "hash",
        T::String | T::Regex => "literal",
    }
}

/// The token covering `s..e` of one `kind`, or the bytes themselves.
fn covering(toks: &[Token], kind: &str, s: usize, e: usize, line: &[u8]) -> String {
    toks.iter()
        .find(|t| t.kind == kind && t.start <= s && e <= t.end)
        .map(|t| t.canonical.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&line[s..e]).into_owned())
}

/// The bytes around `s..e` that a scanner of `class` bytes takes as one run.
fn run(line: &[u8], s: usize, e: usize, class: fn(u8) -> bool) -> String {
    let mut a = s;
    while a > 0 && class(line[a - 1]) {
        a -= 1;
    }
    let mut b = e;
    while b < line.len() && class(line[b]) {
        b += 1;
    }
    String::from_utf8_lossy(&line[a..b]).into_owned()
}

fn rule_for(
    ind: &Indicator,
    line: &[u8],
    s: usize,
    e: usize,
    toks: &[Token],
) -> Option<(String, String)> {
    use IndicatorType as T;
    let before = s.checked_sub(1).map(|i| line[i]);
    let after = line.get(e).copied();
    let after2 = line.get(e + 1).copied();
    let v = &ind.value;
    Some(match ind.kind {
        T::Ipv4 => {
            let token = run(line, s, e, |b| word(b) || b == b'.');
            let rule = if before.is_some_and(|b| b.is_ascii_digit()) {
                "an IPv4 token is not preceded by a digit: the number runs on to the left"
            } else if before.is_some_and(|b| word(b) || b == b'.') {
                "an IPv4 token is not preceded by a letter, digit, `_` or `.`"
            } else if after.is_some_and(word) {
                "an IPv4 token is not followed by a letter, digit or `_`"
            } else if after == Some(b'.') && after2.is_some_and(word) {
                "an IPv4 token is not followed by `.` and a letter, digit or `_` (a version string, a reverse-DNS name, a longer dotted number)"
            } else {
                return None;
            };
            (token, format!("{v} is loaded but {rule}"))
        }
        T::Ipv6 => {
            let token = run(line, s, e, |b| {
                b.is_ascii_hexdigit() || b == b':' || b == b'.'
            });
            (token.clone(), format!("{v} is loaded but an IPv6 token is the whole run of hex digits, `:` and `.`; here that run is {token}, another address (or none)"))
        }
        T::Domain => {
            let token = run(line, s, e, host_byte);
            let token = token.trim_matches(['.', '-']).to_ascii_lowercase();
            let rule = if before.is_some_and(|b| word(b) || b == b'-') {
                "a host token must start at a label boundary: it is neither it nor one of its subdomains"
            } else if after == Some(b'.') && after2.is_some_and(word) {
                "a host token must end at the label boundary"
            } else if after.is_some_and(|b| word(b) || b == b'-') {
                "a host token is the whole run of letters, digits, `-`, `_` and `.`, and must end at the label boundary"
            } else {
                return None;
            };
            (token, format!("{v} is loaded but {rule}"))
        }
        T::Email => {
            let token = run(line, s, e, |b| email_local(b) || b == b'@');
            let rule = if before.is_some_and(email_local) {
                "an email token's local part is the whole run of letters, digits and `._%+-`"
            } else if after.is_some_and(host_byte) {
                "an email token's host is a whole host token, which must end at the label boundary"
            } else {
                return None;
            };
            (token, format!("{v} is loaded but {rule}"))
        }
        T::Md5 | T::Sha1 | T::Sha256 | T::Sha512 => {
            let token = run(line, s, e, |b| b.is_ascii_alphanumeric());
            if token.len() == v.len() {
                return None;
            }
            let rule = format!("a hash token is the whole run of letters and digits, all hex and 32, 40, 64 or 128 long; this run is {} long", token.len());
            (token, format!("{v} is loaded but {rule}"))
        }
        T::Url => {
            let token = covering(toks, "url", s, e, line);
            let exact = line.get(s..e) == Some(v.as_bytes());
            let rule = if !exact {
                "a URL's path and query are compared case-sensitively".to_owned()
            } else if after == Some(b'?') {
                "a URL matches only when equal after canonicalisation: the query differs".to_owned()
            } else if after.is_some_and(|b| !b.is_ascii_whitespace()) {
                "a URL matches only when equal after canonicalisation: the path is longer"
                    .to_owned()
            } else {
                return None;
            };
            (token, format!("{v} is loaded but {rule}"))
        }
        T::String => {
            if line.get(s..e) == Some(v.as_bytes()) {
                return None; // an exact occurrence is a hit
            }
            let token = String::from_utf8_lossy(&line[s..e]).into_owned();
            (
                token,
                format!("{v} is loaded but strings match case-sensitively"),
            )
        }
        T::Regex => return None,
    })
}

/// Skipped feed entries whose value occurs in the line: each skip reason
/// names the entry's value (`ipv4-addr 10.0.0.1: ...`) or its words.
fn not_loaded(report: &LoadReport, line: &[u8]) -> Vec<String> {
    let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
    let mut out = Vec::new();
    for f in &report.feeds {
        for file in &f.files {
            for sk in &file.skipped.examples {
                let mentioned = sk.reason.split([' ', '\t', ':', '"']).any(|w| {
                    let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                    w.len() >= 2 && contains_token(&lower, &w.to_ascii_lowercase())
                });
                if mentioned {
                    out.push(format!("{}:{}: {}", file.file, sk.line, sk.reason));
                }
            }
        }
    }
    out
}

/// `w` occurs in `hay` between non-word bytes.
fn contains_token(hay: &str, w: &str) -> bool {
    hay.match_indices(w).any(|(i, _)| {
        let b = hay.as_bytes();
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + w.len()).copied();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

impl Explanation {
    /// The human form: one line per token, then near misses.
    pub fn write_text(&self, out: &mut String) {
        for t in &self.tokens {
            let _ = write!(out, "{} [{}..{}] {}: ", t.kind, t.start, t.end, t.canonical);
            if t.hits.is_empty() {
                let near = self
                    .near_misses
                    .iter()
                    .find(|n| n.token_kind == t.kind && n.start >= t.start && n.end <= t.end);
                match near {
                    Some(n) => {
                        let _ = writeln!(out, "no indicator; {}", n.rule);
                    }
                    None => {
                        let _ = writeln!(out, "no indicator; {}", no_hit(t.kind));
                    }
                }
            } else {
                let _ = writeln!(out, "hit {}", t.hits.join("; "));
            }
        }
        for l in &self.literal_hits {
            let _ = writeln!(out, "literal: hit {l}");
        }
        for n in &self.near_misses {
            let _ = writeln!(
                out,
                "near miss: {} at [{}..{}] in {:?}: {}",
                n.indicator, n.start, n.end, n.token, n.rule
            );
        }
        for n in &self.not_loaded {
            let _ = writeln!(out, "not loaded: {n}");
        }
        let _ = writeln!(
            out,
            "{} hit{}",
            self.hits,
            if self.hits == 1 { "" } else { "s" }
        );
    }
}

/// Why a token without a near miss has no hit: what was looked for.
fn no_hit(kind: &str) -> &'static str {
    match kind {
        "ipv4" => "no address indicator equals it and no network indicator contains it",
        "ipv6" => "no IPv6 address indicator equals it and no network indicator contains it",
        "host" => "no domain indicator equals it or one of its parent domains",
        "url" => "no URL indicator equals it after canonicalisation, with or without its scheme",
        "email" => "no email indicator equals it",
        "hash" => "no hash indicator of its length equals it",
        _ => "nothing loaded matches it",
    }
}

/// What `lookup` says of one value.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Lookup {
    /// The value as typed and canonicalised (`type value`), or why it
    /// has no indicator shape.
    pub canonical: Option<String>,
    /// Indicators with exactly this value, loaded and active.
    pub active: Vec<String>,
    /// Other indicators a line holding the value would hit (a network
    /// around an address, a parent domain, a string inside it).
    pub also_matched_by: Vec<String>,
    /// Why the value is not active, when it is not.
    pub inactive: Vec<String>,
}

/// Looks `value` up in the loaded engine and report. `allowed`: the
/// allowlist entry that removes it, when one does (`name: entry`).
pub fn lookup(
    engine: &Engine,
    report: &LoadReport,
    value: &str,
    allowed: impl Fn(&Indicator) -> Option<String>,
) -> Lookup {
    let mut l = Lookup::default();
    let Some((kind, canonical)) = classify(&refang(value)) else {
        l.inactive.push("an empty value".into());
        return l;
    };
    l.canonical = Some(format!("{kind} {canonical}"));
    let mut active_ids = Vec::new();
    for (id, ind) in engine.indicators().iter().enumerate() {
        if ind.kind == kind && *ind.value == *canonical {
            active_ids.push(id as u32);
            l.active.push(with_meta(ind));
        }
    }
    let mut st = ScanState::new();
    for m in engine.scan(canonical.as_bytes(), &mut st) {
        if !active_ids.contains(&m.indicator) {
            l.also_matched_by
                .push(with_meta(engine.indicator(m.indicator)));
        }
    }
    if l.active.is_empty() {
        let probe = Indicator {
            kind,
            value: canonical.clone().into(),
            provenance: crate::feeds::FeedContext::named("lookup")
                .indicator((kind, canonical.clone()), 0, vec![])
                .provenance,
        };
        if kind == IndicatorType::String {
            l.inactive.push("it has no indicator shape: plain lists load strings only when typed (`string<TAB>value`)".into());
        }
        if let Some(why) = too_broad(kind, &canonical, GuardPolicy::default()) {
            l.inactive.push(format!("guarded as too broad: {why}"));
        }
        if let Some(entry) = allowed(&probe) {
            l.inactive.push(format!("allowlisted by {entry}"));
        }
        for f in &report.feeds {
            for file in &f.files {
                for sk in &file.skipped.examples {
                    if sk
                        .reason
                        .to_ascii_lowercase()
                        .contains(&canonical.to_ascii_lowercase())
                        || sk.reason.contains(value.trim())
                    {
                        l.inactive.push(format!(
                            "skipped at {}:{}: {}",
                            file.file, sk.line, sk.reason
                        ));
                    }
                }
            }
        }
        if l.inactive.is_empty() {
            l.inactive.push("no feed holds this exact value".into());
        }
    }
    l
}

/// `type value (feed:line) key=value ...`: an indicator and what its feed
/// said of it (STIX id, MISP event, comment).
fn with_meta(ind: &Indicator) -> String {
    let mut s = describe(ind);
    for (k, v) in &ind.provenance.meta {
        let _ = write!(s, " {k}={v}");
    }
    s
}

impl Lookup {
    /// The human form.
    pub fn write_text(&self, out: &mut String) {
        if let Some(c) = &self.canonical {
            let _ = writeln!(out, "canonical: {c}");
        }
        for a in &self.active {
            let _ = writeln!(out, "active: {a}");
        }
        for a in &self.also_matched_by {
            let _ = writeln!(out, "also matched by: {a}");
        }
        for i in &self.inactive {
            let _ = writeln!(out, "not active: {i}");
        }
    }
}
