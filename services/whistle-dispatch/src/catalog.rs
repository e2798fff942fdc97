//! The org tree and policy held in memory, and the reload of a policy file.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use tokio_util::sync::CancellationToken;
use tracing::info;
use whistle_domain::{policy::Policy, OrgIndex};

use crate::Shared;

/// The org tree and policy, read on every batch and swapped whole on reload.
#[derive(Debug)]
pub struct Catalog {
    pub org: OrgIndex,
    pub policy: Policy,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            org: OrgIndex::default(),
            policy: whistle_domain::policy::builtin("ordos").expect("the builtin policy loads"),
        }
    }
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
        let org = cell.org.clone();
        *cell = Arc::new(Catalog { org, policy });
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
                info!(version = %policy.version(), path = %path.display(), "policy reloaded");
                shared.catalog.replace_policy(policy);
            }
            Err(e) => {
                tracing::error!(error = %whistle_wire::chain(&e), "policy file changed but is invalid; keeping the running policy")
            }
        }
    }
}
