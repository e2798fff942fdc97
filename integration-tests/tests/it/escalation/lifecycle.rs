//! An incident's life: handled, whistled to departments, returned, reopened, closed, attached to.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};

use whistle_wire::{kind, subject};

use crate::harness::*;

use super::bodies::{accept, escalate, grid_of_street, resolve, verify};

#[tokio::test]
async fn self_handled_at_community_then_followed_up_and_closed() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(1);
    let incident = stack.report("self-1", &grid, "heating.no_heat").await;
    assert_eq!(
        stack.state(incident).await,
        ("handling".into(), "community".into())
    );

    let ok = stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Community)),
            incident,
            resolve(None),
        )
        .await;
    assert_eq!(ok.status, v1::IncidentStatus::Resolved as i32);
    stack
        .ok(
            &format!("gw-{grid}"),
            incident,
            verify(v1::Satisfaction::Satisfied),
        )
        .await;
    assert_eq!(stack.state(incident).await.0, "closed");
    assert_eq!(
        stack.timeline(incident).await,
        [
            "incident.reported",
            "incident.resolved",
            "incident.verified",
            "incident.closed"
        ]
    );
    eventually("the events", WAIT, || async {
        stack.events_of(incident).await.len() == 4
    })
    .await
    .unwrap();
    let kinds: Vec<String> = stack
        .events_of(incident)
        .await
        .into_iter()
        .map(|(_, e)| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "incident.reported",
            "incident.resolved",
            "incident.verified",
            "incident.closed"
        ]
    );
}

#[tokio::test]
async fn whistle_to_three_departments_two_report_in_one_misses_and_is_supervised_and_escalated() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(2);
    let incident = stack.report("whistle-1", &grid, "heating.no_heat").await;

    // The community's 4-hour window runs out: up to the street.
    stack.advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
    stack.wait_state(incident, "handling", "street").await;

    // The street blows the whistle to three departments.
    let departments = [
        dept(&grid, "heating"),
        dept(&grid, "housing_construction"),
        dept(&grid, "water"),
    ];
    let ok = stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Street)),
            incident,
            escalate(&departments),
        )
        .await;
    assert_eq!(ok.status, v1::IncidentStatus::Whistled as i32);
    let tasks = stack.tasks(incident).await;
    assert_eq!(
        tasks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
        departments.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Another department's liaison may not report in for the heating task.
    let refused = stack
        .command(&format!("li-{}", departments[2]), incident, accept(1))
        .await;
    let Some(Outcome::Error(error)) = refused.outcome else {
        panic!("accepted by the wrong department: {refused:?}")
    };
    assert_eq!(
        error.code,
        v1::CommandErrorCode::Forbidden as i32,
        "{}",
        error.message
    );

    // Two report in within 30 minutes.
    stack.advance(TimeDelta::minutes(10));
    stack
        .ok(&format!("li-{}", departments[0]), incident, accept(1))
        .await;
    stack
        .ok(&format!("li-{}", departments[1]), incident, accept(2))
        .await;

    // The third misses its report-in: 督办, 催办 and escalation to the district.
    stack.advance(TimeDelta::minutes(21));
    stack.wait_state(incident, "whistled", "district").await;
    let tasks = stack.tasks(incident).await;
    assert_eq!(
        tasks.iter().map(|t| t.2.as_str()).collect::<Vec<_>>(),
        ["accepted", "accepted", "supervised"]
    );
    let timeline = stack.timeline(incident).await;
    for kind in [
        "incident.whistled",
        "task.dispatched",
        "task.accepted",
        "task.supervised",
        "task.reminded",
        "incident.escalated",
    ] {
        assert!(
            timeline.iter().any(|k| k == kind),
            "{kind} missing from {timeline:?}"
        );
    }

    // Late, the water department still reports in, and everyone sees it on its task subject.
    stack
        .ok(&format!("li-{}", departments[2]), incident, accept(3))
        .await;
    assert_eq!(stack.state(incident).await.0, "accepted");
    eventually("the task event", WAIT, || async {
        stack.events_of(incident).await.iter().any(|(subject, e)| {
            subject == &subject::task_event(&departments[2], kind::TASK_ACCEPTED)
                && e.kind == "task.accepted"
        })
    })
    .await
    .unwrap();
    let supervised = stack
        .events_of(incident)
        .await
        .into_iter()
        .find(|(_, e)| e.kind == "task.supervised")
        .expect("supervised event");
    assert_eq!(
        supervised.0,
        subject::task_event(&departments[2], kind::TASK_SUPERVISED)
    );
}

#[tokio::test]
async fn a_return_goes_back_to_the_street_and_a_reassignment_keeps_the_deadline() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(3);
    // First handled by the street; its summons: housing and construction, market regulation.
    let incident = stack.report("return-1", &grid, "property.unlicensed").await;
    let street = format!("hd-{}", unit(&grid, Level::Street));
    stack.ok(&street, incident, escalate(&[])).await;
    let tasks = stack.tasks(incident).await;
    assert_eq!(tasks.len(), 2);
    let market = dept(&grid, "market_regulation");
    assert_eq!(tasks[1].1, market);

    let returned = Body::Return(v1::Return {
        task_id: "2".into(),
        reason: v1::ReturnReason::NotOurDuty as i32,
        note: "不属于市场监管职责".into(),
    });
    stack.ok(&format!("li-{market}"), incident, returned).await;
    let reassign = Body::Reassign(v1::Reassign {
        task_id: "2".into(),
        to_department_code: dept(&grid, "urban_management"),
        note: String::new(),
    });
    let ok = stack.ok(&street, incident, reassign).await;
    assert_eq!(ok.task_id, "3");

    let deadlines: Vec<(i32, String, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT task_id, status, resolve_due_at FROM tasks WHERE incident_id = $1 ORDER BY task_id",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(
        deadlines.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        ["dispatched", "cancelled", "dispatched"]
    );
    assert_eq!(
        deadlines[2].2, deadlines[0].2,
        "the SLA clock does not restart on a reassignment"
    );
    let return_reason: Option<String> = sqlx::query_scalar(
        "SELECT return_reason FROM tasks WHERE incident_id = $1 AND task_id = 2",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(return_reason.as_deref(), Some("not_our_duty"));
}

#[tokio::test]
async fn resolved_unsatisfied_reopened_resolved_satisfied_closed() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(4);
    let incident = stack.report("redo-1", &grid, "heating.pipe_leak").await;
    let heating = format!("li-{}", dept(&grid, "heating"));
    stack.advance(TimeDelta::hours(2) + TimeDelta::minutes(1));
    stack.wait_state(incident, "handling", "street").await;
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Street)),
            incident,
            escalate(&[]),
        )
        .await;
    stack.ok(&heating, incident, accept(1)).await;
    stack.ok(&heating, incident, resolve(Some(1))).await;
    assert_eq!(stack.state(incident).await.0, "resolved");

    let worker = format!("gw-{grid}");
    stack
        .ok(&worker, incident, verify(v1::Satisfaction::Unsatisfied))
        .await;
    assert_eq!(
        stack.state(incident).await.0,
        "whistled",
        "reopened with the department dispatched again"
    );
    let reopened: (i32, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT reopen_count, due_at FROM incidents WHERE id = $1")
            .bind(incident)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert_eq!(reopened.0, 1);
    stack.ok(&heating, incident, accept(2)).await;
    stack.ok(&heating, incident, resolve(Some(2))).await;
    stack
        .ok(&worker, incident, verify(v1::Satisfaction::Satisfied))
        .await;
    assert_eq!(stack.state(incident).await.0, "closed");
    let timeline = stack.timeline(incident).await;
    assert!(
        timeline.iter().any(|k| k == "incident.reopened"),
        "{timeline:?}"
    );
    assert_eq!(
        timeline
            .iter()
            .filter(|k| *k == "incident.resolved")
            .count(),
        2
    );
}

#[tokio::test]
async fn no_follow_up_within_72_hours_closes_unverified() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(5);
    let incident = stack.report("unverified-1", &grid, "heating.no_heat").await;
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Community)),
            incident,
            resolve(None),
        )
        .await;
    stack.advance(TimeDelta::hours(71));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stack.state(incident).await.0,
        "resolved",
        "still inside the follow-up window"
    );
    stack.advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    stack
        .wait_state(incident, "closed_unverified", "community")
        .await;
}

#[tokio::test]
async fn reports_nearby_attach_to_the_open_incident() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grids = grids();
    let (a, b) = (&grids[20], &grids[21]);
    let at = |id: &str, grid: &str, lat: f64, lon: f64| {
        let mut r = report(id, grid);
        r.category = "municipal.street_light".into();
        r.location = Some(v1::Location {
            lat,
            lon,
            address: String::new(),
        });
        r.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            stack.now().timestamp_millis(),
        ));
        r
    };
    stack.publish(&at("light-1", a, 39.80000, 109.90000)).await;
    let first = stack.incident_of("light-1").await;
    // 50 m away, from the neighbouring grid's worker: the same street light.
    stack.publish(&at("light-2", b, 39.80045, 109.90000)).await;
    // 1 km away: another light.
    stack.publish(&at("light-3", b, 39.80900, 109.90000)).await;
    // East and west: the lookup's box bounds longitude too (0.0008° ≈ 68 m at 39.8° N).
    stack.publish(&at("light-4", b, 39.80000, 109.90080)).await;
    stack.publish(&at("light-5", a, 39.80000, 109.89750)).await;
    let second = stack.incident_of("light-2").await;
    let third = stack.incident_of("light-3").await;
    let fourth = stack.incident_of("light-4").await;
    let fifth = stack.incident_of("light-5").await;
    assert_eq!(second, first);
    assert_ne!(third, first);
    assert_eq!(fourth, first, "68 m east is the same light");
    assert_ne!(fifth, first, "214 m west is another light");
    assert_ne!(fifth, third);
    let count: i32 = sqlx::query_scalar("SELECT report_count FROM incidents WHERE id = $1")
        .bind(first)
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(count, 3);
    assert_eq!(
        stack.timeline(first).await,
        ["incident.reported", "report.attached", "report.attached"]
    );
    eventually("the attach events", WAIT, || async {
        stack.events_of(first).await.iter().any(|(_, e)| matches!(&e.body, Some(v1::event::Body::ReportAttached(b)) if b.report_count == 3))
    })
    .await
    .unwrap();
}
