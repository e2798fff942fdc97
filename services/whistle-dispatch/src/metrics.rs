//! This replica's counters, reported in `$SRV.STATS` (e.g. `nats micro stats whistle-dispatch`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    pub acked: AtomicU64,
    pub incidents: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    pub events_published: AtomicU64,
}

impl Metrics {
    pub(crate) fn record_batch(&self, acked: usize, incidents: usize, rejected: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.acked.fetch_add(acked as u64, Ordering::Relaxed);
        self.incidents
            .fetch_add(incidents as u64, Ordering::Relaxed);
        self.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_published(&self, events: usize) {
        self.events_published
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// This replica's intake and relay counters.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "reports_acked": get(&self.acked),
            "incidents_opened": get(&self.incidents),
            "reports_rejected": get(&self.rejected),
            "batches": get(&self.batches),
            "events_published": get(&self.events_published),
        })
    }
}
