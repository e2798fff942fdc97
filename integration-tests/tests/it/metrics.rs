//! Dispatch's operator endpoint (`--http-listen`): Prometheus metrics that move with its work and
//! agree with `$SRV.STATS`, and a readiness probe that follows its NATS connections.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use chrono::{TimeDelta, Utc};
use uuid::Uuid;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};
use whistle_wire::names::{ServiceRequest, DISPATCH_SERVICE};

use crate::harness::*;

/// The samples of a Prometheus text exposition by series (`name{labels}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The status code and body of a GET.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = http_get(addr, path).await;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, body.to_owned())
}

async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// A series' value, 0 while it has no sample yet (a family before its first label set).
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or_default()
}

async fn srv_stats(stack: &Stack) -> serde_json::Value {
    let answer = stack
        .admin()
        .request(ServiceRequest::Stats.subject(DISPATCH_SERVICE), "".into())
        .await
        .expect("stats answered");
    let stats: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    stats["endpoints"][0]["data"].clone()
}

#[tokio::test]
async fn dispatch_metrics_follow_reports_commands_and_timers_and_readyz_follows_nats() {
    let mut stack = Stack::builder()
        .at(Utc::now())
        .with_dispatch_options(|options| {
            options.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            options.metrics_sample_interval = Duration::from_millis(100);
        })
        .start()
        .await;
    let addr = stack.dispatch().http_addr.expect("dispatch serves HTTP");
    assert_eq!(get(addr, "/livez").await.0, 200);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(addr, "/nothing").await.0, 404);
    let before = scrape(addr).await;
    assert_eq!(before["whistle_dispatch_reports_acked_total"], 0.0);
    assert_eq!(
        before["whistle_dispatch_intake_batch_duration_seconds_count"],
        0.0
    );

    // Two reports become incidents, a third is rejected; a command is applied, another refused.
    let grids = grids();
    let incident = stack
        .report("metrics-1", &grids[12], "heating.no_heat")
        .await;
    stack
        .report("metrics-2", &grids[40], "heating.no_heat")
        .await;
    let mut unknown = report("metrics-rejected", &grids[12]);
    unknown.category = "weather.too_cold".into();
    stack.publish(&unknown).await;
    let operator = format!("op-{}", &grids[12][..6]);
    let comment = || {
        Body::Comment(v1::Comment {
            text: "巡查记录".into(),
        })
    };
    stack.ok(&operator, incident, comment()).await;
    let missing = stack.command(&operator, Uuid::now_v7(), comment()).await;
    assert!(
        matches!(missing.outcome, Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::NotFound as i32),
        "{missing:?}"
    );
    // The community's window runs out: both incidents' timers fire, late by the minute.
    stack.advance(TimeDelta::hours(4) + TimeDelta::minutes(1));
    stack.wait_state(incident, "handling", "street").await;
    stack.relayed().await;

    let last = std::cell::RefCell::new(HashMap::new());
    let settled = eventually("the counters and the sampled depths", WAIT, || async {
        let scraped = scrape(addr).await;
        let last = &mut *last.borrow_mut();
        *last = scraped;
        value(last, "whistle_dispatch_reports_acked_total") == 3.0
            && value(last, "whistle_dispatch_timers_fired_total") >= 2.0
            && value(last, "whistle_dispatch_outbox_depth_events") == 0.0
            && value(last, "whistle_dispatch_timers_due") == 0.0
            && value(last, "whistle_dispatch_intake_backlog_reports") == 0.0
            && value(last, "whistle_dispatch_intake_unacked_reports") == 0.0
    })
    .await;
    let m = last.into_inner();
    settled.unwrap_or_else(|e| panic!("{e}: {m:#?}"));
    assert_eq!(m["whistle_dispatch_incidents_opened_total"], 2.0);
    assert_eq!(m["whistle_dispatch_reports_rejected_total"], 1.0);
    let batches = m["whistle_dispatch_intake_batch_duration_seconds_count"];
    assert!(batches >= 1.0, "{m:#?}");
    assert_eq!(
        m["whistle_dispatch_intake_batch_duration_seconds_bucket{le=\"+Inf\"}"],
        batches
    );
    let commands = |outcome: &str| {
        value(
            &m,
            &format!(
                "whistle_dispatch_command_duration_seconds_count{{verb=\"comment\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!((commands("ok"), commands("not_found")), (1.0, 1.0));
    // Each firing is timed, every one at least the minute the clock jumped past its deadline late.
    let fired = m["whistle_dispatch_timers_fired_total"];
    assert_eq!(m["whistle_dispatch_timer_lateness_seconds_count"], fired);
    assert_eq!(
        m["whistle_dispatch_timer_lateness_seconds_bucket{le=\"51.2\"}"],
        0.0
    );
    assert!(
        m["whistle_dispatch_events_published_total"] >= 5.0,
        "{m:#?}"
    );
    assert_eq!(m["whistle_dispatch_intake_lease_held"], 1.0);
    assert!(m["whistle_dispatch_intake_lease_epoch"] >= 1.0);
    assert_eq!(m["whistle_dispatch_intake_lanes"], 2.0);
    assert_eq!(m["whistle_dispatch_intake_takeovers_total"], 1.0);

    // `$SRV.STATS` reads the same counters.
    let stats = srv_stats(&stack).await;
    assert_eq!(stats["reports_acked"], 3, "{stats}");
    assert_eq!(stats["reports_rejected"], 1);
    assert_eq!(stats["batches"].as_f64(), Some(batches));
    assert_eq!(stats["timers_fired"].as_f64(), Some(fired));
    assert_eq!(stats["intake_lease_held"], true);

    // Without NATS the replica is alive but not ready, and ready again once NATS is back.
    stack.kill_nats();
    eventually("/readyz answers 503 without NATS", WAIT, || async {
        get(addr, "/readyz").await.0 == 503
    })
    .await
    .unwrap();
    let (_, reason) = get(addr, "/readyz").await;
    assert!(reason.contains("NATS"), "{reason}");
    assert_eq!(get(addr, "/livez").await.0, 200);
    assert_eq!(get(addr, "/metrics").await.0, 200);
    stack.start_nats_again().await;
    eventually("/readyz answers 200 with NATS back", WAIT, || async {
        get(addr, "/readyz").await.0 == 200
    })
    .await
    .unwrap();
    // A graceful stop closes the listener with the rest.
    stack.stop_dispatch().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn without_http_listen_dispatch_opens_no_listener() {
    let mut stack = Stack::start().await;
    assert_eq!(stack.dispatch().http_addr, None);
    // Stopped, not dropped mid-start: a connection still authenticating when the test's runtime
    // stops would hold up the database's drop until PostgreSQL's authentication_timeout.
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn dispatch_is_alive_but_not_ready_while_postgres_is_down_and_loses_no_report() {
    let bindir = whistle_testkit::find_pg_bindir()
        .expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("readyz-pg").unwrap();
    let mut primary = whistle_testkit::PgCluster::start(&bindir, &work.path().join("primary"))
        .await
        .unwrap();
    let stack = Stack::builder()
        .on_database_server(primary.url("postgres"))
        .at(Utc::now())
        .with_dispatch_options(|options| {
            options.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        })
        .start()
        .await;
    let addr = stack.dispatch().http_addr.expect("dispatch serves HTTP");
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));

    // PostgreSQL gone (killed, as by a power cut): alive, not ready, and saying why.
    primary.stop_immediate().unwrap();
    eventually("/readyz answers 503 without PostgreSQL", WAIT, || async {
        get(addr, "/readyz").await.0 == 503
    })
    .await
    .unwrap();
    let (_, reason) = get(addr, "/readyz").await;
    assert!(reason.contains("PostgreSQL"), "{reason}");
    assert_eq!(get(addr, "/livez").await.0, 200);
    // A report sent meanwhile waits in its stream: intake acks nothing it has not recorded.
    let grids = grids();
    stack.publish(&report("pg-down-1", &grids[7])).await;

    // Back after crash recovery: ready again, and the report recorded once.
    primary.start_again().await.unwrap();
    eventually(
        "/readyz answers 200 with PostgreSQL back",
        WAIT * 3,
        || async { get(addr, "/readyz").await.0 == 200 },
    )
    .await
    .unwrap();
    eventually(
        "the report sent during the outage recorded",
        WAIT * 3,
        || async {
            stack
                .count("SELECT count(*) FROM reports WHERE report_id = 'pg-down-1'")
                .await
                == 1
        },
    )
    .await
    .unwrap();
    assert_eq!(
        stack
            .count("SELECT count(*) FROM rejected_reports WHERE report_id = 'pg-down-1'")
            .await,
        0
    );
}
