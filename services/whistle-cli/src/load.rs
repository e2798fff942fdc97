//! `whistle load`: an open-loop load generator with realistic Ordos reports.
//!
//! Reports are sent at a fixed rate whatever the platform does (open loop), so a slow platform
//! shows up as latency and backlog rather than as a lower offered rate. Each report's outcome is
//! read back from `whistle.event.>` and its latency (publish → event) recorded in a histogram.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use whistle_domain::{
    policy::{Category, Policy, SlaClass},
    AreaCode, Level, OrgUnit,
};
use whistle_proto::v1;

use crate::{connect_nats, report_subject, Connection};

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
    /// Random seed, for a repeatable mix.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The mix of reports a city sends.
pub struct Feed {
    grids: Vec<OrgUnit>,
    /// (code, Chinese name, weight, an emergency class); every weight is positive.
    categories: Vec<(String, String, u32, bool)>,
    rng: StdRng,
    /// Report ids are `{prefix}-{n}`.
    prefix: String,
    sent: u64,
}

/// One report ready to publish.
pub struct Outgoing {
    pub report_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub json: bool,
    /// Built to be rejected.
    pub invalid: bool,
    /// Its outcome event names its report id (garbage bytes have none).
    pub traceable: bool,
    /// The grid and the grid worker filing it, the category code and the title, for printing.
    pub grid: AreaCode,
    pub reporter_id: String,
    pub category: String,
    pub title: String,
}

/// How often `whistle load` files each category: winter in Ordos, heating dominates.
fn load_weight(category: &Category) -> u32 {
    match category.code.as_str().split('.').next().unwrap_or_default() {
        "heating" => 8,
        "sanitation" | "municipal" | "noise" | "property" => 5,
        "disputes" | "water" | "power" | "public_order" => 3,
        _ => 2,
    }
}

impl Feed {
    pub fn new(policy: &Policy, seed: u64) -> Feed {
        Feed::weighted(
            policy,
            seed,
            format!("load-{:x}", seed & 0xff_ffff),
            load_weight,
        )
    }

    /// A feed whose categories are drawn by `weight` (0 leaves a category out; when every weight
    /// is 0, `whistle load`'s mix is used), with report ids `{prefix}-{n}`.
    pub(crate) fn weighted(
        policy: &Policy,
        seed: u64,
        prefix: String,
        weight: impl Fn(&Category) -> u32,
    ) -> Feed {
        let grids = whistle_domain::ordos::dataset()
            .units
            .into_iter()
            .filter(|u| u.level() == Level::Grid)
            .collect();
        let entry = |c: &Category, weight: u32| {
            (
                c.code.to_string(),
                c.name_zh.clone(),
                weight,
                c.sla == SlaClass::Emergency,
            )
        };
        let mut categories: Vec<_> = policy
            .categories()
            .filter_map(|c| match weight(c) {
                0 => None,
                w => Some(entry(c, w)),
            })
            .collect();
        if categories.is_empty() {
            categories = policy
                .categories()
                .map(|c| entry(c, load_weight(c)))
                .collect();
        }
        Feed {
            grids,
            categories,
            rng: StdRng::seed_from_u64(seed),
            prefix,
            sent: 0,
        }
    }

    pub fn next(&mut self, invalid_share: f64) -> Outgoing {
        self.sent += 1;
        let report_id = format!("{}-{}", self.prefix, self.sent);
        let grid = &self.grids[self.rng.random_range(0..self.grids.len())];
        let total: u32 = self.categories.iter().map(|c| c.2).sum();
        let mut pick = self.rng.random_range(0..total);
        let category = self
            .categories
            .iter()
            .find(|c| {
                if pick < c.2 {
                    true
                } else {
                    pick -= c.2;
                    false
                }
            })
            .map(|c| (c.0.clone(), c.1.clone(), c.3))
            .expect("weights cover the range");
        let (category, name, emergency_class) = category;
        let grid_code = grid.code.clone();
        let reporter_id = format!("gw-{}", grid.code);
        let urgency = match self.rng.random_range(0..100) {
            _ if emergency_class => v1::Urgency::Emergency,
            0..2 => v1::Urgency::Emergency,
            2..17 => v1::Urgency::Urgent,
            _ => v1::Urgency::Normal,
        };
        let compound = grid.name.strip_suffix("小区").unwrap_or(&grid.name);
        let now = chrono::Utc::now();
        let mut report = v1::Report {
            report_id: report_id.clone(),
            reporter_id: reporter_id.clone(),
            grid_code: grid.code.to_string(),
            category,
            urgency: urgency as i32,
            title: format!("{compound}小区居民反映{name}"),
            description: format!("网格员巡查发现：{}，涉及{}，请尽快处理。", name, grid.name),
            location: Some(v1::Location {
                lat: grid.lat + self.rng.random_range(-0.001..0.001),
                lon: grid.lon + self.rng.random_range(-0.001..0.001),
                address: grid.name.clone(),
            }),
            occurred_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis() - self.rng.random_range(0..3_600_000),
            )),
            reported_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis(),
            )),
            attachments: (0..self.rng.random_range(0..3))
                .map(|i| v1::Attachment {
                    uri: format!(
                        "https://oss.ordos.example/grid/{}/{report_id}-{i}.jpg",
                        grid.code
                    ),
                    media_type: "image/jpeg".into(),
                    size_bytes: self.rng.random_range(50_000..2_000_000),
                    caption: String::new(),
                })
                .collect(),
            contact_phone: String::new(),
        };
        let mut subject = report_subject(&grid.code);
        let invalid = self.rng.random_bool(invalid_share.clamp(0.0, 1.0));
        let mut garbage = None;
        if invalid {
            match self.rng.random_range(0..5) {
                0 => report.category = "weather.too_cold".into(),
                1 => report.reporter_id = "gw-150602999999999".into(),
                2 => {
                    report.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
                        now.timestamp_millis() + 86_400_000,
                    ))
                }
                3 => {
                    let unknown: AreaCode =
                        format!("{}999", grid.code.parent().expect("grid has a community"))
                            .parse()
                            .expect("valid");
                    report.grid_code = unknown.to_string();
                    subject = report_subject(&unknown);
                }
                _ => garbage = Some(b"\xff\xfe not a protobuf report".to_vec()),
            }
        }
        let json = !invalid && self.rng.random_bool(0.1);
        let traceable = garbage.is_none();
        let (category, title) = (report.category.clone(), report.title.clone());
        let payload = match garbage {
            Some(bytes) => bytes,
            None if json => whistle_proto::to_json(&report)
                .expect("reports serialize")
                .into_bytes(),
            None => report.encode_to_vec(),
        };
        Outgoing {
            report_id,
            subject,
            payload,
            json,
            invalid,
            traceable,
            grid: grid_code,
            reporter_id,
            category,
            title,
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    offered_rate: f64,
    achieved_rate: f64,
    seconds: f64,
    sent: u64,
    acked: u64,
    publish_errors: u64,
    incidents: u64,
    /// Reports attached to an open incident as duplicates.
    attached: u64,
    rejected: u64,
    expected_invalid: u64,
    missing: u64,
    latency_ms: Latency,
    backlog_at_end_of_send: Option<u64>,
    consumer_pending: Option<u64>,
    consumer_ack_pending: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: u64,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    publish_errors: AtomicU64,
    incidents: AtomicU64,
    attached: AtomicU64,
    rejected: AtomicU64,
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let policy = whistle_dispatch::load_policy(&conn.policy)?;
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let mut feed = Feed::new(&policy, seed);
    let client = connect_nats(conn).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(8192)
        .backpressure_on_inflight(true)
        .build(client.clone());

    let in_flight: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
    ));
    let counters = Arc::new(Counters::default());

    // Outcomes: read every event and match it to a report of this run.
    let mut events = client.subscribe("whistle.event.>").await?;
    client.flush().await?;
    let outcome_task = {
        let (in_flight, histogram, counters) =
            (in_flight.clone(), histogram.clone(), counters.clone());
        tokio::spawn(async move {
            while let Some(message) = events.next().await {
                let Ok(event) = v1::Event::decode(message.payload) else {
                    continue;
                };
                let (report_id, counter) = match &event.body {
                    Some(v1::event::Body::IncidentReported(b)) => (
                        b.report
                            .as_ref()
                            .map(|r| r.report_id.clone())
                            .unwrap_or_default(),
                        &counters.incidents,
                    ),
                    Some(v1::event::Body::ReportAttached(b)) => (
                        b.report
                            .as_ref()
                            .map(|r| r.report_id.clone())
                            .unwrap_or_default(),
                        &counters.attached,
                    ),
                    Some(v1::event::Body::ReportRejected(b)) => {
                        (b.report_id.clone(), &counters.rejected)
                    }
                    _ => continue,
                };
                let sent_at = in_flight.lock().expect("not poisoned").remove(&report_id);
                if let Some(sent_at) = sent_at {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let micros = sent_at.elapsed().as_micros() as u64;
                    let _ = histogram
                        .lock()
                        .expect("not poisoned")
                        .record(micros.max(1));
                } else if event.kind == whistle_dispatch::REPORT_REJECTED && report_id.is_empty() {
                    // Garbage bytes carry no report id; count them by subject.
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

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

    let start = Instant::now();
    let mut sent = 0u64;
    let mut expected_invalid = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last_message = Instant::now();
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = ticker.tick() => {}
        }
        let elapsed = start.elapsed();
        if total > 0 && sent >= total {
            break;
        }
        let due = (elapsed.as_secs_f64() * args.rate) as u64;
        let due = if total > 0 { due.min(total) } else { due };
        while sent < due {
            let out = feed.next(args.invalid_share);
            expected_invalid += u64::from(out.invalid);
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, out.report_id.as_str());
            if out.json {
                headers.insert("Content-Type", "application/json");
            }
            if out.traceable {
                in_flight
                    .lock()
                    .expect("not poisoned")
                    .insert(out.report_id.clone(), Instant::now());
            }
            match js
                .publish_with_headers(out.subject, headers, out.payload.into())
                .await
            {
                Ok(ack) => {
                    let counters = counters.clone();
                    tokio::spawn(async move {
                        match ack.await {
                            Ok(_) => counters.acked.fetch_add(1, Ordering::Relaxed),
                            Err(_) => counters.publish_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
                Err(_) => {
                    counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent += 1;
        }
        if last_message.elapsed() > Duration::from_millis(250) {
            last_message = Instant::now();
            bar.set_position(sent);
            bar.set_message(format!(
                "acked {}  incidents {}  rejected {}",
                counters.acked.load(Ordering::Relaxed),
                counters.incidents.load(Ordering::Relaxed),
                counters.rejected.load(Ordering::Relaxed)
            ));
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    bar.set_position(sent);
    // The backlog when sending stops tells whether dispatch kept up; after the drain it should be 0.
    let backlog_at_end_of_send = consumer_backlog(&js)
        .await
        .map(|(pending, ack_pending)| pending + ack_pending);

    // Wait for the outcomes still owed.
    let drain_until = Instant::now() + args.drain;
    while Instant::now() < drain_until && !in_flight.lock().expect("not poisoned").is_empty() {
        let outcomes = counters.incidents.load(Ordering::Relaxed)
            + counters.attached.load(Ordering::Relaxed)
            + counters.rejected.load(Ordering::Relaxed);
        bar.set_message(format!("draining: {outcomes}/{sent} outcomes"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    outcome_task.abort();

    let (pending, ack_pending) = match consumer_backlog(&js).await {
        Some((p, a)) => (Some(p), Some(a)),
        None => (None, None),
    };
    let h = histogram.lock().expect("not poisoned");
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let summary = Summary {
        offered_rate: args.rate,
        achieved_rate: sent as f64 / send_seconds,
        seconds: send_seconds,
        sent,
        acked: counters.acked.load(Ordering::Relaxed),
        publish_errors: counters.publish_errors.load(Ordering::Relaxed),
        incidents: counters.incidents.load(Ordering::Relaxed),
        attached: counters.attached.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        expected_invalid,
        missing: in_flight.lock().expect("not poisoned").len() as u64,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
            count: h.len(),
        },
        backlog_at_end_of_send,
        consumer_pending: pending,
        consumer_ack_pending: ack_pending,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

async fn consumer_backlog(js: &jetstream::Context) -> Option<(u64, u64)> {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("whistle-dispatch", whistle_dispatch::streams::REPORTS)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some((info.num_pending, info.num_ack_pending as u64))
}

fn print_summary(s: &Summary) {
    println!(
        "offered {:.0}/s, achieved {:.0}/s over {:.1}s",
        s.offered_rate, s.achieved_rate, s.seconds
    );
    println!(
        "sent {}  acked {}  publish errors {}  incidents {}  attached as duplicates {}  rejected {} (expected ≈{})  no outcome {}",
        s.sent, s.acked, s.publish_errors, s.incidents, s.attached, s.rejected, s.expected_invalid, s.missing
    );
    let l = &s.latency_ms;
    println!(
        "report → event latency (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        l.p50, l.p90, l.p99, l.p999, l.max, l.count
    );
    match (
        s.backlog_at_end_of_send,
        s.consumer_pending,
        s.consumer_ack_pending,
    ) {
        (Some(at_end), Some(p), Some(a)) => {
            println!("dispatch consumer backlog: {at_end} when sending stopped; after the drain {p} pending, {a} awaiting ack")
        }
        _ => println!("dispatch consumer backlog: unknown (consumer not found)"),
    }
}
