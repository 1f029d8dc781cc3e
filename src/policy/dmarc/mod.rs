//! The `[dmarc]` section of a policy file: the RFC 7489 / RFC 9989 policy tags,
//! checked into a [`DmarcRecord`], the TXT record published at `_dmarc.<domain>`.

mod de;
mod report;
mod tags;

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use self::de::{Flag, OneOrMany, StrOrInt};
use self::report::{ReportDomains, warn_about_failure_reports, warn_no_rua};
use self::tags::{POLICIES, PSD_VALUES, check_fo, check_pct, check_rf, check_ri, check_testing, keyword};

use crate::diag::{Diagnostics, Severity};

/// The `[dmarc]` table as written. Every field keeps its span because every
/// check happens after deserialisation, and the message must point at the value.
///
/// ```text
/// dmarc-record = "v=DMARC1" *( ";" tag )                      ; RFC 7489 6.4
/// p, sp, np    = "none" / "quarantine" / "reject"             ; np: RFC 9989
/// adkim, aspf  = "r" / "s"
/// pct          = 1*3DIGIT                                      ; 0-100, historic
/// t            = "y" / "n"                                     ; RFC 9989
/// psd          = "y" / "n" / "u"                               ; RFC 9989
/// rua, ruf     = dmarc-uri *( "," dmarc-uri )
/// dmarc-uri    = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]
/// fo           = ( "0" / "1" / "d" / "s" ) *( ":" ( "0" / "1" / "d" / "s" ) )
/// rf           = "afrf"                                        ; historic
/// ri           = 1*32DIGIT                                     ; historic
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmarcSection {
    /// Optional: RFC 9989 reads a missing p as none.
    p: Option<Spanned<String>>,
    sp: Option<Spanned<String>>,
    np: Option<Spanned<String>>,
    adkim: Option<Spanned<String>>,
    aspf: Option<Spanned<String>>,
    /// Signed and wide so that -1 or 101 reach validation and get our message.
    pct: Option<Spanned<i64>>,
    /// "y"/"n" as in the record, or a TOML boolean.
    t: Option<Spanned<Flag>>,
    /// RFC 9989: whether the domain is a public suffix domain ("y"), is not ("n"),
    /// or unknown ("u", the default); the DNS tree walk reads it.
    psd: Option<Spanned<String>>,
    /// One URI or an array of them; one array entry per URI.
    rua: Option<Spanned<OneOrMany<String>>>,
    ruf: Option<Spanned<OneOrMany<String>>>,
    /// "1", "d:s", 1, or an array such as ["1", "d"].
    fo: Option<Spanned<OneOrMany<StrOrInt>>>,
    /// Historic (RFC 9989): accepted so that an RFC 7489 record can be copied in,
    /// with a warning.
    rf: Option<Spanned<String>>,
    /// Signed and wide so that 0, negatives and values above u32 get our message.
    /// Historic like rf.
    ri: Option<Spanned<i64>>,
}

/// A checked DMARC policy; [`DmarcRecord::txt`] is the text published at `_dmarc.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcRecord {
    /// Always published, "none" when the file leaves p out: RFC 7489 receivers
    /// discard a record without p, RFC 9989 ones read it as none anyway.
    p: String,
    sp: Option<String>,
    np: Option<String>,
    adkim: Option<String>,
    aspf: Option<String>,
    pct: Option<u8>,
    t: Option<bool>,
    psd: Option<String>,
    fo: Vec<String>,
    rf: Option<String>,
    ri: Option<u32>,
    rua: Vec<String>,
    ruf: Vec<String>,
}

impl DmarcRecord {
    /// The policy for the domain (`none`, `quarantine` or `reject`).
    pub fn p(&self) -> &str {
        &self.p
    }

    /// The aggregate report destinations (`rua`), as published.
    pub fn rua(&self) -> &[String] {
        &self.rua
    }

    /// The `sp` tag as written (`None`: subdomains follow `p`).
    pub fn subdomain_policy(&self) -> Option<&str> {
        self.sp.as_deref()
    }

    /// The `np` tag as written (`None`: non-existent subdomains follow `sp`, then `p`).
    pub fn nonexistent_policy(&self) -> Option<&str> {
        self.np.as_deref()
    }

    /// The record text: `v=DMARC1; p=...` then the tags that were set, in a fixed order.
    pub fn txt(&self) -> String {
        let mut tags = vec!["v=DMARC1".to_string(), format!("p={}", self.p)];
        let keywords = [
            ("sp", &self.sp),
            ("np", &self.np),
            ("adkim", &self.adkim),
            ("aspf", &self.aspf),
        ];
        for (name, value) in keywords {
            if let Some(v) = value {
                tags.push(format!("{name}={v}"));
            }
        }
        if let Some(pct) = self.pct {
            tags.push(format!("pct={pct}"));
        }
        if let Some(t) = self.t {
            tags.push(format!("t={}", if t { "y" } else { "n" }));
        }
        if let Some(psd) = &self.psd {
            tags.push(format!("psd={psd}"));
        }
        if !self.fo.is_empty() {
            tags.push(format!("fo={}", self.fo.join(":")));
        }
        if let Some(rf) = &self.rf {
            tags.push(format!("rf={rf}"));
        }
        if let Some(ri) = self.ri {
            tags.push(format!("ri={ri}"));
        }
        for (name, uris) in [("rua", &self.rua), ("ruf", &self.ruf)] {
            if !uris.is_empty() {
                tags.push(format!("{name}={}", uris.join(",")));
            }
        }
        tags.join("; ")
    }

    /// The effective policy for the domain itself: none, quarantine or reject.
    pub fn policy(&self) -> &str {
        &self.p
    }
}

const ALIGNMENTS: &[&str] = &["r", "s"];

impl DmarcSection {
    /// Checks every tag, pushing each problem found (not only the first), and
    /// builds the record. Returns `None` if this section pushed any error.
    pub fn validate(
        self,
        domain: &str,
        section_span: Range<usize>,
        diags: &mut Diagnostics,
    ) -> Option<DmarcRecord> {
        let errors_before = error_count(diags);
        let p = check_p(self.p.as_ref(), section_span.clone(), diags);
        let sp = keyword("sp", self.sp.as_ref(), POLICIES, diags);
        let np = keyword("np", self.np.as_ref(), POLICIES, diags);
        let adkim = keyword("adkim", self.adkim.as_ref(), ALIGNMENTS, diags);
        let aspf = keyword("aspf", self.aspf.as_ref(), ALIGNMENTS, diags);
        let pct = self
            .pct
            .as_ref()
            .and_then(|v| check_pct(v, self.t.is_some(), diags));
        let t = self.t.as_ref().and_then(|v| check_testing(v, diags));
        let fo_span = self.fo.as_ref().map(Spanned::span);
        let fo = self.fo.map(|v| check_fo(v, diags)).unwrap_or_default();
        let psd = keyword("psd", self.psd.as_ref(), PSD_VALUES, diags);
        let rf = self.rf.as_ref().and_then(|v| check_rf(v, diags));
        let ri = self.ri.as_ref().and_then(|v| check_ri(v, diags));
        let ruf_span = self.ruf.as_ref().map(Spanned::span);
        // Judged on what was written, so that a rua whose URIs are all wrong gets
        // its errors and not also "no rua".
        if self.rua.as_ref().is_none_or(|v| v.get_ref().is_empty()) {
            warn_no_rua(domain, section_span, diags);
        }
        let mut reports = ReportDomains::new(domain);
        let rua = reports.check("rua", self.rua, diags);
        let ruf = reports.check("ruf", self.ruf, diags);
        warn_about_failure_reports(ruf_span, fo_span, diags);
        if error_count(diags) > errors_before {
            return None;
        }
        Some(DmarcRecord {
            p,
            sp,
            np,
            adkim,
            aspf,
            pct,
            t,
            psd,
            fo,
            rf,
            ri,
            rua,
            ruf,
        })
    }
}

fn error_count(diags: &Diagnostics) -> usize {
    diags
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

fn check_p(p: Option<&Spanned<String>>, section_span: Range<usize>, diags: &mut Diagnostics) -> String {
    let Some(p) = p else {
        diags.warning(
            section_span,
            "dmarc has no p: RFC 9989 reads that as none (monitoring only) and spfd publishes \
             p=none; write p = \"none\" to say so, then move to \"quarantine\" and \"reject\"",
        );
        return "none".to_string();
    };
    let policy = keyword("p", Some(p), POLICIES, diags).unwrap_or_default();
    if policy == "none" {
        diags.warning(
            p.span(),
            "dmarc p = \"none\" only monitors: receivers act on no failing mail; once the \
             aggregate reports show every legitimate sender passes, move to \"quarantine\", \
             then \"reject\"",
        );
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Diagnostic, SourceFile};

    #[derive(Deserialize)]
    struct Doc {
        dmarc: Spanned<DmarcSection>,
    }

    /// Validates `[dmarc]` + `body` for example.com as the policy loader does:
    /// the table is deserialised from TOML text, so spans are real.
    pub(super) fn run(body: &str) -> (Option<DmarcRecord>, Vec<Diagnostic>) {
        let text = format!("[dmarc]\n{body}\n");
        let src = SourceFile::new("p.toml", text.as_str());
        let doc: Doc = toml::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}"));
        let mut diags = Diagnostics::new(&src);
        let span = doc.dmarc.span();
        let record = doc.dmarc.into_inner().validate("example.com", span, &mut diags);
        (record, diags.items)
    }

    pub(super) fn of(diags: &[Diagnostic], severity: Severity) -> Vec<&Diagnostic> {
        diags.iter().filter(|d| d.severity == severity).collect()
    }

    pub(super) const RUA: &str = "rua = [\"mailto:d@example.com\"]";

    #[test]
    fn valid_sections_give_exact_records() {
        let cases = [
            (
                "p = \"reject\"\nrua = [\"mailto:dmarc@example.com\"]",
                "v=DMARC1; p=reject; rua=mailto:dmarc@example.com",
            ),
            (
                "ruf = [\"mailto:f@example.com\"]\nri = 3600\nfo = \"1:d\"\nt = \"y\"\n\
                 aspf = \"r\"\nadkim = \"s\"\nnp = \"reject\"\nsp = \"reject\"\n\
                 p = \"quarantine\"\n\
                 rua = [\"mailto:a@example.com!10m\", \"mailto:b@reports.example.com\"]",
                "v=DMARC1; p=quarantine; sp=reject; np=reject; adkim=s; aspf=r; t=y; fo=1:d; \
                 ri=3600; rua=mailto:a@example.com!10m,mailto:b@reports.example.com; \
                 ruf=mailto:f@example.com",
            ),
            (RUA, "v=DMARC1; p=none; rua=mailto:d@example.com"),
            ("p = \"REJECT\"\nsp = \"None\"", "v=DMARC1; p=reject; sp=none"),
            ("p = \"reject\"\npct = 25", "v=DMARC1; p=reject; pct=25"),
            ("p = \"reject\"\nt = true", "v=DMARC1; p=reject; t=y"),
            ("p = \"reject\"\nt = \"N\"", "v=DMARC1; p=reject; t=n"),
            ("p = \"reject\"\nt = false", "v=DMARC1; p=reject; t=n"),
            ("p = \"reject\"\nfo = 1", "v=DMARC1; p=reject; fo=1"),
            (
                "p = \"reject\"\nfo = [\"0\", \"S\"]",
                "v=DMARC1; p=reject; fo=0:s",
            ),
            (
                "p = \"reject\"\nfo = [\"0:d\", \"s\"]",
                "v=DMARC1; p=reject; fo=0:d:s",
            ),
            (
                "p = \"reject\"\nrua = \"mailto:d@example.com!2g\"",
                "v=DMARC1; p=reject; rua=mailto:d@example.com!2g",
            ),
            (
                "p = \"reject\"\nrua = [\"mailto:d@example.com\", \"https://r.example.net/x\"]",
                "v=DMARC1; p=reject; rua=mailto:d@example.com,https://r.example.net/x",
            ),
            (
                "p = \"reject\"\nri = 4294967295",
                "v=DMARC1; p=reject; ri=4294967295",
            ),
        ];
        for (body, txt) in cases {
            let (record, diags) = run(body);
            assert!(of(&diags, Severity::Error).is_empty(), "{body}: {diags:?}");
            let record = record.unwrap_or_else(|| panic!("{body}: no record"));
            assert_eq!(record.txt(), txt, "{body}");
        }
    }

    #[test]
    fn policy_is_the_effective_p() {
        assert_eq!(run("p = \"Quarantine\"").0.unwrap().policy(), "quarantine");
        assert_eq!(run(RUA).0.unwrap().policy(), "none");
    }

    #[test]
    fn invalid_sections_point_at_the_value() {
        // (line 2 of the file, the line after [dmarc]; expected message part; line; column)
        let cases = [
            (
                "p = \"maybe\"",
                "dmarc p must be one of none, quarantine, reject; got \"maybe\"",
                2,
                5,
            ),
            (
                "sp = \"always\"",
                "dmarc sp must be one of none, quarantine, reject; got \"always\"",
                2,
                6,
            ),
            (
                "np = \"drop\"",
                "dmarc np must be one of none, quarantine, reject",
                2,
                6,
            ),
            ("pct = 101", "dmarc pct must be between 0 and 100; got 101", 2, 7),
            ("pct = -1", "dmarc pct must be between 0 and 100; got -1", 2, 7),
            (
                "adkim = \"x\"",
                "dmarc adkim must be one of r, s; got \"x\"",
                2,
                9,
            ),
            (
                "aspf = \"relaxed\"",
                "dmarc aspf must be one of r, s; got \"relaxed\"",
                2,
                8,
            ),
            (
                "rua = [\"dmarc-reports@example.com\"]",
                "dmarc rua entry \"dmarc-reports@example.com\" is not a URI: write \
                 mailto:dmarc-reports@example.com",
                2,
                8,
            ),
            (
                "rua = [\"reports\"]",
                "is not a URI: write one with a scheme, such as mailto:",
                2,
                8,
            ),
            (
                "rua = [\"mailto:a@example.com\", \"mailto:dmarc-reports\"]",
                "dmarc rua entry \"mailto:dmarc-reports\" is not a mailbox: write \
                 mailto:local-part@domain",
                2,
                32,
            ),
            ("rua = [\"mailto:@example.com\"]", "is not a mailbox", 2, 8),
            ("rua = [\"mailto:a@exa_mple.com\"]", "is not a mailbox", 2, 8),
            (
                "rua = [\"mailto:a@example.com,mailto:b@example.com\"]",
                "contains an unescaped ',': write it as %2C",
                2,
                8,
            ),
            (
                "rua = [\"mailto:a@example.com;x\"]",
                "contains an unescaped ';': write it as %3B",
                2,
                8,
            ),
            (
                "rua = [\"mailto:a!b@example.com!10m\"]",
                "contains an unescaped '!'",
                2,
                8,
            ),
            (
                "rua = [\"mailto:a@example.com!10x\"]",
                "has a bad size limit \"!10x\"",
                2,
                8,
            ),
            (
                "rua = [\"mailto:a@example.com!\"]",
                "has a bad size limit \"!\"",
                2,
                8,
            ),
            ("rua = [\"mailto: a@example.com\"]", "contains whitespace", 2, 8),
            ("rua = [\"\"]", "is empty", 2, 8),
            (
                "ruf = [\"f@example.com\"]",
                "dmarc ruf entry \"f@example.com\" is not a URI",
                2,
                8,
            ),
            (
                "rua = \"d@example.com\"",
                "is not a URI: write mailto:d@example.com",
                2,
                7,
            ),
            (
                "fo = \"2\"",
                "dmarc fo must be a colon-separated list of 0, 1, d, s",
                2,
                6,
            ),
            (
                "fo = 2",
                "dmarc fo must be a colon-separated list of 0, 1, d, s (e.g. \"1:d\"); got \"2\"",
                2,
                6,
            ),
            ("fo = \"1:1\"", "dmarc fo lists \"1\" more than once", 2, 6),
            (
                "fo = [\"d\", \"D\"]",
                "dmarc fo lists \"D\" more than once",
                2,
                12,
            ),
            ("fo = \"1:\"", "dmarc fo must be a colon-separated list", 2, 6),
            (
                "ri = 0",
                "dmarc ri must be a number of seconds from 1 to 4294967295",
                2,
                6,
            ),
            ("ri = -5", "got -5", 2, 6),
            (
                "psd = \"yes\"",
                "dmarc psd must be one of y, n, u; got \"yes\"",
                2,
                7,
            ),
            ("rf = \"iodef\"", "dmarc rf must be \"afrf\"", 2, 6),
            ("ri = 4294967296", "got 4294967296", 2, 6),
            (
                "t = \"maybe\"",
                "dmarc t must be \"y\" (testing) or \"n\", or true or false; got \"maybe\"",
                2,
                5,
            ),
        ];
        for (body, fragment, line, column) in cases {
            let (record, diags) = run(body);
            assert!(record.is_none(), "{body}: gave a record");
            let errors = of(&diags, Severity::Error);
            assert_eq!(errors.len(), 1, "{body}: {errors:?}");
            let e = errors[0];
            assert!(e.message.contains(fragment), "{body}: {}", e.message);
            assert_eq!((e.line, e.column), (line, column), "{body}: {}", e.message);
        }
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let (record, diags) = run("p = \"maybe\"\npct = 101\nrua = [\"x@example.com\"]\nri = 0");
        assert!(record.is_none());
        let mut lines: Vec<usize> = of(&diags, Severity::Error).iter().map(|d| d.line).collect();
        lines.sort();
        assert_eq!(lines, [2, 3, 4, 5]);
        // rua was written, wrongly: its error is enough, no "no rua" on top.
        assert!(
            !diags.iter().any(|d| d.message.contains("has no rua")),
            "{diags:?}"
        );
    }

    #[test]
    fn errors_elsewhere_in_the_file_do_not_fail_this_section() {
        let text = "[dmarc]\np = \"reject\"\n";
        let src = SourceFile::new("p.toml", text);
        let doc: Doc = toml::from_str(text).unwrap();
        let mut diags = Diagnostics::new(&src);
        diags.error(0..1, "some other section is wrong");
        let span = doc.dmarc.span();
        assert!(
            doc.dmarc
                .into_inner()
                .validate("example.com", span, &mut diags)
                .is_some()
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_fail_deserialisation() {
        for text in [
            "[dmarc]\npolicy = \"reject\"\n",
            "[dmarc]\npsd = true\n",
            "[dmarc]\nrf = [\"afrf\"]\n",
            "[dmarc]\npct = \"50\"\n",
            "[dmarc]\nt = 1\n",
            "[dmarc]\nrua = [1]\n",
        ] {
            assert!(toml::from_str::<Doc>(text).is_err(), "{text}");
        }
        let err = toml::from_str::<Doc>("[dmarc]\npolicy = \"reject\"\n")
            .err()
            .unwrap();
        assert!(err.message().contains("unknown field `policy`"), "{err}");
    }

    #[test]
    fn warnings_advise_without_failing() {
        let cases = [
            (
                "p = \"none\"\n".to_string() + RUA,
                "dmarc p = \"none\" only monitors",
                2,
                5,
            ),
            (
                RUA.to_string(),
                "dmarc has no p: RFC 9989 reads that as none",
                1,
                1,
            ),
            (
                "p = \"reject\"".to_string(),
                "dmarc has no rua, so no aggregate reports",
                1,
                1,
            ),
            (
                "p = \"reject\"\nrua = []".to_string(),
                "add rua = [\"mailto:dmarc-reports@example.com\"]",
                1,
                1,
            ),
            (
                format!("p = \"reject\"\n{RUA}\npct = 50"),
                "write t = \"y\" instead",
                4,
                7,
            ),
            (
                format!("p = \"reject\"\n{RUA}\npct = 100"),
                "100 is the default",
                4,
                7,
            ),
            (
                format!("p = \"reject\"\n{RUA}\npct = 50\nt = \"y\""),
                "sets both pct and t",
                4,
                7,
            ),
            (
                format!("p = \"reject\"\n{RUA}\nruf = [\"mailto:f@example.com\"]"),
                "many receivers never send failure reports",
                4,
                7,
            ),
            (
                format!("p = \"reject\"\n{RUA}\nfo = \"1\""),
                "ruf is not set",
                4,
                6,
            ),
            (
                "p = \"reject\"\nrua = [\"mailto:x@vendor.example.net\"]".to_string(),
                "vendor.example.net must publish TXT \"v=DMARC1\" at \
                 example.com._report._dmarc.vendor.example.net",
                3,
                8,
            ),
            (
                "p = \"reject\"\nrua = [\"https://r.example.com/\"]".to_string(),
                "uses the https scheme",
                3,
                8,
            ),
        ];
        for (body, fragment, line, column) in cases {
            let (record, diags) = run(&body);
            assert!(record.is_some(), "{body}: {diags:?}");
            let found = of(&diags, Severity::Warning)
                .into_iter()
                .find(|d| d.message.contains(fragment))
                .unwrap_or_else(|| panic!("{body}: no warning {fragment:?} in {diags:?}"));
            assert_eq!((found.line, found.column), (line, column), "{body}");
        }
    }

    #[test]
    fn a_clean_reject_policy_has_no_warnings() {
        let (_, diags) = run("p = \"reject\"\nrua = [\"mailto:d@sub.Example.com\"]");
        assert!(diags.is_empty(), "{diags:?}");
    }
}
