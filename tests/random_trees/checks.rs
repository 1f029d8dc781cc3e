//! The judgements: what spfd serves for every mail domain (the documented refusals,
//! chains within the limits, macro answers within the limits), and the differential
//! comparison of every probe's result, source against published; and the report a
//! failure prints (seed, problems, records and zones).

use std::fmt::Write as _;
use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::sync::Semaphore;

use crate::addresses::ir_v;
use crate::common::{query, txt_joined, udp_raw};
use crate::lab::Lab;
use crate::logs;
use crate::model::{Mode, World};
use crate::stage::tcp_query;

/// Source (limits lifted) against published (RFC limits) for every probe of every
/// domain not in `skip`; a disagreement is asked again once, so only a repeatable one
/// counts. Returns (world index, line) per disagreement, and the number of comparisons.
pub async fn compare(lab: &Lab, worlds: &[World], skip: &[String]) -> (Vec<(usize, String)>, usize) {
    let (source, published) = (lab.source_oracle(), lab.published_oracle(worlds));
    let permits = Arc::new(Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in worlds.iter().enumerate() {
        for d in w.domains.iter().filter(|d| !skip.contains(d)) {
            let (source, published, permits) = (source.clone(), published.clone(), permits.clone());
            let (d, ips) = (d.clone(), w.probes(d));
            tasks.spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                let (want, got) = tokio::join!(source.check_all(&ips, &d), published.check_all(&ips, &d));
                let mut lines = Vec::new();
                for ((ip, w), (_, g)) in want.iter().zip(&got) {
                    if w != g
                        && (source.check(*ip, &d).await, published.check(*ip, &d).await)
                            == (w.clone(), g.clone())
                    {
                        let limit = g == "permerror" && !["permerror", "temperror"].contains(&w.as_str());
                        let tag = if limit { " (published exceeds a limit)" } else { "" };
                        lines.push((i, format!("{d} {ip}: source {w}, published {g}{tag}")));
                    }
                }
                (lines, ips.len())
            });
        }
    }
    let (mut lines, mut count) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (l, n) = done.unwrap();
        lines.extend(l);
        count += n;
    }
    lines.sort();
    (lines, count)
}

/// What spfd serves for every domain of every world: refused ones only as documented,
/// the others within the limits. Returns (world index, problem) per problem.
pub async fn check_served(
    lab: &Lab,
    worlds: &[World],
    refused: &[String],
    mode: Mode,
) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    for (i, w) in worlds.iter().enumerate() {
        let mut found = Vec::new();
        for d in w.domains.iter().filter(|d| refused.contains(d)) {
            check_refused(lab, w, d, mode, &mut found).await;
        }
        match mode {
            Mode::Flatten => check_chains(lab, w, refused, &mut found).await,
            Mode::Macro => check_macro_answers(lab, w, refused, &mut found).await,
        }
        problems.extend(found.into_iter().map(|p| (i, p)));
    }
    problems
}

/// The chains respect the limits: at most 10 lookups, each record one TXT of at most
/// 450 octets.
async fn check_chains(lab: &Lab, w: &World, skip: &[String], problems: &mut Vec<String>) {
    for d in w.domains.iter().filter(|d| !skip.contains(d)) {
        let entry = lab.running.published.get(&format!("{d}.")).unwrap();
        let Some(chain) = entry.chain.as_ref() else {
            problems.push(format!("{d}: published without a chain"));
            continue;
        };
        if chain.lookups > 10 {
            problems.push(format!("{d}: the chain costs {} lookups", chain.lookups));
        }
        let names = std::iter::once(format!("_spf.{d}")).chain(chain.parts.iter().map(|(n, _)| n.clone()));
        for name in names {
            let texts = tcp_query(lab.spfd(), &format!("{name}.")).await;
            if texts.len() != 1 || texts[0].len() > 450 {
                problems.push(format!(
                    "{name}: {texts:?} (one record of at most 450 octets expected)"
                ));
            }
        }
    }
}

/// Macro mode: no domain over the budget is published; for the others, the head, and
/// every probe's per-address answer is one short record.
async fn check_macro_answers(lab: &Lab, w: &World, refused: &[String], problems: &mut Vec<String>) {
    for d in w.domains.iter().filter(|d| !refused.contains(d)) {
        if w.over_budget.contains(d) {
            let (least, most) = w.macro_lookups(d);
            problems.push(format!(
                "{d}: macro answers published, though they need {least} to {most} DNS lookups"
            ));
        }
        let head = tcp_query(lab.spfd(), &format!("_spf.{d}.")).await;
        if head != [format!("v=spf1 redirect=%{{ir}}.%{{v}}._spf.{d}")] {
            problems.push(format!("{d}: macro head {head:?}"));
        }
        for ip in w.probes(d) {
            let texts = udp_txt(lab, &format!("{}._spf.{d}.", ir_v(ip))).await;
            if texts.len() != 1 || texts[0].len() > 450 {
                problems.push(format!("{d} {ip}: macro answer {texts:?}"));
            }
        }
    }
}

/// What spfd serves for a policy it never expanded: the record as written when its own
/// terms and the domain's redirect to `_spf.<domain>` stay within 10 lookups.
fn placeholder(w: &World, d: &str) -> String {
    let written = w.written(d);
    let record = spfd::spf::Record::parse(&written).expect("generated records parse");
    let owner_redirect = 1;
    if record.lookup_terms() + owner_redirect <= 10 {
        written
    } else {
        "v=spf1 ?all".to_string()
    }
}

async fn udp_txt(lab: &Lab, name: &str) -> Vec<String> {
    let q = query(name, RecordType::TXT);
    let answer = Message::from_vec(&udp_raw(lab.spfd(), &q.to_vec().unwrap()).await);
    txt_joined(&answer.unwrap())
}

/// A refused domain: only the documented refusals, with the placeholder of a policy
/// never expanded served meanwhile (the record as written when its own terms stay
/// within 10 lookups, else `v=spf1 ?all`). Flatten mode refuses a tree that needs more
/// than 10 lookups even flattened; macro mode a tree generated over the macro budget.
async fn check_refused(lab: &Lab, w: &World, d: &str, mode: Mode, problems: &mut Vec<String>) {
    match mode {
        Mode::Flatten => {
            let why = spfd_flatten(lab, d).await;
            eprintln!("seed {}: {d} refused: {}", w.seed, why.trim());
            if !why.contains("receivers allow 10") {
                problems.push(format!("{d} not published: {why}"));
            }
        }
        Mode::Macro => check_macro_refusal(lab, w, d, problems).await,
    }
    let served = tcp_query(lab.spfd(), &format!("_spf.{d}.")).await;
    if served != [placeholder(w, d)] {
        problems.push(format!("{d} refused but serves {served:?}"));
    }
}

/// Macro mode: the refresh names the lookups the costliest answer needs (as the
/// generator counts them), and an address asked for gets `v=spf1 ?all`, never NXDOMAIN.
async fn check_macro_refusal(lab: &Lab, w: &World, d: &str, problems: &mut Vec<String>) {
    // The flatten-mode test runs in this process at the same time, on worlds with the
    // same domain names: only macro mode's own refusal is looked for.
    let why = logs::error_for(d, "cannot publish macro answers").await;
    eprintln!("seed {}: {d} refused: {why}", w.seed);
    let (least, most) = w.macro_lookups(d);
    let needed = why.split("an answer needs ").nth(1).and_then(|rest| {
        let n = rest.split_once(" DNS lookups")?.0;
        n.parse::<usize>().ok()
    });
    let documented = why.starts_with("cannot publish macro answers")
        && why.contains("receivers allow 10 (RFC 7208 4.6.4)")
        && needed.is_some_and(|n| n > 10 && (least..=most).contains(&n));
    if !w.over_budget.contains(d) || !documented {
        problems.push(format!(
            "{d} not published (answers need {least} to {most} DNS lookups): {why:?}"
        ));
    }
    let ip = w.special[0];
    let answer = udp_txt(lab, &format!("{}._spf.{d}.", ir_v(ip))).await;
    if answer != ["v=spf1 ?all"] {
        problems.push(format!("{d} refused but answers {ip} with {answer:?}"));
    }
}

/// `spfd flatten` for one domain: what it publishes, or why it cannot.
pub async fn spfd_flatten(lab: &Lab, domain: &str) -> String {
    let (config, domain) = (lab.setup.config_path(), domain.to_string());
    let run = move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spfd"))
            .args(["flatten", "--config", config.to_str().unwrap(), &domain])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    tokio::task::spawn_blocking(run).await.unwrap()
}

pub fn world_report(w: &World, lines: &[String]) -> String {
    let mut out = format!("==== seed {} ({} lines) ====\n", w.seed, lines.len());
    for line in lines.iter().take(40) {
        let _ = writeln!(out, "{line}");
    }
    out += "-- source records --\n";
    for d in &w.domains {
        let _ = writeln!(out, "{d}: {}", w.source(d));
    }
    out + "-- zones --\n" + &w.all_zones()
}

/// Each world with problems: its seed, the problems, its records and zones.
pub fn report(worlds: &[World], problems: &[(usize, String)]) -> String {
    let mut out = String::new();
    for (i, w) in worlds.iter().enumerate() {
        let lines: Vec<String> = problems
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, l)| l.clone())
            .collect();
        if !lines.is_empty() {
            out += &world_report(w, &lines);
        }
    }
    out
}
