//! Packing: an [`Expansion`] written as the shortest chain of SPF records of at most
//! [`MAX_RECORD`] octets, the head at the zone apex and the rest at tag-named
//! parts joined by `redirect=`, within the lookup limit of RFC 7208 4.6.4.

use std::fmt::Write as _;

use ipnet::{Ipv4Net, Ipv6Net};

use super::ipset::{Ip4Set, Ip6Set};
use super::model::{Expansion, Rule, Terminal, prefix};
use crate::names::{MAX_NAME, normalize};
use crate::spf::{Qualifier, VERSION};
use crate::txt::split_words;

/// The longest record text published: RFC 7208 3.4 asks for answers under 512
/// octets, and the question, the other records and DNSSEC signatures need room.
pub const MAX_RECORD: usize = 450;
/// RFC 7208 4.6.4.
pub const MAX_LOOKUPS: usize = 10;

/// The published records: the head at the zone apex and the chained parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The zone apex (lower case, no trailing dot), where the head is published.
    pub zone: String,
    /// The TXT character-strings of the head, split between terms.
    pub head: Vec<String>,
    /// Each chained part: its full name (no trailing dot) and its strings.
    pub parts: Vec<(String, Vec<String>)>,
    /// The lookups a receiver spends in total: the owner's redirect to the zone,
    /// one per part, and every kept term with what its target costs.
    pub lookups: usize,
    /// 8 hex digits of a hash of the whole chain, in every part's name, so a
    /// receiver that cached a head never combines it with parts of another one.
    pub tag: String,
}

/// Why an expansion cannot be published within the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error(
        "the flattened record needs {needed} DNS lookups ({owner_redirect} for the domain's redirect to the zone, {parts} for chained parts, {kept} for terms receivers must evaluate) but receivers allow {MAX_LOOKUPS} (RFC 7208 4.6.4){}",
        macro_hint(*.owner_redirect, *.kept)
    )]
    TooManyLookups {
        needed: usize,
        owner_redirect: usize,
        parts: usize,
        kept: usize,
    },
    #[error("the term `{term}` does not fit in a record of {MAX_RECORD} octets")]
    TermTooLong { term: String },
    #[error("the zone `{zone}` is too long: chained part names would exceed {MAX_NAME} octets")]
    ZoneTooLong { zone: String },
}

/// Macro mode spends one lookup on the apex's redirect to the per-address answer
/// instead of one per chained part: suggested only when that fits the limit.
fn macro_hint(owner_redirect: usize, kept: usize) -> &'static str {
    if owner_redirect + 1 + kept <= MAX_LOOKUPS {
        "; use mode = \"macro\" to answer per client address instead"
    } else {
        "; the terms receivers must evaluate themselves cost too much for macro mode too"
    }
}

impl Chain {
    /// Every record: (name, character-strings), the head first.
    pub fn records(&self) -> impl Iterator<Item = (&str, &[String])> {
        let head = std::iter::once((self.zone.as_str(), self.head.as_slice()));
        head.chain(self.parts.iter().map(|(n, s)| (n.as_str(), s.as_slice())))
    }

    /// The records as zone-file lines (`name. TTL IN TXT "..." "..."`), for any DNS
    /// server.
    pub fn zone_lines(&self, ttl: u32) -> String {
        let mut out = String::new();
        for (name, strings) in self.records() {
            let quoted: Vec<String> = strings.iter().map(|s| quote(s)).collect();
            let _ = writeln!(out, "{name}. {ttl} IN TXT {}", quoted.join(" "));
        }
        out
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Packs `expansion` for publication at `zone` (a trailing dot is ignored).
/// `owner_redirect` says the mail domain publishes `v=spf1 redirect=<zone>` (the
/// zone is not the domain), which costs receivers one lookup.
pub fn pack(expansion: &Expansion, zone: &str, owner_redirect: bool) -> Result<Chain, PackError> {
    let zone = normalize(zone);
    let planned = optimise(&expansion.rules, &expansion.terminal);
    let words: Vec<String> = planned.iter().flat_map(Planned::words).collect();
    let terminal = terminal_word(&expansion.terminal);
    let exp = expansion.exp.as_deref();
    let groups = split(&words, terminal.as_deref(), exp, &zone)?;
    let tag = content_tag(&zone, &groups, exp);
    let names: Vec<String> = (1..groups.len()).map(|i| part_name(i, &tag, &zone)).collect();
    if names.iter().any(|n| n.len() > MAX_NAME) {
        return Err(PackError::ZoneTooLong { zone });
    }
    let records = records(&groups, &names, exp);
    let kept = planned.iter().map(Planned::lookups).sum::<usize>() + expansion.terminal.lookups();
    let owner = usize::from(owner_redirect);
    let needed = owner + names.len() + kept;
    if needed > MAX_LOOKUPS {
        let (parts, owner_redirect) = (names.len(), owner);
        return Err(PackError::TooManyLookups {
            needed,
            owner_redirect,
            parts,
            kept,
        });
    }
    let mut records = records.into_iter();
    let head = records.next().expect("at least the head");
    Ok(Chain {
        zone,
        head,
        parts: names.into_iter().zip(records).collect(),
        lookups: needed,
        tag,
    })
}

/// Each record's character-strings: `v=spf1`, its words, `exp=` and the redirect
/// to the next part.
fn records(groups: &[Vec<String>], names: &[String], exp: Option<&str>) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let mut record: Vec<&str> = vec![VERSION];
        record.extend(group.iter().map(String::as_str));
        record.extend(exp);
        let redirect = names.get(i).map(|next| format!("redirect={next}"));
        record.extend(redirect.as_deref());
        records.push(split_words(record));
    }
    records
}

/// A rule ready to print: static rules reduced to their CIDR lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    Static {
        qualifier: Qualifier,
        v4: Vec<Ipv4Net>,
        v6: Vec<Ipv6Net>,
    },
    Dynamic {
        text: String,
        lookups: usize,
    },
}

impl Planned {
    fn words(&self) -> Vec<String> {
        match self {
            Planned::Static { qualifier, v4, v6 } => {
                let q = prefix(*qualifier);
                let four = v4.iter().map(|n| match n.prefix_len() {
                    32 => format!("{q}ip4:{}", n.addr()),
                    _ => format!("{q}ip4:{n}"),
                });
                let six = v6.iter().map(|n| match n.prefix_len() {
                    128 => format!("{q}ip6:{}", n.addr()),
                    _ => format!("{q}ip6:{n}"),
                });
                four.chain(six).collect()
            }
            Planned::Dynamic { text, .. } => vec![text.clone()],
        }
    }

    fn lookups(&self) -> usize {
        match self {
            Planned::Static { .. } => 0,
            Planned::Dynamic { lookups, .. } => *lookups,
        }
    }
}

fn terminal_word(terminal: &Terminal) -> Option<String> {
    match terminal {
        Terminal::All(q) => Some(format!("{}all", prefix(*q))),
        Terminal::Absent => None,
        Terminal::Redirect { text, .. } => Some(text.clone()),
    }
}

/// The exactness-preserving reductions, repeated until nothing changes, then each
/// static rule's shortest CIDR list given what earlier rules already decide.
fn optimise(rules: &[Rule], terminal: &Terminal) -> Vec<Planned> {
    let mut rules = rules.to_vec();
    loop {
        let before = rules.clone();
        rules = merge_adjacent(rules);
        rules = drop_claimed(rules);
        drop_trailing(&mut rules, terminal);
        if rules == before {
            break;
        }
    }
    let mut claimed = (Ip4Set::new(), Ip6Set::new());
    let mut planned = Vec::new();
    for rule in rules {
        planned.push(match rule {
            Rule::Static { qualifier, v4, v6 } => {
                // Addresses earlier rules claim never reach this one: they may be
                // covered too when that makes the list shorter.
                let plan = Planned::Static {
                    qualifier,
                    v4: v4.cover(&claimed.0),
                    v6: v6.cover(&claimed.1),
                };
                claimed = (claimed.0.union(&v4), claimed.1.union(&v6));
                plan
            }
            Rule::Dynamic { text, lookups, .. } => Planned::Dynamic { text, lookups },
        });
    }
    planned
}

/// Adjacent static rules with the same qualifier are one rule.
fn merge_adjacent(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for rule in rules {
        if let (
            Some(Rule::Static { qualifier: q, v4, v6 }),
            Rule::Static {
                qualifier,
                v4: r4,
                v6: r6,
            },
        ) = (out.last_mut(), &rule)
            && q == qualifier
        {
            (*v4, *v6) = (v4.union(r4), v6.union(r6));
            continue;
        }
        out.push(rule);
    }
    out
}

/// Each static rule keeps only the addresses no earlier static rule matches (first
/// match wins); a rule left empty goes.
fn drop_claimed(rules: Vec<Rule>) -> Vec<Rule> {
    let mut claimed = (Ip4Set::new(), Ip6Set::new());
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        if let Rule::Static { qualifier, v4, v6 } = rule {
            let (own4, own6) = (v4.difference(&claimed.0), v6.difference(&claimed.1));
            claimed = (claimed.0.union(&v4), claimed.1.union(&v6));
            if !(own4.is_empty() && own6.is_empty()) {
                out.push(Rule::Static {
                    qualifier,
                    v4: own4,
                    v6: own6,
                });
            }
        } else {
            out.push(rule);
        }
    }
    out
}

/// Rules at the end with the terminal's own result change nothing.
fn drop_trailing(rules: &mut Vec<Rule>, terminal: &Terminal) {
    let Some(q) = terminal.qualifier() else {
        return;
    };
    while rules.last().is_some_and(|r| r.qualifier() == q) {
        rules.pop();
    }
}

/// `_<n>-<tag>.<zone>`
fn part_name(n: usize, tag: &str, zone: &str) -> String {
    format!("_{n}-{tag}.{zone}")
}

/// The words of each record in order, the terminal in the last. Greedy filling is
/// optimal here: the order is fixed and every part but the last has the same room.
fn split(
    words: &[String],
    terminal: Option<&str>,
    exp: Option<&str>,
    zone: &str,
) -> Result<Vec<Vec<String>>, PackError> {
    let width = |w: &str| 1 + w.len();
    let base = VERSION.len() + exp.map_or(0, width);
    let terminal_len = terminal.map_or(0, width);
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    loop {
        let rest: usize = words[i..].iter().map(|w| width(w)).sum();
        if base + rest + terminal_len <= MAX_RECORD {
            let mut last = words[i..].to_vec();
            last.extend(terminal.map(str::to_string));
            groups.push(last);
            return Ok(groups);
        }
        let next = part_name(groups.len() + 1, "00000000", zone);
        let room = MAX_RECORD.saturating_sub(base + width(&format!("redirect={next}")));
        let start = i;
        let mut used = 0;
        while i < words.len() && used + width(&words[i]) <= room {
            used += width(&words[i]);
            i += 1;
        }
        if i == start {
            let term = words.get(i).map_or(terminal.unwrap_or_default(), String::as_str);
            return Err(PackError::TermTooLong {
                term: term.to_string(),
            });
        }
        groups.push(words[start..i].to_vec());
    }
}

/// FNV-1a (64 bits, folded to 32) of the zone and every record's words: stable
/// across restarts, builds and Rust versions, unlike `std`'s hasher.
fn content_tag(zone: &str, groups: &[Vec<String>], exp: Option<&str>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(zone.as_bytes());
    feed(exp.unwrap_or_default().as_bytes());
    for group in groups {
        feed(b"\n");
        for word in group {
            feed(b" ");
            feed(word.as_bytes());
        }
    }
    format!("{:08x}", (hash >> 32) as u32 ^ hash as u32)
}

#[cfg(test)]
mod tests;
