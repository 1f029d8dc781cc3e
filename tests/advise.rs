//! `spfd advise` on report histories that must and must not advance: enough days,
//! reports and passing legitimate mail give `ready`; too little data, a legitimate
//! sender that fails, or too short a time at quarantine hold the step back.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
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
        for (r, org) in ["Receiver One", "Receiver Two"].iter().enumerate() {
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
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_spfd"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "reports".into(),
        "import".into(),
        "--config".into(),
        config.clone(),
        inbox,
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let args = vec![
        "advise".into(),
        "--config".into(),
        config,
        "firm.test".into(),
        "--json".into(),
    ];
    let out = run(args).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), messages)
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
