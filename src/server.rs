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

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::dns::rrl::RrlCounters;
use crate::dns::stats::QueryStats;
use crate::dns::udp::UdpWorkers;
use crate::dns::{self, listen};
use crate::metrics;
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
    /// The admin server's address, when `[admin]` is configured.
    pub admin: Option<SocketAddr>,
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
    reload_service: Option<ServiceHandle>,
    flatten: Option<ServiceHandle>,
    /// Delivers alerts; stopped last, once nothing can send more.
    alert_service: Option<ServiceHandle>,
    /// Summarises DMARC reports for the status page.
    report_watch: Option<ServiceHandle>,
    /// Renews DNSSEC signatures on a timer (when `[dnssec]` is on).
    dnssec_renewal: Option<ServiceHandle>,
    /// Ready once the first snapshot is served (before `start` returns).
    pub ready: ReadyWatch,
    /// Every flattened policy's status (state, lookups, changes, held ranges, error).
    pub board: Arc<BoardCell>,
    /// Ready once the first round of expansions is done.
    pub flattened: ReadyWatch,
    /// The DMARC report poller (when `[reports] sources` lists any), and its status.
    reports: Option<tokio::task::JoinHandle<()>>,
    pub report_status: Option<Arc<std::sync::Mutex<crate::reports::poller::PollStatus>>>,
    /// Zone transfers out and NOTIFY, when `[transfer]` is configured.
    pub transfer: Option<Arc<crate::xfr::Transfer>>,
    /// The NOTIFY service (ends when the reload service is gone).
    notify: Option<tokio::task::JoinHandle<()>>,
    /// The `[push]` service: RFC 2136 updates of every changed zone.
    push: Option<tokio::task::JoinHandle<()>>,
    /// Transfers the zones of policies with a backend (ends with `stop`).
    backend: Option<tokio::task::JoinHandle<()>>,
    /// The backends' copies and what their transfers did (the metrics read it too).
    pub backends: Arc<crate::backend::Backends>,
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
        for task in [self.notify.take(), self.push.take()].into_iter().flatten() {
            task.abort();
        }
        if let Some(watch) = self.report_watch.take() {
            let _ = tokio::task::spawn_blocking(move || watch.stop_and_join()).await;
        }
        if let Some(renewal) = self.dnssec_renewal.take() {
            let _ = tokio::task::spawn_blocking(move || renewal.stop_and_join()).await;
        }
        if let Some(alerts) = self.alert_service.take() {
            let _ = tokio::task::spawn_blocking(move || alerts.stop_and_join()).await;
        }
        if let Some(udp) = self.udp.take() {
            let _ = tokio::task::spawn_blocking(move || udp.stop()).await;
        }
        self.stop.cancel();
        while self.tcp.join_next().await.is_some() {}
        if let Some(reports) = self.reports.take() {
            let _ = reports.await;
        }
        if let Some(backend) = self.backend.take() {
            let _ = backend.await;
        }
        Ok(())
    }
}

/// Binds every `listen` address (UDP and TCP; one UDP socket per core with
/// SO_REUSEPORT) and the admin address, loads the policies and the persisted flattened
/// results into the first snapshot, and only then starts reading the DNS sockets: a
/// query that arrives meanwhile waits in the kernel's queue and is answered from the
/// whole snapshot, never REFUSED or answered with a record as written where a
/// flattened one was kept. `/readyz` says 503 until then.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let bound = bind_dns(config)?;
    let stop = CancellationToken::new();
    tokio::spawn(crate::logging::summarise_floods(stop.clone()));
    let ready = Ready::new();
    let published = Arc::new(Published::load(&config.state_dir).unwrap_or_else(|e| {
        warn!(dir = %config.state_dir.display(), "cannot read published records, flattening anew: {e}");
        Published::default()
    }));
    let mut reloader = Reloader::new(config, cell.clone(), published.clone());
    let (alerts, alert_service) = match &config.alerts {
        Some(alert_config) => {
            let (alerts, service) = crate::alerts::start(alert_config).context("cannot start alerts")?;
            (alerts, Some(service))
        }
        None => (crate::alerts::Alerts::default(), None),
    };
    reloader.set_alerts(alerts.clone());
    let upstream =
        Arc::new(Upstream::from_config(&config.upstream).context("cannot set up the upstream resolver")?);
    let board = Arc::new(BoardCell::default());
    let report_board = Arc::new(crate::reports::watch::ReportBoard::default());
    let stats = Arc::new(QueryStats::default());
    let rrl = Arc::new(RrlCounters::default());
    let (transfer, notify) = start_transfers(config, &mut reloader).unzip();
    let push = start_push(config, &mut reloader);
    let admin_state = AdminState {
        snapshot: cell.clone(),
        board: board.clone(),
        published: published.clone(),
        problems: reloader.problems(),
        ready: ready.subscribe(),
        metrics: metrics_renderer(
            &cell,
            &board,
            &upstream,
            &reloader,
            &stats,
            &rrl,
            transfer.as_ref().map(|t| t.counts.clone()),
        ),
        queries: {
            let stats = stats.clone();
            Arc::new(move || stats.sum())
        },
        history: Arc::default(),
        reports: report_board.clone(),
        refused: reloader.counters().admin_refused.clone(),
    };
    let admin = start_admin(config, admin_state, stop.clone()).await?;
    info!(addrs = ?bound.addrs, admin = ?admin, "listening; loading policies before answering");
    let initial = reloader.reload();
    reload::log_report(&initial);
    ready.set();
    let policies = reloader.subscribe();
    let backend_policies = reloader.subscribe();
    let backends = reloader.backends();
    let (reload_tx, reload_service) =
        reload::spawn(reloader).with_context(|| format!("cannot watch {}", config.policy_dir.display()))?;
    let addrs = bound.addrs.clone();
    let (tcp, udp) = serve_dns(bound, &cell, config, &stop, &stats, &rrl, &transfer)?;
    let report_watch = spawn_report_watch(config, &cell, &upstream, report_board, &alerts)?;
    let dnssec_renewal = match config.dnssec.enabled {
        true => Some(
            crate::snapshot::signed::spawn_renewal(cell.clone()).context("cannot start DNSSEC renewal")?,
        ),
        false => None,
    };
    let flattener = Flattener::new(
        upstream,
        published.clone(),
        Settings::new(&config.upstream, &config.state_dir),
        notify_reload(reload_tx.clone()),
    )
    .with_board(board.clone())
    .with_alerts(alerts);
    let flattened = flattener.ready();
    let flatten = spawn_flattener(flattener, policies)?;
    let poller = crate::reports::poller::ReportPoller::from_config(config).map(|p| p.serving(cell.clone()));
    let report_status = poller.as_ref().map(|p| p.status());
    let reports = poller.map(|p| tokio::spawn(p.run(stop.clone())));
    let backend = {
        let reload = reload_tx.clone();
        let on_change: crate::backend::service::OnChange = Arc::new(move || {
            let _ = reload.send(Trigger::Flattened);
        });
        tokio::spawn(crate::backend::service::run(
            backends.clone(),
            backend_policies,
            on_change,
            config.backend,
            stop.clone(),
        ))
    };
    info!(addrs = ?addrs, zones = initial.zones, generation = initial.generation, "serving");
    Ok(Running {
        addrs,
        admin,
        snapshot: cell,
        reload: reload_tx,
        initial,
        published,
        rrl,
        stop,
        tcp,
        udp: Some(udp),
        reload_service: Some(reload_service),
        flatten: Some(flatten),
        alert_service,
        report_watch: Some(report_watch),
        dnssec_renewal,
        ready: ready.subscribe(),
        board,
        flattened,
        reports,
        report_status,
        transfer,
        notify,
        push,
        backend: Some(backend),
        backends,
    })
}

/// The `[push]` mode: every swap's changed zones are written into the primary, by a
/// service of its own fed through a channel.
fn start_push(config: &Config, reloader: &mut Reloader) -> Option<tokio::task::JoinHandle<()>> {
    let settings = config.push.as_ref().filter(|p| p.serve)?;
    let target = Arc::new(crate::push::Target {
        primary: settings.primary,
        key: settings.tsig.as_ref().map(|name| config.tsig[name].clone()),
    });
    let state = Arc::new(crate::push::send::PushState::load(config.state_dir.clone()));
    let (swaps, received) = tokio::sync::mpsc::unbounded_channel();
    reloader.on_swap(Box::new(move |old, new, summary| {
        let _ = swaps.send(crate::xfr::notify::swapped_zones(old, new, summary));
    }));
    Some(tokio::spawn(crate::push::send::run(target, state, received)))
}

/// Zone transfers out: the shared state for the TCP servers, and the NOTIFY service,
/// fed by every swap through a channel (the reload thread never waits for it).
fn start_transfers(
    config: &Config,
    reloader: &mut Reloader,
) -> Option<(Arc<crate::xfr::Transfer>, tokio::task::JoinHandle<()>)> {
    if !config.transfer.is_active() {
        return None;
    }
    let xfr = crate::xfr::Transfer::new(config.transfer.clone(), config.tsig.clone());
    let (swaps, received) = tokio::sync::mpsc::unbounded_channel();
    reloader.on_swap(Box::new(move |old, new, summary| {
        let _ = swaps.send(crate::xfr::notify::swapped_zones(old, new, summary));
    }));
    let service = tokio::spawn(crate::xfr::notify::run(xfr.clone(), received));
    Some((xfr, service))
}

/// The DNS sockets, bound but not read yet.
struct Bound {
    addrs: Vec<SocketAddr>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<tokio::net::TcpListener>,
}

fn bind_dns(config: &Config) -> anyhow::Result<Bound> {
    let workers = config.workers;
    let mut bound = Bound {
        addrs: Vec::new(),
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for addr in &config.listen {
        let (udp, listener) =
            listen::bind_all(*addr, workers).with_context(|| format!("cannot listen on {addr}"))?;
        bound.addrs.push(udp[0].local_addr()?);
        bound.udp.extend(udp);
        bound.tcp.push(listener);
    }
    Ok(bound)
}

/// Starts reading the DNS sockets: TCP servers on the runtime, UDP worker threads.
fn serve_dns(
    bound: Bound,
    cell: &Arc<SnapshotCell>,
    config: &Config,
    stop: &CancellationToken,
    stats: &QueryStats,
    rrl: &Arc<RrlCounters>,
    transfer: &Option<Arc<crate::xfr::Transfer>>,
) -> anyhow::Result<(JoinSet<()>, UdpWorkers)> {
    let limits = tcp_limits(config, bound.udp.len());
    let mut tcp = JoinSet::new();
    for listener in bound.tcp {
        tcp.spawn(dns::tcp::serve(
            listener,
            cell.clone(),
            limits,
            stop.clone(),
            stats.block(),
            transfer.clone(),
        ));
    }
    let rrl_config = Arc::new(config.rrl.clone());
    let keys = Arc::new(config.tsig.clone());
    let udp = UdpWorkers::spawn(bound.udp, cell.clone(), rrl_config, rrl.clone(), stats, keys)
        .context("cannot start the UDP workers")?;
    Ok((tcp, udp))
}

/// The configured TCP limits, the cap lowered to what the open-files limit allows
/// after raising it to the hard limit. `sockets` counts every UDP socket bound.
fn tcp_limits(config: &Config, sockets: usize) -> dns::tcp::TcpLimits {
    match crate::os::raise_open_files_limit() {
        Some(open_files) => {
            let listening = (sockets + config.listen.len()) as u64;
            // The admin server's connections are capped on their own: keep room for them.
            let admin = config
                .admin
                .as_ref()
                .map_or(0, |a| a.limits.max_connections as u64 + 1);
            config
                .tcp
                .fit_open_files(open_files, dns::tcp::RESERVED_DESCRIPTORS + listening + admin)
        }
        None => config.tcp,
    }
}

/// The admin HTTP server, when `[admin]` is configured: its address.
async fn start_admin(
    config: &Config,
    state: AdminState,
    stop: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let listener = admin::bind(admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the admin server", admin.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(admin::serve(listener, state, admin.clone(), stop));
    Ok(Some(addr))
}

fn metrics_renderer(
    cell: &Arc<SnapshotCell>,
    board: &Arc<BoardCell>,
    upstream: &Upstream,
    reloader: &Reloader,
    stats: &Arc<QueryStats>,
    rrl: &Arc<RrlCounters>,
    transfers: Option<Arc<crate::xfr::Counts>>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    let stats = stats.clone();
    let sources = metrics::Sources {
        snapshot: cell.clone(),
        board: board.clone(),
        upstream: upstream.counts(),
        counters: reloader.counters(),
        backends: reloader.backends(),
        queries: Arc::new(move || stats.sum()),
        rrl: rrl.clone(),
        transfers,
        signature_cache: reloader.dnssec().map(|signing| signing.cache.clone()),
    };
    Arc::new(move || metrics::render(&sources))
}

/// Tells the reload service that published results changed.
fn notify_reload(reload: Sender<Trigger>) -> crate::refresh::OnPublish {
    Box::new(move || {
        let _ = reload.send(Trigger::Flattened);
    })
}

/// Summarises the DMARC reports for the status page (and their alerts) on a thread
/// and runtime of its own: the report store is a SQLite connection, used by one thread.
fn spawn_report_watch(
    config: &Config,
    cell: &Arc<SnapshotCell>,
    upstream: &Arc<Upstream>,
    board: Arc<crate::reports::watch::ReportBoard>,
    alerts: &crate::alerts::Alerts,
) -> anyhow::Result<ServiceHandle> {
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the report runtime")?;
    let (config, cell, upstream, alerts) = (config.clone(), cell.clone(), upstream.clone(), alerts.clone());
    let token = stop.clone();
    let handle = ServiceHandle::spawn(
        "reports",
        move || stop.cancel(),
        move || {
            crate::os::lower_thread_priority();
            // Made on this thread: it holds the store's connection across awaits.
            let run = crate::reports::watch::run(config, cell, upstream, board, alerts, token);
            runtime.block_on(run);
        },
    )
    .context("cannot start the report thread")?;
    Ok(handle)
}

/// Expansion is background work: its own thread and runtime, at the reload thread's
/// low priority, so that a burst of it never competes with queries (UDP workers and
/// TCP on the main runtime).
fn spawn_flattener(
    flattener: Flattener<crate::upstream::ResolverSource>,
    policies: tokio::sync::watch::Receiver<Vec<Arc<crate::policy::ValidPolicy>>>,
) -> anyhow::Result<ServiceHandle> {
    let stop = flattener.shutdown_token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the flattening runtime")?;
    let handle = ServiceHandle::spawn(
        "flatten",
        move || stop.cancel(),
        move || {
            crate::os::lower_thread_priority();
            runtime.block_on(flattener.run(policies));
        },
    )
    .context("cannot start the flattening thread")?;
    Ok(handle)
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
