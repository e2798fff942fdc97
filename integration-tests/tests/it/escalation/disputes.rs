//! Dispatch disputes (派单异议) end to end: a department disputes its task over NATS and through
//! the query service's gRPC door, the dispatching level arbitrates (upheld: a reassignment that
//! keeps the SLA deadline in PostgreSQL; rejected: the task stays), and a dispute waits across a
//! dispatch restart while the report-in clock runs on.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, CommandErrorCode};
use whistle_store::tokens::Role;

use crate::harness::*;

use super::bodies::{accept, grid_of_street, refusal, same_instant};

fn dispute(task: u32, to: &str, reason: &str) -> Body {
    Body::Dispute(v1::Dispute {
        task_id: task.to_string(),
        to_department_code: to.into(),
        reason: reason.into(),
    })
}

fn arbitrate(task: u32, uphold: bool, note: &str) -> Body {
    Body::DecideDispute(v1::DecideDispute {
        task_id: task.to_string(),
        uphold,
        note: note.into(),
    })
}

/// Each task's id, department, status and resolve deadline, in order.
async fn tasks(stack: &Stack, incident: Uuid) -> Vec<(i32, String, String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT task_id, department_code, status, resolve_due_at FROM tasks
         WHERE incident_id = $1 ORDER BY task_id",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_department_disputes_over_nats_and_the_street_upholds_without_moving_the_deadline() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(5);
    let housing = format!("li-{}", dept(&grid, "housing_construction"));
    let heating = format!("li-{}", dept(&grid, "heating"));
    let urban = dept(&grid, "urban_management");
    let street = format!("hd-{}", unit(&grid, Level::Street));
    let incident = stack.whistled("dispute-1", &grid).await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    let before = stack.timeline(incident).await;
    stack.advance(TimeDelta::minutes(10));

    // Wrong role, wrong department, bad input: refused, nothing written.
    let other_district = format!("{}-urban_management", "150603");
    let cases = [
        (
            street.as_str(),
            dispute(2, &urban, "不归我们"),
            CommandErrorCode::Forbidden,
        ),
        (
            heating.as_str(),
            dispute(2, &urban, "不归我们"),
            CommandErrorCode::Forbidden,
        ),
        (
            housing.as_str(),
            dispute(2, &urban, " "),
            CommandErrorCode::InvalidArgument,
        ),
        (
            housing.as_str(),
            dispute(2, &dept(&grid, "housing_construction"), "不归我们"),
            CommandErrorCode::InvalidArgument,
        ),
        (
            housing.as_str(),
            dispute(2, &other_district, "不归我们"),
            CommandErrorCode::InvalidArgument,
        ),
        (
            housing.as_str(),
            dispute(2, &dept(&grid, "heating"), "归供热"),
            CommandErrorCode::InvalidArgument,
        ),
        (
            housing.as_str(),
            dispute(9, &urban, "不归我们"),
            CommandErrorCode::NotFound,
        ),
        (
            street.as_str(),
            arbitrate(2, true, ""),
            CommandErrorCode::InvalidTransition,
        ),
    ];
    for (actor, body, code) in cases {
        let reply = stack.command(actor, incident, &body).await;
        assert_eq!(refusal(reply), code, "{actor} {body:?}");
    }
    assert_eq!(stack.timeline(incident).await, before);

    let disputed = stack
        .ok(&housing, incident, dispute(2, &urban, "小区管网属城管维护"))
        .await;
    assert_eq!(
        (disputed.task_id.as_str(), disputed.task_status),
        ("2", v1::TaskStatus::Dispatched as i32)
    );
    // Once per task; the disputing department does not arbitrate.
    let twice = stack
        .command(&housing, incident, dispute(2, &urban, "再次异议"))
        .await;
    assert_eq!(refusal(twice), CommandErrorCode::InvalidTransition);
    let own = stack
        .command(&housing, incident, arbitrate(2, true, ""))
        .await;
    assert_eq!(refusal(own), CommandErrorCode::Forbidden);

    stack.advance(TimeDelta::minutes(5));
    let upheld = stack
        .ok(&street, incident, arbitrate(2, true, "同意改派"))
        .await;
    assert_eq!(upheld.task_status, v1::TaskStatus::Cancelled as i32);
    let kept: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(same_instant(kept, due), "an upheld dispute moved the SLA");
    let rows = tasks(&stack, incident).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (rows[1].2.as_str(), rows[2].1.as_str()),
        ("cancelled", urban.as_str())
    );
    assert_eq!(rows[2].2, "dispatched");
    assert!(rows.iter().all(|r| same_instant(r.3, due)), "{rows:?}");
    let timeline = stack.timeline(incident).await;
    assert!(
        timeline.ends_with(&[
            "task.disputed".to_owned(),
            "task.dispute_upheld".to_owned(),
            "task.reassigned".to_owned(),
            "task.dispatched".to_owned(),
        ]),
        "{timeline:?}"
    );
    stack.wait_published("task.dispute_upheld", 1).await;

    // The street heard of the dispute, the department of the arbitration, the new one of its task.
    for (kind, recipient) in [
        ("task.disputed", street.clone()),
        ("task.dispute_upheld", housing.clone()),
        ("task.dispatched", format!("li-{urban}")),
    ] {
        eventually(&format!("{kind} told to {recipient}"), WAIT, || async {
            stack
                .count(&format!(
                    "SELECT count(*) FROM notifications WHERE kind = '{kind}'
                     AND recipient = '{recipient}' AND channel = 'console'"
                ))
                .await
                == 1
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_dispute_is_sent_and_rejected_through_the_query_service() {
    let stack = Stack::command_center().await;
    let grid = grid_of_street(3);
    let housing = dept(&grid, "housing_construction");
    let incident = stack.whistled("dispute-2", &grid).await;
    let liaison = stack.token_for(Role::Liaison, &housing).await;
    let mut department = dispatch(&stack, &liaison).await;
    let command = |body| door_command(incident, body);
    let transport = dept(&grid, "transport");

    // A wrong body for the RPC, another department's task: refused by the door or by dispatch.
    let wrong = department.dispute(command(arbitrate(2, true, ""))).await;
    assert_eq!(code(wrong), tonic::Code::InvalidArgument);
    let not_ours = department
        .dispute(command(dispute(1, &transport, "不归供热")))
        .await;
    assert_eq!(code(not_ours), tonic::Code::PermissionDenied);
    let ok = department
        .dispute(command(dispute(2, &transport, "道路破损引起，属交通")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.task_id, "2");
    let own = department
        .decide_dispute(command(arbitrate(2, false, "x")))
        .await;
    assert_eq!(code(own), tonic::Code::PermissionDenied);

    let operator = stack.token_for(Role::Operator, &grid[..6]).await;
    let mut district = dispatch(&stack, &operator).await;
    let bare = district
        .decide_dispute(command(arbitrate(2, false, "")))
        .await;
    assert_eq!(code(bare), tonic::Code::InvalidArgument);
    let rejected = district
        .decide_dispute(command(arbitrate(2, false, "楼内管道属住建监管")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.task_status, v1::TaskStatus::Dispatched as i32);
    let again = district
        .decide_dispute(command(arbitrate(2, true, "")))
        .await;
    assert_eq!(code(again), tonic::Code::FailedPrecondition);
    // The task stays with housing, which still reports in; the dispute is on the timeline.
    department.accept(command(accept(2))).await.unwrap();
    let rows = tasks(&stack, incident).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str()),
        (housing.as_str(), "accepted")
    );
    let notes: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, note FROM timeline WHERE incident_id = $1 AND kind LIKE 'task.dispute%' ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(notes[0].0, "task.disputed");
    assert!(
        notes[0].1.contains(&transport) && notes[0].1.contains("道路破损"),
        "{notes:?}"
    );
    assert_eq!(
        notes[1],
        (
            "task.dispute_rejected".to_owned(),
            "楼内管道属住建监管".to_owned()
        )
    );
}

#[tokio::test]
async fn a_dispute_waits_across_a_dispatch_restart_and_is_upheld_after_the_report_in_was_missed() {
    let mut stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(6);
    let housing = format!("li-{}", dept(&grid, "housing_construction"));
    let justice = dept(&grid, "justice");
    let incident = stack.whistled("dispute-3", &grid).await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    stack
        .ok(
            &housing,
            incident,
            dispute(2, &justice, "邻里纠纷，属司法调解"),
        )
        .await;

    // Dispatch is down past the report-in deadline: the clock did not pause for the dispute.
    stack.stop_dispatch().await;
    stack.advance(TimeDelta::minutes(31));
    stack.start_dispatch().await;
    stack.settle().await;
    eventually("task 2 supervised", WAIT, || async {
        tasks(&stack, incident).await[1].2 == "supervised"
    })
    .await
    .unwrap();
    // A missed report-in sends the incident to the district, whose operator arbitrates.
    let district = format!("op-{}", &grid[..6]);
    stack.ok(&district, incident, arbitrate(2, true, "")).await;
    let rows = tasks(&stack, incident).await;
    let states: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_str()))
        .collect();
    let housing_code = dept(&grid, "housing_construction");
    assert_eq!(
        states,
        [
            (housing_code.as_str(), "cancelled"),
            (justice.as_str(), "dispatched")
        ]
    );
    let kept: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(same_instant(kept, due));
    assert!(same_instant(rows[2].3, due));
    let timeline = stack.timeline(incident).await;
    let disputed = timeline.iter().position(|k| k == "task.disputed").unwrap();
    let supervised = timeline
        .iter()
        .position(|k| k == "task.supervised")
        .unwrap();
    let upheld = timeline
        .iter()
        .position(|k| k == "task.dispute_upheld")
        .unwrap();
    assert!(disputed < supervised && supervised < upheld, "{timeline:?}");
}
