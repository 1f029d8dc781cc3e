//! The lenient reader of aggregate report XML. Both schemas (RFC 7489 appendix C and
//! RFC 9990's `urn:ietf:params:xml:ns:dmarc-2.0`) are read by element names alone,
//! whatever their namespace prefix. Receivers are sloppy, so: unknown elements are
//! skipped, bytes that are not UTF-8 are replaced, end tags are not matched against
//! their start, a row without a usable address is dropped (and noted), and a date
//! range longer than [`MAX_RANGE`] is cut. What cannot be read is one [`XmlError`].

use std::net::IpAddr;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::budget::{Clock, Interrupted, Limits};
use super::model::{AuthResult, MAX_COUNT, MAX_RANGE, PolicyPublished, Report, Row, Schema};

/// Why a report's XML cannot be used. `line` is 1-based, in the decompressed XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("line {line}: malformed XML: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: the XML ends inside <{element}> (truncated?)")]
    Truncated { line: usize, element: String },
    #[error("not an aggregate report: no <feedback> element")]
    NotFeedback,
    #[error("the report has no {0}")]
    Missing(&'static str),
    #[error("the report's {field} {value:?} is not a number")]
    BadNumber { field: &'static str, value: String },
    #[error("more than {0} records in one report; not stored")]
    TooManyRows(usize),
    #[error("a record counts {0} messages, more than {MAX_COUNT}; the report is not stored")]
    CountTooLarge(u64),
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

/// How far one report may go.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Records (rows) in one report.
    pub max_rows: usize,
    /// The deadline of the input the report is in, and the shutdown signal.
    pub clock: Clock,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_rows: Limits::default().max_rows,
            clock: Clock::start(Limits::default().max_time, None),
        }
    }
}

/// Events read between two looks at the clock.
const EVENTS_PER_CHECK: usize = 4096;

const DMARC2_NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// Reads one report within the default bounds.
pub fn parse(bytes: &[u8]) -> Result<Report, XmlError> {
    parse_bounded(bytes, &Bounds::default())
}

/// Reads one report; more rows than `bounds.max_rows`, a count above [`MAX_COUNT`] or
/// the clock running out is an error for the whole report.
pub fn parse_bounded(bytes: &[u8], bounds: &Bounds) -> Result<Report, XmlError> {
    let text = String::from_utf8_lossy(bytes);
    let mut builder = Builder {
        max_rows: bounds.max_rows,
        ..Builder::default()
    };
    read_events(&text, &mut builder, &bounds.clock)?;
    let schema = if text.contains(DMARC2_NAMESPACE) {
        Schema::Dmarc2
    } else {
        Schema::Rfc7489
    };
    builder.finish(schema)
}

/// Feeds every element's text to the builder as the element closes.
fn read_events(text: &str, builder: &mut Builder, clock: &Clock) -> Result<(), XmlError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = true;
    let mut stack: Vec<String> = Vec::new();
    let mut buf = String::new();
    for events in 1usize.. {
        if events.is_multiple_of(EVENTS_PER_CHECK) {
            clock.check()?;
        }
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            line: line_at(text, reader.error_position() as usize),
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) => {
                let name = local(e.local_name().as_ref());
                builder.open(&name);
                stack.push(name);
                buf.clear();
            }
            Event::End(_) => {
                if !stack.is_empty() {
                    builder.close(&stack, buf.trim())?;
                    stack.pop();
                }
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::CData(c) => buf.push_str(&c.xml10_content()),
            Event::GeneralRef(r) => buf.push_str(&resolve_entity(&r.xml10_content())),
            Event::Eof => break,
            _ => {}
        }
    }
    match stack.first() {
        Some(open) => Err(XmlError::Truncated {
            line: line_at(text, text.len()),
            element: open.clone(),
        }),
        None => Ok(()),
    }
}

fn local(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn line_at(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The five predefined entities and character references; anything else is kept as
/// written (lenient: some receivers write a bare `&`).
fn resolve_entity(name: &str) -> String {
    let named = match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    };
    let numeric = || {
        let n = name.strip_prefix('#')?;
        let code = match n.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => n.parse().ok()?,
        };
        char::from_u32(code)
    };
    match named.or_else(numeric) {
        Some(c) => c.to_string(),
        None => format!("&{name};"),
    }
}

/// The report as its elements close.
#[derive(Default)]
struct Builder {
    seen_feedback: bool,
    org_name: Option<String>,
    email: Option<String>,
    report_id: Option<String>,
    begin: Option<String>,
    end: Option<String>,
    generator: Option<String>,
    policy: PolicyPublished,
    rows: Vec<Row>,
    row: Option<RawRow>,
    auth: Option<AuthResult>,
    notes: Vec<String>,
    max_rows: usize,
}

/// A record being read: fields stay text until the record closes.
#[derive(Default)]
struct RawRow {
    source_ip: Option<String>,
    count: Option<String>,
    disposition: Option<String>,
    dkim_eval: Option<String>,
    spf_eval: Option<String>,
    reasons: Vec<String>,
    header_from: Option<String>,
    envelope_from: Option<String>,
    envelope_to: Option<String>,
    dkim: Vec<AuthResult>,
    spf: Vec<AuthResult>,
}

impl Builder {
    fn open(&mut self, name: &str) {
        match name {
            "feedback" => self.seen_feedback = true,
            "record" => self.row = Some(RawRow::default()),
            "dkim" | "spf" if self.row.is_some() => self.auth = Some(AuthResult::default()),
            _ => {}
        }
    }

    fn close(&mut self, stack: &[String], text: &str) -> Result<(), XmlError> {
        let name = stack.last().map_or("", String::as_str);
        let parent = stack.len().checked_sub(2).map_or("", |i| stack[i].as_str());
        if name == "record" {
            if let Some(raw) = self.row.take() {
                self.finish_row(raw)?;
            }
            return Ok(());
        }
        if self.row.is_some() {
            self.close_in_record(name, parent, text);
            return Ok(());
        }
        let value = || Some(text.to_string()).filter(|t| !t.is_empty());
        match (parent, name) {
            ("report_metadata", "org_name") => self.org_name = value(),
            ("report_metadata", "email") => self.email = value(),
            ("report_metadata", "report_id") => self.report_id = value(),
            ("date_range", "begin") => self.begin = value(),
            ("date_range", "end") => self.end = value(),
            (_, "generator") => self.generator = value(),
            ("policy_published", _) => self.policy_field(name, value()),
            _ => {}
        }
        Ok(())
    }

    fn policy_field(&mut self, name: &str, value: Option<String>) {
        let p = &mut self.policy;
        let lower = value.map(|v| v.to_ascii_lowercase());
        match name {
            "domain" => p.domain = lower.unwrap_or_default().trim_end_matches('.').to_string(),
            "adkim" => p.adkim = lower,
            "aspf" => p.aspf = lower,
            "p" => p.p = lower,
            "sp" => p.sp = lower,
            "np" => p.np = lower,
            "pct" => p.pct = lower,
            "testing" => p.testing = lower,
            "discovery_method" => p.discovery_method = lower,
            _ => {}
        }
    }

    fn close_in_record(&mut self, name: &str, parent: &str, text: &str) {
        let value = Some(text.to_string()).filter(|t| !t.is_empty());
        let lower = value.as_ref().map(|v| v.to_ascii_lowercase());
        let Some(row) = self.row.as_mut() else { return };
        match (parent, name) {
            ("row", "source_ip") => row.source_ip = value,
            ("row", "count") => row.count = value,
            ("policy_evaluated", "disposition") => row.disposition = lower,
            ("policy_evaluated", "dkim") => row.dkim_eval = lower,
            ("policy_evaluated", "spf") => row.spf_eval = lower,
            ("reason", "type") => row.reasons.extend(lower),
            ("identifiers", "header_from") => row.header_from = lower,
            ("identifiers", "envelope_from") => row.envelope_from = lower,
            ("identifiers", "envelope_to") => row.envelope_to = lower,
            ("dkim" | "spf", _) => {
                if let Some(auth) = self.auth.as_mut() {
                    match name {
                        "domain" => auth.domain = lower.unwrap_or_default(),
                        "selector" | "scope" => auth.detail = value,
                        "result" => auth.result = lower.unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            ("auth_results", "dkim") => row.dkim.extend(self.auth.take()),
            ("auth_results", "spf") => row.spf.extend(self.auth.take()),
            _ => {}
        }
    }

    fn finish_row(&mut self, raw: RawRow) -> Result<(), XmlError> {
        if self.rows.len() >= self.max_rows {
            return Err(XmlError::TooManyRows(self.max_rows));
        }
        let written = raw.source_ip.clone().unwrap_or_default();
        let Some(source_ip) = parse_ip(&written) else {
            self.note(format!("a record with source_ip {written:?} was skipped"));
            return Ok(());
        };
        let count = match raw.count.as_deref().map(str::trim) {
            None => 1,
            Some(c) => match c.parse::<u64>() {
                Ok(n) if n > MAX_COUNT => return Err(XmlError::CountTooLarge(n)),
                Ok(n) => n,
                // Digits beyond u64 are a count too large, not a typo.
                Err(_) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(XmlError::CountTooLarge(u64::MAX));
                }
                Err(_) => {
                    self.note(format!("a record with count {c:?} was skipped"));
                    return Ok(());
                }
            },
        };
        self.rows.push(Row {
            source_ip,
            count,
            disposition: raw.disposition.unwrap_or_else(|| "none".into()),
            dkim_eval: raw.dkim_eval,
            spf_eval: raw.spf_eval,
            reasons: raw.reasons,
            header_from: raw.header_from.unwrap_or_default(),
            envelope_from: raw.envelope_from,
            envelope_to: raw.envelope_to,
            dkim: raw.dkim,
            spf: raw.spf,
        });
        Ok(())
    }

    /// A repair, noted; a report full of bad rows keeps only the first notes.
    fn note(&mut self, note: String) {
        const MAX_NOTES: usize = 20;
        if self.notes.len() < MAX_NOTES {
            self.notes.push(note);
        }
    }

    fn finish(mut self, schema: Schema) -> Result<Report, XmlError> {
        if !self.seen_feedback {
            return Err(XmlError::NotFeedback);
        }
        let report_id = self.report_id.ok_or(XmlError::Missing("report_id"))?;
        let org_name = self
            .org_name
            .or_else(|| self.email.clone())
            .ok_or(XmlError::Missing("org_name"))?;
        if self.policy.domain.is_empty() {
            return Err(XmlError::Missing("policy_published domain"));
        }
        let begin = number("date_range begin", self.begin)?;
        let mut end = number("date_range end", self.end)?;
        if end < begin || end.saturating_sub(begin) > MAX_RANGE {
            self.notes.push(format!(
                "the date range {begin}..{end} was cut to one day from its beginning"
            ));
            end = begin.saturating_add(86400);
        }
        for row in &mut self.rows {
            if row.header_from.is_empty() {
                row.header_from = self.policy.domain.clone();
            }
        }
        Ok(Report {
            schema,
            org_name,
            email: self.email,
            report_id,
            begin,
            end,
            generator: self.generator,
            policy: self.policy,
            rows: self.rows,
            notes: self.notes,
        })
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

/// Seconds since the epoch; a fraction (seen in the wild) is dropped.
fn number(field: &'static str, value: Option<String>) -> Result<i64, XmlError> {
    let value = value.ok_or(XmlError::Missing(field))?;
    let whole = value.trim().split('.').next().unwrap_or_default();
    whole.parse().map_err(|_| XmlError::BadNumber { field, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<feedback><report_metadata><org_name>R</org_name><report_id>1</report_id>\
                        <date_range><begin>1767571200</begin><end>1767657599</end></date_range></report_metadata>\
                        <policy_published><domain>Shop.Test.</domain><p>none</p></policy_published>";
    const ROW: &str = "<record><row><source_ip>192.0.2.1</source_ip><count>3</count><policy_evaluated>\
                       <disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>\
                       <identifiers><header_from>shop.test</header_from></identifiers><auth_results>\
                       <dkim><domain>shop.test</domain><selector>s</selector><result>pass</result></dkim>\
                       <spf><domain>x.test</domain><scope>mfrom</scope><result>fail</result></spf></auth_results></record>";

    fn doc(rows: &str) -> String {
        format!("{HEAD}{rows}</feedback>")
    }

    #[test]
    fn sloppy_but_readable_reports_are_read() {
        let cases: [(&str, String); 5] = [
            ("plain", doc(ROW)),
            (
                "prefixed namespace",
                doc(ROW).replace("<", "<d:").replace("<d:/", "</d:"),
            ),
            (
                "stray elements",
                doc(&ROW.replace("<row>", "<row><vendor>x</vendor>")),
            ),
            ("mismatched end tag", doc(&ROW.replace("</count>", "</COUNT>"))),
            (
                "fraction in a date",
                doc(ROW).replace("1767657599", "1767657599.0"),
            ),
        ];
        for (what, text) in cases {
            let r = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.policy.domain, "shop.test", "{what}");
            assert_eq!(r.rows.len(), 1, "{what}");
            let row = &r.rows[0];
            assert_eq!(
                (row.count, row.dkim_aligned(), row.spf_aligned()),
                (3, true, false),
                "{what}"
            );
            assert_eq!(row.dkim[0].detail.as_deref(), Some("s"), "{what}");
            assert_eq!(row.spf[0].domain, "x.test", "{what}");
        }
    }

    #[test]
    fn repairs_are_noted() {
        let bad_row = ROW.replace("192.0.2.1", "not an address");
        let long = doc(&format!("{ROW}{bad_row}")).replace("1767657599", "1799999999");
        let r = parse(long.as_bytes()).unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.end - r.begin, 86400);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        let mut bytes = doc(ROW).into_bytes();
        bytes.splice(0..0, b"<!-- \xff\xfe -->".iter().copied());
        assert_eq!(parse(&bytes).unwrap().schema, Schema::Rfc7489);
    }

    #[test]
    fn unreadable_reports_are_one_error_with_a_line() {
        let truncated = doc(ROW);
        let truncated = format!("<?xml version=\"1.0\"?>\n{}", &truncated[..truncated.len() - 30]);
        match parse(truncated.as_bytes()) {
            Err(XmlError::Truncated { line, .. } | XmlError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        let cut_between_tags = doc(ROW).replace("</feedback>", "");
        assert!(matches!(
            parse(cut_between_tags.as_bytes()),
            Err(XmlError::Truncated { line: 1, ref element }) if element == "feedback"
        ));
        let broken = format!(
            "<feedback>\n<report_metadata>\n<org_name a=\"1>x</org_name>{}",
            doc(ROW)
        );
        match parse(broken.as_bytes()) {
            Err(XmlError::Syntax { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(b"<html></html>"), Err(XmlError::NotFeedback));
        let no_id = doc(ROW).replace("<report_id>1</report_id>", "");
        assert_eq!(parse(no_id.as_bytes()), Err(XmlError::Missing("report_id")));
    }

    #[test]
    fn counts_above_a_billion_and_too_many_rows_refuse_the_report() {
        let with_count = |c: &str| doc(&ROW.replace("<count>3</count>", &format!("<count>{c}</count>")));
        let top = parse(with_count("1000000000").as_bytes()).unwrap();
        assert_eq!(top.rows[0].count, MAX_COUNT);
        assert_eq!(
            parse(with_count("1000000001").as_bytes()),
            Err(XmlError::CountTooLarge(1_000_000_001))
        );
        assert_eq!(
            parse(with_count("99999999999999999999999").as_bytes()),
            Err(XmlError::CountTooLarge(u64::MAX))
        );
        let five = doc(&ROW.repeat(5));
        let bounds = Bounds {
            max_rows: 4,
            ..Bounds::default()
        };
        assert_eq!(
            parse_bounded(five.as_bytes(), &bounds),
            Err(XmlError::TooManyRows(4))
        );
        assert_eq!(parse(five.as_bytes()).unwrap().rows.len(), 5);
    }
}
