//! `whistle`: the command line for grid workers, operators and developers.

mod admin;
mod audit;
mod bench;
mod chaos;
mod commands;
mod contacts;
mod db;
mod devices;
mod door;
mod generator;
mod hotspots;
mod incident;
mod leaders;
mod load;
mod load_summary;
mod monthly;
mod org;
mod people;
mod photos;
mod policy;
mod report;
mod rows;
mod simulate;
mod tasks;
mod token;
mod volunteers;
mod watch;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "whistle",
    version,
    about = "Whistle — grid governance dispatch: report, watch, tasks, field commands, simulate, seed, migrate, load"
)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Connection {
    /// NATS server, or a comma-separated list of a cluster's nodes.
    #[arg(
        long,
        global = true,
        env = "WHISTLE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// PostgreSQL database (admin commands: migrate, seed, token, bench fill as the owner; db
    /// roles as a superuser). Without a password in it, PGPASSFILE or ~/.pgpass gives it.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/whistle"
    )]
    pub database_url: String,
    /// Prefix of the database roles: PREFIX_owner, PREFIX_dispatch, PREFIX_query (db roles;
    /// migrate and seed grant dispatch and query their rights on new tables if they exist).
    #[arg(long, global = true, env = "WHISTLE_DB_ROLES", default_value = whistle_store::roles::DEFAULT_PREFIX)]
    pub db_roles: String,
    /// Builtin policy (ordos, ordos-demo) or a policy TOML file: the categories of the admin
    /// tools (load, simulate, bench, watch, categories). `tasks` and `incident` read the names of
    /// the running version, the departments and the org from the query service instead.
    #[arg(long, global = true, env = "WHISTLE_POLICY", default_value = "ordos")]
    pub policy: String,
    /// The admin identity's nkey seed file (streams, load, simulate, watch; field commands
    /// with --as on a console machine).
    #[arg(long, global = true, env = "WHISTLE_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// A person's bearer token (`whistle token create`), used on both doors: NATS through the
    /// auth callout and gRPC to the query service.
    #[arg(long, global = true, env = "WHISTLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The query service [default: http://127.0.0.1:50051].
    #[arg(long, global = true, env = "WHISTLE_QUERY_URL")]
    pub query_url: Option<String>,
    /// Who performs an admin command, as the audit log records it (a name or staff id); the
    /// OS user is recorded too, and stands in when this is not given.
    #[arg(
        id = "admin_actor",
        long = "actor",
        global = true,
        env = "WHISTLE_ADMIN_ACTOR"
    )]
    pub actor: Option<String>,
}

impl Connection {
    /// The actor of the audit log's entries of this command.
    pub fn audit_actor(&self) -> whistle_store::audit::Actor {
        whistle_store::audit::Actor::cli(self.actor.as_deref())
    }
}

// Parsed once per process; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations (as the owner role), then grant the dispatch and query
    /// roles their rights on the tables, if those roles exist.
    Migrate,
    /// Load the Ordos org tree, departments, people and grid boundaries: the import of
    /// deploy/ordos/ (compiled in), applied as a version if anything changes (idempotent); then
    /// the 双报到 registry of Party members and volunteer teams, and the paired leaders
    /// (领导结对联系) and their pairings.
    Seed,
    /// File a report as a grid worker; `report monthly`: the monthly assessment report.
    Report(report::Args),
    /// Follow events live, human-readable.
    Watch(watch::Args),
    /// Send realistic reports at a fixed rate and measure what comes back.
    Load(load::Args),
    /// List the dispatch categories of the policy.
    Categories,
    /// A department's tasks with the time left to report in or resolve (read-only).
    Tasks(tasks::Args),
    /// One incident with its tasks, reports and whole timeline (read-only).
    Incident(incident::Args),
    /// 每月一题 (未诉先办): the month's candidate topics of an area — places and categories whose
    /// reports repeat, grow, return or come with a season — with their evidence (read-only).
    Hotspots(hotspots::Args),
    #[command(flatten)]
    Field(commands::Field),
    /// Benchmarks of the query service: fill, query, watch.
    #[command(subcommand)]
    Bench(bench::Args),
    /// Bearer tokens of people and devices, for both doors (create, list, revoke).
    #[command(subcommand)]
    Token(token::Args),
    /// Residents' contacts: the keyring (keygen, rekey) and who read them unmasked (log).
    #[command(subcommand)]
    Contacts(contacts::Args),
    /// Photos of incidents on a person's request: the photos incidents show (find), erasure
    /// (erase).
    #[command(subcommand)]
    Photos(photos::Args),
    /// The city's organisation as files: template, import (preview, --apply), export, versions.
    #[command(subcommand)]
    Org(org::Args),
    /// People: onboard (add), change or transfer, offboard, list; notification preferences.
    #[command(subcommand)]
    People(people::Args),
    /// 领导结对联系: pair leaders with streets and communities, unpair, list.
    #[command(subcommand)]
    Leaders(leaders::Args),
    /// The device registry: register sensors and video-analytics systems per grid, list them.
    #[command(subcommand)]
    Devices(devices::Args),
    /// The dispatch policy as versions: propose, diff, approve (by a second operator), reject,
    /// list, show, status.
    #[command(subcommand)]
    Policy(policy::Args),
    /// Party members and volunteers (双报到): seed the registry, leaderboards of the service
    /// ledger, the yearly evaluation of units, deregistration (as the owner).
    #[command(subcommand)]
    Volunteers(volunteers::Args),
    /// The audit log of administration: who created or revoked tokens, changed the org tree or
    /// people, migrated, read residents' contacts unmasked (read-only, as the owner).
    Audit(audit::Args),
    /// The database's roles: owner, dispatch, query (as a superuser).
    #[command(subcommand)]
    Db(db::Args),
    /// Print the nats-server configuration of a deployment, creating its secrets if missing.
    NatsConfig(admin::NatsConfigArgs),
    /// Create or update the hardened WHISTLE_* streams and the photo bucket (as admin:
    /// --nats-nkey-file).
    Streams(admin::StreamsArgs),
    /// Back up the JetStream streams — messages and consumers — into a new directory (as admin:
    /// --nats-nkey-file); deploy/backup/backup.sh runs it before the database's base backup.
    BackupStreams {
        /// The directory to create (0700); it must not hold a backup already.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore the streams of a backup onto a new nats-server that has none of them yet (as
    /// admin), before `whistle streams`.
    RestoreStreams {
        /// A directory `backup-streams` finished (it has its manifest.json).
        #[arg(long)]
        from: PathBuf,
    },
    /// Play grid workers, handlers, liaisons and follow-ups at once against a running platform.
    Simulate(simulate::Args),
    /// Fault-injection suite on private servers: kill -9, restarts, pauses, replicas; then check
    /// that nothing was lost or duplicated and every timer fired once (exit 1 if not).
    Chaos(chaos::Args),
}

impl Command {
    fn prints_for_pipes(&self) -> bool {
        !matches!(
            self,
            Command::Load(_) | Command::Simulate(_) | Command::Chaos(_) | Command::Bench(_)
        )
    }
}

/// Exit status of a command that dispatch refused (anything else that fails exits with 1).
const EXIT_REFUSED: i32 = 2;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    if cli.command.prints_for_pipes() {
        // `whistle categories | head`: end quietly when the reader goes away, as Unix tools do,
        // instead of panicking in println!. Long runs that supervise child processes keep Rust's
        // default (SIGPIPE ignored, EPIPE as an error); sockets never raise it (MSG_NOSIGNAL).
        sigpipe::reset();
    }
    match cli.command {
        Command::Migrate => {
            let pool = connect_db(&cli.conn).await?;
            let granted = migrate(&cli.conn, &pool).await?;
            println!(
                "migrations applied ({} in total){}",
                whistle_store::MIGRATOR.iter().count(),
                granted
            );
        }
        Command::Seed => {
            let pool = connect_db(&cli.conn).await?;
            migrate(&cli.conn, &pool).await?;
            org::seed(&cli.conn).await?;
            volunteers::seed(&cli.conn, &pool).await?;
            leaders::seed(&cli.conn).await?;
        }
        Command::Volunteers(args) => volunteers::run(&cli.conn, args).await?,
        Command::Org(args) => org::run(&cli.conn, args).await?,
        Command::Report(report::Args {
            monthly: Some(report::Monthly::Monthly(args)),
            ..
        }) => monthly::run(&cli.conn, args).await?,
        Command::Report(args) => report::run(&cli.conn, args).await?,
        Command::Watch(args) => watch::run(&cli.conn, args).await?,
        Command::Load(args) => load::run(&cli.conn, args).await?,
        Command::Tasks(args) => tasks::run(&cli.conn, args).await?,
        Command::Incident(args) => incident::run(&cli.conn, args).await?,
        Command::Hotspots(args) => hotspots::run(&cli.conn, args).await?,
        Command::Field(field) => {
            if let Err(e) = commands::run(&cli.conn, field).await {
                match e.downcast_ref::<commands::Refused>() {
                    Some(refused) => {
                        eprintln!("{refused}");
                        std::process::exit(EXIT_REFUSED);
                    }
                    None => return Err(e),
                }
            }
        }
        Command::Simulate(args) => simulate::run(&cli.conn, args).await?,
        Command::Token(args) => token::run(&cli.conn, args).await?,
        Command::Db(args) => db::run(&cli.conn, args).await?,
        Command::People(args) => people::run(&cli.conn, args).await?,
        Command::Leaders(args) => leaders::run(&cli.conn, args).await?,
        Command::Devices(args) => devices::run(&cli.conn, args).await?,
        Command::Audit(args) => audit::run(&cli.conn, args).await?,
        Command::Policy(args) => policy::run(&cli.conn, args).await?,
        Command::Contacts(args) => contacts::run(&cli.conn, args).await?,
        Command::Photos(args) => photos::run(&cli.conn, args).await?,
        Command::NatsConfig(args) => print!("{}", admin::nats_config(&args)?),
        Command::Streams(args) => admin::streams(&cli.conn, &args).await?,
        Command::BackupStreams { to } => {
            let client = door::nats_admin(&cli.conn).await?;
            for copy in whistle_cli::backup::snapshot_streams(&client, &to).await? {
                println!(
                    "{}: {} messages (last sequence {}), {} bytes",
                    copy.name, copy.messages, copy.last_seq, copy.snapshot_bytes
                );
            }
        }
        Command::RestoreStreams { from } => {
            let client = door::nats_admin(&cli.conn).await?;
            for copy in whistle_cli::backup::restore_streams(&client, &from).await? {
                println!(
                    "restored {}: {} messages (last sequence {})",
                    copy.name, copy.messages, copy.last_seq
                );
            }
        }
        Command::Bench(args) => bench::run(&cli.conn, args).await?,
        Command::Chaos(args) => {
            if !chaos::run(args).await? {
                std::process::exit(1);
            }
        }
        Command::Categories => {
            let policy = whistle_wire::policy::load(&cli.conn.policy)?;
            println!("policy {}", policy.version());
            for category in policy.categories() {
                println!(
                    "{:<32} {:<8} {:<10} {}",
                    category.code,
                    format!("{:?}", category.sla).to_lowercase(),
                    category.first_level.as_str(),
                    category.name_zh
                );
            }
        }
    }
    Ok(())
}

/// Applies the migrations, then grants the roles of `--db-roles` their rights on the tables if
/// they exist; says which got them (`; rights granted to …`) or nothing.
async fn migrate(conn: &Connection, pool: &sqlx::PgPool) -> anyhow::Result<String> {
    whistle_store::migrate(pool, &conn.audit_actor())
        .await
        .context("applying migrations (as the database owner)")?;
    let roles = db::roles(conn)?;
    let granted = whistle_store::roles::grant(pool, &roles)
        .await
        .context("granting the dispatch and query roles their rights")?;
    Ok(if granted {
        format!("; rights granted to {} and {}", roles.dispatch, roles.query)
    } else {
        String::new()
    })
}

async fn connect_db(conn: &Connection) -> anyhow::Result<sqlx::PgPool> {
    whistle_store::connect(&conn.database_url, 2)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", conn.database_url))
}

/// Parses `90s`, `10m`, `2h`, `30d`, `500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s, 10m or 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}; use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_monthly_parses_beside_a_grid_workers_report() {
        let cli = Cli::try_parse_from([
            "whistle", "report", "monthly", "--month", "2026-11", "--area", "150602",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Report(report::Args {
                monthly: Some(_),
                ..
            })
        ));
        let cli = Cli::try_parse_from(["whistle", "report", "--grid", "150602001001001"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Report(report::Args { monthly: None, .. })
        ));
        // The monthly report takes none of a grid worker's flags.
        assert!(Cli::try_parse_from(["whistle", "report", "--grid", "1", "monthly"]).is_err());
    }

    #[test]
    fn org_commands_parse_and_need_their_files() {
        let cli =
            Cli::try_parse_from(["whistle", "org", "import", "a.xlsx", "b.geojson", "--apply"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Org(org::Args::Import { apply: true, ref files, show: 50 }) if files.len() == 2
        ));
        assert!(Cli::try_parse_from(["whistle", "org", "import"]).is_err());
        assert!(
            Cli::try_parse_from(["whistle", "org", "export", "--out", "d", "--format", "pdf"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "whistle", "org", "template", "--out", "d", "--format", "csv",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Org(org::Args::Template {
                format: whistle_orgfile::Format::Csv,
                ..
            })
        ));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
