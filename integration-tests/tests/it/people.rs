//! People come and go (issue 25, item 2): onboarding, transfers and offboarding, with what a
//! person holds handed to a named successor in one transaction (or refused, changing nothing),
//! their credentials refused on both doors at once, and history keeping their name.

use std::time::Duration;

use async_nats::Event;
use serde_json::Value;
use tonic::Code;
use whistle_proto::v1::{self, command_reply::Outcome};
use whistle_store::{
    people::{self, NewPerson, PersonChange, Refused},
    tokens::{self, Role},
};

use crate::harness::*;

/// How soon a leaver's NATS connection must be cut: far below the callout's re-check (60 s).
const CUT_WITHIN: Duration = Duration::from_secs(5);
/// The query service's token cache time (`auth::CACHE_TTL`): a revocation must beat it.
const TOKEN_CACHE: Duration = Duration::from_secs(10);

fn resolve_task(task: u32) -> v1::command::Body {
    v1::command::Body::Resolve(v1::Resolve {
        task_id: task.to_string(),
        note: "已处理".into(),
        photo_ids: Vec::new(),
    })
}

fn liaison(id: &str, name: &str, department: &str) -> NewPerson {
    NewPerson {
        id: id.into(),
        name: name.into(),
        phone: "13900001111".into(),
        role: people::parse_role("liaison", department).unwrap(),
    }
}

/// The audit entries of `action` about `target`, oldest first: (before, after).
async fn audited(stack: &Stack, action: &str, target: &str) -> Vec<(Option<Value>, Option<Value>)> {
    sqlx::query_as(
        "SELECT before, after FROM audit_log WHERE action = $1 AND target = $2 ORDER BY at, id",
    )
    .bind(action)
    .bind(target)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

async fn holder(stack: &Stack, incident: uuid::Uuid, task: i32) -> Option<String> {
    sqlx::query_scalar("SELECT holder_id FROM tasks WHERE incident_id = $1 AND task_id = $2")
        .bind(incident)
        .bind(task)
        .fetch_one(stack.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn offboarding_a_liaison_hands_over_their_tasks_and_shuts_both_doors_at_once() {
    // The callout's re-check stays at its default (60 s): the cut below is the revoker's.
    let stack = Stack::builder()
        .with_query()
        .at(chrono::Utc::now())
        .start()
        .await;
    let (_, [grid, ..], _, _) = places();
    let heating = dept(&grid, "heating");
    let leaver = format!("li-{heating}");
    let leaver_name: String = sqlx::query_scalar("SELECT name FROM people WHERE id = $1")
        .bind(&leaver)
        .fetch_one(stack.pool())
        .await
        .unwrap();

    // A newcomer joins the department while dispatch runs: dispatch learns of them at once.
    let successor_id = format!("{leaver}-2");
    let successor = people::onboard(
        stack.pool(),
        &liaison(&successor_id, "接任者", &heating),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    assert!(successor.is_live());
    assert!(successor.joined_at.is_some());

    let incident = stack.whistled("people-1", &grid).await;
    stack.ok(&leaver, incident, accept(1)).await;
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(leaver.as_str())
    );

    // The leaver's token works on both doors, and is cached by the query service.
    let secret = stack.token_for(Role::Liaison, &heating).await;
    let token = tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    let mut session = command_center_on(stack.channel(), &secret);
    let before = session.get_session(v1::GetSessionRequest {}).await.unwrap();
    assert_eq!(before.into_inner().person_id, leaver);
    let mut phone = stack.connect_as(&secret).await;
    let inbox = phone.inbox_prefix.clone();

    // Without a successor: refused, listing the task, and nothing changes.
    let refused = people::offboard(stack.pool(), &leaver, None, chrono::Utc::now(), &admin())
        .await
        .unwrap_err();
    match &refused {
        Refused::Holds { person, holdings } => {
            assert_eq!(person, &leaver);
            assert_eq!(holdings.tasks.len(), 1);
            assert_eq!(holdings.tasks[0].incident_id, incident);
            assert_eq!(holdings.tasks[0].task_id, 1);
        }
        other => panic!("expected a refusal listing the task, got {other:?}"),
    }
    assert!(
        refused.to_string().contains(&incident.to_string()),
        "{refused}"
    );
    assert!(
        tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(people::get(stack.pool(), &leaver)
        .await
        .unwrap()
        .unwrap()
        .is_live());
    assert!(audited(&stack, "people.offboard", &leaver).await.is_empty());
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(leaver.as_str())
    );

    // A successor of another department cannot hold the task.
    let elsewhere = format!("li-{}", dept(&grid, "water"));
    let wrong = people::offboard(
        stack.pool(),
        &leaver,
        Some(&elsewhere),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(wrong, Refused::Unfit(ref m) if m.contains(&heating)),
        "{wrong}"
    );

    // With the successor: one transaction hands over, revokes and records.
    let offboarded_at = std::time::Instant::now();
    let outcome = people::offboard(
        stack.pool(),
        &leaver,
        Some(&successor_id),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.handed_over.tasks.len(), 1);
    assert_eq!(outcome.tokens_revoked, [token.id]);
    assert!(outcome.person.left_at.is_some());
    assert_eq!(
        outcome.person.successor_id.as_deref(),
        Some(successor_id.as_str())
    );
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(successor_id.as_str())
    );

    // gRPC refuses the token long before its cache time (10 s) would have.
    eventually(
        "the revoked token refused on gRPC",
        Duration::from_secs(2),
        || {
            let mut session = session.clone();
            async move {
                code(session.get_session(v1::GetSessionRequest {}).await) == Code::Unauthenticated
            }
        },
    )
    .await
    .unwrap();
    assert!(offboarded_at.elapsed() < TOKEN_CACHE);

    // NATS cuts the live connection at once (not at the re-check) and refuses the reconnect.
    let deadline = tokio::time::Instant::from_std(offboarded_at) + CUT_WITHIN;
    loop {
        let event = tokio::time::timeout_at(deadline, phone.events.recv())
            .await
            .expect("the leaver's connection was not cut in time")
            .expect("the connection's events ended");
        if matches!(event, Event::Disconnected) {
            break;
        }
    }
    assert!(Person::connect_with(stack.server(), &secret, &inbox)
        .await
        .is_err());
    // No new token for someone who left.
    let new = tokens::NewToken {
        role: Some(Role::Liaison),
        department_code: Some(heating.clone()),
        person_id: Some(leaver.clone()),
        ..Default::default()
    };
    let again = tokens::create(stack.pool(), &new, chrono::Utc::now(), &admin()).await;
    assert!(matches!(again, Err(tokens::Refused::Invalid(ref m)) if m.contains("left")));

    // Dispatch no longer takes the leaver as an actor (the probe, a second report-in, changes
    // nothing either way: refused as a transition until dispatch read the org tree again, then
    // as forbidden), and the successor acts on the task.
    eventually("dispatch refuses the leaver", WAIT, || async {
        matches!(
            stack.command(&leaver, incident, accept(1)).await.outcome,
            Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::Forbidden as i32
        )
    })
    .await
    .unwrap();
    stack.ok(&successor_id, incident, resolve_task(1)).await;

    // The timeline shows the handover (names, never phones), and the leaver's name stays in
    // history: their report-in is still theirs.
    let detail = stack.detail(incident).await;
    let handover = detail
        .timeline
        .iter()
        .find(|e| e.kind == people::HANDOVER_KIND)
        .expect("the handover is on the timeline");
    assert!(handover.note.contains(&leaver_name), "{}", handover.note);
    assert!(handover.note.contains("接任者"), "{}", handover.note);
    assert!(!handover.note.contains("1390000"), "{}", handover.note);
    let accepted = detail
        .timeline
        .iter()
        .find(|e| e.kind == "task.accepted" && e.actor_id == leaver)
        .expect("the leaver's report-in stays on the timeline");
    assert!(accepted.actor_name.contains(&leaver_name), "{accepted:?}");

    // The audit log: the offboarding with before and after, and the token's revocation.
    let logged = audited(&stack, "people.offboard", &leaver).await;
    assert_eq!(logged.len(), 1);
    let (before, after) = (logged[0].0.clone().unwrap(), logged[0].1.clone().unwrap());
    assert_eq!(before["left_at"], Value::Null);
    assert_ne!(after["left_at"], Value::Null);
    assert_eq!(after["successor_id"], successor_id.as_str());
    assert_eq!(
        after["handed_over"]["tasks"][0]["incident_id"],
        incident.to_string()
    );
    assert!(
        !after["phone"].as_str().unwrap().contains("0000"),
        "masked: {after}"
    );
    assert_eq!(
        audited(&stack, "token.revoke", &token.id.to_string())
            .await
            .len(),
        1
    );
    assert_eq!(
        audited(&stack, "people.onboard", &successor_id).await.len(),
        1
    );

    // Listed as left, by name, with their successor.
    let all = people::list(
        stack.pool(),
        &people::Filter {
            area_prefix: None,
            include_left: true,
        },
    )
    .await
    .unwrap();
    let listed = all.iter().find(|p| p.id == leaver).unwrap();
    assert_eq!(listed.name, leaver_name);
    assert!(!listed.is_live());
    let live = people::list(stack.pool(), &people::Filter::default())
        .await
        .unwrap();
    assert!(live.iter().all(|p| p.id != leaver));
}

#[tokio::test]
async fn a_transfer_hands_over_what_the_old_post_held_and_deputies_follow_a_leaver() {
    let stack = Stack::builder()
        .with_query()
        .at(chrono::Utc::now())
        .start()
        .await;
    let (_, [grid, ..], _, _) = places();
    let heating = dept(&grid, "heating");
    let water = dept(&grid, "water");
    let mover = format!("li-{heating}");
    let incident = stack.whistled("people-2", &grid).await;
    stack.ok(&mover, incident, accept(1)).await;

    // Moving to the water department while holding a heating task: refused, nothing changes.
    let to_water = PersonChange {
        role: Some(people::parse_role("liaison", &water).unwrap()),
        ..Default::default()
    };
    let refused = people::change(
        stack.pool(),
        &mover,
        &to_water,
        None,
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, Refused::Holds { ref holdings, .. } if holdings.tasks.len() == 1
            && holdings.department.as_deref() == Some(heating.as_str()))
    );
    assert!(audited(&stack, "people.change", &mover).await.is_empty());

    let successor_id = format!("{mover}-new");
    people::onboard(
        stack.pool(),
        &liaison(&successor_id, "新报到人", &heating),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    let secret = stack.token_for(Role::Liaison, &heating).await;
    let moved = people::change(
        stack.pool(),
        &mover,
        &to_water,
        Some(&successor_id),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    assert!(
        matches!(moved.person.role, whistle_domain::Role::Liaison { ref department } if department.as_str() == water)
    );
    assert_eq!(
        moved.tokens_revoked.len(),
        1,
        "the token scoped to heating goes"
    );
    assert!(
        tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(successor_id.as_str())
    );
    let logged = audited(&stack, "people.change", &mover).await;
    assert_eq!(
        logged.len(),
        1,
        "one area: both departments lie in the same district"
    );
    assert_eq!(
        logged[0].0.as_ref().unwrap()["department_code"],
        heating.as_str()
    );
    assert_eq!(
        logged[0].1.as_ref().unwrap()["department_code"],
        water.as_str()
    );

    // A deputy who leaves is replaced by their successor in everyone's settings.
    let deputy = format!("li-{water}");
    whistle_store::notifications::set_preferences(
        stack.pool(),
        &successor_id,
        None,
        Some(&deputy),
        &admin(),
    )
    .await
    .unwrap();
    let refused = people::offboard(stack.pool(), &deputy, None, chrono::Utc::now(), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Refused::Holds { ref holdings, .. } if holdings.deputy_for == [successor_id.clone()]),
        "{refused}"
    );
    // An SMS still waiting for the leaver (their quiet hours) is given up, not sent.
    let waiting = whistle_store::notifications::NewNotification {
        id: uuid::Uuid::now_v7(),
        event_id: uuid::Uuid::now_v7(),
        recipient: deputy.clone(),
        channel: whistle_store::notifications::Channel::Sms,
        person_id: Some(deputy.clone()),
        kind: "task.dispatched".into(),
        incident_id: Some(incident),
        task_id: Some(1),
        department_code: Some(water.clone()),
        title: "派单".into(),
        body: "派单".into(),
        created_at: chrono::Utc::now(),
        send_at: Some(chrono::Utc::now() + chrono::TimeDelta::hours(8)),
        deputy_of: None,
    };
    let mut tx = stack.pool().begin().await.unwrap();
    whistle_store::notifications::insert(&mut tx, std::slice::from_ref(&waiting))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    people::offboard(
        stack.pool(),
        &deputy,
        Some(&mover),
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM notifications WHERE id = $1")
        .bind(waiting.id)
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(status, "failed");
    let now_deputy = people::get(stack.pool(), &successor_id)
        .await
        .unwrap()
        .unwrap()
        .deputy_id;
    assert_eq!(now_deputy.as_deref(), Some(mover.as_str()));
    // Who left is no one's recipient.
    let liaisons = whistle_store::notifications::liaisons(stack.pool(), &water)
        .await
        .unwrap();
    assert!(liaisons.iter().all(|r| r.person_id != deputy));
    assert!(liaisons.iter().any(|r| r.person_id == mover));

    // ListPeople: the area's operators see them, on duty and left; no one else does.
    let (district, _, other_district, _) = places();
    let operator = stack.token_for(Role::Operator, &district).await;
    let mut client = command_center_on(stack.channel(), &operator);
    let list = |include_left: bool| v1::ListPeopleRequest {
        area_code: String::new(),
        include_left,
    };
    let on_duty = client
        .list_people(list(false))
        .await
        .unwrap()
        .into_inner()
        .people;
    assert!(on_duty.iter().all(|p| p.person_id != deputy));
    let moved_entry = on_duty.iter().find(|p| p.person_id == mover).unwrap();
    assert_eq!(moved_entry.post, water);
    assert!(!moved_entry.post_name.is_empty());
    assert!(moved_entry.phone_masked.contains('*'), "{moved_entry:?}");
    let everyone = client
        .list_people(list(true))
        .await
        .unwrap()
        .into_inner()
        .people;
    let left = everyone.iter().find(|p| p.person_id == deputy).unwrap();
    assert!(left.left_at.is_some());
    assert_eq!(left.successor_id, mover);
    let elsewhere = client
        .list_people(v1::ListPeopleRequest {
            area_code: other_district,
            include_left: false,
        })
        .await;
    assert_eq!(code(elsewhere), Code::PermissionDenied);
    let new = tokens::NewToken {
        role: Some(Role::Liaison),
        department_code: Some(water.clone()),
        person_id: Some(mover.clone()),
        ..Default::default()
    };
    let (_, liaison_token) = tokens::create(stack.pool(), &new, chrono::Utc::now(), &admin())
        .await
        .unwrap();
    let denied = command_center_on(stack.channel(), &liaison_token)
        .list_people(list(false))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);
}

#[tokio::test]
async fn onboarding_is_validated_and_a_grid_is_never_left_without_its_worker() {
    let stack = Stack::builder().without_dispatch().start().await;
    let (_, [grid, other_grid, _], _, _) = places();
    let at = chrono::Utc::now();
    let worker = |id: &str, grid: &str, phone: &str| NewPerson {
        id: id.into(),
        name: "新网格员".into(),
        phone: phone.into(),
        role: people::parse_role("grid_worker", grid).unwrap(),
    };
    // Each refusal of its kind: a missing post, a taken id, bad input.
    let refusal = |r: Result<people::Person, Refused>| match r {
        Err(Refused::Invalid(message) | Refused::NotFound(message) | Refused::Exists(message)) => {
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let unknown_grid = format!("{}999", &grid[..12]);
    let message = refusal(
        people::onboard(
            stack.pool(),
            &worker("gw-new", &unknown_grid, "13900002222"),
            at,
            &admin(),
        )
        .await,
    );
    assert!(
        message.contains(&format!("no grid {unknown_grid}")),
        "{message}"
    );
    let message = refusal(
        people::onboard(
            stack.pool(),
            &worker(&format!("gw-{grid}"), &grid, "13900002222"),
            at,
            &admin(),
        )
        .await,
    );
    assert!(message.contains("exists already"), "{message}");
    let message = refusal(
        people::onboard(stack.pool(), &worker("gw-new", &grid, "1234"), at, &admin()).await,
    );
    assert!(message.contains("bad phone"), "{message}");
    let message = refusal(
        people::onboard(
            stack.pool(),
            &NewPerson {
                role: people::parse_role("liaison", "150602-no_such").unwrap(),
                ..worker("li-new", &grid, "13900002222")
            },
            at,
            &admin(),
        )
        .await,
    );
    assert!(
        message.contains("no department 150602-no_such"),
        "{message}"
    );
    assert!(audited(&stack, "people.onboard", "gw-new").await.is_empty());

    // The grid's only worker cannot leave without a successor working that grid.
    let only = format!("gw-{grid}");
    let refused = people::offboard(stack.pool(), &only, None, at, &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Refused::Holds { ref holdings, .. } if holdings.grid.as_deref() == Some(grid.as_str()))
    );
    let elsewhere = format!("gw-{other_grid}");
    let wrong = people::offboard(stack.pool(), &only, Some(&elsewhere), at, &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, Refused::Unfit(ref m) if m.contains("grid worker of it")),
        "{wrong}"
    );
    let new = people::onboard(
        stack.pool(),
        &worker("gw-new", &grid, "0477-8581234"),
        at,
        &admin(),
    )
    .await
    .unwrap();
    assert_eq!(new.phone, "04778581234");
    let outcome = people::offboard(stack.pool(), &only, Some("gw-new"), at, &admin())
        .await
        .unwrap();
    assert_eq!(outcome.handed_over.grid.as_deref(), Some(grid.as_str()));
    // An id is never reused, even after its person left.
    let message = refusal(
        people::onboard(
            stack.pool(),
            &worker(&only, &grid, "13900003333"),
            at,
            &admin(),
        )
        .await,
    );
    assert!(message.contains("left"), "{message}");
    // And who left cannot be offboarded or changed again.
    let again = people::offboard(stack.pool(), &only, None, at, &admin())
        .await
        .unwrap_err();
    assert!(matches!(again, Refused::Left(ref m) if m.contains("left")));
}

/// Clock skew between replicas: a person onboarded by a replica whose clock runs an hour ahead
/// "joined" after the offboarding replica's now. The offboarding is refused plainly (invalid
/// argument, naming the clocks) rather than answered `unavailable` — a database error a client
/// would retry in vain — and nothing is written; once the clocks agree it goes through.
#[tokio::test]
async fn offboarding_someone_who_joined_after_this_replicas_now_says_the_clocks_disagree() {
    use whistle_proto::v1::CommandErrorCode;
    let stack = Stack::builder().at(chrono::Utc::now()).start().await;
    let (district, [grid, ..], _, _) = places();
    let heating = dept(&grid, "heating");
    let newcomer = format!("li-{heating}-9");
    let ahead = stack.now() + chrono::TimeDelta::hours(1);
    people::onboard(
        stack.pool(),
        &liaison(&newcomer, "快钟入职", &heating),
        ahead,
        &admin(),
    )
    .await
    .unwrap();
    let offboarding = || v1::Command {
        command_id: uuid::Uuid::now_v7().to_string(),
        actor_id: format!("op-{district}"),
        incident_id: String::new(),
        expected_version: 0,
        body: Some(v1::command::Body::OffboardPerson(v1::OffboardPerson {
            person_id: newcomer.clone(),
            successor_id: String::new(),
        })),
    };
    let client = whistle_wire::CommandClient::new(stack.admin().clone());
    let left = "SELECT count(*) FROM people WHERE left_at IS NOT NULL";
    let before = stack.count(left).await;
    let reply = client.send(&offboarding()).await.expect("dispatch answers");
    match reply.outcome {
        Some(Outcome::Error(e)) => {
            assert_eq!(e.code, CommandErrorCode::InvalidArgument as i32, "{e:?}");
            assert!(
                e.message.contains("clocks disagree") && e.message.contains(&newcomer),
                "{}",
                e.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(stack.count(left).await, before, "nothing written");
    assert!(audited(&stack, "people.offboard", &newcomer)
        .await
        .is_empty());

    stack.advance(chrono::TimeDelta::hours(2));
    let reply = client.send(&offboarding()).await.expect("dispatch answers");
    assert!(matches!(reply.outcome, Some(Outcome::Ok(_))), "{reply:?}");
    assert_eq!(stack.count(left).await, before + 1);
}
