//! What tests ask of their database directly.

use std::future::Future;

use whistle_testkit::TestDb;

/// The actor of the administrative actions tests take directly through the store, as the audit
/// log records them.
pub fn admin() -> whistle_store::audit::Actor {
    whistle_store::audit::Actor::cli(Some("it-admin"))
}

/// Counting rows of the test database.
pub trait Count {
    /// The value of `sql`, a `count(*)` query.
    fn count(&self, sql: &str) -> impl Future<Output = i64> + Send;
}

impl Count for TestDb {
    fn count(&self, sql: &str) -> impl Future<Output = i64> + Send {
        let (pool, sql) = (self.pool.clone(), sql.to_owned());
        async move {
            sqlx::query_scalar(&sql)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}
