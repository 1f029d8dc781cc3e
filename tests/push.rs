//! `spfd push` and the server's `[push]` mode against a real primary: Knot with an
//! update ACL and a TSIG key accepts the RFC 2136 updates, then answers the new
//! records; a second push after a policy edit replaces them and leaves the zone's
//! other records (an unrelated TXT at the apex, an A record) alone.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use upstream::Upstream;

const SECRET: &str = "c3BmZC1wdXNoLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";
const OTHER_SECRET: &str = "b3RoZXItc2VjcmV0LW5vdC10aGUtc2FtZS0wMTIzNDU=";

const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 1\n@ 1 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 1\n\
                        @ 1 IN NS ns1.prov.test.\nns1 1 IN A 192.0.2.53\n\
                        spf 1 IN TXT \"v=spf1 ip4:198.51.100.0/25 -all\"\n";

/// The primary's zone: its own records, and an SPF record from before spfd.
const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
                    @ IN NS ns1.example.test.\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\n\
                    @ IN TXT \"google-site-verification=abc123\"\n@ IN TXT \"v=spf1 -all\"\n";

fn policy(extra_ip: &str, selector: &str) -> String {
    format!(
        "domain = \"example.test\"\nzone = \"example.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test {extra_ip} -all\"\n\
         [dmarc]\np = \"reject\"\n[dkim.{selector}]\nk = \"ed25519\"\nkey_file = \"{}\"\n",
        key_path("ed25519.pub.pem").display()
    )
}

struct Knot {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Knot as the primary of example.test, taking updates signed with the key.
async fn knot() -> Knot {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
         log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
         database:\n  storage: \"{d}\"\n\
         key:\n  - id: upd-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         acl:\n  - id: update_acl\n    address: 127.0.0.1\n    key: upd-key\n    action: update\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n\
         zone:\n  - domain: example.test.\n    file: \"{d}/example.test.zone\"\n    acl: update_acl\n"
    );
    std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
    let child = common::spawn_knotd(dir.path());
    let knot = Knot {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if !txt(knot.port, "www.example.test.").contains("timed out")
            && !dig(knot.port, "SOA", "example.test.").is_empty()
        {
            return knot;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Knot did not start");
}

fn dig(port: u16, rtype: &str, name: &str) -> String {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+retry=1",
            rtype,
            name,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn txt(port: u16, name: &str) -> String {
    dig(port, "TXT", name)
}

struct World {
    setup: Setup,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

async fn world(knot_port: u16, secret: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prov.test.zone"), PROVIDER).unwrap();
    let upstream = Upstream::start(dir.path()).await;
    let setup = Setup::new(&[("example.toml", &policy("ip4:203.0.113.7", "s1"))]);
    std::fs::write(setup.dir.path().join("upd.secret"), secret).unwrap();
    let config = config_text()
        + &upstream.resolver_config_toml()
        + &format!(
            "[push]\nprimary = \"127.0.0.1:{knot_port}\"\ntsig = \"upd-key\"\n\
             [tsig.upd-key]\nalgorithm = \"hmac-sha256\"\nsecret_file = \"upd.secret\"\n"
        );
    std::fs::write(setup.config_path(), config).unwrap();
    World {
        setup,
        _upstream: upstream,
        _dir: dir,
    }
}

/// Runs `spfd push` (the binary); its exit status and output.
async fn spfd_push(setup: &Setup, args: &[&str]) -> (bool, String) {
    let config = setup.config_path();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
            .arg("push")
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_writes_the_flattened_records_and_a_second_push_replaces_them() {
    let knot = knot().await;
    let w = world(knot.port, SECRET).await;

    let (ok, dry) = spfd_push(&w.setup, &["--dry-run", "example.test"]).await;
    assert!(ok, "{dry}");
    assert!(dry.contains(&format!("server 127.0.0.1 {}", knot.port)), "{dry}");
    assert!(dry.contains("zone example.test.\n"), "{dry}");
    assert!(
        dry.contains("update delete example.test. TXT \"v=spf1 -all\""),
        "{dry}"
    );
    assert!(
        dry.contains("update add example.test. 300 TXT \"v=spf1 ip4:198.51.100.0/25 ip4:203.0.113.7 -all\""),
        "flattened: {dry}"
    );
    assert!(
        dry.contains("update add _dmarc.example.test. 300 TXT \"v=DMARC1; p=reject"),
        "{dry}"
    );
    assert!(
        dry.contains("update add s1._domainkey.example.test. 300 TXT"),
        "{dry}"
    );
    assert!(
        txt(knot.port, "example.test.").contains("\"v=spf1 -all\""),
        "a dry run sends nothing"
    );

    let (ok, out) = spfd_push(&w.setup, &[]).await;
    assert!(ok, "{out}");
    let apex = txt(knot.port, "example.test.");
    assert!(
        apex.contains("v=spf1 ip4:198.51.100.0/25 ip4:203.0.113.7 -all"),
        "{apex}"
    );
    assert!(
        !apex.contains("\"v=spf1 -all\""),
        "the old SPF record is replaced: {apex}"
    );
    assert!(
        apex.contains("google-site-verification=abc123"),
        "other TXT records stay: {apex}"
    );
    assert!(txt(knot.port, "_dmarc.example.test.").contains("v=DMARC1; p=reject"));
    assert!(txt(knot.port, "s1._domainkey.example.test.").contains("v=DKIM1; k=ed25519"));
    assert_eq!(dig(knot.port, "A", "www.example.test.").trim(), "192.0.2.80");

    // A policy edit: another address, the selector renamed. The second push replaces
    // the SPF record and deletes the selector spfd no longer publishes.
    w.setup
        .write_policy("example.toml", &policy("ip4:203.0.113.9", "s2"));
    let (ok, out) = spfd_push(&w.setup, &["example.test"]).await;
    assert!(ok, "{out}");
    let apex = txt(knot.port, "example.test.");
    assert!(
        apex.contains("ip4:203.0.113.9") && !apex.contains("ip4:203.0.113.7"),
        "{apex}"
    );
    assert_eq!(apex.matches("v=spf1").count(), 1, "{apex}");
    assert!(apex.contains("google-site-verification=abc123"), "{apex}");
    assert_eq!(txt(knot.port, "s1._domainkey.example.test.").trim(), "");
    assert!(txt(knot.port, "s2._domainkey.example.test.").contains("v=DKIM1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_another_key_is_refused_and_changes_nothing() {
    let knot = knot().await;
    let w = world(knot.port, OTHER_SECRET).await;
    let (ok, out) = spfd_push(&w.setup, &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("; error: example.test."), "{out}");
    assert!(txt(knot.port, "example.test.").contains("\"v=spf1 -all\""));
    assert_eq!(txt(knot.port, "_dmarc.example.test.").trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_in_push_mode_writes_every_change() {
    let knot = knot().await;
    let w = world(knot.port, SECRET).await;
    let running = spfd::server::start(&w.setup.config()).await.unwrap();
    let wait_for = |name: &'static str, want: &'static str| {
        let port = knot.port;
        async move {
            for _ in 0..200 {
                let got = txt(port, name);
                if got.contains(want) {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{name} never had {want}: {}", txt(port, name));
        }
    };
    wait_for("example.test.", "ip4:198.51.100.0/25 ip4:203.0.113.7 -all").await;
    wait_for("_dmarc.example.test.", "v=DMARC1").await;
    w.setup
        .write_policy("example.toml", &policy("ip4:203.0.113.9", "s1"));
    let apex = wait_for("example.test.", "ip4:203.0.113.9").await;
    assert_eq!(apex.matches("v=spf1").count(), 1, "{apex}");
    assert!(apex.contains("google-site-verification=abc123"), "{apex}");
    running.shutdown().await.unwrap();
}
