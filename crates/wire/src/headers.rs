//! Header names and values of the contract.

/// Set by a client that sends proto3 JSON instead of protobuf (reports and commands); a command
/// sent so is answered in JSON too.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The [`CONTENT_TYPE`] of proto3 JSON; a value that starts with it (e.g. with `; charset=utf-8`)
/// counts.
pub const JSON: &str = "application/json";
/// On a command: the id of the token its sender came with (the query service sets it from the
/// gRPC caller's token). Dispatch records it on the audit log of a people's command only if the
/// token is the acting person's; any other value is recorded as no token.
pub const TOKEN_ID: &str = "Whistle-Token-Id";
/// JetStream's de-duplication id: a report's `report_id`, an event's `event_id`.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// On `WHISTLE_REJECTED`: the rejection reason, also the last subject token.
pub const REJECT_REASON: &str = "Whistle-Reject-Reason";
/// On `WHISTLE_REJECTED`: what exactly was wrong.
pub const REJECT_MESSAGE: &str = "Whistle-Reject-Message";
/// On `WHISTLE_REJECTED`: the subject the report was published on.
pub const ORIGINAL_SUBJECT: &str = "Whistle-Original-Subject";
/// On `WHISTLE_REJECTED`: the report's sequence in `WHISTLE_REPORTS`.
pub const ORIGINAL_SEQUENCE: &str = "Whistle-Original-Sequence";
/// On `WHISTLE_REJECTED`: how many times the report was delivered to dispatch.
pub const DELIVERY_COUNT: &str = "Whistle-Delivery-Count";
/// On `WHISTLE_REJECTED`, for a `too_large` report (only its first KiB is kept): its size in bytes.
pub const ORIGINAL_SIZE: &str = "Whistle-Original-Size";
/// On `WHISTLE_REJECTED`, for a `too_large` report: the SHA-256 of the whole original, in hex.
pub const ORIGINAL_SHA256: &str = "Whistle-Original-Sha256";

/// A command's [`TOKEN_ID`], as sent (unchecked).
pub fn token_id(headers: Option<&async_nats::HeaderMap>) -> Option<&str> {
    headers
        .and_then(|h| h.get(TOKEN_ID))
        .map(|v| v.as_str().trim())
        .filter(|v| !v.is_empty())
}

/// Whether a command's headers ask for proto3 JSON.
pub fn wants_json(headers: Option<&async_nats::HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(CONTENT_TYPE))
        .is_some_and(|v| v.as_str().starts_with(JSON))
}
