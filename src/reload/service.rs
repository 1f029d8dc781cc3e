//! The reload service around the [`Reloader`]: its thread, the triggers that wake it
//! (file events, SIGHUP, published expansions), the watches on symlinked policy files,
//! and a panic in one reload caught and survived.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use tracing::{error, warn};

use super::{DEBOUNCE, Reloader, log_report};
use crate::service::ServiceHandle;

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
    // The watches on link targets and zone files are in place when `spawn` returns: an
    // edit made right after is seen.
    let mut links = Links::default();
    let _ = links.follow(&reloader, &mut debouncer);
    let stop = tx.clone();
    let handle = ServiceHandle::spawn(
        "reload",
        move || {
            let _ = stop.send(Trigger::Stop);
        },
        move || {
            crate::os::lower_thread_priority();
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
/// so that an edit of the target (in place or by rename, as editors do) is seen; and
/// the directories of zone files, for the same reason.
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
        self.targets = reloader.files.symlinked();
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
                Err(e) => {
                    warn!(dir = %crate::logging::Escaped(dir.display()), "cannot watch the target of a linked policy file: {e}")
                }
            }
        }
        // Zone files (and their includes) outside the policy directory.
        for dep in reloader.files.dependencies() {
            let Some(dir) = dep.parent() else { continue };
            if dir == reloader.policy_dir() || self.watched.contains(dir) {
                continue;
            }
            match debouncer.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.to_path_buf());
                }
                Err(e) => {
                    warn!(dir = %crate::logging::Escaped(dir.display()), "cannot watch the directory of a zone file: {e}")
                }
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
