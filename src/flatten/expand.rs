//! Expansion: a source record and the DNS behind it turned into ordered rules
//! (address sets, and terms left for the receiver) with exactly the results of
//! RFC 7208 check_host() with the lookup limits lifted. Temporary DNS failures fall
//! back on the last good result kept in [`LastGood`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use super::ipset::{Ip4Set, Ip6Set};
use super::last_good::{LastGood, Recalled, Remembered};
use super::model::{
    Body, ExpandError, ExpandOptions, Expansion, Level, Rule, TermDetail, Terminal, Warning, prefix,
};
use super::rewrite;
use crate::names::{is_queryable, is_valid_domain, normalize};
use crate::spf::{Directive, DnsLookup, LookupError, Mechanism, Qualifier, Record, is_spf_record};

/// Nesting deeper than this is an error, as in the evaluator with limits lifted.
const MAX_DEPTH: usize = 50;

/// Expands `record`, the SPF record of the mail domain `domain`: includes become
/// the addresses where their targets pass, a redirect's target is appended with
/// its terminal, `a` and `mx` become addresses, and terms that depend on the
/// message stay, rewritten for any name. `memory` supplies and receives last good
/// results; `opts` carries the time.
pub async fn expand<D: DnsLookup>(
    dns: &D,
    domain: &str,
    record: &Record,
    memory: &mut LastGood,
    opts: &ExpandOptions,
) -> Result<Expansion, ExpandError> {
    let domain = normalize(domain);
    let mut ex = Expander::new(dns, memory, opts);
    ex.stack.push(domain.clone());
    let body = ex.body(&domain, record, &[]).await.map_err(Failure::into_error)?;
    let exp = match record.exp() {
        Some(spec) => Some(rewrite::modifier("exp", spec, &domain).map_err(|reason| {
            let path = "exp".to_string();
            ExpandError::Invalid { path, reason }
        })?),
        None => None,
    };
    Ok(Expansion {
        rules: body.rules,
        terminal: body.terminal,
        exp,
        details: ex.details,
        warnings: ex.warnings,
        queried: ex.queried,
    })
}

/// Why expanding a term stopped: a temporary failure may still be rescued by the
/// last good result of an enclosing term; anything else is final.
enum Failure {
    Temporary { path: String, error: String },
    Final(ExpandError),
}

impl Failure {
    fn into_error(self) -> ExpandError {
        match self {
            Failure::Temporary { path, error } => ExpandError::Temporary { path, error },
            Failure::Final(e) => e,
        }
    }
}

impl From<ExpandError> for Failure {
    fn from(e: ExpandError) -> Self {
        Failure::Final(e)
    }
}

/// The terms from the top-level record down to the one being expanded.
type Path<'p> = &'p [String];

fn show(path: Path<'_>) -> String {
    if path.is_empty() {
        "the record".to_string()
    } else {
        path.join(" -> ")
    }
}

fn child(path: Path<'_>, key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

type BoxFuture<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

/// The state of one expansion.
struct Expander<'a, D> {
    dns: &'a D,
    memory: &'a mut LastGood,
    opts: &'a ExpandOptions,
    /// The domains being expanded (include and redirect chain), to catch loops.
    stack: Vec<String>,
    /// The fetch time of the oldest result used in the target being expanded, so a
    /// result built on stale parts is remembered as that old.
    oldest: u64,
    details: Vec<TermDetail>,
    warnings: Vec<Warning>,
    queried: Vec<(String, RecordType)>,
}

impl<'a, D: DnsLookup> Expander<'a, D> {
    fn new(dns: &'a D, memory: &'a mut LastGood, opts: &'a ExpandOptions) -> Self {
        Self {
            dns,
            memory,
            opts,
            stack: Vec::new(),
            oldest: opts.now,
            details: Vec::new(),
            warnings: Vec::new(),
            queried: Vec::new(),
        }
    }

    fn asked(&mut self, name: &str, rtype: RecordType) {
        let entry = (normalize(name), rtype);
        if !self.queried.contains(&entry) {
            self.queried.push(entry);
        }
    }

    /// The record of `domain` flattened: directives up to `all`, then the redirect
    /// when there is no `all` (RFC 7208 6.1), else neutral.
    async fn body(&mut self, domain: &str, record: &Record, path: Path<'_>) -> Result<Body, Failure> {
        let mut rules = Vec::new();
        let mut live = 0;
        for directive in record.directives() {
            if directive.mechanism == Mechanism::All {
                let terminal = Terminal::All(directive.qualifier);
                return Ok(Body {
                    rules,
                    terminal,
                    live,
                });
            }
            let (rule, cost) = self.rule(directive, domain, path).await?;
            rules.push(rule);
            live += cost;
        }
        let terminal = match record.redirect() {
            None => Terminal::Absent,
            Some(spec) if rewrite::is_fixed(spec) => {
                let target = rewrite::expand_fixed(spec, domain);
                let body = self.redirect(&target, path).await?;
                rules.extend(body.rules);
                live += 1 + body.live;
                body.terminal
            }
            Some(spec) => {
                let text =
                    rewrite::modifier("redirect", spec, domain).map_err(|reason| invalid(path, reason))?;
                live += 1;
                self.uncounted(&text);
                Terminal::Redirect { text, lookups: 1 }
            }
        };
        Ok(Body {
            rules,
            terminal,
            live,
        })
    }

    /// One directive other than `all` as a rule, with what it costs a receiver that
    /// evaluates it live.
    async fn rule(&mut self, d: &Directive, domain: &str, path: Path<'_>) -> Result<(Rule, usize), Failure> {
        let q = d.qualifier;
        let spec = d.mechanism.domain_spec();
        let fixed = spec.is_none_or(rewrite::is_fixed);
        let target = match spec {
            Some(spec) if fixed => rewrite::expand_fixed(spec, domain),
            _ => domain.to_string(),
        };
        match &d.mechanism {
            Mechanism::Ip4(net) => Ok((static_rule(q, Ip4Set::from_nets([*net]), Ip6Set::new()), 0)),
            Mechanism::Ip6(net) => Ok((static_rule(q, Ip4Set::new(), Ip6Set::from_nets([*net])), 0)),
            Mechanism::A { cidr4, cidr6, .. } if fixed => {
                let (v4, v6) = self.addresses("a", &target, (*cidr4, *cidr6), path).await?;
                Ok((static_rule(q, v4, v6), 1))
            }
            Mechanism::Mx { cidr4, cidr6, .. } if fixed => {
                let (v4, v6) = self.addresses("mx", &target, (*cidr4, *cidr6), path).await?;
                Ok((static_rule(q, v4, v6), 1))
            }
            Mechanism::Include(_) if fixed => self.include(q, &target, path).await,
            other => {
                let text = rewrite::dynamic_term(q, other, domain).map_err(|reason| invalid(path, reason))?;
                if matches!(other, Mechanism::Include(_)) {
                    self.uncounted(&text);
                }
                Ok((
                    Rule::Dynamic {
                        qualifier: q,
                        text,
                        lookups: 1,
                    },
                    1,
                ))
            }
        }
    }

    /// include (5.2): where the target passes, or `include:<target>` left to the
    /// receiver when that depends on the message.
    async fn include(
        &mut self,
        q: Qualifier,
        target: &str,
        path: Path<'_>,
    ) -> Result<(Rule, usize), Failure> {
        let key = format!("include:{}", normalize(target));
        let path = child(path, &key);
        let recalled = match self.target_body(target.to_string(), &path).await {
            Ok((body, as_of)) => {
                let (now, hold) = (self.opts.now, self.opts.hold_down);
                let stored = self
                    .memory
                    .store_include(&key, include_result(&body), as_of, now, hold);
                self.report(&key, &stored, false);
                stored
            }
            Err(failure) => {
                let recalled = self.fall_back(&key, failure)?;
                self.report(&key, &recalled, true);
                recalled
            }
        };
        Ok(include_rule(q, target, recalled.result))
    }

    /// redirect (6.1): the target's rules and terminal.
    async fn redirect(&mut self, target: &str, path: Path<'_>) -> Result<Body, Failure> {
        let key = format!("redirect:{}", normalize(target));
        let path = child(path, &key);
        let recalled = match self.target_body(target.to_string(), &path).await {
            Ok((body, as_of)) => {
                let stored = self.remember(&key, Remembered::Redirect { body }, as_of);
                self.report(&key, &stored, false);
                stored
            }
            Err(failure) => {
                let recalled = self.fall_back(&key, failure)?;
                self.report(&key, &recalled, true);
                recalled
            }
        };
        match recalled.result {
            Remembered::Redirect { body } => Ok(body),
            other => unreachable!("a redirect remembered as {other:?}"),
        }
    }

    /// The record of an include or redirect target, flattened, and the fetch time of
    /// the oldest result it used. Boxed: include and redirect recurse.
    fn target_body(&mut self, target: String, path: Path<'_>) -> BoxFuture<'_, Result<(Body, u64), Failure>> {
        let path = path.to_vec();
        Box::pin(async move {
            let name = normalize(&target);
            if !is_valid_domain(&target) {
                let reason = format!(
                    "`{target}` is not a valid domain name (RFC 7208 4.3), so receivers answer permerror"
                );
                return Err(invalid(&path, reason));
            }
            if self.stack.contains(&name) {
                return Err(Failure::Final(ExpandError::Loop {
                    path: show(&path),
                    target: name,
                }));
            }
            if self.stack.len() >= MAX_DEPTH {
                return Err(invalid(
                    &path,
                    format!("include and redirect nested more than {MAX_DEPTH} deep"),
                ));
            }
            let record = self.fetch_record(&target, &path).await?;
            self.stack.push(name);
            let outer = std::mem::replace(&mut self.oldest, self.opts.now);
            let body = self.body(&target, &record, &path).await;
            let as_of = self.oldest;
            self.oldest = outer.min(as_of);
            self.stack.pop();
            body.map(|b| (b, as_of))
        })
    }

    /// The one SPF record at `target` (RFC 7208 4.4, 4.5).
    async fn fetch_record(&mut self, target: &str, path: Path<'_>) -> Result<Record, Failure> {
        self.asked(target, RecordType::TXT);
        let texts = match self.dns.txt(target).await {
            Ok(texts) => texts,
            Err(LookupError::Temporary(e)) => {
                let error = format!("TXT lookup of {target}: temporary DNS failure: {e}");
                return Err(Failure::Temporary {
                    path: show(path),
                    error,
                });
            }
            Err(LookupError::NxDomain | LookupError::NoData) => Vec::new(),
        };
        let mut spf = texts.iter().filter(|t| is_spf_record(t));
        match (spf.next(), spf.next()) {
            (None, _) => Err(Failure::Final(ExpandError::NoRecord {
                path: show(path),
                target: normalize(target),
            })),
            (Some(_), Some(_)) => Err(invalid(
                path,
                format!(
                    "{target} has more than one v=spf1 record, so receivers answer permerror (RFC 7208 4.5)"
                ),
            )),
            (Some(text), None) => Record::parse(text).map_err(|e| {
                invalid(
                    path,
                    format!("the record of {target} is invalid {e}, so receivers answer permerror"),
                )
            }),
        }
    }

    /// The addresses an `a` or `mx` term matches: its name's (or MX hosts') A and
    /// AAAA records widened to the CIDR lengths. No name or no records is no match.
    async fn addresses(
        &mut self,
        kind: &str,
        target: &str,
        (cidr4, cidr6): (Option<u8>, Option<u8>),
        path: Path<'_>,
    ) -> Result<(Ip4Set, Ip6Set), Failure> {
        let key = format!("{kind}:{}", normalize(target));
        let path = child(path, &key);
        let fresh = if kind == "mx" {
            self.mx_addresses(target, &path).await
        } else {
            self.host_addresses(target, &path).await
        };
        let (recalled, from_last_good) = match fresh {
            Ok((v4, v6)) => (
                self.remember(&key, Remembered::Addresses { v4, v6 }, self.opts.now),
                false,
            ),
            Err(failure) => (self.fall_back(&key, failure)?, true),
        };
        let Remembered::Addresses { v4, v6 } = &recalled.result else {
            unreachable!("addresses remembered as {:?}", recalled.result);
        };
        let (v4, v6) = (v4.widen(cidr4.unwrap_or(32)), v6.widen(cidr6.unwrap_or(128)));
        let result = Remembered::Addresses {
            v4: v4.clone(),
            v6: v6.clone(),
        };
        self.report(&key, &Recalled { result, ..recalled }, from_last_good);
        Ok((v4, v6))
    }

    async fn mx_addresses(&mut self, target: &str, path: Path<'_>) -> Result<(Ip4Set, Ip6Set), Failure> {
        let mut sets = (Ip4Set::new(), Ip6Set::new());
        if !is_queryable(target) {
            return Ok(sets);
        }
        self.asked(target, RecordType::MX);
        let hosts = found(self.dns.mx(target).await, "MX", target, path)?;
        for host in &hosts {
            let host = host.strip_suffix('.').unwrap_or(host);
            if !is_queryable(host) {
                continue; // the null MX (RFC 7505)
            }
            let (v4, v6) = self.lookup_addresses(host, path).await?;
            sets = (sets.0.union(&v4), sets.1.union(&v6));
        }
        Ok(sets)
    }

    async fn host_addresses(&mut self, target: &str, path: Path<'_>) -> Result<(Ip4Set, Ip6Set), Failure> {
        if is_queryable(target) {
            self.lookup_addresses(target, path).await
        } else {
            Ok((Ip4Set::new(), Ip6Set::new()))
        }
    }

    /// A and AAAA records of `host` as /32 and /128 sets.
    async fn lookup_addresses(&mut self, host: &str, path: Path<'_>) -> Result<(Ip4Set, Ip6Set), Failure> {
        self.asked(host, RecordType::A);
        self.asked(host, RecordType::AAAA);
        let v4 = found(self.dns.a(host).await, "A", host, path)?;
        let v6 = found(self.dns.aaaa(host).await, "AAAA", host, path)?;
        Ok((
            Ip4Set::from_nets(v4.into_iter().map(ipnet::Ipv4Net::from)),
            Ip6Set::from_nets(v6.into_iter().map(ipnet::Ipv6Net::from)),
        ))
    }

    /// An include or redirect whose target depends on the message: what the target
    /// costs cannot be known ahead, so only the term itself is counted.
    fn uncounted(&mut self, text: &str) {
        self.warnings.push(Warning {
            level: Level::Warning,
            key: text.to_string(),
            message: "the target depends on the message: only this term's own lookup is counted, \
                      not those of the records it leads to"
                .to_string(),
        });
    }

    /// Stores a fresh result of a term other than an include.
    fn remember(&mut self, key: &str, result: Remembered, fetched_at: u64) -> Recalled {
        self.memory.store(key, result, fetched_at);
        let recalled = self.memory.recall(key, self.opts.now, self.opts.hold_down);
        recalled.expect("just stored")
    }

    /// The last good result of `key` when `failure` is temporary, reported with its
    /// age; an error-level warning once older than `max_stale`.
    fn fall_back(&mut self, key: &str, failure: Failure) -> Result<Recalled, Failure> {
        let Failure::Temporary { error, .. } = &failure else {
            return Err(failure);
        };
        let Some(recalled) = self.memory.recall(key, self.opts.now, self.opts.hold_down) else {
            return Err(failure);
        };
        self.oldest = self.oldest.min(recalled.fetched_at);
        let age = self.opts.now.saturating_sub(recalled.fetched_at);
        let too_old = Duration::from_secs(age) > self.opts.max_stale;
        let level = if too_old { Level::Error } else { Level::Warning };
        let limit = if too_old {
            format!(", older than max_stale ({}s)", self.opts.max_stale.as_secs())
        } else {
            String::new()
        };
        self.warnings.push(Warning {
            level,
            key: key.to_string(),
            message: format!("{error}; using the last good result, fetched {age}s ago{limit}"),
        });
        Ok(recalled)
    }

    /// Records how an include, redirect, `a` or `mx` term was expanded.
    fn report(&mut self, key: &str, recalled: &Recalled, from_last_good: bool) {
        let (v4, v6, kept_live) = match &recalled.result {
            Remembered::Include { v4, v6, .. } => (v4.clone(), v6.clone(), false),
            Remembered::LiveInclude { .. } => (Ip4Set::new(), Ip6Set::new(), true),
            Remembered::Redirect { body } => {
                let (v4, v6) = body.pass_sets().unwrap_or_default();
                (v4, v6, false)
            }
            Remembered::Addresses { v4, v6 } => (v4.clone(), v6.clone(), false),
        };
        self.details.push(TermDetail {
            key: key.to_string(),
            v4,
            v6,
            kept_live,
            held_v4: recalled.held.0.clone(),
            held_v6: recalled.held.1.clone(),
            held_until: recalled.held_until.clone(),
            from_last_good,
            age: self.opts.now.saturating_sub(recalled.fetched_at),
        });
    }
}

/// What an include's target evaluation leaves to remember: where it passes, or
/// only its cost when that depends on the message.
fn include_result(body: &Body) -> Remembered {
    let live = body.live;
    match body.pass_sets() {
        Some((v4, v6)) => Remembered::Include { v4, v6, live },
        None => Remembered::LiveInclude { live },
    }
}

/// The rule an include becomes, and what it costs a receiver evaluating it live.
fn include_rule(qualifier: Qualifier, target: &str, result: Remembered) -> (Rule, usize) {
    match result {
        Remembered::Include { v4, v6, live } => (static_rule(qualifier, v4, v6), 1 + live),
        Remembered::LiveInclude { live } => {
            let text = format!(
                "{}include:{}",
                prefix(qualifier),
                normalize(target).replace('%', "%%")
            );
            let lookups = 1 + live;
            (
                Rule::Dynamic {
                    qualifier,
                    text,
                    lookups,
                },
                lookups,
            )
        }
        other => unreachable!("an include remembered as {other:?}"),
    }
}

fn static_rule(qualifier: Qualifier, v4: Ip4Set, v6: Ip6Set) -> Rule {
    Rule::Static { qualifier, v4, v6 }
}

fn invalid(path: Path<'_>, reason: String) -> Failure {
    Failure::Final(ExpandError::Invalid {
        path: show(path),
        reason,
    })
}

/// Records of a lookup for an `a` or `mx` term: none when the name does not exist or
/// has none (no match, RFC 7208 5); a temporary failure stops the term.
fn found<T>(
    answer: Result<Vec<T>, LookupError>,
    rtype: &str,
    name: &str,
    path: Path<'_>,
) -> Result<Vec<T>, Failure> {
    match answer {
        Ok(records) => Ok(records),
        Err(LookupError::NxDomain | LookupError::NoData) => Ok(Vec::new()),
        Err(LookupError::Temporary(e)) => Err(Failure::Temporary {
            path: show(path),
            error: format!("{rtype} lookup of {name}: temporary DNS failure: {e}"),
        }),
    }
}
