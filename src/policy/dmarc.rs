//! The `[dmarc]` section of a policy file: the RFC 7489 / RFC 9989 policy tags,
//! checked into a [`DmarcRecord`], the TXT record published at `_dmarc.<domain>`.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use toml::Spanned;

use crate::diag::{Diagnostics, Severity};

/// The `[dmarc]` table as written. Every field keeps its span because every
/// check happens after deserialisation, and the message must point at the value.
///
/// ```text
/// dmarc-record = "v=DMARC1" *( ";" tag )                      ; RFC 7489 6.4
/// p, sp, np    = "none" / "quarantine" / "reject"             ; np: RFC 9989
/// psd          = "y" / "n" / "u"                               ; RFC 9989
/// adkim, aspf  = "r" / "s"
/// pct          = 1*3DIGIT                                      ; 0-100, historic
/// t            = "y" / "n"                                     ; RFC 9989
/// rua, ruf     = dmarc-uri *( "," dmarc-uri )
/// dmarc-uri    = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]
/// fo           = ( "0" / "1" / "d" / "s" ) *( ":" ( "0" / "1" / "d" / "s" ) )
/// ri           = 1*32DIGIT                                     ; historic
/// rf           = "afrf"                                        ; historic
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
    /// One URI or an array of them; one array entry per URI.
    rua: Option<Spanned<OneOrMany<String>>>,
    ruf: Option<Spanned<OneOrMany<String>>>,
    /// "1", "d:s", 1, or an array such as ["1", "d"].
    fo: Option<Spanned<OneOrMany<StrOrInt>>>,
    /// Signed and wide so that 0, negatives and values above u32 get our message.
    ri: Option<Spanned<i64>>,
    /// RFC 9989: whether the domain is a public suffix domain (y), not (n), or unknown (u).
    psd: Option<Spanned<String>>,
    /// The failure report format; historic (RFC 9989), only "afrf" was ever defined.
    rf: Option<Spanned<String>>,
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
    fo: Vec<String>,
    rf: Option<String>,
    ri: Option<u32>,
    psd: Option<String>,
    rua: Vec<String>,
    ruf: Vec<String>,
}

impl DmarcRecord {
    /// The record text: `v=DMARC1; p=...` then the tags that were set, in a fixed order.
    pub fn txt(&self) -> String {
        let mut tags = vec!["v=DMARC1".to_string(), format!("p={}", self.p)];
        let keywords = [
            ("sp", &self.sp),
            ("np", &self.np),
            ("psd", &self.psd),
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

    /// `sp` as written (subdomains; `None`: follows p).
    pub fn subdomain_policy(&self) -> Option<&str> {
        self.sp.as_deref()
    }

    /// `np` as written (non-existent subdomains, RFC 9989; `None`: follows sp).
    pub fn nonexistent_policy(&self) -> Option<&str> {
        self.np.as_deref()
    }

    /// The aggregate report URIs, as published (size limits included).
    pub fn rua(&self) -> &[String] {
        &self.rua
    }
}

const POLICIES: &[&str] = &["none", "quarantine", "reject"];
const ALIGNMENTS: &[&str] = &["r", "s"];
const FO_OPTIONS: &[&str] = &["0", "1", "d", "s"];
const PSD_VALUES: &[&str] = &["y", "n", "u"];
const RF_VALUES: &[&str] = &["afrf"];

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
        let ri = self.ri.as_ref().and_then(|v| check_ri(v, diags));
        let psd = keyword("psd", self.psd.as_ref(), PSD_VALUES, diags);
        let rf = keyword("rf", self.rf.as_ref(), RF_VALUES, diags);
        warn_historic(
            self.rf.as_ref().map(Spanned::span),
            self.ri.as_ref().map(Spanned::span),
            diags,
        );
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
            fo,
            rf,
            ri,
            psd,
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

/// A value from a fixed set, matched without regard to case (RFC 7489 tag
/// values are case-insensitive) and published in lower case.
fn keyword(
    tag: &str,
    value: Option<&Spanned<String>>,
    allowed: &[&str],
    diags: &mut Diagnostics,
) -> Option<String> {
    let value = value?;
    let lower = value.get_ref().to_ascii_lowercase();
    if allowed.contains(&lower.as_str()) {
        return Some(lower);
    }
    let msg = format!(
        "dmarc {tag} must be one of {}; got {:?}",
        allowed.join(", "),
        value.get_ref()
    );
    diags.error(value.span(), msg);
    None
}

/// Range-checks pct and warns that RFC 9989 made it historic in favour of t.
fn check_pct(value: &Spanned<i64>, t_is_set: bool, diags: &mut Diagnostics) -> Option<u8> {
    let pct = match u8::try_from(*value.get_ref()) {
        Ok(pct) if pct <= 100 => pct,
        _ => {
            let msg = format!("dmarc pct must be between 0 and 100; got {}", value.get_ref());
            diags.error(value.span(), msg);
            return None;
        }
    };
    let advice = if t_is_set {
        "dmarc sets both pct and t: RFC 9989 replaces pct with t and its receivers ignore pct; \
         remove pct"
    } else if pct < 100 {
        "dmarc pct is historic under RFC 9989 and its receivers ignore it: to try a policy \
         out, write t = \"y\" instead (receivers then apply one step less than p)"
    } else {
        "dmarc pct is historic under RFC 9989, and 100 is the default anyway: remove pct"
    };
    diags.warning(value.span(), advice);
    Some(pct)
}

fn check_testing(value: &Spanned<Flag>, diags: &mut Diagnostics) -> Option<bool> {
    match value.get_ref() {
        Flag::Bool(b) => Some(*b),
        Flag::Text(s) if s.eq_ignore_ascii_case("y") => Some(true),
        Flag::Text(s) if s.eq_ignore_ascii_case("n") => Some(false),
        Flag::Text(s) => {
            let msg = format!("dmarc t must be \"y\" (testing) or \"n\", or true or false; got {s:?}");
            diags.error(value.span(), msg);
            None
        }
    }
}

fn check_ri(value: &Spanned<i64>, diags: &mut Diagnostics) -> Option<u32> {
    match u32::try_from(*value.get_ref()) {
        Ok(ri) if ri > 0 => Some(ri),
        _ => {
            let msg = format!(
                "dmarc ri must be a number of seconds from 1 to {} (the default is 86400); got {}",
                u32::MAX,
                value.get_ref()
            );
            diags.error(value.span(), msg);
            None
        }
    }
}

/// The options in the order written, lower-cased, each at most once.
fn check_fo(value: Spanned<OneOrMany<StrOrInt>>, diags: &mut Diagnostics) -> Vec<String> {
    let whole = value.span();
    let mut options: Vec<String> = Vec::new();
    for item in value.into_inner().into_items(whole) {
        let written = &item.get_ref().0;
        for option in written.split(':') {
            let lower = option.to_ascii_lowercase();
            if !FO_OPTIONS.contains(&lower.as_str()) {
                let msg = format!(
                    "dmarc fo must be a colon-separated list of 0, 1, d, s (e.g. \"1:d\"); \
                     got {written:?}"
                );
                diags.error(item.span(), msg);
            } else if options.contains(&lower) {
                let msg = format!(
                    "dmarc fo lists {option:?} more than once; write each option once, \
                     e.g. \"1:d\""
                );
                diags.error(item.span(), msg);
            } else {
                options.push(lower);
            }
        }
    }
    options
}

/// rf and ri are historic under RFC 9989: its receivers ignore them.
fn warn_historic(rf: Option<Range<usize>>, ri: Option<Range<usize>>, diags: &mut Diagnostics) {
    if let Some(span) = rf {
        diags.warning(
            span,
            "dmarc rf is historic (RFC 9989): receivers ignore it and afrf is the only format; remove rf",
        );
    }
    if let Some(span) = ri {
        diags.warning(
            span,
            "dmarc ri is historic (RFC 9989): receivers send aggregate reports daily whatever it says; \
             remove ri",
        );
    }
}

fn warn_no_rua(domain: &str, section_span: Range<usize>, diags: &mut Diagnostics) {
    let msg = format!(
        "dmarc has no rua, so no aggregate reports will arrive and you will not see who sends \
         mail as {domain}: add rua = [\"mailto:dmarc-reports@{domain}\"]"
    );
    diags.warning(section_span, msg);
}

fn warn_about_failure_reports(
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
struct ReportDomains {
    domain: String,
    warned: BTreeSet<String>,
}

impl ReportDomains {
    fn new(domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        Self {
            domain,
            warned: BTreeSet::new(),
        }
    }

    fn check(
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
        Some((local, host)) if !local.is_empty() && is_hostname(host) => {
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

/// Letters, digits and inner hyphens, labels of 1 to 63 octets joined by dots.
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `t` as written: the record's "y"/"n", or a TOML boolean.
#[derive(Debug)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"y\", \"n\", true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                Ok(Flag::Text(v.to_string()))
            }
        }
        d.deserialize_any(FlagVisitor)
    }
}

/// One value, or an array of them in which each element keeps its own span.
#[derive(Debug)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<Spanned<T>>),
}

impl<T> OneOrMany<T> {
    fn is_empty(&self) -> bool {
        matches!(self, OneOrMany::Many(v) if v.is_empty())
    }

    /// The elements with their spans; a single value gets the span of the whole.
    fn into_items(self, whole: Range<usize>) -> Vec<Spanned<T>> {
        match self {
            OneOrMany::One(v) => vec![Spanned::new(whole, v)],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<T>>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// An fo option list written as a string ("1:d") or as a bare integer (1).
#[derive(Debug)]
struct StrOrInt(String);

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrOrIntVisitor;
        impl Visitor<'_> for StrOrIntVisitor {
            type Value = StrOrInt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string such as \"1:d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
        }
        d.deserialize_any(StrOrIntVisitor)
    }
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
    fn run(body: &str) -> (Option<DmarcRecord>, Vec<Diagnostic>) {
        let text = format!("[dmarc]\n{body}\n");
        let src = SourceFile::new("p.toml", text.as_str());
        let doc: Doc = toml::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}"));
        let mut diags = Diagnostics::new(&src);
        let span = doc.dmarc.span();
        let record = doc.dmarc.into_inner().validate("example.com", span, &mut diags);
        (record, diags.items)
    }

    fn of(diags: &[Diagnostic], severity: Severity) -> Vec<&Diagnostic> {
        diags.iter().filter(|d| d.severity == severity).collect()
    }

    const RUA: &str = "rua = [\"mailto:d@example.com\"]";

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
    fn psd_is_accepted_and_rf_ri_are_historic() {
        let (record, diags) =
            run("p = \"reject\"\npsd = \"Y\"\nrf = \"afrf\"\nri = 86400\nrua = \"mailto:d@example.com\"");
        assert_eq!(
            record.unwrap().txt(),
            "v=DMARC1; p=reject; psd=y; rf=afrf; ri=86400; rua=mailto:d@example.com"
        );
        let warnings: Vec<String> = of(&diags, Severity::Warning)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("p.toml:4:6") && warnings[0].contains("rf is historic"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("p.toml:5:6") && warnings[1].contains("ri is historic"),
            "{warnings:?}"
        );
        let (record, diags) = run("p = \"reject\"\npsd = \"maybe\"\nrf = \"iodef\"");
        assert!(record.is_none());
        let errors: Vec<String> = of(&diags, Severity::Error)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("psd must be one of y, n, u"), "{errors:?}");
        assert!(errors[1].contains("rf must be one of afrf"), "{errors:?}");
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
            "[dmarc]\nrf = 1\n",
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
}
