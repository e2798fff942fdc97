//! `whistle bench ceiling`: what this machine can do at best, measured in one run, so the
//! platform's figures can be read as a share of it.
//!
//! The parts: JetStream publish (acks pipelined, and awaited one by one), JetStream pull in
//! batches, PostgreSQL multi-row `UNNEST` inserts and one row per transaction; then the minimal
//! pipeline that the platform's intake is a richer version of — pull a batch of reports, insert
//! them with one outbox row each in one transaction, ack, publish the events with `Nats-Msg-Id`
//! on their own connection — first as fast as it goes, then open loop at a fixed rate for its
//! report → event-acked latency.
//!
//! **Invariant:** it touches nothing of the platform. Every stream and table it uses has a
//! unique scratch name (`CEILING_…`, `ceiling_…`) and is removed at the end, whether the
//! measurement succeeded or not.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer, context::PublishAckFuture, stream},
    HeaderMap, Subject,
};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message as _;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;
use whistle_wire::Credentials;

use crate::{
    cpu::{CpuPerReport, Snapshot},
    stats::{
        format_rate, highest_sustained, judge_step, micros_histogram, thousands, FindMaxPlan,
        Latency, StepBounds, Verdict,
    },
};

/// Scratch streams are named `CEILING_{tag}_…`.
pub const STREAM_PREFIX: &str = "CEILING_";
/// Scratch tables are named `ceiling_{tag}_…`.
pub const TABLE_PREFIX: &str = "ceiling_";
/// Header carrying a report's send time in the open-loop phase (µs since the run's origin).
const SENT_HEADER: &str = "Ceiling-Sent-Us";

/// What to measure, and how much of it.
#[derive(Debug, Clone)]
pub struct Options {
    pub nats_url: String,
    /// The admin identity (scratch streams need stream administration).
    pub credentials: Credentials,
    pub database_url: String,
    /// Messages for the pipelined publish (then read back by the pull).
    pub messages: u64,
    /// Messages for the publish that awaits each ack.
    pub awaited: u64,
    /// Rows for the `UNNEST` insert.
    pub rows: u64,
    /// Rows inserted one per transaction.
    pub single_rows: u64,
    /// Reports through the minimal pipeline, as fast as it goes.
    pub reports: u64,
    /// Open-loop rate of the latency phase (reports/s); 0 skips the phase.
    pub rate: f64,
    pub latency_duration: Duration,
    /// Pull and insert batch size.
    pub batch: usize,
    /// Publish acks in flight.
    pub window: usize,
    /// Payload size of the raw publish and pull.
    pub message_size: usize,
    pub parts: Parts,
    /// After the drain, search the pipeline's highest sustained open-loop rate with this plan
    /// (instead of the one run at `rate`).
    pub find_max: Option<FindMaxPlan>,
    /// Measure the CPU every process of the machine spent per report of the drain.
    pub cpu: bool,
}

/// Which parts run (`whistle load --ceiling` runs only the pipeline).
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub nats: bool,
    pub postgres: bool,
    pub pipeline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats_url: "nats://127.0.0.1:4222".into(),
            credentials: Credentials::Anonymous,
            database_url: "postgres://postgres@127.0.0.1:5432/whistle".into(),
            messages: 200_000,
            awaited: 10_000,
            rows: 200_000,
            single_rows: 5_000,
            reports: 150_000,
            rate: 2_000.0,
            latency_duration: Duration::from_secs(20),
            batch: 500,
            window: 256,
            message_size: 300,
            parts: Parts {
                nats: true,
                postgres: true,
                pipeline: true,
            },
            find_max: None,
            cpu: false,
        }
    }
}

/// A count over a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub count: u64,
    pub seconds: f64,
    pub per_second: f64,
}

impl Throughput {
    fn new(count: u64, elapsed: Duration) -> Throughput {
        let seconds = elapsed.as_secs_f64();
        Throughput {
            count,
            seconds,
            per_second: count as f64 / seconds.max(1e-9),
        }
    }
}

/// The pipeline open loop at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtRate {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub seconds: f64,
    pub sent: u64,
    /// Reports whose event was acked by JetStream.
    pub completed: u64,
    /// Report published → its event's publish acked.
    pub latency_ms: Latency,
}

/// The pipeline's CPU per report of its drain, by process (this one is "ceiling").
pub const OWN_GROUP: &str = "ceiling";

/// One step of the pipeline's `--find-max` search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at_rate: AtRate,
    /// The consumer's backlog (pending + awaiting ack), sampled while sending, as the platform's.
    pub backlog_samples: Vec<u64>,
    pub verdict: Verdict,
}

/// The pipeline's open-loop search: the same plan and rule as `whistle load --find-max`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindMax {
    pub bounds: StepBounds,
    pub step_seconds: f64,
    pub steps: Vec<Step>,
    pub highest_sustained_rate: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub nats_server: String,
    pub postgres: String,
    pub load_average_before: Option<String>,
    pub load_average_after: Option<String>,
    pub batch: usize,
    pub window: usize,
    pub message_size: usize,
    /// JetStream publish, `window` acks in flight.
    pub publish_pipelined: Option<Throughput>,
    /// JetStream publish awaiting each ack.
    pub publish_awaited: Option<Throughput>,
    /// Pull consumer without acks (`AckPolicy::None`), batches of `batch`.
    pub pull: Option<Throughput>,
    /// Pull consumer acking every message (`AckPolicy::Explicit`), batches of `batch`.
    pub pull_acked: Option<Throughput>,
    /// PostgreSQL `INSERT … SELECT * FROM UNNEST(…)`, `batch` rows a transaction, one connection.
    pub unnest_insert: Option<Throughput>,
    /// PostgreSQL, one row a transaction, one connection.
    pub row_per_transaction: Option<Throughput>,
    /// The minimal pipeline as fast as it goes (reports/s).
    pub pipeline: Option<Throughput>,
    /// What a report of the drain cost every process of the machine (`cpu`).
    pub pipeline_cpu: Option<CpuPerReport>,
    pub pipeline_at_rate: Option<AtRate>,
    /// The open-loop search (`find_max`).
    pub pipeline_find_max: Option<FindMax>,
}

/// The scratch names of one run.
struct Scratch {
    raw_stream: String,
    raw_subject: String,
    in_stream: String,
    in_prefix: String,
    events_stream: String,
    events_prefix: String,
    consumer: String,
    insert_table: String,
    incidents_table: String,
    outbox_table: String,
}

impl Scratch {
    fn new() -> Scratch {
        let tag = Uuid::now_v7().simple().to_string();
        let upper = tag.to_uppercase();
        Scratch {
            raw_stream: format!("{STREAM_PREFIX}{upper}_RAW"),
            raw_subject: format!("ceiling.{tag}.raw"),
            in_stream: format!("{STREAM_PREFIX}{upper}_REPORTS"),
            in_prefix: format!("ceiling.{tag}.report"),
            events_stream: format!("{STREAM_PREFIX}{upper}_EVENTS"),
            events_prefix: format!("ceiling.{tag}.event"),
            consumer: format!("ceiling-{tag}"),
            insert_table: format!("{TABLE_PREFIX}{tag}_insert"),
            incidents_table: format!("{TABLE_PREFIX}{tag}_incidents"),
            outbox_table: format!("{TABLE_PREFIX}{tag}_outbox"),
        }
    }

    async fn create(&self, js: &jetstream::Context, db: &mut PgConnection) -> anyhow::Result<()> {
        for (name, subject) in [
            (&self.raw_stream, self.raw_subject.clone()),
            (&self.in_stream, format!("{}.>", self.in_prefix)),
            (&self.events_stream, format!("{}.>", self.events_prefix)),
        ] {
            // Only settings nats-server 2.9 knows: it silently drops newer ones.
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating scratch stream {name}"))?;
        }
        for table in [&self.insert_table, &self.incidents_table] {
            sqlx::query(&format!(
                "CREATE TABLE {table} (
                    id uuid PRIMARY KEY,
                    report_id text NOT NULL UNIQUE,
                    reporter_id text NOT NULL,
                    grid_code text NOT NULL,
                    category text NOT NULL,
                    urgency int NOT NULL,
                    title text NOT NULL,
                    description text NOT NULL,
                    lat double precision,
                    lon double precision,
                    reported_at timestamptz NOT NULL,
                    received_at timestamptz NOT NULL,
                    payload bytea NOT NULL
                )"
            ))
            .execute(&mut *db)
            .await
            .with_context(|| format!("creating scratch table {table}"))?;
        }
        sqlx::query(&format!(
            "CREATE TABLE {} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id uuid NOT NULL,
                subject text NOT NULL,
                payload bytea NOT NULL
            )",
            self.outbox_table
        ))
        .execute(&mut *db)
        .await
        .context("creating the scratch outbox")?;
        Ok(())
    }

    /// Removes every stream and table of the run; those that were never made are skipped.
    async fn remove(&self, js: &jetstream::Context, database_url: &str) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for name in [&self.raw_stream, &self.in_stream, &self.events_stream] {
            if let Err(e) = js.delete_stream(name).await {
                if js.get_stream(name).await.is_ok() {
                    failures.push(format!("stream {name}: {e}"));
                }
            }
        }
        match PgConnection::connect(database_url).await {
            Ok(mut db) => {
                for table in [
                    &self.insert_table,
                    &self.incidents_table,
                    &self.outbox_table,
                ] {
                    if let Err(e) = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                        .execute(&mut db)
                        .await
                    {
                        failures.push(format!("table {table}: {e}"));
                    }
                }
                let _ = db.close().await;
            }
            Err(e) => failures.push(format!("connecting to drop the scratch tables: {e}")),
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("scratch not removed: {}", failures.join("; "))
        }
    }
}

/// The load average (1, 5, 15 minutes) as `/proc/loadavg` has it.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

async fn connect(options: &Options, name: &str) -> anyhow::Result<async_nats::Client> {
    whistle_wire::connect::connect(&options.nats_url, name, &options.credentials)
        .await
        .map_err(|e| anyhow::anyhow!(whistle_wire::chain(&e)))
}

/// A JetStream context whose own in-flight limit stays out of the way of ours.
fn context(client: async_nats::Client, window: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(window.max(1) * 4)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Runs the measurements of `options.parts` and removes the scratch streams and tables.
pub async fn run(options: &Options) -> anyhow::Result<Figures> {
    anyhow::ensure!(options.batch > 0, "the batch size must be positive");
    anyhow::ensure!(options.window > 0, "the ack window must be positive");
    let load_average_before = load_average();
    let client = connect(options, "whistle-ceiling").await?;
    let js = context(client.clone(), options.window);
    let mut db = PgConnection::connect(&options.database_url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", options.database_url))?;
    let postgres: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut db)
        .await?;
    let scratch = Scratch::new();
    let mut figures = Figures {
        nats_server: client.server_info().version,
        postgres,
        load_average_before,
        batch: options.batch,
        window: options.window,
        message_size: options.message_size,
        ..Default::default()
    };
    let measured = async {
        scratch.create(&js, &mut db).await?;
        measure(options, &client, &js, db, &scratch, &mut figures).await
    }
    .await;
    let removed = scratch.remove(&js, &options.database_url).await;
    measured?;
    removed?;
    figures.load_average_after = load_average();
    Ok(figures)
}

async fn measure(
    options: &Options,
    client: &async_nats::Client,
    js: &jetstream::Context,
    mut db: PgConnection,
    scratch: &Scratch,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    if options.parts.nats {
        let payload = Bytes::from(vec![b'x'; options.message_size]);
        let subject = Subject::from(scratch.raw_subject.as_str());
        let items = (0..options.messages).map(|_| (subject.clone(), None, payload.clone()));
        let started = Instant::now();
        let stored = publish_pipelined(js, options.window, items, |_| {}).await?;
        figures.publish_pipelined = Some(Throughput::new(stored, started.elapsed()));

        let started = Instant::now();
        for _ in 0..options.awaited {
            js.publish(subject.clone(), payload.clone())
                .await?
                .await
                .context("awaited publish")?;
        }
        figures.publish_awaited = Some(Throughput::new(options.awaited, started.elapsed()));

        let stream = js.get_stream(&scratch.raw_stream).await?;
        let total = options.messages + options.awaited;
        figures.pull = Some(pull(client, &stream, total, options.batch, false).await?);
        figures.pull_acked = Some(pull(client, &stream, total, options.batch, true).await?);
    }

    let mut reports = ReportFeed::new(&scratch.in_prefix);
    if options.parts.postgres {
        let now = chrono::Utc::now();
        let started = Instant::now();
        let mut written = 0;
        while written < options.rows {
            let n = (options.rows - written).min(options.batch as u64);
            let mut rows = Rows::default();
            for _ in 0..n {
                let (_, report) = reports.next();
                rows.push(Uuid::now_v7(), &report, now);
            }
            let mut tx = db.begin().await?;
            rows.insert(&mut tx, &scratch.insert_table).await?;
            tx.commit().await?;
            written += n;
        }
        figures.unnest_insert = Some(Throughput::new(written, started.elapsed()));

        let sql = format!(
            "INSERT INTO {} (id, report_id, reporter_id, grid_code, category, urgency, title,
                description, lat, lon, reported_at, received_at, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            scratch.insert_table
        );
        let started = Instant::now();
        for _ in 0..options.single_rows {
            let (_, report) = reports.next();
            let location = report.location.clone().unwrap_or_default();
            sqlx::query(&sql)
                .bind(Uuid::now_v7())
                .bind(&report.report_id)
                .bind(&report.reporter_id)
                .bind(&report.grid_code)
                .bind(&report.category)
                .bind(report.urgency)
                .bind(&report.title)
                .bind(&report.description)
                .bind(location.lat)
                .bind(location.lon)
                .bind(now)
                .bind(now)
                .bind(report.encode_to_vec())
                .execute(&mut db)
                .await?;
        }
        figures.row_per_transaction = Some(Throughput::new(options.single_rows, started.elapsed()));
    }

    if options.parts.pipeline {
        // Fill the reports stream first, then time the pipeline draining it.
        let items: Vec<_> = (0..options.reports)
            .map(|_| {
                let (subject, report) = reports.next();
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
                (
                    Subject::from(subject),
                    Some(headers),
                    Bytes::from(report.encode_to_vec()),
                )
            })
            .collect();
        publish_pipelined(js, options.window, items.into_iter(), |_| {}).await?;

        let origin = Instant::now();
        let pipeline = Pipeline::start(options, scratch, db, origin).await?;
        let cpu_before = options.cpu.then(|| Snapshot::take_as(OWN_GROUP));
        let started = Instant::now();
        pipeline
            .wait_for(options.reports, Duration::from_secs(600))
            .await?;
        figures.pipeline = Some(Throughput::new(options.reports, started.elapsed()));
        figures.pipeline_cpu = cpu_before
            .map(|before| before.per_report(&Snapshot::take_as(OWN_GROUP), options.reports));

        let mut open_loop = OpenLoop::new(options, scratch, &pipeline, origin).await?;
        if let Some(plan) = &options.find_max {
            figures.pipeline_find_max = Some(find_max(plan, &mut open_loop, &mut reports).await?);
        } else if options.rate > 0.0 && !options.latency_duration.is_zero() {
            let (at_rate, _) = open_loop
                .run(&mut reports, options.rate, options.latency_duration, None)
                .await?;
            figures.pipeline_at_rate = Some(at_rate);
        }
        pipeline.stop().await?;
    }
    Ok(())
}

/// Publishes everything with at most `window` acks outstanding (awaited in order by a task of
/// their own, so they complete as they come back); `on_ack` sees each ack's position. Returns how
/// many were stored.
async fn publish_pipelined(
    js: &jetstream::Context,
    window: usize,
    items: impl Iterator<Item = (Subject, Option<HeaderMap>, Bytes)>,
    on_ack: impl FnMut(u64) + Send + 'static,
) -> anyhow::Result<u64> {
    let (acks, acker) = spawn_acker(window, on_ack);
    for (subject, headers, payload) in items {
        let ack = match headers {
            Some(headers) => js.publish_with_headers(subject, headers, payload).await,
            None => js.publish(subject, payload).await,
        }
        .context("publishing")?;
        if acks.send(ack).await.is_err() {
            break; // the acker stopped on an error, returned below
        }
    }
    drop(acks);
    acker.await?
}

type Acker = tokio::task::JoinHandle<anyhow::Result<u64>>;

/// A task awaiting publish acks in order; the channel holds the window (the ack being awaited
/// is the window's last place).
fn spawn_acker(
    window: usize,
    mut on_ack: impl FnMut(u64) + Send + 'static,
) -> (mpsc::Sender<PublishAckFuture>, Acker) {
    let (tx, mut rx) = mpsc::channel::<PublishAckFuture>(window.saturating_sub(1).max(1));
    let task = tokio::spawn(async move {
        let mut acked = 0;
        while let Some(ack) = rx.recv().await {
            ack.await.context("publish not acknowledged")?;
            acked += 1;
            on_ack(acked);
        }
        Ok(acked)
    });
    (tx, task)
}

/// Reads `count` messages from the start of `stream` with a continuous pull in batches.
async fn pull(
    client: &async_nats::Client,
    stream: &stream::Stream,
    count: u64,
    batch: usize,
    ack: bool,
) -> anyhow::Result<Throughput> {
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: if ack {
                consumer::AckPolicy::Explicit
            } else {
                consumer::AckPolicy::None
            },
            deliver_policy: consumer::DeliverPolicy::All,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .context("creating a scratch pull consumer")?;
    let started = Instant::now();
    let messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    // Without `unconstrained`, tokio's co-operative budget cuts every ready chunk at 128.
    let mut chunks = messages.ready_chunks(batch);
    let mut read = 0;
    while read < count {
        let chunk = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::unconstrained(chunks.next()),
        )
        .await
        .context("the pull stalled")?
        .context("the pull ended")?;
        for message in chunk {
            let message = message.map_err(|e| anyhow::anyhow!("pull: {e}"))?;
            if ack {
                message
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
            read += 1;
        }
    }
    if ack {
        // `ack()` only queues the ack on the connection.
        client.flush().await?;
    }
    Ok(Throughput::new(read, started.elapsed()))
}

/// Realistic reports (≈ 300 bytes as protobuf) over the Ordos grids, on the scratch subjects.
struct ReportFeed {
    grids: Vec<AreaCode>,
    prefix: String,
    run: String,
    sent: u64,
}

const CATEGORIES: [&str; 4] = [
    "heating.no_heat",
    "sanitation.garbage_overflow",
    "municipal.road_damage",
    "noise.construction_night",
];

impl ReportFeed {
    fn new(prefix: &str) -> ReportFeed {
        ReportFeed {
            grids: whistle_domain::ordos::dataset()
                .units
                .into_iter()
                .filter(|u| u.level() == Level::Grid)
                .map(|u| u.code)
                .collect(),
            prefix: prefix.to_owned(),
            run: Uuid::now_v7().simple().to_string()[..12].to_owned(),
            sent: 0,
        }
    }

    fn next(&mut self) -> (String, v1::Report) {
        self.sent += 1;
        let n = self.sent;
        let grid = &self.grids[(n as usize * 7919) % self.grids.len()];
        let now = chrono::Utc::now().timestamp_millis();
        let report = v1::Report {
            report_id: format!("ceiling-{}-{n}", self.run),
            reporter_id: format!("gw-{grid}"),
            grid_code: grid.to_string(),
            category: CATEGORIES[n as usize % CATEGORIES.len()].into(),
            urgency: v1::Urgency::Normal as i32,
            title: "5号楼居民反映暖气不热".into(),
            description: "网格员巡查发现：室内温度不达标，涉及多户居民，请尽快处理。".into(),
            location: Some(v1::Location {
                lat: 39.6 + (n % 1000) as f64 * 1e-4,
                lon: 109.8 + (n % 997) as f64 * 1e-4,
                address: "康巴什区青春山街道".into(),
            }),
            occurred_at: Some(whistle_proto::timestamp_from_unix_millis(now - 600_000)),
            reported_at: Some(whistle_proto::timestamp_from_unix_millis(now)),
            attachments: vec![v1::Attachment {
                uri: format!("https://oss.ordos.example/grid/{grid}/{n}.jpg"),
                media_type: "image/jpeg".into(),
                size_bytes: 200_000,
                caption: String::new(),
            }],
            contact_phone: String::new(),
            photo_ids: Vec::new(),
            channel: v1::Channel::Unspecified as i32,
            channel_ref: String::new(),
            cleared: false,
        };
        (format!("{}.{grid}", self.prefix), report)
    }
}

/// Columns of a batch of incident rows, for one `UNNEST` insert.
#[derive(Default)]
struct Rows {
    id: Vec<Uuid>,
    report_id: Vec<String>,
    reporter_id: Vec<String>,
    grid_code: Vec<String>,
    category: Vec<String>,
    urgency: Vec<i32>,
    title: Vec<String>,
    description: Vec<String>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    reported_at: Vec<chrono::DateTime<chrono::Utc>>,
    received_at: Vec<chrono::DateTime<chrono::Utc>>,
    payload: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, id: Uuid, report: &v1::Report, now: chrono::DateTime<chrono::Utc>) {
        let reported_at = report
            .reported_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or(now);
        self.id.push(id);
        self.report_id.push(report.report_id.clone());
        self.reporter_id.push(report.reporter_id.clone());
        self.grid_code.push(report.grid_code.clone());
        self.category.push(report.category.clone());
        self.urgency.push(report.urgency);
        self.title.push(report.title.clone());
        self.description.push(report.description.clone());
        self.lat.push(report.location.as_ref().map(|l| l.lat));
        self.lon.push(report.location.as_ref().map(|l| l.lon));
        self.reported_at.push(reported_at);
        self.received_at.push(now);
        self.payload.push(report.encode_to_vec());
    }

    async fn insert(self, db: &mut PgConnection, table: &str) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {table} (id, report_id, reporter_id, grid_code, category, urgency, title,
                description, lat, lon, reported_at, received_at, payload)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::int[], $7::text[], $8::text[], $9::float8[], $10::float8[],
                $11::timestamptz[], $12::timestamptz[], $13::bytea[])
             ON CONFLICT (report_id) DO NOTHING"
        ))
        .bind(self.id)
        .bind(self.report_id)
        .bind(self.reporter_id)
        .bind(self.grid_code)
        .bind(self.category)
        .bind(self.urgency)
        .bind(self.title)
        .bind(self.description)
        .bind(self.lat)
        .bind(self.lon)
        .bind(self.reported_at)
        .bind(self.received_at)
        .bind(self.payload)
        .execute(db)
        .await?;
        Ok(())
    }
}

/// An event to publish once its batch is committed.
struct Outgoing {
    event_id: String,
    subject: String,
    payload: Bytes,
    /// When its report was sent (µs since the origin), in the open-loop phase.
    sent_us: Option<u64>,
}

/// The minimal pipeline, running: a task pulling and recording batches (on one NATS
/// connection and one PostgreSQL connection), a task publishing their events (on a connection
/// of its own: publishing on the fetching connection cost ≈ 15 %), a task awaiting the event
/// acks and counting the reports done.
struct Pipeline {
    done: watch::Receiver<u64>,
    latency: Arc<Mutex<Histogram<u64>>>,
    shutdown: CancellationToken,
    fetcher: async_nats::Client,
    intake: tokio::task::JoinHandle<anyhow::Result<()>>,
    relay: tokio::task::JoinHandle<anyhow::Result<()>>,
    acker: Acker,
}

impl Pipeline {
    async fn start(
        options: &Options,
        scratch: &Scratch,
        mut db: PgConnection,
        origin: Instant,
    ) -> anyhow::Result<Pipeline> {
        let fetcher = connect(options, "whistle-ceiling-intake").await?;
        let publisher = context(
            connect(options, "whistle-ceiling-relay").await?,
            options.window,
        );
        // The consumer is read through the fetching connection, which publishes nothing else.
        let consumer: consumer::PullConsumer = jetstream::new(fetcher.clone())
            .get_stream(&scratch.in_stream)
            .await?
            .create_consumer(consumer::pull::Config {
                durable_name: Some(scratch.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            })
            .await
            .context("creating the pipeline's consumer")?;

        let shutdown = CancellationToken::new();
        let (events_tx, mut events_rx) = mpsc::channel::<Vec<Outgoing>>(8);
        let latency = Arc::new(Mutex::new(micros_histogram()));
        let (done_tx, done) = watch::channel(0u64);
        let (acks, acker) = {
            let (tx, mut rx) =
                mpsc::channel::<(PublishAckFuture, Option<u64>)>(options.window.max(2) - 1);
            let latency = latency.clone();
            let task = tokio::spawn(async move {
                let mut acked = 0;
                while let Some((ack, sent_us)) = rx.recv().await {
                    ack.await.context("event publish not acknowledged")?;
                    if let Some(sent_us) = sent_us {
                        let now_us = origin.elapsed().as_micros() as u64;
                        let _ = latency
                            .lock()
                            .expect("not poisoned")
                            .record(now_us.saturating_sub(sent_us).max(1));
                    }
                    acked += 1;
                    done_tx.send_replace(acked);
                }
                anyhow::Ok(acked)
            });
            (tx, task)
        };

        let relay = tokio::spawn(async move {
            while let Some(events) = events_rx.recv().await {
                for event in events {
                    let mut headers = HeaderMap::new();
                    headers.insert(NATS_MESSAGE_ID, event.event_id.as_str());
                    let ack = publisher
                        .publish_with_headers(event.subject, headers, event.payload)
                        .await
                        .context("publishing an event")?;
                    if acks.send((ack, event.sent_us)).await.is_err() {
                        bail!("the event acker stopped");
                    }
                }
            }
            Ok(())
        });

        let (batch_size, incidents, outbox, events_prefix) = (
            options.batch,
            scratch.incidents_table.clone(),
            scratch.outbox_table.clone(),
            scratch.events_prefix.clone(),
        );
        let stop = shutdown.clone();
        let intake = tokio::spawn(async move {
            let messages = consumer
                .stream()
                .max_messages_per_batch(batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await?;
            let mut chunks = messages.ready_chunks(batch_size);
            loop {
                let chunk = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    next = tokio::task::unconstrained(chunks.next()) => next,
                };
                let Some(chunk) = chunk else {
                    bail!("the pipeline's pull ended");
                };
                let mut batch = Vec::with_capacity(chunk.len());
                for message in chunk {
                    batch.push(message.map_err(|e| anyhow::anyhow!("pull: {e}"))?);
                }
                let now = chrono::Utc::now();
                let occurred_at = Some(whistle_proto::timestamp_from_unix_millis(
                    now.timestamp_millis(),
                ));
                let mut rows = Rows::default();
                let (mut event_ids, mut subjects, mut payloads) = (
                    Vec::with_capacity(batch.len()),
                    Vec::with_capacity(batch.len()),
                    Vec::with_capacity(batch.len()),
                );
                let mut outgoing = Vec::with_capacity(batch.len());
                for message in &batch {
                    let report = v1::Report::decode(message.payload.clone())
                        .context("decoding a scratch report")?;
                    let sent_us = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(SENT_HEADER))
                        .and_then(|v| v.as_str().parse().ok());
                    let (incident_id, event_id) = (Uuid::now_v7(), Uuid::now_v7());
                    rows.push(incident_id, &report, now);
                    let event = v1::Event {
                        event_id: event_id.to_string(),
                        kind: whistle_wire::kind::INCIDENT_REPORTED.to_owned(),
                        occurred_at,
                        incident_id: incident_id.to_string(),
                        grid_code: report.grid_code.clone(),
                        actor_id: report.reporter_id.clone(),
                        body: Some(v1::event::Body::IncidentReported(v1::IncidentReported {
                            report: Some(report),
                            ..Default::default()
                        })),
                        ..Default::default()
                    };
                    let subject = format!("{events_prefix}.{}", event.grid_code);
                    let payload = Bytes::from(event.encode_to_vec());
                    event_ids.push(event_id);
                    subjects.push(subject.clone());
                    payloads.push(payload.to_vec());
                    outgoing.push(Outgoing {
                        event_id: event.event_id,
                        subject,
                        payload,
                        sent_us,
                    });
                }
                let mut tx = db.begin().await?;
                rows.insert(&mut tx, &incidents).await?;
                sqlx::query(&format!(
                    "INSERT INTO {outbox} (event_id, subject, payload)
                     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])"
                ))
                .bind(event_ids)
                .bind(subjects)
                .bind(payloads)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                for message in &batch {
                    message
                        .ack()
                        .await
                        .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                }
                if events_tx.send(outgoing).await.is_err() {
                    bail!("the event relay stopped");
                }
            }
            Ok(())
        });
        Ok(Pipeline {
            done,
            latency,
            shutdown,
            fetcher,
            intake,
            relay,
            acker,
        })
    }

    fn completed(&self) -> u64 {
        *self.done.borrow()
    }

    /// Waits until `count` reports in all have their event acked.
    async fn wait_for(&self, count: u64, timeout: Duration) -> anyhow::Result<()> {
        let mut done = self.done.clone();
        let reached = tokio::time::timeout(timeout, async {
            done.wait_for(|n| *n >= count).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("the pipeline stopped after {} reports", self.completed()),
            Err(_) => bail!(
                "the pipeline did {} of {count} reports in {timeout:?}",
                self.completed()
            ),
        }
    }

    fn reset_latency(&self) {
        self.latency.lock().expect("not poisoned").reset();
    }

    /// Stops the pipeline; returns the first error any of its tasks met.
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.intake.await??;
        self.relay.await??;
        self.acker.await??;
        // The last acks are only queued on the connection.
        self.fetcher.flush().await?;
        Ok(())
    }
}

/// Raises the open-loop rate step by step until a step falls behind, by the rule of
/// `whistle load --find-max` (`judge_step`), letting the pipeline drain between steps.
async fn find_max(
    plan: &FindMaxPlan,
    open_loop: &mut OpenLoop<'_>,
    reports: &mut ReportFeed,
) -> anyhow::Result<FindMax> {
    let mut steps = Vec::new();
    let mut rate = Some(plan.steps.start).filter(|r| *r > 0.0 && *r <= plan.steps.max);
    while let Some(offered) = rate {
        let (at_rate, backlog) = open_loop
            .run(
                reports,
                offered,
                plan.step_duration,
                Some(plan.sample_every),
            )
            .await?;
        let verdict = judge_step(&backlog, at_rate.latency_ms.p99, plan.bounds);
        eprintln!(
            "ceiling pipeline at {}: achieved {}, p99 {:.1} ms, backlog at end {} — {verdict}",
            format_rate(offered),
            format_rate(at_rate.achieved_rate),
            at_rate.latency_ms.p99,
            backlog.last().map_or("?".to_owned(), |b| thousands(*b)),
        );
        rate = verdict
            .sustained()
            .then(|| plan.steps.next(offered))
            .flatten();
        steps.push(Step {
            at_rate,
            backlog_samples: backlog,
            verdict,
        });
    }
    let verdicts: Vec<(f64, Verdict)> = steps
        .iter()
        .map(|s| (s.at_rate.offered_rate, s.verdict))
        .collect();
    Ok(FindMax {
        bounds: plan.bounds,
        step_seconds: plan.step_duration.as_secs_f64(),
        highest_sustained_rate: highest_sustained(&verdicts),
        steps,
    })
}

/// Reports sent open loop into the running pipeline, on a connection of their own.
struct OpenLoop<'p> {
    sender: jetstream::Context,
    window: usize,
    /// The pipeline's consumer, for its backlog.
    consumer: (String, String),
    pipeline: &'p Pipeline,
    origin: Instant,
}

impl<'p> OpenLoop<'p> {
    async fn new(
        options: &Options,
        scratch: &Scratch,
        pipeline: &'p Pipeline,
        origin: Instant,
    ) -> anyhow::Result<OpenLoop<'p>> {
        Ok(OpenLoop {
            sender: context(
                connect(options, "whistle-ceiling-load").await?,
                options.window,
            ),
            window: options.window,
            consumer: (scratch.in_stream.clone(), scratch.consumer.clone()),
            pipeline,
            origin,
        })
    }

    /// Sends at `rate` for `duration` and waits for the events; with `sample_every`, also
    /// samples the consumer's backlog (pending + awaiting ack) while sending, the last sample
    /// when sending stops.
    async fn run(
        &mut self,
        reports: &mut ReportFeed,
        rate: f64,
        duration: Duration,
        sample_every: Option<Duration>,
    ) -> anyhow::Result<(AtRate, Vec<u64>)> {
        self.pipeline.reset_latency();
        let before = self.pipeline.completed();
        let total = (duration.as_secs_f64() * rate).round() as u64;
        let (acks, acker) = spawn_acker(self.window, |_| {});
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut samples = Vec::new();
        let started = Instant::now();
        let mut next_sample = sample_every.map(|every| started + every);
        let mut sent = 0u64;
        while sent < total {
            ticker.tick().await;
            if let Some(at) = next_sample.filter(|at| Instant::now() >= *at) {
                samples.push(self.backlog().await?);
                next_sample = sample_every.map(|every| at + every);
            }
            let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
            while sent < due {
                let (subject, report) = reports.next();
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
                let sent_us = self.origin.elapsed().as_micros() as u64;
                headers.insert(SENT_HEADER, sent_us.to_string().as_str());
                let ack = self
                    .sender
                    .publish_with_headers(subject, headers, report.encode_to_vec().into())
                    .await
                    .context("publishing a report")?;
                acks.send(ack).await.context("the report acker stopped")?;
                sent += 1;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if sample_every.is_some() {
            samples.push(self.backlog().await?);
        }
        drop(acks);
        acker.await??;
        // A step that fell behind drains its backlog before the next starts.
        self.pipeline
            .wait_for(before + total, duration.max(Duration::from_secs(60)))
            .await?;
        let latency = Latency::from_micros(&self.pipeline.latency.lock().expect("not poisoned"));
        let at_rate = AtRate {
            offered_rate: rate,
            achieved_rate: sent as f64 / seconds,
            seconds,
            sent,
            completed: self.pipeline.completed() - before,
            latency_ms: latency,
        };
        Ok((at_rate, samples))
    }

    async fn backlog(&self) -> anyhow::Result<u64> {
        let (stream, consumer) = &self.consumer;
        let mut consumer: consumer::PullConsumer = self
            .sender
            .get_consumer_from_stream(consumer, stream)
            .await
            .context("finding the pipeline's consumer")?;
        let info = consumer
            .info()
            .await
            .context("reading the consumer's backlog")?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

/// The figures as a table for people.
pub fn render(f: &Figures) -> String {
    let mut out = format!(
        "ceiling of this machine — nats-server {}, PostgreSQL {}; load average {} before, {} after\n",
        f.nats_server,
        f.postgres,
        f.load_average_before.as_deref().unwrap_or("?"),
        f.load_average_after.as_deref().unwrap_or("?"),
    );
    let rows: [(String, &Option<Throughput>, &str); 7] = [
        (
            format!(
                "JetStream publish, {} acks in flight, {} B",
                f.window, f.message_size
            ),
            &f.publish_pipelined,
            "msg",
        ),
        (
            format!("JetStream publish, each ack awaited, {} B", f.message_size),
            &f.publish_awaited,
            "msg",
        ),
        (
            format!("JetStream pull, batch {}, no acks", f.batch),
            &f.pull,
            "msg",
        ),
        (
            format!("JetStream pull, batch {}, each message acked", f.batch),
            &f.pull_acked,
            "msg",
        ),
        (
            format!("PostgreSQL UNNEST insert, {} rows a transaction", f.batch),
            &f.unnest_insert,
            "rows",
        ),
        (
            "PostgreSQL, one row a transaction".to_owned(),
            &f.row_per_transaction,
            "rows",
        ),
        (
            format!(
                "minimal pipeline (pull {} → UNNEST + outbox → ack → publish events)",
                f.batch
            ),
            &f.pipeline,
            "reports",
        ),
    ];
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    for (label, figure, unit) in rows {
        if let Some(t) = figure {
            out.push_str(&format!(
                "  {label:<width$}  {:>9} {unit}/s  ({} in {:.2} s)\n",
                thousands(t.per_second.round() as u64),
                thousands(t.count),
                t.seconds
            ));
        }
    }
    if let Some(r) = &f.pipeline_at_rate {
        out.push_str(&format!(
            "  minimal pipeline open loop at {} (achieved {}, {} of {} done): report → event acked {}\n",
            format_rate(r.offered_rate),
            format_rate(r.achieved_rate),
            thousands(r.completed),
            thousands(r.sent),
            r.latency_ms
        ));
    }
    if let Some(cpu) = &f.pipeline_cpu {
        out.push_str(&format!("  minimal pipeline drain, CPU: {cpu}\n"));
    }
    if let Some(found) = &f.pipeline_find_max {
        for step in &found.steps {
            let r = &step.at_rate;
            out.push_str(&format!(
                "  minimal pipeline open loop at {} (achieved {}): p99 {:.1} ms, backlog at end {} — {}\n",
                format_rate(r.offered_rate),
                format_rate(r.achieved_rate),
                r.latency_ms.p99,
                step.backlog_samples
                    .last()
                    .map_or("?".to_owned(), |b| thousands(*b)),
                step.verdict
            ));
        }
        out.push_str(&format!(
            "  minimal pipeline, highest sustained open-loop rate: {}\n",
            found
                .highest_sustained_rate
                .map_or("none".to_owned(), format_rate)
        ));
    }
    out
}
