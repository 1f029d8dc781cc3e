//! DNSSEC signing: one combined signing key (CSK) per zone kept in `state_dir/keys/`
//! ([`keys`]), RRSIGs over RRsets prepared once in canonical form ([`sign`]), compact
//! denial of existence (RFC 9824) for negative answers ([`denial`]), and the cache of
//! signatures made on demand that every zone shares under one byte budget ([`cache`]).
//!
//! This module knows records and keys only, not the snapshot: the snapshot hands it
//! RRsets when a zone is built, and the query path asks it for signatures.
//!
//! Time: signatures are made for aligned windows ([`Window`]), so identical answers
//! carry identical signatures (and stay cacheable) until the next window starts.

pub mod cache;
pub mod denial;
pub mod keys;
pub mod sign;

pub use cache::{CacheStats, SigCache};
pub use keys::{KeyAlgorithm, KeyError, KeyStore, ZoneKey, ZoneKeys};
pub use sign::{Prepared, SignedZone, Signer};

/// The RRSIGs over one RRset, one per key of the zone.
pub type Signatures = std::sync::Arc<[hickory_proto::dnssec::rdata::RRSIG]>;

/// RFC 9824: the NXNAME meta type, in the type bitmap of a compact-denial NSEC for a
/// name that does not exist (hickory 0.26 has no constant for it).
pub const TYPE_NXNAME: u16 = 128;

/// Inception is set back this far, for validators whose clocks are behind.
pub const INCEPTION_SKEW: u64 = 3600;

/// The shortest `signature_validity` accepted: a window (a quarter of it) must leave
/// signatures valid well past the time a resolver caches them.
pub const MIN_VALIDITY: u64 = 4 * 3600;

/// The signature window `now` falls in: signatures are made at the window's start and
/// replaced when the next one starts, a quarter of the validity later, so a signature
/// served is always valid for at least three quarters of `validity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub index: u64,
    pub inception: u32,
    pub expiration: u32,
}

impl Window {
    pub fn at(now_unix: u64, validity_secs: u64) -> Window {
        let step = (validity_secs / 4).max(1);
        let index = now_unix / step;
        let start = index * step;
        Window {
            index,
            inception: start.saturating_sub(INCEPTION_SKEW) as u32,
            expiration: (start + validity_secs) as u32,
        }
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_always_leave_three_quarters_of_the_validity() {
        let validity = 14 * 86400;
        let a = Window::at(1_700_000_000, validity);
        let b = Window::at(1_700_000_000 + 60, validity);
        assert_eq!(a, b, "answers a minute apart carry the same signature times");
        for now in [1_700_000_000u64, 1_700_302_399, 1_700_302_400] {
            let w = Window::at(now, validity);
            assert!(u64::from(w.inception) + INCEPTION_SKEW <= now);
            assert!(u64::from(w.expiration) >= now + validity * 3 / 4);
        }
        let next = Window::at(u64::from(a.expiration) - validity * 3 / 4 + 1, validity);
        assert_ne!(next.index, a.index);
    }
}
