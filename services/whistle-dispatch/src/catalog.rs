//! The org tree, policy and holiday calendar held in memory, following the approved policy
//! version and the org's imported versions.

use std::{
    path::Path,
    sync::{Arc, RwLock},
};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whistle_domain::{calendar::Calendar, policy::Policy, OrgIndex};

use crate::{hub::Wakeups, Error, Shared};

/// Records on the audit log (`policy.load`) that this replica runs `policy`, read from `source`,
/// when it is another version than the one last recorded: the first start, a policy file edited
/// with a new version, a replica started with another policy. The replicas that load the same
/// version after the first record nothing (one entry per version change, not per replica).
pub(crate) async fn record_policy(
    pool: &sqlx::PgPool,
    policy: &Policy,
    source: &str,
) -> Result<(), whistle_store::Error> {
    use whistle_store::audit;
    let mut tx = pool.begin().await?;
    // Replicas loading the same edit at once: the second finds the first's entry.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('whistle.audit.policy.load'))")
        .execute(&mut *tx)
        .await?;
    let last: Option<String> = sqlx::query_scalar(
        "SELECT after->>'version' FROM audit_log WHERE action = $1 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(audit::action::POLICY_LOAD)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if last.as_deref() == Some(policy.version()) {
        return Ok(());
    }
    let entry = audit::Entry {
        action: audit::action::POLICY_LOAD,
        target: policy.name().to_owned(),
        area_code: String::new(),
        before: last.map(|version| serde_json::json!({ "version": version })),
        after: Some(serde_json::json!({
            "version": policy.version(),
            "name": policy.name(),
            "source": source,
        })),
    };
    let actor = audit::Actor::service("whistle-dispatch");
    audit::record(&mut tx, &actor, chrono::Utc::now(), &[entry]).await?;
    tx.commit().await?;
    Ok(())
}

/// The org tree, policy and calendar, read on every batch and swapped whole on reload.
#[derive(Debug)]
pub struct Catalog {
    pub org: OrgIndex,
    pub policy: Policy,
    /// The official holiday calendar (the years in `policy/calendar/`) for working-day deadlines.
    pub calendar: Calendar,
}

impl Catalog {
    /// The org tree and policy with the shipped holiday calendar.
    pub fn new(org: OrgIndex, policy: Policy) -> Catalog {
        Catalog {
            org,
            policy,
            calendar: Calendar::builtin(),
        }
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new(
            OrgIndex::default(),
            whistle_domain::policy::builtin("ordos").expect("the builtin policy loads"),
        )
    }
}

/// Loads every `cn-*.toml` of `dir` as a holiday calendar (see `whistle_domain::calendar`).
pub(crate) fn load_calendar(dir: &Path) -> Result<Calendar, Error> {
    let fail = |message: String| Error::Calendar {
        dir: dir.to_owned(),
        message,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| fail(e.to_string()))? {
        let path = entry.map_err(|e| fail(e.to_string()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("cn-") && name.ends_with(".toml") {
            let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("{name}: {e}")))?;
            files.push((name.to_owned(), text));
        }
    }
    if files.is_empty() {
        return Err(fail("no cn-YEAR.toml file".into()));
    }
    Calendar::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| fail(e.to_string()))
}

#[derive(Debug, Default)]
pub(crate) struct CatalogCell(RwLock<Arc<Catalog>>);

impl CatalogCell {
    pub fn new(catalog: Catalog) -> CatalogCell {
        CatalogCell(RwLock::new(Arc::new(catalog)))
    }

    pub fn load(&self) -> Arc<Catalog> {
        self.0
            .read()
            .expect("catalog lock is never poisoned")
            .clone()
    }

    fn replace_org(&self, org: OrgIndex) {
        let mut cell = self.0.write().expect("catalog lock is never poisoned");
        *cell = Arc::new(Catalog {
            org,
            policy: cell.policy.clone(),
            calendar: cell.calendar.clone(),
        });
    }

    fn replace_policy(&self, policy: Policy) {
        let mut cell = self.0.write().expect("catalog lock is never poisoned");
        *cell = Arc::new(Catalog {
            org: cell.org.clone(),
            policy,
            calendar: cell.calendar.clone(),
        });
    }
}

/// Follows the approved policy version (docs/policy.md, "Changing the policy"): woken through
/// the hub by the notification an approval sends on commit ([`whistle_store::policies::CHANNEL`]),
/// and polling every `policy_poll_interval` besides (a notification sent while the listening
/// connection was down is lost). A new version is recorded
/// on the audit log (`policy.load`, once per version whichever replica is first), then swapped in
/// whole: the batches, commands and timers that start after it apply it. The replica reports the
/// version it runs in `policy_replicas` at every poll, and removes itself at shutdown.
pub(crate) async fn follow_policy(
    shared: Arc<Shared>,
    holder: String,
    mut wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    use whistle_store::policies;
    let mut loaded_at = shared.clock.now();
    loop {
        match apply_approved(&shared).await {
            Ok(true) => loaded_at = shared.clock.now(),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "checking the approved policy version failed; keeping the running policy")
            }
        }
        let version = shared.catalog.load().policy.version().to_owned();
        if let Err(e) = policies::report_running(
            &shared.pool,
            &holder,
            &version,
            loaded_at,
            shared.clock.now(),
        )
        .await
        {
            warn!(error = %e, "reporting the running policy version failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(shared.options.policy_poll_interval) => {}
            _ = wakeups.wait() => {}
        }
    }
    if let Err(e) = policies::report_stopped(&shared.pool, &holder).await {
        warn!(error = %e, "removing this replica from policy_replicas failed");
    }
}

/// Follows the org (docs/operations.md, "The city's organisation" and "People come and go"): woken
/// through the hub by the notification an applied import (`whistle_org`) or a person's
/// onboarding, change or offboarding (`whistle_people`) sends on commit. The org is read whole, indexed and swapped in:
/// the batches, commands and timers that start after it see it (a newcomer may act at once, a
/// leaver is refused at once), the ones under way finish on the org they began with. A
/// notification sent while the listening connection was down is lost, so besides it polls the
/// import version every `policy_poll_interval`, and reads the whole org again after every
/// (re)connection and every `people_poll_interval`. `version` is the import the running org was
/// read at (read before the org, so an import between the two is loaded again, never missed).
pub(crate) async fn follow_org(
    shared: Arc<Shared>,
    mut version: i64,
    mut wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    let mut forced = false;
    let mut read_whole = tokio::time::Instant::now();
    loop {
        let force = forced || read_whole.elapsed() >= shared.options.people_poll_interval;
        match reload_org(&shared, version, force).await {
            Ok(Some(loaded)) => {
                version = loaded;
                read_whole = tokio::time::Instant::now();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the org again failed; keeping the running org")
            }
        }
        // A change notified, or a (re)connection after which one may have been missed.
        forced = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(shared.options.policy_poll_interval) => false,
            _ = wakeups.wait() => true,
        };
    }
}

/// Swaps in the org if a version newer than `running` was imported, or whatever the version when
/// `force`d (people change without a new import version); returns the version loaded.
async fn reload_org(shared: &Shared, running: i64, force: bool) -> Result<Option<i64>, Error> {
    let latest = whistle_store::org::current_version(&shared.pool).await?;
    if latest <= running && !force {
        return Ok(None);
    }
    let org = OrgIndex::build(whistle_store::org::load(&shared.pool).await?)?;
    if latest != running {
        info!(
            previous = running,
            version = latest,
            units = org.units().count(),
            people = org.people().count(),
            "org version applied"
        );
    } else {
        tracing::debug!(people = org.people().count(), "org read again");
    }
    shared.catalog.replace_org(org);
    Ok(Some(latest))
}

/// Swaps in the approved version if it is not the running one; returns whether it did. A version
/// that no longer validates (the checks grew since it was approved) is refused with a log line and
/// the running policy stays.
async fn apply_approved(shared: &Shared) -> Result<bool, whistle_store::Error> {
    use whistle_store::policies;
    let Some((version, sha256)) = policies::active_hash(&shared.pool).await? else {
        return Ok(false);
    };
    if *shared
        .policy_sha256
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        == sha256
    {
        return Ok(false);
    }
    let mut conn = shared.pool.acquire().await?;
    let Some(approved) = policies::active(&mut conn).await? else {
        return Ok(false);
    };
    drop(conn);
    let policy = match approved.policy() {
        Ok(policy) => policy,
        Err(e) => {
            tracing::error!(%version, error = %e, "the approved policy version is invalid; keeping the running policy");
            return Ok(false);
        }
    };
    // On the audit log before it runs; if that fails, the next poll tries again.
    record_policy(&shared.pool, &policy, "policy_versions").await?;
    let previous = shared.catalog.load().policy.version().to_owned();
    shared.catalog.replace_policy(policy);
    *shared
        .policy_sha256
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = approved.sha256;
    info!(%previous, version = %approved.version, "policy version applied");
    Ok(true)
}
