//! The tags of a `[dkim.<selector>]` section other than the key: `k`, the lists
//! `h`, `s`, `t`, and `n` in DKIM-Quoted-Printable (RFC 6376 3.6.1, 2.11).

use toml::Spanned;

use super::key::KeyType;
use crate::diag::Diagnostics;

pub(super) fn check_key_type(
    label: &str,
    k: Option<&Spanned<String>>,
    diags: &mut Diagnostics,
) -> Option<KeyType> {
    let Some(k) = k else {
        return Some(KeyType::Rsa);
    };
    match k.get_ref().to_ascii_lowercase().as_str() {
        "rsa" => Some(KeyType::Rsa),
        "ed25519" => Some(KeyType::Ed25519),
        other => {
            let msg = format!("{label} k must be \"rsa\" or \"ed25519\"; got {other:?}");
            diags.error(k.span(), msg);
            None
        }
    }
}

/// Values from a fixed set, lower-cased, in the order written; none if the tag is absent.
pub(super) fn list(
    label: &str,
    tag: &str,
    values: Option<Spanned<Vec<Spanned<String>>>>,
    allowed: &[&str],
    diags: &mut Diagnostics,
) -> Vec<String> {
    let Some(values) = values else {
        return Vec::new();
    };
    let choices = allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if values.get_ref().is_empty() {
        let msg = format!("{label} {tag} is an empty array: list some of {choices}, or leave {tag} out");
        diags.error(values.span(), msg);
    }
    let mut out = Vec::new();
    for value in values.into_inner() {
        let lower = value.get_ref().to_ascii_lowercase();
        if allowed.contains(&lower.as_str()) {
            out.push(lower);
        } else if tag == "h" && lower == "sha1" {
            let msg = format!(
                "{label} h lists sha1, which RFC 8301 forbids for signing and verifying: \
                 write h = [\"sha256\"], or leave h out"
            );
            diags.error(value.span(), msg);
        } else {
            let msg = format!(
                "{label} {tag} values must be among {choices}; got {:?}",
                value.get_ref()
            );
            diags.error(value.span(), msg);
        }
    }
    out
}

/// t=y tells receivers to treat failing signatures as absent: fine while trying
/// a key out, wrong in production.
pub(super) fn warn_testing(
    label: &str,
    flags: Option<&Spanned<Vec<Spanned<String>>>>,
    diags: &mut Diagnostics,
) {
    let is_y = |v: &&Spanned<String>| v.get_ref().eq_ignore_ascii_case("y");
    let testing = flags.and_then(|f| f.get_ref().iter().find(is_y));
    if let Some(y) = testing {
        diags.warning(
            y.span(),
            format!(
                "{label} t lists \"y\" (testing mode): receivers treat mail whose signature fails \
                 as unsigned; remove \"y\" once signing works"
            ),
        );
    }
}

/// DKIM-Quoted-Printable (RFC 6376 2.11) for n=: every octet outside
/// %x21-3A / %x3C / %x3E-7E (so spaces, ';' and '=' too) becomes =XX.
pub(super) fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_dkim_quoted_printable() {
        assert_eq!(quoted_printable("a b;c=d"), "a=20b=3Bc=3Dd");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        assert_eq!(quoted_printable("plain:text"), "plain:text");
    }
}
