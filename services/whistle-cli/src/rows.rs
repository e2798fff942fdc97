//! The query service's answers (`ListTasks`, `GetIncident`) as the rows `whistle tasks` and
//! `whistle incident` render, so the views read through the authenticated gRPC door with the
//! person's token instead of PostgreSQL. What the RPCs do not carry (an incident's outcome
//! times, a timeline entry's task) is left out of the view rather than guessed.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use whistle_proto::v1;
use whistle_store::tasks::{DepartmentTask, IncidentDetail, IncidentRow, ReportRow, TaskRow};

/// The snake_case name of a proto enum value without its type prefix, as the database stores it.
fn stored(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

fn status(value: i32) -> String {
    crate::commands::status_name(value)
}

fn level(value: i32) -> String {
    crate::commands::level_name(value)
}

fn urgency(value: i32) -> String {
    match v1::Urgency::try_from(value) {
        Ok(v1::Urgency::Unspecified) | Err(_) => "normal".into(),
        Ok(urgency) => stored(urgency.as_str_name(), "URGENCY_"),
    }
}

fn return_reason(value: i32) -> Option<String> {
    match v1::ReturnReason::try_from(value) {
        Ok(v1::ReturnReason::Unspecified) | Err(_) => None,
        Ok(reason) => Some(stored(reason.as_str_name(), "RETURN_REASON_")),
    }
}

fn satisfaction(value: i32) -> Option<String> {
    match v1::Satisfaction::try_from(value) {
        Ok(v1::Satisfaction::Unspecified) | Err(_) => None,
        Ok(verdict) => Some(stored(verdict.as_str_name(), "SATISFACTION_")),
    }
}

fn time(at: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let at = at?;
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
}

fn required(at: Option<&prost_types::Timestamp>, what: &str) -> anyhow::Result<DateTime<Utc>> {
    time(at).with_context(|| format!("the query service sent no {what}"))
}

fn non_empty(s: &str) -> Option<String> {
    Some(s).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A task as the views show it; its last change is the latest time it carries.
pub fn task(state: &v1::TaskState) -> anyhow::Result<TaskRow> {
    let dispatched_at = required(state.dispatched_at.as_ref(), "dispatch time")?;
    let accepted_at = time(state.accepted_at.as_ref());
    let resolved_at = time(state.resolved_at.as_ref());
    Ok(TaskRow {
        task_id: state.task_id,
        round: state.round,
        department_code: state.department_code.clone(),
        status: crate::commands::task_status_name(state.status),
        dispatched_at,
        accept_due_at: required(state.accept_due_at.as_ref(), "report-in deadline")?,
        resolve_due_at: required(state.resolve_due_at.as_ref(), "resolve deadline")?,
        accepted_at,
        resolved_at,
        holder_id: non_empty(&state.holder_id),
        return_reason: return_reason(state.return_reason),
        supervised: state.supervised,
        updated_at: [accepted_at, resolved_at]
            .into_iter()
            .flatten()
            .fold(dispatched_at, DateTime::max),
    })
}

/// A row of a department's task list.
pub fn department_task(item: &v1::TaskItem) -> anyhow::Result<DepartmentTask> {
    let state = item.task.as_ref().context("a task item without its task")?;
    let incident = item
        .incident
        .as_ref()
        .context("a task item without its incident")?;
    Ok(DepartmentTask {
        incident_id: incident.incident_id.parse().context("incident id")?,
        task: task(state)?,
        incident_status: status(incident.status),
        incident_level: level(incident.level),
        incident_version: i64::try_from(incident.version).unwrap_or(i64::MAX),
        category: incident.category.clone(),
        urgency: urgency(incident.urgency),
        title: incident.title.clone(),
        district_code: incident.district_code.clone(),
        street_code: incident.street_code.clone(),
        community_code: incident.community_code.clone(),
        grid_code: incident.grid_code.clone(),
        address: incident
            .location
            .as_ref()
            .map(|l| l.address.clone())
            .unwrap_or_default(),
        overdue: incident.overdue,
    })
}

/// One incident with its tasks, reports and timeline.
pub fn incident(detail: &v1::IncidentDetail) -> anyhow::Result<IncidentDetail> {
    let i = detail
        .incident
        .as_ref()
        .context("an incident without its summary")?;
    let reported_at = required(i.reported_at.as_ref(), "report time")?;
    let reports: Vec<ReportRow> = detail
        .reports
        .iter()
        .map(|r| ReportRow {
            report_id: r.report_id.clone(),
            reporter_id: r.reporter_id.clone(),
            grid_code: r.grid_code.clone(),
            received_at: time(r.reported_at.as_ref()).unwrap_or(reported_at),
            // As whistle-query shows it to this token: masked unless its person must call back
            // (and then the unmasked read is on the access log).
            contact_masked: (!r.contact_phone.is_empty()).then(|| r.contact_phone.clone()),
        })
        .collect();
    let location = i.location.as_ref();
    let incident = IncidentRow {
        id: i.incident_id.parse().context("incident id")?,
        version: i64::try_from(i.version).unwrap_or(i64::MAX),
        status: status(i.status),
        level: level(i.level),
        category: i.category.clone(),
        urgency: urgency(i.urgency),
        title: i.title.clone(),
        description: detail.description.clone(),
        district_code: i.district_code.clone(),
        street_code: i.street_code.clone(),
        community_code: i.community_code.clone(),
        grid_code: i.grid_code.clone(),
        lat: location.map(|l| l.lat),
        lon: location.map(|l| l.lon),
        address: location.map(|l| l.address.clone()).unwrap_or_default(),
        reporter_id: reports
            .first()
            .map(|r| r.reporter_id.clone())
            .unwrap_or_default(),
        report_count: i32::try_from(i.report_count).unwrap_or(i32::MAX),
        policy_version: detail.policy_version.clone(),
        occurred_at: None,
        reported_at,
        created_at: reported_at,
        updated_at: reported_at,
        due_at: time(i.due_at.as_ref()),
        level_due_at: time(detail.level_due_at.as_ref()),
        overdue: i.overdue,
        reopen_count: i32::try_from(detail.reopen_count).unwrap_or(i32::MAX),
        satisfaction: satisfaction(detail.satisfaction),
        resolved_at: time(detail.resolved_at.as_ref()),
        closed_at: time(detail.closed_at.as_ref()),
        duplicate_of: (!detail.duplicate_of.is_empty())
            .then(|| detail.duplicate_of.parse())
            .transpose()
            .context("duplicate_of")?,
    };
    let tasks = detail
        .tasks
        .iter()
        .filter_map(|t| t.state.as_ref())
        .map(task)
        .collect::<anyhow::Result<_>>()?;
    let timeline = detail
        .timeline
        .iter()
        .map(|e| whistle_store::tasks::TimelineRow {
            seq: i32::try_from(e.seq).unwrap_or(i32::MAX),
            kind: e.kind.clone(),
            actor_id: e.actor_id.clone(),
            at: time(e.at.as_ref()).unwrap_or(reported_at),
            note: e.note.clone(),
            data: None,
        })
        .collect();
    Ok(IncidentDetail {
        incident,
        tasks,
        reports,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn state() -> v1::TaskState {
        v1::TaskState {
            task_id: 2,
            department_code: "150602-heating".into(),
            status: v1::TaskStatus::Returned as i32,
            round: 1,
            dispatched_at: at(1_000),
            accept_due_at: at(2_000),
            resolve_due_at: at(9_000),
            accepted_at: at(1_500),
            resolved_at: None,
            holder_id: "li-150602-heating".into(),
            return_reason: v1::ReturnReason::WrongArea as i32,
            supervised: true,
            disputed: false,
            dispute_to_department_code: String::new(),
            role: v1::TaskRole::Lead as i32,
        }
    }

    #[test]
    fn a_task_reads_as_the_database_names_it() {
        let row = task(&state()).unwrap();
        assert_eq!(row.status, "returned");
        assert_eq!(row.return_reason.as_deref(), Some("wrong_area"));
        assert_eq!(row.holder_id.as_deref(), Some("li-150602-heating"));
        assert_eq!(row.updated_at.timestamp(), 1_500);
        assert_eq!(row.deadline(), None);
        let fresh = task(&v1::TaskState {
            status: v1::TaskStatus::Dispatched as i32,
            holder_id: String::new(),
            return_reason: 0,
            accepted_at: None,
            ..state()
        })
        .unwrap();
        assert_eq!(fresh.holder_id, None);
        assert_eq!(fresh.return_reason, None);
        assert_eq!(fresh.deadline().unwrap().at().timestamp(), 2_000);
        assert!(task(&v1::TaskState {
            dispatched_at: None,
            ..state()
        })
        .is_err());
    }

    #[test]
    fn an_incident_reads_with_its_reports_and_timeline() {
        let id = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let detail = v1::IncidentDetail {
            incident: Some(v1::IncidentSummary {
                incident_id: id.into(),
                status: v1::IncidentStatus::ClosedUnverified as i32,
                level: v1::Level::Street as i32,
                urgency: v1::Urgency::Emergency as i32,
                reported_at: at(500),
                report_count: 2,
                version: 7,
                location: Some(v1::Location {
                    lat: 39.8,
                    lon: 109.9,
                    address: "东胜区".into(),
                }),
                ..Default::default()
            }),
            description: "no heat".into(),
            tasks: vec![v1::Task {
                state: Some(state()),
                department_name: "供热".into(),
                verbs: Vec::new(),
            }],
            reports: vec![v1::Report {
                report_id: "r-1".into(),
                reporter_id: "gw-150602001001001".into(),
                reported_at: at(490),
                ..Default::default()
            }],
            timeline: vec![v1::TimelineEntry {
                seq: 1,
                kind: "incident.reported".into(),
                actor_id: "gw-150602001001001".into(),
                at: at(500),
                note: String::new(),
                actor_name: String::new(),
            }],
            policy_version: "ordos-1".into(),
            resolved_at: at(900),
            closed_at: at(1_000),
            satisfaction: v1::Satisfaction::BasicallySatisfied as i32,
            reopen_count: 1,
            ..Default::default()
        };
        let read = incident(&detail).unwrap();
        assert_eq!(read.incident.resolved_at.unwrap().timestamp(), 900);
        assert_eq!(read.incident.closed_at.unwrap().timestamp(), 1_000);
        assert_eq!(
            read.incident.satisfaction.as_deref(),
            Some("basically_satisfied")
        );
        assert_eq!(read.incident.reopen_count, 1);
        assert_eq!(read.incident.level_due_at, None);
        assert_eq!(read.incident.duplicate_of, None);
        assert_eq!(read.incident.id.to_string(), id);
        assert_eq!(read.incident.status, "closed_unverified");
        assert_eq!(read.incident.level, "street");
        assert_eq!(read.incident.urgency, "emergency");
        assert_eq!(read.incident.reporter_id, "gw-150602001001001");
        assert_eq!(read.incident.address, "东胜区");
        assert_eq!(read.incident.version, 7);
        assert_eq!(read.tasks.len(), 1);
        assert_eq!(read.reports[0].received_at.timestamp(), 490);
        assert_eq!(read.timeline[0].kind, "incident.reported");
        assert_eq!(urgency(0), "normal");
    }
}
