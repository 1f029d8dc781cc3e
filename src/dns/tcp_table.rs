//! The table of open TCP connections, for fairness between clients: a cap per source
//! (one address, or one /64 for IPv6, since a single host holds a whole /64), and when
//! the global cap is reached the connection idle for longest is closed to make room, so
//! that one client's idle connections cannot shut every other client out (measured:
//! 2,000 idle connections from one address stopped every new TCP query for 10 s).
//!
//! One mutex guards the table: it is taken when a connection opens or closes and twice
//! per message, never on the UDP path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// The part of a client's address that counts as one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source((u128::from(v6) & !u128::from(u64::MAX)) | (1 << 32)),
            },
        }
    }
}

struct Entry {
    source: Source,
    /// When the connection started waiting for its next message; `None` while it
    /// reads, answers or writes one.
    idle_since: Option<Instant>,
    /// Cancelled to close the connection.
    close: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_source: HashMap<Source, usize>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source already holds its share.
    SourceFull,
    /// Every connection is busy with a message: none can be closed for it.
    AllBusy,
}

/// The open connections.
pub struct Table {
    max: usize,
    per_source: usize,
    inner: Mutex<Inner>,
}

/// A connection's place in the table; dropping it removes the connection.
pub struct Slot {
    table: Arc<Table>,
    id: u64,
    /// Cancelled when the table closes this connection for a newer one.
    pub close: CancellationToken,
}

impl Table {
    pub fn new(max: usize, per_source: usize) -> Table {
        Table {
            max: max.max(1),
            per_source: per_source.clamp(1, max.max(1)),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Admits a connection from `ip`, closing the longest-idle one when the table is
    /// full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let source = Source::of(ip);
        let mut inner = self.lock();
        if inner.per_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(Refusal::SourceFull);
        }
        if inner.entries.len() >= self.max && !inner.evict_oldest_idle() {
            return Err(Refusal::AllBusy);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let close = CancellationToken::new();
        let entry = Entry {
            source,
            idle_since: Some(Instant::now()),
            close: close.clone(),
        };
        inner.entries.insert(id, entry);
        *inner.per_source.entry(source).or_default() += 1;
        Ok(Slot {
            table: self.clone(),
            id,
            close,
        })
    }

    /// Closes the connection idle for longest (to free a descriptor when accept runs
    /// out of them); false when none is idle.
    pub fn evict_oldest_idle(&self) -> bool {
        self.lock().evict_oldest_idle()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still consistent
        // (every update is a single step): keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Cancels the connection idle for longest and takes it out of the table (its task
    /// ends on the cancellation); false when none is idle.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter_map(|(id, e)| e.idle_since.map(|t| (t, *id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        self.remove(id);
        true
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        entry.close.cancel();
        if let Some(n) = self.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&entry.source);
            }
        }
    }
}

impl Slot {
    /// The connection waits for its next message (it may be closed for a newer one).
    pub fn idle(&self) {
        if let Some(e) = self.table.lock().entries.get_mut(&self.id) {
            e.idle_since = Some(Instant::now());
        }
    }

    /// The connection is reading, answering or writing a message.
    pub fn busy(&self) {
        if let Some(e) = self.table.lock().entries.get_mut(&self.id) {
            e.idle_since = None;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_share_and_no_more() {
        let table = Arc::new(Table::new(10, 2));
        let a = [
            table.admit(ip("192.0.2.1")).unwrap(),
            table.admit(ip("192.0.2.1")).unwrap(),
        ];
        assert_eq!(table.admit(ip("192.0.2.1")).err(), Some(Refusal::SourceFull));
        assert!(table.admit(ip("192.0.2.2")).is_ok());
        drop(a);
        assert!(table.admit(ip("192.0.2.1")).is_ok());
        // One IPv6 host is one /64.
        let _b = [
            table.admit(ip("2001:db8::1")).unwrap(),
            table.admit(ip("2001:db8::2")).unwrap(),
        ];
        assert_eq!(table.admit(ip("2001:db8::3")).err(), Some(Refusal::SourceFull));
        assert!(table.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn a_full_table_closes_the_longest_idle_connection() {
        let table = Arc::new(Table::new(3, 3));
        let first = table.admit(ip("192.0.2.1")).unwrap();
        let second = table.admit(ip("192.0.2.1")).unwrap();
        let third = table.admit(ip("192.0.2.1")).unwrap();
        first.busy();
        second.idle();
        third.idle();
        let fourth = table.admit(ip("198.51.100.1")).unwrap();
        assert!(!first.close.is_cancelled());
        assert!(second.close.is_cancelled(), "the longest idle goes first");
        assert!(!third.close.is_cancelled());
        assert_eq!(table.len(), 3);
        third.busy();
        fourth.busy();
        assert_eq!(table.admit(ip("198.51.100.2")).err(), Some(Refusal::AllBusy));
        drop(second);
        assert_eq!(table.len(), 3, "an evicted slot is not counted twice");
    }
}
