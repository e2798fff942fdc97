//! The timer loop: fires due deadlines from the `timers` table.
//!
//! Timers live in PostgreSQL and survive restarts; the loop only decides when to look. A round
//! takes the due timers, oldest first, and fires them in batches of one transaction each (one
//! commit, so one fsync, for up to [`BATCH`] firings, and one statement per table: the
//! transitions are worked out in memory and written together). In a batch the incidents are
//! locked without waiting, the timers re-checked under those locks, applied and deleted: with
//! several replicas no timer fires twice, and a batch that fails rolls back whole and is fired
//! again next round.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::incident::{Incident, Input};
use whistle_store::incidents::{self, Changes, DueTimer, Save};

use crate::{engine, Error, Shared};

/// Most timers fired per round before the loop looks at the clock again.
const ROUND: i64 = 1000;
/// Most timers fired in one transaction. Larger batches share a commit among more firings but
/// hold their incidents' locks longer, so a command on one of them waits for the whole batch.
const BATCH: usize = 250;
/// How soon to look again at a due timer whose incident was locked by someone else.
const RETRY_SKIPPED: Duration = Duration::from_millis(20);

pub(crate) struct Timers {
    pub shared: Arc<Shared>,
    pub wakeup: Arc<Notify>,
    pub relay_wakeup: Arc<Notify>,
}

/// The running policy's volunteer rules.
fn catalog_volunteers(shared: &Shared) -> whistle_domain::policy::VolunteerRules {
    shared.catalog.load().policy.volunteers().clone()
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
                    warn!(error = %whistle_wire::chain(&e), "timer round failed; retrying");
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
        // Volunteer offers' claim deadlines (docs/party.md) are timers of their own table,
        // fired here on the same clock and wakeups; each returns its offer once. A plain read
        // first: the locking transaction runs only when one is due.
        let mut returned = 0;
        let due_offer = whistle_store::volunteers::next_deadline(&self.shared.pool).await?;
        if due_offer.is_some_and(|at| at <= now) {
            let volunteers = catalog_volunteers(&self.shared);
            returned =
                whistle_store::volunteers::fire_due(&self.shared.pool, &volunteers, now, ROUND)
                    .await?
                    .len();
            if returned > 0 {
                info!(
                    offers = returned,
                    "volunteer claims past their deadline returned"
                );
            }
        }
        let mut conn = self.shared.pool.acquire().await?;
        let next_incident = incidents::next_timer(&mut conn).await?;
        drop(conn);
        let next_offer = if due_offer.is_some_and(|at| at <= now) {
            whistle_store::volunteers::next_deadline(&self.shared.pool).await?
        } else {
            due_offer
        };
        let next = match (next_incident, next_offer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((fired + returned, next))
    }

    /// Fires a batch of due timers in one transaction, with one statement per table; returns how
    /// many fired (or were dropped as refused). Any error rolls the whole batch back.
    async fn fire_batch(
        &self,
        batch: &[DueTimer],
        skipped: &mut HashSet<Uuid>,
    ) -> Result<usize, Error> {
        let batch: Vec<&DueTimer> = batch
            .iter()
            .filter(|due| !skipped.contains(&due.incident_id))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let catalog = self.shared.catalog.load();
        // The batch's own time: a round's later batches apply their timers when they run.
        let now = self.shared.clock.now();
        let mut tx = self.shared.pool.begin().await?;
        // Incidents first, then the timer rows: the same order as commands, so no deadlock. An
        // incident locked elsewhere (a command, another replica) is skipped, never waited for.
        let mut ids: Vec<Uuid> = batch.iter().map(|due| due.incident_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut locked = incidents::try_lock_all(&mut tx, &ids).await?;
        skipped.extend(ids.iter().filter(|id| !locked.contains_key(id)));
        let ours: Vec<DueTimer> = batch
            .into_iter()
            .filter(|due| locked.contains_key(&due.incident_id))
            .cloned()
            .collect();
        if ours.is_empty() {
            return Ok(0);
        }
        // Another replica may have fired some already.
        let mut pending = incidents::pending_timers(&mut tx, &ours).await?;

        let mut planned: Vec<(Uuid, Incident, Changes)> = Vec::with_capacity(ours.len());
        // How late each firing is, counted once the batch commits.
        let mut lateness = Vec::with_capacity(ours.len());
        for due in &ours {
            let id = due.incident_id;
            let Some(incident) = locked.get_mut(&id) else {
                continue;
            };
            // An earlier timer of this batch may have moved or cancelled it.
            if pending.get(&(id, due.timer)).is_none_or(|at| *at > now) {
                continue;
            }
            let input = Input::Timer(due.timer);
            let changes = match engine::plan(
                &catalog,
                incident,
                input,
                "system",
                Some(due.timer),
                now,
            ) {
                // The incident's next timer in this batch applies to the new state.
                Ok((state, changes)) => {
                    incident.state = state;
                    changes
                }
                Err(rejection) => {
                    // Only a policy or org tree missing what the incident needs gets here; the
                    // timer is dropped so it does not fire in a loop, and the refusal is on record.
                    warn!(incident_id = %id, timer = %due.timer.key(), %rejection, "timer refused; dropped");
                    Changes {
                        fired: Some(due.timer),
                        ..Default::default()
                    }
                }
            };
            for timer in changes.fired.iter().chain(&changes.cancel) {
                pending.remove(&(id, *timer));
            }
            for (timer, at) in &changes.schedule {
                pending.insert((id, *timer), *at);
            }
            lateness.push((now - due.due_at).to_std().unwrap_or_default());
            planned.push((id, incident.state.clone(), changes));
        }
        let saves: Vec<Save> = planned
            .iter()
            .map(|(id, state, changes)| Save {
                id: *id,
                state,
                changes,
            })
            .collect();
        incidents::save_all(&mut tx, &saves, now).await?;
        tx.commit().await?;
        self.shared.metrics.record_timers_fired(lateness);
        Ok(planned.len())
    }
}
