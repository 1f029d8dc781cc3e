//! Query and response counts for the metrics: each UDP worker counts into its own
//! block of relaxed atomics on its own cache lines (no worker touches another's, so
//! counting shares nothing on the query path), TCP into one block of its own; a scrape
//! sums the blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Query counts summed over every worker at scrape time: by (proto, qtype), and
/// responses by rcode.
#[derive(Debug, Default, Clone)]
pub struct QueryCounts {
    pub requests: Vec<((&'static str, String), u64)>,
    pub responses: Vec<(String, u64)>,
}

/// The query types counted by name; every other type is counted as `other`.
const QTYPES: [(u16, &str); 13] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (43, "DS"),
    (48, "DNSKEY"),
    (252, "AXFR"),
    (255, "ANY"),
];
const OTHER: usize = QTYPES.len();
const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];

#[derive(Debug, Clone, Copy)]
pub enum Proto {
    Udp,
    Tcp,
}

/// One counter block.
#[derive(Debug)]
#[repr(align(128))]
pub struct Block {
    requests: [[AtomicU64; OTHER + 1]; 2],
    responses: [AtomicU64; 16],
}

impl Default for Block {
    fn default() -> Self {
        Block {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Block {
    /// Counts one query and, when one was sent, its response (any thread).
    #[inline]
    pub fn count(&self, proto: Proto, request: &[u8], response: &[u8]) {
        let qtype = qtype_index(request);
        self.requests[proto as usize][qtype].fetch_add(1, Ordering::Relaxed);
        if let Some(flags) = response.get(3) {
            self.responses[usize::from(flags & 0x0f)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`Block::count`] for a block only its own thread writes (a UDP worker's): a load
    /// and a store instead of a locked read-modify-write; a scrape still reads whole
    /// values.
    #[inline]
    pub fn count_own(&self, proto: Proto, request: &[u8], response: &[u8]) {
        let bump =
            |counter: &AtomicU64| counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        bump(&self.requests[proto as usize][qtype_index(request)]);
        if let Some(flags) = response.get(3) {
            bump(&self.responses[usize::from(flags & 0x0f)]);
        }
    }
}

/// The index of the query's type in [`QTYPES`] (or `OTHER`), read past the question
/// name without decoding it; anything malformed is `other`.
fn qtype_index(request: &[u8]) -> usize {
    let mut at = 12;
    loop {
        match request.get(at) {
            Some(0) => break,
            Some(&len) if len < 64 => at += 1 + usize::from(len),
            _ => return OTHER,
        }
    }
    let Some(bytes) = request.get(at + 1..at + 3) else {
        return OTHER;
    };
    let qtype = u16::from_be_bytes([bytes[0], bytes[1]]);
    QTYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(OTHER)
}

/// Every block, for the scrape.
#[derive(Debug, Default)]
pub struct QueryStats {
    blocks: Mutex<Vec<Arc<Block>>>,
}

impl QueryStats {
    /// A new block for one worker (taken at spawn, never on the query path).
    pub fn block(&self) -> Arc<Block> {
        let block = Arc::new(Block::default());
        self.blocks.lock().expect("stats lock").push(block.clone());
        block
    }

    /// The counts summed over every block.
    pub fn sum(&self) -> QueryCounts {
        let blocks = self.blocks.lock().expect("stats lock").clone();
        let mut counts = QueryCounts::default();
        for (p, proto) in ["udp", "tcp"].into_iter().enumerate() {
            for q in 0..=OTHER {
                let n: u64 = blocks
                    .iter()
                    .map(|b| b.requests[p][q].load(Ordering::Relaxed))
                    .sum();
                if n > 0 {
                    let name = QTYPES.get(q).map_or("other", |(_, name)| name);
                    counts.requests.push(((proto, name.to_string()), n));
                }
            }
        }
        for (r, name) in RCODES.iter().enumerate() {
            let n: u64 = blocks
                .iter()
                .map(|b| b.responses[r].load(Ordering::Relaxed))
                .sum();
            if n > 0 || r == 0 {
                counts.responses.push((name.to_string(), n));
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_type_past_the_name() {
        let mut q = vec![0u8; 12];
        q.extend([
            4, b'_', b's', b'p', b'f', 4, b't', b'e', b's', b't', 0, 0, 16, 0, 1,
        ]);
        assert_eq!(QTYPES[qtype_index(&q)].1, "TXT");
        q[23] = 99;
        assert_eq!(qtype_index(&q), OTHER);
        assert_eq!(qtype_index(&q[..14]), OTHER, "truncated");
        let stats = QueryStats::default();
        let block = stats.block();
        q[23] = 0;
        block.count(Proto::Udp, &q, &[0, 0, 0x84, 0x03]);
        block.count(Proto::Tcp, &q, &[]);
        block.count_own(Proto::Udp, &q, &[0, 0, 0x84, 0x00]);
        let sum = stats.sum();
        assert!(sum.requests.contains(&(("udp", "TXT".to_string()), 2)));
        assert!(sum.requests.contains(&(("tcp", "TXT".to_string()), 1)));
        assert!(sum.responses.contains(&("NXDOMAIN".to_string(), 1)));
        assert!(sum.responses.contains(&("NOERROR".to_string(), 1)));
    }
}
