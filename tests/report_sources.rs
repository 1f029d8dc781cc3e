//! The report sources `spfd serve` polls: a real Maildir with a backlog of thousands
//! of messages (each read once, then flagged seen in cur/), a directory of files
//! (moved to processed/), and the poller running inside the server, joined at
//! shutdown. Hostile inputs cost one error each and are set aside in `failed/`; the
//! server keeps answering and starts again cleanly; shutdown leaves the input being
//! read where it is.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/hostile.rs"]
mod hostile;

use std::path::Path;
use std::sync::Arc;

use corpus::{Meta, START, Sender, gzip, mail, report_xml, row_xml, zip};
use hickory_proto::rr::RecordType;
use spfd::config::Config;
use spfd::reports::ingest::{Importer, Outcome};
use spfd::reports::mailbox::{poll_dir, poll_maildir};
use spfd::reports::poller::{PollStatus, ReportPoller};
use spfd::reports::{Limits, Store};
use tokio_util::sync::CancellationToken;

const SENDER: Sender = Sender {
    ip: "192.0.2.10",
    base: 3,
    dkim_aligned: true,
    dkim_other: None,
    spf_aligned: false,
    envelope: "shop.test",
};

/// Report `i` of a backlog: one of two receivers, one day each.
fn report(i: u64) -> String {
    let id = format!("backlog-{i}");
    let begin = START + (i as i64 % 30) * 86400;
    let meta = Meta {
        dmarc2: i.is_multiple_of(2),
        org: if i.is_multiple_of(3) {
            "Receiver A"
        } else {
            "Receiver B"
        },
        id: &id,
        begin,
        end: begin + 86399,
        domain: "shop.test",
        p: "none",
    };
    report_xml(
        &meta,
        &row_xml(
            &Sender {
                base: 1 + i % 5,
                ..SENDER
            },
            1 + i % 5,
            "shop.test",
        ),
    )
}

fn config(dir: &Path, sources: &str) -> Config {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let text = format!(
        "{}[reports]\nsources = [{sources}]\ninterval = \"1h\"\n",
        common::config_text()
    );
    std::fs::write(dir.join("spfd.toml"), text).unwrap();
    Config::load(&dir.join("spfd.toml")).unwrap()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter(|e| e.path().is_file()).count())
}

/// Reports and messages stored, whatever their trust (Maildir mail without a
/// signature is stored as unverified).
fn stored(config: &Config) -> (u64, u64) {
    let store = Store::open_in(&config.state_dir).unwrap();
    let all = spfd::config::EvidenceTrust::All;
    let overview = store.overview("shop.test", i64::MIN, all).unwrap();
    let messages = store
        .sources("shop.test", i64::MIN, all)
        .unwrap()
        .iter()
        .map(|s| s.messages)
        .sum();
    (overview.reports, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_backlog_is_read_once_and_flagged_seen() {
    const BACKLOG: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mut messages = 0;
    for i in 0..BACKLOG {
        let xml = report(i);
        messages += 1 + i % 5;
        let body = if i.is_multiple_of(2) {
            mail(&format!("r{i}"), "report.xml.gz", &gzip(xml.as_bytes()))
        } else {
            mail(&format!("r{i}"), "report.zip", &zip("report.xml", xml.as_bytes()))
        };
        // A few already in cur/ without the seen flag (read by a mail client, say).
        let (sub, name) = if i % 100 == 7 {
            ("cur", format!("{i}.M1P1.test:2,F"))
        } else {
            ("new", format!("{i}.M1P1.test"))
        };
        std::fs::write(maildir.join(sub).join(name), body).unwrap();
    }
    // One seen message is not read again.
    std::fs::write(
        maildir.join("cur/seen.M1P1.test:2,S"),
        mail("seen", "x.xml", report(BACKLOG + 1).as_bytes()),
    )
    .unwrap();
    let config = config(dir.path(), &format!("\"maildir:{}\"", maildir.display()));
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    let status = poller.status();
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert!(s.last_errors.is_empty() && s.imported.errors.is_empty(), "{s:?}");
    assert_eq!(s.imported.inputs as u64, BACKLOG);
    assert_eq!(s.imported.reports as u64, BACKLOG);
    // Mail without a DKIM signature: stored, as unverified evidence.
    assert_eq!(s.imported.unverified as u64, BACKLOG);
    assert_eq!(stored(&config), (BACKLOG, messages));
    assert_eq!(count_files(&maildir.join("new")), 0);
    let cur: Vec<String> = std::fs::read_dir(maildir.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cur.len() as u64, BACKLOG + 1);
    assert!(
        cur.iter().all(|n| n.ends_with(":2,S") || n.ends_with(":2,FS")),
        "{cur:?}"
    );
    assert!(cur.iter().filter(|n| n.ends_with(":2,FS")).count() == 30);
    // The next round finds nothing new.
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert_eq!((s.rounds, s.imported.inputs as u64), (2, BACKLOG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_polls_a_directory_and_joins_the_poller_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..20 {
        std::fs::write(inbox.join(format!("r{i}.xml.gz")), gzip(report(i).as_bytes())).unwrap();
    }
    std::fs::write(inbox.join("junk.txt"), "not a report").unwrap();
    let config = config(dir.path(), &format!("\"dir:{}\"", inbox.display()));
    let running = spfd::server::start(&config).await.unwrap();
    let status = running
        .report_status
        .clone()
        .expect("a poller runs when sources are set");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while status.lock().unwrap().rounds == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no round in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    running.shutdown().await.unwrap();
    let s = status.lock().unwrap().clone();
    assert_eq!((s.imported.inputs, s.imported.reports), (21, 20), "{s:?}");
    // Files the operator put in a dir: source: vouched for.
    assert_eq!(s.imported.unverified, 0, "{s:?}");
    assert_eq!(s.imported.errors.len(), 1, "{s:?}");
    assert!(s.imported.errors[0].contains("junk.txt"), "{s:?}");
    assert!(s.imported.errors[0].contains("set aside in"), "{s:?}");
    assert_eq!(count_files(&inbox), 0);
    assert_eq!(count_files(&inbox.join("processed")), 20);
    assert!(inbox.join("failed/junk.txt").is_file());
    assert_eq!(stored(&config).0, 20);
}

const SHOP_POLICY: &str = "domain = \"shop.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
                           mode = \"passthrough\"\n[dmarc]\np = \"none\"\n";

async fn first_round(status: &std::sync::Mutex<PollStatus>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while status.lock().unwrap().rounds == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no round in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_mail_is_set_aside_and_the_server_keeps_answering_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("nested.eml"), hostile::nested_mail(10_000)).unwrap();
    std::fs::write(inbox.join("r1.xml.gz"), gzip(report(1).as_bytes())).unwrap();
    let foreign = report(2).replace("shop.test", "elsewhere.test");
    std::fs::write(inbox.join("foreign.xml"), foreign).unwrap();
    let config = config(dir.path(), &format!("\"dir:{}\"", inbox.display()));
    std::fs::write(dir.path().join("policies/shop.toml"), SHOP_POLICY).unwrap();
    for start in 0..2 {
        let running = spfd::server::start(&config).await.unwrap();
        let status = running.report_status.clone().unwrap();
        first_round(&status).await;
        let answer = common::udp_raw(
            running.addrs[0],
            &common::query("_spf.shop.test.", RecordType::TXT)
                .to_vec()
                .unwrap(),
        )
        .await;
        let answer = hickory_proto::op::Message::from_vec(&answer).unwrap();
        assert_eq!(common::txt_joined(&answer), ["v=spf1 ip4:192.0.2.0/24 -all"]);
        running.shutdown().await.unwrap();
        let s = status.lock().unwrap().clone();
        if start == 0 {
            assert_eq!(
                (s.imported.inputs, s.imported.reports, s.imported.not_served),
                (3, 1, 1),
                "{s:?}"
            );
            assert_eq!(s.imported.errors.len(), 1, "{s:?}");
            let line = &s.imported.errors[0];
            assert!(line.contains("nested.eml: more than 500 MIME parts"), "{line}");
            assert!(
                line.contains("set aside in") && line.contains("failed/nested.eml"),
                "{line}"
            );
        } else {
            assert_eq!((s.imported.inputs, s.imported.errors.len()), (0, 0), "{s:?}");
        }
    }
    assert!(inbox.join("failed/nested.eml").is_file());
    assert_eq!(count_files(&inbox), 0);
    assert_eq!(count_files(&inbox.join("processed")), 2);
    assert_eq!(stored(&config).0, 1);
}

#[test]
fn a_maildir_message_that_fails_is_set_aside_seen() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let good = mail("good", "r.xml.gz", &gzip(report(3).as_bytes()));
    std::fs::write(maildir.join("new/1.M1.test"), good).unwrap();
    std::fs::write(maildir.join("new/2.M1.test"), hostile::nested_mail(600)).unwrap();
    let mut store = Store::open_in(&dir.path().join("state")).unwrap();
    let mut importer = Importer::new(&mut store, Limits::default());
    assert_eq!(poll_maildir(&mut importer, &maildir).unwrap(), 2);
    let stats = importer.finish().unwrap();
    assert_eq!((stats.reports, stats.errors.len()), (1, 1), "{stats:?}");
    assert!(maildir.join("cur/1.M1.test:2,S").is_file());
    assert!(maildir.join("failed/2.M1.test:2,S").is_file());
    assert!(stats.errors[0].contains("failed/2.M1.test:2,S"), "{stats:?}");
}

#[test]
fn shutdown_leaves_the_input_being_read_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..3 {
        std::fs::write(inbox.join(format!("r{i}.xml")), report(i)).unwrap();
    }
    let mut store = Store::open_in(&dir.path().join("state")).unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let mut importer = Importer::new(&mut store, Limits::default()).stop_on(stop);
    // The input being read ends at once, without an error line.
    assert_eq!(
        importer.add("r0", report(0).as_bytes()).unwrap(),
        Outcome::Stopped
    );
    assert_eq!(poll_dir(&mut importer, &inbox).unwrap(), 0);
    let stats = importer.finish().unwrap();
    assert_eq!((stats.reports, stats.errors.len()), (0, 0), "{stats:?}");
    assert_eq!(count_files(&inbox), 3);
}
