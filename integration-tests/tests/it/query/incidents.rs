//! One incident in full, the overdue list and the overview counts.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use whistle_domain::Level;
use whistle_proto::v1::{self};

use crate::harness::*;

#[tokio::test]
async fn get_incident_has_tasks_reports_and_the_whole_timeline() {
    let stack = Stack::command_center().await;
    let (_, [grid, ..], _, _) = places();
    let first = stack.filed(
        "detail-1",
        &grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    let incident = stack.file(&first).await;
    // A second report from the same grid attaches to it.
    stack.advance(TimeDelta::minutes(1));
    let mut second = stack.filed(
        "detail-2",
        &grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    second.title = "又有业主聚集".into();
    assert_eq!(stack.file(&second).await, incident);
    // The street whistles for the category's departments; petitions reports in.
    stack.whistle(&grid, incident).await;
    let whistled_at = stack.now();
    stack.advance(TimeDelta::minutes(5));
    let petitions = dept(&grid, "petitions");
    stack
        .ok(&format!("li-{petitions}"), incident, accept(1))
        .await;

    let detail = stack.detail(incident).await;
    let summary = detail.incident.as_ref().unwrap();
    assert_eq!(summary.incident_id, incident.to_string());
    assert_eq!(summary.status, v1::IncidentStatus::Whistled as i32);
    assert_eq!(summary.level, v1::Level::Street as i32);
    assert_eq!(summary.report_count, 2);
    assert_eq!(summary.category_name, "群体性信访苗头");
    assert_eq!(detail.description, first.description);
    assert_eq!(
        detail.policy_version,
        stack
            .incident_column::<String>(incident, "policy_version")
            .await
    );
    assert_eq!(detail.policy_version, "ordos-2026.1");

    // Reports as filed, duplicates included.
    assert_eq!(detail.reports, [first, second]);

    // Tasks, with deadlines, holders and department names.
    let names: BTreeMap<String, String> = sqlx::query_as("SELECT code, name FROM departments")
        .fetch_all(stack.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let departments: Vec<&str> = detail
        .tasks
        .iter()
        .map(|t| t.state.as_ref().unwrap().department_code.as_str())
        .collect();
    let public_security = dept(&grid, "public_security");
    assert_eq!(departments, [petitions.as_str(), public_security.as_str()]);
    for task in &detail.tasks {
        let state = task.state.as_ref().unwrap();
        assert_eq!(task.department_name, names[&state.department_code]);
        assert!(!task.department_name.is_empty());
        assert_eq!(at(&state.dispatched_at), whistled_at);
        assert_eq!(
            at(&state.accept_due_at),
            whistled_at + TimeDelta::minutes(30)
        );
        assert_eq!(at(&state.resolve_due_at), at(&summary.due_at));
    }
    let accepted = detail.tasks[0].state.as_ref().unwrap();
    assert_eq!(
        (accepted.task_id, accepted.status),
        (1, v1::TaskStatus::Accepted as i32)
    );
    assert_eq!(accepted.holder_id, format!("li-{petitions}"));
    assert_eq!(at(&accepted.accepted_at), stack.now());
    let waiting = detail.tasks[1].state.as_ref().unwrap();
    assert_eq!(
        (waiting.task_id, waiting.status),
        (2, v1::TaskStatus::Dispatched as i32)
    );
    assert_eq!(waiting.holder_id, "");
    assert!(waiting.accepted_at.is_none());

    // The whole timeline, in order.
    let stored: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT seq, kind, actor_id FROM timeline WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    let read: Vec<(i32, String, String)> = detail
        .timeline
        .iter()
        .map(|e| (e.seq as i32, e.kind.clone(), e.actor_id.clone()))
        .collect();
    assert_eq!(read, stored);
    let kinds: Vec<&str> = detail.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[..2], ["incident.reported", "report.attached"]);
    for kind in ["incident.whistled", "task.dispatched", "task.accepted"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(detail.timeline.last().unwrap().kind, "task.accepted");
    assert_eq!(at(&detail.timeline.last().unwrap().at), stack.now());

    // Open, at the street: its level's own clock runs, no outcome yet.
    let level_due: DateTime<Utc> = stack.incident_column(incident, "level_due_at").await;
    assert_eq!(at(&detail.level_due_at), level_due);
    assert_eq!(
        (
            detail.resolved_at,
            detail.closed_at,
            detail.satisfaction,
            detail.reopen_count,
            detail.duplicate_of.as_str()
        ),
        (None, None, v1::Satisfaction::Unspecified as i32, 0, "")
    );
}

#[tokio::test]
async fn list_overdue_shows_late_tasks_and_incidents_with_how_late() {
    let stack = Stack::command_center().await;
    let (district, [grid, ..], other_district, other_grid) = places();
    let t0 = stack.now();
    let incident = stack
        .file(&stack.filed("late-1", &grid, "petition.collective", v1::Urgency::Urgent))
        .await;
    stack
        .file(&stack.filed(
            "late-2",
            &other_grid,
            "heating.no_heat",
            v1::Urgency::Normal,
        ))
        .await;
    stack.whistle(&grid, incident).await;
    stack.advance(TimeDelta::minutes(5));
    let petitions = dept(&grid, "petitions");
    stack
        .ok(&format!("li-{petitions}"), incident, accept(1))
        .await;
    assert!(stack.overdue("").await.is_empty());

    // Public security misses its 30-minute report-in.
    stack.advance(TimeDelta::minutes(35));
    stack.settle().await;
    let items = stack.overdue(&district).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let task = &items[0];
    assert_eq!(task.incident_id, incident.to_string());
    assert_eq!(task.task_id, "2");
    assert_eq!(task.department_code, dept(&grid, "public_security"));
    let department_name: String =
        sqlx::query_scalar("SELECT name FROM departments WHERE code = $1")
            .bind(&task.department_code)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert_eq!(task.department_name, department_name);
    assert_eq!(task.title, "3号楼室内温度只有12度");
    assert_eq!(task.street_code, unit(&grid, Level::Street));
    assert_eq!(at(&task.due_at), t0 + TimeDelta::minutes(30));
    assert_eq!(late_by(task), TimeDelta::minutes(10));
    let level: String = stack.incident_column(incident, "level").await;
    assert_eq!(task.level, whistle_proto_level(&level));

    // The 2-hour SLA passes too: the incident is late, and so is the task that reported in but
    // has not resolved.
    stack.advance(TimeDelta::hours(1) + TimeDelta::minutes(30));
    stack.settle().await;
    let now = stack.now();
    assert_eq!(now, t0 + TimeDelta::hours(2) + TimeDelta::minutes(10));
    let items = stack.overdue("150600").await;
    let due = t0 + TimeDelta::hours(2);
    let seen: Vec<(&str, DateTime<Utc>, TimeDelta)> = items
        .iter()
        .map(|i| (i.task_id.as_str(), at(&i.due_at), late_by(i)))
        .collect();
    assert_eq!(
        seen,
        [
            ("2", t0 + TimeDelta::minutes(30), TimeDelta::minutes(100)),
            ("", due, TimeDelta::minutes(10)),
            ("1", due, TimeDelta::minutes(10)),
        ]
    );
    assert!(items.iter().all(|i| i.incident_id == incident.to_string()));
    assert_eq!(items[1].department_code, "");
    assert_eq!(items[1].department_name, "");
    assert_eq!(items[2].department_code, petitions);
    assert!(stack.overdue(&other_district).await.is_empty());
}

#[tokio::test]
async fn overview_counts_today_and_the_three_rates() {
    let stack = Stack::command_center().await;
    let (district, [g1, g2, g3], other_district, other_grid) = places();
    let t0 = stack.now();
    // A manhole the community fixes, followed up satisfied.
    let manhole = stack
        .file(&stack.filed("ov-1", &g1, "municipal.manhole", v1::Urgency::Emergency))
        .await;
    // A collective petition the street whistles for.
    let petition = stack
        .file(&stack.filed("ov-2", &g2, "petition.collective", v1::Urgency::Urgent))
        .await;
    // A blocked fire lane nobody touches.
    stack
        .file(&stack.filed("ov-3", &g3, "fire.blocked_access", v1::Urgency::Normal))
        .await;
    // Elsewhere: no heating in another district.
    stack
        .file(&stack.filed("ov-4", &other_grid, "heating.no_heat", v1::Urgency::Urgent))
        .await;

    stack.advance(TimeDelta::minutes(2));
    stack
        .ok(
            &format!("hd-{}", unit(&g1, Level::Community)),
            manhole,
            resolve(),
        )
        .await;
    stack.advance(TimeDelta::minutes(1));
    stack.ok(&format!("gw-{g1}"), manhole, satisfied()).await;
    stack.advance(TimeDelta::minutes(1));
    stack.whistle(&g2, petition).await;
    stack.advance(TimeDelta::minutes(6));
    stack
        .ok(
            &format!("li-{}", dept(&g2, "petitions")),
            petition,
            accept(1),
        )
        .await;
    // Still inside the fire lane's community window, the first of its deadlines.
    stack.advance(TimeDelta::minutes(2));
    stack.settle().await;
    assert_eq!(stack.now(), t0 + TimeDelta::minutes(12));

    // The manhole's outcome, as GetIncident tells it.
    let closed = stack.detail(manhole).await;
    assert_eq!(
        (
            closed.resolved_at.map(|t| at(&Some(t))),
            closed.closed_at.map(|t| at(&Some(t))),
            closed.satisfaction,
            closed.reopen_count,
            closed.level_due_at,
        ),
        (
            Some(t0 + TimeDelta::minutes(2)),
            Some(t0 + TimeDelta::minutes(3)),
            v1::Satisfaction::Satisfied as i32,
            0,
            None
        )
    );

    let overview = stack.overview(&district, None).await;
    assert_eq!(overview.area_code, district);
    assert_eq!(at(&overview.as_of), stack.now());
    assert_eq!(
        counts(&overview.by_status),
        [("closed", 1), ("handling", 1), ("whistled", 1)]
    );
    assert_eq!(overview.open_incidents, 2);
    assert_eq!(
        counts(&overview.by_level),
        [("community", 1), ("street", 1)]
    );
    assert_eq!(
        counts(&overview.by_category),
        [("fire.blocked_access", 1), ("petition.collective", 1)]
    );
    assert_eq!(counts(&overview.by_urgency), [("normal", 1), ("urgent", 1)]);
    assert_eq!(overview.overdue, 0);
    assert_eq!(overview.reported_today, 3);
    assert_eq!(overview.resolved_today, 1);
    assert_eq!(overview.whistles_today, 1);
    let rates = overview.rates.unwrap();
    assert_eq!(
        (
            rates.dispatched,
            rates.accepted_in_time,
            rates.due,
            rates.resolved_in_time,
            rates.followed_up,
            rates.satisfied
        ),
        (2, 1, 0, 0, 1, 1)
    );
    assert_eq!(
        (
            rates.response_rate,
            rates.resolution_rate,
            rates.satisfaction_rate
        ),
        (0.5, 0.0, 1.0)
    );

    // Scoped to one street, to the other district, and the whole city.
    let street = stack.overview(&unit(&g2, Level::Street), None).await;
    assert_eq!(counts(&street.by_status), [("whistled", 1)]);
    assert_eq!(street.rates.unwrap().dispatched, 2);
    let other = stack.overview(&other_district, None).await;
    assert_eq!(counts(&other.by_status), [("handling", 1)]);
    assert_eq!(
        (
            other.open_incidents,
            other.reported_today,
            other.whistles_today
        ),
        (1, 1, 0)
    );
    assert_eq!(other.rates.unwrap().dispatched, 0);
    let city = stack.overview("", None).await;
    assert_eq!((city.open_incidents, city.reported_today), (3, 4));
    assert_eq!(stack.overview("150600", None).await.reported_today, 4);

    // Past the 2-hour deadlines of the three emergencies, still the same day in Ordos. The clock
    // moves five minutes at a time, so timers fire close to when they are due.
    for _ in 0..24 {
        stack.advance(TimeDelta::minutes(5));
        stack.settle().await;
    }
    assert_eq!(
        stack.now(),
        t0 + TimeDelta::hours(2) + TimeDelta::minutes(12)
    );
    let overview = stack.overview(&district, None).await;
    assert_eq!(overview.overdue, 2, "the petition and the fire lane");
    assert_eq!(overview.reported_today, 3);
    assert_eq!(overview.resolved_today, 1);
    let rates = overview.rates.unwrap();
    assert_eq!((rates.due, rates.resolved_in_time), (3, 1));
    assert!((rates.resolution_rate - 1.0 / 3.0).abs() < 1e-9);
    // Whatever else the timers dispatched meanwhile (the fire lane's street window whistles by
    // itself), only the petitions task reported in on time.
    let (dispatched, whistles): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tasks t JOIN incidents i ON i.id = t.incident_id
                 WHERE i.district_code = $1),
                (SELECT count(*) FROM timeline tl JOIN incidents i ON i.id = tl.incident_id
                 WHERE i.district_code = $1 AND tl.kind = 'incident.whistled')",
    )
    .bind(&district)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert!(dispatched >= 2 && whistles >= 1);
    assert_eq!(rates.dispatched, dispatched as u64);
    assert_eq!(rates.accepted_in_time, 1);
    assert_eq!(overview.whistles_today, whistles as u64);
    assert_eq!((rates.followed_up, rates.satisfied), (1, 1));

    // Windows are whole days (see overview.rs): nine minutes is today, which holds everything
    // this test did; the deadlines later today are not due yet either way.
    let today = stack
        .overview(&district, Some(TimeDelta::minutes(9)))
        .await
        .rates
        .unwrap();
    assert_eq!(today, rates);
}
