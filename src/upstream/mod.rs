//! Upstream DNS (being written).
