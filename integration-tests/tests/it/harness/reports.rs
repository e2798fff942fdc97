//! A grid worker's side: valid reports, their subjects, and a client that publishes them.

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use prost::Message as _;
use whistle_proto::v1;

use super::NatsServer;

/// The test's publisher of reports for any grid (and of malformed ones): the admin's client.
pub struct Reporter {
    pub js: jetstream::Context,
}

impl Reporter {
    pub async fn connect(nats: &NatsServer) -> Reporter {
        let client = nats.connect().await.expect("connecting to nats as admin");
        Reporter {
            js: jetstream::new(client),
        }
    }

    /// Publishes raw bytes with optional headers and waits for JetStream to store them.
    pub async fn publish_raw(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> jetstream::publish::PublishAck {
        self.js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack")
    }

    pub async fn publish(&self, report: &v1::Report) -> jetstream::publish::PublishAck {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, report.report_id.as_str());
        self.publish_raw(
            &subject_for(&report.grid_code),
            headers,
            report.encode_to_vec(),
        )
        .await
    }
}

pub fn subject_for(grid: &str) -> String {
    whistle_wire::subject::report(&grid.parse().expect("a grid code"))
}

/// Grids of the Ordos dataset, for picking valid places.
pub fn grids() -> Vec<String> {
    whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .filter(|u| u.level() == whistle_domain::Level::Grid)
        .map(|u| u.code.to_string())
        .collect()
}

/// A valid report from the worker of `grid`.
pub fn report(report_id: &str, grid: &str) -> v1::Report {
    v1::Report {
        report_id: report_id.into(),
        reporter_id: format!("gw-{grid}"),
        grid_code: grid.into(),
        category: "heating.no_heat".into(),
        urgency: v1::Urgency::Urgent as i32,
        title: "3号楼室内温度只有12度".into(),
        description: "居民反映连续两天室内温度不达标".into(),
        // No coordinates: duplicate detection then compares grids, so reports from different
        // grids are different incidents.
        location: None,
        occurred_at: Some(whistle_proto::timestamp_from_unix_millis(
            chrono::Utc::now().timestamp_millis() - 3_600_000,
        )),
        reported_at: Some(whistle_proto::timestamp_from_unix_millis(
            chrono::Utc::now().timestamp_millis(),
        )),
        attachments: vec![v1::Attachment {
            uri: "https://oss.example/a.jpg".into(),
            media_type: "image/jpeg".into(),
            size_bytes: 1,
            caption: String::new(),
        }],
        contact_phone: String::new(),
        photo_ids: Vec::new(),
        channel: v1::Channel::Unspecified as i32,
        channel_ref: String::new(),
        cleared: false,
    }
}
