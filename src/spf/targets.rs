//! The names an SPF record points to (`include`, `a`, `mx`, `ptr`, `exists`,
//! `redirect`, `exp`), checked as DNS names before spfd publishes the record.
//!
//! RFC 7208's grammar lets a domain-spec hold any visible character; receivers and
//! resolvers then refuse names such as `-bad-.test` or `bad..test` (RFC 1035 2.3.1),
//! or the target simply never resolves. Records read while evaluating keep the
//! lenient grammar (RFC 7208 4.3 is applied at query time); this check is for the
//! records of a policy file. Labels holding a macro are checked once expanded, by
//! the receiver: only the literal labels are judged here.

use super::directive::{Modifier, Term, TermKind};
use super::error::ParseError;
use super::macro_string::MacroString;
use super::record::Record;
use crate::names::{self, MAX_NAME, NameError, Rules};

impl Record {
    /// One error per term whose target name cannot be a DNS name, at the offending
    /// label, in record order.
    pub fn name_errors(&self) -> Vec<ParseError> {
        self.terms().iter().filter_map(target_error).collect()
    }
}

fn target_spec(term: &Term) -> Option<&MacroString> {
    match term.kind() {
        TermKind::Directive(d) => d.mechanism.domain_spec(),
        TermKind::Modifier(Modifier::Redirect(spec) | Modifier::Exp(spec)) => Some(spec),
        TermKind::Modifier(Modifier::Unknown { .. }) => None,
    }
}

fn target_error(term: &Term) -> Option<ParseError> {
    let spec = target_spec(term)?.as_str();
    let start = term.text().find([':', '='])? + 1;
    let (at, why) = spec_problem(spec)?;
    let message = format!(
        "`{spec}` {why}: receivers cannot look it up; write a DNS name of letters, digits, \
         hyphens (not first or last in a label) and underscores, like _spf.example.com"
    );
    Some(ParseError::new(term.offset() + start + at, message))
}

/// The byte offset in `spec` of the first literal label that is not a DNS label,
/// and why; `None` when every literal label is one.
pub(super) fn spec_problem(spec: &str) -> Option<(usize, NameError)> {
    let masked = mask_macros(spec);
    let body = masked.strip_suffix('.').unwrap_or(&masked);
    if !body.contains('%') && body.len() > MAX_NAME {
        return Some((0, NameError::TooLong(body.len())));
    }
    let mut at = 0;
    for label in body.split('.') {
        let literal = label.is_empty() || !label.contains('%');
        if let Err(why) = names::check_label(label, Rules::Service)
            && literal
        {
            return Some((at, why));
        }
        at += label.len() + 1;
    }
    None
}

/// `spec` with every macro-expand (`%{...}`, `%%`, `%_`, `%-`) overwritten by `%`
/// signs of the same length, so that a `.` delimiter inside braces splits nothing.
fn mask_macros(spec: &str) -> String {
    let b = spec.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let len = match (b[i], b.get(i + 1)) {
            (b'%', Some(b'{')) => spec[i..].find('}').map_or(b.len() - i, |end| end + 1),
            (b'%', Some(_)) => 2,
            _ => 0,
        };
        if len == 0 {
            out.push(char::from(b[i]));
            i += 1;
        } else {
            out.extend(std::iter::repeat_n('%', len));
            i += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (record, byte offset of the first name error, or None)
    const RECORDS: &[(&str, Option<usize>)] = &[
        ("v=spf1 a:mail.example.com -all", None),
        ("v=spf1 include:_spf.example.com -all", None),
        ("v=spf1 include:%{ir}.%{v}._spf.example.com -all", None),
        ("v=spf1 exists:%{l1r-.}._u.%{d} -all", None),
        ("v=spf1 redirect=_spf.example.com.", None),
        ("v=spf1 a:-bad-.test -all", Some(9)),
        ("v=spf1 a:bad..test -all", Some(13)),
        ("v=spf1 -include:-x.test", Some(16)),
        ("v=spf1 mx:ok.test a:.x.test", Some(20)),
        ("v=spf1 redirect=a.b-.test", Some(18)),
        ("v=spf1 exists:%{i}.bad-.test", Some(19)),
        ("v=spf1 exp=exp..example.com", Some(15)),
        ("v=spf1 a:%{d}..test", Some(14)),
        ("v=spf1 unknown=-x..y ~all", None),
    ];

    #[test]
    fn table() {
        for (text, want) in RECORDS {
            let record = Record::parse(text).unwrap();
            let got: Vec<usize> = record.name_errors().iter().map(|e| e.offset).collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{text}");
        }
    }

    #[test]
    fn long_literal_names() {
        let long = format!("v=spf1 a:{}com", "a.".repeat(126));
        let errors = Record::parse(&long).unwrap().name_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("255 octets long"),
            "{}",
            errors[0].message
        );
        let label = format!("v=spf1 a:{}.test", "b".repeat(64));
        assert!(
            Record::parse(&label).unwrap().name_errors()[0]
                .message
                .contains("64 octets")
        );
    }

    #[test]
    fn macros_are_masked_whole() {
        assert_eq!(mask_macros("%{l1r-.}.x%%y%_"), "%%%%%%%%.x%%y%%");
        assert_eq!(mask_macros("a-b.c"), "a-b.c");
    }
}
