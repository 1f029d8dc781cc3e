//! The peers of the zone transfer tests: kdig, and NSD and Knot as secondaries of spfd
//! run in the foreground with configs generated in a temporary directory.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::SECRET;

/// `kdig` against 127.0.0.1:port with extra arguments; stdout and stderr together.
pub fn kdig(port: u16, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=3", "+retry=1"])
        .args(args)
        .output()
        .expect("kdig runs");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

pub fn key_arg(secret: &str) -> String {
    format!("hmac-sha256:xfr-key:{secret}")
}

/// The records of a `kdig AXFR` (comments and blank lines dropped), white space
/// normalised.
pub fn axfr_records(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("\tTSIG\t"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

pub fn axfr(port: u16, zone: &str, secret: Option<&str>) -> String {
    let key = secret.map(key_arg);
    let mut args = vec!["AXFR", zone];
    if let Some(key) = &key {
        args.extend(["-y", key]);
    }
    kdig(port, &args)
}

/// A secondary run in the foreground; killed when dropped.
pub struct Peer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub name: &'static str,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    /// Waits until the peer serves `zone` at `serial` (a deadline as a safety net).
    pub async fn wait_for_serial(&self, zone: &str, serial: u32) {
        for _ in 0..300 {
            if soa_serial(self.port, zone) == Some(serial) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} never served {zone} at serial {serial} (has {:?}); log:\n{}",
            self.name,
            soa_serial(self.port, zone),
            self.log()
        );
    }
}

pub fn soa_serial(port: u16, zone: &str) -> Option<u32> {
    let out = kdig(port, &["+short", "SOA", zone]);
    out.split_whitespace().nth(2)?.parse().ok()
}

/// Every zone of the test server; the peers are asked to transfer them all.
pub const ZONES: [&str; 4] = ["_spf.example.test.", "flat.test.", "big.test.", "_spf.m.test."];
/// The zones that can be transferred (the last of [`ZONES`] is in macro mode).
pub const FINITE: [&str; 3] = ["_spf.example.test.", "flat.test.", "big.test."];

pub fn nsd(port: u16, spfd_port: u16) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n\
         \x20 xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n\
         \x20 username: \"\"\n  chroot: \"\"\n  logfile: \"{d}/peer.log\"\n  verbosity: 2\n  minimal-responses: yes\n\
         \x20 refuse-any: no\n  tcp-count: 20\nremote-control:\n  control-enable: no\n\
         key:\n  name: xfr-key\n  algorithm: hmac-sha256\n  secret: \"{SECRET}\"\n"
    );
    for zone in ZONES {
        conf += &format!(
            "zone:\n  name: {zone}\n  zonefile: \"{zone}zone\"\n  request-xfr: AXFR 127.0.0.1@{spfd_port} xfr-key\n\
             \x20 allow-notify: 127.0.0.1 xfr-key\n  provide-xfr: 127.0.0.1 NOKEY\n"
        );
    }
    std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
    let child = Command::new("nsd")
        .args(["-d", "-c"])
        .arg(dir.path().join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nsd runs");
    Peer {
        child,
        port,
        dir,
        name: "NSD",
    }
}

pub fn knot(port: u16, spfd_port: u16, secret: &str) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
         log:\n  - target: \"{d}/peer.log\"\n    any: info\n\
         database:\n  storage: \"{d}\"\n\
         key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {secret}\n\
         remote:\n  - id: spfd\n    address: 127.0.0.1@{spfd_port}\n    key: xfr-key\n\
         acl:\n  - id: from_spfd\n    address: 127.0.0.1\n    key: xfr-key\n    action: notify\n\
         \x20 - id: local_transfer\n    address: 127.0.0.1\n    action: transfer\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: all\n\
         zone:\n"
    );
    for zone in ZONES {
        conf += &format!("  - domain: {zone}\n    master: spfd\n    acl: [from_spfd, local_transfer]\n");
    }
    std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
    let child = crate::common::spawn_knotd(dir.path());
    Peer {
        child,
        port,
        dir,
        name: "Knot",
    }
}
