//! One planned fault, injected: what it does to the servers and replicas, and for how long.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use rand::{rngs::StdRng, seq::IndexedRandom};

use super::{
    fleet::{lock, Fleet},
    run::Servers,
    Config, Fault, FaultRecord,
};

/// Injects `record.fault`, filling in its detail and downtime; returns the outage window when
/// something every replica needs (NATS, PostgreSQL, the whole fleet) was down.
pub(super) async fn inject(
    config: &Config,
    record: &mut FaultRecord,
    servers: &mut Servers,
    fleet: &std::sync::Arc<Mutex<Fleet>>,
    rng: &mut StdRng,
) -> anyhow::Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let mut outage = None;
    match record.fault {
        Fault::Kill9 => {
            let mut fleet = lock(fleet);
            let running: Vec<usize> = (0..fleet.replicas.len())
                .filter(|&i| fleet.replicas[i].child.is_some() && !fleet.replicas[i].paused)
                .collect();
            if let Some(&i) = running.choose(rng) {
                let pid = fleet.kill9(i);
                fleet.spawn(i)?;
                record.detail = format!("replica {i} (pid {}) killed, restarted", pid.unwrap_or(0));
            } else {
                record.detail = "no replica running".into();
            }
        }
        Fault::OwnerKill9 => {
            let holder: String = sqlx::query_scalar("SELECT holder FROM intake_owner WHERE id = 1")
                .fetch_one(&servers.pool)
                .await?;
            // `host/pid/uuid`, see whistle-dispatch.
            let pid: Option<u32> = holder.split('/').nth(1).and_then(|p| p.parse().ok());
            let mut fleet = lock(fleet);
            let owner = (0..fleet.replicas.len()).find(|&i| {
                fleet.replicas[i].child.as_ref().map(|c| c.id()) == pid && pid.is_some()
            });
            record.detail = match owner {
                Some(i) => {
                    fleet.kill9(i);
                    fleet.spawn(i)?;
                    format!(
                        "replica {i} (pid {}), the intake lease's holder, killed, restarted",
                        pid.unwrap_or(0)
                    )
                }
                None => format!("no running replica holds the intake lease ({holder:?})"),
            };
        }
        Fault::SecondReplicaUp => {
            lock(fleet).spawn(1)?;
            record.detail = "replica 1 started; two replicas share intake and timers".into();
        }
        Fault::SecondReplicaDown => {
            let fleet = fleet.clone();
            tokio::task::spawn_blocking(move || lock(&fleet).terminate(1, Duration::from_secs(15)))
                .await?;
            record.detail = "replica 1 stopped with SIGTERM".into();
        }
        Fault::NatsRestart => {
            let from = Utc::now();
            let t0 = Instant::now();
            servers.nats.kill();
            tokio::time::sleep(config.outage).await;
            servers.nats.start_again().await?;
            outage = Some((from, Utc::now()));
            record.detail = "nats-server killed (SIGKILL), started on the same store".into();
            record.down = Some(t0.elapsed().as_secs_f64());
        }
        Fault::PostgresRestart => {
            let from = Utc::now();
            let t0 = Instant::now();
            servers.pg.stop_immediate()?;
            tokio::time::sleep(config.outage).await;
            servers.pg.start_again().await?;
            outage = Some((from, Utc::now()));
            record.detail = "pg_ctl stop -m immediate, then start (crash recovery)".into();
            record.down = Some(t0.elapsed().as_secs_f64());
        }
        Fault::Pause => pause_second_replica(config, record, fleet).await?,
        // Planned only with `Config::upgrade`, and run by the run itself (it needs the intake
        // sampler); reaching here means a plan with an upgrade but no upgrade configured.
        Fault::RollingUpgrade => {
            anyhow::bail!("a rolling upgrade was planned but no upgrade is configured")
        }
        Fault::DispatchOutage => {
            let from = Utc::now();
            let t0 = Instant::now();
            let was: Vec<bool> = {
                let mut fleet = lock(fleet);
                let was = fleet.replicas.iter().map(|r| r.wanted).collect();
                for i in 0..fleet.replicas.len() {
                    fleet.replicas[i].wanted = false;
                    fleet.kill9(i);
                }
                was
            };
            tokio::time::sleep(config.outage).await;
            {
                let mut fleet = lock(fleet);
                for (i, wanted) in was.into_iter().enumerate() {
                    if wanted {
                        fleet.spawn(i)?;
                    }
                }
            }
            outage = Some((from, Utc::now()));
            record.detail = "every replica killed (SIGKILL); none running".into();
            record.down = Some(t0.elapsed().as_secs_f64());
        }
    }
    Ok(outage)
}

/// SIGSTOP of replica 1 (started first if it is not running) for longer than the ack wait, then
/// SIGCONT: its deliveries go to the other replica meanwhile.
async fn pause_second_replica(
    config: &Config,
    record: &mut FaultRecord,
    fleet: &Mutex<Fleet>,
) -> anyhow::Result<()> {
    let pause = config.ack_wait + Duration::from_secs(3);
    let pid = {
        let mut fleet = lock(fleet);
        if fleet.replicas[1].child.is_none() {
            fleet.spawn(1)?;
        }
        fleet.replicas[1].paused = true;
        fleet.signal(1, "STOP")
    };
    let t0 = Instant::now();
    tokio::time::sleep(pause).await;
    {
        let mut fleet = lock(fleet);
        fleet.signal(1, "CONT");
        fleet.replicas[1].paused = false;
    }
    record.detail = format!(
        "replica 1 (pid {}) SIGSTOP past the {:.0} s ack wait, then SIGCONT",
        pid.unwrap_or(0),
        config.ack_wait.as_secs_f64()
    );
    record.down = Some(t0.elapsed().as_secs_f64());
    Ok(())
}
