//! A zone's records as transfers send them, read from the zone's wire form
//! ([`crate::snapshot::compiled::ZoneWire`], which holds every RRset the zone serves,
//! zone-file records included), and their packing into messages of a transfer stream.

use std::sync::Arc;

use crate::snapshot::Zone;

/// RR types a transfer treats specially.
pub const SOA: u16 = 6;
pub const AXFR: u16 = 252;
pub const IXFR: u16 = 251;
pub const DNSKEY: u16 = 48;

/// One record: its owner in lower-case wire form, then type, class, TTL, length and
/// data (names in the data written whole), ready to be copied into any message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireRecord {
    pub owner: Arc<[u8]>,
    pub tail: Box<[u8]>,
}

impl WireRecord {
    pub fn rtype(&self) -> u16 {
        u16::from_be_bytes([self.tail[0], self.tail[1]])
    }

    /// The serial of an SOA record.
    pub fn soa_serial(&self) -> Option<u32> {
        soa_serial(&self.tail)
    }

    fn len(&self) -> usize {
        self.owner.len() + self.tail.len()
    }
}

/// The serial of an SOA record's tail: the first of the five numbers that end its data.
pub fn soa_serial(tail: &[u8]) -> Option<u32> {
    let at = tail.len().checked_sub(20)?;
    Some(u32::from_be_bytes(tail.get(at..at + 4)?.try_into().ok()?))
}

/// Every record of a zone: its SOA and every other record (the SOA excluded), in no
/// particular order. `None` for a zone without an SOA (never built so).
pub fn zone_records(zone: &Zone) -> Option<(WireRecord, Vec<WireRecord>)> {
    let mut soa = None;
    let mut rest = Vec::new();
    for (owner, sets) in zone.wire.names.iter() {
        for (rtype, set) in sets.iter() {
            let mut bytes: &[u8] = &set.bytes;
            // Each record: a 2-octet pointer to the question, then its tail.
            while bytes.len() > 12 {
                let rdlen = usize::from(u16::from_be_bytes([bytes[10], bytes[11]]));
                let Some(tail) = bytes.get(2..12 + rdlen) else {
                    break;
                };
                let record = WireRecord {
                    owner: owner.clone(),
                    tail: tail.into(),
                };
                if *rtype == SOA {
                    soa = Some(record);
                } else {
                    rest.push(record);
                }
                bytes = &bytes[12 + rdlen..];
            }
        }
    }
    Some((soa?, rest))
}

/// SOA, every other record, SOA.
pub fn axfr_sequence(soa: &WireRecord, records: Vec<WireRecord>) -> Vec<WireRecord> {
    let mut out = Vec::with_capacity(records.len() + 2);
    out.push(soa.clone());
    out.extend(records);
    out.push(soa.clone());
    out
}

/// The largest message spfd sends in a transfer stream (NSD's choice: far below the
/// 64 KiB a TCP message may have, so a stream starts sending early and a TSIG record
/// always fits).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Room kept for the TSIG record of each message.
const TSIG_ROOM: usize = 256;

/// Packs records into the messages of one response stream: header with the request's
/// id and RD bit, AA set; the question in the first message only (RFC 5936 2.2.1).
pub struct Packer {
    id: [u8; 2],
    rd: u8,
    question: Vec<u8>,
    current: Vec<u8>,
    count: u16,
    pub messages: Vec<Vec<u8>>,
}

const HEADER: usize = 12;

impl Packer {
    /// `question`: the question section as the request spelled it.
    pub fn new(request: &[u8], question: &[u8]) -> Packer {
        let mut packer = Packer {
            id: [request[0], request[1]],
            rd: request[2] & 0x01,
            question: question.to_vec(),
            current: Vec::new(),
            count: 0,
            messages: Vec::new(),
        };
        packer.start(true);
        packer
    }

    fn start(&mut self, with_question: bool) {
        let mut header = vec![0u8; HEADER];
        header[..2].copy_from_slice(&self.id);
        header[2] = 0x84 | self.rd;
        if with_question {
            header[5] = 1;
            header.extend_from_slice(&self.question);
        }
        self.current = header;
        self.count = 0;
    }

    pub fn push(&mut self, record: &WireRecord) {
        if self.count > 0 && self.current.len() + record.len() + TSIG_ROOM > MAX_MESSAGE {
            self.flush();
            self.start(false);
        }
        self.current.extend_from_slice(&record.owner);
        self.current.extend_from_slice(&record.tail);
        self.count += 1;
    }

    fn flush(&mut self) {
        self.current[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.messages.push(std::mem::take(&mut self.current));
    }

    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.flush();
        self.messages
    }
}

/// A response without records: the request's id, opcode and question, `rcode`.
pub fn code_response(request: &[u8], question: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    out[..2].copy_from_slice(&request[..2]);
    out[2] = 0x80 | (request[2] & 0x79);
    out[3] = rcode & 0x0f;
    if !question.is_empty() {
        out[5] = 1;
        out.extend_from_slice(question);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_is_read_from_the_end_of_the_soa() {
        let mut tail = vec![0, 6, 0, 1, 0, 0, 0, 60, 0, 24, 0, 0];
        for v in [7u32, 3600, 900, 1_209_600, 300] {
            tail.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(soa_serial(&tail), Some(7));
        assert_eq!(soa_serial(&tail[..10]), None);
    }

    #[test]
    fn a_stream_is_cut_into_messages_under_the_limit_with_every_record_once() {
        let request = [0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let question = [4, b't', b'e', b's', b't', 0, 0, 252, 0, 1];
        let mut tail = vec![0, 16, 0, 1, 0, 0, 1, 44, 0x03, 0xe9, 0xff];
        tail.extend(std::iter::repeat_n(b'x', 0x3e8));
        let record = WireRecord {
            owner: Arc::from(&[1, b'a', 4, b't', b'e', b's', b't', 0][..]),
            tail: tail.into(),
        };
        let mut packer = Packer::new(&request, &question);
        for _ in 0..200 {
            packer.push(&record);
        }
        let messages = packer.finish();
        assert!(messages.len() >= 200 * 1000 / MAX_MESSAGE, "{}", messages.len());
        let mut total = 0;
        for (i, m) in messages.iter().enumerate() {
            assert!(m.len() + TSIG_ROOM <= MAX_MESSAGE, "message {i}: {}", m.len());
            assert_eq!(m[..2], [0x12, 0x34]);
            assert_eq!(m[2], 0x85, "QR, AA, RD copied");
            assert_eq!(
                u16::from_be_bytes([m[4], m[5]]),
                u16::from(i == 0),
                "question in the first only"
            );
            total += usize::from(u16::from_be_bytes([m[6], m[7]]));
        }
        assert_eq!(total, 200);
    }
}
