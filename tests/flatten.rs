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
        assert!(
            running.published.get(&format!("{d}.")).is_none(),
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
