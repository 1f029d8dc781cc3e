//! Response rate limiting over real loopback UDP: a flood from one source (127.0.0.1)
//! is answered at about the configured rate, every second answer past it is sent
//! truncated and the others dropped, while another source prefix (127.0.1.2) is
//! answered in full and TCP from the flooding address is never limited. Random names
//! asked with DO=1 of a signed zone (compact denials, NOERROR) and NODATA for many types
//! are limited per zone, and what is not sent is not signed.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use spfd::dns::rrl::RrlStats;
use tokio::net::UdpSocket;

const POLICY: &str =
    "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n";
const RATE: usize = 20;
const FLOOD: usize = 400;

async fn server(rrl: &str) -> (Setup, spfd::server::Running) {
    let setup = Setup::new(&[("example.test.toml", POLICY)]);
    std::fs::write(
        setup.config_path(),
        format!("{}[server.rrl]\n{rrl}", config_text()),
    )
    .unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    (setup, running)
}

/// What the flooding source got back.
#[derive(Debug, Default)]
struct Received {
    full: usize,
    truncated: usize,
    /// Seconds from the first query sent to the last.
    sending: f64,
}

/// Sends `FLOOD` queries for the SPF record (ids 0..FLOOD) as fast as the socket takes
/// them while collecting the answers.
async fn flood(addr: SocketAddr) -> Received {
    let spf = |_| query("_spf.example.test.", RecordType::TXT);
    flood_of(addr, spf, |msg| {
        assert_eq!(txt_joined(msg), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    })
    .await
}

/// Sends `FLOOD` queries (`ask(i)` with id i) as fast as the socket takes them while
/// collecting the answers (read at once, so none is lost in a full socket buffer),
/// until none has come for a second; `check` judges each full answer.
async fn flood_of(
    addr: SocketAddr,
    ask: impl Fn(usize) -> Message + Send + 'static,
    check: impl Fn(&Message),
) -> Received {
    let socket = Arc::new(client_socket());
    let sender = socket.clone();
    let sending = tokio::spawn(async move {
        let started = Instant::now();
        for id in 0..FLOOD {
            let mut q = ask(id);
            q.metadata.id = id as u16;
            sender.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            if id % 32 == 31 {
                tokio::task::yield_now().await;
            }
        }
        started.elapsed().as_secs_f64()
    });
    let mut got = collect(&socket, check).await;
    got.sending = sending.await.unwrap();
    got
}

/// A socket on 127.0.0.1 with room for every answer of the flood (the default buffer
/// holds about 250 of them).
fn client_socket() -> UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    UdpSocket::from_std(socket.into()).unwrap()
}

async fn collect(socket: &UdpSocket, check: impl Fn(&Message)) -> Received {
    let mut got = Received::default();
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
        let msg = Message::from_vec(&buf[..n]).unwrap();
        assert!(seen.insert(msg.metadata.id), "one answer per query");
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        if msg.metadata.truncation {
            assert!(msg.answers.is_empty(), "a slipped answer carries no records");
            assert!(msg.edns.is_some(), "nor loses its OPT");
            got.truncated += 1;
        } else {
            check(&msg);
            got.full += 1;
        }
    }
    got
}

/// The flood was answered at the rate (a full bucket, one second's worth, then the rate
/// while it lasted) and every second answer past it was sent truncated.
fn assert_limited(got: &Received, stats: RrlStats) {
    let allowed = RATE as f64 * (1.0 + got.sending);
    assert!(got.full >= RATE, "{got:?}");
    assert!(
        (got.full as f64) <= allowed + 2.0,
        "{got:?}: more than {allowed:.0}"
    );
    let limited = FLOOD - got.full;
    assert_eq!(
        (stats.slipped + stats.dropped) as usize,
        limited,
        "{stats:?} {got:?}"
    );
    assert_eq!(stats.slipped as usize, got.truncated, "{stats:?}");
    assert!(
        got.truncated.abs_diff(limited / 2) <= 1,
        "every second one slips: {got:?}"
    );
}

/// One query from 127.0.1.2, another /24.
async fn ask_from_other_prefix(addr: SocketAddr) -> Message {
    let socket = UdpSocket::bind("127.0.1.2:0").await.unwrap();
    let q = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    socket.send_to(&q, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("127.0.1.2 is answered")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_limited_to_the_rate_and_other_sources_are_answered() {
    // Loopback is whitelisted by default: this test empties the list.
    let (_setup, running) = server(&format!("responses_per_second = {RATE}\nwhitelist = []\n")).await;
    let addr = running.addrs[0];
    let flooding = tokio::spawn(flood(addr));
    for _ in 0..RATE / 2 {
        let other = ask_from_other_prefix(addr).await;
        assert!(!other.metadata.truncation, "{other:?}");
        assert_eq!(txt_joined(&other), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    }
    let got = flooding.await.unwrap();
    assert_limited(&got, running.rrl.read());
    // TCP is never limited.
    let q = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    for _ in 0..2 * RATE {
        let answer = Message::from_vec(&tcp_raw(addr, &q).await).unwrap();
        assert_eq!(txt_joined(&answer), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelisted_and_unlimited_servers_answer_every_query() {
    for rrl in [
        format!("responses_per_second = {RATE}\nwhitelist = [\"127.0.0.0/24\"]\n"),
        // The default whitelist: loopback.
        format!("responses_per_second = {RATE}\n"),
        format!("responses_per_second = {RATE}\nenabled = false\n"),
    ] {
        let (_setup, running) = server(&rrl).await;
        let got = flood(running.addrs[0]).await;
        assert_eq!((got.full, got.truncated), (FLOOD, 0), "{rrl}");
        assert_eq!(running.rrl.read(), Default::default());
        running.shutdown().await.unwrap();
    }
}

const SIGNED: &str = "[dnssec]\nenabled = true\n";

/// `q` with the DO bit.
fn with_do(mut q: Message) -> Message {
    q.edns.as_mut().expect("an OPT").set_dnssec_ok(true);
    q
}

/// The signature cache's reading (one cache for every signed zone).
fn signature_cache(running: &spfd::server::Running) -> spfd::dnssec::CacheStats {
    let snapshot = running.snapshot.load();
    let signed = snapshot
        .zones
        .values()
        .find_map(|z| z.wire.zone.dnssec.clone())
        .expect("a signed zone");
    signed.cache().stats()
}

/// A signed compact denial: no answers; the SOA and an NSEC, each with its RRSIG; NXNAME
/// in the NSEC's bitmap for a name that does not exist.
fn assert_denial(msg: &Message, nxname: bool) {
    assert!(msg.answers.is_empty(), "{msg}");
    let types: Vec<RecordType> = msg.authorities.iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        [
            RecordType::SOA,
            RecordType::RRSIG,
            RecordType::NSEC,
            RecordType::RRSIG
        ],
        "{msg}"
    );
    let bitmap: Vec<u16> = msg
        .authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(nsec)) => Some(nsec.type_bit_maps().map(u16::from).collect()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bitmap.contains(&128), nxname, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_names_with_do_are_limited_per_zone_and_not_signed_past_the_limit() {
    let (_setup, running) = server(&format!(
        "responses_per_second = {RATE}\nwhitelist = []\n{SIGNED}"
    ))
    .await;
    let before = signature_cache(&running).misses;
    let ask = |i| with_do(query(&format!("r{i}._spf.example.test."), RecordType::TXT));
    let got = flood_of(running.addrs[0], ask, |msg| assert_denial(msg, true)).await;
    assert_limited(&got, running.rrl.read());
    // One NSEC signed per answer sent (the SOA's signature is made with the zone):
    // none for the answers dropped or sent truncated.
    let signed = signature_cache(&running).misses - before;
    assert_eq!(signed, got.full as u64, "{got:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata_for_many_types_is_limited_per_zone_signed_or_not() {
    for dnssec_ok in [false, true] {
        let (_setup, running) = server(&format!(
            "responses_per_second = {RATE}\nwhitelist = []\n{SIGNED}"
        ))
        .await;
        // Every query asks another type: each its own question, one zone.
        let ask = move |i: usize| {
            let q = query("_spf.example.test.", RecordType::Unknown(1000 + i as u16));
            if dnssec_ok { with_do(q) } else { q }
        };
        let check = move |msg: &Message| match dnssec_ok {
            true => assert_denial(msg, false),
            false => {
                let types: Vec<RecordType> = msg.authorities.iter().map(|r| r.record_type()).collect();
                assert!(msg.answers.is_empty() && types == [RecordType::SOA], "{msg}");
            }
        };
        let got = flood_of(running.addrs[0], ask, check).await;
        assert_limited(&got, running.rrl.read());
        running.shutdown().await.unwrap();
    }
}
