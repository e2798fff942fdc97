//! The escalation engine end to end: reports, commands over NATS (`whistle.cmd.*`), durable
//! timers driven by a manual clock, events in WHISTLE_EVENTS, state in PostgreSQL.

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use prost::Message as _;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};
use whistle_wire::{
    headers, kind,
    names::{ServiceRequest, DISPATCH_SERVICE},
    subject, CommandClient, ManualClock, Verb,
};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// A running platform with a clock the test moves.
struct Stack {
    nats: NatsServer,
    db: TestDb,
    clock: ManualClock,
    dispatch: Option<Dispatch>,
    reporter: Reporter,
    client: async_nats::Client,
}

impl Stack {
    async fn start() -> Stack {
        let nats = NatsServer::start().await;
        let db = TestDb::create().await;
        let clock = ManualClock::new(Utc::now());
        let dispatch =
            Dispatch::start_with_clock(dispatch_options(&nats, &db), Arc::new(clock.clone())).await;
        let reporter = Reporter::connect(&nats).await;
        let client = async_nats::connect(nats.url()).await.expect("connect");
        Stack {
            nats,
            db,
            clock,
            dispatch: Some(dispatch),
            reporter,
            client,
        }
    }

    /// Files a report and returns its incident id once intake recorded it.
    async fn report(&self, report_id: &str, grid: &str, category: &str) -> Uuid {
        let mut sent = report(report_id, grid);
        sent.category = category.into();
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            self.clock.now_millis(),
        ));
        sent.occurred_at = None;
        self.reporter.publish(&sent).await;
        self.report_id_incident(report_id).await
    }

    async fn command(&self, actor: &str, incident: Uuid, body: Body) -> v1::CommandReply {
        let command = v1::Command {
            command_id: Uuid::now_v7().to_string(),
            actor_id: actor.into(),
            incident_id: incident.to_string(),
            expected_version: 0,
            body: Some(body),
        };
        CommandClient::new(self.client.clone())
            .send(&command)
            .await
            .expect("dispatch answers")
    }

    /// Sends a command that must succeed.
    async fn ok(&self, actor: &str, incident: Uuid, body: Body) -> v1::CommandOk {
        match self.command(actor, incident, body.clone()).await.outcome {
            Some(Outcome::Ok(ok)) => ok,
            other => panic!("{actor} {body:?} on {incident}: {other:?}"),
        }
    }

    /// Status and level of an incident.
    async fn state(&self, incident: Uuid) -> (String, String) {
        sqlx::query_as("SELECT status, level FROM incidents WHERE id = $1")
            .bind(incident)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn wait_state(&self, incident: Uuid, status: &str, level: &str) {
        eventually(&format!("incident {status} at {level}"), WAIT, || async {
            self.state(incident).await == (status.to_owned(), level.to_owned())
        })
        .await
        .unwrap();
    }

    /// Task statuses in task order.
    async fn tasks(&self, incident: Uuid) -> Vec<(i32, String, String)> {
        sqlx::query_as("SELECT task_id, department_code, status FROM tasks WHERE incident_id = $1 ORDER BY task_id")
            .bind(incident)
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    async fn timeline(&self, incident: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM timeline WHERE incident_id = $1 ORDER BY seq")
            .bind(incident)
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    /// Waits until WHISTLE_EVENTS holds exactly `count` events of `kind` (the stream drops a
    /// republished event id, so more would be a double publication).
    async fn wait_published(&self, kind: &str, count: usize) {
        eventually(
            &format!("{count} {kind} events, each once"),
            WAIT,
            || async {
                events(&self.reporter.js)
                    .await
                    .iter()
                    .filter(|(_, e)| e.kind == kind)
                    .count()
                    == count
            },
        )
        .await
        .unwrap();
    }

    /// Events of an incident in WHISTLE_EVENTS, with their subjects.
    async fn events_of(&self, incident: Uuid) -> Vec<(String, v1::Event)> {
        events(&self.reporter.js)
            .await
            .into_iter()
            .filter(|(_, e)| e.incident_id == incident.to_string())
            .collect()
    }

    async fn restart_dispatch(&mut self) {
        self.dispatch.take().expect("running").stop().await;
        self.dispatch = Some(self.start_replica().await);
    }

    /// Another dispatch on the stack's servers and clock.
    async fn start_replica(&self) -> Dispatch {
        Dispatch::start_with_clock(
            dispatch_options(&self.nats, &self.db),
            Arc::new(self.clock.clone()),
        )
        .await
    }
}

trait NowMillis {
    fn now_millis(&self) -> i64;
}

impl NowMillis for ManualClock {
    fn now_millis(&self) -> i64 {
        whistle_wire::Clock::now(self).timestamp_millis()
    }
}

fn grid_of_street(index: usize) -> String {
    grids()[index * 13].clone()
}

fn unit(grid: &str, level: Level) -> String {
    grid.parse::<whistle_domain::AreaCode>()
        .unwrap()
        .at_level(level)
        .unwrap()
        .to_string()
}

fn dept(grid: &str, kind: &str) -> String {
    format!("{}-{kind}", &grid[..6])
}

fn escalate(departments: &[String]) -> Body {
    Body::Escalate(v1::Escalate {
        note: "街道吹哨".into(),
        department_codes: departments.to_vec(),
    })
}

fn accept(task: u32) -> Body {
    Body::Accept(v1::Accept {
        task_id: task.to_string(),
        note: String::new(),
    })
}

fn resolve(task: Option<u32>) -> Body {
    Body::Resolve(v1::Resolve {
        task_id: task.map(|t| t.to_string()).unwrap_or_default(),
        note: "已处理".into(),
    })
}

fn verify(satisfaction: v1::Satisfaction) -> Body {
    Body::Verify(v1::Verify {
        satisfaction: satisfaction as i32,
        note: String::new(),
    })
}

#[tokio::test]
async fn self_handled_at_community_then_followed_up_and_closed() {
    let stack = Stack::start().await;
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
    let stack = Stack::start().await;
    let grid = grid_of_street(2);
    let incident = stack.report("whistle-1", &grid, "heating.no_heat").await;

    // The community's 4-hour window runs out: up to the street.
    stack
        .clock
        .advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
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
    stack.clock.advance(TimeDelta::minutes(10));
    stack
        .ok(&format!("li-{}", departments[0]), incident, accept(1))
        .await;
    stack
        .ok(&format!("li-{}", departments[1]), incident, accept(2))
        .await;

    // The third misses its report-in: 督办, 催办 and escalation to the district.
    stack.clock.advance(TimeDelta::minutes(21));
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
    let stack = Stack::start().await;
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
    .fetch_all(&stack.db.pool)
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
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(return_reason.as_deref(), Some("not_our_duty"));
}

#[tokio::test]
async fn resolved_unsatisfied_reopened_resolved_satisfied_closed() {
    let stack = Stack::start().await;
    let grid = grid_of_street(4);
    let incident = stack.report("redo-1", &grid, "heating.pipe_leak").await;
    let heating = format!("li-{}", dept(&grid, "heating"));
    stack
        .clock
        .advance(TimeDelta::hours(2) + TimeDelta::minutes(1));
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
            .fetch_one(&stack.db.pool)
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
    let stack = Stack::start().await;
    let grid = grid_of_street(5);
    let incident = stack.report("unverified-1", &grid, "heating.no_heat").await;
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Community)),
            incident,
            resolve(None),
        )
        .await;
    stack.clock.advance(TimeDelta::hours(71));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stack.state(incident).await.0,
        "resolved",
        "still inside the follow-up window"
    );
    stack
        .clock
        .advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    stack
        .wait_state(incident, "closed_unverified", "community")
        .await;
}

#[tokio::test]
async fn reports_nearby_attach_to_the_open_incident() {
    let stack = Stack::start().await;
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
            stack.clock.now_millis(),
        ));
        r
    };
    stack
        .reporter
        .publish(&at("light-1", a, 39.80000, 109.90000))
        .await;
    let first = stack.report_id_incident("light-1").await;
    // 50 m away, from the neighbouring grid's worker: the same street light.
    stack
        .reporter
        .publish(&at("light-2", b, 39.80045, 109.90000))
        .await;
    // 1 km away: another light.
    stack
        .reporter
        .publish(&at("light-3", b, 39.80900, 109.90000))
        .await;
    // East and west: the lookup's box bounds longitude too (0.0008° ≈ 68 m at 39.8° N).
    stack
        .reporter
        .publish(&at("light-4", b, 39.80000, 109.90080))
        .await;
    stack
        .reporter
        .publish(&at("light-5", a, 39.80000, 109.89750))
        .await;
    let second = stack.report_id_incident("light-2").await;
    let third = stack.report_id_incident("light-3").await;
    let fourth = stack.report_id_incident("light-4").await;
    let fifth = stack.report_id_incident("light-5").await;
    assert_eq!(second, first);
    assert_ne!(third, first);
    assert_eq!(fourth, first, "68 m east is the same light");
    assert_ne!(fifth, first, "214 m west is another light");
    assert_ne!(fifth, third);
    let count: i32 = sqlx::query_scalar("SELECT report_count FROM incidents WHERE id = $1")
        .bind(first)
        .fetch_one(&stack.db.pool)
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

impl Stack {
    async fn report_id_incident(&self, report_id: &str) -> Uuid {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let found: Option<Uuid> =
                sqlx::query_scalar("SELECT incident_id FROM reports WHERE report_id = $1")
                    .bind(report_id)
                    .fetch_optional(&self.db.pool)
                    .await
                    .unwrap();
            if let Some(incident) = found {
                return incident;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "report {report_id} not recorded within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn five_reports_in_one_community_within_30_minutes_raise_one_cluster_alert() {
    let stack = Stack::start().await;
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
        stack.clock.advance(TimeDelta::minutes(2));
    }
    eventually("one alert", WAIT, || async {
        stack.db.count("SELECT count(*) FROM cluster_alerts").await == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts: Vec<v1::ClusterAlert> = events(&stack.reporter.js)
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
    let mut stack = Stack::start().await;
    let grid = grid_of_street(6);
    let incident = stack.report("restart-1", &grid, "heating.no_heat").await;
    stack.dispatch.take().expect("running").stop().await;
    // The deadline passes while dispatch is down.
    stack.clock.advance(TimeDelta::hours(5));
    stack.dispatch = Some(stack.start_replica().await);
    stack.wait_state(incident, "handling", "street").await;
    stack.restart_dispatch().await;
    assert_eq!(
        stack.timeline(incident).await,
        ["incident.reported", "incident.escalated"]
    );
}

#[tokio::test]
async fn two_replicas_fire_every_timer_once_and_lose_no_command() {
    let stack = Stack::start().await;
    let second = stack.start_replica().await;
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
    stack
        .clock
        .advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
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
            .db
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
    let stack = Stack::start().await;
    let second = stack.start_replica().await;
    // One grid each (reports without coordinates attach only within a grid).
    let grids = grids();
    for i in 0..INCIDENTS {
        let mut sent = report(&format!("batch-{i}"), &grids[i * 5]);
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            stack.clock.now_millis(),
        ));
        sent.occurred_at = None;
        stack.reporter.publish(&sent).await;
    }
    eventually("every report opened an incident", WAIT, || async {
        stack.db.count("SELECT count(*) FROM incidents").await == INCIDENTS as i64
    })
    .await
    .unwrap();
    // Both deadlines of every incident pass at once: the community window (4 h), then the SLA
    // (24 h). In order, the window takes it to the street and the missed SLA then blows the
    // whistle there; the other way round the SLA would escalate it and move the window.
    stack.clock.advance(TimeDelta::hours(25));
    eventually("every incident whistled at the street", WAIT, || async {
        stack
            .db
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
    .fetch_all(&stack.db.pool)
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
        .fetch_all(&stack.db.pool)
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
                .fetch_all(&stack.db.pool)
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

#[tokio::test]
async fn dispatch_is_a_nats_micro_service() {
    let stack = Stack::start().await;
    let ping = stack
        .client
        .request(ServiceRequest::Ping.subject(DISPATCH_SERVICE), "".into())
        .await
        .expect("ping answered");
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "whistle-dispatch");
    let info = stack
        .client
        .request(ServiceRequest::Info.subject(DISPATCH_SERVICE), "".into())
        .await
        .expect("info answered");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    for verb in Verb::ALL {
        assert!(
            subjects.contains(&subject::command(verb).as_str()),
            "{subjects:?}"
        );
    }
    let stats = stack
        .client
        .request(ServiceRequest::Stats.subject(DISPATCH_SERVICE), "".into())
        .await
        .expect("stats answered");
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    assert!(
        stats["endpoints"][0]["data"]["reports_acked"].is_u64(),
        "intake counters in the stats: {stats}"
    );

    // Typed errors: unknown incident, malformed command, stale version.
    let grid = grid_of_street(7);
    let missing = stack
        .command(
            "op-150600",
            Uuid::now_v7(),
            Body::Comment(v1::Comment { text: "x".into() }),
        )
        .await;
    assert!(
        matches!(missing.outcome, Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::NotFound as i32),
        "{missing:?}"
    );
    let garbage = stack
        .client
        .request(subject::command(Verb::Accept), "not a command".into())
        .await
        .unwrap();
    let garbage = v1::CommandReply::decode(garbage.payload).unwrap();
    assert!(
        matches!(garbage.outcome, Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::InvalidArgument as i32),
        "{garbage:?}"
    );
    let incident = stack.report("stale-1", &grid, "heating.no_heat").await;
    let stale = v1::Command {
        command_id: "stale-cmd".into(),
        actor_id: "op-150600".into(),
        incident_id: incident.to_string(),
        expected_version: 7,
        body: Some(Body::Comment(v1::Comment { text: "x".into() })),
    };
    let reply = stack
        .client
        .request(
            subject::command(Verb::Comment),
            stale.encode_to_vec().into(),
        )
        .await
        .unwrap();
    let reply = v1::CommandReply::decode(reply.payload).unwrap();
    assert!(
        matches!(reply.outcome, Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::Stale as i32),
        "{reply:?}"
    );

    // A retried command id gets the first answer and changes nothing.
    let escalate_once = v1::Command {
        command_id: "once".into(),
        actor_id: format!("hd-{}", unit(&grid, Level::Community)),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(escalate(&[])),
    };
    let first = stack
        .client
        .request(
            subject::command(Verb::Escalate),
            escalate_once.encode_to_vec().into(),
        )
        .await
        .unwrap();
    let again = stack
        .client
        .request(
            subject::command(Verb::Escalate),
            escalate_once.encode_to_vec().into(),
        )
        .await
        .unwrap();
    assert_eq!(first.payload, again.payload);
    assert_eq!(
        stack.state(incident).await.1,
        "street",
        "escalated once, not twice"
    );
}

#[tokio::test]
async fn a_changed_policy_file_is_reloaded_without_restart_and_an_invalid_one_is_refused() {
    let nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let dir = TempDir::new("policy");
    let path = dir.path.join("ordos.toml");
    let original =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/ordos.toml"))
            .unwrap();
    std::fs::write(&path, &original).unwrap();
    let options = whistle_dispatch::Options {
        policy: path.to_string_lossy().into_owned(),
        policy_poll_interval: Duration::from_millis(100),
        ..dispatch_options(&nats, &db)
    };
    let dispatch = Dispatch::start(options).await;
    let reporter = Reporter::connect(&nats).await;
    let version_of = |report_id: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT i.policy_version FROM incidents i JOIN reports r ON r.incident_id = i.id WHERE r.report_id = $1",
            )
            .bind(report_id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    let grids = grids();
    reporter.publish(&report("policy-1", &grids[30])).await;
    eventually("the first incident", WAIT, || async {
        version_of("policy-1").await.is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        version_of("policy-1").await.as_deref(),
        Some("ordos-2026.1")
    );

    std::fs::write(
        &path,
        original.replace("version = \"ordos-2026.1\"", "version = \"ordos-2026.2\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    reporter.publish(&report("policy-2", &grids[31 * 7])).await;
    eventually("the second incident", WAIT, || async {
        version_of("policy-2").await.is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        version_of("policy-2").await.as_deref(),
        Some("ordos-2026.2")
    );

    std::fs::write(
        &path,
        original.replace(
            "summon = [\"heating\", \"housing_construction\"]",
            "summon = []",
        ),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    reporter.publish(&report("policy-3", &grids[32 * 7])).await;
    eventually("the third incident", WAIT, || async {
        version_of("policy-3").await.is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        version_of("policy-3").await.as_deref(),
        Some("ordos-2026.2"),
        "the invalid file was refused"
    );
    dispatch.stop().await;
}

#[tokio::test]
async fn a_json_client_is_refused_for_another_departments_task_and_accepted_for_its_own() {
    let stack = Stack::start().await;
    let grid = grid_of_street(8);
    let incident = stack
        .report("json-cmd-1", &grid, "property.unlicensed")
        .await;
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Street)),
            incident,
            escalate(&[]),
        )
        .await;
    let housing = dept(&grid, "housing_construction");
    let market = dept(&grid, "market_regulation");

    // As a client that is not this project's code would send it: proto3 JSON, by hand.
    let send = |actor: String, task: &'static str| {
        let client = stack.client.clone();
        let body = format!(
            r#"{{"commandId":"{}","actorId":"{actor}","incidentId":"{incident}","accept":{{"taskId":"{task}"}}}}"#,
            Uuid::now_v7()
        );
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(headers::CONTENT_TYPE, headers::JSON);
            let reply = client
                .request_with_headers(subject::command(Verb::Accept), headers, body.into())
                .await
                .expect("answered");
            serde_json::from_slice::<serde_json::Value>(&reply.payload).expect("a JSON reply")
        }
    };
    let refused = send(format!("li-{market}"), "1").await;
    assert_eq!(
        refused["error"]["code"], "COMMAND_ERROR_CODE_FORBIDDEN",
        "{refused}"
    );
    let accepted = send(format!("li-{housing}"), "1").await;
    assert_eq!(
        accepted["ok"]["taskStatus"], "TASK_STATUS_ACCEPTED",
        "{accepted}"
    );
    eventually("the accept event", WAIT, || async {
        stack
            .events_of(incident)
            .await
            .iter()
            .any(|(subject, _)| subject == &subject::task_event(&housing, kind::TASK_ACCEPTED))
    })
    .await
    .unwrap();
}
