//! The properties the fuzz targets check, one function each (a target is one call), so
//! that the main test suite can check the same properties on generated inputs
//! (tests/properties.rs includes this file): the whole UDP answer function against the
//! general path, the macro-mode name parser against std's address parser, the policy
//! loader, the SPF record parser and the flattener over a fake DNS. They share a snapshot with every kind of zone the
//! query path answers from (passthrough SPF, DMARC, a 2048-bit DKIM key, a record long
//! enough to be truncated, a macro-mode zone), built once per process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use hickory_net::xfer::Protocol;
use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use spfd::diag::SourceFile;
use spfd::dns::handler::respond_general;
use spfd::dns::wire::{self, Outcome};
use spfd::flatten::ipset::{Ip4Set, Ip6Set};
use spfd::flatten::{Rule, Terminal};
use spfd::snapshot::serials::SerialBook;
use spfd::snapshot::{Builder, MacroTable, ServerIdentity, Snapshot, SpfAnswer};
use spfd::spf::Qualifier;
use spfd::spf::record::Record;

const RSA2048_PEM: &str = include_str!("../../data/keys/rsa2048.pub.pem");

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn policies() -> Vec<String> {
    let long: Vec<String> = (0..90).map(|i| format!("ip4:198.51.{}.{}", i / 8, i)).collect();
    vec![
        format!(
            "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n\
             [dmarc]\np = \"reject\"\nrua = [\"mailto:d@example.test\"]\n[dkim.s2048]\np = \"{}\"\n",
            pem_body(RSA2048_PEM)
        ),
        format!(
            "domain = \"big.test\"\nzone = \"big.test\"\n[spf]\nrecord = \"v=spf1 {} -all\"\nmode = \"passthrough\"\n",
            long.join(" ")
        ),
        "domain = \"m.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"macro\"\n".to_string(),
    ]
}

/// The macro table the targets use: a failing /32 inside a passing /24, a live term,
/// an IPv6 range, softfail for the rest.
pub fn macro_table() -> &'static MacroTable {
    static TABLE: OnceLock<MacroTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rules = vec![
            Rule::Static {
                qualifier: Qualifier::Fail,
                v4: Ip4Set::from_nets(["192.0.2.66/32".parse().expect("a prefix")]),
                v6: Ip6Set::new(),
            },
            Rule::Dynamic {
                qualifier: Qualifier::Pass,
                text: "exists:%{i}._spf.m.test".into(),
                lookups: 1,
            },
            Rule::Static {
                qualifier: Qualifier::Pass,
                v4: Ip4Set::from_nets(["192.0.2.0/24".parse().expect("a prefix")]),
                v6: Ip6Set::from_nets(["2001:db8::/32".parse().expect("a prefix")]),
            },
        ];
        MacroTable::build(&rules, &Terminal::All(Qualifier::SoftFail), None)
    })
}

/// The snapshot, built on first use.
pub fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let mut builder = Builder::new();
        for (i, text) in policies().into_iter().enumerate() {
            let src = SourceFile::new(format!("/fuzz/{i}.toml"), text);
            let policy = spfd::policy::parse(&src).expect("a valid policy").policy;
            let answer = (policy.domain.to_string() == "m.test.").then(|| {
                Arc::new(SpfAnswer {
                    head: Arc::from(["v=spf1 redirect=%{ir}.%{v}._spf.m.test".to_string()]),
                    parts: vec![],
                    macro_table: Some(Arc::new(macro_table().clone())),
                })
            });
            builder.add(Arc::new(policy), answer).expect("no conflict");
        }
        let servers = ServerIdentity {
            nameservers: vec![Name::from_ascii("ns1.spfd.test.").expect("a name")],
            hostmaster: Name::from_ascii("hostmaster.spfd.test.").expect("a name"),
        };
        builder.finish(1, &servers, &mut SerialBook::default(), 1_800_000_000)
    })
}

/// Any datagram the fast path answers decodes to the message the general path gives
/// (header, question, sections, OPT); one it passes on does not make the general path
/// panic; one it drops (a response, a runt) gets no answer from the general path
/// either; UDP and TCP agree on the response code. One difference is allowed, found by
/// this property: an answer within a few dozen octets of the UDP limit that the fast
/// path fits (its owner names are pointers to the question) is truncated by the general
/// path, because hickory writes owner names whole and so its encoding would not fit.
pub fn udp_answer(data: &[u8]) {
    let snapshot = snapshot();
    let src = "192.0.2.1:5353".parse().expect("an address");
    let mut fast = Vec::new();
    let outcome = wire::respond(snapshot, data, &mut fast);
    let general = respond_general(snapshot, data, src, Protocol::Udp);
    let tcp = respond_general(snapshot, data, src, Protocol::Tcp);
    let udp = match outcome {
        Outcome::Answered => {
            let general = general.expect("the general path answers what the fast path answers");
            let mut f = Message::from_vec(&fast).expect("the fast path writes valid messages");
            let g = Message::from_vec(&general).expect("the general path writes valid messages");
            if g.metadata.truncation && !f.metadata.truncation {
                f.metadata.truncation = true;
                f.answers.clear();
                f.authorities.clear();
            }
            assert_eq!(f, g);
            Some(fast)
        }
        Outcome::Drop => {
            assert!(general.is_none() && tcp.is_none());
            None
        }
        Outcome::General => general,
    };
    let rcode = |r: &Option<Vec<u8>>| r.as_ref().map(|r| r[3] & 0x0f);
    assert_eq!(rcode(&udp), rcode(&tcp));
}

/// The labels left of `in-addr`/`ip6` (the input after its first octet, split on dots;
/// the first octet's low bit picks IPv6) get the answer of the address they spell, and
/// that address as the client to name, when they spell one as RFC 7208's `%{ir}`
/// writes it, and the "not an address" answer otherwise; the reference is std's
/// address parser.
pub fn macro_name(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let v6 = first & 1 == 1;
    let labels: Vec<&[u8]> = rest.split(|b| *b == b'.').collect();
    let table = macro_table();
    let got = table.answer_for_labels(v6, labels.iter().copied());
    let invalid = table.answer_for_labels(v6, [&b"x"[..]].into_iter());
    let client = reference(v6, &labels);
    let expected = spfd::snapshot::macro_table::Hit {
        index: client.map_or(invalid.index, |ip| table.answer_for(ip)),
        client,
    };
    assert_eq!(got, expected, "{labels:?}");
}

/// What the labels spell, by a route independent of spfd's parser.
fn reference(v6: bool, labels: &[&[u8]]) -> Option<IpAddr> {
    let text: Vec<&str> = labels
        .iter()
        .map(|l| std::str::from_utf8(l).ok())
        .collect::<Option<_>>()?;
    if v6 {
        if text.len() != 32 || text.iter().any(|l| l.len() != 1) {
            return None;
        }
        let hex: String = text.iter().rev().copied().collect();
        u128::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| !hex.starts_with('+'))
            .map(|v| IpAddr::V6(Ipv6Addr::from(v)))
    } else {
        let dotted: Vec<&str> = text.iter().rev().copied().collect();
        dotted
            .join(".")
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|_| text.len() == 4)
            .map(IpAddr::V4)
    }
}

/// Any text gives a policy or diagnostics, never a panic. Inputs naming a key file are
/// skipped, so a run never reads files chosen by the fuzzer.
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("key_file") {
        return;
    }
    match spfd::policy::parse(&SourceFile::new("/fuzz/policy.toml", text.to_string())) {
        Ok(loaded) => {
            let _ = loaded.policy.domain.to_string();
        }
        Err(diagnostics) => assert!(!diagnostics.is_empty()),
    }
}

/// Any text parses as an SPF record or is refused, never a panic; a record that parses
/// prints as text that parses back to the same record.
pub fn spf_record(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = Record::parse(text) {
        // Printing collapses runs of spaces (terms keep their offsets, so the records
        // themselves differ): the printed form is a fixed point.
        let printed = record.to_string();
        let again = Record::parse(&printed).expect("a printed record parses");
        assert_eq!(again.to_string(), printed, "{text:?}");
    }
}

/// Reads octets from the input, zeros past its end.
struct Octets<'a>(std::slice::Iter<'a, u8>);

impl Octets<'_> {
    fn next(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }
}

/// One term for a record, picked by the input: address ranges with every qualifier,
/// includes, `a` and `mx` with CIDR lengths, a live `exists`, `all`.
fn term(o: &mut Octets) -> String {
    let (x, y) = (o.next(), o.next());
    let qualifier = ["", "-", "~", "?"][usize::from(y >> 6)];
    match o.next() % 10 {
        0 => format!("{qualifier}ip4:10.{x}.0.0/16"),
        1 => format!("{qualifier}ip4:10.{x}.{y}.0/{}", 17 + y % 16),
        2 => format!("{qualifier}ip6:2001:db8:{x:x}::/{}", 33 + y % 40),
        3 => "include:a.test".to_string(),
        4 => "include:b.test".to_string(),
        5 => format!("{qualifier}a:host.test/{}", 20 + x % 13),
        6 => format!("{qualifier}mx:mail.test"),
        7 => format!("{qualifier}exists:%{{i}}.live.test"),
        8 => format!("{qualifier}ip4:10.{x}.{y}.{}", o.next()),
        _ => format!("{qualifier}all"),
    }
}

fn record(o: &mut Octets, redirect: Option<&str>) -> String {
    let terms: Vec<String> = (0..o.next() % 6).map(|_| term(o)).collect();
    let tail = redirect.map(|r| format!(" redirect={r}")).unwrap_or_default();
    format!("v=spf1 {}{tail}", terms.join(" "))
}

fn address(o: &mut Octets) -> IpAddr {
    if o.next().is_multiple_of(4) {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, u16::from(o.next()), 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, o.next(), o.next(), o.next()))
    }
}

/// The flattener over a fake DNS (true when it published a chain to compare): a
/// domain's record and two included ones built from the
/// input; when the flattener publishes a chain, every address the input names gets the
/// same SPF result from the published records (with RFC 7208's limits) as from the
/// source (limits lifted), or, where the published record fails (permerror: live terms
/// keep their void lookups), the source fails too under RFC 7208's limits.
pub fn flatten(data: &[u8]) -> bool {
    use spfd::flatten::{ExpandOptions, LastGood};
    use spfd::spf::{EvalOptions, MemoryDns, Query, SpfResult, check_host, check_record};
    let mut o = Octets(data.iter());
    let redirect = (o.next().is_multiple_of(4)).then_some("b.test");
    let source = record(&mut o, redirect);
    let mut dns = MemoryDns::new();
    dns.add_txt("a.test", &record(&mut o, None));
    dns.add_txt("b.test", &record(&mut o, None));
    dns.add_a("host.test", Ipv4Addr::new(10, o.next(), o.next(), 1));
    dns.add_mx("mail.test", "host.test");
    dns.add_a("1.0.0.10.live.test", Ipv4Addr::new(127, 0, 0, 2));
    let Ok(parsed) = Record::parse(&source) else {
        return false;
    };
    let zone = Name::from_ascii("_spf.example.test.").expect("a name");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let flattened = runtime.block_on(spfd::flatten::flatten(
        &dns,
        "example.test",
        &parsed,
        &zone,
        true,
        &mut LastGood::new(),
        &ExpandOptions::at(1_000_000),
    ));
    let Ok((_, chain)) = flattened else {
        return false;
    };
    let mut published = dns.clone();
    for (name, strings) in chain.records() {
        published.add_txt(name, &strings.concat());
    }
    published.add_txt("example.test", &format!("v=spf1 redirect={}", chain.zone));
    for _ in 0..8 {
        let query = Query::new(address(&mut o), "someone@example.test", "mail.example.org");
        let want = runtime.block_on(check_record(
            &dns,
            &parsed,
            "example.test",
            &query,
            &EvalOptions::without_limits(),
        ));
        let got = runtime.block_on(check_host(
            &published,
            "example.test",
            &query,
            &EvalOptions::default(),
        ));
        if got.result == SpfResult::PermError && got.result != want.result {
            // Live terms keep their void lookups (RFC 7208 4.6.4 allows two): allowed
            // only where the source itself fails under the RFC's limits.
            let limited = runtime.block_on(check_record(
                &dns,
                &parsed,
                "example.test",
                &query,
                &EvalOptions::default(),
            ));
            assert_eq!(
                limited.result,
                SpfResult::PermError,
                "{source} for {}: published {got}",
                query.client_ip
            );
            continue;
        }
        assert_eq!(
            got.result, want.result,
            "{source} for {}: published {got}, source {want}",
            query.client_ip
        );
    }
    true
}

/// Small bounds, so that the fuzzer explores shapes rather than sizes.
fn report_limits() -> spfd::reports::Limits {
    spfd::reports::Limits {
        max_xml: 1 << 20,
        max_input: 2 << 20,
        max_reports: 8,
        max_rows: 500,
        max_entries: 16,
        max_mail_parts: 64,
        max_mail: 4 << 20,
        max_time: std::time::Duration::from_secs(10),
    }
}

/// What every decoded input keeps to: at least one item and no more than the bounds
/// allow, names that cannot break a log line, rows and counts within their caps.
fn check_decoded(decoded: &[spfd::reports::decode::Decoded], limits: &spfd::reports::Limits) {
    use spfd::reports::model::{MAX_COUNT, MAX_RANGE};
    assert!(!decoded.is_empty() && decoded.len() <= limits.max_reports + 1);
    for d in decoded {
        assert!(!d.part.chars().any(char::is_control), "{:?}", d.part);
        if let Ok(r) = &d.result {
            assert!(r.rows.len() <= limits.max_rows);
            assert!(r.rows.iter().all(|row| row.count <= MAX_COUNT));
            assert!(r.begin <= r.end && r.end - r.begin <= MAX_RANGE);
        }
    }
}

/// Report mail decoding: any bytes after a header line are read as a mail, without a
/// panic, a stack overflow or more than the bounds.
pub fn report_mail(data: &[u8]) {
    let mut mail = b"MIME-Version: 1.0\r\n".to_vec();
    mail.extend_from_slice(data);
    let limits = report_limits();
    check_decoded(&spfd::reports::decode(&mail, &limits), &limits);
}

/// Zip decoding: any bytes after a zip signature, the same properties.
pub fn report_zip(data: &[u8]) {
    let zip = match data.starts_with(b"PK\x03\x04") {
        true => data.to_vec(),
        false => [&b"PK\x03\x04"[..], data].concat(),
    };
    let limits = report_limits();
    check_decoded(&spfd::reports::decode(&zip, &limits), &limits);
}
