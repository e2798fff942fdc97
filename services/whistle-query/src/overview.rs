//! `GetOverview`: the headline figures of an area. The service answers from the live aggregates
//! (`aggregates.rs`); [`recount`] computes the same figures by SQL, in one read-only snapshot, and
//! is what the aggregates are tested against. Both follow these definitions:
//!
//! - `by_status` counts every incident of the area; `by_level`, `by_category` and `by_urgency`
//!   count its open ones (handling, whistled, accepted), where a level or a category still
//!   needs work. `overdue` counts open incidents with dispatch's `overdue` flag or past their SLA
//!   deadline `due_at` (as in `overdue.rs`), the long-term ledger's (挂账) cases aside: those are
//!   `ledger`, counted with the days since the oldest was entered and the median of those days.
//! - "Today" is the calendar day of the clock's now in Asia/Shanghai: `reported_today` counts
//!   incidents opened that day, `resolved_today` incidents with an `incident.resolved` timeline
//!   entry that day, `whistles_today` the `incident.whistled` entries that day.
//! - The three rates (三率) cover whole days: the window of the request, rounded up to whole days
//!   (N = ⌈window / 1 day⌉), is today and the N − 1 days before it, from the start of the first
//!   one (Shanghai time) up to now:
//!   - response: tasks dispatched in the window that reported in by `accept_due_at`, over tasks
//!     dispatched in the window (a task still inside its report-in deadline is in the
//!     denominator only, until it reports in);
//!   - resolution: incidents whose SLA deadline `due_at` fell in the window (up to now: a
//!     deadline later today is not due yet) and that were resolved (resolved, closed or closed
//!     unverified) by it, over incidents due in the window;
//!   - satisfaction: incidents followed up in the window (an `incident.verified` entry) whose
//!     latest verdict is satisfied or basically satisfied, over incidents followed up.
//!
//!   An empty denominator gives a rate of 0 with the counts shown. Whole days let the aggregates
//!   keep one bucket per area and day instead of every timestamp.

use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, Row};
use whistle_domain::{
    incident::{Satisfaction, Status},
    policy::LedgerRates,
    AreaCode,
};
use whistle_proto::v1;

use crate::{area::GridRange, convert, scoreboard, Error, Result};

pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::days(30);
pub const MAX_WINDOW: TimeDelta = TimeDelta::days(366);

const WHISTLED: &str = "incident.whistled";
const RESOLVED: &str = "incident.resolved";
const VERIFIED: &str = "incident.verified";

/// The rates' window from a request: default 30 days, positive, at most 366 days.
pub(crate) fn parse_window(window: Option<&prost_types::Duration>) -> Result<TimeDelta> {
    let Some(window) = window else {
        return Ok(DEFAULT_WINDOW);
    };
    let invalid = || {
        Error::invalid(format!(
            "window must be positive and at most {} days",
            MAX_WINDOW.num_days()
        ))
    };
    let nanos = u32::try_from(window.nanos).map_err(|_| invalid())?;
    let delta = TimeDelta::new(window.seconds, nanos).ok_or_else(invalid)?;
    if delta <= TimeDelta::zero() || delta > MAX_WINDOW {
        return Err(invalid());
    }
    Ok(delta)
}

/// The number of whole days a window covers: ⌈window / 1 day⌉, at least 1.
pub(crate) fn window_days(window: TimeDelta) -> i64 {
    let day = TimeDelta::days(1).num_microseconds().expect("a day fits");
    let micros = window.num_microseconds().unwrap_or(i64::MAX).max(1);
    (micros + day - 1) / day
}

/// Asia/Shanghai, the time zone of every calendar day and month the screens show. China has
/// observed UTC+8 all year since 1991, so a fixed offset is exact and needs no time-zone database.
pub(crate) fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The day of `now` in Asia/Shanghai as UTC instants `[start, end)`.
pub(crate) fn shanghai_day(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let shanghai = shanghai();
    let start = now
        .with_timezone(&shanghai)
        .date_naive()
        .and_time(NaiveTime::MIN)
        .and_local_timezone(shanghai)
        .single()
        .expect("a fixed offset maps every local time once")
        .with_timezone(&Utc);
    (start, start + TimeDelta::days(1))
}

/// The ledger's size and age from when each open ledger case was entered (microseconds since the
/// epoch, in ascending order): the one computation of both the live aggregates and [`recount`].
/// Ages count whole seconds: PostgreSQL rounds an instant to the microsecond where an event
/// truncates it, and the two must give the same figure.
pub(crate) fn ledger_size(entered: &[i64], now: i64) -> v1::LedgerSize {
    let seconds = |micros: i64| micros.div_euclid(1_000_000);
    let age = |at: i64| (seconds(now) - seconds(at)).max(0);
    let days = |secs: f64| secs / 86_400.0;
    let (Some(&oldest), count) = (entered.first(), entered.len()) else {
        return v1::LedgerSize::default();
    };
    let middle = |i: usize| age(entered[i]) as f64;
    let median = if count % 2 == 1 {
        middle(count / 2)
    } else {
        (middle(count / 2 - 1) + middle(count / 2)) / 2.0
    };
    v1::LedgerSize {
        count: count as u64,
        oldest_days: days(age(oldest) as f64),
        median_days: days(median),
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn count(row: &sqlx::postgres::PgRow, column: &str) -> Result<u64> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Sorted by count, largest first, then by key.
pub(crate) fn counts(mut pairs: Vec<(String, u64)>) -> Vec<v1::Count> {
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    pairs
        .into_iter()
        .map(|(key, count)| v1::Count { key, count })
        .collect()
}

/// The area condition on `incidents i`, with the range bound as `$1` and `$2` (NULL: no area).
const IN_AREA: &str = "($1::text IS NULL OR (i.grid_code ~>=~ $1 AND i.grid_code ~<~ $2))";

/// The overview by SQL: scans the area's incidents, tasks and timeline entries (the timeline has
/// no index on `(kind, at)`). The reference the live aggregates must equal.
pub async fn recount(
    pool: &PgPool,
    area_code: &str,
    area: Option<&AreaCode>,
    window: TimeDelta,
    ledger: LedgerRates,
    now: DateTime<Utc>,
) -> Result<v1::Overview> {
    let range = area.map(GridRange::of);
    let low = range.as_ref().map(|r| r.low.clone());
    let high = range.as_ref().map(|r| r.high.clone());
    let (day_start, day_end) = shanghai_day(now);
    let window_start = day_start - TimeDelta::days(window_days(window) - 1);

    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let conn: &mut PgConnection = &mut tx;

    let groups = sqlx::query(&format!(
        "SELECT status, level, category, urgency,
                GROUPING(status) = 0 AS is_status, GROUPING(level) = 0 AS is_level,
                GROUPING(category) = 0 AS is_category,
                count(*) AS total,
                count(*) FILTER (WHERE status = ANY($3)) AS open,
                count(*) FILTER (WHERE status = ANY($3) AND (overdue OR due_at < $4)
                                 AND ledgered_at IS NULL) AS overdue,
                count(*) FILTER (WHERE created_at >= $5 AND created_at < $6) AS reported_today
         FROM incidents i WHERE {IN_AREA}
         GROUP BY GROUPING SETS ((status), (level), (category), (urgency))"
    ))
    .bind(&low)
    .bind(&high)
    .bind(convert::open_statuses())
    .bind(now)
    .bind(day_start)
    .bind(day_end)
    .fetch_all(&mut *conn)
    .await?;

    let mut overview = v1::Overview {
        area_code: area_code.to_owned(),
        as_of: Some(convert::timestamp(now)),
        ..Default::default()
    };
    let (mut by_status, mut by_level, mut by_category, mut by_urgency) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &groups {
        let open = count(row, "open")?;
        if row.try_get("is_status")? {
            let status: String = row.try_get("status")?;
            convert::status_from_db(&status)?;
            by_status.push((status, count(row, "total")?));
            // Every incident falls in exactly one status group, so these sums count each once.
            overview.open_incidents += open;
            overview.overdue += count(row, "overdue")?;
            overview.reported_today += count(row, "reported_today")?;
        } else if open == 0 {
            continue;
        } else if row.try_get("is_level")? {
            by_level.push((row.try_get("level")?, open));
        } else if row.try_get("is_category")? {
            by_category.push((row.try_get("category")?, open));
        } else {
            by_urgency.push((row.try_get("urgency")?, open));
        }
    }
    overview.by_status = counts(by_status);
    overview.by_level = counts(by_level);
    overview.by_category = counts(by_category);
    overview.by_urgency = counts(by_urgency);

    let today = sqlx::query(&format!(
        "SELECT count(DISTINCT tl.incident_id) FILTER (WHERE tl.kind = $3) AS resolved,
                count(*) FILTER (WHERE tl.kind = $4) AS whistles
         FROM timeline tl JOIN incidents i ON i.id = tl.incident_id
         WHERE tl.kind IN ($3, $4) AND tl.at >= $5 AND tl.at < $6 AND {IN_AREA}"
    ))
    .bind(&low)
    .bind(&high)
    .bind(RESOLVED)
    .bind(WHISTLED)
    .bind(day_start)
    .bind(day_end)
    .fetch_one(&mut *conn)
    .await?;
    overview.resolved_today = count(&today, "resolved")?;

    let entered: Vec<DateTime<Utc>> = sqlx::query_scalar(&format!(
        "SELECT i.ledgered_at FROM incidents i
         WHERE i.ledgered_at IS NOT NULL AND i.status = ANY($3) AND {IN_AREA}
         ORDER BY i.ledgered_at"
    ))
    .bind(&low)
    .bind(&high)
    .bind(convert::open_statuses())
    .fetch_all(&mut *conn)
    .await?;
    let entered: Vec<i64> = entered
        .into_iter()
        .map(|at| at.timestamp_micros())
        .collect();
    overview.ledger = Some(ledger_size(&entered, now.timestamp_micros()));
    overview.whistles_today = count(&today, "whistles")?;

    let response = sqlx::query(&format!(
        "SELECT count(*) AS dispatched,
                count(*) FILTER (WHERE t.accepted_at <= t.accept_due_at) AS accepted_in_time
         FROM tasks t JOIN incidents i ON i.id = t.incident_id
         WHERE t.dispatched_at >= $3 AND t.dispatched_at < $4 AND {IN_AREA}"
    ))
    .bind(&low)
    .bind(&high)
    .bind(window_start)
    .bind(day_end)
    .fetch_one(&mut *conn)
    .await?;

    let resolution = sqlx::query(&format!(
        "WITH {shelved}
         SELECT count(*) AS due,
                count(*) FILTER (WHERE i.status = ANY($5) AND i.resolved_at <= i.due_at) AS resolved_in_time
         FROM incidents i
         WHERE i.due_at >= $3 AND i.due_at <= $4 AND i.status <> $6 AND {IN_AREA}
           AND NOT EXISTS (SELECT 1 FROM shelved s
                           WHERE s.incident_id = i.id AND s.round = i.reopen_count)",
        shelved = scoreboard::shelved("$7"),
    ))
    .bind(&low)
    .bind(&high)
    .bind(window_start)
    .bind(now)
    .bind(convert::resolved_statuses())
    .bind(Status::Duplicate.as_str())
    .bind(ledger == LedgerRates::Excluded)
    .fetch_one(&mut *conn)
    .await?;

    let satisfaction = sqlx::query(&format!(
        "SELECT count(*) AS followed_up,
                count(*) FILTER (WHERE i.satisfaction = ANY($6)) AS satisfied
         FROM incidents i
         WHERE i.satisfaction IS NOT NULL AND {IN_AREA}
           AND EXISTS (SELECT 1 FROM timeline tl
                       WHERE tl.incident_id = i.id AND tl.kind = $5 AND tl.at >= $3 AND tl.at < $4)"
    ))
    .bind(&low)
    .bind(&high)
    .bind(window_start)
    .bind(day_end)
    .bind(VERIFIED)
    .bind(vec![
        Satisfaction::Satisfied.as_str(),
        Satisfaction::BasicallySatisfied.as_str(),
    ])
    .fetch_one(&mut *conn)
    .await?;
    tx.commit().await?;

    overview.rates = Some(rates(v1::Rates {
        dispatched: count(&response, "dispatched")?,
        accepted_in_time: count(&response, "accepted_in_time")?,
        due: count(&resolution, "due")?,
        resolved_in_time: count(&resolution, "resolved_in_time")?,
        followed_up: count(&satisfaction, "followed_up")?,
        satisfied: count(&satisfaction, "satisfied")?,
        ..Default::default()
    }));
    Ok(overview)
}

/// The counts with their rates filled in.
pub(crate) fn rates(counts: v1::Rates) -> v1::Rates {
    v1::Rates {
        response_rate: ratio(counts.accepted_in_time, counts.dispatched),
        resolution_rate: ratio(counts.resolved_in_time, counts.due),
        satisfaction_rate: ratio(counts.satisfied, counts.followed_up),
        ..counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn the_day_is_shanghai_s_calendar_day() {
        // 23:30 UTC on 1 March is already 07:30 on 2 March in Ordos.
        assert_eq!(
            shanghai_day(at("2026-03-01T23:30:00Z")),
            (at("2026-03-01T16:00:00Z"), at("2026-03-02T16:00:00Z"))
        );
        assert_eq!(
            shanghai_day(at("2026-03-01T15:59:59Z")),
            (at("2026-02-28T16:00:00Z"), at("2026-03-01T16:00:00Z"))
        );
    }

    #[test]
    fn the_window_defaults_to_30_days_and_must_be_positive_and_at_most_a_year() {
        assert_eq!(parse_window(None).unwrap(), TimeDelta::days(30));
        let days = |d: i64| prost_types::Duration {
            seconds: d * 86_400,
            nanos: 0,
        };
        assert_eq!(parse_window(Some(&days(7))).unwrap(), TimeDelta::days(7));
        assert_eq!(parse_window(Some(&days(366))).unwrap(), MAX_WINDOW);
        for bad in [
            days(0),
            days(-1),
            days(367),
            prost_types::Duration {
                seconds: 1,
                nanos: -1,
            },
            prost_types::Duration {
                seconds: i64::MAX,
                nanos: 0,
            },
        ] {
            assert!(
                matches!(parse_window(Some(&bad)), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_window_covers_whole_days_rounded_up() {
        assert_eq!(window_days(TimeDelta::seconds(1)), 1);
        assert_eq!(window_days(TimeDelta::minutes(9)), 1);
        assert_eq!(window_days(TimeDelta::days(1)), 1);
        assert_eq!(
            window_days(TimeDelta::days(1) + TimeDelta::microseconds(1)),
            2
        );
        assert_eq!(window_days(DEFAULT_WINDOW), 30);
        assert_eq!(window_days(MAX_WINDOW), 366);
    }

    #[test]
    fn rates_with_nothing_to_count_are_zero() {
        assert_eq!(ratio(0, 0), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
    }
}
