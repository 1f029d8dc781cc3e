//! Whether report mail comes from the organisation it names: a DKIM signature that
//! passes (checked by `mail-auth`, keys looked up through `[upstream]`) with a d=
//! aligned (relaxed: one name is the other or under it) with the domain of the
//! report's `email` contact or of the mail's single From: address. Such a report is
//! [`Trust::Verified`] and its signer names the organisation; anything else that
//! arrived by mail is [`Trust::Unverified`]: anyone can send it.
//!
//! DNS is async and the importer is not: [`Verifier::check`] is the async call, and
//! [`MailCheck`] runs it on a runtime handle from the importer's blocking thread.

use std::sync::Arc;
use std::time::Duration;

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use super::model::{Report, relaxed_aligned};
use super::store::{Assessed, Trust};
use crate::config::UpstreamConfig;

/// Signatures checked per message: each costs a DNS lookup, and real report mail
/// carries one or two. The ones past this are ignored.
pub const MAX_SIGNATURES: usize = 8;
/// The time one message's checks may take together; past it the message counts as
/// unverified.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up DKIM verification of report mail through [upstream]: {0}")]
pub struct VerifyError(String);

/// Checks the DKIM signatures of report mail.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
}

/// What one message's signatures say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailAuth {
    /// The domain of the From: address, when there is exactly one.
    pub from_domain: Option<String>,
    /// The d= of every signature that passed (lower case, no trailing dot).
    pub dkim_pass: Vec<String>,
}

impl Verifier {
    /// Looks keys up with the `[upstream]` nameservers, timeout and DNSSEC setting.
    pub fn new(upstream: &UpstreamConfig) -> Result<Verifier, VerifyError> {
        let resolver = crate::upstream::resolver(upstream).map_err(|e| VerifyError(e.to_string()))?;
        Ok(Verifier {
            auth: MessageAuthenticator(resolver),
        })
    }

    /// The passing signatures of a raw message (no signature, a message that does not
    /// parse, or time running out: none).
    pub async fn check(&self, raw: &[u8]) -> MailAuth {
        let Some(mut message) = AuthenticatedMessage::parse(raw) else {
            return MailAuth::default();
        };
        message.dkim_headers.truncate(MAX_SIGNATURES);
        let from_domain = match message.froms() {
            [one] => domain_of(one),
            _ => None,
        };
        let dkim_pass = match tokio::time::timeout(CHECK_TIMEOUT, self.auth.verify_dkim(&message)).await {
            Ok(outputs) => outputs
                .iter()
                .filter(|o| *o.result() == DkimResult::Pass)
                .filter_map(|o| o.signature())
                .map(|s| normal(&s.d))
                .collect(),
            Err(_) => Vec::new(),
        };
        MailAuth {
            from_domain,
            dkim_pass,
        }
    }
}

impl MailAuth {
    /// The trust of a report found in this message.
    pub fn assess(&self, report: &Report) -> Assessed {
        let contact = report.email.as_deref().and_then(domain_of);
        let org_domains: Vec<&str> = [contact.as_deref(), self.from_domain.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let signer = self
            .dkim_pass
            .iter()
            .find(|d| org_domains.iter().any(|o| relaxed_aligned(d, o)));
        match signer {
            Some(d) => Assessed {
                trust: Trust::Verified,
                signer: Some(d.clone()),
            },
            None => Assessed::UNVERIFIED,
        }
    }
}

/// The domain of an address (`mailto:` and angle brackets tolerated).
fn domain_of(address: &str) -> Option<String> {
    let a = address.trim().trim_start_matches("mailto:");
    let a = a.trim_matches(|c| c == '<' || c == '>');
    let (_, domain) = a.rsplit_once('@')?;
    let domain = normal(domain);
    (!domain.is_empty()).then_some(domain)
}

fn normal(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A [`Verifier`] for sync code on a blocking thread (never on a runtime worker:
/// `block_on` there panics).
#[derive(Clone)]
pub struct MailCheck {
    verifier: Arc<Verifier>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for MailCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailCheck")
    }
}

impl MailCheck {
    pub fn new(verifier: Arc<Verifier>, runtime: tokio::runtime::Handle) -> Self {
        MailCheck { verifier, runtime }
    }

    pub fn check_blocking(&self, raw: &[u8]) -> MailAuth {
        self.runtime.block_on(self.verifier.check(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(email: Option<&str>) -> Report {
        let mut r = crate::reports::xml::parse(
            b"<feedback><report_metadata><org_name>R</org_name><report_id>1</report_id>\
              <date_range><begin>0</begin><end>1</end></date_range></report_metadata>\
              <policy_published><domain>firm.test</domain></policy_published></feedback>",
        )
        .unwrap();
        r.email = email.map(str::to_string);
        r
    }

    fn auth(from: Option<&str>, pass: &[&str]) -> MailAuth {
        MailAuth {
            from_domain: from.map(str::to_string),
            dkim_pass: pass.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_signature_must_align_with_the_contact_or_the_from_domain() {
        let google = report(Some("noreply-dmarc-support@google.com"));
        let verified = auth(Some("google.com"), &["google.com"]).assess(&google);
        assert_eq!(verified.trust, Trust::Verified);
        assert_eq!(verified.signer.as_deref(), Some("google.com"));
        // A parent or child of the contact's domain aligns (relaxed).
        let child = auth(None, &["mail.google.com"]).assess(&google);
        assert_eq!(child.trust, Trust::Verified);
        // A signature of another organisation does not vouch for this one...
        assert_eq!(
            auth(Some("forger.test"), &["mailer.test"]).assess(&google),
            Assessed::UNVERIFIED
        );
        // ...nor does no signature, whatever the headers claim.
        assert_eq!(
            auth(Some("google.com"), &[]).assess(&google),
            Assessed::UNVERIFIED
        );
        // Without a contact in the report, the From: domain names the organisation.
        let bare = report(None);
        assert_eq!(
            auth(Some("reports.example"), &["example"]).assess(&bare).trust,
            Trust::Verified
        );
        assert_eq!(auth(None, &["example"]).assess(&bare), Assessed::UNVERIFIED);
    }

    #[test]
    fn addresses_give_their_domain() {
        assert_eq!(domain_of("mailto:A@Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(domain_of("<x@y.test>").as_deref(), Some("y.test"));
        assert_eq!(domain_of("no-at-sign"), None);
        assert_eq!(domain_of("x@"), None);
    }
}
