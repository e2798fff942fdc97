//! The volunteer commands (`whistle.cmd.{offer_to_volunteers|claim_offer|release_offer|
//! complete_offer|confirm_offer|rate_offer|withdraw_offer}.{person}`, docs/party.md): applied
//! with `whistle_store::volunteers` in the command's transaction, committed with the command's
//! reply so a retry with the same command id gets the first outcome. The acting person is the
//! subject's (checked before this runs); the store checks them against the registry (a member
//! claims, gives back and completes only as themselves, in their own community and team) or the
//! community's staff (an operator over it, its handler). Of two members claiming at once, the
//! offer's row lock lets the first win; the other is told it is taken.

use prost::Message as _;
use uuid::Uuid;
use whistle_domain::{
    incident::Satisfaction,
    volunteer::{NewOffer, OfferKind, OfferStatus},
};
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
use whistle_store::{
    incidents::{command_reply, record_command},
    volunteers::{self, Act, Refused, Stored},
};
use whistle_wire::{convert::timestamp, Verb};

use crate::{
    commands::{error, replayed, Commands},
    Catalog, Error,
};

impl Commands {
    /// Checks and applies a volunteer command; a refusal is the reply.
    pub(crate) async fn volunteer(
        &self,
        verb: Verb,
        catalog: &Catalog,
        command: v1::Command,
    ) -> v1::CommandReply {
        let what = match parse(verb, &command) {
            Ok(what) => what,
            Err(reply) => return reply,
        };
        match self.apply_volunteer(verb, catalog, &command, what).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %whistle_wire::chain(&e), %verb, "volunteer command failed");
                error(
                    CommandErrorCode::Unavailable,
                    format!("dispatch could not apply the command now ({e}); retry with the same command_id"),
                )
            }
        }
    }

    async fn apply_volunteer(
        &self,
        verb: Verb,
        catalog: &Catalog,
        command: &v1::Command,
        what: What,
    ) -> Result<v1::CommandReply, Error> {
        let now = self.shared.clock.now();
        let rules = catalog.policy.volunteers();
        let mut tx = self.shared.pool.begin().await?;
        if let Some(applied) = command_reply(&mut tx, &command.command_id).await? {
            return Ok(replayed(&applied, verb.as_str(), command));
        }
        let outcome = match what {
            What::Offer(new) => volunteers::offer_in(&mut tx, new, rules, now).await?,
            What::Act(id, act) => volunteers::act_in(&mut tx, id, act, rules, now).await?,
        };
        let stored = match outcome {
            Ok(stored) => stored,
            // Dropping the transaction leaves nothing behind.
            Err(refused) => return Ok(refusal(&refused)),
        };
        let reply = ok_reply(&stored, now);
        record_command(
            &mut tx,
            &command.command_id,
            None,
            verb.as_str(),
            &command.actor_id,
            &reply.encode_to_vec(),
            now,
        )
        .await?;
        tx.commit().await?;
        // A claim's deadline is a timer: the loop looks again.
        self.timer_wakeup.notify_one();
        Ok(reply)
    }
}

/// What a volunteer command asks, parsed.
#[derive(Debug)]
enum What {
    Offer(NewOffer),
    Act(Uuid, Act),
}

fn parse(verb: Verb, command: &v1::Command) -> Result<What, v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    let (body, actor) =
        crate::commands::incidentless(verb, command, "acts on an offer, not an incident")?;
    let offer_id = |id: &str| -> Result<Uuid, v1::CommandReply> {
        id.parse()
            .map_err(|_| invalid(format!("offer_id {id:?} is not a UUID")))
    };
    let rating = |value: i32, required: bool| -> Result<Option<Satisfaction>, v1::CommandReply> {
        match v1::Satisfaction::try_from(value) {
            Ok(v1::Satisfaction::Satisfied) => Ok(Some(Satisfaction::Satisfied)),
            Ok(v1::Satisfaction::BasicallySatisfied) => Ok(Some(Satisfaction::BasicallySatisfied)),
            Ok(v1::Satisfaction::Unsatisfied) => Ok(Some(Satisfaction::Unsatisfied)),
            Ok(v1::Satisfaction::Unspecified) if !required => Ok(None),
            _ => Err(invalid(format!("rating {value} is not a satisfaction"))),
        }
    };
    Ok(match body {
        Body::OfferToVolunteers(b) => What::Offer(NewOffer {
            community: b
                .community_code
                .parse()
                .map_err(|e| invalid(format!("community_code: {e}")))?,
            kind: if b.offer_incident_id.is_empty() {
                OfferKind::Wish
            } else {
                OfferKind::Incident {
                    incident_id: b.offer_incident_id.clone(),
                    // The store puts the incident's own category here before any check.
                    category: "unknown.category"
                        .parse()
                        .expect("a well-formed category code"),
                }
            },
            title: b.title.clone(),
            detail: b.detail.clone(),
            team: (!b.team_id.trim().is_empty()).then(|| b.team_id.trim().to_owned()),
            offered_by: actor,
        }),
        Body::ClaimOffer(b) => What::Act(offer_id(&b.offer_id)?, Act::Claim { member: actor }),
        Body::ReleaseOffer(b) => What::Act(
            offer_id(&b.offer_id)?,
            Act::Release {
                member: actor,
                note: b.note.clone(),
            },
        ),
        Body::CompleteOffer(b) => What::Act(
            offer_id(&b.offer_id)?,
            Act::Complete {
                member: actor,
                note: b.note.clone(),
                photos: b.photo_ids.clone(),
                minutes: b.minutes,
            },
        ),
        Body::ConfirmOffer(b) => What::Act(
            offer_id(&b.offer_id)?,
            Act::Confirm {
                by: actor,
                minutes: (b.minutes > 0).then_some(b.minutes),
                rating: rating(b.rating, false)?,
                note: b.note.clone(),
            },
        ),
        Body::RateOffer(b) => What::Act(
            offer_id(&b.offer_id)?,
            Act::Rate {
                by: actor,
                rating: rating(b.rating, true)?.expect("a required rating is set"),
                note: b.note.clone(),
            },
        ),
        Body::WithdrawOffer(b) => What::Act(
            offer_id(&b.offer_id)?,
            Act::Withdraw {
                by: actor,
                reason: b.reason.clone(),
            },
        ),
        _ => return Err(invalid(format!("{verb} is not a volunteer command"))),
    })
}

fn refusal(refused: &Refused) -> v1::CommandReply {
    let code = match refused.code() {
        "not_found" => CommandErrorCode::NotFound,
        "forbidden" => CommandErrorCode::Forbidden,
        "invalid_transition" => CommandErrorCode::InvalidTransition,
        _ => CommandErrorCode::InvalidArgument,
    };
    error(code, refused.to_string())
}

fn ok_reply(stored: &Stored, now: chrono::DateTime<chrono::Utc>) -> v1::CommandReply {
    let status = &stored.offer.status;
    let (minutes, points) = match status {
        OfferStatus::Confirmed {
            minutes, points, ..
        } => (*minutes, *points),
        _ => (0, 0),
    };
    v1::CommandReply {
        outcome: Some(Outcome::Ok(v1::CommandOk {
            applied_at: Some(timestamp(now)),
            offer: Some(Box::new(v1::OfferChanged {
                offer_id: stored.id.to_string(),
                version: stored.version.max(0) as u64,
                status: status.as_str().to_owned(),
                member_id: status.member().map(|m| m.to_string()).unwrap_or_default(),
                claim_deadline: status.deadline().map(timestamp),
                minutes,
                points,
                offer_kind: stored.offer.kind.as_str().to_owned(),
                title: stored.offer.title.clone(),
                team_id: stored.offer.team.clone().unwrap_or_default(),
                // The step's note and the rating are the event's (`Event.offer_changed`).
                ..Default::default()
            })),
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(body: Body, actor: &str) -> v1::Command {
        v1::Command {
            command_id: "c-1".into(),
            actor_id: actor.into(),
            incident_id: String::new(),
            expected_version: 0,
            body: Some(body),
        }
    }

    #[test]
    fn a_claim_acts_as_its_sender() {
        let id = Uuid::now_v7();
        let parsed = parse(
            Verb::ClaimOffer,
            &command(
                Body::ClaimOffer(v1::ClaimOffer {
                    offer_id: id.to_string(),
                }),
                "pm-150602001001-0001",
            ),
        )
        .unwrap();
        let What::Act(parsed_id, Act::Claim { member }) = parsed else {
            panic!("a claim parses to a claim")
        };
        assert_eq!(parsed_id, id);
        assert_eq!(member.as_str(), "pm-150602001001-0001");
    }

    #[test]
    fn malformed_volunteer_commands_are_invalid_arguments() {
        let code = |reply: v1::CommandReply| match reply.outcome {
            Some(Outcome::Error(e)) => e.code,
            _ => panic!("an error"),
        };
        let bad_id = command(
            Body::ClaimOffer(v1::ClaimOffer {
                offer_id: "nope".into(),
            }),
            "pm-x",
        );
        assert_eq!(
            code(parse(Verb::ClaimOffer, &bad_id).unwrap_err()),
            CommandErrorCode::InvalidArgument as i32
        );
        let mut on_incident = bad_id.clone();
        on_incident.incident_id = Uuid::now_v7().to_string();
        assert!(parse(Verb::ClaimOffer, &on_incident).is_err());
        let wrong_verb = command(
            Body::RateOffer(v1::RateOffer {
                offer_id: Uuid::now_v7().to_string(),
                rating: v1::Satisfaction::Unspecified as i32,
                note: String::new(),
            }),
            "op-150602",
        );
        assert!(parse(Verb::ClaimOffer, &wrong_verb).is_err());
        assert!(
            parse(Verb::RateOffer, &wrong_verb).is_err(),
            "a rating needs a satisfaction"
        );
    }
}
