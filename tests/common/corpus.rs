//! A corpus of DMARC aggregate reports made by the tests: several receivers, both
//! schemas, bare XML, gzip, zip and e-mail forms (nested multiparts, an attached
//! message), duplicates, a truncated report and bombs. Alongside the files it keeps
//! its own tally of what a correct import must count.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;

/// How a sender's mail fares at receivers.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub ip: &'static str,
    /// Messages per report (scaled by receiver and day).
    pub base: u64,
    /// DKIM passes aligned (d= the domain).
    pub dkim_aligned: bool,
    /// A passing DKIM signature of another domain (a provider's own), if any.
    pub dkim_other: Option<&'static str>,
    /// SPF passes aligned.
    pub spf_aligned: bool,
    /// The envelope (and SPF-checked) domain.
    pub envelope: &'static str,
}

/// What the test expects, tallied while writing (never read back from spfd).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub reports: u64,
    pub messages: u64,
    pub dmarc_pass: u64,
    pub days: u64,
    pub rows: u64,
    pub receivers: u64,
    pub by_ip: BTreeMap<String, u64>,
    pub pass_by_ip: BTreeMap<String, u64>,
    pub duplicates: u64,
    /// File names of inputs that must be reported as errors.
    pub bad: Vec<String>,
}

pub const RECEIVERS: [&str; 4] = ["google.com", "Yahoo! Inc", "Mail.Ru", "Enterprise Outlook"];
/// 2026-01-05 00:00 UTC.
pub const START: i64 = 1_767_571_200;

pub fn row_xml(s: &Sender, count: u64, domain: &str) -> String {
    let pe = |b: bool| if b { "pass" } else { "fail" };
    let mut dkim = String::new();
    if s.dkim_aligned {
        dkim +=
            &format!("<dkim><domain>{domain}</domain><selector>s1</selector><result>pass</result></dkim>");
    }
    if let Some(other) = s.dkim_other {
        dkim += &format!("<dkim><domain>{other}</domain><selector>p1</selector><result>pass</result></dkim>");
    }
    if dkim.is_empty() {
        dkim = format!("<dkim><domain>{domain}</domain><result>fail</result></dkim>");
    }
    // p=none: receivers act on nothing.
    let disposition = "none";
    format!(
        "<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
         <disposition>{disposition}</disposition><dkim>{}</dkim><spf>{}</spf></policy_evaluated></row>\
         <identifiers><header_from>{domain}</header_from><envelope_from>{env}</envelope_from></identifiers>\
         <auth_results>{dkim}<spf><domain>{env}</domain><scope>mfrom</scope><result>{}</result></spf></auth_results></record>\n",
        pe(s.dkim_aligned),
        pe(s.spf_aligned),
        if s.spf_aligned { "pass" } else { "fail" },
        ip = s.ip,
        env = s.envelope,
    )
}

/// One report; `dmarc2` selects the RFC 9990 namespace and elements.
/// What a report says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// RFC 9990's namespace and elements.
    pub dmarc2: bool,
    pub org: &'a str,
    pub id: &'a str,
    pub begin: i64,
    pub end: i64,
    pub domain: &'a str,
    pub p: &'a str,
}

pub fn report_xml(m: &Meta<'_>, rows: &str) -> String {
    let Meta {
        dmarc2,
        org,
        id,
        begin,
        end,
        domain,
        p,
    } = *m;
    let (open, extra_meta, extra_policy) = if dmarc2 {
        (
            "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\"><version>1.0</version>",
            "<generator>corpus 1.0</generator>",
            "<np>reject</np><testing>n</testing><discovery_method>treewalk</discovery_method>",
        )
    } else {
        ("<feedback>", "", "<pct>100</pct>")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{open}\n<report_metadata><org_name>{org}</org_name>\
         <email>noreply-dmarc@{host}</email><report_id>{id}</report_id>\
         <date_range><begin>{begin}</begin><end>{end}</end></date_range>{extra_meta}</report_metadata>\n\
         <policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>{p}</p><sp>{p}</sp>{extra_policy}</policy_published>\n\
         {rows}</feedback>\n",
        host = org.to_ascii_lowercase().replace([' ', '!'], ""),
    )
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zip(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, options).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}

fn b64_lines(bytes: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A report mail as receivers send it: multipart/mixed holding a multipart/alternative
/// text and the attachment (base64, with a content type that is often wrong).
pub fn mail(subject: &str, attachment_name: &str, attachment: &[u8]) -> String {
    format!(
        "From: noreply-dmarc@receiver.test\r\nTo: dmarc@shop.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@receiver.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n\
         --inner\r\nContent-Type: text/html\r\n\r\n<p>This is an aggregate report.</p>\r\n--inner--\r\n\
         --outer\r\nContent-Type: application/octet-stream; name=\"{attachment_name}\"\r\n\
         Content-Disposition: attachment; filename=\"{attachment_name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--outer--\r\n",
        b64_lines(attachment)
    )
}

/// A mail forwarding another mail as message/rfc822.
pub fn forwarded(subject: &str, inner: &str) -> String {
    format!(
        "From: postmaster@shop.test\r\nTo: dmarc@shop.test\r\nSubject: Fwd: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"fwd\"\r\n\r\n\
         --fwd\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --fwd\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--fwd--\r\n"
    )
}

/// Writes the corpus for `domain` into `dir` and returns the expected tally.
pub fn write_corpus(dir: &Path, domain: &str, senders: &[Sender], days: i64) -> Tally {
    let mut t = Tally {
        days: days as u64,
        receivers: RECEIVERS.len() as u64,
        ..Tally::default()
    };
    for day in 0..days {
        for (r, org) in RECEIVERS.iter().enumerate() {
            let begin = START + day * 86400;
            // One receiver sends a 40-day range: it is cut, and still counts on its first day.
            let end = if r == 2 && day == 0 {
                begin + 40 * 86400
            } else {
                begin + 86399
            };
            let mut rows = String::new();
            for (i, s) in senders.iter().enumerate() {
                let count = s.base + (r as u64 + 1) * (day as u64 + 1) + i as u64;
                rows += &row_xml(s, count, domain);
                t.messages += count;
                t.rows += 1;
                *t.by_ip.entry(s.ip.to_string()).or_default() += count;
                if s.dkim_aligned || s.spf_aligned {
                    t.dmarc_pass += count;
                    *t.pass_by_ip.entry(s.ip.to_string()).or_default() += count;
                }
            }
            if r == 3 {
                // Sloppy: a stray element and a byte that is not UTF-8 inside a comment.
                rows += "<record><extra_vendor_tag>x</extra_vendor_tag></record>\n";
            }
            let id = format!("{}-{day}", r + 1000);
            let meta = Meta {
                dmarc2: r % 2 == 1,
                org,
                id: &id,
                begin,
                end,
                domain,
                p: "none",
            };
            let xml = report_xml(&meta, &rows);
            let name = format!("r{r}-d{day}");
            write_form(dir, &name, r, day, xml.as_bytes());
            t.reports += 1;
            if day == 0 && r == 1 {
                std::fs::write(dir.join(format!("{name}-again.xml")), xml.as_bytes()).unwrap();
                t.duplicates += 1;
            }
        }
    }
    write_bad(dir, domain, &mut t);
    t
}

fn write_form(dir: &Path, name: &str, r: usize, day: i64, xml: &[u8]) {
    let mut xml = xml.to_vec();
    if r == 3 {
        let at = xml.windows(9).position(|w| w == b"<feedback").unwrap();
        xml.splice(at..at, b"<!-- caf\xe9 -->".iter().copied());
    }
    let (file, bytes) = match r {
        0 => (format!("{name}.xml"), xml),
        1 => (format!("{name}.bin"), gzip(&xml)),
        2 => (format!("{name}.zip"), zip(&format!("{name}.xml"), &xml)),
        _ if day % 2 == 0 => (
            format!("{name}.eml"),
            mail(name, &format!("{name}.xml.gz"), &gzip(&xml)).into_bytes(),
        ),
        _ => {
            let inner = mail(name, &format!("{name}.zip"), &zip(&format!("{name}.xml"), &xml));
            (format!("{name}.eml"), forwarded(name, &inner).into_bytes())
        }
    };
    std::fs::write(dir.join(file), bytes).unwrap();
}

/// A truncated report, a gzip bomb and a zip bomb (each over 1 MiB decompressed; the
/// tests set `max_report_bytes` to 1 MiB).
fn write_bad(dir: &Path, domain: &str, t: &mut Tally) {
    let meta = Meta {
        dmarc2: false,
        org: "Broken Inc",
        id: "broken-1",
        begin: START,
        end: START + 86399,
        domain,
        p: "none",
    };
    let xml = report_xml(&meta, "");
    let cut = &xml[..xml.len() - 40];
    std::fs::write(dir.join("broken.xml"), cut).unwrap();
    let mut bomb = b"<feedback><report_metadata>".to_vec();
    bomb.resize(3 << 20, b' ');
    std::fs::write(dir.join("bomb.gz"), gzip(&bomb)).unwrap();
    std::fs::write(dir.join("bomb.zip"), zip("bomb.xml", &bomb)).unwrap();
    t.bad = vec!["broken.xml".into(), "bomb.gz".into(), "bomb.zip".into()];
}
