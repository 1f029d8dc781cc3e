//! Test helpers: flattening an in-memory world, publishing the chain into a copy of
//! it, and comparing check_host() of the source (limits lifted) with check_host() of
//! the published records (limits on) on every set boundary and on random addresses.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use crate::flatten::{Chain, ExpandOptions, Expansion, FlattenError, LastGood, Rule, flatten};
use crate::names::normalize;
use crate::spf::{EvalOptions, MemoryDns, Query, Record, SpfResult, check_host, check_record};

pub fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A mail domain, the zone it publishes under, its source record and the DNS around
/// it (the source record itself is not in the DNS: it is handed to the flattener).
pub struct World {
    pub domain: String,
    pub zone: String,
    pub source: String,
    pub dns: MemoryDns,
}

impl World {
    pub fn new(domain: &str, zone: &str, source: &str) -> Self {
        Self {
            domain: domain.to_string(),
            zone: zone.to_string(),
            source: source.to_string(),
            dns: MemoryDns::new(),
        }
    }

    pub fn record(&self) -> Record {
        Record::parse(&self.source).unwrap_or_else(|e| panic!("{}: {e}", self.source))
    }

    pub fn flatten_at(&self, memory: &mut LastGood, now: u64) -> Result<(Expansion, Chain), FlattenError> {
        let opts = ExpandOptions::at(now);
        let zone = Name::from_ascii(&self.zone).unwrap();
        let owner_redirect = normalize(&self.zone) != normalize(&self.domain);
        block(flatten(
            &self.dns,
            &self.domain,
            &self.record(),
            &zone,
            owner_redirect,
            memory,
            &opts,
        ))
    }

    pub fn flatten(&self) -> (Expansion, Chain) {
        self.flatten_at(&mut LastGood::new(), 1_000_000)
            .unwrap_or_else(|e| panic!("{}: {e}", self.source))
    }

    /// The DNS with the chain published, and the domain's redirect to the zone.
    pub fn published(&self, chain: &Chain) -> MemoryDns {
        let mut dns = self.dns.clone();
        for (name, strings) in chain.records() {
            dns.add_txt(name, &strings.concat());
        }
        if normalize(&self.zone) != normalize(&self.domain) {
            dns.add_txt(&self.domain, &format!("v=spf1 redirect={}", chain.zone));
        }
        dns
    }

    /// Asserts the published chain gives the source's result for every test
    /// address (set boundaries, `extra`, random ones); returns how many were compared.
    pub fn assert_equivalent(&self, expansion: &Expansion, chain: &Chain, extra: &[&str]) -> usize {
        let published = self.published(chain);
        let record = self.record();
        let mut points = boundaries(expansion);
        points.extend(extra.iter().map(|ip| ip.parse::<IpAddr>().unwrap()));
        points.extend(random_points(expansion, 300));
        for ip in &points {
            let query = Query::new(*ip, &format!("someone@{}", self.domain), "mail.example.org");
            let want = block(check_record(
                &self.dns,
                &record,
                &self.domain,
                &query,
                &EvalOptions::without_limits(),
            ));
            let got = block(check_host(
                &published,
                &self.domain,
                &query,
                &EvalOptions::default(),
            ));
            assert_eq!(
                got.result,
                want.result,
                "{ip}: published {got} but source {want}\n{}",
                chain.zone_lines(300)
            );
            assert!(
                !matches!(got.result, SpfResult::PermError | SpfResult::TempError),
                "{ip}: {got}"
            );
            assert!(got.lookups <= 10, "{ip}: {got:?}");
        }
        points.len()
    }
}

/// The first and last address of every range in every set, and one below and
/// one above.
fn boundaries(expansion: &Expansion) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let (v4, v6) = all_sets(expansion);
    for set in &v4 {
        for (lo, hi) in set.ranges() {
            let (lo, hi) = (u32::from(lo), u32::from(hi));
            for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                out.push(IpAddr::V4(Ipv4Addr::from(x)));
            }
        }
    }
    for set in &v6 {
        for (lo, hi) in set.ranges() {
            let (lo, hi) = (u128::from(lo), u128::from(hi));
            for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                out.push(IpAddr::V6(Ipv6Addr::from(x)));
            }
        }
    }
    out
}

fn all_sets(expansion: &Expansion) -> (Vec<crate::flatten::Ip4Set>, Vec<crate::flatten::Ip6Set>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for rule in &expansion.rules {
        if let Rule::Static { v4: a, v6: b, .. } = rule {
            v4.push(a.clone());
            v6.push(b.clone());
        }
    }
    for d in &expansion.details {
        v4.extend([d.v4.clone(), d.held_v4.clone()]);
        v6.extend([d.v6.clone(), d.held_v6.clone()]);
    }
    (v4, v6)
}

/// xorshift64*: deterministic, so a failure reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

/// Random addresses: half uniform, half inside some range of the sets (so that
/// matches are tried as often as misses).
fn random_points(expansion: &Expansion, n: usize) -> Vec<IpAddr> {
    let mut rng = Rng::new(0x5eed);
    let (v4, v6) = all_sets(expansion);
    let ranges4: Vec<(u32, u32)> = v4
        .iter()
        .flat_map(|s| s.ranges().map(|(a, b)| (a.into(), b.into())).collect::<Vec<_>>())
        .collect();
    let ranges6: Vec<(u128, u128)> = v6
        .iter()
        .flat_map(|s| s.ranges().map(|(a, b)| (a.into(), b.into())).collect::<Vec<_>>())
        .collect();
    let mut out = Vec::new();
    for i in 0..n {
        let inside = i % 2 == 1;
        let ip = if i % 4 < 2 {
            let x = rng.next() as u32;
            let x = match ranges4.get(rng.next() as usize % ranges4.len().max(1)) {
                Some(&(lo, hi)) if inside => lo + x % (hi - lo).saturating_add(1).max(1),
                _ => x,
            };
            IpAddr::V4(Ipv4Addr::from(x))
        } else {
            let x = rng.next_u128();
            let x = match ranges6.get(rng.next() as usize % ranges6.len().max(1)) {
                Some(&(lo, hi)) if inside => lo + x % (hi - lo).saturating_add(1).max(1),
                _ => x,
            };
            IpAddr::V6(Ipv6Addr::from(x))
        };
        out.push(ip);
    }
    out
}
