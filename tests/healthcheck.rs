//! `spfd healthcheck`, the real binary against a one-shot HTTP server on 127.0.0.1
//! port 0: exit 0 on a 200, 1 on any other status, on a refused connection and on a
//! peer that does not speak HTTP; the admin token sent when given.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread::JoinHandle;

/// Accepts one connection, returns the request head it read, answers `answer`.
fn one_shot(answer: &'static str) -> (SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        (&stream).write_all(answer.as_bytes()).unwrap();
        head
    });
    (addr, handle)
}

fn healthcheck(addr: SocketAddr) -> (i32, String, String) {
    healthcheck_with(addr, &[])
}

fn healthcheck_with(addr: SocketAddr, more: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["healthcheck", "--addr", &addr.to_string(), "--timeout", "5s"])
        .args(more)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_200_from_healthz_is_healthy() {
    let (addr, server) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    let (code, out, err) = healthcheck(addr);
    let head = server.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(head[0], "GET /healthz HTTP/1.1");
    assert!(head.contains(&format!("Host: {addr}")), "{head:?}");
    assert_eq!(out, format!("http://{addr}/healthz: 200 OK\n"));
    assert!(!head.iter().any(|h| h.starts_with("Authorization")), "{head:?}");
}

#[test]
fn the_token_file_is_sent_as_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (addr, server) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let (code, out, err) = healthcheck_with(addr, &["--token-file", token.to_str().unwrap()]);
    let head = server.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        head.contains(&"Authorization: Bearer s3cret".to_string()),
        "{head:?}"
    );
}

#[test]
fn an_unreadable_token_file_is_unhealthy_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, out, err) = healthcheck_with(addr, &["--token-file", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("token file") && err.contains("missing"), "{err}");
}

#[test]
fn a_503_is_unhealthy_with_exit_1() {
    let (addr, server) = one_shot("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nstarting\n");
    let (code, out, err) = healthcheck(addr);
    server.join().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("answered 503"), "{err}");
}

#[test]
fn nothing_listening_is_unhealthy_with_exit_1() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // The listener is dropped: the port is closed (and, on loopback, refused at once).
    let (code, out, err) = healthcheck(addr);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn a_peer_that_is_not_http_is_unhealthy_with_exit_1() {
    let (addr, server) = one_shot("SSH-2.0-OpenSSH_9.2\r\n");
    let (code, out, err) = healthcheck(addr);
    server.join().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not an HTTP status line"), "{err}");
}
