//! The one cache of signatures made on demand (macro answers, denial NSECs), shared by
//! every signed zone under one byte budget (`[dnssec] signature_cache`): an owner is
//! signed at most once per window while it stays in the cache, and however many zones
//! are signed and however many names are asked, the cache holds no more than its
//! budget.
//!
//! Sharded CLOCK: the key's hash (keyed at random per process, so names cannot be
//! chosen to collide) picks one of [`SHARDS`] shards, each a slot ring with an index
//! under its own lock and an equal part of the budget. An entry starts unmarked and is
//! marked when it is found again; eviction sweeps the ring, clearing marks and taking
//! the first unmarked entry, so a flood of names asked once evicts itself before the
//! addresses that are asked again.
//!
//! Sizes are what an entry holds in the heap, counted generously: its key, the
//! signatures and their names, and room for its slot and index entry with the slack
//! of a growing ring and table.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::dnssec::rdata::RRSIG;
use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use super::Signatures;

/// Shards of the cache: enough that UDP workers rarely meet on a lock.
pub const SHARDS: usize = 16;

/// What a signature is made for: the zone it was signed in (a fresh id each time a
/// zone is built, so signatures over a zone's old content or old keys are never found
/// again and age out), the owner (lower-case wire format), the type and the window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub zone: u64,
    pub owner: Box<[u8]>,
    pub rtype: u16,
    pub window: u64,
}

/// A reading of the cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held, as the cache counts them (never above `budget`).
    pub bytes: u64,
    pub budget: u64,
    pub entries: u64,
    pub hits: u64,
    /// Lookups that found nothing: each made a signature.
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    key: CacheKey,
    value: Signatures,
    size: usize,
    /// Found again since the hand last passed.
    marked: bool,
}

#[derive(Debug, Default)]
struct Shard {
    /// Key hash to slot; a colliding key replaces the entry (keys are compared, so a
    /// collision costs a signature, never a wrong one).
    index: FxHashMap<u64, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    hand: usize,
    bytes: usize,
}

#[derive(Debug)]
pub struct SigCache {
    shards: Box<[Mutex<Shard>]>,
    budget: usize,
    hasher: RandomState,
    next_zone: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl SigCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        SigCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            budget,
            hasher: RandomState::new(),
            next_zone: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A zone id for [`CacheKey::zone`], never handed out before.
    pub fn zone_id(&self) -> u64 {
        self.next_zone.fetch_add(1, Ordering::Relaxed)
    }

    /// The cached signatures for `key`, or those `make` returns (then cached).
    pub fn get_or_make(
        &self,
        key: CacheKey,
        make: impl FnOnce() -> Option<Signatures>,
    ) -> Option<Signatures> {
        let hash = self.hasher.hash_one(&key);
        if let Some(found) = self.shard(hash).get(hash, &key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(found);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Signed outside the lock: two threads may sign the same name once each.
        let made = make()?;
        let size = entry_size(&key, &made);
        let evicted = self
            .shard(hash)
            .insert(hash, key, made.clone(), size, self.budget / SHARDS);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        Some(made)
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The top bits: the index uses the low ones.
        let i = (hash >> 56) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> CacheStats {
        let (mut bytes, mut entries) = (0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            bytes += shard.bytes as u64;
            entries += shard.index.len() as u64;
        }
        CacheStats {
            bytes,
            budget: self.budget as u64,
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

impl Shard {
    fn get(&mut self, hash: u64, key: &CacheKey) -> Option<Signatures> {
        let i = *self.index.get(&hash)? as usize;
        let slot = self.slots[i].as_mut().filter(|s| s.key == *key)?;
        slot.marked = true;
        Some(slot.value.clone())
    }

    /// Stores an entry, evicting until it fits in `budget`; returns how many went. An
    /// entry larger than the whole budget is not kept.
    fn insert(&mut self, hash: u64, key: CacheKey, value: Signatures, size: usize, budget: usize) -> u64 {
        if size > budget {
            return 0;
        }
        if let Some(&i) = self.index.get(&hash) {
            self.remove(i as usize);
        }
        let mut evicted = 0;
        while self.bytes + size > budget && self.evict_one() {
            evicted += 1;
        }
        let slot = Slot {
            hash,
            key,
            value,
            size,
            marked: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        self.bytes += size;
        evicted
    }

    /// One turn of the clock hand: the first unmarked entry goes, marks passed on the way
    /// are cleared. False when the shard is empty.
    fn evict_one(&mut self) -> bool {
        if self.index.is_empty() {
            return false;
        }
        // Two sweeps at most: the first clears every mark.
        for _ in 0..2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            match &mut self.slots[i] {
                Some(slot) if slot.marked => slot.marked = false,
                Some(_) => {
                    self.remove(i);
                    return true;
                }
                None => {}
            }
        }
        false
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots[i].take() {
            self.index.remove(&slot.hash);
            self.bytes -= slot.size;
            self.free.push(i as u32);
        }
    }
}

/// What an entry holds in the heap: the key's owner, the signatures (each with its
/// signature bytes and the signer name when it does not fit inline) behind the `Arc`'s
/// counters, and its slot and index entry twice over (a ring or table that grows
/// doubles, so up to half of it is slack).
fn entry_size(key: &CacheKey, sigs: &Signatures) -> usize {
    let index_entry = size_of::<(u64, u32)>() + 1;
    let containers = 2 * (size_of::<Option<Slot>>() + index_entry + size_of::<u32>());
    let signatures: usize = sigs
        .iter()
        .map(|s| size_of::<RRSIG>() + s.sig().len() + name_heap(&s.input().signer_name))
        .sum();
    containers + key.owner.len() + 2 * size_of::<usize>() + signatures
}

/// Heap bytes of a name: hickory keeps up to 32 octets of labels and 24 label ends
/// inline.
fn name_heap(name: &Name) -> usize {
    let data: usize = name.iter().map(<[u8]>::len).sum();
    let labels = usize::from(name.num_labels());
    (if data > 32 { data } else { 0 }) + (if labels > 24 { labels } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::Algorithm;
    use hickory_proto::dnssec::rdata::SigInput;
    use hickory_proto::rr::{RecordType, SerialNumber};
    use std::sync::Arc;

    /// One P-256-sized RRSIG, as the signer makes them.
    fn sigs() -> Signatures {
        let input = SigInput {
            type_covered: RecordType::NSEC,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: 3,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(2),
            sig_inception: SerialNumber::new(1),
            key_tag: 1,
            signer_name: Name::from_ascii("_spf.example.test.").unwrap(),
        };
        Arc::from(vec![RRSIG::from_sig(input, vec![7; 64])])
    }

    fn key(zone: u64, i: u32) -> CacheKey {
        CacheKey {
            zone,
            owner: format!("\x08r{i:07}\x04_spf\x07example\x04test\x00")
                .into_bytes()
                .into(),
            rtype: 47,
            window: 0,
        }
    }

    #[test]
    fn entries_are_made_once_and_found_again() {
        let cache = SigCache::new(1 << 20);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Some(sigs())
        };
        cache.get_or_make(key(1, 1), make).unwrap();
        cache.get_or_make(key(1, 1), make).unwrap();
        assert_eq!(made.get(), 1);
        // Another zone (or the same zone rebuilt) signs its own.
        cache.get_or_make(key(2, 1), make).unwrap();
        assert_eq!(made.get(), 2);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
        let one = entry_size(&key(1, 1), &sigs());
        assert!(one > size_of::<RRSIG>() + 64 + 26, "{one}");
        assert_eq!(stats.bytes, 2 * one as u64);
    }

    #[test]
    fn one_budget_holds_across_many_zones() {
        let budget = 256 << 10;
        let cache = SigCache::new(budget);
        for i in 0..40_000u32 {
            cache.get_or_make(key(u64::from(i % 300), i), || Some(sigs()));
            if i % 1000 == 0 {
                assert!(cache.stats().bytes <= budget as u64, "{:?}", cache.stats());
            }
        }
        let stats = cache.stats();
        assert!(stats.bytes <= budget as u64, "{stats:?}");
        // The budget is used, not merely respected.
        assert!(stats.bytes > budget as u64 * 3 / 4, "{stats:?}");
        assert_eq!(stats.evictions + stats.entries, 40_000, "{stats:?}");
        let held: usize = cache
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.slots.iter().flatten().map(|slot| slot.size).sum::<usize>()
            })
            .sum();
        assert_eq!(held as u64, stats.bytes);
    }

    #[test]
    fn names_asked_again_outlive_a_flood_of_names_asked_once() {
        let cache = SigCache::new(128 << 10);
        let hot: Vec<CacheKey> = (0..20).map(|i| key(1, 1_000_000 + i)).collect();
        for k in &hot {
            cache.get_or_make(k.clone(), || Some(sigs()));
        }
        for i in 0..20_000 {
            cache.get_or_make(key(1, i), || Some(sigs()));
            if i % 20 == 0 {
                for k in &hot {
                    cache.get_or_make(k.clone(), || Some(sigs()));
                }
            }
        }
        let before = cache.stats().misses;
        for k in &hot {
            cache.get_or_make(k.clone(), || Some(sigs()));
        }
        assert_eq!(cache.stats().misses, before, "every hot name is still cached");
    }

    #[test]
    fn an_entry_larger_than_a_shard_is_not_kept() {
        let cache = SigCache::new(SHARDS * 100);
        assert!(cache.get_or_make(key(1, 1), || Some(sigs())).is_some());
        assert_eq!(cache.stats().bytes, 0);
    }
}
