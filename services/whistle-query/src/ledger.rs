//! `ListLedger`: the long-term ledger (挂账) of an area — open incidents proposed for it or
//! entered in it, the soonest review first, each with its proposal or entry.

use sqlx::{PgPool, Row};
use whistle_domain::{incident::Ledger, policy::Policy, AreaCode};
use whistle_proto::v1;

use crate::{
    area::GridRange,
    incidents::{summary, SUMMARY_COLUMNS},
    overdue::{self, OPEN_INCIDENT},
    Error, Result,
};

/// The cases a request asks for: `page_size`, or the most when 0 (as `ListOverdue`).
pub(crate) fn limit(page_size: u32) -> Result<u32> {
    overdue::limit(page_size)
}

pub(crate) async fn list(
    pool: &PgPool,
    policy: &Policy,
    area: &AreaCode,
    limit: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<v1::ListLedgerResponse> {
    let range = GridRange::of(area);
    // The partial index `incidents_ledger` holds only cases in the ledger or proposed for it, in
    // review order, so a call reads the area's ledger and nothing else.
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, i.state->'ledger' AS ledger
         FROM incidents i
         WHERE i.ledger_state IS NOT NULL AND i.status IN {OPEN_INCIDENT}
           AND i.grid_code ~>=~ $1 AND i.grid_code ~<~ $2
         ORDER BY i.ledger_review_at, i.id
         LIMIT $3"
    ))
    .bind(&range.low)
    .bind(&range.high)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(|row| {
            let incident = summary(row, policy, now)?;
            let json: serde_json::Value = row.try_get("ledger")?;
            let ledger: Ledger = serde_json::from_value(json).map_err(|e| {
                Error::Corrupt(format!("incident {} ledger: {e}", incident.incident_id))
            })?;
            Ok(v1::LedgerItem {
                incident: Some(incident),
                ledger: Some(whistle_wire::convert::ledger_to_proto(&ledger)),
            })
        })
        .collect::<Result<_>>()?;
    Ok(v1::ListLedgerResponse { items })
}
