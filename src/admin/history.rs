//! The last hour of DNS responses per second by rcode, for the status page's chart:
//! sampled every [`STEP`] from the query counters (a task of the admin server's; the
//! query path is not touched).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::dns::stats::QueryCounts;

pub const STEP: Duration = Duration::from_secs(10);
const KEPT: usize = 360;

/// Responses per second by rcode, one sample per [`STEP`], oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<BTreeMap<String, f64>>,
    last: Option<BTreeMap<String, u64>>,
}

impl History {
    /// Records the counts at the end of one step.
    pub fn record(&mut self, counts: &QueryCounts, step: Duration) {
        let now: BTreeMap<String, u64> = counts.responses.iter().cloned().collect();
        if let Some(last) = &self.last {
            let rates = now
                .iter()
                .map(|(rcode, n)| {
                    let before = last.get(rcode).copied().unwrap_or(0);
                    (
                        rcode.clone(),
                        n.saturating_sub(before) as f64 / step.as_secs_f64(),
                    )
                })
                .collect();
            self.samples.push_back(rates);
            if self.samples.len() > KEPT {
                self.samples.pop_front();
            }
        }
        self.last = Some(now);
    }

    pub fn samples(&self) -> impl Iterator<Item = &BTreeMap<String, f64>> {
        self.samples.iter()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Samples `counts` every [`STEP`] into `history` until `stop`.
pub async fn sample(
    history: Arc<Mutex<History>>,
    counts: Arc<dyn Fn() -> QueryCounts + Send + Sync>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(STEP);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = counts();
        history.lock().expect("history lock").record(&now, STEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(noerror: u64, nxdomain: u64) -> QueryCounts {
        QueryCounts {
            requests: Vec::new(),
            responses: vec![("NOERROR".into(), noerror), ("NXDOMAIN".into(), nxdomain)],
        }
    }

    #[test]
    fn rates_are_differences_per_second_and_an_hour_is_kept() {
        let mut h = History::default();
        h.record(&counts(0, 0), STEP);
        h.record(&counts(100, 10), STEP);
        let first = h.samples().next().unwrap().clone();
        assert_eq!(first["NOERROR"], 10.0);
        assert_eq!(first["NXDOMAIN"], 1.0);
        for i in 0..400 {
            h.record(&counts(100 + i, 10), STEP);
        }
        assert_eq!(h.len(), KEPT);
    }
}
