//! While serving: after every poll of the report sources, each served domain that has
//! reports gets its summary and advice recomputed for the status page and `/status`,
//! and the alerts between the previous summary and the new one (a new unauthorised
//! source above the volume threshold, a legitimate sender that starts failing) are
//! sent through `[alerts]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::status::{Alert, AlertThresholds, DomainStatus, alerts, domain_status, server_includes};
use super::store::Store;
use crate::alerts::{Alerts, Event};
use crate::config::Config;
use crate::snapshot::SnapshotCell;
use crate::spf::DnsLookup;

/// Each domain's report summary and advice, by domain (no trailing dot).
pub type ReportBoard = ArcSwap<BTreeMap<String, DomainStatus>>;

/// Recomputes the board every `every` (the sources' poll interval) until `stop`.
pub async fn run<D: DnsLookup>(
    config: Config,
    snapshot: Arc<SnapshotCell>,
    dns: Arc<D>,
    board: Arc<ReportBoard>,
    alerts: Alerts,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.reports.interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = refresh(&config, &snapshot, &*dns, &board, &alerts).await {
            warn!("cannot summarise the DMARC reports: {e}");
        }
    }
}

/// One pass: every served domain with reports.
pub async fn refresh<D: DnsLookup>(
    config: &Config,
    snapshot: &SnapshotCell,
    dns: &D,
    board: &ReportBoard,
    alerts: &Alerts,
) -> Result<(), super::store::StoreError> {
    if !Store::exists_in(&config.state_dir) {
        return Ok(());
    }
    let mut store = Store::open_in(&config.state_dir)?;
    let expired = super::status::expire(&mut store, config)?;
    if expired > 0 {
        tracing::info!(reports = expired, "DMARC reports past the retention deleted");
    }
    let snapshot = snapshot.load_full();
    let before = board.load_full();
    let mut after = BTreeMap::new();
    for zone in snapshot.zones.values() {
        let policy = &zone.policy;
        let domain = policy.domain_text.trim_end_matches('.').to_string();
        if policy.dmarc.is_none() || !store.has_reports(&domain)? {
            continue;
        }
        let includes = server_includes(&snapshot, policy);
        match domain_status(config, policy, &includes, dns, None).await {
            Ok(status) => {
                if let Some(old) = before.get(&domain) {
                    send(alerts, &domain, alerts_between(&old.summary, &status.summary));
                }
                after.insert(domain, status);
            }
            Err(e) => warn!(domain = %domain, "cannot summarise the DMARC reports: {e}"),
        }
    }
    board.store(Arc::new(after));
    Ok(())
}

fn alerts_between(before: &super::analysis::Summary, after: &super::analysis::Summary) -> Vec<Alert> {
    alerts(before, after, &AlertThresholds::default())
}

fn send(alerts: &Alerts, domain: &str, found: Vec<Alert>) {
    for alert in found {
        let (event, message) = match &alert {
            Alert::NewUnauthorised { ip, messages, .. } => (
                "report_unauthorised_source",
                format!("{ip} sent {messages} messages in the name of {domain} and nothing aligned passed"),
            ),
            Alert::LegitimateFailing {
                ip,
                failing,
                messages,
                ..
            } => (
                "report_legitimate_failing",
                format!(
                    "{ip}, a legitimate sender for {domain}, failed DMARC for {failing} of {messages} messages"
                ),
            ),
        };
        alerts.send(Event {
            event,
            at: crate::alerts::now(),
            domain: Some(domain.to_string()),
            message,
            detail: serde_json::to_value(&alert).unwrap_or_default(),
        });
    }
}
