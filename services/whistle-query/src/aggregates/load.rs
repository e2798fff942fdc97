//! The rebuild's snapshot: every incident's facts read from PostgreSQL in one repeatable-read
//! transaction, so incidents, tasks and timeline agree with each other.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::PgPool;
use uuid::Uuid;
use whistle_domain::{
    incident::{Satisfaction, Status, TaskStatus},
    Level,
};

use super::{
    board::Row,
    day_of, hour_of, micros,
    store::{Member, Org},
    Day, Facts, Grid, Hour, Mark, MarkKind, Micros, Store, TaskFact, Urgency,
};
use crate::{Error, Result};

/// What only the timeline tells about an incident.
#[derive(Default)]
struct History {
    whistles: Vec<Micros>,
    resolved: Option<Micros>,
    verified: Option<Day>,
    /// The scoreboard's entries with their `seq`, sorted once all are read.
    marks: Vec<(i32, Mark)>,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    incident_id: Uuid,
    task_id: i32,
    department_code: String,
    status: String,
    round: i32,
    dispatched_at: DateTime<Utc>,
    accept_due_at: DateTime<Utc>,
    resolve_due_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    returned: bool,
    disputed: bool,
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
    updated_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    overdue: bool,
    ledgered_at: Option<DateTime<Utc>>,
    satisfaction: Option<String>,
    reopen_count: i32,
    title: String,
}

/// The rows the boards list and the units an area may name.
pub(super) async fn org(conn: &mut sqlx::PgConnection, store: &Store) -> Result<Org> {
    let units: Vec<String> =
        sqlx::query_scalar("SELECT code FROM org_units WHERE level IN ($1, $2, $3)")
            .bind(Level::City.as_str())
            .bind(Level::District.as_str())
            .bind(Level::Street.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let departments = sqlx::query_as::<_, (String, String, String)>(
        "SELECT code, name, area_code FROM departments",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(code, name, place)| Member {
        row: Row::Department(store.department(&code)),
        code,
        name,
        place,
    })
    .collect();
    let streets =
        sqlx::query_as::<_, (String, String)>("SELECT code, name FROM org_units WHERE level = $1")
            .bind(Level::Street.as_str())
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(code, name)| {
                let number = code
                    .parse()
                    .ok()
                    .filter(|_| code.len() == 9)
                    .ok_or_else(|| {
                        Error::Corrupt(format!("street code {code:?} is not 9 digits"))
                    })?;
                Ok(Member {
                    row: Row::Street(number),
                    place: code.clone(),
                    code,
                    name,
                })
            })
            .collect::<Result<_>>()?;
    Ok(Org {
        units: units.into_iter().collect(),
        departments,
        streets,
    })
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

    store.set_org(org(&mut tx, store).await?);
    // The newest transition first, so that terminal incidents settled long before it are
    // counted without being kept (see `Store::put`).
    let newest: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT max(updated_at) FROM incidents")
        .fetch_one(&mut *tx)
        .await?;
    if let Some(newest) = newest {
        store.observe(micros(newest));
    }
    store.advance(hour);

    let mut history: HashMap<Uuid, History> = HashMap::new();
    // The hours of the resolutions before the latest. Only incidents resolved more than once
    // (reopened) have any, so they are kept apart instead of widening every incident's history:
    // the map holds most of a city's incidents at once during the rebuild.
    let mut earlier_resolutions: HashMap<Uuid, Vec<Hour>> = HashMap::new();
    {
        // A follow-up is satisfied when the entry right after it closed the incident.
        let mut rows = sqlx::query_as::<_, (Uuid, i32, String, DateTime<Utc>, bool)>(
            "SELECT t.incident_id, t.seq, t.kind, t.at,
                    t.kind = 'incident.verified' AND EXISTS (
                        SELECT 1 FROM timeline c WHERE c.incident_id = t.incident_id
                        AND c.seq = t.seq + 1 AND c.kind = 'incident.closed') AS satisfied
             FROM timeline t
             WHERE t.kind IN ('incident.whistled', 'incident.resolved', 'incident.verified',
                              'incident.reopened', 'incident.extension_approved',
                              'incident.ledger_approved', 'incident.ledger_returned')",
        )
        .fetch(&mut *tx);
        while let Some((id, seq, kind, at, satisfied)) = rows.try_next().await? {
            let entry = history.entry(id).or_default();
            let at = micros(at);
            match kind.as_str() {
                "incident.whistled" => entry.whistles.push(at),
                "incident.reopened" => entry.marks.push((seq, Mark::Reopened)),
                "incident.resolved" => {
                    entry.marks.push((seq, Mark::Resolved(at)));
                    if let Some(held) = entry.resolved {
                        let earlier = held.min(at);
                        earlier_resolutions
                            .entry(id)
                            .or_default()
                            .push(hour_of(earlier));
                    }
                    entry.resolved = entry.resolved.max(Some(at));
                }
                "incident.verified" => {
                    entry.marks.push((seq, Mark::Verified { at, satisfied }));
                    entry.verified = entry.verified.max(Some(day_of(at)));
                }
                other => {
                    if let Some(mark) = MarkKind::of(other) {
                        entry.marks.push((seq, mark.at(at)));
                    }
                }
            }
        }
    }

    let mut tasks: HashMap<Uuid, Vec<(i32, TaskFact)>> = HashMap::new();
    {
        let mut rows = sqlx::query_as::<_, TaskRow>(
            "SELECT incident_id, task_id, department_code, status, round, dispatched_at,
                    accept_due_at, resolve_due_at, accepted_at, resolved_at,
                    return_reason IS NOT NULL AS returned, disputed
             FROM tasks",
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let status = row
                .status
                .parse::<TaskStatus>()
                .map_err(|_| corrupt(row.incident_id, "task status", &row.status))?;
            let accepted = row.accepted_at.map(micros);
            let resolve_due = Some(micros(row.resolve_due_at));
            tasks.entry(row.incident_id).or_default().push((
                row.task_id,
                TaskFact {
                    id: u32::try_from(row.task_id).map_err(|_| {
                        corrupt(row.incident_id, "task id", &row.task_id.to_string())
                    })?,
                    department: store.department(&row.department_code),
                    round: u32::try_from(row.round).unwrap_or_default(),
                    live: status.is_live(),
                    returned: row.returned,
                    disputed: row.disputed,
                    dispatched: micros(row.dispatched_at),
                    accepted,
                    accepted_in_time: accepted.is_some_and(|a| a <= micros(row.accept_due_at)),
                    resolve_due,
                    resolved: row.resolved_at.map(micros),
                    owed_by: TaskFact::owed(status, Some(micros(row.accept_due_at)), resolve_due),
                },
            ));
        }
    }

    let mut loaded = 0;
    {
        let mut rows = sqlx::query_as::<_, IncidentRow>(
            "SELECT id, version, status, level, category, urgency, grid_code, created_at,
                    updated_at, due_at, overdue, ledgered_at, satisfaction, reopen_count, title
             FROM incidents",
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let id = row.id;
            let mut history = history.remove(&id).unwrap_or_default();
            history.marks.sort_unstable_by_key(|(seq, _)| *seq);
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
                title: row.title.into(),
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
                ledgered: row.ledgered_at.map(micros),
                satisfaction,
                created: micros(row.created_at),
                due: row.due_at.map(micros),
                resolved: history.resolved,
                resolved_hours: resolved_hours.into(),
                verified: history.verified,
                whistles: history.whistles.into(),
                tasks: tasks.into_iter().map(|(_, task)| task).collect(),
                reopen_count: u32::try_from(row.reopen_count).unwrap_or_default(),
                marks: history.marks.into_iter().map(|(_, mark)| mark).collect(),
            };
            store.put(id, facts, micros(row.updated_at), hour);
            loaded += 1;
        }
    }
    tx.commit().await?;
    Ok(loaded)
}
