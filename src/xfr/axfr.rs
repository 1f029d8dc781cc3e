//! Serving a transfer request over TCP: access (source, TSIG), then the AXFR stream
//! (RFC 5936: SOA first and last, every record between, many records per message,
//! each message under [`MAX_MESSAGE`](super::records::MAX_MESSAGE)) or the IXFR one
//! ([`super::ixfr`]), every message signed when the request was (RFC 8945 5.3.1).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{LowerName, RData, RecordType};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use crate::logging::{Escaped, LogLimit};

use super::records::{DNSKEY, Packer, axfr_sequence, code_response, zone_records};
use super::{Counts, Transfer};
use crate::snapshot::{Snapshot, Zone};
use crate::tsig::{NOTAUTH, StreamSigner, Verdict, append_unsigned, verify_request};

/// Sends the response stream to a transfer request; the caller closes the connection
/// on an error.
pub async fn serve<W: AsyncWrite + Unpin>(
    out: &mut W,
    request: &[u8],
    src: SocketAddr,
    snapshot: Arc<Snapshot>,
    xfr: &Transfer,
) -> std::io::Result<()> {
    let messages = respond(request, src, &snapshot, xfr);
    drop(snapshot);
    count(xfr, &messages);
    for message in messages {
        let mut framed = Vec::with_capacity(message.len() + 2);
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(&message);
        out.write_all(&framed).await?;
    }
    out.flush().await
}

/// Counts a refusal (a response with an error code; served ones are counted where
/// their kind is known).
fn count(xfr: &Transfer, messages: &[Vec<u8>]) {
    if messages
        .first()
        .and_then(|m| m.get(3))
        .is_some_and(|b| b & 0x0f != 0)
    {
        Counts::add(&xfr.counts.refused);
    }
}

/// Refusals are logged a few per interval: one client can ask thousands a second.
static REFUSALS: LogLimit = LogLimit::new("transfer refusals");
/// Served transfers too: an allowed source can ask in a loop.
static SERVED: LogLimit = LogLimit::new("served transfers");

/// The request as the rules read it.
struct Request<'a> {
    bytes: &'a [u8],
    question: &'a [u8],
    parsed: Message,
    src: SocketAddr,
}

impl Request<'_> {
    fn code(&self, rcode: ResponseCode) -> Vec<Vec<u8>> {
        vec![code_response(self.bytes, self.question, rcode.low())]
    }
}

/// The messages answering a transfer request.
pub fn respond(bytes: &[u8], src: SocketAddr, snapshot: &Snapshot, xfr: &Transfer) -> Vec<Vec<u8>> {
    let Some(end) = super::question_name_end(bytes).map(|e| e + 4) else {
        return vec![code_response(bytes, &[], ResponseCode::FormErr.low())];
    };
    let question = &bytes[12..end.min(bytes.len())];
    let Ok(parsed) = Message::from_vec(bytes) else {
        return vec![code_response(bytes, question, ResponseCode::FormErr.low())];
    };
    let request = Request {
        bytes,
        question,
        parsed,
        src,
    };
    let query = request.parsed.queries[0].clone();
    let apex = LowerName::new(query.name());
    let Some(zone) = snapshot.zones.get(&apex).cloned() else {
        if REFUSALS.allow(src.ip()) {
            info!(%src, zone = %Escaped(query.name()), "transfer refused: not a zone spfd serves");
        }
        return request.code(ResponseCode::Refused);
    };
    if !xfr.allows(&zone.policy, src.ip()) {
        if REFUSALS.allow(src.ip()) {
            info!(%src, zone = %zone.apex, "transfer refused: source not in [transfer] allow");
        }
        return request.code(ResponseCode::Refused);
    }
    let mut signer = match authenticate(&request, &zone, xfr) {
        Ok(signer) => signer,
        Err(messages) => return messages,
    };
    if zone.wire.zone.macros.is_some() {
        if REFUSALS.allow(src.ip()) {
            info!(%src, zone = %zone.apex, "transfer refused: the zone is in SPF macro mode, its per-address names cannot be listed");
        }
        return sign_all(request.code(ResponseCode::Refused), &mut signer);
    }
    let Some((soa, records)) = zone_records(&zone) else {
        return sign_all(request.code(ResponseCode::ServFail), &mut signer);
    };
    if records.iter().any(|r| r.rtype() == DNSKEY) {
        // spfd signs online: the zone's RRsets hold its DNSKEY, but the signatures and
        // the denial of existence are made per answer and are not records of the zone.
        // A secondary given the DNSKEY without them would serve bogus answers.
        if REFUSALS.allow(src.ip()) {
            info!(%src, zone = %zone.apex, "transfer refused: the zone is DNSSEC-signed by spfd online, its signatures cannot be transferred; opt it out of spfd's signing and sign on the secondary");
        }
        return sign_all(request.code(ResponseCode::Refused), &mut signer);
    }
    let (kind, sequence) = if query.query_type() == RecordType::IXFR {
        match client_serial(&request.parsed) {
            Some(serial) => super::ixfr::sequence(xfr, &apex, serial, &soa, records),
            None => return sign_all(request.code(ResponseCode::FormErr), &mut signer),
        }
    } else {
        ("AXFR", axfr_sequence(&soa, records))
    };
    let mut packer = Packer::new(bytes, question);
    for record in &sequence {
        packer.push(record);
    }
    let messages = packer.finish();
    let whole = sequence.len() > 2 && sequence.first() == sequence.last() && kind != "IXFR";
    Counts::add(if whole { &xfr.counts.axfr } else { &xfr.counts.ixfr });
    if SERVED.allow(src.ip()) {
        info!(%src, zone = %zone.apex, serial = zone.serial, kind, records = sequence.len(), messages = messages.len(), signed = signer.is_some(), "transfer served");
    }
    sign_all(messages, &mut signer)
}

/// The serial of the SOA an IXFR request carries in its authority section.
fn client_serial(request: &Message) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

fn sign_all(mut messages: Vec<Vec<u8>>, signer: &mut Option<StreamSigner>) -> Vec<Vec<u8>> {
    if let Some(signer) = signer {
        for message in &mut messages {
            signer.sign(message, 0);
        }
    }
    messages
}

/// The TSIG rules (RFC 8945 5.2, as NSD and Knot apply them): a request must be signed
/// with the zone's key when it has one; a bad key or MAC is NOTAUTH with an unsigned
/// TSIG saying why, a bad time NOTAUTH signed; a good signature gets signed answers.
fn authenticate(
    request: &Request,
    zone: &Zone,
    xfr: &Transfer,
) -> Result<Option<StreamSigner>, Vec<Vec<u8>>> {
    let required = match xfr.key_for(&zone.policy) {
        Ok(key) => key,
        Err(e) => {
            if REFUSALS.allow(request.src.ip()) {
                warn!(zone = %zone.apex, "transfer refused: {e}");
            }
            return Err(request.code(ResponseCode::Refused));
        }
    };
    let src = request.src;
    let notauth = || code_response(request.bytes, request.question, NOTAUTH);
    match verify_request(request.bytes, &xfr.keys) {
        Verdict::Unsigned if required.is_some() => {
            if REFUSALS.allow(src.ip()) {
                info!(%src, zone = %zone.apex, "transfer refused: request not signed with the zone's TSIG key");
            }
            Err(vec![notauth()])
        }
        Verdict::Unsigned => Ok(None),
        Verdict::Signed { key, .. } if required.is_some_and(|r| r.name != key.name) => {
            if REFUSALS.allow(src.ip()) {
                info!(%src, zone = %zone.apex, key = %key.name, "transfer refused: signed with another key than the zone's");
            }
            let mut message = notauth();
            append_unsigned(&mut message, &key.name, &key.algorithm, TsigError::BadKey);
            Err(vec![message])
        }
        Verdict::Signed { key, mac } => Ok(Some(StreamSigner::new(key, mac))),
        Verdict::Failed {
            error: TsigError::BadTime,
            key: Some(key),
            mac,
            ..
        } => {
            if REFUSALS.allow(src.ip()) {
                info!(%src, zone = %zone.apex, "transfer refused: TSIG time outside the fudge (BADTIME)");
            }
            let mut message = notauth();
            StreamSigner::new(key, mac).sign(&mut message, u16::from(TsigError::BadTime));
            Err(vec![message])
        }
        Verdict::Failed {
            error, key_name, key, ..
        } => {
            if REFUSALS.allow(src.ip()) {
                info!(%src, zone = %zone.apex, key = %Escaped(&key_name), ?error, "transfer refused: TSIG check failed");
            }
            let algorithm = key.map_or(hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256, |k| {
                k.algorithm
            });
            let mut message = notauth();
            append_unsigned(&mut message, &key_name, &algorithm, error);
            Err(vec![message])
        }
    }
}
