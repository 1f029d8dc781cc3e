//! NOTIFY (RFC 1996) for zones served from a backend: accepted only from the backend's
//! address and only for the zone's apex, answered with the question and AA, and passed
//! to the transfer task, which checks the backend's serial (NOTIFYs are coalesced
//! there). Every other NOTIFY is refused (as NSD and Knot refuse one from a host not in
//! allow-notify). With `backend_tsig`, a NOTIFY must be signed with that key: an
//! unsigned one is refused, a wrongly signed one answered NOTAUTH (RFC 8945 5.2), and
//! neither reaches the transfer task. The answer to a signed NOTIFY is signed where
//! every TSIG answer is ([`crate::tsig::sign_reply`]).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name};

use super::sections::Answer;
use crate::snapshot::Snapshot;
use crate::tsig::{Verdict, verify_request_with};

/// The answer to the NOTIFY `message` for `qname` from `source`.
pub fn answer(snapshot: &Snapshot, qname: &Name, source: IpAddr, message: &[u8]) -> Answer {
    let apex = LowerName::new(qname);
    let Some(zone) = snapshot.zones.get(&apex) else {
        return Answer::code(ResponseCode::NotAuth);
    };
    match zone.policy.backend {
        Some(backend) if backend.ip() == source => {}
        _ => return Answer::refused(),
    }
    if let Some(key) = &zone.policy.backend_tsig {
        match verify_request_with(message, key) {
            Verdict::Signed { .. } => {}
            Verdict::Unsigned => return Answer::refused(),
            Verdict::Failed { .. } => return Answer::code(ResponseCode::NotAuth),
        }
    }
    crate::backend::notified(&apex);
    Answer {
        authoritative: true,
        ..Answer::code(ResponseCode::NoError)
    }
}
