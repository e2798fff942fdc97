//! People's lifecycle from the console's door (issue 25, item 2): `Dispatch.OnboardPerson`,
//! `ChangePerson` and `OffboardPerson`, forwarded by the query service to dispatch as commands of
//! the token's operator. An operator manages the people posted inside their area: onboarding,
//! transfers and offboarding with their effects (tokens revoked, tasks handed over, the audit log
//! naming the operator); another area's operator, a non-operator and bad input are refused and
//! change nothing.

use tonic::{Code, Request, Status};
use uuid::Uuid;
use whistle_proto::v1::{self, command::Body};
use whistle_store::tokens::{self, Role};

use crate::harness::*;

/// A people's command for the door: no actor (the token's), no incident.
fn command(body: Body) -> v1::Command {
    v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: String::new(),
        expected_version: 0,
        body: Some(body),
    }
}

fn onboard(id: &str, name: &str, role: &str, post: &str) -> Body {
    Body::OnboardPerson(v1::OnboardPerson {
        person_id: id.into(),
        name: name.into(),
        phone: "139 0000 2222".into(),
        role: role.into(),
        post: post.into(),
    })
}

fn offboard(id: &str, successor: &str) -> Body {
    Body::OffboardPerson(v1::OffboardPerson {
        person_id: id.into(),
        successor_id: successor.into(),
    })
}

fn transfer(id: &str, post: &str, successor: &str) -> Body {
    Body::ChangePerson(v1::ChangePerson {
        person_id: id.into(),
        post: post.into(),
        successor_id: successor.into(),
        ..Default::default()
    })
}

/// Sends `body` with `token` through the RPC of its verb.
async fn send(stack: &Stack, token: &str, command: v1::Command) -> Result<v1::CommandOk, Status> {
    let mut client = dispatch(stack, token).await;
    let request = Request::new(command.clone());
    match command.body {
        Some(Body::OnboardPerson(_)) => client.onboard_person(request).await,
        Some(Body::ChangePerson(_)) => client.change_person(request).await,
        Some(Body::OffboardPerson(_)) => client.offboard_person(request).await,
        other => panic!("not a people's command: {other:?}"),
    }
    .map(tonic::Response::into_inner)
}

async fn ok(stack: &Stack, token: &str, body: Body) -> v1::PersonChanged {
    send(stack, token, command(body.clone()))
        .await
        .unwrap_or_else(|status| panic!("{body:?}: {status}"))
        .person
        .map(|person| *person)
        .expect("a people's command answers with the person")
}

async fn refused(stack: &Stack, token: &str, body: Body) -> Status {
    match send(stack, token, command(body.clone())).await {
        Err(status) => status,
        Ok(ok) => panic!("{body:?} was applied: {ok:?}"),
    }
}

/// Everything a people's command could write.
async fn written(stack: &Stack) -> [i64; 5] {
    [
        stack.count("SELECT count(*) FROM people").await,
        stack
            .count("SELECT count(*) FROM people WHERE left_at IS NOT NULL")
            .await,
        stack.count("SELECT count(*) FROM audit_log").await,
        stack
            .count("SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL")
            .await,
        stack.count("SELECT count(*) FROM commands").await,
    ]
}

/// The actors and doors of the audit entries of `action` about `target`, oldest first.
async fn audited(stack: &Stack, action: &str, target: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT actor, door, area_code FROM audit_log WHERE action = $1 AND target = $2
         ORDER BY at, id",
    )
    .bind(action)
    .bind(target)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

async fn holder(stack: &Stack, incident: Uuid, task: i32) -> Option<String> {
    sqlx::query_scalar("SELECT holder_id FROM tasks WHERE incident_id = $1 AND task_id = $2")
        .bind(incident)
        .bind(task)
        .fetch_one(stack.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_onboards_transfers_and_offboards_through_the_rpcs() {
    let stack = Stack::builder()
        .with_query()
        .at(chrono::Utc::now())
        .start()
        .await;
    let (district, [grid, ..], _, _) = places();
    let heating = dept(&grid, "heating");
    let water = dept(&grid, "water");
    let operator = stack.token_for(Role::Operator, &district).await;
    let operator_id = format!("op-{district}");

    // 入职: a second liaison of heating, on the audit log with the operator as actor.
    let newcomer = format!("li-{heating}-2");
    let onboarding = command(onboard(&newcomer, "接任者", "liaison", &heating));
    let first = send(&stack, &operator, onboarding.clone()).await.unwrap();
    let person = first.person.clone().unwrap();
    assert_eq!(
        (
            person.role.as_str(),
            person.post.as_str(),
            person.area_code.as_str()
        ),
        ("liaison", heating.as_str(), district.as_str())
    );
    assert!(!person.post_name.is_empty());
    assert!(person.left_at.is_none());
    // A retry with the same command id gets the first outcome and writes nothing more.
    let before = written(&stack).await;
    let again = send(&stack, &operator, onboarding).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(written(&stack).await, before);
    assert_eq!(
        audited(&stack, "people.onboard", &newcomer).await,
        [(
            operator_id.clone(),
            "whistle-dispatch".to_owned(),
            district.clone()
        )]
    );
    // The leaver holds a task and a token.
    let leaver = format!("li-{heating}");
    let incident = stack.whistled("people-rpc-1", &grid).await;
    stack.ok(&leaver, incident, accept(1)).await;
    let secret = stack.token_for(Role::Liaison, &heating).await;
    let token = tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();

    // 离岗 without a successor: refused with what is held, nothing changed.
    let before = written(&stack).await;
    let status = refused(&stack, &operator, offboard(&leaver, "")).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(whistle_query::reason(&status), Some("successor_needed"));
    let held = whistle_query::holdings(&status).expect("the holdings in the details");
    assert_eq!(held.tasks.len(), 1, "{held:?}");
    assert_eq!(held.tasks[0].incident_id, incident.to_string());
    assert_eq!(held.tasks[0].task_id, "1");
    assert_eq!(held.tasks[0].department_code, heating);
    assert!(status.message().contains("name a successor"), "{status:?}");
    // A successor of another department cannot hold the task.
    let status = refused(&stack, &operator, offboard(&leaver, &format!("li-{water}"))).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(whistle_query::reason(&status), Some("successor_unfit"));
    // Nor can someone who does not exist.
    let status = refused(&stack, &operator, offboard(&leaver, "li-nobody")).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(written(&stack).await, before);
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(leaver.as_str())
    );

    // With the newcomer as successor: the task handed over, the token revoked, the operator the
    // actor of the audit entry and of the handover on the timeline.
    let left = ok(&stack, &operator, offboard(&leaver, &newcomer)).await;
    assert!(left.left_at.is_some());
    assert_eq!(left.successor_id, newcomer);
    assert_eq!(left.tokens_revoked, [token.id.to_string()]);
    let handed = left.handed_over.unwrap();
    assert_eq!(handed.tasks.len(), 1);
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(newcomer.as_str())
    );
    assert!(
        tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
            .await
            .unwrap()
            .is_none(),
        "the leaver's token still authenticates"
    );
    let entries = audited(&stack, "people.offboard", &leaver).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, operator_id);
    let handover: Vec<String> = sqlx::query_scalar(
        "SELECT actor_id FROM timeline WHERE incident_id = $1 AND kind = 'task.handover'",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(handover, std::slice::from_ref(&operator_id));
    // History keeps the leaver: listed with those who left, their successor named.
    let listed = command_center_on(stack.channel(), &operator)
        .list_people(v1::ListPeopleRequest {
            area_code: String::new(),
            include_left: true,
        })
        .await
        .unwrap()
        .into_inner()
        .people;
    let entry = listed.iter().find(|p| p.person_id == leaver).unwrap();
    assert!(entry.left_at.is_some());
    assert_eq!(entry.successor_id, newcomer);
    // Who left cannot leave again.
    let status = refused(&stack, &operator, offboard(&leaver, "")).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // 调岗: the newcomer moves to water; the heating task they now hold goes to a third liaison
    // onboarded for it.
    let third = format!("li-{heating}-3");
    ok(
        &stack,
        &operator,
        onboard(&third, "第三人", "liaison", &heating),
    )
    .await;
    let status = refused(&stack, &operator, transfer(&newcomer, &water, "")).await;
    assert_eq!(whistle_query::reason(&status), Some("successor_needed"));
    let held = whistle_query::holdings(&status).unwrap();
    assert_eq!(held.tasks.len(), 1, "{held:?}");
    let moved = ok(&stack, &operator, transfer(&newcomer, &water, &third)).await;
    assert_eq!(
        (moved.role.as_str(), moved.post.as_str()),
        ("liaison", water.as_str())
    );
    assert_eq!(moved.successor_id, third);
    assert_eq!(
        holder(&stack, incident, 1).await.as_deref(),
        Some(third.as_str())
    );
    let entries = audited(&stack, "people.change", &newcomer).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, operator_id);
    // A change of name only.
    let renamed = ok(
        &stack,
        &operator,
        Body::ChangePerson(v1::ChangePerson {
            person_id: third.clone(),
            name: "王五".into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        (renamed.name.as_str(), renamed.post.as_str()),
        ("王五", heating.as_str())
    );
}

#[tokio::test]
async fn others_are_refused_and_bad_input_changes_nothing() {
    let stack = Stack::builder()
        .with_query()
        .at(chrono::Utc::now())
        .start()
        .await;
    let (district, [grid, ..], other_district, other_grid) = places();
    let heating = dept(&grid, "heating");
    let target = format!("li-{heating}");
    let operator = stack.token_for(Role::Operator, &district).await;
    let elsewhere = stack.token_for(Role::Operator, &other_district).await;
    let liaison = stack.token_for(Role::Liaison, &heating).await;
    let viewer = stack.token_for(Role::Viewer, &district).await;
    let before = written(&stack).await;

    // Another district's operator neither manages this district's people nor posts anyone here.
    for body in [
        offboard(&target, ""),
        transfer(&target, &dept(&grid, "water"), ""),
        onboard("li-x", "某人", "liaison", &heating),
    ] {
        let status = refused(&stack, &elsewhere, body.clone()).await;
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{body:?}: {status:?}"
        );
        assert!(status.message().contains(&other_district), "{status:?}");
    }
    // Nor moves someone of its own out of its area: the new post lies outside it too.
    let theirs = format!("gw-{other_grid}");
    let status = refused(&stack, &elsewhere, transfer(&theirs, &grid, "")).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Nobody but an operator manages people, on either door.
    for token in [&liaison, &viewer] {
        let status = refused(&stack, token, offboard(&target, "")).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let status = refused(&stack, "", offboard(&target, "")).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Bad input, each refused in its own code.
    let unknown_grid = format!("{}999", &grid[..12]);
    let cases: Vec<(Body, Code, &str)> = vec![
        (
            onboard("gw-new", "新人", "grid_worker", "150602001"),
            Code::InvalidArgument,
            "is a grid",
        ),
        (
            onboard("gw-new", "新人", "captain", &grid),
            Code::InvalidArgument,
            "unknown role",
        ),
        // A leader (结对领导) is posted at the city or a district, not a grid.
        (
            onboard("ld-new", "新人", "leader", &grid),
            Code::InvalidArgument,
            "the city or a district",
        ),
        (
            onboard("has space", "新人", "grid_worker", &grid),
            Code::InvalidArgument,
            "person id",
        ),
        (
            onboard("gw-new", "  ", "grid_worker", &grid),
            Code::InvalidArgument,
            "name",
        ),
        (
            onboard(&format!("gw-{grid}"), "新人", "grid_worker", &grid),
            Code::AlreadyExists,
            "exists already",
        ),
        (
            onboard("gw-new", "新人", "grid_worker", &unknown_grid),
            Code::NotFound,
            "no grid",
        ),
        (offboard("li-nobody", ""), Code::NotFound, "no person"),
        (
            offboard(&target, &target),
            Code::InvalidArgument,
            "succeed themselves",
        ),
        (
            Body::ChangePerson(v1::ChangePerson {
                person_id: target.clone(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "nothing to change",
        ),
        (
            Body::ChangePerson(v1::ChangePerson {
                person_id: target.clone(),
                role: "operator".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "needs its post",
        ),
        (
            Body::ChangePerson(v1::ChangePerson {
                person_id: target.clone(),
                name: "李四".into(),
                successor_id: format!("li-{}", dept(&grid, "water")),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "only with a new role or post",
        ),
    ];
    for (body, code, needle) in cases {
        let status = refused(&stack, &operator, body.clone()).await;
        assert_eq!(status.code(), code, "{body:?}: {status:?}");
        assert!(status.message().contains(needle), "{body:?}: {status:?}");
    }
    let mut bad_phone = command(onboard("gw-new", "新人", "grid_worker", &grid));
    if let Some(Body::OnboardPerson(b)) = &mut bad_phone.body {
        b.phone = "12345".into();
    }
    let status = send(&stack, &operator, bad_phone).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("bad phone"), "{status:?}");
    // A people's command names no incident.
    let mut with_incident = command(offboard(&target, ""));
    with_incident.incident_id = Uuid::now_v7().to_string();
    let status = send(&stack, &operator, with_incident).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // The body must be the RPC's verb.
    let mut client = dispatch(&stack, &operator).await;
    let status = client
        .onboard_person(Request::new(command(offboard(&target, ""))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_eq!(
        written(&stack).await,
        before,
        "a refused people's command wrote something"
    );
}

/// The token ids of the audit entries of `action` about `target`, oldest first.
async fn audited_tokens(stack: &Stack, action: &str, target: &str) -> Vec<Option<Uuid>> {
    sqlx::query_scalar(
        "SELECT token_id FROM audit_log WHERE action = $1 AND target = $2 ORDER BY at, id",
    )
    .bind(action)
    .bind(target)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn the_audit_log_names_the_operator_s_token_never_one_a_sender_claims() {
    let stack = Stack::builder()
        .with_query()
        .at(chrono::Utc::now())
        .start()
        .await;
    let (district, [grid, ..], _, _) = places();
    let heating = dept(&grid, "heating");
    let operator = stack.token_for(Role::Operator, &district).await;
    let operator_id = format!("op-{district}");
    let token_id = |secret: String| {
        let pool = stack.pool().clone();
        async move {
            tokens::authenticate(&pool, &secret, chrono::Utc::now())
                .await
                .unwrap()
                .expect("a live token")
                .id
        }
    };
    let operator_token = token_id(operator.clone()).await;
    let someone_else_s = token_id(stack.token_for(Role::Liaison, &heating).await).await;

    // From the console (gRPC): the operator's token is on the entry, as ListAuditEntries shows.
    let by_console = format!("li-{heating}-console");
    ok(
        &stack,
        &operator,
        onboard(&by_console, "控制台", "liaison", &heating),
    )
    .await;
    assert_eq!(
        audited_tokens(&stack, "people.onboard", &by_console).await,
        [Some(operator_token)]
    );
    let listed = command_center_on(stack.channel(), &operator)
        .list_audit_entries(v1::ListAuditEntriesRequest {
            action: "people.onboard".into(),
            target: by_console.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(
        (
            listed.entries[0].actor.as_str(),
            listed.entries[0].token_id.as_str()
        ),
        (operator_id.as_str(), operator_token.to_string().as_str())
    );

    // Straight to dispatch over NATS with the operator's own token: the header names a token,
    // which dispatch records only when it is the operator's.
    let nats = stack.connect_as(&operator).await;
    let commands = whistle_wire::CommandClient::new(nats.client.clone());
    let send = |person: &str, claimed: String| {
        let mut onboarding = command(onboard(person, "直连", "liaison", &heating));
        onboarding.actor_id = operator_id.clone();
        let commands = commands.clone();
        async move {
            let reply = commands
                .send_for_token(&onboarding, &claimed)
                .await
                .expect("dispatch answers");
            assert!(
                matches!(reply.outcome, Some(v1::command_reply::Outcome::Ok(_))),
                "{reply:?}"
            );
        }
    };
    let own = format!("li-{heating}-own");
    send(&own, operator_token.to_string()).await;
    assert_eq!(
        audited_tokens(&stack, "people.onboard", &own).await,
        [Some(operator_token)]
    );
    // Another person's token, one that does not exist, and no token id at all: none recorded.
    for (person, claimed) in [
        (format!("li-{heating}-forged"), someone_else_s.to_string()),
        (format!("li-{heating}-unknown"), Uuid::now_v7().to_string()),
        (
            format!("li-{heating}-garbage"),
            "'; DROP TABLE audit_log".into(),
        ),
    ] {
        send(&person, claimed.clone()).await;
        assert_eq!(
            audited_tokens(&stack, "people.onboard", &person).await,
            [None],
            "{claimed} was recorded"
        );
        assert_eq!(
            audited(&stack, "people.onboard", &person).await[0].0,
            operator_id
        );
    }
}
