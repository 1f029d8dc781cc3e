//! The binary's log output: the filter (`SPFD_LOG`) and the line format
//! (`SPFD_LOG_FORMAT`), both read from the environment once at startup.
//!
//! Logs go to stderr: systemd's journal and container runtimes collect it, and stdout
//! stays free for the output of `check`, `records` and the other commands.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // No colour codes inside JSON strings, whatever stderr is.
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
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
}
