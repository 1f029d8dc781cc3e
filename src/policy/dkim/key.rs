//! DKIM public keys: reading them from `p` or a PEM file, checking the DER
//! SubjectPublicKeyInfo against `k`, and the RSA size limits of RFC 8301.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Reader, SliceReader};
use spki::SubjectPublicKeyInfoRef;
use toml::Spanned;

use crate::diag::Diagnostics;

/// The two key types DKIM knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    /// The value of the `k=` tag.
    pub fn tag(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa => "RSA",
            KeyType::Ed25519 => "Ed25519",
        })
    }
}

/// A key ready to publish.
pub(super) struct PublicKey {
    /// The bytes whose base64 follows `p=`.
    pub(super) published: Vec<u8>,
    pub(super) bits: u32,
    /// An Ed25519 SubjectPublicKeyInfo was given and its raw key taken out:
    /// worth a word when the user wrote it in p, expected from a PEM file.
    unwrapped: bool,
}

impl PublicKey {
    fn new(published: Vec<u8>, bits: u32, unwrapped: bool) -> Self {
        Self {
            published,
            bits,
            unwrapped,
        }
    }
}

/// Where a key comes from, for loading it and for naming it in messages.
pub(super) struct KeySource<'a> {
    pub(super) label: &'a str,
    pub(super) section_span: Range<usize>,
    pub(super) base_dir: &'a Path,
}

impl KeySource<'_> {
    /// Loads the key from p or key_file (exactly one must be set) and checks it
    /// against k and the RFC 8301 size limits.
    pub(super) fn load(
        &self,
        k: KeyType,
        p: Option<&Spanned<String>>,
        key_file: Option<&Spanned<String>>,
        diags: &mut Diagnostics,
    ) -> Option<PublicKey> {
        let label = self.label;
        let (span, subject, result) = match (p, key_file) {
            (Some(_), Some(file)) => {
                let msg = format!("{label} sets both p and key_file: keep one of them");
                diags.error(file.span(), msg);
                return None;
            }
            (None, None) => {
                let msg = format!(
                    "{label} has no key: write p = \"<base64 public key>\" or key_file = \
                     \"keys/<selector>.pub.pem\", or revoked = true to publish an empty p="
                );
                diags.error(self.section_span.clone(), msg);
                return None;
            }
            (Some(p), None) => (p.span(), format!("{label} p"), inline_key(k, p.get_ref())),
            (None, Some(file)) => {
                let path = self.base_dir.join(file.get_ref());
                let subject = format!("{label} key_file {:?}", path.display().to_string());
                (file.span(), subject, file_key(k, &path))
            }
        };
        match result {
            Ok(key) => {
                check_rsa_size(label, k, &key, span.clone(), diags);
                if key.unwrapped && p.is_some() {
                    let raw = BASE64.encode(&key.published);
                    let msg = format!(
                        "{label} p holds an Ed25519 SubjectPublicKeyInfo, but RFC 8463 publishes \
                         the raw 32-byte key, so spfd publishes p={raw}; write p = \"{raw}\""
                    );
                    diags.warning(span, msg);
                }
                Some(key)
            }
            Err(e) => {
                diags.error(span, format!("{subject} {e}"));
                None
            }
        }
    }
}

fn inline_key(k: KeyType, text: &str) -> Result<PublicKey, KeyError> {
    if text.contains("-----BEGIN") {
        return Err(KeyError::PemInline);
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let der = BASE64.decode(compact.as_bytes()).map_err(KeyError::Base64)?;
    decode_key(k, der)
}

/// Public key files are a few hundred bytes; the limit keeps a wrong path (a log,
/// a device) from being read whole.
const MAX_KEY_FILE: u64 = 64 * 1024;

fn file_key(k: KeyType, path: &Path) -> Result<PublicKey, KeyError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_string(&mut text))
        .map_err(KeyError::Read)?;
    let der = pem_public_key(&text)?;
    decode_key(k, der)
}

/// The DER inside the first PEM block, which must be a "PUBLIC KEY".
fn pem_public_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let begin = text.find("-----BEGIN ").ok_or(KeyError::NotPem)?;
    let after = &text[begin + "-----BEGIN ".len()..];
    let (kind, body) = after.split_once("-----").ok_or(KeyError::NotPem)?;
    match kind {
        "PUBLIC KEY" => {}
        "RSA PUBLIC KEY" => return Err(KeyError::Pkcs1),
        k if k.contains("PRIVATE KEY") => return Err(KeyError::PrivateKey),
        other => return Err(KeyError::PemKind(other.to_string())),
    }
    let end = body.find("-----END PUBLIC KEY-----").ok_or(KeyError::NotPem)?;
    let compact: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(compact.as_bytes()).map_err(KeyError::Base64)
}

/// Turns decoded key bytes into what is published for k.
fn decode_key(k: KeyType, bytes: Vec<u8>) -> Result<PublicKey, KeyError> {
    if k == KeyType::Ed25519 && bytes.len() == ED25519_LEN {
        return Ok(PublicKey::new(bytes, 256, false));
    }
    let spki = match parse_spki(&bytes) {
        Ok(spki) => spki,
        Err(e) if k == KeyType::Ed25519 && !matches!(e, KeyError::Pkcs1) => {
            return Err(KeyError::Ed25519Length(bytes.len()));
        }
        Err(_) if bytes.len() == ED25519_LEN => {
            return Err(KeyError::WrongType(KeyType::Ed25519, k));
        }
        Err(e) => return Err(e),
    };
    match (k, spki) {
        (KeyType::Rsa, Spki::Rsa { modulus_bits: bits }) => Ok(PublicKey::new(bytes, bits, false)),
        (KeyType::Ed25519, Spki::Ed25519(raw)) => Ok(PublicKey::new(raw.to_vec(), 256, true)),
        (k, Spki::Rsa { .. }) => Err(KeyError::WrongType(KeyType::Rsa, k)),
        (k, Spki::Ed25519(_)) => Err(KeyError::WrongType(KeyType::Ed25519, k)),
        (_, Spki::Other(name)) => Err(KeyError::Unsupported(name)),
    }
}

/// RFC 8301: RSA keys below 1024 bits MUST NOT be used; 2048 is recommended.
fn check_rsa_size(label: &str, k: KeyType, key: &PublicKey, span: Range<usize>, diags: &mut Diagnostics) {
    if k != KeyType::Rsa || key.bits >= 2048 {
        return;
    }
    let advice = "generate a new key with `openssl genpkey -algorithm RSA -pkeyopt \
                  rsa_keygen_bits:2048` and publish it under a new selector";
    if key.bits < 1024 {
        let msg = format!(
            "{label} RSA key has {} bits, and RFC 8301 forbids keys under 1024 bits: {advice}",
            key.bits
        );
        diags.error(span, msg);
    } else {
        let msg = format!(
            "{label} RSA key has {} bits; RFC 8301 recommends at least 2048: {advice}",
            key.bits
        );
        diags.warning(span, msg);
    }
}

const ED25519_LEN: usize = 32;

/// Why a key cannot be used; completes "dkim.<selector> p ..." or
/// "dkim.<selector> key_file "<path>" ...".
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error(
        "is not valid base64 ({0}): write the base64 of the public key, e.g. the lines between \
         -----BEGIN PUBLIC KEY----- and -----END PUBLIC KEY-----"
    )]
    Base64(base64::DecodeError),
    #[error(
        "holds a whole PEM block: write only the base64 lines between -----BEGIN PUBLIC KEY----- \
         and -----END PUBLIC KEY-----, or name the file in key_file instead"
    )]
    PemInline,
    #[error(
        "is not a PEM public key: expected a -----BEGIN PUBLIC KEY----- block, as written by \
         `openssl pkey -in <private key> -pubout`"
    )]
    NotPem,
    #[error("holds a PEM {0:?} block, not a PUBLIC KEY: write the output of `openssl pkey -pubout`")]
    PemKind(String),
    #[error(
        "holds a private key, which must never be published: write the public key with \
         `openssl pkey -in <private key> -pubout -out <selector>.pub.pem` and name that file"
    )]
    PrivateKey,
    #[error(
        "holds a PKCS#1 RSAPublicKey, but DKIM publishes a SubjectPublicKeyInfo (RFC 6376 3.6.1): \
         convert it with `openssl rsa -RSAPublicKey_in -in <file> -pubout`"
    )]
    Pkcs1,
    #[error(
        "is not a DER SubjectPublicKeyInfo: write the base64 of `openssl pkey -pubout -outform \
         DER`, i.e. the lines of a BEGIN PUBLIC KEY block"
    )]
    NotSpki,
    #[error("is a {0} key; DKIM keys are RSA (k = \"rsa\") or Ed25519 (k = \"ed25519\")")]
    Unsupported(String),
    #[error(
        "is an {0} key, but k is \"{tag}\": write k = \"{found}\"",
        tag = .1.tag(),
        found = .0.tag()
    )]
    WrongType(KeyType, KeyType),
    #[error(
        "must be the raw 32-byte Ed25519 public key (44 base64 characters, RFC 8463), or its \
         SubjectPublicKeyInfo; it decodes to {0} bytes"
    )]
    Ed25519Length(usize),
}

/// What a SubjectPublicKeyInfo holds.
#[derive(Debug, PartialEq, Eq)]
enum Spki<'a> {
    Rsa {
        modulus_bits: u32,
    },
    Ed25519(&'a [u8]),
    /// Another algorithm, by name or dotted OID.
    Other(String),
}

/// rsaEncryption (RFC 8017)
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410)
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// Algorithms someone may try, named in the error message.
const KNOWN_OIDS: &[(ObjectIdentifier, &str)] = &[
    (ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"), "EC (ECDSA)"),
    (
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"),
        "RSASSA-PSS",
    ),
    (ObjectIdentifier::new_unwrap("1.2.840.10040.4.1"), "DSA"),
    (ObjectIdentifier::new_unwrap("1.3.101.113"), "Ed448"),
    (ObjectIdentifier::new_unwrap("1.3.101.110"), "X25519"),
];

/// Strict DER (the `der` and `spki` crates): one element, nothing after it, minimal
/// lengths, unsigned integers.
///
/// ```text
/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
/// AlgorithmIdentifier  ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
/// RSAPublicKey         ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }   (RFC 8017)
/// ```
fn parse_spki(der: &[u8]) -> Result<Spki<'_>, KeyError> {
    let spki = match SubjectPublicKeyInfoRef::from_der(der) {
        Ok(spki) => spki,
        // A bare PKCS#1 RSAPublicKey, as `openssl rsa -RSAPublicKey_out` writes.
        Err(_) if rsa_modulus_bits(der).is_ok() => return Err(KeyError::Pkcs1),
        Err(_) => return Err(KeyError::NotSpki),
    };
    // A key has no unused bits in its BIT STRING.
    let key = spki.subject_public_key.as_bytes().ok_or(KeyError::NotSpki)?;
    let oid = spki.algorithm.oid;
    if oid == OID_RSA {
        let modulus_bits = rsa_modulus_bits(key).map_err(|_| KeyError::NotSpki)?;
        Ok(Spki::Rsa { modulus_bits })
    } else if oid == OID_ED25519 {
        (key.len() == ED25519_LEN)
            .then_some(Spki::Ed25519(key))
            .ok_or(KeyError::NotSpki)
    } else {
        let name = KNOWN_OIDS
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, n)| n.to_string());
        Ok(Spki::Other(name.unwrap_or_else(|| format!("OID {oid}"))))
    }
}

/// The modulus length of a DER RSAPublicKey.
fn rsa_modulus_bits(der: &[u8]) -> der::Result<u32> {
    let mut reader = SliceReader::new(der)?;
    let bits = reader.sequence(|fields| {
        let modulus = UintRef::decode(fields)?;
        UintRef::decode(fields)?;
        Ok(unsigned_bits(modulus.as_bytes()))
    })?;
    reader.finish(bits)
}

/// Bit length of a big-endian unsigned number.
fn unsigned_bits(number: &[u8]) -> u32 {
    let significant: &[u8] = match number.iter().position(|&b| b != 0) {
        Some(i) => &number[i..],
        None => &[],
    };
    match significant.first() {
        Some(first) => (significant.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::diag::Severity;

    #[test]
    fn rsa_2048_from_key_file() {
        let record = clean("key_file = \"keys/rsa2048.pub.pem\"");
        assert_eq!(record.key_bits(), Some(2048));
        assert_eq!(record.key_type(), KeyType::Rsa);
        assert_eq!(p_of(&record).len(), 392);
        assert!(
            record
                .txt()
                .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
        assert_eq!(record.selector, "s2026");
    }

    #[test]
    fn rsa_2048_inline_with_line_breaks_equals_key_file() {
        let body = format!("k = \"rsa\"\np = \"\"\"\n{}\"\"\"", pem_body("rsa2048.pub.pem"));
        let inline = clean(&body);
        let from_file = clean("key_file = \"keys/rsa2048.pub.pem\"");
        assert_eq!(inline.txt(), from_file.txt());
        assert!(!p_of(&inline).contains(char::is_whitespace));
    }

    #[test]
    fn rsa_4096() {
        let record = clean("key_file = \"keys/rsa4096.pub.pem\"");
        assert_eq!(record.key_bits(), Some(4096));
        assert_eq!(p_of(&record).len(), 736);
    }

    #[test]
    fn rsa_1024_is_a_warning() {
        let (record, diags) = run("key_file = \"keys/rsa1024.pub.pem\"");
        assert_eq!(record.unwrap().key_bits(), Some(1024));
        let warnings = only(&diags, Severity::Warning);
        assert_eq!(warnings.len(), 1, "{diags:?}");
        assert!(
            warnings[0]
                .message
                .contains("RSA key has 1024 bits; RFC 8301 recommends at least 2048")
        );
        assert_eq!((warnings[0].line, warnings[0].column), (2, 12));
    }

    #[test]
    fn rsa_512_is_an_error() {
        let (record, diags) = run("key_file = \"keys/rsa512.pub.pem\"");
        assert!(record.is_none());
        let errors = only(&diags, Severity::Error);
        assert_eq!(errors.len(), 1, "{diags:?}");
        assert!(
            errors[0]
                .message
                .contains("dkim.s2026 RSA key has 512 bits, and RFC 8301 forbids")
        );
        assert_eq!((errors[0].line, errors[0].column), (2, 12));
        let (record, diags) = run(&format!("p = \"\"\"{}\"\"\"", pem_body("rsa512.pub.pem")));
        assert!(record.is_none());
        assert!(diags[0].message.contains("has 512 bits"), "{diags:?}");
    }

    #[test]
    fn ed25519_from_pem_file_publishes_the_raw_key() {
        let record = clean("k = \"ed25519\"\nkey_file = \"keys/ed25519.pub.pem\"");
        assert_eq!(record.txt(), format!("v=DKIM1; k=ed25519; p={ED25519_RAW}"));
        assert_eq!(record.key_bits(), Some(256));
        assert_eq!(record.key_type(), KeyType::Ed25519);
    }

    #[test]
    fn ed25519_from_raw_base64() {
        let record = clean(&format!("k = \"ED25519\"\np = \"{ED25519_RAW}\""));
        assert_eq!(record.txt(), format!("v=DKIM1; k=ed25519; p={ED25519_RAW}"));
    }

    #[test]
    fn ed25519_spki_in_p_is_unwrapped_with_a_warning() {
        let (record, diags) = run(&format!("k = \"ed25519\"\np = \"{ED25519_SPKI}\""));
        assert_eq!(
            record.unwrap().txt(),
            format!("v=DKIM1; k=ed25519; p={ED25519_RAW}")
        );
        let warnings = only(&diags, Severity::Warning);
        assert_eq!(warnings.len(), 1, "{diags:?}");
        assert!(
            warnings[0]
                .message
                .contains(&format!("write p = \"{ED25519_RAW}\""))
        );
        assert_eq!((warnings[0].line, warnings[0].column), (3, 5));
    }

    #[test]
    fn pkcs1_and_other_algorithms_are_refused_with_a_way_out() {
        let spki = BASE64
            .decode(pem_body("rsa2048.pub.pem").replace('\n', ""))
            .unwrap();
        // 30 82 01 22 | 30 0d <rsaEncryption, NULL> | 03 82 01 0f 00 | RSAPublicKey
        assert_eq!(spki[24], 0x30, "a SEQUENCE");
        let pkcs1 = BASE64.encode(&spki[24..]);
        let (_, diags) = run(&format!("p = \"{pkcs1}\""));
        assert!(diags[0].message.contains("PKCS#1 RSAPublicKey"), "{diags:?}");
        assert!(diags[0].message.contains("openssl rsa -RSAPublicKey_in"));
        let (_, diags) = run(&format!("p = \"{EC_P256_SPKI}\""));
        assert!(
            diags[0]
                .message
                .contains("is a EC (ECDSA) key; DKIM keys are RSA"),
            "{diags:?}"
        );
    }

    #[test]
    fn pem_files_must_hold_a_public_key() {
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(pem_public_key(private), Err(KeyError::PrivateKey)));
        let pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n";
        assert!(matches!(pem_public_key(pkcs1), Err(KeyError::Pkcs1)));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(pem_public_key(cert), Err(KeyError::PemKind(k)) if k == "CERTIFICATE"));
        let cut = "-----BEGIN PUBLIC KEY-----\nAAAA\n";
        assert!(matches!(pem_public_key(cut), Err(KeyError::NotPem)));
        let ok =
            format!("junk before\n-----BEGIN PUBLIC KEY-----\n{ED25519_SPKI}\n-----END PUBLIC KEY-----\n");
        assert_eq!(BASE64.encode(pem_public_key(&ok).unwrap()), ED25519_SPKI);
    }

    #[test]
    fn truncated_or_padded_der_is_not_a_key() {
        let spki = BASE64.decode(ED25519_SPKI).unwrap();
        assert_eq!(parse_spki(&spki).unwrap(), Spki::Ed25519(&spki[12..]));
        for end in 0..spki.len() {
            assert!(parse_spki(&spki[..end]).is_err(), "cut at {end}");
        }
        let mut longer = spki.clone();
        longer.push(0);
        assert!(parse_spki(&longer).is_err());
    }

    /// BER that is not DER: the hand-written parser this replaced accepted both.
    #[test]
    fn only_strict_der_is_a_key() {
        let spki = BASE64.decode(ED25519_SPKI).unwrap();
        // The outer length 0x2a written in long form (81 2a).
        let mut long_form = vec![0x30, 0x81];
        long_form.extend_from_slice(&spki[1..]);
        assert!(matches!(parse_spki(&long_form), Err(KeyError::NotSpki)));
        // An RSAPublicKey whose modulus is negative (no leading 00 before 0x80).
        let negative = [0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x03];
        assert!(rsa_modulus_bits(&negative).is_err());
        let positive = [0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&positive).unwrap(), 8);
    }

    #[test]
    fn der_helpers() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01, 0xFF]), 9);
        assert_eq!(unsigned_bits(&[0x00]), 0);
        assert_eq!(unsigned_bits(&[]), 0);
    }
}
