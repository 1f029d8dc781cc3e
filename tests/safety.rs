//! spfd's promise, tried as an operator would: a worse record is never published. A
//! real upstream DNS server on loopback serves the provider trees (tests/upstream/);
//! clients poll the real server while policies are edited, while an expansion fails,
//! and while a server with 20,000 policies starts.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use upstream::{Failure, Upstream};

fn world_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))
}

fn policy(domain: &str, record: &str, mode: &str) -> String {
    format!("domain = \"{domain}\"\n[spf]\nrecord = \"{record}\"\nmode = \"{mode}\"\n")
}

/// A server whose upstream is the loopback world, refreshing every second.
async fn setup(world: &Upstream, policies: &[(&str, &str)]) -> Setup {
    let setup = Setup::new(policies);
    let config =
        config_text() + &world.resolver_config_toml() + "refresh_min = \"1s\"\nrefresh_max = \"2s\"\n";
    std::fs::write(setup.config_path(), config).unwrap();
    setup
}

/// Every answer a poller saw, by the text served (or the rcode when there was none).
type Seen = BTreeMap<String, usize>;

/// Asks `name` over UDP in a loop until `stop`, recording each answer.
async fn poll(addr: SocketAddr, name: String, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::new();
    let q = query(&name, RecordType::TXT);
    while !stop.load(Ordering::Relaxed) {
        let r = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
        let key = match (r.metadata.response_code, txt_joined(&r).as_slice()) {
            (ResponseCode::NoError, [one]) => one.clone(),
            (rcode, texts) => format!("{rcode:?} {texts:?}"),
        };
        *seen.entry(key).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

async fn wait_for(addr: SocketAddr, name: &str, check: impl Fn(&str) -> bool) -> String {
    let q = query(name, RecordType::TXT);
    for _ in 0..600 {
        let r = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
        if let [one] = txt_joined(&r).as_slice()
            && check(one)
        {
            return one.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never met the condition");
}

const V4_NAME: &str = "1.0.0.10.in-addr._spf.mac.test.";
const FLAT_HEAD: &str = "_spf.flat.test.";
/// 198.51.100.70: in provider-b's ranges only.
const PROVIDER_B_CLIENT: &str = "70.100.51.198.in-addr._spf.mac.test.";

/// Edits of a flatten-mode and a macro-mode policy, one whose new include answers
/// slowly (its expansion takes seconds) and one whose expansion fails for good: every
/// answer polled meanwhile is a flattened record (old or new) or a macro answer, never
/// the record as written and never NXDOMAIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_never_serve_the_record_as_written_nor_take_macro_answers_away() {
    let world = Upstream::start(world_dir()).await;
    let flat_v1 = "v=spf1 include:_spf.provider-a.test ip4:198.51.100.77 -all";
    let mac_v1 = "v=spf1 include:_spf.provider-a.test -all";
    let s = setup(
        &world,
        &[
            ("flat.toml", &policy("flat.test", flat_v1, "flatten")),
            ("mac.toml", &policy("mac.test", mac_v1, "macro")),
        ],
    )
    .await;
    let running = spfd::server::start(&s.config()).await.unwrap();
    let addr = running.addrs[0];
    let old_head = wait_for(addr, FLAT_HEAD, |t| !t.contains("include:")).await;
    // 10.1.0.1 is in provider-a's _netblocks: softfail (its ~all is not a pass).
    wait_for(addr, V4_NAME, |t| t.starts_with("v=spf1")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = [FLAT_HEAD, V4_NAME, "5.2.0.192.in-addr._spf.mac.test."]
        .into_iter()
        .map(|name| tokio::spawn(poll(addr, name.to_string(), stop.clone())))
        .collect();

    // The macro policy gains an include that times out for a while (each try takes the
    // upstream timeout); the flatten policy gains one with no SPF record (final error).
    world.set_failure("provider-b.test.", Failure::Timeout);
    let mac_v2 = "v=spf1 include:_spf.provider-a.test include:spf.provider-b.test -all";
    let flat_v2 = "v=spf1 include:_spf.provider-a.test include:nothing.provider-b.test -all";
    s.write_policy("mac.toml", &policy("mac.test", mac_v2, "macro"));
    s.write_policy("flat.toml", &policy("flat.test", flat_v2, "flatten"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        tcp_text(addr, FLAT_HEAD).await,
        old_head,
        "a failed expansion keeps the last good chain"
    );
    assert_eq!(tcp_text(addr, PROVIDER_B_CLIENT).await, "v=spf1 -all", "not yet");
    world.clear_failures();
    // The macro policy's new version is served once its expansion exists.
    wait_for(addr, PROVIDER_B_CLIENT, |t| t == "v=spf1 ip4:198.51.100.70 -all").await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::new();
    for p in pollers {
        for (k, v) in p.await.unwrap() {
            *seen.entry(k).or_default() += v;
        }
    }
    for (answer, count) in &seen {
        assert!(
            answer.starts_with("v=spf1") && !answer.contains("include:"),
            "{count} answers were {answer:?}: not a flattened record or a macro answer\nall: {seen:#?}"
        );
    }
    assert!(seen.values().sum::<usize>() > 100, "the pollers asked: {seen:?}");
    running.shutdown().await.unwrap();
}

async fn tcp_text(addr: SocketAddr, name: &str) -> String {
    let q = query(name, RecordType::TXT);
    let msg = Message::from_vec(&tcp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
    txt_joined(&msg).concat()
}

const MANY: usize = 20_000;

/// 20,000 flattened policies persisted in state_dir, and a restart while upstream is
/// down: from the moment the socket is bound, every query is answered with the
/// persisted flattened record (after the first snapshot is in place), never REFUSED
/// and never the record as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_startup_get_the_whole_snapshot() {
    let world = Upstream::start(world_dir()).await;
    let s = setup(&world, &[]).await;
    for i in 0..MANY {
        let record = format!(
            "v=spf1 include:spf.provider-b.test ip4:10.9.{}.{} -all",
            i / 256,
            i % 256
        );
        let text = policy(&format!("d{i}.test"), &record, "flatten");
        std::fs::write(s.policy_path(&format!("d{i}.toml")), text).unwrap();
    }
    let running = spfd::server::start(&s.config()).await.unwrap();
    let mut flattened = running.flattened.clone();
    assert!(flattened.wait().await, "the first round of expansions ends");
    running.shutdown().await.unwrap();

    // Upstream is down: whatever is served comes from the state directory.
    world.set_failure(".", Failure::Timeout);
    let mut child = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["serve", "--config"])
        .arg(s.config_path())
        .env("SPFD_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("spfd logs its addresses").unwrap();
        if let Some(rest) = line.split("addrs=[").nth(1) {
            break rest.split(']').next().unwrap().parse().unwrap();
        }
    };
    let serving = Arc::new(AtomicBool::new(false));
    let flag = serving.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("serving") {
                flag.store(true, Ordering::Relaxed);
            }
        }
    });
    let mut answers = BTreeMap::<String, usize>::new();
    let (mut before_serving, mut after_serving) = (0, 0);
    let mut i = 0;
    while after_serving < 50 {
        before_serving += usize::from(!serving.load(Ordering::Relaxed));
        let name = format!("_spf.d{}.test.", (i * 7919) % MANY);
        let q = query(&name, RecordType::TXT);
        let r = Message::from_vec(&patient_udp(addr, &q.to_vec().unwrap()).await).unwrap();
        let kind = match (r.metadata.response_code, txt_joined(&r).as_slice()) {
            (ResponseCode::NoError, [one]) if !one.contains("include:") => "flattened".to_string(),
            (rcode, texts) => format!("{name} {rcode:?} {texts:?}"),
        };
        *answers.entry(kind).or_default() += 1;
        after_serving += usize::from(serving.load(Ordering::Relaxed));
        i += 1;
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("{before_serving} queries asked before the first snapshot was in place");
    assert!(before_serving > 0, "the startup window was not exercised");
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        ["flattened"],
        "every answer during and after startup is the persisted flattened record: {answers:?}"
    );
}

fn passthrough(domain: &str, record: &str) -> String {
    policy(domain, record, "passthrough")
}

/// Policies whose records cannot fit a DNS message (a 70 KB DKIM `n=`, 4,100
/// includes, 4,000 report addresses): `spfd check` reports each with its position and
/// exits 1, never panics.
#[test]
fn records_too_large_for_a_message_are_errors_with_a_position() {
    let key = std::fs::read_to_string(key_path("rsa2048.pub.pem")).unwrap();
    let includes: String = (0..4100).map(|i| format!(" include:p{i}.test")).collect();
    let rua: Vec<String> = (0..4000)
        .map(|i| format!("\"mailto:r{i}@example.test\""))
        .collect();
    let files = [
        (
            "dkim.toml",
            format!(
                "domain = \"dkim.test\"\n[dkim.s1]\nkey_file = \"key.pem\"\nn = \"{}\"\n",
                "x".repeat(70_000)
            ),
            "dkim.toml:2:1: error: the DKIM s1 record would be",
        ),
        (
            "spf.toml",
            format!(
                "domain = \"spf.test\"\n[spf]\nrecord = \"v=spf1{includes} -all\"\nmode = \"passthrough\"\n"
            ),
            "spf.toml:2:1: error: the SPF record would be",
        ),
        (
            "rua.toml",
            format!(
                "domain = \"rua.test\"\n[dmarc]\np = \"none\"\nrua = [{}]\n",
                rua.join(", ")
            ),
            "rua.toml:2:1: error: the DMARC record would be",
        ),
    ];
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t, _)| (*n, t.as_str())).collect();
    let setup = Setup::new(&refs);
    std::fs::write(setup.policy_path("key.pem"), key).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["check", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (_, _, want) in &files {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// A 70 KB policy dropped into a running server is reported and refused; the reload
/// service goes on: a valid edit that follows is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_policy_does_not_stop_reloads() {
    let s = TestServer::start(&[("a.toml", &passthrough("a.test", "v=spf1 ip4:192.0.2.1 -all"))]).await;
    let big = format!(
        "domain = \"big.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.9 -all\"\nmode = \"passthrough\"\n\
         [dmarc]\np = \"none\"\nrua = [{}]\n",
        (0..3000)
            .map(|i| format!("\"mailto:reports-{i}@example.test\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(big.len() > 70_000);
    s.setup.write_policy("big.toml", &big);
    s.running.reload.send(spfd::reload::Trigger::Signal).unwrap();
    s.setup
        .write_policy("a.toml", &passthrough("a.test", "v=spf1 ip4:192.0.2.2 -all"));
    let q = query("_spf.a.test.", RecordType::TXT);
    let r = s
        .wait_until(&q, |r| txt_joined(r) == ["v=spf1 ip4:192.0.2.2 -all"])
        .await;
    assert_eq!(txt_joined(&r), ["v=spf1 ip4:192.0.2.2 -all"]);
    let refused = s.udp(&query("_spf.big.test.", RecordType::TXT)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

/// A policy file that is a symbolic link: an edit of its target (by rename, as editors
/// do) is served without SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_a_linked_policy_file_are_seen() {
    let s = TestServer::start(&[]).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("linked.toml");
    std::fs::write(&target, passthrough("linked.test", "v=spf1 ip4:192.0.2.1 -all")).unwrap();
    std::os::unix::fs::symlink(&target, s.setup.policy_path("linked.toml")).unwrap();
    let q = query("_spf.linked.test.", RecordType::TXT);
    s.wait_until(&q, |r| txt_joined(r) == ["v=spf1 ip4:192.0.2.1 -all"])
        .await;
    let tmp = elsewhere.path().join(".linked.toml.tmp");
    std::fs::write(&tmp, passthrough("linked.test", "v=spf1 ip4:192.0.2.2 -all")).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
    let r = s
        .wait_until(&q, |r| txt_joined(r) == ["v=spf1 ip4:192.0.2.2 -all"])
        .await;
    assert_eq!(txt_joined(&r), ["v=spf1 ip4:192.0.2.2 -all"]);
}

/// A policy file that is not UTF-8 is reported at its first bad byte.
#[test]
fn a_file_that_is_not_utf8_is_reported_at_the_bad_byte() {
    let setup = Setup::new(&[]);
    let mut bytes = b"domain = \"x.test\"\n[spf]\nrecord = \"v=spf1 ".to_vec();
    bytes.extend([0xff, 0xfe]);
    bytes.extend(b" -all\"\n");
    std::fs::write(setup.policy_path("latin.toml"), bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["check", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("latin.toml:3:18: error: the file is not UTF-8: byte 41 is 0xff"),
        "{text}"
    );
}

/// One UDP exchange that waits as long as a slow start may take (loading 20,000
/// policies in a debug build on a loaded machine): the query stays queued in the
/// socket until the server reads it.
async fn patient_udp(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(120), socket.recv(&mut buf))
        .await
        .expect("an answer once the first snapshot is in place")
        .unwrap();
    buf.truncate(n);
    buf
}

/// A switch from macro to flatten mode: receivers may hold the macro head for its TTL,
/// so the per-address names keep their answers (never NXDOMAIN) while the apex serves
/// the new chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_from_macro_mode_keeps_per_address_answers() {
    let world = Upstream::start(world_dir()).await;
    let record = "v=spf1 include:spf.provider-b.test -all";
    let s = setup(&world, &[("m.toml", &policy("m.test", record, "macro"))]).await;
    let running = spfd::server::start(&s.config()).await.unwrap();
    let addr = running.addrs[0];
    let client = "70.100.51.198.in-addr._spf.m.test.";
    wait_for(addr, client, |t| t == "v=spf1 ip4:198.51.100.70 -all").await;

    s.write_policy("m.toml", &policy("m.test", record, "flatten"));
    wait_for(addr, "_spf.m.test.", |t| t.contains("ip4:198.51.100.")).await;
    let q = query(client, RecordType::TXT);
    let r = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        txt_joined(&r),
        ["v=spf1 ip4:198.51.100.70 -all"],
        "the macro answer stays for twice the TTL"
    );
    running.shutdown().await.unwrap();
}
