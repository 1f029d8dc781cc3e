//! The transfer service: one task per zone served from a backend, which transfers the
//! zone, then checks the backend's SOA serial every SOA refresh (every retry after a
//! failure, on NOTIFY) and transfers again when it changed. NOTIFYs are coalesced: a
//! check starts at most once per [`NOTIFY_INTERVAL`] per zone, and any number of
//! NOTIFYs during a check or that interval make one more check after it, so a flood
//! from a spoofed backend address costs the backend one SOA query every few seconds.
//! A failed transfer leaves the copy in service as it was. A copy older than the SOA
//! expire without a successful check is dropped: the zone's other names answer
//! SERVFAIL until the backend answers again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::LowerName;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::transfer::{self, Timers};
use super::{Backends, expired, register};
use crate::config::BackendConfig;
use crate::policy::ValidPolicy;

/// Wait before trying again when the first transfer failed (no SOA timers known yet).
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The shortest time between the starts of two checks of one zone when NOTIFY asks
/// for them.
pub const NOTIFY_INTERVAL: Duration = Duration::from_secs(2);

/// Called after a copy changed (the reload service rebuilds the zone).
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// Runs until `stop`: follows the policies in service and keeps one transfer task per
/// zone with a backend.
pub async fn run(
    backends: Arc<Backends>,
    mut policies: watch::Receiver<Vec<Arc<ValidPolicy>>>,
    on_change: OnChange,
    limits: BackendConfig,
    stop: CancellationToken,
) {
    let mut tasks: HashMap<(LowerName, SocketAddr), (Arc<ValidPolicy>, CancellationToken)> = HashMap::new();
    loop {
        let wanted: HashMap<(LowerName, SocketAddr), Arc<ValidPolicy>> = policies
            .borrow_and_update()
            .iter()
            .filter_map(|p| Some(((p.zone_lower.clone(), p.backend?), p.clone())))
            .collect();
        tasks.retain(|key, (policy, token)| {
            let keep = wanted.get(key).is_some_and(|p| Arc::ptr_eq(p, policy));
            if !keep {
                token.cancel();
                if !wanted.contains_key(key) {
                    backends.forget(&key.0);
                }
            }
            keep
        });
        for (key, policy) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let token = stop.child_token();
            let task = ZoneTask {
                policy: policy.clone(),
                backend: key.1,
                backends: backends.clone(),
                on_change: on_change.clone(),
                limits,
            };
            tokio::spawn(task.run(token.clone()));
            tasks.insert(key, (policy, token));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = policies.changed() => if changed.is_err() { return },
        }
    }
}

/// The transfers of one zone.
struct ZoneTask {
    policy: Arc<ValidPolicy>,
    backend: SocketAddr,
    backends: Arc<Backends>,
    on_change: OnChange,
    limits: BackendConfig,
}

/// What a task knows of its copy.
#[derive(Default)]
struct CopyState {
    timers: Option<Timers>,
    /// The last time the backend answered (a transfer or an unchanged serial).
    confirmed: Option<Instant>,
}

impl ZoneTask {
    async fn run(self, stop: CancellationToken) {
        let wake = Arc::new(Notify::new());
        register(&self.policy.zone_lower, &wake);
        let mut state = CopyState::default();
        loop {
            let started = tokio::time::Instant::now();
            let wait = match self.refresh(&mut state).await {
                Ok(timers) => {
                    self.backends.succeeded(&self.policy.zone_lower);
                    Duration::from_secs(u64::from(timers.refresh))
                }
                Err(e) => {
                    warn!(zone = %self.policy.zone, backend = %self.backend, "zone transfer failed, the copy in service stays: {e}");
                    self.backends.failed(&self.policy.zone_lower, e.to_string());
                    self.expire_if_due(&mut state);
                    state
                        .timers
                        .map_or(FIRST_RETRY, |t| Duration::from_secs(u64::from(t.retry)))
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {
                    // NOTIFYs from now until the check starts leave one wake-up
                    // (`Notify` keeps one permit): that is the one more check.
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep_until(started + NOTIFY_INTERVAL) => {}
                    }
                }
            }
        }
    }

    /// Checks the serial and transfers the zone when it changed.
    async fn refresh(&self, state: &mut CopyState) -> Result<Timers, transfer::TransferError> {
        let apex = &self.policy.zone;
        let key = self.policy.backend_tsig.as_ref();
        self.backends.count_check();
        let soa = transfer::soa(self.backend, apex, key).await?;
        if let Some(timers) = state.timers.filter(|t| t.serial == soa.serial) {
            state.confirmed = Some(Instant::now());
            return Ok(timers);
        }
        let managed = self.policy.managed();
        let (data, timers) = transfer::axfr(self.backend, apex, key, &managed, &self.limits).await?;
        self.backends.count_transfer();
        info!(zone = %apex, backend = %self.backend, serial = timers.serial, records = data.records.len(), "zone transferred");
        self.backends
            .set(&self.policy.zone_lower, &self.policy.domain_text, Arc::new(data));
        state.timers = Some(timers);
        state.confirmed = Some(Instant::now());
        (self.on_change)();
        Ok(timers)
    }

    /// Drops the copy once the backend has not answered for the SOA expire.
    fn expire_if_due(&self, state: &mut CopyState) {
        let (Some(timers), Some(confirmed)) = (state.timers, state.confirmed) else {
            return;
        };
        if confirmed.elapsed() < Duration::from_secs(u64::from(timers.expire)) {
            return;
        }
        warn!(zone = %self.policy.zone, backend = %self.backend, "the copy is past its SOA expire: other names answer SERVFAIL");
        let copy = Arc::new(expired(self.backend));
        self.backends
            .set(&self.policy.zone_lower, &self.policy.domain_text, copy);
        *state = CopyState::default();
        (self.on_change)();
    }
}
