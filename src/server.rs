//! `spfd serve`: binds the sockets, loads the policies, serves, and reloads on change
//! or SIGHUP until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::dns::udp::UdpWorkers;
use crate::dns::{self, listen};
use crate::published::Published;
use crate::refresh::BoardCell;
use crate::refresh::{Flattener, Settings};
use crate::reload::{self, ReloadReport, Reloader, Trigger};
use crate::service::{Ready, ReadyWatch, ServiceHandle};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::Upstream;

/// A server that is up: its addresses, the snapshot cell, and the reload service.
pub struct Running {
    /// The bound addresses (with the real port when the config said port 0).
    pub addrs: Vec<SocketAddr>,
    pub snapshot: Arc<SnapshotCell>,
    /// Sends reload triggers (SIGHUP does the same).
    pub reload: Sender<Trigger>,
    /// What the initial load found.
    pub initial: ReloadReport,
    /// The flattened SPF records in service.
    pub published: Arc<Published>,
    /// Stops the TCP servers.
    stop: CancellationToken,
    tcp: JoinSet<()>,
    udp: Option<UdpWorkers>,
    reload_service: Option<ServiceHandle>,
    flatten: Option<ServiceHandle>,
    /// Ready once the first snapshot is served (before `start` returns).
    pub ready: ReadyWatch,
    /// Every flattened policy's status (state, lookups, changes, held ranges, error).
    pub board: Arc<BoardCell>,
    /// Ready once the first round of expansions is done.
    pub flattened: ReadyWatch,
}

impl Running {
    /// Stops accepting queries and the reload service.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(flatten) = self.flatten.take() {
            let _ = tokio::task::spawn_blocking(move || flatten.stop_and_join()).await;
        }
        if let Some(reload) = self.reload_service.take() {
            let _ = tokio::task::spawn_blocking(move || reload.stop_and_join()).await;
        }
        if let Some(udp) = self.udp.take() {
            let _ = tokio::task::spawn_blocking(move || udp.stop()).await;
        }
        self.stop.cancel();
        while self.tcp.join_next().await.is_some() {}
        Ok(())
    }
}

/// Binds every `listen` address (UDP and TCP; one UDP socket per core with
/// SO_REUSEPORT), loads the policies and the persisted flattened results into the first
/// snapshot, and only then starts reading the sockets: a query that arrives meanwhile
/// waits in the kernel's queue and is answered from the whole snapshot, never REFUSED
/// or answered with a record as written where a flattened one was kept.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut addrs = Vec::new();
    let mut udp_sockets = Vec::new();
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let (udp, listener) =
            listen::bind_all(*addr, workers).with_context(|| format!("cannot listen on {addr}"))?;
        addrs.push(udp[0].local_addr()?);
        udp_sockets.extend(udp);
        listeners.push(listener);
    }
    info!(addrs = ?addrs, "listening; loading policies before answering");
    // Chains flattened before a restart are served at once, whatever upstream does.
    let published = Arc::new(Published::load(&config.state_dir).unwrap_or_else(|e| {
        warn!(dir = %config.state_dir.display(), "cannot read published records, flattening anew: {e}");
        Published::default()
    }));
    let mut reloader = Reloader::new(config, cell.clone(), published.clone());
    let initial = reloader.reload();
    reload::log_report(&initial);
    let policies = reloader.subscribe();
    let (reload_tx, reload_service) =
        reload::spawn(reloader).with_context(|| format!("cannot watch {}", config.policy_dir.display()))?;
    let ready = Ready::new();
    ready.set();
    let stop = CancellationToken::new();
    let mut tcp = JoinSet::new();
    for listener in listeners {
        tcp.spawn(dns::tcp::serve(listener, cell.clone(), config.tcp, stop.clone()));
    }
    let udp = UdpWorkers::spawn(udp_sockets, cell.clone()).context("cannot start the UDP workers")?;
    let upstream =
        Arc::new(Upstream::from_config(&config.upstream).context("cannot set up the upstream resolver")?);
    let settings = Settings::new(&config.upstream, &config.state_dir);
    let flattened = reload_tx.clone();
    let on_publish = Box::new(move || {
        let _ = flattened.send(Trigger::Flattened);
    });
    let flattener = Flattener::new(upstream, published.clone(), settings, on_publish);
    let stop_flattening = flattener.shutdown_token();
    let board = flattener.board();
    let flattened = flattener.ready();
    // Expansion is background work: its own thread and runtime, at the reload thread's
    // low priority, so that a burst of it never competes with queries (UDP workers and
    // TCP on the main runtime).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the flattening runtime")?;
    let flatten = ServiceHandle::spawn(
        "flatten",
        move || stop_flattening.cancel(),
        move || {
            crate::os::lower_thread_priority();
            runtime.block_on(flattener.run(policies));
        },
    )
    .context("cannot start the flattening thread")?;
    info!(addrs = ?addrs, zones = initial.zones, generation = initial.generation, "serving");
    Ok(Running {
        addrs,
        snapshot: cell,
        reload: reload_tx,
        initial,
        published,
        stop,
        tcp,
        udp: Some(udp),
        reload_service: Some(reload_service),
        flatten: Some(flatten),
        ready: ready.subscribe(),
        board,
        flattened,
    })
}

/// `spfd serve`: runs until SIGINT or SIGTERM; SIGHUP reloads the policies.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP while the first snapshot loads must not end the process
    // (its default action); it reloads once serving starts.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let running = start(&config).await?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading policies");
                let _ = running.reload.send(Trigger::Signal);
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    info!("shutting down");
    running.shutdown().await
}
