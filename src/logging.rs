//! The binary's log output: the filter (`SPFD_LOG`) and the line format
//! (`SPFD_LOG_FORMAT`), both read from the environment once at startup.
//!
//! Logs go to stderr: systemd's journal and container runtimes collect it, and stdout
//! stays free for the output of `check`, `records` and the other commands.
//!
//! What a client or a file controls cannot forge or flood log lines: names and paths
//! are written through [`Escaped`], every event is one line whatever it holds, and
//! events one packet can cause pass a [`LogLimit`].

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable that selects the line format.
pub const FORMAT_VAR: &str = "SPFD_LOG_FORMAT";

/// The environment variable that holds the filter directives (`EnvFilter` syntax).
pub const FILTER_VAR: &str = "SPFD_LOG";

/// hickory-server logs two info lines per query: keep it at warn unless asked.
const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn";

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal (the default).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`),
    /// for log collectors.
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{FORMAT_VAR}={value:?} is not a log format: write `text` (the default) or `json`")]
pub struct UnknownFormat {
    value: String,
}

impl LogFormat {
    /// Parses a value of `SPFD_LOG_FORMAT`; an empty value means the default.
    pub fn parse(value: &str) -> Result<LogFormat, UnknownFormat> {
        match value.trim() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownFormat {
                value: other.to_string(),
            }),
        }
    }

    /// The format named by `SPFD_LOG_FORMAT`, or text when it is not set.
    pub fn from_env() -> Result<LogFormat, UnknownFormat> {
        match std::env::var(FORMAT_VAR) {
            Ok(value) => LogFormat::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Err(std::env::VarError::NotUnicode(raw)) => Err(UnknownFormat {
                value: raw.to_string_lossy().into_owned(),
            }),
        }
    }
}

/// Installs the global subscriber from the environment. Call once, before any logging;
/// an unknown format is an error, so a typo does not silently change what collectors get.
pub fn init_from_env() -> Result<(), UnknownFormat> {
    let format = LogFormat::from_env()?;
    let filter = EnvFilter::try_from_env(FILTER_VAR).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLine { ansi });
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        // No colour codes inside JSON strings, whatever stderr is.
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

/// Shows outside text (a query or zone name, a file name, a path) with its control
/// characters escaped (`\n`, `\u{1b}`), so that it cannot start a log line of its own
/// or drive a terminal.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapeControls(f), "{}", self.0)
    }
}

impl<T: fmt::Display> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Characters that end or rewrite a line: the C0 and C1 controls and Unicode's line
/// and paragraph separators.
fn is_line_breaking(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

struct EscapeControls<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeControls<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for part in s.split_inclusive(is_line_breaking) {
            match part.chars().last() {
                Some(c) if is_line_breaking(c) => {
                    self.0.write_str(&part[..part.len() - c.len_utf8()])?;
                    write!(self.0, "{}", c.escape_default())?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

/// The last guard: stderr, with every control byte inside an event escaped (`\x0a`),
/// so that an event is one line even if outside text reached it unescaped. The
/// formatter hands each event over in one write, ending in its newline; colour codes
/// (ESC) are kept when colours are on.
#[derive(Clone, Copy)]
struct OneLine {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLine;

    fn make_writer(&'a self) -> OneLine {
        *self
    }
}

impl io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&one_line(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `event` with its control bytes escaped, but for its final newline, tabs and (with
/// `ansi`) ESC.
fn one_line(event: &[u8], ansi: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let escape = |b: u8| (b < 0x20 || b == 0x7f) && b != b'\t' && !(ansi && b == 0x1b);
    if !body.iter().any(|&b| escape(b)) {
        return event.into();
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        if escape(b) {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(end);
    out.into()
}

/// A bound on log lines one kind of per-packet event writes (a refused transfer, a
/// refused connection): the first [`LogLimit::BURST`] of each interval are logged, the
/// rest counted, and the count logged as one line when the interval ends ("52 more
/// transfer refusals from 3 sources in the last 10 s"): by the next event, or by
/// [`summarise_floods`] when no event comes. A flood from one client costs a few lines
/// per interval, not one per packet.
pub struct LogLimit {
    /// What the events are, plural, for the summary line.
    what: &'static str,
    window: Mutex<Window>,
    /// Listed in [`FLOODED`] (once its first event went unlogged).
    listed: AtomicBool,
}

/// The limits that have left events unlogged, for [`summarise_floods`].
static FLOODED: Mutex<Vec<&'static LogLimit>> = Mutex::new(Vec::new());

/// Logs the count of every flood whose interval ended without a later event to log
/// it, once per [`LogLimit::INTERVAL`], until `stop`.
pub async fn summarise_floods(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LogLimit::INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let limits = FLOODED.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for limit in limits {
            if let Some(summary) = limit.end_interval(Instant::now()) {
                tracing::warn!("{summary}");
            }
        }
    }
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
    /// Sources of the suppressed events (bounded: past the bound they are still
    /// counted, their sources not).
    sources: HashSet<IpAddr, BuildHasherDefault<DefaultHasher>>,
}

impl LogLimit {
    /// Events logged per interval before they are only counted.
    pub const BURST: u32 = 5;
    pub const INTERVAL: Duration = Duration::from_secs(10);
    /// Distinct sources remembered per interval.
    const MAX_SOURCES: usize = 4096;

    pub const fn new(what: &'static str) -> LogLimit {
        LogLimit {
            what,
            window: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
                sources: HashSet::with_hasher(BuildHasherDefault::new()),
            }),
            listed: AtomicBool::new(false),
        }
    }

    /// Whether to log this event from `source`; when it is the first of a new
    /// interval, the count of the previous one is logged first.
    pub fn allow(&'static self, source: IpAddr) -> bool {
        self.allow_from(Some(source))
    }

    /// [`LogLimit::allow`] for an event whose source is not known (a failed receive).
    pub fn allow_unsourced(&'static self) -> bool {
        self.allow_from(None)
    }

    fn allow_from(&'static self, source: Option<IpAddr>) -> bool {
        let (log, summary) = self.note(source, Instant::now());
        if let Some(summary) = summary {
            tracing::warn!("{summary}");
        }
        if !log && !self.listed.swap(true, Ordering::Relaxed) {
            FLOODED.lock().unwrap_or_else(|e| e.into_inner()).push(self);
        }
        log
    }

    /// The summary of the interval in progress when it has ended by `now` and left
    /// events unlogged; the next event starts a new interval.
    fn end_interval(&self, now: Instant) -> Option<String> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let start = window.start?;
        let span = now.saturating_duration_since(start);
        if span < Self::INTERVAL || window.suppressed == 0 {
            return None;
        }
        let ended = std::mem::take(&mut *window);
        self.summary(&ended, span)
    }

    /// Counts an event at `now`: whether to log it, and the summary of the interval
    /// that ended before it, if events went unlogged there.
    fn note(&self, source: Option<IpAddr>, now: Instant) -> (bool, Option<String>) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let start = *window.start.get_or_insert(now);
        let mut summary = None;
        if now.saturating_duration_since(start) >= Self::INTERVAL {
            let ended = std::mem::take(&mut *window);
            window.start = Some(now);
            summary = self.summary(&ended, now.duration_since(start));
        }
        if window.logged < Self::BURST {
            window.logged += 1;
            return (true, summary);
        }
        window.suppressed += 1;
        if let Some(source) = source
            && window.sources.len() < Self::MAX_SOURCES
        {
            window.sources.insert(source);
        }
        (false, summary)
    }

    fn summary(&self, ended: &Window, span: Duration) -> Option<String> {
        if ended.suppressed == 0 {
            return None;
        }
        let more = match ended.sources.len() >= Self::MAX_SOURCES {
            true => "or more ",
            false => "",
        };
        Some(format!(
            "{} more {} from {} {more}sources in the last {} s (not logged one by one)",
            ended.suppressed,
            self.what,
            ended.sources.len(),
            span.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_unknown_ones_name_the_accepted_values() {
        for (value, expected) in [
            ("", Ok(LogFormat::Text)),
            ("text", Ok(LogFormat::Text)),
            ("json", Ok(LogFormat::Json)),
            (" json\n", Ok(LogFormat::Json)),
        ] {
            assert_eq!(LogFormat::parse(value), expected, "{value:?}");
        }
        let err = LogFormat::parse("JSON").unwrap_err().to_string();
        assert_eq!(
            err,
            "SPFD_LOG_FORMAT=\"JSON\" is not a log format: write `text` (the default) or `json`"
        );
    }

    #[test]
    fn escaped_text_stays_on_one_line() {
        let shown = Escaped("a\nb\r\u{1b}[31mc\u{2028}d.example.").to_string();
        assert_eq!(shown, "a\\nb\\r\\u{1b}[31mc\\u{2028}d.example.");
        assert_eq!(Escaped("mail.example.").to_string(), "mail.example.");
    }

    #[test]
    fn an_event_with_a_newline_inside_is_one_line() {
        assert_eq!(&*one_line(b"plain\n", false), b"plain\n");
        assert_eq!(&*one_line(b"a\nINFO forged\n", false), b"a\\x0aINFO forged\n");
        assert_eq!(&*one_line(b"\x1b[2mdim\x1b[0m\n", true), b"\x1b[2mdim\x1b[0m\n");
        assert_eq!(&*one_line(b"\x1b[2m\n", false), b"\\x1b[2m\n");
    }

    #[test]
    fn a_flood_is_a_few_lines_and_one_summary_per_interval() {
        let limit = LogLimit::new("transfer refusals");
        let start = Instant::now();
        let source = |i: u8| Some(IpAddr::from([192, 0, 2, i % 3]));
        let logged = (0..1000)
            .filter(|&i| limit.note(source(i as u8), start).0)
            .count();
        assert_eq!(logged, LogLimit::BURST as usize);
        let (log, summary) = limit.note(source(0), start + LogLimit::INTERVAL);
        assert!(log, "a new interval logs again");
        assert_eq!(
            summary.as_deref(),
            Some("995 more transfer refusals from 3 sources in the last 10 s (not logged one by one)")
        );
        // An interval with nothing unlogged ends without a summary.
        let (_, summary) = limit.note(None, start + LogLimit::INTERVAL * 2);
        assert_eq!(summary, None);
    }

    #[test]
    fn a_flood_that_stops_is_summarised_when_its_interval_ends() {
        let limit = LogLimit::new("refused admin connections");
        let start = Instant::now();
        for _ in 0..100 {
            limit.note(Some(IpAddr::from([192, 0, 2, 1])), start);
        }
        assert_eq!(
            limit.end_interval(start + LogLimit::INTERVAL / 2),
            None,
            "not over yet"
        );
        assert_eq!(
            limit.end_interval(start + LogLimit::INTERVAL).as_deref(),
            Some("95 more refused admin connections from 1 sources in the last 10 s (not logged one by one)")
        );
        assert_eq!(
            limit.end_interval(start + LogLimit::INTERVAL * 3),
            None,
            "summarised once"
        );
        let (log, summary) = limit.note(None, start + LogLimit::INTERVAL * 3);
        assert!(log && summary.is_none());
    }
}
