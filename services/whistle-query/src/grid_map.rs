//! `GetGridMap`: every grid of an area with its position and its open and overdue incidents, for
//! the screens' map. The counts are GetOverview's (the live aggregates), grid by grid, so the map
//! and the tiles never disagree.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use whistle_domain::AreaCode;
use whistle_proto::v1;

use crate::{aggregates::Aggregates, area::GridRange, overview, Error, Result};

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
    let cells = grids
        .iter()
        .map(|row| {
            let code: String = row.try_get("code")?;
            let grid: AreaCode = code
                .parse()
                .map_err(|e| Error::Corrupt(format!("org unit {code}: {e}")))?;
            let counts = aggregates.overview(&code, Some(&grid), overview::DEFAULT_WINDOW, now)?;
            Ok(v1::GridCell {
                grid_code: code,
                name: row.try_get("name")?,
                lat: row.try_get("lat")?,
                lon: row.try_get("lon")?,
                open_incidents: counts.open_incidents,
                overdue: counts.overdue,
            })
        })
        .collect::<Result<_>>()?;
    Ok(v1::GridMap {
        area_code: area.to_string(),
        cells,
    })
}
