//! Bearer tokens of the query service: created and revoked by the CLI, looked up by the query
//! service (read-only). The secret is printed once; only its SHA-256 is stored.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// Notified on commit of every revocation (payload: the token id), so the query service drops the
/// token from its cache at once instead of at the cache's expiry.
pub const CHANNEL: &str = "whistle_tokens";

/// Every token starts with this, so a leaked one is recognisable in logs and secret scanners.
pub const PREFIX: &str = "wst_";

/// What a token may do; see the migration for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Operator,
    Liaison,
    Viewer,
    /// Files reports from its grid and follows them up; reads only its own reports.
    GridWorker,
    /// An Open311 client's key (a third-party app): files and reads service requests inside its
    /// area through the Open311 door only, as no person (docs/open311.md).
    Open311,
    /// The city's 12345 hotline system's key: as `Open311`, its work orders tagged as the
    /// hotline's channel.
    Hotline,
    /// A registered Party member's phone (docs/party.md): scoped by their community, acting as
    /// their own person; sees and claims only their community's offers, nothing else.
    Member,
    /// A device's own credential (a sensor, a video-analytics system): acts as no person, its
    /// area the device's grid, its device named (`device_id`); publishes that grid's reports over
    /// NATS and nothing else (docs/devices.md).
    Device,
    /// 结对领导: a leader's token, its area the leader's post (the city or a district); reads and
    /// endorses only in the streets and communities paired with the leader (docs/leaders.md).
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Liaison => "liaison",
            Role::Viewer => "viewer",
            Role::GridWorker => "grid_worker",
            Role::Open311 => "open311",
            Role::Hotline => "hotline",
            Role::Member => "member",
            Role::Leader => "leader",
            Role::Device => "device",
        }
    }

    /// A key of the Open311 door, which no other door accepts.
    pub fn is_open311_key(self) -> bool {
        matches!(self, Role::Open311 | Role::Hotline)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Role::Operator),
            "liaison" => Ok(Role::Liaison),
            "viewer" => Ok(Role::Viewer),
            "grid_worker" => Ok(Role::GridWorker),
            "open311" => Ok(Role::Open311),
            "hotline" => Ok(Role::Hotline),
            "member" => Ok(Role::Member),
            "leader" => Ok(Role::Leader),
            "device" => Ok(Role::Device),
            other => Err(format!(
                "unknown role {other:?}: expected operator, liaison, viewer, grid_worker, open311, hotline, member, leader or device"
            )),
        }
    }
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: Uuid,
    pub role: Role,
    /// Where the token may read: its own area, or its department's.
    pub area_code: String,
    pub department_code: Option<String>,
    /// Who acts when the token sends a command; `None` for viewers.
    pub person_id: Option<String>,
    /// The device a `device` token is the credential of; `None` for every other role.
    pub device_id: Option<String>,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What `whistle token create` asks for. Exactly one of `area_code` and `department_code` names
/// the scope (operators need an area, grid workers their grid, liaisons a department, viewers
/// either).
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub role: Option<Role>,
    pub area_code: Option<String>,
    pub department_code: Option<String>,
    /// Defaults to the area's operator (`op-{area}`), the grid's worker (`gw-{grid}`) or the
    /// department's liaison (`li-{dept}`).
    pub person_id: Option<String>,
    /// The registered device a `device` token is for (its scope is then the device's grid).
    pub device_id: Option<String>,
    pub label: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a token could not be created: the request's fault, said in terms of the CLI's flags.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Self {
        Refused::Store(Error::Database(error))
    }
}

/// The SHA-256 of a token's secret, as stored.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Creates a token and returns it with its secret, which is not stored and cannot be shown again.
/// The creation is on the audit log (`token.create`, the token without its secret), written with it.
pub async fn create(
    pool: &PgPool,
    new: &NewToken,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<(Token, String), Refused> {
    let invalid = |message: String| Err(Refused::Invalid(message));
    let Some(role) = new.role else {
        return invalid(
            "a role is required: operator, liaison, viewer, grid_worker, open311, hotline, leader or device"
                .into(),
        );
    };
    if new.expires_at.is_some_and(|at| at <= now) {
        return invalid("the expiry must be in the future".into());
    }
    if (role == Role::Device) != new.device_id.is_some() {
        return invalid(if role == Role::Device {
            "a device token needs --device (a registered device)".into()
        } else {
            format!("a {} token names no device", role.as_str())
        });
    }
    // A device's scope is its grid, read from the registry.
    let device_grid = match &new.device_id {
        Some(device) => {
            if new.department_code.is_some() || new.person_id.is_some() {
                return invalid(
                    "a device token acts as no person and belongs to no department".into(),
                );
            }
            let grid: Option<String> = sqlx::query_scalar(
                "SELECT grid_code FROM devices WHERE id = $1 AND status <> 'retired'",
            )
            .bind(device)
            .fetch_optional(pool)
            .await?;
            let Some(grid) = grid else {
                return invalid(format!("no registered device {device} (or it is retired)"));
            };
            if new.area_code.as_ref().is_some_and(|a| *a != grid) {
                return invalid(format!("device {device} reports from grid {grid}"));
            }
            Some(grid)
        }
        None => None,
    };
    let (area_code, department_code) = match (
        &device_grid.or_else(|| new.area_code.clone()),
        &new.department_code,
    ) {
        (Some(_), Some(_)) => {
            return invalid("give either an area or a department as the scope, not both".into())
        }
        (None, None) => {
            return invalid(match role {
                Role::Liaison => "a liaison token needs --department".into(),
                _ => format!("a {} token needs --area (or --department)", role.as_str()),
            })
        }
        (Some(_), None) if role == Role::Liaison => {
            return invalid("a liaison token is scoped by --department, not --area".into())
        }
        (None, Some(_)) if role == Role::Operator => {
            return invalid("an operator token is scoped by --area, not --department".into())
        }
        (None, Some(_)) if role.is_open311_key() => {
            return invalid(format!(
                "an {} key is scoped by --area (where it files and reads), not --department",
                role.as_str()
            ))
        }
        (None, Some(_)) if role == Role::Member => {
            return invalid(
                "a member token is scoped by --area (their community), not --department".into(),
            )
        }
        (None, Some(_)) if role == Role::Leader => {
            return invalid(
                "a leader token is scoped by --area (the leader's post), not --department".into(),
            )
        }
        (None, Some(_)) if role == Role::GridWorker => {
            return invalid(
                "a grid_worker token is scoped by --area (its grid), not --department".into(),
            )
        }
        (Some(area), None) => {
            let known: Option<String> =
                sqlx::query_scalar("SELECT code FROM org_units WHERE code = $1")
                    .bind(area)
                    .fetch_optional(pool)
                    .await?;
            if known.is_none() {
                return invalid(format!("no area {area} (is the org tree seeded?)"));
            }
            (area.clone(), None)
        }
        (None, Some(department)) => {
            let area: Option<String> =
                sqlx::query_scalar("SELECT area_code FROM departments WHERE code = $1")
                    .bind(department)
                    .fetch_optional(pool)
                    .await?;
            let Some(area) = area else {
                return invalid(format!("no department {department}"));
            };
            (area, Some(department.clone()))
        }
    };
    let person_id =
        match role {
            Role::Viewer if new.person_id.is_some() => {
                return invalid("a viewer token does not act, so it takes no person".into())
            }
            Role::Viewer => None,
            Role::Open311 | Role::Hotline if new.person_id.is_some() => {
                return invalid(format!(
                    "an {} key files as no person, so it takes no --person",
                    role.as_str()
                ))
            }
            Role::Open311 | Role::Hotline | Role::Device => None,
            Role::Operator => Some(
                new.person_id
                    .clone()
                    .unwrap_or_else(|| format!("op-{area_code}")),
            ),
            Role::Liaison => Some(new.person_id.clone().unwrap_or_else(|| {
                format!("li-{}", department_code.as_deref().unwrap_or_default())
            })),
            Role::GridWorker => Some(
                new.person_id
                    .clone()
                    .unwrap_or_else(|| format!("gw-{area_code}")),
            ),
            Role::Member => match &new.person_id {
                Some(person) => Some(person.clone()),
                None => return invalid("a member token needs --person (the member)".into()),
            },
            // An area has several leaders: the token names which one.
            Role::Leader => match &new.person_id {
                Some(person) => Some(person.clone()),
                None => return invalid("a leader token needs --person (the leader)".into()),
            },
        };
    if let Some(person) = &person_id {
        check_person(pool, role, person, &area_code, department_code.as_deref()).await?;
    }

    let secret = new_secret();
    let token = Token {
        id: Uuid::now_v7(),
        role,
        area_code,
        department_code,
        person_id,
        device_id: new.device_id.clone(),
        label: new.label.clone(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, token_sha256, role, area_code, department_code, person_id,
                                 label, created_at, expires_at, device_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(token.id)
    .bind(&digest(&secret)[..])
    .bind(role.as_str())
    .bind(&token.area_code)
    .bind(&token.department_code)
    .bind(&token.person_id)
    .bind(&token.label)
    .bind(now)
    .bind(token.expires_at)
    .bind(&token.device_id)
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: audit::action::TOKEN_CREATE,
        target: token.id.to_string(),
        area_code: token.area_code.clone(),
        before: None,
        after: Some(token.audit_json()),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok((token, secret))
}

impl Token {
    /// The token as the audit log shows it: everything but its secret, which is not stored.
    pub fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "role": self.role.as_str(),
            "area_code": self.area_code,
            "department_code": self.department_code,
            "person_id": self.person_id,
            "device_id": self.device_id,
            "label": self.label,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        })
    }
}

/// The acting person must hold the token's role in the token's scope, so a token never grants
/// more than its person already has in dispatch.
async fn check_person(
    pool: &PgPool,
    role: Role,
    person: &str,
    area: &str,
    department: Option<&str>,
) -> Result<(), Refused> {
    let row = sqlx::query(
        "SELECT role, coalesce(area_code, grid_code), department_code, left_at IS NOT NULL
         FROM people WHERE id = $1",
    )
    .bind(person)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(Refused::Invalid(format!(
            "no person {person} (give one with --person)"
        )));
    };
    let (person_role, person_area, person_department): (String, Option<String>, Option<String>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if row.try_get::<bool, _>(3)? {
        return Err(Refused::Invalid(format!("{person} has left")));
    }
    let fits = match role {
        Role::Operator => person_role == "operator" && person_area.as_deref() == Some(area),
        Role::Liaison => person_role == "liaison" && person_department.as_deref() == department,
        Role::GridWorker => person_role == "grid_worker" && person_area.as_deref() == Some(area),
        // Registered now, with the community the token names.
        Role::Member => {
            person_role == "member"
                && person_area.as_deref() == Some(area)
                && sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM party_members WHERE person_id = $1 AND deregistered_at IS NULL)",
                )
                .bind(person)
                .fetch_one(pool)
                .await?
        }
        Role::Leader => person_role == "leader" && person_area.as_deref() == Some(area),
        Role::Viewer | Role::Open311 | Role::Hotline | Role::Device => false,
    };
    if fits {
        Ok(())
    } else {
        Err(Refused::Invalid(format!(
            "{person} is not the {} of this scope",
            role.as_str()
        )))
    }
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Token> {
    let role: String = row.try_get("role")?;
    Ok(Token {
        id: row.try_get("id")?,
        role: role.parse().map_err(Error::Corrupt)?,
        area_code: row.try_get("area_code")?,
        department_code: row.try_get("department_code")?,
        person_id: row.try_get("person_id")?,
        device_id: row.try_get("device_id")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const COLUMNS: &str = "id, role, area_code, department_code, person_id, device_id, label, \
     created_at, expires_at, revoked_at";

/// The token with this secret if it is neither revoked nor expired at `now`.
pub async fn authenticate(
    pool: &PgPool,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<Token>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens
         WHERE token_sha256 = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
           AND NOT EXISTS (SELECT 1 FROM people p
                           WHERE p.id = api_tokens.person_id AND p.left_at IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM devices d
                           WHERE d.id = api_tokens.device_id AND d.status = 'retired')"
    ))
    .bind(&digest(secret)[..])
    .bind(now)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether token `id` is `person`'s (revoked or expired ones too: it says whose it is, not whether
/// it is valid).
pub async fn is_persons(conn: &mut PgConnection, id: Uuid, person: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND person_id = $2)",
    )
    .bind(id)
    .bind(person)
    .fetch_one(conn)
    .await?)
}

/// Every token, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Token>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at DESC, id DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a token, on the audit log (`token.revoke`) in the same transaction; `false` if there
/// is no such token or it was already revoked (then nothing is recorded).
pub async fn revoke(pool: &PgPool, id: Uuid, now: DateTime<Utc>, actor: &Actor) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let revoked = revoke_live(&mut tx, Live::Token(id), now, actor).await?;
    tx.commit().await?;
    Ok(!revoked.is_empty())
}

/// Revokes every live token of a person inside the caller's transaction (an offboarding, a
/// transfer), each on the audit log; returns their ids.
pub async fn revoke_person(
    conn: &mut PgConnection,
    person: &str,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Vec<Uuid>> {
    revoke_live(conn, Live::Of(person), now, actor).await
}

/// Which live tokens to revoke.
enum Live<'a> {
    Token(Uuid),
    Of(&'a str),
}

/// Revokes the live tokens `which` names, each on the audit log and announced to the caches;
/// returns their ids in order.
async fn revoke_live(
    conn: &mut PgConnection,
    which: Live<'_>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Vec<Uuid>> {
    let column = match which {
        Live::Token(_) => "id",
        Live::Of(_) => "person_id",
    };
    let sql = format!(
        "UPDATE api_tokens SET revoked_at = $2 WHERE {column} = $1 AND revoked_at IS NULL
         RETURNING {COLUMNS}"
    );
    let query = match which {
        Live::Token(id) => sqlx::query(&sql).bind(id),
        Live::Of(person) => sqlx::query(&sql).bind(person),
    };
    let rows = query.bind(now).fetch_all(&mut *conn).await?;
    let mut revoked = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    revoked.sort_by_key(|t| t.id);
    record_revoked(conn, &revoked, now, actor).await?;
    Ok(revoked.iter().map(|t| t.id).collect())
}

/// The audit entries (`token.revoke`) and the cache notifications of tokens just revoked.
async fn record_revoked(
    conn: &mut PgConnection,
    revoked: &[Token],
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<()> {
    let entries: Vec<Entry> = revoked
        .iter()
        .map(|token| Entry {
            action: audit::action::TOKEN_REVOKE,
            target: token.id.to_string(),
            area_code: token.area_code.clone(),
            before: Some(
                Token {
                    revoked_at: None,
                    ..token.clone()
                }
                .audit_json(),
            ),
            after: Some(token.audit_json()),
        })
        .collect();
    audit::record(&mut *conn, actor, now, &entries).await?;
    for token in revoked {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(token.id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_their_digest_is_stable() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for role in [
            Role::Operator,
            Role::Liaison,
            Role::Viewer,
            Role::GridWorker,
            Role::Open311,
            Role::Hotline,
            Role::Member,
        ] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("admin".parse::<Role>().unwrap_err().contains("admin"));
    }
}
