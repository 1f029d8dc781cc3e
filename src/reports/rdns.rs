//! Reverse names of source addresses: PTR lookups through `[upstream]`, bounded in
//! time (each lookup by the upstream timeout, all of them by [`TOTAL`]), and cached
//! in the store for a day so that a summary run again asks nothing.

use std::net::IpAddr;
use std::time::Duration;

use rusqlite::params;

use super::store::{Store, StoreError};
use crate::spf::{DnsLookup, reverse_name};

/// The time all lookups of one summary may take together.
pub const TOTAL: Duration = Duration::from_secs(5);
/// How long a cached answer (names or none) is used.
pub const CACHE_SECS: i64 = 86400;

impl Store {
    fn ptr_cached(&self, ip: &str, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        let conn = self.conn();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS ptr_cache (ip TEXT PRIMARY KEY, names TEXT NOT NULL, at INTEGER NOT NULL)")
            .map_err(|e| self.error(e))?;
        let found: Option<String> = conn
            .query_row(
                "SELECT names FROM ptr_cache WHERE ip = ?1 AND at >= ?2",
                params![ip, now - CACHE_SECS],
                |r| r.get(0),
            )
            .ok();
        Ok(found.map(|n| {
            n.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }))
    }

    fn ptr_store(&self, ip: &str, names: &[String], now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO ptr_cache (ip, names, at) VALUES (?1, ?2, ?3)",
                params![ip, names.join(" "), now],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }
}

/// Reverse names of each address (empty when there is none or time ran out).
pub async fn reverse_names<D: DnsLookup>(
    store: &Store,
    dns: &D,
    ips: &[IpAddr],
    per_lookup: Duration,
) -> Result<Vec<Vec<String>>, StoreError> {
    let now = super::ingest::now();
    let deadline = tokio::time::Instant::now() + TOTAL;
    let mut out = Vec::with_capacity(ips.len());
    for ip in ips {
        let key = ip.to_string();
        if let Some(names) = store.ptr_cached(&key, now)? {
            out.push(names);
            continue;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            out.push(Vec::new());
            continue;
        }
        let asked = tokio::time::timeout(per_lookup.min(left), dns.ptr(&reverse_name(*ip))).await;
        let names = match asked {
            Ok(Ok(names)) => names,
            Ok(Err(crate::spf::LookupError::Temporary(_))) | Err(_) => {
                out.push(Vec::new());
                continue;
            }
            Ok(Err(_)) => Vec::new(),
        };
        store.ptr_store(&key, &names, now)?;
        out.push(names);
    }
    Ok(out)
}
