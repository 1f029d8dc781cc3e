//! DNS names: the one validator for every name spfd reads (config, policy files, SPF
//! domain-specs), the RFC 7208 checks of names met while evaluating, and building
//! names from validated parts. Imports nothing from the crate.
//!
//! The rules (RFC 1035 2.3.1 and 2.3.4, RFC 1123 2.1, RFC 8552):
//!
//! ```text
//! name      = label *( "." label ) [ "." ]    ; at most 253 octets without the dot
//! label     = 1*63 octets
//! host      = ldh-label *( "." ldh-label )    ; Rules::Host: NS names, mail domains
//! ldh-label = let-dig [ *( let-dig / "-" ) let-dig ]
//! let-dig   = ALPHA / DIGIT
//! service   = label of let-dig, "-" and "_", not starting or ending with "-"
//!                                             ; Rules::Service: _spf, _dmarc, _domainkey
//! ```
//!
//! Names that resolvers and receivers refuse (`-bad-.test`, `bad..test`) are refused
//! here, when a file is checked, not later when a query is made.

use hickory_proto::rr::Name;

/// The longest domain name in text form without the trailing dot (RFC 7208 7.3; the
/// 255 octets of RFC 1035 2.3.4 in wire form).
pub const MAX_NAME: usize = 253;
/// The longest label (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = 63;

/// Which labels a name may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Host names (RFC 1123 2.1): letters, digits and inner hyphens. Mail domains,
    /// NS names, DKIM selectors (RFC 6376 3.1), report mailbox hosts.
    Host,
    /// Names that may also hold underscores (RFC 8552), as SPF, DMARC and DKIM use:
    /// `_spf.example.com`, `_dmarc`, `_domainkey`. Hyphens are still inner only.
    Service,
}

/// Why a name is refused; each completes a sentence such as `domain "x" ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty: write a domain name like example.com")]
    Empty,
    #[error("is {0} octets long; a domain name has at most 253")]
    TooLong(usize),
    #[error("has an empty label (two dots in a row, or a dot at an end)")]
    EmptyLabel,
    #[error("has a label of {0} octets; a label has at most 63")]
    LongLabel(usize),
    #[error("contains {0:?}, which is not allowed in a domain name")]
    BadChar(char),
    #[error("has label {0:?} starting or ending with a hyphen")]
    Hyphen(String),
    #[error("is not a domain name: {0}")]
    Other(String),
}

/// Checks one label against `rules`.
pub fn check_label(label: &str, rules: Rules) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > MAX_LABEL {
        return Err(NameError::LongLabel(label.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || (c == '_' && rules == Rules::Service);
    if let Some(c) = label.chars().find(|c| !allowed(*c)) {
        return Err(NameError::BadChar(c));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::Hyphen(label.to_string()));
    }
    Ok(())
}

/// Checks a name in text form (one trailing dot allowed) against `rules`.
pub fn check_name(text: &str, rules: Rules) -> Result<(), NameError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong(name.len()));
    }
    name.split('.').try_for_each(|label| check_label(label, rules))
}

/// A checked name, absolute and lower-cased.
pub fn parse_name(text: &str, rules: Rules) -> Result<Name, NameError> {
    check_name(text, rules)?;
    let mut name = Name::from_ascii(text).map_err(|e| NameError::Other(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// A host name (`Rules::Host`), absolute and lower-cased.
pub fn parse_host_name(text: &str) -> Result<Name, NameError> {
    parse_name(text, Rules::Host)
}

/// An SOA RNAME (RFC 1035 8): `hostmaster@example.net` or `hostmaster.example.net`.
/// The local part is one label of visible characters (a dot in it is escaped); the
/// rest is a host name.
pub fn parse_mailbox(text: &str) -> Result<Name, NameError> {
    let Some((local, domain)) = text.split_once('@') else {
        return parse_host_name(text);
    };
    if local.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if local.len() > MAX_LABEL {
        return Err(NameError::LongLabel(local.len()));
    }
    if let Some(c) = local.chars().find(|c| !c.is_ascii_graphic() || *c == '\\') {
        return Err(NameError::BadChar(c));
    }
    let domain = parse_host_name(domain)?;
    let local = Name::from_labels([local.as_bytes()]).map_err(|e| NameError::Other(e.to_string()))?;
    local
        .append_domain(&domain)
        .map(|n| n.to_lowercase())
        .map_err(|e| NameError::Other(e.to_string()))
}

/// `label.name`, for names built from validated parts (labels are checked on load,
/// with the length of the whole name).
///
/// # Panics
/// When the label is not one, or the result is longer than 255 octets.
pub fn prepend(name: &Name, label: &str) -> Name {
    let out = Name::from_ascii(label).expect("validated label");
    out.append_domain(name).expect("validated name length")
}

/// Why `label` is not a `toplabel` (RFC 7208 7.1), or `None` when it is one.
///
/// ```text
/// toplabel = ( *alphanum ALPHA *alphanum ) /
///            ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
/// alphanum = ALPHA / DIGIT
/// ```
pub fn toplabel_problem(label: &str) -> Option<&'static str> {
    let b = label.as_bytes();
    if b.is_empty() {
        return Some("the top-level label is empty");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return Some("a top-level label has only letters, digits and hyphens");
    }
    if !b.contains(&b'-') {
        if b.iter().all(u8::is_ascii_digit) {
            return Some("a top-level label cannot be all digits");
        }
        return None;
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Some("a top-level label cannot start or end with a hyphen");
    }
    None
}

/// True when `name` can be sent as a DNS query: labels of 1 to 63 octets, at most
/// 253 octets in all. One trailing dot (the root) is allowed. Any octet is allowed:
/// this is the rule for names found while evaluating someone else's record (RFC
/// 7208 4.3), not for names spfd publishes ([`check_name`]).
pub fn is_queryable(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL)
}

/// True when `name` is acceptable as the `<domain>` of check_host() (RFC 7208 4.3):
/// queryable, at least two labels, and a top-level label as the grammar defines it.
/// A domain literal such as `[192.0.2.1]` or a bare host name is not.
pub fn is_valid_domain(name: &str) -> bool {
    if !is_queryable(name) {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    match name.rsplit_once('.') {
        Some((_, top)) => toplabel_problem(top).is_none(),
        None => false,
    }
}

/// Lower case without the trailing dot: the form names are compared in.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// True when `name` is `parent` or a name below it (case-insensitive, trailing dots
/// ignored), the test of the `ptr` mechanism (5.5) and the `%{p}` preference (7.3).
pub fn is_at_or_below(name: &str, parent: &str) -> bool {
    let name = normalize(name);
    let parent = normalize(parent);
    name == parent
        || (name.len() > parent.len()
            && name.ends_with(&parent)
            && name.as_bytes()[name.len() - parent.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, accepted as a host name, accepted as a service name)
    const NAMES: &[(&str, bool, bool)] = &[
        ("example.com", true, true),
        ("example.com.", true, true),
        ("Mail-1.Example.COM", true, true),
        ("2026.mail-out", true, true),
        ("xn--zckzah.test", true, true),
        ("localhost", true, true),
        ("_spf.example.com", false, true),
        ("_dmarc.example.com", false, true),
        ("s_2026._domainkey.example.com", false, true),
        ("-bad-.test", false, false),
        ("bad-.test", false, false),
        ("-x.test", false, false),
        ("_-x.test", false, true),
        ("bad..test", false, false),
        (".example.com", false, false),
        ("example.com..", false, false),
        ("", false, false),
        (".", false, false),
        ("exa mple.com", false, false),
        ("exa%mple.com", false, false),
        ("[192.0.2.1]", false, false),
        ("ex\\.ample.com", false, false),
    ];

    #[test]
    fn table() {
        for (name, host, service) in NAMES {
            assert_eq!(check_name(name, Rules::Host).is_ok(), *host, "host {name:?}");
            assert_eq!(
                check_name(name, Rules::Service).is_ok(),
                *service,
                "service {name:?}"
            );
        }
    }

    #[test]
    fn lengths() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        assert!(check_name(&format!("{label63}.test"), Rules::Host).is_ok());
        assert_eq!(
            check_name(&format!("{label64}.test"), Rules::Host),
            Err(NameError::LongLabel(64))
        );
        // 126 labels of "a." and "com": 255 octets in text.
        let long = format!("{}com", "a.".repeat(126));
        assert_eq!(check_name(&long, Rules::Host), Err(NameError::TooLong(255)));
        let max = format!("{}c", "a.".repeat(126));
        assert_eq!(max.len(), 253);
        assert!(check_name(&max, Rules::Host).is_ok());
        assert!(check_name(&format!("{max}."), Rules::Host).is_ok());
        assert!(
            parse_host_name(&max).is_ok(),
            "253 octets in text are 255 in wire form"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("a..b", "has an empty label"),
            ("-s", "starting or ending with a hyphen"),
            ("s_2026", "contains '_'"),
            ("", "is empty"),
        ];
        for (name, fragment) in cases {
            let message = check_name(name, Rules::Host).unwrap_err().to_string();
            assert!(message.contains(fragment), "{name:?}: {message}");
        }
    }

    #[test]
    fn parsed_names_are_absolute_and_lower_case() {
        assert_eq!(
            parse_host_name("Example.COM").unwrap().to_string(),
            "example.com."
        );
        assert_eq!(
            parse_name("_SPF.example.com.", Rules::Service)
                .unwrap()
                .to_string(),
            "_spf.example.com."
        );
    }

    #[test]
    fn mailboxes() {
        let cases = [
            ("hostmaster@example.net", Some("hostmaster.example.net.")),
            ("Host.Master@example.net", Some("host\\.master.example.net.")),
            ("hostmaster.example.net", Some("hostmaster.example.net.")),
            ("@example.net", None),
            ("a b@example.net", None),
            ("hostmaster@-x.net", None),
            ("hostmaster@bad..net", None),
        ];
        for (text, want) in cases {
            let got = parse_mailbox(text).ok().map(|n| n.to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn prepend_builds_below() {
        let apex = parse_host_name("example.com").unwrap();
        assert_eq!(prepend(&apex, "_dmarc").to_string(), "_dmarc.example.com.");
    }

    #[test]
    fn toplabels() {
        let cases = [
            ("com", true),
            ("xn--zckzah", true),
            ("c0m", true),
            ("1-2", true),
            ("123", false),
            ("-com", false),
            ("com-", false),
            ("com:8080", false),
            ("", false),
            ("co_m", false),
        ];
        for (label, ok) in cases {
            assert_eq!(toplabel_problem(label).is_none(), ok, "{label}");
        }
    }

    #[test]
    fn domains() {
        let long_label = "a".repeat(64);
        let max_label = "a".repeat(63);
        let cases = [
            ("example.com".to_string(), true),
            ("example.com.".to_string(), true),
            ("Mail.Example.COM".to_string(), true),
            ("localhost".to_string(), false),
            ("[192.0.2.1]".to_string(), false),
            ("a...example.com".to_string(), false),
            ("192.0.2.1".to_string(), false),
            (format!("{long_label}.example.com"), false),
            (format!("{max_label}.example.com"), true),
            (format!("{}com", "a.".repeat(126)), false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_valid_domain(&name), ok, "{name}");
        }
    }

    #[test]
    fn queryable_names() {
        assert!(is_queryable("macro%percent  space%20url-space.example.com"));
        assert!(is_queryable("single"));
        assert!(!is_queryable(""));
        assert!(!is_queryable("."));
        assert!(!is_queryable("mail.example...com"));
        assert!(!is_queryable(&format!("{}.com", "b".repeat(64))));
    }

    #[test]
    fn below() {
        assert!(is_at_or_below("mail.Example.com.", "example.COM"));
        assert!(is_at_or_below("example.com", "example.com."));
        assert!(!is_at_or_below("badexample.com", "example.com"));
        assert!(!is_at_or_below("com", "example.com"));
    }
}
