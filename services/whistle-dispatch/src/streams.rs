//! The JetStream streams and the intake consumer, created idempotently at start.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use whistle_wire::{
    names::{EVENTS_STREAM, REJECTED_STREAM, REPORTS_STREAM},
    subject::{ALL_INCIDENT_EVENTS, ALL_REJECTED, ALL_REPORTS, ALL_TASK_EVENTS},
};

use crate::Error;

/// Stream settings that operators may tune.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// How long JetStream remembers a report's `Nats-Msg-Id` to drop a republish.
    pub report_duplicate_window: Duration,
    /// How long reports stay in the stream after intake (for replay and audit).
    pub report_max_age: Duration,
    pub event_max_age: Duration,
    pub rejected_max_age: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            report_duplicate_window: Duration::from_secs(10 * 60),
            report_max_age: Duration::from_secs(7 * 24 * 3600),
            event_max_age: Duration::from_secs(30 * 24 * 3600),
            rejected_max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Creates the three streams if missing; existing ones keep their settings (an operator may
/// have tuned them) apart from the subjects, which are part of the contract.
pub async fn ensure(js: &jetstream::Context, options: &StreamOptions) -> Result<(), Error> {
    let configs = [
        stream::Config {
            name: REPORTS_STREAM.into(),
            description: Some("reports from grid workers".into()),
            subjects: vec![ALL_REPORTS.into()],
            duplicate_window: options.report_duplicate_window,
            max_age: options.report_max_age,
            // Larger than validation's limit, so oversized reports are rejected by us with a reason.
            max_message_size: 1024 * 1024,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("every state change, in commit order".into()),
            subjects: vec![ALL_INCIDENT_EVENTS.into(), ALL_TASK_EVENTS.into()],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.event_max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: REJECTED_STREAM.into(),
            description: Some(
                "reports that failed validation or delivery, with reason and original bytes".into(),
            ),
            subjects: vec![ALL_REJECTED.into()],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.rejected_max_age,
            max_message_size: 2 * 1024 * 1024,
            storage: stream::StorageType::File,
            ..Default::default()
        },
    ];
    for config in configs {
        let stream = config.name.clone();
        js.get_or_create_stream(config)
            .await
            .map_err(|source| Error::CreateStream { stream, source })?;
    }
    Ok(())
}

/// The durable pull consumer that intake reads from; shared by all dispatch replicas. Created, or
/// brought to this configuration if it exists: a changed `--ack-wait-secs` takes effect at the next
/// start (the latest replica to start wins).
pub async fn intake_consumer(
    js: &jetstream::Context,
    name: &str,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, Error> {
    let stream = js
        .get_stream(REPORTS_STREAM)
        .await
        .map_err(|source| Error::OpenStream {
            stream: REPORTS_STREAM,
            source,
        })?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            description: Some("whistle-dispatch intake".into()),
            filter_subject: ALL_REPORTS.into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            // Unlimited: an outage must never use up a report's deliveries. Intake itself
            // rejects a report that fails on its own too often (`max_report_failures`).
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .map_err(|source| Error::Consumer {
            consumer: name.to_owned(),
            source,
        })
}
