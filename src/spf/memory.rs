//! DNS data held in memory, answering as an authoritative server would: for tests,
//! and for checks run on records already fetched (comparing a flattened record with
//! its source).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::dns::{DnsLookup, LookupError};
use crate::names::normalize;

/// The longest CNAME chain followed; longer (or a loop) is a server failure, as a
/// resolver reports it.
const MAX_CNAME_CHAIN: usize = 8;

#[derive(Debug, Clone, Default)]
struct Node {
    txt: Vec<String>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    mx: Vec<String>,
    ptr: Vec<String>,
    cname: Option<String>,
    /// Queries for types this name has no records of time out.
    fails: bool,
}

/// Names and their records. A name that is absent is NXDOMAIN; a name present
/// without records of the asked type is NODATA. Names compare case-insensitively,
/// trailing dots ignored, and CNAMEs are followed.
#[derive(Debug, Clone, Default)]
pub struct MemoryDns {
    names: HashMap<String, Node>,
}

impl MemoryDns {
    pub fn new() -> Self {
        Self::default()
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.names.entry(normalize(name)).or_default()
    }

    /// Makes `name` exist (so that queries of it get NODATA rather than NXDOMAIN).
    pub fn add_name(&mut self, name: &str) -> &mut Self {
        self.node(name);
        self
    }

    /// A TXT record: its character-strings already joined.
    pub fn add_txt(&mut self, name: &str, text: &str) -> &mut Self {
        self.node(name).txt.push(text.to_string());
        self
    }

    pub fn add_a(&mut self, name: &str, ip: Ipv4Addr) -> &mut Self {
        self.node(name).a.push(ip);
        self
    }

    pub fn add_aaaa(&mut self, name: &str, ip: Ipv6Addr) -> &mut Self {
        self.node(name).aaaa.push(ip);
        self
    }

    pub fn add_mx(&mut self, name: &str, exchange: &str) -> &mut Self {
        self.node(name).mx.push(exchange.to_string());
        self
    }

    pub fn add_ptr(&mut self, reverse_name: &str, target: &str) -> &mut Self {
        self.node(reverse_name).ptr.push(target.to_string());
        self
    }

    pub fn set_cname(&mut self, name: &str, target: &str) -> &mut Self {
        self.node(name).cname = Some(target.to_string());
        self
    }

    /// Every query of `name` for a type it has no records of fails temporarily, as
    /// when its servers time out.
    pub fn fail_temporarily(&mut self, name: &str) -> &mut Self {
        self.node(name).fails = true;
        self
    }

    fn lookup<T: Clone>(&self, name: &str, pick: fn(&Node) -> &Vec<T>) -> Result<Vec<T>, LookupError> {
        let mut name = normalize(name);
        for _ in 0..=MAX_CNAME_CHAIN {
            let node = self.names.get(&name).ok_or(LookupError::NxDomain)?;
            let records = pick(node);
            if !records.is_empty() {
                return Ok(records.clone());
            }
            match &node.cname {
                Some(target) => name = normalize(target),
                None if node.fails => {
                    return Err(LookupError::Temporary(format!("timeout asking for {name}")));
                }
                None => return Err(LookupError::NoData),
            }
        }
        Err(LookupError::Temporary(format!(
            "CNAME chain longer than {MAX_CNAME_CHAIN} at {name}"
        )))
    }
}

impl DnsLookup for MemoryDns {
    async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.lookup(name, |n| &n.txt)
    }

    async fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        self.lookup(name, |n| &n.a)
    }

    async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, LookupError> {
        self.lookup(name, |n| &n.aaaa)
    }

    async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.lookup(name, |n| &n.mx)
    }

    async fn ptr(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.lookup(name, |n| &n.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn answers() {
        let mut dns = MemoryDns::new();
        dns.add_txt("Example.COM.", "v=spf1 -all")
            .add_a("example.com", Ipv4Addr::new(192, 0, 2, 1))
            .set_cname("alias.example.com", "example.com")
            .set_cname("loop.example.com", "LOOP.example.com.")
            .add_a("slow.example.com", Ipv4Addr::new(192, 0, 2, 9))
            .fail_temporarily("slow.example.com");
        block(async {
            assert_eq!(dns.txt("example.com").await, Ok(vec!["v=spf1 -all".to_string()]));
            assert_eq!(
                dns.txt("ALIAS.example.com.").await,
                Ok(vec!["v=spf1 -all".to_string()])
            );
            assert_eq!(dns.mx("example.com").await, Err(LookupError::NoData));
            assert_eq!(dns.a("nowhere.example.com").await, Err(LookupError::NxDomain));
            assert!(matches!(
                dns.a("loop.example.com").await,
                Err(LookupError::Temporary(_))
            ));
            assert_eq!(
                dns.a("slow.example.com").await,
                Ok(vec![Ipv4Addr::new(192, 0, 2, 9)])
            );
            assert!(matches!(
                dns.txt("slow.example.com").await,
                Err(LookupError::Temporary(_))
            ));
        });
    }
}
