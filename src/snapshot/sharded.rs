//! A map split into [`SHARDS`] parts by the hash of its key, each part shared between
//! the snapshots that did not change it: a swap copies only the parts its changes
//! fall in (a few hundred entries each at 100,000 zones) and shares the rest, so its
//! cost follows the size of the change, not the size of the map.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHasher;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Parts per map: enough that one part stays small at a million keys, few enough
/// that copying the list of parts is nothing (8 KiB).
pub const SHARDS: usize = 1024;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

#[derive(Debug)]
pub struct Sharded<K, V> {
    parts: Arc<[Arc<FxMap<K, V>>]>,
    len: usize,
}

impl<K, V> Clone for Sharded<K, V> {
    fn clone(&self) -> Self {
        Sharded {
            parts: self.parts.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        let empty = Arc::new(FxMap::default());
        Sharded {
            parts: (0..SHARDS).map(|_| empty.clone()).collect(),
            len: 0,
        }
    }
}

/// The part a key belongs to: the top bits of its FxHash, spread by a multiply (a
/// key and any borrowed form of it hash the same).
fn part_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    let mut hasher = FxHasher::default();
    key.hash(&mut hasher);
    (hasher.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARD_BITS)) as usize
}

impl<K: Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.parts[part_of(key)].get(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(|p| p.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Starts a new version of the map; this one is not changed.
    pub fn edit(&self) -> Editor<K, V> {
        Editor {
            base: self.clone(),
            copied: HashMap::new(),
        }
    }

    /// How many parts two versions do not share (for tests and logs).
    pub fn parts_differing(&self, other: &Self) -> usize {
        self.parts
            .iter()
            .zip(other.parts.iter())
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .count()
    }
}

/// A new version of a [`Sharded`] map under construction: a part is copied the first
/// time a change falls in it.
pub struct Editor<K, V> {
    base: Sharded<K, V>,
    copied: HashMap<usize, FxMap<K, V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Editor<K, V> {
    fn part(&mut self, index: usize) -> &mut FxMap<K, V> {
        let base = &self.base;
        self.copied
            .entry(index)
            .or_insert_with(|| base.parts[index].as_ref().clone())
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.part(part_of(&key)).insert(key, value);
        if old.is_none() {
            self.base.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let index = part_of(key);
        if !self.copied.contains_key(&index) && !self.base.parts[index].contains_key(key) {
            return None;
        }
        let old = self.part(index).remove(key);
        if old.is_some() {
            self.base.len -= 1;
        }
        old
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let index = part_of(key);
        match self.copied.get(&index) {
            Some(part) => part.get(key),
            None => self.base.parts[index].get(key),
        }
    }

    pub fn finish(self) -> Sharded<K, V> {
        if self.copied.is_empty() {
            return self.base;
        }
        let mut parts: Vec<Arc<FxMap<K, V>>> = self.base.parts.to_vec();
        for (index, mut part) in self.copied {
            part.shrink_to_fit();
            parts[index] = Arc::new(part);
        }
        Sharded {
            parts: parts.into(),
            len: self.base.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for Sharded<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut editor = Sharded::default().edit();
        for (k, v) in items {
            editor.insert(k, v);
        }
        editor.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_shares_every_part_it_did_not_change() {
        let map: Sharded<String, u32> = (0..10_000).map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(map.len(), 10_000);
        let mut edit = map.edit();
        edit.insert("k7".to_string(), 70);
        edit.insert("new".to_string(), 1);
        assert_eq!(edit.remove("k9"), Some(9));
        assert_eq!(edit.remove("absent"), None);
        let next = edit.finish();
        assert_eq!(next.len(), 10_000);
        assert_eq!(next.get("k7"), Some(&70));
        assert_eq!(next.get("new"), Some(&1));
        assert_eq!(next.get("k9"), None);
        // The old version is untouched.
        assert_eq!(
            (map.get("k7"), map.get("k9"), map.get("new")),
            (Some(&7), Some(&9), None)
        );
        assert!(next.parts_differing(&map) <= 3, "{}", next.parts_differing(&map));
        assert_eq!(next.iter().count(), 10_000);
    }

    #[test]
    fn borrowed_keys_find_their_part() {
        let map: Sharded<Arc<[u8]>, u8> = (0..200u8).map(|i| (Arc::from(vec![i, 1, 2]), i)).collect();
        for i in 0..200u8 {
            assert_eq!(map.get(&[i, 1, 2][..]), Some(&i));
        }
    }
}
