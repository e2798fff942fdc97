//! `whistle chaos`: the fault-injection suite, long form. It owns its servers (a private
//! nats-server and PostgreSQL cluster on free loopback ports), runs `whistle-dispatch` replicas as
//! child processes, and exits non-zero if any report is lost or duplicated or any timer misfires.
//! The runner and the checker live in the `whistle-chaos` crate (crates/chaos).

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to publish reports and inject faults.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    duration: Duration,
    /// Reports per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// kill -9 of a dispatch replica at random moments.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Seed of the fault schedule and the load.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Ack wait of the intake consumer; the paused replica stays stopped 3 s longer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ack_wait: Duration,
    /// How long NATS, PostgreSQL and the whole dispatch fleet each stay down.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    outage: Duration,
    /// Every duration of the Ordos policy is divided by this (600: a 4 h window is 24 s).
    #[arg(long, default_value_t = 600)]
    time_divisor: u32,
    /// How many grids reports come from (at most 1564).
    #[arg(long, default_value_t = 1564)]
    grids: usize,
    /// How many categories reports use.
    #[arg(long, default_value_t = 4)]
    categories: usize,
    /// One report in this many is invalid (0: none).
    #[arg(long, default_value_t = 20)]
    invalid_every: u64,
    /// The whistle-dispatch binary (default: next to this one, else on PATH).
    #[arg(long)]
    dispatch_bin: Option<PathBuf>,
    /// The nats-server binary.
    #[arg(long, env = "WHISTLE_NATS_SERVER_BIN", default_value = "nats-server")]
    nats_server: String,
    /// A PostgreSQL bin directory with initdb and pg_ctl (default: the highest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, env = "WHISTLE_PG_BINDIR")]
    pg_bindir: Option<PathBuf>,
    /// Keep servers' data and replicas' logs here (default: a temp dir, removed after a pass).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Most time allowed to settle after the load.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    settle_timeout: Duration,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Commands per second: comments on random incidents by their district's operator, each
    /// checked to be applied exactly once (0: none).
    #[arg(long, default_value_t = 0.0)]
    command_rate: f64,
    /// A rolling upgrade instead of the fault schedule: replicas start as --dispatch-bin (the
    /// old version), the migrations of --to-migrations are applied while they serve, then each
    /// is replaced, one at a time, by this binary (the new version). Kills still fall if
    /// --kills is not 0.
    #[arg(long)]
    upgrade_to: Option<PathBuf>,
    /// With --upgrade-to: the migrations directory the database starts with (the old
    /// release's crates/store/migrations; default this build's).
    #[arg(long, requires = "upgrade_to")]
    from_migrations: Option<PathBuf>,
    /// With --upgrade-to: the migrations directory applied during the upgrade (default this
    /// build's).
    #[arg(long, requires = "upgrade_to")]
    to_migrations: Option<PathBuf>,
    /// With --upgrade-to: the old release's policy/ordos.toml, the base of the run's policy
    /// (default this build's, which an older dispatch may not read).
    #[arg(long, requires = "upgrade_to")]
    from_policy: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let dispatch = match args.dispatch_bin {
        Some(bin) => bin,
        None => {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("whistle-dispatch")));
            beside
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("whistle-dispatch"))
        }
    };
    let config = whistle_chaos::Config {
        duration: args.duration,
        rate: args.rate,
        kills: args.kills,
        seed: args.seed,
        ack_wait: args.ack_wait,
        outage: args.outage,
        time_divisor: args.time_divisor,
        grids: args.grids,
        categories: args.categories,
        invalid_every: args.invalid_every,
        nats_server: args.nats_server,
        pg_bindir: args.pg_bindir,
        dispatch: whistle_chaos::Launcher {
            program: dispatch,
            args: vec![],
            env: vec![],
        },
        work_dir: args.work_dir,
        keep: false,
        drain_timeout: args.settle_timeout,
        progress: true,
        command_rate: args.command_rate,
        upgrade: args.upgrade_to.map(|program| whistle_chaos::Upgrade {
            to: whistle_chaos::Launcher {
                program,
                args: vec![],
                env: vec![],
            },
            from_migrations: args.from_migrations,
            to_migrations: args.to_migrations,
            from_policy: args.from_policy,
            ready_timeout: Duration::from_secs(60),
        }),
    };
    let report = whistle_chaos::run(config)
        .await
        .context("the chaos run failed to run")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.passed())
}
