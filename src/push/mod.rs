//! Writing spfd's records into an existing primary with RFC 2136 dynamic updates,
//! signed with TSIG: `spfd push` and the server's `[push]` mode.
//!
//! spfd owns, in the primary's zone: the SPF record at the policy's zone apex (only the
//! `v=spf1` TXT records there: other TXT records at a shared name stay), and the whole
//! TXT RRset of every other name it publishes (chain parts, `_dmarc`, DKIM selectors,
//! report authorisations). One update replaces them: it deletes what spfd owns (the
//! names of the last push too, remembered in `state_dir`, so a chain part or selector
//! that went away is deleted) and adds the records of now, in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, UpdateMessage};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::snapshot::Zone;
use crate::tsig::TsigKey;
use crate::xfr::records::{WireRecord, zone_records};

pub mod send;

/// The state file with the names of the last push, by zone apex.
pub const STATE_FILE: &str = "pushed.json";

/// What was pushed last, by policy zone apex: the names spfd wrote TXT records at.
pub type Pushed = BTreeMap<String, BTreeSet<String>>;

/// Where updates go and how they are signed.
#[derive(Debug, Clone)]
pub struct Target {
    pub primary: SocketAddr,
    pub key: Option<TsigKey>,
}

/// One zone's update, before it is sent.
#[derive(Debug, Clone)]
pub struct Update {
    /// The primary's zone the names are in (the zone section).
    pub zone: Name,
    /// The name of the SPF record (the policy's zone apex).
    pub head: Name,
    /// `v=spf1` records found at the head: deleted one by one.
    pub old_spf: Vec<Record>,
    /// Names whose TXT RRset is deleted whole.
    pub clear: BTreeSet<Name>,
    /// Records added.
    pub add: Vec<Record>,
}

/// The TXT records a zone serves (SOA and NS are the primary's own), macro mode
/// excepted: per-address answers cannot be written into a zone.
pub fn owned_records(zone: &Zone) -> Option<Vec<Record>> {
    // Macro zones cannot be listed; a zone with a zone file or a backend is served by
    // spfd whole (its TXT records are not all spfd's to push).
    if zone.wire.zone.macros.is_some() || zone.policy.zone_data.is_some() || zone.policy.backend.is_some() {
        return None;
    }
    let (_, records) = zone_records(zone)?;
    Some(
        records
            .iter()
            .filter(|r| r.rtype() == u16::from(RecordType::TXT))
            .filter_map(decode)
            .collect(),
    )
}

fn decode(record: &WireRecord) -> Option<Record> {
    let mut bytes = record.owner.to_vec();
    bytes.extend_from_slice(&record.tail);
    Record::read(&mut BinDecoder::new(&bytes)).ok()
}

impl Update {
    /// The update for a zone's records: `previous` are the names of the last push.
    pub fn new(
        zone: Name,
        head: Name,
        old_spf: Vec<Record>,
        mut add: Vec<Record>,
        previous: &BTreeSet<String>,
    ) -> Update {
        // A stable order for the dry run (the zone's names are held in no order).
        add.sort_by_cached_key(|r| (r.name.to_lowercase(), txt_text(&r.data)));
        let mut clear: BTreeSet<Name> = add.iter().map(|r| r.name.to_lowercase()).collect();
        clear.extend(previous.iter().filter_map(|n| Name::from_ascii(n).ok()));
        let head = head.to_lowercase();
        clear.remove(&head);
        Update {
            zone,
            head,
            old_spf,
            clear,
            add,
        }
    }

    /// The names this update writes, for the state file.
    pub fn names(&self) -> BTreeSet<String> {
        self.add
            .iter()
            .map(|r| r.name.to_lowercase().to_string())
            .collect()
    }

    /// The RFC 2136 message: zone section, no prerequisites, the deletions then the
    /// additions (processed in order, in one transaction).
    pub fn message(&self, id: u16) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Update);
        message.add_zone(Query::query(self.zone.clone(), RecordType::SOA));
        for record in &self.old_spf {
            let mut delete = Record::from_rdata(record.name.clone(), 0, record.data.clone());
            delete.dns_class = DNSClass::NONE;
            message.add_update(delete);
        }
        for name in &self.clear {
            let mut delete = Record::from_rdata(name.clone(), 0, RData::Update0(RecordType::TXT));
            delete.dns_class = DNSClass::ANY;
            message.add_update(delete);
        }
        for record in &self.add {
            message.add_update(record.clone());
        }
        message
    }

    /// The update in nsupdate's language (what `--dry-run` prints).
    pub fn nsupdate(&self, target: &Target) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "server {} {}", target.primary.ip(), target.primary.port());
        if let Some(key) = &target.key {
            let _ = writeln!(out, "; signed with TSIG key {} ({})", key.name, key.algorithm);
        }
        let _ = writeln!(out, "zone {}", self.zone);
        for r in &self.old_spf {
            let _ = writeln!(out, "update delete {} TXT {}", r.name, txt_text(&r.data));
        }
        for name in &self.clear {
            let _ = writeln!(out, "update delete {name} TXT");
        }
        for r in &self.add {
            let _ = writeln!(out, "update add {} {} TXT {}", r.name, r.ttl, txt_text(&r.data));
        }
        out.push_str("send\n");
        out
    }
}

/// TXT data as quoted character-strings (zone-file form).
pub fn txt_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| {
                let text: String = s
                    .iter()
                    .map(|&b| match b {
                        b'"' | b'\\' => format!("\\{}", b as char),
                        0x20..=0x7e => (b as char).to_string(),
                        _ => format!("\\{b:03}"),
                    })
                    .collect();
                format!("\"{text}\"")
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Whether a TXT record is an SPF record (RFC 7208 4.5: `v=spf1` then a space or the
/// end).
pub fn is_spf(data: &RData) -> bool {
    let RData::TXT(txt) = data else {
        return false;
    };
    let joined: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
    let lower = joined.to_ascii_lowercase();
    lower == b"v=spf1" || lower.starts_with(b"v=spf1 ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;

    fn txt(name: &str, text: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            300,
            RData::TXT(TXT::new(vec![text.into()])),
        )
    }

    #[test]
    fn an_update_deletes_what_spfd_owns_then_adds() {
        let previous: BTreeSet<String> = ["old._domainkey.example.test.".to_string()].into();
        let update = Update::new(
            Name::from_ascii("example.test.").unwrap(),
            Name::from_ascii("example.test.").unwrap(),
            vec![txt("example.test.", "v=spf1 -all")],
            vec![
                txt("example.test.", "v=spf1 ip4:192.0.2.1 -all"),
                txt("_dmarc.example.test.", "v=DMARC1; p=reject"),
            ],
            &previous,
        );
        let text = update.nsupdate(&Target {
            primary: "192.0.2.10:53".parse().unwrap(),
            key: None,
        });
        assert_eq!(
            text,
            "server 192.0.2.10 53\nzone example.test.\n\
             update delete example.test. TXT \"v=spf1 -all\"\n\
             update delete _dmarc.example.test. TXT\n\
             update delete old._domainkey.example.test. TXT\n\
             update add example.test. 300 TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
             update add _dmarc.example.test. 300 TXT \"v=DMARC1; p=reject\"\nsend\n"
        );
        let message = update.message(7);
        assert_eq!(message.metadata.op_code, OpCode::Update);
        assert_eq!(message.authorities.len(), 5, "the update section");
        assert!(is_spf(&txt("a.", "v=spf1").data) && is_spf(&txt("a.", "V=SPF1 -all").data));
        assert!(
            !is_spf(&txt("a.", "v=spf10").data) && !is_spf(&txt("a.", "google-site-verification=x").data)
        );
    }
}
