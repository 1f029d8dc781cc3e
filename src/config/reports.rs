//! The `[reports]` table: where DMARC aggregate reports arrive, how often `spfd
//! serve` polls for them, and the caps on what one report may decompress to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::parse_duration;
use crate::diag::Diagnostics;

/// `[reports]`: where DMARC aggregate reports arrive (see [`ReportSource`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReports {
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
    #[serde(default)]
    imap_max_message_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    retention: Option<Spanned<String>>,
    #[serde(default)]
    trust: Option<Spanned<String>>,
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
    /// An IMAP message larger than this (by the size the server gives) is not fetched:
    /// it is flagged and one error says so.
    pub imap_max_message_bytes: u64,
    /// Reports whose date range begins longer ago than this are deleted.
    pub retention: Duration,
    /// Which reports the advice and the summary's totals count.
    pub trust: EvidenceTrust,
}

/// `[reports] trust`: which stored reports count as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvidenceTrust {
    /// `"verified"`: reports with an aligned DKIM signature, and those the operator
    /// vouches for (`dir:` sources, `spfd reports import`).
    #[default]
    Trusted,
    /// `"all"`: unverified mail too.
    All,
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
            imap_max_message_bytes: DEFAULT_IMAP_MAX_MESSAGE_BYTES,
            retention: DEFAULT_RETENTION,
            trust: EvidenceTrust::Trusted,
        }
    }
}

const DEFAULT_REPORTS_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_IMAP_BATCH: usize = 20;
const DEFAULT_MAX_REPORT_BYTES: u64 = 64 << 20;
const DEFAULT_IMAP_MAX_MESSAGE_BYTES: u64 = 32 << 20;
const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 86400);
pub(super) fn parse_reports(raw: &RawReports, base: &Path, diags: &mut Diagnostics) -> Reports {
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
    if let Some(retention) = &raw.retention
        && let Some(d) = parse_duration(retention, "reports retention", diags)
    {
        reports.retention = d;
    }
    if let Some(trust) = &raw.trust {
        match trust.get_ref().as_str() {
            "verified" => reports.trust = EvidenceTrust::Trusted,
            "all" => reports.trust = EvidenceTrust::All,
            other => diags.error(
                trust.span(),
                format!(
                    "reports trust {other:?} is not a choice: write \"verified\" (the default) or \"all\""
                ),
            ),
        }
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
    if let Some(max) = &raw.imap_max_message_bytes {
        match u64::try_from(*max.get_ref()) {
            Ok(n) if n >= 1024 => reports.imap_max_message_bytes = n,
            _ => diags.error(max.span(), "reports imap_max_message_bytes must be at least 1024"),
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::diag::{Diagnostic, SourceFile};

    fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
        Config::parse(&SourceFile::new("/etc/spfd/spfd.toml", text))
    }

    const MINIMAL: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster@example.net\"\n";

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
        assert_eq!(c.reports.retention, Duration::from_secs(400 * 86400));
        assert_eq!(c.reports.trust, EvidenceTrust::Trusted);
        let c = parse(&format!(
            "{MINIMAL}[reports]\nretention = \"30d\"\ntrust = \"all\"\n"
        ))
        .unwrap();
        assert_eq!(c.reports.retention, Duration::from_secs(30 * 86400));
        assert_eq!(c.reports.trust, EvidenceTrust::All);
        let err = parse(&format!("{MINIMAL}[reports]\ntrust = \"some\"\n")).unwrap_err();
        assert_eq!(err[0].line, 5, "{}", err[0]);
        assert!(err[0].message.contains("write \"verified\""), "{}", err[0]);
        let err = parse(&format!("{MINIMAL}[reports]\nretention = \"soon\"\n")).unwrap_err();
        assert!(err[0].message.contains("reports retention"), "{}", err[0]);
        let err = parse(&format!("{MINIMAL}[reports]\ncolour = 1\n")).unwrap_err();
        assert!(err[0].message.contains("unknown field"), "{}", err[0]);
        assert_eq!(c.reports.imap_max_message_bytes, 32 << 20);
        let c = parse(&format!("{MINIMAL}[reports]\nimap_max_message_bytes = 65536\n")).unwrap();
        assert_eq!(c.reports.imap_max_message_bytes, 65536);
        let err = parse(&format!("{MINIMAL}[reports]\nimap_max_message_bytes = 10\n")).unwrap_err();
        assert_eq!(err[0].line, 5, "{}", err[0]);
        assert!(err[0].message.contains("at least 1024"), "{}", err[0]);
    }
}
