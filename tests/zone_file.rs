//! Whole zones from zone files: spfd serves tests/data/zones/example.test.zone with its
//! own SPF and DMARC records on top, and NSD serves the same file (plus the same
//! managed records) on loopback; a sweep of names and types must get the same rcode,
//! AA bit and sections from both. Also: errors name file:line, managed names in the
//! file are refused, and the zone file hot-reloads (a bad edit keeps the served zone).

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

use common::{Setup, query, tcp_raw, udp_raw};
use peers::{Peer, ask};
use spfd::server::{self, Running};

const POLICY: &str = "domain = \"example.test\"\nzone = \"example.test\"\nzone_file = \"example.test.zone\"\n\
                      ttl = 300\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\nmode = \"passthrough\"\n\
                      [dmarc]\np = \"none\"\n";

fn zones_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zones")
}

/// A policy directory with the policy and the test zone files.
fn setup(policy: &str) -> Setup {
    let setup = Setup::new(&[]);
    for file in ["example.test.zone", "extra.zone"] {
        std::fs::copy(zones_dir().join(file), setup.policy_path(file)).unwrap();
    }
    setup.write_policy("example.test.toml", policy);
    setup
}

/// A record as comparable text: lower-case owner, TTL, type, data.
fn line(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        r.name.to_lowercase(),
        r.ttl,
        r.record_type(),
        r.data
    )
    .to_lowercase()
}

/// What must agree between two servers: rcode, AA, and each section as a set (the
/// additional section only when `additional`).
fn shape(m: &Message, additional: bool) -> String {
    let set = |records: &[Record]| records.iter().map(line).collect::<BTreeSet<_>>();
    let mut out = format!(
        "rcode={} aa={}\nanswer={:?}\nauthority={:?}",
        m.metadata.response_code,
        m.metadata.authoritative,
        set(&m.answers),
        set(&m.authorities),
    );
    if additional {
        out.push_str(&format!("\nadditional={:?}", set(&m.additionals)));
    }
    out
}

/// A TXT record as a zone-file line.
fn txt_line(r: &Record) -> String {
    let RData::TXT(txt) = &r.data else {
        panic!("not TXT: {r}")
    };
    let strings: Vec<String> = txt
        .txt_data
        .iter()
        .map(|s| {
            format!(
                "\"{}\"",
                String::from_utf8_lossy(s)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            )
        })
        .collect();
    format!("{} {} IN TXT {}\n", r.name, r.ttl, strings.join(" "))
}

const SWEEP_NAMES: &[&str] = &[
    "example.test",
    "EXAMPLE.test",
    "ns1.example.test",
    "ns2.example.test",
    "mail.example.test",
    "www.example.test",
    "WwW.Example.Test",
    "web.example.test",
    "host.example.test",
    "ext.example.test",
    "dangling.example.test",
    "nowhere.example.test",
    "loop1.example.test",
    "_sip._tcp.example.test",
    "_tcp.example.test",
    "_443._tcp.www.example.test",
    "svc.example.test",
    "ptr.example.test",
    "ent.example.test",
    "a.ent.example.test",
    "b.ent.example.test",
    "wild.example.test",
    "x.wild.example.test",
    "y.z.wild.example.test",
    "sub.wild.example.test",
    "a.sub.wild.example.test",
    "foo.cwild.example.test",
    "deleg.example.test",
    "ns1.deleg.example.test",
    "deep.deleg.example.test",
    "x.y.deleg.example.test",
    "sub.example.test",
    "x.sub.example.test",
    "y.deeper.sub.example.test",
    "deeper.sub.example.test",
    "after.example.test",
    "other._domainkey.example.test",
    "_domainkey.example.test",
    "_dmarc.example.test",
    "nonexistent.example.test",
];

const SWEEP_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::TLSA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::PTR,
    RecordType::DS,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_nsd_for_a_sweep_of_names_and_types() {
    let setup = setup(POLICY);
    let running: Running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    // NSD serves the same file plus the records spfd manages, as spfd publishes them.
    let mut text = std::fs::read_to_string(zones_dir().join("example.test.zone")).unwrap();
    text = text.replace(
        "$INCLUDE extra.zone",
        &format!("$INCLUDE {}/extra.zone", zones_dir().display()),
    );
    text.push_str("$ORIGIN example.test.\n");
    for name in ["example.test", "_dmarc.example.test"] {
        let m = ask(spfd, name, RecordType::TXT).await;
        let managed = m.answers.iter().filter(|r| {
            let RData::TXT(t) = &r.data else { return false };
            t.txt_data.first().is_some_and(|s| s.starts_with(b"v="))
        });
        let lines: Vec<String> = managed.map(txt_line).collect();
        assert_eq!(lines.len(), 1, "{name} TXT from spfd: {m}");
        text.push_str(&lines[0]);
    }
    let nsd = Peer::nsd("example.test", &text).await;
    let knot = Peer::knot("example.test", &text).await;

    let mut differences = Vec::new();
    let mut checked = 0;
    for name in SWEEP_NAMES {
        for rtype in SWEEP_TYPES {
            let ours = ask(spfd, name, *rtype).await;
            // Over UDP (the fast path answers plain RRsets) the same as over TCP.
            let udp = udp_raw(spfd, &query(name, *rtype).to_vec().unwrap()).await;
            let (a, b) = (shape(&Message::from_vec(&udp).unwrap(), true), shape(&ours, true));
            if a != b {
                differences.push(format!("{name} {rtype}\n spfd udp: {a}\n spfd tcp: {b}"));
            }
            for (peer, addr, additional) in [("nsd", nsd.addr, false), ("knot", knot.addr, true)] {
                let theirs = ask(addr, name, *rtype).await;
                checked += 1;
                let (a, b) = (shape(&ours, additional), shape(&theirs, additional));
                if a != b {
                    differences.push(format!("{name} {rtype}\n spfd: {a}\n {peer}: {b}"));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {checked} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The sweep saw every kind of answer (it would pass vacuously otherwise).
    let kinds = [
        ask(spfd, "deleg.example.test", RecordType::A).await,
        ask(spfd, "x.wild.example.test", RecordType::A).await,
        ask(spfd, "www.example.test", RecordType::A).await,
        ask(spfd, "nonexistent.example.test", RecordType::A).await,
    ];
    assert!(
        !kinds[0].metadata.authoritative
            && !kinds[0].authorities.is_empty()
            && !kinds[0].additionals.is_empty()
    );
    assert_eq!(kinds[1].answers.len(), 1);
    assert_eq!(kinds[2].answers.len(), 3, "www -> web -> host A");
    assert_eq!(kinds[3].metadata.response_code, ResponseCode::NXDomain);
    running.shutdown().await.unwrap();
}

/// The errors of a policy whose zone file is `zone` (and `extra.zone` is `extra`).
fn zone_errors(policy: &str, zone: &str, extra: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.test.zone"), zone).unwrap();
    std::fs::write(dir.path().join("extra.zone"), extra).unwrap();
    let path = dir.path().join("example.test.toml");
    std::fs::write(&path, policy).unwrap();
    let prefix = format!("{}/", dir.path().display());
    match spfd::policy::load(&path) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .iter()
            .filter(|d| d.severity == spfd::diag::Severity::Error)
            .map(|d| d.to_string().replace(&prefix, ""))
            .collect(),
    }
}

const HEAD: &str = "$TTL 300\n@ SOA ns1 host 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n";

#[test]
fn zone_file_errors_name_file_and_line() {
    // (zone file after HEAD (line 5 on), included file, file:line of the error, message part)
    let table: &[(&str, &str, &str, &str)] = &[
        ("www A 192.0.2.300\n", "", "example.test.zone:5:", "A record"),
        (
            "www BOGUS 1\n",
            "",
            "example.test.zone:5:",
            "unknown or unsupported record type",
        ),
        ("www 1x A 192.0.2.1\n", "", "example.test.zone:5:", "bad TTL"),
        ("www CH A 192.0.2.1\n", "", "example.test.zone:5:", "class CH"),
        (
            "\n\nmx MX ( 10\n  mail\n",
            "",
            "example.test.zone:7:",
            "'(' is never closed",
        ),
        ("t TXT \"open\n", "", "example.test.zone:5:", "closing"),
        (
            "www.example.net. A 192.0.2.1\n",
            "",
            "example.test.zone:5:",
            "outside the zone",
        ),
        (
            "www CNAME a\nwww A 192.0.2.2\n",
            "",
            "example.test.zone:5:",
            "a CNAME must be alone",
        ),
        (
            "www CNAME a\nwww CNAME b\n",
            "",
            "example.test.zone:6:",
            "a second CNAME",
        ),
        (
            "deleg NS ns.example.net.\nx.deleg TXT \"x\"\n",
            "",
            "example.test.zone:6:",
            "below the delegation",
        ),
        (
            "$GENERATE 1-3 h$ A 192.0.2.$\n",
            "",
            "example.test.zone:5:",
            "unknown directive",
        ),
        (
            "$INCLUDE extra.zone\n",
            "\n\nbad AAAA 192.0.2.1\n",
            "extra.zone:3:",
            "AAAA record",
        ),
        (
            "$INCLUDE missing.zone\n",
            "",
            "example.test.zone:5:",
            "cannot read zone file",
        ),
        (
            "@ TXT \"v=spf1 -all\"\n",
            "",
            "example.test.zone:5:",
            "SPF record (v=spf1) at the apex",
        ),
        (
            "_dmarc TXT \"v=DMARC1; p=reject\"\n",
            "",
            "example.test.zone:5:",
            "published by spfd",
        ),
        (
            "_report._dmarc CNAME x\n_dmarc CNAME elsewhere.example.net.\n",
            "",
            "example.test.zone:6:",
            "published by spfd",
        ),
        (
            "_1-0a1b2c3d TXT \"x\"\n",
            "",
            "example.test.zone:5:",
            "flattened SPF parts",
        ),
    ];
    for (body, extra, at, part) in table {
        let errors = zone_errors(POLICY, &format!("{HEAD}{body}"), extra);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(at) && e.contains(": error: ") && e.contains(part)),
            "{body:?}: want {at} ... {part}, got {errors:#?}"
        );
    }
    // The good file has no error, and a record before the first owner does.
    assert_eq!(zone_errors(POLICY, HEAD, ""), Vec::<String>::new());
    let errors = zone_errors(POLICY, &format!("  A 192.0.2.1\n{HEAD}"), "");
    assert!(
        errors[0].starts_with("example.test.zone:1:3: error:"),
        "{errors:?}"
    );
    // A zone file needs the zone to be the domain.
    let policy = POLICY.replace("zone = \"example.test\"", "zone = \"_spf.example.test\"");
    let errors = zone_errors(&policy, HEAD, "");
    assert!(
        errors[0].contains("zone_file serves the whole zone"),
        "{errors:?}"
    );
}

#[test]
fn spfd_check_reports_zone_file_errors() {
    let setup = setup(POLICY);
    std::fs::write(setup.policy_path("extra.zone"), "ok A 192.0.2.1\nbad MX mail\n").unwrap();
    let (out, ok) = spfd::cli::check(&setup.config_path());
    assert!(!ok, "{out}");
    assert!(out.contains("extra.zone:2:8: error: MX record"), "{out}");
    std::fs::write(setup.policy_path("extra.zone"), "ok A 192.0.2.1\n").unwrap();
    let (out, ok) = spfd::cli::check(&setup.config_path());
    assert!(ok, "{out}");
    // `spfd records`: the registrar's NS are those the zone file serves.
    let cell = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
        spfd::snapshot::Snapshot::default(),
    ));
    spfd::reload::Reloader::offline(&setup.config(), cell.clone()).reload();
    let records = spfd::cli::records(&setup.config(), &cell.load(), Some("example.test")).unwrap();
    assert!(
        records.contains("example.test.\t3600\tIN\tNS\tns1.example.test."),
        "{records}"
    );
    assert!(records.contains("IN\tNS\tns2.example.test."), "{records}");
    assert!(!records.contains("spfd.test"), "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_file_edits_are_served_and_bad_edits_keep_the_zone() {
    let setup = setup(POLICY);
    let running: Running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    let a = |m: &Message| m.answers.iter().map(|r| r.data.to_string()).collect::<Vec<_>>();
    assert_eq!(
        a(&ask(spfd, "x.sub.example.test", RecordType::A).await),
        ["192.0.2.111"]
    );
    let write = |text: &str| {
        let tmp = setup.policy_path(".extra.zone.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, setup.policy_path("extra.zone")).unwrap();
    };
    let until = |name: &'static str, want: &'static str| async move {
        for _ in 0..400 {
            let m = ask(spfd, name, RecordType::A).await;
            if m.answers.iter().any(|r| r.data.to_string() == want) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{name} never answered {want}");
    };
    // An edit of the included file is served.
    write("x A 192.0.2.222\nnew A 192.0.2.223\n");
    until("new.sub.example.test", "192.0.2.223").await;
    assert_eq!(
        a(&ask(spfd, "x.sub.example.test", RecordType::A).await),
        ["192.0.2.222"]
    );
    // Removed again: NXDOMAIN.
    write("x A 192.0.2.1\n");
    until("x.sub.example.test", "192.0.2.1").await;
    let gone = ask(spfd, "new.sub.example.test", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    running.shutdown().await.unwrap();
}

#[test]
fn a_bad_zone_file_edit_is_reported_and_the_served_zone_stays() {
    use spfd::reload::{Reloader, Scope};
    use std::sync::Arc;
    let setup = setup(POLICY);
    let cell = Arc::new(arc_swap::ArcSwap::from_pointee(
        spfd::snapshot::Snapshot::default(),
    ));
    let mut reloader = Reloader::offline(&setup.config(), cell.clone());
    let first = reloader.reload();
    assert!(
        first.swapped && first.errors().next().is_none(),
        "{:?}",
        first.diagnostics
    );
    let served = cell.load_full();
    // An event names the zone file only: the policy that reads it is read again.
    let zone = std::fs::canonicalize(setup.policy_path("extra.zone")).unwrap();
    std::fs::write(&zone, "x A 192.0.2.1\nbroken A not-an-address\n").unwrap();
    let report = reloader.reload_scope(Scope::Paths([zone.clone()].into()));
    let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
    assert!(!report.swapped);
    assert!(
        errors.len() == 1 && errors[0].contains("extra.zone:2:10: error: A record"),
        "{errors:?}"
    );
    assert!(
        Arc::ptr_eq(&served, &cell.load_full()),
        "the zone in service is kept"
    );
    // Fixed: a new zone with the new record.
    std::fs::write(&zone, "x A 192.0.2.1\nfixed A 192.0.2.2\n").unwrap();
    let report = reloader.reload_scope(Scope::Paths([zone].into()));
    assert!(report.swapped, "{:?}", report.diagnostics);
    // Unchanged files: nothing to do.
    assert!(!reloader.reload().swapped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_file_outside_the_policy_directory_is_watched_too() {
    let setup = Setup::new(&[]);
    let zones = setup.dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(
        zones.join("example.test.zone"),
        format!("{HEAD}www A 192.0.2.1\n"),
    )
    .unwrap();
    let policy = POLICY.replace(
        "zone_file = \"example.test.zone\"",
        "zone_file = \"../zones/example.test.zone\"",
    );
    setup.write_policy("example.test.toml", &policy);
    let running: Running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    let www = ask(spfd, "www.example.test", RecordType::A).await;
    assert_eq!(www.answers.len(), 1, "{www}");
    // Edited in place (no rename), in a directory only the zone file is in.
    std::fs::write(
        zones.join("example.test.zone"),
        format!("{HEAD}www A 192.0.2.9\n"),
    )
    .unwrap();
    let mut last = None;
    for _ in 0..400 {
        let m = ask(spfd, "www.example.test", RecordType::A).await;
        if m.answers.iter().any(|r| r.data.to_string() == "192.0.2.9") {
            last = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        last.is_some(),
        "the edit outside the policy directory was not served"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_whose_glue_does_not_fit_is_truncated_not_stripped() {
    let setup = Setup::new(&[]);
    let mut zone = HEAD.to_string();
    for i in 0..10 {
        zone.push_str(&format!(
            "wide NS ns{i}.wide\nns{i}.wide A 192.0.2.{i}\nns{i}.wide AAAA 2001:db8::{i}\n"
        ));
    }
    std::fs::write(setup.policy_path("example.test.zone"), zone).unwrap();
    setup.write_policy("example.test.toml", POLICY);
    let running: Running = server::start(&setup.config()).await.unwrap();
    let spfd = running.addrs[0];
    let msg = common::query_no_edns("x.wide.example.test.", RecordType::A);
    let udp = Message::from_vec(&udp_raw(spfd, &msg.to_vec().unwrap()).await).unwrap();
    assert!(udp.metadata.truncation, "{udp}");
    let tcp = Message::from_vec(&tcp_raw(spfd, &msg.to_vec().unwrap()).await).unwrap();
    assert!(!tcp.metadata.truncation && !tcp.metadata.authoritative);
    assert_eq!((tcp.authorities.len(), tcp.additionals.len()), (10, 20), "{tcp}");
    running.shutdown().await.unwrap();
}
