//! The admin HTTP server against the running server: health and readiness, `/status`
//! and `/metrics` moving as they should after DNS traffic, a policy edit, a provider
//! change and an upstream outage, the status page without JavaScript, and the bearer
//! token.

mod common;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/upstream.rs"]
mod upstream;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upstream::{Failure, Upstream};

/// A GET over plain HTTP/1.1; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let (code, _, body) = get_with_head(addr, path, token).await;
    (code, body)
}

/// A GET over plain HTTP/1.1; returns the status code, the head and the body.
async fn get_with_head(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: spfd\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let code = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_ascii_lowercase(), dechunk(body))
}

/// Joins an HTTP/1.1 chunked body (axum streams larger bodies that way).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
}

/// A provider whose records live one second, so a change is seen at once.
const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 1\n@ 1 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 1\n\
                        @ 1 IN NS ns1.prov.test.\nns1 1 IN A 192.0.2.53\n\
                        spf 1 IN TXT \"v=spf1 ip4:198.51.100.0/25 ip4:192.0.2.192/26 -all\"\n";

async fn world() -> (Upstream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prov.test.zone"), PROVIDER).unwrap();
    (Upstream::start(dir.path()).await, dir)
}

const FLAT: &str = "domain = \"flat.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test -all\"\n\
                    [dmarc]\np = \"quarantine\"\nrua = [\"mailto:d@flat.test\"]\n";
const PASS: &str =
    "domain = \"pass.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.1 -all\"\nmode = \"passthrough\"\n";

async fn server(world: &Upstream, admin: &str) -> (Setup, spfd::server::Running) {
    let setup = Setup::new(&[("flat.toml", FLAT), ("pass.toml", PASS)]);
    let config = config_text()
        + &world.resolver_config_toml()
        + "refresh_min = \"1s\"\nrefresh_max = \"2s\"\nmax_stale = \"3s\"\n"
        + admin;
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    (setup, running)
}

async fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, body) = get(addr, "/status", None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn policy<'v>(status: &'v serde_json::Value, domain: &str) -> &'v serde_json::Value {
    status["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["domain"] == domain)
        .unwrap_or_else(|| panic!("{domain} not in {status}"))
}

async fn wait_status(addr: SocketAddr, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..400 {
        let s = status(addr).await;
        if check(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    status(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_traffic_edits_provider_changes_and_outages() {
    let (world, _zones) = world().await;
    let (setup, running) = server(&world, "[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let admin = running.admin.expect("admin configured");
    assert_eq!(get(admin, "/healthz", None).await.0, 200);
    assert_eq!(get(admin, "/readyz", None).await, (200, "ready\n".to_string()));

    // The board says ok once the expansion is done; the snapshot swap follows.
    let flattened = |s: &serde_json::Value| {
        let flat = policy(s, "flat.test");
        flat["state"] == "ok"
            && !flat["published"][0]["text"]
                .as_str()
                .unwrap()
                .contains("include:")
    };
    let s = wait_status(admin, flattened).await;
    let flat = policy(&s, "flat.test");
    assert_eq!(flat["spf_mode"], "flatten");
    assert_eq!(flat["zone"], "_spf.flat.test");
    assert_eq!(flat["dmarc_policy"], "quarantine");
    assert_eq!(flat["lookups"], 1, "the owner's redirect only: {flat}");
    let head = flat["published"][0]["text"].as_str().unwrap();
    assert_eq!(head, "v=spf1 ip4:192.0.2.192/26 ip4:198.51.100.0/25 -all");
    assert_eq!(policy(&s, "pass.test")["state"], "ok");
    let generation = s["generation"].as_u64().unwrap();

    // DNS traffic moves the counters (scraped from the running server).
    for _ in 0..3 {
        let q = query("_spf.pass.test.", RecordType::TXT);
        udp_raw(running.addrs[0], &q.to_vec().unwrap()).await;
    }
    let (code, metrics) = get(admin, "/metrics", None).await;
    assert_eq!(code, 200);
    for name in [
        spfd::metrics::DNS_REQUESTS,
        spfd::metrics::DNS_RESPONSES,
        spfd::metrics::SNAPSHOT_GENERATION,
        spfd::metrics::SNAPSHOT_SWAPS,
        spfd::metrics::POLICIES,
        spfd::metrics::FLATTEN_LOOKUPS,
        spfd::metrics::FLATTEN_LAST_SUCCESS,
        spfd::metrics::UPSTREAM_QUERIES,
        spfd::metrics::RELOAD_ERRORS,
        spfd::metrics::RRL_RESPONSES,
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name}")),
            "{name} missing:\n{metrics}"
        );
    }
    assert!(metrics.contains("spfd_policies{state=\"ok\"} 1"), "{metrics}");
    assert!(
        metrics.contains("spfd_flatten_lookups{domain=\"flat.test\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("spfd_upstream_queries_total{result=\"ok\"}"),
        "{metrics}"
    );

    // An invalid edit: the error with its position, counted; the old version stays.
    setup.write_policy(
        "pass.toml",
        "domain = \"pass.test\"\n[spf]\nrecord = \"v=spf1 bogus -all\"\n",
    );
    let s = wait_status(admin, |s| policy(s, "pass.test")["error"].is_string()).await;
    let error = policy(&s, "pass.test")["error"].as_str().unwrap().to_string();
    assert!(error.contains("pass.toml:3:"), "{error}");
    assert_eq!(policy(&s, "pass.test")["state"], "error");
    let (_, metrics) = get(admin, "/metrics", None).await;
    assert!(metrics.contains("spfd_reload_errors_total 1"), "{metrics}");
    // A valid edit: served, error gone, generation moved.
    setup.write_policy("pass.toml", &PASS.replace("192.0.2.1", "192.0.2.2"));
    let s = wait_status(admin, |s| policy(s, "pass.test")["error"].is_null()).await;
    assert!(s["generation"].as_u64().unwrap() > generation);
    assert_eq!(
        policy(&s, "pass.test")["published"][0]["text"],
        "v=spf1 ip4:192.0.2.2 -all"
    );

    // A provider change: seen, with the diff.
    let zone = PROVIDER.replace("ip4:198.51.100.0/25", "ip4:198.51.100.128/25");
    world.replace_zone("prov.test.", &zone).await;
    let s = wait_status(admin, |s| {
        !policy(s, "flat.test")["changes"].as_array().unwrap().is_empty()
    })
    .await;
    let change = &policy(&s, "flat.test")["changes"][0];
    assert_eq!(change["term"], "include:spf.prov.test", "{change}");
    assert_eq!(
        change["added"],
        serde_json::json!(["ip4:198.51.100.128/25"]),
        "{change}"
    );
    assert_eq!(
        change["removed"],
        serde_json::json!(["ip4:198.51.100.0/25"]),
        "{change}"
    );
    assert_eq!(policy(&s, "flat.test")["held"][0]["range"], "198.51.100.0/25");

    // An outage past max_stale (3 s): stale, with the upstream cause; still served.
    world.set_failure("prov.test.", Failure::Timeout);
    let s = wait_status(admin, |s| policy(s, "flat.test")["state"] == "stale").await;
    let flat = policy(&s, "flat.test");
    assert_eq!(flat["state"], "stale", "{flat}");
    assert!(
        flat["error"].as_str().unwrap().contains("spf.prov.test"),
        "{flat}"
    );
    let (_, metrics) = get(admin, "/metrics", None).await;
    assert!(metrics.contains("spfd_policies{state=\"stale\"} 1"), "{metrics}");
    assert!(
        metrics.contains("spfd_upstream_queries_total{result=\"error\"}"),
        "{metrics}"
    );

    // The page for people: every domain and its state, no script.
    let (code, page) = get(admin, "/", None).await;
    assert_eq!(code, 200);
    assert!(!page.contains("<script"), "no JavaScript");
    for needle in ["flat.test", "pass.test", "class=\"state stale\"", "<svg"] {
        assert!(page.contains(needle), "{needle} missing");
    }
    let (code, page) = get(admin, "/domain/flat.test", None).await;
    assert_eq!(code, 200);
    assert!(page.contains("198.51.100.0/25"), "held range shown");
    assert_eq!(get(admin, "/domain/nope.test", None).await.0, 404);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured() {
    let (world, _zones) = world().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let admin = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let (_setup, running) = server(&world, &admin).await;
    let addr = running.admin.unwrap();
    assert_eq!(get(addr, "/status", None).await.0, 401);
    assert_eq!(get(addr, "/metrics", Some("wrong")).await.0, 401);
    assert_eq!(get(addr, "/status", Some(TOKEN)).await.0, 200);
    // Every response forbids sniffing, framing and caching, refusals and misses too.
    for (path, token, code) in [
        ("/", Some(TOKEN), 200),
        ("/status", Some(TOKEN), 200),
        ("/metrics", Some(TOKEN), 200),
        ("/healthz", Some(TOKEN), 200),
        ("/status", None, 401),
        ("/domain/nope.test", Some(TOKEN), 404),
        ("/no-such-page", Some(TOKEN), 404),
    ] {
        let (got, head, _) = get_with_head(addr, path, token).await;
        assert_eq!(got, code, "{path}");
        for header in [
            "x-content-type-options: nosniff",
            "content-security-policy: frame-ancestors 'none'",
            "cache-control: no-store",
        ] {
            assert!(head.contains(header), "{path} ({code}) lacks {header}:\n{head}");
        }
    }
    running.shutdown().await.unwrap();
}

const TOKEN: &str = "d1f0c2a9e8b7465f";

#[test]
fn a_short_token_or_a_token_file_open_to_every_user_is_refused_at_start() {
    let setup = Setup::new(&[]);
    let token_file = setup.dir.path().join("admin.token");
    let text = config_text() + "[admin]\ntoken_file = \"admin.token\"\n";
    std::fs::write(setup.config_path(), &text).unwrap();
    for (token, mode, expected) in [
        (
            "s3cret\n",
            0o600,
            "holds a token of 6 characters: use at least 16".to_string(),
        ),
        (
            "d1f0c2a9e8b7465f\n",
            0o644,
            format!(
                "is open to every user (mode 644): run `chmod 600 {}`",
                token_file.display()
            ),
        ),
    ] {
        std::fs::write(&token_file, token).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let errors = spfd::config::Config::load(&setup.config_path()).unwrap_err();
        assert!(errors[0].message.contains(&expected), "{}", errors[0]);
        // `spfd check` says the same and fails.
        let (report, ok) = spfd::cli::check(&setup.config_path());
        assert!(!ok && report.contains(&expected), "{report}");
    }
}

/// Reads from `stream` until the server closes it (EOF or reset); false if it is still
/// open after `limit` (far longer than the timeout under test).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed() {
    let (world, _zones) = world().await;
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"1s\"\nheader_timeout = \"1h\"\n";
    let (_setup, running) = server(&world, admin).await;
    let addr = running.admin.unwrap();
    // A connection that sends nothing.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(30)).await,
        "the idle connection stays open"
    );
    running.shutdown().await.unwrap();

    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"1h\"\nheader_timeout = \"1s\"\n";
    let (_setup, running) = server(&world, admin).await;
    let addr = running.admin.unwrap();
    // Headers trickled a byte at a time, never complete: always active, never idle.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for byte in b"X-Slow: ".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    let closed = tokio::time::timeout(Duration::from_secs(30), trickle).await;
    assert_eq!(closed, Ok(true), "the slow request stays open");
    // A prompt request on a fresh connection is still served.
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    running.shutdown().await.unwrap();
}

#[test]
fn a_public_admin_address_without_a_token_is_a_config_error() {
    let setup = Setup::new(&[]);
    let text = config_text() + "[admin]\nlisten = \"0.0.0.0:8053\"\n";
    std::fs::write(setup.config_path(), &text).unwrap();
    let errors = spfd::config::Config::load(&setup.config_path()).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.starts_with("listen = \"0.0.0.0"))
        .unwrap()
        + 1;
    assert!(
        errors[0].to_string().contains(&format!(
            "spfd.toml:{line}:10: error: admin listen 0.0.0.0:8053 is not a loopback"
        )),
        "{}",
        errors[0]
    );
}

/// Reports stored for a domain show on `/status` (the summary and the advice, as
/// `spfd reports summary --json` and `spfd advise --json` give them) and on its page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summaries_and_advice_are_on_status_and_the_page() {
    let (world, _zones) = world().await;
    let setup = Setup::new(&[("flat.toml", FLAT), ("pass.toml", PASS)]);
    let config = config_text()
        + &world.resolver_config_toml()
        + "[admin]\nlisten = \"127.0.0.1:0\"\n[reports]\ninterval = \"1s\"\n";
    let events = tempfile::tempdir().unwrap();
    let log = events.path().join("events.jsonl");
    let alerts = format!(
        "[alerts]\ncommand = [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}\"]\n",
        log.display()
    );
    std::fs::write(setup.config_path(), config + &alerts).unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let senders = [corpus::Sender {
        ip: "198.51.100.7",
        base: 40,
        dkim_aligned: true,
        dkim_other: None,
        spf_aligned: true,
        envelope: "flat.test",
    }];
    let tally = corpus::write_corpus(inbox.path(), "flat.test", &senders, 3);
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["reports", "import", "--config"])
        .arg(setup.config_path())
        .arg(inbox.path())
        .output()
        .unwrap();
    assert!(
        !import.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let admin = running.admin.unwrap();
    let s = wait_status(admin, |s| policy(s, "flat.test")["reports"].is_object()).await;
    let reports = &policy(&s, "flat.test")["reports"];
    assert_eq!(reports["summary"]["messages"], tally.messages, "{reports}");
    assert_eq!(reports["summary"]["dmarc_pass"], tally.dmarc_pass, "{reports}");
    assert_eq!(reports["summary"]["sources"][0]["ip"], "198.51.100.7");
    assert!(reports["advice"]["dmarc"]["ready"].is_boolean(), "{reports}");
    assert!(
        policy(&s, "pass.test")["reports"].is_null(),
        "no reports for pass.test"
    );
    let (_, page) = get(admin, "/domain/flat.test", None).await;
    assert!(
        page.contains("198.51.100.7") && page.contains("DMARC reports"),
        "{page}"
    );
    running.shutdown().await.unwrap();
}
