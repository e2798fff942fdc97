//! What a run is asked to do: its settings and the fault schedule.

use std::{path::PathBuf, time::Duration};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

/// How to start one dispatch replica: a program and arguments; the runner adds the environment
/// (`WHISTLE_NATS_URL`, `DATABASE_URL`, `WHISTLE_POLICY`, `WHISTLE_ACK_WAIT_SECS`, `RUST_LOG`,
/// `WHISTLE_NO_CONTACTS=true`).
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
    /// Commands per second (a comment on a random incident by its district's operator, each
    /// with its own command id, retried with that id until answered); 0 for none.
    pub command_rate: f64,
    /// A rolling upgrade instead of the fault schedule: `dispatch` is the old version.
    pub upgrade: Option<Upgrade>,
}

/// A rolling upgrade under load: two replicas of the old version (`Config::dispatch`) serve; the
/// new migrations are applied as the database owner while they do; then each old replica in
/// turn is replaced: a new one is started, it serves, the old one is stopped with SIGTERM.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// How to start a replica of the new version.
    pub to: Launcher,
    /// The migrations the database starts with (a directory of sqlx migrations, e.g. the old
    /// release's `crates/store/migrations`); this build's if unset.
    pub from_migrations: Option<PathBuf>,
    /// The migrations applied while the old replicas serve, before the first new one starts;
    /// this build's if unset.
    pub to_migrations: Option<PathBuf>,
    /// The old release's policy/ordos.toml, the base of the run's policy (the old replicas read
    /// it; the new ones find it stored as the running version); this build's if unset.
    pub from_policy: Option<PathBuf>,
    /// How long a new replica may take to serve (to stand by for, or take, the intake lease).
    pub ready_timeout: Duration,
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
            command_rate: 0.0,
            upgrade: None,
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
    /// `kill -9` of the replica holding the intake lease while the other runs, restarted at once:
    /// the other takes intake over during the load.
    OwnerKill9,
    /// The new migrations applied, then every running replica replaced by one of the new
    /// version, one at a time: start the new one, wait until it serves, SIGTERM the old one.
    RollingUpgrade,
}

/// A fault at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// The schedule: the second replica runs from 15 % to 85 % of the run; NATS restarts at 30 %,
/// the intake lease's holder is killed at 40 %, PostgreSQL restarts at 50 %, the second replica is paused at 60 %, every replica is down at 75 %, and
/// the kills fall at random moments (seeded) between 5 % and 95 %.
///
/// With [`Config::upgrade`], instead: the second replica joins at 10 %, the rolling upgrade
/// starts at 30 % (the load runs on until the end, under the new version after the upgrade), and
/// the kills, if any, fall as above.
pub fn plan(config: &Config) -> Vec<Planned> {
    let at = |fraction: f64| config.duration.mul_f64(fraction);
    let mut planned = if config.upgrade.is_some() {
        vec![
            Planned {
                at: at(0.10),
                fault: Fault::SecondReplicaUp,
            },
            Planned {
                at: at(0.30),
                fault: Fault::RollingUpgrade,
            },
        ]
    } else {
        schedule(at)
    };
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

/// The fault schedule of a run without an upgrade, kills aside.
fn schedule(at: impl Fn(f64) -> Duration) -> Vec<Planned> {
    vec![
        Planned {
            at: at(0.15),
            fault: Fault::SecondReplicaUp,
        },
        Planned {
            at: at(0.30),
            fault: Fault::NatsRestart,
        },
        Planned {
            at: at(0.40),
            fault: Fault::OwnerKill9,
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
    ]
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
            Fault::OwnerKill9,
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
        assert!(!planned.iter().any(|p| p.fault == Fault::RollingUpgrade));
    }

    #[test]
    fn an_upgrade_run_starts_a_second_old_replica_then_replaces_them_once() {
        let launcher = Launcher {
            program: "new-dispatch".into(),
            args: vec![],
            env: vec![],
        };
        let config = Config {
            duration: Duration::from_secs(100),
            kills: 0,
            upgrade: Some(Upgrade {
                to: launcher,
                from_migrations: None,
                to_migrations: None,
                from_policy: None,
                ready_timeout: Duration::from_secs(30),
            }),
            ..Config::default()
        };
        let faults: Vec<(u64, Fault)> = plan(&config)
            .into_iter()
            .map(|p| (p.at.as_secs(), p.fault))
            .collect();
        assert_eq!(
            faults,
            [(10, Fault::SecondReplicaUp), (30, Fault::RollingUpgrade)]
        );
    }
}
