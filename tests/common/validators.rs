//! Real DNSSEC validators for tests: unbound (Debian) run in the foreground on a free
//! loopback port with a stub zone per spfd zone and a trust anchor from `spfd dnssec
//! ds`, and delv (bind9-dnsutils) asking spfd directly with the same anchors.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::common::{query, tcp_raw, udp_raw};

/// A zone's trust anchor: the zone (absolute) and the DS data (`tag alg 2 HEX`).
#[derive(Clone, Debug)]
pub struct Anchor {
    pub zone: String,
    pub ds: String,
}

/// The DS lines of `spfd dnssec ds` output as anchors.
pub fn anchors_from_ds_output(text: &str) -> Vec<Anchor> {
    text.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            (fields.len() == 5 && fields[3] == "DS").then(|| Anchor {
                zone: fields[0].to_string(),
                ds: fields[4].to_string(),
            })
        })
        .collect()
}

/// The same anchor with one digest digit changed: a validator must call answers bogus.
pub fn wrong(anchor: &Anchor) -> Anchor {
    let mut ds = anchor.ds.clone();
    let last = ds.pop().unwrap();
    ds.push(if last == '0' { '1' } else { '0' });
    Anchor {
        zone: anchor.zone.clone(),
        ds,
    }
}

/// A running unbound; killed on drop.
pub struct Unbound {
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Unbound {
    /// Starts unbound validating `anchors`, each zone stubbed to spfd at `spfd`. Nothing
    /// is cached (TTL 0), so every question reaches spfd and is validated again.
    pub async fn start(spfd: SocketAddr, anchors: &[Anchor]) -> Unbound {
        let mut zones: Vec<&str> = anchors.iter().map(|a| a.zone.as_str()).collect();
        zones.dedup();
        let stubs: Vec<(&str, SocketAddr)> = zones.into_iter().map(|zone| (zone, spfd)).collect();
        Unbound::start_stubs(&stubs, anchors).await
    }

    /// Starts unbound asking each zone of `stubs` of its own server, validating the
    /// zones with an anchor in `anchors` (the others are insecure: no chain reaches
    /// them). Nothing is cached, as with [`Unbound::start`].
    pub async fn start_stubs(stubs: &[(&str, SocketAddr)], anchors: &[Anchor]) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::common::free_port();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-not-query-localhost: no\n  \
             module-config: \"validator iterator\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  \
             pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  verbosity: 1\n  val-log-level: 2\n  \
             num-threads: 1\n  qname-minimisation: no\n  cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n  \
             local-zone: \"test.\" nodefault\n  target-fetch-policy: \"0 0 0 0 0\"\n",
            dir = dir.path().display()
        );
        for a in anchors {
            let _ = writeln!(conf, "  trust-anchor: \"{} DS {}\"", a.zone, a.ds);
        }
        for (zone, server) in stubs {
            let _ = write!(
                conf,
                "stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}@{}\n",
                server.ip(),
                server.port()
            );
        }
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound (Debian package unbound) must be installed");
        let unbound = Unbound {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        };
        let probe = stubs.first().map_or("test.", |(zone, _)| *zone);
        unbound.wait_ready(probe).await;
        unbound
    }

    /// Waits (30 s at most, for a loaded machine) until unbound answers a question about
    /// a zone it serves from its stub: it is listening and can reach spfd.
    async fn wait_ready(&self, zone: &str) {
        for _ in 0..60 {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut q = query(zone, RecordType::SOA);
            q.metadata.recursion_desired = true;
            socket.send_to(&q.to_vec().unwrap(), self.addr).await.unwrap();
            let mut buf = [0u8; 1232];
            if tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf))
                .await
                .is_ok()
            {
                return;
            }
        }
        panic!("unbound did not start on {}", self.addr);
    }

    /// Asks with RD and DO set (over TCP when `tcp`).
    pub async fn ask(&self, name: &str, rtype: RecordType, tcp: bool) -> Message {
        let mut q = query(name, rtype);
        q.metadata.recursion_desired = true;
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        q.set_edns(edns);
        let bytes = q.to_vec().unwrap();
        let answer = if tcp {
            tcp_raw(self.addr, &bytes).await
        } else {
            udp_raw(self.addr, &bytes).await
        };
        Message::from_vec(&answer).unwrap()
    }

    /// Asserts that unbound validated the answer (AD set, NOERROR); returns it.
    pub async fn secure(&self, name: &str, rtype: RecordType) -> Message {
        let m = self.ask(name, rtype, false).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {rtype}: {m}"
        );
        assert!(m.metadata.authentic_data, "{name} {rtype} is not secure: {m}");
        m
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// delv's verdict on `name`/`rtype` asked of spfd directly, with `anchor` (static-ds)
/// as the root of trust: its whole output.
pub fn delv(spfd: SocketAddr, anchor: &Anchor, name: &str, rtype: RecordType, tcp: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anchors.conf");
    let mut fields = anchor.ds.splitn(4, ' ');
    let (tag, alg, digest_type, digest) = (
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
    );
    let text = format!(
        "trust-anchors {{\n  \"{}\" static-ds {tag} {alg} {digest_type} \"{digest}\";\n}};\n",
        anchor.zone
    );
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new("delv");
    cmd.arg(format!("@{}", spfd.ip()))
        .arg("-p")
        .arg(spfd.port().to_string())
        .arg("-a")
        .arg(&file)
        .arg(format!("+root={}", anchor.zone))
        .arg(name)
        .arg(rtype.to_string());
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .output()
        .expect("delv (Debian package bind9-dnsutils) must be installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when delv's output says the answer (positive or negative) was fully validated.
pub fn fully_validated(output: &str) -> bool {
    output.contains("; fully validated") || output.contains("; negative response, fully validated")
}
