//! `spfd reports import`, `spfd reports summary` and `spfd advise`: the DMARC
//! aggregate reports in `state_dir/reports.sqlite`, read by hand.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::config::Config;
use crate::policy::ValidPolicy;
use crate::reports::advisor::{self, Advice, Current, Thresholds};
use crate::reports::analysis::{self, Class, Context, Summary};
use crate::reports::ingest::Served;
use crate::reports::spf_view::SpfView;
use crate::reports::status::{DomainStatus, domain_status, expire, server_includes};
use crate::reports::{ImportStats, Limits, Store, import_paths};
use crate::snapshot::Snapshot;
use crate::spf::DnsLookup;
use crate::upstream::Upstream;

/// `spfd reports import`: every file under the paths into the store (the operator
/// vouches for them), then reports past the retention are deleted; with `served`,
/// only the reports about those domains are stored.
pub fn import(config: &Config, paths: &[PathBuf], served: Option<Served>) -> anyhow::Result<ImportStats> {
    let mut store = Store::open_in(&config.state_dir)?;
    let stats = import_paths(&mut store, paths, limits(config), served)?;
    expire(&mut store, config)?;
    Ok(stats)
}

/// The domains the server would serve from the policy directory, loaded the way it
/// loads them; `None` (store every report) when it holds no valid policy, so that
/// reports can be imported before any policy is written.
pub fn served_domains(config: &Config) -> Option<Served> {
    let (snapshot, _) = super::load_offline(config);
    if snapshot.zones.is_empty() {
        return None;
    }
    Some(Served::new(
        snapshot.zones.values().map(|z| z.policy.domain_text.clone()),
    ))
}

/// The decoding caps of the config.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_xml: config.reports.max_report_bytes,
        ..Limits::default()
    }
}

pub fn import_text(stats: &ImportStats) -> String {
    let mut out = String::new();
    for e in &stats.errors {
        let _ = writeln!(out, "error: {e}");
    }
    if stats.not_served > 0 {
        let _ = writeln!(
            out,
            "{} reports about domains not served here were not stored",
            stats.not_served
        );
    }
    if stats.conflicts > 0 {
        let _ = writeln!(
            out,
            "{} reports conflict with a stored report of the same organisation, id, date range and \
             domain but different content: both are kept and flagged",
            stats.conflicts
        );
    }
    let _ = writeln!(
        out,
        "{} inputs: {} reports imported ({} rows), {} duplicates skipped, {} errors",
        stats.inputs,
        stats.reports,
        stats.rows,
        stats.duplicates,
        stats.errors.len()
    );
    out
}

/// The summary and advice of a policy's domain, resolving its SPF through `[upstream]`.
pub async fn status(
    config: &Config,
    policy: &ValidPolicy,
    snapshot: &Snapshot,
    since: Option<&str>,
) -> anyhow::Result<DomainStatus> {
    let since = since
        .map(|s| {
            analysis::parse_day(s).with_context(|| format!("--since {s:?} is not a date like 2026-01-31"))
        })
        .transpose()?;
    if Store::exists_in(&config.state_dir) {
        expire(&mut Store::open_in(&config.state_dir)?, config)?;
    }
    let upstream = Upstream::from_config(&config.upstream)?;
    let includes = server_includes(snapshot, policy);
    Ok(domain_status(config, policy, &includes, &upstream, since).await?)
}

/// The store's key for a policy's domain: lower case, no trailing dot.
pub fn domain_key(policy: &ValidPolicy) -> String {
    policy.domain_text.trim_end_matches('.').to_string()
}

/// The advice for a policy, from its summary.
fn advice(config: &Config, policy: &ValidPolicy, summary: &Summary) -> anyhow::Result<Advice> {
    let store = Store::open_in(&config.state_dir)?;
    let current = current(policy);
    let days = store.days_with_policy(&domain_key(policy), &current.p, i64::MIN, config.reports.trust)?;
    Ok(advisor::advise(summary, &current, days, &Thresholds::default()))
}

pub fn current(policy: &ValidPolicy) -> Current {
    advisor::current_of(policy)
}

/// The one line `spfd check` prints for a domain with reports, without DNS.
pub fn check_line<D: DnsLookup>(
    config: &Config,
    policy: &ValidPolicy,
    snapshot: &Snapshot,
    dns: &D,
) -> Option<String> {
    if !Store::exists_in(&config.state_dir) {
        return None;
    }
    let store = Store::open_in(&config.state_dir).ok()?;
    if !store.has_reports(&domain_key(policy)).ok()? {
        return None;
    }
    let Some(view) = SpfView::published_only(config, policy) else {
        return Some(format!(
            "{}: DMARC reports are stored; `spfd advise {}` says whether to tighten",
            domain_key(policy),
            domain_key(policy)
        ));
    };
    let includes = server_includes(snapshot, policy);
    let ctx = Context {
        dns,
        view: &view,
        server_includes: &includes,
        ptr_timeout: config.upstream.timeout,
        reverse: false,
        trust: config.reports.trust,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let summary = runtime
        .block_on(analysis::summarise(&store, &domain_key(policy), None, &ctx))
        .ok()?;
    advice(config, policy, &summary).ok().map(|a| a.one_line())
}

pub fn summary_text(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} reports from {} receivers, {} .. {} ({} days)",
        s.domain,
        s.reports,
        s.receivers,
        s.first.as_deref().unwrap_or("-"),
        s.last.as_deref().unwrap_or("-"),
        s.days
    );
    let _ = writeln!(
        out,
        "messages {}, DMARC pass {} ({:.1}%)",
        s.messages,
        s.dmarc_pass,
        percent(s.dmarc_pass, s.messages)
    );
    let classes: Vec<String> = [
        Class::Authorised,
        Class::Forwarded,
        Class::Missing,
        Class::Unauthorised,
    ]
    .iter()
    .map(|c| format!("{} {}", c.as_str(), s.classes.get(c).copied().unwrap_or(0)))
    .collect();
    let _ = writeln!(out, "{}", classes.join(", "));
    let _ = writeln!(out, "{}", evidence_line(s));
    if let Some(note) = &s.note {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>6} {:<13} detail",
        "source", "messages", "DMARC%", "class"
    );
    for src in &s.sources {
        let _ = writeln!(
            out,
            "{:<40} {:>9} {:>6.1} {:<13} {}",
            src.ip,
            src.messages,
            percent(src.dmarc_pass, src.messages),
            src.class.as_str(),
            source_detail(src)
        );
    }
    out
}

/// How much of the evidence is trusted, and what was left out.
fn evidence_line(s: &Summary) -> String {
    let unverified = if s.trust == "all" {
        format!(
            "{} unverified reports ({} messages) counted (trust = all)",
            s.unverified_reports, s.unverified_messages
        )
    } else {
        format!(
            "{} unverified reports ({} messages) not counted",
            s.unverified_reports, s.unverified_messages
        )
    };
    format!(
        "{} reporting organisations; {unverified}; {} conflicting reports; {} rows with an impossible count skipped",
        s.organisations, s.conflicts, s.error_rows
    )
}

fn percent(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 * 100.0 / b as f64 }
}

fn source_detail(src: &crate::reports::analysis::Source) -> String {
    match src.class {
        Class::Authorised => format!(
            "via {} (SPF aligned {:.0}%, DKIM aligned {:.0}%)",
            src.spf_via.as_deref().unwrap_or("?"),
            percent(src.spf_aligned_pass, src.messages),
            percent(src.dkim_aligned_pass, src.messages)
        ),
        Class::Missing => format!("add {}", src.add.as_deref().unwrap_or("?")),
        Class::Forwarded => format!("DKIM by {}", src.dkim_domains.join(", ")),
        Class::Unauthorised => src.reverse.join(", "),
    }
}

pub fn advice_text(a: &Advice) -> String {
    let mut out = String::new();
    let e = &a.evidence;
    let _ = writeln!(
        out,
        "{}: {} days, {} reports, {} messages; legitimate {} of which {} pass DMARC, {} DKIM aligned; unauthorised {}",
        a.domain,
        e.days,
        e.reports,
        e.messages,
        e.legitimate_messages,
        e.legitimate_dmarc_pass,
        e.legitimate_dkim_aligned,
        e.unauthorised_messages
    );
    for (name, step) in [("DMARC", &a.dmarc), ("SPF", &a.spf)] {
        let verdict = match (&step.next, step.ready) {
            (None, _) => format!("{name}: {} (no further step)", step.current),
            (Some(n), true) => format!("{name}: {} -> {n}: ready", step.current),
            (Some(n), false) => format!("{name}: {} -> {n}: not yet", step.current),
        };
        let _ = writeln!(out, "{verdict}");
        for r in &step.reasons {
            let _ = writeln!(out, "  - {r}");
        }
        for f in &step.fixes {
            let _ = writeln!(
                out,
                "  fix {} ({}, {} failing): {}",
                f.ip,
                f.class.as_str(),
                f.failing,
                f.change
            );
        }
    }
    out
}

/// Refuses a domain with no valid policy (the caller prints the reason).
pub fn require_spf(policy: &ValidPolicy) -> anyhow::Result<()> {
    if policy.spf.is_none() {
        bail!(
            "{} has no [spf] section: nothing to classify sources against",
            policy.path.display()
        );
    }
    Ok(())
}
