//! From bytes to reports: the form is detected by magic bytes, never by file name
//! (gzip `1f 8b`, zip `PK\x03\x04`, XML `<`, otherwise an e-mail whose parts are
//! searched, nested multiparts and attached messages included). Every decompression
//! is capped at [`Limits::max_xml`] bytes, so a gzip or zip bomb is one error.

use std::io::Read;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::model::Report;
use super::xml::{self, XmlError};

/// Caps on what one input may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decompressed bytes of one report. Real reports are kilobytes to a few
    /// megabytes; a bomb stops here.
    pub max_xml: u64,
    /// Reports one input (a mail, a zip) may hold.
    pub max_reports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_xml: 64 << 20,
            max_reports: 64,
        }
    }
}

/// Why one report inside an input cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decompresses to more than {limit} bytes (a zip or gzip bomb?); not read")]
    TooLarge { limit: u64 },
    #[error("bad gzip data: {0}")]
    Gzip(String),
    #[error("bad zip archive: {0}")]
    Zip(String),
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("no DMARC report found in it (not XML, gzip, zip or a mail with one attached)")]
    NoReport,
    #[error("more than {0} reports in one input; the rest were not read")]
    TooMany(usize),
}

/// One report found in an input, or why it could not be read. `part` names where in
/// the input it was (a zip entry, a mail attachment), empty for the input itself.
#[derive(Debug)]
pub struct Decoded {
    pub part: String,
    pub result: Result<Report, DecodeError>,
}

/// Every report in `bytes`; at least one item (an error when nothing was found).
pub fn decode(bytes: &[u8], limits: &Limits) -> Vec<Decoded> {
    let mut out = Vec::new();
    decode_into(bytes, "", limits, 0, &mut out);
    if out.is_empty() {
        out.push(Decoded {
            part: String::new(),
            result: Err(DecodeError::NoReport),
        });
    }
    if out.len() > limits.max_reports {
        out.truncate(limits.max_reports);
        out.push(Decoded {
            part: String::new(),
            result: Err(DecodeError::TooMany(limits.max_reports)),
        });
    }
    out
}

/// Deeper than this (a zip in a gzip in a mail in a mail...) is not followed.
const MAX_DEPTH: usize = 4;

#[derive(Debug, PartialEq, Eq)]
enum Form {
    Gzip,
    Zip,
    Xml,
    Mail,
}

fn detect(bytes: &[u8]) -> Form {
    let start = skip_bom_and_space(bytes);
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Form::Gzip
    } else if bytes.starts_with(b"PK\x03\x04") {
        Form::Zip
    } else if start.first() == Some(&b'<') {
        Form::Xml
    } else {
        Form::Mail
    }
}

fn skip_bom_and_space(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn decode_into(bytes: &[u8], part: &str, limits: &Limits, depth: usize, out: &mut Vec<Decoded>) {
    if depth > MAX_DEPTH || out.len() > limits.max_reports {
        return;
    }
    let mut push = |part: &str, result| {
        out.push(Decoded {
            part: part.to_string(),
            result,
        })
    };
    match detect(bytes) {
        Form::Xml => push(part, xml::parse(bytes).map_err(DecodeError::from)),
        Form::Gzip => match gunzip(bytes, limits.max_xml) {
            Ok(inner) => decode_into(&inner, part, limits, depth + 1, out),
            Err(e) => push(part, Err(e)),
        },
        Form::Zip => unzip_into(bytes, part, limits, depth, out),
        Form::Mail => {
            if let Some(message) = MessageParser::default().parse(bytes) {
                mail_into(&message, part, limits, depth, out);
            }
        }
    }
}

/// Reads at most `limit` bytes of `reader`; more is [`DecodeError::TooLarge`].
fn read_capped(reader: impl Read, limit: u64) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    reader.take(limit + 1).read_to_end(&mut out)?;
    Ok(out)
}

fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
    // MultiGzDecoder: some receivers concatenate members.
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let out = read_capped(decoder, limit).map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

fn unzip_into(bytes: &[u8], part: &str, limits: &Limits, depth: usize, out: &mut Vec<Decoded>) {
    let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
        Ok(a) => a,
        Err(e) => {
            out.push(Decoded {
                part: part.to_string(),
                result: Err(DecodeError::Zip(e.to_string())),
            });
            return;
        }
    };
    for i in 0..archive.len() {
        let (name, result) = match archive.by_index(i) {
            Ok(file) if file.is_dir() => continue,
            Ok(file) => {
                let name = file
                    .name()
                    .map_or_else(|_| format!("entry {i}"), |n| n.to_string());
                let data = if file.size() > limits.max_xml {
                    Err(DecodeError::TooLarge {
                        limit: limits.max_xml,
                    })
                } else {
                    read_capped(file, limits.max_xml)
                        .map_err(|e| DecodeError::Zip(e.to_string()))
                        .and_then(|d| capped(d, limits.max_xml))
                };
                (name, data)
            }
            Err(e) => (format!("entry {i}"), Err(DecodeError::Zip(e.to_string()))),
        };
        let inner = join(part, &name);
        match result {
            Ok(data) => decode_into(&data, &inner, limits, depth + 1, out),
            Err(e) => out.push(Decoded {
                part: inner,
                result: Err(e),
            }),
        }
    }
}

fn capped(data: Vec<u8>, limit: u64) -> Result<Vec<u8>, DecodeError> {
    if data.len() as u64 > limit {
        Err(DecodeError::TooLarge { limit })
    } else {
        Ok(data)
    }
}

fn join(outer: &str, inner: &str) -> String {
    if outer.is_empty() {
        inner.to_string()
    } else {
        format!("{outer}!{inner}")
    }
}

/// Every leaf part of a mail that holds a report: binary attachments of any type (a
/// receiver's content type is not trusted) and text parts that are report XML.
fn mail_into(message: &Message<'_>, part: &str, limits: &Limits, depth: usize, out: &mut Vec<Decoded>) {
    for (i, p) in message.parts.iter().enumerate() {
        let name = p
            .attachment_name()
            .map_or_else(|| format!("part {i}"), str::to_string);
        let inner = join(part, &name);
        match &p.body {
            PartType::Multipart(_) => {}
            PartType::Message(nested) => mail_into(nested, &inner, limits, depth + 1, out),
            PartType::Text(t) | PartType::Html(t) => {
                if t.contains("<feedback") {
                    decode_into(t.as_bytes(), &inner, limits, depth + 1, out);
                }
            }
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if detect(b) != Form::Mail {
                    decode_into(b, &inner, limits, depth + 1, out);
                }
            }
        }
    }
}
