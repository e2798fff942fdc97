//! `ListHotspots` (每月一题, docs/proactive.md): the month's topics from the history that real
//! reports made through intake, on a manual clock moved month by month; a one-off burst not
//! proposed; `GetHotspotChange`, a topic's before and after; each token kept to its area; bad
//! requests refused.

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeDelta};
use tonic::Code;
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

/// The first grid of `district` and its centre.
fn grid_in(district: &str) -> (String, (f64, f64)) {
    whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .find(|u| u.level() == Level::Grid && u.code.as_str().starts_with(district))
        .map(|u| (u.code.to_string(), (u.lat, u.lon)))
        .expect("a grid")
}

fn located(mut report: v1::Report, (lat, lon): (f64, f64)) -> v1::Report {
    report.location = Some(v1::Location {
        lat,
        lon,
        address: "3号楼".into(),
    });
    report
}

#[tokio::test]
async fn the_months_topics_come_from_the_history_and_stay_in_their_area() {
    let ordos = FixedOffset::east_opt(8 * 3600).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 5)
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(10, 0, 0).unwrap())
        .and_local_timezone(ordos)
        .unwrap()
        .to_utc();
    let stack = Stack::builder().with_query().at(start).start().await;
    let (steady, spot) = grid_in("150602");
    let (bursty, burst_spot) = grid_in("150603");

    // Property service complaints at one compound, twice in each of five months (January–May):
    // the second report of a month joins the first's incident (duplicates within 24 h).
    let mut incidents = Vec::new();
    for month in 0..5 {
        if month > 0 {
            stack.advance(TimeDelta::days(30));
            stack.settle().await;
        }
        for n in 0..2 {
            let id = format!("hs-steady-{month}-{n}");
            let offset = f64::from(n) * 0.0002;
            let report = stack.filed(&id, &steady, "property.service", v1::Urgency::Normal);
            incidents.push(
                stack
                    .file(&located(report, (spot.0 + offset, spot.1)))
                    .await,
            );
        }
    }
    // In May, a one-off burst of garbage complaints in another district: ten in an hour.
    for n in 0..10 {
        let id = format!("hs-burst-{n}");
        let report = stack.filed(&id, &bursty, "sanitation.garbage", v1::Urgency::Normal);
        stack.file(&located(report, burst_spot)).await;
    }
    // Early June.
    stack.advance(TimeDelta::days(28));
    stack.settle().await;

    let mut city = stack.client();
    let listed = city
        .list_hotspots(v1::ListHotspotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.month, "2026-06");
    assert_eq!(
        (listed.from_month.as_str(), listed.to_month.as_str()),
        ("2024-06", "2026-05")
    );
    assert_eq!(listed.area_code, "150600");
    assert_eq!(listed.reports, 20);
    let [topic] = listed.hotspots.as_slice() else {
        panic!("one topic, the compound's, not the burst: {listed:#?}");
    };
    assert_eq!(topic.grid_code, steady);
    assert_eq!(topic.group, "property");
    assert_eq!(topic.group_name, "物业管理");
    // Steady since January, and new: the last three months against the nine before, when there
    // were two months of it, is a growth too.
    assert_eq!(topic.kinds, ["steady", "growing"]);
    assert!((topic.growth - (2.0 + 0.25) / (4.0 / 9.0 + 0.25)).abs() < 1e-9);
    assert!(topic.has_centre);
    assert!((topic.lat - spot.0).abs() < 0.001 && (topic.lon - spot.1).abs() < 0.001);
    assert_eq!(topic.categories.len(), 1);
    assert_eq!(
        (topic.categories[0].key.as_str(), topic.categories[0].count),
        ("property.service", 10)
    );
    assert_eq!(
        (topic.recent_reports, topic.active_months, topic.incidents),
        (10, 5, 5)
    );
    let months: Vec<(&str, u64)> = topic
        .months
        .iter()
        .map(|m| (m.key.as_str(), m.count))
        .collect();
    assert_eq!(months.len(), 24);
    assert_eq!(
        &months[19..],
        [
            ("2026-01", 2),
            ("2026-02", 2),
            ("2026-03", 2),
            ("2026-04", 2),
            ("2026-05", 2)
        ]
    );
    assert!(months[..19].iter().all(|m| m.1 == 0));
    // The evidence names the incidents behind it, newest first.
    let mut expected: Vec<String> = incidents.iter().rev().map(|i| i.to_string()).collect();
    expected.dedup();
    assert_eq!(topic.incident_ids, expected);
    let terms: Vec<&str> = topic.terms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        terms,
        ["volume", "repeats", "growth", "returns", "reach", "season"]
    );
    let sum: f64 = topic.terms.iter().map(|t| t.points).sum();
    assert!((sum - topic.score).abs() < 1e-9);
    assert!(topic.summary.contains("常发"), "{}", topic.summary);

    // The measure of the topic taken on in mid-March: January–February against April–May.
    let march_15 = NaiveDate::from_ymd_opt(2026, 3, 15)
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap())
        .and_local_timezone(ordos)
        .unwrap()
        .to_utc();
    let since = Some(whistle_proto::timestamp_from_unix_millis(
        march_15.timestamp_millis(),
    ));
    let change = city
        .get_hotspot_change(v1::GetHotspotChangeRequest {
            key: topic.key.clone(),
            since,
            months: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let side = |counts: &[v1::Count]| -> Vec<(String, u64)> {
        counts.iter().map(|c| (c.key.clone(), c.count)).collect()
    };
    assert_eq!(
        side(&change.before),
        [("2026-01".into(), 2), ("2026-02".into(), 2)]
    );
    assert_eq!(
        side(&change.after),
        [("2026-04".into(), 2), ("2026-05".into(), 2)]
    );
    assert_eq!(
        (change.before_per_month, change.after_per_month),
        (2.0, 2.0)
    );
    assert!(change.complete);
    assert_eq!(
        (change.grid_code.as_str(), change.group.as_str()),
        (steady.as_str(), "property")
    );
    // Three months after March reach into June and beyond: still counting.
    let counting = city
        .get_hotspot_change(v1::GetHotspotChangeRequest {
            key: topic.key.clone(),
            since,
            months: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        side(&counting.after)[..2],
        [("2026-04".into(), 2), ("2026-05".into(), 2)]
    );
    assert!(!counting.complete);

    // Proposed for March, only January and February are read: two months are no topic yet.
    let march = city
        .list_hotspots(v1::ListHotspotsRequest {
            month: "2026-03".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(march.reports, 4);
    assert!(march.hotspots.is_empty(), "{march:#?}");

    // The district's operator sees its own topic; the other district's sees none and may not
    // ask for the first's; a viewer of the grid sees it too.
    let own = command_center_on(
        stack.channel(),
        &stack.token_for(Role::Operator, "150602").await,
    )
    .list_hotspots(v1::ListHotspotsRequest::default())
    .await
    .unwrap()
    .into_inner();
    assert_eq!(own.area_code, "150602");
    assert_eq!(own.hotspots.len(), 1);
    let mut other = command_center_on(
        stack.channel(),
        &stack.token_for(Role::Operator, "150603").await,
    );
    let theirs = other
        .list_hotspots(v1::ListHotspotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.reports, 10);
    assert!(theirs.hotspots.is_empty(), "{theirs:#?}");
    let denied = other
        .list_hotspots(v1::ListHotspotsRequest {
            area_code: "150602".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = other
        .get_hotspot_change(v1::GetHotspotChangeRequest {
            key: topic.key.clone(),
            since,
            months: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let viewer = command_center_on(
        stack.channel(),
        &stack.token_for(Role::Viewer, &steady).await,
    )
    .list_hotspots(v1::ListHotspotsRequest::default())
    .await
    .unwrap()
    .into_inner();
    assert_eq!(viewer.hotspots.len(), 1);

    for bad in [
        v1::ListHotspotsRequest {
            month: "2026-13".into(),
            ..Default::default()
        },
        v1::ListHotspotsRequest {
            page_size: 101,
            ..Default::default()
        },
        v1::ListHotspotsRequest {
            area_code: "15060".into(),
            ..Default::default()
        },
    ] {
        let status = city.list_hotspots(bad.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
    }
    for bad in [
        v1::GetHotspotChangeRequest {
            key: format!("{steady}/Property"),
            since,
            months: 3,
        },
        v1::GetHotspotChangeRequest {
            key: topic.key.clone(),
            since: None,
            months: 3,
        },
        v1::GetHotspotChangeRequest {
            key: topic.key.clone(),
            since,
            months: 13,
        },
    ] {
        let status = city.get_hotspot_change(bad.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
    }
    // Without a token, nothing.
    let anonymous =
        whistle_proto::v1::command_center_client::CommandCenterClient::new(stack.channel())
            .list_hotspots(v1::ListHotspotsRequest::default())
            .await
            .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}
