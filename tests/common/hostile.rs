//! Hostile report inputs, generated small: a mail of messages nested thousands deep,
//! a zip entry of a million minimal rows, zips whose entries all point at one
//! compressed stream, and zip entry names that try to start a log line.
#![allow(dead_code)]

use std::io::Write as _;

/// `levels` messages each holding the next as message/rfc822 (32 bytes a level).
pub fn nested_mail(levels: usize) -> Vec<u8> {
    let mut mail = b"Content-Type: message/rfc822\r\n\r\n".repeat(levels);
    mail.extend_from_slice(b"Subject: the bottom\r\n\r\nhello\r\n");
    mail
}

/// A report of `rows` minimal records for `domain`.
pub fn rows_xml(domain: &str, id: &str, rows: usize) -> Vec<u8> {
    let mut xml = format!(
        "<feedback><report_metadata><org_name>Bomb</org_name><report_id>{id}</report_id>\
         <date_range><begin>1767571200</begin><end>1767657599</end></date_range></report_metadata>\
         <policy_published><domain>{domain}</domain><p>none</p></policy_published>"
    )
    .into_bytes();
    let row = b"<record><row><source_ip>192.0.2.1</source_ip></row></record>";
    xml.reserve(row.len() * rows + 16);
    for _ in 0..rows {
        xml.extend_from_slice(row);
    }
    xml.extend_from_slice(b"</feedback>");
    xml
}

/// Raw deflate of `bytes`.
pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One entry of a hand-built zip: its name, where its local header is, and its data.
struct Entry {
    name: Vec<u8>,
    offset: u32,
    crc: u32,
    compressed: u32,
    size: u32,
}

/// A zip of `copies` entries with the same deflated content, each stored once
/// (`shared: false`, an honest archive), or all pointing at one stored copy (`shared:
/// true`, a bomb that inflates the stream once per entry).
pub fn zip_of_copies(content: &[u8], copies: usize, shared: bool) -> Vec<u8> {
    let data = deflate(content);
    let mut crc = flate2::Crc::new();
    crc.update(content);
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for i in 0..copies {
        let name = format!("report-{i}.xml").into_bytes();
        if shared && i > 0 {
            let first = &entries[0];
            entries.push(Entry {
                name,
                ..clone_entry(first)
            });
            continue;
        }
        let entry = Entry {
            name,
            offset: out.len() as u32,
            crc: crc.sum(),
            compressed: data.len() as u32,
            size: content.len() as u32,
        };
        local_header(&mut out, &entry);
        out.extend_from_slice(&data);
        entries.push(entry);
    }
    central_directory(&mut out, &entries);
    out
}

/// A zip of one entry named `name` holding `content`.
pub fn zip_named(name: &[u8], content: &[u8]) -> Vec<u8> {
    let data = deflate(content);
    let mut crc = flate2::Crc::new();
    crc.update(content);
    let entry = Entry {
        name: name.to_vec(),
        offset: 0,
        crc: crc.sum(),
        compressed: data.len() as u32,
        size: content.len() as u32,
    };
    let mut out = Vec::new();
    local_header(&mut out, &entry);
    out.extend_from_slice(&data);
    central_directory(&mut out, &[entry]);
    out
}

fn clone_entry(e: &Entry) -> Entry {
    Entry {
        name: e.name.clone(),
        ..*e
    }
}

fn local_header(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(b"PK\x03\x04");
    out.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
    out.extend_from_slice(&e.crc.to_le_bytes());
    out.extend_from_slice(&e.compressed.to_le_bytes());
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&e.name);
}

fn central_directory(out: &mut Vec<u8>, entries: &[Entry]) {
    let start = out.len() as u32;
    for e in entries {
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&e.compressed.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        // Extra and comment lengths, disk, internal and external attributes.
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.name);
    }
    let size = out.len() as u32 - start;
    let count = entries.len().min(0xffff) as u16;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}
