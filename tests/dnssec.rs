//! DNSSEC judged by real validators: unbound (stub zones to spfd, trust anchors from
//! `spfd dnssec ds`) and delv must find every answer spfd gives secure: apex SOA, NS,
//! DNSKEY, CDS, CDNSKEY, every TXT of every zone (SPF heads, chain parts, DMARC, DKIM),
//! denial of names that do not exist, NODATA, empty non-terminals, macro answers for
//! IPv4 and IPv6 clients and malformed per-address names; again after a policy edit, a
//! provider change and a key rollover. A wrong trust anchor makes them bogus.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/stage.rs"]
mod stage;
#[path = "common/upstream.rs"]
mod upstream;
#[path = "common/validators.rs"]
mod validators;

use std::net::SocketAddr;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use spfd::snapshot::signed::name_from_wire;
use stage::*;
use validators::*;

fn dkim_policy(spf: &str) -> String {
    format!(
        "domain = \"example.test\"\nttl = 600\n[spf]\nrecord = \"{spf}\"\nmode = \"passthrough\"\n\
         [dmarc]\np = \"reject\"\nrua = [\"mailto:dmarc@example.test\"]\n[dkim.s4096]\nkey_file = \"{}\"\n\
         [dkim.ed]\nk = \"ed25519\"\nkey_file = \"{}\"\n",
        key_path("rsa4096.pub.pem").display(),
        key_path("ed25519.pub.pem").display(),
    )
}

/// A provider whose records live one second in caches, so a change is seen at once.
const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 1\n@ 1 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 1\n\
                        @ 1 IN NS ns1.prov.test.\nns1 1 IN A 192.0.2.53\n\
                        spf 1 IN TXT \"v=spf1 ip4:198.51.100.0/25 ip4:192.0.2.192/26 -all\"\n";
const FLAT: &str = "domain = \"flat.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test -all\"\n";

fn enable_dnssec(setup: &Setup) {
    let path = setup.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text + "[dnssec]\nenabled = true\n").unwrap();
}

/// The anchors `spfd dnssec ds` prints for the running server's zones.
fn anchors(setup: &Setup, running: &spfd::server::Running) -> Vec<Anchor> {
    let text = spfd::cli::dnssec::ds(&setup.config(), &running.snapshot.load(), None).unwrap();
    let anchors = anchors_from_ds_output(&text);
    assert!(!anchors.is_empty(), "{text}");
    anchors
}

/// Every name the server publishes, with the types there (none: an empty non-terminal).
fn every_rrset(running: &spfd::server::Running) -> Vec<(String, Vec<RecordType>)> {
    let snapshot = running.snapshot.load();
    let mut out = Vec::new();
    for zone in snapshot.zones.values() {
        for (wire, sets) in zone.wire.names.iter() {
            let name = name_from_wire(wire).unwrap().to_string();
            out.push((name, sets.iter().map(|(t, _)| RecordType::from(*t)).collect()));
        }
    }
    out.sort();
    out
}

/// Asks unbound for every RRset, every empty non-terminal and a missing name below each
/// name: all must be secure.
async fn all_secure(unbound: &Unbound, rrsets: &[(String, Vec<RecordType>)]) {
    for (name, types) in rrsets {
        for t in types {
            let m = unbound.secure(name, *t).await;
            assert!(m.answers.iter().any(|r| r.record_type() == *t), "{name} {t}: {m}");
        }
        let probe = if types.is_empty() {
            RecordType::TXT
        } else {
            RecordType::A
        };
        let m = unbound.secure(name, probe).await;
        assert!(m.answers.is_empty(), "NODATA at {name}: {m}");
        let missing = format!("no-such-name.{name}");
        let m = unbound.secure(&missing, RecordType::TXT).await;
        assert!(m.answers.is_empty(), "{missing}: {m}");
    }
}

fn txt_of(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
            _ => None,
        })
        .collect()
}

fn anchor_of<'a>(anchors: &'a [Anchor], zone: &str) -> &'a Anchor {
    anchors
        .iter()
        .find(|a| a.zone == zone)
        .unwrap_or_else(|| panic!("no anchor for {zone}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_validates_before_and_after_changes_and_a_wrong_anchor_is_bogus() {
    let stage = Stage::new("flatten").await;
    stage.world.replace_zone("prov.test.", PROVIDER).await;
    stage.setup.write_policy("flat.toml", FLAT);
    stage
        .setup
        .write_policy("example.toml", &dkim_policy("v=spf1 ip4:192.0.2.0/24 -all"));
    enable_dnssec(&stage.setup);
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    let anchors = anchors(&stage.setup, &running);
    let unbound = Unbound::start(addr, &anchors).await;
    let rrsets = every_rrset(&running);
    assert!(
        rrsets
            .iter()
            .any(|(n, t)| n.starts_with("_domainkey.") && t.is_empty())
    );
    assert!(
        rrsets
            .iter()
            .filter(|(_, t)| t.contains(&RecordType::TXT))
            .count()
            > DOMAINS.len()
    );
    all_secure(&unbound, &rrsets).await;

    // delv, asking spfd itself: apex records, a missing name, an empty non-terminal,
    // and the 4096-bit DKIM key over TCP.
    let zone = "_spf.example.test.";
    let anchor = anchor_of(&anchors, zone);
    for (name, t, tcp) in [
        (zone.to_string(), RecordType::SOA, false),
        (zone.to_string(), RecordType::NS, false),
        (zone.to_string(), RecordType::DNSKEY, false),
        (zone.to_string(), RecordType::TXT, false),
        (format!("_dmarc.{zone}"), RecordType::TXT, false),
        (format!("s4096._domainkey.{zone}"), RecordType::TXT, true),
        (format!("nope.{zone}"), RecordType::TXT, false),
        (format!("_domainkey.{zone}"), RecordType::TXT, false),
        (zone.to_string(), RecordType::AAAA, false),
    ] {
        let out = delv(addr, anchor, &name, t, tcp);
        assert!(fully_validated(&out), "delv {name} {t}: {out}");
    }

    // A wrong anchor: the same answers are bogus (SERVFAIL from unbound).
    let bad: Vec<Anchor> = anchors.iter().map(wrong).collect();
    let bogus = Unbound::start(addr, &bad).await;
    let m = bogus.ask(zone, RecordType::TXT, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m}");
    let out = delv(addr, anchor_of(&bad, zone), zone, RecordType::TXT, false);
    assert!(!fully_validated(&out), "{out}");
    drop(bogus);

    // A policy edit: the new record is served, signed.
    stage
        .setup
        .write_policy("example.toml", &dkim_policy("v=spf1 ip4:192.0.2.0/25 -all"));
    let q = query(zone, RecordType::TXT);
    let edited = running_wait(&running, &q, |texts| texts == ["v=spf1 ip4:192.0.2.0/25 -all"]).await;
    assert!(edited, "the edit was not served");
    let m = unbound.secure(zone, RecordType::TXT).await;
    assert_eq!(txt_of(&m), ["v=spf1 ip4:192.0.2.0/25 -all"]);

    // A provider change: the chain is rebuilt and all stays secure.
    let before = txt_of(&unbound.secure("_spf.flat.test.", RecordType::TXT).await);
    stage
        .world
        .replace_zone(
            "prov.test.",
            &PROVIDER.replace("198.51.100.0/25", "198.51.100.128/25"),
        )
        .await;
    let q = query("_spf.flat.test.", RecordType::TXT);
    let changed = running_wait(&running, &q, |t| t != before.as_slice()).await;
    assert!(changed, "the provider change was not published");
    all_secure(&unbound, &every_rrset(&running)).await;
    running.shutdown().await.unwrap();
}

/// Asks spfd over TCP until the TXT strings at the question satisfy `check` (10 s at
/// most: reloads follow file events).
async fn running_wait(
    running: &spfd::server::Running,
    q: &hickory_proto::op::Message,
    check: impl Fn(&[String]) -> bool,
) -> bool {
    for _ in 0..400 {
        let m = hickory_proto::op::Message::from_vec(&tcp_raw(running.addrs[0], &q.to_vec().unwrap()).await)
            .unwrap();
        if check(&txt_joined(&m)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_answers_are_signed_for_every_client_address() {
    let stage = Stage::new("macro").await;
    enable_dnssec(&stage.setup);
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    let anchors = anchors(&stage.setup, &running);
    let unbound = Unbound::start(addr, &anchors).await;
    let zone = "_spf.customer.test.";
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.a.0.0.0.8.b.d.0.1.0.0.2";
    let names = [
        format!("5.113.0.203.in-addr.{zone}"),
        format!("66.100.51.198.in-addr.{zone}"),
        format!("{v6}.ip6.{zone}"),
        format!("x.2.0.192.in-addr.{zone}"),
        format!("2.0.192.in-addr.{zone}"),
    ];
    for name in &names {
        let m = unbound.secure(name, RecordType::TXT).await;
        let direct = txt_joined(&ask_udp(addr, name).await);
        assert_eq!(txt_of(&m), direct, "{name}");
        assert!(!direct.is_empty(), "{name}");
        // Other types at a per-address name: NODATA, proven.
        let m = unbound.secure(name, RecordType::A).await;
        assert!(m.answers.is_empty());
    }
    assert_eq!(txt_joined(&ask_udp(addr, &names[3]).await), ["v=spf1 ?all"]);
    let head = unbound.secure(zone, RecordType::TXT).await;
    assert!(txt_of(&head)[0].contains("%{ir}"));
    let out = delv(addr, anchor_of(&anchors, zone), &names[2], RecordType::TXT, false);
    assert!(fully_validated(&out), "{out}");
    running.shutdown().await.unwrap();
}

async fn ask_udp(addr: SocketAddr, name: &str) -> hickory_proto::op::Message {
    let q = query(name, RecordType::TXT);
    hickory_proto::op::Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_answer_too_large_for_udp_is_truncated_and_whole_over_tcp() {
    let policy = dkim_policy("v=spf1 -all");
    let setup = Setup::new(&[("example.toml", policy.as_str())]);
    enable_dnssec(&setup);
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    let name = "s4096._domainkey._spf.example.test.";
    let mut q = query(name, RecordType::TXT);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(512);
    edns.set_dnssec_ok(true);
    q.set_edns(edns);
    let bytes = q.to_vec().unwrap();
    let udp = hickory_proto::op::Message::from_vec(&udp_raw(addr, &bytes).await).unwrap();
    assert!(udp.metadata.truncation, "{udp}");
    assert!(udp.answers.is_empty());
    let tcp = hickory_proto::op::Message::from_vec(&tcp_raw(addr, &bytes).await).unwrap();
    assert!(!tcp.metadata.truncation);
    let types: Vec<RecordType> = tcp.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::TXT, RecordType::RRSIG], "{tcp}");
    // A small signed answer comes over UDP (the fast path) with the same records, and
    // the same precomputed signature, as over TCP.
    let mut q = query("_spf.example.test.", RecordType::TXT);
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    q.set_edns(edns);
    let bytes = q.to_vec().unwrap();
    let udp = hickory_proto::op::Message::from_vec(&udp_raw(addr, &bytes).await).unwrap();
    let tcp = hickory_proto::op::Message::from_vec(&tcp_raw(addr, &bytes).await).unwrap();
    let mut out = Vec::new();
    let outcome = spfd::dns::wire::respond(&running.snapshot.load(), &bytes, &mut out);
    assert_eq!(
        outcome,
        spfd::dns::wire::Outcome::Answered,
        "answered on the fast path"
    );
    assert_eq!(udp.answers.len(), 2, "{udp}");
    assert_eq!(udp.answers, tcp.answers);
    assert!(udp.metadata.authoritative);
    assert!(udp.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    // Without DO the same question fits and carries no signature.
    let plain = hickory_proto::op::Message::from_vec(
        &udp_raw(addr, &query(name, RecordType::TXT).to_vec().unwrap()).await,
    )
    .unwrap();
    assert!(!plain.metadata.truncation);
    assert!(plain.answers.iter().all(|r| r.record_type() == RecordType::TXT));
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rollover_keeps_every_step_secure() {
    let policy = dkim_policy("v=spf1 ip4:192.0.2.1 -all");
    let setup = Setup::new(&[("example.toml", policy.as_str())]);
    enable_dnssec(&setup);
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    let zone = "_spf.example.test.";
    let old = anchors(&setup, &running);
    let keys_now = |running: &spfd::server::Running| {
        let snapshot = running.snapshot.load();
        let z = snapshot.zones.values().next().unwrap();
        z.wire.zone.dnssec.as_ref().unwrap().key_tags()
    };
    assert_eq!(keys_now(&running).len(), 1);

    // Step 1: a second key, published and signing after a reload.
    let config = setup.config();
    let text = spfd::cli::dnssec::rollover(&config, zone, 600, false, false).unwrap();
    assert!(text.contains("replace the DS at the parent"), "{text}");
    running.reload.send(spfd::reload::Trigger::Signal).unwrap();
    wait_for(|| keys_now(&running).len() == 2).await;
    let both = anchors(&setup, &running);
    assert_eq!(both.len(), 2);
    let new: Vec<Anchor> = both
        .iter()
        .filter(|a| old.iter().all(|o| o.ds != a.ds))
        .cloned()
        .collect();
    assert_eq!(new.len(), 1);
    // Validators holding either DS find everything secure.
    for anchors in [&old, &new] {
        let unbound = Unbound::start(addr, anchors).await;
        unbound.secure(zone, RecordType::TXT).await;
        unbound.secure(zone, RecordType::DNSKEY).await;
        unbound.secure(&format!("nope.{zone}"), RecordType::TXT).await;
    }
    // Finishing early is refused; forced, the old key goes.
    assert!(spfd::cli::dnssec::rollover(&config, zone, 600, true, false).is_err());
    spfd::cli::dnssec::rollover(&config, zone, 600, true, true).unwrap();
    running.reload.send(spfd::reload::Trigger::Signal).unwrap();
    wait_for(|| keys_now(&running).len() == 1).await;
    let unbound = Unbound::start(addr, &new).await;
    unbound.secure(zone, RecordType::TXT).await;
    unbound.secure(zone, RecordType::DNSKEY).await;
    let stale = Unbound::start(addr, &old).await;
    let m = stale.ask(zone, RecordType::TXT, false).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::ServFail,
        "the old DS no longer matches: {m}"
    );
    running.shutdown().await.unwrap();
}

async fn wait_for(check: impl Fn() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("not reached within 10 s");
}

/// `[upstream] dnssec = "validate"`: the flattener validates what it resolves. A
/// provider zone signed (by another spfd) validates with its key as trust anchor and is
/// flattened; with a key that is not the provider's, its answers are bogus: an upstream
/// failure, reported, and nothing unvalidated is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flattener_validates_provider_answers() {
    let provider = "domain = \"prov.test\"\nzone = \"prov.test\"\n[spf]\nrecord = \"v=spf1 ip4:198.51.100.0/25 -all\"\nmode = \"passthrough\"\n";
    let signer = Setup::new(&[("prov.toml", provider)]);
    enable_dnssec(&signer);
    let upstream = spfd::server::start(&signer.config()).await.unwrap();
    let ds = spfd::cli::dnssec::ds(&signer.config(), &upstream.snapshot.load(), None).unwrap();
    let dnskey = ds.lines().find(|l| l.contains("\tDNSKEY\t")).unwrap().to_string();
    // Another key for the same zone: not the provider's.
    let other_dir = tempfile::tempdir().unwrap();
    let store =
        spfd::dnssec::KeyStore::open(other_dir.path(), spfd::dnssec::KeyAlgorithm::EcdsaP256Sha256).unwrap();
    let other = store
        .keys_for(&hickory_proto::rr::Name::from_ascii("prov.test.").unwrap())
        .unwrap();
    let other_line = format!(
        "prov.test.\t600\tIN\tDNSKEY\t257 3 13 {}",
        spfd::cli::dnssec::dnskey_base64(&other.keys[0])
    );

    for (anchor, trusted) in [(dnskey.as_str(), true), (other_line.as_str(), false)] {
        let policy = "domain = \"flat.test\"\n[spf]\nrecord = \"v=spf1 include:prov.test -all\"\n";
        let setup = Setup::new(&[("flat.toml", policy)]);
        std::fs::write(setup.dir.path().join("anchors.key"), format!("{anchor}\n")).unwrap();
        let config = format!(
            "{}[upstream]\nnameservers = [\"{}\"]\ntimeout = \"1s\"\ndnssec = \"validate\"\ntrust_anchors = \"anchors.key\"\n",
            config_text(),
            upstream.addrs[0]
        );
        std::fs::write(setup.config_path(), config).unwrap();
        let running = spfd::server::start(&setup.config()).await.unwrap();
        let mut flattened = running.flattened.clone();
        flattened.wait().await;
        let board = running.board.load();
        let status = board
            .policies
            .get("flat.test.")
            .or_else(|| board.policies.get("flat.test"))
            .cloned();
        let published = running.published.get("flat.test.");
        if trusted {
            let entry = published.expect("validated answers are flattened");
            let text = format!("{entry:?}");
            assert!(text.contains("198.51.100.0/25"), "{text}");
        } else {
            assert!(published.is_none(), "a bogus answer must not be published");
            let error = status.and_then(|s| s.error.clone()).unwrap_or_default();
            assert!(error.contains("DNSSEC validation failed"), "{error}");
        }
        running.shutdown().await.unwrap();
    }
    upstream.shutdown().await.unwrap();
}

/// One signature cache for every zone: random names asked with DO=1 across many signed
/// zones (each denial signs an NSEC) fill it to its bound and no further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signature_cache_stays_within_its_one_bound_across_zones() {
    const ZONES: usize = 40;
    const NAMES: usize = 3000;
    const BOUND: u64 = 64 << 10;
    let policies: Vec<(String, String)> = (0..ZONES)
        .map(|i| {
            let text =
                format!("domain = \"d{i}.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n");
            (format!("d{i}.toml"), text)
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = policies.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let setup = Setup::new(&borrowed);
    enable_dnssec(&setup);
    let path = setup.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text + "signature_cache = \"64 KiB\"\n").unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    for i in 0..NAMES {
        let mut q = query(&format!("r{i}._spf.d{}.test.", i % ZONES), RecordType::TXT);
        q.edns.as_mut().unwrap().set_dnssec_ok(true);
        let m = hickory_proto::op::Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
        assert_eq!(m.authorities.len(), 4, "a signed denial: {m}");
    }
    let snapshot = running.snapshot.load();
    let signed: Vec<_> = snapshot
        .zones
        .values()
        .filter_map(|z| z.wire.zone.dnssec.clone())
        .collect();
    assert_eq!(signed.len(), ZONES);
    assert!(
        signed.iter().all(|s| std::ptr::eq(s.cache(), signed[0].cache())),
        "one cache for every zone"
    );
    let stats = signed[0].cache().stats();
    assert_eq!(stats.budget, BOUND);
    assert!(stats.misses >= NAMES as u64, "every name signed: {stats:?}");
    assert!(stats.bytes <= BOUND, "{stats:?}");
    assert!(stats.bytes > BOUND / 2, "the bound is used: {stats:?}");
    assert_eq!(stats.evictions + stats.entries, stats.misses, "{stats:?}");
    running.shutdown().await.unwrap();
}
