//! Keeps table statistics fresh and the outbox vacuumed when the server's autovacuum is off
//! (see `whistle_store::maintenance`): a look every `maintenance_interval`, work only when due.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use whistle_store::maintenance;

use crate::Shared;

pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let interval = shared.options.maintenance_interval;
    if let Ok(true) = maintenance::unattended(&shared.pool).await {
        warn!(
            "the server's autovacuum is off and dispatch's database role owns no tables: \
             nothing vacuums or analyses them (turn autovacuum on, or run dispatch as the owner)"
        );
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let work = match maintenance::due(&shared.pool).await {
            Ok(work) => work,
            Err(e) => {
                debug!(error = %e, "cannot read table statistics; trying again later");
                continue;
            }
        };
        for item in work {
            if shutdown.is_cancelled() {
                return;
            }
            let started = std::time::Instant::now();
            match maintenance::perform(&shared.pool, &item).await {
                Ok(()) => info!(
                    ?item,
                    took_ms = started.elapsed().as_millis() as u64,
                    "table maintenance (the server's autovacuum is off)"
                ),
                Err(e) => warn!(error = %e, ?item, "table maintenance failed; trying again later"),
            }
        }
    }
}
