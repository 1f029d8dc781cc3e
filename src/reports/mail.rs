//! Report mails. Before mail-parser sees a mail, [`check_shape`] refuses one with more
//! parts or nested messages than any report mail has: mail-parser keeps no depth limit,
//! and some of its own steps (and dropping the parsed tree) recurse once per level of
//! nested message, so ten thousand levels would overflow the stack. The count looks
//! through base64 and quoted-printable bodies as deep as mail-parser decodes them. Then
//! [`leaves`] walks the parsed parts without recursion and takes every part that may
//! hold a report, and the tree is taken apart level by level.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::budget::printable;

/// Why a mail is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    #[error("more than {0} MIME parts or nested messages in one mail; not read")]
    TooComplex(usize),
    #[error("attached messages nested more than {0} deep; not read")]
    TooDeep(usize),
}

/// A part of a mail that may hold a report.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Leaf {
    /// `outer!attachment name` (or `part N`), escaped.
    pub name: String,
    pub bytes: Vec<u8>,
    /// An attachment (of any type), rather than a text part that holds report XML.
    pub binary: bool,
}

/// Levels of encoded messages inside encoded messages that mail-parser decodes and
/// parses (its own constant), plus the mail itself.
const ENCODED_LEVELS: usize = 4;

/// Refuses a mail that counts more than `max_parts` MIME parts and declared
/// `message/...` or `multipart/...` types in all (a liberal count: the word followed by
/// a slash, whitespace or comments between, in any case; and every line that starts
/// with `--`).
pub(super) fn check_shape(bytes: &[u8], max_parts: usize) -> Result<(), MailError> {
    let mut count = 0;
    scan(bytes, 1, max_parts, &mut count);
    if count > max_parts {
        return Err(MailError::TooComplex(max_parts));
    }
    Ok(())
}

fn scan(bytes: &[u8], level: usize, max: usize, count: &mut usize) {
    *count += containers(bytes) + delimiters(bytes);
    if *count > max || level >= ENCODED_LEVELS {
        return;
    }
    if bytes.contains(&b'=') {
        scan(&unquote(bytes), level + 1, max, count);
    }
    for block in blocks(bytes) {
        if *count > max {
            return;
        }
        let decoded = unbase64(block);
        if decoded.len() >= 16 {
            scan(&decoded, level + 1, max, count);
        }
    }
}

/// `message` or `multipart`, then whitespace and (nested) comments, then `/`.
fn containers(bytes: &[u8]) -> usize {
    let mut n = 0;
    for i in 0..bytes.len() {
        let rest = &bytes[i..];
        let word = [&b"message"[..], b"multipart"]
            .into_iter()
            .find(|w| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w));
        if let Some(w) = word
            && next_is_slash(&rest[w.len()..])
        {
            n += 1;
        }
    }
    n
}

fn next_is_slash(bytes: &[u8]) -> bool {
    let mut comment = 0usize;
    for &b in bytes {
        match b {
            b'(' => comment += 1,
            b')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'/' => return true,
            _ => return false,
        }
    }
    false
}

fn delimiters(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"--"))
        .count()
}

/// The runs of lines between blank lines and `--` lines: where a body can be.
fn blocks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut pos = 0;
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"--") {
            out.push(&bytes[start..pos]);
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push(&bytes[start..]);
    out.into_iter().filter(|b| !b.is_empty())
}

/// Base64 as a lenient decoder reads it: every other byte skipped.
fn unbase64(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Quoted-printable decoded: `=XX` a byte, `=` at the end of a line a soft break.
fn unquote(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let next = bytes.get(i + 1..i + 3).unwrap_or_default();
            if let [h, l] = next
                && let (Some(h), Some(l)) = (hex(*h), hex(*l))
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            if next.first() == Some(&b'\n') || next.starts_with(b"\r\n") {
                i += if next[0] == b'\n' { 2 } else { 3 };
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Every part of a mail that may hold a report: attachments of any type (a receiver's
/// content type is not trusted) and text parts that are report XML. Attached messages
/// nested deeper than `max_nesting` are an error.
pub(super) fn leaves(bytes: &[u8], part: &str, max_nesting: usize) -> Result<Vec<Leaf>, MailError> {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut todo = vec![(message, part.to_string(), 0usize)];
    let mut result = Ok(());
    while let Some((mut message, name, depth)) = todo.pop() {
        if result.is_ok() && depth > max_nesting {
            result = Err(MailError::TooDeep(max_nesting));
        }
        for (i, p) in message.parts.iter_mut().enumerate() {
            let inner = match name.is_empty() {
                true => part_name(p.attachment_name(), i),
                false => format!("{name}!{}", part_name(p.attachment_name(), i)),
            };
            // Taken out, so that dropping `message` does not recurse into it.
            match std::mem::take(&mut p.body) {
                PartType::Message(nested) => todo.push((nested, inner, depth + 1)),
                _ if result.is_err() => {}
                PartType::Text(t) | PartType::Html(t) if t.contains("<feedback") => out.push(Leaf {
                    name: inner,
                    bytes: t.into_owned().into_bytes(),
                    binary: false,
                }),
                PartType::Binary(b) | PartType::InlineBinary(b) => out.push(Leaf {
                    name: inner,
                    bytes: b.into_owned(),
                    binary: true,
                }),
                _ => {}
            }
        }
    }
    result.map(|()| out)
}

fn part_name(attachment: Option<&str>, index: usize) -> String {
    attachment.map_or_else(|| format!("part {index}"), printable)
}

/// Dropping a parsed message whose parts hold messages, without recursion (for code
/// that parsed one itself).
pub fn drop_flat(message: Message<'_>) {
    let mut todo = vec![message];
    while let Some(mut m) = todo.pop() {
        for p in &mut m.parts {
            if let PartType::Message(nested) = std::mem::take(&mut p.body) {
                todo.push(nested);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` messages each holding the next as message/rfc822, 32 bytes a level.
    pub fn nested(levels: usize) -> Vec<u8> {
        let mut mail = b"Content-Type: message/rfc822\r\n\r\n".repeat(levels);
        mail.extend_from_slice(b"Subject: x\r\n\r\nhello\r\n");
        mail
    }

    #[test]
    fn nested_messages_are_counted_through_encodings() {
        assert_eq!(check_shape(&nested(40), 100), Ok(()));
        assert_eq!(check_shape(&nested(101), 100), Err(MailError::TooComplex(100)));
        let folded = b"Content-Type: MESSAGE (a (b)) \r\n /rfc822\r\n\r\n".repeat(101);
        assert!(check_shape(&folded, 100).is_err());
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(nested(200));
        let outer = format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n"
        );
        assert!(check_shape(outer.as_bytes(), 100).is_err());
        let quoted = String::from_utf8(nested(200))
            .unwrap()
            .replace("message", "=6Dessage");
        assert!(check_shape(quoted.as_bytes(), 100).is_err());
    }

    #[test]
    fn a_deep_tree_is_walked_and_dropped_without_recursion() {
        // Run on a small stack: recursion over 20,000 levels would overflow it.
        let handle = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| leaves(&nested(20_000), "m", 8))
            .unwrap();
        assert_eq!(handle.join().unwrap(), Err(MailError::TooDeep(8)));
        let handle = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let bytes = nested(20_000);
                drop_flat(MessageParser::default().parse(&bytes).unwrap());
            })
            .unwrap();
        handle.join().unwrap();
    }
}
