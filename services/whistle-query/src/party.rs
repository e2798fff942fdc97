//! `GetPartyPanel` (docs/party.md, "The screen"): the Party's part of an area for the screen's
//! 党建引领 panel — the 双报到 registry's members and teams per child area, the volunteers' claims
//! since midnight, the service confirmed this month, the small wishes still open, and the open
//! incidents a paired leader endorsed (领导督办) or that were taken on proactively (主动治理).
//!
//! Six small statements, each on a partial index or a community's rows (migrations 31–37): the
//! panel refreshes on every offer event, so it must stay cheap at the city's scale.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Utc};
use sqlx::{PgPool, Row as _};
use whistle_domain::AreaCode;
use whistle_proto::v1;
use whistle_store::tokens::Role;
use whistle_wire::convert::timestamp;

use crate::{area::GridRange, auth::Principal, convert, Error, Result};

/// At most this many marked incidents are listed; the counts are whole.
const MAX_MARKED: usize = 200;
/// The newest small wishes shown.
const NEWEST_WISHES: i64 = 5;

/// Overdue as `incidents.rs` defines it: flagged by dispatch, or open and past its deadline.
const OVERDUE: &str = "(i.overdue OR (i.due_at IS NOT NULL AND i.due_at < $4))";

fn ordos() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Midnight today and the first of this month, Ordos time, as instants.
fn day_and_month_start(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = now.with_timezone(&ordos());
    let at = |y, m, d| {
        ordos()
            .with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("a fixed offset has one midnight")
            .with_timezone(&Utc)
    };
    (
        at(local.year(), local.month(), local.day()),
        at(local.year(), local.month(), 1),
    )
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The panel of `request.area_code` (default the token's area): operators and viewers of the
/// command centre only; liaisons, grid workers and members have no part in the screen's panel.
pub(crate) async fn panel(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::GetPartyPanelRequest,
    now: DateTime<Utc>,
) -> Result<v1::PartyPanel> {
    let area = match principal.role {
        Role::Operator | Role::Viewer if principal.department.is_none() => {
            principal.read_area("area_code", request.area_code.trim())?
        }
        role => {
            return Err(Error::PermissionDenied(format!(
                "the Party panel is the command screen's; a {} token has no part in it",
                role.as_str()
            )))
        }
    };
    if area.level() == whistle_domain::Level::Grid {
        return Err(Error::invalid(format!(
            "area_code {area}: the Party panel is kept for a community or above; members register with communities"
        )));
    }
    let prefix = format!("{}%", area.prefix());
    let (day, month) = day_and_month_start(now);

    // The children of the area and their names; a community has none (members register there).
    let children: Vec<(AreaCode, String)> = if area.level() == whistle_domain::Level::Community {
        Vec::new()
    } else {
        sqlx::query("SELECT code, name FROM org_units WHERE parent_code = $1 ORDER BY code")
            .bind(area.as_str())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let code: String = r.try_get(0)?;
                let code = code
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("org_units.code {code}: {e}")))?;
                Ok((code, r.try_get(1)?))
            })
            .collect::<Result<_>>()?
    };
    let name: String = sqlx::query_scalar("SELECT name FROM org_units WHERE code = $1")
        .bind(area.as_str())
        .fetch_optional(pool)
        .await?
        .unwrap_or_default();

    // Members and teams per community, summed into the children.
    let per_community = sqlx::query(
        "SELECT c.code,
                (SELECT count(*) FROM people p JOIN party_members pm ON pm.person_id = p.id
                 WHERE p.area_code = c.code AND p.role = 'member' AND p.left_at IS NULL
                   AND pm.deregistered_at IS NULL) AS members,
                (SELECT count(*) FROM volunteer_teams t WHERE t.community_code = c.code) AS teams
         FROM org_units c WHERE c.level = 'community' AND c.code LIKE $1",
    )
    .bind(&prefix)
    .fetch_all(pool)
    .await?;
    let mut total = v1::PartyArea {
        area_code: area.to_string(),
        name,
        ..Default::default()
    };
    let mut by_child: BTreeMap<String, v1::PartyArea> = children
        .iter()
        .map(|(code, name)| {
            (
                code.to_string(),
                v1::PartyArea {
                    area_code: code.to_string(),
                    name: name.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for row in &per_community {
        let code: String = row.try_get(0)?;
        let (members, teams) = (count(row.try_get(1)?), count(row.try_get(2)?));
        total.members += members;
        total.teams += teams;
        let community: AreaCode = code
            .parse()
            .map_err(|e| Error::Corrupt(format!("org_units.code {code}: {e}")))?;
        if let Some((child, _)) = children.iter().find(|(c, _)| c.contains(&community)) {
            let line = by_child
                .get_mut(child.as_str())
                .expect("every child has its line");
            line.members += members;
            line.teams += teams;
        }
    }

    let claims_today: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM volunteer_offer_timeline t
         JOIN volunteer_offers o ON o.id = t.offer_id
         WHERE t.kind = 'offer.claimed' AND t.at >= $2 AND o.community_code LIKE $1",
    )
    .bind(&prefix)
    .bind(day)
    .fetch_one(pool)
    .await?;

    let service = sqlx::query(
        "SELECT coalesce(sum(minutes), 0)::bigint, count(*) FROM service_ledger
         WHERE confirmed_at >= $2 AND community_code LIKE $1",
    )
    .bind(&prefix)
    .bind(month)
    .fetch_one(pool)
    .await?;
    let (minutes, confirmed): (i64, i64) = (service.try_get(0)?, service.try_get(1)?);

    let wishes = sqlx::query(
        "SELECT id, community_code, state->>'title' AS title, status, offered_at,
                count(*) OVER () AS open
         FROM volunteer_offers
         WHERE kind = 'wish' AND status IN ('open', 'claimed', 'done') AND community_code LIKE $1
         ORDER BY offered_at DESC, id DESC LIMIT $2",
    )
    .bind(&prefix)
    .bind(NEWEST_WISHES)
    .fetch_all(pool)
    .await?;
    let open_wishes = match wishes.first() {
        Some(row) => count(row.try_get("open")?),
        None => 0,
    };
    let newest_wishes = wishes
        .iter()
        .map(|r| {
            Ok(v1::PartyWish {
                offer_id: r.try_get::<uuid::Uuid, _>("id")?.to_string(),
                community_code: r.try_get("community_code")?,
                title: r.try_get::<Option<String>, _>("title")?.unwrap_or_default(),
                status: r.try_get("status")?,
                offered_at: Some(timestamp(r.try_get("offered_at")?)),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    // The endorsed (partial index on the timeline) and proactive (partial index on incidents)
    // incidents, kept to the open ones inside the area.
    let range = GridRange::of(&area);
    let marked_rows = sqlx::query(&format!(
        "WITH endorsed AS (
             SELECT incident_id, max(at) AS at FROM timeline
             WHERE kind = 'incident.endorsed' GROUP BY incident_id),
         marked AS (
             SELECT incident_id FROM endorsed
             UNION SELECT id FROM incidents WHERE origin = 'proactive')
         SELECT i.id, i.title, i.grid_code, e.at AS endorsed_at, i.origin = 'proactive' AS proactive,
                {OVERDUE} AS overdue
         FROM marked m JOIN incidents i ON i.id = m.incident_id
         LEFT JOIN endorsed e ON e.incident_id = i.id
         WHERE i.grid_code ~>=~ $1 AND i.grid_code ~<~ $2 AND i.status = ANY($3)
         ORDER BY e.at DESC NULLS LAST, i.due_at ASC NULLS LAST, i.id"
    ))
    .bind(&range.low)
    .bind(&range.high)
    .bind(convert::open_statuses())
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut marked = Vec::with_capacity(marked_rows.len().min(MAX_MARKED));
    let (mut endorsed_open, mut proactive_open) = (0u32, 0u32);
    for row in &marked_rows {
        let endorsed_at: Option<DateTime<Utc>> = row.try_get("endorsed_at")?;
        let proactive: bool = row.try_get("proactive")?;
        endorsed_open += u32::from(endorsed_at.is_some());
        proactive_open += u32::from(proactive);
        if marked.len() < MAX_MARKED {
            marked.push(v1::PartyMarkedIncident {
                incident_id: row.try_get::<uuid::Uuid, _>("id")?.to_string(),
                title: row.try_get("title")?,
                grid_code: row.try_get("grid_code")?,
                endorsed: endorsed_at.is_some(),
                proactive,
                endorsed_at: endorsed_at.map(timestamp),
                overdue: row.try_get("overdue")?,
            });
        }
    }

    Ok(v1::PartyPanel {
        area_code: area.to_string(),
        total: Some(total),
        children: by_child.into_values().collect(),
        claims_today: count(claims_today),
        service_minutes_month: u64::try_from(minutes.max(0)).unwrap_or_default(),
        confirmed_month: count(confirmed),
        open_wishes,
        newest_wishes,
        endorsed_open,
        proactive_open,
        marked,
        as_of: Some(timestamp(now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_and_the_month_begin_at_ordos_midnight() {
        // 2026-12-01 17:30 UTC is already 2 December, 01:30 in Ordos.
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 17, 30, 0).unwrap();
        let (day, month) = day_and_month_start(now);
        assert_eq!(day, Utc.with_ymd_and_hms(2026, 12, 1, 16, 0, 0).unwrap());
        assert_eq!(month, Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap());
    }
}
