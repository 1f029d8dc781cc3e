//! Macro mode end to end: spfd publishes `v=spf1 redirect=%{ir}.%{v}.<zone>` and answers
//! every per-address name; an SPF evaluator that is not spfd's own (viaspf) compares the
//! source record with the published one on boundary and random IPv4 and IPv6 addresses.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/stage.rs"]
mod stage;
#[path = "common/upstream.rs"]
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use stage::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_answers_give_every_address_the_source_result() {
    let stage = Stage::new("macro").await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    for d in DOMAINS {
        let head = tcp_query(addr, &format!("_spf.{d}.")).await;
        assert_eq!(head, [format!("v=spf1 redirect=%{{ir}}.%{{v}}._spf.{d}")]);
    }
    // A static answer costs the receiver nothing more: 2 lookups for the whole check.
    // An authorised address is named, never `+all` (which rspamd ignores).
    let answer = tcp_query(addr, "5.113.0.203.in-addr._spf.customer.test.").await;
    assert_eq!(answer, ["v=spf1 ip4:203.0.113.5 -all"]);
    let answer = tcp_query(addr, "66.100.51.198.in-addr._spf.customer.test.").await;
    assert_eq!(
        answer,
        ["v=spf1 ~all"],
        "shadowed inside provider-b, so the domain's ~all decides"
    );
    assert_equivalent(&stage, addr).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_under_the_macro_suffix_answers_and_none_is_nxdomain() {
    let stage = Stage::new("macro").await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let s = |name: &str| query(name, RecordType::TXT);
    let nibbles = |n: usize| vec!["0"; n].join(".");
    let malformed = [
        "in-addr._spf.customer.test.".to_string(),
        "ip6._spf.customer.test.".to_string(),
        "2.0.192.in-addr._spf.customer.test.".to_string(),
        "1.5.2.0.192.in-addr._spf.customer.test.".to_string(),
        "256.2.0.192.in-addr._spf.customer.test.".to_string(),
        "05.2.0.192.in-addr._spf.customer.test.".to_string(),
        "x.2.0.192.in-addr._spf.customer.test.".to_string(),
        format!("{}.ip6._spf.customer.test.", nibbles(31)),
        format!("{}.ip6._spf.customer.test.", nibbles(33)),
        format!("g.{}.ip6._spf.customer.test.", nibbles(31)),
        format!("00.{}.ip6._spf.customer.test.", nibbles(31)),
    ];
    for name in &malformed {
        let r = udp(&running, &s(name)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.metadata.authoritative);
        assert_eq!(txt_joined(&r), ["v=spf1 ?all"], "{name} authorises nothing");
        // Other types: NODATA, never NXDOMAIN.
        let a = udp(&running, &query(name, RecordType::A)).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(a.answers.is_empty());
        assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    }

    // Mixed case: matched case-insensitively, echoed as asked, with the zone's TTL.
    let asked = "5.113.0.203.IN-ADDR._Spf.Customer.TEST.";
    let r = udp(&running, &s(asked)).await;
    assert_eq!(r.queries[0].name().to_string(), asked);
    assert_eq!(r.answers[0].name.to_string(), asked);
    assert_eq!(r.answers[0].ttl, 300);
    assert_eq!(txt_joined(&r), ["v=spf1 ip4:203.0.113.5 -all"]);
    let v6 = format!(
        "{}.IP6._spf.customer.test.",
        nibble_labels("2001:db8:a::1").to_uppercase()
    );
    assert_eq!(
        txt_joined(&udp(&running, &s(&v6)).await),
        ["v=spf1 ip6:2001:db8:a::1 -all"],
        "2001:db8:a::1 is provider-a's"
    );
    // An IPv4-mapped IPv6 name is answered as the IPv4 address, named in both forms
    // (receivers differ on which family they evaluate it as).
    let mapped = format!("{}.ip6._spf.customer.test.", nibble_labels("::ffff:203.0.113.5"));
    assert_eq!(
        txt_joined(&udp(&running, &s(&mapped)).await),
        ["v=spf1 ip4:203.0.113.5 ip6:::ffff:203.0.113.5 -all"],
        "::ffff:203.0.113.5"
    );
    // The fast path (UDP) and the general path (TCP) write the client in alike, the
    // client's term as a character-string of its own.
    for name in [asked.to_string(), v6.clone(), mapped.clone()] {
        let fast = udp(&running, &s(&name)).await;
        let general = hickory_proto::op::Message::from_vec(
            &tcp_raw(running.addrs[0], &s(&name).to_vec().unwrap()).await,
        )
        .unwrap();
        assert_eq!(txt_strings(&fast), txt_strings(&general), "{name}");
        assert_eq!(txt_strings(&fast)[0].len(), 3, "{name}: {:?}", txt_strings(&fast));
    }
    running.shutdown().await.unwrap();
}

/// `%{ir}` of an IPv6 client: its 32 nibbles, least significant first.
fn nibble_labels(ip: &str) -> String {
    let value = u128::from(ip.parse::<std::net::Ipv6Addr>().unwrap());
    (0..32)
        .map(|i| format!("{:x}", (value >> (4 * i)) & 0xf))
        .collect::<Vec<_>>()
        .join(".")
}

async fn udp(running: &spfd::server::Running, q: &hickory_proto::op::Message) -> hickory_proto::op::Message {
    hickory_proto::op::Message::from_vec(&udp_raw(running.addrs[0], &q.to_vec().unwrap()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_flatten_and_macro_is_one_swap() {
    let stage = Stage::new("flatten").await;
    let running = Arc::new(stage.start_spfd().await);
    wait_published(&running).await;
    let addr = running.addrs[0];
    let flat = tcp_query(addr, "_spf.customer.test.").await;
    let source = source_record(&stage.world, "customer.test");
    let macro_head = "v=spf1 redirect=%{ir}.%{v}._spf.customer.test".to_string();
    assert_ne!(flat, std::slice::from_ref(&source));

    // Ask continuously while the file changes mode: every answer is one of the two
    // published forms, never the record as written.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (stop, flat, macro_head) = (stop.clone(), flat.clone(), macro_head.clone());
        async move {
            let mut seen_macro = false;
            while !stop.load(Ordering::Relaxed) {
                let got = tcp_query(addr, "_spf.customer.test.").await;
                assert!(got == flat || got == [macro_head.clone()], "{got:?}");
                seen_macro |= got == [macro_head.clone()];
            }
            seen_macro
        }
    });
    stage
        .setup
        .write_policy("customer.test.toml", &policy("customer.test", &source, "macro"));
    for _ in 0..400 {
        if tcp_query(addr, "_spf.customer.test.").await == [macro_head.clone()] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap(), "the macro head was never served");
    // The chain's parts stay served for receivers that cached the old head.
    let entry = running.published.get("customer.test.").unwrap();
    let part = &entry.chain.as_ref().unwrap().parts[0].0;
    assert!(!tcp_query(addr, &format!("{part}.")).await.is_empty());
}
