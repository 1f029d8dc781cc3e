//! The general query path: hickory's parser and encoder around the protocol rules:
//! opcode (NOTIMP; NOTIFY for backend zones, see [`super::notify`]), question count (FORMERR), EDNS version (BADVERS), the response OPT
//! with a payload of min(client's, 1232), and TC over UDP when the answer does not fit
//! (the full answer goes over TCP). Used for every TCP query and for the UDP queries
//! the fast path ([`super::wire`]) passes on; over UDP the worker's rate limiter
//! ([`super::rrl`]) decides on an answer before it is signed.

use std::net::SocketAddr;

use hickory_net::xfer::Protocol;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::answer::{Answer, answer};
use super::dnssec::Shaped;
use super::rrl::{Class, Limiter, Verdict};
use super::{CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD};
use crate::dnssec::unix_now;
use crate::snapshot::Snapshot;

/// Octets of a header, of an OPT record without options, and of a resource record's
/// fixed part (type, class, TTL, length).
const HEADER_LEN: usize = 12;
const OPT_LEN: usize = 11;
const RR_FIXED_LEN: usize = 10;

/// The response to a request: header, sections (truncation applied for UDP) and our OPT;
/// `None` when the rate limiter (UDP only) drops it. The limiter sees the answer before
/// its signatures are made.
pub fn plan(
    snapshot: &Snapshot,
    request: &Request,
    limiter: Option<&mut Limiter>,
) -> Option<(Metadata, Answer, Option<Edns>)> {
    let response_edns = request.edns.as_ref().map(response_edns);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    let shaped = decide(snapshot, request, &mut metadata);
    metadata.response_code = shaped.answer.rcode;
    metadata.authoritative = shaped.answer.authoritative;
    if let Some(limiter) = limiter {
        let mut zone = [0; 255];
        let class = rrl_class(&shaped.answer, request.queries.as_bytes(), &mut zone);
        match limiter.check_class(request.src().ip(), class) {
            Verdict::Send => {}
            Verdict::Slip => {
                metadata.truncation = true;
                return Some((metadata, Answer::code(shaped.answer.rcode), response_edns));
            }
            Verdict::Drop => return None,
        }
    }
    let answer = shaped.sign(unix_now());
    if request.protocol() == Protocol::Udp {
        let limit = response_edns
            .as_ref()
            .map_or(CLASSIC_UDP_PAYLOAD, Edns::max_payload) as usize;
        let question = request.queries.as_bytes().len();
        if response_len(question, &answer, response_edns.is_some()) > limit {
            // Additional records are optional (RFC 2181 9): dropped before truncating;
            // but not a referral's glue (RFC 9471: TC instead).
            let droppable = !answer.additional.is_empty() && !is_referral(&answer);
            let without_additional = Answer {
                additional: Vec::new(),
                ..answer
            };
            if droppable && response_len(question, &without_additional, response_edns.is_some()) <= limit {
                return Some((metadata, without_additional, response_edns));
            }
            metadata.truncation = true;
            let empty = Answer {
                answers: Vec::new(),
                authority: Vec::new(),
                ..without_additional
            };
            return Some((metadata, empty, response_edns));
        }
    }
    Some((metadata, answer, response_edns))
}

/// What the request gets, as its zone gives it but not signed yet.
fn decide<'s>(snapshot: &'s Snapshot, request: &Request, metadata: &mut Metadata) -> Shaped<'s> {
    if request.metadata.op_code == OpCode::Notify {
        let answer = match request.request_info() {
            Ok(info) => super::notify::answer(
                snapshot,
                info.query.original().name(),
                request.src().ip(),
                request.as_slice(),
            ),
            Err(_) => Answer::code(ResponseCode::FormErr),
        };
        return Shaped::unsigned(answer);
    }
    if request.metadata.op_code != OpCode::Query {
        return Shaped::unsigned(not_implemented(metadata));
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Shaped::unsigned(Answer::code(ResponseCode::BADVERS));
    }
    let Ok(info) = request.request_info() else {
        return Shaped::unsigned(Answer::code(ResponseCode::FormErr));
    };
    let query = info.query.original();
    let tcp = info.protocol != Protocol::Udp;
    let a = answer(
        snapshot,
        query.name(),
        query.query_type(),
        query.query_class(),
        tcp,
    );
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let shaped = super::dnssec::shape(snapshot, query.name(), query.query_type(), a, dnssec_ok);
    debug!(name = %crate::logging::Escaped(query.name()), qtype = %query.query_type(), rcode = %shaped.answer.rcode, generation = snapshot.generation, "query");
    shaped
}

/// The rate limiter's class of an answer not yet signed: a compact denial by what it
/// denies (NXNAME in its NSEC: a name that does not exist), NXDOMAIN and NODATA by the
/// zone (the owner of the SOA in authority, copied into `zone`).
fn rrl_class<'a>(answer: &Answer, question: &'a [u8], zone: &'a mut [u8; 255]) -> Class<'a> {
    let soa = answer
        .authority
        .first()
        .filter(|r| r.record_type() == RecordType::SOA)
        .and_then(|soa| wire_into(&soa.name, zone));
    match answer.rcode {
        ResponseCode::NXDomain => soa.map_or(Class::Error, Class::NxDomain),
        ResponseCode::NoError if answer.answers.is_empty() => match soa {
            Some(zone) if answer.authority.iter().any(denies_name) => Class::NxDomain(zone),
            Some(zone) => Class::NoData(zone),
            None => Class::Question(question),
        },
        ResponseCode::NoError => Class::Question(question),
        _ => Class::Error,
    }
}

/// An NSEC with NXNAME in its bitmap (RFC 9824: the name does not exist).
fn denies_name(record: &Record) -> bool {
    match &record.data {
        RData::DNSSEC(DNSSECRData::NSEC(nsec)) => nsec
            .type_bit_maps()
            .any(|t| u16::from(t) == crate::dnssec::TYPE_NXNAME),
        _ => false,
    }
}

/// `name` in wire format, written into `out`.
fn wire_into<'o>(name: &Name, out: &'o mut [u8; 255]) -> Option<&'o [u8]> {
    let mut len = 0;
    for label in name.iter() {
        let end = len + 1 + label.len();
        *out.get_mut(len)? = label.len() as u8;
        out.get_mut(len + 1..end)?.copy_from_slice(label);
        len = end;
    }
    *out.get_mut(len)? = 0;
    Some(&out[..len + 1])
}

/// A referral: no answer, not authoritative, the delegation's NS in authority.
fn is_referral(answer: &Answer) -> bool {
    !answer.authoritative && answer.answers.is_empty() && !answer.authority.is_empty()
}

/// NOTIMP for an opcode other than QUERY. RD and CD are defined for QUERY only, so they
/// are not echoed (ISC's genreport checks this).
fn not_implemented(metadata: &mut Metadata) -> Answer {
    metadata.recursion_desired = false;
    metadata.checking_disabled = false;
    Answer::code(ResponseCode::NotImp)
}

/// The general path: hickory's parser and encoder around [`plan`], for TCP and for the
/// UDP datagrams the fast path passed on. `None` when nothing must be sent (a response,
/// a runt).
pub fn respond_general(
    snapshot: &Snapshot,
    bytes: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    respond_with(snapshot, bytes, src, protocol, None)
}

/// [`respond_general`] over UDP past a UDP worker's rate limiter; `None` also when the
/// limiter drops the answer.
pub fn respond_limited(
    snapshot: &Snapshot,
    bytes: &[u8],
    src: SocketAddr,
    limiter: &mut Limiter,
) -> Option<Vec<u8>> {
    respond_with(snapshot, bytes, src, Protocol::Udp, Some(limiter))
}

fn respond_with(
    snapshot: &Snapshot,
    bytes: &[u8],
    src: SocketAddr,
    protocol: Protocol,
    limiter: Option<&mut Limiter>,
) -> Option<Vec<u8>> {
    let request = match super::scan::defect(bytes) {
        Some(_) => None,
        None => Request::from_bytes(bytes.to_vec(), src, protocol).ok(),
    };
    let Some(request) = request else {
        let mut response = formerr(bytes)?;
        if let Some(limiter) = limiter {
            limiter.apply(src.ip(), &mut response);
        }
        return (!response.is_empty()).then_some(response);
    };
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let (metadata, answer, edns) = plan(snapshot, &request, limiter)?;
    let mut builder = MessageResponseBuilder::from_message_request(&request);
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let response = builder.build(
        metadata,
        answer.answers.iter(),
        answer.authority.iter(),
        None,
        answer.additional.iter(),
    );
    let mut out = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_max_size(match protocol {
        Protocol::Udp => edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, Edns::max_payload),
        _ => u16::MAX,
    });
    if response.destructive_emit(&mut encoder).is_err() {
        // Over UDP, the echo of many questions in a FORMERR can exceed the limit on its
        // own (found by fuzzing: UDP stayed silent where TCP said FORMERR).
        return code_only(metadata, edns);
    }
    Some(out)
}

/// The response code alone, with our OPT (which carries an extended code's high bits)
/// and no sections: for a response too large even without records.
fn code_only(metadata: Metadata, edns: Option<Edns>) -> Option<Vec<u8>> {
    let mut message = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    message.metadata = metadata;
    if let Some(edns) = edns {
        message.set_edns(edns);
    }
    message.to_vec().ok()
}

/// FORMERR for a message whose header is readable but the rest is not (as hickory's
/// server does): id and opcode copied, RD too for QUERY, no sections (so nothing of
/// the malformed part is echoed).
fn formerr(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&bytes[..2]);
    let opcode = bytes[2] & 0x78;
    let rd = if opcode == 0 { bytes[2] & 0x01 } else { 0 };
    out[2] = 0x80 | opcode | rd;
    out[3] = ResponseCode::FormErr.low();
    Some(out)
}

/// Our OPT: payload min(client's, 1232) (a client offering less than 512 gets 512, RFC
/// 6891 6.2.5), version 0, the DO bit copied (RFC 3225).
fn response_edns(request: &Edns) -> Edns {
    let mut edns = Edns::new();
    let payload = request.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
    edns.set_max_payload(payload);
    edns.set_version(0);
    edns.set_dnssec_ok(request.flags().dnssec_ok);
    edns
}

/// The encoded size of a response (an upper bound: names are counted uncompressed).
fn response_len(question: usize, answer: &Answer, edns: bool) -> usize {
    let records = answer
        .answers
        .iter()
        .chain(&answer.authority)
        .chain(&answer.additional);
    HEADER_LEN + question + records.map(record_len).sum::<usize>() + if edns { OPT_LEN } else { 0 }
}

/// A record's encoded size, its owner name counted whole: hickory 0.26 does not compress
/// answer owners against the question (its question pointer covers name, type and
/// class), so counting a 2-octet pointer would underestimate and let the encoder cut
/// a record in half.
fn record_len(record: &Record) -> usize {
    let rdata = match &record.data {
        RData::TXT(txt) => txt.txt_data.iter().map(|s| 1 + s.len()).sum(),
        other => other.to_bytes().map_or(0, |b| b.len()),
    };
    let owner: usize = record.name.iter().map(|l| 1 + l.len()).sum::<usize>() + 1;
    owner + RR_FIXED_LEN + rdata
}
