//! STIX 2.1 patterning (spec part 9): a parser for the comparison and
//! observation expressions threat feeds use, and their translation into
//! iocd indicators.
//!
//! A pattern is turned into the set of observables any one of which proves
//! it: `OR` (within or between observations) is a union; `AND` inside one
//! observation is accepted where the other comparisons only state the
//! object's type (`dst_ref.type = 'ipv4-addr'`, common in MISP-made STIX) or
//! list several hashes of one file (each hash is then an indicator of that
//! file). What a single log line cannot express (`AND` across observations,
//! `FOLLOWEDBY`, `WITHIN`/`REPEATS`/`START STOP` qualifiers, `!=`, `<`, `>`,
//! `NOT`) is an error naming why, never a panic.

use std::fmt;

use crate::indicator::canon::{classify, typed, Canonical, TypeHint};
use crate::indicator::IndicatorType;

/// Why a pattern gives no indicators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError(msg.into()))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Colon,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`
    Op(String),
    /// Keywords and path parts: AND, OR, IN, MATCHES, ipv4-addr, value, ...
    Word(String),
    Str(String),
    /// Numbers, booleans, t'...', h'...', b'...' literals (never useful here).
    Other(String),
    Dot,
}

fn lex(p: &str) -> Result<Vec<Tok>, PatternError> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'[' => (out.push(Tok::LBracket), i += 1).1,
            b']' => (out.push(Tok::RBracket), i += 1).1,
            b'(' => (out.push(Tok::LParen), i += 1).1,
            b')' => (out.push(Tok::RParen), i += 1).1,
            b',' => (out.push(Tok::Comma), i += 1).1,
            b':' => (out.push(Tok::Colon), i += 1).1,
            b'.' => (out.push(Tok::Dot), i += 1).1,
            b'=' => (out.push(Tok::Op("=".into())), i += 1).1,
            b'!' | b'<' | b'>' => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = if two { &p[i..i + 2] } else { &p[i..i + 1] };
                if op == "!" {
                    return err("a lone `!` is not an operator");
                }
                out.push(Tok::Op(op.into()));
                i += if two { 2 } else { 1 };
            }
            b'\'' => {
                let (s, next) = string(p, i)?;
                out.push(Tok::Str(s));
                i = next;
            }
            _ if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'*' => {
                let s = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'*'))
                {
                    i += 1;
                }
                // Typed literals: t'...', h'...', b'...'
                if i - s == 1 && matches!(c, b't' | b'h' | b'b') && b.get(i) == Some(&b'\'') {
                    let (v, next) = string(p, i)?;
                    out.push(Tok::Other(format!("{}'{v}'", c as char)));
                    i = next;
                } else if b[s].is_ascii_digit() || (b[s] == b'-' && i - s > 1) {
                    out.push(Tok::Other(p[s..i].into()));
                } else {
                    out.push(Tok::Word(p[s..i].into()));
                }
            }
            _ => return err(format!("unexpected {:?} at byte {i}", c as char)),
        }
    }
    Ok(out)
}

/// A quoted string starting at `p[at] == '\''`; `\'` and `\\` escapes.
fn string(p: &str, at: usize) -> Result<(String, usize), PatternError> {
    let mut s = String::new();
    let mut chars = p[at + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\'' | '\\'))) => s.push(e),
                _ => return err("a string escapes something other than ' or \\"),
            },
            '\'' => return Ok((s, at + 1 + k + 1)),
            c => s.push(c),
        }
    }
    err("unterminated string")
}

/// One comparison: `path op value(s)`.
#[derive(Clone, Debug, PartialEq)]
struct Comparison {
    object: String,
    path: Vec<String>,
    op: String,
    values: Vec<String>,
}

/// Comparison-level boolean structure inside one observation.
#[derive(Clone, Debug, PartialEq)]
enum Cmp {
    Leaf(Comparison),
    And(Vec<Cmp>),
    Or(Vec<Cmp>),
}

/// Observation-level structure.
#[derive(Clone, Debug, PartialEq)]
enum Obs {
    One(Cmp),
    Or(Vec<Obs>),
    /// AND / FOLLOWEDBY between observations, or a qualifier: not one line.
    Unsupported(String),
}

/// How deep parentheses and brackets may nest. Real patterns nest a few
/// levels; the parser recurses per level, so a bound keeps a hostile
/// pattern (thousands of `(`) from overflowing the stack.
pub const MAX_NESTING: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    /// Runs `inner` one nesting level down, refusing past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, PatternError>,
    ) -> Result<T, PatternError> {
        if self.depth >= MAX_NESTING {
            return err(format!("nested more than {MAX_NESTING} levels deep"));
        }
        self.depth += 1;
        let r = inner(self);
        self.depth -= 1;
        r
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn expect(&mut self, t: Tok) -> Result<(), PatternError> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => err(format!("expected {t:?}, found {other:?}")),
        }
    }

    /// pattern := obs_and (OR obs_and)*
    fn pattern(&mut self) -> Result<Obs, PatternError> {
        let mut alts = vec![self.obs_and()?];
        while self.word("OR") {
            self.pos += 1;
            alts.push(self.obs_and()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Obs::Or(alts)
        })
    }

    /// obs_and := obs_unit ((AND | FOLLOWEDBY) obs_unit)*
    fn obs_and(&mut self) -> Result<Obs, PatternError> {
        let first = self.obs_unit()?;
        let mut joined = None;
        while self.word("AND") || self.word("FOLLOWEDBY") {
            if let Some(Tok::Word(w)) = self.next() {
                joined = Some(w.to_ascii_uppercase());
            }
            self.obs_unit()?;
        }
        Ok(match joined {
            Some(w) => {
                Obs::Unsupported(format!("{w} between observations needs more than one line"))
            }
            None => first,
        })
    }

    /// obs_unit := ('[' cmp_or ']' | '(' pattern ')') qualifier*
    fn obs_unit(&mut self) -> Result<Obs, PatternError> {
        let obs = match self.next() {
            Some(Tok::LBracket) => {
                let c = self.nested(Self::cmp_or)?;
                self.expect(Tok::RBracket)?;
                Obs::One(c)
            }
            Some(Tok::LParen) => {
                let p = self.nested(Self::pattern)?;
                self.expect(Tok::RParen)?;
                p
            }
            other => return err(format!("expected `[` or `(`, found {other:?}")),
        };
        let mut qualifier = None;
        while let Some(Tok::Word(w)) = self.peek().cloned() {
            let w = w.to_ascii_uppercase();
            match w.as_str() {
                "WITHIN" | "REPEATS" => {
                    self.pos += 1;
                    self.next(); // the number
                    self.next(); // SECONDS | TIMES
                }
                "START" => {
                    self.pos += 1;
                    self.next();
                    if self.word("STOP") {
                        self.pos += 1;
                        self.next();
                    }
                }
                _ => break,
            }
            qualifier = Some(w);
        }
        Ok(match qualifier {
            Some(q) => Obs::Unsupported(format!("the {q} qualifier needs more than one line")),
            None => obs,
        })
    }

    fn cmp_or(&mut self) -> Result<Cmp, PatternError> {
        let mut alts = vec![self.cmp_and()?];
        while self.word("OR") {
            self.pos += 1;
            alts.push(self.cmp_and()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Cmp::Or(alts)
        })
    }

    fn cmp_and(&mut self) -> Result<Cmp, PatternError> {
        let mut all = vec![self.cmp_unit()?];
        while self.word("AND") {
            self.pos += 1;
            all.push(self.cmp_unit()?);
        }
        Ok(if all.len() == 1 {
            all.pop().expect("one")
        } else {
            Cmp::And(all)
        })
    }

    fn cmp_unit(&mut self) -> Result<Cmp, PatternError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let c = self.nested(Self::cmp_or)?;
            self.expect(Tok::RParen)?;
            return Ok(c);
        }
        let object = match self.next() {
            Some(Tok::Word(w)) => w,
            other => return err(format!("expected an object type, found {other:?}")),
        };
        self.expect(Tok::Colon)?;
        let mut path = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Word(w)) | Some(Tok::Str(w)) => path.push(w),
                Some(Tok::LBracket) => {
                    // A list index such as [*] or [0]: part of the path.
                    let idx = match self.next() {
                        Some(Tok::Word(w)) | Some(Tok::Other(w)) => w,
                        other => return err(format!("bad list index {other:?}")),
                    };
                    self.expect(Tok::RBracket)?;
                    path.push(format!("[{idx}]"));
                }
                other => return err(format!("expected a property name, found {other:?}")),
            }
            if self.peek() == Some(&Tok::Dot) {
                self.pos += 1;
            } else if self.peek() == Some(&Tok::LBracket)
                && matches!(self.toks.get(self.pos + 1), Some(Tok::Word(w)) if w == "*")
            {
                continue;
            } else {
                break;
            }
        }
        let negated = self.word("NOT");
        if negated {
            self.pos += 1;
        }
        let op = match self.next() {
            Some(Tok::Op(o)) => o,
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            other => return err(format!("expected an operator, found {other:?}")),
        };
        let op = if negated { format!("NOT {op}") } else { op };
        let values = if op.ends_with("IN") {
            self.expect(Tok::LParen)?;
            let mut vs = Vec::new();
            loop {
                match self.next() {
                    Some(Tok::Str(s)) => vs.push(s),
                    Some(Tok::Other(o)) => vs.push(o),
                    other => return err(format!("expected a value in IN (...), found {other:?}")),
                }
                match self.next() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RParen) => break,
                    other => return err(format!("expected `,` or `)`, found {other:?}")),
                }
            }
            vs
        } else {
            match self.next() {
                Some(Tok::Str(s)) => vec![s],
                Some(Tok::Other(o)) | Some(Tok::Word(o)) => vec![o],
                other => return err(format!("expected a value, found {other:?}")),
            }
        };
        Ok(Cmp::Leaf(Comparison {
            object: object.to_ascii_lowercase(),
            path,
            op,
            values,
        }))
    }
}

/// Parses a STIX pattern into the observables that prove it.
///
/// # Errors
/// A syntax error, or a construct no single log line can express; the
/// message says which.
pub fn indicators(pattern: &str) -> Result<Vec<Canonical>, PatternError> {
    indicators_with_context(pattern).map(|(found, _)| found)
}

/// [`indicators`], with the descriptive values an `AND` carried beside the
/// identifying one (`dst_port: 443`, `name: a.exe`), as context for hits.
///
/// # Errors
/// As [`indicators`].
pub fn indicators_with_context(pattern: &str) -> Result<(Vec<Canonical>, Context), PatternError> {
    let mut p = Parser {
        toks: lex(pattern)?,
        pos: 0,
        depth: 0,
    };
    let obs = p.pattern()?;
    if p.pos < p.toks.len() {
        return err(format!("unexpected {:?} after the pattern", p.toks[p.pos]));
    }
    let mut out = Vec::new();
    let mut context = Vec::new();
    observation(&obs, &mut out, &mut context)?;
    out.dedup();
    Ok((out, context))
}

/// Descriptive values of an `AND`, as (property, value) pairs.
pub type Context = Vec<(String, String)>;

fn observation(o: &Obs, out: &mut Vec<Canonical>, ctx: &mut Context) -> Result<(), PatternError> {
    match o {
        Obs::One(c) => comparisons(c, out, ctx),
        Obs::Or(alts) => alts.iter().try_for_each(|a| observation(a, out, ctx)),
        Obs::Unsupported(why) => err(why.clone()),
    }
}

/// What an identifying value identifies: an `AND` may hold several of one
/// kind only when they are one file's hashes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Identifies {
    Address,
    Domain,
    Url,
    Email,
    FileHash,
}

/// The role of one comparison inside an `AND`.
enum Role<'a> {
    /// A value that identifies the observable on its own.
    Identifying(Identifies, &'a Comparison),
    /// A value that describes it (a port, a file name): context in hits.
    Descriptive(String, String),
}

fn role(c: &Comparison) -> Result<Role<'_>, PatternError> {
    let path = c.path.join(".");
    let name = format!("{}:{path}", c.object);
    if let Some(kind) = kind_of(&c.object, &c.path) {
        let id = match kind {
            PathKind::AnyAddress | PathKind::Typed(TypeHint::Ip) => Some(Identifies::Address),
            PathKind::Typed(TypeHint::Exactly(IndicatorType::Domain)) => Some(Identifies::Domain),
            PathKind::Typed(TypeHint::Exactly(IndicatorType::Url)) => Some(Identifies::Url),
            PathKind::Typed(TypeHint::Exactly(IndicatorType::Email)) => Some(Identifies::Email),
            PathKind::Typed(TypeHint::Hash) => Some(Identifies::FileHash),
            _ => None,
        };
        if let Some(id) = id {
            return Ok(Role::Identifying(id, c));
        }
    }
    let descriptive = matches!(
        (
            c.object.as_str(),
            c.path
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
        ),
        ("network-traffic", ["dst_port" | "src_port" | "protocols"]) | ("file", ["name" | "size"])
    ) || c.path.iter().any(|p| p.starts_with("x_"));
    if descriptive && c.op == "=" && c.values.len() == 1 {
        let key = c.path.last().cloned().unwrap_or_default();
        return Ok(Role::Descriptive(key, c.values[0].clone()));
    }
    err(format!(
        "{name} in an AND is neither identifying nor descriptive"
    ))
}

fn comparisons(c: &Cmp, out: &mut Vec<Canonical>, ctx: &mut Context) -> Result<(), PatternError> {
    match c {
        Cmp::Leaf(cmp) => leaf(cmp, out),
        Cmp::Or(alts) => alts.iter().try_for_each(|a| comparisons(a, out, ctx)),
        Cmp::And(all) => {
            // Statements of an object's type add nothing a line can show.
            let meaningful: Vec<&Cmp> = all.iter().filter(|c| !is_type_statement(c)).collect();
            if meaningful.is_empty() {
                return err("AND of type statements only");
            }
            if meaningful.len() == 1 {
                return comparisons(meaningful[0], out, ctx);
            }
            let mut identifying = Vec::new();
            let mut described = Vec::new();
            for m in meaningful {
                let Cmp::Leaf(l) = m else {
                    return err("AND of nested expressions needs more than a value in one line");
                };
                match role(l)? {
                    Role::Identifying(kind, l) => identifying.push((kind, l)),
                    Role::Descriptive(k, v) => described.push((k, v)),
                }
            }
            let kinds: Vec<Identifies> = identifying.iter().map(|(k, _)| *k).collect();
            match kinds.as_slice() {
                [] => {
                    return err(
                        "AND with no identifying value (an address, a domain, a URL, an email, a hash)",
                    )
                }
                [_] => {}
                // Several hashes of one file: each identifies it.
                many if many.iter().all(|k| *k == Identifies::FileHash) => {}
                _ => {
                    return err(format!(
                        "AND of several identifying values ({kinds:?}) needs them all in one line, not one of them"
                    ))
                }
            }
            identifying.iter().try_for_each(|(_, l)| leaf(l, out))?;
            ctx.extend(described);
            Ok(())
        }
    }
}

fn is_type_statement(c: &Cmp) -> bool {
    matches!(c, Cmp::Leaf(l) if l.path.last().is_some_and(|p| p == "type") && l.op == "=")
}

/// What a STIX object path holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// A value of this type (or family).
    Typed(TypeHint),
    /// A `network-traffic` reference: an address, a network or a host name.
    AnyAddress,
}

/// What kind of value a path holds.
fn kind_of(object: &str, path: &[String]) -> Option<PathKind> {
    use IndicatorType as T;
    use PathKind::{AnyAddress, Typed};
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let string = Typed(TypeHint::Exactly(T::String));
    Some(match (object, p.as_slice()) {
        ("ipv4-addr" | "ipv6-addr", ["value"]) => Typed(TypeHint::Ip),
        ("domain-name", ["value"]) => Typed(TypeHint::Exactly(T::Domain)),
        ("url", ["value"]) => Typed(TypeHint::Exactly(T::Url)),
        ("email-addr", ["value"]) => Typed(TypeHint::Exactly(T::Email)),
        ("file" | "x509-certificate" | "artifact", ["hashes", h]) if content_hash(h) => {
            Typed(TypeHint::Hash)
        }
        ("file", ["name"])
        | ("mutex", ["name"])
        | ("windows-registry-key", ["key"])
        | ("process", ["name"]) => string,
        ("network-traffic", ["dst_ref" | "src_ref", "value"]) => AnyAddress,
        ("email-message", ["from_ref" | "sender_ref", "value"]) => {
            Typed(TypeHint::Exactly(T::Email))
        }
        ("network-traffic", ["extensions", "http-request-ext", "request_header", h])
            if h.eq_ignore_ascii_case("user-agent") =>
        {
            string
        }
        ("user-agent", ["value"]) | ("software", ["name"]) => string,
        _ => return None,
    })
}

/// A content hash iocd matches (MD5, SHA-1, SHA-256, SHA-512 in any
/// spelling). Similarity hashes (IMPHASH, SSDEEP, TLSH, VHASH) are not: an
/// IMPHASH would pass for an MD5.
fn content_hash(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(k.as_str(), "MD5" | "SHA1" | "SHA256" | "SHA512")
}

fn leaf(c: &Comparison, out: &mut Vec<Canonical>) -> Result<(), PatternError> {
    let path = format!("{}:{}", c.object, c.path.join("."));
    let Some(kind) = kind_of(&c.object, &c.path) else {
        return err(format!("{path} is not an observable iocd matches"));
    };
    let canon = |v: &str| -> Option<Canonical> {
        match kind {
            PathKind::AnyAddress => classify(v).filter(|(t, _)| *t != IndicatorType::String),
            PathKind::Typed(TypeHint::Exactly(IndicatorType::Domain)) => {
                crate::indicator::canon::domain(v).map(|d| (IndicatorType::Domain, d))
            }
            PathKind::Typed(hint) => typed(hint, v),
        }
    };
    let one = |v: &str, out: &mut Vec<Canonical>| -> Result<(), PatternError> {
        match canon(v) {
            Some(x) => {
                out.push(x);
                Ok(())
            }
            None => err(format!("{v:?} is not a valid {path}")),
        }
    };
    match c.op.as_str() {
        "=" => one(&c.values[0], out),
        "IN" => c.values.iter().try_for_each(|v| one(v, out)),
        "ISSUBSET" if matches!(kind, PathKind::Typed(TypeHint::Ip) | PathKind::AnyAddress) => {
            match classify(&c.values[0]) {
                Some(x @ (IndicatorType::Ipv4 | IndicatorType::Ipv6, _)) => {
                    out.push(x);
                    Ok(())
                }
                _ => err(format!("{:?} is not a network for ISSUBSET", c.values[0])),
            }
        }
        "MATCHES" => {
            let re = &c.values[0];
            crate::indicator::guard::check_regex_syntax(re)
                .map_err(|e| PatternError(format!("MATCHES {re:?} does not compile: {e}")))?;
            out.push((IndicatorType::Regex, re.clone()));
            Ok(())
        }
        "LIKE" => {
            let re = like_to_regex(&c.values[0]);
            out.push((IndicatorType::Regex, re));
            Ok(())
        }
        op => err(format!(
            "the {op} operator cannot be matched against a line"
        )),
    }
}

/// SQL LIKE (`%` any run, `_` one character) as a regex that must match a
/// whole value in the line: the match may not be continued by characters a
/// token could hold on either side.
fn like_to_regex(like: &str) -> String {
    let mut body = String::new();
    for ch in like.chars() {
        match ch {
            '%' => body.push_str("[^\\s\"']*"),
            '_' => body.push_str("[^\\s\"']"),
            c => body.push_str(&regex::escape(&c.to_string())),
        }
    }
    format!("(?:^|[^\\w.-]){body}(?:$|[^\\w.-])")
}

#[cfg(test)]
mod tests {
    use super::*;
    use IndicatorType::*;

    fn ok(p: &str) -> Vec<(IndicatorType, std::string::String)> {
        indicators(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn supported_patterns() {
        let cases: &[(&str, &[(IndicatorType, &str)])] = &[
            ("[domain-name:value = 'hndjsy.com']", &[(Domain, "hndjsy.com")]),
            ("[ipv4-addr:value = '198.51.100.7']", &[(Ipv4, "198.51.100.7")]),
            ("[ipv4-addr:value ISSUBSET '198.51.100.0/24']", &[(Ipv4, "198.51.100.0/24")]),
            ("[ipv6-addr:value = '2001:DB8::1']", &[(Ipv6, "2001:db8::1")]),
            ("[url:value = 'http://Bad.Example/x']", &[(Url, "http://bad.example/x")]),
            ("[email-addr:value = 'CEO@phish.example']", &[(Email, "ceo@phish.example")]),
            ("[file:hashes.'SHA-256' = 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855']", &[(Sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]),
            ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", &[(Md5, "d41d8cd98f00b204e9800998ecf8427e"), (Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709")]),
            ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.9']", &[(Ipv4, "203.0.113.9")]),
            ("[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'c2.example']", &[(Domain, "c2.example")]),
            ("[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']", &[(Domain, "a.example"), (Domain, "b.example")]),
            ("[ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2']", &[(Ipv4, "192.0.2.1"), (Ipv4, "192.0.2.2")]),
            ("[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]", &[(Ipv4, "192.0.2.1"), (Ipv4, "192.0.2.2")]),
            ("[file:name = 'evil\\'s.exe']", &[(String, "evil's.exe")]),
            ("[mutex:name = 'Global\\\\EvilMutex']", &[(String, "Global\\EvilMutex")]),
            ("[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\\\Software\\\\Evil']", &[(String, "HKEY_LOCAL_MACHINE\\Software\\Evil")]),
            ("[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'EvilBot/1.0']", &[(String, "EvilBot/1.0")]),
            ("[email-message:from_ref.value = 'bad@phish.example']", &[(Email, "bad@phish.example")]),
            ("[x509-certificate:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", &[(Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709")]),
            ("[url:value MATCHES '^http://[a-z]+\\\\.example/']", &[(Regex, "^http://[a-z]+\\.example/")]),
            ("([domain-name:value = 'a.example'])", &[(Domain, "a.example")]),
            ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_port = '443']", &[(Ipv4, "198.51.100.7")]),
            ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:hashes.SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' AND file:name = 'a.exe' AND file:size = '0' AND file:x_misp_comment = 'x']", &[(Md5, "d41d8cd98f00b204e9800998ecf8427e"), (Sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]),
        ];
        for (p, want) in cases {
            let want: Vec<(IndicatorType, std::string::String)> =
                want.iter().map(|(t, v)| (*t, (*v).to_owned())).collect();
            assert_eq!(ok(p), want, "{p}");
        }
    }

    #[test]
    fn like_is_an_anchored_regex() {
        let got = ok("[domain-name:value LIKE '%.evil.example']");
        assert_eq!(got[0].0, Regex);
        let re = regex::Regex::new(&got[0].1).unwrap();
        assert!(re.is_match("q www.evil.example A"));
        assert!(!re.is_match("q www.evil.example.org A"));
    }

    #[test]
    fn nesting_past_the_bound_is_refused_not_a_crash() {
        // The finding: ~1,800 levels of `(` overflowed the stack.
        for n in [MAX_NESTING - 1, MAX_NESTING + 1, 1_800, 100_000] {
            let p = format!(
                "{}[domain-name:value = 'deep.example']{}",
                "(".repeat(n),
                ")".repeat(n)
            );
            let r = indicators(&p);
            assert_eq!(r.is_ok(), n < MAX_NESTING, "{n}");
            let c = format!(
                "[{}domain-name:value = 'deep.example'{}]",
                "(".repeat(n),
                ")".repeat(n)
            );
            assert_eq!(indicators(&c).is_ok(), n < MAX_NESTING, "{n}");
        }
        assert!(indicators(&"(".repeat(100_000))
            .unwrap_err()
            .to_string()
            .contains("levels deep"));
    }

    #[test]
    fn unsupported_patterns_say_why() {
        let cases: &[(&str, &str)] = &[
            (
                "[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'a.example']",
                "AND between observations",
            ),
            (
                "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'a.example']",
                "FOLLOWEDBY",
            ),
            ("[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS", "WITHIN"),
            ("[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES", "REPEATS"),
            ("[ipv4-addr:value != '1.2.3.4']", "!="),
            ("[file:size > 1000]", "not an observable"),
            (
                "[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.example']",
                "several identifying values",
            ),
            (
                "[network-traffic:src_ref.value = '198.51.100.1' AND network-traffic:dst_ref.value = '198.51.100.2']",
                "several identifying values",
            ),
            (
                "[file:name = 'a.exe' AND file:size = '10']",
                "no identifying value",
            ),
            (
                "[file:hashes.IMPHASH = 'd41d8cd98f00b204e9800998ecf8427e']",
                "not an observable",
            ),
            (
                "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:hashes.SSDEEP = '3:a:b']",
                "neither identifying nor descriptive",
            ),
            ("[ipv4-addr:value = 'not-an-ip']", "not a valid"),
            ("[ipv4-addr:value = '1.2.3.4'", "expected RBracket"),
            ("[ipv4-addr:value = 'unterminated]", "unterminated"),
            ("", "expected `[`"),
            ("[x:y NOT IN ('a')]", "not an observable"),
        ];
        for (p, needle) in cases {
            let e = indicators(p).expect_err(p);
            assert!(e.0.contains(needle), "{p}: {e}");
        }
    }
}
