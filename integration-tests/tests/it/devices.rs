//! Devices as reporters (docs/devices.md). Their door: a registered device's own credential (a
//! `device` token naming it) publishes its grid's `.device` report subject and nothing else, is
//! refused by every gRPC RPC, and stops working when the device is retired. Their reports through
//! intake, on real NATS and PostgreSQL with authentication on: a storm folded into one incident,
//! the rate limit refusing, a flapping device flagged once, suppressed, listed and cleared, the
//! wrong subjects refused, and a restart that forgets nothing.

use async_nats::{header::NATS_MESSAGE_ID, HeaderMap};
use chrono::{TimeDelta, Utc};
use prost::Message as _;
use tonic::Code;
use uuid::Uuid;
use whistle_domain::devices::DeviceKind;
use whistle_proto::v1;
use whistle_store::tokens::{NewToken, Refused, Role};
use whistle_wire::{subject, Verb};

use crate::harness::*;

const GRID: &str = "150602001001001";
const OTHER_GRID: &str = "150602001001002";

async fn device_token(stack: &Stack, device: &str) -> Result<String, Refused> {
    let new = NewToken {
        role: Some(Role::Device),
        device_id: Some(device.to_owned()),
        ..Default::default()
    };
    whistle_store::tokens::create(stack.pool(), &new, Utc::now(), &admin())
        .await
        .map(|(_, secret)| secret)
}

#[tokio::test]
async fn a_devices_credential_publishes_only_its_grids_reports() {
    let stack = Stack::command_center().await;
    let device = whistle_store::devices::register(
        stack.pool(),
        "wl-150602001001001-01",
        DeviceKind::WaterLevel,
        &GRID.parse().unwrap(),
        "地下通道水位",
        Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    assert_eq!(device.status, "active");
    // Registered once; a grid that is not one is refused.
    assert!(whistle_store::devices::register(
        stack.pool(),
        &device.id,
        DeviceKind::Smoke,
        &GRID.parse().unwrap(),
        "",
        Utc::now(),
        &admin(),
    )
    .await
    .is_err());
    assert!(whistle_store::devices::register(
        stack.pool(),
        "smoke-1",
        DeviceKind::Smoke,
        &"150602001".parse().unwrap(),
        "",
        Utc::now(),
        &admin(),
    )
    .await
    .is_err());
    // No credential for a device that is not registered, nor naming a person.
    assert!(matches!(
        device_token(&stack, "nobody").await,
        Err(Refused::Invalid(_))
    ));

    let secret = device_token(&stack, &device.id).await.unwrap();
    let mut client = stack.connect_as(&secret).await;
    let own = subject::device_reports(&GRID.parse().unwrap());
    client.client.publish(own, "probe".into()).await.unwrap();
    client.expect_no_violation().await;
    for refused in [
        // The grid's own subject is a person's: a device's reading is never a grid worker's.
        subject::report(&GRID.parse().unwrap()),
        subject::report(&OTHER_GRID.parse().unwrap()),
        subject::device_reports(&OTHER_GRID.parse().unwrap()),
        subject::command(Verb::Comment, "gw-150602001001001"),
        "whistle.event.150602.150602001.incident.reported".to_owned(),
    ] {
        client
            .client
            .publish(refused.clone(), "probe".into())
            .await
            .unwrap();
        client.expect_violation(&refused).await;
    }

    // The gRPC door refuses it whatever the RPC.
    let denied = command_center_on(stack.channel(), &secret)
        .get_session(v1::GetSessionRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Retired, its credential is unknown from then on.
    sqlx::query("UPDATE devices SET status = 'retired' WHERE id = $1")
        .bind(&device.id)
        .execute(stack.pool())
        .await
        .unwrap();
    assert!(
        whistle_store::tokens::authenticate(stack.pool(), &secret, Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'devices.register'")
            .await,
        1
    );
}

const FLOOD: &str = "municipal.road";
const MANHOLE: &str = "municipal.manhole";

/// Registers a device of `kind` in GRID.
async fn register(stack: &Stack, id: &str, kind: DeviceKind) {
    whistle_store::devices::register(
        stack.pool(),
        id,
        kind,
        &GRID.parse().unwrap(),
        "",
        Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
}

/// A device's reading of `category` (a detection, or its clearing) filed now.
fn reading(stack: &Stack, id: &str, device: &str, category: &str, cleared: bool) -> v1::Report {
    v1::Report {
        report_id: id.to_owned(),
        reporter_id: device.to_owned(),
        grid_code: GRID.to_owned(),
        category: category.to_owned(),
        title: if cleared { "恢复正常" } else { "报警" }.to_owned(),
        reported_at: Some(whistle_proto::timestamp_from_unix_millis(
            stack.now().timestamp_millis(),
        )),
        channel: v1::Channel::Device as i32,
        cleared,
        ..Default::default()
    }
}

/// A device connected with its own credential, publishing through JetStream on its subject.
struct Sensor {
    js: async_nats::jetstream::Context,
    id: String,
}

impl Sensor {
    async fn connect(stack: &Stack, id: &str) -> Sensor {
        let secret = device_token(stack, id).await.unwrap();
        let person = stack.connect_as(&secret).await;
        Sensor {
            js: async_nats::jetstream::new(person.client),
            id: id.to_owned(),
        }
    }

    /// Publishes a reading and waits for JetStream to store it.
    async fn send(&self, stack: &Stack, report_id: &str, category: &str, cleared: bool) {
        let report = reading(stack, report_id, &self.id, category, cleared);
        publish_on(
            &self.js,
            subject::device_reports(&GRID.parse().unwrap()),
            &report,
        )
        .await;
    }
}

async fn publish_on(js: &async_nats::jetstream::Context, subject: String, report: &v1::Report) {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
    js.publish_with_headers(subject, headers, report.encode_to_vec().into())
        .await
        .expect("published")
        .await
        .expect("stored");
}

/// The incident each of `report_ids` went to, once intake recorded them all.
async fn incidents_of(stack: &Stack, report_ids: &[String]) -> Vec<Uuid> {
    let mut out = Vec::new();
    for id in report_ids {
        out.push(stack.incident_of(id).await);
    }
    out
}

async fn verdicts(stack: &Stack, device: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT verdict FROM device_readings WHERE device_id = $1
         ORDER BY received_at, stream_sequence",
    )
    .bind(device)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

async fn rejection_reason(stack: &Stack, report_id: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found: Option<String> =
            sqlx::query_scalar("SELECT reason FROM rejected_reports WHERE report_id = $1")
                .bind(report_id)
                .fetch_optional(stack.pool())
                .await
                .unwrap();
        if let Some(reason) = found {
            return reason;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "report {report_id} not rejected within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_storm_is_folded_into_one_incident_and_the_rate_limit_refuses_the_excess() {
    let stack = Stack::command_center().await;
    register(&stack, "wl-storm", DeviceKind::WaterLevel).await;
    let sensor = Sensor::connect(&stack, "wl-storm").await;

    // The policy's burst, six readings at once: the same detection, one incident.
    let ids: Vec<String> = (0..6).map(|n| format!("storm-{n}")).collect();
    for id in &ids {
        sensor.send(&stack, id, FLOOD, false).await;
    }
    let incidents = incidents_of(&stack, &ids).await;
    assert!(
        incidents.iter().all(|i| *i == incidents[0]),
        "{incidents:?}"
    );
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM timeline WHERE incident_id = '{}' AND kind = 'report.attached'",
                incidents[0]
            ))
            .await,
        5,
        "six reports, five attached"
    );
    assert_eq!(
        verdicts(&stack, "wl-storm").await,
        ["open", "fold", "fold", "fold", "fold", "fold"]
    );

    // A seventh at once is past the rate: refused, not queued.
    sensor.send(&stack, "storm-6", FLOOD, false).await;
    assert_eq!(
        rejection_reason(&stack, "storm-6").await,
        "device_rate_limited"
    );
    stack.intake_drained().await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE report_id = 'storm-6'")
            .await,
        0
    );

    // A day and more later the storm goes on: beyond the duplicate rule's window, still folded.
    stack.advance(TimeDelta::hours(25));
    sensor.send(&stack, "storm-7", FLOOD, false).await;
    assert_eq!(stack.incident_of("storm-7").await, incidents[0]);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM incidents WHERE reporter_id = 'wl-storm'")
            .await,
        1
    );

    // Cleared, and detected again: a new incident.
    stack.advance(TimeDelta::minutes(1));
    sensor.send(&stack, "storm-8", FLOOD, true).await;
    sensor.send(&stack, "storm-9", FLOOD, false).await;
    let again = stack.incident_of("storm-9").await;
    assert_ne!(again, incidents[0]);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE report_id = 'storm-8'")
            .await,
        0,
        "a clearing opens nothing"
    );
    // Its channel is the device's, and the reporter the device.
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE reporter_id = 'wl-storm' AND channel = 'device'")
            .await,
        8
    );
}

#[tokio::test]
async fn a_flapping_device_is_flagged_once_suppressed_listed_and_cleared() {
    let stack = Stack::command_center().await;
    // A healthy device listed after the flagged one, though its id comes first.
    register(&stack, "aa-healthy", DeviceKind::Smoke).await;
    register(&stack, "mh-flap", DeviceKind::ManholeCover).await;
    let sensor = Sensor::connect(&stack, "mh-flap").await;

    // Five changes within ten minutes: the fifth flags it.
    for (n, cleared) in [false, true, false, true, false].into_iter().enumerate() {
        sensor
            .send(&stack, &format!("flap-{n}"), MANHOLE, cleared)
            .await;
    }
    stack.intake_drained().await;
    assert_eq!(
        verdicts(&stack, "mh-flap").await,
        ["open", "cleared", "open", "cleared", "flagged"]
    );
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status, flag_reason FROM devices WHERE id = 'mh-flap'")
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert_eq!(status, "maintenance");
    assert!(reason.unwrap().contains("5 state changes"));

    // Flagged: what it says is kept and reaches no department.
    stack.advance(TimeDelta::minutes(1));
    for n in 5..8 {
        sensor
            .send(&stack, &format!("flap-{n}"), MANHOLE, n % 2 == 0)
            .await;
    }
    stack.intake_drained().await;
    assert_eq!(
        verdicts(&stack, "mh-flap").await[5..],
        ["suppressed", "suppressed", "suppressed"]
    );
    // The two detections before the flag reached the department (the second joined the first's
    // open incident by the duplicate rule); nothing after.
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE reporter_id = 'mh-flap'")
            .await,
        2
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM incidents WHERE reporter_id = 'mh-flap'")
            .await,
        1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE report_id IN ('flap-4', 'flap-5', 'flap-6', 'flap-7')")
            .await,
        0
    );

    // One event, once.
    stack.relayed().await;
    let flagged: Vec<v1::Event> = events(stack.js())
        .await
        .into_iter()
        .filter(|(_, e)| e.kind == "device.flagged")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].grid_code, GRID);
    match &flagged[0].body {
        Some(v1::event::Body::DeviceFlagged(body)) => {
            assert_eq!(body.device_id, "mh-flap");
            assert_eq!(body.device_kind, "manhole_cover");
            assert_eq!(body.category, MANHOLE);
        }
        other => panic!("not a DeviceFlagged body: {other:?}"),
    }

    // The operators' list: flagged first.
    let listed = stack
        .client()
        .list_devices(v1::ListDevicesRequest {
            area_code: "150602".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    let order: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| (d.device_id.as_str(), d.status.as_str()))
        .collect();
    assert_eq!(
        order,
        [("mh-flap", "maintenance"), ("aa-healthy", "active")]
    );
    assert!(listed[0].flagged_at.is_some());
    // Another district's operator sees none of them.
    let elsewhere = stack.token_for(Role::Operator, "150603").await;
    let theirs = command_center_on(stack.channel(), &elsewhere)
        .list_devices(v1::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(theirs.is_empty(), "{theirs:?}");

    // Cleared by an operator (whistle devices clear-flag): its history starts over.
    let cleared =
        whistle_store::devices::clear_flag(stack.pool(), "mh-flap", None, stack.now(), &admin())
            .await
            .unwrap();
    assert_eq!(cleared.status, "active");
    assert!(
        whistle_store::devices::clear_flag(stack.pool(), "mh-flap", None, stack.now(), &admin())
            .await
            .is_err(),
        "not flagged any more"
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'devices.clear_flag' AND target = 'mh-flap'")
            .await,
        1
    );
    stack.advance(TimeDelta::seconds(1));
    // Dispatch follows the registry on its notification.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sensor.send(&stack, "flap-8", MANHOLE, false).await;
    stack.incident_of("flap-8").await;
    assert_eq!(
        verdicts(&stack, "mh-flap").await.last().map(String::as_str),
        Some("open"),
        "after the clearing a detection reaches the department again"
    );
}

#[tokio::test]
async fn a_devices_report_is_refused_on_the_plain_subject_another_grid_or_unregistered() {
    let stack = Stack::command_center().await;
    register(&stack, "sm-1", DeviceKind::Smoke).await;
    register(&stack, "sm-retired", DeviceKind::Smoke).await;
    sqlx::query("UPDATE devices SET status = 'retired' WHERE id = 'sm-retired'")
        .execute(stack.pool())
        .await
        .unwrap();
    // Published as the admin, who may publish anywhere: intake still checks the subject.
    let js = stack.js();
    let grid = GRID.parse().unwrap();
    let other: whistle_domain::AreaCode = OTHER_GRID.parse().unwrap();

    let plain = reading(&stack, "d-plain", "sm-1", FLOOD, false);
    publish_on(js, subject::report(&grid), &plain).await;
    assert_eq!(
        rejection_reason(&stack, "d-plain").await,
        "channel_mismatch"
    );

    let mut elsewhere = reading(&stack, "d-elsewhere", "sm-1", FLOOD, false);
    elsewhere.grid_code = OTHER_GRID.into();
    publish_on(js, subject::device_reports(&other), &elsewhere).await;
    assert_eq!(
        rejection_reason(&stack, "d-elsewhere").await,
        "reporter_not_in_grid"
    );

    for (id, device) in [("d-unknown", "sm-nobody"), ("d-retired", "sm-retired")] {
        let report = reading(&stack, id, device, FLOOD, false);
        publish_on(js, subject::device_reports(&grid), &report).await;
        assert_eq!(rejection_reason(&stack, id).await, "unknown_reporter");
    }

    // A grid worker's report on the device subject, or one claiming to clear a detection.
    let mut worker = stack.filed("d-worker", GRID, FLOOD, v1::Urgency::Normal);
    publish_on(js, subject::device_reports(&grid), &worker).await;
    assert_eq!(
        rejection_reason(&stack, "d-worker").await,
        "channel_mismatch"
    );
    worker.report_id = "d-worker-clear".into();
    worker.cleared = true;
    publish_on(js, subject::report(&grid), &worker).await;
    assert_eq!(
        rejection_reason(&stack, "d-worker-clear").await,
        "channel_mismatch"
    );
    assert_eq!(stack.count("SELECT count(*) FROM incidents").await, 0);
}

#[tokio::test]
async fn a_restart_mid_storm_opens_no_second_incident_and_forgets_no_rate_nor_flag() {
    let mut stack = Stack::command_center().await;
    register(&stack, "wl-restart", DeviceKind::WaterLevel).await;
    register(&stack, "mh-restart", DeviceKind::ManholeCover).await;
    let storm = Sensor::connect(&stack, "wl-restart").await;
    let flapping = Sensor::connect(&stack, "mh-restart").await;

    let before: Vec<String> = (0..4).map(|n| format!("r-{n}")).collect();
    for id in &before {
        storm.send(&stack, id, FLOOD, false).await;
    }
    for (n, cleared) in [false, true, false, true, false].into_iter().enumerate() {
        flapping
            .send(&stack, &format!("rf-{n}"), MANHOLE, cleared)
            .await;
    }
    let first = incidents_of(&stack, &before).await[0];
    stack.intake_drained().await;

    stack.restart_dispatch().await;

    // The storm goes on at the same instant: folded, and the bucket remembers four readings.
    let after: Vec<String> = (4..6).map(|n| format!("r-{n}")).collect();
    for id in &after {
        storm.send(&stack, id, FLOOD, false).await;
    }
    assert!(incidents_of(&stack, &after)
        .await
        .iter()
        .all(|i| *i == first));
    storm.send(&stack, "r-6", FLOOD, false).await;
    assert_eq!(rejection_reason(&stack, "r-6").await, "device_rate_limited");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM incidents WHERE reporter_id = 'wl-restart'")
            .await,
        1
    );
    // The flag survives: suppressed, no second event.
    flapping.send(&stack, "rf-5", MANHOLE, false).await;
    stack.intake_drained().await;
    assert_eq!(
        verdicts(&stack, "mh-restart")
            .await
            .last()
            .map(String::as_str),
        Some("suppressed")
    );
    stack.relayed().await;
    let flagged = events(stack.js())
        .await
        .into_iter()
        .filter(|(_, e)| e.kind == "device.flagged")
        .count();
    assert_eq!(flagged, 1);
}
