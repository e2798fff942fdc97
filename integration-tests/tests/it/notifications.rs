//! Notifications reaching people: a local receiver plays the SMS gateway and a 企业微信 group robot,
//! failing when told to; the liaison's console list comes from `ListNotifications`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use chrono::{NaiveTime, TimeDelta, Utc};
use serde_json::{json, Value};
use tonic::Code;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::{NewToken, Role};
use whistle_testkit::TempDir;

use crate::harness::*;

fn grid_of_street(index: usize) -> String {
    grids()[index * 13].clone()
}

/// The street blows the whistle to exactly these departments.
fn whistle_to(departments: &[String]) -> v1::command::Body {
    v1::command::Body::Escalate(v1::Escalate {
        assisting_department_codes: Vec::new(),
        note: "街道吹哨".into(),
        department_codes: departments.to_vec(),
    })
}

/// What the receiver was sent, and how many of the next SMS requests it fails.
#[derive(Default)]
struct Received {
    sms: Vec<Value>,
    robot: Vec<Value>,
    fail_sms: usize,
    /// Every SMS to this phone fails (a phone switched off, a number the gateway refuses).
    fail_phone: Option<String>,
    sms_failures: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn receiver() -> (SocketAddr, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route(
            "/sms",
            post(
                |State(s): State<Shared>, Json(body): Json<Value>| async move {
                    let mut s = s.lock().unwrap();
                    let unreachable = s.fail_phone.as_deref().is_some_and(|p| body["phone"] == p);
                    if s.fail_sms > 0 || unreachable {
                        s.fail_sms = s.fail_sms.saturating_sub(1);
                        s.sms_failures += 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    s.sms.push(body);
                    StatusCode::OK
                },
            ),
        )
        .route(
            "/robot",
            post(
                |State(s): State<Shared>, Json(body): Json<Value>| async move {
                    s.lock().unwrap().robot.push(body);
                    Json(json!({ "errcode": 0, "errmsg": "ok" }))
                },
            ),
        )
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

/// A stack whose dispatch notifies through a local receiver: SMS through its gateway, and a
/// 企业微信 robot for the heating department of the `street`th street's grid. `settings` are
/// more lines of the notification config.
struct Notified {
    stack: Stack,
    received: Shared,
    grid: String,
    department: String,
    liaison: String,
    _config: TempDir,
}

async fn notified(street: usize, settings: &str, query: bool) -> Notified {
    let (addr, received) = receiver().await;
    let dir = TempDir::new("notify").unwrap();
    let grid = grid_of_street(street);
    let department = dept(&grid, "heating");
    let path = dir.path().join("notify.toml");
    std::fs::write(
        &path,
        format!(
            "{settings}\n[sms]\nurl = \"http://{addr}/sms\"\n\n[[webhook]]\ndepartment = \"{department}\"\nkind = \"wecom\"\nurl = \"http://{addr}/robot\"\n"
        ),
    )
    .unwrap();
    let mut builder = Stack::builder()
        .at(Utc::now())
        .with_dispatch_options(move |o| o.notify_config = Some(path));
    if query {
        builder = builder.with_query();
    }
    Notified {
        stack: builder.start().await,
        received,
        grid,
        liaison: format!("li-{department}"),
        department,
        _config: dir,
    }
}

async fn phone(stack: &Stack, person: &str) -> String {
    sqlx::query_scalar("SELECT phone FROM people WHERE id = $1")
        .bind(person)
        .fetch_one(stack.pool())
        .await
        .unwrap()
}

/// A token of `person` (a liaison of `department`) for the query service.
async fn liaison_token(stack: &Stack, department: &str) -> String {
    let new = NewToken {
        role: Some(Role::Liaison),
        department_code: Some(department.to_owned()),
        ..Default::default()
    };
    whistle_store::tokens::create(stack.pool(), &new, Utc::now(), &admin())
        .await
        .unwrap()
        .1
}

/// Timeline notes of `kind` on `incident`.
async fn notes(stack: &Stack, incident: Uuid, kind: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT note FROM timeline WHERE incident_id = $1 AND kind = $2 ORDER BY seq",
    )
    .bind(incident)
    .bind(kind)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

/// An incident at the street of `grid`, whistled to `department`.
async fn whistled(stack: &Stack, grid: &str, report: &str, department: &str) -> Uuid {
    let incident = stack.report(report, grid, "heating.no_heat").await;
    stack.advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
    stack.wait_state(incident, "handling", "street").await;
    stack
        .ok(
            &format!("hd-{}", unit(grid, Level::Street)),
            incident,
            whistle_to(&[department.to_owned()]),
        )
        .await;
    incident
}

#[tokio::test]
async fn a_whistle_reaches_the_liaison_by_robot_sms_and_console_and_a_failing_gateway_is_retried() {
    let Notified {
        stack,
        received,
        grid,
        department,
        liaison,
        _config,
    } = notified(3, "", true).await;
    received.lock().unwrap().fail_sms = 2;
    let phone = phone(&stack, &liaison).await;
    let incident = whistled(&stack, &grid, "notify-1", &department).await;

    // The group robot hears at once, in its own format, mentioning the liaison.
    eventually("the robot's message", WAIT, || async {
        !received.lock().unwrap().robot.is_empty()
    })
    .await
    .unwrap();
    let robot = received.lock().unwrap().robot[0].clone();
    assert_eq!(robot["msgtype"], "text");
    let content = robot["text"]["content"].as_str().unwrap();
    assert!(content.contains("派单｜"), "{content}");
    assert!(content.contains("请于"), "{content}");
    assert_eq!(robot["text"]["mentioned_mobile_list"], json!([phone]));

    // The gateway fails twice; each retry waits longer (5 s, then 10 s on dispatch's clock).
    eventually("two failed SMS attempts", WAIT, || async {
        received.lock().unwrap().fail_sms == 1
    })
    .await
    .unwrap();
    assert!(received.lock().unwrap().sms.is_empty());
    stack.advance(TimeDelta::seconds(6));
    eventually("the second attempt", WAIT, || async {
        received.lock().unwrap().fail_sms == 0
    })
    .await
    .unwrap();
    stack.advance(TimeDelta::seconds(11));
    eventually("the SMS delivered", WAIT, || async {
        received.lock().unwrap().sms.len() == 1
    })
    .await
    .unwrap();
    let sms = received.lock().unwrap().sms[0].clone();
    assert_eq!(sms["phone"], phone.as_str());
    assert!(sms["text"].as_str().unwrap().contains("派单｜"));

    // Both deliveries are on the incident's timeline, without the phone number.
    eventually("the deliveries on the timeline", WAIT, || async {
        notes(&stack, incident, "notification.delivered")
            .await
            .len()
            == 2
    })
    .await
    .unwrap();
    let delivered = notes(&stack, incident, "notification.delivered").await;
    assert!(
        delivered.iter().any(|n| n.starts_with("企业微信群 → ")),
        "{delivered:?}"
    );
    assert!(
        delivered.iter().any(|n| n.starts_with("短信 → ")),
        "{delivered:?}"
    );
    assert!(
        delivered.iter().all(|n| !n.contains(&phone)),
        "{delivered:?}"
    );
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM notifications WHERE incident_id = $1 AND channel = 'sms'",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 3);

    // The liaison's console list: one unread dispatch; marking it read clears the count.
    let token = liaison_token(&stack, &department).await;
    let mut client = command_center_on(stack.channel(), &token);
    let listed = client
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.unread, 1);
    assert_eq!(listed.notifications.len(), 1);
    let first = &listed.notifications[0];
    assert_eq!(first.kind, "task.dispatched");
    assert_eq!(first.incident_id, incident.to_string());
    assert_eq!(first.task_id, 1);
    assert!(first.read_at.is_none());
    let marked = client
        .mark_notifications_read(v1::MarkNotificationsReadRequest {
            notification_ids: vec![first.notification_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marked.marked, 1);
    let listed = client
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.unread, 0);
    assert!(listed.notifications[0].read_at.is_some());

    // The city operator's list holds none of the liaison's, and a viewer has no list.
    let operator = stack
        .client()
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(operator.notifications.is_empty());
    let viewer = stack.token_for(Role::Viewer, "150600").await;
    let refused = command_center_on(stack.channel(), &viewer)
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let bad = client
        .mark_notifications_read(v1::MarkNotificationsReadRequest {
            notification_ids: vec!["not-a-uuid".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Exactly one row per channel, however often the event was read.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE incident_id = $1")
        .bind(incident)
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
    assert!(
        stack.service_violations().is_empty(),
        "{:?}",
        stack.service_violations()
    );
}

#[tokio::test]
async fn quiet_hours_hold_the_sms_until_they_end_and_the_deputy_hears_now() {
    let Notified {
        stack,
        received,
        grid,
        department,
        liaison,
        _config,
    } = notified(4, "deputy_after_secs = 600", false).await;
    let deputy = format!("li-{}", dept(&grid, "water"));
    let (liaison_phone, deputy_phone) =
        (phone(&stack, &liaison).await, phone(&stack, &deputy).await);

    // The liaison is quiet from an hour before the whistle until three hours after it.
    let local = |t: chrono::DateTime<Utc>| {
        t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .time()
    };
    let whistle_at = stack.now() + TimeDelta::hours(4) + TimeDelta::minutes(1);
    let (start, end) = (
        local(whistle_at - TimeDelta::hours(1)),
        local(whistle_at + TimeDelta::hours(3)),
    );
    let minute = |t: NaiveTime| t - TimeDelta::nanoseconds(i64::from(t.nanosecond()));
    use chrono::Timelike as _;
    whistle_store::notifications::set_preferences(
        stack.pool(),
        &liaison,
        Some((minute(start), minute(end))),
        Some(&deputy),
        &admin(),
    )
    .await
    .unwrap();

    let incident = whistled(&stack, &grid, "notify-2", &department).await;
    eventually("the deputy's SMS", WAIT, || async {
        !received.lock().unwrap().sms.is_empty()
    })
    .await
    .unwrap();
    let sms = received.lock().unwrap().sms.clone();
    assert_eq!(
        sms.len(),
        1,
        "only the deputy, not the quiet liaison: {sms:?}"
    );
    assert_eq!(sms[0]["phone"], deputy_phone.as_str());
    assert!(
        sms[0]["text"].as_str().unwrap().contains("（代 "),
        "{sms:?}"
    );
    let escalated = notes(&stack, incident, "notification.escalated").await;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert!(escalated[0].contains("免打扰"), "{escalated:?}");

    // The liaison reports in from the console meanwhile (so no 督办 adds messages); when the
    // quiet hours end, their own SMS about the dispatch still goes out.
    stack.ok(&liaison, incident, accept(1)).await;
    stack.advance(TimeDelta::hours(3));
    eventually("the liaison's SMS after the quiet hours", WAIT, || async {
        received.lock().unwrap().sms.len() == 2
    })
    .await
    .unwrap();
    assert_eq!(
        received.lock().unwrap().sms[1]["phone"],
        liaison_phone.as_str()
    );
    // The deputy's console shows it came to them as a deputy.
    let as_deputy: bool = sqlx::query_scalar(
        "SELECT deputy_of IS NOT NULL FROM notifications WHERE person_id = $1 AND channel = 'console'",
    )
    .bind(&deputy)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert!(as_deputy);
}

#[tokio::test]
async fn the_answer_to_an_extension_request_reaches_the_unit_that_asked() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(5);
    let community = format!("hd-{}", unit(&grid, Level::Community));
    let street = format!("hd-{}", unit(&grid, Level::Street));
    // heating.no_heat: the community handles it first; it asks the street for a day more.
    let incident = stack.report("notify-3", &grid, "heating.no_heat").await;
    let due: chrono::DateTime<Utc> = stack.incident_column(incident, "due_at").await;
    stack
        .ok(
            &community,
            incident,
            v1::command::Body::RequestExtension(v1::RequestExtension {
                task_id: String::new(),
                until: Some(whistle_wire::convert::timestamp(due + TimeDelta::hours(24))),
                reason: "管网更换需要时间".into(),
            }),
        )
        .await;
    stack
        .ok(
            &street,
            incident,
            v1::command::Body::DecideExtension(v1::DecideExtension {
                approve: true,
                note: String::new(),
            }),
        )
        .await;
    // The community's staff find the answer in their console list (no outbound channels here).
    let answered = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT person_id, title, body FROM notifications
             WHERE incident_id = $1 AND kind = 'incident.extension_approved' AND channel = 'console'",
        )
        .bind(incident)
        .fetch_all(stack.pool())
        .await
        .unwrap()
    };
    eventually("the answer in the community's list", WAIT, || async {
        !answered().await.is_empty()
    })
    .await
    .unwrap();
    let rows = answered().await;
    assert!(
        rows.iter().all(|(person, _, _)| person == &community),
        "{rows:?}"
    );
    assert!(rows[0].1.starts_with("同意延期｜"), "{rows:?}");
    assert!(rows[0].2.contains("同意延期至"), "{rows:?}");
}

#[tokio::test]
async fn a_liaison_the_gateway_cannot_reach_has_the_deputy_told_and_the_message_given_up() {
    let Notified {
        stack,
        received,
        grid,
        department,
        liaison,
        _config,
    } = notified(6, "max_attempts = 3\ndeputy_after_attempts = 2", false).await;
    let deputy = format!("li-{}", dept(&grid, "water"));
    let deputy_phone = phone(&stack, &deputy).await;
    received.lock().unwrap().fail_phone = Some(phone(&stack, &liaison).await);
    whistle_store::notifications::set_preferences(
        stack.pool(),
        &liaison,
        None,
        Some(&deputy),
        &admin(),
    )
    .await
    .unwrap();

    let incident = whistled(&stack, &grid, "notify-4", &department).await;
    let failures = || received.lock().unwrap().sms_failures;
    eventually("the first failed attempt", WAIT, || async {
        failures() == 1
    })
    .await
    .unwrap();
    // The second attempt fails too: the deputy is told, and hears by SMS.
    stack.advance(TimeDelta::seconds(6));
    eventually("the deputy's SMS", WAIT, || async {
        received.lock().unwrap().sms.len() == 1
    })
    .await
    .unwrap();
    assert_eq!(failures(), 2);
    assert_eq!(
        received.lock().unwrap().sms[0]["phone"],
        deputy_phone.as_str()
    );
    let escalated = notes(&stack, incident, "notification.escalated").await;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert!(escalated[0].contains("多次发送失败"), "{escalated:?}");
    // The third and last attempt fails: the message is given up, on the timeline, once.
    stack.advance(TimeDelta::seconds(11));
    eventually("the message given up", WAIT, || async {
        notes(&stack, incident, "notification.failed").await.len() == 1
    })
    .await
    .unwrap();
    assert_eq!(failures(), 3);
    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM notifications WHERE person_id = $1 AND channel = 'sms'",
    )
    .bind(&liaison)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 3));
    // Nothing more is tried, and the deputy was told only once.
    stack.advance(TimeDelta::minutes(10));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(failures(), 3);
    assert_eq!(
        notes(&stack, incident, "notification.escalated")
            .await
            .len(),
        1
    );
}
