//! Building a snapshot from validated policies: every name claimed once, a serial that
//! grows only when a zone's content changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};

use super::serials::SerialBook;
use super::{ServerIdentity, Snapshot, SpfAnswer, Zone, ZoneContent};
use crate::policy::ValidPolicy;

/// Two policies claiming the same zone, domain or name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} is already published by {}; a name is served by one policy only", .other.display())]
pub struct Conflict {
    pub what: String,
    /// The file that keeps the name.
    pub other: PathBuf,
}

/// Collects policies, refusing any that claims a name another one has.
#[derive(Default)]
pub struct Builder {
    zones: Vec<(ZoneContent, Arc<ValidPolicy>)>,
    /// Every owner name of every accepted zone (apexes and empty non-terminals too).
    names: HashMap<LowerName, PathBuf>,
    domains: HashMap<Name, PathBuf>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a policy unless one already added claims its mail domain or one of its names.
    /// `spf` replaces the record as written (a flattened chain).
    pub fn add(&mut self, policy: Arc<ValidPolicy>, spf: Option<&SpfAnswer>) -> Result<(), Conflict> {
        if let Some(other) = self.domains.get(&policy.domain) {
            return Err(Conflict {
                what: format!("mail domain {}", policy.domain),
                other: other.clone(),
            });
        }
        let content = ZoneContent::from_policy(&policy, spf);
        if let Some((name, other)) = content.names().find_map(|n| self.names.get_key_value(n)) {
            return Err(Conflict {
                what: format!("name {name}"),
                other: other.clone(),
            });
        }
        for name in content.names() {
            self.names.insert(name.clone(), policy.path.clone());
        }
        self.domains.insert(policy.domain.clone(), policy.path.clone());
        self.zones.push((content, policy));
        Ok(())
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
            .map(|(content, policy)| {
                let serial = book.serial_for(&content.apex, content.fingerprint(), now_unix);
                let zone = content.into_zone(serial, servers, policy);
                (LowerName::new(&zone.apex), Arc::new(zone))
            })
            .collect::<HashMap<_, Arc<Zone>>>();
        book.retain(zones.keys());
        Snapshot::new(generation, zones)
    }
}
