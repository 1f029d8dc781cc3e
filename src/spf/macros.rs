//! Macro expansion (RFC 7208 7.3): turning a parsed macro-string into a name to
//! query or an explanation, given the message being checked.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::macro_string::{Macro, MacroItem, MacroLetter, MacroString};
use crate::names::MAX_NAME;

/// What macros expand to: the arguments of check_host() and the state of the
/// evaluation (the current domain changes across include and redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroContext {
    /// `%{s}`: `<sender>`, always `local-part@domain` (4.3 supplies `postmaster`).
    pub sender: String,
    /// `%{l}`
    pub local_part: String,
    /// `%{o}`
    pub sender_domain: String,
    /// `%{d}`: the domain whose record is being evaluated.
    pub domain: String,
    /// `%{i}`, `%{c}`, `%{v}`: an IPv4-mapped IPv6 address is already IPv4 here.
    pub client_ip: IpAddr,
    /// `%{h}`
    pub helo: String,
    /// `%{p}`: the validated name of the client, found by the evaluator only when a
    /// macro-string uses `p` (it costs DNS lookups); `None` expands to `unknown`.
    pub ptr_name: Option<String>,
    /// `%{r}`: the name of the host doing the check (explanations only).
    pub receiver: String,
    /// `%{t}`: seconds since the Unix epoch (explanations only).
    pub now: u64,
}

impl MacroContext {
    /// The context at the start of check_host(): `sender` as given (a missing
    /// local-part becomes `postmaster`, RFC 7208 4.3), `domain` as the current one.
    pub fn new(client_ip: IpAddr, sender: &str, helo: &str, domain: &str) -> Self {
        let (local_part, sender_domain) = split_sender(sender);
        Self {
            sender: format!("{local_part}@{sender_domain}"),
            local_part,
            sender_domain,
            domain: domain.to_string(),
            client_ip: canonical_ip(client_ip),
            helo: helo.to_string(),
            ptr_name: None,
            receiver: "unknown".to_string(),
            now: 0,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it carries
/// (RFC 7208 5: such a client is evaluated as IPv4); any other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The local-part and domain of a sender (split at the last `@`). A missing
/// local-part is `postmaster`; text without `@` is all domain.
pub fn split_sender(sender: &str) -> (String, String) {
    let (local, domain) = sender.rsplit_once('@').unwrap_or(("", sender));
    let local = if local.is_empty() { "postmaster" } else { local };
    (local.to_string(), domain.to_string())
}

impl MacroString {
    /// The text with every macro replaced (7.3).
    pub fn expand(&self, ctx: &MacroContext) -> String {
        let mut out = String::new();
        for item in self.items() {
            match item {
                MacroItem::Literal(text) => out.push_str(text),
                MacroItem::Macro(m) => out.push_str(&expand_macro(m, ctx)),
            }
        }
        out
    }

    /// The expansion as a name to query: without a trailing dot, and shortened to
    /// 253 octets by removing labels from the left (7.3).
    pub fn expand_domain(&self, ctx: &MacroContext) -> String {
        let expanded = self.expand(ctx);
        let name = expanded.strip_suffix('.').unwrap_or(&expanded);
        truncate_name(name).to_string()
    }
}

/// Removes whole labels from the left until `name` is at most 253 octets (7.3). A
/// single label longer than that is returned as it is.
pub fn truncate_name(name: &str) -> &str {
    let mut name = name;
    while name.len() > MAX_NAME {
        match name.find('.') {
            Some(dot) => name = &name[dot + 1..],
            None => break,
        }
    }
    name
}

fn expand_macro(m: &Macro, ctx: &MacroContext) -> String {
    let value = letter_value(m.letter, ctx);
    let value = transform(&value, m);
    if m.url_escape { url_escape(&value) } else { value }
}

fn letter_value(letter: MacroLetter, ctx: &MacroContext) -> String {
    match letter {
        MacroLetter::Sender => ctx.sender.clone(),
        MacroLetter::LocalPart => ctx.local_part.clone(),
        MacroLetter::SenderDomain => ctx.sender_domain.clone(),
        MacroLetter::Domain => ctx.domain.clone(),
        MacroLetter::Ip => dotted_ip(ctx.client_ip),
        MacroLetter::PtrName => ctx.ptr_name.clone().unwrap_or_else(|| "unknown".to_string()),
        MacroLetter::IpVersion => match ctx.client_ip {
            IpAddr::V4(_) => "in-addr".to_string(),
            IpAddr::V6(_) => "ip6".to_string(),
        },
        MacroLetter::Helo => ctx.helo.clone(),
        MacroLetter::ClientIp => ctx.client_ip.to_string(),
        MacroLetter::Receiver => ctx.receiver.clone(),
        MacroLetter::Timestamp => ctx.now.to_string(),
    }
}

/// `%{i}`: dotted decimal for IPv4; for IPv6 the 32 nibbles in hex, dot-separated,
/// most significant first (7.3).
pub fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let _ = write!(out, "{nibble:x}");
                }
            }
            out
        }
    }
}

/// Splits on the delimiters (default `.`), reverses when asked, keeps the
/// right-most parts when asked, and joins with dots (7.3).
fn transform(value: &str, m: &Macro) -> String {
    let delimiters = if m.delimiters.is_empty() {
        "."
    } else {
        m.delimiters.as_str()
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if m.reverse {
        parts.reverse();
    }
    if let Some(keep) = m.keep {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        if keep < parts.len() {
            parts.drain(..parts.len() - keep);
        }
    }
    parts.join(".")
}

/// Upper-case macro letters are URL-escaped: every octet outside the unreserved set
/// of RFC 3986 becomes `%XX` (7.3).
fn url_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 7208 7.4.
    fn rfc_context(ip: &str) -> MacroContext {
        let mut ctx = MacroContext::new(
            ip.parse().unwrap(),
            "strong-bad@email.example.com",
            "mx.example.org",
            "email.example.com",
        );
        ctx.ptr_name = Some("mx.example.org".to_string());
        ctx
    }

    fn expand(text: &str, ctx: &MacroContext) -> String {
        MacroString::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .expand(ctx)
    }

    #[test]
    fn rfc_7208_section_7_4_macros() {
        let ctx = rfc_context("192.0.2.3");
        let cases = [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
        ];
        for (text, want) in cases {
            assert_eq!(expand(text, &ctx), want, "{text}");
        }
    }

    #[test]
    fn rfc_7208_section_7_4_macro_strings() {
        let v4 = rfc_context("192.0.2.3");
        let v6 = rfc_context("2001:db8::cb01");
        let cases = [
            (&v4, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
            (&v4, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                &v4,
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                &v4,
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                &v4,
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
            (
                &v6,
                "%{ir}.%{v}._spf.%{d2}",
                "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com",
            ),
        ];
        for (ctx, text, want) in cases {
            assert_eq!(expand(text, ctx), want, "{text}");
        }
    }

    #[test]
    fn other_letters_escapes_and_url_escaping() {
        let mut ctx = MacroContext::new(
            "cafe:babe::1".parse().unwrap(),
            "~jack&jill=up-a_b3.c@e8.example.com",
            "JUMPIN' JUPITER",
            "e8.example.com",
        );
        ctx.now = 1_700_000_000;
        let cases = [
            ("%{c}", "cafe:babe::1"),
            ("%{v}", "ip6"),
            ("%{p}", "unknown"),
            ("%{r}", "unknown"),
            ("%{t}", "1700000000"),
            ("%{h}", "JUMPIN' JUPITER"),
            ("%{H}", "JUMPIN%27%20JUPITER"),
            ("%{L}", "~jack%26jill%3Dup-a_b3.c"),
            ("%{D2}", "example.com"),
            ("%%%_%-", "% %20"),
            ("%{d9999999999}", "e8.example.com"),
        ];
        for (text, want) in cases {
            assert_eq!(expand(text, &ctx), want, "{text}");
        }
    }

    #[test]
    fn multiple_delimiters() {
        let ctx = MacroContext::new(
            "192.0.2.1".parse().unwrap(),
            "foo-bar+zip+quux@e12.example.com",
            "h.example",
            "e12.example.com",
        );
        assert_eq!(expand("%{l2r+-}", &ctx), "bar.foo");
        assert_eq!(expand("%{l=+}", &ctx), "foo-bar.zip.quux");
    }

    #[test]
    fn sender_without_local_part_is_postmaster() {
        let ctx = MacroContext::new(
            "192.0.2.1".parse().unwrap(),
            "@example.net",
            "h.example",
            "example.net",
        );
        assert_eq!(ctx.local_part, "postmaster");
        assert_eq!(ctx.sender, "postmaster@example.net");
        assert_eq!(
            split_sender("Macro Error@e8.example.com"),
            ("Macro Error".to_string(), "e8.example.com".to_string())
        );
        assert_eq!(
            split_sender("example.com"),
            ("postmaster".to_string(), "example.com".to_string())
        );
    }

    #[test]
    fn ipv4_mapped_client_is_ipv4() {
        let ctx = MacroContext::new(
            "::ffff:192.0.2.3".parse().unwrap(),
            "a@b.example",
            "h.example",
            "b.example",
        );
        assert_eq!(ctx.client_ip, "192.0.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(expand("%{ir}.%{v}", &ctx), "3.2.0.192.in-addr");
    }

    #[test]
    fn long_names_lose_labels_from_the_left() {
        let o = "somewhat.long.exp.example.com";
        let ctx = MacroContext::new("192.0.2.1".parse().unwrap(), &format!("test@{o}"), "h.example", o);
        let spec =
            MacroString::parse_domain_spec(&format!("foobar.{}example.com", "%{o}.".repeat(8))).unwrap();
        let name = spec.expand_domain(&ctx);
        assert_eq!(name, format!("{}example.com", format!("{o}.").repeat(8)));
        assert!(name.len() <= 253);
        assert_eq!(truncate_name(&"x".repeat(300)).len(), 300);
        let trailing = MacroString::parse_domain_spec("%{d}.d.spf.example.com.").unwrap();
        assert_eq!(trailing.expand_domain(&ctx), format!("{o}.d.spf.example.com"));
    }
}
