//! What a status page shows per domain (the report summary and the advice, one
//! serialisable value), and the alerts between two summaries: a new unauthorised
//! source above a volume threshold, or a legitimate sender that starts failing.
//! No HTTP here: `reports::watch` computes them for the admin server and `[alerts]`.

use serde::Serialize;

use super::advisor::{self, Advice, Thresholds};
use super::analysis::{self, Class, Context, Summary};
use super::spf_view::record_includes;
use super::spf_view::{SpfView, ViewError};
use super::store::{Store, StoreError};
use crate::config::Config;
use crate::policy::ValidPolicy;
use crate::snapshot::Snapshot;
use crate::spf::DnsLookup;

/// One domain on the status page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainStatus {
    pub summary: Summary,
    pub advice: Advice,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    View(#[from] ViewError),
}

/// The summary (since `since`, Unix) and the advice of one policy's domain.
pub async fn domain_status<D: DnsLookup>(
    config: &Config,
    policy: &ValidPolicy,
    server_includes: &[String],
    dns: &D,
    since: Option<i64>,
) -> Result<DomainStatus, StatusError> {
    let view = SpfView::build(config, policy, dns).await?;
    let store = Store::open_in(&config.state_dir)?;
    let ctx = Context {
        dns,
        view: &view,
        server_includes,
        ptr_timeout: config.upstream.timeout,
        reverse: true,
        trust: config.reports.trust,
    };
    let domain = policy.domain_text.trim_end_matches('.');
    let summary = analysis::summarise(&store, domain, since, &ctx).await?;
    let current = advisor::current_of(policy);
    let days = store.days_with_policy(domain, &current.p, i64::MIN, config.reports.trust)?;
    let advice = advisor::advise(&summary, &current, days, &Thresholds::default());
    Ok(DomainStatus { summary, advice })
}

/// Retention: deletes the reports whose range began longer ago than `[reports]
/// retention` (of every domain, served or not); the number deleted.
pub fn expire(store: &mut Store, config: &Config) -> Result<usize, StoreError> {
    let age = i64::try_from(config.reports.retention.as_secs()).unwrap_or(i64::MAX);
    store.expire(super::ingest::now().saturating_sub(age))
}

/// Include targets of every policy on the server but `except`.
pub fn server_includes(snapshot: &Snapshot, except: &ValidPolicy) -> Vec<String> {
    let mut out: Vec<String> = snapshot
        .zones
        .values()
        .filter(|z| z.policy.domain != except.domain)
        .filter_map(|z| z.policy.spf.as_ref())
        .flat_map(|spf| record_includes(&spf.record()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// When an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertThresholds {
    /// Messages from one new unauthorised source.
    pub unauthorised_messages: u64,
    /// Share of a legitimate sender's messages failing DMARC.
    pub failing_share: f64,
    /// ...and at least this many failing messages.
    pub failing_messages: u64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            unauthorised_messages: 100,
            failing_share: 0.05,
            failing_messages: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// An unauthorised source below the threshold (or absent) before, above it now.
    NewUnauthorised {
        ip: String,
        messages: u64,
        reverse: Vec<String>,
    },
    /// A legitimate sender that passed before (or is new) and now fails.
    LegitimateFailing {
        ip: String,
        class: Class,
        failing: u64,
        messages: u64,
    },
}

/// The alerts `after` raises against `before` (two periods of one domain).
pub fn alerts(before: &Summary, after: &Summary, t: &AlertThresholds) -> Vec<Alert> {
    let mut out = Vec::new();
    for s in &after.sources {
        let old = before.sources.iter().find(|o| o.ip == s.ip);
        if s.class == Class::Unauthorised && s.messages >= t.unauthorised_messages {
            let was_below =
                old.is_none_or(|o| o.class != Class::Unauthorised || o.messages < t.unauthorised_messages);
            if was_below {
                out.push(Alert::NewUnauthorised {
                    ip: s.ip.clone(),
                    messages: s.messages,
                    reverse: s.reverse.clone(),
                });
            }
        } else if s.class != Class::Unauthorised && failing(s, t) && !old.is_some_and(|o| failing(o, t)) {
            out.push(Alert::LegitimateFailing {
                ip: s.ip.clone(),
                class: s.class,
                failing: s.messages - s.dmarc_pass.min(s.messages),
                messages: s.messages,
            });
        }
    }
    out
}

fn failing(s: &analysis::Source, t: &AlertThresholds) -> bool {
    let failing = s.messages - s.dmarc_pass.min(s.messages);
    failing >= t.failing_messages && failing as f64 > t.failing_share * s.messages as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::analysis::Source;

    fn source(ip: &str, class: Class, messages: u64, pass: u64) -> Source {
        Source {
            ip: ip.into(),
            messages,
            class,
            spf_via: None,
            add: None,
            dmarc_pass: pass,
            spf_aligned_pass: pass,
            dkim_aligned_pass: pass,
            dkim_domains: Vec::new(),
            reverse: Vec::new(),
        }
    }

    fn summary(sources: Vec<Source>) -> Summary {
        serde_json::from_value(serde_json::json!({
            "domain": "shop.test", "since": null, "reports": 1, "receivers": 1, "messages": 0,
            "dmarc_pass": 0, "days": 1, "first": null, "last": null, "spf_origin": "resolved",
            "classes": {}, "sources": sources,
        }))
        .unwrap()
    }

    #[test]
    fn new_spoofing_above_the_threshold_and_a_sender_that_starts_failing_alert() {
        let t = AlertThresholds::default();
        let before = summary(vec![
            source("192.0.2.1", Class::Authorised, 1000, 1000),
            source("198.51.100.9", Class::Unauthorised, 50, 0),
            source("198.51.100.10", Class::Unauthorised, 500, 0),
            source("192.0.2.2", Class::Authorised, 1000, 900),
        ]);
        let after = summary(vec![
            source("192.0.2.1", Class::Authorised, 1000, 800),
            source("198.51.100.9", Class::Unauthorised, 150, 0),
            source("198.51.100.10", Class::Unauthorised, 600, 0),
            source("233.252.0.1", Class::Unauthorised, 99, 0),
            source("192.0.2.2", Class::Authorised, 1000, 850),
            source("192.0.2.3", Class::Forwarded, 100, 100),
        ]);
        let got = alerts(&before, &after, &t);
        assert_eq!(
            got,
            vec![
                Alert::LegitimateFailing {
                    ip: "192.0.2.1".into(),
                    class: Class::Authorised,
                    failing: 200,
                    messages: 1000
                },
                Alert::NewUnauthorised {
                    ip: "198.51.100.9".into(),
                    messages: 150,
                    reverse: vec![]
                },
            ]
        );
        assert!(alerts(&after, &after, &t).is_empty());
    }
}
