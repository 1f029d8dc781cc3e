//! Whole zones from zone files: spfd serves tests/data/zones/example.test.zone with its
//! own SPF and DMARC records on top, and NSD serves the same file (plus the same
//! managed records) on loopback; a sweep of names and types must get the same rcode,
//! AA bit and sections from both. Also: errors name file:line, managed names in the
//! file are refused, and the zone file hot-reloads (a bad edit keeps the served zone).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

use common::{Setup, query, tcp_raw};
use spfd::server::{self, Running};

const POLICY: &str = "domain = \"example.test\"\nzone = \"example.test\"\nzone_file = \"example.test.zone\"\n\
                      ttl = 300\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n\
                      [dmarc]\np = \"none\"\n";

fn zones_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zones")
}

/// A policy directory with the policy and the test zone files.
fn setup(policy: &str) -> Setup {
    let setup = Setup::new(&[]);
    for file in ["example.test.zone", "extra.zone"] {
        std::fs::copy(zones_dir().join(file), setup.policy_path(file)).unwrap();
    }
    setup.write_policy("example.test.toml", policy);
    setup
}

async fn ask(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    Message::from_vec(&tcp_raw(addr, &query(name, rtype).to_vec().unwrap()).await).unwrap()
}

/// NSD or Knot on 127.0.0.1, serving one zone file, stopped when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Peer {
    /// NSD with minimal responses (no NS in the authority of positive answers, as
    /// spfd and Knot; but then no additional records for MX and SRV either).
    async fn nsd(zone: &str, text: &str) -> Peer {
        let (dir, port) = (tempfile::tempdir().unwrap(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/peer.log\"\n  server-count: 1\n  verbosity: 1\n  \
             minimal-responses: yes\nremote-control:\n  control-enable: no\nzone:\n  name: {zone}\n  \
             zonefile: \"{zone}.zone\"\n"
        );
        Peer::run(dir, port, zone, text, &conf, sbin("nsd"), &["-d", "-c"]).await
    }

    /// Knot DNS: minimal responses, with additional records for MX, SRV and NS.
    async fn knot(zone: &str, text: &str) -> Peer {
        let (dir, port) = (tempfile::tempdir().unwrap(), free_port());
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
        for _ in 0..200 {
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

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A record as comparable text: lower-case owner, TTL, type, data.
fn line(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        r.name.to_lowercase(),
        r.ttl,
        r.record_type(),
        r.data
    )
    .to_lowercase()
}

/// What must agree between two servers: rcode, AA, and each section as a set (the
/// additional section only when `additional`).
fn shape(m: &Message, additional: bool) -> String {
    let set = |records: &[Record]| records.iter().map(line).collect::<BTreeSet<_>>();
    let mut out = format!(
        "rcode={} aa={}\nanswer={:?}\nauthority={:?}",
        m.metadata.response_code,
        m.metadata.authoritative,
        set(&m.answers),
        set(&m.authorities),
    );
    if additional {
        out.push_str(&format!("\nadditional={:?}", set(&m.additionals)));
    }
    out
}

/// A TXT record as a zone-file line.
fn txt_line(r: &Record) -> String {
    let RData::TXT(txt) = &r.data else {
        panic!("not TXT: {r}")
    };
    let strings: Vec<String> = txt
        .txt_data
        .iter()
        .map(|s| {
            format!(
                "\"{}\"",
                String::from_utf8_lossy(s)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            )
        })
        .collect();
    format!("{} {} IN TXT {}\n", r.name, r.ttl, strings.join(" "))
}

const SWEEP_NAMES: &[&str] = &[
    "example.test",
    "EXAMPLE.test",
    "ns1.example.test",
    "ns2.example.test",
    "mail.example.test",
    "www.example.test",
    "WwW.Example.Test",
    "web.example.test",
    "host.example.test",
    "ext.example.test",
    "dangling.example.test",
    "nowhere.example.test",
    "loop1.example.test",
    "_sip._tcp.example.test",
    "_tcp.example.test",
    "_443._tcp.www.example.test",
    "svc.example.test",
    "ptr.example.test",
    "ent.example.test",
    "a.ent.example.test",
    "b.ent.example.test",
    "wild.example.test",
    "x.wild.example.test",
    "y.z.wild.example.test",
    "sub.wild.example.test",
    "a.sub.wild.example.test",
    "foo.cwild.example.test",
    "deleg.example.test",
    "ns1.deleg.example.test",
    "deep.deleg.example.test",
    "x.y.deleg.example.test",
    "sub.example.test",
    "x.sub.example.test",
    "y.deeper.sub.example.test",
    "deeper.sub.example.test",
    "after.example.test",
    "_dmarc.example.test",
    "nonexistent.example.test",
];

const SWEEP_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::TLSA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::PTR,
    RecordType::DS,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_nsd_for_a_sweep_of_names_and_types() {
    let setup = setup(POLICY);
    let running: Running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    // NSD serves the same file plus the records spfd manages, as spfd publishes them.
    let mut text = std::fs::read_to_string(zones_dir().join("example.test.zone")).unwrap();
    text = text.replace(
        "$INCLUDE extra.zone",
        &format!("$INCLUDE {}/extra.zone", zones_dir().display()),
    );
    text.push_str("$ORIGIN example.test.\n");
    for name in ["example.test", "_dmarc.example.test"] {
        let m = ask(spfd, name, RecordType::TXT).await;
        let managed = m.answers.iter().filter(|r| {
            let RData::TXT(t) = &r.data else { return false };
            t.txt_data.first().is_some_and(|s| s.starts_with(b"v="))
        });
        let lines: Vec<String> = managed.map(txt_line).collect();
        assert_eq!(lines.len(), 1, "{name} TXT from spfd: {m}");
        text.push_str(&lines[0]);
    }
    let nsd = Peer::nsd("example.test", &text).await;
    let knot = Peer::knot("example.test", &text).await;

    let mut differences = Vec::new();
    let mut checked = 0;
    for name in SWEEP_NAMES {
        for rtype in SWEEP_TYPES {
            let ours = ask(spfd, name, *rtype).await;
            for (peer, addr, additional) in [("nsd", nsd.addr, false), ("knot", knot.addr, true)] {
                let theirs = ask(addr, name, *rtype).await;
                checked += 1;
                let (a, b) = (shape(&ours, additional), shape(&theirs, additional));
                if a != b {
                    differences.push(format!("{name} {rtype}\n spfd: {a}\n {peer}: {b}"));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {checked} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The sweep saw every kind of answer (it would pass vacuously otherwise).
    let kinds = [
        ask(spfd, "deleg.example.test", RecordType::A).await,
        ask(spfd, "x.wild.example.test", RecordType::A).await,
        ask(spfd, "www.example.test", RecordType::A).await,
        ask(spfd, "nonexistent.example.test", RecordType::A).await,
    ];
    assert!(
        !kinds[0].metadata.authoritative
            && !kinds[0].authorities.is_empty()
            && !kinds[0].additionals.is_empty()
    );
    assert_eq!(kinds[1].answers.len(), 1);
    assert_eq!(kinds[2].answers.len(), 3, "www -> web -> host A");
    assert_eq!(kinds[3].metadata.response_code, ResponseCode::NXDomain);
    running.shutdown().await.unwrap();
}
