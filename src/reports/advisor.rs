//! The advisor: whether the report data supports the next step of the owner's path
//! (RFC 9989 5.1): SPF `?all` → `~all` → `-all`, DMARC `p=none` → `quarantine` →
//! `reject`. It never advises a step the data does not support: each threshold below
//! that is not met is a reason, and `ready` is true only with no reason left.
//!
//! Thresholds (the JSON carries the values used):
//! - at least [`Thresholds::min_days`] days and [`Thresholds::min_reports`] reports
//!   and [`Thresholds::min_messages`] messages of data in the period, from at least
//!   [`Thresholds::min_organisations`] distinct reporting organisations (one
//!   organisation, or one forger, never moves a step alone);
//! - only reports the `[reports] trust` setting counts are evidence (by default,
//!   those with an aligned DKIM signature and those the operator vouches for);
//! - DMARC: at least `min_pass_share` of legitimate mail (every class but
//!   unauthorised) passes DMARC, and no legitimate sender fails more than
//!   `max_sender_fail` of its messages (ignoring senders with fewer than
//!   `min_sender_failures` failing messages); for reject, also `min_days` days of
//!   reports showing p=quarantine;
//! - SPF `-all`: no missing provider, and DKIM aligned covers at least
//!   `min_pass_share` of legitimate mail (receivers may reject on SPF fail before
//!   DMARC sees a DKIM pass, so DKIM must carry forwarded and mis-routed mail).

use serde::{Deserialize, Serialize};

use super::analysis::{Class, Source, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_days: u64,
    pub min_reports: u64,
    pub min_messages: u64,
    pub min_pass_share: f64,
    pub max_sender_fail: f64,
    pub min_sender_failures: u64,
    #[serde(default = "two")]
    pub min_organisations: u64,
}

fn two() -> u64 {
    2
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_days: 14,
            min_reports: 10,
            min_messages: 100,
            min_pass_share: 0.98,
            max_sender_fail: 0.02,
            min_sender_failures: 5,
            min_organisations: two(),
        }
    }
}

/// One step: where the domain is, the step the advisor would take, and why not yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub current: String,
    /// The next step (`None` when already at the goal).
    pub next: Option<String>,
    pub ready: bool,
    /// What holds the step back (empty when ready), or why there is none.
    pub reasons: Vec<String>,
    /// Each sender to fix first, and the change.
    pub fixes: Vec<Fix>,
    /// Advice that does not hold the step back (for DMARC: `sp` and `np`).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub ip: String,
    pub class: Class,
    pub failing: u64,
    pub change: String,
}

/// The evidence behind the advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub days: u64,
    pub reports: u64,
    pub messages: u64,
    pub legitimate_messages: u64,
    pub legitimate_dmarc_pass: u64,
    pub legitimate_dkim_aligned: u64,
    pub unauthorised_messages: u64,
    /// Days of reports that saw the current DMARC p.
    pub days_at_current_p: u64,
    /// Distinct reporting organisations among the reports counted.
    #[serde(default)]
    pub organisations: u64,
    /// Reports not counted: they arrived by mail without an aligned DKIM signature
    /// (0 under `trust = "all"`, which counts them).
    #[serde(default)]
    pub uncounted_unverified_reports: u64,
}

/// `spfd advise --json`: stable; fields are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub domain: String,
    pub spf: Step,
    pub dmarc: Step,
    pub evidence: Evidence,
    pub thresholds: Thresholds,
}

/// The policy as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The qualifier of the record's `all` (`-`, `~`, `?`, `+`), `None` without one.
    pub spf_all: Option<char>,
    pub p: String,
    /// `sp` and `np` as written (`None`: not set, so they follow p, and np follows sp).
    pub sp: Option<String>,
    pub np: Option<String>,
}

/// The policy's current SPF `all` and DMARC p.
pub fn current_of(policy: &crate::policy::ValidPolicy) -> Current {
    let spf_all = policy.spf.as_ref().and_then(|spf| {
        let record = spf.record();
        record
            .terms()
            .iter()
            .filter_map(|t| t.directive())
            .find(|d| d.mechanism == crate::spf::Mechanism::All)
            .map(|d| d.qualifier.as_char())
    });
    let dmarc = policy.dmarc.as_ref();
    Current {
        spf_all,
        p: dmarc.map_or("none", |d| d.p()).to_string(),
        sp: dmarc.and_then(|d| d.subdomain_policy()).map(str::to_string),
        np: dmarc.and_then(|d| d.nonexistent_policy()).map(str::to_string),
    }
}

pub fn advise(summary: &Summary, current: &Current, days_at_current_p: u64, t: &Thresholds) -> Advice {
    let evidence = evidence(summary, days_at_current_p);
    let data = data_reasons(&evidence, t);
    Advice {
        domain: summary.domain.clone(),
        spf: spf_step(summary, current, &evidence, &data, t),
        dmarc: Step {
            notes: subdomain_notes(current),
            ..dmarc_step(summary, current, &evidence, &data, t)
        },
        evidence,
        thresholds: *t,
    }
}

fn legitimate(s: &Source) -> bool {
    s.class != Class::Unauthorised
}

fn evidence(summary: &Summary, days_at_current_p: u64) -> Evidence {
    let legit = summary.sources.iter().filter(|s| legitimate(s));
    let (mut messages, mut pass, mut dkim) = (0u64, 0u64, 0u64);
    for s in legit {
        messages = messages.saturating_add(s.messages);
        pass = pass.saturating_add(s.dmarc_pass);
        dkim = dkim.saturating_add(s.dkim_aligned_pass);
    }
    let uncounted = if summary.trust == "all" {
        0
    } else {
        summary.unverified_reports
    };
    Evidence {
        days: summary.days,
        reports: summary.reports,
        messages: summary.messages,
        legitimate_messages: messages,
        legitimate_dmarc_pass: pass,
        legitimate_dkim_aligned: dkim,
        unauthorised_messages: summary.messages.saturating_sub(messages),
        days_at_current_p,
        organisations: summary.organisations,
        uncounted_unverified_reports: uncounted,
    }
}

fn data_reasons(e: &Evidence, t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    if e.days < t.min_days {
        out.push(format!(
            "only {} days of reports; wait for at least {}",
            e.days, t.min_days
        ));
    }
    if e.reports < t.min_reports {
        out.push(format!(
            "only {} reports; wait for at least {}",
            e.reports, t.min_reports
        ));
    }
    if e.messages < t.min_messages {
        out.push(format!(
            "only {} messages reported; wait for at least {}",
            e.messages, t.min_messages
        ));
    }
    if e.organisations < t.min_organisations {
        out.push(format!(
            "reports from only {} reporting organisation{}; wait for reports from at least {} \
             (one organisation's view, or one forger's, is not enough)",
            e.organisations,
            if e.organisations == 1 { "" } else { "s" },
            t.min_organisations
        ));
    }
    if !out.is_empty() && e.uncounted_unverified_reports > 0 {
        out.push(format!(
            "{} reports arrived by mail without a DKIM signature of their reporting organisation \
             and are not counted ([reports] trust = \"all\" counts them)",
            e.uncounted_unverified_reports
        ));
    }
    out
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn dmarc_step(summary: &Summary, current: &Current, e: &Evidence, data: &[String], t: &Thresholds) -> Step {
    let next = match current.p.as_str() {
        "none" => Some("quarantine"),
        "quarantine" => Some("reject"),
        _ => None,
    };
    let Some(next) = next else {
        return done(
            &format!("p={}", current.p),
            "p=reject is the goal: keep watching for new senders",
        );
    };
    let mut reasons = data.to_vec();
    let got = share(e.legitimate_dmarc_pass, e.legitimate_messages);
    if got < t.min_pass_share {
        reasons.push(format!(
            "{:.1}% of legitimate mail passes DMARC; at least {:.1}% is needed",
            got * 100.0,
            t.min_pass_share * 100.0
        ));
    }
    if next == "reject" && e.days_at_current_p < t.min_days {
        reasons.push(format!(
            "reports show p=quarantine on {} days; keep it for at least {} before reject",
            e.days_at_current_p, t.min_days
        ));
    }
    let fixes = dmarc_fixes(summary, t);
    if !fixes.is_empty() {
        reasons.push(format!("{} failing DMARC (see fixes)", senders(fixes.len())));
    }
    Step {
        current: format!("p={}", current.p),
        next: Some(format!("p={next}")),
        ready: reasons.is_empty(),
        reasons,
        fixes,
        notes: Vec::new(),
    }
}

fn dmarc_fixes(summary: &Summary, t: &Thresholds) -> Vec<Fix> {
    summary
        .sources
        .iter()
        .filter(|s| legitimate(s))
        .filter_map(|s| {
            let failing = s.messages.saturating_sub(s.dmarc_pass);
            let too_many = failing >= t.min_sender_failures && share(failing, s.messages) > t.max_sender_fail;
            too_many.then(|| Fix {
                ip: s.ip.clone(),
                class: s.class,
                failing,
                change: dmarc_change(s, &summary.domain),
            })
        })
        .collect()
}

fn dmarc_change(s: &Source, domain: &str) -> String {
    match s.class {
        Class::Authorised => format!(
            "SPF passes ({}) but not aligned, and DKIM is not aligned: have this sender sign with \
             d={domain} (or use a bounce address under {domain})",
            s.spf_via.as_deref().unwrap_or("the record")
        ),
        Class::Missing => format!(
            "add {} to the SPF record, and check the DKIM signing of the failing messages",
            s.add.as_deref().unwrap_or("the provider's include")
        ),
        _ => "forwarded mail that lost its DKIM signature: no SPF change fixes it; ask the \
              forwarder or list to keep signatures intact (or to rewrite From)"
            .to_string(),
    }
}

fn spf_step(summary: &Summary, current: &Current, e: &Evidence, data: &[String], t: &Thresholds) -> Step {
    let cur = current
        .spf_all
        .map_or("no all".to_string(), |q| format!("{q}all"));
    let next = match current.spf_all {
        Some('?') | Some('+') | None => "~all",
        Some('~') => "-all",
        _ => return done(&cur, "-all is the goal: keep watching for new senders"),
    };
    let mut reasons = data.to_vec();
    let fixes = missing_fixes(summary);
    if !fixes.is_empty() {
        reasons.push(format!(
            "{} not in the SPF record (see fixes)",
            senders(fixes.len())
        ));
    }
    let dkim = share(e.legitimate_dkim_aligned, e.legitimate_messages);
    if next == "-all" && dkim < t.min_pass_share {
        reasons.push(format!(
            "only {:.1}% of legitimate mail passes DKIM aligned; with -all receivers may reject \
             forwarded mail before DMARC sees DKIM, so first sign at least {:.1}%",
            dkim * 100.0,
            t.min_pass_share * 100.0
        ));
    }
    Step {
        current: cur,
        next: Some(next.to_string()),
        ready: reasons.is_empty(),
        reasons,
        fixes,
        notes: Vec::new(),
    }
}

/// Each missing provider, with the include to add.
fn missing_fixes(summary: &Summary) -> Vec<Fix> {
    summary
        .sources
        .iter()
        .filter(|s| s.class == Class::Missing)
        .map(|s| Fix {
            ip: s.ip.clone(),
            class: s.class,
            failing: s.messages.saturating_sub(s.spf_aligned_pass),
            change: format!(
                "add {} to the SPF record",
                s.add.as_deref().unwrap_or("the provider's include")
            ),
        })
        .collect()
}

fn rank(policy: &str) -> u8 {
    match policy {
        "reject" => 2,
        "quarantine" => 1,
        _ => 0,
    }
}

/// `sp` (subdomains) and `np` (names that do not exist) written weaker than p: the
/// reports of the domain cannot say much about them, so this is advice, not a reason.
fn subdomain_notes(current: &Current) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, value, what) in [
        ("sp", &current.sp, "mail from subdomains"),
        (
            "np",
            &current.np,
            "mail from names that do not exist (RFC 9989), nearly always spoofing",
        ),
    ] {
        if let Some(v) = value.as_deref().filter(|v| rank(v) < rank(&current.p)) {
            out.push(format!(
                "{tag}={v} is weaker than p={}: {what} stays less protected; raise {tag} with p once \
                 no legitimate subdomain mail fails",
                current.p
            ));
        }
    }
    if current.np.is_none() && current.sp.as_deref().is_some_and(|sp| rank(sp) < 2) && current.p == "reject" {
        out.push(
            "np is not set, so it follows sp: set np=reject, non-existent names send no legitimate mail"
                .into(),
        );
    }
    out
}

fn senders(n: usize) -> String {
    if n == 1 {
        "1 legitimate sender is".to_string()
    } else {
        format!("{n} legitimate senders are")
    }
}

fn done(current: &str, why: &str) -> Step {
    Step {
        current: current.to_string(),
        next: None,
        ready: false,
        reasons: vec![why.to_string()],
        fixes: Vec::new(),
        notes: Vec::new(),
    }
}

impl Advice {
    /// The one line `spfd check` prints.
    pub fn one_line(&self) -> String {
        let step = |name: &str, s: &Step| match (&s.next, s.ready) {
            (None, _) => format!("{name} at {}", s.current),
            (Some(n), true) => format!("{name} ready for {n}"),
            (Some(n), false) => format!("{name} not yet ready for {n}"),
        };
        format!(
            "{}: reports over {} days, {} messages: {}; {} (spfd advise {})",
            self.domain,
            self.evidence.days,
            self.evidence.messages,
            step("DMARC", &self.dmarc),
            step("SPF", &self.spf),
            self.domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(p: &str, sp: Option<&str>, np: Option<&str>) -> Current {
        Current {
            spf_all: Some('~'),
            p: p.into(),
            sp: sp.map(str::to_string),
            np: np.map(str::to_string),
        }
    }

    #[test]
    fn weaker_sp_and_np_are_noted() {
        assert!(subdomain_notes(&current("quarantine", None, None)).is_empty());
        assert!(subdomain_notes(&current("quarantine", Some("reject"), Some("quarantine"))).is_empty());
        let notes = subdomain_notes(&current("quarantine", Some("none"), Some("none")));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("sp=none is weaker than p=quarantine"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("np=none is weaker than p=quarantine"),
            "{notes:?}"
        );
        let notes = subdomain_notes(&current("reject", Some("quarantine"), None));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].contains("set np=reject"), "{notes:?}");
    }
}
