//! Accepting admin connections: spfd accepts them itself, so that a connection over
//! the cap (all sources, or its own source) is closed at once, before any byte of a
//! request is read, and never queued. Each admin connection holds a descriptor that
//! the DNS server, reloads and the report store need too. A connection whose request
//! headers are not complete in time, or that moves no byte for the idle timeout, is
//! closed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::AdminLimits;
use crate::dns::tcp_table::{Slot, Table};
use crate::logging::LogLimit;

/// Connections closed over a cap, logged a few per interval.
static REFUSALS: LogLimit = LogLimit::new("refused admin connections");

/// The pause after accept fails for want of descriptors, so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts until `stop`, serving each admitted connection on its own task.
pub(super) async fn accept(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    refused: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let table = Arc::new(Table::new(limits.max_connections, limits.per_source));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let (stream, src) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if REFUSALS.allow_unsourced() {
                    tracing::warn!("admin accept failed: {e}");
                }
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        match table.admit(src.ip()) {
            Ok(slot) => {
                // Never closed for a newer connection: over the cap the newcomer goes.
                slot.busy();
                tokio::spawn(serve(stream, slot, router.clone(), limits, stop.clone()));
            }
            Err(why) => {
                refused.fetch_add(1, Ordering::Relaxed);
                if REFUSALS.allow(src.ip()) {
                    tracing::info!(%src, ?why, "admin connection closed: over the connection cap");
                }
                drop(stream);
            }
        }
    }
}

/// Serves one connection until it ends, times out or the server stops; its slot is
/// freed when this returns.
async fn serve(stream: TcpStream, slot: Slot, router: Router, limits: AdminLimits, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, TowerToHyperService::new(router));
    tokio::select! {
        _ = connection => {}
        _ = activity.idle_for(limits.idle_timeout) => {}
        _ = stop.cancelled() => {}
    }
    drop(slot);
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// The socket, noting each read or write that moves bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
