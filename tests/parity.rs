//! Parser parity: malformed messages, generated from fixed seeds (bit flips, truncation,
//! compression pointers and loops, bad OPT records, wrong section counts, garbage),
//! sent to the running server over UDP (the fast path first) and over TCP (the general
//! path); both must give the same response code, or both stay silent.
//!
//! Silence is told from slowness with a sentinel: each malformed message is followed by
//! a well-formed query on the same socket or connection; answers come back in order, so
//! when the sentinel's answer comes first the malformed message got none.
//! `SPFD_PARITY_SEEDS=1,2,3 cargo test --test parity` explores other seeds.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[path = "parity/generate.rs"]
mod generate;
use generate::{Rng, malformed};

/// What a message got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Silence,
    /// The response code (extended codes included when the response parses).
    Rcode(u16),
}

const SENTINEL_NAME: &str = "_spf.example.test.";

fn reply_of(response: &[u8]) -> Reply {
    match Message::from_vec(response) {
        Ok(msg) => Reply::Rcode(u16::from(msg.metadata.response_code)),
        Err(_) => Reply::Rcode(u16::from(response[3] & 0x0f)),
    }
}

/// A query whose id differs from the malformed message's, so their answers are told apart.
fn sentinel(malformed: &[u8]) -> (u16, Vec<u8>) {
    let taken = malformed.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let id = if taken == Some(0x5e57) { 0x5e58 } else { 0x5e57 };
    let mut q = query(SENTINEL_NAME, hickory_proto::rr::RecordType::TXT);
    q.metadata.id = id;
    (id, q.to_vec().unwrap())
}

fn is_sentinel_answer(id: u16, response: &[u8]) -> bool {
    Message::from_vec(response).is_ok_and(|m| {
        m.metadata.id == id
            && m.queries
                .first()
                .is_some_and(|q| q.name().to_string() == SENTINEL_NAME)
    })
}

async fn over_udp(addr: SocketAddr, malformed: &[u8]) -> Reply {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (id, sentinel) = sentinel(malformed);
    let mut buf = vec![0u8; 65535];
    // Resent whole on a lost datagram (a loaded machine), like a real client.
    for _ in 0..3 {
        socket.send_to(malformed, addr).await.unwrap();
        socket.send_to(&sentinel, addr).await.unwrap();
        let mut reply = Reply::Silence;
        while let Ok(n) = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            let response = &buf[..n.unwrap()];
            if is_sentinel_answer(id, response) {
                return reply;
            }
            reply = reply_of(response);
        }
    }
    panic!("no answer to the sentinel over UDP");
}

async fn over_tcp(addr: SocketAddr, malformed: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (id, sentinel) = sentinel(malformed);
    let mut framed = Vec::new();
    for message in [malformed, &sentinel[..]] {
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(message);
    }
    stream.write_all(&framed).await.unwrap();
    let mut reply = Reply::Silence;
    loop {
        let mut len = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut len)).await;
        read.expect("an answer over TCP")
            .expect("the connection stays open");
        let mut response = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut response).await.unwrap();
        if is_sentinel_answer(id, &response) {
            return reply;
        }
        reply = reply_of(&response);
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SPFD_PARITY_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("a seed"))
            .collect(),
        Err(_) => vec![1, 2],
    }
}

/// Messages per seed.
const MESSAGES: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_agree_on_every_malformed_message() {
    let policy = format!(
        "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n\
         [dmarc]\np = \"reject\"\n[dkim.s2048]\nkey_file = \"{}\"\n",
        key_path("rsa2048.pub.pem").display()
    );
    let setup = Setup::new(&[("example.test.toml", &policy)]);
    std::fs::write(
        setup.config_path(),
        format!("{}[server.rrl]\nenabled = false\n", config_text()),
    )
    .unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    let mut kinds = std::collections::BTreeMap::<&str, [usize; 2]>::new();
    for seed in seeds() {
        let mut rng = Rng::new(seed);
        for i in 0..MESSAGES {
            let (kind, message) = malformed(&mut rng);
            let udp = over_udp(addr, &message).await;
            let tcp = over_tcp(addr, &message).await;
            assert_eq!(
                udp,
                tcp,
                "seed {seed} message {i} ({kind}): {}",
                message.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            kinds.entry(kind).or_default()[usize::from(udp == Reply::Silence)] += 1;
        }
    }
    // Every category was generated, and most messages got an answer.
    assert_eq!(kinds.len(), generate::KINDS, "{kinds:?}");
    let silent: usize = kinds.values().map(|[_, s]| s).sum();
    assert!(silent < kinds.values().map(|[a, _]| a).sum(), "{kinds:?}");
    running.shutdown().await.unwrap();
}
