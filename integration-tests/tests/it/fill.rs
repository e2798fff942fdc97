//! `whistle bench fill`: the synthetic incidents carry the timeline their status implies, so the
//! query service's rebuild and recounts work on them as on real data.

use std::collections::HashMap;

use uuid::Uuid;
use whistle_cli::fill;

use crate::harness::*;

#[tokio::test]
async fn synthetic_incidents_have_the_timeline_their_status_implies() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let categories = vec!["heating.no_heat".to_owned(), "municipal.road".to_owned()];
    let policy = whistle_wire::policy::load("ordos").unwrap();
    let departments =
        fill::summoned_departments(&policy, &whistle_domain::ordos::dataset()).unwrap();
    fill::insert(
        &db.pool,
        &grids(),
        &categories,
        &departments,
        2_000,
        30,
        true,
    )
    .await
    .unwrap();
    // Each incident has the report that opened it, received when it was created, in its grid.
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM incidents i JOIN reports r ON r.incident_id = i.id
                 WHERE r.received_at = i.created_at AND r.grid_code = i.grid_code
                   AND r.category = i.category"
            )
            .await,
        2_000
    );
    // Who was whistled for: open at the street, or resolved there.
    let with_task: HashMap<Uuid, String> = sqlx::query_as(
        "SELECT i.id, t.status FROM incidents i JOIN tasks t ON t.incident_id = i.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();

    let statuses: HashMap<Uuid, String> = sqlx::query_as("SELECT id, status FROM incidents")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(statuses.len(), 2_000);
    let rows: Vec<(Uuid, i32, String, bool)> = sqlx::query_as(
        "SELECT incident_id, seq, kind, at <= now() FROM timeline ORDER BY incident_id, seq",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut timelines: HashMap<Uuid, Vec<(i32, String)>> = HashMap::new();
    for (id, seq, kind, past) in rows {
        assert!(past, "{id}: {kind} is in the future");
        timelines.entry(id).or_default().push((seq, kind));
    }
    for (id, status) in &statuses {
        let timeline = &timelines[id];
        let seqs: Vec<i32> = timeline.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=timeline.len() as i32).collect::<Vec<_>>(),
            "{id}"
        );
        let mut kinds: Vec<&str> = timeline.iter().map(|(_, kind)| kind.as_str()).collect();
        // A whistle comes right after the report, and the incident has a task since.
        let task = with_task.get(id).map(String::as_str);
        if kinds.get(1) == Some(&"incident.whistled") {
            kinds.remove(1);
            let expected = match status.as_str() {
                "whistled" => "dispatched",
                "accepted" => "accepted",
                _ => "resolved",
            };
            assert_eq!(task, Some(expected), "{id} ({status})");
        } else {
            assert_eq!(task, None, "{id} ({status}) has a task but no whistle");
        }
        let expected: &[&str] = match status.as_str() {
            "handling" | "whistled" | "accepted" => &["incident.reported"],
            "resolved" => &["incident.reported", "incident.resolved"],
            "closed" => &[
                "incident.reported",
                "incident.resolved",
                "incident.verified",
                "incident.closed",
            ],
            "closed_unverified" => &[
                "incident.reported",
                "incident.resolved",
                "incident.closed_unverified",
            ],
            other => panic!("unexpected status {other}"),
        };
        assert_eq!(kinds, expected, "{id} ({status})");
        if matches!(status.as_str(), "whistled" | "accepted") {
            assert!(task.is_some(), "{id} ({status}) has no task");
        }
    }
    assert!(with_task.len() > 200, "{} tasks", with_task.len());
    // Tasks belong to real departments, and their times are in order.
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks t JOIN incidents i ON i.id = t.incident_id
         WHERE t.department_code NOT IN (SELECT code FROM departments)
            OR t.dispatched_at < i.created_at OR t.dispatched_at > now()
            OR t.accepted_at < t.dispatched_at OR t.resolved_at < t.accepted_at
            OR (t.status = 'resolved') <> (t.resolved_at IS NOT NULL)
            OR (t.status = 'dispatched') <> (t.accepted_at IS NULL)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(bad, 0);
    // Resolutions fall between the report and now, and by the three-day deadline.
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM incidents
         WHERE resolved_at IS NOT NULL AND NOT (resolved_at BETWEEN created_at AND least(due_at, now()))",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(late, 0);
}
