//! Recording a batch of reports: new incidents, their first timeline entry, rejections, and the
//! events that announce them — one transaction, a handful of multi-row statements.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// An event to publish after commit, written to the outbox in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// A valid report that opens an incident (unless its report id was already recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub incident_id: Uuid,
    pub report_id: String,
    pub reporter_id: String,
    pub status: &'static str,
    pub level: &'static str,
    pub category: String,
    pub urgency: &'static str,
    pub title: String,
    pub description: String,
    pub district_code: String,
    pub street_code: String,
    pub community_code: String,
    pub grid_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub address: String,
    pub policy_version: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    /// The report as protobuf, kept for the incident's detail view.
    pub report_payload: Vec<u8>,
    pub stream_sequence: Option<i64>,
    /// `incident.reported`, published only if the incident is new.
    pub event: OutboxEvent,
}

/// A report that failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRejection {
    /// Identifies the original JetStream message across redeliveries.
    pub source_key: String,
    pub reason: String,
    pub message: String,
    pub subject: String,
    pub report_id: Option<String>,
    pub reporter_id: Option<String>,
    pub stream_sequence: Option<i64>,
    pub payload: Vec<u8>,
    pub received_at: DateTime<Utc>,
    /// `report.rejected`, published only if this rejection is new.
    pub event: OutboxEvent,
}

/// What a batch changed. Anything not listed was already recorded by an earlier delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub incidents: HashSet<Uuid>,
    pub rejections: HashSet<String>,
}

/// Records a batch atomically. Idempotent: a report id or rejection already stored is skipped,
/// together with its event, so redelivering a batch never duplicates an incident or an event.
pub async fn record(
    pool: &PgPool,
    incidents: &[NewIncident],
    rejections: &[NewRejection],
) -> Result<Recorded> {
    let mut tx = pool.begin().await?;
    let mut recorded = Recorded::default();

    if !incidents.is_empty() {
        // The reports' primary key decides which incidents are new; the FK to incidents is
        // deferred so the incident rows can follow.
        let new_report_ids: HashSet<String> = sqlx::query_scalar(
            "INSERT INTO reports (report_id, incident_id, reporter_id, grid_code, category, payload, stream_sequence, received_at)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::int8[], $8::timestamptz[])
             ON CONFLICT (report_id) DO NOTHING
             RETURNING report_id",
        )
        .bind(incidents.iter().map(|i| i.report_id.as_str()).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.incident_id).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.reporter_id.as_str()).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.grid_code.as_str()).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.category.as_str()).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.report_payload.as_slice()).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.stream_sequence).collect::<Vec<_>>())
        .bind(incidents.iter().map(|i| i.received_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

        let fresh: Vec<&NewIncident> = incidents
            .iter()
            .filter(|i| new_report_ids.contains(&i.report_id))
            .collect();
        if !fresh.is_empty() {
            sqlx::query(
                "INSERT INTO incidents (id, status, level, category, urgency, title, description,
                     district_code, street_code, community_code, grid_code, lat, lon, address, reporter_id,
                     policy_version, occurred_at, reported_at, created_at, updated_at, due_at)
                 SELECT id, status, level, category, urgency, title, description, district_code, street_code,
                     community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
                     reported_at, created_at, created_at, due_at
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::float8[], $13::float8[], $14::text[],
                     $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[])
                     AS t(id, status, level, category, urgency, title, description, district_code, street_code,
                          community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
                          reported_at, created_at, due_at)",
            )
            .bind(fresh.iter().map(|i| i.incident_id).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.status).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.level).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.category.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.urgency).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.title.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.description.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.district_code.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.street_code.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.community_code.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.grid_code.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.lat).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.lon).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.address.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.reporter_id.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.policy_version.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.occurred_at).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.reported_at).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.received_at).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.due_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;

            sqlx::query(
                "INSERT INTO timeline (incident_id, seq, kind, actor_id, at, note)
                 SELECT id, 1, 'incident.reported', actor, at, note
                 FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]) AS t(id, actor, at, note)",
            )
            .bind(fresh.iter().map(|i| i.incident_id).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.reporter_id.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| i.received_at).collect::<Vec<_>>())
            .bind(fresh.iter().map(|i| format!("report {}", i.report_id)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;

            insert_outbox(&mut tx, fresh.iter().map(|i| &i.event)).await?;
            recorded.incidents = fresh.iter().map(|i| i.incident_id).collect();
        }
    }

    if !rejections.is_empty() {
        let new_keys: HashSet<String> = sqlx::query_scalar(
            "INSERT INTO rejected_reports (source_key, reason, message, subject, report_id, reporter_id, stream_sequence, payload, received_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::bytea[], $9::timestamptz[])
             ON CONFLICT (source_key) DO NOTHING
             RETURNING source_key",
        )
        .bind(rejections.iter().map(|r| r.source_key.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.message.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.report_id.as_deref()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.reporter_id.as_deref()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.stream_sequence).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let fresh = rejections
            .iter()
            .filter(|r| new_keys.contains(&r.source_key));
        insert_outbox(&mut tx, fresh.map(|r| &r.event)).await?;
        recorded.rejections = new_keys;
    }

    tx.commit().await?;
    Ok(recorded)
}

async fn insert_outbox<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    events: impl Iterator<Item = &'a OutboxEvent>,
) -> Result<()> {
    let (mut ids, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        ids.push(event.event_id);
        subjects.push(event.subject.as_str());
        payloads.push(event.payload.as_slice());
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])",
    )
    .bind(ids)
    .bind(subjects)
    .bind(payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
