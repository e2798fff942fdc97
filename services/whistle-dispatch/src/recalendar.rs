//! Recounting provisional working-day deadlines when dispatch starts with a fuller calendar.
//!
//! A working-day deadline counted over a year the holiday calendar does not hold is provisional
//! (weekends only, `state.provisional`). A release that ships the year's calendar file loads it at
//! start; before taking work, dispatch applies `Input::Recalendar` to each open incident with such
//! a deadline, which moves its deadline (and its timer and its tasks' deadlines) to the official
//! one and records `incident.rescheduled`. With several replicas starting together, the second
//! to lock an incident finds it already official and leaves it.

use tracing::info;
use whistle_domain::incident::Input;
use whistle_store::incidents;

use crate::{engine, Error, Shared};

/// Recounts every provisional deadline on the loaded calendar; returns how many moved.
pub(crate) async fn sweep(shared: &Shared) -> Result<usize, Error> {
    let catalog = shared.catalog.load();
    let mut conn = shared.pool.acquire().await?;
    let ids = incidents::provisional_deadlines(&mut conn).await?;
    drop(conn);
    let mut recounted = 0;
    for id in &ids {
        let mut tx = shared.pool.begin().await?;
        let Some(locked) = incidents::lock(&mut tx, *id).await? else {
            continue;
        };
        let now = shared.clock.now();
        let outcome = engine::transition(
            &mut tx,
            &catalog,
            &locked,
            Input::Recalendar,
            "system",
            &[],
            now,
        )
        .await?;
        // Unchanged (still past the calendar, or another replica was first): nothing to write.
        if outcome.is_ok_and(|state| state.version != locked.state.version) {
            tx.commit().await?;
            recounted += 1;
        }
    }
    let last_year = catalog.calendar.last_year();
    info!(
        provisional = ids.len(),
        recounted,
        ?last_year,
        "provisional deadlines recounted"
    );
    Ok(recounted)
}
