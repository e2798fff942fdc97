//! Reading and clearing the transactional outbox.
//!
//! **Invariant:** one relay at a time publishes (an advisory lock held for the transaction), in
//! `id` order, so the events of one incident — whose rows are written in commit order because
//! each transition locks the incident — are published in that order.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::Result;

/// Key of the advisory lock that elects the relay among dispatch replicas.
const RELAY_LOCK: i64 = 0x5748_4953_544c_4531; // "WHISTLE1"

#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub id: i64,
    pub event_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// A claim on the oldest pending events. Publish them, then [`Claim::complete`]; dropping the
/// claim instead leaves them pending for the next round.
pub struct Claim {
    tx: Transaction<'static, Postgres>,
    pub events: Vec<PendingEvent>,
}

/// Claims up to `limit` pending events, or `None` when another replica's relay holds the lock.
pub async fn claim(pool: &PgPool, limit: i64) -> Result<Option<Claim>> {
    let mut tx = pool.begin().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !leader {
        return Ok(None);
    }
    crate::cache_plans(&mut tx).await?;
    let events = sqlx::query_as::<_, (i64, Uuid, String, Vec<u8>)>(
        "SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(id, event_id, subject, payload)| PendingEvent {
        id,
        event_id,
        subject,
        payload,
    })
    .collect();
    Ok(Some(Claim { tx, events }))
}

impl Claim {
    /// Deletes the published events and releases the lock.
    pub async fn complete(mut self) -> Result<()> {
        let ids: Vec<i64> = self.events.iter().map(|e| e.id).collect();
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Number of events not yet published.
pub async fn pending(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await?)
}
