//! Background services (pingora's background service is the model): each runs on a
//! named thread of its own, says when it is ready, stops when told, and is joined at
//! shutdown, so nothing it does (writing state, swapping a snapshot) can happen after
//! the server has stopped.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

/// A service's "ready after its first success" signal, written by the service.
#[derive(Debug)]
pub struct Ready(watch::Sender<bool>);

impl Ready {
    pub fn new() -> Self {
        Ready(watch::Sender::new(false))
    }

    /// Marks the service ready (idempotent).
    pub fn set(&self) {
        self.0.send_if_modified(|ready| !std::mem::replace(ready, true));
    }

    pub fn subscribe(&self) -> ReadyWatch {
        ReadyWatch(self.0.subscribe())
    }
}

impl Default for Ready {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads a service's ready signal.
#[derive(Debug, Clone)]
pub struct ReadyWatch(watch::Receiver<bool>);

impl ReadyWatch {
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the service is ready; false if it stopped first.
    pub async fn wait(&mut self) -> bool {
        self.0.wait_for(|ready| *ready).await.is_ok()
    }
}

/// A running service: its thread and how to tell it to stop.
pub struct ServiceHandle {
    name: &'static str,
    stop: Option<Box<dyn FnOnce() + Send + Sync>>,
    thread: Option<JoinHandle<()>>,
}

impl ServiceHandle {
    /// Runs `body` on a thread named `spfd-<name>`; `stop` tells it to end. A panic
    /// that escapes `body` is logged (the services catch their own per-step panics;
    /// this is the last net), never a silent stop.
    pub fn spawn(
        name: &'static str,
        stop: impl FnOnce() + Send + Sync + 'static,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<ServiceHandle> {
        let thread = std::thread::Builder::new()
            .name(format!("spfd-{name}"))
            .spawn(move || {
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                    let why = crate::os::panic_message(&*panic);
                    error!(service = name, "the service stopped on an internal error: {why}");
                }
            })?;
        Ok(ServiceHandle {
            name,
            stop: Some(Box::new(stop)),
            thread: Some(thread),
        })
    }

    /// Tells the service to stop and waits for its thread to end.
    pub fn stop_and_join(mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let started = std::time::Instant::now();
            let _ = thread.join();
            if started.elapsed() > Duration::from_secs(1) {
                info!(
                    service = self.name,
                    ms = started.elapsed().as_millis() as u64,
                    "service stopped"
                );
            }
        }
    }
}
