//! Provider trees flattened, published into DNS and compared with the source by
//! check_host() on every set boundary and on random addresses; and the trees that
//! must not flatten.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::support::{World, block};
use crate::flatten::{ExpandError, ExpandOptions, FlattenError, LastGood, Rule, Terminal, expand};
use crate::spf::Qualifier;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The published text of every record, joined, for assertions on terms.
fn published_text(chain: &crate::flatten::Chain) -> String {
    chain
        .records()
        .map(|(_, s)| s.concat())
        .collect::<Vec<_>>()
        .join("\n")
}

fn providers() -> World {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 mx a/24//64 include:_spf.google.test include:outlook.test Include:sendgrid.test \
         IP4:203.0.113.5 ip6:2001:db8:aaaa::/48 ~all",
    );
    let dns = &mut w.dns;
    dns.add_mx("example.com", "mx1.example.com")
        .add_mx("example.com", "mx2.example.com.")
        .add_mx("example.com", "gone.example.com")
        .add_a("mx1.example.com", v4("192.0.2.10"))
        .add_aaaa("mx1.example.com", v6("2001:db8::10"))
        .add_a("mx2.example.com", v4("192.0.2.20"))
        .add_a("example.com", v4("198.51.100.7"))
        .add_aaaa("example.com", v6("2001:db8:1::7"))
        .add_txt("example.com", "google-site-verification=abc")
        .add_txt(
            "_spf.google.test",
            "v=spf1 include:_netblocks.google.test include:_netblocks2.google.test \
             include:_netblocks3.google.test ~all",
        );
    let more_v6: Vec<String> = (1..13)
        .map(|i| format!("ip6:2a00:{:x}::/32", i * 0x111))
        .collect();
    let blocks: Vec<String> = (0..24)
        .map(|i| format!("ip4:{}.{}.0.0/16", 64 + i * 3, i * 7))
        .collect();
    dns.add_txt(
        "_netblocks.google.test",
        &format!("v=spf1 {} ~all", blocks.join(" ")),
    )
    .add_txt(
        "_netblocks2.google.test",
        &format!(
            "v=spf1 ip6:2001:4860:4000::/36 ip6:2404:6800:4000::/36 ip6:2607:f8b0:4000::/36 {} ~all",
            more_v6.join(" ")
        ),
    )
    .add_txt(
        "_netblocks3.google.test",
        "v=spf1 include:_deep.google.test ip4:172.217.0.0/19 ~all",
    )
    .add_txt(
        "_deep.google.test",
        "v=spf1 ip4:172.217.32.0/20 ip4:172.217.128.0/19 -all",
    )
    .add_txt(
        "outlook.test",
        "v=spf1 -ip4:40.92.5.0/24 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ~ip4:52.100.0.0/16 \
             ip4:52.100.0.0/14 ip6:2a01:111:f400::/48 -all",
    )
    .add_txt(
        "sendgrid.test",
        "v=spf1 ip4:167.89.0.0/17 ip4:167.89.64.0/19 ip4:167.89.128.0/25 ip4:208.117.48.0/20 -all",
    );
    w
}

#[test]
fn provider_tree_is_equivalent_and_minimal() {
    let w = providers();
    let (expansion, chain) = w.flatten();
    let n = w.assert_equivalent(
        &expansion,
        &chain,
        &[
            "40.92.5.1",
            "52.100.1.1",
            "52.101.1.1",
            "172.217.40.1",
            "198.51.100.200",
            "2001:db8:1::ffff",
        ],
    );
    assert!(n > 500, "{n} addresses compared");
    let text = published_text(&chain);
    // Shadowed inside outlook.test: fail and softfail ranges are not authorised.
    assert!(!text.contains("40.92.0.0/15"), "{text}");
    assert!(text.contains("ip4:40.92.0.0/22"), "{text}");
    // Overlapping sendgrid blocks are merged, a/24//64 widened, mx resolved.
    assert!(text.contains("ip4:167.89.0.0/17"), "{text}");
    assert!(!text.contains("167.89.64.0/19"), "{text}");
    assert!(
        text.contains("ip4:198.51.100.0/24") && text.contains("ip6:2001:db8:1::/64"),
        "{text}"
    );
    assert!(
        text.contains("ip4:192.0.2.10 ") && text.contains("ip6:2001:db8::10 "),
        "{text}"
    );
    assert_eq!(expansion.terminal, Terminal::All(Qualifier::SoftFail));
    assert!(text.ends_with("~all"), "{text}");
    // Every record fits; the chain continued into parts; lookups counted.
    for (_, strings) in chain.records() {
        assert!(strings.concat().len() <= crate::flatten::MAX_RECORD);
    }
    assert!(!chain.parts.is_empty());
    assert_eq!(chain.lookups, 1 + chain.parts.len());
    let keys: Vec<&str> = expansion.details.iter().map(|d| d.key.as_str()).collect();
    for key in [
        "mx:example.com",
        "a:example.com",
        "include:_deep.google.test",
        "include:sendgrid.test",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
}

#[test]
fn dynamic_terms_stay_rewritten_for_their_new_place() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 ip4:192.0.2.0/24 exists:%{i}._spf.%{d} ptr ~all",
    );
    w.dns
        .add_a("203.0.113.9._spf.example.com", v4("127.0.0.2"))
        .add_ptr("20.100.51.198.in-addr.arpa", "mail.example.com")
        .add_a("mail.example.com", v4("198.51.100.20"));
    let (expansion, chain) = w.flatten();
    let text = published_text(&chain);
    assert!(
        text.contains(" exists:%{i}._spf.example.com ptr:example.com ~all"),
        "{text}"
    );
    assert_eq!(chain.lookups, 1 + 2);
    w.assert_equivalent(
        &expansion,
        &chain,
        &["203.0.113.9", "203.0.113.10", "198.51.100.20"],
    );
}

#[test]
fn dynamic_terms_of_a_redirect_target_name_that_target() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 ip4:192.0.2.1 redirect=corp.test",
    );
    w.dns
        .add_txt("corp.test", "v=spf1 exists:%{i}.allow.%{d} ptr -all")
        .add_a("203.0.113.7.allow.corp.test", v4("127.0.0.2"))
        .add_ptr("9.113.0.203.in-addr.arpa", "mx.corp.test")
        .add_a("mx.corp.test", v4("203.0.113.9"));
    let (expansion, chain) = w.flatten();
    assert_eq!(
        chain.head,
        ["v=spf1 ip4:192.0.2.1 exists:%{i}.allow.corp.test ptr:corp.test -all"]
    );
    w.assert_equivalent(&expansion, &chain, &["203.0.113.7", "203.0.113.9", "203.0.113.8"]);
}

#[test]
fn an_include_with_dynamic_terms_stays_live() {
    let mut w = World::new(
        "example.com",
        "example.com",
        "v=spf1 include:dyn.provider.test include:static.test -all",
    );
    w.dns
        .add_txt(
            "dyn.provider.test",
            "v=spf1 -ip4:198.51.100.66 ip4:198.51.100.0/24 exists:%{i}.allow.provider.test ~all",
        )
        .add_a("203.0.113.10.allow.provider.test", v4("127.0.0.2"))
        .add_txt("static.test", "v=spf1 ip4:192.0.2.0/24 -all");
    let (expansion, chain) = w.flatten();
    let text = published_text(&chain);
    assert!(
        text.starts_with("v=spf1 include:dyn.provider.test ip4:192.0.2.0/24 -all"),
        "{text}"
    );
    assert_eq!(chain.lookups, 2, "the include and the exists inside it");
    let live = expansion
        .details
        .iter()
        .find(|d| d.key == "include:dyn.provider.test")
        .unwrap();
    assert!(live.kept_live);
    w.assert_equivalent(
        &expansion,
        &chain,
        &["203.0.113.10", "198.51.100.66", "198.51.100.67"],
    );
}

#[test]
fn redirects_inside_includes_and_at_the_top() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 include:a.test ip4:192.0.2.1 redirect=_spf.corp.test",
    );
    w.dns
        .add_txt("a.test", "v=spf1 ip4:10.1.0.0/16 redirect=b.test")
        .add_txt("b.test", "v=spf1 -ip4:10.2.3.0/24 ip4:10.2.0.0/16 ?all")
        .add_txt(
            "_spf.corp.test",
            "v=spf1 ip4:198.51.100.0/24 ?ip4:198.51.101.0/24 -all exp=why.corp.test",
        );
    let (expansion, chain) = w.flatten();
    assert_eq!(expansion.terminal, Terminal::All(Qualifier::Fail));
    assert_eq!(expansion.exp, None, "only the source's own exp is carried");
    let text = published_text(&chain);
    assert!(
        text.contains("ip4:10.2.2.0/24") && !text.contains("10.2.0.0/16"),
        "{text}"
    );
    w.assert_equivalent(&expansion, &chain, &["10.2.3.4", "198.51.101.1"]);
}

#[test]
fn a_redirect_beside_all_is_ignored() {
    // The redirect target does not even exist: with `all` it never runs.
    let w = World::new(
        "example.com",
        "example.com",
        "v=spf1 ip4:192.0.2.1 ?all redirect=nowhere.test",
    );
    let (expansion, chain) = w.flatten();
    assert_eq!(chain.head, ["v=spf1 ip4:192.0.2.1 ?all"]);
    assert_eq!(expansion.terminal, Terminal::All(Qualifier::Neutral));
    w.assert_equivalent(&expansion, &chain, &[]);
}

#[test]
fn no_all_is_neutral_and_an_open_include_passes_the_rest() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 -ip4:10.9.0.0/16 include:open.test",
    );
    w.dns
        .add_txt("open.test", "v=spf1 -ip4:10.0.0.0/8 ?ip6:2001:db8::/32 +all");
    let (expansion, chain) = w.flatten();
    assert_eq!(expansion.terminal, Terminal::Absent);
    let text = published_text(&chain);
    assert!(!text.contains("all"), "{text}");
    assert!(
        text.starts_with("v=spf1 -ip4:10.9.0.0/16 ip4:0.0.0.0/5 ip4:8.0.0.0/7 ip4:11.0.0.0/8"),
        "{text}"
    );
    w.assert_equivalent(
        &expansion,
        &chain,
        &["10.9.1.1", "10.10.0.0", "9.255.255.255", "2001:db8::1"],
    );
}

#[test]
fn upper_case_terms_and_cidr_suffixes() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 IP4:192.0.2.0/24 Include:Provider.TEST MX:mail.example.com/28 A:www.example.com//56 -ALL",
    );
    w.dns
        .add_txt("provider.test", "V=SPF1 IP6:2001:DB8:5::/48 -ALL")
        .add_mx("mail.example.com", "mx.example.net")
        .add_a("mx.example.net", v4("198.51.100.35"))
        .add_aaaa("www.example.com", v6("2001:db8:77:88::1"))
        .add_a("www.example.com", v4("203.0.113.77"));
    let (expansion, chain) = w.flatten();
    let text = published_text(&chain);
    assert!(
        text.contains("ip4:198.51.100.32/28") && text.contains("ip6:2001:db8:77::/56"),
        "{text}"
    );
    assert!(text.contains("ip4:203.0.113.77"), "{text}");
    w.assert_equivalent(&expansion, &chain, &[]);
}

#[test]
fn macro_targets_and_sender_macros_stay() {
    let mut w = World::new(
        "example.com",
        "_spf.example.com",
        "v=spf1 a:%{d} include:%{o}._spf.example.net redirect=%{o}._r.example.net",
    );
    w.dns
        .add_a("example.com", v4("192.0.2.1"))
        .add_txt("example.com._spf.example.net", "v=spf1 ip4:198.51.100.0/24 -all")
        .add_txt("example.com._r.example.net", "v=spf1 ip4:203.0.113.0/24 ~all");
    let (expansion, chain) = w.flatten();
    assert!(
        matches!(expansion.rules[1], Rule::Dynamic { ref text, .. } if text == "include:%{o}._spf.example.net")
    );
    assert!(
        matches!(expansion.terminal, Terminal::Redirect { ref text, .. } if text == "redirect=%{o}._r.example.net")
    );
    assert_eq!(
        chain.head,
        ["v=spf1 ip4:192.0.2.1 include:%{o}._spf.example.net redirect=%{o}._r.example.net"]
    );
    let keys: Vec<&str> = expansion.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        ["include:%{o}._spf.example.net", "redirect=%{o}._r.example.net"]
    );
    w.assert_equivalent(&expansion, &chain, &["198.51.100.9", "203.0.113.9", "192.0.2.1"]);
}

fn expand_error(w: &World) -> ExpandError {
    match w.flatten_at(&mut LastGood::new(), 0) {
        Err(FlattenError::Expand(e)) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn broken_includes_are_errors_naming_the_path() {
    let mut w = World::new("example.com", "example.com", "v=spf1 include:a.test -all");
    w.dns
        .add_txt("a.test", "v=spf1 include:b.test -all")
        .add_txt("b.test", "v=spf1 ip4:192.0.2.1 include:a.test -all");
    let e = expand_error(&w);
    assert!(matches!(e, ExpandError::Loop { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "include:a.test -> include:b.test -> include:a.test: a.test includes or redirects back to itself (a loop)"
    );

    let cases = [
        (
            "v=spf1 include:none.test -all",
            "include:none.test: none.test has no SPF record",
        ),
        (
            "v=spf1 include:nxdomain.test -all",
            "include:nxdomain.test: nxdomain.test has no SPF record",
        ),
        ("v=spf1 include:two.test -all", "more than one v=spf1 record"),
        (
            "v=spf1 include:bad.test -all",
            "include:bad.test: the record of bad.test is invalid at byte 7",
        ),
        (
            "v=spf1 redirect=none.test",
            "redirect:none.test: none.test has no SPF record",
        ),
        (
            "v=spf1 include:self.test",
            "redirect:self.test: self.test includes or redirects back",
        ),
        (
            "v=spf1 include:example.com",
            "include:example.com: example.com includes or redirects back",
        ),
    ];
    for (source, words) in cases {
        let mut w = World::new("example.com", "example.com", source);
        w.dns
            .add_txt("none.test", "some verification text")
            .add_txt("two.test", "v=spf1 -all")
            .add_txt("two.test", "v=spf1 ip4:192.0.2.1 -all")
            .add_txt("bad.test", "v=spf1 ipv4:192.0.2.1 -all")
            .add_txt("self.test", "v=spf1 redirect=self.test");
        let e = expand_error(&w).to_string();
        assert!(e.contains(words), "{source}: {e}");
    }
}

#[test]
fn missing_a_and_mx_names_match_nothing() {
    let mut w = World::new(
        "example.com",
        "example.com",
        "v=spf1 a:nowhere.test mx:nomx.test mx ip4:192.0.2.1 -all",
    );
    w.dns.add_name("nomx.test");
    let (expansion, chain) = w.flatten();
    assert_eq!(chain.head, ["v=spf1 ip4:192.0.2.1 -all"]);
    w.assert_equivalent(&expansion, &chain, &[]);
}

#[test]
fn the_expansion_future_is_send_and_lists_its_queries() {
    fn assert_send<T: Send>(_: &T) {}
    let w = providers();
    let record = w.record();
    let mut memory = LastGood::new();
    let opts = ExpandOptions::at(0);
    let future = expand(&w.dns, "example.com", &record, &mut memory, &opts);
    assert_send(&future);
    let expansion = block(future).unwrap();
    use hickory_proto::rr::RecordType;
    for query in [
        ("_deep.google.test", RecordType::TXT),
        ("example.com", RecordType::MX),
        ("mx2.example.com", RecordType::AAAA),
        ("gone.example.com", RecordType::A),
    ] {
        let query = (query.0.to_string(), query.1);
        assert!(expansion.queried.contains(&query), "{query:?}");
    }
}
