//! The matching engine: built once from indicators, immutable, shared by
//! every matcher thread (`Send + Sync`), and hot-swapped whole on reload.
//!
//! The design note below (`DESIGN.md` beside this file) says why it is built
//! as tokens + sets, where the Bloom filter pays, and the measured costs.
//!
//! Invariants:
//! - [`Engine::scan`] reports exactly the (line, indicator) pairs of
//!   `MATCHING.md`, each once, ordered by position in the line.
//! - A scan allocates nothing when the line has no hit, once its
//!   [`ScanState`] has grown to the longest URL or email seen.
//! - Indicator ids are indices into [`Engine::indicators`] and stable for the
//!   life of one engine.
#![doc = ""]
#![doc = include_str!("DESIGN.md")]

pub mod bits;
mod block;
mod cidr;
pub mod classify;
mod literals;
mod regexes;
mod sets;
pub mod tokens;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::indicator::canon::canon_url_into;
use crate::indicator::{Indicator, IndicatorType};
use bits::prev_set;
pub use block::{BlockSummary, LineMatches};
use cidr::CidrTable;
use classify::LineMasks;
use literals::Literals;
use regexes::Regexes;
pub use regexes::SET_SIZE_LIMIT as REGEX_SET_BUDGET;
use sets::{
    domain_fingerprint, fingerprint, finish, label_step_at, tld_fingerprint, tld_key, ExactSet,
    NONE, SEED,
};

/// Build-time choices. The defaults are what the benchmarks chose.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Put a Bloom filter in front of an exact set once it holds this many
    /// keys; 0 never does. See `DESIGN.md` for the measurement behind it.
    pub bloom_min_keys: usize,
}

/// One indicator found in a line: its id and the byte range of the token
/// (or literal) that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// The indicator's index in [`Engine::indicator`].
    pub indicator: u32,
    /// Byte offset in the line where the match starts.
    pub start: u32,
    /// Byte offset in the line where the match ends (exclusive).
    pub end: u32,
}

/// Per-thread scratch for [`Engine::scan`]; reuse one per thread so a scan
/// without hits allocates nothing.
#[derive(Default)]
pub struct ScanState {
    hits: Vec<Match>,
    buf: Vec<u8>,
    masks: LineMasks,
    /// A block's matches with the index of their line in the window.
    keyed: Vec<(u32, Match)>,
    /// Newlines before each word of a window's masks.
    newlines_before: Vec<u32>,
}

impl ScanState {
    /// Empty scratch space; it grows to the largest line's needs once.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Sizes of the engine's parts, for the load summary and the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// Indicators indexed (after duplicates were dropped).
    pub indicators: usize,
    /// Indicators dropped because the same feed already had the same value.
    pub duplicates: usize,
    /// Exact IPv4 addresses.
    pub ipv4: usize,
    /// Exact IPv6 addresses.
    pub ipv6: usize,
    /// IPv4 and IPv6 networks.
    pub cidrs: usize,
    /// Domain names.
    pub domains: usize,
    /// URLs.
    pub urls: usize,
    /// Email addresses.
    pub emails: usize,
    /// MD5, SHA-1, SHA-256 and SHA-512 digests.
    pub hashes: usize,
    /// Literal strings.
    pub strings: usize,
    /// Regular expressions.
    pub regexes: usize,
    /// Regex indicators left out because the regex set would pass its
    /// size budget with them (the newest ones), by id.
    pub regexes_left_out: Vec<u32>,
    /// Exact sets fronted by a Bloom filter.
    pub bloom_sets: usize,
    /// Approximate heap bytes of the matching structures (not the indicators).
    pub index_bytes: usize,
}

/// Every indicator, indexed for one pass over a line: immutable once built, shared by every matcher thread.
pub struct Engine {
    indicators: Vec<Indicator>,
    /// Id chains: `next[id]` is the next indicator under the same key.
    next: Vec<u32>,
    ipv4: ExactSet<u32>,
    /// The top 16 bits of every address in `ipv4`, as a 64K-bit map: the
    /// addresses of a network's own hosts (private space, which no
    /// indicator may hold) are answered by one load, not a hash probe.
    ipv4_top: Box<[u64]>,
    /// The same for every IPv4 indicator, networks included: an address
    /// in none of these /16s is not parsed past its first two octets.
    ipv4_any_top: Box<[u64]>,
    ipv6: ExactSet<u128>,
    cidr4: CidrTable<u32>,
    cidr6: CidrTable<u128>,
    has_cidr4: bool,
    has_cidr6: bool,
    domains: ExactSet<u64>,
    /// Fingerprints of the last labels of every domain indicator: a host
    /// token whose TLD is not here cannot match, whatever its length.
    tlds: FxHashSet<u64>,
    /// The [`tld_key`]s of those last labels, as a 64K-bit map: one load
    /// answers most host tokens (IP addresses, timestamps, file names, JSON
    /// keys) before any byte is hashed.
    tld_keys: Box<[u64]>,
    /// Whether any of those last labels starts with a digit: when none
    /// does, a host token ending in a numeric label (an IP address, a
    /// timestamp, a version) is done with after one bit of a mask.
    tld_digit_first: bool,
    urls: ExactSet<u64>,
    emails: ExactSet<u64>,
    hashes: ExactSet<u64>,
    literals: Option<Literals>,
    regexes: Option<Regexes>,
    stats: EngineStats,
    /// Which build this is: increasing over the process's life.
    build_id: u64,
}

/// The next [`Engine::build_id`]. From 2: 0 and 1 mean "no engine" and
/// "loading one" to the retro-hunt's bookkeeping.
static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2);

// Matcher threads share one engine by reference; keep it that way.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Engine>();
};

/// Key of a hash token or indicator: its first 64 bits and its length.
#[inline]
fn hash_key(hex: &[u8]) -> u64 {
    finish(tokens::hex_prefix(hex) ^ hex.len() as u64)
}

impl Engine {
    /// Builds an engine over `indicators`, dropping exact duplicates (same
    /// type, value and feed name, networks included: the first one read
    /// stays). Never fails: regexes past the set's size budget are left
    /// out and listed in [`EngineStats::regexes_left_out`].
    pub fn build(indicators: Vec<Indicator>, options: &EngineOptions) -> Engine {
        let mut next = vec![NONE; indicators.len()];
        let mut ipv4 = ExactSet::default();
        let mut ipv4_top = vec![0u64; 1 << 10].into_boxed_slice();
        let mut ipv6 = ExactSet::default();
        let (mut nets4, mut nets6) = (Vec::new(), Vec::new());
        let mut domains = ExactSet::default();
        let mut tlds = FxHashSet::default();
        let mut tld_keys = vec![0u64; 1 << 10].into_boxed_slice();
        let mut tld_digit_first = false;
        let mut urls = ExactSet::default();
        let mut emails = ExactSet::default();
        let mut hashes = ExactSet::default();
        let mut strings: FxHashMap<&str, u32> = FxHashMap::default();
        let mut regex_heads: FxHashMap<&str, u32> = FxHashMap::default();
        let mut duplicates = 0;
        let mut seen_nets: FxHashSet<(&str, &str)> = FxHashSet::default();
        let inds = &indicators;
        let same = |id: u32| {
            move |other: u32| {
                let (a, b) = (&inds[id as usize], &inds[other as usize]);
                a.value == b.value && a.provenance.feed.name == b.provenance.feed.name
            }
        };
        for (id, ind) in indicators.iter().enumerate() {
            let id = id as u32;
            let v = ind.value.as_bytes();
            let added = match ind.kind {
                IndicatorType::Ipv4 | IndicatorType::Ipv6 if ind.is_cidr() => {
                    let Ok(net) = ind.value.parse::<IpNet>() else {
                        continue;
                    };
                    // The value is canonical, so equal networks are equal text.
                    let first = seen_nets.insert((&*ind.value, &*ind.provenance.feed.name));
                    match net {
                        IpNet::V4(n) if first => {
                            nets4.push((u32::from(n.network()), n.prefix_len(), id))
                        }
                        IpNet::V6(n) if first => {
                            nets6.push((u128::from(n.network()), n.prefix_len(), id))
                        }
                        _ => {}
                    }
                    first
                }
                IndicatorType::Ipv4 => match ind.value.parse::<Ipv4Addr>() {
                    Ok(a) => {
                        bits::set(&mut ipv4_top, (u32::from(a) >> 16) as usize);
                        ipv4.insert(u32::from(a), id, &mut next, same(id))
                    }
                    Err(_) => continue,
                },
                IndicatorType::Ipv6 => match ind.value.parse::<Ipv6Addr>() {
                    Ok(a) => ipv6.insert(u128::from(a), id, &mut next, same(id)),
                    Err(_) => continue,
                },
                IndicatorType::Domain => {
                    if let Some(t) = tld_fingerprint(v) {
                        tlds.insert(t);
                    }
                    if let Some(dot) = memchr::memrchr(b'.', v).filter(|&d| d + 1 < v.len()) {
                        tld_digit_first |= v[dot + 1].is_ascii_digit();
                        bits::set(&mut tld_keys, tld_key(v, dot + 1, v.len()));
                    }
                    domains.insert(domain_fingerprint(v), id, &mut next, same(id))
                }
                IndicatorType::Url => urls.insert(fingerprint(v), id, &mut next, same(id)),
                IndicatorType::Email => emails.insert(fingerprint(v), id, &mut next, same(id)),
                IndicatorType::Md5
                | IndicatorType::Sha1
                | IndicatorType::Sha256
                | IndicatorType::Sha512 => hashes.insert(hash_key(v), id, &mut next, same(id)),
                IndicatorType::String | IndicatorType::Regex => {
                    let heads = if ind.kind == IndicatorType::String {
                        &mut strings
                    } else {
                        &mut regex_heads
                    };
                    match heads.get_mut(&*ind.value) {
                        None => {
                            heads.insert(&ind.value, id);
                            true
                        }
                        Some(head) => {
                            let mut cur = *head;
                            let mut dup = false;
                            while cur != NONE {
                                dup |= same(id)(cur);
                                cur = next[cur as usize];
                            }
                            if !dup {
                                next[id as usize] = *head;
                                *head = id;
                            }
                            !dup
                        }
                    }
                }
            };
            duplicates += usize::from(!added);
        }
        for set in [&mut domains, &mut urls, &mut emails, &mut hashes] {
            set.finish(options.bloom_min_keys);
        }
        ipv4.finish(options.bloom_min_keys);
        ipv6.finish(options.bloom_min_keys);
        let literals = Literals::new(strings.iter().map(|(s, &h)| (s.as_bytes(), h)).collect());
        let (regexes, regexes_left_out) =
            Regexes::new(regex_heads.iter().map(|(s, &h)| (*s, h)).collect());
        let cidr4 = CidrTable::new(&nets4);
        let ipv4_any_top: Box<[u64]> = match cidr4.top16() {
            [] => ipv4_top.clone(),
            nets => ipv4_top.iter().zip(nets).map(|(a, n)| a | n).collect(),
        };
        let cidr6 = CidrTable::new(&nets6);
        let stats = EngineStats {
            indicators: indicators.len(),
            duplicates,
            ipv4: ipv4.len(),
            ipv6: ipv6.len(),
            cidrs: nets4.len() + nets6.len(),
            domains: domains.len(),
            urls: urls.len(),
            emails: emails.len(),
            hashes: hashes.len(),
            strings: strings.len(),
            regexes: regex_heads.len() - regexes_left_out.len(),
            regexes_left_out,
            bloom_sets: [
                ipv4.has_bloom(),
                ipv6.has_bloom(),
                domains.has_bloom(),
                urls.has_bloom(),
                emails.has_bloom(),
                hashes.has_bloom(),
            ]
            .iter()
            .filter(|&&b| b)
            .count(),
            index_bytes: ipv4.heap_bytes()
                + ipv6.heap_bytes()
                + domains.heap_bytes()
                + urls.heap_bytes()
                + emails.heap_bytes()
                + hashes.heap_bytes()
                + cidr4.heap_bytes()
                + cidr6.heap_bytes()
                + literals.as_ref().map_or(0, Literals::heap_bytes)
                + next.capacity() * 4
                + tlds.capacity() * 9
                + (tld_keys.len() + ipv4_top.len() + ipv4_any_top.len()) * 8,
        };
        drop(strings);
        drop(regex_heads);
        Engine {
            next,
            ipv4,
            ipv4_top,
            ipv4_any_top,
            ipv6,
            has_cidr4: !nets4.is_empty(),
            has_cidr6: !nets6.is_empty(),
            cidr4,
            cidr6,
            domains,
            tlds,
            tld_keys,
            tld_digit_first,
            urls,
            emails,
            hashes,
            literals,
            regexes,
            stats,
            indicators,
            build_id: BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The indicators of this engine whose (type, value) `older` did not
    /// have: the new values a reload brought (retro-hunt, `scan
    /// --since-indicators`). A value `older` had from another feed is not
    /// new: lines holding it were already reported.
    pub fn added_since(&self, older: &Engine) -> Vec<Indicator> {
        let before: FxHashSet<(IndicatorType, &str)> = older
            .indicators
            .iter()
            .map(|i| (i.kind, &*i.value))
            .collect();
        self.indicators
            .iter()
            .filter(|i| !before.contains(&(i.kind, &*i.value)))
            .cloned()
            .collect()
    }

    /// This engine's build number: a later build has a larger one, so a
    /// line stored with the id of the engine that scanned it tells which
    /// indicators it was checked against (retro-hunt).
    pub fn build_id(&self) -> u64 {
        self.build_id
    }

    /// All indicators, indexed by id (duplicates included but never matched).
    pub fn indicators(&self) -> &[Indicator] {
        &self.indicators
    }

    /// The indicator a [`Match`] names.
    pub fn indicator(&self, id: u32) -> &Indicator {
        &self.indicators[id as usize]
    }

    /// What the engine holds, by kind, and its memory.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Every indicator that matches `line`, once each, in line order.
    pub fn scan<'s>(&self, line: &[u8], st: &'s mut ScanState) -> &'s [Match] {
        let ScanState {
            hits, buf, masks, ..
        } = st;
        hits.clear();
        if self.wants_tokens() {
            masks.classify(line);
            self.token_hits(line, masks, buf, hits);
        }
        self.string_hits(line, 0, hits);
        if hits.len() > 1 {
            hits.sort_unstable_by_key(|m| (m.indicator, m.start));
            hits.dedup_by_key(|m| m.indicator);
            hits.sort_unstable_by_key(|m| (m.start, m.indicator));
        }
        hits
    }

    /// Whether any token pass has indicators to look up.
    fn wants_tokens(&self) -> bool {
        !self.ipv4.is_empty()
            || self.has_cidr4
            || !self.domains.is_empty()
            || !self.ipv6.is_empty()
            || self.has_cidr6
            || !self.hashes.is_empty()
            || !self.urls.is_empty()
            || !self.emails.is_empty()
    }

    /// Runs every token pass over `text` (one line, or a block of lines
    /// with `\n` between them: no token crosses one) classified into
    /// `masks`, pushing a match per token hit at its position in `text`.
    fn token_hits(&self, text: &[u8], masks: &LineMasks, buf: &mut Vec<u8>, hits: &mut Vec<Match>) {
        let line = text;
        let want_v4 = !self.ipv4.is_empty() || self.has_cidr4;
        let want_hosts = !self.domains.is_empty();
        let want_v6 = !self.ipv6.is_empty() || self.has_cidr6;
        if want_hosts {
            tokens::dotted_run_ends(masks, |e| self.domain_hits(line, masks, e, hits));
        }
        if want_v4 {
            let top = |t: u32| bits::bit(&self.ipv4_any_top, t as usize);
            tokens::ipv4_tokens(line, masks, top, |addr, ts, te| {
                self.ipv4_hits(addr, ts, te, hits)
            });
        }
        if !self.hashes.is_empty() {
            tokens::hash_tokens(masks, |ts, te| {
                let tok = &line[ts..te];
                self.chain(self.hashes.get(&hash_key(tok)), ts, te, hits, |v| {
                    v.eq_ignore_ascii_case(tok)
                });
            });
        }
        if want_v6 {
            tokens::ipv6_tokens(line, masks, |addr, ts, te| {
                let a = u128::from(addr);
                self.chain(self.ipv6.get(&a), ts, te, hits, |_| true);
                for &id in self.cidr6.lookup(a) {
                    hits.push(Match {
                        indicator: id,
                        start: ts as u32,
                        end: te as u32,
                    });
                }
            });
        }
        if !self.urls.is_empty() {
            tokens::url_tokens(line, masks, |ts, te| {
                self.url_hits(&line[ts..te], ts, te, buf, hits)
            });
        }
        if !self.emails.is_empty() {
            tokens::email_tokens(line, masks, |ts, at, te| {
                buf.clear();
                buf.extend(line[ts..=at].iter().map(u8::to_ascii_lowercase));
                let host = &line[at + 1..te];
                let host_start = host
                    .iter()
                    .position(|c| !matches!(c, b'.' | b'-'))
                    .unwrap_or(host.len());
                let host_end = host
                    .iter()
                    .rposition(|c| !matches!(c, b'.' | b'-'))
                    .map_or(host_start, |p| p + 1);
                buf.extend(
                    host[host_start..host_end.max(host_start)]
                        .iter()
                        .map(u8::to_ascii_lowercase),
                );
                let te = at + 1 + host_end.max(host_start);
                let key: &[u8] = buf;
                self.chain(self.emails.get(&fingerprint(key)), ts, te, hits, |v| {
                    v == key
                });
            });
        }
    }

    /// Whether the engine holds `string` or `regex` indicators, which are
    /// looked for line by line.
    fn wants_strings(&self) -> bool {
        self.literals.is_some() || self.regexes.is_some()
    }

    /// Pushes a match for each `string` and `regex` indicator in `line`,
    /// at its position plus `offset`.
    fn string_hits(&self, line: &[u8], offset: usize, hits: &mut Vec<Match>) {
        if let Some(lit) = &self.literals {
            lit.scan(line, |head, s, e| {
                self.chain(Some(head), offset + s, offset + e, hits, |_| true)
            });
        }
        if let Some(rx) = &self.regexes {
            rx.scan(line, |head, s, e| {
                self.chain(Some(head), offset + s, offset + e, hits, |_| true)
            });
        }
    }

    /// Pushes a match for every id in the chain from `head` whose value passes `verify`.
    #[inline]
    fn chain(
        &self,
        head: Option<u32>,
        s: usize,
        e: usize,
        hits: &mut Vec<Match>,
        verify: impl Fn(&[u8]) -> bool,
    ) {
        let mut cur = match head {
            Some(h) => h,
            None => return,
        };
        while cur != NONE {
            if verify(self.indicators[cur as usize].value.as_bytes()) {
                hits.push(Match {
                    indicator: cur,
                    start: s as u32,
                    end: e as u32,
                });
            }
            cur = self.next[cur as usize];
        }
    }

    #[inline]
    fn ipv4_hits(&self, addr: u32, s: usize, e: usize, hits: &mut Vec<Match>) {
        if bits::bit(&self.ipv4_top, (addr >> 16) as usize) {
            self.chain(self.ipv4.get(&addr), s, e, hits, |_| true);
        }
        if self.has_cidr4 {
            for &id in self.cidr4.lookup(addr) {
                hits.push(Match {
                    indicator: id,
                    start: s as u32,
                    end: e as u32,
                });
            }
        }
    }

    /// Looks up the host token of the dotted run ending at `run_end`, and
    /// each parent domain with at least two labels, fingerprinting label
    /// by label from the right (the labels' dots come from the masks) in
    /// one pass. Most runs (addresses, numbers, file names, JSON keys) end
    /// in a label no indicator has as its TLD, and cost that check alone.
    #[inline]
    fn domain_hits(&self, line: &[u8], m: &LineMasks, run_end: usize, hits: &mut Vec<Match>) {
        let mut h = SEED;
        // The TLD's first byte, its key, then its fingerprint.
        let wanted = |label: usize, end: usize| {
            if !self.tld_digit_first && bits::bit(&m.digit, label) {
                return false;
            }
            if !bits::bit(&self.tld_keys, tld_key(line, label, end)) {
                return false;
            }
            h = label_step_at(SEED, line, label, end);
            self.tlds.contains(&finish(h))
        };
        let Some((s, e)) = tokens::host_token_from_end(m, run_end, wanted) else {
            return;
        };
        let mut dot = prev_set(&m.dot, e).filter(|&d| d >= s);
        while let Some(d) = dot {
            dot = prev_set(&m.dot, d).filter(|&d| d >= s);
            let start = dot.map_or(s, |d| d + 1);
            h = label_step_at(h, line, start, d);
            let suffix = &line[start..e];
            self.chain(self.domains.get(&finish(h)), s, e, hits, |v| {
                v.eq_ignore_ascii_case(suffix)
            });
        }
    }

    /// Canonicalises a URL token and looks it up with and without its scheme.
    #[inline]
    fn url_hits(&self, tok: &[u8], s: usize, e: usize, buf: &mut Vec<u8>, hits: &mut Vec<Match>) {
        // The contract canonicalises the token as text; invalid UTF-8 becomes
        // U+FFFD first (rare, so the allocation is acceptable).
        let lossy;
        let tok = if tok.is_ascii() || std::str::from_utf8(tok).is_ok() {
            tok
        } else {
            lossy = String::from_utf8_lossy(tok).into_owned();
            lossy.as_bytes()
        };
        let Some(rest) = canon_url_into(tok, buf) else {
            return;
        };
        let full: &[u8] = buf;
        self.chain(self.urls.get(&fingerprint(full)), s, e, hits, |v| v == full);
        let tail = &full[rest..];
        self.chain(self.urls.get(&fingerprint(tail)), s, e, hits, |v| v == tail);
    }
}
