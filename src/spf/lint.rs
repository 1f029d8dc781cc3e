//! Warnings about valid SPF records that probably do not say what the owner means,
//! or that receivers will reject (RFC 7208 4.6.4, 5.1, 5.5, 6.1).

use std::collections::HashMap;

use super::directive::{Mechanism, Modifier, Qualifier, Term, TermKind};
use super::record::{Record, VERSION};

/// The most DNS-querying terms a receiver evaluates (RFC 7208 4.6.4).
pub const MAX_LOOKUP_TERMS: usize = 10;

/// A problem in a valid record, at a byte offset of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Byte offset in the record text of the term concerned (for a missing `all`, the
    /// end of the record, where it would go).
    pub offset: usize,
    pub message: String,
}

impl Warning {
    fn at(term: &Term, message: String) -> Self {
        Self {
            offset: term.offset(),
            message,
        }
    }
}

impl Record {
    /// Everything worth telling the owner about this record, in record order.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        self.lint_ptr(&mut out);
        self.lint_all(&mut out);
        self.lint_duplicate_includes(&mut out);
        self.lint_host_bits(&mut out);
        self.lint_whole_internet(&mut out);
        self.lint_lookups(&mut out);
        out.sort_by_key(|w| w.offset);
        out
    }

    fn lint_ptr(&self, out: &mut Vec<Warning>) {
        for t in self.terms() {
            if let Some(Mechanism::Ptr(_)) = t.directive().map(|d| &d.mechanism) {
                out.push(Warning::at(
                    t,
                    format!("`{}`: ptr is slow and unreliable, and RFC 7208 5.5 says it SHOULD NOT be used; list the senders with ip4, ip6, a or include", t.text()),
                ));
            }
        }
    }

    /// `+all`, `?all`, terms after `all`, `redirect` beside `all`, and neither.
    fn lint_all(&self, out: &mut Vec<Warning>) {
        let terms = self.terms();
        let Some(first) = terms.iter().position(is_all) else {
            if self.redirect().is_none() {
                out.push(Warning {
                    offset: self.end_offset(),
                    message: "the record has neither `all` nor `redirect`: every host not listed gets neutral; end it with ~all or -all".to_string(),
                });
            }
            return;
        };
        let all = &terms[first];
        lint_all_qualifier(all, out);
        for t in terms[first + 1..].iter().filter(|t| t.directive().is_some()) {
            let message = format!(
                "`{}` is never evaluated: it comes after `{}`",
                t.text(),
                all.text()
            );
            out.push(Warning::at(t, message));
        }
        for t in terms
            .iter()
            .filter(|t| matches!(t.modifier(), Some(Modifier::Redirect(_))))
        {
            let message = format!(
                "`{}` is ignored because the record has `{}`",
                t.text(),
                all.text()
            );
            out.push(Warning::at(t, message));
        }
    }

    fn lint_duplicate_includes(&self, out: &mut Vec<Warning>) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for t in self.terms() {
            let Some(Mechanism::Include(spec)) = t.directive().map(|d| &d.mechanism) else {
                continue;
            };
            let key = spec.as_str().trim_end_matches('.').to_ascii_lowercase();
            match seen.get(&key) {
                Some(first) => out.push(Warning::at(
                    t,
                    format!(
                        "`{}` repeats the include at byte {first}: it costs a lookup and adds nothing",
                        t.text()
                    ),
                )),
                None => {
                    seen.insert(key, t.offset());
                }
            }
        }
    }

    fn lint_host_bits(&self, out: &mut Vec<Warning>) {
        for t in self.terms() {
            let normal = match t.directive().map(|d| &d.mechanism) {
                Some(Mechanism::Ip4(net)) if net.addr() != net.network() => format!("ip4:{}", net.trunc()),
                Some(Mechanism::Ip6(net)) if net.addr() != net.network() => format!("ip6:{}", net.trunc()),
                _ => continue,
            };
            out.push(Warning::at(
                t,
                format!(
                    "`{}` has bits set after the prefix length: it means {normal}",
                    t.text()
                ),
            ));
        }
    }

    /// `ip4:0.0.0.0/0` and `ip6:::/0` (any address, prefix length 0): like `+all`
    /// for one address family, valid but almost always a mistake.
    fn lint_whole_internet(&self, out: &mut Vec<Warning>) {
        for t in self.terms() {
            let Some(d) = t.directive() else { continue };
            let family = match &d.mechanism {
                Mechanism::Ip4(net) if net.prefix_len() == 0 => "IPv4",
                Mechanism::Ip6(net) if net.prefix_len() == 0 => "IPv6",
                _ => continue,
            };
            if d.qualifier == Qualifier::Fail {
                continue;
            }
            let message = format!(
                "`{}` matches every {family} address on the Internet: list your senders' networks instead",
                t.text()
            );
            out.push(Warning::at(t, message));
        }
    }

    fn lint_lookups(&self, out: &mut Vec<Warning>) {
        let total = self.lookup_terms();
        if total <= MAX_LOOKUP_TERMS {
            return;
        }
        let redirect_runs = !self.has_all();
        let mut count = 0;
        for t in self.terms() {
            let costs = match t.kind() {
                TermKind::Directive(d) => d.mechanism.does_lookup(),
                TermKind::Modifier(m) => matches!(m, Modifier::Redirect(_)) && redirect_runs,
            };
            count += usize::from(costs);
            if costs && count == MAX_LOOKUP_TERMS + 1 {
                out.push(Warning::at(
                    t,
                    format!("this record alone has {total} terms that cost a DNS lookup (include a mx ptr exists redirect); receivers stop at the 11th with permerror (RFC 7208 4.6.4)"),
                ));
                return;
            }
        }
    }

    /// The byte offset just after the last term: where `-all` would be added.
    fn end_offset(&self) -> usize {
        self.terms()
            .last()
            .map_or(VERSION.len(), |t| t.offset() + t.text().len())
    }
}

/// `+all` lets everyone send; `?all` says nothing.
fn lint_all_qualifier(all: &Term, out: &mut Vec<Warning>) {
    let message = match all.directive().map(|d| d.qualifier) {
        Some(Qualifier::Pass) => {
            format!(
                "`{}` authorises every host on the Internet to send as this domain",
                all.text()
            )
        }
        Some(Qualifier::Neutral) => {
            "`?all` says nothing about hosts not listed (neutral): end with ~all or -all".to_string()
        }
        _ => return,
    };
    out.push(Warning::at(all, message));
}

fn is_all(t: &Term) -> bool {
    t.directive().is_some_and(|d| d.mechanism == Mechanism::All)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<(usize, String)> {
        let record = Record::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        record
            .warnings()
            .into_iter()
            .map(|w| (w.offset, w.message))
            .collect()
    }

    #[test]
    fn table() {
        // (record, [(offset, words the message must contain)])
        let cases: Vec<(&str, Vec<(usize, &str)>)> = vec![
            ("v=spf1 ip4:192.0.2.0/24 -all", vec![]),
            ("v=spf1 redirect=_spf.example.com", vec![]),
            ("v=spf1 ptr -all", vec![(7, "SHOULD NOT")]),
            ("v=spf1 +all", vec![(7, "every host on the Internet")]),
            ("v=spf1 all", vec![(7, "every host on the Internet")]),
            ("v=spf1 ?all", vec![(7, "neutral")]),
            ("v=spf1 -all a", vec![(12, "`a` is never evaluated")]),
            ("v=spf1 -all exp=why.example.com", vec![]),
            ("v=spf1 ~all redirect=x.example.com", vec![(12, "ignored")]),
            (
                "v=spf1 include:a.example include:A.example.",
                vec![(25, "repeats the include at byte 7"), (43, "neither")],
            ),
            ("v=spf1 a", vec![(8, "neither `all` nor `redirect`")]),
            ("v=spf1", vec![(6, "neither")]),
            (
                "v=spf1 ip4:192.0.2.77/24 -all",
                vec![(7, "it means ip4:192.0.2.0/24")],
            ),
            (
                "v=spf1 ip6:2001:db8::1/32 -all",
                vec![(7, "it means ip6:2001:db8::/32")],
            ),
            ("v=spf1 ip4:0.0.0.0/0 -all", vec![(7, "every IPv4 address")]),
            ("v=spf1 ~ip6:::/0 -all", vec![(7, "every IPv6 address")]),
            (
                "v=spf1 IP4:0.0.0.0/0 ip6:::/0 -all",
                vec![(7, "IPv4"), (21, "IPv6")],
            ),
            ("v=spf1 -ip4:0.0.0.0/0 ip6:2001:db8::/32 -all", vec![]),
            ("v=spf1 ip4:0.0.0.0/1 ip6:::/1 -all", vec![]),
            ("v=spf1 a a a a a a a a a a -all", vec![]),
            ("v=spf1 a a a a a a a a a a a -all", vec![(27, "11 terms")]),
            (
                "v=spf1 a a a a a a a a a a redirect=x.example",
                vec![(27, "11 terms")],
            ),
            (
                "v=spf1 a a a a a a a a a a -all redirect=x.example",
                vec![(32, "ignored")],
            ),
        ];
        for (text, want) in cases {
            let got = warnings(text);
            assert_eq!(got.len(), want.len(), "{text}: {got:?}");
            for ((offset, message), (want_offset, words)) in got.iter().zip(&want) {
                assert_eq!(offset, want_offset, "{text}: {message}");
                assert!(message.contains(words), "{text}: {message}");
            }
        }
    }
}
