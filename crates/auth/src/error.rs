//! The one error type of this crate.

/// What can go wrong in authentication plumbing (never a refused client: that is an answer).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed jwt: {0}")]
    Jwt(String),
    #[error("jwt signature does not verify")]
    Signature,
    #[error("nkey: {0}")]
    Nkey(#[from] nkeys::error::Error),
    #[error("key material in {path}: {why}")]
    Secrets { path: String, why: String },
    #[error("io on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] whistle_store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
