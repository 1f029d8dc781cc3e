//! The query path: [`answer`] decides what a query gets from one snapshot (pure, no
//! I/O), [`full_zone`] for zones with a zone file or a backend's copy (referrals,
//! CNAME, wildcards, additional records), [`sections`] holds what they decide;
//! [`notify`] takes NOTIFY from a zone's backend; [`handler`] wraps it in the protocol
//! (EDNS, truncation, response codes) through hickory's parser and encoder, for TCP and for unusual UDP queries; [`wire`] answers
//! common UDP queries from the snapshot's precompiled bytes; [`scan`] finds what both
//! paths refuse before hickory reads a message; [`udp`] runs one worker
//! thread per socket, each with its own response rate limiter ([`rrl`]); [`tcp`] serves connections, fairly between
//! clients ([`tcp_table`]); [`listen`] binds the sockets. [`dnssec`] adds signatures and
//! denial proofs for queries with DO=1 to signed zones (on the general path).

pub mod answer;
pub mod dnssec;
pub mod full_zone;
pub mod handler;
pub mod listen;
pub mod mmsg;
pub mod notify;
pub mod rrl;
pub mod scan;
pub mod sections;
pub mod stats;
pub mod tcp;
pub mod tcp_table;
pub mod udp;
pub mod wire;

/// The largest UDP payload spfd sends, whatever the client offers (DNS Flag Day 2020,
/// the default of NSD and Knot).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// RFC 1035 4.2.1: the UDP limit for clients without EDNS.
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
