//! This replica's counters, reported in `$SRV.STATS` (e.g. `nats micro stats whistle-dispatch`).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use hdrhistogram::Histogram;

/// Counters since start.
#[derive(Debug)]
pub struct Metrics {
    pub acked: AtomicU64,
    pub incidents: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    pub events_published: AtomicU64,
    /// The epoch of the intake lease this replica holds, 0 while it waits as a standby.
    pub intake_epoch: AtomicU64,
    /// Times this replica took the intake lease over.
    pub takeovers: AtomicU64,
    /// Outbound notifications delivered, and given up after their last attempt.
    pub notifications_delivered: AtomicU64,
    pub notifications_failed: AtomicU64,
    /// How long each intake batch took, in microseconds: a stalled batch stalls every report
    /// behind it, so its longest is a figure of its own.
    batch_micros: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            acked: AtomicU64::default(),
            incidents: AtomicU64::default(),
            rejected: AtomicU64::default(),
            batches: AtomicU64::default(),
            events_published: AtomicU64::default(),
            intake_epoch: AtomicU64::default(),
            takeovers: AtomicU64::default(),
            notifications_delivered: AtomicU64::default(),
            notifications_failed: AtomicU64::default(),
            batch_micros: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
        }
    }
}

impl Metrics {
    pub(crate) fn record_batch(
        &self,
        acked: usize,
        incidents: usize,
        rejected: usize,
        took: Duration,
    ) {
        if let Ok(mut h) = self.batch_micros.lock() {
            h.saturating_record(took.as_micros().max(1) as u64);
        }
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

    pub(crate) fn record_notification(&self, delivered: bool) {
        let counter = if delivered {
            &self.notifications_delivered
        } else {
            &self.notifications_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// This replica's intake, relay and notification counters.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let batch_ms = self.batch_micros.lock().ok().map(|h| {
            let ms = |us: u64| us as f64 / 1000.0;
            serde_json::json!({
                "p50": ms(h.value_at_quantile(0.5)),
                "p99": ms(h.value_at_quantile(0.99)),
                "max": ms(h.max()),
            })
        });
        serde_json::json!({
            "reports_acked": get(&self.acked),
            "incidents_opened": get(&self.incidents),
            "reports_rejected": get(&self.rejected),
            "batches": get(&self.batches),
            "events_published": get(&self.events_published),
            "batch_ms": batch_ms,
            "intake_epoch": get(&self.intake_epoch),
            "intake_takeovers": get(&self.takeovers),
            "notifications_delivered": get(&self.notifications_delivered),
            "notifications_failed": get(&self.notifications_failed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_carry_the_batch_times() {
        let metrics = Metrics::default();
        for ms in [2, 3, 250] {
            metrics.record_batch(10, 1, 0, Duration::from_millis(ms));
        }
        let stats = metrics.snapshot();
        assert_eq!(stats["batches"], 3);
        assert_eq!(stats["reports_acked"], 30);
        let max = stats["batch_ms"]["max"].as_f64().unwrap();
        assert!((249.0..=251.0).contains(&max), "{max}");
        assert!(stats["batch_ms"]["p50"].as_f64().unwrap() < 4.0);
    }
}
