//! `whistle token create|list|revoke`: bearer tokens for the query service.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use whistle_store::tokens::{self, NewToken, Refused, Role};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// operator (reads and acts in an area), liaison (acts for a department), viewer (reads),
        /// grid_worker (reports from its grid and follows its reports up).
        #[arg(long)]
        role: Role,
        /// The area the token may see (city 150600, a district, street, community or grid).
        #[arg(long, conflicts_with = "department")]
        area: Option<String>,
        /// The department a liaison (or viewer) token belongs to; it sees the department's area.
        #[arg(long)]
        department: Option<String>,
        /// Who acts; default the area's operator, the grid's worker or the department's liaison.
        #[arg(long)]
        person: Option<String>,
        /// A note on what the token is for, shown by `list`.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime such as 30d or 12h; default no expiry.
        #[arg(long, value_parser = crate::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id; the query service refuses it within its cache time (10 s).
    Revoke { id: uuid::Uuid },
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let now = Utc::now();
    match args {
        Args::Create {
            role,
            area,
            department,
            person,
            label,
            expires_in,
        } => {
            let expires_at = expires_in
                .map(|d| TimeDelta::from_std(d).map(|d| now + d))
                .transpose()
                .context("--expires-in is too long")?;
            let new = NewToken {
                role: Some(role),
                area_code: area,
                department_code: department,
                person_id: person,
                label,
                expires_at,
            };
            let (token, secret) = match tokens::create(&pool, &new, now).await {
                Ok(created) => created,
                Err(Refused::Invalid(message)) => anyhow::bail!("token not created: {message}"),
                Err(Refused::Store(e)) => return Err(e).context("creating the token"),
            };
            // The secret alone on stdout, so `TOKEN=$(whistle token create …)` works.
            println!("{secret}");
            if std::io::stderr().is_terminal() || std::env::var_os("WHISTLE_VERBOSE").is_some() {
                eprintln!("{}", describe(&token));
                eprintln!("Store it now: it cannot be shown again.");
            }
        }
        Args::List => {
            for token in tokens::list(&pool).await.context("listing tokens")? {
                println!("{}", describe(&token));
            }
        }
        Args::Revoke { id } => {
            if tokens::revoke(&pool, id, now).await.context("revoking")? {
                println!("revoked {id}");
            } else {
                anyhow::bail!("no active token {id}");
            }
        }
    }
    Ok(())
}

fn describe(token: &tokens::Token) -> String {
    let state = match (token.revoked_at, token.expires_at) {
        (Some(at), _) => format!("revoked {}", at.format("%F %R")),
        (None, Some(at)) if at <= Utc::now() => format!("expired {}", at.format("%F %R")),
        (None, Some(at)) => format!("expires {}", at.format("%F %R")),
        (None, None) => "no expiry".to_owned(),
    };
    format!(
        "{}  {:<8} area {:<15} {:<16} {:<20} {}  {}",
        token.id,
        token.role.as_str(),
        token.area_code,
        token.department_code.as_deref().unwrap_or("-"),
        token.person_id.as_deref().unwrap_or("-"),
        state,
        token.label,
    )
}
