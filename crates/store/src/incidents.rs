//! Loading and saving an incident's state for the escalation engine: the domain
//! [`Incident`] as JSON plus its projection (columns, tasks, timers), timeline entries and outbox
//! events — all inside the caller's transaction, with the incident row locked.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;
use whistle_domain::incident::{Incident, Timer};

use crate::{intake::OutboxEvent, Error, Result};

/// An incident locked for update, with what events need to name its place.
#[derive(Debug, Clone)]
pub struct Locked {
    pub id: Uuid,
    pub state: Incident,
    pub title: String,
    pub reporter_id: String,
    pub district_code: String,
    pub street_code: String,
    pub community_code: String,
}

/// Locks the incident's row (`FOR UPDATE`), waiting for another transaction that holds it, and
/// reads its state; `None` if there is no such incident.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Locked>> {
    lock_with(conn, id, "FOR UPDATE").await
}

/// Like [`lock`], but `None` at once when another transaction holds the row (`SKIP LOCKED`): the
/// timer loop claims incidents this way, so replicas never wait on each other or on a command.
pub async fn try_lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Locked>> {
    lock_with(conn, id, "FOR UPDATE SKIP LOCKED").await
}

async fn lock_with(conn: &mut PgConnection, id: Uuid, locking: &str) -> Result<Option<Locked>> {
    let sql = format!(
        "SELECT state, title, reporter_id, district_code, street_code, community_code
         FROM incidents WHERE id = $1 {locking}"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let state: Option<serde_json::Value> = row.get("state");
    let state =
        state.ok_or_else(|| Error::Corrupt(format!("incident {id} has no engine state")))?;
    let state: Incident = serde_json::from_value(state)
        .map_err(|e| Error::Corrupt(format!("incident {id} state: {e}")))?;
    Ok(Some(Locked {
        id,
        state,
        title: row.get("title"),
        reporter_id: row.get("reporter_id"),
        district_code: row.get("district_code"),
        street_code: row.get("street_code"),
        community_code: row.get("community_code"),
    }))
}

/// An entry for the incident's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub kind: String,
    pub actor_id: String,
    pub at: DateTime<Utc>,
    pub note: String,
    pub data: Option<serde_json::Value>,
}

/// What a transition changes besides the state itself.
#[derive(Debug, Default)]
pub struct Changes {
    pub schedule: Vec<(Timer, DateTime<Utc>)>,
    pub cancel: Vec<Timer>,
    /// The timer that fired, deleted before `schedule` is applied (it may be scheduled again).
    pub fired: Option<Timer>,
    pub timeline: Vec<TimelineEntry>,
    pub events: Vec<OutboxEvent>,
}

/// Writes the new state, its projection, tasks, timers, timeline and events.
pub async fn save(
    conn: &mut PgConnection,
    id: Uuid,
    state: &Incident,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<()> {
    let json = serde_json::to_value(state)
        .map_err(|e| Error::Corrupt(format!("serializing incident {id}: {e}")))?;
    sqlx::query(
        "UPDATE incidents SET state = $2, status = $3, level = $4, version = $5, due_at = $6, level_due_at = $7,
             overdue = $8, reopen_count = $9, satisfaction = $10, updated_at = $11,
             resolved_at = CASE WHEN $3 = 'resolved' AND status <> 'resolved' THEN $11 ELSE resolved_at END,
             closed_at = CASE WHEN $3 NOT IN ('closed', 'closed_unverified') THEN NULL
                              WHEN status IN ('closed', 'closed_unverified') THEN closed_at ELSE $11 END
         WHERE id = $1",
    )
    .bind(id)
    .bind(json)
    .bind(state.status.as_str())
    .bind(state.level.as_str())
    .bind(state.version as i64)
    .bind(state.resolve_due)
    .bind(state.level_due)
    .bind(state.overdue)
    .bind(state.reopen_count as i32)
    .bind(state.satisfaction.map(|s| s.as_str()))
    .bind(now)
    .execute(&mut *conn)
    .await?;

    if !state.tasks.is_empty() {
        let tasks = &state.tasks;
        sqlx::query(
            "INSERT INTO tasks (incident_id, task_id, round, department_code, status, dispatched_at, accept_due_at,
                 resolve_due_at, accepted_at, resolved_at, holder_id, return_reason, supervised, updated_at)
             SELECT $1, t.*, $14 FROM UNNEST($2::int4[], $3::int4[], $4::text[], $5::text[], $6::timestamptz[],
                 $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[],
                 $13::bool[]) AS t
             ON CONFLICT (incident_id, task_id) DO UPDATE SET status = EXCLUDED.status, accepted_at = EXCLUDED.accepted_at,
                 resolved_at = EXCLUDED.resolved_at, holder_id = EXCLUDED.holder_id, return_reason = EXCLUDED.return_reason,
                 supervised = EXCLUDED.supervised, updated_at = EXCLUDED.updated_at
             WHERE (tasks.status, tasks.accepted_at, tasks.resolved_at, tasks.holder_id, tasks.return_reason, tasks.supervised)
                 IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.accepted_at, EXCLUDED.resolved_at, EXCLUDED.holder_id,
                                   EXCLUDED.return_reason, EXCLUDED.supervised)",
        )
        .bind(id)
        .bind(tasks.iter().map(|t| t.id as i32).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.round as i32).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.department.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.dispatched_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.accept_due).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.resolve_due).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.accepted_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.resolved_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.holder.as_ref().map(|h| h.as_str())).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.return_reason.map(|r| r.as_str())).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.supervised).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }

    if let Some(fired) = changes.fired {
        sqlx::query("DELETE FROM timers WHERE incident_id = $1 AND key = $2")
            .bind(id)
            .bind(fired.key())
            .execute(&mut *conn)
            .await?;
    }
    if !changes.cancel.is_empty() {
        sqlx::query("DELETE FROM timers WHERE incident_id = $1 AND key = ANY($2)")
            .bind(id)
            .bind(changes.cancel.iter().map(Timer::key).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    if !changes.schedule.is_empty() {
        schedule(conn, &[id], &changes.schedule).await?;
    }
    append_timeline(conn, id, &changes.timeline).await?;
    crate::intake::insert_outbox(conn, changes.events.iter()).await?;
    Ok(())
}

/// Upserts timers for incidents (one id per timer, or one id for all).
pub(crate) async fn schedule(
    conn: &mut PgConnection,
    ids: &[Uuid],
    timers: &[(Timer, DateTime<Utc>)],
) -> Result<()> {
    let ids: Vec<Uuid> = if ids.len() == 1 {
        vec![ids[0]; timers.len()]
    } else {
        ids.to_vec()
    };
    sqlx::query(
        "INSERT INTO timers (incident_id, key, due_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[])
         ON CONFLICT (incident_id, key) DO UPDATE SET due_at = EXCLUDED.due_at",
    )
    .bind(ids)
    .bind(timers.iter().map(|(t, _)| t.key()).collect::<Vec<_>>())
    .bind(timers.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends entries after the incident's last one.
pub async fn append_timeline(
    conn: &mut PgConnection,
    id: Uuid,
    entries: &[TimelineEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO timeline (incident_id, seq, kind, actor_id, at, note, data)
         SELECT $1, base.last + t.n, t.kind, t.actor, t.at, t.note, t.data
         FROM (SELECT coalesce(max(seq), 0) AS last FROM timeline WHERE incident_id = $1) base,
              UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[]) WITH ORDINALITY
                  AS t(kind, actor, at, note, data, n)",
    )
    .bind(id)
    .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.actor_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.at).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.note.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.data.clone()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A timer that is due.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTimer {
    pub incident_id: Uuid,
    pub timer: Timer,
    pub due_at: DateTime<Utc>,
}

/// Timers due at `now`, oldest first, without locking (the firing locks the incident first, then
/// re-checks the timer, so replicas never fire one twice and never deadlock with commands).
pub async fn due_timers(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueTimer>> {
    let rows = sqlx::query_as::<_, (Uuid, String, DateTime<Utc>)>(
        "SELECT incident_id, key, due_at FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(incident_id, key, due_at)| {
            let timer = Timer::from_key(&key)
                .ok_or_else(|| Error::Corrupt(format!("timer key {key:?}")))?;
            Ok(DueTimer {
                incident_id,
                timer,
                due_at,
            })
        })
        .collect()
}

/// With the incident locked: whether the timer is still pending and due (another replica may have
/// fired it already).
pub async fn timer_still_due(
    conn: &mut PgConnection,
    due: &DueTimer,
    now: DateTime<Utc>,
) -> Result<bool> {
    let found: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT due_at FROM timers WHERE incident_id = $1 AND key = $2 FOR UPDATE",
    )
    .bind(due.incident_id)
    .bind(due.timer.key())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some_and(|at| at <= now))
}

/// The earliest pending deadline, for the wake-up loop.
pub async fn next_timer(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("SELECT min(due_at) FROM timers")
        .fetch_one(&mut *conn)
        .await?)
}

/// The stored reply of a command already applied.
pub async fn command_reply(conn: &mut PgConnection, command_id: &str) -> Result<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT reply FROM commands WHERE command_id = $1")
            .bind(command_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Records a command's reply, in the transaction that applied it.
pub async fn record_command(
    conn: &mut PgConnection,
    command_id: &str,
    incident_id: Uuid,
    verb: &str,
    actor_id: &str,
    reply: &[u8],
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO commands (command_id, incident_id, verb, actor_id, reply, applied_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(command_id)
    .bind(incident_id)
    .bind(verb)
    .bind(actor_id)
    .bind(reply)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
