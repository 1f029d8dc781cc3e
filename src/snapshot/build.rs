//! Building snapshots: every name served by one policy only, a serial that grows only
//! when a zone's content changes. The writer keeps the [`Claims`] between swaps, so a
//! swap checks and builds the policies it changes and nothing else: its cost follows
//! the size of the change, not the number of zones.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use rustc_hash::FxHasher;

use super::compiled::wire_name;
use super::serials::SerialBook;
use super::signed::{Signing, fingerprint_mark, sign_zone};
use super::{Changes, ServerIdentity, Snapshot, SpfAnswer, ZoneContent};
use crate::policy::ValidPolicy;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Two policies claiming the same zone, domain or name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} is already published by {}; a name is served by one policy only", .other.display())]
pub struct Conflict {
    pub what: String,
    /// The file that keeps the name.
    pub other: PathBuf,
}

/// Who serves each name (apexes and empty non-terminals too, in lower-case wire form)
/// and each mail domain.
#[derive(Debug, Default)]
pub struct Claims {
    /// The owner is shared by every name it claims (one allocation per policy).
    names: FxMap<Arc<[u8]>, Arc<Path>>,
    domains: FxMap<String, Arc<Path>>,
}

impl Claims {
    /// The file that serves a mail domain (lower case, absolute).
    pub fn file_of(&self, domain: &str) -> Option<&Path> {
        self.domains.get(domain).map(|p| &**p)
    }

    fn conflict(&self, path: &Path, domain: &str, names: &[Arc<[u8]>]) -> Option<Conflict> {
        let other = |owner: &Arc<Path>| (**owner != *path).then(|| owner.to_path_buf());
        if let Some(other) = self.domains.get(domain).and_then(other) {
            return Some(Conflict {
                what: format!("mail domain {domain}"),
                other,
            });
        }
        names.iter().find_map(|n| {
            let other = self.names.get(n).and_then(other)?;
            Some(Conflict {
                what: format!("name {}", display_wire(n)),
                other,
            })
        })
    }

    fn claim(&mut self, path: &Path, domain: &str, names: &[Arc<[u8]>]) {
        let owner: Arc<Path> = Arc::from(path);
        self.domains.insert(domain.to_string(), owner.clone());
        for n in names {
            self.names.insert(n.clone(), owner.clone());
        }
    }

    /// Gives up what `path` claims among `domain` and `names`.
    fn release(&mut self, path: &Path, domain: &str, names: &[Arc<[u8]>]) {
        if self.domains.get(domain).is_some_and(|p| **p == *path) {
            self.domains.remove(domain);
        }
        for n in names {
            if self.names.get(n).is_some_and(|p| **p == *path) {
                self.names.remove(n);
            }
        }
    }
}

/// What a finished build changed, for logs.
#[derive(Debug, Default)]
pub struct Summary {
    pub added: Vec<(LowerName, u32)>,
    pub changed: Vec<(LowerName, u32)>,
    pub removed: Vec<LowerName>,
}

impl Summary {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many zones the build added, changed or removed.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }
}

/// A new version of a snapshot: the zones of changed policies on top of `base`.
#[derive(Default)]
pub struct Builder {
    base: Arc<Snapshot>,
    claims: Claims,
    /// Zones to build, with their content fingerprint (computed once: it formats every
    /// record).
    staged: Vec<(ZoneContent, Arc<ValidPolicy>, u64)>,
    removals: Vec<LowerName>,
    /// DNSSEC: signs every zone built whose policy does not opt out.
    signing: Option<Arc<Signing>>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder on top of the snapshot in service and the claims that go with it.
    pub fn on(base: Arc<Snapshot>, claims: Claims) -> Self {
        Builder {
            base,
            claims,
            ..Self::default()
        }
    }

    /// Signs the zones this builder builds (`None`: unsigned).
    pub fn with_dnssec(mut self, signing: Option<Arc<Signing>>) -> Self {
        self.signing = signing;
        self
    }

    /// Adds a policy unless another one claims its mail domain or one of its names.
    /// `spf` replaces the record as written (a flattened chain, or macro answers).
    pub fn add(&mut self, policy: Arc<ValidPolicy>, spf: Option<Arc<SpfAnswer>>) -> Result<(), Conflict> {
        self.replace(None, policy, spf)
    }

    /// Serves `policy` in place of `previous` (the version of the same file in service,
    /// if any). On a conflict nothing changes: `previous` stays served.
    pub fn replace(
        &mut self,
        previous: Option<&ValidPolicy>,
        policy: Arc<ValidPolicy>,
        spf: Option<Arc<SpfAnswer>>,
    ) -> Result<(), Conflict> {
        self.replace_with(previous, policy, spf, &[])
    }

    /// [`Builder::replace`] with TXT records other policies need in the zone.
    pub fn replace_with(
        &mut self,
        previous: Option<&ValidPolicy>,
        policy: Arc<ValidPolicy>,
        spf: Option<Arc<SpfAnswer>>,
        extra: &[(Name, String)],
    ) -> Result<(), Conflict> {
        let content = ZoneContent::with_extra(&policy, spf, extra);
        let names: Vec<Arc<[u8]>> = content
            .names()
            .map(|n| Arc::from(wire_name(&Name::from(n.clone()))))
            .collect();
        let old_names = previous.map(|p| (p, self.served_names(p)));
        if let Some((p, old)) = &old_names {
            self.claims.release(&p.path, &p.domain_text, old);
        }
        if let Some(conflict) = self.claims.conflict(&policy.path, &policy.domain_text, &names) {
            if let Some((p, old)) = &old_names {
                self.claims.claim(&p.path, &p.domain_text, old);
            }
            return Err(conflict);
        }
        self.claims.claim(&policy.path, &policy.domain_text, &names);
        if let Some(p) = previous.filter(|p| p.zone_lower != policy.zone_lower) {
            self.removals.push(p.zone_lower.clone());
        }
        let keys = self.signing.as_ref().and_then(|s| s.keys_for(&policy));
        let fingerprint = content.fingerprint() ^ fingerprint_mark(keys.as_deref());
        let same = self.base.zones.get(&policy.zone_lower).is_some_and(|z| {
            // The transfer table is read from the zone's policy when transfers are
            // served: a change of it alone must replace the policy too.
            z.policy.path == policy.path
                && z.content_hash == fingerprint
                && z.policy.transfer == policy.transfer
        });
        if !same {
            self.staged.push((content, policy, fingerprint));
        }
        Ok(())
    }

    /// Stops serving `previous` (its file was removed).
    pub fn remove(&mut self, previous: &ValidPolicy) {
        let names = self.served_names(previous);
        self.claims.release(&previous.path, &previous.domain_text, &names);
        if !names.is_empty() {
            self.removals.push(previous.zone_lower.clone());
        }
    }

    /// The names the base serves for `policy`'s file in its zone.
    fn served_names(&self, policy: &ValidPolicy) -> Vec<Arc<[u8]>> {
        match self.base.zones.get(&policy.zone_lower) {
            Some(zone) if zone.policy.path == policy.path => {
                zone.wire.names.iter().map(|(k, _)| k.clone()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The snapshot, with serials from `book` (which learns the new ones).
    pub fn finish(
        self,
        generation: u64,
        servers: &ServerIdentity,
        book: &mut SerialBook,
        now_unix: u64,
    ) -> Snapshot {
        self.finish_keeping_claims(generation, servers, book, now_unix).0
    }

    /// The snapshot, what changed, and the claims for the next build.
    pub fn finish_keeping_claims(
        self,
        generation: u64,
        servers: &ServerIdentity,
        book: &mut SerialBook,
        now_unix: u64,
    ) -> (Snapshot, Summary, Claims) {
        let mut summary = Summary::default();
        let mut changes = Changes::default();
        for (content, policy, fingerprint) in self.staged {
            let serial = match content.file.serial() {
                Some(floor) => book.serial_at_least(&content.apex, fingerprint, now_unix, floor),
                None => book.serial_for(&content.apex, fingerprint, now_unix),
            };
            let apex = policy.zone_lower.clone();
            let previous = self.base.zones.get(&apex);
            match previous.is_some() {
                true => summary.changed.push((apex, serial)),
                false => summary.added.push((apex, serial)),
            }
            let signing = self
                .signing
                .as_deref()
                .and_then(|s| Some((s, s.keys_for(&policy)?)));
            let mut zone = content.into_zone(serial, fingerprint, servers, policy);
            if let Some((signing, keys)) = signing {
                sign_zone(&mut zone, signing, keys, previous.map(|z| &**z), now_unix);
            }
            changes.upserts.push(Arc::new(zone));
        }
        for apex in self.removals {
            let replaced = changes.upserts.iter().any(|z| z.policy.zone_lower == apex);
            if !replaced && self.base.zones.contains_key(&apex) {
                book.forget(&apex);
                summary.removed.push(apex.clone());
                changes.removals.push(apex);
            }
        }
        let snapshot = self.base.apply(generation, &changes);
        (snapshot, summary, self.claims)
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
