//! A policy's own `[transfer]` table: narrows the server's `[transfer]` for this zone.
//!
//! ```toml
//! [transfer]
//! allow = ["192.0.2.20"]     # a source must be in this list and in the server's
//! notify = ["192.0.2.20:53"] # these secondaries instead of the server's list
//! tsig = "zone-key"          # a [tsig.NAME] key of the server config instead of its own
//! ```

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::config::transfer::{parse_net, parse_target};
use crate::diag::Diagnostics;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    #[serde(default)]
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    notify: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    tsig: Option<Spanned<String>>,
}

/// What a policy narrows; `None` keeps the server's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTransfer {
    pub allow: Option<Vec<IpNet>>,
    pub notify: Option<Vec<SocketAddr>>,
    /// A key of the server config's `[tsig.NAME]` tables (checked when transfers are
    /// served: the policy file does not see the server config).
    pub tsig: Option<String>,
}

pub(super) fn validate(raw: RawTransfer, diags: &mut Diagnostics) -> PolicyTransfer {
    let allow = raw.allow.map(|entries| {
        entries
            .iter()
            .filter_map(|e| {
                let net = parse_net(e.get_ref());
                if net.is_none() {
                    diags.error(
                        e.span(),
                        format!("transfer allow entry {:?} is not an address or prefix: write e.g. \"192.0.2.0/24\"", e.get_ref()),
                    );
                }
                net
            })
            .collect()
    });
    let notify = raw.notify.map(|entries| {
        entries
            .iter()
            .filter_map(|e| {
                let addr = parse_target(e.get_ref());
                if addr.is_none() {
                    diags.error(
                        e.span(),
                        format!(
                            "transfer notify entry {:?} is not an address: write e.g. \"192.0.2.20:53\"",
                            e.get_ref()
                        ),
                    );
                }
                addr
            })
            .collect()
    });
    PolicyTransfer {
        allow,
        notify,
        tsig: raw.tsig.map(Spanned::into_inner),
    }
}
