//! Zone serials that survive restarts: the serial of each zone and the fingerprint of the
//! content it was given for, kept in `<state_dir>/serials` and written atomically.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use hickory_proto::rr::{LowerName, Name};

use super::next_serial;

const FILE_NAME: &str = "serials";

/// Serial and content fingerprint per zone apex.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SerialBook {
    entries: BTreeMap<String, (u32, u64)>,
}

impl SerialBook {
    /// Reads the book from the state directory; a missing file is an empty book.
    pub fn load(state_dir: &Path) -> io::Result<SerialBook> {
        let Some(text) = crate::state::read(state_dir, FILE_NAME)? else {
            return Ok(SerialBook::default());
        };
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(apex), Some(serial), Some(hash)) = (parts.next(), parts.next(), parts.next())
                && let (Ok(serial), Ok(hash)) = (serial.parse(), u64::from_str_radix(hash, 16))
            {
                entries.insert(apex.to_string(), (serial, hash));
            }
        }
        Ok(SerialBook { entries })
    }

    /// Writes the book atomically.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let text: String = self
            .entries
            .iter()
            .map(|(apex, (serial, hash))| format!("{apex} {serial} {hash:016x}\n"))
            .collect();
        crate::state::write_atomic(state_dir, FILE_NAME, text.as_bytes())
    }

    /// The serial for a zone with this content: the same as before when the content is
    /// unchanged, else a larger one.
    pub fn serial_for(&mut self, apex: &Name, fingerprint: u64, now_unix: u64) -> u32 {
        let key = apex.to_lowercase().to_string();
        let previous = self.entries.get(&key).copied();
        let serial = match previous {
            Some((serial, hash)) if hash == fingerprint => serial,
            other => next_serial(other.map(|(s, _)| s), now_unix),
        };
        self.entries.insert(key, (serial, fingerprint));
        serial
    }

    /// [`SerialBook::serial_for`], never behind `floor` (a zone file's own serial, in
    /// serial arithmetic, RFC 1982): secondaries that knew the file's serial still see
    /// the zone move forward.
    pub fn serial_at_least(&mut self, apex: &Name, fingerprint: u64, now_unix: u64, floor: u32) -> u32 {
        let serial = self.serial_for(apex, fingerprint, now_unix);
        let ahead = floor.wrapping_sub(serial);
        if ahead == 0 || ahead >= (1 << 31) {
            return serial;
        }
        self.entries
            .insert(apex.to_lowercase().to_string(), (floor, fingerprint));
        floor
    }

    /// How many zones have a serial.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets a zone no longer served. Its serial restarts from the clock if it comes
    /// back, which still moves forward.
    pub fn forget(&mut self, apex: &LowerName) {
        self.entries.remove(&apex.to_string());
    }

    /// Forgets zones that are no longer served. Their serial restarts from the clock if
    /// they come back, which still moves forward.
    pub fn retain<'a>(&mut self, apexes: impl Iterator<Item = &'a LowerName>) {
        let keep: std::collections::HashSet<String> = apexes.map(|a| a.to_string()).collect();
        self.entries.retain(|k, _| keep.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_grows_only_when_content_changes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let apex = Name::from_ascii("_spf.example.com.").unwrap();
        let mut book = SerialBook::default();
        let s1 = book.serial_for(&apex, 1, 1_800_000_000);
        assert_eq!(book.serial_for(&apex, 1, 1_800_000_500), s1);
        let s2 = book.serial_for(&apex, 2, 1_800_000_000);
        assert!(s2 > s1);
        book.save(dir.path()).unwrap();
        let mut reloaded = SerialBook::load(dir.path()).unwrap();
        assert_eq!(reloaded, book);
        assert_eq!(reloaded.serial_for(&apex, 2, 1_800_000_999), s2);
        assert!(reloaded.serial_for(&apex, 3, 1_800_000_000) > s2);
    }
}
