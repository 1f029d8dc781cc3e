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
    reports: RawReports,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    #[serde(default)]
    dir: Option<PathBuf>,
}

/// `[reports]`: where DMARC aggregate reports arrive (see [`ReportSource`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    #[serde(default)]
    sources: Vec<Spanned<String>>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    imap_batch: Option<Spanned<i64>>,
    #[serde(default)]
    imap_since: Option<Spanned<String>>,
    #[serde(default)]
    max_report_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    imap_ca_file: Option<PathBuf>,
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
    pub upstream: Upstream,
    pub policy_dir: PathBuf,
    pub tcp: crate::dns::tcp::TcpLimits,
    pub reports: Reports,
}

/// Where DMARC aggregate reports are fetched from while serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportSource {
    /// `maildir:PATH`: messages in new/ and cur/; processed ones get the S flag in cur/.
    Maildir(PathBuf),
    /// `dir:PATH`: report files; processed ones move to PATH/processed/.
    Dir(PathBuf),
    /// `imaps://user@host[:port]/MAILBOX` (TLS) or `imap://...` (plain, for tests and
    /// loopback); the user is percent-decoded (`dmarc%40example.com`).
    Imap {
        tls: bool,
        user: String,
        host: String,
        port: u16,
        mailbox: String,
    },
}

/// The `[reports]` table.
#[derive(Debug, Clone)]
pub struct Reports {
    pub sources: Vec<ReportSource>,
    /// The IMAP password, read from this file when needed (never in the config).
    pub password_file: Option<PathBuf>,
    /// How often `spfd serve` polls the sources.
    pub interval: Duration,
    /// Messages fetched from IMAP per round trip.
    pub imap_batch: usize,
    /// IMAP messages older than this date (YYYY-MM-DD) are not fetched.
    pub imap_since: Option<String>,
    /// A report that decompresses to more than this is refused (gzip and zip bombs).
    pub max_report_bytes: u64,
    /// CA certificates (PEM) trusted for `imaps://` besides the Mozilla roots: a
    /// private CA, or a test's.
    pub imap_ca_file: Option<PathBuf>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            sources: Vec::new(),
            password_file: None,
            interval: DEFAULT_REPORTS_INTERVAL,
            imap_batch: DEFAULT_IMAP_BATCH,
            imap_since: None,
            max_report_bytes: DEFAULT_MAX_REPORT_BYTES,
            imap_ca_file: None,
        }
    }
}

const DEFAULT_REPORTS_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_IMAP_BATCH: usize = 50;
const DEFAULT_MAX_REPORT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Upstream {
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
        let reports = parse_reports(&raw.reports, base, &mut diags);
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
            upstream: Upstream {
                nameservers: raw.upstream.nameservers,
                timeout: timeout.expect("checked above"),
                refresh_min: refresh_min.expect("checked above"),
                refresh_max: refresh_max.expect("checked above"),
                max_stale: max_stale.expect("checked above"),
                hold_down: hold_down.expect("checked above"),
            },
            policy_dir: base.join(raw.policies.dir.unwrap_or("policies".into())),
            tcp,
            reports,
        })
    }
}

/// `tcp_connections` (at least 1) and `tcp_idle_timeout`.
fn parse_tcp(server: &RawServer, diags: &mut Diagnostics) -> crate::dns::tcp::TcpLimits {
    let mut limits = crate::dns::tcp::TcpLimits::default();
    if let Some(count) = &server.tcp_connections {
        match usize::try_from(*count.get_ref()) {
            Ok(n) if n > 0 => limits.max_connections = n,
            _ => diags.error(
                count.span(),
                format!(
                    "server tcp_connections must be at least 1; got {}",
                    count.get_ref()
                ),
            ),
        }
    }
    if let Some(idle) = &server.tcp_idle_timeout
        && let Some(d) = parse_duration(idle, "server tcp_idle_timeout", diags)
    {
        limits.idle_timeout = d;
    }
    limits
}

fn parse_reports(raw: &RawReports, base: &Path, diags: &mut Diagnostics) -> Reports {
    let mut reports = Reports {
        sources: parse_report_sources(&raw.sources, base, diags),
        password_file: raw.password_file.as_ref().map(|p| base.join(p)),
        imap_ca_file: raw.imap_ca_file.as_ref().map(|p| base.join(p)),
        ..Reports::default()
    };
    if let Some(interval) = &raw.interval
        && let Some(d) = parse_duration(interval, "reports interval", diags)
    {
        reports.interval = d;
    }
    if let Some(batch) = &raw.imap_batch {
        match usize::try_from(*batch.get_ref()) {
            Ok(n) if n > 0 => reports.imap_batch = n,
            _ => diags.error(batch.span(), "reports imap_batch must be at least 1"),
        }
    }
    if let Some(max) = &raw.max_report_bytes {
        match u64::try_from(*max.get_ref()) {
            Ok(n) if n >= 1024 => reports.max_report_bytes = n,
            _ => diags.error(max.span(), "reports max_report_bytes must be at least 1024"),
        }
    }
    if let Some(since) = &raw.imap_since {
        if is_date(since.get_ref()) {
            reports.imap_since = Some(since.get_ref().clone());
        } else {
            diags.error(
                since.span(),
                "reports imap_since must be a date like \"2026-01-31\"",
            );
        }
    }
    if reports
        .sources
        .iter()
        .any(|s| matches!(s, ReportSource::Imap { .. }))
        && reports.password_file.is_none()
    {
        diags.error(
            0..0,
            "reports: an IMAP source needs password_file = \"FILE\" (the password is never in the config)",
        );
    }
    reports
}

fn parse_report_sources(raw: &[Spanned<String>], base: &Path, diags: &mut Diagnostics) -> Vec<ReportSource> {
    raw.iter()
        .filter_map(|s| match parse_report_source(s.get_ref(), base) {
            Ok(source) => Some(source),
            Err(why) => {
                diags.error(s.span(), format!("reports source {:?} {why}", s.get_ref()));
                None
            }
        })
        .collect()
}

/// `YYYY-MM-DD`.
pub fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `maildir:PATH`, `dir:PATH`, `imaps://user@host[:port]/MAILBOX`, `imap://...`.
pub fn parse_report_source(text: &str, base: &Path) -> Result<ReportSource, String> {
    if let Some(path) = text.strip_prefix("maildir:") {
        return Ok(ReportSource::Maildir(base.join(path)));
    }
    if let Some(path) = text.strip_prefix("dir:") {
        return Ok(ReportSource::Dir(base.join(path)));
    }
    let (tls, rest) = if let Some(rest) = text.strip_prefix("imaps://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("imap://") {
        (false, rest)
    } else {
        return Err("is not a source: write maildir:PATH, dir:PATH or imaps://user@host/MAILBOX".into());
    };
    let (authority, mailbox) = rest.split_once('/').unwrap_or((rest, "INBOX"));
    let Some((user, hostport)) = authority.rsplit_once('@') else {
        return Err("has no user: write imaps://user@host/MAILBOX (an @ in the user as %40)".into());
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("has a bad port {p:?}"))?),
        None => (hostport, if tls { 993 } else { 143 }),
    };
    if host.is_empty() || user.is_empty() {
        return Err("needs a user and a host: imaps://user@host/MAILBOX".into());
    }
    let mailbox = if mailbox.is_empty() { "INBOX" } else { mailbox };
    Ok(ReportSource::Imap {
        tls,
        user: percent_decode(user),
        host: host.to_string(),
        port,
        mailbox: percent_decode(mailbox),
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    let text = raw.get_ref();
    let as_name = match text.split_once('@') {
        Some((local, domain)) => format!("{}.{domain}", local.replace('.', "\\.")),
        None => text.clone(),
    };
    let spanned = Spanned::new(raw.span(), as_name);
    parse_host_name(&spanned, "server hostmaster", diags)
}

/// A fully qualified domain name, returned absolute and lower-cased.
pub(crate) fn parse_host_name(raw: &Spanned<String>, what: &str, diags: &mut Diagnostics) -> Option<Name> {
    match parse_fqdn(raw.get_ref()) {
        Ok(name) => Some(name),
        Err(why) => {
            diags.error(raw.span(), format!("{what} {:?} {why}", raw.get_ref()));
            None
        }
    }
}

/// Parses a domain name as written in a config or policy file: absolute or not,
/// with at least two labels, each a valid DNS label.
pub fn parse_fqdn(text: &str) -> Result<Name, String> {
    let trimmed = text.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("is empty: write a domain name like example.com".into());
    }
    if trimmed.len() > 253 {
        return Err("is longer than 253 octets".into());
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err("has an empty label (two dots in a row)".into());
        }
        if label.len() > 63 {
            return Err(format!("has a label longer than 63 octets ({label:.20}...)"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_\\".contains(*c)))
        {
            return Err(format!(
                "has the character {c:?}, which is not allowed in a domain name"
            ));
        }
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| format!("is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
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
    fn reports_table_is_read_and_checked() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.reports.sources.is_empty());
        assert_eq!(c.reports.interval, Duration::from_secs(900));
        let c = parse(&format!(
            "{MINIMAL}[reports]\nsources = [\"maildir:mail\", \"dir:/srv/in\", \
             \"imaps://dmarc%40example.com@imap.example.com/INBOX\"]\npassword_file = \"imap.pass\"\ninterval = \"5m\"\n"
        ))
        .unwrap();
        assert_eq!(c.reports.interval, Duration::from_secs(300));
        assert_eq!(
            c.reports.password_file,
            Some(PathBuf::from("/etc/spfd/imap.pass"))
        );
        assert_eq!(
            c.reports.sources,
            vec![
                ReportSource::Maildir("/etc/spfd/mail".into()),
                ReportSource::Dir("/srv/in".into()),
                ReportSource::Imap {
                    tls: true,
                    user: "dmarc@example.com".into(),
                    host: "imap.example.com".into(),
                    port: 993,
                    mailbox: "INBOX".into()
                }
            ]
        );
        let err = parse(&format!("{MINIMAL}[reports]\nsources = [\"pop3://x@y\"]\n")).unwrap_err();
        assert_eq!(err[0].line, 5, "{}", err[0]);
        let err = parse(&format!(
            "{MINIMAL}[reports]\nsources = [\"imap://x@y:1430/INBOX\"]\n"
        ))
        .unwrap_err();
        assert!(err[0].message.contains("password_file"), "{}", err[0]);
        let err = parse(&format!("{MINIMAL}[reports]\ncolour = 1\n")).unwrap_err();
        assert!(err[0].message.contains("unknown field"), "{}", err[0]);
    }

    #[test]
    fn listen_address_must_parse() {
        let err = parse(&format!("{MINIMAL}listen = [\"localhost:53\"]\n")).unwrap_err();
        assert_eq!(err[0].line, 4, "{}", err[0]);
    }
}
