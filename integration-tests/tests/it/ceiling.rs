//! `whistle bench ceiling` at tiny sizes: every part reports a positive figure, and the scratch
//! streams and tables are gone afterwards — also when a run fails half-way. No timing is asserted.

use std::time::Duration;

use futures::TryStreamExt;
use whistle_cli::{
    ceiling::{self, Options, Parts, Throughput, STREAM_PREFIX, TABLE_PREFIX},
    stats::{FindMaxPlan, RateSteps, StepBounds},
};

use whistle_auth::Service;

use crate::harness::{Count as _, NatsServer, Stack, TestDb};

fn tiny(stack: &Stack) -> Options {
    let (nats, db) = (stack.server(), stack.db());
    Options {
        nats_url: nats.url(),
        // The benchmark makes and deletes scratch streams: the admin's work.
        credentials: whistle_wire::Credentials::Nkey {
            seed_file: stack.secrets().seed_path(Service::Admin),
            service: Service::Admin.name().into(),
        },
        database_url: db.url.clone(),
        messages: 2_000,
        awaited: 100,
        rows: 1_000,
        single_rows: 50,
        reports: 1_000,
        rate: 200.0,
        latency_duration: Duration::from_secs(1),
        batch: 100,
        window: 32,
        message_size: 300,
        parts: Parts {
            nats: true,
            postgres: true,
            pipeline: true,
        },
        find_max: None,
        cpu: false,
    }
}

async fn scratch_streams(nats: &NatsServer) -> Vec<String> {
    let client = nats.connect().await.expect("connecting as admin");
    let names: Vec<String> = async_nats::jetstream::new(client)
        .stream_names()
        .try_collect()
        .await
        .expect("listing streams");
    names
        .into_iter()
        .filter(|n| n.starts_with(STREAM_PREFIX))
        .collect()
}

async fn scratch_tables(db: &TestDb) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE '{TABLE_PREFIX}%'"
    ))
    .await
}

fn positive(name: &str, figure: Option<Throughput>, count: u64) {
    let figure = figure.unwrap_or_else(|| panic!("{name} was not measured"));
    assert_eq!(figure.count, count, "{name}: {figure:?}");
    assert!(figure.seconds > 0.0, "{name}: {figure:?}");
    assert!(figure.per_second > 0.0, "{name}: {figure:?}");
}

#[tokio::test]
async fn the_ceiling_measures_every_part_and_leaves_no_scratch_behind() {
    let stack = Stack::builder()
        .without_dispatch()
        .without_streams()
        .start()
        .await;
    let (nats, db) = (stack.server(), stack.db());
    let options = tiny(&stack);

    let figures = ceiling::run(&options).await.expect("the ceiling run");

    positive("publish pipelined", figures.publish_pipelined, 2_000);
    positive("publish awaited", figures.publish_awaited, 100);
    positive("pull", figures.pull, 2_100);
    positive("pull acked", figures.pull_acked, 2_100);
    positive("UNNEST insert", figures.unnest_insert, 1_000);
    positive("row per transaction", figures.row_per_transaction, 50);
    positive("pipeline", figures.pipeline, 1_000);
    let at_rate = figures.pipeline_at_rate.expect("the open-loop run");
    assert_eq!(at_rate.sent, 200);
    assert_eq!(at_rate.completed, 200, "every report's event acked");
    assert_eq!(at_rate.latency_ms.count, 200);
    assert!(at_rate.latency_ms.p50 > 0.0 && at_rate.latency_ms.max >= at_rate.latency_ms.p99);
    assert!(!figures.nats_server.is_empty() && !figures.postgres.is_empty());
    let table = ceiling::render(&figures);
    assert!(table.contains("minimal pipeline"), "{table}");

    assert_eq!(scratch_streams(nats).await, Vec::<String>::new());
    assert_eq!(scratch_tables(db).await, 0);
    // The platform's streams were never made, its tables never written.
    let client = nats.connect().await.expect("connecting as admin");
    let all: Vec<String> = async_nats::jetstream::new(client)
        .stream_names()
        .try_collect()
        .await
        .expect("listing streams");
    assert!(all.is_empty(), "streams left: {all:?}");
    assert_eq!(db.count("SELECT count(*) FROM incidents").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn the_pipeline_is_searched_as_the_platform_is_and_its_cpu_counted() {
    let stack = Stack::builder()
        .without_dispatch()
        .without_streams()
        .start()
        .await;
    let plan = FindMaxPlan {
        steps: RateSteps {
            start: 100.0,
            factor: 1.5,
            add: 0.0,
            max: 250.0,
        },
        bounds: StepBounds {
            backlog: 100_000,
            p99_ms: 60_000.0,
        },
        step_duration: Duration::from_secs(1),
        sample_every: Duration::from_millis(250),
    };
    let options = Options {
        parts: Parts {
            nats: false,
            postgres: false,
            pipeline: true,
        },
        find_max: Some(plan),
        cpu: true,
        ..tiny(&stack)
    };

    let figures = ceiling::run(&options).await.expect("the ceiling run");

    // Bounds no tiny rate can break: every step of the plan runs and keeps up.
    let found = figures.pipeline_find_max.as_ref().expect("the search");
    let offered: Vec<f64> = found.steps.iter().map(|s| s.at_rate.offered_rate).collect();
    assert_eq!(offered, vec![100.0, 150.0, 225.0]);
    for step in &found.steps {
        assert!(step.verdict.sustained(), "{step:?}");
        assert_eq!(step.at_rate.completed, step.at_rate.sent, "{step:?}");
        assert!(!step.backlog_samples.is_empty(), "{step:?}");
    }
    assert_eq!(found.highest_sustained_rate, Some(225.0));
    assert!(
        figures.pipeline_at_rate.is_none(),
        "the search replaces the one run at --rate"
    );
    let cpu = figures.pipeline_cpu.as_ref().expect("the drain's CPU");
    for group in ["nats-server", "postgres", ceiling::OWN_GROUP] {
        assert!(cpu.by_process_us.contains_key(group), "{cpu:?}");
    }
    assert!(cpu.total_us > 0.0, "{cpu:?}");
    let table = ceiling::render(&figures);
    assert!(
        table.contains("highest sustained open-loop rate: 225/s"),
        "{table}"
    );
}

#[tokio::test]
async fn a_failed_ceiling_run_still_removes_its_scratch() {
    let stack = Stack::builder()
        .without_dispatch()
        .without_streams()
        .start()
        .await;
    let (nats, db) = (stack.server(), stack.db());
    let options = Options {
        // Over nats-server's 1 MiB max_payload: the first publish fails after the scratch
        // streams and tables were made.
        message_size: 2 * 1024 * 1024,
        ..tiny(&stack)
    };

    let error = ceiling::run(&options)
        .await
        .expect_err("an oversized payload");

    assert!(
        !error.to_string().contains("scratch not removed"),
        "{error:#}"
    );
    assert_eq!(scratch_streams(nats).await, Vec::<String>::new());
    assert_eq!(scratch_tables(db).await, 0);
}
