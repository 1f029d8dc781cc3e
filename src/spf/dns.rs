//! The DNS the SPF evaluator asks: a trait so the same evaluator runs against a
//! real resolver (`spfd explain`) or in-memory data (tests, flattening checks).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::macros::dotted_ip;

/// Why a lookup gave no records. RFC 7208 treats the first two as "no match" (and
/// counts them as void lookups, 4.6.4) and the third as temperror (5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// RCODE 3: the name does not exist.
    #[error("NXDOMAIN: the name does not exist")]
    NxDomain,
    /// NOERROR with no answer of the asked type.
    #[error("no records of the asked type (NODATA)")]
    NoData,
    /// Timeout, SERVFAIL or any other failure that may pass.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

/// Lookups of one name and type. Names are given without a trailing dot, in the
/// case they were written or expanded; implementations compare them as DNS does
/// (case-insensitively) and follow CNAMEs. An `Ok` with no records is read as
/// [`LookupError::NoData`].
pub trait DnsLookup: Sync {
    /// TXT records, one string per record: its character-strings joined with no
    /// separator (RFC 7208 3.3). Bytes that are not UTF-8 may be replaced with
    /// U+FFFD: SPF text is ASCII, so such a record is invalid either way.
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<String>, LookupError>> + Send;
    fn a(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv4Addr>, LookupError>> + Send;
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv6Addr>, LookupError>> + Send;
    /// The exchange names of the MX records, in the order of the answer. The null MX
    /// (RFC 7505) is the empty name or `.`.
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<String>, LookupError>> + Send;
    /// PTR records of a reverse name such as `4.3.2.1.in-addr.arpa`
    /// (see [`reverse_name`]).
    fn ptr(&self, name: &str) -> impl Future<Output = Result<Vec<String>, LookupError>> + Send;
}

/// The name under `in-addr.arpa` or `ip6.arpa` whose PTR records name `ip`.
pub fn reverse_name(ip: IpAddr) -> String {
    let forward = dotted_ip(ip);
    let mut labels: Vec<&str> = forward.split('.').collect();
    labels.reverse();
    let suffix = if ip.is_ipv4() { "in-addr.arpa" } else { "ip6.arpa" };
    format!("{}.{suffix}", labels.join("."))
}

/// The addresses of `name` in the family of `like` (A for IPv4, AAAA for IPv6).
pub(super) async fn addresses<D: DnsLookup>(
    dns: &D,
    name: &str,
    like: IpAddr,
) -> Result<Vec<IpAddr>, LookupError> {
    let found: Vec<IpAddr> = match like {
        IpAddr::V4(_) => dns.a(name).await?.into_iter().map(IpAddr::V4).collect(),
        IpAddr::V6(_) => dns.aaaa(name).await?.into_iter().map(IpAddr::V6).collect(),
    };
    non_empty(found)
}

/// `Ok(empty)` read as NODATA, so callers see one shape for "nothing there".
pub(super) fn non_empty<T>(records: Vec<T>) -> Result<Vec<T>, LookupError> {
    if records.is_empty() {
        Err(LookupError::NoData)
    } else {
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let cases = [
            ("192.0.2.3", "3.2.0.192.in-addr.arpa"),
            (
                "2001:db8::cb01",
                "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            ),
        ];
        for (ip, name) in cases {
            assert_eq!(reverse_name(ip.parse().unwrap()), name);
        }
    }

    #[test]
    fn empty_answers_are_nodata() {
        assert_eq!(non_empty::<u8>(vec![]), Err(LookupError::NoData));
        assert_eq!(non_empty(vec![1]), Ok(vec![1]));
    }
}
