//! Prometheus metrics, served as text at `GET /metrics` on the gRPC listener.
//!
//! Every HTTP request through the server (gRPC, gRPC-web, `/metrics` itself) is counted by path
//! and gRPC status by [`MetricsLayer`]; the event feed and the watch streams report their own.

use std::{
    sync::{atomic::AtomicU64, Arc},
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<Labels, Counter>,
    seconds: Family<Labels, Histogram>,
    watch_streams: Gauge,
    watch_lagged: Counter,
    watch_gaps: Counter,
    feed_sequence: Gauge,
    aggregate_incidents: Family<Labels, Gauge>,
    aggregate_months: Gauge,
    aggregate_late: Gauge,
    reads: Family<Labels, Counter>,
    replica_fallbacks: Counter,
    replica_usable: Gauge,
    replica_paused: Gauge,
    replica_lag_seconds: Gauge<f64, AtomicU64>,
    replica_lag_bytes: Gauge,
    replica_marks: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("whistle_query");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests by path and gRPC status code (0 = OK)",
            requests.clone(),
        );
        // 100 µs to ~13 s: from a cached overview to a slow page under load.
        let seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time to the response headers, by path (a stream's first response for WatchEvents)",
            seconds.clone(),
        );
        let watch_streams = Gauge::default();
        registry.register(
            "watch_streams",
            "WatchEvents streams open now",
            watch_streams.clone(),
        );
        let watch_lagged = Counter::default();
        registry.register(
            "watch_catch_ups",
            "Times a WatchEvents client fell behind the live buffer and caught up from JetStream",
            watch_lagged.clone(),
        );
        let watch_gaps = Counter::default();
        registry.register(
            "watch_gaps",
            "Gaps sent to WatchEvents clients for events the stream no longer holds",
            watch_gaps.clone(),
        );
        let feed_sequence = Gauge::default();
        registry.register(
            "event_feed_sequence",
            "Last WHISTLE_EVENTS sequence read by the live feed",
            feed_sequence.clone(),
        );
        let aggregate_incidents = Family::<Labels, Gauge>::default();
        registry.register(
            "aggregate_incidents",
            "Incidents the live aggregates hold, live or settled (terminal, kept a day)",
            aggregate_incidents.clone(),
        );
        let aggregate_months = Gauge::default();
        registry.register(
            "aggregate_scoreboard_months",
            "Months of scoreboard rows the live aggregates hold",
            aggregate_months.clone(),
        );
        let aggregate_late = Gauge::default();
        registry.register(
            "aggregate_late_items",
            "Items the late list of ListOverdue holds: open incidents and their tasks in progress",
            aggregate_late.clone(),
        );
        let reads = Family::<Labels, Counter>::default();
        registry.register(
            "reads",
            "SQL reads that tolerate staleness, by the pool that served them (primary, standby)",
            reads.clone(),
        );
        let replica_fallbacks = Counter::default();
        registry.register(
            "replica_fallbacks",
            "Reads the standby failed (connection, recovery conflict) and the primary answered",
            replica_fallbacks.clone(),
        );
        let replica_usable = Gauge::default();
        registry.register(
            "replica_usable",
            "1 while the standby answers and lags within --max-replica-lag-ms, else 0 (also without a standby)",
            replica_usable.clone(),
        );
        let replica_paused = Gauge::default();
        registry.register(
            "replica_replay_paused",
            "1 while the standby's WAL replay is paused (pg_wal_replay_pause())",
            replica_paused.clone(),
        );
        let replica_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "replica_lag_seconds",
            "How stale the standby may be: the age of the newest primary WAL position it has replayed past (0 when caught up)",
            replica_lag_seconds.clone(),
        );
        let replica_lag_bytes = Gauge::default();
        registry.register(
            "replica_lag_bytes",
            "WAL bytes between the primary's position and the standby's replayed one",
            replica_lag_bytes.clone(),
        );
        let replica_marks = Gauge::default();
        registry.register(
            "replica_read_your_writes_marks",
            "People whose own writes the standby has not replayed yet: their reads go to the primary",
            replica_marks.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                reads,
                replica_fallbacks,
                replica_usable,
                replica_paused,
                replica_lag_seconds,
                replica_lag_bytes,
                replica_marks,
                registry,
                requests,
                seconds,
                watch_streams,
                watch_lagged,
                watch_gaps,
                feed_sequence,
                aggregate_incidents,
                aggregate_months,
                aggregate_late,
            }),
        }
    }
}

/// Decrements the open-streams gauge when a watch ends, however it ends.
pub(crate) struct ActiveStream(Metrics);

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.inner.watch_streams.dec();
    }
}

impl Metrics {
    pub fn watch_started(&self) -> ActiveStream {
        self.inner.watch_streams.inc();
        ActiveStream(self.clone())
    }

    pub fn watch_lagged(&self) {
        self.inner.watch_lagged.inc();
    }

    pub fn watch_gap(&self) {
        self.inner.watch_gaps.inc();
    }

    pub fn feed_sequence(&self, sequence: u64) {
        self.inner
            .feed_sequence
            .set(i64::try_from(sequence).unwrap_or(i64::MAX));
    }

    pub fn replica_read(&self, served: crate::replica::Served) {
        self.inner
            .reads
            .get_or_create(&vec![("pool", served.label().to_owned())])
            .inc();
    }

    pub fn replica_fallback(&self) {
        self.inner.replica_fallbacks.inc();
    }

    pub fn replica_usable(&self, usable: bool) {
        self.inner.replica_usable.set(i64::from(usable));
    }

    pub fn replica_paused(&self, paused: bool) {
        self.inner.replica_paused.set(i64::from(paused));
    }

    pub fn replica_lag_seconds(&self, seconds: f64) {
        self.inner.replica_lag_seconds.set(seconds);
    }

    pub fn replica_lag_bytes(&self, bytes: u64) {
        self.inner
            .replica_lag_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn replica_marks(&self, marks: usize) {
        self.inner
            .replica_marks
            .set(i64::try_from(marks).unwrap_or(i64::MAX));
    }

    fn record(&self, path: &str, code: &str, started: Instant) {
        // Only known paths become label values, so a scanner cannot grow the families.
        let path =
            if path.starts_with("/whistle.v1.") || path.starts_with("/grpc.") || path == "/metrics"
            {
                path.to_owned()
            } else {
                "other".to_owned()
            };
        self.inner
            .requests
            .get_or_create(&vec![("path", path.clone()), ("code", code.to_owned())])
            .inc();
        self.inner
            .seconds
            .get_or_create(&vec![("path", path)])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The text exposition format, with the sizes of the live aggregates as they are now.
    pub fn render(&self, aggregates: &crate::Aggregates) -> String {
        if let Some(sizes) = aggregates.sizes() {
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            for (state, n) in [("live", sizes.live), ("settled", sizes.settled)] {
                self.inner
                    .aggregate_incidents
                    .get_or_create(&vec![("state", state.to_owned())])
                    .set(gauge(n));
            }
            self.inner.aggregate_months.set(gauge(sizes.months));
            self.inner.aggregate_late.set(gauge(sizes.late));
        }
        let mut out = String::new();
        encode(&mut out, &self.inner.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counts and times every request passing through the server.
#[derive(Clone, Debug)]
pub(crate) struct MetricsLayer(pub Metrics);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // An error is answered "trailers-only", with grpc-status in the headers; a success
            // carries it in the trailers, after the body, so its absence here means OK.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| match response.status() {
                    status if status.is_success() => "0".to_owned(),
                    status => format!("http_{}", status.as_u16()),
                });
            metrics.record(&path, &code, started);
            Ok(response)
        })
    }
}
