//! What `/status` says (stable JSON, documented in docs/operations.md) and the status page
//! shows: one entry per policy in service, built from the snapshot (what is
//! published), the flattening service's status board (state, changes, held ranges) and
//! the reload service's current file errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::AdminState;
use crate::policy::{SpfMode, ValidPolicy};
use crate::refresh::{HeldRange, PolicyStatus, UpstreamChange};
use crate::reports::status::DomainStatus;
use crate::snapshot::Zone;

/// Current errors of policy files (file:line:column messages), by file: set by the
/// reload service for files whose latest version is invalid or refused.
pub type Problems = BTreeMap<PathBuf, Vec<String>>;

#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The snapshot in service.
    pub generation: u64,
    pub ready: bool,
    /// Unix time of this view.
    pub now: u64,
    pub policies: Vec<PolicyView>,
    /// Files with errors and no version in service.
    pub unserved_files: Vec<FileProblem>,
}

#[derive(Debug, Serialize)]
pub struct FileProblem {
    pub file: String,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub domain: String,
    pub zone: String,
    pub file: String,
    /// `flatten`, `macro`, `passthrough`, or `none` (no `[spf]`).
    pub spf_mode: &'static str,
    /// `ok`, `stale`, `error`, or `pending` (not expanded yet).
    pub state: &'static str,
    /// The SPF records published: the head at the apex, then the chained parts.
    pub published: Vec<PublishedRecord>,
    /// DNS lookups a receiver spends on what is published (out of 10).
    pub lookups: Option<usize>,
    pub dmarc_policy: Option<String>,
    pub dkim_selectors: Vec<String>,
    pub last_expansion: Option<u64>,
    pub last_expansion_age_s: Option<u64>,
    pub last_change: Option<u64>,
    pub changes: Vec<UpstreamChange>,
    pub held: Vec<HeldRange>,
    /// The current error: the policy file's (file:line:column) or the expansion's
    /// (with its upstream cause).
    pub error: Option<String>,
    /// The DMARC aggregate report summary and the advice (`spfd reports summary` and
    /// `spfd advise` as JSON), when the domain has reports.
    pub reports: Option<DomainStatus>,
}

#[derive(Debug, Serialize)]
pub struct PublishedRecord {
    pub name: String,
    pub text: String,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StatusView {
    pub fn build(state: &AdminState, now: u64) -> StatusView {
        let snapshot = state.snapshot.load_full();
        let board = state.board.load_full();
        let problems = state.problems.load_full();
        let reports = state.reports.load_full();
        let mut policies: Vec<PolicyView> = snapshot
            .zones
            .values()
            .map(|zone| {
                let status = board.policies.get(&zone.policy.domain_text).map(|s| s.as_ref());
                let errors = problems.get(&zone.policy.path);
                let mut view = PolicyView::build(zone, status, errors, now);
                view.reports = reports.get(&view.domain).cloned();
                view
            })
            .collect();
        policies.sort_by(|a, b| a.domain.cmp(&b.domain));
        let served: std::collections::HashSet<&PathBuf> =
            snapshot.zones.values().map(|z| &z.policy.path).collect();
        let unserved_files = problems
            .iter()
            .filter(|(path, _)| !served.contains(path))
            .map(|(path, errors)| FileProblem {
                file: path.display().to_string(),
                errors: errors.clone(),
            })
            .collect();
        StatusView {
            generation: snapshot.generation,
            ready: state.ready.is_ready(),
            now,
            policies,
            unserved_files,
        }
    }

    /// How many policies are in each state.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.policies {
            *counts.entry(p.state).or_default() += 1;
        }
        counts
    }
}

impl PolicyView {
    fn build(
        zone: &Zone,
        status: Option<&PolicyStatus>,
        errors: Option<&Vec<String>>,
        now: u64,
    ) -> PolicyView {
        let policy = zone.policy.as_ref();
        let mode = policy.spf.as_ref().map(|s| s.mode);
        let state = match (mode, status) {
            (None | Some(SpfMode::Passthrough), _) => "ok",
            (_, Some(s)) => s.state.as_str(),
            (_, None) => "pending",
        };
        let lookups = match mode {
            Some(SpfMode::Passthrough) => policy.spf_direct_lookups(),
            _ => status.and_then(|s| s.lookups),
        };
        let file_error = errors.map(|e| e.join("; "));
        PolicyView {
            domain: policy.domain_text.trim_end_matches('.').to_string(),
            zone: policy.zone_text.trim_end_matches('.').to_string(),
            file: policy.path.display().to_string(),
            spf_mode: mode.map_or("none", SpfMode::as_str),
            state: if file_error.is_some() && state == "ok" {
                "error"
            } else {
                state
            },
            published: published(zone, policy),
            lookups,
            dmarc_policy: policy.dmarc.as_ref().map(|d| d.p().to_string()),
            dkim_selectors: policy.dkim.iter().map(|k| k.selector.clone()).collect(),
            last_expansion: status.map(|s| s.last_expansion),
            last_expansion_age_s: status.map(|s| now.saturating_sub(s.last_expansion)),
            last_change: status.and_then(|s| s.last_change),
            changes: status.map(|s| s.changes.clone()).unwrap_or_default(),
            held: status.map(|s| s.held.clone()).unwrap_or_default(),
            error: file_error.or_else(|| status.and_then(|s| s.error.clone())),
            reports: None,
        }
    }
}

/// The SPF records the zone publishes: the head, then the current chain's parts.
fn published(zone: &Zone, policy: &ValidPolicy) -> Vec<PublishedRecord> {
    let apex = policy.zone_text.trim_end_matches('.').to_string();
    match (&zone.spf_answer, &policy.spf) {
        (Some(answer), _) => {
            let head = PublishedRecord {
                name: apex,
                text: answer.head.concat(),
            };
            let parts = answer.parts.first().into_iter().flat_map(|group| group.iter());
            std::iter::once(head)
                .chain(parts.map(|(name, strings)| PublishedRecord {
                    name: name.trim_end_matches('.').to_string(),
                    text: strings.concat(),
                }))
                .collect()
        }
        (None, Some(spf)) => vec![PublishedRecord {
            name: apex,
            text: spf.published_strings().concat(),
        }],
        (None, None) => Vec::new(),
    }
}
