//! The model the generator builds: SPF records as terms, the hosts they name, and
//! `World`, one seed's whole upstream world, with the few random helpers every step
//! of the generator uses. The generator itself is in `generate`, the addresses in
//! `addresses`, the lookup accounting in `lookups`, the text in `render`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::oracle::Prng;

/// What `exists` terms put before `._e.<zone>`: the client address, reversed with its
/// family, or the sender's domain (which, unlike `%{d}`, is not where the term is).
pub const EXISTS_MACROS: [&str; 3] = ["%{i}", "%{ir}.%{v}", "%{o}"];

/// The SPF mode spfd publishes the mail domains in; worlds are generated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Flatten,
    Macro,
}

impl Mode {
    /// As written in a policy (`mode = "..."`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Flatten => "flatten",
            Mode::Macro => "macro",
        }
    }
}

/// A qualifier as written: `+ - ~ ?`.
pub type Qual = char;

#[derive(Clone, Debug)]
pub enum Mech {
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
pub struct Term {
    pub q: Qual,
    pub mech: Mech,
}

#[derive(Clone, Debug, Default)]
pub struct Rec {
    pub terms: Vec<Term>,
    pub all: Option<Qual>,
    /// Followed only when there is no `all` (RFC 7208 6.1).
    pub redirect: Option<String>,
    /// The redirect is written `%{l}._r.<zone>` (the target is `postmaster._r.<zone>`
    /// for the oracle's sender): it depends on the message.
    pub redirect_macro: bool,
    /// Written after `all`: never evaluated.
    pub after_all: Vec<Term>,
    /// `exp=`: changes no result, but must survive rewriting.
    pub exp: bool,
}

impl Term {
    pub fn new(q: Qual, mech: Mech) -> Term {
        Term { q, mech }
    }
}

impl Rec {
    pub fn followed_redirect(&self) -> Option<&str> {
        self.redirect.as_deref().filter(|_| self.all.is_none())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Host {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    pub mx: Vec<String>,
}

/// One seed's upstream world: providers `p1`, `p2` (static) and `p3` (with terms that
/// depend on the message), the customer zone `cust` with the mail domains, and a reverse
/// zone for `ptr`, all under `s<seed>.gen.test`.
pub struct World {
    pub seed: u64,
    /// Whether provider records may end in `+all`. Where such a record is included, the
    /// flattened set can be a whole family (`ip6:::/0`), and viaspf 0.6 panics on a /0
    /// (a shift overflow), so flatten mode, judged by viaspf, cannot have them.
    pub plus_all: bool,
    pub base: String,
    pub rng: Prng,
    pub records: BTreeMap<String, Rec>,
    /// The TXT strings each record is published with (rendered once: zones and policies
    /// carry the same text).
    pub texts: BTreeMap<String, Vec<String>>,
    /// TXT records that are not one valid SPF record (for faults).
    pub raw_txt: Vec<(String, String)>,
    pub hosts: BTreeMap<String, Host>,
    /// CNAMEs (alias → canonical name, in the same zone) to records and hosts: a record
    /// reached through one is evaluated with `%{d}` the alias (RFC 7208 4.3).
    pub aliases: BTreeMap<String, String>,
    /// `exists` hits: names answering A 127.0.0.2.
    pub hits: BTreeSet<String>,
    pub rev_zone: String,
    pub ptrs: Vec<(u8, String)>,
    pub domains: Vec<String>,
    /// Mail domains generated with terms left to receivers that cost more lookups than a
    /// macro answer may carry (macro mode only): spfd must refuse to publish them.
    pub over_budget: BTreeSet<String>,
    /// Addresses with an `exists` hit or a PTR record, probed for every domain.
    pub special: Vec<IpAddr>,
    pub anchors4: Vec<u32>,
    pub anchors6: Vec<u128>,
    pub roots: Vec<String>,
    /// Finished records (new records point only at these or at new children, so there
    /// is no loop), and whether each may hold message-dependent terms.
    pub done: Vec<(String, bool)>,
    pub next_id: usize,
}

/// Salt of the PRNG that picks the mail domains over the macro budget. The pick takes
/// nothing from the generator's own PRNG: a world with no domain over the budget is
/// the one its seed gave before there were any.
const OVER_BUDGET_SALT: u64 = 0x6f76_6572_6275_6467;

impl World {
    /// The world of `seed` with `domains` mail domains; `index` (distinct per world of one
    /// run) places its reverse zone.
    pub fn new(seed: u64, index: u8, domains: usize, mode: Mode) -> World {
        let mut rng = Prng::new(seed);
        let anchors4 = (0..4).map(|_| rng.next_u64() as u32).collect();
        let anchors6 = (0..3).map(|_| u128::from(rng.ipv6())).collect();
        let base = format!("s{seed}.gen.test");
        let mut w = World {
            seed,
            plus_all: mode == Mode::Macro,
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
            over_budget: BTreeSet::new(),
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
        let mut budget = Prng::new(seed ^ OVER_BUDGET_SALT);
        for n in 1..=domains {
            let domain = format!("d{n}.cust.{}", w.base);
            if mode == Mode::Macro && budget.below(8) == 0 {
                w.top_over_budget(&domain);
                w.over_budget.insert(domain.clone());
            } else {
                w.top(&domain);
            }
            w.domains.push(domain);
        }
        w
    }

    /// `<name>.s<seed>.gen.test`.
    pub fn zone(&self, name: &str) -> String {
        format!("{name}.{}", self.base)
    }

    /// The name an alias stands for (a name that is no alias stands for itself).
    pub fn canon<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// Sometimes a new CNAME to `name` instead of `name`.
    pub fn maybe_alias(&mut self, name: String, one_in: u64) -> String {
        if !self.chance(one_in) {
            return name;
        }
        let zone = name.rsplitn(5, '.').take(4).collect::<Vec<_>>();
        let zone = zone.into_iter().rev().collect::<Vec<_>>().join(".");
        let alias = format!("_al{}.{zone}", self.id());
        self.aliases.insert(alias.clone(), name);
        alias
    }

    /// True once in `one_in` times.
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.rng.below(one_in) == 0
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len() as u64) as usize].clone()
    }

    /// A number no other name of the world has.
    pub fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
    }
}
