//! `ListIncidents` (filters, newest first, keyset pagination) and `GetIncident` (one incident with
//! its tasks, reports and timeline).
//!
//! "Overdue" for an incident means it missed its SLA deadline: dispatch's `overdue` flag, or open
//! and past `due_at` (the deadline timer may not have fired yet). The summary's `overdue` field
//! and the `overdue_only` filter use that one definition.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::{postgres::PgRow, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;
use whistle_domain::{policy::Policy, AreaCode, CategoryCode};
use whistle_proto::v1;

use crate::{
    area::GridRange,
    convert,
    page_token::{self, Cursor},
    Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
/// Longest free-text search, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// The columns of an [`v1::IncidentSummary`], read by [`summary`].
pub(crate) const SUMMARY_COLUMNS: &str = "i.id, i.title, i.category, i.urgency, i.status, i.level, i.district_code, \
     i.street_code, i.community_code, i.grid_code, i.reported_at, i.created_at, i.due_at, i.overdue, \
     i.report_count, i.version, i.lat, i.lon, i.address, i.ledger_state, i.origin, i.topic_key";

/// A checked `ListIncidentsRequest`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    area: Option<GridRange>,
    statuses: Vec<&'static str>,
    categories: Vec<String>,
    levels: Vec<&'static str>,
    urgencies: Vec<&'static str>,
    overdue_only: bool,
    /// `incidents.origin` values (`report`, `proactive`); empty for all.
    origins: Vec<&'static str>,
    /// An `ILIKE` pattern with the request's text escaped.
    text: Option<String>,
    page_size: u32,
    after: Option<Cursor>,
}

impl Filter {
    /// `area` is the request's area as checked against the caller's token.
    pub fn parse(request: &v1::ListIncidentsRequest, area: &AreaCode) -> Result<Filter> {
        let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let categories = request
            .categories
            .iter()
            .map(|c| {
                c.parse::<CategoryCode>()
                    .map(|c| c.to_string())
                    .map_err(|e| Error::invalid(format!("categories: {e}")))
            })
            .collect::<Result<_>>()?;
        let text = request.text.trim();
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(format!(
                "text is longer than {MAX_TEXT_CHARS} characters"
            )));
        }
        Ok(Filter {
            area: Some(GridRange::of(area)),
            statuses: request
                .statuses
                .iter()
                .map(|&s| convert::status_to_db(s))
                .collect::<Result<_>>()?,
            categories,
            levels: request
                .levels
                .iter()
                .map(|&l| convert::level_to_db(l))
                .collect::<Result<_>>()?,
            urgencies: request
                .urgencies
                .iter()
                .map(|&u| convert::urgency_to_db(u))
                .collect::<Result<_>>()?,
            overdue_only: request.overdue_only,
            origins: request
                .origins
                .iter()
                .map(|&o| origin_to_db(o))
                .collect::<Result<_>>()?,
            text: (!text.is_empty()).then(|| format!("%{}%", escape_like(text))),
            page_size,
            after: if request.page_token.is_empty() {
                None
            } else {
                Some(Cursor::decode(&request.page_token)?)
            },
        })
    }
}

/// `incidents.origin` of a requested `Origin`.
fn origin_to_db(value: i32) -> Result<&'static str> {
    match v1::Origin::try_from(value) {
        Ok(v1::Origin::Report) => Ok("report"),
        Ok(v1::Origin::Proactive) => Ok("proactive"),
        _ => Err(Error::invalid(format!(
            "origins: {value} is not ORIGIN_REPORT or ORIGIN_PROACTIVE"
        ))),
    }
}

/// Escapes `LIKE` wildcards so the text matches literally (backslash is the default escape).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One page of incidents, newest first, and the token of the next page (empty on the last).
pub(crate) async fn list(
    pool: &PgPool,
    policy: &Policy,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<v1::ListIncidentsResponse> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM incidents i WHERE true"
    ));
    if let Some(range) = &filter.area {
        query
            .push(" AND i.grid_code ~>=~ ")
            .push_bind(range.low.clone())
            .push(" AND i.grid_code ~<~ ")
            .push_bind(range.high.clone());
    }
    if !filter.statuses.is_empty() {
        query
            .push(" AND i.status = ANY(")
            .push_bind(filter.statuses.clone())
            .push(")");
    }
    if !filter.categories.is_empty() {
        query
            .push(" AND i.category = ANY(")
            .push_bind(filter.categories.clone())
            .push(")");
    }
    if !filter.levels.is_empty() {
        query
            .push(" AND i.level = ANY(")
            .push_bind(filter.levels.clone())
            .push(")");
    }
    if !filter.urgencies.is_empty() {
        query
            .push(" AND i.urgency = ANY(")
            .push_bind(filter.urgencies.clone())
            .push(")");
    }
    if !filter.origins.is_empty() {
        query
            .push(" AND i.origin = ANY(")
            .push_bind(filter.origins.clone())
            .push(")");
    }
    if filter.overdue_only {
        query
            .push(" AND (i.overdue OR (i.status = ANY(")
            .push_bind(convert::open_statuses())
            .push(") AND i.due_at < ")
            .push_bind(now)
            .push("))");
    }
    if let Some(pattern) = &filter.text {
        query
            .push(" AND (i.title ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR i.description ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR i.address ILIKE ")
            .push_bind(pattern.clone())
            .push(")");
    }
    if let Some(after) = &filter.after {
        query
            .push(" AND (i.created_at, i.id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    // One row more than the page tells whether there is a next page.
    query
        .push(" ORDER BY i.created_at DESC, i.id DESC LIMIT ")
        .push_bind(i64::from(filter.page_size) + 1);

    let rows = query.build().fetch_all(pool).await?;
    let more = rows.len() > filter.page_size as usize;
    let page = &rows[..rows.len().min(filter.page_size as usize)];
    let next_page_token = match page.last() {
        Some(last) if more => Cursor {
            created_at: last.try_get("created_at")?,
            id: last.try_get("id")?,
        }
        .encode(),
        _ => String::new(),
    };
    Ok(v1::ListIncidentsResponse {
        incidents: page
            .iter()
            .map(|row| summary(row, policy, now))
            .collect::<Result<_>>()?,
        next_page_token,
    })
}

/// Reads an [`v1::IncidentSummary`] from a row holding [`SUMMARY_COLUMNS`].
pub(crate) fn summary(
    row: &PgRow,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<v1::IncidentSummary> {
    let id: Uuid = row.try_get("id")?;
    let category: String = row.try_get("category")?;
    let status: String = row.try_get("status")?;
    let due_at: Option<DateTime<Utc>> = row.try_get("due_at")?;
    let flagged: bool = row.try_get("overdue")?;
    let open = convert::open_statuses().contains(&status.as_str());
    // A ledger case's deadlines stop: never overdue while in the ledger.
    let ledger_state: Option<String> = row.try_get("ledger_state")?;
    let ledgered = ledger_state.is_some_and(|state| state != "proposed");
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    let location = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(v1::Location {
            lat,
            lon,
            address: row.try_get("address")?,
        }),
        _ => None,
    };
    Ok(v1::IncidentSummary {
        incident_id: id.to_string(),
        title: row.try_get("title")?,
        category_name: policy
            .category(&category)
            .map(|c| c.name_zh.clone())
            .unwrap_or_default(),
        category,
        urgency: convert::urgency_from_db(row.try_get("urgency")?)? as i32,
        status: convert::status_from_db(&status)? as i32,
        level: convert::level_from_db(row.try_get("level")?)? as i32,
        district_code: row.try_get("district_code")?,
        street_code: row.try_get("street_code")?,
        community_code: row.try_get("community_code")?,
        grid_code: row.try_get("grid_code")?,
        reported_at: Some(convert::timestamp(row.try_get("reported_at")?)),
        due_at: due_at.map(convert::timestamp),
        overdue: !ledgered && (flagged || (open && due_at.is_some_and(|due| due < now))),
        report_count: u32::try_from(row.try_get::<i32, _>("report_count")?)
            .map_err(|_| Error::Corrupt(format!("incident {id} has a negative report count")))?,
        version: u64::try_from(row.try_get::<i64, _>("version")?)
            .map_err(|_| Error::Corrupt(format!("incident {id} has a negative version")))?,
        location,
        ledgered,
        origin: match row.try_get::<&str, _>("origin")? {
            "proactive" => v1::Origin::Proactive,
            _ => v1::Origin::Report,
        } as i32,
        topic_key: row
            .try_get::<Option<String>, _>("topic_key")?
            .unwrap_or_default(),
    })
}

/// Parses an incident id from a request.
fn parse_incident_id(value: &str) -> Result<Uuid> {
    if value.is_empty() {
        return Err(Error::invalid("incident_id is required"));
    }
    value
        .parse()
        .map_err(|_| Error::invalid(format!("incident_id {value:?} is not a UUID")))
}

/// One incident with its tasks (and their departments' names), every report filed for it
/// (duplicates attached included) and the whole timeline, read in one snapshot so they agree.
pub(crate) async fn get(
    pool: &PgPool,
    policy: &Policy,
    incident_id: &str,
    now: DateTime<Utc>,
) -> Result<v1::IncidentDetail> {
    let id = parse_incident_id(incident_id)?;
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, i.description, i.policy_version, i.level_due_at, i.resolved_at,
                i.closed_at, i.satisfaction, i.reopen_count, i.duplicate_of,
                coalesce((i.state->>'extensions')::int4, 0) AS extensions,
                i.state->'extension'->>'approver' AS ext_approver,
                (i.state->'extension'->>'task')::int8 AS ext_task,
                i.state->'extension'->>'requested_by' AS ext_requested_by,
                (i.state->'extension'->>'until')::timestamptz AS ext_until,
                (i.state->'extension'->>'requested_at')::timestamptz AS ext_requested_at,
                (i.state->'extension'->>'answer_due')::timestamptz AS ext_answer_due,
                i.state->'ledger' AS ledger, i.state->'proactive' AS proactive
         FROM incidents i WHERE i.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found(format!("no incident {id}")))?;

    let tasks = sqlx::query(
        "SELECT t.task_id, t.department_code, coalesce(d.name, '') AS department_name, t.status,
                t.dispatched_at, t.accept_due_at, t.resolve_due_at, t.accepted_at, t.resolved_at,
                t.holder_id, t.return_reason, t.round, t.supervised,
                t.disputed, t.dispute_to, t.role
         FROM tasks t LEFT JOIN departments d ON d.code = t.department_code
         WHERE t.incident_id = $1 ORDER BY t.task_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(task)
    .collect::<Result<_>>()?;

    let reports: Vec<v1::Report> = sqlx::query(
        "SELECT report_id, payload FROM reports WHERE incident_id = $1 ORDER BY received_at, report_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| {
        let report_id: String = row.try_get("report_id")?;
        let payload: Vec<u8> = row.try_get("payload")?;
        v1::Report::decode(payload.as_slice())
            .map_err(|e| Error::Corrupt(format!("report {report_id:?} payload: {e}")))
    })
    .collect::<Result<_>>()?;

    // The actor's name and unit for people (a street's or community's staff are named by their
    // unit); dispatch itself and unknown ids get none.
    // A resolution's "after" photos are in its entry's data (`{"task": 1, "photos": […]}`).
    let mut after_photos = Vec::new();
    let timeline = sqlx::query(
        "SELECT tl.seq, tl.kind, tl.actor_id, tl.at, tl.note,
                concat_ws(' · ', nullif(p.name, ''), coalesce(d.name, o.name)) AS actor_name,
                ARRAY(SELECT jsonb_array_elements_text(
                          CASE WHEN jsonb_typeof(tl.data->'photos') = 'array'
                               THEN tl.data->'photos' ELSE '[]'::jsonb END)) AS photos,
                coalesce(tl.data->>'task', '') AS task
         FROM timeline tl
         LEFT JOIN people p ON p.id = tl.actor_id
         LEFT JOIN departments d ON d.code = p.department_code
         LEFT JOIN org_units o ON o.code = coalesce(p.grid_code, p.area_code)
         WHERE tl.incident_id = $1 ORDER BY tl.seq",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| {
        let at = Some(convert::timestamp(row.try_get("at")?));
        let task_id: String = row.try_get("task")?;
        for photo_id in row.try_get::<Vec<String>, _>("photos")? {
            after_photos.push(v1::IncidentPhoto {
                photo_id,
                kind: v1::PhotoKind::After as i32,
                task_id: task_id.clone(),
                at,
                ..Default::default()
            });
        }
        Ok(v1::TimelineEntry {
            seq: u64::try_from(row.try_get::<i32, _>("seq")?).map_err(|_| {
                Error::Corrupt(format!("incident {id} has a negative timeline seq"))
            })?,
            kind: row.try_get("kind")?,
            actor_id: row.try_get("actor_id")?,
            at,
            note: row.try_get("note")?,
            actor_name: row.try_get("actor_name")?,
        })
    })
    .collect::<Result<_>>()?;
    let mut photos: Vec<v1::IncidentPhoto> = before_photos(&reports).chain(after_photos).collect();
    let ids: Vec<&str> = photos.iter().map(|p| p.photo_id.as_str()).collect();
    let erased: HashMap<String, (DateTime<Utc>, String)> = if ids.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, DateTime<Utc>, String)>(
            "SELECT photo_id, erased_at, why FROM photo_erasures WHERE photo_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, at, why)| (id, (at, why)))
        .collect()
    };
    tx.commit().await?;
    for photo in &mut photos {
        if let Some((at, why)) = erased.get(&photo.photo_id) {
            photo.erased_at = Some(convert::timestamp(*at));
            photo.erased_why = why.clone();
        }
    }

    Ok(v1::IncidentDetail {
        incident: Some(summary(&row, policy, now)?),
        description: row.try_get("description")?,
        tasks,
        reports,
        timeline,
        policy_version: row.try_get("policy_version")?,
        level_due_at: optional_timestamp(&row, "level_due_at")?,
        resolved_at: optional_timestamp(&row, "resolved_at")?,
        closed_at: optional_timestamp(&row, "closed_at")?,
        satisfaction: convert::satisfaction_from_db(row.try_get("satisfaction")?)? as i32,
        reopen_count: u32::try_from(row.try_get::<i32, _>("reopen_count")?)
            .map_err(|_| Error::Corrupt(format!("incident {id} has a negative reopen count")))?,
        duplicate_of: row
            .try_get::<Option<Uuid>, _>("duplicate_of")?
            .map(|d| d.to_string())
            .unwrap_or_default(),
        photos,
        pending_extension: pending_extension(&row)?,
        extensions: u32::try_from(row.try_get::<i32, _>("extensions")?)
            .map_err(|_| Error::Corrupt(format!("incident {id} has a negative extension count")))?,
        ledger: row
            .try_get::<Option<serde_json::Value>, _>("ledger")?
            .map(|json| {
                serde_json::from_value::<whistle_domain::incident::Ledger>(json)
                    .map(|ledger| whistle_wire::convert::ledger_to_proto(&ledger))
                    .map_err(|e| Error::Corrupt(format!("incident {id} ledger: {e}")))
            })
            .transpose()?,
        may_decide_ledger: false,
        proactive: row
            .try_get::<Option<serde_json::Value>, _>("proactive")?
            .map(|json| {
                serde_json::from_value::<whistle_domain::incident::Proactive>(json)
                    .map_err(|e| Error::Corrupt(format!("incident {id} proactive: {e}")))
            })
            .transpose()?
            .map(|proactive| -> Result<v1::ProactiveCase> {
                Ok(proactive_case(&proactive, row.try_get("created_at")?, now))
            })
            .transpose()?,
    })
}

/// A proactive case's adoption and milestones (`may_complete_milestones` and `change` are the
/// caller's, set later).
pub(crate) fn proactive_case(
    proactive: &whistle_domain::incident::Proactive,
    adopted_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> v1::ProactiveCase {
    v1::ProactiveCase {
        topic_key: proactive.topic_key.clone(),
        month: proactive.month.clone(),
        adopted_by: proactive.adopted_by.to_string(),
        adopted_at: Some(convert::timestamp(adopted_at)),
        summary: proactive.summary.clone(),
        milestones: proactive
            .milestones
            .iter()
            .zip(1..)
            .map(|(m, number)| v1::MilestoneState {
                number,
                title: m.title.clone(),
                due: Some(convert::timestamp(m.due)),
                done_at: m.done_at.map(convert::timestamp),
                done_by: m
                    .done_by
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                overdue: m.is_overdue(now),
            })
            .collect(),
        may_complete_milestones: false,
        change: None,
    }
}

/// The pending extension request of the engine's state (`may_answer` is the caller's, set later).
fn pending_extension(row: &PgRow) -> Result<Option<v1::PendingExtension>> {
    let Some(approver) = row.try_get::<Option<String>, _>("ext_approver")? else {
        return Ok(None);
    };
    let at = |column: &str| -> Result<Option<prost_types::Timestamp>> {
        Ok(Some(convert::timestamp(row.try_get(column)?)))
    };
    Ok(Some(v1::PendingExtension {
        task_id: row
            .try_get::<Option<i64>, _>("ext_task")?
            .map(|t| t.to_string())
            .unwrap_or_default(),
        requested_by: row.try_get("ext_requested_by")?,
        approver: convert::level_from_db(&approver)? as i32,
        until: at("ext_until")?,
        requested_at: at("ext_requested_at")?,
        answer_due_at: at("ext_answer_due")?,
        may_answer: false,
    }))
}

/// The reports' photos, in the reports' order.
fn before_photos(reports: &[v1::Report]) -> impl Iterator<Item = v1::IncidentPhoto> + '_ {
    reports.iter().flat_map(|report| {
        report.photo_ids.iter().map(|photo_id| v1::IncidentPhoto {
            photo_id: photo_id.clone(),
            kind: v1::PhotoKind::Before as i32,
            report_id: report.report_id.clone(),
            at: report.reported_at,
            ..Default::default()
        })
    })
}

fn optional_timestamp(row: &PgRow, column: &str) -> Result<Option<prost_types::Timestamp>> {
    Ok(row
        .try_get::<Option<DateTime<Utc>>, _>(column)?
        .map(convert::timestamp))
}

fn task(row: &PgRow) -> Result<v1::Task> {
    Ok(v1::Task {
        state: Some(task_state(row, "status")?),
        department_name: row.try_get("department_name")?,
        verbs: Vec::new(),
    })
}

/// A task's state from a row of `tasks` columns, its status read from `status_column`.
pub(crate) fn task_state(row: &PgRow, status_column: &str) -> Result<v1::TaskState> {
    let optional_time = |column: &str| optional_timestamp(row, column);
    let non_negative = |column: &str| -> Result<u32> {
        u32::try_from(row.try_get::<i32, _>(column)?)
            .map_err(|_| Error::Corrupt(format!("task {column} is negative")))
    };
    Ok(v1::TaskState {
        task_id: non_negative("task_id")?,
        department_code: row.try_get("department_code")?,
        status: convert::task_status_from_db(row.try_get(status_column)?)? as i32,
        round: non_negative("round")?,
        dispatched_at: Some(convert::timestamp(row.try_get("dispatched_at")?)),
        accept_due_at: Some(convert::timestamp(row.try_get("accept_due_at")?)),
        resolve_due_at: Some(convert::timestamp(row.try_get("resolve_due_at")?)),
        accepted_at: optional_time("accepted_at")?,
        resolved_at: optional_time("resolved_at")?,
        holder_id: row
            .try_get::<Option<String>, _>("holder_id")?
            .unwrap_or_default(),
        return_reason: convert::return_reason_from_db(
            row.try_get::<Option<&str>, _>("return_reason")?,
        )? as i32,
        supervised: row.try_get("supervised")?,
        disputed: row.try_get("disputed")?,
        dispute_to_department_code: row
            .try_get::<Option<String>, _>("dispute_to")?
            .unwrap_or_default(),
        role: convert::task_role_from_db(row.try_get("role")?)? as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> AreaCode {
        "150600".parse().unwrap()
    }

    fn request() -> v1::ListIncidentsRequest {
        v1::ListIncidentsRequest::default()
    }

    #[test]
    fn page_size_defaults_to_50_and_is_capped_at_500() {
        assert_eq!(Filter::parse(&request(), &city()).unwrap().page_size, 50);
        let max = v1::ListIncidentsRequest {
            page_size: 500,
            ..request()
        };
        assert_eq!(Filter::parse(&max, &city()).unwrap().page_size, 500);
        let above = v1::ListIncidentsRequest {
            page_size: 501,
            ..request()
        };
        let Err(Error::InvalidArgument(message)) = Filter::parse(&above, &city()) else {
            panic!("501 accepted")
        };
        assert_eq!(message, "page_size 501 is above the maximum of 500");
    }

    #[test]
    fn filters_are_checked() {
        for bad in [
            v1::ListIncidentsRequest {
                statuses: vec![0],
                ..request()
            },
            v1::ListIncidentsRequest {
                levels: vec![42],
                ..request()
            },
            v1::ListIncidentsRequest {
                urgencies: vec![0],
                ..request()
            },
            v1::ListIncidentsRequest {
                categories: vec!["heating no heat".into()],
                ..request()
            },
            v1::ListIncidentsRequest {
                text: "长".repeat(201),
                ..request()
            },
            v1::ListIncidentsRequest {
                page_token: "x".into(),
                ..request()
            },
        ] {
            assert!(
                matches!(Filter::parse(&bad, &city()), Err(Error::InvalidArgument(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn free_text_matches_literally() {
        let filter = Filter::parse(
            &v1::ListIncidentsRequest {
                text: "  100%_a\\b ".into(),
                ..request()
            },
            &city(),
        )
        .unwrap();
        assert_eq!(filter.text.as_deref(), Some("%100\\%\\_a\\\\b%"));
    }

    #[test]
    fn incident_ids_must_be_uuids() {
        assert!(matches!(
            parse_incident_id(""),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            parse_incident_id("42"),
            Err(Error::InvalidArgument(_))
        ));
        let id = Uuid::now_v7();
        assert_eq!(parse_incident_id(&id.to_string()).unwrap(), id);
    }
}
