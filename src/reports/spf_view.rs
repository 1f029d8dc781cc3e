//! What a policy's SPF authorises, term by term: which term of the record as written
//! covers a source address (`include:_spf.google.com`, `ip4:203.0.113.0/24`, `mx`).
//!
//! The decision comes from the published expansion (`state_dir/published.json`) when
//! it was computed for this very record; the per-term sets come from the flattener's
//! own expansion ([`crate::flatten::expand`]) through `[upstream]`, falling back on
//! the last good results in `state_dir` when upstream fails. Without either the
//! summary says so instead of guessing.

use std::net::IpAddr;

use crate::config::Config;
use crate::flatten::{self, Ip4Set, Ip6Set, LastGood, Rule};
use crate::policy::ValidPolicy;
use crate::published::Published;
use crate::spf::{DnsLookup, Qualifier};

/// One top-level directive of the record and the addresses it matches.
#[derive(Debug, Clone)]
struct TermSet {
    label: String,
    qualifier: Qualifier,
    v4: Ip4Set,
    v6: Ip6Set,
}

/// The SPF record of one policy, resolved.
#[derive(Debug, Clone)]
pub struct SpfView {
    rules: Vec<Rule>,
    terms: Vec<TermSet>,
    /// Where the decision came from: `published` or `resolved`.
    pub origin: &'static str,
    /// Why per-term names are missing, when they are.
    pub note: Option<String>,
    /// The include targets the record names at its top level (lower case).
    pub includes: Vec<String>,
}

/// Why no view could be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ViewError {
    #[error("{0} has no [spf] section")]
    NoSpf(String),
    #[error(
        "the SPF record of {domain} could not be resolved ({why}) and no published expansion is in {state}"
    )]
    Unresolved {
        domain: String,
        why: String,
        state: String,
    },
}

impl SpfView {
    /// Builds the view of `policy` (see the module comment for the sources).
    pub async fn build<D: DnsLookup>(
        config: &Config,
        policy: &ValidPolicy,
        dns: &D,
    ) -> Result<SpfView, ViewError> {
        let spf = policy
            .spf
            .as_ref()
            .ok_or_else(|| ViewError::NoSpf(policy.path.display().to_string()))?;
        let published = published_entry(config, policy);
        let record = spf.record();
        // Read, never written: the summary must not change what a running server remembers.
        let mut memory: LastGood = crate::state::load_json(&config.state_dir, "flatten-memory.json")
            .ok()
            .flatten()
            .unwrap_or_default();
        let opts = flatten::ExpandOptions {
            now: super::ingest::now() as u64,
            hold_down: config.upstream.hold_down,
            max_stale: config.upstream.max_stale,
        };
        let expanded = flatten::expand(dns, &policy.domain_text, &record, &mut memory, &opts).await;
        let includes = record_includes(&record);
        match (expanded, published) {
            (Ok(exp), published) => {
                let terms = term_sets(&record, &policy.domain_text, &exp.details);
                let (rules, origin) = match published {
                    Some(entry) => (entry.rules.clone(), "published"),
                    None => (exp.rules, "resolved"),
                };
                Ok(SpfView {
                    rules,
                    terms,
                    origin,
                    note: None,
                    includes,
                })
            }
            (Err(e), Some(entry)) => Ok(SpfView {
                rules: entry.rules.clone(),
                terms: Vec::new(),
                origin: "published",
                note: Some(format!("which term covers each source is unknown: {e}")),
                includes,
            }),
            (Err(e), None) => Err(ViewError::Unresolved {
                domain: policy.domain_text.clone(),
                why: e.to_string(),
                state: config.state_dir.display().to_string(),
            }),
        }
    }

    /// Whether SPF passes for the address (first matching rule decides; a term left
    /// for the receiver is not assumed to match).
    pub fn authorises(&self, ip: IpAddr) -> bool {
        for rule in &self.rules {
            if let Rule::Static { qualifier, v4, v6 } = rule
                && contains(v4, v6, ip)
            {
                return *qualifier == Qualifier::Pass;
            }
        }
        false
    }

    /// The first pass term of the record as written that covers the address.
    pub fn via(&self, ip: IpAddr) -> Option<String> {
        self.terms
            .iter()
            .find(|t| contains(&t.v4, &t.v6, ip))
            .filter(|t| t.qualifier == Qualifier::Pass)
            .map(|t| t.label.clone())
    }

    /// The view from the published expansion alone (no DNS), when there is one for
    /// this very record: what `spfd check` uses.
    pub fn published_only(config: &Config, policy: &ValidPolicy) -> Option<SpfView> {
        let spf = policy.spf.as_ref()?;
        let entry = published_entry(config, policy)?;
        Some(SpfView {
            rules: entry.rules.clone(),
            terms: Vec::new(),
            origin: "published",
            note: Some("which term covers each source was not resolved".into()),
            includes: record_includes(&spf.record()),
        })
    }

    /// A view from rules alone (tests, and callers that already expanded).
    pub fn from_rules(rules: Vec<Rule>) -> SpfView {
        SpfView {
            rules,
            terms: Vec::new(),
            origin: "resolved",
            note: None,
            includes: Vec::new(),
        }
    }
}

/// The published expansion of the policy, when it was computed for its record as written.
fn published_entry(config: &Config, policy: &ValidPolicy) -> Option<std::sync::Arc<crate::published::Entry>> {
    let spf = policy.spf.as_ref()?;
    Published::load(&config.state_dir)
        .ok()?
        .get(&policy.domain_text)
        .filter(|e| e.record == spf.text)
}

/// The include targets of a record's top level, lower case.
pub fn record_includes(record: &crate::spf::Record) -> Vec<String> {
    top_level(record, "")
        .into_iter()
        .filter_map(|(_, key, _)| key?.strip_prefix("include:").map(str::to_string))
        .collect()
}

/// A resolver that knows nothing: every lookup is a temporary failure. For callers
/// that must not touch the network (`spfd check`).
pub struct NoDns;

impl DnsLookup for NoDns {
    async fn txt(&self, _: &str) -> Result<Vec<String>, crate::spf::LookupError> {
        Err(offline())
    }
    async fn a(&self, _: &str) -> Result<Vec<std::net::Ipv4Addr>, crate::spf::LookupError> {
        Err(offline())
    }
    async fn aaaa(&self, _: &str) -> Result<Vec<std::net::Ipv6Addr>, crate::spf::LookupError> {
        Err(offline())
    }
    async fn mx(&self, _: &str) -> Result<Vec<String>, crate::spf::LookupError> {
        Err(offline())
    }
    async fn ptr(&self, _: &str) -> Result<Vec<String>, crate::spf::LookupError> {
        Err(offline())
    }
}

fn offline() -> crate::spf::LookupError {
    crate::spf::LookupError::Temporary("not asked (offline)".into())
}

pub fn contains(v4: &Ip4Set, v6: &Ip6Set, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4.contains(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a4) => v4.contains(a4),
            None => v6.contains(a),
        },
    }
}

/// The top-level directives: (label as written without qualifier, detail key, qualifier).
fn top_level(record: &crate::spf::Record, domain: &str) -> Vec<(String, Option<String>, Qualifier)> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    record
        .terms()
        .iter()
        .filter_map(|t| t.directive().map(|d| (t.text(), d)))
        .map(|(text, d)| {
            let label = text.trim_start_matches(['+', '-', '~', '?']).to_string();
            let name = d.mechanism.name();
            let target = label
                .split_once(':')
                .map(|(_, t)| t.split('/').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| domain.clone());
            let key = matches!(name, "include" | "a" | "mx")
                .then(|| format!("{name}:{}", target.trim_end_matches('.').to_ascii_lowercase()));
            (label, key, d.qualifier)
        })
        .collect()
}

fn term_sets(record: &crate::spf::Record, domain: &str, details: &[flatten::TermDetail]) -> Vec<TermSet> {
    let mut out = Vec::new();
    for (label, key, qualifier) in top_level(record, domain) {
        let (v4, v6) = match (&key, crate::spf::Record::parse(&format!("v=spf1 {label}"))) {
            (Some(key), _) => match details.iter().find(|d| &d.key == key) {
                Some(d) => (d.v4.clone(), d.v6.clone()),
                None => continue,
            },
            (None, Ok(single)) => match static_sets(&single) {
                Some(sets) => sets,
                None => continue,
            },
            (None, Err(_)) => continue,
        };
        out.push(TermSet {
            label,
            qualifier,
            v4,
            v6,
        });
    }
    out
}

/// The sets of a lone `ip4:`/`ip6:`/`all` term.
fn static_sets(single: &crate::spf::Record) -> Option<(Ip4Set, Ip6Set)> {
    let d = single.directives().next()?;
    match &d.mechanism {
        crate::spf::Mechanism::Ip4(net) => Some((Ip4Set::from_nets([net.trunc()]), Ip6Set::new())),
        crate::spf::Mechanism::Ip6(net) => Some((Ip4Set::new(), Ip6Set::from_nets([net.trunc()]))),
        crate::spf::Mechanism::All => Some((Ip4Set::full(), Ip6Set::full())),
        _ => None,
    }
}

/// The addresses where `include:<target>` passes, resolved like the flattener does.
pub async fn include_sets<D: DnsLookup>(dns: &D, target: &str) -> Option<(Ip4Set, Ip6Set)> {
    let record = crate::spf::Record::parse(&format!("v=spf1 include:{target} -all")).ok()?;
    let mut memory = LastGood::default();
    let opts = flatten::ExpandOptions::at(super::ingest::now() as u64);
    let exp = flatten::expand(dns, "include.check.invalid", &record, &mut memory, &opts)
        .await
        .ok()?;
    let mut sets = (Ip4Set::new(), Ip6Set::new());
    for rule in &exp.rules {
        if let Rule::Static {
            qualifier: Qualifier::Pass,
            v4,
            v6,
        } = rule
        {
            sets = (sets.0.union(v4), sets.1.union(v6));
        }
    }
    Some(sets)
}
