//! Reading incidents back: the org tree, filtered lists, stable pages, refused requests.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self};
use whistle_wire::Clock as _;

use crate::harness::*;

#[tokio::test]
async fn org_tree_from_the_city_and_below_a_street() {
    let stack = Stack::command_center().await;
    let mut client = stack.client();
    let dataset = whistle_domain::ordos::dataset();
    let count = |level: Level| dataset.units.iter().filter(|u| u.level() == level).count();

    let city = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: String::new(),
            depth: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(city.code, "150600");
    assert_eq!(city.name, "鄂尔多斯市");
    assert_eq!(city.level, v1::Level::City as i32);
    assert_eq!(city.children.len(), count(Level::District));
    assert!(city.children.iter().all(|d| d.children.is_empty()));
    assert!(city.children.windows(2).all(|w| w[0].code < w[1].code));

    let whole = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "150600".into(),
            depth: 10,
        })
        .await
        .unwrap()
        .into_inner();
    fn walk(node: &v1::OrgNode, seen: &mut BTreeMap<i32, usize>) {
        *seen.entry(node.level).or_default() += 1;
        for child in &node.children {
            assert!(child.code.starts_with(&node.code[..4]));
            walk(child, seen);
        }
    }
    let mut seen = BTreeMap::new();
    walk(&whole, &mut seen);
    for level in Level::ALL {
        let proto = match level {
            Level::Grid => v1::Level::Grid,
            Level::Community => v1::Level::Community,
            Level::Street => v1::Level::Street,
            Level::District => v1::Level::District,
            Level::City => v1::Level::City,
        };
        assert_eq!(seen[&(proto as i32)], count(level), "{level:?}");
    }

    let (_, [grid, ..], _, _) = places();
    let street_code = unit(&grid, Level::Street);
    let street = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: street_code.clone(),
            depth: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let expected = dataset
        .units
        .iter()
        .find(|u| u.code.as_str() == street_code)
        .unwrap();
    assert_eq!(street.name, expected.name);
    assert_eq!(street.classification, expected.classification);
    assert_eq!((street.lat, street.lon), (expected.lat, expected.lon));
    assert!(!street.children.is_empty());
    for community in &street.children {
        assert_eq!(community.level, v1::Level::Community as i32);
        assert!(community.code.starts_with(&street_code));
        assert!(!community.children.is_empty());
        assert!(community
            .children
            .iter()
            .all(|g| g.level == v1::Level::Grid as i32 && g.children.is_empty()));
    }
    let root_only = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: grid.clone(),
            depth: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((root_only.code, root_only.children.len()), (grid, 0));

    let bad = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "15060".into(),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("root_code"), "{}", bad.message());
    let missing = client
        .get_org_tree(v1::GetOrgTreeRequest {
            root_code: "150699".into(),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn list_incidents_filters_by_area_status_category_level_urgency_overdue_and_text() {
    let stack = Stack::command_center().await;
    let (district, [a_grid, _, c_grid], other_district, b_grid) = places();

    let mut a = stack.filed("list-a", &a_grid, "heating.no_heat", v1::Urgency::Urgent);
    a.title = "3号楼暖气片不热 Radiator cold".into();
    a.description = "室内湿度100%，温度12度".into();
    let a = stack.file(&a).await;
    stack.advance(TimeDelta::seconds(1));
    let mut b = stack.filed(
        "list-b",
        &b_grid,
        "municipal.street_light",
        v1::Urgency::Normal,
    );
    b.title = "路灯不亮".into();
    b.description = "晚上整条路没有照明".into();
    b.location = Some(v1::Location {
        lat: 39.6085,
        lon: 109.7813,
        address: "Kangbashi Road 7".into(),
    });
    let b = stack.file(&b).await;
    stack.advance(TimeDelta::seconds(1));
    let mut c = stack.filed(
        "list-c",
        &c_grid,
        "petition.collective",
        v1::Urgency::Emergency,
    );
    c.title = "群体上访苗头".into();
    c.description = "多名业主聚集".into();
    let c = stack.file(&c).await;
    // The street handles the collective petition itself and resolves it.
    stack
        .ok(
            &format!("hd-{}", unit(&c_grid, Level::Street)),
            c,
            resolve(),
        )
        .await;

    let all = v1::ListIncidentsRequest::default;
    assert_eq!(stack.ids(all()).await, [c, b, a], "newest first");

    // The summary of the incident with a location.
    let page = stack.list(all()).await;
    let summary = &page.incidents[1];
    assert_eq!(page.next_page_token, "");
    assert_eq!(summary.title, "路灯不亮");
    assert_eq!(summary.category, "municipal.street_light");
    assert_eq!(summary.category_name, "路灯损坏");
    assert_eq!(summary.urgency, v1::Urgency::Normal as i32);
    assert_eq!(summary.status, v1::IncidentStatus::Handling as i32);
    assert_eq!(summary.level, v1::Level::Community as i32);
    assert_eq!(summary.district_code, other_district);
    assert_eq!(summary.street_code, unit(&b_grid, Level::Street));
    assert_eq!(summary.community_code, unit(&b_grid, Level::Community));
    assert_eq!(summary.grid_code, b_grid);
    assert_eq!(summary.report_count, 1);
    assert!(!summary.overdue);
    assert_eq!(
        summary.version,
        stack.incident_column::<i64>(b, "version").await as u64
    );
    assert_eq!(
        at(&summary.due_at),
        stack.incident_column::<DateTime<Utc>>(b, "due_at").await
    );
    assert_eq!(
        at(&summary.reported_at).timestamp_millis(),
        stack
            .incident_column::<DateTime<Utc>>(b, "reported_at")
            .await
            .timestamp_millis()
    );
    let location = summary.location.as_ref().expect("a location");
    assert_eq!(
        (location.lat, location.lon, location.address.as_str()),
        (39.6085, 109.7813, "Kangbashi Road 7")
    );
    assert!(page.incidents[0].location.is_none());
    assert_eq!(
        page.incidents[0].status,
        v1::IncidentStatus::Resolved as i32
    );

    let area = |code: &str| v1::ListIncidentsRequest {
        area_code: code.into(),
        ..all()
    };
    assert_eq!(stack.ids(area(&district)).await, [c, a]);
    assert_eq!(stack.ids(area(&unit(&a_grid, Level::Street))).await, [a]);
    assert_eq!(stack.ids(area(&unit(&a_grid, Level::Community))).await, [a]);
    assert_eq!(stack.ids(area(&b_grid)).await, [b]);
    assert_eq!(stack.ids(area("150600")).await, [c, b, a]);

    let statuses = |s: &[v1::IncidentStatus]| v1::ListIncidentsRequest {
        statuses: s.iter().map(|&s| s as i32).collect(),
        ..all()
    };
    assert_eq!(
        stack.ids(statuses(&[v1::IncidentStatus::Resolved])).await,
        [c]
    );
    assert_eq!(
        stack
            .ids(statuses(&[
                v1::IncidentStatus::Handling,
                v1::IncidentStatus::Resolved
            ]))
            .await,
        [c, b, a]
    );
    assert!(stack
        .ids(statuses(&[v1::IncidentStatus::Reported]))
        .await
        .is_empty());

    let categories = v1::ListIncidentsRequest {
        categories: vec!["municipal.street_light".into()],
        ..all()
    };
    assert_eq!(stack.ids(categories).await, [b]);

    let levels = |l: &[v1::Level]| v1::ListIncidentsRequest {
        levels: l.iter().map(|&l| l as i32).collect(),
        ..all()
    };
    assert_eq!(stack.ids(levels(&[v1::Level::Street])).await, [c]);
    assert_eq!(stack.ids(levels(&[v1::Level::Community])).await, [b, a]);

    let urgencies = |u: &[v1::Urgency]| v1::ListIncidentsRequest {
        urgencies: u.iter().map(|&u| u as i32).collect(),
        ..all()
    };
    assert_eq!(stack.ids(urgencies(&[v1::Urgency::Emergency])).await, [c]);
    assert_eq!(
        stack
            .ids(urgencies(&[v1::Urgency::Normal, v1::Urgency::Urgent]))
            .await,
        [b, a]
    );

    let text = |t: &str| v1::ListIncidentsRequest {
        text: t.into(),
        ..all()
    };
    assert_eq!(stack.ids(text("radiator")).await, [a], "title, any case");
    assert_eq!(stack.ids(text("KANGBASHI")).await, [b], "address");
    assert_eq!(stack.ids(text("业主")).await, [c], "description");
    assert_eq!(stack.ids(text("%")).await, [a], "% is literal");
    assert_eq!(stack.ids(text("_")).await, [] as [Uuid; 0], "_ is literal");
    assert!(stack.ids(text("no such words")).await.is_empty());

    let combined = v1::ListIncidentsRequest {
        area_code: district.clone(),
        statuses: vec![v1::IncidentStatus::Handling as i32],
        ..all()
    };
    assert_eq!(stack.ids(combined).await, [a]);

    let overdue_only = || v1::ListIncidentsRequest {
        overdue_only: true,
        ..all()
    };
    assert!(stack.ids(overdue_only()).await.is_empty());
    // The heating incident's 24-hour SLA runs out; the street light has 7 days, and the resolved
    // petition is no longer late.
    stack.advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    stack.settle().await;
    assert_eq!(stack.ids(overdue_only()).await, [a]);
    let page = stack.list(overdue_only()).await;
    assert!(page.incidents[0].overdue);
    assert!(stack.incident_column::<bool>(a, "overdue").await);
}

#[tokio::test]
async fn pages_skip_and_repeat_nothing_while_incidents_are_inserted() {
    let stack = Stack::command_center().await;
    let grids = grids();
    const INITIAL: usize = 45;
    for i in 0..INITIAL {
        if i % 10 == 0 {
            // Runs of equal created_at exercise the id tie-break of the sort key.
            stack.advance(TimeDelta::seconds(1));
        }
        let report = stack.filed(
            &format!("page-{i}"),
            &grids[i * 3],
            "heating.no_heat",
            v1::Urgency::Normal,
        );
        stack.publish(&report).await;
    }
    eventually("the first incidents", WAIT, || async {
        stack.count("SELECT count(*) FROM incidents").await == INITIAL as i64
    })
    .await
    .unwrap();
    let initial: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM incidents")
        .fetch_all(stack.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();

    // Meanwhile a second grid worker keeps filing reports, concurrently with the paging.
    let stop = CancellationToken::new();
    let background = {
        let (js, clock, stop, grids) = (
            stack.js().clone(),
            stack.clock().clone(),
            stop.clone(),
            grids.clone(),
        );
        tokio::spawn(async move {
            let reporter = Reporter { js };
            let mut sent = 0;
            while !stop.is_cancelled() && sent < 150 {
                let mut filed = report(&format!("page-bg-{sent}"), &grids[2 + sent * 3]);
                filed.category = "heating.no_heat".into();
                filed.occurred_at = None;
                filed.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
                    clock.now().timestamp_millis(),
                ));
                reporter.publish(&filed).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        })
    };

    let mut seen = Vec::<Uuid>::new();
    let mut token = String::new();
    let mut pages = 0;
    let mut inserted = 0;
    loop {
        let page = stack
            .list(v1::ListIncidentsRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await;
        pages += 1;
        assert!(page.incidents.len() <= 7);
        seen.extend(
            page.incidents
                .iter()
                .map(|i| i.incident_id.parse::<Uuid>().unwrap()),
        );
        // And the test files some between the pages, recorded before the next page is read.
        for _ in 0..2 {
            let report = stack.filed(
                &format!("page-new-{inserted}"),
                &grids[1 + inserted * 3],
                "heating.no_heat",
                v1::Urgency::Normal,
            );
            stack.file(&report).await;
            inserted += 1;
        }
        stack.advance(TimeDelta::milliseconds(300));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    stop.cancel();
    let sent_meanwhile = background.await.unwrap();
    assert!(sent_meanwhile > 0);

    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated: {seen:?}");
    let missing: Vec<&Uuid> = initial.difference(&unique).collect();
    assert!(missing.is_empty(), "rows were skipped: {missing:?}");
    assert!(pages >= INITIAL.div_ceil(7));
    // And in the listing order, newest first.
    let keys: Vec<(DateTime<Utc>, Uuid)> =
        sqlx::query_as("SELECT created_at, id FROM incidents WHERE id = ANY($1)")
            .bind(&seen)
            .fetch_all(stack.pool())
            .await
            .unwrap();
    let key_of: BTreeMap<Uuid, DateTime<Utc>> = keys.into_iter().map(|(c, id)| (id, c)).collect();
    let ordered: Vec<(DateTime<Utc>, Uuid)> = seen.iter().map(|id| (key_of[id], *id)).collect();
    assert!(
        ordered.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ordered:?}"
    );

    // The default page is 50.
    let total = stack.count("SELECT count(*) FROM incidents").await;
    assert!(total > 50, "{total}");
    let first = stack.list(v1::ListIncidentsRequest::default()).await;
    assert_eq!(first.incidents.len(), 50);
    assert!(!first.next_page_token.is_empty());
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_and_unknown_incidents_not_found() {
    let stack = Stack::command_center().await;
    let mut client = stack.client();
    let list = |request: v1::ListIncidentsRequest| {
        let mut client = stack.client();
        async move { code(client.list_incidents(request).await) }
    };
    let status = client
        .list_incidents(v1::ListIncidentsRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "page_size 501 is above the maximum of 500"
    );
    assert_eq!(
        list(v1::ListIncidentsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await,
        Code::Ok
    );
    for bad in [
        v1::ListIncidentsRequest {
            page_token: "bm90IGEgdG9rZW4".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            page_token: "%%%".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            area_code: "15O602".into(),
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            statuses: vec![v1::IncidentStatus::Unspecified as i32],
            ..Default::default()
        },
        v1::ListIncidentsRequest {
            urgencies: vec![7],
            ..Default::default()
        },
    ] {
        assert_eq!(list(bad.clone()).await, Code::InvalidArgument, "{bad:?}");
    }
    let area = client
        .list_overdue(v1::ListOverdueRequest {
            area_code: "1506021".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(area.code(), Code::InvalidArgument);
    assert!(
        area.message().contains("area_code") && area.message().contains("6, 9, 12 or 15 digits"),
        "{}",
        area.message()
    );
    let window = client
        .get_overview(v1::GetOverviewRequest {
            area_code: String::new(),
            window: Some(prost_types::Duration {
                seconds: -60,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(window.code(), Code::InvalidArgument);

    let unknown = client
        .get_incident(v1::GetIncidentRequest {
            incident_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = client
        .get_incident(v1::GetIncidentRequest {
            incident_id: "INC-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}
