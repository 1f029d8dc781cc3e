//! The test world itself: the upstream DNS server over the zone files of tests/upstream/
//! answers like a real one, changes and fails on demand, and the viaspf oracle evaluates
//! its provider trees as RFC 7208 says.

#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/upstream.rs"]
mod upstream;

use std::net::IpAddr;
use std::path::Path;

use hickory_net::{DnsError, NetError};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use oracle::{Limits, Oracle, Prng, boundary_ips, net_boundaries, spf_networks};
use upstream::{Failure, Upstream};

async fn world() -> Upstream {
    Upstream::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream")).await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The TXT records at a name, each as its list of strings, with the answer TTL.
async fn txt(resolver: &TokioResolver, name: &str) -> (Vec<Vec<String>>, u32) {
    let lookup = resolver.txt_lookup(name).await.unwrap();
    let ttl = lookup.answers()[0].ttl;
    let records = lookup.answers().iter().filter_map(|r| match &r.data {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        _ => None,
    });
    (records.collect(), ttl)
}

#[tokio::test]
async fn serves_provider_records_with_their_strings_and_ttls() {
    let world = world().await;
    let resolver = oracle::resolver(world.addr);

    let (records, ttl) = txt(&resolver, "_spf.provider-a.test.").await;
    assert_eq!(ttl, 300);
    assert_eq!(
        records,
        vec![vec![
            "v=spf1 include:_netblocks.provider-a.test include:_netblocks2.provider-a.test \
             include:_netblocks3.provider-a.test ~all"
                .to_string()
        ]]
    );

    // A real provider's split: three strings, the first two cutting one term in half.
    let (records, ttl) = txt(&resolver, "_netblocks.provider-a.test.").await;
    assert_eq!(ttl, 120);
    assert_eq!(records.len(), 1);
    let strings = &records[0];
    assert_eq!(strings.len(), 3);
    assert!(strings[0].ends_with(" ip4:192.0.2."), "{:?}", strings[0]);
    assert!(strings[1].starts_with("128/25 "), "{:?}", strings[1]);
    assert!(strings.iter().all(|s| s.len() <= 255));
    assert!(strings.concat().len() > 512, "big enough to need EDNS or TCP");

    let mx = resolver.mx_lookup("customer.test.").await.unwrap();
    let mut hosts: Vec<(u16, String)> = mx
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_string())),
            _ => None,
        })
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        vec![
            (10, "mx1.customer.test.".to_string()),
            (20, "mx2.customer.test.".to_string())
        ]
    );

    let a = resolver.ipv4_lookup("mail.customer.test.").await.unwrap();
    assert_eq!(a.answers()[0].ttl, 60);
    assert_eq!(a.answers()[0].data, RData::A("203.0.113.20".parse().unwrap()));
}

#[tokio::test]
async fn negative_answers_are_nxdomain_or_nodata() {
    let world = world().await;
    let resolver = oracle::resolver(world.addr);
    let nx = resolver.txt_lookup("nothing.mail.test.").await.unwrap_err();
    assert!(nx.is_nx_domain(), "{nx}");
    let nodata = resolver.txt_lookup("mail.customer.test.").await.unwrap_err();
    assert!(nodata.is_no_records_found() && !nodata.is_nx_domain(), "{nodata}");
}

#[tokio::test]
async fn a_truncated_udp_answer_is_completed_over_tcp() {
    let world = world().await;
    let server = world.addr;
    // Without EDNS a UDP answer is capped at 512 octets: the ~600-octet record comes TC.
    let mut opts = oracle::resolver_opts();
    opts.edns0 = false;
    let resolver = oracle::resolver_with(server, opts);
    let (records, _) = txt(&resolver, "_netblocks.provider-a.test.").await;
    assert!(records[0].concat().ends_with("~all"));
    let protocols: Vec<_> = world
        .queries()
        .into_iter()
        .filter(|q| q.name == "_netblocks.provider-a.test." && q.qtype == RecordType::TXT)
        .map(|q| q.protocol.to_string())
        .collect();
    // (UDP may be retransmitted after 333 ms without an answer, hence no exact count.)
    assert_eq!(protocols.first().map(String::as_str), Some("udp"));
    assert_eq!(protocols.last().map(String::as_str), Some("tcp"));
}

#[tokio::test]
async fn resolver_config_names_the_port() {
    let world = world().await;
    let expected = format!(
        "[upstream]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout = \"1s\"\n",
        world.addr.port()
    );
    assert_eq!(world.resolver_config_toml(), expected);
}

/// (client, sender domain, RFC 7208 result) across every shape of the world.
const CASES: &[(&str, &str, &str)] = &[
    // provider-a: the split term, the third string, 3 levels down, IPv6, mapped IPv4.
    ("192.0.2.130", "_spf.provider-a.test", "pass"),
    ("192.0.2.127", "_spf.provider-a.test", "softfail"),
    ("10.3.255.255", "_spf.provider-a.test", "pass"),
    ("10.4.0.0", "_spf.provider-a.test", "softfail"),
    ("203.0.113.15", "_spf.provider-a.test", "pass"),
    ("203.0.113.16", "_spf.provider-a.test", "softfail"),
    ("2001:db8:a:ffff::1", "_spf.provider-a.test", "pass"),
    ("::ffff:192.0.2.130", "_spf.provider-a.test", "pass"),
    // provider-b: upper case, the shadowing -IP4, the IPv6 include with -all.
    ("198.51.100.65", "spf.provider-b.test", "pass"),
    ("198.51.100.66", "spf.provider-b.test", "fail"),
    ("198.51.100.127", "spf.provider-b.test", "pass"),
    ("198.51.100.128", "spf.provider-b.test", "softfail"),
    ("2001:db8:b::1", "spf.provider-b.test", "pass"),
    ("2001:db8:c::1", "spf.provider-b.test", "softfail"),
    // customer apex: a:/28, mx//64 (IPv4 hosts /32), the shadowed address stays out.
    ("203.0.113.16", "customer.test", "pass"),
    ("203.0.113.31", "customer.test", "pass"),
    ("203.0.113.32", "customer.test", "softfail"),
    ("2001:db8:cafe::20", "customer.test", "pass"),
    ("2001:db8:cafe::21", "customer.test", "softfail"),
    ("203.0.113.41", "customer.test", "pass"),
    ("203.0.113.42", "customer.test", "softfail"),
    ("2001:db8:cafe:2::ffff", "customer.test", "pass"),
    ("2001:db8:cafe:3::1", "customer.test", "softfail"),
    ("198.51.100.66", "customer.test", "softfail"),
    ("198.51.100.65", "customer.test", "pass"),
    // An ip4 after the include authorises what the include's -IP4 left out.
    ("198.51.100.66", "overlap.customer.test", "pass"),
    ("198.51.101.1", "overlap.customer.test", "fail"),
    // redirect= inside an include target.
    ("203.0.113.130", "eu.customer.test", "pass"),
    ("198.51.100.65", "eu.customer.test", "pass"),
    ("198.51.100.66", "eu.customer.test", "fail"),
    ("10.0.0.1", "eu.customer.test", "fail"),
    // exists:%{i}._spf.%{d}, IPv4 and IPv6.
    ("192.0.2.77", "macro.customer.test", "pass"),
    ("192.0.2.78", "macro.customer.test", "softfail"),
    ("2001:db8:c::77", "macro.customer.test", "pass"),
    // ptr: confirmed, claimed but not confirmed, confirmed.
    ("198.51.100.40", "legacy.customer.test", "pass"),
    ("198.51.100.41", "legacy.customer.test", "fail"),
    ("198.51.100.42", "legacy.customer.test", "pass"),
    // mx/29 at mail.test.
    ("192.0.2.15", "mail.test", "pass"),
    ("192.0.2.16", "mail.test", "fail"),
    ("198.51.100.143", "mail.test", "pass"),
    ("198.51.100.144", "mail.test", "fail"),
    // Broken records: a loop (one address decided before it), no SPF, two SPF records.
    ("203.0.113.200", "loop.customer.test", "pass"),
    ("203.0.113.201", "loop.customer.test", "permerror"),
    ("203.0.113.50", "broken.customer.test", "pass"),
    ("203.0.113.51", "broken.customer.test", "permerror"),
    ("203.0.113.51", "missing.customer.test", "permerror"),
    ("192.0.2.10", "two.mail.test", "permerror"),
    ("192.0.2.10", "nospf.mail.test", "none"),
    ("192.0.2.10", "nothing.mail.test", "none"),
    ("192.0.2.10", "_nothing.customer.test", "none"),
    // Limits: over 10 lookups, over 2 void lookups (unless decided early).
    ("192.0.2.77", "big.customer.test", "permerror"),
    ("198.51.100.42", "big.customer.test", "permerror"),
    ("203.0.113.16", "big.customer.test", "pass"),
    ("203.0.113.99", "voids.customer.test", "permerror"),
];

#[tokio::test]
async fn oracle_evaluates_the_world_as_rfc_7208_says() {
    let world = world().await;
    let oracle = Oracle::new(world.addr);
    let mut wrong = Vec::new();
    for &(client, domain, expected) in CASES {
        let got = oracle.check(ip(client), domain).await;
        if got != expected {
            wrong.push(format!("{client} at {domain}: {got}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn lifted_limits_evaluate_past_10_lookups_and_2_voids_but_still_end_loops() {
    let world = world().await;
    let oracle = Oracle::new(world.addr).with_limits(Limits::Lifted);
    assert_eq!(oracle.check(ip("192.0.2.77"), "big.customer.test").await, "pass");
    assert_eq!(
        oracle.check(ip("198.51.100.42"), "big.customer.test").await,
        "pass"
    );
    assert_eq!(
        oracle.check(ip("198.51.100.66"), "big.customer.test").await,
        "fail"
    );
    assert_eq!(
        oracle.check(ip("203.0.113.99"), "voids.customer.test").await,
        "pass"
    );
    assert_eq!(
        oracle.check(ip("203.0.113.98"), "voids.customer.test").await,
        "fail"
    );
    assert_eq!(
        oracle.check(ip("203.0.113.201"), "loop.customer.test").await,
        "permerror"
    );
}

#[tokio::test]
async fn oracle_asks_the_server_every_time() {
    let world = world().await;
    let oracle = Oracle::new(world.addr);
    // Both checks on one evaluation thread, through the same resolvers.
    let client = ip("192.0.2.130");
    let results = oracle.check_all(&[client, client], "_spf.provider-a.test").await;
    assert_eq!(
        results,
        vec![(client, "pass".to_string()), (client, "pass".to_string())]
    );
    // At least one query per check (a slow UDP answer may be asked twice): no cache.
    assert!(world.query_count("_netblocks.provider-a.test", RecordType::TXT) >= 2);
}

/// Provider-a has no `-` terms and only `~all`: an address passes exactly when one of its
/// networks holds it. Checked at every boundary of every network in its tree.
#[tokio::test]
async fn provider_a_passes_exactly_its_networks_at_every_boundary() {
    let world = world().await;
    let records: Vec<String> = world
        .spf_records()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".provider-a.test."))
        .map(|(_, text)| text)
        .collect();
    assert_eq!(records.len(), 5);
    let nets = spf_networks(&records);
    let oracle = Oracle::new(world.addr);
    let mut wrong = Vec::new();
    for client in boundary_ips(&records) {
        let expected = if nets.iter().any(|n| n.contains(&client)) {
            "pass"
        } else {
            "softfail"
        };
        let got = oracle.check(client, "_spf.provider-a.test").await;
        if got != expected {
            wrong.push(format!("{client}: {got}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn a_provider_grows_and_shrinks_while_the_server_runs() {
    let world = world().await;
    let oracle = Oracle::new(world.addr);
    assert_eq!(
        oracle.check(ip("10.4.0.1"), "_spf.provider-a.test").await,
        "softfail"
    );
    assert_eq!(
        oracle.check(ip("172.16.64.1"), "_spf.provider-a.test").await,
        "pass"
    );

    let old = world.zone_text("provider-a.test");
    let new = old.replace(
        "\"v=spf1 ip4:172.16.38.0/23 ip4:172.16.64.0/20 ",
        "\"v=spf1 ip4:172.16.38.0/23 ip4:10.4.0.0/16 ",
    );
    assert_ne!(old, new);
    world.replace_zone("provider-a.test", &new).await;

    assert_eq!(oracle.check(ip("10.4.0.1"), "_spf.provider-a.test").await, "pass");
    assert_eq!(
        oracle.check(ip("172.16.64.1"), "_spf.provider-a.test").await,
        "softfail"
    );
    let resolver = oracle::resolver(world.addr);
    let (records, ttl) = txt(&resolver, "_netblocks3.provider-a.test.").await;
    assert_eq!(ttl, 60);
    assert!(records[0][0].contains("ip4:10.4.0.0/16"));

    // A zone that did not exist before can be added, and removed again (then REFUSED).
    world
        .replace_zone(
            "new.test",
            "@ 60 IN SOA ns.new.test. h.new.test. 1 60 60 60 60\n@ 60 IN TXT \"v=spf1 -all\"\n",
        )
        .await;
    assert_eq!(oracle.check(ip("192.0.2.1"), "new.test").await, "fail");
    world.remove_zone("new.test").await;
    assert_eq!(oracle.check(ip("192.0.2.1"), "new.test").await, "temperror");
}

#[tokio::test]
async fn a_name_that_times_out_is_temperror_and_recovers() {
    let world = world().await;
    let oracle = Oracle::new(world.addr);
    world.set_failure("_netblocks3.provider-a.test", Failure::Timeout);
    // Decided before the failing include is reached: unaffected.
    assert_eq!(
        oracle.check(ip("192.0.2.1"), "_spf.provider-a.test").await,
        "pass"
    );
    assert_eq!(
        oracle.check(ip("172.16.64.1"), "_spf.provider-a.test").await,
        "temperror"
    );
    let resolver = oracle::resolver(world.addr);
    let error = resolver
        .txt_lookup("_netblocks3.provider-a.test.")
        .await
        .unwrap_err();
    assert!(
        !error.is_no_records_found(),
        "a timeout is not an answer: {error}"
    );

    world.clear_failure("_netblocks3.provider-a.test");
    assert_eq!(
        oracle.check(ip("172.16.64.1"), "_spf.provider-a.test").await,
        "pass"
    );
}

#[tokio::test]
async fn a_whole_zone_or_one_record_type_can_servfail() {
    let world = world().await;
    let oracle = Oracle::new(world.addr);
    world.set_failure("provider-b.test", Failure::ServFail);
    assert_eq!(
        oracle.check(ip("198.51.100.65"), "customer.test").await,
        "temperror"
    );
    assert_eq!(oracle.check(ip("203.0.113.16"), "customer.test").await, "pass");
    let resolver = oracle::resolver(world.addr);
    let error = resolver.txt_lookup("_ip6.provider-b.test.").await.unwrap_err();
    assert!(
        matches!(
            error,
            NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
        ),
        "{error}"
    );
    world.clear_failures();

    // Only the A query of mail.customer.test fails; its AAAA still answers.
    world.set_failure_for("mail.customer.test", RecordType::A, Failure::ServFail);
    assert_eq!(
        oracle.check(ip("203.0.113.16"), "customer.test").await,
        "temperror"
    );
    assert_eq!(
        oracle.check(ip("2001:db8:cafe::20"), "customer.test").await,
        "pass"
    );
}

#[tokio::test]
async fn routes_send_each_name_to_the_server_of_its_longest_suffix() {
    let world = world().await;
    // A second server that serves only a different customer.test (as spfd would, with a
    // flattened record), without the host names the record refers to.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customer.test.zone"),
        "$ORIGIN customer.test.\n@ 60 IN SOA ns1 h 1 60 60 60 60\n\
         @ 60 IN TXT \"v=spf1 a:mail.customer.test include:_spf.provider-a.test -all\"\n",
    )
    .unwrap();
    let other = Upstream::start(dir.path()).await;
    let oracle = Oracle::routed(&[
        ("customer.test", other.addr),
        ("mail.customer.test", world.addr),
        ("", world.addr),
    ]);
    assert_eq!(oracle.check(ip("203.0.113.20"), "customer.test").await, "pass");
    assert_eq!(oracle.check(ip("203.0.113.21"), "customer.test").await, "fail");
    assert_eq!(oracle.check(ip("10.3.0.1"), "customer.test").await, "pass");
    assert_eq!(other.query_count("customer.test", RecordType::TXT), 3);
    assert_eq!(other.query_count("mail.customer.test", RecordType::A), 0);
}

#[test]
fn boundary_ips_surround_every_network() {
    let records = [
        "v=spf1 -IP4:198.51.100.66 ip4:192.0.2.128/25 a:mail.test/24",
        "v=spf1 Ip6:2001:db8::/127 ~all",
    ];
    let expected: Vec<IpAddr> = [
        "192.0.2.127",
        "192.0.2.128",
        "192.0.2.255",
        "192.0.3.0",
        "198.51.100.65",
        "198.51.100.66",
        "198.51.100.67",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db8::",
        "2001:db8::1",
        "2001:db8::2",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    assert_eq!(boundary_ips(&records), expected);
    let edge: IpNet = "0.0.0.0/0".parse().unwrap();
    assert_eq!(net_boundaries(&edge), vec![ip("0.0.0.0"), ip("255.255.255.255")]);
}

#[test]
fn prng_is_deterministic_and_stays_inside_networks() {
    let (mut a, mut b) = (Prng::new(7), Prng::new(7));
    let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
    assert_eq!(first, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
    assert_ne!(Prng::new(8).next_u64(), first[0]);

    let nets: Vec<IpNet> = ["192.0.2.128/25", "2001:db8:a::/48"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let mut rng = Prng::new(42);
    for net in &nets {
        assert!((0..1000).all(|_| net.contains(&rng.ip_in(net))));
    }
    let near = rng.ips_near(&nets, 2000);
    let inside = near
        .iter()
        .filter(|ip| nets.iter().any(|n| n.contains(*ip)))
        .count();
    assert!(inside > 200 && inside < 1900, "{inside} of 2000 inside");
    assert!(near.iter().any(|ip| ip.is_ipv4()) && near.iter().any(|ip| ip.is_ipv6()));
}
