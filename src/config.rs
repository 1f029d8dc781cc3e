//! The server configuration file: where to listen, which names to serve as NS and SOA,
//! where upstream DNS is, and where the policy files live.
//!
//! Every struct denies unknown keys; relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, SourceFile};
use crate::names;

mod admin;
mod backend;
mod dnssec;
mod reports;
mod size;
pub mod transfer;

use crate::dns::rrl::RrlConfig;
pub use admin::{AdminConfig, AdminLimits, DEFAULT_ADMIN_LISTEN, MIN_TOKEN_LENGTH};
use admin::{RawAdmin, parse_admin};
pub use backend::BackendConfig;
pub use dnssec::DnssecConfig;
pub use reports::{EvidenceTrust, ReportSource, Reports, is_date, parse_report_source};
use reports::{RawReports, parse_reports};
pub use transfer::{PushConfig, TransferConfig};

/// The configuration as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    policies: RawPolicies,
    #[serde(default)]
    admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    alerts: Option<RawAlerts>,
    #[serde(default)]
    reports: RawReports,
    #[serde(default)]
    transfer: transfer::RawTransfer,
    #[serde(default)]
    tsig: std::collections::BTreeMap<Spanned<String>, transfer::RawTsig>,
    #[serde(default)]
    push: Option<transfer::RawPush>,
    #[serde(default)]
    dnssec: dnssec::RawDnssec,
    #[serde(default)]
    backend: backend::RawBackend,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    webhook: Option<Spanned<String>>,
    #[serde(default)]
    command: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Vec<SocketAddr>,
    nameservers: Spanned<Vec<Spanned<String>>>,
    hostmaster: Spanned<String>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    tcp_connections: Option<Spanned<i64>>,
    #[serde(default)]
    tcp_idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    tcp_connections_per_source: Option<Spanned<i64>>,
    #[serde(default)]
    tcp_message_timeout: Option<Spanned<String>>,
    #[serde(default)]
    workers: Option<Spanned<i64>>,
    #[serde(default)]
    rrl: RawRrl,
}

/// `[server.rrl]`: response rate limiting over UDP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRrl {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    responses_per_second: Option<Spanned<i64>>,
    #[serde(default)]
    slip: Option<Spanned<i64>>,
    #[serde(default)]
    ipv4_prefix_length: Option<Spanned<i64>>,
    #[serde(default)]
    ipv6_prefix_length: Option<Spanned<i64>>,
    /// `None`: the default (loopback); a list replaces it.
    #[serde(default)]
    whitelist: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default)]
    nameservers: Option<Vec<SocketAddr>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    refresh_min: Option<Spanned<String>>,
    #[serde(default)]
    refresh_max: Option<Spanned<String>>,
    #[serde(default)]
    max_stale: Option<Spanned<String>>,
    #[serde(default)]
    hold_down: Option<Spanned<String>>,
    /// "off" or "validate".
    #[serde(default)]
    dnssec: Option<Spanned<String>>,
    /// DNSKEY records (zone-file form) to trust in place of the root's keys.
    #[serde(default)]
    trust_anchors: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    #[serde(default)]
    dir: Option<PathBuf>,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 53)),
        SocketAddr::from(([0u16; 8], 53)),
    ]
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// NS names served at every zone apex; the first is the SOA MNAME.
    pub nameservers: Vec<Name>,
    /// SOA RNAME, as a domain name (`hostmaster.example.net.`).
    pub hostmaster: Name,
    /// Where state that must survive a restart lives (zone serials, later the
    /// last good upstream answers).
    pub state_dir: PathBuf,
    pub upstream: UpstreamConfig,
    pub policy_dir: PathBuf,
    pub tcp: crate::dns::tcp::TcpLimits,
    /// UDP worker threads (one SO_REUSEPORT socket each) per listen address; default
    /// the number of cores.
    pub workers: usize,
    /// The admin HTTP server (metrics, health, status page); off when `None`.
    pub admin: Option<AdminConfig>,
    /// Where alerts go; off when `None`.
    pub alerts: Option<crate::alerts::AlertConfig>,
    pub reports: Reports,
    pub rrl: RrlConfig,
    /// `[transfer]`: zone transfers out and NOTIFY (see [`crate::xfr`]).
    pub transfer: TransferConfig,
    /// `[tsig.NAME]`: TSIG keys by name.
    pub tsig: crate::tsig::Keyring,
    /// `[push]`: RFC 2136 updates to an existing primary (see [`crate::push`]).
    pub push: Option<PushConfig>,
    pub dnssec: DnssecConfig,
    /// `[backend]`: bounds on zone transfers in (see [`crate::backend`]).
    pub backend: BackendConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `None`: the system resolver configuration (/etc/resolv.conf).
    pub nameservers: Option<Vec<SocketAddr>>,
    pub timeout: Duration,
    /// Third-party records are re-resolved at their TTL, but never more often than
    /// this (a provider with TTL 5 would otherwise be asked every 5 seconds)...
    pub refresh_min: Duration,
    /// ...and never less often than this (a TTL of a week would hide a change).
    pub refresh_max: Duration,
    /// A last good result older than this is reported as an error (still served).
    pub max_stale: Duration,
    /// A range a provider drops stays authorised this long before it leaves the record.
    pub hold_down: Duration,
    /// `dnssec = "validate"`: provider answers are DNSSEC-validated; a bogus one counts
    /// as an upstream failure.
    pub validate: bool,
    /// `trust_anchors`: a file of DNSKEY records trusted instead of the root's keys
    /// (private roots, tests); `None`: the IANA root keys.
    pub trust_anchors: Option<PathBuf>,
}

const DEFAULT_STATE_DIR: &str = "/var/lib/spfd";
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_REFRESH_MIN: Duration = Duration::from_secs(30);
const DEFAULT_REFRESH_MAX: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(7 * 86400);
const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(48 * 3600);

impl Config {
    /// Reads and validates a config file; every problem is reported with file:line:column.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let src = SourceFile::read(path).map_err(|d| vec![d])?;
        Self::parse(&src)
    }

    pub fn parse(src: &SourceFile) -> Result<Config, Vec<Diagnostic>> {
        let raw: RawConfig = toml::from_str(&src.text).map_err(|e| vec![src.toml_error(&e)])?;
        let mut diags = Diagnostics::new(src);
        let base = src.path.parent().unwrap_or(Path::new("."));
        let nameservers = parse_nameservers(&raw.server.nameservers, &mut diags);
        let hostmaster = parse_hostmaster(&raw.server.hostmaster, &mut diags);
        let up = &raw.upstream;
        let mut duration = |value: &Option<Spanned<String>>, what: &str, default: Duration| {
            value
                .as_ref()
                .map_or(Some(default), |t| parse_duration(t, what, &mut diags))
        };
        let timeout = duration(&up.timeout, "upstream timeout", DEFAULT_UPSTREAM_TIMEOUT);
        let refresh_min = duration(&up.refresh_min, "upstream refresh_min", DEFAULT_REFRESH_MIN);
        let refresh_max = duration(&up.refresh_max, "upstream refresh_max", DEFAULT_REFRESH_MAX);
        let max_stale = duration(&up.max_stale, "upstream max_stale", DEFAULT_MAX_STALE);
        let hold_down = duration(&up.hold_down, "upstream hold_down", DEFAULT_HOLD_DOWN);
        if let (Some(min), Some(max)) = (refresh_min, refresh_max)
            && min > max
        {
            let span = up.refresh_min.as_ref().map_or(0..0, |s| s.span());
            diags.error(span, "upstream refresh_min is longer than refresh_max");
        }
        let tcp = parse_tcp(&raw.server, &mut diags);
        let workers = positive_count(&raw.server.workers, "server workers", &mut diags)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let admin = raw.admin.as_ref().and_then(|a| parse_admin(a, base, &mut diags));
        let alerts = raw.alerts.as_ref().and_then(|a| parse_alerts(a, &mut diags));
        let reports = parse_reports(&raw.reports, base, &mut diags);
        let rrl = parse_rrl(&raw.server.rrl, &mut diags);
        let tsig = transfer::parse_keys(&raw.tsig, base, &mut diags);
        let transfer = transfer::parse_transfer(&raw.transfer, &tsig, &mut diags);
        let push = raw
            .push
            .as_ref()
            .and_then(|p| transfer::parse_push(p, &tsig, &mut diags));
        let dnssec = dnssec::parse_dnssec(&raw.dnssec, &mut diags);
        let backend = backend::parse_backend(&raw.backend, &mut diags);
        let validate = dnssec::parse_upstream_dnssec(&raw.upstream.dnssec, &mut diags);
        let trust_anchors = dnssec::parse_trust_anchors(&raw.upstream.trust_anchors, base, &mut diags);
        if raw.server.listen.is_empty() {
            diags.error(
                0..0,
                "server listen is empty: give at least one address, e.g. listen = [\"0.0.0.0:53\"]",
            );
        }
        if diags.has_errors() {
            return Err(diags.items);
        }
        Ok(Config {
            path: src.path.clone(),
            listen: raw.server.listen,
            nameservers,
            hostmaster: hostmaster.expect("checked above"),
            state_dir: base.join(raw.server.state_dir.unwrap_or(DEFAULT_STATE_DIR.into())),
            upstream: UpstreamConfig {
                nameservers: raw.upstream.nameservers,
                timeout: timeout.expect("checked above"),
                refresh_min: refresh_min.expect("checked above"),
                refresh_max: refresh_max.expect("checked above"),
                max_stale: max_stale.expect("checked above"),
                hold_down: hold_down.expect("checked above"),
                validate,
                trust_anchors,
            },
            policy_dir: base.join(raw.policies.dir.unwrap_or("policies".into())),
            tcp,
            workers,
            admin,
            alerts,
            reports,
            rrl,
            transfer,
            tsig,
            push,
            dnssec,
            backend,
        })
    }
}

/// `tcp_connections` and `tcp_connections_per_source` (at least 1, the share at most
/// the cap), `tcp_idle_timeout` and `tcp_message_timeout`.
fn parse_tcp(server: &RawServer, diags: &mut Diagnostics) -> crate::dns::tcp::TcpLimits {
    let mut limits = crate::dns::tcp::TcpLimits::default();
    if let Some(n) = positive_count(&server.tcp_connections, "server tcp_connections", diags) {
        limits.max_connections = n;
    }
    let per_source = &server.tcp_connections_per_source;
    if let Some(n) = positive_count(per_source, "server tcp_connections_per_source", diags) {
        if n > limits.max_connections {
            let span = per_source.as_ref().map_or(0..0, |s| s.span());
            diags.error(
                span,
                format!(
                    "server tcp_connections_per_source ({n}) is above tcp_connections ({})",
                    limits.max_connections
                ),
            );
        }
        limits.per_source = Some(n);
    }
    if let Some(idle) = &server.tcp_idle_timeout
        && let Some(d) = parse_duration(idle, "server tcp_idle_timeout", diags)
    {
        limits.idle_timeout = d;
    }
    if let Some(t) = &server.tcp_message_timeout
        && let Some(d) = parse_duration(t, "server tcp_message_timeout", diags)
    {
        limits.message_timeout = d;
    }
    limits
}

/// `[alerts]`: an http(s) webhook and/or a command (program and arguments).
fn parse_alerts(raw: &RawAlerts, diags: &mut Diagnostics) -> Option<crate::alerts::AlertConfig> {
    if let Some(url) = &raw.webhook
        && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
    {
        diags.error(
            url.span(),
            format!(
                "alerts webhook {:?} must be an http:// or https:// URL",
                url.get_ref()
            ),
        );
        return None;
    }
    if let Some(command) = &raw.command
        && command.get_ref().is_empty()
    {
        diags.error(
            command.span(),
            "alerts command is empty: give the program and its arguments, e.g. [\"/usr/local/bin/notify\"]",
        );
        return None;
    }
    if raw.webhook.is_none() && raw.command.is_none() {
        return None;
    }
    Some(crate::alerts::AlertConfig {
        webhook: raw.webhook.as_ref().map(|w| w.get_ref().clone()),
        command: raw.command.as_ref().map(|c| c.get_ref().clone()),
    })
}

/// `[server.rrl]`: every number within its range, every whitelist entry an address or
/// a prefix.
fn parse_rrl(raw: &RawRrl, diags: &mut Diagnostics) -> RrlConfig {
    let mut rrl = RrlConfig::default();
    if let Some(enabled) = raw.enabled {
        rrl.enabled = enabled;
    }
    let mut number = |value: &Option<Spanned<i64>>, what: &str, max: i64| -> Option<u32> {
        let value = value.as_ref()?;
        match *value.get_ref() {
            n @ 0.. if n <= max => Some(n as u32),
            n => {
                diags.error(
                    value.span(),
                    format!("server.rrl {what} must be between 0 and {max}; got {n}"),
                );
                None
            }
        }
    };
    if let Some(n) = number(&raw.responses_per_second, "responses_per_second", 1_000_000) {
        rrl.responses_per_second = n;
    }
    if let Some(n) = number(&raw.slip, "slip", 100) {
        rrl.slip = n;
    }
    if let Some(n) = number(&raw.ipv4_prefix_length, "ipv4_prefix_length", 32) {
        rrl.ipv4_prefix_length = n as u8;
    }
    if let Some(n) = number(&raw.ipv6_prefix_length, "ipv6_prefix_length", 128) {
        rrl.ipv6_prefix_length = n as u8;
    }
    if let Some(entries) = &raw.whitelist {
        rrl.whitelist = parse_whitelist(entries, diags);
    }
    if rrl.enabled && rrl.responses_per_second == 0 {
        let span = raw.responses_per_second.as_ref().map_or(0..0, |s| s.span());
        diags.error(
            span,
            "server.rrl responses_per_second must be at least 1; to turn RRL off write enabled = false",
        );
    }
    rrl
}

fn parse_whitelist(entries: &[Spanned<String>], diags: &mut Diagnostics) -> Vec<ipnet::IpNet> {
    let mut whitelist = Vec::new();
    for entry in entries {
        let text = entry.get_ref();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => whitelist.push(net.trunc()),
            Err(_) => diags.error(
                entry.span(),
                format!("server.rrl whitelist entry {text:?} is not an address or prefix: write e.g. \"192.0.2.0/24\" or \"2001:db8::1\""),
            ),
        }
    }
    whitelist
}

/// An optional count of at least 1.
fn positive_count(raw: &Option<Spanned<i64>>, what: &str, diags: &mut Diagnostics) -> Option<usize> {
    let count = raw.as_ref()?;
    match usize::try_from(*count.get_ref()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            diags.error(
                count.span(),
                format!("{what} must be at least 1; got {}", count.get_ref()),
            );
            None
        }
    }
}

fn parse_nameservers(raw: &Spanned<Vec<Spanned<String>>>, diags: &mut Diagnostics) -> Vec<Name> {
    if raw.get_ref().is_empty() {
        diags.error(
            raw.span(),
            "server nameservers is empty: list the NS names of spfd's servers, e.g. [\"ns1.example.net\"]",
        );
    }
    raw.get_ref()
        .iter()
        .filter_map(|ns| parse_host_name(ns, "server nameservers entry", diags))
        .collect()
}

/// SOA RNAME: accepts `hostmaster.example.net` or the mailbox form `hostmaster@example.net`.
fn parse_hostmaster(raw: &Spanned<String>, diags: &mut Diagnostics) -> Option<Name> {
    report_name(
        raw,
        "server hostmaster",
        names::parse_mailbox(raw.get_ref()),
        diags,
    )
}

/// A host name (letters, digits, inner hyphens), returned absolute and lower-cased.
fn parse_host_name(raw: &Spanned<String>, what: &str, diags: &mut Diagnostics) -> Option<Name> {
    report_name(raw, what, names::parse_host_name(raw.get_ref()), diags)
}

fn report_name(
    raw: &Spanned<String>,
    what: &str,
    parsed: Result<Name, names::NameError>,
    diags: &mut Diagnostics,
) -> Option<Name> {
    parsed
        .map_err(|why| diags.error(raw.span(), format!("{what} {:?} {why}", raw.get_ref())))
        .ok()
}

pub(crate) fn parse_duration(raw: &Spanned<String>, what: &str, diags: &mut Diagnostics) -> Option<Duration> {
    match humantime::parse_duration(raw.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            diags.error(raw.span(), format!("{what} must be longer than zero"));
            None
        }
        Err(e) => {
            diags.error(
                raw.span(),
                format!(
                    "{what} {:?} is not a duration ({e}): write e.g. \"2s\", \"30s\", \"1h\" or \"7d\"",
                    raw.get_ref()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
        Config::parse(&SourceFile::new("/etc/spfd/spfd.toml", text))
    }

    const MINIMAL: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster@example.net\"\n";

    #[test]
    fn minimal_config_gets_defaults_and_relative_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.nameservers[0].to_string(), "ns1.example.net.");
        assert_eq!(c.hostmaster.to_string(), "hostmaster.example.net.");
        assert_eq!(c.policy_dir, PathBuf::from("/etc/spfd/policies"));
        assert_eq!(c.upstream.timeout, Duration::from_secs(2));
        assert!(c.upstream.nameservers.is_none());
        assert_eq!(c.upstream.refresh_min, Duration::from_secs(30));
        assert_eq!(c.upstream.refresh_max, Duration::from_secs(3600));
        assert_eq!(c.upstream.max_stale, Duration::from_secs(7 * 86400));
        assert_eq!(c.upstream.hold_down, Duration::from_secs(48 * 3600));
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn workers_default_to_the_cores_and_must_be_positive() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(parse(MINIMAL).unwrap().workers, cores);
        let one = MINIMAL.replace("[server]\n", "[server]\nworkers = 1\n");
        assert_eq!(parse(&one).unwrap().workers, 1);
        let zero = MINIMAL.replace("[server]\n", "[server]\nworkers = 0\n");
        let err = parse(&zero).unwrap_err();
        assert!(
            err[0]
                .to_string()
                .contains("spfd.toml:2:11: error: server workers must be at least 1"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_its_position() {
        let err = parse(&format!("{MINIMAL}colour = \"red\"\n")).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].line, 4, "{}", err[0]);
        assert!(err[0].message.contains("unknown field `colour`"), "{}", err[0]);
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let text = "[server]\nnameservers = [\"ns1..example.net\"]\nhostmaster = \"h@example.net\"\n[upstream]\ntimeout = \"soon\"\n";
        let err = parse(text).unwrap_err();
        let shown: Vec<String> = err.iter().map(|d| d.to_string()).collect();
        assert_eq!(err.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("/etc/spfd/spfd.toml:2:16: error:"),
            "{shown:?}"
        );
        assert!(shown[0].contains("empty label"), "{shown:?}");
        assert!(
            shown[1].starts_with("/etc/spfd/spfd.toml:5:11: error:"),
            "{shown:?}"
        );
        assert!(shown[1].contains("not a duration"), "{shown:?}");
    }

    #[test]
    fn upstream_durations_are_read_and_checked() {
        let c = parse(&format!(
            "{MINIMAL}[upstream]\nrefresh_min = \"5s\"\nrefresh_max = \"10m\"\nhold_down = \"1d\"\n"
        ))
        .unwrap();
        assert_eq!(c.upstream.refresh_min, Duration::from_secs(5));
        assert_eq!(c.upstream.refresh_max, Duration::from_secs(600));
        assert_eq!(c.upstream.hold_down, Duration::from_secs(86400));
        let err = parse(&format!("{MINIMAL}[upstream]\nrefresh_min = \"2h\"\n")).unwrap_err();
        assert!(
            err[0].message.contains("refresh_min is longer than refresh_max"),
            "{}",
            err[0]
        );
        assert_eq!(err[0].line, 5);
    }

    #[test]
    fn tcp_fairness_keys_are_read_and_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.tcp.per_source(), 64, "a sixteenth of 1024");
        assert_eq!(c.tcp.message_timeout, Duration::from_secs(2));
        let c = parse(&format!(
            "{MINIMAL}tcp_connections = 20\ntcp_connections_per_source = 5\ntcp_message_timeout = \"500ms\"\n"
        ))
        .unwrap();
        assert_eq!((c.tcp.max_connections, c.tcp.per_source()), (20, 5));
        assert_eq!(c.tcp.message_timeout, Duration::from_millis(500));
        assert_eq!(
            parse(&format!("{MINIMAL}tcp_connections = 20\n"))
                .unwrap()
                .tcp
                .per_source(),
            8
        );
        let err = parse(&format!(
            "{MINIMAL}tcp_connections = 4\ntcp_connections_per_source = 5\n"
        ))
        .unwrap_err();
        assert_eq!((err[0].line, err[0].column), (5, 30), "{}", err[0]);
        assert!(err[0].message.contains("above tcp_connections"), "{}", err[0]);
    }

    #[test]
    fn rrl_is_on_by_default_and_its_keys_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.rrl, RrlConfig::default());
        assert!(c.rrl.enabled);
        assert_eq!((c.rrl.responses_per_second, c.rrl.slip), (200, 2));
        let c = parse(&format!(
            "{MINIMAL}[server.rrl]\nresponses_per_second = 50\nslip = 0\nipv4_prefix_length = 32\nwhitelist = [\"192.0.2.7\", \"2001:db8::/32\"]\n"
        ))
        .unwrap();
        assert_eq!(
            (c.rrl.responses_per_second, c.rrl.slip, c.rrl.ipv4_prefix_length),
            (50, 0, 32)
        );
        assert_eq!(c.rrl.whitelist.len(), 2);
        assert!(
            RrlConfig::default()
                .whitelist
                .iter()
                .any(|n| n.contains(&"127.0.0.2".parse::<std::net::IpAddr>().unwrap()))
        );
        assert!(
            !parse(&format!("{MINIMAL}[server.rrl]\nenabled = false\n"))
                .unwrap()
                .rrl
                .enabled
        );
        let err = parse(&format!(
            "{MINIMAL}[server.rrl]\nwhitelist = [\"192.0.2\"]\nslip = -1\n"
        ))
        .unwrap_err();
        let shown: Vec<String> = err.iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("/etc/spfd/spfd.toml:6:8: error: server.rrl slip"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("/etc/spfd/spfd.toml:5:14: error: server.rrl whitelist"),
            "{shown:?}"
        );
        let err = parse(&format!("{MINIMAL}[server.rrl]\nrate = 5\n")).unwrap_err();
        assert!(err[0].message.contains("unknown field `rate`"), "{}", err[0]);
        assert_eq!(err[0].line, 5, "{}", err[0]);
    }

    #[test]
    fn listen_address_must_parse() {
        let err = parse(&format!("{MINIMAL}listen = [\"localhost:53\"]\n")).unwrap_err();
        assert_eq!(err[0].line, 4, "{}", err[0]);
    }
}
