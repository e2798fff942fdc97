//! `whistle volunteers`: the 双报到 registry (seed), the service ledger's leaderboards (board),
//! the yearly evaluation of units (evaluate), and a member's deregistration (deregister), as the
//! database owner (docs/party.md).

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context as _};
use chrono::{TimeZone, Utc};
use whistle_domain::{volunteer, AreaCode, PersonId};
use whistle_store::volunteers::{self, Board};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Register the Ordos registry (21,790 members, 1,727 teams, their units; `whistle seed` does
    /// it too). Idempotent.
    Seed,
    /// A leaderboard of confirmed service in an area.
    Board {
        /// The area: the city, a district, a street or a community.
        #[arg(long)]
        area: String,
        /// members, teams or units.
        #[arg(long, default_value = "members")]
        board: String,
        /// The Ordos calendar year [default: this year].
        #[arg(long)]
        year: Option<i32>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// The yearly evaluation of the units registered in an area: a workbook and one notice per
    /// unit, written into a new directory.
    Evaluate {
        #[arg(long)]
        area: String,
        /// The Ordos calendar year [default: last year].
        #[arg(long)]
        year: Option<i32>,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// End a member's registration: their tokens are revoked and an offer they hold goes back;
    /// the retention job then erases their name and phone.
    Deregister {
        #[arg(long)]
        person: String,
    },
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    match args {
        Args::Seed => seed(conn, &pool).await,
        Args::Board {
            area,
            board,
            year,
            limit,
        } => {
            let area: AreaCode = area.parse()?;
            let board = match board.as_str() {
                "members" => Board::Members,
                "teams" => Board::Teams,
                "units" => Board::Units,
                other => bail!("--board {other:?}: expected members, teams or units"),
            };
            let year = year.unwrap_or_else(|| volunteers::ordos_year(Utc::now()));
            let (from, to) = year_bounds(year)?;
            let lines = volunteers::leaderboard(&pool, board, &area, from, to, limit).await?;
            println!(
                "{:>4}  {:<32} {:>6} {:>8} {:>7}",
                "#", "name", "works", "hours", "points"
            );
            for (rank, line) in lines.iter().enumerate() {
                // The owner's CLI shows a member's name masked like any other screen does.
                let name = match board {
                    Board::Members => volunteer::mask_name(&line.name),
                    Board::Teams | Board::Units => line.name.clone(),
                };
                println!(
                    "{:>4}  {:<32} {:>6} {:>8.1} {:>7}",
                    rank + 1,
                    format!("{name} ({})", line.key),
                    line.confirmed,
                    line.minutes as f64 / 60.0,
                    line.points
                );
            }
            Ok(())
        }
        Args::Evaluate { area, year, out } => {
            let area: AreaCode = area.parse()?;
            let year = year.unwrap_or_else(|| volunteers::ordos_year(Utc::now()) - 1);
            let policy = whistle_wire::policy::load(&conn.policy)?;
            let rules = &policy.volunteers().evaluation;
            let written = whistle_cli::evaluation::write(&pool, &area, year, rules, &out).await?;
            println!(
                "{} units of {} evaluated for {year}: {} and one notice each in {}",
                written.units,
                written.area_name,
                written.workbook.display(),
                out.display()
            );
            Ok(())
        }
        Args::Deregister { person } => {
            let person: PersonId = person.parse()?;
            let policy = whistle_wire::policy::load(&conn.policy)?;
            let done = volunteers::deregister(
                &pool,
                &person,
                policy.volunteers(),
                Utc::now(),
                &conn.audit_actor(),
            )
            .await?;
            if !done {
                bail!("{person} is not a registered Party member");
            }
            println!(
                "{person} deregistered; their name and phone are erased on the next retention run"
            );
            Ok(())
        }
    }
}

/// The Ordos registry, registered now; prints what it inserted and how long it took.
pub async fn seed(conn: &Connection, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let dataset = whistle_domain::ordos::dataset();
    let registry = volunteer::ordos::registry(&dataset);
    let counts = volunteers::seed_registry(pool, &registry, &conn.audit_actor(), Utc::now())
        .await
        .context("seeding the 双报到 registry")?;
    println!(
        "registry: {} units, {} members, {} teams, {} memberships new ({} members and {} teams in all) in {:.2} s",
        counts.units,
        counts.members,
        counts.teams,
        counts.memberships,
        registry.members.len(),
        registry.teams.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn year_bounds(year: i32) -> anyhow::Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> {
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).context("UTC+8")?;
    let at = |y: i32| {
        ordos
            .with_ymd_and_hms(y, 1, 1, 0, 0, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("no year {y}"))
    };
    Ok((at(year)?, at(year + 1)?))
}
