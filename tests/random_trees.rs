//! Randomised differential test of flattening and macro mode: seeded generators build
//! provider trees no hand-written test has seen (nested includes, redirects in and out
//! of includes, overlapping and shadowed ranges, `a`/`mx` with CIDR lengths, mixed case,
//! `%{d}` macros, split and long TXT records, `exists`/`ptr` kept for the receiver), a
//! real upstream DNS server serves them, spfd publishes each mail domain, and viaspf
//! compares every client address's result of the source (limits lifted) with that of the
//! published records (RFC limits). A failure names its seed and prints the zones;
//! `SPFD_RANDOM_SEEDS=53 cargo test --test random_trees` replays one seed (or explores
//! others).
//!
//! What the generator keeps out, and why:
//! - terms left to receivers (`exists`, `ptr`, includes of targets that have them)
//!   costing more than 4 lookups or 2 void lookups: flatten mode refuses more than 10 in
//!   all (by design), macro mode publishes them anyway (receivers then answer
//!   permerror), and void lookups of terms the owner wrote live are the owner's;
//! - `/0` networks, and `+all` in provider records in flatten mode (whose flattened
//!   set can be a whole family): viaspf 0.6 panics on a /0 prefix;
//! - loops and broken targets, except in the refusal test.
//!
//! A tree that needs more than 10 lookups even flattened (many CIDRs) is refused by
//! spfd in flatten mode, as documented; the test accepts that for a few domains.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/stage.rs"]
mod stage;
#[path = "common/upstream.rs"]
mod upstream;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::sync::Semaphore;

use common::*;
use oracle::{Limits, Oracle, Prng, net_boundaries};
use stage::{policy, tcp_query};
use upstream::Upstream;

/// One world per seed; a failure is replayed by running its seed alone.
const SEEDS: &[u64] = &[3, 17, 29, 41, 53, 67, 79, 97, 101, 113];
const DOMAINS_PER_WORLD: usize = 3;
/// CIDR boundaries probed per domain at most (a deterministic sample beyond that).
const MAX_BOUNDARIES: usize = 200;

/// What `exists` terms put before `._e.<zone>`: the client address, reversed with its
/// family, or the sender's domain (which, unlike `%{d}`, is not where the term is).
const EXISTS_MACROS: [&str; 3] = ["%{i}", "%{ir}.%{v}", "%{o}"];

/// A qualifier as written: `+ - ~ ?`.
type Qual = char;

#[derive(Clone, Debug)]
enum Mech {
    /// As written: host bits after the prefix may be set.
    Ip(IpNet),
    Include(String),
    /// `a` / `mx`: the name (`None`: the record's own) and the CIDR lengths.
    A(Option<String>, Option<u8>, Option<u8>),
    Mx(Option<String>, Option<u8>, Option<u8>),
    /// `exists:<macro>._e.<zone>`, the macro one of `EXISTS_MACROS`.
    Exists(String, usize),
    /// `ptr` (`None`: the record's own name) or `ptr:<domain>`.
    Ptr(Option<String>),
}

#[derive(Clone, Debug)]
struct Term {
    q: Qual,
    mech: Mech,
}

#[derive(Clone, Debug, Default)]
struct Rec {
    terms: Vec<Term>,
    all: Option<Qual>,
    /// Followed only when there is no `all` (RFC 7208 6.1).
    redirect: Option<String>,
    /// The redirect is written `%{l}._r.<zone>` (the target is `postmaster._r.<zone>`
    /// for the oracle's sender): it depends on the message.
    redirect_macro: bool,
    /// Written after `all`: never evaluated.
    after_all: Vec<Term>,
    /// `exp=`: changes no result, but must survive rewriting.
    exp: bool,
}

impl Term {
    fn new(q: Qual, mech: Mech) -> Term {
        Term { q, mech }
    }
}

impl Rec {
    fn followed_redirect(&self) -> Option<&str> {
        self.redirect.as_deref().filter(|_| self.all.is_none())
    }
}

#[derive(Clone, Debug, Default)]
struct Host {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    mx: Vec<String>,
}

/// A tree that cannot be flattened, for the refusal test.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Loop,
    NoSpf,
    Missing,
    TwoRecords,
    Invalid,
}

/// One seed's upstream world: providers `p1`, `p2` (static) and `p3` (with terms that
/// depend on the message), the customer zone `cust` with the mail domains, and a reverse
/// zone for `ptr`, all under `s<seed>.gen.test`.
struct World {
    seed: u64,
    /// Whether provider records may end in `+all`. Where such a record is included, the
    /// flattened set can be a whole family (`ip6:::/0`), and viaspf 0.6 panics on a /0
    /// (a shift overflow), so flatten mode, judged by viaspf, cannot have them.
    plus_all: bool,
    base: String,
    rng: Prng,
    records: BTreeMap<String, Rec>,
    /// The TXT strings each record is published with (rendered once: zones and policies
    /// carry the same text).
    texts: BTreeMap<String, Vec<String>>,
    /// TXT records that are not one valid SPF record (for faults).
    raw_txt: Vec<(String, String)>,
    hosts: BTreeMap<String, Host>,
    /// CNAMEs (alias → canonical name, in the same zone) to records and hosts: a record
    /// reached through one is evaluated with `%{d}` the alias (RFC 7208 4.3).
    aliases: BTreeMap<String, String>,
    /// `exists` hits: names answering A 127.0.0.2.
    hits: BTreeSet<String>,
    rev_zone: String,
    ptrs: Vec<(u8, String)>,
    domains: Vec<String>,
    /// Addresses with an `exists` hit or a PTR record, probed for every domain.
    special: Vec<IpAddr>,
    anchors4: Vec<u32>,
    anchors6: Vec<u128>,
    roots: Vec<String>,
    /// Finished records (new records point only at these or at new children, so there
    /// is no loop), and whether each may hold message-dependent terms.
    done: Vec<(String, bool)>,
    next_id: usize,
}

impl World {
    fn new(seed: u64, index: u8, domains: usize, plus_all: bool) -> World {
        let mut rng = Prng::new(seed);
        let anchors4 = (0..4).map(|_| rng.next_u64() as u32).collect();
        let anchors6 = (0..3).map(|_| u128::from(rng.ipv6())).collect();
        let base = format!("s{seed}.gen.test");
        let mut w = World {
            seed,
            plus_all,
            rev_zone: format!("{index}.18.198.in-addr.arpa"),
            base,
            rng,
            records: BTreeMap::new(),
            texts: BTreeMap::new(),
            raw_txt: Vec::new(),
            hosts: BTreeMap::new(),
            aliases: BTreeMap::new(),
            hits: BTreeSet::new(),
            ptrs: Vec::new(),
            domains: Vec::new(),
            special: Vec::new(),
            anchors4,
            anchors6,
            roots: Vec::new(),
            done: Vec::new(),
            next_id: 0,
        };
        w.specials(index);
        for k in 1..=3 {
            w.provider(k);
        }
        for n in 1..=domains {
            let domain = format!("d{n}.cust.{}", w.base);
            w.top(&domain);
            w.domains.push(domain);
        }
        w
    }

    fn zone(&self, name: &str) -> String {
        format!("{name}.{}", self.base)
    }

    /// The name an alias stands for (a name that is no alias stands for itself).
    fn canon<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// Sometimes a new CNAME to `name` instead of `name`.
    fn maybe_alias(&mut self, name: String, one_in: u64) -> String {
        if !self.chance(one_in) {
            return name;
        }
        let zone = name.rsplitn(5, '.').take(4).collect::<Vec<_>>();
        let zone = zone.into_iter().rev().collect::<Vec<_>>().join(".");
        let alias = format!("_al{}.{zone}", self.id());
        self.aliases.insert(alias.clone(), name);
        alias
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.rng.below(one_in) == 0
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len() as u64) as usize].clone()
    }

    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    /// `exists` hits for three IPv4 and one IPv6 address, and reverse names: .10 and .12
    /// confirm to p3's mta1/mta2, .11 claims mta2 without confirming, .20 confirms under
    /// the first mail domain, .21 under the customer zone.
    fn specials(&mut self, index: u8) {
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
    fn addr4(&mut self) -> Ipv4Addr {
        let anchor = if self.chance(30) {
            self.pick(&[0, u32::MAX])
        } else {
            self.pick(&self.anchors4.clone())
        };
        let spread = 4 + self.rng.below(21) as u32;
        Ipv4Addr::from(anchor ^ (self.rng.next_u64() as u32 & ((1u32 << spread) - 1)))
    }

    fn addr6(&mut self) -> Ipv6Addr {
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

    /// Mostly pass.
    fn qual(&mut self, pass_in: u64) -> Qual {
        if self.rng.below(pass_in) != 0 {
            '+'
        } else {
            self.pick(&['-', '~', '?'])
        }
    }

    /// One `ip4`/`ip6` term, or a narrower `-`/`~`/`?` range shadowing the pass range
    /// after it.
    fn ip_terms(&mut self) -> Vec<Term> {
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

    /// A host with 1-2 A and 0-2 AAAA records; one in eight has none (no match).
    fn make_host(&mut self, name: &str) {
        let mut host = self.hosts.get(name).cloned().unwrap_or_default();
        if !self.chance(8) {
            for _ in 0..1 + self.rng.below(2) {
                host.a.push(self.addr4());
            }
            for _ in 0..self.rng.below(3) {
                host.aaaa.push(self.addr6());
            }
            if self.chance(12) {
                host.aaaa.push(host.a[0].to_ipv6_mapped());
            }
        }
        self.hosts.insert(name.to_string(), host);
    }

    /// An existing host of `zone` or a new one.
    fn host(&mut self, zone: &str) -> String {
        let prefix = "h";
        let existing: Vec<String> = self
            .hosts
            .keys()
            .filter(|h| h.starts_with(prefix) && h.ends_with(zone))
            .cloned()
            .collect();
        if !existing.is_empty() && self.chance(2) {
            return self.pick(&existing);
        }
        let name = format!("h{}.{zone}", self.id());
        self.make_host(&name);
        name
    }

    fn cidrs(&mut self) -> (Option<u8>, Option<u8>) {
        let c4 = self.chance(2).then(|| 16 + self.rng.below(17) as u8);
        let c6 = self.chance(2).then(|| 48 + self.rng.below(81) as u8);
        (c4, c6)
    }

    fn a_term(&mut self, at: &str, zone: &str) -> Term {
        let host = if self.chance(4) {
            if !self.hosts.contains_key(at) {
                self.make_host(at);
            }
            None
        } else {
            let host = self.host(zone);
            Some(self.maybe_alias(host, 6))
        };
        let (c4, c6) = self.cidrs();
        Term::new(self.qual(5), Mech::A(host, c4, c6))
    }

    fn mx_term(&mut self, at: &str, zone: &str) -> Term {
        let name = if self.chance(4) {
            at.to_string()
        } else {
            format!("mx{}.{zone}", self.id())
        };
        if self.hosts.get(&name).is_none_or(|h| h.mx.is_empty()) {
            let exchanges = if self.chance(12) {
                vec![".".to_string()] // a null MX (RFC 7505): no host
            } else {
                (0..1 + self.rng.below(3)).map(|_| self.host(zone)).collect()
            };
            self.hosts.entry(name.clone()).or_default().mx = exchanges;
        }
        let (c4, c6) = self.cidrs();
        let host = (name != at).then_some(name);
        Term::new(self.qual(5), Mech::Mx(host, c4, c6))
    }

    fn provider(&mut self, k: usize) {
        let zone = self.zone(&format!("p{k}"));
        let dynamic = k == 3;
        let root = if self.chance(2) {
            zone.clone()
        } else {
            format!("_spf.{zone}")
        };
        let mut left = if dynamic { 3 } else { 9 };
        self.record(&root, &zone, 1, dynamic, &mut left);
        self.roots.push(root);
    }

    /// Generates the record at `name` (depth 1: what customers include), the new records
    /// it points at first.
    fn record(&mut self, name: &str, zone: &str, depth: usize, dynamic: bool, left: &mut usize) {
        *left = left.saturating_sub(1);
        let mut rec = Rec::default();
        // Nested includes: more near the root, none at depth 4.
        for _ in 0..4usize.saturating_sub(depth) {
            if self.chance(2)
                && let Some(t) = self.target(zone, depth, dynamic, left)
            {
                rec.terms.push(Term::new(self.qual(6), Mech::Include(t)));
            }
        }
        for _ in 0..1 + self.rng.below(5) {
            match self.rng.below(20) {
                9..=12 => match self.target(zone, depth, dynamic, left) {
                    Some(t) => rec.terms.push(Term::new(self.qual(6), Mech::Include(t))),
                    None => rec.terms.extend(self.ip_terms()),
                },
                13 | 14 => rec.terms.push(self.a_term(name, zone)),
                15 | 16 => rec.terms.push(self.mx_term(name, zone)),
                17 | 18 if dynamic => rec.terms.push(self.dynamic_term(zone)),
                _ => rec.terms.extend(self.ip_terms()),
            }
        }
        if self.chance(6) {
            // A long record: more than one 255-octet string.
            for _ in 0..15 + self.rng.below(15) {
                let t = self.ip_terms().pop().unwrap();
                rec.terms.push(t);
            }
        }
        if self.chance(25) {
            rec = Rec::default(); // `v=spf1` alone: neutral for everyone
        }
        self.ending(&mut rec, zone, depth, dynamic, left);
        if self.chance(6) {
            // Other TXT records at the same name, some looking like SPF.
            let decoy = self.pick(&[
                "v=spf10 +all",
                "spf1 -all",
                "v=DMARC1; p=none",
                "verification=4f2a9c1e",
            ]);
            self.raw_txt.push((name.to_string(), decoy.to_string()));
        }
        self.records.insert(name.to_string(), rec);
        self.done.push((name.to_string(), dynamic));
    }

    /// A provider record's `all` (or none), redirect (followed, ignored beside an `all`,
    /// or depending on the message), terms after `all` and `exp=`.
    fn ending(&mut self, rec: &mut Rec, zone: &str, depth: usize, dynamic: bool, left: &mut usize) {
        rec.all = match self.rng.below(30) {
            0..=8 => Some('~'),
            9..=14 => Some('-'),
            15..=17 => Some('?'),
            18 if self.plus_all => Some('+'),
            _ => None,
        };
        if dynamic && rec.all.is_none() && self.chance(3) {
            rec.redirect = Some(self.macro_target(zone));
            rec.redirect_macro = true;
        } else if rec.all.is_none() && self.chance(2) || rec.all.is_some() && self.chance(8) {
            rec.redirect = self.target(zone, depth, dynamic, left);
        }
        if rec.all.is_some() && self.chance(8) {
            rec.after_all = self.ip_terms();
        }
        rec.exp = self.chance(12);
    }

    /// An include or redirect target: a new child record, or a finished one (the dynamic
    /// provider only points within itself, so customers can afford it).
    fn target(&mut self, zone: &str, depth: usize, dynamic: bool, left: &mut usize) -> Option<String> {
        let max_depth = if dynamic { 2 } else { 4 };
        let eligible: Vec<String> = self
            .done
            .iter()
            .filter(|(n, d)| if dynamic { n.ends_with(zone) } else { !d })
            .map(|(n, _)| n.clone())
            .collect();
        if *left > 0 && depth < max_depth && (eligible.is_empty() || !self.chance(3)) {
            let child = format!("_n{}.{zone}", self.id());
            self.record(&child, zone, depth + 1, dynamic, left);
            return Some(self.maybe_alias(child, 10));
        }
        let reused = (!eligible.is_empty()).then(|| self.pick(&eligible));
        reused.map(|t| self.maybe_alias(t, 5))
    }

    /// The record `redirect=%{l}._r.<zone>` reaches for the oracle's sender (postmaster).
    fn macro_target(&mut self, zone: &str) -> String {
        let name = format!("postmaster._r.{zone}");
        if !self.records.contains_key(&name) {
            let mut rec = Rec {
                all: Some(self.pick(&['-', '~', '?'])),
                ..Rec::default()
            };
            for _ in 0..1 + self.rng.below(3) {
                rec.terms.extend(self.ip_terms());
            }
            self.records.insert(name.clone(), rec);
        }
        name
    }

    fn dynamic_term(&mut self, zone: &str) -> Term {
        let mech = if self.chance(2) {
            Mech::Exists(zone.to_string(), self.rng.below(3) as usize)
        } else {
            Mech::Ptr(self.chance(2).then(|| zone.to_string()))
        };
        Term::new(self.qual(4), mech)
    }

    /// A mail domain's source record, retried (then stripped of terms that may be live)
    /// until what spfd must leave to receivers costs at most 4 lookups and 2 void
    /// lookups (see the module documentation).
    fn top(&mut self, domain: &str) {
        for attempt in 0..12 {
            let rec = self.random_top(domain, attempt < 8);
            self.records.insert(domain.to_string(), rec);
            let (lookups, voids) = self.kept(domain);
            if lookups <= 4 && voids <= 2 {
                return;
            }
        }
        let mut rec = self.records[domain].clone();
        rec.terms.retain(|t| matches!(t.mech, Mech::Ip(_)));
        rec.redirect = None;
        self.records.insert(domain.to_string(), rec);
    }

    fn random_top(&mut self, domain: &str, dynamic: bool) -> Rec {
        let cust = self.zone("cust");
        let mut rec = Rec::default();
        let targets: Vec<String> = if dynamic {
            self.done.iter().map(|(n, _)| n.clone()).collect()
        } else {
            self.done
                .iter()
                .filter(|(_, d)| !d)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let roots: Vec<String> = self
            .roots
            .iter()
            .filter(|r| targets.contains(r))
            .cloned()
            .collect();
        for _ in 0..1 + self.rng.below(3) {
            let t = if self.chance(3) {
                self.pick(&targets)
            } else {
                self.pick(&roots)
            };
            rec.terms.push(Term::new(self.qual(8), Mech::Include(t)));
        }
        for _ in 0..self.rng.below(4) {
            rec.terms.extend(self.ip_terms());
        }
        if self.chance(3) {
            let t = if self.chance(2) {
                self.a_term(domain, &cust)
            } else {
                self.mx_term(domain, &cust)
            };
            rec.terms.push(t);
        }
        if dynamic && self.chance(3) {
            rec.terms.push(self.dynamic_term(&cust));
        }
        self.shuffle(&mut rec.terms);
        match self.rng.below(12) {
            0..=3 => rec.all = Some('~'),
            4..=6 => rec.all = Some('-'),
            7 => rec.all = Some('?'),
            8 => rec.all = Some('+'),
            _ => {}
        }
        if rec.all.is_none() && self.chance(2) || self.chance(10) {
            rec.redirect = Some(self.pick(&targets));
        }
        rec.exp = self.chance(6);
        rec
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
    }

    fn has_both(&self, name: &str) -> bool {
        self.hosts
            .get(self.canon(name))
            .is_some_and(|h| !h.a.is_empty() && !h.aaaa.is_empty())
    }

    /// Whether the record's result depends on the message (spfd keeps it live).
    fn dynamic(&self, name: &str) -> bool {
        let rec = &self.records[self.canon(name)];
        rec.terms.iter().any(|t| match &t.mech {
            Mech::Exists(..) | Mech::Ptr(_) => true,
            Mech::Include(x) => self.dynamic(x),
            _ => false,
        }) || rec
            .followed_redirect()
            .is_some_and(|r| rec.redirect_macro || self.dynamic(r))
    }

    /// (DNS lookups, void lookups at worst) of evaluating the record live (RFC 7208
    /// 4.6.4); an `a`/`mx` host without A or AAAA may be a void lookup.
    fn live(&self, name: &str) -> (usize, usize) {
        let rec = &self.records[self.canon(name)];
        let mut sum = (0, 0);
        for t in &rec.terms {
            let (c, v) = match &t.mech {
                Mech::Ip(_) => (0, 0),
                Mech::Include(x) => self.live(x),
                Mech::A(h, ..) => (0, usize::from(!self.has_both(h.as_deref().unwrap_or(name)))),
                Mech::Mx(h, ..) => {
                    let host = self.hosts.get(self.canon(h.as_deref().unwrap_or(name)));
                    let host = host.cloned().unwrap_or_default();
                    let bad = host.mx.iter().filter(|x| !self.has_both(x)).count();
                    (0, bad + usize::from(host.mx.is_empty()))
                }
                Mech::Exists(..) | Mech::Ptr(_) => (0, 1),
            };
            let cost = usize::from(!matches!(t.mech, Mech::Ip(_)));
            sum = (sum.0 + cost + c, sum.1 + v);
        }
        if let Some(r) = rec.followed_redirect() {
            let (c, v) = self.live(r);
            sum = (sum.0 + 1 + c, sum.1 + v);
        }
        sum
    }

    /// (lookups, voids) of the terms spfd must leave to receivers: `exists`, `ptr` and
    /// includes of message-dependent targets, a redirect target's moved in.
    fn kept(&self, name: &str) -> (usize, usize) {
        let rec = &self.records[self.canon(name)];
        let mut sum = (0, 0);
        for t in &rec.terms {
            let (c, v) = match &t.mech {
                Mech::Exists(..) | Mech::Ptr(_) => (1, 1),
                Mech::Include(x) if self.dynamic(x) => {
                    let (c, v) = self.live(x);
                    (1 + c, v)
                }
                _ => (0, 0),
            };
            sum = (sum.0 + c, sum.1 + v);
        }
        if let Some(r) = rec.followed_redirect() {
            let (c, v) = if rec.redirect_macro {
                let (c, v) = self.live(r);
                (1 + c, v)
            } else {
                self.kept(r)
            };
            sum = (sum.0 + c, sum.1 + v);
        }
        sum
    }

    /// Makes a record reached from `domain` unflattenable: it includes (or redirects to)
    /// an ancestor, a name with TXT but no SPF, a name that does not exist, a name with
    /// two SPF records, or an invalid record. `harmless`: the same target where it is
    /// never evaluated (after `all`, or a redirect beside an `all`).
    fn inject(&mut self, domain: &str, fault: Fault, harmless: bool) {
        let path = self.random_path(domain);
        let target = self.fault_target(fault, &path);
        let at = self.canon(path.last().unwrap()).to_string();
        let pos = self.rng.below(self.records[&at].terms.len() as u64 + 1) as usize;
        let redirect = self.chance(3);
        let rec = self.records.get_mut(&at).unwrap();
        let include = Term::new('+', Mech::Include(target.clone()));
        if harmless {
            rec.all = rec.all.or(Some('-'));
        }
        match (harmless, redirect) {
            (false, false) => rec.terms.insert(pos, include),
            (true, false) => rec.after_all.push(include),
            (_, true) => {
                (rec.redirect, rec.redirect_macro) = (Some(target), false);
                if !harmless {
                    rec.all = None;
                }
            }
        }
    }

    /// Names from `domain` down through evaluated includes and redirects.
    fn random_path(&mut self, domain: &str) -> Vec<String> {
        let mut path = vec![domain.to_string()];
        loop {
            let rec = &self.records[self.canon(path.last().unwrap())];
            let includes = rec.terms.iter().filter_map(|t| match &t.mech {
                Mech::Include(x) => Some(x.clone()),
                _ => None,
            });
            let mut next: Vec<String> = includes.collect();
            next.extend(rec.followed_redirect().map(str::to_string));
            if next.is_empty() || self.chance(4) {
                return path;
            }
            path.push(self.pick(&next));
        }
    }

    /// The name a faulty term points at (added to the zones as needed).
    fn fault_target(&mut self, fault: Fault, path: &[String]) -> String {
        let p1 = self.zone("p1");
        let mut txt = |name: String, texts: &[&str]| {
            for text in texts {
                self.raw_txt.push((name.clone(), text.to_string()));
            }
            name
        };
        match fault {
            Fault::Loop => self.pick(path),
            Fault::NoSpf => txt(format!("nospf.{p1}"), &["site-verification=4f2a9c1e"]),
            Fault::Missing => format!("nothing.{p1}"),
            Fault::TwoRecords => txt(
                format!("two.{p1}"),
                &["v=spf1 ip4:192.0.2.10 -all", "v=spf1 ip4:192.0.2.11 -all"],
            ),
            Fault::Invalid => txt(format!("bad.{p1}"), &["v=spf1 ip4:192.0.2.10 frobnicate:x -all"]),
        }
    }

    // ---- Rendering ----

    /// Renders every record once (random case, macros, splits).
    fn rendered(mut self) -> World {
        self.render();
        self
    }

    fn render(&mut self) {
        let names: Vec<String> = self.records.keys().cloned().collect();
        for name in names {
            let text = self.record_text(&name);
            let strings = self.split(&text);
            self.texts.insert(name, strings);
        }
    }

    fn record_text(&mut self, at: &str) -> String {
        let rec = self.records[at].clone();
        let mut words: Vec<String> = rec.terms.iter().map(|t| self.term_text(t, at)).collect();
        if let Some(q) = rec.all {
            let all = self.case("all");
            words.push(format!("{}{all}", self.prefix(q)));
        }
        words.extend(
            rec.after_all
                .iter()
                .map(|t| self.term_text(t, at))
                .collect::<Vec<_>>(),
        );
        if let Some(r) = &rec.redirect {
            let target = match r.strip_prefix("postmaster._r.") {
                Some(zone) if rec.redirect_macro => format!("%{{l}}._r.{}", self.name_ref(zone, at)),
                _ => self.name_ref(r, at),
            };
            let word = format!("{}={target}", self.case("redirect"));
            let pos = if self.chance(4) {
                self.rng.below(words.len() as u64 + 1) as usize
            } else {
                words.len()
            };
            words.insert(pos, word);
        }
        if self.chance(10) {
            words.push(format!("x-gen=s{}", self.seed));
        }
        if rec.exp {
            let target = if self.chance(2) {
                "why.%{d}".to_string()
            } else {
                format!("why.{}", self.case(at))
            };
            words.push(format!("{}={target}", self.case("exp")));
        }
        // Terms are separated by one or more spaces, and may be followed by some (4.6.1).
        let sep = if self.chance(8) { "  " } else { " " };
        let end = if self.chance(10) { " " } else { "" };
        std::iter::once("v=spf1".to_string())
            .chain(words)
            .collect::<Vec<_>>()
            .join(sep)
            + end
    }

    fn prefix(&mut self, q: Qual) -> String {
        match q {
            '+' if self.chance(4) => "+".into(),
            '+' => String::new(),
            other => other.to_string(),
        }
    }

    fn term_text(&mut self, t: &Term, at: &str) -> String {
        let q = self.prefix(t.q);
        let cidr = |c4: &Option<u8>, c6: &Option<u8>| {
            c4.map(|c| format!("/{c}")).unwrap_or_default()
                + &c6.map(|c| format!("//{c}")).unwrap_or_default()
        };
        let body = match &t.mech {
            Mech::Ip(net) => {
                let kind = if net.addr().is_ipv4() { "ip4" } else { "ip6" };
                let net = if net.prefix_len() == net.max_prefix_len() && self.chance(2) {
                    net.addr().to_string()
                } else {
                    net.to_string()
                };
                format!("{}:{}", self.case(kind), self.case(&net))
            }
            Mech::Include(x) => format!("{}:{}", self.case("include"), self.name_ref(x, at)),
            Mech::A(h, c4, c6) | Mech::Mx(h, c4, c6) => {
                let kind = if matches!(t.mech, Mech::A(..)) { "a" } else { "mx" };
                let host = match h {
                    Some(h) => format!(":{}", self.name_ref(h, at)),
                    None if self.chance(5) => ":%{d}".to_string(),
                    None => String::new(),
                };
                format!("{}{host}{}", self.case(kind), cidr(c4, c6))
            }
            Mech::Exists(zone, m) => {
                format!(
                    "{}:{}._e.{}",
                    self.case("exists"),
                    EXISTS_MACROS[*m],
                    self.name_ref(zone, at)
                )
            }
            Mech::Ptr(None) => self.case("ptr"),
            Mech::Ptr(Some(d)) => format!("{}:{}", self.case("ptr"), self.name_ref(d, at)),
        };
        q + &body
    }

    /// A name as a record at `at` may write it: mixed case, or through `%{d}`/`%{d4}`
    /// (every zone here is 4 labels: `<zone>.s<seed>.gen.test`).
    fn name_ref(&mut self, target: &str, at: &str) -> String {
        if target == at && self.chance(4) {
            return "%{d}".into();
        }
        let zone_of = |n: &str| n.rsplitn(5, '.').take(4).map(str::to_string).collect::<Vec<_>>();
        if zone_of(target) == zone_of(at) && self.chance(4) {
            let labels = target.split('.').count();
            let rel = target.split('.').take(labels - 4).collect::<Vec<_>>().join(".");
            let rel = self.case(&rel);
            let d4 = if self.chance(4) { "%{D4}" } else { "%{d4}" };
            return if rel.is_empty() {
                d4.into()
            } else {
                format!("{rel}.{d4}")
            };
        }
        let dot = if self.chance(12) { "." } else { "" };
        self.case(target) + dot
    }

    fn case(&mut self, text: &str) -> String {
        if !self.chance(4) {
            return text.to_string();
        }
        let flips = self.rng.next_u64();
        let chars = text.chars().enumerate();
        chars
            .map(|(i, c)| {
                if flips >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// TXT strings of at most 255 octets; short records are sometimes split anyway, in
    /// the middle of a term.
    fn split(&mut self, text: &str) -> Vec<String> {
        if text.len() <= 255 && !self.chance(3) {
            return vec![text.to_string()];
        }
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let n = (20 + self.rng.below(236) as usize).min(rest.len());
            out.push(rest[..n].to_string());
            rest = &rest[n..];
            if self.chance(20) {
                out.push(String::new());
            }
        }
        out
    }

    fn zone_origins(&self) -> Vec<String> {
        let mut zones: Vec<String> = ["p1", "p2", "p3", "cust"].iter().map(|z| self.zone(z)).collect();
        zones.push(self.rev_zone.clone());
        zones
    }

    /// A zone file; `owner_view` is the customer zone once the owner pointed each mail
    /// domain at spfd (`v=spf1 redirect=_spf.<domain>`).
    fn zone_text(&self, origin: &str, owner_view: bool) -> String {
        let mut out = format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ 3600 IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n\
             @ 3600 IN NS ns1.{origin}.\n"
        );
        let inside = |n: &str| n.ends_with(&format!(".{origin}")) || n == origin;
        for (name, strings) in self.texts.iter().filter(|(n, _)| inside(n)) {
            if owner_view && self.domains.contains(name) {
                let _ = writeln!(out, "{name}. 300 IN TXT \"v=spf1 redirect=_spf.{name}\"");
            } else {
                let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
                let _ = writeln!(out, "{name}. 300 IN TXT {}", quoted.join(" "));
            }
        }
        for (name, text) in self.raw_txt.iter().filter(|(n, _)| inside(n)) {
            let _ = writeln!(out, "{name}. 300 IN TXT \"{text}\"");
        }
        for (name, h) in self.hosts.iter().filter(|(n, _)| inside(n)) {
            for a in &h.a {
                let _ = writeln!(out, "{name}. 300 IN A {a}");
            }
            for a in &h.aaaa {
                let _ = writeln!(out, "{name}. 300 IN AAAA {a}");
            }
            for (i, x) in h.mx.iter().enumerate() {
                let x = if x == "." { String::new() } else { x.clone() };
                let _ = writeln!(out, "{name}. 300 IN MX {} {x}.", 10 * i);
            }
        }
        for (alias, name) in self.aliases.iter().filter(|(n, _)| inside(n)) {
            let _ = writeln!(out, "{alias}. 300 IN CNAME {name}.");
        }
        for hit in self.hits.iter().filter(|n| inside(n)) {
            let _ = writeln!(out, "{hit}. 300 IN A 127.0.0.2");
        }
        if origin == self.rev_zone {
            for (last, host) in &self.ptrs {
                let _ = writeln!(out, "{last}.{origin}. 300 IN PTR {host}.");
            }
        }
        out
    }

    fn all_zones(&self) -> String {
        self.zone_origins()
            .iter()
            .map(|z| self.zone_text(z, false))
            .collect()
    }

    fn source(&self, domain: &str) -> String {
        self.texts[domain].concat()
    }

    /// The source as spfd serves it when it cannot flatten it: the same terms, one space
    /// apart.
    fn written(&self, domain: &str) -> String {
        self.source(domain)
            .split_ascii_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
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
    fn probes(&self, domain: &str) -> Vec<IpAddr> {
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
fn i_macro(ip: IpAddr) -> String {
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
fn ir_v(ip: IpAddr) -> String {
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

// ---- The stage: upstream, owner zones, spfd ----

struct Lab {
    world: Upstream,
    owners: Upstream,
    setup: Setup,
    running: spfd::server::Running,
}

impl Lab {
    async fn start(worlds: &[&World], mode: &str) -> Lab {
        let zones = tempfile::tempdir().unwrap();
        let owner_zones = tempfile::tempdir().unwrap();
        for w in worlds {
            for origin in w.zone_origins() {
                std::fs::write(
                    zones.path().join(format!("{origin}.zone")),
                    w.zone_text(&origin, false),
                )
                .unwrap();
            }
            let cust = w.zone("cust");
            std::fs::write(
                owner_zones.path().join(format!("{cust}.zone")),
                w.zone_text(&cust, true),
            )
            .unwrap();
        }
        let world = Upstream::start(zones.path()).await;
        let owners = Upstream::start(owner_zones.path()).await;
        let policies: Vec<(String, String)> = worlds
            .iter()
            .flat_map(|w| {
                w.domains
                    .iter()
                    .map(move |d| (format!("{d}.toml"), policy(d, &w.source(d), mode)))
            })
            .collect();
        let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let setup = Setup::new(&refs);
        std::fs::write(setup.config_path(), config_text() + &world.resolver_config_toml()).unwrap();
        let running = spfd::server::start(&setup.config()).await.unwrap();
        Lab {
            world,
            owners,
            setup,
            running,
        }
    }

    fn spfd(&self) -> SocketAddr {
        self.running.addrs[0]
    }

    /// Waits for the first expansion round: every domain published, or the round over
    /// with some refused (the state file is written after a round; a second more lets a
    /// late policy through). Returns the refused ones.
    async fn first_round(&self, domains: &[String]) -> Vec<String> {
        let state = self.setup.dir.path().join("state/published.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut round_over: Option<Instant> = None;
        loop {
            let missing: Vec<String> = domains
                .iter()
                .filter(|d| self.running.published.get(&format!("{d}.")).is_none())
                .cloned()
                .collect();
            if round_over.is_none() && state.exists() {
                round_over = Some(Instant::now());
            }
            let settled = round_over.is_some_and(|t| t.elapsed() > Duration::from_secs(1));
            if missing.is_empty() || settled || Instant::now() > deadline {
                // Let the reload service swap the snapshot in.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn source_oracle(&self) -> Oracle {
        Oracle::new(self.world.addr)
            .with_limits(Limits::Lifted)
            .with_cache(4096)
    }

    /// Receivers' view: `_spf.<domain>` from spfd, the customer zones as the owner
    /// changed them, everything else from the upstream world.
    fn published_oracle(&self, worlds: &[World]) -> Oracle {
        let mut routes: Vec<(String, SocketAddr)> = vec![(String::new(), self.world.addr)];
        for w in worlds {
            routes.push((w.zone("cust"), self.owners.addr));
            routes.extend(w.domains.iter().map(|d| (format!("_spf.{d}"), self.spfd())));
        }
        let refs: Vec<(&str, SocketAddr)> = routes.iter().map(|(s, a)| (s.as_str(), *a)).collect();
        Oracle::routed(&refs).with_limits(Limits::Rfc).with_cache(4096)
    }
}

/// Source (limits lifted) against published (RFC limits) for every probe of every
/// domain not in `skip`; a disagreement is asked again once, so only a repeatable one
/// counts. Returns (world index, line) per disagreement, and the number of comparisons.
async fn compare(lab: &Lab, worlds: &[World], skip: &[String]) -> (Vec<(usize, String)>, usize) {
    let (source, published) = (lab.source_oracle(), lab.published_oracle(worlds));
    let permits = Arc::new(Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in worlds.iter().enumerate() {
        for d in w.domains.iter().filter(|d| !skip.contains(d)) {
            let (source, published, permits) = (source.clone(), published.clone(), permits.clone());
            let (d, ips) = (d.clone(), w.probes(d));
            tasks.spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                let (want, got) = tokio::join!(source.check_all(&ips, &d), published.check_all(&ips, &d));
                let mut lines = Vec::new();
                for ((ip, w), (_, g)) in want.iter().zip(&got) {
                    if w != g
                        && (source.check(*ip, &d).await, published.check(*ip, &d).await)
                            == (w.clone(), g.clone())
                    {
                        let limit = g == "permerror" && !["permerror", "temperror"].contains(&w.as_str());
                        let tag = if limit { " (published exceeds a limit)" } else { "" };
                        lines.push((i, format!("{d} {ip}: source {w}, published {g}{tag}")));
                    }
                }
                (lines, ips.len())
            });
        }
    }
    let (mut lines, mut count) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (l, n) = done.unwrap();
        lines.extend(l);
        count += n;
    }
    lines.sort();
    (lines, count)
}

/// The chains respect the limits: at most 10 lookups, each record one TXT of at most
/// 450 octets.
async fn check_chains(lab: &Lab, w: &World, skip: &[String], problems: &mut Vec<String>) {
    for d in w.domains.iter().filter(|d| !skip.contains(d)) {
        let entry = lab.running.published.get(&format!("{d}.")).unwrap();
        let Some(chain) = entry.chain.as_ref() else {
            problems.push(format!("{d}: published without a chain"));
            continue;
        };
        if chain.lookups > 10 {
            problems.push(format!("{d}: the chain costs {} lookups", chain.lookups));
        }
        let names = std::iter::once(format!("_spf.{d}")).chain(chain.parts.iter().map(|(n, _)| n.clone()));
        for name in names {
            let texts = tcp_query(lab.spfd(), &format!("{name}.")).await;
            if texts.len() != 1 || texts[0].len() > 450 {
                problems.push(format!(
                    "{name}: {texts:?} (one record of at most 450 octets expected)"
                ));
            }
        }
    }
}

/// Macro mode: the head, and every probe's per-address answer is one short record.
async fn check_macro_answers(lab: &Lab, w: &World, problems: &mut Vec<String>) {
    for d in &w.domains {
        let head = tcp_query(lab.spfd(), &format!("_spf.{d}.")).await;
        if head != [format!("v=spf1 redirect=%{{ir}}.%{{v}}._spf.{d}")] {
            problems.push(format!("{d}: macro head {head:?}"));
        }
        for ip in w.probes(d) {
            let q = query(
                &format!("{}._spf.{d}.", ir_v(ip)),
                hickory_proto::rr::RecordType::TXT,
            );
            let answer =
                hickory_proto::op::Message::from_vec(&udp_raw(lab.spfd(), &q.to_vec().unwrap()).await);
            let texts = txt_joined(&answer.unwrap());
            if texts.len() != 1 || texts[0].len() > 450 {
                problems.push(format!("{d} {ip}: macro answer {texts:?}"));
            }
        }
    }
}

fn world_report(w: &World, lines: &[String]) -> String {
    let mut out = format!("==== seed {} ({} lines) ====\n", w.seed, lines.len());
    for line in lines.iter().take(40) {
        let _ = writeln!(out, "{line}");
    }
    out += "-- source records --\n";
    for d in &w.domains {
        let _ = writeln!(out, "{d}: {}", w.source(d));
    }
    out + "-- zones --\n" + &w.all_zones()
}

/// `SEEDS`, or the comma-separated list in `SPFD_RANDOM_SEEDS` (to replay or explore).
fn seeds() -> Vec<u64> {
    match std::env::var("SPFD_RANDOM_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("a seed"))
            .collect(),
        Err(_) => SEEDS.to_vec(),
    }
}

/// `spfd flatten` for one domain: what it publishes, or why it cannot.
async fn spfd_flatten(lab: &Lab, domain: &str) -> String {
    let (config, domain) = (lab.setup.config_path(), domain.to_string());
    let run = move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spfd"))
            .args(["flatten", "--config", config.to_str().unwrap(), &domain])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    tokio::task::spawn_blocking(run).await.unwrap()
}

/// A refused domain: only the documented refusal (flatten mode, more than 10 lookups
/// even flattened), with the record as written served meanwhile.
async fn check_refused(lab: &Lab, w: &World, d: &str, mode: &str, problems: &mut Vec<String>) {
    let why = spfd_flatten(lab, d).await;
    eprintln!("seed {}: {d} refused: {}", w.seed, why.trim());
    if mode != "flatten" || !why.contains("receivers allow 10") {
        problems.push(format!("{d} not published: {why}"));
    }
    let served = tcp_query(lab.spfd(), &format!("_spf.{d}.")).await;
    if served != [w.written(d)] {
        problems.push(format!("{d} refused but serves {served:?}"));
    }
}

/// Each world with problems: its seed, the problems, its records and zones.
fn report(worlds: &[World], problems: &[(usize, String)]) -> String {
    let mut out = String::new();
    for (i, w) in worlds.iter().enumerate() {
        let lines: Vec<String> = problems
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, l)| l.clone())
            .collect();
        if !lines.is_empty() {
            out += &world_report(w, &lines);
        }
    }
    out
}

async fn equivalence(mode: &str) {
    let started = Instant::now();
    let worlds: Vec<World> = seeds()
        .iter()
        .enumerate()
        .map(|(i, s)| World::new(*s, i as u8, DOMAINS_PER_WORLD, mode == "macro").rendered())
        .collect();
    let lab = Lab::start(&worlds.iter().collect::<Vec<_>>(), mode).await;
    let domains: Vec<String> = worlds.iter().flat_map(|w| w.domains.clone()).collect();
    let refused = lab.first_round(&domains).await;
    assert!(
        refused.len() * 8 <= domains.len().max(8),
        "spfd refused {} of {} domains: the generator no longer tests much",
        refused.len(),
        domains.len()
    );
    let mut problems: Vec<(usize, String)> = Vec::new();
    for (i, w) in worlds.iter().enumerate() {
        let mut found = Vec::new();
        for d in w.domains.iter().filter(|d| refused.contains(d)) {
            check_refused(&lab, w, d, mode, &mut found).await;
        }
        if mode == "flatten" {
            check_chains(&lab, w, &refused, &mut found).await;
        } else {
            check_macro_answers(&lab, w, &mut found).await;
        }
        problems.extend(found.into_iter().map(|p| (i, p)));
    }
    let (lines, count) = compare(&lab, &worlds, &refused).await;
    problems.extend(lines);
    eprintln!(
        "{mode}: {} seeds, {} domains, {count} comparisons, {} refused, {} problems, {:.1?}",
        worlds.len(),
        domains.len(),
        refused.len(),
        problems.len(),
        started.elapsed()
    );
    lab.running.shutdown().await.unwrap();
    let report = report(&worlds, &problems);
    assert!(
        problems.is_empty(),
        "{} problems in mode {mode}:\n{report}",
        problems.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flattened_random_trees_give_every_address_the_source_result() {
    equivalence("flatten").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_answers_for_random_trees_give_every_address_the_source_result() {
    equivalence("macro").await;
}

const FAULTS: [(Fault, &str); 5] = [
    (Fault::Loop, "a loop"),
    (Fault::NoSpf, "has no SPF record"),
    (Fault::Missing, "has no SPF record"),
    (Fault::TwoRecords, "more than one v=spf1"),
    (Fault::Invalid, "is invalid"),
];

/// For three seeds, each fault where it is evaluated and where it is not (`harmless`),
/// in the first domain's tree; the second domain is a control that always flattens.
fn fault_worlds() -> Vec<(World, Fault, &'static str, bool)> {
    let mut worlds = Vec::new();
    for seed in [5u64, 13, 31] {
        for (k, (fault, phrase)) in FAULTS.iter().enumerate() {
            for harmless in [false, true] {
                let seed = seed * 100 + k as u64 * 10 + u64::from(harmless);
                let mut w = World::new(seed, 100 + worlds.len() as u8, 2, false);
                w.inject(&w.domains[0].clone(), *fault, harmless);
                let control = w.records.get_mut(&w.domains[1]).unwrap();
                control.terms.retain(|t| matches!(t.mech, Mech::Ip(_)));
                control.redirect = None;
                worlds.push((w.rendered(), *fault, *phrase, harmless));
            }
        }
    }
    worlds
}

/// Trees spfd must refuse (receivers would answer permerror somewhere, RFC 7208 5.2, 6.1,
/// 4.5): nothing is published in their place and the record as written stays served.
/// The same broken targets where no receiver evaluates them (after `all`, or a redirect
/// beside an `all`) do not stop flattening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_trees_with_a_loop_or_a_broken_target_are_refused_unless_it_is_never_evaluated() {
    let worlds = fault_worlds();
    let all: Vec<&World> = worlds.iter().map(|(w, ..)| w).collect();
    let lab = Lab::start(&all, "flatten").await;
    let domains: Vec<String> = all.iter().flat_map(|w| w.domains.clone()).collect();
    let refused = lab.first_round(&domains).await;
    let mut problems = Vec::new();
    for (w, fault, phrase, harmless) in &worlds {
        let (bad, control) = (&w.domains[0], &w.domains[1]);
        if refused.contains(control) {
            problems.push(format!("{fault:?}: the control {control} was refused"));
        }
        if !harmless && !refused.contains(bad) {
            problems.push(format!(
                "{fault:?}: {bad} was flattened\n{}",
                world_report(w, &[])
            ));
        }
        if !refused.contains(bad) {
            continue;
        }
        let served = tcp_query(lab.spfd(), &format!("_spf.{bad}.")).await;
        if served != [w.written(bad)] {
            problems.push(format!(
                "{fault:?}: {bad} serves {served:?}, not the record as written"
            ));
        }
        // Where it is never evaluated, only the documented refusal of a tree that needs
        // more than 10 lookups even flattened.
        let phrase = if *harmless { "receivers allow 10" } else { phrase };
        let why = spfd_flatten(&lab, bad).await;
        if !why.contains(phrase) {
            let report = world_report(w, &[]);
            problems.push(format!(
                "{fault:?} (harmless: {harmless}): {bad}: expected {phrase:?} in\n{why}\n{report}"
            ));
        }
    }
    let flattened = worlds
        .iter()
        .filter(|(w, .., harmless)| *harmless && !refused.contains(&w.domains[0]));
    let flattened = flattened.count();
    eprintln!(
        "{} trees, {flattened} with a fault never evaluated flattened",
        worlds.len()
    );
    if flattened * 3 < worlds.len() {
        problems.push(format!(
            "only {flattened} trees with a fault never evaluated were flattened"
        ));
    }
    lab.running.shutdown().await.unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
