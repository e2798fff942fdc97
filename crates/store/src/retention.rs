//! Residents' contacts erased when their time is up or when the resident asks (docs/privacy.md).
//!
//! A contact goes with its incident's history kept: the incident, its reports, timeline and rates
//! stay as they were, and a `privacy.erased` entry on the timeline says what went, when and why.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    contacts::{Keyring, StoredContact},
    timeline::TimelineRows,
    Error, Result,
};

/// The timeline entry of an erasure.
pub const ERASED: &str = "privacy.erased";

/// Incidents holding contacts that settled (closed, closed unverified, or merged as a duplicate)
/// before `settled_before`, up to `limit`.
pub async fn settled_with_contacts(
    pool: &PgPool,
    settled_before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT c.incident_id
         FROM report_contacts c JOIN incidents i ON i.id = c.incident_id
         WHERE i.status IN ('closed', 'closed_unverified', 'duplicate')
           AND coalesce(i.closed_at, i.updated_at) < $1
         LIMIT $2",
    )
    .bind(settled_before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// Up to `limit` contacts after `after` in report id order.
async fn page(pool: &PgPool, after: &str, limit: u32) -> Result<Vec<StoredContact>> {
    Ok(sqlx::query_as(
        "SELECT report_id, incident_id, key_id, nonce, ciphertext, masked FROM report_contacts
         WHERE report_id > $1 ORDER BY report_id LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// A phone number's digits, without China's country code: what two spellings of one number
/// share (`138 1234 8000`, `+86-13812348000`).
pub fn phone_digits(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("86") {
        Some(national) if national.len() == 11 => national.to_owned(),
        _ => digits,
    }
}

/// The contacts holding `phone` (a resident's request): (report id, the contact as stored).
/// The contacts are sealed, so each is opened to compare; `progress` hears (compared, found)
/// every 100,000 and at the end.
pub async fn holding(
    pool: &PgPool,
    keyring: &Keyring,
    phone: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(String, String)>> {
    const PAGE: u32 = 2_000;
    let wanted = phone_digits(phone);
    if wanted.len() < 5 {
        return Err(Error::Invalid(format!(
            "phone {phone:?} has too few digits to find a resident by"
        )));
    }
    let (mut after, mut read, mut found) = (String::new(), 0usize, Vec::new());
    loop {
        let page = page(pool, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.report_id.clone();
        for contact in &page {
            let opened = contact.open(keyring)?;
            if phone_digits(&opened) == wanted {
                found.push((contact.report_id.clone(), opened));
            }
        }
        read += page.len();
        if read % 100_000 < PAGE as usize {
            progress(read, found.len());
        }
    }
    progress(read, found.len());
    Ok(found)
}

/// What an erasure covers: every contact of `incidents`, or only those of `reports`.
pub enum Scope<'a> {
    Incidents(&'a [Uuid]),
    Reports(&'a [String]),
}

/// Erases the contacts in `scope`, each incident that lost any getting a `privacy.erased` entry
/// on its timeline and a `contacts.erase` entry on the audit log (saying `note` and how many);
/// returns (incidents, contacts). For [`Scope::Incidents`] (the retention job) an incident
/// another transaction holds is skipped this time; [`Scope::Reports`] (a resident's request)
/// waits for it. Runs twice safely: an erased contact is not there to erase again, and an
/// incident with nothing erased gets no entry.
pub async fn erase(
    pool: &PgPool,
    scope: Scope<'_>,
    actor: &Actor,
    note: &str,
    at: DateTime<Utc>,
) -> Result<(usize, usize)> {
    if matches!(scope, Scope::Reports(ids) if ids.is_empty()) {
        return Ok((0, 0));
    }
    let mut tx = pool.begin().await?;
    // The incident's lock first, as every timeline writer takes it.
    let (incidents, reports): (Vec<Uuid>, Vec<String>) = match scope {
        Scope::Incidents(ids) => (ids.to_vec(), Vec::new()),
        Scope::Reports(ids) => (
            sqlx::query_scalar(
                "SELECT DISTINCT incident_id FROM report_contacts WHERE report_id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?,
            ids.to_vec(),
        ),
    };
    // The job skips an incident another transaction holds (the next pass takes it); a
    // resident's request waits for it.
    let lock = if reports.is_empty() {
        "FOR UPDATE SKIP LOCKED"
    } else {
        "FOR UPDATE"
    };
    let locked: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM incidents WHERE id = ANY($1) ORDER BY id {lock}"
    ))
    .bind(&incidents)
    .fetch_all(&mut *tx)
    .await?;
    let erased: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM report_contacts
             WHERE incident_id = ANY($1) AND (cardinality($2::text[]) = 0 OR report_id = ANY($2))
             RETURNING incident_id)
         SELECT g.incident_id, i.grid_code, count(*)
         FROM gone g JOIN incidents i ON i.id = g.incident_id
         GROUP BY g.incident_id, i.grid_code ORDER BY g.incident_id",
    )
    .bind(&locked)
    .bind(&reports)
    .fetch_all(&mut *tx)
    .await?;
    // On the timeline a person is named; a service acting on its own is the system.
    let by = if actor.door == "cli" {
        actor.name.as_str()
    } else {
        "system"
    };
    let mut rows = TimelineRows::default();
    let mut entries = Vec::with_capacity(erased.len());
    for (incident, grid, count) in &erased {
        rows.push(
            *incident,
            ERASED,
            by,
            at,
            format!("{note}：删除居民联系方式 {count} 条"),
            None,
        );
        entries.push(audit::Entry {
            action: audit::action::CONTACTS_ERASE,
            target: incident.to_string(),
            area_code: grid.clone(),
            before: Some(serde_json::json!({ "contacts": count })),
            after: Some(serde_json::json!({ "contacts": 0, "why": note })),
        });
    }
    rows.append(&mut tx).await?;
    audit::record(&mut tx, actor, at, &entries).await?;
    tx.commit().await?;
    Ok((
        erased.len(),
        erased.iter().map(|(_, _, n)| *n as usize).sum(),
    ))
}

/// Removes up to `limit` rejected reports received before `received_before` (their contacts
/// are masked, but a report is still personal data), with one `rejected.erase` entry on the
/// audit log saying how many and `note`; returns how many. Replicas may run it at once: each
/// takes rows the others do not hold, and records only its own.
pub async fn remove_rejected(
    pool: &PgPool,
    received_before: DateTime<Utc>,
    limit: u32,
    actor: &Actor,
    note: &str,
    at: DateTime<Utc>,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let removed = sqlx::query(
        "DELETE FROM rejected_reports WHERE source_key IN (
             SELECT source_key FROM rejected_reports WHERE received_at < $1
             ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(received_before)
    .bind(i64::from(limit))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed > 0 {
        let entry = audit::Entry {
            action: audit::action::REJECTED_ERASE,
            target: "rejected_reports".to_owned(),
            area_code: String::new(),
            before: Some(serde_json::json!({
                "rows": removed,
                "received_before": received_before,
            })),
            after: Some(serde_json::json!({ "rows": 0, "why": note })),
        };
        audit::record(&mut tx, actor, at, &[entry]).await?;
    }
    tx.commit().await?;
    Ok(removed)
}

/// A report whose contact a resident asked about, as their export lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContactCase {
    pub report_id: String,
    pub incident_id: Uuid,
    pub title: String,
    pub status: String,
    pub grid_code: String,
    pub received_at: DateTime<Utc>,
}

/// The reports and incidents behind `report_ids`, oldest first.
pub async fn cases(pool: &PgPool, report_ids: &[String]) -> Result<Vec<ContactCase>> {
    Ok(sqlx::query_as(
        "SELECT r.report_id, r.incident_id, i.title, i.status, r.grid_code, r.received_at
         FROM reports r JOIN incidents i ON i.id = r.incident_id
         WHERE r.report_id = ANY($1) ORDER BY r.received_at, r.report_id",
    )
    .bind(report_ids)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_spelled_many_ways_is_one_number() {
        for spelled in [
            "13812348000",
            "138 1234 8000",
            "+86 138-1234-8000",
            "8613812348000",
        ] {
            assert_eq!(phone_digits(spelled), "13812348000", "{spelled}");
        }
        assert_eq!(phone_digits("0477-8581234"), "04778581234");
    }
}
