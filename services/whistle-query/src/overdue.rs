//! `ListOverdue`: what is late right now in an area, most late first.
//!
//! - An open incident (handling, whistled, accepted) is late when dispatch flagged it `overdue` or
//!   its SLA deadline `due_at` has passed (the deadline timer may not have fired yet).
//! - A task of an open incident is late when the department has not reported in (dispatched or
//!   supervised) after `accept_due_at`, or has reported in but not resolved (accepted) after
//!   `resolve_due_at`.
//!
//! - A case in the long-term ledger (挂账, `ledgered_at` set) is never late: its deadlines stop
//!   until the review, and its tasks' with them.
//!
//! `late_by` is the clock's now minus the deadline, never negative.
//!
//! The RPC reads the live late list (`aggregates::late`); the SQL here is the definition it is
//! tested against, and answers while the aggregates load.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;
use whistle_domain::AreaCode;
use whistle_proto::v1;

use crate::{area::GridRange, convert, page_token, Result};

/// The most items one response carries, the latest first; the screens show the worst cases and
/// a response stays well below gRPC's default 4 MiB message limit.
pub const MAX_ITEMS: u32 = 5_000;

/// The items a request asks for: `page_size`, or the most when 0.
pub(crate) fn limit(page_size: u32) -> Result<u32> {
    page_token::page_size(page_size, MAX_ITEMS, MAX_ITEMS)
}

/// The statuses of open incidents and of tasks in progress, spelled as the partial indexes of
/// migration `20261206000011_late_and_workbench_order` spell them: PostgreSQL uses such an index
/// only where the query's text implies its predicate (checked against the domain in the tests).
pub(crate) const OPEN_INCIDENT: &str = "('handling', 'whistled', 'accepted')";
pub(crate) const TASK_IN_PROGRESS: &str = "('dispatched', 'supervised', 'accepted')";
/// The deadline a task in progress waits on: to report in while dispatched or supervised, to
/// resolve once accepted (the indexes' expression, as written there).
pub(crate) const TASK_DUE: &str =
    "CASE WHEN t.status IN ('dispatched', 'supervised') THEN t.accept_due_at ELSE t.resolve_due_at END";

/// `ListOverdue` of `area` at `now` by SQL, at most `limit` items.
pub async fn list(
    pool: &PgPool,
    area: &AreaCode,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<v1::ListOverdueResponse> {
    let range = GridRange::of(area);
    // Three lists, each read in its index's order and cut at the limit, merged: late open
    // incidents (a prefix of `incidents_open_due`), flagged ones not yet late on this clock (a
    // replica's clock may trail dispatch's; an open incident always has a deadline), and late
    // tasks (a prefix of `tasks_in_progress_due`, whose grid code tests the area inside the
    // index, so only the area's late tasks are joined to their incident).
    let in_area = "AND i.grid_code ~>=~ $3 AND i.grid_code ~<~ $4";
    let sql = format!(
        "WITH late AS (
             (SELECT i.id, NULL::int AS task_id, ''::text AS department_code, i.title, i.due_at,
                     i.level, i.street_code
              FROM incidents i
              WHERE i.status IN {OPEN_INCIDENT} AND i.due_at < $1 {in_area}
                AND i.ledgered_at IS NULL
              ORDER BY i.due_at, i.id LIMIT $2)
             UNION ALL
             (SELECT i.id, NULL, '', i.title, i.due_at, i.level, i.street_code
              FROM incidents i
              WHERE i.overdue AND i.status IN {OPEN_INCIDENT} AND i.due_at >= $1 {in_area}
                AND i.ledgered_at IS NULL
              ORDER BY i.due_at, i.id LIMIT $2)
             UNION ALL
             (SELECT i.id, t.task_id, t.department_code, i.title, {TASK_DUE}, i.level,
                     i.street_code
              FROM tasks t JOIN incidents i ON i.id = t.incident_id
              WHERE t.status IN {TASK_IN_PROGRESS} AND {TASK_DUE} < $1
                AND t.grid_code ~>=~ $3 AND t.grid_code ~<~ $4 AND i.status IN {OPEN_INCIDENT}
                AND i.ledgered_at IS NULL
              ORDER BY {TASK_DUE}, t.incident_id, t.task_id LIMIT $2)
         )
         SELECT late.*, coalesce(d.name, '') AS department_name
         FROM late LEFT JOIN departments d ON d.code = late.department_code
         ORDER BY due_at, id, task_id NULLS FIRST
         LIMIT $2"
    );
    // The area's share of the late rows decides between walking the deadlines and reading the
    // area's rows, so the plan is made for the bound values every time (an unnamed statement).
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(i64::from(limit))
        .bind(&range.low)
        .bind(&range.high)
        .persistent(false)
        .fetch_all(pool)
        .await?;

    let items = rows
        .iter()
        .map(|row| {
            let due_at: Option<DateTime<Utc>> = row.try_get("due_at")?;
            Ok(v1::OverdueItem {
                incident_id: row.try_get::<Uuid, _>("id")?.to_string(),
                task_id: row
                    .try_get::<Option<i32>, _>("task_id")?
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                department_code: row.try_get("department_code")?,
                department_name: row.try_get("department_name")?,
                title: row.try_get("title")?,
                due_at: due_at.map(convert::timestamp),
                late_by: Some(convert::duration(
                    due_at.map_or(chrono::TimeDelta::zero(), |due| now - due),
                )),
                level: convert::level_from_db(row.try_get("level")?)? as i32,
                street_code: row.try_get("street_code")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(v1::ListOverdueResponse { items })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use whistle_domain::incident::{Status, TaskStatus};

    use super::*;

    /// The quoted names in an SQL list.
    fn names(list: &str) -> BTreeSet<&str> {
        list.split('\'').skip(1).step_by(2).collect()
    }

    #[test]
    fn the_statuses_spelled_for_the_indexes_are_the_domain_s() {
        let open = Status::ALL
            .iter()
            .filter(|s| s.is_open())
            .map(|s| s.as_str());
        assert_eq!(names(OPEN_INCIDENT), open.collect());
        let in_progress = TaskStatus::ALL
            .iter()
            .filter(|s| s.is_in_progress())
            .map(|s| s.as_str());
        assert_eq!(names(TASK_IN_PROGRESS), in_progress.collect());
        let waiting = [
            TaskStatus::Dispatched.as_str(),
            TaskStatus::Supervised.as_str(),
        ];
        assert_eq!(names(TASK_DUE), waiting.into());
        let migration = include_str!(
            "../../../crates/store/migrations/20261206000011_late_and_workbench_order.sql"
        );
        assert!(migration.contains(OPEN_INCIDENT));
        assert!(migration.contains(TASK_IN_PROGRESS));
        assert!(migration.contains(&TASK_DUE.replace("t.", "")));
    }
}
