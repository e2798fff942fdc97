//! `GetTrend`: incidents reported and resolved per hour, for the screens' trend chart. The service
//! answers from the live aggregates (`aggregates.rs`, one counter pair per area and hour);
//! [`recount`] computes the same buckets by SQL and is what the aggregates are tested against.
//!
//! The definitions are GetOverview's, per hour instead of per day: "reported" counts incidents
//! opened (`created_at`) in the hour, "resolved" the incidents with an `incident.resolved`
//! timeline entry in it (an incident resolved twice in one hour counts once; one resolved,
//! reopened and resolved again in another hour counts in both). Hours are whole hours of UTC,
//! which are whole hours of Asia/Shanghai too.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use sqlx::{PgPool, Row};
use whistle_domain::AreaCode;
use whistle_proto::v1;

use crate::{area::GridRange, convert, Error, Result};

pub const DEFAULT_HOURS: u32 = 24;
pub const MAX_HOURS: u32 = 168;

pub(crate) fn parse_hours(hours: u32) -> Result<u32> {
    match hours {
        0 => Ok(DEFAULT_HOURS),
        n if n > MAX_HOURS => Err(Error::invalid(format!(
            "hours {n} is above the maximum of {MAX_HOURS} (a week)"
        ))),
        n => Ok(n),
    }
}

/// `hours` buckets ending with the current, partial hour, by SQL over `incidents` and `timeline`
/// (the resolutions through the partial index `timeline_resolved_at`): the reference the live
/// aggregates must equal, not the serving path (it reads every incident of the window).
pub async fn recount(
    pool: &PgPool,
    area: &AreaCode,
    hours: u32,
    now: DateTime<Utc>,
) -> Result<v1::Trend> {
    let current = now
        .duration_trunc(TimeDelta::hours(1))
        .map_err(|e| Error::Corrupt(format!("truncating {now} to the hour: {e}")))?;
    let start = current - TimeDelta::hours(i64::from(hours) - 1);
    let range = GridRange::of(area);
    let rows = sqlx::query(
        "SELECT hour, sum(reported)::bigint AS reported, sum(resolved)::bigint AS resolved FROM (
             SELECT date_trunc('hour', created_at) AS hour, count(*) AS reported, 0 AS resolved
             FROM incidents
             WHERE created_at >= $3 AND created_at <= $4 AND grid_code ~>=~ $1 AND grid_code ~<~ $2
             GROUP BY 1
           UNION ALL
             SELECT date_trunc('hour', tl.at), 0, count(DISTINCT tl.incident_id)
             FROM timeline tl JOIN incidents i ON i.id = tl.incident_id
             WHERE tl.kind = 'incident.resolved' AND tl.at >= $3 AND tl.at <= $4
               AND i.grid_code ~>=~ $1 AND i.grid_code ~<~ $2
             GROUP BY 1
         ) hourly GROUP BY hour",
    )
    .bind(&range.low)
    .bind(&range.high)
    .bind(start)
    .bind(now)
    .fetch_all(pool)
    .await?;

    let mut buckets: Vec<v1::TrendBucket> = (0..hours)
        .map(|i| v1::TrendBucket {
            start: Some(convert::timestamp(start + TimeDelta::hours(i64::from(i)))),
            ..Default::default()
        })
        .collect();
    for row in rows {
        let hour: DateTime<Utc> = row.try_get("hour")?;
        let index = usize::try_from((hour - start).num_hours())
            .map_err(|_| Error::Corrupt(format!("trend hour {hour} before {start}")))?;
        let Some(bucket) = buckets.get_mut(index) else {
            continue;
        };
        let count = |column: &str| -> Result<u64> {
            u64::try_from(row.try_get::<i64, _>(column)?)
                .map_err(|_| Error::Corrupt(format!("negative {column} count")))
        };
        bucket.reported = count("reported")?;
        bucket.resolved = count("resolved")?;
    }
    Ok(v1::Trend {
        area_code: area.to_string(),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_default_to_a_day_and_stop_at_a_week() {
        assert_eq!(parse_hours(0).unwrap(), 24);
        assert_eq!(parse_hours(168).unwrap(), 168);
        assert!(matches!(parse_hours(169), Err(Error::InvalidArgument(_))));
    }
}
