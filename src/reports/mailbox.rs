//! Local sources: a Maildir (messages in `new/` and `cur/`; each processed message
//! ends in `cur/` with the S (seen) flag, so it is read once) and a plain directory
//! of report files (processed files move to `processed/` inside it). An input that
//! could not be read is set aside in `failed/` inside the source (with the seen flag
//! in a Maildir), so the next round and the next start do not meet it again; its error
//! line says where it went. When shutdown begins, the input being read stays where it
//! is and the round ends.
//!
//! A chunk of inputs is stored before any of them is marked, so a crash between the
//! two reads a chunk twice (the store ignores the duplicates) and never loses one.

use std::io;
use std::path::{Path, PathBuf};

use super::ingest::{Importer, Outcome};
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

/// Where one input goes once read, and where if it failed.
struct Places {
    done: PathBuf,
    failed: PathBuf,
    /// The file name it gets there.
    rename: fn(&str) -> String,
}

/// Every unseen message of the Maildir at `root`, imported and flagged seen (in
/// `cur/`, or in `failed/` when it could not be read).
pub fn poll_maildir(importer: &mut Importer<'_>, root: &Path) -> Result<usize, SourceError> {
    let mut pending = unseen(&root.join("new"), false)?;
    pending.extend(unseen(&root.join("cur"), true)?);
    let places = Places {
        done: root.join("cur"),
        failed: root.join("failed"),
        rename: seen_name,
    };
    import_all(importer, &pending, &places)
}

/// Imports `inputs` chunk by chunk and moves each where its outcome says; the count
/// of inputs moved.
fn import_all(
    importer: &mut Importer<'_>,
    inputs: &[PathBuf],
    places: &Places,
) -> Result<usize, SourceError> {
    let mut moved = 0;
    for chunk in inputs.chunks(CHUNK) {
        let mut outcomes = Vec::with_capacity(chunk.len());
        for path in chunk {
            if importer.stopping() {
                break;
            }
            let (_, aside) = targets(path, places);
            importer.set_aside_in(Some(aside.display().to_string()));
            outcomes.push(importer.add_file(path)?);
        }
        importer.set_aside_in(None);
        importer.flush()?;
        for (path, outcome) in chunk.iter().zip(outcomes) {
            let (done, aside) = targets(path, places);
            let target = match outcome {
                Outcome::Read => done,
                Outcome::Failed => aside,
                Outcome::Stopped => continue,
            };
            if let Some(parent) = target.parent() {
                crate::state::create_dir(parent).map_err(io_err(parent))?;
            }
            std::fs::rename(path, &target).map_err(io_err(path))?;
            moved += 1;
        }
        if importer.stopping() {
            break;
        }
    }
    Ok(moved)
}

fn targets(path: &Path, places: &Places) -> (PathBuf, PathBuf) {
    let name = (places.rename)(&path.file_name().unwrap_or_default().to_string_lossy());
    (places.done.join(&name), places.failed.join(&name))
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

/// Every report file directly in `dir`, imported and moved to `dir/processed/` (or
/// `dir/failed/` when it could not be read).
pub fn poll_dir(importer: &mut Importer<'_>, dir: &Path) -> Result<usize, SourceError> {
    let mut files = plain_files(dir)?;
    files.sort();
    let places = Places {
        done: dir.join("processed"),
        failed: dir.join("failed"),
        rename: str::to_string,
    };
    import_all(importer, &files, &places)
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
