//! Backend transfer mode: Knot DNS is the primary of example.test on loopback; spfd's
//! policy names it as `backend`, transfers the zone, serves it with its own SPF and
//! DMARC records on top (the primary's old SPF record is left out), follows a change
//! on Knot's NOTIFY, refuses NOTIFY from other hosts, keeps serving its copy while
//! the primary is down and answers SERVFAIL past the SOA expire. With `backend_tsig`,
//! transfers from a Knot that requires the key work and NOTIFY must carry it. Against a
//! misbehaving primary ([`primary`]), a transfer that is incomplete or passes a bound
//! leaves the copy in service, and a NOTIFY flood costs the primary a few SOA queries.

mod common;
#[path = "common/peers.rs"]
mod peers;
#[path = "backend/primary.rs"]
mod primary;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use common::{Setup, free_port, query, tcp_raw};
use primary::{Primary, Seen, Stream};
use spfd::server;
use spfd::tsig::TsigKey;

/// The SOA expire of the test zone: long enough for the steps before the primary stops,
/// short enough to wait for.
const EXPIRE: u64 = 5;

fn zone(serial: u32, www: &str) -> String {
    format!(
        "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 {EXPIRE} 300\n@ NS ns1\n\
         ns1 A 192.0.2.53\nwww A {www}\n@ TXT \"v=spf1 -all\"\n@ MX 10 www\n"
    )
}

struct Knot {
    child: Child,
    dir: tempfile::TempDir,
}

/// The TSIG key the Knot primary of the TSIG test requires (name, base64 secret).
const KEY_NAME: &str = "backend-key";
const KEY_SECRET: &str = "c3BmZCBiYWNrZW5kIHRlc3Qga2V5LCAzMiBieXRlcw==";

impl Knot {
    fn start(port: u16, notify: u16, text: &str) -> Knot {
        Knot::start_keyed(port, notify, text, false)
    }

    /// `keyed`: transfers must be signed with [`KEY_NAME`], and NOTIFY is signed with it.
    fn start_keyed(port: u16, notify: u16, text: &str, keyed: bool) -> Knot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (keys, key) = match keyed {
            true => (
                format!("key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {KEY_SECRET}\n"),
                format!("    key: {KEY_NAME}\n"),
            ),
            false => (String::new(), String::new()),
        };
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: \"{d}\"\n    background-workers: 1\n    \
             udp-workers: 1\n    tcp-workers: 1\ndatabase:\n    storage: \"{d}/db\"\nlog:\n  - target: \"{d}/knot.log\"\n    \
             any: info\n{keys}remote:\n  - id: spfd\n    address: 127.0.0.1@{notify}\n{key}acl:\n  - id: xfr\n    \
             address: 127.0.0.1\n{key}    action: transfer\ntemplate:\n  - id: default\n    storage: \"{d}\"\n    \
             semantic-checks: off\n    journal-content: none\n    zonefile-sync: -1\nzone:\n  - domain: example.test\n    \
             file: \"example.test.zone\"\n    notify: spfd\n    acl: xfr\n"
        );
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        std::fs::write(dir.path().join("example.test.zone"), text).unwrap();
        let child = common::spawn_knotd(dir.path());
        Knot { child, dir }
    }

    /// A new zone file, loaded by `knotc zone-reload` (Knot then sends NOTIFY).
    fn change(&self, text: &str) {
        std::fs::write(self.dir.path().join("example.test.zone"), text).unwrap();
        let knotc = if Path::new("/usr/sbin/knotc").exists() {
            "/usr/sbin/knotc"
        } else {
            "knotc"
        };
        let status = Command::new(knotc)
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .args(["zone-reload", "example.test"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "knotc zone-reload");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ask(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    Message::from_vec(&tcp_raw(addr, &query(name, rtype).to_vec().unwrap()).await).unwrap()
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data.to_string())
        .collect()
}

/// Asks until `want` is among the A records of `name` (at most 30 s: a safety net for a
/// loaded machine, not a timing assertion).
async fn until_a(addr: SocketAddr, name: &str, want: &str) -> Message {
    for _ in 0..600 {
        let m = ask(addr, name, RecordType::A).await;
        if a_records(&m).iter().any(|a| a == want) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never answered {want}");
}

/// A NOTIFY for example.test sent over UDP from `source`.
async fn notify_from(source: &str, server: SocketAddr) -> Message {
    notify_signed(source, server, None).await
}

/// A NOTIFY for example.test sent over UDP from `source`, signed with `secret` under
/// [`KEY_NAME`] when given.
async fn notify_signed(source: &str, server: SocketAddr, secret: Option<&[u8]>) -> Message {
    let mut msg = Message::new(4711, MessageType::Query, OpCode::Notify);
    msg.add_query(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::SOA,
    ));
    if let Some(secret) = secret {
        let name = Name::from_ascii(KEY_NAME).unwrap();
        let key = TsigKey::new(name, TsigAlgorithm::HmacSha256, secret.to_vec()).unwrap();
        msg.finalize(&key.signer, spfd::tsig::unix_now()).unwrap();
    }
    let socket = tokio::net::UdpSocket::bind((source, 0)).await.unwrap();
    socket.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spfd_follows_a_knot_primary_on_notify() {
    let (knot_port, spfd_port) = (free_port(), free_port());
    let mut knot = Knot::start(knot_port, spfd_port, &zone(1, "192.0.2.1"));
    let policy = format!(
        "domain = \"example.test\"\nzone = \"example.test\"\nbackend = \"127.0.0.1:{knot_port}\"\n\
         [spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n[dmarc]\np = \"none\"\n"
    );
    let setup = Setup::new(&[("example.test.toml", &policy)]);
    let config = common::config_text().replace("127.0.0.1:0", &format!("127.0.0.1:{spfd_port}"));
    std::fs::write(setup.config_path(), config).unwrap();
    let running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];

    // The transferred zone, with spfd's names on top and the primary's SPF left out.
    let m = until_a(spfd, "www.example.test", "192.0.2.1").await;
    assert!(m.metadata.authoritative);
    let txt = ask(spfd, "example.test", RecordType::TXT).await;
    let texts: Vec<String> = txt.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("ip4:192.0.2.0/24"), "{texts:?}");
    let dmarc = ask(spfd, "_dmarc.example.test", RecordType::TXT).await;
    assert_eq!(dmarc.answers.len(), 1);
    let mx = ask(spfd, "example.test", RecordType::MX).await;
    let glue: Vec<String> = mx.additionals.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(glue, ["192.0.2.1"], "the MX target's address in additional");
    let nx = ask(spfd, "nothing.example.test", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let soa = ask(spfd, "example.test", RecordType::SOA).await;
    let Some(RData::SOA(first)) = soa.answers.first().map(|r| r.data.clone()) else {
        panic!("{soa}")
    };

    // A change on the primary reaches spfd by NOTIFY (the SOA refresh is an hour).
    knot.change(&zone(2, "192.0.2.2"));
    until_a(spfd, "www.example.test", "192.0.2.2").await;
    let soa = ask(spfd, "example.test", RecordType::SOA).await;
    let Some(RData::SOA(second)) = soa.answers.first().map(|r| r.data.clone()) else {
        panic!("{soa}")
    };
    assert!(
        second.serial.wrapping_sub(first.serial) as i32 > 0,
        "{} then {}",
        first.serial,
        second.serial
    );

    // NOTIFY is answered only from the backend's address.
    let accepted = notify_from("127.0.0.1", spfd).await;
    assert_eq!(accepted.metadata.response_code, ResponseCode::NoError);
    assert_eq!(accepted.metadata.op_code, OpCode::Notify);
    assert!(accepted.metadata.authoritative);
    let refused = notify_from("127.0.0.2", spfd).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    // The primary goes away: the copy stays served (a NOTIFY makes spfd try, and fail).
    let stopped = std::time::Instant::now();
    knot.stop();
    notify_from("127.0.0.1", spfd).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(EXPIRE),
        "too slow to check before expiry"
    );
    assert_eq!(
        a_records(&ask(spfd, "www.example.test", RecordType::A).await),
        ["192.0.2.2"]
    );
    // Past the SOA expire, a failed refresh drops the copy: SERVFAIL, never NXDOMAIN, for
    // the zone's names; spfd's own names still answer.
    tokio::time::sleep(Duration::from_secs(EXPIRE)).await;
    let mut www = ask(spfd, "www.example.test", RecordType::A).await;
    for _ in 0..200 {
        if www.metadata.response_code == ResponseCode::ServFail {
            break;
        }
        notify_from("127.0.0.1", spfd).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        www = ask(spfd, "www.example.test", RecordType::A).await;
    }
    assert_eq!(www.metadata.response_code, ResponseCode::ServFail, "{www}");
    let dmarc = ask(spfd, "_dmarc.example.test", RecordType::TXT).await;
    assert_eq!(dmarc.answers.len(), 1, "{dmarc}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tsig_signs_transfers_from_knot_and_is_required_on_notify() {
    let (knot_port, spfd_port) = (free_port(), free_port());
    // A day's SOA expire: the copy must not expire (and be asked for every 10 s) while
    // the test counts checks after Knot is stopped, however slow the machine.
    let zone = |serial, www| zone(serial, www).replace(&format!(" {EXPIRE} 300\n"), " 86400 300\n");
    let mut knot = Knot::start_keyed(knot_port, spfd_port, &zone(1, "192.0.2.1"), true);
    let backend = SocketAddr::from(([127, 0, 0, 1], knot_port));
    let policy = backend_policy(backend, &format!("backend_tsig = \"{KEY_NAME}\"\n"));
    let setup = Setup::new(&[("example.test.toml", &policy)]);
    std::fs::write(setup.dir.path().join("backend.secret"), KEY_SECRET).unwrap();
    let config = common::config_text().replace("127.0.0.1:0", &format!("127.0.0.1:{spfd_port}"))
        + &format!("[tsig.{KEY_NAME}]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"backend.secret\"\n");
    std::fs::write(setup.config_path(), config).unwrap();
    let running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];

    // Knot transfers only with the key; its signed NOTIFY is taken (the refresh is an hour).
    until_a(spfd, "www.example.test", "192.0.2.1").await;
    knot.change(&zone(2, "192.0.2.2"));
    until_a(spfd, "www.example.test", "192.0.2.2").await;

    // From the backend's address, but unsigned or signed with another secret: refused,
    // and no SOA query follows. Knot is stopped first, and its own NOTIFYs (it repeats
    // those spfd did not answer before it started) have had their checks.
    knot.stop();
    let settle = 2 * spfd::backend::service::NOTIFY_INTERVAL + Duration::from_millis(500);
    // On a loaded machine Knot's last NOTIFYs can still be waiting for their check: the
    // count is taken once it stays the same for a whole settle period.
    let mut checks = counted(&running.backends.counts().checks);
    for _ in 0..10 {
        tokio::time::sleep(settle).await;
        let now = counted(&running.backends.counts().checks);
        if now == checks {
            break;
        }
        checks = now;
    }
    let unsigned = notify_from("127.0.0.1", spfd).await;
    assert_eq!(unsigned.metadata.response_code, ResponseCode::Refused);
    let forged = notify_signed("127.0.0.1", spfd, Some(b"not the secret")).await;
    assert_eq!(forged.metadata.response_code, ResponseCode::NotAuth);
    tokio::time::sleep(settle).await;
    assert_eq!(
        counted(&running.backends.counts().checks),
        checks,
        "no check after a refused NOTIFY"
    );
    // Signed with the key: taken (the check then finds Knot gone), and the answer is
    // signed.
    let secret = base64::engine::general_purpose::STANDARD
        .decode(KEY_SECRET)
        .unwrap();
    let signed = notify_signed("127.0.0.1", spfd, Some(&secret)).await;
    assert_eq!(signed.metadata.response_code, ResponseCode::NoError);
    assert!(signed.signature().is_some(), "{signed}");
    until("a check after the signed NOTIFY", || {
        counted(&running.backends.counts().checks) > checks
    })
    .await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tsig_takes_a_large_transfer_from_nsd() {
    // 100,000 records: a stream of many signed messages, from a second implementation.
    let mut text = zone(1, "192.0.2.1");
    for i in 0..100_000 {
        text.push_str(&format!("h{i} A 198.51.100.{}\n", i % 250));
    }
    let key = format!("key:\n  name: {KEY_NAME}\n  algorithm: hmac-sha256\n  secret: \"{KEY_SECRET}\"\n");
    let acl = format!("  provide-xfr: 127.0.0.1 {KEY_NAME}\n");
    let nsd = peers::Peer::nsd_with("example.test", &text, &key, &acl).await;
    let policy = backend_policy(nsd.addr, &format!("backend_tsig = \"{KEY_NAME}\"\n"));
    let setup = Setup::new(&[("example.test.toml", &policy)]);
    std::fs::write(setup.dir.path().join("backend.secret"), KEY_SECRET).unwrap();
    let config = common::config_text()
        + &format!("[tsig.{KEY_NAME}]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"backend.secret\"\n");
    std::fs::write(setup.config_path(), config).unwrap();
    let running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    let apex = LowerName::new(&Name::from_ascii("example.test.").unwrap());
    until("the transfer from NSD", || {
        counted(&running.backends.counts().transfers) == 1 || running.backends.last_failure(&apex).is_some()
    })
    .await;
    assert_eq!(running.backends.last_failure(&apex), None);
    until_a(spfd, "h99999.example.test", "198.51.100.249").await;
    running.shutdown().await.unwrap();
}

/// A policy for example.test served from `backend`, with `extra` policy lines.
fn backend_policy(backend: SocketAddr, extra: &str) -> String {
    format!(
        "domain = \"example.test\"\nzone = \"example.test\"\nbackend = \"{backend}\"\n{extra}\
         [spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n"
    )
}

/// Waits until `done` holds (at most 60 s: a safety net for a loaded machine, not a
/// timing assertion).
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

fn counted(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::SeqCst)
}

/// spfd serving example.test from `primary` (serial 1 transferred) under `[backend]`
/// `bounds`.
async fn serving_from(primary: &Primary, bounds: &str) -> (Setup, server::Running) {
    let setup = Setup::new(&[("example.test.toml", &backend_policy(primary.addr, ""))]);
    std::fs::write(setup.config_path(), common::config_text() + bounds).unwrap();
    let running = server::start(&setup.config()).await.unwrap();
    until_a(running.addrs[0], "www.example.test", "192.0.2.1").await;
    (setup, running)
}

/// The primary turns to `stream` with a new serial and sends NOTIFY: the transfer
/// fails for the reason `why`, fails again on the SOA retry timer (1 s) with no
/// NOTIFY, and the copy of serial 1 stays in service.
async fn fails_and_keeps_the_copy(
    primary: &Primary,
    running: &server::Running,
    (serial, stream): (u32, Stream),
    why: &str,
) {
    let (spfd, counts) = (running.addrs[0], running.backends.counts());
    let (failures, cut) = (counted(&counts.failures), Seen::get(&primary.seen.cut));
    primary.serve(serial, stream);
    let answer = notify_from("127.0.0.1", spfd).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    until(&format!("{stream:?} fails twice"), || {
        counted(&counts.failures) >= failures + 2
    })
    .await;
    let apex = LowerName::new(&Name::from_ascii("example.test.").unwrap());
    let failure = running.backends.last_failure(&apex).unwrap_or_default();
    assert!(failure.contains(why), "{stream:?}: {failure}");
    assert_eq!(
        a_records(&ask(spfd, "www.example.test", RecordType::A).await),
        ["192.0.2.1"],
        "{stream:?}: the copy in service stays"
    );
    let only = ask(spfd, &format!("only{serial}.example.test"), RecordType::A).await;
    assert_eq!(only.metadata.response_code, ResponseCode::NXDomain, "{stream:?}");
    let old = ask(spfd, "only1.example.test", RecordType::A).await;
    assert_eq!(old.answers.len(), 1, "{stream:?}");
    if !matches!(stream, Stream::StopsEarly | Stream::ClosingSoaDiffers) {
        // spfd stopped reading at the bound and closed: the endless stream was cut.
        until(&format!("{stream:?} is cut"), || {
            Seen::get(&primary.seen.cut) > cut
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_is_incomplete_or_too_large_leaves_the_copy_in_service() {
    let primary = Primary::start(1).await;
    // The time bound is far: the record and byte bounds must end the endless streams
    // (small records pass 300 records first, 60 KB ones 1 MB).
    let bounds = "[backend]\nmax_records = 300\nmax_bytes = 1000000\ntransfer_timeout = \"1h\"\n";
    let (_setup, running) = serving_from(&primary, bounds).await;
    fails_and_keeps_the_copy(
        &primary,
        &running,
        (2, Stream::StopsEarly),
        "without its closing SOA",
    )
    .await;
    fails_and_keeps_the_copy(
        &primary,
        &running,
        (3, Stream::ClosingSoaDiffers),
        "differs from the opening one",
    )
    .await;
    fails_and_keeps_the_copy(&primary, &running, (4, Stream::Endless), "max_records (300)").await;
    fails_and_keeps_the_copy(
        &primary,
        &running,
        (5, Stream::EndlessLarge),
        "max_bytes (1000000)",
    )
    .await;
    assert_eq!(
        counted(&running.backends.counts().transfers),
        1,
        "only the first transfer was taken"
    );

    // A whole zone is taken again.
    let spfd = running.addrs[0];
    primary.serve(7, Stream::Whole);
    notify_from("127.0.0.1", spfd).await;
    until_a(spfd, "www.example.test", "192.0.2.7").await;
    let gone = ask(spfd, "only1.example.test", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_trickles_past_the_time_bound_leaves_the_copy_in_service() {
    let primary = Primary::start(1).await;
    // Each message comes well within the per-message timeout; the whole never ends.
    let (_setup, running) = serving_from(&primary, "[backend]\ntransfer_timeout = \"2s\"\n").await;
    fails_and_keeps_the_copy(&primary, &running, (2, Stream::Trickle), "transfer_timeout (2s)").await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_flood_costs_the_primary_a_few_soa_queries() {
    let primary = Primary::start(1).await;
    let setup = Setup::new(&[("example.test.toml", &backend_policy(primary.addr, ""))]);
    let running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    until_a(spfd, "www.example.test", "192.0.2.1").await;
    let before = Seen::get(&primary.seen.soa);

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut msg = Message::new(1, MessageType::Query, OpCode::Notify);
    msg.add_query(Query::query(
        Name::from_ascii("example.test.").unwrap(),
        RecordType::SOA,
    ));
    let started = std::time::Instant::now();
    let (sent, mut answered) = (3000, 0);
    let mut buf = vec![0u8; 512];
    for id in 0..sent {
        msg.metadata.id = id;
        socket.send_to(&msg.to_vec().unwrap(), spfd).await.unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            let answer = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            answered += 1;
        }
    }
    let flood = started.elapsed();
    assert_eq!(answered, sent, "every NOTIFY is answered");
    // Two intervals after the flood, every check it caused has started.
    tokio::time::sleep(2 * spfd::backend::service::NOTIFY_INTERVAL + Duration::from_millis(500)).await;
    let checks = Seen::get(&primary.seen.soa) - before;
    let allowed = (flood.as_secs_f64() / spfd::backend::service::NOTIFY_INTERVAL.as_secs_f64()) as usize + 2;
    assert!(
        (1..=allowed).contains(&checks),
        "{sent} NOTIFYs in {flood:?} made {checks} SOA queries (at most {allowed})"
    );
    running.shutdown().await.unwrap();
}
