//! External report destinations (RFC 7489 7.1, RFC 9990): when a policy's `rua`
//! mails reports to a host outside its domain, that host must publish
//! `<policy-domain>._report._dmarc.<report-host>` TXT `v=DMARC1` or receivers will
//! not send there. This computes, from the policies alone, which of those records
//! fall in a zone spfd serves (so spfd can publish them) and which destinations are
//! outside every served zone (their owner must publish them).

use serde::Serialize;

use crate::policy::ValidPolicy;

/// The text of every authorisation record.
pub const TEXT: &str = "v=DMARC1";

/// A record spfd can publish itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Served {
    /// The served zone the owner name falls in (absolute, lower case).
    pub zone: String,
    /// `<policy-domain>._report._dmarc.<report-host>.`
    pub owner: String,
    pub text: String,
}

/// A destination outside the zones spfd serves: its owner must publish the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct External {
    pub policy_domain: String,
    pub uri: String,
    pub owner: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Authorisations {
    pub served: Vec<Served>,
    pub external: Vec<External>,
}

/// Every authorisation the policies' `rua` URIs need, each once.
pub fn authorisations<'a>(policies: impl IntoIterator<Item = &'a ValidPolicy>) -> Authorisations {
    let policies: Vec<&ValidPolicy> = policies.into_iter().collect();
    let zones: Vec<String> = policies.iter().map(|p| bare(&p.zone_text)).collect();
    let mut out = Authorisations::default();
    for p in &policies {
        let Some(dmarc) = &p.dmarc else { continue };
        let domain = bare(&p.domain_text);
        for uri in dmarc.rua() {
            let Some(host) = mailto_host(uri) else { continue };
            if same_organisation(&domain, &host) {
                continue;
            }
            let owner = format!("{domain}._report._dmarc.{host}");
            match longest_zone(&zones, &owner) {
                Some(zone) => out.served.push(Served {
                    zone: format!("{zone}."),
                    owner: format!("{owner}."),
                    text: TEXT.to_string(),
                }),
                None => out.external.push(External {
                    policy_domain: domain.clone(),
                    uri: uri.clone(),
                    owner: format!("{owner}."),
                }),
            }
        }
    }
    out.served.sort_by(|a, b| a.owner.cmp(&b.owner));
    out.served.dedup();
    out.external.sort_by(|a, b| a.owner.cmp(&b.owner));
    out.external.dedup_by(|a, b| a.owner == b.owner);
    out
}

fn bare(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The authorisation records one policy's `rua` needs at other organisations' hosts:
/// (report host, `<policy-domain>._report._dmarc.<report-host>`), lower case, without
/// the trailing dot; each once.
pub fn needed(policy: &ValidPolicy) -> Vec<(String, String)> {
    let Some(dmarc) = &policy.dmarc else {
        return Vec::new();
    };
    let domain = bare(&policy.domain_text);
    let mut out: Vec<(String, String)> = dmarc
        .rua()
        .iter()
        .filter_map(|uri| mailto_host(uri))
        .filter(|host| !same_organisation(&domain, host))
        .map(|host| {
            let owner = format!("{domain}._report._dmarc.{host}");
            (host, owner)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The host of a `mailto:` URI (size limit and query dropped), lower case.
fn mailto_host(uri: &str) -> Option<String> {
    let rest = uri
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("mailto:"))
        .map(|_| &uri[7..])?;
    let address = rest.split(['?', '!']).next()?;
    let (_, host) = address.rsplit_once('@')?;
    Some(bare(host))
}

/// Without a public suffix list: one name is the other or below it. (Two subdomains
/// of one organisational domain are treated as different organisations, which only
/// asks for a record receivers would not need.)
fn same_organisation(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

fn longest_zone<'z>(zones: &'z [String], owner: &str) -> Option<&'z String> {
    zones
        .iter()
        .filter(|z| owner == z.as_str() || owner.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;

    fn policy(name: &str, text: &str) -> ValidPolicy {
        crate::policy::parse(&SourceFile::new(name, text)).unwrap().policy
    }

    #[test]
    fn served_and_external_destinations() {
        let reports_host = policy(
            "r.toml",
            "domain = \"reports.example.net\"\nzone = \"reports.example.net\"\n",
        );
        let a = policy(
            "a.toml",
            "domain = \"a.example\"\n[dmarc]\np = \"none\"\nrua = [\"mailto:d@reports.example.net!10m\", \
             \"mailto:x@a.example\", \"mailto:y@sub.a.example\", \"mailto:z@elsewhere.example\"]\n",
        );
        let b = policy(
            "b.toml",
            "domain = \"b.example\"\n[dmarc]\np = \"none\"\nrua = [\"mailto:D@Reports.Example.NET\"]\n",
        );
        let got = authorisations([&reports_host, &a, &b]);
        let served: Vec<(&str, &str)> = got
            .served
            .iter()
            .map(|s| (s.zone.as_str(), s.owner.as_str()))
            .collect();
        assert_eq!(
            served,
            vec![
                (
                    "reports.example.net.",
                    "a.example._report._dmarc.reports.example.net."
                ),
                (
                    "reports.example.net.",
                    "b.example._report._dmarc.reports.example.net."
                ),
            ]
        );
        assert_eq!(got.external.len(), 1, "{got:?}");
        assert_eq!(
            got.external[0].owner,
            "a.example._report._dmarc.elsewhere.example."
        );
        assert_eq!(got.external[0].uri, "mailto:z@elsewhere.example");
    }
}
