//! The Party-building layer's volunteers in PostgreSQL (docs/party.md): the 双报到 registry
//! (seeded in one transaction of multi-row inserts), the offers a community makes and their
//! transitions, each under the offer's row lock (so of two members claiming at once the first the
//! database serialises wins), the claims' deadlines fired once, the service ledger written by a
//! confirmation, its leaderboards and the yearly evaluation per unit, and members' deregistration
//! and anonymisation.
//!
//! **Invariant:** every transition writes its timeline entry and its `offer.*` event (to the
//! outbox) in one place, [`append_step`], inside the transition's transaction: whatever path
//! changes an offer (a command, the claim deadline, a deregistration), its event is published
//! once the transaction commits, and never without it.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;
use whistle_domain::{
    incident::Satisfaction,
    policy::VolunteerRules,
    volunteer::{
        self, Accrual, Claimant, Input, NewOffer, Offer, OfferKind, Refusal, Registry, Step,
    },
    AreaCode, PersonId,
};

use crate::{
    audit::{self, Actor, Entry},
    outbox::{self, OutboxEvent},
    tokens, Error, Result,
};

/// What [`seed_registry`] inserted (rows already there are left as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistryCounts {
    pub units: u64,
    pub members: u64,
    pub teams: u64,
    pub memberships: u64,
}

/// Inserts the registry's units, members (a `people` row of role `member` and its
/// `party_members` row), teams and team memberships in one transaction, five multi-row inserts,
/// registered at `now`. Idempotent: what exists is kept (a member's later deregistration is not
/// undone by seeding again). One audit entry records the counts: a registry of tens of thousands
/// is one administrative act, and its people's phones do not belong on the log.
pub async fn seed_registry(
    pool: &PgPool,
    registry: &Registry,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<RegistryCounts> {
    let mut tx = pool.begin().await?;
    let units = &registry.units;
    let inserted_units = sqlx::query(
        "INSERT INTO party_units (id, name, community_code, registered_at)
         SELECT n.*, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS n
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(units.iter().map(|u| u.id.as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
    .bind(
        units
            .iter()
            .map(|u| u.community.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();

    let members = &registry.members;
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    sqlx::query(
        "INSERT INTO people (id, name, phone, role, area_code)
         SELECT id, name, phone, 'member', area FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
             AS n(id, name, phone, area)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>())
    .bind(members.iter().map(|m| m.phone.as_str()).collect::<Vec<_>>())
    .bind(members.iter().map(|m| m.community.to_string()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    // Skills travel as one comma-separated text each: UNNEST flattens a two-dimensional array.
    let inserted_members = sqlx::query(
        "INSERT INTO party_members (person_id, unit_id, skills, availability, registered_at)
         SELECT n.id, n.unit, string_to_array(n.skills, ','), n.availability, $5
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS n(id, unit, skills, availability)
         JOIN people p ON p.id = n.id AND p.role = 'member'
         ON CONFLICT (person_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(members.iter().map(|m| m.unit.as_str()).collect::<Vec<_>>())
    .bind(
        members
            .iter()
            .map(|m| {
                m.skills
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>(),
    )
    .bind(members.iter().map(|m| m.availability.as_str()).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();

    let teams = &registry.teams;
    let inserted_teams = sqlx::query(
        "INSERT INTO volunteer_teams (id, community_code, specialty, name, created_at)
         SELECT n.*, $5 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS n
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(teams.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())
    .bind(
        teams
            .iter()
            .map(|t| t.community.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(
        teams
            .iter()
            .map(|t| t.specialty.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(teams.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let (team_ids, person_ids): (Vec<&str>, Vec<&str>) = teams
        .iter()
        .flat_map(|t| t.members.iter().map(move |m| (t.id.as_str(), m.as_str())))
        .unzip();
    let inserted_memberships = sqlx::query(
        "INSERT INTO volunteer_team_members (team_id, person_id)
         SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&team_ids)
    .bind(&person_ids)
    .execute(&mut *tx)
    .await?
    .rows_affected();

    let counts = RegistryCounts {
        units: inserted_units,
        members: inserted_members,
        teams: inserted_teams,
        memberships: inserted_memberships,
    };
    if counts != RegistryCounts::default() {
        let entry = Entry {
            action: audit::action::VOLUNTEERS_SEED,
            target: "registry".into(),
            area_code: String::new(),
            before: None,
            after: Some(serde_json::json!({
                "units": counts.units,
                "members": counts.members,
                "teams": counts.teams,
                "memberships": counts.memberships,
            })),
        };
        audit::record(&mut tx, actor, now, &[entry]).await?;
    }
    tx.commit().await?;
    Ok(counts)
}

/// Why an offer's command was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Rule(#[from] Refusal),
    #[error("no offer {0}")]
    NoOffer(Uuid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
}

impl Refused {
    /// The command error code (`CommandError.code`) it is answered with.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Rule(refusal) => refusal.code(),
            Refused::NoOffer(_) | Refused::NotFound(_) => "not_found",
            Refused::Forbidden(_) => "forbidden",
        }
    }
}

/// An outcome the caller shows: done, or refused with a reason.
pub type Outcome<T> = std::result::Result<T, Refused>;

/// An offer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: Uuid,
    pub version: i64,
    pub offer: Offer,
}

/// Checks that `person` is the community's staff: a handler of the community or an operator
/// whose area holds it. Members never offer, confirm, rate or withdraw.
async fn check_staff(
    conn: &mut PgConnection,
    person: &PersonId,
    community: &AreaCode,
) -> Result<Outcome<()>> {
    let row = sqlx::query("SELECT role, area_code FROM people WHERE id = $1 AND left_at IS NULL")
        .bind(person.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let fits = match row {
        None => false,
        Some(row) => {
            let role: String = row.try_get(0)?;
            let area: Option<String> = row.try_get(1)?;
            let area: Option<AreaCode> = area.and_then(|a| a.parse().ok());
            match (role.as_str(), area) {
                ("handler", Some(area)) => area == *community,
                ("operator", Some(area)) => area.contains(community),
                _ => false,
            }
        }
    };
    Ok(if fits {
        Ok(())
    } else {
        Err(Refused::Forbidden(format!(
            "{person} is neither a handler of community {community} nor an operator over it"
        )))
    })
}

/// A community offers an incident of its level or a small wish to its volunteers (or one of its
/// teams). The offering person must be the community's staff; an incident must be handled at
/// that community, still in handling, of a category the policy lets volunteers take, and not
/// offered already.
pub async fn offer(
    pool: &PgPool,
    new: NewOffer,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
) -> Result<Outcome<Stored>> {
    let mut tx = pool.begin().await?;
    let outcome = offer_in(&mut tx, new, rules, now).await?;
    if outcome.is_ok() {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// [`offer`] in the caller's transaction (dispatch's command, committed with its reply); a
/// refusal has written nothing.
pub async fn offer_in(
    tx: &mut PgConnection,
    mut new: NewOffer,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
) -> Result<Outcome<Stored>> {
    if let Err(refused) = check_staff(&mut *tx, &new.offered_by, &new.community).await? {
        return Ok(Err(refused));
    }
    if let Some(team) = &new.team {
        let community: Option<String> =
            sqlx::query_scalar("SELECT community_code FROM volunteer_teams WHERE id = $1")
                .bind(team)
                .fetch_optional(&mut *tx)
                .await?;
        if community.as_deref() != Some(new.community.as_str()) {
            return Ok(Err(Refused::NotFound(format!(
                "no team {team} in community {}",
                new.community
            ))));
        }
    }
    let mut incident_id = None;
    if let OfferKind::Incident {
        incident_id: id,
        category,
    } = &mut new.kind
    {
        let Ok(uuid) = id.parse::<Uuid>() else {
            return Ok(Err(Refusal::Invalid(format!(
                "incident id {id:?} is not a UUID"
            ))
            .into()));
        };
        // The incident's row lock orders this offer after any transition in flight.
        let row = sqlx::query(
            "SELECT community_code, level, status, category FROM incidents WHERE id = $1 FOR SHARE",
        )
        .bind(uuid)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Refused::NotFound(format!("no incident {id}"))));
        };
        let (community, level, status, stored): (String, String, String, String) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        if community != new.community.as_str() {
            return Ok(Err(Refused::Forbidden(format!(
                "incident {id} is in community {community}, not {}",
                new.community
            ))));
        }
        if level != "community" || status != "handling" {
            return Ok(Err(Refusal::Invalid(format!(
                "only an incident the community itself is handling may be offered; {id} is {status} at {level} level"
            ))
            .into()));
        }
        // The category is the incident's, whatever the caller said.
        *category = stored
            .parse()
            .map_err(|e| Error::Corrupt(format!("incidents.category of {id}: {e}")))?;
        incident_id = Some(uuid);
    }
    let (offer, step) = match Offer::new(new, rules, now) {
        Ok(made) => made,
        Err(refusal) => return Ok(Err(refusal.into())),
    };
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO volunteer_offers (id, version, community_code, kind, incident_id, category, team_id,
                                       status, offered_at, updated_at, state)
         VALUES ($1, 1, $2, $3, $4, $5, $6, 'open', $7, $7, $8)
         ON CONFLICT (incident_id) WHERE incident_id IS NOT NULL AND status IN ('open', 'claimed', 'done')
         DO NOTHING",
    )
    .bind(id)
    .bind(offer.community.as_str())
    .bind(offer.kind.as_str())
    .bind(incident_id)
    .bind(match &offer.kind {
        OfferKind::Incident { category, .. } => Some(category.to_string()),
        OfferKind::Wish => None,
    })
    .bind(&offer.team)
    .bind(now)
    .bind(state_json(&offer)?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Err(Refusal::Invalid(
            "this incident is on offer to volunteers already".into(),
        )
        .into()));
    }
    append_step(&mut *tx, id, 1, &step, now, &offer).await?;
    Ok(Ok(Stored {
        id,
        version: 1,
        offer,
    }))
}

/// What a person does to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// A member claims (抢单).
    Claim {
        member: PersonId,
    },
    Release {
        member: PersonId,
        note: String,
    },
    Complete {
        member: PersonId,
        note: String,
        photos: Vec<String>,
        minutes: u32,
    },
    Confirm {
        by: PersonId,
        minutes: Option<u32>,
        rating: Option<Satisfaction>,
        note: String,
    },
    Rate {
        by: PersonId,
        rating: Satisfaction,
        note: String,
    },
    Withdraw {
        by: PersonId,
        reason: String,
    },
}

/// Applies `act` to the offer under its row lock: the state, its timeline entry and, for a
/// confirmation, the service ledger's row, in one transaction. The community's acts are checked
/// against its staff; a claim against the registry as it is now.
pub async fn act(
    pool: &PgPool,
    id: Uuid,
    what: Act,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
) -> Result<Outcome<Stored>> {
    let mut tx = pool.begin().await?;
    let outcome = act_in(&mut tx, id, what, rules, now).await?;
    if outcome.is_ok() {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// [`act`] in the caller's transaction; a refusal has written nothing.
pub async fn act_in(
    tx: &mut PgConnection,
    id: Uuid,
    act: Act,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
) -> Result<Outcome<Stored>> {
    let Some(stored) = lock(&mut *tx, id).await? else {
        return Ok(Err(Refused::NoOffer(id)));
    };
    let input = match act {
        Act::Claim { member } => Input::Claim(claimant(&mut *tx, &member).await?),
        Act::Release { member, note } => Input::Release { member, note },
        Act::Complete {
            member,
            note,
            photos,
            minutes,
        } => Input::Complete {
            member,
            note,
            photos,
            minutes,
        },
        Act::Confirm {
            by,
            minutes,
            rating,
            note,
        } => {
            if let Err(refused) = check_staff(&mut *tx, &by, &stored.offer.community).await? {
                return Ok(Err(refused));
            }
            Input::Confirm {
                by,
                minutes,
                rating,
                note,
            }
        }
        Act::Rate { by, rating, note } => {
            if let Err(refused) = check_staff(&mut *tx, &by, &stored.offer.community).await? {
                return Ok(Err(refused));
            }
            Input::Rate { by, rating, note }
        }
        Act::Withdraw { by, reason } => {
            if let Err(refused) = check_staff(&mut *tx, &by, &stored.offer.community).await? {
                return Ok(Err(refused));
            }
            Input::Withdraw { by, reason }
        }
    };
    let (offer, step, accrual) = match volunteer::apply(&stored.offer, input, rules, now) {
        Ok(applied) => applied,
        Err(refusal) => return Ok(Err(refusal.into())),
    };
    let saved = save(&mut *tx, &stored, offer, &step, accrual, now).await?;
    Ok(Ok(saved))
}

/// Returns the offers whose claim's deadline passed by `now` (at most `limit`), each in the
/// transaction that fires them; offers another transaction holds are left to the next round.
/// The status and the deadline are read under the lock, so a claim done, released or fired
/// meanwhile is not returned again: each deadline fires once.
pub async fn fire_due(
    pool: &PgPool,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, version, state FROM volunteer_offers
         WHERE status = 'claimed' AND claim_deadline <= $1
         ORDER BY claim_deadline, id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut fired = Vec::with_capacity(rows.len());
    for row in rows {
        let stored = from_row(&row)?;
        // Not due by the pure rules (a clock behind PostgreSQL's row) or no longer claimed: skip.
        if let Ok((offer, step, _)) =
            volunteer::apply(&stored.offer, Input::ClaimDeadline, rules, now)
        {
            save(&mut tx, &stored, offer, &step, None, now).await?;
            fired.push(stored.id);
        }
    }
    tx.commit().await?;
    Ok(fired)
}

/// The earliest claim deadline still to fire, for the loop's sleep.
pub async fn next_deadline(pool: &PgPool) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT min(claim_deadline) FROM volunteer_offers WHERE status = 'claimed'",
    )
    .fetch_one(pool)
    .await?)
}

/// One offer.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Stored>> {
    let row = sqlx::query("SELECT id, version, state FROM volunteer_offers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The offers of a community a member may see, newest first: open ones for the whole
/// community or a team of theirs, and those they hold.
pub async fn offers_for_member(
    pool: &PgPool,
    member: &PersonId,
    limit: i64,
) -> Result<Vec<Stored>> {
    let rows = sqlx::query(
        "SELECT o.id, o.version, o.state FROM volunteer_offers o
         JOIN people p ON p.id = $1 AND p.role = 'member' AND p.left_at IS NULL
         JOIN party_members pm ON pm.person_id = p.id AND pm.deregistered_at IS NULL
         WHERE o.community_code = p.area_code
           AND ((o.status = 'open' AND (o.team_id IS NULL OR o.team_id IN
                   (SELECT team_id FROM volunteer_team_members WHERE person_id = p.id)))
                OR o.claimed_by = p.id)
         ORDER BY o.offered_at DESC, o.id DESC LIMIT $2",
    )
    .bind(member.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// An offer's timeline: `(seq, kind, actor, at, note)`.
pub async fn timeline(
    pool: &PgPool,
    id: Uuid,
) -> Result<Vec<(i32, String, String, DateTime<Utc>, String)>> {
    let rows = sqlx::query(
        "SELECT seq, kind, actor_id, at, note FROM volunteer_offer_timeline WHERE offer_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })
        .collect()
}

async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Stored>> {
    let row =
        sqlx::query("SELECT id, version, state FROM volunteer_offers WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    row.as_ref().map(from_row).transpose()
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Stored> {
    let id: Uuid = row.try_get("id")?;
    let state: serde_json::Value = row.try_get("state")?;
    Ok(Stored {
        id,
        version: row.try_get("version")?,
        offer: serde_json::from_value(state)
            .map_err(|e| Error::Corrupt(format!("volunteer_offers.state of {id}: {e}")))?,
    })
}

fn state_json(offer: &Offer) -> Result<serde_json::Value> {
    serde_json::to_value(offer).map_err(|e| Error::Corrupt(format!("an offer as JSON: {e}")))
}

/// The registry's view of a member about to claim.
async fn claimant(conn: &mut PgConnection, member: &PersonId) -> Result<Claimant> {
    let row = sqlx::query(
        "SELECT p.area_code,
                array(SELECT team_id FROM volunteer_team_members WHERE person_id = p.id ORDER BY team_id)
         FROM people p JOIN party_members pm ON pm.person_id = p.id
         WHERE p.id = $1 AND p.role = 'member' AND p.left_at IS NULL AND pm.deregistered_at IS NULL",
    )
    .bind(member.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => Claimant {
            member: member.clone(),
            community: None,
            teams: Vec::new(),
        },
        Some(row) => {
            let area: Option<String> = row.try_get(0)?;
            Claimant {
                member: member.clone(),
                community: area
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(|e| Error::Corrupt(format!("people.area_code of {member}: {e}")))?,
                teams: row.try_get(1)?,
            }
        }
    })
}

/// Writes a transition over the version read under the lock: the row, its timeline entry and a
/// confirmation's service ledger row (or a rating on it).
async fn save(
    conn: &mut PgConnection,
    before: &Stored,
    offer: Offer,
    step: &Step,
    accrual: Option<Accrual>,
    now: DateTime<Utc>,
) -> Result<Stored> {
    let updated = sqlx::query(
        "UPDATE volunteer_offers SET version = version + 1, status = $3, claimed_by = $4,
             claim_deadline = $5, updated_at = $6, state = $7
         WHERE id = $1 AND version = $2",
    )
    .bind(before.id)
    .bind(before.version)
    .bind(offer.status.as_str())
    .bind(offer.status.member().map(|m| m.as_str()))
    .bind(offer.status.deadline())
    .bind(now)
    .bind(state_json(&offer)?)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(Error::Corrupt(format!(
            "offer {} changed under its row lock",
            before.id
        )));
    }
    append_step(conn, before.id, before.version + 1, step, now, &offer).await?;
    if let Some(accrual) = accrual {
        sqlx::query(
            "INSERT INTO service_ledger (offer_id, person_id, unit_id, team_id, community_code,
                                         minutes, points, rating, confirmed_at)
             SELECT $1, pm.person_id, pm.unit_id, $3, $4, $5, $6, $7, $8
             FROM party_members pm WHERE pm.person_id = $2",
        )
        .bind(before.id)
        .bind(accrual.member.as_str())
        .bind(&offer.team)
        .bind(offer.community.as_str())
        .bind(accrual.minutes as i32)
        .bind(accrual.points as i32)
        .bind(accrual.rating.map(|r| r.as_str()))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    if step.kind == "offer.rated" {
        if let volunteer::OfferStatus::Confirmed {
            rating: Some(rating),
            ..
        } = &offer.status
        {
            sqlx::query("UPDATE service_ledger SET rating = $2 WHERE offer_id = $1")
                .bind(before.id)
                .bind(rating.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(Stored {
        id: before.id,
        version: before.version + 1,
        offer,
    })
}

/// The timeline entry of a step and its event, in the caller's transaction; `version` is the
/// offer's after the step.
async fn append_step(
    conn: &mut PgConnection,
    id: Uuid,
    version: i64,
    step: &Step,
    now: DateTime<Utc>,
    offer: &Offer,
) -> Result<()> {
    let event = offer_event(id, version, step, now, offer);
    outbox::insert(&mut *conn, std::iter::once(&event)).await?;
    // The data a screen shows beside the note: the holder, the deadline, the work's photos and time.
    let data = match &offer.status {
        volunteer::OfferStatus::Claimed {
            member, deadline, ..
        } => serde_json::json!({ "member": member, "deadline": deadline }),
        volunteer::OfferStatus::Done {
            member,
            photos,
            minutes,
            ..
        } => serde_json::json!({ "member": member, "photos": photos, "minutes": minutes }),
        volunteer::OfferStatus::Confirmed {
            member,
            minutes,
            points,
            rating,
            ..
        } => {
            serde_json::json!({ "member": member, "minutes": minutes, "points": points, "rating": rating })
        }
        _ => serde_json::Value::Null,
    };
    sqlx::query(
        "INSERT INTO volunteer_offer_timeline (offer_id, seq, kind, actor_id, at, note, data)
         SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5, $6
         FROM volunteer_offer_timeline WHERE offer_id = $1",
    )
    .bind(id)
    .bind(step.kind)
    .bind(&step.actor)
    .bind(now)
    .bind(&step.note)
    .bind((!data.is_null()).then_some(data))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The `offer.*` event of a step, on `whistle.event.{district}.{street}.{kind}` of the offer's
/// community. Members are named by id only, as in the offers' reads (docs/party.md, personal data).
pub fn offer_event(
    id: Uuid,
    version: i64,
    step: &Step,
    now: DateTime<Utc>,
    offer: &Offer,
) -> OutboxEvent {
    use whistle_domain::Level;
    use whistle_proto::v1;
    use whistle_wire::convert::{satisfaction_to_proto, timestamp};
    let at = |level| {
        offer
            .community
            .at_level(level)
            .map(|c| c.to_string())
            .unwrap_or_default()
    };
    let (minutes, points, rating) = match &offer.status {
        volunteer::OfferStatus::Confirmed {
            minutes,
            points,
            rating,
            ..
        } => (*minutes, *points, *rating),
        volunteer::OfferStatus::Done { minutes, .. } => (*minutes, 0, None),
        _ => (0, 0, None),
    };
    let incident_id = match &offer.kind {
        OfferKind::Incident { incident_id, .. } => incident_id.clone(),
        OfferKind::Wish => String::new(),
    };
    let event_id = Uuid::now_v7();
    let event = v1::Event {
        event_id: event_id.to_string(),
        kind: step.kind.to_owned(),
        occurred_at: Some(timestamp(now)),
        incident_id,
        district_code: at(Level::District),
        street_code: at(Level::Street),
        community_code: offer.community.to_string(),
        grid_code: String::new(),
        actor_id: step.actor.clone(),
        body: Some(v1::event::Body::OfferChanged(v1::OfferChanged {
            offer_id: id.to_string(),
            version: version.max(0) as u64,
            status: offer.status.as_str().to_owned(),
            member_id: offer
                .status
                .member()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            claim_deadline: offer.status.deadline().map(timestamp),
            minutes,
            points,
            offer_kind: offer.kind.as_str().to_owned(),
            title: offer.title.clone(),
            team_id: offer.team.clone().unwrap_or_default(),
            note: step.note.clone(),
            rating: rating.map_or(0, |r| satisfaction_to_proto(r) as i32),
        })),
    };
    OutboxEvent {
        event_id,
        subject: whistle_wire::subject::incident_event(
            &event.district_code,
            &event.street_code,
            step.kind,
        ),
        payload: prost::Message::encode_to_vec(&event),
    }
}

/// One line of a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// A member's person id, a team's or a unit's id.
    pub key: String,
    /// The member's name (personal data: the caller masks it by role), or the team's or unit's.
    pub name: String,
    pub confirmed: i64,
    pub minutes: i64,
    pub points: i64,
}

/// What a leaderboard ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// The members registered with the area's communities.
    Members,
    /// The area's teams.
    Teams,
    /// The units whose members served in the area.
    Units,
}

/// The leaderboard of `board` over the confirmed work in `area` between `from` (inclusive) and
/// `to`, by points, then time, then key; at most `limit` lines.
pub async fn leaderboard(
    pool: &PgPool,
    board: Board,
    area: &AreaCode,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Standing>> {
    let (key, name, join) = match board {
        Board::Members => (
            "l.person_id",
            "p.name",
            "JOIN people p ON p.id = l.person_id",
        ),
        Board::Teams => (
            "l.team_id",
            "t.name",
            "JOIN volunteer_teams t ON t.id = l.team_id",
        ),
        Board::Units => (
            "l.unit_id",
            "u.name",
            "JOIN party_units u ON u.id = l.unit_id",
        ),
    };
    let sql = format!(
        "SELECT {key} AS key, {name} AS name, count(*) AS confirmed,
                sum(l.minutes)::bigint AS minutes, sum(l.points)::bigint AS points
         FROM service_ledger l {join}
         WHERE l.community_code LIKE $1 AND l.confirmed_at >= $2 AND l.confirmed_at < $3
         GROUP BY 1, 2 ORDER BY points DESC, minutes DESC, key LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(format!("{}%", area.prefix()))
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Standing {
                key: r.try_get("key")?,
                name: r.try_get("name")?,
                confirmed: r.try_get("confirmed")?,
                minutes: r.try_get("minutes")?,
                points: r.try_get("points")?,
            })
        })
        .collect()
}

/// A unit's year for its evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitYear {
    pub unit_id: String,
    pub unit_name: String,
    /// The community its Party organisation registered with.
    pub community_code: String,
    pub service: volunteer::UnitService,
}

/// Every unit registered inside `area` with its members' service in `year` (Ordos local
/// calendar year, UTC+8): members registered at any time of the year, those who served, and the
/// confirmed work's time, points and ratings. Ordered by unit id.
pub async fn unit_years(pool: &PgPool, area: &AreaCode, year: i32) -> Result<Vec<UnitYear>> {
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let start = ordos
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| Error::Invalid(format!("no year {year}")))?
        .with_timezone(&Utc);
    let end = ordos
        .with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| Error::Invalid(format!("no year {}", year + 1)))?
        .with_timezone(&Utc);
    let rows = sqlx::query(
        "WITH registered AS (
             SELECT pm.unit_id, count(*) AS registered FROM party_members pm
             WHERE pm.registered_at < $3 AND (pm.deregistered_at IS NULL OR pm.deregistered_at >= $2)
             GROUP BY 1),
         served AS (
             SELECT l.unit_id, count(DISTINCT l.person_id) AS served, count(*) AS confirmed,
                    sum(l.minutes) AS minutes, sum(l.points) AS points,
                    count(*) FILTER (WHERE l.rating = 'satisfied') AS satisfied,
                    count(*) FILTER (WHERE l.rating = 'basically_satisfied') AS basically,
                    count(*) FILTER (WHERE l.rating = 'unsatisfied') AS unsatisfied
             FROM service_ledger l WHERE l.confirmed_at >= $2 AND l.confirmed_at < $3
             GROUP BY 1)
         SELECT u.id, u.name, u.community_code,
                coalesce(r.registered, 0)::bigint AS registered, coalesce(s.served, 0)::bigint AS served,
                coalesce(s.confirmed, 0)::bigint AS confirmed, coalesce(s.minutes, 0)::bigint AS minutes,
                coalesce(s.points, 0)::bigint AS points, coalesce(s.satisfied, 0)::bigint AS satisfied,
                coalesce(s.basically, 0)::bigint AS basically, coalesce(s.unsatisfied, 0)::bigint AS unsatisfied
         FROM party_units u
         LEFT JOIN registered r ON r.unit_id = u.id
         LEFT JOIN served s ON s.unit_id = u.id
         WHERE u.community_code LIKE $1
         ORDER BY u.id",
    )
    .bind(format!("{}%", area.prefix()))
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let count = |r: &sqlx::postgres::PgRow, c: &str| -> Result<u32> {
        Ok(u32::try_from(r.try_get::<i64, _>(c)?).unwrap_or(u32::MAX))
    };
    rows.iter()
        .map(|r| {
            Ok(UnitYear {
                unit_id: r.try_get("id")?,
                unit_name: r.try_get("name")?,
                community_code: r.try_get("community_code")?,
                service: volunteer::UnitService {
                    registered: count(r, "registered")?,
                    served: count(r, "served")?,
                    confirmed: count(r, "confirmed")?,
                    minutes: r.try_get::<i64, _>("minutes")?.max(0) as u64,
                    points: r.try_get::<i64, _>("points")?.max(0) as u64,
                    satisfied: count(r, "satisfied")?,
                    basically_satisfied: count(r, "basically")?,
                    unsatisfied: count(r, "unsatisfied")?,
                },
            })
        })
        .collect()
}

/// A member leaves the registry (they moved, left the Party's in-service roll, or asked): their
/// registration ends now, their tokens are revoked, an offer they hold goes back to the
/// community, all in one transaction on the audit log. Their name and phone stay until the
/// retention job anonymises them ([`anonymise_deregistered`]). Returns false if they were not
/// registered.
pub async fn deregister(
    pool: &PgPool,
    member: &PersonId,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let area: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE party_members pm SET deregistered_at = $2
         FROM people p WHERE pm.person_id = $1 AND p.id = pm.person_id AND pm.deregistered_at IS NULL
         RETURNING p.area_code",
    )
    .bind(member.as_str())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(area) = area else {
        return Ok(false);
    };
    let held: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM volunteer_offers WHERE claimed_by = $1 AND status = 'claimed' ORDER BY id FOR UPDATE",
    )
    .bind(member.as_str())
    .fetch_all(&mut *tx)
    .await?;
    for id in held {
        if let Some(stored) = lock(&mut tx, id).await? {
            let input = Input::Release {
                member: member.clone(),
                note: "registration ended".into(),
            };
            if let Ok((offer, step, _)) = volunteer::apply(&stored.offer, input, rules, now) {
                save(&mut tx, &stored, offer, &step, None, now).await?;
            }
        }
    }
    tokens::revoke_person(&mut tx, member.as_str(), now, actor).await?;
    let entry = Entry {
        action: audit::action::VOLUNTEERS_DEREGISTER,
        target: member.to_string(),
        area_code: area.unwrap_or_default(),
        before: None,
        after: Some(serde_json::json!({ "deregistered_at": now })),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(true)
}

/// The name a member's row keeps once anonymised.
pub const ANONYMISED_NAME: &str = "已注销党员";

/// The retention job's part: members whose registration ended have their name and phone erased
/// (the id stays, a pseudonym, so the service ledger and timelines still add up), leave `people`
/// and are stamped `anonymised_at`; one audit entry per member, without the erased values.
/// Returns how many.
pub async fn anonymise_deregistered(
    pool: &PgPool,
    now: DateTime<Utc>,
    actor: &Actor,
    limit: i64,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "WITH due AS (
             SELECT person_id FROM party_members
             WHERE deregistered_at IS NOT NULL AND anonymised_at IS NULL AND deregistered_at <= $1
             ORDER BY deregistered_at LIMIT $2 FOR UPDATE SKIP LOCKED),
         stamped AS (
             UPDATE party_members pm SET anonymised_at = $1 FROM due WHERE pm.person_id = due.person_id
             RETURNING pm.person_id)
         UPDATE people p SET name = $3, phone = '', left_at = coalesce(p.left_at, $1)
         FROM stamped WHERE p.id = stamped.person_id
         RETURNING p.id, p.area_code",
    )
    .bind(now)
    .bind(limit)
    .bind(ANONYMISED_NAME)
    .fetch_all(&mut *tx)
    .await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(Entry {
                action: audit::action::VOLUNTEERS_ANONYMISE,
                target: r.try_get("id")?,
                area_code: r
                    .try_get::<Option<String>, _>("area_code")?
                    .unwrap_or_default(),
                before: None,
                after: Some(serde_json::json!({ "name": ANONYMISED_NAME, "phone": "" })),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    audit::record(&mut tx, actor, now, &entries).await?;
    tx.commit().await?;
    Ok(entries.len() as u64)
}

/// The year of `at` on Ordos' calendar (UTC+8), for the evaluation's default.
pub fn ordos_year(at: DateTime<Utc>) -> i32 {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset"))
        .year()
}

/// The offers of the communities inside `area`, newest first; `live_only` keeps those still
/// open, claimed or done.
pub async fn offers_in_area(
    pool: &PgPool,
    area: &AreaCode,
    live_only: bool,
    limit: i64,
) -> Result<Vec<Stored>> {
    let rows = sqlx::query(
        "SELECT id, version, state FROM volunteer_offers
         WHERE community_code LIKE $1 AND (NOT $2 OR status IN ('open', 'claimed', 'done'))
         ORDER BY offered_at DESC, id DESC LIMIT $3",
    )
    .bind(format!("{}%", area.prefix()))
    .bind(live_only)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// A member's community while they are registered: what their token's reads are limited to.
pub async fn member_community(pool: &PgPool, member: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT p.area_code FROM people p JOIN party_members pm ON pm.person_id = p.id
         WHERE p.id = $1 AND p.role = 'member' AND p.left_at IS NULL AND pm.deregistered_at IS NULL",
    )
    .bind(member)
    .fetch_optional(pool)
    .await?
    .flatten())
}
