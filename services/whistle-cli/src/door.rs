//! Which credential the CLI presents on which door (docs/security.md).
//!
//! Person-facing commands (report, tasks, incident, the field commands) act as the person whose
//! bearer token they hold (`--token`/`WHISTLE_TOKEN`): the token's person comes from the query
//! service's `GetSession`, so a person needs no database rights. The test and operations tools
//! that play many people (load, simulate, watch) and stream administration use the admin nkey
//! (`--nats-nkey-file`/`WHISTLE_NATS_NKEY_FILE`). Without either, a connection is anonymous,
//! which only a server without authentication accepts.

use std::sync::Once;

use anyhow::{bail, Context as _};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use whistle_proto::{
    v1::{self, command_center_client::CommandCenterClient},
    Bearer,
};
use whistle_wire::{
    connect::{self, person_inbox_prefix},
    Credentials,
};

use crate::Connection;

/// The admin service's name in the server configuration (whistle-auth's `Service::Admin`).
const ADMIN: &str = "admin";

/// A query service client that sends the token with every call.
pub type QueryClient = CommandCenterClient<InterceptedService<Channel, Bearer>>;

/// The person a token acts as, from `GetSession`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub role: String,
    pub area: String,
    pub department: String,
}

impl Person {
    /// The person of a session; a viewer token has none and cannot act.
    pub fn of(session: &v1::Session) -> anyhow::Result<Person> {
        if session.person_id.is_empty() {
            bail!(
                "this {} token has no person: it may read on the gRPC door but cannot report or \
                 send commands",
                session.role
            );
        }
        Ok(Person {
            id: session.person_id.clone(),
            role: session.role.clone(),
            area: session.area_code.clone(),
            department: session.department_code.clone(),
        })
    }

    /// The credential of this person's NATS connection, with its private inbox.
    pub fn credentials(&self, secret: &str) -> Credentials {
        Credentials::Token {
            secret: secret.to_owned(),
            inbox_prefix: person_inbox_prefix(&self.id),
        }
    }

    /// The actor of a command or report: the token's person; `flag` (`--as`) may only repeat it.
    pub fn actor(&self, flag: &str, requested: Option<&str>) -> anyhow::Result<String> {
        match requested {
            Some(other) if other != self.id => bail!(
                "{flag} {other} does not match the token, which acts as {}: a token acts only as \
                 its own person (leave {flag} out)",
                self.id
            ),
            _ => Ok(self.id.clone()),
        }
    }
}

impl Connection {
    /// The query service's address.
    pub fn query_url(&self) -> &str {
        self.query_url.as_deref().unwrap_or(DEFAULT_QUERY_URL)
    }

    /// The admin identity, or anonymous when no nkey file is given.
    pub fn admin_credentials(&self) -> Credentials {
        match &self.nats_nkey_file {
            Some(seed_file) => Credentials::Nkey {
                seed_file: seed_file.clone(),
                service: ADMIN.into(),
            },
            None => Credentials::Anonymous,
        }
    }

    /// The token, or an error saying how to get one.
    pub fn token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().context(
            "this command acts as a person: give their token with --token or WHISTLE_TOKEN \
             (`whistle token create`)",
        )
    }

    /// A client of the query service carrying the token.
    pub async fn query(&self) -> anyhow::Result<QueryClient> {
        let url = self.query_url();
        let channel = Channel::from_shared(url.to_owned())
            .context("--query-url")?
            .connect()
            .await
            .with_context(|| format!("connecting to the query service at {url}"))?;
        let bearer = Bearer::new(self.token()?).context("the token is not ASCII")?;
        Ok(CommandCenterClient::with_interceptor(channel, bearer))
    }

    /// The token's person, asked of the query service.
    pub async fn person(&self) -> anyhow::Result<Person> {
        let session = self
            .query()
            .await?
            .get_session(v1::GetSessionRequest {})
            .await
            .map_err(|status| grpc_error("GetSession", status))?
            .into_inner();
        Person::of(&session)
    }
}

pub const DEFAULT_QUERY_URL: &str = "http://127.0.0.1:50051";

/// A refused or failed call, in words.
pub fn grpc_error(rpc: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{rpc} at the query service: {} ({:?})",
        status.message(),
        status.code()
    )
}

/// Connects to NATS as `name` with `credentials`, warning once when that is anonymous.
pub async fn nats(
    conn: &Connection,
    name: &str,
    credentials: &Credentials,
) -> anyhow::Result<async_nats::Client> {
    if *credentials == Credentials::Anonymous {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                url = conn.nats_url,
                "connecting to nats without a credential; only a server without authentication \
                 accepts this (give --nats-nkey-file or --token)"
            )
        });
    }
    connect::connect(&conn.nats_url, name, credentials)
        .await
        .map_err(|e| anyhow::anyhow!(whistle_wire::chain(&e)))
}

/// A connection as the admin identity (load, simulate, watch, streams).
pub async fn nats_admin(conn: &Connection) -> anyhow::Result<async_nats::Client> {
    nats(conn, "whistle-cli", &conn.admin_credentials()).await
}

/// How a person-facing command acts: as the token's person, or — without a token, on a
/// console machine holding the admin nkey or against a server without authentication — as
/// the person `--as` names.
pub enum Acting {
    Token(Person),
    Named(String),
}

impl Acting {
    /// Decides from the connection's credentials and `--as`.
    pub async fn resolve(conn: &Connection, requested: Option<&str>) -> anyhow::Result<Acting> {
        if conn.token.is_some() {
            let person = conn.person().await?;
            person.actor("--as", requested)?;
            return Ok(Acting::Token(person));
        }
        match requested {
            Some(person) => Ok(Acting::Named(person.to_owned())),
            None => bail!(
                "who acts? give the person's token (--token or WHISTLE_TOKEN), or --as PERSON \
                 with the admin nkey (--nats-nkey-file)"
            ),
        }
    }

    pub fn person_id(&self) -> &str {
        match self {
            Acting::Token(person) => &person.id,
            Acting::Named(id) => id,
        }
    }

    /// The NATS connection this actor sends on.
    pub async fn connect(&self, conn: &Connection) -> anyhow::Result<async_nats::Client> {
        let credentials = match self {
            Acting::Token(person) => person.credentials(conn.token()?),
            Acting::Named(_) => conn.admin_credentials(),
        };
        nats(conn, "whistle-cli", &credentials).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(role: &str, person: &str) -> v1::Session {
        v1::Session {
            role: role.into(),
            area_code: "150602".into(),
            person_id: person.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_acts_only_as_its_own_person() {
        let person = Person::of(&session("liaison", "li-150602-heating")).unwrap();
        assert_eq!(person.actor("--as", None).unwrap(), "li-150602-heating");
        assert_eq!(
            person.actor("--as", Some("li-150602-heating")).unwrap(),
            "li-150602-heating"
        );
        let refused = person
            .actor("--as", Some("op-150600"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("--as op-150600 does not match the token"),
            "{refused}"
        );
        assert!(refused.contains("li-150602-heating"), "{refused}");
    }

    #[test]
    fn a_viewer_token_cannot_act() {
        let error = Person::of(&session("viewer", "")).unwrap_err().to_string();
        assert!(error.contains("viewer token has no person"), "{error}");
    }

    #[test]
    fn a_persons_nats_credential_carries_its_private_inbox() {
        let person = Person::of(&session("grid_worker", "gw-150602001001001")).unwrap();
        assert_eq!(
            person.credentials("wst_secret"),
            Credentials::Token {
                secret: "wst_secret".into(),
                inbox_prefix: "_INBOX_gw-150602001001001".into(),
            }
        );
    }
}
