//! The SPF records flattening produced, per mail domain: what the snapshot builder
//! publishes instead of the record as written. The flattening service writes them, the
//! snapshot builder reads them (data flows one way: policy, expansion, published
//! results, snapshot). Kept in `state_dir` so that a restart while upstream is down
//! serves the same records at once.
//!
//! An entry keeps both forms of one expansion: the packed chain (flatten mode) and the
//! rules macro answers are built from (macro mode), so switching a policy between the
//! two modes is one snapshot swap, with no lookup in between.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};

use crate::flatten::{Rule, Terminal};
use crate::policy::{SpfMode, ValidPolicy};
use crate::snapshot::macro_table::{self, MacroTable};
use crate::snapshot::{SpfAnswer, part_name};

const FILE_NAME: &str = "published.json";

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
            flatten_answer: OnceLock::new(),
            macro_answer: OnceLock::new(),
            macro_lookups: OnceLock::new(),
        }
    }

    /// The head as served in flatten mode, when there is a chain.
    pub fn head(&self) -> Option<String> {
        self.chain.as_ref().map(|c| c.head.concat())
    }

    fn matches(&self, policy: &ValidPolicy) -> bool {
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

    /// This expansion of an earlier version of the policy, published for `policy`'s
    /// zone and mode: macro answers when they fit, else a chain when it fits.
    fn repacked_for(&self, policy: &ValidPolicy, mode: SpfMode) -> Option<SpfAnswer> {
        let owner_redirect = policy.zone != policy.domain;
        if mode == SpfMode::Macro && self.macro_fits(policy) {
            let table = MacroTable::build(&self.rules, &self.terminal, self.exp.as_deref());
            return Some(SpfAnswer {
                head: Arc::from([macro_table::head(&policy.zone_text)]),
                parts: Vec::new(),
                macro_table: Some(Arc::new(table)),
            });
        }
        let expansion = crate::flatten::Expansion {
            rules: self.rules.clone(),
            terminal: self.terminal.clone(),
            exp: self.exp.clone(),
            details: Vec::new(),
            warnings: Vec::new(),
            queried: Vec::new(),
        };
        let chain = crate::flatten::pack(&expansion, &policy.zone_text, owner_redirect).ok()?;
        let parts: Vec<NamedStrings> = chain.parts.into_iter().collect();
        Some(SpfAnswer {
            head: chain.head.into(),
            parts: vec![parts.into()],
            macro_table: None,
        })
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

/// Every expansion, by mail domain (lower case, absolute).
#[derive(Debug, Default)]
pub struct Published {
    /// FxHash: every swap looks up each changed policy here.
    entries: Mutex<Entries>,
    /// Domains whose entry changed since the snapshot writer last asked: the zones it
    /// rebuilds after an expansion round, and no others.
    dirty: Mutex<rustc_hash::FxHashSet<String>>,
}

/// Shared, so that saving copies pointers under the lock and encodes outside it.
type Entries = HashMap<String, Arc<Entry>, BuildHasherDefault<FxHasher>>;

impl Published {
    /// What the snapshot publishes for a policy's SPF record; `None` only when the
    /// record is published as written (passthrough mode, or no `[spf]`).
    ///
    /// A worse record is never published: the answers of an expansion of this very
    /// version of the policy when they exist; otherwise what is served now (`served`,
    /// the last good chain or macro table of the same zone), so an edit, a mode switch
    /// or a failed expansion never falls back to the record as written; otherwise an
    /// expansion of an earlier version (kept in `state_dir` across an edit made while
    /// spfd was down, or a renamed zone) re-packed for this zone; and for a policy
    /// never expanded, a [`placeholder`] within the limits.
    pub fn answer_for(
        &self,
        policy: &ValidPolicy,
        served: Option<&Arc<SpfAnswer>>,
    ) -> Option<Arc<SpfAnswer>> {
        let mode = policy.spf.as_ref()?.mode;
        if mode == SpfMode::Passthrough {
            return None;
        }
        let entries = self.entries.lock().expect("published lock");
        let entry = entries.get(&policy.domain_text);
        if let Some(answer) = entry
            .filter(|e| e.matches(policy))
            .and_then(|e| e.answer_within_limits(policy, mode))
        {
            return Some(answer);
        }
        if let Some(served) = served {
            return Some(served.clone());
        }
        if let Some(answer) = entry.and_then(|e| e.repacked_for(policy, mode)) {
            return Some(Arc::new(answer));
        }
        Some(Arc::new(placeholder(policy)))
    }

    pub fn get(&self, domain: &str) -> Option<Arc<Entry>> {
        self.entries.lock().expect("published lock").get(domain).cloned()
    }

    /// Records a new result. The parts of a replaced chain stay served until
    /// `now + keep` (the time receivers may cache the old head for); expired ones go.
    /// Returns whether anything served changes.
    pub fn set(&self, domain: &str, mut entry: Entry, now: u64, keep: u64) -> bool {
        let mut entries = self.entries.lock().expect("published lock");
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
        self.dirty
            .lock()
            .expect("published lock")
            .insert(domain.to_string());
        true
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

    pub fn load(state_dir: &Path) -> io::Result<Published> {
        let entries = crate::state::load_json(state_dir, FILE_NAME)?.unwrap_or_default();
        Ok(Published {
            entries: Mutex::new(entries),
            dirty: Mutex::default(),
        })
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
