//! The `[dkim.<selector>]` sections of a policy file: DKIM public keys (RFC 6376,
//! RFC 8301, RFC 8463) checked into [`DkimRecord`]s, the TXT records published at
//! `<selector>._domainkey.<domain>`.

mod key;
mod tags;

use std::ops::Range;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use toml::Spanned;

use self::key::KeySource;
pub use self::key::KeyType;
use self::tags::{check_key_type, list, quoted_printable, warn_testing};
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::diag::{Diagnostic, SourceFile};

    /// The raw Ed25519 key in tests/data/keys/ed25519.pub.pem, as printed by
    /// `openssl pkey -pubin -in ed25519.pub.pem -outform DER | tail -c 32 | base64`.
    pub(super) const ED25519_RAW: &str = "n2kDsnO9WIu+n4+N/BAovkZozSRLOSI5tnAl2t2GRUc=";
    /// The same key as a SubjectPublicKeyInfo (the body of the PEM file).
    pub(super) const ED25519_SPKI: &str = "MCowBQYDK2VwAyEAn2kDsnO9WIu+n4+N/BAovkZozSRLOSI5tnAl2t2GRUc=";
    /// A P-256 public key, from `openssl pkey -pubout -outform DER | base64`.
    pub(super) const EC_P256_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOWLmbmQS/y/JFhEcRdC48gRN\
                                y4arj3Lq0bVG1PYDavFgGshn2Lx3dJGSDwovbxurl3h/QEwiHxvoPXafLhV3Dg==";

    #[derive(Deserialize)]
    struct Doc {
        dkim: BTreeMap<Spanned<String>, Spanned<DkimSection>>,
    }

    pub(super) fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
    }

    /// The body of a PEM file under tests/data/keys, lines kept, headers dropped.
    pub(super) fn pem_body(name: &str) -> String {
        let text = std::fs::read_to_string(data_dir().join("keys").join(name)).unwrap();
        text.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Validates one `[dkim.<selector>]` table deserialised from TOML text, with
    /// key_file paths relative to tests/data.
    pub(super) fn run_table(header: &str, body: &str) -> (Option<DkimRecord>, Vec<Diagnostic>) {
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

    pub(super) fn run(body: &str) -> (Option<DkimRecord>, Vec<Diagnostic>) {
        run_table("[dkim.s2026]", body)
    }

    pub(super) fn only(diags: &[Diagnostic], severity: Severity) -> Vec<&Diagnostic> {
        diags.iter().filter(|d| d.severity == severity).collect()
    }

    /// A valid record and no diagnostics at all.
    pub(super) fn clean(body: &str) -> DkimRecord {
        let (record, diags) = run(body);
        assert!(diags.is_empty(), "{body}: {diags:?}");
        record.unwrap()
    }

    /// What the published record has after `p=`.
    pub(super) fn p_of(record: &DkimRecord) -> String {
        let txt = record.txt();
        txt.rsplit_once("; p=").unwrap().1.to_string()
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
}
