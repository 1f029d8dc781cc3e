//! Zone transfers out with real peers: kdig asks for AXFR and IXFR (with and without
//! TSIG), NSD and Knot run as secondaries of spfd on loopback (request-xfr and
//! allow-notify; Knot's master and notify ACL), transfer every finite zone, answer
//! every name as spfd does, and follow a policy edit and a provider change after the
//! NOTIFY; Knot takes the change by IXFR.

mod common;
#[path = "xfr/peers.rs"]
mod peers;
#[path = "common/upstream.rs"]
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RecordType};
use peers::*;
use upstream::Upstream;

/// The TSIG secret both sides share (base64 of 32 octets).
const SECRET: &str = "c3BmZC10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGU=";
const OTHER_SECRET: &str = "b3RoZXItc2VjcmV0LW5vdC10aGUtc2FtZS0wMTIzNDU=";

/// A provider whose record lives one second, so a change is seen at once.
const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 1\n@ 1 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 1\n\
                        @ 1 IN NS ns1.prov.test.\nns1 1 IN A 192.0.2.53\n\
                        spf 1 IN TXT \"v=spf1 ip4:198.51.100.0/25 -all\"\n";

fn example_policy(spf: &str) -> String {
    format!(
        "domain = \"example.test\"\nttl = 600\n[spf]\nrecord = \"{spf}\"\nmode = \"passthrough\"\n\
         [dmarc]\np = \"reject\"\nrua = [\"mailto:dmarc@example.test\"]\n\
         [dkim.s2048]\nkey_file = \"{}\"\n[dkim.ed]\nk = \"ed25519\"\nkey_file = \"{}\"\n",
        key_path("rsa2048.pub.pem").display(),
        key_path("ed25519.pub.pem").display()
    )
}

const FLAT: &str =
    "domain = \"flat.test\"\nzone = \"flat.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test -all\"\n";
const MACRO: &str =
    "domain = \"m.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"macro\"\n";

/// A zone of many names: its AXFR needs several messages.
fn big_policy() -> String {
    let mut text = "domain = \"big.test\"\nzone = \"big.test\"\n".to_string();
    for i in 0..60 {
        text += &format!(
            "[dkim.sel{i}]\nkey_file = \"{}\"\n",
            key_path("rsa2048.pub.pem").display()
        );
    }
    text
}

struct Spfd {
    setup: Setup,
    running: spfd::server::Running,
    addr: SocketAddr,
    _world: Upstream,
    _world_dir: tempfile::TempDir,
}

/// spfd with `[transfer]` (loopback allowed, NOTIFY to `notify`, TSIG key `xfr-key`),
/// the example, flat, macro and big policies, and a provider world for `flat.test`.
async fn spfd(notify: &[u16]) -> Spfd {
    let world_dir = tempfile::tempdir().unwrap();
    std::fs::write(world_dir.path().join("prov.test.zone"), PROVIDER).unwrap();
    let world = Upstream::start(world_dir.path()).await;
    let setup = Setup::new(&[
        ("example.toml", &example_policy("v=spf1 ip4:192.0.2.0/24 -all")),
        ("flat.toml", FLAT),
        ("m.toml", MACRO),
        ("big.toml", &big_policy()),
    ]);
    std::fs::write(setup.dir.path().join("xfr-key.secret"), format!("{SECRET}\n")).unwrap();
    let targets: Vec<String> = notify.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let config = config_text()
        + &world.resolver_config_toml()
        + "refresh_min = \"1s\"\nrefresh_max = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!(
            "[transfer]\nallow = [\"127.0.0.1\"]\nnotify = [{}]\ntsig = \"xfr-key\"\n\
             [tsig.xfr-key]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"xfr-key.secret\"\n",
            targets.join(", ")
        );
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    let spfd = Spfd {
        setup,
        running,
        addr,
        _world: world,
        _world_dir: world_dir,
    };
    spfd.wait_for_macro_table().await;
    spfd
}

impl Spfd {
    fn serial(&self, zone: &str) -> u32 {
        let apex = LowerName::new(&Name::from_ascii(zone).unwrap());
        self.running.snapshot.load().zones.get(&apex).unwrap().serial
    }

    /// The admin server's /metrics.
    async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.running.admin.expect("[admin] is configured");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = "GET /metrics HTTP/1.1\r\nHost: spfd\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response).to_string()
    }

    /// Macro answers come with the first expansion (no lookups: at once).
    async fn wait_for_macro_table(&self) {
        let apex = LowerName::new(&Name::from_ascii("_spf.m.test.").unwrap());
        for _ in 0..400 {
            let snapshot = self.running.snapshot.load();
            if snapshot
                .zones
                .get(&apex)
                .is_some_and(|z| z.wire.zone.macros.is_some())
            {
                return;
            }
            drop(snapshot);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("m.test never got its macro table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_with_tsig_lists_every_record_between_two_soas() {
    let s = spfd(&[]).await;
    let port = s.addr.port();
    let out = axfr(port, "_spf.example.test.", Some(SECRET));
    let records = axfr_records(&out);
    assert!(records.len() > 4, "{out}");
    assert!(records[0].contains(" SOA "), "{out}");
    assert_eq!(records.first(), records.last(), "SOA first and last: {out}");
    assert_eq!(records.iter().filter(|r| r.contains(" SOA ")).count(), 2, "{out}");
    for want in [
        "_spf.example.test. 600 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
        "_spf.example.test. 600 IN NS ns1.spfd.test.",
        "_dmarc._spf.example.test. 600 IN TXT",
        "s2048._domainkey._spf.example.test. 600 IN TXT",
        "ed._domainkey._spf.example.test. 600 IN TXT",
    ] {
        assert!(records.iter().any(|r| r.starts_with(want)), "no {want}: {out}");
    }
    // The same records as the zone answers to queries.
    let q = s_query(&s, "_dmarc._spf.example.test.", RecordType::TXT).await;
    assert_eq!(q.answers.len(), 1);
    assert!(out.contains("\tTSIG\t"), "the stream is signed: {out}");
    assert!(
        !out.contains(";; ERROR") && !out.contains(";; WARNING"),
        "kdig verified it: {out}"
    );

    // Many records: several messages, all signed (kdig checks every one).
    let out = axfr(port, "big.test.", Some(SECRET));
    let records = axfr_records(&out);
    assert_eq!(records.len(), 2 + 2 + 60, "SOA, 2 NS, 60 selectors, SOA: {out}");
    let messages: usize = out
        .lines()
        .find_map(|l| l.strip_prefix(";; Received "))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split(" messages").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no message count: {out}"));
    assert!(messages > 1, "one message for 60 RSA keys? {out}");
    assert!(
        !out.contains(";; ERROR") && !out.contains(";; WARNING"),
        "every message verified: {out}"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!(
            "{}_total{{result=\"axfr\"}} 2",
            spfd::metrics::ZONE_TRANSFERS
        )),
        "{metrics}"
    );
    s.running.shutdown().await.unwrap();
}

async fn s_query(s: &Spfd, name: &str, rtype: RecordType) -> Message {
    Message::from_vec(&udp_raw(s.addr, &query(name, rtype).to_vec().unwrap()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_without_the_key_or_of_macro_zones_are_refused() {
    let s = spfd(&[]).await;
    let port = s.addr.port();
    let unsigned = axfr(port, "_spf.example.test.", None);
    assert!(unsigned.contains("NOTAUTH"), "{unsigned}");
    assert!(axfr_records(&unsigned).is_empty(), "{unsigned}");
    let wrong = axfr(port, "_spf.example.test.", Some(OTHER_SECRET));
    assert!(wrong.contains("NOTAUTH") || wrong.contains("BADSIG"), "{wrong}");
    assert!(axfr_records(&wrong).is_empty(), "{wrong}");
    let macro_zone = axfr(port, "_spf.m.test.", Some(SECRET));
    assert!(macro_zone.contains("REFUSED"), "{macro_zone}");
    let unknown = axfr(port, "other.test.", Some(SECRET));
    assert!(unknown.contains("REFUSED"), "{unknown}");
    // Over UDP: AXFR refused; IXFR answered with the current SOA alone (RFC 1995 4).
    let udp = Message::from_vec(
        &udp_raw(
            s.addr,
            &query("_spf.example.test.", RecordType::AXFR).to_vec().unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(udp.metadata.response_code, ResponseCode::Refused);
    let ixfr = kdig(port, &["+notcp", "IXFR=1", "_spf.example.test."]);
    let records = axfr_records(&ixfr);
    assert_eq!(records.len(), 1, "{ixfr}");
    assert!(
        records[0].contains(&format!(
            " SOA ns1.spfd.test. hostmaster.spfd.test. {} ",
            s.serial("_spf.example.test.")
        )),
        "{ixfr}"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!(
            "{}_total{{result=\"refused\"}} 4",
            spfd::metrics::ZONE_TRANSFERS
        )),
        "{metrics}"
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ixfr_sends_the_differences_from_the_journal_and_the_zone_when_it_has_none() {
    let s = spfd(&[]).await;
    let port = s.addr.port();
    let zone = "_spf.example.test.";
    let first = s.serial(zone);
    s.setup.write_policy(
        "example.toml",
        &example_policy("v=spf1 ip4:192.0.2.0/24 ip4:203.0.113.7 -all"),
    );
    let second = wait_for_new_serial(&s, zone, first).await;
    let key = key_arg(SECRET);
    let out = kdig(
        port,
        &[
            "IXFR=".to_string() + &first.to_string(),
            zone.into(),
            "-y".into(),
            key.clone(),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let records = axfr_records(&out);
    let soas: Vec<&String> = records.iter().filter(|r| r.contains(" SOA ")).collect();
    assert_eq!(soas.len(), 4, "current, old, new, current: {out}");
    assert!(
        soas[1].contains(&format!(" {first} ")) && soas[2].contains(&format!(" {second} ")),
        "{out}"
    );
    assert_eq!(records.len(), 6, "one TXT deleted, one added: {out}");
    assert!(records[2].ends_with("\"v=spf1 ip4:192.0.2.0/24 -all\""), "{out}");
    assert!(
        records[4].ends_with("\"v=spf1 ip4:192.0.2.0/24 ip4:203.0.113.7 -all\""),
        "{out}"
    );
    assert!(!out.contains(";; ERROR") && !out.contains(";; WARNING"), "{out}");
    // A serial the journal does not know: the whole zone (AXFR form).
    let out = kdig(port, &["IXFR=12345", zone, "-y", &key]);
    let records = axfr_records(&out);
    assert!(records.len() > 6, "{out}");
    assert_eq!(records.first(), records.last(), "{out}");
    // Up to date: the SOA alone.
    let out = kdig(port, &[&format!("IXFR={second}"), zone, "-y", &key]);
    assert_eq!(axfr_records(&out).len(), 1, "{out}");
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_outside_allow_is_refused() {
    let setup = Setup::new(&[("example.toml", &example_policy("v=spf1 -all"))]);
    std::fs::write(
        setup.config_path(),
        config_text() + "[transfer]\nallow = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let out = axfr(running.addrs[0].port(), "_spf.example.test.", None);
    assert!(out.contains("REFUSED"), "{out}");
    assert!(axfr_records(&out).is_empty(), "{out}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_transfer_table_narrows_the_server_one() {
    let narrowed = "domain = \"n.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n\
                    [transfer]\nallow = [\"192.0.2.1\"]\n";
    let setup = Setup::new(&[
        ("example.toml", &example_policy("v=spf1 -all")),
        ("n.toml", narrowed),
    ]);
    std::fs::write(
        setup.config_path(),
        config_text() + "[transfer]\nallow = [\"127.0.0.0/8\"]\n",
    )
    .unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let port = running.addrs[0].port();
    let open = axfr(port, "_spf.example.test.", None);
    assert!(axfr_records(&open).len() > 4, "the server's allow: {open}");
    let out = axfr(port, "_spf.n.test.", None);
    assert!(out.contains("REFUSED"), "the policy's allow: {out}");
    // A policy table with an address the server does not allow gives it nothing.
    setup.write_policy("n.toml", &narrowed.replace("192.0.2.1", "127.0.0.1"));
    for _ in 0..200 {
        if axfr_records(&axfr(port, "_spf.n.test.", None)).len() > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        axfr_records(&axfr(port, "_spf.n.test.", None)).len() > 2,
        "now in both lists"
    );
    running.shutdown().await.unwrap();
}

/// Every record of the AXFR of `zone`, sorted.
fn sorted_axfr(port: u16, zone: &str, secret: Option<&str>) -> Vec<String> {
    let mut records = axfr_records(&axfr(port, zone, secret));
    // The SOA is listed twice; once is what both have.
    records.dedup();
    records.sort();
    records.dedup();
    records
}

/// The parts of an answer a secondary must give as the primary does.
fn answer_shape(m: &Message) -> (ResponseCode, bool, Vec<String>, Vec<String>) {
    let mut answers: Vec<String> = m.answers.iter().map(|r| format!("{r}")).collect();
    let mut authority: Vec<String> = m.authorities.iter().map(|r| format!("{r}")).collect();
    answers.sort();
    authority.sort();
    (
        m.metadata.response_code,
        m.metadata.authoritative,
        answers,
        authority,
    )
}

/// Asks both servers for every name of the zone with every type it has, a type it
/// does not have, and a name below it that does not exist: the answers must agree.
async fn sweep(spfd: SocketAddr, peer: SocketAddr, zone: &str, records: &[String]) -> usize {
    let mut questions: Vec<(String, RecordType)> = Vec::new();
    for r in records {
        let fields: Vec<&str> = r.split(' ').collect();
        let rtype: RecordType = fields[3].parse().unwrap();
        questions.push((fields[0].to_string(), rtype));
        questions.push((fields[0].to_string(), RecordType::A));
    }
    questions.push((format!("nx.{zone}"), RecordType::TXT));
    questions.sort();
    questions.dedup();
    for (name, rtype) in &questions {
        let q = query_no_edns(name, *rtype).to_vec().unwrap();
        let ours = Message::from_vec(&tcp_raw(spfd, &q).await).unwrap();
        let theirs = Message::from_vec(&tcp_raw(peer, &q).await).unwrap();
        assert_eq!(answer_shape(&ours), answer_shape(&theirs), "{name} {rtype}");
    }
    questions.len()
}

/// Transfers every finite zone to the peer, compares its AXFR and a query sweep with
/// spfd's, then checks the macro zone was not transferred.
async fn compare_with_peer(s: &Spfd, peer: &Peer) {
    for zone in FINITE {
        peer.wait_for_serial(zone, s.serial(zone)).await;
        let ours = sorted_axfr(s.addr.port(), zone, Some(SECRET));
        let theirs = sorted_axfr(peer.port, zone, None);
        assert_eq!(ours, theirs, "{} differs from spfd for {zone}", peer.name);
        let peer_addr: SocketAddr = ([127, 0, 0, 1], peer.port).into();
        let asked = sweep(s.addr, peer_addr, zone, &ours).await;
        assert!(asked > ours.len(), "{asked} questions for {zone}");
    }
    // Asked for, refused: the peer never has the macro zone.
    assert_eq!(soa_serial(peer.port, "_spf.m.test."), None, "{}", peer.name);
}

/// A policy edit and a provider change each reach the peer through NOTIFY.
async fn follow_changes(s: &Spfd, peer: &Peer, world: &Upstream) {
    let before = s.serial("_spf.example.test.");
    s.setup.write_policy(
        "example.toml",
        &example_policy("v=spf1 ip4:192.0.2.0/24 ip4:203.0.113.7 -all"),
    );
    let after = wait_for_new_serial(s, "_spf.example.test.", before).await;
    peer.wait_for_serial("_spf.example.test.", after).await;
    let answer = kdig(peer.port, &["+short", "TXT", "_spf.example.test."]);
    assert!(answer.contains("ip4:203.0.113.7"), "{}: {answer}", peer.name);

    let before = s.serial("flat.test.");
    let text = world.zone_text("prov.test.").replace(
        "ip4:198.51.100.0/25 -all",
        "ip4:198.51.100.0/25 ip4:192.0.2.128/25 -all",
    );
    world.replace_zone("prov.test.", &text).await;
    let after = wait_for_new_serial(s, "flat.test.", before).await;
    peer.wait_for_serial("flat.test.", after).await;
    let answer = kdig(peer.port, &["+short", "TXT", "flat.test."]);
    assert!(answer.contains("192.0.2.128/25"), "{}: {answer}", peer.name);
}

async fn wait_for_new_serial(s: &Spfd, zone: &str, before: u32) -> u32 {
    for _ in 0..400 {
        let now = s.serial(zone);
        if now != before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{zone} kept serial {before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsd_as_secondary_transfers_answers_and_follows_notify() {
    let port = free_port();
    let s = spfd(&[port]).await;
    let peer = nsd(port, s.addr.port());
    compare_with_peer(&s, &peer).await;
    follow_changes(&s, &peer, &s._world).await;
    let log = peer.log();
    assert!(log.contains("notify"), "NSD saw no NOTIFY: {log}");
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_as_secondary_transfers_answers_and_takes_changes_by_ixfr() {
    let port = free_port();
    let s = spfd(&[port]).await;
    let peer = knot(port, s.addr.port(), SECRET);
    compare_with_peer(&s, &peer).await;
    follow_changes(&s, &peer, &s._world).await;
    let log = peer.log();
    assert!(
        log.lines()
            .any(|l| l.contains("[_spf.example.test.] IXFR, incoming") && l.contains("finished")),
        "Knot took no IXFR: {log}"
    );
    // After the IXFR the zones are still the same.
    compare_with_peer(&s, &peer).await;
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_with_another_key_is_refused() {
    let port = free_port();
    let s = spfd(&[]).await;
    let peer = knot(port, s.addr.port(), OTHER_SECRET);
    // Knot asks (and retries); spfd refuses every time, so Knot never has the zone.
    let mut refused = false;
    for _ in 0..100 {
        let log = peer.log();
        if log.contains("NOTAUTH") || log.contains("BADSIG") || log.contains("failed to verify") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "no refusal in Knot's log:\n{}", peer.log());
    assert_eq!(soa_serial(peer.port, "_spf.example.test."), None);
    s.running.shutdown().await.unwrap();
}

#[test]
fn check_reports_a_policy_naming_an_unknown_key() {
    let narrowed = "domain = \"n.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n[transfer]\ntsig = \"nokey\"\n";
    let setup = Setup::new(&[("n.toml", narrowed)]);
    std::fs::write(setup.dir.path().join("xfr-key.secret"), SECRET).unwrap();
    std::fs::write(
        setup.config_path(),
        config_text()
            + "[transfer]\nallow = [\"127.0.0.1\"]\n[tsig.xfr-key]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"xfr-key.secret\"\n",
    )
    .unwrap();
    let (text, ok) = spfd::cli::check(&setup.config_path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("n.toml: error: transfer tsig \"nokey\" is not a [tsig.nokey] table"),
        "{text}"
    );
    assert!(text.contains("1 errors"), "{text}");
}
