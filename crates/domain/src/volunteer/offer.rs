//! What a community offers its volunteers, and the pure rules of an offer's life:
//! offered → claimed (抢单/认领, first come) → done (a note, photos, the time spent) → confirmed by
//! the community (hours and points accrue) and rated; a claim not done by its deadline returns the
//! offer to the community's list. The store runs each transition under the offer's row lock, so
//! the first claim the database serialises is the one that wins.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::service::points_for;
use crate::{
    incident::Satisfaction, photo, policy::VolunteerRules, AreaCode, CategoryCode, PersonId,
};

/// Longest title of an offer, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest note (the detail, what was done, a withdrawal's reason), in characters.
pub const NOTE_MAX: usize = 2_000;

/// What is offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OfferKind {
    /// A community-level incident of a category the policy lets volunteers take. The incident
    /// stays on its own lifecycle and deadlines: the volunteers help the community handle it.
    Incident {
        incident_id: String,
        category: CategoryCode,
    },
    /// 微心愿: a resident's small need that is not a complaint (a lift to hospital, a light bulb
    /// changed for a widower, help with a form). No department owes it, so no SLA runs on it.
    Wish,
}

impl OfferKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OfferKind::Incident { .. } => "incident",
            OfferKind::Wish => "wish",
        }
    }
}

/// Where an offer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OfferStatus {
    /// On the community's list (or its team's), for the first member to claim.
    Open,
    /// Claimed by one member, who must mark it done before `deadline`.
    Claimed {
        member: PersonId,
        claimed_at: DateTime<Utc>,
        deadline: DateTime<Utc>,
    },
    /// The member says it is done; waiting for the community to confirm.
    Done {
        member: PersonId,
        claimed_at: DateTime<Utc>,
        done_at: DateTime<Utc>,
        note: String,
        photos: Vec<String>,
        minutes: u32,
    },
    /// Confirmed by the community: the service ledger holds its hours and points.
    Confirmed {
        member: PersonId,
        done_at: DateTime<Utc>,
        confirmed_by: PersonId,
        confirmed_at: DateTime<Utc>,
        minutes: u32,
        points: u32,
        rating: Option<Satisfaction>,
    },
    /// Taken back by the community before anyone did it.
    Withdrawn { at: DateTime<Utc>, reason: String },
}

impl OfferStatus {
    /// As in the `volunteer_offers.status` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            OfferStatus::Open => "open",
            OfferStatus::Claimed { .. } => "claimed",
            OfferStatus::Done { .. } => "done",
            OfferStatus::Confirmed { .. } => "confirmed",
            OfferStatus::Withdrawn { .. } => "withdrawn",
        }
    }

    /// The member holding the offer (claimed, done or confirmed).
    pub fn member(&self) -> Option<&PersonId> {
        match self {
            OfferStatus::Claimed { member, .. }
            | OfferStatus::Done { member, .. }
            | OfferStatus::Confirmed { member, .. } => Some(member),
            OfferStatus::Open | OfferStatus::Withdrawn { .. } => None,
        }
    }

    /// The claim's deadline, the offer's one timer.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        match self {
            OfferStatus::Claimed { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// An offer of a community to its volunteers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub community: AreaCode,
    #[serde(flatten)]
    pub kind: OfferKind,
    pub title: String,
    #[serde(default)]
    pub detail: String,
    /// Offered to one team's members only; `None`: to every member registered with the community.
    pub team: Option<String>,
    pub offered_by: PersonId,
    pub offered_at: DateTime<Utc>,
    pub status: OfferStatus,
    /// Claims that lapsed at their deadline or were given back.
    #[serde(default)]
    pub returns: u32,
}

/// What the community offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOffer {
    pub community: AreaCode,
    pub kind: OfferKind,
    pub title: String,
    pub detail: String,
    pub team: Option<String>,
    pub offered_by: PersonId,
}

/// A member who wants to claim, as the registry knows them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub member: PersonId,
    /// The community they are registered with; `None` if they are not (or no longer) registered.
    pub community: Option<AreaCode>,
    /// The teams they belong to.
    pub teams: Vec<String>,
}

/// One input to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// 抢单/认领.
    Claim(Claimant),
    /// The claimant gives it back before the deadline.
    Release { member: PersonId, note: String },
    /// The claimant marks it done.
    Complete {
        member: PersonId,
        note: String,
        photos: Vec<String>,
        minutes: u32,
    },
    /// The community confirms the work; `minutes` corrects the time the member gave.
    Confirm {
        by: PersonId,
        minutes: Option<u32>,
        rating: Option<Satisfaction>,
        note: String,
    },
    /// The community records the resident's rating of confirmed work (once).
    Rate {
        by: PersonId,
        rating: Satisfaction,
        note: String,
    },
    /// The community takes back an offer nobody has done.
    Withdraw { by: PersonId, reason: String },
    /// The claim's deadline passed (the durable timer).
    ClaimDeadline,
}

/// Every kind a [`Step`] has: the offer's timeline entries and its events on `WHISTLE_EVENTS`.
pub const EVENT_KINDS: [&str; 8] = [
    "offer.created",
    "offer.claimed",
    "offer.released",
    "offer.returned",
    "offer.done",
    "offer.confirmed",
    "offer.rated",
    "offer.withdrawn",
];

/// The timeline entry of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `offer.created`, `offer.claimed`, `offer.released`, `offer.done`, `offer.confirmed`,
    /// `offer.rated`, `offer.withdrawn`, `offer.returned`.
    pub kind: &'static str,
    pub actor: String,
    pub note: String,
}

/// Hours and points accrued by a confirmation: one service ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accrual {
    pub member: PersonId,
    pub minutes: u32,
    pub points: u32,
    pub rating: Option<Satisfaction>,
}

/// Why an offer or a transition is refused; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("category {0} is a department's duty: the policy does not let volunteers take it")]
    Reserved(CategoryCode),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not a Party member registered with a community")]
    NotRegistered(PersonId),
    #[error("{member} is registered with {registered}, not with {community}")]
    OtherCommunity {
        member: PersonId,
        registered: AreaCode,
        community: AreaCode,
    },
    #[error("this offer is for the members of team {0} only")]
    NotInTeam(String),
    #[error("already claimed by another member")]
    AlreadyClaimed,
    #[error("{member} does not hold this offer")]
    NotClaimant { member: PersonId },
    #[error("the claim lapsed at {0}; the offer goes back to the community")]
    Lapsed(DateTime<Utc>),
    #[error("the offer is {0}, so it cannot be {1}")]
    Status(&'static str, &'static str),
    #[error("the claim's deadline {0} has not passed")]
    NotDue(DateTime<Utc>),
}

impl Refusal {
    /// The command error code it is answered with.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Reserved(_) | Refusal::Invalid(_) => "invalid_argument",
            Refusal::NotRegistered(_)
            | Refusal::OtherCommunity { .. }
            | Refusal::NotInTeam(_)
            | Refusal::NotClaimant { .. } => "forbidden",
            Refusal::AlreadyClaimed
            | Refusal::Lapsed(_)
            | Refusal::Status(..)
            | Refusal::NotDue(_) => "invalid_transition",
        }
    }
}

fn text(what: &str, value: &str, required: bool, max: usize) -> Result<String, Refusal> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(Refusal::Invalid(format!("{what} is required")));
    }
    if value.chars().count() > max {
        return Err(Refusal::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Refusal::Invalid(format!(
            "{what} holds a control character"
        )));
    }
    Ok(value.to_owned())
}

fn minutes_in_range(minutes: u32, rules: &VolunteerRules) -> Result<u32, Refusal> {
    if minutes == 0 || minutes > rules.max_minutes {
        return Err(Refusal::Invalid(format!(
            "the time spent is 1 to {} minutes, not {minutes}",
            rules.max_minutes
        )));
    }
    Ok(minutes)
}

impl Offer {
    /// A new open offer; a category the policy reserves for departments is refused.
    pub fn new(
        new: NewOffer,
        rules: &VolunteerRules,
        now: DateTime<Utc>,
    ) -> Result<(Offer, Step), Refusal> {
        if let OfferKind::Incident { category, .. } = &new.kind {
            if !rules.allows(category) {
                return Err(Refusal::Reserved(category.clone()));
            }
        }
        if new.community.level() != crate::Level::Community {
            return Err(Refusal::Invalid(format!(
                "offers are made by a community, and {} is not one",
                new.community
            )));
        }
        let title = text("the title", &new.title, true, TITLE_MAX)?;
        let detail = text("the detail", &new.detail, false, NOTE_MAX)?;
        let step = Step {
            kind: "offer.created",
            actor: new.offered_by.to_string(),
            note: title.clone(),
        };
        Ok((
            Offer {
                community: new.community,
                kind: new.kind,
                title,
                detail,
                team: new.team,
                offered_by: new.offered_by,
                offered_at: now,
                status: OfferStatus::Open,
                returns: 0,
            },
            step,
        ))
    }
}

/// Applies one input at `now`: the new offer, its timeline entry, and the hours and points a
/// confirmation accrues (nothing else ever accrues them).
pub fn apply(
    offer: &Offer,
    input: Input,
    rules: &VolunteerRules,
    now: DateTime<Utc>,
) -> Result<(Offer, Step, Option<Accrual>), Refusal> {
    let mut next = offer.clone();
    let status = offer.status.as_str();
    let step = |kind: &'static str, actor: &PersonId, note: String| Step {
        kind,
        actor: actor.to_string(),
        note,
    };
    match input {
        Input::Claim(claimant) => {
            match &offer.status {
                OfferStatus::Open => {}
                OfferStatus::Claimed { .. }
                | OfferStatus::Done { .. }
                | OfferStatus::Confirmed { .. } => return Err(Refusal::AlreadyClaimed),
                OfferStatus::Withdrawn { .. } => return Err(Refusal::Status(status, "claimed")),
            }
            let Some(registered) = &claimant.community else {
                return Err(Refusal::NotRegistered(claimant.member));
            };
            if *registered != offer.community {
                return Err(Refusal::OtherCommunity {
                    member: claimant.member,
                    registered: registered.clone(),
                    community: offer.community.clone(),
                });
            }
            if let Some(team) = &offer.team {
                if !claimant.teams.contains(team) {
                    return Err(Refusal::NotInTeam(team.clone()));
                }
            }
            let deadline = now + rules.claim_window;
            next.status = OfferStatus::Claimed {
                member: claimant.member.clone(),
                claimed_at: now,
                deadline,
            };
            Ok((
                next,
                step("offer.claimed", &claimant.member, String::new()),
                None,
            ))
        }
        Input::Release { member, note } => {
            let OfferStatus::Claimed { member: holder, .. } = &offer.status else {
                return Err(Refusal::Status(status, "given back"));
            };
            if *holder != member {
                return Err(Refusal::NotClaimant { member });
            }
            let note = text("the note", &note, false, NOTE_MAX)?;
            next.status = OfferStatus::Open;
            next.returns += 1;
            Ok((next, step("offer.released", &member, note), None))
        }
        Input::Complete {
            member,
            note,
            photos,
            minutes,
        } => {
            let OfferStatus::Claimed {
                member: holder,
                claimed_at,
                deadline,
            } = &offer.status
            else {
                return Err(Refusal::Status(status, "marked done"));
            };
            if *holder != member {
                return Err(Refusal::NotClaimant { member });
            }
            if now >= *deadline {
                return Err(Refusal::Lapsed(*deadline));
            }
            let note = text("what was done", &note, true, NOTE_MAX)?;
            if photos.len() > photo::MAX_PHOTOS {
                return Err(Refusal::Invalid(format!(
                    "at most {} photos",
                    photo::MAX_PHOTOS
                )));
            }
            for id in &photos {
                id.parse::<photo::PhotoId>()
                    .map_err(|e| Refusal::Invalid(e.to_string()))?;
            }
            let minutes = minutes_in_range(minutes, rules)?;
            next.status = OfferStatus::Done {
                member: member.clone(),
                claimed_at: *claimed_at,
                done_at: now,
                note: note.clone(),
                photos,
                minutes,
            };
            Ok((next, step("offer.done", &member, note), None))
        }
        Input::Confirm {
            by,
            minutes,
            rating,
            note,
        } => {
            let OfferStatus::Done {
                member,
                done_at,
                minutes: claimed_minutes,
                ..
            } = &offer.status
            else {
                return Err(Refusal::Status(status, "confirmed"));
            };
            let minutes = minutes_in_range(minutes.unwrap_or(*claimed_minutes), rules)?;
            let note = text("the note", &note, false, NOTE_MAX)?;
            let points = points_for(minutes, rules);
            next.status = OfferStatus::Confirmed {
                member: member.clone(),
                done_at: *done_at,
                confirmed_by: by.clone(),
                confirmed_at: now,
                minutes,
                points,
                rating,
            };
            let accrual = Accrual {
                member: member.clone(),
                minutes,
                points,
                rating,
            };
            Ok((next, step("offer.confirmed", &by, note), Some(accrual)))
        }
        Input::Rate { by, rating, note } => {
            let OfferStatus::Confirmed {
                rating: current, ..
            } = &mut next.status
            else {
                return Err(Refusal::Status(status, "rated"));
            };
            if current.is_some() {
                return Err(Refusal::Invalid(
                    "the resident's rating is recorded already".into(),
                ));
            }
            *current = Some(rating);
            let note = text("the note", &note, false, NOTE_MAX)?;
            Ok((next, step("offer.rated", &by, note), None))
        }
        Input::Withdraw { by, reason } => {
            if !matches!(
                offer.status,
                OfferStatus::Open | OfferStatus::Claimed { .. }
            ) {
                return Err(Refusal::Status(status, "withdrawn"));
            }
            let reason = text("the reason", &reason, true, NOTE_MAX)?;
            next.status = OfferStatus::Withdrawn {
                at: now,
                reason: reason.clone(),
            };
            Ok((next, step("offer.withdrawn", &by, reason), None))
        }
        Input::ClaimDeadline => {
            let OfferStatus::Claimed {
                member, deadline, ..
            } = &offer.status
            else {
                return Err(Refusal::Status(status, "returned at a claim's deadline"));
            };
            if now < *deadline {
                return Err(Refusal::NotDue(*deadline));
            }
            let note = format!("{member} did not mark it done by {deadline}");
            next.status = OfferStatus::Open;
            next.returns += 1;
            Ok((
                next,
                Step {
                    kind: "offer.returned",
                    actor: "system".into(),
                    note,
                },
                None,
            ))
        }
    }
}
