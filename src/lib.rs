//! spfd: an authoritative DNS server for SPF, DMARC and DKIM records.
//!
//! Data flows one way:
//!
//! ```text
//! policy files ──► reload (files: read, validate) ──watch──► refresh::Flattener
//!  (file events,        │                                       │ flatten::expand over
//!   SIGHUP)             │                                       │ upstream (TTL cache),
//!                       │                                       │ flatten::pack
//!                       │                                       ▼
//!                       │                          published (expansions; marks the
//!                       │                           domains that changed) ──callback──┐
//!                       ▼                                                             │
//!   reload (writer): snapshot::Builder, only the changed zones ◄──────────────────────┘
//!                       │ ArcSwap::store (one writer; shards shared between versions)
//!                       ▼
//!   SnapshotCell ──► dns::udp workers / dns::tcp: one load() per batch or query
//!                └─► admin (status page, /status, /metrics), with the status board
//! ```
//!
//! - [`diag`]: file:line:column diagnostics shared by every parser.
//! - [`names`]: the one validator of DNS names (host names, `_spf`-style names, SPF
//!   domains), and building names from validated parts.
//! - [`config`]: the server configuration file.
//! - [`spf`]: the RFC 7208 grammar, lookup cost, macro expansion and evaluator.
//! - [`policy`]: one policy file per mail domain, validated into [`policy::ValidPolicy`].
//! - [`dnssec`]: zone keys in `state_dir/keys/`, RRSIGs over prepared RRsets, compact
//!   denial (RFC 9824) and the cache of signatures made per query.
//! - [`txt`]: splitting record text into DNS character-strings.
//! - [`upstream`]: resolving third-party names, cached by TTL with single-flight.
//! - [`flatten`]: the exact expansion of an SPF record and its packing into a chain.
//! - [`refresh`]: the flattening service that keeps expansions current, and its status
//!   board.
//! - [`published`]: the expansions the snapshot publishes, and what to publish before
//!   one exists (never the record as written over the limits).
//! - [`snapshot`]: the immutable set of zones and answers a query reads (macro tables
//!   and the precompiled wire form included).
//! - [`dns`]: the query path: the UDP fast path, the general path, TCP, sockets.
//! - [`reload`]: the one writer of the snapshot: reads the policy files, rebuilds the
//!   zones that changed and swaps.
//! - [`service`]: named background services: ready signal, stop, join.
//! - [`admin`]: the admin HTTP server (health, readiness, status page, `/status`, metrics).
//! - [`metrics`]: Prometheus metrics, read at scrape time.
//! - [`alerts`]: events for owners, by webhook or command, delivered off the serving path.
//! - [`state`]: atomic files in `state_dir` that survive restarts.
//! - [`os`]: heap trimming after a swap, lower priority for background threads.
//! - [`reports`]: DMARC aggregate reports: sources (files, Maildir, IMAP), lenient
//!   decoding, the SQLite store, each sender's class, and the advisor.
//! - [`tsig`]: TSIG keys (RFC 8945), checking signed requests, signing responses and
//!   transfer streams.
//! - [`xfr`]: zone transfers out (AXFR, IXFR from a journal of recent versions) and
//!   NOTIFY to secondaries, fed by every swap.
//! - [`push`]: RFC 2136 updates of an existing primary with spfd's records (`spfd push`,
//!   the server's `[push]` mode).
//! - [`server`]: wiring for `spfd serve`.
//! - [`logging`]: the binary's log filter and line format (text or JSON).
//! - [`cli`]: the command-line interface.
//! - [`backend`]: backend transfer mode: zones transferred (AXFR) from an existing
//!   primary, refreshed on its SOA timers and NOTIFY.
//! - [`zonefile`]: zone files (RFC 1035 master format) of policies that serve a whole
//!   zone, read with hickory's parser, checked against the names spfd manages.

pub mod admin;
pub mod alerts;
pub mod backend;
pub mod cli;
pub mod config;
pub mod diag;
pub mod dns;
pub mod dnssec;
pub mod flatten;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod os;
pub mod policy;
pub mod published;
pub mod push;
pub mod refresh;
pub mod reload;
pub mod reports;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod spf;
pub mod state;
pub mod tsig;
pub mod txt;
pub mod upstream;
pub mod xfr;
pub mod zonefile;
