//! `whistle bench year`: a simulated year on an accelerated clock, with the resident memory of
//! dispatch and the query service sampled every simulated week — whether their memory stays
//! bounded once the aggregates' windows are full (docs/benchmarks.md).
//!
//! Dispatch and the query service run on the same `WHISTLE_BENCH_CLOCK` as this command (a
//! [`ScaledClock`]: a start, a wall-clock anchor and a speed), so the three agree on the simulated
//! time. Grid workers file `--reports-per-day` reports each simulated day, stamped with the
//! simulated time; every incident is then played to a terminal state, so the open set stays
//! small and what grows is only what the services keep of the past: the level that handles it
//! resolves it as soon as it arrives there, a summoned department reports in and resolves its
//! task, the grid worker follows up a share of the resolutions (satisfied: closed) and leaves the
//! rest to the follow-up window (closed unverified).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
    HeaderMap,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt as _;
use prost::Message as _;
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use whistle_domain::AreaCode;
use whistle_proto::v1::{self, command::Body, event::Body as EventBody};
use whistle_wire::{Clock as _, CommandClient, ScaledClock};

use crate::{
    commands,
    generator::{Feed, Mix},
    simulate::plan,
    Connection,
};

#[derive(Debug, clap::Args)]
pub struct YearArgs {
    /// The accelerated clock dispatch and the query service run on:
    /// `start=RFC3339,anchor=RFC3339,speed=N`. The year starts at `start`.
    #[arg(long, env = "WHISTLE_BENCH_CLOCK")]
    pub clock: ScaledClock,
    /// Simulated days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Reports filed per simulated day (the year: 10,000 a day, 3.65 million).
    #[arg(long, default_value_t = 10_000)]
    pub reports_per_day: u64,
    /// Share of resolutions the grid worker follows up (satisfied); the others close
    /// unverified when the follow-up window runs out.
    #[arg(long, default_value_t = 0.5)]
    pub verify_share: f64,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Random seed of the report mix.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The process whose memory is sampled as dispatch; default the one process named
    /// whistle-dispatch.
    #[arg(long)]
    pub dispatch_pid: Option<u32>,
    /// The process sampled as the query service; default the one process named whistle-query.
    #[arg(long)]
    pub query_pid: Option<u32>,
    /// The query service's `/metrics` (e.g. `http://127.0.0.1:50051/metrics`): adds the live
    /// aggregates' sizes (incidents live and settled, scoreboard months) to each sample.
    #[arg(long)]
    pub query_metrics: Option<String>,
    /// Also write the weekly samples to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One weekly sample.
struct Sample {
    week: u32,
    simulated: DateTime<Utc>,
    wall: Duration,
    reports: u64,
    commands_ok: u64,
    commands_refused: u64,
    dispatch_kib: Option<u64>,
    query_kib: Option<u64>,
    sizes: Option<Sizes>,
}

/// The live aggregates' sizes, from the query service's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Sizes {
    live: u64,
    settled: u64,
    months: u64,
}

impl Sizes {
    /// From the text exposition format; `None` when the service does not report them.
    fn parse(text: &str) -> Option<Sizes> {
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().parse::<u64>().ok())
        };
        Some(Sizes {
            live: value("whistle_query_aggregate_incidents{state=\"live\"}")?,
            settled: value("whistle_query_aggregate_incidents{state=\"settled\"}")?,
            months: value("whistle_query_aggregate_scoreboard_months")?,
        })
    }
}

/// `GET` over plain HTTP/1.1, the body; enough for a local `/metrics`.
async fn http_get(url: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url
        .strip_prefix("http://")
        .context("--query-metrics takes an http:// URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(
            format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (_, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    Ok(body.to_owned())
}

impl Sample {
    const CSV_HEADER: &'static str = "week,simulated,wall_s,reports,commands_ok,commands_refused,\
                                      dispatch_rss_kib,query_rss_kib,incidents_live,incidents_settled,scoreboard_months";

    fn csv(&self) -> String {
        let kib = |k: Option<u64>| k.map_or(String::new(), |k| k.to_string());
        let sizes = self.sizes.map_or(",,".to_owned(), |s| {
            format!("{},{},{}", s.live, s.settled, s.months)
        });
        format!(
            "{},{},{:.0},{},{},{},{},{},{sizes}",
            self.week,
            self.simulated.format("%Y-%m-%d"),
            self.wall.as_secs_f64(),
            self.reports,
            self.commands_ok,
            self.commands_refused,
            kib(self.dispatch_kib),
            kib(self.query_kib)
        )
    }

    fn line(&self) -> String {
        let mib =
            |k: Option<u64>| k.map_or("—".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        let sizes = self.sizes.map_or(String::new(), |s| {
            format!(
                "  aggregates: {} live, {} settled, {} months",
                s.live, s.settled, s.months
            )
        });
        format!(
            "week {:>3}  {}  wall {:>6.0} s  reports {:>9}  commands {:>9} ok {:>6} refused  dispatch {:>7} MiB  query {:>7} MiB{sizes}",
            self.week,
            self.simulated.format("%Y-%m-%d"),
            self.wall.as_secs_f64(),
            self.reports,
            self.commands_ok,
            self.commands_refused,
            mib(self.dispatch_kib),
            mib(self.query_kib)
        )
    }
}

/// `VmRSS` of a process in KiB, from `/proc/PID/status`; `None` once it is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// The one process whose command name (`/proc/PID/comm`, at most 15 bytes) is `comm`: with
/// others' stacks on the same machine, an ambiguous name is an error, not a guess.
fn pid_named(comm: &str) -> anyhow::Result<u32> {
    let short = &comm[..comm.len().min(15)];
    let mut found = Vec::new();
    for (pid, dir) in whistle_cli::cpu::running() {
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim() == short {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process named {comm} runs here"),
        several => bail!("several processes named {comm} ({several:?}); name one with --dispatch-pid or --query-pid"),
    }
}

/// What the run has done so far.
#[derive(Default)]
struct Counts {
    reports: AtomicU64,
    publish_errors: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    unanswered: AtomicU64,
}

struct Year {
    clock: ScaledClock,
    commands: CommandClient,
    permits: Arc<tokio::sync::Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
    counts: Counts,
    verify_share: f64,
    rng: std::sync::Mutex<StdRng>,
    /// The latest version seen of each open incident, so that a command still waiting for its
    /// turn when the incident has moved on is dropped instead of refused as stale.
    versions: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Year {
    /// Sends a command in a task of its own (at most `--concurrency` at once); each step of a
    /// sequence only when the previous one was applied.
    fn send(self: &Arc<Self>, incident: &str, steps: Vec<(String, u64, Body)>) {
        let year = self.clone();
        let incident = incident.to_owned();
        self.tracker.spawn(async move {
            let Ok(_permit) = year.permits.acquire().await else {
                return;
            };
            let expected = steps.first().map_or(0, |(_, version, _)| *version);
            let latest = year
                .versions
                .lock()
                .expect("not poisoned")
                .get(&incident)
                .copied();
            if expected > 0 && latest.is_some_and(|latest| latest > expected) {
                return;
            }
            for (actor, expected_version, body) in steps {
                let command = v1::Command {
                    command_id: uuid::Uuid::now_v7().to_string(),
                    actor_id: actor,
                    incident_id: incident.clone(),
                    expected_version,
                    body: Some(body),
                };
                let reply = tokio::select! {
                    _ = year.stop.cancelled() => return,
                    reply = year.commands.send(&command) => reply,
                };
                let counter = match reply.map(commands::outcome) {
                    Ok(Ok(_)) => &year.counts.ok,
                    Ok(Err(_)) => &year.counts.refused,
                    Err(_) => &year.counts.unanswered,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if !std::ptr::eq(counter, &year.counts.ok) {
                    return;
                }
            }
        });
    }

    /// The level now handling an incident resolves it (refused while a department's task is
    /// out: the department resolves that).
    fn resolve_at_level(self: &Arc<Self>, event: &v1::Event, level: i32, version: u64) {
        let Ok(grid) = event.grid_code.parse::<AreaCode>() else {
            return;
        };
        let Some(actor) = plan::level_actor(&grid, crate::simulate::level_of(level)) else {
            return;
        };
        let body = Body::Resolve(v1::Resolve {
            task_id: String::new(),
            note: "基准测试: 当级办结".into(),
            photo_ids: Vec::new(),
        });
        self.send(&event.incident_id, vec![(actor, version, body)]);
    }

    fn on_event(self: &Arc<Self>, event: &v1::Event) {
        let handling = v1::IncidentStatus::Handling as i32;
        let state = match &event.body {
            Some(EventBody::IncidentReported(r)) => Some((r.version.max(1), r.status)),
            Some(EventBody::IncidentChanged(c)) => Some((c.version, c.status)),
            _ => None,
        };
        if let Some((version, status)) = state {
            let mut versions = self.versions.lock().expect("not poisoned");
            let terminal = [
                v1::IncidentStatus::Closed,
                v1::IncidentStatus::ClosedUnverified,
                v1::IncidentStatus::Duplicate,
            ]
            .iter()
            .any(|s| *s as i32 == status);
            if terminal {
                versions.remove(&event.incident_id);
            } else {
                let held = versions.entry(event.incident_id.clone()).or_default();
                *held = (*held).max(version);
            }
        }
        match &event.body {
            Some(EventBody::IncidentReported(reported)) if reported.status == handling => {
                self.resolve_at_level(event, reported.level, reported.version.max(1));
            }
            Some(EventBody::IncidentChanged(changed)) => match event.kind.as_str() {
                "incident.escalated" | "incident.reopened" if changed.status == handling => {
                    self.resolve_at_level(event, changed.level, changed.version);
                }
                "task.dispatched" => {
                    let Some(task) = &changed.task else { return };
                    let liaison = format!("li-{}", task.department_code);
                    let id = task.task_id.to_string();
                    let steps = vec![
                        (
                            liaison.clone(),
                            0,
                            Body::Accept(v1::Accept {
                                task_id: id.clone(),
                                note: String::new(),
                            }),
                        ),
                        (
                            liaison,
                            0,
                            Body::Resolve(v1::Resolve {
                                task_id: id,
                                note: "基准测试: 部门办结".into(),
                                photo_ids: Vec::new(),
                            }),
                        ),
                    ];
                    self.send(&event.incident_id, steps);
                }
                "incident.resolved" => {
                    let follow_up = self
                        .rng
                        .lock()
                        .expect("not poisoned")
                        .random_bool(self.verify_share.clamp(0.0, 1.0));
                    if follow_up {
                        let body = Body::Verify(v1::Verify {
                            satisfaction: v1::Satisfaction::Satisfied as i32,
                            note: String::new(),
                            tracking_code: String::new(),
                        });
                        let actor = format!("gw-{}", event.grid_code);
                        self.send(&event.incident_id, vec![(actor, changed.version, body)]);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    async fn follow(self: Arc<Self>, mut messages: consumer::pull::Ordered) {
        loop {
            let next = tokio::select! {
                _ = self.stop.cancelled() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    if let Ok(event) = v1::Event::decode(message.payload.clone()) {
                        self.on_event(&event);
                    }
                }
                Some(Err(e)) => {
                    eprintln!("year: reading events: {e}; the ordered consumer resumes")
                }
                None => return,
            }
        }
    }

    /// Files the reports due by the simulated time, stamped with it, until `total`.
    async fn report(
        self: Arc<Self>,
        js: jetstream::Context,
        mut feed: Feed,
        per_day: u64,
        total: u64,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        while sent < total {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = self.clock.now();
            let elapsed = (now - self.clock.start)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64;
            let due = ((elapsed / TimeDelta::days(1).num_microseconds().expect("fits") as f64)
                * per_day as f64) as u64;
            let mut acks = Vec::new();
            while sent < due.min(total) {
                sent += 1;
                let out = feed.next_at(0.0, now);
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, out.report_id.as_str());
                if out.json {
                    headers.insert("Content-Type", "application/json");
                }
                match js
                    .publish_with_headers(out.subject, headers, out.payload.into())
                    .await
                {
                    Ok(ack) => acks.push(ack),
                    Err(_) => {
                        self.counts.publish_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for ack in acks {
                let counter = match ack.await {
                    Ok(_) => &self.counts.reports,
                    Err(_) => &self.counts.publish_errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub async fn run(conn: &Connection, args: &YearArgs) -> anyhow::Result<()> {
    let dispatch_pid = match args.dispatch_pid {
        Some(pid) => pid,
        None => pid_named("whistle-dispatch")?,
    };
    let query_pid = match args.query_pid {
        Some(pid) => pid,
        None => pid_named("whistle-query")?,
    };
    anyhow::ensure!(
        args.days > 0 && args.reports_per_day > 0,
        "--days and --reports-per-day must be positive"
    );
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let client = crate::door::nats_admin(conn).await?;
    let js = jetstream::new(client.clone());
    let followers = crate::simulate::follow_new_events(&js).await?;
    let clock = args.clock;
    let year = Arc::new(Year {
        clock,
        commands: CommandClient::new(client.clone()),
        permits: Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1))),
        tracker: TaskTracker::new(),
        stop: CancellationToken::new(),
        counts: Counts::default(),
        verify_share: args.verify_share,
        rng: std::sync::Mutex::new(StdRng::seed_from_u64(seed ^ 0x0ea7)),
        versions: std::sync::Mutex::default(),
    });
    for messages in followers {
        year.tracker.spawn(year.clone().follow(messages));
    }
    let total = u64::from(args.days) * args.reports_per_day;
    year.tracker.spawn(year.clone().report(
        js,
        Feed::new(&policy, seed, Mix::CITY),
        args.reports_per_day,
        total,
    ));

    let mut csv = match &args.csv {
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            use std::io::Write as _;
            writeln!(file, "{}", Sample::CSV_HEADER)?;
            Some(file)
        }
        None => None,
    };
    eprintln!(
        "bench year: {} days × {} reports a day on the clock {clock} (a simulated day is {:.1} s), dispatch pid {dispatch_pid}, query pid {query_pid}, seed {seed}",
        args.days,
        args.reports_per_day,
        clock.wall(TimeDelta::days(1)).as_secs_f64()
    );
    let wall_start = Instant::now();
    let weeks = args.days.div_ceil(7);
    let mut samples = Vec::new();
    for week in 0..=weeks {
        if week > 0 {
            let at = clock.start + TimeDelta::days(i64::from((week * 7).min(args.days)));
            let wait = at - clock.now();
            let stopped = tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                _ = tokio::time::sleep(clock.wall(wait)) => false,
            };
            if stopped {
                eprintln!("stopping: Ctrl-C");
                break;
            }
        }
        let sizes = match &args.query_metrics {
            Some(url) => http_get(url)
                .await
                .ok()
                .and_then(|body| Sizes::parse(&body)),
            None => None,
        };
        let counts = &year.counts;
        let sample = Sample {
            week,
            simulated: clock.now(),
            wall: wall_start.elapsed(),
            reports: counts.reports.load(Ordering::Relaxed),
            commands_ok: counts.ok.load(Ordering::Relaxed),
            commands_refused: counts.refused.load(Ordering::Relaxed),
            dispatch_kib: rss_kib(dispatch_pid),
            query_kib: rss_kib(query_pid),
            sizes,
        };
        println!("{}", sample.line());
        if let Some(file) = &mut csv {
            use std::io::Write as _;
            writeln!(file, "{}", sample.csv())?;
            file.flush()?;
        }
        samples.push(sample);
    }
    year.stop.cancel();
    year.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), year.tracker.wait()).await;
    let peak = |of: fn(&Sample) -> Option<u64>| {
        let mib = |k: Option<u64>| {
            k.map_or("—".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        let first = samples.first().and_then(of);
        let last = samples.last().and_then(of);
        let max = samples.iter().filter_map(of).max();
        format!(
            "first {}, last {}, highest {}",
            mib(first),
            mib(last),
            mib(max)
        )
    };
    println!("dispatch RSS: {}", peak(|s| s.dispatch_kib));
    println!("query RSS: {}", peak(|s| s.query_kib));
    let counts = &year.counts;
    println!(
        "reports {} (publish errors {}), commands applied {}, refused {}, unanswered {}",
        counts.reports.load(Ordering::Relaxed),
        counts.publish_errors.load(Ordering::Relaxed),
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.unanswered.load(Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregates_sizes_are_read_from_the_query_service_s_metrics() {
        let text = "# HELP whistle_query_aggregate_incidents Incidents …\n\
                    whistle_query_aggregate_incidents{state=\"live\"} 12\n\
                    whistle_query_aggregate_incidents{state=\"settled\"} 340\n\
                    whistle_query_aggregate_scoreboard_months 13\n";
        let sizes = Sizes::parse(text).unwrap();
        assert_eq!((sizes.live, sizes.settled, sizes.months), (12, 340, 13));
        // A query service from before the sizes were reported.
        assert!(Sizes::parse("whistle_query_event_feed_sequence 5\n").is_none());
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
