//! The `[dkim.<selector>]` sections of a policy file: DKIM public keys (RFC 6376,
//! RFC 8301, RFC 8463) checked into [`DkimRecord`]s, the TXT records published at
//! `<selector>._domainkey.<domain>`.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostics, Severity};
use crate::names::{self, NameError, Rules};

/// One `[dkim.<selector>]` table as written. Every field keeps its span because
/// every check happens after deserialisation, and the message must point at the value.
///
/// ```text
/// key-record = [ "v=DKIM1" ";" ] *( tag ";" )          ; RFC 6376 3.6.1
/// k = "rsa" / "ed25519"                                ; RFC 8463
/// p = base64 SubjectPublicKeyInfo (rsa) / base64 of the raw 32-byte key (ed25519) / ""
/// h = "sha256" *( ":" ... )                            ; sha1 forbidden, RFC 8301
/// s = "email" / "*"      t = "y" / "s"      n = qp-section
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSection {
    /// "rsa" when absent, as in the record.
    k: Option<Spanned<String>>,
    /// The key inline, in base64; exclusive with `key_file`.
    p: Option<Spanned<String>>,
    /// A PEM "PUBLIC KEY" file, relative to the policy file's directory.
    key_file: Option<Spanned<String>>,
    t: Option<Spanned<Vec<Spanned<String>>>>,
    h: Option<Spanned<Vec<Spanned<String>>>>,
    s: Option<Spanned<Vec<Spanned<String>>>>,
    n: Option<Spanned<String>>,
    /// Publishes an empty `p=`, so receivers fail signatures made with this selector.
    revoked: Option<Spanned<bool>>,
}

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

/// A checked DKIM key; [`DkimRecord::txt`] is the text published at
/// `<selector>._domainkey.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimRecord {
    /// Lower-cased, dots allowed (`2026.mail` is published at `2026.mail._domainkey`).
    pub selector: String,
    key_type: KeyType,
    /// What follows `p=`: base64 of the SubjectPublicKeyInfo for RSA, of the raw
    /// 32 bytes for Ed25519; empty when revoked.
    p: String,
    /// RSA modulus length, 256 for Ed25519, None when revoked.
    bits: Option<u32>,
    hashes: Vec<String>,
    services: Vec<String>,
    flags: Vec<String>,
    /// Already in DKIM-Quoted-Printable.
    notes: Option<String>,
}

impl DkimRecord {
    /// `v=DKIM1; k=..; [h=..; ][s=..; ][t=..; ][n=..; ]p=..`: p last, so that
    /// the long value sits at the end where the record is split into strings.
    pub fn txt(&self) -> String {
        let mut tags = vec!["v=DKIM1".to_string(), format!("k={}", self.key_type.tag())];
        for (name, values) in [("h", &self.hashes), ("s", &self.services), ("t", &self.flags)] {
            if !values.is_empty() {
                tags.push(format!("{name}={}", values.join(":")));
            }
        }
        if let Some(n) = &self.notes {
            tags.push(format!("n={n}"));
        }
        tags.push(format!("p={}", self.p));
        tags.join("; ")
    }

    /// The RSA modulus length in bits, 256 for Ed25519, None for a revoked key.
    pub fn key_bits(&self) -> Option<u32> {
        self.bits
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn is_revoked(&self) -> bool {
        self.p.is_empty()
    }
}

/// A key ready to publish.
struct PublicKey {
    /// The bytes whose base64 follows `p=`.
    published: Vec<u8>,
    bits: u32,
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

impl DkimSection {
    /// Checks the selector and every tag, pushing each problem found, and builds
    /// the record. Returns `None` if this section pushed any error.
    pub fn validate(
        self,
        selector: &Spanned<String>,
        section_span: Range<usize>,
        base_dir: &Path,
        diags: &mut Diagnostics,
    ) -> Option<DkimRecord> {
        let errors_before = error_count(diags);
        let label = format!("dkim.{}", selector.get_ref());
        check_selector(selector, diags);
        let key_type = check_key_type(&label, self.k.as_ref(), diags);
        let revoked = self.revoked.as_ref().is_some_and(|r| *r.get_ref());
        let key = if revoked {
            self.warn_unpublished_key(&label, diags);
            None
        } else {
            let source = KeySource {
                label: &label,
                section_span,
                base_dir,
            };
            key_type.and_then(|k| source.load(k, self.p.as_ref(), self.key_file.as_ref(), diags))
        };
        warn_testing(&label, self.t.as_ref(), diags);
        let flags = list(&label, "t", self.t, &["y", "s"], diags);
        let hashes = list(&label, "h", self.h, &["sha256"], diags);
        let services = list(&label, "s", self.s, &["email", "*"], diags);
        if error_count(diags) > errors_before {
            return None;
        }
        let mut record = DkimRecord {
            selector: selector.get_ref().to_ascii_lowercase(),
            key_type: key_type?,
            p: String::new(),
            bits: None,
            hashes: Vec::new(),
            services: Vec::new(),
            flags: Vec::new(),
            notes: None,
        };
        // A revoked key publishes only v, k and the empty p.
        if let Some(key) = key {
            record.p = BASE64.encode(&key.published);
            record.bits = Some(key.bits);
            (record.hashes, record.services, record.flags) = (hashes, services, flags);
            record.notes = self.n.map(|n| quoted_printable(n.get_ref()));
        }
        Some(record)
    }

    fn warn_unpublished_key(&self, label: &str, diags: &mut Diagnostics) {
        if let Some(span) = self.p.as_ref().or(self.key_file.as_ref()).map(Spanned::span) {
            diags.warning(
                span,
                format!(
                    "{label} is revoked, so its key is not published (the record has an empty \
                     p=); remove p or key_file"
                ),
            );
        }
    }
}

fn error_count(diags: &Diagnostics) -> usize {
    diags
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// sub-domain *( "." sub-domain ) (RFC 6376 3.1, RFC 5321): host-name labels
/// ([`Rules::Host`]), with no dot at the end.
fn check_selector(selector: &Spanned<String>, diags: &mut Diagnostics) {
    let name = selector.get_ref();
    let problem = match name.as_str() {
        "" => Some("is empty".to_string()),
        _ if name.ends_with('.') => Some(NameError::EmptyLabel.to_string()),
        _ => names::check_name(name, Rules::Host).err().map(|e| e.to_string()),
    };
    if let Some(problem) = problem {
        diags.error(
            selector.span(),
            format!(
                "dkim selector {name:?} {problem}: a selector is DNS labels of letters, digits \
                 and hyphens (not first or last), at most 63 characters each, joined by dots, \
                 e.g. [dkim.s2026]"
            ),
        );
    }
}

fn check_key_type(label: &str, k: Option<&Spanned<String>>, diags: &mut Diagnostics) -> Option<KeyType> {
    let Some(k) = k else {
        return Some(KeyType::Rsa);
    };
    match k.get_ref().to_ascii_lowercase().as_str() {
        "rsa" => Some(KeyType::Rsa),
        "ed25519" => Some(KeyType::Ed25519),
        other => {
            let msg = format!("{label} k must be \"rsa\" or \"ed25519\"; got {other:?}");
            diags.error(k.span(), msg);
            None
        }
    }
}

/// Values from a fixed set, lower-cased, in the order written; none if the tag is absent.
fn list(
    label: &str,
    tag: &str,
    values: Option<Spanned<Vec<Spanned<String>>>>,
    allowed: &[&str],
    diags: &mut Diagnostics,
) -> Vec<String> {
    let Some(values) = values else {
        return Vec::new();
    };
    let choices = allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if values.get_ref().is_empty() {
        let msg = format!("{label} {tag} is an empty array: list some of {choices}, or leave {tag} out");
        diags.error(values.span(), msg);
    }
    let mut out = Vec::new();
    for value in values.into_inner() {
        let lower = value.get_ref().to_ascii_lowercase();
        if allowed.contains(&lower.as_str()) {
            out.push(lower);
        } else if tag == "h" && lower == "sha1" {
            let msg = format!(
                "{label} h lists sha1, which RFC 8301 forbids for signing and verifying: \
                 write h = [\"sha256\"], or leave h out"
            );
            diags.error(value.span(), msg);
        } else {
            let msg = format!(
                "{label} {tag} values must be among {choices}; got {:?}",
                value.get_ref()
            );
            diags.error(value.span(), msg);
        }
    }
    out
}

/// t=y tells receivers to treat failing signatures as absent: fine while trying
/// a key out, wrong in production.
fn warn_testing(label: &str, flags: Option<&Spanned<Vec<Spanned<String>>>>, diags: &mut Diagnostics) {
    let is_y = |v: &&Spanned<String>| v.get_ref().eq_ignore_ascii_case("y");
    let testing = flags.and_then(|f| f.get_ref().iter().find(is_y));
    if let Some(y) = testing {
        diags.warning(
            y.span(),
            format!(
                "{label} t lists \"y\" (testing mode): receivers treat mail whose signature fails \
                 as unsigned; remove \"y\" once signing works"
            ),
        );
    }
}

/// DKIM-Quoted-Printable (RFC 6376 2.11) for n=: every octet outside
/// %x21-3A / %x3C / %x3E-7E (so spaces, ';' and '=' too) becomes =XX.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Where a key comes from, for loading it and for naming it in messages.
struct KeySource<'a> {
    label: &'a str,
    section_span: Range<usize>,
    base_dir: &'a Path,
}

impl KeySource<'_> {
    /// Loads the key from p or key_file (exactly one must be set) and checks it
    /// against k and the RFC 8301 size limits.
    fn load(
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

// Object identifiers, as DER content octets.
/// 1.2.840.113549.1.1.1, rsaEncryption
const OID_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
/// 1.3.101.112, id-Ed25519 (RFC 8410)
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];
const KNOWN_OIDS: &[(&[u8], &str)] = &[
    (&[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01], "EC (ECDSA)"),
    (
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A],
        "RSASSA-PSS",
    ),
    (&[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01], "DSA"),
    (&[0x2B, 0x65, 0x71], "Ed448"),
    (&[0x2B, 0x65, 0x6E], "X25519"),
];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// ```text
/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
/// AlgorithmIdentifier  ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
/// RSAPublicKey         ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }   (RFC 8017)
/// ```
fn parse_spki(der: &[u8]) -> Result<Spki<'_>, KeyError> {
    let spki = Der::whole(der, TAG_SEQUENCE)?;
    let mut fields = Der(spki);
    if fields.peek() == Some(TAG_INTEGER) {
        // A SEQUENCE that starts with an INTEGER is a bare PKCS#1 RSAPublicKey.
        return Err(KeyError::Pkcs1);
    }
    let algorithm = fields.next(TAG_SEQUENCE)?;
    let bits = fields.next(TAG_BIT_STRING)?;
    fields.end()?;
    let oid = Der(algorithm).next(TAG_OID)?;
    // The first octet of a BIT STRING counts unused bits: a key has none.
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(KeyError::NotSpki),
    };
    if oid == OID_RSA {
        let mut rsa = Der(Der::whole(key, TAG_SEQUENCE)?);
        let modulus = rsa.next(TAG_INTEGER)?;
        rsa.next(TAG_INTEGER)?;
        rsa.end()?;
        Ok(Spki::Rsa {
            modulus_bits: unsigned_bits(modulus),
        })
    } else if oid == OID_ED25519 {
        (key.len() == ED25519_LEN)
            .then_some(Spki::Ed25519(key))
            .ok_or(KeyError::NotSpki)
    } else {
        let name = KNOWN_OIDS
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, n)| n.to_string());
        Ok(Spki::Other(
            name.unwrap_or_else(|| format!("OID {}", dotted_oid(oid))),
        ))
    }
}

/// Bit length of a DER INTEGER read as unsigned (a leading 0x00 only marks it positive).
fn unsigned_bits(integer: &[u8]) -> u32 {
    let significant: &[u8] = match integer.iter().position(|&b| b != 0) {
        Some(i) => &integer[i..],
        None => &[],
    };
    match significant.first() {
        Some(first) => (significant.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
        None => 0,
    }
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.extend([first, value - first * 40]);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A cursor over DER elements: just enough of X.690 to read a public key.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The content of `der`, which must be exactly one element with `tag`.
    fn whole(der: &'a [u8], tag: u8) -> Result<&'a [u8], KeyError> {
        let mut cursor = Der(der);
        let content = cursor.next(tag)?;
        cursor.end()?;
        Ok(content)
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The content of the next element, which must have `tag`.
    fn next(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let (&found, rest) = self.0.split_first().ok_or(KeyError::NotSpki)?;
        let (&first, rest) = rest.split_first().ok_or(KeyError::NotSpki)?;
        let (len, rest) = match first {
            0..=0x7F => (usize::from(first), rest),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7F);
                let (octets, rest) = rest.split_at_checked(n).ok_or(KeyError::NotSpki)?;
                (
                    octets.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
                    rest,
                )
            }
            _ => return Err(KeyError::NotSpki),
        };
        if found != tag {
            return Err(KeyError::NotSpki);
        }
        let (content, rest) = rest.split_at_checked(len).ok_or(KeyError::NotSpki)?;
        self.0 = rest;
        Ok(content)
    }

    fn end(&self) -> Result<(), KeyError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(KeyError::NotSpki)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::diag::{Diagnostic, SourceFile};

    /// The raw Ed25519 key in tests/data/keys/ed25519.pub.pem, as printed by
    /// `openssl pkey -pubin -in ed25519.pub.pem -outform DER | tail -c 32 | base64`.
    const ED25519_RAW: &str = "n2kDsnO9WIu+n4+N/BAovkZozSRLOSI5tnAl2t2GRUc=";
    /// The same key as a SubjectPublicKeyInfo (the body of the PEM file).
    const ED25519_SPKI: &str = "MCowBQYDK2VwAyEAn2kDsnO9WIu+n4+N/BAovkZozSRLOSI5tnAl2t2GRUc=";
    /// A P-256 public key, from `openssl pkey -pubout -outform DER | base64`.
    const EC_P256_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOWLmbmQS/y/JFhEcRdC48gRN\
                                y4arj3Lq0bVG1PYDavFgGshn2Lx3dJGSDwovbxurl3h/QEwiHxvoPXafLhV3Dg==";

    #[derive(Deserialize)]
    struct Doc {
        dkim: BTreeMap<Spanned<String>, Spanned<DkimSection>>,
    }

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
    }

    /// The body of a PEM file under tests/data/keys, lines kept, headers dropped.
    fn pem_body(name: &str) -> String {
        let text = std::fs::read_to_string(data_dir().join("keys").join(name)).unwrap();
        text.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Validates one `[dkim.<selector>]` table deserialised from TOML text, with
    /// key_file paths relative to tests/data.
    fn run_table(header: &str, body: &str) -> (Option<DkimRecord>, Vec<Diagnostic>) {
        let text = format!("{header}\n{body}\n");
        let src = SourceFile::new("p.toml", text.as_str());
        let doc: Doc = toml::from_str(&text).unwrap_or_else(|e| panic!("{body}: {e}"));
        let mut diags = Diagnostics::new(&src);
        let (selector, section) = doc.dkim.into_iter().next().unwrap();
        let span = section.span();
        let record = section
            .into_inner()
            .validate(&selector, span, &data_dir(), &mut diags);
        (record, diags.items)
    }

    fn run(body: &str) -> (Option<DkimRecord>, Vec<Diagnostic>) {
        run_table("[dkim.s2026]", body)
    }

    fn only(diags: &[Diagnostic], severity: Severity) -> Vec<&Diagnostic> {
        diags.iter().filter(|d| d.severity == severity).collect()
    }

    /// A valid record and no diagnostics at all.
    fn clean(body: &str) -> DkimRecord {
        let (record, diags) = run(body);
        assert!(diags.is_empty(), "{body}: {diags:?}");
        record.unwrap()
    }

    /// What the published record has after `p=`.
    fn p_of(record: &DkimRecord) -> String {
        let txt = record.txt();
        txt.rsplit_once("; p=").unwrap().1.to_string()
    }

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

    /// (body, expected message part, line, column) for sections that must fail.
    const INVALID: &[(&str, &str, usize, usize)] = &[
        (
            "k = \"ed25519\"\np = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\"",
            "dkim.s2026 p must be the raw 32-byte Ed25519 public key (44 base64 characters, \
             RFC 8463), or its SubjectPublicKeyInfo; it decodes to 31 bytes",
            3,
            5,
        ),
        (
            "k = \"rsa\"\np = \"MIIB not*base64\"",
            "dkim.s2026 p is not valid base64",
            3,
            5,
        ),
        (
            "p = \"-----BEGIN PUBLIC KEY-----\\nMIIB\\n-----END PUBLIC KEY-----\"",
            "holds a whole PEM block",
            2,
            5,
        ),
        (
            "p = \"AAAA\"\nkey_file = \"keys/rsa2048.pub.pem\"",
            "dkim.s2026 sets both p and key_file: keep one of them",
            3,
            12,
        ),
        ("n = \"no key\"", "dkim.s2026 has no key: write p = ", 1, 1),
        ("revoked = false", "dkim.s2026 has no key", 1, 1),
        (
            "key_file = \"keys/missing.pub.pem\"",
            "keys/missing.pub.pem\" cannot be read",
            2,
            12,
        ),
        (
            "key_file = \"rfc7208-tests.yml\"",
            "is not a PEM public key",
            2,
            12,
        ),
        (
            "key_file = \"keys/ed25519.pub.pem\"",
            "is an Ed25519 key, but k is \"rsa\": write k = \"ed25519\"",
            2,
            12,
        ),
        (
            "k = \"ed25519\"\nkey_file = \"keys/rsa2048.pub.pem\"",
            "is an RSA key, but k is \"ed25519\": write k = \"rsa\"",
            3,
            12,
        ),
        (
            "p = \"n2kDsnO9WIu+n4+N/BAovkZozSRLOSI5tnAl2t2GRUc=\"",
            "is an Ed25519 key, but k is \"rsa\"",
            2,
            5,
        ),
        ("p = \"AAAA\"", "is not a DER SubjectPublicKeyInfo", 2, 5),
        (
            "k = \"dsa\"\np = \"AAAA\"",
            "dkim.s2026 k must be \"rsa\" or \"ed25519\"; got \"dsa\"",
            2,
            5,
        ),
        (
            "key_file = \"keys/rsa2048.pub.pem\"\nh = [\"sha1\"]",
            "dkim.s2026 h lists sha1, which RFC 8301 forbids",
            3,
            6,
        ),
        (
            "key_file = \"keys/rsa2048.pub.pem\"\nh = [\"md5\"]",
            "h values must be among \"sha256\"; got \"md5\"",
            3,
            6,
        ),
        (
            "key_file = \"keys/rsa2048.pub.pem\"\nh = []",
            "h is an empty array",
            3,
            5,
        ),
        (
            "key_file = \"keys/rsa2048.pub.pem\"\ns = [\"web\"]",
            "s values must be among \"email\", \"*\"",
            3,
            6,
        ),
        (
            "key_file = \"keys/rsa2048.pub.pem\"\nt = [\"s\", \"x\"]",
            "t values must be among \"y\", \"s\"; got \"x\"",
            3,
            11,
        ),
    ];

    #[test]
    fn invalid_sections_point_at_the_value() {
        for &(body, fragment, line, column) in INVALID {
            let (record, diags) = run(body);
            assert!(record.is_none(), "{body}: gave a record");
            let errors = only(&diags, Severity::Error);
            assert_eq!(errors.len(), 1, "{body}: {errors:?}");
            assert!(
                errors[0].message.contains(fragment),
                "{body}: {}",
                errors[0].message
            );
            assert_eq!(
                (errors[0].line, errors[0].column),
                (line, column),
                "{body}: {}",
                errors[0].message
            );
        }
    }

    #[test]
    fn pkcs1_and_other_algorithms_are_refused_with_a_way_out() {
        let spki = BASE64
            .decode(pem_body("rsa2048.pub.pem").replace('\n', ""))
            .unwrap();
        // 30 82 01 22 | 30 0d <rsaEncryption, NULL> | 03 82 01 0f 00 | RSAPublicKey
        assert_eq!(spki[24], TAG_SEQUENCE);
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

    #[test]
    fn der_helpers() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01, 0xFF]), 9);
        assert_eq!(unsigned_bits(&[0x00]), 0);
        assert_eq!(dotted_oid(OID_RSA), "1.2.840.113549.1.1.1");
        assert_eq!(dotted_oid(OID_ED25519), "1.3.101.112");
    }

    #[test]
    fn revoked_publishes_an_empty_p() {
        let record = clean("revoked = true");
        assert_eq!(record.txt(), "v=DKIM1; k=rsa; p=");
        assert_eq!(record.key_bits(), None);
        assert!(record.is_revoked());
        let record = clean("k = \"ed25519\"\nrevoked = true\nt = [\"s\"]\nn = \"old\"");
        assert_eq!(record.txt(), "v=DKIM1; k=ed25519; p=");
        let (record, diags) = run("key_file = \"keys/rsa2048.pub.pem\"\nrevoked = true");
        assert_eq!(record.unwrap().txt(), "v=DKIM1; k=rsa; p=");
        assert!(
            diags[0]
                .message
                .contains("is revoked, so its key is not published"),
            "{diags:?}"
        );
        assert_eq!(
            (diags[0].severity, diags[0].line, diags[0].column),
            (Severity::Warning, 2, 12)
        );
    }

    #[test]
    fn optional_tags_come_before_p_in_a_fixed_order() {
        let body = "n = \"Bulk mail; see=x\"\nt = [\"Y\", \"s\"]\n\
                    s = [\"email\"]\nh = [\"sha256\"]\n\
                    key_file = \"keys/rsa2048.pub.pem\"";
        let (record, diags) = run(body);
        let txt = record.unwrap().txt();
        let p = pem_body("rsa2048.pub.pem").replace('\n', "");
        assert_eq!(
            txt,
            format!("v=DKIM1; k=rsa; h=sha256; s=email; t=y:s; n=Bulk=20mail=3B=20see=3Dx; p={p}")
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("t lists \"y\" (testing mode)"));
        assert_eq!(
            (diags[0].severity, diags[0].line, diags[0].column),
            (Severity::Warning, 3, 6)
        );
    }

    #[test]
    fn selectors_are_dns_labels() {
        let key = "key_file = \"keys/ed25519.pub.pem\"\nk = \"ed25519\"";
        let (record, diags) = run_table("[dkim.\"2026.Mail-Out\"]", key);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(record.unwrap().selector, "2026.mail-out");
        let long = "a".repeat(64);
        for (selector, fragment) in [
            ("s_2026", "contains '_'"),
            ("-s", "starting or ending with a hyphen"),
            ("s-", "starting or ending with a hyphen"),
            ("a..b", "has an empty label"),
            ("", "is empty"),
            (long.as_str(), "has a label of 64 octets"),
        ] {
            let (record, diags) = run_table(&format!("[dkim.\"{selector}\"]"), key);
            assert!(record.is_none(), "{selector}");
            assert_eq!(diags.len(), 1, "{selector}: {diags:?}");
            assert!(
                diags[0].message.contains(fragment),
                "{selector}: {}",
                diags[0].message
            );
            assert_eq!((diags[0].line, diags[0].column), (1, 7), "{selector}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_fail_deserialisation() {
        for text in [
            "[dkim.s1]\nkey = \"AAAA\"\n",
            "[dkim.s1]\nt = \"y\"\n",
            "[dkim.s1]\nrevoked = \"yes\"\n",
        ] {
            assert!(toml::from_str::<Doc>(text).is_err(), "{text}");
        }
        let err = toml::from_str::<Doc>("[dkim.s1]\nkey = \"AAAA\"\n")
            .err()
            .unwrap();
        assert!(err.message().contains("unknown field `key`"), "{err}");
    }

    #[test]
    fn notes_are_dkim_quoted_printable() {
        assert_eq!(quoted_printable("a b;c=d"), "a=20b=3Bc=3Dd");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        assert_eq!(quoted_printable("plain:text"), "plain:text");
    }
}
