//! `GetCatalogue` and `ListDepartments`: what a report may be filed under, from the policy this
//! service runs, and the departments a task may be reassigned to, from `departments`.

use sqlx::{PgPool, Row};
use whistle_domain::{
    policy::{Policy, Term},
    AreaCode, Level,
};
use whistle_proto::v1;

use crate::{area, convert, Result};

/// The policy this service answers with: the approved version of `policy_versions`, followed
/// (see [`follow`]) so the catalogue and the scoreboard's weights change with dispatch's.
#[derive(Debug, Clone)]
pub(crate) struct RunningPolicy(std::sync::Arc<std::sync::RwLock<RunningVersion>>);

#[derive(Debug)]
struct RunningVersion {
    policy: std::sync::Arc<Policy>,
    /// `policy_versions.sha256` of it; `None` for the `--policy` of a database without versions.
    sha256: Option<String>,
}

impl RunningPolicy {
    pub fn new(policy: Policy, sha256: Option<String>) -> RunningPolicy {
        RunningPolicy(std::sync::Arc::new(std::sync::RwLock::new(
            RunningVersion {
                policy: std::sync::Arc::new(policy),
                sha256,
            },
        )))
    }

    pub fn get(&self) -> std::sync::Arc<Policy> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .policy
            .clone()
    }

    fn sha256(&self) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sha256
            .clone()
    }

    fn replace(&self, policy: Policy, sha256: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = RunningVersion {
            policy: std::sync::Arc::new(policy),
            sha256: Some(sha256),
        };
    }
}

/// The approved policy version, if the database has the table and one is approved.
pub(crate) async fn approved(
    pool: &PgPool,
) -> std::result::Result<Option<whistle_store::policies::Version>, whistle_store::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public.policy_versions') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(None);
    }
    let mut conn = pool.acquire().await?;
    whistle_store::policies::active(&mut conn).await
}

/// Polls the approved version every `interval` and swaps it in when it changes, until `shutdown`.
/// (Polling only: the service's sessions are read-only.)
pub(crate) async fn follow(
    running: RunningPolicy,
    pool: PgPool,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let approved = match whistle_store::policies::active_hash(&pool).await {
            Ok(Some((_, sha256))) if Some(&sha256) == running.sha256().as_ref() => continue,
            Ok(None) => continue,
            Ok(Some(_)) => approved(&pool).await,
            Err(e) => Err(e),
        };
        match approved {
            Ok(Some(version)) => match version.policy() {
                Ok(policy) => {
                    tracing::info!(version = %version.version, "policy version applied");
                    running.replace(policy, version.sha256);
                }
                Err(e) => {
                    tracing::error!(version = %version.version, error = %e, "the approved policy version is invalid; keeping the running one")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checking the approved policy version failed")
            }
        }
    }
}

/// The policy's groups and categories in the file's order; a group without categories is left out
/// (the form would offer an empty choice).
pub(crate) fn catalogue(policy: &Policy) -> v1::Catalogue {
    let groups = policy
        .groups()
        .iter()
        .map(|group| v1::CatalogueGroup {
            code: group.code.clone(),
            name_zh: group.name_zh.clone(),
            name_en: group.name_en.clone(),
            categories: policy
                .categories()
                .filter(|c| c.group == group.code)
                .map(|c| v1::CatalogueCategory {
                    code: c.code.to_string(),
                    name_zh: c.name_zh.clone(),
                    name_en: c.name_en.clone(),
                    sla: c.sla.as_str().to_owned(),
                    sla_name_zh: policy.sla(c.sla).name_zh.clone(),
                    resolve_within: Some(convert::duration(policy.resolve_deadline(c).at_least())),
                    resolve_working_days: match policy.resolve_deadline(c) {
                        Term::WorkingDays(days) => days,
                        Term::Elapsed(_) => 0,
                    },
                    photo_required: c.photo_required,
                    after_photo_required: c.after_photo_required,
                })
                .collect(),
        })
        .filter(|g| !g.categories.is_empty())
        .collect();
    v1::Catalogue {
        policy_version: policy.version().to_owned(),
        policy_name: policy.name().to_owned(),
        groups,
    }
}

/// The areas whose departments serve `area`: its district and the city (dispatch's
/// `check_serves` accepts a department whose area contains the incident's).
fn serving_areas(area: &AreaCode) -> Vec<String> {
    let code = area.as_str();
    let city = format!("{}00", &code[..4]);
    if area.level() == Level::City {
        vec![city]
    } else {
        vec![code[..6].to_owned(), city]
    }
}

/// The departments serving `area_code` (every department when empty): the district's first, then
/// the city's, each sorted by name.
pub(crate) async fn departments(pool: &PgPool, area_code: &str) -> Result<Vec<v1::Department>> {
    let areas = area::parse_optional("area_code", area_code)?.map(|a| serving_areas(&a));
    let rows = sqlx::query(
        "SELECT code, name, kind, area_code FROM departments
         WHERE $1::text[] IS NULL OR area_code = ANY($1)
         ORDER BY area_code LIKE '%00', area_code, name, code",
    )
    .bind(areas)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(v1::Department {
                code: row.try_get("code")?,
                name: row.try_get("name")?,
                kind: row.try_get("kind")?,
                area_code: row.try_get("area_code")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_served_by_its_district_and_the_city() {
        let grid: AreaCode = "150602001001001".parse().unwrap();
        assert_eq!(serving_areas(&grid), ["150602", "150600"]);
        let city: AreaCode = "150600".parse().unwrap();
        assert_eq!(serving_areas(&city), ["150600"]);
    }

    #[test]
    fn the_catalogue_is_the_policys_in_its_order() {
        let policy = whistle_domain::policy::builtin("ordos").unwrap();
        let catalogue = catalogue(&policy);
        assert_eq!(catalogue.policy_version, policy.version());
        let codes: Vec<&str> = catalogue
            .groups
            .iter()
            .flat_map(|g| g.categories.iter().map(|c| c.code.as_str()))
            .collect();
        let expected: Vec<String> = policy.categories().map(|c| c.code.to_string()).collect();
        let mut sorted_expected = expected.clone();
        sorted_expected.sort();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(sorted, sorted_expected, "every category once");
        let heating = catalogue
            .groups
            .iter()
            .flat_map(|g| &g.categories)
            .find(|c| c.code == "heating.no_heat")
            .unwrap();
        assert_eq!(heating.sla, "utilities");
        assert_eq!(heating.resolve_within.unwrap().seconds, 24 * 3600);
        assert_eq!(heating.resolve_working_days, 0, "24 hours on the clock");
        let petition = catalogue
            .groups
            .iter()
            .flat_map(|g| &g.categories)
            .find(|c| c.code == "petition.letters")
            .unwrap();
        assert_eq!(
            (
                petition.resolve_working_days,
                petition.resolve_within.unwrap().seconds
            ),
            (15, 15 * 86_400)
        );
    }
}
