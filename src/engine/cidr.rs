//! CIDR containment: which network indicators hold an address.
//!
//! The networks' bounds cut the address space into elementary intervals; each
//! interval lists every network that covers it, so a lookup is one binary
//! search and returns all matching networks, nested ones included. Nesting is
//! bounded by the address width (33 or 129 prefix lengths), so the lists stay
//! small. A bitmap over the top 16 address bits answers most misses without
//! the search.

/// An address width the table works over (u32 for IPv4, u128 for IPv6).
pub trait Addr: Copy + Ord + Default {
    fn top16(self) -> usize;
    fn checked_inc(self) -> Option<Self>;
    /// The first and last address of `self/len`.
    fn range(self, len: u8) -> (Self, Self);
}

impl Addr for u32 {
    fn top16(self) -> usize {
        (self >> 16) as usize
    }
    fn checked_inc(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn range(self, len: u8) -> (Self, Self) {
        // checked: a shift by the full width (a /32) is an overflow, not 0.
        let host = u32::MAX.checked_shr(len.into()).unwrap_or(0);
        (self & !host, self | host)
    }
}

impl Addr for u128 {
    fn top16(self) -> usize {
        (self >> 112) as usize
    }
    fn checked_inc(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn range(self, len: u8) -> (Self, Self) {
        let host = u128::MAX.checked_shr(len.into()).unwrap_or(0);
        (self & !host, self | host)
    }
}

/// Networks of one address family, ready for containment lookups.
pub struct CidrTable<A> {
    /// Sorted starts of the elementary intervals; `starts[0] == 0`.
    starts: Vec<A>,
    /// `ids[offsets[k]..offsets[k + 1]]` are the networks covering interval k.
    offsets: Vec<u32>,
    ids: Vec<u32>,
    /// Bit per top-16-bit prefix: set when some network touches it.
    top: Vec<u64>,
}

impl<A: Addr> CidrTable<A> {
    /// Builds the table from `(network address, prefix length, indicator id)`.
    pub fn new(nets: &[(A, u8, u32)]) -> Self {
        let mut top = vec![0u64; if nets.is_empty() { 0 } else { 1024 }];
        let mut starts: Vec<A> = Vec::with_capacity(nets.len() * 2 + 1);
        starts.push(A::default());
        for &(addr, len, _) in nets {
            let (first, last) = addr.range(len);
            starts.push(first);
            if let Some(after) = last.checked_inc() {
                starts.push(after);
            }
            for t in first.top16()..=last.top16() {
                super::bits::set(&mut top, t);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let interval = |a: A| starts.partition_point(|&s| s <= a) - 1;
        // Count, then fill, the networks covering each interval (CSR layout).
        let mut counts = vec![0u32; starts.len() + 1];
        let spans: Vec<(usize, usize)> = nets
            .iter()
            .map(|&(addr, len, _)| {
                let (first, last) = addr.range(len);
                (interval(first), interval(last) + 1)
            })
            .collect();
        for &(a, b) in &spans {
            for c in &mut counts[a..b] {
                *c += 1;
            }
        }
        let mut offsets = Vec::with_capacity(starts.len() + 1);
        let mut total = 0u32;
        for c in &counts[..starts.len()] {
            offsets.push(total);
            total += c;
        }
        offsets.push(total);
        let mut fill = offsets.clone();
        let mut ids = vec![0u32; total as usize];
        for (&(a, b), &(_, _, id)) in spans.iter().zip(nets) {
            for k in a..b {
                ids[fill[k] as usize] = id;
                fill[k] += 1;
            }
        }
        CidrTable {
            starts,
            offsets,
            ids,
            top,
        }
    }

    /// The ids of every network containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: A) -> &[u32] {
        let t = addr.top16();
        // An empty bitmap (no networks) holds no bit.
        if !super::bits::bit(&self.top, t) {
            return &[];
        }
        let k = self.starts.partition_point(|&s| s <= addr) - 1;
        &self.ids[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    /// The bitmap of the top 16 bits some network touches (1024 words), or
    /// nothing when the table is empty.
    pub fn top16(&self) -> &[u64] {
        &self.top
    }

    pub fn heap_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<A>()
            + (self.offsets.capacity() + self.ids.capacity()) * 4
            + self.top.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> u32 {
        s.parse::<Ipv4Addr>().unwrap().into()
    }

    #[test]
    fn nested_and_edges() {
        let t = CidrTable::new(&[
            (v4("198.51.100.0"), 24, 1),
            (v4("198.51.0.0"), 16, 2),
            (v4("0.0.0.0"), 0, 3),
            (v4("198.51.100.128"), 25, 4),
        ]);
        let got = |s: &str| {
            let mut v = t.lookup(v4(s)).to_vec();
            v.sort();
            v
        };
        assert_eq!(got("198.51.100.0"), [1, 2, 3]);
        assert_eq!(got("198.51.100.255"), [1, 2, 3, 4]);
        assert_eq!(got("198.51.99.255"), [2, 3]);
        assert_eq!(got("198.51.101.0"), [2, 3]);
        assert_eq!(got("255.255.255.255"), [3]);
        assert_eq!(got("0.0.0.0"), [3]);
    }

    #[test]
    fn host_routes_hold_one_address() {
        let t = CidrTable::new(&[(v4("203.0.113.5"), 32, 1), (v4("0.0.0.0"), 32, 2)]);
        assert_eq!(t.lookup(v4("203.0.113.5")), [1]);
        assert!(t.lookup(v4("203.0.113.4")).is_empty());
        assert!(t.lookup(v4("203.0.113.6")).is_empty());
        assert_eq!(t.lookup(0), [2]);
        let t6 = CidrTable::new(&[(7u128, 128, 3)]);
        assert_eq!(t6.lookup(7), [3]);
        assert!(t6.lookup(8).is_empty() && t6.lookup(6).is_empty());
    }

    #[test]
    fn empty_and_sparse() {
        let t: CidrTable<u32> = CidrTable::new(&[]);
        assert!(t.lookup(1).is_empty());
        let t = CidrTable::new(&[(v4("10.0.0.0"), 8, 9)]);
        assert!(t.lookup(v4("11.0.0.0")).is_empty());
        assert_eq!(t.lookup(v4("10.255.255.255")), [9]);
        let t6 = CidrTable::new(&[(0x2001_0db8_beef_u128 << 80, 48, 5)]);
        assert_eq!(t6.lookup((0x2001_0db8_beef_u128 << 80) | 1), [5]);
        assert!(t6.lookup(0x2001_0db8_bef0_u128 << 80).is_empty());
    }
}
