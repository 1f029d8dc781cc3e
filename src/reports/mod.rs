//! DMARC aggregate reports: ingestion, storage, analysis and advice.
//!
//! ```text
//! sources (files, dir:, maildir:, imap[s]://) ──► ingest::Importer ──► decode (magic bytes:
//!   gzip, zip, mail parts; size caps) ──► xml (lenient, both schemas) ──► store (SQLite)
//! store + published SPF expansion + providers ──► analysis::Summary ──► advisor::Advice
//! ```
//!
//! - [`model`]: a report as read.
//! - [`xml`]: the lenient XML reader.
//! - [`decode`]: from bytes (bare, gzip, zip, e-mail) to reports, with bomb caps.
//! - [`store`]: SQLite at `state_dir/reports.sqlite` ([`schema`]: its tables and migration),
//!   each report with its [`store::Trust`].
//! - [`verify`]: DKIM of report mail, aligned with the reporting organisation.
//! - [`ingest`]: the importer and `spfd reports import`.

pub mod advisor;
pub mod analysis;
pub mod authorize;
pub mod budget;
pub mod decode;
pub mod imap;
pub mod ingest;
pub mod mail;
pub mod mailbox;
pub mod model;
pub mod poller;
pub mod providers;
pub mod query;
pub mod rdns;
pub mod schema;
pub mod spf_view;
pub mod status;
pub mod store;
pub mod verify;
pub mod watch;
pub mod xml;

pub use decode::{DecodeError, Limits, decode, decode_each};
pub use ingest::{ImportStats, Importer, import_paths};
pub use model::{Report, Row, Schema};
pub use store::{Assessed, Store, StoreError, Trust};
