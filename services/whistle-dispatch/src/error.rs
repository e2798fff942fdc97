//! The errors of the dispatch service; each keeps its cause.

use std::path::PathBuf;

use async_nats::jetstream::{
    context::{GetStreamError, PublishError},
    stream::ConsumerError,
};
use uuid::Uuid;

/// Errors of the dispatch service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "opening stream {stream} (the admin creates the streams: run `whistle streams` as admin)"
    )]
    OpenStream {
        stream: &'static str,
        #[source]
        source: GetStreamError,
    },
    #[error("creating or updating consumer {consumer}")]
    Consumer {
        consumer: String,
        #[source]
        source: ConsumerError,
    },
    /// Starting the NATS micro service or adding one of its endpoints.
    #[error("{what}")]
    Service {
        what: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("publishing event {event_id}")]
    Publish {
        event_id: Uuid,
        #[source]
        source: PublishError,
    },
    #[error("event publish not confirmed")]
    PublishAck(#[source] PublishError),
    #[error("the relay task failed")]
    Relay(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] whistle_store::Error),
    #[error("applying {pending} pending database migrations (this needs the database owner's rights; with separate roles run `whistle migrate` as the owner before starting dispatch)")]
    Migrate {
        pending: usize,
        #[source]
        source: whistle_store::Error,
    },
    #[error("policy")]
    Policy(#[from] whistle_wire::PolicyError),
    #[error("policy version: {0}")]
    PolicyVersion(String),
    #[error("holiday calendar {dir}: {message}")]
    Calendar { dir: PathBuf, message: String },
    /// The NATS credential could not be read (a missing or unreadable seed file).
    #[error(transparent)]
    Credential(#[from] whistle_wire::Error),
    #[error("org tree: {0}")]
    Org(#[from] whistle_domain::OrgError),
    #[error("no contact keyring: give --contact-keys FILE (WHISTLE_CONTACT_KEYS), or --no-contacts to drop residents' contacts")]
    NoContactKeys,
    /// `--http-listen` could not be bound (taken, or not an address of this host).
    #[error("listening on {addr} for /metrics, /livez and /readyz")]
    HttpListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The notification configuration (`--notify-config`) is unreadable or wrong.
    #[error("notification configuration: {0}")]
    NotifyConfig(String),
    /// The hotspot analysis of an adoption's proposal did not finish (it panicked).
    #[error("hotspot analysis: {0}")]
    Hotspots(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Store(e.into())
    }
}
