//! A structural walk over a raw DNS message for what hickory's parser lets through or
//! reads differently from the fast path: compression pointers in the question (hickory
//! decodes them but its encoder echoes the question's raw bytes, which then point at
//! other octets of the response) and EDNS options that run past their OPT record
//! (hickory drops such options with a warning per message instead of failing). Both
//! paths call these checks, so UDP and TCP give the same answer to the same bytes.

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;

/// EDNS options whose content hickory parses (and may reject): the fast path hands a
/// query carrying them to the general path. DAU, DHU, N3U (RFC 6975) and Client Subnet
/// (RFC 7871). Every other option is opaque to both paths.
const PARSED_OPTIONS: [u16; 4] = [5, 6, 7, 8];

/// Why a message is refused before hickory reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// A question name holds a compression pointer (or a label type other than a
    /// plain label): with one question it can only point into the header or loop.
    QuestionPointer,
    /// An OPT's options do not tile its rdata exactly.
    BadOptions,
}

/// The first defect of `message`, if any. A message too short to walk is left to the
/// parser, which rejects it.
pub fn defect(message: &[u8]) -> Option<Defect> {
    if message.len() < HEADER {
        return None;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([message[4 + 2 * i], message[5 + 2 * i]]));
    let mut at = HEADER;
    for _ in 0..count(0) {
        match plain_name(message, at) {
            Name::End(end) => at = end + 4,
            Name::Pointer => return Some(Defect::QuestionPointer),
            Name::Short => return None,
        }
    }
    let records = count(1) + count(2) + count(3);
    for _ in 0..records {
        let end = skip_name(message, at)?;
        let fixed = message.get(end..end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = message.get(end + 10..end + 10 + rdlen)?;
        if rtype == TYPE_OPT && options(rdata).is_none() {
            return Some(Defect::BadOptions);
        }
        at = end + 10 + rdlen;
    }
    None
}

/// The end of the question section, for a message whose question names are plain
/// (as every response spfd writes).
pub fn question_end(message: &[u8]) -> Option<usize> {
    let count = u16::from_be_bytes([*message.get(4)?, *message.get(5)?]);
    let mut at = HEADER;
    for _ in 0..count {
        match plain_name(message, at) {
            Name::End(end) if end + 4 <= message.len() => at = end + 4,
            _ => return None,
        }
    }
    (at <= message.len()).then_some(at)
}

enum Name {
    /// A name of plain labels ending (after its root label) at this offset.
    End(usize),
    /// A pointer or a reserved label type.
    Pointer,
    /// The message ends inside the name.
    Short,
}

fn plain_name(message: &[u8], mut at: usize) -> Name {
    loop {
        let Some(&len) = message.get(at) else {
            return Name::Short;
        };
        if len & 0xc0 != 0 {
            return Name::Pointer;
        }
        at += 1 + usize::from(len);
        if len == 0 {
            return Name::End(at);
        }
    }
}

/// The end of a name in a record: plain labels, then the root or one pointer.
pub(super) fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xc0 => return Some(at + 2),
            _ => return None,
        }
    }
}

/// Walks the options of an OPT's rdata: `None` unless they tile it exactly; otherwise
/// whether any option is one hickory parses ([`PARSED_OPTIONS`]).
pub fn options(rdata: &[u8]) -> Option<bool> {
    let mut parsed = false;
    let mut rest = rdata;
    while !rest.is_empty() {
        let head = rest.get(..4)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        rest = rest.get(4 + len..)?;
        parsed |= PARSED_OPTIONS.contains(&code);
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn options_must_tile_the_rdata() {
        let table: [(&[u8], Option<bool>); 7] = [
            (&[], Some(false)),
            (&[0, 10, 0, 2, 1, 2], Some(false)),
            (&[0, 10, 0, 0, 0, 12, 0, 1, 0], Some(false)),
            (&[0, 8, 0, 4, 0, 1, 24, 0], Some(true)),
            (&[0, 10], None),
            (&[0, 10, 0, 3, 1, 2], None),
            (&[0, 10, 0, 200, 1, 2, 3, 4, 5, 6, 7, 8], None),
        ];
        for (rdata, expected) in table {
            assert_eq!(options(rdata), expected, "{rdata:?}");
        }
    }

    #[test]
    fn defects_are_found_where_they_are() {
        let table = [
            (
                "010200000001000000000000c00200100001",
                Some(Defect::QuestionPointer),
            ),
            (
                "01020000000100000000000003777777c00c00100001",
                Some(Defect::QuestionPointer),
            ),
            ("010200000001000000000000000010000100", None),
            ("01020000000100000000000000001000010000290200000000000000", None),
            ("0102000000010000000000010000100001000029020000000000000400", None),
            (
                "010200000001000000000001000010000100002902000000000000050003000101",
                None,
            ),
            (
                "01020000000100000000000100001000010000290200000000000004000a0008",
                Some(Defect::BadOptions),
            ),
            ("0102", None),
        ];
        for (text, expected) in table {
            assert_eq!(defect(&hex(text)), expected, "{text}");
        }
    }
}
