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
mod tests;
