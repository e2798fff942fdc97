//! Refused credentials: no anonymous connection, and a revoked token's live connection cut and
//! its reconnect refused within the callout's re-check interval (2 s here, 60 s in production).

use std::time::Duration;

use async_nats::Event;
use whistle_store::tokens::Role;

use crate::harness::*;

const GRID: &str = "150602001001001";
const RECHECK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn an_anonymous_connection_is_refused() {
    let stack = Stack::builder().without_dispatch().start().await;
    let anonymous = async_nats::ConnectOptions::new()
        .connect(stack.server().url())
        .await;
    assert!(anonymous.is_err(), "an anonymous client connected");
    let unknown = Person::connect_with(stack.server(), "wst_no-such-token", "_INBOX_x").await;
    assert!(unknown.is_err(), "an unknown token connected");
}

#[tokio::test]
async fn a_revoked_tokens_connection_is_cut_and_its_reconnect_refused() {
    let stack = Stack::builder()
        .without_dispatch()
        .with_recheck(RECHECK)
        .start()
        .await;
    let secret = stack.token_for(Role::GridWorker, GRID).await;
    let mut worker = stack.connect_as(&secret).await;
    let inbox = worker.inbox_prefix.clone();
    let own = subject_for(GRID);
    worker
        .client
        .publish(own.clone(), "before".into())
        .await
        .unwrap();
    worker.expect_no_violation().await;

    let token = whistle_store::tokens::authenticate(stack.pool(), &secret, chrono::Utc::now())
        .await
        .unwrap()
        .expect("a live token");
    let revoked_at = std::time::Instant::now();
    assert!(
        whistle_store::tokens::revoke(stack.pool(), token.id, chrono::Utc::now(), &admin())
            .await
            .unwrap()
    );

    // Cut at its authorization's expiry (at most the re-check interval), and not let back in.
    let deadline = tokio::time::Instant::now() + RECHECK + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, worker.events.recv())
            .await
            .expect("the revoked connection was not cut in time")
            .expect("the connection's events ended");
        if matches!(event, Event::Disconnected) {
            break;
        }
    }
    assert!(revoked_at.elapsed() <= RECHECK + Duration::from_secs(5));
    let again = Person::connect_with(stack.server(), &secret, &inbox).await;
    assert!(again.is_err(), "a revoked token connected again");
}
