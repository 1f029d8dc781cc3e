//! Flattening end to end: a real upstream DNS server on loopback serves provider trees
//! (tests/upstream/), spfd flattens policies against it, and an SPF evaluator that is
//! not spfd's own (viaspf) compares the source record with what spfd publishes, on
//! every CIDR boundary and on random addresses. Outages and restarts keep the records.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/upstream.rs"]
mod upstream;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use oracle::{Limits, Oracle, Prng, boundary_ips, spf_networks};
use upstream::{Failure, Upstream};

/// The mail domains under test: each has its source record at its own name in the
/// upstream world (tests/upstream/customer.test.zone).
const DOMAINS: &[&str] = &[
    "customer.test",
    "big.customer.test",
    "eu.customer.test",
    "macro.customer.test",
    "legacy.customer.test",
    "overlap.customer.test",
];

fn world_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))
}

/// The source record of a domain, as the upstream serves it.
fn source_record(world: &Upstream, domain: &str) -> String {
    let owner = format!("{domain}.");
    world
        .spf_records()
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&owner))
        .unwrap_or_else(|| panic!("no SPF at {domain}"))
        .1
}

fn flatten_policy(domain: &str, record: &str) -> String {
    format!("domain = \"{domain}\"\nttl = 300\n[spf]\nrecord = \"{record}\"\nmode = \"flatten\"\n")
}

/// The customer zone after the owner moved to spfd: every tested domain's TXT is
/// `v=spf1 redirect=_spf.<domain>`; everything else stays.
fn owner_zone(world: &Upstream) -> String {
    let text = world.zone_text("customer.test.");
    text.lines()
        .map(|line| {
            let Some(owner) = line.split_whitespace().next() else {
                return line.to_string();
            };
            let domain = if owner == "@" {
                "customer.test".to_string()
            } else {
                format!("{owner}.customer.test")
            };
            if line.contains("TXT \"v=spf1") && DOMAINS.contains(&domain.as_str()) {
                format!("{owner} 300 IN TXT \"v=spf1 redirect=_spf.{domain}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Stage {
    world: Upstream,
    /// The customer zone as it is once the owner points at spfd.
    owners: Upstream,
    setup: Setup,
}

impl Stage {
    async fn new() -> Stage {
        let world = Upstream::start(world_dir()).await;
        let owners_dir = tempfile::tempdir().unwrap();
        std::fs::write(owners_dir.path().join("customer.test.zone"), owner_zone(&world)).unwrap();
        let owners = Upstream::start(owners_dir.path()).await;
        let policies: Vec<(String, String)> = DOMAINS
            .iter()
            .map(|d| (format!("{d}.toml"), flatten_policy(d, &source_record(&world, d))))
            .collect();
        let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let setup = Setup::new(&refs);
        let config =
            config_text() + &world.resolver_config_toml() + "refresh_min = \"1s\"\nrefresh_max = \"2s\"\n";
        std::fs::write(setup.config_path(), config).unwrap();
        Stage { world, owners, setup }
    }

    async fn start_spfd(&self) -> spfd::server::Running {
        spfd::server::start(&self.setup.config()).await.unwrap()
    }

    /// The source as receivers evaluate it with the lookup limits lifted.
    fn source_oracle(&self) -> Oracle {
        Oracle::new(self.world.addr).with_limits(Limits::Lifted)
    }

    /// The published records, as receivers evaluate them (within the RFC limits).
    fn published_oracle(&self, spfd: std::net::SocketAddr) -> Oracle {
        let routes: Vec<(String, std::net::SocketAddr)> = DOMAINS
            .iter()
            .map(|d| (format!("_spf.{d}"), spfd))
            .chain([
                ("customer.test".to_string(), self.owners.addr),
                (String::new(), self.world.addr),
            ])
            .collect();
        let refs: Vec<(&str, std::net::SocketAddr)> = routes.iter().map(|(s, a)| (s.as_str(), *a)).collect();
        Oracle::routed(&refs).with_limits(Limits::Rfc)
    }

    /// Boundaries of every range in the world and the published records, plus random
    /// addresses near and far from them.
    fn addresses(&self, published: &[String]) -> Vec<IpAddr> {
        let mut texts: Vec<String> = self.world.spf_records().into_iter().map(|(_, t)| t).collect();
        texts.extend(published.iter().cloned());
        texts.push("v=spf1 ip4:203.0.113.16/28 ip6:2001:db8:cafe::/64 ip6:2001:db8:cafe:1::/64 ip6:2001:db8:cafe:2::/64 ip4:203.0.113.40/31".into());
        let mut ips = boundary_ips(&texts);
        let mut rng = Prng::new(7208);
        ips.extend(rng.ips_near(&spf_networks(&texts), 120));
        ips.push("::ffff:198.51.100.66".parse().unwrap());
        ips.push("::ffff:203.0.113.20".parse().unwrap());
        ips.sort();
        ips.dedup();
        ips
    }
}

async fn wait_published(running: &spfd::server::Running) {
    for _ in 0..400 {
        if DOMAINS
            .iter()
            .all(|d| running.published.get(&format!("{d}.")).is_some())
        {
            // Let the reload service swap the snapshot in.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not every policy was flattened within 10 s");
}

async fn published_texts(addr: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for d in DOMAINS {
        let r = tcp_query(addr, &format!("_spf.{d}.")).await;
        out.extend(r);
    }
    out
}

async fn tcp_query(addr: std::net::SocketAddr, name: &str) -> Vec<String> {
    let q = query(name, RecordType::TXT);
    let msg = hickory_proto::op::Message::from_vec(&tcp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
    txt_joined(&msg)
}

/// Compares source and published results for every domain and address.
async fn assert_equivalent(stage: &Stage, spfd: std::net::SocketAddr) {
    let published = published_texts(spfd).await;
    let ips = stage.addresses(&published);
    let source = stage.source_oracle();
    let served = stage.published_oracle(spfd);
    let mut mismatches = Vec::new();
    for domain in DOMAINS {
        let want = source.check_all(&ips, domain).await;
        let got = served.check_all(&ips, domain).await;
        for ((ip, w), (_, g)) in want.iter().zip(&got) {
            if w != g {
                mismatches.push(format!("{domain} {ip}: source {w}, published {g}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} comparisons differ:\n{}\npublished:\n{}",
        mismatches.len(),
        ips.len() * DOMAINS.len(),
        mismatches.join("\n"),
        published.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_give_every_address_the_source_result() {
    let stage = Stage::new().await;
    let running = stage.start_spfd().await;
    wait_published(&running).await;
    let addr = running.addrs[0];
    // Within the limits: every chain costs receivers at most 10 lookups.
    for d in DOMAINS {
        let entry = running.published.get(&format!("{d}.")).unwrap();
        assert!(entry.lookups <= 10, "{d}: {entry:?}");
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
    let stage = Stage::new().await;
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
        .map(|d| (format!("{d}.toml"), flatten_policy(d, &source_record(&world, d))))
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
    let stage = Stage::new().await;
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
