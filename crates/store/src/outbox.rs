//! The transactional outbox: writing events in the transaction that causes them, then reading and
//! clearing them as the relay publishes.
//!
//! **Invariant:** one relay at a time publishes (an advisory lock held for the transaction), in
//! `id` order, so the events of one incident — whose rows are written in commit order because
//! each transition locks the incident — are published in that order.

use std::sync::LazyLock;

use sqlx::{
    postgres::PgArguments, query::Query, Connection as _, PgConnection, PgPool, Postgres,
    Transaction,
};
use uuid::Uuid;

use crate::Result;

/// Key of the advisory lock that elects the relay among dispatch replicas.
const RELAY_LOCK: i64 = 0x5748_4953_544c_4531; // "WHISTLE1"

/// An event to publish after commit, written to the outbox in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// `(columns) SELECT …` of events, for an `INSERT INTO outbox`, with their three arrays as
/// parameters `$first`…`$first+2` (bound in that order by [`bind`]).
pub(crate) fn select(first: usize) -> String {
    let [ids, subjects, payloads] = std::array::from_fn(|k| first + k);
    format!(
        "(event_id, subject, payload)
         SELECT * FROM UNNEST(${ids}::uuid[], ${subjects}::text[], ${payloads}::bytea[])"
    )
}

/// Binds the events' three arrays to `query`, in the order [`select`] numbers them.
pub(crate) fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    events: impl IntoIterator<Item = &'q OutboxEvent>,
) -> Query<'q, Postgres, PgArguments> {
    let (mut ids, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        ids.push(event.event_id);
        subjects.push(event.subject.as_str());
        payloads.push(event.payload.as_slice());
    }
    query.bind(ids).bind(subjects).bind(payloads)
}

/// Writes events to the outbox, in the order given, inside the caller's transaction.
pub(crate) async fn insert<'a>(
    conn: &mut PgConnection,
    events: impl Iterator<Item = &'a OutboxEvent>,
) -> Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("INSERT INTO outbox {}", select(1)));
    // Built before the await, so the future holds no iterator (it would not be `Send` for every
    // lifetime the callers' closures name).
    let query = {
        let mut events = events.peekable();
        if events.peek().is_none() {
            return Ok(());
        }
        bind(sqlx::query(SQL.as_str()), events)
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub id: i64,
    pub event_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
}

/// A claim on the oldest pending events, deleted in a transaction left open. Publish them, then
/// [`Claim::complete`] commits; dropping the claim instead rolls back and leaves them pending for
/// the next round.
pub struct Claim<'c> {
    tx: Transaction<'c, Postgres>,
    pub events: Vec<PendingEvent>,
}

/// Claims up to `limit` pending events, in `id` order: none when the outbox is empty or while
/// another replica's relay holds the lock.
///
/// Three round trips: `BEGIN`, one statement that takes the lock and deletes, and later the
/// commit. The delete's snapshot is taken before the lock is: rows that the previous holder
/// deleted after that snapshot are skipped by the delete (READ COMMITTED rechecks each row it
/// deletes), so they are not returned again.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Claim<'_>> {
    let mut tx = conn.begin().await?;
    let mut events: Vec<PendingEvent> = sqlx::query_as::<_, (i64, Uuid, String, Vec<u8>)>(
        "WITH leader AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($1) AS held)
         DELETE FROM outbox WHERE id = ANY(ARRAY(
             SELECT id FROM outbox WHERE (SELECT held FROM leader) ORDER BY id LIMIT $2))
         RETURNING id, event_id, subject, payload",
    )
    .bind(RELAY_LOCK)
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
    events.sort_unstable_by_key(|e| e.id);
    Ok(Claim { tx, events })
}

/// How far the relay is behind: the events waiting in the outbox and the age of the oldest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Depth {
    pub events: i64,
    /// Seconds since the oldest waiting event was committed (the server's clock); 0 when empty.
    pub oldest_age_seconds: f64,
}

/// The outbox's [`Depth`], for dispatch's sampled gauges. An exact count: the outbox is near empty
/// while the relay keeps up, and counting a long one is what an operator needs then.
pub async fn depth(conn: &mut PgConnection) -> Result<Depth> {
    let (events, oldest_age_seconds) = sqlx::query_as::<_, (i64, f64)>(
        "SELECT count(*),
                COALESCE(GREATEST(EXTRACT(EPOCH FROM now() - min(created_at)), 0), 0)::float8
         FROM outbox",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Depth {
        events,
        oldest_age_seconds,
    })
}

impl Claim<'_> {
    /// Makes the deletion of the published events final and releases the lock.
    pub async fn complete(self) -> Result<()> {
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
