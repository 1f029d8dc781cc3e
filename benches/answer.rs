//! Criterion benchmarks of the query path without sockets, on a snapshot of many generated
//! policies: the UDP fast path (wire bytes in, wire bytes out: the CPU a UDP query costs
//! short of the socket calls), the general path (hickory's parser and encoder, for TCP
//! and unusual queries) and the `answer` function under it; and the policy parse and
//! snapshot build that every reload pays; and the fast path with the response rate
//! limiter below its limit.
//!
//! `cargo bench --bench answer` measures; `cargo bench --bench answer -- --test` runs each
//! benchmark once and checks every response (what CI runs).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use spfd::diag::SourceFile;
use spfd::dns::answer::answer;
use spfd::dns::handler::respond_general;
use spfd::dns::rrl::{Limiter, RrlConfig, RrlCounters, Verdict};
use spfd::dns::stats::{Proto, QueryStats};
use spfd::dns::wire::{self, Outcome};
use spfd::flatten::{Ip4Set, Ip6Set, Rule, Terminal};
use spfd::policy::{self, ValidPolicy};
use spfd::snapshot::SpfAnswer;
use spfd::snapshot::macro_table::{self, MacroTable};
use spfd::snapshot::serials::SerialBook;
use spfd::snapshot::{Builder, ServerIdentity, Snapshot};
use spfd::spf::Qualifier;

/// Policies in the snapshot the query benchmarks read.
const POLICIES: usize = 1_000;
/// A zone in the middle of the snapshot, so no benchmark hits a lucky first entry.
const ZONE: usize = 500;
/// The zone served in macro mode (its per-address answers), next to `ZONE`.
const MACRO_ZONE: usize = ZONE + 1;
/// A fixed clock for serials, so every run builds the same snapshot.
const NOW_UNIX: u64 = 1_800_000_000;
/// The 2048-bit RSA key the tests use: its DKIM record is 392 base64 characters, two
/// character-strings.
const RSA2048_PEM: &str = include_str!("../tests/data/keys/rsa2048.pub.pem");

/// The policy of mail domain `d<i>.test`, served in zone `_spf.d<i>.test`, with SPF,
/// DMARC and a DKIM key at selector `s1`.
fn policy_text(i: usize, dkim_key: &str) -> String {
    format!(
        r#"domain = "d{i}.test"
ttl = 300

[spf]
record = "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.{octet}/32 ip6:2001:db8:{i:x}::/48 mx a:mail.d{i}.test -all"
mode = "passthrough"

[dmarc]
p = "reject"
rua = ["mailto:dmarc-reports@d{i}.test"]
adkim = "s"

[dkim.s1]
p = "{dkim_key}"
"#,
        octet = i % 256,
    )
}

/// The base64 body of a PEM public key.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn parse_policy(i: usize, dkim_key: &str) -> Arc<ValidPolicy> {
    let src = SourceFile::new(format!("policies/d{i}.toml"), policy_text(i, dkim_key));
    match policy::parse(&src) {
        Ok(loaded) => Arc::new(loaded.policy),
        Err(diags) => panic!("generated policy {i} is invalid: {diags:?}"),
    }
}

fn parse_policies(count: usize) -> Vec<Arc<ValidPolicy>> {
    let key = pem_body(RSA2048_PEM);
    (0..count).map(|i| parse_policy(i, &key)).collect()
}

fn servers() -> ServerIdentity {
    ServerIdentity {
        nameservers: vec![name("ns1.spfd.test."), name("ns2.spfd.test.")],
        hostmaster: name("hostmaster.spfd.test."),
    }
}

/// What a reload does once the files are parsed: add every policy, then finish.
fn build(policies: &[Arc<ValidPolicy>], book: &mut SerialBook) -> Snapshot {
    let mut builder = Builder::new();
    for (i, policy) in policies.iter().enumerate() {
        let spf = (i == MACRO_ZONE).then(macro_answer);
        builder
            .add(policy.clone(), spf)
            .expect("generated policies do not conflict");
    }
    builder.finish(1, &servers(), book, NOW_UNIX)
}

/// Macro answers for `MACRO_ZONE`: 192.0.2.66 fails, the rest of 192.0.2.0/24 and
/// 2001:db8::/32 pass, everything else fails.
fn macro_answer() -> Arc<SpfAnswer> {
    let set4 = |nets: &[&str]| Ip4Set::from_nets(nets.iter().map(|n| n.parse().expect("valid net")));
    let rules = [
        Rule::Static {
            qualifier: Qualifier::Fail,
            v4: set4(&["192.0.2.66/32"]),
            v6: Ip6Set::new(),
        },
        Rule::Static {
            qualifier: Qualifier::Pass,
            v4: set4(&["192.0.2.0/24"]),
            v6: Ip6Set::from_nets(["2001:db8::/32".parse().expect("valid net")]),
        },
    ];
    let table = MacroTable::build(&rules, &Terminal::All(Qualifier::Fail), None);
    Arc::new(SpfAnswer {
        head: Arc::from([macro_table::head(&format!("_spf.d{MACRO_ZONE}.test"))]),
        parts: Vec::new(),
        macro_table: Some(Arc::new(table)),
    })
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("valid name")
}

/// The questions every query benchmark asks, with the answer each must get.
struct Case {
    id: &'static str,
    qname: String,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: usize,
}

fn cases() -> Vec<Case> {
    let zone = format!("_spf.d{ZONE}.test.");
    let macro_zone = format!("_spf.d{MACRO_ZONE}.test.");
    let case = |id, qname: String, qtype, rcode, answers| Case {
        id,
        qname,
        qtype,
        rcode,
        answers,
    };
    vec![
        case(
            "spf_apex_hit",
            zone.clone(),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "dkim_2048_hit",
            format!("s1._domainkey.{zone}"),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "dmarc_hit",
            format!("_dmarc.{zone}"),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "nxdomain",
            format!("nope.{zone}"),
            RecordType::TXT,
            ResponseCode::NXDomain,
            0,
        ),
        case("nodata", zone.clone(), RecordType::AAAA, ResponseCode::NoError, 0),
        case(
            "macro_v4_pass",
            format!("5.2.0.192.in-addr.{macro_zone}"),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "macro_v4_fail",
            format!("66.2.0.192.in-addr.{macro_zone}"),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "macro_v6_pass",
            format!("{}.ip6.{macro_zone}", nibbles("2001:db8::5")),
            RecordType::TXT,
            ResponseCode::NoError,
            1,
        ),
        case(
            "refused",
            "mail.example.com.".into(),
            RecordType::TXT,
            ResponseCode::Refused,
            0,
        ),
    ]
}

/// An IPv6 address as `%{ir}` spells it: 32 nibbles, least significant first.
fn nibbles(ip: &str) -> String {
    let bits = u128::from(ip.parse::<std::net::Ipv6Addr>().expect("valid address"));
    let digits: Vec<String> = (0..32)
        .map(|i| format!("{:x}", (bits >> (4 * i)) & 0xf))
        .collect();
    digits.join(".")
}

/// `dns::answer::answer`: the zone search, the node lookup and the record copies.
fn bench_answer(c: &mut Criterion) {
    let snapshot = build(&parse_policies(POLICIES), &mut SerialBook::default());
    let mut group = c.benchmark_group("answer");
    for case in cases() {
        let qname = name(&case.qname);
        let a = answer(&snapshot, &qname, case.qtype, DNSClass::IN, false);
        assert_eq!(
            (a.rcode, a.answers.len()),
            (case.rcode, case.answers),
            "{}",
            case.id
        );
        group.bench_function(case.id, |b| {
            b.iter(|| answer(&snapshot, black_box(&qname), case.qtype, DNSClass::IN, false))
        });
    }
    group.finish();
}

/// The whole per-query CPU of a UDP query short of the socket calls, as a UDP worker
/// spends it: one snapshot load, then the fast path (parse in place, answer from the
/// compiled snapshot's ready-made bytes).
fn bench_udp_fast(c: &mut Criterion) {
    let cell = ArcSwap::from_pointee(build(&parse_policies(POLICIES), &mut SerialBook::default()));
    let mut group = c.benchmark_group("udp_fast");
    // Reported as queries per second of one core.
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    for case in cases() {
        let raw = query_bytes(&case.qname, case.qtype);
        assert_eq!(
            wire::respond(&cell.load(), &raw, &mut out),
            Outcome::Answered,
            "{}",
            case.id
        );
        check_response(&out, &case, "fast path");
        group.bench_function(case.id, |b| {
            b.iter(|| wire::respond(&cell.load(), black_box(&raw), &mut out))
        });
    }
    group.finish();
}

/// The fast path followed by the response rate limiter, below the limit (what every UDP
/// answer pays with `[server.rrl]` on, the default): the same cases as `udp_fast`, the
/// sources spread over 4,096 /24s so the buckets touched do not all sit in one cache
/// line, the clock read once per 32 queries as a worker reads it once per batch.
fn bench_udp_fast_rrl(c: &mut Criterion) {
    let cell = ArcSwap::from_pointee(build(&parse_policies(POLICIES), &mut SerialBook::default()));
    let config = RrlConfig {
        responses_per_second: 1_000_000,
        ..RrlConfig::default()
    };
    let mut limiter = Limiter::new(Arc::new(config), Arc::new(RrlCounters::default()));
    let mut group = c.benchmark_group("udp_fast_rrl");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    for case in cases() {
        let raw = query_bytes(&case.qname, case.qtype);
        let mut n: u32 = 0;
        group.bench_function(case.id, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                if n.is_multiple_of(32) {
                    limiter.tick();
                }
                wire::respond(&cell.load(), black_box(&raw), &mut out);
                let src = IpAddr::from(Ipv4Addr::from(0x0a00_0001 | ((n % 4096) << 8)));
                let verdict = limiter.check(src, &out);
                assert_eq!(verdict, Verdict::Send);
            })
        });
    }
    group.finish();
}

/// The fast path followed by the metrics' query counting (each UDP worker counts into
/// its own block): what every UDP answer pays with or without an admin server.
fn bench_udp_fast_counted(c: &mut Criterion) {
    let cell = ArcSwap::from_pointee(build(&parse_policies(POLICIES), &mut SerialBook::default()));
    let stats = QueryStats::default();
    let block = stats.block();
    let mut group = c.benchmark_group("udp_fast_counted");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    for case in cases() {
        let raw = query_bytes(&case.qname, case.qtype);
        group.bench_function(case.id, |b| {
            b.iter(|| {
                wire::respond(&cell.load(), black_box(&raw), &mut out);
                block.count_own(Proto::Udp, &raw, &out);
            })
        });
    }
    group.finish();
    assert!(stats.sum().responses.iter().any(|(_, n)| *n > 0), "counted");
}

/// The general path (hickory's parser and encoder around `dns::answer`), which answers
/// every TCP query and the UDP queries the fast path passes on.
fn bench_general(c: &mut Criterion) {
    let snapshot = build(&parse_policies(POLICIES), &mut SerialBook::default());
    let src: SocketAddr = "192.0.2.1:53000".parse().expect("valid address");
    let mut group = c.benchmark_group("general_tcp");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        let raw = query_bytes(&case.qname, case.qtype);
        let response = respond_general(&snapshot, &raw, src, Protocol::Tcp).expect("a response");
        check_response(&response, &case, "general path");
        group.bench_function(case.id, |b| {
            b.iter(|| respond_general(&snapshot, black_box(&raw), src, Protocol::Tcp))
        });
    }
    group.finish();
}

/// Decodes a response and checks its code and answer count.
fn check_response(bytes: &[u8], case: &Case, path: &str) {
    let response = Message::from_vec(bytes).expect("a valid message");
    let got = (
        response.metadata.response_code,
        response.answers.len(),
        response.metadata.truncation,
    );
    assert_eq!(
        got,
        (case.rcode, case.answers, false),
        "{} on the {path}",
        case.id
    );
}

/// A query as dnsperf and resolvers send it: one question, EDNS with a 1232 payload.
fn query_bytes(qname: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(4242, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name(qname), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    msg.to_vec().expect("encodable query")
}

/// `policy::parse` of one policy file (TOML, SPF grammar, DMARC, DKIM key checks): what a
/// reload pays per changed file.
fn bench_parse(c: &mut Criterion) {
    let key = pem_body(RSA2048_PEM);
    let src = SourceFile::new("policies/d1.toml", policy_text(1, &key));
    let mut group = c.benchmark_group("policy");
    group.bench_function("parse", |b| b.iter(|| policy::parse(black_box(&src)).is_ok()));
    group.finish();
}

/// The snapshot build from parsed policies (names claimed once, zone content, serials),
/// with a serial book that already knows every zone, as on a reload.
fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build");
    // One build takes milliseconds: the same iteration count in every sample keeps the
    // group within seconds.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for count in [1_000, 10_000] {
        let policies = parse_policies(count);
        let mut book = SerialBook::default();
        assert_eq!(build(&policies, &mut book).zone_count(), count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::from_parameter(count), &policies, |b, policies| {
            b.iter_batched(
                || book.clone(),
                |mut book| build(policies, &mut book),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_answer, bench_udp_fast, bench_udp_fast_rrl, bench_udp_fast_counted, bench_general, bench_parse, bench_build
}
criterion_main!(benches);
