//! Taking reports in: bytes from files, directories, Maildirs and IMAP go through
//! [`Importer`], which decodes them, batches the reports into the store and keeps one
//! error per report that cannot be read (the batch goes on).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decode::{Limits, decode};
use super::model::Report;
use super::store::{Assessed, Incoming, Inserted, Store, StoreError};
use super::verify::MailCheck;

/// Reports per transaction: large enough that SQLite's commit cost is amortised.
const BATCH: usize = 500;

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
        self.conflicts += other.conflicts;
        self.unverified += other.unverified;
        self.rows += other.rows;
        self.errors.extend(other.errors);
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

/// Decodes inputs and stores their reports in batches.
pub struct Importer<'a> {
    store: &'a mut Store,
    limits: Limits,
    pending: Vec<(Report, String, Assessed)>,
    stats: ImportStats,
    provenance: Provenance,
}

impl<'a> Importer<'a> {
    /// An importer of unverified inputs; see [`Importer::with_provenance`].
    pub fn new(store: &'a mut Store, limits: Limits) -> Self {
        Importer {
            store,
            limits,
            pending: Vec::new(),
            stats: ImportStats::default(),
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

    /// One input (a file's or a message's bytes); `source` names it in errors.
    pub fn add(&mut self, source: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.stats.inputs += 1;
        let assess = self.assessor(bytes);
        for d in decode(bytes, &self.limits) {
            let name = if d.part.is_empty() {
                source.to_string()
            } else {
                format!("{source}!{}", d.part)
            };
            match d.result {
                Ok(report) => {
                    let assessed = assess(&report);
                    self.pending.push((report, name, assessed));
                }
                Err(e) => self.error(&name, &e.to_string())?,
            }
        }
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// A file: read (unless too large) and added.
    pub fn add_file(&mut self, path: &Path) -> Result<(), StoreError> {
        let source = path.display().to_string();
        match read_file(path) {
            Ok(bytes) => self.add(&source, &bytes),
            Err(why) => {
                self.stats.inputs += 1;
                self.error(&source, &why)
            }
        }
    }

    fn error(&mut self, source: &str, why: &str) -> Result<(), StoreError> {
        self.store.record_error(source, why, now())?;
        self.stats.errors.push(format!("{source}: {why}"));
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

/// `spfd reports import`: every file under the paths (the operator vouches for them).
pub fn import_paths(store: &mut Store, paths: &[PathBuf], limits: Limits) -> Result<ImportStats, StoreError> {
    let mut importer = Importer::new(store, limits).with_provenance(Provenance::Vouched);
    for file in files_under(paths) {
        importer.add_file(&file)?;
    }
    importer.finish()
}
