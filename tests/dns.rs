//! DNS behaviour of the real server on 127.0.0.1 port 0, asked over UDP and TCP:
//! RFC 1034/1035 answers, RFC 2308 negative answers, RFC 6891 EDNS, RFC 8482 ANY,
//! truncation, case echo, and long TXT records split into strings.

mod common;

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

fn example_policy() -> String {
    format!(
        r#"domain = "example.test"
ttl = 600
[spf]
record = "v=spf1 ip4:192.0.2.0/24 include:_spf.provider.test ~all"
mode = "passthrough"
[dmarc]
p = "reject"
rua = ["mailto:dmarc@example.test"]
[dkim.s2048]
key_file = "{}"
[dkim.s4096]
key_file = "{}"
[dkim.ed]
k = "ed25519"
key_file = "{}"
"#,
        key_path("rsa2048.pub.pem").display(),
        key_path("rsa4096.pub.pem").display(),
        key_path("ed25519.pub.pem").display(),
    )
}

/// An SPF record of about 1.5 KB: more than a 1232-octet UDP answer can carry.
fn long_spf_record() -> String {
    let terms: Vec<String> = (0..80)
        .map(|i| format!("ip4:198.51.{}.{}", i / 8, i * 3))
        .collect();
    format!("v=spf1 {} -all", terms.join(" "))
}

fn big_policy() -> String {
    format!(
        "domain = \"big.test\"\nzone = \"big.test\"\n[spf]\nrecord = \"{}\"\nmode = \"passthrough\"\n",
        long_spf_record()
    )
}

async fn server() -> TestServer {
    TestServer::start(&[
        ("example.test.toml", &example_policy()),
        ("big.test.toml", &big_policy()),
    ])
    .await
}

fn pem_base64(name: &str) -> String {
    let pem = std::fs::read_to_string(key_path(name)).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test]
async fn apex_has_soa_and_ns_and_answers_are_authoritative() {
    let s = server().await;
    let soa = s.udp(&query("_spf.example.test.", RecordType::SOA)).await;
    assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
    assert!(soa.metadata.authoritative);
    assert!(!soa.metadata.recursion_available);
    let RData::SOA(data) = &soa.answers[0].data else {
        panic!("{soa:?}")
    };
    assert_eq!(data.mname, Name::from_ascii("ns1.spfd.test.").unwrap());
    assert_eq!(data.rname, Name::from_ascii("hostmaster.spfd.test.").unwrap());
    assert!(data.serial > 0);

    let ns = s.udp(&query("_spf.example.test.", RecordType::NS)).await;
    let mut names: Vec<String> = ns.answers.iter().map(|r| r.data.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["ns1.spfd.test.", "ns2.spfd.test."]);
    assert!(ns.metadata.authoritative);

    let txt = s.udp(&query("_spf.example.test.", RecordType::TXT)).await;
    assert_eq!(
        txt_joined(&txt),
        vec!["v=spf1 ip4:192.0.2.0/24 include:_spf.provider.test ~all"]
    );
    assert_eq!(txt.answers[0].ttl, 600);
    let dmarc = s.udp(&query("_dmarc._spf.example.test.", RecordType::TXT)).await;
    assert_eq!(
        txt_joined(&dmarc),
        vec!["v=DMARC1; p=reject; rua=mailto:dmarc@example.test"]
    );
}

#[tokio::test]
async fn nxdomain_carries_the_soa_with_the_negative_ttl() {
    let s = server().await;
    let r = s
        .udp(&query("nothing-here._spf.example.test.", RecordType::TXT))
        .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1);
    let soa = &r.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name, Name::from_ascii("_spf.example.test.").unwrap());
    let RData::SOA(data) = &soa.data else {
        unreachable!()
    };
    assert_eq!(soa.ttl, soa.ttl.min(data.minimum));
    assert_eq!(soa.ttl, 600);
}

#[tokio::test]
async fn existing_name_without_the_type_is_nodata() {
    let s = server().await;
    for (name, rtype) in [
        ("_spf.example.test.", RecordType::A),
        ("_dmarc._spf.example.test.", RecordType::AAAA),
        // An empty non-terminal: exists because a selector lives below it.
        ("_domainkey._spf.example.test.", RecordType::TXT),
    ] {
        let r = s.udp(&query(name, rtype)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name} {rtype}");
        assert!(r.metadata.authoritative);
        assert!(r.answers.is_empty(), "{name} {rtype}");
        assert_eq!(r.authorities.len(), 1);
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    }
}

#[tokio::test]
async fn names_outside_every_zone_are_refused_without_recursion() {
    let s = server().await;
    for name in ["example.test.", "www.example.org.", "test."] {
        let r = s.udp(&query(name, RecordType::A)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative);
        assert!(!r.metadata.recursion_available);
        assert!(r.answers.is_empty());
    }
}

#[tokio::test]
async fn malformed_queries_get_formerr() {
    let s = server().await;
    // No question at all.
    let empty = Message::new(7, MessageType::Query, OpCode::Query);
    assert_eq!(s.udp(&empty).await.metadata.response_code, ResponseCode::FormErr);
    // Two questions.
    let mut two = query("_spf.example.test.", RecordType::TXT);
    two.add_query(Query::query(
        Name::from_ascii("_dmarc._spf.example.test.").unwrap(),
        RecordType::TXT,
    ));
    assert_eq!(s.udp(&two).await.metadata.response_code, ResponseCode::FormErr);
    // A header that promises a question, then bytes that are not one.
    let mut bytes = query("_spf.example.test.", RecordType::TXT).to_vec().unwrap();
    bytes.truncate(12);
    bytes.extend_from_slice(&[0x3f, b'x', b'y']);
    let raw = udp_raw(s.addr, &bytes).await;
    let header = Message::from_vec(&raw[..12]).unwrap();
    assert_eq!(header.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(header.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
}

#[tokio::test]
async fn unsupported_opcodes_get_notimp() {
    let s = server().await;
    let mut msg = query("_spf.example.test.", RecordType::TXT);
    msg.metadata.op_code = OpCode::Status;
    assert_eq!(s.udp(&msg).await.metadata.response_code, ResponseCode::NotImp);
}

#[tokio::test]
async fn edns_is_answered_with_opt_and_a_bounded_payload() {
    let s = server().await;
    for (offered, expected) in [(4096u16, 1232u16), (1232, 1232), (800, 800), (300, 512)] {
        let mut msg = query_no_edns("_spf.example.test.", RecordType::TXT);
        let mut edns = Edns::new();
        edns.set_max_payload(offered);
        msg.set_edns(edns);
        let r = s.udp(&msg).await;
        let opt = r
            .edns
            .as_ref()
            .unwrap_or_else(|| panic!("no OPT for payload {offered}"));
        assert_eq!(opt.max_payload(), expected, "offered {offered}");
        assert_eq!(opt.version(), 0);
    }
    let plain = s.udp(&query_no_edns("_spf.example.test.", RecordType::TXT)).await;
    assert!(plain.edns.is_none(), "no OPT without EDNS in the query");

    let mut v1 = query("_spf.example.test.", RecordType::TXT);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let r = s.udp(&v1).await;
    // BADVERS and BADSIG share the code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.edns.is_some());
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let s = server().await;
    let q = query("big.test.", RecordType::TXT);
    let udp = s.udp(&q).await;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.is_empty());
    assert!(udp.edns.is_some(), "a truncated answer still carries OPT");

    let tcp = s.tcp(&q).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(txt_joined(&tcp), vec![long_spf_record()]);
    let strings = &txt_strings(&tcp)[0];
    assert!(strings.len() >= 6, "{strings:?}");
    for (i, part) in strings.iter().enumerate() {
        assert!(part.len() <= 255);
        if i + 1 < strings.len() {
            assert!(part.ends_with(' '), "SPF strings split between terms: {part:?}");
        }
    }
    // A receiver that wrongly joins the strings with a space still sees whole terms.
    let wrong = strings.join(" ");
    let terms: Vec<&str> = wrong.split_whitespace().collect();
    assert_eq!(terms, long_spf_record().split(' ').collect::<Vec<_>>());
}

#[tokio::test]
async fn dkim_keys_are_split_into_strings_and_readable_over_tcp() {
    let s = server().await;
    for (selector, file, strings) in [("s2048", "rsa2048.pub.pem", 2), ("s4096", "rsa4096.pub.pem", 3)] {
        let q = query(
            &format!("{selector}._domainkey._spf.example.test."),
            RecordType::TXT,
        );
        let r = s.tcp(&q).await;
        let parts = &txt_strings(&r)[0];
        assert_eq!(parts.len(), strings, "{selector}: {parts:?}");
        assert!(parts.iter().all(|p| p.len() <= 255));
        let joined = parts.concat();
        assert!(joined.starts_with("v=DKIM1; k=rsa; "), "{joined}");
        assert!(joined.ends_with(&format!("p={}", pem_base64(file))), "{joined}");
        // Over UDP with EDNS it fits 1232 octets, so no truncation either.
        let udp = s.udp(&q).await;
        assert!(!udp.metadata.truncation);
        assert_eq!(txt_joined(&udp), vec![joined]);
    }
    // Without EDNS the 4096-bit key does not fit 512 octets: TC, then TCP.
    let q = query_no_edns("s4096._domainkey._spf.example.test.", RecordType::TXT);
    let udp = s.udp(&q).await;
    assert!(udp.metadata.truncation);
    assert!(!s.tcp(&q).await.metadata.truncation);
}

#[tokio::test]
async fn ed25519_key_is_the_raw_32_bytes() {
    use base64::Engine;
    let s = server().await;
    let r = s
        .udp(&query("ed._domainkey._spf.example.test.", RecordType::TXT))
        .await;
    let text = txt_joined(&r).remove(0);
    assert!(text.starts_with("v=DKIM1; k=ed25519; "), "{text}");
    let p = text.rsplit_once("p=").unwrap().1;
    assert_eq!(p.len(), 44);
    let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
    // The SubjectPublicKeyInfo of an Ed25519 key ends with the raw key.
    let spki = base64::engine::general_purpose::STANDARD
        .decode(pem_base64("ed25519.pub.pem"))
        .unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(&spki[spki.len() - 32..], &raw[..]);
}

#[tokio::test]
async fn the_query_name_is_echoed_in_the_case_it_was_asked() {
    let s = server().await;
    let asked = "S2048._DomainKey._SPF.Example.TEST.";
    let r = s.udp(&query(asked, RecordType::TXT)).await;
    assert_eq!(r.queries[0].name().to_string(), asked);
    assert_eq!(r.answers[0].name.to_string(), asked);

    let nx = s.udp(&query("NoPe._Spf.EXAMPLE.test.", RecordType::TXT)).await;
    assert_eq!(nx.queries[0].name().to_string(), "NoPe._Spf.EXAMPLE.test.");
    assert_eq!(nx.authorities[0].name.to_string(), "_Spf.EXAMPLE.test.");
}

#[tokio::test]
async fn any_is_minimal_over_udp_and_full_over_tcp() {
    let s = server().await;
    let q = query("_spf.example.test.", RecordType::ANY);
    let udp = s.udp(&q).await;
    assert_eq!(udp.answers.len(), 1);
    let RData::HINFO(hinfo) = &udp.answers[0].data else {
        panic!("{udp:?}")
    };
    assert_eq!(hinfo.cpu.as_ref(), b"RFC8482");
    let tcp = s.tcp(&q).await;
    let mut types: Vec<RecordType> = tcp.answers.iter().map(|r| r.record_type()).collect();
    types.sort();
    assert_eq!(
        types,
        vec![RecordType::NS, RecordType::NS, RecordType::SOA, RecordType::TXT]
    );
}

#[tokio::test]
async fn zone_transfer_and_other_classes_are_refused() {
    let s = server().await;
    let axfr = s.tcp(&query("_spf.example.test.", RecordType::AXFR)).await;
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    let mut chaos = query("_spf.example.test.", RecordType::TXT);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(s.udp(&chaos).await.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = Setup::new(&[("big.test.toml", &big_policy())]);
    let config = config_text().replace(
        "state_dir = \"state\"\n",
        "state_dir = \"state\"\ntcp_connections = 2\ntcp_idle_timeout = \"1s\"\n",
    );
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    let q = query("big.test.", RecordType::TXT).to_vec().unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);

    // Two connections, each answering several queries in order (RFC 7766 pipelining).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&[framed.clone(), framed.clone()].concat())
            .await
            .unwrap();
        for _ in 0..2 {
            let mut len = [0u8; 2];
            c.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut body).await.unwrap();
            assert_eq!(
                txt_joined(&Message::from_vec(&body).unwrap()),
                vec![long_spf_record()]
            );
        }
        held.push(c);
    }
    // A third is closed at once.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(&framed).await;
    let mut buf = [0u8; 2];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // An idle connection is closed after the idle timeout.
    let idle = tokio::time::timeout(std::time::Duration::from_secs(5), held[0].read(&mut buf)).await;
    assert!(matches!(idle, Ok(Ok(0)) | Ok(Err(_))), "{idle:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn ipv6_listeners_answer_over_udp_and_tcp() {
    let setup = Setup::new(&[("big.test.toml", &big_policy())]);
    let config = config_text().replace("listen = [\"127.0.0.1:0\"]", "listen = [\"[::1]:0\"]");
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let addr = running.addrs[0];
    assert!(addr.is_ipv6());
    let q = query("big.test.", RecordType::SOA).to_vec().unwrap();
    let socket = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    socket.send_to(&q, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let udp = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(udp.answers[0].record_type(), RecordType::SOA);
    let tcp = Message::from_vec(&tcp_raw(addr, &query("big.test.", RecordType::TXT).to_vec().unwrap()).await)
        .unwrap();
    assert_eq!(txt_joined(&tcp), vec![long_spf_record()]);
    running.shutdown().await.unwrap();
}

/// `[server] workers` sets how many UDP workers (sockets) serve each address; one is
/// enough to answer.
#[tokio::test]
async fn one_worker_serves() {
    let setup = Setup::new(&[(
        "a.toml",
        "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
    )]);
    let text = config_text().replace("[server]\n", "[server]\nworkers = 1\n");
    std::fs::write(setup.config_path(), text).unwrap();
    let config = setup.config();
    assert_eq!(config.workers, 1);
    let running = spfd::server::start(&config).await.unwrap();
    let q = query("_spf.a.test.", RecordType::TXT);
    let r = Message::from_vec(&udp_raw(running.addrs[0], &q.to_vec().unwrap()).await).unwrap();
    assert_eq!(txt_joined(&r), ["v=spf1 -all"]);
    running.shutdown().await.unwrap();
}
