//! Erases residents' contacts once their incident settled longer ago than the policy's
//! `[retention]` allows (docs/privacy.md): a pass every `retention_interval`, in batches, on
//! dispatch's clock. Replicas may run it at once: each skips the incidents another holds, and an
//! erased contact is not there to erase twice.

use std::sync::Arc;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whistle_store::{
    audit::Actor,
    retention::{self, Scope},
};

use crate::Shared;

/// Incidents erased in one transaction.
const BATCH: u32 = 200;

pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        match pass(&shared, &shutdown).await {
            Ok((0, _)) => {}
            Ok((incidents, contacts)) => {
                info!(
                    incidents,
                    contacts, "residents' contacts past their retention erased"
                )
            }
            Err(e) => {
                warn!(error = %e, "erasing contacts past their retention failed; trying again later")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.options.retention_interval) => {}
        }
    }
}

/// One pass: every incident due, a batch at a time. Returns (incidents, contacts) erased.
async fn pass(
    shared: &Shared,
    shutdown: &CancellationToken,
) -> whistle_store::Result<(usize, usize)> {
    let kept = shared.catalog.load().policy.retention().contacts;
    let note = format!("保存期限（结案后 {}）届满", spoken(kept));
    let actor = Actor::service("whistle-dispatch");
    let mut total = (0, 0);
    while !shutdown.is_cancelled() {
        let now = shared.clock.now();
        let due = retention::settled_with_contacts(&shared.pool, now - kept, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let (incidents, contacts) =
            retention::erase(&shared.pool, Scope::Incidents(&due), &actor, &note, now).await?;
        total = (total.0 + incidents, total.1 + contacts);
        if incidents == 0 {
            // Every one of them is held by another transaction: leave them to the next pass.
            break;
        }
    }
    Ok(total)
}

/// A retention period as the timeline says it.
fn spoken(d: TimeDelta) -> String {
    if d.num_days() >= 1 && d.num_hours() % 24 == 0 {
        format!("{} 天", d.num_days())
    } else if d.num_hours() >= 1 && d.num_minutes() % 60 == 0 {
        format!("{} 小时", d.num_hours())
    } else {
        format!("{} 分钟", d.num_minutes().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_said_in_its_largest_whole_unit() {
        assert_eq!(spoken(TimeDelta::days(180)), "180 天");
        assert_eq!(spoken(TimeDelta::hours(72)), "3 天");
        assert_eq!(spoken(TimeDelta::hours(36)), "36 小时");
        assert_eq!(spoken(TimeDelta::minutes(90)), "90 分钟");
    }
}
