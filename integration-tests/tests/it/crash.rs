//! Crashes: dispatch killed with SIGKILL at random moments while reports flow, and a graceful
//! stop mid-load. Afterwards every report is an incident exactly once and every event is in
//! WHISTLE_EVENTS exactly once.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use async_nats::{header::NATS_MESSAGE_ID, HeaderMap};
use prost::Message as _;
use rand::Rng;
use whistle_proto::v1;

use crate::harness::*;

const CHILD_ENV: &str = "WHISTLE_IT_CHILD_DISPATCH";

/// Not a test: the entry point of a dispatch child process that the crash test kills. It runs
/// only when the parent test sets `WHISTLE_IT_CHILD_DISPATCH` to `nats_url database_url
/// seed_file` (dispatch's nkey, as `--nats-nkey-file` gives it).
#[tokio::test]
#[ignore = "entry point of a child process, run by the crash test"]
async fn dispatch_child_process() {
    let config = std::env::var(CHILD_ENV).expect("run only by kill_9_at_random_moments");
    let [nats_url, database_url, seed_file] = config.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{CHILD_ENV} is `nats_url database_url seed_file`");
    };
    let options = whistle_dispatch::Options {
        nats_url: nats_url.into(),
        nkey_file: Some(seed_file.into()),
        database_url: database_url.into(),
        ack_wait: Duration::from_secs(2),
        retry_delay: Duration::from_millis(200),
        relay_poll_interval: Duration::from_millis(100),
        max_db_connections: 4,
        // The crash test's reports carry no contacts.
        no_contacts: true,
        ..Default::default()
    };
    let service = options.build().await.expect("building dispatch");
    service
        .run(tokio_util::sync::CancellationToken::new())
        .await
        .expect("dispatch ran");
}

fn spawn_child(stack: &Stack) -> Child {
    let (nats, db) = (stack.server(), stack.db());
    let seed = stack.secrets().seed_path(whistle_auth::Service::Dispatch);
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash::dispatch_child_process",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{} {} {}", nats.url(), db.dispatch_url, seed.display()),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning a dispatch child")
}

/// What was published, to check the outcome against.
#[derive(Default)]
struct Ledger {
    valid: Vec<String>,
    invalid: u64,
}

/// Publishes `count` reports at about `rate` per second: mostly valid and unique, some invalid,
/// and some valid ones published a second time without a Nats-Msg-Id (so JetStream keeps both).
async fn publish_mix(js: async_nats::jetstream::Context, count: usize, rate: f64) -> Ledger {
    let grids = grids();
    let mut ledger = Ledger::default();
    let mut acks = Vec::new();
    let start = tokio::time::Instant::now();
    for i in 0..count {
        let (grid, id) = (&grids[i % grids.len()], format!("crash-{i}"));
        let mut sent = report(&id, grid);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id.as_str());
        if i % 25 == 7 {
            sent.category = "no.such".into();
            ledger.invalid += 1;
        } else {
            ledger.valid.push(id.clone());
        }
        acks.push(
            js.publish_with_headers(subject_for(grid), headers, sent.encode_to_vec().into())
                .await
                .expect("publish"),
        );
        if i % 40 == 3 {
            let again = js
                .publish_with_headers(
                    subject_for(grid),
                    HeaderMap::new(),
                    sent.encode_to_vec().into(),
                )
                .await
                .expect("publish");
            acks.push(again);
            if sent.category == "no.such" {
                // A second message with the same bad content is a second rejection.
                ledger.invalid += 1;
            }
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    ledger
}

async fn drained(reporter: &Reporter, db: &TestDb) -> bool {
    let Ok(mut consumer) = reporter
        .js
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
            "whistle-dispatch",
            "WHISTLE_REPORTS",
        )
        .await
    else {
        return false;
    };
    let Ok(info) = consumer.info().await else {
        return false;
    };
    info.num_pending == 0
        && info.num_ack_pending == 0
        && db.count("SELECT count(*) FROM outbox").await == 0
}

/// Checks the exactly-once outcome for a ledger: every valid report either opened one incident or
/// was attached to one (a later report from the same grid), announced once; every invalid message
/// rejected once.
async fn assert_exactly_once(reporter: &Reporter, db: &TestDb, ledger: &Ledger) {
    let events = events(&reporter.js).await;
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let (mut opened, mut attached, mut rejected) = (0i64, 0i64, 0u64);
    let mut event_ids = std::collections::HashSet::new();
    for (_, event) in &events {
        assert!(
            event_ids.insert(event.event_id.clone()),
            "event {} published twice",
            event.event_id
        );
        let report = match &event.body {
            Some(v1::event::Body::IncidentReported(b)) => {
                opened += 1;
                b.report.clone()
            }
            Some(v1::event::Body::ReportAttached(b)) => {
                attached += 1;
                b.report.clone()
            }
            Some(v1::event::Body::ReportRejected(_)) => {
                rejected += 1;
                continue;
            }
            _ => continue,
        };
        *outcomes
            .entry(report.expect("the event carries the report").report_id)
            .or_default() += 1;
    }
    let lost: Vec<&String> = ledger
        .valid
        .iter()
        .filter(|id| !outcomes.contains_key(*id))
        .collect();
    let duplicated: Vec<(&String, &u32)> = outcomes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        lost.is_empty(),
        "{} reports lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        duplicated.is_empty(),
        "{} reports announced twice, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    assert_eq!(outcomes.len(), ledger.valid.len());
    assert_eq!(
        rejected, ledger.invalid,
        "one report.rejected per invalid message"
    );
    assert_eq!(
        stream_len(&reporter.js, "WHISTLE_REJECTED").await,
        ledger.invalid
    );
    assert_eq!(db.count("SELECT count(*) FROM incidents").await, opened);
    assert_eq!(
        db.count("SELECT sum(report_count) FROM incidents").await,
        opened + attached
    );
    assert_eq!(
        db.count("SELECT count(*) FROM reports").await,
        ledger.valid.len() as i64
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM timeline WHERE kind IN ('incident.reported', 'report.attached')"
        )
        .await,
        ledger.valid.len() as i64
    );
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let stack = Stack::builder().without_dispatch().start().await;
    let (db, reporter) = (stack.db(), stack.reporter());
    // The streams exist (the admin made them); the first child opens them.
    let mut child = spawn_child(&stack);
    eventually("streams created", Duration::from_secs(30), || async {
        reporter.js.get_stream("WHISTLE_REPORTS").await.is_ok()
    })
    .await
    .unwrap();
    let publisher = tokio::spawn(publish_mix(stack.js().clone(), 3000, 1500.0));

    let mut rng = rand::rng();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        child = spawn_child(&stack);
    }
    let ledger = publisher.await.expect("publisher");
    eventually(
        "everything processed after the last restart",
        Duration::from_secs(60),
        || drained(reporter, db),
    )
    .await
    .unwrap();
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    assert_exactly_once(reporter, db, &ledger).await;
}

#[tokio::test]
async fn a_graceful_stop_mid_load_relays_what_it_committed_and_a_restart_finishes_the_rest() {
    let stack = Stack::builder().without_dispatch().start().await;
    let (db, reporter) = (stack.db(), stack.reporter());
    let dispatch = stack.spawn_dispatch().await;
    let publisher = tokio::spawn(publish_mix(stack.js().clone(), 2000, 2000.0));
    tokio::time::sleep(Duration::from_millis(400)).await;
    dispatch.stop().await;

    // At a graceful stop every committed incident has its event in the stream.
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 0);
    // (One event per recorded report — opened or attached —, per rejection and per cluster alert.)
    let recorded = db
        .count("SELECT (SELECT count(*) FROM reports) + (SELECT count(*) FROM rejected_reports) + (SELECT count(*) FROM cluster_alerts)")
        .await as u64;
    assert_eq!(stream_len(&reporter.js, "WHISTLE_EVENTS").await, recorded);

    let ledger = publisher.await.expect("publisher");
    let dispatch = stack.spawn_dispatch().await;
    eventually("the rest processed", Duration::from_secs(60), || {
        drained(reporter, db)
    })
    .await
    .unwrap();
    dispatch.stop().await;
    assert_exactly_once(reporter, db, &ledger).await;
}
