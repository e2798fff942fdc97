//! `ListOverdue`: what is late right now in an area, most late first.
//!
//! - An open incident (handling, whistled, accepted) is late when dispatch flagged it `overdue` or
//!   its SLA deadline `due_at` has passed (the deadline timer may not have fired yet).
//! - A task of an open incident is late when the department has not reported in (dispatched or
//!   supervised) after `accept_due_at`, or has reported in but not resolved (accepted) after
//!   `resolve_due_at`.
//!
//! `late_by` is the clock's now minus the deadline, never negative.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;
use whistle_domain::{incident::TaskStatus, AreaCode};
use whistle_proto::v1;

use crate::{area::GridRange, convert, Result};

/// The most items one response carries, the latest first; the screens show the worst cases and
/// a response stays well below gRPC's default 4 MiB message limit.
pub const MAX_ITEMS: i64 = 5_000;

pub(crate) async fn list(
    pool: &PgPool,
    area: Option<&AreaCode>,
    now: DateTime<Utc>,
) -> Result<v1::ListOverdueResponse> {
    let range = area.map(GridRange::of);
    let rows = sqlx::query(
        "WITH scoped AS (
             SELECT * FROM incidents
             WHERE status = ANY($3) AND ($1::text IS NULL OR (grid_code ~>=~ $1 AND grid_code ~<~ $2))
         )
         SELECT id, NULL::int AS task_id, '' AS department_code, '' AS department_name, title,
                due_at, level, street_code
         FROM scoped
         WHERE overdue OR due_at < $4
         UNION ALL
         SELECT i.id, t.task_id, t.department_code, coalesce(d.name, ''), i.title,
                CASE WHEN t.status = ANY($5) THEN t.accept_due_at ELSE t.resolve_due_at END,
                i.level, i.street_code
         FROM tasks t JOIN scoped i ON i.id = t.incident_id
         LEFT JOIN departments d ON d.code = t.department_code
         WHERE (t.status = ANY($5) AND t.accept_due_at < $4)
            OR (t.status = $6 AND t.resolve_due_at < $4)
         ORDER BY due_at NULLS LAST, id, task_id NULLS FIRST
         LIMIT $7",
    )
    .bind(range.as_ref().map(|r| r.low.as_str()))
    .bind(range.as_ref().map(|r| r.high.as_str()))
    .bind(convert::open_statuses())
    .bind(now)
    .bind(vec![TaskStatus::Dispatched.as_str(), TaskStatus::Supervised.as_str()])
    .bind(TaskStatus::Accepted.as_str())
    .bind(MAX_ITEMS)
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
