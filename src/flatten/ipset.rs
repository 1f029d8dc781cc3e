//! Sets of IPv4 or IPv6 addresses held as sorted ranges, with the operations the
//! flattener needs: union, difference, intersection, membership, and the shortest
//! CIDR list that covers a set (exactly, or with "don't care" addresses allowed).

use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// An address family: how its addresses and networks map to integers.
pub trait Family: Copy + fmt::Debug + Eq + Default {
    /// Address width: 32 or 128.
    const BITS: u8;
    type Addr: Copy + fmt::Debug + fmt::Display;
    type Net: Copy + fmt::Debug + fmt::Display + FromStr;
    fn addr_bits(addr: Self::Addr) -> u128;
    fn addr_from(bits: u128) -> Self::Addr;
    /// The first address and the length of a network (host bits masked).
    fn net_parts(net: Self::Net) -> (u128, u8);
    fn net_from(first: u128, len: u8) -> Self::Net;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V6;

impl Family for V4 {
    const BITS: u8 = 32;
    type Addr = Ipv4Addr;
    type Net = Ipv4Net;
    fn addr_bits(addr: Ipv4Addr) -> u128 {
        u128::from(u32::from(addr))
    }
    fn addr_from(bits: u128) -> Ipv4Addr {
        Ipv4Addr::from(u32::try_from(bits).expect("an IPv4 address fits in 32 bits"))
    }
    fn net_parts(net: Ipv4Net) -> (u128, u8) {
        (Self::addr_bits(net.network()), net.prefix_len())
    }
    fn net_from(first: u128, len: u8) -> Ipv4Net {
        Ipv4Net::new(Self::addr_from(first), len).expect("prefix length within 32")
    }
}

impl Family for V6 {
    const BITS: u8 = 128;
    type Addr = Ipv6Addr;
    type Net = Ipv6Net;
    fn addr_bits(addr: Ipv6Addr) -> u128 {
        u128::from(addr)
    }
    fn addr_from(bits: u128) -> Ipv6Addr {
        Ipv6Addr::from(bits)
    }
    fn net_parts(net: Ipv6Net) -> (u128, u8) {
        (Self::addr_bits(net.network()), net.prefix_len())
    }
    fn net_from(first: u128, len: u8) -> Ipv6Net {
        Ipv6Net::new(Self::addr_from(first), len).expect("prefix length within 128")
    }
}

/// The number of addresses in a network of length `len`, minus one.
fn span<F: Family>(len: u8) -> u128 {
    let host_bits = u32::from(F::BITS - len);
    if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// A set of addresses of one family, as sorted, disjoint, non-adjacent inclusive
/// ranges. Serialised as its shortest CIDR list, so state files stay readable.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
#[serde(bound(serialize = "F: Family", deserialize = "F: Family"))]
pub struct IpSet<F: Family> {
    ranges: Vec<(u128, u128)>,
    family: PhantomData<F>,
}

pub type Ip4Set = IpSet<V4>;
pub type Ip6Set = IpSet<V6>;

impl<F: Family> IpSet<F> {
    pub fn new() -> Self {
        Self {
            ranges: Vec::new(),
            family: PhantomData,
        }
    }

    /// Every address of the family (what `+all` authorises).
    pub fn full() -> Self {
        Self::from_ranges(vec![(0, span::<F>(0))])
    }

    pub fn from_nets(nets: impl IntoIterator<Item = F::Net>) -> Self {
        let ranges = nets
            .into_iter()
            .map(|net| {
                let (first, len) = F::net_parts(net);
                (first, first + span::<F>(len))
            })
            .collect();
        Self::from_ranges(ranges)
    }

    /// Sorts and merges overlapping and adjacent ranges.
    fn from_ranges(mut ranges: Vec<(u128, u128)>) -> Self {
        ranges.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                Some(last) if last.1 == u128::MAX || lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Self {
            ranges: out,
            family: PhantomData,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges as (first, last) addresses, for reports and boundary tests.
    pub fn ranges(&self) -> impl Iterator<Item = (F::Addr, F::Addr)> + '_ {
        self.ranges
            .iter()
            .map(|&(lo, hi)| (F::addr_from(lo), F::addr_from(hi)))
    }

    pub fn insert(&mut self, net: F::Net) {
        *self = self.union(&Self::from_nets([net]));
    }

    pub fn union(&self, other: &Self) -> Self {
        Self::from_ranges(self.ranges.iter().chain(&other.ranges).copied().collect())
    }

    /// The addresses of `self` that are not in `other`: one sweep over both lists.
    pub fn difference(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        let mut cuts = other.ranges.iter().peekable();
        for &(lo, hi) in &self.ranges {
            // `start` is the first address of this range not yet decided.
            let mut start = Some(lo);
            while let (Some(from), Some(&&(clo, chi))) = (start, cuts.peek()) {
                if chi < from {
                    cuts.next();
                    continue;
                }
                if clo > hi {
                    break;
                }
                if clo > from {
                    out.push((from, clo - 1));
                }
                if chi >= hi {
                    // The cut may reach into the next range: keep it.
                    start = None;
                } else {
                    start = Some(chi + 1);
                    cuts.next();
                }
            }
            if let Some(from) = start {
                out.push((from, hi));
            }
        }
        Self {
            ranges: out,
            family: PhantomData,
        }
    }

    pub fn intersection(&self, other: &Self) -> Self {
        self.difference(&self.difference(other))
    }

    pub fn intersects(&self, other: &Self) -> bool {
        other.ranges.iter().any(|&(lo, hi)| self.meets(lo, hi))
    }

    pub fn contains(&self, addr: F::Addr) -> bool {
        let bits = F::addr_bits(addr);
        self.covers(bits, bits)
    }

    /// True when some address of [lo, hi] is in the set.
    fn meets(&self, lo: u128, hi: u128) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < lo);
        self.ranges.get(i).is_some_and(|r| r.0 <= hi)
    }

    /// True when every address of [lo, hi] is in the set.
    fn covers(&self, lo: u128, hi: u128) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < lo);
        self.ranges.get(i).is_some_and(|r| r.0 <= lo && r.1 >= hi)
    }

    /// Every address widened to its network of length `len`: what `a/len` matches
    /// for a set of A records (RFC 7208 5.6).
    pub fn widen(&self, len: u8) -> Self {
        let host = span::<F>(len.min(F::BITS));
        Self::from_ranges(
            self.ranges
                .iter()
                .map(|&(lo, hi)| (lo & !host, hi | host))
                .collect(),
        )
    }

    /// The shortest CIDR list whose union is exactly this set.
    pub fn to_nets(&self) -> Vec<F::Net> {
        self.cover(&Self::new())
    }

    /// The shortest CIDR list that covers this set and may also cover addresses of
    /// `dont_care` (addresses that an earlier rule decides anyway), nothing else.
    pub fn cover(&self, dont_care: &Self) -> Vec<F::Net> {
        let allowed = self.union(dont_care);
        let mut out = Vec::new();
        self.cover_block(&allowed, 0, 0, &mut out);
        out
    }

    /// Optimal by induction: a block is one CIDR when all of it is allowed, else the
    /// best covers of its halves (CIDRs are nested or disjoint).
    fn cover_block(&self, allowed: &Self, first: u128, len: u8, out: &mut Vec<F::Net>) {
        let last = first + span::<F>(len);
        if !self.meets(first, last) {
            return;
        }
        if allowed.covers(first, last) {
            out.push(F::net_from(first, len));
            return;
        }
        // A single address of the set is always allowed, so len < BITS here.
        let half = span::<F>(len + 1) + 1;
        self.cover_block(allowed, first, len + 1, out);
        self.cover_block(allowed, first + half, len + 1, out);
    }
}

impl<F: Family> fmt::Debug for IpSet<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.to_nets().iter().map(|n| n.to_string()))
            .finish()
    }
}

impl<F: Family> From<IpSet<F>> for Vec<String> {
    fn from(set: IpSet<F>) -> Self {
        set.to_nets().iter().map(ToString::to_string).collect()
    }
}

impl<F: Family> TryFrom<Vec<String>> for IpSet<F> {
    type Error = String;
    fn try_from(texts: Vec<String>) -> Result<Self, String> {
        let nets = texts
            .iter()
            .map(|t| t.parse::<F::Net>().map_err(|_| format!("`{t}` is not a network")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_nets(nets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(nets: &[&str]) -> Ip4Set {
        Ip4Set::from_nets(nets.iter().map(|n| n.parse::<Ipv4Net>().unwrap()))
    }

    fn v6(nets: &[&str]) -> Ip6Set {
        Ip6Set::from_nets(nets.iter().map(|n| n.parse::<Ipv6Net>().unwrap()))
    }

    fn texts<F: Family>(set: &IpSet<F>) -> Vec<String> {
        set.to_nets().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn aggregation_is_minimal() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["192.0.2.0/25", "192.0.2.128/25"], &["192.0.2.0/24"]),
            (&["192.0.2.77/24"], &["192.0.2.0/24"]),
            (&["10.0.0.0/8", "10.1.0.0/16"], &["10.0.0.0/8"]),
            (&["10.0.0.1/32", "10.0.0.2/32"], &["10.0.0.1/32", "10.0.0.2/32"]),
            (
                &["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30"],
                &["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30"],
            ),
            (&["0.0.0.0/1", "128.0.0.0/1"], &["0.0.0.0/0"]),
            (
                &["255.255.255.255/32", "255.255.255.254/32"],
                &["255.255.255.254/31"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(texts(&v4(input)), *want, "{input:?}");
        }
        let six = v6(&["2001:db8::/33", "2001:db8:8000::/33", "::/128"]);
        assert_eq!(texts(&six), ["::/128", "2001:db8::/32"]);
        assert_eq!(texts(&Ip6Set::full()), ["::/0"]);
        assert_eq!(texts(&Ip4Set::full()), ["0.0.0.0/0"]);
    }

    #[test]
    fn difference_and_intersection() {
        // (a, b, a - b, a & b)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &["192.0.2.0/24"],
                &["192.0.2.0/25"],
                &["192.0.2.128/25"],
                &["192.0.2.0/25"],
            ),
            (
                &["192.0.2.0/24"],
                &["192.0.2.66/32"],
                &[
                    "192.0.2.0/26",
                    "192.0.2.64/31",
                    "192.0.2.67/32",
                    "192.0.2.68/30",
                    "192.0.2.72/29",
                    "192.0.2.80/28",
                    "192.0.2.96/27",
                    "192.0.2.128/25",
                ],
                &["192.0.2.66/32"],
            ),
            (&["10.0.0.0/8"], &["11.0.0.0/8"], &["10.0.0.0/8"], &[]),
            (&["10.0.0.0/8"], &["0.0.0.0/0"], &[], &["10.0.0.0/8"]),
            (
                &["10.0.0.0/8", "12.0.0.0/8"],
                &["10.128.0.0/9", "11.0.0.0/8", "12.0.0.0/9"],
                &["10.0.0.0/9", "12.128.0.0/9"],
                &["10.128.0.0/9", "12.0.0.0/9"],
            ),
        ];
        for (a, b, diff, inter) in cases {
            let (sa, sb) = (v4(a), v4(b));
            assert_eq!(texts(&sa.difference(&sb)), *diff, "{a:?} - {b:?}");
            assert_eq!(texts(&sa.intersection(&sb)), *inter, "{a:?} & {b:?}");
            assert_eq!(sa.intersects(&sb), !inter.is_empty(), "{a:?} meets {b:?}");
        }
        let all_but_one = Ip4Set::full().difference(&v4(&["255.255.255.255/32"]));
        assert_eq!(all_but_one.to_nets().len(), 32);
        assert!(!all_but_one.contains(Ipv4Addr::BROADCAST));
        assert!(all_but_one.contains(Ipv4Addr::new(255, 255, 255, 254)));
        let full6 = Ip6Set::full().difference(&v6(&["::/1"]));
        assert_eq!(texts(&full6), ["8000::/1"]);
    }

    #[test]
    fn membership() {
        let set = v4(&["192.0.2.0/24", "198.51.100.7/32"]);
        let cases = [
            ("192.0.1.255", false),
            ("192.0.2.0", true),
            ("192.0.2.255", true),
            ("192.0.3.0", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
        ];
        for (ip, want) in cases {
            assert_eq!(set.contains(ip.parse().unwrap()), want, "{ip}");
        }
        let six = v6(&["2001:db8::/32"]);
        assert!(six.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!six.contains("2001:db9::".parse().unwrap()));
        assert!(Ip6Set::full().contains(Ipv6Addr::from(u128::MAX)));
    }

    #[test]
    fn cover_uses_dont_care_addresses() {
        // (set, don't care, cover)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["192.0.2.128/25"], &["192.0.2.0/25"], &["192.0.2.0/24"]),
            (&["192.0.2.128/25"], &["192.0.2.0/26"], &["192.0.2.128/25"]),
            (
                &["10.0.0.0/24", "10.0.2.0/24"],
                &["10.0.1.0/24", "10.0.3.0/24"],
                &["10.0.0.0/22"],
            ),
            (&[], &["10.0.0.0/8"], &[]),
            (&["10.0.0.1/32"], &[], &["10.0.0.1/32"]),
        ];
        for (set, dc, want) in cases {
            let got: Vec<String> = v4(set).cover(&v4(dc)).iter().map(ToString::to_string).collect();
            assert_eq!(got, *want, "{set:?} with {dc:?}");
        }
    }

    #[test]
    fn widen_applies_cidr_lengths() {
        let hosts = v4(&["192.0.2.1/32", "192.0.2.200/32", "198.51.100.9/32"]);
        assert_eq!(texts(&hosts.widen(24)), ["192.0.2.0/24", "198.51.100.0/24"]);
        assert_eq!(texts(&hosts.widen(0)), ["0.0.0.0/0"]);
        assert_eq!(texts(&hosts.widen(32)), texts(&hosts));
        let six = v6(&["2001:db8::1/128"]);
        assert_eq!(texts(&six.widen(64)), ["2001:db8::/64"]);
    }

    #[test]
    fn serde_round_trip_uses_cidr_text() {
        let set = v4(&["192.0.2.0/24", "10.0.0.1/32"]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["10.0.0.1/32","192.0.2.0/24"]"#);
        let back: Ip4Set = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<Ip4Set>(r#"["nonsense"]"#).is_err());
    }
}
