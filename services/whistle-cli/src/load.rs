//! `whistle load`: an open-loop load generator with realistic Ordos reports.
//!
//! Reports are sent at a fixed rate whatever the platform does (open loop), so a slow platform
//! shows up as latency and backlog rather than as a lower offered rate. Each report's outcome is
//! read back from `whistle.event.>` and its latency (publish → event) recorded in a histogram.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use whistle_cli::{
    ceiling,
    stats::{
        highest_sustained, judge_step, micros_histogram, thousands, FindMaxPlan, Latency,
        RateSteps, StepBounds, Verdict,
    },
};
use whistle_proto::v1::{self, command_center_client::CommandCenterClient};
use whistle_wire::{
    kind,
    names::{ServiceRequest, DISPATCH_CONSUMER, DISPATCH_SERVICE, REPORTS_STREAM},
    subject,
};

use crate::{
    generator::{Feed, Mix},
    load_summary::{print_summary, step_line, BacklogSample, BatchTimes, FindMax, Step, Summary},
    Connection,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Reports per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long to send; 0 sends until Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration, default_value = "60s")]
    duration: Duration,
    /// Share of deliberately invalid reports (unknown grid, bad category, garbage bytes, …).
    #[arg(long, default_value_t = 0.02)]
    invalid_share: f64,
    /// After sending, how long to wait for the last outcomes.
    #[arg(long, value_parser = crate::parse_duration, default_value = "15s")]
    drain: Duration,
    /// Random seed, for a repeatable mix. Runs on one database within the duplicate window keep
    /// their new problems apart when their seeds differ modulo 4 (see `--duplicate-share`).
    #[arg(long)]
    seed: Option<u64>,
    /// Share of reports that repeat a recent problem (and are attached to its incident); the
    /// others are new problems, each at a place of its own.
    #[arg(long, default_value_t = 0.15, conflicts_with = "legacy_mix")]
    duplicate_share: f64,
    /// The mix before the city mix: every report near its grid's centre, so nearly all are
    /// attached as duplicates once the run has gone on for a minute (for comparing with old
    /// figures).
    #[arg(long)]
    legacy_mix: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Also measure report → `WatchEvents` delivery through the query service (--query-url,
    /// with an operator's --token).
    #[arg(long)]
    watch_events: bool,
    /// Also measure the CPU every process of this machine spent per report while sending and
    /// draining (nats-server, dispatch, query, PostgreSQL and this generator, from /proc).
    #[arg(long)]
    cpu: bool,
    /// How often to sample dispatch's consumer backlog (pending + awaiting ack).
    #[arg(long, value_parser = crate::parse_duration, default_value = "1s")]
    sample_every: Duration,
    /// Raise the rate step by step until dispatch falls behind, and print the highest rate it
    /// sustained (ignores --rate and --duration).
    #[arg(long)]
    find_max: bool,
    #[command(flatten)]
    search: SearchArgs,
    /// First measure the minimal pipeline's ceiling (`whistle bench ceiling`'s pipeline, on
    /// scratch streams and tables) and print the platform's throughput as a share of it.
    #[arg(long)]
    ceiling: bool,
    /// --ceiling: reports through the ceiling pipeline.
    #[arg(long, default_value_t = 100_000)]
    ceiling_reports: u64,
}

/// How `--find-max` searches (shared by `whistle load` and `whistle bench ceiling`, so the
/// platform and the ceiling pipeline are searched alike).
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// --find-max: the first step's rate.
    #[arg(long, default_value_t = 1_000.0)]
    start_rate: f64,
    /// --find-max: each step's rate is the last one times this …
    #[arg(long, default_value_t = 1.25)]
    step_factor: f64,
    /// … plus this.
    #[arg(long, default_value_t = 0.0)]
    step_add: f64,
    /// --find-max: never offer more than this.
    #[arg(long, default_value_t = 100_000.0)]
    max_rate: f64,
    /// --find-max: how long each step sends.
    #[arg(long, value_parser = crate::parse_duration, default_value = "20s")]
    step_duration: Duration,
    /// --find-max: a step falls behind when the consumer's backlog at its end is above this and
    /// grew across the step (mean of the second half of its samples above the first half's by
    /// more than half of this) …
    #[arg(long, default_value_t = 1_000)]
    max_backlog: u64,
    /// … or when its report → event p99 is above this.
    #[arg(long, value_parser = crate::parse_duration, default_value = "1s")]
    max_p99: Duration,
}

impl SearchArgs {
    pub fn plan(&self, sample_every: Duration) -> FindMaxPlan {
        FindMaxPlan {
            steps: RateSteps {
                start: self.start_rate,
                factor: self.step_factor,
                add: self.step_add,
                max: self.max_rate,
            },
            bounds: StepBounds {
                backlog: self.max_backlog,
                p99_ms: self.max_p99.as_secs_f64() * 1000.0,
            },
            step_duration: self.step_duration,
            sample_every,
        }
    }
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    publish_errors: AtomicU64,
    incidents: AtomicU64,
    attached: AtomicU64,
    rejected: AtomicU64,
    watch_gaps: AtomicU64,
    watch_duplicates: AtomicU64,
    /// Times the `WatchEvents` stream failed and was opened again after the last sequence seen
    /// (a stream that opens and fails at once, as through a balancer without a replica, counts
    /// each time).
    watch_resumes: AtomicU64,
}

impl Counters {
    fn outcomes(&self) -> u64 {
        self.incidents.load(Ordering::Relaxed)
            + self.attached.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }
}

/// What the readers of outcomes share with the sender: when each report was sent, and the
/// latencies seen so far.
struct Probe {
    /// Reports still owed an event on `whistle.event.>`.
    in_flight: Mutex<HashMap<String, Instant>>,
    /// Reports still owed an event on the `WatchEvents` stream, when one is watched.
    watch_in_flight: Option<Mutex<HashMap<String, Instant>>>,
    /// Reports whose outcome the stream has delivered: a second one is a duplicate in
    /// `WHISTLE_EVENTS` (the stream is read from JetStream, which keeps one copy per event id,
    /// unlike the core-NATS subscription that also sees a crashed relay's republishes).
    watch_answered: Mutex<HashSet<String>>,
    histogram: Mutex<Histogram<u64>>,
    watch_histogram: Mutex<Histogram<u64>>,
    counters: Counters,
}

impl Probe {
    fn sent(&self, report_id: &str) {
        let now = Instant::now();
        self.in_flight
            .lock()
            .expect("not poisoned")
            .insert(report_id.to_owned(), now);
        if let Some(watched) = &self.watch_in_flight {
            watched
                .lock()
                .expect("not poisoned")
                .insert(report_id.to_owned(), now);
        }
    }

    fn owed(&self) -> usize {
        self.in_flight.lock().expect("not poisoned").len()
    }

    /// Empties both histograms (a new step starts).
    fn reset(&self) {
        self.histogram.lock().expect("not poisoned").reset();
        self.watch_histogram.lock().expect("not poisoned").reset();
    }

    fn latency(&self) -> Latency {
        Latency::from_micros(&self.histogram.lock().expect("not poisoned"))
    }

    fn watch_latency(&self) -> Option<Latency> {
        self.watch_in_flight
            .as_ref()
            .map(|_| Latency::from_micros(&self.watch_histogram.lock().expect("not poisoned")))
    }
}

fn record(histogram: &Mutex<Histogram<u64>>, sent_at: Instant) {
    let micros = sent_at.elapsed().as_micros() as u64;
    let _ = histogram
        .lock()
        .expect("not poisoned")
        .record(micros.max(1));
}

/// The report id an outcome event names, and which outcome it is.
fn outcome(event: &v1::Event) -> Option<(String, Outcome)> {
    let report_id = |report: &Option<v1::Report>| {
        report
            .as_ref()
            .map(|r| r.report_id.clone())
            .unwrap_or_default()
    };
    match &event.body {
        Some(v1::event::Body::IncidentReported(b)) => {
            Some((report_id(&b.report), Outcome::Incident))
        }
        Some(v1::event::Body::ReportAttached(b)) => Some((report_id(&b.report), Outcome::Attached)),
        Some(v1::event::Body::ReportRejected(b)) => Some((b.report_id.clone(), Outcome::Rejected)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Incident,
    Attached,
    Rejected,
}

/// The event kinds that are a report's outcome.
const OUTCOME_KINDS: [&str; 3] = [
    kind::INCIDENT_REPORTED,
    kind::REPORT_ATTACHED,
    kind::REPORT_REJECTED,
];

/// Reads every event on `whistle.event.>` and matches it to a report of this run.
async fn read_outcomes(
    client: &async_nats::Client,
    probe: Arc<Probe>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut events = client.subscribe(subject::ALL_INCIDENT_EVENTS).await?;
    client.flush().await?;
    Ok(tokio::spawn(async move {
        while let Some(message) = events.next().await {
            let Ok(event) = v1::Event::decode(message.payload) else {
                continue;
            };
            let Some((report_id, kind)) = outcome(&event) else {
                continue;
            };
            let counter = match kind {
                Outcome::Incident => &probe.counters.incidents,
                Outcome::Attached => &probe.counters.attached,
                Outcome::Rejected => &probe.counters.rejected,
            };
            let sent_at = probe
                .in_flight
                .lock()
                .expect("not poisoned")
                .remove(&report_id);
            if let Some(sent_at) = sent_at {
                counter.fetch_add(1, Ordering::Relaxed);
                record(&probe.histogram, sent_at);
            } else if event.kind == kind::REPORT_REJECTED && report_id.is_empty() {
                // Garbage bytes carry no report id; count them by kind.
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
}

/// Opens a `WatchEvents` stream of the outcome kinds and matches its events to reports of this
/// run. Returns once the stream is open, so no report is sent before it listens. A stream that
/// fails (its query replica stopped, the balancer switched) is opened again after the last
/// sequence seen, as a screen does, so what a failover misses or repeats is counted, not hidden.
async fn watch_outcomes(
    query_url: &str,
    token: &str,
    probe: Arc<Probe>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let channel = tonic::transport::Channel::from_shared(query_url.to_owned())
        .context("--query-url")?
        .connect_lazy();
    let bearer = whistle_proto::Bearer::new(token).context("the token is not ASCII")?;
    let mut client = CommandCenterClient::with_interceptor(channel, bearer);
    let open = |since_sequence| v1::WatchEventsRequest {
        area_code: String::new(),
        kinds: OUTCOME_KINDS.iter().map(|k| (*k).to_owned()).collect(),
        since_sequence,
    };
    let mut stream = client
        .watch_events(open(0))
        .await
        .with_context(|| format!("opening WatchEvents at {query_url}"))?
        .into_inner();
    Ok(tokio::spawn(async move {
        let mut last_sequence = 0;
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(status) => {
                    tracing::warn!(%status, last_sequence, "the WatchEvents stream failed; resuming");
                    probe.counters.watch_resumes.fetch_add(1, Ordering::Relaxed);
                    // A balancer with no replica up answers at once (503): wait between tries.
                    stream = loop {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        match client.watch_events(open(last_sequence)).await {
                            Ok(resumed) => break resumed.into_inner(),
                            Err(status) => tracing::debug!(%status, "WatchEvents not open yet"),
                        }
                    };
                    continue;
                }
            };
            match response.item {
                Some(v1::watch_events_response::Item::Event(sequenced)) => {
                    last_sequence = last_sequence.max(sequenced.sequence);
                    let Some((report_id, _)) = sequenced.event.as_ref().and_then(outcome) else {
                        continue;
                    };
                    if report_id.is_empty() {
                        continue; // garbage bytes: no report id to match
                    }
                    let watched = probe.watch_in_flight.as_ref().expect("watching");
                    let sent_at = watched.lock().expect("not poisoned").remove(&report_id);
                    let mut answered = probe.watch_answered.lock().expect("not poisoned");
                    if let Some(sent_at) = sent_at {
                        record(&probe.watch_histogram, sent_at);
                        answered.insert(report_id);
                    } else if answered.contains(&report_id) {
                        probe
                            .counters
                            .watch_duplicates
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(v1::watch_events_response::Item::Gap(gap)) => {
                    last_sequence = last_sequence.max(gap.next_sequence.saturating_sub(1));
                    probe.counters.watch_gaps.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
    }))
}

/// The sending side of a run.
struct Sender {
    js: jetstream::Context,
    feed: Feed,
    invalid_share: f64,
    probe: Arc<Probe>,
    expected_invalid: u64,
    stop: CancellationToken,
}

/// What one stretch of sending did.
struct Sent {
    sent: u64,
    seconds: f64,
    samples: Vec<BacklogSample>,
    backlog_at_end: Option<u64>,
    outcomes: u64,
}

impl Sender {
    /// Sends at `rate` for `duration` (0: until Ctrl-C), open loop, sampling the backlog every
    /// `sample_every`; the last sample is taken when sending stops.
    async fn send(
        &mut self,
        rate: f64,
        duration: Duration,
        sample_every: Duration,
        bar: &ProgressBar,
    ) -> Sent {
        let total = (duration.as_secs_f64() * rate).round() as u64;
        let outcomes_before = self.probe.counters.outcomes();
        let start = Instant::now();
        let samples: Arc<Mutex<Vec<BacklogSample>>> = Arc::default();
        let sampling = CancellationToken::new();
        let sampler = {
            let (js, samples, sampling) = (self.js.clone(), samples.clone(), sampling.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(sample_every.max(Duration::from_millis(10)));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await; // the first tick is now; the first sample comes one period in
                loop {
                    tokio::select! {
                        _ = sampling.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    if let Some(backlog) = consumer_backlog(&js).await {
                        samples.lock().expect("not poisoned").push(BacklogSample {
                            at: start.elapsed().as_secs_f64(),
                            backlog: backlog.0 + backlog.1,
                        });
                    }
                }
            })
        };

        let mut sent = 0u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_message = Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if total > 0 && sent >= total {
                break;
            }
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            let due = if total > 0 { due.min(total) } else { due };
            while sent < due {
                self.send_one().await;
                sent += 1;
            }
            if last_message.elapsed() > Duration::from_millis(250) {
                last_message = Instant::now();
                bar.set_position(bar.position().max(sent));
                let c = &self.probe.counters;
                bar.set_message(format!(
                    "acked {}  incidents {}  attached {}  rejected {}",
                    c.acked.load(Ordering::Relaxed),
                    c.incidents.load(Ordering::Relaxed),
                    c.attached.load(Ordering::Relaxed),
                    c.rejected.load(Ordering::Relaxed)
                ));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let outcomes = self.probe.counters.outcomes() - outcomes_before;
        sampling.cancel();
        let _ = sampler.await;
        // The backlog when sending stops tells whether dispatch kept up.
        let backlog_at_end = consumer_backlog(&self.js).await.map(|(p, a)| p + a);
        let mut samples = std::mem::take(&mut *samples.lock().expect("not poisoned"));
        if let Some(backlog) = backlog_at_end {
            samples.push(BacklogSample {
                at: start.elapsed().as_secs_f64(),
                backlog,
            });
        }
        Sent {
            sent,
            seconds,
            samples,
            backlog_at_end,
            outcomes,
        }
    }

    async fn send_one(&mut self) {
        let out = self.feed.next(self.invalid_share);
        self.expected_invalid += u64::from(out.invalid);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, out.report_id.as_str());
        if out.json {
            headers.insert("Content-Type", "application/json");
        }
        if out.traceable {
            self.probe.sent(&out.report_id);
        }
        let counters = &self.probe.counters;
        match self
            .js
            .publish_with_headers(out.subject, headers, out.payload.into())
            .await
        {
            Ok(ack) => {
                let probe = self.probe.clone();
                tokio::spawn(async move {
                    match ack.await {
                        Ok(_) => probe.counters.acked.fetch_add(1, Ordering::Relaxed),
                        Err(_) => probe
                            .counters
                            .publish_errors
                            .fetch_add(1, Ordering::Relaxed),
                    };
                });
            }
            Err(_) => {
                counters.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits up to `limit` for every outcome owed and an empty intake backlog.
    async fn drain(&self, limit: Duration, bar: &ProgressBar) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.probe.owed() == 0
                && consumer_backlog(&self.js)
                    .await
                    .is_none_or(|(p, a)| p + a == 0)
            {
                break;
            }
            bar.set_message(format!(
                "draining: {} outcomes owed",
                thousands(self.probe.owed() as u64)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let watch = match args.watch_events {
        true => Some((conn.query_url().to_owned(), conn.token()?.to_owned())),
        false => None,
    };
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.duplicate_share),
        "--duplicate-share must be between 0 and 1"
    );
    let mix = match args.legacy_mix {
        true => Mix::Legacy,
        false => Mix::City {
            duplicate_share: args.duplicate_share,
        },
    };

    // The ceiling first, while dispatch is idle, so the two figures are taken back to back.
    let ceiling = if args.ceiling {
        eprintln!(
            "measuring the ceiling pipeline ({} reports{})…",
            thousands(args.ceiling_reports),
            if args.find_max {
                ", then its highest sustained open-loop rate by the same search"
            } else {
                ""
            }
        );
        let options = ceiling::Options {
            nats_url: conn.nats_url.clone(),
            credentials: conn.admin_credentials(),
            database_url: conn.database_url.clone(),
            reports: args.ceiling_reports,
            rate: 0.0,
            parts: ceiling::Parts {
                nats: false,
                postgres: false,
                pipeline: true,
            },
            find_max: args.find_max.then(|| args.search.plan(args.sample_every)),
            cpu: args.cpu,
            ..Default::default()
        };
        let figures = ceiling::run(&options).await?;
        eprint!("{}", ceiling::render(&figures));
        Some(figures)
    } else {
        None
    };

    let client = crate::door::nats_admin(conn).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(8192)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let probe = Arc::new(Probe {
        in_flight: Mutex::default(),
        watch_in_flight: watch.as_ref().map(|_| Mutex::default()),
        watch_answered: Mutex::default(),
        histogram: Mutex::new(micros_histogram()),
        watch_histogram: Mutex::new(micros_histogram()),
        counters: Counters::default(),
    });
    let outcome_task = read_outcomes(&client, probe.clone()).await?;
    let watch_task = match &watch {
        Some((url, token)) => Some(watch_outcomes(url, token, probe.clone()).await?),
        None => None,
    };

    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        }
    });
    let mut sender = Sender {
        js: js.clone(),
        feed: Feed::new(&policy, seed, mix),
        invalid_share: args.invalid_share,
        probe: probe.clone(),
        expected_invalid: 0,
        stop: stop.clone(),
    };

    let mut summary = if args.find_max {
        find_max(&args, &mut sender).await
    } else {
        let total = (args.duration.as_secs_f64() * args.rate).round() as u64;
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} sent  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let cpu_before = args.cpu.then(whistle_cli::cpu::Snapshot::take);
        let sent = sender
            .send(args.rate, args.duration, args.sample_every, &bar)
            .await;
        bar.set_position(sent.sent);
        // Wait for the outcomes still owed.
        let drain_until = Instant::now() + args.drain;
        while Instant::now() < drain_until && probe.owed() > 0 && !stop.is_cancelled() {
            bar.set_message(format!(
                "draining: {}/{} outcomes",
                probe.counters.outcomes(),
                sent.sent
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
        let cpu = cpu_before
            .map(|before| before.per_report(&whistle_cli::cpu::Snapshot::take(), sent.sent));
        Summary {
            cpu,
            offered_rate: args.rate,
            achieved_rate: sent.sent as f64 / sent.seconds,
            outcome_rate: sent.outcomes as f64 / sent.seconds,
            seconds: sent.seconds,
            sent: sent.sent,
            latency_ms: probe.latency(),
            watch_latency_ms: probe.watch_latency(),
            backlog_at_end_of_send: sent.backlog_at_end,
            backlog_max: sent.samples.iter().map(|s| s.backlog).max(),
            backlog_samples: sent.samples,
            ..Default::default()
        }
    };
    if watch_task.is_some() {
        // WatchEvents may deliver a moment after NATS did.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && watch_owed(&probe) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    outcome_task.abort();
    if let Some(task) = watch_task {
        task.abort();
    }

    let (pending, ack_pending) = match consumer_backlog(&js).await {
        Some((p, a)) => (Some(p), Some(a)),
        None => (None, None),
    };
    let c = &probe.counters;
    summary.acked = c.acked.load(Ordering::Relaxed);
    summary.publish_errors = c.publish_errors.load(Ordering::Relaxed);
    summary.incidents = c.incidents.load(Ordering::Relaxed);
    summary.attached = c.attached.load(Ordering::Relaxed);
    summary.rejected = c.rejected.load(Ordering::Relaxed);
    summary.expected_invalid = sender.expected_invalid;
    summary.missing = probe.owed() as u64;
    if probe.watch_in_flight.is_some() {
        summary.watch_missing = Some(watch_owed(&probe) as u64);
        summary.watch_gaps = Some(c.watch_gaps.load(Ordering::Relaxed));
        summary.watch_duplicates = Some(c.watch_duplicates.load(Ordering::Relaxed));
        summary.watch_resumes = Some(c.watch_resumes.load(Ordering::Relaxed));
    }
    summary.consumer_pending = pending;
    summary.consumer_ack_pending = ack_pending;
    summary.dispatch_batches = dispatch_batch_times(&client).await;
    if let Some(figures) = ceiling {
        // Like with like: open-loop sustained against the pipeline's open-loop sustained.
        let (platform, ceiling) = match &summary.find_max {
            Some(found) => (
                found.highest_sustained_rate,
                figures
                    .pipeline_find_max
                    .as_ref()
                    .and_then(|f| f.highest_sustained_rate),
            ),
            None => (
                Some(summary.outcome_rate),
                figures.pipeline.map(|p| p.per_second),
            ),
        };
        summary.ratio_to_ceiling = platform
            .zip(ceiling)
            .map(|(platform, ceiling)| platform / ceiling);
        summary.ceiling = Some(figures);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// Each dispatch replica's intake batch times since it started (`$SRV.STATS`: every replica
/// answers; those that answer within half a second are counted).
async fn dispatch_batch_times(client: &async_nats::Client) -> Vec<BatchTimes> {
    let inbox = client.new_inbox();
    let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    let subject = ServiceRequest::Stats.subject(DISPATCH_SERVICE);
    if client
        .publish_with_reply(subject, inbox, Default::default())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let mut replicas = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(answer)) = tokio::time::timeout_at(until, answers.next()).await {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(&answer.payload) else {
            continue;
        };
        let data = &stats["endpoints"][0]["data"];
        let ms = |k: &str| data["batch_ms"][k].as_f64();
        if let (Some(p50), Some(p99), Some(max)) = (ms("p50"), ms("p99"), ms("max")) {
            replicas.push(BatchTimes {
                replica: stats["id"].as_str().unwrap_or_default().to_owned(),
                batches: data["batches"].as_u64().unwrap_or(0),
                p50_ms: p50,
                p99_ms: p99,
                max_ms: max,
            });
        }
    }
    replicas
}

fn watch_owed(probe: &Probe) -> usize {
    probe
        .watch_in_flight
        .as_ref()
        .map_or(0, |w| w.lock().expect("not poisoned").len())
}

/// Raises the rate step by step (`RateSteps`) until a step falls behind (`judge_step`),
/// draining the backlog between steps so each starts clean.
async fn find_max(args: &Args, sender: &mut Sender) -> Summary {
    let FindMaxPlan {
        steps: plan,
        bounds,
        step_duration,
        sample_every,
    } = args.search.plan(args.sample_every);
    let bar = ProgressBar::hidden();
    let mut steps = Vec::new();
    let mut total_sent = 0;
    let mut total_seconds = 0.0;
    let mut rate = Some(plan.start).filter(|r| *r > 0.0 && *r <= plan.max);
    while let Some(offered) = rate {
        if sender.stop.is_cancelled() {
            break;
        }
        sender.probe.reset();
        let sent = sender
            .send(offered, step_duration, sample_every, &bar)
            .await;
        total_sent += sent.sent;
        total_seconds += sent.seconds;
        let latency = sender.probe.latency();
        let backlog: Vec<u64> = sent.samples.iter().map(|s| s.backlog).collect();
        let verdict = judge_step(&backlog, latency.p99, bounds);
        let step = Step {
            offered_rate: offered,
            achieved_rate: sent.sent as f64 / sent.seconds,
            outcome_rate: sent.outcomes as f64 / sent.seconds,
            sent: sent.sent,
            latency_ms: latency,
            watch_latency_ms: sender.probe.watch_latency(),
            backlog_samples: backlog,
            backlog_at_end: sent.backlog_at_end,
            verdict,
        };
        eprintln!("{}", step_line(&step));
        let sustained = step.verdict.sustained();
        steps.push(step);
        // Drain either way, so the platform is left without a backlog.
        sender.drain(args.drain, &bar).await;
        rate = if sustained { plan.next(offered) } else { None };
    }
    let verdicts: Vec<(f64, Verdict)> = steps.iter().map(|s| (s.offered_rate, s.verdict)).collect();
    let highest = highest_sustained(&verdicts);
    let last_kept_up = steps.iter().rev().find(|s| Some(s.offered_rate) == highest);
    Summary {
        offered_rate: highest.unwrap_or(0.0),
        achieved_rate: last_kept_up.map_or(0.0, |s| s.achieved_rate),
        outcome_rate: last_kept_up.map_or(0.0, |s| s.outcome_rate),
        seconds: total_seconds,
        sent: total_sent,
        latency_ms: last_kept_up.map(|s| s.latency_ms).unwrap_or_default(),
        watch_latency_ms: last_kept_up.and_then(|s| s.watch_latency_ms),
        find_max: Some(FindMax {
            bounds,
            step_seconds: step_duration.as_secs_f64(),
            steps,
            highest_sustained_rate: highest,
        }),
        ..Default::default()
    }
}

async fn consumer_backlog(js: &jetstream::Context) -> Option<(u64, u64)> {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(DISPATCH_CONSUMER, REPORTS_STREAM)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some((info.num_pending, info.num_ack_pending as u64))
}
