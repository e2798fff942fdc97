//! Separate PostgreSQL roles, each with only the rights its program needs (docs/security.md,
//! "Database roles"):
//!
//! - the **owner** owns the database, its `public` schema and every object in it; migrations,
//!   `whistle seed` and the other admin commands connect as it;
//! - **dispatch** reads and writes rows (`SELECT`, `INSERT`, `UPDATE`, `DELETE`) and uses the
//!   sequences, but changes no schema, truncates nothing and only reads `_sqlx_migrations`;
//! - **query** reads, and writes nothing but its `contact_access` log, the `audit_log` and the
//!   read marks of notifications;
//! - neither may change or delete a row of the append-only `audit_log`, only add them.
//!
//! [`provision`] is run by the cluster's administrator (a superuser) once, and again to rotate
//! passwords; [`grant`] runs after every migration (`whistle migrate`), so tables added later get
//! the same rights (default privileges give them at creation, too).

use hmac::{Hmac, Mac as _};
use rand::{distr::Alphanumeric, Rng as _};
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::{Error, Result};

/// The names of the three roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub owner: String,
    pub dispatch: String,
    pub query: String,
}

/// A password for each role, in the same places as [`Roles`].
#[derive(Clone, PartialEq, Eq)]
pub struct Passwords {
    pub owner: String,
    pub dispatch: String,
    pub query: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords(***)")
    }
}

/// The prefix of the roles a deployment uses unless told otherwise: `whistle_owner`,
/// `whistle_dispatch`, `whistle_query`.
pub const DEFAULT_PREFIX: &str = "whistle";

impl Default for Roles {
    fn default() -> Self {
        Roles::with_prefix(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

impl Roles {
    /// `{prefix}_owner`, `{prefix}_dispatch`, `{prefix}_query`. The prefix is lower-case ASCII
    /// letters, digits and `_`, so the names never need quoting in SQL.
    pub fn with_prefix(prefix: &str) -> Result<Roles> {
        let valid = prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && prefix.len() + "_dispatch".len() <= 63;
        if !valid {
            return Err(Error::Roles(format!(
                "role prefix {prefix:?}: use at most 54 lower-case letters, digits and _, starting with a letter"
            )));
        }
        Ok(Roles {
            owner: format!("{prefix}_owner"),
            dispatch: format!("{prefix}_dispatch"),
            query: format!("{prefix}_query"),
        })
    }

    /// `[owner, dispatch, query]`.
    pub fn names(&self) -> [&str; 3] {
        [&self.owner, &self.dispatch, &self.query]
    }
}

impl Passwords {
    /// Three fresh random passwords.
    pub fn generate() -> Passwords {
        Passwords {
            owner: generate_password(),
            dispatch: generate_password(),
            query: generate_password(),
        }
    }

    /// `[owner, dispatch, query]`.
    pub fn all(&self) -> [&str; 3] {
        [&self.owner, &self.dispatch, &self.query]
    }
}

/// 32 random letters and digits (190 bits): nothing to escape in a URL or a pgpass file.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, in the format of
/// `pg_authid.rolpassword`). Sending it instead of the password keeps the password out of the
/// server's statement log and makes the role use SCRAM whatever `password_encryption` says.
/// PostgreSQL SASLprep-normalises passwords; printable ASCII (which [`provision`] requires) is
/// left as it is, so no normalisation is needed here.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    type HmacSha256 = Hmac<Sha256>;
    let hmac = |key: &[u8], data: &[u8]| {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes()
    };
    // PBKDF2-HMAC-SHA-256 with one block: Hi(password, salt, i).
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// `url` (`postgres://[user[:password]@]host…`) with the login replaced: `user`, and `password`
/// if given (letters and digits, as [`generate_password`]'s: nothing to percent-encode). Without
/// a password the client finds it in PGPASSFILE or `~/.pgpass`.
pub fn login_url(url: &str, user: &str, password: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = rest[..authority_end].rfind('@').map_or(0, |at| at + 1);
    let login = match password {
        Some(password) => format!("{user}:{password}@"),
        None => format!("{user}@"),
    };
    format!("{scheme}://{login}{}", &rest[host_start..])
}

/// SQLSTATEs of "the role was created meanwhile by another session".
const DUPLICATE_OBJECT: &str = "42710";
const UNIQUE_VIOLATION: &str = "23505";
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Serialises provisioning runs on one database (any constant unused elsewhere).
const PROVISION_LOCK: i64 = 0x7768_6973_746c_6501;

fn sql_state(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// Creates the three LOGIN roles if missing and sets their passwords (as SCRAM verifiers); makes
/// the owner own the database of `admin`, its `public` schema and every object already in it;
/// lets no one but the three connect and no one but the owner create anything; and gives
/// dispatch and query their rights on the tables there are ([`grant`]) and, by default
/// privileges, on those the owner creates later.
///
/// `admin` is connected to the Whistle database as a superuser (or a role with CREATEROLE that
/// may also give the database away). Idempotent, and safe to run from several processes at once.
pub async fn provision(admin: &PgPool, roles: &Roles, passwords: &Passwords) -> Result<()> {
    for password in passwords.all() {
        if password.is_empty() || !password.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::Roles(
                "role passwords must be non-empty printable ASCII without spaces".into(),
            ));
        }
    }
    provision_inner(admin, roles, passwords)
        .await
        .map_err(|e| match e {
            Error::Database(e) if sql_state(&e).as_deref() == Some(INSUFFICIENT_PRIVILEGE) => {
                Error::Roles(format!(
                    "provisioning the database roles needs a superuser (or a role with CREATEROLE \
                     that may also make {} the database's owner): {e}",
                    roles.owner
                ))
            }
            e => e,
        })
}

async fn provision_inner(admin: &PgPool, roles: &Roles, passwords: &Passwords) -> Result<()> {
    let mut conn = admin.acquire().await?;
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(roles.names().to_vec())
            .fetch_all(&mut *conn)
            .await?;
    for name in roles.names() {
        if existing.iter().any(|e| e == name) {
            continue;
        }
        // CREATE ROLE outside the transaction below: a parallel run (another database on the
        // same cluster, say) that created it first makes this one fail harmlessly.
        if let Err(e) = sqlx::raw_sql(&format!("CREATE ROLE {name} LOGIN"))
            .execute(&mut *conn)
            .await
        {
            let state = sql_state(&e);
            if !matches!(state.as_deref(), Some(DUPLICATE_OBJECT | UNIQUE_VIOLATION)) {
                return Err(e.into());
            }
        }
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PROVISION_LOCK)
        .execute(&mut *tx)
        .await?;
    let superusers: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) AND rolsuper",
    )
    .bind(roles.names().to_vec())
    .fetch_all(&mut *tx)
    .await?;
    if !superusers.is_empty() {
        return Err(Error::Roles(format!(
            "{} must not be superusers (ALTER ROLE … NOSUPERUSER)",
            superusers.join(", ")
        )));
    }
    for (name, password) in roles.names().into_iter().zip(passwords.all()) {
        let salt: [u8; 16] = rand::random();
        let verifier = scram_verifier(password, &salt, 4096);
        sqlx::raw_sql(&format!(
            "ALTER ROLE {name} WITH LOGIN PASSWORD '{verifier}'"
        ))
        .execute(&mut *tx)
        .await?;
    }
    let database: String = sqlx::query_scalar("SELECT quote_ident(current_database())")
        .fetch_one(&mut *tx)
        .await?;
    let Roles {
        owner,
        dispatch,
        query,
    } = roles;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {database} OWNER TO {owner};
         REVOKE ALL ON DATABASE {database} FROM PUBLIC;
         GRANT CONNECT ON DATABASE {database} TO {dispatch}, {query};
         ALTER SCHEMA public OWNER TO {owner};
         REVOKE ALL ON SCHEMA public FROM PUBLIC;
         GRANT USAGE ON SCHEMA public TO {dispatch}, {query};"
    ))
    .execute(&mut *tx)
    .await?;
    // Objects made before the roles existed (migrated as another user) become the owner's, so
    // that later migrations, run as the owner, may change them. A sequence owned by a column
    // follows its table; extensions' objects stay theirs.
    let changes: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER %s %s OWNER TO %I',
                    CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                   WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                   ELSE 'TABLE' END,
                    c.oid::regclass, $1)
         FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND pg_get_userbyid(c.relowner) <> $1
           AND NOT EXISTS (
               SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
         UNION ALL
         SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $1)
         FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                                       AND d.objid = p.oid AND d.deptype = 'e')
         UNION ALL
         SELECT format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                       t.oid::regtype, $1)
         FROM pg_type t
         WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r')
           AND pg_get_userbyid(t.typowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                                       AND d.objid = t.oid AND d.deptype = 'e')",
    )
    .bind(owner)
    .fetch_all(&mut *tx)
    .await?;
    for change in changes {
        sqlx::raw_sql(&change).execute(&mut *tx).await?;
    }
    sqlx::raw_sql(&format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {dispatch};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT USAGE, SELECT ON SEQUENCES TO {dispatch};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT SELECT ON TABLES TO {query};"
    ))
    .execute(&mut *tx)
    .await?;
    grant_on(&mut tx, roles).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives dispatch and query their rights on every table of the `public` schema: dispatch reads
/// and writes rows and uses the sequences, query reads, appends to `contact_access` and marks
/// notifications read; both only read `_sqlx_migrations` and only append to `audit_log`. Run after migrations (as the owner or a superuser), it covers the
/// tables they added. Returns false, doing nothing, when the roles don't exist (a database
/// without separate roles); an error when only some do.
pub async fn grant(pool: &PgPool, roles: &Roles) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(roles.names().to_vec())
            .fetch_all(&mut *conn)
            .await?;
    if existing.is_empty() {
        return Ok(false);
    }
    if existing.len() < 3 {
        let missing: Vec<&str> = roles
            .names()
            .into_iter()
            .filter(|name| !existing.iter().any(|e| e == name))
            .collect();
        return Err(Error::Roles(format!(
            "roles {} are missing: provision them (whistle db roles)",
            missing.join(", ")
        )));
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    grant_on(&mut tx, roles).await?;
    tx.commit().await?;
    Ok(true)
}

async fn grant_on(conn: &mut PgConnection, roles: &Roles) -> Result<()> {
    let Roles {
        dispatch, query, ..
    } = roles;
    sqlx::raw_sql(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {dispatch};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {dispatch};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {query};"
    ))
    .execute(&mut *conn)
    .await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace
           AND relname IN ('_sqlx_migrations', 'contact_access', 'notifications', 'audit_log',
                           'policy_versions')",
    )
    .fetch_all(&mut *conn)
    .await?;
    if tables.iter().any(|t| t == "_sqlx_migrations") {
        // Dispatch checks at start that no migration is pending; only the owner applies them.
        sqlx::raw_sql(&format!(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM {dispatch}, {query}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    if tables.iter().any(|t| t == "contact_access") {
        // Who read a resident's contact unmasked, written by query as it answers.
        sqlx::raw_sql(&format!("GRANT INSERT ON contact_access TO {query}"))
            .execute(&mut *conn)
            .await?;
    }
    if tables.iter().any(|t| t == "audit_log") {
        // Append-only: both services write entries (query the unmasked reads, dispatch the
        // migrations it applies at start) and neither may change one (the table's triggers
        // refuse that even to the owner).
        sqlx::raw_sql(&format!(
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {dispatch}, {query};
             GRANT INSERT ON audit_log TO {dispatch}, {query}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    if tables.iter().any(|t| t == "policy_versions") {
        // Dispatch stores the first version (from its --policy) and reads the approved one;
        // proposing and deciding are the operators' (the CLI, as the owner).
        sqlx::raw_sql(&format!(
            "REVOKE UPDATE, DELETE, TRUNCATE ON policy_versions FROM {dispatch}, {query}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    if tables.iter().any(|t| t == "notifications") {
        // People mark their own console notifications read through query.
        sqlx::raw_sql(&format!(
            "GRANT UPDATE (read_at) ON notifications TO {query}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_is_rfc_7677s() {
        // RFC 7677's example password and salt; the keys computed apart, with Python's
        // hashlib.pbkdf2_hmac and hmac.
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            scram_verifier("pencil", &salt, 4096),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn role_names_come_from_a_plain_prefix() {
        let roles = Roles::default();
        assert_eq!(
            roles.names(),
            ["whistle_owner", "whistle_dispatch", "whistle_query"]
        );
        assert_eq!(
            Roles::with_prefix("whistle_it_0a").unwrap().query,
            "whistle_it_0a_query"
        );
        for bad in ["", "Whistle", "9x", "a-b", "x;drop", &"a".repeat(60)] {
            assert!(Roles::with_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_login_replaces_the_urls_or_is_added() {
        assert_eq!(
            login_url(
                "postgres://postgres:secret@db:5432/whistle?sslmode=require",
                "whistle_query",
                None
            ),
            "postgres://whistle_query@db:5432/whistle?sslmode=require"
        );
        assert_eq!(
            login_url("postgres://127.0.0.1:55432/whistle", "o", Some("pw")),
            "postgres://o:pw@127.0.0.1:55432/whistle"
        );
        assert_eq!(
            login_url("postgresql://u@[::1]/w", "d", None),
            "postgresql://d@[::1]/w"
        );
    }

    #[test]
    fn passwords_are_long_random_and_plain() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(format!("{:?}", Passwords::generate()), "Passwords(***)");
    }
}
