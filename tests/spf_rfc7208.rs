//! Runs every case of the openspf RFC 7208 test suite (tests/data/rfc7208-tests.yml,
//! release 2014.04) through spfd's check_host(), with in-memory DNS built from each
//! scenario's zonedata, and reports every case that disagrees.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;
use serde_yaml::Value;
use spfd::spf::{EvalOptions, MemoryDns, Query, SpfResult, Verdict, check_host};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc7208-tests.yml");

/// Cases not run, with the reason. Every case runs.
const SKIPPED: &[(&str, &str)] = &[];

/// Cases whose expected explanation is compared ignoring ASCII case, with the reason.
const EXPLANATION_IGNORING_CASE: &[(&str, &str)] = &[(
    "v-macro-ip6",
    "the suite expects the nibbles of %{ir} in upper case (E.B.A.B.E.F.A.C); RFC 7208 7.4 \
     writes them in lower case, as spfd does, and DNS names compare case-insensitively",
)];

struct Case {
    scenario: String,
    name: String,
    host: IpAddr,
    mail_from: String,
    helo: String,
    /// Any of these is right (the suite lists several where the RFC allows them).
    results: Vec<SpfResult>,
    /// For fail: the expected explanation; `DEFAULT` means none from `exp=`.
    explanation: Option<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        // A TXT record given as several character-strings: joined with no separator.
        Value::Sequence(parts) => parts.iter().map(text).collect(),
        other => panic!("unexpected value {other:?}"),
    }
}

/// The records one zonedata name lists. SPF (type 99) records are duplicated as
/// TXT unless the name lists TXT records itself (or `TXT: NONE`), as the suite's
/// header asks of drivers; type SPF itself is never queried (RFC 7208 3.1).
fn add_name(dns: &mut MemoryDns, name: &str, entries: &[Value]) {
    dns.add_name(name);
    let mut spf = Vec::new();
    let mut has_txt = false;
    for entry in entries {
        if entry.as_str() == Some("TIMEOUT") {
            dns.fail_temporarily(name);
            continue;
        }
        let Some(map) = entry.as_mapping() else {
            panic!("{name}: unexpected entry {entry:?}")
        };
        for (kind, value) in map {
            let kind = kind.as_str().expect("record type");
            add_record(dns, name, kind, value, &mut spf, &mut has_txt);
        }
    }
    if !has_txt {
        for record in &spf {
            dns.add_txt(name, record);
        }
    }
}

fn add_record(
    dns: &mut MemoryDns,
    name: &str,
    kind: &str,
    value: &Value,
    spf: &mut Vec<String>,
    has_txt: &mut bool,
) {
    let bad = |e: &dyn std::fmt::Display| -> ! { panic!("{name} {kind} {value:?}: {e}") };
    match kind {
        "SPF" => spf.push(text(value)),
        "TXT" => {
            *has_txt = true;
            if value.as_str() != Some("NONE") {
                dns.add_txt(name, &text(value));
            }
        }
        "A" => {
            dns.add_a(name, text(value).parse().unwrap_or_else(|e| bad(&e)));
        }
        "AAAA" => {
            dns.add_aaaa(name, text(value).parse().unwrap_or_else(|e| bad(&e)));
        }
        "MX" => {
            let pair = value.as_sequence().expect("MX is [preference, host]");
            dns.add_mx(name, &text(&pair[1]));
        }
        "PTR" => {
            dns.add_ptr(name, &text(value));
        }
        "CNAME" => {
            dns.set_cname(name, &text(value));
        }
        other => panic!("{name}: record type {other} not handled by this driver"),
    }
}

fn zone(zonedata: &Value) -> MemoryDns {
    let mut dns = MemoryDns::new();
    for (name, entries) in zonedata.as_mapping().expect("zonedata is a map") {
        let entries = entries.as_sequence().expect("a name lists records");
        add_name(&mut dns, &text(name), entries);
    }
    dns
}

fn case(scenario: &str, name: &str, v: &Value) -> Case {
    let field = |key: &str| v.get(key).map(text).unwrap_or_default();
    let results = match v.get("result").expect("result") {
        Value::Sequence(list) => list.iter().map(text).collect(),
        one => vec![text(one)],
    };
    Case {
        scenario: scenario.to_string(),
        name: name.to_string(),
        host: field("host")
            .parse()
            .unwrap_or_else(|e| panic!("{name}: host: {e}")),
        mail_from: field("mailfrom"),
        helo: field("helo"),
        results: results
            .iter()
            .map(|r| SpfResult::from_name(r).unwrap_or_else(|| panic!("{name}: result {r}")))
            .collect(),
        explanation: v.get("explanation").map(text),
    }
}

fn load() -> Vec<(MemoryDns, Vec<Case>)> {
    let yaml = std::fs::read_to_string(SUITE).expect("read the suite");
    let mut scenarios = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let doc = Value::deserialize(doc).expect("a YAML document");
        let scenario = text(&doc["description"]);
        let cases = doc["tests"]
            .as_mapping()
            .expect("tests")
            .iter()
            .map(|(name, v)| case(&scenario, &text(name), v))
            .collect();
        scenarios.push((zone(&doc["zonedata"]), cases));
    }
    scenarios
}

/// What is wrong with `got` for `case`, if anything.
fn judge(case: &Case, got: &Verdict) -> Option<String> {
    if !case.results.contains(&got.result) {
        let want: Vec<&str> = case.results.iter().map(|r| r.as_str()).collect();
        return Some(format!("expected {}, got {got}", want.join(" or ")));
    }
    let want = case
        .explanation
        .as_deref()
        .filter(|_| got.result == SpfResult::Fail)?;
    let ignore_case = EXPLANATION_IGNORING_CASE.iter().any(|(n, _)| *n == case.name);
    let same = match (want, got.explanation.as_deref()) {
        ("DEFAULT", None) => true,
        (want, Some(got)) if ignore_case => want.eq_ignore_ascii_case(got),
        (want, Some(got)) => want == got,
        _ => false,
    };
    (!same).then(|| format!("expected explanation {want:?}, got {:?}", got.explanation))
}

#[tokio::test]
async fn rfc7208_suite() {
    let skipped: BTreeSet<&str> = SKIPPED.iter().map(|(name, _)| *name).collect();
    let mut failures = Vec::new();
    let mut run = 0;
    let mut total = 0;
    for (dns, cases) in load() {
        for case in cases {
            total += 1;
            if skipped.contains(case.name.as_str()) {
                continue;
            }
            run += 1;
            let query = Query::new(case.host, &case.mail_from, &case.helo);
            let verdict = check_host(&dns, &query.domain(), &query, &EvalOptions::default()).await;
            if let Some(problem) = judge(&case, &verdict) {
                failures.push(format!("{} / {}: {problem}", case.scenario, case.name));
            }
        }
    }
    println!(
        "RFC 7208 suite: {run} of {total} cases run, {} skipped, {} failed",
        SKIPPED.len(),
        failures.len()
    );
    assert_eq!(run + SKIPPED.len(), total, "every skipped case must exist");
    assert!(total >= 190, "the suite has about 200 cases; only {total} loaded");
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The suite run with the limits lifted: only the processing-limit cases may change,
/// and those must then not be permerror for a limit.
#[tokio::test]
async fn limits_lifted_changes_only_limit_cases() {
    let mut changed = BTreeSet::new();
    for (dns, cases) in load() {
        for case in cases {
            let query = Query::new(case.host, &case.mail_from, &case.helo);
            let limited = check_host(&dns, &query.domain(), &query, &EvalOptions::default()).await;
            let lifted = check_host(&dns, &query.domain(), &query, &EvalOptions::without_limits()).await;
            if limited.result != lifted.result {
                changed.insert((case.name.clone(), lifted.result.as_str()));
            }
        }
    }
    let want: BTreeSet<(String, &str)> = [
        ("mx-limit", SpfResult::Pass),
        ("ptr-limit", SpfResult::Pass),
        ("mech-over-limit", SpfResult::Pass),
        ("include-over-limit", SpfResult::Pass),
        ("void-over-limit", SpfResult::Neutral),
    ]
    .into_iter()
    .map(|(n, r)| (n.to_string(), r.as_str()))
    .collect();
    assert_eq!(changed, want);
}

/// Every record of the suite that parses is kept by a policy as its normalised text
/// only and parsed again from it when needed: the text must parse back to the same
/// record, with the same lookup cost.
#[test]
fn normalised_records_parse_back_to_themselves() {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Mapping(map) => map.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let yaml = std::fs::read_to_string(SUITE).expect("read the suite");
    let mut texts = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        strings(
            &Value::deserialize(doc).expect("a YAML document")["zonedata"],
            &mut texts,
        );
    }
    let mut checked = 0;
    for text in texts
        .iter()
        .filter(|t| t.to_ascii_lowercase().starts_with("v=spf1"))
    {
        let Ok(record) = spfd::spf::Record::parse(text) else {
            continue;
        };
        let normalised = record.to_string();
        let again = spfd::spf::Record::parse(&normalised)
            .unwrap_or_else(|e| panic!("{text:?} normalised to {normalised:?}, which does not parse: {e:?}"));
        assert_eq!(again.to_string(), normalised, "{text:?}");
        assert_eq!(again.lookup_terms(), record.lookup_terms(), "{text:?}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} records checked");
}
