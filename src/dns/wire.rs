//! The UDP fast path: a query parsed in place and answered from the compiled snapshot
//! with copies of ready-made bytes, no allocation. Anything unusual (another opcode or
//! class, ANY, zone transfer, several questions, options other than a plain OPT, a
//! malformed message) goes to the general path, which speaks the same protocol through
//! hickory's parser and encoder.

use crate::snapshot::Snapshot;
use crate::snapshot::compiled::{WireMacros, WireName, WireSet, WireZone};
use crate::snapshot::macro_table::{CLIENT_TERM_MAX, Hit};

use super::{CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD};

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const TYPE_TXT: u16 = 16;
const TYPE_NS: u16 = 2;
/// MX, SRV, NS, SVCB, HTTPS: answers that carry their targets' addresses.
const TYPES_WITH_ADDITIONAL: [u16; 5] = [15, 33, 2, 64, 65];
const CLASS_IN: u16 = 1;
const TYPE_NXNAME: u16 = crate::dnssec::TYPE_NXNAME;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_REFUSED: u8 = 5;
/// Query types the fast path leaves to the general one: ANY, AXFR, IXFR, OPT and the
/// other meta types.
const META_TYPES: [u16; 6] = [255, 252, 251, 41, 250, 249];

/// What to do with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response is in the output buffer.
    Answered,
    /// Let the general path answer.
    General,
    /// Not a query (a response, or shorter than a header): no answer at all.
    Drop,
}

/// A query as read from the wire.
struct Question {
    /// The name lower-cased, in wire format, root label included.
    name: [u8; 255],
    name_len: usize,
    /// Where each label starts in `name`.
    labels: [u8; 128],
    label_count: usize,
    qtype: u16,
    /// End of the question section in the request.
    end: usize,
    /// The OPT's payload, when the query has one.
    edns: Option<Edns>,
}

#[derive(Clone, Copy)]
struct Edns {
    payload: u16,
    dnssec_ok: bool,
}

impl Question {
    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// The name without its first `n` labels.
    fn suffix(&self, n: usize) -> &[u8] {
        &self.name[usize::from(self.labels[n])..self.name_len]
    }
}

/// Answers `request` into `out` when the fast path can.
pub fn respond(snapshot: &Snapshot, request: &[u8], out: &mut Vec<u8>) -> Outcome {
    if request.len() < HEADER || request[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let Some(q) = parse(request) else {
        return Outcome::General;
    };
    out.clear();
    let compiled = &snapshot.compiled;
    let (name, labels_above) = match compiled.names.get(q.name()) {
        Some(name) => (Some(name), 0),
        None => match enclosing(snapshot, &q) {
            Some((name, above)) => (Some(name), above),
            None => (None, 0),
        },
    };
    let Some(name) = name else {
        write_header(out, request, 0, RCODE_REFUSED, [0, 0], q.edns.is_some());
        finish(out, request, &q, &[], None);
        return Outcome::Answered;
    };
    let zone = &name.zone;
    if let Some(signed) = &zone.dnssec
        && (q.edns.is_some_and(|e| e.dnssec_ok) || q.qtype == TYPE_NXNAME)
    {
        if zone.full {
            // A zone file's zone, signed: referrals, CNAME chains and wildcards need
            // the general path's proofs.
            return Outcome::General;
        }
        // DNSSEC: a static RRset gets its precomputed RRSIGs here; everything else
        // (denial, macro answers, NXNAME) is signed on the general path.
        let set = name.set(q.qtype).filter(|s| s.count > 0 && labels_above == 0);
        let now = crate::dnssec::unix_now();
        match set.zip(signed.wire_signatures(q.name(), q.qtype, now)) {
            Some((set, sigs)) => {
                let count = set.count.saturating_add(sigs.count);
                write_header(out, request, 0x04, 0, [count, 0], true);
                finish_parts(out, request, &q, &[&set.bytes, &sigs.bytes], None);
                return Outcome::Answered;
            }
            None => return Outcome::General,
        }
    }
    if zone.full {
        // A zone file's zone: an RRset at an existing name is answered here; referrals,
        // CNAME chains, wildcards, additional records and negative answers are the
        // general path's.
        return match plain_set(snapshot, &q, name, labels_above) {
            Some(set) => {
                positive(out, request, &q, set, zone);
                Outcome::Answered
            }
            None => Outcome::General,
        };
    }
    if labels_above == 0 {
        answer_at(out, request, &q, name, zone);
        return Outcome::Answered;
    }
    // Below a name of the zone: a macro answer (or NODATA for other types), or NXDOMAIN.
    match macro_hit(&q, zone) {
        Some((macros, Some(hit))) => {
            let (mut term, mut rdlength) = ([0u8; 1 + CLIENT_TERM_MAX], [0u8; 2]);
            // Only an index out of the table's range (a bug) has no parts: the general
            // path then answers as it can.
            let Some((count, parts)) = macros.parts(hit, &mut term, &mut rdlength) else {
                return Outcome::General;
            };
            write_header(out, request, 0x04, 0, [count, 0], q.edns.is_some());
            finish_parts(out, request, &q, &parts, None);
        }
        Some((_, None)) => negative(out, request, &q, zone, 0),
        None => negative(out, request, &q, zone, RCODE_NXDOMAIN),
    }
    Outcome::Answered
}

/// In a zone with a zone file: the query's own RRset when it is the whole answer (the
/// name exists, the type has no additional records to find, no delegation at or above
/// the name).
fn plain_set<'s>(
    snapshot: &Snapshot,
    q: &Question,
    name: &'s WireName,
    labels_above: usize,
) -> Option<&'s WireSet> {
    if labels_above != 0 || TYPES_WITH_ADDITIONAL.contains(&q.qtype) {
        return None;
    }
    let set = name.set(q.qtype).filter(|s| s.count > 0)?;
    let below_apex = (q.label_count - 1).saturating_sub(usize::from(name.zone.apex_labels));
    let delegated = (0..below_apex).any(|n| {
        snapshot.compiled.names.get(q.suffix(n)).is_some_and(|found| {
            std::sync::Arc::ptr_eq(&found.zone, &name.zone) && found.set(TYPE_NS).is_some()
        })
    });
    (!delegated).then_some(set)
}

/// The closest existing name above the query's, and how many labels above it is.
fn enclosing<'s>(snapshot: &'s Snapshot, q: &Question) -> Option<(&'s WireName, usize)> {
    (1..q.label_count).find_map(|n| snapshot.compiled.names.get(q.suffix(n)).map(|name| (name, n)))
}

fn answer_at(out: &mut Vec<u8>, request: &[u8], q: &Question, name: &WireName, zone: &WireZone) {
    match name.set(q.qtype) {
        Some(set) => positive(out, request, q, set, zone),
        None => negative(out, request, q, zone, 0),
    }
}

/// Macro mode: every name under `in-addr.<apex>` and `ip6.<apex>` exists. The hit is
/// `None` for types other than TXT (NODATA).
fn macro_hit<'z>(q: &Question, zone: &'z WireZone) -> Option<(&'z WireMacros, Option<Hit>)> {
    let macros = zone.macros.as_ref()?;
    // The label just under the apex is in-addr or ip6; the labels left of it spell
    // the address.
    let below = (q.label_count - 1).checked_sub(usize::from(zone.apex_labels) + 1)?;
    let v6 = match label(q, below) {
        b"ip6" => true,
        b"in-addr" => false,
        _ => return None,
    };
    if q.qtype != TYPE_TXT {
        return Some((macros, None));
    }
    let hit = macros
        .table
        .answer_for_labels(v6, (0..below).map(|i| label(q, i)));
    Some((macros, Some(hit)))
}

fn label(q: &Question, i: usize) -> &[u8] {
    let start = usize::from(q.labels[i]);
    let len = usize::from(q.name[start]);
    &q.name[start + 1..start + 1 + len]
}

fn positive(out: &mut Vec<u8>, request: &[u8], q: &Question, set: &WireSet, zone: &WireZone) {
    if set.count == 0 {
        return negative(out, request, q, zone, 0);
    }
    write_header(out, request, 0x04, 0, [set.count, 0], q.edns.is_some());
    finish(out, request, q, &set.bytes, None);
}

fn negative(out: &mut Vec<u8>, request: &[u8], q: &Question, zone: &WireZone, rcode: u8) {
    write_header(out, request, 0x04, rcode, [0, 1], q.edns.is_some());
    // The SOA's owner is the apex: where its labels start in the question.
    let apex_at = q.label_count - 1 - usize::from(zone.apex_labels);
    let pointer = 0xc000 | (HEADER as u16 + u16::from(q.labels[apex_at]));
    finish(out, request, q, &[], Some((pointer, &zone.soa_tail)));
}

/// Header with the request's id, opcode QUERY, RD and CD copied; `aa` is 0x04 or 0.
fn write_header(out: &mut Vec<u8>, request: &[u8], aa: u8, rcode: u8, counts: [u16; 2], edns: bool) {
    out.extend_from_slice(&request[..2]);
    out.push(0x80 | aa | (request[2] & 0x01));
    out.push((request[3] & 0x10) | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&counts[0].to_be_bytes());
    out.extend_from_slice(&counts[1].to_be_bytes());
    out.extend_from_slice(&u16::from(edns).to_be_bytes());
}

/// The question (as asked), the sections, our OPT; then truncation if it does not fit.
fn finish(out: &mut Vec<u8>, request: &[u8], q: &Question, answers: &[u8], authority: Option<(u16, &[u8])>) {
    finish_parts(out, request, q, &[answers], authority)
}

/// [`finish`] with the answer section in parts (an RRset, then its RRSIGs).
fn finish_parts(
    out: &mut Vec<u8>,
    request: &[u8],
    q: &Question,
    answers: &[&[u8]],
    authority: Option<(u16, &[u8])>,
) {
    out.extend_from_slice(&request[HEADER..q.end]);
    for part in answers {
        out.extend_from_slice(part);
    }
    if let Some((pointer, tail)) = authority {
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(tail);
    }
    let limit = match q.edns {
        Some(e) => usize::from(e.payload.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)),
        None => usize::from(CLASSIC_UDP_PAYLOAD),
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    if out.len() + opt_len > limit {
        // TC, and no records: the client asks again over TCP.
        out.truncate(q.end);
        out[2] |= 0x02;
        out[6..10].fill(0);
    }
    if let Some(e) = q.edns {
        let payload = e.payload.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
}

/// Reads the question and an optional plain OPT; `None` sends the query to the general
/// path.
fn parse(request: &[u8]) -> Option<Question> {
    let opcode = (request[2] >> 3) & 0x0f;
    let counts = |i: usize| u16::from_be_bytes([request[4 + 2 * i], request[5 + 2 * i]]);
    if opcode != 0 || counts(0) != 1 || counts(1) != 0 || counts(2) != 0 || counts(3) > 1 {
        return None;
    }
    let mut q = Question {
        name: [0; 255],
        name_len: 0,
        labels: [0; 128],
        label_count: 0,
        qtype: 0,
        end: 0,
        edns: None,
    };
    let mut at = HEADER;
    loop {
        let len = usize::from(*request.get(at)?);
        if len & 0xc0 != 0 || q.name_len + 1 + len > 255 || q.label_count == 128 {
            return None;
        }
        q.labels[q.label_count] = q.name_len as u8;
        q.label_count += 1;
        q.name[q.name_len] = len as u8;
        let label = request.get(at + 1..at + 1 + len)?;
        for (i, b) in label.iter().enumerate() {
            q.name[q.name_len + 1 + i] = b.to_ascii_lowercase();
        }
        q.name_len += 1 + len;
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let fixed = request.get(at..at + 4)?;
    q.qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    if qclass != CLASS_IN || META_TYPES.contains(&q.qtype) {
        return None;
    }
    q.end = at + 4;
    if counts(3) == 1 {
        q.edns = Some(parse_opt(request.get(q.end..)?)?);
    } else if request.len() != q.end {
        return None;
    }
    Some(q)
}

/// A root-owned OPT of version 0 taking the rest of the message.
fn parse_opt(rr: &[u8]) -> Option<Edns> {
    if rr.len() < 11 || rr[0] != 0 || u16::from_be_bytes([rr[1], rr[2]]) != TYPE_OPT {
        return None;
    }
    let version = rr[6];
    let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
    if version != 0 || rr.len() != 11 + rdlen {
        return None;
    }
    // Options are ignored, but only well-formed ones that hickory would not parse
    // either: anything else is the general path's to judge (an option
    // running past the OPT was answered here and refused over TCP).
    if super::scan::options(&rr[11..])? {
        return None;
    }
    Some(Edns {
        payload: u16::from_be_bytes([rr[3], rr[4]]),
        dnssec_ok: rr[7] & 0x80 != 0,
    })
}
