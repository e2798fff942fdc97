//! This replica's metrics: one set of counters, gauges and histograms, read two ways — as
//! Prometheus text at `GET /metrics` of `--http-listen` ([`Metrics::render`]) and as JSON in
//! `$SRV.STATS` (`nats micro stats whistle-dispatch`, [`Metrics::snapshot`]).
//!
//! The hot paths only add to atomics or to a histogram under a short lock, once per batch or
//! command; the depths (intake backlog, outbox, due timers) are sampled on a timer by
//! [`sample`], never per report.

use std::{
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::{text::encode, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
        MetricType, TypedMetric,
    },
    registry::Registry,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use whistle_proto::v1::CommandErrorCode;

use crate::Shared;

/// A command's labels: its verb and its outcome (`ok` or the error code), both from fixed sets.
type CommandLabels = [(&'static str, &'static str); 2];
type OutcomeLabel = [(&'static str, &'static str); 1];

/// Every metric of the replica, registered under the prefix `whistle_dispatch`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reports_acked: Counter,
    incidents_opened: Counter,
    reports_rejected: Counter,
    batch_seconds: Timings,
    events_published: Counter,
    intake_lease_held: Gauge,
    intake_epoch: Gauge,
    intake_lanes: Gauge,
    takeovers: Counter,
    notifications: Family<OutcomeLabel, Counter>,
    commands: Family<CommandLabels, Histogram>,
    timers_fired: Counter,
    timer_lateness: Histogram,
    intake_backlog: Gauge,
    intake_unacked: Gauge,
    outbox_depth: Gauge,
    outbox_oldest_seconds: Gauge<f64, AtomicU64>,
    timers_due: Gauge,
    timers_due_oldest_seconds: Gauge<f64, AtomicU64>,
    samples_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("whistle_dispatch");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let seconds_gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::<f64, AtomicU64>::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let reports_acked = counter(
            &mut registry,
            "reports_acked",
            "Reports acked to JetStream after their outcome was committed (an incident, an attachment or a rejection)",
        );
        let incidents_opened = counter(
            &mut registry,
            "incidents_opened",
            "Incidents opened from reports",
        );
        let reports_rejected = counter(
            &mut registry,
            "reports_rejected",
            "Reports rejected (stored in WHISTLE_REJECTED with their reason)",
        );
        let batch_seconds = Timings::default();
        registry.register(
            "intake_batch_duration_seconds",
            "Time to record one intake batch, from its arrival to its last ack: every report behind a slow batch waits as long",
            batch_seconds.clone(),
        );
        let events_published = counter(
            &mut registry,
            "events_published",
            "Events this replica relayed from the outbox to WHISTLE_EVENTS",
        );
        let intake_lease_held = gauge(
            &mut registry,
            "intake_lease_held",
            "1 while this replica holds the intake lease and records reports, 0 while it stands by",
        );
        let intake_epoch = gauge(
            &mut registry,
            "intake_lease_epoch",
            "Epoch of the intake lease this replica holds, 0 while it stands by",
        );
        let intake_lanes = gauge(
            &mut registry,
            "intake_lanes",
            "Intake lanes (connections recording a batch's shares at once) this replica runs: --intake-lanes while it holds the lease, else 0",
        );
        let takeovers = counter(
            &mut registry,
            "intake_takeovers",
            "Times this replica took the intake lease",
        );
        let notifications = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "notifications",
            "Outbound notifications by outcome: delivered, or failed after their last attempt",
            notifications.clone(),
        );
        // 0.5 ms to ~8 s: from a refused command to one waiting on a busy database.
        let commands = Family::<CommandLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        registry.register(
            "command_duration_seconds",
            "Time from a command's arrival to its reply, by verb and outcome (ok or the error code)",
            commands.clone(),
        );
        let timers_fired = counter(
            &mut registry,
            "timers_fired",
            "Deadline timers this replica fired",
        );
        // 50 ms to ~14 min: a timer fired on its round, to one that waited out an outage.
        let timer_lateness = Histogram::new(exponential_buckets(0.05, 2.0, 15));
        registry.register(
            "timer_lateness_seconds",
            "How long after its deadline each fired timer fired",
            timer_lateness.clone(),
        );
        let intake_backlog = gauge(
            &mut registry,
            "intake_backlog_reports",
            "Reports in WHISTLE_REPORTS not yet delivered to any replica (the intake consumer's pending count, sampled)",
        );
        let intake_unacked = gauge(
            &mut registry,
            "intake_unacked_reports",
            "Reports delivered to a replica and not yet acked (sampled)",
        );
        let outbox_depth = gauge(
            &mut registry,
            "outbox_depth_events",
            "Committed events not yet relayed to WHISTLE_EVENTS (sampled)",
        );
        let outbox_oldest_seconds = seconds_gauge(
            &mut registry,
            "outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the outbox, 0 when it is empty (sampled)",
        );
        let timers_due = gauge(
            &mut registry,
            "timers_due",
            "Timers past their deadline and not yet fired (sampled)",
        );
        let timers_due_oldest_seconds = seconds_gauge(
            &mut registry,
            "timers_due_oldest_seconds",
            "How long the oldest due timer has been past its deadline, 0 when none is (sampled)",
        );
        let samples_failed = counter(
            &mut registry,
            "samples_failed",
            "Samplings of the depths that failed (NATS or PostgreSQL unreachable): the depth gauges keep their last values",
        );
        Metrics {
            registry,
            reports_acked,
            incidents_opened,
            reports_rejected,
            batch_seconds,
            events_published,
            intake_lease_held,
            intake_epoch,
            intake_lanes,
            takeovers,
            notifications,
            commands,
            timers_fired,
            timer_lateness,
            intake_backlog,
            intake_unacked,
            outbox_depth,
            outbox_oldest_seconds,
            timers_due,
            timers_due_oldest_seconds,
            samples_failed,
        }
    }
}

/// Saturates instead of wrapping: a gauge shows at most `i64::MAX`.
fn gauge_value<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    pub(crate) fn record_batch(
        &self,
        acked: usize,
        incidents: usize,
        rejected: usize,
        took: Duration,
    ) {
        self.batch_seconds.record(took);
        self.reports_acked.inc_by(acked as u64);
        self.incidents_opened.inc_by(incidents as u64);
        self.reports_rejected.inc_by(rejected as u64);
    }

    pub(crate) fn record_published(&self, events: usize) {
        self.events_published.inc_by(events as u64);
    }

    pub(crate) fn record_notification(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// This replica took the intake lease at `epoch` and records on `lanes` connections.
    pub(crate) fn intake_taken(&self, epoch: i64, lanes: usize) {
        self.takeovers.inc();
        self.intake_epoch.set(epoch.max(0));
        self.intake_lane_count(lanes);
        self.intake_lease_held.set(1);
    }

    fn intake_lane_count(&self, lanes: usize) {
        self.intake_lanes.set(gauge_value(lanes));
    }

    /// This replica lost or gave up the intake lease.
    pub(crate) fn intake_released(&self) {
        self.intake_lease_held.set(0);
        self.intake_epoch.set(0);
        self.intake_lane_count(0);
    }

    pub(crate) fn record_command(&self, verb: &'static str, outcome: &'static str, took: Duration) {
        self.commands
            .get_or_create(&[("verb", verb), ("outcome", outcome)])
            .observe(took.as_secs_f64());
    }

    /// Timers fired in one batch, each this late.
    pub(crate) fn record_timers_fired(&self, lateness: impl IntoIterator<Item = Duration>) {
        for late in lateness {
            self.timers_fired.inc();
            self.timer_lateness.observe(late.as_secs_f64());
        }
    }

    fn record_depths(&self, depths: &Depths) {
        if let Some((pending, unacked)) = depths.intake {
            self.intake_backlog.set(gauge_value(pending));
            self.intake_unacked.set(gauge_value(unacked));
        }
        if let Some(outbox) = &depths.outbox {
            self.outbox_depth.set(outbox.events);
            self.outbox_oldest_seconds.set(outbox.oldest_age_seconds);
        }
        if let Some(timers) = &depths.timers {
            self.timers_due.set(timers.due);
            self.timers_due_oldest_seconds
                .set(timers.oldest_late_seconds);
        }
        if depths.failed {
            self.samples_failed.inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The same counters and gauges as JSON, for `$SRV.STATS`.
    pub fn snapshot(&self) -> serde_json::Value {
        let notifications = |outcome| {
            self.notifications
                .get_or_create(&[("outcome", outcome)])
                .get()
        };
        let (batches, batch_ms) = self.batch_seconds.summary_ms();
        serde_json::json!({
            "reports_acked": self.reports_acked.get(),
            "incidents_opened": self.incidents_opened.get(),
            "reports_rejected": self.reports_rejected.get(),
            "batches": batches,
            "batch_ms": batch_ms,
            "events_published": self.events_published.get(),
            "intake_lease_held": self.intake_lease_held.get() == 1,
            "intake_epoch": self.intake_epoch.get(),
            "intake_lanes": self.intake_lanes.get(),
            "intake_takeovers": self.takeovers.get(),
            "intake_backlog_reports": self.intake_backlog.get(),
            "intake_unacked_reports": self.intake_unacked.get(),
            "outbox_depth_events": self.outbox_depth.get(),
            "outbox_oldest_age_seconds": self.outbox_oldest_seconds.get(),
            "timers_fired": self.timers_fired.get(),
            "timers_due": self.timers_due.get(),
            "timers_due_oldest_seconds": self.timers_due_oldest_seconds.get(),
            "notifications_delivered": notifications("delivered"),
            "notifications_failed": notifications("failed"),
        })
    }
}

/// A command's outcome as a label value: `ok` or its error code as the docs name it.
pub(crate) fn outcome_label(reply: &whistle_proto::v1::CommandReply) -> &'static str {
    use whistle_proto::v1::command_reply::Outcome;
    let Some(Outcome::Error(error)) = &reply.outcome else {
        return "ok";
    };
    match CommandErrorCode::try_from(error.code) {
        Ok(CommandErrorCode::NotFound) => "not_found",
        Ok(CommandErrorCode::Forbidden) => "forbidden",
        Ok(CommandErrorCode::InvalidTransition) => "invalid_transition",
        Ok(CommandErrorCode::Stale) => "stale",
        Ok(CommandErrorCode::InvalidArgument) => "invalid_argument",
        Ok(CommandErrorCode::Unavailable) => "unavailable",
        Ok(CommandErrorCode::RateLimited) => "rate_limited",
        Ok(CommandErrorCode::PhotoRequired) => "photo_required",
        Ok(CommandErrorCode::AlreadyExists) => "already_exists",
        Ok(CommandErrorCode::SuccessorNeeded) => "successor_needed",
        Ok(CommandErrorCode::SuccessorUnfit) => "successor_unfit",
        Ok(CommandErrorCode::Unspecified) | Err(_) => "unspecified",
    }
}

/// A histogram of durations kept at three significant digits: `$SRV.STATS` reads its quantiles
/// (`whistle load` prints them), `/metrics` its counts at fixed bucket bounds.
#[derive(Debug, Clone)]
struct Timings {
    inner: Arc<Mutex<TimingsInner>>,
}

#[derive(Debug)]
struct TimingsInner {
    micros: hdrhistogram::Histogram<u64>,
    sum_micros: u64,
}

/// Bucket bounds in seconds for `/metrics`: 1 ms to ~33 s.
fn timing_bounds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            inner: Arc::new(Mutex::new(TimingsInner {
                // 1 µs to an hour.
                micros: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("valid bounds"),
                sum_micros: 0,
            })),
        }
    }
}

impl Timings {
    fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut inner) = self.inner.lock() {
            inner.micros.saturating_record(micros);
            inner.sum_micros = inner.sum_micros.saturating_add(micros);
        }
    }

    /// How many were recorded, and their p50, p99 and max in milliseconds (null before the first).
    fn summary_ms(&self) -> (u64, serde_json::Value) {
        let Ok(inner) = self.inner.lock() else {
            return (0, serde_json::Value::Null);
        };
        let h = &inner.micros;
        let ms = |us: u64| us as f64 / 1000.0;
        (
            h.len(),
            serde_json::json!({
                "p50": ms(h.value_at_quantile(0.5)),
                "p99": ms(h.value_at_quantile(0.99)),
                "max": ms(h.max()),
            }),
        )
    }
}

impl TypedMetric for Timings {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Timings {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let Ok(inner) = self.inner.lock() else {
                return Ok(());
            };
            let h = &inner.micros;
            // Per bucket, not cumulative: the encoder adds them up.
            let mut below = 0;
            let mut buckets: Vec<(f64, u64)> = timing_bounds()
                .map(|bound| {
                    let upto = h.count_between(0, (bound * 1e6) as u64);
                    let in_bucket = upto.saturating_sub(below);
                    below = upto;
                    (bound, in_bucket)
                })
                .collect();
            buckets.push((f64::MAX, h.len().saturating_sub(below)));
            (inner.sum_micros as f64 / 1e6, h.len(), buckets)
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One sampling of the depths; `None` where that part could not be read.
#[derive(Debug, Default)]
struct Depths {
    intake: Option<(u64, usize)>,
    outbox: Option<whistle_store::outbox::Depth>,
    timers: Option<whistle_store::incidents::DueDepth>,
    failed: bool,
}

/// Samples the intake backlog, the outbox and the due timers every `every` until `shutdown`: a
/// consumer info request and two `count(*)` queries (outbox, due timers), whatever the report rate.
pub(crate) async fn sample(shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    let reports = shared
        .jetstream
        .get_stream_no_info(whistle_wire::names::REPORTS_STREAM)
        .await;
    loop {
        let mut depths = Depths::default();
        match &reports {
            Ok(stream) => match stream.consumer_info(&shared.options.consumer).await {
                Ok(info) => depths.intake = Some((info.num_pending, info.num_ack_pending)),
                Err(e) => {
                    debug!(error = %e, "sampling the intake consumer failed");
                    depths.failed = true;
                }
            },
            Err(e) => {
                debug!(error = %e, "the reports stream is not open for sampling");
                depths.failed = true;
            }
        }
        match shared.pool.acquire().await {
            Ok(mut conn) => {
                let now = shared.clock.now();
                match whistle_store::outbox::depth(&mut conn).await {
                    Ok(outbox) => depths.outbox = Some(outbox),
                    Err(e) => {
                        debug!(error = %e, "sampling the outbox failed");
                        depths.failed = true;
                    }
                }
                match whistle_store::incidents::due_depth(&mut conn, now).await {
                    Ok(timers) => depths.timers = Some(timers),
                    Err(e) => {
                        debug!(error = %e, "sampling the due timers failed");
                        depths.failed = true;
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "no connection to sample the outbox and timers");
                depths.failed = true;
            }
        }
        shared.metrics.record_depths(&depths);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    if reports.is_err() {
        warn!("the intake backlog was never sampled: the reports stream could not be opened");
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

    /// The value of a sample line `name{labels} value` of the exposition.
    fn sample_value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn prometheus_and_the_stats_read_the_same_counters() {
        let metrics = Metrics::default();
        metrics.record_batch(7, 2, 1, Duration::from_millis(3));
        metrics.record_batch(5, 0, 0, Duration::from_millis(40));
        metrics.record_published(4);
        metrics.record_notification(true);
        metrics.intake_taken(3, 2);
        let text = metrics.render();
        let stats = metrics.snapshot();
        assert_eq!(
            sample_value(&text, "whistle_dispatch_reports_acked_total"),
            12.0
        );
        assert_eq!(stats["reports_acked"], 12);
        assert_eq!(
            sample_value(&text, "whistle_dispatch_incidents_opened_total"),
            2.0
        );
        assert_eq!(
            sample_value(&text, "whistle_dispatch_events_published_total"),
            4.0
        );
        assert_eq!(
            sample_value(
                &text,
                "whistle_dispatch_notifications_total{outcome=\"delivered\"}"
            ),
            1.0
        );
        assert_eq!(stats["notifications_delivered"], 1);
        assert_eq!(
            sample_value(&text, "whistle_dispatch_intake_lease_held"),
            1.0
        );
        assert_eq!(
            sample_value(&text, "whistle_dispatch_intake_lease_epoch"),
            3.0
        );
        assert_eq!(stats["intake_epoch"], 3);
        assert_eq!(sample_value(&text, "whistle_dispatch_intake_lanes"), 2.0);

        // The batch histogram: cumulative buckets, the 3 ms batch under 4 ms, both under 64 ms.
        let batch = "whistle_dispatch_intake_batch_duration_seconds";
        assert_eq!(sample_value(&text, &format!("{batch}_count")), 2.0);
        assert_eq!(stats["batches"], 2);
        assert_eq!(
            sample_value(&text, &format!("{batch}_bucket{{le=\"0.002\"}}")),
            0.0
        );
        assert_eq!(
            sample_value(&text, &format!("{batch}_bucket{{le=\"0.004\"}}")),
            1.0
        );
        assert_eq!(
            sample_value(&text, &format!("{batch}_bucket{{le=\"0.064\"}}")),
            2.0
        );
        assert_eq!(
            sample_value(&text, &format!("{batch}_bucket{{le=\"+Inf\"}}")),
            2.0
        );
        let sum = sample_value(&text, &format!("{batch}_sum"));
        assert!((0.042..0.044).contains(&sum), "{sum}");

        metrics.intake_released();
        let text = metrics.render();
        assert_eq!(
            sample_value(&text, "whistle_dispatch_intake_lease_held"),
            0.0
        );
        assert_eq!(sample_value(&text, "whistle_dispatch_intake_lanes"), 0.0);
        assert_eq!(
            sample_value(&text, "whistle_dispatch_intake_takeovers_total"),
            1.0
        );
    }

    #[test]
    fn commands_are_timed_by_verb_and_outcome() {
        use whistle_proto::v1::{command_reply::Outcome, CommandError, CommandReply};
        let metrics = Metrics::default();
        let refused = CommandReply {
            outcome: Some(Outcome::Error(CommandError {
                code: CommandErrorCode::NotFound as i32,
                ..Default::default()
            })),
        };
        assert_eq!(outcome_label(&refused), "not_found");
        assert_eq!(outcome_label(&CommandReply { outcome: None }), "ok");
        metrics.record_command("accept", outcome_label(&refused), Duration::from_millis(1));
        metrics.record_timers_fired([Duration::from_millis(10), Duration::from_secs(3)]);
        let text = metrics.render();
        assert_eq!(
            sample_value(
                &text,
                "whistle_dispatch_command_duration_seconds_count{verb=\"accept\",outcome=\"not_found\"}"
            ),
            1.0
        );
        assert_eq!(
            sample_value(&text, "whistle_dispatch_timers_fired_total"),
            2.0
        );
        assert_eq!(
            sample_value(
                &text,
                "whistle_dispatch_timer_lateness_seconds_bucket{le=\"0.05\"}"
            ),
            1.0
        );
    }
}
