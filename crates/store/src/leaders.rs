//! 领导结对联系 in PostgreSQL: the pairings of leaders with streets and communities
//! (`leader_pairings`), written by `whistle seed` and `whistle leaders`, each checked against the
//! org tree (`whistle_domain::leaders::check`) and on the audit log; read by dispatch (who is
//! told of an area's escalated, overdue and supervised incidents; where a leader may endorse a
//! 督办) and by the query service (a leader's view).

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use whistle_domain::{
    leaders::{self, Pairing},
    AreaCode, OrgDataset, OrgIndex, PersonId,
};

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// The audit actions of pairings.
pub mod action {
    pub const PAIR: &str = "leaders.pair";
    pub const UNPAIR: &str = "leaders.unpair";
}

/// Writes the leaders (as people, like `org::seed`) and their pairings, in one transaction;
/// pairings already there are kept. Every pairing is checked against the org with the leaders in
/// it first, so a bad one writes nothing. Returns how many pairings were new.
pub async fn seed(
    pool: &PgPool,
    leaders: &whistle_domain::ordos::Leaders,
    actor: &Actor,
) -> Result<u64> {
    crate::org::seed(
        pool,
        &OrgDataset {
            units: Vec::new(),
            departments: Vec::new(),
            people: leaders.people.clone(),
        },
        actor,
    )
    .await?;
    pair(pool, &leaders.pairings, actor).await
}

/// Pairs leaders with areas after checking each against the org as stored; pairings already
/// there are kept. Returns how many were new.
pub async fn pair(pool: &PgPool, pairings: &[Pairing], actor: &Actor) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let org = OrgIndex::build(crate::org::load_from(&mut tx).await?)
        .map_err(|e| Error::Corrupt(format!("the stored org: {e}")))?;
    for pairing in pairings {
        leaders::check(&org, pairing).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let added: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO leader_pairings (leader_id, area_code)
         SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT DO NOTHING
         RETURNING leader_id, area_code",
    )
    .bind(
        pairings
            .iter()
            .map(|p| p.leader.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(
        pairings
            .iter()
            .map(|p| p.area.to_string())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let entries: Vec<Entry> = added
        .iter()
        .map(|(leader, area)| Entry {
            action: action::PAIR,
            target: leader.clone(),
            area_code: area.clone(),
            before: None,
            after: Some(serde_json::json!({ "leader_id": leader, "area_code": area })),
        })
        .collect();
    audit::record(&mut tx, actor, Utc::now(), &entries).await?;
    // Dispatch reads the org again on this (the leaders seeded with the pairings are people).
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::people::CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(added.len() as u64)
}

/// Ends a pairing; false if there was none.
pub async fn unpair(pool: &PgPool, pairing: &Pairing, actor: &Actor) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query("DELETE FROM leader_pairings WHERE leader_id = $1 AND area_code = $2")
        .bind(pairing.leader.as_str())
        .bind(pairing.area.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if gone {
        let entry = Entry {
            action: action::UNPAIR,
            target: pairing.leader.to_string(),
            area_code: pairing.area.to_string(),
            before: Some(serde_json::json!({
                "leader_id": pairing.leader.as_str(),
                "area_code": pairing.area.as_str(),
            })),
            after: None,
        };
        audit::record(&mut tx, actor, Utc::now(), &[entry]).await?;
    }
    tx.commit().await?;
    Ok(gone)
}

/// Every pairing, or one leader's, in (leader, area) order.
pub async fn list(pool: &PgPool, leader: Option<&PersonId>) -> Result<Vec<Pairing>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT leader_id, area_code FROM leader_pairings
         WHERE $1::text IS NULL OR leader_id = $1 ORDER BY leader_id, area_code",
    )
    .bind(leader.map(PersonId::as_str))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(parse).collect()
}

/// The areas a leader who has not left is paired with (none for anyone else), in code order.
pub async fn areas_of(conn: &mut PgConnection, leader: &str) -> Result<Vec<AreaCode>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT lp.area_code FROM leader_pairings lp JOIN people p ON p.id = lp.leader_id
         WHERE lp.leader_id = $1 AND p.role = 'leader' AND p.left_at IS NULL
         ORDER BY lp.area_code",
    )
    .bind(leader)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|a| {
            a.parse()
                .map_err(|e| Error::Corrupt(format!("leader_pairings.area_code: {e}")))
        })
        .collect()
}

fn parse((leader, area): (String, String)) -> Result<Pairing> {
    Ok(Pairing {
        leader: leader
            .parse()
            .map_err(|e| Error::Corrupt(format!("leader_pairings.leader_id: {e}")))?,
        area: area
            .parse()
            .map_err(|e| Error::Corrupt(format!("leader_pairings.area_code: {e}")))?,
    })
}
