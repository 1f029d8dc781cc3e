//! Macro mode's per-address answers (RFC 7208 7): the zone apex says
//! `v=spf1 redirect=%{ir}.%{v}.<zone>`, so a receiver checking client 192.0.2.5 asks
//! `5.2.0.192.in-addr.<zone>` (an IPv6 client: 32 reversed nibbles under `ip6.<zone>`)
//! and gets a record whose result is exactly the source record's for that address.
//!
//! The table is built off the query path from a flattened expansion: the first static
//! rule containing an address decides it, after the terms that must be evaluated live
//! (`exists`, `ptr`, ...) that come before that rule. Rules' address sets are made
//! disjoint in rule order, so the longest-prefix match of an address is a binary search
//! over sorted, disjoint ranges. Answers are few (one per rule at most) and prebuilt.
//!
//! An address that passes gets a record naming that address, `v=spf1 ip4:192.0.2.5
//! -all`, never `v=spf1 +all`: receivers such as rspamd ignore a record that allows
//! everyone and report a permanent error instead. The client's term is the one part of
//! an answer that depends on the address: it is a character-string of its own, written
//! into the prebuilt answer when the query is answered. It names the client alone
//! (not the authorised block around it) so that the answer for one name says nothing
//! about the neighbours' and stays one cache entry and one signature per name, as before.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flatten::ipset::{Ip4Set, Ip6Set};
use crate::flatten::{Rule, Terminal, prefix};
use crate::txt;

/// The label under the zone for IPv4 (`%{v}` of an IPv4 client) and IPv6 clients.
pub const V4_LABEL: &[u8] = b"in-addr";
pub const V6_LABEL: &[u8] = b"ip6";

/// What a name under the macro suffix gets when it is not an address: a record that
/// authorises nothing and gives neutral, never NXDOMAIN (which would be a void lookup
/// and make the receiver's redirect permerror).
const NOT_AN_ADDRESS: &str = "v=spf1 ?all";

/// The published head of a macro-mode zone.
pub fn head(zone: &str) -> String {
    format!("v=spf1 redirect=%{{ir}}.%{{v}}.{}", zone.trim_end_matches('.'))
}

/// The longest client term: ` ip4:255.255.255.255 ip6:::ffff:255.255.255.255 ` (an
/// IPv4-mapped name names both forms) or ` ip6:` and a full IPv6 address and a space.
pub const CLIENT_TERM_MAX: usize = 48;

/// One distinct answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerText {
    /// The character-strings, without the client's term.
    pub strings: Vec<String>,
    /// For an answer that authorises the client: the index in `strings` before which
    /// the client's term goes, as a character-string of its own (see [`client_term`]).
    pub client_at: Option<usize>,
}

/// What a per-address name gets: the answer and the address the name spells (`None`
/// for a name that is not an address). An IPv4-mapped IPv6 name keeps its IPv6 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub index: u16,
    pub client: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroTable {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// The answer for addresses no static rule contains.
    default: u16,
    /// The answer for names that are not addresses.
    invalid: u16,
    /// Each distinct answer.
    answers: Vec<AnswerText>,
}

impl MacroTable {
    pub fn build(rules: &[Rule], terminal: &Terminal, exp: Option<&str>) -> MacroTable {
        let mut answers = Answers::default();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let (mut seen4, mut seen6) = (Ip4Set::new(), Ip6Set::new());
        let mut live: Vec<&str> = Vec::new();
        for rule in rules {
            match rule {
                Rule::Dynamic { text, .. } => live.push(text),
                Rule::Static {
                    qualifier,
                    v4: s4,
                    v6: s6,
                } => {
                    let index = answers.index(&live, &decided_by(*qualifier), exp);
                    let new4 = s4.difference(&seen4);
                    let new6 = s6.difference(&seen6);
                    v4.extend(new4.ranges().map(|(a, b)| (u32::from(a), u32::from(b), index)));
                    v6.extend(new6.ranges().map(|(a, b)| (u128::from(a), u128::from(b), index)));
                    seen4 = seen4.union(s4);
                    seen6 = seen6.union(s6);
                }
            }
        }
        let last = match terminal {
            Terminal::All(q) => decided_by(*q),
            Terminal::Absent => Last::Nothing,
            Terminal::Redirect { text, .. } => Last::Term(text.clone()),
        };
        let default = answers.index(&live, &last, exp);
        let invalid = answers.raw(NOT_AN_ADDRESS);
        MacroTable {
            v4: Ranges::new(v4),
            v6: Ranges::new(v6),
            default,
            invalid,
            answers: answers.list,
        }
    }

    /// The answer for a client address (IPv4-mapped IPv6 as IPv4).
    pub fn answer_for(&self, ip: IpAddr) -> u16 {
        match ip {
            IpAddr::V4(a) => self.v4.find(u32::from(a)).unwrap_or(self.default),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.answer_for(IpAddr::V4(v4)),
                None => self.v6.find(u128::from(a)).unwrap_or(self.default),
            },
        }
    }

    /// The answer for the labels left of `in-addr`/`ip6` (in query order), or the
    /// "not an address" answer.
    pub fn answer_for_labels<'a>(&self, v6: bool, labels: impl Iterator<Item = &'a [u8]>) -> Hit {
        let client = if v6 {
            parse_v6(labels).map(IpAddr::V6)
        } else {
            parse_v4(labels).map(IpAddr::V4)
        };
        Hit {
            index: client.map_or(self.invalid, |ip| self.answer_for(ip)),
            client,
        }
    }

    /// The answer for an index.
    pub fn answer(&self, index: u16) -> &AnswerText {
        &self.answers[usize::from(index)]
    }

    /// The character-strings a name gets, the client's term written in.
    pub fn strings_for(&self, hit: Hit) -> Vec<String> {
        let answer = self.answer(hit.index);
        let mut strings = answer.strings.clone();
        if let (Some(at), Some(ip)) = (answer.client_at, hit.client) {
            let mut term = [0u8; CLIENT_TERM_MAX];
            let len = client_term(ip, &mut term);
            let text = std::str::from_utf8(&term[..len]).expect("addresses are ASCII");
            strings.insert(at, text.to_string());
        }
        strings
    }

    /// Every answer, in index order (to prebuild records).
    pub fn answers(&self) -> &[AnswerText] {
        &self.answers
    }
}

/// Writes the client's term into `out` and returns its length: ` ip4:192.0.2.5 `,
/// ` ip6:2001:db8::5 `, and for an IPv4-mapped IPv6 address both forms, since receivers
/// differ on which family they evaluate it as. The spaces around it keep the record
/// valid whether a receiver joins strings with nothing (RFC 7208 3.3) or with a space.
/// Nothing is allocated: the fast path calls this per query.
pub fn client_term(ip: IpAddr, out: &mut [u8; CLIENT_TERM_MAX]) -> usize {
    let mut w = Cursor { buf: out, len: 0 };
    match ip {
        IpAddr::V4(a) => {
            w.push(b" ip4:");
            w.v4(a);
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => {
                w.push(b" ip4:");
                w.v4(v4);
                w.push(b" ip6:::ffff:");
                w.v4(v4);
            }
            None => {
                w.push(b" ip6:");
                w.v6(a);
            }
        },
    }
    w.push(b" ");
    w.len
}

/// Writes into a buffer that [`CLIENT_TERM_MAX`] makes large enough for any term.
struct Cursor<'a> {
    buf: &'a mut [u8; CLIENT_TERM_MAX],
    len: usize,
}

impl Cursor<'_> {
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Dotted decimal, as `Display` writes it; by hand, because the formatting
    /// machinery costs more than the rest of a UDP answer.
    fn v4(&mut self, a: Ipv4Addr) {
        for (i, octet) in a.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b".");
            }
            let digits = [octet / 100, octet / 10 % 10, octet % 10].map(|d| b'0' + d);
            let skip = match octet {
                100.. => 0,
                10.. => 1,
                _ => 2,
            };
            self.push(&digits[skip..]);
        }
    }

    /// RFC 5952 text (`Display`).
    fn v6(&mut self, a: Ipv6Addr) {
        let mut rest: &mut [u8] = &mut self.buf[self.len..];
        let room = rest.len();
        let written = write!(rest, "{a}");
        debug_assert!(written.is_ok(), "CLIENT_TERM_MAX fits every address");
        self.len += room - rest.len();
    }
}

/// The most DNS lookups a receiver spends evaluating one per-address answer built from
/// `rules` (RFC 7208 4.6.4): the live terms carried before the rule that decides the
/// address, and a redirect at the end for addresses no static rule decides. The apex's
/// `redirect=` to the answer and the owner's to the zone are not included.
pub fn answer_lookups(rules: &[Rule], terminal: &Terminal) -> usize {
    let mut live = 0;
    let mut worst = 0;
    let (mut seen4, mut seen6) = (Ip4Set::new(), Ip6Set::new());
    for rule in rules {
        match rule {
            Rule::Dynamic { lookups, .. } => live += lookups,
            Rule::Static { v4, v6, .. } => {
                if !v4.difference(&seen4).is_empty() || !v6.difference(&seen6).is_empty() {
                    worst = worst.max(live);
                }
                seen4 = seen4.union(v4);
                seen6 = seen6.union(v6);
            }
        }
    }
    if seen4 != Ip4Set::full() || seen6 != Ip6Set::full() {
        worst = worst.max(live + terminal.lookups());
    }
    worst
}

/// How an answer ends, after its live terms.
enum Last {
    /// The client's term, then `-all`: the address passes.
    Client,
    /// A term that gives the result (`-all`, `~all`, `?all`, a redirect).
    Term(String),
    /// Nothing: neutral.
    Nothing,
}

/// How a rule's result is given: pass by naming the client (a record that allows every
/// address is ignored by some receivers), the others by their `all`.
fn decided_by(q: crate::spf::Qualifier) -> Last {
    match q {
        crate::spf::Qualifier::Pass => Last::Client,
        other => Last::Term(format!("{}all", prefix(other))),
    }
}

/// Sorted disjoint ranges, each with its answer, laid out for few cache misses per
/// query (at saturation with a 5,000 + 500 CIDR tree a plain binary search over
/// (start, end, answer) tuples was 9-12% of the CPU): the starts are an array of their
/// own, searched in two steps, first the small `firsts` (every [`Ranges::BLOCK`]th
/// start, which stays in cache), then one block of starts (one cache line), and the
/// end and answer of the one range found are read last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ranges<T> {
    starts: Vec<T>,
    /// The first start of each block of `starts`.
    firsts: Vec<T>,
    /// The last address and the answer of each range, in the order of `starts`.
    ends: Vec<(T, u16)>,
}

impl<T: Ord + Copy> Ranges<T> {
    /// Starts per block: as many as fill a 64-octet cache line.
    const BLOCK: usize = if size_of::<T>() >= 64 {
        1
    } else {
        64 / size_of::<T>()
    };

    fn new(mut ranges: Vec<(T, T, u16)>) -> Ranges<T> {
        ranges.sort_unstable();
        let starts: Vec<T> = ranges.iter().map(|r| r.0).collect();
        Ranges {
            firsts: starts.iter().step_by(Self::BLOCK).copied().collect(),
            starts,
            ends: ranges.iter().map(|r| (r.1, r.2)).collect(),
        }
    }

    /// The answer of the range holding `addr`, if one does.
    fn find(&self, addr: T) -> Option<u16> {
        // The last block whose first start is at most `addr`, then the last start in it.
        let block = self
            .firsts
            .partition_point(|first| *first <= addr)
            .checked_sub(1)?;
        let from = block * Self::BLOCK;
        let to = (from + Self::BLOCK).min(self.starts.len());
        let i = from + self.starts[from..to].partition_point(|start| *start <= addr);
        let (end, index) = self.ends[i - 1];
        (addr <= end).then_some(index)
    }
}

/// The distinct answer records, deduplicated by text and whether they name the client.
#[derive(Default)]
struct Answers {
    list: Vec<AnswerText>,
    by_text: HashMap<(String, bool), u16>,
}

impl Answers {
    fn index(&mut self, live: &[&str], last: &Last, exp: Option<&str>) -> u16 {
        let mut before = vec!["v=spf1"];
        before.extend(live.iter().copied());
        let after: Vec<&str> = match last {
            Last::Client => ["-all"].into_iter().chain(exp).collect(),
            Last::Term(term) => {
                before.push(term);
                before.extend(exp);
                Vec::new()
            }
            Last::Nothing => {
                before.extend(exp);
                Vec::new()
            }
        };
        let client = matches!(last, Last::Client);
        let text = before.iter().chain(&after).copied().collect::<Vec<_>>().join(" ");
        let key = (text, client);
        if let Some(i) = self.by_text.get(&key) {
            return *i;
        }
        let mut strings = txt::split_words(before);
        let client_at = client.then_some(strings.len());
        if !after.is_empty() {
            strings.extend(txt::split_words(after));
        }
        self.push(key, AnswerText { strings, client_at })
    }

    fn raw(&mut self, text: &str) -> u16 {
        let key = (text.to_string(), false);
        if let Some(i) = self.by_text.get(&key) {
            return *i;
        }
        let strings = txt::split_words(text.split(' '));
        self.push(
            key,
            AnswerText {
                strings,
                client_at: None,
            },
        )
    }

    fn push(&mut self, key: (String, bool), answer: AnswerText) -> u16 {
        let i = u16::try_from(self.list.len()).expect("at most one answer per rule");
        self.list.push(answer);
        self.by_text.insert(key, i);
        i
    }
}

/// `5.2.0.192` → 192.0.2.5: exactly four labels of canonical decimal (no leading zero).
fn parse_v4<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut count = 0;
    for label in labels {
        if count == 4 || label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
            return None;
        }
        let mut value: u16 = 0;
        for b in label {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
        }
        octets[3 - count] = u8::try_from(value).ok()?;
        count += 1;
    }
    (count == 4).then(|| Ipv4Addr::from(octets))
}

/// 32 single hex nibbles, least significant first.
fn parse_v6<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Option<Ipv6Addr> {
    let mut value: u128 = 0;
    let mut count = 0;
    for label in labels {
        let [c] = label else { return None };
        let nibble = (*c as char).to_digit(16)?;
        if count == 32 {
            return None;
        }
        value |= u128::from(nibble) << (4 * count);
        count += 1;
    }
    (count == 32).then(|| Ipv6Addr::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spf::Qualifier;

    #[test]
    fn ranges_find_the_range_holding_an_address_across_blocks() {
        // Disjoint ranges with gaps, more than a few blocks of each width.
        let v4: Vec<(u32, u32, u16)> = (0..1000u32)
            .rev()
            .map(|i| (i * 100, i * 100 + i % 50, (i % 7) as u16))
            .collect();
        let v6: Vec<(u128, u128, u16)> = v4
            .iter()
            .map(|&(a, b, x)| (u128::from(a) << 64, u128::from(b) << 64, x))
            .collect();
        let (r4, r6) = (Ranges::new(v4.clone()), Ranges::new(v6.clone()));
        let naive = |addr: u32| v4.iter().find(|(a, b, _)| *a <= addr && addr <= *b).map(|r| r.2);
        for addr in (0..100_100u32)
            .step_by(7)
            .chain([0, 49, 50, 99, 99_900, 99_949, 99_950, u32::MAX])
        {
            assert_eq!(r4.find(addr), naive(addr), "{addr}");
            assert_eq!(r6.find(u128::from(addr) << 64), naive(addr), "{addr} as v6");
        }
        assert_eq!(Ranges::<u32>::new(Vec::new()).find(5), None);
    }

    fn set4(nets: &[&str]) -> Ip4Set {
        Ip4Set::from_nets(nets.iter().map(|n| n.parse().unwrap()))
    }

    fn set6(nets: &[&str]) -> Ip6Set {
        Ip6Set::from_nets(nets.iter().map(|n| n.parse().unwrap()))
    }

    #[test]
    fn answer_lookups_count_the_live_terms_of_the_worst_reachable_answer() {
        let live = |lookups: usize| Rule::Dynamic {
            qualifier: Qualifier::Pass,
            text: "exists:%{i}.e.example".into(),
            lookups,
        };
        let stat = |v4: Ip4Set, v6: Ip6Set| Rule::Static {
            qualifier: Qualifier::Pass,
            v4,
            v6,
        };
        let redirect = Terminal::Redirect {
            text: "redirect=%{l}.r.example".into(),
            lookups: 4,
        };
        // Addresses no rule decides carry every live term and the redirect.
        let rules = vec![live(2), stat(set4(&["192.0.2.0/24"]), Ip6Set::new()), live(3)];
        assert_eq!(answer_lookups(&rules, &redirect), 9);
        assert_eq!(answer_lookups(&rules, &Terminal::All(Qualifier::Fail)), 5);
        // When static rules decide every address, the end is never reached; a rule that
        // adds no address carries nothing either.
        let rules = vec![
            live(2),
            stat(Ip4Set::full(), Ip6Set::full()),
            live(3),
            stat(set4(&["192.0.2.0/24"]), Ip6Set::new()),
        ];
        assert_eq!(answer_lookups(&rules, &redirect), 2);
        assert_eq!(answer_lookups(&[], &Terminal::Absent), 0);
    }

    fn table() -> MacroTable {
        let rules = vec![
            Rule::Static {
                qualifier: Qualifier::Fail,
                v4: set4(&["192.0.2.66/32"]),
                v6: Ip6Set::new(),
            },
            Rule::Static {
                qualifier: Qualifier::Pass,
                v4: set4(&["192.0.2.0/24", "198.51.100.0/24"]),
                v6: set6(&["2001:db8::/32"]),
            },
            Rule::Dynamic {
                qualifier: Qualifier::Pass,
                text: "exists:%{i}._spf.example.com".into(),
                lookups: 1,
            },
            Rule::Static {
                qualifier: Qualifier::Neutral,
                v4: set4(&["203.0.113.0/24"]),
                v6: Ip6Set::new(),
            },
        ];
        MacroTable::build(&rules, &Terminal::All(Qualifier::SoftFail), None)
    }

    fn text(t: &MacroTable, ip: &str) -> String {
        let client: IpAddr = ip.parse().unwrap();
        let hit = Hit {
            index: t.answer_for(client),
            client: Some(client),
        };
        t.strings_for(hit).concat()
    }

    #[test]
    fn first_static_rule_decides_after_the_live_terms_before_it() {
        let t = table();
        assert_eq!(text(&t, "192.0.2.66"), "v=spf1 -all");
        assert_eq!(text(&t, "192.0.2.65"), "v=spf1 ip4:192.0.2.65 -all");
        assert_eq!(text(&t, "192.0.2.67"), "v=spf1 ip4:192.0.2.67 -all");
        assert_eq!(text(&t, "198.51.100.255"), "v=spf1 ip4:198.51.100.255 -all");
        assert_eq!(text(&t, "2001:db8:ffff::1"), "v=spf1 ip6:2001:db8:ffff::1 -all");
        assert_eq!(
            text(&t, "203.0.113.9"),
            "v=spf1 exists:%{i}._spf.example.com ?all"
        );
        assert_eq!(
            text(&t, "203.0.112.255"),
            "v=spf1 exists:%{i}._spf.example.com ~all"
        );
        assert_eq!(text(&t, "2001:db9::"), "v=spf1 exists:%{i}._spf.example.com ~all");
        assert_eq!(
            text(&t, "::ffff:192.0.2.66"),
            "v=spf1 -all",
            "IPv4-mapped is IPv4"
        );
        assert_eq!(
            text(&t, "::ffff:192.0.2.5"),
            "v=spf1 ip4:192.0.2.5 ip6:::ffff:192.0.2.5 -all",
            "an IPv4-mapped client is named in both forms"
        );
    }

    #[test]
    fn a_pass_never_allows_every_address_and_keeps_the_live_terms_before_it() {
        let rules = vec![
            Rule::Dynamic {
                qualifier: Qualifier::Fail,
                text: "-exists:%{i}.deny.example.com".into(),
                lookups: 1,
            },
            Rule::Static {
                qualifier: Qualifier::Pass,
                v4: set4(&["192.0.2.0/24"]),
                v6: Ip6Set::new(),
            },
        ];
        // The domain ends with +all: what no rule decides passes too.
        let t = MacroTable::build(
            &rules,
            &Terminal::All(Qualifier::Pass),
            Some("exp=why.example.com"),
        );
        for ip in ["192.0.2.9", "198.51.100.1", "2001:db8::1"] {
            let got = text(&t, ip);
            assert!(!got.contains("+all") && !got.ends_with(" all"), "{ip}: {got}");
            assert_eq!(
                got,
                format!(
                    "v=spf1 -exists:%{{i}}.deny.example.com ip{}:{ip} -all exp=why.example.com",
                    if ip.contains(':') { 6 } else { 4 }
                )
            );
        }
        // The client's term is a string of its own, with a space on each side.
        let hit = t.answer_for_labels(false, [b"9".as_slice(), b"2", b"0", b"192"].into_iter());
        assert_eq!(
            t.strings_for(hit),
            [
                "v=spf1 -exists:%{i}.deny.example.com",
                " ip4:192.0.2.9 ",
                "-all exp=why.example.com"
            ]
        );
        // Passes differ only by the client: one answer for every authorised address.
        assert_eq!(t.answers().len(), 2, "the pass and the not-an-address answer");
        // A neutral end without live terms is the not-an-address answer itself.
        let t = MacroTable::build(&[], &Terminal::All(Qualifier::Neutral), None);
        assert_eq!(t.answers().len(), 1);
    }

    #[test]
    fn client_terms_spell_addresses_as_display_does() {
        let mut buf = [0u8; CLIENT_TERM_MAX];
        let mut term = |ip: IpAddr| {
            let len = client_term(ip, &mut buf);
            String::from_utf8(buf[..len].to_vec()).unwrap()
        };
        for a in (0..=255u8).map(|o| Ipv4Addr::new(o, 255 - o, o / 3, o.wrapping_mul(7))) {
            assert_eq!(term(IpAddr::V4(a)), format!(" ip4:{a} "));
            let mapped = a.to_ipv6_mapped();
            assert_eq!(term(IpAddr::V6(mapped)), format!(" ip4:{a} ip6:{mapped} "));
        }
        let v6: Ipv6Addr = "2001:db8::5".parse().unwrap();
        assert_eq!(term(IpAddr::V6(v6)), " ip6:2001:db8::5 ");
    }

    #[test]
    fn the_longest_client_term_fits() {
        let mut buf = [0u8; CLIENT_TERM_MAX];
        for ip in [
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "255.255.255.255",
        ] {
            let len = client_term(ip.parse().unwrap(), &mut buf);
            let text = std::str::from_utf8(&buf[..len]).unwrap();
            assert!(
                text.starts_with(" ip") && text.ends_with(' ') && text.contains(ip),
                "{text:?}"
            );
        }
    }

    #[test]
    fn names_are_parsed_strictly() {
        let t = table();
        let labels = |s: &'static str| s.split('.').map(str::as_bytes).collect::<Vec<_>>();
        let ask = |v6, s| {
            t.strings_for(t.answer_for_labels(v6, labels(s).into_iter()))
                .concat()
        };
        assert_eq!(ask(false, "66.2.0.192"), "v=spf1 -all");
        for bad in [
            "66.2.0",
            "66.2.0.192.1",
            "066.2.0.192",
            "256.2.0.192",
            "a.2.0.192",
            "",
            "-1.2.0.192",
        ] {
            assert_eq!(ask(false, bad), NOT_AN_ADDRESS, "{bad:?}");
        }
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2";
        assert_eq!(ask(true, v6), "v=spf1 ip6:2001:db8::1 -all", "upper-case nibbles");
        let mapped = "2.4.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";
        assert_eq!(ask(true, mapped), "v=spf1 -all", "::ffff:192.0.2.66 in nibbles");
        for bad in [
            "1.0.0",
            "10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
        ] {
            assert_eq!(ask(true, bad), NOT_AN_ADDRESS, "{bad:?}");
        }
    }

    #[test]
    fn head_names_the_zone_without_its_dot() {
        assert_eq!(
            head("_spf.example.com."),
            "v=spf1 redirect=%{ir}.%{v}._spf.example.com"
        );
    }
}
