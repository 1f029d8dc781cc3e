//! Diagnostics for configuration and policy files: every error and warning names
//! `file:line:column` and says in words what is wrong and what to write instead.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A file read into memory, kept so byte offsets (toml spans) can be turned into
/// line and column numbers when a problem is reported.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Reads a file; the error is already a diagnostic naming the file.
    pub fn read(path: &Path) -> Result<Self, Diagnostic> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_bytes(path, bytes),
            Err(e) => Err(Diagnostic {
                severity: Severity::Error,
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read file: {e}"),
            }),
        }
    }

    /// A file's bytes as text; a file that is not UTF-8 is an error at the first bad
    /// byte (line, column and byte offset).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, Diagnostic> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let bad = e.as_bytes()[offset];
                let valid = std::str::from_utf8(&e.as_bytes()[..offset]).unwrap_or_default();
                let prefix = Self::new(path, valid);
                let (line, column) = prefix.locate(offset);
                Err(Diagnostic {
                    severity: Severity::Error,
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: format!(
                        "the file is not UTF-8: byte {offset} is 0x{bad:02x}; TOML files must be UTF-8"
                    ),
                })
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    pub fn diagnostic(
        &self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.locate(span.start);
        Diagnostic {
            severity,
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Turns a toml parse error (syntax, type or unknown key) into a diagnostic.
    pub fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let span = e.span().unwrap_or(0..0);
        self.diagnostic(Severity::Error, span, e.message().trim().to_string())
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one place. `line` and `column` are 1-based; 0 means the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {kind}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {kind}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Collects the diagnostics of one file while it is validated, so that one run
/// reports every problem, not only the first.
#[derive(Debug)]
pub struct Diagnostics<'a> {
    source: &'a SourceFile,
    pub items: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(source: &'a SourceFile) -> Self {
        Self {
            source,
            items: Vec::new(),
        }
    }

    pub fn source(&self) -> &'a SourceFile {
        self.source
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.source.diagnostic(Severity::Error, span, message);
        self.items.push(d);
    }

    pub fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.source.diagnostic(Severity::Warning, span, message);
        self.items.push(d);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let src = SourceFile::new("p.toml", "a = 1\nbé = 2\n");
        assert_eq!(src.locate(0), (1, 1));
        assert_eq!(src.locate(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters
        assert_eq!(src.locate(12), (2, 6));
    }

    #[test]
    fn display_names_file_line_column() {
        let src = SourceFile::new("dir/p.toml", "x\ny = 2");
        let d = src.diagnostic(Severity::Error, 2..3, "bad");
        assert_eq!(d.to_string(), "dir/p.toml:2:1: error: bad");
    }
}
