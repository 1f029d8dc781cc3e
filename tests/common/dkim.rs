//! DKIM for report mail in tests: an RSA key made by openssl with its public half
//! published in the loopback upstream world, and signatures made by dkimpy (Debian's
//! python3-dkim, an implementation not our own).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::upstream::Upstream;

/// A 2048-bit RSA key made by openssl, its public half published at
/// `s1._domainkey.ORG`; returns the private key file.
pub async fn publish_key(world: &Upstream, dir: &Path, org: &str) -> PathBuf {
    let key = dir.join(format!("{org}.pem"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let path = key.display().to_string();
    openssl(&["genrsa", "-traditional", "-out", &path, "2048"]);
    let der = openssl(&["rsa", "-in", &path, "-pubout", "-outform", "DER"]);
    let p = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let record = format!("v=DKIM1; k=rsa; p={p}");
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect();
    let zone = format!(
        "$ORIGIN {org}.\n$TTL 300\n@ 3600 IN SOA ns1.{org}. hostmaster.{org}. 1 3600 600 86400 60\n\
         @ 3600 IN NS ns1.{org}.\ns1._domainkey 300 IN TXT {}\n",
        strings.join(" ")
    );
    world.replace_zone(org, &zone).await;
    key
}

/// Signs each mail in place with dkimpy (`d=ORG; s=s1`).
pub fn sign(key: &Path, org: &str, files: &[PathBuf]) {
    const SIGN: &str = r#"
import dkim, sys
key = open(sys.argv[1], 'rb').read()
for path in sys.argv[3:]:
    msg = open(path, 'rb').read()
    sig = dkim.sign(msg, b's1', sys.argv[2].encode(), key,
                    include_headers=[b'from', b'to', b'subject', b'message-id'])
    open(path, 'wb').write(sig + msg)
"#;
    let mut args = vec![
        "-c".to_string(),
        SIGN.to_string(),
        key.display().to_string(),
        org.to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new("/usr/bin/python3").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
