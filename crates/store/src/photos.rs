//! Photos kept as long as the policy's `[retention] photos` allows, and erased on a person's
//! request (docs/privacy.md). A photo is named by its hash and may be shown by several incidents
//! (`photo_refs`), so it is erased only once every incident showing it settled long enough.
//!
//! An erasure is two steps: in the database (a `photo_erasures` row, from which on the photo is
//! not served, a `privacy.erased` entry on the timeline of every incident showing it and a
//! `photos.erase` entry on the audit log, in one transaction), then its bytes leave the object
//! store bucket, which dispatch does after the commit and retries until it has
//! ([`to_remove`], [`removed`]): at once for a request (its commit notifies [`ERASED_CHANNEL`]),
//! at dispatch's next retention pass for an erasure by age. The incidents, their reports and the rest of their timelines stay
//! as they were, so no rate changes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    retention::ERASED,
    timeline::TimelineRows,
    Result,
};

/// The statuses of a settled incident: closed, closed unverified, or merged as a duplicate.
const SETTLED: &str = "('closed', 'closed_unverified', 'duplicate')";

/// Whether reports stored before photo references were kept still wait to be indexed: until
/// none does, no photo may be erased by age (one of them could show it on an open incident).
pub async fn index_pending(pool: &PgPool) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM photo_refs_pending)")
            .fetch_one(pool)
            .await?,
    )
}

/// Records the photos of up to `limit` reports that wait to be indexed, reading them from each
/// report's payload with `photo_ids_of`; returns how many reports were indexed. Replicas may run
/// it at once: each takes reports the others do not hold.
pub async fn index_reports(
    pool: &PgPool,
    limit: u32,
    photo_ids_of: impl Fn(&str, &[u8]) -> Result<Vec<String>>,
) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(String, Option<Uuid>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT p.report_id, r.incident_id, r.payload
         FROM photo_refs_pending p LEFT JOIN reports r ON r.report_id = p.report_id
         ORDER BY p.report_id LIMIT $1 FOR UPDATE OF p SKIP LOCKED",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let (mut photos, mut incidents, mut reports) = (Vec::new(), Vec::new(), Vec::new());
    for (report_id, incident, payload) in &rows {
        let (Some(incident), Some(payload)) = (incident, payload) else {
            continue;
        };
        for photo in photo_ids_of(report_id, payload)? {
            photos.push(photo);
            incidents.push(*incident);
            reports.push(report_id.clone());
        }
    }
    sqlx::query(
        "INSERT INTO photo_refs (photo_id, incident_id, report_id)
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&photos)
    .bind(&incidents)
    .bind(&reports)
    .execute(&mut *tx)
    .await?;
    let done: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    sqlx::query("DELETE FROM photo_refs_pending WHERE report_id = ANY($1)")
        .bind(&done)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Up to `limit` photos not erased yet whose every incident settled before `settled_before`.
pub async fn due(pool: &PgPool, settled_before: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT r.photo_id FROM photo_refs r JOIN incidents i ON i.id = r.incident_id
         WHERE NOT EXISTS (SELECT 1 FROM photo_erasures e WHERE e.photo_id = r.photo_id)
         GROUP BY r.photo_id
         HAVING bool_and(i.status IN {SETTLED} AND coalesce(i.closed_at, i.updated_at) < $1)
         ORDER BY r.photo_id LIMIT $2"
    ))
    .bind(settled_before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// Notified at the commit of a person's request that erased photos: dispatch's retention job
/// takes their bytes out of the bucket at once instead of at its next pass.
pub const ERASED_CHANNEL: &str = "whistle_photos_erased";

/// Why photos are erased.
#[derive(Debug, Clone, Copy)]
pub enum Why {
    /// Past their retention: only photos whose every incident settled before this, and an
    /// incident another transaction holds is skipped (the next pass takes its photos).
    Retention { settled_before: DateTime<Utc> },
    /// A person's request: the photos named, whatever their incidents' state; an incident
    /// another transaction holds is waited for.
    Request,
}

/// What an erasure erased: the photos, and each incident that showed any with those it showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Erased {
    pub photos: Vec<String>,
    pub incidents: Vec<(Uuid, Vec<String>)>,
}

/// Erases `photos` in the database (see the module's doc): each incident showing any gets a
/// `privacy.erased` entry on its timeline saying `note` and how many, and a `photos.erase` entry
/// on the audit log. A photo no incident shows, or one erased already, is left alone, so this
/// runs twice safely and replicas may run it at once.
pub async fn erase(
    pool: &PgPool,
    photos: &[String],
    why: Why,
    actor: &Actor,
    note: &str,
    at: DateTime<Utc>,
) -> Result<Erased> {
    if photos.is_empty() {
        return Ok(Erased::default());
    }
    let mut tx = pool.begin().await?;
    // The incidents' locks first, as every timeline writer takes them; with them held no
    // incident showing these photos changes state until the commit.
    let (lock, settled_before) = match why {
        Why::Retention { settled_before } => ("FOR UPDATE SKIP LOCKED", Some(settled_before)),
        Why::Request => ("FOR UPDATE", None),
    };
    let locked: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM incidents
         WHERE id IN (SELECT incident_id FROM photo_refs WHERE photo_id = ANY($1))
         ORDER BY id {lock}"
    ))
    .bind(photos)
    .fetch_all(&mut *tx)
    .await?;
    // Under the locks: the photos whose every incident is locked here and, by age, settled long
    // enough; then one tombstone each, which a replica that got there first already wrote.
    let erased: Vec<String> = sqlx::query_scalar(&format!(
        "WITH eligible AS (
             SELECT r.photo_id FROM photo_refs r JOIN incidents i ON i.id = r.incident_id
             WHERE r.photo_id = ANY($1)
             GROUP BY r.photo_id
             HAVING bool_and(i.id = ANY($2))
                AND ($3::timestamptz IS NULL
                     OR bool_and(i.status IN {SETTLED} AND coalesce(i.closed_at, i.updated_at) < $3)))
         INSERT INTO photo_erasures (photo_id, erased_at, erased_by, why)
         SELECT photo_id, $4, $5, $6 FROM eligible
         ON CONFLICT (photo_id) DO NOTHING
         RETURNING photo_id"
    ))
    .bind(photos)
    .bind(&locked)
    .bind(settled_before)
    .bind(at)
    .bind(by(actor))
    .bind(note)
    .fetch_all(&mut *tx)
    .await?;
    let incidents: Vec<(Uuid, String, Vec<String>)> = sqlx::query_as(
        "SELECT r.incident_id, i.grid_code, array_agg(DISTINCT r.photo_id ORDER BY r.photo_id)
         FROM photo_refs r JOIN incidents i ON i.id = r.incident_id
         WHERE r.photo_id = ANY($1)
         GROUP BY r.incident_id, i.grid_code ORDER BY r.incident_id",
    )
    .bind(&erased)
    .fetch_all(&mut *tx)
    .await?;
    let by = by(actor);
    let mut rows = TimelineRows::default();
    let mut entries = Vec::with_capacity(incidents.len());
    for (incident, grid, shown) in &incidents {
        rows.push(
            *incident,
            ERASED,
            by,
            at,
            format!("{note}：删除照片 {} 张", shown.len()),
            Some(serde_json::json!({ "erased_photos": shown })),
        );
        entries.push(audit::Entry {
            action: audit::action::PHOTOS_ERASE,
            target: incident.to_string(),
            area_code: grid.clone(),
            before: Some(serde_json::json!({ "photos": shown })),
            after: Some(serde_json::json!({ "photos": [], "why": note })),
        });
    }
    rows.append(&mut tx).await?;
    audit::record(&mut tx, actor, at, &entries).await?;
    if matches!(why, Why::Request) && !erased.is_empty() {
        // Sent at the commit, so the bytes are looked for only once the erasure is there to see.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(ERASED_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Erased {
        photos: erased,
        incidents: incidents
            .into_iter()
            .map(|(incident, _, shown)| (incident, shown))
            .collect(),
    })
}

/// On the timeline a person is named; a service acting on its own is the system.
fn by(actor: &Actor) -> &str {
    if actor.door == "cli" {
        actor.name.as_str()
    } else {
        "system"
    }
}

/// Up to `limit` erased photos whose bytes are still to leave the bucket, oldest first.
pub async fn to_remove(pool: &PgPool, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT photo_id FROM photo_erasures WHERE removed_at IS NULL
         ORDER BY erased_at, photo_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// Records that the bytes of `photos` left the bucket.
pub async fn removed(pool: &PgPool, photos: &[String], at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE photo_erasures SET removed_at = $2
         WHERE photo_id = ANY($1) AND removed_at IS NULL",
    )
    .bind(photos)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// A photo's erasure, as a reader is told it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Erasure {
    pub photo_id: String,
    pub erased_at: DateTime<Utc>,
    /// The retention period that ran out, or the request's reference.
    pub why: String,
}

/// The erasures of those of `photos` that were erased.
pub async fn erasures(pool: &PgPool, photos: &[String]) -> Result<Vec<Erasure>> {
    if photos.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT photo_id, erased_at, why FROM photo_erasures WHERE photo_id = ANY($1)
         ORDER BY photo_id",
    )
    .bind(photos)
    .fetch_all(pool)
    .await?)
}

/// A photo an incident shows, for a person's request: which report showed it (empty for a
/// resolution's photo), and its erasure if it was erased.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Shown {
    pub incident_id: Uuid,
    pub photo_id: String,
    pub report_id: String,
    pub title: String,
    pub status: String,
    pub grid_code: String,
    pub erased_at: Option<DateTime<Utc>>,
}

/// The photos `incidents` show, by incident then photo.
pub async fn shown_by(pool: &PgPool, incidents: &[Uuid]) -> Result<Vec<Shown>> {
    Ok(sqlx::query_as(
        "SELECT r.incident_id, r.photo_id, r.report_id, i.title, i.status, i.grid_code,
                e.erased_at
         FROM photo_refs r JOIN incidents i ON i.id = r.incident_id
         LEFT JOIN photo_erasures e ON e.photo_id = r.photo_id
         WHERE r.incident_id = ANY($1)
         ORDER BY r.incident_id, r.photo_id, r.report_id",
    )
    .bind(incidents)
    .fetch_all(pool)
    .await?)
}
