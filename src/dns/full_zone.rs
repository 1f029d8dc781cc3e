//! Answers from a zone that serves a zone file (RFC 1034 4.3.2 in full): referrals
//! below a delegation (NS in authority, glue in additional, AA off), a CNAME answered
//! and chased within the zone, wildcards (RFC 4592: the closest encloser's `*` child,
//! never for a name that exists), A/AAAA of MX, SRV, NS and SVCB targets in additional, and
//! negative answers with the SOA (RFC 2308; the rcode of the last name of a chain,
//! RFC 6604).

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::sections::{Answer, rfc8482_hinfo};
use crate::snapshot::compiled::{WireName, wire_name};
use crate::snapshot::{Snapshot, Zone};

/// How many CNAMEs are followed in one answer (NSD and Knot stop at a few as well).
const MAX_CHAIN: usize = 8;

/// The answer to one question in a zone with a zone file.
pub fn answer(snapshot: &Snapshot, zone: &Zone, qname: &Name, qtype: RecordType, tcp: bool) -> Answer {
    let mut out = Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let look = Lookup { snapshot, zone };
    if zone.wire.zone.expired && look.name(qname).is_none() {
        // A backend's copy that is missing or expired knows nothing of other names.
        return Answer::code(ResponseCode::ServFail);
    }
    let mut name = qname.clone();
    let mut seen = vec![LowerName::new(qname)];
    for _ in 0..MAX_CHAIN {
        let Some(target) = look.step(&name, qtype, tcp, &mut out) else {
            break;
        };
        let key = LowerName::new(&target);
        let same_zone = snapshot
            .find_zone(&key)
            .is_some_and(|z| Arc::ptr_eq(&z.wire.zone, &zone.wire.zone));
        if !same_zone || seen.contains(&key) {
            break;
        }
        seen.push(key);
        name = target;
    }
    dedup(&mut out.additional);
    out
}

/// One zone of one snapshot.
struct Lookup<'s> {
    snapshot: &'s Snapshot,
    zone: &'s Zone,
}

impl<'s> Lookup<'s> {
    /// The name's RRsets, when the name exists in this zone.
    fn name(&self, name: &Name) -> Option<&'s WireName> {
        let found = self.snapshot.compiled.names.get(wire_name(name).as_slice())?;
        Arc::ptr_eq(&found.zone, &self.zone.wire.zone).then_some(found)
    }

    /// Answers `name` into `out`; returns a CNAME's target to follow.
    fn step(&self, name: &Name, qtype: RecordType, tcp: bool, out: &mut Answer) -> Option<Name> {
        let apex_labels = self.zone.apex.num_labels();
        // Walk down from the apex: the first delegation on the way refers; the last name
        // that exists is the closest encloser.
        let mut encloser = None;
        for labels in apex_labels..=name.num_labels() {
            let candidate = name.trim_to(usize::from(labels));
            let Some(found) = self.name(&candidate) else { break };
            let at_cut = labels > apex_labels && found.set(u16::from(RecordType::NS)).is_some();
            // DS at a cut is the parent's data: answered here, authoritatively.
            if at_cut && !(labels == name.num_labels() && qtype == RecordType::DS) {
                self.referral(&candidate, found, out);
                return None;
            }
            encloser = Some((labels, found));
        }
        let (labels, found) = encloser?;
        if labels == name.num_labels() {
            return self.at_name(name, found, qtype, tcp, out);
        }
        let closest = name.trim_to(usize::from(labels));
        let wildcard = closest.prepend_label("*").ok().and_then(|w| self.name(&w));
        match wildcard {
            Some(source) => self.at_name(name, source, qtype, tcp, out),
            None => {
                out.rcode = ResponseCode::NXDomain;
                out.authority.extend(self.negative_soa(name));
                None
            }
        }
    }

    /// The answer at an existing name (or a wildcard's, owned by `owner`).
    fn at_name(
        &self,
        owner: &Name,
        found: &WireName,
        qtype: RecordType,
        tcp: bool,
        out: &mut Answer,
    ) -> Option<Name> {
        if qtype == RecordType::ANY {
            if !tcp {
                out.answers.push(rfc8482_hinfo(owner, self.zone));
                return None;
            }
            let all: Vec<Record> = found.sets.iter().flat_map(|(_, s)| s.records(owner)).collect();
            if all.is_empty() {
                out.authority.extend(self.negative_soa(owner));
            }
            out.answers.extend(all);
            return None;
        }
        if qtype != RecordType::CNAME
            && let Some(cname) = found.set(u16::from(RecordType::CNAME))
        {
            let records = cname.records(owner);
            let target = records.iter().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            });
            out.answers.extend(records);
            return target;
        }
        match found.set(u16::from(qtype)).filter(|s| s.count > 0) {
            Some(set) => {
                let records = set.records(owner);
                self.additional_for(&records, &mut out.additional);
                out.answers.extend(records);
            }
            None => out.authority.extend(self.negative_soa(owner)),
        }
        None
    }

    /// A referral to the delegation at `cut`: its NS records, and the glue for them.
    fn referral(&self, cut: &Name, found: &WireName, out: &mut Answer) {
        out.authoritative = !out.answers.is_empty();
        let Some(ns) = found.set(u16::from(RecordType::NS)) else {
            return;
        };
        let records = ns.records(cut);
        self.additional_for(&records, &mut out.additional);
        out.authority.extend(records);
    }

    /// A and AAAA records in this zone for the names MX, SRV, NS, SVCB and HTTPS records
    /// point to.
    fn additional_for(&self, records: &[Record], out: &mut Vec<Record>) {
        for record in records {
            let target = match &record.data {
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                RData::NS(ns) => &ns.0,
                // RFC 9460 4.1: the target's addresses (`.` means the owner's, already
                // answered or asked for).
                RData::SVCB(svcb) | RData::HTTPS(hickory_proto::rr::rdata::HTTPS(svcb)) => &svcb.target_name,
                _ => continue,
            };
            if !self.zone.apex.zone_of(target) {
                continue;
            }
            let Some(found) = self.name(target) else { continue };
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = found.set(u16::from(rtype)) {
                    out.extend(set.records(target));
                }
            }
        }
    }

    /// The SOA for a negative answer, owned by the apex as `name` spells it.
    fn negative_soa(&self, name: &Name) -> Option<Record> {
        let apex = name.trim_to(usize::from(self.zone.apex.num_labels()));
        self.zone.wire.zone.negative_soa(&apex)
    }
}

/// The same record added twice (two MX to one host) is sent once.
fn dedup(records: &mut Vec<Record>) {
    let mut kept: Vec<Record> = Vec::with_capacity(records.len());
    for r in records.drain(..) {
        if !kept.iter().any(|k| k.name == r.name && k.data == r.data) {
            kept.push(r);
        }
    }
    *records = kept;
}
