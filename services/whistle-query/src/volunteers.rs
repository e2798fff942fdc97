//! `ListOffers` and `GetServiceBoard` (docs/party.md): the volunteers' offers and the service
//! ledger's leaderboards. A member's token reads its own community only — the community it is
//! registered with now, which must still be the token's — and the offers it may claim or holds;
//! operators and viewers read their area. Members' names on a board are always masked.

use chrono::{TimeZone, Utc};
use sqlx::PgPool;
use whistle_domain::{volunteer, AreaCode, PersonId};
use whistle_proto::v1;
use whistle_store::{
    tokens::Role,
    volunteers::{self, Board, Stored},
};
use whistle_wire::convert::timestamp;

use crate::{auth::Principal, Error, Result};

const DEFAULT_OFFERS: u32 = 200;
const DEFAULT_BOARD: u32 = 20;
const MAX_ROWS: u32 = 200;

fn store(e: whistle_store::Error) -> Error {
    match e {
        whistle_store::Error::Database(e) => Error::Database(e),
        other => Error::Corrupt(other.to_string()),
    }
}

fn rows(page_size: u32, default: u32) -> Result<i64> {
    match page_size {
        0 => Ok(i64::from(default)),
        n if n <= MAX_ROWS => Ok(i64::from(n)),
        n => Err(Error::invalid(format!("page_size {n}: at most {MAX_ROWS}"))),
    }
}

/// Who may read which liners: liaisons and grid workers have no part in the volunteers'
/// offers; a member reads only while registered with the token's community.
async fn scope(pool: &PgPool, principal: &Principal, requested: &str) -> Result<Scope> {
    match principal.role {
        Role::Member => {
            let person = principal.actor()?.to_owned();
            let registered = volunteers::member_community(pool, &person)
                .await
                .map_err(store)?;
            if registered.as_deref() != Some(principal.area.as_str()) {
                return Err(Error::PermissionDenied(format!(
                    "{person} is no longer registered with community {}",
                    principal.area
                )));
            }
            if !requested.is_empty() && requested != principal.area.as_str() {
                return Err(principal.outside(
                    &requested
                        .parse()
                        .map_err(|e| Error::invalid(format!("area_code: {e}")))?,
                ));
            }
            Ok(Scope::Member(
                person
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("the token's person: {e}")))?,
                principal.area.clone(),
            ))
        }
        Role::Operator | Role::Viewer if principal.department.is_none() => {
            Ok(Scope::Area(principal.read_area("area_code", requested)?))
        }
        role => Err(Error::PermissionDenied(format!(
            "a {} token has no part in the volunteers' offers",
            role.as_str()
        ))),
    }
}

enum Scope {
    Member(PersonId, AreaCode),
    Area(AreaCode),
}

pub(crate) async fn list_offers(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::ListOffersRequest,
) -> Result<v1::ListOffersResponse> {
    let limit = rows(request.page_size, DEFAULT_OFFERS)?;
    let offers = match scope(pool, principal, request.area_code.trim()).await? {
        Scope::Member(person, _) => volunteers::offers_for_member(pool, &person, limit).await,
        Scope::Area(area) => {
            volunteers::offers_in_area(pool, &area, request.live_only, limit).await
        }
    }
    .map_err(store)?;
    Ok(v1::ListOffersResponse {
        offers: offers.iter().map(offer_to_proto).collect(),
    })
}

fn offer_to_proto(stored: &Stored) -> v1::VolunteerOffer {
    let offer = &stored.offer;
    let (incident_id, category) = match &offer.kind {
        volunteer::OfferKind::Incident {
            incident_id,
            category,
        } => (incident_id.clone(), category.to_string()),
        volunteer::OfferKind::Wish => (String::new(), String::new()),
    };
    let (minutes, points) = match &offer.status {
        volunteer::OfferStatus::Confirmed {
            minutes, points, ..
        } => (*minutes, *points),
        _ => (0, 0),
    };
    v1::VolunteerOffer {
        offer_id: stored.id.to_string(),
        community_code: offer.community.to_string(),
        kind: offer.kind.as_str().to_owned(),
        incident_id,
        category,
        title: offer.title.clone(),
        detail: offer.detail.clone(),
        team_id: offer.team.clone().unwrap_or_default(),
        status: offer.status.as_str().to_owned(),
        member_id: offer
            .status
            .member()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        claim_deadline: offer.status.deadline().map(timestamp),
        offered_at: Some(timestamp(offer.offered_at)),
        minutes,
        points,
        returns: offer.returns,
    }
}

pub(crate) async fn service_board(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::GetServiceBoardRequest,
    now: chrono::DateTime<Utc>,
) -> Result<v1::ServiceBoard> {
    let limit = rows(request.page_size, DEFAULT_BOARD)?;
    let area = match scope(pool, principal, request.area_code.trim()).await? {
        Scope::Member(_, community) => community,
        Scope::Area(area) => area,
    };
    let board = match v1::ServiceBoardKind::try_from(request.kind) {
        Ok(v1::ServiceBoardKind::Members) => Board::Members,
        Ok(v1::ServiceBoardKind::Teams) => Board::Teams,
        Ok(v1::ServiceBoardKind::Units) => Board::Units,
        _ => return Err(Error::invalid("kind: members, teams or units")),
    };
    let year = if request.year == 0 {
        volunteers::ordos_year(now)
    } else {
        request.year
    };
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let start = |y: i32, m: u32| {
        ordos
            .with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Error::invalid(format!("year {y} is out of range")))
    };
    if !(2000..=9998).contains(&year) {
        return Err(Error::invalid(format!("year {year}: 2000 to 9998")));
    }
    // A month of the year (a member's page shows this month beside the year), or the year.
    let (from, until) = match request.month {
        0 => (start(year, 1)?, start(year + 1, 1)?),
        12 => (start(year, 12)?, start(year + 1, 1)?),
        m @ 1..=11 => (start(year, m)?, start(year, m + 1)?),
        m => {
            return Err(Error::invalid(format!(
                "month {m}: 1 to 12, or 0 for the year"
            )))
        }
    };
    let lines = volunteers::leaderboard(pool, board, &area, from, until, limit)
        .await
        .map_err(store)?;
    Ok(v1::ServiceBoard {
        year,
        rows: lines
            .into_iter()
            .enumerate()
            .map(|(rank, line)| v1::ServiceStanding {
                rank: rank as u32 + 1,
                name: match board {
                    Board::Members => volunteer::mask_name(&line.name),
                    Board::Teams | Board::Units => line.name,
                },
                key: line.key,
                confirmed: line.confirmed.max(0) as u64,
                hours: line.minutes as f64 / 60.0,
                points: line.points.max(0) as u64,
            })
            .collect(),
    })
}
