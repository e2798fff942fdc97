//! People's lifecycle (docs/operations.md, "People come and go"): onboarding, role changes and
//! transfers, offboarding. A person is never deleted — the timeline's actor names and the audit
//! log keep resolving — so leaving is a date (`left_at`) and a successor (`successor_id`).
//!
//! **Invariant:** what a person holds never goes with them. Leaving, or moving off the post a
//! holding belongs to, hands it to a named successor in the same transaction, or is refused with
//! the list of what is held: open tasks they reported in for (`tasks.holder_id`), a grid they are
//! the only live worker of, a department they are the only live liaison of, and people whose
//! deputy they are. Their tokens are revoked in that
//! transaction too, and the change is on the audit log (`people.onboard`, `people.change`,
//! `people.offboard`, before and after, phones masked).
//!
//! Every change notifies [`CHANNEL`] on commit (payload: the person's id) so dispatch reloads its
//! org tree, and a token revoked notifies [`crate::tokens::CHANNEL`] so the query service drops
//! it from its cache at once.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{postgres::PgRow, PgConnection, PgPool, Row as _};
use uuid::Uuid;
use whistle_domain::{AreaCode, DepartmentCode, Level, PersonId, Role};

use crate::{
    audit::{self, Actor, Entry},
    incidents::{self, Changes, TimelineEntry},
    tokens, Error, Result,
};

/// Notified on commit of every onboarding, change and offboarding; the payload is the person id.
pub const CHANNEL: &str = "whistle_people";

/// The kind of the timeline entry that records a task handed from a leaver to their successor.
pub const HANDOVER_KIND: &str = "task.handover";

/// A person as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub phone: String,
    /// The role with its post: a grid worker's grid, a liaison's department, an operator's or
    /// handler's area.
    pub role: Role,
    /// The area the post lies in (a liaison's is its department's area): who may manage them.
    pub area_code: String,
    /// The name of the grid, department or area posted to.
    pub post_name: String,
    pub deputy_id: Option<String>,
    /// `None` for people seeded before lifecycles were kept.
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub successor_id: Option<String>,
}

impl Person {
    pub fn is_live(&self) -> bool {
        self.left_at.is_none()
    }

    /// The person as the audit log shows them: the phone masked (staff's numbers are personal
    /// data too; the log says that it changed, not what it is).
    pub fn audit_json(&self) -> Value {
        let (grid, department, area) = columns(&self.role);
        json!({
            "name": self.name,
            "phone": whistle_domain::contact::mask(&self.phone),
            "role": self.role.kind(),
            "grid_code": grid,
            "department_code": department,
            "area_code": area,
            "joined_at": self.joined_at,
            "left_at": self.left_at,
            "successor_id": self.successor_id,
        })
    }
}

/// The code a role is posted to: a grid, a department or an area.
pub fn post(role: &Role) -> String {
    match role {
        Role::GridWorker { grid } => grid.to_string(),
        Role::Liaison { department } => department.to_string(),
        Role::Operator { area } | Role::Handler { unit: area } | Role::Leader { area } => {
            area.to_string()
        }
    }
}

/// A role's post as the three columns of `people`.
fn columns(role: &Role) -> (Option<String>, Option<String>, Option<String>) {
    match role {
        Role::GridWorker { grid } => (Some(grid.to_string()), None, None),
        Role::Liaison { department } => (None, Some(department.to_string()), None),
        Role::Operator { area } | Role::Handler { unit: area } | Role::Leader { area } => {
            (None, None, Some(area.to_string()))
        }
    }
}

/// Parses a role and its post as the CLI and the console give them: `grid_worker` and a grid,
/// `liaison` and a department, `operator` or `handler` and an area, `leader` and the city or a
/// district.
pub fn parse_role(role: &str, post: &str) -> Result<Role> {
    let invalid = |message: String| Error::Invalid(message);
    let area = || {
        post.parse::<AreaCode>()
            .map_err(|e| invalid(format!("post {post:?}: {e}")))
    };
    match role {
        "grid_worker" => {
            let grid = area()?;
            if grid.level() != Level::Grid {
                return Err(invalid(format!(
                    "a grid worker's post is a grid (15 digits), not {post}"
                )));
            }
            Ok(Role::GridWorker { grid })
        }
        "liaison" => Ok(Role::Liaison {
            department: post
                .parse::<DepartmentCode>()
                .map_err(|e| invalid(format!("post {post:?}: {e}")))?,
        }),
        "operator" => Ok(Role::Operator { area: area()? }),
        "handler" => {
            let unit = area()?;
            if !matches!(unit.level(), Level::Street | Level::Community) {
                return Err(invalid(format!(
                    "a handler's post is a street or a community, not {post}"
                )));
            }
            Ok(Role::Handler { unit })
        }
        "leader" => {
            let area = area()?;
            if area.level() < Level::District {
                return Err(invalid(format!(
                    "a leader's post is the city or a district, not {post}"
                )));
            }
            Ok(Role::Leader { area })
        }
        other => Err(invalid(format!(
            "unknown role {other:?}: expected grid_worker, liaison, operator, handler or leader"
        ))),
    }
}

/// A phone number as stored: a mainland mobile (11 digits from 13… to 19…) or a landline with
/// its area code (0477-8581234), spaces and dashes dropped.
pub fn parse_phone(raw: &str) -> Result<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let mobile = all_digits
        && digits.len() == 11
        && digits.starts_with('1')
        && matches!(digits.as_bytes()[1], b'3'..=b'9');
    let landline = all_digits
        && digits.starts_with('0')
        && !digits.starts_with("00")
        && (10..=12).contains(&digits.len());
    if mobile || landline {
        Ok(digits)
    } else {
        Err(Error::Invalid(format!(
            "bad phone {raw:?}: expected a mobile number (11 digits, 13… to 19…) or a landline \
             with its area code (0477-8581234)"
        )))
    }
}

/// Someone to onboard.
#[derive(Debug, Clone)]
pub struct NewPerson {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub role: Role,
}

/// What a change sets; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PersonChange {
    pub name: Option<String>,
    pub phone: Option<String>,
    /// A new role or post (a transfer).
    pub role: Option<Role>,
}

/// An open task a person reported in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTask {
    pub incident_id: Uuid,
    pub task_id: u32,
    pub department_code: String,
    pub title: String,
}

/// What a person holds that must not go with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub tasks: Vec<HeldTask>,
    /// The grid they are the only live worker of.
    pub grid: Option<String>,
    /// The department they are the only live liaison of.
    pub department: Option<String>,
    /// The people whose deputy they are.
    pub deputy_for: Vec<String>,
    /// The streets and communities a leader is paired with (领导结对联系).
    pub paired_areas: Vec<String>,
}

impl Holdings {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.grid.is_none()
            && self.department.is_none()
            && self.deputy_for.is_empty()
            && self.paired_areas.is_empty()
    }

    /// The list as JSON, for the audit log and the gRPC refusal.
    pub fn to_json(&self) -> Value {
        json!({
            "tasks": self.tasks.iter().map(|t| json!({
                "incident_id": t.incident_id,
                "task_id": t.task_id,
                "department_code": t.department_code,
            })).collect::<Vec<_>>(),
            "grid": self.grid,
            "department": self.department,
            "deputy_for": self.deputy_for,
            "paired_areas": self.paired_areas,
        })
    }
}

impl fmt::Display for Holdings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.tasks.is_empty() {
            let tasks: Vec<String> = self
                .tasks
                .iter()
                .map(|t| {
                    format!(
                        "task {} of incident {} ({}, {})",
                        t.task_id, t.incident_id, t.department_code, t.title
                    )
                })
                .collect();
            parts.push(format!(
                "{} open task(s): {}",
                self.tasks.len(),
                tasks.join("; ")
            ));
        }
        if let Some(grid) = &self.grid {
            parts.push(format!("grid {grid}, as its only grid worker"));
        }
        if let Some(department) = &self.department {
            parts.push(format!("department {department}, as its only liaison"));
        }
        if !self.deputy_for.is_empty() {
            parts.push(format!("deputy of {}", self.deputy_for.join(", ")));
        }
        if !self.paired_areas.is_empty() {
            parts.push(format!("paired with {}", self.paired_areas.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Why a change was not made: nothing was written. The variants are what a client acts on
/// differently (the console says each in its own words; dispatch gives each its own code).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The request's fault (a bad phone or name, nothing to change, a successor without a move…).
    #[error("{0}")]
    Invalid(String),
    /// The person, the successor or the post (grid, department, area) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The id to onboard is taken (ids are never reused, not even a leaver's).
    #[error("{0}")]
    Exists(String),
    /// The person or the successor named has left.
    #[error("{0}")]
    Left(String),
    /// The successor cannot hold what is handed over (not a liaison of the tasks' department,
    /// not a grid worker of the grid).
    #[error("{0}")]
    Unfit(String),
    /// The person or the post lies outside the area the actor may manage.
    #[error("{0}")]
    OutOfScope(String),
    /// The person still holds work and no successor was named.
    #[error("{person} still holds {holdings}: name a successor")]
    Holds {
        person: String,
        /// Boxed: the list is large beside the other refusals.
        holdings: Box<Holdings>,
    },
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Self {
        Refused::Store(Error::Database(error))
    }
}

fn invalid<T>(message: String) -> Result<T, Refused> {
    Err(Refused::Invalid(message))
}

/// Whose people an actor may manage.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everyone: the CLI, whose user holds the database's owner role.
    All,
    /// Those whose post lies inside the area, and only into posts inside it: an operator of
    /// that area (`OnboardPerson`, `ChangePerson`, `OffboardPerson`).
    Area(&'a AreaCode),
}

impl Scope<'_> {
    /// Refuses a post (`what`, lying in `area_code`) outside the scope.
    fn check(self, area_code: &str, what: &str) -> Result<(), Refused> {
        match self {
            Scope::All => Ok(()),
            Scope::Area(area) if area_code.starts_with(area.prefix()) => Ok(()),
            Scope::Area(area) => Err(Refused::OutOfScope(format!(
                "{what} lies in {area_code}, outside area {area}"
            ))),
        }
    }
}

const COLUMNS: &str = "p.id, p.name, p.phone, p.role, p.grid_code, p.department_code,
     p.area_code, p.deputy_id, p.joined_at, p.left_at, p.successor_id,
     coalesce(p.area_code, p.grid_code, d.area_code, '') AS post_area,
     coalesce(d.name, u.name, '') AS post_name";

fn from_row(row: &PgRow) -> Result<Person> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let post: Option<String> = match role.as_str() {
        "grid_worker" => row.try_get("grid_code")?,
        "liaison" => row.try_get("department_code")?,
        _ => row.try_get("area_code")?,
    };
    let post = post.ok_or_else(|| Error::Corrupt(format!("{id} has no post")))?;
    let role =
        parse_role(&role, &post).map_err(|e| Error::Corrupt(format!("the role of {id}: {e}")))?;
    Ok(Person {
        id,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        role,
        area_code: row.try_get("post_area")?,
        post_name: row.try_get("post_name")?,
        deputy_id: row.try_get("deputy_id")?,
        joined_at: row.try_get("joined_at")?,
        left_at: row.try_get("left_at")?,
        successor_id: row.try_get("successor_id")?,
    })
}

/// Which people to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only those whose post lies inside this area (an `AreaCode::prefix`).
    pub area_prefix: Option<String>,
    /// Those who left too.
    pub include_left: bool,
}

/// The staff, by id. Registered Party members are people too, but the registry's
/// (`volunteers`), so they are not listed here.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<Person>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM people p LEFT JOIN departments d ON d.code = p.department_code
         LEFT JOIN org_units u ON u.code = coalesce(p.grid_code, p.area_code)
         WHERE ($1::text IS NULL OR starts_with(coalesce(p.area_code, p.grid_code, d.area_code), $1))
           AND ($2 OR p.left_at IS NULL) AND p.role <> 'member'
         ORDER BY p.id"
    ))
    .bind(filter.area_prefix.as_deref())
    .bind(filter.include_left)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One person, who may have left.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<Person>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM people p LEFT JOIN departments d ON d.code = p.department_code
         LEFT JOIN org_units u ON u.code = coalesce(p.grid_code, p.area_code)
         WHERE p.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Locks the people named (in id order, so two changes never wait on each other in a cycle) and
/// reads them.
async fn lock(conn: &mut PgConnection, ids: &[&str]) -> Result<Vec<Person>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM people p LEFT JOIN departments d ON d.code = p.department_code
         LEFT JOIN org_units u ON u.code = coalesce(p.grid_code, p.area_code)
         WHERE p.id = ANY($1) ORDER BY p.id FOR UPDATE OF p"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The post must exist: the grid, the department or the area. Returns the area it lies in (a
/// department's area for a liaison).
async fn check_post(conn: &mut PgConnection, role: &Role) -> Result<String, Refused> {
    let (what, found) = match role {
        Role::Liaison { department } => {
            let found: Option<String> =
                sqlx::query_scalar("SELECT area_code FROM departments WHERE code = $1")
                    .bind(department.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
            (format!("department {department}"), found)
        }
        Role::GridWorker { grid: area }
        | Role::Operator { area }
        | Role::Handler { unit: area }
        | Role::Leader { area } => {
            let found: Option<String> =
                sqlx::query_scalar("SELECT code FROM org_units WHERE code = $1")
                    .bind(area.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
            let what = match role {
                Role::GridWorker { .. } => "grid",
                _ => "area",
            };
            (format!("{what} {area}"), found)
        }
    };
    found.ok_or_else(|| Refused::NotFound(format!("no {what} (is the org tree loaded?)")))
}

fn check_name(name: &str) -> Result<String, Refused> {
    let name = name.trim();
    if name.is_empty() {
        return invalid("a name is required".into());
    }
    if name.chars().count() > 64 {
        return invalid(format!("the name {name:?} is longer than 64 characters"));
    }
    Ok(name.to_owned())
}

async fn notify(conn: &mut PgConnection, person: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(person)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Onboards a person, on the audit log (`people.onboard`).
pub async fn onboard(
    pool: &PgPool,
    new: &NewPerson,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Person, Refused> {
    let mut tx = pool.begin().await?;
    let person = onboard_in(&mut tx, new, Scope::All, now, actor).await?;
    tx.commit().await?;
    Ok(person)
}

/// [`onboard`] inside the caller's transaction (dispatch commits it with the command's reply),
/// into a post inside `scope`. On a refusal the caller must roll the transaction back.
pub async fn onboard_in(
    conn: &mut PgConnection,
    new: &NewPerson,
    scope: Scope<'_>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Person, Refused> {
    let id = new
        .id
        .trim()
        .parse::<PersonId>()
        .map_err(|e| Refused::Invalid(e.to_string()))?
        .to_string();
    let name = check_name(&new.name)?;
    let phone = parse_phone(&new.phone).map_err(|e| Refused::Invalid(e.to_string()))?;
    let tx = conn;
    let post_area = check_post(&mut *tx, &new.role).await?;
    scope.check(&post_area, &format!("the post {}", post(&new.role)))?;
    let (grid, department, area) = columns(&new.role);
    let inserted = sqlx::query(
        "INSERT INTO people (id, name, phone, role, grid_code, department_code, area_code, joined_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(&name)
    .bind(&phone)
    .bind(new.role.kind())
    .bind(grid)
    .bind(department)
    .bind(area)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        let existing = lock(&mut *tx, &[&id]).await?;
        return Err(Refused::Exists(
            match existing.first().and_then(|p| p.left_at) {
                Some(left) => {
                    format!(
                        "{id} exists and left on {left}; ids are never reused: choose another id"
                    )
                }
                None => format!("{id} exists already"),
            },
        ));
    }
    let person = lock(&mut *tx, &[&id])
        .await?
        .pop()
        .ok_or_else(|| Error::Corrupt(format!("{id} vanished after its insert")))?;
    let entry = Entry {
        action: audit::action::PEOPLE_ONBOARD,
        target: id.clone(),
        area_code: person.area_code.clone(),
        before: None,
        after: Some(person.audit_json()),
    };
    audit::record(&mut *tx, actor, now, &[entry]).await?;
    notify(&mut *tx, &id).await?;
    Ok(person)
}

/// What a change or an offboarding did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub person: Person,
    /// What went to the successor.
    pub handed_over: Holdings,
    pub successor_id: Option<String>,
    pub tokens_revoked: Vec<Uuid>,
}

/// Changes a person's name, phone, role or post, on the audit log (`people.change`). A new role
/// or post hands over what belonged to the old one (open tasks of a department left, a grid left
/// without a worker) to `successor`, or is refused listing it; it revokes the person's tokens,
/// which were scoped to the old post.
pub async fn change(
    pool: &PgPool,
    id: &str,
    change: &PersonChange,
    successor: Option<&str>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Outcome, Refused> {
    let mut tx = pool.begin().await?;
    let outcome = change_in(&mut tx, id, change, successor, Scope::All, now, actor).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// [`change`] inside the caller's transaction, of a person whose post lies inside `scope`, to a
/// post inside it. On a refusal the caller must roll the transaction back.
pub async fn change_in(
    conn: &mut PgConnection,
    id: &str,
    change: &PersonChange,
    successor: Option<&str>,
    scope: Scope<'_>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Outcome, Refused> {
    let name = change.name.as_deref().map(check_name).transpose()?;
    let phone = change
        .phone
        .as_deref()
        .map(parse_phone)
        .transpose()
        .map_err(|e| Refused::Invalid(e.to_string()))?;
    let tx = conn;
    let (before, successor) = lock_pair(&mut *tx, id, successor).await?;
    scope.check(&before.area_code, id)?;
    let moved = change.role.as_ref().filter(|role| **role != before.role);
    if name.is_none() && phone.is_none() && moved.is_none() {
        return invalid(format!("nothing to change for {id}"));
    }
    let mut holdings = Holdings::default();
    if let Some(role) = moved {
        let post_area = check_post(&mut *tx, role).await?;
        scope.check(&post_area, &format!("the new post {}", post(role)))?;
        holdings = held(&mut *tx, &before, successor.as_ref()).await?;
        // Being someone's deputy goes with the person, not the post.
        holdings.deputy_for.clear();
        if let Role::Liaison { department } = role {
            holdings
                .tasks
                .retain(|t| t.department_code != department.as_str());
        }
        if let (Role::GridWorker { grid }, Some(held)) = (role, &holdings.grid) {
            if grid.as_str() == held {
                holdings.grid = None;
            }
        }
        if let (Role::Liaison { department }, Some(held)) = (role, &holdings.department) {
            if department.as_str() == held {
                holdings.department = None;
            }
        }
        // A leader's new post keeps the pairings it may still hold.
        if let Role::Leader { area } = role {
            holdings
                .paired_areas
                .retain(|paired| !fits_pairing(area, paired));
        }
    } else if successor.is_some() {
        return invalid("a successor is named only with a new role or post".into());
    }
    settle(&mut *tx, &before, successor.as_ref(), &holdings, now, actor).await?;
    let (grid, department, area) = columns(change.role.as_ref().unwrap_or(&before.role));
    sqlx::query(
        "UPDATE people SET name = $2, phone = $3, role = $4, grid_code = $5, department_code = $6,
             area_code = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(name.as_deref().unwrap_or(&before.name))
    .bind(phone.as_deref().unwrap_or(&before.phone))
    .bind(change.role.as_ref().unwrap_or(&before.role).kind())
    .bind(grid)
    .bind(department)
    .bind(area)
    .execute(&mut *tx)
    .await?;
    let tokens_revoked = if moved.is_some() {
        tokens::revoke_person(&mut *tx, id, now, actor).await?
    } else {
        Vec::new()
    };
    let after = lock(&mut *tx, &[id])
        .await?
        .pop()
        .ok_or_else(|| Error::Corrupt(format!("{id} vanished in its change")))?;
    let mut after_json = after.audit_json();
    after_json["handed_over"] = holdings.to_json();
    after_json["handed_to"] = json!(successor.as_ref().map(|s| &s.id));
    after_json["tokens_revoked"] = json!(tokens_revoked);
    // A transfer is on the log of both areas: the old post's operators see them go.
    let mut entries = vec![Entry {
        action: audit::action::PEOPLE_CHANGE,
        target: id.to_owned(),
        area_code: after.area_code.clone(),
        before: Some(before.audit_json()),
        after: Some(after_json.clone()),
    }];
    if after.area_code != before.area_code {
        entries.push(Entry {
            area_code: before.area_code.clone(),
            ..entries[0].clone()
        });
    }
    audit::record(&mut *tx, actor, now, &entries).await?;
    notify(&mut *tx, id).await?;
    Ok(Outcome {
        person: after,
        handed_over: holdings,
        successor_id: successor.map(|s| s.id),
        tokens_revoked,
    })
}

/// Offboards a person in one transaction, on the audit log (`people.offboard`): their tokens
/// revoked, their outbound notifications still pending given up, their open tasks handed to `successor` (a live liaison of the same department, each
/// handover on the incident's timeline), the grid they alone work handed to `successor` (a live
/// grid worker of that grid), and deputies naming them re-pointed to `successor`. Refused,
/// changing nothing, when they hold any of that and no successor is named.
pub async fn offboard(
    pool: &PgPool,
    id: &str,
    successor: Option<&str>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Outcome, Refused> {
    let mut tx = pool.begin().await?;
    let outcome = offboard_in(&mut tx, id, successor, Scope::All, now, actor).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// [`offboard`] inside the caller's transaction, of a person whose post lies inside `scope`. On a
/// refusal the caller must roll the transaction back.
pub async fn offboard_in(
    conn: &mut PgConnection,
    id: &str,
    successor: Option<&str>,
    scope: Scope<'_>,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<Outcome, Refused> {
    let tx = conn;
    let (before, successor) = lock_pair(&mut *tx, id, successor).await?;
    scope.check(&before.area_code, id)?;
    // A replica whose clock runs ahead may have onboarded them "after" this one's now: the row's
    // check (left_at >= joined_at) would refuse the update as a database error, answered as
    // unavailable and retried in vain. Said for what it is instead.
    if let Some(joined) = before.joined_at.filter(|joined| now < *joined) {
        return invalid(format!(
            "{id} joined at {joined}, later than this dispatch replica's clock says it is now              ({now}): the replicas' clocks disagree by {} ms or more; set their time right (NTP)              and offboard again",
            (joined - now).num_milliseconds()
        ));
    }
    let holdings = held(&mut *tx, &before, successor.as_ref()).await?;
    settle(&mut *tx, &before, successor.as_ref(), &holdings, now, actor).await?;
    let tokens_revoked = tokens::revoke_person(&mut *tx, id, now, actor).await?;
    // Messages still waiting for them (quiet hours, retries) would reach someone who left.
    sqlx::query(
        "UPDATE notifications SET status = 'failed', next_attempt_at = NULL,
             last_error = '收件人已离岗'
         WHERE person_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE people SET left_at = $2, successor_id = $3 WHERE id = $1")
        .bind(id)
        .bind(now)
        .bind(successor.as_ref().map(|s| s.id.as_str()))
        .execute(&mut *tx)
        .await?;
    let after = lock(&mut *tx, &[id])
        .await?
        .pop()
        .ok_or_else(|| Error::Corrupt(format!("{id} vanished in their offboarding")))?;
    let mut after_json = after.audit_json();
    after_json["handed_over"] = holdings.to_json();
    after_json["tokens_revoked"] = json!(tokens_revoked);
    let entry = Entry {
        action: audit::action::PEOPLE_OFFBOARD,
        target: id.to_owned(),
        area_code: after.area_code.clone(),
        before: Some(before.audit_json()),
        after: Some(after_json),
    };
    audit::record(&mut *tx, actor, now, &[entry]).await?;
    notify(&mut *tx, id).await?;
    Ok(Outcome {
        person: after,
        handed_over: holdings,
        successor_id: successor.map(|s| s.id),
        tokens_revoked,
    })
}

/// Locks the person (who must be live) and the successor named, if any (who must be live and
/// someone else).
/// What the person holds goes to the successor (checked able to hold it); refused when they hold
/// anything and no successor is named.
async fn settle(
    conn: &mut PgConnection,
    person: &Person,
    successor: Option<&Person>,
    holdings: &Holdings,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<(), Refused> {
    match successor {
        None if !holdings.is_empty() => Err(Refused::Holds {
            person: person.id.clone(),
            holdings: Box::new(holdings.clone()),
        }),
        None => Ok(()),
        Some(successor) => {
            check_successor(person, successor, holdings)?;
            hand_over(conn, person, successor, holdings, now, actor).await?;
            Ok(())
        }
    }
}

async fn lock_pair(
    conn: &mut PgConnection,
    id: &str,
    successor: Option<&str>,
) -> Result<(Person, Option<Person>), Refused> {
    if successor == Some(id) {
        return invalid(format!("{id} cannot succeed themselves"));
    }
    let ids: Vec<&str> = std::iter::once(id).chain(successor).collect();
    let mut locked = lock(conn, &ids).await?;
    let mut take = |who: &str| {
        locked
            .iter()
            .position(|p| p.id == who)
            .map(|i| locked.swap_remove(i))
    };
    let Some(person) = take(id) else {
        return Err(Refused::NotFound(format!("no person {id}")));
    };
    if let Some(left) = person.left_at {
        return Err(Refused::Left(format!("{id} left on {left}")));
    }
    let successor = match successor {
        None => None,
        Some(successor) => match take(successor) {
            None => {
                return Err(Refused::NotFound(format!(
                    "no person {successor} to succeed {id}"
                )))
            }
            Some(s) if s.left_at.is_some() => {
                return Err(Refused::Left(format!("the successor {successor} has left")))
            }
            Some(s) => Some(s),
        },
    };
    Ok((person, successor))
}

/// The successor must be able to hold what is handed over: the tasks' department's liaison, the
/// grid's worker.
fn check_successor(
    leaver: &Person,
    successor: &Person,
    holdings: &Holdings,
) -> Result<(), Refused> {
    let department = holdings
        .tasks
        .first()
        .map(|t| t.department_code.as_str())
        .or(holdings.department.as_deref());
    if let Some(held) = department {
        let fits = matches!(&successor.role,
            Role::Liaison { department } if department.as_str() == held);
        if !fits {
            return Err(Refused::Unfit(format!(
                "{} cannot take over {}'s department work: the successor must be a liaison of {held}",
                successor.id, leaver.id
            )));
        }
    }
    if let Some(grid) = &holdings.grid {
        let fits = matches!(&successor.role,
            Role::GridWorker { grid: theirs } if theirs.as_str() == grid);
        if !fits {
            return Err(Refused::Unfit(format!(
                "{} cannot take over grid {grid}: the successor must be a grid worker of it \
                 (onboard one there, or transfer one with `whistle people change --post {grid}`)",
                successor.id
            )));
        }
    }
    if !holdings.paired_areas.is_empty() {
        let fits = match &successor.role {
            Role::Leader { area } => holdings
                .paired_areas
                .iter()
                .all(|paired| fits_pairing(area, paired)),
            _ => false,
        };
        if !fits {
            return Err(Refused::Unfit(format!(
                "{} cannot take over {}'s pairings with {}: the successor must be a leader who may \
                 be paired with each (a city leader with streets, a district leader with its \
                 district's streets and communities)",
                successor.id,
                leaver.id,
                holdings.paired_areas.join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether a leader posted at `posted` may be paired with the area coded `paired`.
fn fits_pairing(posted: &AreaCode, paired: &str) -> bool {
    paired
        .parse::<AreaCode>()
        .is_ok_and(|paired| whistle_domain::leaders::fits(posted, &paired))
}

/// What the person holds: open tasks they reported in for, the grid they alone work (besides the
/// successor, to whom it then goes), the people whose deputy they are.
async fn held(
    conn: &mut PgConnection,
    person: &Person,
    successor: Option<&Person>,
) -> Result<Holdings> {
    let tasks = sqlx::query(
        "SELECT t.incident_id, t.task_id, t.department_code, i.title
         FROM tasks t JOIN incidents i ON i.id = t.incident_id
         WHERE t.holder_id = $1 AND t.status IN ('dispatched', 'accepted', 'supervised')
         ORDER BY t.incident_id, t.task_id",
    )
    .bind(&person.id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(HeldTask {
            incident_id: row.try_get("incident_id")?,
            task_id: u32::try_from(row.try_get::<i32, _>("task_id")?)
                .map_err(|e| Error::Corrupt(e.to_string()))?,
            department_code: row.try_get("department_code")?,
            title: row.try_get("title")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let successor = successor.map(|s| s.id.as_str());
    let (grid, department) = match &person.role {
        Role::GridWorker { grid } => {
            let grid = grid.as_str();
            let alone = alone(
                conn,
                "grid_worker",
                "grid_code",
                grid,
                &person.id,
                successor,
            )
            .await?;
            (alone.then(|| grid.to_owned()), None)
        }
        Role::Liaison { department } => {
            let department = department.as_str();
            let alone = alone(
                conn,
                "liaison",
                "department_code",
                department,
                &person.id,
                successor,
            )
            .await?;
            (None, alone.then(|| department.to_owned()))
        }
        _ => (None, None),
    };
    let deputy_for = sqlx::query_scalar(
        "SELECT id FROM people WHERE deputy_id = $1 AND left_at IS NULL ORDER BY id",
    )
    .bind(&person.id)
    .fetch_all(&mut *conn)
    .await?;
    let paired_areas = if matches!(person.role, Role::Leader { .. }) {
        sqlx::query_scalar(
            "SELECT area_code FROM leader_pairings WHERE leader_id = $1 ORDER BY area_code",
        )
        .bind(&person.id)
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    Ok(Holdings {
        tasks,
        grid,
        department,
        deputy_for,
        paired_areas,
    })
}

/// Whether no one else live (the successor aside) holds `role` at `post` (in `column`).
async fn alone(
    conn: &mut PgConnection,
    role: &str,
    column: &str,
    post: &str,
    person: &str,
    successor: Option<&str>,
) -> Result<bool> {
    let others: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM people
         WHERE role = $4 AND {column} = $1 AND id <> $2 AND id IS DISTINCT FROM $3
           AND left_at IS NULL"
    ))
    .bind(post)
    .bind(person)
    .bind(successor)
    .bind(role)
    .fetch_one(&mut *conn)
    .await?;
    Ok(others == 0)
}

/// Hands the holdings to the successor: each open task under its incident's lock, with a
/// timeline entry (names only, never phones); the deputies re-pointed. The grid needs no write:
/// the successor already works it, and the leaver leaves it.
async fn hand_over(
    conn: &mut PgConnection,
    leaver: &Person,
    successor: &Person,
    holdings: &Holdings,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<()> {
    let mut incidents: Vec<Uuid> = holdings.tasks.iter().map(|t| t.incident_id).collect();
    incidents.dedup();
    for incident_id in incidents {
        let Some(mut locked) = incidents::lock(conn, incident_id).await? else {
            continue;
        };
        let mut timeline = Vec::new();
        // The state is the truth: the projection was read before the incident was locked.
        for task in &mut locked.state.tasks {
            let held = task.holder.as_ref().map(|h| h.as_str()) == Some(leaver.id.as_str());
            if !held || !task.status.is_in_progress() {
                continue;
            }
            task.holder = Some(
                successor
                    .id
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("successor id: {e}")))?,
            );
            timeline.push(TimelineEntry {
                kind: HANDOVER_KIND.to_owned(),
                actor_id: actor.name.clone(),
                at: now,
                note: format!(
                    "任务{}（{}）由{}交接给{}（人员变动）",
                    task.id, task.department, leaver.name, successor.name
                ),
                data: Some(json!({
                    "task_id": task.id,
                    "from": leaver.id,
                    "to": successor.id,
                })),
            });
        }
        if timeline.is_empty() {
            continue;
        }
        let changes = Changes {
            timeline,
            ..Changes::default()
        };
        incidents::save(conn, incident_id, &locked.state, &changes, now).await?;
    }
    if !holdings.deputy_for.is_empty() {
        // The successor's own deputy would become themselves: they get none instead.
        sqlx::query(
            "UPDATE people SET deputy_id = CASE WHEN id = $2 THEN NULL ELSE $2 END
             WHERE deputy_id = $1 AND left_at IS NULL",
        )
        .bind(&leaver.id)
        .bind(&successor.id)
        .execute(&mut *conn)
        .await?;
    }
    if !holdings.paired_areas.is_empty() {
        // An area the successor is paired with already keeps that one pairing.
        sqlx::query(
            "INSERT INTO leader_pairings (leader_id, area_code)
             SELECT $2, area_code FROM leader_pairings
             WHERE leader_id = $1 AND area_code = ANY($3)
             ON CONFLICT DO NOTHING",
        )
        .bind(&leaver.id)
        .bind(&successor.id)
        .bind(&holdings.paired_areas)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM leader_pairings WHERE leader_id = $1 AND area_code = ANY($2)")
            .bind(&leaver.id)
            .bind(&holdings.paired_areas)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_mobiles_or_landlines_with_their_area_code() {
        assert_eq!(parse_phone("138 0000 8000").unwrap(), "13800008000");
        assert_eq!(parse_phone("0477-8581234").unwrap(), "04778581234");
        for bad in [
            "",
            "12800008000",
            "1380000800",
            "138000080001",
            "abc",
            "4778581234",
        ] {
            let e = parse_phone(bad).unwrap_err().to_string();
            assert!(e.contains("bad phone"), "{bad}: {e}");
        }
    }

    #[test]
    fn roles_take_the_post_they_name() {
        assert!(matches!(
            parse_role("grid_worker", "150602001001001"),
            Ok(Role::GridWorker { .. })
        ));
        assert!(parse_role("grid_worker", "150602001")
            .unwrap_err()
            .to_string()
            .contains("is a grid"));
        assert!(matches!(
            parse_role("liaison", "150602-urban_management"),
            Ok(Role::Liaison { .. })
        ));
        assert!(parse_role("handler", "150602")
            .unwrap_err()
            .to_string()
            .contains("street or a community"));
        assert!(matches!(
            parse_role("leader", "150602"),
            Ok(Role::Leader { .. })
        ));
        assert!(parse_role("leader", "150602001")
            .unwrap_err()
            .to_string()
            .contains("the city or a district"));
        assert!(parse_role("member", "150602001001")
            .unwrap_err()
            .to_string()
            .contains("unknown role"));
    }

    #[test]
    fn holdings_say_what_is_held() {
        let holdings = Holdings {
            tasks: vec![HeldTask {
                incident_id: Uuid::nil(),
                task_id: 2,
                department_code: "150602-urban_management".into(),
                title: "井盖缺失".into(),
            }],
            grid: Some("150602001001001".into()),
            department: None,
            deputy_for: vec!["li-x".into()],
            paired_areas: vec!["150602001".into()],
        };
        let text = holdings.to_string();
        assert!(
            text.contains("1 open task(s): task 2 of incident"),
            "{text}"
        );
        assert!(text.contains("grid 150602001001001"), "{text}");
        assert!(text.contains("deputy of li-x"), "{text}");
        assert!(Holdings::default().is_empty());
    }
}
