//! `ListHotspots`: 每月一题 — the month's candidate topics of an area from its report history, by
//! `whistle_domain::hotspot` (docs/proactive.md). SQL reads the area's reports of the lookback
//! with their incidents; the analysis runs on the board threads, away from the light reads.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use sqlx::PgPool;
use whistle_domain::{
    hotspot::{self, Candidate, Change, Month, Params, PlaceKey, Proposal, Record},
    policy::Policy,
    AreaCode,
};
use whistle_proto::v1;
use whistle_store::proactive::HISTORY;

use crate::{area::GridRange, Error, Result};

/// Most topics one call lists.
const MAX_PAGE: u32 = 100;

/// The month a request names (`YYYY-MM`), or the current one in Ordos.
pub(crate) fn month(requested: &str, now: DateTime<Utc>) -> Result<Month> {
    if requested.is_empty() {
        return Ok(Month::of(now));
    }
    requested
        .parse()
        .map_err(|e: hotspot::InvalidMonth| Error::invalid(format!("month: {e}")))
}

/// The method's parameters for a request's `page_size`: 0 keeps its 10, at most 100.
pub(crate) fn params(page_size: u32) -> Result<Params> {
    let mut params = Params::default();
    match page_size {
        0 => {}
        n if n <= MAX_PAGE => params.proposals = n as usize,
        n => {
            return Err(Error::invalid(format!(
                "page_size: {n} is more than {MAX_PAGE}"
            )))
        }
    }
    Ok(params)
}

/// The area's reports in the months `params` reads before `month`, each with its incident.
pub(crate) async fn history(
    pool: &PgPool,
    policy: &Policy,
    area: &AreaCode,
    month: Month,
    params: &Params,
) -> Result<Vec<Record>> {
    let range = GridRange::of(area);
    let from = month.plus(-(params.lookback_months as i32)).start();
    // `reports_grid_received` holds the area's reports in time order.
    let rows = sqlx::query(&format!(
        "{HISTORY} WHERE r.grid_code ~>=~ $1 AND r.grid_code ~<~ $2
           AND r.received_at >= $3 AND r.received_at < $4"
    ))
    .bind(&range.low)
    .bind(&range.high)
    .bind(from)
    .bind(month.start())
    .fetch_all(pool)
    .await?;
    records(&rows, policy)
}

/// The analysis' records of rows read with [`HISTORY`] (the store's, which dispatch's
/// proposals read too).
fn records(rows: &[sqlx::postgres::PgRow], policy: &Policy) -> Result<Vec<Record>> {
    whistle_store::proactive::records(rows, policy).map_err(from_store)
}

/// The month's stored proposal (every candidate of the city), if an adoption stored it.
pub(crate) async fn stored(pool: &PgPool, month: Month) -> Result<Option<Proposal>> {
    let mut conn = pool.acquire().await?;
    whistle_store::proactive::proposal(&mut conn, month)
        .await
        .map_err(from_store)
}

fn from_store(e: whistle_store::Error) -> Error {
    match e {
        whistle_store::Error::Database(e) => Error::Database(e),
        other => Error::Corrupt(other.to_string()),
    }
}

/// The proactive cases adopted from `keys` in the proposal of `month` (`YYYY-MM`), by key: the
/// newest case of each.
pub(crate) async fn adopted(
    pool: &PgPool,
    keys: &[String],
    month: &str,
) -> Result<HashMap<String, uuid::Uuid>> {
    let rows: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT DISTINCT ON (topic_key) topic_key, id FROM incidents
         WHERE origin = 'proactive' AND topic_key = ANY($1)
           AND state->'proactive'->>'month' = $2
         ORDER BY topic_key, created_at DESC",
    )
    .bind(keys)
    .bind(month)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A `GetHotspotChange` request: its place, since when, and the months on each side.
pub(crate) fn change_request(
    request: &v1::GetHotspotChangeRequest,
) -> Result<(PlaceKey, DateTime<Utc>, u32)> {
    let place: PlaceKey = request
        .key
        .parse()
        .map_err(|e: hotspot::InvalidKey| Error::invalid(format!("key: {e}")))?;
    let since = request
        .since
        .as_ref()
        .ok_or_else(|| Error::invalid("since: required"))?;
    let since = u32::try_from(since.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(since.seconds, nanos))
        .ok_or_else(|| Error::invalid("since: not a valid timestamp"))?;
    // Months either side must be calendar months chrono can name.
    if !(1970..=9999).contains(&since.year()) {
        return Err(Error::invalid(format!(
            "since: {since} is not between 1970 and 9999"
        )));
    }
    let months = match request.months {
        0 => 3,
        n @ 1..=12 => n,
        n => return Err(Error::invalid(format!("months: {n} is not 1–12"))),
    };
    Ok((place, since, months))
}

/// The reports of `place`'s grid and group in the months either side of `since`.
pub(crate) async fn change(
    pool: &PgPool,
    policy: &Policy,
    place: &PlaceKey,
    since: DateTime<Utc>,
    months: u32,
) -> Result<Change> {
    let month = Month::of(since);
    let (from, to) = (
        month.plus(-(months as i32)).start(),
        month.plus(months as i32 + 1).start(),
    );
    // `reports_grid_received` again: one grid, one span of time.
    let rows = sqlx::query(&format!(
        "{HISTORY} WHERE r.grid_code = $1 AND split_part(r.category, '.', 1) = $2
           AND r.received_at >= $3 AND r.received_at < $4"
    ))
    .bind(place.grid.as_str())
    .bind(&place.group)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let records = records(&rows, policy)?;
    Ok(hotspot::change(
        &records,
        place,
        Params::default().radius_m,
        since,
        months,
    ))
}

pub(crate) fn change_response(
    request: &v1::GetHotspotChangeRequest,
    place: &PlaceKey,
    change: &Change,
    now: DateTime<Utc>,
) -> v1::HotspotChange {
    let counts = |months: &[(Month, u32)]| {
        months
            .iter()
            .map(|(month, count)| v1::Count {
                key: month.to_string(),
                count: u64::from(*count),
            })
            .collect()
    };
    // The after side is whole once its last month ended.
    let complete = change
        .after
        .last()
        .is_some_and(|(month, _)| month.plus(1).start() <= now);
    v1::HotspotChange {
        key: request.key.clone(),
        grid_code: place.grid.to_string(),
        group: place.group.clone(),
        before: counts(&change.before),
        after: counts(&change.after),
        before_per_month: change.before_per_month(),
        after_per_month: change.after_per_month(),
        complete,
    }
}

pub(crate) fn response(
    area: &AreaCode,
    proposal: &Proposal,
    policy: &Policy,
) -> v1::ListHotspotsResponse {
    v1::ListHotspotsResponse {
        area_code: area.to_string(),
        month: proposal.month.to_string(),
        from_month: proposal.from.to_string(),
        to_month: proposal.to.to_string(),
        reports: proposal.reports as u64,
        places: proposal.places as u64,
        hotspots: proposal
            .candidates
            .iter()
            .map(|c| hotspot_to_proto(c, policy))
            .collect(),
        // Set by the caller when the proposal was read from the store.
        stored: false,
    }
}

fn hotspot_to_proto(candidate: &Candidate, policy: &Policy) -> v1::Hotspot {
    let (lat, lon) = candidate.centre.unwrap_or_default();
    v1::Hotspot {
        key: candidate.key.clone(),
        grid_code: candidate.grid.to_string(),
        has_centre: candidate.centre.is_some(),
        lat,
        lon,
        group: candidate.group.clone(),
        group_name: policy
            .group(&candidate.group)
            .map_or_else(String::new, |g| g.name_zh.clone()),
        categories: candidate
            .categories
            .iter()
            .map(|(key, count)| v1::Count {
                key: key.clone(),
                count: u64::from(*count),
            })
            .collect(),
        kinds: candidate
            .kinds
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        season_from: candidate.season.map_or(0, |s| s.from),
        season_to: candidate.season.map_or(0, |s| s.to),
        months: candidate
            .months
            .iter()
            .map(|(month, count)| v1::Count {
                key: month.to_string(),
                count: u64::from(*count),
            })
            .collect(),
        recent_reports: candidate.recent_reports,
        active_months: candidate.active_months,
        incidents: candidate.incidents,
        returns: candidate.returns,
        growth: candidate.growth,
        solvable_at: whistle_wire::convert::level_to_proto(candidate.solvable_at) as i32,
        score: candidate.score,
        terms: candidate
            .terms
            .iter()
            .map(|t| v1::HotspotTerm {
                name: t.name.clone(),
                value: t.value,
                points: t.points,
            })
            .collect(),
        incident_ids: candidate.incident_ids.clone(),
        summary: candidate.summary_zh.clone(),
        // Set by the caller from the cases adopted in the month.
        adopted_incident_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_month_and_size_or_gets_clear_errors() {
        let now = "2026-07-31T17:00:00Z".parse().unwrap();
        // 01:00 on 1 August in Ordos.
        assert_eq!(month("", now).unwrap().to_string(), "2026-08");
        assert_eq!(month("2025-12", now).unwrap().to_string(), "2025-12");
        let err = month("2025-13", now).unwrap_err();
        assert!(err.to_string().contains("month"), "{err}");
        assert_eq!(params(0).unwrap().proposals, 10);
        assert_eq!(params(100).unwrap().proposals, 100);
        assert!(params(101).is_err());
    }

    #[test]
    fn a_change_names_a_key_a_time_and_months() {
        let request = |key: &str, seconds: i64, months: u32| v1::GetHotspotChangeRequest {
            key: key.into(),
            since: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            months,
        };
        let key = "150602001001001/property@39.8100,109.9900";
        let (place, since, months) = change_request(&request(key, 1_780_000_000, 0)).unwrap();
        assert_eq!(
            (place.group.as_str(), since.timestamp(), months),
            ("property", 1_780_000_000, 3)
        );
        for bad in [
            request("150602/property", 1_780_000_000, 3),
            request(key, 1_780_000_000, 13),
            request(key, -1, 3),
            request(key, 8_000_000_000_000, 3),
            v1::GetHotspotChangeRequest {
                since: None,
                ..request(key, 0, 3)
            },
        ] {
            assert!(change_request(&bad).is_err(), "{bad:?}");
        }
    }
}
