//! The dispatch policy as versions (docs/policy.md, "Changing the policy"): a version is
//! proposed (validated, stored, diffed against the running one), approved by a second person or
//! rejected, and on approval every dispatch replica switches to it. Every version is kept
//! (`policy_versions`, whose triggers refuse rewriting history) and every step is on the audit log,
//! written in the step's transaction.
//!
//! The approval notifies [`CHANNEL`] on commit; replicas listen there and also poll
//! [`active`], so one that missed the notification switches on its next poll.

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, PgPool, Row as _};
use whistle_domain::policy::{Change, Policy, Source};

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// The PostgreSQL notification channel an approval notifies, with the approved version.
pub const CHANNEL: &str = "whistle_policy";

/// Serialises the steps (propose, decide, bootstrap) of all writers.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('whistle.policy_versions'))";

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Stored and waiting for a second person.
    Proposed,
    /// Running: the one version every replica applies.
    Approved,
    Rejected,
    /// Approved once, replaced by a later approval.
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Proposed => "proposed",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Superseded => "superseded",
        }
    }

    fn parse(text: &str) -> Result<State> {
        Ok(match text {
            "proposed" => State::Proposed,
            "approved" => State::Approved,
            "rejected" => State::Rejected,
            "superseded" => State::Superseded,
            other => {
                return Err(Error::Database(sqlx::Error::Decode(
                    format!("unknown policy version state {other:?}").into(),
                )))
            }
        })
    }
}

/// One stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub version: String,
    pub name: String,
    pub source: Source,
    pub sha256: String,
    pub note: String,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub state: State,
    /// The first version, stored by dispatch from its `--policy` with no one to approve it.
    pub bootstrap: bool,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
    pub superseded_at: Option<DateTime<Utc>>,
}

impl Version {
    /// The policy, validated again (it was when proposed; the checks may have grown since).
    pub fn policy(&self) -> std::result::Result<Policy, whistle_domain::policy::Error> {
        self.source.load()
    }

    /// What the audit log shows of a version: never its whole text, which `whistle policy show`
    /// prints from the table.
    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "state": self.state.as_str(),
            "sha256": self.sha256,
        })
    }
}

/// Why a step was refused: the request's fault, in terms of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Self {
        Refused::Store(Error::Database(error))
    }
}

/// The SHA-256 of a source: its text, then its base's name and text.
pub fn sha256(source: &Source) -> String {
    let mut hash = Sha256::new();
    hash.update(source.text.as_bytes());
    if let Some((name, text)) = &source.base {
        hash.update([0]);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

const COLUMNS: &str = "version, name, text, base_name, base_text, sha256, note, proposed_by,
    proposed_at, state, bootstrap, decided_by, decided_at, decision_note, superseded_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Version> {
    let base_name: Option<String> = row.try_get("base_name")?;
    let base_text: Option<String> = row.try_get("base_text")?;
    Ok(Version {
        version: row.try_get("version")?,
        name: row.try_get("name")?,
        source: Source {
            text: row.try_get("text")?,
            base: base_name.zip(base_text),
        },
        sha256: row.try_get("sha256")?,
        note: row.try_get("note")?,
        proposed_by: row.try_get("proposed_by")?,
        proposed_at: row.try_get("proposed_at")?,
        state: State::parse(row.try_get::<&str, _>("state")?)?,
        bootstrap: row.try_get("bootstrap")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        decision_note: row.try_get("decision_note")?,
        superseded_at: row.try_get("superseded_at")?,
    })
}

/// The approved (running) version, if any.
pub async fn active(conn: &mut PgConnection) -> Result<Option<Version>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policy_versions WHERE state = 'approved'"
    ))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The approved version's name and hash only: what a replica polls.
pub async fn active_hash(pool: &PgPool) -> Result<Option<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT version, sha256 FROM policy_versions WHERE state = 'approved'")
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn get(pool: &PgPool, version: &str) -> Result<Option<Version>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policy_versions WHERE version = $1"
    ))
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every version, oldest proposal first.
pub async fn list(pool: &PgPool) -> Result<Vec<Version>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policy_versions ORDER BY seq"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// A stored proposal and how it differs from the version running when it was proposed.
#[derive(Debug, Clone)]
pub struct Proposed {
    pub version: Version,
    /// The running version it was compared with; `None` when none runs yet.
    pub against: Option<String>,
    pub changes: Vec<Change>,
}

/// Stores `source` as a proposed version by `actor`, with `note` saying why. Refused, storing
/// nothing: a policy that fails validation (with the validator's message), a version that is
/// already stored (every version is kept; a new one needs its own `version`), one that changes
/// no figure of the running version, and one that drops a category incidents still open are filed
/// under (their later steps would find no figures).
pub async fn propose(
    pool: &PgPool,
    source: &Source,
    note: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Proposed, Refused> {
    let invalid = |message: String| Err(Refused::Invalid(message));
    let policy = match source.load() {
        Ok(policy) => policy,
        Err(e) => return invalid(format!("the policy is invalid: {e}")),
    };
    if note.trim().is_empty() {
        return invalid("a note is required: say why the policy changes (--note)".into());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK).execute(&mut *tx).await?;
    if let Some(existing) = get_in(&mut tx, policy.version()).await? {
        return invalid(format!(
            "version {:?} is already stored ({} by {} at {}); every version is kept, so give \
             this one a new `version`",
            existing.version,
            existing.state.as_str(),
            existing.proposed_by,
            existing.proposed_at.format("%F %T UTC"),
        ));
    }
    let running = active(&mut tx).await?;
    let changes = match &running {
        Some(running) => whistle_domain::policy::diff(&running.source, source)
            .map_err(|e| Refused::Invalid(format!("the running policy cannot be read: {e}")))?,
        None => Vec::new(),
    };
    if let Some(running) = &running {
        let figures = changes.iter().filter(|c| key(c) != "version").count();
        if figures == 0 {
            return invalid(format!(
                "version {:?} applies the same figures as the running {:?}; nothing to approve",
                policy.version(),
                running.version
            ));
        }
    }
    let orphaned: Vec<(String, i64)> = sqlx::query_as::<_, (String, i64)>(
        "SELECT category, count(*) FROM incidents
         WHERE status NOT IN ('closed', 'closed_unverified', 'duplicate')
         GROUP BY category ORDER BY category",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .filter(|(category, _)| policy.category(category).is_none())
    .collect();
    if !orphaned.is_empty() {
        let list: Vec<String> = orphaned
            .iter()
            .map(|(category, open)| format!("{category} ({open} open)"))
            .collect();
        return invalid(format!(
            "the policy drops categories open incidents are filed under: {}; keep them until \
             those incidents close",
            list.join(", ")
        ));
    }
    let version = Version {
        version: policy.version().to_owned(),
        name: policy.name().to_owned(),
        source: source.clone(),
        sha256: sha256(source),
        note: note.trim().to_owned(),
        proposed_by: actor.name.clone(),
        proposed_at: now,
        state: State::Proposed,
        bootstrap: false,
        decided_by: None,
        decided_at: None,
        decision_note: None,
        superseded_at: None,
    };
    insert(&mut tx, &version).await?;
    let entry = Entry {
        action: audit::action::POLICY_PROPOSE,
        target: version.version.clone(),
        area_code: String::new(),
        // The proposal did not exist before; the version it was compared with is in `against`.
        before: None,
        after: Some(serde_json::json!({
            "version": version.version,
            "state": "proposed",
            "sha256": version.sha256,
            "name": version.name,
            "note": version.note,
            "against": running.as_ref().map(|r| r.version.clone()),
            "changes": changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(Proposed {
        version,
        against: running.map(|r| r.version),
        changes,
    })
}

fn key(change: &Change) -> &str {
    match change {
        Change::Added { key, .. } | Change::Removed { key, .. } | Change::Changed { key, .. } => {
            key
        }
    }
}

/// A version read in a step's transaction. The step's advisory lock ([`LOCK`]) keeps other steps
/// out, so no row lock is taken (which would need the UPDATE right dispatch does not have).
async fn get_in(conn: &mut PgConnection, version: &str) -> Result<Option<Version>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policy_versions WHERE version = $1"
    ))
    .bind(version)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

async fn insert(conn: &mut PgConnection, version: &Version) -> Result<()> {
    sqlx::query(
        "INSERT INTO policy_versions (version, name, text, base_name, base_text, sha256, note,
             proposed_by, proposed_at, state, bootstrap, decided_by, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&version.version)
    .bind(&version.name)
    .bind(&version.source.text)
    .bind(version.source.base.as_ref().map(|b| &b.0))
    .bind(version.source.base.as_ref().map(|b| &b.1))
    .bind(&version.sha256)
    .bind(&version.note)
    .bind(&version.proposed_by)
    .bind(version.proposed_at)
    .bind(version.state.as_str())
    .bind(version.bootstrap)
    .bind(&version.decided_by)
    .bind(version.decided_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An operator's decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// A decided proposal, and for an approval the version it replaced.
#[derive(Debug, Clone)]
pub struct Decided {
    pub version: Version,
    pub replaced: Option<String>,
}

/// Approves or rejects the proposed `version`. An approval must come from someone other than the
/// proposer (a proposer may withdraw their own proposal by rejecting it); it supersedes the running
/// version and notifies [`CHANNEL`] on commit. Refused, changing nothing: an unknown version, one
/// already decided, an approval by the proposer, a text that no longer validates.
pub async fn decide(
    pool: &PgPool,
    version: &str,
    decision: Decision,
    note: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Decided, Refused> {
    let invalid = |message: String| Err(Refused::Invalid(message));
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK).execute(&mut *tx).await?;
    let Some(proposal) = get_in(&mut tx, version).await? else {
        return invalid(format!(
            "no policy version {version:?} (whistle policy list)"
        ));
    };
    if proposal.state != State::Proposed {
        let by = match (&proposal.decided_by, proposal.decided_at) {
            (Some(by), Some(at)) => format!(" by {by} at {}", at.format("%F %T UTC")),
            _ => String::new(),
        };
        return invalid(format!(
            "version {version:?} is not a proposal waiting for a decision: it was {}{by}",
            proposal.state.as_str()
        ));
    }
    let note = note.trim();
    let (action, replaced) = match decision {
        Decision::Approve => {
            if actor.name == proposal.proposed_by {
                return invalid(format!(
                    "version {version:?} was proposed by {}; another operator must approve it \
                     (every policy change takes two people)",
                    proposal.proposed_by
                ));
            }
            if let Err(e) = proposal.policy() {
                return invalid(format!(
                    "version {version:?} no longer passes validation: {e}"
                ));
            }
            let running = active(&mut tx).await?;
            if let Some(running) = &running {
                sqlx::query(
                    "UPDATE policy_versions SET state = 'superseded', superseded_at = $2
                     WHERE version = $1",
                )
                .bind(&running.version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE policy_versions
                 SET state = 'approved', decided_by = $2, decided_at = $3, decision_note = $4
                 WHERE version = $1",
            )
            .bind(version)
            .bind(&actor.name)
            .bind(now)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            (audit::action::POLICY_APPROVE, running)
        }
        Decision::Reject => {
            sqlx::query(
                "UPDATE policy_versions
                 SET state = 'rejected', decided_by = $2, decided_at = $3, decision_note = $4
                 WHERE version = $1",
            )
            .bind(version)
            .bind(&actor.name)
            .bind(now)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            (audit::action::POLICY_REJECT, None)
        }
    };
    let decided = get_in(&mut tx, version)
        .await?
        .expect("the version was just decided");
    let mut before = proposal.summary();
    let mut after = decided.summary();
    after["proposed_by"] = proposal.proposed_by.clone().into();
    after["note"] = note.into();
    if decision == Decision::Approve {
        before["running"] = replaced
            .as_ref()
            .map(|r| serde_json::Value::from(r.version.clone()))
            .unwrap_or_default();
        after["running"] = version.into();
    }
    let entry = Entry {
        action,
        target: version.to_owned(),
        area_code: String::new(),
        before: Some(before),
        after: Some(after),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(Decided {
        version: decided,
        replaced: replaced.map(|r| r.version),
    })
}

/// The running version, storing `source` as the first one (approved, `bootstrap`) when no version
/// runs yet: dispatch's `--policy` applies only to an installation that has none. Replicas
/// starting together store it once. Refused: a `source` that fails validation, and a version
/// already stored (say proposed, or rejected) while none runs, which an operator must settle.
pub async fn bootstrap(
    pool: &PgPool,
    source: &Source,
    origin: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Version, Refused> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK).execute(&mut *tx).await?;
    if let Some(running) = active(&mut tx).await? {
        return Ok(running);
    }
    let policy = source
        .load()
        .map_err(|e| Refused::Invalid(format!("the policy {origin} is invalid: {e}")))?;
    if let Some(existing) = get_in(&mut tx, policy.version()).await? {
        return Err(Refused::Invalid(format!(
            "no policy version is approved, and {origin}'s version {:?} is already stored as {}: \
             approve a version (whistle policy approve) or start with another policy",
            existing.version,
            existing.state.as_str()
        )));
    }
    let version = Version {
        version: policy.version().to_owned(),
        name: policy.name().to_owned(),
        source: source.clone(),
        sha256: sha256(source),
        note: format!("the first version, from --policy {origin}"),
        proposed_by: actor.name.clone(),
        proposed_at: now,
        state: State::Approved,
        bootstrap: true,
        decided_by: None,
        decided_at: None,
        decision_note: None,
        superseded_at: None,
    };
    insert(&mut tx, &version).await?;
    let entry = Entry {
        action: audit::action::POLICY_BOOTSTRAP,
        target: version.version.clone(),
        area_code: String::new(),
        before: None,
        after: Some(serde_json::json!({
            "version": version.version,
            "state": "approved",
            "sha256": version.sha256,
            "name": version.name,
            "source": origin,
        })),
    };
    audit::record(&mut tx, actor, now, &[entry]).await?;
    tx.commit().await?;
    Ok(version)
}

/// A running dispatch replica and the version it applies.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Replica {
    pub holder: String,
    pub version: String,
    pub loaded_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
}

/// Records that `holder` applies `version` (since `loaded_at`) and is alive at `now`; forgets
/// replicas not seen for an hour (killed without stopping).
pub async fn report_running(
    pool: &PgPool,
    holder: &str,
    version: &str,
    loaded_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "WITH forgotten AS (DELETE FROM policy_replicas
                            WHERE seen_at < $4 - interval '1 hour' AND holder <> $1)
         INSERT INTO policy_replicas (holder, version, loaded_at, seen_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (holder) DO UPDATE
         SET version = EXCLUDED.version, loaded_at = EXCLUDED.loaded_at, seen_at = EXCLUDED.seen_at",
    )
    .bind(holder)
    .bind(version)
    .bind(loaded_at)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets a replica that stops.
pub async fn report_stopped(pool: &PgPool, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM policy_replicas WHERE holder = $1")
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}

/// The replicas seen since `since`, by holder.
pub async fn replicas(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<Replica>> {
    Ok(sqlx::query_as(
        "SELECT holder, version, loaded_at, seen_at FROM policy_replicas
         WHERE seen_at >= $1 ORDER BY holder",
    )
    .bind(since)
    .fetch_all(pool)
    .await?)
}
