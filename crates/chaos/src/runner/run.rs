//! The run, phase by phase: start the servers, start the replicas, load and inject the planned
//! faults, drain, then read everything back and check it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use rand::{rngs::StdRng, SeedableRng};
use sqlx::PgPool;
use whistle_testkit::{create_database_with, find_pg_bindir, NatsConfig, NatsServer, PgCluster};

use super::{
    commands::send_commands,
    faults::inject,
    fleet::{lock, Fleet, Replica},
    history::{read_history, settle},
    load::publish_load,
    plan,
    upgrade::{self, Sampler},
    Config, Fault, FaultRecord, Report, UpgradeRecord,
};
use crate::checker::{self, Published};

/// The servers a run owns, and the database dispatch uses on them.
pub(super) struct Servers {
    pub(super) nats: NatsServer,
    /// The deployment's key material: nats-server's configuration and dispatch's seed file.
    secrets: whistle_auth::Secrets,
    pub(super) pg: PgCluster,
    /// The database owner's pool.
    pub(super) pool: PgPool,
    pub(super) roles: whistle_store::roles::Roles,
    database_url: String,
    policy: PathBuf,
}

/// The replicas and the task that restarts those that exit on their own.
pub(super) struct Replicas {
    pub(super) fleet: Arc<Mutex<Fleet>>,
    supervisor_stop: Arc<AtomicBool>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// What the load and the faults left behind.
struct Loaded {
    /// When the load started; progress lines count from it.
    start: Instant,
    published: Vec<Published>,
    commands: Vec<checker::CommandSent>,
    faults: Vec<FaultRecord>,
    upgrade: Option<UpgradeRecord>,
    outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// How the drain went.
struct Drained {
    settled_at: Option<DateTime<Utc>>,
    settle_secs: f64,
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
    let mut servers = start_servers(config, work_dir).await?;
    say(
        config,
        setup,
        &format!(
            "nats-server on {}, PostgreSQL on {}",
            servers.nats.port(),
            servers.pg.port
        ),
    );
    let js = create_streams(&servers.nats).await?;
    let mut replicas = start_replicas(config, work_dir, &servers)?;
    say(
        config,
        setup,
        "streams created, dispatch starting; load and faults start",
    );
    let loaded = load_and_inject_faults(config, &js, &mut servers, &replicas).await?;
    let drained = drain(config, loaded.start, &js, &servers.pool, &mut replicas).await?;
    let settled = drained.settled_at.is_some();
    let mut history = read_history(&js, &servers.pool).await?;
    history.published = loaded.published;
    history.commands = loaded.commands;
    history.settled_at = drained.settled_at.unwrap_or_else(Utc::now);
    history.outages = loaded.outages;
    let verdict = checker::check(&history);
    let fleet = lock(&replicas.fleet);
    Ok(Report {
        seed: config.seed,
        duration_secs: config.duration.as_secs_f64(),
        rate: config.rate,
        time_divisor: config.time_divisor,
        ack_wait_secs: config.ack_wait.as_secs_f64(),
        nats_server: nats_version(&config.nats_server),
        faults: loaded.faults,
        upgrade: loaded.upgrade,
        replica_starts: fleet.starts,
        unexpected_exits: fleet.unexpected_exits,
        settled,
        settle_secs: drained.settle_secs,
        incidents: history.incidents.len() as u64,
        timer_firings: history.firings.len() as u64,
        verdict,
        work_dir: work_dir.display().to_string(),
    })
}

/// Phase 1: a private nats-server and PostgreSQL cluster in the work dir, the database migrated
/// and seeded, and the policy with its durations divided.
async fn start_servers(config: &Config, work_dir: &Path) -> anyhow::Result<Servers> {
    let bindir = match &config.pg_bindir {
        Some(dir) => dir.clone(),
        None => find_pg_bindir().context("no /usr/lib/postgresql/*/bin with initdb and pg_ctl")?,
    };
    // As production runs it: authentication on, JetStream encrypted at rest.
    let secrets = whistle_auth::Secrets::load_or_create(&work_dir.join("secrets"))?;
    let nats = NatsConfig::new()
        .bin(&config.nats_server)
        .dir(work_dir)
        .secured(&secrets)
        .start()
        .await?;
    let pg = PgCluster::start(&bindir, work_dir).await?;
    // An upgrade starts on the old release's schema.
    let from = match &config.upgrade {
        Some(upgrade) => upgrade::migrations_in(upgrade.from_migrations.as_deref()).await?,
        None => None,
    };
    let database = create_database_with(
        &pg.url("postgres"),
        "whistle",
        4,
        from.as_ref().unwrap_or(&whistle_store::MIGRATOR),
    )
    .await?;
    // An upgrade runs the old release's policy: the old replicas must read it, and the new ones
    // find it in the database as the running version, as they would in production.
    let base = match config.upgrade.as_ref().and_then(|u| u.from_policy.as_ref()) {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the old release's policy {}", path.display()))?,
        None => include_str!("../../../../policy/ordos.toml").to_owned(),
    };
    let policy = write_policy(work_dir, config.time_divisor, &base)?;
    Ok(Servers {
        nats,
        secrets,
        pg,
        pool: database.pool,
        roles: database.roles,
        // The replicas connect as production's dispatch does: with its own role.
        database_url: database.dispatch_url,
        policy,
    })
}

/// Phase 2: replica 0 running, replica 1's slot empty until the schedule starts it, and a
/// supervisor restarting replicas that should run and exited on their own.
fn start_replicas(config: &Config, work_dir: &Path, servers: &Servers) -> anyhow::Result<Replicas> {
    let fleet = Arc::new(Mutex::new(Fleet {
        env: vec![
            ("WHISTLE_NATS_URL".into(), servers.nats.url()),
            (
                "WHISTLE_DISPATCH_NKEY_FILE".into(),
                servers
                    .secrets
                    .seed_path(whistle_auth::Service::Dispatch)
                    .display()
                    .to_string(),
            ),
            ("DATABASE_URL".into(), servers.database_url.clone()),
            (
                "WHISTLE_POLICY".into(),
                servers.policy.display().to_string(),
            ),
            (
                "WHISTLE_ACK_WAIT_SECS".into(),
                config.ack_wait.as_secs().max(1).to_string(),
            ),
            // Info of dispatch itself: a few lines a start, among them the one that says a
            // replica serves (see upgrade.rs).
            (
                "RUST_LOG".into(),
                "warn,whistle_dispatch=info,sqlx=error,async_nats=error".into(),
            ),
            // The load's reports carry no residents' contacts.
            ("WHISTLE_NO_CONTACTS".into(), "true".into()),
        ],
        log_dir: work_dir.to_owned(),
        replicas: (0..2)
            .map(|_| Replica {
                launcher: config.dispatch.clone(),
                child: None,
                wanted: false,
                paused: false,
            })
            .collect(),
        starts: 0,
        unexpected_exits: 0,
    }));
    lock(&fleet).spawn(0)?;
    let supervisor_stop = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let fleet = fleet.clone();
        let stop = supervisor_stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                lock(&fleet).supervise();
            }
        })
    };
    Ok(Replicas {
        fleet,
        supervisor_stop,
        supervisor: Some(supervisor),
    })
}

/// The admin's JetStream context, after creating the streams as `whistle streams` does (dispatch
/// only opens them).
async fn create_streams(nats: &NatsServer) -> anyhow::Result<jetstream::Context> {
    let client = nats.connect().await.context("connecting as admin")?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .build(client);
    whistle_auth::streams::ensure(&js, &whistle_auth::streams::HardenedOptions::small())
        .await
        .context("creating the streams as admin")?;
    Ok(js)
}

/// Phase 3: the load runs in the background while the planned faults fall at their moments;
/// returns once every publish was acknowledged or given up.
async fn load_and_inject_faults(
    config: &Config,
    js: &jetstream::Context,
    servers: &mut Servers,
    replicas: &Replicas,
) -> anyhow::Result<Loaded> {
    let start = Instant::now();
    let publisher = tokio::spawn(publish_load(js.clone(), config.clone(), start));
    let commander = tokio::spawn(send_commands(
        servers
            .nats
            .connect()
            .await
            .context("connecting as admin")?,
        servers.pool.clone(),
        config.clone(),
        start,
    ));
    let intake = config
        .upgrade
        .is_some()
        .then(|| Sampler::start(servers.pool.clone()));
    let mut upgraded = None;
    let mut faults = Vec::new();
    let mut outages = Vec::new();
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
        match (planned.fault, &config.upgrade, &intake) {
            (Fault::RollingUpgrade, Some(upgrade), Some(intake)) => {
                upgraded = Some(
                    upgrade::rolling(upgrade, &mut record, servers, &replicas.fleet, intake)
                        .await
                        .context("the rolling upgrade")?,
                );
            }
            _ => {
                if let Some(outage) =
                    inject(config, &mut record, servers, &replicas.fleet, &mut rng).await?
                {
                    outages.push(outage);
                }
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
    let commands = commander.await??;
    drop(intake);
    say(
        config,
        start,
        &format!(
            "{} published ({} acked); settling",
            published.len(),
            published.iter().filter(|p| p.acked).count()
        ),
    );
    Ok(Loaded {
        start,
        published,
        commands,
        faults,
        upgrade: upgraded,
        outages,
    })
}

/// Phase 4: wait until replica 0 has taken in everything (nothing pending or unacked, outbox
/// empty, nothing due), then stop the supervisor and every replica with SIGTERM.
async fn drain(
    config: &Config,
    start: Instant,
    js: &jetstream::Context,
    pool: &PgPool,
    replicas: &mut Replicas,
) -> anyhow::Result<Drained> {
    let settle_start = Instant::now();
    let settled_at = settle(js, pool, config.drain_timeout).await;
    let settle_secs = settle_start.elapsed().as_secs_f64();
    replicas.supervisor_stop.store(true, Ordering::Relaxed);
    if let Some(supervisor) = replicas.supervisor.take() {
        let _ = supervisor.await;
    }
    let fleet = replicas.fleet.clone();
    tokio::task::spawn_blocking(move || {
        let mut fleet = lock(&fleet);
        for i in 0..fleet.replicas.len() {
            fleet.terminate(i, Duration::from_secs(15));
        }
    })
    .await?;
    say(
        config,
        start,
        &format!("settled: {}; reading everything back", settled_at.is_some()),
    );
    Ok(Drained {
        settled_at,
        settle_secs,
    })
}

/// The Ordos policy (`base`, the text of policy/ordos.toml) with every duration divided:
/// deadlines in seconds.
fn write_policy(dir: &Path, divisor: u32, base: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(dir.join("ordos.toml"), base)?;
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
        Some(base.to_owned())
    })
    .map_err(|e| anyhow::anyhow!("the chaos policy (divisor {divisor}) does not validate: {e}"))?;
    Ok(path)
}

fn say(config: &Config, start: Instant, what: &str) {
    if config.progress {
        eprintln!("chaos: {:>7.1} s  {what}", start.elapsed().as_secs_f64());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chaos_policy_validates_for_the_divisors_used() {
        let dir =
            std::env::temp_dir().join(format!("whistle-chaos-policy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        for divisor in [600, 1200, 3600] {
            write_policy(&dir, divisor, include_str!("../../../../policy/ordos.toml")).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
