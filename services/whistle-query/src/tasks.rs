//! `ListTasks`: a department's tasks for its workbench (部门工作台), the ones waiting on it first,
//! soonest deadline first: the report-in deadline while dispatched or supervised, the resolve
//! deadline once accepted. Closed-out tasks (returned, resolved, cancelled) follow, newest first.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use whistle_domain::{incident::TaskStatus, policy::Policy};
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::{
    area::GridRange,
    auth::Principal,
    convert,
    incidents::{self, SUMMARY_COLUMNS},
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
    let waiting = [
        TaskStatus::Dispatched.as_str(),
        TaskStatus::Supervised.as_str(),
    ];
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, i.description, t.task_id, t.department_code, t.status AS task_status,
                t.dispatched_at, t.accept_due_at, t.resolve_due_at, t.accepted_at, t.resolved_at,
                t.holder_id, t.return_reason, t.round, t.supervised
         FROM tasks t JOIN incidents i ON i.id = t.incident_id
         WHERE t.department_code = $1 AND t.status = ANY($2)
           AND i.grid_code ~>=~ $3 AND i.grid_code ~<~ $4
         ORDER BY t.status = ANY($5) OR t.status = $6 DESC,
                  CASE WHEN t.status = ANY($5) THEN t.accept_due_at
                       WHEN t.status = $6 THEN t.resolve_due_at END,
                  t.updated_at DESC, t.incident_id, t.task_id
         LIMIT $7"
    ))
    .bind(&query.department)
    .bind(&query.statuses)
    .bind(&range.low)
    .bind(&range.high)
    .bind(&waiting[..])
    .bind(TaskStatus::Accepted.as_str())
    .bind(i64::from(query.page_size))
    .fetch_all(pool)
    .await?;
    let tasks = rows
        .iter()
        .map(|row| {
            let task = incidents::task_state(row, "task_status")?;
            Ok(v1::TaskItem {
                task: Some(task),
                department_name: department_name.clone(),
                incident: Some(incidents::summary(row, policy, now)?),
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
