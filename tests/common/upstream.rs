//! The upstream DNS world for tests: hickory-server's `Catalog` serving the zone files of a
//! directory (tests/upstream/) over UDP and TCP on 127.0.0.1, one port for both. A thin
//! `RequestHandler` in front of the catalog consults a failure table first, so a test can
//! make names time out or SERVFAIL, and zones can be replaced while the server runs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::RwLock;

/// What a failing name does to a query for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer at all: the query is dropped, so the client times out.
    Timeout,
    /// A SERVFAIL answer carrying the question.
    ServFail,
}

/// One query as the upstream saw it, for tests that count what a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedQuery {
    /// Lower case, fully qualified (trailing dot).
    pub name: String,
    pub qtype: RecordType,
    pub protocol: Protocol,
}

/// A failure applies to a name and every name below it, for one record type or all.
#[derive(Clone, Debug)]
struct FailureRule {
    name: LowerName,
    qtype: Option<RecordType>,
    failure: Failure,
}

/// The state shared by the handler and the test: the catalog behind a lock so zones can be
/// replaced between queries, the zone texts (so a test can edit what it loaded), the
/// failure table and the query log.
struct World {
    catalog: RwLock<Catalog>,
    zones: Mutex<BTreeMap<String, Zone>>,
    failures: Mutex<Vec<FailureRule>>,
    log: Mutex<Vec<LoggedQuery>>,
}

/// A zone as loaded: its text, and the parsed records (read back by `spf_records`).
#[derive(Clone)]
struct Zone {
    text: String,
    records: BTreeMap<RrKey, RecordSet>,
}

/// A running upstream server. Dropping it stops the server (its tasks live in a `JoinSet`).
pub struct Upstream {
    pub addr: SocketAddr,
    world: Arc<World>,
    /// Held for its tasks: dropping the server aborts them.
    _server: Server<FailureGate>,
}

impl Upstream {
    /// Serves every `*.zone` file of `zone_dir`; the origin is the file name without
    /// `.zone` (`provider-a.test.zone` → `provider-a.test.`). Panics on a bad zone file.
    pub async fn start(zone_dir: &Path) -> Upstream {
        let world = Arc::new(World {
            catalog: RwLock::new(Catalog::new()),
            zones: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        for (origin, text) in read_zone_dir(zone_dir) {
            world
                .install(&origin, text)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(FailureGate {
            world: Arc::clone(&world),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Upstream {
            addr,
            world,
            _server: server,
        }
    }

    /// The `[upstream]` section of an spfd config file pointing at this server.
    pub fn resolver_config_toml(&self) -> String {
        format!(
            "[upstream]\nnameservers = [\"{}\"]\ntimeout = \"1s\"\n",
            self.addr
        )
    }

    /// Replaces (or adds) the zone `origin` with `zone_text` (RFC 1035 master file syntax,
    /// relative names taken relative to `origin`). Panics on a bad zone.
    pub async fn replace_zone(&self, origin: &str, zone_text: &str) {
        self.world
            .install(origin, zone_text.to_string())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Removes a zone: names in it are then answered REFUSED, as by a server that is not
    /// authoritative for them.
    pub async fn remove_zone(&self, origin: &str) {
        let name = LowerName::from(fqdn(origin));
        self.world.catalog.write().await.remove(&name);
        lock(&self.world.zones).remove(&name.to_string());
    }

    /// The text a zone was last loaded from, to edit and hand back to `replace_zone`.
    pub fn zone_text(&self, origin: &str) -> String {
        let key = fqdn(origin).to_lowercase().to_string();
        let zones = lock(&self.world.zones);
        zones
            .get(&key)
            .unwrap_or_else(|| panic!("no zone {key}"))
            .text
            .clone()
    }

    /// Makes `name` and every name below it fail for all record types (a whole zone when
    /// `name` is its origin), until cleared.
    pub fn set_failure(&self, name: &str, failure: Failure) {
        self.add_rule(name, None, failure);
    }

    /// Makes queries of one type for `name` (and names below it) fail.
    pub fn set_failure_for(&self, name: &str, qtype: RecordType, failure: Failure) {
        self.add_rule(name, Some(qtype), failure);
    }

    /// Removes every failure set on exactly `name`.
    pub fn clear_failure(&self, name: &str) {
        let name = LowerName::from(fqdn(name));
        lock(&self.world.failures).retain(|rule| rule.name != name);
    }

    pub fn clear_failures(&self) {
        lock(&self.world.failures).clear();
    }

    /// Every query received so far, in order (failed ones included).
    pub fn queries(&self) -> Vec<LoggedQuery> {
        lock(&self.world.log).clone()
    }

    /// How many queries for `name` and `qtype` arrived so far.
    pub fn query_count(&self, name: &str, qtype: RecordType) -> usize {
        let name = fqdn(name).to_lowercase().to_string();
        let log = lock(&self.world.log);
        log.iter().filter(|q| q.name == name && q.qtype == qtype).count()
    }

    pub fn clear_query_log(&self) {
        lock(&self.world.log).clear();
    }

    /// Every `v=spf1` TXT record currently served, as (owner name, strings joined).
    pub fn spf_records(&self) -> Vec<(String, String)> {
        let zones = lock(&self.world.zones);
        let records = zones.values().flat_map(|zone| zone.records.values());
        let txt = records.flat_map(|set| set.records_without_rrsigs());
        let mut out: Vec<(String, String)> = txt
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => Some((record.name.to_string(), join_strings(&txt.txt_data))),
                _ => None,
            })
            .filter(|(_, text)| is_spf(text))
            .collect();
        out.sort();
        out
    }

    fn add_rule(&self, name: &str, qtype: Option<RecordType>, failure: Failure) {
        let rule = FailureRule {
            name: LowerName::from(fqdn(name)),
            qtype,
            failure,
        };
        lock(&self.world.failures).push(rule);
    }
}

impl World {
    async fn install(&self, origin: &str, text: String) -> Result<(), String> {
        let origin = fqdn(origin);
        let (_, records) = Parser::new(text.as_str(), None, Some(origin.clone()))
            .parse()
            .map_err(|e| format!("zone {origin}: {e}"))?;
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin.clone(),
            records.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .map_err(|e| format!("zone {origin}: {e}"))?;
        let key = LowerName::from(&origin);
        self.catalog
            .write()
            .await
            .upsert(key.clone(), vec![Arc::new(handler)]);
        lock(&self.zones).insert(key.to_string(), Zone { text, records });
        Ok(())
    }

    /// The failure for a question: the most specific matching rule wins, the latest of
    /// equally specific ones.
    fn failure_for(&self, name: &LowerName, qtype: RecordType) -> Option<Failure> {
        let failures = lock(&self.failures);
        let matching = failures
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.qtype.is_none_or(|t| t == qtype) && rule.name.zone_of(name));
        matching
            .max_by_key(|(i, rule)| (rule.name.num_labels(), *i))
            .map(|(_, rule)| rule.failure)
    }
}

/// The request handler: log the question, apply a failure if one matches, otherwise let
/// the catalog answer.
#[derive(Clone)]
struct FailureGate {
    world: Arc<World>,
}

#[async_trait]
impl RequestHandler for FailureGate {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let failure = match request.request_info() {
            Ok(info) => {
                let name = info.query.name();
                let qtype = info.query.query_type();
                lock(&self.world.log).push(LoggedQuery {
                    name: name.to_string(),
                    qtype,
                    protocol: info.protocol,
                });
                self.world.failure_for(name, qtype)
            }
            Err(_) => None,
        };
        match failure {
            None => {
                let catalog = self.world.catalog.read().await;
                catalog.handle_request::<R, T>(request, response_handle).await
            }
            Some(Failure::Timeout) => servfail_info(&request.metadata),
            Some(Failure::ServFail) => {
                let builder = MessageResponseBuilder::from_message_request(request);
                let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                match response_handle.send_response(response).await {
                    Ok(info) => info,
                    Err(_) => servfail_info(&request.metadata),
                }
            }
        }
    }
}

/// The `ResponseInfo` of an answer that was not (or could not be) sent.
fn servfail_info(request: &Metadata) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// (origin, text) of every `*.zone` file in `dir`, sorted by file name.
fn read_zone_dir(dir: &Path) -> Vec<(String, String)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut zones: Vec<(String, String)> = entries
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let origin = path.file_name()?.to_str()?.strip_suffix(".zone")?.to_string();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some((origin, text))
        })
        .collect();
    zones.sort();
    zones
}

/// UDP on 127.0.0.1 port 0, then TCP on the port UDP was given (retried with a new port in
/// the rare case another process holds that TCP port).
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

fn fqdn(name: &str) -> Name {
    let mut name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    name.set_fqdn(true);
    name
}

fn join_strings(strings: &[Box<[u8]>]) -> String {
    let bytes: Vec<u8> = strings.iter().flat_map(|s| s.iter().copied()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A record is SPF when its text is `v=spf1` alone or followed by a space (RFC 7208 4.5).
fn is_spf(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

/// Locks a mutex, ignoring poisoning: a panicking test must not hide the world from others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
