//! Allowlists: indicators removed at load time because they are known benign.
//!
//! An allowlist entry removes an indicator when the indicator, seen in a log,
//! would be a hit for the entry: an address or network inside an allowed
//! network, a domain at or under an allowed domain, and the same value
//! otherwise. MISP warninglists add their own match types (substring, regex).

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use ipnet::IpNet;
use rustc_hash::FxHashMap;

use super::warninglist::MatchType;
use super::{Feed, SkipLog};
use crate::indicator::canon::{classify, domain};
use crate::indicator::{Indicator, IndicatorType};

/// Index of the allowlist (feed) an entry came from, for counting removals.
type Source = u32;

/// Every allowlist entry, ready to test indicators against.
#[derive(Default)]
pub struct Allowlist {
    names: Vec<Arc<str>>,
    /// Canonical value → (type, source).
    exact: FxHashMap<Box<str>, (IndicatorType, Source)>,
    domains: FxHashMap<Box<str>, Source>,
    /// Per prefix length, the allowed networks (as masked u128; IPv4 in the low 32 bits).
    nets_v4: Vec<FxHashMap<u128, Source>>,
    nets_v6: Vec<FxHashMap<u128, Source>>,
    substrings: Vec<(String, Source)>,
    regexes: Vec<(regex::Regex, Source)>,
    substring_matcher: Option<AhoCorasick>,
    /// Entries that could not be used, per allowlist.
    pub skipped: Vec<SkipLog>,
}

impl Allowlist {
    /// Builds the allowlist from loaded feeds (any feed format, or warninglists).
    pub fn new(feeds: &[Feed]) -> Allowlist {
        let mut a = Allowlist {
            nets_v4: vec![FxHashMap::default(); 33],
            nets_v6: vec![FxHashMap::default(); 129],
            ..Allowlist::default()
        };
        for feed in feeds {
            let src = a.names.len() as Source;
            a.names.push(Arc::from(feed.id.to_string()));
            let mut skipped = feed.skipped.clone();
            for i in &feed.indicators {
                a.add(i.kind, &i.value, src, false);
            }
            if let Some(w) = &feed.warninglist {
                for (n, entry) in w.list.iter().enumerate() {
                    if let Err(why) = a.add_warning(w.match_type, entry, src) {
                        skipped.push(n as u32 + 1, format!("entry {entry:?}: {why}"));
                    }
                }
            }
            a.skipped.push(skipped);
        }
        if !a.substrings.is_empty() {
            let pats = a.substrings.iter().map(|(s, _)| s.as_str());
            a.substring_matcher = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .build(pats)
                .ok();
        }
        a
    }

    fn add(&mut self, kind: IndicatorType, value: &str, src: Source, exact_domain: bool) {
        match kind {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                let net: IpNet = value
                    .parse()
                    .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
                    .expect("canonical");
                let (tables, key) = self.net_key(&net);
                tables[net.prefix_len() as usize].entry(key).or_insert(src);
            }
            IndicatorType::Domain if !exact_domain => {
                self.domains.entry(value.into()).or_insert(src);
            }
            IndicatorType::Regex => {
                if let Ok(r) = regex::Regex::new(value) {
                    self.regexes.push((r, src));
                }
            }
            _ => {
                self.exact.entry(value.into()).or_insert((kind, src));
            }
        }
    }

    fn add_warning(&mut self, t: MatchType, entry: &str, src: Source) -> Result<(), String> {
        match t {
            MatchType::String => {
                let (kind, v) = classify(entry).ok_or("empty")?;
                self.add(kind, &v, src, true);
            }
            MatchType::Hostname => {
                let d = domain(entry).ok_or("not a host name")?;
                self.domains.entry(d.into()).or_insert(src);
            }
            MatchType::Cidr => match classify(entry) {
                Some((k @ (IndicatorType::Ipv4 | IndicatorType::Ipv6), v)) => {
                    self.add(k, &v, src, false)
                }
                _ => return Err("not an address or network".into()),
            },
            MatchType::Substring => self.substrings.push((entry.to_owned(), src)),
            MatchType::Regex => {
                // MISP warninglists write regexes PCRE-style between slashes.
                let pat = entry
                    .strip_prefix('/')
                    .and_then(|e| e.rsplit_once('/'))
                    .map_or(entry, |(p, _)| p);
                let r = regex::Regex::new(pat).map_err(|e| e.to_string())?;
                self.regexes.push((r, src));
            }
        }
        Ok(())
    }

    fn net_key(&mut self, net: &IpNet) -> (&mut Vec<FxHashMap<u128, Source>>, u128) {
        match net {
            IpNet::V4(n) => (&mut self.nets_v4, u32::from(n.network()) as u128),
            IpNet::V6(n) => (&mut self.nets_v6, u128::from(n.network())),
        }
    }

    /// Number of allowlists (sources), in the order given to [`Allowlist::new`].
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The allowlist that removes `ind`, if any.
    pub fn allows(&self, ind: &Indicator) -> Option<Source> {
        if let Some(&(kind, s)) = self.exact.get(&*ind.value) {
            if kind == ind.kind {
                return Some(s);
            }
        }
        let by_kind = match ind.kind {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => self.allows_net(&ind.value),
            IndicatorType::Domain => self.allows_domain(&ind.value),
            _ => None,
        };
        by_kind.or_else(|| self.allows_text(&ind.value))
    }

    /// The domain or one of its parents is allowed.
    fn allows_domain(&self, mut d: &str) -> Option<Source> {
        loop {
            if let Some(&s) = self.domains.get(d) {
                return Some(s);
            }
            d = d.split_once('.')?.1;
        }
    }

    fn allows_net(&self, value: &str) -> Option<Source> {
        let net: IpNet = value
            .parse()
            .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
            .ok()?;
        let (tables, addr, width) = match net {
            IpNet::V4(n) => (&self.nets_v4, u32::from(n.network()) as u128, 32),
            IpNet::V6(n) => (&self.nets_v6, u128::from(n.network()), 128),
        };
        (0..=net.prefix_len() as u32).rev().find_map(|len| {
            let t = &tables[len as usize];
            if t.is_empty() {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                (u128::MAX >> (128 - width)) & !((1u128 << (width - len)) - 1)
            };
            t.get(&(addr & mask)).copied()
        })
    }

    fn allows_text(&self, value: &str) -> Option<Source> {
        if let Some(m) = self
            .substring_matcher
            .as_ref()
            .and_then(|ac| ac.find(value))
        {
            return Some(self.substrings[m.pattern().as_usize()].1);
        }
        self.regexes
            .iter()
            .find(|(r, _)| r.is_match(value))
            .map(|(_, s)| *s)
    }

    /// Removes allowed indicators; returns how many each allowlist removed.
    pub fn apply(&self, indicators: &mut Vec<Indicator>) -> Vec<usize> {
        let mut removed = vec![0; self.names.len()];
        if self.names.is_empty() {
            return removed;
        }
        indicators.retain(|i| match self.allows(i) {
            Some(s) => {
                removed[s as usize] += 1;
                false
            }
            None => true,
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::parse;
    use std::path::Path;

    fn ind(v: &str) -> Indicator {
        let (kind, value) = classify(v).unwrap();
        crate::feeds::FeedContext::named("f").indicator((kind, value), 1, Vec::new())
    }

    #[test]
    fn plain_and_warninglists() {
        let feeds = [
            // Allowlists are read without the breadth guard: 10.0.0.0/8 stays.
            crate::feeds::parse_with(
                crate::indicator::FeedId::single("mine"),
                Path::new("mine"),
                "10.0.0.0/8\ngoogle.com\nd41d8cd98f00b204e9800998ecf8427e\n",
                &crate::feeds::ParseOptions::default().for_allowlist(),
                0,
            ),
            parse(
                "wl-host",
                Path::new("w1"),
                r#"{"name":"h","type":"hostname","list":[".dyn.example"]}"#,
            ),
            parse(
                "wl-sub",
                Path::new("w2"),
                r#"{"name":"s","type":"substring","list":["sinkhole"]}"#,
            ),
            parse(
                "wl-cidr",
                Path::new("w3"),
                r#"{"name":"c","type":"cidr","list":["2001:db8::/32","bogus"]}"#,
            ),
            parse(
                "wl-str",
                Path::new("w4"),
                r#"{"name":"x","type":"string","list":["exact.example"]}"#,
            ),
        ];
        let a = Allowlist::new(&feeds);
        let allowed = |v: &str| a.allows(&ind(v)).map(|s| a.names()[s as usize].to_string());
        assert_eq!(allowed("10.1.2.3").as_deref(), Some("mine"));
        assert_eq!(allowed("10.1.0.0/16").as_deref(), Some("mine"));
        assert_eq!(allowed("11.1.2.3"), None);
        assert_eq!(allowed("mail.google.com").as_deref(), Some("mine"));
        assert_eq!(allowed("notgoogle.com"), None);
        assert_eq!(
            allowed("D41D8CD98F00B204E9800998ECF8427E").as_deref(),
            Some("mine")
        );
        assert_eq!(allowed("a.dyn.example").as_deref(), Some("wl-host"));
        assert_eq!(
            allowed("http://x.example/sinkhole").as_deref(),
            Some("wl-sub")
        );
        assert_eq!(allowed("2001:db8::1").as_deref(), Some("wl-cidr"));
        assert_eq!(allowed("exact.example").as_deref(), Some("wl-str"));
        assert_eq!(allowed("sub.exact.example"), None);
        assert_eq!(a.skipped[3].count, 1);
    }
}
