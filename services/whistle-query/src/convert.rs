//! Between the database's snake_case names (the domain's `as_str`) and the `whistle.v1` enums,
//! timestamps and durations.
//!
//! Reading is strict: a stored name this service does not know is [`Error::Corrupt`], because
//! dispatch writes these columns from the same domain enums. Request enums are checked too: an
//! unspecified or unknown value in a filter is INVALID_ARGUMENT.

use chrono::TimeDelta;
use whistle_domain::{
    incident::{ReturnReason, Satisfaction, Status, TaskRole, TaskStatus},
    Level,
};
use whistle_proto::v1;
use whistle_wire::convert;

use crate::{Error, Result};

fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("unknown {what} {value:?}"))
}

pub(crate) fn status_from_db(value: &str) -> Result<v1::IncidentStatus> {
    let status: Status = value.parse().map_err(|_| corrupt("status", value))?;
    Ok(convert::status_to_proto(status))
}

/// The stored name of a requested status. `REPORTED` is a wire status the engine never stores
/// (intake opens incidents straight into handling), so it is kept as a name that matches no row.
pub(crate) fn status_to_db(value: i32) -> Result<&'static str> {
    let status = v1::IncidentStatus::try_from(value).ok();
    Ok(match status {
        Some(v1::IncidentStatus::Reported) => "reported",
        Some(v1::IncidentStatus::Handling) => Status::Handling.as_str(),
        Some(v1::IncidentStatus::Whistled) => Status::Whistled.as_str(),
        Some(v1::IncidentStatus::Accepted) => Status::Accepted.as_str(),
        Some(v1::IncidentStatus::Resolved) => Status::Resolved.as_str(),
        Some(v1::IncidentStatus::Closed) => Status::Closed.as_str(),
        Some(v1::IncidentStatus::ClosedUnverified) => Status::ClosedUnverified.as_str(),
        Some(v1::IncidentStatus::Duplicate) => Status::Duplicate.as_str(),
        Some(v1::IncidentStatus::Unspecified) | None => {
            return Err(Error::invalid(format!(
                "statuses: {value} is not an incident status"
            )))
        }
    })
}

/// The stored names of the statuses an incident is worked on in (handling, whistled, accepted).
pub(crate) fn open_statuses() -> Vec<&'static str> {
    Status::ALL
        .iter()
        .filter(|s| s.is_open())
        .map(|s| s.as_str())
        .collect()
}

/// Statuses that count as resolved for the resolution rate: resolved, or closed after it.
pub(crate) fn resolved_statuses() -> Vec<&'static str> {
    [Status::Resolved, Status::Closed, Status::ClosedUnverified]
        .iter()
        .map(|s| s.as_str())
        .collect()
}

pub(crate) fn level_from_db(value: &str) -> Result<v1::Level> {
    let level: Level = value.parse().map_err(|_| corrupt("level", value))?;
    Ok(convert::level_to_proto(level))
}

pub(crate) fn level_to_db(value: i32) -> Result<&'static str> {
    let level = convert::level_from_proto(value)
        .ok_or_else(|| Error::invalid(format!("levels: {value} is not a level")))?;
    Ok(level.as_str())
}

/// Urgency as intake stores it (`normal`, `urgent`, `emergency`; unspecified is stored as normal).
pub(crate) fn urgency_from_db(value: &str) -> Result<v1::Urgency> {
    match value {
        "normal" => Ok(v1::Urgency::Normal),
        "urgent" => Ok(v1::Urgency::Urgent),
        "emergency" => Ok(v1::Urgency::Emergency),
        other => Err(corrupt("urgency", other)),
    }
}

pub(crate) fn urgency_to_db(value: i32) -> Result<&'static str> {
    match v1::Urgency::try_from(value).ok() {
        Some(v1::Urgency::Normal) => Ok("normal"),
        Some(v1::Urgency::Urgent) => Ok("urgent"),
        Some(v1::Urgency::Emergency) => Ok("emergency"),
        Some(v1::Urgency::Unspecified) | None => Err(Error::invalid(format!(
            "urgencies: {value} is not an urgency (use NORMAL, URGENT or EMERGENCY)"
        ))),
    }
}

pub(crate) fn task_status_from_db(value: &str) -> Result<v1::TaskStatus> {
    let status: TaskStatus = value.parse().map_err(|_| corrupt("task status", value))?;
    Ok(convert::task_status_to_proto(status))
}

pub(crate) fn task_role_from_db(value: &str) -> Result<v1::TaskRole> {
    let role: TaskRole = value.parse().map_err(|_| corrupt("task role", value))?;
    Ok(convert::task_role_to_proto(role))
}

pub(crate) fn return_reason_from_db(value: Option<&str>) -> Result<v1::ReturnReason> {
    let Some(value) = value else {
        return Ok(v1::ReturnReason::Unspecified);
    };
    let reason: ReturnReason = value.parse().map_err(|_| corrupt("return reason", value))?;
    Ok(convert::return_reason_to_proto(reason))
}

/// A stored follow-up verdict; none yet is UNSPECIFIED.
pub(crate) fn satisfaction_from_db(value: Option<&str>) -> Result<v1::Satisfaction> {
    let Some(value) = value else {
        return Ok(v1::Satisfaction::Unspecified);
    };
    let verdict: Satisfaction = value.parse().map_err(|_| corrupt("satisfaction", value))?;
    Ok(convert::satisfaction_to_proto(verdict))
}

/// The stored name of a requested task status.
pub(crate) fn task_status_to_db(value: i32) -> Result<&'static str> {
    TaskStatus::ALL
        .iter()
        .find(|s| value != 0 && convert::task_status_to_proto(**s) as i32 == value)
        .map(|s| s.as_str())
        .ok_or_else(|| Error::invalid(format!("statuses: {value} is not a task status")))
}

pub(crate) use convert::timestamp;

/// A non-negative duration (how late something is); a negative one is clamped to zero.
pub(crate) fn duration(delta: TimeDelta) -> prost_types::Duration {
    let delta = delta.max(TimeDelta::zero());
    prost_types::Duration {
        seconds: delta.num_seconds(),
        nanos: delta.subsec_nanos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_status_level_and_task_status_reads_and_round_trips() {
        for status in Status::ALL {
            let proto = status_from_db(status.as_str()).unwrap();
            assert_eq!(status_to_db(proto as i32).unwrap(), status.as_str());
        }
        for level in Level::ALL {
            let proto = level_from_db(level.as_str()).unwrap();
            assert_eq!(level_to_db(proto as i32).unwrap(), level.as_str());
        }
        for status in TaskStatus::ALL {
            let proto = task_status_from_db(status.as_str()).unwrap();
            assert_eq!(task_status_to_db(proto as i32).unwrap(), status.as_str());
        }
        assert!(matches!(
            task_status_to_db(0),
            Err(Error::InvalidArgument(_))
        ));
        for reason in ReturnReason::ALL {
            assert_ne!(
                return_reason_from_db(Some(reason.as_str())).unwrap(),
                v1::ReturnReason::Unspecified
            );
        }
        for urgency in [
            v1::Urgency::Normal,
            v1::Urgency::Urgent,
            v1::Urgency::Emergency,
        ] {
            assert_eq!(
                urgency_from_db(urgency_to_db(urgency as i32).unwrap()).unwrap(),
                urgency
            );
        }
    }

    #[test]
    fn unknown_values_are_corrupt_when_stored_and_invalid_when_requested() {
        assert!(matches!(status_from_db("lost"), Err(Error::Corrupt(_))));
        assert!(matches!(level_from_db("planet"), Err(Error::Corrupt(_))));
        assert!(matches!(urgency_from_db("meh"), Err(Error::Corrupt(_))));
        for bad in [0, 99, -1] {
            assert!(matches!(status_to_db(bad), Err(Error::InvalidArgument(_))));
            assert!(matches!(level_to_db(bad), Err(Error::InvalidArgument(_))));
            assert!(matches!(urgency_to_db(bad), Err(Error::InvalidArgument(_))));
        }
        assert_eq!(
            status_to_db(v1::IncidentStatus::Reported as i32).unwrap(),
            "reported"
        );
    }

    #[test]
    fn durations_are_never_negative() {
        assert_eq!(duration(TimeDelta::seconds(-5)).seconds, 0);
        let late = duration(TimeDelta::milliseconds(90_500));
        assert_eq!((late.seconds, late.nanos), (90, 500_000_000));
    }
}
