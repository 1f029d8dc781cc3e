//! DNSSEC in answers: for a query with DO=1 to a signed zone, every RRset of the answer
//! gets its RRSIGs (precomputed for static RRsets, made on demand and cached for macro
//! answers and the RFC 8482 HINFO), and a negative answer becomes an RFC 9824 compact
//! denial: NOERROR, the SOA and one NSEC at the query name, each with its RRSIGs. A
//! query for the NXNAME meta type to a signed zone gets FORMERR (RFC 9824 3.4).
//!
//! In two steps: [`shape`] gives the answer its final records, [`Shaped::sign`] adds
//! the signatures, and the rate limiter decides in between.

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::answer::Answer;
use crate::dnssec::denial::compact_nsec;
use crate::dnssec::sign::lower_wire;
use crate::dnssec::{SignedZone, TYPE_NXNAME};
use crate::snapshot::compiled::wire_name;
use crate::snapshot::{Snapshot, Zone};

/// An answer as a signed zone gives it, before its signatures are made: the rate
/// limiter looks at it first, so an answer it does not send costs no signing.
#[derive(Debug)]
pub struct Shaped<'s> {
    pub answer: Answer,
    /// The zone that signs it; `None` when nothing is to be signed.
    signed: Option<&'s SignedZone>,
}

impl<'s> Shaped<'s> {
    /// An answer that gets no signatures.
    pub fn unsigned(answer: Answer) -> Self {
        Shaped { answer, signed: None }
    }

    /// The answer with its RRSIGs: after each RRset of the answer section, or of the
    /// authority section of a denial.
    pub fn sign(self, now_unix: u64) -> Answer {
        let Some(signed) = self.signed else {
            return self.answer;
        };
        let answer = self.answer;
        if answer.answers.is_empty() {
            Answer {
                authority: with_signatures(answer.authority, signed, now_unix),
                ..answer
            }
        } else {
            Answer {
                answers: with_signatures(answer.answers, signed, now_unix),
                ..answer
            }
        }
    }
}

/// `answer` as a signed zone gives it, unsigned yet ([`Shaped::sign`]): unchanged for
/// unsigned zones and for queries without DO (apart from the NXNAME FORMERR).
pub fn shape<'s>(
    snapshot: &'s Snapshot,
    qname: &Name,
    qtype: RecordType,
    answer: Answer,
    dnssec_ok: bool,
) -> Shaped<'s> {
    if !dnssec_ok && u16::from(qtype) != TYPE_NXNAME {
        // Nothing to add: not even the zone is looked up again.
        return Shaped::unsigned(answer);
    }
    let Some(zone) = snapshot.find_zone(&LowerName::new(qname)) else {
        return Shaped::unsigned(answer);
    };
    let Some(signed) = zone.wire.zone.dnssec.as_deref() else {
        return Shaped::unsigned(answer);
    };
    if u16::from(qtype) == TYPE_NXNAME {
        return Shaped::unsigned(Answer::code(ResponseCode::FormErr));
    }
    if !dnssec_ok
        || !answer.authoritative
        || !matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain)
    {
        return Shaped::unsigned(answer);
    }
    if answer.answers.is_empty() {
        deny(zone, signed, qname, answer)
    } else {
        Shaped {
            answer,
            signed: Some(signed),
        }
    }
}

/// The records with each RRset's RRSIGs after it.
fn with_signatures(records: Vec<Record>, signed: &SignedZone, now_unix: u64) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .take_while(|r| r.record_type() == first.record_type())
            .count();
        let (set, tail) = rest.split_at(len);
        out.extend_from_slice(set);
        out.extend(signatures(signed, set, now_unix));
        rest = tail;
    }
    out
}

/// The RRSIG records over one RRset: precomputed for a static RRset, else made now.
fn signatures(signed: &SignedZone, set: &[Record], now_unix: u64) -> Vec<Record> {
    let Some(first) = set.first() else {
        return Vec::new();
    };
    let sigs = signed
        .signatures(&lower_wire(&first.name), u16::from(first.record_type()), now_unix)
        .or_else(|| signed.on_demand(set, now_unix));
    sigs.iter()
        .flat_map(|s| s.iter())
        .map(|sig| {
            Record::from_rdata(
                first.name.clone(),
                first.ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(sig.clone())),
            )
        })
        .collect()
}

/// NXDOMAIN or NODATA as a compact denial: NOERROR, the SOA and an NSEC at the query
/// name (NXNAME in its bitmap for a name that does not exist), to be signed.
fn deny<'s>(zone: &Zone, signed: &'s SignedZone, qname: &Name, answer: Answer) -> Shaped<'s> {
    let exists = answer.rcode == ResponseCode::NoError;
    let Some(soa) = answer.authority.first().cloned() else {
        return Shaped::unsigned(answer);
    };
    let types = if exists { types_at(zone, qname) } else { Vec::new() };
    let Some(nsec) = compact_nsec(qname, &types, exists, soa.ttl) else {
        return Shaped::unsigned(answer);
    };
    let answer = Answer {
        rcode: ResponseCode::NoError,
        authority: vec![soa, nsec],
        ..answer
    };
    Shaped {
        answer,
        signed: Some(signed),
    }
}

/// The types at an existing name: its RRsets, or TXT for a per-address name of macro
/// mode (which has no entry of its own).
fn types_at(zone: &Zone, qname: &Name) -> Vec<RecordType> {
    match zone.sets_at(&wire_name(qname)) {
        Some(sets) => sets.iter().map(|(t, _)| RecordType::from(*t)).collect(),
        None => vec![RecordType::TXT],
    }
}
