//! Dispatch as a service: NATS micro-service discovery, JSON clients. (Policy versions:
//! `policy.rs`.)

use chrono::Utc;
use prost::Message as _;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};

use whistle_wire::{
    kind,
    names::{ServiceRequest, DISPATCH_SERVICE},
    subject, Verb,
};

use crate::harness::*;

use super::bodies::{escalate, grid_of_street};

#[tokio::test]
async fn dispatch_is_a_nats_micro_service() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let ping = stack
        .admin()
        .request(ServiceRequest::Ping.subject(DISPATCH_SERVICE), "".into())
        .await
        .expect("ping answered");
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "whistle-dispatch");
    let info = stack
        .admin()
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
            subjects.contains(&subject::command_endpoint(verb).as_str()),
            "{subjects:?}"
        );
    }
    let stats = stack
        .admin()
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
        .admin()
        .request(
            subject::command(Verb::Accept, "op-150600"),
            "not a command".into(),
        )
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
        .admin()
        .request(
            subject::command(Verb::Comment, &stale.actor_id),
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
        .admin()
        .request(
            subject::command(Verb::Escalate, &escalate_once.actor_id),
            escalate_once.encode_to_vec().into(),
        )
        .await
        .unwrap();
    let again = stack
        .admin()
        .request(
            subject::command(Verb::Escalate, &escalate_once.actor_id),
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

    // The id is the sender's: another person using it, or the same person for another command,
    // gets neither the first outcome nor a second application.
    let operator = "op-150600".to_owned();
    let someone_else = v1::Command {
        actor_id: operator.clone(),
        ..escalate_once.clone()
    };
    let another_command = v1::Command {
        body: Some(Body::Comment(v1::Comment {
            text: "同一个编号，另一条命令".into(),
        })),
        ..escalate_once.clone()
    };
    for (verb, command) in [
        (Verb::Escalate, someone_else),
        (Verb::Comment, another_command),
    ] {
        let reply = stack
            .admin()
            .request(
                subject::command(verb, &command.actor_id),
                command.encode_to_vec().into(),
            )
            .await
            .unwrap();
        let reply = v1::CommandReply::decode(reply.payload).unwrap();
        assert!(
            matches!(&reply.outcome, Some(Outcome::Error(e))
                if e.code == v1::CommandErrorCode::InvalidArgument as i32
                    && e.message.contains("already used for another command")),
            "{verb:?} by {}: {reply:?}",
            command.actor_id
        );
    }
    assert_eq!(stack.state(incident).await.1, "street");
    let comments: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timeline WHERE incident_id = $1 AND kind = 'incident.commented'",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(comments, 0);
}

#[tokio::test]
async fn a_json_client_is_refused_for_another_departments_task_and_accepted_for_its_own() {
    let stack = Stack::builder().at(Utc::now()).start().await;
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
        let client = stack.admin().clone();
        let body = format!(
            r#"{{"commandId":"{}","actorId":"{actor}","incidentId":"{incident}","accept":{{"taskId":"{task}"}}}}"#,
            Uuid::now_v7()
        );
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Content-Type", "application/json");
            let reply = client
                .request_with_headers(subject::command(Verb::Accept, &actor), headers, body.into())
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
