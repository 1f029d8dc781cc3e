//! The `spfd` binary: `check` on the shipped examples and on broken files, `records`,
//! and `serve` answering, reloading on SIGHUP and stopping on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use hickory_proto::rr::RecordType;

fn spfd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn zones_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("zones/spfd.toml")
        .display()
        .to_string()
}

#[test]
fn every_file_in_zones_passes_check() {
    let (code, out, err) = spfd(&["check", "--config", &zones_config()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(": error:"), "{out}");
    let policies = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/policies"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert!(policies >= 2);
    assert!(
        out.contains(&format!("{policies} policies valid, 0 errors")),
        "{out}"
    );
}

#[test]
fn check_reports_errors_with_file_line_column_and_fails() {
    let setup = Setup::new(&[("bad.toml", "domain = \"bad.test\"\ncolour = \"red\"\n")]);
    let (code, out, _) = spfd(&["check", "--config", setup.config_path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "{}:2:1: error: unknown field `colour`",
        setup.policy_path("bad.toml").display()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(out.contains("0 policies valid, 1 errors"), "{out}");
}

/// Target names resolvers refuse fail `spfd check` at their label; a network of the
/// whole Internet is a warning only.
#[test]
fn check_refuses_spf_targets_that_are_not_dns_names() {
    let policy = |record: &str| format!("domain = \"bad.test\"\n[spf]\nrecord = \"{record}\"\n");
    let setup = Setup::new(&[
        ("hyphen.toml", &policy("v=spf1 a:-bad-.test -all")),
        (
            "empty.toml",
            &policy("v=spf1 a:bad..test -all").replace("bad.test", "empty.test"),
        ),
        (
            "wide.toml",
            &policy("v=spf1 ip4:0.0.0.0/0 -all").replace("bad.test", "wide.test"),
        ),
    ]);
    let (code, out, _) = spfd(&["check", "--config", setup.config_path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for (file, at, severity) in [
        ("hyphen.toml", "3:20", "error"),
        ("empty.toml", "3:24", "error"),
        ("wide.toml", "3:18", "warning"),
    ] {
        let expected = format!(
            "{}:{at}: {severity}: spf record:",
            setup.policy_path(file).display()
        );
        assert!(out.contains(&expected), "{expected} in {out}");
    }
    assert!(out.contains("1 policies valid, 2 errors"), "{out}");
}

#[test]
fn check_rejects_an_unknown_key_in_the_config() {
    let setup = Setup::new(&[]);
    std::fs::write(setup.config_path(), config_text() + "[extra]\nx = 1\n").unwrap();
    let (code, out, _) = spfd(&["check", "--config", setup.config_path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "{}:8:2: error: unknown field `extra`",
            setup.config_path().display()
        )),
        "{out}"
    );
}

#[test]
fn records_prints_the_delegation_redirect_and_cnames() {
    let setup = Setup::new(&[
        (
            "a.toml",
            &format!(
                "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n[dmarc]\np = \"none\"\nrua = [\"mailto:r@a.test\"]\n[dkim.sel1]\nkey_file = \"{}\"\n",
                key_path("rsa2048.pub.pem").display()
            ),
        ),
        (
            "whole.toml",
            "domain = \"whole.test\"\nzone = \"whole.test\"\n[dmarc]\np = \"reject\"\nrua = [\"mailto:r@whole.test\"]\n",
        ),
    ]);
    let (code, out, err) = spfd(&[
        "records",
        "--config",
        setup.config_path().to_str().unwrap(),
        "a.test",
    ]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "_spf.a.test.\t3600\tIN\tNS\tns1.spfd.test.",
        "_spf.a.test.\t3600\tIN\tNS\tns2.spfd.test.",
        "a.test.\t3600\tIN\tTXT\t\"v=spf1 redirect=_spf.a.test\"",
        "_dmarc.a.test.\t3600\tIN\tCNAME\t_dmarc._spf.a.test.",
        "sel1._domainkey.a.test.\t3600\tIN\tCNAME\tsel1._domainkey._spf.a.test.",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("whole.test"), "only the asked domain: {out}");

    let (_, all, _) = spfd(&["records", "--config", setup.config_path().to_str().unwrap()]);
    assert!(all.contains("whole.test.\t3600\tIN\tNS\tns1.spfd.test."), "{all}");
    assert!(
        !all.contains("_dmarc.whole.test.\t3600\tIN\tCNAME"),
        "no CNAME when spfd serves the domain: {all}"
    );
}

#[tokio::test]
async fn serve_answers_reloads_on_sighup_and_stops_on_sigterm() {
    let setup = Setup::new(&[(
        "a.toml",
        "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
    )]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["serve", "--config", setup.config_path().to_str().unwrap()])
        .env("SPFD_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("addrs=[").nth(1) {
                let _ = tx.send(
                    rest.split(']')
                        .next()
                        .unwrap()
                        .parse::<std::net::SocketAddr>()
                        .unwrap(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("spfd did not say where it serves");
    let ask = |name: &str| {
        let q = query(name, RecordType::TXT);
        async move { hickory_proto::op::Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await).unwrap() }
    };
    assert_eq!(txt_joined(&ask("_spf.a.test.").await), ["v=spf1 -all"]);

    std::fs::write(
        setup.policy_path("a.toml"),
        "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 mx -all\"\nmode = \"passthrough\"\n",
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut got = Vec::new();
    for _ in 0..200 {
        got = txt_joined(&ask("_spf.a.test.").await);
        if got == ["v=spf1 mx -all"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(got, ["v=spf1 mx -all"]);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
