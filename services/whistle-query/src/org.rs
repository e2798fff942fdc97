//! Following the org's imports (docs/operations.md, "The city's organisation"): what this service
//! holds of the org in memory — the units and departments the live aggregates' boards list, and
//! the org tree the auth callout grants from — is read again when a newer `org_versions` row
//! appears. Everything else reads `org_units`, `departments` and `people` per request.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{aggregates::Aggregates, Error, Result};

pub(crate) struct Followers {
    pub aggregates: Aggregates,
    pub callout: Option<whistle_auth::SharedOrg>,
}

/// Follows the org's imports: woken by the notification an applied import sends on commit
/// (`whistle_org`), and polling the version every `interval` besides, since a notification sent
/// while the listening connection is down is lost. `version` is the one read before the org was.
pub(crate) async fn follow(
    followers: Followers,
    pool: sqlx::PgPool,
    mut version: i64,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut listener = whistle_store::listen::Listener::new(
        pool.clone(),
        &[whistle_store::org::CHANNEL],
        interval,
        "org imports",
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = listener.next() => {}
        }
        match reload(&followers, &pool, version).await {
            Ok(Some(loaded)) => version = loaded,
            Ok(None) => {}
            Err(e) => warn!(error = %e, "reloading the org failed; keeping the running one"),
        }
    }
}

async fn reload(followers: &Followers, pool: &sqlx::PgPool, running: i64) -> Result<Option<i64>> {
    let store = |e: whistle_store::Error| Error::Unavailable(format!("reading the org: {e}"));
    let latest = whistle_store::org::current_version(pool)
        .await
        .map_err(store)?;
    if latest <= running {
        return Ok(None);
    }
    if let Some(callout) = &followers.callout {
        let tree = whistle_store::org::load(pool).await.map_err(store)?;
        let org = whistle_domain::OrgIndex::build(tree)
            .map_err(|e| Error::Auth(format!("the org tree: {e}")))?;
        callout.replace(org);
    }
    followers.aggregates.reload_org(pool).await?;
    info!(previous = running, version = latest, "org version applied");
    Ok(Some(latest))
}
