//! Prometheus metrics (text format on the admin server's `/metrics`), named as CoreDNS
//! and NSD exporters name theirs. Everything is read at scrape time from what the
//! services already keep (the snapshot, the status board, counters), so counting adds
//! nothing to the query path but the per-worker counters the DNS code keeps itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::dns::rrl::RrlCounters;
use crate::dns::stats::QueryCounts;
use crate::refresh::{BoardCell, State};
use crate::snapshot::SnapshotCell;
use crate::upstream::UpstreamCounts;

/// Queries received, by `proto` (udp, tcp) and `qtype`.
pub const DNS_REQUESTS: &str = "spfd_dns_requests";
/// Responses sent, by `rcode`.
pub const DNS_RESPONSES: &str = "spfd_dns_responses";
/// The generation of the snapshot in service.
pub const SNAPSHOT_GENERATION: &str = "spfd_snapshot_generation";
/// Snapshot swaps since start.
pub const SNAPSHOT_SWAPS: &str = "spfd_snapshot_swaps";
/// Flattened policies by `state` (ok, stale, error).
pub const POLICIES: &str = "spfd_policies";
/// DNS lookups receivers spend on a domain's published record, by `domain`.
pub const FLATTEN_LOOKUPS: &str = "spfd_flatten_lookups";
/// When a domain's expansion last succeeded (Unix time), by `domain`.
pub const FLATTEN_LAST_SUCCESS: &str = "spfd_flatten_last_success_timestamp_seconds";
/// Queries sent upstream, by `result` (ok, nxdomain, nodata, error).
pub const UPSTREAM_QUERIES: &str = "spfd_upstream_queries";
/// Policy file errors found by reloads.
pub const RELOAD_ERRORS: &str = "spfd_reload_errors";
/// Answers response rate limiting did not send whole, by `action` (dropped, slipped).
pub const RRL_RESPONSES: &str = "spfd_rrl_responses";
/// Zone transfers by `result` (axfr, ixfr, refused).
pub const ZONE_TRANSFERS: &str = "spfd_zone_transfers";
/// NOTIFY attempts by `result` (acknowledged, unanswered).
pub const NOTIFY: &str = "spfd_notify";
/// SOA checks sent to backend primaries (refresh, retry and NOTIFY together).
pub const BACKEND_CHECKS: &str = "spfd_backend_checks";
/// Zone transfers in from backend primaries by `result` (ok, failed: the copy in
/// service stayed).
pub const BACKEND_TRANSFERS: &str = "spfd_backend_transfers";
/// Admin connections closed at once because a connection cap was reached.
pub const ADMIN_CONNECTIONS_REFUSED: &str = "spfd_admin_connections_refused";
/// Bytes held by the cache of DNSSEC signatures made on demand (all zones).
pub const SIGNATURE_CACHE_BYTES: &str = "spfd_dnssec_signature_cache_bytes";
/// `[dnssec] signature_cache`: the most it may hold.
pub const SIGNATURE_CACHE_LIMIT: &str = "spfd_dnssec_signature_cache_limit_bytes";
/// Signatures dropped from that cache to make room.
pub const SIGNATURE_CACHE_EVICTIONS: &str = "spfd_dnssec_signature_cache_evictions";
/// Lookups in that cache by `result` (hit; miss: a signature was made).
pub const SIGNATURE_CACHE_LOOKUPS: &str = "spfd_dnssec_signature_cache_lookups";

/// Counters the services keep, shared with the scrape.
#[derive(Debug, Default)]
pub struct Counters {
    pub reload_errors: AtomicU64,
    /// Shared with the admin server, which counts there.
    pub admin_refused: Arc<AtomicU64>,
}

/// The sources a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub snapshot: Arc<SnapshotCell>,
    pub board: Arc<BoardCell>,
    pub upstream: Arc<UpstreamCounts>,
    pub counters: Arc<Counters>,
    /// Query counts by (proto, qtype) and by rcode, summed over the workers.
    pub queries: Arc<dyn Fn() -> QueryCounts + Send + Sync>,
    pub rrl: Arc<RrlCounters>,
    /// Zone transfers and NOTIFY, when `[transfer]` is configured.
    pub transfers: Option<Arc<crate::xfr::Counts>>,
    /// The copies of backend zones and what their transfer tasks did.
    pub backends: Arc<crate::backend::Backends>,
    /// The cache of signatures made on demand, when `[dnssec]` is on.
    pub signature_cache: Option<Arc<crate::dnssec::SigCache>>,
}

type Labels = Vec<(&'static str, String)>;

/// The whole text exposition.
pub fn render(sources: &Sources) -> String {
    let mut registry = Registry::default();
    let snapshot = sources.snapshot.load();
    registry.register(
        SNAPSHOT_GENERATION,
        "generation of the snapshot in service",
        ConstGauge::new(snapshot.generation as i64),
    );
    registry.register(
        SNAPSHOT_SWAPS,
        "snapshot swaps since start",
        ConstCounter::new(snapshot.generation.saturating_sub(1)),
    );
    register_policies(&mut registry, sources);
    register_upstream(&mut registry, &sources.upstream);
    let reload_errors = sources.counters.reload_errors.load(Ordering::Relaxed);
    registry.register(
        RELOAD_ERRORS,
        "policy file errors found by reloads",
        ConstCounter::new(reload_errors),
    );
    let admin_refused = sources.counters.admin_refused.load(Ordering::Relaxed);
    registry.register(
        ADMIN_CONNECTIONS_REFUSED,
        "admin connections closed at once over a connection cap",
        ConstCounter::new(admin_refused),
    );
    register_queries(&mut registry, &(sources.queries)());
    let rrl = sources.rrl.read();
    let actions: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    actions
        .get_or_create(&vec![("action", "dropped".to_string())])
        .inc_by(rrl.dropped);
    actions
        .get_or_create(&vec![("action", "slipped".to_string())])
        .inc_by(rrl.slipped);
    registry.register(
        RRL_RESPONSES,
        "answers rate limiting dropped or sent truncated",
        actions,
    );
    if let Some(counts) = &sources.transfers {
        register_transfers(&mut registry, counts);
    }
    register_backends(&mut registry, sources.backends.counts());
    if let Some(cache) = &sources.signature_cache {
        register_signature_cache(&mut registry, &cache.stats());
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String");
    out
}

fn register_policies(registry: &mut Registry, sources: &Sources) {
    let board = sources.board.load();
    let states: Family<Labels, Gauge> = Family::default();
    for state in [State::Ok, State::Stale, State::Error] {
        states
            .get_or_create(&vec![("state", state.as_str().to_string())])
            .set(0);
    }
    let lookups: Family<Labels, Gauge> = Family::default();
    let success: Family<Labels, Gauge> = Family::default();
    for (domain, status) in &board.policies {
        states
            .get_or_create(&vec![("state", status.state.as_str().to_string())])
            .inc();
        let label = vec![("domain", domain.trim_end_matches('.').to_string())];
        if let Some(n) = status.lookups {
            lookups.get_or_create(&label).set(n as i64);
        }
        if status.state != State::Error {
            success.get_or_create(&label).set(status.last_expansion as i64);
        }
    }
    registry.register(POLICIES, "flattened policies by state", states);
    registry.register(
        FLATTEN_LOOKUPS,
        "DNS lookups receivers spend on the published record",
        lookups,
    );
    registry.register(FLATTEN_LAST_SUCCESS, "when the expansion last succeeded", success);
}

fn register_transfers(registry: &mut Registry, counts: &crate::xfr::Counts) {
    let counter = |pairs: &[(&str, &AtomicU64)]| {
        let family: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
        for (result, n) in pairs {
            family
                .get_or_create(&vec![("result", result.to_string())])
                .inc_by(n.load(Ordering::Relaxed));
        }
        family
    };
    registry.register(
        ZONE_TRANSFERS,
        "zone transfers served or refused",
        counter(&[
            ("axfr", &counts.axfr),
            ("ixfr", &counts.ixfr),
            ("refused", &counts.refused),
        ]),
    );
    registry.register(
        NOTIFY,
        "NOTIFY attempts by result",
        counter(&[
            ("acknowledged", &counts.notify_acknowledged),
            ("unanswered", &counts.notify_unanswered),
        ]),
    );
}

fn register_signature_cache(registry: &mut Registry, stats: &crate::dnssec::CacheStats) {
    let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
    registry.register(
        SIGNATURE_CACHE_BYTES,
        "bytes held by the cache of DNSSEC signatures made on demand",
        gauge(stats.bytes),
    );
    registry.register(
        SIGNATURE_CACHE_LIMIT,
        "the most the signature cache may hold ([dnssec] signature_cache)",
        gauge(stats.budget),
    );
    registry.register(
        SIGNATURE_CACHE_EVICTIONS,
        "signatures dropped from the cache to make room",
        ConstCounter::new(stats.evictions),
    );
    let lookups: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    for (result, n) in [("hit", stats.hits), ("miss", stats.misses)] {
        lookups
            .get_or_create(&vec![("result", result.to_string())])
            .inc_by(n);
    }
    registry.register(
        SIGNATURE_CACHE_LOOKUPS,
        "signature cache lookups by result (a miss makes a signature)",
        lookups,
    );
}

fn register_upstream(registry: &mut Registry, counts: &UpstreamCounts) {
    let family: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    for (result, counter) in [
        ("ok", &counts.ok),
        ("nxdomain", &counts.nxdomain),
        ("nodata", &counts.nodata),
        ("error", &counts.error),
    ] {
        family
            .get_or_create(&vec![("result", result.to_string())])
            .inc_by(counter.load(Ordering::Relaxed));
    }
    registry.register(UPSTREAM_QUERIES, "queries sent upstream by result", family);
}

fn register_queries(registry: &mut Registry, counts: &QueryCounts) {
    let requests: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    for ((proto, qtype), n) in &counts.requests {
        requests
            .get_or_create(&vec![("proto", proto.to_string()), ("qtype", qtype.clone())])
            .inc_by(*n);
    }
    let responses: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    for (rcode, n) in &counts.responses {
        responses
            .get_or_create(&vec![("rcode", rcode.clone())])
            .inc_by(*n);
    }
    registry.register(DNS_REQUESTS, "DNS queries received", requests);
    registry.register(DNS_RESPONSES, "DNS responses sent by rcode", responses);
}

fn register_backends(registry: &mut Registry, counts: &crate::backend::BackendCounts) {
    let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
    registry.register(
        BACKEND_CHECKS,
        "SOA checks sent to backend primaries",
        ConstCounter::new(read(&counts.checks)),
    );
    let results: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    results
        .get_or_create(&vec![("result", "ok".to_string())])
        .inc_by(read(&counts.transfers));
    results
        .get_or_create(&vec![("result", "failed".to_string())])
        .inc_by(read(&counts.failures));
    registry.register(
        BACKEND_TRANSFERS,
        "zone transfers in from backend primaries by result",
        results,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::SigCache;
    use crate::dnssec::cache::CacheKey;

    #[test]
    fn the_signature_cache_is_scraped_when_dnssec_is_on() {
        let cache = Arc::new(SigCache::new(1 << 20));
        let key = CacheKey {
            zone: cache.zone_id(),
            owner: Box::from(&b"\x01a\x04test\x00"[..]),
            rtype: 47,
            window: 0,
        };
        cache.get_or_make(key.clone(), || Some(Arc::from(Vec::new())));
        cache.get_or_make(key, || None);
        let mut sources = Sources {
            snapshot: Arc::default(),
            board: Arc::default(),
            upstream: Arc::default(),
            counters: Arc::default(),
            queries: Arc::new(QueryCounts::default),
            rrl: Arc::default(),
            transfers: None,
            backends: Arc::default(),
            signature_cache: None,
        };
        assert!(!render(&sources).contains(SIGNATURE_CACHE_BYTES));
        sources.signature_cache = Some(cache.clone());
        let text = render(&sources);
        let bytes = cache.stats().bytes;
        assert!(bytes > 0);
        for line in [
            format!("{SIGNATURE_CACHE_BYTES} {bytes}"),
            format!("{SIGNATURE_CACHE_LIMIT} 1048576"),
            format!("{SIGNATURE_CACHE_EVICTIONS}_total 0"),
            format!("{SIGNATURE_CACHE_LOOKUPS}_total{{result=\"hit\"}} 1"),
            format!("{SIGNATURE_CACHE_LOOKUPS}_total{{result=\"miss\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
