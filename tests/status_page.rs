//! The status page as people see it: real headless Chromium (Debian's package, which
//! .ci/run installs) opens it from the running server, every domain and its state must
//! be in what it renders (the page has no script to run), and a screenshot is saved
//! (`target/status-page.png`; `SPFD_SCREENSHOT=path` saves it elsewhere).

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use upstream::Upstream;

const PROVIDER: &str = "$ORIGIN prov.test.\n$TTL 60\n@ 60 IN SOA ns1.prov.test. hostmaster.prov.test. 1 3600 600 86400 60\n\
                        @ 60 IN NS ns1.prov.test.\nns1 60 IN A 192.0.2.53\n\
                        spf 60 IN TXT \"v=spf1 ip4:198.51.100.0/25 ip6:2001:db8:5::/48 ~all\"\n\
                        big 60 IN TXT \"v=spf1 include:spf.prov.test include:a.prov.test include:b.prov.test -all\"\n\
                        a 60 IN TXT \"v=spf1 ip4:203.0.113.0/26 -all\"\nb 60 IN TXT \"v=spf1 ip4:203.0.113.64/26 -all\"\n";

fn policies() -> Vec<(String, String)> {
    vec![
        ("alpha.toml".into(), "domain = \"alpha.test\"\n[spf]\nrecord = \"v=spf1 include:spf.prov.test -all\"\n[dmarc]\np = \"reject\"\nrua = [\"mailto:d@alpha.test\"]\n".into()),
        ("beta.toml".into(), "domain = \"beta.test\"\n[spf]\nrecord = \"v=spf1 include:big.prov.test ~all\"\nmode = \"macro\"\n".into()),
        ("gamma.toml".into(), "domain = \"gamma.test\"\n[spf]\nrecord = \"v=spf1 include:missing.prov.test -all\"\n".into()),
        ("delta.toml".into(), "domain = \"delta.test\"\n[spf]\nrecord = \"v=spf1 ip4:192.0.2.1 -all\"\nmode = \"passthrough\"\n".into()),
    ]
}

fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian's package) is installed: .ci/run installs it");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_every_domain_and_its_state() {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(zones.path().join("prov.test.zone"), PROVIDER).unwrap();
    let world = Upstream::start(zones.path()).await;
    let files = policies();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let setup = Setup::new(&refs);
    let config = config_text() + &world.resolver_config_toml() + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    assert!(running.flattened.clone().wait().await);
    // Let the snapshot with the first expansions be swapped in.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let url = format!("http://{}/", running.admin.unwrap());

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || chromium(&["--dump-dom"], &url)
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for (domain, state) in [
        ("alpha.test", "ok"),
        ("beta.test", "ok"),
        ("gamma.test", "error"),
        ("delta.test", "ok"),
    ] {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!(">{domain}</a>")))
            .unwrap_or_else(|| panic!("{domain} is not on the page:\n{dom}"));
        assert!(
            row.contains(&format!("class=\"state {state}\">{state}<")),
            "{domain} is not {state}: {row}"
        );
    }
    assert!(
        dom.contains("Lookups per domain") && dom.contains("<svg"),
        "the charts are drawn"
    );
    assert!(!dom.contains("<script"), "the page needs no JavaScript");

    let shot = std::env::var_os("SPFD_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png"));
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || chromium(&[&arg, "--window-size=1280,900"], &url))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of {} octets",
        png.len()
    );
    running.shutdown().await.unwrap();
}
