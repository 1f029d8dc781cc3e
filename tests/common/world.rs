//! An in-memory upstream for tests that control time: records with TTLs, failures on
//! demand, and a count of the queries each name received.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use hickory_proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use spfd::spf::LookupError;
use spfd::upstream::{Cached, Source};

type Key = (String, RecordType);

#[derive(Default)]
pub struct World {
    records: Mutex<HashMap<Key, (Vec<RData>, u32)>>,
    failing: Mutex<Vec<String>>,
    /// Names whose lookup panics (a bug somewhere below the flattener, simulated).
    panicking: Mutex<Vec<String>>,
    asked: Mutex<HashMap<Key, usize>>,
}

fn key(name: &str, rtype: RecordType) -> Key {
    (name.trim_end_matches('.').to_ascii_lowercase(), rtype)
}

impl World {
    /// Sets the TXT record of a name (one record; strings split at 255 octets).
    pub fn txt(&self, name: &str, text: &str, ttl: u32) {
        let strings = spfd::txt::split_plain(text);
        self.set(name, RecordType::TXT, vec![RData::TXT(TXT::new(strings))], ttl);
    }

    pub fn a(&self, name: &str, addrs: &[&str], ttl: u32) {
        let rdata = addrs
            .iter()
            .map(|a| RData::A(A(a.parse::<Ipv4Addr>().unwrap())))
            .collect();
        self.set(name, RecordType::A, rdata, ttl);
    }

    pub fn aaaa(&self, name: &str, addrs: &[&str], ttl: u32) {
        let rdata = addrs
            .iter()
            .map(|a| RData::AAAA(AAAA(a.parse::<Ipv6Addr>().unwrap())))
            .collect();
        self.set(name, RecordType::AAAA, rdata, ttl);
    }

    pub fn mx(&self, name: &str, hosts: &[(u16, &str)], ttl: u32) {
        let rdata = hosts
            .iter()
            .map(|(p, h)| RData::MX(MX::new(*p, Name::from_ascii(format!("{h}.")).unwrap())))
            .collect();
        self.set(name, RecordType::MX, rdata, ttl);
    }

    pub fn set(&self, name: &str, rtype: RecordType, rdata: Vec<RData>, ttl: u32) {
        self.records
            .lock()
            .unwrap()
            .insert(key(name, rtype), (rdata, ttl));
    }

    pub fn remove(&self, name: &str, rtype: RecordType) {
        self.records.lock().unwrap().remove(&key(name, rtype));
    }

    /// Every name at or under `suffix` times out until [`World::heal`].
    pub fn fail(&self, suffix: &str) {
        self.failing.lock().unwrap().push(suffix.to_ascii_lowercase());
    }

    /// A lookup of `name` panics until [`World::heal`].
    pub fn panic_on(&self, name: &str) {
        self.panicking.lock().unwrap().push(key(name, RecordType::TXT).0);
    }

    pub fn heal(&self) {
        self.panicking.lock().unwrap().clear();
        self.failing.lock().unwrap().clear();
    }

    pub fn asked(&self, name: &str, rtype: RecordType) -> usize {
        *self.asked.lock().unwrap().get(&key(name, rtype)).unwrap_or(&0)
    }

    fn answer(&self, name: &str, rtype: RecordType) -> Cached {
        let k = key(name, rtype);
        let panics = self.panicking.lock().unwrap().contains(&k.0);
        assert!(!panics, "simulated bug looking up {name}");
        *self.asked.lock().unwrap().entry(k.clone()).or_default() += 1;
        let failing = self.failing.lock().unwrap();
        if failing
            .iter()
            .any(|s| k.0 == *s || k.0.ends_with(&format!(".{s}")))
        {
            return Cached::failed("timed out".into());
        }
        let records = self.records.lock().unwrap();
        match records.get(&k) {
            Some((rdata, ttl)) => Cached::records(rdata.clone(), *ttl),
            None if records.keys().any(|(n, _)| *n == k.0) => Cached::negative(LookupError::NoData, 60),
            None => Cached::negative(LookupError::NxDomain, 60),
        }
    }
}

/// A shared handle, so a test keeps changing the world the upstream reads.
pub struct WorldSource(pub std::sync::Arc<World>);

impl Source for WorldSource {
    async fn query(&self, name: &str, rtype: RecordType) -> Cached {
        self.0.answer(name, rtype)
    }
}
