//! What can go wrong starting a test server.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no free loopback port")]
    NoFreePort,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {bin} (set WHISTLE_NATS_SERVER_BIN or run deploy/local/test.sh): {source}")]
    NatsSpawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nats-server on port {port} exited before it was ready ({status}); its log {log}:\n{tail}"
    )]
    NatsExited {
        port: u16,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("nats-server on port {port} did not become ready within {secs} s (log {log})")]
    NatsNotReady { port: u16, secs: u64, log: PathBuf },
    #[error("{what} (DATABASE_URL {url}; run deploy/local/test.sh): {source}")]
    Database {
        what: &'static str,
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} (DATABASE_URL {url}; run deploy/local/test.sh): {source}")]
    Store {
        what: &'static str,
        url: String,
        #[source]
        source: whistle_store::Error,
    },
    #[error("{command} failed: {output}")]
    PgCtl { command: String, output: String },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
