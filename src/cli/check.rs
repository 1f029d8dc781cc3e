//! `spfd check` and `spfd records`: what the server would load, and what the owner
//! must publish at their own DNS provider.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

use super::{join_diagnostics, load_offline};
use crate::config::Config;
use crate::dnssec::SignedZone;
use crate::names::{parse_host_name, prepend};
use crate::policy::{SpfMode, ValidPolicy};
use crate::snapshot::Snapshot;

/// `spfd check`: every diagnostic, then one summary line per policy. The bool is false
/// when any error was found.
pub fn check(config_path: &Path) -> (String, bool) {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(diags) => return (join_diagnostics(&diags) + "\n", false),
    };
    let (snapshot, report) = load_offline(&config);
    let mut out = String::new();
    for d in &report.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    let mut zones: Vec<_> = snapshot.zones.values().collect();
    zones.sort_by(|a, b| a.policy.path.cmp(&b.policy.path));
    for zone in &zones {
        let _ = writeln!(out, "{}", summary(&zone.policy));
    }
    report_authorisations(&zones, &mut out);
    let mut key_errors = 0;
    for zone in &zones {
        if let Some(name) = zone.policy.transfer.as_ref().and_then(|t| t.tsig.as_ref())
            && !config.tsig.contains_key(name)
        {
            key_errors += 1;
            let _ = writeln!(
                out,
                "{}: error: transfer tsig {name:?} is not a [tsig.{name}] table of {}; transfers of zone {} are refused",
                zone.policy.path.display(),
                config.path.display(),
                zone.policy.zone
            );
        }
    }
    for zone in &zones {
        let dns = crate::reports::spf_view::NoDns;
        if let Some(line) = super::reports::check_line(&config, &zone.policy, &snapshot, &dns) {
            let _ = writeln!(out, "reports: {line}");
        }
    }
    let errors = report.errors().count() + key_errors;
    let warnings = report.diagnostics.len() + key_errors - errors;
    let _ = writeln!(
        out,
        "{} policies valid, {errors} errors, {warnings} warnings",
        snapshot.zone_count()
    );
    (out, errors == 0)
}

/// The `<domain>._report._dmarc.<host>` records the policies' rua destinations need.
fn report_authorisations(zones: &[&std::sync::Arc<crate::snapshot::Zone>], out: &mut String) {
    let auth = crate::reports::authorize::authorisations(zones.iter().map(|z| z.policy.as_ref()));
    for s in &auth.served {
        let _ = writeln!(
            out,
            "report authorisation: {} TXT \"{}\" belongs in zone {}, which spfd serves",
            s.owner, s.text, s.zone
        );
    }
    for e in &auth.external {
        let _ = writeln!(
            out,
            "report authorisation: {} sends reports to {} outside the zones spfd serves: TXT \"{}\" must \
             be published at {} there, or receivers will not send them",
            e.policy_domain,
            e.uri,
            crate::reports::authorize::TEXT,
            e.owner
        );
    }
}

fn summary(p: &ValidPolicy) -> String {
    let mut line = format!(
        "{}: domain {} served in zone {}",
        p.path.display(),
        p.domain,
        p.zone
    );
    if let (Some(spf), Some(lookups)) = (&p.spf, p.spf_direct_lookups()) {
        let _ = write!(line, "; SPF mode {}", spf.mode.as_str());
        let _ = match spf.mode {
            SpfMode::Passthrough => write!(line, ", {lookups} DNS lookups before those inside includes"),
            SpfMode::Flatten => write!(
                line,
                ", as written {lookups} DNS lookups before those inside includes (`spfd flatten` shows the published chain)"
            ),
            SpfMode::Macro => write!(
                line,
                ", receivers spend {} DNS lookups plus terms evaluated live; note: a few receivers do not implement SPF macros",
                1 + usize::from(p.zone != p.domain)
            ),
        };
    }
    if let Some(dmarc) = &p.dmarc {
        let _ = write!(line, "; DMARC p={}", dmarc.p());
    }
    if !p.dkim.is_empty() {
        let selectors: Vec<&str> = p.dkim.iter().map(|k| k.selector.as_str()).collect();
        let _ = write!(line, "; DKIM selectors {}", selectors.join(", "));
    }
    line
}

/// TTL of the records the owner adds at their provider: delegations change rarely.
const OWNER_TTL: u32 = 3600;

/// `spfd records`: zone-file lines the owner adds at their own DNS provider.
pub fn records(config: &Config, snapshot: &Snapshot, only: Option<&str>) -> anyhow::Result<String> {
    let only = only
        .map(parse_host_name)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("DOMAIN")?;
    let mut policies: Vec<&ValidPolicy> = snapshot.zones.values().map(|z| z.policy.as_ref()).collect();
    policies.sort_by(|a, b| a.domain.cmp(&b.domain));
    policies.retain(|p| only.as_ref().is_none_or(|d| &p.domain == d));
    if policies.is_empty() {
        match only {
            Some(d) => bail!("no valid policy for {d}"),
            None => bail!("no valid policy in {}", config.policy_dir.display()),
        }
    }
    let mut out = String::new();
    for p in policies {
        let signed = snapshot
            .zones
            .get(&p.zone_lower)
            .and_then(|z| z.wire.zone.dnssec.clone());
        owner_records(config, p, signed.as_deref(), &mut out);
    }
    Ok(out)
}

/// The name servers of a policy's zone: its zone file's apex NS records (the zone
/// serves those), else the configured ones.
fn served_nameservers(config: &Config, p: &ValidPolicy) -> Vec<hickory_proto::rr::Name> {
    let from_file: Vec<hickory_proto::rr::Name> = p
        .zone_data
        .iter()
        .flat_map(|d| d.records.iter())
        .filter(|(r, _)| r.name == p.zone)
        .filter_map(|(r, _)| match &r.data {
            hickory_proto::rr::RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        })
        .collect();
    if from_file.is_empty() {
        config.nameservers.clone()
    } else {
        from_file
    }
}

fn owner_records(config: &Config, p: &ValidPolicy, signed: Option<&SignedZone>, out: &mut String) {
    let _ = writeln!(out, "; {} ({})", p.domain, p.path.display());
    if p.zone == p.domain {
        let _ = writeln!(
            out,
            "; spfd serves the whole zone {}: set its NS records at the registrar to",
            p.zone
        );
    } else {
        let _ = writeln!(out, "; delegate {} to spfd, in the zone of its parent:", p.zone);
    }
    for ns in served_nameservers(config, p) {
        let _ = writeln!(out, "{}\t{OWNER_TTL}\tIN\tNS\t{ns}", p.zone);
    }
    // DNSSEC: the DS beside the delegation (its parent signs it).
    for key in signed.iter().flat_map(|s| s.signer.keys.keys.iter()) {
        if let Ok(line) = super::dnssec::ds_line(&p.zone, key) {
            let _ = writeln!(out, "{line}");
        }
    }
    if p.zone == p.domain {
        let _ = writeln!(out);
        return;
    }
    let _ = writeln!(
        out,
        "; at {}, in place of its own SPF, DMARC and DKIM records:",
        p.domain
    );
    if p.spf.is_some() {
        let zone = p.zone.to_string();
        let _ = writeln!(
            out,
            "{}\t{OWNER_TTL}\tIN\tTXT\t\"v=spf1 redirect={}\"",
            p.domain,
            zone.trim_end_matches('.')
        );
    }
    if p.dmarc.is_some() {
        let _ = writeln!(
            out,
            "{}\t{OWNER_TTL}\tIN\tCNAME\t{}",
            prepend(&p.domain, "_dmarc"),
            prepend(&p.zone, "_dmarc")
        );
    }
    for key in &p.dkim {
        let at = |apex| prepend(&prepend(apex, "_domainkey"), &key.selector);
        let _ = writeln!(out, "{}\t{OWNER_TTL}\tIN\tCNAME\t{}", at(&p.domain), at(&p.zone));
    }
    let _ = writeln!(out);
}
