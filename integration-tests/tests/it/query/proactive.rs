//! 主动治理 end to end (docs/proactive.md): a history made through the real intake proposes a
//! compound's topic; its district's operator adopts it through `Dispatch.Adopt` with a lead, an
//! assistant, milestones and a deadline; the case lives on the normal lifecycle (report-ins, the
//! assistant's part, the lead's resolution, the follow-up) to its close, shows its origin, its
//! milestones and its measure, and is listed by origin. Refused: another district's operator, a
//! grid worker (by the door and by NATS permissions), bad departments, deadlines and topics.

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeDelta};
use tonic::Code;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body};
use whistle_store::tokens::Role;

use crate::harness::*;

fn located(mut report: v1::Report, (lat, lon): (f64, f64)) -> v1::Report {
    report.location = Some(v1::Location {
        lat,
        lon,
        address: "3号楼".into(),
    });
    report
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(whistle_proto::timestamp_from_unix_millis(
        at.timestamp_millis(),
    ))
}

/// An `Adopt` command through the door: a fresh id, no incident.
fn adopt_command(adopt: v1::Adopt) -> v1::Command {
    v1::Command {
        command_id: uuid::Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: String::new(),
        expected_version: 0,
        body: Some(Body::Adopt(adopt)),
    }
}

#[tokio::test]
async fn an_adopted_topic_lives_on_the_lifecycle_and_is_measured() {
    let ordos = FixedOffset::east_opt(8 * 3600).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 5)
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(10, 0, 0).unwrap())
        .and_local_timezone(ordos)
        .unwrap()
        .to_utc();
    let stack = Stack::builder().with_query().at(start).start().await;
    let (grid, spot) = whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .find(|u| u.level() == Level::Grid && u.code.as_str().starts_with("150602"))
        .map(|u| (u.code.to_string(), (u.lat, u.lon)))
        .unwrap();
    // Property service complaints at one compound, twice a month for five months.
    for month in 0..5 {
        if month > 0 {
            stack.advance(TimeDelta::days(30));
            stack.settle().await;
        }
        for n in 0..2 {
            let report = stack.filed(
                &format!("pa-{month}-{n}"),
                &grid,
                "property.service",
                v1::Urgency::Normal,
            );
            let offset = f64::from(n) * 0.0002;
            stack
                .file(&located(report, (spot.0 + offset, spot.1)))
                .await;
        }
    }
    stack.advance(TimeDelta::days(28));
    stack.settle().await;
    let now = stack.now();

    let operator_token = stack.token_for(Role::Operator, "150602").await;
    let mut operator = command_center_on(stack.channel(), &operator_token);
    let listed = operator
        .list_hotspots(v1::ListHotspotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!listed.stored, "nothing adopted yet: computed now");
    let [topic] = listed.hotspots.as_slice() else {
        panic!("the compound's topic: {listed:#?}");
    };
    assert!(topic.adopted_incident_id.is_empty());
    let (lead, assist) = (
        dept(&grid, "urban_management"),
        dept(&grid, "housing_construction"),
    );
    let adopt = v1::Adopt {
        topic_key: topic.key.clone(),
        month: String::new(),
        lead_department_code: lead.clone(),
        assisting_department_codes: vec![assist.clone()],
        milestones: vec![
            v1::Milestone {
                title: "排查物业服务问题".into(),
                due: timestamp(now + TimeDelta::days(10)),
            },
            v1::Milestone {
                title: "召开居民协商会".into(),
                due: timestamp(now + TimeDelta::days(30)),
            },
        ],
        deadline: timestamp(now + TimeDelta::days(60)),
        note: "六月每月一题".into(),
    };

    // Refused: another district's operator, a grid worker (at the door and by NATS), bad
    // departments, deadlines, milestones and topics. None opens anything.
    let mut other = dispatch(&stack, &stack.token_for(Role::Operator, "150603").await).await;
    let status = other.adopt(adopt_command(adopt.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let worker_token = stack.token_for(Role::GridWorker, &grid).await;
    let mut worker_door = dispatch(&stack, &worker_token).await;
    let status = worker_door
        .adopt(adopt_command(adopt.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut worker = stack.connect_as(&worker_token).await;
    let subject = format!("whistle.cmd.adopt.gw-{grid}");
    worker
        .client
        .publish(subject.clone(), "x".into())
        .await
        .unwrap();
    worker.expect_violation(&subject).await;
    let mut door = dispatch(&stack, &operator_token).await;
    let refused = [
        (
            v1::Adopt {
                lead_department_code: "150603-urban_management".into(),
                ..adopt.clone()
            },
            Code::InvalidArgument,
        ),
        (
            v1::Adopt {
                lead_department_code: "150602-nothing".into(),
                ..adopt.clone()
            },
            Code::NotFound,
        ),
        (
            v1::Adopt {
                deadline: timestamp(now - TimeDelta::days(1)),
                ..adopt.clone()
            },
            Code::InvalidArgument,
        ),
        (
            v1::Adopt {
                milestones: vec![v1::Milestone {
                    title: "晚于期限".into(),
                    due: timestamp(now + TimeDelta::days(61)),
                }],
                ..adopt.clone()
            },
            Code::InvalidArgument,
        ),
        (
            v1::Adopt {
                topic_key: format!("{grid}/heating"),
                ..adopt.clone()
            },
            Code::NotFound,
        ),
        (
            v1::Adopt {
                month: "2099-01".into(),
                ..adopt.clone()
            },
            Code::InvalidArgument,
        ),
    ];
    for (bad, code) in refused {
        let status = door.adopt(adopt_command(bad.clone())).await.unwrap_err();
        assert_eq!(status.code(), code, "{bad:?}: {status:?}");
    }
    assert_eq!(
        stack
            .count("SELECT count(*) FROM incidents WHERE origin = 'proactive'")
            .await,
        0
    );

    // Adopted; the same command again is the same case, a new one for the topic is refused.
    let command = adopt_command(adopt.clone());
    let adopted = door.adopt(command.clone()).await.unwrap().into_inner();
    let again = door.adopt(command).await.unwrap().into_inner();
    assert_eq!(again.incident_id, adopted.incident_id);
    let status = door.adopt(adopt_command(adopt.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(adopted.status, v1::IncidentStatus::Whistled as i32);
    // Supervised where the topic can be solved: its incidents, left open, went up to it.
    assert_eq!(
        adopted.level,
        topic.solvable_at.max(v1::Level::Street as i32)
    );
    let incident: uuid::Uuid = adopted.incident_id.parse().unwrap();

    // The event says it was adopted, by whom, from which topic; the tasks went to the lead
    // and the assistant on their departments' subjects.
    stack.wait_published("incident.adopted", 1).await;
    let events = stack.events_of(incident).await;
    let (subject, event) = &events[0];
    assert_eq!(event.kind, "incident.adopted");
    assert_eq!(event.actor_id, "op-150602");
    assert!(subject.ends_with(".incident.adopted"), "{subject}");
    let Some(v1::event::Body::IncidentChanged(changed)) = &event.body else {
        panic!("{event:?}")
    };
    assert!(changed.note.contains(&topic.key), "{}", changed.note);
    let dispatched: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e.kind == "task.dispatched")
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(
        dispatched,
        [
            format!("whistle.task.{lead}.task.dispatched"),
            format!("whistle.task.{assist}.task.dispatched")
        ]
    );

    // The screen's reads: origin, topic, milestones, the measure; the origin filter.
    let detail = stack.detail(incident).await;
    let summary = detail.incident.as_ref().unwrap();
    assert_eq!(summary.origin, v1::Origin::Proactive as i32);
    assert_eq!(summary.topic_key, topic.key);
    assert_eq!(summary.report_count, 0);
    assert!(summary.title.starts_with("主动治理"), "{}", summary.title);
    assert!(detail.reports.is_empty());
    let case = detail.proactive.as_ref().expect("a proactive case");
    assert_eq!(
        (case.topic_key.as_str(), case.adopted_by.as_str()),
        (topic.key.as_str(), "op-150602")
    );
    assert_eq!(case.milestones.len(), 2);
    assert!(case
        .milestones
        .iter()
        .all(|m| !m.overdue && m.done_at.is_none()));
    let change = case.change.as_ref().expect("the measure since adoption");
    assert_eq!(
        counts(&change.before),
        [("2026-03", 2), ("2026-04", 2), ("2026-05", 2)]
    );
    assert!(!change.complete);
    assert_eq!(detail.timeline[0].kind, "incident.adopted");
    assert_eq!(detail.timeline[0].actor_id, "op-150602");
    let proactive_only = stack
        .ids(v1::ListIncidentsRequest {
            origins: vec![v1::Origin::Proactive as i32],
            ..Default::default()
        })
        .await;
    assert_eq!(proactive_only, [incident]);
    let reports_only = stack
        .ids(v1::ListIncidentsRequest {
            origins: vec![v1::Origin::Report as i32],
            ..Default::default()
        })
        .await;
    assert_eq!(reports_only.len(), 5);
    assert!(!reports_only.contains(&incident));
    // The month's statistics by channel count the case apart from the residents' reports.
    let by_channel = operator
        .get_scoreboard(v1::GetScoreboardRequest {
            area_code: String::new(),
            month: String::new(),
            kind: v1::ScoreboardKind::Channels as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let proactive_row = by_channel
        .rows
        .iter()
        .find(|r| r.code == "proactive")
        .expect("a proactive row");
    assert_eq!(
        (proactive_row.name.as_str(), proactive_row.sample),
        ("主动治理", 1)
    );
    let listed = operator
        .list_hotspots(v1::ListHotspotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.stored,
        "the month's proposal was stored by the adoption"
    );
    assert_eq!(listed.hotspots[0].key, topic.key);
    assert_eq!(listed.hotspots[0].adopted_incident_id, incident.to_string());

    // The normal lifecycle: report-ins, the assistant's part, a milestone by the lead.
    let lead_liaison = format!("li-{lead}");
    let assist_liaison = format!("li-{assist}");
    stack.ok(&lead_liaison, incident, accept(1)).await;
    stack.ok(&assist_liaison, incident, accept(2)).await;
    stack
        .ok(
            &lead_liaison,
            incident,
            Body::CompleteMilestone(v1::CompleteMilestone {
                milestone: 1,
                note: "已排查12栋楼".into(),
            }),
        )
        .await;
    let refused = stack
        .command(
            &assist_liaison,
            incident,
            Body::CompleteMilestone(v1::CompleteMilestone {
                milestone: 2,
                note: String::new(),
            }),
        )
        .await;
    assert!(
        matches!(&refused.outcome, Some(v1::command_reply::Outcome::Error(e)) if e.code == v1::CommandErrorCode::Forbidden as i32),
        "{refused:?}"
    );
    stack
        .ok(
            &assist_liaison,
            incident,
            Body::SubmitAssist(v1::SubmitAssist {
                task_id: "2".into(),
                note: "住建部门意见：督促物业整改".into(),
            }),
        )
        .await;
    // A month on, the second milestone is overdue on the screen.
    stack.advance(TimeDelta::days(31));
    stack.settle().await;
    let detail = stack.detail(incident).await;
    let case = detail.proactive.as_ref().unwrap();
    assert!(case.milestones[0].done_at.is_some() && !case.milestones[0].overdue);
    assert!(case.milestones[1].overdue);
    assert!(case.may_complete_milestones);
    stack
        .ok(
            "op-150602",
            incident,
            Body::CompleteMilestone(v1::CompleteMilestone {
                milestone: 2,
                note: String::new(),
            }),
        )
        .await;
    stack
        .ok(
            &lead_liaison,
            incident,
            Body::Resolve(v1::Resolve {
                task_id: "1".into(),
                note: "物业整改完成".into(),
                photo_ids: Vec::new(),
            }),
        )
        .await;
    let level = detail.incident.as_ref().unwrap().level;
    let level = match v1::Level::try_from(level).unwrap() {
        v1::Level::Street => "street",
        v1::Level::District => "district",
        v1::Level::City => "city",
        other => panic!("{other:?}"),
    };
    stack.wait_state(incident, "resolved", level).await;
    // The grid's worker follows it up at the place: closed.
    stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
    stack.wait_state(incident, "closed", level).await;
    let kinds = stack.timeline(incident).await;
    for kind in [
        "incident.adopted",
        "task.dispatched",
        "task.accepted",
        "incident.milestone_done",
        "task.assist_submitted",
        "task.resolved",
        "incident.resolved",
        "incident.verified",
        "incident.closed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    // Closed, the topic may be adopted again (a new case), and nothing of it leaked.
    assert!(stack.service_violations().is_empty());
}
