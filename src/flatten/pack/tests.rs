//! Packing: the reductions, continuation into parts, lookup counting, content tags
//! and zone-file lines.

use super::*;

fn set4(nets: &[&str]) -> Ip4Set {
    Ip4Set::from_nets(nets.iter().map(|n| n.parse().unwrap()))
}

fn rule(q: Qualifier, nets: &[&str]) -> Rule {
    Rule::Static {
        qualifier: q,
        v4: set4(nets),
        v6: Ip6Set::new(),
    }
}

fn dynamic(text: &str, lookups: usize) -> Rule {
    let qualifier = text
        .chars()
        .next()
        .and_then(Qualifier::from_char)
        .unwrap_or_default();
    Rule::Dynamic {
        qualifier,
        text: text.to_string(),
        lookups,
    }
}

fn expansion(rules: Vec<Rule>, terminal: Terminal) -> Expansion {
    Expansion {
        rules,
        terminal,
        exp: None,
        details: Vec::new(),
        warnings: Vec::new(),
        queried: Vec::new(),
    }
}

/// Scattered /32s: nothing aggregates.
fn many(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("198.{}.{}.{}/32", 18 + i % 2, i / 7, 1 + 2 * i))
        .collect()
}

fn head_text(chain: &Chain) -> String {
    chain.head.concat()
}

#[test]
fn reductions_keep_the_first_match() {
    use Qualifier::{Fail as F, Neutral as N, Pass as P, SoftFail as S};
    // (rules, terminal, published head)
    let cases: Vec<(Vec<Rule>, Terminal, &str)> = vec![
        // Adjacent rules with one qualifier merge; their union aggregates.
        (
            vec![rule(P, &["10.0.0.0/25"]), rule(P, &["10.0.0.128/25"])],
            Terminal::All(F),
            "v=spf1 ip4:10.0.0.0/24 -all",
        ),
        // Addresses an earlier rule decides may be covered when that is shorter.
        (
            vec![
                rule(F, &["10.0.0.0/25"]),
                rule(P, &["10.0.0.128/25", "10.0.1.0/24"]),
            ],
            Terminal::All(S),
            "v=spf1 -ip4:10.0.0.0/25 ip4:10.0.0.0/23 ~all",
        ),
        // A rule wholly decided earlier goes; then its neighbours merge.
        (
            vec![
                rule(P, &["10.0.0.0/16"]),
                rule(F, &["10.0.5.0/24"]),
                rule(P, &["10.1.0.0/16"]),
            ],
            Terminal::All(F),
            "v=spf1 ip4:10.0.0.0/15 -all",
        ),
        // Trailing rules with the terminal's result go, static or not.
        (
            vec![
                rule(P, &["10.0.0.0/8"]),
                rule(S, &["11.0.0.0/8"]),
                dynamic("~exists:%{i}.x.test", 1),
            ],
            Terminal::All(S),
            "v=spf1 ip4:10.0.0.0/8 ~all",
        ),
        (
            vec![rule(P, &["10.0.0.0/8"]), rule(N, &["11.0.0.0/8"])],
            Terminal::Absent,
            "v=spf1 ip4:10.0.0.0/8",
        ),
        // A dynamic rule keeps its place; static rules around it never merge (the later
        // one may cover what the earlier one decides).
        (
            vec![
                rule(P, &["10.0.0.0/9"]),
                dynamic("exists:%{i}.x.test", 1),
                rule(P, &["10.128.0.0/9"]),
            ],
            Terminal::All(F),
            "v=spf1 ip4:10.0.0.0/9 exists:%{i}.x.test ip4:10.0.0.0/8 -all",
        ),
        (vec![], Terminal::Absent, "v=spf1"),
        (vec![rule(P, &[])], Terminal::All(P), "v=spf1 all"),
    ];
    for (rules, terminal, want) in cases {
        let chain = pack(&expansion(rules, terminal), "example.com", false).unwrap();
        assert_eq!(head_text(&chain), want);
        assert!(chain.parts.is_empty());
    }
}

#[test]
fn a_long_record_continues_in_parts() {
    let nets = many(80);
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    let mut e = expansion(vec![rule(Qualifier::Pass, &nets)], Terminal::All(Qualifier::Fail));
    e.exp = Some("exp=why.example.com".to_string());
    let chain = pack(&e, "_spf.example.com.", true).unwrap();
    assert!(chain.parts.len() >= 3, "{chain:?}");
    assert_eq!(chain.lookups, 1 + chain.parts.len());
    let mut seen = Vec::new();
    let records: Vec<(&str, String)> = chain.records().map(|(n, s)| (n, s.concat())).collect();
    for (i, (name, text)) in records.iter().enumerate() {
        assert!(text.len() <= MAX_RECORD, "{name}: {}", text.len());
        assert!(
            text.starts_with("v=spf1 ") && text.contains(" exp=why.example.com"),
            "{text}"
        );
        let last = i + 1 == records.len();
        assert_eq!(text.ends_with(" -all exp=why.example.com"), last, "{text}");
        if !last {
            let next = records[i + 1].0;
            assert!(text.ends_with(&format!(" redirect={next}")), "{text}");
            assert_eq!(next, format!("_{}-{}._spf.example.com", i + 1, chain.tag));
        }
        seen.extend(
            text.split(' ')
                .filter(|w| w.starts_with("ip4:"))
                .map(str::to_string),
        );
    }
    let want: Vec<String> = many(80)
        .iter()
        .map(|n| format!("ip4:{}", n.trim_end_matches("/32")))
        .collect();
    let mut sorted = want.clone();
    sorted.sort_by_key(|w| {
        w.trim_start_matches("ip4:")
            .parse::<std::net::Ipv4Addr>()
            .unwrap()
    });
    assert_eq!(seen, sorted);
    for strings in chain.records().map(|(_, s)| s) {
        assert!(strings.iter().all(|s| s.len() <= 255));
    }
}

#[test]
fn lookups_are_counted_and_macro_mode_is_suggested_only_where_it_fits() {
    let rules = |n: usize| {
        (0..n)
            .map(|i| dynamic(&format!("include:p{i}.test"), 2))
            .collect::<Vec<_>>()
    };
    let fits = pack(
        &expansion(rules(4), Terminal::All(Qualifier::Fail)),
        "example.com",
        true,
    )
    .unwrap();
    assert_eq!(fits.lookups, 9);
    let mut e = expansion(
        rules(4),
        Terminal::Redirect {
            text: "redirect=%{o}.x.test".to_string(),
            lookups: 1,
        },
    );
    assert_eq!(pack(&e, "example.com", true).unwrap().lookups, 10);
    e.rules.push(dynamic("exists:%{i}.x.test", 1));
    let err = pack(&e, "_spf.example.com", true).unwrap_err();
    assert_eq!(
        err,
        PackError::TooManyLookups {
            needed: 11,
            owner_redirect: 1,
            parts: 0,
            kept: 10
        }
    );
    // Macro answers would carry the same 10 lookups of live terms, plus 2 redirects.
    assert!(!err.to_string().contains(r#"use mode = "macro""#), "{err}");
    assert!(err.to_string().contains("too much for macro mode too"), "{err}");

    // Many addresses need many chained parts; macro mode answers them in 1 + 1 + 2.
    let nets: Vec<String> = (0..400)
        .map(|i| format!("10.{}.{}.1/32", i / 250, i % 250))
        .collect();
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    let e = expansion(
        vec![dynamic("include:p.test", 2), rule(Qualifier::Pass, &nets)],
        Terminal::All(Qualifier::Fail),
    );
    let err = pack(&e, "_spf.example.com", true).unwrap_err();
    assert!(
        matches!(err, PackError::TooManyLookups { parts, .. } if parts > 8),
        "{err}"
    );
    assert!(err.to_string().contains(r#"use mode = "macro""#), "{err}");
}

#[test]
fn identical_input_gives_identical_names() {
    let nets = many(60);
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    let e = expansion(
        vec![rule(Qualifier::Pass, &nets)],
        Terminal::All(Qualifier::SoftFail),
    );
    let a = pack(&e, "_spf.example.com", true).unwrap();
    let b = pack(&e.clone(), "_spf.example.com", true).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.tag.len(), 8);
    let mut other = e.clone();
    other.terminal = Terminal::All(Qualifier::Fail);
    let c = pack(&other, "_spf.example.com", true).unwrap();
    assert_ne!(c.tag, a.tag);
    assert_ne!(c.parts[0].0, a.parts[0].0);
}

#[test]
fn zone_lines_print_every_record() {
    let nets = many(30);
    let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
    let e = expansion(vec![rule(Qualifier::Pass, &nets)], Terminal::All(Qualifier::Fail));
    let chain = pack(&e, "example.com", false).unwrap();
    let lines = chain.zone_lines(300);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1 + chain.parts.len());
    assert!(
        lines[0].starts_with("example.com. 300 IN TXT \"v=spf1 ip4:"),
        "{}",
        lines[0]
    );
    let part = &chain.parts[0];
    assert!(
        lines[1].starts_with(&format!("{}. 300 IN TXT \"v=spf1 ", part.0)),
        "{}",
        lines[1]
    );
    assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
}
