//! The UDP server: one thread per core, each reading its own SO_REUSEPORT socket (the
//! kernel spreads queries across them), answering from the snapshot through the fast
//! path, or the general one for anything unusual. No task, channel or lock per query.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_net::xfer::Protocol;
use tracing::warn;

use super::handler::respond_general;
use super::wire::{self, Outcome};
use crate::snapshot::SnapshotCell;

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// The running workers; dropping them does not stop them, [`UdpWorkers::stop`] does.
pub struct UdpWorkers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    pub fn spawn(sockets: Vec<UdpSocket>, cell: Arc<SnapshotCell>) -> io::Result<UdpWorkers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_read_timeout(Some(STOP_POLL))?;
            let (cell, stop) = (cell.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("spfd-udp-{i}"))
                .spawn(move || serve(&socket, &cell, &stop))?;
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

fn serve(socket: &UdpSocket, cell: &SnapshotCell, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("udp receive: {e}");
                continue;
            }
        };
        if src.port() == 0 {
            continue;
        }
        answer(socket, cell, &buf[..len], src, &mut out);
    }
}

fn answer(socket: &UdpSocket, cell: &SnapshotCell, request: &[u8], src: SocketAddr, out: &mut Vec<u8>) {
    let snapshot = cell.load();
    let sent = match wire::respond(&snapshot, request, out) {
        Outcome::Answered => socket.send_to(out, src),
        Outcome::Drop => return,
        Outcome::General => match respond_general(&snapshot, request, src, Protocol::Udp) {
            Some(response) => socket.send_to(&response, src),
            None => return,
        },
    };
    if let Err(e) = sent {
        tracing::debug!("udp send to {src}: {e}");
    }
}
