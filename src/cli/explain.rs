//! `spfd flatten` and `spfd explain`: the flattening engine and the evaluator, run once
//! from the command line against the configured upstream.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::Config;
use crate::flatten::{self, LastGood};
use crate::policy::ValidPolicy;
use crate::spf::{self, EvalOptions, Query};
use crate::upstream::Upstream;

/// The message an explanation is for: MAIL FROM defaults to postmaster@<domain>.
pub fn query(policy: &ValidPolicy, ip: IpAddr, sender: Option<&str>, helo: Option<&str>) -> Query {
    let domain = policy.domain.to_string().trim_end_matches('.').to_string();
    let sender = sender.map_or_else(|| format!("postmaster@{domain}"), str::to_string);
    Query::new(ip, &sender, helo.unwrap_or(&domain))
}

/// Evaluates the policy's record as written, as receivers would with the lookup limits
/// lifted (what flattening publishes) and within them (what the record as written gets).
pub async fn explain(config: &Config, policy: &ValidPolicy, query: &Query) -> anyhow::Result<String> {
    let Some(spf) = &policy.spf else {
        anyhow::bail!("{} has no [spf] section", policy.path.display());
    };
    let upstream = Upstream::from_config(&config.upstream)?;
    let domain = policy.domain.to_string().trim_end_matches('.').to_string();
    let record = spf.record();
    let lifted = spf::check_record(&upstream, &record, &domain, query, &EvalOptions::without_limits()).await;
    let strict = spf::check_record(&upstream, &record, &domain, query, &EvalOptions::default()).await;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} for {} (sender {})",
        lifted.result, query.client_ip, query.sender
    );
    let _ = writeln!(out, "decided by: {}", lifted.trail());
    if let Some(reason) = &lifted.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    let _ = writeln!(
        out,
        "DNS lookups: {} ({} void)",
        lifted.lookups, lifted.void_lookups
    );
    if strict.result != lifted.result {
        let _ = writeln!(
            out,
            "note: the record as written gives {} within the RFC 7208 limits ({}); the flattened record gives {}",
            strict.result,
            strict.reason.as_deref().unwrap_or("limits"),
            lifted.result
        );
    }
    Ok(out)
}

/// Resolves the policy's record now and prints the chain, its lookup cost and the same
/// as zone-file lines. The bool is false when flattening failed.
pub async fn flatten(config: &Config, policy: &ValidPolicy) -> anyhow::Result<(String, bool)> {
    let Some(spf) = &policy.spf else {
        anyhow::bail!("{} has no [spf] section", policy.path.display());
    };
    let upstream = Upstream::from_config(&config.upstream)?;
    // Read, never written: a preview must not change what a running server remembers.
    let mut memory: LastGood = crate::state::load_json(&config.state_dir, "flatten-memory.json")
        .ok()
        .flatten()
        .unwrap_or_default();
    let opts = flatten::ExpandOptions {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        hold_down: config.upstream.hold_down,
        max_stale: config.upstream.max_stale,
    };
    let domain = policy.domain.to_string();
    let owner_redirect = policy.zone != policy.domain;
    let mut out = String::new();
    let _ = writeln!(out, "; {domain} in zone {}: {}", policy.zone, spf.text);
    match flatten::flatten(
        &upstream,
        &domain,
        &spf.record(),
        &policy.zone,
        owner_redirect,
        &mut memory,
        &opts,
    )
    .await
    {
        Ok((expansion, chain)) => {
            for w in &expansion.warnings {
                let _ = writeln!(out, "; warning: {w}");
            }
            let owner = usize::from(owner_redirect);
            let live = chain.lookups.saturating_sub(owner + chain.parts.len());
            let _ = writeln!(
                out,
                "; {} DNS lookups for a receiver: {owner} for the domain's redirect to the zone, {} for chained \
                 records, {live} for terms evaluated live",
                chain.lookups,
                chain.parts.len(),
            );
            out.push_str(&chain.zone_lines(policy.ttl));
            Ok((out, true))
        }
        Err(e) => {
            let _ = writeln!(out, "; error: {e}");
            Ok((out, false))
        }
    }
}
