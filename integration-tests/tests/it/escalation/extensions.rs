//! Deadline extensions (延期申请) end to end: asked and answered over NATS and over the query
//! service's gRPC door, the SLA deadline and its durable timer moved in PostgreSQL, and an
//! unanswered request denied on its answer-window timer across a dispatch restart.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, CommandErrorCode};
use whistle_store::tokens::Role;

use crate::harness::*;

use super::bodies::{accept, grid_of_street, refusal, same_instant};

fn ask(task: Option<u32>, until: Option<DateTime<Utc>>) -> Body {
    Body::RequestExtension(v1::RequestExtension {
        task_id: task.map(|t| t.to_string()).unwrap_or_default(),
        until: until.map(whistle_wire::convert::timestamp),
        reason: "供热管网需整体更换，材料到货需要时间".into(),
    })
}

fn decide(approve: bool, note: &str) -> Body {
    Body::DecideExtension(v1::DecideExtension {
        approve,
        note: note.into(),
    })
}

async fn timer_at(stack: &Stack, incident: Uuid, key: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT due_at FROM timers WHERE incident_id = $1 AND key = $2")
        .bind(incident)
        .bind(key)
        .fetch_optional(stack.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_community_asks_over_nats_and_the_street_s_approval_moves_the_deadline_and_its_timer() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(2);
    let community = format!("hd-{}", unit(&grid, Level::Community));
    let street = format!("hd-{}", unit(&grid, Level::Street));
    // heating.no_heat: handled by the community first, resolved within 24 h.
    let incident = stack.report("extend-1", &grid, "heating.no_heat").await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    stack.advance(TimeDelta::hours(1));

    // Bad requests are refused and change nothing.
    let later = due + TimeDelta::hours(24);
    let cases = [
        (
            community.as_str(),
            ask(None, None),
            CommandErrorCode::InvalidArgument,
        ),
        (
            community.as_str(),
            ask(None, Some(due - TimeDelta::hours(1))),
            CommandErrorCode::InvalidArgument,
        ),
        (
            community.as_str(),
            ask(None, Some(due + TimeDelta::days(8))),
            CommandErrorCode::InvalidArgument,
        ),
        (
            street.as_str(),
            ask(None, Some(later)),
            CommandErrorCode::Forbidden,
        ),
        (
            street.as_str(),
            decide(true, ""),
            CommandErrorCode::InvalidTransition,
        ),
    ];
    for (actor, body, code) in cases {
        let reply = stack.command(actor, incident, &body).await;
        assert_eq!(refusal(reply), code, "{actor} {body:?}");
    }
    assert_eq!(stack.timeline(incident).await, ["incident.reported"]);

    let asked = stack.ok(&community, incident, ask(None, Some(later))).await;
    assert_eq!(asked.version, 2);
    let answer_due = timer_at(&stack, incident, "extension_answer")
        .await
        .unwrap();
    assert!(same_instant(answer_due, stack.now() + TimeDelta::hours(4)));
    // The asker does not answer its own request; a denial needs a note.
    let own = stack.command(&community, incident, decide(true, "")).await;
    assert_eq!(refusal(own), CommandErrorCode::Forbidden);
    let bare = stack.command(&street, incident, decide(false, "")).await;
    assert_eq!(refusal(bare), CommandErrorCode::InvalidArgument);
    // One request waits at a time.
    let twice = stack
        .command(&community, incident, ask(None, Some(later)))
        .await;
    assert_eq!(refusal(twice), CommandErrorCode::InvalidTransition);

    stack.ok(&street, incident, decide(true, "同意延期")).await;
    let moved: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(same_instant(moved, later), "{moved} vs {later}");
    let resolve_timer = timer_at(&stack, incident, "resolve_deadline")
        .await
        .unwrap();
    assert!(same_instant(resolve_timer, later));
    assert_eq!(timer_at(&stack, incident, "extension_answer").await, None);
    assert_eq!(
        stack.timeline(incident).await,
        [
            "incident.reported",
            "incident.extension_requested",
            "incident.extension_approved"
        ]
    );
    stack.wait_published("incident.extension_approved", 1).await;

    // The old deadline passes without consequence; the new one is the SLA now.
    stack.advance(TimeDelta::hours(3) + TimeDelta::minutes(1));
    stack.settle().await;
    stack.advance(due - stack.now() + TimeDelta::minutes(1));
    stack.settle().await;
    let overdue: bool = stack.incident_column(incident, "overdue").await;
    assert!(!overdue, "overdue at the deadline an extension moved");
}

#[tokio::test]
async fn an_unanswered_request_survives_a_dispatch_restart_and_is_denied_and_sent_up_on_its_timer()
{
    let mut stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(4);
    let community = format!("hd-{}", unit(&grid, Level::Community));
    let street = format!("hd-{}", unit(&grid, Level::Street));
    let incident = stack.report("extend-2", &grid, "heating.no_heat").await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    // Up to the street (its window is 8 h), which asks the district for more time.
    stack
        .ok(&community, incident, super::bodies::escalate(&[]))
        .await;
    stack.wait_state(incident, "handling", "street").await;
    stack.advance(TimeDelta::minutes(10));
    stack
        .ok(
            &street,
            incident,
            ask(None, Some(due + TimeDelta::hours(12))),
        )
        .await;
    let answer_due = timer_at(&stack, incident, "extension_answer")
        .await
        .unwrap();

    // The answer window ends while dispatch is down; its timer is in the database.
    stack.stop_dispatch().await;
    stack.advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
    assert!(stack.now() > answer_due);
    stack.start_dispatch().await;
    // Unanswered: denied, and (per the Ordos policy) sent up — at the street that is the whistle.
    stack.wait_state(incident, "whistled", "street").await;
    let timeline = stack.timeline(incident).await;
    assert_eq!(
        timeline[..5],
        [
            "incident.reported",
            "incident.escalated",
            "incident.extension_requested",
            "incident.extension_denied",
            "incident.whistled",
        ],
        "{timeline:?}"
    );
    let kept: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(same_instant(kept, due), "a denial moved the deadline");
    assert_eq!(timer_at(&stack, incident, "extension_answer").await, None);
    let note: String = sqlx::query_scalar(
        "SELECT note FROM timeline WHERE incident_id = $1 AND kind = 'incident.extension_denied'",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert!(note.contains("视为不予延期"), "{note}");
    // Too late to answer now.
    let district = format!("op-{}", &grid[..6]);
    let late = stack.command(&district, incident, decide(true, "")).await;
    assert_eq!(refusal(late), CommandErrorCode::InvalidTransition);
    stack.wait_published("incident.extension_denied", 1).await;
}

#[tokio::test]
async fn a_department_asks_through_the_query_service_and_the_district_operator_approves_there() {
    let stack = Stack::command_center().await;
    let grid = grid_of_street(3);
    let heating = dept(&grid, "heating");
    let incident = stack.whistled("extend-3", &grid).await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    let liaison = stack.token_for(Role::Liaison, &heating).await;
    let mut department = dispatch(&stack, &liaison).await;
    let command = |body| door_command(incident, body);
    let until = due + TimeDelta::days(2);

    // Before reporting in, a department has nothing to extend; a wrong body is refused by the door.
    let early = department
        .request_extension(command(ask(Some(1), Some(until))))
        .await;
    assert_eq!(code(early), tonic::Code::FailedPrecondition);
    let wrong = department
        .request_extension(command(decide(true, "")))
        .await;
    assert_eq!(code(wrong), tonic::Code::InvalidArgument);
    department.accept(command(accept(1))).await.unwrap();
    let asked = department
        .request_extension(command(ask(Some(1), Some(until))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.task_id, "1");
    // The department may not answer itself, nor may the street: the district answers for departments.
    let own = department.decide_extension(command(decide(true, ""))).await;
    assert_eq!(code(own), tonic::Code::PermissionDenied);
    let street = format!("hd-{}", unit(&grid, Level::Street));
    let by_street = stack.command(&street, incident, decide(true, "")).await;
    assert_eq!(refusal(by_street), CommandErrorCode::Forbidden);

    // GetIncident shows the request; only an operator of the approving level may answer it.
    let pending = stack.detail(incident).await.pending_extension.unwrap();
    assert_eq!(
        (
            pending.task_id.as_str(),
            pending.approver,
            pending.may_answer
        ),
        ("1", v1::Level::District as i32, true)
    );
    assert!(same_instant(at(&pending.until), until));
    let seen_by_department = command_center(&stack.query_url(), &liaison)
        .await
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!seen_by_department.pending_extension.unwrap().may_answer);

    let operator = stack.token_for(Role::Operator, &grid[..6]).await;
    dispatch(&stack, &operator)
        .await
        .decide_extension(command(decide(true, "同意，请按期办结")))
        .await
        .unwrap();
    let moved: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(same_instant(moved, until));
    let detail = stack.detail(incident).await;
    assert_eq!((detail.pending_extension, detail.extensions), (None, 1));
    let task_dues: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT resolve_due_at FROM tasks WHERE incident_id = $1")
            .bind(incident)
            .fetch_all(stack.pool())
            .await
            .unwrap();
    assert_eq!(task_dues.len(), 2);
    assert!(task_dues.iter().all(|at| same_instant(*at, until)));
    let timeline = stack.timeline(incident).await;
    assert!(
        timeline.ends_with(&[
            "incident.extension_requested".to_owned(),
            "incident.extension_approved".to_owned()
        ]),
        "{timeline:?}"
    );
}
