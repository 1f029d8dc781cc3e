//! The NOTIFY service (RFC 1996): every swap that changes a zone's serial is handed
//! here (a channel send: the reload service never waits on the network); the service
//! records the difference in the IXFR journal and tells each secondary, over UDP,
//! retrying with backoff until it answers. A newer serial replaces a NOTIFY still
//! being retried for the same zone and secondary.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::Transfer;
use crate::snapshot::{Snapshot, Summary, Zone};
use crate::tsig::{TsigKey, unix_now};

/// How long one NOTIFY waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses between attempts: doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Attempts after which a silent secondary is worth a warning (once per NOTIFY).
const WARN_AFTER: u32 = 5;
/// NOTIFYs in flight at once (a swap of every zone must not open thousands of sockets).
const IN_FLIGHT: usize = 64;

/// One zone's change in a swap: the version before and after (`None`: added, removed).
pub struct ZoneSwap {
    pub apex: LowerName,
    pub old: Option<Arc<Zone>>,
    pub new: Option<Arc<Zone>>,
}

/// The reload service's side: turns a swap into a message for the service.
pub type SwapSender = mpsc::UnboundedSender<Vec<ZoneSwap>>;

/// The zones a swap changed, old and new version side by side.
pub fn swapped_zones(old: &Snapshot, new: &Snapshot, summary: &Summary) -> Vec<ZoneSwap> {
    let apexes = summary
        .added
        .iter()
        .chain(&summary.changed)
        .map(|(apex, _)| apex)
        .chain(&summary.removed);
    apexes
        .map(|apex| ZoneSwap {
            apex: apex.clone(),
            old: old.zones.get(apex).cloned(),
            new: new.zones.get(apex).cloned(),
        })
        .collect()
}

/// Runs until every sender is gone: the journal, then NOTIFY for each changed zone.
pub async fn run(xfr: Arc<Transfer>, mut swaps: mpsc::UnboundedReceiver<Vec<ZoneSwap>>) {
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut pending: HashMap<(LowerName, SocketAddr), AbortHandle> = HashMap::new();
    while let Some(batch) = swaps.recv().await {
        pending.retain(|_, task| !task.is_finished());
        // Diffing every zone of a large swap is CPU work: off the runtime that serves TCP.
        let journal = xfr.clone();
        let batch = match tokio::task::spawn_blocking(move || {
            for swap in &batch {
                journal
                    .journal
                    .record(&swap.apex, swap.old.as_deref(), swap.new.as_deref());
            }
            batch
        })
        .await
        {
            Ok(batch) => batch,
            Err(e) => {
                warn!("IXFR journal update failed: {e}");
                continue;
            }
        };
        for swap in batch {
            let Some(zone) = swap.new else {
                continue;
            };
            if swap.old.as_ref().is_some_and(|old| old.serial == zone.serial) {
                continue;
            }
            let key = match xfr.key_for(&zone.policy) {
                Ok(key) => key.cloned(),
                Err(e) => {
                    warn!(zone = %zone.apex, "NOTIFY not sent: {e}");
                    continue;
                }
            };
            for target in xfr.notify_targets(&zone.policy) {
                let job = Notify {
                    counts: xfr.counts.clone(),
                    apex: zone.apex.clone(),
                    serial: zone.serial,
                    target: *target,
                    key: key.clone(),
                };
                let task = tokio::spawn(job.until_acknowledged(limit.clone()));
                if let Some(old) = pending.insert((swap.apex.clone(), *target), task.abort_handle()) {
                    old.abort();
                }
            }
        }
    }
    for task in pending.values() {
        task.abort();
    }
}

/// One NOTIFY to one secondary.
struct Notify {
    counts: Arc<super::Counts>,
    apex: Name,
    serial: u32,
    target: SocketAddr,
    key: Option<TsigKey>,
}

impl Notify {
    async fn until_acknowledged(self, limit: Arc<Semaphore>) {
        let mut delay = FIRST_RETRY;
        for attempt in 1u32.. {
            let result = {
                let _permit = limit.acquire().await;
                self.send_once().await
            };
            let counter = match &result {
                Ok(()) => &self.counts.notify_acknowledged,
                Err(_) => &self.counts.notify_unanswered,
            };
            super::Counts::add(counter);
            match result {
                Ok(()) => {
                    info!(zone = %self.apex, serial = self.serial, target = %self.target, attempt, "NOTIFY acknowledged");
                    return;
                }
                Err(why) if attempt == WARN_AFTER => {
                    warn!(zone = %self.apex, serial = self.serial, target = %self.target, attempt, "NOTIFY not acknowledged ({why}); still retrying")
                }
                Err(why) => {
                    debug!(zone = %self.apex, target = %self.target, attempt, "NOTIFY not acknowledged: {why}")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// Sends once and waits for the answer: Ok when the secondary answered NOERROR
    /// (signed with the key when one is used).
    async fn send_once(&self) -> Result<(), String> {
        let local: IpAddr = match self.target {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((local, 0)).await.map_err(|e| e.to_string())?;
        socket.connect(self.target).await.map_err(|e| e.to_string())?;
        let mut message = Message::new(message_id(), MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        message.add_query(Query::query(self.apex.clone(), RecordType::SOA));
        let mut verifier = match &self.key {
            Some(key) => message
                .finalize(&key.signer, unix_now())
                .map_err(|e| format!("cannot sign: {e}"))?,
            None => None,
        };
        let bytes = message.to_vec().map_err(|e| e.to_string())?;
        socket.send(&bytes).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let wait = async {
            loop {
                let n = socket.recv(&mut buf).await?;
                if n >= 2 && buf[..2] == bytes[..2] {
                    return Ok::<_, std::io::Error>(n);
                }
            }
        };
        let n = match tokio::time::timeout(ANSWER_TIMEOUT, wait).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer".into()),
        };
        let answer = match verifier.as_mut() {
            Some(v) => v
                .verify(&buf[..n])
                .map(|r| r.into_message())
                .map_err(|e| format!("TSIG: {e}"))?,
            None => Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?,
        };
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(format!("answered {code}")),
        }
    }
}

/// An id that differs between NOTIFYs (not a secret: the answer must come from the
/// target the socket is connected to).
pub fn message_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos as u16) ^ NEXT.fetch_add(0x9e37, Ordering::Relaxed)
}
