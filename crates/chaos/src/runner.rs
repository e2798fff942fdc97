//! The run: servers, replicas, load, the fault schedule, the drain and the final read.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
    HeaderMap,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use rand::{
    rngs::StdRng,
    seq::{IndexedRandom, SliceRandom},
    Rng, SeedableRng,
};
use serde::Serialize;
use sqlx::PgPool;
use whistle_domain::incident::Incident;
use whistle_proto::v1;

use crate::{
    checker::{self, EventSeen, Firing, History, PendingTimer, Published, Verdict},
    servers::{find_pg_bindir, NatsServer, PgCluster},
};

/// How to start one dispatch replica: a program and arguments; the runner adds the environment
/// (`WHISTLE_NATS_URL`, `DATABASE_URL`, `WHISTLE_POLICY`, `WHISTLE_ACK_WAIT_SECS`, `RUST_LOG`).
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// More environment for the replicas.
    pub env: Vec<(String, String)>,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long reports are published and faults injected.
    pub duration: Duration,
    /// Reports per second.
    pub rate: f64,
    /// `kill -9` of a dispatch replica at random moments (each restarted at once).
    pub kills: u32,
    pub seed: u64,
    /// The intake consumer's ack wait; a paused replica stays stopped longer than this.
    pub ack_wait: Duration,
    /// How long NATS, PostgreSQL and the whole dispatch fleet each stay down.
    pub outage: Duration,
    /// Every duration of the Ordos policy is divided by this, so deadlines fall during the run.
    pub time_divisor: u32,
    /// How many of the 1,564 grids reports come from.
    pub grids: usize,
    /// How many categories reports use.
    pub categories: usize,
    /// One report in this many is invalid (an unknown category or a grid mismatch).
    pub invalid_every: u64,
    pub nats_server: String,
    pub pg_bindir: Option<PathBuf>,
    pub dispatch: Launcher,
    /// Where servers keep their data and replicas their logs; a temp dir if unset.
    pub work_dir: Option<PathBuf>,
    /// Keep the work dir after a passing run (a failing one is always kept).
    pub keep: bool,
    /// Most time allowed to settle after the load.
    pub drain_timeout: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duration: Duration::from_secs(300),
            rate: 200.0,
            kills: 20,
            seed: 1,
            ack_wait: Duration::from_secs(10),
            outage: Duration::from_secs(6),
            time_divisor: 600,
            grids: 1564,
            categories: 4,
            invalid_every: 20,
            nats_server: std::env::var("WHISTLE_NATS_SERVER_BIN")
                .unwrap_or_else(|_| "nats-server".into()),
            pg_bindir: None,
            dispatch: Launcher {
                program: "whistle-dispatch".into(),
                args: vec![],
                env: vec![],
            },
            work_dir: None,
            keep: false,
            drain_timeout: Duration::from_secs(120),
            progress: false,
        }
    }
}

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// `kill -9` of a random running replica, restarted at once.
    Kill9,
    /// A second replica joins: two replicas race for reports, commands and timers.
    SecondReplicaUp,
    /// The second replica leaves (SIGTERM).
    SecondReplicaDown,
    /// `kill -9` of nats-server, down for the outage, started on the same store.
    NatsRestart,
    /// `pg_ctl stop -m immediate`, down for the outage, started again (crash recovery).
    PostgresRestart,
    /// SIGSTOP of the second replica for longer than the ack wait, then SIGCONT.
    Pause,
    /// `kill -9` of every replica, none for the outage: deadlines pass with nobody to fire them.
    DispatchOutage,
}

/// A fault at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// The schedule: the second replica runs from 15 % to 85 % of the run; NATS restarts at 30 %,
/// PostgreSQL at 50 %, the second replica is paused at 60 %, every replica is down at 75 %, and
/// the kills fall at random moments (seeded) between 5 % and 95 %.
pub fn plan(config: &Config) -> Vec<Planned> {
    let at = |fraction: f64| config.duration.mul_f64(fraction);
    let mut planned = vec![
        Planned {
            at: at(0.15),
            fault: Fault::SecondReplicaUp,
        },
        Planned {
            at: at(0.30),
            fault: Fault::NatsRestart,
        },
        Planned {
            at: at(0.50),
            fault: Fault::PostgresRestart,
        },
        Planned {
            at: at(0.60),
            fault: Fault::Pause,
        },
        Planned {
            at: at(0.75),
            fault: Fault::DispatchOutage,
        },
        Planned {
            at: at(0.85),
            fault: Fault::SecondReplicaDown,
        },
    ];
    let mut rng = StdRng::seed_from_u64(config.seed);
    for _ in 0..config.kills {
        planned.push(Planned {
            at: at(rng.random_range(0.05..0.95)),
            fault: Fault::Kill9,
        });
    }
    planned.sort_by_key(|p| p.at);
    planned
}

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds since the load started.
    pub at: f64,
    pub fault: Fault,
    pub detail: String,
    /// How long it was down or stopped, if it was.
    pub down: Option<f64>,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_secs: f64,
    pub rate: f64,
    pub time_divisor: u32,
    pub ack_wait_secs: f64,
    pub nats_server: String,
    pub faults: Vec<FaultRecord>,
    pub replica_starts: u32,
    /// Replicas that exited on their own (e.g. could not start while PostgreSQL was down), restarted.
    pub unexpected_exits: u32,
    /// Whether everything settled (nothing pending, nothing due, outbox empty) before the timeout.
    pub settled: bool,
    pub settle_secs: f64,
    pub incidents: u64,
    pub timer_firings: u64,
    pub verdict: Verdict,
    pub work_dir: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.settled && self.verdict.pass
    }

    /// The report for people.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let v = &self.verdict;
        let _ = writeln!(
            out,
            "whistle chaos: seed {}, {:.0} s at {} reports/s, policy durations / {}, ack wait {:.0} s, {}",
            self.seed, self.duration_secs, self.rate, self.time_divisor, self.ack_wait_secs, self.nats_server
        );
        let _ = writeln!(out, "\nfaults ({}):", self.faults.len());
        for f in &self.faults {
            let down = f
                .down
                .map(|d| format!(" (down {d:.1} s)"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>7.1} s  {:<20} {}{}",
                f.at,
                serde_json::to_value(f.fault)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                f.detail,
                down
            );
        }
        let _ = writeln!(
            out,
            "  replica starts {}, exits on their own {}",
            self.replica_starts, self.unexpected_exits
        );
        let r = &v.reports;
        let _ = writeln!(
            out,
            "\nreports: published {}, acked {}, not acked {}",
            r.published, r.acked, r.unacked
        );
        let _ = writeln!(
            out,
            "  ok {} (valid {}, invalid {}; landed without an ack {}), lost {}, duplicated {}, indeterminate {}, unknown ids {}",
            r.ok, r.valid_ok, r.invalid_ok, r.ok_unacked, r.lost, r.duplicated, r.indeterminate, r.unknown
        );
        let e = &v.events;
        let _ = writeln!(
            out,
            "events: {} in WHISTLE_EVENTS for {} incidents; duplicate ids {}, Nats-Msg-Id mismatches {}, orphans {}, version errors {}, left in outbox {}",
            e.total, e.incidents, e.duplicate_ids, e.msg_id_mismatches, e.orphans, e.version_errors, e.outbox_left
        );
        let t = &v.timers;
        let _ = writeln!(
            out,
            "timers: fired once {} (of which due during an outage {}), fired more than once {}, missed (0) {}, early {}, still pending {}, table/state mismatches {}",
            t.fired_once, t.due_during_outage, t.fired_more, t.missed, t.early, t.pending, t.table_mismatches
        );
        let _ = writeln!(
            out,
            "settled: {} after {:.1} s",
            if self.settled { "yes" } else { "NO" },
            self.settle_secs
        );
        for problem in &v.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
        for lost in &v.lost {
            let _ = writeln!(out, "  lost: {lost}");
        }
        for dup in &v.duplicated {
            let _ = writeln!(out, "  duplicated: {dup}");
        }
        let _ = writeln!(
            out,
            "\nverdict: {}   (work dir {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.work_dir
        );
        out
    }
}

/// One dispatch replica slot.
struct Replica {
    child: Option<Child>,
    /// Should be running (the supervisor restarts it if it exits).
    wanted: bool,
    paused: bool,
}

struct Fleet {
    launcher: Launcher,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    replicas: Vec<Replica>,
    starts: u32,
    unexpected_exits: u32,
}

impl Fleet {
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("dispatch-{i}.log")))?;
        let child = Command::new(&self.launcher.program)
            .args(&self.launcher.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(self.launcher.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.launcher.program.display()))?;
        self.replicas[i].child = Some(child);
        self.replicas[i].wanted = true;
        self.starts += 1;
        Ok(())
    }

    fn kill9(&mut self, i: usize) -> Option<u32> {
        let child = self.replicas[i].child.as_mut()?;
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        self.replicas[i].child = None;
        Some(pid)
    }

    fn signal(&self, i: usize, signal: &str) -> Option<u32> {
        let pid = self.replicas[i].child.as_ref()?.id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(pid)
    }

    /// Restarts replicas that should run and exited on their own.
    fn supervise(&mut self) {
        for i in 0..self.replicas.len() {
            let replica = &mut self.replicas[i];
            if !replica.wanted || replica.paused {
                continue;
            }
            let exited = match replica.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten().is_some(),
                None => true,
            };
            if exited {
                replica.child = None;
                self.unexpected_exits += 1;
                let _ = self.spawn(i);
            }
        }
    }

    /// SIGTERM, then up to `timeout` for a clean exit, then SIGKILL.
    fn terminate(&mut self, i: usize, timeout: Duration) {
        self.replicas[i].wanted = false;
        if self.replicas[i].paused {
            self.signal(i, "CONT");
            self.replicas[i].paused = false;
        }
        if self.signal(i, "TERM").is_none() {
            return;
        }
        let deadline = Instant::now() + timeout;
        if let Some(child) = self.replicas[i].child.as_mut() {
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.replicas[i].child = None;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            if self.replicas[i].paused {
                self.signal(i, "CONT");
            }
            self.kill9(i);
        }
    }
}

/// The Ordos policy with every duration divided: deadlines in seconds.
fn write_policy(dir: &Path, divisor: u32) -> anyhow::Result<PathBuf> {
    std::fs::write(
        dir.join("ordos.toml"),
        include_str!("../../../policy/ordos.toml"),
    )?;
    let path = dir.join("chaos.toml");
    std::fs::write(
        &path,
        format!(
            "# Written by whistle chaos: the Ordos policy with every duration divided by {divisor}.\n\
             base = \"ordos.toml\"\nversion = \"ordos-2026.1-chaos-{divisor}\"\n\
             name = \"chaos\"\ntime_divisor = {divisor}\n"
        ),
    )?;
    whistle_domain::policy::Policy::parse(&std::fs::read_to_string(&path)?, |_| {
        Some(include_str!("../../../policy/ordos.toml").to_owned())
    })
    .map_err(|e| anyhow::anyhow!("the chaos policy (divisor {divisor}) does not validate: {e}"))?;
    Ok(path)
}

fn say(config: &Config, start: Instant, what: &str) {
    if config.progress {
        eprintln!("chaos: {:>7.1} s  {what}", start.elapsed().as_secs_f64());
    }
}

/// Runs the suite: start servers, replicas and load, inject the planned faults, settle, stop,
/// read everything back and check it.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    let work_dir = match &config.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("whistle-chaos-{}", uuid::Uuid::now_v7())),
    };
    std::fs::create_dir_all(&work_dir)?;
    let report = run_in(&config, &work_dir).await;
    if matches!(&report, Ok(r) if r.passed()) && !config.keep && config.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    report
}

async fn run_in(config: &Config, work_dir: &Path) -> anyhow::Result<Report> {
    let setup = Instant::now();
    let bindir = match &config.pg_bindir {
        Some(dir) => dir.clone(),
        None => find_pg_bindir().context("no /usr/lib/postgresql/*/bin with initdb and pg_ctl")?,
    };
    let mut nats = NatsServer::start(&config.nats_server, work_dir).await?;
    let mut pg = PgCluster::start(&bindir, work_dir).await?;
    say(
        config,
        setup,
        &format!("nats-server on {}, PostgreSQL on {}", nats.port, pg.port),
    );
    let admin = whistle_store::connect(&pg.url("postgres"), 1).await?;
    sqlx::query("CREATE DATABASE whistle")
        .execute(&admin)
        .await?;
    admin.close().await;
    let database_url = pg.url("whistle");
    let pool = whistle_store::connect(&database_url, 4).await?;
    whistle_store::migrate(&pool).await?;
    whistle_store::org::seed(&pool, &whistle_domain::ordos::dataset()).await?;
    let policy = write_policy(work_dir, config.time_divisor)?;

    let fleet = Arc::new(Mutex::new(Fleet {
        launcher: config.dispatch.clone(),
        env: vec![
            ("WHISTLE_NATS_URL".into(), nats.url()),
            ("DATABASE_URL".into(), database_url.clone()),
            ("WHISTLE_POLICY".into(), policy.display().to_string()),
            (
                "WHISTLE_ACK_WAIT_SECS".into(),
                config.ack_wait.as_secs().max(1).to_string(),
            ),
            ("RUST_LOG".into(), "warn,sqlx=error,async_nats=error".into()),
        ],
        log_dir: work_dir.to_owned(),
        replicas: (0..2)
            .map(|_| Replica {
                child: None,
                wanted: false,
                paused: false,
            })
            .collect(),
        starts: 0,
        unexpected_exits: 0,
    }));
    lock(&fleet).spawn(0)?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .build(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    while js.get_stream("WHISTLE_REPORTS").await.is_err() {
        if Instant::now() > deadline {
            bail!(
                "dispatch did not create the streams within 60 s (see {}/dispatch-0.log)",
                work_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(
        config,
        setup,
        "dispatch up, streams created; load and faults start",
    );

    let supervisor_stop = stop_flag();
    let supervisor = {
        let fleet = fleet.clone();
        let stop = supervisor_stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                lock(&fleet).supervise();
            }
        })
    };

    let start = Instant::now();
    let publisher = tokio::spawn(publish_load(js.clone(), config.clone(), start));

    let mut faults = Vec::new();
    let mut outages: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    for planned in plan(config) {
        tokio::time::sleep_until((start + planned.at).into()).await;
        let at = start.elapsed().as_secs_f64();
        let mut record = FaultRecord {
            at,
            fault: planned.fault,
            detail: String::new(),
            down: None,
        };
        match planned.fault {
            Fault::Kill9 => {
                let mut fleet = lock(&fleet);
                let running: Vec<usize> = (0..fleet.replicas.len())
                    .filter(|&i| fleet.replicas[i].child.is_some() && !fleet.replicas[i].paused)
                    .collect();
                if let Some(&i) = running.choose(&mut rng) {
                    let pid = fleet.kill9(i);
                    fleet.spawn(i)?;
                    record.detail =
                        format!("replica {i} (pid {}) killed, restarted", pid.unwrap_or(0));
                } else {
                    record.detail = "no replica running".into();
                }
            }
            Fault::SecondReplicaUp => {
                lock(&fleet).spawn(1)?;
                record.detail = "replica 1 started; two replicas share intake and timers".into();
            }
            Fault::SecondReplicaDown => {
                let fleet = fleet.clone();
                tokio::task::spawn_blocking(move || {
                    lock(&fleet).terminate(1, Duration::from_secs(15))
                })
                .await?;
                record.detail = "replica 1 stopped with SIGTERM".into();
            }
            Fault::NatsRestart => {
                let from = Utc::now();
                let t0 = Instant::now();
                nats.kill();
                tokio::time::sleep(config.outage).await;
                nats.start_again().await?;
                outages.push((from, Utc::now()));
                record.detail = "nats-server killed (SIGKILL), started on the same store".into();
                record.down = Some(t0.elapsed().as_secs_f64());
            }
            Fault::PostgresRestart => {
                let from = Utc::now();
                let t0 = Instant::now();
                pg.stop_immediate()?;
                tokio::time::sleep(config.outage).await;
                pg.start_again().await?;
                outages.push((from, Utc::now()));
                record.detail = "pg_ctl stop -m immediate, then start (crash recovery)".into();
                record.down = Some(t0.elapsed().as_secs_f64());
            }
            Fault::Pause => {
                let pause = config.ack_wait + Duration::from_secs(3);
                let pid = {
                    let mut fleet = lock(&fleet);
                    if fleet.replicas[1].child.is_none() {
                        fleet.spawn(1)?;
                    }
                    fleet.replicas[1].paused = true;
                    fleet.signal(1, "STOP")
                };
                let t0 = Instant::now();
                tokio::time::sleep(pause).await;
                {
                    let mut fleet = lock(&fleet);
                    fleet.signal(1, "CONT");
                    fleet.replicas[1].paused = false;
                }
                record.detail = format!(
                    "replica 1 (pid {}) SIGSTOP past the {:.0} s ack wait, then SIGCONT",
                    pid.unwrap_or(0),
                    config.ack_wait.as_secs_f64()
                );
                record.down = Some(t0.elapsed().as_secs_f64());
            }
            Fault::DispatchOutage => {
                let from = Utc::now();
                let t0 = Instant::now();
                let was: Vec<bool> = {
                    let mut fleet = lock(&fleet);
                    let was = fleet.replicas.iter().map(|r| r.wanted).collect();
                    for i in 0..fleet.replicas.len() {
                        fleet.replicas[i].wanted = false;
                        fleet.kill9(i);
                    }
                    was
                };
                tokio::time::sleep(config.outage).await;
                {
                    let mut fleet = lock(&fleet);
                    for (i, wanted) in was.into_iter().enumerate() {
                        if wanted {
                            fleet.spawn(i)?;
                        }
                    }
                }
                outages.push((from, Utc::now()));
                record.detail = "every replica killed (SIGKILL); none running".into();
                record.down = Some(t0.elapsed().as_secs_f64());
            }
        }
        say(
            config,
            start,
            &format!("{:?}: {}", record.fault, record.detail),
        );
        faults.push(record);
    }
    tokio::time::sleep_until((start + config.duration).into()).await;
    say(
        config,
        start,
        "load ends; waiting for unacknowledged publishes",
    );
    let published = publisher.await??;
    say(
        config,
        start,
        &format!(
            "{} published ({} acked); settling",
            published.len(),
            published.iter().filter(|p| p.acked).count()
        ),
    );

    // Settle: replica 0 running, nothing pending or unacked, outbox empty, nothing due.
    let settle_start = Instant::now();
    let settled_at = settle(&js, &pool, config.drain_timeout).await;
    let settle_secs = settle_start.elapsed().as_secs_f64();
    supervisor_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = supervisor.await;
    {
        let fleet = fleet.clone();
        tokio::task::spawn_blocking(move || {
            let mut fleet = lock(&fleet);
            for i in 0..fleet.replicas.len() {
                fleet.terminate(i, Duration::from_secs(15));
            }
        })
        .await?;
    }
    say(
        config,
        start,
        &format!("settled: {}; reading everything back", settled_at.is_some()),
    );

    let settled = settled_at.is_some();
    let mut history = read_history(&js, &pool).await?;
    history.published = published;
    history.settled_at = settled_at.unwrap_or_else(Utc::now);
    history.outages = outages;
    let verdict = checker::check(&history);
    let fleet = lock(&fleet);
    Ok(Report {
        seed: config.seed,
        duration_secs: config.duration.as_secs_f64(),
        rate: config.rate,
        time_divisor: config.time_divisor,
        ack_wait_secs: config.ack_wait.as_secs_f64(),
        nats_server: nats_version(&config.nats_server),
        faults,
        replica_starts: fleet.starts,
        unexpected_exits: fleet.unexpected_exits,
        settled,
        settle_secs,
        incidents: history.incidents.len() as u64,
        timer_firings: history.firings.len() as u64,
        verdict,
        work_dir: work_dir.display().to_string(),
    })
}

fn stop_flag() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}

fn lock(fleet: &Mutex<Fleet>) -> std::sync::MutexGuard<'_, Fleet> {
    fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn nats_version(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| bin.to_owned())
}

/// Publishes uniquely identified reports at the configured rate; each publish is retried (same
/// `Nats-Msg-Id`) until JetStream acknowledges it or 60 s after the load ends.
async fn publish_load(
    js: jetstream::Context,
    config: Config,
    start: Instant,
) -> anyhow::Result<Vec<Published>> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut grids: Vec<String> = whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .filter(|u| u.level() == whistle_domain::Level::Grid)
        .map(|u| u.code.to_string())
        .collect();
    grids.shuffle(&mut rng);
    grids.truncate(config.grids.max(2));
    let policy = whistle_domain::policy::builtin("ordos").context("the Ordos policy")?;
    let mut categories: Vec<String> = policy.categories().map(|c| c.code.to_string()).collect();
    categories.shuffle(&mut rng);
    categories.truncate(config.categories.max(1));

    let give_up = start + config.duration + Duration::from_secs(60);
    let inflight = Arc::new(tokio::sync::Semaphore::new(8192));
    let mut tasks = Vec::new();
    let total = (config.duration.as_secs_f64() * config.rate) as u64;
    for n in 0..total {
        tokio::time::sleep_until((start + Duration::from_secs_f64(n as f64 / config.rate)).into())
            .await;
        let id = format!("chaos-{}-{n}", config.seed);
        let grid = grids[rng.random_range(0..grids.len())].clone();
        let mut report = report(
            &id,
            &grid,
            &categories[rng.random_range(0..categories.len())],
        );
        let valid = config.invalid_every == 0 || !n.is_multiple_of(config.invalid_every);
        if !valid {
            if (n / config.invalid_every).is_multiple_of(2) {
                report.category = "no.such".into();
            } else {
                // Signed by the worker of another grid than the subject names.
                let other = grids
                    .iter()
                    .find(|g| **g != grid)
                    .cloned()
                    .unwrap_or_default();
                report.grid_code = other;
            }
        }
        let subject = subject_for(&grid);
        let payload: bytes::Bytes = report.encode_to_vec().into();
        let js = js.clone();
        let permit = inflight.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, id.as_str());
            let acked = loop {
                if let Ok(ack) = js
                    .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                    .await
                {
                    if ack.await.is_ok() {
                        break true;
                    }
                }
                if Instant::now() > give_up {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            Published {
                report_id: id,
                valid,
                acked,
            }
        }));
    }
    let mut published = Vec::with_capacity(tasks.len());
    for task in tasks {
        published.push(task.await?);
    }
    Ok(published)
}

fn subject_for(grid: &str) -> String {
    whistle_wire::subject::report(&grid.parse().expect("a grid code"))
}

fn report(report_id: &str, grid: &str, category: &str) -> v1::Report {
    let now = Utc::now().timestamp_millis();
    v1::Report {
        report_id: report_id.into(),
        reporter_id: format!("gw-{grid}"),
        grid_code: grid.into(),
        category: category.into(),
        urgency: v1::Urgency::Normal as i32,
        title: "故障注入测试".into(),
        description: "chaos run".into(),
        // No coordinates: a report joins an open incident of its category in the same grid.
        location: None,
        occurred_at: Some(whistle_proto::timestamp_from_unix_millis(now - 600_000)),
        reported_at: Some(whistle_proto::timestamp_from_unix_millis(now)),
        attachments: vec![],
        contact_phone: String::new(),
    }
}

/// Waits until the intake consumer has nothing pending or unacknowledged, the outbox is empty
/// and no timer is more than a second overdue; returns when, or None on timeout.
async fn settle(
    js: &jetstream::Context,
    pool: &PgPool,
    timeout: Duration,
) -> Option<DateTime<Utc>> {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let consumer: Result<consumer::PullConsumer, _> = js
            .get_consumer_from_stream("whistle-dispatch", "WHISTLE_REPORTS")
            .await;
        let Ok(mut consumer) = consumer else { continue };
        let Ok(info) = consumer.info().await else {
            continue;
        };
        let now = Utc::now();
        let counts: Result<(i64, i64), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM timers WHERE due_at <= $1)",
        )
        .bind(now - chrono::TimeDelta::seconds(1))
        .fetch_one(pool)
        .await;
        let Ok((outbox, due)) = counts else { continue };
        if info.num_pending == 0 && info.num_ack_pending == 0 && outbox == 0 && due == 0 {
            quiet += 1;
            // Twice in a row, so an event committed just before the first look is out too.
            if quiet >= 2 {
                return Some(now);
            }
        } else {
            quiet = 0;
        }
    }
    None
}

/// Reads every message of a stream, in order.
async fn read_stream(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut stream = js.get_stream(name).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(10), messages.next()).await
    {
        let message = message?;
        let sequence = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(message);
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

/// The final read of PostgreSQL and the streams.
async fn read_history(js: &jetstream::Context, pool: &PgPool) -> anyhow::Result<History> {
    let mut history = History {
        reports: sqlx::query_scalar("SELECT report_id FROM reports")
            .fetch_all(pool)
            .await?,
        rejections: sqlx::query_scalar("SELECT report_id FROM rejected_reports")
            .fetch_all(pool)
            .await?,
        outbox_left: sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(pool)
            .await? as u64,
        ..History::default()
    };
    let incidents: Vec<(String, i64, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT id::text, version, state FROM incidents")
            .fetch_all(pool)
            .await?;
    let timers: Vec<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT incident_id::text, key, due_at FROM timers")
            .fetch_all(pool)
            .await?;
    let mut table: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (incident, key, due) in &timers {
        table
            .entry(incident.as_str())
            .or_default()
            .push((key.clone(), due.timestamp_millis()));
    }
    for (id, version, state) in &incidents {
        history.incidents.push((id.clone(), *version as u64));
        let Some(state) = state else { continue };
        let incident: Incident = serde_json::from_value(state.clone())
            .with_context(|| format!("incident {id}: state does not parse"))?;
        let mut wanted: Vec<(String, i64)> = incident
            .timers()
            .into_iter()
            .map(|(timer, at)| (timer.key(), at.timestamp_millis()))
            .collect();
        let mut have = table.get(id.as_str()).cloned().unwrap_or_default();
        wanted.sort();
        have.sort();
        if wanted != have {
            history.timer_table_mismatches.push(id.clone());
        }
    }
    history.timers_left = timers
        .into_iter()
        .map(|(incident_id, timer, due_at)| PendingTimer {
            incident_id,
            timer,
            due_at,
        })
        .collect();
    let firings: Vec<(String, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT incident_id::text, data->>'timer', data->>'due_at', at FROM timeline WHERE data ? 'timer'",
    )
    .fetch_all(pool)
    .await?;
    for (incident_id, timer, due, at) in firings {
        let due_at = due
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map_or(at, |d| d.with_timezone(&Utc));
        history.firings.push(Firing {
            incident_id,
            timer,
            due_at,
            at,
        });
    }

    for message in read_stream(js, "WHISTLE_EVENTS").await? {
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned());
        let event = v1::Event::decode(message.payload.clone())
            .context("WHISTLE_EVENTS holds something that is not a whistle.v1.Event")?;
        let (version, report_id) = match &event.body {
            Some(v1::event::Body::IncidentReported(b)) => (
                Some(b.version),
                b.report.as_ref().map(|r| r.report_id.clone()),
            ),
            Some(v1::event::Body::ReportAttached(b)) => {
                (None, b.report.as_ref().map(|r| r.report_id.clone()))
            }
            Some(v1::event::Body::ReportRejected(b)) => {
                (None, Some(b.report_id.clone()).filter(|id| !id.is_empty()))
            }
            Some(v1::event::Body::IncidentChanged(b)) => (Some(b.version), None),
            _ => (None, None),
        };
        history.events.push(EventSeen {
            msg_id,
            event_id: event.event_id,
            kind: event.kind,
            incident_id: event.incident_id,
            version,
            report_id,
        });
    }
    for message in read_stream(js, "WHISTLE_REJECTED").await? {
        let id = v1::Report::decode(message.payload.clone())
            .ok()
            .map(|r| r.report_id)
            .filter(|id| !id.is_empty());
        history.rejected_copies.push(id);
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_has_every_fault_kind_and_the_kills_in_the_window() {
        let config = Config {
            duration: Duration::from_secs(100),
            kills: 12,
            seed: 7,
            ..Config::default()
        };
        let planned = plan(&config);
        for kind in [
            Fault::SecondReplicaUp,
            Fault::NatsRestart,
            Fault::PostgresRestart,
            Fault::Pause,
            Fault::DispatchOutage,
            Fault::SecondReplicaDown,
        ] {
            assert_eq!(
                planned.iter().filter(|p| p.fault == kind).count(),
                1,
                "{kind:?}"
            );
        }
        let kills: Vec<_> = planned.iter().filter(|p| p.fault == Fault::Kill9).collect();
        assert_eq!(kills.len(), 12);
        assert!(kills
            .iter()
            .all(|p| p.at >= Duration::from_secs(5) && p.at <= Duration::from_secs(95)));
        assert!(planned.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(plan(&config), planned, "the same seed, the same plan");
    }

    #[test]
    fn the_chaos_policy_validates_for_the_divisors_used() {
        let dir =
            std::env::temp_dir().join(format!("whistle-chaos-policy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        for divisor in [600, 1200, 3600] {
            write_policy(&dir, divisor).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
