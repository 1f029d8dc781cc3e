//! The `[transfer]`, `[tsig.NAME]` and `[push]` tables: who may transfer zones out and
//! who is sent NOTIFY, the TSIG keys, and the primary that `spfd push` writes into.
//!
//! ```toml
//! [transfer]
//! allow = ["192.0.2.0/24"]          # who may transfer; nobody by default
//! notify = ["192.0.2.20:53"]        # sent NOTIFY on every serial change
//! tsig = "xfr-key"                  # optional: transfers and NOTIFY signed with this key
//! [tsig.xfr-key]
//! algorithm = "hmac-sha256"
//! secret_file = "xfr-key.secret"    # the base64 secret, relative to this file
//! [push]
//! primary = "192.0.2.10:53"         # RFC 2136 updates go here
//! tsig = "update-key"
//! serve = true                      # `spfd serve` pushes every change too
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine;
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::Diagnostics;
use crate::tsig::{Keyring, TsigKey, parse_algorithm};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
    #[serde(default)]
    tsig: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTsig {
    algorithm: Spanned<String>,
    secret_file: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPush {
    primary: Spanned<String>,
    #[serde(default)]
    tsig: Option<Spanned<String>>,
    #[serde(default)]
    serve: Option<bool>,
}

/// `[transfer]`: outgoing zone transfers and NOTIFY.
#[derive(Debug, Clone, Default)]
pub struct TransferConfig {
    /// Sources allowed to transfer (AXFR, IXFR); empty: nobody.
    pub allow: Vec<IpNet>,
    /// Secondaries sent NOTIFY when a zone's serial changes.
    pub notify: Vec<SocketAddr>,
    /// The `[tsig.NAME]` key transfers must be signed with, and NOTIFY is signed with.
    pub tsig: Option<String>,
}

impl TransferConfig {
    /// Whether `[transfer]` asks for anything at all.
    pub fn is_active(&self) -> bool {
        !self.allow.is_empty() || !self.notify.is_empty()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// `[push]`: RFC 2136 updates to an existing primary.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub primary: SocketAddr,
    /// The `[tsig.NAME]` key updates are signed with.
    pub tsig: Option<String>,
    /// Whether `spfd serve` pushes every changed zone as well (default true).
    pub serve: bool,
}

/// An address or prefix: `192.0.2.0/24`, `2001:db8::1`.
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()
        .map(|n| n.trunc())
}

/// An address with a port, the port 53 when left out.
pub(crate) fn parse_target(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

pub(super) fn parse_transfer(raw: &RawTransfer, keys: &Keyring, diags: &mut Diagnostics) -> TransferConfig {
    let mut out = TransferConfig::default();
    for entry in &raw.allow {
        match parse_net(entry.get_ref()) {
            Some(net) => out.allow.push(net),
            None => diags.error(
                entry.span(),
                format!(
                    "transfer allow entry {:?} is not an address or prefix: write e.g. \"192.0.2.0/24\" or \"2001:db8::1\"",
                    entry.get_ref()
                ),
            ),
        }
    }
    for entry in &raw.notify {
        match parse_target(entry.get_ref()) {
            Some(addr) => out.notify.push(addr),
            None => diags.error(
                entry.span(),
                format!(
                    "transfer notify entry {:?} is not an address: write e.g. \"192.0.2.20:53\" or \"[2001:db8::20]:53\"",
                    entry.get_ref()
                ),
            ),
        }
    }
    out.tsig = known_key(&raw.tsig, "transfer tsig", keys, diags);
    out
}

pub(super) fn parse_push(raw: &RawPush, keys: &Keyring, diags: &mut Diagnostics) -> Option<PushConfig> {
    let tsig = known_key(&raw.tsig, "push tsig", keys, diags);
    let Some(primary) = parse_target(raw.primary.get_ref()) else {
        diags.error(
            raw.primary.span(),
            format!(
                "push primary {:?} is not an address: write e.g. \"192.0.2.10:53\"",
                raw.primary.get_ref()
            ),
        );
        return None;
    };
    Some(PushConfig {
        primary,
        tsig,
        serve: raw.serve.unwrap_or(true),
    })
}

/// A key name that must be one of the `[tsig.NAME]` tables.
fn known_key(
    raw: &Option<Spanned<String>>,
    what: &str,
    keys: &Keyring,
    diags: &mut Diagnostics,
) -> Option<String> {
    let name = raw.as_ref()?;
    if keys.contains_key(name.get_ref()) {
        return Some(name.get_ref().clone());
    }
    let known: Vec<&str> = keys.keys().map(String::as_str).collect();
    diags.error(
        name.span(),
        format!(
            "{what} {:?} names no key: add a [tsig.{}] table with algorithm and secret_file (keys defined: {})",
            name.get_ref(),
            name.get_ref(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ),
    );
    None
}

/// `[tsig.NAME]`: each key's algorithm and its base64 secret, read from `secret_file`
/// (relative to the config file).
pub(super) fn parse_keys(
    raw: &BTreeMap<Spanned<String>, RawTsig>,
    base: &Path,
    diags: &mut Diagnostics,
) -> Keyring {
    let mut keys = Keyring::new();
    for (name, table) in raw {
        let text = name.get_ref();
        let Ok(key_name) = Name::from_ascii(format!("{}.", text.trim_end_matches('.'))) else {
            diags.error(name.span(), format!("tsig key name {text:?} is not a DNS name"));
            continue;
        };
        let Some(algorithm) = parse_algorithm(table.algorithm.get_ref()) else {
            diags.error(
                table.algorithm.span(),
                format!(
                    "tsig.{text} algorithm {:?} is not supported: write \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\"",
                    table.algorithm.get_ref()
                ),
            );
            continue;
        };
        let Some(secret) = read_secret(&table.secret_file, base, text, diags) else {
            continue;
        };
        match TsigKey::new(key_name, algorithm, secret) {
            Ok(key) => {
                keys.insert(text.clone(), key);
            }
            Err(e) => diags.error(name.span(), format!("tsig.{text}: {e}")),
        }
    }
    keys
}

/// The secret in a file: base64 (as `tsig-keygen`, `keymgr -t` and `ldns-keygen` print
/// it), surrounding white space ignored.
fn read_secret(file: &Spanned<PathBuf>, base: &Path, key: &str, diags: &mut Diagnostics) -> Option<Vec<u8>> {
    let path = base.join(file.get_ref());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            diags.error(
                file.span(),
                format!("tsig.{key} secret_file {}: {e}", path.display()),
            );
            return None;
        }
    };
    let trimmed = text.trim();
    match base64::engine::general_purpose::STANDARD.decode(trimmed) {
        Ok(secret) if !secret.is_empty() => Some(secret),
        Ok(_) => {
            diags.error(
                file.span(),
                format!("tsig.{key} secret_file {} is empty", path.display()),
            );
            None
        }
        Err(e) => {
            diags.error(
                file.span(),
                format!(
                    "tsig.{key} secret_file {} is not base64 ({e}): put only the secret in it, e.g. the output of `tsig-keygen` or `keymgr -t {key}`",
                    path.display()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::diag::SourceFile;

    const MINIMAL: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster@example.net\"\n";

    fn parse_in(dir: &std::path::Path, text: &str) -> Result<Config, Vec<String>> {
        Config::parse(&SourceFile::new(
            dir.join("spfd.toml"),
            format!("{MINIMAL}{text}"),
        ))
        .map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn transfer_and_keys_are_read_with_the_secret_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.secret"), "c2VjcmV0\n").unwrap();
        let c = parse_in(
            dir.path(),
            "[transfer]\nallow = [\"192.0.2.0/24\", \"2001:db8::1\"]\nnotify = [\"192.0.2.20:53\", \"192.0.2.21\"]\ntsig = \"xfr-key\"\n\
             [tsig.xfr-key]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"k.secret\"\n\
             [push]\nprimary = \"192.0.2.10:5353\"\ntsig = \"xfr-key\"\n",
        )
        .unwrap();
        assert!(c.transfer.allows("192.0.2.9".parse().unwrap()));
        assert!(!c.transfer.allows("198.51.100.1".parse().unwrap()));
        assert_eq!(c.transfer.notify[1].port(), 53);
        assert_eq!(c.tsig["xfr-key"].signer.key(), b"secret");
        assert_eq!(c.tsig["xfr-key"].name.to_string(), "xfr-key.");
        let push = c.push.unwrap();
        assert_eq!((push.primary.port(), push.serve), (5353, true));
        assert!(
            !parse_in(dir.path(), "").unwrap().transfer.is_active(),
            "nobody by default"
        );
    }

    #[test]
    fn bad_transfer_settings_name_line_and_what_to_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.secret"), "not base64!\n").unwrap();
        let err = parse_in(
            dir.path(),
            "[transfer]\nallow = [\"192.0.2\"]\ntsig = \"nokey\"\n[tsig.k1]\nalgorithm = \"hmac-md5\"\nsecret_file = \"bad.secret\"\n\
             [tsig.k2]\nalgorithm = \"hmac-sha512\"\nsecret_file = \"missing.secret\"\n[tsig.k3]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"bad.secret\"\n",
        )
        .unwrap_err();
        let all = err.join("\n");
        assert!(
            all.contains("spfd.toml:5:10: error: transfer allow entry \"192.0.2\""),
            "{all}"
        );
        assert!(
            all.contains("spfd.toml:6:8: error: transfer tsig \"nokey\" names no key"),
            "{all}"
        );
        assert!(
            all.contains("spfd.toml:8:13: error: tsig.k1 algorithm \"hmac-md5\" is not supported"),
            "{all}"
        );
        assert!(
            all.contains("tsig.k2 secret_file") && all.contains("missing.secret"),
            "{all}"
        );
        assert!(
            all.contains("tsig.k3 secret_file") && all.contains("is not base64"),
            "{all}"
        );
        let err = parse_in(dir.path(), "[transfer]\nalow = []\n").unwrap_err();
        assert!(err[0].contains("unknown field `alow`"), "{err:?}");
    }
}
