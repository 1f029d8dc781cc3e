//! The story of each sender: per mail domain and period, the totals and every source
//! address classified as authorised, forwarded, missing or unauthorised.
//!
//! - **authorised**: SPF passes for the address (the published expansion decides);
//!   `spf_via` names the term of the record as written that covers it.
//! - **forwarded**: not in the SPF, but at least half its messages pass DKIM aligned
//!   (mailing lists, forwarders): no SPF change fixes it.
//! - **missing**: like forwarded, but the address is in the pass set of a known
//!   provider's include (see [`super::providers`]) the policy lacks: `include`
//!   names what to add.
//! - **unauthorised**: not in the SPF, and less than half its messages pass DKIM
//!   aligned (spoofing or an unknown sender); with reverse names.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::query::{EvidenceTrust, Overview, SourceStats};
use super::spf_view::{SpfView, contains, include_sets};
use super::store::{Store, StoreError};
use crate::flatten::{Ip4Set, Ip6Set};
use crate::spf::DnsLookup;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Authorised,
    Forwarded,
    Missing,
    Unauthorised,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Authorised => "authorised",
            Class::Forwarded => "forwarded",
            Class::Missing => "missing",
            Class::Unauthorised => "unauthorised",
        }
    }
}

/// One source address in the summary (the JSON `sources[]` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub ip: String,
    pub messages: u64,
    pub class: Class,
    /// For authorised sources: the term of the policy that covers the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spf_via: Option<String>,
    /// For missing sources: the include to add (`include:<target>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
    pub dmarc_pass: u64,
    pub spf_aligned_pass: u64,
    pub dkim_aligned_pass: u64,
    /// Passing DKIM signers (d=), most messages first.
    pub dkim_domains: Vec<String>,
    /// For unauthorised sources: the PTR names of the address.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reverse: Vec<String>,
}

/// `spfd reports summary --json`: stable; fields are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub domain: String,
    /// Start of the period (YYYY-MM-DD), when one was given.
    pub since: Option<String>,
    pub reports: u64,
    pub receivers: u64,
    pub messages: u64,
    /// Messages that passed DMARC (aligned SPF or aligned DKIM).
    pub dmarc_pass: u64,
    /// Distinct UTC days on which a report's range begins.
    pub days: u64,
    /// Distinct reporting organisations (a verified report's DKIM signer, else the
    /// organisation name).
    #[serde(default)]
    pub organisations: u64,
    /// Which reports the totals count: `verified` (verified and vouched) or `all`.
    #[serde(default)]
    pub trust: String,
    /// Reports of the period that arrived by mail without an aligned DKIM signature,
    /// and their messages (not in the totals under `trust = "verified"`).
    #[serde(default)]
    pub unverified_reports: u64,
    #[serde(default)]
    pub unverified_messages: u64,
    /// Reports stored beside another with the same key and different content.
    #[serde(default)]
    pub conflicts: u64,
    /// Rows of the counted reports skipped for an impossible message count.
    #[serde(default)]
    pub error_rows: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    /// `published` or `resolved`: where the SPF decision came from.
    pub spf_origin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Messages per class.
    pub classes: BTreeMap<Class, u64>,
    pub sources: Vec<Source>,
}

/// What the analysis needs besides the store.
pub struct Context<'a, D> {
    pub dns: &'a D,
    pub view: &'a SpfView,
    /// Include targets of the other policies on this server.
    pub server_includes: &'a [String],
    /// Per PTR lookup (the upstream timeout).
    pub ptr_timeout: std::time::Duration,
    /// Whether to look up reverse names at all.
    pub reverse: bool,
    /// Which reports count.
    pub trust: EvidenceTrust,
}

/// Builds the summary of `domain` (lower case, no trailing dot) since `since` (Unix).
pub async fn summarise<D: DnsLookup>(
    store: &Store,
    domain: &str,
    since: Option<i64>,
    ctx: &Context<'_, D>,
) -> Result<Summary, StoreError> {
    let from = since.unwrap_or(i64::MIN);
    let overview = store.overview(domain, from, ctx.trust)?;
    let (stats, error_rows) = store.sources_and_errors(domain, from, ctx.trust)?;
    let mut providers = ProviderSets::default();
    let mut sources = Vec::with_capacity(stats.len());
    for s in &stats {
        sources.push(classify(s, ctx, &mut providers).await);
    }
    add_reverse_names(store, ctx, &mut sources).await?;
    let mut summary = assemble(domain, since, &overview, sources, ctx.view);
    summary.trust = trust_name(ctx.trust).to_string();
    summary.error_rows = error_rows;
    Ok(summary)
}

fn trust_name(trust: EvidenceTrust) -> &'static str {
    match trust {
        EvidenceTrust::Trusted => "verified",
        EvidenceTrust::All => "all",
    }
}

fn assemble(domain: &str, since: Option<i64>, o: &Overview, sources: Vec<Source>, view: &SpfView) -> Summary {
    let mut classes = BTreeMap::new();
    let (mut messages, mut dmarc_pass) = (0u64, 0u64);
    for s in &sources {
        let c = classes.entry(s.class).or_insert(0u64);
        *c = c.saturating_add(s.messages);
        messages = messages.saturating_add(s.messages);
        dmarc_pass = dmarc_pass.saturating_add(s.dmarc_pass);
    }
    Summary {
        domain: domain.to_string(),
        since: since.map(day),
        reports: o.reports,
        receivers: o.receivers,
        messages,
        dmarc_pass,
        days: o.days,
        organisations: o.organisations,
        trust: String::new(),
        unverified_reports: o.unverified_reports,
        unverified_messages: o.unverified_messages,
        conflicts: o.conflicts,
        error_rows: 0,
        first: o.first.map(day),
        last: o.last.map(day),
        spf_origin: view.origin.to_string(),
        note: view.note.clone(),
        classes,
        sources,
    }
}

/// Resolved include sets, each asked once per summary.
#[derive(Default)]
struct ProviderSets(BTreeMap<String, Option<(Ip4Set, Ip6Set)>>);

async fn classify<D: DnsLookup>(
    s: &SourceStats,
    ctx: &Context<'_, D>,
    providers: &mut ProviderSets,
) -> Source {
    let ip: Option<IpAddr> = s.ip.parse().ok();
    let mut source = Source {
        ip: s.ip.clone(),
        messages: s.messages,
        class: Class::Unauthorised,
        spf_via: None,
        add: None,
        dmarc_pass: s.dmarc_pass,
        spf_aligned_pass: s.spf_aligned,
        dkim_aligned_pass: s.dkim_aligned,
        dkim_domains: by_volume(&s.dkim_domains),
        reverse: Vec::new(),
    };
    let Some(ip) = ip else { return source };
    if ctx.view.authorises(ip) {
        source.class = Class::Authorised;
        source.spf_via = ctx.view.via(ip);
    } else if s.dkim_aligned.saturating_mul(2) >= s.messages && s.dkim_aligned > 0 {
        source.class = Class::Forwarded;
        let domains = s
            .dkim_domains
            .keys()
            .chain(s.envelope_domains.keys())
            .map(String::as_str);
        for include in super::providers::candidates(domains, ctx.server_includes, &ctx.view.includes) {
            if providers.covers(ctx.dns, &include, ip).await {
                source.class = Class::Missing;
                source.add = Some(format!("include:{include}"));
                break;
            }
        }
    }
    source
}

impl ProviderSets {
    async fn covers<D: DnsLookup>(&mut self, dns: &D, include: &str, ip: IpAddr) -> bool {
        if !self.0.contains_key(include) {
            let sets = include_sets(dns, include).await;
            self.0.insert(include.to_string(), sets);
        }
        self.0[include]
            .as_ref()
            .is_some_and(|(v4, v6)| contains(v4, v6, ip))
    }
}

fn by_volume(map: &BTreeMap<String, u64>) -> Vec<String> {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().map(|(d, _)| d.clone()).collect()
}

/// Most reverse lookups a summary makes (the largest unauthorised sources first).
const MAX_REVERSE: usize = 50;

async fn add_reverse_names<D: DnsLookup>(
    store: &Store,
    ctx: &Context<'_, D>,
    sources: &mut [Source],
) -> Result<(), StoreError> {
    if !ctx.reverse {
        return Ok(());
    }
    let wanted: Vec<(usize, IpAddr)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.class == Class::Unauthorised)
        .filter_map(|(i, s)| s.ip.parse().ok().map(|ip| (i, ip)))
        .take(MAX_REVERSE)
        .collect();
    let ips: Vec<IpAddr> = wanted.iter().map(|(_, ip)| *ip).collect();
    let names = super::rdns::reverse_names(store, ctx.dns, &ips, ctx.ptr_timeout).await?;
    for ((i, _), n) in wanted.into_iter().zip(names) {
        sources[i].reverse = n;
    }
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time (UTC).
pub fn day(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix time of the start of a `YYYY-MM-DD` day (UTC).
pub fn parse_day(text: &str) -> Option<i64> {
    if !crate::config::is_date(text) {
        return None;
    }
    let y: i64 = text[0..4].parse().ok()?;
    let m: i64 = text[5..7].parse().ok()?;
    let d: i64 = text[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86400)
}

/// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for (text, unix) in [
            ("1970-01-01", 0),
            ("2026-03-01", 1_772_323_200),
            ("2024-02-29", 1_709_164_800),
        ] {
            assert_eq!(parse_day(text), Some(unix), "{text}");
            assert_eq!(day(unix + 3600), text);
        }
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("26-01-01"), None);
    }
}
