//! The restore drill, short form (issue 25, item 5; docs/operations.md, "Backups"): a stack on a
//! private PostgreSQL cluster takes reports, whistles and deadlines, and is backed up online as
//! deploy/backup/backup.sh does it — the JetStream streams first (`whistle backup-streams`), then a
//! base backup of the database (`pg_basebackup`, checked with `pg_verifybackup`). Both are
//! restored into fresh servers (new data directories, new ports); every incident, task, report,
//! timeline entry, pending timer, applied command, audit entry and policy version is back as it
//! was, dispatch resumes on them, each pending timer fires exactly once (none fired before the
//! backup fires again) and a new report becomes an incident.
//!
//! `WHISTLE_DRILL_REPORTS` (default 24) sets the load; deploy/backup/drill.sh runs this test with
//! thousands and prints the figures (backup and restore times) that docs/operations.md quotes.

use std::time::Instant;

use chrono::TimeDelta;
use sqlx::PgPool;
use uuid::Uuid;
use whistle_proto::v1;
use whistle_testkit::{find_pg_bindir, NatsConfig, PgCluster};

use crate::harness::*;

/// The tables whose rows must come back exactly, each as its rows' JSON in a stable order.
const TABLES: [&str; 10] = [
    "incidents",
    "tasks",
    "timers",
    "timeline",
    "reports",
    "commands",
    "audit_log",
    "policy_versions",
    "org_units",
    "people",
];

async fn rows(pool: &PgPool) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for table in TABLES {
        let text: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(r, E'\\n' ORDER BY r), '')
             FROM (SELECT to_jsonb(t)::text AS r FROM {table} t) rows"
        ))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        all.push((table.to_owned(), text));
    }
    all
}

/// The pending timers: (incident, key, deadline).
async fn pending(pool: &PgPool) -> Vec<(Uuid, String, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as("SELECT incident_id, key, due_at FROM timers ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Deadlines that fired more than once: (incident, timer, deadline) on the timeline at more than
/// one time (one firing may write several entries, all at its time — as the chaos checker counts).
async fn fired_twice(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT incident_id, data->>'timer', data->>'due_at' FROM timeline WHERE data ? 'timer'
             GROUP BY 1, 2, 3 HAVING count(DISTINCT at) > 1) twice",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `url` on another port of the same host.
fn on_port(url: &str, from: u16, to: u16) -> String {
    let replaced = url.replacen(&format!(":{from}/"), &format!(":{to}/"), 1);
    assert_ne!(replaced, url, "{url} names no port {from}");
    replaced
}

#[tokio::test]
async fn a_backup_restores_into_fresh_servers_with_nothing_lost_or_fired_twice() {
    let reports: usize = std::env::var("WHISTLE_DRILL_REPORTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("restore-drill").unwrap();
    let source_pg = PgCluster::start(&bindir, &work.path().join("source"))
        .await
        .unwrap();
    let mut stack = Stack::builder()
        .on_database_server(source_pg.url("postgres"))
        .at(ten_o_clock_in_ordos())
        .start()
        .await;

    // A little load: reports from distinct grids (so each is its own incident), a third of
    // them whistled (tasks with a 30-minute report-in deadline), then half an hour passes so
    // those deadlines fire before the backup; the resolve deadlines stay pending.
    let grids = grids();
    assert!(
        grids.len() > reports,
        "{} grids: one for each report and one after",
        grids.len()
    );
    let sent: Vec<v1::Report> = grids
        .iter()
        .take(reports)
        .enumerate()
        .map(|(i, grid)| {
            stack.filed(
                &format!("drill-{i}"),
                grid,
                "petition.collective",
                v1::Urgency::Urgent,
            )
        })
        .collect();
    for report in &sent {
        stack.publish(report).await;
    }
    let mut incidents = Vec::new();
    for report in &sent {
        incidents.push((
            report.grid_code.clone(),
            stack.incident_of(&report.report_id).await,
        ));
    }
    for (grid, incident) in incidents.iter().step_by(3) {
        stack.whistle(grid, *incident).await;
    }
    stack.advance(TimeDelta::minutes(31));
    stack.settle().await;
    let fired_before: i64 = stack
        .count("SELECT count(*) FROM timeline WHERE data ? 'timer'")
        .await;
    assert!(
        fired_before > 0,
        "report-in deadlines fired before the backup"
    );
    stack.intake_drained().await;
    eventually("the outbox relayed", WAIT, || async {
        stack.count("SELECT count(*) FROM outbox").await == 0
    })
    .await
    .unwrap();
    let expected = rows(stack.pool()).await;
    let expected_pending = pending(stack.pool()).await;
    assert!(!expected_pending.is_empty(), "resolve deadlines pending");

    // The backup, online (dispatch running): streams first, then the database, so that the
    // database is never older than the streams' consumer state (docs/operations.md says why).
    let backup_dir = work.path().join("backup");
    let started = Instant::now();
    let streams = whistle_cli::backup::snapshot_streams(stack.admin(), &backup_dir.join("streams"))
        .await
        .unwrap();
    assert_eq!(streams.len(), 4, "{streams:?}");
    source_pg.base_backup(&backup_dir.join("pg")).unwrap();
    let backup_secs = started.elapsed().as_secs_f64();

    // The site is lost: dispatch stops, and nothing of the old servers is used again.
    stack.stop_dispatch().await;

    // Fresh servers: a PostgreSQL cluster from the base backup and an empty nats-server with the
    // deployment's secrets, each on a new port and directory; the streams restored before
    // `whistle streams` (which then finds them and only brings their settings up to date).
    let started = Instant::now();
    let restored_dir = work.path().join("restored");
    let restored_pg = PgCluster::restore(&bindir, &backup_dir.join("pg"), &restored_dir)
        .await
        .unwrap();
    assert_ne!(restored_pg.port, source_pg.port);
    let nats = NatsConfig::new()
        .secured(stack.secrets())
        .dir(&restored_dir)
        .start()
        .await
        .unwrap();
    assert_ne!(nats.port(), stack.server().port());
    let admin = nats.connect().await.unwrap();
    let back = whistle_cli::backup::restore_streams(&admin, &backup_dir.join("streams"))
        .await
        .unwrap();
    let counts = |copies: &[whistle_cli::backup::StreamCopy]| {
        copies
            .iter()
            .map(|c| (c.name.clone(), c.messages, c.last_seq))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&back), counts(&streams));
    let js = async_nats::jetstream::new(admin.clone());
    whistle_auth::streams::ensure(&js, &whistle_auth::streams::HardenedOptions::small())
        .await
        .unwrap();
    let (from, to) = (source_pg.port, restored_pg.port);
    let owner = whistle_store::connect(&on_port(&stack.db().url, from, to), 2)
        .await
        .unwrap();
    let restored = rows(&owner).await;
    for ((table, want), (_, got)) in expected.iter().zip(&restored) {
        assert!(want == got, "{table} differs after the restore");
    }
    assert_eq!(pending(&owner).await, expected_pending);

    // Dispatch resumes on the restored servers, with its own role as ever.
    let mut options = stack.dispatch_options();
    options.nats_url = nats.url();
    options.database_url = on_port(&stack.db().dispatch_url, from, to);
    let dispatch = Dispatch::start(options, stack.shared_clock()).await;
    let reporter = Reporter::connect(&nats).await;
    let after = stack.filed(
        "drill-after",
        &grids[reports],
        "petition.collective",
        v1::Urgency::Urgent,
    );
    reporter.publish(&after).await;
    eventually("the new report recorded", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reports WHERE report_id = 'drill-after'")
            .fetch_one(&owner)
            .await
            .unwrap()
            == 1
    })
    .await
    .unwrap();
    let restore_secs = started.elapsed().as_secs_f64();

    // The deadlines pending at the backup fire on the restored servers: each at most once, and
    // each incident's first one — which nothing else could move in between — exactly once;
    // nothing that fired before the backup fires again.
    stack.advance(TimeDelta::days(4));
    let now = stack.now();
    eventually("the restored timers fired", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM timers WHERE due_at <= $1")
            .bind(now)
            .fetch_one(&owner)
            .await
            .unwrap()
            == 0
    })
    .await
    .unwrap();
    let mut first_of_incident = std::collections::BTreeMap::new();
    for (incident, _, due) in &expected_pending {
        let first = first_of_incident.entry(*incident).or_insert(*due);
        *first = (*first).min(*due);
    }
    for (incident, key, due) in &expected_pending {
        let firings: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT at) FROM timeline WHERE incident_id = $1 AND data->>'timer' = $2
                AND (data->>'due_at')::timestamptz = $3",
        )
        .bind(incident)
        .bind(key)
        .bind(due)
        .fetch_one(&owner)
        .await
        .unwrap();
        if first_of_incident[incident] == *due {
            assert_eq!(firings, 1, "timer {key} of {incident} due {due}");
        } else {
            assert!(
                firings <= 1,
                "timer {key} of {incident} due {due} fired {firings} times"
            );
        }
    }
    assert_eq!(fired_twice(&owner).await, 0);
    let reports_back: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(
        reports_back,
        reports as i64 + 1,
        "no report lost or doubled"
    );
    dispatch.stop().await;
    eprintln!(
        "restore drill: {reports} reports; backup {backup_secs:.1} s (streams {} bytes); \
         restore to the first new incident {restore_secs:.1} s",
        streams.iter().map(|s| s.snapshot_bytes).sum::<u64>()
    );
}
