//! The flattening service: expands the SPF records of flatten-mode policies in the
//! background, keeps the last good results, and publishes the chains it packs.

mod service;
mod settings;
mod status;

pub use service::{Flattener, OnPublish};
pub use settings::{Clock, Settings, Status};
pub use status::{BoardCell, HeldRange, PolicyStatus, State, StatusBoard, UpstreamChange};
