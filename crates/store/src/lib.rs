//! The PostgreSQL side of Whistle: the schema (embedded sqlx migrations) and every query.
//!
//! Dispatch is the only writer of incident state; it writes through [`intake`] and the
//! [`outbox`]. Queries are runtime-checked (`sqlx::query`), so building needs no database.
//! Hot-path writes are multi-row `INSERT … SELECT * FROM UNNEST(…)`, one round trip per table
//! per batch.

pub mod audit;
pub mod contacts;
pub mod devices;
pub mod expand;
pub mod incidents;
pub mod intake;
pub mod leaders;
pub mod listen;
pub mod maintenance;
pub mod notifications;
pub mod org;
pub mod outbox;
pub mod people;
pub mod photos;
pub mod policies;
pub mod proactive;
pub mod retention;
pub mod roles;
pub mod tasks;
pub mod timeline;
pub mod tokens;
pub mod tracking;
pub mod volunteers;

use std::time::Duration;

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

pub use sqlx::PgPool as Pool;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("contact keyring: {0}")]
    Keyring(String),
    #[error("database roles: {0}")]
    Roles(String),
    /// An argument the caller must correct.
    #[error("{0}")]
    Invalid(String),
    /// The intake lease passed to another replica: this one must stop recording reports.
    #[error("the intake lease is held by another replica")]
    LeaseLost,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The schema migrations, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Settings of every connection: JIT compilation off. Its threshold is a planner cost estimate,
/// and a statement estimated above it (intake's cluster count after a flood of reports) spent
/// 15–30 ms compiling for a run of a few milliseconds; nothing here runs long enough to gain.
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    Ok(url.parse::<PgConnectOptions>()?.options([("jit", "off")]))
}

/// Opens a pool. Connections are checked out lazily; the first query fails clearly if the server
/// is not there.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    // Plan every execution with the table sizes of the moment: a generic plan cached while a table
    // was small (a new installation, or a server without autovacuum) would keep scanning it whole
    // once it is large.
    let options = connect_options(url)?.options([("plan_cache_mode", "force_custom_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// One connection kept open for a hot loop of dispatch (intake, the outbox relay), instead of a
/// pool checkout per transaction: that saves the pool's health check before and after each
/// checkout and the `SET LOCAL` that undid the pool's `force_custom_plan`, about a quarter of a
/// small batch's time at 2,000 reports/s (see docs/benchmarks.md).
///
/// Its plans are cached (`plan_cache_mode` stays `auto`): these statements have the same shapes
/// batch after batch, and planning each anew cost a fifth of a batch. Cached plans are made again
/// whenever the tables are analysed, by autovacuum or by dispatch's maintenance when that is off;
/// and, because a plan cached while the tables were empty (a new installation) scans them whole
/// until the first analyse — 127 ms a batch at 70,000 reports, 50 s into a run — also each time
/// the rows written through the connection have grown tenfold ([`Dedicated::wrote`]).
///
/// After any failed use ([`Dedicated::check`]) the connection is dropped and the next use opens
/// a new one, so a server restart or a broken socket costs one failed batch, which is retried.
pub struct Dedicated {
    options: PgConnectOptions,
    conn: Option<sqlx::PgConnection>,
    /// Rows written through this connection ([`Dedicated::wrote`]) …
    written: u64,
    /// … and the count at which its cached plans are made again.
    replan_at: u64,
}

/// The rows written after which a [`Dedicated`] connection first plans its statements again.
const FIRST_REPLAN: u64 = 1_000;

impl Dedicated {
    /// Does not connect yet: the first [`Dedicated::get`] does.
    pub fn new(url: &str) -> Result<Self> {
        Ok(Dedicated {
            options: connect_options(url)?,
            conn: None,
            written: 0,
            replan_at: FIRST_REPLAN,
        })
    }

    /// The open connection, opening it first if needed.
    pub async fn get(&mut self) -> Result<&mut sqlx::PgConnection> {
        use sqlx::{ConnectOptions as _, Connection as _};
        if self.written >= self.replan_at {
            self.replan_at = self.written.saturating_mul(10);
            if let Some(conn) = &mut self.conn {
                // Its prepared statements go, and with them their plans: the next executions
                // are planned for the tables as they are now.
                if let Err(e) = conn.clear_cached_statements().await {
                    self.conn = None;
                    return Err(e.into());
                }
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.options.connect().await?);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Counts `rows` written through this connection: once they have grown tenfold since its
    /// statements were planned (1,000, 10,000, …), the next [`Dedicated::get`] drops the plans.
    pub fn wrote(&mut self, rows: u64) {
        self.written = self.written.saturating_add(rows);
    }

    /// Passes `result` through, dropping the connection if it is an error: whatever failed (a
    /// constraint, a restart, the network), the next use starts on a fresh connection with no
    /// transaction or half-read reply left over.
    pub fn check<T, E>(&mut self, result: std::result::Result<T, E>) -> std::result::Result<T, E> {
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// Applies pending migrations, and records those it applied on the audit log
/// (`schema.migrate`, the versions before and after). Safe to run from several processes at once
/// (sqlx takes an advisory lock). Needs the owner's rights; see [`roles`].
pub async fn migrate(pool: &PgPool, actor: &audit::Actor) -> Result<()> {
    migrate_with(pool, &MIGRATOR, actor).await.map(drop)
}

/// [`migrate`] with other migrations than this binary's (an upgrade drill's: another release's
/// directory, loaded with `Migrator::new`); the versions it applied.
pub async fn migrate_with(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
    actor: &audit::Actor,
) -> Result<Vec<i64>> {
    let before = applied_migrations(pool).await?;
    migrator.run(pool).await?;
    let after = applied_migrations(pool).await?;
    let applied: Vec<i64> = after
        .iter()
        .filter(|v| !before.contains(v))
        .copied()
        .collect();
    if applied.is_empty() {
        return Ok(applied);
    }
    // Recorded after the fact: sqlx commits each migration on its own, and the log table itself
    // is made by one of them. Two processes migrating at once may both record the versions that
    // appeared while they waited for sqlx's lock (an entry too many, never one too few).
    let entry = audit::Entry {
        action: audit::action::SCHEMA_MIGRATE,
        target: "schema".to_owned(),
        area_code: String::new(),
        before: Some(serde_json::json!({ "latest": before.iter().max(), "applied": before.len() })),
        after: Some(serde_json::json!({
            "latest": after.iter().max(),
            "applied": after.len(),
            "versions": applied,
        })),
    };
    let mut conn = pool.acquire().await?;
    audit::record(&mut conn, actor, chrono::Utc::now(), &[entry]).await?;
    Ok(applied)
}

/// The versions of the migrations applied so far (none before the first).
async fn applied_migrations(pool: &PgPool) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .or_else(|e| match e.as_database_error().and_then(|d| d.code()) {
                // 42P01: no _sqlx_migrations yet, nothing applied.
                Some(code) if code == "42P01" => Ok(Vec::new()),
                _ => Err(e),
            })?,
    )
}

/// How many of this binary's migrations the database lacks. Only reads `_sqlx_migrations`, so
/// a service without the right to migrate can tell an up-to-date schema from one to migrate.
pub async fn pending_migrations(pool: &PgPool) -> Result<usize> {
    let applied = applied_migrations(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count())
}
