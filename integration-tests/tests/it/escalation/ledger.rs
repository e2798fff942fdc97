//! The long-term ledger (挂账) end to end: a department that reported in proposes its case over
//! NATS, the district approves, the case leaves ListOverdue while its deadlines stop, the review
//! timer brings it back across a dispatch restart and the district returns it with a fresh
//! deadline; a denial through the query service's gRPC door; refusals for the wrong role and bad
//! input.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, CommandErrorCode};
use whistle_store::tokens::Role;

use crate::harness::*;

use super::bodies::{accept, grid_of_street, refusal, same_instant};

fn propose(reason: v1::LedgerReason, responsible: &str, review_at: DateTime<Utc>) -> Body {
    Body::ProposeLedger(v1::ProposeLedger {
        reason: reason as i32,
        note: "小区供热管网需整体改造，待纳入明年城建计划".into(),
        responsible: responsible.into(),
        review_at: Some(whistle_wire::convert::timestamp(review_at)),
    })
}

fn decide(approve: bool, note: &str) -> Body {
    Body::DecideLedger(v1::DecideLedger {
        approve,
        note: note.into(),
    })
}

fn review(extend_to: Option<DateTime<Utc>>, note: &str) -> Body {
    Body::ReviewLedger(v1::ReviewLedger {
        extend_to: extend_to.map(whistle_wire::convert::timestamp),
        note: note.into(),
    })
}

/// The incident's projected ledger columns: state, entered, review date.
async fn ledger_columns(
    stack: &Stack,
    incident: Uuid,
) -> (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT ledger_state, ledgered_at, ledger_review_at FROM incidents WHERE id = $1",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap()
}

/// heating.no_heat up to the street and whistled, both departments reported in.
async fn whistled_and_accepted(stack: &Stack, grid: &str, report: &str) -> Uuid {
    let incident = stack.report(report, grid, "heating.no_heat").await;
    let community = format!("hd-{}", unit(grid, Level::Community));
    stack
        .ok(&community, incident, super::bodies::escalate(&[]))
        .await;
    stack.whistle(grid, incident).await;
    for (task, kind) in [(1, "heating"), (2, "housing_construction")] {
        let liaison = format!("li-{}", dept(grid, kind));
        stack.ok(&liaison, incident, accept(task)).await;
    }
    incident
}

#[tokio::test]
async fn a_ledger_case_leaves_the_overdue_list_and_returns_after_its_review_across_a_restart() {
    let mut stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    let grid = grid_of_street(4);
    let district = &grid[..6];
    let heating = format!("li-{}", dept(&grid, "heating"));
    let housing = dept(&grid, "housing_construction");
    let operator = format!("op-{district}");
    // The missed deadline sends the case to the district, so the city enters and reviews it.
    let city = "op-150600";
    let incident = whistled_and_accepted(&stack, &grid, "ledger-1").await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;

    // Past the 24 h deadline: overdue, on the list.
    stack.advance(TimeDelta::hours(25));
    stack.settle().await;
    eventually("overdue", WAIT, || async {
        stack.incident_column::<bool>(incident, "overdue").await
    })
    .await
    .unwrap();
    assert!(stack
        .overdue(district)
        .await
        .iter()
        .any(|item| item.incident_id == incident.to_string()));

    // Wrong role and bad input are refused and write nothing.
    let review_at = stack.now() + TimeDelta::days(30);
    let before = stack.timeline(incident).await;
    let street_office = unit(&grid, Level::Street);
    let elsewhere = if district == "150603" {
        "150602-heating"
    } else {
        "150603-heating"
    };
    let cases = [
        (
            operator.as_str(),
            propose(v1::LedgerReason::Planning, &housing, review_at),
            CommandErrorCode::Forbidden,
        ),
        (
            heating.as_str(),
            propose(v1::LedgerReason::Unspecified, &housing, review_at),
            CommandErrorCode::InvalidArgument,
        ),
        (
            heating.as_str(),
            propose(v1::LedgerReason::Planning, "150602-nothing", review_at),
            CommandErrorCode::NotFound,
        ),
        (
            heating.as_str(),
            propose(v1::LedgerReason::Planning, elsewhere, review_at),
            CommandErrorCode::InvalidArgument,
        ),
        (
            heating.as_str(),
            propose(
                v1::LedgerReason::Planning,
                &housing,
                stack.now() + TimeDelta::days(91),
            ),
            CommandErrorCode::InvalidArgument,
        ),
        (
            heating.as_str(),
            propose(v1::LedgerReason::Planning, &housing, stack.now()),
            CommandErrorCode::InvalidArgument,
        ),
        (
            operator.as_str(),
            decide(true, ""),
            CommandErrorCode::InvalidTransition,
        ),
    ];
    for (actor, body, code) in cases {
        let reply = stack.command(actor, incident, &body).await;
        assert_eq!(refusal(reply), code, "{actor} {body:?}");
    }
    assert_eq!(stack.timeline(incident).await, before);

    stack
        .ok(
            &heating,
            incident,
            propose(v1::LedgerReason::Planning, &street_office, review_at),
        )
        .await;
    assert_eq!(
        ledger_columns(&stack, incident).await.0.as_deref(),
        Some("proposed")
    );
    // The proposing department does not approve, nor the district for its own work; the city does.
    for actor in [heating.as_str(), operator.as_str()] {
        let refused = stack.command(actor, incident, decide(true, "")).await;
        assert_eq!(refusal(refused), CommandErrorCode::Forbidden, "{actor}");
    }
    stack.ok(city, incident, decide(true, "同意挂账")).await;
    let (state, entered, review_on) = ledger_columns(&stack, incident).await;
    assert_eq!(state.as_deref(), Some("entered"));
    assert!(entered.is_some());
    assert!(same_instant(review_on.unwrap(), review_at));
    assert!(!stack.incident_column::<bool>(incident, "overdue").await);
    let timers: Vec<String> = sqlx::query_scalar("SELECT key FROM timers WHERE incident_id = $1")
        .bind(incident)
        .fetch_all(stack.pool())
        .await
        .unwrap();
    assert_eq!(timers, ["ledger_review"]);
    // Off the overdue list, its tasks too, and flagged in GetIncident.
    assert!(!stack
        .overdue(district)
        .await
        .iter()
        .any(|item| item.incident_id == incident.to_string()));
    let detail = stack.detail(incident).await;
    let summary = detail.incident.unwrap();
    assert!(summary.ledgered && !summary.overdue);
    let ledger = detail.ledger.unwrap();
    assert!(ledger.entered && !ledger.review_due);
    assert_eq!(ledger.responsible, street_office);
    assert_eq!(ledger.approver, v1::Level::City as i32);
    // GetOverview: out of `overdue`, in the ledger's size — live, and the same by SQL.
    let overview = overview_as_recounted(&stack, district).await;
    assert_eq!(overview.overdue, 0);
    let size = overview.ledger.unwrap();
    assert_eq!((size.count, size.oldest_days), (1, 0.0));
    // Nobody escalates or supervises a ledger case.
    let supervise = Body::Supervise(v1::Supervise {
        task_id: String::new(),
        note: String::new(),
    });
    let refused = stack.command(&operator, incident, supervise).await;
    assert_eq!(refusal(refused), CommandErrorCode::InvalidTransition);

    // Dispatch is down when the review date comes; on restart the review timer fires once.
    stack.stop_dispatch().await;
    stack.advance(TimeDelta::days(30));
    stack.start_dispatch().await;
    stack.settle().await;
    eventually("review due", WAIT, || async {
        ledger_columns(&stack, incident).await.0.as_deref() == Some("review_due")
    })
    .await
    .unwrap();
    let timeline = stack.timeline(incident).await;
    assert_eq!(
        timeline
            .iter()
            .filter(|k| *k == "incident.ledger_review_due")
            .count(),
        1
    );
    // Thirty days without a window, deadline or report-in running out: nothing but the review.
    let approved = timeline
        .iter()
        .position(|k| k == "incident.ledger_approved")
        .unwrap();
    assert_eq!(
        timeline[approved + 1..],
        ["incident.ledger_review_due".to_owned()],
        "{timeline:?}"
    );

    let size = overview_as_recounted(&stack, district)
        .await
        .ledger
        .unwrap();
    assert_eq!(
        (size.count, size.oldest_days, size.median_days),
        (1, 30.0, 30.0)
    );

    // The city returns it to handling with a fresh 15-working-day deadline.
    let now = stack.now();
    stack
        .ok(city, incident, review(None, "规划已批复，恢复办理"))
        .await;
    let (state, entered, review_at) = ledger_columns(&stack, incident).await;
    assert_eq!((state, entered, review_at), (None, None, None));
    let fresh: DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    assert!(fresh > now + TimeDelta::days(15) && fresh > due, "{fresh}");
    let tasks: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT resolve_due_at FROM tasks WHERE incident_id = $1 ORDER BY task_id",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert!(tasks.iter().all(|at| same_instant(*at, fresh)), "{tasks:?}");
    let timers: Vec<String> =
        sqlx::query_scalar("SELECT key FROM timers WHERE incident_id = $1 ORDER BY key")
            .bind(incident)
            .fetch_all(stack.pool())
            .await
            .unwrap();
    // Back at its level: the city has no window of its own.
    let level: String = stack.incident_column(incident, "level").await;
    let expected: &[&str] = if level == "city" {
        &["resolve_deadline"]
    } else {
        &["level_window", "resolve_deadline"]
    };
    assert_eq!(timers, expected);
    stack.wait_published("incident.ledger_returned", 1).await;
    let overview = overview_as_recounted(&stack, district).await;
    assert_eq!(overview.ledger.unwrap().count, 0);
}

/// The area's `GetOverview`, checked equal to the SQL recount.
async fn overview_as_recounted(stack: &Stack, area_code: &str) -> v1::Overview {
    let live = stack.overview(area_code, None).await;
    let recounted = whistle_query::recount(
        stack.pool(),
        area_code,
        Some(&area_code.parse().unwrap()),
        whistle_query::DEFAULT_WINDOW,
        whistle_domain::policy::builtin("ordos")
            .unwrap()
            .scoring()
            .ledger,
        stack.now(),
    )
    .await
    .expect("recount");
    assert_eq!(live, recounted);
    live
}

#[tokio::test]
async fn a_ledger_proposal_is_denied_and_a_case_extended_through_the_query_service() {
    let stack = Stack::command_center().await;
    let grid = grid_of_street(2);
    let heating = dept(&grid, "heating");
    let incident = whistled_and_accepted(&stack, &grid, "ledger-2").await;
    let liaison = stack.token_for(Role::Liaison, &heating).await;
    let mut department = dispatch(&stack, &liaison).await;
    let command = |body: Body| v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    };
    let review_at = stack.now() + TimeDelta::days(20);
    let housing = dept(&grid, "housing_construction");

    // A wrong body for the RPC; the department may not decide.
    let wrong = department.propose_ledger(command(decide(true, ""))).await;
    assert_eq!(code(wrong), tonic::Code::InvalidArgument);
    department
        .propose_ledger(command(propose(
            v1::LedgerReason::Funding,
            &housing,
            review_at,
        )))
        .await
        .unwrap();
    let own = department.decide_ledger(command(decide(true, ""))).await;
    assert_eq!(code(own), tonic::Code::PermissionDenied);
    // The department's workbench row carries the proposal (its 申请挂账 is not offered again).
    let row = command_center_on(stack.channel(), &liaison)
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .find(|t| t.incident.as_ref().unwrap().incident_id == incident.to_string())
        .expect("the department's task listed");
    let proposal = row.ledger.expect("the proposal on the row");
    assert!(!proposal.entered);
    assert_eq!(proposal.reason, v1::LedgerReason::Funding as i32);
    assert_eq!(proposal.responsible, housing);

    let operator = stack.token_for(Role::Operator, &grid[..6]).await;
    let mut district = dispatch(&stack, &operator).await;
    let detail = stack.detail(incident).await;
    assert!(!detail.ledger.unwrap().entered);
    let bare = district.decide_ledger(command(decide(false, ""))).await;
    assert_eq!(code(bare), tonic::Code::InvalidArgument);
    district
        .decide_ledger(command(decide(false, "资金已落实，按期办结")))
        .await
        .unwrap();
    assert_eq!(ledger_columns(&stack, incident).await.0, None);
    let none = district.review_ledger(command(review(None, ""))).await;
    assert_eq!(code(none), tonic::Code::FailedPrecondition);

    // Proposed again and approved; the district keeps it in the ledger to a later review.
    department
        .propose_ledger(command(propose(
            v1::LedgerReason::Legal,
            &housing,
            review_at,
        )))
        .await
        .unwrap();
    district
        .decide_ledger(command(decide(true, "")))
        .await
        .unwrap();
    let later = stack.now() + TimeDelta::days(60);
    district
        .review_ledger(command(review(Some(later), "诉讼未结")))
        .await
        .unwrap();
    let (state, _, review_on) = ledger_columns(&stack, incident).await;
    assert_eq!(state.as_deref(), Some("entered"));
    assert!(same_instant(review_on.unwrap(), later));
    // ListLedger lists it with its review date.
    let listed = stack
        .client()
        .list_ledger(v1::ListLedgerRequest {
            area_code: grid[..6].to_owned(),
            page_size: 0,
        })
        .await
        .expect("ListLedger")
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].incident.as_ref().unwrap().incident_id,
        incident.to_string()
    );
    let entry = listed[0].ledger.as_ref().unwrap();
    assert!(entry.entered);
    assert_eq!(
        entry.review_at,
        Some(whistle_wire::convert::timestamp(later))
    );
    assert_eq!(entry.reason, v1::LedgerReason::Legal as i32);
    let kinds: Vec<String> = stack
        .timeline(incident)
        .await
        .into_iter()
        .filter(|k| k.starts_with("incident.ledger_"))
        .collect();
    assert_eq!(
        kinds,
        [
            "incident.ledger_proposed",
            "incident.ledger_denied",
            "incident.ledger_proposed",
            "incident.ledger_approved",
            "incident.ledger_extended",
        ]
    );
    // The workbench's department resolves its task from the ledger; the case stays entered
    // until the last department resolves.
    department
        .resolve(command(super::bodies::resolve(Some(1))))
        .await
        .unwrap();
    assert_eq!(
        ledger_columns(&stack, incident).await.0.as_deref(),
        Some("entered")
    );
}
