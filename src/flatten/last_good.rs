//! What the flattener remembers between runs (and across restarts, as JSON): the
//! last good result of every include, redirect, `a` and `mx` term, when it was
//! fetched, and the ranges a provider dropped that are still held down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ipset::{Ip4Set, Ip6Set};
use super::model::Body;

/// Last good results by term key (`include:_spf.example.com`, `a:mail.example.com`),
/// shared by every policy that uses the term: a provider dropping a range starts one
/// hold-down that every policy including it honours. An expansion never forgets
/// entries; the caller prunes those no policy uses any more ([`LastGood::prune`]) and
/// persists the rest with `serde_json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastGood {
    entries: BTreeMap<String, Entry>,
    /// The keys read or written since [`LastGood::take_touched`] was last called: what
    /// one expansion depends on, so the caller knows which entries each policy needs.
    #[serde(skip)]
    touched: BTreeSet<String>,
    /// A result or a hold-down changed since [`LastGood::take_changed`]: worth saving
    /// (a new fetch time alone is not).
    #[serde(skip)]
    changed: bool,
}

impl PartialEq for LastGood {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for LastGood {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Seconds since the epoch when the result was fetched; for a result built on
    /// other last good results, the oldest of them, so its age is never understated.
    fetched_at: u64,
    result: Remembered,
    /// Ranges this include authorised before and no longer does, until their
    /// hold-down ends. Only includes have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    held: Vec<Held>,
}

/// Addresses first found missing at `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    since: u64,
    v4: Ip4Set,
    v6: Ip6Set,
}

/// The part of a term's result needed to rebuild its contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Remembered {
    /// An include whose target is static: where the target passes. `live` is what
    /// the target costs a receiver evaluating it, for an enclosing include kept live.
    Include { v4: Ip4Set, v6: Ip6Set, live: usize },
    /// An include published as `include:<target>`: its target's own lookups.
    LiveInclude { live: usize },
    /// A redirect's target, flattened.
    Redirect { body: Body },
    /// The A and AAAA addresses of an `a` name or of an `mx` name's hosts, before
    /// the term's CIDR lengths are applied.
    Addresses { v4: Ip4Set, v6: Ip6Set },
}

/// A result recalled or stored: with held ranges already merged into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recalled {
    pub result: Remembered,
    pub fetched_at: u64,
    pub held: (Ip4Set, Ip6Set),
    /// Each held range (as CIDR text) and when its hold-down ends.
    pub held_until: Vec<(u64, String)>,
}

impl LastGood {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The term keys remembered.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// When the last good result of `key` was fetched (seconds since the epoch).
    pub fn fetched_at(&self, key: &str) -> Option<u64> {
        self.entries.get(key).map(|e| e.fetched_at)
    }

    /// The keys read or stored since the last call, and starts a new set: called
    /// around one expansion, it tells which entries that policy depends on.
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched)
    }

    /// Whether a result or a hold-down changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Forgets every entry whose key `keep` refuses (terms no policy uses any more).
    /// Returns how many were forgotten.
    pub fn prune(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|k, _| keep(k));
        let pruned = before - self.entries.len();
        self.changed |= pruned > 0;
        pruned
    }

    /// Stores a fresh result of a term other than a static include.
    pub(super) fn store(&mut self, key: &str, result: Remembered, fetched_at: u64) {
        self.touched.insert(key.to_string());
        let entry = Entry {
            fetched_at,
            result,
            held: Vec::new(),
        };
        self.insert(key, entry);
    }

    /// Stores a fresh include result and returns it with the ranges still held down:
    /// those the previous result had and this one lacks start their hold-down now.
    pub(super) fn store_include(
        &mut self,
        key: &str,
        result: Remembered,
        fetched_at: u64,
        now: u64,
        hold_down: Duration,
    ) -> Recalled {
        self.touched.insert(key.to_string());
        let mut held = Vec::new();
        if let (Some(prev), Remembered::Include { v4, v6, .. }) = (self.entries.get(key), &result) {
            held = live_held(&prev.held, now, hold_down)
                .map(|h| Held {
                    since: h.since,
                    v4: h.v4.difference(v4),
                    v6: h.v6.difference(v6),
                })
                .collect();
            if let Remembered::Include {
                v4: old4, v6: old6, ..
            } = &prev.result
            {
                held.push(Held {
                    since: now,
                    v4: old4.difference(v4),
                    v6: old6.difference(v6),
                });
            }
            held.retain(|h| !(h.v4.is_empty() && h.v6.is_empty()));
        }
        let entry = Entry {
            fetched_at,
            result,
            held,
        };
        self.insert(key, entry);
        self.recall(key, now, hold_down).expect("just stored")
    }

    fn insert(&mut self, key: &str, entry: Entry) {
        let same = self
            .entries
            .get(key)
            .is_some_and(|old| old.result == entry.result && old.held == entry.held);
        self.changed |= !same;
        self.entries.insert(key.to_string(), entry);
    }

    /// The last good result of `key`, held ranges whose hold-down ended dropped
    /// first, the others merged into an include's sets.
    pub(super) fn recall(&mut self, key: &str, now: u64, hold_down: Duration) -> Option<Recalled> {
        self.touched.insert(key.to_string());
        let entry = self.entries.get_mut(key)?;
        let live: Vec<Held> = live_held(&entry.held, now, hold_down).cloned().collect();
        self.changed |= live.len() != entry.held.len();
        entry.held = live;
        let mut held = (Ip4Set::new(), Ip6Set::new());
        let mut held_until = Vec::new();
        for h in &entry.held {
            held = (held.0.union(&h.v4), held.1.union(&h.v6));
            let until = h.since + hold_down.as_secs();
            let nets4 = h.v4.to_nets().into_iter().map(|n| n.to_string());
            let nets6 = h.v6.to_nets().into_iter().map(|n| n.to_string());
            held_until.extend(nets4.chain(nets6).map(|n| (until, n)));
        }
        let result = match &entry.result {
            Remembered::Include { v4, v6, live } => Remembered::Include {
                v4: v4.union(&held.0),
                v6: v6.union(&held.1),
                live: *live,
            },
            other => other.clone(),
        };
        Some(Recalled {
            result,
            fetched_at: entry.fetched_at,
            held,
            held_until,
        })
    }
}

/// The held ranges whose hold-down has not ended at `now`.
fn live_held(held: &[Held], now: u64, hold_down: Duration) -> impl Iterator<Item = &Held> {
    held.iter()
        .filter(move |h| Duration::from_secs(now.saturating_sub(h.since)) < hold_down)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const HOLD: Duration = Duration::from_secs(48 * HOUR);

    fn include(v4: &[&str]) -> Remembered {
        let v4 = Ip4Set::from_nets(v4.iter().map(|n| n.parse().unwrap()));
        Remembered::Include {
            v4,
            v6: Ip6Set::new(),
            live: 1,
        }
    }

    fn v4_of(r: &Recalled) -> Vec<String> {
        match &r.result {
            Remembered::Include { v4, .. } => v4.to_nets().iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dropped_ranges_are_held_down_then_released() {
        let key = "include:_spf.provider.test";
        let mut memory = LastGood::new();
        let both = ["192.0.2.0/24", "198.51.100.0/24"];
        let first = memory.store_include(key, include(&both), 0, 0, HOLD);
        assert_eq!(v4_of(&first), both);
        // The provider drops 198.51.100.0/24 at hour 10.
        let dropped = memory.store_include(key, include(&both[..1]), 10 * HOUR, 10 * HOUR, HOLD);
        assert_eq!(v4_of(&dropped), both);
        assert_eq!(dropped.held.0.to_nets().len(), 1);
        // Still held just before the hold-down ends, counted from when it went missing.
        let later = memory.store_include(key, include(&both[..1]), 57 * HOUR, 57 * HOUR, HOLD);
        assert_eq!(v4_of(&later), both);
        // Gone once it ends.
        let gone = memory.store_include(key, include(&both[..1]), 58 * HOUR, 58 * HOUR, HOLD);
        assert_eq!(v4_of(&gone), ["192.0.2.0/24"]);
        assert!(gone.held.0.is_empty());
    }

    #[test]
    fn a_range_that_returns_is_no_longer_held() {
        let key = "include:p.test";
        let mut memory = LastGood::new();
        let both = ["192.0.2.0/24", "198.51.100.0/24"];
        memory.store_include(key, include(&both), 0, 0, HOLD);
        memory.store_include(key, include(&both[..1]), HOUR, HOUR, HOLD);
        let back = memory.store_include(key, include(&both), 2 * HOUR, 2 * HOUR, HOLD);
        assert!(back.held.0.is_empty());
        // Dropped again: the hold-down starts over.
        memory.store_include(key, include(&both[..1]), 3 * HOUR, 3 * HOUR, HOLD);
        let held = memory.recall(key, 50 * HOUR, HOLD).unwrap();
        assert_eq!(v4_of(&held), both);
        let released = memory.recall(key, 51 * HOUR, HOLD).unwrap();
        assert_eq!(v4_of(&released), both[..1]);
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut memory = LastGood::new();
        let both = ["192.0.2.0/24", "198.51.100.0/24"];
        memory.store_include("include:p.test", include(&both), 0, 0, HOLD);
        memory.store_include("include:p.test", include(&both[..1]), HOUR, HOUR, HOLD);
        memory.store(
            "a:mail.example.com",
            Remembered::Addresses {
                v4: Ip4Set::from_nets(["192.0.2.25/32".parse().unwrap()]),
                v6: Ip6Set::new(),
            },
            HOUR,
        );
        let json = serde_json::to_string_pretty(&memory).unwrap();
        assert!(json.contains("198.51.100.0/24"), "{json}");
        let back: LastGood = serde_json::from_str(&json).unwrap();
        assert_eq!(back, memory);
        assert_eq!(back.fetched_at("a:mail.example.com"), Some(HOUR));
        assert_eq!(back.keys().count(), 2);
    }
}
