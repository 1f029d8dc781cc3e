//! The binary's log lines: text by default, one JSON object per line with
//! `SPFD_LOG_FORMAT=json`, and an unknown format refused at startup; a flood of refused
//! transfers costs a few lines, names from outside cannot start a line of their own;
//! the files the server creates are its owner's only, whatever the umask.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Setup;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

const POLICY: (&str, &str) = (
    "a.toml",
    "domain = \"a.test\"\n[spf]\nrecord = \"v=spf1 -all\"\nmode = \"passthrough\"\n",
);

/// Runs `spfd serve` until it logs that it is serving, stops it with SIGTERM and
/// returns every line it wrote to stderr.
fn serve_and_stop(format: Option<&str>) -> Vec<String> {
    serve_while(&Setup::new(&[POLICY]), format, false, |_| {})
}

/// Runs `spfd serve` on `setup` (with umask 000 when `open_umask`), calls `during` with
/// its DNS address once it serves, then stops it with SIGTERM; every line it wrote to
/// stderr.
fn serve_while(
    setup: &Setup,
    format: Option<&str>,
    open_umask: bool,
    during: impl FnOnce(SocketAddr),
) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spfd"));
    command
        .args(["serve", "--config", setup.config_path().to_str().unwrap()])
        .env("SPFD_LOG", "info")
        .env_remove("SPFD_LOG_FORMAT")
        .stderr(Stdio::piped());
    if let Some(format) = format {
        command.env("SPFD_LOG_FORMAT", format);
    }
    if open_umask {
        // SAFETY: umask is async-signal-safe and touches only the child's own mask.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("serving") {
                let _ = tx.send(line.clone());
            }
            lines.push(line);
        }
        lines
    });
    let started = rx.recv_timeout(Duration::from_secs(30));
    if let Ok(line) = &started
        && let Some(addr) = served_addr(line)
    {
        during(addr);
    }
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

/// The DNS address in the `serving addrs=[...]` line (text or JSON).
fn served_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("addrs")?.1;
    let rest = rest.split_once('[')?.1;
    rest.split_once(']')?.0.trim_matches('"').parse().ok()
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

/// An AXFR request for `name`, framed for TCP.
fn axfr_request(name: &Name, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name.clone(), RecordType::AXFR));
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Sends each request on one connection and reads each answer.
fn exchange(addr: SocketAddr, requests: impl Iterator<Item = Vec<u8>>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for request in requests {
        stream.write_all(&request).unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).unwrap();
    }
}

const FLOOD: u16 = 2000;

#[test]
fn a_flood_of_refused_transfers_writes_a_bounded_number_of_lines() {
    let setup = Setup::new(&[POLICY]);
    let config = common::config_text() + "[transfer]\nallow = [\"192.0.2.1\"]\n";
    std::fs::write(setup.config_path(), config).unwrap();
    // A zone name whose label holds a newline and what would pass for a log line.
    let forged = Name::from_labels([&b"x\nERROR spfd: forged"[..], b"test"]).unwrap();
    let zone = Name::from_ascii("a.test.").unwrap();
    let lines = serve_while(&setup, None, false, |addr| {
        let requests = (0..FLOOD).map(|i| axfr_request(if i < 2 { &forged } else { &zone }, i));
        exchange(addr, requests);
    });
    let refusals: Vec<_> = lines.iter().filter(|l| l.contains("transfer refused")).collect();
    // A few per 10 s interval, and the flood takes one or two intervals.
    let bound = 2 * spfd::logging::LogLimit::BURST as usize;
    assert!(
        !refusals.is_empty() && refusals.len() <= bound,
        "{} refusal lines for {FLOOD} refusals: {refusals:#?}",
        refusals.len()
    );
    assert!(
        refusals[0].contains("not a zone spfd serves") && refusals[0].contains("x\\"),
        "{}",
        refusals[0]
    );
    assert!(
        lines.iter().all(|l| !l.starts_with("ERROR spfd: forged")),
        "{lines:#?}"
    );
}

#[test]
fn a_file_name_with_a_newline_cannot_start_a_log_line() {
    let setup = Setup::new(&[POLICY, ("bad\nERROR spfd: forged.toml", "domain = \n")]);
    let lines = serve_while(&setup, None, false, |_| {});
    let named: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("bad\\nERROR spfd: forged.toml"))
        .collect();
    assert!(!named.is_empty(), "the broken file is reported: {lines:#?}");
    assert!(
        lines.iter().all(|l| !l.starts_with("ERROR spfd: forged")),
        "{lines:#?}"
    );
}

#[test]
fn files_the_server_creates_are_its_owners_only_whatever_the_umask() {
    let setup = Setup::new(&[POLICY]);
    let reports = setup.dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    // Imported (as an error) and set aside in reports/failed/, which spfd creates.
    std::fs::write(reports.join("junk.xml"), "not a report").unwrap();
    let config = common::config_text()
        + "[dnssec]\nenabled = true\n[reports]\nsources = [\"dir:reports\"]\ninterval = \"1h\"\n";
    std::fs::write(setup.config_path(), config).unwrap();
    let state = setup.dir.path().join("state");
    serve_while(&setup, None, true, |_| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = [
            state.join("reports.sqlite"),
            state.join("keys"),
            reports.join("failed/junk.xml"),
        ];
        while !done.iter().all(|p| p.exists()) {
            assert!(Instant::now() < deadline, "no report store or keys in {state:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut seen = Vec::new();
    walk(&state, &mut seen);
    assert!(
        seen.iter().any(|(p, _)| p.ends_with("reports.sqlite")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(p, _)| p.contains("keys/")), "{seen:?}");
    // Of the report directory, spfd made only failed/ (the reports keep their modes).
    let failed = reports.join("failed");
    let mode = std::fs::metadata(&failed).unwrap().permissions().mode() & 0o777;
    seen.push((format!("{}/", failed.display()), mode));
    let open: Vec<_> = seen.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "open to others: {open:?} (of {seen:?})");
}

/// Every file and directory under `dir` (and `dir`), with its mode.
fn walk(dir: &Path, seen: &mut Vec<(String, u32)>) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    seen.push((format!("{}/", dir.display()), mode(dir)));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, seen);
        } else {
            seen.push((path.display().to_string(), mode(&path)));
        }
    }
}
