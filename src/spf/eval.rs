//! The check_host() function of RFC 7208 (sections 4 to 6): evaluates the SPF
//! record of a domain for a client address, following include and redirect, and
//! says which term decided the result and through which domains.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use super::directive::{Mechanism, Modifier};
use super::dns::{DnsLookup, LookupError, non_empty};
use super::macro_string::{MacroLetter, MacroString};
use super::macros::{MacroContext, split_sender};
use super::record::{Record, is_spf_record};
use super::result::SpfResult;
use crate::names;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Apply the processing limits of RFC 7208 4.6.4 (10 lookup terms, 2 void
    /// lookups, 10 MX names, 10 PTR names). Off, a record is judged by what it
    /// authorises however many lookups that takes (to compare a flattened record with
    /// its source); loops and nesting deeper than 50 still end in permerror.
    pub limits: bool,
    /// `%{r}` in explanations: the name of the host doing the check.
    pub receiver: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            limits: true,
            receiver: "unknown".to_string(),
        }
    }
}

impl EvalOptions {
    /// The default options with the lookup limits lifted.
    pub fn without_limits() -> Self {
        Self {
            limits: false,
            ..Self::default()
        }
    }
}

/// The message being checked: the arguments of check_host() other than `<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub client_ip: IpAddr,
    /// `<sender>`: the MAIL FROM address, or `postmaster@<helo>` when it is empty.
    pub sender: String,
    pub helo: String,
}

impl Query {
    /// The MAIL FROM identity (RFC 7208 2.4): an empty reverse-path is checked as
    /// `postmaster@<helo>`.
    pub fn new(client_ip: IpAddr, mail_from: &str, helo: &str) -> Self {
        let sender = if mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            mail_from.to_string()
        };
        Self {
            client_ip,
            sender,
            helo: helo.to_string(),
        }
    }

    /// The domain check_host() starts from: the domain of the sender.
    pub fn domain(&self) -> String {
        split_sender(&self.sender).1
    }
}

/// The result of check_host() and how it came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: SpfResult,
    /// The exact text of the term that decided: the mechanism that matched (inside
    /// an include, the inner one), or the term that caused an error. `None` when no
    /// term matched (neutral by default) or the record itself was the problem.
    pub decided_by: Option<String>,
    /// The domains traversed, from the one checked to the one holding `decided_by`.
    pub path: Vec<String>,
    /// The include or redirect term that led from each domain of `path` to the next.
    pub via: Vec<String>,
    /// Why, in words, for none, neutral by default, permerror and temperror.
    pub reason: Option<String>,
    /// For fail, the expanded text of the deciding record's `exp=` (RFC 7208 6.2).
    pub explanation: Option<String>,
    /// DNS-querying terms evaluated (include a mx ptr exists redirect).
    pub lookups: usize,
    /// Terms whose lookup found nothing (NXDOMAIN or NODATA).
    pub void_lookups: usize,
}

impl Verdict {
    /// `example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24`
    pub fn trail(&self) -> String {
        let mut out = self.path.first().cloned().unwrap_or_default();
        for (i, via) in self.via.iter().enumerate() {
            out.push_str(" -> ");
            out.push_str(via);
            let next = self.path.get(i + 1).map(String::as_str).unwrap_or("");
            if !via.to_ascii_lowercase().contains(&next.to_ascii_lowercase()) {
                out.push_str(&format!(" ({next})"));
            }
        }
        if let Some(term) = &self.decided_by {
            out.push_str(" -> ");
            out.push_str(term);
        }
        out
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.result, self.trail())?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

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

/// RFC 7208 4.6.4.
pub(super) const MAX_LOOKUPS: usize = 10;
pub(super) const MAX_VOID_LOOKUPS: usize = 2;
pub(super) const MAX_MX_NAMES: usize = 10;
pub(super) const MAX_PTR_NAMES: usize = 10;
/// With the limits lifted, evaluation still stops here (permerror): a record that
/// needs more is broken, not large.
const SAFETY_LOOKUPS: usize = 1000;
const SAFETY_DEPTH: usize = 50;

/// How far one record's evaluation got, before it is turned into a [`Verdict`].
#[derive(Debug)]
pub(super) struct Outcome {
    result: SpfResult,
    decided_by: Option<String>,
    path: Vec<String>,
    via: Vec<String>,
    reason: Option<String>,
    /// The `exp=` of the record that decided and that record's domain. An include's
    /// is dropped; a redirect's target replaces the redirecting record's (6.2).
    exp: Option<(MacroString, String)>,
}

impl Outcome {
    fn new(result: SpfResult, domain: &str, decided_by: Option<&str>, reason: Option<String>) -> Self {
        Self {
            result,
            decided_by: decided_by.map(str::to_string),
            path: vec![domain.to_string()],
            via: Vec::new(),
            reason,
            exp: None,
        }
    }

    /// This outcome as reached from `domain` through the term `via`.
    fn under(mut self, domain: &str, via: &str) -> Self {
        self.path.insert(0, domain.to_string());
        self.via.insert(0, via.to_string());
        self
    }
}

/// Stops the evaluation of a record with an error result.
#[derive(Debug)]
pub(super) struct Abort {
    result: SpfResult,
    reason: String,
    /// The error came from an include target: its own outcome, to keep the path.
    inner: Option<Box<Outcome>>,
}

impl Abort {
    pub(super) fn perm(reason: String) -> Self {
        Self {
            result: SpfResult::PermError,
            reason,
            inner: None,
        }
    }

    pub(super) fn temp(what: &str, error: &LookupError) -> Self {
        Self {
            result: SpfResult::TempError,
            reason: format!("{what}: {error}"),
            inner: None,
        }
    }

    fn into_outcome(self, domain: &str, term: &str) -> Outcome {
        match self.inner {
            Some(inner) => inner.under(domain, term),
            None => Outcome::new(self.result, domain, Some(term), Some(self.reason)),
        }
    }
}

/// Whether a mechanism matched.
pub(super) enum Match {
    No,
    Yes,
    /// An include whose target passed: its outcome, for the path.
    Through(Outcome),
}

impl From<bool> for Match {
    fn from(matched: bool) -> Self {
        if matched { Match::Yes } else { Match::No }
    }
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
mod tests;
