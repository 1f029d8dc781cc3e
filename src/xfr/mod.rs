//! Outgoing zone transfers and NOTIFY: AXFR (RFC 5936) and IXFR (RFC 1995) of every
//! finite zone over TCP ([`axfr`], [`ixfr`]), from the records the snapshot serves
//! ([`records`]) and the differences between recent versions ([`journal`]); NOTIFY
//! (RFC 1996) to the secondaries on every serial change ([`notify`]), sent by a
//! service of its own that the reload service hands each swap to without waiting.
//!
//! Who may transfer and who is notified comes from `[transfer]` in the server config,
//! narrowed by a policy's own `[transfer]` table; transfers and NOTIFY are signed with
//! TSIG ([`crate::tsig`]) when a key is named.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::transfer::TransferConfig;
use crate::policy::ValidPolicy;
use crate::tsig::{Keyring, TsigKey};

pub mod axfr;
pub mod ixfr;
pub mod journal;
pub mod notify;
pub mod records;

pub use journal::Journal;

/// What the TCP server and the NOTIFY service share: the settings, the journal and
/// the counters.
#[derive(Debug)]
pub struct Transfer {
    pub config: TransferConfig,
    pub keys: Keyring,
    pub journal: Journal,
    pub counts: Arc<Counts>,
}

/// Transfers and NOTIFYs since start, for the metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Transfers served as AXFR (IXFR requests answered with the whole zone included).
    pub axfr: AtomicU64,
    /// IXFR responses with differences (or the SOA alone, for a current secondary).
    pub ixfr: AtomicU64,
    /// Requests refused: source, TSIG, macro or signed zone, unknown zone.
    pub refused: AtomicU64,
    pub notify_acknowledged: AtomicU64,
    /// NOTIFY attempts a secondary did not acknowledge (each retry counts).
    pub notify_unanswered: AtomicU64,
}

impl Counts {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Transfer {
    pub fn new(config: TransferConfig, keys: Keyring) -> Arc<Transfer> {
        Arc::new(Transfer {
            config,
            keys,
            journal: Journal::new(journal::DEFAULT_DEPTH),
            counts: Arc::default(),
        })
    }

    /// Whether `ip` may transfer the zone of `policy`: in the server's `allow`, and in
    /// the policy's when it has one.
    pub fn allows(&self, policy: &ValidPolicy, ip: IpAddr) -> bool {
        let narrowed = policy
            .transfer
            .as_ref()
            .and_then(|t| t.allow.as_ref())
            .is_none_or(|allow| allow.iter().any(|net| net.contains(&ip)));
        self.config.allows(ip) && narrowed
    }

    /// The key transfers of the zone must be signed with (and NOTIFY is signed with);
    /// an error names a key the policy gives that the server config does not define.
    pub fn key_for(&self, policy: &ValidPolicy) -> Result<Option<&TsigKey>, String> {
        let name = policy
            .transfer
            .as_ref()
            .and_then(|t| t.tsig.as_ref())
            .or(self.config.tsig.as_ref());
        match name {
            None => Ok(None),
            Some(name) => self.keys.get(name).map(Some).ok_or_else(|| {
                format!(
                    "{}: transfer tsig {name:?} is not a [tsig.{name}] table of the server config",
                    policy.path.display()
                )
            }),
        }
    }

    /// The secondaries to notify of the zone's changes: the policy's list when it
    /// has one, else the server's.
    pub fn notify_targets<'a>(&'a self, policy: &'a ValidPolicy) -> &'a [SocketAddr] {
        policy
            .transfer
            .as_ref()
            .and_then(|t| t.notify.as_deref())
            .unwrap_or(&self.config.notify)
    }
}

/// Whether a message is a zone transfer request (QUERY, one question, type AXFR or
/// IXFR): read from the header and question only, for the TCP server to hand it over.
pub fn is_transfer(message: &[u8]) -> bool {
    let Some(header) = message.get(..12) else {
        return false;
    };
    if header[2] & 0xf8 != 0 || header[4..6] != [0, 1] {
        return false;
    }
    let Some(end) = question_name_end(message) else {
        return false;
    };
    matches!(
        message
            .get(end..end + 2)
            .map(|t| u16::from_be_bytes([t[0], t[1]])),
        Some(records::AXFR | records::IXFR)
    )
}

/// Where the question's name ends (its labels written whole, as every client does).
fn question_name_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            return Some(at + 1);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn transfer_requests_are_told_from_queries() {
        let query = |t| {
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii("a.example.test.").unwrap(), t));
            m.to_vec().unwrap()
        };
        assert!(is_transfer(&query(RecordType::AXFR)));
        assert!(is_transfer(&query(RecordType::IXFR)));
        assert!(!is_transfer(&query(RecordType::SOA)));
        assert!(!is_transfer(&query(RecordType::AXFR)[..20]));
    }
}
