//! `whistle people notify`: a person's quiet hours and deputy for notifications (docs/operations.md,
//! "Notifications"). An admin command: it writes the database directly.

use anyhow::{bail, Context as _};
use chrono::NaiveTime;

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
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

    #[test]
    fn quiet_hours_are_two_times_of_day() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(parse_quiet("22:00-07:30"), Ok((t(22, 0), t(7, 30))));
        assert!(parse_quiet("22:00").is_err());
        assert!(parse_quiet("25:00-07:00").is_err());
        assert!(parse_quiet("08:00-08:00").is_err());
    }
}
