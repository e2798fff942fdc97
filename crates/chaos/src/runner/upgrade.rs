//! The rolling upgrade under load: the new migrations applied while the old replicas serve,
//! then each old replica replaced in turn (start a new one, wait until it serves, SIGTERM the
//! old one and wait for its drain), timed, with the intake's pauses measured from PostgreSQL.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sqlx::{migrate::Migrator, PgPool};

use super::{
    fleet::{lock, Fleet},
    run::Servers,
    FaultRecord, Replacement, Upgrade, UpgradeRecord,
};

/// What a replica's log says once it serves: it registered its command endpoints, then stood by
/// for the intake lease or took it (whistle-dispatch logs these at info).
const SERVING: [&str; 2] = ["standing by", "took the intake lease over"];

/// How long an old replica may take to drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The migrations in `dir` (sqlx's layout), read now; None for this build's.
pub(super) async fn migrations_in(dir: Option<&Path>) -> anyhow::Result<Option<Migrator>> {
    match dir {
        Some(dir) => Ok(Some(Migrator::new(dir).await.with_context(|| {
            format!("reading the migrations in {}", dir.display())
        })?)),
        None => Ok(None),
    }
}

/// Runs the upgrade; `record.detail` says what happened.
pub(super) async fn rolling(
    upgrade: &Upgrade,
    record: &mut FaultRecord,
    servers: &Servers,
    fleet: &Arc<Mutex<Fleet>>,
    intake: &Sampler,
) -> anyhow::Result<UpgradeRecord> {
    // An old replica that never served (it could not read the policy, say) would make the drill
    // an upgrade of nothing.
    let old: Vec<(usize, std::path::PathBuf)> = {
        let fleet = lock(fleet);
        (0..fleet.replicas.len())
            .filter(|&i| fleet.replicas[i].wanted)
            .map(|i| (i, fleet.log_path(i)))
            .collect()
    };
    for (slot, log) in &old {
        wait_serving(log, upgrade.ready_timeout)
            .await
            .with_context(|| format!("the old replica {slot} (log {})", log.display()))?;
    }
    let t0 = Instant::now();
    // As `whistle migrate` does it: the migrations as the owner, then the services' rights on
    // whatever they made.
    let migrations = migrations_in(upgrade.to_migrations.as_deref()).await?;
    let applied = whistle_store::migrate_with(
        &servers.pool,
        migrations.as_ref().unwrap_or(&whistle_store::MIGRATOR),
        &whistle_store::audit::Actor::cli(Some("whistle-chaos")),
    )
    .await
    .context("applying the new migrations while the old replicas serve")?;
    whistle_store::roles::grant(&servers.pool, &servers.roles)
        .await
        .context("granting the services their rights after migrating")?;
    let migrate_secs = t0.elapsed().as_secs_f64();

    let mut replacements = Vec::new();
    for (old_slot, _) in old {
        let started = Instant::now();
        let (new_slot, log) = {
            let mut fleet = lock(fleet);
            let slot = fleet.add(upgrade.to.clone());
            fleet.spawn(slot)?;
            (slot, fleet.log_path(slot))
        };
        wait_serving(&log, upgrade.ready_timeout)
            .await
            .with_context(|| format!("the new replica {new_slot} (log {})", log.display()))?;
        let ready_secs = started.elapsed().as_secs_f64();
        let stopping = Instant::now();
        let stopped_cleanly = {
            let fleet = fleet.clone();
            tokio::task::spawn_blocking(move || lock(&fleet).terminate(old_slot, STOP_TIMEOUT))
                .await?
        };
        let stop_secs = stopping.elapsed().as_secs_f64();
        replacements.push(Replacement {
            old_slot,
            new_slot,
            ready_secs,
            stop_secs,
            // Not running at all (killed by a fault just before): nothing to drain.
            stopped_cleanly: stopped_cleanly.unwrap_or(true),
            secs: started.elapsed().as_secs_f64(),
            intake_pause_secs: intake.longest_pause(started, Instant::now()),
        });
    }
    let secs = t0.elapsed().as_secs_f64();
    let end = Instant::now();
    let baseline_from = t0
        .checked_sub(end - t0)
        .map_or(intake.started, |from| from.max(intake.started));
    record.detail = format!(
        "migrations {applied:?} applied, then {} replicas replaced one at a time",
        replacements.len()
    );
    record.down = None;
    Ok(UpgradeRecord {
        migrations_applied: applied,
        migrate_secs,
        replacements,
        secs,
        intake_pause_secs: intake.longest_pause(t0, end),
        baseline_pause_secs: intake.longest_pause(baseline_from, t0),
    })
}

/// Waits until the replica writing `log` says it serves.
async fn wait_serving(log: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if SERVING.iter().any(|line| text.contains(line)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail: String = text
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            anyhow::bail!(
                "did not serve within {:.0} s (its log says neither {SERVING:?}); last lines:\n{tail}",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts recorded and rejected reports every 100 ms while the load runs, so a pause of intake
/// (no report recorded while reports keep coming) can be measured afterwards.
pub(super) struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<(Instant, i64)>>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    pub(super) fn start(pool: PgPool) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (samples, stop) = (samples.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let count: Result<i64, _> = sqlx::query_scalar(
                        "SELECT (SELECT count(*) FROM reports) + (SELECT count(*) FROM rejected_reports)",
                    )
                    .fetch_one(&pool)
                    .await;
                    if let Ok(count) = count {
                        samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((Instant::now(), count));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        Sampler {
            started: Instant::now(),
            samples,
            stop,
        }
    }

    /// The longest stretch within `from..to` between two samples at which the count grew, in
    /// seconds (to the sampling's 0.1 s).
    pub(super) fn longest_pause(&self, from: Instant, to: Instant) -> f64 {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        longest_pause(&samples, from, to)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn longest_pause(samples: &[(Instant, i64)], from: Instant, to: Instant) -> f64 {
    let mut growth: Vec<Instant> = samples
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .collect();
    growth.retain(|&t| t > from && t < to);
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in growth.into_iter().chain([to]) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_pause_is_the_longest_stretch_without_growth_within_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let samples = [
            (at(0), 10),
            (at(100), 12),
            (at(200), 12),
            (at(300), 12),
            (at(400), 12),
            (at(500), 15),
            (at(600), 16),
            (at(700), 16),
        ];
        // Growth at 100, 500 and 600: from 100 to 500 nothing.
        assert!((longest_pause(&samples, at(0), at(700)) - 0.4).abs() < 1e-9);
        // The window's edges count as ends of a stretch.
        assert!((longest_pause(&samples, at(550), at(700)) - 0.1).abs() < 1e-9);
        assert!((longest_pause(&samples, at(200), at(450)) - 0.25).abs() < 1e-9);
    }
}
