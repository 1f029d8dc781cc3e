//! The single-value tags of `[dmarc]`: the policy keywords, `pct`, `t`, `fo`, and
//! the tags RFC 9989 made historic.

use toml::Spanned;

use super::de::{Flag, OneOrMany, StrOrInt};
use crate::diag::Diagnostics;

pub(super) const POLICIES: &[&str] = &["none", "quarantine", "reject"];
/// RFC 9989 psd: a public suffix domain, not one, or unknown.
pub(super) const PSD_VALUES: &[&str] = &["y", "n", "u"];
const FO_OPTIONS: &[&str] = &["0", "1", "d", "s"];

/// A value from a fixed set, matched without regard to case (RFC 7489 tag
/// values are case-insensitive) and published in lower case.
pub(super) fn keyword(
    tag: &str,
    value: Option<&Spanned<String>>,
    allowed: &[&str],
    diags: &mut Diagnostics,
) -> Option<String> {
    let value = value?;
    let lower = value.get_ref().to_ascii_lowercase();
    if allowed.contains(&lower.as_str()) {
        return Some(lower);
    }
    let msg = format!(
        "dmarc {tag} must be one of {}; got {:?}",
        allowed.join(", "),
        value.get_ref()
    );
    diags.error(value.span(), msg);
    None
}

/// Range-checks pct and warns that RFC 9989 made it historic in favour of t.
pub(super) fn check_pct(value: &Spanned<i64>, t_is_set: bool, diags: &mut Diagnostics) -> Option<u8> {
    let pct = match u8::try_from(*value.get_ref()) {
        Ok(pct) if pct <= 100 => pct,
        _ => {
            let msg = format!("dmarc pct must be between 0 and 100; got {}", value.get_ref());
            diags.error(value.span(), msg);
            return None;
        }
    };
    let advice = if t_is_set {
        "dmarc sets both pct and t: RFC 9989 replaces pct with t and its receivers ignore pct; \
         remove pct"
    } else if pct < 100 {
        "dmarc pct is historic under RFC 9989 and its receivers ignore it: to try a policy \
         out, write t = \"y\" instead (receivers then apply one step less than p)"
    } else {
        "dmarc pct is historic under RFC 9989, and 100 is the default anyway: remove pct"
    };
    diags.warning(value.span(), advice);
    Some(pct)
}

pub(super) fn check_testing(value: &Spanned<Flag>, diags: &mut Diagnostics) -> Option<bool> {
    match value.get_ref() {
        Flag::Bool(b) => Some(*b),
        Flag::Text(s) if s.eq_ignore_ascii_case("y") => Some(true),
        Flag::Text(s) if s.eq_ignore_ascii_case("n") => Some(false),
        Flag::Text(s) => {
            let msg = format!("dmarc t must be \"y\" (testing) or \"n\", or true or false; got {s:?}");
            diags.error(value.span(), msg);
            None
        }
    }
}

/// `rf` (RFC 7489 6.3): afrf is the only report format ever defined. Historic
/// under RFC 9989, so accepted with a warning.
pub(super) fn check_rf(value: &Spanned<String>, diags: &mut Diagnostics) -> Option<String> {
    if !value.get_ref().eq_ignore_ascii_case("afrf") {
        let msg = format!(
            "dmarc rf must be \"afrf\", the only failure report format (RFC 7489 6.3); got {:?}",
            value.get_ref()
        );
        diags.error(value.span(), msg);
        return None;
    }
    diags.warning(
        value.span(),
        "dmarc rf is historic under RFC 9989 and its receivers ignore it: remove rf",
    );
    Some("afrf".to_string())
}

/// `ri`: a number of seconds; historic under RFC 9989, so accepted with a warning.
pub(super) fn check_ri(value: &Spanned<i64>, diags: &mut Diagnostics) -> Option<u32> {
    match u32::try_from(*value.get_ref()) {
        Ok(ri) if ri > 0 => {
            diags.warning(
                value.span(),
                "dmarc ri is historic under RFC 9989 and its receivers ignore it (aggregate \
                 reports come about once a day): remove ri",
            );
            Some(ri)
        }
        _ => {
            let msg = format!(
                "dmarc ri must be a number of seconds from 1 to {} (the default is 86400); got {}",
                u32::MAX,
                value.get_ref()
            );
            diags.error(value.span(), msg);
            None
        }
    }
}

/// The options in the order written, lower-cased, each at most once.
pub(super) fn check_fo(value: Spanned<OneOrMany<StrOrInt>>, diags: &mut Diagnostics) -> Vec<String> {
    let whole = value.span();
    let mut options: Vec<String> = Vec::new();
    for item in value.into_inner().into_items(whole) {
        let written = &item.get_ref().0;
        for option in written.split(':') {
            let lower = option.to_ascii_lowercase();
            if !FO_OPTIONS.contains(&lower.as_str()) {
                let msg = format!(
                    "dmarc fo must be a colon-separated list of 0, 1, d, s (e.g. \"1:d\"); \
                     got {written:?}"
                );
                diags.error(item.span(), msg);
            } else if options.contains(&lower) {
                let msg = format!(
                    "dmarc fo lists {option:?} more than once; write each option once, \
                     e.g. \"1:d\""
                );
                diags.error(item.span(), msg);
            } else {
                options.push(lower);
            }
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::super::tests::{RUA, of, run};
    use crate::diag::Severity;

    #[test]
    fn psd_is_published() {
        for (value, published) in [("y", "psd=y"), ("N", "psd=n"), ("u", "psd=u")] {
            let body = format!("p = \"reject\"\n{RUA}\npsd = \"{value}\"");
            let (record, diags) = run(&body);
            assert!(diags.is_empty(), "{body}: {diags:?}");
            let txt = record.unwrap().txt();
            assert!(txt.contains(&format!("; {published}; ")), "{txt}");
        }
    }

    #[test]
    fn rf_and_ri_are_historic_warnings() {
        let body = format!("p = \"reject\"\n{RUA}\nrf = \"AFRF\"\nri = 3600");
        let (record, diags) = run(&body);
        assert_eq!(
            record.unwrap().txt(),
            "v=DMARC1; p=reject; rf=afrf; ri=3600; rua=mailto:d@example.com"
        );
        let warnings = of(&diags, Severity::Warning);
        let at: Vec<(usize, usize, bool)> = warnings
            .iter()
            .map(|w| (w.line, w.column, w.message.contains("historic under RFC 9989")))
            .collect();
        assert_eq!(at, [(4, 6, true), (5, 6, true)], "{diags:?}");
        assert!(of(&diags, Severity::Error).is_empty(), "{diags:?}");
    }
}
