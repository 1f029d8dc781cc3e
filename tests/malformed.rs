//! Malformed queries against the real server, over UDP (the fast path first) and TCP
//! (the general path): compression pointers in the question, EDNS options that run past
//! their record, unknown opcodes with every flag set.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};

const POLICY: &str =
    "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n";

async fn server() -> TestServer {
    TestServer::start(&[("example.test.toml", POLICY)]).await
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn rcode(response: &[u8]) -> u8 {
    response[3] & 0x0f
}

/// The wire form of `_spf.example.test.`.
fn qname() -> Vec<u8> {
    let mut name = Vec::new();
    for label in ["_spf", "example", "test"] {
        name.push(label.len() as u8);
        name.extend_from_slice(label.as_bytes());
    }
    name.push(0);
    name
}

/// A TXT query for `_spf.example.test.` with one OPT whose rdata is `rdata`.
fn query_with_opt_rdata(rdata: &[u8]) -> Vec<u8> {
    let mut q = hex("abcd00000001000000000001");
    q.extend_from_slice(&qname());
    q.extend_from_slice(&[0, 16, 0, 1]);
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    q.extend_from_slice(rdata);
    q
}

/// A question name that is a pointer into the header was echoed
/// as the same bytes, which in the response point at other header bytes.
#[tokio::test]
async fn compression_pointer_in_the_question_is_formerr_not_echoed() {
    let s = server().await;
    for request in [
        hex("010200000001000000000000c00200100001"),
        hex("010200000001000000000000c00c00100001"),
        [
            hex("010200000001000000000000"),
            b"\x04_spf\xc0\x02\x00\x10\x00\x01".to_vec(),
        ]
        .concat(),
    ] {
        for response in [udp_raw(s.addr, &request).await, tcp_raw(s.addr, &request).await] {
            assert_eq!(rcode(&response), ResponseCode::FormErr.low(), "{response:02x?}");
            assert_eq!(&response[..2], &request[..2]);
            let msg = Message::from_vec(&response).expect("a well-formed response");
            assert!(msg.queries.is_empty(), "no question echoed: {msg:?}");
        }
    }
}

/// An option whose length (200) runs past the OPT's rdata (12) was
/// answered NOERROR over UDP (the fast path) and FORMERR over TCP.
#[tokio::test]
async fn option_running_past_the_opt_is_formerr_on_both_transports() {
    let s = server().await;
    let mut rdata = vec![0, 10, 0, 200];
    rdata.extend_from_slice(&[7u8; 8]);
    let bad = [
        query_with_opt_rdata(&rdata),
        // An option header cut short, and an option shorter than its length says.
        query_with_opt_rdata(&[0, 10]),
        query_with_opt_rdata(&[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]),
    ];
    for request in bad {
        let udp = udp_raw(s.addr, &request).await;
        let tcp = tcp_raw(s.addr, &request).await;
        assert_eq!(rcode(&udp), ResponseCode::FormErr.low(), "udp {udp:02x?}");
        assert_eq!(rcode(&tcp), ResponseCode::FormErr.low(), "tcp {tcp:02x?}");
    }
    // A well-formed cookie option is still answered, on the fast path too.
    let cookie = query_with_opt_rdata(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    for response in [udp_raw(s.addr, &cookie).await, tcp_raw(s.addr, &cookie).await] {
        let msg = Message::from_vec(&response).unwrap();
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert_eq!(txt_joined(&msg), vec!["v=spf1 ip4:192.0.2.0/24 -all"]);
    }
}

/// ISC genreport, full mode: RD and CD are defined for QUERY only,
/// so NOTIMP to another opcode must not echo them.
#[tokio::test]
async fn notimp_does_not_echo_rd_or_cd() {
    let s = server().await;
    // Opcode 15, QR=0 and every other flag set: AA TC RD, RA Z AD CD.
    let mut request = hex("42427ff00001000000000000");
    request.extend_from_slice(&qname());
    request.extend_from_slice(&[0, 16, 0, 1]);
    for response in [udp_raw(s.addr, &request).await, tcp_raw(s.addr, &request).await] {
        assert_eq!(rcode(&response), ResponseCode::NotImp.low(), "{response:02x?}");
        assert_eq!((response[2] >> 3) & 0x0f, 15, "the opcode is echoed");
        assert_eq!(response[2] & 0x01, 0, "RD: {response:02x?}");
        assert_eq!(response[3] & 0x10, 0, "CD: {response:02x?}");
        assert_eq!(response[2] & 0x80, 0x80, "QR");
    }
}

/// Found by fuzzing (tests/fuzz, udp_answer): ten questions echoed in a FORMERR do not
/// fit 512 octets, and UDP stayed silent where TCP said FORMERR.
#[tokio::test]
async fn formerr_too_large_to_echo_is_sent_without_its_questions() {
    let s = server().await;
    let mut request = hex("0aff0000000a00000000000000");
    request.truncate(12);
    for _ in 0..10 {
        request.push(62);
        request.extend_from_slice(&[b'x'; 62]);
        request.extend_from_slice(&[0, 0, 16, 0, 1]);
    }
    let udp = udp_raw(s.addr, &request).await;
    assert_eq!(rcode(&udp), ResponseCode::FormErr.low(), "{udp:02x?}");
    assert!(udp.len() <= 512);
    assert_eq!(
        rcode(&tcp_raw(s.addr, &request).await),
        ResponseCode::FormErr.low()
    );
}
