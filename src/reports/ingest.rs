//! Taking reports in: bytes from files, directories, Maildirs and IMAP go through
//! [`Importer`], which decodes them and stores each report as soon as it is read (in
//! transactions of bounded size, so memory stays flat whatever arrives), keeps one
//! error per report that cannot be read (the batch goes on), skips reports for domains
//! spfd does not serve, and says of each input whether it failed, so that its source
//! can set it aside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::budget::{Clock, printable};
use super::decode::{Decoded, Limits, decode_each};
use super::model::Report;
use super::store::{Assessed, Incoming, Inserted, Store, StoreError};
use super::verify::MailCheck;

/// Reports per transaction: large enough that SQLite's commit cost is amortised.
const BATCH: usize = 500;
/// Rows held before they are stored: what bounds the memory of a batch.
const BATCH_ROWS: usize = 50_000;

/// Files larger than this are not read at all (before any decompression).
pub const MAX_INPUT: u64 = 256 << 20;

/// What an import did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ImportStats {
    /// Files or messages read.
    pub inputs: usize,
    /// Reports stored for the first time.
    pub reports: usize,
    /// Reports already stored (same key and content).
    pub duplicates: usize,
    /// Reports about domains spfd does not serve: read, not stored.
    pub not_served: usize,
    /// Reports stored beside another with the same key and different content (both
    /// are flagged).
    pub conflicts: usize,
    /// Reports stored (new or conflicting) that arrived by mail without an aligned
    /// DKIM signature.
    pub unverified: usize,
    /// Record rows stored.
    pub rows: usize,
    /// One line per unreadable report: `source[!part]: why`.
    pub errors: Vec<String>,
}

impl ImportStats {
    pub fn add(&mut self, other: ImportStats) {
        self.inputs += other.inputs;
        self.reports += other.reports;
        self.duplicates += other.duplicates;
        self.not_served += other.not_served;
        self.conflicts += other.conflicts;
        self.unverified += other.unverified;
        self.rows += other.rows;
        self.errors.extend(other.errors);
    }
}

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every report in it was read (stored, or skipped as a duplicate or not served).
    Read,
    /// At least one part could not be read: the source sets the input aside.
    Failed,
    /// Shutdown began while it was read: it stays where it is, for the next start.
    Stopped,
}

/// The domains whose reports are stored (each with its subdomains); `None` in
/// [`Importer::served`] stores every report.
#[derive(Debug, Clone, Default)]
pub struct Served(BTreeSet<String>);

impl Served {
    /// From domain names in any case, with or without the final dot.
    pub fn new<S: AsRef<str>>(domains: impl IntoIterator<Item = S>) -> Served {
        Served(
            domains
                .into_iter()
                .map(|d| d.as_ref().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        )
    }

    pub fn covers(&self, domain: &str) -> bool {
        let mut name = domain.trim_end_matches('.');
        loop {
            if self.0.contains(name) {
                return true;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => return false,
            }
        }
    }
}

/// Where an importer's inputs come from, which decides how far their reports are
/// trusted.
#[derive(Debug, Clone, Default)]
pub enum Provenance {
    /// Files the operator put there (`dir:`, `spfd reports import`): vouched for.
    Vouched,
    /// Mail whose DKIM is checked, message by message.
    Mail(MailCheck),
    /// Inputs nobody vouches for and nothing checks: unverified.
    #[default]
    Unchecked,
}

/// Decodes inputs and stores their reports in bounded batches.
pub struct Importer<'a> {
    store: &'a mut Store,
    limits: Limits,
    pending: Vec<(Report, String, Assessed)>,
    pending_rows: usize,
    stats: ImportStats,
    provenance: Provenance,
    served: Option<Served>,
    stop: Option<CancellationToken>,
    /// Where the source will put the input now being read if it fails, for its error
    /// lines.
    aside: Option<String>,
}

impl<'a> Importer<'a> {
    /// An importer of unverified inputs; see [`Importer::with_provenance`].
    pub fn new(store: &'a mut Store, limits: Limits) -> Self {
        Importer {
            store,
            limits,
            pending: Vec::new(),
            pending_rows: 0,
            stats: ImportStats::default(),
            served: None,
            stop: None,
            aside: None,
            provenance: Provenance::Unchecked,
        }
    }

    /// Where the inputs come from (one setting per source).
    pub fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }

    /// The trust of each report of one input (the mail's DKIM is checked once).
    fn assessor(&self, bytes: &[u8]) -> impl Fn(&Report) -> Assessed + use<> {
        let mail = match &self.provenance {
            Provenance::Mail(check) => Some(check.check_blocking(bytes)),
            _ => None,
        };
        let vouched = matches!(self.provenance, Provenance::Vouched);
        move |report| match (&mail, vouched) {
            (Some(auth), _) => auth.assess(report),
            (None, true) => Assessed::VOUCHED,
            (None, false) => Assessed::UNVERIFIED,
        }
    }

    /// Only reports about these domains are stored (`None`: every report).
    pub fn served(mut self, served: Option<Served>) -> Self {
        self.served = served;
        self
    }

    /// Cancelled, it ends the input being read at once ([`Outcome::Stopped`]).
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    pub fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// Where the next inputs go if they fail, named in their error lines.
    pub fn set_aside_in(&mut self, place: Option<String>) {
        self.aside = place;
    }

    /// One input (a file's or a message's bytes); `source` names it in errors.
    pub fn add(&mut self, source: &str, bytes: &[u8]) -> Result<Outcome, StoreError> {
        self.stats.inputs += 1;
        let source = printable(source);
        let clock = Clock::start(self.limits.max_time, self.stop.clone());
        let assess = self.assessor(bytes);
        let mut failed = false;
        let mut stored = Ok(());
        let limits = self.limits;
        decode_each(bytes, &limits, &clock, &mut |d| {
            if stored.is_ok() {
                stored = self.take(&source, d, &clock, &assess, &mut failed);
            }
        });
        stored?;
        Ok(if clock.stopping() {
            Outcome::Stopped
        } else if failed {
            Outcome::Failed
        } else {
            Outcome::Read
        })
    }

    fn take(
        &mut self,
        source: &str,
        d: Decoded,
        clock: &Clock,
        assess: &dyn Fn(&Report) -> Assessed,
        failed: &mut bool,
    ) -> Result<(), StoreError> {
        let name = if d.part.is_empty() {
            source.to_string()
        } else {
            format!("{source}!{}", d.part)
        };
        match d.result {
            Ok(report)
                if self
                    .served
                    .as_ref()
                    .is_some_and(|s| !s.covers(&report.policy.domain)) =>
            {
                self.stats.not_served += 1;
                Ok(())
            }
            Ok(report) => {
                self.pending_rows += report.rows.len();
                let assessed = assess(&report);
                self.pending.push((report, name, assessed));
                if self.pending.len() >= BATCH || self.pending_rows >= BATCH_ROWS {
                    self.flush()?;
                }
                Ok(())
            }
            // Not this input's fault: it is read again at the next start.
            Err(_) if clock.stopping() => Ok(()),
            Err(e) => {
                *failed = true;
                self.error(&name, &e.to_string())
            }
        }
    }

    /// A file: read (unless too large) and added.
    pub fn add_file(&mut self, path: &Path) -> Result<Outcome, StoreError> {
        let source = path.display().to_string();
        match read_file(path) {
            Ok(bytes) => self.add(&source, &bytes),
            Err(why) => {
                self.stats.inputs += 1;
                self.error(&printable(&source), &why)?;
                Ok(Outcome::Failed)
            }
        }
    }

    fn error(&mut self, source: &str, why: &str) -> Result<(), StoreError> {
        let line = match &self.aside {
            Some(place) => format!("{why}; set aside in {}", printable(place)),
            None => why.to_string(),
        };
        self.store.record_error(source, &line, now())?;
        self.stats.errors.push(format!("{source}: {line}"));
        Ok(())
    }

    /// Stores what is pending.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<Incoming<'_>> = self
            .pending
            .iter()
            .map(|(report, source, assessed)| Incoming {
                report,
                source,
                assessed,
            })
            .collect();
        let results = self.store.insert(&batch, now())?;
        for ((report, _, assessed), inserted) in self.pending.iter().zip(results) {
            if inserted == Inserted::Duplicate {
                self.stats.duplicates += 1;
                continue;
            }
            self.stats.reports += 1;
            self.stats.rows += report.rows.len();
            self.stats.conflicts += usize::from(inserted == Inserted::Conflict);
            self.stats.unverified += usize::from(assessed.trust == super::store::Trust::Unverified);
        }
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<ImportStats, StoreError> {
        self.flush()?;
        Ok(self.stats)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_INPUT {
        return Err(format!(
            "{} bytes is more than the {MAX_INPUT} read from one file",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Files under each path (a file itself, or every file in a directory tree, hidden
/// ones skipped), sorted so imports are reproducible.
pub fn files_under(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        collect(p, &mut out);
    }
    out
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        out.push(path.to_path_buf());
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    children.sort();
    for c in children {
        collect(&c, out);
    }
}

/// `spfd reports import`: every file under the paths (only reports about `served`
/// domains when given).
pub fn import_paths(
    store: &mut Store,
    paths: &[PathBuf],
    limits: Limits,
    served: Option<Served>,
) -> Result<ImportStats, StoreError> {
    let mut importer = Importer::new(store, limits)
        .with_provenance(Provenance::Vouched)
        .served(served);
    for file in files_under(paths) {
        importer.add_file(&file)?;
    }
    importer.finish()
}
