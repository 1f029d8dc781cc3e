//! A real receiver agrees: rspamd, resolving through a validating unbound that asks
//! spfd for the mail domains and a loopback DNS world (tests/upstream/) for the
//! provider they include, judges mail from domains in flatten, macro and passthrough
//! mode, each served unsigned by one spfd and signed (DNSSEC, anchored in unbound from
//! `spfd dnssec ds`) by another. Legitimate mail, from the provider's IPv4 and IPv6
//! addresses, with and without a DKIM signature (python3-dkim, key in the policy's
//! `[dkim]`), must get SPF, DKIM and DMARC passes; mail from an address the provider
//! excludes, or from nowhere authorised, without a signature, is rejected by DMARC.

mod common;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/receivers.rs"]
mod receivers;
#[path = "common/stage.rs"]
mod stage;
#[path = "common/upstream.rs"]
mod upstream;
#[path = "common/validators.rs"]
mod validators;

use std::net::{IpAddr, SocketAddr};

use common::*;
use hickory_proto::rr::RecordType;
use receivers::{DkimKey, Rspamd, message};
use stage::{wait_published_domains, world_dir};
use upstream::Upstream;
use validators::{Unbound, anchors_from_ds_output};

/// Every domain's source record: the provider (two levels, with an address it
/// excludes and an IPv6 part) and a block of its own.
const RECORD: &str = "v=spf1 include:spf.provider-b.test ip4:203.0.113.0/24 -all";
const MODES: [&str; 3] = ["flatten", "macro", "passthrough"];
const SELECTOR: &str = "s1";

/// One message and the verdicts it must get.
struct Case {
    what: &'static str,
    client: &'static str,
    dkim: bool,
    expect: &'static [&'static str],
    /// Whether the case holds in passthrough mode too, where rspamd evaluates the
    /// provider's record itself: rspamd 3.4 passes 198.51.100.66, which the provider
    /// excludes (`-IP4:198.51.100.66` before `IP4:198.51.100.64/26`, inside the
    /// include), where RFC 7208 and spfd's rewritten records fail it.
    passthrough: bool,
}

const LEGITIMATE: &[&str] = &["R_SPF_ALLOW", "DMARC_POLICY_ALLOW"];
const SPOOFED: &[&str] = &["R_SPF_FAIL", "DMARC_POLICY_REJECT"];

const CASES: &[Case] = &[
    Case {
        what: "provider IPv4, signed",
        client: "198.51.100.70",
        dkim: true,
        expect: &["R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"],
        passthrough: true,
    },
    Case {
        what: "provider IPv4, SPF alone",
        client: "198.51.100.70",
        dkim: false,
        expect: LEGITIMATE,
        passthrough: true,
    },
    Case {
        what: "provider IPv6, SPF alone",
        client: "2001:db8:b::25",
        dkim: false,
        expect: LEGITIMATE,
        passthrough: true,
    },
    Case {
        what: "own block, signed",
        client: "203.0.113.9",
        dkim: true,
        expect: &["R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"],
        passthrough: true,
    },
    Case {
        what: "address the provider excludes",
        client: "198.51.100.66",
        dkim: false,
        expect: SPOOFED,
        passthrough: false,
    },
    Case {
        what: "IPv6 from nowhere",
        client: "2001:db8:dead::1",
        dkim: false,
        expect: SPOOFED,
        passthrough: true,
    },
];

fn domain(mode: &str, signed: bool) -> String {
    format!("{mode}-{}.test", if signed { "s" } else { "u" })
}

fn policy(domain: &str, mode: &str, key: &DkimKey) -> String {
    format!(
        "domain = \"{domain}\"\nzone = \"{domain}\"\nttl = 300\n[spf]\nrecord = \"{RECORD}\"\n\
         mode = \"{mode}\"\n[dmarc]\np = \"reject\"\nrua = [\"mailto:dmarc@{domain}\"]\n\
         [dkim.{SELECTOR}]\np = \"{}\"\n",
        key.public_base64
    )
}

/// spfd serving one domain per mode, signed or not, resolving providers in `world`.
async fn start_spfd(world: &Upstream, key: &DkimKey, signed: bool) -> (Setup, spfd::server::Running) {
    let policies: Vec<(String, String)> = MODES
        .iter()
        .map(|mode| {
            let d = domain(mode, signed);
            (format!("{d}.toml"), policy(&d, mode, key))
        })
        .collect();
    let refs: Vec<(&str, &str)> = policies.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let setup = Setup::new(&refs);
    let mut config = config_text() + &world.resolver_config_toml();
    if signed {
        config += "[dnssec]\nenabled = true\n";
    }
    std::fs::write(setup.config_path(), config).unwrap();
    let running = spfd::server::start(&setup.config()).await.unwrap();
    let expanded = [domain("flatten", signed), domain("macro", signed)];
    wait_published_domains(&running, &[&expanded[0], &expanded[1]]).await;
    (setup, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_passes_legitimate_mail_and_rejects_spoofed_mail_in_every_mode() {
    let world = Upstream::start(world_dir()).await;
    let key = DkimKey::generate();
    let (_plain_setup, plain) = start_spfd(&world, &key, false).await;
    let (signed_setup, signed) = start_spfd(&world, &key, true).await;
    let ds = spfd::cli::dnssec::ds(&signed_setup.config(), &signed.snapshot.load(), None).unwrap();
    let anchors = anchors_from_ds_output(&ds);
    assert_eq!(anchors.len(), MODES.len(), "{ds}");

    let mut stubs: Vec<(String, SocketAddr)> = Vec::new();
    for mode in MODES {
        stubs.push((format!("{}.", domain(mode, false)), plain.addrs[0]));
        stubs.push((format!("{}.", domain(mode, true)), signed.addrs[0]));
    }
    stubs.push(("provider-b.test.".into(), world.addr));
    let stub_refs: Vec<(&str, SocketAddr)> = stubs.iter().map(|(z, a)| (z.as_str(), *a)).collect();
    let unbound = Unbound::start_stubs(&stub_refs, &anchors).await;
    // The signed domains are validated (the signed cases are not insecure by mistake).
    for mode in MODES {
        let d = domain(mode, true);
        unbound.secure(&format!("{d}."), RecordType::TXT).await;
        unbound.secure(&format!("_dmarc.{d}."), RecordType::TXT).await;
    }
    unbound
        .secure("70.100.51.198.in-addr.macro-s.test.", RecordType::TXT)
        .await;

    let rspamd = Rspamd::start(unbound.addr, &["test", "example"]).await;
    let mut wrong = Vec::new();
    let mut scanned = 0;
    for mode in MODES {
        for signed in [false, true] {
            let d = domain(mode, signed);
            for case in CASES.iter().filter(|c| c.passthrough || mode != "passthrough") {
                let from = format!("sender@{d}");
                let mut mail = message(&from, &format!("{} {}", d, case.what));
                if case.dkim {
                    mail = key.sign(&mail, SELECTOR, &d);
                }
                let client: IpAddr = case.client.parse().unwrap();
                let got = rspamd.scan(client, &from, &mail).await;
                scanned += 1;
                let missing: Vec<&&str> = case.expect.iter().filter(|s| !got.has(s)).collect();
                if !missing.is_empty() {
                    wrong.push(format!(
                        "{d}, {} from {client}: missing {missing:?}; got {}",
                        case.what, got.text
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {scanned} verdicts are wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    plain.shutdown().await.unwrap();
    signed.shutdown().await.unwrap();
}
