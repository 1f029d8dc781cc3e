//! The sections of a response as [`super::answer`] and [`super::full_zone`] decide them,
//! before EDNS and truncation.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{Name, RData, Record};

use crate::snapshot::Zone;

/// The sections of a response, before EDNS and truncation.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// Glue and the addresses of MX, SRV and NS targets (zones with a zone file only).
    pub additional: Vec<Record>,
}

impl Answer {
    pub fn refused() -> Self {
        Self::code(ResponseCode::Refused)
    }

    pub fn code(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }
}

/// RFC 8482 4.2: a synthesised HINFO instead of every RRset, for ANY over UDP.
pub fn rfc8482_hinfo(qname: &Name, zone: &Zone) -> Record {
    Record::from_rdata(
        qname.clone(),
        zone.ttl,
        RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
    )
}
