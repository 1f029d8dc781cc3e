//! Reference servers for tests: NSD and Knot DNS on 127.0.0.1 serving one zone file
//! (Debian packages nsd and knot), stopped when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::common::{query, tcp_raw};

/// One question over TCP.
pub async fn ask(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    Message::from_vec(&tcp_raw(addr, &query(name, rtype).to_vec().unwrap()).await).unwrap()
}

/// NSD or Knot on 127.0.0.1, serving one zone file, stopped when dropped.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Peer {
    /// NSD with minimal responses (no NS in the authority of positive answers, as
    /// spfd and Knot; but then no additional records for MX and SRV either).
    pub async fn nsd(zone: &str, text: &str) -> Peer {
        Peer::nsd_with(zone, text, "", "").await
    }

    /// [`Peer::nsd`] with more top-level `clauses` (e.g. a `key:`) and more options of
    /// the zone (e.g. `provide-xfr`), each line indented by two spaces.
    pub async fn nsd_with(zone: &str, text: &str, clauses: &str, zone_options: &str) -> Peer {
        let (dir, port) = (tempfile::tempdir().unwrap(), crate::common::free_port());
        let d = dir.path().display();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/peer.log\"\n  server-count: 1\n  verbosity: 1\n  \
             minimal-responses: yes\nremote-control:\n  control-enable: no\n{clauses}zone:\n  name: {zone}\n  \
             zonefile: \"{zone}.zone\"\n{zone_options}"
        );
        Peer::run(dir, port, zone, text, &conf, sbin("nsd"), &["-d", "-c"]).await
    }

    /// Knot DNS: minimal responses, with additional records for MX, SRV and NS.
    pub async fn knot(zone: &str, text: &str) -> Peer {
        let (dir, port) = (tempfile::tempdir().unwrap(), crate::common::free_port());
        let d = dir.path().display();
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: \"{d}\"\n    background-workers: 1\n    \
             udp-workers: 1\n    tcp-workers: 1\ndatabase:\n    storage: \"{d}/db\"\nlog:\n  - target: \"{d}/peer.log\"\n    \
             any: info\ntemplate:\n  - id: default\n    storage: \"{d}\"\n    semantic-checks: off\n    \
             journal-content: none\n    zonefile-sync: -1\nzone:\n  - domain: {zone}\n    file: \"{zone}.zone\"\n"
        );
        Peer::run(dir, port, zone, text, &conf, sbin("knotd"), &["-c"]).await
    }

    async fn run(
        dir: tempfile::TempDir,
        port: u16,
        zone: &str,
        text: &str,
        conf: &str,
        binary: String,
        args: &[&str],
    ) -> Peer {
        std::fs::write(dir.path().join("peer.conf"), conf).unwrap();
        std::fs::write(dir.path().join(format!("{zone}.zone")), text).unwrap();
        let child = Command::new(&binary)
            .args(args)
            .arg(dir.path().join("peer.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} (Debian packages nsd, knot): {e}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let peer = Peer { child, addr, dir };
        let soa = |m: &Message| m.answers.iter().any(|r| r.record_type() == RecordType::SOA);
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && soa(&ask(addr, zone, RecordType::SOA).await)
            {
                return peer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(peer.dir.path().join("peer.log"));
        panic!("{binary} did not serve {zone}; log: {log:?}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Debian server binary: /usr/sbin, else the PATH.
fn sbin(name: &str) -> String {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() {
        path.display().to_string()
    } else {
        name.to_string()
    }
}
