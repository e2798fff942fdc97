//! The JetStream streams, opened at start (the admin creates them), and the intake consumer,
//! dispatch's own, created or updated at start.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};

use whistle_wire::{
    names::{EVENTS_STREAM, REJECTED_STREAM, REPORTS_STREAM},
    subject::ALL_REPORTS,
};

use crate::Error;

/// Opens the three streams, which the admin identity creates (`whistle streams`, configured by
/// whistle-auth's streams module); dispatch may not create or change them.
pub async fn open(js: &jetstream::Context) -> Result<(), Error> {
    for stream in [REPORTS_STREAM, EVENTS_STREAM, REJECTED_STREAM] {
        js.get_stream(stream)
            .await
            .map_err(|source| Error::OpenStream { stream, source })?;
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
