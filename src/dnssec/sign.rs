//! RRSIGs: an RRset is put in the canonical form signatures cover (RFC 4034 6) once,
//! when its zone is built ([`Prepared`]); signing it for a window is then one signature
//! per key over a few copied bytes. A [`SignedZone`] holds a zone's static RRsets and
//! their signatures, renews them when a new window starts (no rebuild of the zone), and
//! signs what is synthesised per query through the cache every zone shares.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::dnssec::TBS;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG, SigInput};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::BinEncodable;
use rustc_hash::FxHashMap;
use tracing::warn;

use super::cache::{CacheKey, SigCache};
use super::keys::ZoneKeys;
use super::{Signatures, Window};

/// An RRset in the form signatures cover: owner (lower case), type, original TTL, and
/// its records as `name | type | class | TTL | length | data`, in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub owner: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    rrs: Box<[u8]>,
}

impl Prepared {
    /// `records` are one RRset (same owner, type and class IN); `None` when it does not
    /// encode (a bug: that RRset is then served unsigned, and logged).
    pub fn new(records: &[Record]) -> Option<Prepared> {
        let first = records.first()?;
        let owner = first.name.to_lowercase();
        let rtype = first.record_type();
        let ttl = first.ttl;
        // The header hickory puts in front is 18 octets plus the signer's name; with the
        // root as signer name that is 19, cut off below.
        let input = input_for(
            &owner,
            rtype,
            ttl,
            0,
            Name::root(),
            Window::default_zero(),
            hickory_proto::dnssec::Algorithm::ECDSAP256SHA256,
        );
        let tbs = TBS::from_input(&owner, DNSClass::IN, &input, records.iter())
            .map_err(|e| warn!(%owner, %rtype, "cannot prepare an RRset for signing: {e}"))
            .ok()?;
        Some(Prepared {
            owner,
            rtype,
            ttl,
            rrs: Box::from(&tbs.as_ref()[19..]),
        })
    }
}

impl Window {
    fn default_zero() -> Window {
        Window {
            index: 0,
            inception: 0,
            expiration: 0,
        }
    }
}

fn input_for(
    owner: &Name,
    rtype: RecordType,
    ttl: u32,
    tag: u16,
    signer: Name,
    window: Window,
    algorithm: hickory_proto::dnssec::Algorithm,
) -> SigInput {
    SigInput {
        type_covered: rtype,
        algorithm,
        num_labels: owner.num_labels(),
        original_ttl: ttl,
        sig_expiration: SerialNumber::new(window.expiration),
        sig_inception: SerialNumber::new(window.inception),
        key_tag: tag,
        signer_name: signer,
    }
}

/// A zone's keys and signature validity.
#[derive(Debug, Clone)]
pub struct Signer {
    pub keys: Arc<ZoneKeys>,
    /// `signature_validity` in seconds.
    pub validity: u64,
}

impl Signer {
    pub fn window(&self, now_unix: u64) -> Window {
        Window::at(now_unix, self.validity)
    }

    /// One RRSIG per key over `set` for `window`; `None` if a key fails to sign.
    pub fn sign(&self, set: &Prepared, window: Window) -> Option<Signatures> {
        let mut out = Vec::with_capacity(self.keys.keys.len());
        for key in &self.keys.keys {
            let input = input_for(
                &set.owner,
                set.rtype,
                set.ttl,
                key.tag,
                self.keys.apex.clone(),
                window,
                key.algorithm.dns(),
            );
            let mut data = input.to_bytes().ok()?;
            data.extend_from_slice(&set.rrs);
            match key.signing.sign(&TBS::from(data.as_slice())) {
                Ok(sig) => out.push(RRSIG::from_sig(input, sig)),
                Err(e) => {
                    warn!(owner = %set.owner, tag = key.tag, "signing failed: {e}");
                    return None;
                }
            }
        }
        Some(Arc::from(out))
    }
}

/// The static RRsets' signatures for one window.
#[derive(Debug)]
struct Signed {
    window: u64,
    /// By index into [`SignedZone::sets`]; `None` where signing failed.
    sigs: Box<[Option<Signatures>]>,
    /// The same as answer-section bytes, for the UDP fast path.
    wire: Box<[Option<Arc<WireSigs>>]>,
}

impl Signed {
    fn new(window: u64, sigs: Box<[Option<Signatures>]>, sets: &[Prepared]) -> Signed {
        let wire = sigs
            .iter()
            .zip(sets)
            .map(|(sigs, set)| sigs.as_ref().and_then(|s| WireSigs::encode(s, set.ttl)))
            .collect();
        Signed { window, sigs, wire }
    }
}

/// The RRSIGs of a static RRset as answer-section bytes, each owner a pointer to the
/// question (offset 12), as the fast path writes every answer.
#[derive(Debug)]
pub struct WireSigs {
    pub count: u16,
    pub bytes: Box<[u8]>,
}

impl WireSigs {
    fn encode(sigs: &Signatures, ttl: u32) -> Option<Arc<WireSigs>> {
        let mut bytes = Vec::new();
        for sig in sigs.iter() {
            let rdata = RData::DNSSEC(DNSSECRData::RRSIG(sig.clone())).to_bytes().ok()?;
            bytes.extend_from_slice(&[0xc0, 0x0c]);
            bytes.extend_from_slice(&u16::from(RecordType::RRSIG).to_be_bytes());
            bytes.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
            bytes.extend_from_slice(&ttl.to_be_bytes());
            bytes.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
            bytes.extend_from_slice(&rdata);
        }
        Some(Arc::new(WireSigs {
            count: u16::try_from(sigs.len()).ok()?,
            bytes: bytes.into_boxed_slice(),
        }))
    }
}

/// A zone's signing state, kept with the zone's wire data in the snapshot.
#[derive(Debug)]
pub struct SignedZone {
    pub signer: Signer,
    sets: Box<[Prepared]>,
    /// By owner (lower-case wire format): each type there and its index in `sets`.
    index: FxHashMap<Box<[u8]>, Vec<(u16, usize)>>,
    signed: ArcSwap<Signed>,
    /// One renewal at a time; queries meanwhile use the signatures still in place.
    renewing: Mutex<()>,
    /// Signatures made on demand, in the cache every signed zone shares, under this
    /// zone's own id (new for each build: what an older build signed is never found).
    cache: Arc<SigCache>,
    cache_zone: u64,
}

impl SignedZone {
    /// Signs `sets` for the window of `now`, reusing `previous`'s signatures of RRsets
    /// that did not change (same records, keys and window); what is signed on demand
    /// goes to `cache`.
    pub fn new(
        signer: Signer,
        sets: Vec<Prepared>,
        now_unix: u64,
        previous: Option<&SignedZone>,
        cache: Arc<SigCache>,
    ) -> Self {
        let window = signer.window(now_unix);
        let reusable = previous.filter(|p| p.signer.keys.tags() == signer.keys.tags());
        let old = reusable
            .map(|p| p.signed.load_full())
            .filter(|s| s.window == window.index);
        let sigs = sets
            .iter()
            .map(|set| {
                let kept = old.as_ref().zip(reusable).and_then(|(old, p)| {
                    let i = p.find(&lower_wire(&set.owner), u16::from(set.rtype))?;
                    (p.sets[i] == *set).then(|| old.sigs[i].clone()).flatten()
                });
                kept.or_else(|| signer.sign(set, window))
            })
            .collect();
        let mut index: FxHashMap<Box<[u8]>, Vec<(u16, usize)>> = FxHashMap::default();
        for (i, set) in sets.iter().enumerate() {
            index
                .entry(lower_wire(&set.owner))
                .or_default()
                .push((u16::from(set.rtype), i));
        }
        let signed = ArcSwap::from_pointee(Signed::new(window.index, sigs, &sets));
        SignedZone {
            signer,
            sets: sets.into_boxed_slice(),
            index,
            signed,
            renewing: Mutex::new(()),
            cache_zone: cache.zone_id(),
            cache,
        }
    }

    /// The signatures of the static RRset at `owner` (lower-case wire format) of type
    /// `rtype`, renewed first if a new window has started.
    pub fn signatures(&self, owner: &[u8], rtype: u16, now_unix: u64) -> Option<Signatures> {
        let i = self.find(owner, rtype)?;
        self.renew(now_unix);
        self.signed.load().sigs[i].clone()
    }

    /// [`SignedZone::signatures`] as answer-section bytes, for the fast path (no
    /// allocation: a shared reference).
    pub fn wire_signatures(&self, owner: &[u8], rtype: u16, now_unix: u64) -> Option<Arc<WireSigs>> {
        let i = self.find(owner, rtype)?;
        let signed = self.signed.load();
        if signed.window == self.signer.window(now_unix).index {
            return signed.wire[i].clone();
        }
        drop(signed);
        self.renew(now_unix);
        self.signed.load().wire[i].clone()
    }

    fn find(&self, owner: &[u8], rtype: u16) -> Option<usize> {
        let types = self.index.get(owner)?;
        types.iter().find(|(t, _)| *t == rtype).map(|(_, i)| *i)
    }

    /// Re-signs every static RRset when `now` is in a later window than their
    /// signatures; true when it did. Called by queries and by the renewal timer.
    pub fn renew(&self, now_unix: u64) -> bool {
        let window = self.signer.window(now_unix);
        if self.signed.load().window == window.index {
            return false;
        }
        let _one = self.renewing.lock().unwrap_or_else(|e| e.into_inner());
        if self.signed.load().window == window.index {
            return false;
        }
        let sigs = self
            .sets
            .iter()
            .map(|set| self.signer.sign(set, window))
            .collect();
        self.signed
            .store(Arc::new(Signed::new(window.index, sigs, &self.sets)));
        true
    }

    /// Signatures over an RRset made for one query (a macro answer, a denial NSEC),
    /// cached per (owner, type, window).
    pub fn on_demand(&self, records: &[Record], now_unix: u64) -> Option<Signatures> {
        let first = records.first()?;
        let window = self.signer.window(now_unix);
        let key = CacheKey {
            zone: self.cache_zone,
            owner: lower_wire(&first.name),
            rtype: u16::from(first.record_type()),
            window: window.index,
        };
        self.cache
            .get_or_make(key, || self.signer.sign(&Prepared::new(records)?, window))
    }

    /// The on-demand cache (shared by every signed zone).
    pub fn cache(&self) -> &SigCache {
        &self.cache
    }

    pub fn key_tags(&self) -> Vec<u16> {
        self.signer.keys.tags()
    }

    /// The window the static signatures were made for (for tests and status).
    pub fn window_index(&self) -> u64 {
        self.signed.load().window
    }
}

/// A name in lower-case wire format.
pub fn lower_wire(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::{KeyAlgorithm, KeyStore};
    use hickory_proto::dnssec::Verifier;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::TXT;

    fn zone(alg: KeyAlgorithm) -> (tempfile::TempDir, Signer, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), alg).unwrap();
        let apex = Name::from_ascii("example.test.").unwrap();
        let keys = store.keys_for(&apex).unwrap();
        let owner = Name::from_ascii("_SPF.Example.test.").unwrap();
        let records = ["v=spf1 ip4:192.0.2.0/24 -all", "second"]
            .iter()
            .map(|t| Record::from_rdata(owner.clone(), 300, RData::TXT(TXT::new(vec![t.to_string()]))))
            .collect();
        let signer = Signer {
            keys,
            validity: 14 * 86400,
        };
        (dir, signer, records)
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
            let (_dir, signer, records) = zone(alg);
            let set = Prepared::new(&records).unwrap();
            let sigs = signer.sign(&set, signer.window(1_700_000_000)).unwrap();
            assert_eq!(sigs.len(), 1);
            let dnskey = &signer.keys.keys[0].dnskey;
            let owner = Name::from_ascii("_spf.example.test.").unwrap();
            dnskey
                .verify_rrsig(&owner, DNSClass::IN, &sigs[0], records.iter())
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    #[test]
    fn signatures_are_renewed_when_a_window_ends_and_reused_within_one() {
        let (_dir, signer, records) = zone(KeyAlgorithm::EcdsaP256Sha256);
        let t0 = 1_700_000_000;
        let set = Prepared::new(&records).unwrap();
        let owner = lower_wire(&set.owner);
        let cache = Arc::new(SigCache::new(1 << 20));
        let zone = SignedZone::new(signer.clone(), vec![set.clone()], t0, None, cache.clone());
        let first = zone.signatures(&owner, 16, t0).unwrap();
        // ECDSA signatures differ each time: equal bytes mean the same signature.
        assert_eq!(zone.signatures(&owner, 16, t0 + 3600).unwrap(), first);
        let rebuilt = SignedZone::new(signer.clone(), vec![set.clone()], t0 + 60, Some(&zone), cache);
        assert_eq!(
            rebuilt.signatures(&owner, 16, t0 + 60).unwrap(),
            first,
            "unchanged: reused"
        );

        let expiration = first[0].input().sig_expiration.get();
        let later = u64::from(expiration) - 86400;
        let renewed = zone.signatures(&owner, 16, later).unwrap();
        assert_ne!(renewed, first);
        assert!(u64::from(renewed[0].input().sig_expiration.get()) > later + 10 * 86400);
        assert!(u64::from(renewed[0].input().sig_inception.get()) < later);
    }
}
