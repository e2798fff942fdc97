//! `whistle token create|list|revoke`: bearer tokens of people and devices, for both doors —
//! gRPC to the query service and NATS through the auth callout (docs/security.md). Database
//! admin commands: they need `DATABASE_URL` with rights on the tokens table.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use whistle_store::tokens::{self, NewToken, Refused, Role};
use whistle_wire::connect::{person_inbox_prefix, token_inbox_prefix};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// operator (reads and acts in an area), liaison (acts for a department), viewer (reads),
        /// grid_worker (reports from its grid and follows its reports up), open311 (a third-party
        /// app's key to the Open311 door) or hotline (the 12345 hotline system's key to it).
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
        /// The registered device of a `device` token (`whistle devices register`); its scope is
        /// the device's grid.
        #[arg(long)]
        device: Option<String>,
        /// A note on what the token is for, shown by `list`.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime such as 30d or 12h; default no expiry.
        #[arg(long, value_parser = crate::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id; the query service refuses it at once, and its NATS connections
    /// are cut at once (within the callout's re-check interval, 60 s, at the latest).
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
            device,
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
                device_id: device,
                label,
                expires_at,
            };
            let (token, secret) = match tokens::create(&pool, &new, now, &conn.audit_actor()).await
            {
                Ok(created) => created,
                Err(Refused::Invalid(message)) => anyhow::bail!("token not created: {message}"),
                Err(Refused::Store(e)) => return Err(e).context("creating the token"),
            };
            // The secret alone on stdout, so `TOKEN=$(whistle token create …)` works.
            println!("{secret}");
            if std::io::stderr().is_terminal() || std::env::var_os("WHISTLE_VERBOSE").is_some() {
                eprintln!("{}", describe(&token));
                if token.role.is_open311_key() {
                    eprintln!(
                        "An Open311 key: send it as api_key to the Open311 door (docs/open311.md); no other door takes it."
                    );
                } else {
                    eprintln!("{}", nats_usage(&token));
                }
                eprintln!("Store it now: it cannot be shown again.");
            }
        }
        Args::List => {
            for token in tokens::list(&pool).await.context("listing tokens")? {
                println!("{}", describe(&token));
            }
        }
        Args::Revoke { id } => {
            if tokens::revoke(&pool, id, now, &conn.audit_actor())
                .await
                .context("revoking")?
            {
                println!("revoked {id}");
            } else {
                anyhow::bail!("no active token {id}");
            }
        }
    }
    Ok(())
}

/// The inbox a token's NATS client must use: the only one it may subscribe to.
pub fn inbox_prefix(token: &tokens::Token) -> String {
    match &token.person_id {
        Some(person) => person_inbox_prefix(person),
        None => token_inbox_prefix(&token.id.to_string()),
    }
}

/// How to present the token on NATS.
fn nats_usage(token: &tokens::Token) -> String {
    format!(
        "On NATS: connect with the token as the connection token and inbox prefix {prefix} \
         (nats CLI: --user TOKEN --inbox-prefix {prefix}; async-nats: \
         ConnectOptions::with_token(TOKEN).custom_inbox_prefix(\"{prefix}\"); nats-py: \
         nats.connect(url, token=TOKEN, inbox_prefix=b\"{prefix}\")).",
        prefix = inbox_prefix(token)
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(person: Option<&str>) -> tokens::Token {
        tokens::Token {
            id: "0193e4a0-7b1c-7d2e-8f00-112233445566".parse().unwrap(),
            role: Role::GridWorker,
            area_code: "150602001001001".into(),
            department_code: None,
            person_id: person.map(Into::into),
            device_id: None,
            label: String::new(),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_tokens_inbox_is_its_persons_or_else_its_own() {
        assert_eq!(
            inbox_prefix(&token(Some("gw-150602001001001"))),
            "_INBOX_gw-150602001001001"
        );
        assert_eq!(
            inbox_prefix(&token(None)),
            "_INBOX_0193e4a07b1c7d2e8f00112233445566"
        );
        let usage = nats_usage(&token(Some("gw-150602001001001")));
        assert!(usage.contains("--user TOKEN --inbox-prefix _INBOX_gw-150602001001001"));
    }
}
