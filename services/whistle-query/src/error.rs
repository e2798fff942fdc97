//! The crate's one error type and its one mapping to `tonic::Status`.

use std::net::SocketAddr;

use tonic::Status;
use whistle_proto::v1::CommandErrorCode;

/// Errors of the query service: a request's own fault, something missing, or the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a bad area code, page token, page size, id or enum value.
    #[error("{0}")]
    InvalidArgument(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No token, or one that is unknown, revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token does not reach what the request names.
    #[error("{0}")]
    PermissionDenied(String),
    /// Dispatch refused a command; nothing changed.
    #[error("{1}")]
    Refused(whistle_proto::v1::CommandErrorCode, String),
    /// Dispatch refused a people's command because the person holds what must be handed over
    /// (`FAILED_PRECONDITION`, reason `successor_needed`, the holdings in the status details).
    #[error("{0}")]
    SuccessorNeeded(String, Box<whistle_proto::v1::PersonHoldings>),
    /// The token is over its rate limit or holds its most `WatchEvents` streams
    /// (`RESOURCE_EXHAUSTED`, reason `rate_limited`).
    #[error("{0}")]
    RateLimited(String),
    /// Refused with a machine-readable reason (see [`REASON_METADATA`]), e.g. an upload that is
    /// not a photo (`INVALID_ARGUMENT`, `photo_type`).
    #[error("{2}")]
    Reason(tonic::Code, &'static str, String),
    /// Something this service needs is not answering now (dispatch, or the live aggregates still
    /// loading); worth a retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value this service cannot read (dispatch wrote something unexpected).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A bug in this service (a computation panicked); logged where it happened.
    #[error("{0}")]
    Internal(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("contact keyring: {0}")]
    Keyring(String),
    #[error("NATS: {0}")]
    Nats(String),
    /// The NATS credential or the auth callout's keys could not be read, or the callout not start.
    #[error("NATS authentication: {0}")]
    Auth(String),
    #[error("policy")]
    Policy(#[from] whistle_wire::PolicyError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("starting the board threads: {0}")]
    Threads(std::io::Error),
    #[error("web console: {0}")]
    Console(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The status metadata (a trailer) naming why a request was refused, for clients to act on
/// without parsing messages: `whistle-reason: rate_limited`.
pub const REASON_METADATA: &str = "whistle-reason";

/// The reason of a status refused by a limit (see [`REASON_METADATA`]).
pub const RATE_LIMITED: &str = "rate_limited";

/// The reason of a resolution refused for want of an "after" photo the policy requires.
pub const PHOTO_REQUIRED: &str = "photo_required";

/// The reason of an offboarding or transfer refused because the person holds work and no
/// successor was named; the status details carry a `whistle.v1.PersonHoldings`.
pub const SUCCESSOR_NEEDED: &str = "successor_needed";

/// The reason of a successor refused because they cannot hold what is handed over.
pub const SUCCESSOR_UNFIT: &str = "successor_unfit";

/// The type URL of the `PersonHoldings` in a `successor_needed` status's details.
pub const HOLDINGS_TYPE_URL: &str = "type.googleapis.com/whistle.v1.PersonHoldings";

/// Every reason this service puts in [`REASON_METADATA`] (the console has words for each).
pub const REASONS: [&str; 8] = [
    RATE_LIMITED,
    PHOTO_REQUIRED,
    SUCCESSOR_NEEDED,
    SUCCESSOR_UNFIT,
    crate::photos::PHOTO_EMPTY,
    crate::photos::PHOTO_TOO_LARGE,
    crate::photos::PHOTO_TYPE,
    crate::photos::PHOTO_NOT_FOUND,
];

/// The machine-readable reason a status carries, if any.
pub fn reason(status: &Status) -> Option<&str> {
    status.metadata().get(REASON_METADATA)?.to_str().ok()
}

fn reason_metadata(reason: &'static str) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        REASON_METADATA,
        tonic::metadata::MetadataValue::from_static(reason),
    );
    metadata
}

fn with_reason(code: tonic::Code, message: String, reason: &'static str) -> Status {
    Status::with_metadata(code, message, reason_metadata(reason))
}

/// `google.rpc.Status`, the gRPC richer error model's `grpc-status-details-bin`: what clients
/// (connect-es `findDetails`, grpc-go `status.Details`) decode the details from.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `FAILED_PRECONDITION` with the reason `successor_needed` and the holdings as a detail.
fn successor_needed(message: String, holdings: &whistle_proto::v1::PersonHoldings) -> Status {
    use prost::Message as _;
    let code = tonic::Code::FailedPrecondition;
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: HOLDINGS_TYPE_URL.to_owned(),
            value: holdings.encode_to_vec(),
        }],
    };
    Status::with_details_and_metadata(
        code,
        message,
        details.encode_to_vec().into(),
        reason_metadata(SUCCESSOR_NEEDED),
    )
}

/// The holdings a `successor_needed` status carries, as a client decodes them.
pub fn holdings(status: &Status) -> Option<whistle_proto::v1::PersonHoldings> {
    use prost::Message as _;
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .into_iter()
        .find(|any| any.type_url == HOLDINGS_TYPE_URL)?;
    whistle_proto::v1::PersonHoldings::decode(any.value.as_slice()).ok()
}

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }
}

/// The connection to PostgreSQL is gone or the pool is exhausted: worth a retry, not a bug.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // Class 08: connection exception; 57P01–57P03: the server is shutting down or starting.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// A command error of dispatch as the gRPC code the `whistle.v1.Dispatch` contract names.
fn refused(code: CommandErrorCode, message: String) -> Status {
    match code {
        CommandErrorCode::NotFound => Status::not_found(message),
        CommandErrorCode::Forbidden => Status::permission_denied(message),
        CommandErrorCode::InvalidTransition => Status::failed_precondition(message),
        CommandErrorCode::Stale => Status::aborted(message),
        CommandErrorCode::InvalidArgument => Status::invalid_argument(message),
        CommandErrorCode::Unavailable => Status::unavailable(message),
        CommandErrorCode::RateLimited => {
            with_reason(tonic::Code::ResourceExhausted, message, RATE_LIMITED)
        }
        CommandErrorCode::PhotoRequired => {
            with_reason(tonic::Code::FailedPrecondition, message, PHOTO_REQUIRED)
        }
        CommandErrorCode::AlreadyExists => Status::already_exists(message),
        // Without the holdings (dispatch always sends them, see `Error::SuccessorNeeded`).
        CommandErrorCode::SuccessorNeeded => {
            with_reason(tonic::Code::FailedPrecondition, message, SUCCESSOR_NEEDED)
        }
        CommandErrorCode::SuccessorUnfit => {
            with_reason(tonic::Code::InvalidArgument, message, SUCCESSOR_UNFIT)
        }
        CommandErrorCode::Unspecified => {
            tracing::error!(%message, "dispatch answered an error without a code");
            Status::internal(message)
        }
    }
}

impl From<Error> for Status {
    /// Client mistakes keep their message; server-side failures are logged here, once, and the
    /// client gets a short message without SQL or stored values.
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::NotFound(message) => Status::not_found(message),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Refused(code, message) => refused(code, message),
            Error::SuccessorNeeded(message, holdings) => successor_needed(message, &holdings),
            Error::RateLimited(message) => {
                with_reason(tonic::Code::ResourceExhausted, message, RATE_LIMITED)
            }
            Error::Reason(code, reason, message) => with_reason(code, message, reason),
            Error::Unavailable(message) => Status::unavailable(message),
            Error::Database(ref source) if is_unavailable(source) => {
                tracing::warn!(error = %error, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            Error::Database(_) => {
                tracing::error!(error = %error, "query failed");
                Status::internal("database query failed")
            }
            Error::Corrupt(_) => {
                tracing::error!(error = %error, "stored data is inconsistent");
                Status::internal("stored data is inconsistent")
            }
            Error::Internal(message) => Status::internal(message),
            Error::Tls(_)
            | Error::Keyring(_)
            | Error::Nats(_)
            | Error::Auth(_)
            | Error::Policy(_)
            | Error::Bind { .. }
            | Error::Reflection(_)
            | Error::Threads(_)
            | Error::Console(_)
            | Error::Serve(_) => {
                tracing::error!(error = %error, "server error");
                Status::internal(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn client_mistakes_keep_their_message_and_server_faults_do_not_leak() {
        let status = Status::from(Error::invalid("page_size 501 is above 500"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "page_size 501 is above 500");
        assert_eq!(
            Status::from(Error::not_found("no incident x")).code(),
            Code::NotFound
        );
        assert_eq!(
            Status::from(Error::Database(sqlx::Error::PoolTimedOut)).code(),
            Code::Unavailable
        );
        let loading = Status::from(Error::Unavailable("still loading".into()));
        assert_eq!(
            (loading.code(), loading.message()),
            (Code::Unavailable, "still loading")
        );
        let internal = Status::from(Error::Corrupt("status \"weird\" of incident 1".into()));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("weird"));
        let internal = Status::from(Error::Database(sqlx::Error::RowNotFound));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(reason(&internal), None);
    }

    #[test]
    fn a_limit_is_resource_exhausted_with_the_reason_rate_limited() {
        let status = Status::from(Error::RateLimited("slow down".into()));
        assert_eq!(
            (status.code(), status.message(), reason(&status)),
            (Code::ResourceExhausted, "slow down", Some("rate_limited"))
        );
    }

    #[test]
    fn command_errors_map_to_the_codes_of_the_dispatch_contract() {
        for (code, expected) in [
            (CommandErrorCode::NotFound, Code::NotFound),
            (CommandErrorCode::Forbidden, Code::PermissionDenied),
            (
                CommandErrorCode::InvalidTransition,
                Code::FailedPrecondition,
            ),
            (CommandErrorCode::Stale, Code::Aborted),
            (CommandErrorCode::InvalidArgument, Code::InvalidArgument),
            (CommandErrorCode::Unavailable, Code::Unavailable),
            (CommandErrorCode::RateLimited, Code::ResourceExhausted),
            (CommandErrorCode::PhotoRequired, Code::FailedPrecondition),
            (CommandErrorCode::AlreadyExists, Code::AlreadyExists),
            (CommandErrorCode::SuccessorNeeded, Code::FailedPrecondition),
            (CommandErrorCode::SuccessorUnfit, Code::InvalidArgument),
        ] {
            let status = Status::from(Error::Refused(code, "why".into()));
            assert_eq!((status.code(), status.message()), (expected, "why"));
        }
    }

    #[test]
    fn a_successor_needed_carries_the_holdings_in_its_details() {
        let held = whistle_proto::v1::PersonHoldings {
            grid_code: "150602001001001".into(),
            deputy_for: vec!["li-x".into()],
            ..Default::default()
        };
        let status = Status::from(Error::SuccessorNeeded(
            "holds".into(),
            Box::new(held.clone()),
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status), Some(SUCCESSOR_NEEDED));
        assert_eq!(holdings(&status), Some(held));
        assert_eq!(holdings(&Status::from(Error::invalid("x"))), None);
    }
}
