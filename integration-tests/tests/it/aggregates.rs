//! The live aggregates behind `GetOverview` and `GetTrend`, end to end: a load of reports over
//! every district, commands on many incidents and deadlines fired by moving the clock, through a
//! real dispatch; then `GetOverview` and `GetTrend` (from the aggregates) must equal their SQL
//! references for the whole city, a district, a street, a community and a grid, over several
//! windows and hour counts — also after the query service restarted mid-way and rebuilt them
//! while reports kept coming. One incident resolved, reopened and resolved again, within an hour
//! and across an hour's end, pins the trend's resolved buckets to exact figures.

use std::time::Duration;

use chrono::{DurationRound as _, TimeDelta};
use tonic::Code;
use uuid::Uuid;
use whistle_domain::{AreaCode, Level};
use whistle_proto::v1::{self, command::Body};

use whistle_store::tokens::Role;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// Categories with every first level (grid to district) and SLA class (2 h to 15 days).
const CATEGORIES: [&str; 10] = [
    "municipal.manhole",
    "fire.blocked_access",
    "petition.collective",
    "gas.leak",
    "heating.no_heat",
    "water.outage",
    "noise.residential",
    "sanitation.garbage",
    "dispute.wage_arrears",
    "property.unlicensed",
];

const URGENCIES: [v1::Urgency; 3] = [
    v1::Urgency::Normal,
    v1::Urgency::Urgent,
    v1::Urgency::Emergency,
];

/// A deterministic spread of 0..10 for the n-th item of a round.
fn pick(n: usize, round: u64) -> u64 {
    (n as u64 * 2_654_435_761 + round * 40_503 + 7) % 10
}

/// `count` reports over every district, filed now: the grids taken in turn from each district
/// (other grids and categories for each `batch`), every 20th report a duplicate of the one before
/// (same grid and category).
fn reports(stack: &Stack, batch: usize, count: usize) -> Vec<v1::Report> {
    let districts: Vec<Vec<String>> = grids_by_district().into_values().collect();
    let mut out: Vec<v1::Report> = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("ld-{batch}-{n}");
        let report = match out.last() {
            Some(last) if n % 20 == 19 => {
                let urgency = v1::Urgency::try_from(last.urgency).unwrap();
                stack.filed(&id, &last.grid_code, &last.category, urgency)
            }
            _ => {
                let grids = &districts[n % districts.len()];
                let grid = &grids[(n * 7 + batch * 13) % grids.len()];
                let category = CATEGORIES[(n / districts.len() + n + batch) % CATEGORIES.len()];
                stack.filed(&id, grid, category, URGENCIES[n % URGENCIES.len()])
            }
        };
        out.push(report);
    }
    out
}

/// Publishes reports (stored in WHISTLE_REPORTS, not yet recorded by intake).
async fn publish(reporter: &Reporter, reports: &[v1::Report]) {
    for report in reports {
        reporter.publish(report).await;
    }
}

/// Waits until intake recorded the reports.
async fn recorded(stack: &Stack, reports: &[v1::Report]) {
    let ids: Vec<&str> = reports.iter().map(|r| r.report_id.as_str()).collect();
    eventually("the reports recorded", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reports WHERE report_id = ANY($1)")
            .bind(&ids)
            .fetch_one(stack.pool())
            .await
            .unwrap()
            == ids.len() as i64
    })
    .await
    .unwrap();
}

/// Sends a command; dispatch may refuse it (the incident moved on meanwhile).
async fn attempt(stack: &Stack, actor: &str, incident: Uuid, body: Body) -> bool {
    let reply = stack.command(actor, incident, &body).await;
    matches!(reply.outcome, Some(v1::command_reply::Outcome::Ok(_)))
}

/// One round of work on six incidents in ten: operators resolve or escalate (the whistle at the
/// street) what the levels handle, departments report in and resolve their tasks, grid workers
/// follow up — satisfied, basically satisfied or not (but never for one incident in four).
/// Returns how many commands succeeded.
async fn work(stack: &Stack, round: u64) -> usize {
    let incidents: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, status, grid_code FROM incidents ORDER BY id")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    let mut done = 0;
    for (n, (id, status, grid)) in incidents.iter().enumerate() {
        let choice = pick(n, round);
        if choice >= 6 {
            continue;
        }
        let operator = format!("op-{}", &grid[..6]);
        let (actor, body) = match status.as_str() {
            "handling" if choice < 3 => (
                operator,
                Body::Resolve(v1::Resolve {
                    task_id: String::new(),
                    note: "已处理".into(),
                    photo_ids: Vec::new(),
                }),
            ),
            "handling" => (
                operator,
                Body::Escalate(v1::Escalate {
                    assisting_department_codes: Vec::new(),
                    note: "吹哨".into(),
                    department_codes: Vec::new(),
                }),
            ),
            "whistled" | "accepted" => {
                let task: Option<(i32, String, String)> = sqlx::query_as(
                    "SELECT task_id, department_code, status FROM tasks
                     WHERE incident_id = $1 AND status IN ('dispatched', 'supervised', 'accepted')
                     ORDER BY task_id LIMIT 1",
                )
                .bind(id)
                .fetch_optional(stack.pool())
                .await
                .unwrap();
                let Some((task, department, task_status)) = task else {
                    continue;
                };
                let liaison = format!("li-{department}");
                if task_status == "accepted" {
                    let resolve = v1::Resolve {
                        task_id: task.to_string(),
                        note: "办结".into(),
                        photo_ids: Vec::new(),
                    };
                    (liaison, Body::Resolve(resolve))
                } else {
                    let accept = v1::Accept {
                        task_id: task.to_string(),
                        note: String::new(),
                    };
                    (liaison, Body::Accept(accept))
                }
            }
            // One in four is never followed up: it closes unverified after 72 hours.
            "resolved" if n % 4 == 0 => continue,
            "resolved" => {
                let satisfaction = match choice {
                    0 | 1 => v1::Satisfaction::Satisfied,
                    2 | 3 => v1::Satisfaction::BasicallySatisfied,
                    _ => v1::Satisfaction::Unsatisfied,
                };
                let verify = v1::Verify {
                    satisfaction: satisfaction as i32,
                    note: String::new(),
                    tracking_code: String::new(),
                };
                (format!("gw-{grid}"), Body::Verify(verify))
            }
            _ => continue,
        };
        if attempt(stack, &actor, *id, body).await {
            done += 1;
        }
    }
    done
}

/// Moves the clock `steps` times by `step`, letting dispatch fire what falls due each time.
async fn pass(stack: &Stack, steps: u32, step: TimeDelta) {
    for _ in 0..steps {
        stack.advance(step);
        stack.settle().await;
    }
}

/// The area codes holding the most incidents: a district, a street in it, a community in that,
/// a grid in that.
async fn busiest(stack: &Stack) -> Vec<String> {
    let mut prefix = String::new();
    let mut out = Vec::new();
    for len in [6, 9, 12, 15] {
        let code: String = sqlx::query_scalar(
            "SELECT left(grid_code, $1) FROM incidents WHERE grid_code LIKE $2 || '%'
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        )
        .bind(len)
        .bind(&prefix)
        .fetch_one(stack.pool())
        .await
        .unwrap();
        prefix.clone_from(&code);
        out.push(code);
    }
    out
}

/// Hour counts the trends are compared over: the default (0, a day), within an hour, a day and
/// an hour, the longest.
const TREND_HOURS: [u32; 6] = [0, 1, 3, 24, 25, whistle_query::MAX_TREND_HOURS];

/// Once the aggregates caught up: `GetTrend` equals the SQL trend for every area and hour count.
/// Returns the trends, in the order of `areas` then [`TREND_HOURS`].
async fn trend_matches_sql(stack: &Stack, areas: &[String], when: &str) -> Vec<v1::Trend> {
    stack.caught_up().await;
    let mut client = stack.client();
    let mut out = Vec::new();
    for area_code in areas {
        let area: AreaCode = area_code.parse().unwrap();
        for hours in TREND_HOURS {
            let live = client
                .get_trend(v1::GetTrendRequest {
                    area_code: area_code.clone(),
                    hours,
                })
                .await
                .expect("GetTrend")
                .into_inner();
            let counted = if hours == 0 {
                whistle_query::DEFAULT_TREND_HOURS
            } else {
                hours
            };
            let reference = whistle_query::recount_trend(stack.pool(), &area, counted, stack.now())
                .await
                .expect("the SQL trend");
            assert_eq!(live, reference, "{when}: area {area_code}, {hours} hours");
            out.push(live);
        }
    }
    out
}

/// `ListOverdue` (the live late list) equals its SQL definition for every area, whole and cut to
/// a page.
async fn overdue_matches_sql(stack: &Stack, areas: &[String], when: &str) {
    let mut client = stack.client();
    for area_code in areas {
        let area: AreaCode = area_code.parse().unwrap();
        for page_size in [0, 3] {
            let live = client
                .list_overdue(v1::ListOverdueRequest {
                    area_code: area_code.clone(),
                    page_size,
                })
                .await
                .expect("ListOverdue")
                .into_inner();
            let limit = if page_size == 0 {
                whistle_query::MAX_OVERDUE_ITEMS
            } else {
                page_size
            };
            let reference = whistle_query::recount_overdue(stack.pool(), &area, limit, stack.now())
                .await
                .expect("the SQL late list");
            assert_eq!(
                live, reference,
                "{when}: area {area_code}, {page_size} items"
            );
        }
    }
}

/// Once the aggregates caught up: `GetOverview` equals `recount` for every area and window,
/// `GetTrend` the SQL trend for every area and hour count, and `ListOverdue` the SQL late list.
/// Returns the whole city's overview.
async fn matches_recount(stack: &Stack, when: &str) -> v1::Overview {
    stack.caught_up().await;
    // An empty area means the token's (the whole city here), so the city stands for both.
    let mut areas = vec!["150600".to_owned()];
    areas.extend(busiest(stack).await);
    let windows = [
        None,
        Some(TimeDelta::minutes(9)),
        Some(TimeDelta::days(1)),
        Some(TimeDelta::hours(36)),
        Some(TimeDelta::days(3)),
        Some(whistle_query::MAX_WINDOW),
    ];
    let mut client = stack.client();
    for area_code in &areas {
        let area: Option<AreaCode> = (!area_code.is_empty()).then(|| area_code.parse().unwrap());
        for window in windows {
            let live = client
                .get_overview(v1::GetOverviewRequest {
                    area_code: area_code.clone(),
                    window: window.map(|w| prost_types::Duration {
                        seconds: w.num_seconds(),
                        nanos: 0,
                    }),
                })
                .await
                .expect("GetOverview")
                .into_inner();
            let recounted = whistle_query::recount(
                stack.pool(),
                area_code,
                area.as_ref(),
                window.unwrap_or(whistle_query::DEFAULT_WINDOW),
                whistle_domain::policy::builtin("ordos")
                    .unwrap()
                    .scoring()
                    .ledger,
                stack.now(),
            )
            .await
            .expect("recount");
            assert_eq!(
                live, recounted,
                "{when}: area {area_code:?}, window {window:?}"
            );
        }
    }
    trend_matches_sql(stack, &areas, when).await;
    overdue_matches_sql(stack, &areas, when).await;
    stack.overview("", None).await
}

#[tokio::test]
async fn after_a_load_run_and_a_restart_the_aggregates_equal_a_sql_recount() {
    let mut stack = Stack::command_center().await;
    let t0 = stack.now();

    // Day one, 10:00 to 13:00: 150 reports, three rounds of work, deadlines of the emergencies.
    let first = reports(&stack, 0, 150);
    publish(stack.reporter(), &first).await;
    recorded(&stack, &first).await;
    assert!(work(&stack, 0).await > 0);
    pass(&stack, 6, TimeDelta::minutes(10)).await;
    work(&stack, 1).await;
    pass(&stack, 8, TimeDelta::minutes(15)).await;
    work(&stack, 2).await;
    assert_eq!(stack.now(), t0 + TimeDelta::hours(3));
    matches_recount(&stack, "day one").await;

    // The query service stops; overnight the utilities' deadlines pass and windows escalate.
    stack.stop_query().await;
    pass(&stack, 20, TimeDelta::hours(1)).await;
    work(&stack, 3).await;
    let second = reports(&stack, 1, 60);
    publish(stack.reporter(), &second).await;
    pass(&stack, 1, TimeDelta::minutes(30)).await;

    // It starts again while reports keep coming: the rebuild overlaps new events.
    let third = reports(&stack, 2, 60);
    let burst = {
        let reporter = Reporter {
            js: stack.js().clone(),
        };
        let third = third.clone();
        tokio::spawn(async move { publish(&reporter, &third).await })
    };
    stack.start_query().await;
    burst.await.unwrap();
    recorded(&stack, &second).await;
    recorded(&stack, &third).await;
    work(&stack, 4).await;
    stack.settle().await;
    matches_recount(&stack, "after the restart").await;

    // Two more days: follow-ups, closings unverified after 72 hours, late and missed report-ins.
    for round in 5..9 {
        pass(&stack, 3, TimeDelta::hours(4)).await;
        work(&stack, round).await;
    }
    assert_eq!(
        stack.now(),
        t0 + TimeDelta::days(3) - TimeDelta::minutes(30)
    );
    let last = reports(&stack, 3, 40);
    publish(stack.reporter(), &last).await;
    recorded(&stack, &last).await;
    work(&stack, 9).await;
    pass(&stack, 4, TimeDelta::minutes(20)).await;
    work(&stack, 10).await;
    stack.settle().await;
    let city = matches_recount(&stack, "day four").await;

    // The run reached every figure, so the equalities above compare something.
    let statuses: Vec<&str> = city.by_status.iter().map(|c| c.key.as_str()).collect();
    for status in [
        "handling",
        "whistled",
        "accepted",
        "resolved",
        "closed",
        "closed_unverified",
    ] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }
    assert!(city.by_level.len() >= 3, "{:?}", city.by_level);
    assert!(city.overdue > 0);
    let late = stack.overdue("150600").await;
    assert!(late.iter().any(|item| item.task_id.is_empty()), "{late:?}");
    assert!(late.iter().any(|item| !item.task_id.is_empty()), "{late:?}");
    assert!(city.reported_today > 0 && city.resolved_today > 0 && city.whistles_today > 0);
    let rates = city.rates.unwrap();
    assert!(rates.accepted_in_time > 0 && rates.accepted_in_time < rates.dispatched);
    assert!(rates.resolved_in_time > 0 && rates.resolved_in_time < rates.due);
    assert!(rates.satisfied > 0 && rates.satisfied < rates.followed_up);
    let today = stack
        .overview("", Some(TimeDelta::days(1)))
        .await
        .rates
        .unwrap();
    assert!(
        today.dispatched < rates.dispatched,
        "older days are outside a one-day window"
    );
}

#[tokio::test]
async fn overview_is_unavailable_until_the_aggregates_have_loaded() {
    // No streams yet (`whistle streams` not run) and no dispatch: the aggregates cannot load.
    let mut stack = Stack::builder()
        .without_dispatch()
        .without_streams()
        .with_query()
        .start()
        .await;
    let mut client = command_center(
        &stack.query_url(),
        &stack.token_for(Role::Viewer, "150600").await,
    )
    .await;
    let request = v1::GetOverviewRequest::default();
    let refused = client.get_overview(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("still loading"),
        "{}",
        refused.message()
    );
    assert_eq!(stack.query().aggregates.applied_sequence(), None);
    let trend = client.get_trend(v1::GetTrendRequest::default()).await;
    let refused = trend.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("still loading"),
        "{}",
        refused.message()
    );
    // Health does not wait for them: the other RPCs work meanwhile.
    client
        .get_org_tree(v1::GetOrgTreeRequest::default())
        .await
        .expect("GetOrgTree");

    stack.create_streams().await;
    stack.start_dispatch().await;
    eventually("the aggregates loaded", WAIT, || async {
        stack.query().aggregates.is_ready()
    })
    .await
    .unwrap();
    let overview = client.get_overview(request).await.unwrap().into_inner();
    assert_eq!((overview.open_incidents, overview.by_status.len()), (0, 0));
    let trend = client
        .get_trend(v1::GetTrendRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trend.buckets.len(), 24);
    assert!(trend.buckets.iter().all(|b| b.reported + b.resolved == 0));
}

#[tokio::test]
async fn the_aggregates_follow_the_stream_across_a_nats_restart() {
    let mut stack = Stack::command_center().await;
    let before = reports(&stack, 0, 45);
    publish(stack.reporter(), &before).await;
    recorded(&stack, &before).await;
    work(&stack, 0).await;
    pass(&stack, 3, TimeDelta::minutes(20)).await;
    matches_recount(&stack, "before the restart").await;

    // Ordered consumers live in the server's memory: the restart drops the query's, and it must
    // pick up where it stopped.
    stack.restart_nats().await;
    let after = reports(&stack, 1, 45);
    publish(stack.reporter(), &after).await;
    recorded(&stack, &after).await;
    work(&stack, 1).await;
    pass(&stack, 3, TimeDelta::hours(1)).await;
    work(&stack, 2).await;
    let city = matches_recount(&stack, "after the restart").await;
    let incidents = stack.count("SELECT count(*) FROM incidents").await;
    assert_eq!(
        city.by_status.iter().map(|c| c.count as i64).sum::<i64>(),
        incidents
    );
}

fn verify(satisfaction: v1::Satisfaction) -> Body {
    Body::Verify(v1::Verify {
        satisfaction: satisfaction as i32,
        note: String::new(),
        tracking_code: String::new(),
    })
}

/// The (reported, resolved) figures of the last `hours` buckets of an area's trend.
async fn last_buckets(stack: &Stack, area_code: &str, hours: usize) -> Vec<(u64, u64)> {
    stack.caught_up().await;
    let trend = stack
        .client()
        .get_trend(v1::GetTrendRequest {
            area_code: area_code.into(),
            hours: 0,
        })
        .await
        .expect("GetTrend")
        .into_inner();
    trend.buckets[trend.buckets.len() - hours..]
        .iter()
        .map(|b| (b.reported, b.resolved))
        .collect()
}

#[tokio::test]
async fn the_trend_counts_each_resolution_hour_once_and_a_restart_rebuilds_the_same_buckets() {
    // 10:40 in Ordos: the first resolutions fall before 11:00, the next after it.
    let mut stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos() + TimeDelta::minutes(40))
        .start()
        .await;
    let first_hour = stack.now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let (district, [g1, g2, g3], other_district, far_grid) = places();
    let handler = |grid: &str| format!("hd-{}", unit(grid, Level::Community));
    // Categories handled by the community; different ones in one grid, or intake would take the
    // later reports for duplicates.
    fn file(stack: &Stack, id: &str, grid: &str, category: &str) -> v1::Report {
        stack.filed(id, grid, category, v1::Urgency::Normal)
    }
    let again = stack
        .file(&file(&stack, "again", &g1, "heating.no_heat"))
        .await;
    let once = stack
        .file(&file(&stack, "once", &g1, "property.service"))
        .await;
    stack
        .file(&file(&stack, "open", &g2, "heating.no_heat"))
        .await;
    stack
        .file(&file(&stack, "far", &far_grid, "heating.no_heat"))
        .await;

    // `again`: resolved, reopened by an unsatisfied follow-up and resolved again within the hour;
    // `once`: resolved once in it.
    stack.advance(TimeDelta::minutes(5));
    stack.ok(&handler(&g1), again, resolve()).await;
    stack.advance(TimeDelta::minutes(5));
    let grid_worker = format!("gw-{g1}");
    stack
        .ok(&grid_worker, again, verify(v1::Satisfaction::Unsatisfied))
        .await;
    stack.advance(TimeDelta::minutes(5));
    stack.ok(&handler(&g1), again, resolve()).await;
    stack.ok(&handler(&g1), once, resolve()).await;

    // Past 11:00: `again` reopened and resolved a third time, and a report elsewhere.
    stack.advance(TimeDelta::minutes(10));
    stack.settle().await;
    stack
        .ok(&grid_worker, again, verify(v1::Satisfaction::Unsatisfied))
        .await;
    stack.ok(&handler(&g1), again, resolve()).await;
    stack
        .file(&file(&stack, "later", &g3, "heating.no_heat"))
        .await;
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM timeline WHERE incident_id = '{again}' AND kind = 'incident.resolved'"
            ))
            .await,
        3
    );

    assert_eq!(last_buckets(&stack, &g1, 2).await, [(2, 2), (0, 1)]);
    assert_eq!(last_buckets(&stack, &district, 2).await, [(3, 2), (1, 1)]);
    assert_eq!(
        last_buckets(&stack, "150600", 3).await,
        [(0, 0), (4, 2), (1, 1)]
    );
    let areas: Vec<String> = [
        "150600",
        district.as_str(),
        &g1[..9],
        &g1[..12],
        g1.as_str(),
        g2.as_str(),
        other_district.as_str(),
    ]
    .map(String::from)
    .to_vec();
    let before = trend_matches_sql(&stack, &areas, "after the resolutions").await;

    // A restart rebuilds the same buckets from PostgreSQL.
    stack.stop_query().await;
    stack.start_query().await;
    eventually("the aggregates reloaded", WAIT, || async {
        stack.query().aggregates.is_ready()
    })
    .await
    .unwrap();
    let after = trend_matches_sql(&stack, &areas, "after the restart").await;
    assert_eq!(before, after);

    // A week on, the first hour is the oldest of a week-long trend, then falls out of it.
    let week = TimeDelta::hours(i64::from(whistle_query::MAX_TREND_HOURS));
    stack.advance(first_hour + week - TimeDelta::minutes(1) - stack.now());
    stack.settle().await;
    let trends = trend_matches_sql(&stack, &areas, "a week on").await;
    let longest = &trends[TREND_HOURS.len() - 1];
    assert_eq!(at(&longest.buckets[0].start), first_hour);
    assert_eq!(
        (longest.buckets[0].reported, longest.buckets[0].resolved),
        (4, 2)
    );
    stack.advance(TimeDelta::minutes(2));
    stack.settle().await;
    stack
        .file(&file(&stack, "a-week-later", &g1, "noise.commercial"))
        .await;
    let trends = trend_matches_sql(&stack, &areas, "a week and an hour on").await;
    let longest = &trends[TREND_HOURS.len() - 1];
    assert_eq!(
        at(&longest.buckets[0].start),
        first_hour + TimeDelta::hours(1)
    );
    assert_eq!(last_buckets(&stack, &g1, 1).await, [(1, 0)]);
}
