//! Who can connect, and what each identity may publish and subscribe.

use std::time::Duration;

use futures::StreamExt as _;
use whistle_auth::{Identity, Service};
use whistle_domain::{AreaCode, Level};
use whistle_store::tokens::Role;
use whistle_wire::subject::report as report_subject;

use crate::harness::{deliver, round_trip, sync, World};

const GRID: &str = "150602001001001";
const RECHECK: Duration = Duration::from_secs(60);

fn grid() -> AreaCode {
    GRID.parse().unwrap()
}

/// Another grid of the tree, for "not one's own".
fn other_grid(world: &World) -> AreaCode {
    let mut grids: Vec<&AreaCode> = world
        .org
        .units()
        .filter(|u| u.level() == Level::Grid && u.code.as_str() != GRID)
        .map(|u| &u.code)
        .collect();
    grids.sort();
    grids[0].clone()
}

async fn expect_message(subscriber: &mut async_nats::Subscriber, subject: &str) {
    let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {subject}"))
        .expect("subscription open");
    assert_eq!(message.subject.as_str(), subject);
}

async fn expect_nothing(subscriber: &mut async_nats::Subscriber) {
    if let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), subscriber.next()).await
    {
        panic!("{} was delivered", message.subject);
    }
}

#[tokio::test]
async fn anonymous_and_unknown_credentials_are_refused() {
    let world = World::start(RECHECK).await;
    assert!(async_nats::connect(&world.url).await.is_err(), "anonymous");
    assert!(world.connect("wst_not-a-token", "_INBOX_x").await.is_err());
    let with_password =
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
            .connect(&world.url)
            .await;
    assert!(with_password.is_err(), "user and password");
    // A token's digest is what is stored: presenting the token id is no credential either.
    let (id, _) = world.token(Role::GridWorker, GRID).await;
    assert!(world.connect(&id.to_string(), "_INBOX_x").await.is_err());
}

#[tokio::test]
async fn services_bypass_the_callout_in_the_application_account() {
    let world = World::start(RECHECK).await;
    let admin = world.service(Service::Admin).await.expect("admin connects");
    let dispatch = world
        .service(Service::Dispatch)
        .await
        .expect("dispatch connects");
    world.service(Service::Query).await.expect("query connects");

    // Same account as the people: a grid worker's report reaches the admin, dispatch's event too.
    let mut reports = admin.subscribe("whistle.report.>").await.unwrap();
    let mut events = admin.subscribe("whistle.event.>").await.unwrap();
    sync(&admin).await;
    let (_, secret) = world.token(Role::GridWorker, GRID).await;
    let identity = Identity::GridWorker {
        person: format!("gw-{GRID}").parse().unwrap(),
        grid: grid(),
    };
    let worker = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();
    let subject = report_subject(&grid());
    worker
        .client
        .publish(subject.clone(), "r".into())
        .await
        .unwrap();
    worker.client.flush().await.unwrap();
    expect_message(&mut reports, &subject).await;
    dispatch
        .publish(
            "whistle.event.150602.150602001.incident.reported",
            "e".into(),
        )
        .await
        .unwrap();
    dispatch.flush().await.unwrap();
    expect_message(
        &mut events,
        "whistle.event.150602.150602001.incident.reported",
    )
    .await;

    // The JetStream API is the admin's.
    let info = admin.request("$JS.API.INFO", "".into()).await.unwrap();
    assert!(info
        .payload
        .starts_with(b"{\"type\":\"io.nats.jetstream.api.v1.account_info_response\""));
}

#[tokio::test]
async fn a_grid_worker_publishes_only_its_own_grid_and_its_own_commands() {
    let world = World::start(RECHECK).await;
    let admin = world.service(Service::Admin).await.unwrap();
    let mut reports = admin.subscribe("whistle.report.>").await.unwrap();
    let mut commands = admin.subscribe("whistle.cmd.>").await.unwrap();
    sync(&admin).await;

    let (_, secret) = world.token(Role::GridWorker, GRID).await;
    let person = format!("gw-{GRID}");
    let identity = Identity::GridWorker {
        person: person.parse().unwrap(),
        grid: grid(),
    };
    let mut worker = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();

    let own = report_subject(&grid());
    worker
        .client
        .publish(own.clone(), "r".into())
        .await
        .unwrap();
    worker.expect_no_violation().await;
    expect_message(&mut reports, &own).await;

    let foreign = report_subject(&other_grid(&world));
    worker
        .client
        .publish(foreign.clone(), "r".into())
        .await
        .unwrap();
    worker.expect_violation(&foreign).await;
    expect_nothing(&mut reports).await;

    let own_command = format!("whistle.cmd.comment.{person}");
    worker
        .client
        .publish(own_command.clone(), "c".into())
        .await
        .unwrap();
    worker.expect_no_violation().await;
    expect_message(&mut commands, &own_command).await;

    let forged = "whistle.cmd.comment.op-150600";
    worker.client.publish(forged, "c".into()).await.unwrap();
    worker.expect_violation(forged).await;
    for subject in [
        "whistle.event.150602.150602001.incident.closed",
        "whistle.task.150602-urban_management.task.accepted",
        "$JS.API.STREAM.LIST",
        "_INBOX.x.y",
    ] {
        worker.client.publish(subject, "x".into()).await.unwrap();
        worker.expect_violation(subject).await;
    }
    expect_nothing(&mut commands).await;

    for subject in [
        "whistle.event.>",
        "$JS.API.>",
        "$SYS.>",
        "_INBOX.>",
        ">",
        "whistle.task.>",
        "_INBOX_op-150600.>",
    ] {
        let _denied = worker.client.subscribe(subject).await.unwrap();
        worker.expect_violation(subject).await;
    }
}

#[tokio::test]
async fn only_dispatch_answers_and_replies_reach_the_private_inbox() {
    let world = World::start(RECHECK).await;
    let dispatch = world.service(Service::Dispatch).await.unwrap();
    let mut served = dispatch.subscribe("whistle.cmd.>").await.unwrap();
    round_trip(&dispatch, "$JS.API.STREAM.INFO.WHISTLE_REPORTS").await;
    let responder = dispatch.clone();
    tokio::spawn(async move {
        while let Some(request) = served.next().await {
            if let Some(reply) = request.reply {
                let _ = responder.publish(reply, "ok".into()).await;
            }
        }
    });

    let (_, secret) = world.token(Role::GridWorker, GRID).await;
    let person = format!("gw-{GRID}");
    let identity = Identity::GridWorker {
        person: person.parse().unwrap(),
        grid: grid(),
    };
    let worker = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();
    let answer = worker
        .client
        .request(format!("whistle.cmd.accept.{person}"), "a".into())
        .await
        .expect("dispatch's answer reaches the worker's own inbox");
    assert_eq!(&answer.payload[..], b"ok");

    // A liaison cannot hear the command, nor answer into someone else's inbox.
    let (_, secret) = world.token(Role::Liaison, "150602-urban_management").await;
    let liaison_id = Identity::Liaison {
        person: "li-150602-urban_management".parse().unwrap(),
        department: "150602-urban_management".parse().unwrap(),
    };
    let mut liaison = world
        .connect(&secret, &liaison_id.inbox_prefix())
        .await
        .unwrap();
    let _denied = liaison.client.subscribe("whistle.cmd.>").await.unwrap();
    liaison.expect_violation("whistle.cmd.>").await;
    let inbox = format!("{}.forged", identity.inbox_prefix());
    liaison
        .client
        .publish(inbox.clone(), "forged".into())
        .await
        .unwrap();
    liaison.expect_violation(&inbox).await;
    // Query forwards commands but neither hears nor answers them, nor publishes events.
    let mut query = world.service_probe(Service::Query).await;
    let _denied = query.client.subscribe("whistle.cmd.>").await.unwrap();
    query.expect_violation("whistle.cmd.>").await;
    let forged = "whistle.event.150602.150602001.incident.closed";
    query.client.publish(forged, "e".into()).await.unwrap();
    query.expect_violation(forged).await;
    let stream_admin = "$JS.API.STREAM.DELETE.WHISTLE_EVENTS";
    query.client.publish(stream_admin, "".into()).await.unwrap();
    query.expect_violation(stream_admin).await;
}

#[tokio::test]
async fn a_liaison_reads_its_own_departments_tasks_only() {
    let world = World::start(RECHECK).await;
    let dispatch = world.service(Service::Dispatch).await.unwrap();
    let department = "150602-urban_management";
    let (_, secret) = world.token(Role::Liaison, department).await;
    let identity = Identity::Liaison {
        person: format!("li-{department}").parse().unwrap(),
        department: department.parse().unwrap(),
    };
    let mut liaison = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();

    let mut own = liaison
        .client
        .subscribe(format!("whistle.task.{department}.>"))
        .await
        .unwrap();
    let subject = format!("whistle.task.{department}.task.dispatched");
    deliver(&dispatch, &subject, &mut own).await;
    liaison.expect_no_violation().await;

    let other = "whistle.task.150602-public_security.>";
    let _denied = liaison.client.subscribe(other).await.unwrap();
    liaison.expect_violation(other).await;
    let _denied = liaison.client.subscribe("whistle.event.>").await.unwrap();
    liaison.expect_violation("whistle.event.>").await;
    liaison
        .client
        .publish(
            "whistle.report.150602.150602001.150602001001.150602001001001",
            "r".into(),
        )
        .await
        .unwrap();
    liaison.expect_violation("whistle.report.150602").await;
}

#[tokio::test]
async fn a_viewer_reads_its_area_and_publishes_nothing() {
    let world = World::start(RECHECK).await;
    let (id, secret) = world.token(Role::Viewer, "150602").await;
    let identity = Identity::Viewer {
        token: id,
        area: "150602".parse().unwrap(),
        department: None,
    };
    let mut viewer = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();
    let _events = viewer
        .client
        .subscribe("whistle.event.150602.>")
        .await
        .unwrap();
    viewer.expect_no_violation().await;
    let _denied = viewer
        .client
        .subscribe("whistle.event.150603.>")
        .await
        .unwrap();
    viewer.expect_violation("whistle.event.150603.>").await;
    viewer
        .client
        .publish("whistle.cmd.comment.op-150602", "c".into())
        .await
        .unwrap();
    viewer
        .expect_violation("whistle.cmd.comment.op-150602")
        .await;
}
