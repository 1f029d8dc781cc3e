//! `spfd push --config FILE [DOMAIN] [--dry-run]`: flattens every policy now (keeping
//! the results in `state_dir`, as the server does) and writes each zone's records into
//! the primary named by `[push]` with one RFC 2136 update per zone; `--dry-run` prints
//! the updates in nsupdate's language instead of sending them.

use std::fmt::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use arc_swap::ArcSwap;

use crate::config::Config;
use crate::names::parse_host_name;
use crate::published::Published;
use crate::push::Target;
use crate::push::send::{PushState, plan, push_zone};
use crate::refresh::{Flattener, Settings};
use crate::reload::{Reloader, Scope};
use crate::snapshot::{Snapshot, Zone};
use crate::upstream::Upstream;

/// Runs the command; the text to print and whether every zone was pushed.
pub async fn push(config: &Config, domain: Option<&str>, dry_run: bool) -> anyhow::Result<(String, bool)> {
    let settings = config.push.as_ref().ok_or_else(|| {
        anyhow!(
            "{}: no [push] table: add [push] with primary = \"ADDRESS:53\" and tsig = \"KEY\" (a [tsig.KEY] table)",
            config.path.display()
        )
    })?;
    let target = Target {
        primary: settings.primary,
        key: settings.tsig.as_ref().map(|name| config.tsig[name].clone()),
    };
    let snapshot = flattened(config).await?;
    let wanted = domain
        .map(|d| parse_host_name(d).map_err(|e| anyhow!("DOMAIN {d:?} {e}")))
        .transpose()?;
    let zones: Vec<Arc<Zone>> = snapshot
        .zones
        .values()
        .filter(|z| wanted.as_ref().is_none_or(|w| z.policy.domain == *w))
        .cloned()
        .collect();
    if zones.is_empty() {
        bail!(
            "no valid policy{} in {}",
            wanted.map(|w| format!(" for {w}")).unwrap_or_default(),
            config.policy_dir.display()
        );
    }
    let state = PushState::load(config.state_dir.clone());
    let mut out = String::new();
    let mut ok = true;
    for zone in zones {
        let head = zone.apex.clone();
        let result = if dry_run {
            plan(&target, &head, Some(&zone), &state.previous(&head))
                .await
                .map(|u| u.nsupdate(&target))
        } else {
            push_zone(&target, &state, &head, Some(&zone)).await.map(|u| {
                format!(
                    "; pushed {} records of {head} into zone {} at {}\n",
                    u.add.len(),
                    u.zone,
                    target.primary
                )
            })
        };
        match result {
            Ok(text) => out.push_str(&text),
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "; error: {head}: {e}");
            }
        }
    }
    Ok((out, ok))
}

/// The zones as the server would serve them, flattened now: the persisted results,
/// then one round of expansions.
async fn flattened(config: &Config) -> anyhow::Result<Arc<Snapshot>> {
    let published = Arc::new(Published::load(&config.state_dir).unwrap_or_default());
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline_with(config, cell.clone(), published.clone());
    let report = reloader.reload();
    for d in report.errors() {
        eprintln!("{d}");
    }
    let upstream =
        Arc::new(Upstream::from_config(&config.upstream).context("cannot set up the upstream resolver")?);
    let flattener = Flattener::new(
        upstream,
        published,
        Settings::new(&config.upstream, &config.state_dir),
        Box::new(|| {}),
    );
    let mut ready = flattener.ready();
    let stop = flattener.shutdown_token();
    let policies = reloader.subscribe();
    let run = flattener.run(policies);
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => {}
        _ = ready.wait() => {
            stop.cancel();
            run.await;
        }
    }
    reloader.reload_scope(Scope::Nothing);
    Ok(cell.load_full())
}
