//! Building `whistle.v1.Event`s and their subjects.

use chrono::{DateTime, Utc};
use prost::Message as _;
use uuid::Uuid;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;
use whistle_store::intake::OutboxEvent;

use crate::validate::{Rejection, ValidReport};

pub const INCIDENT_REPORTED: &str = "incident.reported";
pub const REPORT_REJECTED: &str = "report.rejected";

/// The subject token used where an event has no known district or street.
pub const UNKNOWN_AREA: &str = "unknown";

/// `whistle.event.{district}.{street}.{kind}`.
pub fn incident_subject(district: &str, street: &str, kind: &str) -> String {
    format!("whistle.event.{district}.{street}.{kind}")
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn level_to_proto(level: Level) -> v1::Level {
    match level {
        Level::Grid => v1::Level::Grid,
        Level::Community => v1::Level::Community,
        Level::Street => v1::Level::Street,
        Level::District => v1::Level::District,
        Level::City => v1::Level::City,
    }
}

fn area(grid: Option<&AreaCode>, level: Level) -> String {
    grid.and_then(|g| g.at_level(level))
        .map(|c| c.to_string())
        .unwrap_or_default()
}

fn finish(event: v1::Event, district: &str, street: &str) -> OutboxEvent {
    let or_unknown = |s: &str| {
        if s.is_empty() {
            UNKNOWN_AREA.to_owned()
        } else {
            s.to_owned()
        }
    };
    OutboxEvent {
        event_id: event
            .event_id
            .parse()
            .expect("event ids are generated as UUIDs"),
        subject: incident_subject(&or_unknown(district), &or_unknown(street), &event.kind),
        payload: event.encode_to_vec(),
    }
}

/// `incident.reported` for a new incident.
pub fn incident_reported(
    valid: &ValidReport,
    incident_id: Uuid,
    level: Level,
    status: v1::IncidentStatus,
    category_name: &str,
    at: DateTime<Utc>,
) -> OutboxEvent {
    let grid = Some(&valid.grid);
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: INCIDENT_REPORTED.to_owned(),
        occurred_at: Some(timestamp(at)),
        incident_id: incident_id.to_string(),
        district_code: area(grid, Level::District),
        street_code: area(grid, Level::Street),
        community_code: area(grid, Level::Community),
        grid_code: valid.grid.to_string(),
        actor_id: valid.reporter_id.to_string(),
        body: Some(v1::event::Body::IncidentReported(v1::IncidentReported {
            report: Some(valid.report.clone()),
            level: level_to_proto(level) as i32,
            status: status as i32,
            category_name: category_name.to_owned(),
        })),
    };
    let (district, street) = (event.district_code.clone(), event.street_code.clone());
    finish(event, &district, &street)
}

/// `report.rejected` for the screens; the original bytes go to `WHISTLE_REJECTED` separately.
pub fn report_rejected(
    rejection: &Rejection,
    subject: &str,
    stream_sequence: u64,
    at: DateTime<Utc>,
) -> OutboxEvent {
    let grid = rejection.subject_grid.as_ref();
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: REPORT_REJECTED.to_owned(),
        occurred_at: Some(timestamp(at)),
        incident_id: String::new(),
        district_code: area(grid, Level::District),
        street_code: area(grid, Level::Street),
        community_code: area(grid, Level::Community),
        grid_code: grid.map(|g| g.to_string()).unwrap_or_default(),
        actor_id: rejection
            .reporter_id
            .clone()
            .unwrap_or_else(|| "system".to_owned()),
        body: Some(v1::event::Body::ReportRejected(v1::ReportRejected {
            reason: rejection.reason.as_str().to_owned(),
            message: rejection.message.clone(),
            subject: subject.to_owned(),
            report_id: rejection.report_id.clone().unwrap_or_default(),
            reporter_id: rejection.reporter_id.clone().unwrap_or_default(),
            stream_sequence,
        })),
    };
    let (district, street) = (event.district_code.clone(), event.street_code.clone());
    finish(event, &district, &street)
}
