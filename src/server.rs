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
use crate::dns::rrl::RrlCounters;
use crate::dns::udp::UdpWorkers;
use crate::dns::{self, listen};
use crate::refresh::{Flattener, Published, Settings};
use crate::reload::{self, ReloadReport, Reloader, Trigger};
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
    /// Answers the UDP rate limiter dropped or sent truncated.
    pub rrl: Arc<RrlCounters>,
    /// Stops the TCP servers.
    stop: CancellationToken,
    tcp: JoinSet<()>,
    udp: Option<UdpWorkers>,
    reload_thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting queries and the reload service.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.reload.send(Trigger::Stop);
        if let Some(t) = self.reload_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
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
/// SO_REUSEPORT), loads the policies once, and starts serving and watching.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = CancellationToken::new();
    let mut tcp = JoinSet::new();
    let mut addrs = Vec::new();
    let mut udp_sockets = Vec::new();
    let tcp_limits = tcp_limits(config, workers);
    for addr in &config.listen {
        let (udp, listener) =
            listen::bind_all(*addr, workers).with_context(|| format!("cannot listen on {addr}"))?;
        addrs.push(udp[0].local_addr()?);
        udp_sockets.extend(udp);
        tcp.spawn(dns::tcp::serve(listener, cell.clone(), tcp_limits, stop.clone()));
    }
    let rrl = Arc::new(RrlCounters::default());
    let udp = UdpWorkers::spawn(
        udp_sockets,
        cell.clone(),
        Arc::new(config.rrl.clone()),
        rrl.clone(),
    )
    .context("cannot start the UDP workers")?;
    // Chains flattened before a restart are served at once, whatever upstream does.
    let published = Arc::new(Published::load(&config.state_dir).unwrap_or_else(|e| {
        warn!(dir = %config.state_dir.display(), "cannot read published records, flattening anew: {e}");
        Published::default()
    }));
    let mut reloader = Reloader::new(config, cell.clone(), published.clone());
    let initial = reloader.reload();
    reload::log_report(&initial);
    let policies = reloader.subscribe();
    let (reload_tx, reload_thread) =
        reload::spawn(reloader).with_context(|| format!("cannot watch {}", config.policy_dir.display()))?;
    let upstream =
        Arc::new(Upstream::from_config(&config.upstream).context("cannot set up the upstream resolver")?);
    let settings = Settings::new(&config.upstream, &config.state_dir);
    let flattener = Flattener::new(upstream, published.clone(), settings, reload_tx.clone());
    // Expansion is background work: its own thread and runtime, at the reload thread's
    // low priority, so that a burst of it never competes with queries (UDP workers and
    // TCP on the main runtime). It ends when the reload service closes the policy feed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the flattening runtime")?;
    std::thread::Builder::new()
        .name("spfd-flatten".into())
        .spawn(move || {
            crate::os::lower_thread_priority();
            runtime.block_on(flattener.run(policies));
        })
        .context("cannot start the flattening thread")?;
    info!(addrs = ?addrs, zones = initial.zones, generation = initial.generation, "serving");
    Ok(Running {
        addrs,
        snapshot: cell,
        reload: reload_tx,
        initial,
        published,
        rrl,
        stop,
        tcp,
        udp: Some(udp),
        reload_thread: Some(reload_thread),
    })
}

/// The configured TCP limits, the cap lowered to what the open-files limit allows
/// after raising it to the hard limit.
fn tcp_limits(config: &Config, workers: usize) -> dns::tcp::TcpLimits {
    match crate::os::raise_open_files_limit() {
        Some(open_files) => {
            let listening = (config.listen.len() * (workers + 1)) as u64;
            config
                .tcp
                .fit_open_files(open_files, dns::tcp::RESERVED_DESCRIPTORS + listening)
        }
        None => config.tcp,
    }
}

/// `spfd serve`: runs until SIGINT or SIGTERM; SIGHUP reloads the policies.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP that arrived between "serving" and their installation
    // killed the process (the default action), which the cli test met on a loaded
    // machine.
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
