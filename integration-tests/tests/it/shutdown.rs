//! A graceful stop of dispatch leaves nothing half done: work in flight when the stop begins is
//! committed and its events are published before `run` returns.

use std::time::Duration;

use sqlx::Connection as _;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};
use whistle_wire::kind;

use crate::harness::*;

#[tokio::test]
async fn a_command_in_flight_during_a_graceful_stop_has_its_events_published_before_run_returns() {
    let mut stack = Stack::builder().at(chrono::Utc::now()).start().await;
    let incident = stack
        .report("shutdown-1", &grids()[0], "municipal.street_light")
        .await;
    stack.intake_drained().await;

    // Hold the incident's row so the command blocks inside its transaction.
    let mut holder = sqlx::PgConnection::connect(&stack.db().url).await.unwrap();
    let mut hold = holder.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE")
        .bind(incident)
        .execute(&mut *hold)
        .await
        .unwrap();
    let command = tokio::spawn({
        let nats = stack.admin().clone();
        async move {
            whistle_wire::CommandClient::new(nats)
                .send(&v1::Command {
                    command_id: uuid::Uuid::now_v7().to_string(),
                    actor_id: "op-150600".into(),
                    incident_id: incident.to_string(),
                    expected_version: 0,
                    body: Some(Body::Comment(v1::Comment {
                        text: "在停机时提交".into(),
                    })),
                })
                .await
        }
    });
    eventually("the command waits for the row lock", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(stack.pool())
            .await
            .is_ok_and(|waiting| waiting > 0)
    })
    .await
    .unwrap();

    // Stop while the command is in flight; give everything but the command time to finish, so a
    // stop that did not wait for it would have stopped its relay already.
    let dispatch = stack.take_dispatch();
    dispatch.shutdown.cancel();
    let stopped = tokio::spawn(dispatch.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    hold.rollback().await.unwrap();
    stopped.await.expect("dispatch stopped cleanly");

    let reply = command.await.unwrap().expect("the command was answered");
    assert!(
        matches!(reply.outcome, Some(Outcome::Ok(_))),
        "reply: {reply:?}"
    );
    assert_eq!(
        stack.count("SELECT count(*) FROM outbox").await,
        0,
        "events left in the outbox after run returned"
    );
    let commented = stack
        .events_of(incident)
        .await
        .into_iter()
        .filter(|(_, event)| event.kind == kind::INCIDENT_COMMENTED)
        .count();
    assert_eq!(commented, 1, "the comment's event is on WHISTLE_EVENTS");
}
