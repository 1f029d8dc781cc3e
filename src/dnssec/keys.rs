//! Zone keys in `state_dir/keys/`: one PKCS#8 file per key, named
//! `<zone>+<algorithm>+<key tag>.pk8` (`example.com.+013+04711.pk8`), mode 0600, written
//! atomically. A zone without a key gets one when it is first signed; a key file that
//! does not read is an error, never a reason to make a new key (the parent's DS points
//! at the old one). Every key of a zone signs (a rollover publishes and signs with two
//! keys until the old one is retired to `keys/retired/`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, SigningKey};
use hickory_proto::rr::Name;
use rustls_pki_types::PrivatePkcs8KeyDer;

/// The algorithms a zone key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256, algorithm 13 (the default: small and widely validated).
    EcdsaP256Sha256,
    /// Ed25519, algorithm 15.
    Ed25519,
}

impl KeyAlgorithm {
    /// The config spelling (`ecdsap256sha256`, `ed25519`).
    pub fn parse(text: &str) -> Option<KeyAlgorithm> {
        match text.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" => Some(KeyAlgorithm::EcdsaP256Sha256),
            "ed25519" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    pub fn dns(self) -> Algorithm {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => Algorithm::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => Algorithm::ED25519,
        }
    }

    fn from_number(n: u8) -> Option<KeyAlgorithm> {
        match n {
            13 => Some(KeyAlgorithm::EcdsaP256Sha256),
            15 => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    fn number(self) -> u8 {
        u8::from(self.dns())
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {why}", .path.display())]
    Bad { path: PathBuf, why: String },
    /// A read-only store (the offline commands) found no key for the zone.
    #[error("{zone} has no key in {}", .dir.display())]
    Missing { zone: String, dir: PathBuf },
}

/// One key of a zone.
pub struct ZoneKey {
    pub tag: u16,
    pub algorithm: KeyAlgorithm,
    pub dnskey: DNSKEY,
    pub signing: Box<dyn SigningKey>,
    pub file: PathBuf,
    /// When the file was written: a rollover's dates count from the new key's.
    pub created: SystemTime,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("tag", &self.tag)
            .field("algorithm", &self.algorithm)
            .field("file", &self.file)
            .finish()
    }
}

impl ZoneKey {
    /// The DS (SHA-256) the parent publishes for this key.
    pub fn ds(&self, apex: &Name) -> Result<DS, String> {
        let digest = self
            .dnskey
            .to_digest(apex, DigestType::SHA256)
            .map_err(|e| e.to_string())?;
        Ok(DS::new(
            self.tag,
            self.algorithm.dns(),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }
}

/// The keys of one zone, oldest first.
#[derive(Debug)]
pub struct ZoneKeys {
    pub apex: Name,
    pub keys: Vec<Arc<ZoneKey>>,
}

impl ZoneKeys {
    pub fn tags(&self) -> Vec<u16> {
        self.keys.iter().map(|k| k.tag).collect()
    }
}

/// The key directory, with the keys read so far by zone.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    algorithm: KeyAlgorithm,
    /// False for the offline commands (`spfd check`, `spfd records`): they read keys
    /// but never make any.
    create: bool,
    state: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Key files by zone (lower case, absolute, as text), from one listing.
    files: HashMap<String, Vec<PathBuf>>,
    loaded: HashMap<String, Arc<ZoneKeys>>,
    /// The directory's modification time at the listing: a key added or retired by
    /// `spfd dnssec rollover` changes it.
    listed_at: Option<SystemTime>,
}

impl KeyStore {
    /// Opens (creating, mode 0700) the key directory; new keys use `algorithm`.
    pub fn open(dir: &Path, algorithm: KeyAlgorithm) -> Result<KeyStore, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let store = KeyStore {
            dir: dir.to_path_buf(),
            algorithm,
            create: true,
            state: Mutex::new(Index::default()),
        };
        store.relist()?;
        Ok(store)
    }

    /// The keys already in `dir`, read only: a zone without one stays unsigned, and
    /// nothing is written (a missing directory holds no keys).
    pub fn open_existing(dir: &Path, algorithm: KeyAlgorithm) -> Result<KeyStore, KeyError> {
        let store = KeyStore {
            dir: dir.to_path_buf(),
            algorithm,
            create: false,
            state: Mutex::new(Index::default()),
        };
        if dir.exists() {
            store.relist()?;
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lists the directory again if it changed since the last listing (a key was added
    /// or retired); true when it did.
    pub fn refresh(&self) -> Result<bool, KeyError> {
        let modified = fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == self.lock().listed_at {
            return Ok(false);
        }
        self.relist()?;
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relist(&self) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: self.dir.clone(),
            source,
        };
        let listed_at = fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let mut files: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if let Some((zone, _, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name)
            {
                files.entry(zone).or_default().push(path);
            }
        }
        let mut index = self.lock();
        index.files = files;
        index.loaded.clear();
        index.listed_at = listed_at;
        Ok(())
    }

    /// The keys of `apex`, read from their files, or a new key when it has none.
    pub fn keys_for(&self, apex: &Name) -> Result<Arc<ZoneKeys>, KeyError> {
        let zone = zone_text(apex);
        let mut index = self.lock();
        if let Some(keys) = index.loaded.get(&zone) {
            return Ok(keys.clone());
        }
        let mut files = index.files.get(&zone).cloned().unwrap_or_default();
        if files.is_empty() {
            if !self.create {
                return Err(KeyError::Missing {
                    zone,
                    dir: self.dir.clone(),
                });
            }
            files.push(self.generate(apex)?);
            index.files.insert(zone.clone(), files.clone());
        }
        let mut keys = files.iter().map(|f| read_key(f)).collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| (k.created, k.tag));
        let keys = Arc::new(ZoneKeys {
            apex: apex.to_lowercase(),
            keys: keys.into_iter().map(Arc::new).collect(),
        });
        index.loaded.insert(zone, keys.clone());
        Ok(keys)
    }

    /// The keys of `apex` without making one: empty when it has none.
    pub fn existing(&self, apex: &Name) -> Result<Vec<Arc<ZoneKey>>, KeyError> {
        let has = self.lock().files.contains_key(&zone_text(apex));
        if !has {
            return Ok(Vec::new());
        }
        Ok(self.keys_for(apex)?.keys.clone())
    }

    /// Writes a new key for `apex` (a rollover's first step); returns its file.
    pub fn add_key(&self, apex: &Name) -> Result<PathBuf, KeyError> {
        let path = self.generate(apex)?;
        self.relist()?;
        Ok(path)
    }

    /// Moves a key's file to `keys/retired/` (a rollover's last step).
    pub fn retire(&self, key: &ZoneKey) -> Result<PathBuf, KeyError> {
        let retired = self.dir.join("retired");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&retired)
            .map_err(io(&retired))?;
        let to = retired.join(key.file.file_name().unwrap_or_default());
        fs::rename(&key.file, &to).map_err(io(&key.file))?;
        self.relist()?;
        Ok(to)
    }

    /// A new key file for `apex`, under a name no other file has.
    fn generate(&self, apex: &Name) -> Result<PathBuf, KeyError> {
        let bad = |why: String| KeyError::Bad {
            path: self.dir.clone(),
            why,
        };
        for _ in 0..8 {
            let pkcs8 = match self.algorithm {
                KeyAlgorithm::EcdsaP256Sha256 => EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256),
                KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8(),
            }
            .map_err(|e| bad(format!("cannot generate a key: {e}")))?;
            let key = signing_key(pkcs8.secret_pkcs8_der(), self.algorithm).map_err(bad)?;
            let tag = DNSKEY::from_key(&key.to_public_key().map_err(|e| bad(e.to_string()))?)
                .calculate_key_tag()
                .map_err(|e| bad(e.to_string()))?;
            let name = format!("{}+{:03}+{tag:05}.pk8", zone_text(apex), self.algorithm.number());
            let path = self.dir.join(&name);
            if path.exists() || self.dir.join("retired").join(&name).exists() {
                continue;
            }
            write_private(&self.dir, &name, pkcs8.secret_pkcs8_der()).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            return Ok(path);
        }
        Err(bad("no free key tag after 8 tries".into()))
    }
}

/// The zone as it appears in file names: lower case, absolute.
fn zone_text(apex: &Name) -> String {
    let mut text = apex.to_lowercase().to_ascii();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// `<zone>+<alg>+<tag>.pk8` into its parts.
fn parse_file_name(name: &str) -> Option<(String, u8, u16)> {
    let stem = name.strip_suffix(".pk8")?;
    let (rest, tag) = stem.rsplit_once('+')?;
    let (zone, alg) = rest.rsplit_once('+')?;
    Some((zone.to_string(), alg.parse().ok()?, tag.parse().ok()?))
}

fn signing_key(der: &[u8], algorithm: KeyAlgorithm) -> Result<Box<dyn SigningKey>, String> {
    let der = PrivatePkcs8KeyDer::from(der);
    let key: Box<dyn SigningKey> = match algorithm {
        KeyAlgorithm::EcdsaP256Sha256 => Box::new(
            EcdsaSigningKey::from_pkcs8(&der, Algorithm::ECDSAP256SHA256).map_err(|e| e.to_string())?,
        ),
        KeyAlgorithm::Ed25519 => Box::new(Ed25519SigningKey::from_pkcs8(&der).map_err(|e| e.to_string())?),
    };
    Ok(key)
}

fn read_key(path: &Path) -> Result<ZoneKey, KeyError> {
    let bad = |why: String| KeyError::Bad {
        path: path.to_path_buf(),
        why,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (_, alg, tag) = parse_file_name(name).ok_or_else(|| bad("not a key file name".into()))?;
    let algorithm = KeyAlgorithm::from_number(alg)
        .ok_or_else(|| bad(format!("algorithm {alg} is not supported (13 or 15)")))?;
    let der = fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let created = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let signing = signing_key(&der, algorithm).map_err(|e| bad(format!("not a PKCS#8 key: {e}")))?;
    let public = signing.to_public_key().map_err(|e| bad(e.to_string()))?;
    let dnskey = DNSKEY::from_key(&public);
    let actual = dnskey.calculate_key_tag().map_err(|e| bad(e.to_string()))?;
    if actual != tag {
        return Err(bad(format!(
            "the key's tag is {actual}, the file name says {tag}"
        )));
    }
    Ok(ZoneKey {
        tag,
        algorithm,
        dnskey,
        signing,
        file: path.to_path_buf(),
        created,
    })
}

/// Writes `dir/name` atomically with mode 0600 (a temporary file, fsync, rename).
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = crate::state::create_private(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let apex = Name::from_ascii("_spf.Example.com.").unwrap();
        let store = KeyStore::open(&keys, KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let first = store.keys_for(&apex).unwrap();
        assert_eq!(first.keys.len(), 1);
        let file = &first.keys[0].file;
        assert!(
            file.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("_spf.example.com.+013+")
        );
        assert_eq!(fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(first.keys[0].dnskey.flags(), 257, "a CSK: zone key and SEP");

        let again = KeyStore::open(&keys, KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(
            again.keys_for(&apex).unwrap().tags(),
            first.tags(),
            "never replaced"
        );
    }

    #[test]
    fn a_read_only_store_makes_no_key_and_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let store = KeyStore::open_existing(&keys, KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let apex = Name::from_ascii("example.test.").unwrap();
        assert!(matches!(store.keys_for(&apex), Err(KeyError::Missing { .. })));
        assert!(!keys.exists());
        let made = KeyStore::open(&keys, KeyAlgorithm::EcdsaP256Sha256)
            .unwrap()
            .keys_for(&apex)
            .unwrap();
        let read = KeyStore::open_existing(&keys, KeyAlgorithm::EcdsaP256Sha256).unwrap();
        assert_eq!(read.keys_for(&apex).unwrap().tags(), made.tags());
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let apex = Name::from_ascii("example.test.").unwrap();
        let store = KeyStore::open(dir.path(), KeyAlgorithm::Ed25519).unwrap();
        let file = store.keys_for(&apex).unwrap().keys[0].file.clone();
        fs::write(&file, b"junk").unwrap();
        let store = KeyStore::open(dir.path(), KeyAlgorithm::Ed25519).unwrap();
        let err = store.keys_for(&apex).unwrap_err().to_string();
        assert!(err.contains("not a PKCS#8 key"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"junk");
    }

    #[test]
    fn a_rollover_adds_a_key_and_retires_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let apex = Name::from_ascii("example.test.").unwrap();
        let store = KeyStore::open(dir.path(), KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let old = store.keys_for(&apex).unwrap().keys[0].clone();
        store.add_key(&apex).unwrap();
        let both = store.keys_for(&apex).unwrap();
        assert_eq!(both.keys.len(), 2);
        store.retire(&old).unwrap();
        let now = store.keys_for(&apex).unwrap();
        assert_eq!(now.keys.len(), 1);
        assert_ne!(now.keys[0].tag, old.tag);
    }
}
