//! The report tags of `[dmarc]`: `rua` and `ruf` URIs (RFC 7489 6.2, RFC 9989),
//! and the advice about report destinations outside the domain.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;

use super::de::OneOrMany;
use crate::diag::Diagnostics;
use crate::names::{self, Rules};

pub(super) fn warn_no_rua(domain: &str, section_span: Range<usize>, diags: &mut Diagnostics) {
    let msg = format!(
        "dmarc has no rua, so no aggregate reports will arrive and you will not see who sends \
         mail as {domain}: add rua = [\"mailto:dmarc-reports@{domain}\"]"
    );
    diags.warning(section_span, msg);
}

pub(super) fn warn_about_failure_reports(
    ruf_span: Option<Range<usize>>,
    fo_span: Option<Range<usize>>,
    diags: &mut Diagnostics,
) {
    match (ruf_span, fo_span) {
        (Some(ruf), _) => diags.warning(
            ruf,
            "dmarc ruf: many receivers never send failure reports (they would carry personal \
             data), so do not count on them; the rua aggregate reports are what to watch",
        ),
        (None, Some(fo)) => diags.warning(
            fo,
            "dmarc fo only selects when failure reports (ruf) are sent, and ruf is not set: \
             remove fo, or add ruf",
        ),
        (None, None) => {}
    }
}

/// Checks report URIs, and remembers which outside report domains were already
/// named so that each gets one authorisation warning.
pub(super) struct ReportDomains {
    domain: String,
    warned: BTreeSet<String>,
}

impl ReportDomains {
    pub(super) fn new(domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        Self {
            domain,
            warned: BTreeSet::new(),
        }
    }

    pub(super) fn check(
        &mut self,
        tag: &str,
        value: Option<Spanned<OneOrMany<String>>>,
        diags: &mut Diagnostics,
    ) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let whole = value.span();
        let mut uris = Vec::new();
        for entry in value.into_inner().into_items(whole) {
            match check_uri(entry.get_ref(), &self.domain) {
                Ok(kind) => {
                    self.advise(tag, &entry, kind, diags);
                    uris.push(entry.into_inner());
                }
                Err(why) => {
                    diags.error(
                        entry.span(),
                        format!("dmarc {tag} entry {:?} {why}", entry.get_ref()),
                    );
                }
            }
        }
        uris
    }

    fn advise(&mut self, tag: &str, entry: &Spanned<String>, kind: UriKind, diags: &mut Diagnostics) {
        let msg = match kind {
            UriKind::Mailbox(host) => {
                let inside = host == self.domain || host.ends_with(&format!(".{}", self.domain));
                if inside || !self.warned.insert(host.clone()) {
                    return;
                }
                format!(
                    "dmarc {tag} entry {:?} sends reports outside {d}: {host} must publish TXT \
                     \"v=DMARC1\" at {d}._report._dmarc.{host}, or receivers will not send \
                     reports there (not needed if both share an organisational domain)",
                    entry.get_ref(),
                    d = self.domain
                )
            }
            UriKind::Other(scheme) => format!(
                "dmarc {tag} entry {:?} uses the {scheme} scheme; receivers deliver reports only \
                 to mailto: URIs",
                entry.get_ref()
            ),
        };
        diags.warning(entry.span(), msg);
    }
}

/// What a valid report URI points at.
#[derive(Debug, PartialEq, Eq)]
enum UriKind {
    /// A mailto: URI; the domain of its mailbox, lower-cased.
    Mailbox(String),
    /// Any other scheme, lower-cased.
    Other(String),
}

/// Checks one `dmarc-uri`. The error completes "dmarc rua entry "<uri>" ..."
/// and says what to write instead.
fn check_uri(raw: &str, domain: &str) -> Result<UriKind, String> {
    if raw.is_empty() {
        return Err(format!(
            "is empty: write a URI such as mailto:dmarc-reports@{domain}"
        ));
    }
    if raw.chars().any(char::is_whitespace) {
        let why = "contains whitespace: remove it (inside a URI, write a space as %20)";
        return Err(why.to_string());
    }
    let uri = strip_size_limit(raw)?;
    if let Some(c) = uri.chars().find(|c| matches!(c, ',' | ';' | '!')) {
        let (escaped, hint) = match c {
            ',' => ("%2C", "; to give several URIs, make each its own array entry"),
            ';' => ("%3B", ""),
            _ => ("%21", "; only a size limit such as !10m may follow the URI"),
        };
        return Err(format!(
            "contains an unescaped {c:?}: write it as {escaped}{hint}"
        ));
    }
    let Some((scheme, rest)) = split_scheme(uri) else {
        if uri.contains('@') {
            return Err(format!("is not a URI: write mailto:{raw}"));
        }
        return Err(format!(
            "is not a URI: write one with a scheme, such as mailto:dmarc-reports@{domain}"
        ));
    };
    if !scheme.eq_ignore_ascii_case("mailto") {
        return Ok(UriKind::Other(scheme.to_ascii_lowercase()));
    }
    let address = rest.split('?').next().unwrap_or_default();
    match address.rsplit_once('@') {
        Some((local, host))
            if !local.is_empty() && !host.ends_with('.') && names::check_name(host, Rules::Host).is_ok() =>
        {
            Ok(UriKind::Mailbox(host.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "is not a mailbox: write mailto:local-part@domain, \
             such as mailto:dmarc-reports@{domain}"
        )),
    }
}

/// Removes a trailing `!<digits>[kmgt]` size limit.
fn strip_size_limit(raw: &str) -> Result<&str, String> {
    let Some((uri, size)) = raw.rsplit_once('!') else {
        return Ok(raw);
    };
    let digits = size
        .strip_suffix(|c: char| "kmgtKMGT".contains(c))
        .unwrap_or(size);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(uri);
    }
    Err(format!(
        "has a bad size limit \"!{size}\": write ! then digits and an optional unit k, m, g or t \
         at the very end (e.g. !10m), and any other '!' as %21"
    ))
}

/// `scheme ":" rest`, where scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986).
fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::*;

    #[test]
    fn uri_checks() {
        let ok = [
            ("mailto:a@example.com", UriKind::Mailbox("example.com".into())),
            ("MAILTO:a@Example.COM!50k", UriKind::Mailbox("example.com".into())),
            (
                "mailto:a%2Cb@example.com?subject=x",
                UriKind::Mailbox("example.com".into()),
            ),
            ("https://example.com/dmarc", UriKind::Other("https".into())),
        ];
        for (uri, kind) in ok {
            assert_eq!(check_uri(uri, "example.com"), Ok(kind), "{uri}");
        }
        for uri in ["mailto:", "1mailto:a@b", "mailto:a@b!k", "mailto:a@-b.com", "a b"] {
            assert!(check_uri(uri, "example.com").is_err(), "{uri}");
        }
    }

    #[test]
    fn each_outside_report_domain_is_named_once() {
        let body = "p = \"reject\"\n\
                    rua = [\"mailto:a@v.example.net\", \"mailto:b@V.example.net\"]\n\
                    ruf = [\"mailto:c@v.example.net\", \"mailto:d@w.example.org\"]";
        let (_, diags) = run(body);
        let outside: Vec<_> = diags
            .iter()
            .filter(|d| d.message.contains("_report._dmarc"))
            .collect();
        assert_eq!(outside.len(), 2, "{outside:?}");
        assert!(
            outside[1]
                .message
                .contains("at example.com._report._dmarc.w.example.org")
        );
    }
}
