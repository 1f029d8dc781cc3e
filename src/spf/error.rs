//! The syntax error of SPF record text: a byte offset and what to write instead.

/// A syntax error in record text, at a byte offset of that text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {message}")]
pub struct ParseError {
    /// Byte offset in the text where the problem is.
    pub offset: usize,
    /// What is wrong, and what to write instead when that is clear.
    pub message: String,
}

impl ParseError {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }

    /// The same error, for text that starts `by` bytes further on.
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        self.offset += by;
        self
    }
}
