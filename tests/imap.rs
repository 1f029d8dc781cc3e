//! IMAP sources against a real Dovecot (Debian `dovecot-imapd`) on loopback, started
//! here with its own config in a temporary directory, plaintext login from a
//! passwd-file: a batch-wise round reads every unseen report once and flags it seen,
//! a malformed one is one error, and a since-date in the future fetches nothing.
//! Fetched mail is checked for DKIM: signed by its organisation it is verified
//! evidence, unsigned it is not.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/dkim.rs"]
mod dkim;
#[path = "common/upstream.rs"]
mod upstream;

use common::free_port;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use corpus::{Meta, START, Sender, gzip, mail, report_xml, row_xml};
use spfd::config::Config;
use spfd::reports::poller::ReportPoller;

const USER: &str = "dmarc@shop.test";

/// A Dovecot master process; stopped (SIGTERM, then waited for) on drop.
struct Dovecot {
    child: Child,
    port: u16,
    mail: PathBuf,
    uid: u32,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Mail belongs to a user other than root: Dovecot refuses mail access as UID 0.
fn mail_ids() -> (u32, u32, Option<String>) {
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        (65534, 65534, None)
    } else {
        let user = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
        (uid, unsafe { libc::getgid() }, Some(user))
    }
}

fn start_dovecot(dir: &Path) -> Dovecot {
    start_dovecot_on(dir, free_port())
}

fn start_dovecot_on(dir: &Path, port: u16) -> Dovecot {
    let listeners = format!(
        "service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
           inet_listener imaps {{\n    port = 0\n  }}\n}}\nssl = no\n"
    );
    launch(dir, port, &listeners)
}

/// Dovecot serving IMAPS only, with a certificate for 127.0.0.1 from a CA made here;
/// returns the CA's PEM file too.
fn start_dovecot_tls(dir: &Path) -> (Dovecot, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca = make_certificates(dir);
    let port = free_port();
    let d = dir.display();
    let listeners = format!(
        "service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n\
           inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
         ssl = required\nssl_cert = <{d}/leaf.pem\nssl_key = <{d}/leaf.key\nssl_dh = </usr/share/dovecot/dh.pem\n"
    );
    (launch(dir, port, &listeners), ca)
}

/// A CA and a leaf certificate for IP 127.0.0.1 signed by it (openssl).
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=spfd test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    dir.join("ca.pem")
}

fn launch(dir: &Path, port: u16, listeners: &str) -> Dovecot {
    let (uid, gid, user) = mail_ids();
    let run_as = user.map_or(String::new(), |u| {
        format!("default_internal_user = {u}\ndefault_login_user = {u}\n")
    });
    let d = dir.display();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::write(dir.join("passwd"), format!("{USER}:{{PLAIN}}secret\n")).unwrap();
    let conf = format!(
        "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
         log_path = {d}/dovecot.log\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n\
         mail_location = maildir:{d}/mail/%u/Maildir\n{run_as}\
         passdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%u\n}}\n{listeners}"
    );
    std::fs::write(dir.join("dovecot.conf"), conf).unwrap();
    let mail = dir.join("mail").join(USER).join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(mail.join(sub)).unwrap();
    }
    let child = Command::new("/usr/sbin/dovecot")
        .args(["-F", "-c"])
        .arg(dir.join("dovecot.conf"))
        .spawn()
        .expect("dovecot: install dovecot-imapd (.ci/run does)");
    let dovecot = Dovecot {
        child,
        port,
        mail,
        uid,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return dovecot;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "dovecot did not listen: {}",
        std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
    );
}

impl Dovecot {
    /// Delivers a message the way an MDA does (tmp/, then new/), owned by the mail user.
    fn deliver(&self, name: &str, body: &[u8]) {
        let tmp = self.mail.join("tmp").join(name);
        std::fs::write(&tmp, body).unwrap();
        for p in [
            &self.mail,
            &self.mail.join("tmp"),
            &self.mail.join("new"),
            &self.mail.join("cur"),
            &tmp,
        ] {
            chown(p, Some(self.uid), Some(self.uid)).unwrap();
        }
        let parent = self.mail.parent().unwrap();
        chown(parent, Some(self.uid), Some(self.uid)).unwrap();
        std::fs::rename(&tmp, self.mail.join("new").join(name)).unwrap();
    }

    fn seen_in_cur(&self) -> usize {
        self.flagged_in_cur('S')
    }

    /// Messages in `cur` whose Maildir flags hold `flag` (`S` seen, `a` the first
    /// keyword).
    fn flagged_in_cur(&self, flag: char) -> usize {
        std::fs::read_dir(self.mail.join("cur"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .rsplit_once(":2,")
                    .is_some_and(|(_, f)| f.contains(flag))
            })
            .count()
    }
}

fn report_mail(i: i64) -> Vec<u8> {
    let id = format!("imap-{i}");
    let meta = Meta {
        dmarc2: i % 2 == 1,
        org: "IMAP Receiver",
        id: &id,
        begin: START + i * 3600,
        end: START + i * 3600 + 86399,
        domain: "shop.test",
        p: "none",
    };
    let sender = Sender {
        ip: "192.0.2.10",
        base: 2,
        dkim_aligned: true,
        dkim_other: None,
        spf_aligned: true,
        envelope: "shop.test",
    };
    let xml = report_xml(&meta, &row_xml(&sender, 2, "shop.test"));
    mail(&id, "report.xml.gz", &gzip(xml.as_bytes())).into_bytes()
}

fn config(dir: &Path, port: u16, extra: &str) -> Config {
    config_for(
        dir,
        &format!("imap://dmarc%40shop.test@127.0.0.1:{port}/INBOX"),
        extra,
    )
}

fn config_for(dir: &Path, source: &str, extra: &str) -> Config {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("imap.pass"), "secret\n").unwrap();
    let text = format!(
        "{}[reports]\nsources = [\"{source}\"]\npassword_file = \"imap.pass\"\nimap_batch = 7\n{extra}",
        common::config_text()
    );
    std::fs::write(dir.join("spfd.toml"), text).unwrap();
    Config::load(&dir.join("spfd.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_reports_are_fetched_in_batches_once_and_flagged_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let dovecot = start_dovecot(&tmp.path().join("dovecot"));
    for i in 0..25 {
        dovecot.deliver(&format!("{i}.M1P1.test"), &report_mail(i));
    }
    dovecot.deliver("broken.M1P1.test", b"Subject: not a report\r\n\r\nhello\r\n");
    let spfd_dir = tmp.path().join("spfd");
    let config = config(&spfd_dir, dovecot.port, "");
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    let status = poller.status();
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert!(s.last_errors.is_empty(), "{s:?}");
    assert_eq!(
        (s.imported.inputs, s.imported.reports, s.imported.errors.len()),
        (26, 25, 1),
        "{s:?}"
    );
    assert!(
        s.imported.errors[0].contains("imap://127.0.0.1/INBOX;UID="),
        "{s:?}"
    );
    assert_eq!(dovecot.seen_in_cur(), 26);
    // Nothing unseen is left: the next round fetches nothing.
    poller.clone().round().await;
    assert_eq!(status.lock().unwrap().imported.inputs, 26);

    // A since-date after every delivery fetches nothing; without it, the new one comes.
    dovecot.deliver("late.M1P1.test", &report_mail(99));
    let later = config_with_since(&spfd_dir, dovecot.port);
    let later = Arc::new(ReportPoller::from_config(&later).unwrap());
    later.clone().round().await;
    assert_eq!(later.status().lock().unwrap().imported.inputs, 0);
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert_eq!((s.imported.inputs, s.imported.reports), (27, 26), "{s:?}");
}

fn config_with_since(dir: &Path, port: u16) -> Config {
    config(dir, port, "imap_since = \"2999-01-01\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_error_for_the_round_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dovecot = start_dovecot(&tmp.path().join("dovecot"));
    let spfd_dir = tmp.path().join("spfd");
    let config = config(&spfd_dir, dovecot.port, "");
    std::fs::write(spfd_dir.join("imap.pass"), "wrong\n").unwrap();
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    poller.clone().round().await;
    let s = poller.status().lock().unwrap().clone();
    assert_eq!(s.last_errors.len(), 1, "{s:?}");
    assert!(
        s.last_errors[0].contains("login refused for dmarc@shop.test"),
        "{s:?}"
    );
    // Dovecot logs a failed login when the client has gone; every connection of the
    // round is closed by now, so once one line is there, all of them soon are.
    let log_path = tmp.path().join("dovecot/dovecot.log");
    let failed = || {
        let log = std::fs::read_to_string(&log_path).unwrap();
        (log.lines().filter(|l| l.contains("auth failed")).count(), log)
    };
    for _ in 0..200 {
        if failed().0 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (attempts, log) = failed();
    assert_eq!(attempts, 1, "one login attempt per round: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_the_round_and_the_next_round_connects_again() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let spfd_dir = tmp.path().join("spfd");
    let config = config(&spfd_dir, port, "");
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    let status = poller.status();
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert_eq!(s.last_errors.len(), 1, "{s:?}");
    assert!(s.last_errors[0].starts_with("imap 127.0.0.1/INBOX: "), "{s:?}");
    assert_eq!(s.imported.inputs, 0);

    let dovecot = start_dovecot_on(&tmp.path().join("dovecot"), port);
    dovecot.deliver("1.M1P1.test", &report_mail(1));
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert!(s.last_errors.is_empty(), "{s:?}");
    assert_eq!((s.imported.inputs, s.imported.reports), (1, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaps_verifies_the_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (dovecot, ca) = start_dovecot_tls(&tmp.path().join("dovecot"));
    dovecot.deliver("1.M1P1.test", &report_mail(1));
    let source = format!("imaps://dmarc%40shop.test@127.0.0.1:{}/INBOX", dovecot.port);
    // Without the test CA the certificate is not trusted: the round fails, nothing is read.
    let untrusted = config_for(&tmp.path().join("untrusted"), &source, "");
    let poller = Arc::new(ReportPoller::from_config(&untrusted).unwrap());
    poller.clone().round().await;
    let s = poller.status().lock().unwrap().clone();
    assert_eq!(s.last_errors.len(), 1, "{s:?}");
    assert!(s.last_errors[0].contains("certificate"), "{s:?}");
    assert_eq!(dovecot.seen_in_cur(), 0);
    // With it, over TLS, the report is read and flagged.
    let trusted = config_for(
        &tmp.path().join("trusted"),
        &source,
        &format!("imap_ca_file = \"{}\"\n", ca.display()),
    );
    let poller = Arc::new(ReportPoller::from_config(&trusted).unwrap());
    poller.clone().round().await;
    let s = poller.status().lock().unwrap().clone();
    assert!(s.last_errors.is_empty(), "{s:?}");
    assert_eq!((s.imported.inputs, s.imported.reports), (1, 1), "{s:?}");
    assert_eq!(dovecot.seen_in_cur(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_not_fetched_and_failures_are_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let dovecot = start_dovecot(&tmp.path().join("dovecot"));
    for i in 0..3 {
        dovecot.deliver(&format!("{i}.M1P1.test"), &report_mail(i));
    }
    dovecot.deliver("big.M1P1.test", mail("big", "big.bin", &[7u8; 20_000]).as_bytes());
    dovecot.deliver("broken.M1P1.test", b"Subject: not a report\r\n\r\nhello\r\n");
    let config = config(
        &tmp.path().join("spfd"),
        dovecot.port,
        "imap_max_message_bytes = 8192\n",
    );
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    let status = poller.status();
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert!(s.last_errors.is_empty(), "{s:?}");
    assert_eq!((s.imported.inputs, s.imported.reports), (5, 3), "{s:?}");
    let large: Vec<&String> = s
        .imported
        .errors
        .iter()
        .filter(|e| e.contains("more than the 8192"))
        .collect();
    assert_eq!(large.len(), 1, "{s:?}");
    assert!(
        large[0].contains("not fetched") && large[0].contains("$SpfdFailed"),
        "{s:?}"
    );
    assert_eq!(s.imported.errors.len(), 2, "{s:?}");
    // Both failures are seen and carry the keyword; the next round meets neither.
    assert_eq!(dovecot.seen_in_cur(), 5);
    assert_eq!(dovecot.flagged_in_cur('a'), 2, "flagged $SpfdFailed");
    let keywords = std::fs::read_to_string(dovecot.mail.join("dovecot-keywords")).unwrap();
    assert!(keywords.contains("$SpfdFailed"), "{keywords}");
    poller.clone().round().await;
    assert_eq!(status.lock().unwrap().imported.inputs, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_mail_signed_by_its_organisation_is_verified_and_unsigned_mail_is_not() {
    let world =
        upstream::Upstream::start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream"))).await;
    let tmp = tempfile::tempdir().unwrap();
    let dovecot = start_dovecot(&tmp.path().join("dovecot"));
    // The corpus mail comes From: noreply-dmarc@receiver.test: its signature aligns
    // with the From: domain.
    let signed = tmp.path().join("signed.eml");
    std::fs::write(&signed, report_mail(1)).unwrap();
    let key = dkim::publish_key(&world, tmp.path(), "receiver.test").await;
    dkim::sign(&key, "receiver.test", std::slice::from_ref(&signed));
    dovecot.deliver("signed.M1P1.test", &std::fs::read(&signed).unwrap());
    dovecot.deliver("unsigned.M1P1.test", &report_mail(2));
    // Signed, with a key that is published, but by a domain of its own: it does not
    // vouch for the organisation the mail and the report name.
    let forged = tmp.path().join("forged.eml");
    std::fs::write(&forged, report_mail(3)).unwrap();
    let key = dkim::publish_key(&world, tmp.path(), "forger.test").await;
    dkim::sign(&key, "forger.test", std::slice::from_ref(&forged));
    dovecot.deliver("forged.M1P1.test", &std::fs::read(&forged).unwrap());
    let dir = tmp.path().join("spfd");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("imap.pass"), "secret\n").unwrap();
    let text = format!(
        "{}{}[reports]\nsources = [\"imap://dmarc%40shop.test@127.0.0.1:{}/INBOX\"]\npassword_file = \"imap.pass\"\n",
        common::config_text(),
        world.resolver_config_toml(),
        dovecot.port
    );
    std::fs::write(dir.join("spfd.toml"), text).unwrap();
    let config = Config::load(&dir.join("spfd.toml")).unwrap();
    let poller = Arc::new(ReportPoller::from_config(&config).unwrap());
    let status = poller.status();
    poller.clone().round().await;
    let s = status.lock().unwrap().clone();
    assert!(s.last_errors.is_empty(), "{s:?}");
    assert_eq!((s.imported.reports, s.imported.unverified), (3, 2), "{s:?}");
}
