//! TSIG (RFC 8945): the keys of `[tsig.NAME]`, checking a signed request, and signing
//! responses, including every message of a zone transfer stream (5.3.1: the first
//! message covers the request MAC and the full TSIG variables, each later one the
//! previous MAC and only the timers).
//!
//! hickory's [`TSigner`] computes and checks MACs and parses a signed request; the
//! stream signing is written here because hickory signs single responses only.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, signed_bitmessage_to_buf};
use hickory_proto::rr::{Name, TSigner};

/// The time a signature may differ from ours (RFC 8945 10: 300 s recommended).
pub const FUDGE: u16 = 300;
/// TSIG's RR type.
const TSIG_TYPE: u16 = 250;
/// Class ANY, which a TSIG RR carries.
const CLASS_ANY: u16 = 255;
/// RCODE NOTAUTH (RFC 8945 5.2: every TSIG failure is answered with it).
pub const NOTAUTH: u8 = 9;

/// One shared secret, as `[tsig.NAME]` configures it.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name, which both sides must spell the same (absolute, lower case).
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub signer: TSigner,
}

impl std::fmt::Debug for TsigKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigKey({} {})", self.name, self.algorithm)
    }
}

/// The algorithms spfd accepts (those hickory implements), by their usual names.
pub fn parse_algorithm(text: &str) -> Option<TsigAlgorithm> {
    match text.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Some(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
        _ => None,
    }
}

impl TsigKey {
    pub fn new(name: Name, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<TsigKey, String> {
        let name = name.to_lowercase();
        let signer =
            TSigner::new(secret, algorithm.clone(), name.clone(), FUDGE).map_err(|e| e.to_string())?;
        Ok(TsigKey {
            name,
            algorithm,
            signer,
        })
    }
}

/// Keys by their `[tsig.NAME]` name.
pub type Keyring = BTreeMap<String, TsigKey>;

/// What a request's TSIG says.
#[derive(Debug)]
pub enum Verdict {
    /// No TSIG record.
    Unsigned,
    /// Signed with `key`; `mac` is the request MAC the response must cover.
    Signed { key: TsigKey, mac: Vec<u8> },
    /// Signed, but wrong: answer NOTAUTH with this TSIG error (BADKEY, BADSIG: unsigned;
    /// BADTIME: signed, RFC 8945 5.2.3).
    Failed {
        error: TsigError,
        key_name: Name,
        key: Option<TsigKey>,
        mac: Vec<u8>,
    },
}

/// Checks the TSIG record of a request, if it has one, against `keys`.
pub fn verify_request(message: &[u8], keys: &Keyring) -> Verdict {
    let Ok((_, record)) = signed_bitmessage_to_buf(message, None, true) else {
        return Verdict::Unsigned;
    };
    let key_name = record.name.to_lowercase();
    match keys
        .values()
        .find(|k| k.name == key_name && k.algorithm == record.data.algorithm)
    {
        Some(key) => verify_with(message, key, record.data.mac),
        None => Verdict::Failed {
            error: TsigError::BadKey,
            key_name,
            key: None,
            mac: Vec::new(),
        },
    }
}

/// Checks that a request is signed with `key` and no other.
pub fn verify_request_with(message: &[u8], key: &TsigKey) -> Verdict {
    let Ok((_, record)) = signed_bitmessage_to_buf(message, None, true) else {
        return Verdict::Unsigned;
    };
    if record.name.to_lowercase() != key.name || record.data.algorithm != key.algorithm {
        return Verdict::Failed {
            error: TsigError::BadKey,
            key_name: record.name.to_lowercase(),
            key: None,
            mac: Vec::new(),
        };
    }
    verify_with(message, key, record.data.mac)
}

/// The MAC and time of a request whose TSIG record names `key`.
fn verify_with(message: &[u8], key: &TsigKey, request_mac: Vec<u8>) -> Verdict {
    let failed = |error| Verdict::Failed {
        error,
        key_name: key.name.clone(),
        key: Some(key.clone()),
        mac: request_mac.clone(),
    };
    match key.signer.verify_message_byte(message, None, true) {
        Err(_) => failed(TsigError::BadSig),
        Ok((mac, _, valid)) if valid.contains(&unix_now()) => Verdict::Signed {
            key: key.clone(),
            mac,
        },
        Ok(_) => failed(TsigError::BadTime),
    }
}

/// Signs the messages of one response stream in order (one message is a stream of one).
pub struct StreamSigner {
    key: TsigKey,
    /// The MAC the next message covers: the request's, then each message's own.
    previous: Vec<u8>,
    first: bool,
    time: u64,
}

impl StreamSigner {
    pub fn new(key: TsigKey, request_mac: Vec<u8>) -> Self {
        StreamSigner {
            key,
            previous: request_mac,
            first: true,
            time: unix_now(),
        }
    }

    /// Appends the TSIG record to an encoded message (its ARCOUNT grows by one); the
    /// original id it carries is the message's own (the request's). `error` is the TSIG
    /// error code (0, or BADTIME for a signed refusal).
    pub fn sign(&mut self, message: &mut Vec<u8>, error: u16) {
        let mut tbs = Vec::with_capacity(message.len() + 128);
        tbs.extend_from_slice(&(self.previous.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.previous);
        tbs.extend_from_slice(message);
        let time = time48(self.time);
        if self.first {
            tbs.extend(self.variables(error));
        } else {
            tbs.extend_from_slice(&time);
            tbs.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = self.key.signer.sign(&tbs).unwrap_or_default();
        let id = [message[0], message[1]];
        append_tsig(message, &self.key, &time, &mac, id, error);
        self.previous = mac;
        self.first = false;
    }

    /// The TSIG variables of the first message (RFC 8945 4.3.3).
    fn variables(&self, error: u16) -> Vec<u8> {
        let mut out = wire_name(&self.key.name);
        out.extend_from_slice(&CLASS_ANY.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend(wire_name(&self.key.algorithm.to_name()));
        out.extend_from_slice(&time48(self.time));
        out.extend_from_slice(&FUDGE.to_be_bytes());
        out.extend_from_slice(&error.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out
    }
}

/// The most unsigned messages in a row a stream may carry (RFC 8945 5.3.1).
const MAX_UNSIGNED: usize = 99;

/// Checks the responses of one stream to a request signed with `key`, in order (RFC
/// 8945 5.3.1): the first is signed and covers the request MAC; a later message may go
/// unsigned, and the next signed one covers the previous MAC,
/// the unsigned messages since, and its own. hickory's verifier wants every message
/// signed.
pub struct StreamVerifier {
    key: TsigKey,
    previous: Vec<u8>,
    /// The unsigned messages since the last signed one, as received.
    unsigned: Vec<u8>,
    unsigned_count: usize,
    first: bool,
}

impl StreamVerifier {
    pub fn new(key: TsigKey, request_mac: Vec<u8>) -> Self {
        StreamVerifier {
            key,
            previous: request_mac,
            unsigned: Vec::new(),
            unsigned_count: 0,
            first: true,
        }
    }

    /// Checks the next message; `signed` says whether it carries a TSIG record.
    pub fn verify(&mut self, message: &[u8], signed: bool) -> Result<(), String> {
        if !signed {
            if self.first {
                return Err("the response is not signed".into());
            }
            if self.unsigned_count == MAX_UNSIGNED {
                return Err(format!("more than {MAX_UNSIGNED} unsigned messages in a row"));
            }
            self.unsigned.extend_from_slice(message);
            self.unsigned_count += 1;
            return Ok(());
        }
        let (tbv, record) = signed_bitmessage_to_buf(message, None, self.first).map_err(|e| e.to_string())?;
        let tsig = &record.data;
        if record.name.to_lowercase() != self.key.name || tsig.algorithm != self.key.algorithm {
            return Err(format!("signed with another key ({})", record.name));
        }
        if let Some(error) = &tsig.error {
            return Err(format!("TSIG error {error:?}"));
        }
        if tsig.mac.len() < mac_len(&tsig.algorithm) {
            return Err("the MAC is truncated".into());
        }
        let mut covered = Vec::with_capacity(2 + self.previous.len() + self.unsigned.len() + tbv.len());
        covered.extend_from_slice(&(self.previous.len() as u16).to_be_bytes());
        covered.extend_from_slice(&self.previous);
        covered.extend_from_slice(&self.unsigned);
        covered.extend_from_slice(&tbv);
        self.key
            .signer
            .verify(&covered, &tsig.mac)
            .map_err(|_| "the MAC does not verify".to_string())?;
        if unix_now().abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err("the signature time is off by more than its fudge".into());
        }
        self.previous = tsig.mac.clone();
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.first = false;
        Ok(())
    }

    /// Whether the stream so far ends with a signed message (RFC 8945 5.3.1: the last
    /// one must be).
    pub fn ends_signed(&self) -> bool {
        !self.first && self.unsigned_count == 0
    }
}

/// The full MAC length of an algorithm spfd accepts (truncated MACs are refused).
fn mac_len(algorithm: &TsigAlgorithm) -> usize {
    match algorithm {
        TsigAlgorithm::HmacSha256 => 32,
        TsigAlgorithm::HmacSha384 => 48,
        _ => 64,
    }
}

/// Signs the response to a request that carried a TSIG record (RFC 8945 5.3): with the
/// request's key when it verified, else the response becomes NOTAUTH with an
/// unsigned TSIG saying why (BADKEY, BADSIG) or a signed one (BADTIME). A request
/// without TSIG leaves the response as it is.
pub fn sign_reply(request: &[u8], response: &mut Vec<u8>, keys: &Keyring) {
    if keys.is_empty() || request.get(10..12).is_none_or(|c| c == [0, 0]) || response.len() < 12 {
        return;
    }
    match verify_request(request, keys) {
        Verdict::Unsigned => {}
        Verdict::Signed { key, mac } => StreamSigner::new(key, mac).sign(response, 0),
        Verdict::Failed {
            error,
            key_name,
            key,
            mac,
        } => {
            *response = notauth(request, response);
            match (error, key) {
                (TsigError::BadTime, Some(key)) => {
                    StreamSigner::new(key, mac).sign(response, u16::from(error))
                }
                (_, key) => {
                    let algorithm = key.map_or(TsigAlgorithm::HmacSha256, |k| k.algorithm);
                    append_unsigned(response, &key_name, &algorithm, error);
                }
            }
        }
    }
}

/// NOTAUTH with the response's header and question and no records.
fn notauth(request: &[u8], response: &[u8]) -> Vec<u8> {
    let mut out = response[..12].to_vec();
    out[3] = (out[3] & 0xf0) | NOTAUTH;
    out[6..12].fill(0);
    let question_end = (|| {
        let mut at = 12;
        loop {
            let len = usize::from(*request.get(at)?);
            if len == 0 || len > 63 {
                return (len == 0).then_some(at + 5);
            }
            at += 1 + len;
        }
    })();
    match question_end.and_then(|end| request.get(12..end)) {
        Some(question) if request[4..6] == [0, 1] => out.extend_from_slice(question),
        _ => out[4..6].fill(0),
    }
    out
}

/// An unsigned TSIG record for a BADKEY or BADSIG answer (RFC 8945 5.3.2: the MAC is
/// empty), naming the key the request used.
pub fn append_unsigned(message: &mut Vec<u8>, key_name: &Name, algorithm: &TsigAlgorithm, error: TsigError) {
    let key = TsigKey {
        name: key_name.clone(),
        algorithm: algorithm.clone(),
        signer: TSigner::new(vec![0], TsigAlgorithm::HmacSha256, key_name.clone(), FUDGE)
            .expect("hmac-sha256 is supported"),
    };
    let id = [message[0], message[1]];
    append_tsig(message, &key, &time48(unix_now()), &[], id, u16::from(error));
}

fn append_tsig(message: &mut Vec<u8>, key: &TsigKey, time: &[u8; 6], mac: &[u8], id: [u8; 2], error: u16) {
    let mut rdata = wire_name(&key.algorithm.to_name());
    rdata.extend_from_slice(time);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&id);
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes());
    message.extend(wire_name(&key.name));
    message.extend_from_slice(&TSIG_TYPE.to_be_bytes());
    message.extend_from_slice(&CLASS_ANY.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend(rdata);
    let arcount = u16::from_be_bytes([message[10], message[11]]) + 1;
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// A name in lower-case wire form (canonical, RFC 8945 4.3.3).
fn wire_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

fn time48(time: u64) -> [u8; 6] {
    let b = time.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey::new(
            Name::from_ascii("xfr-key.").unwrap(),
            TsigAlgorithm::HmacSha256,
            secret.to_vec(),
        )
        .unwrap()
    }

    fn signed_request(key: &TsigKey) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        m.finalize(&key.signer, unix_now()).unwrap();
        m.to_vec().unwrap()
    }

    #[test]
    fn requests_are_checked_against_the_keyring() {
        let good = key(b"secret");
        let keys: Keyring = [("xfr-key".to_string(), good.clone())].into();
        assert!(matches!(
            verify_request(&signed_request(&good), &keys),
            Verdict::Signed { .. }
        ));
        let wrong = key(b"other secret");
        assert!(matches!(
            verify_request(&signed_request(&wrong), &keys),
            Verdict::Failed {
                error: TsigError::BadSig,
                ..
            }
        ));
        let mut unsigned = Message::query();
        unsigned.add_query(Query::query(Name::root(), RecordType::SOA));
        assert!(matches!(
            verify_request(&unsigned.to_vec().unwrap(), &keys),
            Verdict::Unsigned
        ));
        assert!(matches!(
            verify_request(&signed_request(&good), &Keyring::new()),
            Verdict::Failed {
                error: TsigError::BadKey,
                ..
            }
        ));
    }

    #[test]
    fn a_signed_stream_verifies_with_hickory_message_by_message() {
        let k = key(b"secret");
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        let mut verifier = request.finalize(&k.signer, unix_now()).unwrap().unwrap();
        let Verdict::Signed { key, mac } =
            verify_request(&request.to_vec().unwrap(), &[("k".into(), k.clone())].into())
        else {
            panic!("not signed")
        };
        let mut signer = StreamSigner::new(key, mac);
        for _ in 0..3 {
            let mut response = Message::response(request.id, request.op_code);
            response.add_query(request.queries[0].clone());
            let mut bytes = response.to_vec().unwrap();
            signer.sign(&mut bytes, 0);
            verifier.verify(&bytes).expect("each message verifies");
        }
    }

    /// A response stream to a signed AXFR request for example.test: the request MAC and
    /// `n` encoded responses, each signed by spfd's own stream signer.
    fn stream(k: &TsigKey, n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        request.finalize(&k.signer, unix_now()).unwrap();
        let mac = request.signature().unwrap().data.mac.clone();
        let mut signer = StreamSigner::new(k.clone(), mac.clone());
        let messages = (0..n)
            .map(|_| {
                let mut response = Message::response(request.id, request.op_code);
                response.add_query(request.queries[0].clone());
                let mut bytes = response.to_vec().unwrap();
                signer.sign(&mut bytes, 0);
                bytes
            })
            .collect();
        (mac, messages)
    }

    #[test]
    fn a_stream_verifies_only_whole_in_order_and_with_its_key() {
        let k = key(b"secret");
        let (mac, messages) = stream(&k, 3);
        let mut verifier = StreamVerifier::new(k.clone(), mac.clone());
        for m in &messages {
            verifier.verify(m, true).unwrap();
        }
        assert!(verifier.ends_signed());
        // Out of order, tampered, another secret, an unsigned first message.
        let mut verifier = StreamVerifier::new(k.clone(), mac.clone());
        verifier.verify(&messages[0], true).unwrap();
        assert!(verifier.verify(&messages[2], true).is_err());
        let mut tampered = messages[0].clone();
        tampered[3] ^= 1;
        assert!(
            StreamVerifier::new(k.clone(), mac.clone())
                .verify(&tampered, true)
                .is_err()
        );
        let other = key(b"other secret");
        assert!(
            StreamVerifier::new(other, mac.clone())
                .verify(&messages[0], true)
                .is_err()
        );
        let unsigned = messages[0][..messages[0].len() - 1].to_vec();
        assert!(
            StreamVerifier::new(k.clone(), mac.clone())
                .verify(&unsigned, false)
                .is_err()
        );
        // After a signed message, up to 99 unsigned ones wait for the next signature.
        let mut verifier = StreamVerifier::new(k, mac);
        verifier.verify(&messages[0], true).unwrap();
        for _ in 0..MAX_UNSIGNED {
            verifier.verify(&unsigned, false).unwrap();
        }
        assert!(!verifier.ends_signed());
        assert!(verifier.verify(&unsigned, false).is_err());
    }
}
