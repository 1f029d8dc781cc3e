//! The TCP server (RFC 7766): length-prefixed messages, several per connection, answered
//! in order through the general path. Fair to every client ([`super::tcp_table`]): a
//! cap per source, the longest-idle connection closed for a new one when the global cap
//! is reached, an idle timeout between messages and a shorter deadline for reading and
//! writing one message. When accept runs out of file descriptors the loop backs off
//! instead of retrying at once (which spun a core) and says so once per interval.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::handler::respond_general;
use super::stats::{Block, Proto};
use super::tcp_table::{Slot, Table};
use crate::snapshot::SnapshotCell;

/// Limits of the TCP server.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one source (an address; a /64 for IPv6) may hold; `None`: a sixteenth
    /// of `max_connections`, at least 8.
    pub per_source: Option<usize>,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Once the first octet of a message has arrived, the rest must arrive within this
    /// (and the answer must be taken within it): a client trickling octets holds a
    /// connection no longer than this, whatever the idle timeout.
    pub message_timeout: Duration,
}

impl Default for TcpLimits {
    /// Knot's idle timeout (10 s); a cap that keeps memory bounded under a flood.
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            per_source: None,
            idle_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(2),
        }
    }
}

impl TcpLimits {
    /// Share of the cap one source gets when `per_source` is not set.
    const DEFAULT_SHARE: usize = 16;
    const DEFAULT_PER_SOURCE_MIN: usize = 8;

    /// The per-source cap in force (never above the global cap).
    pub fn per_source(&self) -> usize {
        let derived = (self.max_connections / Self::DEFAULT_SHARE).max(Self::DEFAULT_PER_SOURCE_MIN);
        self.per_source.unwrap_or(derived).min(self.max_connections)
    }
}

/// Descriptors kept for everything but TCP connections: policy files, the watcher,
/// state files, upstream queries, logging; the listening sockets are added per address.
pub const RESERVED_DESCRIPTORS: u64 = 64;

impl TcpLimits {
    /// Lowers the connection cap, with a warning, when it does not fit the open-files
    /// limit less `reserved` descriptors (a cap above the limit makes accept fail with
    /// EMFILE while connections are held, as `tcp_connections = 1024` did under the
    /// common soft limit of 1024).
    pub fn fit_open_files(mut self, open_files: u64, reserved: u64) -> TcpLimits {
        let room = usize::try_from(open_files.saturating_sub(reserved).max(1)).unwrap_or(usize::MAX);
        if self.max_connections > room {
            warn!(
                tcp_connections = self.max_connections,
                open_files,
                reserved,
                lowered_to = room,
                "tcp_connections does not fit the open-files limit (RLIMIT_NOFILE): lowering it; raise the limit (e.g. LimitNOFILE= in systemd) to serve more"
            );
            if self.per_source.is_some_and(|n| n > room) {
                self.per_source = Some(room);
            }
            self.max_connections = room;
        }
        self
    }
}

/// Connections over a cap, logged a few per interval.
static REFUSALS: crate::logging::LogLimit = crate::logging::LogLimit::new("refused tcp connections");

/// Accepts until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    cell: Arc<SnapshotCell>,
    limits: TcpLimits,
    stop: CancellationToken,
    counts: Arc<Block>,
    xfr: Option<Arc<crate::xfr::Transfer>>,
) {
    let table = Arc::new(Table::new(limits.max_connections, limits.per_source()));
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let (stream, src) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                if out_of_descriptors(&e) {
                    // A descriptor held by an idle client is worth less than a new one.
                    table.evict_oldest_idle();
                }
                backoff.wait(&e, &stop).await;
                continue;
            }
        };
        let slot = match table.admit(src.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                if REFUSALS.allow(src.ip()) {
                    debug!(%src, ?why, "tcp connection refused");
                }
                continue;
            }
        };
        let serving = Serving {
            cell: cell.clone(),
            limits,
            counts: counts.clone(),
            xfr: xfr.clone(),
        };
        spawn_connection(stream, src, slot, serving, stop.clone());
    }
}

/// Serves one connection on its own task until it ends, the table closes it for a newer
/// one, or the server stops.
fn spawn_connection(
    stream: TcpStream,
    src: SocketAddr,
    slot: Slot,
    serving: Serving,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = connection(stream, src, &serving, &slot) => {}
            _ = slot.close.cancelled() => {}
            _ = stop.cancelled() => {}
        }
    });
}

/// Errors about one connection that went away before it was accepted.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The pause after a failed accept: 100 ms, doubling to 1 s while failures go on; a
/// warning at most once per [`Backoff::LOG_INTERVAL`], with the count in between.
struct Backoff {
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: Self::FIRST,
            last_log: None,
            unlogged: 0,
        }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_INTERVAL: Duration = Duration::from_secs(10);

    fn reset(&mut self) {
        self.delay = Self::FIRST;
    }

    async fn wait(&mut self, e: &io::Error, stop: &CancellationToken) {
        self.unlogged += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= Self::LOG_INTERVAL) {
            let hint = if out_of_descriptors(e) {
                "; raise the file descriptor limit (ulimit -n) or lower tcp_connections"
            } else {
                ""
            };
            warn!(
                failures = self.unlogged,
                "tcp accept failed: {e}; pausing accepts{hint}"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = stop.cancelled() => {}
        }
        self.delay = (self.delay * 2).min(Self::MAX);
    }
}

/// What every connection of a listener serves with.
struct Serving {
    cell: Arc<SnapshotCell>,
    limits: TcpLimits,
    counts: Arc<Block>,
    /// Zone transfers out, when `[transfer]` is configured (else they are REFUSED).
    xfr: Option<Arc<crate::xfr::Transfer>>,
}

/// How long one zone transfer may take to be taken by the client.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

async fn connection(mut stream: TcpStream, src: SocketAddr, serving: &Serving, slot: &Slot) {
    let limits = serving.limits;
    let _ = stream.set_nodelay(true);
    let mut message = Vec::new();
    loop {
        slot.idle();
        let mut len = [0u8; 2];
        if !matches!(
            tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut len[..1])).await,
            Ok(Ok(_))
        ) {
            return;
        }
        slot.busy();
        let read = async {
            stream.read_exact(&mut len[1..]).await?;
            message.resize(usize::from(u16::from_be_bytes(len)), 0);
            stream.read_exact(&mut message).await
        };
        if !matches!(
            tokio::time::timeout(limits.message_timeout, read).await,
            Ok(Ok(_))
        ) {
            return;
        }
        if let Some(xfr) = &serving.xfr
            && crate::xfr::is_transfer(&message)
        {
            let snapshot = serving.cell.load_full();
            let sent = crate::xfr::axfr::serve(&mut stream, &message, src, snapshot, xfr);
            if !matches!(tokio::time::timeout(TRANSFER_TIMEOUT, sent).await, Ok(Ok(()))) {
                return;
            }
            continue;
        }
        let response = respond_general(&serving.cell.load(), &message, src, Protocol::Tcp);
        serving
            .counts
            .count(Proto::Tcp, &message, response.as_deref().unwrap_or_default());
        let Some(mut response) = response else {
            continue;
        };
        if let Some(xfr) = &serving.xfr {
            crate::tsig::sign_reply(&message, &mut response, &xfr.keys);
        }
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        let write = tokio::time::timeout(limits.message_timeout, stream.write_all(&framed));
        if !matches!(write.await, Ok(Ok(_))) {
            return;
        }
    }
}
