//! Building `whistle.v1.Event`s and their subjects.

use chrono::{DateTime, Utc};
use prost::Message as _;
use uuid::Uuid;
use whistle_domain::{
    incident::{Incident, Task},
    AreaCode, Level,
};
use whistle_proto::v1;
use whistle_store::intake::{Attachment, ClusterAlert, NewIncident, OutboxEvent};

use whistle_wire::{
    convert::{
        level_to_proto, return_reason_to_proto, satisfaction_to_proto, status_to_proto,
        task_role_to_proto, task_status_to_proto, timestamp,
    },
    kind::{self, CLUSTER_ALERT, INCIDENT_REPORTED, REPORT_ATTACHED, REPORT_REJECTED},
    subject,
};

use crate::validate::{Rejection, ValidReport};

fn area(grid: Option<&AreaCode>, level: Level) -> String {
    grid.and_then(|g| g.at_level(level))
        .map(|c| c.to_string())
        .unwrap_or_default()
}

fn finish(event: v1::Event, district: &str, street: &str) -> OutboxEvent {
    OutboxEvent {
        event_id: event
            .event_id
            .parse()
            .expect("event ids are generated as UUIDs"),
        subject: subject::incident_event(district, street, &event.kind),
        payload: event.encode_to_vec(),
    }
}

/// `incident.reported` for a new incident, opened as `state`.
pub fn incident_reported(
    valid: &ValidReport,
    incident_id: Uuid,
    state: &Incident,
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
            level: level_to_proto(state.level) as i32,
            status: status_to_proto(state.status) as i32,
            category_name: category_name.to_owned(),
            due_at: Some(timestamp(state.resolve_due)),
            version: state.version,
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

pub fn task_state(task: &Task) -> v1::TaskState {
    v1::TaskState {
        task_id: task.id,
        department_code: task.department.to_string(),
        status: task_status_to_proto(task.status) as i32,
        round: task.round,
        dispatched_at: Some(timestamp(task.dispatched_at)),
        accept_due_at: Some(timestamp(task.accept_due)),
        resolve_due_at: Some(timestamp(task.resolve_due)),
        accepted_at: task.accepted_at.map(timestamp),
        resolved_at: task.resolved_at.map(timestamp),
        holder_id: task
            .holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_default(),
        return_reason: task
            .return_reason
            .map_or(0, |r| return_reason_to_proto(r) as i32),
        supervised: task.supervised,
        disputed: task.disputed,
        dispute_to_department_code: task
            .dispute
            .as_ref()
            .map(|d| d.proposed.to_string())
            .unwrap_or_default(),
        role: task_role_to_proto(task.role) as i32,
    }
}

/// Where an event happened and who caused it.
pub struct Origin<'a> {
    pub incident_id: Uuid,
    pub district_code: &'a str,
    pub street_code: &'a str,
    pub community_code: &'a str,
    pub title: &'a str,
    pub actor_id: &'a str,
}

/// One event of an engine transition whose events are `transition` (kinds, in order); `task.*`
/// kinds go to `whistle.task.{department}.{kind}`.
pub fn incident_changed(
    origin: &Origin<'_>,
    state: &Incident,
    kind: &str,
    transition: &[&str],
    task: Option<u32>,
    note: &str,
    at: DateTime<Utc>,
) -> OutboxEvent {
    let task = task.and_then(|id| state.tasks.iter().find(|t| t.id == id));
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        occurred_at: Some(timestamp(at)),
        incident_id: origin.incident_id.to_string(),
        district_code: origin.district_code.to_owned(),
        street_code: origin.street_code.to_owned(),
        community_code: origin.community_code.to_owned(),
        grid_code: state.area.to_string(),
        actor_id: origin.actor_id.to_owned(),
        body: Some(v1::event::Body::IncidentChanged(v1::IncidentChanged {
            status: status_to_proto(state.status) as i32,
            level: level_to_proto(state.level) as i32,
            version: state.version,
            note: note.to_owned(),
            category: state.category.to_string(),
            title: origin.title.to_owned(),
            overdue: state.overdue,
            due_at: Some(timestamp(state.resolve_due)),
            level_due_at: state.level_due.map(timestamp),
            task: task.map(task_state),
            satisfaction: state
                .satisfaction
                .map_or(0, |s| satisfaction_to_proto(s) as i32),
            reopen_count: state.reopen_count,
            tasks: state.tasks.iter().map(task_state).collect(),
            transition_kinds: transition.iter().map(|k| (*k).to_owned()).collect(),
            ledger: state
                .ledger
                .as_ref()
                .map(whistle_wire::convert::ledger_to_proto),
        })),
    };
    let subject = match task {
        Some(task) if kind::is_task(kind) => subject::task_event(task.department.as_str(), kind),
        _ => subject::incident_event(origin.district_code, origin.street_code, kind),
    };
    OutboxEvent {
        event_id: event.event_id.parse().expect("generated as a UUID"),
        subject,
        payload: event.encode_to_vec(),
    }
}

/// `report.attached`.
pub fn report_attached(report: &NewIncident, to: &Attachment) -> OutboxEvent {
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: REPORT_ATTACHED.to_owned(),
        occurred_at: Some(timestamp(report.received_at)),
        incident_id: to.incident_id.to_string(),
        district_code: to.district_code.clone(),
        street_code: to.street_code.clone(),
        community_code: report.community_code.clone(),
        grid_code: report.grid_code.clone(),
        actor_id: report.reporter_id.clone(),
        body: Some(v1::event::Body::ReportAttached(v1::ReportAttached {
            report: v1::Report::decode(report.report_payload.as_slice()).ok(),
            report_count: u32::try_from(to.report_count).unwrap_or_default(),
        })),
    };
    finish(event, &to.district_code, &to.street_code)
}

/// `cluster.alert`.
pub fn cluster_alert(alert: &ClusterAlert, category_name: &str, at: DateTime<Utc>) -> OutboxEvent {
    let community: Option<AreaCode> = alert.community_code.parse().ok();
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: CLUSTER_ALERT.to_owned(),
        occurred_at: Some(timestamp(at)),
        incident_id: String::new(),
        district_code: area(community.as_ref(), Level::District),
        street_code: area(community.as_ref(), Level::Street),
        community_code: alert.community_code.clone(),
        grid_code: String::new(),
        actor_id: "system".into(),
        body: Some(v1::event::Body::ClusterAlert(v1::ClusterAlert {
            community_code: alert.community_code.clone(),
            category: alert.category.clone(),
            category_name: category_name.to_owned(),
            reports: u32::try_from(alert.reports).unwrap_or(u32::MAX),
            window_start: Some(timestamp(alert.window_start)),
        })),
    };
    let (district, street) = (event.district_code.clone(), event.street_code.clone());
    finish(event, &district, &street)
}

/// `device.flagged`: `device` of `grid` flapped on `category` and is now under maintenance.
pub fn device_flagged(
    device: &str,
    kind: whistle_domain::devices::DeviceKind,
    grid: &AreaCode,
    category: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> OutboxEvent {
    let event = v1::Event {
        event_id: Uuid::now_v7().to_string(),
        kind: kind::DEVICE_FLAGGED.to_owned(),
        occurred_at: Some(timestamp(at)),
        incident_id: String::new(),
        district_code: area(Some(grid), Level::District),
        street_code: area(Some(grid), Level::Street),
        community_code: area(Some(grid), Level::Community),
        grid_code: grid.to_string(),
        actor_id: device.to_owned(),
        body: Some(v1::event::Body::DeviceFlagged(v1::DeviceFlagged {
            device_id: device.to_owned(),
            device_kind: kind.slug().to_owned(),
            category: category.to_owned(),
            reason: reason.to_owned(),
        })),
    };
    let (district, street) = (event.district_code.clone(), event.street_code.clone());
    finish(event, &district, &street)
}
