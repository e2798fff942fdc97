//! The devices `whistle simulate` plays (docs/devices.md), registered in the first grid of the
//! org if they are not yet, each publishing on its grid's `.device` subject:
//!
//! - a steady water-level sensor: a detection, cleared two minutes later, every fifteen minutes
//!   (an incident each time);
//! - a smoke sensor in a storm: the same detection every fifteen seconds (one incident, every
//!   later reading folded into it);
//! - a flapping manhole-cover sensor: detection and clearing alternating every twenty seconds
//!   (flagged for maintenance at the fifth change, then kept and sent to no department).
//!
//! Their incidents are left to the escalation timers (their report ids do not carry the run's
//! prefix), so the storm's incident stays open and every later reading of it is folded in.

use std::time::Duration;

use async_nats::{header::NATS_MESSAGE_ID, jetstream, HeaderMap};
use chrono::Utc;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use whistle_domain::{devices::DeviceKind, AreaCode};
use whistle_proto::v1;

use super::say;

/// One simulated device and how it behaves.
#[derive(Debug, Clone)]
struct Played {
    id: String,
    kind: DeviceKind,
    category: &'static str,
    title: &'static str,
    /// Readings as (delay before it, cleared), repeated.
    pattern: &'static [(u64, bool)],
}

const STEADY: &[(u64, bool)] = &[(1, false), (120, true), (780, false)];
const STORM: &[(u64, bool)] = &[(15, false)];
const FLAPPING: &[(u64, bool)] = &[(20, false), (20, true)];

fn devices(grid: &AreaCode) -> [Played; 3] {
    [
        Played {
            id: format!("sim-wl-{grid}"),
            kind: DeviceKind::WaterLevel,
            category: "municipal.road",
            title: "下穿通道积水超警戒水位",
            pattern: STEADY,
        },
        Played {
            id: format!("sim-smoke-{grid}"),
            kind: DeviceKind::Smoke,
            category: "fire.ebike_charging",
            title: "电动车充电棚烟感报警",
            pattern: STORM,
        },
        Played {
            id: format!("sim-mh-{grid}"),
            kind: DeviceKind::ManholeCover,
            category: "municipal.manhole",
            title: "井盖位移报警",
            pattern: FLAPPING,
        },
    ]
}

/// Registers the devices (those already registered are kept) and plays them until `stop`.
/// Without the database (its URL unreachable) no device plays, which is said once.
pub(super) async fn play(
    database_url: String,
    actor: whistle_store::audit::Actor,
    client: async_nats::Client,
    prefix: String,
    stop: CancellationToken,
) {
    let pool = match whistle_store::connect(&database_url, 2).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("simulate: no devices ({e:#}); they are registered in the database");
            return;
        }
    };
    let grid: Option<String> = sqlx::query_scalar(
        "SELECT code FROM org_units WHERE length(code) = 15 ORDER BY code LIMIT 1",
    )
    .fetch_optional(&pool)
    .await
    .unwrap_or_default();
    let Some(grid) = grid.and_then(|g| g.parse::<AreaCode>().ok()) else {
        eprintln!("simulate: no devices (the org has no grid)");
        return;
    };
    let known: Vec<String> = whistle_store::devices::list(&pool, Some(&grid))
        .await
        .map(|listed| listed.into_iter().map(|d| d.id).collect())
        .unwrap_or_default();
    let js = jetstream::new(client);
    let mut tasks = Vec::new();
    for device in devices(&grid) {
        if !known.contains(&device.id) {
            if let Err(e) = whistle_store::devices::register(
                &pool,
                &device.id,
                device.kind,
                &grid,
                device.title,
                Utc::now(),
                &actor,
            )
            .await
            {
                eprintln!("simulate: device {} not registered: {e}", device.id);
                continue;
            }
        }
        tasks.push(tokio::spawn(run(
            device,
            grid.clone(),
            js.clone(),
            prefix.clone(),
            stop.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn run(
    device: Played,
    grid: AreaCode,
    js: jetstream::Context,
    prefix: String,
    stop: CancellationToken,
) {
    let subject = whistle_wire::subject::device_reports(&grid);
    for (n, &(delay, cleared)) in device.pattern.iter().cycle().enumerate() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(delay)) => {}
        }
        // Not the run's prefix: the simulated staff leave the devices' incidents to the timers,
        // so the storm's one incident stays open and gathers every fold.
        let report_id = format!("dev-{prefix}{}-{n}", device.id);
        let now = Utc::now();
        let report = v1::Report {
            report_id: report_id.clone(),
            reporter_id: device.id.clone(),
            grid_code: grid.to_string(),
            category: device.category.to_owned(),
            title: if cleared {
                format!("{}（已恢复）", device.title)
            } else {
                device.title.to_owned()
            },
            reported_at: Some(whistle_wire::convert::timestamp(now)),
            channel: v1::Channel::Device as i32,
            cleared,
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, report_id.as_str());
        let published = match js
            .publish_with_headers(subject.clone(), headers, report.encode_to_vec().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let what = format!(
            "{} {} [{}]",
            device.kind.name_zh(),
            if cleared { "恢复" } else { "报警" },
            device.category
        );
        match published {
            Ok(()) => say("设备", &device.id, &what),
            Err(e) => say("✗设备", &device.id, &format!("{what} — {e}")),
        }
    }
}
