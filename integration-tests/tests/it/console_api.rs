//! The RPCs the web console needs beyond the command screens' reads: `GetSession`, `GetTrend`,
//! `GetGridMap`, `ListTasks`, `ListMyReports` and `Reporting.SubmitReport`, each through a tonic
//! client over the network against a real dispatch, with every role's scope.

use std::collections::BTreeMap;

use chrono::{DurationRound as _, TimeDelta};
use tonic::Code;
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

/// A report as the form sends it: reporter, grid and time left to the token and the server.
fn form_report(id: &str, category: &str) -> v1::SubmitReportRequest {
    v1::SubmitReportRequest {
        report: Some(v1::Report {
            report_id: id.into(),
            category: category.into(),
            urgency: v1::Urgency::Urgent as i32,
            title: "楼道堆放杂物".into(),
            description: "影响消防通道".into(),
            ..Default::default()
        }),
    }
}

fn outcome(response: &v1::SubmitReportResponse) -> v1::ReportOutcome {
    v1::ReportOutcome::try_from(response.outcome).unwrap()
}

#[tokio::test]
async fn a_grid_worker_reports_over_grpc_sees_each_outcome_and_follows_up() {
    let stack = Stack::command_center().await;
    let (_, [grid, other_grid, _], _, _) = places();
    let token = stack.token_for(Role::GridWorker, &grid).await;
    let mut form = reporting(&stack, &token).await;

    // A new report opens an incident in the token's grid, as the token's worker.
    let opened = form
        .submit_report(form_report("form-1", "heating.no_heat"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&opened), v1::ReportOutcome::Incident, "{opened:?}");
    assert!(opened.stream_sequence > 0);
    let incident = opened.incident.clone().unwrap();
    assert_eq!(incident.grid_code, grid);
    let incident_id: Uuid = incident.incident_id.parse().unwrap();
    assert_eq!(
        stack
            .incident_column::<String>(incident_id, "reporter_id")
            .await,
        format!("gw-{grid}")
    );

    // A retry after a lost answer gets the same outcome and files nothing twice.
    let retried = form
        .submit_report(form_report("form-1", "heating.no_heat"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.incident, opened.incident);
    assert_eq!(stack.count("SELECT count(*) FROM incidents").await, 1);
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 1);

    // The same problem again from the same grid attaches to the open incident.
    stack.advance(TimeDelta::minutes(2));
    let attached = form
        .submit_report(form_report("form-2", "heating.no_heat"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&attached), v1::ReportOutcome::Attached);
    assert_eq!(
        attached.incident.as_ref().unwrap().incident_id,
        incident.incident_id
    );

    // A report intake refuses comes back with intake's reason.
    stack.advance(TimeDelta::minutes(1));
    let rejected = form
        .submit_report(form_report("form-3", "weather.too_cold"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&rejected), v1::ReportOutcome::Rejected);
    assert_eq!(rejected.rejected_reason, "unknown_category");
    assert!(rejected.rejected_message.contains("weather.too_cold"));

    // What the token does not allow is refused before anything is published.
    let published = stream_len(stack.js(), "WHISTLE_REPORTS").await;
    let mut other_grids = form_report("form-4", "heating.no_heat");
    other_grids.report.as_mut().unwrap().grid_code = other_grid.clone();
    let mut someone_else = form_report("form-5", "heating.no_heat");
    someone_else.report.as_mut().unwrap().reporter_id = format!("gw-{other_grid}");
    for (request, expected) in [
        (other_grids, Code::PermissionDenied),
        (someone_else, Code::PermissionDenied),
        (
            form_report("bad id", "heating.no_heat"),
            Code::InvalidArgument,
        ),
        (
            v1::SubmitReportRequest { report: None },
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(code(form.submit_report(request).await), expected);
    }
    let operator = reporting(&stack, stack.token())
        .await
        .submit_report(form_report("form-6", "heating.no_heat"))
        .await;
    assert_eq!(code(operator), Code::PermissionDenied);
    assert_eq!(stream_len(stack.js(), "WHISTLE_REPORTS").await, published);

    // The worker's reports, newest first, each with what became of it.
    let mine = stack_reports(&stack, &token).await;
    let summary: Vec<(&str, bool, &str)> = mine
        .iter()
        .map(|r| (r.report_id.as_str(), r.attached, r.rejected_reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("form-3", false, "unknown_category"),
            ("form-2", true, ""),
            ("form-1", false, ""),
        ]
    );
    assert_eq!(mine[2].category_name, "室内温度不达标/停暖");
    assert_eq!(
        mine[1].incident.as_ref().unwrap().incident_id,
        incident.incident_id
    );
    // Another grid's worker sees none of them; an operator has no reports of its own.
    let other = stack.token_for(Role::GridWorker, &other_grid).await;
    assert!(stack_reports(&stack, &other).await.is_empty());
    let operator_reports = command_center(&stack.query_url(), stack.token())
        .await
        .list_my_reports(v1::ListMyReportsRequest::default())
        .await;
    assert_eq!(code(operator_reports), Code::PermissionDenied);

    // Resolved at the community, then followed up (回访) by the worker through Dispatch.Verify.
    stack
        .ok(
            &format!("hd-{}", unit(&grid, Level::Community)),
            incident_id,
            resolve(),
        )
        .await;
    dispatch(&stack, &token)
        .await
        .verify(v1::Command {
            command_id: Uuid::now_v7().to_string(),
            incident_id: incident_id.to_string(),
            body: Some(satisfied()),
            ..Default::default()
        })
        .await
        .expect("the grid worker follows up its own incident");
    let followed = stack_reports(&stack, &token).await;
    assert_eq!(followed[2].satisfaction, v1::Satisfaction::Satisfied as i32);
    assert_eq!(
        followed[2].incident.as_ref().unwrap().status,
        v1::IncidentStatus::Closed as i32
    );
}

async fn stack_reports(stack: &Stack, token: &str) -> Vec<v1::MyReport> {
    command_center(&stack.query_url(), token)
        .await
        .list_my_reports(v1::ListMyReportsRequest::default())
        .await
        .expect("ListMyReports")
        .into_inner()
        .reports
}

#[tokio::test]
async fn a_liaison_lists_its_own_department_s_tasks_by_deadline() {
    let stack = Stack::command_center().await;
    let (_, [g1, g2, _], _, _) = places();
    // Two whistled incidents with a petitions task each, the second whistled a minute later.
    let mut incidents = Vec::new();
    for (i, grid) in [&g1, &g2].into_iter().enumerate() {
        let incident = stack
            .file(&stack.filed(
                &format!("tasks-{i}"),
                grid,
                "petition.collective",
                v1::Urgency::Urgent,
            ))
            .await;
        stack
            .ok(
                &format!("hd-{}", unit(grid, Level::Street)),
                incident,
                escalate(),
            )
            .await;
        incidents.push(incident);
        stack.advance(TimeDelta::minutes(1));
    }
    let petitions = dept(&g1, "petitions");
    let liaison = stack.token_for(Role::Liaison, &petitions).await;
    let client = command_center(&stack.query_url(), &liaison).await;
    let list = |request: v1::ListTasksRequest| {
        let mut client = client.clone();
        async move { client.list_tasks(request).await }
    };

    let open = list(v1::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.department_code, petitions);
    assert!(!open.department_name.is_empty());
    let order: Vec<String> = open
        .tasks
        .iter()
        .map(|t| t.incident.as_ref().unwrap().incident_id.clone())
        .collect();
    assert_eq!(
        order,
        [incidents[0].to_string(), incidents[1].to_string()],
        "soonest report-in deadline first"
    );
    let first = &open.tasks[0];
    let state = first.task.as_ref().unwrap();
    assert_eq!(state.department_code, petitions);
    assert_eq!(state.status, v1::TaskStatus::Dispatched as i32);
    assert!(!first.description.is_empty());

    // Accepted tasks move to their resolve deadline; a status filter narrows the list.
    stack
        .ok(&format!("li-{petitions}"), incidents[1], accept(1))
        .await;
    let accepted = list(v1::ListTasksRequest {
        statuses: vec![v1::TaskStatus::Accepted as i32],
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(accepted.tasks.len(), 1);
    assert_eq!(
        accepted.tasks[0].incident.as_ref().unwrap().incident_id,
        incidents[1].to_string()
    );

    // Scope: a liaison names no other department; an operator must name one; a grid worker has
    // no workbench; bad filters are refused.
    let other = list(v1::ListTasksRequest {
        department_code: dept(&g1, "urban_management"),
        ..Default::default()
    })
    .await;
    assert_eq!(code(other), Code::PermissionDenied);
    let mut operator = command_center(&stack.query_url(), stack.token()).await;
    assert_eq!(
        code(operator.list_tasks(v1::ListTasksRequest::default()).await),
        Code::InvalidArgument
    );
    let by_operator = operator
        .list_tasks(v1::ListTasksRequest {
            department_code: petitions.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_operator.tasks.len(), 2);
    let unknown = operator
        .list_tasks(v1::ListTasksRequest {
            department_code: "150602-nothing".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);
    let grid_worker = stack.token_for(Role::GridWorker, &g1).await;
    let refused = command_center(&stack.query_url(), &grid_worker)
        .await
        .list_tasks(v1::ListTasksRequest::default())
        .await;
    assert_eq!(code(refused), Code::PermissionDenied);
    for bad in [
        v1::ListTasksRequest {
            statuses: vec![0],
            ..Default::default()
        },
        v1::ListTasksRequest {
            page_size: 501,
            ..Default::default()
        },
    ] {
        assert_eq!(code(list(bad).await), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn trend_and_grid_map_count_what_the_overview_counts_per_hour_and_per_grid() {
    let stack = Stack::command_center().await;
    let (district, [g1, g2, g3], other_district, far_grid) = places();
    // Reports in three hours: two now-2h, one now-1h, two now (one in the other district).
    let mut n = 0;
    let mut file = |grid: &str, category: &str| {
        n += 1;
        stack.filed(&format!("trend-{n}"), grid, category, v1::Urgency::Normal)
    };
    let early = [file(&g1, "heating.no_heat"), file(&g2, "heating.no_heat")];
    let middle = file(&g3, "heating.no_heat");
    let late = [
        file(&g1, "municipal.manhole"),
        file(&far_grid, "heating.no_heat"),
    ];
    let start = stack.now();
    for report in &early {
        stack.file(report).await;
    }
    stack.advance(TimeDelta::hours(1));
    let resolved = stack.file(&middle).await;
    stack
        .ok(
            &format!("hd-{}", unit(&g3, Level::Community)),
            resolved,
            resolve(),
        )
        .await;
    stack.advance(TimeDelta::hours(1));
    for report in &late {
        stack.file(report).await;
    }
    stack.caught_up().await;

    let client = stack.client();
    let trend = |area: &str, hours: u32| {
        let mut client = client.clone();
        let area = area.to_owned();
        async move {
            client
                .get_trend(v1::GetTrendRequest {
                    area_code: area,
                    hours,
                })
                .await
        }
    };
    let day = trend("", 0).await.unwrap().into_inner();
    assert_eq!(day.area_code, "150600");
    assert_eq!(day.buckets.len(), 24);
    let last_three: Vec<(u64, u64)> = day.buckets[21..]
        .iter()
        .map(|b| (b.reported, b.resolved))
        .collect();
    assert_eq!(last_three, [(2, 0), (1, 1), (2, 0)]);
    assert!(day.buckets[..21]
        .iter()
        .all(|b| b.reported + b.resolved == 0));
    assert_eq!(
        at(&day.buckets[21].start),
        start.duration_trunc(TimeDelta::hours(1)).unwrap()
    );
    let in_district = trend(&district, 3).await.unwrap().into_inner();
    let counts: Vec<(u64, u64)> = in_district
        .buckets
        .iter()
        .map(|b| (b.reported, b.resolved))
        .collect();
    assert_eq!(counts, [(2, 0), (1, 1), (1, 0)]);
    assert_eq!(code(trend("", 169).await), Code::InvalidArgument);

    // The map: every grid of the area, each with GetOverview's figures for that grid.
    let map = client
        .clone()
        .get_grid_map(v1::GetGridMapRequest {
            area_code: district.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let grids_in_district = grids_by_district()[&district].len();
    assert_eq!(map.cells.len(), grids_in_district);
    let open: BTreeMap<&str, u64> = map
        .cells
        .iter()
        .filter(|c| c.open_incidents > 0)
        .map(|c| (c.grid_code.as_str(), c.open_incidents))
        .collect();
    assert_eq!(
        open,
        BTreeMap::from([(g1.as_str(), 2), (g2.as_str(), 1)]),
        "g3's incident is resolved, far_grid is in {other_district}"
    );
    for cell in &map.cells {
        assert!(cell.lat > 37.0 && cell.lat < 41.0 && cell.lon > 106.0 && cell.lon < 112.0);
        assert!(!cell.name.is_empty());
    }
    let g1_overview = stack.overview(&g1, None).await;
    assert_eq!(open[g1.as_str()], g1_overview.open_incidents);
    let viewer = stack.token_for(Role::Viewer, &district).await;
    let outside = command_center(&stack.query_url(), &viewer)
        .await
        .get_grid_map(v1::GetGridMapRequest {
            area_code: other_district.clone(),
        })
        .await;
    assert_eq!(code(outside), Code::PermissionDenied);
}

#[tokio::test]
async fn get_session_tells_each_role_what_it_is() {
    let stack = Stack::command_center().await;
    let (district, [grid, ..], _, _) = places();
    let petitions = dept(&grid, "petitions");
    let cases = [
        (
            Role::Operator,
            "150600".to_owned(),
            "150600",
            "",
            "op-150600",
        ),
        (Role::Viewer, district.clone(), district.as_str(), "", ""),
        (
            Role::Liaison,
            petitions.clone(),
            district.as_str(),
            petitions.as_str(),
            "",
        ),
        (Role::GridWorker, grid.clone(), grid.as_str(), "", ""),
    ];
    for (role, scope, area, department, person) in cases {
        let token = stack.token_for(role, &scope).await;
        let session = command_center(&stack.query_url(), &token)
            .await
            .get_session(v1::GetSessionRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(session.role, role.as_str());
        assert_eq!(session.area_code, area);
        assert!(!session.area_name.is_empty());
        assert_eq!(session.department_code, department);
        assert_eq!(session.department_name.is_empty(), department.is_empty());
        let expected_person = match role {
            Role::Viewer => String::new(),
            Role::Liaison => format!("li-{petitions}"),
            Role::GridWorker => format!("gw-{grid}"),
            Role::Operator => person.to_owned(),
            Role::Open311 | Role::Hotline | Role::Device => {
                unreachable!("keys of the Open311 door and devices have no session")
            }
            Role::Leader | Role::Member => unreachable!("asked below"),
        };
        assert_eq!(session.person_id, expected_person);
        assert_eq!(session.person_name.is_empty(), expected_person.is_empty());
    }
    // A Party member's and a paired leader's tokens learn whose they are too, so the console opens
    // their pages (#/offers, #/paired); a member's name is masked there as everywhere. Both read
    // the city's public catalogue and org tree, which those pages name things with.
    let community = unit(&grid, Level::Community);
    let member = stack.member_token("pm-session", &community).await;
    seed_leaders(stack.pool()).await;
    let leader = leader_token(stack.pool(), "ld-150602-01", "150602").await;
    for (token, role, area, person, name) in [
        (&member, "member", community.as_str(), "pm-session", "党***"),
        (&leader, "leader", "150602", "ld-150602-01", ""),
    ] {
        let mut center = command_center(&stack.query_url(), token).await;
        let session = center
            .get_session(v1::GetSessionRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (session.role.as_str(), session.area_code.as_str()),
            (role, area)
        );
        assert!(!session.area_name.is_empty());
        assert_eq!(session.person_id, person);
        if name.is_empty() {
            assert!(!session.person_name.is_empty() && !session.person_name.contains('*'));
        } else {
            assert_eq!(session.person_name, name);
        }
        center
            .get_catalogue(v1::GetCatalogueRequest {})
            .await
            .unwrap();
        center
            .get_org_tree(v1::GetOrgTreeRequest {
                root_code: community.clone(),
                depth: 1,
            })
            .await
            .unwrap();
        // Still nothing else of the command centre.
        assert_eq!(
            code(center.get_overview(v1::GetOverviewRequest::default()).await),
            Code::PermissionDenied
        );
    }
    let anonymous = command_center(&stack.query_url(), "wst_nope")
        .await
        .get_session(v1::GetSessionRequest {})
        .await;
    assert_eq!(code(anonymous), Code::Unauthenticated);
}

#[tokio::test]
async fn the_console_s_files_are_served_at_the_root_beside_grpc() {
    let console = TempDir::new("console").unwrap();
    std::fs::write(
        console.path().join("index.html"),
        "<!doctype html><title>Whistle</title><script src=app.js></script>",
    )
    .unwrap();
    let script = format!("console.log({:?});\n", "指挥大屏 ".repeat(2_000));
    std::fs::write(console.path().join("app.js"), &script).unwrap();
    let dir = console.path().to_owned();
    let stack = Stack::builder()
        .with_query_options(move |options| options.console_dir = Some(dir))
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    let addr = stack.query_addr();

    let index = http_get(addr, "/").await;
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("text/html"), "{index}");
    assert!(index.ends_with("<script src=app.js></script>"), "{index}");
    let asset = http_get(addr, "/app.js").await;
    assert!(asset.contains("text/javascript"), "{asset}");
    assert!(asset.ends_with(&script));
    // Gzipped for a browser that asks, plain otherwise.
    let gzipped = http_get_with(addr, "/app.js", "Accept-Encoding: gzip\r\n").await;
    assert!(gzipped.contains("content-encoding: gzip"), "{gzipped}");
    assert!(gzipped.len() < script.len() / 2);
    // A content-named file is cached for a year; the page, and files named otherwise, revalidated.
    std::fs::write(console.path().join("app-3F2A9C1B.js"), &script).unwrap();
    let named = http_get(addr, "/app-3F2A9C1B.js").await;
    assert!(
        named.contains(&format!(
            "cache-control: {}",
            whistle_query::CACHE_IMMUTABLE
        )),
        "{named}"
    );
    for path in ["/", "/app.js", "/no/such/page"] {
        let response = http_get(addr, path).await;
        assert!(
            response.contains(&format!(
                "cache-control: {}",
                whistle_query::CACHE_REVALIDATE
            )),
            "{path}: {response}"
        );
    }
    // Any other path is the page itself (its routes live after `#`).
    assert!(http_get(addr, "/screen/whatever")
        .await
        .ends_with("<script src=app.js></script>"));
    // gRPC and the metrics share the listener.
    assert!(http_get(addr, "/metrics").await.contains("whistle_query_"));
    let session = stack
        .client()
        .get_session(v1::GetSessionRequest {})
        .await
        .unwrap();
    assert_eq!(session.into_inner().role, "operator");

    // A directory without index.html is refused at start with what to do.
    let empty = TempDir::new("empty-console").unwrap();
    let refused = whistle_query::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: stack.db().query_url.clone(),
        nats_url: stack.server().url(),
        nkey_file: Some(stack.secrets().seed_path(whistle_auth::Service::Query)),
        console_dir: Some(empty.path().to_owned()),
        ..Default::default()
    }
    .build()
    .await;
    let Err(error) = refused else {
        panic!("a console directory without index.html was accepted")
    };
    assert!(error.to_string().contains("npm run build"), "{error}");
}

#[tokio::test]
async fn without_a_console_the_root_says_how_to_get_one() {
    let stack = Stack::command_center().await;
    let root = http_get(stack.query_addr(), "/").await;
    assert!(root.starts_with("HTTP/1.1 404"), "{root}");
    assert!(root.contains("--console-dir"), "{root}");
}
