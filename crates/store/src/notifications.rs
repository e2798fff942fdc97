//! Notifications: who is told about which event, by which channel, and whether it reached them.
//!
//! Dispatch writes one row per (event, recipient, channel) as it reads an event (so a redelivered
//! event adds nothing), then delivers the outbound ones. A row is claimed by pushing its next
//! attempt forward (no transaction stays open across a send), so replicas share the queue and a
//! crash mid-send only means the row is tried again after the claim runs out. Deliveries,
//! failures and hand-overs to a deputy go on the incident's timeline, under the incident's lock
//! like every other timeline entry.

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    timeline::TimelineRows,
    Result,
};

/// A channel a notification travels by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The person's list in the web console (with sound and the browser's notifications).
    Console,
    /// A text message through the SMS gateway, to the person's phone.
    Sms,
    /// The department's group robot (企业微信 / 钉钉), mentioning the people concerned.
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Console => "console",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Result<Channel> {
        match s {
            "console" => Ok(Channel::Console),
            "sms" => Ok(Channel::Sms),
            "webhook" => Ok(Channel::Webhook),
            other => Err(crate::Error::Corrupt(format!(
                "notification channel {other:?}"
            ))),
        }
    }
}

/// Someone a notification may go to, with what sending to them needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub person_id: String,
    pub name: String,
    pub phone: String,
    /// Local wall-clock start and end of their quiet hours (the end may be past midnight).
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    pub deputy_id: Option<String>,
}

const RECIPIENT_COLUMNS: &str = "id, name, phone, quiet_start, quiet_end, deputy_id";
type RecipientRow = (
    String,
    String,
    String,
    Option<NaiveTime>,
    Option<NaiveTime>,
    Option<String>,
);

fn recipient((person_id, name, phone, start, end, deputy_id): RecipientRow) -> Recipient {
    Recipient {
        person_id,
        name,
        phone,
        quiet: start.zip(end),
        deputy_id,
    }
}

/// The liaisons of a department, in id order.
pub async fn liaisons(pool: &PgPool, department: &str) -> Result<Vec<Recipient>> {
    let rows: Vec<RecipientRow> = sqlx::query_as(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM people
         WHERE role = 'liaison' AND department_code = $1 AND left_at IS NULL ORDER BY id"
    ))
    .bind(department)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(recipient).collect())
}

/// Who handles a unit's level: its staff (handlers), or for a grid its grid workers.
pub async fn unit_staff(pool: &PgPool, unit: &str) -> Result<Vec<Recipient>> {
    let rows: Vec<RecipientRow> = sqlx::query_as(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM people
         WHERE ((role = 'handler' AND area_code = $1) OR (role = 'grid_worker' AND grid_code = $1))
           AND left_at IS NULL
         ORDER BY id"
    ))
    .bind(unit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(recipient).collect())
}

/// The leaders paired with any of `areas` (an incident's street and community) who have not
/// left, each once, in id order.
pub async fn paired_leaders(pool: &PgPool, areas: &[String]) -> Result<Vec<Recipient>> {
    let rows: Vec<RecipientRow> = sqlx::query_as(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM people
         WHERE role = 'leader' AND left_at IS NULL
           AND id IN (SELECT leader_id FROM leader_pairings WHERE area_code = ANY($1))
         ORDER BY id"
    ))
    .bind(areas)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(recipient).collect())
}

/// A person who has not left (a deputy, a recipient).
pub async fn person(pool: &PgPool, id: &str) -> Result<Option<Recipient>> {
    let row: Option<RecipientRow> = sqlx::query_as(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM people WHERE id = $1 AND left_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(recipient))
}

/// Sets a person's quiet hours and deputy (`None` clears them), on the audit log
/// (`people.notify`, the settings before and after). False if there is no such person.
pub async fn set_preferences(
    pool: &PgPool,
    person: &str,
    quiet: Option<(NaiveTime, NaiveTime)>,
    deputy: Option<&str>,
    actor: &Actor,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The settings before, locked, and the person's area (a liaison's is its department's).
    let before = sqlx::query(
        "SELECT p.quiet_start, p.quiet_end, p.deputy_id,
                coalesce(p.area_code, p.grid_code, d.area_code, '') AS area
         FROM people p LEFT JOIN departments d ON d.code = p.department_code
         WHERE p.id = $1 FOR UPDATE OF p",
    )
    .bind(person)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return Ok(false);
    };
    let settings = |start: Option<NaiveTime>, end: Option<NaiveTime>, deputy: Option<&str>| {
        serde_json::json!({
            "quiet_start": start.map(|t| t.format("%H:%M").to_string()),
            "quiet_end": end.map(|t| t.format("%H:%M").to_string()),
            "deputy_id": deputy,
        })
    };
    let before_json = settings(
        before.try_get("quiet_start")?,
        before.try_get("quiet_end")?,
        before.try_get::<Option<String>, _>("deputy_id")?.as_deref(),
    );
    sqlx::query("UPDATE people SET quiet_start = $2, quiet_end = $3, deputy_id = $4 WHERE id = $1")
        .bind(person)
        .bind(quiet.map(|q| q.0))
        .bind(quiet.map(|q| q.1))
        .bind(deputy)
        .execute(&mut *tx)
        .await?;
    let entry = audit::Entry {
        action: audit::action::PEOPLE_NOTIFY,
        target: person.to_owned(),
        area_code: before.try_get("area")?,
        before: Some(before_json),
        after: Some(settings(quiet.map(|q| q.0), quiet.map(|q| q.1), deputy)),
    };
    audit::record(&mut tx, actor, Utc::now(), &[entry]).await?;
    tx.commit().await?;
    Ok(true)
}

/// A notification to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub id: Uuid,
    pub event_id: Uuid,
    /// A person id, or the department code for a group robot.
    pub recipient: String,
    pub channel: Channel,
    pub person_id: Option<String>,
    pub kind: String,
    pub incident_id: Option<Uuid>,
    pub task_id: Option<i32>,
    pub department_code: Option<String>,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// When to send it; `None` for a console row, delivered as it is written.
    pub send_at: Option<DateTime<Utc>>,
    /// The row it stands in for, when it goes to a deputy.
    pub deputy_of: Option<Uuid>,
}

/// Writes notifications, skipping any already written for the same event, recipient and
/// channel. Returns how many were new.
pub async fn insert(conn: &mut PgConnection, rows: &[NewNotification]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&NewNotification) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, event_id, recipient, channel, person_id, kind, incident_id,
             task_id, department_code, title, body, created_at, status, next_attempt_at,
             delivered_at, deputy_of)
         SELECT t.id, t.event_id, t.recipient, t.channel, t.person_id, t.kind, t.incident_id,
             t.task_id, t.department_code, t.title, t.body, t.created_at,
             CASE WHEN t.send_at IS NULL THEN 'delivered' ELSE 'pending' END,
             t.send_at, CASE WHEN t.send_at IS NULL THEN t.created_at END, t.deputy_of
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::uuid[], $8::int4[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
             $13::timestamptz[], $14::uuid[])
             AS t(id, event_id, recipient, channel, person_id, kind, incident_id, task_id,
                  department_code, title, body, created_at, send_at, deputy_of)
         ON CONFLICT (event_id, recipient, channel) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(col(|r| Some(r.recipient.clone())))
    .bind(col(|r| Some(r.channel.as_str().to_owned())))
    .bind(col(|r| r.person_id.clone()))
    .bind(col(|r| Some(r.kind.clone())))
    .bind(rows.iter().map(|r| r.incident_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.task_id).collect::<Vec<_>>())
    .bind(col(|r| r.department_code.clone()))
    .bind(col(|r| Some(r.title.clone())))
    .bind(col(|r| Some(r.body.clone())))
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.send_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.deputy_of).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// The id of the row written for (event, recipient, channel), and whether its deputy was told.
pub async fn stored(
    pool: &PgPool,
    event_id: Uuid,
    recipient: &str,
    channel: Channel,
) -> Result<Option<(Uuid, bool)>> {
    Ok(sqlx::query_as(
        "SELECT id, escalated_at IS NOT NULL FROM notifications
         WHERE event_id = $1 AND recipient = $2 AND channel = $3",
    )
    .bind(event_id)
    .bind(recipient)
    .bind(channel.as_str())
    .fetch_optional(pool)
    .await?)
}

/// An outbound notification claimed for one attempt: the row as written (`send_at`: the claim's
/// time) and its delivery so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub row: NewNotification,
    /// The person it is for, as the register has them now (`None` for a group robot, or a
    /// person no longer registered).
    pub person: Option<Recipient>,
    /// Attempts including this one.
    pub attempts: i32,
    pub escalated: bool,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: Uuid,
    event_id: Uuid,
    recipient: String,
    channel: String,
    kind: String,
    incident_id: Option<Uuid>,
    task_id: Option<i32>,
    department_code: Option<String>,
    title: String,
    body: String,
    created_at: DateTime<Utc>,
    attempts: i32,
    escalated: bool,
    deputy_of: Option<Uuid>,
    person_id: Option<String>,
    registered: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    quiet_start: Option<NaiveTime>,
    quiet_end: Option<NaiveTime>,
    deputy_id: Option<String>,
}

/// Claims up to `limit` outbound notifications due at `now`, oldest first, for `claim` (after
/// which another attempt may take them: the sender died or hung).
pub async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    claim: chrono::TimeDelta,
    limit: i64,
) -> Result<Vec<Due>> {
    let rows: Vec<DueRow> = sqlx::query_as(
        "WITH claimed AS (
             UPDATE notifications n SET next_attempt_at = $1 + $2, attempts = n.attempts + 1
             WHERE n.id = ANY(ARRAY(
                 SELECT id FROM notifications
                 WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED))
             RETURNING n.*)
         SELECT c.id, c.event_id, c.recipient, c.channel, c.kind, c.incident_id, c.task_id,
                c.department_code, c.title, c.body, c.created_at, c.attempts,
                c.escalated_at IS NOT NULL AS escalated, c.deputy_of, c.person_id, p.id AS registered, p.name,
                p.phone, p.quiet_start, p.quiet_end, p.deputy_id
         FROM claimed c LEFT JOIN people p ON p.id = c.person_id
         ORDER BY c.created_at",
    )
    .bind(now)
    .bind(claim)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let person = match (r.registered, r.name, r.phone) {
                (Some(person_id), Some(name), Some(phone)) => Some(Recipient {
                    person_id,
                    name,
                    phone,
                    quiet: r.quiet_start.zip(r.quiet_end),
                    deputy_id: r.deputy_id,
                }),
                _ => None,
            };
            Ok(Due {
                row: NewNotification {
                    id: r.id,
                    event_id: r.event_id,
                    recipient: r.recipient,
                    channel: Channel::parse(&r.channel)?,
                    person_id: r.person_id,
                    kind: r.kind,
                    incident_id: r.incident_id,
                    task_id: r.task_id,
                    department_code: r.department_code,
                    title: r.title,
                    body: r.body,
                    created_at: r.created_at,
                    send_at: Some(now),
                    deputy_of: r.deputy_of,
                },
                person,
                attempts: r.attempts,
                escalated: r.escalated,
            })
        })
        .collect()
}

/// A timeline entry about a notification (`notification.delivered`, `notification.failed`,
/// `notification.escalated`).
pub struct Entry<'a> {
    pub incident_id: Uuid,
    pub kind: &'a str,
    pub at: DateTime<Utc>,
    pub note: String,
}

/// Appends `entry` to its incident's timeline under the incident's lock, in `conn`'s transaction.
/// Callers lock their notification row first and the incident second; the engine never locks
/// notifications, so no order of theirs can deadlock with this one.
async fn append(conn: &mut PgConnection, entry: Entry<'_>) -> Result<()> {
    sqlx::query("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE")
        .bind(entry.incident_id)
        .execute(&mut *conn)
        .await?;
    let mut rows = TimelineRows::default();
    rows.push(
        entry.incident_id,
        entry.kind,
        "system",
        entry.at,
        entry.note,
        None,
    );
    rows.append(conn).await
}

/// Records a delivery (and its timeline entry, if it concerns an incident). False if the row was
/// no longer pending (another attempt finished it first), in which case nothing is written.
pub async fn delivered(
    pool: &PgPool,
    id: Uuid,
    at: DateTime<Utc>,
    entry: Option<Entry<'_>>,
) -> Result<bool> {
    finish(pool, id, "delivered", at, None, entry).await
}

/// Gives a notification up after its last attempt.
pub async fn failed(
    pool: &PgPool,
    id: Uuid,
    at: DateTime<Utc>,
    error: &str,
    entry: Option<Entry<'_>>,
) -> Result<bool> {
    finish(pool, id, "failed", at, Some(error), entry).await
}

async fn finish(
    pool: &PgPool,
    id: Uuid,
    status: &str,
    at: DateTime<Utc>,
    error: Option<&str>,
    entry: Option<Entry<'_>>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE notifications
         SET status = $2, next_attempt_at = NULL,
             delivered_at = CASE WHEN $2 = 'delivered' THEN $3 END,
             last_error = coalesce($4, last_error)
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .bind(error)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    if let Some(entry) = entry {
        append(&mut tx, entry).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A failed attempt with more to come: the next one at `next`.
pub async fn retry(pool: &PgPool, id: Uuid, next: DateTime<Utc>, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE notifications SET next_attempt_at = $2, last_error = $3
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(next)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Hands a notification to a deputy: writes the deputy's rows and marks the original as
/// escalated, once (false, writing nothing, if it already was).
pub async fn escalate(
    pool: &PgPool,
    id: Uuid,
    rows: &[NewNotification],
    entry: Option<Entry<'_>>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let marked = sqlx::query(
        "UPDATE notifications SET escalated_at = $2 WHERE id = $1 AND escalated_at IS NULL",
    )
    .bind(id)
    .bind(rows.first().map(|r| r.created_at))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if marked == 0 {
        return Ok(false);
    }
    if let Some(entry) = entry {
        append(&mut tx, entry).await?;
    }
    insert(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(true)
}

/// A notification in a person's console list.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: Uuid,
    pub kind: String,
    pub incident_id: Option<Uuid>,
    pub task_id: Option<i32>,
    pub department_code: Option<String>,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    /// It came to them as a deputy.
    pub as_deputy: bool,
}

/// A person's console notifications, newest first (at most `limit`, created before `before` if
/// given), and how many of all of theirs are unread.
pub async fn list(
    pool: &PgPool,
    person: &str,
    limit: i64,
    before: Option<DateTime<Utc>>,
) -> Result<(Vec<Listed>, i64)> {
    type Row = (
        Uuid,
        String,
        Option<Uuid>,
        Option<i32>,
        Option<String>,
        String,
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        bool,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, kind, incident_id, task_id, department_code, title, body, created_at, read_at,
                deputy_of IS NOT NULL
         FROM notifications
         WHERE person_id = $1 AND channel = 'console' AND ($3::timestamptz IS NULL OR created_at < $3)
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(person)
    .bind(limit)
    .bind(before)
    .fetch_all(pool)
    .await?;
    let unread: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications
         WHERE person_id = $1 AND channel = 'console' AND read_at IS NULL",
    )
    .bind(person)
    .fetch_one(pool)
    .await?;
    let listed = rows
        .into_iter()
        .map(|r| Listed {
            id: r.0,
            kind: r.1,
            incident_id: r.2,
            task_id: r.3,
            department_code: r.4,
            title: r.5,
            body: r.6,
            created_at: r.7,
            read_at: r.8,
            as_deputy: r.9,
        })
        .collect();
    Ok((listed, unread))
}

/// Marks a person's console notifications read: those named, or all when `ids` is empty. Only
/// their own; returns how many changed. Opened read-write explicitly: the query service's sessions
/// are read-only by default, and this is one of the two things it writes.
pub async fn mark_read(
    pool: &PgPool,
    person: &str,
    ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ WRITE")
        .execute(&mut *tx)
        .await?;
    let marked = sqlx::query(
        "UPDATE notifications SET read_at = $3
         WHERE person_id = $1 AND channel = 'console' AND read_at IS NULL
           AND (cardinality($2::uuid[]) = 0 OR id = ANY($2))",
    )
    .bind(person)
    .bind(ids)
    .bind(at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(marked)
}
