//! Loading and saving an incident's state for the escalation engine: the domain
//! [`Incident`] as JSON plus its projection (columns, tasks, timers), timeline entries and outbox
//! events — all inside the caller's transaction, with the incident row locked.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;
use whistle_domain::incident::{Incident, Task, Timer};

pub use crate::timeline::TimelineEntry;
use crate::{
    outbox::{self, OutboxEvent},
    timeline::TimelineRows,
    Error, Result,
};

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

/// The open incidents whose resolve deadline is provisional (counted past the loaded holiday
/// calendar) and not yet passed, oldest first; dispatch recounts them when it loads a calendar.
pub async fn provisional_deadlines(conn: &mut PgConnection) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM incidents
         WHERE state ? 'provisional' AND status IN ('handling', 'whistled', 'accepted')
           AND NOT (state->>'overdue')::boolean
         ORDER BY reported_at, id",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Locks the incident's row (`FOR UPDATE`), waiting for another transaction that holds it, and
/// reads its state; `None` if there is no such incident.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Locked>> {
    let sql = format!("SELECT {LOCKED_COLUMNS} FROM incidents WHERE id = $1 FOR UPDATE");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| locked(&row)).transpose()
}

/// Locks those of the incidents that no other transaction holds (`SKIP LOCKED`), in one
/// statement: the timer loop claims incidents this way, so replicas never wait on each other or
/// on a command.
pub async fn try_lock_all(conn: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Locked>> {
    let sql = format!(
        "SELECT {LOCKED_COLUMNS} FROM incidents WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED"
    );
    let rows = sqlx::query(&sql).bind(ids).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| locked(row).map(|locked| (locked.id, locked)))
        .collect()
}

const LOCKED_COLUMNS: &str =
    "id, state, title, reporter_id, district_code, street_code, community_code";

fn locked(row: &sqlx::postgres::PgRow) -> Result<Locked> {
    let id: Uuid = row.get("id");
    let state: Option<serde_json::Value> = row.get("state");
    let state =
        state.ok_or_else(|| Error::Corrupt(format!("incident {id} has no engine state")))?;
    let state: Incident = serde_json::from_value(state)
        .map_err(|e| Error::Corrupt(format!("incident {id} state: {e}")))?;
    Ok(Locked {
        id,
        state,
        title: row.get("title"),
        reporter_id: row.get("reporter_id"),
        district_code: row.get("district_code"),
        street_code: row.get("street_code"),
        community_code: row.get("community_code"),
    })
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

/// One incident's new state and what its transition changed, for [`save_all`].
#[derive(Debug, Clone, Copy)]
pub struct Save<'a> {
    pub id: Uuid,
    pub state: &'a Incident,
    pub changes: &'a Changes,
}

/// Writes the new state, its projection, tasks, timers, timeline and events.
pub async fn save(
    conn: &mut PgConnection,
    id: Uuid,
    state: &Incident,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<()> {
    save_all(conn, &[Save { id, state, changes }], now).await
}

/// Writes several transitions with one statement per table, in their order: an incident saved
/// more than once ends in its last state, with every timeline entry and event, and each of its
/// timers as the last change to it left it (as if the saves had run one after another).
pub async fn save_all(
    conn: &mut PgConnection,
    saves: &[Save<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut last = HashMap::new();
    for (i, save) in saves.iter().enumerate() {
        last.insert(save.id, i);
    }
    let finals: Vec<&Save> = saves
        .iter()
        .enumerate()
        .filter(|(i, save)| last[&save.id] == *i)
        .map(|(_, save)| save)
        .collect();
    update_incidents(conn, &finals, now).await?;
    upsert_tasks(conn, &finals, now).await?;

    // The last change to each (incident, timer) decides: deleted (fired, cancelled) or due then.
    let mut timers: BTreeMap<(Uuid, Timer), Option<DateTime<Utc>>> = BTreeMap::new();
    for save in saves {
        let changes = save.changes;
        let gone = changes.fired.iter().chain(&changes.cancel);
        for timer in gone {
            timers.insert((save.id, *timer), None);
        }
        for (timer, at) in &changes.schedule {
            timers.insert((save.id, *timer), Some(*at));
        }
    }
    let (due, gone): (Vec<_>, Vec<_>) = timers.into_iter().partition(|(_, at)| at.is_some());
    if !gone.is_empty() {
        sqlx::query(
            "DELETE FROM timers t USING UNNEST($1::uuid[], $2::text[]) AS d(id, key)
             WHERE t.incident_id = d.id AND t.key = d.key",
        )
        .bind(gone.iter().map(|((id, _), _)| *id).collect::<Vec<_>>())
        .bind(
            gone.iter()
                .map(|((_, timer), _)| timer.key())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    let due: Vec<(Uuid, Timer, DateTime<Utc>)> = due
        .into_iter()
        .filter_map(|((id, timer), at)| at.map(|at| (id, timer, at)))
        .collect();
    schedule(conn, &due).await?;

    let mut timeline = TimelineRows::default();
    for save in saves {
        for entry in &save.changes.timeline {
            timeline.push(
                save.id,
                &entry.kind,
                &entry.actor_id,
                entry.at,
                entry.note.clone(),
                entry.data.clone(),
            );
        }
    }
    timeline.append(conn).await?;
    outbox::insert(conn, saves.iter().flat_map(|s| &s.changes.events)).await?;
    Ok(())
}

async fn update_incidents(
    conn: &mut PgConnection,
    saves: &[&Save<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    let states = saves
        .iter()
        .map(|save| {
            serde_json::to_value(save.state)
                .map_err(|e| Error::Corrupt(format!("serializing incident {}: {e}", save.id)))
        })
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(
        "UPDATE incidents i SET state = u.state, status = u.status, level = u.level, version = u.version,
             due_at = u.due_at, level_due_at = u.level_due_at, overdue = u.overdue,
             reopen_count = u.reopen_count, satisfaction = u.satisfaction, updated_at = $11,
             ledger_state = u.ledger_state, ledgered_at = u.ledgered_at,
             ledger_review_at = u.ledger_review_at,
             resolved_at = CASE WHEN u.status = 'resolved' AND i.status <> 'resolved' THEN $11 ELSE i.resolved_at END,
             closed_at = CASE WHEN u.status NOT IN ('closed', 'closed_unverified') THEN NULL
                              WHEN i.status IN ('closed', 'closed_unverified') THEN i.closed_at ELSE $11 END
         FROM UNNEST($1::uuid[], $2::jsonb[], $3::text[], $4::text[], $5::int8[], $6::timestamptz[],
                     $7::timestamptz[], $8::bool[], $9::int4[], $10::text[], $12::text[],
                     $13::timestamptz[], $14::timestamptz[])
             AS u(id, state, status, level, version, due_at, level_due_at, overdue, reopen_count, satisfaction,
                  ledger_state, ledgered_at, ledger_review_at)
         WHERE i.id = u.id",
    )
    .bind(saves.iter().map(|save| save.id).collect::<Vec<_>>())
    .bind(states)
    .bind(saves.iter().map(|s| s.state.status.as_str()).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.level.as_str()).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.version as i64).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.resolve_due).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.level_due).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.overdue).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.reopen_count as i32).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.satisfaction.map(|s| s.as_str())).collect::<Vec<_>>())
    .bind(now)
    .bind(saves.iter().map(|s| ledger_state(s.state)).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.ledger.as_ref().and_then(|l| l.entered_at)).collect::<Vec<_>>())
    .bind(saves.iter().map(|s| s.state.ledger.as_ref().map(|l| l.review_at)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `incidents.ledger_state`: where the case stands in the long-term ledger (挂账), if anywhere.
pub fn ledger_state(state: &Incident) -> Option<&'static str> {
    let ledger = state.ledger.as_ref()?;
    Some(match (ledger.entered_at, ledger.review_due) {
        (None, _) => "proposed",
        (Some(_), false) => "entered",
        (Some(_), true) => "review_due",
    })
}

async fn upsert_tasks(
    conn: &mut PgConnection,
    saves: &[&Save<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    let tasks: Vec<(&Save, &Task)> = saves
        .iter()
        .flat_map(|save| save.state.tasks.iter().map(move |task| (*save, task)))
        .collect();
    if tasks.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO tasks (incident_id, task_id, round, department_code, status, dispatched_at, accept_due_at,
             resolve_due_at, accepted_at, resolved_at, holder_id, return_reason, supervised, grid_code, disputed,
             dispute_to, role, updated_at)
         SELECT t.*, $18 FROM UNNEST($1::uuid[], $2::int4[], $3::int4[], $4::text[], $5::text[], $6::timestamptz[],
             $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[],
             $13::bool[], $14::text[], $15::bool[], $16::text[], $17::text[]) AS t
         ON CONFLICT (incident_id, task_id) DO UPDATE SET status = EXCLUDED.status, accepted_at = EXCLUDED.accepted_at,
             resolved_at = EXCLUDED.resolved_at, holder_id = EXCLUDED.holder_id, return_reason = EXCLUDED.return_reason,
             supervised = EXCLUDED.supervised, resolve_due_at = EXCLUDED.resolve_due_at,
             disputed = EXCLUDED.disputed, dispute_to = EXCLUDED.dispute_to, updated_at = EXCLUDED.updated_at
         WHERE (tasks.status, tasks.accepted_at, tasks.resolved_at, tasks.holder_id, tasks.return_reason, tasks.supervised,
                tasks.resolve_due_at, tasks.disputed, tasks.dispute_to)
             IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.accepted_at, EXCLUDED.resolved_at, EXCLUDED.holder_id,
                               EXCLUDED.return_reason, EXCLUDED.supervised, EXCLUDED.resolve_due_at,
                               EXCLUDED.disputed, EXCLUDED.dispute_to)",
    )
    .bind(tasks.iter().map(|(save, _)| save.id).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.id as i32).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.round as i32).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.department.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.status.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.dispatched_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.accept_due).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.resolve_due).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.accepted_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.resolved_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.holder.as_ref().map(|h| h.as_str())).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.return_reason.map(|r| r.as_str())).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.supervised).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(save, _)| save.state.area.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.disputed).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.dispute.as_ref().map(|d| d.proposed.as_str())).collect::<Vec<_>>())
    .bind(tasks.iter().map(|(_, t)| t.role.as_str()).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Upserts timers, one incident id per timer.
pub(crate) async fn schedule(
    conn: &mut PgConnection,
    timers: &[(Uuid, Timer, DateTime<Utc>)],
) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO timers (incident_id, key, due_at)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[])
         ON CONFLICT (incident_id, key) DO UPDATE SET due_at = EXCLUDED.due_at",
    )
    .bind(timers.iter().map(|t| t.0).collect::<Vec<_>>())
    .bind(timers.iter().map(|t| t.1.key()).collect::<Vec<_>>())
    .bind(timers.iter().map(|t| t.2).collect::<Vec<_>>())
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
/// Deadlines at the same instant come by incident, then timer key, so which of an incident's
/// equal deadlines fires first (say the level window before the SLA) never depends on where the
/// rows happen to lie on disk.
pub async fn due_timers(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueTimer>> {
    let rows = sqlx::query_as::<_, (Uuid, String, DateTime<Utc>)>(
        "SELECT incident_id, key, due_at FROM timers WHERE due_at <= $1
         ORDER BY due_at, incident_id, key LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(incident_id, key, due_at)| {
            let timer = timer(&key)?;
            Ok(DueTimer {
                incident_id,
                timer,
                due_at,
            })
        })
        .collect()
}

/// With their incidents locked: the deadlines of those of `timers` that are still pending
/// (another replica may have fired some already), locking their rows.
pub async fn pending_timers(
    conn: &mut PgConnection,
    timers: &[DueTimer],
) -> Result<HashMap<(Uuid, Timer), DateTime<Utc>>> {
    let rows = sqlx::query_as::<_, (Uuid, String, DateTime<Utc>)>(
        "SELECT t.incident_id, t.key, t.due_at
         FROM timers t JOIN UNNEST($1::uuid[], $2::text[]) AS d(id, key)
             ON t.incident_id = d.id AND t.key = d.key
         ORDER BY t.incident_id, t.key FOR UPDATE OF t",
    )
    .bind(timers.iter().map(|t| t.incident_id).collect::<Vec<_>>())
    .bind(timers.iter().map(|t| t.timer.key()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, key, at)| {
            let timer = timer(&key)?;
            Ok(((id, timer), at))
        })
        .collect()
}

fn timer(key: &str) -> Result<Timer> {
    Timer::from_key(key).ok_or_else(|| Error::Corrupt(format!("timer key {key:?}")))
}

/// The earliest pending deadline, for the wake-up loop.
pub async fn next_timer(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("SELECT min(due_at) FROM timers")
        .fetch_one(&mut *conn)
        .await?)
}

/// Timers past their deadline and not fired yet, and how late the oldest is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DueDepth {
    pub due: i64,
    /// Seconds from the oldest due timer's deadline to `now`; 0 when none is due.
    pub oldest_late_seconds: f64,
}

/// The [`DueDepth`] at `now` (on the `timers_due` index), for dispatch's sampled gauges.
pub async fn due_depth(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<DueDepth> {
    let (due, oldest) = sqlx::query_as::<_, (i64, Option<DateTime<Utc>>)>(
        "SELECT count(*), min(due_at) FROM timers WHERE due_at <= $1",
    )
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let oldest_late_seconds = oldest
        .and_then(|at| (now - at).to_std().ok())
        .map_or(0.0, |late| late.as_secs_f64());
    Ok(DueDepth {
        due,
        oldest_late_seconds,
    })
}

/// A command already applied under some command id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Applied {
    /// Its stored reply.
    pub reply: Vec<u8>,
    /// Who sent it, and with which verb.
    pub actor_id: String,
    pub verb: String,
}

/// The command already applied under `command_id`, if any.
pub async fn command_reply(conn: &mut PgConnection, command_id: &str) -> Result<Option<Applied>> {
    Ok(
        sqlx::query_as("SELECT reply, actor_id, verb FROM commands WHERE command_id = $1")
            .bind(command_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Records a command's reply, in the transaction that applied it. People's commands
/// (`onboard_person`…) concern no incident.
pub async fn record_command(
    conn: &mut PgConnection,
    command_id: &str,
    incident_id: Option<Uuid>,
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
