//! DMARC aggregate reports end to end: a corpus made here (several receivers, both
//! schemas, XML, gzip, zip and e-mail forms, a duplicate, a truncated report, bombs)
//! is imported by `spfd reports import`, and `spfd reports summary --json` is checked
//! against the corpus's own tally, with sources classified against policies flattened
//! from the loopback upstream world (tests/upstream). Hostile files (a mail nested ten
//! thousand deep, a million-row zip entry, zips whose entries share one stream, huge
//! counts, a zip entry name with a newline) are refused one error each, within bounded
//! memory. Then what hostile or old data must not do: impossible counts in an existing
//! database break nothing, a forged report stored first does not hide the genuine one,
//! and retention expires old reports of every domain.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/upstream.rs"]
mod upstream;

use std::path::Path;
use std::process::Command;

use common::config_text;
use corpus::{START, Sender, Tally, write_corpus};
use serde_json::Value;
use upstream::Upstream;

const SHOP: &str = "domain = \"shop.test\"\n[spf]\nrecord = \"v=spf1 ip4:203.0.113.200/30 mx:customer.test include:_spf.provider-a.test ~all\"\n\
                    [dmarc]\np = \"none\"\nrua = [\"mailto:dmarc@shop.test\", \"mailto:agg@reports.test\", \"mailto:x@ext.example\"]\n";
/// Reports of several domains go to one mailbox at a domain whose zone spfd serves.
const REPORTS_HOST: &str = "domain = \"reports.test\"\nzone = \"reports.test\"\n";
const OTHER: &str = "domain = \"other.test\"\n[spf]\nrecord = \"v=spf1 include:spf.provider-b.test -all\"\n";

fn sender(ip: &'static str, base: u64, dkim: bool, spf: bool, envelope: &'static str) -> Sender {
    Sender {
        ip,
        base,
        dkim_aligned: dkim,
        dkim_other: None,
        spf_aligned: spf,
        envelope,
    }
}

/// Each sender with the class and detail the test expects from what it knows of the
/// world: the zone files under tests/upstream and the two policies above.
fn senders() -> Vec<(Sender, &'static str, &'static str)> {
    vec![
        (
            sender("192.0.2.5", 50, true, true, "shop.test"),
            "authorised",
            "include:_spf.provider-a.test",
        ),
        (
            sender("2001:db8:a:1::5", 20, true, true, "shop.test"),
            "authorised",
            "include:_spf.provider-a.test",
        ),
        (
            sender("203.0.113.40", 30, false, true, "shop.test"),
            "authorised",
            "mx:customer.test",
        ),
        (
            sender("203.0.113.201", 10, true, true, "shop.test"),
            "authorised",
            "ip4:203.0.113.200/30",
        ),
        // In provider-b's include, which other.test uses and shop.test lacks.
        (
            Sender {
                dkim_other: Some("provider-b.test"),
                ..sender("198.51.100.70", 15, true, false, "bounces.provider-b.test")
            },
            "missing",
            "include:spf.provider-b.test",
        ),
        // provider-b's record shadows .66 with -IP4: its include does not pass it.
        (
            sender("198.51.100.66", 5, true, false, "shop.test"),
            "forwarded",
            "",
        ),
        (
            sender("233.252.0.9", 8, true, false, "lists.example.org"),
            "forwarded",
            "",
        ),
        (
            sender("198.51.100.41", 3, false, false, "shop.test"),
            "unauthorised",
            "mta2.provider-c.test",
        ),
        (
            sender("2001:db8:dead::1", 2, false, false, "shop.test"),
            "unauthorised",
            "",
        ),
    ]
}

fn spfd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn setup(dir: &Path, world: &Upstream) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/shop.toml"), SHOP).unwrap();
    std::fs::write(dir.join("policies/other.toml"), OTHER).unwrap();
    std::fs::write(dir.join("policies/reports.toml"), REPORTS_HOST).unwrap();
    let config = format!(
        "{}{}[reports]\nmax_report_bytes = 1048576\n",
        config_text(),
        world.resolver_config_toml()
    );
    std::fs::write(dir.join("spfd.toml"), config).unwrap();
}

fn world_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))
}

async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || spfd(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

fn import_args(dir: &Path, inbox: &Path) -> Vec<String> {
    let config = dir.join("spfd.toml").display().to_string();
    vec![
        "reports".into(),
        "import".into(),
        "--config".into(),
        config,
        inbox.display().to_string(),
    ]
}

fn check_import(out: &str, code: i32, t: &Tally) {
    assert_eq!(code, 1, "errors make the exit code 1: {out}");
    for bad in &t.bad {
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("error:") && l.contains(bad.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "one error for {bad}: {out}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains("broken.xml") && l.contains("line ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("bomb.gz") && l.contains("more than 1048576 bytes")),
        "{out}"
    );
    let summary = out.lines().last().unwrap();
    let expected = format!(
        "{} reports imported ({} rows), {} duplicates skipped, 3 errors",
        t.reports, t.rows, t.duplicates
    );
    assert!(summary.ends_with(&expected), "{summary} / {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_is_imported_once_and_every_sender_is_classified() {
    let world = Upstream::start(world_dir()).await;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &world);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let list = senders();
    let plain: Vec<Sender> = list.iter().map(|(s, _, _)| *s).collect();
    let tally = write_corpus(&inbox, "shop.test", &plain, 3);

    let (code, out, err) = run(import_args(dir.path(), &inbox)).await;
    check_import(&out, code, &tally);
    assert!(err.is_empty(), "{err}");
    // Again: every report is a duplicate, nothing is added.
    let (_, again, _) = run(import_args(dir.path(), &inbox)).await;
    let expected = format!(
        "0 reports imported (0 rows), {} duplicates skipped",
        tally.reports + tally.duplicates
    );
    assert!(again.lines().last().unwrap().contains(&expected), "{again}");

    let config = dir.path().join("spfd.toml").display().to_string();
    let args = ["reports", "summary", "--config", &config, "shop.test", "--json"];
    let (code, out, err) = run(args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    check_totals(&json, &tally);
    check_sources(&json, &list, &tally);
}

fn check_totals(json: &Value, t: &Tally) {
    assert_eq!(json["domain"], "shop.test");
    assert_eq!(json["reports"], t.reports, "{json}");
    assert_eq!(json["messages"], t.messages, "{json}");
    assert_eq!(json["dmarc_pass"], t.dmarc_pass, "{json}");
    assert_eq!(json["days"], t.days, "{json}");
    assert_eq!(json["receivers"], t.receivers, "{json}");
    assert_eq!(
        json["spf_origin"], "resolved",
        "no server ran, so nothing was published"
    );
}

fn check_sources(json: &Value, list: &[(Sender, &str, &str)], t: &Tally) {
    let sources = json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), list.len(), "{json:#}");
    for (s, class, detail) in list {
        let got = sources
            .iter()
            .find(|x| x["ip"] == s.ip)
            .unwrap_or_else(|| panic!("{}", s.ip));
        assert_eq!(got["class"], *class, "{}: {got}", s.ip);
        assert_eq!(got["messages"], t.by_ip[s.ip], "{}", s.ip);
        assert_eq!(
            got["dmarc_pass"],
            t.pass_by_ip.get(s.ip).copied().unwrap_or(0),
            "{}",
            s.ip
        );
        match *class {
            "authorised" => assert_eq!(got["spf_via"], *detail, "{}", s.ip),
            "missing" => assert_eq!(got["add"], *detail, "{}", s.ip),
            "unauthorised" if !detail.is_empty() => {
                assert_eq!(got["reverse"][0], *detail, "{}", s.ip)
            }
            _ => assert!(got.get("spf_via").is_none(), "{got}"),
        }
    }
}

/// A state directory with the corpus of `days` days (plain senders) imported; the
/// upstream world its policies resolve through lives as long as the first value.
async fn imported_corpus(days: i64) -> (Upstream, tempfile::TempDir, Tally) {
    let world = Upstream::start(world_dir()).await;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &world);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let plain: Vec<Sender> = senders().iter().map(|(s, _, _)| *s).collect();
    let tally = write_corpus(&inbox, "shop.test", &plain, days);
    run(import_args(dir.path(), &inbox)).await;
    (world, dir, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_limits_the_period_and_check_mentions_the_reports() {
    let (_world, dir, tally) = imported_corpus(4).await;
    let config = dir.path().join("spfd.toml").display().to_string();
    let since = spfd::reports::analysis::day(START + 2 * 86400);
    let args = [
        "reports",
        "summary",
        "--config",
        &config,
        "shop.test",
        "--since",
        &since,
        "--json",
    ];
    let (code, out, err) = run(args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["days"], 2);
    assert_eq!(json["reports"], tally.reports / 2);
    assert_eq!(json["since"], since);

    let (code, out, err) = run(vec!["check".into(), "--config".into(), config.clone()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let mentions: Vec<&str> = out.lines().filter(|l| l.starts_with("reports: ")).collect();
    assert_eq!(mentions.len(), 1, "only shop.test has reports: {out}");
    assert!(
        mentions[0].contains("shop.test") && mentions[0].contains("spfd advise"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_published_expansion_check_gives_the_advice_in_one_line() {
    let world = Upstream::start(world_dir()).await;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &world);
    let config = spfd::config::Config::load(&dir.path().join("spfd.toml")).unwrap();
    // The server flattens shop.test and keeps the result in state_dir/published.json.
    let running = spfd::server::start(&config).await.unwrap();
    for _ in 0..400 {
        if config.state_dir.join("published.json").exists() && running.published.get("shop.test.").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    running.shutdown().await.unwrap();
    let published = std::fs::read_to_string(config.state_dir.join("published.json")).unwrap();
    assert!(published.contains("\"shop.test.\""), "{published}");

    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let plain: Vec<Sender> = senders().iter().map(|(s, _, _)| *s).collect();
    let tally = write_corpus(&inbox, "shop.test", &plain, 3);
    run(import_args(dir.path(), &inbox)).await;
    let path = dir.path().join("spfd.toml").display().to_string();
    let (code, out, err) = run(vec!["check".into(), "--config".into(), path]).await;
    assert_eq!(code, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("reports: "))
        .unwrap_or_else(|| panic!("{out}"));
    let expected = format!(
        "reports: shop.test: reports over {} days, {} messages: DMARC not yet ready for p=quarantine; \
         SPF not yet ready for -all (spfd advise shop.test)",
        tally.days, tally.messages
    );
    assert_eq!(line, expected);
}

/// A policy that needs no upstream: its domain is the one the hostile reports name.
const BOMBED: &str = "domain = \"bomb.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n";

/// Runs spfd, and returns its exit code, its output and its peak resident memory in
/// KiB (from wait4); killed, and the test failed, after five minutes (a stall).
// The child is reaped by wait4 (which also gives its peak memory), not Child::wait.
#[allow(clippy::zombie_processes)]
fn spfd_measured(args: &[&str]) -> (i32, String, u64) {
    let out = tempfile::tempfile().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spfd {args:?} still running after five minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut text = String::new();
    use std::io::{Read as _, Seek as _};
    let mut out = out;
    out.rewind().unwrap();
    out.read_to_string(&mut text).unwrap();
    (libc::WEXITSTATUS(status), text, usage.ru_maxrss as u64)
}

fn one_row(domain: &str, id: &str, count: &str) -> String {
    String::from_utf8(hostile::rows_xml(domain, id, 1))
        .unwrap()
        .replace("</source_ip>", &format!("</source_ip><count>{count}</count>"))
}

#[test]
fn hostile_files_cost_one_error_each_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/bomb.toml"), BOMBED).unwrap();
    std::fs::write(dir.path().join("spfd.toml"), config_text()).unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let million = hostile::rows_xml("bomb.test", "rows", 1_000_000);
    let files: [(&str, Vec<u8>); 9] = [
        ("rows.zip", hostile::zip_of_copies(&million, 1, false)),
        ("rows64.zip", hostile::zip_of_copies(&million, 64, false)),
        (
            "shared.zip",
            hostile::zip_of_copies(&vec![b' '; 16 << 20], 60_000, true),
        ),
        (
            "shared100.zip",
            hostile::zip_of_copies(&vec![b' '; 16 << 20], 100, true),
        ),
        ("nested.eml", hostile::nested_mail(10_000)),
        (
            "newline.zip",
            hostile::zip_named(b"a.xml\n2026-01-01T00:00:00Z  INFO forged", b"<feedback>"),
        ),
        (
            "count.xml",
            one_row("bomb.test", "count", "10000000000").into_bytes(),
        ),
        (
            "good.zip",
            hostile::zip_named(b"good.xml", one_row("bomb.test", "good", "5").as_bytes()),
        ),
        (
            "foreign.xml",
            one_row("elsewhere.test", "foreign", "5").into_bytes(),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(inbox.join(name), bytes).unwrap();
    }
    drop(files);
    let config = dir.path().join("spfd.toml").display().to_string();
    let inbox_arg = inbox.display().to_string();
    let (code, out, peak_kib) = spfd_measured(&["reports", "import", "--config", &config, &inbox_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB\n{out}");
    let errors = |file: &str| -> Vec<&str> {
        out.lines()
            .filter(|l| l.starts_with("error:") && l.contains(file))
            .collect()
    };
    for (file, why, most) in [
        ("rows.zip", "more than 200000 records", 1),
        ("rows64.zip", "more than 268435456 bytes in all", 5),
        ("shared.zip:", "more than 256 entries", 1),
        ("shared100.zip", "share their compressed data", 1),
        ("nested.eml", "more than 500 MIME parts", 1),
        ("newline.zip", "a.xml\\u{a}2026-01-01T00:00:00Z", 1),
        ("count.xml", "more than 1000000000", 1),
    ] {
        let lines = errors(file);
        assert!(
            !lines.is_empty() && lines.len() <= most,
            "{file}: {lines:?}\n{out}"
        );
        assert!(lines.iter().any(|l| l.contains(why)), "{file}: {why}\n{out}");
    }
    assert!(
        !out.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {out}"
    );
    assert!(
        out.contains("1 reports about domains not served here were not stored"),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("1 reports imported (1 rows)"),
        "{out}"
    );
}

fn summary_args(dir: &Path) -> Vec<String> {
    let config = dir.join("spfd.toml").display().to_string();
    ["reports", "summary", "--config", &config, "shop.test", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn database(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("state/reports.sqlite")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_counts_in_an_existing_database_are_skipped_everywhere() {
    let (_world, dir, tally) = imported_corpus(3).await;
    // Two rows of 2^63 - 1 (their SUM overflows) and u64::MAX as an earlier spfd
    // stored it (-1), copied from a stored row.
    for (ip, count) in [
        ("198.51.100.97", i64::MAX),
        ("198.51.100.98", i64::MAX),
        ("198.51.100.99", -1),
    ] {
        database(dir.path())
            .execute(
                "INSERT INTO rows (report, domain, begin, source_ip, count, disposition, dkim_aligned, \
                 spf_aligned, header_from, dkim_pass_domains) SELECT report, domain, begin, ?1, ?2, \
                 disposition, 1, 1, header_from, dkim_pass_domains FROM rows WHERE domain = 'shop.test' LIMIT 1",
                rusqlite::params![ip, count],
            )
            .unwrap();
    }
    // The summary and the advice are what the status page shows, computed alike.
    let (code, out, err) = run(summary_args(dir.path())).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    check_totals(&json, &tally);
    assert_eq!(json["error_rows"], 3, "{json}");
    let config = dir.path().join("spfd.toml").display().to_string();
    let (code, out, err) = run(["advise", "--config", &config, "shop.test", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect())
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let advice: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(advice["evidence"]["messages"], tally.messages, "{advice}");
}

/// One report of shop.test by "Receiver One" with id "r-1" from `begin`, its one row
/// from `ip` with `count` messages.
fn one_report(begin: i64, ip: &'static str, count: u64) -> String {
    let meta = corpus::Meta {
        dmarc2: false,
        org: "Receiver One",
        id: "r-1",
        begin,
        end: begin + 86399,
        domain: "shop.test",
        p: "none",
    };
    corpus::report_xml(
        &meta,
        &corpus::row_xml(&sender(ip, 0, true, true, "shop.test"), count, "shop.test"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_report_stored_first_does_not_hide_the_genuine_one() {
    let world = Upstream::start(world_dir()).await;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &world);
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    // The genuine report's organisation and id, over another day...
    std::fs::write(
        forged.join("a.xml"),
        one_report(START + 86400, "233.252.0.1", 5000),
    )
    .unwrap();
    // ...and over the genuine report's own day, with other content.
    std::fs::write(forged.join("b.xml"), one_report(START, "233.252.0.1", 5000)).unwrap();
    let (code, out, _) = run(import_args(dir.path(), &forged)).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("2 reports imported (2 rows), 0 duplicates skipped, 0 errors\n"),
        "{out}"
    );

    let genuine = dir.path().join("genuine");
    std::fs::create_dir(&genuine).unwrap();
    std::fs::write(genuine.join("g.xml"), one_report(START, "192.0.2.5", 40)).unwrap();
    let (code, out, _) = run(import_args(dir.path(), &genuine)).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 reports conflict with a stored report"), "{out}");
    assert!(
        out.ends_with("1 reports imported (1 rows), 0 duplicates skipped, 0 errors\n"),
        "{out}"
    );
    // The same genuine report again is a duplicate.
    let (_, out, _) = run(import_args(dir.path(), &genuine)).await;
    assert!(
        out.ends_with("0 reports imported (0 rows), 1 duplicates skipped, 0 errors\n"),
        "{out}"
    );

    let (code, out, err) = run(summary_args(dir.path())).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["reports"], 3, "{json}");
    assert_eq!(
        json["conflicts"], 2,
        "the forged copy and the genuine one: {json}"
    );
    let genuine_source = json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ip"] == "192.0.2.5")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(genuine_source["messages"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expires_old_reports_of_every_domain() {
    let world = Upstream::start(world_dir()).await;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &world);
    let config = std::fs::read_to_string(dir.path().join("spfd.toml")).unwrap();
    std::fs::write(
        dir.path().join("spfd.toml"),
        format!("{config}retention = \"30d\"\n"),
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let recent = now - 2 * 86400;
    // START is months ago: older than 30 days.
    std::fs::write(inbox.join("old.xml"), one_report(START, "192.0.2.5", 10)).unwrap();
    std::fs::write(inbox.join("new.xml"), one_report(recent, "192.0.2.5", 7)).unwrap();
    let unserved = one_report(START + 86400, "192.0.2.5", 3).replace("shop.test", "gone.test");
    std::fs::write(inbox.join("unserved.xml"), unserved).unwrap();
    let (code, out, _) = run(import_args(dir.path(), &inbox)).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = run(summary_args(dir.path())).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["reports"], 1, "{json}");
    assert_eq!(json["messages"], 7, "{json}");
    let db = database(dir.path());
    let left = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(left("reports"), 1, "the unserved domain's old report is gone too");
    assert_eq!(left("rows"), 1);
    assert_eq!(left("auth_results"), 2, "the recent row's DKIM and SPF results");
}
