//! What the flattening service is configured with, what it says of each policy's last
//! expansion, and the clock it reads (tokio's, so tests control time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::UpstreamConfig;

/// The settings of the service, from `[upstream]` and `[server] state_dir`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh_min: Duration,
    pub refresh_max: Duration,
    pub max_stale: Duration,
    pub hold_down: Duration,
    pub state_dir: std::path::PathBuf,
}

impl Settings {
    pub fn new(upstream: &UpstreamConfig, state_dir: &std::path::Path) -> Self {
        Settings {
            refresh_min: upstream.refresh_min,
            refresh_max: upstream.refresh_max,
            max_stale: upstream.max_stale,
            hold_down: upstream.hold_down,
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// How the last expansion of a policy went, for logs and (later) the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Published {
        lookups: usize,
    },
    /// Published, but built on a last good result older than `max_stale`.
    Stale(String),
    /// The last good chain stays published (or the record as written, when none).
    Failed(String),
}

/// Unix time that follows tokio's clock, so tests that pause and advance tokio time
/// control hold-down and staleness too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_unix: u64,
    base: Instant,
}

impl Clock {
    pub fn start() -> Self {
        let base_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Clock {
            base_unix,
            base: Instant::now(),
        }
    }

    pub fn unix_now(&self) -> u64 {
        self.base_unix + self.base.elapsed().as_secs()
    }
}
