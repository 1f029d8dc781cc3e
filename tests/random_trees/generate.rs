//! The generator: provider trees (nested includes, redirects in and out of includes,
//! `a`/`mx` with CIDR lengths, long records, decoy TXT records, `exists`/`ptr` and
//! message-dependent redirects in `p3`) and each mail domain's source record, within
//! the lookup budget or, in macro mode, deliberately over it.

use crate::lookups::MACRO_BUDGET;
use crate::model::{Mech, Qual, Rec, Term, World};

impl World {
    /// Mostly pass.
    pub fn qual(&mut self, pass_in: u64) -> Qual {
        if self.rng.below(pass_in) != 0 {
            '+'
        } else {
            self.pick(&['-', '~', '?'])
        }
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

    pub fn provider(&mut self, k: usize) {
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
    /// lookups (see the crate documentation).
    pub fn top(&mut self, domain: &str) {
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

    /// A mail domain's source record whose terms left to receivers cost more than a
    /// macro answer may carry (`MACRO_BUDGET`): a random record, with `exists`/`ptr`
    /// terms and includes of message-dependent records added before its first
    /// flattened include, so that no flattened term can spare them.
    pub fn top_over_budget(&mut self, domain: &str) {
        let cust = self.zone("cust");
        let done = self.done.iter().map(|(n, _)| n);
        let live: Vec<String> = done.filter(|n| self.dynamic(n)).cloned().collect();
        let rec = self.random_top(domain, true);
        self.records.insert(domain.to_string(), rec);
        let want = 2 + MACRO_BUDGET + 1 + self.rng.below(4) as usize;
        while self.macro_lookups(domain).0 < want {
            let term = if !live.is_empty() && self.chance(3) {
                Term::new(self.qual(8), Mech::Include(self.pick(&live)))
            } else {
                self.dynamic_term(&cust)
            };
            let terms = &self.records[domain].terms;
            let front = terms.iter().take_while(|t| !self.flattened_include(t)).count();
            let pos = self.rng.below(front as u64 + 1) as usize;
            self.records.get_mut(domain).unwrap().terms.insert(pos, term);
        }
    }
}
