//! A revoked token loses its live connection within the re-check interval and cannot reconnect,
//! while a valid one is re-authorized and keeps working.

use std::time::Duration;

use async_nats::Event;
use futures::StreamExt as _;
use whistle_auth::{Identity, Service};
use whistle_store::tokens::{self, Role};
use whistle_wire::subject::report as report_subject;

use crate::harness::{sync, World};

const GRID: &str = "150602001001001";
const RECHECK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_revoked_tokens_connection_is_cut_and_its_reconnect_refused() {
    let world = World::start(RECHECK).await;
    let admin = world.service(Service::Admin).await.unwrap();
    let mut reports = admin.subscribe("whistle.report.>").await.unwrap();
    sync(&admin).await;

    let (id, secret) = world.token(Role::GridWorker, GRID).await;
    let grid = GRID.parse().unwrap();
    let identity = Identity::GridWorker {
        person: format!("gw-{GRID}").parse().unwrap(),
        grid,
    };
    let mut worker = world
        .connect(&secret, &identity.inbox_prefix())
        .await
        .unwrap();
    let subject = report_subject(&GRID.parse().unwrap());

    // Past two expiries, a valid token is still connected and publishing.
    tokio::time::sleep(RECHECK * 2 + Duration::from_millis(500)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        worker
            .client
            .publish(subject.clone(), "r".into())
            .await
            .unwrap();
        let _ = worker.client.flush().await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), reports.next()).await
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a valid token stopped working"
        );
    }
    let mut reconnected = false;
    while let Ok(event) = worker.events.try_recv() {
        reconnected |= matches!(event, Event::Connected);
    }
    assert!(
        reconnected,
        "the connection was re-authorized at its expiry"
    );

    assert!(tokens::revoke(
        &world.pool,
        id,
        chrono::Utc::now(),
        &whistle_store::audit::Actor::cli(Some("test"))
    )
    .await
    .unwrap());
    let cut = tokio::time::timeout(RECHECK + Duration::from_secs(5), async {
        while let Some(event) = worker.events.recv().await {
            if matches!(event, Event::Disconnected) {
                return;
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the live connection was not cut within the interval"
    );
    assert!(
        world
            .connect(&secret, &identity.inbox_prefix())
            .await
            .is_err(),
        "a revoked token reconnects"
    );
    // The old client keeps trying and is refused every time.
    tokio::time::sleep(RECHECK + Duration::from_secs(1)).await;
    while let Ok(event) = worker.events.try_recv() {
        assert!(
            !matches!(event, Event::Connected),
            "the revoked client got back in"
        );
    }
    assert_ne!(
        worker.client.connection_state(),
        async_nats::connection::State::Connected
    );
}
