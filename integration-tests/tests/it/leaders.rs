//! 领导结对联系 on real NATS and PostgreSQL: the leaders paired with an incident's street and
//! community hear of its escalation to the district, its missed deadline and its supervision;
//! a leader endorses a 督办 (领导督办) only where paired, on both doors; the leader's view lists the
//! paired areas' open incidents, most pressing first, and nothing else is readable with its token.

use chrono::{TimeDelta, Utc};
use tonic::Code;
use uuid::Uuid;
use whistle_domain::{leaders, AreaCode, Level};
use whistle_proto::v1::{
    self, command::Body, command_reply::Outcome, dispatch_client::DispatchClient,
};

use crate::harness::*;

/// A grid of 东胜区's first community, paired with the district's first leader.
const GRID: &str = "150602001001001";
const DISTRICT: &str = "150602";
const LEADER: &str = "ld-150602-01";

/// A stack on a manual clock with the query service, the Ordos leaders seeded before dispatch
/// starts (so its org holds them from the first command).
async fn with_leaders() -> (Stack, whistle_domain::ordos::Leaders) {
    let mut stack = Stack::builder()
        .at(Utc::now())
        .without_dispatch()
        .with_query()
        .start()
        .await;
    let leaders = seed_leaders(stack.pool()).await;
    stack.start_dispatch().await;
    (stack, leaders)
}

/// The leaders paired with `grid`'s street or community.
fn concerned(leaders: &whistle_domain::ordos::Leaders, grid: &str) -> Vec<String> {
    let grid: AreaCode = grid.parse().unwrap();
    leaders::concerned(&leaders.pairings, &grid)
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

/// The people told of `kind` on `incident` in their console list, in id order.
async fn told(stack: &Stack, incident: Uuid, kind: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT person_id FROM notifications
         WHERE incident_id = $1 AND kind = $2 AND channel = 'console' ORDER BY person_id",
    )
    .bind(incident)
    .bind(kind)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

/// Waits until exactly `who` are told of `kind` on `incident` (each once: a second event telling
/// them again would list them twice).
async fn wait_told(stack: &Stack, incident: Uuid, kind: &str, who: &[String]) {
    let mut want = who.to_vec();
    want.sort();
    eventually(&format!("{kind} told to {want:?}"), WAIT, || async {
        let leaders: Vec<String> = told(stack, incident, kind)
            .await
            .into_iter()
            .filter(|p| p.starts_with("ld-"))
            .collect();
        leaders == want
    })
    .await
    .unwrap();
}

fn endorse(note: &str) -> Body {
    Body::Endorse(v1::Endorse { note: note.into() })
}

fn refused(reply: v1::CommandReply) -> (i32, String) {
    match reply.outcome {
        Some(Outcome::Error(e)) => (e.code, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn paired_leaders_hear_of_a_district_escalation_a_supervision_and_a_missed_deadline() {
    let (stack, leaders) = with_leaders().await;
    let paired = concerned(&leaders, GRID);
    assert_eq!(
        paired.len(),
        2,
        "a city leader for the street, a district one for the community: {paired:?}"
    );
    assert!(paired.iter().any(|p| p.starts_with("ld-150600-")));
    assert!(paired.iter().any(|p| p == LEADER));

    // Whistled at the street; no department reports in, so it goes up to the district.
    // (Its escalation from the community to the street tells no leader: `wait_told` would see
    // them twice.)
    let incident = stack.whistled("leaders-1", GRID).await;
    stack.advance(TimeDelta::minutes(31));
    stack.wait_state(incident, "whistled", "district").await;
    wait_told(&stack, incident, "incident.escalated", &paired).await;

    // A city operator supervises it (督办): the same leaders hear.
    stack
        .ok(
            "op-150600",
            incident,
            Body::Supervise(v1::Supervise {
                task_id: String::new(),
                note: "请加快办理".into(),
            }),
        )
        .await;
    wait_told(&stack, incident, "incident.supervised", &paired).await;

    // Another street's incident misses its deadline (24 h): its own leaders hear, not these.
    let other_grid = grids()
        .into_iter()
        .find(|g| g.starts_with(DISTRICT) && unit(g, Level::Street) != unit(GRID, Level::Street))
        .unwrap();
    let others = concerned(&leaders, &other_grid);
    let late = stack
        .report("leaders-2", &other_grid, "heating.no_heat")
        .await;
    stack.advance(TimeDelta::hours(25));
    eventually("the deadline missed", WAIT, || async {
        stack.incident_column::<bool>(late, "overdue").await
    })
    .await
    .unwrap();
    wait_told(&stack, late, "incident.overdue", &others).await;

    // The leader's console list holds its notifications, with the incident and what happened.
    let token = leader_token(stack.pool(), LEADER, DISTRICT).await;
    let listed = command_center_on(stack.channel(), &token)
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = listed
        .notifications
        .iter()
        .filter(|n| n.incident_id == incident.to_string())
        .map(|n| n.kind.as_str())
        .collect();
    assert!(kinds.contains(&"incident.escalated"), "{kinds:?}");
    assert!(kinds.contains(&"incident.supervised"), "{kinds:?}");
    let escalated = listed
        .notifications
        .iter()
        .find(|n| n.kind == "incident.escalated")
        .unwrap();
    assert!(
        escalated.title.starts_with("结对联系·升级｜"),
        "{}",
        escalated.title
    );
    assert!(escalated.body.contains("旗区"), "{}", escalated.body);
    // A leader paired elsewhere hears nothing of these incidents.
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE incident_id = $1 AND person_id LIKE 'ld-%'
           AND person_id <> ALL($2)",
    )
    .bind(incident)
    .bind(&paired)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(rows, 0);
    assert!(
        stack.service_violations().is_empty(),
        "{:?}",
        stack.service_violations()
    );
}

#[tokio::test]
async fn a_leader_endorses_a_supervision_only_in_its_paired_areas_and_reads_only_them() {
    let (stack, leaders) = with_leaders().await;
    // A grid of the same district whose community and street are not the leader's: its post
    // (the district) grants nothing by itself.
    let elsewhere = grids()
        .into_iter()
        .find(|g| g.starts_with(DISTRICT) && !concerned(&leaders, g).contains(&LEADER.to_owned()))
        .unwrap();
    let paired = stack
        .report("endorse-1", GRID, "municipal.street_light")
        .await;
    let escalated = stack.report("endorse-2", GRID, "heating.no_heat").await;
    stack
        .ok(
            &format!("hd-{}", unit(GRID, Level::Community)),
            escalated,
            escalate(),
        )
        .await;
    let other = stack
        .report("endorse-3", &elsewhere, "municipal.street_light")
        .await;

    // Over NATS, as dispatch serves it: allowed where paired, refused elsewhere, and a note needed.
    let before = stack.detail(paired).await.incident.unwrap();
    let ok = stack
        .ok(LEADER, paired, endorse("请街道本周内解决，结果报我"))
        .await;
    // The incident itself does not change (like a comment, it is only on the timeline): same
    // version, status, level and deadline.
    assert_eq!(ok.version, before.version);
    let after = stack.detail(paired).await.incident.unwrap();
    assert_eq!(
        (after.status, after.level, after.due_at),
        (before.status, before.level, before.due_at)
    );
    let (code, message) = refused(stack.command(LEADER, other, endorse("请解决")).await);
    assert_eq!(code, v1::CommandErrorCode::Forbidden as i32, "{message}");
    let (code, _) = refused(stack.command(LEADER, paired, endorse(" ")).await);
    assert_eq!(code, v1::CommandErrorCode::InvalidArgument as i32);
    // An operator's 督办 is `supervise`; endorsing is a leader's.
    let (code, _) = refused(stack.command("op-150602", paired, endorse("x")).await);
    assert_eq!(code, v1::CommandErrorCode::Forbidden as i32);

    // The timeline shows it as 领导督办, by the leader, with the instruction; the unit handling the
    // incident (its grid worker at the grid) is told.
    let timeline: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, actor_id, note FROM timeline WHERE incident_id = $1 AND kind = 'incident.endorsed'",
    )
    .bind(paired)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(
        timeline,
        [(
            "incident.endorsed".to_owned(),
            LEADER.to_owned(),
            "请街道本周内解决，结果报我".to_owned()
        )]
    );
    let handling = match whistle_wire::convert::level_from_proto(before.level).unwrap() {
        Level::Grid => format!("gw-{GRID}"),
        level => format!("hd-{}", unit(GRID, level)),
    };
    eventually(
        "the unit handling it told of the endorsement",
        WAIT,
        || async { told(&stack, paired, "incident.endorsed").await == [handling.clone()] },
    )
    .await
    .unwrap();

    // Over gRPC with the leader's token: the same rule, and the reads of its paired areas only.
    let token = leader_token(stack.pool(), LEADER, DISTRICT).await;
    let mut dispatch = DispatchClient::with_interceptor(
        stack.channel(),
        whistle_proto::Bearer::new(&token).unwrap(),
    );
    let command = |incident: Uuid, note: &str| v1::Command {
        command_id: Uuid::now_v7().to_string(),
        incident_id: incident.to_string(),
        body: Some(endorse(note)),
        ..Default::default()
    };
    dispatch
        .endorse(command(escalated, "领导督办：限期办结"))
        .await
        .unwrap();
    let denied = dispatch.endorse(command(other, "x")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let not_a_leaders = dispatch
        .supervise(v1::Command {
            body: Some(Body::Supervise(v1::Supervise::default())),
            ..command(paired, "")
        })
        .await
        .unwrap_err();
    assert_eq!(not_a_leaders.code(), Code::PermissionDenied);

    let mut center = command_center_on(stack.channel(), &token);
    let detail = center
        .get_incident(v1::GetIncidentRequest {
            incident_id: paired.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(detail
        .timeline
        .iter()
        .any(|e| e.kind == "incident.endorsed"));
    let outside = center
        .get_incident(v1::GetIncidentRequest {
            incident_id: other.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied);
    let list = center
        .list_incidents(v1::ListIncidentsRequest {
            area_code: DISTRICT.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied);

    // The leader's view: its paired areas with their counts, the escalated incident first.
    let view = center
        .list_paired_incidents(v1::ListPairedIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let leader: whistle_domain::PersonId = LEADER.parse().unwrap();
    let mine: Vec<&str> = leaders::paired_areas(&leaders.pairings, &leader)
        .map(|a| a.as_str())
        .collect();
    assert_eq!(
        view.areas
            .iter()
            .map(|a| a.area_code.as_str())
            .collect::<Vec<_>>(),
        mine
    );
    let community = view
        .areas
        .iter()
        .find(|a| a.area_code == unit(GRID, Level::Community))
        .unwrap();
    assert_eq!(community.open_count, 2);
    assert!(!community.name.is_empty());
    assert_eq!(view.open_count, 2);
    let listed: Vec<String> = view
        .incidents
        .iter()
        .map(|i| i.incident_id.clone())
        .collect();
    assert_eq!(listed, [escalated.to_string(), paired.to_string()]);
    // An operator has no leader's view.
    let refused = stack
        .client()
        .list_paired_incidents(v1::ListPairedIncidentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_pairing_must_fit_the_leaders_post_and_is_audited() {
    let stack = Stack::builder().database_only().start().await;
    seed_leaders(stack.pool()).await;
    let pairing = |leader: &str, area: &str| leaders::Pairing {
        leader: leader.parse().unwrap(),
        area: area.parse().unwrap(),
    };
    // A district leader may not follow another district's community; nothing is written.
    let before = stack.count("SELECT count(*) FROM leader_pairings").await;
    let wrong = whistle_store::leaders::pair(
        stack.pool(),
        &[
            pairing(LEADER, "150602002001"),
            pairing(LEADER, "150603001001"),
        ],
        &admin(),
    )
    .await
    .unwrap_err();
    assert!(wrong.to_string().contains("150603001001"), "{wrong}");
    assert_eq!(
        stack.count("SELECT count(*) FROM leader_pairings").await,
        before
    );
    // A fitting one is written once, on the audit log; seeding again adds nothing.
    let added =
        whistle_store::leaders::pair(stack.pool(), &[pairing(LEADER, "150602002001")], &admin())
            .await
            .unwrap();
    assert_eq!(added, 1);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'leaders.pair' AND area_code = '150602002001' AND target = 'ld-150602-01'")
            .await,
        1
    );
    seed_leaders(stack.pool()).await;
    assert_eq!(
        stack.count("SELECT count(*) FROM leader_pairings").await,
        before + 1
    );
    assert!(whistle_store::leaders::unpair(
        stack.pool(),
        &pairing(LEADER, "150602002001"),
        &admin()
    )
    .await
    .unwrap());
    assert_eq!(
        stack.count("SELECT count(*) FROM leader_pairings").await,
        before
    );
}

#[tokio::test]
async fn a_leaders_nats_connection_sends_its_endorsements_and_nothing_else() {
    let (stack, _) = with_leaders().await;
    let incident = stack
        .report("endorse-nats", GRID, "municipal.street_light")
        .await;
    let token = leader_token(stack.pool(), LEADER, DISTRICT).await;
    let mut leader = stack.connect_as(&token).await;
    let commands = whistle_wire::CommandClient::new(leader.client.clone())
        .with_timeout(std::time::Duration::from_secs(5));
    let command = |body: Body| v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: LEADER.into(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    };
    let reply = commands
        .send(&command(endorse("请尽快处理")))
        .await
        .unwrap();
    assert!(matches!(reply.outcome, Some(Outcome::Ok(_))), "{reply:?}");
    leader.expect_no_violation().await;
    // Any other verb, a report of the grid, or another person's endorsement: the server refuses.
    let short = whistle_wire::CommandClient::new(leader.client.clone())
        .with_timeout(std::time::Duration::from_millis(500));
    assert!(short
        .send(&command(Body::Supervise(v1::Supervise::default())))
        .await
        .is_err());
    leader
        .expect_violation(&whistle_wire::subject::command(
            whistle_wire::Verb::Supervise,
            LEADER,
        ))
        .await;
    let report = whistle_wire::subject::report(&GRID.parse().unwrap());
    leader
        .client
        .publish(report.clone(), "probe".into())
        .await
        .unwrap();
    leader.expect_violation(&report).await;
    let forged = v1::Command {
        actor_id: "ld-150602-02".into(),
        ..command(endorse("x"))
    };
    assert!(short.send(&forged).await.is_err());
    leader
        .expect_violation(&whistle_wire::subject::command(
            whistle_wire::Verb::Endorse,
            "ld-150602-02",
        ))
        .await;
}

/// The areas `leader` is paired with, in code order.
async fn pairings_of(stack: &Stack, leader: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT area_code FROM leader_pairings WHERE leader_id = $1 ORDER BY area_code",
    )
    .bind(leader)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_leaving_leaders_pairings_go_to_a_successor_who_may_hold_them() {
    use whistle_store::people::{self, Refused};
    let stack = Stack::builder().database_only().start().await;
    seed_leaders(stack.pool()).await;
    let held = pairings_of(&stack, LEADER).await;
    assert!(
        held.iter().any(|a| a.len() == 12),
        "a district leader follows communities: {held:?}"
    );
    let successor = "ld-150602-02";
    let theirs = pairings_of(&stack, successor).await;

    // No successor: refused, listing the pairings, and nothing changes.
    let refused = people::offboard(stack.pool(), LEADER, None, Utc::now(), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Refused::Holds { holdings, .. } if holdings.paired_areas == held),
        "{refused:?}"
    );
    // A city leader may follow streets only, not this leader's communities; nor may a grid worker.
    for unfit in ["ld-150600-01", "gw-150602001001001"] {
        let wrong = people::offboard(stack.pool(), LEADER, Some(unfit), Utc::now(), &admin())
            .await
            .unwrap_err();
        assert!(
            matches!(&wrong, Refused::Unfit(m) if m.contains("must be a leader")),
            "{unfit}: {wrong:?}"
        );
    }
    assert_eq!(pairings_of(&stack, LEADER).await, held);

    // Another leader of the district takes them all, with what they already had.
    let done = people::offboard(stack.pool(), LEADER, Some(successor), Utc::now(), &admin())
        .await
        .unwrap();
    assert_eq!(done.handed_over.paired_areas, held);
    assert!(pairings_of(&stack, LEADER).await.is_empty());
    let mut want: Vec<String> = held.iter().chain(&theirs).cloned().collect();
    want.sort();
    want.dedup();
    assert_eq!(pairings_of(&stack, successor).await, want);
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM audit_log WHERE action = 'people.offboard' AND target = '{LEADER}'
                   AND after->'handed_over'->'paired_areas' = '{}'::jsonb",
                serde_json::to_string(&held).unwrap()
            ))
            .await,
        1
    );
}
