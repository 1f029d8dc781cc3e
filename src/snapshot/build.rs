//! Building a snapshot from validated policies: every name claimed once, a serial that
//! grows only when a zone's content changes.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::Name;
use rustc_hash::FxHasher;

use super::compiled::wire_name;
use super::serials::SerialBook;
use super::{ServerIdentity, Snapshot, SpfAnswer, Zone, ZoneContent, ZoneMap};
use crate::policy::ValidPolicy;

/// Two policies claiming the same zone, domain or name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} is already published by {}; a name is served by one policy only", .other.display())]
pub struct Conflict {
    pub what: String,
    /// The file that keeps the name.
    pub other: PathBuf,
}

/// A zone waiting for [`Builder::finish`]: built anew, or taken as it is from the
/// snapshot in service.
enum Pending {
    New(ZoneContent, Arc<ValidPolicy>),
    Kept(Arc<Zone>),
}

/// Collects policies, refusing any that claims a name another one has.
#[derive(Default)]
pub struct Builder {
    zones: Vec<Pending>,
    /// Every owner name of every accepted zone (apexes and empty non-terminals too), in
    /// lower-case wire form (the zones' own keys, shared), and the policy that has it.
    names: HashMap<Arc<[u8]>, Arc<ValidPolicy>, BuildHasherDefault<FxHasher>>,
    /// Every accepted policy, by mail domain.
    domains: HashSet<ByDomain, BuildHasherDefault<FxHasher>>,
    /// The snapshot in service: a zone whose policy and SPF answer are unchanged is
    /// kept as it is (same serial, same wire data), so a swap costs little per zone.
    previous: Option<Arc<Snapshot>>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that keeps the unchanged zones of `previous`.
    pub fn reusing(previous: Arc<Snapshot>) -> Self {
        Builder {
            previous: Some(previous),
            ..Self::default()
        }
    }

    /// Adds a policy unless one already added claims its mail domain or one of its names.
    /// `spf` replaces the record as written (a flattened chain, or macro answers).
    pub fn add(&mut self, policy: Arc<ValidPolicy>, spf: Option<Arc<SpfAnswer>>) -> Result<(), Conflict> {
        if let Some(other) = self.domains.get(policy.domain_text.as_str()) {
            return Err(conflict(format!("mail domain {}", policy.domain), &other.0));
        }
        let pending = match self.unchanged(&policy, spf.as_ref()) {
            Some(zone) => Pending::Kept(zone),
            None => Pending::New(ZoneContent::from_policy(&policy, spf), policy.clone()),
        };
        let names: Vec<Arc<[u8]>> = match &pending {
            Pending::New(content, _) => content
                .names()
                .map(|n| Arc::from(wire_name(&Name::from(n.clone()))))
                .collect(),
            Pending::Kept(zone) => zone.wire.names.iter().map(|(key, _)| key.clone()).collect(),
        };
        if let Some(other) = names.iter().find_map(|n| self.names.get(n)) {
            let name = names
                .iter()
                .find(|n| self.names.contains_key(*n))
                .map(|n| display_wire(n));
            return Err(conflict(format!("name {}", name.unwrap_or_default()), other));
        }
        for name in names {
            self.names.insert(name, policy.clone());
        }
        self.domains.insert(ByDomain(policy));
        self.zones.push(pending);
        Ok(())
    }

    fn unchanged(&self, policy: &Arc<ValidPolicy>, spf: Option<&Arc<SpfAnswer>>) -> Option<Arc<Zone>> {
        let zone = self.previous.as_ref()?.zones.get(&policy.zone_lower)?;
        let same_spf = match (zone.spf_answer.as_ref(), spf) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        (Arc::ptr_eq(&zone.policy, policy) && same_spf).then(|| zone.clone())
    }

    /// The snapshot, with serials from `book` (which learns the new ones).
    pub fn finish(
        self,
        generation: u64,
        servers: &ServerIdentity,
        book: &mut SerialBook,
        now_unix: u64,
    ) -> Snapshot {
        let zones = self
            .zones
            .into_iter()
            .map(|pending| {
                let zone = match pending {
                    Pending::Kept(zone) => zone,
                    Pending::New(content, policy) => {
                        let fingerprint = content.fingerprint();
                        let serial = book.serial_for(&content.apex, fingerprint, now_unix);
                        Arc::new(content.into_zone(serial, fingerprint, servers, policy))
                    }
                };
                (zone.policy.zone_lower.clone(), zone)
            })
            .collect::<ZoneMap>();
        // Every zone served has a serial (kept zones had one, new ones were just given
        // one), so equal counts mean nothing is left to forget: a swap after one edit
        // does not walk every zone's name.
        if book.len() != zones.len() {
            book.retain(zones.keys());
        }
        Snapshot::new(generation, zones)
    }
}

/// A policy keyed by its mail domain (lower case, absolute), without copying the name.
struct ByDomain(Arc<ValidPolicy>);

impl std::hash::Hash for ByDomain {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.domain_text.as_str().hash(state);
    }
}

impl PartialEq for ByDomain {
    fn eq(&self, other: &Self) -> bool {
        self.0.domain_text == other.0.domain_text
    }
}

impl Eq for ByDomain {}

impl std::borrow::Borrow<str> for ByDomain {
    fn borrow(&self) -> &str {
        &self.0.domain_text
    }
}

/// A lower-case wire-format name as text (`_spf.example.com.`).
fn display_wire(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + usize::from(len)).unwrap_or_default();
        out.push_str(&String::from_utf8_lossy(label));
        out.push('.');
        at += 1 + usize::from(len);
    }
    if out.is_empty() { ".".to_string() } else { out }
}

fn conflict(what: String, other: &ValidPolicy) -> Conflict {
    Conflict {
        what,
        other: other.path.clone(),
    }
}
