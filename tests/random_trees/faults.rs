//! Trees spfd must refuse: a loop or a broken target (no SPF record, no name, two SPF
//! records, an invalid record) put somewhere a mail domain's tree evaluates it, or
//! where no receiver ever does (after `all`, a redirect beside an `all`).

use crate::model::{Mech, Mode, Term, World};

/// A tree that cannot be flattened, for the refusal test.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Loop,
    NoSpf,
    Missing,
    TwoRecords,
    Invalid,
}

/// Each fault, and the phrase spfd's refusal of it contains.
pub const FAULTS: [(Fault, &str); 5] = [
    (Fault::Loop, "a loop"),
    (Fault::NoSpf, "has no SPF record"),
    (Fault::Missing, "has no SPF record"),
    (Fault::TwoRecords, "more than one v=spf1"),
    (Fault::Invalid, "is invalid"),
];

/// For three seeds, each fault where it is evaluated and where it is not (`harmless`),
/// in the first domain's tree; the second domain is a control that always flattens.
pub fn fault_worlds() -> Vec<(World, Fault, &'static str, bool)> {
    let mut worlds = Vec::new();
    for seed in [5u64, 13, 31] {
        for (k, (fault, phrase)) in FAULTS.iter().enumerate() {
            for harmless in [false, true] {
                let seed = seed * 100 + k as u64 * 10 + u64::from(harmless);
                let mut w = World::new(seed, 100 + worlds.len() as u8, 2, Mode::Flatten);
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

impl World {
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
}
