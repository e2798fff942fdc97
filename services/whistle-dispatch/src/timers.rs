//! The timer loop: fires due deadlines from the `timers` table.
//!
//! Timers live in PostgreSQL and survive restarts; the loop only decides when to look. A round
//! takes the due timers, oldest first, and fires them in batches of one transaction each (one
//! commit, so one fsync, for up to [`BATCH`] firings). In a batch each incident is locked without
//! waiting, each timer re-checked under that lock, applied and deleted: with several replicas no
//! timer fires twice, and a batch that fails rolls back whole and is fired again next round.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::incident::Input;
use whistle_store::incidents::{self, DueTimer, Locked};

use crate::{engine, Error, Shared};

/// Most timers fired per round before the loop looks at the clock again.
const ROUND: i64 = 500;
/// Most timers fired in one transaction. Larger batches share a commit among more firings but
/// hold their incidents' locks longer, so a command on one of them waits for the whole batch.
const BATCH: usize = 100;
/// How soon to look again at a due timer whose incident was locked by someone else.
const RETRY_SKIPPED: Duration = Duration::from_millis(20);

pub(crate) struct Timers {
    pub shared: Arc<Shared>,
    pub wakeup: Arc<Notify>,
    pub relay_wakeup: Arc<Notify>,
}

impl Timers {
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = self.shared.options.timer_poll_interval;
        loop {
            let wait = match self.round().await {
                Ok((fired, next)) => {
                    if fired > 0 {
                        debug!(fired, "timers fired");
                    }
                    let now = self.shared.clock.now();
                    match next {
                        // More were due than one round takes: go again at once.
                        _ if fired as i64 >= ROUND => Duration::ZERO,
                        // Due but skipped (its incident was locked elsewhere): look again soon,
                        // without spinning.
                        Some(next) if next <= now => RETRY_SKIPPED.min(poll),
                        Some(next) => (next - now).to_std().unwrap_or(Duration::ZERO).min(poll),
                        None => poll,
                    }
                }
                Err(e) => {
                    warn!(error = %e, "timer round failed; retrying");
                    poll
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        info!("timers stopped");
    }

    /// Fires what is due now; returns how many fired and the next deadline.
    async fn round(&self) -> Result<(usize, Option<chrono::DateTime<chrono::Utc>>), Error> {
        let now = self.shared.clock.now();
        let mut conn = self.shared.pool.acquire().await?;
        let due = incidents::due_timers(&mut conn, now, ROUND).await?;
        drop(conn);
        // Incidents skipped this round keep their later timers for the next round too, so the
        // deadlines of one incident always fire in order.
        let mut skipped = HashSet::new();
        let mut fired = 0;
        for batch in due.chunks(BATCH) {
            let in_batch = self.fire_batch(batch, &mut skipped).await?;
            if in_batch > 0 {
                // Each committed batch's events go out without waiting for the round.
                self.relay_wakeup.notify_one();
            }
            fired += in_batch;
        }
        let mut conn = self.shared.pool.acquire().await?;
        Ok((fired, incidents::next_timer(&mut conn).await?))
    }

    /// Fires a batch of due timers in one transaction; returns how many fired (or were dropped
    /// as refused). Any error rolls the whole batch back.
    async fn fire_batch(
        &self,
        batch: &[DueTimer],
        skipped: &mut HashSet<Uuid>,
    ) -> Result<usize, Error> {
        let catalog = self.shared.catalog.load();
        // The batch's own time: a round's later batches apply their timers when they run.
        let now = self.shared.clock.now();
        let mut tx = self.shared.pool.begin().await?;
        let mut locked: HashMap<Uuid, Locked> = HashMap::new();
        let mut fired = 0;
        for due in batch {
            if skipped.contains(&due.incident_id) {
                continue;
            }
            // Incident first, then the timer row: the same order as commands, so no deadlock.
            // An incident locked elsewhere (a command, another replica) is skipped, never waited
            // for; one locked earlier in this batch is already ours.
            let incident = match locked.entry(due.incident_id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    match incidents::try_lock(&mut tx, due.incident_id).await? {
                        Some(incident) => entry.insert(incident),
                        None => {
                            skipped.insert(due.incident_id);
                            continue;
                        }
                    }
                }
            };
            // Another replica may have fired it, or an earlier timer of this batch moved it.
            if !incidents::timer_still_due(&mut tx, due, now).await? {
                continue;
            }
            let outcome = engine::transition(
                &mut tx,
                &catalog,
                incident,
                Input::Timer(due.timer),
                "system",
                Some(due.timer),
                now,
            )
            .await?;
            match outcome {
                // The incident's next timer in this batch applies to the new state.
                Ok(state) => incident.state = state,
                Err(rejection) => {
                    // Only a policy or org tree missing what the incident needs gets here; the
                    // timer is dropped so it does not fire in a loop, and the refusal is on record.
                    warn!(incident_id = %due.incident_id, timer = %due.timer.key(), %rejection, "timer refused; dropped");
                    let changes = incidents::Changes {
                        fired: Some(due.timer),
                        ..Default::default()
                    };
                    incidents::save(&mut tx, due.incident_id, &incident.state, &changes, now)
                        .await?;
                }
            }
            fired += 1;
        }
        tx.commit().await?;
        Ok(fired)
    }
}
