//! The generated records as text (random case, `%{d}`/`%{d4}` references, optional
//! `+`, extra spaces, modifiers anywhere, TXT strings split mid-term) and the zone
//! files the upstream servers load: the world as it is, and the customer zone once the
//! owner pointed each mail domain at spfd.

use std::fmt::Write as _;

use crate::model::{EXISTS_MACROS, Mech, Qual, Term, World};

impl World {
    /// Renders every record once (random case, macros, splits).
    pub fn rendered(mut self) -> World {
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

    pub fn zone_origins(&self) -> Vec<String> {
        let mut zones: Vec<String> = ["p1", "p2", "p3", "cust"].iter().map(|z| self.zone(z)).collect();
        zones.push(self.rev_zone.clone());
        zones
    }

    /// A zone file; `owner_view` is the customer zone once the owner pointed each mail
    /// domain at spfd (`v=spf1 redirect=_spf.<domain>`).
    pub fn zone_text(&self, origin: &str, owner_view: bool) -> String {
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

    pub fn all_zones(&self) -> String {
        self.zone_origins()
            .iter()
            .map(|z| self.zone_text(z, false))
            .collect()
    }

    pub fn source(&self, domain: &str) -> String {
        self.texts[domain].concat()
    }

    /// The source as spfd serves it when it cannot flatten it: the same terms, one space
    /// apart.
    pub fn written(&self, domain: &str) -> String {
        self.source(domain)
            .split_ascii_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}
