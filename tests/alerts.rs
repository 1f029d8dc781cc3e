//! Alerts: a webhook receiver on loopback gets the events of a provider change, of a
//! broken include and of an invalid policy edit, with their content; a command gets the
//! same events on its standard input.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use upstream::Upstream;

const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 1\n@ 1 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 1\n\
                        @ 1 IN NS ns1.prov.test.\nns1 1 IN A 192.0.2.53\n\
                        spf 1 IN TXT \"v=spf1 ip4:198.51.100.0/25 -all\"\n";
const POLICY: &str = "domain = \"mail.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test -all\"\n";

/// A webhook receiver: every POST body, as JSON, on the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).await.unwrap();
                let _ = tx.send(serde_json::from_slice(&body).unwrap());
                let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = reader.into_inner().write_all(ok.as_bytes()).await;
            });
        }
    });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<serde_json::Value>, kind: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event"))
            .unwrap();
        if event["event"] == kind {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_changes_broken_includes_and_reload_errors_are_sent() {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(zones.path().join("prov.test.zone"), PROVIDER).unwrap();
    let world = Upstream::start(zones.path()).await;
    let (url, mut events) = receiver().await;
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("events.jsonl");
    let setup = Setup::new(&[("mail.toml", POLICY)]);
    let config = format!(
        "{}{}refresh_min = \"1s\"\nrefresh_max = \"2s\"\n[alerts]\nwebhook = \"{url}\"\n\
         command = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"]\n",
        config_text(),
        world.resolver_config_toml(),
        log.display(),
        log.display()
    );
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let mut flattened = running.flattened.clone();
    assert!(flattened.wait().await);

    world
        .replace_zone(
            "prov.test.",
            &PROVIDER.replace("198.51.100.0/25", "203.0.113.0/24"),
        )
        .await;
    let change = next(&mut events, "provider_change").await;
    assert_eq!(change["domain"], "mail.test", "{change}");
    assert_eq!(change["detail"]["term"], "include:spf.prov.test", "{change}");
    assert_eq!(
        change["detail"]["added"],
        serde_json::json!(["ip4:203.0.113.0/24"])
    );
    assert_eq!(
        change["detail"]["removed"],
        serde_json::json!(["ip4:198.51.100.0/25"])
    );
    assert_eq!(
        change["detail"]["held"][0]["range"], "198.51.100.0/25",
        "{change}"
    );

    // The provider now includes a name with no SPF record: receivers would permerror.
    let broken = PROVIDER.replace("ip4:198.51.100.0/25", "include:gone.prov.test");
    world.replace_zone("prov.test.", &broken).await;
    let failed = next(&mut events, "expansion_failed").await;
    assert_eq!(failed["domain"], "mail.test");
    assert!(
        failed["message"].as_str().unwrap().contains("gone.prov.test"),
        "{failed}"
    );

    setup.write_policy(
        "mail.toml",
        "domain = \"mail.test\"\n[spf]\nrecord = \"v=spf1 nonsense\"\n",
    );
    let reload = next(&mut events, "reload_error").await;
    assert!(
        reload["detail"]["file"].as_str().unwrap().ends_with("mail.toml"),
        "{reload}"
    );
    assert!(
        reload["detail"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("mail.toml:3:"),
        "{reload}"
    );

    running.shutdown().await.unwrap();
    let lines = std::fs::read_to_string(&log).unwrap();
    let kinds: Vec<String> = lines
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for kind in ["provider_change", "expansion_failed", "reload_error"] {
        assert!(kinds.iter().any(|k| k == kind), "the command got {kinds:?}");
    }
}
