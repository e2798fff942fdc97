//! Devices as reporters (docs/devices.md): the registry held in memory, followed on the
//! `whistle_devices` notification like the org on `whistle_people`, and the intake lease
//! holder's memory of each device's readings (`whistle_domain::devices::DeviceTrack`), rebuilt
//! from the readings kept in PostgreSQL whenever it may differ from them.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use whistle_domain::{
    devices::{DeviceKind, DevicePolicy, DeviceTrack, Reading},
    AreaCode, CategoryCode,
};

use crate::{hub::Wakeups, Shared};

/// How far back intake's memory of the devices reaches when rebuilt: a detection silent for
/// longer starts over (its next reading opens an incident), while the rate and the flapping
/// rule look back minutes only.
pub(crate) const HORIZON: TimeDelta = TimeDelta::hours(24);

/// A device's registry status as intake needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    /// Flagged for maintenance: its reports are kept and sent to no department.
    Maintenance,
    /// Its reports are refused.
    Retired,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub kind: DeviceKind,
    pub grid: AreaCode,
    pub status: Status,
    /// The flag was cleared then: intake's rules forget the readings before it.
    pub history_from: Option<DateTime<Utc>>,
}

/// Every registered device, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    devices: HashMap<String, Registered>,
}

impl Registry {
    pub fn new(devices: impl IntoIterator<Item = (String, Registered)>) -> Registry {
        Registry {
            devices: devices.into_iter().collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Registered> {
        self.devices.get(id)
    }

    fn from_store(devices: Vec<whistle_store::devices::Device>) -> Registry {
        Registry::new(devices.into_iter().map(|d| {
            let status = match d.status.as_str() {
                "maintenance" => Status::Maintenance,
                "retired" => Status::Retired,
                _ => Status::Active,
            };
            (
                d.id,
                Registered {
                    kind: d.kind,
                    grid: d.grid,
                    status,
                    history_from: d.history_from,
                },
            )
        }))
    }

    /// The registry as stored now.
    pub async fn load(pool: &sqlx::PgPool) -> whistle_store::Result<Registry> {
        Ok(Registry::from_store(
            whistle_store::devices::list(pool, None).await?,
        ))
    }
}

/// The registry in memory, swapped whole on a change; `generation` counts the changes, so the
/// intake lease holder knows its memory of the devices must be rebuilt.
#[derive(Debug, Default)]
pub(crate) struct RegistryCell(RwLock<(Arc<Registry>, u64)>);

impl RegistryCell {
    pub fn new(registry: Registry) -> RegistryCell {
        RegistryCell(RwLock::new((Arc::new(registry), 0)))
    }

    pub fn load(&self) -> (Arc<Registry>, u64) {
        let cell = self.0.read().unwrap_or_else(|e| e.into_inner());
        (cell.0.clone(), cell.1)
    }

    /// Swaps `registry` in if it differs; returns whether it did.
    fn replace(&self, registry: Registry) -> bool {
        let mut cell = self.0.write().unwrap_or_else(|e| e.into_inner());
        if *cell.0 == registry {
            return false;
        }
        *cell = (Arc::new(registry), cell.1 + 1);
        true
    }
}

/// Follows the registry: read whole when woken by a change (a registration, a flag raised or
/// cleared, a retirement) or a (re)connection of the listener, and every `people_poll_interval`
/// besides, since a notification sent while the listening connection was down is lost.
pub(crate) async fn follow(shared: Arc<Shared>, mut wakeups: Wakeups, shutdown: CancellationToken) {
    loop {
        match Registry::load(&shared.pool).await {
            Ok(registry) => {
                let count = registry.devices.len();
                if shared.devices.replace(registry) {
                    info!(devices = count, "device registry read again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the device registry failed; keeping the running one")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(shared.options.people_poll_interval) => {}
            _ = wakeups.wait() => {}
        }
    }
}

/// The intake lease holder's memory of the devices' readings. It takes in a batch's readings as
/// they are judged, before the commit, so it is `stale` (rebuilt before the next judgement) until
/// the batch is known to be committed whole; a redelivered reading is then judged as it was first
/// (its verdict is found kept, [`whistle_store::devices::already_taken`]), never twice.
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    tracks: HashMap<String, DeviceTrack>,
    /// The registry generation the memory was built on; none before the first build.
    generation: Option<u64>,
    pub stale: bool,
}

impl Tracks {
    /// Whether the memory must be rebuilt before judging: never built, stale, or the registry
    /// changed (a flag cleared starts a history over; a flag raised elsewhere counts).
    pub fn needs_rebuild(&self, generation: u64) -> bool {
        self.stale || self.generation != Some(generation)
    }

    /// Replays the readings kept since `now - HORIZON` (each device's since its flag was last
    /// cleared) under `policy`; a device the registry says is under maintenance stays flagged.
    pub async fn rebuild(
        &mut self,
        pool: &sqlx::PgPool,
        registry: &Registry,
        generation: u64,
        policy: &DevicePolicy,
        now: DateTime<Utc>,
    ) -> whistle_store::Result<()> {
        let readings = whistle_store::devices::readings_since(pool, now - HORIZON).await?;
        let mut tracks: HashMap<String, DeviceTrack> = HashMap::new();
        let count = readings.len();
        for stored in readings {
            let Ok(category) = stored.category.parse::<CategoryCode>() else {
                continue;
            };
            let reading = if stored.alarm {
                Reading::Alarm(category)
            } else {
                Reading::Clear(category)
            };
            tracks.entry(stored.device_id).or_default().observe(
                policy,
                &reading,
                stored.received_at,
            );
        }
        for (id, device) in &registry.devices {
            if device.status == Status::Maintenance {
                tracks.entry(id.clone()).or_default().mark_flagged();
            }
        }
        debug!(
            readings = count,
            devices = tracks.len(),
            "intake's memory of the devices rebuilt"
        );
        self.tracks = tracks;
        self.generation = Some(generation);
        self.stale = false;
        Ok(())
    }

    /// The track of `device`, new if it has none.
    pub fn track(&mut self, device: &str) -> &mut DeviceTrack {
        self.tracks.entry(device.to_owned()).or_default()
    }
}

/// Why a device was flagged, in words.
pub(crate) fn flag_reason(policy: &DevicePolicy) -> String {
    format!(
        "{} state changes (alarm ↔ clear) within {} minutes",
        policy.flap_changes,
        policy.flap_window.num_minutes()
    )
}
