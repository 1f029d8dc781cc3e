//! The SPF records flattening produced, per mail domain: what the snapshot builder
//! publishes instead of the record as written. Kept in `state_dir` so that a restart
//! while upstream is down serves the same records at once.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use crate::policy::{SpfMode, ValidPolicy};
use crate::snapshot::SpfAnswer;

const FILE_NAME: &str = "published.json";

/// One TXT record: its owner name and character-strings.
pub type NamedStrings = (String, Vec<String>);

/// The flattened SPF of one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The policy version this was computed for: a changed zone or record makes the
    /// entry unusable (until it is computed again).
    pub zone: String,
    pub record: String,
    pub head: Vec<String>,
    pub parts: Vec<NamedStrings>,
    /// DNS lookups a receiver spends on the whole chain.
    pub lookups: usize,
    /// Content hash carried in the part names.
    pub generation: String,
    /// Parts of earlier generations, served until a receiver can no longer hold their
    /// head in cache (Unix time).
    #[serde(default)]
    pub retired: Vec<(u64, Vec<NamedStrings>)>,
    /// When this was computed (Unix time).
    pub updated_at: u64,
}

impl Entry {
    fn matches(&self, policy: &ValidPolicy) -> bool {
        policy.spf.as_ref().is_some_and(|spf| {
            spf.mode == SpfMode::Flatten
                && self.zone == policy.zone.to_string()
                && self.record == spf.record.to_string()
        })
    }

    fn answer(&self) -> Option<SpfAnswer> {
        let name = |n: &str| {
            let mut name = Name::from_ascii(n).ok()?;
            name.set_fqdn(true);
            Some(name)
        };
        let current = self.parts.iter();
        let retired = self.retired.iter().flat_map(|(_, parts)| parts.iter());
        let parts = current
            .chain(retired)
            .map(|(n, strings)| Some((name(n)?, strings.clone())))
            .collect::<Option<Vec<_>>>()?;
        Some(SpfAnswer {
            head: self.head.clone(),
            parts,
        })
    }
}

/// Every flattened record, by mail domain (lower case, absolute).
#[derive(Debug, Default)]
pub struct Published {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Published {
    /// What to publish for a policy: its flattened chain when one was computed for this
    /// very version of it; `None` means "as written".
    pub fn answer_for(&self, policy: &ValidPolicy) -> Option<SpfAnswer> {
        let entries = self.entries.lock().expect("published lock");
        let entry = entries.get(&policy.domain.to_string())?;
        if entry.matches(policy) {
            entry.answer()
        } else {
            None
        }
    }

    pub fn get(&self, domain: &str) -> Option<Entry> {
        self.entries.lock().expect("published lock").get(domain).cloned()
    }

    /// Records a new result. The parts of a replaced generation stay served until
    /// `now + keep` (the TTL receivers may cache the old head for); expired ones go.
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
            if old.generation != entry.generation && !old.parts.is_empty() {
                entry.retired.push((now + keep, old.parts.clone()));
            }
            let same = old.head == entry.head && old.parts == entry.parts && old.retired == entry.retired;
            if same {
                // Keep the original time: the content is what it was.
                entry.updated_at = old.updated_at;
                entries.insert(domain.to_string(), entry);
                return false;
            }
        }
        entries.insert(domain.to_string(), entry);
        true
    }

    /// Forgets domains no longer served in flatten mode.
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
        })
    }

    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let entries = self.entries.lock().expect("published lock").clone();
        crate::state::save_json(state_dir, FILE_NAME, &entries)
    }
}
