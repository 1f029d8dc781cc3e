//! The SPF records flattening produced, per mail domain: what the snapshot builder
//! publishes instead of the record as written. The flattening service writes them, the
//! snapshot builder reads them (data flows one way: policy, expansion, published
//! results, snapshot). Kept in `state_dir` so that a restart while upstream is down
//! serves the same records at once.
//!
//! An entry keeps both forms of one expansion: the packed chain (flatten mode) and the
//! rules macro answers are built from (macro mode), so switching a policy between the
//! two modes is one snapshot swap, with no lookup in between.
//!
//! What is served always follows the file: an entry is only ever served for the very
//! version of the record it was computed for. A version with none yet (just edited, or
//! edited while spfd was down) is composed at once from the per-term last good results
//! kept here too ([`LastGood`], `flatten-memory.json`), never from another version's
//! result, so a term removed from the file is not served after the swap, whatever the
//! upstream does.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};

use crate::flatten::{Chain, ExpandOptions, Expansion, LastGood, Rule, Terminal};
use crate::policy::{SpfMode, ValidPolicy};
use crate::snapshot::macro_table::{self, MacroTable};
use crate::snapshot::{SpfAnswer, part_name};

const FILE_NAME: &str = "published.json";
/// The per-term last good results (see [`LastGood`]).
pub const MEMORY_FILE: &str = "flatten-memory.json";

pub use crate::snapshot::NamedStrings;

/// A packed chain: the head at the zone apex and its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChain {
    /// Shared with the answers built from it (serialised as plain lists).
    pub head: Arc<[String]>,
    pub parts: Arc<[NamedStrings]>,
    /// DNS lookups a receiver spends on the whole chain.
    pub lookups: usize,
    /// Content hash carried in the part names (`generation` in state files written
    /// before it was renamed).
    #[serde(alias = "generation")]
    pub tag: String,
}

impl From<Chain> for StoredChain {
    fn from(c: Chain) -> Self {
        StoredChain {
            head: c.head.into(),
            parts: c.parts.into(),
            lookups: c.lookups,
            tag: c.tag,
        }
    }
}

/// The expansion of one policy's SPF record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The policy version this was computed for: a changed zone or record makes the
    /// entry unusable (until it is computed again).
    pub zone: String,
    pub record: String,
    pub rules: Vec<Rule>,
    pub terminal: Terminal,
    pub exp: Option<String>,
    /// `None` when the rules do not fit a chain within 10 lookups.
    pub chain: Option<StoredChain>,
    /// Parts of earlier chains, served until a receiver can no longer hold their head
    /// in cache (Unix time).
    #[serde(default)]
    pub retired: Vec<(u64, Arc<[NamedStrings]>)>,
    /// When this was computed (Unix time).
    pub updated_at: u64,
    /// Terms were left out to fit the limits (see [`crate::flatten::fail_closed`]):
    /// it authorises less than the record, so a later expansion that does not fit
    /// either replaces it rather than keeping it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_closed: bool,
    /// Composed at a swap from the last good results, with no lookup: the service has
    /// not expanded this version yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub composed: bool,
    /// The answers as published in flatten and in macro mode, built on first use and
    /// shared by every snapshot until the entry changes; never persisted.
    #[serde(skip)]
    flatten_answer: OnceLock<Option<Arc<SpfAnswer>>>,
    #[serde(skip)]
    macro_answer: OnceLock<Option<Arc<SpfAnswer>>>,
    /// The lookups of the worst per-address answer in macro mode (see
    /// [`macro_table::answer_lookups`]), computed on first use.
    #[serde(skip)]
    macro_lookups: OnceLock<usize>,
}

impl Entry {
    pub fn new(
        zone: String,
        record: String,
        expansion: &crate::flatten::Expansion,
        chain: Option<StoredChain>,
        now: u64,
    ) -> Self {
        Entry {
            zone,
            record,
            rules: expansion.rules.clone(),
            terminal: expansion.terminal.clone(),
            exp: expansion.exp.clone(),
            chain,
            retired: Vec::new(),
            updated_at: now,
            fail_closed: false,
            composed: false,
            flatten_answer: OnceLock::new(),
            macro_answer: OnceLock::new(),
            macro_lookups: OnceLock::new(),
        }
    }

    /// The head as served in flatten mode, when there is a chain.
    pub fn head(&self) -> Option<String> {
        self.chain.as_ref().map(|c| c.head.concat())
    }

    /// Whether this was computed for `policy`'s zone and record as they are.
    pub fn matches(&self, policy: &ValidPolicy) -> bool {
        policy
            .spf
            .as_ref()
            .is_some_and(|spf| self.zone == policy.zone_text && self.record == spf.text)
    }

    fn same_content(&self, other: &Entry) -> bool {
        self.rules == other.rules
            && self.terminal == other.terminal
            && self.exp == other.exp
            && self.chain == other.chain
            && self.retired == other.retired
    }

    /// The answer of `mode` for `policy` (the version this entry was computed for),
    /// unless macro answers would cost receivers more than 10 lookups.
    fn answer_within_limits(&self, policy: &ValidPolicy, mode: SpfMode) -> Option<Arc<SpfAnswer>> {
        if mode == SpfMode::Macro && !self.macro_fits(policy) {
            // An expansion made for flatten mode can carry more live terms than macro
            // answers may (the refresh reports it): what is served stays.
            return None;
        }
        self.answer(mode)
    }

    fn macro_fits(&self, policy: &ValidPolicy) -> bool {
        let lookups = *self
            .macro_lookups
            .get_or_init(|| macro_table::answer_lookups(&self.rules, &self.terminal));
        usize::from(policy.zone != policy.domain) + 1 + lookups <= crate::flatten::MAX_LOOKUPS
    }

    fn answer(&self, mode: SpfMode) -> Option<Arc<SpfAnswer>> {
        let cell = match mode {
            SpfMode::Flatten => &self.flatten_answer,
            SpfMode::Macro => &self.macro_answer,
            SpfMode::Passthrough => return None,
        };
        cell.get_or_init(|| self.build_answer(mode).map(Arc::new)).clone()
    }

    fn build_answer(&self, mode: SpfMode) -> Option<SpfAnswer> {
        let current = self.chain.iter().map(|c| c.parts.clone());
        let retired = self.retired.iter().map(|(_, parts)| parts.clone());
        let parts: Vec<Arc<[NamedStrings]>> = current.chain(retired).collect();
        // A state file edited by hand could hold a name that does not parse: then the
        // record as written is published instead.
        if !parts
            .iter()
            .flat_map(|g| g.iter())
            .all(|(n, _)| part_name(n).is_some())
        {
            return None;
        }
        let (head, macro_table) = match mode {
            SpfMode::Flatten => (self.chain.as_ref()?.head.clone(), None),
            SpfMode::Macro => {
                let table = MacroTable::build(&self.rules, &self.terminal, self.exp.as_deref());
                (Arc::from([macro_table::head(&self.zone)]), Some(Arc::new(table)))
            }
            SpfMode::Passthrough => return None,
        };
        Some(SpfAnswer {
            head,
            parts,
            macro_table,
        })
    }
}

/// Every expansion, by mail domain (lower case, absolute), and the per-term last good
/// results they are made of.
#[derive(Debug, Default)]
pub struct Published {
    /// FxHash: every swap looks up each changed policy here.
    entries: Mutex<Entries>,
    /// Domains whose entry changed since the snapshot writer last asked: the zones it
    /// rebuilds after an expansion round, and no others.
    dirty: Mutex<rustc_hash::FxHashSet<String>>,
    /// Shared with the flattening service, which locks it for each read or write, so a
    /// swap can compose a just-edited record from it at once.
    memory: Mutex<LastGood>,
    /// The hold-down and max_stale windows compositions honour: the service's, or the
    /// defaults until it sets them.
    windows: Mutex<Option<(Duration, Duration)>>,
}

/// Shared, so that saving copies pointers under the lock and encodes outside it.
type Entries = HashMap<String, Arc<Entry>, BuildHasherDefault<FxHasher>>;

impl Published {
    /// What the snapshot publishes for a policy's SPF record; `None` only when the
    /// record is published as written (passthrough mode, or no `[spf]`).
    ///
    /// Always an answer for this very version of the policy: its expansion when there
    /// is one (in macro mode, when macro answers would exceed the lookup limit, its
    /// chain); otherwise the record composed now, with no lookup, from the per-term
    /// last good results (terms never resolved as written), fitted to the limits by
    /// leaving terms out only in ways that pass fewer addresses, and kept as this
    /// version's entry until the service expands it. What was served before (`_served`)
    /// never stands in: it may hold terms the file no longer has.
    pub fn answer_for(
        &self,
        policy: &ValidPolicy,
        _served: Option<&Arc<SpfAnswer>>,
    ) -> Option<Arc<SpfAnswer>> {
        let mode = policy.spf.as_ref()?.mode;
        if mode == SpfMode::Passthrough {
            return None;
        }
        let mut entries = self.entries.lock().expect("published lock");
        let entry = entries.get(&policy.domain_text).filter(|e| e.matches(policy));
        if let Some(answer) = entry.and_then(|e| {
            e.answer_within_limits(policy, mode)
                .or_else(|| e.answer(SpfMode::Flatten))
        }) {
            return Some(answer);
        }
        let now = unix_now();
        let composed = self.compose(policy, mode, now);
        let keep = u64::from(policy.ttl) * 2;
        set_in(&mut entries, &policy.domain_text, composed, now, keep);
        let answer = entries
            .get(&policy.domain_text)
            .and_then(|e| e.answer_within_limits(policy, mode));
        Some(answer.unwrap_or_else(|| Arc::new(placeholder(policy))))
    }

    /// `policy`'s record composed from the last good results, fitted to `mode`'s limits.
    fn compose(&self, policy: &ValidPolicy, mode: SpfMode, now: u64) -> Entry {
        let spf = policy.spf.as_ref().expect("composed policies have [spf]");
        let windows = *self.windows.lock().expect("published lock");
        let defaults = (
            crate::flatten::DEFAULT_HOLD_DOWN,
            crate::flatten::DEFAULT_MAX_STALE,
        );
        let (hold_down, max_stale) = windows.unwrap_or(defaults);
        let opts = ExpandOptions {
            now,
            hold_down,
            max_stale,
        };
        let domain = &policy.domain_text;
        let expansion =
            crate::flatten::compose(domain, &spf.record(), &self.memory, &opts).unwrap_or_else(|_| neutral());
        let owner_redirect = policy.zone != policy.domain;
        let pack = |e: &Expansion| crate::flatten::pack(e, &policy.zone_text, owner_redirect);
        let fits = |e: &Expansion| match mode {
            SpfMode::Macro => macro_fits(e, owner_redirect),
            _ => pack(e).is_ok(),
        };
        let (expansion, trimmed) = crate::flatten::fail_closed(&expansion, fits);
        let chain = pack(&expansion).ok().map(StoredChain::from);
        let mut entry = Entry::new(policy.zone_text.clone(), spf.text.clone(), &expansion, chain, now);
        entry.fail_closed = trimmed;
        entry.composed = true;
        entry
    }

    /// The per-term last good results, shared with the flattening service.
    pub fn memory(&self) -> &Mutex<LastGood> {
        &self.memory
    }

    /// The windows compositions use (the flattening service's settings).
    pub fn set_windows(&self, hold_down: Duration, max_stale: Duration) {
        *self.windows.lock().expect("published lock") = Some((hold_down, max_stale));
    }

    pub fn get(&self, domain: &str) -> Option<Arc<Entry>> {
        self.entries.lock().expect("published lock").get(domain).cloned()
    }

    /// Records a new result. The parts of a replaced chain stay served until
    /// `now + keep` (the time receivers may cache the old head for); expired ones go.
    /// Returns whether anything served changes.
    pub fn set(&self, domain: &str, entry: Entry, now: u64, keep: u64) -> bool {
        let mut entries = self.entries.lock().expect("published lock");
        let changed = set_in(&mut entries, domain, entry, now, keep);
        if changed {
            self.dirty
                .lock()
                .expect("published lock")
                .insert(domain.to_string());
        }
        changed
    }

    /// The domains whose entry changed since the last call.
    pub fn take_dirty(&self) -> rustc_hash::FxHashSet<String> {
        std::mem::take(&mut *self.dirty.lock().expect("published lock"))
    }

    /// Forgets domains no longer expanded.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.entries
            .lock()
            .expect("published lock")
            .retain(|d, _| keep(d));
    }

    /// The published results and the last good results saved in `state_dir`. Damaged
    /// last good results are logged and started afresh (they are refetched); damaged
    /// published results are an error.
    pub fn load(state_dir: &Path) -> io::Result<Published> {
        let entries = crate::state::load_json(state_dir, FILE_NAME)?.unwrap_or_default();
        let memory = match crate::state::load_json::<LastGood>(state_dir, MEMORY_FILE) {
            Ok(memory) => memory.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(dir = %state_dir.display(), "cannot read the last good upstream results, starting empty: {e}");
                LastGood::default()
            }
        };
        Ok(Published {
            entries: Mutex::new(entries),
            memory: Mutex::new(memory),
            ..Published::default()
        })
    }

    /// Saves the last good results (encoded under the lock: the service is the one
    /// writer, and a composition waits for at most one encoding).
    pub fn save_memory(&self, state_dir: &Path) -> io::Result<()> {
        let bytes = {
            let memory = self
                .memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            serde_json::to_vec_pretty(&*memory).map_err(io::Error::other)?
        };
        crate::state::write_atomic(state_dir, MEMORY_FILE, &bytes)
    }

    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        // Pointers are copied under the lock, the entries encoded after it, straight
        // into the file (at 100,000 policies the text is hundreds of megabytes: no
        // buffer of all of it, and the snapshot writer is not kept waiting). Sorted, so
        // the file is the same for the same content; compact, being state, not a report.
        let sorted: BTreeMap<String, Arc<Entry>> = {
            let entries = self.entries.lock().expect("published lock");
            entries.iter().map(|(d, e)| (d.clone(), e.clone())).collect()
        };
        crate::state::write_atomic_with(state_dir, FILE_NAME, |out| {
            serde_json::to_writer(out, &sorted).map_err(io::Error::other)
        })
    }
}

/// Records `entry` for `domain` in `entries` (see [`Published::set`]).
fn set_in(entries: &mut Entries, domain: &str, mut entry: Entry, now: u64, keep: u64) -> bool {
    if let Some(old) = entries.get(domain) {
        entry.retired = old
            .retired
            .iter()
            .filter(|(until, _)| *until > now)
            .cloned()
            .collect();
        let old_parts = old
            .chain
            .as_ref()
            .filter(|c| Some(&c.tag) != entry.chain.as_ref().map(|n| &n.tag));
        if let Some(old_chain) = old_parts.filter(|c| !c.parts.is_empty()) {
            entry.retired.push((now + keep, old_chain.parts.clone()));
        }
        // A chain that comes back (an edit undone) is served as current: kept as
        // retired too, each of its parts would answer two SPF records (permerror).
        let current: Vec<&str> = entry
            .chain
            .iter()
            .flat_map(|c| c.parts.iter().map(|(name, _)| name.as_str()))
            .collect();
        entry
            .retired
            .retain(|(_, parts)| !parts.iter().any(|(name, _)| current.contains(&name.as_str())));
        if old.same_content(&entry) {
            // Keep the original time (and the built answers): the content is what it was.
            entry.updated_at = old.updated_at;
            entry.flatten_answer = old.flatten_answer.clone();
            entry.macro_answer = old.macro_answer.clone();
            entries.insert(domain.to_string(), Arc::new(entry));
            return false;
        }
    }
    entries.insert(domain.to_string(), Arc::new(entry));
    true
}

/// Whether macro answers of `expansion` stay within the lookup limit: the owner's
/// redirect to the zone, the apex's redirect to the answer, and the live terms.
pub fn macro_fits(expansion: &Expansion, owner_redirect: bool) -> bool {
    let live = macro_table::answer_lookups(&expansion.rules, &expansion.terminal);
    usize::from(owner_redirect) + 1 + live <= crate::flatten::MAX_LOOKUPS
}

/// An expansion that authorises nothing: `?all`.
fn neutral() -> Expansion {
    Expansion {
        rules: Vec::new(),
        terminal: Terminal::All(crate::spf::Qualifier::Neutral),
        exp: None,
        details: Vec::new(),
        warnings: Vec::new(),
        queried: Vec::new(),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a policy that was never expanded publishes until its first expansion: the
/// record as written when its own terms stay within 10 lookups, else `v=spf1 ?all`
/// (neutral: it authorises nothing and is no permerror). In macro mode every
/// per-address name answers `v=spf1 ?all` too, never NXDOMAIN.
pub fn placeholder(policy: &ValidPolicy) -> SpfAnswer {
    let spf = policy
        .spf
        .as_ref()
        .expect("placeholders are for policies with [spf]");
    let within = policy
        .spf_direct_lookups()
        .is_some_and(|n| n <= crate::flatten::MAX_LOOKUPS);
    let head: Vec<String> = if within {
        spf.published_strings()
    } else {
        vec![NEUTRAL.to_string()]
    };
    let macro_table = (spf.mode == SpfMode::Macro).then(|| {
        let neutral = Terminal::All(crate::spf::Qualifier::Neutral);
        Arc::new(MacroTable::build(&[], &neutral, None))
    });
    SpfAnswer {
        head: head.into(),
        parts: Vec::new(),
        macro_table,
    }
}

/// A record that authorises nothing and gives neutral.
const NEUTRAL: &str = "v=spf1 ?all";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatten::{Expansion, Ip4Set, Ip6Set};
    use crate::spf::Qualifier;

    /// An entry whose chain has one part named by `tag`.
    fn entry(tag: &str, range: &str) -> Entry {
        let expansion = Expansion {
            rules: vec![Rule::Static {
                qualifier: Qualifier::Pass,
                v4: Ip4Set::from_nets([range.parse().unwrap()]),
                v6: Ip6Set::new(),
            }],
            terminal: Terminal::All(Qualifier::Fail),
            exp: None,
            details: Vec::new(),
            warnings: Vec::new(),
            queried: Vec::new(),
        };
        let part = format!("_1-{tag}._spf.example.com");
        let chain = StoredChain {
            head: Arc::from([format!("v=spf1 redirect={part}")]),
            parts: Arc::from([(part, vec![format!("v=spf1 ip4:{range} -all")])]),
            lookups: 1,
            tag: tag.to_string(),
        };
        let record = format!("v=spf1 ip4:{range} -all");
        Entry::new("_spf.example.com.".into(), record, &expansion, Some(chain), 0)
    }

    #[test]
    fn a_chain_that_comes_back_is_served_once_and_the_other_stays_retired() {
        let published = Published::default();
        let domain = "example.com.";
        published.set(domain, entry("aaaaaaaa", "192.0.2.0/24"), 0, 600);
        published.set(domain, entry("bbbbbbbb", "198.51.100.0/24"), 10, 600);
        published.set(domain, entry("aaaaaaaa", "192.0.2.0/24"), 20, 600);
        let answer = published.get(domain).unwrap().answer(SpfMode::Flatten).unwrap();
        let mut names: Vec<&str> = answer
            .parts
            .iter()
            .flat_map(|group| group.iter().map(|(name, _)| name.as_str()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["_1-aaaaaaaa._spf.example.com", "_1-bbbbbbbb._spf.example.com"]
        );
    }
}
