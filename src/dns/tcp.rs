//! The TCP server (RFC 7766): length-prefixed messages, several per connection, answered
//! in order through the general path. Connections beyond the cap are closed at once;
//! a connection idle for longer than the timeout is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::handler::respond_general;
use super::stats::{Block, Proto};
use crate::snapshot::SnapshotCell;

/// Limits of the TCP server.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    /// Knot's idle timeout (10 s); a cap that keeps memory bounded under a flood.
    fn default() -> Self {
        TcpLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    cell: Arc<SnapshotCell>,
    limits: TcpLimits,
    stop: CancellationToken,
    counts: Arc<Block>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, src) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!("tcp accept: {e}");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        if active.load(Ordering::Relaxed) >= limits.max_connections {
            debug!(%src, "tcp connection cap reached, closing");
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (cell, active, stop, counts) = (cell.clone(), active.clone(), stop.clone(), counts.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, src, &cell, limits.idle_timeout, &counts) => {}
                _ = stop.cancelled() => {}
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    cell: &SnapshotCell,
    idle: Duration,
    counts: &Block,
) {
    let _ = stream.set_nodelay(true);
    let mut message = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        message.resize(usize::from(u16::from_be_bytes(len)), 0);
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut message)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let response = respond_general(&cell.load(), &message, src, Protocol::Tcp);
        counts.count(Proto::Tcp, &message, response.as_deref().unwrap_or_default());
        let Some(response) = response else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
