//! Terms moved to another name keep their meaning: `%{d}` is replaced by its
//! expansion for the domain the term was evaluated in, and a mechanism that defaults
//! to the current domain (`ptr`, `a`, `mx`) gets that domain written out.

use std::net::{IpAddr, Ipv4Addr};

use crate::spf::{Macro, MacroContext, MacroItem, MacroLetter, MacroString, Mechanism, Qualifier, Record};

use super::model::prefix;

/// True when `spec` can be expanded ahead of time: it uses no macro but `%{d}`,
/// which is fixed by where the term is evaluated. `%{o}` (the sender's domain) and
/// every other letter depend on the message.
pub(super) fn is_fixed(spec: &MacroString) -> bool {
    spec.uses_only("d")
}

/// The context to expand `%{d}` at `domain` (the other values are never used).
fn context(domain: &str) -> MacroContext {
    let nobody = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    MacroContext::new(nobody, &format!("postmaster@{domain}"), domain, domain)
}

/// The name a fixed spec (see [`is_fixed`]) asks at `domain`, as receivers expand it.
pub(super) fn expand_fixed(spec: &MacroString, domain: &str) -> String {
    spec.expand_domain(&context(domain))
}

/// Literal text written back into a macro-string.
fn escape(text: &str) -> String {
    text.replace('%', "%%").replace(' ', "%_")
}

/// A macro written back as text, transformers and delimiters included.
fn macro_text(m: &Macro) -> String {
    let letter = m.letter.as_char();
    let letter = if m.url_escape {
        letter.to_ascii_uppercase()
    } else {
        letter
    };
    let keep = m.keep.map(|k| k.to_string()).unwrap_or_default();
    let reverse = if m.reverse { "r" } else { "" };
    format!("%{{{letter}{keep}{reverse}{}}}", m.delimiters)
}

/// `spec` with every `%{d}` (with its transformers) replaced by its expansion at
/// `domain`; the other macros stay for the receiver.
pub(super) fn pin_domain(spec: &MacroString, domain: &str) -> String {
    let ctx = context(domain);
    let mut out = String::new();
    for item in spec.items() {
        match item {
            MacroItem::Literal(text) => out.push_str(&escape(text)),
            MacroItem::Macro(m) if m.letter == MacroLetter::Domain => {
                let one = MacroString::parse(&macro_text(m)).expect("a macro written back parses");
                out.push_str(&escape(&one.expand(&ctx)));
            }
            MacroItem::Macro(m) => out.push_str(&macro_text(m)),
        }
    }
    out
}

fn cidrs(cidr4: Option<u8>, cidr6: Option<u8>) -> String {
    let mut out = String::new();
    if let Some(c) = cidr4 {
        out.push_str(&format!("/{c}"));
    }
    if let Some(c) = cidr6 {
        out.push_str(&format!("//{c}"));
    }
    out
}

/// The text of a term left for the receiver, rewritten to mean at any name what it
/// meant at `domain`. `Err` (with the text) when the rewritten term is not valid SPF,
/// which happens only for odd specs such as `%{i}%{d1}`.
pub(super) fn dynamic_term(q: Qualifier, mechanism: &Mechanism, domain: &str) -> Result<String, String> {
    let at = |spec: &Option<MacroString>| match spec {
        Some(spec) => pin_domain(spec, domain),
        None => escape(domain),
    };
    let body = match mechanism {
        Mechanism::Include(spec) => format!("include:{}", pin_domain(spec, domain)),
        Mechanism::Exists(spec) => format!("exists:{}", pin_domain(spec, domain)),
        Mechanism::Ptr(spec) => format!("ptr:{}", at(spec)),
        Mechanism::A {
            domain: spec,
            cidr4,
            cidr6,
        } => format!("a:{}{}", at(spec), cidrs(*cidr4, *cidr6)),
        Mechanism::Mx {
            domain: spec,
            cidr4,
            cidr6,
        } => format!("mx:{}{}", at(spec), cidrs(*cidr4, *cidr6)),
        Mechanism::All => "all".to_string(),
        Mechanism::Ip4(net) => format!("ip4:{net}"),
        Mechanism::Ip6(net) => format!("ip6:{net}"),
    };
    let text = format!("{}{body}", prefix(q));
    check(&text)
}

/// A modifier (`redirect=`, `exp=`) rewritten the same way.
pub(super) fn modifier(name: &str, spec: &MacroString, domain: &str) -> Result<String, String> {
    check(&format!("{name}={}", pin_domain(spec, domain)))
}

fn check(text: &str) -> Result<String, String> {
    match Record::parse(&format!("v=spf1 {text}")) {
        Ok(_) => Ok(text.to_string()),
        Err(e) => Err(format!("`{text}` {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(text: &str) -> (Qualifier, Mechanism) {
        let record = Record::parse(&format!("v=spf1 {text}")).unwrap();
        let d = record.directives().next().unwrap().clone();
        (d.qualifier, d.mechanism)
    }

    #[test]
    fn terms_are_pinned_to_their_domain() {
        // (term, domain, rewritten)
        let cases = [
            (
                "exists:%{i}._spf.%{d}",
                "example.com",
                "exists:%{i}._spf.example.com",
            ),
            (
                "-exists:%{ir}.%{l1r+-}._spf.%{d2}",
                "a.b.example.com",
                "-exists:%{ir}.%{l1r+-}._spf.example.com",
            ),
            ("ptr", "example.com", "ptr:example.com"),
            ("?ptr:%{d}", "Example.COM", "?ptr:Example.COM"),
            ("~ptr:mail.example.net", "example.com", "~ptr:mail.example.net"),
            (
                "a:%{i}.x.%{d}/24//64",
                "example.com",
                "a:%{i}.x.example.com/24//64",
            ),
            ("mx:%{o}/28", "example.com", "mx:%{o}/28"),
            (
                "include:%{o}._spf.%{dr}",
                "mail.example.com",
                "include:%{o}._spf.com.example.mail",
            ),
            (
                "exists:%{D}.%{h}.example.net",
                "example.com",
                "exists:example.com.%{h}.example.net",
            ),
            (
                "exists:%{s}.a%%b.example.net",
                "example.com",
                "exists:%{s}.a%%b.example.net",
            ),
            (
                "exists:%{i}.%{d1r-}.example.net",
                "example.com",
                "exists:%{i}.example.com.example.net",
            ),
        ];
        for (text, domain, want) in cases {
            let (q, m) = term(text);
            assert_eq!(dynamic_term(q, &m, domain).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_term_that_cannot_be_rewritten_is_an_error() {
        let (q, m) = term("exists:%{i}%{d1}");
        let err = dynamic_term(q, &m, "example.com").unwrap_err();
        assert!(err.contains("exists:%{i}com"), "{err}");
    }

    #[test]
    fn fixed_specs_expand_like_receivers() {
        let spec = |s: &str| MacroString::parse_domain_spec(s).unwrap();
        assert!(is_fixed(&spec("_spf.%{d2}")));
        assert!(is_fixed(&spec("_spf.example.com")));
        assert!(!is_fixed(&spec("%{o}._spf.example.com")));
        assert!(!is_fixed(&spec("%{i}._spf.%{d}")));
        assert_eq!(
            expand_fixed(&spec("_spf.%{d2}"), "mail.example.com"),
            "_spf.example.com"
        );
        assert_eq!(
            expand_fixed(&spec("_spf.example.com."), "x.test"),
            "_spf.example.com"
        );
        let exp = modifier("exp", &spec("why.%{d}"), "example.com");
        assert_eq!(exp.as_deref(), Ok("exp=why.example.com"));
    }
}
