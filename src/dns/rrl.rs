//! Response rate limiting over UDP, in the style of NSD and Knot RRL: answers to one
//! source prefix (a /24 for IPv4, a /56 for IPv6) of one answer class ([`Class`]: the
//! same question; names that do not exist in one zone; NODATA in one zone; errors) are
//! limited to `responses_per_second` by a token bucket. Past the limit every `slip`-th
//! answer is sent truncated (TC, no records: a real resolver asks again over TCP, which
//! is never limited) and the others are dropped, so spfd is no use as an amplifier with
//! forged sources.
//!
//! Signed denials (RFC 9824 compact denial answers NOERROR for a name that does not
//! exist) are classed by what they deny, not by their response code, so random names
//! asked with DO=1 are limited as NXDOMAIN is; and answers that carry signatures made
//! on demand are checked before they are signed, so an answer not sent costs no
//! signature.
//!
//! The cost below the limit is one hash of the question and one look into a table
//! that each UDP worker owns: nothing is shared, locked or allocated per query; shared
//! counters are touched only for answers that are limited.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipnet::IpNet;

use super::scan::{question_end, skip_name};

/// The labels macro mode's per-address names are under (`snapshot::macro_table`'s; not
/// imported, so that the config, which holds [`RrlConfig`], does not depend on the
/// snapshot through this module).
const V4_LABEL: &[u8] = b"in-addr";
const V6_LABEL: &[u8] = b"ip6";

/// RRL settings (`[server.rrl]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RrlConfig {
    /// Off switch; on by default, as in NSD.
    pub enabled: bool,
    /// Answers per second per source prefix and answer class (NSD's default, 200).
    pub responses_per_second: u32,
    /// Every `slip`-th limited answer is sent truncated, the rest dropped; 0 drops all,
    /// 1 truncates all.
    pub slip: u32,
    pub ipv4_prefix_length: u8,
    pub ipv6_prefix_length: u8,
    /// Sources never limited (monitoring, your own resolvers). By default loopback:
    /// the kernel drops packets from the network that claim a loopback source, so
    /// answers to it cannot be reflected at anyone, and local checks and load tests
    /// are not limited.
    pub whitelist: Vec<IpNet>,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            enabled: true,
            responses_per_second: 200,
            slip: 2,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
            whitelist: ["127.0.0.0/8", "::1/128"]
                .iter()
                .map(|net| net.parse().expect("a prefix"))
                .collect(),
        }
    }
}

/// Counts of limited answers, shared by every worker (for a metrics endpoint).
#[derive(Debug, Default)]
pub struct RrlCounters {
    dropped: AtomicU64,
    slipped: AtomicU64,
}

/// A reading of [`RrlCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RrlStats {
    /// Answers not sent.
    pub dropped: u64,
    /// Answers sent truncated instead.
    pub slipped: u64,
}

impl RrlCounters {
    pub fn read(&self) -> RrlStats {
        RrlStats {
            dropped: self.dropped.load(Ordering::Relaxed),
            slipped: self.slipped.load(Ordering::Relaxed),
        }
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated ([`slip`]).
    Slip,
    Drop,
}

/// Buckets per worker: 16 octets each, 1 MiB. A bucket is found by its hash alone; a
/// colliding source takes the slot over with a full bucket (as NSD's table does).
const BUCKETS: usize = 1 << 16;
/// Token amounts are in thousandths of an answer, time in milliseconds.
const MILLI: u64 = 1000;

#[derive(Clone, Copy, Default)]
struct Bucket {
    key: u64,
    tokens: u32,
    last_ms: u32,
}

/// One UDP worker's limiter.
pub struct Limiter {
    config: Arc<RrlConfig>,
    counters: Arc<RrlCounters>,
    buckets: Box<[Bucket]>,
    epoch: Instant,
    /// Milliseconds since `epoch`, read once per batch.
    now_ms: u32,
    /// Limited answers so far, for the slip ratio.
    limited: u64,
}

impl Limiter {
    pub fn new(config: Arc<RrlConfig>, counters: Arc<RrlCounters>) -> Limiter {
        Limiter {
            config,
            counters,
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            epoch: Instant::now(),
            now_ms: 0,
            limited: 0,
        }
    }

    /// Reads the clock; called once per batch of datagrams.
    pub fn tick(&mut self) {
        self.now_ms = self.epoch.elapsed().as_millis() as u32;
    }

    /// Decides whether `response`, about to go to `src`, is sent.
    pub fn check(&mut self, src: IpAddr, response: &[u8]) -> Verdict {
        self.check_hash(src, class_hash(response))
    }

    /// Decides whether an answer of `class` to `src` is sent, before it is made (so
    /// that one not sent costs no signature).
    pub fn check_class(&mut self, src: IpAddr, class: Class<'_>) -> Verdict {
        self.check_hash(src, class.hash())
    }

    /// Applies the verdict to a response about to go to `src`: left whole, truncated
    /// ([`slip`]) or emptied (nothing is sent).
    pub fn apply(&mut self, src: IpAddr, response: &mut Vec<u8>) {
        match self.check(src, response) {
            Verdict::Send => {}
            Verdict::Slip => slip(response),
            Verdict::Drop => response.clear(),
        }
    }

    fn check_hash(&mut self, src: IpAddr, class: u64) -> Verdict {
        let key = self.key(src, class);
        let rate = u64::from(self.config.responses_per_second);
        let full = rate * MILLI;
        let bucket = &mut self.buckets[key as usize & (BUCKETS - 1)];
        let tokens = if bucket.key == key {
            // At most one second's worth: the burst a bucket allows.
            let elapsed = u64::from(self.now_ms.wrapping_sub(bucket.last_ms)).min(MILLI);
            (u64::from(bucket.tokens) + elapsed * rate).min(full)
        } else {
            full
        };
        bucket.key = key;
        bucket.last_ms = self.now_ms;
        if tokens >= MILLI {
            bucket.tokens = (tokens - MILLI) as u32;
            return Verdict::Send;
        }
        bucket.tokens = tokens as u32;
        self.limited(src)
    }

    /// The verdict for an answer over the limit.
    fn limited(&mut self, src: IpAddr) -> Verdict {
        if self.config.whitelist.iter().any(|net| net.contains(&src)) {
            return Verdict::Send;
        }
        self.limited += 1;
        let slip = u64::from(self.config.slip);
        if slip > 0 && self.limited.is_multiple_of(slip) {
            self.counters.slipped.fetch_add(1, Ordering::Relaxed);
            Verdict::Slip
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        }
    }

    /// The bucket key: the source prefix and the answer class (never 0, which marks an
    /// empty bucket).
    fn key(&self, src: IpAddr, class: u64) -> u64 {
        let prefix = match src {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & mask32(self.config.ipv4_prefix_length);
                u128::from(bits)
            }
            IpAddr::V6(v6) => (u128::from(v6) & mask128(self.config.ipv6_prefix_length)) | 1,
        };
        let mut h = mix(0x5bd1_e995, prefix as u64);
        h = mix(h, (prefix >> 64) as u64);
        mix(h, class) | 1
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0)
}

/// What an answer counts as: answers to one source prefix are limited per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class<'a> {
    /// A positive answer or a referral: by the question as in the message (name, type
    /// and class; macro mode's per-address names by the `in-addr`/`ip6` name they are
    /// under, as NSD counts a wildcard's answers by the wildcard).
    Question(&'a [u8]),
    /// A name that does not exist (NXDOMAIN, or a compact denial with NXNAME in its
    /// NSEC): by the zone, its apex in wire format, so that random names are one class
    /// (BIND's and Knot's "imputed name").
    NxDomain(&'a [u8]),
    /// No records of the type asked (NODATA, plain or compact denial): by the zone too.
    NoData(&'a [u8]),
    /// Every other response code (REFUSED, FORMERR, NOTIMP, BADVERS...), as one class.
    Error,
}

impl Class<'_> {
    fn hash(&self) -> u64 {
        match self {
            Class::Question(question) => hash_lower(1, &question[per_address_parent(question)..]),
            Class::NxDomain(zone) => hash_lower(2, zone),
            Class::Error => 3,
            Class::NoData(zone) => hash_lower(5, zone),
        }
    }
}

/// The class of a response as it is sent: NXDOMAIN and NODATA (no answers, an SOA
/// first in authority) by the SOA's owner. A compact denial is classed before it is
/// signed and sent, from its records ([`Limiter::check_class`]); its bytes would read
/// as NODATA here.
fn class_hash(response: &[u8]) -> u64 {
    let rcode = response.get(3).map_or(0xff, |b| b & 0x0f);
    let Some(end) = question_end(response) else {
        return Class::Error.hash();
    };
    let question = &response[HEADER..end];
    let mut zone = [0u8; 255];
    let class = match rcode {
        0 => match first_authority(response, end, &mut zone) {
            Some((zone, TYPE_SOA)) if answer_count(response) == 0 => Class::NoData(zone),
            _ => Class::Question(question),
        },
        3 => {
            first_authority(response, end, &mut zone).map_or(Class::Error, |(zone, _)| Class::NxDomain(zone))
        }
        _ => Class::Error,
    };
    class.hash()
}

const HEADER: usize = 12;
const TYPE_SOA: u16 = 6;
/// Compression pointers followed in one name (each must point backwards).
const MAX_POINTERS: usize = 8;

fn answer_count(response: &[u8]) -> u16 {
    u16::from_be_bytes([response[6], response[7]])
}

/// Where the question name's `in-addr` or `ip6` label starts (any case), so that every
/// per-address name of a macro-mode zone falls in one class; the start of the name
/// otherwise.
fn per_address_parent(question: &[u8]) -> usize {
    let mut at = 0;
    while let Some(&len) = question.get(at) {
        let len = usize::from(len);
        let label = question.get(at + 1..at + 1 + len).unwrap_or_default();
        if label.eq_ignore_ascii_case(V4_LABEL) || label.eq_ignore_ascii_case(V6_LABEL) {
            return at;
        }
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        at += 1 + len;
    }
    0
}

/// The owner (copied into `out`, pointers followed) and type of the first authority
/// record: the one after the question and the answers.
fn first_authority<'o>(
    response: &[u8],
    question_end: usize,
    out: &'o mut [u8; 255],
) -> Option<(&'o [u8], u16)> {
    let mut at = question_end;
    for _ in 0..answer_count(response) {
        let fixed = skip_name(response, at)?;
        let rdlen = response.get(fixed + 8..fixed + 10)?;
        at = fixed + 10 + usize::from(u16::from_be_bytes([rdlen[0], rdlen[1]]));
    }
    let fixed = skip_name(response, at)?;
    let rtype = response.get(fixed..fixed + 2)?;
    let len = read_name(response, at, out)?;
    Some((&out[..len], u16::from_be_bytes([rtype[0], rtype[1]])))
}

/// Copies the name at `at` into `out` in wire format without pointers; its length.
fn read_name(message: &[u8], mut at: usize, out: &mut [u8; 255]) -> Option<usize> {
    let mut len = 0;
    let mut pointers = 0;
    loop {
        let label = *message.get(at)?;
        if label & 0xc0 == 0xc0 {
            let target = usize::from(u16::from_be_bytes([label, *message.get(at + 1)?]) & 0x3fff);
            pointers += 1;
            if pointers > MAX_POINTERS || target >= at {
                return None;
            }
            at = target;
            continue;
        }
        if label & 0xc0 != 0 {
            return None;
        }
        let end = len + 1 + usize::from(label);
        out.get_mut(len..end)?
            .copy_from_slice(message.get(at..at + 1 + usize::from(label))?);
        len = end;
        at += 1 + usize::from(label);
        if label == 0 {
            return Some(len);
        }
    }
}

/// A hash of `bytes` with ASCII letters folded to lower case (every octet has its 0x20
/// bit set: some non-letters fold together too, which only makes a class coarser).
fn hash_lower(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 octets"));
        h = mix(h, word | 0x2020_2020_2020_2020);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h, u64::from_le_bytes(last) | 0x2020_2020_2020_2020)
}

fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(26) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Rewrites a response into its truncated form: the header with TC and no records, the
/// question, and the OPT when the response ends with one.
pub fn slip(response: &mut Vec<u8>) {
    let Some(end) = question_end(response) else {
        return;
    };
    let arcount = u16::from_be_bytes([response[10], response[11]]);
    let opt_at = response.len().wrapping_sub(11);
    let ends_with_opt = arcount >= 1
        && response.len() >= end + 11
        && response[opt_at] == 0
        && response[opt_at + 1..opt_at + 3] == [0, 41]
        && response[response.len() - 2..] == [0, 0];
    let opt: Option<[u8; 11]> = ends_with_opt.then(|| response[opt_at..].try_into().expect("11 octets"));
    response.truncate(end);
    response[2] |= 0x02;
    response[6..12].fill(0);
    if let Some(opt) = opt {
        response[11] = 1;
        response.extend_from_slice(&opt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY_NAME: &[u8] = b"\x04_spf\x07example\x04test\x00";

    /// A response: `rcode`, the question `_spf.example.test TXT`, and for NXDOMAIN an
    /// SOA owner pointing at `example.test` in the question.
    fn response(rcode: u8, name: &[u8]) -> Vec<u8> {
        let mut r = vec![0x12, 0x34, 0x84, rcode, 0, 1, 0, 0, 0, u8::from(rcode == 3), 0, 1];
        r.extend_from_slice(name);
        r.extend_from_slice(&[0, 16, 0, 1]);
        if rcode == 3 {
            // The SOA owner: a pointer past the question's first label.
            let zone = 12 + 1 + name[0];
            r.extend_from_slice(&[0xc0, zone, 0, 6, 0, 1, 0, 0, 0, 60, 0, 0]);
        }
        r.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        r
    }

    /// A NODATA response: no answers, the SOA (owner a pointer past the question's
    /// first label) in authority.
    fn nodata(name: &[u8]) -> Vec<u8> {
        let mut r = response(3, name);
        r[3] = 0;
        r
    }

    #[test]
    fn sent_answers_and_answers_not_yet_made_are_classed_alike() {
        let zone: &[u8] = b"\x07example\x04test\x00";
        let nx = response(3, b"\x06random\x07example\x04test\x00");
        assert_eq!(class_hash(&nx), Class::NxDomain(zone).hash());
        let nodata1 = nodata(b"\x04_spf\x07example\x04test\x00");
        let nodata2 = nodata(b"\x06_dmarc\x07EXAMPLE\x04test\x00");
        assert_eq!(class_hash(&nodata1), Class::NoData(zone).hash());
        assert_eq!(class_hash(&nodata2), Class::NoData(zone).hash());
        assert_ne!(Class::NoData(zone).hash(), Class::NxDomain(zone).hash());
        let answer = response(0, QUERY_NAME);
        let question = [QUERY_NAME, &[0, 16, 0, 1]].concat();
        assert_eq!(class_hash(&answer), Class::Question(&question).hash());
        // An answer record before the authority is skipped; a NOERROR answer with
        // records is classed by its question, whatever follows.
        let mut with_answer = nodata1.clone();
        with_answer[7] = 1;
        let end = 12 + QUERY_NAME.len() + 4;
        with_answer.splice(end..end, [0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 1, 0x41]);
        let mut out = [0; 255];
        assert_eq!(
            first_authority(&with_answer, end, &mut out),
            Some((zone, TYPE_SOA))
        );
        assert_eq!(class_hash(&with_answer), Class::Question(&question).hash());
        // A pointer that does not point backwards is not followed.
        let mut looped = nx.clone();
        let at = looped.len() - 12 - 11;
        looped[at + 1] = at as u8;
        assert_eq!(class_hash(&looped), Class::Error.hash());
    }

    fn limiter(rate: u32, slip: u32) -> Limiter {
        let config = RrlConfig {
            responses_per_second: rate,
            slip,
            whitelist: vec!["198.51.100.0/24".parse().unwrap()],
            ..RrlConfig::default()
        };
        Limiter::new(Arc::new(config), Arc::new(RrlCounters::default()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn verdicts(l: &mut Limiter, src: &str, r: &[u8], n: usize) -> Vec<Verdict> {
        (0..n).map(|_| l.check(ip(src), r)).collect()
    }

    #[test]
    fn a_bucket_allows_the_rate_then_slips_every_second_answer() {
        let mut l = limiter(10, 2);
        let r = response(0, QUERY_NAME);
        assert!(
            verdicts(&mut l, "192.0.2.1", &r, 10)
                .iter()
                .all(|v| *v == Verdict::Send)
        );
        let over = verdicts(&mut l, "192.0.2.200", &r, 4);
        assert_eq!(
            over,
            [Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip],
            "one /24"
        );
        assert_eq!(
            l.counters.read(),
            RrlStats {
                dropped: 2,
                slipped: 2
            }
        );
        // Half a second refills five answers.
        l.now_ms += 500;
        assert_eq!(
            verdicts(&mut l, "192.0.2.1", &r, 6)
                .iter()
                .filter(|v| **v == Verdict::Send)
                .count(),
            5
        );
    }

    #[test]
    fn prefixes_classes_and_the_whitelist_are_apart() {
        let mut l = limiter(2, 0);
        let answer = response(0, QUERY_NAME);
        let other = response(0, b"\x05_SPF2\x07example\x04test\x00");
        let nx = response(3, b"\x01x\x07example\x04test\x00");
        let nx_same_zone = response(3, b"\x01y\x07Example\x04test\x00");
        for (src, r) in [
            ("192.0.2.1", &answer),
            ("192.0.3.1", &answer),
            ("192.0.2.1", &other),
            ("192.0.2.1", &nx),
        ] {
            assert_eq!(verdicts(&mut l, src, r, 2), [Verdict::Send; 2], "{src}");
        }
        // The question ends before the SOA's 12 octets and the OPT's 11.
        let end = nx_same_zone.len() - 12 - 11;
        let mut zone = [0; 255];
        assert_eq!(
            first_authority(&nx_same_zone, end, &mut zone),
            Some((&b"\x07Example\x04test\x00"[..], TYPE_SOA))
        );
        // Case folded; NXDOMAIN counted per zone; slip 0 drops everything.
        let upper = response(0, b"\x04_SPF\x07EXAMPLE\x04test\x00");
        assert_eq!(l.check(ip("192.0.2.9"), &upper), Verdict::Drop);
        assert_eq!(l.check(ip("192.0.2.9"), &nx_same_zone), Verdict::Drop);
        assert_eq!(verdicts(&mut l, "198.51.100.7", &answer, 5), [Verdict::Send; 5]);
        // Macro mode's per-address names are one class.
        let addr1 = response(0, b"\x015\x012\x010\x03192\x07in-addr\x04_spf\x01m\x04test\x00");
        let addr2 = response(0, b"\x016\x012\x010\x03192\x07IN-ADDR\x04_spf\x01m\x04test\x00");
        assert_eq!(l.check(ip("203.0.113.1"), &addr1), Verdict::Send);
        assert_eq!(l.check(ip("203.0.113.1"), &addr2), Verdict::Send);
        assert_eq!(l.check(ip("203.0.113.1"), &addr1), Verdict::Drop);
        // One IPv6 /56.
        assert_eq!(
            verdicts(&mut l, "2001:db8:0:1::1", &answer, 2),
            [Verdict::Send; 2]
        );
        assert_eq!(l.check(ip("2001:db8:0:ff::2"), &answer), Verdict::Drop);
        assert_eq!(l.check(ip("2001:db8:0:100::2"), &answer), Verdict::Send);
    }

    #[test]
    fn a_slipped_answer_is_the_question_with_tc_and_the_opt() {
        let mut r = response(0, QUERY_NAME);
        r[7] = 1;
        r.splice(
            r.len() - 11..r.len() - 11,
            [0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 1, 0x41],
        );
        let question_end = 12 + QUERY_NAME.len() + 4;
        slip(&mut r);
        assert_eq!(r.len(), question_end + 11);
        assert_eq!(r[2] & 0x02, 0x02, "TC");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&r[question_end..question_end + 3], &[0, 0, 41]);
    }
}
