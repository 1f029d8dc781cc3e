//! The status board: what the flattening service knows of every policy it expands
//! (state, lookups, last expansion, last change, upstream changes, held ranges, the
//! current error), published as one immutable map swapped after each round, so the
//! status page and metrics read it without a lock and without touching the query path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::json;

use crate::alerts::{Alerts, Event};

/// How a policy's expansion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Published from fresh (or recent enough) upstream answers.
    Ok,
    /// Published, but built on a last good result older than `max_stale`.
    Stale,
    /// The last expansion failed: the last good record stays published.
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Error => "error",
        }
    }
}

/// A change a provider made to one expanded term, as the flattener saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamChange {
    /// Unix time it was seen.
    pub at: u64,
    /// `include:_spf.example.net`.
    pub term: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// One policy on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    pub domain: String,
    pub mode: &'static str,
    pub state: State,
    /// Lookups a receiver spends on what is published (when an expansion succeeded).
    pub lookups: Option<usize>,
    /// Unix time of the last expansion tried, and of the last change of what is published.
    pub last_expansion: u64,
    pub last_change: Option<u64>,
    /// Ranges a provider dropped that stay authorised, with when they leave.
    pub held: Vec<HeldRange>,
    /// The current error or staleness, with its upstream cause.
    pub error: Option<String>,
    /// The latest upstream changes of the terms this policy uses, newest first.
    pub changes: Vec<UpstreamChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRange {
    pub term: String,
    pub range: String,
    /// Unix time the hold-down ends.
    pub until: u64,
}

/// Every policy's status by mail domain, as of the end of a round.
#[derive(Debug, Default)]
pub struct StatusBoard {
    pub policies: BTreeMap<String, Arc<PolicyStatus>>,
}

/// The cell the service writes and readers load.
pub type BoardCell = ArcSwap<StatusBoard>;

/// How many upstream changes are kept per term and shown per policy.
const CHANGES_KEPT: usize = 10;

/// The service's side of the board: the statuses of this round, and recent changes.
#[derive(Debug, Default)]
pub(super) struct BoardWriter {
    pending: HashMap<String, Option<PolicyStatus>>,
    changes: HashMap<String, VecDeque<UpstreamChange>>,
    /// Told of every status change an owner must hear about.
    pub alerts: Alerts,
}

/// Lookups from which a record is reported as near the limit of 10.
pub const NEAR_LIMIT: usize = 9;

impl BoardWriter {
    pub fn set(&mut self, status: PolicyStatus) {
        self.pending.insert(status.domain.clone(), Some(status));
    }

    pub fn remove(&mut self, domain: &str) {
        self.pending.insert(domain.to_string(), None);
    }

    /// Records a change of a term seen by an expansion.
    pub fn changed(&mut self, change: UpstreamChange) {
        let list = self.changes.entry(change.term.clone()).or_default();
        list.push_front(change);
        list.truncate(CHANGES_KEPT);
    }

    /// The recent changes of the terms named, newest first.
    pub fn changes_of<'k>(&self, terms: impl Iterator<Item = &'k str>) -> Vec<UpstreamChange> {
        let mut out: Vec<UpstreamChange> = terms
            .filter_map(|t| self.changes.get(t))
            .flat_map(|list| list.iter().cloned())
            .collect();
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.term.cmp(&b.term)));
        out.dedup();
        out.truncate(CHANGES_KEPT);
        out
    }

    /// Swaps in a board with this round's statuses, when any changed.
    pub fn publish(&mut self, cell: &BoardCell) {
        if self.pending.is_empty() {
            return;
        }
        let current = cell.load();
        let mut policies = current.policies.clone();
        let mut changed = false;
        for (domain, status) in self.pending.drain() {
            match status {
                Some(s) if policies.get(&domain).is_none_or(|old| **old != s) => {
                    if self.alerts.is_on() {
                        alert(&self.alerts, policies.get(&domain).map(|o| o.as_ref()), &s);
                    }
                    policies.insert(domain, Arc::new(s));
                    changed = true;
                }
                Some(_) => {}
                None => changed |= policies.remove(&domain).is_some(),
            }
        }
        if changed {
            cell.store(Arc::new(StatusBoard { policies }));
        }
    }
}

/// The events a status change calls for: the state turning to error or stale, the
/// record nearing the lookup limit, and upstream changes not seen before.
fn alert(alerts: &Alerts, old: Option<&PolicyStatus>, new: &PolicyStatus) {
    let event = |event: &'static str, message: String, detail: serde_json::Value| Event {
        event,
        at: new.last_expansion,
        domain: Some(new.domain.trim_end_matches('.').to_string()),
        message,
        detail,
    };
    let was = old.map(|o| o.state);
    let error = new.error.clone().unwrap_or_default();
    match new.state {
        State::Error if was != Some(State::Error) => {
            alerts.send(event("expansion_failed", error, json!({ "mode": new.mode })));
        }
        State::Stale if was != Some(State::Stale) => alerts.send(event("stale", error, json!({}))),
        _ => {}
    }
    let near = |s: Option<&PolicyStatus>| s.and_then(|s| s.lookups).is_some_and(|n| n >= NEAR_LIMIT);
    if near(Some(new)) && !near(old) {
        let n = new.lookups.unwrap_or_default();
        let message = format!("the published record costs receivers {n} of 10 DNS lookups");
        alerts.send(event("near_lookup_limit", message, json!({ "lookups": n })));
    }
    // A policy's first status has no earlier one to compare with: changes it lists
    // were seen before it existed.
    let Some(old) = old else { return };
    let newest_seen = old.changes.first().map_or(0, |c| c.at);
    let record_changed = new.last_change != old.last_change;
    for change in new.changes.iter().filter(|c| c.at > newest_seen) {
        let message = format!(
            "{} changed: added {}, removed {}",
            change.term,
            change.added.join(" "),
            change.removed.join(" ")
        );
        let detail = json!({
            "term": change.term,
            "added": change.added,
            "removed": change.removed,
            "record_changed": record_changed,
            "held": new.held.iter().filter(|h| h.term == change.term).collect::<Vec<_>>(),
        });
        alerts.send(event("provider_change", message, detail));
    }
}
