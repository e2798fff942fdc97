//! A fresh PostgreSQL database per test, on the server of `DATABASE_URL`.

use sqlx::PgPool;

use crate::Error;

/// Creates `name` on the server of `admin_url`, migrates it and seeds the Ordos data; returns its
/// URL and a pool of `max_connections`.
pub async fn create_database(
    admin_url: &str,
    name: &str,
    max_connections: u32,
) -> Result<(String, PgPool), Error> {
    let store = |what: &'static str, url: &str| {
        let url = url.to_owned();
        move |source| Error::Store { what, url, source }
    };
    let admin = whistle_store::connect(admin_url, 1)
        .await
        .map_err(store("connecting to the server", admin_url))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .map_err(|source| Error::Database {
            what: "creating the test database",
            url: admin_url.to_owned(),
            source,
        })?;
    admin.close().await;
    let url = with_database(admin_url, name);
    let pool = whistle_store::connect(&url, max_connections)
        .await
        .map_err(store("connecting to the test database", &url))?;
    whistle_store::migrate(&pool)
        .await
        .map_err(store("migrating", &url))?;
    whistle_store::org::seed(&pool, &whistle_domain::ordos::dataset())
        .await
        .map_err(store("seeding", &url))?;
    Ok((url, pool))
}

/// A fresh database on the server of `DATABASE_URL`, migrated and seeded with the Ordos data,
/// dropped at the end of the test.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> Result<TestDb, Error> {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("whistle_it_{}", uuid::Uuid::now_v7().simple());
        let (url, pool) = create_database(&admin_url, &name, 4).await?;
        Ok(TestDb {
            url,
            pool,
            admin_url,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async, and the test's runtime is blocked here: a short-lived runtime
        // on its own thread drops the database (FORCE ends this pool's connections).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = whistle_store::connect(&admin_url, 1).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t2"), "postgres://h/t2");
    }
}
