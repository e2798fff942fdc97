//! The grid worker's side: `Reporting.SubmitReport` (the report form) and
//! `CommandCenter.ListMyReports` (their recent reports and what became of each).
//!
//! A report submitted here is published to `WHISTLE_REPORTS` like any other, with the report id
//! as `Nats-Msg-Id`, so intake decides its fate exactly as for a report sent over NATS; this
//! service only waits a few seconds to tell the worker. The outcome is read from PostgreSQL
//! (`reports`, `rejected_reports`), which also answers a retry of a report already decided.

use std::{sync::Arc, time::Duration};

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::{postgres::PgRow, PgPool, Row};
use tonic::{Request, Response, Status};
use whistle_domain::{policy::Policy, AreaCode, Level, ReportId};
use whistle_proto::v1;
use whistle_store::{contacts::Keyring, tokens::Role};
use whistle_wire::{subject, Clock};

use crate::{
    auth::{Auth, Principal},
    convert,
    generated::reporting_server,
    incidents::{self, SUMMARY_COLUMNS},
    page_token,
    photos::Photos,
    Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;
/// How long `SubmitReport` waits for intake before answering PENDING.
pub const OUTCOME_WAIT: Duration = Duration::from_secs(5);
const OUTCOME_POLL: Duration = Duration::from_millis(50);

/// The reports of one grid worker (or one report), each with its incident or its rejection.
/// `attached` is read from the incident's timeline, where intake records every attachment.
const REPORTS_SQL: &str = "
    SELECT r.report_id, r.received_at, r.payload, i.satisfaction AS incident_satisfaction,
           EXISTS (SELECT 1 FROM timeline a
                   WHERE a.incident_id = r.incident_id AND a.kind = 'report.attached'
                     AND a.note = $3 || r.report_id) AS attached,
           c.key_id AS tracking_key_id, c.nonce AS tracking_nonce,
           c.ciphertext AS tracking_ciphertext,
           {SUMMARY}
    FROM reports r JOIN incidents i ON i.id = r.incident_id
    LEFT JOIN tracking_codes c ON c.report_id = r.report_id
    WHERE {WHERE}
    ORDER BY r.received_at DESC, r.report_id DESC
    LIMIT $2";

const REJECTED_SQL: &str = "
    SELECT report_id, received_at, payload, reason, message FROM rejected_reports
    WHERE {WHERE} AND report_id IS NOT NULL
    ORDER BY received_at DESC
    LIMIT $2";

fn sql(template: &str, condition: &str) -> String {
    template
        .replace("{SUMMARY}", SUMMARY_COLUMNS)
        .replace("{WHERE}", condition)
}

/// A grid worker's reports, newest first: recorded ones and rejected ones merged by time.
pub(crate) async fn list_mine(
    pool: &PgPool,
    policy: &Policy,
    keyring: Option<&Keyring>,
    principal: &Principal,
    page_size: u32,
    now: DateTime<Utc>,
) -> Result<v1::ListMyReportsResponse> {
    let person = grid_worker(principal)?;
    let page_size = page_token::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let mut reports = read(pool, policy, keyring, "reporter_id", person, page_size, now).await?;
    reports.truncate(page_size as usize);
    Ok(v1::ListMyReportsResponse {
        reports: reports.into_iter().map(|(_, report)| report).collect(),
    })
}

/// Reports where `column` (reporter_id or report_id) equals `value`, newest first.
async fn read(
    pool: &PgPool,
    policy: &Policy,
    keyring: Option<&Keyring>,
    column: &str,
    value: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, v1::MyReport)>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let recorded = sqlx::query(&sql(REPORTS_SQL, &format!("r.{column} = $1")))
        .bind(value)
        .bind(i64::from(limit))
        .bind(whistle_store::intake::ATTACHED_NOTE_PREFIX)
        .fetch_all(&mut *tx)
        .await?;
    let rejected = sqlx::query(&sql(REJECTED_SQL, &format!("{column} = $1")))
        .bind(value)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut reports = recorded
        .iter()
        .map(|row| recorded_report(row, policy, keyring, now))
        .chain(rejected.iter().map(|row| rejected_report(row, policy)))
        .collect::<Result<Vec<_>>>()?;
    reports.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(reports)
}

fn recorded_report(
    row: &PgRow,
    policy: &Policy,
    keyring: Option<&Keyring>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, v1::MyReport)> {
    let report_id: String = row.try_get("report_id")?;
    let payload: Vec<u8> = row.try_get("payload")?;
    let report = v1::Report::decode(payload.as_slice())
        .map_err(|e| Error::Corrupt(format!("report {report_id:?} payload: {e}")))?;
    let satisfaction = convert::satisfaction_from_db(row.try_get("incident_satisfaction")?)? as i32;
    let received_at = row.try_get("received_at")?;
    let key_id: Option<String> = row.try_get("tracking_key_id")?;
    let tracking_code = match (keyring, key_id) {
        (Some(keyring), Some(key_id)) => {
            let nonce: Vec<u8> = row.try_get("tracking_nonce")?;
            let ciphertext: Vec<u8> = row.try_get("tracking_ciphertext")?;
            whistle_store::tracking::open(keyring, &report_id, &key_id, &nonce, &ciphertext)
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    Ok((
        received_at,
        v1::MyReport {
            tracking_code,
            report_id,
            title: report.title,
            category_name: category_name(policy, &report.category),
            category: report.category,
            reported_at: report.reported_at,
            incident: Some(incidents::summary(row, policy, now)?),
            attached: row.try_get("attached")?,
            satisfaction,
            ..Default::default()
        },
    ))
}

/// A rejected report shows what could be read of it: a payload that does not decode (intake
/// rejected it for that) leaves title and category empty.
fn rejected_report(row: &PgRow, policy: &Policy) -> Result<(DateTime<Utc>, v1::MyReport)> {
    let payload: Vec<u8> = row.try_get("payload")?;
    let report = if payload.first() == Some(&b'{') {
        whistle_proto::from_json::<v1::Report>(&payload).ok()
    } else {
        v1::Report::decode(payload.as_slice()).ok()
    }
    .unwrap_or_default();
    let received_at = row.try_get("received_at")?;
    Ok((
        received_at,
        v1::MyReport {
            report_id: row
                .try_get::<Option<String>, _>("report_id")?
                .unwrap_or_default(),
            title: report.title,
            category_name: category_name(policy, &report.category),
            category: report.category,
            reported_at: report.reported_at,
            rejected_reason: row.try_get("reason")?,
            rejected_message: row.try_get("message")?,
            ..Default::default()
        },
    ))
}

fn category_name(policy: &Policy, code: &str) -> String {
    policy
        .category(code)
        .map(|c| c.name_zh.clone())
        .unwrap_or_default()
}

/// The person of a grid worker's token; other tokens have no reports of their own.
fn grid_worker(principal: &Principal) -> Result<&str> {
    match (principal.role, principal.person.as_deref()) {
        (Role::GridWorker, Some(person)) => Ok(person),
        (role, _) => Err(Error::PermissionDenied(format!(
            "only grid_worker tokens file reports; this is a {} token",
            role.as_str()
        ))),
    }
}

/// `whistle.v1.Reporting`.
#[derive(Debug, Clone)]
pub(crate) struct Reporting {
    pub auth: Auth,
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub policy: crate::catalogue::RunningPolicy,
    pub clock: Arc<dyn Clock>,
    pub photos: Photos,
    /// Opens the tracking codes of the worker's reports.
    pub keyring: Option<Arc<Keyring>>,
}

impl Reporting {
    /// Grid workers photograph problems, liaisons, operators and Party members their work;
    /// viewers do neither.
    async fn upload(
        &self,
        request: Request<v1::UploadPhotoRequest>,
    ) -> Result<v1::UploadPhotoResponse> {
        let principal = self.auth.volunteer_principal(&request).await?;
        let uploader = principal.actor()?;
        self.photos.upload(&request.get_ref().data, uploader).await
    }

    async fn submit(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<v1::SubmitReportResponse> {
        let principal = self.auth.principal(&request).await?;
        let person = grid_worker(&principal)?.to_owned();
        let mut report = request
            .into_inner()
            .report
            .ok_or_else(|| Error::invalid("report is required"))?;
        let report_id: ReportId = report
            .report_id
            .parse()
            .map_err(|e| Error::invalid(format!("report_id: {e}")))?;
        if report.reporter_id.is_empty() {
            report.reporter_id = person.clone();
        } else if report.reporter_id != person {
            return Err(Error::PermissionDenied(format!(
                "reporter_id comes from the token, which reports as {person}, not {}",
                report.reporter_id
            )));
        }
        if principal.area.level() != Level::Grid {
            return Err(Error::Corrupt(format!(
                "grid_worker token scoped to {}, which is not a grid",
                principal.area
            )));
        }
        if report.grid_code.is_empty() {
            report.grid_code = principal.area.to_string();
        } else if report.grid_code != principal.area.as_str() {
            return Err(Error::PermissionDenied(format!(
                "this token reports from grid {}, not {}",
                principal.area, report.grid_code
            )));
        }
        if report.channel > v1::Channel::GridWorker as i32 || !report.channel_ref.is_empty() {
            return Err(Error::PermissionDenied(
                "a grid worker's report is of the grid worker channel; other channels come in through the Open311 door".into(),
            ));
        }
        if report.reported_at.is_none() {
            report.reported_at = Some(convert::timestamp(self.clock.now()));
        }

        // A retry of a report already decided gets that outcome without publishing again.
        if let Some(decided) = self.outcome(report_id.as_str()).await? {
            return Ok(decided);
        }
        self.photos
            .check_stored(&report.photo_ids, principal.actor()?)
            .await?;
        self.publish(&report_id, &principal.area, &report).await
    }

    /// Publishes a checked report to `WHISTLE_REPORTS` on its grid's subject, with its id as
    /// `Nats-Msg-Id`, and waits up to [`OUTCOME_WAIT`] for intake's decision (PENDING after).
    /// The Open311 door files its reports through here too.
    pub(crate) async fn publish(
        &self,
        report_id: &ReportId,
        grid: &AreaCode,
        report: &v1::Report,
    ) -> Result<v1::SubmitReportResponse> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, report_id.as_str());
        headers.insert("Content-Type", "application/protobuf");
        let unavailable = |e: String| Error::Unavailable(format!("WHISTLE_REPORTS: {e}"));
        let ack = self
            .jetstream
            .publish_with_headers(
                subject::channel_report(grid, report.channel()),
                headers,
                report.encode_to_vec().into(),
            )
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .await
            .map_err(|e| unavailable(e.to_string()))?;

        let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
        loop {
            if let Some(mut decided) = self.outcome(report_id.as_str()).await? {
                decided.stream_sequence = ack.sequence;
                return Ok(decided);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(v1::SubmitReportResponse {
                    report_id: report_id.to_string(),
                    outcome: v1::ReportOutcome::Pending as i32,
                    stream_sequence: ack.sequence,
                    ..Default::default()
                });
            }
            tokio::time::sleep(OUTCOME_POLL).await;
        }
    }

    /// What intake made of a report, if it decided yet.
    pub(crate) async fn outcome(
        &self,
        report_id: &str,
    ) -> Result<Option<v1::SubmitReportResponse>> {
        let found = read(
            &self.pool,
            &self.policy.get(),
            self.keyring.as_deref(),
            "report_id",
            report_id,
            1,
            self.clock.now(),
        )
        .await?
        .into_iter()
        .next();
        Ok(found.map(|(_, report)| {
            let outcome = if !report.rejected_reason.is_empty() {
                v1::ReportOutcome::Rejected
            } else if report.attached {
                v1::ReportOutcome::Attached
            } else {
                v1::ReportOutcome::Incident
            };
            v1::SubmitReportResponse {
                report_id: report.report_id,
                outcome: outcome as i32,
                incident: report.incident,
                rejected_reason: report.rejected_reason,
                rejected_message: report.rejected_message,
                stream_sequence: 0,
                tracking_code: report.tracking_code,
            }
        }))
    }
}

#[tonic::async_trait]
impl reporting_server::Reporting for Reporting {
    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> std::result::Result<Response<v1::SubmitReportResponse>, Status> {
        Ok(Response::new(self.submit(request).await?))
    }

    async fn upload_photo(
        &self,
        request: Request<v1::UploadPhotoRequest>,
    ) -> std::result::Result<Response<v1::UploadPhotoResponse>, Status> {
        Ok(Response::new(self.upload(request).await?))
    }
}
