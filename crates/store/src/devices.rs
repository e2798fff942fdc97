//! The device registry (issue 21, item 5): sensors and video-analytics systems registered per
//! grid by `whistle devices register`, on the audit log; a device's credential is a `device` token
//! naming it (`whistle token create --role device --device ID`). docs/devices.md.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use whistle_domain::{devices::DeviceKind, AreaCode, Level};

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// The audit action of a registration.
pub const REGISTER: &str = "devices.register";

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

/// The devices of an area (every one for `None`), by id.
pub async fn list(pool: &PgPool, area: Option<&AreaCode>) -> Result<Vec<Device>> {
    let rows: Vec<(String, String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, kind, grid_code, status, label, registered_at FROM devices
         WHERE $1::text IS NULL OR grid_code LIKE $1 || '%' ORDER BY id",
    )
    .bind(area.map(AreaCode::as_str))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, kind, grid, status, label, registered_at)| {
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
            })
        })
        .collect()
}
