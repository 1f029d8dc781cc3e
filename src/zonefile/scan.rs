//! Splitting an RFC 1035 master file into entries (RFC 1035 5.1): comments, quoted
//! strings, parentheses that continue an entry over several lines, and where each
//! token was written, so that every later error names its line. The record data of an
//! entry is parsed by hickory's zone-file parser, one entry at a time.

/// One token of an entry, as written (quotes and escapes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub quoted: bool,
    /// 1-based line and column of its first character.
    pub line: usize,
    pub column: usize,
}

/// One entry: a directive or a resource record, its tokens in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The line starts with a blank: the record belongs to the previous owner.
    pub blank_start: bool,
    pub tokens: Vec<Token>,
}

/// A syntax error at a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every entry of a file's text.
pub fn entries(text: &str) -> Result<Vec<Entry>, ScanError> {
    let mut out = Vec::new();
    let mut current = Entry::default();
    let (mut line, mut column) = (1usize, 1usize);
    // Where the parenthesis still open was written.
    let mut open: Option<(usize, usize)> = None;
    let mut chars = text.chars().peekable();
    let mut at_line_start = true;
    while let Some(c) = chars.next() {
        let (here_line, here_column) = (line, column);
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
        match c {
            '\n' => {
                if open.is_none() {
                    if current.tokens.is_empty() {
                        // A blank or comment line starts nothing.
                        current.blank_start = false;
                    } else {
                        out.push(std::mem::take(&mut current));
                    }
                }
                at_line_start = true;
                continue;
            }
            ' ' | '\t' | '\r' => {
                if at_line_start && open.is_none() && current.tokens.is_empty() && c != '\r' {
                    current.blank_start = true;
                }
            }
            ';' => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '(' => {
                if open.is_some() {
                    return Err(error(
                        here_line,
                        here_column,
                        "nested '(': close the first one before",
                    ));
                }
                open = Some((here_line, here_column));
            }
            ')' => {
                if open.take().is_none() {
                    return Err(error(here_line, here_column, "')' without an opening '('"));
                }
            }
            '"' => {
                let mut token = String::from('"');
                let mut closed = false;
                while let Some(c) = chars.next() {
                    token.push(c);
                    if c == '\n' {
                        line += 1;
                        column = 1;
                    } else {
                        column += 1;
                    }
                    if c == '\\' {
                        if let Some(next) = chars.next() {
                            token.push(next);
                            column += 1;
                        }
                    } else if c == '"' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(error(
                        here_line,
                        here_column,
                        "quoted string without its closing '\"'",
                    ));
                }
                current.tokens.push(Token {
                    text: token,
                    quoted: true,
                    line: here_line,
                    column: here_column,
                });
            }
            _ => {
                let mut token = String::from(c);
                if c == '\\'
                    && let Some(next) = chars.next()
                {
                    token.push(next);
                    column += 1;
                }
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, ';' | '(' | ')' | '"') {
                        break;
                    }
                    chars.next();
                    column += 1;
                    token.push(next);
                    if next == '\\'
                        && let Some(escaped) = chars.next()
                    {
                        column += 1;
                        token.push(escaped);
                    }
                }
                current.tokens.push(Token {
                    text: token,
                    quoted: false,
                    line: here_line,
                    column: here_column,
                });
            }
        }
        at_line_start = false;
    }
    if let Some((line, column)) = open {
        return Err(error(line, column, "'(' is never closed"));
    }
    if !current.tokens.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn error(line: usize, column: usize, message: &str) -> ScanError {
    ScanError {
        line,
        column,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(e: &Entry) -> Vec<&str> {
        e.tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn entries_follow_lines_parentheses_comments_and_quotes() {
        let text = "$TTL 300 ; default\n\
                    @ IN SOA ns1 host ( 1 ; serial\n  2 3 4 5 )\n\
                    \tIN TXT \"a;b\" \"c\\\"d\"\n\
                    \n; only a comment\n\
                    www A 192.0.2.1";
        let got = entries(text).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(words(&got[0]), ["$TTL", "300"]);
        assert_eq!(
            words(&got[1]),
            ["@", "IN", "SOA", "ns1", "host", "1", "2", "3", "4", "5"]
        );
        assert_eq!(got[1].tokens[6].line, 3);
        assert!(got[2].blank_start);
        assert_eq!(words(&got[2]), ["IN", "TXT", "\"a;b\"", "\"c\\\"d\""]);
        assert_eq!((got[3].tokens[0].line, got[3].tokens[0].column), (7, 1));
        assert!(!got[3].blank_start);
    }

    #[test]
    fn unbalanced_input_names_its_line() {
        let e = entries("a A 1.2.3.4\nb TXT ( \"x\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        let e = entries("a A 1.2.3.4 )\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 13));
        let e = entries("\n\nb TXT \"x\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7));
    }
}
