//! From bytes to reports: the form is detected by magic bytes, never by file name
//! (gzip `1f 8b`, zip `PK\x03\x04`, XML `<`, otherwise an e-mail whose parts are
//! searched, nested multiparts and attached messages included). Every reader is
//! bounded ([`Limits`]): decompressed bytes per report and per input, reports per
//! input, rows per report, zip entries (and zips whose entries share their data),
//! mail parts and nesting, and the time one input may take. Whatever goes over a
//! bound is one error, and the reports are handed on one at a time as they are read.

use std::io::Read;

pub use super::budget::Limits;
use super::budget::{Clock, Interrupted, printable};
use super::mail::{self, MailError};
use super::model::Report;
use super::xml::{self, Bounds, XmlError};

/// Attached messages inside attached messages deeper than this are refused.
const MAX_MAIL_NESTING: usize = 8;

/// Why one report inside an input cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decompresses to more than {limit} bytes (a zip or gzip bomb?); not read")]
    TooLarge { limit: u64 },
    #[error("a report of more than {limit} bytes; not read")]
    XmlTooLarge { limit: u64 },
    #[error("a mail of more than {limit} bytes; not read")]
    MailTooLarge { limit: u64 },
    #[error("the input decompresses to more than {limit} bytes in all; the rest was not read")]
    InputTooLarge { limit: u64 },
    #[error("bad gzip data: {0}")]
    Gzip(String),
    #[error("bad zip archive: {0}")]
    Zip(String),
    #[error("more than {0} entries in one zip archive; not read")]
    TooManyEntries(usize),
    #[error("zip entries share their compressed data (a zip bomb); not read")]
    Overlapping,
    #[error("{0}")]
    Mail(#[from] MailError),
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("no DMARC report found in it (not XML, gzip, zip or a mail with one attached)")]
    NoReport,
    #[error("more than {0} reports in one input; the rest were not read")]
    TooMany(usize),
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

/// One report found in an input, or why it could not be read. `part` names where in
/// the input it was (a zip entry, a mail attachment), empty for the input itself;
/// names taken from the input are escaped ([`printable`]).
#[derive(Debug)]
pub struct Decoded {
    pub part: String,
    pub result: Result<Report, DecodeError>,
}

/// Every report in `bytes`; at least one item (an error when nothing was found).
pub fn decode(bytes: &[u8], limits: &Limits) -> Vec<Decoded> {
    let mut out = Vec::new();
    decode_each(bytes, limits, &Clock::start(limits.max_time, None), &mut |d| {
        out.push(d)
    });
    out
}

/// Hands every report in `bytes` to `each` as soon as it is read, so that no more than
/// one is held; at least one item (an error when nothing was found). Stops at the
/// first interruption of `clock`.
pub fn decode_each(bytes: &[u8], limits: &Limits, clock: &Clock, each: &mut dyn FnMut(Decoded)) {
    let mut walk = Walk {
        limits,
        clock,
        each,
        items: 0,
        decompressed: 0,
        done: false,
    };
    walk.form(bytes, "", 0);
    if walk.items == 0 {
        walk.emit("", Err(DecodeError::NoReport));
    }
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

fn join(outer: &str, inner: &str) -> String {
    if outer.is_empty() {
        inner.to_string()
    } else {
        format!("{outer}!{inner}")
    }
}

/// One input being read: what it has cost so far.
struct Walk<'a> {
    limits: &'a Limits,
    clock: &'a Clock,
    each: &'a mut dyn FnMut(Decoded),
    /// Reports and errors handed on.
    items: usize,
    /// Decompressed bytes so far, against [`Limits::max_input`].
    decompressed: u64,
    /// Set by a bound of the whole input: nothing more is read.
    done: bool,
}

impl Walk<'_> {
    fn emit(&mut self, part: &str, result: Result<Report, DecodeError>) {
        if self.done {
            return;
        }
        if self.items == self.limits.max_reports {
            self.stop(part, DecodeError::TooMany(self.limits.max_reports));
            return;
        }
        let whole_input = matches!(
            result,
            Err(DecodeError::InputTooLarge { .. }
                | DecodeError::Interrupted(_)
                | DecodeError::Xml(XmlError::Interrupted(_)))
        );
        self.items += 1;
        (self.each)(Decoded {
            part: part.to_string(),
            result,
        });
        self.done = whole_input;
    }

    /// A bound of the whole input: one last error, and nothing more is read.
    fn stop(&mut self, part: &str, why: DecodeError) {
        self.items += 1;
        (self.each)(Decoded {
            part: part.to_string(),
            result: Err(why),
        });
        self.done = true;
    }

    fn form(&mut self, bytes: &[u8], part: &str, depth: usize) {
        if depth > MAX_DEPTH || self.done {
            return;
        }
        if let Err(e) = self.clock.check() {
            return self.emit(part, Err(e.into()));
        }
        match detect(bytes) {
            Form::Xml if bytes.len() as u64 > self.limits.max_xml => {
                let limit = self.limits.max_xml;
                self.emit(part, Err(DecodeError::XmlTooLarge { limit }));
            }
            Form::Mail if bytes.len() as u64 > self.limits.max_mail => {
                let limit = self.limits.max_mail;
                self.emit(part, Err(DecodeError::MailTooLarge { limit }));
            }
            Form::Xml => {
                let bounds = Bounds {
                    max_rows: self.limits.max_rows,
                    clock: self.clock.clone(),
                };
                self.emit(
                    part,
                    xml::parse_bounded(bytes, &bounds).map_err(DecodeError::from),
                );
            }
            Form::Gzip => {
                // MultiGzDecoder: some receivers concatenate members.
                match self.inflate(flate2::read::MultiGzDecoder::new(bytes), DecodeError::Gzip) {
                    Ok(inner) => self.form(&inner, part, depth + 1),
                    Err(e) => self.emit(part, Err(e)),
                }
            }
            Form::Zip => self.unzip(bytes, part, depth),
            Form::Mail => self.mail(bytes, part, depth),
        }
    }

    /// Reads a decompressing reader up to the smaller of the per-report and the
    /// per-input bound; more is an error.
    fn inflate(&mut self, reader: impl Read, bad: fn(String) -> DecodeError) -> Result<Vec<u8>, DecodeError> {
        let left = self.limits.max_input.saturating_sub(self.decompressed);
        let cap = self.limits.max_xml.min(left);
        let mut out = Vec::new();
        reader
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        self.decompressed += out.len() as u64;
        match out.len() as u64 > cap {
            false => Ok(out),
            true if cap < self.limits.max_xml => Err(DecodeError::InputTooLarge {
                limit: self.limits.max_input,
            }),
            true => Err(DecodeError::TooLarge {
                limit: self.limits.max_xml,
            }),
        }
    }

    fn mail(&mut self, bytes: &[u8], part: &str, depth: usize) {
        let leaves = mail::check_shape(bytes, self.limits.max_mail_parts)
            .and_then(|()| mail::leaves(bytes, part, MAX_MAIL_NESTING));
        match leaves {
            Ok(leaves) => {
                for leaf in leaves {
                    // An attachment that is no report form is not followed as a mail.
                    if !leaf.binary || detect(&leaf.bytes) != Form::Mail {
                        self.form(&leaf.bytes, &leaf.name, depth + 1);
                    }
                }
            }
            Err(e) => self.emit(part, Err(e.into())),
        }
    }

    fn unzip(&mut self, bytes: &[u8], part: &str, depth: usize) {
        let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            Ok(a) => a,
            Err(e) => return self.emit(part, Err(DecodeError::Zip(e.to_string()))),
        };
        if archive.len() > self.limits.max_entries {
            return self.emit(part, Err(DecodeError::TooManyEntries(self.limits.max_entries)));
        }
        match shares_data(&mut archive) {
            Ok(false) => {}
            Ok(true) => return self.emit(part, Err(DecodeError::Overlapping)),
            Err(e) => return self.emit(part, Err(DecodeError::Zip(e.to_string()))),
        }
        for i in 0..archive.len() {
            if self.done {
                return;
            }
            let (name, data) = match archive.by_index(i) {
                Ok(file) if file.is_dir() => continue,
                Ok(file) => {
                    let name = file
                        .name()
                        .map_or_else(|_| format!("entry {i}"), |n| printable(&n));
                    (name, self.entry(file))
                }
                Err(e) => (format!("entry {i}"), Err(DecodeError::Zip(e.to_string()))),
            };
            let inner = join(part, &name);
            match data {
                Ok(data) => self.form(&data, &inner, depth + 1),
                Err(e) => self.emit(&inner, Err(e)),
            }
        }
    }

    fn entry(
        &mut self,
        file: zip::read::ZipFile<'_, std::io::Cursor<&[u8]>>,
    ) -> Result<Vec<u8>, DecodeError> {
        if file.size() > self.limits.max_xml {
            return Err(DecodeError::TooLarge {
                limit: self.limits.max_xml,
            });
        }
        self.inflate(file, DecodeError::Zip)
    }
}

/// Whether two entries of the archive claim overlapping bytes (local header to the end
/// of the compressed data): honest archives never do, and a bomb made of many entries
/// pointing at one stream does.
fn shares_data(archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>) -> zip::result::ZipResult<bool> {
    let mut spans = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i)?;
        let start = file.header_start();
        let end = file
            .data_start()
            .unwrap_or(start)
            .saturating_add(file.compressed_size());
        spans.push((start, end.max(start + 1)));
    }
    spans.sort_unstable();
    Ok(spans.windows(2).any(|w| w[1].0 < w[0].1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_error(bytes: &[u8], limits: &Limits) -> DecodeError {
        let mut decoded = decode(bytes, limits);
        assert_eq!(decoded.len(), 1, "{decoded:?}");
        decoded.remove(0).result.unwrap_err()
    }

    #[test]
    fn plain_xml_and_mails_are_capped_like_what_they_decompress_to() {
        let limits = Limits {
            max_xml: 1024,
            max_mail: 2048,
            ..Limits::default()
        };
        let xml = format!("<feedback>{}</feedback>", " ".repeat(1024));
        assert_eq!(
            only_error(xml.as_bytes(), &limits),
            DecodeError::XmlTooLarge { limit: 1024 }
        );
        let mail = format!("Subject: x\r\n\r\n{}", "y".repeat(2048));
        assert_eq!(
            only_error(mail.as_bytes(), &limits),
            DecodeError::MailTooLarge { limit: 2048 }
        );
        let small = "Subject: x\r\n\r\nhello\r\n";
        assert_eq!(only_error(small.as_bytes(), &limits), DecodeError::NoReport);
    }
}
