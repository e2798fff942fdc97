//! The JetStream streams and the intake consumer, created idempotently at start.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use whistle_domain::{AreaCode, Level};
use whistle_proto::v1;

use crate::Error;

pub const REPORTS: &str = "WHISTLE_REPORTS";
pub const EVENTS: &str = "WHISTLE_EVENTS";
pub const REJECTED: &str = "WHISTLE_REJECTED";

pub const REPORT_SUBJECTS: &str = "whistle.report.>";
pub const REJECTED_PREFIX: &str = "whistle.rejected";

/// The subject a report of `grid` is published on: `whistle.report.{district}.{street}.{community}.{grid}`.
pub fn report_subject(grid: &AreaCode) -> String {
    let at = |level| {
        grid.at_level(level)
            .expect("a grid has every ancestor")
            .to_string()
    };
    format!(
        "whistle.report.{}.{}.{}.{}",
        at(Level::District),
        at(Level::Street),
        at(Level::Community),
        grid
    )
}

/// Whether an event of `WHISTLE_EVENTS` happened inside `area`, judged by the most precise org
/// code it carries. Events with no place (a rejected report with a bad subject) belong to the
/// city alone.
pub fn event_in_area(area: &AreaCode, event: &v1::Event) -> bool {
    if area.level() == Level::City {
        return true;
    }
    [
        &event.grid_code,
        &event.community_code,
        &event.street_code,
        &event.district_code,
    ]
    .into_iter()
    .find(|code| !code.is_empty())
    .is_some_and(|code| code.starts_with(area.as_str()))
}

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
            name: REPORTS.into(),
            description: Some("reports from grid workers".into()),
            subjects: vec![REPORT_SUBJECTS.into()],
            duplicate_window: options.report_duplicate_window,
            max_age: options.report_max_age,
            // Larger than validation's limit, so oversized reports are rejected by us with a reason.
            max_message_size: 1024 * 1024,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: EVENTS.into(),
            description: Some("every state change, in commit order".into()),
            subjects: vec!["whistle.event.>".into(), "whistle.task.>".into()],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.event_max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        },
        stream::Config {
            name: REJECTED.into(),
            description: Some(
                "reports that failed validation or delivery, with reason and original bytes".into(),
            ),
            subjects: vec![format!("{REJECTED_PREFIX}.>")],
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: options.rejected_max_age,
            max_message_size: 2 * 1024 * 1024,
            storage: stream::StorageType::File,
            ..Default::default()
        },
    ];
    for config in configs {
        let name = config.name.clone();
        js.get_or_create_stream(config)
            .await
            .map_err(|e| Error::Nats(format!("creating stream {name}: {e}")))?;
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
        .get_stream(REPORTS)
        .await
        .map_err(|e| Error::Nats(format!("opening stream {REPORTS}: {e}")))?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            description: Some("whistle-dispatch intake".into()),
            filter_subject: REPORT_SUBJECTS.into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            // Unlimited: an outage must never use up a report's deliveries. Intake itself
            // rejects a report that fails on its own too often (`max_report_failures`).
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Nats(format!("creating or updating consumer {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_subject_names_every_level() {
        let grid = "150602001002003".parse().unwrap();
        assert_eq!(
            report_subject(&grid),
            "whistle.report.150602.150602001.150602001002.150602001002003"
        );
    }
}
