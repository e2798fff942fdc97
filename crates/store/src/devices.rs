//! The device registry (issue 21, item 5): sensors and video-analytics systems registered per
//! grid by `whistle devices register`, on the audit log; a device's credential is a `device` token
//! naming it (`whistle token create --role device --device ID`). docs/devices.md.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use whistle_domain::{devices::DeviceKind, AreaCode, Level};

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// The audit action of a registration.
pub const REGISTER: &str = "devices.register";
/// The audit action of an operator clearing a device's maintenance flag.
pub const CLEAR_FLAG: &str = "devices.clear_flag";
/// The notification a change of the registry sends (a trigger on `devices`, migration 36).
pub const CHANNEL: &str = "whistle_devices";

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub grid: AreaCode,
    /// `active`, `maintenance` or `retired`.
    pub status: String,
    pub label: String,
    pub registered_at: DateTime<Utc>,
    /// When intake flagged it for maintenance (it flapped), and why; cleared by an operator.
    pub flagged_at: Option<DateTime<Utc>>,
    pub flag_reason: Option<String>,
    /// Its readings before this are forgotten by intake's rules (the flag was cleared then).
    pub history_from: Option<DateTime<Utc>>,
}

/// Registers a device in a grid of the org; an id already registered is refused.
pub async fn register(
    pool: &PgPool,
    id: &str,
    kind: DeviceKind,
    grid: &AreaCode,
    label: &str,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Device> {
    let invalid = |m: String| Err(Error::Invalid(m));
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return invalid(format!(
            "device id {id:?}: 1–64 characters of A-Z a-z 0-9 . _ : -"
        ));
    }
    if grid.level() != Level::Grid {
        return invalid(format!("a device reports from a grid, not {grid}"));
    }
    let mut tx = pool.begin().await?;
    let known: Option<String> = sqlx::query_scalar("SELECT code FROM org_units WHERE code = $1")
        .bind(grid.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return invalid(format!("no grid {grid} (is the org tree seeded?)"));
    }
    let inserted = sqlx::query(
        "INSERT INTO devices (id, kind, grid_code, label, registered_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind.slug())
    .bind(grid.as_str())
    .bind(label)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return invalid(format!("device {id} is already registered"));
    }
    let device = Device {
        id: id.to_owned(),
        kind,
        grid: grid.clone(),
        status: "active".into(),
        label: label.to_owned(),
        registered_at: now,
        flagged_at: None,
        flag_reason: None,
        history_from: None,
    };
    let entry = Entry {
        action: REGISTER,
        target: id.to_owned(),
        area_code: grid.to_string(),
        before: None,
        after: Some(serde_json::json!({
            "kind": kind.slug(), "grid_code": grid.as_str(), "label": label,
        })),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(device)
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

const COLUMNS: &str =
    "id, kind, grid_code, status, label, registered_at, flagged_at, flag_reason, history_from";

fn device(row: Row) -> Result<Device> {
    let (id, kind, grid, status, label, registered_at, flagged_at, flag_reason, history_from) = row;
    Ok(Device {
        kind: DeviceKind::from_slug(&kind)
            .ok_or_else(|| Error::Corrupt(format!("devices.kind {kind:?} of {id}")))?,
        grid: grid
            .parse()
            .map_err(|e| Error::Corrupt(format!("devices.grid_code of {id}: {e}")))?,
        id,
        status,
        label,
        registered_at,
        flagged_at,
        flag_reason,
        history_from,
    })
}

/// The devices of an area (every one for `None`): the flagged ones first, latest flag first,
/// then by id — the operators' maintenance list.
pub async fn list(pool: &PgPool, area: Option<&AreaCode>) -> Result<Vec<Device>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM devices
         WHERE $1::text IS NULL OR grid_code LIKE $1 || '%'
         ORDER BY flagged_at IS NULL, flagged_at DESC, id"
    ))
    .bind(area.map(AreaCode::as_str))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(device).collect()
}

/// Clears a device's maintenance flag (it was fixed): active again, and intake's rules forget
/// its readings before `now`, so its history starts over. On the audit log; `area`, when given,
/// must hold the device's grid (the operator's scope). A device not flagged is refused.
pub async fn clear_flag(
    pool: &PgPool,
    id: &str,
    area: Option<&AreaCode>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Device> {
    let mut tx = pool.begin().await?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM devices WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = row.map(device).transpose()? else {
        return Err(Error::Invalid(format!("no device {id}")));
    };
    if area.is_some_and(|a| !before.grid.as_str().starts_with(a.as_str())) {
        return Err(Error::Invalid(format!(
            "device {id} is in grid {}, outside {}",
            before.grid,
            area.map(AreaCode::as_str).unwrap_or_default()
        )));
    }
    if before.status != "maintenance" {
        return Err(Error::Invalid(format!(
            "device {id} is {}, not flagged for maintenance",
            before.status
        )));
    }
    sqlx::query(
        "UPDATE devices SET status = 'active', flagged_at = NULL, flag_reason = NULL, history_from = $2
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: CLEAR_FLAG,
        target: id.to_owned(),
        area_code: before.grid.to_string(),
        before: Some(serde_json::json!({
            "status": before.status,
            "flagged_at": before.flagged_at,
            "flag_reason": before.flag_reason,
        })),
        after: Some(serde_json::json!({ "status": "active", "history_from": now })),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(Device {
        status: "active".into(),
        flagged_at: None,
        flag_reason: None,
        history_from: Some(now),
        ..before
    })
}

/// A reading intake kept, as its rules' memory is rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReading {
    pub device_id: String,
    pub category: String,
    pub alarm: bool,
    pub received_at: DateTime<Utc>,
}

/// The readings kept since `since` of devices not retired, each after its device's
/// `history_from`, in the order intake took them.
pub async fn readings_since(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<StoredReading>> {
    let rows: Vec<(String, String, bool, DateTime<Utc>)> = sqlx::query_as(
        "SELECT r.device_id, r.category, r.alarm, r.received_at
         FROM device_readings r JOIN devices d ON d.id = r.device_id
         WHERE r.received_at >= $1 AND d.status <> 'retired'
           AND (d.history_from IS NULL OR r.received_at > d.history_from)
         ORDER BY r.received_at, r.stream_sequence NULLS FIRST, r.report_id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(device_id, category, alarm, received_at)| StoredReading {
            device_id,
            category,
            alarm,
            received_at,
        })
        .collect())
}

/// Which of `report_ids` are already kept as readings, and which were refused with
/// `rejected_reason` (a redelivery after the commit, before the ack): they end as they ended.
pub async fn already_taken(
    pool: &PgPool,
    report_ids: &[String],
    rejected_reason: &str,
) -> Result<(HashSet<String>, HashSet<String>)> {
    let (kept, rejected): (Vec<String>, Vec<String>) = sqlx::query_as(
        "SELECT ARRAY(SELECT report_id FROM device_readings WHERE report_id = ANY($1)),
                ARRAY(SELECT report_id FROM rejected_reports WHERE report_id = ANY($1) AND reason = $2)",
    )
    .bind(report_ids)
    .bind(rejected_reason)
    .fetch_one(pool)
    .await?;
    Ok((kept.into_iter().collect(), rejected.into_iter().collect()))
}

/// Per (device, category) of `devices`, the incident its latest detection opened or was folded
/// into: where the next fold of that detection goes.
pub async fn detection_incidents(
    pool: &PgPool,
    devices: &[String],
) -> Result<HashMap<(String, String), Uuid>> {
    let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT ON (r.device_id, r.category) r.device_id, r.category, p.incident_id
         FROM device_readings r JOIN reports p ON p.report_id = r.report_id
         WHERE r.device_id = ANY($1) AND r.verdict IN ('open', 'fold')
         ORDER BY r.device_id, r.category, r.received_at DESC, r.stream_sequence DESC NULLS LAST",
    )
    .bind(devices)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(device, category, incident)| ((device, category), incident))
        .collect())
}
