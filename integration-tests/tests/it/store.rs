//! The store: migrations, seeding and the append-only timeline.

use crate::harness::*;

#[tokio::test]
async fn seeding_is_idempotent_and_loads_back_the_same_tree() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db(); // migrated and seeded once
    let dataset = whistle_domain::ordos::dataset();
    let again = whistle_store::org::seed(&db.pool, &dataset, &admin())
        .await
        .unwrap();
    assert_eq!(
        again,
        whistle_store::org::SeedCounts::default(),
        "a second seed changes nothing"
    );
    whistle_store::migrate(&db.pool, &admin())
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
    let changed = whistle_store::org::seed(&db.pool, &edited, &admin())
        .await
        .unwrap();
    assert_eq!(changed.units, 1);
}

/// A bare incident row in a seeded grid, for tests of the tables that refer to incidents.
async fn insert_incident(db: &TestDb, id: uuid::Uuid) {
    sqlx::query(
        "INSERT INTO incidents (id, status, level, category, urgency, title, description, district_code, street_code,
             community_code, grid_code, reporter_id, policy_version, reported_at, created_at, updated_at)
         VALUES ($1, 'handling', 'community', 'heating.no_heat', 'normal', 't', '', '150602', '150602001',
             '150602001001', '150602001001001', 'gw-150602001001001', 'test', now(), now(), now())",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_timeline_refuses_updates_and_deletes() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    insert_incident(db, "01900000-0000-7000-8000-000000000001".parse().unwrap()).await;
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

    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    // Outbox churn: 500 events written and relayed (deleted), as intake and the relay do.
    let churn = || async {
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
    };
    let outbox_size = || async {
        sqlx::query_scalar::<_, i64>("SELECT pg_relation_size('outbox')")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    churn().await;
    changes_seen(db, "outbox", 1000).await;
    let churned = outbox_size().await;
    assert!(churned > 0);

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
    // The emptied outbox keeps its pages (truncating them would take an exclusive lock that
    // stalls intake and the relay) and the next events reuse them.
    assert_eq!(outbox_size().await, churned, "VACUUM left the pages");
    eventually("the outbox to be no longer due", WAIT, || async {
        !maintenance::due(&db.pool)
            .await
            .unwrap()
            .iter()
            .any(|w| matches!(w, Work::Vacuum(t) | Work::Analyze(t) if t == "outbox"))
    })
    .await
    .unwrap();
    churn().await;
    assert_eq!(
        outbox_size().await,
        churned,
        "the next events reused the pages"
    );

    let unknown = maintenance::perform(&db.pool, &Work::Analyze("no \"such\" table".into())).await;
    assert!(
        unknown.unwrap_err().to_string().contains("does not exist"),
        "a table name is quoted, never spliced"
    );
}

/// What a batch of saves left: each incident's state columns, its timers, its timeline, and the
/// outbox in order.
async fn saved_rows(db: &TestDb) -> Vec<String> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws(' ', 'incident', id, status, version, due_at, state->>'version') FROM incidents
         UNION ALL SELECT concat_ws(' ', 'timer', incident_id, key, due_at) FROM timers
         UNION ALL SELECT concat_ws(' ', 'timeline', incident_id, seq, kind, note, data) FROM timeline
         UNION ALL SELECT concat_ws(' ', 'outbox', id, event_id, subject) FROM outbox
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows
}

#[tokio::test]
async fn saving_transitions_together_leaves_what_saving_them_one_by_one_leaves() {
    use chrono::{TimeDelta, Utc};
    use whistle_domain::incident::{self, Timer};
    use whistle_store::{
        incidents::{self, Changes, Save, TimelineEntry},
        intake::OutboxEvent,
    };

    let policy = whistle_domain::policy::builtin("ordos").unwrap();
    let category = policy.categories().next().unwrap();
    let now = Utc::now();
    let calendar = whistle_domain::calendar::Calendar::builtin();
    let (opened, _) = incident::open(
        "150602001001001".parse().unwrap(),
        category,
        &policy,
        &calendar,
        now,
    );
    let mut later = opened.clone();
    later.version += 2;
    later.resolve_due = now + TimeDelta::hours(5);
    let ids = [
        uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
    ];
    let entry = |kind: &str| TimelineEntry {
        kind: kind.to_owned(),
        actor_id: "system".to_owned(),
        at: now,
        note: format!("{kind} note"),
        data: Some(serde_json::json!({ "timer": kind })),
    };
    let event = |n: u128| OutboxEvent {
        event_id: uuid::Uuid::from_u128(n),
        subject: format!("whistle.events.test.{n}"),
        payload: vec![n as u8],
    };
    let at = |minutes| now + TimeDelta::minutes(minutes);
    // Incident 0 twice: a timer scheduled and then fired, one cancelled and scheduled again, one
    // left alone; incident 1 once, in between.
    let changes = [
        Changes {
            schedule: vec![(Timer::LevelWindow, at(1)), (Timer::ResolveDeadline, at(2))],
            timeline: vec![entry("first")],
            events: vec![event(1)],
            ..Default::default()
        },
        Changes {
            schedule: vec![(Timer::LevelWindow, at(3))],
            timeline: vec![entry("other")],
            events: vec![event(2)],
            ..Default::default()
        },
        Changes {
            fired: Some(Timer::LevelWindow),
            cancel: vec![Timer::ResolveDeadline, Timer::FollowUpDeadline],
            schedule: vec![
                (Timer::ResolveDeadline, at(4)),
                (Timer::AcceptDeadline { task: 1 }, at(5)),
            ],
            timeline: vec![entry("second"), entry("third")],
            events: vec![event(3), event(4)],
        },
    ];
    let saves = [
        Save {
            id: ids[0],
            state: &opened,
            changes: &changes[0],
        },
        Save {
            id: ids[1],
            state: &opened,
            changes: &changes[1],
        },
        Save {
            id: ids[0],
            state: &later,
            changes: &changes[2],
        },
    ];

    let mut results = Vec::new();
    for together in [true, false] {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        for id in ids {
            insert_incident(db, id).await;
        }
        // A timer of incident 0 that no save touches.
        sqlx::query(
            "INSERT INTO timers (incident_id, key, due_at) VALUES ($1, 'accept_deadline:9', $2)",
        )
        .bind(ids[0])
        .bind(at(9))
        .execute(&db.pool)
        .await
        .unwrap();
        let mut tx = db.pool.begin().await.unwrap();
        if together {
            incidents::save_all(&mut tx, &saves, now).await.unwrap();
        } else {
            for save in &saves {
                incidents::save(&mut tx, save.id, save.state, save.changes, now)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
        results.push(saved_rows(db).await);
    }
    assert_eq!(results[0], results[1]);

    let rows = &results[0];
    let timers: Vec<&String> = rows.iter().filter(|r| r.starts_with("timer ")).collect();
    assert_eq!(timers.len(), 4, "{timers:#?}");
    let of_first: Vec<&&String> = timers
        .iter()
        .filter(|r| r.contains(&ids[0].to_string()))
        .collect();
    assert!(
        !of_first.iter().any(|r| r.contains("level_window")),
        "fired: {of_first:#?}"
    );
    assert!(
        of_first.iter().any(|r| r.contains("resolve_deadline")),
        "scheduled again"
    );
    assert!(
        of_first.iter().any(|r| r.contains("accept_deadline:9")),
        "untouched"
    );
    let timeline: Vec<&String> = rows.iter().filter(|r| r.starts_with("timeline ")).collect();
    let first_id = ids[0].to_string();
    let expected = [
        format!("timeline {first_id} 1 first"),
        format!("timeline {first_id} 2 second"),
        format!("timeline {first_id} 3 third"),
    ];
    for (row, expected) in timeline.iter().zip(&expected) {
        assert!(
            row.starts_with(expected.as_str()),
            "{row} is not {expected}"
        );
    }
    let version = format!("incident {first_id} handling {}", later.version);
    assert!(
        rows.iter().any(|r| r.starts_with(&version)),
        "the last state wins: {rows:#?}"
    );
    let outbox: Vec<&String> = rows.iter().filter(|r| r.starts_with("outbox ")).collect();
    assert_eq!(outbox.len(), 4);
}

#[tokio::test]
async fn deadlines_at_the_same_instant_come_in_a_fixed_order_whatever_the_row_order() {
    use whistle_domain::incident::Timer;
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let at = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let ids: Vec<uuid::Uuid> = (1..=3)
        .map(|n| uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n))
        .collect();
    for id in &ids {
        insert_incident(db, *id).await;
    }
    // Written in an order that is neither the incidents' nor the keys'.
    for (id, key) in [
        (ids[2], "resolve_deadline"),
        (ids[0], "resolve_deadline"),
        (ids[1], "level_window"),
        (ids[0], "level_window"),
        (ids[2], "level_window"),
    ] {
        sqlx::query("INSERT INTO timers (incident_id, key, due_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(key)
            .bind(at)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let mut conn = db.pool.acquire().await.unwrap();
    let due = whistle_store::incidents::due_timers(&mut conn, chrono::Utc::now(), 10)
        .await
        .unwrap();
    let order: Vec<(uuid::Uuid, Timer)> = due.iter().map(|d| (d.incident_id, d.timer)).collect();
    assert_eq!(
        order,
        vec![
            (ids[0], Timer::LevelWindow),
            (ids[0], Timer::ResolveDeadline),
            (ids[1], Timer::LevelWindow),
            (ids[2], Timer::LevelWindow),
            (ids[2], Timer::ResolveDeadline),
        ]
    );
}

async fn outbox_ids(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_relay_at_a_time_claims_the_oldest_events_and_a_dropped_claim_leaves_them() {
    use whistle_store::outbox;

    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    for n in 0..5 {
        sqlx::query("INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(format!("whistle.event.150602.150602001.test.{n}"))
            .bind(vec![n as u8])
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let all = outbox_ids(db).await;
    let (mut first, mut second) = (
        db.pool.acquire().await.unwrap(),
        db.pool.acquire().await.unwrap(),
    );

    let claim = outbox::claim(&mut first, 3).await.unwrap();
    let claimed: Vec<i64> = claim.events.iter().map(|e| e.id).collect();
    assert_eq!(claimed, all[..3], "the three oldest, in order");
    assert_eq!(claim.events[1].payload, vec![1]);
    let other = outbox::claim(&mut second, 10).await.unwrap();
    assert!(
        other.events.is_empty(),
        "another relay gets nothing while the first holds its claim"
    );
    drop(other);
    claim.complete().await.unwrap();
    assert_eq!(
        outbox_ids(db).await,
        all[3..],
        "completing deletes what was claimed"
    );

    let rest = outbox::claim(&mut second, 10).await.unwrap();
    assert_eq!(
        rest.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        all[3..]
    );
    drop(rest);
    // sqlx rolls a dropped transaction back when its connection is next used (the relay closes
    // the connection instead).
    sqlx::query("SELECT 1").execute(&mut *second).await.unwrap();
    assert_eq!(
        outbox_ids(db).await,
        all[3..],
        "a claim dropped before completing (a failed publish) leaves its events pending"
    );
    let again = outbox::claim(&mut first, 10).await.unwrap();
    assert_eq!(
        again.events.len(),
        2,
        "and the next round claims them again"
    );
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> sqlx::Result<i32> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

#[tokio::test]
async fn a_dedicated_connection_that_failed_opens_a_new_one_on_next_use() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let mut dedicated = whistle_store::Dedicated::new(&db.url).unwrap();
    let first = backend_pid(dedicated.get().await.unwrap()).await.unwrap();
    assert_eq!(
        backend_pid(dedicated.get().await.unwrap()).await.unwrap(),
        first,
        "the same connection serves use after use"
    );

    // The server drops it, as on a restart or a network fault.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&db.pool)
        .await
        .unwrap();
    eventually("the backend to exit", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(first)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            == 0
    })
    .await
    .unwrap();
    let broken = backend_pid(dedicated.get().await.unwrap()).await;
    assert!(dedicated.check(broken).is_err());

    let fresh = backend_pid(dedicated.get().await.unwrap()).await.unwrap();
    assert_ne!(fresh, first, "a new connection after the failure");
}

/// Statements this session holds prepared, read without preparing another.
async fn prepared(conn: &mut sqlx::PgConnection) -> i64 {
    use sqlx::Row as _;
    sqlx::raw_sql("SELECT count(*) FROM pg_prepared_statements")
        .fetch_one(conn)
        .await
        .unwrap()
        .get(0)
}

/// A statement shaped like intake's lookups, prepared and cached.
async fn lookup(conn: &mut sqlx::PgConnection) {
    sqlx::query_scalar::<_, String>("SELECT report_id FROM reports WHERE report_id = ANY($1)")
        .bind(vec!["r-1".to_owned()])
        .fetch_all(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dedicated_connection_plans_its_statements_again_as_the_rows_it_wrote_grow_tenfold() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let mut dedicated = whistle_store::Dedicated::new(&db.url).unwrap();
    lookup(dedicated.get().await.unwrap()).await;
    assert_eq!(prepared(dedicated.get().await.unwrap()).await, 1);

    // Planned on an empty table; 999 rows later the plan is kept …
    dedicated.wrote(999);
    assert_eq!(prepared(dedicated.get().await.unwrap()).await, 1);
    // … at 1,000 it goes, and the next execution is planned for the table as it is then.
    dedicated.wrote(1);
    assert_eq!(prepared(dedicated.get().await.unwrap()).await, 0);
    lookup(dedicated.get().await.unwrap()).await;
    // The next time is at ten times as many.
    dedicated.wrote(8_999);
    assert_eq!(prepared(dedicated.get().await.unwrap()).await, 1);
    dedicated.wrote(1);
    assert_eq!(prepared(dedicated.get().await.unwrap()).await, 0);
}

pub(crate) mod batches {
    use chrono::{DateTime, TimeDelta, Utc};
    use uuid::Uuid;
    use whistle_store::intake::{
        lease, record, Attachment, ClusterAlert, ClusterRule, DuplicateRule, IntakeEvents, Memory,
        NewIncident, OutboxEvent, Owner, Recorded, Rules,
    };

    use crate::harness::{Count as _, Stack, TestDb};

    /// Events whose subject says what they announce, and whose payload is the attached count.
    pub(crate) struct Named;
    impl IntakeEvents for Named {
        fn attached(&self, _: &NewIncident, to: &Attachment) -> OutboxEvent {
            OutboxEvent {
                event_id: Uuid::now_v7(),
                subject: format!("attached.{}", to.incident_id),
                payload: to.report_count.to_string().into_bytes(),
            }
        }
        fn cluster(&self, alert: &ClusterAlert) -> OutboxEvent {
            OutboxEvent {
                event_id: Uuid::now_v7(),
                subject: format!("cluster.{}.{}", alert.community_code, alert.category),
                payload: alert.reports.to_string().into_bytes(),
            }
        }
    }

    const COMMUNITY: &str = "150602001001";

    /// A report in grid `n` of one community, `east_m` metres east of a point in Ordos.
    pub(crate) fn report(id: &str, n: u32, east_m: f64, at: DateTime<Utc>) -> NewIncident {
        let incident_id = Uuid::now_v7();
        NewIncident {
            incident_id,
            report_id: id.into(),
            reporter_id: format!("gw-{COMMUNITY}00{n}"),
            status: "handling",
            level: "community",
            category: "sanitation.garbage".into(),
            urgency: "normal",
            title: "garbage".into(),
            description: String::new(),
            district_code: "150602".into(),
            street_code: "150602001".into(),
            community_code: COMMUNITY.into(),
            grid_code: format!("{COMMUNITY}00{n}"),
            lat: Some(39.6),
            // ≈ 85.8 km a degree of longitude at 39.6° N.
            lon: Some(109.78 + east_m / 85_800.0),
            address: String::new(),
            policy_version: "test".into(),
            occurred_at: None,
            reported_at: at,
            received_at: at,
            due_at: None,
            level_due_at: None,
            report_payload: vec![],
            contact: None,
            tracking: None,
            photo_ids: Vec::new(),
            channel: "grid_worker",
            stream_sequence: None,
            state: "{}".into(),
            timers: vec![],
            event: OutboxEvent {
                event_id: Uuid::now_v7(),
                subject: format!("reported.{incident_id}"),
                payload: vec![],
            },
        }
    }

    pub(crate) const RULES: Rules = Rules {
        duplicates: DuplicateRule {
            radius_m: 100.0,
            window: TimeDelta::hours(24),
        },
        clusters: ClusterRule {
            threshold: 5,
            window: TimeDelta::minutes(30),
        },
    };

    /// Takes the intake lease and reads the state, as a dispatch replica does on taking over.
    pub(crate) async fn take_over(db: &TestDb, holder: &str, now: DateTime<Utc>) -> Owner {
        let mut conn = db.pool.acquire().await.unwrap();
        let lease = lease::acquire(&mut conn, holder, std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the lease is free");
        let memory = Memory::load(&mut conn, RULES, now).await.unwrap();
        Owner {
            lease,
            memory: memory.into(),
        }
    }

    async fn record_batch(db: &TestDb, owner: &Owner, reports: &[NewIncident]) -> Recorded {
        record(
            &mut db.pool.acquire().await.unwrap(),
            &reports.iter().collect::<Vec<_>>(),
            &[],
            &Named,
            owner,
        )
        .await
        .expect("recorded")
    }

    async fn subjects(db: &TestDb) -> Vec<(String, String)> {
        sqlx::query_as("SELECT subject, convert_from(payload, 'UTF8') FROM outbox ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    }

    /// The cluster count adds the batch's own reports to those stored before it, attached ones
    /// included; an attachment's count is the incident's as locked plus the batch's.
    #[tokio::test]
    async fn a_batch_that_brings_a_community_to_the_threshold_raises_one_alert_with_its_own_reports(
    ) {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        let t = Utc::now();
        let owner = take_over(db, "a", t).await;
        let first = [
            report("c-1", 1, 0.0, t),
            report("c-2", 2, 1_000.0, t),
            report("c-3", 3, 2_000.0, t),
        ];
        let recorded = record_batch(db, &owner, &first).await;
        assert_eq!(recorded.incidents.len(), 3);
        assert!(recorded.clusters.is_empty(), "3 reports, threshold 5");

        let t = t + TimeDelta::minutes(1);
        // Two new incidents, and two reports 30 m from c-1's: attached to it, the second
        // counting the first.
        let second = [
            report("c-4", 4, 3_000.0, t),
            report("c-5", 1, 30.0, t),
            report("c-6", 5, 4_000.0, t),
            report("c-7", 1, -30.0, t),
        ];
        let recorded = record_batch(db, &owner, &second).await;
        assert_eq!(recorded.incidents.len(), 2);
        assert_eq!(recorded.attached.len(), 2);
        assert_eq!(recorded.clusters.len(), 1, "{:?}", recorded.clusters);
        assert_eq!(recorded.clusters[0].reports, 7, "3 stored + 4 in the batch");
        assert_eq!(
            recorded.clusters[0].window_start,
            t - TimeDelta::minutes(30)
        );

        // Delivered again: nothing new, no event.
        let again = record_batch(db, &owner, &second).await;
        assert_eq!(again, Recorded::default());
        // One more report in the window: the pair has its alert already.
        let third = [report("c-8", 6, 5_000.0, t + TimeDelta::minutes(2))];
        assert!(record_batch(db, &owner, &third).await.clusters.is_empty());

        let c1 = recorded.attached["c-5"];
        let events = subjects(db).await;
        let kinds: Vec<&str> = events
            .iter()
            .map(|(s, _)| s.split('.').next().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "reported", "reported", "reported", // first batch
                "reported", "reported", "attached", "attached", "cluster",  // second
                "reported", // third
            ]
        );
        let attached: Vec<&(String, String)> = events
            .iter()
            .filter(|(s, _)| *s == format!("attached.{c1}"))
            .collect();
        assert_eq!(
            attached.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        assert_eq!(
            db.count(&format!(
                "SELECT report_count::int8 FROM incidents WHERE id = '{c1}'"
            ))
            .await,
            3
        );
        assert_eq!(db.count("SELECT count(*) FROM reports").await, 8);
        assert_eq!(db.count("SELECT count(*) FROM cluster_alerts").await, 1);
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM timeline WHERE incident_id = '{c1}' AND kind = 'report.attached'"
            ))
            .await,
            2
        );
    }

    /// Under a steady flow a pair's alert expires while its window is full of reports: the next
    /// batch raises the next alert having counted the stored ones only up to the threshold.
    #[tokio::test]
    async fn an_expired_alert_is_raised_again_counting_only_up_to_the_threshold() {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        let t0 = Utc::now() - TimeDelta::hours(2);
        let owner = take_over(db, "a", t0).await;
        // A report a minute, each a new incident 1 km from the last: the fifth raises the alert,
        // the next 25 fall in its window.
        for minute in 0..30 {
            let at = t0 + TimeDelta::minutes(minute);
            let id = format!("s-{minute}");
            let recorded = record_batch(
                db,
                &owner,
                &[report(
                    &id,
                    1 + minute as u32 % 9,
                    minute as f64 * 1_000.0,
                    at,
                )],
            )
            .await;
            assert_eq!(
                recorded.clusters.len(),
                usize::from(minute == 4),
                "at minute {minute}"
            );
        }
        // 31 minutes after the first alert it has expired; 24 reports are in the new window.
        let at = t0 + TimeDelta::minutes(35);
        let recorded = record_batch(db, &owner, &[report("s-next", 2, 40_000.0, at)]).await;
        assert_eq!(recorded.clusters.len(), 1);
        assert_eq!(
            recorded.clusters[0].reports, 6,
            "counted up to the threshold of 5, plus the batch's own"
        );
        assert_eq!(db.count("SELECT count(*) FROM cluster_alerts").await, 2);
    }
}

/// Intake's memory against PostgreSQL: random histories of reports (located or not, near each
/// other or not, two categories, a few grids of two communities), incidents resolved, reopened
/// and closed behind intake's back, time jumping across both windows, and takeovers that read the
/// memory afresh. Before each batch the SQL definition of the rules (the lookup intake used to
/// run) says where every report belongs and which alerts the batch raises; the batch must do
/// exactly that.
mod memory_vs_sql {
    use std::collections::{BTreeMap, HashMap};

    use chrono::{DateTime, TimeDelta, Utc};
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use uuid::Uuid;
    use whistle_store::intake::{lease, record, NewIncident, Owner};

    use super::batches::{report, take_over, Named, RULES};
    use crate::harness::{Stack, TestDb};

    /// The oldest open incident `r` duplicates, by the rule's SQL definition.
    async fn sql_duplicate_of(db: &TestDb, r: &NewIncident) -> Option<Uuid> {
        sqlx::query_scalar(
            "SELECT id FROM incidents i
             WHERE i.category = $1 AND i.status IN ('handling', 'whistled', 'accepted')
               AND i.created_at >= $5 - make_interval(secs => $6)
               AND CASE WHEN $3::float8 IS NOT NULL AND i.lat IS NOT NULL
                        THEN 2 * 6371000 * asin(sqrt(power(sin(radians(i.lat - $3) / 2), 2)
                             + cos(radians($3)) * cos(radians(i.lat)) * power(sin(radians(i.lon - $4) / 2), 2))) <= $7
                        ELSE i.grid_code = $2 END
             ORDER BY i.created_at, i.id LIMIT 1",
        )
        .bind(&r.category)
        .bind(&r.grid_code)
        .bind(r.lat)
        .bind(r.lon)
        .bind(r.received_at)
        .bind(RULES.duplicates.window.num_seconds() as f64)
        .bind(RULES.duplicates.radius_m)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
    }

    /// The pair's stored reports in the window, up to the threshold; `None` if it has an alert
    /// in the window.
    async fn sql_cluster_count(
        db: &TestDb,
        community: &str,
        category: &str,
        start: DateTime<Utc>,
    ) -> Option<i64> {
        let (alerted, count): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT FROM cluster_alerts WHERE community_code = $1 AND category = $2 AND raised_at > $3),
                    (SELECT count(*) FROM (SELECT FROM reports WHERE left(grid_code, 12) = $1
                                           AND category = $2 AND received_at > $3 LIMIT $4) AS c)",
        )
        .bind(community)
        .bind(category)
        .bind(start)
        .bind(RULES.clusters.threshold)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (!alerted).then_some(count)
    }

    fn near_duplicate(a: &NewIncident, b: &NewIncident) -> bool {
        match (a.lat.zip(a.lon), b.lat.zip(b.lon)) {
            (Some(p), Some(q)) => {
                // The haversine of the SQL, in Rust.
                let (l1, l2) = (p.0.to_radians(), q.0.to_radians());
                let (dl, dn) = ((q.0 - p.0).to_radians(), (q.1 - p.1).to_radians());
                let h = (dl / 2.0).sin().powi(2) + l1.cos() * l2.cos() * (dn / 2.0).sin().powi(2);
                2.0 * 6_371_000.0 * h.sqrt().asin() <= RULES.duplicates.radius_m
            }
            _ => a.grid_code == b.grid_code,
        }
    }

    fn random_report(rng: &mut StdRng, n: usize, at: DateTime<Utc>) -> NewIncident {
        // Nine grids over two communities; places on a 60 m line, so neighbours are duplicates
        // and places three apart are not.
        let grid = rng.random_range(1..=9u32);
        let mut r = report(
            &format!("p-{n}"),
            grid,
            rng.random_range(0..12) as f64 * 60.0,
            at,
        );
        if grid > 6 {
            r.community_code = "150602001002".into();
            r.grid_code = format!("150602001002{grid:03}");
        }
        if rng.random_bool(0.5) {
            r.category = "roads.pothole".into();
        }
        if rng.random_bool(0.15) {
            (r.lat, r.lon) = (None, None);
        }
        r
    }

    async fn run(seed: u64) {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut t = Utc::now() - TimeDelta::days(10);
        let mut owner = take_over(db, &format!("holder-{seed}-0"), t).await;
        let mut n = 0;
        let (mut attached, mut opened, mut alerts) = (0, 0, 0);
        for round in 0..120 {
            // Time moves by seconds to more than a day, across both windows.
            t += match rng.random_range(0..10) {
                0 => TimeDelta::hours(rng.random_range(20..30)),
                1..=3 => TimeDelta::minutes(rng.random_range(5..40)),
                _ => TimeDelta::seconds(rng.random_range(1..120)),
            };
            // Behind intake's back, handlers move some incidents on (closed is for good).
            if rng.random_bool(0.3) {
                let status = ["resolved", "closed", "handling", "whistled"][rng.random_range(0..4)];
                sqlx::query(
                    "UPDATE incidents SET status = $1
                     WHERE id = (SELECT id FROM incidents WHERE status <> 'closed'
                                 ORDER BY random() LIMIT 1)",
                )
                .bind(status)
                .execute(&db.pool)
                .await
                .unwrap();
            }
            // Now and then another replica takes over and reads the state afresh.
            if round % 40 == 39 {
                let mut conn = db.pool.acquire().await.unwrap();
                lease::release(&mut conn, &owner.lease).await.unwrap();
                owner = take_over(db, &format!("holder-{seed}-{round}"), t).await;
            }
            let batch: Vec<NewIncident> = (0..rng.random_range(1..=4))
                .map(|_| {
                    n += 1;
                    random_report(&mut rng, n, t)
                })
                .collect();
            let expected = expect(db, &batch, t).await;
            let recorded = record(
                &mut db.pool.acquire().await.unwrap(),
                &batch.iter().collect::<Vec<_>>(),
                &[],
                &Named,
                &owner,
            )
            .await
            .expect("recorded");
            let got_attached: BTreeMap<String, Uuid> =
                recorded.attached.clone().into_iter().collect();
            assert_eq!(
                got_attached, expected.attached,
                "seed {seed}, round {round}: attachments"
            );
            let mut got_alerts: Vec<(String, String, i64)> = recorded
                .clusters
                .iter()
                .map(|a| (a.community_code.clone(), a.category.clone(), a.reports))
                .collect();
            got_alerts.sort();
            assert_eq!(
                got_alerts, expected.alerts,
                "seed {seed}, round {round}: alerts"
            );
            assert_eq!(
                recorded.incidents.len() + recorded.attached.len(),
                batch.len(),
                "seed {seed}, round {round}: every report recorded once"
            );
            attached += recorded.attached.len();
            opened += recorded.incidents.len();
            alerts += recorded.clusters.len();
        }
        // The history exercised every path.
        assert!(
            attached > 30 && opened > 30 && alerts > 3,
            "{attached} attached, {opened} opened, {alerts} alerts"
        );
    }

    struct Expected {
        attached: BTreeMap<String, Uuid>,
        alerts: Vec<(String, String, i64)>,
    }

    /// What the rules' SQL definition says a batch does (reports matching an earlier report of
    /// the same batch are attached to it, as intake has always done).
    async fn expect(db: &TestDb, batch: &[NewIncident], now: DateTime<Utc>) -> Expected {
        let mut attached = BTreeMap::new();
        let mut opened: Vec<&NewIncident> = Vec::new();
        for r in batch {
            match sql_duplicate_of(db, r).await {
                Some(id) => {
                    attached.insert(r.report_id.clone(), id);
                }
                None => match opened
                    .iter()
                    .find(|o| o.category == r.category && near_duplicate(o, r))
                {
                    Some(o) => {
                        attached.insert(r.report_id.clone(), o.incident_id);
                    }
                    None => opened.push(r),
                },
            }
        }
        let start = now - RULES.clusters.window;
        let mut in_batch: HashMap<(String, String), i64> = HashMap::new();
        for r in batch {
            *in_batch
                .entry((r.grid_code[..12].to_owned(), r.category.clone()))
                .or_default() += 1;
        }
        let mut alerts = Vec::new();
        for ((community, category), own) in in_batch {
            if let Some(stored) = sql_cluster_count(db, &community, &category, start).await {
                if stored + own >= RULES.clusters.threshold {
                    alerts.push((community, category, stored + own));
                }
            }
        }
        alerts.sort();
        Expected { attached, alerts }
    }

    #[tokio::test]
    async fn intake_memory_equals_the_sql_lookup() {
        for seed in 1..=3 {
            run(seed).await;
        }
    }

    /// A holder whose lease ran out and was taken records nothing: its batch is refused by the
    /// fence, and the new holder's goes through.
    #[tokio::test]
    async fn a_batch_of_a_holder_that_lost_the_lease_records_nothing() {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        let t = Utc::now();
        let old: Owner = take_over(db, "old", t).await;
        sqlx::query("UPDATE intake_owner SET expires_at = now() - interval '1 second'")
            .execute(&db.pool)
            .await
            .unwrap();
        let new = take_over(db, "new", t).await;
        assert_eq!(new.lease.epoch, old.lease.epoch + 1);
        let batch = [report("fenced-1", 1, 0.0, t)];
        let refused = record(
            &mut db.pool.acquire().await.unwrap(),
            &[&batch[0]],
            &[],
            &Named,
            &old,
        )
        .await;
        assert!(
            matches!(refused, Err(whistle_store::Error::LeaseLost)),
            "{refused:?}"
        );
        assert_eq!(
            crate::harness::Count::count(db, "SELECT count(*) FROM reports").await,
            0
        );
        let recorded = record(
            &mut db.pool.acquire().await.unwrap(),
            &[&batch[0]],
            &[],
            &Named,
            &new,
        )
        .await
        .unwrap();
        assert_eq!(recorded.incidents.len(), 1);
        let mut conn = db.pool.acquire().await.unwrap();
        assert!(
            !lease::renew(&mut conn, &old.lease, std::time::Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(
            lease::renew(&mut conn, &new.lease, std::time::Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(
            lease::acquire(&mut conn, "third", std::time::Duration::from_secs(5))
                .await
                .unwrap()
                .is_none()
        );
    }

    /// A takeover waits for the old holder's batch in flight (holding the fence) to commit, so
    /// the new holder reads the state with that batch in it.
    #[tokio::test]
    async fn a_takeover_waits_for_the_batch_in_flight() {
        let stack = Stack::builder().database_only().start().await;
        let db = stack.db();
        let t = Utc::now();
        let old = take_over(db, "old", t).await;
        // The old holder's batch, its fence taken, not yet committed.
        let mut in_flight = db.pool.begin().await.unwrap();
        let fenced: Option<i64> = sqlx::query_scalar(
            "SELECT epoch FROM intake_owner WHERE id = 1 AND epoch = $1 FOR KEY SHARE",
        )
        .bind(old.lease.epoch)
        .fetch_optional(&mut *in_flight)
        .await
        .unwrap();
        assert_eq!(fenced, Some(old.lease.epoch));
        sqlx::query("UPDATE intake_owner SET expires_at = now() - interval '1 second'")
            .execute(&db.pool)
            .await
            .unwrap();
        let pool = db.pool.clone();
        let takeover = tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            lease::acquire(&mut conn, "new", std::time::Duration::from_secs(60))
                .await
                .unwrap()
        });
        crate::harness::eventually("the takeover waits on the lease row", crate::harness::WAIT, || async {
            crate::harness::Count::count(
                db,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%intake_owner%'",
            )
            .await
                == 1
        })
        .await
        .unwrap();
        assert!(!takeover.is_finished());
        in_flight.commit().await.unwrap();
        let lease = takeover
            .await
            .unwrap()
            .expect("taken over once the batch committed");
        assert_eq!(lease.epoch, old.lease.epoch + 1);
    }
}

/// Neither the pool nor a dedicated connection JIT-compiles: compiling cost intake 15–30 ms on
/// statements that ran for a few.
#[tokio::test]
async fn store_connections_never_jit_compile() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let pool = whistle_store::connect(&db.url, 1).await.unwrap();
    let mut dedicated = whistle_store::Dedicated::new(&db.url).unwrap();
    let jit = "SELECT current_setting('jit')";
    let pooled: String = sqlx::query_scalar(jit).fetch_one(&pool).await.unwrap();
    let own: String = sqlx::query_scalar(jit)
        .fetch_one(dedicated.get().await.unwrap())
        .await
        .unwrap();
    assert_eq!((pooled.as_str(), own.as_str()), ("off", "off"));
}

/// A follower must learn that its `LISTEN` connection was lost, since what was notified meanwhile
/// is gone: it then reads again (the token cache empties, the org and policy are re-read).
#[tokio::test]
async fn a_listener_says_when_its_connection_was_lost_and_then_hears_again() {
    use whistle_store::listen::{Listener, Notice};
    let stack = Stack::builder().database_only().start().await;
    let pool = &stack.db().pool;
    let channel = "whistle_listen_test";
    let mut listener = Listener::new(
        pool.clone(),
        &[channel],
        std::time::Duration::from_millis(100),
        "the test's notifications",
    );
    async fn next(listener: &mut Listener) -> Notice {
        tokio::time::timeout(WAIT, listener.next())
            .await
            .expect("a notice")
    }
    assert_eq!(next(&mut listener).await, Notice::Connected);
    let notify = |payload: &'static str| async move {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(pool)
            .await
            .unwrap();
    };
    notify("one").await;
    assert_eq!(
        next(&mut listener).await,
        Notice::Notified {
            channel: channel.into(),
            payload: "one".into()
        }
    );

    // The listening backend is killed, as a restart or a network cut would end it.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%') killed",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one listening connection");
    assert_eq!(next(&mut listener).await, Notice::Connected);
    notify("two").await;
    assert_eq!(
        next(&mut listener).await,
        Notice::Notified {
            channel: channel.into(),
            payload: "two".into()
        }
    );
}
