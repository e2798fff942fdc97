//! The load: uniquely identified reports, a few of them invalid, published at a steady rate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use chrono::Utc;
use prost::Message as _;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use whistle_proto::v1;

use super::Config;
use crate::checker::Published;

/// Publishes uniquely identified reports at the configured rate; each publish is retried (same
/// `Nats-Msg-Id`) until JetStream acknowledges it or 60 s after the load ends.
pub(super) async fn publish_load(
    js: jetstream::Context,
    config: Config,
    start: Instant,
) -> anyhow::Result<Vec<Published>> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut grids: Vec<String> = whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .filter(|u| u.level() == whistle_domain::Level::Grid)
        .map(|u| u.code.to_string())
        .collect();
    grids.shuffle(&mut rng);
    grids.truncate(config.grids.max(2));
    let policy = whistle_domain::policy::builtin("ordos").context("the Ordos policy")?;
    let mut categories: Vec<String> = policy.categories().map(|c| c.code.to_string()).collect();
    categories.shuffle(&mut rng);
    categories.truncate(config.categories.max(1));

    let give_up = start + config.duration + Duration::from_secs(60);
    let inflight = Arc::new(tokio::sync::Semaphore::new(8192));
    let mut tasks = Vec::new();
    let total = (config.duration.as_secs_f64() * config.rate) as u64;
    for n in 0..total {
        tokio::time::sleep_until((start + Duration::from_secs_f64(n as f64 / config.rate)).into())
            .await;
        let id = format!("chaos-{}-{n}", config.seed);
        let grid = grids[rng.random_range(0..grids.len())].clone();
        let mut report = report(
            &id,
            &grid,
            &categories[rng.random_range(0..categories.len())],
        );
        let valid = config.invalid_every == 0 || !n.is_multiple_of(config.invalid_every);
        if !valid {
            if (n / config.invalid_every).is_multiple_of(2) {
                report.category = "no.such".into();
            } else {
                // Signed by the worker of another grid than the subject names.
                let other = grids
                    .iter()
                    .find(|g| **g != grid)
                    .cloned()
                    .unwrap_or_default();
                report.grid_code = other;
            }
        }
        let subject = subject_for(&grid);
        let payload: bytes::Bytes = report.encode_to_vec().into();
        let js = js.clone();
        let permit = inflight.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, id.as_str());
            let acked = loop {
                if let Ok(ack) = js
                    .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                    .await
                {
                    if ack.await.is_ok() {
                        break true;
                    }
                }
                if Instant::now() > give_up {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            Published {
                report_id: id,
                valid,
                acked,
            }
        }));
    }
    let mut published = Vec::with_capacity(tasks.len());
    for task in tasks {
        published.push(task.await?);
    }
    Ok(published)
}

fn subject_for(grid: &str) -> String {
    whistle_wire::subject::report(&grid.parse().expect("a grid code"))
}

fn report(report_id: &str, grid: &str, category: &str) -> v1::Report {
    let now = Utc::now().timestamp_millis();
    v1::Report {
        report_id: report_id.into(),
        reporter_id: format!("gw-{grid}"),
        grid_code: grid.into(),
        category: category.into(),
        urgency: v1::Urgency::Normal as i32,
        title: "故障注入测试".into(),
        description: "chaos run".into(),
        // No coordinates: a report joins an open incident of its category in the same grid.
        location: None,
        occurred_at: Some(whistle_proto::timestamp_from_unix_millis(now - 600_000)),
        reported_at: Some(whistle_proto::timestamp_from_unix_millis(now)),
        attachments: vec![],
        contact_phone: String::new(),
        photo_ids: Vec::new(),
        channel: v1::Channel::Unspecified as i32,
        channel_ref: String::new(),
        cleared: false,
    }
}
