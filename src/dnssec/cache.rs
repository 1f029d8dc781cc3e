//! A bounded cache of signatures made on demand (macro answers, denial NSECs), keyed by
//! (owner, type, window): an address is signed at most once per window while it stays
//! in the cache. Two generations: when the current one is full it becomes the previous
//! one and the oldest entries go, so memory stays at twice the capacity at most and
//! every operation is one or two hash lookups.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Signatures;

/// Owner (lower-case wire format), type, window index.
pub type CacheKey = (Box<[u8]>, u16, u64);

#[derive(Debug)]
pub struct SigCache {
    capacity: usize,
    generations: Mutex<[HashMap<CacheKey, Signatures>; 2]>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SigCache {
    pub fn new(capacity: usize) -> Self {
        SigCache {
            capacity: capacity.max(1),
            generations: Mutex::new([HashMap::new(), HashMap::new()]),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached signatures for `key`, or those `make` returns (then cached).
    pub fn get_or_make(
        &self,
        key: CacheKey,
        make: impl FnOnce() -> Option<Signatures>,
    ) -> Option<Signatures> {
        if let Some(found) = self.lookup(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(found);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Signed outside the lock: two threads may sign the same name once each.
        let made = make()?;
        self.insert(key, made.clone());
        Some(made)
    }

    fn lookup(&self, key: &CacheKey) -> Option<Signatures> {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = g[0].get(key) {
            return Some(found.clone());
        }
        // Found in the old generation: move it to the current one.
        let found = g[1].remove(key)?;
        Self::push(&mut g, self.capacity, key.clone(), found.clone());
        Some(found)
    }

    fn insert(&self, key: CacheKey, value: Signatures) {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        Self::push(&mut g, self.capacity, key, value);
    }

    fn push(g: &mut [HashMap<CacheKey, Signatures>; 2], capacity: usize, key: CacheKey, value: Signatures) {
        if g[0].len() >= capacity {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, value);
    }

    /// (hits, misses) since the cache was made.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g[0].len() + g[1].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(i: u8) -> CacheKey {
        (Box::from([i].as_slice()), 16, 0)
    }

    #[test]
    fn entries_are_made_once_and_the_cache_stays_bounded() {
        let cache = SigCache::new(4);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Some(Arc::from(Vec::new()))
        };
        cache.get_or_make(key(1), make).unwrap();
        cache.get_or_make(key(1), make).unwrap();
        assert_eq!(made.get(), 1);
        for i in 0..100 {
            cache.get_or_make(key(i), make);
        }
        assert!(cache.len() <= 8, "{}", cache.len());
        let (hits, misses) = cache.stats();
        assert_eq!(hits, 2, "key 1 twice");
        assert_eq!(misses, 100);
    }
}
