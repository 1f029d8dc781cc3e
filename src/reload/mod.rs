//! The reload service: the one writer of the snapshot. It reads the policy directory,
//! keeps the last good version of every file whose new version is invalid, builds a new
//! snapshot and swaps it in. Triggers: a change in the policy directory (debounced) and
//! SIGHUP.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name};
use tracing::{error, info, warn};

use crate::admin::Problems;
use crate::alerts::{Alerts, Event};
use crate::backend::Backends;
use crate::config::Config;
use crate::diag::{Diagnostic, Severity};
use crate::logging::Escaped;
use crate::metrics::Counters;
use crate::policy::ValidPolicy;
use crate::published::Published;
use crate::reports::authorize;
use crate::snapshot::serials::SerialBook;
use crate::snapshot::signed::Signing;
use crate::snapshot::{Builder, Claims, ServerIdentity, Snapshot, SnapshotCell, SpfAnswer, Summary};

mod files;
mod service;

pub use files::policy_files;
use files::{FileChange, PolicyFiles, file_error};
pub use service::{Scope, Trigger, spawn};

/// How long file events are gathered before one reload: editors write a file in
/// several steps (truncate, write, rename).
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How long the reload thread waits for queries still reading a replaced snapshot.
const RELEASE_WAIT: Duration = Duration::from_millis(200);

/// Called after every swap with the snapshot replaced, the new one and what changed
/// (zone transfers feed their journal and NOTIFY from it; push sends updates). It runs
/// on the reload thread: it must hand the work over, not do it.
pub type SwapHook = Box<dyn Fn(&Snapshot, &Snapshot, &Summary) + Send>;

/// What one reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// The generation in service after the reload.
    pub generation: u64,
    /// Whether a new snapshot was swapped in.
    pub swapped: bool,
    /// Problems in files that changed since the last reload (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
    pub zones: usize,
    /// From reading the files to the swap.
    pub build_time: std::time::Duration,
}

impl ReloadReport {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

pub struct Reloader {
    files: PolicyFiles,
    state_dir: PathBuf,
    servers: ServerIdentity,
    cell: Arc<SnapshotCell>,
    /// Who serves each name and mail domain in the snapshot in service: kept between
    /// swaps, so a swap checks only the policies it changes.
    claims: Claims,
    serials: SerialBook,
    /// Flattened SPF records, published in place of the records as written.
    published: Arc<Published>,
    /// The policies in service after each reload, for the flattening service.
    served: tokio::sync::watch::Sender<Vec<Arc<ValidPolicy>>>,
    /// False for `spfd check` and `spfd records`, which must not touch the state of a
    /// running server.
    persist: bool,
    /// The snapshot replaced by the last swap, held until the next one, so that it is
    /// freed here and not by a query thread that happened to hold it last.
    retired: Option<Arc<Snapshot>>,
    /// The last reload failed half-way: the next one reads every file, whatever
    /// triggered it.
    read_all_next: bool,
    problems: Arc<ArcSwap<Problems>>,
    counters: Arc<Counters>,
    alerts: Alerts,
    /// Domains switched away from macro mode: until when their last macro table stays.
    macro_kept: HashMap<String, u64>,
    /// The DMARC report authorisations each file's policy needs: (host, owner).
    report_needs: HashMap<PathBuf, Vec<(String, String)>>,
    /// The same by report host: the owners to publish in the zone that holds the host.
    report_hosts: BTreeMap<String, BTreeSet<String>>,
    /// Told of every swap.
    swap_hooks: Vec<SwapHook>,
    /// The copies of zones served from a backend (transferred by [`crate::backend`]).
    backends: Arc<Backends>,
    /// DNSSEC signing (`[dnssec] enabled`); zones are signed when built.
    dnssec: Option<Arc<Signing>>,
}

impl Reloader {
    pub fn new(config: &Config, cell: Arc<SnapshotCell>, published: Arc<Published>) -> Self {
        Self::new_with_keys(config, cell, published, true)
    }

    /// `make_keys` false: DNSSEC keys are read, never made (the offline commands).
    fn new_with_keys(
        config: &Config,
        cell: Arc<SnapshotCell>,
        published: Arc<Published>,
        make_keys: bool,
    ) -> Self {
        let serials = SerialBook::load(&config.state_dir).unwrap_or_else(|e| {
            warn!(dir = %config.state_dir.display(), "cannot read zone serials, starting from the clock: {e}");
            SerialBook::default()
        });
        // Canonical, so that paths from file events and from listing the directory
        // name a file the same way.
        let dir = std::fs::canonicalize(&config.policy_dir).unwrap_or_else(|_| config.policy_dir.clone());
        Self {
            files: PolicyFiles::new(dir, config.tsig.clone()),
            state_dir: config.state_dir.clone(),
            servers: ServerIdentity {
                nameservers: config.nameservers.clone(),
                hostmaster: config.hostmaster.clone(),
            },
            cell,
            claims: Claims::default(),
            serials,
            published,
            served: tokio::sync::watch::Sender::new(Vec::new()),
            persist: true,
            retired: None,
            read_all_next: false,
            problems: Arc::default(),
            counters: Arc::default(),
            alerts: Alerts::default(),
            macro_kept: HashMap::new(),
            report_needs: HashMap::new(),
            report_hosts: BTreeMap::new(),
            swap_hooks: Vec::new(),
            backends: Arc::default(),
            dnssec: Signing::open_with(&config.dnssec, &config.state_dir, make_keys).unwrap_or_else(|e| {
                error!("DNSSEC keys cannot be used, zones are served unsigned: {e}");
                None
            }),
        }
    }

    /// The copies of backend zones this reloader serves (the transfer service fills them).
    pub fn backends(&self) -> Arc<Backends> {
        self.backends.clone()
    }

    /// The signing keys and validity, when DNSSEC is on.
    pub fn dnssec(&self) -> Option<&Arc<Signing>> {
        self.dnssec.as_ref()
    }

    /// A reloader that reads state but never writes it: for the offline commands.
    pub fn offline(config: &Config, cell: Arc<SnapshotCell>) -> Self {
        Self::offline_with(config, cell, Arc::new(Published::default()))
    }

    /// [`Reloader::offline`] publishing the given flattened records (`spfd push`).
    /// Reads DNSSEC keys, never makes them.
    pub fn offline_with(config: &Config, cell: Arc<SnapshotCell>, published: Arc<Published>) -> Self {
        let mut reloader = Self::new_with_keys(config, cell, published, false);
        reloader.persist = false;
        reloader
    }

    /// The policies in service, updated after every reload.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Vec<Arc<ValidPolicy>>> {
        self.served.subscribe()
    }

    pub fn policy_dir(&self) -> &Path {
        self.files.dir()
    }

    /// Reads the whole policy directory and swaps in a new snapshot if anything served
    /// changed.
    pub fn reload(&mut self) -> ReloadReport {
        self.reload_scope(Scope::All)
    }

    /// Reads what `scope` says (every file, some files, or none: only the flattened
    /// records changed) and swaps in a new snapshot with the zones that changed: those
    /// of changed files and of domains whose published expansion changed.
    pub fn reload_scope(&mut self, scope: Scope) -> ReloadReport {
        let mut report = ReloadReport::default();
        let started = std::time::Instant::now();
        let scope = if std::mem::take(&mut self.read_all_next) {
            Scope::All
        } else {
            scope
        };
        let file_changes = match scope {
            Scope::All => match self.files.read_all(&mut report.diagnostics) {
                Ok(changes) => changes,
                Err(d) => {
                    report.diagnostics.push(d);
                    report.generation = self.cell.load().generation;
                    return report;
                }
            },
            Scope::Paths(paths) => self.files.read_paths(paths, &mut report.diagnostics),
            Scope::Nothing => Vec::new(),
        };
        let files_changed = !file_changes.is_empty();
        let read: Vec<PathBuf> = file_changes.iter().map(|c| c.path.clone()).collect();
        let current = self.cell.load_full();
        let file_changes = self.with_report_zones(&current, file_changes);
        let changes = self.with_republished(file_changes);
        let changes = self.with_rekeyed(changes);
        let builder = self.stage(&current, changes, &mut report.diagnostics);
        if files_changed {
            self.announce_served();
        }
        let (candidate, summary, claims) = builder.finish_keeping_claims(
            current.generation + 1,
            &self.servers,
            &mut self.serials,
            unix_now(),
        );
        self.claims = claims;
        report.zones = candidate.zone_count();
        if summary.is_empty() {
            self.note_problems(&read, &report.diagnostics);
            report.generation = current.generation;
            report.zones = current.zone_count();
            return report;
        }
        report.generation = candidate.generation;
        report.swapped = true;
        let candidate = Arc::new(candidate);
        self.cell.store(candidate.clone());
        // After the swap: a file's error is cleared on the status page once its new
        // version is served, not before.
        self.note_problems(&read, &report.diagnostics);
        for hook in &self.swap_hooks {
            hook(&current, &candidate, &summary);
        }
        drop(candidate);
        self.retired = Some(current);
        report.build_time = started.elapsed();
        if self.persist {
            log_zone_changes(&summary, report.generation, report.zones, report.build_time);
            if let Err(e) = self.serials.save(&self.state_dir) {
                warn!(dir = %self.state_dir.display(), "cannot save zone serials: {e}");
            }
        }
        self.release_retired(summary.len());
        report
    }

    /// The current errors of each file, for the status page: a file with errors in
    /// this reload has those; a file whose new version was taken (or that is gone)
    /// has none.
    fn note_problems(&mut self, read: &[PathBuf], diags: &[Diagnostic]) {
        let mut problems = (**self.problems.load()).clone();
        let mut errors: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for d in diags.iter().filter(|d| d.severity == Severity::Error) {
            errors.entry(d.path.clone()).or_default().push(d.to_string());
        }
        let count = errors.values().map(Vec::len).sum::<usize>() as u64;
        self.counters.reload_errors.fetch_add(count, Ordering::Relaxed);
        let cleared = read.iter().filter(|p| !errors.contains_key(*p)).count();
        if errors.is_empty() && cleared == 0 {
            return;
        }
        for path in read {
            problems.remove(path);
            // Errors in a policy's zone file are the zone file's (file:line).
            for dep in self.files.dependencies_of(path) {
                problems.remove(&dep);
            }
        }
        for (path, errors) in &errors {
            if problems.get(path) != Some(errors) {
                self.alerts.send(reload_error(path, errors));
            }
        }
        problems.extend(errors);
        self.problems.store(Arc::new(problems));
    }

    /// Current errors of policy files, by file (for the admin server).
    pub fn problems(&self) -> Arc<ArcSwap<Problems>> {
        self.problems.clone()
    }

    /// Sends an alert for every new error in a policy file.
    pub fn set_alerts(&mut self, alerts: Alerts) {
        self.alerts = alerts;
    }

    /// Calls `hook` after every swap from now on.
    pub fn on_swap(&mut self, hook: SwapHook) {
        self.swap_hooks.push(hook);
    }

    /// Counters for metrics.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Follows the DMARC report authorisations each policy needs
    /// (`<domain>._report._dmarc.<host>`, RFC 7489 7.1) and adds to the changes the
    /// files of served zones whose set of them changed, so those zones are rebuilt.
    fn with_report_zones(&mut self, current: &Snapshot, mut changes: Vec<FileChange>) -> Vec<FileChange> {
        let mut hosts: HashSet<String> = HashSet::new();
        for change in &changes {
            let old = self.report_needs.remove(&change.path).unwrap_or_default();
            let new = self
                .files
                .served(&change.path)
                .map(|p| authorize::needed(p))
                .unwrap_or_default();
            for (host, owner) in &old {
                if let Some(owners) = self.report_hosts.get_mut(host) {
                    owners.remove(owner);
                }
                hosts.insert(host.clone());
            }
            for (host, owner) in &new {
                self.report_hosts
                    .entry(host.clone())
                    .or_default()
                    .insert(owner.clone());
                hosts.insert(host.clone());
            }
            if !new.is_empty() {
                self.report_needs.insert(change.path.clone(), new);
            }
        }
        self.report_hosts.retain(|_, owners| !owners.is_empty());
        let mut seen: HashSet<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
        for host in hosts {
            let Some(zone) = host_zone(current, &host) else {
                continue;
            };
            let path = zone.policy.path.clone();
            if seen.insert(path.clone()) {
                let previous = self.files.served(&path).cloned();
                changes.push(FileChange { path, previous });
            }
        }
        changes
    }

    /// The report authorisation records that fall in `policy`'s zone (and in no zone
    /// served below it).
    fn report_records(&self, current: &Snapshot, policy: &ValidPolicy) -> Vec<(Name, String)> {
        let zone = policy.zone_text.trim_end_matches('.');
        let under = |host: &str| host == zone || host.ends_with(&format!(".{zone}"));
        self.report_hosts
            .iter()
            .filter(|(host, _)| under(host) && !deeper_zone(current, host, zone))
            .flat_map(|(_, owners)| owners.iter())
            .filter_map(|owner| {
                Some((
                    Name::from_ascii(format!("{owner}.")).ok()?,
                    authorize::TEXT.to_string(),
                ))
            })
            .collect()
    }

    /// The file changes plus the files of domains whose published expansion changed
    /// (their served version stays: the zone is rebuilt with the new answers).
    fn with_republished(&mut self, mut changes: Vec<FileChange>) -> Vec<FileChange> {
        let mut seen: HashSet<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
        let backends = self.backends.take_dirty();
        for domain in self.published.take_dirty().into_iter().chain(backends) {
            let Some(path) = self.claims.file_of(&domain).map(Path::to_path_buf) else {
                continue;
            };
            if seen.insert(path.clone()) {
                let previous = self.files.served(&path).cloned();
                changes.push(FileChange { path, previous });
            }
        }
        changes
    }

    /// After keys were added or retired (`spfd dnssec rollover`), every served file, so
    /// that the zones whose keys changed are rebuilt (the others keep their content
    /// fingerprint and are not).
    fn with_rekeyed(&mut self, mut changes: Vec<FileChange>) -> Vec<FileChange> {
        let Some(signing) = &self.dnssec else {
            return changes;
        };
        match signing.store.refresh() {
            Ok(false) => return changes,
            Ok(true) => {}
            Err(e) => {
                error!("DNSSEC keys: {e}");
                return changes;
            }
        }
        let mut seen: HashSet<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
        let paths: Vec<PathBuf> = self.files.all_served().map(|p| p.path.clone()).collect();
        for path in paths {
            if seen.insert(path.clone()) {
                let previous = self.files.served(&path).cloned();
                changes.push(FileChange { path, previous });
            }
        }
        changes
    }

    /// Stages every change on a builder over `current`: removals first, then new
    /// versions, so that a new or changed file claiming a name another file serves is
    /// the one refused (and its previous version stays served).
    fn stage(
        &mut self,
        current: &Arc<Snapshot>,
        changes: Vec<FileChange>,
        diags: &mut Vec<Diagnostic>,
    ) -> Builder {
        let mut builder =
            Builder::on(current.clone(), std::mem::take(&mut self.claims)).with_dnssec(self.dnssec.clone());
        let (removed, updated): (Vec<FileChange>, Vec<FileChange>) = changes
            .into_iter()
            .partition(|c| self.files.served(&c.path).is_none());
        for change in removed {
            if let Some(previous) = &change.previous {
                builder.remove(previous);
            }
        }
        for change in updated {
            let Some(policy) = self.files.served(&change.path).cloned() else {
                continue;
            };
            let policy = self.with_backend_copy(policy);
            let served = served_answer(current, &policy);
            let spf = self.published.answer_for(&policy, served);
            let spf = self.keep_macro_answers(&policy, served, spf);
            let reports = self.report_records(current, &policy);
            if let Err(conflict) = builder.replace_with(change.previous.as_deref(), policy, spf, &reports) {
                diags.push(file_error(&change.path, conflict.to_string()));
                self.files.set_served(&change.path, change.previous);
            }
        }
        builder
    }

    /// A policy with a backend, with the backend's copy of the zone as its zone data.
    fn with_backend_copy(&self, policy: Arc<ValidPolicy>) -> Arc<ValidPolicy> {
        let Some(backend) = policy.backend else {
            return policy;
        };
        let copy = self.backends.copy(&policy.zone_lower, backend);
        Arc::new(ValidPolicy {
            zone_data: Some(copy),
            ..(*policy).clone()
        })
    }

    /// After a switch from macro mode, the per-address names keep answering from the
    /// last macro table for twice the TTL (receivers may hold the macro head that long):
    /// taking them away would give those receivers NXDOMAIN, a permerror. Past that,
    /// the table goes with the next rebuild of the zone.
    fn keep_macro_answers(
        &mut self,
        policy: &ValidPolicy,
        served: Option<&Arc<SpfAnswer>>,
        spf: Option<Arc<SpfAnswer>>,
    ) -> Option<Arc<SpfAnswer>> {
        let domain = &policy.domain_text;
        let kept = served.and_then(|s| s.macro_table.clone());
        let (Some(table), false) = (kept, spf.as_ref().is_some_and(|a| a.macro_table.is_some())) else {
            self.macro_kept.remove(domain);
            return spf;
        };
        let now = unix_now();
        let until = *self
            .macro_kept
            .entry(domain.clone())
            .or_insert(now + 2 * u64::from(policy.ttl));
        if now >= until {
            self.macro_kept.remove(domain);
            return spf;
        }
        let head = match (&spf, &policy.spf) {
            (Some(answer), _) => answer.head.clone(),
            (None, Some(written)) => written.published_strings().into(),
            (None, None) => return spf,
        };
        let parts = spf.as_ref().map(|a| a.parts.clone()).unwrap_or_default();
        Some(Arc::new(SpfAnswer {
            head,
            parts,
            macro_table: Some(table),
        }))
    }

    /// Frees the replaced snapshot here once the queries that were reading it are done
    /// (they hold it for one batch), so that two whole generations do not stay resident
    /// after a swap that changed every zone. If a reader still holds it after
    /// [`RELEASE_WAIT`], it stays retired until the next swap; a query thread never
    /// frees it.
    fn release_retired(&mut self, replaced: usize) {
        let Some(mut retired) = self.retired.take() else {
            return;
        };
        let total = retired.zone_count().max(1);
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        loop {
            match Arc::try_unwrap(retired) {
                Ok(snapshot) => {
                    drop(snapshot);
                    // Trimming walks the whole heap: worth it after a large part of the
                    // zones was replaced, not after one edit among many.
                    if replaced > 0 && replaced * 8 >= total {
                        crate::os::return_free_memory();
                    }
                    return;
                }
                Err(shared) => retired = shared,
            }
            if std::time::Instant::now() >= deadline {
                self.retired = Some(retired);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forgets what was read (not what is served): the next reload reads and parses
    /// every file again.
    fn forget_files(&mut self) {
        self.files.forget_digests();
        self.read_all_next = true;
    }

    /// Tells the flattening service which policies are in service, when that changed.
    fn announce_served(&self) {
        let served: Vec<Arc<ValidPolicy>> = self.files.all_served().cloned().collect();
        self.served.send_if_modified(|current| {
            let same =
                current.len() == served.len() && current.iter().zip(&served).all(|(a, b)| Arc::ptr_eq(a, b));
            if !same {
                *current = served;
            }
            !same
        });
    }
}

/// The SPF answer the snapshot in service publishes for `policy`'s mail domain in the
/// same zone: what stays served until an expansion of the new version exists.
fn served_answer<'s>(
    current: &'s Snapshot,
    policy: &ValidPolicy,
) -> Option<&'s Arc<crate::snapshot::SpfAnswer>> {
    let zone = current.zones.get(&policy.zone_lower)?;
    if zone.policy.domain_text != policy.domain_text {
        return None;
    }
    zone.spf_answer.as_ref()
}

fn reload_error(path: &Path, errors: &[String]) -> Event {
    Event {
        event: "reload_error",
        at: unix_now(),
        domain: None,
        message: format!("{} has errors; its previous version stays served", path.display()),
        detail: serde_json::json!({ "file": path.display().to_string(), "errors": errors }),
    }
}

/// The served zone that holds `host` (its closest enclosing apex).
fn host_zone<'s>(current: &'s Snapshot, host: &str) -> Option<&'s Arc<crate::snapshot::Zone>> {
    let name = Name::from_ascii(format!("{host}.")).ok()?;
    current.find_zone(&LowerName::new(&name))
}

/// Whether a zone served below `zone` holds `host` (then the records go there).
fn deeper_zone(current: &Snapshot, host: &str, zone: &str) -> bool {
    host_zone(current, host).is_some_and(|z| {
        let apex = z.policy.zone_text.trim_end_matches('.');
        apex != zone && apex.ends_with(&format!(".{zone}"))
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Logs what a swap changed: each zone when few changed, counts when many did.
fn log_zone_changes(summary: &Summary, generation: u64, zones: usize, build_time: Duration) {
    const DETAIL: usize = 20;
    if summary.len() <= DETAIL {
        for (apex, serial) in &summary.added {
            info!(zone = %apex, serial, "zone added");
        }
        for (apex, serial) in &summary.changed {
            info!(zone = %apex, serial, "zone changed");
        }
        for apex in &summary.removed {
            info!(zone = %apex, "zone removed");
        }
    }
    info!(
        generation,
        zones,
        added = summary.added.len(),
        changed = summary.changed.len(),
        removed = summary.removed.len(),
        build_ms = build_time.as_millis() as u64,
        "snapshot swapped"
    );
}

/// Logs a reload's problems: errors as errors, warnings as warnings.
pub fn log_report(report: &ReloadReport) {
    for d in &report.diagnostics {
        match d.severity {
            Severity::Error => error!("{}; the previous version stays served", Escaped(d)),
            Severity::Warning => warn!("{}", Escaped(d)),
        }
    }
}
