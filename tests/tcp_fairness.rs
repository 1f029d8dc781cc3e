//! Fair TCP against the real server: one address flooding idle connections (127.0.0.2;
//! Linux routes all of 127/8 to loopback) does not keep another (127.0.0.1) from being
//! answered, whether the flood meets the per-source cap or fills the global cap; and a
//! client trickling a message is cut off at the message deadline, before the idle
//! timeout.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const POLICY: &str =
    "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n";

async fn server(tcp_keys: &str) -> (Setup, spfd::server::Running) {
    let setup = Setup::new(&[("example.test.toml", POLICY)]);
    let config = config_text().replace(
        "state_dir = \"state\"\n",
        &format!("state_dir = \"state\"\n{tcp_keys}"),
    );
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    (setup, running)
}

async fn connect_from(local: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{local}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// Opens `count` connections from 127.0.0.2 that never send anything, and keeps them.
async fn idle_flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(connect_from("127.0.0.2", addr).await.unwrap());
    }
    // Let the server accept (and refuse or admit) every one of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    held
}

/// One TCP query from `local`, and the connection, still open; `None` when the server
/// closed the connection instead.
async fn ask_from(local: &str, addr: SocketAddr) -> Option<(Message, TcpStream)> {
    let mut stream = connect_from(local, addr).await.ok()?;
    let q = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut len)).await;
    read.ok()?.ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).await.ok()?;
    Some((Message::from_vec(&body).ok()?, stream))
}

/// How many of `connections` the server has closed (a read gives end of file or an
/// error within a short wait; an open idle connection gives nothing).
async fn closed(connections: &mut [TcpStream]) -> usize {
    let mut n = 0;
    for c in connections.iter_mut() {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(20), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => n += 1,
            _ => {}
        }
    }
    n
}

#[tokio::test]
async fn an_idle_flood_from_one_address_is_held_to_its_share() {
    let (_setup, running) = server("tcp_connections = 64\n").await;
    let addr = running.addrs[0];
    let mut flood = idle_flood(addr, 100).await;
    // 64 / 16 = 4, raised to the minimum share of 8.
    assert_eq!(flood.len() - closed(&mut flood).await, 8);
    for _ in 0..20 {
        let (answer, _) = ask_from("127.0.0.1", addr).await.expect("127.0.0.1 is answered");
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(txt_joined(&answer), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_table_makes_room_by_closing_the_longest_idle_connection() {
    let (_setup, running) = server("tcp_connections = 16\ntcp_connections_per_source = 16\n").await;
    let addr = running.addrs[0];
    let mut flood = idle_flood(addr, 16).await;
    assert_eq!(closed(&mut flood).await, 0, "16 fit");
    let mut kept = Vec::new();
    for i in 0..5 {
        let (_, stream) = ask_from("127.0.0.1", addr)
            .await
            .unwrap_or_else(|| panic!("query {i} from 127.0.0.1 not answered"));
        kept.push(stream);
    }
    // Each new connection (kept open) closed one of the flood's, the oldest first.
    let mut gone = 0;
    for (i, c) in flood.iter_mut().enumerate() {
        let was_closed = closed(std::slice::from_mut(c)).await == 1;
        assert_eq!(was_closed, i < 5, "connection {i}");
        gone += usize::from(was_closed);
    }
    assert_eq!(gone, 5);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_trickled_message_is_cut_off_at_the_message_deadline() {
    let (_setup, running) = server("tcp_idle_timeout = \"30s\"\ntcp_message_timeout = \"500ms\"\n").await;
    let addr = running.addrs[0];
    let mut slow = connect_from("127.0.0.1", addr).await.unwrap();
    let started = Instant::now();
    // The first octet of a 40-octet message, then one octet every 100 ms.
    slow.write_all(&[0]).await.unwrap();
    let mut buf = [0u8; 1];
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(&[40]).await.is_err() {
            break "write failed";
        }
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
            break "closed";
        }
        // Far below the idle timeout: the connection must be gone by then.
        assert!(started.elapsed() < Duration::from_secs(20), "never closed");
    };
    assert!(["closed", "write failed"].contains(&outcome));
    running.shutdown().await.unwrap();
}
