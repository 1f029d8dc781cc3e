//! Zone files (RFC 1035 master format) for policies that serve a whole zone:
//! `$ORIGIN`, `$TTL`, `$INCLUDE` and every record type hickory's zone-file parser
//! reads. [`scan`] splits the text into entries (keeping lines); each record's data is
//! parsed by `hickory_proto::serialize::txt::Parser`, one entry at a time, so that an
//! error names its file and line (hickory's own errors carry neither). [`check`] then
//! refuses what a zone cannot hold and what would override spfd's own names.

pub mod check;
pub mod scan;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use crate::diag::{Diagnostic, Severity};
use scan::Token;

pub use check::Managed;

/// How deep `$INCLUDE` may nest (BIND and NSD allow a few levels; loops are refused
/// before this).
const MAX_INCLUDE_DEPTH: usize = 16;
/// RFC 2181 8: a TTL is at most 2^31 - 1.
const MAX_TTL: u32 = i32::MAX as u32;

/// Where a record was written: an index into [`ZoneData::files`] and the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub file: u16,
    pub line: u32,
    pub column: u32,
}

/// A zone file read and checked: its records in file order, each with its place.
#[derive(Debug, Clone, Default)]
pub struct ZoneData {
    pub records: Vec<(Record, Place)>,
    /// The file and every file it includes, for messages and for the reload watcher
    /// (for a backend's copy: one pseudo-path naming the backend).
    pub files: Vec<PathBuf>,
    /// A backend's copy that does not exist yet or is past its SOA expire: names that
    /// are not spfd's own are answered SERVFAIL, never NXDOMAIN.
    pub expired: bool,
}

impl ZoneData {
    /// A diagnostic at a record's place.
    pub fn at(&self, place: Place, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            path: self.files[usize::from(place.file)].clone(),
            line: place.line as usize,
            column: place.column as usize,
            message: message.into(),
        }
    }

    /// The SOA record of the file, if it has one (at the apex: [`check`] sees to it).
    pub fn soa(&self) -> Option<&Record> {
        self.records
            .iter()
            .map(|(r, _)| r)
            .find(|r| r.record_type() == RecordType::SOA)
    }
}

/// What [`load`] returns: the data and its warnings, or every problem found.
pub type Loaded = Result<(ZoneData, Vec<Diagnostic>), Vec<Diagnostic>>;

/// Reads a zone file for the zone `apex` (the default origin). Returns the data or every
/// error found, and in both cases the files read (a broken include is watched too).
pub fn load(path: &Path, apex: &Name) -> (Loaded, Vec<PathBuf>) {
    let mut reader = Reader {
        data: ZoneData::default(),
        errors: Vec::new(),
        default_ttl: None,
        last_ttl: None,
        stack: Vec::new(),
    };
    reader.file(path, apex.clone(), None);
    let files = reader.data.files.clone();
    if !reader.errors.is_empty() {
        return (Err(reader.errors), files);
    }
    let mut data = reader.data;
    let problems = check::structure(&mut data, apex);
    if problems.iter().any(|d| d.severity == Severity::Error) {
        return (Err(problems), files);
    }
    (Ok((data, problems)), files)
}

/// The state of one read: what `$TTL` and the previous record say, the include stack.
struct Reader {
    data: ZoneData,
    errors: Vec<Diagnostic>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    /// Canonical paths of the files being read, to refuse an include loop.
    stack: Vec<PathBuf>,
}

impl Reader {
    /// Reads one file with `origin`; `from` is the place of the `$INCLUDE` that named it.
    fn file(&mut self, path: &Path, mut origin: Name, from: Option<Diagnostic>) {
        let index = self.data.files.len() as u16;
        self.data.files.push(path.to_path_buf());
        let fail = |message: String| match &from {
            Some(d) => Diagnostic {
                message: format!("{message} ({})", d.message),
                ..d.clone()
            },
            None => file_error(path, message),
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canonical) || self.stack.len() >= MAX_INCLUDE_DEPTH {
            self.errors.push(fail("$INCLUDE loop or nesting too deep".into()));
            return;
        }
        let text = match std::fs::read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => return self.errors.push(fail("the zone file is not UTF-8 text".into())),
            Err(e) => return self.errors.push(fail(format!("cannot read zone file: {e}"))),
        };
        let entries = match scan::entries(&text) {
            Ok(entries) => entries,
            Err(e) => {
                let place = Place {
                    file: index,
                    line: e.line as u32,
                    column: e.column as u32,
                };
                return self.errors.push(self.data.at(place, Severity::Error, e.message));
            }
        };
        self.stack.push(canonical);
        let mut owner: Option<Name> = None;
        for entry in entries {
            let first = &entry.tokens[0];
            let place = Place {
                file: index,
                line: first.line as u32,
                column: first.column as u32,
            };
            let result = if !entry.blank_start && first.text.starts_with('$') {
                self.directive(path, &entry.tokens, &mut origin)
            } else {
                self.record(&entry, &origin, &mut owner, index)
            };
            if let Err((message, at)) = result {
                let at = at.map_or(place, |t| Place {
                    file: index,
                    line: t.line as u32,
                    column: t.column as u32,
                });
                self.errors.push(self.data.at(at, Severity::Error, message));
            }
        }
        self.stack.pop();
    }

    fn directive(&mut self, path: &Path, tokens: &[Token], origin: &mut Name) -> Result<(), Problem> {
        let arg = |i: usize, what: &str| {
            tokens
                .get(i)
                .ok_or_else(|| (format!("{} needs {what}", tokens[0].text), None))
        };
        match tokens[0].text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let name = arg(1, "a domain name")?;
                *origin = parse_name(name, origin)?;
            }
            "$TTL" => {
                let ttl = arg(1, "a TTL")?;
                self.default_ttl = Some(ttl_value(ttl)?);
            }
            "$INCLUDE" => {
                let file = arg(1, "a file name")?;
                let target = path.parent().unwrap_or(Path::new(".")).join(unquote(&file.text));
                let include_origin = match tokens.get(2) {
                    Some(name) => parse_name(name, origin)?,
                    None => origin.clone(),
                };
                let from = file_error(path, format!("included from line {}", tokens[0].line));
                let from = Diagnostic {
                    line: tokens[0].line,
                    column: tokens[0].column,
                    ..from
                };
                // RFC 1035 5.1: an include never changes the origin of the file that
                // includes it.
                self.file(&target, include_origin, Some(from));
            }
            other => {
                return Err((
                    format!(
                        "unknown directive {other}: write $ORIGIN, $TTL or $INCLUDE ($GENERATE is not supported)"
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        entry: &scan::Entry,
        origin: &Name,
        owner: &mut Option<Name>,
        file: u16,
    ) -> Result<(), Problem> {
        let mut tokens = entry.tokens.iter().peekable();
        if !entry.blank_start {
            let token = tokens.next().expect("entries are not empty");
            *owner = Some(parse_name(token, origin)?);
        }
        let Some(name) = owner.clone() else {
            return Err(("the first record has no owner name".into(), None));
        };
        let (mut ttl, mut class) = (None, DNSClass::IN);
        let rtype_token = loop {
            let Some(token) = tokens.next() else {
                return Err(("the record has no type".into(), None));
            };
            if ttl.is_none() && token.text.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(ttl_value(token)?);
            } else if let Ok(c) = DNSClass::from_str(&token.text.to_ascii_uppercase()) {
                class = c;
            } else {
                break token;
            }
        };
        if class != DNSClass::IN {
            return Err((
                format!("class {class}: a zone file for spfd holds class IN records only"),
                None,
            ));
        }
        let rtype = RecordType::from_str(&rtype_token.text.to_ascii_uppercase())
            .ok()
            .filter(|t| !matches!(t, RecordType::Unknown(_)))
            .ok_or_else(|| {
                let message = format!("unknown or unsupported record type {:?}", rtype_token.text);
                (message, Some(rtype_token.clone()))
            })?;
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self.default_ttl.or(self.last_ttl).ok_or((
                "the record has no TTL and no $TTL is set: write $TTL 3600 at the top of the file"
                    .to_string(),
                None,
            ))?,
        };
        let rest: Vec<&Token> = tokens.collect();
        let data =
            parse_rdata(origin, ttl, rtype, &rest).map_err(|m| (m, rest.first().map(|t| (*t).clone())))?;
        let line = entry.tokens[0].line as u32;
        let column = entry.tokens[0].column as u32;
        let record = Record::from_rdata(name, ttl, data);
        self.data.records.push((record, Place { file, line, column }));
        Ok(())
    }
}

/// A message and the token it is about (the entry's start when `None`).
type Problem = (String, Option<Token>);

fn parse_name(token: &Token, origin: &Name) -> Result<Name, Problem> {
    let text = unquote(&token.text);
    let parsed = if text == "@" {
        Ok(origin.clone())
    } else {
        Name::parse(&text, Some(origin))
    };
    parsed
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| {
            (
                format!("bad domain name {:?}: {e}", token.text),
                Some(token.clone()),
            )
        })
}

fn ttl_value(token: &Token) -> Result<u32, Problem> {
    parse_ttl(&token.text)
        .ok()
        .filter(|t| *t <= MAX_TTL)
        .ok_or_else(|| {
            let message = format!(
                "bad TTL {:?}: write seconds (up to {MAX_TTL}) or 1h, 2d...",
                token.text
            );
            (message, Some(token.clone()))
        })
}

/// The record data parsed by hickory's zone-file parser from one line, then encoded
/// once, so that data that cannot be sent (a string over 255 octets) fails here.
fn parse_rdata(origin: &Name, ttl: u32, rtype: RecordType, tokens: &[&Token]) -> Result<RData, String> {
    let mut line = format!("@ {ttl} IN {rtype}");
    for token in tokens {
        line.push(' ');
        if token.quoted {
            line.push_str(&quoted_for_hickory(&token.text)?);
        } else if token.text == "@" {
            // hickory's lexer reads `@` as a token of its own, not as record data.
            line.push_str(&origin.to_string());
        } else {
            line.push_str(&token.text);
        }
    }
    line.push('\n');
    let parsed = Parser::new(line, None, Some(origin.clone()))
        .parse()
        .map_err(|e| format!("{rtype} record: {e}"))?;
    let data = parsed
        .1
        .into_values()
        .next()
        .and_then(|set| set.records_without_rrsigs().next().map(|r| r.data.clone()))
        .ok_or_else(|| format!("{rtype} record: no data"))?;
    if let RData::TXT(txt) = &data
        && txt.txt_data.iter().any(|s| s.len() > 255)
    {
        return Err(format!(
            "{rtype} record: a character-string is longer than 255 octets: split it into several quoted strings"
        ));
    }
    encode_rdata(&data).map_err(|e| format!("{rtype} record cannot be encoded: {e}"))?;
    Ok(data)
}

/// Record data in wire form, names uncompressed and in the case written.
pub fn encode_rdata(data: &RData) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    data.emit(&mut encoder)?;
    Ok(out)
}

/// A quoted string as hickory's lexer reads it: `\DDD` escapes decoded here (hickory
/// decodes them wrongly), `\"` and `\\` kept.
fn quoted_for_hickory(text: &str) -> Result<String, String> {
    let inner = &text[1..text.len() - 1];
    let mut out = String::from('"');
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit))
            .take(3)
            .collect();
        if digits.is_empty() {
            out.push('\\');
            out.extend(chars.next());
            continue;
        }
        let value: u32 = digits.parse().unwrap_or(u32::MAX);
        match char::from_u32(value).filter(|_| digits.len() == 3 && value < 128) {
            Some(c @ ('"' | '\\')) => {
                out.push('\\');
                out.push(c);
            }
            Some(c) => out.push(c),
            None => {
                return Err(format!(
                    "escape \\{digits}: only \\000 to \\127 are supported in quoted strings"
                ));
            }
        }
    }
    out.push('"');
    Ok(out)
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .to_string()
}

fn file_error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ZoneData, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.zone");
        std::fs::write(&path, text).unwrap();
        load(&path, &Name::from_ascii("example.test.").unwrap())
            .0
            .map(|(d, _)| d)
    }

    #[test]
    fn escapes_origin_and_ttl_rules() {
        let data = load_text(
            "$TTL 1h\nt TXT \"a\\065b\" \"q\\\"\\\\\"\nmx MX 10 @\n$ORIGIN sub.example.test.\nx 60 A 192.0.2.1\ny A 192.0.2.2\n",
        )
        .unwrap();
        let shown: Vec<String> = data
            .records
            .iter()
            .map(|(r, _)| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect();
        assert_eq!(
            shown,
            [
                "t.example.test. 3600 aAbq\"\\",
                "mx.example.test. 3600 10 example.test.",
                "x.sub.example.test. 60 192.0.2.1",
                // $TTL, not the previous record's TTL (RFC 2308 4).
                "y.sub.example.test. 3600 192.0.2.2",
            ]
        );
        let RData::TXT(txt) = &data.records[0].0.data else {
            panic!()
        };
        assert_eq!(txt.txt_data.len(), 2, "two character-strings");
        let errors = load_text("$TTL 60\nt TXT \"\\200\"\n").unwrap_err();
        assert!(
            errors[0].to_string().contains(":2:7: error: escape \\200"),
            "{errors:?}"
        );
    }
}
