//! The handle the RPCs read the live aggregates through, and the feed installs each generation in.

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, TimeDelta, Utc};
use whistle_domain::{policy::Scoring, AreaCode};
use whistle_proto::v1;

use super::{store::Sizes, AreaKey, Store};
use crate::{overview, scoreboard, Error, Result};

/// The live aggregates of a query service; cheap to clone. They are ready once the first rebuild
/// has finished; a later rebuild (after the store fell out of step with the stream) replaces
/// them when it is done, and the previous generation answers meanwhile.
#[derive(Clone, Default)]
pub struct Aggregates {
    current: Arc<RwLock<Option<Arc<Store>>>>,
}

impl fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregates")
            .field("applied_sequence", &self.applied_sequence())
            .finish()
    }
}

impl Aggregates {
    /// The last `WHISTLE_EVENTS` sequence the aggregates reflect (the stream's last sequence when
    /// the rebuild started, then each event applied); `None` until the first rebuild finished.
    pub fn applied_sequence(&self) -> Option<u64> {
        self.store().map(|store| store.applied())
    }

    /// How much the current generation holds (shown in `/metrics`); `None` until the first
    /// rebuild finished.
    pub fn sizes(&self) -> Option<Sizes> {
        self.store().map(|store| store.sizes())
    }

    /// Whether the first rebuild has finished.
    pub fn is_ready(&self) -> bool {
        self.store().is_some()
    }

    fn store(&self) -> Option<Arc<Store>> {
        self.current
            .read()
            .expect("the aggregates lock is never poisoned")
            .clone()
    }

    /// Reads the org the boards list (units, departments, streets) into the current generation
    /// again, after an org import; a generation still being built reads it itself.
    pub(crate) async fn reload_org(&self, pool: &sqlx::PgPool) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let mut conn = pool.acquire().await?;
        let org = super::load::org(&mut conn, &store).await?;
        store.set_org(org);
        Ok(())
    }

    pub(super) fn install(&self, store: Arc<Store>) {
        *self
            .current
            .write()
            .expect("the aggregates lock is never poisoned") = Some(store);
    }

    /// The open and overdue incidents of each area, as `GetOverview` counts them, for the map;
    /// UNAVAILABLE until the first rebuild finished.
    pub(crate) fn open_and_overdue(
        &self,
        areas: &[AreaCode],
        now: DateTime<Utc>,
    ) -> Result<Vec<(u64, u64)>> {
        let store = self.ready()?;
        Ok(areas
            .iter()
            .map(|area| store.open_and_overdue(AreaKey::of(Some(area)), now))
            .collect())
    }

    fn ready(&self) -> Result<Arc<Store>> {
        self.store().ok_or_else(|| {
            Error::Unavailable(
                "the live aggregates are still loading (from PostgreSQL and WHISTLE_EVENTS); retry shortly"
                    .into(),
            )
        })
    }

    /// `ListOverdue` from the late list; `None` until the first rebuild finished.
    pub(crate) fn overdue(
        &self,
        area: &AreaCode,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Option<v1::ListOverdueResponse> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.store().map(|store| store.overdue(area, limit, now))
    }

    /// `GetTrend` from the aggregates; UNAVAILABLE until the first rebuild finished.
    pub(crate) fn trend(
        &self,
        area: &AreaCode,
        hours: u32,
        now: DateTime<Utc>,
    ) -> Result<v1::Trend> {
        let store = self.ready()?;
        Ok(store.trend(area.as_str(), AreaKey::of(Some(area)), hours, now))
    }

    /// `GetOverview` from the aggregates; UNAVAILABLE until the first rebuild finished.
    pub(crate) fn overview(
        &self,
        area_code: &str,
        area: Option<&AreaCode>,
        window: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<v1::Overview> {
        let store = self.ready()?;
        Ok(store.overview(
            area_code,
            AreaKey::of(area),
            overview::window_days(window),
            now,
        ))
    }

    /// `GetScoreboard` from the aggregates, `None` for a month older than the rows they keep
    /// (the month of the oldest day counters keep); UNAVAILABLE until the first rebuild
    /// finished.
    pub(crate) fn scoreboard(
        &self,
        query: &scoreboard::Query,
        scoring: &Scoring,
        now: DateTime<Utc>,
    ) -> Result<Option<v1::Scoreboard>> {
        self.ready()?.scoreboard(query, scoring, now)
    }
}
