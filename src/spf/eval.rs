//! The check_host() function of RFC 7208 (sections 4 to 6): evaluates the SPF
//! record of a domain for a client address, following include and redirect, and
//! says which term decided the result and through which domains.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use super::directive::{Mechanism, Modifier};
use super::dns::{DnsLookup, LookupError, non_empty};
use super::macro_string::{MacroLetter, MacroString};
use super::macros::MacroContext;
use super::outcome::{Abort, MAX_LOOKUPS, MAX_VOID_LOOKUPS, Match, Outcome, SAFETY_DEPTH, SAFETY_LOOKUPS};
use super::query::{EvalOptions, Query, Verdict};
use super::record::{Record, is_spf_record};
use super::result::SpfResult;
use crate::names;

/// check_host(`<ip>`, `<domain>`, `<sender>`) of RFC 7208 4: fetches and evaluates
/// the SPF record of `domain`.
pub async fn check_host<D: DnsLookup>(
    dns: &D,
    domain: &str,
    query: &Query,
    options: &EvalOptions,
) -> Verdict {
    let mut ev = Evaluator::new(dns, domain, query, options);
    let outcome = ev.check_domain(domain.to_string()).await;
    ev.finish(outcome).await
}

/// Evaluates `record` as if it were published at `domain` (includes and redirects
/// are still looked up through `dns`).
pub async fn check_record<D: DnsLookup>(
    dns: &D,
    record: &Record,
    domain: &str,
    query: &Query,
    options: &EvalOptions,
) -> Verdict {
    let mut ev = Evaluator::new(dns, domain, query, options);
    let outcome = ev.eval_record(domain, record).await;
    ev.finish(outcome).await
}

/// The state of one check_host() evaluation, shared across includes and redirects.
pub(super) struct Evaluator<'a, D> {
    pub(super) dns: &'a D,
    pub(super) limits: bool,
    /// Macro values; `domain` and `ptr_name` are set for each expansion.
    pub(super) ctx: MacroContext,
    pub(super) lookups: usize,
    pub(super) voids: usize,
    /// The domains being evaluated (include and redirect chain), lower case.
    stack: Vec<String>,
}

type BoxedOutcome<'s> = Pin<Box<dyn Future<Output = Outcome> + Send + 's>>;

impl<'a, D: DnsLookup> Evaluator<'a, D> {
    fn new(dns: &'a D, domain: &str, query: &Query, options: &EvalOptions) -> Self {
        let mut ctx = MacroContext::new(query.client_ip, &query.sender, &query.helo, domain);
        ctx.receiver = options.receiver.clone();
        ctx.now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            dns,
            limits: options.limits,
            ctx,
            lookups: 0,
            voids: 0,
            stack: Vec::new(),
        }
    }

    async fn finish(&mut self, outcome: Outcome) -> Verdict {
        let explanation = match (&outcome.result, &outcome.exp) {
            (SpfResult::Fail, Some((spec, domain))) => self.explanation(spec, domain).await,
            _ => None,
        };
        Verdict {
            result: outcome.result,
            decided_by: outcome.decided_by,
            path: outcome.path,
            via: outcome.via,
            reason: outcome.reason,
            explanation,
            lookups: self.lookups,
            void_lookups: self.voids,
        }
    }

    /// check_host() for `domain`: its validity (4.3), its record (4.4, 4.5), then
    /// the evaluation. Boxed because include and redirect recurse.
    fn check_domain(&mut self, domain: String) -> BoxedOutcome<'_> {
        Box::pin(async move {
            if !names::is_valid_domain(&domain) {
                let why = format!("`{domain}` is not a valid domain name (RFC 7208 4.3)");
                return Outcome::new(SpfResult::None, &domain, None, Some(why));
            }
            match self.fetch_record(&domain).await {
                Ok(record) => self.eval_record(&domain, &record).await,
                Err(outcome) => outcome,
            }
        })
    }

    /// The one SPF record at `domain` (4.4, 4.5).
    async fn fetch_record(&self, domain: &str) -> Result<Record, Outcome> {
        let fail = |result, why: String| Outcome::new(result, domain, None, Some(why));
        let texts = match self.dns.txt(domain).await.and_then(non_empty) {
            Ok(texts) => texts,
            Err(LookupError::Temporary(e)) => {
                return Err(fail(SpfResult::TempError, format!("TXT lookup of {domain}: {e}")));
            }
            Err(e) => return Err(fail(SpfResult::None, format!("no SPF record at {domain}: {e}"))),
        };
        let mut spf = texts.iter().filter(|t| is_spf_record(t));
        match (spf.next(), spf.next()) {
            (None, _) => Err(fail(SpfResult::None, format!("no SPF record at {domain}"))),
            (Some(_), Some(_)) => Err(fail(
                SpfResult::PermError,
                format!("{domain} has more than one v=spf1 record (RFC 7208 4.5)"),
            )),
            (Some(text), None) => Record::parse(text).map_err(|e| {
                fail(
                    SpfResult::PermError,
                    format!("the record of {domain} is invalid {e}"),
                )
            }),
        }
    }

    pub(super) async fn eval_record(&mut self, domain: &str, record: &Record) -> Outcome {
        self.stack.push(names::normalize(domain));
        let outcome = self.eval_terms(domain, record).await;
        self.stack.pop();
        outcome
    }

    /// Directives left to right; the first match decides (4.6.2); then redirect
    /// (6.1); then neutral (4.7).
    async fn eval_terms(&mut self, domain: &str, record: &Record) -> Outcome {
        let exp = record.exp().map(|spec| (spec.clone(), domain.to_string()));
        for term in record.terms() {
            let Some(directive) = term.directive() else {
                continue;
            };
            let mut outcome = match self.eval_mechanism(&directive.mechanism, domain).await {
                Ok(Match::No) => continue,
                Ok(Match::Yes) => Outcome::new(SpfResult::Pass, domain, Some(term.text()), None),
                Ok(Match::Through(inner)) => inner.under(domain, term.text()),
                Err(abort) => return abort.into_outcome(domain, term.text()),
            };
            outcome.result = directive.qualifier.result();
            outcome.exp = exp;
            return outcome;
        }
        let redirect = record.terms().iter().find_map(|t| match t.modifier() {
            Some(Modifier::Redirect(spec)) => Some((spec, t.text())),
            _ => None,
        });
        match redirect {
            Some((spec, text)) => self.redirect(domain, spec, text).await,
            None => {
                let why = "no mechanism matched and there is no redirect (RFC 7208 4.7)".to_string();
                Outcome::new(SpfResult::Neutral, domain, None, Some(why))
            }
        }
    }

    async fn eval_mechanism(&mut self, mechanism: &Mechanism, domain: &str) -> Result<Match, Abort> {
        let client = self.ctx.client_ip;
        match mechanism {
            Mechanism::All => Ok(Match::Yes),
            Mechanism::Ip4(net) => Ok(matches!(client, IpAddr::V4(ip) if net.contains(&ip)).into()),
            Mechanism::Ip6(net) => Ok(matches!(client, IpAddr::V6(ip) if net.contains(&ip)).into()),
            Mechanism::Include(spec) => self.include(spec, domain).await,
            Mechanism::A {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let target = self.target(spec.as_ref(), domain).await?;
                self.match_a(&target, *cidr4, *cidr6).await
            }
            Mechanism::Mx {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let target = self.target(spec.as_ref(), domain).await?;
                self.match_mx(&target, *cidr4, *cidr6).await
            }
            Mechanism::Ptr(spec) => {
                let target = self.target(spec.as_ref(), domain).await?;
                self.match_ptr(&target).await
            }
            Mechanism::Exists(spec) => {
                let target = self.target(Some(spec), domain).await?;
                self.match_exists(&target).await
            }
        }
    }

    /// Counts a DNS-querying term and expands its target (the current domain when
    /// none is written).
    async fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> Result<String, Abort> {
        self.count_lookup()?;
        Ok(match spec {
            Some(spec) => self.expand_name(spec, domain).await,
            None => domain.to_string(),
        })
    }

    /// include (5.2): the target's pass is a match; fail, softfail and neutral are
    /// not; temperror and permerror propagate; none is permerror.
    async fn include(&mut self, spec: &MacroString, domain: &str) -> Result<Match, Abort> {
        let target = self.target(Some(spec), domain).await?;
        self.check_nesting(&target)?;
        let inner = self.check_domain(target.clone()).await;
        match inner.result {
            SpfResult::Pass => Ok(Match::Through(inner)),
            SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(Match::No),
            SpfResult::TempError | SpfResult::PermError => Err(Abort {
                result: inner.result,
                reason: String::new(),
                inner: Some(Box::new(inner)),
            }),
            SpfResult::None => Err(Abort::perm(format!(
                "include target {target} has no SPF record, which makes the include permerror (RFC 7208 5.2)"
            ))),
        }
    }

    /// redirect (6.1): the target's result is the result; none is permerror.
    async fn redirect(&mut self, domain: &str, spec: &MacroString, text: &str) -> Outcome {
        let target = match self.target(Some(spec), domain).await {
            Ok(target) => target,
            Err(abort) => return abort.into_outcome(domain, text),
        };
        if let Err(abort) = self.check_nesting(&target) {
            return abort.into_outcome(domain, text);
        }
        let inner = self.check_domain(target.clone()).await;
        if inner.result == SpfResult::None {
            let why = format!(
                "redirect target {target} has no SPF record, which makes the redirect permerror (RFC 7208 6.1)"
            );
            return Outcome::new(SpfResult::PermError, domain, Some(text), Some(why));
        }
        inner.under(domain, text)
    }

    fn count_lookup(&mut self) -> Result<(), Abort> {
        self.lookups += 1;
        if self.limits && self.lookups > MAX_LOOKUPS {
            return Err(Abort::perm(format!(
                "more than {MAX_LOOKUPS} terms that cost a DNS lookup (include a mx ptr exists redirect) (RFC 7208 4.6.4)"
            )));
        }
        if self.lookups > SAFETY_LOOKUPS {
            return Err(Abort::perm(format!(
                "more than {SAFETY_LOOKUPS} DNS-querying terms even with the limits lifted"
            )));
        }
        Ok(())
    }

    /// A term whose lookup found nothing (4.6.4).
    pub(super) fn note_void(&mut self) -> Result<(), Abort> {
        self.voids += 1;
        if self.limits && self.voids > MAX_VOID_LOOKUPS {
            return Err(Abort::perm(format!(
                "more than {MAX_VOID_LOOKUPS} void lookups (NXDOMAIN or no records) (RFC 7208 4.6.4)"
            )));
        }
        Ok(())
    }

    /// With the limits lifted nothing else stops a loop, so one is caught here.
    fn check_nesting(&self, target: &str) -> Result<(), Abort> {
        if self.limits {
            return Ok(());
        }
        if self.stack.contains(&names::normalize(target)) {
            return Err(Abort::perm(format!(
                "{target} includes or redirects to itself (a loop)"
            )));
        }
        if self.stack.len() >= SAFETY_DEPTH {
            return Err(Abort::perm(format!(
                "include and redirect nested more than {SAFETY_DEPTH} deep"
            )));
        }
        Ok(())
    }

    /// A domain-spec expanded for `domain` into a name to query.
    async fn expand_name(&mut self, spec: &MacroString, domain: &str) -> String {
        let ctx = self.context_for(spec, domain).await;
        spec.expand_domain(&ctx)
    }

    /// The macro context at `domain`, with `%{p}` looked up when `spec` uses it.
    async fn context_for(&mut self, spec: &MacroString, domain: &str) -> MacroContext {
        let mut ctx = self.ctx.clone();
        ctx.domain = domain.to_string();
        if spec.uses(MacroLetter::PtrName) {
            ctx.ptr_name = self.validated_name(domain).await;
        }
        ctx
    }

    /// The explanation of a fail (6.2): any problem means there is none.
    async fn explanation(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        let name = self.expand_name(spec, domain).await;
        if !names::is_queryable(&name) {
            return None;
        }
        let texts = self.dns.txt(&name).await.ok()?;
        let [text] = texts.as_slice() else { return None };
        let text = MacroString::parse_explanation(text).ok()?;
        let ctx = self.context_for(&text, domain).await;
        Some(text.expand(&ctx))
    }
}

#[cfg(test)]
/// check_host() scenarios: how the deciding term and the path are reported, the
/// include and redirect mappings, the limits and their lifting. The RFC 7208 suite
/// (tests/spf_rfc7208.rs) covers the rest of the semantics.
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::spf::MemoryDns;

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn world() -> MemoryDns {
        let mut dns = MemoryDns::new();
        dns.add_txt(
            "example.com",
            "v=spf1 -ip4:192.0.2.66 include:_spf.provider.test mx ~all exp=why.example.com",
        )
        .add_txt("why.example.com", "%{i} is not allowed to send as %{d}")
        .add_mx("example.com", "mx.example.com")
        .add_a("mx.example.com", Ipv4Addr::new(198, 51, 100, 25))
        .add_txt(
            "_spf.provider.test",
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
        )
        .add_txt(
            "redirected.test",
            "v=spf1 redirect=example.com exp=never.example.com",
        )
        .add_txt("broken.test", "v=spf1 include:nothing.test -all")
        .add_txt("slow.test", "v=spf1 a:timeout.test -all")
        .add_name("timeout.test")
        .fail_temporarily("timeout.test")
        .add_txt("loop.test", "v=spf1 include:loop.test -all")
        .add_txt(
            "many.test",
            "v=spf1 a:1.many.test a:2.many.test a:3.many.test ip4:192.0.2.9 -all",
        );
        dns
    }

    fn check(dns: &MemoryDns, domain: &str, ip: &str, options: &EvalOptions) -> Verdict {
        let query = Query::new(ip.parse().unwrap(), &format!("user@{domain}"), "mail.example.org");
        block(check_host(dns, domain, &query, options))
    }

    #[test]
    fn verdicts() {
        let dns = world();
        // (domain, client, result, decided_by, trail)
        let cases = [
            (
                "example.com",
                "192.0.2.10",
                SpfResult::Pass,
                Some("ip4:192.0.2.0/24"),
                "example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
            ),
            (
                "example.com",
                "2001:db8::5",
                SpfResult::Pass,
                Some("ip6:2001:db8::/32"),
                "example.com -> include:_spf.provider.test -> ip6:2001:db8::/32",
            ),
            (
                "example.com",
                "::ffff:192.0.2.10",
                SpfResult::Pass,
                Some("ip4:192.0.2.0/24"),
                "example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
            ),
            (
                "example.com",
                "192.0.2.66",
                SpfResult::Fail,
                Some("-ip4:192.0.2.66"),
                "example.com -> -ip4:192.0.2.66",
            ),
            (
                "example.com",
                "198.51.100.25",
                SpfResult::Pass,
                Some("mx"),
                "example.com -> mx",
            ),
            (
                "example.com",
                "203.0.113.1",
                SpfResult::SoftFail,
                Some("~all"),
                "example.com -> ~all",
            ),
            (
                "redirected.test",
                "192.0.2.10",
                SpfResult::Pass,
                Some("ip4:192.0.2.0/24"),
                "redirected.test -> redirect=example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
            ),
            (
                "broken.test",
                "192.0.2.10",
                SpfResult::PermError,
                Some("include:nothing.test"),
                "broken.test -> include:nothing.test",
            ),
            (
                "slow.test",
                "192.0.2.10",
                SpfResult::TempError,
                Some("a:timeout.test"),
                "slow.test -> a:timeout.test",
            ),
            (
                "nothing.test",
                "192.0.2.10",
                SpfResult::None,
                None,
                "nothing.test",
            ),
            (
                "many.test",
                "192.0.2.9",
                SpfResult::PermError,
                Some("a:3.many.test"),
                "many.test -> a:3.many.test",
            ),
        ];
        for (domain, ip, result, decided_by, trail) in cases {
            let v = check(&dns, domain, ip, &EvalOptions::default());
            assert_eq!(v.result, result, "{domain} {ip}: {v}");
            assert_eq!(v.decided_by.as_deref(), decided_by, "{domain} {ip}: {v}");
            assert_eq!(v.trail(), trail, "{domain} {ip}");
        }
    }

    #[test]
    fn reasons_explain_errors_and_defaults() {
        let dns = world();
        let broken = check(&dns, "broken.test", "192.0.2.10", &EvalOptions::default());
        assert!(
            broken.reason.as_deref().unwrap().contains("has no SPF record"),
            "{broken}"
        );
        let slow = check(&dns, "slow.test", "192.0.2.10", &EvalOptions::default());
        assert!(
            slow.reason
                .as_deref()
                .unwrap()
                .contains("A lookup of timeout.test"),
            "{slow}"
        );
        let voids = check(&dns, "many.test", "192.0.2.9", &EvalOptions::default());
        assert!(
            voids.reason.as_deref().unwrap().contains("void lookups"),
            "{voids}"
        );
        assert_eq!((voids.lookups, voids.void_lookups), (3, 3));
    }

    #[test]
    fn explanation_comes_from_the_deciding_record_only() {
        let dns = world();
        let fail = check(&dns, "example.com", "192.0.2.66", &EvalOptions::default());
        assert_eq!(
            fail.explanation.as_deref(),
            Some("192.0.2.66 is not allowed to send as example.com")
        );
        // After a redirect the target's exp= applies; the redirecting record's does not.
        let redirected = check(&dns, "redirected.test", "192.0.2.66", &EvalOptions::default());
        assert_eq!(
            redirected.explanation.as_deref(),
            Some("192.0.2.66 is not allowed to send as example.com")
        );
        let softfail = check(&dns, "example.com", "203.0.113.1", &EvalOptions::default());
        assert_eq!(softfail.explanation, None);
    }

    #[test]
    fn lifting_the_limits() {
        let dns = world();
        let lifted = check(&dns, "many.test", "192.0.2.9", &EvalOptions::without_limits());
        assert_eq!(lifted.result, SpfResult::Pass, "{lifted}");
        let looped = check(&dns, "loop.test", "192.0.2.9", &EvalOptions::without_limits());
        assert_eq!(looped.result, SpfResult::PermError);
        assert!(looped.reason.as_deref().unwrap().contains("loop"), "{looped}");
        let limited = check(&dns, "loop.test", "192.0.2.9", &EvalOptions::default());
        assert_eq!(limited.result, SpfResult::PermError);
        assert!(
            limited.reason.as_deref().unwrap().contains("more than 10"),
            "{limited}"
        );
    }

    #[test]
    fn a_record_not_yet_published() {
        let dns = world();
        let record = Record::parse("v=spf1 include:_spf.provider.test a:mx.example.com/24 -all").unwrap();
        let query = Query::new(IpAddr::V6(Ipv6Addr::LOCALHOST), "user@new.test", "h.example");
        let v6 = block(check_record(
            &dns,
            &record,
            "new.test",
            &query,
            &EvalOptions::default(),
        ));
        assert_eq!(
            (v6.result, v6.decided_by.as_deref()),
            (SpfResult::Fail, Some("-all"))
        );
        let query = Query::new("198.51.100.200".parse().unwrap(), "user@new.test", "h.example");
        let v4 = block(check_record(
            &dns,
            &record,
            "new.test",
            &query,
            &EvalOptions::default(),
        ));
        assert_eq!(
            (v4.result, v4.decided_by.as_deref()),
            (SpfResult::Pass, Some("a:mx.example.com/24"))
        );
        assert_eq!(v4.path, vec!["new.test".to_string()]);
    }

    #[test]
    fn macro_targets_show_the_expanded_domain() {
        let mut dns = MemoryDns::new();
        dns.add_txt("example.com", "v=spf1 include:%{ir}.%{v}._spf.example.com -all")
            .add_txt("5.2.0.192.in-addr._spf.example.com", "v=spf1 +all");
        let v = check(&dns, "example.com", "192.0.2.5", &EvalOptions::default());
        assert_eq!(v.result, SpfResult::Pass);
        assert_eq!(
            v.trail(),
            "example.com -> include:%{ir}.%{v}._spf.example.com (5.2.0.192.in-addr._spf.example.com) -> +all"
        );
    }

    #[test]
    fn evaluation_runs_on_a_multi_threaded_runtime() {
        // tokio::spawn requires the future to be Send: this test compiles only if it is.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let verdict = runtime.block_on(async {
            let dns = world();
            let query = Query::new("192.0.2.10".parse().unwrap(), "user@example.com", "h.example");
            let task = tokio::spawn(async move {
                check_host(&dns, "example.com", &query, &EvalOptions::default()).await
            });
            task.await.unwrap()
        });
        assert_eq!(verdict.result, SpfResult::Pass);
    }
}
