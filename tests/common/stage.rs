//! The stage for comparing published SPF with its source: the upstream world
//! (tests/upstream/), the same world after the owner pointed their domains at spfd, spfd
//! with one policy per domain, and oracles for both sides.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::common::*;
use crate::oracle::{Limits, Oracle, Prng, boundary_ips, spf_networks};
use crate::upstream::Upstream;

/// The mail domains under test: each has its source record at its own name in the
/// upstream world (tests/upstream/customer.test.zone).
pub const DOMAINS: &[&str] = &[
    "customer.test",
    "big.customer.test",
    "eu.customer.test",
    "macro.customer.test",
    "legacy.customer.test",
    "overlap.customer.test",
];

pub fn world_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))
}

/// The source record of a domain, as the upstream serves it.
pub fn source_record(world: &Upstream, domain: &str) -> String {
    let owner = format!("{domain}.");
    world
        .spf_records()
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&owner))
        .unwrap_or_else(|| panic!("no SPF at {domain}"))
        .1
}

pub fn policy(domain: &str, record: &str, mode: &str) -> String {
    format!("domain = \"{domain}\"\nttl = 300\n[spf]\nrecord = \"{record}\"\nmode = \"{mode}\"\n")
}

/// The customer zone after the owner moved to spfd: every tested domain's TXT is
/// `v=spf1 redirect=_spf.<domain>`; everything else stays.
pub fn owner_zone(world: &Upstream) -> String {
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

pub struct Stage {
    pub world: Upstream,
    /// The customer zone as it is once the owner points at spfd.
    pub owners: Upstream,
    pub setup: Setup,
}

impl Stage {
    pub async fn new(mode: &str) -> Stage {
        let world = Upstream::start(world_dir()).await;
        let owners_dir = tempfile::tempdir().unwrap();
        std::fs::write(owners_dir.path().join("customer.test.zone"), owner_zone(&world)).unwrap();
        let owners = Upstream::start(owners_dir.path()).await;
        let policies: Vec<(String, String)> = DOMAINS
            .iter()
            .map(|d| (format!("{d}.toml"), policy(d, &source_record(&world, d), mode)))
            .collect();
        let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let setup = Setup::new(&refs);
        let config =
            config_text() + &world.resolver_config_toml() + "refresh_min = \"1s\"\nrefresh_max = \"2s\"\n";
        std::fs::write(setup.config_path(), config).unwrap();
        Stage { world, owners, setup }
    }

    pub async fn start_spfd(&self) -> spfd::server::Running {
        spfd::server::start(&self.setup.config()).await.unwrap()
    }

    /// The source as receivers evaluate it with the lookup limits lifted.
    pub fn source_oracle(&self) -> Oracle {
        Oracle::new(self.world.addr).with_limits(Limits::Lifted)
    }

    /// The published records, as receivers evaluate them (within the RFC limits).
    pub fn published_oracle(&self, spfd: std::net::SocketAddr) -> Oracle {
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
    pub fn addresses(&self, published: &[String]) -> Vec<IpAddr> {
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

/// Waits until every policy's expansion is published and served: the zone in the
/// snapshot carries the answer the published entry gives (not a placeholder, not
/// an earlier result) when it has a chain, so no test races the reload service's swap.
pub async fn wait_published(running: &spfd::server::Running) {
    wait_published_domains(running, DOMAINS).await
}

/// [`wait_published`] for the flatten and macro mode policies of `domains`.
pub async fn wait_published_domains(running: &spfd::server::Running, domains: &[&str]) {
    let served = |domain: &str| {
        let Some(entry) = running.published.get(domain) else {
            return false;
        };
        if entry.chain.is_none() {
            // Nothing within the limits to publish: what is served stays.
            return true;
        }
        let snapshot = running.snapshot.load();
        snapshot.zones.values().any(|zone| {
            zone.policy.domain_text == domain
                && zone.spf_answer.as_ref().is_some_and(|served| {
                    let next = running.published.answer_for(&zone.policy, Some(served));
                    // The same records (a zone whose content did not change keeps its
                    // answer, which may group the parts differently).
                    let records = |a: &spfd::snapshot::SpfAnswer| {
                        let parts: Vec<_> = a.parts.iter().flat_map(|g| g.iter().cloned()).collect();
                        (a.head.clone(), parts, a.macro_table.clone())
                    };
                    next.is_some_and(|next| records(&next) == records(served))
                })
        })
    };
    for _ in 0..1200 {
        if domains.iter().all(|d| served(&format!("{d}."))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let missing: Vec<&&str> = domains.iter().filter(|d| !served(&format!("{d}."))).collect();
    panic!("not flattened and served within 30 s: {missing:?}");
}

pub async fn published_texts(addr: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for d in DOMAINS {
        let r = tcp_query(addr, &format!("_spf.{d}.")).await;
        out.extend(r);
    }
    out
}

pub async fn tcp_query(addr: std::net::SocketAddr, name: &str) -> Vec<String> {
    let q = query(name, RecordType::TXT);
    let msg = hickory_proto::op::Message::from_vec(&tcp_raw(addr, &q.to_vec().unwrap()).await).unwrap();
    txt_joined(&msg)
}

/// Compares source and published results for every domain and address.
pub async fn assert_equivalent(stage: &Stage, spfd: std::net::SocketAddr) {
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
