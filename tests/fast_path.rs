//! The UDP fast path against the general path: for every kind of query, the bytes the
//! fast path writes decode to exactly the message hickory's encoder gives for the same
//! snapshot (header, question, sections, OPT), or the fast path hands the query over.

mod common;

use std::sync::Arc;

use common::key_path;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use spfd::diag::SourceFile;
use spfd::dns::handler::respond_general;
use spfd::dns::wire::{self, Outcome};
use spfd::flatten::ipset::{Ip4Set, Ip6Set};
use spfd::flatten::{Rule, Terminal};
use spfd::snapshot::serials::SerialBook;
use spfd::snapshot::{Builder, MacroTable, ServerIdentity, Snapshot, SpfAnswer};
use spfd::spf::Qualifier;

fn snapshot() -> Snapshot {
    let policies = [
        format!(
            "domain = \"example.test\"\nttl = 600\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n\
             [dmarc]\np = \"reject\"\nrua = [\"mailto:d@example.test\"]\n[dkim.s4096]\nkey_file = \"{}\"\n",
            key_path("rsa4096.pub.pem").display()
        ),
        format!(
            "domain = \"big.test\"\nzone = \"big.test\"\n[spf]\nrecord = \"v=spf1 {} -all\"\nmode = \"passthrough\"\n",
            (0..90)
                .map(|i| format!("ip4:198.51.{}.{}", i / 8, i))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "domain = \"m.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"macro\"\n".to_string(),
    ];
    let mut builder = Builder::new();
    for (i, text) in policies.iter().enumerate() {
        let policy = spfd::policy::parse(&SourceFile::new(format!("/p/{i}.toml"), text.clone()))
            .unwrap()
            .policy;
        let answer = (policy.domain.to_string() == "m.test.").then(|| Arc::new(macro_answer()));
        builder.add(Arc::new(policy), answer).unwrap();
    }
    let servers = ServerIdentity {
        nameservers: vec![
            Name::from_ascii("ns1.spfd.test.").unwrap(),
            Name::from_ascii("ns2.spfd.test.").unwrap(),
        ],
        hostmaster: Name::from_ascii("hostmaster.spfd.test.").unwrap(),
    };
    builder.finish(1, &servers, &mut SerialBook::default(), 1_800_000_000)
}

fn macro_answer() -> SpfAnswer {
    let rules = vec![
        Rule::Static {
            qualifier: Qualifier::Fail,
            v4: Ip4Set::from_nets(["192.0.2.66/32".parse().unwrap()]),
            v6: Ip6Set::new(),
        },
        Rule::Dynamic {
            qualifier: Qualifier::Pass,
            text: "exists:%{i}._spf.m.test".into(),
            lookups: 1,
        },
        Rule::Static {
            qualifier: Qualifier::Pass,
            v4: Ip4Set::from_nets(["192.0.2.0/24".parse().unwrap()]),
            v6: Ip6Set::from_nets(["2001:db8::/32".parse().unwrap()]),
        },
    ];
    let table = MacroTable::build(&rules, &Terminal::All(Qualifier::SoftFail), None);
    SpfAnswer {
        head: Arc::from(["v=spf1 redirect=%{ir}.%{v}._spf.m.test".to_string()]),
        parts: vec![],
        macro_table: Some(Arc::new(table)),
    }
}

fn query(name: &str, rtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = name.len().is_multiple_of(2);
    msg.metadata.checking_disabled = name.len().is_multiple_of(3);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(p) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(p);
        edns.set_dnssec_ok(p == 4096);
        msg.set_edns(edns);
    }
    msg.to_vec().unwrap()
}

#[test]
fn fast_answers_equal_general_answers() {
    let snapshot = snapshot();
    let names = [
        "_spf.example.test.",
        "_SPF.Example.TEST.",
        "_dmarc._spf.example.test.",
        "s4096._domainkey._spf.example.test.",
        "_domainkey._spf.example.test.",
        "nothing._spf.example.test.",
        "deep.nothing._Spf.example.test.",
        "big.test.",
        "x.big.test.",
        "example.test.",
        "other.invalid.",
        "66.2.0.192.in-addr._spf.m.test.",
        "7.2.0.192.IN-ADDR._spf.m.test.",
        "7.2.0.193.in-addr._spf.m.test.",
        "1.2.3.in-addr._spf.m.test.",
        "in-addr._spf.m.test.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.m.test.",
        "x.ip7._spf.m.test.",
    ];
    let types = [
        RecordType::TXT,
        RecordType::A,
        RecordType::SOA,
        RecordType::NS,
        RecordType::MX,
    ];
    let payloads = [None, Some(512), Some(1232), Some(4096), Some(300)];
    let src = "127.0.0.1:5353".parse().unwrap();
    let mut compared = 0;
    for name in names {
        for rtype in types {
            for payload in payloads {
                let request = query(name, rtype, payload);
                let mut fast = Vec::new();
                assert_eq!(
                    wire::respond(&snapshot, &request, &mut fast),
                    Outcome::Answered,
                    "{name} {rtype}"
                );
                let general =
                    respond_general(&snapshot, &request, src, hickory_net::xfer::Protocol::Udp).unwrap();
                let (f, g) = (
                    Message::from_vec(&fast).unwrap(),
                    Message::from_vec(&general).unwrap(),
                );
                assert_eq!(f, g, "{name} {rtype} {payload:?}");
                // Byte for byte the question is the one asked.
                assert_eq!(
                    &fast[12..12 + request.len() - 12 - payload.map_or(0, |_| 11)],
                    &request[12..request.len() - payload.map_or(0, |_| 11)]
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, names.len() * types.len() * payloads.len());
}

#[test]
fn unusual_queries_go_to_the_general_path_and_responses_are_dropped() {
    let snapshot = snapshot();
    let mut out = Vec::new();
    let any = query("_spf.example.test.", RecordType::ANY, Some(1232));
    assert_eq!(wire::respond(&snapshot, &any, &mut out), Outcome::General);
    let mut chaos = Message::new(1, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("_spf.example.test.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    chaos.add_query(q);
    assert_eq!(
        wire::respond(&snapshot, &chaos.to_vec().unwrap(), &mut out),
        Outcome::General
    );
    let mut status = Message::new(1, MessageType::Query, OpCode::Status);
    status.add_query(Query::query(
        Name::from_ascii("_spf.example.test.").unwrap(),
        RecordType::TXT,
    ));
    assert_eq!(
        wire::respond(&snapshot, &status.to_vec().unwrap(), &mut out),
        Outcome::General
    );
    let mut edns1 = Message::from_vec(&query("_spf.example.test.", RecordType::TXT, Some(1232))).unwrap();
    edns1.edns.as_mut().unwrap().set_version(1);
    assert_eq!(
        wire::respond(&snapshot, &edns1.to_vec().unwrap(), &mut out),
        Outcome::General
    );
    let mut trailing = query("_spf.example.test.", RecordType::TXT, None);
    trailing.push(0);
    assert_eq!(wire::respond(&snapshot, &trailing, &mut out), Outcome::General);
    let mut response = query("_spf.example.test.", RecordType::TXT, None);
    response[2] |= 0x80;
    assert_eq!(wire::respond(&snapshot, &response, &mut out), Outcome::Drop);
    assert_eq!(wire::respond(&snapshot, &[0u8; 5], &mut out), Outcome::Drop);
}

/// hickory writes answer owners uncompressed; the general path must count them so, or a
/// 512-octet answer is cut inside a record instead of being sent with TC.
#[test]
fn general_path_truncates_cleanly_near_the_512_octet_limit() {
    let text = format!(
        "domain = \"a-much-longer-mail-domain-name.example\"\n[dkim.s2048]\nkey_file = \"{}\"\n",
        key_path("rsa2048.pub.pem").display()
    );
    let policy = spfd::policy::parse(&SourceFile::new("/p/long.toml", text))
        .unwrap()
        .policy;
    let mut builder = Builder::new();
    builder.add(Arc::new(policy), None).unwrap();
    let servers = ServerIdentity {
        nameservers: vec![Name::from_ascii("ns1.spfd.test.").unwrap()],
        hostmaster: Name::from_ascii("hostmaster.spfd.test.").unwrap(),
    };
    let snapshot = builder.finish(1, &servers, &mut SerialBook::default(), 1_800_000_000);
    let name = "s2048._domainkey._spf.a-much-longer-mail-domain-name.example.";
    let request = query(name, RecordType::TXT, None);
    let src = "127.0.0.1:5353".parse().unwrap();
    let general = respond_general(&snapshot, &request, src, hickory_net::xfer::Protocol::Udp).unwrap();
    assert!(general.len() <= 512, "{} octets", general.len());
    let msg = Message::from_vec(&general).expect("a well-formed message");
    assert!(msg.metadata.truncation || msg.answers.len() == 1, "{msg:?}");
    if msg.metadata.truncation {
        assert!(msg.answers.is_empty());
    }
    // Nothing follows the sections (no half-written record for a strict client to choke on).
    assert_eq!(msg.to_vec().unwrap().len(), general.len());
}
