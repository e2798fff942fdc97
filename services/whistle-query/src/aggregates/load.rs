//! The rebuild's snapshot: every incident's facts read from PostgreSQL in one repeatable-read
//! transaction, so incidents, tasks and timeline agree with each other.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::PgPool;
use uuid::Uuid;
use whistle_domain::{
    incident::{Satisfaction, Status},
    Level,
};

use super::{day_of, hour_of, micros, Day, Facts, Grid, Hour, Micros, Store, TaskFact, Urgency};
use crate::{Error, Result};

/// What only the timeline tells about an incident.
#[derive(Default)]
struct History {
    whistles: Vec<Day>,
    resolved: Option<Micros>,
    verified: Option<Day>,
}

fn corrupt(id: Uuid, what: &str, value: &str) -> Error {
    Error::Corrupt(format!("incident {id}: unknown {what} {value:?}"))
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    version: i64,
    status: String,
    level: String,
    category: String,
    urgency: String,
    grid_code: String,
    created_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    overdue: bool,
    satisfaction: Option<String>,
}

/// Reads every incident into `store` at the clock's current `hour`; returns how many.
pub(super) async fn snapshot(pool: &PgPool, store: &Store, hour: Hour) -> Result<usize> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // A city's whole history takes longer to stream than one request's statement limit.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;

    let mut history: HashMap<Uuid, History> = HashMap::new();
    // The hours of the resolutions before the latest. Only incidents resolved more than once
    // (reopened) have any, so they are kept apart instead of widening every incident's history:
    // the map holds most of a city's incidents at once during the rebuild.
    let mut earlier_resolutions: HashMap<Uuid, Vec<Hour>> = HashMap::new();
    {
        let mut rows = sqlx::query_as::<_, (Uuid, String, DateTime<Utc>)>(
            "SELECT incident_id, kind, at FROM timeline
             WHERE kind IN ('incident.whistled', 'incident.resolved', 'incident.verified')",
        )
        .fetch(&mut *tx);
        while let Some((id, kind, at)) = rows.try_next().await? {
            let entry = history.entry(id).or_default();
            let at = micros(at);
            match kind.as_str() {
                "incident.whistled" => entry.whistles.push(day_of(at)),
                "incident.resolved" => {
                    if let Some(held) = entry.resolved {
                        let earlier = held.min(at);
                        earlier_resolutions
                            .entry(id)
                            .or_default()
                            .push(hour_of(earlier));
                    }
                    entry.resolved = entry.resolved.max(Some(at));
                }
                _ => entry.verified = entry.verified.max(Some(day_of(at))),
            }
        }
    }

    let mut tasks: HashMap<Uuid, Vec<(i32, TaskFact)>> = HashMap::new();
    {
        let mut rows = sqlx::query_as::<_, (Uuid, i32, DateTime<Utc>, bool)>(
            "SELECT incident_id, task_id, dispatched_at, coalesce(accepted_at <= accept_due_at, false)
             FROM tasks",
        )
        .fetch(&mut *tx);
        while let Some((id, task_id, dispatched_at, accepted_in_time)) = rows.try_next().await? {
            tasks.entry(id).or_default().push((
                task_id,
                TaskFact {
                    dispatched: day_of(micros(dispatched_at)),
                    accepted_in_time,
                },
            ));
        }
    }

    let mut loaded = 0;
    {
        let mut rows = sqlx::query_as::<_, IncidentRow>(
            "SELECT id, version, status, level, category, urgency, grid_code, created_at, due_at,
                    overdue, satisfaction
             FROM incidents",
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let id = row.id;
            let history = history.remove(&id).unwrap_or_default();
            let mut resolved_hours = earlier_resolutions.remove(&id).unwrap_or_default();
            resolved_hours.extend(history.resolved.map(hour_of));
            resolved_hours.sort_unstable();
            resolved_hours.dedup();
            let mut tasks = tasks.remove(&id).unwrap_or_default();
            tasks.sort_by_key(|(task_id, _)| *task_id);
            let satisfaction = row
                .satisfaction
                .map(|s| {
                    s.parse::<Satisfaction>()
                        .map_err(|_| corrupt(id, "satisfaction", &s))
                })
                .transpose()?;
            let facts = Facts {
                version: u64::try_from(row.version).unwrap_or_default(),
                grid: Grid::parse(&row.grid_code)
                    .ok_or_else(|| corrupt(id, "grid code", &row.grid_code))?,
                status: row
                    .status
                    .parse::<Status>()
                    .map_err(|_| corrupt(id, "status", &row.status))?,
                level: row
                    .level
                    .parse::<Level>()
                    .map_err(|_| corrupt(id, "level", &row.level))?,
                urgency: Urgency::from_db(&row.urgency)
                    .ok_or_else(|| corrupt(id, "urgency", &row.urgency))?,
                category: store.category(&row.category),
                overdue: row.overdue,
                satisfaction,
                created: micros(row.created_at),
                due: row.due_at.map(micros),
                resolved: history.resolved,
                resolved_hours: resolved_hours.into(),
                verified: history.verified,
                whistles: history.whistles.into(),
                tasks: tasks.into_iter().map(|(_, task)| task).collect(),
            };
            store.put(id, facts, hour);
            loaded += 1;
        }
    }
    tx.commit().await?;
    Ok(loaded)
}
