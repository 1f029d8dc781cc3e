//! The flattening service (being written): expands the SPF records of flatten-mode
//! policies in the background and publishes the results.

mod published;

pub use published::{Entry, NamedStrings, Published};
