//! `ListPairedIncidents`: a leader's view (领导结对联系). The streets and communities paired with
//! the token's leader, each with its open and overdue counts, and their open incidents, the most
//! pressing first: overdue, then the highest level (escalated to the district or the city), then
//! the nearest deadline.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use whistle_domain::policy::Policy;
use whistle_proto::v1;

use crate::{
    auth::Principal,
    convert,
    incidents::{summary, SUMMARY_COLUMNS},
    page_token, Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Overdue as `incidents.rs` defines it: flagged by dispatch, or open and past its deadline.
const OVERDUE: &str = "(i.overdue OR (i.due_at IS NOT NULL AND i.due_at < $2))";
/// Inside one of the paired areas ($1): a street's or a community's code.
const PAIRED: &str = "(i.street_code = ANY($1) OR i.community_code = ANY($1))";

/// The leader's view; PERMISSION_DENIED for any token but a leader's.
pub(crate) async fn list(
    pool: &PgPool,
    policy: &Policy,
    principal: &Principal,
    request: &v1::ListPairedIncidentsRequest,
    now: DateTime<Utc>,
) -> Result<v1::ListPairedIncidentsResponse> {
    if principal.role != whistle_store::tokens::Role::Leader {
        return Err(Error::PermissionDenied(format!(
            "the leader's view is for leader tokens; this is a {} token",
            principal.role.as_str()
        )));
    }
    let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let areas: Vec<String> = principal.paired.iter().map(|a| a.to_string()).collect();
    let open = convert::open_statuses();
    let counts = sqlx::query(&format!(
        "SELECT u.code, u.name,
                count(i.id) AS open_count,
                count(i.id) FILTER (WHERE {OVERDUE}) AS overdue_count
         FROM org_units u
         LEFT JOIN incidents i
           ON (i.street_code = u.code OR i.community_code = u.code) AND i.status = ANY($3)
         WHERE u.code = ANY($1)
         GROUP BY u.code, u.name ORDER BY u.code"
    ))
    .bind(&areas)
    .bind(now)
    .bind(&open)
    .fetch_all(pool)
    .await?;
    let mut paired = Vec::with_capacity(counts.len());
    for row in &counts {
        let code: String = row.try_get("code")?;
        let level = code
            .parse::<whistle_domain::AreaCode>()
            .map(|a| whistle_wire::convert::level_to_proto(a.level()))
            .map_err(|e| Error::Corrupt(format!("org_units.code: {e}")))?;
        paired.push(v1::PairedArea {
            area_code: code,
            name: row.try_get("name")?,
            level: level as i32,
            open_count: count(row.try_get("open_count")?),
            overdue_count: count(row.try_get("overdue_count")?),
        });
    }
    let open_count: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM incidents i WHERE {PAIRED} AND $2::timestamptz IS NOT NULL AND i.status = ANY($3)"
    ))
    .bind(&areas)
    .bind(now)
    .bind(&open)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM incidents i
         WHERE {PAIRED} AND i.status = ANY($3)
         ORDER BY {OVERDUE} DESC,
                  CASE i.level WHEN 'city' THEN 5 WHEN 'district' THEN 4 WHEN 'street' THEN 3
                               WHEN 'community' THEN 2 ELSE 1 END DESC,
                  i.due_at ASC NULLS LAST, i.id
         LIMIT $4"
    ))
    .bind(&areas)
    .bind(now)
    .bind(&open)
    .bind(i64::from(page_size))
    .fetch_all(pool)
    .await?;
    let incidents = rows
        .iter()
        .map(|row| summary(row, policy, now))
        .collect::<Result<_>>()?;
    Ok(v1::ListPairedIncidentsResponse {
        areas: paired,
        incidents,
        open_count: count(open_count),
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
