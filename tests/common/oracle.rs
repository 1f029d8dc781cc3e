//! An SPF evaluator that is not spfd's own: viaspf (a faithful RFC 7208 implementation)
//! asking real DNS servers through hickory-resolver, with no cache, so every check sees
//! the servers' current answers. Names can be routed to different servers by suffix
//! (spfd serves some, the upstream world the rest). Also the address pickers tests feed
//! it: CIDR boundaries of SPF records and a small deterministic PRNG.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hickory_net::NetError;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use viaspf::lookup::{Lookup, LookupError, LookupResult, Name as SpfName};
use viaspf::{Config, Sender, SpfResult};

/// The lookup limits of RFC 7208 4.6.4, or lifted far enough that no real tree reaches
/// them, while a loop still ends (in permerror) instead of running until the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limits {
    /// 10 DNS-querying terms, 2 void lookups, 10 names per `mx`/`ptr`.
    Rfc,
    /// `LIFTED_LOOKUPS` for all three (viaspf ties the per-`mx`/`ptr` limit to
    /// `max_lookups`, so it is lifted too).
    Lifted,
}

pub const LIFTED_LOOKUPS: usize = 1000;

/// Per query, then per whole evaluation. One attempt: the servers are on loopback and a
/// test that makes a name time out should not wait for retries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(30);

/// viaspf recurses one future per include/redirect level, and polling them nests on the
/// stack: an include loop run to `LIFTED_LOOKUPS` overflows a test thread's 2 MiB in a
/// debug build (a loop of 1000 needed between 4 and 8 MiB). Evaluations run on a thread
/// of their own with this much, and a runtime of their own, so they also keep real time
/// when a test pauses its clock.
const EVALUATION_STACK: usize = 64 << 20;

/// viaspf takes only LDH host names as sender domains, not `_spf.example.com`. Such a
/// name N is checked through a synthetic sender domain under this suffix whose record is
/// `v=spf1 redirect=N`: the redirect hands over N's whole result, with `%{d}` = N. What
/// differs: `%{o}`, `%{s}` and `%{l}` name the synthetic sender, the redirect costs one
/// lookup (the limit is raised by one to match), and a missing record would give
/// permerror, so the record is looked up first and a missing one answered none.
const SYNTHETIC_SUFFIX: &str = "redirect.oracle.invalid.";

#[derive(Clone)]
pub struct Oracle {
    /// (suffix, server) as given; each evaluation thread builds its resolvers from them.
    routes: Vec<(String, SocketAddr)>,
    limits: Limits,
    /// Answers each evaluation thread's resolvers may cache (0: none, the default).
    cache_size: u64,
}

impl Oracle {
    /// Every name is asked of `server`; RFC limits.
    pub fn new(server: SocketAddr) -> Oracle {
        Oracle::routed(&[("", server)])
    }

    /// Each name is asked of the server of the longest matching suffix (whole labels;
    /// `""` matches everything). Panics when no route matches a name asked later.
    pub fn routed(routes: &[(&str, SocketAddr)]) -> Oracle {
        let routes = routes
            .iter()
            .map(|(suffix, server)| (suffix.to_string(), *server));
        Oracle {
            routes: routes.collect(),
            limits: Limits::Rfc,
            cache_size: 0,
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Oracle {
        self.limits = limits;
        self
    }

    /// Lets the resolvers of one `check_all` cache up to `entries` answers, as a receiver
    /// does, for tests whose servers do not change while they check many addresses.
    pub fn with_cache(mut self, entries: u64) -> Oracle {
        self.cache_size = entries;
        self
    }

    /// The SPF result name (pass, fail, softfail, neutral, none, temperror, permerror) of
    /// `check_host(ip, sender_domain, postmaster@sender_domain)`. Sender domains with `_`
    /// labels go through a synthetic `redirect=` (see `SYNTHETIC_SUFFIX`).
    pub async fn check(&self, ip: IpAddr, sender_domain: &str) -> String {
        let mut results = self.check_all(&[ip], sender_domain).await;
        results.pop().expect("one result").1
    }

    /// `check` for each address, in order, on one evaluation thread.
    pub async fn check_all(&self, ips: &[IpAddr], sender_domain: &str) -> Vec<(IpAddr, String)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (oracle, ips, domain) = (self.clone(), ips.to_vec(), sender_domain.to_string());
        std::thread::Builder::new()
            .name("spf-oracle".to_string())
            .stack_size(EVALUATION_STACK)
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let evaluator = Evaluator::new(&oracle);
                let _ = tx.send(runtime.block_on(evaluator.check_all(&ips, &domain)));
            })
            .expect("oracle thread");
        rx.await.expect("the oracle thread panicked")
    }
}

/// One thread's resolvers and viaspf configurations.
struct Evaluator {
    router: Router,
    config: Config,
    /// The same limits plus the one lookup the synthetic `redirect=` costs.
    redirect_config: Config,
}

impl Evaluator {
    fn new(oracle: &Oracle) -> Evaluator {
        Evaluator {
            router: Router::new(&oracle.routes, oracle.cache_size),
            config: config(oracle.limits, 0),
            redirect_config: config(oracle.limits, 1),
        }
    }

    async fn check_all(&self, ips: &[IpAddr], domain: &str) -> Vec<(IpAddr, String)> {
        let mut out = Vec::with_capacity(ips.len());
        for &ip in ips {
            out.push((ip, self.check(ip, domain).await.to_string()));
        }
        out
    }

    async fn check(&self, ip: IpAddr, domain: &str) -> &'static str {
        match Sender::from_domain(domain) {
            Ok(sender) => self.evaluate(ip, &sender, &self.config).await,
            Err(_) => self.check_via_redirect(ip, domain).await,
        }
    }

    async fn check_via_redirect(&self, ip: IpAddr, domain: &str) -> &'static str {
        let name = SpfName::new(domain).unwrap_or_else(|e| panic!("bad sender domain {domain:?}: {e}"));
        // RFC 7208 4.4 and 4.5 for the record lookup itself.
        match self.router.lookup_txt(&name).await {
            Err(LookupError::NoRecords) => return "none",
            Err(_) => return "temperror",
            Ok(texts) if !texts.iter().any(|t| is_spf(t)) => return "none",
            Ok(_) => {}
        }
        let synthetic = self.router.synthesize(format!("v=spf1 redirect={domain}"));
        let sender = Sender::from_domain(&synthetic).expect("synthetic sender domain");
        self.evaluate(ip, &sender, &self.redirect_config).await
    }

    async fn evaluate(&self, ip: IpAddr, sender: &Sender, config: &Config) -> &'static str {
        let result = viaspf::evaluate_sender(&self.router, config, ip, sender, None).await;
        result_name(&result.spf_result)
    }
}

/// `extra_lookups` is added to the DNS-querying term limit only.
fn config(limits: Limits, extra_lookups: usize) -> Config {
    let (lookups, voids) = match limits {
        Limits::Rfc => (10, 2),
        Limits::Lifted => (LIFTED_LOOKUPS, LIFTED_LOOKUPS),
    };
    Config::builder()
        .timeout(EVALUATION_TIMEOUT)
        .max_lookups(lookups + extra_lookups)
        .max_void_lookups(voids)
        .build()
}

/// An SPF record: `v=spf1` alone or followed by a space (RFC 7208 4.5).
fn is_spf(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

fn result_name(result: &SpfResult) -> &'static str {
    match result {
        SpfResult::None => "none",
        SpfResult::Neutral => "neutral",
        SpfResult::Pass => "pass",
        SpfResult::Fail(_) => "fail",
        SpfResult::Softfail => "softfail",
        SpfResult::Temperror => "temperror",
        SpfResult::Permerror => "permerror",
    }
}

/// A resolver per route, longest suffix first, and the synthetic records of
/// `SYNTHETIC_SUFFIX` (the n-th answered at `t<n>.<suffix>`).
struct Router {
    routes: Vec<(LowerName, TokioResolver)>,
    synthetic: Mutex<Vec<String>>,
}

impl Router {
    fn new(routes: &[(String, SocketAddr)], cache_size: u64) -> Router {
        let mut opts = resolver_opts();
        opts.cache_size = cache_size;
        let mut routes: Vec<(LowerName, TokioResolver)> = routes
            .iter()
            .map(|(suffix, server)| {
                (
                    LowerName::from(fqdn(suffix)),
                    resolver_with(*server, opts.clone()),
                )
            })
            .collect();
        routes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.num_labels()));
        Router {
            routes,
            synthetic: Mutex::new(Vec::new()),
        }
    }

    /// Registers a record and returns the (LDH) name it is served at.
    fn synthesize(&self, record: String) -> String {
        let mut synthetic = self.synthetic.lock().unwrap_or_else(|e| e.into_inner());
        synthetic.push(record);
        format!("t{}.{SYNTHETIC_SUFFIX}", synthetic.len() - 1)
    }

    fn synthetic_record(&self, name: &SpfName) -> Option<Vec<String>> {
        let lower = name.as_str().to_ascii_lowercase();
        let index = lower
            .strip_suffix(SYNTHETIC_SUFFIX)?
            .strip_prefix('t')?
            .strip_suffix('.')?;
        let synthetic = self.synthetic.lock().unwrap_or_else(|e| e.into_inner());
        let record = synthetic.get(index.parse::<usize>().ok()?)?;
        Some(vec![record.clone()])
    }

    fn resolver_for(&self, name: &Name) -> &TokioResolver {
        let name = LowerName::from(name);
        let route = self.routes.iter().find(|(suffix, _)| suffix.zone_of(&name));
        &route.unwrap_or_else(|| panic!("no route for {name}")).1
    }

    /// The answer records of one type for a name, from the server its route names.
    async fn answers(&self, name: Name, qtype: RecordType) -> LookupResult<Vec<RData>> {
        let lookup = self
            .resolver_for(&name)
            .lookup(name, qtype)
            .await
            .map_err(lookup_error)?;
        let answers = lookup.answers().iter().filter(|r| r.record_type() == qtype);
        Ok(answers.map(|r| r.data.clone()).collect())
    }
}

/// UDP, then TCP when an answer is truncated; no cache, one attempt.
pub fn resolver(server: SocketAddr) -> TokioResolver {
    resolver_with(server, resolver_opts())
}

/// The options `resolver` uses, for a test to change one (e.g. `edns0 = false`).
pub fn resolver_opts() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    opts
}

pub fn resolver_with(server: SocketAddr, opts: ResolverOpts) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let config = ResolverConfig::from_parts(None, vec![], vec![name_server]);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver")
}

/// NXDOMAIN and NODATA are both "no records" to SPF (RFC 7208 5: no match, a void
/// lookup); a timeout and every other error (SERVFAIL, REFUSED) are temperror.
fn lookup_error(error: NetError) -> LookupError {
    if error.is_no_records_found() {
        LookupError::NoRecords
    } else if matches!(error, NetError::Timeout) {
        LookupError::Timeout
    } else {
        LookupError::Dns(Some(Box::new(error)))
    }
}

#[async_trait]
impl Lookup for Router {
    async fn lookup_a<'lookup, 'a>(&'lookup self, name: &'a SpfName) -> LookupResult<Vec<Ipv4Addr>> {
        let answers = self.answers(to_name(name)?, RecordType::A).await?;
        Ok(answers
            .into_iter()
            .filter_map(|d| if let RData::A(a) = d { Some(a.0) } else { None })
            .collect())
    }

    async fn lookup_aaaa<'lookup, 'a>(&'lookup self, name: &'a SpfName) -> LookupResult<Vec<Ipv6Addr>> {
        let answers = self.answers(to_name(name)?, RecordType::AAAA).await?;
        Ok(answers
            .into_iter()
            .filter_map(|d| if let RData::AAAA(a) = d { Some(a.0) } else { None })
            .collect())
    }

    /// Exchanges by preference. A null MX (exchange ".", RFC 7505) names no host, so it
    /// is left out rather than failing the lookup.
    async fn lookup_mx<'lookup, 'a>(&'lookup self, name: &'a SpfName) -> LookupResult<Vec<SpfName>> {
        let answers = self.answers(to_name(name)?, RecordType::MX).await?;
        let mut mxs: Vec<_> = answers
            .into_iter()
            .filter_map(|d| if let RData::MX(mx) = d { Some(mx) } else { None })
            .filter(|mx| !mx.exchange.is_root())
            .collect();
        mxs.sort_by_key(|mx| mx.preference);
        mxs.iter().map(|mx| from_name(&mx.exchange)).collect()
    }

    /// Each record's strings joined with no separator (RFC 7208 3.3), bytes first so a
    /// character split across strings survives.
    async fn lookup_txt<'lookup, 'a>(&'lookup self, name: &'a SpfName) -> LookupResult<Vec<String>> {
        if let Some(record) = self.synthetic_record(name) {
            return Ok(record);
        }
        let answers = self.answers(to_name(name)?, RecordType::TXT).await?;
        let texts = answers.into_iter().filter_map(|d| match d {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        });
        Ok(texts.collect())
    }

    async fn lookup_ptr<'lookup>(&'lookup self, ip: IpAddr) -> LookupResult<Vec<SpfName>> {
        let answers = self.answers(Name::from(ip), RecordType::PTR).await?;
        let names = answers
            .into_iter()
            .filter_map(|d| if let RData::PTR(p) = d { Some(p.0) } else { None });
        names.map(|name| from_name(&name)).collect()
    }
}

fn to_name(name: &SpfName) -> LookupResult<Name> {
    Name::from_ascii(name.as_str()).map_err(|e| LookupError::Dns(Some(Box::new(e))))
}

fn from_name(name: &Name) -> LookupResult<SpfName> {
    SpfName::new(&name.to_ascii()).map_err(|e| LookupError::Dns(Some(Box::new(e))))
}

fn fqdn(name: &str) -> Name {
    let mut name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// The `ip4:`/`ip6:` networks of SPF record texts, any qualifier and letter case
/// (`-IP4:192.0.2.1` gives 192.0.2.1/32). Other terms are skipped.
pub fn spf_networks<S: AsRef<str>>(records: &[S]) -> Vec<IpNet> {
    let terms = records.iter().flat_map(|r| r.as_ref().split_ascii_whitespace());
    terms.filter_map(term_network).collect()
}

fn term_network(term: &str) -> Option<IpNet> {
    let term = term.trim_start_matches(['+', '-', '~', '?']);
    let (name, value) = term.split_once(':')?;
    let (v4, host_len) = match name.to_ascii_lowercase().as_str() {
        "ip4" => (true, 32),
        "ip6" => (false, 128),
        _ => return None,
    };
    let net = match value.split_once('/') {
        Some(_) => value.parse::<IpNet>().ok()?,
        None => IpNet::new(value.parse().ok()?, host_len).ok()?,
    };
    (net.addr().is_ipv4() == v4).then_some(net.trunc())
}

/// For each `ip4:`/`ip6:` network of the records: its first and last address and the
/// addresses just below and above it (where they exist). Sorted, without duplicates.
pub fn boundary_ips<S: AsRef<str>>(records: &[S]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = spf_networks(records).iter().flat_map(net_boundaries).collect();
    ips.sort();
    ips.dedup();
    ips
}

pub fn net_boundaries(net: &IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
            let around = [first.checked_sub(1), Some(first), Some(last), last.checked_add(1)];
            around
                .into_iter()
                .flatten()
                .map(|a| IpAddr::V4(a.into()))
                .collect()
        }
        IpNet::V6(n) => {
            let (first, last) = (u128::from(n.network()), u128::from(n.broadcast()));
            let around = [first.checked_sub(1), Some(first), Some(last), last.checked_add(1)];
            around
                .into_iter()
                .flatten()
                .map(|a| IpAddr::V6(a.into()))
                .collect()
        }
    }
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same addresses on
/// every run and machine, so a failing random case can be replayed.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.next_u64() as u32)
    }

    pub fn ipv6(&mut self) -> Ipv6Addr {
        let bits = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        Ipv6Addr::from(bits)
    }

    /// A uniformly random address inside `net`.
    pub fn ip_in(&mut self, net: &IpNet) -> IpAddr {
        match net {
            IpNet::V4(n) => IpAddr::V4(random_in_v4(n, self.ipv4())),
            IpNet::V6(n) => IpAddr::V6(random_in_v6(n, self.ipv6())),
        }
    }

    /// `count` addresses, each inside or near one of `nets`: a random network, widened
    /// by up to 4 bits, and a random address in that, so about half land outside.
    pub fn ips_near(&mut self, nets: &[IpNet], count: usize) -> Vec<IpAddr> {
        assert!(!nets.is_empty(), "no networks to pick near");
        (0..count)
            .map(|_| {
                let net = nets[self.below(nets.len() as u64) as usize];
                let wider = net.prefix_len().saturating_sub(self.below(5) as u8);
                self.ip_in(&IpNet::new(net.addr(), wider).unwrap().trunc())
            })
            .collect()
    }
}

fn random_in_v4(net: &Ipv4Net, random: Ipv4Addr) -> Ipv4Addr {
    let mask = u32::from(net.hostmask());
    Ipv4Addr::from((u32::from(net.network()) & !mask) | (u32::from(random) & mask))
}

fn random_in_v6(net: &Ipv6Net, random: Ipv6Addr) -> Ipv6Addr {
    let mask = u128::from(net.hostmask());
    Ipv6Addr::from((u128::from(net.network()) & !mask) | (u128::from(random) & mask))
}
