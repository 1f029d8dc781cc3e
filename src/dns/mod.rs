//! The query path: [`answer`] decides what a query gets from one snapshot (pure, no
//! I/O); [`handler`] adapts it to hickory-server (EDNS, truncation, response codes);
//! [`listen`] binds the sockets.

pub mod answer;
pub mod handler;
pub mod listen;

/// The largest UDP payload spfd sends, whatever the client offers (DNS Flag Day 2020,
/// the default of NSD and Knot).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// RFC 1035 4.2.1: the UDP limit for clients without EDNS.
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
