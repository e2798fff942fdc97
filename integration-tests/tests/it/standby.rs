//! Reads from a streaming standby (issue 22, item 1; docs/query.md, "Reads from a standby"): a
//! private PostgreSQL primary with a hot standby made by `pg_basebackup --write-recovery-conf`,
//! and the query service given both. Shown: a current standby serves another person's reads,
//! which equal the primary's; with replay paused, the person who just acted through the service,
//! and one who acted straight over NATS once their event is read, read their action from the
//! primary while the others read the stale standby and the lag gauge grows; past the bound every read goes to the primary; replay resumed, the standby serves again,
//! the actor included; the standby stopped, reads still answer, from the primary.

use std::time::Duration;

use sqlx::PgPool;
use whistle_proto::v1::{self, command::Body};
use whistle_store::tokens::Role;
use whistle_testkit::{find_pg_bindir, PgCluster};

use crate::harness::*;

/// The bound the test runs with: long enough for the few steps taken while the standby is
/// paused but within it, short enough to wait out.
const MAX_LAG: Duration = Duration::from_secs(4);

/// `url` on another port of the same host.
fn on_port(url: &str, from: u16, to: u16) -> String {
    let replaced = url.replacen(&format!(":{from}/"), &format!(":{to}/"), 1);
    assert_ne!(replaced, url, "{url} names no port {from}");
    replaced
}

/// The value of an unlabelled metric, or of the series with these labels.
async fn metric(stack: &Stack, series: &str) -> f64 {
    let text = http_get(stack.query_addr(), "/metrics").await;
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().ok())?
        })
        .unwrap_or(0.0)
}

async fn served(stack: &Stack) -> (f64, f64) {
    (
        metric(stack, r#"whistle_query_reads_total{pool="primary"}"#).await,
        metric(stack, r#"whistle_query_reads_total{pool="standby"}"#).await,
    )
}

/// Runs `read` and says which pool served it, from the counters (the test sends nothing else).
async fn by_pool<T>(
    stack: &Stack,
    read: impl std::future::Future<Output = T>,
) -> (T, &'static str) {
    let before = served(stack).await;
    let answer = read.await;
    let after = served(stack).await;
    let pool = match (after.0 - before.0, after.1 - before.1) {
        (p, 0.0) if p >= 1.0 => "primary",
        (0.0, s) if s >= 1.0 => "standby",
        other => panic!("one read counted {other:?} (primary, standby)"),
    };
    (answer, pool)
}

async fn until_metric(stack: &Stack, series: &str, want: f64) {
    eventually(&format!("{series} = {want}"), WAIT, || async {
        metric(stack, series).await == want
    })
    .await
    .unwrap();
}

/// Task 1's status as `client`'s token reads it through GetIncident.
async fn task_status(
    client: &mut v1::command_center_client::CommandCenterClient<Authed>,
    incident: uuid::Uuid,
) -> i32 {
    let detail = client
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .expect("GetIncident")
        .into_inner();
    detail
        .tasks
        .iter()
        .filter_map(|t| t.state.as_ref())
        .find(|s| s.task_id == 1)
        .expect("task 1")
        .status
}

async fn superuser(cluster: &PgCluster) -> PgPool {
    whistle_store::connect(&cluster.url("postgres"), 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn reads_go_to_a_current_standby_except_one_s_own_writes_and_past_the_lag_bound() {
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("standby").unwrap();
    let primary = PgCluster::start(&bindir, &work.path().join("primary"))
        .await
        .unwrap();
    let mut standby = primary
        .standby(&work.path().join("standby"), "whistle_standby")
        .await
        .unwrap();
    let mut stack = Stack::builder()
        .on_database_server(primary.url("postgres"))
        .with_query()
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    // The stack's first query service reads only the primary: the reference answers.
    let reference = stack.take_query();
    let mut reference_client = command_center(&reference.url(), stack.token()).await;
    let replica_url = on_port(&stack.db().query_url, primary.port, standby.port);
    stack
        .start_query_with(|options| {
            options.replica_database_url = Some(replica_url);
            options.max_replica_lag_ms = MAX_LAG.as_millis() as u64;
        })
        .await;

    let (_, [grid, ..], _, _) = places();
    let incident = stack.whistled("standby-1", &grid).await;
    let tasks = stack.tasks(incident).await;
    let department = &tasks.iter().find(|t| t.0 == 1).expect("task 1").1;
    let liaison = stack.token_for(Role::Liaison, department).await;
    let mut liaison_reads = command_center(&stack.query_url(), &liaison).await;
    let mut liaison_acts = dispatch(&stack, &liaison).await;
    // The stack's city operator (person op-150600) acts only later; a viewer never acts.
    let mut operator = stack.client();
    let viewer_token = stack.token_for(Role::Viewer, "150600").await;
    let mut viewer = command_center(&stack.query_url(), &viewer_token).await;
    let list = v1::ListIncidentsRequest {
        area_code: "150600".into(),
        ..Default::default()
    };

    // (a) The standby current: the operator's list is the standby's, equal to the primary's.
    until_metric(&stack, "whistle_query_replica_usable", 1.0).await;
    let primary_page = reference_client
        .list_incidents(list.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!primary_page.incidents.is_empty());
    // The standby replays the whistle a moment after the primary commits it.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (page, pool) = by_pool(&stack, operator.list_incidents(list.clone())).await;
        assert_eq!(pool, "standby");
        if page.unwrap().into_inner() == primary_page {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby's list never equalled the primary's"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dispatched = v1::TaskStatus::Dispatched as i32;
    let accepted = v1::TaskStatus::Accepted as i32;
    let (status, pool) = by_pool(&stack, task_status(&mut liaison_reads, incident)).await;
    assert_eq!((status, pool), (dispatched, "standby"));

    // (b) Replay paused: the liaison accepts through the service and reads the acceptance from
    // the primary; the operator, who did nothing, reads the stale standby; the lag grows.
    let standby_admin = superuser(&standby).await;
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&standby_admin)
        .await
        .unwrap();
    until_metric(&stack, "whistle_query_replica_replay_paused", 1.0).await;
    let paused_at = std::time::Instant::now();
    liaison_acts
        .accept(door_command(incident, accept(1)))
        .await
        .expect("the liaison accepts task 1");
    let (status, pool) = by_pool(&stack, task_status(&mut liaison_reads, incident)).await;
    assert_eq!(
        (status, pool),
        (accepted, "primary"),
        "the liaison sees their own acceptance"
    );
    let (status, pool) = by_pool(&stack, task_status(&mut operator, incident)).await;
    assert_eq!(
        (status, pool),
        (dispatched, "standby"),
        "another person reads the standby, which has not replayed the acceptance"
    );
    // The operator comments straight over NATS, not through this service: once its event is
    // read from WHISTLE_EVENTS, the operator's reads go to the primary, the only one with it.
    stack
        .ok(
            "op-150600",
            incident,
            Body::Comment(v1::Comment {
                text: "请尽快处理".into(),
            }),
        )
        .await;
    eventually("the operator reads their own comment", WAIT, || {
        let mut operator = operator.clone();
        async move {
            let detail = operator
                .get_incident(v1::GetIncidentRequest {
                    incident_id: incident.to_string(),
                })
                .await
                .expect("GetIncident")
                .into_inner();
            detail
                .timeline
                .iter()
                .any(|e| e.kind == "incident.commented" && e.actor_id == "op-150600")
        }
    })
    .await
    .unwrap();
    // The viewer, who did nothing, still reads the standby: it has neither.
    let (status, pool) = by_pool(&stack, task_status(&mut viewer, incident)).await;
    assert!(
        paused_at.elapsed() < MAX_LAG,
        "the steps above took {:?}, past the bound: the machine is too slow for this test",
        paused_at.elapsed()
    );
    assert_eq!((status, pool), (dispatched, "standby"));
    // The next sample (every 250 ms) finds the standby behind the acceptance.
    eventually("a lag measured", WAIT, || async {
        metric(&stack, "whistle_query_replica_lag_seconds").await > 0.0
    })
    .await
    .unwrap();
    let lag = metric(&stack, "whistle_query_replica_lag_seconds").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = metric(&stack, "whistle_query_replica_lag_seconds").await;
    assert!(
        later > lag && lag > 0.0,
        "the lag grows: {lag} then {later}"
    );
    assert!(metric(&stack, "whistle_query_replica_lag_bytes").await > 0.0);
    assert!(
        metric(&stack, "whistle_query_replica_read_your_writes_marks").await >= 2.0,
        "the liaison and the operator wait for the standby"
    );

    // (c) Past the bound nobody reads the standby: the operator sees the acceptance too.
    until_metric(&stack, "whistle_query_replica_usable", 0.0).await;
    assert!(metric(&stack, "whistle_query_replica_lag_seconds").await > MAX_LAG.as_secs_f64());
    let (status, pool) = by_pool(&stack, task_status(&mut viewer, incident)).await;
    assert_eq!((status, pool), (accepted, "primary"));
    let (page, pool) = by_pool(&stack, viewer.list_incidents(list.clone())).await;
    assert_eq!(pool, "primary");
    assert_eq!(
        page.unwrap().into_inner(),
        reference_client
            .list_incidents(list.clone())
            .await
            .unwrap()
            .into_inner()
    );

    // Replay resumed: the standby catches up and serves again, the liaison's reads included
    // once it holds their acceptance (their mark is dropped).
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby_admin)
        .await
        .unwrap();
    until_metric(&stack, "whistle_query_replica_usable", 1.0).await;
    until_metric(&stack, "whistle_query_replica_read_your_writes_marks", 0.0).await;
    assert!(metric(&stack, "whistle_query_replica_lag_seconds").await <= MAX_LAG.as_secs_f64());
    let (status, pool) = by_pool(&stack, task_status(&mut liaison_reads, incident)).await;
    assert_eq!((status, pool), (accepted, "standby"));

    // (d) The standby stopped: reads still answer, from the primary (at once, or after the
    // standby's failure sends a read there), and the standby is left alone.
    standby_admin.close().await;
    standby.stop_immediate().unwrap();
    let page = operator
        .list_incidents(list.clone())
        .await
        .expect("a read right after the standby stopped answers")
        .into_inner();
    let expected = reference_client
        .list_incidents(list.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page, expected);
    until_metric(&stack, "whistle_query_replica_usable", 0.0).await;
    let (page, pool) = by_pool(&stack, operator.list_incidents(list.clone())).await;
    assert_eq!(pool, "primary");
    assert_eq!(page.unwrap().into_inner(), expected);
    let (status, pool) = by_pool(&stack, task_status(&mut liaison_reads, incident)).await;
    assert_eq!((status, pool), (accepted, "primary"));

    stack.stop_query().await;
    reference.stop().await;
}
