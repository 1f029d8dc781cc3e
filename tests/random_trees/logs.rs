//! What spfd logs as errors while it runs in this test process. Its refresh service
//! says there, and nowhere a test can ask, why it did not publish a domain (the status
//! page is not written yet); a tracing layer keeps spfd's ERROR events by domain.

use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// (domain field, message) of every ERROR event spfd logged, in order. The tests of
/// this binary share it and run at the same time: flatten and macro mode use the same
/// domain names, so a reader asks for a phrase only its own mode logs.
static ERRORS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Starts keeping spfd's ERROR events (once per process). Only those are enabled, so
/// the debug events of spfd and hickory cost what they cost without a subscriber.
pub fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let errors = Keep.with_filter(Targets::new().with_target("spfd", Level::ERROR));
        let subscriber = tracing_subscriber::registry().with(errors);
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

/// The first error message logged for `domain` (with or without its final dot) that
/// contains `phrase`, waiting up to 5 seconds for it; empty if none came.
pub async fn error_for(domain: &str, phrase: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = ERRORS
            .lock()
            .unwrap()
            .iter()
            .find(|(d, m)| d.trim_end_matches('.') == domain && m.contains(phrase))
            .map(|(_, m)| m.clone());
        if let Some(message) = found {
            return message;
        }
        if Instant::now() > deadline {
            return String::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Keep;

impl<S: Subscriber> Layer<S> for Keep {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        ERRORS.lock().unwrap().push((fields.domain, fields.message));
    }
}

#[derive(Default)]
struct Fields {
    domain: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "domain" => self.domain = format!("{value:?}"),
            _ => {}
        }
    }
}
