//! Conversions between the domain's types and the `whistle.v1` wire types, shared by dispatch's
//! events and replies, the query service and the CLI.

use chrono::{DateTime, Utc};
use whistle_domain::{
    incident::TaskRole,
    incident::{Ledger, LedgerReason, ReturnReason, Satisfaction, Status, TaskStatus},
    Level,
};
use whistle_proto::v1;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The instant a wire timestamp names; `None` when it is out of chrono's range or malformed.
pub fn timestamp_from_proto(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
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

/// The level a wire value names; `None` for unspecified or unknown values.
pub fn level_from_proto(value: i32) -> Option<Level> {
    match v1::Level::try_from(value).ok()? {
        v1::Level::Grid => Some(Level::Grid),
        v1::Level::Community => Some(Level::Community),
        v1::Level::Street => Some(Level::Street),
        v1::Level::District => Some(Level::District),
        v1::Level::City => Some(Level::City),
        v1::Level::Unspecified => None,
    }
}

pub fn status_to_proto(status: Status) -> v1::IncidentStatus {
    match status {
        Status::Handling => v1::IncidentStatus::Handling,
        Status::Whistled => v1::IncidentStatus::Whistled,
        Status::Accepted => v1::IncidentStatus::Accepted,
        Status::Resolved => v1::IncidentStatus::Resolved,
        Status::Closed => v1::IncidentStatus::Closed,
        Status::ClosedUnverified => v1::IncidentStatus::ClosedUnverified,
        Status::Duplicate => v1::IncidentStatus::Duplicate,
    }
}

pub fn task_status_to_proto(status: TaskStatus) -> v1::TaskStatus {
    match status {
        TaskStatus::Dispatched => v1::TaskStatus::Dispatched,
        TaskStatus::Accepted => v1::TaskStatus::Accepted,
        TaskStatus::Returned => v1::TaskStatus::Returned,
        TaskStatus::Resolved => v1::TaskStatus::Resolved,
        TaskStatus::Supervised => v1::TaskStatus::Supervised,
        TaskStatus::Cancelled => v1::TaskStatus::Cancelled,
        TaskStatus::Released => v1::TaskStatus::Released,
    }
}

pub fn task_role_to_proto(role: TaskRole) -> v1::TaskRole {
    match role {
        TaskRole::Lead => v1::TaskRole::Lead,
        TaskRole::Assist => v1::TaskRole::Assist,
    }
}

pub fn return_reason_to_proto(reason: ReturnReason) -> v1::ReturnReason {
    match reason {
        ReturnReason::NotOurDuty => v1::ReturnReason::NotOurDuty,
        ReturnReason::WrongArea => v1::ReturnReason::WrongArea,
        ReturnReason::UnclearOwnership => v1::ReturnReason::UnclearOwnership,
        ReturnReason::OverlappingDuties => v1::ReturnReason::OverlappingDuties,
        ReturnReason::InsufficientInformation => v1::ReturnReason::InsufficientInformation,
    }
}

pub fn ledger_reason_to_proto(reason: LedgerReason) -> v1::LedgerReason {
    match reason {
        LedgerReason::Planning => v1::LedgerReason::Planning,
        LedgerReason::Funding => v1::LedgerReason::Funding,
        LedgerReason::Legal => v1::LedgerReason::Legal,
        LedgerReason::Other => v1::LedgerReason::Other,
    }
}

/// The long-term ledger (挂账) proposal or entry as events and `GetIncident` carry it.
pub fn ledger_to_proto(ledger: &Ledger) -> v1::LedgerEntry {
    v1::LedgerEntry {
        entered: ledger.entered_at.is_some(),
        entered_at: ledger.entered_at.map(timestamp),
        review_at: Some(timestamp(ledger.review_at)),
        review_due: ledger.review_due,
        reason: ledger_reason_to_proto(ledger.reason) as i32,
        note: ledger.note.clone(),
        responsible: ledger.responsible.to_string(),
        proposed_by: ledger.proposed_by.to_string(),
        proposed_at: Some(timestamp(ledger.proposed_at)),
        approver: level_to_proto(ledger.approver) as i32,
    }
}

pub fn satisfaction_to_proto(satisfaction: Satisfaction) -> v1::Satisfaction {
    match satisfaction {
        Satisfaction::Satisfied => v1::Satisfaction::Satisfied,
        Satisfaction::BasicallySatisfied => v1::Satisfaction::BasicallySatisfied,
        Satisfaction::Unsatisfied => v1::Satisfaction::Unsatisfied,
    }
}
