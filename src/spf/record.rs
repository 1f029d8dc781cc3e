//! The SPF record (RFC 7208 4.5, 4.6): the version, the terms in order with their
//! exact source text, and the parsed mechanisms and modifiers.

use std::fmt;

use super::directive::{Directive, Mechanism, Modifier, Term};
use super::error::ParseError;
use super::macro_string::{self, MacroString};
use super::term;

/// The version tag every SPF record starts with (case-insensitive).
pub const VERSION: &str = "v=spf1";

/// True when `text` is an SPF record by the selection rule of RFC 7208 4.5: it
/// starts with `v=spf1` (any case) followed by a space or the end.
pub fn is_spf_record(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= VERSION.len()
        && b[..VERSION.len()].eq_ignore_ascii_case(VERSION.as_bytes())
        && (b.len() == VERSION.len() || b[VERSION.len()] == b' ')
}

/// A parsed SPF record.
///
/// ```text
/// record           = version terms *SP
/// version          = "v=spf1"
/// terms            = *( 1*SP ( directive / modifier ) )
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    terms: Vec<Term>,
}

impl Record {
    /// Parses TXT record text (the character-strings already joined). Any syntax
    /// error anywhere makes the whole record invalid (RFC 7208 4.6).
    pub fn parse(text: &str) -> Result<Record, ParseError> {
        check_version(text)?;
        if let Some(at) = text.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
            return Err(macro_string::bad_character(text, at));
        }
        let mut terms = Vec::new();
        for (offset, word) in words(text) {
            terms.push(term::parse_term(word, offset)?);
        }
        check_modifiers_once(&terms)?;
        Ok(Record { terms })
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The directives in order.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> {
        self.terms.iter().filter_map(Term::directive)
    }

    /// The number of terms of this record alone that cost a DNS lookup (RFC 7208
    /// 4.6.4): include, a, mx, ptr, exists, and redirect when it would run (the
    /// record has no `all`). Lookups inside include and redirect targets are not
    /// counted.
    pub fn lookup_terms(&self) -> usize {
        let mechanisms = self.directives().filter(|d| d.mechanism.does_lookup()).count();
        let redirect = self.redirect().is_some() && !self.has_all();
        mechanisms + usize::from(redirect)
    }

    /// True when some directive is `all` (whatever its qualifier).
    pub fn has_all(&self) -> bool {
        self.directives().any(|d| d.mechanism == Mechanism::All)
    }

    pub fn redirect(&self) -> Option<&MacroString> {
        self.terms.iter().find_map(|t| match t.modifier() {
            Some(Modifier::Redirect(spec)) => Some(spec),
            _ => None,
        })
    }

    pub fn exp(&self) -> Option<&MacroString> {
        self.terms.iter().find_map(|t| match t.modifier() {
            Some(Modifier::Exp(spec)) => Some(spec),
            _ => None,
        })
    }
}

impl fmt::Display for Record {
    /// `v=spf1` and each term's exact text, separated by single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(VERSION)?;
        for t in &self.terms {
            write!(f, " {}", t.text)?;
        }
        Ok(())
    }
}

fn check_version(text: &str) -> Result<(), ParseError> {
    if is_spf_record(text) {
        return Ok(());
    }
    let starts = text.len() >= VERSION.len()
        && text.as_bytes()[..VERSION.len()].eq_ignore_ascii_case(VERSION.as_bytes());
    if starts {
        let rest: String = text[VERSION.len()..].chars().take_while(|c| *c != ' ').collect();
        let message = format!(
            "`{VERSION}{rest}` is not the SPF version: `{VERSION}` must be followed by a space or the end"
        );
        return Err(ParseError::new(VERSION.len(), message));
    }
    Err(ParseError::new(
        0,
        format!("an SPF record starts with `{VERSION}`"),
    ))
}

/// The terms after the version: runs of non-space text with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = VERSION.len();
    text[VERSION.len()..].split(' ').filter_map(move |word| {
        let at = offset;
        offset += word.len() + 1;
        (!word.is_empty()).then_some((at, word))
    })
}

/// `redirect` and `exp` may appear at most once each (RFC 7208 6).
fn check_modifiers_once(terms: &[Term]) -> Result<(), ParseError> {
    let mut first_redirect = None;
    let mut first_exp = None;
    for t in terms {
        let (seen, name) = match t.modifier() {
            Some(Modifier::Redirect(_)) => (&mut first_redirect, "redirect"),
            Some(Modifier::Exp(_)) => (&mut first_exp, "exp"),
            _ => continue,
        };
        if let Some(first) = *seen {
            return Err(ParseError::new(
                t.offset,
                format!("`{name}` given twice (first at byte {first}): a record may have one"),
            ));
        }
        *seen = Some(t.offset);
    }
    Ok(())
}

#[cfg(test)]
/// Table tests of whole records: (text, expected) for valid and invalid records.
mod tests {
    use super::*;
    use crate::spf::Qualifier;

    #[test]
    fn valid_records() {
        // (text, term texts, lookup terms)
        let cases: Vec<(&str, Vec<&str>, usize)> = vec![
            ("v=spf1", vec![], 0),
            ("V=SPF1 -ALL", vec!["-ALL"], 0),
            ("v=spf1 a  -all", vec!["a", "-all"], 1),
            ("v=spf1 a -all ", vec!["a", "-all"], 1),
            (
                "v=spf1 IP4:192.0.2.0/24 Include:_spf.example.com ~all",
                vec!["IP4:192.0.2.0/24", "Include:_spf.example.com", "~all"],
                1,
            ),
            (
                "v=spf1 a/24//64 mx:%{d}/24 -all",
                vec!["a/24//64", "mx:%{d}/24", "-all"],
                2,
            ),
            (
                "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
                vec!["exists:%{ir}.%{l1r+-}._spf.%{d}", "-all"],
                1,
            ),
            (
                "v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
                vec!["a:macro%%percent%_%_space%-url-space.example.com", "-all"],
                1,
            ),
            ("v=spf1 foo=bar -all", vec!["foo=bar", "-all"], 0),
            (
                "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
                vec!["moo.cow-far_out=man:dog/cat", "ip4:1.2.3.4", "-all"],
                0,
            ),
            (
                "v=spf1 ptr mx a include:x.example exists:%{i}.x.example redirect=y.example",
                vec![
                    "ptr",
                    "mx",
                    "a",
                    "include:x.example",
                    "exists:%{i}.x.example",
                    "redirect=y.example",
                ],
                6,
            ),
            (
                "v=spf1 redirect=y.example -all",
                vec!["redirect=y.example", "-all"],
                0,
            ),
            (
                "v=spf1 -all exp=explain.%{d}",
                vec!["-all", "exp=explain.%{d}"],
                0,
            ),
            (
                "v=spf1 ip6:2001:db8::/32 ip4:192.0.2.77/24 -all",
                vec!["ip6:2001:db8::/32", "ip4:192.0.2.77/24", "-all"],
                0,
            ),
        ];
        for (text, terms, lookups) in cases {
            let record = Record::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<&str> = record.terms().iter().map(Term::text).collect();
            assert_eq!(got, terms, "{text}");
            assert_eq!(record.lookup_terms(), lookups, "{text}");
        }
    }

    #[test]
    fn invalid_records() {
        // (text, byte offset, words the message must contain)
        let cases = [
            ("", 0, "starts with `v=spf1`"),
            ("spf1 -all", 0, "starts with `v=spf1`"),
            (" v=spf1 -all", 0, "starts with `v=spf1`"),
            ("v=spf10", 6, "`v=spf10` is not the SPF version"),
            ("v=spf1-all", 6, "followed by a space"),
            ("v=spf1 foo", 7, "unknown mechanism `foo`"),
            (
                "v=spf1 ip4:1.2.3.4/33",
                19,
                "ip4 CIDR length 33 is out of range 0-32",
            ),
            (
                "v=spf1 redirect=a.example redirect=b.example",
                26,
                "`redirect` given twice (first at byte 7)",
            ),
            ("v=spf1 exp=a.example -all exp=b.example", 26, "`exp` given twice"),
            (
                "v=spf1 include -all",
                14,
                "include needs a domain: write include:example.com",
            ),
            ("v=spf1 ip4:1.2.3.4 -all moo", 24, "unknown mechanism `moo`"),
            (
                "v=spf1 a:ctrl.example.com\rptr -all",
                25,
                "control character U+000D",
            ),
            ("v=spf1 a\t-all", 8, "control character U+0009"),
            (
                "v=spf1 a:\u{ef}\u{bb}\u{bf}garbage.example.net -all",
                9,
                "not allowed",
            ),
            ("v=spf1 \u{96}all", 7, "not allowed"),
            ("v=spf1 a:foo.example.com\0", 24, "U+0000"),
            ("v=spf1 exists:%(ir).sbl.example.com ?all", 14, "invalid macro"),
            ("v=spf1 -all exp=%{r}.example.com", 16, "only in explanation"),
            ("v=spf1 =all", 7, "needs a name"),
            ("v=spf1 a:%{a}.example.com -all", 9, "invalid macro `%{a}`"),
        ];
        for (text, offset, words) in cases {
            let err = Record::parse(text).expect_err(text);
            assert_eq!(err.offset, offset, "{text:?}: {}", err.message);
            assert!(err.message.contains(words), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn display_is_version_and_exact_terms() {
        let cases = [
            ("v=spf1", "v=spf1"),
            ("V=SpF1   IP4:192.0.2.0/24  ~ALL ", "v=spf1 IP4:192.0.2.0/24 ~ALL"),
            (
                "v=spf1 a:%{d}/24//64 -all exp=x.%{d}",
                "v=spf1 a:%{d}/24//64 -all exp=x.%{d}",
            ),
        ];
        for (text, shown) in cases {
            assert_eq!(Record::parse(text).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn term_offsets_and_parsed_forms() {
        let record = Record::parse("v=spf1  -include:x.example redirect=y.example").unwrap();
        let terms = record.terms();
        assert_eq!(terms[0].offset(), 8);
        assert_eq!(terms[1].offset(), 27);
        let d = terms[0].directive().unwrap();
        assert_eq!(d.qualifier, Qualifier::Fail);
        assert_eq!(d.mechanism.name(), "include");
        assert_eq!(record.redirect().map(MacroString::as_str), Some("y.example"));
        assert!(record.exp().is_none());
        assert!(!record.has_all());
    }

    #[test]
    fn record_selection() {
        let cases = [
            ("v=spf1", true),
            ("v=spf1 -all", true),
            ("V=SPF1 ~all", true),
            ("v=spf10", false),
            ("v=spf1mx", false),
            ("v=spf1\t-all", false),
            ("v=spfl am not an SPF record", false),
            ("spf2.0/pra", false),
            ("", false),
        ];
        for (text, is) in cases {
            assert_eq!(is_spf_record(text), is, "{text}");
        }
    }

    #[test]
    fn ip_networks_keep_host_bits_but_match_by_prefix() {
        let record = Record::parse("v=spf1 ip4:192.0.2.77/24").unwrap();
        let Some(Mechanism::Ip4(net)) = record.directives().next().map(|d| &d.mechanism) else {
            panic!("not ip4");
        };
        assert_eq!(net.addr().to_string(), "192.0.2.77");
        assert!(net.contains(&"192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap()));
        assert!(!net.contains(&"192.0.3.1".parse::<std::net::Ipv4Addr>().unwrap()));
    }
}
