//! The UDP server: one thread per core, each reading its own SO_REUSEPORT socket (the
//! kernel spreads queries across them) in batches, answering from the snapshot through
//! the fast path, or the general one for anything unusual, then past the worker's own
//! response rate limiter. No task, channel, lock or allocation per query.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_net::xfer::Protocol;
use tracing::warn;

use super::handler::{respond_general, respond_limited};
use super::mmsg::Batch;
use super::rrl::{Limiter, RrlConfig, RrlCounters};
use super::stats::{Block, Proto, QueryStats};
use super::wire::{self, Outcome};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::tsig::Keyring;

/// Receive errors, logged a few per interval.
static RECEIVE_ERRORS: crate::logging::LogLimit = crate::logging::LogLimit::new("udp receive errors");

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// The running workers; dropping them does not stop them, [`UdpWorkers::stop`] does.
pub struct UdpWorkers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    /// One worker per socket; with RRL enabled each has its own limiter (the same
    /// source always reaches the same socket: SO_REUSEPORT hashes the address pair).
    pub fn spawn(
        sockets: Vec<UdpSocket>,
        cell: Arc<SnapshotCell>,
        rrl: Arc<RrlConfig>,
        counters: Arc<RrlCounters>,
        stats: &QueryStats,
        keys: Arc<Keyring>,
    ) -> io::Result<UdpWorkers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_read_timeout(Some(STOP_POLL))?;
            let (cell, stop, counts, keys) = (cell.clone(), stop.clone(), stats.block(), keys.clone());
            let limiter = rrl.enabled.then(|| Limiter::new(rrl.clone(), counters.clone()));
            let thread = std::thread::Builder::new()
                .name(format!("spfd-udp-{i}"))
                .spawn(move || serve(&socket, &cell, &stop, limiter, &counts, &keys))?;
            threads.push(thread);
        }
        Ok(UdpWorkers { stop, threads })
    }

    /// Stops every worker and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    cell: &SnapshotCell,
    stop: &AtomicBool,
    mut limiter: Option<Limiter>,
    counts: &Block,
    keys: &Keyring,
) {
    let mut batch = Batch::default();
    while !stop.load(Ordering::Relaxed) {
        match batch.receive(socket) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // A spoofed packet's ICMP error comes back here: one per packet.
                if RECEIVE_ERRORS.allow_unsourced() {
                    warn!("udp receive: {e}");
                }
                continue;
            }
        }
        // One snapshot for the whole batch: a batch is answered from one version.
        let snapshot = cell.load();
        if let Some(limiter) = &mut limiter {
            limiter.tick();
        }
        for i in 0..batch.received() {
            let mut answer = std::mem::take(&mut batch.answers[i]);
            answer.clear();
            if let Some((request, src)) = batch.query(i) {
                respond(&snapshot, request, src, &mut answer, keys, limiter.as_mut());
                // Counted as sent: a dropped answer is no response.
                counts.count_own(Proto::Udp, request, &answer);
            }
            batch.answers[i] = answer;
        }
        drop(snapshot);
        batch.send(socket);
    }
}

/// Writes the answer to one datagram into `out` (left empty when nothing is sent),
/// past the rate limiter when there is one: the fast path's answers as they are, the
/// general path's before they are signed. A request with TSIG (never taken by the fast
/// path) gets a signed answer.
fn respond(
    snapshot: &Snapshot,
    request: &[u8],
    src: SocketAddr,
    out: &mut Vec<u8>,
    keys: &Keyring,
    limiter: Option<&mut Limiter>,
) {
    match wire::respond(snapshot, request, out) {
        Outcome::Answered => {
            if let Some(limiter) = limiter {
                limiter.apply(src.ip(), out);
            }
        }
        Outcome::Drop => out.clear(),
        Outcome::General => {
            out.clear();
            let response = match limiter {
                Some(limiter) => respond_limited(snapshot, request, src, limiter),
                None => respond_general(snapshot, request, src, Protocol::Udp),
            };
            if let Some(response) = response {
                out.extend_from_slice(&response);
                crate::tsig::sign_reply(request, out, keys);
            }
        }
    }
}
