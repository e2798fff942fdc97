//! `whistle bench`: benchmarks of the query service (not timed tests).
//!
//! - `fill` writes synthetic incidents straight into PostgreSQL, a million in a minute or two,
//!   so that queries can be measured at a city's scale without running intake for hours;
//! - `query` calls `GetOverview` or `ListIncidents` over gRPC and prints the latency percentiles;
//! - `watch` holds many `WatchEvents` streams while something else (`whistle load`) publishes
//!   reports, and checks that every stream received every event;
//! - `ceiling` measures the minimal pipeline and its parts on this machine
//!   (`whistle_cli::ceiling`), the yardstick for the platform's own figures;
//! - `timers` fills incidents with pending timers, some due in a window, and measures how late
//!   the running dispatch fires each deadline;
//! - `year` runs a simulated year on an accelerated clock and samples the services' memory
//!   every simulated week (`bench/year.rs`).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use whistle_cli::{ceiling, fill};
use whistle_domain::Level;
use whistle_proto::{
    v1::{self, command_center_client::CommandCenterClient},
    Bearer,
};

use crate::{connect_db, Connection};

mod timers;
mod year;

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Write synthetic incidents (with the timeline their status implies) for query benchmarks.
    Fill {
        /// How many incidents to add.
        #[arg(long, default_value_t = 1_000_000)]
        incidents: u64,
        /// Spread their creation over this many days before now.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Also write each incident's report, for `bench query --rpc hotspots` (每月一题 reads
        /// reports); off by default, as the earlier figures were measured without them.
        #[arg(long)]
        reports: bool,
    },
    /// Latency of one of the read RPCs the screens and workbenches call.
    Query {
        #[arg(long, value_enum, default_value_t = ReadRpc::Overview)]
        rpc: ReadRpc,
        /// Area for the requests; default the token's.
        #[arg(long, default_value = "")]
        area: String,
        /// `--rpc tasks`: the department whose open tasks are listed (a liaison's token may
        /// leave it out: its own).
        #[arg(long, default_value = "")]
        department: String,
        /// `--rpc overdue`: items a call asks for (0: the service's most, 5,000).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        #[arg(long, default_value_t = 2_000)]
        requests: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: u64,
    },
    /// Many WatchEvents streams at once: each must receive every event, in order.
    Watch {
        #[arg(long, default_value_t = 200)]
        streams: u64,
        /// HTTP/2 connections the streams share, as behind a proxy that multiplexes screens;
        /// 0 opens one per stream, as separate screens do.
        #[arg(long, default_value_t = 0)]
        connections: u64,
        /// How long to hold the streams open.
        #[arg(long, value_parser = crate::parse_duration, default_value = "60s")]
        duration: Duration,
    },
    /// The ceiling of this machine: JetStream publish and pull, PostgreSQL inserts, and the
    /// minimal pipeline end to end, on scratch streams and tables removed afterwards.
    Ceiling(CeilingArgs),
    /// Timer firing: fill incidents whose timers are pending, a share of them due in a window,
    /// then measure from the timeline how late the running dispatch fires each deadline.
    Timers(TimersArgs),
    /// A simulated year on an accelerated clock (`WHISTLE_BENCH_CLOCK`, shared with dispatch and
    /// the query service): reports and the commands that close their incidents, and the
    /// resident memory of dispatch and the query service every simulated week.
    Year(year::YearArgs),
}

#[derive(Debug, clap::Args)]
pub struct TimersArgs {
    /// Incidents to add, each opened by the engine with its timers pending.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// How many of them have their first deadline inside the measured window.
    #[arg(long, default_value_t = 60_000)]
    pub due: u64,
    /// The window over which the due deadlines are spread evenly; 0s puts them all at one
    /// instant (a burst, to measure the firing rate).
    #[arg(long, value_parser = crate::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// The first deadline (RFC 3339); by default `--lead` after the fill ends.
    #[arg(long)]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// How long after the end of the fill the first deadline falls (without `--start`).
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    pub lead: Duration,
    /// How long to wait after the last deadline for the rest to fire.
    #[arg(long, value_parser = crate::parse_duration, default_value = "60s")]
    pub grace: Duration,
    /// Incidents inserted per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    /// Messages published with pipelined acks (then read back by the pull).
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Messages published awaiting each ack.
    #[arg(long, default_value_t = 10_000)]
    pub awaited: u64,
    /// Rows inserted with UNNEST, a batch a transaction.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Rows inserted one per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub single_rows: u64,
    /// Reports through the minimal pipeline as fast as it goes.
    #[arg(long, default_value_t = 150_000)]
    pub reports: u64,
    /// Open-loop rate (reports/s) of the pipeline's latency run; 0 skips it.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// How long the latency run sends.
    #[arg(long, value_parser = crate::parse_duration, default_value = "20s")]
    pub latency_duration: Duration,
    /// Pull and insert batch size.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Publish acks in flight.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Payload bytes of the raw publish and pull.
    #[arg(long, default_value_t = 300)]
    pub message_size: usize,
    /// After the drain, search the pipeline's highest sustained open-loop rate as `whistle load
    /// --find-max` searches the platform's (same options; ignores --rate and --latency-duration).
    #[arg(long)]
    pub find_max: bool,
    #[command(flatten)]
    pub search: crate::load::SearchArgs,
    /// --find-max: how often to sample the pipeline consumer's backlog.
    #[arg(long, value_parser = crate::parse_duration, default_value = "1s")]
    pub sample_every: Duration,
    /// Also measure the CPU every process of this machine spent per report of the drain.
    #[arg(long)]
    pub cpu: bool,
    /// Only these parts (comma-separated): nats, postgres, pipeline. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CeilingArgs {
    pub fn options(&self, conn: &Connection) -> anyhow::Result<ceiling::Options> {
        for part in &self.only {
            if !matches!(part.as_str(), "nats" | "postgres" | "pipeline") {
                bail!("--only takes nats, postgres and pipeline, not {part:?}");
            }
        }
        let wanted = |part: &str| self.only.is_empty() || self.only.iter().any(|p| p == part);
        Ok(ceiling::Options {
            nats_url: conn.nats_url.clone(),
            credentials: conn.admin_credentials(),
            database_url: conn.database_url.clone(),
            messages: self.messages,
            awaited: self.awaited,
            rows: self.rows,
            single_rows: self.single_rows,
            reports: self.reports,
            rate: self.rate,
            latency_duration: self.latency_duration,
            batch: self.batch,
            window: self.window,
            message_size: self.message_size,
            parts: ceiling::Parts {
                nats: wanted("nats"),
                postgres: wanted("postgres"),
                pipeline: wanted("pipeline"),
            },
            find_max: self.find_max.then(|| self.search.plan(self.sample_every)),
            cpu: self.cpu,
        })
    }
}

/// The query service and the token of `--query-url` and `--token`.
#[derive(Debug)]
pub struct Target {
    query_url: String,
    token: String,
}

type Authorized = InterceptedService<Channel, Bearer>;
type Client = CommandCenterClient<Authorized>;

impl Target {
    fn of(conn: &Connection) -> anyhow::Result<Target> {
        Ok(Target {
            query_url: conn.query_url().to_owned(),
            token: conn.token()?.to_owned(),
        })
    }

    /// A new HTTP/2 connection that sends the token with every call.
    async fn connect(&self) -> anyhow::Result<Authorized> {
        let channel = Channel::from_shared(self.query_url.clone())
            .context("--query-url")?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.query_url))?;
        let bearer = Bearer::new(&self.token).context("the token is not ASCII")?;
        Ok(InterceptedService::new(channel, bearer))
    }

    async fn client(&self) -> anyhow::Result<Client> {
        Ok(CommandCenterClient::new(self.connect().await?))
    }
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Fill {
            incidents,
            days,
            reports,
        } => fill(conn, incidents, days, reports).await,
        Args::Query {
            rpc,
            area,
            department,
            page_size,
            requests,
            concurrency,
        } => {
            let what = Read {
                rpc,
                area,
                department,
                page_size,
            };
            query(&Target::of(conn)?, what, requests, concurrency).await
        }
        Args::Watch {
            streams,
            connections,
            duration,
        } => watch(&Target::of(conn)?, streams, connections, duration).await,
        Args::Ceiling(args) => {
            let figures = ceiling::run(&args.options(conn)?).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                print!("{}", ceiling::render(&figures));
            }
            Ok(())
        }
        Args::Timers(args) => timers::run(conn, &args).await,
        Args::Year(args) => year::run(conn, &args).await,
    }
}

async fn fill(conn: &Connection, incidents: u64, days: u32, reports: bool) -> anyhow::Result<()> {
    const BATCH: u64 = 20_000;
    let pool = connect_db(conn).await?;
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let dataset = whistle_domain::ordos::dataset();
    let grids: Vec<String> = dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Grid)
        .map(|u| u.code.to_string())
        .collect();
    let categories: Vec<String> = policy.categories().map(|c| c.code.to_string()).collect();
    let departments = fill::summoned_departments(&policy, &dataset)?;
    let started = Instant::now();
    let mut written = 0;
    while written < incidents {
        let n = BATCH.min(incidents - written);
        fill::insert(&pool, &grids, &categories, &departments, n, days, reports)
            .await
            .context("inserting synthetic incidents")?;
        written += n;
        eprint!(
            "\r{written}/{incidents} incidents ({:.0}/s)",
            written as f64 / started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    sqlx::query("ANALYZE incidents, timeline, tasks, reports")
        .execute(&pool)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM incidents")
        .fetch_one(&pool)
        .await?;
    println!(
        "added {incidents} synthetic incidents in {:.1}s; {total} incidents in the database",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn print_latency(label: &str, h: &Histogram<u64>, elapsed: Duration) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{label}: {} requests in {:.1}s ({:.0}/s); latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        h.len(),
        elapsed.as_secs_f64(),
        h.len() as f64 / elapsed.as_secs_f64(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    );
}

/// The read RPCs `bench query` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadRpc {
    /// GetOverview.
    Overview,
    /// ListIncidents, the first page of 50.
    List,
    /// ListIncidents, a page and the next four by token (each page timed).
    ListPages,
    /// GetScoreboard, this month's departments.
    Scoreboard,
    /// GetScoreboard, this month's streets.
    ScoreboardStreets,
    /// GetTrend, 24 hours.
    Trend,
    /// GetGridMap.
    GridMap,
    /// ListOverdue.
    Overdue,
    /// ListTasks, a department's open tasks.
    Tasks,
    /// GetIncident, cycling through the newest 500 incidents of the area.
    Incident,
    /// GetOrgTree, the area and two levels below it.
    OrgTree,
    /// ListHotspots, this month's proposal (每月一题) from the 24 months before it: the same
    /// reading and analysis as the first adoption of a month does city-wide.
    Hotspots,
}

/// What `bench query` asks for.
struct Read {
    rpc: ReadRpc,
    area: String,
    department: String,
    page_size: u32,
}

impl Read {
    /// Makes one call (`pages` of them for `list-pages`), recording each's latency; `ids` are
    /// the incidents `incident` cycles through, `n` this call's number.
    async fn call(
        &self,
        client: &mut Client,
        ids: &[String],
        n: u64,
        h: &mut Histogram<u64>,
    ) -> anyhow::Result<()> {
        let area = self.area.clone();
        let mut token = String::new();
        let pages = if self.rpc == ReadRpc::ListPages { 5 } else { 1 };
        for _ in 0..pages {
            let sent = Instant::now();
            match self.rpc {
                ReadRpc::Overview => {
                    client
                        .get_overview(v1::GetOverviewRequest {
                            area_code: area.clone(),
                            window: None,
                        })
                        .await?;
                }
                ReadRpc::List | ReadRpc::ListPages => {
                    token = client
                        .list_incidents(v1::ListIncidentsRequest {
                            area_code: area.clone(),
                            page_size: 50,
                            page_token: token.clone(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .next_page_token;
                }
                ReadRpc::Scoreboard | ReadRpc::ScoreboardStreets => {
                    let kind = match self.rpc {
                        ReadRpc::Scoreboard => v1::ScoreboardKind::Departments,
                        _ => v1::ScoreboardKind::Streets,
                    };
                    client
                        .get_scoreboard(v1::GetScoreboardRequest {
                            area_code: area.clone(),
                            month: String::new(),
                            kind: kind as i32,
                        })
                        .await?;
                }
                ReadRpc::Trend => {
                    client
                        .get_trend(v1::GetTrendRequest {
                            area_code: area.clone(),
                            hours: 24,
                        })
                        .await?;
                }
                ReadRpc::GridMap => {
                    client
                        .get_grid_map(v1::GetGridMapRequest {
                            area_code: area.clone(),
                        })
                        .await?;
                }
                ReadRpc::Overdue => {
                    client
                        .list_overdue(v1::ListOverdueRequest {
                            area_code: area.clone(),
                            page_size: self.page_size,
                        })
                        .await?;
                }
                ReadRpc::Tasks => {
                    client
                        .list_tasks(v1::ListTasksRequest {
                            department_code: self.department.clone(),
                            ..Default::default()
                        })
                        .await?;
                }
                ReadRpc::Incident => {
                    client
                        .get_incident(v1::GetIncidentRequest {
                            incident_id: ids[(n % ids.len() as u64) as usize].clone(),
                        })
                        .await?;
                }
                ReadRpc::OrgTree => {
                    client
                        .get_org_tree(v1::GetOrgTreeRequest {
                            root_code: area.clone(),
                            depth: 2,
                        })
                        .await?;
                }
                ReadRpc::Hotspots => {
                    client
                        .list_hotspots(v1::ListHotspotsRequest {
                            area_code: area.clone(),
                            month: String::new(),
                            page_size: 10,
                        })
                        .await?;
                }
            }
            h.record(sent.elapsed().as_micros().max(1) as u64)?;
        }
        Ok(())
    }

    /// The incidents `incident` reads: the newest 500 of the area.
    async fn incident_ids(&self, client: &mut Client) -> anyhow::Result<Vec<String>> {
        if self.rpc != ReadRpc::Incident {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = client
            .list_incidents(v1::ListIncidentsRequest {
                area_code: self.area.clone(),
                page_size: 500,
                ..Default::default()
            })
            .await?
            .into_inner()
            .incidents
            .into_iter()
            .map(|i| i.incident_id)
            .collect();
        anyhow::ensure!(!ids.is_empty(), "no incident in the area to read");
        Ok(ids)
    }
}

async fn query(target: &Target, read: Read, requests: u64, concurrency: u64) -> anyhow::Result<()> {
    let mut client = target.client().await?;
    let ids = Arc::new(read.incident_ids(&mut client).await?);
    let read = Arc::new(read);
    let next = Arc::new(AtomicU64::new(0));
    let merged = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (mut client, next, merged) = (client.clone(), next.clone(), merged.clone());
            let (read, ids) = (read.clone(), ids.clone());
            tokio::spawn(async move {
                let mut h = histogram();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    read.call(&mut client, &ids, n, &mut h).await?;
                }
                merged.lock().expect("not poisoned").add(&h)?;
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let h = merged.lock().expect("not poisoned").clone();
    let name = clap::ValueEnum::to_possible_value(&read.rpc)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    print_latency(&name, &h, started.elapsed());
    Ok(())
}

/// What one stream saw.
#[derive(Default)]
struct Seen {
    events: u64,
    first: Option<u64>,
    last: u64,
    out_of_order: u64,
    gaps: u64,
}

/// What the benchmark reads of a `WatchEventsResponse`: the sequence and the event's
/// `occurred_at`. Wire-compatible with the proto type (a oneof member decodes as an optional
/// field; prost skips the rest), so the client's cost per delivery stays small beside the
/// server's, which is what is measured.
#[derive(Clone, PartialEq, prost::Message)]
struct Delivery {
    #[prost(message, optional, tag = "1")]
    event: Option<DeliveredEvent>,
    /// A `Gap` (its contents are not needed).
    #[prost(bytes = "bytes", optional, tag = "2")]
    gap: Option<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DeliveredEvent {
    #[prost(uint64, tag = "1")]
    sequence: u64,
    #[prost(message, optional, tag = "2")]
    event: Option<Stamp>,
}

/// `whistle.v1.Event.occurred_at`.
#[derive(Clone, PartialEq, prost::Message)]
struct Stamp {
    #[prost(message, optional, tag = "3")]
    occurred_at: Option<prost_types::Timestamp>,
}

async fn watch(
    target: &Target,
    streams: u64,
    connections: u64,
    duration: Duration,
) -> anyhow::Result<()> {
    let connections = if connections == 0 {
        streams
    } else {
        connections.min(streams)
    };
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(target.connect().await?);
    }
    let latency = Arc::new(Mutex::new(histogram()));
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for n in 0..streams {
        // A clone shares its connection: streams go round the connections.
        let mut grpc = tonic::client::Grpc::new(channels[(n % connections) as usize].clone());
        let latency = latency.clone();
        tasks.push(tokio::spawn(async move {
            grpc.ready().await?;
            let mut stream = grpc
                .server_streaming(
                    tonic::Request::new(v1::WatchEventsRequest::default()),
                    tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/whistle.v1.CommandCenter/WatchEvents",
                    ),
                    tonic_prost::ProstCodec::<v1::WatchEventsRequest, Delivery>::default(),
                )
                .await?
                .into_inner();
            let mut seen = Seen::default();
            let mut h = histogram();
            let end = tokio::time::sleep_until(deadline);
            tokio::pin!(end);
            loop {
                let response = tokio::select! {
                    _ = &mut end => break,
                    next = stream.message() => match next? {
                        Some(response) => response,
                        None => bail!("the stream ended early"),
                    },
                };
                if response.gap.is_some() {
                    seen.gaps += 1;
                }
                let Some(event) = response.event else {
                    continue;
                };
                if seen.first.is_some() && event.sequence != seen.last + 1 {
                    seen.out_of_order += 1;
                }
                seen.first.get_or_insert(event.sequence);
                seen.last = event.sequence;
                seen.events += 1;
                if let Some(at) = event.event.and_then(|e| e.occurred_at) {
                    let at = at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000;
                    let now = chrono::Utc::now().timestamp_micros();
                    h.record(u64::try_from(now - at).unwrap_or(0).max(1))?;
                }
            }
            latency.lock().expect("not poisoned").add(&h)?;
            Ok(seen)
        }));
    }
    eprintln!(
        "{streams} streams on {connections} connections open for {duration:?}; run `whistle load` now"
    );
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await??);
    }
    let complete = all
        .iter()
        .filter(|s| {
            s.out_of_order == 0
                && s.gaps == 0
                && s.first.is_some_and(|f| s.last - f + 1 == s.events)
        })
        .count();
    let events: Vec<u64> = all.iter().map(|s| s.events).collect();
    println!(
        "{streams} streams: {complete} received every event in order with no gap; events per stream min {} max {}",
        events.iter().min().unwrap_or(&0),
        events.iter().max().unwrap_or(&0),
    );
    let h = latency.lock().expect("not poisoned").clone();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "event occurred → stream delivery, ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ({} deliveries)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    );
    if complete as u64 != streams {
        bail!("{} streams missed events", streams - complete as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_delivery_reads_the_sequence_and_time_of_a_watch_response_and_tells_a_gap() {
        let at = prost_types::Timestamp {
            seconds: 1_764_547_200,
            nanos: 5_000,
        };
        let event = v1::WatchEventsResponse {
            item: Some(v1::watch_events_response::Item::Event(v1::SequencedEvent {
                sequence: 42,
                event: Some(v1::Event {
                    kind: "incident.reported".into(),
                    occurred_at: Some(at),
                    ..Default::default()
                }),
            })),
        };
        let read = Delivery::decode(event.encode_to_vec().as_slice()).unwrap();
        let delivered = read.event.unwrap();
        assert_eq!(delivered.sequence, 42);
        assert_eq!(delivered.event.unwrap().occurred_at, Some(at));
        assert!(read.gap.is_none());

        let gap = v1::WatchEventsResponse {
            item: Some(v1::watch_events_response::Item::Gap(v1::Gap {
                from_sequence: 1,
                next_sequence: 9,
                reason: "expired".into(),
            })),
        };
        let read = Delivery::decode(gap.encode_to_vec().as_slice()).unwrap();
        assert!(read.event.is_none() && read.gap.is_some());
    }
}
