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

use chrono::{DateTime, TimeDelta, Utc};
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

/// A pending timer: (incident, key, deadline).
type Pending = (Uuid, String, DateTime<Utc>);

async fn pending(pool: &PgPool) -> Vec<Pending> {
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

/// The source of a drill: a PostgreSQL cluster of its own (with `settings`) and a stack on it at
/// ten o'clock in Ordos.
async fn source_stack(
    bindir: &std::path::Path,
    dir: &std::path::Path,
    settings: &[(&str, &str)],
) -> (PgCluster, Stack) {
    let source_pg = PgCluster::start_with(bindir, dir, settings).await.unwrap();
    let stack = Stack::builder()
        .on_database_server(source_pg.url("postgres"))
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    (source_pg, stack)
}

#[tokio::test]
async fn a_backup_restores_into_fresh_servers_with_nothing_lost_or_fired_twice() {
    let reports: usize = std::env::var("WHISTLE_DRILL_REPORTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("restore-drill").unwrap();
    let (source_pg, mut stack) = source_stack(&bindir, &work.path().join("source"), &[]).await;

    // A little load: reports from distinct grids (so each is its own incident), a third of
    // them whistled (tasks with a 30-minute report-in deadline), then half an hour passes so
    // those deadlines fire before the backup; the resolve deadlines stay pending.
    let grids = grids();
    assert!(
        grids.len() > reports,
        "{} grids: one for each report and one after",
        grids.len()
    );
    let incidents = open_incidents(&stack, &grids[..reports], "drill").await;
    for (grid, incident) in incidents.iter().step_by(3) {
        stack.whistle(grid, *incident).await;
    }
    stack.advance(TimeDelta::minutes(31));
    quiet(&stack).await;
    let fired_before: i64 = stack
        .count("SELECT count(*) FROM timeline WHERE data ? 'timer'")
        .await;
    assert!(
        fired_before > 0,
        "report-in deadlines fired before the backup"
    );
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
    let dispatch = resume(&stack, &owner, &nats, (from, to), &grids[reports]).await;
    let restore_secs = started.elapsed().as_secs_f64();
    fire_once(&stack, &owner, &expected_pending).await;
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

/// Dispatch started on restored servers (the database moved from the stack's port to another),
/// once a new report from `grid` is recorded there.
async fn resume(
    stack: &Stack,
    owner: &PgPool,
    nats: &NatsServer,
    (from, to): (u16, u16),
    grid: &str,
) -> Dispatch {
    let mut options = stack.dispatch_options();
    options.nats_url = nats.url();
    options.database_url = on_port(&stack.db().dispatch_url, from, to);
    let dispatch = Dispatch::start(options, stack.shared_clock()).await;
    let reporter = Reporter::connect(nats).await;
    let after = stack.filed(
        "drill-after",
        grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    reporter.publish(&after).await;
    eventually("the new report recorded", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reports WHERE report_id = 'drill-after'")
            .fetch_one(owner)
            .await
            .unwrap()
            == 1
    })
    .await
    .unwrap();
    dispatch
}

/// Every deadline pending when the backup was taken (`expected_pending`) fires on the restored
/// servers: each at most once, and each incident's first one — which nothing else could move in
/// between — exactly once; nothing that fired before the backup fires again.
async fn fire_once(stack: &Stack, owner: &PgPool, expected_pending: &[Pending]) {
    stack.advance(TimeDelta::days(4));
    let now = stack.now();
    eventually("the restored timers fired", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM timers WHERE due_at <= $1")
            .bind(now)
            .fetch_one(owner)
            .await
            .unwrap()
            == 0
    })
    .await
    .unwrap();
    let mut first_of_incident = std::collections::BTreeMap::new();
    for (incident, _, due) in expected_pending {
        let first = first_of_incident.entry(*incident).or_insert(*due);
        *first = (*first).min(*due);
    }
    for (incident, key, due) in expected_pending {
        let firings: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT at) FROM timeline WHERE incident_id = $1 AND data->>'timer' = $2
                AND (data->>'due_at')::timestamptz = $3",
        )
        .bind(incident)
        .bind(key)
        .bind(due)
        .fetch_one(owner)
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
    assert_eq!(fired_twice(owner).await, 0);
}

/// One report from each of `grids` (each its own incident), as `{prefix}-{i}`; their incidents.
async fn open_incidents(stack: &Stack, grids: &[String], prefix: &str) -> Vec<(String, Uuid)> {
    let sent: Vec<v1::Report> = grids
        .iter()
        .enumerate()
        .map(|(i, grid)| {
            stack.filed(
                &format!("{prefix}-{i}"),
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
    incidents
}

/// Intake and the outbox idle, so the tables hold everything sent so far.
async fn quiet(stack: &Stack) {
    stack.settle().await;
    stack.intake_drained().await;
    eventually("the outbox relayed", WAIT, || async {
        stack.count("SELECT count(*) FROM outbox").await == 0
    })
    .await
    .unwrap();
}

/// Point-in-time recovery, short form (docs/operations.md, "Backups"): a cluster archiving its WAL
/// through deploy/backup/archive-wal.sh is backed up, then takes more reports and commands; the
/// base backup restored by deploy/backup/restore.sh with the archived WAL comes back with every
/// commit up to the loss of the site, and with `--until` exactly as the database stood at that
/// time — from which the platform resumes, each deadline pending then firing once.
#[tokio::test]
async fn archived_wal_restores_to_the_last_commit_or_to_a_point_in_time() {
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scripts = repo.join("deploy/backup");
    let work = TempDir::new("pitr-drill").unwrap();
    let archive = work.path().join("wal");
    std::fs::create_dir_all(&archive).unwrap();
    whistle_testkit::give_to_cluster_user(&archive).expect("the archive handed to postgres");
    let archive_command = format!(
        "'{} %p %f {}'",
        scripts.join("archive-wal.sh").display(),
        archive.display()
    );
    let (source_pg, mut stack) = source_stack(
        &bindir,
        &work.path().join("source"),
        &[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
        ],
    )
    .await;
    let grids = grids();

    // Before the base backup, then after it up to the target time, then after that.
    open_incidents(&stack, &grids[0..3], "before").await;
    quiet(&stack).await;
    let backup = work.path().join("backup");
    source_pg.base_backup(&backup.join("pg")).unwrap();
    std::fs::write(backup.join("BACKUP"), "whistle pitr drill\n").unwrap();
    let after = open_incidents(&stack, &grids[3..6], "after").await;
    stack.whistle(&after[0].0, after[0].1).await;
    quiet(&stack).await;
    let at_target = rows(stack.pool()).await;
    let pending_at_target = pending(stack.pool()).await;
    let target: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert!(
        rows(stack.pool()).await == at_target,
        "nothing was written around the target time"
    );
    // Commit timestamps after the target are later than it by far more than any rounding.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let later = open_incidents(&stack, &grids[6..9], "later").await;
    stack.whistle(&later[0].0, later[0].1).await;
    quiet(&stack).await;
    stack.stop_dispatch().await;
    let at_end = rows(stack.pool()).await;

    // The last WAL segment is archived (archive_timeout does this within a minute in
    // production), then the site is lost.
    let superuser = whistle_store::connect(&source_pg.url("postgres"), 1)
        .await
        .unwrap();
    let last: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&superuser)
        .await
        .unwrap();
    eventually("the last WAL segment archived", WAIT, || async {
        archive.join(&last).exists()
    })
    .await
    .unwrap();
    superuser.close().await;
    let from = source_pg.port;
    drop(source_pg);

    let restore = |name: &str, until: Option<DateTime<Utc>>| {
        let root = work.path().join(name);
        let mut command = std::process::Command::new("bash");
        command
            .arg(scripts.join("restore.sh"))
            .arg("postgres")
            .arg(&backup)
            .arg(root.join("data"))
            .arg("--wal")
            .arg(&archive);
        if let Some(until) = until {
            command
                .arg("--until")
                .arg(until.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string());
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "restore.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        root
    };
    let promoted = |url: String| async move {
        let pool = whistle_store::connect(&url, 1).await.unwrap();
        eventually("recovery done and promoted", WAIT, || async {
            !sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&pool)
                .await
                .unwrap()
        })
        .await
        .unwrap();
    };

    // To the end: every commit up to the loss is back.
    let end_pg = PgCluster::open(&bindir, &restore("to-end", None))
        .await
        .unwrap();
    promoted(end_pg.url("postgres")).await;
    let owner = whistle_store::connect(&on_port(&stack.db().url, from, end_pg.port), 2)
        .await
        .unwrap();
    for ((table, want), (_, got)) in at_end.iter().zip(&rows(&owner).await) {
        assert!(
            want == got,
            "{table} differs after replaying the whole archive"
        );
    }
    owner.close().await;
    drop(end_pg);

    // To the target time: as it stood then, nothing of what came later.
    let pitr_pg = PgCluster::open(&bindir, &restore("to-target", Some(target)))
        .await
        .unwrap();
    promoted(pitr_pg.url("postgres")).await;
    let to = pitr_pg.port;
    let owner = whistle_store::connect(&on_port(&stack.db().url, from, to), 2)
        .await
        .unwrap();
    for ((table, want), (_, got)) in at_target.iter().zip(&rows(&owner).await) {
        assert!(want == got, "{table} differs from the target time's");
    }
    let later_back: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reports WHERE report_id LIKE 'later-%'")
            .fetch_one(&owner)
            .await
            .unwrap();
    assert_eq!(later_back, 0, "nothing after the target time");

    // The platform resumes from that point, on a new nats-server.
    let nats = NatsConfig::new()
        .secured(stack.secrets())
        .dir(work.path().join("to-target"))
        .start()
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    whistle_auth::streams::ensure(&js, &whistle_auth::streams::HardenedOptions::small())
        .await
        .unwrap();
    let dispatch = resume(&stack, &owner, &nats, (from, to), &grids[9]).await;
    fire_once(&stack, &owner, &pending_at_target).await;
    dispatch.stop().await;
}
