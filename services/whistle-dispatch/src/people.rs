//! People's commands (`whistle.cmd.{onboard_person|change_person|offboard_person}.{operator}`):
//! an operator onboards, changes or offboards a person whose post lies inside the operator's
//! area, through the store's one transaction for each (`whistle_store::people`), committed with
//! the command's reply so a retry with the same command id gets the first outcome.
//!
//! The acting operator is the subject's person (checked before this runs) and the audit actor;
//! the area is the operator's post as dispatch's org tree knows it, and the store checks it
//! against the person's post under the person's lock. The audit entries carry the token the
//! command came with (the `Whistle-Token-Id` header the query service sets from its gRPC
//! caller) only if that token is the operator's: a sender cannot put another's token on them.

use prost::Message as _;
use whistle_domain::Role;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
use whistle_store::{
    audit,
    incidents::{command_reply, record_command},
    people::{self, Holdings, NewPerson, PersonChange, Refused, Scope},
};
use whistle_wire::{convert::timestamp, Verb};

use crate::{
    commands::{error, replayed, Commands},
    Catalog, Error,
};

/// The door the audit log names for a change made by a people's command.
const DOOR: &str = "whistle-dispatch";

impl Commands {
    /// Checks and applies a people's command; a refusal is the reply.
    pub(crate) async fn people(
        &self,
        verb: Verb,
        catalog: &Catalog,
        command: v1::Command,
        token_id: Option<&str>,
    ) -> v1::CommandReply {
        let area = match check(verb, catalog, &command) {
            Ok(area) => area,
            Err(reply) => return reply,
        };
        match self.apply_people(verb, &area, &command, token_id).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %whistle_wire::chain(&e), %verb, "people's command failed");
                error(
                    CommandErrorCode::Unavailable,
                    format!("dispatch could not apply the command now ({e}); retry with the same command_id"),
                )
            }
        }
    }

    async fn apply_people(
        &self,
        verb: Verb,
        area: &whistle_domain::AreaCode,
        command: &v1::Command,
        token_id: Option<&str>,
    ) -> Result<v1::CommandReply, Error> {
        let now = self.shared.clock.now();
        let scope = Scope::Area(area);
        let mut tx = self.shared.pool.begin().await?;
        if let Some(applied) = command_reply(&mut tx, &command.command_id).await? {
            return Ok(replayed(&applied, verb.as_str(), command));
        }
        let actor = audit::Actor {
            name: command.actor_id.clone(),
            os_user: None,
            token_id: own_token(&mut tx, token_id, &command.actor_id).await?,
            door: DOOR.to_owned(),
        };
        let applied = match &command.body {
            Some(Body::OnboardPerson(b)) => {
                let role = match people::parse_role(b.role.trim(), b.post.trim()) {
                    Ok(role) => role,
                    Err(e) => return Ok(error(CommandErrorCode::InvalidArgument, e.to_string())),
                };
                let new = NewPerson {
                    id: b.person_id.clone(),
                    name: b.name.clone(),
                    phone: b.phone.clone(),
                    role,
                };
                people::onboard_in(&mut tx, &new, scope, now, &actor)
                    .await
                    .map(|person| (person, Holdings::default(), None, Vec::new()))
            }
            Some(Body::ChangePerson(b)) => {
                let role = match (b.role.trim(), b.post.trim()) {
                    ("", "") => None,
                    (_, "") => {
                        return Ok(error(
                            CommandErrorCode::InvalidArgument,
                            "a new role needs its post",
                        ))
                    }
                    (kind, post) => {
                        // An empty role keeps the current one: the post is one of its kind.
                        let kind = if kind.is_empty() {
                            match people::get(&self.shared.pool, &b.person_id).await? {
                                Some(person) => person.role.kind(),
                                None => {
                                    return Ok(error(
                                        CommandErrorCode::NotFound,
                                        format!("no person {}", b.person_id),
                                    ))
                                }
                            }
                        } else {
                            kind
                        };
                        match people::parse_role(kind, post) {
                            Ok(role) => Some(role),
                            Err(e) => {
                                return Ok(error(CommandErrorCode::InvalidArgument, e.to_string()))
                            }
                        }
                    }
                };
                let change = PersonChange {
                    name: non_empty(&b.name),
                    phone: non_empty(&b.phone),
                    role,
                };
                let successor = non_empty(&b.successor_id);
                people::change_in(
                    &mut tx,
                    &b.person_id,
                    &change,
                    successor.as_deref(),
                    scope,
                    now,
                    &actor,
                )
                .await
                .map(|o| (o.person, o.handed_over, o.successor_id, o.tokens_revoked))
            }
            Some(Body::OffboardPerson(b)) => {
                let successor = non_empty(&b.successor_id);
                people::offboard_in(
                    &mut tx,
                    &b.person_id,
                    successor.as_deref(),
                    scope,
                    now,
                    &actor,
                )
                .await
                .map(|o| (o.person, o.handed_over, o.successor_id, o.tokens_revoked))
            }
            // `check` let only the people's bodies through.
            _ => {
                return Ok(error(
                    CommandErrorCode::InvalidArgument,
                    "not a people's command",
                ))
            }
        };
        let (person, handed_over, successor_id, tokens_revoked) = match applied {
            Ok(applied) => applied,
            // Dropping the transaction rolls back whatever the refused change began.
            Err(Refused::Store(e)) => return Err(e.into()),
            Err(refused) => return Ok(refusal(refused)),
        };
        let reply = v1::CommandReply {
            outcome: Some(Outcome::Ok(v1::CommandOk {
                person: Some(Box::new(v1::PersonChanged {
                    post: people::post(&person.role),
                    role: person.role.kind().to_owned(),
                    left_at: person.left_at.map(timestamp),
                    successor_id: successor_id.or(person.successor_id).unwrap_or_default(),
                    handed_over: Some(holdings_proto(&handed_over)),
                    tokens_revoked: tokens_revoked.iter().map(|t| t.to_string()).collect(),
                    person_id: person.id,
                    name: person.name,
                    post_name: person.post_name,
                    area_code: person.area_code,
                })),
                applied_at: Some(timestamp(now)),
                ..Default::default()
            })),
        };
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
        // A handover writes timeline entries whose events wait in the outbox.
        self.relay_wakeup.notify_one();
        Ok(reply)
    }
}

/// The token a command names if it is the actor's, else none (logged: a sender named a token not
/// its own, or not a token at all).
async fn own_token(
    conn: &mut sqlx::PgConnection,
    token_id: Option<&str>,
    actor: &str,
) -> Result<Option<uuid::Uuid>, Error> {
    let Some(named) = token_id else {
        return Ok(None);
    };
    let Ok(id) = named.parse::<uuid::Uuid>() else {
        tracing::warn!(
            actor,
            token_id = named,
            "a people's command names a token id that is no token id; recorded without one"
        );
        return Ok(None);
    };
    if whistle_store::tokens::is_persons(conn, id, actor).await? {
        Ok(Some(id))
    } else {
        tracing::warn!(actor, token_id = %id, "a people's command names a token that is not its actor's; recorded without one");
        Ok(None)
    }
}

/// What a people's command must be before anything is read: a valid command id, its verb's
/// body, no incident, and an operator acting. Returns the operator's area.
fn check(
    verb: Verb,
    catalog: &Catalog,
    command: &v1::Command,
) -> Result<whistle_domain::AreaCode, v1::CommandReply> {
    let (_, actor_id) = crate::commands::incidentless(verb, command, "acts on no incident")?;
    let forbidden = |message: String| error(CommandErrorCode::Forbidden, message);
    match catalog.org.person(&actor_id) {
        Some(person) => match &person.role {
            Role::Operator { area } => Ok(area.clone()),
            other => Err(forbidden(format!(
                "only operators manage people; {actor_id} is a {}",
                other.kind()
            ))),
        },
        None => Err(forbidden(format!("{actor_id} is not a known person"))),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A store refusal as the command's error reply: each kind its own code, the holdings listed.
fn refusal(refused: Refused) -> v1::CommandReply {
    let code = match &refused {
        Refused::Invalid(_) => CommandErrorCode::InvalidArgument,
        Refused::NotFound(_) => CommandErrorCode::NotFound,
        Refused::Exists(_) => CommandErrorCode::AlreadyExists,
        Refused::Left(_) => CommandErrorCode::InvalidTransition,
        Refused::Unfit(_) => CommandErrorCode::SuccessorUnfit,
        Refused::OutOfScope(_) => CommandErrorCode::Forbidden,
        Refused::Holds { .. } => CommandErrorCode::SuccessorNeeded,
        Refused::Store(_) => CommandErrorCode::Unavailable,
    };
    let holdings = match &refused {
        Refused::Holds { holdings, .. } => Some(Box::new(holdings_proto(holdings))),
        _ => None,
    };
    v1::CommandReply {
        outcome: Some(Outcome::Error(v1::CommandError {
            code: code as i32,
            message: refused.to_string(),
            holdings,
        })),
    }
}

fn holdings_proto(holdings: &Holdings) -> v1::PersonHoldings {
    v1::PersonHoldings {
        tasks: holdings
            .tasks
            .iter()
            .map(|t| v1::HeldTask {
                incident_id: t.incident_id.to_string(),
                task_id: t.task_id.to_string(),
                department_code: t.department_code.clone(),
                title: t.title.clone(),
            })
            .collect(),
        grid_code: holdings.grid.clone().unwrap_or_default(),
        department_code: holdings.department.clone().unwrap_or_default(),
        deputy_for: holdings.deputy_for.clone(),
        paired_areas: holdings.paired_areas.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use whistle_domain::OrgIndex;

    use super::*;

    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::new(
            OrgIndex::build(whistle_domain::ordos::dataset()).unwrap(),
            whistle_domain::policy::builtin("ordos").unwrap(),
        )
    });

    fn offboard(actor: &str) -> v1::Command {
        v1::Command {
            command_id: "c-1".into(),
            actor_id: actor.into(),
            incident_id: String::new(),
            expected_version: 0,
            body: Some(Body::OffboardPerson(v1::OffboardPerson {
                person_id: "li-150602-heating".into(),
                successor_id: String::new(),
            })),
        }
    }

    fn code(reply: v1::CommandReply) -> (i32, String) {
        match reply.outcome {
            Some(Outcome::Error(e)) => (e.code, e.message),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn only_an_operator_manages_people() {
        let area = check(Verb::OffboardPerson, &CATALOG, &offboard("op-150602")).unwrap();
        assert_eq!(area.as_str(), "150602");
        let (c, message) = code(
            check(
                Verb::OffboardPerson,
                &CATALOG,
                &offboard("li-150602-heating"),
            )
            .unwrap_err(),
        );
        assert_eq!(c, CommandErrorCode::Forbidden as i32);
        assert!(message.contains("only operators"), "{message}");
        let (c, _) = code(check(Verb::OffboardPerson, &CATALOG, &offboard("nobody")).unwrap_err());
        assert_eq!(c, CommandErrorCode::Forbidden as i32);
    }

    #[test]
    fn a_peoples_command_names_no_incident_and_its_own_verb() {
        let invalid = CommandErrorCode::InvalidArgument as i32;
        let mut with_incident = offboard("op-150602");
        with_incident.incident_id = uuid::Uuid::nil().to_string();
        let (c, message) = code(check(Verb::OffboardPerson, &CATALOG, &with_incident).unwrap_err());
        assert_eq!(c, invalid);
        assert!(message.contains("no incident"), "{message}");
        let (c, message) =
            code(check(Verb::OnboardPerson, &CATALOG, &offboard("op-150602")).unwrap_err());
        assert_eq!(c, invalid);
        assert!(message.contains("offboard_person"), "{message}");
        let mut bad_id = offboard("op-150602");
        bad_id.command_id = "has space".into();
        let (c, _) = code(check(Verb::OffboardPerson, &CATALOG, &bad_id).unwrap_err());
        assert_eq!(c, invalid);
    }

    #[test]
    fn a_refusal_keeps_its_kind_and_lists_the_holdings() {
        let holdings = Holdings {
            grid: Some("150602001001001".into()),
            ..Holdings::default()
        };
        let reply = refusal(Refused::Holds {
            person: "gw-x".into(),
            holdings: Box::new(holdings),
        });
        let Some(Outcome::Error(e)) = reply.outcome else {
            panic!("{reply:?}");
        };
        assert_eq!(e.code, CommandErrorCode::SuccessorNeeded as i32);
        assert_eq!(e.holdings.unwrap().grid_code, "150602001001001");
        for (refused, want) in [
            (Refused::Unfit("x".into()), CommandErrorCode::SuccessorUnfit),
            (Refused::Exists("x".into()), CommandErrorCode::AlreadyExists),
            (Refused::OutOfScope("x".into()), CommandErrorCode::Forbidden),
            (
                Refused::Left("x".into()),
                CommandErrorCode::InvalidTransition,
            ),
            (Refused::NotFound("x".into()), CommandErrorCode::NotFound),
        ] {
            assert_eq!(code(refusal(refused)).0, want as i32);
        }
    }
}
