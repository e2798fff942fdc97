//! The timer loop: fires due deadlines from the `timers` table.
//!
//! Timers live in PostgreSQL and survive restarts; the loop only decides when to look. Each
//! firing locks the incident, re-checks that the timer is still pending and due, applies it and
//! deletes it in one transaction, so with several replicas no timer fires twice.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use whistle_domain::incident::Input;
use whistle_store::incidents::{self, DueTimer};

use crate::{engine, Error, Shared};

/// Most timers fired per round before the loop looks at the clock again.
const ROUND: i64 = 500;
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
                        self.relay_wakeup.notify_one();
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
        let mut fired = 0;
        for timer in &due {
            if self.fire(timer, now).await? {
                fired += 1;
            }
        }
        let mut conn = self.shared.pool.acquire().await?;
        Ok((fired, incidents::next_timer(&mut conn).await?))
    }

    async fn fire(
        &self,
        due: &DueTimer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, Error> {
        let catalog = self.shared.catalog.load();
        let mut tx = self.shared.pool.begin().await?;
        // Incident first, then the timer row: the same order as commands, so no deadlock. An
        // incident locked elsewhere (a command, another replica) is skipped until the next round.
        let Some(locked) = incidents::try_lock(&mut tx, due.incident_id).await? else {
            return Ok(false);
        };
        if !incidents::timer_still_due(&mut tx, due, now).await? {
            return Ok(false);
        }
        let outcome = engine::transition(
            &mut tx,
            &catalog,
            &locked,
            Input::Timer(due.timer),
            "system",
            Some(due.timer),
            now,
        )
        .await?;
        match outcome {
            Ok(_) => {}
            Err(rejection) => {
                // Only a policy or org tree missing what the incident needs gets here; the timer
                // is dropped so it does not fire in a loop, and the refusal is on record.
                warn!(incident_id = %due.incident_id, timer = %due.timer.key(), %rejection, "timer refused; dropped");
                let changes = incidents::Changes {
                    fired: Some(due.timer),
                    ..Default::default()
                };
                incidents::save(&mut tx, due.incident_id, &locked.state, &changes, now).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
