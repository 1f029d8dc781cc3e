//! Macro-strings (RFC 7208 7.1): the grammar shared by domain-specs, the values of
//! unknown modifiers and explanation text, parsed into literal and macro parts.

use std::fmt;
use std::net::IpAddr;

use super::error::ParseError;
use crate::names;

/// A macro letter (RFC 7208 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacroLetter {
    /// `s`: the whole `<sender>`.
    Sender,
    /// `l`: the local-part of `<sender>`.
    LocalPart,
    /// `o`: the domain of `<sender>`.
    SenderDomain,
    /// `d`: the current `<domain>` (changes across include and redirect).
    Domain,
    /// `i`: the client address, dotted (IPv4) or 32 dotted nibbles (IPv6).
    Ip,
    /// `p`: the validated name of the client address.
    PtrName,
    /// `v`: `in-addr` or `ip6`.
    IpVersion,
    /// `h`: the HELO/EHLO domain.
    Helo,
    /// `c`: the client address in readable form (explanations only).
    ClientIp,
    /// `r`: the receiving host (explanations only).
    Receiver,
    /// `t`: the current time in seconds since the epoch (explanations only).
    Timestamp,
}

impl MacroLetter {
    /// The letter for a lower-case character.
    pub fn from_char(c: char) -> Option<Self> {
        Some(match c {
            's' => Self::Sender,
            'l' => Self::LocalPart,
            'o' => Self::SenderDomain,
            'd' => Self::Domain,
            'i' => Self::Ip,
            'p' => Self::PtrName,
            'v' => Self::IpVersion,
            'h' => Self::Helo,
            'c' => Self::ClientIp,
            'r' => Self::Receiver,
            't' => Self::Timestamp,
            _ => return None,
        })
    }

    pub fn as_char(self) -> char {
        match self {
            Self::Sender => 's',
            Self::LocalPart => 'l',
            Self::SenderDomain => 'o',
            Self::Domain => 'd',
            Self::Ip => 'i',
            Self::PtrName => 'p',
            Self::IpVersion => 'v',
            Self::Helo => 'h',
            Self::ClientIp => 'c',
            Self::Receiver => 'r',
            Self::Timestamp => 't',
        }
    }

    /// `c`, `r` and `t` may appear only in explanation text (7.2).
    pub fn explanation_only(self) -> bool {
        matches!(self, Self::ClientIp | Self::Receiver | Self::Timestamp)
    }
}

/// One `%{...}` macro with its transformers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    pub letter: MacroLetter,
    /// Written in upper case: the expansion is URL-escaped (7.3).
    pub url_escape: bool,
    /// The digit transformer: keep this many right-hand parts; never 0.
    pub keep: Option<u32>,
    /// The `r` transformer: reverse the parts before keeping.
    pub reverse: bool,
    /// Characters the value is split on; empty means `.` (7.3).
    pub delimiters: String,
}

/// A part of a macro-string. `%%`, `%_` and `%-` are stored as their literal
/// expansion (`%`, space, `%20`), merged with the literal text around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroItem {
    Literal(String),
    Macro(Macro),
}

/// Where a macro-string appears, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A domain-spec: no space, no `c r t`, must end in a macro or a top-level label.
    DomainSpec,
    /// The value of an unknown modifier: any macro letter, no space.
    ModifierValue,
    /// Explanation text (the TXT record an `exp=` names): spaces allowed.
    Explanation,
}

/// A parsed macro-string, keeping its source text.
///
/// ```text
/// domain-spec      = macro-string domain-end
/// domain-end       = ( "." toplabel [ "." ] ) / macro-expand
/// explain-string   = *( macro-string / SP )
/// macro-string     = *( macro-expand / macro-literal )
/// macro-expand     = ( "%{" macro-letter transformers *delimiter "}" )
///                    / "%%" / "%_" / "%-"
/// macro-literal    = %x21-24 / %x26-7E   ; visible characters except "%"
/// macro-letter     = "s" / "l" / "o" / "d" / "i" / "p" / "h" /
///                    "c" / "r" / "t" / "v"
/// transformers     = *DIGIT [ "r" ]
/// delimiter        = "." / "-" / "+" / "," / "/" / "_" / "="
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    source: String,
    items: Vec<MacroItem>,
}

impl MacroString {
    /// A `macro-string`, as in the value of an unknown modifier.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Ok(parse_items(text, Kind::ModifierValue)?.0)
    }

    /// A `domain-spec` (7.1): a non-empty macro-string without `c r t` that ends in a
    /// macro or in `.` and a top-level label.
    pub fn parse_domain_spec(text: &str) -> Result<Self, ParseError> {
        let (spec, expand_end) = parse_items(text, Kind::DomainSpec)?;
        check_domain_end(text, expand_end)?;
        Ok(spec)
    }

    /// An `explain-string` (6.2): the text of the TXT record an `exp=` names.
    pub fn parse_explanation(text: &str) -> Result<Self, ParseError> {
        Ok(parse_items(text, Kind::Explanation)?.0)
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn items(&self) -> &[MacroItem] {
        &self.items
    }

    /// The macros, in order.
    pub fn macros(&self) -> impl Iterator<Item = &Macro> {
        self.items.iter().filter_map(|item| match item {
            MacroItem::Macro(m) => Some(m),
            MacroItem::Literal(_) => None,
        })
    }

    /// True when there is no `%{...}` macro (escapes like `%%` are literal).
    pub fn is_literal(&self) -> bool {
        self.macros().next().is_none()
    }

    /// The expansion when it needs no context: `Some` exactly when [`is_literal`].
    ///
    /// [`is_literal`]: MacroString::is_literal
    pub fn literal(&self) -> Option<&str> {
        match self.items.as_slice() {
            [] => Some(""),
            [MacroItem::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// True when every macro uses one of `letters` (lower case, e.g. `"do"`): a
    /// domain-spec using only `d` and `o` can be expanded ahead of time once the
    /// domain and the sender's domain are known; any other letter needs the message.
    pub fn uses_only(&self, letters: &str) -> bool {
        self.macros().all(|m| letters.contains(m.letter.as_char()))
    }

    /// True when some macro uses `letter`.
    pub fn uses(&self, letter: MacroLetter) -> bool {
        self.macros().any(|m| m.letter == letter)
    }
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parses `text`; also returns the byte offset just after the last macro-expand
/// (0 when there is none), which [`check_domain_end`] needs.
fn parse_items(text: &str, kind: Kind) -> Result<(MacroString, usize), ParseError> {
    let bytes = text.as_bytes();
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut expand_end = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let (piece, len) = parse_percent(text, i, kind)?;
            match piece {
                Piece::Text(t) => literal.push_str(t),
                Piece::Macro(m) => {
                    if !literal.is_empty() {
                        items.push(MacroItem::Literal(std::mem::take(&mut literal)));
                    }
                    items.push(MacroItem::Macro(m));
                }
            }
            i += len;
            expand_end = i;
        } else if (0x21..=0x7e).contains(&c) || (c == b' ' && kind == Kind::Explanation) {
            literal.push(char::from(c));
            i += 1;
        } else {
            return Err(bad_character(text, i));
        }
    }
    if !literal.is_empty() {
        items.push(MacroItem::Literal(literal));
    }
    let source = text.to_string();
    Ok((MacroString { source, items }, expand_end))
}

pub(super) fn bad_character(text: &str, at: usize) -> ParseError {
    let c = text[at..].chars().next().unwrap_or(' ');
    let message = if c == ' ' {
        "a space cannot appear here: terms are separated by spaces".to_string()
    } else if c.is_ascii_control() {
        format!(
            "control character U+{:04X} is not allowed: SPF text is printable ASCII",
            c as u32
        )
    } else {
        format!("character `{c}` is not allowed: SPF text is printable ASCII (RFC 7208 3.1)")
    };
    ParseError::new(at, message)
}

enum Piece {
    Text(&'static str),
    Macro(Macro),
}

/// A macro-expand starting with the `%` at `at`; returns it and its length.
fn parse_percent(text: &str, at: usize, kind: Kind) -> Result<(Piece, usize), ParseError> {
    let piece = match text.as_bytes().get(at + 1) {
        Some(b'%') => Piece::Text("%"),
        Some(b'_') => Piece::Text(" "),
        Some(b'-') => Piece::Text("%20"),
        Some(b'{') => return parse_braced(text, at, kind),
        _ => {
            let shown: String = text[at..].chars().take(2).collect();
            return Err(ParseError::new(
                at,
                format!(
                    "invalid macro `{shown}`: `%` must be followed by `{{`, `%`, `_` or `-`; write `%%` for a percent sign"
                ),
            ));
        }
    };
    Ok((piece, 2))
}

/// `"%{" macro-letter transformers *delimiter "}"` starting at `at`.
fn parse_braced(text: &str, at: usize, kind: Kind) -> Result<(Piece, usize), ParseError> {
    let Some(close) = text[at..].find('}').map(|i| at + i) else {
        return Err(ParseError::new(
            at,
            format!("invalid macro `{}`: the closing `}}` is missing", &text[at..]),
        ));
    };
    let body = &text[at + 2..close];
    let shown = &text[at..=close];
    let m = parse_macro_body(body)
        .map_err(|why| ParseError::new(at, format!("invalid macro `{shown}`: {why}")))?;
    if kind == Kind::DomainSpec && m.letter.explanation_only() {
        let why = format!(
            "`{}` is allowed only in explanation text, not in a domain",
            m.letter.as_char()
        );
        return Err(ParseError::new(at, format!("invalid macro `{shown}`: {why}")));
    }
    Ok((Piece::Macro(m), close + 1 - at))
}

fn parse_macro_body(body: &str) -> Result<Macro, String> {
    let mut chars = body.chars();
    let Some(c) = chars.next() else {
        return Err("the macro letter is missing".to_string());
    };
    let letter = MacroLetter::from_char(c.to_ascii_lowercase())
        .ok_or_else(|| format!("`{c}` is not a macro letter (s l o d i p h v, and c r t in explanations)"))?;
    let rest = chars.as_str();
    let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = rest.split_at(digits_len);
    let keep = match digits {
        "" => None,
        d if d.bytes().all(|b| b == b'0') => {
            return Err("the number of parts to keep must be 1 or more".to_string());
        }
        d => Some(d.parse::<u32>().unwrap_or(u32::MAX)),
    };
    let (reverse, delimiters) = match rest.strip_prefix(['r', 'R']) {
        Some(after) => (true, after),
        None => (false, rest),
    };
    if let Some(bad) = delimiters.chars().find(|c| !".-+,/_=".contains(*c)) {
        return Err(format!(
            "`{bad}` is not a transformer or delimiter (digits, `r`, then any of . - + , / _ =)"
        ));
    }
    Ok(Macro {
        letter,
        url_escape: c.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: delimiters.to_string(),
    })
}

/// `domain-end = ( "." toplabel [ "." ] ) / macro-expand`. `expand_end` is the
/// offset just after the last macro-expand; the literal tail after it must hold the
/// dot and the top-level label.
fn check_domain_end(text: &str, expand_end: usize) -> Result<(), ParseError> {
    if text.is_empty() {
        return Err(ParseError::new(0, "the domain is empty"));
    }
    if expand_end == text.len() {
        return Ok(());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        let mech = if ip.is_ipv4() { "ip4" } else { "ip6" };
        return Err(ParseError::new(
            0,
            format!("`{text}` is an IP address, not a domain: write {mech}:{text}"),
        ));
    }
    let tail = &text[expand_end..];
    let trimmed = tail.strip_suffix('.').unwrap_or(tail);
    let Some(dot) = trimmed.rfind('.') else {
        let message = if expand_end == 0 {
            format!("`{text}` is not a fully qualified domain name (like example.com)")
        } else {
            format!("`{text}` must end in a macro or in a dot and a top-level label (like .com)")
        };
        return Err(ParseError::new(expand_end, message));
    };
    let label = &trimmed[dot + 1..];
    match names::toplabel_problem(label) {
        None => Ok(()),
        Some(why) => Err(ParseError::new(
            expand_end + dot + 1,
            format!("`{text}` does not end in a valid top-level label: {why}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(letter: char, url: bool, keep: Option<u32>, reverse: bool, delims: &str) -> MacroItem {
        MacroItem::Macro(Macro {
            letter: MacroLetter::from_char(letter).unwrap(),
            url_escape: url,
            keep,
            reverse,
            delimiters: delims.to_string(),
        })
    }

    fn lit(s: &str) -> MacroItem {
        MacroItem::Literal(s.to_string())
    }

    #[test]
    fn domain_specs_parse_into_items() {
        let cases: Vec<(&str, Vec<MacroItem>)> = vec![
            ("example.com", vec![lit("example.com")]),
            ("_spf.example.com.", vec![lit("_spf.example.com.")]),
            ("%{d}", vec![m('d', false, None, false, "")]),
            ("%{D2}", vec![m('d', true, Some(2), false, "")]),
            (
                "%{ir}.%{v}._spf.%{d2}",
                vec![
                    m('i', false, None, true, ""),
                    lit("."),
                    m('v', false, None, false, ""),
                    lit("._spf."),
                    m('d', false, Some(2), false, ""),
                ],
            ),
            (
                "%{l1r+-}._spf.%{d}",
                vec![
                    m('l', false, Some(1), true, "+-"),
                    lit("._spf."),
                    m('d', false, None, false, ""),
                ],
            ),
            ("a%%b%_c%-d.example.com", vec![lit("a%b c%20d.example.com")]),
            ("foo:bar/baz.example.com", vec![lit("foo:bar/baz.example.com")]),
            ("mail.example...com", vec![lit("mail.example...com")]),
            ("foo.example.xn--zckzah", vec![lit("foo.example.xn--zckzah")]),
        ];
        for (text, items) in cases {
            let spec = MacroString::parse_domain_spec(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(spec.items(), items.as_slice(), "{text}");
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn domain_spec_errors() {
        // (input, byte offset, words the message must contain)
        let cases = [
            ("", 0, "empty"),
            ("museum", 0, "not a fully qualified"),
            ("museum.", 0, "not a fully qualified"),
            ("foo-bar", 0, "not a fully qualified"),
            ("abc.123", 4, "all digits"),
            ("example.-com", 8, "hyphen"),
            ("example.com:8080", 8, "letters, digits and hyphens"),
            ("ip5.example.com/24", 12, "top-level label"),
            ("111.222.33.44", 0, "write ip4:111.222.33.44"),
            ("%{d}com", 4, "must end in a macro or in a dot"),
            ("%{d}.", 4, "must end in a macro"),
            ("%{x}.example.com", 0, "invalid macro `%{x}`"),
            ("%{r}.example.com", 0, "only in explanation"),
            ("%{c}.example.com", 0, "only in explanation"),
            ("%{d0}.example.com", 0, "1 or more"),
            ("%{dx}.example.com", 0, "not a transformer"),
            ("%{d", 0, "closing `}` is missing"),
            ("%(ir).sbl.example.com", 0, "must be followed by"),
            ("foo%.sbl.example.com", 3, "must be followed by"),
            ("foo.example.com\0", 15, "control character U+0000"),
            ("a b.example.com", 1, "space"),
            ("\u{ef}garbage.example.net", 0, "not allowed"),
        ];
        for (text, offset, words) in cases {
            let err = MacroString::parse_domain_spec(text).expect_err(text);
            assert_eq!(err.offset, offset, "{text}: {err}");
            assert!(err.message.contains(words), "{text}: {}", err.message);
        }
    }

    #[test]
    fn domain_end_may_be_any_macro_expand() {
        for text in ["%{d}", "foo.%{h}", "x%%", "x%-", "x%_", "%{d}.com", "%{d}.com."] {
            assert!(MacroString::parse_domain_spec(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn literal_and_letters() {
        let spec = MacroString::parse_domain_spec("_spf.example.com").unwrap();
        assert!(spec.is_literal());
        assert_eq!(spec.literal(), Some("_spf.example.com"));
        let escaped = MacroString::parse_domain_spec("a%%b.example.com").unwrap();
        assert_eq!(escaped.literal(), Some("a%b.example.com"));
        let dynamic = MacroString::parse_domain_spec("%{o}._spf.%{d}").unwrap();
        assert!(!dynamic.is_literal());
        assert_eq!(dynamic.literal(), None);
        assert!(dynamic.uses_only("do"));
        assert!(!dynamic.uses_only("d"));
        let client = MacroString::parse_domain_spec("%{ir}.%{d}").unwrap();
        assert!(!client.uses_only("do"));
        assert!(client.uses(MacroLetter::Ip));
        assert!(!client.uses(MacroLetter::PtrName));
    }

    #[test]
    fn modifier_values_and_explanations() {
        assert!(MacroString::parse("+").is_ok());
        assert!(MacroString::parse("%{c}").is_ok());
        assert!(MacroString::parse("").unwrap().is_literal());
        assert_eq!(MacroString::parse("%abc").unwrap_err().offset, 0);
        assert!(MacroString::parse("a b").is_err());
        let exp = MacroString::parse_explanation("Connections from %{c} not authorized.").unwrap();
        assert_eq!(exp.macros().count(), 1);
        assert!(MacroString::parse_explanation("The %{x}-files.").is_err());
        assert!(MacroString::parse_explanation("\u{ef}\u{bb}\u{bf}Explanation").is_err());
    }
}
