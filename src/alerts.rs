//! Alerts (`[alerts]`): one JSON event per thing an owner must hear about, sent to a
//! webhook (HTTP POST) and/or given to a command on its standard input. Events are
//! queued without waiting (a full queue drops the event and says so in the log) and
//! delivered by a thread of their own, retried with backoff, so delivery never blocks
//! serving, reloading or flattening.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;
use tracing::{error, warn};

use crate::service::ServiceHandle;

/// Events queued at most before new ones are dropped.
const QUEUE: usize = 1024;
/// Tries per event and destination, the first wait between them doubling each time.
const TRIES: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// One event, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `provider_change`, `expansion_failed`, `stale`, `near_lookup_limit`,
    /// `reload_error`.
    pub event: &'static str,
    /// Unix time.
    pub at: u64,
    /// The mail domain, when the event is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// What happened, in words (the error with its cause, or a summary).
    pub message: String,
    /// Event details: the diff of a provider change, the lookups, the file.
    pub detail: serde_json::Value,
}

/// Where events go: a cheap handle every service keeps; does nothing when alerts are
/// not configured.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    queue: Option<SyncSender<Event>>,
}

impl Alerts {
    /// Queues an event; never waits.
    pub fn send(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => {
                warn!(event = e.event, "the alert queue is full; an alert was dropped")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }
}

/// `[alerts]`: where events are delivered.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    pub webhook: Option<String>,
    pub command: Option<Vec<String>>,
}

/// Starts the delivery thread; the handle queues events for it.
pub fn start(config: &AlertConfig) -> std::io::Result<(Alerts, ServiceHandle)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop_tx, flag) = (tx.clone(), stopping.clone());
    let config = config.clone();
    let handle = ServiceHandle::spawn(
        "alerts",
        move || {
            // Wakes the thread if it waits for an event; it ends once the services
            // that send are stopped, without retrying what fails from then on.
            flag.store(true, Ordering::Relaxed);
            drop(stop_tx);
        },
        move || deliver_all(&rx, &config, &stopping),
    )?;
    Ok((Alerts { queue: Some(tx) }, handle))
}

/// Delivers events until every handle is dropped.
fn deliver_all(rx: &Receiver<Event>, config: &AlertConfig, stopping: &AtomicBool) {
    while let Ok(event) = rx.recv() {
        let body = serde_json::to_vec(&event).expect("events serialise");
        if let Some(url) = &config.webhook {
            retry("webhook", &event, stopping, || post(url, &body));
        }
        if let Some(command) = &config.command {
            retry("command", &event, stopping, || run(command, &body));
        }
    }
}

fn retry(what: &str, event: &Event, stopping: &AtomicBool, mut attempt: impl FnMut() -> Result<(), String>) {
    let mut wait = FIRST_RETRY;
    for n in 1..=TRIES {
        match attempt() {
            Ok(()) => return,
            Err(e) if n == TRIES || stopping.load(Ordering::Relaxed) => {
                error!(
                    event = event.event,
                    "cannot deliver the alert by {what} after {n} tries: {e}"
                );
            }
            Err(e) => {
                warn!(
                    event = event.event,
                    "alert {what} failed ({e}); trying again in {wait:?}"
                );
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
}

fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn run(command: &[String], body: &[u8]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
