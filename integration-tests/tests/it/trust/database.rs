//! PostgreSQL's separate roles (docs/security.md, "Database roles"): what the dispatch and query
//! roles may and may not do, that tables made later get the same rights, and that passwords are
//! checked (SCRAM) and rotate.

use sqlx::PgPool;
use whistle_store::roles::{self, Passwords};

use crate::harness::*;

const INSUFFICIENT_PRIVILEGE: &str = "42501";
const INVALID_PASSWORD: &str = "28P01";

fn code(result: &Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> Option<String> {
    let e = result.as_ref().err()?;
    e.as_database_error()?.code().map(|c| c.into_owned())
}

async fn run(pool: &PgPool, sql: &str) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    sqlx::raw_sql(sql).execute(pool).await
}

async fn assert_allowed(pool: &PgPool, role: &str, statements: &[&str]) {
    for sql in statements {
        if let Err(e) = run(pool, sql).await {
            panic!("{role} may run {sql}, but: {e}");
        }
    }
}

async fn assert_denied(pool: &PgPool, role: &str, statements: &[&str]) {
    for sql in statements {
        let result = run(pool, sql).await;
        assert_eq!(
            code(&result).as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{role} must not run {sql}: {result:?}"
        );
    }
}

/// Writes no row and breaks no constraint: only the privilege is checked.
const ROW_WRITES: [&str; 12] = [
    "INSERT INTO incidents SELECT * FROM incidents WHERE false",
    "UPDATE incidents SET version = version WHERE false",
    "DELETE FROM incidents WHERE false",
    "INSERT INTO tasks SELECT * FROM tasks WHERE false",
    "UPDATE tasks SET status = status WHERE false",
    "DELETE FROM tasks WHERE false",
    "INSERT INTO timeline SELECT * FROM timeline WHERE false",
    "UPDATE timeline SET kind = kind WHERE false",
    "DELETE FROM timeline WHERE false",
    "INSERT INTO api_tokens SELECT * FROM api_tokens WHERE false",
    "UPDATE api_tokens SET revoked_at = now() WHERE false",
    "DELETE FROM api_tokens WHERE false",
];

const SCHEMA_CHANGES: [&str; 7] = [
    "CREATE TABLE intruder (id int)",
    "DROP TABLE incidents",
    "ALTER TABLE incidents ADD COLUMN intruder int",
    "CREATE INDEX intruder ON incidents (title)",
    "TRUNCATE outbox",
    "INSERT INTO _sqlx_migrations SELECT * FROM _sqlx_migrations WHERE false",
    "DELETE FROM _sqlx_migrations WHERE false",
];

#[tokio::test]
async fn the_query_role_reads_and_only_appends_to_the_contact_log() {
    let stack = Stack::builder().database_only().start().await;
    let query = whistle_store::connect(&stack.db().query_url, 1)
        .await
        .unwrap();
    assert_allowed(
        &query,
        "query",
        &[
            "SELECT count(*) FROM incidents",
            "SELECT count(*) FROM tasks",
            "SELECT count(*) FROM timeline",
            "SELECT count(*) FROM api_tokens",
            "SELECT count(*) FROM report_contacts",
            "INSERT INTO contact_access (id, at, token_id, role, incident_id, report_id, door)
             VALUES (gen_random_uuid(), now(), gen_random_uuid(), 'operator', gen_random_uuid(), 'r-1', 'grpc')",
        ],
    )
    .await;
    assert_denied(&query, "query", &ROW_WRITES).await;
    assert_denied(&query, "query", &SCHEMA_CHANGES).await;
    assert_denied(
        &query,
        "query",
        &[
            "UPDATE contact_access SET door = 'x'",
            "DELETE FROM contact_access",
            "INSERT INTO report_contacts SELECT * FROM report_contacts WHERE false",
        ],
    )
    .await;
    assert_eq!(
        stack
            .db()
            .count("SELECT count(*) FROM contact_access")
            .await,
        1
    );
}

#[tokio::test]
async fn the_dispatch_role_writes_rows_but_not_the_schema() {
    let stack = Stack::builder().database_only().start().await;
    let dispatch = whistle_store::connect(&stack.db().dispatch_url, 1)
        .await
        .unwrap();
    assert_allowed(&dispatch, "dispatch", &ROW_WRITES).await;
    // A row for real, through the outbox's sequence.
    assert_allowed(
        &dispatch,
        "dispatch",
        &[
            "INSERT INTO outbox (event_id, subject, payload) VALUES (gen_random_uuid(), 's', '')",
            "DELETE FROM outbox",
        ],
    )
    .await;
    assert_denied(&dispatch, "dispatch", &SCHEMA_CHANGES).await;
    // It tells an up-to-date schema from one to migrate, but cannot migrate.
    assert_eq!(
        whistle_store::pending_migrations(&dispatch).await.unwrap(),
        0
    );
    assert!(whistle_store::migrate(&dispatch, &admin()).await.is_err());
}

#[tokio::test]
async fn a_table_made_by_a_later_migration_gets_the_same_rights() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    // What a later migration does, as the owner; the default privileges give the rights at once.
    run(
        &db.pool,
        "CREATE TABLE later_table (id bigserial PRIMARY KEY, note text)",
    )
    .await
    .unwrap();
    let dispatch = whistle_store::connect(&db.dispatch_url, 1).await.unwrap();
    let query = whistle_store::connect(&db.query_url, 1).await.unwrap();
    let check = || async {
        assert_allowed(
            &dispatch,
            "dispatch",
            &[
                "INSERT INTO later_table (note) VALUES ('x')",
                "UPDATE later_table SET note = 'y'",
            ],
        )
        .await;
        assert_denied(&dispatch, "dispatch", &["TRUNCATE later_table"]).await;
        assert_allowed(&query, "query", &["SELECT * FROM later_table"]).await;
        assert_denied(
            &query,
            "query",
            &["INSERT INTO later_table (note) VALUES ('x')"],
        )
        .await;
    };
    check().await;
    // And `whistle migrate`'s grant, after every migration, keeps them as they are.
    assert!(roles::grant(&db.pool, &db.roles).await.unwrap());
    check().await;
    assert!(
        !roles::grant(&db.pool, &roles::Roles::with_prefix("no_such").unwrap())
            .await
            .unwrap(),
        "without the roles there is nothing to grant"
    );
}

/// Connects as the query role with `password`: None if the server refused the password.
async fn login(db: &TestDb, password: &str) -> Option<PgPool> {
    let url = roles::login_url(&db.query_url, &db.roles.query, Some(password));
    match whistle_store::connect(&url, 1).await {
        Ok(pool) => Some(pool),
        Err(whistle_store::Error::Database(e))
            if e.as_database_error().and_then(|d| d.code()).as_deref()
                == Some(INVALID_PASSWORD) =>
        {
            None
        }
        Err(e) => panic!("connecting as the query role: {e}"),
    }
}

#[tokio::test]
async fn passwords_are_checked_and_rotate() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    if login(db, "not-the-password").await.is_some() {
        eprintln!(
            "SKIPPED: the server of DATABASE_URL lets anyone in without a password (trust); \
             deploy/local/env.sh's private cluster checks them"
        );
        return;
    }
    let old = db.query_url.clone();
    // Rotation: provisioning again with new passwords, twice at once (it serialises itself).
    let admin = whistle_store::connect(&db.admin_url(), 2).await.unwrap();
    let new = Passwords::generate();
    let (a, b) = tokio::join!(
        roles::provision(&admin, &db.roles, &new),
        roles::provision(&admin, &db.roles, &new)
    );
    a.unwrap();
    b.unwrap();
    assert!(login(db, &new.query).await.is_some(), "the new password");
    let old_password = old
        .split_once("_query:")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .0;
    assert!(
        login(db, old_password).await.is_none(),
        "the old password is refused"
    );
    // The query role's stored password is a SCRAM verifier, not the password.
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&db.roles.query)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
}
