//! Durable timers and cluster alerts: fired once, after restarts, by racing replicas.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};

use crate::harness::*;

use super::bodies::grid_of_street;

#[tokio::test]
async fn five_reports_in_one_community_within_30_minutes_raise_one_cluster_alert() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let dataset = whistle_domain::ordos::dataset();
    let community = dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Community)
        .find(|c| {
            dataset
                .units
                .iter()
                .filter(|g| g.level() == Level::Grid && g.code.parent().as_ref() == Some(&c.code))
                .count()
                >= 7
        })
        .expect("a community with seven grids");
    let grids: Vec<String> = grids()
        .into_iter()
        .filter(|g| g.starts_with(community.code.as_str()))
        .take(7)
        .collect();
    for (i, grid) in grids.iter().enumerate() {
        stack
            .report(&format!("cluster-{i}"), grid, "sanitation.garbage")
            .await;
        stack.advance(TimeDelta::minutes(2));
    }
    eventually("one alert", WAIT, || async {
        stack.count("SELECT count(*) FROM cluster_alerts").await == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts: Vec<v1::ClusterAlert> = events(stack.js())
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.body {
            Some(v1::event::Body::ClusterAlert(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].community_code, community.code.as_str());
    assert_eq!(alerts[0].reports, 5);
}

#[tokio::test]
async fn timers_fire_after_a_dispatch_restart() {
    let mut stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(6);
    let incident = stack.report("restart-1", &grid, "heating.no_heat").await;
    stack.stop_dispatch().await;
    // The deadline passes while dispatch is down.
    stack.advance(TimeDelta::hours(5));
    stack.start_dispatch().await;
    stack.wait_state(incident, "handling", "street").await;
    stack.restart_dispatch().await;
    assert_eq!(
        stack.timeline(incident).await,
        ["incident.reported", "incident.escalated"]
    );
}

#[tokio::test]
async fn two_replicas_fire_every_timer_once_and_lose_no_command() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let second = stack.spawn_dispatch().await;
    let grids = grids();
    let mut incidents = Vec::new();
    for i in 0..30 {
        incidents.push(
            stack
                .report(&format!("replica-{i}"), &grids[i * 50], "heating.no_heat")
                .await,
        );
    }
    // Commands race the timers, spread over both replicas by the service's queue group.
    stack.advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
    let operators: Vec<String> = (0..incidents.len())
        .map(|i| format!("op-{}", &grids[i * 50][..6]))
        .collect();
    let mut comments = Vec::new();
    for (i, incident) in incidents.iter().enumerate() {
        let body = Body::Comment(v1::Comment {
            text: format!("巡查记录 {i}"),
        });
        comments.push(stack.command(&operators[i], *incident, body));
    }
    for reply in futures::future::join_all(comments).await {
        assert!(matches!(reply.outcome, Some(Outcome::Ok(_))), "{reply:?}");
    }
    for incident in &incidents {
        stack.wait_state(*incident, "handling", "street").await;
    }
    for incident in &incidents {
        let timeline = stack.timeline(*incident).await;
        assert_eq!(
            timeline
                .iter()
                .filter(|k| *k == "incident.escalated")
                .count(),
            1,
            "{timeline:?}"
        );
        assert_eq!(
            timeline
                .iter()
                .filter(|k| *k == "incident.commented")
                .count(),
            1,
            "{timeline:?}"
        );
    }
    stack
        .wait_published("incident.escalated", incidents.len())
        .await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM timers WHERE key = 'level_window'")
            .await,
        30,
        "each street window scheduled once"
    );
    second.stop().await;
}

/// More due timers than one batch of the timer loop, two per incident, raced by two replicas:
/// each fires exactly once, and an incident's two fire in deadline order on the updated state.
#[tokio::test]
async fn two_replicas_fire_many_due_timers_in_batches_each_once_and_in_order() {
    const INCIDENTS: usize = 300;
    let stack = Stack::builder().at(Utc::now()).start().await;
    let second = stack.spawn_dispatch().await;
    // One grid each (reports without coordinates attach only within a grid).
    let grids = grids();
    for i in 0..INCIDENTS {
        let mut sent = report(&format!("batch-{i}"), &grids[i * 5]);
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            stack.now().timestamp_millis(),
        ));
        sent.occurred_at = None;
        stack.publish(&sent).await;
    }
    eventually("every report opened an incident", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == INCIDENTS as i64
    })
    .await
    .unwrap();
    // Both deadlines of every incident pass at once: the community window (4 h), then the SLA
    // (24 h). In order, the window takes it to the street and the missed SLA then blows the
    // whistle there; the other way round the SLA would escalate it and move the window.
    stack.advance(TimeDelta::hours(25));
    eventually("every incident whistled at the street", WAIT, || async {
        stack
            .count("SELECT count(*) FROM incidents WHERE status = 'whistled' AND level = 'street' AND overdue")
            .await
            == INCIDENTS as i64
    })
    .await
    .unwrap();
    // Each (incident, timer, deadline) fired at one time only, the window before the SLA.
    let firings: Vec<(Uuid, String, i64, i32)> = sqlx::query_as(
        "SELECT incident_id, data->>'timer', count(DISTINCT at), min(seq) FROM timeline
         WHERE data ? 'timer' GROUP BY incident_id, data->>'timer', data->>'due_at'
         ORDER BY incident_id, min(seq)",
    )
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(firings.len(), 2 * INCIDENTS, "{firings:?}");
    for pair in firings.chunks(2) {
        assert_eq!(pair[0].1, "level_window", "{pair:?}");
        assert_eq!(pair[1].1, "resolve_deadline", "{pair:?}");
        assert_eq!(
            (pair[0].2, pair[1].2),
            (1, 1),
            "fired more than once: {pair:?}"
        );
    }
    // The timers table holds exactly what each state needs.
    let states: Vec<(Uuid, serde_json::Value)> = sqlx::query_as("SELECT id, state FROM incidents")
        .fetch_all(stack.pool())
        .await
        .unwrap();
    for (id, state) in states {
        let state: whistle_domain::incident::Incident = serde_json::from_value(state).unwrap();
        let mut needed: Vec<(String, chrono::DateTime<Utc>)> = state
            .timers()
            .into_iter()
            .map(|(timer, at)| (timer.key(), at))
            .collect();
        needed.sort();
        let stored: Vec<(String, chrono::DateTime<Utc>)> =
            sqlx::query_as("SELECT key, due_at FROM timers WHERE incident_id = $1 ORDER BY key")
                .bind(id)
                .fetch_all(stack.pool())
                .await
                .unwrap();
        // PostgreSQL keeps microseconds; the state has the clock's nanoseconds.
        let same = stored.len() == needed.len()
            && stored
                .iter()
                .zip(&needed)
                .all(|(s, n)| s.0 == n.0 && (s.1 - n.1).abs() <= TimeDelta::microseconds(1));
        assert!(
            same,
            "incident {id}: timers {stored:?}, state needs {needed:?}"
        );
    }
    stack.wait_published("incident.whistled", INCIDENTS).await;
    second.stop().await;
}

/// A 15-working-day deadline counted by a dispatch that knows 2025 only runs into 2026 on
/// weekdays alone (provisional); the dispatch that starts with the 2026 calendar moves it, its
/// timer and its tasks' deadlines to the official one: New Year's Day and 2 January off, Sunday 4
/// January worked.
#[tokio::test]
async fn a_provisional_working_day_deadline_is_recounted_when_dispatch_loads_the_year() {
    let ordos = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(&format!("{text}+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    };
    let only_2025 = std::env::temp_dir().join(format!("whistle-calendar-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&only_2025).unwrap();
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/calendar/cn-2025.toml"
    );
    std::fs::copy(shipped, only_2025.join("cn-2025.toml")).unwrap();
    let dir = only_2025.clone();
    let mut stack = Stack::builder()
        .at(ordos("2025-12-22T10:00:00"))
        .with_dispatch_options(move |o| o.calendar = Some(dir))
        .start()
        .await;

    // 信访事项: 15 working days, handled at the street for 8 days, then whistled.
    let grid = grid_of_street(6);
    let incident = stack.report("calendar-1", &grid, "petition.letters").await;
    stack.wait_state(incident, "handling", "street").await;
    stack.advance(TimeDelta::days(8) + TimeDelta::minutes(1));
    stack.wait_state(incident, "whistled", "street").await;
    let db = stack.pool().clone();
    let read = |id: Uuid| {
        let pool = db.clone();
        async move {
            let (due, provisional): (chrono::DateTime<Utc>, bool) =
                sqlx::query_as("SELECT due_at, state ? 'provisional' FROM incidents WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let tasks: Vec<chrono::DateTime<Utc>> =
                sqlx::query_scalar("SELECT resolve_due_at FROM tasks WHERE incident_id = $1")
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let timer: chrono::DateTime<Utc> = sqlx::query_scalar(
                "SELECT due_at FROM timers WHERE incident_id = $1 AND key = 'resolve_deadline'",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            (due, provisional, tasks, timer)
        }
    };
    // Weekdays only: 23–26, 29–31 December, 1, 2, 5–9, 12 January.
    let guess = ordos("2026-01-12T10:00:00");
    let (due, provisional, tasks, timer) = read(incident).await;
    assert_eq!((due, provisional, timer), (guess, true, guess));
    assert!(
        !tasks.is_empty() && tasks.iter().all(|t| *t == guess),
        "{tasks:?}"
    );

    // The release with the 2026 calendar: the shipped years.
    stack.stop_dispatch().await;
    stack.start_dispatch_with(|o| o.calendar = None).await;
    let official = ordos("2026-01-13T10:00:00");
    eventually("the deadline recounted", WAIT, || async {
        read(incident).await.0 == official
    })
    .await
    .unwrap();
    let (due, provisional, tasks, timer) = read(incident).await;
    assert_eq!((due, provisional, timer), (official, false, official));
    assert!(tasks.iter().all(|t| *t == official), "{tasks:?}");
    assert_eq!(
        stack.timeline(incident).await.last().map(String::as_str),
        Some("incident.rescheduled")
    );
    // A second start finds nothing provisional and writes nothing.
    stack.stop_dispatch().await;
    stack.start_dispatch_with(|o| o.calendar = None).await;
    let rescheduled = stack
        .count("SELECT count(*) FROM timeline WHERE kind = 'incident.rescheduled'")
        .await;
    assert_eq!(rescheduled, 1);
    std::fs::remove_dir_all(only_2025).unwrap();
}
