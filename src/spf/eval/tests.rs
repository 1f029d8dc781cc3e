//! check_host() scenarios: how the deciding term and the path are reported, the
//! include and redirect mappings, the limits and their lifting. The RFC 7208 suite
//! (tests/spf_rfc7208.rs) covers the rest of the semantics.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::spf::MemoryDns;

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn world() -> MemoryDns {
    let mut dns = MemoryDns::new();
    dns.add_txt(
        "example.com",
        "v=spf1 -ip4:192.0.2.66 include:_spf.provider.test mx ~all exp=why.example.com",
    )
    .add_txt("why.example.com", "%{i} is not allowed to send as %{d}")
    .add_mx("example.com", "mx.example.com")
    .add_a("mx.example.com", Ipv4Addr::new(198, 51, 100, 25))
    .add_txt(
        "_spf.provider.test",
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
    )
    .add_txt(
        "redirected.test",
        "v=spf1 redirect=example.com exp=never.example.com",
    )
    .add_txt("broken.test", "v=spf1 include:nothing.test -all")
    .add_txt("slow.test", "v=spf1 a:timeout.test -all")
    .add_name("timeout.test")
    .fail_temporarily("timeout.test")
    .add_txt("loop.test", "v=spf1 include:loop.test -all")
    .add_txt(
        "many.test",
        "v=spf1 a:1.many.test a:2.many.test a:3.many.test ip4:192.0.2.9 -all",
    );
    dns
}

fn check(dns: &MemoryDns, domain: &str, ip: &str, options: &EvalOptions) -> Verdict {
    let query = Query::new(ip.parse().unwrap(), &format!("user@{domain}"), "mail.example.org");
    block(check_host(dns, domain, &query, options))
}

#[test]
fn verdicts() {
    let dns = world();
    // (domain, client, result, decided_by, trail)
    let cases = [
        (
            "example.com",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            "example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
        ),
        (
            "example.com",
            "2001:db8::5",
            SpfResult::Pass,
            Some("ip6:2001:db8::/32"),
            "example.com -> include:_spf.provider.test -> ip6:2001:db8::/32",
        ),
        (
            "example.com",
            "::ffff:192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            "example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
        ),
        (
            "example.com",
            "192.0.2.66",
            SpfResult::Fail,
            Some("-ip4:192.0.2.66"),
            "example.com -> -ip4:192.0.2.66",
        ),
        (
            "example.com",
            "198.51.100.25",
            SpfResult::Pass,
            Some("mx"),
            "example.com -> mx",
        ),
        (
            "example.com",
            "203.0.113.1",
            SpfResult::SoftFail,
            Some("~all"),
            "example.com -> ~all",
        ),
        (
            "redirected.test",
            "192.0.2.10",
            SpfResult::Pass,
            Some("ip4:192.0.2.0/24"),
            "redirected.test -> redirect=example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24",
        ),
        (
            "broken.test",
            "192.0.2.10",
            SpfResult::PermError,
            Some("include:nothing.test"),
            "broken.test -> include:nothing.test",
        ),
        (
            "slow.test",
            "192.0.2.10",
            SpfResult::TempError,
            Some("a:timeout.test"),
            "slow.test -> a:timeout.test",
        ),
        (
            "nothing.test",
            "192.0.2.10",
            SpfResult::None,
            None,
            "nothing.test",
        ),
        (
            "many.test",
            "192.0.2.9",
            SpfResult::PermError,
            Some("a:3.many.test"),
            "many.test -> a:3.many.test",
        ),
    ];
    for (domain, ip, result, decided_by, trail) in cases {
        let v = check(&dns, domain, ip, &EvalOptions::default());
        assert_eq!(v.result, result, "{domain} {ip}: {v}");
        assert_eq!(v.decided_by.as_deref(), decided_by, "{domain} {ip}: {v}");
        assert_eq!(v.trail(), trail, "{domain} {ip}");
    }
}

#[test]
fn reasons_explain_errors_and_defaults() {
    let dns = world();
    let broken = check(&dns, "broken.test", "192.0.2.10", &EvalOptions::default());
    assert!(
        broken.reason.as_deref().unwrap().contains("has no SPF record"),
        "{broken}"
    );
    let slow = check(&dns, "slow.test", "192.0.2.10", &EvalOptions::default());
    assert!(
        slow.reason
            .as_deref()
            .unwrap()
            .contains("A lookup of timeout.test"),
        "{slow}"
    );
    let voids = check(&dns, "many.test", "192.0.2.9", &EvalOptions::default());
    assert!(
        voids.reason.as_deref().unwrap().contains("void lookups"),
        "{voids}"
    );
    assert_eq!((voids.lookups, voids.void_lookups), (3, 3));
}

#[test]
fn explanation_comes_from_the_deciding_record_only() {
    let dns = world();
    let fail = check(&dns, "example.com", "192.0.2.66", &EvalOptions::default());
    assert_eq!(
        fail.explanation.as_deref(),
        Some("192.0.2.66 is not allowed to send as example.com")
    );
    // After a redirect the target's exp= applies; the redirecting record's does not.
    let redirected = check(&dns, "redirected.test", "192.0.2.66", &EvalOptions::default());
    assert_eq!(
        redirected.explanation.as_deref(),
        Some("192.0.2.66 is not allowed to send as example.com")
    );
    let softfail = check(&dns, "example.com", "203.0.113.1", &EvalOptions::default());
    assert_eq!(softfail.explanation, None);
}

#[test]
fn lifting_the_limits() {
    let dns = world();
    let lifted = check(&dns, "many.test", "192.0.2.9", &EvalOptions::without_limits());
    assert_eq!(lifted.result, SpfResult::Pass, "{lifted}");
    let looped = check(&dns, "loop.test", "192.0.2.9", &EvalOptions::without_limits());
    assert_eq!(looped.result, SpfResult::PermError);
    assert!(looped.reason.as_deref().unwrap().contains("loop"), "{looped}");
    let limited = check(&dns, "loop.test", "192.0.2.9", &EvalOptions::default());
    assert_eq!(limited.result, SpfResult::PermError);
    assert!(
        limited.reason.as_deref().unwrap().contains("more than 10"),
        "{limited}"
    );
}

#[test]
fn a_record_not_yet_published() {
    let dns = world();
    let record = Record::parse("v=spf1 include:_spf.provider.test a:mx.example.com/24 -all").unwrap();
    let query = Query::new(IpAddr::V6(Ipv6Addr::LOCALHOST), "user@new.test", "h.example");
    let v6 = block(check_record(
        &dns,
        &record,
        "new.test",
        &query,
        &EvalOptions::default(),
    ));
    assert_eq!(
        (v6.result, v6.decided_by.as_deref()),
        (SpfResult::Fail, Some("-all"))
    );
    let query = Query::new("198.51.100.200".parse().unwrap(), "user@new.test", "h.example");
    let v4 = block(check_record(
        &dns,
        &record,
        "new.test",
        &query,
        &EvalOptions::default(),
    ));
    assert_eq!(
        (v4.result, v4.decided_by.as_deref()),
        (SpfResult::Pass, Some("a:mx.example.com/24"))
    );
    assert_eq!(v4.path, vec!["new.test".to_string()]);
}

#[test]
fn macro_targets_show_the_expanded_domain() {
    let mut dns = MemoryDns::new();
    dns.add_txt("example.com", "v=spf1 include:%{ir}.%{v}._spf.example.com -all")
        .add_txt("5.2.0.192.in-addr._spf.example.com", "v=spf1 +all");
    let v = check(&dns, "example.com", "192.0.2.5", &EvalOptions::default());
    assert_eq!(v.result, SpfResult::Pass);
    assert_eq!(
        v.trail(),
        "example.com -> include:%{ir}.%{v}._spf.example.com (5.2.0.192.in-addr._spf.example.com) -> +all"
    );
}

#[test]
fn mail_from_and_helo_identities() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let q = Query::new(ip, "", "mail.example.org");
    assert_eq!(
        (q.sender.as_str(), q.domain()),
        ("postmaster@mail.example.org", "mail.example.org".to_string())
    );
    let q = Query::new(ip, "a@b@example.com", "h");
    assert_eq!(q.domain(), "example.com");
}

#[test]
fn result_names() {
    for r in [
        SpfResult::None,
        SpfResult::Neutral,
        SpfResult::Pass,
        SpfResult::Fail,
        SpfResult::SoftFail,
        SpfResult::TempError,
        SpfResult::PermError,
    ] {
        assert_eq!(SpfResult::from_name(&r.to_string().to_uppercase()), Some(r));
    }
    assert_eq!(SpfResult::from_name("unknown"), None);
}

#[test]
fn evaluation_runs_on_a_multi_threaded_runtime() {
    // tokio::spawn requires the future to be Send: this test compiles only if it is.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let verdict = runtime.block_on(async {
        let dns = world();
        let query = Query::new("192.0.2.10".parse().unwrap(), "user@example.com", "h.example");
        let task =
            tokio::spawn(
                async move { check_host(&dns, "example.com", &query, &EvalOptions::default()).await },
            );
        task.await.unwrap()
    });
    assert_eq!(verdict.result, SpfResult::Pass);
}
