//! Signing a zone when it is built: the apex gets DNSKEY, CDS and CDNSKEY RRsets (in the
//! zone's wire data like every other RRset, so the fast path serves them), and every
//! RRset of [`ZoneWire`] is prepared and signed into a [`SignedZone`] kept with the
//! zone. A zone that is not rebuilt keeps its signatures; a rebuilt one reuses those of
//! the RRsets that did not change.

use std::path::Path;
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSSECRData};
use hickory_proto::dnssec::{DigestType, PublicKey};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tracing::error;

use super::Zone;
use super::compiled::{WireSet, ZoneWire, encode_set, wire_name};
use crate::config::DnssecConfig;
use crate::dnssec::{KeyError, KeyStore, Prepared, SigCache, SignedZone, Signer, ZoneKeys};
use crate::policy::ValidPolicy;

/// Signing for every zone whose policy does not opt out.
#[derive(Debug)]
pub struct Signing {
    pub store: KeyStore,
    /// `signature_validity` in seconds.
    pub validity: u64,
    /// Signatures made on demand, for every zone, under `signature_cache` bytes.
    pub cache: Arc<SigCache>,
}

impl Signing {
    /// `None` when `[dnssec]` is off; keys live in `state_dir/keys/`.
    pub fn open(config: &DnssecConfig, state_dir: &Path) -> Result<Option<Arc<Signing>>, KeyError> {
        Self::open_with(config, state_dir, true)
    }

    /// `create` false: the offline commands, which read keys and never make any.
    pub fn open_with(
        config: &DnssecConfig,
        state_dir: &Path,
        create: bool,
    ) -> Result<Option<Arc<Signing>>, KeyError> {
        if !config.enabled {
            return Ok(None);
        }
        let dir = state_dir.join("keys");
        let store = match create {
            true => KeyStore::open(&dir, config.algorithm)?,
            false => KeyStore::open_existing(&dir, config.algorithm)?,
        };
        let budget = usize::try_from(config.signature_cache).unwrap_or(usize::MAX);
        Ok(Some(Arc::new(Signing {
            store,
            validity: config.signature_validity.as_secs(),
            cache: Arc::new(SigCache::new(budget)),
        })))
    }

    /// The keys `policy`'s zone is signed with, or `None` when it stays unsigned (opted
    /// out, or its keys cannot be read: logged, never replaced).
    pub fn keys_for(&self, policy: &ValidPolicy) -> Option<Arc<ZoneKeys>> {
        // Whole zones (a zone file or a backend) stay unsigned for now: their
        // delegations, glue, CNAME chains and wildcards need proofs the signer does not
        // make yet (see docs/dnssec.md).
        if !policy.dnssec || policy.zone_data.is_some() || policy.backend.is_some() {
            return None;
        }
        match self.store.keys_for(&policy.zone) {
            Ok(keys) => Some(keys),
            Err(e @ KeyError::Missing { .. }) => {
                tracing::debug!("{e}");
                None
            }
            Err(e) => {
                error!(zone = %policy.zone, "zone served unsigned: {e}");
                None
            }
        }
    }
}

/// What signing adds to a zone's content fingerprint: 0 when unsigned, otherwise a
/// value that changes with the key set, so that a rollover rebuilds the zone with a
/// new serial.
pub fn fingerprint_mark(keys: Option<&ZoneKeys>) -> u64 {
    let Some(keys) = keys else { return 0 };
    keys.tags().iter().fold(0x5eed_d0e5_u64, |h, t| {
        h.rotate_left(17) ^ u64::from(*t).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// Adds the key RRsets to `zone`'s apex and signs every RRset of its wire data.
pub fn sign_zone(
    zone: &mut Zone,
    signing: &Signing,
    keys: Arc<ZoneKeys>,
    previous: Option<&Zone>,
    now_unix: u64,
) {
    add_key_sets(&mut zone.wire, &zone.apex, &keys, zone.ttl);
    let mut sets = Vec::new();
    for (name, by_type) in zone.wire.names.iter() {
        let Some(owner) = name_from_wire(name) else {
            continue;
        };
        for (_, set) in by_type.iter() {
            if let Some(prepared) = Prepared::new(&set.records(&owner)) {
                sets.push(prepared);
            }
        }
    }
    let previous = previous.and_then(|p| p.wire.zone.dnssec.as_deref());
    let signer = Signer {
        keys,
        validity: signing.validity,
    };
    let signed = SignedZone::new(signer, sets, now_unix, previous, signing.cache.clone());
    match Arc::get_mut(&mut zone.wire.zone) {
        Some(wire_zone) => wire_zone.dnssec = Some(Arc::new(signed)),
        None => error!(zone = %zone.apex, "zone wire data shared before signing: served unsigned"),
    }
}

/// DNSKEY, CDS (SHA-256) and CDNSKEY for every key, at the apex.
fn add_key_sets(wire: &mut ZoneWire, apex: &Name, keys: &ZoneKeys, ttl: u32) {
    let mut dnskeys = Vec::new();
    let mut cds = Vec::new();
    let mut cdnskeys = Vec::new();
    for key in &keys.keys {
        let record = |data: DNSSECRData| Record::from_rdata(apex.clone(), ttl, RData::DNSSEC(data));
        dnskeys.push(record(DNSSECRData::DNSKEY(key.dnskey.clone())));
        if let Ok(ds) = key.ds(apex) {
            let data = CDS::new(
                ds.key_tag(),
                Some(ds.algorithm()),
                DigestType::SHA256,
                ds.digest().to_vec(),
            );
            cds.push(record(DNSSECRData::CDS(data)));
        }
        let public = key.dnskey.public_key();
        let data = CDNSKEY::with_flags(
            key.dnskey.flags(),
            Some(public.algorithm()),
            public.public_bytes().to_vec(),
        );
        cdnskeys.push(record(DNSSECRData::CDNSKEY(data)));
    }
    let apex_wire = wire_name(apex);
    let new_sets: [(RecordType, WireSet); 3] = [
        (RecordType::DNSKEY, encode_set(&dnskeys)),
        (RecordType::CDS, encode_set(&cds)),
        (RecordType::CDNSKEY, encode_set(&cdnskeys)),
    ];
    let mut names = wire.names.to_vec();
    for (name, sets) in names.iter_mut() {
        if **name != *apex_wire {
            continue;
        }
        let mut grown: Vec<(u16, WireSet)> = sets.iter().filter(|(t, _)| !is_key_type(*t)).cloned().collect();
        grown.extend(
            new_sets
                .iter()
                .filter(|(_, set)| set.count > 0)
                .map(|(t, set)| (u16::from(*t), set.clone())),
        );
        *sets = Arc::from(grown);
    }
    wire.names = names.into_boxed_slice();
}

fn is_key_type(t: u16) -> bool {
    [RecordType::DNSKEY, RecordType::CDS, RecordType::CDNSKEY]
        .iter()
        .any(|k| u16::from(*k) == t)
}

/// A name from lower-case wire format.
pub fn name_from_wire(wire: &[u8]) -> Option<Name> {
    let mut labels = Vec::new();
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            break;
        }
        labels.push(wire.get(at + 1..at + 1 + len)?);
        at += 1 + len;
    }
    let mut name = Name::from_labels(labels).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// How often the renewal service looks for zones whose signature window has passed.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Re-signs, in every signed zone of the snapshot, the static RRsets whose signatures
/// belong to an earlier window than `now`'s (a quarter of the validity each: they are
/// renewed with three quarters of their life left). Returns how many zones it renewed.
pub fn renew_all(snapshot: &super::Snapshot, now_unix: u64) -> usize {
    snapshot
        .zones
        .values()
        .filter_map(|z| z.wire.zone.dnssec.as_deref())
        .filter(|s| s.renew(now_unix))
        .count()
}

/// The background service that renews signatures on a timer (queries renew a zone
/// too, if they reach it first), so zones nobody asked for stay fresh and no query
/// pays for a whole zone's signatures.
pub fn spawn_renewal(cell: Arc<super::SnapshotCell>) -> std::io::Result<crate::service::ServiceHandle> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    crate::service::ServiceHandle::spawn(
        "dnssec-renew",
        move || drop(stop_tx),
        move || {
            crate::os::lower_thread_priority();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(RENEW_EVERY) {
                let renewed = renew_all(&cell.load(), crate::dnssec::unix_now());
                if renewed > 0 {
                    tracing::info!(zones = renewed, "DNSSEC signatures renewed");
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::snapshot::serials::SerialBook;
    use crate::snapshot::{Builder, ServerIdentity};

    fn signed_snapshot(dir: &Path, now: u64) -> super::super::Snapshot {
        let config = DnssecConfig {
            enabled: true,
            ..DnssecConfig::default()
        };
        let signing = Signing::open(&config, dir).unwrap();
        let text = "domain = \"example.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n";
        let policy = crate::policy::parse(&SourceFile::new("/p/example.toml", text))
            .unwrap()
            .policy;
        let mut builder = Builder::new().with_dnssec(signing);
        builder.add(Arc::new(policy), None).unwrap();
        let servers = ServerIdentity {
            nameservers: vec![Name::from_ascii("ns1.spfd.test.").unwrap()],
            hostmaster: Name::from_ascii("hostmaster.spfd.test.").unwrap(),
        };
        builder.finish(1, &servers, &mut SerialBook::default(), now)
    }

    #[test]
    fn whole_zones_stay_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let zone_file = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n\
                         @ NS ns1\nns1 A 192.0.2.53\nsub NS ns.other.test.\nwww CNAME ns1\n";
        std::fs::write(dir.path().join("example.test.zone"), zone_file).unwrap();
        let path = dir.path().join("example.toml");
        std::fs::write(
            &path,
            "domain = \"example.test\"\nzone = \"example.test\"\nzone_file = \"example.test.zone\"\n\
             [spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
        )
        .unwrap();
        let policy = crate::policy::load(&path).unwrap().policy;
        assert!(policy.zone_data.is_some());
        let config = DnssecConfig {
            enabled: true,
            ..DnssecConfig::default()
        };
        let signing = Signing::open(&config, &dir.path().join("state")).unwrap();
        let unsigned = signing.as_ref().unwrap().keys_for(&policy).is_none();
        assert!(unsigned, "a zone file's zone is not signed");
        let mut builder = Builder::new().with_dnssec(signing);
        builder.add(Arc::new(policy), None).unwrap();
        let servers = ServerIdentity {
            nameservers: vec![Name::from_ascii("ns1.spfd.test.").unwrap()],
            hostmaster: Name::from_ascii("hostmaster.spfd.test.").unwrap(),
        };
        let snapshot = builder.finish(1, &servers, &mut SerialBook::default(), 1_700_000_000);
        let zone = snapshot.zones.values().next().unwrap();
        assert!(zone.wire.zone.dnssec.is_none());
        let sets = zone.sets_at(&wire_name(&zone.apex)).unwrap();
        assert!(sets.iter().all(|(t, _)| *t != u16::from(RecordType::DNSKEY)));
    }

    #[test]
    fn the_apex_publishes_the_keys_and_renewal_follows_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let snapshot = signed_snapshot(dir.path(), t0);
        let zone = snapshot.zones.values().next().unwrap();
        let apex = wire_name(&zone.apex);
        let sets = zone.sets_at(&apex).unwrap();
        for t in [
            RecordType::SOA,
            RecordType::NS,
            RecordType::TXT,
            RecordType::DNSKEY,
            RecordType::CDS,
            RecordType::CDNSKEY,
        ] {
            assert!(sets.iter().any(|(s, _)| *s == u16::from(t)), "{t} at the apex");
        }
        let signed = zone.wire.zone.dnssec.as_ref().unwrap();
        let first = signed.signatures(&apex, 16, t0).unwrap();
        assert_eq!(renew_all(&snapshot, t0 + 3600), 0, "same window: nothing to do");
        let expiration = u64::from(first[0].input().sig_expiration.get());
        // Three quarters of the validity before expiry, the next window has begun.
        let later = expiration - 10 * 86400 + 1;
        assert_eq!(renew_all(&snapshot, later), 1);
        let renewed = signed.signatures(&apex, 16, later).unwrap();
        assert!(u64::from(renewed[0].input().sig_expiration.get()) > expiration);
        assert!(u64::from(renewed[0].input().sig_inception.get()) <= later - crate::dnssec::INCEPTION_SKEW);
    }
}
