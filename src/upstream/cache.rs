//! The TTL cache with single-flight: one entry per (name, type); while a query is in
//! flight, later askers wait on it instead of sending their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::spf::LookupError;

/// A name (lower case, no trailing dot) and a type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub name: String,
    pub rtype: RecordType,
}

impl CacheKey {
    pub fn new(name: &str, rtype: RecordType) -> Self {
        CacheKey {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            rtype,
        }
    }
}

/// One answer from upstream, and how long it may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub outcome: Result<Vec<RData>, LookupError>,
    /// Seconds the answer may be cached; 0 for failures, which are never cached.
    pub ttl: u32,
}

impl Cached {
    pub fn records(records: Vec<RData>, ttl: u32) -> Self {
        Cached {
            outcome: Ok(records),
            ttl,
        }
    }

    pub fn negative(kind: LookupError, ttl: u32) -> Self {
        Cached {
            outcome: Err(kind),
            ttl,
        }
    }

    pub fn failed(why: String) -> Self {
        Cached {
            outcome: Err(LookupError::Temporary(why)),
            ttl: 0,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Err(LookupError::Temporary(_)))
    }

    pub fn result(&self) -> Result<Vec<RData>, LookupError> {
        self.outcome.clone()
    }
}

struct Slot {
    cell: OnceCell<(Arc<Cached>, Instant)>,
}

/// The cache. Time is tokio's, so tests can pause and advance it.
#[derive(Default)]
pub struct Cache {
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
}

impl Cache {
    /// The cached answer while fresh; else the answer of one `fetch` shared by every
    /// concurrent caller.
    pub async fn get_or_fetch<F, Fut>(&self, key: CacheKey, fetch: F) -> Arc<Cached>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Cached>,
    {
        let slot = self.slot(&key);
        let (answer, _) = slot
            .cell
            .get_or_init(|| async move {
                let answer = fetch().await;
                let expires = Instant::now() + Duration::from_secs(u64::from(answer.ttl));
                (Arc::new(answer), expires)
            })
            .await
            .clone();
        if answer.is_failure() {
            // Failures are not answers: the next asker tries again.
            self.forget(&key, &slot);
        }
        answer
    }

    /// The slot for a key: the existing one while it is in flight or fresh, else new.
    fn slot(&self, key: &CacheKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("cache lock");
        let now = Instant::now();
        let fresh = slots.get(key).filter(|slot| match slot.cell.get() {
            None => true,
            Some((answer, expires)) => !answer.is_failure() && *expires > now,
        });
        if let Some(slot) = fresh {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            cell: OnceCell::new(),
        });
        slots.insert(key.clone(), slot.clone());
        slot
    }

    fn forget(&self, key: &CacheKey, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().expect("cache lock");
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
    }

    /// When a cached answer expires.
    pub fn expires_at(&self, key: &CacheKey) -> Option<Instant> {
        let slots = self.slots.lock().expect("cache lock");
        slots.get(key).and_then(|s| s.cell.get().map(|(_, e)| *e))
    }

    /// Drops expired entries (the refresh service does after each round).
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("cache lock");
        slots.retain(|_, s| s.cell.get().is_none_or(|(_, e)| *e > now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn txt(ttl: u32) -> Cached {
        Cached::records(
            vec![RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![
                "v=spf1 -all".into(),
            ]))],
            ttl,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_askers_share_one_query_and_the_ttl_is_kept() {
        let cache = Arc::new(Cache::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, asked) = (cache.clone(), asked.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(
                        CacheKey::new("_spf.Provider.test.", RecordType::TXT),
                        || async move {
                            asked.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            txt(300)
                        },
                    )
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), txt(300));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);

        // Within the TTL: no new query. After it: one more.
        let ask = || {
            let asked = asked.clone();
            cache.get_or_fetch(
                CacheKey::new("_spf.provider.test", RecordType::TXT),
                move || async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    txt(300)
                },
            )
        };
        tokio::time::advance(Duration::from_secs(299)).await;
        ask().await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        ask().await;
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_not_cached_but_negative_answers_are() {
        let cache = Cache::default();
        let key = || CacheKey::new("x.test", RecordType::TXT);
        let first = cache
            .get_or_fetch(key(), || async { Cached::failed("timeout".into()) })
            .await;
        assert!(first.is_failure());
        let second = cache
            .get_or_fetch(key(), || async { Cached::negative(LookupError::NxDomain, 60) })
            .await;
        assert_eq!(second.outcome, Err(LookupError::NxDomain));
        let third = cache.get_or_fetch(key(), || async { txt(5) }).await;
        assert_eq!(
            third.outcome,
            Err(LookupError::NxDomain),
            "NXDOMAIN is cached for its TTL"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn purging_drops_only_expired_answers() {
        let cache = Cache::default();
        let short = CacheKey::new("short.test", RecordType::TXT);
        let long = CacheKey::new("long.test", RecordType::TXT);
        cache.get_or_fetch(short.clone(), || async { txt(5) }).await;
        cache.get_or_fetch(long.clone(), || async { txt(600) }).await;
        tokio::time::advance(Duration::from_secs(6)).await;
        cache.purge_expired();
        assert!(cache.expires_at(&short).is_none());
        assert!(cache.expires_at(&long).is_some());
    }
}
