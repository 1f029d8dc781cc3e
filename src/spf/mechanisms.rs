//! The mechanisms that ask DNS (RFC 7208 5.3 to 5.7): a, mx, ptr, exists, and the
//! validated client name that ptr and `%{p}` share.

use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::dns::{self, DnsLookup, LookupError, non_empty, reverse_name};
use super::eval::Evaluator;
use super::outcome::{Abort, MAX_MX_NAMES, MAX_PTR_NAMES, Match};
use crate::names;

/// True when `client` is within the CIDR length of `addr` (5.6); an address of
/// the other family never matches.
fn in_network(client: IpAddr, addr: IpAddr, cidr4: Option<u8>, cidr6: Option<u8>) -> bool {
    match (client, addr) {
        (IpAddr::V4(c), IpAddr::V4(a)) => {
            Ipv4Net::new(a, cidr4.unwrap_or(32)).is_ok_and(|net| net.contains(&c))
        }
        (IpAddr::V6(c), IpAddr::V6(a)) => {
            Ipv6Net::new(a, cidr6.unwrap_or(128)).is_ok_and(|net| net.contains(&c))
        }
        _ => false,
    }
}

impl<D: DnsLookup> Evaluator<'_, D> {
    fn client(&self) -> IpAddr {
        self.ctx.client_ip
    }

    /// The first lookup of a term: records, or nothing (a void lookup) when the name
    /// does not exist, has none, or cannot be queried (treated as non-existent,
    /// 4.3); a temporary failure is temperror (5).
    async fn first_lookup<T>(
        &mut self,
        what: &str,
        target: &str,
        answer: impl Future<Output = Result<Vec<T>, LookupError>>,
    ) -> Result<Vec<T>, Abort> {
        let answer = if names::is_queryable(target) {
            answer.await.and_then(non_empty)
        } else {
            Err(LookupError::NxDomain)
        };
        match answer {
            Ok(records) => Ok(records),
            Err(e @ LookupError::Temporary(_)) => Err(Abort::temp(&format!("{what} lookup of {target}"), &e)),
            Err(LookupError::NxDomain | LookupError::NoData) => {
                self.note_void()?;
                Ok(Vec::new())
            }
        }
    }

    /// a (5.3): an A (IPv4 client) or AAAA (IPv6 client) record of the target
    /// within the CIDR length.
    pub(super) async fn match_a(
        &mut self,
        target: &str,
        cidr4: Option<u8>,
        cidr6: Option<u8>,
    ) -> Result<Match, Abort> {
        let client = self.client();
        let kind = if client.is_ipv4() { "A" } else { "AAAA" };
        let dns = self.dns;
        let found = self
            .first_lookup(kind, target, dns::addresses(dns, target, client))
            .await?;
        Ok(found.iter().any(|a| in_network(client, *a, cidr4, cidr6)).into())
    }

    /// mx (5.4): an address of one of the target's MX hosts. More than 10 MX
    /// names is permerror (4.6.4); a host whose lookup fails temporarily is
    /// temperror; the null MX is skipped.
    pub(super) async fn match_mx(
        &mut self,
        target: &str,
        cidr4: Option<u8>,
        cidr6: Option<u8>,
    ) -> Result<Match, Abort> {
        let dns = self.dns;
        let hosts = self.first_lookup("MX", target, dns.mx(target)).await?;
        if self.limits && hosts.len() > MAX_MX_NAMES {
            return Err(Abort::perm(format!(
                "{target} has {} MX records; receivers look at no more than {MAX_MX_NAMES} (RFC 7208 4.6.4)",
                hosts.len()
            )));
        }
        let client = self.client();
        for host in &hosts {
            let host = host.strip_suffix('.').unwrap_or(host);
            if !names::is_queryable(host) {
                continue;
            }
            match dns::addresses(dns, host, client).await {
                Ok(found) if found.iter().any(|a| in_network(client, *a, cidr4, cidr6)) => {
                    return Ok(Match::Yes);
                }
                Ok(_) | Err(LookupError::NxDomain | LookupError::NoData) => {}
                Err(e) => return Err(Abort::temp(&format!("address lookup of MX host {host}"), &e)),
            }
        }
        Ok(Match::No)
    }

    /// exists (5.7): any A record of the target, whatever the client's family.
    pub(super) async fn match_exists(&mut self, target: &str) -> Result<Match, Abort> {
        let dns = self.dns;
        let found = self.first_lookup("A", target, dns.a(target)).await?;
        Ok((!found.is_empty()).into())
    }

    /// ptr (5.5): a validated name of the client at or below the target. A PTR
    /// lookup error is no match; names are validated only when they could match.
    pub(super) async fn match_ptr(&mut self, target: &str) -> Result<Match, Abort> {
        let dns = self.dns;
        let reverse = reverse_name(self.client());
        let names = match dns.ptr(&reverse).await.and_then(non_empty) {
            Ok(names) => names,
            Err(LookupError::Temporary(_)) => return Ok(Match::No),
            Err(_) => {
                self.note_void()?;
                return Ok(Match::No);
            }
        };
        for candidate in self.first_names(&names) {
            if names::is_at_or_below(candidate, target) && self.validates(candidate).await {
                return Ok(Match::Yes);
            }
        }
        Ok(Match::No)
    }

    /// `%{p}` (7.3): a validated name of the client, preferring `domain` itself,
    /// then a name below it, then any; `None` (expanded as `unknown`) when no name
    /// validates. Its lookups do not count against the limits.
    pub(super) async fn validated_name(&mut self, domain: &str) -> Option<String> {
        let reverse = reverse_name(self.client());
        let names = self.dns.ptr(&reverse).await.ok()?;
        let mut valid = Vec::new();
        for candidate in self.first_names(&names) {
            if self.validates(candidate).await {
                valid.push(candidate.strip_suffix('.').unwrap_or(candidate).to_string());
            }
        }
        let exact = valid
            .iter()
            .position(|n| names::normalize(n) == names::normalize(domain));
        let below = valid.iter().position(|n| names::is_at_or_below(n, domain));
        let pick = exact.or(below).unwrap_or(0);
        (pick < valid.len()).then(|| valid.swap_remove(pick))
    }

    /// The PTR names looked at: the first 10 with the limits on (4.6.4).
    fn first_names<'n>(&self, names: &'n [String]) -> &'n [String] {
        if self.limits && names.len() > MAX_PTR_NAMES {
            &names[..MAX_PTR_NAMES]
        } else {
            names
        }
    }

    /// True when `host` has an address equal to the client's; DNS errors are no.
    async fn validates(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !names::is_queryable(host) {
            return false;
        }
        let client = self.client();
        dns::addresses(self.dns, host, client)
            .await
            .is_ok_and(|found| found.contains(&client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("192.0.2.5", "192.0.2.9", None, None, false),
            ("192.0.2.5", "192.0.2.9", Some(24), None, true),
            ("192.0.2.5", "198.51.100.1", Some(0), None, true),
            ("2001:db8::1", "2001:db8::2", None, Some(64), true),
            ("2001:db8::1", "2001:db8::2", Some(0), None, false),
            ("192.0.2.5", "2001:db8::2", Some(0), Some(0), false),
        ];
        for (client, addr, c4, c6, want) in cases {
            assert_eq!(
                in_network(ip(client), ip(addr), c4, c6),
                want,
                "{client} in {addr} {c4:?} {c6:?}"
            );
        }
    }
}
