//! Domain-name checks SPF needs: the `toplabel` of the grammar (RFC 7208 7.1) and
//! the validity of a `<domain>` before it is used (4.3) or queried (RFC 1035).

/// The longest domain name in text form without the trailing dot (RFC 7208 7.3).
pub const MAX_NAME: usize = 253;
/// The longest label (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = 63;

/// Why `label` is not a `toplabel`, or `None` when it is one.
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
/// 253 octets in all. One trailing dot (the root) is allowed.
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
