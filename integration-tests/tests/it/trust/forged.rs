//! The actor is the identity, for every verb of the wire crate: a person's command naming
//! another actor, sent on its own subject, is refused `forbidden` and writes nothing; sending on
//! another person's subject is a permissions violation.

use uuid::Uuid;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
use whistle_store::tokens::Role;
use whistle_wire::{subject, CommandClient, Verb};

use crate::harness::*;

const GRID: &str = "150602001001001";
const ME: &str = "op-150602";
const SOMEONE_ELSE: &str = "op-150600";

/// A well-formed body of `verb` (the exhaustive match makes a new verb add its body here).
fn body(verb: Verb) -> Body {
    match verb {
        Verb::Accept => Body::Accept(v1::Accept {
            task_id: "1".into(),
            note: String::new(),
        }),
        Verb::Return => Body::Return(v1::Return {
            task_id: "1".into(),
            ..Default::default()
        }),
        Verb::Resolve => Body::Resolve(v1::Resolve {
            task_id: "1".into(),
            ..Default::default()
        }),
        Verb::Escalate => Body::Escalate(Default::default()),
        Verb::Verify => Body::Verify(Default::default()),
        Verb::Supervise => Body::Supervise(Default::default()),
        Verb::Reassign => Body::Reassign(Default::default()),
        Verb::Comment => Body::Comment(v1::Comment {
            text: "forged".into(),
        }),
        Verb::RequestExtension => Body::RequestExtension(v1::RequestExtension {
            task_id: String::new(),
            until: Some(whistle_wire::convert::timestamp(
                chrono::Utc::now() + chrono::TimeDelta::days(2),
            )),
            reason: "forged".into(),
        }),
        Verb::DecideExtension => Body::DecideExtension(v1::DecideExtension {
            approve: true,
            note: String::new(),
        }),
        Verb::Dispute => Body::Dispute(v1::Dispute {
            task_id: "1".into(),
            to_department_code: "150602-transport".into(),
            reason: "forged".into(),
        }),
        Verb::DecideDispute => Body::DecideDispute(v1::DecideDispute {
            task_id: "1".into(),
            uphold: true,
            note: String::new(),
        }),
        Verb::SubmitAssist => Body::SubmitAssist(v1::SubmitAssist {
            task_id: "1".into(),
            note: "forged".into(),
        }),
        Verb::ReleaseAssist => Body::ReleaseAssist(v1::ReleaseAssist {
            task_id: "1".into(),
            note: "forged".into(),
        }),
        Verb::ProposeLedger => Body::ProposeLedger(v1::ProposeLedger {
            reason: v1::LedgerReason::Funding as i32,
            note: "forged".into(),
            responsible: "150602-heating".into(),
            review_at: Some(whistle_wire::convert::timestamp(
                chrono::Utc::now() + chrono::TimeDelta::days(30),
            )),
        }),
        Verb::DecideLedger => Body::DecideLedger(v1::DecideLedger {
            approve: true,
            note: String::new(),
        }),
        Verb::ReviewLedger => Body::ReviewLedger(v1::ReviewLedger {
            extend_to: None,
            note: String::new(),
        }),
        Verb::OnboardPerson => Body::OnboardPerson(v1::OnboardPerson {
            person_id: "li-forged".into(),
            name: "forged".into(),
            phone: "13900001111".into(),
            role: "liaison".into(),
            post: "150602-heating".into(),
        }),
        Verb::ChangePerson => Body::ChangePerson(v1::ChangePerson {
            person_id: "li-150602-heating".into(),
            name: "forged".into(),
            ..Default::default()
        }),
        Verb::OffboardPerson => Body::OffboardPerson(v1::OffboardPerson {
            person_id: "li-150602-heating".into(),
            successor_id: String::new(),
        }),
        Verb::Adopt => Body::Adopt(v1::Adopt {
            topic_key: format!("{GRID}/heating"),
            lead_department_code: "150602-heating".into(),
            deadline: Some(whistle_wire::convert::timestamp(
                chrono::Utc::now() + chrono::TimeDelta::days(30),
            )),
            ..Default::default()
        }),
        Verb::CompleteMilestone => Body::CompleteMilestone(v1::CompleteMilestone {
            milestone: 1,
            note: String::new(),
        }),
        Verb::OfferToVolunteers => Body::OfferToVolunteers(v1::OfferToVolunteers {
            community_code: "150602001001".into(),
            title: "forged".into(),
            ..Default::default()
        }),
        Verb::ClaimOffer => Body::ClaimOffer(v1::ClaimOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
        }),
        Verb::ReleaseOffer => Body::ReleaseOffer(v1::ReleaseOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: "forged".into(),
        }),
        Verb::CompleteOffer => Body::CompleteOffer(v1::CompleteOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: "forged".into(),
            photo_ids: Vec::new(),
            minutes: 30,
        }),
        Verb::ConfirmOffer => Body::ConfirmOffer(v1::ConfirmOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            note: "forged".into(),
            ..Default::default()
        }),
        Verb::RateOffer => Body::RateOffer(v1::RateOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            rating: v1::Satisfaction::Satisfied as i32,
            note: "forged".into(),
        }),
        Verb::WithdrawOffer => Body::WithdrawOffer(v1::WithdrawOffer {
            offer_id: "01900000-0000-7000-8000-0000000000aa".into(),
            reason: "forged".into(),
        }),
        Verb::Endorse => Body::Endorse(v1::Endorse {
            note: "forged".into(),
        }),
    }
}

/// What a command could write: timeline and outbox rows, recorded commands, tasks, versions.
async fn written(stack: &Stack) -> [i64; 5] {
    [
        stack.count("SELECT count(*) FROM timeline").await,
        stack.count("SELECT count(*) FROM outbox").await,
        stack.count("SELECT count(*) FROM commands").await,
        stack.count("SELECT count(*) FROM tasks").await,
        stack
            .count("SELECT coalesce(sum(version), 0)::bigint FROM incidents")
            .await,
    ]
}

#[tokio::test]
async fn a_forged_actor_is_refused_for_every_verb_and_writes_nothing() {
    let stack = Stack::builder().at(chrono::Utc::now()).start().await;
    let incident = stack.report("forged-1", GRID, "heating.no_heat").await;
    eventually("the outbox relayed", WAIT, || async {
        stack.count("SELECT count(*) FROM outbox").await == 0
    })
    .await
    .unwrap();
    let token = stack.token_for(Role::Operator, "150602").await;
    let mut me = stack.connect_as(&token).await;
    let commands =
        CommandClient::new(me.client.clone()).with_timeout(std::time::Duration::from_millis(500));
    let before = written(&stack).await;
    for verb in Verb::ALL {
        let command = v1::Command {
            command_id: Uuid::now_v7().to_string(),
            actor_id: SOMEONE_ELSE.into(),
            incident_id: incident.to_string(),
            expected_version: 0,
            body: Some(body(verb)),
        };
        if matches!(
            verb,
            Verb::RequestExtension
                | Verb::Dispute
                | Verb::SubmitAssist
                | Verb::ProposeLedger
                | Verb::ClaimOffer
                | Verb::ReleaseOffer
                | Verb::CompleteOffer
                | Verb::Endorse
        ) {
            // An operator never asks for more time, disputes a task, submits an assisting part,
            // proposes a case for the ledger, claims, gives back or completes a volunteers' offer
            // nor endorses as a leader: the server refuses even its own subject.
            let own = v1::Command {
                actor_id: ME.into(),
                ..command.clone()
            };
            assert!(
                commands.send(&own).await.is_err(),
                "{verb} on an operator's own subject"
            );
            me.expect_violation(&subject::command(verb, ME)).await;
            continue;
        }
        // On one's own subject, naming someone else: dispatch refuses it.
        let request =
            async_nats::Request::new().payload(prost::Message::encode_to_vec(&command).into());
        let reply = me
            .client
            .send_request(subject::command(verb, ME), request)
            .await
            .unwrap_or_else(|e| panic!("{verb}: {e}"));
        let reply: v1::CommandReply = prost::Message::decode(reply.payload).unwrap();
        match reply.outcome {
            Some(Outcome::Error(e)) if e.code == CommandErrorCode::Forbidden as i32 => {}
            other => panic!("{verb} with a forged actor: {other:?}"),
        }
        me.expect_no_violation().await;

        // On someone else's subject: the server refuses it.
        let error = commands.send(&command).await;
        assert!(error.is_err(), "{verb}: {error:?}");
        me.expect_violation(&subject::command(verb, SOMEONE_ELSE))
            .await;
    }
    assert_eq!(
        written(&stack).await,
        before,
        "a forged command wrote something"
    );
}

/// The extension, dispute, assisting and ledger verbs by role on NATS: a liaison asks, disputes,
/// submits its part and proposes for the ledger but never answers, arbitrates, releases or
/// reviews; a grid worker asks and proposes but has no task to dispute or assist with; an operator
/// answers, arbitrates, releases, enters and reviews but never asks, disputes, submits a part or
/// proposes; a verb a role never sends is refused by the server on the person's own subject, the
/// others reach dispatch (which checks the incident).
#[tokio::test]
async fn each_role_is_denied_the_verbs_it_never_sends() {
    let stack = Stack::builder().at(chrono::Utc::now()).start().await;
    let incident = stack.report("verbs-1", GRID, "heating.no_heat").await;
    let cases: [(_, _, _, &[Verb], &[Verb]); 3] = [
        (
            Role::Liaison,
            "150602-heating",
            "li-150602-heating",
            &[
                Verb::DecideExtension,
                Verb::DecideDispute,
                Verb::ReleaseAssist,
                Verb::DecideLedger,
                Verb::ReviewLedger,
                Verb::OnboardPerson,
                Verb::ChangePerson,
                Verb::OffboardPerson,
                Verb::Adopt,
                Verb::Endorse,
            ],
            &[
                Verb::RequestExtension,
                Verb::Dispute,
                Verb::SubmitAssist,
                Verb::ProposeLedger,
                // Refused by dispatch: the incident is no proactive case.
                Verb::CompleteMilestone,
            ],
        ),
        (
            Role::GridWorker,
            GRID,
            "gw-150602001001001",
            &[
                Verb::DecideExtension,
                Verb::Dispute,
                Verb::DecideDispute,
                Verb::SubmitAssist,
                Verb::ReleaseAssist,
                Verb::DecideLedger,
                Verb::ReviewLedger,
                Verb::OnboardPerson,
                Verb::ChangePerson,
                Verb::OffboardPerson,
                Verb::Adopt,
                Verb::CompleteMilestone,
                Verb::Endorse,
            ],
            &[Verb::RequestExtension, Verb::ProposeLedger],
        ),
        (
            Role::Operator,
            "150602",
            ME,
            &[
                Verb::RequestExtension,
                Verb::Dispute,
                Verb::SubmitAssist,
                Verb::ProposeLedger,
                Verb::Endorse,
            ],
            &[
                Verb::DecideExtension,
                Verb::DecideDispute,
                Verb::ReleaseAssist,
                Verb::DecideLedger,
                Verb::ReviewLedger,
                // Refused by dispatch: a people's command names no incident.
                Verb::OnboardPerson,
                Verb::ChangePerson,
                Verb::OffboardPerson,
                // Refused by dispatch: an adoption names no incident; the incident is no
                // proactive case.
                Verb::Adopt,
                Verb::CompleteMilestone,
            ],
        ),
    ];
    for (role, scope, person, denied, allowed) in cases {
        let token = stack.token_for(role, scope).await;
        let mut connection = stack.connect_as(&token).await;
        let commands = CommandClient::new(connection.client.clone())
            .with_timeout(std::time::Duration::from_millis(500));
        let command = |verb| v1::Command {
            command_id: Uuid::now_v7().to_string(),
            actor_id: person.into(),
            incident_id: incident.to_string(),
            expected_version: 0,
            body: Some(body(verb)),
        };
        for &verb in denied {
            assert!(
                commands.send(&command(verb)).await.is_err(),
                "{person} {verb}"
            );
            connection
                .expect_violation(&subject::command(verb, person))
                .await;
        }
        // Dispatch answers the others (here with a refusal: nothing waits, no task, or nobody
        // handles).
        for &verb in allowed {
            let reply = commands
                .send(&command(verb))
                .await
                .unwrap_or_else(|e| panic!("{person} {verb}: {e}"));
            assert!(
                matches!(reply.outcome, Some(Outcome::Error(_))),
                "{person} {verb}: {reply:?}"
            );
        }
        connection.expect_no_violation().await;
    }
}
