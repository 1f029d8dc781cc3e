//! The binary's log lines: text by default, one JSON object per line with
//! `SPFD_LOG_FORMAT=json`, and an unknown format refused at startup.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Setup;

const POLICY: (&str, &str) = (
    "a.toml",
    "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
);

/// Runs `spfd serve` until it logs that it is serving, stops it with SIGTERM and
/// returns every line it wrote to stderr.
fn serve_and_stop(format: Option<&str>) -> Vec<String> {
    let setup = Setup::new(&[POLICY]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_spfd"));
    command
        .args(["serve", "--config", setup.config_path().to_str().unwrap()])
        .env("SPFD_LOG", "info")
        .env_remove("SPFD_LOG_FORMAT")
        .stderr(Stdio::piped());
    if let Some(format) = format {
        command.env("SPFD_LOG_FORMAT", format);
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("serving") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let started = rx.recv_timeout(Duration::from_secs(30));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert!(started.is_ok(), "spfd did not start serving: {lines:#?}");
    assert!(exit.success(), "{exit:?}: {lines:#?}");
    lines
}

#[test]
fn json_format_writes_one_object_per_line() {
    let lines = serve_and_stop(Some("json"));
    assert!(lines.len() >= 3, "{lines:#?}");
    let mut messages = Vec::new();
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["target"].is_string(), "{line}");
        let message = value["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        assert!(!line.contains('\u{1b}'), "colour codes in JSON: {line}");
        messages.push((value["level"].as_str().unwrap().to_string(), message.to_string()));
    }
    let serving = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["fields"]["message"] == "serving")
        .expect("a serving line");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["fields"]["zones"], 1, "{serving}");
    assert!(messages.iter().any(|(_, m)| m == "shutting down"), "{messages:?}");
}

#[test]
fn text_is_the_default_format() {
    for format in [None, Some("text")] {
        let lines = serve_and_stop(format);
        let serving = lines
            .iter()
            .find(|l| l.contains("serving"))
            .expect("a serving line");
        assert!(
            serde_json::from_str::<serde_json::Value>(serving).is_err(),
            "{format:?}: {serving}"
        );
        assert!(serving.contains(" INFO "), "{format:?}: {serving}");
        assert!(serving.contains("zones=1"), "{format:?}: {serving}");
    }
}

#[test]
fn an_unknown_format_is_refused_at_startup_naming_the_accepted_ones() {
    let setup = Setup::new(&[POLICY]);
    let out = Command::new(env!("CARGO_BIN_EXE_spfd"))
        .args(["serve", "--config", setup.config_path().to_str().unwrap()])
        .env("SPFD_LOG_FORMAT", "logfmt")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "spfd: SPFD_LOG_FORMAT=\"logfmt\" is not a log format: write `text` (the default) or `json`\n"
    );
}
