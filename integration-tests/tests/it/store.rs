//! The store: migrations, seeding and the append-only timeline.

use crate::harness::*;

#[tokio::test]
async fn seeding_is_idempotent_and_loads_back_the_same_tree() {
    let db = TestDb::create().await; // migrated and seeded once
    let dataset = whistle_domain::ordos::dataset();
    let again = whistle_store::org::seed(&db.pool, &dataset).await.unwrap();
    assert_eq!(
        again,
        whistle_store::org::SeedCounts::default(),
        "a second seed changes nothing"
    );
    whistle_store::migrate(&db.pool)
        .await
        .expect("migrating twice is a no-op");

    let loaded = whistle_store::org::load(&db.pool).await.unwrap();
    assert_eq!(loaded.units, dataset.units);
    let mut departments = dataset.departments.clone();
    departments.sort_by(|a, b| a.code.cmp(&b.code));
    assert_eq!(loaded.departments, departments);
    assert_eq!(loaded.people.len(), dataset.people.len());
    assert_eq!(
        db.count("SELECT count(*) FROM org_units WHERE level = 'grid'")
            .await,
        1564
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_units WHERE level = 'community'")
            .await,
        236
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_units WHERE level = 'street'")
            .await,
        59
    );

    // An edit (a renamed community) is applied in place.
    let mut edited = dataset.clone();
    let community = edited
        .units
        .iter_mut()
        .find(|u| u.level() == whistle_domain::Level::Community)
        .unwrap();
    community.name = "新名社区".into();
    let changed = whistle_store::org::seed(&db.pool, &edited).await.unwrap();
    assert_eq!(changed.units, 1);
}

#[tokio::test]
async fn the_timeline_refuses_updates_and_deletes() {
    let db = TestDb::create().await;
    sqlx::query(
        "INSERT INTO incidents (id, status, level, category, urgency, title, description, district_code, street_code,
             community_code, grid_code, reporter_id, policy_version, reported_at, created_at, updated_at)
         VALUES ('01900000-0000-7000-8000-000000000001', 'handling', 'community', 'heating.no_heat', 'normal', 't', '',
             '150602', '150602001', '150602001001', '150602001001001', 'gw-150602001001001', 'test', now(), now(), now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO timeline (incident_id, seq, kind, actor_id, at) VALUES ('01900000-0000-7000-8000-000000000001', 1, 'incident.reported', 'x', now())")
        .execute(&db.pool)
        .await
        .unwrap();
    for statement in [
        "UPDATE timeline SET note = 'rewritten'",
        "DELETE FROM timeline",
    ] {
        let err = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until the server's statistics show `table`'s recent changes (they are flushed about once
/// a second).
async fn changes_seen(db: &TestDb, table: &str, at_least: i64) {
    eventually("the statistics to see the changes", WAIT, || async {
        let seen: i64 = sqlx::query_scalar(
            "SELECT n_dead_tup + n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        seen >= at_least
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn table_maintenance_does_what_autovacuum_would_only_when_the_server_does_not() {
    use whistle_store::maintenance::{self, Work};

    let db = TestDb::create().await;
    // Outbox churn: 500 events written and relayed (deleted), as intake and the relay do.
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload)
         SELECT gen_random_uuid(), 'whistle.evt.test', '\\x00' FROM generate_series(1, 500)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM outbox")
        .execute(&db.pool)
        .await
        .unwrap();
    changes_seen(&db, "outbox", 1000).await;

    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let due = maintenance::due(&db.pool).await.unwrap();
    if autovacuum == "on" {
        assert_eq!(
            due,
            [],
            "with autovacuum on, dispatch leaves the tables to it"
        );
    } else {
        assert!(due.contains(&Work::Vacuum("outbox".into())), "{due:?}");
        assert!(due.contains(&Work::Analyze("outbox".into())), "{due:?}");
    }

    // Either way the work itself runs, and the server records it.
    for work in [
        Work::Vacuum("outbox".into()),
        Work::Analyze("outbox".into()),
    ] {
        maintenance::perform(&db.pool, &work).await.unwrap();
    }
    let (vacuumed, analyzed): (bool, bool) = sqlx::query_as(
        "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'outbox'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(vacuumed && analyzed);
    eventually("the outbox to be no longer due", WAIT, || async {
        !maintenance::due(&db.pool)
            .await
            .unwrap()
            .iter()
            .any(|w| matches!(w, Work::Vacuum(t) | Work::Analyze(t) if t == "outbox"))
    })
    .await
    .unwrap();

    let unknown = maintenance::perform(&db.pool, &Work::Analyze("no \"such\" table".into())).await;
    assert!(
        unknown.unwrap_err().to_string().contains("does not exist"),
        "a table name is quoted, never spliced"
    );
}
