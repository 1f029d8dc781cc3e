//! The snapshot: every zone and every answer a query can need, built once per change
//! and never mutated. The DNS handler reads one snapshot per query; the reload service
//! is the only writer and swaps whole snapshots (see [`SnapshotCell`]).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

pub mod build;
pub mod compiled;
pub mod macro_table;
pub mod serials;
pub mod sharded;
pub mod signed;

pub use build::{Builder, Claims, Conflict, Summary};
pub use macro_table::MacroTable;

use crate::names::prepend;
use crate::policy::ValidPolicy;
use crate::txt;

/// SOA timers (RFC 1912 2.2 ranges, as NSD and Knot examples use).
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 900;
const SOA_EXPIRE: i32 = 1_209_600;

/// The zones of a snapshot by apex, in shards shared between snapshots (a swap copies
/// only the shards its changes fall in).
pub type ZoneMap = sharded::Sharded<LowerName, Arc<Zone>>;

/// The one cell the handler reads and the reload service writes.
pub type SnapshotCell = ArcSwap<Snapshot>;

/// The records of one name of a zone being built (compiled to wire form, then dropped):
/// spfd's own TXT records and, in a zone with a zone file, that file's records of any
/// type (SOA and apex NS apart: see [`ZoneContent`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node {
    pub records: Vec<Record>,
}

/// One zone spfd is authoritative for, built from one policy. Its records are kept
/// in wire form only (see [`compiled::ZoneWire`]): the UDP fast path copies them, and
/// the general path decodes the few it needs per query.
#[derive(Debug)]
pub struct Zone {
    pub apex: Name,
    pub serial: u32,
    /// The TTL of the policy's records (a zone file's records keep their own).
    pub ttl: u32,
    /// The policy this zone was built from, for reports and for `spfd records`.
    pub policy: Arc<ValidPolicy>,
    /// Fingerprint of the zone's content (not its serial): a change of it is what makes
    /// the serial grow.
    pub content_hash: u64,
    /// What replaced the SPF record as written, to tell whether the next build can reuse
    /// this zone as it is.
    pub spf_answer: Option<Arc<SpfAnswer>>,
    /// The zone's names and RRsets in wire format (built once per zone, not per swap).
    pub wire: compiled::ZoneWire,
}

impl Zone {
    /// The RRsets at a name of the zone, given in lower-case wire format; `None` when
    /// the zone has no such name (empty non-terminals exist, with no sets).
    pub fn sets_at(&self, wire_name: &[u8]) -> Option<&compiled::WireSets> {
        self.wire
            .names
            .iter()
            .find(|(key, _)| **key == *wire_name)
            .map(|(_, sets)| sets)
    }
}

/// Everything a query reads: immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Grows by one with every swap; shown in logs so an operator sees which is served.
    pub generation: u64,
    pub zones: ZoneMap,
    /// How many apexes have each number of labels, kept with each change so the most
    /// labels of any apex (where the zone search starts) is known without a walk.
    apex_labels: Arc<[u32; 128]>,
    /// The same answers as wire bytes, for the UDP fast path.
    pub compiled: compiled::Compiled,
}

/// What one swap changes: zones added or replaced, and zones removed (by apex).
#[derive(Debug, Default)]
pub struct Changes {
    pub upserts: Vec<Arc<Zone>>,
    pub removals: Vec<LowerName>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            generation: 0,
            zones: ZoneMap::default(),
            apex_labels: Arc::new([0; 128]),
            compiled: compiled::Compiled::default(),
        }
    }
}

impl Snapshot {
    pub fn new(generation: u64, zones: impl IntoIterator<Item = Arc<Zone>>) -> Self {
        let changes = Changes {
            upserts: zones.into_iter().collect(),
            removals: Vec::new(),
        };
        Snapshot::default().apply(generation, &changes)
    }

    /// This snapshot with `changes` applied, sharing every shard they do not touch:
    /// the cost of a swap follows the size of the change.
    pub fn apply(&self, generation: u64, changes: &Changes) -> Snapshot {
        let mut zones = self.zones.edit();
        let mut names = self.compiled.names.edit();
        let mut labels = *self.apex_labels;
        let mut forget = |old: &Zone, names: &mut sharded::Editor<Arc<[u8]>, compiled::WireName>| {
            for (key, _) in old.wire.names.iter() {
                names.remove(key);
            }
            labels[usize::from(old.apex.num_labels())] -= 1;
        };
        for apex in &changes.removals {
            if let Some(old) = zones.remove(apex) {
                forget(&old, &mut names);
            }
        }
        for zone in &changes.upserts {
            if let Some(old) = zones.insert(zone.policy.zone_lower.clone(), zone.clone()) {
                forget(&old, &mut names);
            }
        }
        for zone in &changes.upserts {
            compiled::insert_names(&mut names, zone);
            labels[usize::from(zone.apex.num_labels())] += 1;
        }
        Snapshot {
            generation,
            zones: zones.finish(),
            apex_labels: Arc::new(labels),
            compiled: compiled::Compiled {
                names: names.finish(),
            },
        }
    }

    fn max_apex_labels(&self) -> u8 {
        self.apex_labels.iter().rposition(|n| *n > 0).unwrap_or(0) as u8
    }

    /// The closest enclosing zone of a name (longest suffix match).
    pub fn find_zone(&self, name: &LowerName) -> Option<&Arc<Zone>> {
        // Names deeper than every apex start at the deepest apex level: one step, not
        // one rebuilt name per label.
        let max = self.max_apex_labels();
        let mut candidate = if name.num_labels() > max {
            LowerName::new(&Name::from(name.clone()).trim_to(usize::from(max)))
        } else {
            name.clone()
        };
        loop {
            if let Some(zone) = self.zones.get(&candidate) {
                return Some(zone);
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }
}

/// One TXT record: its owner name (absolute, as text) and its character-strings.
pub type NamedStrings = (String, Vec<String>);

/// The SPF records a zone publishes when they are not the policy's record as written:
/// a flattened chain (head at the apex, parts at their own names), or macro answers.
/// The strings are shared with the expansion that produced them, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfAnswer {
    /// The character-strings of the record at the apex.
    pub head: Arc<[String]>,
    /// Other names of the zone with an SPF record, in groups: the chained parts, and
    /// the parts of earlier generations kept while receivers may still hold their head
    /// in cache. Every name parses (checked by whoever builds the answer).
    pub parts: Vec<Arc<[NamedStrings]>>,
    /// Macro mode: the per-address answers under `in-addr.<zone>` and `ip6.<zone>`.
    pub macro_table: Option<Arc<MacroTable>>,
}

/// A part's owner name as published.
pub fn part_name(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// Macro answers before encoding: the table and one record per distinct answer (the
/// owner name is replaced by the query name, and the client's term written in, when
/// served).
#[derive(Debug)]
pub struct MacroAnswers {
    pub table: Arc<MacroTable>,
    pub records: Vec<Record>,
}

impl MacroAnswers {
    fn new(table: Arc<MacroTable>, apex: &Name, ttl: u32) -> Self {
        let records = table
            .answers()
            .iter()
            .map(|a| Record::from_rdata(apex.clone(), ttl, RData::TXT(TXT::new(a.strings.clone()))))
            .collect();
        MacroAnswers { table, records }
    }
}

/// The records one policy publishes, before SOA and serial are added.
#[derive(Debug)]
pub struct ZoneContent {
    pub apex: Name,
    pub ttl: u32,
    pub nodes: HashMap<LowerName, Node>,
    pub spf_answer: Option<Arc<SpfAnswer>>,
    /// What a zone file says about the apex (empty without one).
    pub file: FileRecords,
}

/// A zone file's SOA and apex NS: spfd serves its own SOA (its serial grows with
/// every change, the file's or spfd's) with the file's names and timers, and the file's
/// NS records in place of the configured name servers.
#[derive(Debug, Default, Clone)]
pub struct FileRecords {
    /// Whether the zone has a zone file: its queries take the general path (CNAME,
    /// delegations, wildcards, additional records).
    pub present: bool,
    /// The records come from a backend whose copy is missing or expired.
    pub expired: bool,
    pub soa: Option<Record>,
    pub ns: Vec<Record>,
}

impl FileRecords {
    /// Adds a zone file's records to `nodes` (the policy's own are there already: an
    /// RRset both add to, the apex TXT, takes the TTL of spfd's records).
    fn merge(
        data: &crate::zonefile::ZoneData,
        apex: &Name,
        nodes: &mut HashMap<LowerName, Node>,
    ) -> FileRecords {
        let mut file = FileRecords {
            present: true,
            expired: data.expired,
            ..FileRecords::default()
        };
        let apex_labels = apex.num_labels();
        for (record, _) in &data.records {
            let rtype = record.record_type();
            match rtype {
                RecordType::SOA => file.soa = Some(record.clone()),
                RecordType::NS if record.name.num_labels() == apex_labels => file.ns.push(record.clone()),
                _ => {
                    let node = nodes.entry(LowerName::new(&record.name)).or_default();
                    let mut record = record.clone();
                    if let Some(ours) = node.records.iter().find(|r| r.record_type() == rtype) {
                        record.ttl = ours.ttl;
                    }
                    node.records.push(record);
                }
            }
        }
        file
    }

    /// The file's SOA serial, a floor for the zone's.
    pub fn serial(&self) -> Option<u32> {
        match &self.soa.as_ref()?.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        }
    }
}

impl ZoneContent {
    /// Builds the TXT records of a policy: SPF at the apex (as written, or `spf` when
    /// flattening produced it), DMARC at `_dmarc`, DKIM at `<selector>._domainkey`.
    pub fn from_policy(policy: &ValidPolicy, spf_answer: Option<Arc<SpfAnswer>>) -> ZoneContent {
        Self::with_extra(policy, spf_answer, &[])
    }

    /// [`ZoneContent::from_policy`] plus TXT records other policies need in this zone
    /// (DMARC report authorisations: `(owner, text)`, owners inside the zone).
    pub fn with_extra(
        policy: &ValidPolicy,
        spf_answer: Option<Arc<SpfAnswer>>,
        extra: &[(Name, String)],
    ) -> ZoneContent {
        let apex = policy.zone.clone();
        let ttl = policy.ttl;
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        nodes.insert(LowerName::new(&apex), Node::default());
        let mut add = |name: Name, strings: Vec<String>| {
            let record = Record::from_rdata(name.clone(), ttl, RData::TXT(TXT::new(strings)));
            nodes
                .entry(LowerName::new(&name))
                .or_default()
                .records
                .push(record);
        };
        match (&policy.spf, spf_answer.as_deref()) {
            (Some(_), Some(answer)) => {
                add(apex.clone(), answer.head.to_vec());
                for (name, strings) in answer.parts.iter().flat_map(|group| group.iter()) {
                    if let Some(name) = part_name(name) {
                        add(name, strings.clone());
                    }
                }
            }
            (Some(spf), None) => add(apex.clone(), spf.published_strings()),
            (None, _) => {}
        }
        if let Some(dmarc) = &policy.dmarc {
            add(prepend(&apex, "_dmarc"), txt::split_plain(&dmarc.txt()));
        }
        for dkim in &policy.dkim {
            let name = prepend(&prepend(&apex, "_domainkey"), &dkim.selector);
            add(name, txt::split_plain(&dkim.txt()));
        }
        for (owner, text) in extra {
            add(owner.clone(), txt::split_plain(text));
        }
        let file = policy
            .zone_data
            .as_deref()
            .map(|data| FileRecords::merge(data, &apex, &mut nodes))
            .unwrap_or_default();
        add_empty_non_terminals(&apex, &mut nodes);
        // hickory's Record is a few hundred octets; a Vec grown by push keeps room for
        // four. With a hundred thousand zones that spare room is most of the memory.
        for node in nodes.values_mut() {
            node.records.shrink_to_fit();
        }
        nodes.shrink_to_fit();
        ZoneContent {
            apex,
            ttl,
            nodes,
            spf_answer,
            file,
        }
    }

    /// Every name the zone publishes, apex included.
    pub fn names(&self) -> impl Iterator<Item = &LowerName> {
        self.nodes.keys()
    }

    /// A stable fingerprint of the content (FNV-1a over the sorted presentation form),
    /// the same across restarts so that a persisted serial can be compared with it.
    pub fn fingerprint(&self) -> u64 {
        let mut lines: Vec<String> = self
            .nodes
            .values()
            .flat_map(|n| n.records.iter())
            .chain(self.file.soa.iter())
            .chain(self.file.ns.iter())
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect();
        if self.file.expired {
            lines.push("expired".into());
        }
        lines.sort();
        if let Some(table) = self.spf_answer.as_ref().and_then(|a| a.macro_table.as_ref()) {
            lines.push(format!("{table:?}"));
        }
        fnv1a(lines.join("\n").as_bytes())
    }

    /// The zone with SOA and NS, at the given serial, compiled to wire form (the
    /// records built here are not kept).
    /// `content_hash` is [`ZoneContent::fingerprint`], computed once by the caller.
    pub fn into_zone(
        self,
        serial: u32,
        content_hash: u64,
        servers: &ServerIdentity,
        policy: Arc<ValidPolicy>,
    ) -> Zone {
        let soa = match self.file.soa.as_ref().map(|r| (r.ttl, &r.data)) {
            Some((ttl, RData::SOA(theirs))) => {
                let mut ours = theirs.clone();
                ours.serial = serial;
                Record::from_rdata(self.apex.clone(), ttl, RData::SOA(ours))
            }
            _ => Record::from_rdata(
                self.apex.clone(),
                self.ttl,
                RData::SOA(SOA::new(
                    servers.nameservers[0].clone(),
                    servers.hostmaster.clone(),
                    serial,
                    SOA_REFRESH,
                    SOA_RETRY,
                    SOA_EXPIRE,
                    self.ttl,
                )),
            ),
        };
        let ns: Vec<Record> = if self.file.ns.is_empty() {
            servers
                .nameservers
                .iter()
                .map(|n| Record::from_rdata(self.apex.clone(), self.ttl, RData::NS(NS(n.clone()))))
                .collect()
        } else {
            self.file.ns.clone()
        };
        let macros = self
            .spf_answer
            .as_ref()
            .and_then(|a| a.macro_table.clone())
            .map(|t| MacroAnswers::new(t, &self.apex, self.ttl));
        let apex = compiled::Apex {
            name: &self.apex,
            soa: &soa,
            ns: &ns,
            full: self.file.present,
            expired: self.file.expired,
        };
        let wire = compiled::ZoneWire::build(&apex, &self.nodes, macros.as_ref());
        Zone {
            apex: self.apex,
            serial,
            ttl: self.ttl,
            policy,
            content_hash,
            spf_answer: self.spf_answer,
            wire,
        }
    }
}

/// Names between the apex and a name with records exist without records of their own
/// (`_domainkey.<zone>`): they get NODATA, not NXDOMAIN (RFC 8020).
fn add_empty_non_terminals(apex: &Name, nodes: &mut HashMap<LowerName, Node>) {
    let apex_labels = apex.num_labels();
    let names: Vec<LowerName> = nodes.keys().cloned().collect();
    for name in names {
        let mut parent = name.base_name();
        while parent.num_labels() > apex_labels {
            nodes.entry(parent.clone()).or_default();
            parent = parent.base_name();
        }
    }
}

/// What every zone's SOA and NS say about the servers.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// NS names; the first is the SOA MNAME. Never empty (the config requires one).
    pub nameservers: Vec<Name>,
    pub hostmaster: Name,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The next serial for a changed zone: larger than the previous one (in serial
/// arithmetic, RFC 1982) and, when the clock allows, the current Unix time, so that a
/// restart without state still moves forward.
pub fn next_serial(previous: Option<u32>, now_unix: u64) -> u32 {
    let now = now_unix as u32;
    match previous {
        None => now,
        Some(prev) => {
            let ahead = now.wrapping_sub(prev);
            if ahead > 0 && ahead < (1 << 31) {
                now
            } else {
                prev.wrapping_add(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_follows_the_clock_and_always_grows() {
        assert_eq!(next_serial(None, 1_700_000_000), 1_700_000_000);
        assert_eq!(next_serial(Some(5), 1_700_000_000), 1_700_000_000);
        // Two changes within one second: still grows.
        assert_eq!(next_serial(Some(1_700_000_000), 1_700_000_000), 1_700_000_001);
        // A serial ahead of the clock (from earlier fast changes) keeps counting up.
        assert_eq!(next_serial(Some(1_700_000_050), 1_700_000_000), 1_700_000_051);
        // Wraps per RFC 1982.
        assert_eq!(next_serial(Some(u32::MAX), 0), 0);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
