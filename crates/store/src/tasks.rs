//! Read-only queries for people: a department's tasks (the liaison's workbench) and one incident
//! with its tasks, reports and timeline.
//!
//! Every query runs in a `READ ONLY` transaction, so nothing here can change state (only dispatch
//! writes incidents). The detail is read in one `REPEATABLE READ` snapshot, so the incident, its
//! tasks and its timeline agree with each other.

use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::Result;

/// A department task as stored (`tasks`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// Position within the incident, from 1; commands name the task by it.
    pub task_id: u32,
    /// The reopen round it belongs to.
    pub round: u32,
    pub department_code: String,
    /// `dispatched`, `accepted`, `returned`, `resolved`, `supervised` or `cancelled`.
    pub status: String,
    pub dispatched_at: DateTime<Utc>,
    /// Report-in (报到) deadline.
    pub accept_due_at: DateTime<Utc>,
    /// Resolve (办结) deadline.
    pub resolve_due_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub holder_id: Option<String>,
    pub return_reason: Option<String>,
    pub supervised: bool,
    pub updated_at: DateTime<Utc>,
}

impl TaskRow {
    /// The deadline the department is working against: the report-in deadline while it has not
    /// reported in (dispatched, supervised), the resolve deadline once accepted; none when closed.
    pub fn deadline(&self) -> Option<Deadline> {
        match self.status.as_str() {
            "dispatched" | "supervised" => Some(Deadline::ReportIn(self.accept_due_at)),
            "accepted" => Some(Deadline::Resolve(self.resolve_due_at)),
            _ => None,
        }
    }

    fn from_row(row: &PgRow) -> TaskRow {
        TaskRow {
            task_id: u32::try_from(row.get::<i32, _>("task_id")).unwrap_or_default(),
            round: u32::try_from(row.get::<i32, _>("round")).unwrap_or_default(),
            department_code: row.get("department_code"),
            status: row.get("status"),
            dispatched_at: row.get("dispatched_at"),
            accept_due_at: row.get("accept_due_at"),
            resolve_due_at: row.get("resolve_due_at"),
            accepted_at: row.get("accepted_at"),
            resolved_at: row.get("resolved_at"),
            holder_id: row.get("holder_id"),
            return_reason: row.get("return_reason"),
            supervised: row.get("supervised"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// What a task's clock runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Report in (报到) by then.
    ReportIn(DateTime<Utc>),
    /// Resolve (办结) by then.
    Resolve(DateTime<Utc>),
}

impl Deadline {
    pub fn at(self) -> DateTime<Utc> {
        match self {
            Deadline::ReportIn(at) | Deadline::Resolve(at) => at,
        }
    }
}

/// A task of a department with what its liaison needs to know about the incident.
#[derive(Debug, Clone, PartialEq)]
pub struct DepartmentTask {
    pub incident_id: Uuid,
    pub task: TaskRow,
    pub incident_status: String,
    pub incident_level: String,
    pub incident_version: i64,
    pub category: String,
    pub urgency: String,
    pub title: String,
    pub district_code: String,
    pub street_code: String,
    pub community_code: String,
    pub grid_code: String,
    pub address: String,
    /// The incident's SLA deadline passed before resolution.
    pub overdue: bool,
}

const TASK_COLUMNS: &str = "t.task_id, t.round, t.department_code, t.status, t.dispatched_at,
    t.accept_due_at, t.resolve_due_at, t.accepted_at, t.resolved_at, t.holder_id, t.return_reason,
    t.supervised, t.updated_at";

/// The department's tasks in progress (dispatched, accepted, supervised), or with
/// `include_closed` also its returned, resolved and cancelled ones; the nearest deadline first,
/// then closed tasks, most recently changed first.
pub async fn for_department(
    pool: &PgPool,
    department: &str,
    include_closed: bool,
) -> Result<Vec<DepartmentTask>> {
    let mut tx = read_only(pool, false).await?;
    let sql = format!(
        "SELECT {TASK_COLUMNS}, t.incident_id, i.status AS incident_status, i.level AS incident_level,
             i.version AS incident_version, i.category, i.urgency, i.title, i.district_code,
             i.street_code, i.community_code, i.grid_code, i.address, i.overdue,
             CASE WHEN t.status IN ('dispatched', 'supervised') THEN t.accept_due_at
                  WHEN t.status = 'accepted' THEN t.resolve_due_at END AS deadline
         FROM tasks t JOIN incidents i ON i.id = t.incident_id
         WHERE t.department_code = $1
           AND ($2 OR t.status IN ('dispatched', 'accepted', 'supervised'))
         ORDER BY deadline ASC NULLS LAST, t.updated_at DESC, t.incident_id, t.task_id"
    );
    let rows = sqlx::query(&sql)
        .bind(department)
        .bind(include_closed)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|row| DepartmentTask {
            incident_id: row.get("incident_id"),
            task: TaskRow::from_row(row),
            incident_status: row.get("incident_status"),
            incident_level: row.get("incident_level"),
            incident_version: row.get("incident_version"),
            category: row.get("category"),
            urgency: row.get("urgency"),
            title: row.get("title"),
            district_code: row.get("district_code"),
            street_code: row.get("street_code"),
            community_code: row.get("community_code"),
            grid_code: row.get("grid_code"),
            address: row.get("address"),
            overdue: row.get("overdue"),
        })
        .collect())
}

/// An incident as stored (`incidents`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub id: Uuid,
    pub version: i64,
    pub status: String,
    pub level: String,
    pub category: String,
    pub urgency: String,
    pub title: String,
    pub description: String,
    pub district_code: String,
    pub street_code: String,
    pub community_code: String,
    pub grid_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub address: String,
    pub reporter_id: String,
    pub report_count: i32,
    pub policy_version: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The SLA (resolve) deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// End of the current level's window.
    pub level_due_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub reopen_count: i32,
    pub satisfaction: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The incident this one was attached to, when it is a duplicate.
    pub duplicate_of: Option<Uuid>,
}

/// A report filed on the incident (the first one and any duplicates attached to it).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub report_id: String,
    pub reporter_id: String,
    pub grid_code: String,
    pub received_at: DateTime<Utc>,
    /// The resident's contact as everyone but the callers-back sees it (`138****8000`), if given.
    pub contact_masked: Option<String>,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub seq: i32,
    pub kind: String,
    pub actor_id: String,
    pub at: DateTime<Utc>,
    pub note: String,
    pub data: Option<serde_json::Value>,
}

impl TimelineRow {
    /// The task an entry is about, when it is about one (`data.task`).
    pub fn task_id(&self) -> Option<u32> {
        let task = self.data.as_ref()?.get("task")?.as_u64()?;
        u32::try_from(task).ok()
    }
}

/// An incident with everything that happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentDetail {
    pub incident: IncidentRow,
    pub tasks: Vec<TaskRow>,
    pub reports: Vec<ReportRow>,
    pub timeline: Vec<TimelineRow>,
}

/// One incident with its tasks (by task id), reports (oldest first) and whole timeline (in
/// order), read in one snapshot; `None` if there is no such incident.
pub async fn incident_detail(pool: &PgPool, id: Uuid) -> Result<Option<IncidentDetail>> {
    let mut tx = read_only(pool, true).await?;
    let Some(row) = sqlx::query(
        "SELECT id, version, status, level, category, urgency, title, description, district_code,
             street_code, community_code, grid_code, lat, lon, address, reporter_id, report_count,
             policy_version, occurred_at, reported_at, created_at, updated_at, due_at, level_due_at,
             overdue, reopen_count, satisfaction, resolved_at, closed_at, duplicate_of
         FROM incidents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        tx.commit().await?;
        return Ok(None);
    };
    let incident = IncidentRow {
        id: row.get("id"),
        version: row.get("version"),
        status: row.get("status"),
        level: row.get("level"),
        category: row.get("category"),
        urgency: row.get("urgency"),
        title: row.get("title"),
        description: row.get("description"),
        district_code: row.get("district_code"),
        street_code: row.get("street_code"),
        community_code: row.get("community_code"),
        grid_code: row.get("grid_code"),
        lat: row.get("lat"),
        lon: row.get("lon"),
        address: row.get("address"),
        reporter_id: row.get("reporter_id"),
        report_count: row.get("report_count"),
        policy_version: row.get("policy_version"),
        occurred_at: row.get("occurred_at"),
        reported_at: row.get("reported_at"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        due_at: row.get("due_at"),
        level_due_at: row.get("level_due_at"),
        overdue: row.get("overdue"),
        reopen_count: row.get("reopen_count"),
        satisfaction: row.get("satisfaction"),
        resolved_at: row.get("resolved_at"),
        closed_at: row.get("closed_at"),
        duplicate_of: row.get("duplicate_of"),
    };

    let tasks = sqlx::query(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.incident_id = $1 ORDER BY t.task_id"
    ))
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(TaskRow::from_row)
    .collect();

    let reports = sqlx::query_as::<_, (String, String, String, DateTime<Utc>, Option<String>)>(
        "SELECT r.report_id, r.reporter_id, r.grid_code, r.received_at, c.masked
         FROM reports r LEFT JOIN report_contacts c ON c.report_id = r.report_id
         WHERE r.incident_id = $1 ORDER BY r.received_at, r.report_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(
        |(report_id, reporter_id, grid_code, received_at, contact_masked)| ReportRow {
            report_id,
            reporter_id,
            grid_code,
            received_at,
            contact_masked,
        },
    )
    .collect();

    let timeline = sqlx::query(
        "SELECT seq, kind, actor_id, at, note, data FROM timeline
         WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| TimelineRow {
        seq: row.get("seq"),
        kind: row.get("kind"),
        actor_id: row.get("actor_id"),
        at: row.get("at"),
        note: row.get("note"),
        data: row.get("data"),
    })
    .collect();
    tx.commit().await?;
    Ok(Some(IncidentDetail {
        incident,
        tasks,
        reports,
        timeline,
    }))
}

/// Ids of incidents whose id ends with `suffix` (as screens and `whistle watch` print them), at
/// most `limit`, newest first. A suffix that is not hexadecimal digits and dashes matches nothing.
pub async fn incidents_by_id_suffix(pool: &PgPool, suffix: &str, limit: i64) -> Result<Vec<Uuid>> {
    let suffix = suffix.to_ascii_lowercase();
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Ok(Vec::new());
    }
    let mut tx = read_only(pool, false).await?;
    let ids = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE id::text LIKE '%' || $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(suffix)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// A transaction that refuses writes; `snapshot` makes it one consistent snapshot for several
/// statements.
async fn read_only(pool: &PgPool, snapshot: bool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    let set = if snapshot {
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    } else {
        "SET TRANSACTION READ ONLY"
    };
    sqlx::query(set).execute(&mut *tx).await?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str) -> TaskRow {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        TaskRow {
            task_id: 1,
            round: 0,
            department_code: "150602-heating".into(),
            status: status.into(),
            dispatched_at: at(0),
            accept_due_at: at(30),
            resolve_due_at: at(600),
            accepted_at: None,
            resolved_at: None,
            holder_id: None,
            return_reason: None,
            supervised: false,
            updated_at: at(0),
        }
    }

    #[test]
    fn the_deadline_follows_the_task_status() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(
            task("dispatched").deadline(),
            Some(Deadline::ReportIn(at(30)))
        );
        assert_eq!(
            task("supervised").deadline(),
            Some(Deadline::ReportIn(at(30)))
        );
        assert_eq!(
            task("accepted").deadline(),
            Some(Deadline::Resolve(at(600)))
        );
        for closed in ["returned", "resolved", "cancelled"] {
            assert_eq!(task(closed).deadline(), None, "{closed}");
        }
    }
}
