//! One term of an SPF record (RFC 7208 4.6.1, 5, 6): a directive (qualifier and
//! mechanism with its arguments) or a modifier.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::directive::{Directive, Mechanism, Modifier, Qualifier, Term, TermKind};
use super::error::ParseError;
use super::macro_string::MacroString;

/// Parses the term `text` found at byte `at` of the record; error offsets are
/// offsets in the record.
pub(super) fn parse_term(text: &str, at: usize) -> Result<Term, ParseError> {
    let kind = parse_kind(text).map_err(|e| e.shifted(at))?;
    Ok(Term {
        text: text.to_string(),
        offset: at,
        kind,
    })
}

/// A term is a modifier when `=` comes before any `:` or `/` (4.6.1).
fn parse_kind(text: &str) -> Result<TermKind, ParseError> {
    match text.find(['=', ':', '/']) {
        Some(i) if text.as_bytes()[i] == b'=' => {
            parse_modifier(&text[..i], &text[i + 1..]).map(TermKind::Modifier)
        }
        _ => parse_directive(text).map(TermKind::Directive),
    }
}

/// ```text
/// modifier         = redirect / explanation / unknown-modifier
/// redirect         = "redirect" "=" domain-spec
/// explanation      = "exp" "=" domain-spec
/// unknown-modifier = name "=" macro-string
///                    ; where name is not any known modifier
/// name             = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
/// ```
fn parse_modifier(name: &str, value: &str) -> Result<Modifier, ParseError> {
    check_modifier_name(name)?;
    let value_at = name.len() + 1;
    let lower = name.to_ascii_lowercase();
    if lower == "redirect" || lower == "exp" {
        if value.is_empty() {
            return Err(ParseError::new(
                value_at,
                format!("{lower} needs a domain: write {lower}=example.com"),
            ));
        }
        let spec = MacroString::parse_domain_spec(value).map_err(|e| e.shifted(value_at))?;
        return Ok(if lower == "redirect" {
            Modifier::Redirect(spec)
        } else {
            Modifier::Exp(spec)
        });
    }
    let value = MacroString::parse(value).map_err(|e| e.shifted(value_at))?;
    Ok(Modifier::Unknown {
        name: name.to_string(),
        value,
    })
}

fn check_modifier_name(name: &str) -> Result<(), ParseError> {
    let b = name.as_bytes();
    let Some(&first) = b.first() else {
        return Err(ParseError::new(0, "a modifier needs a name before `=`"));
    };
    if Qualifier::from_char(char::from(first)).is_some() {
        return Err(ParseError::new(
            0,
            format!("a modifier takes no qualifier: write {}", &name[1..]),
        ));
    }
    let valid =
        first.is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c));
    if !valid {
        return Err(ParseError::new(
            0,
            format!(
                "invalid modifier name `{name}`: a name is a letter, then letters, digits, `-`, `_` or `.`"
            ),
        ));
    }
    Ok(())
}

/// ```text
/// directive        = [ qualifier ] mechanism
/// mechanism        = ( all / include / a / mx / ptr / ip4 / ip6 / exists )
/// ```
fn parse_directive(text: &str) -> Result<Directive, ParseError> {
    let first = text.chars().next().and_then(Qualifier::from_char);
    let (qualifier, body, skip) = match first {
        Some(q) => (q, &text[1..], 1),
        None => (Qualifier::Pass, text, 0),
    };
    let name_len = body.find([':', '/']).unwrap_or(body.len());
    let (name, args) = body.split_at(name_len);
    let mechanism = parse_mechanism(name, args).map_err(|e| e.shifted(skip))?;
    Ok(Directive { qualifier, mechanism })
}

/// ```text
/// all              = "all"
/// include          = "include"  ":" domain-spec
/// A                = "a"      [ ":" domain-spec ] [ dual-cidr-length ]
/// MX               = "mx"     [ ":" domain-spec ] [ dual-cidr-length ]
/// PTR              = "ptr"    [ ":" domain-spec ]
/// IP4              = "ip4"      ":" ip4-network   [ ip4-cidr-length ]
/// IP6              = "ip6"      ":" ip6-network   [ ip6-cidr-length ]
/// exists           = "exists"   ":" domain-spec
/// ```
///
/// Offsets are relative to `name`; `args` follows it.
fn parse_mechanism(name: &str, args: &str) -> Result<Mechanism, ParseError> {
    let at = name.len();
    let lower = name.to_ascii_lowercase();
    let shift = |e: ParseError| e.shifted(at);
    Ok(match lower.as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "all" => return Err(ParseError::new(at, "`all` takes no argument: write all")),
        "include" => Mechanism::Include(required_domain("include", args).map_err(shift)?),
        "exists" => Mechanism::Exists(required_domain("exists", args).map_err(shift)?),
        "ptr" => Mechanism::Ptr(ptr_domain(args).map_err(shift)?),
        "a" | "mx" => {
            let (domain, cidr4, cidr6) = domain_and_cidrs(&lower, args).map_err(shift)?;
            if lower == "a" {
                Mechanism::A { domain, cidr4, cidr6 }
            } else {
                Mechanism::Mx { domain, cidr4, cidr6 }
            }
        }
        "ip4" => Mechanism::Ip4(parse_ip4(args).map_err(shift)?),
        "ip6" => Mechanism::Ip6(parse_ip6(args).map_err(shift)?),
        _ => return Err(unknown_mechanism(name)),
    })
}

fn unknown_mechanism(name: &str) -> ParseError {
    let lower = name.to_ascii_lowercase();
    let message = match lower.as_str() {
        "" => "a qualifier must be followed by a mechanism (like -all)".to_string(),
        "redirect" | "exp" => format!("`{name}` is a modifier: write {lower}=example.com"),
        "ip" => "unknown mechanism `ip`: write ip4: or ip6:".to_string(),
        _ => format!(
            "unknown mechanism `{name}` (the mechanisms are all, include, a, mx, ptr, ip4, ip6, exists)"
        ),
    };
    ParseError::new(0, message)
}

/// `":" domain-spec`, as include and exists require. Offsets relative to `args`.
fn required_domain(mech: &str, args: &str) -> Result<MacroString, ParseError> {
    let needs = || format!("{mech} needs a domain: write {mech}:example.com");
    let Some(spec) = args.strip_prefix(':') else {
        return Err(ParseError::new(0, needs()));
    };
    if spec.is_empty() {
        return Err(ParseError::new(0, needs()));
    }
    MacroString::parse_domain_spec(spec).map_err(|e| {
        match cidr_suffix(spec).filter(|&s| MacroString::parse_domain_spec(&spec[..s]).is_ok()) {
            Some(s) => ParseError::new(1 + s, format!("{mech} takes no CIDR length")),
            None => e.shifted(1),
        }
    })
}

/// `[ ":" domain-spec ]` of ptr, which takes no CIDR length.
fn ptr_domain(args: &str) -> Result<Option<MacroString>, ParseError> {
    if args.is_empty() {
        return Ok(None);
    }
    if args.starts_with('/') {
        return Err(ParseError::new(0, "ptr takes no CIDR length"));
    }
    required_domain("ptr", args).map(Some)
}

/// The start of a trailing `/` and digits, if `text` ends with one.
fn cidr_suffix(text: &str) -> Option<usize> {
    let digits = text.bytes().rev().take_while(u8::is_ascii_digit).count();
    let slash = text.len().checked_sub(digits + 1)?;
    (digits > 0 && text.as_bytes()[slash] == b'/').then_some(slash)
}

type DomainAndCidrs = (Option<MacroString>, Option<u8>, Option<u8>);

/// `[ ":" domain-spec ] [ dual-cidr-length ]` of a and mx.
///
/// ```text
/// dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]
/// ```
///
/// The CIDR lengths are taken from the end, because a domain-spec may itself hold
/// `/` (`a:foo:bar/baz.example.com` is valid) but cannot end in `/` and digits.
fn domain_and_cidrs(mech: &str, args: &str) -> Result<DomainAndCidrs, ParseError> {
    let mut end = args.len();
    let mut cidr6 = None;
    if let Some(slash) = cidr_suffix(args).filter(|&s| s > 0 && args.as_bytes()[s - 1] == b'/') {
        cidr6 = Some(cidr_length(&args[slash + 1..], 128, "ip6", slash + 1)?);
        end = slash - 1;
    }
    let mut cidr4 = None;
    if let Some(slash) = cidr_suffix(&args[..end]) {
        if let Some(first) = cidr_suffix(&args[..slash]).filter(|_| cidr6.is_none()) {
            return Err(ParseError::new(
                first,
                "the IPv6 CIDR length follows a double slash: write /24//64",
            ));
        }
        cidr4 = Some(cidr_length(&args[slash + 1..end], 32, "ip4", slash + 1)?);
        end = slash;
    }
    let rest = &args[..end];
    let domain = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        Some("") => {
            return Err(ParseError::new(
                0,
                format!("{mech}: needs a domain after the colon: write {mech} or {mech}:example.com"),
            ));
        }
        Some(spec) => Some(MacroString::parse_domain_spec(spec).map_err(|e| e.shifted(1))?),
        None => {
            return Err(ParseError::new(
                0,
                format!(
                    "unexpected `{rest}` after `{mech}`: write {mech}, {mech}:example.com, {mech}/24 or {mech}:example.com/24//64"
                ),
            ));
        }
    };
    Ok((domain, cidr4, cidr6))
}

/// ```text
/// ip4-cidr-length  = "/" ("0" / %x31-39 0*1DIGIT) ; value range 0-32
/// ip6-cidr-length  = "/" ("0" / %x31-39 0*2DIGIT) ; value range 0-128
/// ```
///
/// `digits` is the text after the slash, found at offset `at`.
fn cidr_length(digits: &str, max: u8, family: &str, at: usize) -> Result<u8, ParseError> {
    let example = if family == "ip4" { "/24" } else { "/64" };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(
            at,
            format!(
                "invalid {family} CIDR length `{digits}`: write a number from 0 to {max}, like {example}"
            ),
        ));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(ParseError::new(
            at,
            format!("{family} CIDR length `{digits}` has a leading zero"),
        ));
    }
    match digits.parse::<u8>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ParseError::new(
            at,
            format!("{family} CIDR length {digits} is out of range 0-{max}"),
        )),
    }
}

/// The network text after `ip4:` or `ip6:`, split at the first `/`.
fn network_parts<'a>(family: &str, args: &'a str) -> Result<(&'a str, Option<&'a str>), ParseError> {
    let example = if family == "ip4" {
        "192.0.2.0/24"
    } else {
        "2001:db8::/32"
    };
    match args.strip_prefix(':') {
        Some(net) if !net.is_empty() => Ok(match net.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (net, None),
        }),
        _ => Err(ParseError::new(
            0,
            format!("{family} needs a network: write {family}:{example}"),
        )),
    }
}

/// ```text
/// ip4-network      = qnum "." qnum "." qnum "." qnum
/// qnum             = DIGIT / %x31-39 DIGIT / "1" 2DIGIT / "2" %x30-34 DIGIT / "25" %x30-35
/// ```
fn parse_ip4(args: &str) -> Result<Ipv4Net, ParseError> {
    let (addr, len) = network_parts("ip4", args)?;
    let ip: Ipv4Addr = addr.parse().map_err(|_| {
        ParseError::new(
            1,
            format!("`{addr}` is not an IPv4 address: write four numbers from 0 to 255, like 192.0.2.1"),
        )
    })?;
    let len = match len {
        None => 32,
        Some(digits) => cidr_length(digits, 32, "ip4", 2 + addr.len())?,
    };
    Ok(Ipv4Net::new(ip, len).expect("length checked"))
}

/// `ip6-network = <as per [RFC 4291], section 2.2>`
fn parse_ip6(args: &str) -> Result<Ipv6Net, ParseError> {
    let (addr, len) = network_parts("ip6", args)?;
    let ip: Ipv6Addr = addr.parse().map_err(|_| {
        ParseError::new(
            1,
            format!("`{addr}` is not an IPv6 address (RFC 4291 2.2), like 2001:db8::1"),
        )
    })?;
    let len = match len {
        None => 128,
        Some(digits) => cidr_length(digits, 128, "ip6", 2 + addr.len())?,
    };
    Ok(Ipv6Net::new(ip, len).expect("length checked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mech(text: &str) -> Mechanism {
        match parse_term(text, 0).unwrap_or_else(|e| panic!("{text}: {e}")).kind {
            TermKind::Directive(d) => d.mechanism,
            TermKind::Modifier(m) => panic!("{text}: modifier {m:?}"),
        }
    }

    fn spec(text: &str) -> Option<MacroString> {
        Some(MacroString::parse_domain_spec(text).unwrap())
    }

    #[test]
    fn mechanisms() {
        let net4 = |s: &str| Mechanism::Ip4(s.parse().unwrap());
        let net6 = |s: &str| Mechanism::Ip6(s.parse().unwrap());
        let a = |d: Option<MacroString>, c4, c6| Mechanism::A {
            domain: d,
            cidr4: c4,
            cidr6: c6,
        };
        let cases = vec![
            ("all", Mechanism::All),
            ("ALL", Mechanism::All),
            (
                "include:_spf.example.com",
                Mechanism::Include(spec("_spf.example.com").unwrap()),
            ),
            (
                "Include:Example.COM",
                Mechanism::Include(spec("Example.COM").unwrap()),
            ),
            ("a", a(None, None, None)),
            ("a/24//64", a(None, Some(24), Some(64))),
            ("a//0", a(None, None, Some(0))),
            ("A:foo.example.com/24", a(spec("foo.example.com"), Some(24), None)),
            (
                "a:foo:bar/baz.example.com",
                a(spec("foo:bar/baz.example.com"), None, None),
            ),
            ("a:%{d}/0", a(spec("%{d}"), Some(0), None)),
            (
                "mx:%{d}/24",
                Mechanism::Mx {
                    domain: spec("%{d}"),
                    cidr4: Some(24),
                    cidr6: None,
                },
            ),
            ("ptr", Mechanism::Ptr(None)),
            ("ptr:example.Com", Mechanism::Ptr(spec("example.Com"))),
            ("ip4:192.0.2.1", net4("192.0.2.1/32")),
            ("IP4:1.1.1.1/0", net4("1.1.1.1/0")),
            ("ip4:192.0.2.77/24", net4("192.0.2.77/24")),
            ("ip6:::1.1.1.1/0", net6("::1.1.1.1/0")),
            ("ip6:Cafe:Babe:8000::/33", net6("cafe:babe:8000::/33")),
            ("ip6:::FFFF:1.2.3.4", net6("::ffff:1.2.3.4/128")),
            (
                "exists:%{ir}.%{l1r+-}._spf.%{d}",
                Mechanism::Exists(spec("%{ir}.%{l1r+-}._spf.%{d}").unwrap()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(mech(text), want, "{text}");
        }
    }

    #[test]
    fn qualifiers() {
        for (text, q) in [
            ("+all", Qualifier::Pass),
            ("-all", Qualifier::Fail),
            ("~all", Qualifier::SoftFail),
            ("?all", Qualifier::Neutral),
            ("all", Qualifier::Pass),
        ] {
            let term = parse_term(text, 0).unwrap();
            assert_eq!(term.directive().unwrap().qualifier, q, "{text}");
        }
    }

    #[test]
    fn modifiers() {
        let cases = [
            ("redirect=_spf.example.com", "redirect"),
            ("REDIRECT=%{d}.d.spf.example.com.", "redirect"),
            ("exp=explain._spf.%{d}", "exp"),
            ("moo.cow-far_out=man:dog/cat", "unknown"),
            ("default=+", "unknown"),
            ("foo=", "unknown"),
        ];
        for (text, kind) in cases {
            let term = parse_term(text, 0).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = match term.modifier().unwrap() {
                Modifier::Redirect(_) => "redirect",
                Modifier::Exp(_) => "exp",
                Modifier::Unknown { .. } => "unknown",
            };
            assert_eq!(got, kind, "{text}");
        }
    }

    #[test]
    fn errors() {
        // (term, error offset in the term, words the message must contain)
        let cases = [
            ("foo", 0, "unknown mechanism `foo`"),
            ("-all.", 1, "unknown mechanism `all.`"),
            ("-all:foobar", 4, "takes no argument"),
            ("-all/8", 4, "takes no argument"),
            ("+", 1, "must be followed by a mechanism"),
            ("redirect:t2.example.com", 0, "is a modifier: write redirect="),
            ("include", 7, "include needs a domain: write include:example.com"),
            ("include:", 7, "include needs a domain"),
            ("include:ip5.example.com/24", 23, "include takes no CIDR length"),
            ("exists", 6, "exists needs a domain"),
            ("exists:mail.example.com/24", 23, "exists takes no CIDR length"),
            ("ptr/0", 3, "ptr takes no CIDR length"),
            ("ptr:", 3, "ptr needs a domain"),
            ("a:", 1, "needs a domain after the colon"),
            ("mx:", 2, "needs a domain after the colon"),
            ("a:museum", 2, "not a fully qualified"),
            ("a:abc.123", 6, "all digits"),
            ("a:111.222.33.44", 2, "write ip4:111.222.33.44"),
            ("a:example.com:8080", 10, "top-level label"),
            ("a/33", 2, "ip4 CIDR length 33 is out of range 0-32"),
            ("a//129", 3, "ip6 CIDR length 129 is out of range 0-128"),
            ("mx//33x", 2, "unexpected `//33x`"),
            ("a/24/64", 1, "double slash"),
            ("a:foo.example.com/24/64", 17, "double slash"),
            ("a/032", 2, "leading zero"),
            ("ip4", 3, "ip4 needs a network"),
            ("ip4:", 3, "ip4 needs a network"),
            ("ip4:1.2.3.4/33", 12, "ip4 CIDR length 33 is out of range 0-32"),
            ("ip4:1.2.3.4/032", 12, "leading zero"),
            ("ip4:1.2.3.4//32", 12, "invalid ip4 CIDR length `/32`"),
            ("ip4:1.2.3.4:8080", 4, "not an IPv4 address"),
            ("ip4:1.2.3", 4, "not an IPv4 address"),
            ("ip4:01.2.3.4", 4, "not an IPv4 address"),
            ("ip4:256.2.3.4", 4, "not an IPv4 address"),
            ("ip6", 3, "ip6 needs a network"),
            ("ip6::CAFE::BABE", 4, "not an IPv6 address"),
            ("ip6:::1.1.1.1/129", 14, "out of range 0-128"),
            ("ip6:::1.1.1.1//33", 14, "invalid ip6 CIDR length"),
            ("1up=foo", 0, "invalid modifier name `1up`"),
            ("=all", 0, "needs a name"),
            ("+redirect=example.com", 0, "takes no qualifier"),
            ("redirect=", 9, "redirect needs a domain"),
            ("exp=", 4, "exp needs a domain"),
            ("redirect=-all", 9, "not a fully qualified"),
            ("exp=%{r}.example.com", 4, "only in explanation"),
            ("foo=%abc", 4, "invalid macro"),
            ("moo.cow/far_out=man:dog/cat", 0, "unknown mechanism `moo.cow`"),
            ("a:%{a}.example.com", 2, "invalid macro `%{a}`"),
        ];
        for (text, offset, words) in cases {
            let err = parse_term(text, 0).expect_err(text);
            assert_eq!(err.offset, offset, "{text}: {}", err.message);
            assert!(err.message.contains(words), "{text}: {}", err.message);
        }
    }

    #[test]
    fn error_offsets_are_record_offsets() {
        let err = parse_term("a/33", 10).unwrap_err();
        assert_eq!(err.offset, 12);
    }
}
