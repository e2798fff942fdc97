//! `POST requests`: a service request filed as a report (docs/open311.md, "Filing").
//!
//! The grid is the one whose centre is nearest to `lat`/`long`, within [`GRID_RADIUS_M`] (else
//! 400), inside the key's area (else 403); the report is filed in the name of that grid's worker,
//! who follows it up (回访), tagged with the key's channel, and published as
//! `Reporting.SubmitReport` publishes a grid worker's. The answer waits a few seconds for intake:
//! the request's id once recorded, else a token to ask for it later (the same string: the
//! report id), or 400 if intake refused the report.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use whistle_domain::{AreaCode, ReportId};
use whistle_proto::v1;
use whistle_store::tokens::Role;

use super::{
    catalogue::{ORDER_NO, RECEIVED_AT, URGENCIES, URGENCY},
    door::{Answer, Failure, Open311, Params},
    format::Node,
};
use crate::{auth::Principal, Error};

/// How far a request may lie from its grid's centre.
pub(crate) const GRID_RADIUS_M: f64 = 1_000.0;
/// Prefix of a 12345 work order's report id, before its order number.
pub(crate) const HOTLINE_PREFIX: &str = "12345-";
/// Prefix of an Open311 client's report id, before a UUID.
pub(crate) const OPEN311_PREFIX: &str = "o311-";
/// Characters of a title taken from the description's first line.
const TITLE_CHARS: usize = 40;

/// The grid whose centre is nearest to a point, and how far it is, among the grids within about
/// `radius` (a box of that half-width, then the great-circle distance).
pub(crate) async fn nearest_grid(
    pool: &PgPool,
    lat: f64,
    lon: f64,
    radius_m: f64,
) -> Result<Option<(AreaCode, f64)>, Error> {
    let dlat = radius_m / 111_000.0;
    let dlon = radius_m / (111_000.0 * lat.to_radians().cos().abs().max(0.01));
    let rows = sqlx::query(
        "SELECT code, lat, lon FROM org_units
         WHERE level = 'grid' AND lat BETWEEN $1 AND $2 AND lon BETWEEN $3 AND $4",
    )
    .bind(lat - dlat)
    .bind(lat + dlat)
    .bind(lon - dlon)
    .bind(lon + dlon)
    .fetch_all(pool)
    .await?;
    let mut best: Option<(String, f64)> = None;
    for row in rows {
        let distance = haversine_m(lat, lon, row.try_get("lat")?, row.try_get("lon")?);
        if distance <= radius_m && best.as_ref().is_none_or(|(_, d)| distance < *d) {
            best = Some((row.try_get("code")?, distance));
        }
    }
    best.map(|(code, distance)| {
        code.parse()
            .map(|code| (code, distance))
            .map_err(|e| Error::Corrupt(format!("grid {code}: {e}")))
    })
    .transpose()
}

/// Great-circle distance in metres.
pub(crate) fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

fn coordinate(params: &Params, name: &str, range: f64) -> Result<f64, Failure> {
    let value = params.get(name).ok_or_else(|| {
        Failure::bad_request(
            "lat and long are required: the request's grid is the one nearest to them",
        )
    })?;
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() <= range)
        .ok_or_else(|| Failure::bad_request(format!("{name} {value:?} is not a WGS-84 coordinate")))
}

fn at_most(field: &str, value: &str, max: usize) -> Result<(), Failure> {
    let n = value.chars().count();
    if n > max {
        return Err(Failure::bad_request(format!(
            "{field} is {n} characters long; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// What the form asks for, checked, as the report it becomes (grid and reporter still unset).
fn report_of(
    params: &Params,
    key: &Principal,
    policy: &whistle_domain::policy::Policy,
    now: DateTime<Utc>,
) -> Result<(ReportId, v1::Report), Failure> {
    let code = params
        .get("service_code")
        .ok_or_else(|| Failure::bad_request("service_code is required (see services.json)"))?;
    let category = policy.category(code).ok_or_else(|| {
        Failure::bad_request(format!(
            "service_code {code:?} is not a service (see services.json)"
        ))
    })?;
    if category.photo_required {
        return Err(Failure::bad_request(format!(
            "service {code} needs a photo stored by Whistle, which this door cannot take; report it through a grid worker"
        )));
    }
    let lat = coordinate(params, "lat", 90.0)?;
    let lon = coordinate(params, "long", 180.0)?;
    let description = params.get("description").unwrap_or_default();
    at_most("description", description, 4_000)?;
    let address = params.get("address_string").unwrap_or_default();
    at_most("address_string", address, 200)?;
    let phone = params.get("phone").unwrap_or_default();
    at_most("phone", phone, 64)?;
    let mut urgency = v1::Urgency::Normal;
    let mut order_no = None;
    let mut received_at = None;
    for (attribute, value) in params.attributes() {
        match attribute {
            URGENCY => {
                urgency = match URGENCIES.iter().position(|(k, _)| *k == value) {
                    Some(0) => v1::Urgency::Normal,
                    Some(1) => v1::Urgency::Urgent,
                    Some(_) => v1::Urgency::Emergency,
                    None => {
                        return Err(Failure::bad_request(format!(
                            "attribute[urgency] {value:?} is not one of normal, urgent, emergency"
                        )))
                    }
                }
            }
            ORDER_NO if key.role == Role::Hotline => order_no = Some(value),
            RECEIVED_AT if key.role == Role::Hotline => {
                let at = DateTime::parse_from_rfc3339(value).map_err(|_| {
                    Failure::bad_request(format!(
                        "attribute[received_at] {value:?} is not an ISO 8601 time with its offset"
                    ))
                })?;
                received_at = Some(at.with_timezone(&Utc));
            }
            other => {
                return Err(Failure::bad_request(format!(
                    "attribute[{other}] is not an attribute of service {code} (see services/{code}.json)"
                )))
            }
        }
    }
    let (report_id, channel, channel_ref) = if key.role == Role::Hotline {
        let order_no = order_no.ok_or_else(|| {
            Failure::bad_request("attribute[order_no] is required: the 12345 work order's number")
        })?;
        let id = format!("{HOTLINE_PREFIX}{order_no}");
        let id: ReportId = id.parse().map_err(|_| {
            Failure::bad_request(format!(
                "attribute[order_no] {order_no:?} must be 1–58 characters of A-Z a-z 0-9 . _ : -"
            ))
        })?;
        (id, v1::Channel::Hotline12345, order_no.to_owned())
    } else {
        let id = format!("{OPEN311_PREFIX}{}", uuid::Uuid::now_v7().simple());
        (
            id.parse().expect("a uuid makes a report id"),
            v1::Channel::Open311,
            key.token_id.to_string(),
        )
    };
    let media = params.get("media_url");
    if let Some(url) = media {
        at_most("media_url", url, 2_048)?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Failure::bad_request("media_url must be an http(s) URL"));
        }
    }
    let first_line = description.lines().next().unwrap_or_default().trim();
    let title = if first_line.is_empty() {
        category.name_zh.clone()
    } else {
        first_line.chars().take(TITLE_CHARS).collect()
    };
    let report = v1::Report {
        report_id: report_id.to_string(),
        category: category.code.to_string(),
        urgency: urgency as i32,
        title,
        description: description.to_owned(),
        location: Some(v1::Location {
            lat,
            lon,
            address: address.to_owned(),
        }),
        occurred_at: received_at.map(whistle_wire::convert::timestamp),
        reported_at: Some(whistle_wire::convert::timestamp(now)),
        attachments: media
            .map(|uri| v1::Attachment {
                uri: uri.to_owned(),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        contact_phone: phone.to_owned(),
        channel: channel as i32,
        channel_ref,
        ..Default::default()
    };
    Ok((report_id, report))
}

/// The person a grid's reports from other channels are filed as: its grid worker (the first by
/// id when it has several), who follows them up.
async fn grid_worker(pool: &PgPool, grid: &AreaCode) -> Result<String, Error> {
    sqlx::query_scalar(
        "SELECT id FROM people WHERE role = 'grid_worker' AND grid_code = $1 AND left_at IS NULL
         ORDER BY id LIMIT 1",
    )
    .bind(grid.as_str())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        Error::Unavailable(format!(
            "grid {grid} has no grid worker to follow the request up; the city must post one"
        ))
    })
}

pub(crate) async fn file(door: &Open311, key: &Principal, params: &Params) -> Answer {
    let now = door.clock.now();
    let (report_id, mut report) = report_of(params, key, &door.policy.get(), now)?;
    let location = report.location.clone().expect("set above");
    let (grid, _) = nearest_grid(&door.pool, location.lat, location.lon, GRID_RADIUS_M)
        .await?
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "no grid's centre lies within {GRID_RADIUS_M} m of ({}, {}): outside the city's grids",
                location.lat, location.lon
            ))
        })?;
    if !key.may_see(&grid) {
        return Err(key.outside(&grid).into());
    }
    report.grid_code = grid.to_string();
    report.reporter_id = grid_worker(&door.pool, &grid).await?;
    // A work order sent again gets what became of it, without publishing again.
    let outcome = match door.reporting.outcome(report_id.as_str()).await? {
        Some(decided) => decided,
        None => door.reporting.publish(&report_id, &grid, &report).await?,
    };
    answer(outcome)
}

fn answer(outcome: v1::SubmitReportResponse) -> Answer {
    let id = outcome.report_id.clone();
    let request = match v1::ReportOutcome::try_from(outcome.outcome) {
        Ok(v1::ReportOutcome::Rejected) => {
            return Err(Failure::bad_request(format!(
                "the request was refused ({}): {}",
                outcome.rejected_reason, outcome.rejected_message
            )))
        }
        Ok(v1::ReportOutcome::Pending) => Node::Object(vec![
            ("token", Node::text(id)),
            (
                "service_notice",
                Node::text("已收到，正在受理；稍后用 token 查询编号 (received; ask tokens/{token} for its id)"),
            ),
            ("account_id", Node::Null),
        ]),
        _ => {
            let due = outcome
                .incident
                .as_ref()
                .and_then(|i| i.due_at.as_ref())
                .and_then(whistle_wire::convert::timestamp_from_proto);
            let notice = match due {
                Some(due) => format!("已受理，限 {} 前办结 (accepted; due {})", due.to_rfc3339(), due.to_rfc3339()),
                None => "已受理 (accepted)".to_owned(),
            };
            Node::Object(vec![
                ("service_request_id", Node::text(id)),
                ("service_notice", Node::text(notice)),
                ("account_id", Node::Null),
            ])
        }
    };
    Ok((Node::List("request", vec![request]), "service_requests"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circle_metres() {
        // One thousandth of a degree of latitude is about 111 m anywhere.
        let d = haversine_m(39.6, 109.8, 39.601, 109.8);
        assert!((d - 111.2).abs() < 0.5, "{d}");
        assert_eq!(haversine_m(39.6, 109.8, 39.6, 109.8), 0.0);
    }
}
