//! `spfd advise` on report histories that must and must not advance: enough days,
//! reports and passing legitimate mail give `ready`; too little data, a legitimate
//! sender that fails, too short a time at quarantine, a single reporting
//! organisation, or reports by mail without their organisation's DKIM signature hold
//! the step back. Report mail is signed by dkimpy (an implementation not our own) with
//! keys published by the loopback upstream world.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/dkim.rs"]
mod dkim;
#[path = "common/upstream.rs"]
mod upstream;

use std::path::Path;
use std::process::Command;

use corpus::{Meta, START, Sender, report_xml, row_xml};
use serde_json::Value;
use upstream::Upstream;

fn sender(ip: &'static str, base: u64, dkim: bool, spf: bool) -> Sender {
    Sender {
        ip,
        base,
        dkim_aligned: dkim,
        dkim_other: None,
        spf_aligned: spf,
        envelope: "firm.test",
    }
}

const GOOD: Sender = Sender {
    ip: "192.0.2.10",
    base: 20,
    dkim_aligned: true,
    dkim_other: None,
    spf_aligned: true,
    envelope: "firm.test",
};
const SPOOFER: Sender = Sender {
    ip: "233.252.0.66",
    base: 7,
    dkim_aligned: false,
    dkim_other: None,
    spf_aligned: false,
    envelope: "firm.test",
};

/// A domain whose policy says `p` (SPF `~all`), with `days` days of reports from two
/// receivers that saw `seen_p`; returns the parsed `spfd advise --json` and the
/// messages the history holds.
async fn advise(p: &str, seen_p: &str, days: i64, senders: &[Sender]) -> (Value, u64) {
    advise_from(&["Receiver One", "Receiver Two"], p, seen_p, days, senders).await
}

/// [`advise`] with reports from the given organisations (one report each a day).
async fn advise_from(orgs: &[&str], p: &str, seen_p: &str, days: i64, senders: &[Sender]) -> (Value, u64) {
    let world = Upstream::start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::create_dir_all(d.join("inbox")).unwrap();
    let policy = format!(
        "domain = \"firm.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 ~all\"\n[dmarc]\np = \"{p}\"\nrua = [\"mailto:d@firm.test\"]\n"
    );
    std::fs::write(d.join("policies/firm.toml"), policy).unwrap();
    let config = format!("{}{}", common::config_text(), world.resolver_config_toml());
    std::fs::write(d.join("spfd.toml"), config).unwrap();
    let mut messages = 0;
    for day in 0..days {
        for (r, org) in orgs.iter().enumerate() {
            let rows: String = senders
                .iter()
                .map(|s| {
                    messages += s.base;
                    row_xml(s, s.base, "firm.test")
                })
                .collect();
            let id = format!("{r}-{day}");
            let begin = START + day * 86400;
            let meta = Meta {
                dmarc2: r == 1,
                org,
                id: &id,
                begin,
                end: begin + 86399,
                domain: "firm.test",
                p: seen_p,
            };
            std::fs::write(d.join(format!("inbox/{id}.xml")), report_xml(&meta, &rows)).unwrap();
        }
    }
    let config = d.join("spfd.toml").display().to_string();
    let inbox = d.join("inbox").display().to_string();
    let out = run(vec![
        "reports".into(),
        "import".into(),
        "--config".into(),
        config.clone(),
        inbox,
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    (
        spfd_json(&["advise", "--config", &config, "firm.test", "--json"]).await,
        messages,
    )
}

async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_spfd"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The JSON an spfd command prints (it must succeed).
async fn spfd_json(args: &[&str]) -> Value {
    let out = run(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reasons(step: &Value) -> String {
    step["reasons"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_history_advances_both_and_spoofing_does_not_hold_it_back() {
    let (a, messages) = advise("none", "none", 20, &[GOOD, SPOOFER]).await;
    assert_eq!(a["evidence"]["days"], 20);
    assert_eq!(a["evidence"]["reports"], 40);
    assert_eq!(a["evidence"]["messages"], messages);
    assert_eq!(a["evidence"]["unauthorised_messages"], 40 * SPOOFER.base);
    assert_eq!(a["dmarc"]["current"], "p=none");
    assert_eq!(a["dmarc"]["next"], "p=quarantine");
    assert_eq!(a["dmarc"]["ready"], true, "{a:#}");
    assert_eq!(a["spf"]["current"], "~all");
    assert_eq!(a["spf"]["next"], "-all");
    assert_eq!(a["spf"]["ready"], true, "{a:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_days_and_reports_hold_every_step() {
    let (a, _) = advise("none", "none", 4, &[GOOD]).await;
    for step in [&a["dmarc"], &a["spf"]] {
        assert_eq!(step["ready"], false, "{a:#}");
        assert!(reasons(step).contains("only 4 days of reports"), "{a:#}");
        assert!(reasons(step).contains("only 8 reports"), "{a:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_legitimate_sender_is_named_with_its_fix() {
    // Authorised by SPF, but neither SPF nor DKIM aligned: DMARC fails for all its mail.
    let misaligned = sender("192.0.2.20", 10, false, false);
    let (a, _) = advise("none", "none", 20, &[GOOD, misaligned]).await;
    assert_eq!(a["dmarc"]["ready"], false, "{a:#}");
    let fixes = a["dmarc"]["fixes"].as_array().unwrap();
    assert_eq!(fixes.len(), 1, "{a:#}");
    assert_eq!(fixes[0]["ip"], "192.0.2.20");
    assert_eq!(fixes[0]["failing"], 40 * 10);
    assert!(
        fixes[0]["change"].as_str().unwrap().contains("d=firm.test"),
        "{a:#}"
    );
    // DKIM covers 2/3 of legitimate mail: -all would hurt.
    assert_eq!(a["spf"]["ready"], false, "{a:#}");
    assert!(reasons(&a["spf"]).contains("DKIM aligned"), "{a:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_needs_time_at_quarantine() {
    let (a, _) = advise("quarantine", "quarantine", 20, &[GOOD]).await;
    assert_eq!(a["dmarc"]["next"], "p=reject");
    assert_eq!(a["dmarc"]["ready"], true, "{a:#}");
    assert_eq!(a["evidence"]["days_at_current_p"], 20);
    // The same history seen under p=none: no time at quarantine yet.
    let (a, _) = advise("quarantine", "none", 20, &[GOOD]).await;
    assert_eq!(a["dmarc"]["ready"], false, "{a:#}");
    assert!(reasons(&a["dmarc"]).contains("p=quarantine on 0 days"), "{a:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organisation_never_makes_a_step_ready() {
    let (a, _) = advise_from(&["Receiver One"], "none", "none", 20, &[GOOD]).await;
    for step in [&a["dmarc"], &a["spf"]] {
        assert_eq!(step["ready"], false, "{a:#}");
        assert!(
            reasons(step).contains("reports from only 1 reporting organisation"),
            "{a:#}"
        );
    }
    assert_eq!(a["evidence"]["reports"], 20);
    assert_eq!(a["evidence"]["organisations"], 1);
    // Two names in the reports of one organisation are still one organisation: the
    // history is the same, under two names.
    let (a, _) = advise_from(&["Receiver One", "RECEIVER ONE"], "none", "none", 20, &[GOOD]).await;
    assert_eq!(a["evidence"]["organisations"], 1, "{a:#}");
    assert_eq!(a["dmarc"]["ready"], false, "{a:#}");
}

/// The reporting organisations of the mailed history: each signs with its own key.
const MAIL_ORGS: [&str; 2] = ["receiver-one.test", "receiver-two.test"];

/// A history of 15 small reports (under 1000 bytes each), one a day, alternating
/// between the two organisations of [`MAIL_ORGS`], each in a mail From: the
/// organisation, delivered to a Maildir that the report poller reads. With `signed`,
/// dkimpy signs each mail with its organisation's key, published in the upstream
/// world. `forged_extra` more unsigned mails claim the first organisation. Returns
/// `spfd advise --json` and `spfd reports summary --json`.
async fn mailed_history(signed: bool, forged_extra: i64) -> (Value, Value) {
    let world = Upstream::start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(d.join("mail").join(sub)).unwrap();
    }
    let policy = "domain = \"firm.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.0/24 ~all\"\n\
                  [dmarc]\np = \"none\"\nrua = [\"mailto:d@firm.test\"]\n";
    std::fs::write(d.join("policies/firm.toml"), policy).unwrap();
    let config = format!(
        "{}{}[reports]\nsources = [\"maildir:mail\"]\n",
        common::config_text(),
        world.resolver_config_toml()
    );
    std::fs::write(d.join("spfd.toml"), config).unwrap();
    let files = write_report_mail(&d.join("mail/new"), forged_extra);
    if signed {
        for org in MAIL_ORGS {
            let key = dkim::publish_key(&world, d, org).await;
            let mine: Vec<_> = files
                .iter()
                .filter(|(o, _)| *o == org)
                .map(|(_, f)| f.clone())
                .collect();
            dkim::sign(&key, org, &mine);
        }
    }
    let loaded = spfd::config::Config::load(&d.join("spfd.toml")).unwrap();
    let poller = spfd::reports::poller::ReportPoller::from_config(&loaded).unwrap();
    let status = poller.status();
    std::sync::Arc::new(poller).round().await;
    let imported = status.lock().unwrap().imported.clone();
    assert_eq!(imported.reports as i64, 15 + forged_extra, "{imported:?}");
    let config = d.join("spfd.toml").display().to_string();
    let advice = spfd_json(&["advise", "--config", &config, "firm.test", "--json"]).await;
    let summary = spfd_json(&["reports", "summary", "--config", &config, "firm.test", "--json"]).await;
    (advice, summary)
}

/// The mails of [`mailed_history`] in `new`: the 15 of the history (returned with
/// their organisation) and `forged_extra` more.
fn write_report_mail(new: &Path, forged_extra: i64) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut files = Vec::new();
    for day in 0..15 + forged_extra {
        let org = if day >= 15 {
            MAIL_ORGS[0]
        } else {
            MAIL_ORGS[day as usize % 2]
        };
        let id = format!("{org}-{day}");
        let begin = START + day * 86400;
        let meta = Meta {
            dmarc2: false,
            org,
            id: &id,
            begin,
            end: begin + 86399,
            domain: "firm.test",
            p: "none",
        };
        let xml = report_xml(&meta, &row_xml(&GOOD, GOOD.base, "firm.test"));
        assert!(xml.len() < 1000, "a small report: {} bytes", xml.len());
        let mail = corpus::mail(&id, "report.xml", xml.as_bytes()).replace(
            "From: noreply-dmarc@receiver.test",
            &format!("From: noreply-dmarc@{org}"),
        );
        let path = new.join(format!("{day}.eml"));
        std::fs::write(&path, mail).unwrap();
        if day < 15 {
            files.push((org, path));
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_report_mail_does_not_move_the_advice() {
    let (a, summary) = mailed_history(false, 0).await;
    for step in [&a["dmarc"], &a["spf"]] {
        assert_eq!(step["ready"], false, "{a:#}");
        assert!(reasons(step).contains("only 0 reports"), "{a:#}");
        assert!(
            reasons(step).contains("15 reports arrived by mail without a DKIM signature"),
            "{a:#}"
        );
    }
    assert_eq!(a["evidence"]["uncounted_unverified_reports"], 15);
    // Shown apart in the summary, counted nowhere else.
    assert_eq!(summary["reports"], 0, "{summary:#}");
    assert_eq!(summary["unverified_reports"], 15, "{summary:#}");
    assert_eq!(summary["unverified_messages"], 15 * GOOD.base, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mail_signed_by_its_organisations_counts() {
    let (a, summary) = mailed_history(true, 1).await;
    assert_eq!(a["evidence"]["reports"], 15, "{a:#}");
    assert_eq!(a["evidence"]["organisations"], 2, "{a:#}");
    assert_eq!(a["dmarc"]["ready"], true, "{a:#}");
    assert_eq!(a["spf"]["ready"], true, "{a:#}");
    // The one unsigned mail that claims the first organisation is not counted.
    assert_eq!(summary["reports"], 15, "{summary:#}");
    assert_eq!(summary["unverified_reports"], 1, "{summary:#}");
}
