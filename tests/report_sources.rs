//! The report sources `spfd serve` polls: a real Maildir with a backlog of thousands
//! of messages (each read once, then flagged seen in cur/), a directory of files
//! (moved to processed/), and the poller running inside the server, joined at
//! shutdown.

mod common;
#[path = "common/corpus.rs"]
mod corpus;

use std::path::Path;
use std::sync::Arc;

use corpus::{Meta, START, Sender, gzip, mail, report_xml, row_xml, zip};
use spfd::config::Config;
use spfd::reports::Store;
use spfd::reports::poller::ReportPoller;

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
    assert_eq!(count_files(&inbox), 0);
    assert_eq!(count_files(&inbox.join("processed")), 21);
    assert_eq!(stored(&config).0, 20);
}
