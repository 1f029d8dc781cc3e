//! The snapshot compiled for the wire: every name's answers as ready-made bytes, keyed
//! by the name in lower-case wire format, so that the common query costs one hash
//! lookup and a few copies. Owner names are compression pointers to the question
//! (offset 12), which also echoes the name in the case it was asked.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder, NameEncoding, Restrict};

use super::macro_table::{CLIENT_TERM_MAX, client_term};
use super::sharded::{Editor, Sharded};
use super::{MacroAnswers, MacroTable, Node, Zone};

/// A pointer to the question name: every answer's owner.
const TO_QUESTION: [u8; 2] = [0xc0, 0x0c];

/// The records of one type at one name, encoded for the answer section.
#[derive(Debug, Clone, Default)]
pub struct WireSet {
    pub count: u16,
    pub bytes: Box<[u8]>,
}

/// The RRsets at one name, by type.
pub type WireSets = Arc<[(u16, WireSet)]>;

/// A name: its zone and its RRsets by type.
#[derive(Debug, Clone)]
pub struct WireName {
    pub zone: Arc<WireZone>,
    pub sets: WireSets,
}

impl WireSet {
    /// The set as hickory records owned by `owner`, for the general path (which builds
    /// messages with hickory). The bytes are spfd's own encoding; a record that does not
    /// decode (a bug) is left out rather than failing the query.
    pub fn records(&self, owner: &Name) -> Vec<Record> {
        let mut out = Vec::with_capacity(usize::from(self.count));
        let mut rest: &[u8] = &self.bytes;
        while let Some(tail) = rest.get(TO_QUESTION.len()..) {
            let Some((record, used)) = decode_tail(tail, owner) else {
                debug_assert!(false, "undecodable wire set {:?}", self.bytes);
                break;
            };
            out.push(record);
            rest = &tail[used..];
        }
        out
    }
}

impl WireZone {
    /// The SOA for the authority section of a negative answer, owned by `apex` as the
    /// question spelled it.
    pub fn negative_soa(&self, apex: &Name) -> Option<Record> {
        decode_tail(&self.soa_tail, apex).map(|(record, _)| record)
    }
}

/// Decodes type, class, TTL, length and data (everything after the owner name) into a
/// record owned by `owner`; returns it with the number of bytes used.
fn decode_tail(bytes: &[u8], owner: &Name) -> Option<(Record, usize)> {
    let field = |at: usize| Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    let rtype = RecordType::from(field(0)?);
    let ttl = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    let len = field(8)?;
    let rdata = bytes.get(10..10 + usize::from(len))?;
    let data = RData::read(&mut BinDecoder::new(rdata), rtype, Restrict::new(len)).ok()?;
    Some((
        Record::from_rdata(owner.clone(), ttl, data),
        10 + usize::from(len),
    ))
}

impl WireName {
    pub fn set(&self, rtype: u16) -> Option<&WireSet> {
        self.sets.iter().find(|(t, _)| *t == rtype).map(|(_, s)| s)
    }
}

/// What a zone adds to negative answers and to macro answers.
#[derive(Debug)]
pub struct WireZone {
    pub apex_labels: u8,
    /// The SOA for the authority section, everything after its owner name (the owner is
    /// a pointer to where the apex starts in the question), TTL min(TTL, MINIMUM).
    pub soa_tail: Box<[u8]>,
    pub macros: Option<WireMacros>,
    /// The zone serves a zone file's records: CNAME chasing, delegations, wildcards and
    /// additional records are the general path's ([`crate::snapshot::Zone`]s without a
    /// zone file have none of these, and the UDP fast path answers them alone).
    pub full: bool,
    /// The zone's records come from a backend whose copy is missing or expired: names
    /// other than spfd's own get SERVFAIL.
    pub expired: bool,
    /// The zone's signatures when it is signed (DNSSEC); answers to queries with DO=1
    /// for a signed zone take the general path, which adds them.
    pub dnssec: Option<Arc<crate::dnssec::SignedZone>>,
}

#[derive(Debug)]
pub struct WireMacros {
    pub table: Arc<MacroTable>,
    /// One answer per table index, owner pointing at the question, without the
    /// client's term.
    pub answers: Box<[WireSet]>,
    /// Per table index: where in its answer's bytes the client's term goes, for the
    /// answers that name the client (see [`crate::snapshot::macro_table::Answer`]).
    pub client_at: Box<[Option<usize>]>,
}

impl WireMacros {
    /// The answer's bytes for one name, owner pointing at the question, in up to five
    /// parts (the client's term and the record length that counts it are made here, in
    /// `term` and `rdlength`: nothing is allocated).
    pub fn parts<'a>(
        &'a self,
        hit: crate::snapshot::macro_table::Hit,
        term: &'a mut [u8; 1 + CLIENT_TERM_MAX],
        rdlength: &'a mut [u8; 2],
    ) -> Option<(u16, [&'a [u8]; 5])> {
        let index = usize::from(hit.index);
        let set = self.answers.get(index)?;
        let (Some(at), Some(ip)) = (self.client_at[index], hit.client) else {
            return Some((set.count, [&set.bytes, &[], &[], &[], &[]]));
        };
        let (len_byte, text) = term.split_at_mut(1);
        let text: &mut [u8; CLIENT_TERM_MAX] = text.try_into().ok()?;
        let len = client_term(ip, text);
        len_byte[0] = u8::try_from(len).ok()?;
        // Owner pointer (2), type, class, TTL (8), then RDLENGTH (2) and the strings.
        let rdata = set.bytes.len() - RDATA_AT + 1 + len;
        *rdlength = u16::try_from(rdata).ok()?.to_be_bytes();
        let bytes = &set.bytes;
        Some((
            set.count,
            [
                &bytes[..RDATA_AT - 2],
                &rdlength[..],
                &bytes[RDATA_AT..at],
                &term[..1 + len],
                &bytes[at..],
            ],
        ))
    }
}

/// Where the RDATA of a record starts in a [`WireSet`]: after the owner pointer, type,
/// class, TTL and RDLENGTH.
const RDATA_AT: usize = 12;

/// The offset in an encoded one-record TXT set where the string `index` starts.
fn string_offset(strings: &[String], index: usize) -> usize {
    RDATA_AT + strings[..index].iter().map(|s| 1 + s.len()).sum::<usize>()
}

/// One zone in wire format, built with the zone and shared by every snapshot that
/// keeps the zone: every name (empty non-terminals included, with no sets) and its
/// RRsets.
#[derive(Debug, Clone)]
pub struct ZoneWire {
    pub names: Box<[(Arc<[u8]>, WireSets)]>,
    pub zone: Arc<WireZone>,
}

/// What [`ZoneWire::build`] needs besides the names.
pub struct Apex<'a> {
    pub name: &'a Name,
    pub soa: &'a Record,
    pub ns: &'a [Record],
    /// The zone has a zone file's records (see [`WireZone::full`]).
    pub full: bool,
    /// See [`WireZone::expired`].
    pub expired: bool,
}

impl ZoneWire {
    pub fn build(
        apex: &Apex<'_>,
        nodes: &HashMap<LowerName, Node>,
        macros: Option<&MacroAnswers>,
    ) -> ZoneWire {
        let zone = Arc::new(WireZone {
            apex_labels: apex.name.num_labels(),
            soa_tail: soa_tail(apex.soa),
            macros: macros.map(|m| WireMacros {
                table: m.table.clone(),
                answers: m
                    .records
                    .iter()
                    .map(|r| encode_set(std::slice::from_ref(r)))
                    .collect(),
                client_at: m
                    .table
                    .answers()
                    .iter()
                    .map(|a| a.client_at.map(|at| string_offset(&a.strings, at)))
                    .collect(),
            }),
            full: apex.full,
            expired: apex.expired,
            dnssec: None,
        });
        let names = nodes
            .iter()
            .map(|(name, node)| {
                // SOA and NS first: the order of a full answer to ANY.
                let mut sets: Vec<(u16, WireSet)> = Vec::new();
                if name.num_labels() == apex.name.num_labels() {
                    sets.push((
                        u16::from(RecordType::SOA),
                        encode_set(std::slice::from_ref(apex.soa)),
                    ));
                    sets.push((u16::from(RecordType::NS), encode_set(apex.ns)));
                }
                sets.extend(by_type(&node.records).map(|(t, set)| (u16::from(t), encode_set(&set))));
                (Arc::from(wire_name(&Name::from(name.clone()))), Arc::from(sets))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        ZoneWire { names, zone }
    }
}

/// Records grouped into RRsets, in the order each type first appears.
fn by_type(records: &[Record]) -> impl Iterator<Item = (RecordType, Vec<Record>)> + '_ {
    let mut types: Vec<RecordType> = Vec::new();
    for r in records {
        if !types.contains(&r.record_type()) {
            types.push(r.record_type());
        }
    }
    types.into_iter().map(move |t| {
        let set = records.iter().filter(|r| r.record_type() == t).cloned().collect();
        (t, set)
    })
}

/// Every zone's wire data, indexed by name, in shards shared between snapshots: a
/// swap inserts the names of the zones it changes, not every name.
#[derive(Debug, Default)]
pub struct Compiled {
    pub names: Sharded<Arc<[u8]>, WireName>,
}

/// Adds a zone's names to an index being built.
pub fn insert_names(names: &mut Editor<Arc<[u8]>, WireName>, zone: &Zone) {
    for (key, sets) in zone.wire.names.iter() {
        let name = WireName {
            zone: zone.wire.zone.clone(),
            sets: sets.clone(),
        };
        names.insert(key.clone(), name);
    }
}

/// Records of one RRset as answer-section bytes with the owner pointing at the question.
pub fn encode_set(records: &[Record]) -> WireSet {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend_from_slice(&TO_QUESTION);
        push_tail(&mut bytes, r.record_type(), r.ttl, &rdata(&r.data));
    }
    WireSet {
        count: u16::try_from(records.len()).expect("small RRsets"),
        bytes: bytes.into_boxed_slice(),
    }
}

fn soa_tail(soa: &Record) -> Box<[u8]> {
    let ttl = match &soa.data {
        RData::SOA(data) => soa.ttl.min(data.minimum),
        _ => soa.ttl,
    };
    let mut bytes = Vec::new();
    push_tail(&mut bytes, RecordType::SOA, ttl, &rdata(&soa.data));
    bytes.into_boxed_slice()
}

/// Type, class IN, TTL, length and data of a record.
fn push_tail(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(
        &u16::try_from(rdata.len())
            .expect("rdata fits 64 KiB")
            .to_be_bytes(),
    );
    out.extend_from_slice(rdata);
}

/// Record data without name compression (names inside it are written whole, so the
/// bytes can be copied into any message).
fn rdata(data: &RData) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        RData::TXT(txt) => {
            for s in txt.txt_data.iter() {
                out.push(u8::try_from(s.len()).expect("strings are split at 255"));
                out.extend_from_slice(s);
            }
        }
        RData::NS(ns) => out.extend(wire_name(&ns.0)),
        RData::SOA(soa) => {
            out.extend(wire_name(&soa.mname));
            out.extend(wire_name(&soa.rname));
            for v in [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        // Zone-file records, and DNSKEY, CDS, CDNSKEY (snapshot::signed): names
        // uncompressed, in the case written (checked to encode when the file was read).
        other => {
            let mut encoder = BinEncoder::new(&mut out);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            other
                .emit(&mut encoder)
                .expect("zone-file and key records are checked to encode");
        }
    }
    out
}

/// A name in wire format, lower case, ending with the root label.
pub fn wire_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;

    #[test]
    fn txt_sets_point_at_the_question_and_carry_every_string() {
        let name = Name::from_ascii("_spf.example.test.").unwrap();
        let r = Record::from_rdata(name, 300, RData::TXT(TXT::new(vec!["ab".into(), "c".into()])));
        let set = encode_set(&[r]);
        assert_eq!(set.count, 1);
        assert_eq!(
            &*set.bytes,
            &[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 5, 2, b'a', b'b', 1, b'c']
        );
    }

    #[test]
    fn sets_decode_back_to_the_records_under_the_asked_owner() {
        let apex = Name::from_ascii("_spf.Example.test.").unwrap();
        let txt = [
            Record::from_rdata(
                apex.clone(),
                300,
                RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
            ),
            Record::from_rdata(apex.clone(), 300, RData::TXT(TXT::new(vec![String::new()]))),
        ];
        let asked = Name::from_ascii("_SPF.example.TEST.").unwrap();
        let decoded = encode_set(&txt).records(&asked);
        assert_eq!(decoded.len(), 2);
        for (got, want) in decoded.iter().zip(&txt) {
            assert_eq!(got.name, asked);
            assert_eq!((got.ttl, &got.data), (want.ttl, &want.data));
        }

        let soa = Record::from_rdata(
            apex.clone(),
            3600,
            RData::SOA(hickory_proto::rr::rdata::SOA::new(
                Name::from_ascii("ns1.spfd.test.").unwrap(),
                Name::from_ascii("hostmaster.spfd.test.").unwrap(),
                7,
                3600,
                900,
                1_209_600,
                300,
            )),
        );
        let zone = WireZone {
            apex_labels: 3,
            soa_tail: soa_tail(&soa),
            macros: None,
            full: false,
            expired: false,
            dnssec: None,
        };
        let negative = zone.negative_soa(&asked).unwrap();
        assert_eq!(negative.name, asked);
        assert_eq!(negative.ttl, 300, "min(TTL, MINIMUM)");
        assert_eq!(negative.data, soa.data);
    }

    #[test]
    fn wire_names_are_lower_case() {
        let name = Name::from_ascii("Ab.C.").unwrap();
        assert_eq!(wire_name(&name), vec![2, b'a', b'b', 1, b'c', 0]);
    }
}
