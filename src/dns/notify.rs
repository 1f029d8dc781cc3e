//! NOTIFY (RFC 1996) for zones served from a backend: accepted only from the backend's
//! address and only for the zone's apex, answered with the question and AA, and passed
//! to the transfer task, which checks the backend's serial at once. Every other NOTIFY
//! is refused (as NSD and Knot refuse one from a host not in allow-notify).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name};

use super::sections::Answer;
use crate::snapshot::Snapshot;

/// The answer to a NOTIFY for `qname` from `source`.
pub fn answer(snapshot: &Snapshot, qname: &Name, source: IpAddr) -> Answer {
    let apex = LowerName::new(qname);
    let Some(zone) = snapshot.zones.get(&apex) else {
        return Answer::code(ResponseCode::NotAuth);
    };
    match zone.policy.backend {
        Some(backend) if backend.ip() == source => {
            crate::backend::notified(&apex);
            Answer {
                authoritative: true,
                ..Answer::code(ResponseCode::NoError)
            }
        }
        _ => Answer::refused(),
    }
}
