//! DNSSEC in answers: for a query with DO=1 to a signed zone, every RRset of the answer
//! gets its RRSIGs (precomputed for static RRsets, made on demand and cached for macro
//! answers and the RFC 8482 HINFO), and a negative answer becomes an RFC 9824 compact
//! denial: NOERROR, the SOA and one NSEC at the query name, each with its RRSIGs. A
//! query for the NXNAME meta type to a signed zone gets FORMERR (RFC 9824 3.4).

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::answer::Answer;
use crate::dnssec::denial::compact_nsec;
use crate::dnssec::sign::lower_wire;
use crate::dnssec::{SignedZone, TYPE_NXNAME};
use crate::snapshot::compiled::wire_name;
use crate::snapshot::{Snapshot, Zone};

/// `answer` as a signed zone gives it: unchanged for unsigned zones and for queries
/// without DO (apart from the NXNAME FORMERR).
pub fn secure(
    snapshot: &Snapshot,
    qname: &Name,
    qtype: RecordType,
    answer: Answer,
    dnssec_ok: bool,
    now_unix: u64,
) -> Answer {
    if !dnssec_ok && u16::from(qtype) != TYPE_NXNAME {
        // Nothing to add: not even the zone is looked up again.
        return answer;
    }
    let Some(zone) = snapshot.find_zone(&LowerName::new(qname)) else {
        return answer;
    };
    let Some(signed) = zone.wire.zone.dnssec.as_deref() else {
        return answer;
    };
    if u16::from(qtype) == TYPE_NXNAME {
        return Answer::code(ResponseCode::FormErr);
    }
    if !dnssec_ok
        || !answer.authoritative
        || !matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain)
    {
        return answer;
    }
    if answer.answers.is_empty() {
        deny(zone, signed, qname, answer, now_unix)
    } else {
        Answer {
            answers: with_signatures(answer.answers, signed, now_unix),
            ..answer
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

/// NXDOMAIN or NODATA as a compact denial: NOERROR, SOA and NSEC with their RRSIGs.
fn deny(zone: &Zone, signed: &SignedZone, qname: &Name, answer: Answer, now_unix: u64) -> Answer {
    let exists = answer.rcode == ResponseCode::NoError;
    let Some(soa) = answer.authority.first().cloned() else {
        return answer;
    };
    let types = if exists { types_at(zone, qname) } else { Vec::new() };
    let Some(nsec) = compact_nsec(qname, &types, exists, soa.ttl) else {
        return answer;
    };
    let mut authority = vec![soa.clone()];
    authority.extend(signatures(signed, std::slice::from_ref(&soa), now_unix));
    let nsec_sigs = signatures(signed, std::slice::from_ref(&nsec), now_unix);
    authority.push(nsec);
    authority.extend(nsec_sigs);
    Answer {
        rcode: ResponseCode::NoError,
        authority,
        ..answer
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
