//! The `[backend]` table: the bounds on a zone transfer in from a backend primary
//! (policies with `backend = "..."`). A transfer that passes one is abandoned and the
//! copy in service stays.
//!
//! ```toml
//! [backend]
//! max_records = 1000000      # records one transfer may bring
//! max_bytes = 268435456      # wire bytes one transfer may bring (256 MiB)
//! transfer_timeout = "300s"  # one whole transfer, from connect to the closing SOA
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{parse_duration, positive_count};
use crate::diag::Diagnostics;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    #[serde(default)]
    max_records: Option<Spanned<i64>>,
    #[serde(default)]
    max_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    transfer_timeout: Option<Spanned<String>>,
}

/// `[backend]`: what one transfer in may cost before it is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// Records in one transfer (both SOA records counted).
    pub max_records: usize,
    /// Bytes received in one transfer, as on the wire (length prefixes included).
    pub max_bytes: u64,
    /// One whole transfer, connect to closing SOA: a primary that trickles records
    /// under the per-message timeout still ends here.
    pub transfer_timeout: Duration,
}

pub const DEFAULT_MAX_RECORDS: usize = 1_000_000;
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
            transfer_timeout: DEFAULT_TRANSFER_TIMEOUT,
        }
    }
}

pub(super) fn parse_backend(raw: &RawBackend, diags: &mut Diagnostics) -> BackendConfig {
    let mut config = BackendConfig::default();
    if let Some(n) = positive_count(&raw.max_records, "backend max_records", diags) {
        config.max_records = n;
    }
    if let Some(n) = positive_count(&raw.max_bytes, "backend max_bytes", diags) {
        config.max_bytes = n as u64;
    }
    if let Some(t) = &raw.transfer_timeout
        && let Some(d) = parse_duration(t, "backend transfer_timeout", diags)
    {
        config.transfer_timeout = d;
    }
    config
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::diag::SourceFile;
    use std::time::Duration;

    const SERVER: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster.example.net\"\n";

    fn parse(extra: &str) -> Result<Config, Vec<String>> {
        Config::parse(&SourceFile::new(
            "/etc/spfd/spfd.toml",
            format!("{SERVER}{extra}"),
        ))
        .map_err(|d| d.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_and_values() {
        let c = parse("").unwrap();
        assert_eq!(c.backend.max_records, 1_000_000);
        assert_eq!(c.backend.max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.backend.transfer_timeout, Duration::from_secs(300));
        let c = parse("[backend]\nmax_records = 50\nmax_bytes = 4096\ntransfer_timeout = \"2s\"\n").unwrap();
        assert_eq!(c.backend.max_records, 50);
        assert_eq!(c.backend.max_bytes, 4096);
        assert_eq!(c.backend.transfer_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_name_their_line() {
        let errors =
            parse("[backend]\nmax_records = 0\nmax_bytes = -1\ntransfer_timeout = \"soon\"\n").unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("spfd.toml:5:15: error: backend max_records must be at least 1"),
            "{all}"
        );
        assert!(
            all.contains("spfd.toml:6:13: error: backend max_bytes must be at least 1"),
            "{all}"
        );
        assert!(
            all.contains("spfd.toml:7:20: error: backend transfer_timeout \"soon\" is not a duration"),
            "{all}"
        );
        let unknown = parse("[backend]\nmax_zones = 3\n").unwrap_err();
        assert!(unknown.join("\n").contains("max_zones"), "{unknown:?}");
    }
}
