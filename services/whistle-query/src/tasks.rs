//! `ListTasks`: a department's tasks for its workbench (部门工作台), the ones waiting on it first,
//! soonest deadline first: the report-in deadline while dispatched or supervised, the resolve
//! deadline once accepted. Closed-out tasks (returned, resolved, cancelled) follow, newest first.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use whistle_domain::{
    incident::{Status, TaskRole, TaskStatus, TaskVerb},
    policy::Policy,
};
use whistle_proto::v1;
use whistle_store::tokens::Role;
use whistle_wire::Verb;

use crate::{
    area::GridRange,
    auth::Principal,
    convert,
    incidents::{self, SUMMARY_COLUMNS},
    overdue::{TASK_DUE, TASK_IN_PROGRESS},
    page_token, Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A checked `ListTasksRequest`.
#[derive(Debug)]
pub(crate) struct Query {
    department: String,
    statuses: Vec<&'static str>,
    page_size: u32,
}

impl Query {
    /// Liaisons see their own department only; operators and viewers name one, and see its tasks
    /// on incidents inside their area. Grid workers have no workbench.
    pub fn parse(request: &v1::ListTasksRequest, principal: &Principal) -> Result<Query> {
        let requested = request.department_code.trim();
        let department = match (principal.role, principal.department.as_deref()) {
            (Role::GridWorker, _) => {
                return Err(Error::PermissionDenied(
                    "a grid_worker token has no department workbench".into(),
                ))
            }
            (_, Some(own)) if requested.is_empty() || requested == own => own.to_owned(),
            (Role::Liaison, Some(own)) => {
                return Err(Error::PermissionDenied(format!(
                    "this liaison token belongs to department {own}, not {requested}"
                )))
            }
            (_, _) if requested.is_empty() => {
                return Err(Error::invalid(
                    "department_code is required for a token without a department",
                ))
            }
            _ => requested.to_owned(),
        };
        let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let statuses = if request.statuses.is_empty() {
            TaskStatus::ALL
                .iter()
                .filter(|s| s.is_in_progress())
                .map(|s| s.as_str())
                .collect()
        } else {
            request
                .statuses
                .iter()
                .map(|&s| convert::task_status_to_db(s))
                .collect::<Result<_>>()?
        };
        Ok(Query {
            department,
            statuses,
            page_size,
        })
    }
}

/// A lead task's assisting departments of its round (a reassigned assistant's cancelled task is
/// replaced by its successor), and the names of those still owing their part: what its 办结 waits
/// for (`Incident::owes_part`). Read by the incident's primary key.
const ASSISTING: &str = "(SELECT count(*) FROM tasks a
    WHERE a.incident_id = t.incident_id AND a.round = t.round AND t.role = 'lead'
      AND a.role = 'assist' AND a.status <> 'cancelled')";
const PARTS_OWED: &str = "ARRAY(SELECT COALESCE(d.name, a.department_code)
    FROM tasks a LEFT JOIN departments d ON d.code = a.department_code
    WHERE a.incident_id = t.incident_id AND a.round = t.round AND t.role = 'lead'
      AND a.role = 'assist' AND a.status IN ('dispatched', 'supervised', 'accepted', 'returned')
    ORDER BY a.task_id)";

pub(crate) async fn list(
    pool: &PgPool,
    policy: &Policy,
    principal: &Principal,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<v1::ListTasksResponse> {
    let department_name: String =
        sqlx::query_scalar("SELECT name FROM departments WHERE code = $1")
            .bind(&query.department)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("no department {}", query.department)))?;
    let range = GridRange::of(&principal.area);
    // Tasks in progress (soonest deadline first), then closed-out ones (newest first): each part
    // read in the order of its index (`tasks_department_in_progress`, `_closed_out`) and cut at
    // the page, so a call reads about a page however many tasks the department has had.
    let part = |rank: u32, statuses: &str, due: Option<&str>| {
        let (by_due, due) = match due {
            Some(due) => (format!("{due}, "), due),
            None => (String::new(), "NULL::timestamptz"),
        };
        format!(
            "(SELECT {SUMMARY_COLUMNS}, i.description, i.reopen_count, t.task_id, t.department_code,
                     t.status AS task_status, t.dispatched_at, t.accept_due_at, t.resolve_due_at,
                     t.accepted_at, t.resolved_at, t.holder_id, t.return_reason, t.round,
                     t.supervised, t.disputed, t.dispute_to, t.role, t.updated_at AS task_updated_at, {rank} AS part, {due} AS task_due,
                     {ASSISTING} AS assisting, {PARTS_OWED} AS parts_owed, i.state->'ledger' AS ledger
              FROM tasks t JOIN incidents i ON i.id = t.incident_id
              WHERE t.department_code = $1 AND t.status {statuses} AND t.status = ANY($2)
                AND i.grid_code ~>=~ $3 AND i.grid_code ~<~ $4
              ORDER BY {by_due}t.updated_at DESC, t.incident_id, t.task_id
              LIMIT $5)"
        )
    };
    let rows = sqlx::query(&format!(
        "{} UNION ALL {}
         ORDER BY part, task_due, task_updated_at DESC, id, task_id
         LIMIT $5",
        part(0, &format!("IN {TASK_IN_PROGRESS}"), Some(TASK_DUE)),
        part(1, &format!("NOT IN {TASK_IN_PROGRESS}"), None),
    ))
    .bind(&query.department)
    .bind(&query.statuses)
    .bind(&range.low)
    .bind(&range.high)
    .bind(i64::from(query.page_size))
    .fetch_all(pool)
    .await?;
    let tasks = rows
        .iter()
        .map(|row| {
            let task = incidents::task_state(row, "task_status")?;
            let incident = incidents::summary(row, policy, now)?;
            let reopen_count = u32::try_from(row.try_get::<i32, _>("reopen_count")?)
                .map_err(|_| Error::Corrupt("incident reopen_count is negative".into()))?;
            let ledger = row
                .try_get::<Option<serde_json::Value>, _>("ledger")?
                .map(|json| {
                    serde_json::from_value::<whistle_domain::incident::Ledger>(json)
                        .map(|ledger| whistle_wire::convert::ledger_to_proto(&ledger))
                        .map_err(|e| {
                            Error::Corrupt(format!("incident {} ledger: {e}", incident.incident_id))
                        })
                })
                .transpose()?;
            Ok(v1::TaskItem {
                assisting: u32::try_from(row.try_get::<i64, _>("assisting")?)
                    .map_err(|_| Error::Corrupt("a negative count of assistants".into()))?,
                parts_owed: row.try_get("parts_owed")?,
                ledger,
                verbs: verbs(
                    principal,
                    &task,
                    incident.status,
                    reopen_count,
                    incident.ledgered,
                )?,
                task: Some(task),
                department_name: department_name.clone(),
                incident: Some(incident),
                description: row.try_get("description")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(v1::ListTasksResponse {
        department_code: query.department.clone(),
        department_name,
        tasks,
    })
}

/// The task commands `principal` may send for `task` now (`TaskItem.verbs`, `Task.verbs`): those
/// the task's status takes ([`TaskVerb::for_task`], the rule dispatch applies) that the caller's
/// role acts with — a liaison its own department's 签收/退单/办结, an operator 督办/改派 (the caller
/// already sees the incident, so it lies in the operator's area); viewers and grid workers none.
/// After them, the dispute verbs (派单异议): `dispute` for the department while the task waits for
/// its report-in and was never disputed, `decide_dispute` for an operator while a dispute waits.
/// A ledger case (挂账) takes only the department's verbs: nobody supervises, reassigns, disputes
/// or arbitrates while its deadlines stop.
pub(crate) fn verbs(
    principal: &Principal,
    task: &v1::TaskState,
    incident_status: i32,
    reopen_count: u32,
    ledgered: bool,
) -> Result<Vec<String>> {
    let department_verbs = match principal.role {
        Role::Liaison if principal.department.as_deref() == Some(&task.department_code) => true,
        Role::Operator => false,
        Role::Liaison
        | Role::Viewer
        | Role::GridWorker
        | Role::Open311
        | Role::Hotline
        | Role::Member
        | Role::Leader
        | Role::Device => return Ok(Vec::new()),
    };
    let status: TaskStatus = convert::task_status_to_db(task.status)?
        .parse()
        .map_err(Error::Corrupt)?;
    let open = convert::status_to_db(incident_status)?
        .parse::<Status>()
        .is_ok_and(Status::is_open);
    let current = task.round == reopen_count;
    let role = if task.role == v1::TaskRole::Assist as i32 {
        TaskRole::Assist
    } else {
        TaskRole::Lead
    };
    // A lead's 办结 is offered while assistants still owe their parts: dispatch refuses it then,
    // naming them (the incident's condition, not this task's).
    let mut verbs: Vec<String> = TaskVerb::for_task(status, current, open, role, ledgered)
        .filter(|verb| verb.is_department_verb() == department_verbs)
        .map(|verb| verb.as_str().to_owned())
        .collect();
    // The rules of `Command::Dispute` and `Command::DecideDispute` in the domain.
    let waiting = matches!(status, TaskStatus::Dispatched | TaskStatus::Supervised);
    if open && current && waiting && !ledgered {
        if department_verbs && !task.disputed {
            verbs.push(Verb::Dispute.as_str().to_owned());
        }
        if !department_verbs && !task.dispute_to_department_code.is_empty() {
            verbs.push(Verb::DecideDispute.as_str().to_owned());
        }
    }
    Ok(verbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, department: Option<&str>) -> Principal {
        Principal {
            token_id: uuid::Uuid::nil(),
            role,
            area: "150602".parse().unwrap(),
            department: department.map(str::to_owned),
            person: Some("p".into()),
            paired: Vec::new(),
        }
    }

    fn task(status: v1::TaskStatus, round: u32) -> v1::TaskState {
        v1::TaskState {
            task_id: 1,
            department_code: "150602-heating".into(),
            status: status as i32,
            round,
            ..Default::default()
        }
    }

    #[test]
    fn each_role_is_offered_only_its_own_verbs_for_the_status() {
        let liaison = principal(Role::Liaison, Some("150602-heating"));
        let other = principal(Role::Liaison, Some("150602-housing_construction"));
        let operator = principal(Role::Operator, None);
        let viewer = principal(Role::Viewer, None);
        let whistled = v1::IncidentStatus::Whistled as i32;
        let offered = |p: &Principal, t: &v1::TaskState, status: i32, round: u32| {
            verbs(p, t, status, round, false).unwrap()
        };
        let dispatched = task(v1::TaskStatus::Dispatched, 0);
        assert_eq!(
            offered(&liaison, &dispatched, whistled, 0),
            ["accept", "return", "dispute"]
        );
        assert_eq!(
            offered(&operator, &dispatched, whistled, 0),
            ["supervise", "reassign"]
        );
        assert!(offered(&other, &dispatched, whistled, 0).is_empty());
        assert!(offered(&viewer, &dispatched, whistled, 0).is_empty());
        // 事不完、人不撤: an accepted task is resolved, never returned, and no longer reassigned.
        let accepted = task(v1::TaskStatus::Accepted, 0);
        let status = v1::IncidentStatus::Accepted as i32;
        assert_eq!(offered(&liaison, &accepted, status, 0), ["resolve"]);
        assert_eq!(offered(&operator, &accepted, status, 0), ["supervise"]);
        // A task of an earlier round, and any task of a closed incident, take nothing more.
        assert!(offered(&operator, &dispatched, whistled, 1).is_empty());
        let closed = v1::IncidentStatus::Closed as i32;
        assert!(offered(&liaison, &dispatched, closed, 0).is_empty());
        let returned = task(v1::TaskStatus::Returned, 0);
        assert_eq!(offered(&operator, &returned, whistled, 0), ["reassign"]);
        assert!(offered(&liaison, &returned, whistled, 0).is_empty());
        // A ledger case (挂账): the department goes on, nobody supervises, reassigns or disputes.
        assert_eq!(
            verbs(&liaison, &dispatched, whistled, 0, true).unwrap(),
            ["accept", "return"]
        );
        assert!(verbs(&operator, &dispatched, whistled, 0, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_dispute_is_offered_once_and_its_arbitration_while_it_waits() {
        let liaison = principal(Role::Liaison, Some("150602-heating"));
        let operator = principal(Role::Operator, None);
        let whistled = v1::IncidentStatus::Whistled as i32;
        let dispatched = task(v1::TaskStatus::Dispatched, 0);
        assert_eq!(
            verbs(&liaison, &dispatched, whistled, 0, false).unwrap(),
            ["accept", "return", "dispute"]
        );
        let pending = v1::TaskState {
            disputed: true,
            dispute_to_department_code: "150602-transport".into(),
            ..task(v1::TaskStatus::Supervised, 0)
        };
        assert_eq!(
            verbs(&liaison, &pending, whistled, 0, false).unwrap(),
            ["accept", "return"]
        );
        assert_eq!(
            verbs(&operator, &pending, whistled, 0, false).unwrap(),
            ["supervise", "reassign", "decide_dispute"]
        );
        let accepted = task(v1::TaskStatus::Accepted, 0);
        let status = v1::IncidentStatus::Accepted as i32;
        assert_eq!(
            verbs(&liaison, &accepted, status, 0, false).unwrap(),
            ["resolve"]
        );
    }
}
