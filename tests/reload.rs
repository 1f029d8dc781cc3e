//! Hot reload: edits, new files, removals and SIGHUP reach the served answers; invalid
//! edits and conflicting policies are reported and the previous answers stay.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use spfd::diag::Severity;
use spfd::reload::Reloader;
use spfd::snapshot::Snapshot;

fn policy(domain: &str, spf: &str) -> String {
    format!("domain = \"{domain}\"\n[spf]\nrecord = \"{spf}\"\nmode = \"passthrough\"\n")
}

fn serial(msg: &hickory_proto::op::Message) -> u32 {
    match &msg.answers[0].data {
        RData::SOA(soa) => soa.serial,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_edit_is_served_and_the_serial_grows() {
    let s = TestServer::start(&[("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.1 -all"))]).await;
    let soa_q = query("_spf.a.test.", RecordType::SOA);
    let before = serial(&s.udp(&soa_q).await);
    let generation = s.generation();

    s.setup
        .write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.2 -all"));
    let q = query("_spf.a.test.", RecordType::TXT);
    let r = s
        .wait_until(&q, |r| txt_joined(r) == ["v=spf1 ip4:192.0.2.2 -all"])
        .await;
    assert_eq!(txt_joined(&r), ["v=spf1 ip4:192.0.2.2 -all"]);
    assert!(serial(&s.udp(&soa_q).await) > before);
    assert!(s.generation() > generation);
}

#[tokio::test]
async fn added_and_removed_files_add_and_remove_zones() {
    let s = TestServer::start(&[("a.toml", &policy("a.test", "v=spf1 -all"))]).await;
    let q = query("_spf.b.test.", RecordType::TXT);
    assert_eq!(s.udp(&q).await.metadata.response_code, ResponseCode::Refused);

    s.setup
        .write_policy("b.toml", &policy("b.test", "v=spf1 mx -all"));
    let r = s
        .wait_until(&q, |r| r.metadata.response_code == ResponseCode::NoError)
        .await;
    assert_eq!(txt_joined(&r), ["v=spf1 mx -all"]);

    s.setup.remove_policy("b.toml");
    let r = s
        .wait_until(&q, |r| r.metadata.response_code == ResponseCode::Refused)
        .await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // The other zone was never touched.
    assert_eq!(
        txt_joined(&s.udp(&query("_spf.a.test.", RecordType::TXT)).await),
        ["v=spf1 -all"]
    );
}

#[tokio::test]
async fn sighup_trigger_reloads() {
    let s = TestServer::start(&[("a.toml", &policy("a.test", "v=spf1 -all"))]).await;
    // Write in place where the watcher may or may not see it; the trigger makes sure.
    std::fs::write(s.setup.policy_path("a.toml"), policy("a.test", "v=spf1 a -all")).unwrap();
    s.running.reload.send(spfd::reload::Trigger::Signal).unwrap();
    let q = query("_spf.a.test.", RecordType::TXT);
    let r = s.wait_until(&q, |r| txt_joined(r) == ["v=spf1 a -all"]).await;
    assert_eq!(txt_joined(&r), ["v=spf1 a -all"]);
}

#[test]
fn an_invalid_edit_is_reported_with_its_position_and_the_old_answers_stay() {
    let setup = Setup::new(&[("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.1 -all"))]);
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline(&setup.config(), cell.clone());
    let first = reloader.reload();
    assert!(
        first.swapped && first.diagnostics.is_empty(),
        "{:?}",
        first.diagnostics
    );
    let served = cell.load_full();

    // Line 3, column 32: the bad prefix length inside the record string.
    setup.write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.1/33 -all"));
    let report = reloader.reload();
    assert!(!report.swapped);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{:?}", report.diagnostics);
    let e = errors[0];
    assert_eq!(e.path, setup.policy_path("a.toml"));
    assert_eq!((e.line, e.column), (3, 32), "{e}");
    assert!(e.message.contains("33"), "{e}");
    assert!(
        Arc::ptr_eq(&served, &cell.load_full()),
        "the snapshot in service is kept"
    );

    // A syntax error is reported too, and a later fix is picked up.
    setup.write_policy("a.toml", "domain = \"a.test\"\n[spf\n");
    let report = reloader.reload();
    let e = report.errors().next().expect("syntax error reported");
    assert_eq!(e.line, 2, "{e}");
    assert!(Arc::ptr_eq(&served, &cell.load_full()));
    setup.write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.9 -all"));
    assert!(reloader.reload().swapped);
}

#[test]
fn two_policies_claiming_one_zone_are_an_error_and_the_first_keeps_it() {
    let setup = Setup::new(&[
        ("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.1 -all")),
        (
            "b.toml",
            "domain = \"b.test\"\nzone = \"_spf.a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
        ),
    ]);
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline(&setup.config(), cell.clone());
    let report = reloader.reload();
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{:?}", report.diagnostics);
    assert_eq!(errors[0].path, setup.policy_path("b.toml"));
    assert!(errors[0].message.contains("a.toml"), "{}", errors[0]);
    let snapshot = cell.load_full();
    assert_eq!(snapshot.zone_count(), 1);
    let zone = snapshot.zones.values().next().unwrap();
    assert_eq!(zone.policy.path, setup.policy_path("a.toml"));

    // A later file that takes a served name is refused; the served one stays.
    setup.write_policy("c.toml", "domain = \"a.test\"\nzone = \"a.test\"\n");
    let report = reloader.reload();
    assert!(
        report.errors().any(|e| e.path == setup.policy_path("c.toml")),
        "{:?}",
        report.diagnostics
    );
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Error || d.path != setup.policy_path("a.toml"))
    );
}

/// Queries run while the policy flips between two versions: every answer is one whole
/// version, never a failure or a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_swaps_always_see_one_whole_snapshot() {
    let v1 = policy("a.test", "v=spf1 ip4:192.0.2.1 -all");
    let v2 = policy("a.test", "v=spf1 ip4:192.0.2.2 ~all");
    let s = Arc::new(TestServer::start(&[("a.toml", &v1)]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (s, stop, asked) = (s.clone(), stop.clone(), asked.clone());
        clients.push(tokio::spawn(async move {
            let q = query("_spf.a.test.", RecordType::TXT);
            while !stop.load(Ordering::Relaxed) {
                let r = s.udp(&q).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                let got = txt_joined(&r);
                assert!(
                    got == ["v=spf1 ip4:192.0.2.1 -all"] || got == ["v=spf1 ip4:192.0.2.2 ~all"],
                    "{got:?}"
                );
                asked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let generation = s.generation();
    for i in 0..20 {
        s.setup.write_policy("a.toml", if i % 2 == 0 { &v2 } else { &v1 });
        s.running.reload.send(spfd::reload::Trigger::Signal).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(s.generation() > generation);
    assert!(asked.load(Ordering::Relaxed) > 0);
}

/// The replaced snapshot is freed by the reload thread once no query reads it, not kept
/// until the next swap (two whole generations would stay resident); a query that still
/// holds it keeps it alive, and it is never freed under that query.
#[test]
fn a_replaced_snapshot_is_freed_once_no_query_holds_it() {
    let setup = Setup::new(&[("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.1 -all"))]);
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline(&setup.config(), cell.clone());
    assert!(reloader.reload().swapped);
    let first = Arc::downgrade(&cell.load_full());

    setup.write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.2 -all"));
    assert!(reloader.reload().swapped);
    assert!(first.upgrade().is_none(), "generation 1 is freed after the swap");

    // A reader in the middle of a batch keeps its snapshot whole across a swap.
    let reader = cell.load_full();
    let second = Arc::downgrade(&reader);
    setup.write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.3 -all"));
    assert!(reloader.reload().swapped);
    assert_eq!(reader.zone_count(), 1);
    assert!(second.upgrade().is_some(), "held by the reader");
    drop(reader);
    setup.write_policy("a.toml", &policy("a.test", "v=spf1 ip4:192.0.2.4 -all"));
    assert!(reloader.reload().swapped);
    assert!(second.upgrade().is_none(), "freed at the next swap once released");
}

/// A swap after one edit among 3,000 policies rebuilds that zone only: every other
/// zone is the same object, and the new snapshot shares all but a few shards of its
/// indexes with the old one. A removal and a conflicting edit are incremental too.
#[test]
fn a_swap_after_one_edit_touches_only_the_changed_zone() {
    let policies: Vec<(String, String)> = (0..3000)
        .map(|i| (format!("p{i}.toml"), policy(&format!("d{i}.test"), "v=spf1 -all")))
        .collect();
    let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let setup = Setup::new(&refs);
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline(&setup.config(), cell.clone());
    assert!(reloader.reload().swapped);
    let before = cell.load_full();
    assert_eq!(before.zone_count(), 3000);

    setup.write_policy("p7.toml", &policy("d7.test", "v=spf1 ip4:192.0.2.7 -all"));
    let report = reloader.reload();
    assert!(report.swapped, "{:?}", report.diagnostics);
    let after = cell.load_full();
    assert_eq!(after.zone_count(), 3000);
    let changed: Vec<String> = after
        .zones
        .iter()
        .filter(|(apex, zone)| !Arc::ptr_eq(zone, before.zones.get(*apex).unwrap()))
        .map(|(apex, _)| apex.to_string())
        .collect();
    assert_eq!(changed, ["_spf.d7.test."]);
    assert!(after.zones.parts_differing(&before.zones) <= 1);
    // The zone's names (apex, and none below it here) plus nothing else.
    assert!(after.compiled.names.parts_differing(&before.compiled.names) <= 2);

    // A file removed and one that claims a served name: one zone gone, the other refused.
    setup.remove_policy("p8.toml");
    setup.write_policy("p9.toml", "domain = \"d10.test\"\n");
    let report = reloader.reload();
    assert!(
        report
            .errors()
            .any(|e| e.message.contains("mail domain d10.test")),
        "{:?}",
        report.diagnostics
    );
    let last = cell.load_full();
    assert_eq!(last.zone_count(), 2999);
    assert!(last.zones.get(&lower("_spf.d8.test.")).is_none());
    assert!(
        last.zones.get(&lower("_spf.d9.test.")).is_some(),
        "p9's previous version stays"
    );
    assert!(last.zones.parts_differing(&after.zones) <= 2);
}

fn lower(name: &str) -> hickory_proto::rr::LowerName {
    hickory_proto::rr::LowerName::new(&hickory_proto::rr::Name::from_ascii(name).unwrap())
}

/// A zone spfd serves that receives other domains' DMARC reports publishes their
/// authorisations (`<domain>._report._dmarc.<host>` TXT `v=DMARC1`, RFC 7489 7.1), and
/// follows edits of the policies that point there without an edit of its own file.
#[tokio::test]
async fn report_authorisations_are_published_in_the_report_hosts_zone() {
    let host = "domain = \"reports.example.net\"\nzone = \"reports.example.net\"\n";
    let dmarc = |domain: &str, rua: &str| {
        format!("domain = \"{domain}\"\n[dmarc]\np = \"none\"\nrua = [\"mailto:{rua}\"]\n")
    };
    let s = TestServer::start(&[
        ("host.toml", host),
        ("a.toml", &dmarc("a.example", "d@reports.example.net")),
    ])
    .await;
    let a = query("a.example._report._dmarc.reports.example.net.", RecordType::TXT);
    assert_eq!(txt_joined(&s.udp(&a).await), ["v=DMARC1"]);

    // b starts sending there: published in the host's zone; a stops: gone.
    s.setup
        .write_policy("b.toml", &dmarc("b.example", "d@reports.example.net"));
    let b = query("b.example._report._dmarc.reports.example.net.", RecordType::TXT);
    let r = s.wait_until(&b, |r| txt_joined(r) == ["v=DMARC1"]).await;
    assert_eq!(txt_joined(&r), ["v=DMARC1"]);
    s.setup.write_policy("a.toml", &dmarc("a.example", "d@a.example"));
    let r = s
        .wait_until(&a, |r| r.metadata.response_code == ResponseCode::NXDomain)
        .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(txt_joined(&s.udp(&b).await), ["v=DMARC1"]);
}
