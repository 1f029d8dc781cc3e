//! Response rate limiting over real loopback UDP: a flood from one source (127.0.0.1)
//! is answered at about the configured rate, every second answer past it is sent
//! truncated and the others dropped, while another source prefix (127.0.1.2) is
//! answered in full and TCP from the flooding address is never limited.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
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

/// Sends `FLOOD` queries (ids 0..FLOOD) as fast as the socket takes them while
/// collecting the answers (read at once, so none is lost in a full socket buffer),
/// until none has come for a second.
async fn flood(addr: SocketAddr) -> Received {
    let socket = Arc::new(client_socket());
    let sender = socket.clone();
    let sending = tokio::spawn(async move {
        let mut q = query("_spf.example.test.", RecordType::TXT);
        let started = Instant::now();
        for id in 0..FLOOD {
            q.metadata.id = id as u16;
            sender.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            if id % 32 == 31 {
                tokio::task::yield_now().await;
            }
        }
        started.elapsed().as_secs_f64()
    });
    let mut got = collect(&socket).await;
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

async fn collect(socket: &UdpSocket) -> Received {
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
            assert_eq!(txt_joined(&msg), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
            got.full += 1;
        }
    }
    got
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
    // A full bucket (one second's worth), then the rate while the flood lasts.
    let allowed = RATE as f64 * (1.0 + got.sending);
    assert!(got.full >= RATE, "{got:?}");
    assert!(
        (got.full as f64) <= allowed + 2.0,
        "{got:?}: more than {allowed:.0}"
    );
    let limited = FLOOD - got.full;
    let stats = running.rrl.read();
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
