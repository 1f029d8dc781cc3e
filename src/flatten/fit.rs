//! Fail-closed fitting: a record that cannot be published within the limits (a term
//! never resolved kept as written costs lookups) loses the terms receivers must
//! evaluate until it fits, in a way that never passes an address the record as
//! written would not pass.

use std::collections::HashSet;

use super::model::{Expansion, Level, Rule, Terminal, Warning};
use crate::spf::Qualifier;

/// `expansion` with terms left for receivers taken out until `fits` holds, with an
/// error-level warning for each: first those kept as written because they were never
/// resolved (last first), then the record's other such terms, then a redirect left to
/// receivers, and as a last resort everything but `?all`.
///
/// Taking out a pass term only passes fewer addresses. A `-`, `~` or `?` term cannot
/// just go (the addresses it matched would reach later terms, which may pass them): the
/// record ends there instead, with that term's qualifier on `all`, so what matched it
/// gets the same result and what came after passes no more. Returns the expansion and
/// whether anything was taken out.
pub fn fail_closed(expansion: &Expansion, fits: impl Fn(&Expansion) -> bool) -> (Expansion, bool) {
    let mut fitted = expansion.clone();
    let as_written: HashSet<String> = expansion
        .details
        .iter()
        .filter_map(|d| d.as_written.clone())
        .collect();
    let mut trimmed = false;
    while !fits(&fitted) {
        let Some(left_out) = take_out(&mut fitted, &as_written) else {
            break;
        };
        trimmed = true;
        fitted.warnings.push(Warning {
            level: Level::Error,
            key: left_out.clone(),
            message: format!(
                "left out to stay within 10 DNS lookups: receivers get less than the record \
                 authorises (`{left_out}` and what it decided) until it can be expanded"
            ),
        });
    }
    (fitted, trimmed)
}

/// Takes the next term out (see [`fail_closed`]); its text, or `None` once nothing
/// but `?all` is left.
fn take_out(fitted: &mut Expansion, as_written: &HashSet<String>) -> Option<String> {
    let dynamic = |r: &Rule| matches!(r, Rule::Dynamic { .. });
    let written = |r: &Rule| matches!(r, Rule::Dynamic { text, .. } if as_written.contains(text));
    let redirect = match &fitted.terminal {
        Terminal::Redirect { text, .. } => Some(text.clone()),
        _ => None,
    };
    let written_redirect = redirect.as_ref().filter(|t| as_written.contains(*t));
    let index = match fitted.rules.iter().rposition(written) {
        Some(i) => Some(i),
        None if written_redirect.is_some() => None,
        None => fitted.rules.iter().rposition(dynamic),
    };
    if let Some(i) = index {
        let rule = fitted.rules.remove(i);
        let Rule::Dynamic { qualifier, text, .. } = rule else {
            unreachable!("only terms left for receivers are taken out");
        };
        if qualifier != Qualifier::Pass {
            fitted.rules.truncate(i);
            fitted.terminal = Terminal::All(qualifier);
        }
        return Some(text);
    }
    if let Some(text) = redirect {
        fitted.terminal = Terminal::All(Qualifier::Neutral);
        return Some(text);
    }
    let nothing = fitted.rules.is_empty() && fitted.terminal == Terminal::All(Qualifier::Neutral);
    if nothing {
        return None;
    }
    fitted.rules.clear();
    fitted.terminal = Terminal::All(Qualifier::Neutral);
    Some("every term".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatten::{Ip4Set, Ip6Set, TermDetail};

    fn dynamic(text: &str) -> Rule {
        let qualifier = match text.as_bytes()[0] {
            b'-' => Qualifier::Fail,
            b'~' => Qualifier::SoftFail,
            _ => Qualifier::Pass,
        };
        Rule::Dynamic {
            qualifier,
            text: text.to_string(),
            lookups: 4,
        }
    }

    fn range(net: &str) -> Rule {
        Rule::Static {
            qualifier: Qualifier::Pass,
            v4: Ip4Set::from_nets([net.parse().unwrap()]),
            v6: Ip6Set::new(),
        }
    }

    fn written(text: &str) -> TermDetail {
        TermDetail {
            key: text.trim_start_matches(['-', '~']).to_string(),
            v4: Ip4Set::new(),
            v6: Ip6Set::new(),
            kept_live: false,
            held_v4: Ip4Set::new(),
            held_v6: Ip6Set::new(),
            held_until: Vec::new(),
            from_last_good: false,
            as_written: Some(text.to_string()),
            age: 0,
        }
    }

    fn expansion(rules: Vec<Rule>, written_terms: &[&str]) -> Expansion {
        Expansion {
            rules,
            terminal: Terminal::All(Qualifier::SoftFail),
            exp: None,
            details: written_terms.iter().map(|t| written(t)).collect(),
            warnings: Vec::new(),
            queried: Vec::new(),
        }
    }

    fn lookups(e: &Expansion) -> usize {
        e.rules.iter().map(Rule::lookups).sum::<usize>() + e.terminal.lookups()
    }

    fn texts(e: &Expansion) -> Vec<String> {
        e.rules
            .iter()
            .map(|r| match r {
                Rule::Dynamic { text, .. } => text.clone(),
                Rule::Static { v4, .. } => v4.to_nets()[0].to_string(),
            })
            .collect()
    }

    #[test]
    fn terms_never_resolved_go_first_then_the_others_last_first() {
        let e = expansion(
            vec![
                dynamic("exists:%{i}.a.test"),
                dynamic("include:new.test"),
                range("192.0.2.0/24"),
                dynamic("exists:%{i}.b.test"),
            ],
            &["include:new.test"],
        );
        let (fitted, trimmed) = fail_closed(&e, |e| lookups(e) <= 8);
        assert!(trimmed);
        assert_eq!(
            texts(&fitted),
            ["exists:%{i}.a.test", "192.0.2.0/24", "exists:%{i}.b.test"]
        );
        assert_eq!(fitted.warnings.len(), 1);
        assert_eq!(fitted.warnings[0].level, Level::Error);
        let (fitted, _) = fail_closed(&e, |e| lookups(e) <= 4);
        assert_eq!(texts(&fitted), ["exists:%{i}.a.test", "192.0.2.0/24"]);
        assert_eq!(fitted.terminal, Terminal::All(Qualifier::SoftFail));
    }

    #[test]
    fn a_term_that_fails_addresses_ends_the_record_with_its_qualifier() {
        let e = expansion(
            vec![
                range("192.0.2.0/24"),
                dynamic("-include:blocked.test"),
                range("198.51.100.0/24"),
            ],
            &["-include:blocked.test"],
        );
        let (fitted, _) = fail_closed(&e, |e| lookups(e) == 0);
        // 198.51.100.0/24 could be in blocked.test: it no longer passes.
        assert_eq!(texts(&fitted), ["192.0.2.0/24"]);
        assert_eq!(fitted.terminal, Terminal::All(Qualifier::Fail));
    }

    #[test]
    fn what_fits_is_left_alone_and_nothing_fits_ends_neutral() {
        let e = expansion(vec![range("192.0.2.0/24"), dynamic("include:x.test")], &[]);
        let (same, trimmed) = fail_closed(&e, |_| true);
        assert!(!trimmed);
        assert_eq!(same, e);
        let (none, trimmed) = fail_closed(&e, |_| false);
        assert!(trimmed);
        assert!(none.rules.is_empty());
        assert_eq!(none.terminal, Terminal::All(Qualifier::Neutral));
    }
}
