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
    let categories = vec!["heating.no_heat".to_owned(), "road.pothole".to_owned()];
    fill::insert(&db.pool, &grids(), &categories, 2_000, 30)
        .await
        .unwrap();

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
        let kinds: Vec<&str> = timeline.iter().map(|(_, kind)| kind.as_str()).collect();
        let expected: &[&str] = match status.as_str() {
            "handling" => &["incident.reported"],
            "whistled" | "accepted" => &["incident.reported", "incident.whistled"],
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
    }
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
