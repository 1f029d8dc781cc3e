//! A real mail receiver for tests: rspamd (Debian package rspamd) judging SPF, DKIM and
//! DMARC of a message as a mail server would hand it over, resolving through a resolver
//! of the test's (unbound, [`crate::validators::Unbound`]); DKIM keys made by openssl and
//! signatures made by python3-dkim (dkimpy), a signer that is not spfd's own.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Debian interpreter: dkimpy is importable by it alone.
const PYTHON: &str = "/usr/bin/python3";

/// Panics with what to install when a tool the receiver tests need is missing.
fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (.ci/run does)"
    );
}

/// rspamd in the foreground with only the SPF, DKIM and DMARC checks, its DNS through
/// `resolver`, nothing cached between messages; killed on drop.
pub struct Rspamd {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Rspamd {
    /// Starts rspamd. `suffixes` is its whole public suffix list (the organisational
    /// domain of DMARC): the full list takes it about 20 s to compile at every start.
    pub async fn start(resolver: SocketAddr, suffixes: &[&str]) -> Rspamd {
        require("/usr/bin/rspamd", "rspamd");
        require("/usr/bin/rspamc", "rspamd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let port = crate::common::free_port();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("tld.dat"), suffixes.join("\n") + "\n").unwrap();
        let conf = format!(
            "options {{\n  pidfile = \"{d}/rspamd.pid\";\n  \
             dns {{ nameserver = [\"{resolver}\"]; timeout = 2s; retransmits = 2; }}\n  \
             filters = \"dkim\";\n  local_addrs = [];\n  url_tld = \"{d}/tld.dat\";\n}}\n\
             logging {{ type = \"file\"; filename = \"{d}/rspamd.log\"; level = \"info\"; }}\n\
             worker \"normal\" {{ bind_socket = \"127.0.0.1:{port}\"; count = 1; }}\n\
             lua = \"$RULESDIR/rspamd.lua\"\nmodules {{ path = \"${{PLUGINSDIR}}\"; }}\n\
             spf {{ spf_cache_size = 0; min_cache_ttl = 0s; }}\n\
             dkim {{ dkim_cache_size = 0; }}\ndmarc {{ }}\n\
             group \"policies\" {{ .include \"$CONFDIR/scores.d/policies_group.conf\" }}\n"
        );
        std::fs::write(dir.path().join("rspamd.conf"), conf).unwrap();
        let child = Command::new("/usr/bin/rspamd")
            .args(["-f", "-i", "-u", "root", "-g", "root", "-c"])
            .arg(dir.path().join("rspamd.conf"))
            .arg(format!("--var=DBDIR={d}/db"))
            .arg(format!("--var=RUNDIR={d}"))
            .arg(format!("--var=LOGDIR={d}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rspamd (Debian package rspamd) starts");
        let rspamd = Rspamd {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        rspamd.wait_ready().await;
        rspamd
    }

    /// Waits (60 s at most, for a loaded machine) until `/ping` answers `pong`.
    async fn wait_ready(&self) {
        for _ in 0..300 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("rspamd did not start; its log:\n{}", self.log());
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await else {
            return false;
        };
        let mut response = String::new();
        stream.write_all(b"GET /ping HTTP/1.0\r\n\r\n").await.is_ok()
            && stream.read_to_string(&mut response).await.is_ok()
            && response.contains("pong")
    }

    /// rspamd's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rspamd.log")).unwrap_or_default()
    }

    /// The symbols rspamd gives `message` received from `client`, with envelope
    /// sender `from` (the HELO is the sender's domain's `mx`), each with its options.
    pub async fn scan(&self, client: IpAddr, from: &str, message: &[u8]) -> Symbols {
        let domain = from.rsplit('@').next().unwrap_or(from);
        let mut child = tokio::process::Command::new("/usr/bin/rspamc")
            .arg("-h")
            .arg(self.addr.to_string())
            .arg("--ip")
            .arg(client.to_string())
            .arg("--helo")
            .arg(format!("mx.{domain}"))
            .arg("--from")
            .arg(from)
            .arg("--rcpt")
            .arg("postmaster@receiver.example")
            .arg("-j")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rspamc (Debian package rspamd) runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(message).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "rspamc gave no JSON ({e}): {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Symbols::from_json(&json)
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The symbols of one scan, and the options rspamd gave each (its reasons).
#[derive(Debug, Default)]
pub struct Symbols {
    pub names: BTreeSet<String>,
    pub text: String,
}

impl Symbols {
    fn from_json(json: &serde_json::Value) -> Symbols {
        let mut out = Symbols::default();
        let Some(symbols) = json.get("symbols").and_then(|s| s.as_object()) else {
            out.text = json.to_string();
            return out;
        };
        for (name, symbol) in symbols {
            out.names.insert(name.clone());
            let _ = write!(out.text, "{name}");
            if let Some(options) = symbol.get("options") {
                let _ = write!(out.text, "{options}");
            }
            out.text.push(' ');
        }
        out
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// A DKIM signing key (RSA 2048, made by openssl) and its public half as DKIM's `p=`.
pub struct DkimKey {
    dir: TempDir,
    private: PathBuf,
    /// The base64 SubjectPublicKeyInfo, for a policy's `[dkim.<selector>] p`.
    pub public_base64: String,
}

impl DkimKey {
    pub fn generate() -> DkimKey {
        require("/usr/bin/openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("dkim.key");
        // PKCS#1 ("BEGIN RSA PRIVATE KEY"), the form dkimpy reads.
        let made = Command::new("/usr/bin/openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&private)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl genrsa failed");
        let public = Command::new("/usr/bin/openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&private)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let pem = String::from_utf8(public.stdout).unwrap();
        let public_base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!public_base64.is_empty(), "openssl rsa -pubout gave no key");
        DkimKey {
            dir,
            private,
            public_base64,
        }
    }

    /// `message` with a DKIM-Signature by python3-dkim (d=`domain`, s=`selector`).
    pub fn sign(&self, message: &[u8], selector: &str, domain: &str) -> Vec<u8> {
        require(PYTHON, "python3-dkim");
        let script = "import sys, dkim\n\
                      msg = sys.stdin.buffer.read()\n\
                      key = open(sys.argv[1], 'rb').read()\n\
                      sig = dkim.sign(msg, sys.argv[2].encode(), sys.argv[3].encode(), key,\n\
                                      include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])\n\
                      sys.stdout.buffer.write(sig + msg)\n";
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(script)
            .arg(&self.private)
            .arg(selector)
            .arg(domain)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "python3-dkim could not sign (Debian package python3-dkim): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A plain message from `from` (header and envelope alike), CRLF line ends.
pub fn message(from: &str, subject: &str) -> Vec<u8> {
    let domain = from.rsplit('@').next().unwrap_or(from);
    format!(
        "From: Sender <{from}>\r\nTo: Postmaster <postmaster@receiver.example>\r\n\
         Subject: {subject}\r\nDate: Tue, 08 Dec 2026 04:00:00 +0000\r\n\
         Message-ID: <{}@{domain}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
         A message to check the sender's SPF, DKIM and DMARC.\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}
