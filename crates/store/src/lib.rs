//! The PostgreSQL side of Whistle: the schema (embedded sqlx migrations) and every query.
//!
//! Dispatch is the only writer of incident state; it writes through [`intake`] and the
//! [`outbox`]. Queries are runtime-checked (`sqlx::query`), so building needs no database.
//! Hot-path writes are multi-row `INSERT … SELECT * FROM UNNEST(…)`, one round trip per table
//! per batch.

pub mod incidents;
pub mod intake;
pub mod maintenance;
pub mod org;
pub mod outbox;
pub mod tasks;
pub mod tokens;

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The schema migrations, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are checked out lazily; the first query fails clearly if the server
/// is not there.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    // Plan every execution with the table sizes of the moment: a generic plan cached while a table
    // was small (a new installation, or a server without autovacuum) would keep scanning it whole
    // once it is large.
    let options = url
        .parse::<PgConnectOptions>()?
        .options([("plan_cache_mode", "force_custom_plan")]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Lets the rest of the transaction reuse cached plans, against the pool's `force_custom_plan`.
/// For dispatch's hot paths (intake, the outbox relay): their statements have the same shapes
/// batch after batch, and planning each anew cost a fifth of a batch. Cached plans are made again
/// whenever the tables are analysed — by autovacuum, or by dispatch when that is off.
pub(crate) async fn cache_plans(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("SET LOCAL plan_cache_mode = auto")
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies pending migrations. Safe to run from several processes at once (sqlx takes an
/// advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
