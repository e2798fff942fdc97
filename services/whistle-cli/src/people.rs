//! `whistle people add|change|offboard|list|notify`: people's lifecycle (docs/operations.md,
//! "People come and go") and their quiet hours and deputy for notifications ("Notifications").
//! Admin commands: they write the database directly, each change on the audit log.

use anyhow::{bail, Context as _};
use chrono::{NaiveTime, Utc};
use whistle_store::people::{self, NewPerson, PersonChange, Refused};

use crate::{connect_db, Connection};

/// The roles a person may hold (the `people_role_check` of the schema).
const ROLES: [&str; 5] = ["grid_worker", "liaison", "operator", "handler", "leader"];

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Onboard a person: a grid worker of a grid, a liaison of a department, an operator of an
    /// area, or a handler of a street or community.
    Add {
        /// A new, never used id, e.g. `li-150602-urban_management-2`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A mobile (13800008000) or a landline with its area code (0477-8581234).
        #[arg(long, value_parser = parse_phone)]
        phone: String,
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// The grid (grid_worker), department (liaison) or area (operator, handler; the city or a
        /// district for a leader).
        #[arg(long)]
        post: String,
    },
    /// Change a person's name or phone, or their role or post (a transfer). A transfer hands
    /// what belongs to the old post (open tasks, a grid left without a worker) to --successor,
    /// or is refused listing it, and revokes the person's tokens (scoped to the old post).
    Change {
        /// The person's id.
        person: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = parse_phone)]
        phone: Option<String>,
        /// A new role; needs --post.
        #[arg(long, value_parser = ROLES, requires = "post")]
        role: Option<String>,
        /// A new grid, department or area (in the current role unless --role is given).
        #[arg(long)]
        post: Option<String>,
        /// Who takes over what the old post held.
        #[arg(long, requires = "post")]
        successor: Option<String>,
    },
    /// Offboard a person in one transaction: tokens revoked, open tasks and a grid they alone
    /// work handed to --successor (each handover on the incident's timeline), deputies naming
    /// them re-pointed to --successor. Refused, changing nothing, while they hold any of that
    /// and no successor is named. The person stays in history, marked as left.
    Offboard {
        /// The person's id.
        person: String,
        /// A live liaison of the same department, or grid worker of the same grid.
        #[arg(long)]
        successor: Option<String>,
    },
    /// List people (by id), with their role, post and status.
    List {
        /// Only those whose post lies inside this area.
        #[arg(long)]
        area: Option<String>,
        /// Include people who left.
        #[arg(long)]
        all: bool,
    },
    /// Set when a person gets no SMS (quiet hours, local time) and who is told in their place.
    Notify {
        /// The person's id, e.g. `li-150602-urban_management`.
        #[arg(long)]
        person: String,
        /// Quiet hours `HH:MM-HH:MM` (an end before the start runs past midnight).
        #[arg(long, value_parser = parse_quiet, required_unless_present = "clear")]
        quiet: Option<(NaiveTime, NaiveTime)>,
        /// The person told instead when a message cannot reach them in time.
        #[arg(long, conflicts_with = "clear")]
        deputy: Option<String>,
        /// Remove the quiet hours and the deputy.
        #[arg(long)]
        clear: bool,
    },
}

fn parse_phone(s: &str) -> Result<String, String> {
    people::parse_phone(s).map_err(|e| e.to_string())
}

/// A refusal in the CLI's words: what is still held, and how to name a successor.
fn refused(error: Refused) -> anyhow::Error {
    match error {
        Refused::Holds { person, holdings } => anyhow::anyhow!(
            "refused, nothing changed: {person} still holds {holdings}\n\
             name who takes over with --successor ID"
        ),
        Refused::Invalid(message)
        | Refused::NotFound(message)
        | Refused::Exists(message)
        | Refused::Left(message)
        | Refused::Unfit(message)
        | Refused::OutOfScope(message) => anyhow::anyhow!("refused, nothing changed: {message}"),
        Refused::Store(e) => anyhow::Error::new(e),
    }
}

fn print_outcome(verb: &str, outcome: &people::Outcome) {
    println!("{} {verb}", outcome.person.id);
    if !outcome.handed_over.is_empty() {
        println!(
            "  handed to {}: {}",
            outcome.successor_id.as_deref().unwrap_or("?"),
            outcome.handed_over
        );
    }
    if !outcome.tokens_revoked.is_empty() {
        let ids: Vec<String> = outcome
            .tokens_revoked
            .iter()
            .map(|id| id.to_string())
            .collect();
        println!("  tokens revoked: {}", ids.join(", "));
    }
}

fn parse_quiet(s: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let (start, end) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected HH:MM-HH:MM"))?;
    let time = |t: &str| {
        NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|e| format!("{t:?}: {e} (HH:MM)"))
    };
    let (start, end) = (time(start)?, time(end)?);
    if start == end {
        return Err(format!("{s:?}: the start and the end are the same"));
    }
    Ok((start, end))
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    match args {
        Args::Add {
            id,
            name,
            phone,
            role,
            post,
        } => {
            let role = people::parse_role(&role, &post)?;
            let pool = connect_db(conn).await?;
            let new = NewPerson {
                id,
                name,
                phone,
                role,
            };
            let person = people::onboard(&pool, &new, Utc::now(), &conn.audit_actor())
                .await
                .map_err(refused)?;
            println!(
                "{} onboarded: {} {} of {}",
                person.id,
                person.name,
                person.role.kind(),
                people::post(&person.role)
            );
        }
        Args::Change {
            person,
            name,
            phone,
            role,
            post,
            successor,
        } => {
            let pool = connect_db(conn).await?;
            let role = match post {
                None => None,
                Some(post) => {
                    let kind = match role {
                        Some(role) => role,
                        None => people::get(&pool, &person)
                            .await?
                            .with_context(|| format!("no person {person}"))?
                            .role
                            .kind()
                            .to_owned(),
                    };
                    Some(people::parse_role(&kind, &post)?)
                }
            };
            let change = PersonChange { name, phone, role };
            let outcome = people::change(
                &pool,
                &person,
                &change,
                successor.as_deref(),
                Utc::now(),
                &conn.audit_actor(),
            )
            .await
            .map_err(refused)?;
            print_outcome("changed", &outcome);
        }
        Args::Offboard { person, successor } => {
            let pool = connect_db(conn).await?;
            let outcome = people::offboard(
                &pool,
                &person,
                successor.as_deref(),
                Utc::now(),
                &conn.audit_actor(),
            )
            .await
            .map_err(refused)?;
            print_outcome("offboarded", &outcome);
        }
        Args::List { area, all } => {
            let pool = connect_db(conn).await?;
            let area_prefix = match area {
                Some(area) => Some(
                    area.parse::<whistle_domain::AreaCode>()
                        .map_err(|e| anyhow::anyhow!("--area: {e}"))?
                        .prefix()
                        .to_owned(),
                ),
                None => None,
            };
            let filter = people::Filter {
                area_prefix,
                include_left: all,
            };
            for person in people::list(&pool, &filter).await? {
                let status = match (&person.left_at, &person.successor_id) {
                    (None, _) => "在岗".to_owned(),
                    (Some(left), Some(successor)) => {
                        format!("已离岗 {} → {successor}", left.format("%Y-%m-%d"))
                    }
                    (Some(left), None) => format!("已离岗 {}", left.format("%Y-%m-%d")),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{status}",
                    person.id,
                    person.name,
                    person.role.kind(),
                    people::post(&person.role),
                    whistle_domain::contact::mask(&person.phone),
                );
            }
        }
        Args::Notify {
            person,
            quiet,
            deputy,
            clear,
        } => {
            if deputy.as_deref() == Some(person.as_str()) {
                bail!("a person cannot be their own deputy");
            }
            let pool = connect_db(conn).await?;
            if let Some(deputy) = &deputy {
                if whistle_store::notifications::person(&pool, deputy)
                    .await?
                    .is_none()
                {
                    bail!("no person {deputy}");
                }
            }
            let (quiet, deputy) = if clear { (None, None) } else { (quiet, deputy) };
            let found = whistle_store::notifications::set_preferences(
                &pool,
                &person,
                quiet,
                deputy.as_deref(),
                &conn.audit_actor(),
            )
            .await
            .context("setting the notification preferences")?;
            if !found {
                bail!("no person {person}");
            }
            match quiet {
                Some((start, end)) => println!(
                    "{person}: quiet {}-{}, deputy {}",
                    start.format("%H:%M"),
                    end.format("%H:%M"),
                    deputy.as_deref().unwrap_or("none")
                ),
                None => println!(
                    "{person}: no quiet hours, deputy {}",
                    deputy.as_deref().unwrap_or("none")
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        people: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("people").chain(args.iter().copied())).map(|c| c.people)
    }

    #[test]
    fn add_takes_a_known_role_its_post_and_a_phone() {
        let add = parse(&[
            "add",
            "--id",
            "li-x",
            "--name",
            "张伟",
            "--phone",
            "138 0000 8000",
            "--role",
            "liaison",
            "--post",
            "150602-urban_management",
        ])
        .unwrap();
        assert!(matches!(add, Args::Add { phone, .. } if phone == "13800008000"));
        let bad_phone = parse(&[
            "add", "--id", "li-x", "--name", "张伟", "--phone", "12345", "--role", "liaison",
            "--post", "d",
        ])
        .unwrap_err()
        .to_string();
        assert!(bad_phone.contains("bad phone"), "{bad_phone}");
        let bad_role = parse(&[
            "add",
            "--id",
            "x",
            "--name",
            "n",
            "--phone",
            "13800008000",
            "--role",
            "captain",
            "--post",
            "150602",
        ])
        .unwrap_err()
        .to_string();
        assert!(bad_role.contains("captain"), "{bad_role}");
        assert!(parse(&["add", "--id", "x", "--name", "n", "--phone", "13800008000"]).is_err());
    }

    #[test]
    fn a_successor_comes_with_a_transfer_or_an_offboarding() {
        assert!(matches!(
            parse(&["offboard", "li-x", "--successor", "li-y"]).unwrap(),
            Args::Offboard { successor: Some(s), .. } if s == "li-y"
        ));
        assert!(matches!(
            parse(&["offboard", "li-x"]).unwrap(),
            Args::Offboard {
                successor: None,
                ..
            }
        ));
        // A new role needs its post; a successor only comes with a new post.
        assert!(parse(&["change", "li-x", "--role", "operator"]).is_err());
        assert!(parse(&["change", "li-x", "--successor", "li-y"]).is_err());
        assert!(parse(&[
            "change",
            "li-x",
            "--post",
            "150602-water",
            "--successor",
            "li-y"
        ])
        .is_ok());
        assert!(parse(&["change", "li-x", "--name", "李四"]).is_ok());
    }

    #[test]
    fn quiet_hours_are_two_times_of_day() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(parse_quiet("22:00-07:30"), Ok((t(22, 0), t(7, 30))));
        assert!(parse_quiet("22:00").is_err());
        assert!(parse_quiet("25:00-07:00").is_err());
        assert!(parse_quiet("08:00-08:00").is_err());
    }
}
