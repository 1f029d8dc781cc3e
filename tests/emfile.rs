//! Running out of file descriptors, reproduced on the real `spfd` binary started under
//! `prlimit` (util-linux), in its own process so the lowered limit touches nothing
//! else: at startup a `tcp_connections` that cannot fit the limit is lowered with a
//! warning; when accept fails with EMFILE the server pauses instead of retrying at once
//! (it spun a core), says so once, and keeps answering.
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
