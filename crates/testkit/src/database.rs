//! A fresh PostgreSQL database per test, on the server of `DATABASE_URL`, with roles of its own
//! as production has them (`whistle_store::roles`): an owner that migrated and seeded it, and
//! the dispatch and query roles the services connect as, each with a random password.

use sqlx::PgPool;
use whistle_store::roles::{self, Passwords, Roles};

use crate::Error;

/// A database [`create_database`] made: the URLs (passwords included) of its three roles, and a
/// pool of the owner.
pub struct Database {
    pub name: String,
    pub roles: Roles,
    /// The owner's URL: migrations, seeding, admin commands and tests' own reads and writes.
    pub url: String,
    /// Dispatch's URL: it may write rows but not change the schema.
    pub dispatch_url: String,
    /// The query service's URL: it may read, and append to `contact_access`.
    pub query_url: String,
    /// A pool of the owner.
    pub pool: PgPool,
}

/// Creates `name` on the server of `admin_url` (a superuser's) with the roles `{name}_owner`,
/// `{name}_dispatch` and `{name}_query`, migrates it as the owner and seeds the Ordos data.
pub async fn create_database(
    admin_url: &str,
    name: &str,
    max_connections: u32,
) -> Result<Database, Error> {
    create_database_with(admin_url, name, max_connections, &whistle_store::MIGRATOR).await
}

/// [`create_database`] migrated with `migrator` instead of this build's migrations: the schema
/// of another release, for an upgrade drill. Seeding is this build's, so the schema must have
/// what it writes.
pub async fn create_database_with(
    admin_url: &str,
    name: &str,
    max_connections: u32,
    migrator: &sqlx::migrate::Migrator,
) -> Result<Database, Error> {
    let store = |what: &'static str| {
        let url = admin_url.to_owned();
        move |source| Error::Store { what, url, source }
    };
    let roles = Roles::with_prefix(name).map_err(store("naming the roles"))?;
    let admin = whistle_store::connect(admin_url, 1)
        .await
        .map_err(store("connecting to the server"))?;
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
    let admin = whistle_store::connect(&url, 1)
        .await
        .map_err(store("connecting to the test database"))?;
    let passwords = Passwords::generate();
    roles::provision(&admin, &roles, &passwords)
        .await
        .map_err(store("provisioning the test database's roles"))?;
    admin.close().await;
    let login = |user: &str, password: &str| roles::login_url(&url, user, Some(password));
    let owner_url = login(&roles.owner, &passwords.owner);
    let pool = whistle_store::connect(&owner_url, max_connections)
        .await
        .map_err(store("connecting to the test database as its owner"))?;
    let actor = whistle_store::audit::Actor::cli(Some("whistle-testkit"));
    whistle_store::migrate_with(&pool, migrator, &actor)
        .await
        .map_err(store("migrating as the owner"))?;
    roles::grant(&pool, &roles)
        .await
        .map_err(store("granting the services' rights"))?;
    whistle_store::org::seed(&pool, &whistle_domain::ordos::dataset(), &actor)
        .await
        .map_err(store("seeding"))?;
    Ok(Database {
        name: name.to_owned(),
        dispatch_url: login(&roles.dispatch, &passwords.dispatch),
        query_url: login(&roles.query, &passwords.query),
        url: owner_url,
        roles,
        pool,
    })
}

/// Drops the database and its roles.
async fn drop_database(admin_url: &str, name: &str, roles: &Roles) -> whistle_store::Result<()> {
    let admin = whistle_store::connect(admin_url, 1).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("DROP ROLE IF EXISTS {}", roles.names().join(", ")))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(())
}

/// A fresh database on the server of `DATABASE_URL`, migrated and seeded with the Ordos data,
/// dropped with its roles at the end of the test. Derefs to its [`Database`].
pub struct TestDb {
    database: Database,
    admin_url: String,
}

impl std::ops::Deref for TestDb {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.database
    }
}

impl TestDb {
    pub async fn create() -> Result<TestDb, Error> {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        TestDb::create_on(&admin_url).await
    }

    /// A fresh database on the server of `admin_url` (a superuser's), such as a private
    /// [`crate::PgCluster`]'s.
    pub async fn create_on(admin_url: &str) -> Result<TestDb, Error> {
        let admin_url = admin_url.to_owned();
        let name = format!("whistle_it_{}", uuid::Uuid::now_v7().simple());
        let database = create_database(&admin_url, &name, 4).await?;
        Ok(TestDb {
            database,
            admin_url,
        })
    }

    /// The URL of the cluster's administrator (`DATABASE_URL`), on this database.
    pub fn admin_url(&self) -> String {
        with_database(&self.admin_url, &self.database.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name, roles) = (
            self.admin_url.clone(),
            self.database.name.clone(),
            self.database.roles.clone(),
        );
        // Drop runs outside async, and the test's runtime is blocked here: a short-lived runtime
        // on its own thread drops the database (FORCE ends this pool's connections) and roles.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(drop_database(&admin_url, &name, &roles))
                .ok()
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
