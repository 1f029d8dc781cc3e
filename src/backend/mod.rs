//! Backend transfer mode: a policy with `backend = "192.0.2.10:53"` serves the zone its
//! primary holds, transferred by AXFR ([`transfer`]) and refreshed on the SOA timers and
//! on NOTIFY from that primary (RFC 1996), with spfd's own names on top. The copies
//! live in [`Backends`], which the reload service reads when it builds such a zone; a
//! copy past its SOA expire is dropped (the zone answers SERVFAIL for other names).

pub mod service;
pub mod transfer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use hickory_proto::rr::LowerName;
use tokio::sync::Notify;

use crate::zonefile::ZoneData;

/// The copies of the backends' zones, by apex, and the mail domains whose copy changed
/// since the reload service last looked.
#[derive(Debug, Default)]
pub struct Backends {
    copies: Mutex<HashMap<LowerName, Arc<ZoneData>>>,
    dirty: Mutex<HashSet<String>>,
    counts: BackendCounts,
    /// Why the last check or transfer of a zone failed, until one succeeds.
    failures: Mutex<HashMap<LowerName, String>>,
}

/// What the transfer tasks did since start, for the metrics.
#[derive(Debug, Default)]
pub struct BackendCounts {
    /// SOA queries sent to backends (each refresh, retry and NOTIFY-driven check).
    pub checks: AtomicU64,
    /// Transfers accepted and put in service.
    pub transfers: AtomicU64,
    /// Checks or transfers that failed (the copy in service stayed).
    pub failures: AtomicU64,
}

impl Backends {
    /// The copy to serve for a zone: the last good transfer, or an expired (empty) one.
    pub fn copy(&self, apex: &LowerName, backend: std::net::SocketAddr) -> Arc<ZoneData> {
        let copies = self.copies.lock().expect("backend copies");
        copies
            .get(apex)
            .cloned()
            .unwrap_or_else(|| Arc::new(expired(backend)))
    }

    /// Sets a zone's copy (a new transfer, or expiry) and marks its domain changed.
    pub fn set(&self, apex: &LowerName, domain: &str, copy: Arc<ZoneData>) {
        self.copies
            .lock()
            .expect("backend copies")
            .insert(apex.clone(), copy);
        self.dirty
            .lock()
            .expect("backend dirty")
            .insert(domain.to_string());
    }

    /// Forgets a zone no longer served from a backend.
    pub fn forget(&self, apex: &LowerName) {
        self.copies.lock().expect("backend copies").remove(apex);
    }

    pub fn counts(&self) -> &BackendCounts {
        &self.counts
    }

    pub(crate) fn count_check(&self) {
        self.counts.checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_transfer(&self) {
        self.counts.transfers.fetch_add(1, Ordering::Relaxed);
    }

    /// A check or transfer of the zone failed (the copy in service stays).
    pub(crate) fn failed(&self, apex: &LowerName, why: String) {
        self.counts.failures.fetch_add(1, Ordering::Relaxed);
        self.failures
            .lock()
            .expect("backend failures")
            .insert(apex.clone(), why);
    }

    /// A check or transfer of the zone succeeded.
    pub(crate) fn succeeded(&self, apex: &LowerName) {
        self.failures.lock().expect("backend failures").remove(apex);
    }

    /// Why the last check or transfer of the zone failed, when the last one did.
    pub fn last_failure(&self, apex: &LowerName) -> Option<String> {
        self.failures.lock().expect("backend failures").get(apex).cloned()
    }

    /// The mail domains whose copy changed since the last call.
    pub fn take_dirty(&self) -> Vec<String> {
        self.dirty.lock().expect("backend dirty").drain().collect()
    }
}

/// An empty copy that answers SERVFAIL: before the first transfer and past expiry.
pub fn expired(backend: std::net::SocketAddr) -> ZoneData {
    ZoneData {
        records: Vec::new(),
        files: vec![source_name(backend)],
        expired: true,
    }
}

/// How messages name a backend's copy (in place of a file name).
pub fn source_name(backend: std::net::SocketAddr) -> PathBuf {
    PathBuf::from(format!("backend {backend}"))
}

/// The transfer tasks waiting for a NOTIFY, by apex. Process-wide: the DNS query path
/// reaches it without a handle (a NOTIFY for a zone with two servers in one process,
/// as in tests, wakes both; they then compare serials).
static WAITING: LazyLock<Mutex<HashMap<LowerName, Vec<Weak<Notify>>>>> = LazyLock::new(Default::default);

/// Registers a transfer task's wake-up for NOTIFY messages about `apex`.
pub fn register(apex: &LowerName, wake: &Arc<Notify>) {
    let mut waiting = WAITING.lock().expect("notify registry");
    let list = waiting.entry(apex.clone()).or_default();
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(wake));
}

/// A NOTIFY for `apex` arrived from its backend: the transfer tasks check the SOA now.
/// Returns whether any task was waiting.
pub fn notified(apex: &LowerName) -> bool {
    let waiting = WAITING.lock().expect("notify registry");
    let mut woke = false;
    for wake in waiting.get(apex).into_iter().flatten().filter_map(Weak::upgrade) {
        wake.notify_one();
        woke = true;
    }
    woke
}
