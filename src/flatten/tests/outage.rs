//! Upstream failures with controlled time: last good results and their age, the
//! max_stale error, hold-down of dropped ranges, and a restart during an outage.

use std::net::{IpAddr, Ipv4Addr};

use super::support::{World, block};
use crate::flatten::{Chain, ExpandError, FlattenError, LastGood, Level};
use crate::spf::{EvalOptions, Query, SpfResult, check_host};

const T0: u64 = 1_700_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const PROVIDER: &str = "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all";

/// The mail domain's world; `None` makes that name time out.
fn world(provider: Option<&str>, nested: bool, mail: bool) -> World {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 a:mail.example.com include:_spf.provider.test include:other.test ~all",
    );
    let dns = &mut w.dns;
    dns.add_txt("other.test", "v=spf1 include:nested.test -all");
    match provider {
        Some(text) => dns.add_txt("_spf.provider.test", text),
        None => dns
            .add_name("_spf.provider.test")
            .fail_temporarily("_spf.provider.test"),
    };
    if nested {
        dns.add_txt("nested.test", "v=spf1 ip4:203.0.113.0/24 -all");
    } else {
        dns.add_name("nested.test").fail_temporarily("nested.test");
    }
    if mail {
        dns.add_a("mail.example.com", Ipv4Addr::new(10, 0, 0, 25));
    } else {
        dns.add_name("mail.example.com")
            .fail_temporarily("mail.example.com");
    }
    w
}

fn healthy() -> World {
    world(Some(PROVIDER), true, true)
}

fn chain_at(w: &World, memory: &mut LastGood, now: u64) -> Chain {
    w.flatten_at(memory, now).unwrap_or_else(|e| panic!("{e}")).1
}

/// check_host() of the published chain for one client.
fn result_of(w: &World, chain: &Chain, ip: &str) -> SpfResult {
    let published = w.published(chain);
    let ip: IpAddr = ip.parse().unwrap();
    let query = Query::new(ip, "someone@example.com", "mail.example.org");
    block(check_host(
        &published,
        "example.com",
        &query,
        &EvalOptions::default(),
    ))
    .result
}

#[test]
fn an_outage_uses_the_last_good_result_and_reports_its_age() {
    let mut memory = LastGood::new();
    let fresh = chain_at(&healthy(), &mut memory, T0);
    let outage = world(None, true, false);
    let (expansion, chain) = outage.flatten_at(&mut memory, T0 + HOUR).unwrap();
    assert_eq!(chain, fresh, "nothing shrinks");
    for key in ["include:_spf.provider.test", "a:mail.example.com"] {
        let detail = expansion.details.iter().find(|d| d.key == key).unwrap();
        assert!(detail.from_last_good, "{key}");
        assert_eq!(detail.age, HOUR, "{key}");
        let warning = expansion.warnings.iter().find(|w| w.key == key).unwrap();
        assert_eq!(warning.level, Level::Warning, "{key}");
        assert!(
            warning.message.contains("fetched 3600s ago"),
            "{}",
            warning.message
        );
    }
    let fresh_one = expansion
        .details
        .iter()
        .find(|d| d.key == "include:other.test")
        .unwrap();
    assert!(!fresh_one.from_last_good);
    assert_eq!(result_of(&outage, &chain, "198.51.100.1"), SpfResult::Pass);
    assert_eq!(result_of(&outage, &chain, "10.0.0.25"), SpfResult::Pass);
}

#[test]
fn a_last_good_result_older_than_max_stale_is_an_error_but_still_used() {
    let mut memory = LastGood::new();
    let fresh = chain_at(&healthy(), &mut memory, T0);
    let outage = world(None, true, true);
    let (expansion, chain) = outage.flatten_at(&mut memory, T0 + 7 * DAY).unwrap();
    assert_eq!(chain, fresh);
    assert_eq!(
        expansion.warnings[0].level,
        Level::Warning,
        "exactly max_stale is not older"
    );
    let (expansion, chain) = outage.flatten_at(&mut memory, T0 + 8 * DAY).unwrap();
    assert_eq!(chain, fresh);
    assert_eq!(expansion.warnings.len(), 1);
    assert_eq!(expansion.warnings[0].level, Level::Error);
    assert!(expansion.warnings[0].message.contains("older than max_stale"));
}

#[test]
fn an_outage_without_a_last_good_result_is_an_error() {
    let outage = world(None, true, true);
    match outage.flatten_at(&mut LastGood::new(), T0) {
        Err(FlattenError::Expand(ExpandError::Temporary { path, error })) => {
            assert_eq!(path, "include:_spf.provider.test");
            assert!(error.contains("TXT lookup of _spf.provider.test"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_nested_outage_keeps_the_age_of_the_oldest_part() {
    let mut memory = LastGood::new();
    let fresh = chain_at(&healthy(), &mut memory, T0);
    let outage = world(Some(PROVIDER), false, true);
    let (expansion, chain) = outage.flatten_at(&mut memory, T0 + 2 * HOUR).unwrap();
    assert_eq!(chain, fresh);
    let nested = expansion
        .details
        .iter()
        .find(|d| d.key == "include:nested.test")
        .unwrap();
    assert!(nested.from_last_good);
    // other.test was fetched now but is built on a result two hours old.
    assert_eq!(memory.fetched_at("include:other.test"), Some(T0));
    assert_eq!(
        memory.fetched_at("include:_spf.provider.test"),
        Some(T0 + 2 * HOUR)
    );
}

#[test]
fn a_dropped_range_is_held_down_then_leaves() {
    let mut memory = LastGood::new();
    chain_at(&healthy(), &mut memory, T0);
    let shrunk = world(Some("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"), true, true);
    let dropped_at = T0 + HOUR;
    let (expansion, chain) = shrunk.flatten_at(&mut memory, dropped_at).unwrap();
    let detail = expansion
        .details
        .iter()
        .find(|d| d.key == "include:_spf.provider.test")
        .unwrap();
    assert!(detail.held_v4.contains(Ipv4Addr::new(198, 51, 100, 1)));
    assert_eq!(result_of(&shrunk, &chain, "198.51.100.1"), SpfResult::Pass);
    let chain = chain_at(&shrunk, &mut memory, dropped_at + 47 * HOUR);
    assert_eq!(result_of(&shrunk, &chain, "198.51.100.1"), SpfResult::Pass);
    let chain = chain_at(&shrunk, &mut memory, dropped_at + 48 * HOUR);
    assert_eq!(result_of(&shrunk, &chain, "198.51.100.1"), SpfResult::SoftFail);
    assert_eq!(result_of(&shrunk, &chain, "192.0.2.1"), SpfResult::Pass);
}

#[test]
fn a_restart_during_an_outage_gives_the_same_chain() {
    let mut memory = LastGood::new();
    let fresh = chain_at(&healthy(), &mut memory, T0);
    // A range dropped just before the restart stays held across it.
    let shrunk = world(Some("v=spf1 ip4:192.0.2.0/24 -all"), true, true);
    let held = chain_at(&shrunk, &mut memory, T0 + HOUR);
    assert_eq!(held, fresh);
    let json = serde_json::to_string(&memory).unwrap();
    let mut restored: LastGood = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, memory);
    let outage = world(None, false, false);
    let chain = chain_at(&outage, &mut restored, T0 + 2 * HOUR);
    assert_eq!(chain, fresh);
    // Fresh results at one time, then an outage: the same chain as before it.
    let before = chain_at(&healthy(), &mut restored, T0 + 3 * HOUR);
    let json = serde_json::to_string(&restored).unwrap();
    let mut again: LastGood = serde_json::from_str(&json).unwrap();
    assert_eq!(chain_at(&outage, &mut again, T0 + 4 * HOUR), before);
}

/// An expansion forgets nothing (the memory is shared by every policy); it reports the
/// terms it used, and the caller prunes those no policy uses.
#[test]
fn an_expansion_reports_the_terms_it_used_and_forgets_none() {
    let mut memory = LastGood::new();
    chain_at(&healthy(), &mut memory, T0);
    let first = memory.take_touched();
    assert!(first.contains("include:nested.test"), "{first:?}");
    let mut w = healthy();
    w.source = "v=spf1 include:_spf.provider.test ~all".to_string();
    chain_at(&w, &mut memory, T0 + HOUR);
    assert_eq!(
        memory.take_touched().into_iter().collect::<Vec<_>>(),
        ["include:_spf.provider.test"]
    );
    assert!(
        memory.keys().any(|k| k == "include:nested.test"),
        "kept for others"
    );
    assert_eq!(
        memory.prune(|k| k == "include:_spf.provider.test"),
        first.len() - 1
    );
    assert_eq!(memory.keys().collect::<Vec<_>>(), ["include:_spf.provider.test"]);
}
