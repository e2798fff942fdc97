//! The dispatch policy as versions (issue 25, item 3; docs/policy.md "Changing the policy"): a
//! version is proposed (refused with the validator's message when invalid, stored with its diff
//! otherwise), approved by a second operator (never by its proposer), and reaches every dispatch
//! replica and the query service without a restart (on the approval's notification, or the next
//! poll without it); every step is on the audit log with its actor and before/after; history cannot
//! be rewritten; an incident opened before keeps its version and stored deadlines.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use uuid::Uuid;
use whistle_domain::policy::{Change, Source};
use whistle_proto::v1;
use whistle_store::{
    audit::Actor,
    policies::{self, Decision, Refused, State},
};

use crate::harness::*;

const ORDOS: &str = include_str!("../../../policy/ordos.toml");

/// `ordos.toml` with one line replaced (and the version changed when `version` is given).
fn edited(from: &str, to: &str, version: Option<&str>) -> Source {
    assert!(ORDOS.contains(from), "{from:?} in ordos.toml");
    let mut text = ORDOS.replacen(from, to, 1);
    if let Some(version) = version {
        text = text.replacen(
            "version = \"ordos-2026.1\"",
            &format!("version = \"{version}\""),
            1,
        );
    }
    Source::read(&text, |_| None).unwrap()
}

/// The incident of a report: id, policy version, creation, level deadline, level.
async fn incident_of(
    stack: &Stack,
    report_id: &str,
) -> Option<(Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>, String)> {
    sqlx::query_as(
        "SELECT i.id, i.policy_version, i.created_at, i.level_due_at, i.level
         FROM incidents i JOIN reports r ON r.incident_id = i.id WHERE r.report_id = $1",
    )
    .bind(report_id)
    .fetch_optional(stack.pool())
    .await
    .unwrap()
}

async fn recorded(
    stack: &Stack,
    report_id: &str,
) -> (Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>, String) {
    eventually(&format!("the incident of {report_id}"), WAIT, || async {
        incident_of(stack, report_id).await.is_some()
    })
    .await
    .unwrap();
    incident_of(stack, report_id).await.unwrap()
}

/// The audit entries of `action`, oldest first: actor, target, before, after.
async fn entries(
    stack: &Stack,
    action: &str,
) -> Vec<(String, String, Option<Value>, Option<Value>)> {
    sqlx::query_as(
        "SELECT actor, target, before, after FROM audit_log WHERE action = $1 ORDER BY at, id",
    )
    .bind(action)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

/// The version each running dispatch replica reports, by holder.
async fn replica_versions(stack: &Stack) -> Vec<String> {
    policies::replicas(stack.pool(), Utc::now() - TimeDelta::hours(1))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect()
}

#[tokio::test]
async fn a_policy_version_goes_from_proposal_through_a_second_operators_approval_to_every_replica()
{
    let start = Utc::now();
    // Polling once a minute: the replicas switch within the test's wait only on the approval's
    // notification. The query service polls (its sessions are read-only).
    let mut stack = Stack::builder()
        .at(start)
        .with_dispatch_options(|o| o.policy_poll_interval = Duration::from_secs(60))
        .with_query_options(|o| o.policy_poll_interval = Duration::from_millis(200))
        .start()
        .await;
    let second = stack.spawn_dispatch().await;
    let grids = grids();

    // The first start stored its --policy as the first version, on the audit log.
    let first = policies::list(stack.pool()).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].version.as_str(),
            first[0].state,
            first[0].bootstrap
        ),
        ("ordos-2026.1", State::Approved, true)
    );
    let bootstrap = entries(&stack, "policy.bootstrap").await;
    assert_eq!(bootstrap.len(), 1, "stored once for both replicas");
    assert!(
        bootstrap[0].0.starts_with("whistle-dispatch@"),
        "{bootstrap:?}"
    );
    eventually("both replicas report the first version", WAIT, || async {
        replica_versions(&stack).await == ["ordos-2026.1", "ordos-2026.1"]
    })
    .await
    .unwrap();

    // An incident opened under it: its community has 4 hours.
    stack.publish(&report("before", &grids[30])).await;
    let (old, version, created, level_due, _) = recorded(&stack, "before").await;
    assert_eq!(version, "ordos-2026.1");
    assert_eq!(level_due, Some(created + TimeDelta::hours(4)));

    let (wang, li) = (Actor::cli(Some("王芳")), Actor::cli(Some("李强")));

    // An invalid policy is refused with the validator's message, and nothing is stored.
    let invalid = edited(
        "summon = [\"heating\", \"housing_construction\"]",
        "summon = []",
        Some("ordos-2026.2"),
    );
    match policies::propose(stack.pool(), &invalid, "停暖改派", &wang, Utc::now()).await {
        Err(Refused::Invalid(message)) => assert_eq!(
            message,
            "the policy is invalid: category heating.no_heat: summon is empty; a category needs \
             at least one department kind to summon"
        ),
        other => panic!("{other:?}"),
    }
    // A version with the running one's figures under a new name has nothing to approve.
    let same = edited("name = ", "name = ", Some("ordos-2026.2"));
    assert!(matches!(
        policies::propose(stack.pool(), &same, "重命名", &wang, Utc::now()).await,
        Err(Refused::Invalid(m)) if m.contains("applies the same figures")
    ));
    assert_eq!(policies::list(stack.pool()).await.unwrap().len(), 1);
    assert!(entries(&stack, "policy.propose").await.is_empty());

    // A valid one is stored as proposed, with its difference from the running version.
    let faster = edited(
        "windows = { community = \"4h\", street = \"8h\", district = \"12h\" }",
        "windows = { community = \"2h\", street = \"8h\", district = \"12h\" }",
        Some("ordos-2026.2"),
    );
    let proposed = policies::propose(
        stack.pool(),
        &faster,
        "供暖季社区响应提速",
        &wang,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(proposed.against.as_deref(), Some("ordos-2026.1"));
    assert_eq!(
        proposed.changes,
        vec![
            Change::Changed {
                key: "category[heating.no_heat].windows.community".into(),
                from: "\"4h\"".into(),
                to: "\"2h\"".into(),
            },
            Change::Changed {
                key: "version".into(),
                from: "\"ordos-2026.1\"".into(),
                to: "\"ordos-2026.2\"".into(),
            },
        ]
    );
    assert_eq!(proposed.version.state, State::Proposed);
    let propose = entries(&stack, "policy.propose").await;
    assert_eq!(propose.len(), 1);
    let (actor, target, before, after) = &propose[0];
    assert_eq!((actor.as_str(), target.as_str()), ("王芳", "ordos-2026.2"));
    assert_eq!(before, &None);
    let after = after.as_ref().unwrap();
    assert_eq!(after["against"], "ordos-2026.1");
    assert_eq!(after["state"], "proposed");
    assert_eq!(after["note"], "供暖季社区响应提速");
    assert_eq!(
        after["changes"][0],
        "~ category[heating.no_heat].windows.community = \"4h\" → \"2h\""
    );
    // The same version cannot be proposed again: every version is kept as it was.
    assert!(matches!(
        policies::propose(stack.pool(), &faster, "again", &li, Utc::now()).await,
        Err(Refused::Invalid(m)) if m.contains("already stored")
    ));

    // A proposal changes nothing yet.
    stack.publish(&report("proposed", &grids[31 * 7])).await;
    assert_eq!(recorded(&stack, "proposed").await.1, "ordos-2026.1");

    // Its proposer cannot approve it; a second operator does.
    match policies::decide(
        stack.pool(),
        "ordos-2026.2",
        Decision::Approve,
        "",
        &wang,
        Utc::now(),
    )
    .await
    {
        Err(Refused::Invalid(message)) => assert!(
            message.contains("proposed by 王芳; another operator must approve it"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(entries(&stack, "policy.approve").await.is_empty());
    let approved = policies::decide(
        stack.pool(),
        "ordos-2026.2",
        Decision::Approve,
        "同意",
        &li,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(approved.replaced.as_deref(), Some("ordos-2026.1"));
    assert_eq!(approved.version.decided_by.as_deref(), Some("李强"));
    let approve = entries(&stack, "policy.approve").await;
    assert_eq!(approve.len(), 1);
    let (actor, target, before, after) = &approve[0];
    assert_eq!((actor.as_str(), target.as_str()), ("李强", "ordos-2026.2"));
    let (before, after) = (before.as_ref().unwrap(), after.as_ref().unwrap());
    assert_eq!(
        (&before["state"], &before["running"]),
        (&Value::from("proposed"), &Value::from("ordos-2026.1"))
    );
    assert_eq!(
        (&after["state"], &after["running"], &after["proposed_by"]),
        (
            &Value::from("approved"),
            &Value::from("ordos-2026.2"),
            &Value::from("王芳")
        )
    );
    // Decided once.
    assert!(matches!(
        policies::decide(stack.pool(), "ordos-2026.2", Decision::Reject, "不", &li, Utc::now()).await,
        Err(Refused::Invalid(m)) if m.contains("it was approved by 李强")
    ));

    // Both replicas switch on the notification, and the query service's catalogue follows.
    eventually("both replicas run the approved version", WAIT, || async {
        replica_versions(&stack).await == ["ordos-2026.2", "ordos-2026.2"]
    })
    .await
    .unwrap();
    eventually("the catalogue follows", WAIT, || async {
        stack
            .client()
            .get_catalogue(v1::GetCatalogueRequest {})
            .await
            .unwrap()
            .into_inner()
            .policy_version
            == "ordos-2026.2"
    })
    .await
    .unwrap();
    // Applied once on the log, whichever replica was first.
    let loads: Vec<Value> = entries(&stack, "policy.load")
        .await
        .into_iter()
        .filter_map(|(_, _, _, after)| after)
        .map(|after| after["version"].clone())
        .collect();
    assert_eq!(loads, ["ordos-2026.1", "ordos-2026.2"]);

    // A new incident is opened under the new version with its figures; the old one keeps its
    // version and stored deadline.
    stack.publish(&report("after", &grids[32 * 7])).await;
    let (new, version, created, level_due, _) = recorded(&stack, "after").await;
    assert_eq!(version, "ordos-2026.2");
    assert_eq!(level_due, Some(created + TimeDelta::hours(2)));
    stack.advance(TimeDelta::minutes(150));
    eventually(
        "the new incident's 2-hour window runs out",
        WAIT,
        || async { stack.state(new).await.1 == "street" },
    )
    .await
    .unwrap();
    let (_, version, created, level_due, level) = incident_of(&stack, "before").await.unwrap();
    assert_eq!(
        (version.as_str(), level_due, level.as_str()),
        (
            "ordos-2026.1",
            Some(created + TimeDelta::hours(4)),
            "community"
        ),
        "the incident opened before keeps its version and its stored deadline"
    );
    assert_eq!(stack.state(old).await.1, "community");

    // History is kept: no one rewrites or deletes a version, the owner included.
    for sql in [
        "UPDATE policy_versions SET text = 'version = \"x\"' WHERE version = 'ordos-2026.1'",
        "UPDATE policy_versions SET state = 'approved' WHERE version = 'ordos-2026.1'",
        "UPDATE policy_versions SET decided_by = '王芳' WHERE version = 'ordos-2026.2'",
        "DELETE FROM policy_versions WHERE version = 'ordos-2026.1'",
        "TRUNCATE policy_versions",
    ] {
        let error = sqlx::raw_sql(sql).execute(stack.pool()).await.unwrap_err();
        assert!(
            error.to_string().contains("policy version"),
            "{sql}: {error}"
        );
    }
    let kept: Vec<(String, String)> =
        sqlx::query_as("SELECT version, state FROM policy_versions ORDER BY seq")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    assert_eq!(
        kept,
        [
            ("ordos-2026.1".to_owned(), "superseded".to_owned()),
            ("ordos-2026.2".to_owned(), "approved".to_owned())
        ]
    );

    // A stopped replica leaves the rollout's list; a restarted one starts on the approved
    // version, not its --policy.
    second.stop().await;
    assert_eq!(replica_versions(&stack).await, ["ordos-2026.2"]);
    stack.restart_dispatch().await;
    eventually(
        "the restarted replica reports the approved version",
        WAIT,
        || async { replica_versions(&stack).await == ["ordos-2026.2"] },
    )
    .await
    .unwrap();
    stack.publish(&report("restarted", &grids[33 * 7])).await;
    assert_eq!(recorded(&stack, "restarted").await.1, "ordos-2026.2");
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn a_proposal_may_be_withdrawn_and_may_not_drop_a_category_with_open_incidents() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let wang = Actor::cli(Some("王芳"));
    stack.publish(&report("open", &grids()[30])).await;
    recorded(&stack, "open").await;

    // Dropping heating.no_heat while an incident of it is open is refused.
    let start = ORDOS
        .find("[[category]]\ncode = \"heating.no_heat\"")
        .unwrap();
    let end = start + 1 + ORDOS[start + 1..].find("[[category]]").unwrap();
    let dropped = Source::read(
        &format!("{}{}", &ORDOS[..start], &ORDOS[end..]).replacen(
            "ordos-2026.1",
            "ordos-2026.3",
            1,
        ),
        |_| None,
    )
    .unwrap();
    match policies::propose(stack.pool(), &dropped, "合并分类", &wang, Utc::now()).await {
        Err(Refused::Invalid(message)) => {
            assert!(message.contains("heating.no_heat (1 open)"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // The proposer withdraws their own proposal; the running version stays.
    let faster = edited("accept = \"30m\"", "accept = \"20m\"", Some("ordos-2026.4"));
    policies::propose(stack.pool(), &faster, "报到提速", &wang, Utc::now())
        .await
        .unwrap();
    let withdrawn = policies::decide(
        stack.pool(),
        "ordos-2026.4",
        Decision::Reject,
        "撤回",
        &wang,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(withdrawn.version.state, State::Rejected);
    let reject = entries(&stack, "policy.reject").await;
    assert_eq!(reject.len(), 1);
    assert_eq!(reject[0].0, "王芳");
    assert_eq!(reject[0].3.as_ref().unwrap()["state"], "rejected");
    let mut conn = stack.pool().acquire().await.unwrap();
    assert_eq!(
        policies::active(&mut conn).await.unwrap().unwrap().version,
        "ordos-2026.1"
    );
}

/// A replica that missed the approval's notification (its listening connection was down) switches
/// on its next look at the table. Here the approval is written without a notification at all.
#[tokio::test]
async fn a_replica_that_missed_the_notification_switches_on_its_next_poll() {
    let stack = Stack::builder()
        .at(Utc::now())
        .with_dispatch_options(|o| o.policy_poll_interval = Duration::from_millis(200))
        .start()
        .await;
    let faster = edited("accept = \"30m\"", "accept = \"20m\"", Some("ordos-2026.5"));
    policies::propose(
        stack.pool(),
        &faster,
        "报到提速",
        &Actor::cli(Some("王芳")),
        Utc::now(),
    )
    .await
    .unwrap();
    let mut tx = stack.pool().begin().await.unwrap();
    sqlx::raw_sql(
        "UPDATE policy_versions SET state = 'superseded', superseded_at = now()
         WHERE state = 'approved';
         UPDATE policy_versions SET state = 'approved', decided_by = '李强', decided_at = now()
         WHERE version = 'ordos-2026.5'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    eventually("the replica polls the approved version", WAIT, || async {
        replica_versions(&stack).await == ["ordos-2026.5"]
    })
    .await
    .unwrap();
    stack.publish(&report("polled", &grids()[30])).await;
    assert_eq!(recorded(&stack, "polled").await.1, "ordos-2026.5");
}
