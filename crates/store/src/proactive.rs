//! 主动治理 (docs/proactive.md): the month's stored hotspot proposal, the report history it is
//! computed from, and the insert of a proactive case — an incident no report opened — in the
//! adopting command's transaction. The query service reads proposals too, in read-only sessions.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;
use whistle_domain::{
    hotspot::{Month, Proposal, Record},
    incident::Incident,
    policy::Policy,
    AreaCode, Level,
};

use crate::{Error, Result};

/// The reports with what the hotspot analysis needs of their incidents; `WHERE` follows.
pub const HISTORY: &str = "SELECT r.report_id, r.incident_id::text AS incident_id, r.received_at,
        r.grid_code, r.category, i.lat, i.lon, i.created_at, i.closed_at, i.level
    FROM reports r JOIN incidents i ON i.id = r.incident_id";

/// Every report received in `[from, to)` with its incident, for the city-wide analysis.
pub async fn history(
    conn: &mut PgConnection,
    policy: &Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Record>> {
    let rows = sqlx::query(&format!(
        "{HISTORY} WHERE r.received_at >= $1 AND r.received_at < $2"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    records(&rows, policy)
}

/// The analysis' records of rows read with [`HISTORY`].
pub fn records(rows: &[sqlx::postgres::PgRow], policy: &Policy) -> Result<Vec<Record>> {
    rows.iter()
        .map(|row| {
            let report_id: String = row.try_get("report_id")?;
            let grid: String = row.try_get("grid_code")?;
            let grid: AreaCode = grid
                .parse()
                .map_err(|e| Error::Corrupt(format!("report {report_id} grid: {e}")))?;
            let category: String = row.try_get("category")?;
            let level: String = row.try_get("level")?;
            let level: Level = level
                .parse()
                .map_err(|e| Error::Corrupt(format!("report {report_id} incident level: {e}")))?;
            // A category the running policy no longer has keeps the incident's level as its own.
            let first_level = policy.category(&category).map_or(level, |c| c.first_level);
            let lat: Option<f64> = row.try_get("lat")?;
            let lon: Option<f64> = row.try_get("lon")?;
            Ok(Record {
                incident_id: row.try_get("incident_id")?,
                at: row.try_get("received_at")?,
                grid,
                point: lat.zip(lon),
                opened_at: row.try_get("created_at")?,
                closed_at: row.try_get("closed_at")?,
                first_level,
                level,
                category,
                report_id,
            })
        })
        .collect()
}

/// The stored proposal of `month`, if the month has one.
pub async fn proposal(conn: &mut PgConnection, month: Month) -> Result<Option<Proposal>> {
    let stored: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT proposal FROM hotspot_proposals WHERE month = $1")
            .bind(month.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    stored
        .map(|json| {
            serde_json::from_value(json)
                .map_err(|e| Error::Corrupt(format!("hotspot proposal {month}: {e}")))
        })
        .transpose()
}

/// Stores `proposal` as its month's unless the month has one already, and returns the month's
/// stored proposal: the first one stored stays, so every reader sees the same list.
pub async fn store_proposal(
    conn: &mut PgConnection,
    proposal: &Proposal,
    policy_version: &str,
    now: DateTime<Utc>,
) -> Result<Proposal> {
    let json = serde_json::to_value(proposal)
        .map_err(|e| Error::Corrupt(format!("serializing proposal {}: {e}", proposal.month)))?;
    sqlx::query(
        "INSERT INTO hotspot_proposals (month, computed_at, policy_version, proposal)
         VALUES ($1, $2, $3, $4) ON CONFLICT (month) DO NOTHING",
    )
    .bind(proposal.month.to_string())
    .bind(now)
    .bind(policy_version)
    .bind(json)
    .execute(&mut *conn)
    .await?;
    proposal_stored(conn, proposal.month).await
}

async fn proposal_stored(conn: &mut PgConnection, month: Month) -> Result<Proposal> {
    self::proposal(conn, month)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("hotspot proposal {month} vanished")))
}

/// Serializes adoptions of one topic until the transaction ends, so two operators adopting it at
/// once open one case. Taken before anything else of an adoption: no other lock is held then.
pub async fn lock_topic(conn: &mut PgConnection, topic_key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('whistle.adopt:' || $1, 0))")
        .bind(topic_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The open proactive case of the topic, if one is.
pub async fn open_case(conn: &mut PgConnection, topic_key: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM incidents
         WHERE origin = 'proactive' AND topic_key = $1
           AND status IN ('handling', 'whistled', 'accepted', 'resolved')
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(topic_key)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A proactive case's row: what intake takes from a report, taken from the topic instead.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub id: Uuid,
    pub state: &'a Incident,
    pub title: &'a str,
    pub description: &'a str,
    /// The topic's centre, when it is a located place.
    pub point: Option<(f64, f64)>,
    /// The adopting operator: the case's "reporter" on the screens.
    pub adopted_by: &'a str,
    pub policy_version: &'a str,
    pub topic_key: &'a str,
    pub now: DateTime<Utc>,
}

/// Inserts the case's incident row with its first state; the caller then saves the adoption's
/// tasks, timers, timeline and events with [`crate::incidents::save`] as for any transition.
pub async fn insert(conn: &mut PgConnection, case: &NewCase<'_>) -> Result<()> {
    let state = serde_json::to_value(case.state)
        .map_err(|e| Error::Corrupt(format!("serializing incident {}: {e}", case.id)))?;
    let area = &case.state.area;
    let at = |level: Level| {
        area.at_level(level)
            .map(|code| code.to_string())
            .ok_or_else(|| Error::Invalid(format!("{area} is not a grid")))
    };
    let (lat, lon) = case.point.unzip();
    sqlx::query(
        "INSERT INTO incidents (id, version, status, level, category, urgency, title, description,
             district_code, street_code, community_code, grid_code, lat, lon, reporter_id,
             report_count, policy_version, reported_at, created_at, updated_at, due_at, level_due_at,
             state, origin, topic_key)
         VALUES ($1, $2, $3, $4, $5, 'normal', $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15, $16,
             $16, $16, $17, $18, $19, 'proactive', $20)",
    )
    .bind(case.id)
    .bind(case.state.version as i64)
    .bind(case.state.status.as_str())
    .bind(case.state.level.as_str())
    .bind(case.state.category.as_str())
    .bind(case.title)
    .bind(case.description)
    .bind(at(Level::District)?)
    .bind(at(Level::Street)?)
    .bind(at(Level::Community)?)
    .bind(area.as_str())
    .bind(lat)
    .bind(lon)
    .bind(case.adopted_by)
    .bind(case.policy_version)
    .bind(case.now)
    .bind(case.state.resolve_due)
    .bind(case.state.level_due)
    .bind(state)
    .bind(case.topic_key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
