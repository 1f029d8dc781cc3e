//! Test harness: the real server on 127.0.0.1 port 0 with policies in a temporary
//! directory, and a DNS client speaking the wire protocol over UDP and TCP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use spfd::config::Config;
use spfd::server::{self, Running};

pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keys")
        .join(name)
}

pub fn config_text() -> String {
    "[server]\nlisten = [\"127.0.0.1:0\"]\nnameservers = [\"ns1.spfd.test\", \"ns2.spfd.test\"]\n\
     hostmaster = \"hostmaster@spfd.test\"\nstate_dir = \"state\"\n[policies]\ndir = \"policies\"\n"
        .to_string()
}

/// A temporary directory holding `spfd.toml` and `policies/`.
pub struct Setup {
    pub dir: TempDir,
}

impl Setup {
    pub fn new(policies: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("spfd.toml"), config_text()).unwrap();
        let setup = Setup { dir };
        for (name, text) in policies {
            setup.write_policy(name, text);
        }
        setup
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("spfd.toml")
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path()).unwrap()
    }

    pub fn policy_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("policies").join(name)
    }

    /// Writes a policy the way editors do: a new file renamed over the old one.
    pub fn write_policy(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.policy_path(name)).unwrap();
    }

    pub fn remove_policy(&self, name: &str) {
        std::fs::remove_file(self.policy_path(name)).unwrap();
    }
}

pub struct TestServer {
    pub setup: Setup,
    pub running: Running,
    pub addr: SocketAddr,
}

impl TestServer {
    pub async fn start(policies: &[(&str, &str)]) -> TestServer {
        let setup = Setup::new(policies);
        let running = server::start(&setup.config()).await.unwrap();
        let addr = running.addrs[0];
        TestServer { setup, running, addr }
    }

    pub async fn udp(&self, msg: &Message) -> Message {
        Message::from_vec(&udp_raw(self.addr, &msg.to_vec().unwrap()).await).unwrap()
    }

    pub async fn tcp(&self, msg: &Message) -> Message {
        Message::from_vec(&tcp_raw(self.addr, &msg.to_vec().unwrap()).await).unwrap()
    }

    /// Asks until `check` holds for the UDP answer, for at most 10 seconds (reloads are
    /// driven by file events; the deadline is a safety net, not a timing assertion).
    pub async fn wait_until(&self, msg: &Message, check: impl Fn(&Message) -> bool) -> Message {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.udp(msg).await;
            if check(&response) || tokio::time::Instant::now() > deadline {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn generation(&self) -> u64 {
        self.running.snapshot.load().generation
    }
}

/// One UDP exchange, retried like a real DNS client does (a datagram may be lost on a
/// loaded machine): three tries of two seconds.
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        socket.send_to(bytes, addr).await.unwrap();
        if let Ok(n) = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            buf.truncate(n.unwrap());
            return buf;
        }
    }
    panic!("no UDP answer from {addr} in three tries");
}

pub async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    buf
}

/// A query with EDNS (payload 1232).
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut msg = query_no_edns(name, rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    msg
}

pub fn query_no_edns(name: &str, rtype: RecordType) -> Message {
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    msg
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// The character-strings of every TXT record in the answer section.
pub fn txt_strings(msg: &Message) -> Vec<Vec<String>> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8(s.to_vec()).unwrap())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Every TXT record of the answer, its strings joined with no separator (RFC 7208 3.3).
pub fn txt_joined(msg: &Message) -> Vec<String> {
    txt_strings(msg).into_iter().map(|s| s.concat()).collect()
}

/// A port free for UDP and TCP on 127.0.0.1 (for a peer that binds it itself), never
/// handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// knotd (Debian package knot) in the foreground with `dir/knot.conf`.
pub fn spawn_knotd(dir: &std::path::Path) -> std::process::Child {
    let knotd = if std::path::Path::new("/usr/sbin/knotd").exists() {
        "/usr/sbin/knotd"
    } else {
        "knotd"
    };
    std::process::Command::new(knotd)
        .arg("-c")
        .arg(dir.join("knot.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("knotd (Debian package knot)")
}
