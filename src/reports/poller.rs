//! The background service of `spfd serve` that polls the `[reports]` sources every
//! `interval`: a type with `run(shutdown)`, a readable status, and a first round at
//! start. Each round runs on a blocking thread (SQLite and files); a panic in a round
//! is caught and logged, and the next round runs as usual.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::decode::Limits;
use super::ingest::{ImportStats, Importer, Provenance, Served};
use super::mailbox::{SourceError, poll_dir, poll_maildir};
use super::store::Store;
use super::verify::{MailCheck, Verifier};
use crate::config::{Config, ReportSource};
use crate::snapshot::SnapshotCell;

/// Import errors kept in the status (the newest; all are in the store and the log).
const MAX_KEPT_ERRORS: usize = 100;

/// What the last rounds did, for a status page.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PollStatus {
    pub rounds: u64,
    /// Unix time the last round ended.
    pub last_round: Option<i64>,
    /// Totals over every round since start.
    pub imported: ImportStats,
    /// The error that ended the last round early, per source.
    pub last_errors: Vec<String>,
}

pub struct ReportPoller {
    sources: Vec<ReportSource>,
    state_dir: PathBuf,
    interval: Duration,
    limits: Limits,
    imap: super::imap::ImapSettings,
    /// How `maildir:` and IMAP messages are trusted: their DKIM is checked.
    mail: Provenance,
    status: Arc<Mutex<PollStatus>>,
    /// The server's snapshot: only reports about the domains it serves are stored.
    snapshot: Option<Arc<SnapshotCell>>,
    /// Shutdown: ends the input being read and the round.
    stop: CancellationToken,
}

impl ReportPoller {
    /// `None` when the config lists no source. Called on the runtime the poller runs
    /// on: mail is verified on it.
    pub fn from_config(config: &Config) -> Option<ReportPoller> {
        if config.reports.sources.is_empty() {
            return None;
        }
        let mail = mail_provenance(config);
        Some(ReportPoller {
            sources: config.reports.sources.clone(),
            state_dir: config.state_dir.clone(),
            interval: config.reports.interval,
            limits: Limits {
                max_xml: config.reports.max_report_bytes,
                ..Limits::default()
            },
            imap: super::imap::ImapSettings::from_config(&config.reports).with_provenance(mail.clone()),
            mail,
            status: Arc::default(),
            snapshot: None,
            stop: CancellationToken::new(),
        })
    }

    /// Stores only the reports about the domains served from `snapshot` (as it is at
    /// each round).
    pub fn serving(mut self, snapshot: Arc<SnapshotCell>) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// The domains served now; `None` (store every report) without a snapshot or
    /// while no policy is loaded.
    fn served(&self) -> Option<Served> {
        let snapshot = self.snapshot.as_ref()?.load();
        if snapshot.zones.is_empty() {
            return None;
        }
        Some(Served::new(
            snapshot.zones.values().map(|z| z.policy.domain_text.as_str()),
        ))
    }

    pub fn status(&self) -> Arc<Mutex<PollStatus>> {
        self.status.clone()
    }

    /// Polls at once, then every `interval`, until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.stop = shutdown.clone();
        let this = Arc::new(self);
        loop {
            let round = std::panic::AssertUnwindSafe(this.clone().round());
            if let Err(panic) = futures_util::FutureExt::catch_unwind(round).await {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                error!("DMARC report round panicked (the next one runs as usual): {why}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(this.interval) => {}
            }
        }
    }

    /// One round over every source.
    pub async fn round(self: Arc<Self>) {
        let mut stats = ImportStats::default();
        let mut errors = Vec::new();
        let served = self.served();
        for source in self.sources.clone() {
            if self.stop.is_cancelled() {
                break;
            }
            let this = self.clone();
            let served = served.clone();
            let result = match &source {
                ReportSource::Imap { .. } => {
                    let filter = super::imap::Filter {
                        limits: this.limits,
                        served,
                        stop: this.stop.clone(),
                    };
                    this.imap.poll(&source, &this.state_dir, filter).await
                }
                _ => tokio::task::spawn_blocking(move || this.poll_local(&source, served))
                    .await
                    .unwrap_or_else(|panic| Err(format!("the round panicked: {panic}"))),
            };
            match result {
                Ok(s) => stats.add(s),
                Err(e) => errors.push(e),
            }
        }
        self.record(stats, errors);
    }

    fn poll_local(&self, source: &ReportSource, served: Option<Served>) -> Result<ImportStats, String> {
        let mut store = Store::open_in(&self.state_dir).map_err(|e| e.to_string())?;
        let provenance = match source {
            ReportSource::Dir(_) => Provenance::Vouched,
            _ => self.mail.clone(),
        };
        let mut importer = Importer::new(&mut store, self.limits)
            .with_provenance(provenance)
            .served(served)
            .stop_on(self.stop.clone());
        let polled: Result<usize, SourceError> = match source {
            ReportSource::Maildir(root) => poll_maildir(&mut importer, root),
            ReportSource::Dir(dir) => poll_dir(&mut importer, dir),
            ReportSource::Imap { .. } => Ok(0),
        };
        polled.map_err(|e| e.to_string())?;
        importer.finish().map_err(|e| e.to_string())
    }
}

/// Mail checked for DKIM through `[upstream]`; unverified when no checker can be set
/// up (the error is logged once, and every mail report then counts as unverified).
fn mail_provenance(config: &Config) -> Provenance {
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(r) => r,
        Err(e) => {
            error!("report mail will count as unverified: {e}");
            return Provenance::Unchecked;
        }
    };
    match Verifier::new(&config.upstream) {
        Ok(v) => Provenance::Mail(MailCheck::new(Arc::new(v), runtime)),
        Err(e) => {
            error!("report mail will count as unverified: {e}");
            Provenance::Unchecked
        }
    }
}

impl ReportPoller {
    fn record(&self, stats: ImportStats, errors: Vec<String>) {
        for e in &stats.errors {
            warn!("DMARC report not read: {e}");
        }
        for e in &errors {
            warn!("DMARC report source: {e}");
        }
        if stats.inputs > 0 {
            info!(
                inputs = stats.inputs,
                reports = stats.reports,
                rows = stats.rows,
                duplicates = stats.duplicates,
                not_served = stats.not_served,
                conflicts = stats.conflicts,
                unverified = stats.unverified,
                errors = stats.errors.len(),
                "DMARC reports imported"
            );
        }
        let mut status = self.status.lock().expect("poll status lock");
        status.rounds += 1;
        status.last_round = Some(super::ingest::now());
        status.imported.add(stats);
        let excess = status.imported.errors.len().saturating_sub(MAX_KEPT_ERRORS);
        status.imported.errors.drain(..excess);
        status.last_errors = errors;
    }
}
