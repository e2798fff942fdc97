//! The audit log of administration (docs/security.md, "What is logged"): one row for every
//! administrative action, written in the transaction of the change it records, so there is no
//! change without its row and no row without its change. The table is append-only (its migration
//! refuses UPDATE, DELETE and TRUNCATE to everyone; the services' roles may only insert).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::Result;

/// Who performs an administrative action, as the program knows it. The PostgreSQL role that
/// writes the row is added by the server (`db_role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The acting person: the CLI's `--actor` (else the OS user), a token's person (else the
    /// token id), or a service's name and host.
    pub name: String,
    /// The operating-system user running the CLI.
    pub os_user: Option<String>,
    /// The token of a gRPC or NATS caller.
    pub token_id: Option<Uuid>,
    /// Where the action came in: `cli`, an RPC (`GetIncident`), `whistle-dispatch`.
    pub door: String,
}

impl Actor {
    /// The CLI's actor: `--actor` if given, else the OS user, who is recorded either way.
    pub fn cli(named: Option<&str>) -> Actor {
        let os_user = os_user();
        let name = match named.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => os_user.clone(),
        };
        Actor {
            name,
            os_user: Some(os_user),
            token_id: None,
            door: "cli".to_owned(),
        }
    }

    /// A service acting on its own (dispatch migrating at start, say): its name, host and pid.
    pub fn service(name: &str) -> Actor {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Actor {
            name: format!("{name}@{host}/{}", std::process::id()),
            os_user: None,
            token_id: None,
            door: name.to_owned(),
        }
    }
}

/// The OS user: `$USER` or `$LOGNAME`, else the numeric uid (a container may have no name).
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| match std::fs::metadata("/proc/self") {
            Ok(meta) => format!("uid {}", meta.uid()),
            Err(_) => "unknown".to_owned(),
        })
}

/// What was done: the action (`token.create`), its target (the token's id), the area it
/// concerns (empty: the whole installation) and the target before and after, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub action: &'static str,
    pub target: String,
    pub area_code: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The actions recorded; `whistle audit --action` and `ListAuditEntries` filter on these.
pub mod action {
    pub const TOKEN_CREATE: &str = "token.create";
    pub const TOKEN_REVOKE: &str = "token.revoke";
    pub const PEOPLE_NOTIFY: &str = "people.notify";
    /// A person onboarded (`whistle people add`, `OnboardPerson`).
    pub const PEOPLE_ONBOARD: &str = "people.onboard";
    /// A person's name, phone, role or post changed, with what was handed over.
    pub const PEOPLE_CHANGE: &str = "people.change";
    /// A person left, with what was handed to whom and the tokens revoked.
    pub const PEOPLE_OFFBOARD: &str = "people.offboard";
    pub const ORG_UNIT: &str = "org.unit";
    pub const ORG_DEPARTMENT: &str = "org.department";
    pub const ORG_PERSON: &str = "org.person";
    /// An org import applied as a version (`whistle org import --apply`), with its counts.
    pub const ORG_IMPORT: &str = "org.import";
    pub const SCHEMA_MIGRATE: &str = "schema.migrate";
    pub const DB_ROLES: &str = "db.roles";
    pub const CONTACTS_REKEY: &str = "contacts.rekey";
    /// A resident's contacts looked for on their request (`whistle contacts find`).
    pub const CONTACTS_FIND: &str = "contacts.find";
    /// Contacts erased: past their retention, or on a resident's request.
    pub const CONTACTS_ERASE: &str = "contacts.erase";
    /// Photos erased: past their retention, or on a person's request (one entry per incident
    /// that showed them).
    pub const PHOTOS_ERASE: &str = "photos.erase";
    /// Photos an incident shows, looked up on a person's request (`whistle photos find`).
    pub const PHOTOS_FIND: &str = "photos.find";
    /// Rejected reports removed past their retention (a count).
    pub const REJECTED_ERASE: &str = "rejected.erase";
    pub const CONTACT_READ: &str = "contact.read";
    pub const PHOTO_READ: &str = "photo.read";
    /// A dispatch replica applied a policy version it had not applied before (one entry per
    /// version change, not per replica).
    pub const POLICY_LOAD: &str = "policy.load";
    /// A policy version proposed (`whistle policy propose`), with its changes.
    pub const POLICY_PROPOSE: &str = "policy.propose";
    /// A proposed version approved by a second person: it runs from then on.
    pub const POLICY_APPROVE: &str = "policy.approve";
    pub const POLICY_REJECT: &str = "policy.reject";
    /// The first version, stored by dispatch from its `--policy` on an empty table.
    pub const POLICY_BOOTSTRAP: &str = "policy.bootstrap";
    /// The 双报到 registry seeded (its counts; docs/party.md).
    pub const VOLUNTEERS_SEED: &str = "volunteers.seed";
    /// A Party member's registration ended: tokens revoked, offers held given back.
    pub const VOLUNTEERS_DEREGISTER: &str = "volunteers.deregister";
    /// A deregistered member's name and phone erased by the retention job.
    pub const VOLUNTEERS_ANONYMISE: &str = "volunteers.anonymise";
}

/// Writes `entries` at `at` on `conn`, which should be the transaction making the change.
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    at: DateTime<Utc>,
    entries: &[Entry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, os_user, token_id, door, action, target, area_code,
                                before, after)
         SELECT t.id, $2, $3, $4, $5, $6, t.action, t.target, t.area_code, t.before, t.after
         FROM UNNEST($1::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::jsonb[])
             AS t(id, action, target, area_code, before, after)",
    )
    .bind(entries.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(at)
    .bind(&actor.name)
    .bind(&actor.os_user)
    .bind(actor.token_id)
    .bind(&actor.door)
    .bind(entries.iter().map(|e| e.action).collect::<Vec<_>>())
    .bind(
        entries
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        entries
            .iter()
            .map(|e| e.area_code.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(entries.iter().map(|e| e.before.clone()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.after.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the database has the audit log yet (`whistle db roles` may run before the first
/// migration).
pub async fn exists(pool: &PgPool) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT to_regclass('public.audit_log') IS NOT NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub os_user: Option<String>,
    pub db_role: String,
    pub token_id: Option<Uuid>,
    pub door: String,
    pub action: String,
    pub target: String,
    pub area_code: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which rows to list, newest first. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only rows whose area code starts with this (a grid's prefix of an org code, see
    /// `AreaCode::prefix`); `None` for every row, the installation's own (area `''`) included.
    pub area_prefix: Option<String>,
    pub actor: Option<String>,
    /// An action (`token.create`) or a family of them (`token`).
    pub action: Option<String>,
    pub target: Option<String>,
    /// `at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `at < until`.
    pub until: Option<DateTime<Utc>>,
    /// Rows strictly older than this `(at, id)` (the previous page's last row).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u32,
}

/// The log, newest first.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<Row>> {
    let (action, family) = match filter.action.as_deref() {
        Some(a) if a.contains('.') => (Some(a), None),
        Some(family) => (None, Some(format!("{family}."))),
        None => (None, None),
    };
    let rows = sqlx::query(
        "SELECT id, at, actor, os_user, db_role, token_id, door, action, target, area_code,
                before, after
         FROM audit_log
         WHERE ($1::text IS NULL OR starts_with(area_code, $1) AND area_code <> '')
           AND ($2::text IS NULL OR actor = $2)
           AND ($3::text IS NULL OR action = $3)
           AND ($4::text IS NULL OR starts_with(action, $4))
           AND ($5::text IS NULL OR target = $5)
           AND ($6::timestamptz IS NULL OR at >= $6)
           AND ($7::timestamptz IS NULL OR at < $7)
           AND ($8::timestamptz IS NULL OR (at, id) < ($8, $9))
         ORDER BY at DESC, id DESC
         LIMIT $10",
    )
    .bind(filter.area_prefix.as_deref())
    .bind(filter.actor.as_deref())
    .bind(action)
    .bind(family)
    .bind(filter.target.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before.map(|b| b.0))
    .bind(filter.before.map(|b| b.1))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Row {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                os_user: row.try_get("os_user")?,
                db_role: row.try_get("db_role")?,
                token_id: row.try_get("token_id")?,
                door: row.try_get("door")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                area_code: row.try_get("area_code")?,
                before: row.try_get("before")?,
                after: row.try_get("after")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clis_actor_is_the_named_one_or_the_os_user() {
        let named = Actor::cli(Some(" 王芳 "));
        assert_eq!(named.name, "王芳");
        assert_eq!(named.door, "cli");
        let os = named.os_user.clone().unwrap();
        assert!(!os.is_empty());
        assert_eq!(Actor::cli(None).name, os);
        assert_eq!(Actor::cli(Some("")).name, os);
        assert!(Actor::service("whistle-dispatch")
            .name
            .starts_with("whistle-dispatch@"));
    }
}
