//! Malformed DNS messages from a seeded generator: well-formed queries (several names,
//! types, EDNS with and without options) broken in one of [`KINDS`] ways.

/// splitmix64: small, seedable, the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The number of kinds of damage [`malformed`] does.
pub const KINDS: usize = 6;

const NAMES: [&str; 6] = [
    "_spf.example.test",
    "_SPF.Example.TEST",
    "_dmarc._spf.example.test",
    "s2048._domainkey._spf.example.test",
    "nothing._spf.example.test",
    "elsewhere.invalid",
];
/// TXT, A, SOA, NS, ANY, AXFR, OPT, type 0.
const TYPES: [u16; 8] = [16, 1, 6, 2, 255, 252, 41, 0];

fn name(text: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in text.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// An OPT record with the given rdata.
fn opt(payload: u16, flags: [u8; 4], rdata: &[u8]) -> Vec<u8> {
    let mut rr = vec![0, 0, 41];
    rr.extend_from_slice(&payload.to_be_bytes());
    rr.extend_from_slice(&flags);
    rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    rr.extend_from_slice(rdata);
    rr
}

/// A well-formed query: header (id, RD or not), one question, maybe an OPT with a
/// cookie or padding.
pub fn query(rng: &mut Rng) -> Vec<u8> {
    let id = rng.next() as u16;
    let flags = if rng.below(2) == 0 { 0x0100u16 } else { 0 };
    let edns = rng.below(3);
    let mut msg = id.to_be_bytes().to_vec();
    msg.extend_from_slice(&flags.to_be_bytes());
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns > 0)]);
    msg.extend_from_slice(&name(rng.pick(&NAMES)));
    msg.extend_from_slice(&rng.pick(&TYPES).to_be_bytes());
    msg.extend_from_slice(&[0, 1]);
    match edns {
        1 => msg.extend_from_slice(&opt(1232, [0, 0, 0x80, 0], &[])),
        2 => msg.extend_from_slice(&opt(4096, [0, 0, 0, 0], &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])),
        _ => {}
    }
    msg
}

/// A malformed message and the name of what was done to it.
pub fn malformed(rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let mut msg = query(rng);
    let kind = match rng.below(KINDS) {
        0 => {
            flip_bits(rng, &mut msg);
            "bit flips"
        }
        1 => {
            msg.truncate(rng.below(msg.len()));
            "truncation"
        }
        2 => {
            msg = with_pointer(rng, &msg);
            "compression pointers"
        }
        3 => {
            msg = with_bad_opt(rng, &msg);
            "bad OPT"
        }
        4 => {
            wrong_counts(rng, &mut msg);
            "wrong counts"
        }
        _ => {
            garbage(rng, &mut msg);
            "garbage"
        }
    };
    (kind, msg)
}

fn flip_bits(rng: &mut Rng, msg: &mut [u8]) {
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(msg.len());
        msg[at] ^= 1 << rng.below(8);
    }
}

/// The header of `msg` with a question whose name uses pointers: into the header, to
/// itself, past the end, label then a loop, a chain; or an OPT owned by a pointer.
fn with_pointer(rng: &mut Rng, msg: &[u8]) -> Vec<u8> {
    let mut out = msg[..12].to_vec();
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    let names: [&[u8]; 6] = [
        &[0xc0, 0x02],
        &[0xc0, 0x0c],
        &[0xc0, 0xff],
        &[3, b'a', b'b', b'c', 0xc0, 0x0c],
        &[1, b'x', 0xc0, 0x10, 1, b'y', 0xc0, 0x0c],
        &[0x40, 1, 2],
    ];
    if rng.below(4) == 0 {
        // A plain question, then an OPT whose owner is a pointer to it.
        out[11] = 1;
        out.extend_from_slice(&name("_spf.example.test"));
        out.extend_from_slice(&[0, 16, 0, 1, 0xc0, 0x0c, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        return out;
    }
    out.extend_from_slice(rng.pick(&names));
    out.extend_from_slice(&[0, 16, 0, 1]);
    out
}

/// The query with an OPT that is wrong in one way.
fn with_bad_opt(rng: &mut Rng, msg: &[u8]) -> Vec<u8> {
    // The query without its own OPT, if it had one.
    let mut out = msg[..question_end(msg)].to_vec();
    out[11] = 1;
    let bad: Vec<u8> = match rng.below(9) {
        0 => opt(1232, [0, 0, 0, 0], &[0, 10, 0, 200, 1, 2, 3, 4, 5, 6, 7, 8]),
        1 => opt(1232, [0, 0, 0, 0], &[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]),
        2 => opt(1232, [0, 0, 0, 0], &[0, 10]),
        3 => opt(1232, [0, rng.below(256) as u8, 0, 0], &[]),
        4 => opt(rng.below(600) as u16, [rng.below(256) as u8, 0, 0, 0], &[]),
        5 => opt(1232, [0, 0, 0, 0], &[0, 8, 0, 4, 0, rng.below(4) as u8, 33, 0]),
        6 => opt(1232, [0, 0, 0, 0], &[0, 8, 0, 8, 0, 1, 40, 0, 1, 2, 3, 4]),
        7 => {
            // Two OPTs.
            out[11] = 2;
            [opt(1232, [0; 4], &[]), opt(512, [0; 4], &[])].concat()
        }
        _ => {
            // An owner that is not the root, or an rdata length past the end.
            let mut rr = opt(1232, [0; 4], &[0, 12, 0, 0]);
            if rng.below(2) == 0 {
                rr.splice(0..1, [1, b'x', 0]);
            } else {
                rr[10] += 1 + rng.below(8) as u8;
            }
            rr
        }
    };
    out.extend_from_slice(&bad);
    out
}

/// The end of the (one, plain) question of a generated query.
fn question_end(msg: &[u8]) -> usize {
    let mut at = 12;
    while msg[at] != 0 {
        at += 1 + usize::from(msg[at]);
    }
    at + 1 + 4
}

fn wrong_counts(rng: &mut Rng, msg: &mut [u8]) {
    let section = rng.below(4);
    let value: u16 = rng.pick(&[0, 2, 3, 0x00ff, 0xffff]);
    msg[4 + 2 * section..6 + 2 * section].copy_from_slice(&value.to_be_bytes());
}

fn garbage(rng: &mut Rng, msg: &mut Vec<u8>) {
    let keep = 12 + rng.below(msg.len() - 11);
    msg.truncate(keep);
    for _ in 0..rng.below(40) {
        msg.push(rng.next() as u8);
    }
}
