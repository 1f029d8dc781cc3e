//! Local sources: a Maildir (messages in `new/` and `cur/`; each processed message
//! ends in `cur/` with the S (seen) flag, so it is read once) and a plain directory
//! of report files (processed files move to `processed/` inside it).
//!
//! A chunk of inputs is stored before any of them is marked, so a crash between the
//! two reads a chunk twice (the store ignores the duplicates) and never loses one.

use std::io;
use std::path::{Path, PathBuf};

use super::ingest::Importer;
use super::store::StoreError;

/// Inputs stored per chunk before they are marked processed.
const CHUNK: usize = 500;

/// Why a local source could not be read (the store's own errors pass through).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every unseen message of the Maildir at `root`, imported and flagged seen.
pub fn poll_maildir(importer: &mut Importer<'_>, root: &Path) -> Result<usize, SourceError> {
    let cur = root.join("cur");
    let mut pending = unseen(&root.join("new"), false)?;
    pending.extend(unseen(&cur, true)?);
    let count = pending.len();
    for chunk in pending.chunks(CHUNK) {
        for path in chunk {
            importer.add_file(path)?;
        }
        importer.flush()?;
        for path in chunk {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let target = cur.join(seen_name(&name));
            std::fs::rename(path, &target).map_err(io_err(path))?;
        }
    }
    Ok(count)
}

/// Files of a Maildir folder, sorted; in `cur/`, only those without the S flag.
fn unseen(dir: &Path, skip_seen: bool) -> Result<Vec<PathBuf>, SourceError> {
    let mut out: Vec<PathBuf> = plain_files(dir)?
        .into_iter()
        .filter(|p| !skip_seen || !has_seen_flag(&p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    out.sort();
    Ok(out)
}

fn has_seen_flag(name: &str) -> bool {
    name.rsplit_once(":2,")
        .is_some_and(|(_, flags)| flags.contains('S'))
}

/// The name with the S flag added to its info (`:2,` flags, kept in ASCII order).
pub fn seen_name(name: &str) -> String {
    match name.rsplit_once(":2,") {
        Some((base, flags)) => {
            let mut f: Vec<char> = flags.chars().filter(|c| *c != 'S').chain(['S']).collect();
            f.sort_unstable();
            format!("{base}:2,{}", f.into_iter().collect::<String>())
        }
        None => format!("{name}:2,S"),
    }
}

/// Every report file directly in `dir`, imported and moved to `dir/processed/`.
pub fn poll_dir(importer: &mut Importer<'_>, dir: &Path) -> Result<usize, SourceError> {
    let mut files = plain_files(dir)?;
    files.sort();
    let done = dir.join("processed");
    if !files.is_empty() {
        crate::state::create_dir(&done).map_err(io_err(&done))?;
    }
    for chunk in files.chunks(CHUNK) {
        for path in chunk {
            importer.add_file(path)?;
        }
        importer.flush()?;
        for path in chunk {
            let target = done.join(path.file_name().unwrap_or_default());
            std::fs::rename(path, &target).map_err(io_err(path))?;
        }
    }
    Ok(files.len())
}

/// Regular files directly in `dir`, hidden ones (editors' and writers' temporary
/// files) left alone. A missing directory has none.
fn plain_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_flag_is_added_once_in_order() {
        assert_eq!(seen_name("1700.M1.host"), "1700.M1.host:2,S");
        assert_eq!(seen_name("1700.M1.host:2,RF"), "1700.M1.host:2,FRS");
        assert_eq!(seen_name("1700.M1.host:2,ST"), "1700.M1.host:2,ST");
        assert!(has_seen_flag("x:2,FS") && !has_seen_flag("x:2,F") && !has_seen_flag("x"));
    }
}
