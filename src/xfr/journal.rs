//! The IXFR journal (RFC 1995): for each zone, the differences between its last few
//! versions, in memory. It is fed by every swap that changes a zone (old and new
//! version side by side) and read by IXFR requests. A restart starts it empty: a
//! secondary asking for a serial the journal does not know gets the whole zone
//! (AXFR in the IXFR response), which RFC 1995 allows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use hickory_proto::rr::LowerName;

use super::records::{WireRecord, zone_records};
use crate::snapshot::Zone;

/// Versions kept per zone: enough for secondaries that missed a few NOTIFYs; older
/// serials get the whole zone.
pub const DEFAULT_DEPTH: usize = 16;
/// A zone whose differences add up to more than this keeps fewer of them.
const MAX_BYTES_PER_ZONE: usize = 1 << 20;

/// From one serial to the next: the records deleted and added (SOA excluded).
#[derive(Debug)]
pub struct Diff {
    pub old_soa: WireRecord,
    pub new_soa: WireRecord,
    pub deleted: Vec<WireRecord>,
    pub added: Vec<WireRecord>,
}

impl Diff {
    fn old_serial(&self) -> u32 {
        self.old_soa.soa_serial().unwrap_or_default()
    }

    fn new_serial(&self) -> u32 {
        self.new_soa.soa_serial().unwrap_or_default()
    }

    fn bytes(&self) -> usize {
        self.deleted
            .iter()
            .chain(&self.added)
            .map(|r| r.owner.len() + r.tail.len())
            .sum()
    }
}

/// Differences by zone apex, oldest first.
#[derive(Debug, Default)]
pub struct Journal {
    zones: Mutex<HashMap<LowerName, VecDeque<Arc<Diff>>>>,
    depth: usize,
}

impl Journal {
    pub fn new(depth: usize) -> Journal {
        Journal {
            zones: Mutex::default(),
            depth: depth.max(1),
        }
    }

    /// Records a swap of one zone: `None` for a zone added or removed. A version the
    /// journal cannot diff (macro mode) or that does not follow the last one recorded
    /// starts the zone's journal over.
    pub fn record(&self, apex: &LowerName, old: Option<&Zone>, new: Option<&Zone>) {
        let diff = match (old, new) {
            (Some(old), Some(new)) if old.serial != new.serial => diff(old, new),
            (Some(_), Some(_)) => return,
            _ => None,
        };
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let Some(diff) = diff else {
            zones.remove(apex);
            return;
        };
        let chain = zones.entry(apex.clone()).or_default();
        if chain
            .back()
            .is_some_and(|last| last.new_serial() != diff.old_serial())
        {
            chain.clear();
        }
        chain.push_back(Arc::new(diff));
        let mut bytes: usize = chain.iter().map(|d| d.bytes()).sum();
        while chain.len() > self.depth || (chain.len() > 1 && bytes > MAX_BYTES_PER_ZONE) {
            if let Some(dropped) = chain.pop_front() {
                bytes -= dropped.bytes();
            }
        }
    }

    /// The differences from `from` to `to`, in order; `None` when the journal does not
    /// reach back to `from`.
    pub fn chain(&self, apex: &LowerName, from: u32, to: u32) -> Option<Vec<Arc<Diff>>> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let diffs = zones.get(apex)?;
        let start = diffs.iter().position(|d| d.old_serial() == from)?;
        let chain: Vec<Arc<Diff>> = diffs.iter().skip(start).cloned().collect();
        (chain.last()?.new_serial() == to).then_some(chain)
    }

    /// Serials the journal can start from for a zone (for tests and the log).
    pub fn serials(&self, apex: &LowerName) -> Vec<u32> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        zones
            .get(apex)
            .map(|d| d.iter().map(|d| d.old_serial()).collect())
            .unwrap_or_default()
    }
}

/// The difference between two versions of a zone; `None` when either is in macro mode
/// (its per-address names are not records).
fn diff(old: &Zone, new: &Zone) -> Option<Diff> {
    if old.wire.zone.macros.is_some() || new.wire.zone.macros.is_some() {
        return None;
    }
    let (old_soa, old_records) = zone_records(old)?;
    let (new_soa, new_records) = zone_records(new)?;
    let before: HashSet<&WireRecord> = old_records.iter().collect();
    let after: HashSet<&WireRecord> = new_records.iter().collect();
    let mut deleted: Vec<WireRecord> = before.difference(&after).map(|r| (*r).clone()).collect();
    let mut added: Vec<WireRecord> = after.difference(&before).map(|r| (*r).clone()).collect();
    deleted.sort();
    added.sort();
    Some(Diff {
        old_soa,
        new_soa,
        deleted,
        added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::snapshot::{ServerIdentity, ZoneContent};
    use std::sync::Arc;

    fn zone(ip: &str, serial: u32) -> Zone {
        let text = format!(
            "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:{ip} -all\"\nmode = \"passthrough\"\n"
        );
        let policy = Arc::new(
            crate::policy::parse(&SourceFile::new("/p/e.toml", text))
                .unwrap()
                .policy,
        );
        let servers = ServerIdentity {
            nameservers: vec![hickory_proto::rr::Name::from_ascii("ns1.spfd.test.").unwrap()],
            hostmaster: hickory_proto::rr::Name::from_ascii("hostmaster.spfd.test.").unwrap(),
        };
        let content = ZoneContent::from_policy(&policy, None);
        let hash = content.fingerprint();
        content.into_zone(serial, hash, &servers, policy)
    }

    #[test]
    fn differences_chain_from_a_known_serial_and_the_journal_is_bounded() {
        let journal = Journal::new(2);
        let versions: Vec<Zone> = (1..=4).map(|i| zone(&format!("192.0.2.{i}"), i)).collect();
        let apex = LowerName::new(&versions[0].apex);
        for pair in versions.windows(2) {
            journal.record(&apex, Some(&pair[0]), Some(&pair[1]));
        }
        assert_eq!(journal.serials(&apex), vec![2, 3], "two versions kept");
        let chain = journal.chain(&apex, 2, 4).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            (chain[0].deleted.len(), chain[0].added.len()),
            (1, 1),
            "one TXT replaced"
        );
        assert!(journal.chain(&apex, 1, 4).is_none(), "dropped");
        assert!(
            journal.chain(&apex, 2, 3).is_none(),
            "does not end at the current serial"
        );
        // A version that does not follow the last one starts over.
        journal.record(&apex, Some(&zone("192.0.2.9", 9)), Some(&zone("192.0.2.10", 10)));
        assert_eq!(journal.serials(&apex), vec![9]);
        journal.record(&apex, Some(&versions[0]), None);
        assert!(
            journal.serials(&apex).is_empty(),
            "a removed zone forgets its journal"
        );
    }
}
