//! Files in `state_dir` that must survive restarts (zone serials, last good upstream
//! results, published chains). Every write is atomic: a temporary file, fsync, rename,
//! so a crash leaves the old file or the new one, never half of one.
//!
//! Every file and directory spfd creates is its owner's only ([`FILE_MODE`],
//! [`DIR_MODE`]), whatever the umask: state shows every domain's sources and the report
//! store the addresses of every sender.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Writes `bytes` to `dir/name` atomically, creating `dir` if needed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(dir, name, |out| out.write_all(bytes))
}

/// Writes what `write` produces to `dir/name` atomically (through a buffer, so large
/// state is streamed to the file, not held in memory whole), creating `dir` if needed.
pub fn write_atomic_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
) -> io::Result<()> {
    create_dir(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut out = io::BufWriter::with_capacity(1 << 16, create_private(&tmp)?);
    write(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The mode of files spfd creates.
pub const FILE_MODE: u32 = 0o600;

/// The mode of directories spfd creates (directories that exist keep theirs: the
/// operator chose it).
pub const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) `path` with mode [`FILE_MODE`]. The mode is set again on the
/// open file: a file left from before keeps its old mode through `open`.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates `path` with mode [`FILE_MODE`] when it is missing, or sets that mode on it
/// (for files another library writes into, such as the SQLite store).
pub fn make_private(path: &Path) -> io::Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// Creates `dir` and its missing parents with mode [`DIR_MODE`].
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// The permission bits of `path`; `None` when it cannot be read.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// Reads `dir/name`; `Ok(None)` when it does not exist.
pub fn read(dir: &Path, name: &str) -> io::Result<Option<String>> {
    match fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn save_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    write_atomic_with(dir, name, |out| {
        serde_json::to_writer_pretty(out, value).map_err(io::Error::other)
    })
}

/// Reads a JSON state file; a missing file is `Ok(None)`, a damaged one an error.
pub fn load_json<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match read(dir, name)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(io::Error::other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        write_atomic(&state, "x", b"one").unwrap();
        write_atomic(&state, "x", b"two").unwrap();
        assert_eq!(read(&state, "x").unwrap().as_deref(), Some("two"));
        assert_eq!(read(&state, "missing").unwrap(), None);
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
    }

    #[test]
    fn json_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        save_json(dir.path(), "v.json", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(
            load_json::<Vec<u32>>(dir.path(), "v.json").unwrap(),
            Some(vec![1, 2, 3])
        );
        write_atomic(dir.path(), "v.json", b"{not json").unwrap();
        assert!(load_json::<Vec<u32>>(dir.path(), "v.json").is_err());
    }
}
