//! The `[dnssec]` table (signing) and `[upstream] dnssec` (validation of what the
//! flattener resolves).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::parse_duration;
use super::size::{RawSize, parse_size};
use crate::diag::Diagnostics;
use crate::dnssec::{KeyAlgorithm, MIN_VALIDITY};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnssec {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    algorithm: Option<Spanned<String>>,
    #[serde(default)]
    signature_validity: Option<Spanned<String>>,
    #[serde(default)]
    signature_cache: Option<Spanned<RawSize>>,
}

/// `[dnssec]`: whether every zone is signed, with which algorithm, for how long.
#[derive(Debug, Clone)]
pub struct DnssecConfig {
    pub enabled: bool,
    /// For keys made from now on; existing keys keep their algorithm.
    pub algorithm: KeyAlgorithm,
    pub signature_validity: Duration,
    /// Bytes all zones together may hold of signatures made on demand (macro answers,
    /// denials): names asked faster than the cache keeps them are signed again, memory
    /// never grows past this.
    pub signature_cache: u64,
}

impl Default for DnssecConfig {
    fn default() -> Self {
        DnssecConfig {
            enabled: false,
            algorithm: KeyAlgorithm::EcdsaP256Sha256,
            signature_validity: DEFAULT_VALIDITY,
            signature_cache: DEFAULT_SIGNATURE_CACHE,
        }
    }
}

const DEFAULT_VALIDITY: Duration = Duration::from_secs(14 * 86400);
/// 64 MiB: about 140,000 P-256 signatures.
pub const DEFAULT_SIGNATURE_CACHE: u64 = 64 << 20;
/// Below 64 KiB the cache holds too few signatures to spare any signing (and a bare
/// `64` is more likely a forgotten unit than a wish).
pub const MIN_SIGNATURE_CACHE: u64 = 64 << 10;

pub(super) fn parse_dnssec(raw: &RawDnssec, diags: &mut Diagnostics) -> DnssecConfig {
    let mut config = DnssecConfig {
        enabled: raw.enabled,
        ..DnssecConfig::default()
    };
    if let Some(alg) = &raw.algorithm {
        match KeyAlgorithm::parse(alg.get_ref()) {
            Some(a) => config.algorithm = a,
            None => diags.error(
                alg.span(),
                format!(
                    "dnssec algorithm {:?} is not supported: write \"ecdsap256sha256\" (13) or \"ed25519\" (15)",
                    alg.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = &raw.signature_validity
        && let Some(d) = parse_duration(v, "dnssec signature_validity", diags)
    {
        if d.as_secs() < MIN_VALIDITY {
            diags.error(
                v.span(),
                "dnssec signature_validity is below 4h: signatures would expire in caches",
            );
        } else if d.as_secs() > 90 * 86400 {
            diags.error(
                v.span(),
                "dnssec signature_validity is above 90d: a stolen signature would replay for months",
            );
        } else {
            config.signature_validity = d;
        }
    }
    if let Some(size) = &raw.signature_cache
        && let Some(bytes) = parse_size(size, "dnssec signature_cache", MIN_SIGNATURE_CACHE, diags)
    {
        config.signature_cache = bytes;
    }
    config
}

/// `[upstream] trust_anchors`: a readable file of DNSKEY records, relative to the config.
pub(super) fn parse_trust_anchors(
    raw: &Option<Spanned<std::path::PathBuf>>,
    base: &std::path::Path,
    diags: &mut Diagnostics,
) -> Option<std::path::PathBuf> {
    let raw = raw.as_ref()?;
    let path = base.join(raw.get_ref());
    match hickory_proto::dnssec::TrustAnchors::from_file(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            diags.error(
                raw.span(),
                format!(
                    "upstream trust_anchors {}: {e} (write DNSKEY records, one per line)",
                    path.display()
                ),
            );
            None
        }
    }
}

/// `[upstream] dnssec`: "off" (default) or "validate".
pub(super) fn parse_upstream_dnssec(raw: &Option<Spanned<String>>, diags: &mut Diagnostics) -> bool {
    match raw.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "off")) => false,
        Some((_, "validate")) => true,
        Some((s, other)) => {
            diags.error(
                s.span(),
                format!("upstream dnssec {other:?} is not known: write \"off\" or \"validate\""),
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::diag::SourceFile;
    use crate::dnssec::KeyAlgorithm;

    const MINIMAL: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster@example.net\"\n";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(&SourceFile::new("/etc/spfd/spfd.toml", text))
            .map_err(|d| d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))
    }

    #[test]
    fn defaults_and_settings() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.dnssec.enabled);
        assert!(!c.upstream.validate);
        assert_eq!(c.dnssec.signature_validity.as_secs(), 14 * 86400);
        assert_eq!(c.dnssec.signature_cache, 64 << 20);
        let c = parse(&format!(
            "{MINIMAL}[dnssec]\nenabled = true\nalgorithm = \"ed25519\"\nsignature_validity = \"7d\"\nsignature_cache = \"8 MiB\"\n[upstream]\ndnssec = \"validate\"\n"
        ))
        .unwrap();
        assert_eq!(c.dnssec.signature_cache, 8 << 20);
        let bytes = parse(&format!("{MINIMAL}[dnssec]\nsignature_cache = 1048576\n")).unwrap();
        assert_eq!(bytes.dnssec.signature_cache, 1 << 20);
        assert!(c.dnssec.enabled);
        assert_eq!(c.dnssec.algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(c.dnssec.signature_validity.as_secs(), 7 * 86400);
        assert!(c.upstream.validate);
    }

    #[test]
    fn bad_values_name_the_line_and_what_to_write() {
        let e = parse(&format!(
            "{MINIMAL}[dnssec]\nenabled = true\nalgorithm = \"rsasha1\"\n"
        ))
        .unwrap_err();
        assert!(e.contains(":6:") && e.contains("ed25519"), "{e}");
        let e = parse(&format!("{MINIMAL}[dnssec]\nsignature_validity = \"1h\"\n")).unwrap_err();
        assert!(e.contains("below 4h"), "{e}");
        let e = parse(&format!("{MINIMAL}[upstream]\ndnssec = \"yes\"\n")).unwrap_err();
        assert!(e.contains("\"validate\""), "{e}");
        let e = parse(&format!("{MINIMAL}[dnssec]\nsignature_cache = \"64 MB\"\n")).unwrap_err();
        assert!(e.contains(":5:") && e.contains("\"64 MiB\""), "{e}");
        let e = parse(&format!("{MINIMAL}[dnssec]\nsignature_cache = 64\n")).unwrap_err();
        assert!(e.contains("below") && e.contains("\"64 KiB\""), "{e}");
        let e = parse(&format!("{MINIMAL}[dnssec]\nsignature_cache = true\n")).unwrap_err();
        assert!(e.contains("signature_cache"), "{e}");
        let e = parse(&format!("{MINIMAL}[dnssec]\nenable = true\n")).unwrap_err();
        assert!(e.contains("enable"), "{e}");
    }
}
