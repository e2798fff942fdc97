//! The crate's errors: a command that got no reply, a subject or verb that is not the contract's,
//! and a policy that does not load.

use std::{path::PathBuf, time::Duration};

/// Why a command got no reply, or why a name is not part of the contract.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no responders on {subject}: whistle-dispatch is not running (or not connected to this NATS server)")]
    NoResponders {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("no reply on {subject} within {} s: whistle-dispatch is busy or stuck; retry with the same command id", timeout.as_secs())]
    TimedOut {
        subject: String,
        timeout: Duration,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("request on {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("the reply on {subject} is not a whistle.v1.CommandReply")]
    Decode {
        subject: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the command has no body, so it names no verb")]
    NoBody,
    /// A command whose actor cannot name its subject (empty, or with a space or wildcard).
    #[error("the command's actor_id {0:?} is not a person id")]
    Actor(String),
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    /// A subject that does not have the contract's shape; the message says which part is wrong.
    #[error("{0}")]
    Subject(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("reading the NATS credential {}", path.display())]
    Credential {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// Why a policy did not load.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{name:?} is neither a builtin policy (ordos, ordos-demo) nor a readable file")]
    Unreadable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: whistle_domain::policy::Error,
    },
}

/// An error and its causes on one line, `outer: cause: root`, for log lines and messages that
/// print with `{}` (which shows only the outermost error).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause() {
        let error = PolicyError::Unreadable {
            name: "nope.toml".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(
            chain(&error),
            "\"nope.toml\" is neither a builtin policy (ordos, ordos-demo) nor a readable file: no such file"
        );
    }
}
