//! Lookup accounting (RFC 7208 4.6.4): what evaluating a record live costs, which
//! records depend on the message (spfd leaves those to receivers), what the terms left
//! to receivers cost, and what a macro answer for a mail domain needs.

use crate::model::{Mech, Term, World};

/// The lookups of terms left to receivers that a macro answer may carry: receivers
/// allow 10, and each answer is reached through 2 redirects (the owner's to
/// `_spf.<domain>`, and that record's to the per-address answer).
pub const MACRO_BUDGET: usize = 8;

impl World {
    fn has_both(&self, name: &str) -> bool {
        self.hosts
            .get(self.canon(name))
            .is_some_and(|h| !h.a.is_empty() && !h.aaaa.is_empty())
    }

    /// Whether the record's result depends on the message (spfd keeps it live).
    pub fn dynamic(&self, name: &str) -> bool {
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
    pub fn kept(&self, name: &str) -> (usize, usize) {
        let rec = &self.records[self.canon(name)];
        let mut sum = (0, 0);
        for t in &rec.terms {
            let (c, v) = self.kept_term(t);
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

    fn kept_term(&self, t: &Term) -> (usize, usize) {
        match &t.mech {
            Mech::Exists(..) | Mech::Ptr(_) => (1, 1),
            Mech::Include(x) if self.dynamic(x) => {
                let (c, v) = self.live(x);
                (1 + c, v)
            }
            _ => (0, 0),
        }
    }

    /// Whether spfd replaces the term with addresses: an include of a record whose
    /// result does not depend on the message. Only such a term can match every address
    /// (through a `+all`), and so spare the terms after it from every answer.
    pub fn flattened_include(&self, t: &Term) -> bool {
        matches!(&t.mech, Mech::Include(x) if !self.dynamic(x))
    }

    /// The DNS lookups of `domain`'s costliest macro answer, at least and at most: the
    /// 2 redirects, then the terms left to receivers, all of them at most, and at least
    /// those before the first flattened include (which might match every address).
    pub fn macro_lookups(&self, domain: &str) -> (usize, usize) {
        let rec = &self.records[self.canon(domain)];
        let front = rec.terms.iter().take_while(|t| !self.flattened_include(t));
        let front: usize = front.map(|t| self.kept_term(t).0).sum();
        (2 + front, 2 + self.kept(domain).0)
    }
}
