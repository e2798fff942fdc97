//! The org tree, policy and holiday calendar held in memory, and the reload of a policy file.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use tokio_util::sync::CancellationToken;
use tracing::info;
use whistle_domain::{calendar::Calendar, policy::Policy, OrgIndex};

use crate::{Error, Shared};

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

    fn replace_policy(&self, policy: Policy) {
        let mut cell = self.0.write().expect("catalog lock is never poisoned");
        *cell = Arc::new(Catalog {
            org: cell.org.clone(),
            policy,
            calendar: cell.calendar.clone(),
        });
    }
}

/// Reloads a policy file when it changes: a valid new policy applies to incidents opened from
/// then on; an invalid one is refused with a log line and the running policy stays.
pub(crate) async fn watch_policy(shared: Arc<Shared>, path: PathBuf, shutdown: CancellationToken) {
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.options.policy_poll_interval) => {}
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match whistle_wire::policy::load(&path.to_string_lossy()) {
            Ok(policy) => {
                // On the audit log before it runs; if that fails, the next poll tries again.
                if let Err(e) =
                    record_policy(&shared.pool, &policy, &path.display().to_string()).await
                {
                    tracing::error!(error = %e, "the new policy could not be recorded on the audit log; keeping the running policy for now");
                    seen = None;
                    continue;
                }
                info!(version = %policy.version(), path = %path.display(), "policy reloaded");
                shared.catalog.replace_policy(policy);
            }
            Err(e) => {
                tracing::error!(error = %whistle_wire::chain(&e), "policy file changed but is invalid; keeping the running policy")
            }
        }
    }
}
