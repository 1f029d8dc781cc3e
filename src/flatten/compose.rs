//! Composition: a record built from what is already known, with no lookup at all,
//! for a version of a policy the service has not expanded yet (just edited, or edited
//! while spfd was down): each term that needs DNS from its own last good result,
//! whichever record it was fetched for, or as written when it has none.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use super::expand::expand_shared;
use super::last_good::LastGood;
use super::model::{ExpandError, ExpandOptions, Expansion};
use crate::spf::{DnsLookup, LookupError, Record};

/// The record as it is composed from what is known, with no lookup at all: each term
/// that needs DNS from its own last good result in `memory` (whichever record it was
/// fetched for), or as written when it has none. What a record just edited is served
/// as until it is expanded.
pub fn compose(
    domain: &str,
    record: &Record,
    memory: &Mutex<LastGood>,
    opts: &ExpandOptions,
) -> Result<Expansion, ExpandError> {
    use futures_util::FutureExt;
    expand_shared(&Offline, domain, record, memory, opts)
        .now_or_never()
        .expect("no lookup waits when every lookup fails at once")
}

/// DNS never asked: every lookup fails at once, so an expansion through it composes
/// the record from last good results alone.
struct Offline;

fn offline<T>() -> Result<T, LookupError> {
    Err(LookupError::Temporary(
        "not asked: composed from last good results".to_string(),
    ))
}

impl DnsLookup for Offline {
    async fn txt(&self, _: &str) -> Result<Vec<String>, LookupError> {
        offline()
    }
    async fn a(&self, _: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        offline()
    }
    async fn aaaa(&self, _: &str) -> Result<Vec<Ipv6Addr>, LookupError> {
        offline()
    }
    async fn mx(&self, _: &str) -> Result<Vec<String>, LookupError> {
        offline()
    }
    async fn ptr(&self, _: &str) -> Result<Vec<String>, LookupError> {
        offline()
    }
}
