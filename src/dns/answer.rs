//! What a query gets, decided from one snapshot: RFC 1034 4.3.2 for an authoritative
//! server without delegations or wildcards, RFC 2308 for negative answers, RFC 8482 for
//! ANY. Owner names are written in the case the query was asked in. Zones with a zone
//! file (delegations, CNAME, wildcards) are answered by [`super::full_zone`].

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

pub use super::sections::Answer;
use super::sections::rfc8482_hinfo;
use crate::snapshot::compiled::{WireSet, wire_name};
use crate::snapshot::macro_table::{V4_LABEL, V6_LABEL};
use crate::snapshot::{Snapshot, Zone};

/// Answers one question. `qname` is the name as asked (its case is echoed); `tcp`
/// selects the full answer to ANY.
pub fn answer(snapshot: &Snapshot, qname: &Name, qtype: RecordType, qclass: DNSClass, tcp: bool) -> Answer {
    if qclass != DNSClass::IN {
        return Answer::refused();
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return transfer_outside_tcp(snapshot, qname, qtype, tcp);
    }
    let lower = LowerName::new(qname);
    let Some(zone) = snapshot.find_zone(&lower) else {
        return Answer::refused();
    };
    let macro_name = macro_record(zone, qname);
    if zone.wire.zone.full && macro_name.is_none() {
        return super::full_zone::answer(snapshot, zone, qname, qtype, tcp);
    }
    let mut out = Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    // A per-address name of macro mode has its TXT record alone; other names their sets.
    let mut macro_txt = None;
    let sets: Vec<&WireSet> = if let Some(record) = macro_name {
        macro_txt = matches!(qtype, RecordType::TXT | RecordType::ANY).then_some(record);
        Vec::new()
    } else {
        let Some(sets) = zone.sets_at(&wire_name(qname)) else {
            out.rcode = ResponseCode::NXDomain;
            out.authority.extend(negative_soa(zone, qname));
            return out;
        };
        match qtype {
            RecordType::ANY => sets.iter().map(|(_, set)| set).collect(),
            _ => sets
                .iter()
                .filter(|(t, _)| *t == u16::from(qtype))
                .map(|(_, set)| set)
                .collect(),
        }
    };
    if qtype == RecordType::ANY && !tcp {
        out.answers.push(rfc8482_hinfo(qname, zone));
        return out;
    }
    out.answers = macro_txt
        .into_iter()
        .chain(sets.into_iter().flat_map(|set| set.records(qname)))
        .collect();
    if out.answers.is_empty() {
        out.authority.extend(negative_soa(zone, qname));
    }
    out
}

/// Zone transfers are served over TCP by [`crate::xfr`]. Here: AXFR over UDP is
/// REFUSED (RFC 5936 4.2 defines it for TCP only; the same code as over TCP without
/// `[transfer]`, so UDP and TCP agree); IXFR over UDP gets
/// the current SOA alone, RFC 1995 4's "too large, use TCP" answer (the SOA is public);
/// over TCP without `[transfer]` both are REFUSED like NSD without provide-xfr.
fn transfer_outside_tcp(snapshot: &Snapshot, qname: &Name, qtype: RecordType, tcp: bool) -> Answer {
    if tcp {
        return Answer::refused();
    }
    if qtype == RecordType::AXFR {
        return Answer::refused();
    }
    let lower = LowerName::new(qname);
    match snapshot.zones.get(&lower) {
        Some(zone) => Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: zone
                .sets_at(&wire_name(qname))
                .and_then(|sets| sets.iter().find(|(t, _)| *t == u16::from(RecordType::SOA)))
                .map(|(_, set)| set.records(qname))
                .unwrap_or_default(),
            authority: Vec::new(),
            additional: Vec::new(),
        },
        None => Answer::refused(),
    }
}

/// Macro mode: every name under `in-addr.<zone>` and `ip6.<zone>` has a TXT record,
/// the answer for the address it spells (or one that authorises nothing), owned by
/// `qname` as asked.
fn macro_record(zone: &Zone, qname: &Name) -> Option<Record> {
    let macros = zone.wire.zone.macros.as_ref()?;
    let below = usize::from(qname.num_labels()).checked_sub(usize::from(zone.apex.num_labels()) + 1)?;
    let family = qname.iter().nth(below)?;
    let v6 = if family.eq_ignore_ascii_case(V6_LABEL) {
        true
    } else if family.eq_ignore_ascii_case(V4_LABEL) {
        false
    } else {
        return None;
    };
    let hit = macros.table.answer_for_labels(v6, qname.iter().take(below));
    let strings = macros.table.strings_for(hit);
    Some(Record::from_rdata(
        qname.clone(),
        zone.ttl,
        RData::TXT(TXT::new(strings)),
    ))
}

/// The zone's SOA for the authority section of a negative answer: owner in the case
/// the query used, TTL min(SOA TTL, MINIMUM) (RFC 2308 3).
fn negative_soa(zone: &Zone, qname: &Name) -> Option<Record> {
    zone.wire
        .zone
        .negative_soa(&qname.trim_to(zone.apex.num_labels() as usize))
}
