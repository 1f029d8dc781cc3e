//! What one input may cost: the [`Limits`] on what it may expand to, and in time a
//! deadline and the server's shutdown ([`Clock`]), which every reader of untrusted
//! bytes checks between steps so that neither a slow input nor a long import holds the
//! poller (or `spfd serve`'s exit) for longer than that. And [`printable`], for names
//! taken from an input that end up in a log line.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Caps on what one input may expand to and cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decompressed bytes of one report. Real reports are kilobytes to a few
    /// megabytes; a bomb stops here.
    pub max_xml: u64,
    /// Decompressed bytes of all the reports of one input (a zip of many entries).
    pub max_input: u64,
    /// Reports one input (a mail, a zip) may hold.
    pub max_reports: usize,
    /// Records (rows) in one report: the largest real reports hold thousands.
    pub max_rows: usize,
    /// Entries in one zip archive.
    pub max_entries: usize,
    /// MIME parts and declared multipart and message types in one mail.
    pub max_mail_parts: usize,
    /// Bytes of one mail (report mails are kilobytes to a few megabytes; parsing
    /// holds about twice the mail).
    pub max_mail: u64,
    /// How long one input may take to read.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_xml: 64 << 20,
            max_input: 256 << 20,
            max_reports: 64,
            max_rows: 200_000,
            max_entries: 256,
            max_mail_parts: 500,
            max_mail: 32 << 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// Why reading stopped before the input was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    #[error("reading it took longer than {0:?} (an input built to be slow?); not read")]
    Deadline(Duration),
    #[error("spfd is stopping; it is read again at the next start")]
    Shutdown,
}

/// The deadline of one input and the shutdown signal.
#[derive(Debug, Clone)]
pub struct Clock {
    deadline: Instant,
    allowed: Duration,
    stop: Option<CancellationToken>,
}

impl Clock {
    /// From now, `allowed` to go; `stop` cancelled ends the reading at once.
    pub fn start(allowed: Duration, stop: Option<CancellationToken>) -> Clock {
        Clock {
            deadline: Instant::now() + allowed,
            allowed,
            stop,
        }
    }

    /// An error once the deadline has passed or shutdown began.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.stop.as_ref().is_some_and(CancellationToken::is_cancelled) {
            Err(Interrupted::Shutdown)
        } else if Instant::now() > self.deadline {
            Err(Interrupted::Deadline(self.allowed))
        } else {
            Ok(())
        }
    }

    /// Whether shutdown began (the input is then left where it is, not set aside).
    pub fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(CancellationToken::is_cancelled)
    }
}

/// A name taken from an input (a zip entry, an attachment, a file name) as it may
/// appear in one log or error line: control characters (a newline would start a forged
/// line) and backslashes are escaped, and it is cut at 1,000 characters.
pub fn printable(name: &str) -> String {
    const MAX: usize = 1000;
    let mut out = String::with_capacity(name.len().min(MAX));
    for (i, c) in name.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() || c == '\\' || is_invisible(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Line and paragraph separators and bidirectional overrides: not control characters,
/// but they reorder or break a line on a terminal.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_a_line() {
        assert_eq!(printable("report.xml"), "report.xml");
        assert_eq!(
            printable("a.xml\n2026-01-01 INFO forged"),
            "a.xml\\u{a}2026-01-01 INFO forged"
        );
        assert_eq!(printable("x\r\u{1b}[31m\\"), "x\\u{d}\\u{1b}[31m\\u{5c}");
        assert_eq!(printable(&"é".repeat(1200)).chars().count(), 1001);
    }

    #[test]
    fn a_clock_stops_at_shutdown_and_after_its_deadline() {
        let stop = CancellationToken::new();
        let clock = Clock::start(Duration::from_secs(3600), Some(stop.clone()));
        assert_eq!(clock.check(), Ok(()));
        stop.cancel();
        assert_eq!(clock.check(), Err(Interrupted::Shutdown));
        let late = Clock::start(Duration::ZERO, None);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(late.check(), Err(Interrupted::Deadline(Duration::ZERO)));
    }
}
