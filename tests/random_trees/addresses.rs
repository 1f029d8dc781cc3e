//! Addresses: the special ones (`exists` hits, PTR records) every domain is probed
//! with, the random networks `ip4`/`ip6` terms are drawn from (near a few anchors, so
//! they overlap and shadow each other), and the probes of a domain: every boundary of
//! every network its tree mentions, addresses near them and far away.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{Mech, Term, World};
use crate::oracle::{Prng, net_boundaries};

/// CIDR boundaries probed per domain at most (a deterministic sample beyond that).
const MAX_BOUNDARIES: usize = 200;

impl World {
    /// `exists` hits for three IPv4 and one IPv6 address, and reverse names: .10 and .12
    /// confirm to p3's mta1/mta2, .11 claims mta2 without confirming, .20 confirms under
    /// the first mail domain, .21 under the customer zone.
    pub fn specials(&mut self, index: u8) {
        let mut hits: Vec<IpAddr> = (0..3).map(|_| IpAddr::V4(self.addr4())).collect();
        hits.push(IpAddr::V6(self.addr6()));
        for ip in hits {
            for zone in [self.zone("cust"), self.zone("p3")] {
                if !self.chance(3) {
                    self.hits.insert(format!("{}._e.{zone}", i_macro(ip)));
                }
                if !self.chance(3) {
                    self.hits.insert(format!("{}._e.{zone}", ir_v(ip)));
                }
            }
            self.special.push(ip);
        }
        for zone in [self.zone("cust"), self.zone("p3")] {
            let sender = format!("d1.{}", self.zone("cust"));
            self.hits.insert(format!("{sender}._e.{zone}"));
        }
        let rev = |last: u8| Ipv4Addr::new(198, 18, index, last);
        let (p3, cust) = (self.zone("p3"), self.zone("cust"));
        for (last, host, confirms) in [
            (10, format!("mta1.{p3}"), 10),
            (11, format!("mta2.{p3}"), 12),
            (12, format!("mta2.{p3}"), 12),
            (20, format!("mail.d1.{cust}"), 20),
            (21, format!("x.{cust}"), 21),
        ] {
            self.ptrs.push((last, host.clone()));
            let a = &mut self.hosts.entry(host).or_default().a;
            if !a.contains(&rev(confirms)) {
                a.push(rev(confirms));
            }
        }
        self.special
            .extend([9, 10, 11, 12, 13, 20, 21, 22].map(|l| IpAddr::V4(rev(l))));
    }

    /// An address near one of the world's anchors (rarely the first or last address).
    pub fn addr4(&mut self) -> Ipv4Addr {
        let anchor = if self.chance(30) {
            self.pick(&[0, u32::MAX])
        } else {
            self.pick(&self.anchors4.clone())
        };
        let spread = 4 + self.rng.below(21) as u32;
        Ipv4Addr::from(anchor ^ (self.rng.next_u64() as u32 & ((1u32 << spread) - 1)))
    }

    pub fn addr6(&mut self) -> Ipv6Addr {
        let anchor = if self.chance(30) {
            self.pick(&[0, u128::MAX])
        } else {
            self.pick(&self.anchors6.clone())
        };
        let spread = 8 + self.rng.below(93) as u32;
        Ipv6Addr::from(anchor ^ (u128::from(self.rng.ipv6()) & ((1u128 << spread) - 1)))
    }

    fn len4(&mut self) -> u8 {
        // At least /3: viaspf 0.6 panics on /0 (see `plus_all`), and the edge anchors
        // with /1s would make one.
        if self.chance(40) {
            3 + self.rng.below(5) as u8
        } else if self.chance(4) {
            8 + self.rng.below(9) as u8
        } else {
            17 + self.rng.below(16) as u8
        }
    }

    fn len6(&mut self) -> u8 {
        if self.chance(40) {
            return 3 + self.rng.below(29) as u8;
        }
        match self.rng.below(4) {
            0 | 1 => 32 + self.rng.below(33) as u8,
            2 => 65 + self.rng.below(32) as u8,
            _ => 97 + self.rng.below(32) as u8,
        }
    }

    /// One `ip4`/`ip6` term, or a narrower `-`/`~`/`?` range shadowing the pass range
    /// after it.
    pub fn ip_terms(&mut self) -> Vec<Term> {
        let v4 = !self.chance(3);
        let net = if v4 {
            let len = self.len4();
            IpNet::V4(Ipv4Net::new(self.addr4(), len).unwrap())
        } else if self.chance(25) {
            // IPv4-mapped: receivers evaluate such clients as IPv4, so it never matches.
            let len = 100 + self.rng.below(29) as u8;
            IpNet::V6(Ipv6Net::new(self.addr4().to_ipv6_mapped(), len).unwrap())
        } else {
            let len = self.len6();
            IpNet::V6(Ipv6Net::new(self.addr6(), len).unwrap())
        };
        let net = if self.chance(6) { net } else { net.trunc() };
        if !self.chance(4) || net.prefix_len() == net.max_prefix_len() {
            let q = self.qual(3);
            return vec![Term::new(q, Mech::Ip(net))];
        }
        let max_delta = if v4 { 6 } else { 8 };
        let len = (net.prefix_len() + 1 + self.rng.below(max_delta) as u8).min(net.max_prefix_len());
        let inner = match net.trunc() {
            IpNet::V4(n) => IpNet::V4(Ipv4Net::new(ip4_in(n, self.rng.ipv4()), len).unwrap().trunc()),
            IpNet::V6(n) => IpNet::V6(Ipv6Net::new(ip6_in(n, self.rng.ipv6()), len).unwrap().trunc()),
        };
        let q = self.pick(&['-', '~', '?']);
        vec![Term::new(q, Mech::Ip(inner)), Term::new('+', Mech::Ip(net))]
    }

    /// Every network a domain's tree mentions (evaluated or not), `a`/`mx` addresses
    /// widened to their CIDR lengths.
    fn networks(&self, domain: &str) -> Vec<IpNet> {
        let (mut seen, mut todo, mut nets) = (BTreeSet::new(), vec![domain.to_string()], Vec::new());
        while let Some(name) = todo.pop() {
            let name = self.canon(&name).to_string();
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(rec) = self.records.get(&name) else {
                continue;
            };
            todo.extend(rec.redirect.iter().cloned());
            for t in rec.terms.iter().chain(&rec.after_all) {
                match &t.mech {
                    Mech::Ip(net) => nets.push(net.trunc()),
                    Mech::Include(x) => todo.push(x.clone()),
                    Mech::A(h, c4, c6) => {
                        nets.extend(self.host_nets(h.as_deref().unwrap_or(&name), *c4, *c6))
                    }
                    Mech::Mx(h, c4, c6) => {
                        let mx = self
                            .hosts
                            .get(self.canon(h.as_deref().unwrap_or(&name)))
                            .map(|h| h.mx.clone());
                        for x in mx.unwrap_or_default() {
                            nets.extend(self.host_nets(&x, *c4, *c6));
                        }
                    }
                    Mech::Exists(..) | Mech::Ptr(_) => {}
                }
            }
        }
        nets
    }

    fn host_nets(&self, name: &str, c4: Option<u8>, c6: Option<u8>) -> Vec<IpNet> {
        let Some(h) = self.hosts.get(self.canon(name)) else {
            return Vec::new();
        };
        let v4 =
            h.a.iter()
                .map(|a| IpNet::V4(Ipv4Net::new(*a, c4.unwrap_or(32)).unwrap().trunc()));
        let v6 = h
            .aaaa
            .iter()
            .map(|a| IpNet::V6(Ipv6Net::new(*a, c6.unwrap_or(128)).unwrap().trunc()));
        v4.chain(v6).collect()
    }

    /// Boundaries of every network (sampled beyond `MAX_BOUNDARIES`), addresses near
    /// them, random ones far away, the special addresses and a few IPv4-mapped ones.
    pub fn probes(&self, domain: &str) -> Vec<IpAddr> {
        let nets = self.networks(domain);
        let n = self.domains.iter().position(|d| d == domain).unwrap() as u64;
        let mut rng = Prng::new(self.seed * 16 + n);
        let mut ips: Vec<IpAddr> = nets.iter().flat_map(net_boundaries).collect();
        ips.sort();
        ips.dedup();
        while ips.len() > MAX_BOUNDARIES {
            ips.swap_remove(rng.below(ips.len() as u64) as usize);
        }
        if !nets.is_empty() {
            ips.extend(rng.ips_near(&nets, 40));
        }
        for _ in 0..4 {
            ips.extend([IpAddr::V4(rng.ipv4()), IpAddr::V6(rng.ipv6())]);
        }
        ips.extend(&self.special);
        let mapped: Vec<IpAddr> = self
            .special
            .iter()
            .chain(&ips)
            .filter_map(|ip| match ip {
                IpAddr::V4(a) => Some(IpAddr::V6(a.to_ipv6_mapped())),
                IpAddr::V6(_) => None,
            })
            .take(self.special.len() + 3)
            .collect();
        ips.extend(mapped);
        ips.sort();
        ips.dedup();
        ips
    }
}

/// `%{i}`: dotted decimal, or 32 dot-separated nibbles for IPv6 (RFC 7208 7.3).
pub fn i_macro(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (0..32)
                .rev()
                .map(|i| format!("{:x}", (v >> (4 * i)) & 0xf))
                .collect::<Vec<_>>()
                .join(".")
        }
    }
}

/// `%{ir}.%{v}`: the label spfd's macro head makes receivers ask.
pub fn ir_v(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let labels = i_macro(ip);
    let reversed: Vec<&str> = labels.split('.').rev().collect();
    let v = if ip.is_ipv4() { "in-addr" } else { "ip6" };
    format!("{}.{v}", reversed.join("."))
}

fn ip4_in(net: Ipv4Net, random: Ipv4Addr) -> Ipv4Addr {
    let mask = u32::from(net.hostmask());
    Ipv4Addr::from(u32::from(net.network()) | (u32::from(random) & mask))
}

fn ip6_in(net: Ipv6Net, random: Ipv6Addr) -> Ipv6Addr {
    let mask = u128::from(net.hostmask());
    Ipv6Addr::from(u128::from(net.network()) | (u128::from(random) & mask))
}
