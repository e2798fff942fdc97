//! The fault-injection suite, short form: the same runner as `whistle chaos` (crates/chaos) with
//! every kind of fault — kill -9 of dispatch, a nats-server restart, an immediate PostgreSQL
//! restart, SIGSTOP of a replica past the ack wait, two replicas racing, and a window with no
//! dispatch at all while deadlines pass — then the checker's verdict: no report lost or
//! duplicated, every event once, every due timer fired exactly once. And the rolling upgrade
//! under load with the same runner and checker (`a_rolling_upgrade_under_load_…`).
//!
//! The runner owns a private nats-server (`WHISTLE_NATS_SERVER_BIN`) and a private PostgreSQL
//! cluster (initdb and pg_ctl from /usr/lib/postgresql/*/bin, run as `postgres` when root), so it
//! can restart them; the shared test PostgreSQL is not touched. Dispatch replicas are this test
//! binary re-run as a child process (`chaos::dispatch_replica_process`).

use std::time::Duration;

const CHILD_ENV: &str = "WHISTLE_IT_CHAOS_REPLICA";

/// Not a test: the entry point of a dispatch replica process that the chaos test kills, pauses
/// and restarts. It runs only when the parent sets `WHISTLE_IT_CHAOS_REPLICA`, and reads the
/// same environment as the `whistle-dispatch` binary.
#[tokio::test]
#[ignore = "entry point of a child process, run by the chaos test"]
async fn dispatch_replica_process() {
    std::env::var(CHILD_ENV).expect("run only by the chaos test");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let options = whistle_dispatch::Options {
        nats_url: var("WHISTLE_NATS_URL"),
        nkey_file: Some(var("WHISTLE_DISPATCH_NKEY_FILE").into()),
        database_url: var("DATABASE_URL"),
        policy: var("WHISTLE_POLICY"),
        ack_wait: Duration::from_secs(var("WHISTLE_ACK_WAIT_SECS").parse().expect("seconds")),
        max_db_connections: 4,
        no_contacts: std::env::var("WHISTLE_NO_CONTACTS").is_ok_and(|v| v == "true"),
        ..Default::default()
    };
    let service = options.build().await.expect("building dispatch");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        signal.cancel();
    });
    service.run(shutdown).await.expect("dispatch ran");
}

/// This test binary as a dispatch replica (`dispatch_replica_process`).
fn replica_launcher() -> whistle_chaos::Launcher {
    whistle_chaos::Launcher {
        program: std::env::current_exe().expect("test binary path"),
        args: [
            "--exact",
            "chaos::dispatch_replica_process",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![(CHILD_ENV.into(), "1".into())],
    }
}

#[tokio::test]
async fn faults_of_every_kind_lose_and_duplicate_nothing_and_fire_every_timer_once() {
    let config = whistle_chaos::Config {
        duration: Duration::from_secs(60),
        rate: 40.0,
        kills: 10,
        seed: std::env::var("WHISTLE_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(42),
        ack_wait: Duration::from_secs(4),
        outage: Duration::from_secs(4),
        // A 4 h level window is 4 s, a 30-minute report-in 0.5 s, a 24 h SLA 24 s: deadlines
        // fall all through the run, during the outages too.
        time_divisor: 3600,
        grids: 150,
        categories: 3,
        invalid_every: 15,
        // Commands race the faults too: each answered `ok` must be applied exactly once.
        command_rate: 3.0,
        dispatch: replica_launcher(),
        drain_timeout: Duration::from_secs(45),
        progress: true,
        ..Default::default()
    };
    let report = whistle_chaos::run(config).await.expect("the chaos run ran");
    eprintln!("{}", report.render());
    let v = &report.verdict;
    assert!(report.settled, "the system did not settle after the load");
    assert_eq!(v.reports.lost, 0, "lost: {:?}", v.lost);
    assert_eq!(v.reports.duplicated, 0, "duplicated: {:?}", v.duplicated);
    assert_eq!(v.timers.fired_more, 0, "{:?}", v.problems);
    assert_eq!(v.timers.missed, 0, "{:?}", v.problems);
    assert!(v.pass, "{:?}", v.problems);
    // The run exercised what it claims to.
    assert!(
        v.reports.valid_ok > 1000 && v.reports.invalid_ok > 50,
        "{:?}",
        v.reports
    );
    assert!(v.timers.fired_once > 100, "{:?}", v.timers);
    assert!(v.timers.due_during_outage > 0, "{:?}", v.timers);
    assert!(report.faults.len() >= 16, "{:?}", report.faults);
    assert_eq!(v.commands.lost, 0, "lost: {:?}", v.lost);
    assert_eq!(v.commands.duplicated, 0, "duplicated: {:?}", v.duplicated);
    assert!(v.commands.ok > 100, "{:?}", v.commands);
}

/// The upgrade drill's migration: expand-only changes to the tables intake, commands and timers
/// write, as a new release's would be, applied while the old replicas serve (they must not mind
/// columns, tables and indexes they do not know).
const DRILL_MIGRATION: (&str, &str) = (
    "29991231000000_upgrade_drill.sql",
    "-- Test-only (chaos::a_rolling_upgrade_under_load_loses_nothing_and_fires_every_timer_once).\n\
     ALTER TABLE reports ADD COLUMN drill_note text;\n\
     ALTER TABLE incidents ADD COLUMN drill_flag boolean NOT NULL DEFAULT false;\n\
     ALTER TABLE timeline ADD COLUMN drill_source text;\n\
     CREATE TABLE drill_upgrade (id bigint PRIMARY KEY, note text NOT NULL DEFAULT '');\n\
     CREATE INDEX timers_drill ON timers (key, due_at);\n",
);

/// The rolling upgrade under load, short form (docs/operations.md, "Upgrades"): two replicas of
/// the old version serve reports, commands and deadlines; the new version's migrations (this
/// build's plus an expand-only one) are applied while they do; then each is replaced, one at a
/// time, by a replica of the new version: started, serving, then the old one stopped with
/// SIGTERM (its drain). Both versions are this build (`deploy/local/rolling-upgrade.sh --from
/// REV` runs an older one); the checker's guarantees must hold across the whole run, and the
/// upgrade's times are printed.
#[tokio::test]
async fn a_rolling_upgrade_under_load_loses_nothing_and_fires_every_timer_once() {
    let work = std::env::temp_dir().join(format!("whistle-upgrade-{}", uuid::Uuid::now_v7()));
    let to_migrations = work.join("migrations");
    std::fs::create_dir_all(&to_migrations).unwrap();
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/store/migrations");
    for entry in std::fs::read_dir(&ours).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to_migrations.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(to_migrations.join(DRILL_MIGRATION.0), DRILL_MIGRATION.1).unwrap();
    let drill_version: i64 = DRILL_MIGRATION.0[..14].parse().unwrap();
    let checked = whistle_store::expand::check(&[(drill_version, DRILL_MIGRATION.1)]);
    assert_eq!(
        checked[0].findings,
        [],
        "the drill's migration only expands"
    );

    let config = whistle_chaos::Config {
        duration: Duration::from_secs(36),
        rate: 40.0,
        kills: 0,
        seed: 7,
        ack_wait: Duration::from_secs(4),
        // Deadlines fall all through the run, across the replacements too.
        time_divisor: 3600,
        grids: 150,
        categories: 3,
        invalid_every: 15,
        command_rate: 4.0,
        dispatch: replica_launcher(),
        upgrade: Some(whistle_chaos::Upgrade {
            to: replica_launcher(),
            from_migrations: None,
            to_migrations: Some(to_migrations),
            from_policy: None,
            ready_timeout: Duration::from_secs(30),
        }),
        drain_timeout: Duration::from_secs(45),
        progress: true,
        ..Default::default()
    };
    let report = whistle_chaos::run(config)
        .await
        .expect("the upgrade run ran");
    eprintln!("{}", report.render());
    let _ = std::fs::remove_dir_all(&work);
    let v = &report.verdict;
    assert!(report.settled, "the system did not settle after the load");
    assert_eq!(v.reports.lost, 0, "lost: {:?}", v.lost);
    assert_eq!(v.reports.duplicated, 0, "duplicated: {:?}", v.duplicated);
    assert_eq!(v.commands.lost, 0, "lost: {:?}", v.lost);
    assert_eq!(v.commands.duplicated, 0, "duplicated: {:?}", v.duplicated);
    assert_eq!(v.timers.fired_more, 0, "{:?}", v.problems);
    assert_eq!(v.timers.missed, 0, "{:?}", v.problems);
    assert!(v.pass, "{:?}", v.problems);
    let upgrade = report.upgrade.as_ref().expect("the upgrade ran");
    assert_eq!(upgrade.migrations_applied, [drill_version]);
    assert_eq!(
        upgrade
            .replacements
            .iter()
            .map(|r| (r.old_slot, r.new_slot, r.stopped_cleanly))
            .collect::<Vec<_>>(),
        [(0, 2, true), (1, 3, true)],
        "each old replica replaced by a new one and drained on SIGTERM"
    );
    assert_eq!(report.unexpected_exits, 0, "no replica died on its own");
    // The run exercised what it claims to: load before, during and after the upgrade.
    assert!(v.reports.valid_ok > 1000, "{:?}", v.reports);
    assert!(
        v.commands.ok > 80 && v.commands.refused == 0,
        "{:?}",
        v.commands
    );
    assert!(v.timers.fired_once > 50, "{:?}", v.timers);
}

/// Found by the chaos suite (seed 2 of a 40 s run, during the PostgreSQL restart): a batch stuck
/// longer than the ack wait gets its messages redelivered into the same pull, so the next batch
/// can hold one invalid message twice. Both copies have the same source key; the row was
/// inserted once, but each copy's `report.rejected` event went to the outbox, so the rejection
/// was announced twice. Recording must announce a rejection once however often it appears.
#[tokio::test]
async fn a_batch_holding_one_rejected_message_twice_announces_it_once() {
    use crate::harness::Count as _;
    use whistle_store::intake::{
        Attachment, ClusterAlert, IntakeEvents, NewIncident, NewRejection, OutboxEvent,
    };
    struct NoEvents;
    impl IntakeEvents for NoEvents {
        fn attached(&self, _: &NewIncident, _: &Attachment) -> OutboxEvent {
            unreachable!("no reports in this batch")
        }
        fn cluster(&self, _: &ClusterAlert) -> OutboxEvent {
            unreachable!("no reports in this batch")
        }
    }
    let stack = crate::harness::Stack::builder()
        .database_only()
        .start()
        .await;
    let db = stack.db();
    // One JetStream message as two deliveries: the same source key, an event id each (event
    // ids are made when a delivery is classified).
    let delivery = || NewRejection {
        source_key: "WHISTLE_REPORTS:821:1796073462664661613".into(),
        reason: "grid_mismatch".into(),
        message: "grid_code does not match the subject's grid".into(),
        subject: whistle_wire::subject::report(&"150621005003006".parse().unwrap()),
        report_id: Some("chaos-2-820".into()),
        reporter_id: Some("gw-150621005003006".into()),
        stream_sequence: Some(821),
        payload: vec![1, 2, 3],
        received_at: chrono::Utc::now(),
        event: OutboxEvent {
            event_id: uuid::Uuid::now_v7(),
            subject: whistle_wire::subject::incident_event(
                "150621",
                "150621005",
                whistle_wire::kind::REPORT_REJECTED,
            ),
            payload: vec![],
        },
    };
    let owner = crate::store::batches::take_over(db, "a", chrono::Utc::now()).await;
    let recorded = whistle_store::intake::record(
        &mut db.pool.acquire().await.unwrap(),
        &[],
        &[&delivery(), &delivery()],
        &NoEvents,
        &owner,
    )
    .await
    .expect("recorded");
    assert_eq!(recorded.rejections.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM rejected_reports").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox").await,
        1,
        "one rejection, one report.rejected event"
    );
}
