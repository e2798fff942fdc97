//! The opaque page token of `ListIncidents`: the sort key of the last incident of a page.
//!
//! Incidents are listed by `(created_at DESC, id DESC)`, a total order over values that never
//! change, so "the rows after this key" is the same set however many incidents are inserted
//! meanwhile: no row is skipped or repeated. The token is URL-safe base64 (no padding) of a
//! version byte, `created_at` in microseconds since the epoch (big-endian `i64`, PostgreSQL's
//! precision) and the 16 bytes of the id. Clients must treat it as opaque.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, Result};

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 16;

/// Where the next page starts: strictly after this key in the listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a token from a previous response; anything else is INVALID_ARGUMENT.
    pub fn decode(token: &str) -> Result<Cursor> {
        let invalid = || Error::invalid("page_token is not a token from a previous ListIncidents");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return Err(invalid());
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::from_slice(&bytes[9..]).map_err(|_| invalid())?;
        Ok(Cursor { created_at, id })
    }
}

/// A requested page size: 0 means `default`; above `max` is INVALID_ARGUMENT.
pub(crate) fn page_size(requested: u32, default: u32, max: u32) -> Result<u32> {
    match requested {
        0 => Ok(default),
        n if n > max => Err(Error::invalid(format!(
            "page_size {n} is above the maximum of {max}"
        ))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_500_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn round_trips_at_microsecond_precision() {
        let cursor = cursor();
        let token = cursor.encode();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&token).unwrap(), cursor);
    }

    #[test]
    fn malformed_tokens_are_invalid_arguments() {
        let good = cursor().encode();
        let mut wrong_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        wrong_version[0] = 2;
        let mut out_of_range = URL_SAFE_NO_PAD.decode(&good).unwrap();
        out_of_range[1..9].copy_from_slice(&i64::MAX.to_be_bytes());
        for token in [
            "not base64!".to_owned(),
            "AAAA".to_owned(),
            good[..good.len() - 2].to_owned(),
            format!("{good}AA"),
            URL_SAFE_NO_PAD.encode(wrong_version),
            URL_SAFE_NO_PAD.encode(out_of_range),
        ] {
            assert!(
                matches!(Cursor::decode(&token), Err(Error::InvalidArgument(_))),
                "{token:?} was accepted"
            );
        }
    }
}
