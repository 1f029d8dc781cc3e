//! spfd: an authoritative DNS server for SPF, DMARC and DKIM records.
//!
//! Data flows one way:
//!
//! ```text
//! config.toml ──► config ──► policy files ──► policy::load ──► ValidPolicy
//!                                 (spf grammar, dmarc, dkim)        │
//!                                                                    ▼
//!   reload (file watcher, SIGHUP) ──► snapshot::build ──► Snapshot (immutable)
//!                                                                    │ ArcSwap::store (one writer)
//!                                                                    ▼
//!                 dns::handler ◄── one load() per query ◄── SnapshotCell
//! ```
//!
//! - [`diag`]: file:line:column diagnostics shared by every parser.
//! - [`config`]: the server configuration file.
//! - [`spf`]: the RFC 7208 grammar, lookup cost, macro expansion and evaluator.
//! - [`policy`]: one policy file per mail domain, validated into [`policy::ValidPolicy`].
//! - [`txt`]: splitting record text into DNS character-strings.
//! - [`snapshot`]: the immutable set of zones and answers a query reads.
//! - [`dns`]: the query path (answers from a snapshot) and the listening sockets.
//! - [`reload`]: the background service that rebuilds and swaps the snapshot.
//! - [`state`]: atomic files in `state_dir` that survive restarts.
//! - [`server`]: wiring for `spfd serve`.
//! - [`cli`]: the command-line interface.

pub mod cli;
pub mod config;
pub mod diag;
pub mod dns;
pub mod flatten;
pub mod policy;
pub mod refresh;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod spf;
pub mod state;
pub mod txt;
pub mod upstream;
