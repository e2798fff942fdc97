//! `GetGridMap`: every grid of an area with its position and its open and overdue incidents, for
//! the screens' map. The counts are GetOverview's (the same live aggregates and definitions), grid
//! by grid, so the map and the tiles never disagree; only those two figures are computed.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use whistle_domain::AreaCode;
use whistle_proto::v1;

use crate::{aggregates::Aggregates, area::GridRange, Error, Result};

pub(crate) async fn read(
    pool: &PgPool,
    aggregates: &Aggregates,
    area: &AreaCode,
    now: DateTime<Utc>,
) -> Result<v1::GridMap> {
    let range = GridRange::of(area);
    let grids = sqlx::query(
        "SELECT code, name, lat, lon FROM org_units
         WHERE level = 'grid' AND code ~>=~ $1 AND code ~<~ $2 ORDER BY code",
    )
    .bind(&range.low)
    .bind(&range.high)
    .fetch_all(pool)
    .await?;
    let codes = grids
        .iter()
        .map(|row| {
            let code: String = row.try_get("code")?;
            code.parse::<AreaCode>()
                .map_err(|e| Error::Corrupt(format!("org unit {code}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let counts = aggregates.open_and_overdue(&codes, now)?;
    let cells = grids
        .iter()
        .zip(codes)
        .zip(counts)
        .map(|((row, code), (open_incidents, overdue))| {
            Ok(v1::GridCell {
                grid_code: code.to_string(),
                name: row.try_get("name")?,
                lat: row.try_get("lat")?,
                lon: row.try_get("lon")?,
                open_incidents,
                overdue,
            })
        })
        .collect::<Result<_>>()?;
    Ok(v1::GridMap {
        area_code: area.to_string(),
        cells,
    })
}
