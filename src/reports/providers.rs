//! Known sending providers: how a source that passes DKIM but is outside the policy's
//! SPF is recognised as a provider whose include is missing.
//!
//! A provider is *known* when its include is either
//! 1. in [`TABLE`], and a domain of the source's mail matches the entry (a passing
//!    DKIM signature's d=, the envelope or SPF-checked domain, ending in one of the
//!    entry's domains), or
//! 2. named by an `include:` of another policy served by this spfd.
//!
//! Either way the source counts as that provider's only when its address is in the
//! include's resolved pass set (through `[upstream]`, like the flattener): a name alone
//! never makes a source "missing".

/// (domains seen in the provider's mail, the include its customers add).
pub const TABLE: &[(&[&str], &str)] = &[
    (
        &["google.com", "googlemail.com", "gappssmtp.com"],
        "_spf.google.com",
    ),
    (
        &["outlook.com", "protection.outlook.com", "onmicrosoft.com"],
        "spf.protection.outlook.com",
    ),
    (&["amazonses.com"], "amazonses.com"),
    (&["sendgrid.net", "sendgrid.com"], "sendgrid.net"),
    (&["mailgun.org", "mailgun.net"], "mailgun.org"),
    (
        &["mandrillapp.com", "mcsv.net", "mailchimp.com"],
        "spf.mandrillapp.com",
    ),
    (&["sparkpostmail.com"], "sparkpostmail.com"),
    (&["mtasv.net", "postmarkapp.com"], "spf.mtasv.net"),
    (&["zendesk.com"], "mail.zendesk.com"),
    (&["salesforce.com", "exacttarget.com"], "_spf.salesforce.com"),
    (&["mailjet.com"], "spf.mailjet.com"),
    (&["sendinblue.com", "brevo.com"], "spf.brevo.com"),
    (&["zoho.com", "zohomail.com"], "zoho.com"),
    (&["freshdesk.com"], "email.freshdesk.com"),
];

/// Candidate includes for a source, in the order they are tried: table entries the
/// source's domains match, then the includes of other policies.
pub fn candidates<'a>(
    domains: impl Iterator<Item = &'a str>,
    server_includes: &[String],
    own_includes: &[String],
) -> Vec<String> {
    let domains: Vec<String> = domains
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for (suffixes, include) in TABLE {
        let hit = domains
            .iter()
            .any(|d| suffixes.iter().any(|s| d == s || d.ends_with(&format!(".{s}"))));
        if hit {
            out.push((*include).to_string());
        }
    }
    out.extend(server_includes.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|i| !own_includes.contains(i) && seen.insert(i.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_signing_and_envelope_domains() {
        let got = candidates(
            [
                "example.com",
                "Example-COM.20230601.gappssmtp.com",
                "bounces.sendgrid.net",
            ]
            .into_iter(),
            &["_spf.other.test".into()],
            &[],
        );
        assert_eq!(got, vec!["_spf.google.com", "sendgrid.net", "_spf.other.test"]);
    }

    #[test]
    fn includes_the_policy_already_has_are_not_candidates() {
        let got = candidates(
            ["google.com"].into_iter(),
            &["_spf.google.com".into()],
            &["_spf.google.com".into()],
        );
        assert!(got.is_empty(), "{got:?}");
    }
}
