//! Flattening end to end: a real upstream DNS server on loopback serves provider trees
//! (tests/upstream/), spfd flattens policies against it, and an SPF evaluator that is
//! not spfd's own (viaspf) compares the source record with what spfd publishes, on
//! every CIDR boundary and on random addresses. Outages and restarts keep the records.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/stage.rs"]
mod stage;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use common::*;
use oracle::{Limits, Oracle};
use stage::*;
use upstream::{Failure, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_give_every_address_the_source_result() {
    let stage = Stage::new("flatten").await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    // Within the limits: every chain costs receivers at most 10 lookups.
    for d in DOMAINS {
        let entry = running.published.get(&format!("{d}.")).unwrap();
        assert!(
            entry.chain.as_ref().is_some_and(|c| c.lookups <= 10),
            "{d}: {entry:?}"
        );
        let head = tcp_query(addr, &format!("_spf.{d}.")).await;
        assert_eq!(head.len(), 1, "{d}: one SPF record at the apex");
        assert!(head[0].len() <= 450, "{d}: {}", head[0]);
    }
    // The big tree needs far more than 10 lookups as written; flattened, it does not.
    let big = source_record(&stage.world, "big.customer.test");
    let rfc = Oracle::new(stage.world.addr).with_limits(Limits::Rfc);
    assert_eq!(
        rfc.check("233.252.0.1".parse().unwrap(), "big.customer.test")
            .await,
        "permerror",
        "{big}"
    );
    assert_equivalent(&stage, addr).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_records_and_a_restart_during_it_serves_them_at_once() {
    let stage = Stage::new("flatten").await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    let before = published_texts(addr).await;

    for zone in ["provider-a.test.", "provider-b.test.", "mail.customer.test."] {
        stage.world.set_failure(zone, Failure::Timeout);
    }
    stage.world.set_failure("provider-c.test.", Failure::ServFail);
    // Several refresh rounds (refresh_min is 1 s) go by during the outage.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        published_texts(addr).await,
        before,
        "an outage never changes the records"
    );
    running.shutdown().await.unwrap();

    // A restart while upstream is still down serves the same records at once.
    let again = stage.start_spfd().await;
    let after = published_texts(again.addrs[0]).await;
    assert_eq!(after, before);
    stage.world.clear_failures();
    assert_equivalent(&stage, again.addrs[0]).await;
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_include_that_cannot_be_flattened_is_an_error_and_nothing_is_published_in_its_place() {
    let world = Upstream::start(world_dir()).await;
    let cases = [
        "broken.customer.test",
        "loop.customer.test",
        "missing.customer.test",
    ];
    let policies: Vec<(String, String)> = cases
        .iter()
        .map(|d| {
            (
                format!("{d}.toml"),
                policy(d, &source_record(&world, d), "flatten"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let setup = Setup::new(&refs);
    std::fs::write(setup.config_path(), config_text() + &world.resolver_config_toml()).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    // Give the service time to try them all (each fails fast: no timeouts involved).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in cases {
        // At most the record composed as written at the swap: never an expansion.
        assert!(
            running.published.get(&format!("{d}.")).is_none_or(|e| e.composed),
            "{d} must not be flattened"
        );
        // The record as written stays served: receivers see exactly what the owner wrote.
        let served = tcp_query(running.addrs[0], &format!("_spf.{d}.")).await;
        assert_eq!(served, [source_record(&world, d)], "{d}");
    }
    running.shutdown().await.unwrap();
}

fn spfd_cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatten_and_explain_commands_show_the_chain_and_the_deciding_path() {
    let stage = Stage::new("flatten").await;
    let config = stage.setup.config_path();
    let config = config.to_str().unwrap().to_string();
    let (code, out) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || spfd_cli(&["flatten", "--config", &config, "customer.test"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 DNS lookups for a receiver: 1 for the domain's redirect"),
        "{out}"
    );
    let head = out
        .lines()
        .find(|l| l.starts_with("_spf.customer.test. 300 IN TXT \"v=spf1 "))
        .unwrap_or_else(|| panic!("no head line in\n{out}"));
    assert!(!head.contains("include:"), "the head is flattened: {head}");
    assert!(
        out.lines().any(|l| l.starts_with("_1-")),
        "a continued chain: {out}"
    );

    // 203.0.113.5 is authorised three includes deep: _spf -> _netblocks -> _netblocks-legacy.
    let (code, out) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || spfd_cli(&["explain", "--config", &config, "customer.test", "203.0.113.5"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("pass for 203.0.113.5"), "{out}");
    assert!(
        out.contains(
            "customer.test -> include:_spf.provider-a.test -> include:_netblocks.provider-a.test -> \
             include:_netblocks-legacy.provider-a.test -> ip4:203.0.113.0/28"
        ),
        "{out}"
    );

    // Shadowed by provider-b's -IP4 inside its include: the include does not match, and
    // the domain's own ~all decides.
    let (_, out) = tokio::task::spawn_blocking(move || {
        spfd_cli(&["explain", "--config", &config, "customer.test", "198.51.100.66"])
    })
    .await
    .unwrap();
    assert!(out.starts_with("softfail for 198.51.100.66"), "{out}");
    assert!(out.contains("decided by: customer.test -> ~all"), "{out}");
}

/// Every zone of the upstream world stops answering.
fn outage(world: &Upstream) {
    for zone in [
        "provider-a.test.",
        "provider-b.test.",
        "provider-c.test.",
        "customer.test.",
        "mail.test.",
    ] {
        world.set_failure(zone, Failure::Timeout);
    }
}

/// What receivers answer for `client` at `domain` once it is `expected`, asked again for
/// at most 30 s (reloads and refreshes run in the background; the deadline is a safety
/// net, not a timing assertion).
async fn settles_on(oracle: &Oracle, client: &str, domain: &str, expected: &str) -> String {
    let client = client.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = oracle.check(client, domain).await;
        if got == expected || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_put_back_during_an_outage_serves_its_own_terms_and_not_the_removed_range() {
    let stage = Stage::new("flatten").await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let served = stage.published_oracle(running.addrs[0]);
    let original = source_record(&stage.world, "customer.test");
    let write = |record: &str| {
        let text = policy("customer.test", record, "flatten");
        stage.setup.write_policy("customer.test.toml", &text);
    };
    outage(&stage.world);
    let edited = original.replace(" ~all", " ip4:198.18.0.0/24 ~all");
    write(&edited);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        settles_on(&served, "198.18.0.1", "customer.test", "pass").await,
        "pass"
    );
    write(&original);
    assert_eq!(
        settles_on(&served, "198.18.0.1", "customer.test", "softfail").await,
        "softfail",
        "{:?} {:?}",
        tcp_query(running.addrs[0], "_spf.customer.test.").await,
        tcp_query(running.addrs[0], "_1-4a90f87e._spf.customer.test.").await
    );
    // The provider's ranges still come from their last good results.
    assert_eq!(
        served.check("10.3.0.1".parse().unwrap(), "customer.test").await,
        "pass"
    );
    running.shutdown().await.unwrap();
}

/// A record edited while spfd is down, the upstream down too: at once after the restart
/// spfd serves the file's record composed term by term (each include from its own last
/// good result, whichever record it was fetched for; one never resolved as written),
/// never the earlier version kept in the state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_composes_the_record_in_the_file_term_by_term() {
    let stage = Stage::new("flatten").await;
    let original = source_record(&stage.world, "customer.test");
    let write = |record: &str| {
        let text = policy("customer.test", record, "flatten");
        stage.setup.write_policy("customer.test.toml", &text);
    };
    write(&original.replace(" ~all", " ip4:198.18.0.0/24 ~all"));
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    running.shutdown().await.unwrap();

    // While spfd is down: the range goes, an include eu.customer.test's record resolved
    // comes, and one never resolved by anyone.
    outage(&stage.world);
    stage.world.set_failure("new.test.", Failure::Timeout);
    let edited = " include:eu.provider-b.test include:new.test ~all";
    write(&original.replace(" ~all", edited));
    let again = stage.start_spfd().await;
    let chain = chain_text(again.addrs[0], "_spf.customer.test.").await;
    assert!(chain.contains(" include:new.test "), "{chain}");
    assert!(!chain.contains("include:eu.provider-b.test"), "{chain}");

    // Receivers can reach new.test; spfd's upstream still cannot reach the rest.
    stage.world.clear_failure("new.test.");
    let new_zone = "@ 60 IN SOA ns.new.test. h.new.test. 1 60 60 60 60\n\
                    @ 60 IN TXT \"v=spf1 ip4:198.18.1.0/24 -all\"\n";
    stage.world.replace_zone("new.test", new_zone).await;
    let served = stage.published_oracle(again.addrs[0]);
    let result = |ip: &'static str| served.check(ip.parse().unwrap(), "customer.test");
    assert_eq!(
        result("198.18.0.1").await,
        "softfail",
        "the removed range is gone"
    );
    assert_eq!(
        result("203.0.113.130").await,
        "pass",
        "from eu's last good result"
    );
    assert_eq!(result("10.3.0.1").await, "pass", "provider-a's last good result");
    assert_eq!(
        result("198.18.1.1").await,
        "pass",
        "new.test, evaluated by receivers"
    );
    again.shutdown().await.unwrap();
}

/// The records of a chain, the head first, each part followed through its `redirect=`.
async fn chain_text(addr: std::net::SocketAddr, head: &str) -> String {
    let mut records = Vec::new();
    let mut name = head.to_string();
    loop {
        let record = tcp_query(addr, &name).await.concat();
        let next = record
            .split(' ')
            .find_map(|term| term.strip_prefix("redirect=_"))
            .map(|rest| format!("_{rest}."));
        records.push(record);
        match next {
            Some(part) if records.len() < 10 => name = part,
            _ => return records.join("\n"),
        }
    }
}
