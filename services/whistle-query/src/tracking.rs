//! The resident's page (群众查询): a public page, no account, where the tracking code (查询码) a
//! grid worker gave a resident is the key to their report's case.
//!
//! - `GET /track` (the page, `#CODE` in its fragment so the code never reaches a server log),
//!   `GET /track/track.js`, `GET /track/track.css`: phone-sized, plain Chinese.
//! - `POST /track/api/case` `{"code": "…"}`: the case as [`Case`] — received, the departments or
//!   the unit handling it (names of organisations, never of people), each step's time, the
//!   deadline, overdue and supervised (督办, read from the timeline), whether the resident may answer.
//!   No personal data: neither the report's text nor its place, nor anyone's name or contact.
//! - `POST /track/api/answer` `{"code", "resolved", "satisfaction"}`: the resident's 已解决/未解决
//!   and rating, sent to dispatch (the only writer) as a `verify` command on
//!   `whistle.cmd.verify.~resident` with the code, under this service's own NATS identity;
//!   dispatch checks the code again and applies it as the follow-up (回访) while the incident awaits
//!   one, else keeps it on the timeline.
//!
//! A code that is malformed, unknown or expired gets the same 404 and the same body. Every request
//! to the API takes a token from its client's bucket first (`--track-rate`, `--track-burst`); the
//! client is the connection's peer address or, when that peer is one of `--trusted-proxies` (the
//! load balancer), the last address of `X-Forwarded-For` that is not a trusted proxy.

use std::{net::IpAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::Request,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::warn;
use uuid::Uuid;
use whistle_auth::RateLimiter;
use whistle_domain::incident::RESIDENT_ACTOR;
use whistle_proto::v1;
use whistle_store::{contacts::Keyring, tracking};
use whistle_wire::Clock;

use crate::catalogue::RunningPolicy;

pub const PAGE_PATH: &str = "/track";
pub const SCRIPT_PATH: &str = "/track/track.js";
pub const STYLE_PATH: &str = "/track/track.css";
pub const CASE_PATH: &str = "/track/api/case";
pub const ANSWER_PATH: &str = "/track/api/answer";

const PAGE: &str = include_str!("tracking/track.html");
const SCRIPT: &str = include_str!("tracking/track.js");
const STYLE: &str = include_str!("tracking/track.css");

/// The largest request body the API reads: a code and two words.
const MAX_BODY: usize = 1024;
/// Lookups and answers one client may make a second, sustained, unless told otherwise.
pub const DEFAULT_RATE: f64 = 0.2;
/// … and at once.
pub const DEFAULT_BURST: u32 = 10;

/// The public door's state.
#[derive(Clone)]
pub(crate) struct Tracking {
    pub pool: PgPool,
    /// Without the keyring no code can be looked up: every code is unknown.
    pub keyring: Option<Arc<Keyring>>,
    pub policy: RunningPolicy,
    pub clock: Arc<dyn Clock>,
    pub commands: whistle_wire::CommandClient,
    pub limiter: RateLimiter<IpAddr>,
    pub trusted_proxies: Arc<Vec<IpAddr>>,
}

/// What the page shows of a case.
#[derive(Debug, Serialize)]
pub struct Case {
    /// The code as it is read out, grouped (`whistle_store::tracking::display`).
    code: String,
    category: String,
    /// `handling`, `whistled`, `accepted`, `resolved`, `closed`, `closed_unverified`, `duplicate`.
    status: String,
    status_zh: String,
    received_at: DateTime<Utc>,
    /// The promised deadline (the SLA's, as extended).
    due_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    /// Who handles it: the departments of the current round, else the handling unit.
    handlers: Vec<String>,
    /// The deadline passed before it was resolved.
    overdue: bool,
    /// It was placed under supervision (督办) at some point: an `incident.supervised` or
    /// `task.supervised` entry on the timeline.
    supervised: bool,
    steps: Vec<Step>,
    /// The resident may answer now (resolved or closed, and not yet answered this round).
    can_answer: bool,
    /// The resident's answer of this round of handling, if any.
    answered: Option<String>,
    /// The service's clock, so that the page counts down from the server's time.
    now: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct Step {
    at: DateTime<Utc>,
    label: String,
}

#[derive(Deserialize)]
struct CaseRequest {
    code: String,
}

#[derive(Deserialize)]
struct AnswerRequest {
    code: String,
    /// 已解决 (true) or 未解决 (false).
    resolved: bool,
    /// For a resolved problem: `satisfied` (满意) or `basically_satisfied` (基本满意).
    #[serde(default)]
    satisfaction: String,
}

/// The one answer for a code that opens nothing, whatever the reason.
fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "查询码不存在或已过期，请核对后重试",
    )
}

fn json_error(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    (status, json_headers(), body.to_string()).into_response()
}

fn json_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// The page and its files, with the console's security headers.
pub(crate) fn file(path: &str) -> Response {
    let (body, content_type) = match path {
        SCRIPT_PATH => (SCRIPT, "text/javascript; charset=utf-8"),
        STYLE_PATH => (STYLE, "text/css; charset=utf-8"),
        _ => (PAGE, "text/html; charset=utf-8"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                crate::console::CONTENT_SECURITY_POLICY,
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, crate::console::CACHE_REVALIDATE),
        ],
        body,
    )
        .into_response()
}

/// The client a request counts against: the peer, or behind a trusted proxy the address it
/// forwarded for.
pub fn client_of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // Each proxy appends the address it received from; the last one no trusted proxy added is
    // the client as far as anyone trusted can tell. A header that does not parse is the proxy's.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !trusted.contains(a))
            .unwrap_or(peer),
    )
}

fn peer_of(request: &Request) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(|tls| tls.get_ref())
        })
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.ip())
}

impl Tracking {
    /// `POST /track/api/case` and `POST /track/api/answer`.
    pub(crate) async fn api(self: Arc<Self>, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        let Some(client) = client_of(peer_of(&request), request.headers(), &self.trusted_proxies)
        else {
            return json_error(StatusCode::BAD_REQUEST, "no_client", "无法识别请求来源");
        };
        if let Err(limited) = self.limiter.take(&client) {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "查询过于频繁，请稍后再试",
            );
            let retry = limited.retry_in_secs.ceil().max(1.0) as u64;
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry.to_string()).expect("digits"),
            );
            return response;
        }
        let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
            Ok(body) => body,
            Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "请求过大"),
        };
        let result = match path.as_str() {
            CASE_PATH => self.case_of(&body).await,
            _ => self.answer(&body).await,
        };
        result.unwrap_or_else(|e| {
            warn!(error = %e, "the resident's page failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "服务暂时不可用，请稍后再试",
            )
        })
    }

    /// The request's JSON, or the answer refusing it.
    fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
        serde_json::from_slice(body).map_err(|_| {
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "请求格式不正确",
            ))
        })
    }

    async fn find(&self, code: &str) -> crate::Result<Option<tracking::Found>> {
        let Some(keyring) = &self.keyring else {
            return Ok(None);
        };
        tracking::find(
            &self.pool,
            keyring,
            code,
            self.policy.get().retention().tracking_codes,
            self.clock.now(),
        )
        .await
        .map_err(crate::contacts::store)
    }

    async fn case_of(&self, body: &Bytes) -> crate::Result<Response> {
        let request: CaseRequest = match Self::parse(body) {
            Ok(r) => r,
            Err(response) => return Ok(*response),
        };
        let Some(found) = self.find(&request.code).await? else {
            return Ok(not_found());
        };
        let Some(code) = tracking::normalize(&request.code) else {
            return Ok(not_found());
        };
        let case = self
            .read(&found, tracking::display(&code), self.clock.now())
            .await?;
        Ok((
            json_headers(),
            serde_json::to_string(&case).unwrap_or_default(),
        )
            .into_response())
    }

    /// The case of `found`, read in one snapshot.
    async fn read(
        &self,
        found: &tracking::Found,
        code: String,
        now: DateTime<Utc>,
    ) -> crate::Result<Case> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let incident = sqlx::query(
            "SELECT i.status, i.category, i.created_at, i.due_at, i.closed_at, i.overdue,
                    coalesce((i.state->>'reopen_count')::int, 0) AS round,
                    coalesce(i.state->'resident_answers', '[]'::jsonb) AS answers,
                    coalesce((SELECT u.name FROM org_units u WHERE u.code = CASE i.level
                        WHEN 'grid' THEN i.grid_code WHEN 'community' THEN i.community_code
                        WHEN 'street' THEN i.street_code WHEN 'district' THEN i.district_code
                        ELSE left(i.district_code, 4) || '00' END), '') AS unit
             FROM incidents i WHERE i.id = $1",
        )
        .bind(found.incident_id)
        .fetch_one(&mut *tx)
        .await?;
        let round: i32 = incident.try_get("round")?;
        let departments: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT d.name FROM tasks t JOIN departments d ON d.code = t.department_code
             WHERE t.incident_id = $1 AND t.round = $2
               AND t.status NOT IN ('returned', 'cancelled', 'released')
             ORDER BY d.name",
        )
        .bind(found.incident_id)
        .bind(round)
        .fetch_all(&mut *tx)
        .await?;
        let timeline = sqlx::query(
            "SELECT tl.kind, tl.at, tl.actor_id, coalesce(d.name, '') AS department
             FROM timeline tl
             LEFT JOIN tasks t ON t.incident_id = tl.incident_id
                              AND t.task_id::text = tl.data->>'task'
             LEFT JOIN departments d ON d.code = t.department_code
             WHERE tl.incident_id = $1 ORDER BY tl.seq",
        )
        .bind(found.incident_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut supervised = false;
        let mut steps = Vec::new();
        for row in &timeline {
            let kind: String = row.try_get("kind")?;
            let actor: String = row.try_get("actor_id")?;
            let department: String = row.try_get("department")?;
            supervised |= matches!(kind.as_str(), "incident.supervised" | "task.supervised");
            if let Some(label) = step_label(&kind, &actor, &department) {
                steps.push(Step {
                    at: row.try_get("at")?,
                    label,
                });
            }
        }
        let status: String = incident.try_get("status")?;
        let answers: serde_json::Value = incident.try_get("answers")?;
        let answered = answers
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| {
                a["report"] == found.report_id.as_str() && a["round"] == serde_json::json!(round)
            })
            .and_then(|a| a["satisfaction"].as_str())
            .map(answer_zh);
        let handlers = if departments.is_empty() {
            let unit: String = incident.try_get("unit")?;
            vec![unit].into_iter().filter(|u| !u.is_empty()).collect()
        } else {
            departments
        };
        let category: String = incident.try_get("category")?;
        Ok(Case {
            code,
            category: self
                .policy
                .get()
                .category(&category)
                .map(|c| c.name_zh.clone())
                .unwrap_or_default(),
            status_zh: status_zh(&status).to_owned(),
            can_answer: answered.is_none()
                && matches!(status.as_str(), "resolved" | "closed" | "closed_unverified"),
            status,
            received_at: incident.try_get("created_at")?,
            due_at: incident.try_get("due_at")?,
            closed_at: incident.try_get("closed_at")?,
            handlers,
            overdue: incident.try_get("overdue")?,
            supervised,
            steps,
            answered: answered.map(str::to_owned),
            now,
        })
    }

    async fn answer(&self, body: &Bytes) -> crate::Result<Response> {
        let request: AnswerRequest = match Self::parse(body) {
            Ok(r) => r,
            Err(response) => return Ok(*response),
        };
        let satisfaction = match (request.resolved, request.satisfaction.as_str()) {
            (false, _) => v1::Satisfaction::Unsatisfied,
            (true, "satisfied") => v1::Satisfaction::Satisfied,
            (true, "basically_satisfied") => v1::Satisfaction::BasicallySatisfied,
            _ => {
                return Ok(json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    "请选择满意或基本满意",
                ))
            }
        };
        let Some(found) = self.find(&request.code).await? else {
            return Ok(not_found());
        };
        let command = v1::Command {
            command_id: format!("resident-{}", Uuid::now_v7()),
            actor_id: RESIDENT_ACTOR.into(),
            incident_id: found.incident_id.to_string(),
            expected_version: 0,
            body: Some(v1::command::Body::Verify(v1::Verify {
                satisfaction: satisfaction as i32,
                note: String::new(),
                tracking_code: request.code,
            })),
        };
        let reply = match self.commands.send(&command).await {
            Ok(reply) => reply,
            Err(e) => {
                warn!(error = %whistle_wire::chain(&e), "a resident's answer did not reach dispatch");
                return Ok(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "提交失败，请稍后再试",
                ));
            }
        };
        Ok(match reply.outcome {
            Some(v1::command_reply::Outcome::Ok(ok)) => (
                json_headers(),
                serde_json::json!({ "ok": true, "status": ok.status }).to_string(),
            )
                .into_response(),
            Some(v1::command_reply::Outcome::Error(e)) => {
                match v1::CommandErrorCode::try_from(e.code) {
                    Ok(v1::CommandErrorCode::NotFound) => not_found(),
                    // Answered already this round, or reopened and being handled again.
                    Ok(v1::CommandErrorCode::InvalidTransition) => json_error(
                        StatusCode::CONFLICT,
                        "not_now",
                        "您已评价过本轮办理结果，或问题正在重新办理",
                    ),
                    Ok(v1::CommandErrorCode::RateLimited) => json_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "提交过于频繁，请稍后再试",
                    ),
                    _ => {
                        warn!(code = e.code, message = %e.message, "dispatch refused a resident's answer");
                        json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "提交失败，请稍后再试",
                        )
                    }
                }
            }
            None => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "提交失败，请稍后再试",
            ),
        })
    }
}

fn status_zh(status: &str) -> &'static str {
    match status {
        "resolved" => "已办结，待回访",
        "closed" | "closed_unverified" => "已结案",
        "duplicate" => "已合并办理",
        _ => "处理中",
    }
}

fn answer_zh(satisfaction: &str) -> &'static str {
    match satisfaction {
        "satisfied" => "已解决，满意",
        "basically_satisfied" => "已解决，基本满意",
        _ => "未解决",
    }
}

/// A timeline entry as the resident reads it, or `None` for what is no concern of theirs
/// (comments of staff, disputes between departments, the ledger's paperwork). Names no person.
fn step_label(kind: &str, actor: &str, department: &str) -> Option<String> {
    let dept = if department.is_empty() {
        "职能部门"
    } else {
        department
    };
    Some(match kind {
        "incident.reported" => "已受理".into(),
        "report.attached" => "又有群众反映了同一问题".into(),
        "task.dispatched" => format!("已派单至{dept}"),
        "task.accepted" => format!("{dept}已签收"),
        "task.returned" => format!("{dept}退回，重新派单"),
        "task.reassigned" => "已改派".into(),
        "task.reminded" => "已催办".into(),
        "task.supervised" | "incident.supervised" => "已督办".into(),
        "task.resolved" => format!("{dept}已办结"),
        "incident.escalated" => "已上报上一级办理".into(),
        "incident.whistled" => "街道吹哨，职能部门报到".into(),
        "incident.resolved" => "已办结，待回访".into(),
        "incident.verified" => "已回访".into(),
        "incident.reopened" => "回访未解决，重新办理".into(),
        "incident.closed" | "incident.closed_unverified" => "已结案".into(),
        "incident.overdue" => "已超过办理期限".into(),
        "incident.extension_approved" => "办理期限已延长".into(),
        "incident.ledger_approved" => "列入长期办理台账".into(),
        "incident.commented" if actor == RESIDENT_ACTOR => "您的评价已记录".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let proxies = [ip("10.0.0.2"), ip("10.0.0.3")];
        // A client cannot name itself by the header.
        assert_eq!(
            client_of(Some(ip("198.51.100.1")), &headers, &proxies),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &headers, &proxies),
            Some(ip("203.0.113.9"))
        );
        // A client's own forged entry comes first; the proxies' own hops are skipped.
        headers.insert(
            "x-forwarded-for",
            "1.2.3.4, 203.0.113.9, 10.0.0.3".parse().unwrap(),
        );
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &headers, &proxies),
            Some(ip("203.0.113.9"))
        );
        // Nothing usable forwarded: the proxy itself.
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &headers, &proxies),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(client_of(None, &headers, &proxies), None);
    }

    #[test]
    fn steps_name_departments_and_never_people() {
        assert_eq!(
            step_label("task.dispatched", "op-1", "东胜区城管局").as_deref(),
            Some("已派单至东胜区城管局")
        );
        assert_eq!(step_label("incident.commented", "op-1", ""), None);
        assert_eq!(
            step_label("incident.commented", RESIDENT_ACTOR, "").as_deref(),
            Some("您的评价已记录")
        );
    }
}
