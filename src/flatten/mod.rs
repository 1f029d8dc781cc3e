//! SPF flattening: expands a record's includes, redirect, `a` and `mx` ahead of time
//! and publishes a chain of records that gives every client the same result
//! within RFC 7208's limit of 10 DNS lookups.
//!
//! # Algorithm
//!
//! 1. [`expand`] walks the source record like check_host() with the limits lifted,
//!    producing ordered [`Rule`]s and a [`Terminal`]:
//!    - `ip4`/`ip6` are address sets; `a` and `mx` (with `%{d}` at most) are the A
//!      and AAAA addresses of the name or of its MX hosts, widened to the CIDR
//!      lengths (an IPv4 client only meets A records, IPv6 only AAAA).
//!    - `include` is the set of addresses where its target evaluates to **pass**:
//!      the target's rules in order, each `-`, `~` or `?` rule shadowing later pass
//!      rules, `+all` passing whatever is left (RFC 7208 5.2).
//!    - a `redirect` (only when the record has no `all`) appends its target's rules
//!      and hands over its terminal (6.1). Terms after `all` never run and are dropped,
//!      as are unknown modifiers.
//!    - Terms that depend on the message stay as [`Rule::Dynamic`], in place:
//!      `exists`, `ptr`, and any domain-spec using a macro other than `%{d}` (`%{o}`
//!      is the sender's domain, not fixed). They are rewritten to mean the same at
//!      any name: `%{d}` becomes its expansion for the domain the term was evaluated
//!      in, and a bare `ptr` (or `a`/`mx`) names that domain. An include whose target
//!      has such terms stays as `include:<target>`, costing 1 plus its target's own
//!      lookups; a redirect target's dynamic terms are moved in, rewritten.
//! 2. [`pack`] reduces the rules without changing any result (drops addresses
//!    earlier rules already decide when that shortens the CIDR list, merges
//!    adjacent rules with one qualifier, drops rules left empty and trailing rules
//!    with the terminal's result) and writes them into records of at most
//!    [`MAX_RECORD`] octets: the head at the zone apex, the rest in parts named
//!    `_<n>-<tag>.<zone>` chained by `redirect=`. A part's result when none of
//!    its rules matched is exactly the rest of the rules, and only the last part has
//!    the terminal. The tag is a hash of the whole chain, so identical content
//!    gives identical names and a cached head never meets parts of another chain.
//!
//! # Safety rules
//!
//! - Never silently authorise less: a target with no SPF record, a loop, an invalid
//!   record or two records is an [`ExpandError`] naming the include path (receivers
//!   would answer permerror); the caller keeps publishing its last good chain.
//! - A temporary DNS failure anywhere under an include, redirect, `a` or `mx` term
//!   makes that term use its last good result from [`LastGood`], reported with its
//!   age in [`TermDetail`]; older than `max_stale` it is still used and reported as
//!   an error-level [`Warning`]. No last good result is an error.
//! - A range a provider drops stays authorised for `hold_down` after it was first
//!   seen missing.
//! - More than 10 lookups in total (the domain's `redirect=` to the zone, one per
//!   chained part, every kept term and its inner cost) is a [`PackError`] that
//!   suggests `mode = "macro"`.
//! - The engine reads no clock: time comes in [`ExpandOptions::now`].
//!
//! An IPv4-mapped IPv6 client (`::ffff:192.0.2.1`) is evaluated as IPv4 by
//! receivers (RFC 7208 5), so it meets the IPv4 sets and the IPv6 sets need no case
//! for it.

mod expand;
pub mod ipset;
mod last_good;
mod model;
mod pack;
mod rewrite;

#[cfg(test)]
mod tests;

pub use expand::expand;
pub use ipset::{Ip4Set, Ip6Set};
pub use last_good::LastGood;
pub use model::{
    DEFAULT_HOLD_DOWN, DEFAULT_MAX_STALE, ExpandError, ExpandOptions, Expansion, Level, Rule, TermDetail,
    Terminal, Warning, prefix,
};
pub use pack::{Chain, MAX_LOOKUPS, MAX_RECORD, PackError, pack};

use hickory_proto::rr::Name;

use crate::spf::{DnsLookup, Record};

/// Why flattening failed; the caller keeps publishing its last good chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlattenError {
    #[error("cannot expand the SPF record: {0}")]
    Expand(#[from] ExpandError),
    #[error("cannot publish the flattened SPF record: {0}")]
    Pack(#[from] PackError),
}

/// Expands `record` (the SPF record of `domain`) and packs it for `zone`.
/// `owner_redirect` says the domain publishes `v=spf1 redirect=<zone>` (the zone is
/// not the domain), which costs receivers one lookup.
pub async fn flatten<D: DnsLookup>(
    dns: &D,
    domain: &str,
    record: &Record,
    zone: &Name,
    owner_redirect: bool,
    memory: &mut LastGood,
    opts: &ExpandOptions,
) -> Result<(Expansion, Chain), FlattenError> {
    let expansion = expand(dns, domain, record, memory, opts).await?;
    let chain = pack(&expansion, &zone.to_ascii(), owner_redirect)?;
    Ok((expansion, chain))
}
