//! Running out of file descriptors, reproduced on the real `spfd` binary started under
//! `prlimit` (util-linux), in its own process so the lowered limit touches nothing
//! else: at startup a `tcp_connections` that cannot fit the limit is lowered with a
//! warning; when accept fails with EMFILE the server pauses instead of retrying at once
//! (it spun a core), says so once, and keeps answering. A flood of idle connections
//! to the admin server cannot take the descriptors DNS needs.
//!
//! The CPU check is a spin detector, not a speed test: a spinning accept loop burns
//! about one CPU second per wall second; a paused one next to nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const POLICY: &str =
    "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n";

/// The binary, its log lines as they come, and its address once it serves.
struct Spfd {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Drop for Spfd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_under_prlimit(setup: &Setup, nofile: u64) -> Spfd {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(env!("CARGO_BIN_EXE_spfd"))
        .args(["serve", "--config"])
        .arg(setup.config_path())
        .env("SPFD_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs spfd");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
    std::thread::spawn(move || {
        lines
            .lines()
            .map_while(Result::ok)
            .for_each(|l| sink.lock().unwrap().push(l))
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let found = log.lock().unwrap().iter().find_map(|l| served_addr(l));
        if let Some(addr) = found {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "spfd did not start: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Spfd { child, log, addr }
}

/// The admin address in the `listening ... admin=Some(...)` line.
fn admin_addr(spfd: &Spfd) -> SocketAddr {
    let log = spfd.log.lock().unwrap();
    let line = log
        .iter()
        .find(|l| l.contains("admin=Some("))
        .expect("the admin address is logged");
    let rest = line.split_once("admin=Some(").unwrap().1;
    rest.split_once(')').unwrap().0.parse().unwrap()
}

/// The address in the `serving addrs=[...]` line.
fn served_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("serving addrs=[")?.1;
    rest.split_once(']')?.0.parse().ok()
}

/// CPU seconds (user and system) the process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): state is field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

fn lines_with(spfd: &Spfd, text: &str) -> Vec<String> {
    let log = spfd.log.lock().unwrap();
    log.iter().filter(|l| l.contains(text)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_pauses_accepts_instead_of_spinning() {
    let setup = Setup::new(&[("example.test.toml", POLICY)]);
    // One source may hold every connection (the test's connections all come from
    // 127.0.0.1).
    let config = config_text().replace(
        "state_dir = \"state\"\n",
        "state_dir = \"state\"\ntcp_connections_per_source = 1024\n",
    );
    std::fs::write(setup.config_path(), config).unwrap();
    let spfd = start_under_prlimit(&setup, 256);
    // 1024 connections cannot fit 256 descriptors: lowered, with a warning.
    let lowered = lines_with(&spfd, "does not fit the open-files limit");
    assert_eq!(lowered.len(), 1, "{:?}", spfd.log.lock().unwrap());
    assert!(lowered[0].contains("lowered_to="), "{}", lowered[0]);

    // Now take descriptors away from the running server: a few connections fit.
    let pid = spfd.child.id();
    let limit = open_descriptors(pid) + 4;
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:{limit}")])
        .status()
        .unwrap();
    assert!(status.success());
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(tokio::net::TcpStream::connect(spfd.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu_before, wall) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let wall = wall.elapsed().as_secs_f64();
    assert!(
        cpu < wall * 0.2,
        "{cpu:.2} CPU seconds in {wall:.2} s: the accept loop spins"
    );

    let warnings = lines_with(&spfd, "tcp accept failed");
    assert!(!warnings.is_empty(), "EMFILE is logged");
    assert!(warnings.len() <= 2, "logged once per interval: {warnings:?}");
    assert!(
        warnings[0].contains("open files") || warnings[0].contains("Too many"),
        "{}",
        warnings[0]
    );
    // UDP is answered all along.
    let q = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    let answer = Message::from_vec(&udp_raw(spfd.addr, &q).await).unwrap();
    assert_eq!(txt_joined(&answer), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    drop(held);
}

/// An HTTP GET from `source` (another loopback address than the flood's); the response
/// head and body, or `None` when the connection fails or closes without one.
async fn admin_get(addr: SocketAddr, source: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let exchange = async {
        let mut stream = socket.connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: spfd\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        Some(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
        .filter(|r| !r.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connection_flood_leaves_dns_and_the_admin_server_serving() {
    const NOFILE: u64 = 1024;
    let setup = Setup::new(&[("example.test.toml", POLICY)]);
    let config = config_text() + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(setup.config_path(), config).unwrap();
    let spfd = start_under_prlimit(&setup, NOFILE);
    let admin = admin_addr(&spfd);

    // Idle connections from one source, far more than the process has descriptors;
    // each is held open by the test and never sends a byte.
    let mut held = Vec::new();
    for _ in 0..3000 {
        let connect = tokio::net::TcpStream::connect(admin);
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(stream)) => held.push(stream),
            // The backlog is full: the server no longer accepts.
            _ => break,
        }
    }
    let pid = spfd.child.id();
    assert!(
        open_descriptors(pid) < NOFILE - 64,
        "{} descriptors open of {NOFILE}",
        open_descriptors(pid)
    );
    // DNS over TCP is answered.
    let q = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    let tcp = tokio::time::timeout(Duration::from_secs(10), tcp_raw(spfd.addr, &q))
        .await
        .expect("a TCP query is answered during the flood");
    let answer = Message::from_vec(&tcp).unwrap();
    assert_eq!(txt_joined(&answer), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    // Another source still gets the admin server, and the refusals are counted.
    let status = admin_get(admin, "127.0.0.2", "/healthz").await;
    assert!(
        status.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        "{status:?}"
    );
    let metrics = admin_get(admin, "127.0.0.2", "/metrics")
        .await
        .unwrap_or_default();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("spfd_admin_connections_refused_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 2000), "{refused:?} in {metrics}");
    // One line per refused connection would be thousands.
    let refusals = lines_with(&spfd, "admin connection closed");
    assert!(
        (1..=LOGGED_PER_INTERVAL).contains(&refusals.len()),
        "{refusals:?}"
    );
    drop(held);
}

/// Refusals logged per interval ([`spfd::logging::LogLimit::BURST`]).
const LOGGED_PER_INTERVAL: usize = spfd::logging::LogLimit::BURST as usize;
