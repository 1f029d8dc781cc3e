//! Upstream DNS: how spfd resolves third-party names (the targets of `include`,
//! `redirect`, `a` and `mx`). One [`Upstream`] is shared by every policy: each name and
//! type is asked once per TTL, and concurrent askers wait on the same query.
//!
//! NXDOMAIN and NODATA are answers (cached for their negative TTL); a timeout, SERVFAIL
//! or any other failure is not, and is never cached: the next asker tries again.

mod cache;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::dnssec::TrustAnchors;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, net::NetError};

use crate::config::UpstreamConfig;
use crate::spf::{DnsLookup, LookupError};

pub use cache::{Cache, CacheKey, Cached};

/// How long a negative answer without an SOA is cached.
const DEFAULT_NEGATIVE_TTL: u32 = 60;

/// A source of DNS answers with TTLs: the real resolver, or test data.
pub trait Source: Send + Sync + 'static {
    /// The records of `rtype` at `name` (CNAMEs followed) and their TTL, or why there
    /// are none (with the negative TTL for NXDOMAIN and NODATA).
    fn query(&self, name: &str, rtype: RecordType) -> impl std::future::Future<Output = Cached> + Send;
}

/// hickory-resolver against the configured nameservers (or the system's).
pub struct ResolverSource {
    resolver: Resolver<TokioRuntimeProvider>,
    /// `[upstream] dnssec = "validate"`: a bogus answer is a failure, not an answer.
    validate: bool,
}

impl ResolverSource {
    pub fn new(config: &UpstreamConfig) -> Result<ResolverSource, NetError> {
        Ok(ResolverSource {
            resolver: resolver(config)?,
            validate: config.validate,
        })
    }
}

/// A resolver with the `[upstream]` settings and no cache of its own (spfd caches by
/// TTL itself, with single-flight; a second cache would only hide TTLs). Also what
/// report mail's DKIM keys are looked up with.
pub fn resolver(config: &UpstreamConfig) -> Result<Resolver<TokioRuntimeProvider>, NetError> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = config.timeout;
    opts.attempts = 2;
    opts.ndots = 0;
    opts.validate = config.validate;
    let builder = match &config.nameservers {
        Some(servers) => {
            let resolver_config =
                ResolverConfig::from_parts(None, vec![], servers.iter().map(name_server).collect());
            Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
        }
        None => Resolver::builder_tokio()?,
    };
    let builder = match (&config.trust_anchors, config.validate) {
        (Some(path), true) => builder.with_trust_anchor(Arc::new(
            TrustAnchors::from_file(path).map_err(|e| NetError::from(format!("{}: {e}", path.display())))?,
        )),
        _ => builder,
    };
    builder.with_options(opts).build()
}

fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

impl Source for ResolverSource {
    async fn query(&self, name: &str, rtype: RecordType) -> Cached {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) if self.validate && lookup.answers().iter().any(|r| r.proof.is_bogus()) => {
                Cached::failed(format!("DNSSEC validation failed (bogus) for {fqdn} {rtype}"))
            }
            Ok(lookup) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                let ttl = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(DEFAULT_NEGATIVE_TTL);
                if records.is_empty() {
                    Cached::negative(LookupError::NoData, ttl)
                } else {
                    Cached::records(records, ttl)
                }
            }
            Err(e) => classify(&e),
        }
    }
}

fn classify(e: &NetError) -> Cached {
    use hickory_resolver::net::DnsError;
    if let NetError::Dns(DnsError::NoRecordsFound(no)) = e {
        let ttl = no.negative_ttl.unwrap_or(DEFAULT_NEGATIVE_TTL);
        let kind = if e.is_nx_domain() {
            LookupError::NxDomain
        } else {
            LookupError::NoData
        };
        return Cached::negative(kind, ttl);
    }
    Cached::failed(e.to_string())
}

/// The shared upstream: a [`Source`] behind the TTL cache.
pub struct Upstream<S: Source = ResolverSource> {
    source: Arc<S>,
    cache: Cache,
    /// Answers from the source (not the cache), by result, for metrics.
    counts: Arc<UpstreamCounts>,
}

/// Queries sent upstream, by result.
#[derive(Debug, Default)]
pub struct UpstreamCounts {
    pub ok: std::sync::atomic::AtomicU64,
    pub nxdomain: std::sync::atomic::AtomicU64,
    pub nodata: std::sync::atomic::AtomicU64,
    /// Timeouts, SERVFAIL, REFUSED and other failures.
    pub error: std::sync::atomic::AtomicU64,
}

impl UpstreamCounts {
    fn count(&self, answer: &Cached) {
        let counter = match answer.result() {
            Ok(_) => &self.ok,
            Err(LookupError::NxDomain) => &self.nxdomain,
            Err(LookupError::NoData) => &self.nodata,
            Err(LookupError::Temporary(_)) => &self.error,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Upstream<ResolverSource> {
    pub fn from_config(config: &UpstreamConfig) -> Result<Self, NetError> {
        Ok(Upstream::new(ResolverSource::new(config)?))
    }
}

impl<S: Source> Upstream<S> {
    pub fn new(source: S) -> Self {
        Upstream {
            source: Arc::new(source),
            cache: Cache::default(),
            counts: Arc::default(),
        }
    }

    /// Queries sent upstream so far, by result.
    pub fn counts(&self) -> Arc<UpstreamCounts> {
        self.counts.clone()
    }

    /// The answer for a name and type: from the cache while its TTL runs, else asked
    /// (once, however many ask at the same time).
    pub async fn lookup(&self, name: &str, rtype: RecordType) -> Arc<Cached> {
        let key = CacheKey::new(name, rtype);
        let source = self.source.clone();
        let counts = self.counts.clone();
        let owned = key.name.clone();
        self.cache
            .get_or_fetch(key, move || async move {
                let answer = source.query(&owned, rtype).await;
                counts.count(&answer);
                answer
            })
            .await
    }

    /// When the cached answer for a name and type expires, if it is cached.
    pub fn expires_at(&self, name: &str, rtype: RecordType) -> Option<tokio::time::Instant> {
        self.cache.expires_at(&CacheKey::new(name, rtype))
    }

    /// Drops answers whose TTL has run out, so names no policy asks any more do not
    /// stay in memory.
    pub fn purge_expired(&self) {
        self.cache.purge_expired();
    }

    async fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, LookupError> {
        self.lookup(name, rtype).await.result()
    }
}

impl<S: Source> DnsLookup for Upstream<S> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.records(name, RecordType::TXT).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .collect())
    }

    async fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        let records = self.records(name, RecordType::A).await?;
        Ok(records
            .iter()
            .filter_map(|r| if let RData::A(a) = r { Some(a.0) } else { None })
            .collect())
    }

    async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, LookupError> {
        let records = self.records(name, RecordType::AAAA).await?;
        Ok(records
            .iter()
            .filter_map(|r| if let RData::AAAA(a) = r { Some(a.0) } else { None })
            .collect())
    }

    async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.records(name, RecordType::MX).await?;
        let mut mx: Vec<(u16, String)> = records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_string())),
                _ => None,
            })
            .collect();
        mx.sort_by_key(|(pref, _)| *pref);
        Ok(mx
            .into_iter()
            .map(|(_, host)| host.trim_end_matches('.').to_string())
            .collect())
    }

    async fn ptr(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.records(name, RecordType::PTR).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(p.0.to_string().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect())
    }
}
