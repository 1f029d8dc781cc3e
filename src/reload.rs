//! The reload service: the one writer of the snapshot. It reads the policy directory,
//! keeps the last good version of every file whose new version is invalid, builds a new
//! snapshot and swaps it in. Triggers: a change in the policy directory (debounced) and
//! SIGHUP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::LowerName;
use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::diag::{Diagnostic, Severity};
use crate::policy::{self, ValidPolicy};
use crate::published::Published;
use crate::service::ServiceHandle;
use crate::snapshot::serials::SerialBook;
use crate::snapshot::{Builder, ServerIdentity, Snapshot, SnapshotCell};

/// How long file events are gathered before one reload: editors write a file in
/// several steps (truncate, write, rename).
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How long the reload thread waits for queries still reading a replaced snapshot.
const RELEASE_WAIT: Duration = Duration::from_millis(200);

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

/// The state of one policy file as last read.
struct FileState {
    /// A digest of the text last read, to skip files that did not change (the text
    /// itself is not kept: a hundred thousand policies would hold it all).
    digest: TextDigest,
    /// The version of this file in service, if any: the last valid one.
    served: Option<Arc<ValidPolicy>>,
}

/// The length and a 64-bit hash of a file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextDigest(usize, u64);

impl TextDigest {
    fn of(bytes: &[u8]) -> Self {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hasher: BuildHasherDefault<std::collections::hash_map::DefaultHasher> = Default::default();
        TextDigest(bytes.len(), hasher.hash_one(bytes))
    }
}

pub struct Reloader {
    policy_dir: PathBuf,
    state_dir: PathBuf,
    servers: ServerIdentity,
    cell: Arc<SnapshotCell>,
    files: BTreeMap<PathBuf, FileState>,
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
}

impl Reloader {
    pub fn new(config: &Config, cell: Arc<SnapshotCell>, published: Arc<Published>) -> Self {
        let serials = SerialBook::load(&config.state_dir).unwrap_or_else(|e| {
            warn!(dir = %config.state_dir.display(), "cannot read zone serials, starting from the clock: {e}");
            SerialBook::default()
        });
        Self {
            // Canonical, so that paths from file events and from listing the directory
            // name a file the same way.
            policy_dir: std::fs::canonicalize(&config.policy_dir)
                .unwrap_or_else(|_| config.policy_dir.clone()),
            state_dir: config.state_dir.clone(),
            servers: ServerIdentity {
                nameservers: config.nameservers.clone(),
                hostmaster: config.hostmaster.clone(),
            },
            cell,
            files: BTreeMap::new(),
            serials,
            published,
            served: tokio::sync::watch::Sender::new(Vec::new()),
            persist: true,
            retired: None,
            read_all_next: false,
        }
    }

    /// A reloader that reads state but never writes it: for the offline commands.
    pub fn offline(config: &Config, cell: Arc<SnapshotCell>) -> Self {
        Self {
            persist: false,
            ..Self::new(config, cell, Arc::new(Published::default()))
        }
    }

    /// The policies in service, updated after every reload.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Vec<Arc<ValidPolicy>>> {
        self.served.subscribe()
    }

    pub fn policy_dir(&self) -> &Path {
        &self.policy_dir
    }

    /// Reads the whole policy directory and swaps in a new snapshot if anything served
    /// changed.
    pub fn reload(&mut self) -> ReloadReport {
        self.reload_scope(Scope::All)
    }

    /// Reads what `scope` says (every file, some files, or none: only the flattened
    /// records changed) and swaps in a new snapshot if anything served changed.
    pub fn reload_scope(&mut self, scope: Scope) -> ReloadReport {
        let mut report = ReloadReport::default();
        let started = std::time::Instant::now();
        let scope = if std::mem::take(&mut self.read_all_next) {
            Scope::All
        } else {
            scope
        };
        let changed = match scope {
            Scope::All => match policy_files(&self.policy_dir) {
                Ok(paths) => {
                    let listed: HashSet<&PathBuf> = paths.iter().collect();
                    self.files.retain(|path, _| listed.contains(path));
                    self.read_files(&paths, &mut report.diagnostics)
                }
                Err(d) => {
                    report.diagnostics.push(d);
                    report.generation = self.cell.load().generation;
                    return report;
                }
            },
            Scope::Paths(paths) => {
                let mut present = Vec::new();
                let ours: Vec<PathBuf> = paths.into_iter().filter(|p| self.is_policy_file(p)).collect();
                for path in ours {
                    if path.is_file() {
                        present.push(path);
                    } else {
                        self.files.remove(&path);
                    }
                }
                self.read_files(&present, &mut report.diagnostics)
            }
            Scope::Nothing => HashSet::new(),
        };
        let builder = self.assemble(&changed, &mut report.diagnostics);
        self.announce_served();
        let current = self.cell.load_full();
        let candidate = builder.finish(
            current.generation + 1,
            &self.servers,
            &mut self.serials,
            unix_now(),
        );
        report.zones = candidate.zone_count();
        if same_content(&current, &candidate) {
            report.generation = current.generation;
            return report;
        }
        report.generation = candidate.generation;
        report.swapped = true;
        let candidate = Arc::new(candidate);
        self.cell.store(candidate.clone());
        self.retired = Some(current.clone());
        report.build_time = started.elapsed();
        if self.persist {
            log_zone_changes(&current, &candidate, report.build_time);
            if let Err(e) = self.serials.save(&self.state_dir) {
                warn!(dir = %self.state_dir.display(), "cannot save zone serials: {e}");
            }
        }
        drop(current);
        self.release_retired();
        report
    }

    /// Frees the replaced snapshot here once the queries that were reading it are done
    /// (they hold it for one batch), so that two whole generations do not stay resident
    /// after a swap that changed every zone. If a reader still holds it after
    /// [`RELEASE_WAIT`], it stays retired until the next swap; a query thread never
    /// frees it.
    fn release_retired(&mut self) {
        let Some(mut retired) = self.retired.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        loop {
            match Arc::try_unwrap(retired) {
                Ok(snapshot) => {
                    // Zones the new snapshot kept are shared; the others are freed here.
                    let freed = snapshot
                        .zones
                        .values()
                        .filter(|z| Arc::strong_count(z) == 1)
                        .count();
                    let total = snapshot.zone_count();
                    drop(snapshot);
                    // Trimming walks the whole heap: worth it after a large part of the
                    // zones was replaced, not after one edit among many.
                    if freed > 0 && freed * 8 >= total {
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

    /// Policy files that are symbolic links, by canonical target.
    fn symlinked_files(&self) -> HashMap<PathBuf, PathBuf> {
        self.files
            .keys()
            .filter(|p| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()))
            .filter_map(|p| Some((std::fs::canonicalize(p).ok()?, p.clone())))
            .collect()
    }

    /// Forgets what was read (not what is served): the next reload reads and parses
    /// every file again.
    fn forget_files(&mut self) {
        for file in self.files.values_mut() {
            file.digest = TextDigest(usize::MAX, 0);
        }
        self.read_all_next = true;
    }

    /// A `*.toml` file directly in the policy directory, not hidden.
    fn is_policy_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.policy_dir.as_path()) && is_policy_name(path)
    }

    /// Re-reads every file; parses those whose text changed. Returns the paths whose new
    /// version is valid and differs from the one served.
    fn read_files(&mut self, paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> HashSet<PathBuf> {
        let mut changed = HashSet::new();
        for path in paths {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    diags.push(file_error(path, format!("cannot read file: {e}")));
                    continue;
                }
            };
            let digest = TextDigest::of(&bytes);
            if self.files.get(path).is_some_and(|f| f.digest == digest) {
                continue;
            }
            let served = self.files.get(path).and_then(|f| f.served.clone());
            let parsed = crate::diag::SourceFile::from_bytes(path, bytes)
                .map_err(|d| vec![d])
                .and_then(|src| policy::parse(&src));
            let served = match parsed {
                Ok(loaded) => {
                    diags.extend(loaded.warnings);
                    changed.insert(path.clone());
                    Some(Arc::new(loaded.policy))
                }
                Err(problems) => {
                    diags.extend(problems);
                    served
                }
            };
            self.files.insert(path.clone(), FileState { digest, served });
        }
        changed
    }

    /// Adds the served policies to a builder: unchanged ones first, so that a changed
    /// or new file that claims their names is the one refused. A refused changed file
    /// falls back to its previous version.
    fn assemble(&mut self, changed: &HashSet<PathBuf>, diags: &mut Vec<Diagnostic>) -> Builder {
        let current = self.cell.load_full();
        let previously = |path: &PathBuf| {
            current
                .zones
                .values()
                .find(|z| &z.policy.path == path)
                .map(|z| z.policy.clone())
        };
        let mut builder = Builder::reusing(current.clone());
        // Policies in service go first, then the changed ones: a changed or new file that
        // claims a served name is the one refused.
        let fresh: HashSet<*const ValidPolicy> = changed
            .iter()
            .filter_map(|path| self.files.get(path)?.served.as_ref().map(Arc::as_ptr))
            .collect();
        let fresh = &fresh;
        let served = |want_fresh: bool| {
            self.files
                .values()
                .filter_map(|f| f.served.clone())
                .filter(move |p| fresh.contains(&Arc::as_ptr(p)) == want_fresh)
        };
        let order: Vec<Arc<ValidPolicy>> = served(false).chain(served(true)).collect();
        let in_service = |policy: &ValidPolicy| served_answer(&current, policy);
        for policy in order {
            let spf = self.published.answer_for(&policy, in_service(&policy));
            let path = policy.path.clone();
            if let Err(conflict) = builder.add(policy, spf) {
                diags.push(file_error(&path, conflict.to_string()));
                let fallback = previously(&path);
                let kept = fallback.filter(|old| {
                    let spf = self.published.answer_for(old, in_service(old));
                    builder.add(old.clone(), spf).is_ok()
                });
                if let Some(file) = self.files.get_mut(&path) {
                    file.served = kept;
                }
            }
        }
        builder
    }
}

impl Reloader {
    /// Tells the flattening service which policies are in service, when that changed.
    fn announce_served(&self) {
        let served: Vec<Arc<ValidPolicy>> = self.files.values().filter_map(|f| f.served.clone()).collect();
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

/// The `*.toml` files of the policy directory, sorted; hidden files (editor swap files)
/// are skipped.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, format!("cannot read the policy directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// `*.toml`, not hidden (editors' swap and temporary files are).
fn is_policy_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
        && !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn file_error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Same zones with the same serials means the same answers.
fn same_content(a: &Snapshot, b: &Snapshot) -> bool {
    a.zones.len() == b.zones.len()
        && a.zones.iter().all(|(apex, za)| {
            b.zones.get(apex).is_some_and(|zb| {
                za.serial == zb.serial
                    && za.content_hash == zb.content_hash
                    && za.wire.zone.soa_tail == zb.wire.zone.soa_tail
            })
        })
}

/// Logs what a swap changed: each zone when few changed, counts when many did.
fn log_zone_changes(old: &Snapshot, new: &Snapshot, build_time: std::time::Duration) {
    const DETAIL: usize = 20;
    let added: Vec<&LowerName> = new.zones.keys().filter(|a| !old.zones.contains_key(*a)).collect();
    let removed: Vec<&LowerName> = old.zones.keys().filter(|a| !new.zones.contains_key(*a)).collect();
    let changed: Vec<(&LowerName, u32)> = new
        .zones
        .iter()
        .filter_map(|(apex, z)| {
            old.zones
                .get(apex)
                .filter(|o| o.serial != z.serial)
                .map(|_| (apex, z.serial))
        })
        .collect();
    if added.len() + removed.len() + changed.len() <= DETAIL {
        for apex in &added {
            info!(zone = %apex, serial = new.zones[*apex].serial, "zone added");
        }
        for (apex, serial) in &changed {
            info!(zone = %apex, serial, "zone changed");
        }
        for apex in &removed {
            info!(zone = %apex, "zone removed");
        }
    }
    info!(
        generation = new.generation,
        zones = new.zones.len(),
        added = added.len(),
        changed = changed.len(),
        removed = removed.len(),
        build_ms = build_time.as_millis() as u64,
        "snapshot swapped"
    );
}

/// Logs a reload's problems: errors as errors, warnings as warnings.
pub fn log_report(report: &ReloadReport) {
    for d in &report.diagnostics {
        match d.severity {
            Severity::Error => error!("{d}; the previous version stays served"),
            Severity::Warning => warn!("{d}"),
        }
    }
}

/// What a reload reads.
#[derive(Debug)]
pub enum Scope {
    /// Every file of the policy directory.
    All,
    /// These paths only (changed, added or removed).
    Paths(HashSet<PathBuf>),
    /// No file: only the flattened records changed.
    Nothing,
}

impl Scope {
    fn widen(self, trigger: Trigger) -> Scope {
        match (self, trigger) {
            (Scope::All, _) | (_, Trigger::Signal) => Scope::All,
            (Scope::Paths(mut p), Trigger::FilesChanged(more)) => {
                p.extend(more);
                Scope::Paths(p)
            }
            (Scope::Nothing, Trigger::FilesChanged(more)) => Scope::Paths(more.into_iter().collect()),
            (scope, Trigger::Flattened | Trigger::Stop) => scope,
        }
    }
}

/// What wakes the reload thread.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// These paths changed in the policy directory.
    FilesChanged(Vec<PathBuf>),
    /// SIGHUP: read every file.
    Signal,
    /// Flattening published new records.
    Flattened,
    /// Ends the service.
    Stop,
}

/// Runs the reload service on its own thread: waits for triggers, reloads, logs. It
/// stops on [`Trigger::Stop`]. The returned sender is for SIGHUP (and tests).
pub fn spawn(mut reloader: Reloader) -> std::io::Result<(mpsc::Sender<Trigger>, ServiceHandle)> {
    let (tx, rx) = mpsc::channel::<Trigger>();
    let files_tx = tx.clone();
    let watch_error = |e: notify::Error| std::io::Error::other(e.to_string());
    let mut debouncer = new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let trigger = match result {
                Ok(events) => Trigger::FilesChanged(events.into_iter().flat_map(|e| e.event.paths).collect()),
                // The watcher lost track (overflow, error): read everything.
                Err(_) => Trigger::Signal,
            };
            let _ = files_tx.send(trigger);
        },
    )
    .map_err(watch_error)?;
    debouncer
        .watch(reloader.policy_dir(), RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    let stop = tx.clone();
    let handle = ServiceHandle::spawn(
        "reload",
        move || {
            let _ = stop.send(Trigger::Stop);
        },
        move || {
            crate::os::lower_thread_priority();
            let mut links = Links::default();
            let _ = links.follow(&reloader, &mut debouncer);
            while let Ok(first) = rx.recv() {
                // Several triggers queued while reloading need one reload, not many.
                let mut scope = Scope::Nothing;
                for trigger in std::iter::once(first).chain(rx.try_iter()) {
                    match trigger {
                        Trigger::Stop => return,
                        Trigger::FilesChanged(paths) => {
                            scope = scope.widen(Trigger::FilesChanged(links.translate(paths)))
                        }
                        other => scope = scope.widen(other),
                    }
                }
                reload_guarded(&mut reloader, scope);
                let newly = links.follow(&reloader, &mut debouncer);
                if !newly.is_empty() {
                    // A target edited before its directory was watched is read now.
                    reload_guarded(&mut reloader, Scope::Paths(newly));
                }
            }
        },
    )?;
    Ok((tx, handle))
}

/// One reload; a panic in it is logged and survived: the snapshot in service stays,
/// and the next reload reads every file again.
fn reload_guarded(reloader: &mut Reloader, scope: Scope) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reloader.reload_scope(scope)));
    match outcome {
        Ok(report) => {
            log_report(&report);
            tracing::debug!(
                generation = report.generation,
                swapped = report.swapped,
                "reloaded"
            );
        }
        Err(panic) => {
            error!(
                "internal error while reloading ({}); the previous snapshot stays served, and every \
                 file is read again",
                crate::os::panic_message(&*panic)
            );
            reloader.forget_files();
        }
    }
}

/// Policy files that are symbolic links: their targets' directories are watched too,
/// so that an edit of the target (in place or by rename, as editors do) is seen.
#[derive(Default)]
struct Links {
    /// Canonical target path → the link in the policy directory.
    targets: HashMap<PathBuf, PathBuf>,
    watched: HashSet<PathBuf>,
}

impl Links {
    fn follow<W: notify::Watcher, C: notify_debouncer_full::FileIdCache>(
        &mut self,
        reloader: &Reloader,
        debouncer: &mut notify_debouncer_full::Debouncer<W, C>,
    ) -> HashSet<PathBuf> {
        self.targets = reloader.symlinked_files();
        let mut newly = HashSet::new();
        for (target, link) in &self.targets {
            let Some(dir) = target.parent() else { continue };
            if dir == reloader.policy_dir() || self.watched.contains(dir) {
                continue;
            }
            match debouncer.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.to_path_buf());
                    newly.insert(link.clone());
                }
                Err(e) => warn!(dir = %dir.display(), "cannot watch the target of a linked policy file: {e}"),
            }
        }
        newly
    }

    /// File event paths with each link target replaced by its link.
    fn translate(&self, paths: Vec<PathBuf>) -> Vec<PathBuf> {
        paths
            .into_iter()
            .map(|p| self.targets.get(&p).cloned().unwrap_or(p))
            .collect()
    }
}
