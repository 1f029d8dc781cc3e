//! Files in `state_dir` that must survive restarts (zone serials, last good upstream
//! results, published chains). Every write is atomic: a temporary file, fsync, rename,
//! so a crash leaves the old file or the new one, never half of one.

use std::fs;
use std::io::{self, Write};
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
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut out = io::BufWriter::with_capacity(1 << 16, fs::File::create(&tmp)?);
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
