//! The policy directory as last read: each `*.toml` file's digest and the version of it
//! in service (its last valid one). Reading tells which files changed and which
//! version each replaces, so the writer rebuilds only those zones.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity};
use crate::policy::{self, ValidPolicy};

/// The state of one policy file as last read.
struct FileState {
    /// A digest of the bytes last read, to skip files that did not change (the text
    /// itself is not kept: a hundred thousand policies would hold it all).
    digest: TextDigest,
    /// The version of this file in service, if any: the last valid one.
    served: Option<Arc<ValidPolicy>>,
    /// Other files the last read read (a zone file and its includes, canonical paths),
    /// with their digests: a change in one of them is a change of this policy.
    deps: Vec<(PathBuf, TextDigest)>,
    /// The canonical target when the policy file is a symbolic link (its directory is
    /// watched too), found when the file is read, so that following the links after an
    /// edit costs no system call per policy.
    link: Option<PathBuf>,
}

/// The length and a 64-bit hash of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextDigest(usize, u64);

impl TextDigest {
    fn of(bytes: &[u8]) -> Self {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hasher: BuildHasherDefault<std::collections::hash_map::DefaultHasher> = Default::default();
        TextDigest(bytes.len(), hasher.hash_one(bytes))
    }

    /// The digest of a file's bytes now ([`TextDigest::UNREAD`] when it cannot be read).
    fn of_file(path: &Path) -> Self {
        std::fs::read(path).map_or(TextDigest::UNREAD, |b| TextDigest::of(&b))
    }

    /// Matches no file: the next read parses it again.
    const UNREAD: TextDigest = TextDigest(usize::MAX, 0);
}

/// A file whose served version may change: its new valid version (in `served`), or
/// its removal, and the version it replaces.
#[derive(Debug)]
pub struct FileChange {
    pub path: PathBuf,
    pub previous: Option<Arc<ValidPolicy>>,
}

pub struct PolicyFiles {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// The few files some policies read besides their own (zone files, includes) and
    /// the policies that read each, and the policy files that are links: kept as
    /// files are read, so an edit among 100,000 policies looks up, never scans.
    users: HashMap<PathBuf, BTreeSet<PathBuf>>,
    links: BTreeMap<PathBuf, PathBuf>,
    /// The server config's TSIG keys, which a policy's `backend_tsig` names.
    keys: crate::tsig::Keyring,
}

impl PolicyFiles {
    pub fn new(dir: PathBuf, keys: crate::tsig::Keyring) -> Self {
        PolicyFiles {
            dir,
            keys,
            files: BTreeMap::new(),
            users: HashMap::new(),
            links: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version of a file in service.
    pub fn served(&self, path: &Path) -> Option<&Arc<ValidPolicy>> {
        self.files.get(path)?.served.as_ref()
    }

    /// Every version in service, in path order.
    pub fn all_served(&self) -> impl Iterator<Item = &Arc<ValidPolicy>> {
        self.files.values().filter_map(|f| f.served.as_ref())
    }

    /// Sets the version in service (a refused new version leaves the previous one).
    pub fn set_served(&mut self, path: &Path, served: Option<Arc<ValidPolicy>>) {
        if let Some(file) = self.files.get_mut(path) {
            file.served = served;
        }
    }

    /// Reads the whole directory: files gone are removed, the others read.
    pub fn read_all(&mut self, diags: &mut Vec<Diagnostic>) -> Result<Vec<FileChange>, Diagnostic> {
        let paths = policy_files(&self.dir)?;
        let listed: HashSet<&PathBuf> = paths.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listed.contains(p))
            .cloned()
            .collect();
        let mut changes = self.forget(gone);
        changes.extend(self.read(&paths, diags));
        Ok(changes)
    }

    /// Reads the files named (those that exist; the others are removed); a zone file
    /// named stands for the policies that read it.
    pub fn read_paths(&mut self, paths: HashSet<PathBuf>, diags: &mut Vec<Diagnostic>) -> Vec<FileChange> {
        let mut paths = paths;
        let dependents: Vec<PathBuf> = paths
            .iter()
            .filter_map(|p| self.users.get(p))
            .flatten()
            .cloned()
            .collect();
        paths.extend(dependents);
        let ours = paths.into_iter().filter(|p| self.is_policy_file(p));
        let (present, gone): (Vec<PathBuf>, Vec<PathBuf>) = ours.partition(|p| p.is_file());
        let mut changes = self.forget(gone);
        let mut present = present;
        present.sort();
        changes.extend(self.read(&present, diags));
        changes
    }

    fn forget(&mut self, gone: Vec<PathBuf>) -> Vec<FileChange> {
        gone.into_iter()
            .filter_map(|path| {
                let file = self.files.remove(&path)?;
                self.index(&path, Some(&file), None);
                let previous = file.served;
                Some(FileChange { path, previous })
            })
            .collect()
    }

    /// Re-reads every file; parses those whose bytes changed. Returns the files whose
    /// new version is valid, with the version each replaces.
    fn read(&mut self, paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<FileChange> {
        let mut changed = Vec::new();
        for path in paths {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    diags.push(file_error(path, format!("cannot read file: {e}")));
                    continue;
                }
            };
            let digest = TextDigest::of(&bytes);
            let link = path
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
                .then(|| std::fs::canonicalize(path).ok())
                .flatten();
            if let Some(file) = self.files.get_mut(path)
                && file.digest == digest
                && file.deps.iter().all(|(p, d)| TextDigest::of_file(p) == *d)
            {
                file.link = link.clone();
                match link {
                    Some(target) => self.links.insert(path.clone(), target),
                    None => self.links.remove(path),
                };
                continue;
            }
            let previous = self.files.get(path).and_then(|f| f.served.clone());
            let (parsed, deps) = match crate::diag::SourceFile::from_bytes(path, bytes) {
                Ok(src) => policy::parse_with_files(&src, &self.keys),
                Err(d) => (Err(vec![d]), Vec::new()),
            };
            let deps = deps
                .iter()
                .map(|p| {
                    let p = canonical(p);
                    let digest = TextDigest::of_file(&p);
                    (p, digest)
                })
                .collect();
            let served = match parsed {
                Ok(loaded) => {
                    diags.extend(loaded.warnings);
                    changed.push(FileChange {
                        path: path.clone(),
                        previous: previous.clone(),
                    });
                    Some(Arc::new(loaded.policy))
                }
                Err(problems) => {
                    diags.extend(problems);
                    previous
                }
            };
            let state = FileState {
                digest,
                served,
                deps,
                link,
            };
            let old = self.files.remove(path);
            self.index(path, old.as_ref(), Some(&state));
            self.files.insert(path.clone(), state);
        }
        changed
    }

    /// Forgets what was read (not what is served): the next read parses every file.
    pub fn forget_digests(&mut self) {
        for file in self.files.values_mut() {
            file.digest = TextDigest::UNREAD;
        }
    }

    /// The other files policies read (zone files, their includes), canonical.
    pub fn dependencies(&self) -> HashSet<PathBuf> {
        self.users.keys().cloned().collect()
    }

    /// The other files one policy read (and the paths it names them by).
    pub fn dependencies_of(&self, path: &Path) -> Vec<PathBuf> {
        self.files
            .get(path)
            .map(|f| f.deps.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// Policy files that are symbolic links, by canonical target (as last read).
    pub fn symlinked(&self) -> HashMap<PathBuf, PathBuf> {
        self.links
            .iter()
            .map(|(link, target)| (target.clone(), link.clone()))
            .collect()
    }

    /// Keeps the indexes of dependencies and links as `path` goes from `old` to `new`.
    fn index(&mut self, path: &Path, old: Option<&FileState>, new: Option<&FileState>) {
        for (dep, _) in old.iter().flat_map(|f| f.deps.iter()) {
            if let Some(users) = self.users.get_mut(dep) {
                users.remove(path);
                if users.is_empty() {
                    self.users.remove(dep);
                }
            }
        }
        for (dep, _) in new.iter().flat_map(|f| f.deps.iter()) {
            self.users
                .entry(dep.clone())
                .or_default()
                .insert(path.to_path_buf());
        }
        match new.and_then(|f| f.link.clone()) {
            Some(target) => self.links.insert(path.to_path_buf(), target),
            None => self.links.remove(path),
        };
    }

    /// A `*.toml` file directly in the policy directory, not hidden.
    fn is_policy_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path()) && is_policy_name(path)
    }
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

/// A path made canonical; for a file that does not exist (yet), its directory's
/// canonical path and its name, as file events will name it.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        match (
            path.parent().and_then(|d| std::fs::canonicalize(d).ok()),
            path.file_name(),
        ) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => path.to_path_buf(),
        }
    })
}

/// `*.toml`, not hidden (editors' swap and temporary files are).
fn is_policy_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
        && !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

pub fn file_error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }
}
