//! The flattening service: expands the SPF records of flatten-mode policies in the
//! background, keeps the last good results, and publishes the chains it packs.

mod published;
mod service;

pub use published::{Entry, NamedStrings, Published};
pub use service::{Clock, Flattener, Settings, Status};
