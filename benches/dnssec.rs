//! DNSSEC costs: one signature (P-256 and Ed25519), a signed answer (DO=1, general path)
//! against the unsigned one (DO=0, fast path) on a snapshot of 1,000 signed zones, a
//! signed compact denial, and the on-demand signature cache under a skewed client
//! address distribution (its hit rate is printed).
//!
//! `cargo bench --bench dnssec` measures; `-- --test` runs each once.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use spfd::config::DnssecConfig;
use spfd::diag::SourceFile;
use spfd::dns::handler::respond_general;
use spfd::dns::wire::{self, Outcome};
use spfd::dnssec::{KeyAlgorithm, KeyStore, Prepared, SigCache, SignedZone, Signer, Window};
use spfd::policy;
use spfd::snapshot::serials::SerialBook;
use spfd::snapshot::signed::Signing;
use spfd::snapshot::{Builder, ServerIdentity, Snapshot};

const POLICIES: usize = 1_000;
const ZONE: usize = 500;
const NOW: u64 = 1_800_000_000;

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn build(dir: &std::path::Path, signed: bool) -> Snapshot {
    let config = DnssecConfig {
        enabled: signed,
        ..DnssecConfig::default()
    };
    let signing = Signing::open(&config, dir).unwrap();
    let mut builder = Builder::new().with_dnssec(signing);
    for i in 0..POLICIES {
        let text = format!(
            "domain = \"d{i}.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:{i:x}::/48 -all\"\n\
             mode = \"passthrough\"\n[dmarc]\np = \"reject\"\n"
        );
        let policy = policy::parse(&SourceFile::new(format!("p/d{i}.toml"), text))
            .unwrap()
            .policy;
        builder.add(Arc::new(policy), None).unwrap();
    }
    let servers = ServerIdentity {
        nameservers: vec![name("ns1.spfd.test.")],
        hostmaster: name("hostmaster.spfd.test."),
    };
    builder.finish(1, &servers, &mut SerialBook::default(), NOW)
}

fn request(qname: &str, qtype: RecordType, dnssec_ok: bool) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(qname), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec_ok);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

/// What a UDP worker does with one datagram.
fn respond(snapshot: &Snapshot, bytes: &[u8], out: &mut Vec<u8>) -> usize {
    let src = SocketAddr::from((IpAddr::V4(Ipv4Addr::LOCALHOST), 5353));
    match wire::respond(snapshot, bytes, out) {
        Outcome::General => respond_general(snapshot, bytes, src, Protocol::Udp).map_or(0, |r| r.len()),
        _ => out.len(),
    }
}

fn signer(alg: KeyAlgorithm) -> (tempfile::TempDir, Signer) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), alg).unwrap();
    let keys = store.keys_for(&name("_spf.d1.test.")).unwrap();
    (
        dir,
        Signer {
            keys,
            validity: 14 * 86400,
        },
    )
}

fn txt(owner: &str, text: &str) -> Vec<Record> {
    vec![Record::from_rdata(
        name(owner),
        300,
        RData::TXT(TXT::new(vec![text.to_string()])),
    )]
}

fn signatures(c: &mut Criterion) {
    for (id, alg) in [
        ("p256", KeyAlgorithm::EcdsaP256Sha256),
        ("ed25519", KeyAlgorithm::Ed25519),
    ] {
        let (_dir, signer) = signer(alg);
        let set = Prepared::new(&txt("_spf.d1.test.", "v=spf1 ip4:192.0.2.0/24 -all")).unwrap();
        let window = Window::at(NOW, signer.validity);
        c.bench_function(&format!("dnssec/sign_one_rrset/{id}"), |b| {
            b.iter(|| black_box(signer.sign(black_box(&set), window)))
        });
    }
}

fn answers(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let unsigned = build(dir.path(), false);
    let unsigned_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let signed = build(dir.path(), true);
    eprintln!(
        "build of {POLICIES} zones: unsigned {unsigned_ms} ms, signed (keys made) {} ms",
        started.elapsed().as_millis()
    );
    let started = Instant::now();
    let _again = build(dir.path(), true);
    eprintln!(
        "build of {POLICIES} signed zones, keys on disk: {} ms",
        started.elapsed().as_millis()
    );
    let zone = format!("_spf.d{ZONE}.test.");
    let mut out = Vec::with_capacity(2048);
    for (id, snapshot, qname, dnssec_ok) in [
        ("txt_do0_unsigned_zone", &unsigned, zone.clone(), false),
        ("txt_do0_signed_zone", &signed, zone.clone(), false),
        ("txt_do1_signed_zone", &signed, zone.clone(), true),
        ("denial_do1_signed_zone", &signed, format!("nope.{zone}"), true),
    ] {
        let bytes = request(&qname, RecordType::TXT, dnssec_ok);
        assert!(respond(snapshot, &bytes, &mut out) > 0);
        c.bench_function(&format!("dnssec/answer/{id}"), |b| {
            b.iter(|| black_box(respond(snapshot, black_box(&bytes), &mut out)))
        });
    }
}

/// Macro answers: one signature per (address, window) while the address stays in the
/// cache. Client addresses follow a Zipf-like law (a few senders send most mail).
fn macro_cache(c: &mut Criterion) {
    let (_dir, signer) = signer(KeyAlgorithm::EcdsaP256Sha256);
    let budget = DnssecConfig::default().signature_cache as usize;
    let zone = SignedZone::new(signer, Vec::new(), NOW, None, Arc::new(SigCache::new(budget)));
    let names: Vec<Vec<Record>> = (0..50_000u32)
        .map(|i| {
            let [a, b, c, d] = (0xc000_0200u32 + i).to_be_bytes();
            txt(&format!("{d}.{c}.{b}.{a}.in-addr._spf.d1.test."), "v=spf1 ?all")
        })
        .collect();
    // Rank r is asked with weight 1/r: a xorshift draw mapped through the harmonic CDF.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut draw = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        ((names_len() as f64).powf(u) as usize).min(names_len()) - 1
    };
    for _ in 0..200_000 {
        zone.on_demand(&names[draw()], NOW);
    }
    let stats = zone.cache().stats();
    eprintln!(
        "macro signature cache: {:.1}% hits over {} queries (50,000 addresses, Zipf-like), {} entries in {} KiB",
        100.0 * stats.hits as f64 / (stats.hits + stats.misses) as f64,
        stats.hits + stats.misses,
        stats.entries,
        stats.bytes >> 10
    );
    let warm = &names[0];
    c.bench_function("dnssec/macro_signature/warm_cache", |b| {
        b.iter(|| black_box(zone.on_demand(black_box(warm), NOW)))
    });
}

fn names_len() -> usize {
    50_000
}

criterion_group!(benches, signatures, answers, macro_cache);
criterion_main!(benches);
