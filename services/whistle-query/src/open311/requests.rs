//! `GET requests`, `requests/{id}`, `tokens/{token}` and FixMyStreet's `servicerequestupdates`:
//! the service requests of the key's area (docs/open311.md, "Reading").
//!
//! A service request is a report (its id the report id), whatever channel it came by; its status
//! is its incident's — `open` while a level or a department works on it, `closed` from its
//! resolution on (the detailed status in `extended_attributes` with `extensions=true`) — and
//! `expected_datetime` the incident's deadline; the extension `channel` lists one channel's. Descriptions are redacted (redact.rs); contacts,
//! names, people and photos are never shown.

use chrono::{DateTime, TimeDelta, Utc};
use prost::Message as _;
use sqlx::{postgres::PgRow, QueryBuilder, Row as _};
use whistle_domain::policy::Policy;
use whistle_proto::v1;
use whistle_wire::kind;

use super::{
    door::{Answer, Failure, Open311, Params},
    format::Node,
    redact::redact,
};
use crate::{area::GridRange, auth::Principal};

/// The longest span of `start_date`..`end_date`, and the default one ending now (the spec's).
pub(crate) const MAX_SPAN: TimeDelta = TimeDelta::days(90);
/// Requests of one page unless `page_size` says otherwise, and the most it may say.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 1_000;
pub(crate) const MAX_PAGE_SIZE: u32 = 1_000;
/// Ids one `service_request_id` list may name.
pub(crate) const MAX_IDS: usize = 200;
/// Updates' default span ending now, when `start_date` is not given.
const UPDATES_SPAN: TimeDelta = TimeDelta::days(1);

const REQUEST_SQL: &str = "
    SELECT r.report_id, r.received_at, r.payload, r.category, r.channel,
           i.status, i.level, i.updated_at, i.due_at, i.lat, i.lon, i.grid_code,
           i.ledger_state IS NOT NULL AND i.ledger_state <> 'proposed' AS ledgered,
           (SELECT d.name FROM tasks t JOIN departments d ON d.code = t.department_code
            WHERE t.incident_id = i.id
            ORDER BY (t.role = 'lead') DESC, t.task_id DESC LIMIT 1) AS department,
           (SELECT u.name FROM org_units u
            WHERE u.code = CASE i.level WHEN 'grid' THEN i.grid_code
                                        WHEN 'community' THEN i.community_code
                                        WHEN 'street' THEN i.street_code
                                        WHEN 'district' THEN i.district_code
                                        ELSE left(i.district_code, 4) || '00' END) AS unit
    FROM reports r JOIN incidents i ON i.id = r.incident_id
    WHERE r.grid_code ~>=~ ";

/// The statuses the spec's two cover: `open` while being worked on.
fn is_open(status: &str) -> bool {
    matches!(status, "handling" | "whistled" | "accepted")
}

fn status_note(status: &str) -> &'static str {
    match status {
        "handling" => "处理中",
        "whistled" => "已吹哨，等待部门报到",
        "accepted" => "部门已报到，办理中",
        "resolved" => "已办结，等待回访",
        "closed" => "已办结并回访",
        "closed_unverified" => "已办结（未回访）",
        "duplicate" => "已与同一问题合并处理",
        _ => "",
    }
}

fn iso(at: DateTime<Utc>) -> Node {
    Node::text(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One service request as the spec shows it.
fn request(row: &PgRow, policy: &Policy, extensions: bool) -> Result<Node, Failure> {
    let report_id: String = row.try_get("report_id").map_err(crate::Error::from)?;
    let get = |e: sqlx::Error| Failure::from(crate::Error::from(e));
    let payload: Vec<u8> = row.try_get("payload").map_err(get)?;
    let report = v1::Report::decode(payload.as_slice())
        .map_err(|e| Failure::from(crate::Error::Corrupt(format!("report {report_id:?}: {e}"))))?;
    let category: String = row.try_get("category").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let department: Option<String> = row.try_get("department").map_err(get)?;
    let unit: Option<String> = row.try_get("unit").map_err(get)?;
    let due_at: Option<DateTime<Utc>> = row.try_get("due_at").map_err(get)?;
    let (lat, lon) = match &report.location {
        Some(l) => (Some(l.lat), Some(l.lon)),
        None => (
            row.try_get("lat").map_err(get)?,
            row.try_get("lon").map_err(get)?,
        ),
    };
    let mut fields = vec![
        ("service_request_id", Node::text(report_id)),
        (
            "status",
            Node::text(if is_open(&status) { "open" } else { "closed" }),
        ),
        ("status_notes", Node::text(status_note(&status))),
        (
            "service_name",
            Node::text(
                policy
                    .category(&category)
                    .map(|c| c.name_zh.clone())
                    .unwrap_or_default(),
            ),
        ),
        ("service_code", Node::text(category)),
        ("description", Node::text(redact(&report.description))),
        (
            "agency_responsible",
            Node::text_or_null(department.or(unit).unwrap_or_default()),
        ),
        ("service_notice", Node::Null),
        (
            "requested_datetime",
            iso(row.try_get("received_at").map_err(get)?),
        ),
        (
            "updated_datetime",
            iso(row.try_get("updated_at").map_err(get)?),
        ),
        ("expected_datetime", due_at.map_or(Node::Null, iso)),
        (
            "address",
            Node::text_or_null(redact(
                report.location.as_ref().map_or("", |l| l.address.as_str()),
            )),
        ),
        ("address_id", Node::Null),
        ("zipcode", Node::Null),
        ("lat", lat.map_or(Node::Null, Node::Number)),
        ("long", lon.map_or(Node::Null, Node::Number)),
        (
            "media_url",
            Node::text_or_null(
                report
                    .attachments
                    .first()
                    .map(|a| a.uri.clone())
                    .unwrap_or_default(),
            ),
        ),
    ];
    if extensions {
        fields.push((
            "extended_attributes",
            Node::Object(vec![
                ("detailed_status", Node::text(status.clone())),
                (
                    "level",
                    Node::text(row.try_get::<String, _>("level").map_err(get)?),
                ),
                (
                    "ledgered",
                    Node::Bool(row.try_get("ledgered").map_err(get)?),
                ),
                (
                    "channel",
                    Node::text(row.try_get::<String, _>("channel").map_err(get)?),
                ),
                (
                    "grid_code",
                    Node::text(row.try_get::<String, _>("grid_code").map_err(get)?),
                ),
            ]),
        ));
    }
    Ok(Node::Object(fields))
}

fn parse_time(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, Failure> {
    params
        .get(name)
        .map(|value| {
            DateTime::parse_from_rfc3339(value)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    Failure::bad_request(format!(
                        "{name} {value:?} is not a W3C date-time with its offset, as 2026-12-01T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// `start_date`..`end_date`, at most 90 days; `default` before `end_date` (now) when not given.
fn window(
    params: &Params,
    now: DateTime<Utc>,
    default: TimeDelta,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Failure> {
    let start = parse_time(params, "start_date")?;
    let end = parse_time(params, "end_date")?;
    let (start, end) = match (start, end) {
        (Some(start), Some(end)) => (start, end),
        (Some(start), None) => (start, (start + MAX_SPAN).min(now)),
        (None, Some(end)) => (end - default, end),
        (None, None) => (now - default, now),
    };
    if start > end {
        return Err(Failure::bad_request("start_date is after end_date"));
    }
    if end - start > MAX_SPAN {
        return Err(Failure::bad_request(
            "start_date and end_date may not span more than 90 days",
        ));
    }
    Ok((start, end))
}

/// The common extension's `page` (from 1) and `page_size`.
fn page(params: &Params) -> Result<(i64, i64), Failure> {
    let number = |name: &str, default: u32, max: u32| -> Result<u32, Failure> {
        match params.get(name) {
            None => Ok(default),
            Some(value) => value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    Failure::bad_request(format!(
                        "{name} {value:?} is not a number from 1 to {max}"
                    ))
                }),
        }
    };
    let size = number("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let page = number("page", 1, 1_000_000)?;
    Ok((i64::from(size), (i64::from(page) - 1) * i64::from(size)))
}

fn list_of(params: &Params, name: &str) -> Vec<String> {
    params
        .get(name)
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn extensions(params: &Params) -> bool {
    params.get("extensions") == Some("true")
}

fn within(query: &mut QueryBuilder<'_, sqlx::Postgres>, key: &Principal) {
    let range = GridRange::of(&key.area);
    query
        .push_bind(range.low)
        .push(" AND r.grid_code ~<~ ")
        .push_bind(range.high);
}

/// `GET requests`: the spec's filters — `service_request_id` (a list, which overrides the
/// others), `service_code` (a list), `start_date`/`end_date` on the requested time (the last 90
/// days by default), `status` (`open`, `closed`) — newest first, a page at a time.
pub(crate) async fn list(door: &Open311, key: &Principal, params: &Params) -> Answer {
    let (limit, offset) = page(params)?;
    let mut query = QueryBuilder::new(REQUEST_SQL);
    within(&mut query, key);
    let ids = list_of(params, "service_request_id");
    if !ids.is_empty() {
        if ids.len() > MAX_IDS {
            return Err(Failure::bad_request(format!(
                "at most {MAX_IDS} service_request_id at once"
            )));
        }
        query
            .push(" AND r.report_id = ANY(")
            .push_bind(ids)
            .push(")");
    } else {
        let (start, end) = window(params, door.clock.now(), MAX_SPAN)?;
        query
            .push(" AND r.received_at >= ")
            .push_bind(start)
            .push(" AND r.received_at <= ")
            .push_bind(end);
        let codes = list_of(params, "service_code");
        if !codes.is_empty() {
            query
                .push(" AND r.category = ANY(")
                .push_bind(codes)
                .push(")");
        }
        // An extension: the channels (`grid_worker`, `open311`, `hotline_12345`, `device`) to list.
        let channels = list_of(params, "channel");
        if !channels.is_empty() {
            query
                .push(" AND r.channel = ANY(")
                .push_bind(channels)
                .push(")");
        }
        let statuses = list_of(params, "status");
        let (mut open, mut closed) = (false, false);
        for status in &statuses {
            match status.as_str() {
                "open" => open = true,
                "closed" => closed = true,
                other => {
                    return Err(Failure::bad_request(format!(
                        "status {other:?} is neither open nor closed"
                    )))
                }
            }
        }
        if open != closed {
            query.push(if open {
                " AND i.status IN ('handling', 'whistled', 'accepted')"
            } else {
                " AND i.status NOT IN ('handling', 'whistled', 'accepted')"
            });
        }
    }
    query
        .push(" ORDER BY r.received_at DESC, r.report_id DESC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = query
        .build()
        .fetch_all(&door.pool)
        .await
        .map_err(crate::Error::from)?;
    let policy = door.policy.get();
    let requests = rows
        .iter()
        .map(|row| request(row, &policy, extensions(params)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Node::List("request", requests), "service_requests"))
}

async fn by_id(door: &Open311, key: &Principal, id: &str) -> Result<Option<PgRow>, Failure> {
    let mut query = QueryBuilder::new(REQUEST_SQL);
    within(&mut query, key);
    query.push(" AND r.report_id = ").push_bind(id.to_owned());
    Ok(query
        .build()
        .fetch_optional(&door.pool)
        .await
        .map_err(crate::Error::from)?)
}

/// `GET requests/{id}`: one request of the key's area (a list of one, as the spec shows it), or
/// 404 — also for a request outside the area, which this key may not know of.
pub(crate) async fn one(door: &Open311, key: &Principal, id: &str, params: &Params) -> Answer {
    let row = by_id(door, key, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no service request {id} in this key's area")))?;
    let policy = door.policy.get();
    Ok((
        Node::List("request", vec![request(&row, &policy, extensions(params))?]),
        "service_requests",
    ))
}

/// `GET tokens/{token}`: the request a token became. The token is the report id, so once intake
/// recorded it the id is the same string; a report intake refused is 400 with its reason.
pub(crate) async fn token(door: &Open311, key: &Principal, token: &str) -> Answer {
    if by_id(door, key, token).await?.is_some() {
        return Ok((
            Node::List(
                "request",
                vec![Node::Object(vec![
                    ("service_request_id", Node::text(token)),
                    ("token", Node::text(token)),
                ])],
            ),
            "service_requests",
        ));
    }
    // Refusals are not scoped by area (a refused report may name none): a key sees only those
    // of its own channel's ids.
    let own = match key.role {
        whistle_store::tokens::Role::Hotline => super::submit::HOTLINE_PREFIX,
        _ => super::submit::OPEN311_PREFIX,
    };
    if !token.starts_with(own) {
        return Err(Failure::not_found(format!(
            "no service request for token {token} in this key's area"
        )));
    }
    let refused: Option<(String, String)> = sqlx::query_as(
        "SELECT reason, message FROM rejected_reports WHERE report_id = $1
         ORDER BY received_at DESC LIMIT 1",
    )
    .bind(token)
    .fetch_optional(&door.pool)
    .await
    .map_err(crate::Error::from)?;
    if let Some((reason, message)) = refused {
        return Err(Failure::bad_request(format!(
            "the request was refused ({reason}): {message}"
        )));
    }
    Err(Failure::not_found(format!(
        "no service request for token {token} in this key's area yet (intake may still be deciding: ask again shortly)"
    )))
}

/// The FixMyStreet status after each kind of step shown as an update, and its words.
fn update_of(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        kind::TASK_DISPATCHED => ("INVESTIGATING", "已派单至职能部门"),
        kind::INCIDENT_WHISTLED => ("INVESTIGATING", "街乡已吹哨，部门报到"),
        kind::INCIDENT_ESCALATED => ("INVESTIGATING", "已上报上一级处理"),
        kind::TASK_ACCEPTED => ("IN_PROGRESS", "部门已报到签收，办理中"),
        kind::INCIDENT_RESOLVED => ("FIXED", "已办结，等待回访"),
        kind::INCIDENT_REOPENED => ("OPEN", "回访不满意，重新办理"),
        kind::INCIDENT_VERIFIED => ("CLOSED", "已回访"),
        kind::INCIDENT_CLOSED => ("CLOSED", "已办结并回访，关闭"),
        kind::INCIDENT_CLOSED_UNVERIFIED => ("CLOSED", "已办结，超时未回访，关闭"),
        _ => return None,
    })
}

/// FixMyStreet's `GET servicerequestupdates`: the steps of the key's area's requests between
/// `start_date` and `end_date` (the last day by default, at most 90), oldest first; each step of
/// an incident is an update of every request (report) it carries from that request's arrival on.
pub(crate) async fn updates(door: &Open311, key: &Principal, params: &Params) -> Answer {
    let (limit, offset) = page(params)?;
    let (start, end) = window(params, door.clock.now(), UPDATES_SPAN)?;
    let kinds: Vec<&str> = [
        kind::TASK_DISPATCHED,
        kind::INCIDENT_WHISTLED,
        kind::INCIDENT_ESCALATED,
        kind::TASK_ACCEPTED,
        kind::INCIDENT_RESOLVED,
        kind::INCIDENT_REOPENED,
        kind::INCIDENT_VERIFIED,
        kind::INCIDENT_CLOSED,
        kind::INCIDENT_CLOSED_UNVERIFIED,
    ]
    .into();
    let mut query = QueryBuilder::new(
        "SELECT r.report_id, t.seq, t.kind, t.at
         FROM reports r JOIN timeline t ON t.incident_id = r.incident_id
         WHERE r.grid_code ~>=~ ",
    );
    within(&mut query, key);
    query
        .push(" AND t.at >= r.received_at AND t.at >= ")
        .push_bind(start)
        .push(" AND t.at <= ")
        .push_bind(end)
        .push(" AND t.kind = ANY(")
        .push_bind(kinds)
        .push(") ORDER BY t.at, r.report_id, t.seq LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = query
        .build()
        .fetch_all(&door.pool)
        .await
        .map_err(crate::Error::from)?;
    let mut updates = Vec::with_capacity(rows.len());
    for row in rows {
        let get = |e: sqlx::Error| Failure::from(crate::Error::from(e));
        let report_id: String = row.try_get("report_id").map_err(get)?;
        let seq: i32 = row.try_get("seq").map_err(get)?;
        let kind: String = row.try_get("kind").map_err(get)?;
        let Some((status, words)) = update_of(&kind) else {
            continue;
        };
        updates.push(Node::Object(vec![
            ("update_id", Node::text(format!("{report_id}-{seq}"))),
            ("service_request_id", Node::text(report_id)),
            ("status", Node::text(status)),
            ("updated_datetime", iso(row.try_get("at").map_err(get)?)),
            ("description", Node::text(words)),
            ("media_url", Node::Null),
        ]));
    }
    Ok((
        Node::List("request_update", updates),
        "service_request_updates",
    ))
}
