//! The `whistle.v1` contracts: protobuf messages, the gRPC services, and proto3 JSON.
//!
//! Generated from `proto/whistle/v1` at build time by protox and tonic-prost-build. This crate
//! holds no business rules; it is the wire format shared by dispatch, query, the CLI and tests.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/whistle.v1.rs"));
}

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

/// The encoded `FileDescriptorSet` of every `whistle.v1` file and its imports, for gRPC
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/whistle_descriptor.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("the descriptor set generated at build time decodes")
});

/// Failure to read or write proto3 JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("message type {0} is not in the whistle.v1 descriptor set")]
    UnknownType(String),
    #[error("invalid proto3 JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("JSON does not fit {0}: {1}")]
    Shape(String, prost::DecodeError),
}

/// A generated message whose descriptor is known, so it can be read from and written as proto3
/// JSON.
pub trait Named: prost::Message + Default {
    /// Fully-qualified protobuf name, e.g. `whistle.v1.Report`.
    const FULL_NAME: &'static str;
}

macro_rules! named {
    ($($ty:ident),* $(,)?) => {
        $(impl Named for v1::$ty { const FULL_NAME: &'static str = concat!("whistle.v1.", stringify!($ty)); })*
    };
}
named!(Report, Event, Command, CommandReply, ListHotspotsResponse);

/// Parses proto3 JSON (the canonical mapping: lowerCamelCase or original field names, RFC 3339
/// timestamps, enum names) into a generated message.
pub fn from_json<T: Named>(bytes: &[u8]) -> Result<T, JsonError> {
    let descriptor = POOL
        .get_message_by_name(T::FULL_NAME)
        .ok_or_else(|| JsonError::UnknownType(T::FULL_NAME.to_owned()))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut de)?;
    de.end()?;
    dynamic
        .transcode_to::<T>()
        .map_err(|e| JsonError::Shape(T::FULL_NAME.to_owned(), e))
}

/// Writes a generated message as proto3 JSON.
pub fn to_json<T: Named>(message: &T) -> Result<String, JsonError> {
    let descriptor = POOL
        .get_message_by_name(T::FULL_NAME)
        .ok_or_else(|| JsonError::UnknownType(T::FULL_NAME.to_owned()))?;
    let mut dynamic = DynamicMessage::new(descriptor);
    dynamic
        .transcode_from(message)
        .map_err(|e| JsonError::Shape(T::FULL_NAME.to_owned(), e))?;
    Ok(serde_json::to_string(&dynamic)?)
}

/// A protobuf timestamp from unix milliseconds.
pub fn timestamp_from_unix_millis(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A client interceptor adding `authorization: Bearer <token>` to every call, for the query
/// service's clients (`CommandCenterClient::with_interceptor(channel, Bearer::new(token)?)`).
#[derive(Clone, Debug)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// Fails only for a token with characters that cannot be sent in a header.
    pub fn new(token: &str) -> Result<Bearer, tonic::metadata::errors::InvalidMetadataValue> {
        format!("Bearer {token}").parse().map(Bearer)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_proto3_json() {
        let report = v1::Report {
            report_id: "r-1".into(),
            reporter_id: "gw-150602001001001".into(),
            grid_code: "150602001001001".into(),
            category: "heating.no_heat".into(),
            urgency: v1::Urgency::Urgent as i32,
            title: "楼内无暖气".into(),
            reported_at: Some(timestamp_from_unix_millis(1_764_500_000_123)),
            location: Some(v1::Location {
                lat: 39.6,
                lon: 109.8,
                address: "东胜区".into(),
            }),
            ..Default::default()
        };
        let json = to_json(&report).unwrap();
        assert!(json.contains("\"reportId\":\"r-1\""), "{json}");
        assert!(json.contains("URGENCY_URGENT"), "{json}");
        assert!(json.contains("2025-11-30T10:53:20.123Z"), "{json}");
        assert_eq!(from_json::<v1::Report>(json.as_bytes()).unwrap(), report);
    }

    #[test]
    fn json_accepts_original_field_names_and_rejects_unknown_fields() {
        let parsed: v1::Report =
            from_json(br#"{"report_id":"x","grid_code":"1","urgency":"URGENCY_EMERGENCY"}"#)
                .unwrap();
        assert_eq!(parsed.report_id, "x");
        assert_eq!(parsed.urgency, v1::Urgency::Emergency as i32);
        assert!(from_json::<v1::Report>(br#"{"nope":1}"#).is_err());
        assert!(from_json::<v1::Report>(b"{\"reportId\":").is_err());
    }

    #[test]
    fn descriptor_set_holds_both_services_and_every_named_message() {
        assert!(POOL
            .get_service_by_name("whistle.v1.CommandCenter")
            .is_some());
        assert!(POOL.get_service_by_name("whistle.v1.Dispatch").is_some());
        for name in [
            v1::Report::FULL_NAME,
            v1::Event::FULL_NAME,
            v1::Command::FULL_NAME,
            v1::CommandReply::FULL_NAME,
        ] {
            assert!(POOL.get_message_by_name(name).is_some(), "{name}");
        }
    }
}
