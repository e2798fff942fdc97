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

/// The Ordos dataset's paired leaders (领导结对联系) and their pairings, as `whistle seed` writes
/// them after the org; returned for the tests to look up who is paired with what.
pub async fn seed_leaders(pool: &sqlx::PgPool) -> whistle_domain::ordos::Leaders {
    let leaders = whistle_domain::ordos::leaders(&whistle_domain::ordos::dataset());
    whistle_store::leaders::seed(pool, &leaders, &admin())
        .await
        .unwrap_or_else(|e| panic!("seeding the leaders: {e}"));
    leaders
}

/// A bearer token of the leader `person`, posted at `post`.
pub async fn leader_token(pool: &sqlx::PgPool, person: &str, post: &str) -> String {
    let new = whistle_store::tokens::NewToken {
        role: Some(whistle_store::tokens::Role::Leader),
        area_code: Some(post.to_owned()),
        person_id: Some(person.to_owned()),
        ..Default::default()
    };
    whistle_store::tokens::create(pool, &new, chrono::Utc::now(), &admin())
        .await
        .unwrap_or_else(|e| panic!("a leader token for {person}: {e}"))
        .1
}
