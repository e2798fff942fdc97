//! How a process connects to NATS: with which credential, and with which private inbox.
//!
//! Every connection authenticates (docs/security.md). Services (dispatch, query, the callout,
//! the admin tools) present an nkey seed kept in a file; people and devices present a bearer token
//! (`wst_…`) that the auth callout checks. Each identity may subscribe only to its own inbox
//! prefix, so a client must set it or its requests get no reply.

use std::{path::PathBuf, time::Duration};

use async_nats::{Client, ConnectOptions};

use crate::Error;

/// What a connection presents to nats-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A bearer token (`wst_…`), checked by the auth callout; its identity's inbox is given.
    Token {
        secret: String,
        inbox_prefix: String,
    },
    /// A service's nkey seed file (mode 0600), for the static service users.
    Nkey { seed_file: PathBuf, service: String },
    /// No credential: only for a server that runs without authentication.
    Anonymous,
}

impl Credentials {
    /// The inbox prefix the identity may subscribe to.
    pub fn inbox_prefix(&self) -> Option<String> {
        match self {
            Credentials::Token { inbox_prefix, .. } => Some(inbox_prefix.clone()),
            Credentials::Nkey { service, .. } => Some(service_inbox_prefix(service)),
            Credentials::Anonymous => None,
        }
    }
}

/// The private inbox prefix of a person: `_INBOX_{person}`, with `.` (allowed in person ids but a
/// subject separator) written `~` (never in a person id), so no person's inbox covers another's.
pub fn person_inbox_prefix(person: &str) -> String {
    format!("_INBOX_{}", person.replace('.', "~"))
}

/// The private inbox prefix of an identity with no person (a viewer token): `_INBOX_{token id}`,
/// the id in its simple (hyphenless) form.
pub fn token_inbox_prefix(token_id: &str) -> String {
    format!("_INBOX_{}", token_id.replace('-', ""))
}

/// The private inbox prefix of a service user (`dispatch`, `query`, `admin`, `callout`).
pub fn service_inbox_prefix(service: &str) -> String {
    format!("_INBOX_{service}")
}

/// How often a connection pings its server when nothing else arrives. async-nats gives up on a
/// server after two pings without an answer, so a node that went silent (partitioned, frozen)
/// is left for another of the cluster within about three intervals, instead of the three minutes
/// of the client's 60-second default; a ping costs a few bytes each way.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Options for a connection named `name` with `credentials`; the caller may add more before
/// connecting.
pub async fn options(name: &str, credentials: &Credentials) -> Result<ConnectOptions, Error> {
    let options = match credentials {
        Credentials::Token { secret, .. } => ConnectOptions::with_token(secret.clone()),
        Credentials::Nkey { seed_file, .. } => {
            let seed = std::fs::read_to_string(seed_file).map_err(|source| Error::Credential {
                path: seed_file.clone(),
                source,
            })?;
            ConnectOptions::with_nkey(seed.trim().to_owned())
        }
        Credentials::Anonymous => ConnectOptions::new(),
    };
    let options = match credentials.inbox_prefix() {
        Some(prefix) => options.custom_inbox_prefix(prefix),
        None => options,
    };
    Ok(options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(PING_INTERVAL))
}

/// The servers of a NATS URL setting: one URL, or a comma-separated list of a cluster's nodes
/// (`nats://10.77.0.11:4222,nats://10.77.0.12:4222`), so a process starts while any of them
/// answers; once connected, the client also learns the cluster's other nodes from the server.
pub fn servers(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Connects to `url` (one server or a comma-separated list, [`servers`]) as `name` with
/// `credentials`.
pub async fn connect(url: &str, name: &str, credentials: &Credentials) -> Result<Client, Error> {
    options(name, credentials)
        .await?
        .connect(servers(url))
        .await
        .map_err(|source| Error::Connect {
            url: url.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_person_never_shares_an_inbox_with_another() {
        assert_eq!(
            person_inbox_prefix("gw-150602001001001"),
            "_INBOX_gw-150602001001001"
        );
        // `a.>` would cover `a.b`'s inbox if the dot stayed a separator.
        assert_eq!(person_inbox_prefix("a.b"), "_INBOX_a~b");
        assert_ne!(
            person_inbox_prefix("a.b"),
            format!("{}.b", person_inbox_prefix("a"))
        );
        assert_eq!(
            token_inbox_prefix("0193e4a0-7b1c-7d2e-8f00-112233445566"),
            "_INBOX_0193e4a07b1c7d2e8f00112233445566"
        );
        assert_eq!(service_inbox_prefix("dispatch"), "_INBOX_dispatch");
    }

    #[test]
    fn a_url_setting_may_list_a_clusters_nodes() {
        assert_eq!(servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            servers("nats://10.77.0.11:4222, nats://10.77.0.12:4222,"),
            ["nats://10.77.0.11:4222", "nats://10.77.0.12:4222"]
        );
    }

    #[tokio::test]
    async fn a_missing_seed_file_is_named_in_the_error() {
        let credentials = Credentials::Nkey {
            seed_file: PathBuf::from("/nonexistent/dispatch.nk"),
            service: "dispatch".into(),
        };
        let error = options("test", &credentials).await.unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/dispatch.nk"),
            "{error}"
        );
    }
}
