//! `spfd dnssec ds` (the DS records to publish at each zone's parent, and the keys they
//! point to) and `spfd dnssec rollover` (a double-signature rollover of a zone's CSK:
//! the new key is published and signs beside the old one, the parent's DS is switched,
//! then the old key is retired).

use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use encode::{base64, hex};
use hickory_proto::dnssec::PublicKey;
use hickory_proto::rr::Name;

use crate::config::Config;
use crate::dnssec::{KeyStore, ZoneKey};
use crate::names::{Rules, parse_name};
use crate::snapshot::Snapshot;

/// TTL suggested for the DS at the parent (the parent decides; most use a day).
pub const DS_TTL: u32 = 3600;
/// How long parents commonly keep a DS cached: a rollover waits this long after the
/// DS switch before the old key goes.
const PARENT_DS_TTL: Duration = Duration::from_secs(86400);
/// Margin for secondaries and caches beyond the zone's own TTL.
const PROPAGATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Subcommand)]
pub enum DnssecCommand {
    /// Print, per zone, the DS record (SHA-256) to add at the parent and the DNSKEY.
    Ds {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this zone.
        zone: Option<String>,
    },
    /// Start a double-signature rollover of ZONE's key; `--finish` retires the old key.
    Rollover {
        #[arg(long, short, default_value = "/etc/spfd/spfd.toml")]
        config: PathBuf,
        zone: String,
        /// Retire the old key (once the parent serves only the new DS).
        #[arg(long)]
        finish: bool,
        /// With --finish: retire even before the safe date.
        #[arg(long)]
        force: bool,
    },
}

/// The DS line for one key, in zone-file form.
pub fn ds_line(apex: &Name, key: &ZoneKey) -> anyhow::Result<String> {
    let ds = key.ds(apex).map_err(anyhow::Error::msg)?;
    Ok(format!(
        "{apex}\t{DS_TTL}\tIN\tDS\t{} {} 2 {}",
        ds.key_tag(),
        u8::from(ds.algorithm()),
        hex(ds.digest())
    ))
}

/// A key's public part in the base64 of DNSKEY presentation form.
pub fn dnskey_base64(key: &ZoneKey) -> String {
    base64(key.dnskey.public_key().public_bytes())
}

fn dnskey_line(apex: &Name, ttl: u32, key: &ZoneKey) -> String {
    let public = key.dnskey.public_key();
    format!(
        "{apex}\t{ttl}\tIN\tDNSKEY\t{} 3 {} {}",
        key.dnskey.flags(),
        u8::from(public.algorithm()),
        base64(public.public_bytes())
    )
}

/// `spfd dnssec ds`: every signed zone of `snapshot` (or only `only`).
pub fn ds(config: &Config, snapshot: &Snapshot, only: Option<&str>) -> anyhow::Result<String> {
    require_on(config)?;
    let only = only
        .map(|z| parse_name(z, Rules::Service))
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("ZONE")?;
    let mut zones: Vec<_> = snapshot.zones.values().collect();
    zones.sort_by(|a, b| a.apex.cmp(&b.apex));
    zones.retain(|z| only.as_ref().is_none_or(|o| &z.apex == o));
    if zones.is_empty() {
        bail!(
            "no zone {} in the valid policies",
            only.map_or("at all".into(), |o| o.to_string())
        );
    }
    // The offline snapshot only reads keys: a zone without one gets it here, as at the
    // server's first start (so the DS can be at the parent before signing begins).
    let mut store = None;
    let mut out = String::new();
    for zone in zones {
        let _ = writeln!(out, "; {} ({})", zone.apex, zone.policy.path.display());
        let keys = match (zone.wire.zone.dnssec.as_deref(), zone.policy.dnssec) {
            (Some(signed), _) => signed.signer.keys.clone(),
            (None, true) => {
                let store = match &mut store {
                    Some(store) => store,
                    None => store.insert(KeyStore::open(
                        &config.state_dir.join("keys"),
                        config.dnssec.algorithm,
                    )?),
                };
                let _ = writeln!(
                    out,
                    "; a key is made for this zone now: spfd signs with it from its next start or reload"
                );
                store.keys_for(&zone.apex)?
            }
            (None, false) => {
                let _ = writeln!(out, "; not signed (dnssec = false in the policy)\n");
                continue;
            }
        };
        let _ = writeln!(out, "; add at the parent zone:");
        for key in &keys.keys {
            let _ = writeln!(out, "{}", ds_line(&zone.apex, key)?);
        }
        let _ = writeln!(out, "; the key it points to:");
        for key in &keys.keys {
            let _ = writeln!(out, "{}", dnskey_line(&zone.apex, zone.ttl, key));
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

fn require_on(config: &Config) -> anyhow::Result<()> {
    if !config.dnssec.enabled {
        bail!(
            "{}: DNSSEC is off: add [dnssec] with enabled = true",
            config.path.display()
        );
    }
    Ok(())
}

/// `spfd dnssec rollover ZONE [--finish]`; `ttl` is the zone's TTL.
pub fn rollover(config: &Config, zone: &str, ttl: u32, finish: bool, force: bool) -> anyhow::Result<String> {
    require_on(config)?;
    let apex = parse_name(zone, Rules::Service)
        .map_err(anyhow::Error::msg)
        .context("ZONE")?;
    let store = KeyStore::open(&config.state_dir.join("keys"), config.dnssec.algorithm)?;
    let keys = store.existing(&apex)?;
    if keys.is_empty() {
        bail!(
            "{apex} has no key yet in {}: start spfd (or run spfd dnssec ds) first",
            store.dir().display()
        );
    }
    let wait = Duration::from_secs(u64::from(ttl)) + PROPAGATION;
    let mut out = String::new();
    if !finish {
        if keys.len() > 1 {
            bail!(
                "a rollover of {apex} is in progress (keys {}): finish it with --finish",
                tags(&keys)
            );
        }
        let file = store.add_key(&apex)?;
        let new = store
            .existing(&apex)?
            .into_iter()
            .find(|k| k.file == file)
            .context("new key")?;
        let now = SystemTime::now();
        let switch = now + wait;
        let retire = switch + PARENT_DS_TTL;
        let _ = writeln!(
            out,
            "Rollover of {apex}: new key {} ({}) joins key {}.",
            new.tag,
            file.display(),
            keys[0].tag
        );
        let _ = writeln!(
            out,
            "1. Now: reload spfd (SIGHUP); both keys are published and sign every answer."
        );
        let _ = writeln!(
            out,
            "2. From {}: replace the DS at the parent with:",
            date(switch)
        );
        let _ = writeln!(out, "   {}", ds_line(&apex, &new)?);
        let _ = writeln!(out, "   (CDS/CDNSKEY at the apex list both keys until step 3.)");
        let _ = writeln!(
            out,
            "3. From {} (a day after the DS switch, once the parent serves only the new DS): \
             spfd dnssec rollover --config {} --finish {apex}, then reload spfd. Key {} can go then.",
            date(retire),
            config.path.display(),
            keys[0].tag
        );
        return Ok(out);
    }
    if keys.len() < 2 {
        bail!("no rollover of {apex} in progress (one key, {})", keys[0].tag);
    }
    let newest = keys.iter().max_by_key(|k| k.created).cloned().context("keys")?;
    let safe = newest.created + wait + PARENT_DS_TTL;
    if SystemTime::now() < safe && !force {
        bail!(
            "the old key of {apex} can go from {} (the new key {} is from {}); --force retires it now",
            date(safe),
            newest.tag,
            date(newest.created)
        );
    }
    for key in keys.iter().filter(|k| k.tag != newest.tag) {
        let to = store.retire(key)?;
        let _ = writeln!(out, "Retired key {} of {apex} to {}.", key.tag, to.display());
    }
    let _ = writeln!(
        out,
        "Reload spfd (SIGHUP): only key {} is published and signs from then on.",
        newest.tag
    );
    Ok(out)
}

fn tags(keys: &[std::sync::Arc<ZoneKey>]) -> String {
    keys.iter()
        .map(|k| k.tag.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Hex (DS digests) and base64 (DNSKEY public keys) in presentation form.
mod encode {
    use base64::Engine;

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    pub fn base64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
