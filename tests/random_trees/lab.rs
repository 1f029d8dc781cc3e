//! The stage: a real DNS server on loopback serving the generated worlds, another
//! serving the customer zones as the owner changed them, spfd with one policy per mail
//! domain, and the two oracles that judge them (the source with limits lifted, the
//! published records within the RFC limits).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Setup, config_text};
use crate::model::{Mode, World};
use crate::oracle::{Limits, Oracle};
use crate::stage::policy;
use crate::upstream::Upstream;

pub struct Lab {
    /// Every world's zones, as providers and the owner's DNS provider serve them.
    pub world: Upstream,
    /// The customer zones once the owner pointed each mail domain at spfd: what
    /// receivers see (`world` keeps the source records for the source oracle).
    pub owners: Upstream,
    pub setup: Setup,
    pub running: spfd::server::Running,
}

impl Lab {
    /// Serves `worlds` and starts spfd on their mail domains in `mode`.
    pub async fn start(worlds: &[&World], mode: Mode) -> Lab {
        crate::logs::capture();
        let (zones, owner_zones) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for w in worlds {
            for origin in w.zone_origins() {
                write_zone(zones.path(), &origin, &w.zone_text(&origin, false));
            }
            let cust = w.zone("cust");
            write_zone(owner_zones.path(), &cust, &w.zone_text(&cust, true));
        }
        let world = Upstream::start(zones.path()).await;
        let owners = Upstream::start(owner_zones.path()).await;
        let policies: Vec<(String, String)> = worlds
            .iter()
            .flat_map(|w| {
                w.domains
                    .iter()
                    .map(move |d| (format!("{d}.toml"), policy(d, &w.source(d), mode.as_str())))
            })
            .collect();
        let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let setup = Setup::new(&refs);
        std::fs::write(setup.config_path(), config_text() + &world.resolver_config_toml()).unwrap();
        let running = spfd::server::start(&setup.config()).await.unwrap();
        Lab {
            world,
            owners,
            setup,
            running,
        }
    }

    /// Where spfd answers.
    pub fn spfd(&self) -> SocketAddr {
        self.running.addrs[0]
    }

    /// Waits for the first expansion round: every domain published, or the round over
    /// with some refused (the state file is written after a round; a second more lets a
    /// late policy through). Returns the refused ones.
    pub async fn first_round(&self, domains: &[String]) -> Vec<String> {
        let state = self.setup.dir.path().join("state/published.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut round_over: Option<Instant> = None;
        loop {
            let missing: Vec<String> = domains
                .iter()
                .filter(|d| self.running.published.get(&format!("{d}.")).is_none())
                .cloned()
                .collect();
            if round_over.is_none() && state.exists() {
                round_over = Some(Instant::now());
            }
            let settled = round_over.is_some_and(|t| t.elapsed() > Duration::from_secs(1));
            if missing.is_empty() || settled || Instant::now() > deadline {
                // Let the reload service swap the snapshot in.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn source_oracle(&self) -> Oracle {
        Oracle::new(self.world.addr)
            .with_limits(Limits::Lifted)
            .with_cache(4096)
    }

    /// Receivers' view: `_spf.<domain>` from spfd, the customer zones as the owner
    /// changed them, everything else from the upstream world.
    pub fn published_oracle(&self, worlds: &[World]) -> Oracle {
        let mut routes: Vec<(String, SocketAddr)> = vec![(String::new(), self.world.addr)];
        for w in worlds {
            routes.push((w.zone("cust"), self.owners.addr));
            routes.extend(w.domains.iter().map(|d| (format!("_spf.{d}"), self.spfd())));
        }
        let refs: Vec<(&str, SocketAddr)> = routes.iter().map(|(s, a)| (s.as_str(), *a)).collect();
        Oracle::routed(&refs).with_limits(Limits::Rfc).with_cache(4096)
    }
}

fn write_zone(dir: &Path, origin: &str, text: &str) {
    std::fs::write(dir.join(format!("{origin}.zone")), text).unwrap();
}
