//! The end of a run: waiting until everything settled, then reading it all back.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use sqlx::PgPool;
use whistle_domain::incident::Incident;
use whistle_proto::v1;

use crate::checker::{EventSeen, Firing, History, PendingTimer};

/// Waits until the intake consumer has nothing pending or unacknowledged, the outbox is empty
/// and no timer is more than a second overdue; returns when, or None on timeout.
pub(super) async fn settle(
    js: &jetstream::Context,
    pool: &PgPool,
    timeout: Duration,
) -> Option<DateTime<Utc>> {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let consumer: Result<consumer::PullConsumer, _> = js
            .get_consumer_from_stream("whistle-dispatch", "WHISTLE_REPORTS")
            .await;
        let Ok(mut consumer) = consumer else { continue };
        let Ok(info) = consumer.info().await else {
            continue;
        };
        let now = Utc::now();
        let counts: Result<(i64, i64), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM timers WHERE due_at <= $1)",
        )
        .bind(now - chrono::TimeDelta::seconds(1))
        .fetch_one(pool)
        .await;
        let Ok((outbox, due)) = counts else { continue };
        if info.num_pending == 0 && info.num_ack_pending == 0 && outbox == 0 && due == 0 {
            quiet += 1;
            // Twice in a row, so an event committed just before the first look is out too.
            if quiet >= 2 {
                return Some(now);
            }
        } else {
            quiet = 0;
        }
    }
    None
}

/// Reads every message of a stream, in order.
async fn read_stream(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut stream = js.get_stream(name).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(10), messages.next()).await
    {
        let message = message?;
        let sequence = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(message);
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

/// The final read of PostgreSQL and the streams.
pub(super) async fn read_history(
    js: &jetstream::Context,
    pool: &PgPool,
) -> anyhow::Result<History> {
    let mut history = History {
        reports: sqlx::query_scalar("SELECT report_id FROM reports")
            .fetch_all(pool)
            .await?,
        rejections: sqlx::query_scalar("SELECT report_id FROM rejected_reports")
            .fetch_all(pool)
            .await?,
        comments: sqlx::query_scalar("SELECT note FROM timeline WHERE kind = 'incident.commented'")
            .fetch_all(pool)
            .await?,
        outbox_left: sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(pool)
            .await? as u64,
        ..History::default()
    };
    let incidents: Vec<(String, i64, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT id::text, version, state FROM incidents")
            .fetch_all(pool)
            .await?;
    let timers: Vec<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT incident_id::text, key, due_at FROM timers")
            .fetch_all(pool)
            .await?;
    let mut table: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (incident, key, due) in &timers {
        table
            .entry(incident.as_str())
            .or_default()
            .push((key.clone(), due.timestamp_millis()));
    }
    for (id, version, state) in &incidents {
        history.incidents.push((id.clone(), *version as u64));
        let Some(state) = state else { continue };
        let incident: Incident = serde_json::from_value(state.clone())
            .with_context(|| format!("incident {id}: state does not parse"))?;
        let mut wanted: Vec<(String, i64)> = incident
            .timers()
            .into_iter()
            .map(|(timer, at)| (timer.key(), at.timestamp_millis()))
            .collect();
        let mut have = table.get(id.as_str()).cloned().unwrap_or_default();
        wanted.sort();
        have.sort();
        if wanted != have {
            history.timer_table_mismatches.push(id.clone());
        }
    }
    history.timers_left = timers
        .into_iter()
        .map(|(incident_id, timer, due_at)| PendingTimer {
            incident_id,
            timer,
            due_at,
        })
        .collect();
    let firings: Vec<(String, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT incident_id::text, data->>'timer', data->>'due_at', at FROM timeline WHERE data ? 'timer'",
    )
    .fetch_all(pool)
    .await?;
    for (incident_id, timer, due, at) in firings {
        let due_at = due
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map_or(at, |d| d.with_timezone(&Utc));
        history.firings.push(Firing {
            incident_id,
            timer,
            due_at,
            at,
        });
    }

    for message in read_stream(js, "WHISTLE_EVENTS").await? {
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned());
        let event = v1::Event::decode(message.payload.clone())
            .context("WHISTLE_EVENTS holds something that is not a whistle.v1.Event")?;
        let (version, report_id) = match &event.body {
            Some(v1::event::Body::IncidentReported(b)) => (
                Some(b.version),
                b.report.as_ref().map(|r| r.report_id.clone()),
            ),
            Some(v1::event::Body::ReportAttached(b)) => {
                (None, b.report.as_ref().map(|r| r.report_id.clone()))
            }
            Some(v1::event::Body::ReportRejected(b)) => {
                (None, Some(b.report_id.clone()).filter(|id| !id.is_empty()))
            }
            Some(v1::event::Body::IncidentChanged(b)) => (Some(b.version), None),
            _ => (None, None),
        };
        history.events.push(EventSeen {
            msg_id,
            event_id: event.event_id,
            kind: event.kind,
            incident_id: event.incident_id,
            version,
            report_id,
        });
    }
    for message in read_stream(js, "WHISTLE_REJECTED").await? {
        let id = v1::Report::decode(message.payload.clone())
            .ok()
            .map(|r| r.report_id)
            .filter(|id| !id.is_empty());
        history.rejected_copies.push(id);
    }
    Ok(history)
}
