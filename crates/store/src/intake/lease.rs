//! Which dispatch replica records reports: the holder of the intake lease, one row in
//! `intake_owner`.
//!
//! Intake keeps its duplicate and cluster state in memory ([`super::Memory`]), which is exact only
//! while no one else writes reports. So one replica at a time holds the lease; the others wait and
//! take over when it expires (a crash, a pause, a partition) or is released (a graceful stop).
//!
//! **Fencing.** Every change of holder increments `epoch`, and every batch takes a `FOR KEY SHARE`
//! lock on the row where `epoch` is still its own ([`fence_sql`]). A takeover locks the row
//! `FOR UPDATE` first, so it waits for the batches of the old holder still in flight, and a batch
//! the old holder starts afterwards finds another epoch and records nothing. The new holder then
//! reads the state from PostgreSQL, which by then holds everything the old holder committed.
//!
//! Renewing only changes `expires_at` (a plain update, which does not conflict with the batches'
//! key-share locks), so the holder never waits for its own batches. Expiry is judged by
//! PostgreSQL's clock alone, so the replicas' clocks need not agree.

use std::time::Duration;

use sqlx::PgConnection;

use crate::Result;

/// A held lease: who, and the epoch that fences its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
}

/// Takes the lease if it has expired (or was released), for `ttl`. `None` while another holder's
/// lease runs. Waits for the old holder's batches in flight to commit.
pub async fn acquire(
    conn: &mut PgConnection,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>> {
    let epoch: Option<i64> = sqlx::query_scalar(
        "WITH expired AS MATERIALIZED (
             SELECT id FROM intake_owner WHERE id = 1 AND expires_at <= now() FOR UPDATE)
         UPDATE intake_owner o
         SET holder = $1, epoch = o.epoch + 1, expires_at = now() + make_interval(secs => $2)
         FROM expired WHERE o.id = expired.id
         RETURNING o.epoch",
    )
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(epoch.map(|epoch| Lease {
        holder: holder.to_owned(),
        epoch,
    }))
}

/// Extends a held lease by `ttl` from now; `false` if it is no longer held (it expired and
/// someone else took it).
pub async fn renew(conn: &mut PgConnection, lease: &Lease, ttl: Duration) -> Result<bool> {
    let renewed = sqlx::query(
        "UPDATE intake_owner SET expires_at = now() + make_interval(secs => $3)
         WHERE id = 1 AND holder = $1 AND epoch = $2",
    )
    .bind(&lease.holder)
    .bind(lease.epoch)
    .bind(ttl.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Gives a held lease up at once, so that a waiting replica takes over without waiting for it
/// to expire. The epoch is kept: the next holder increments it.
pub async fn release(conn: &mut PgConnection, lease: &Lease) -> Result<()> {
    sqlx::query(
        "UPDATE intake_owner SET expires_at = '-infinity'
         WHERE id = 1 AND holder = $1 AND epoch = $2",
    )
    .bind(&lease.holder)
    .bind(lease.epoch)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The current holder and epoch, and whether the lease is running (for status and tests).
pub async fn current(conn: &mut PgConnection) -> Result<(Lease, bool)> {
    let (holder, epoch, running): (String, i64, bool) =
        sqlx::query_as("SELECT holder, epoch, expires_at > now() FROM intake_owner WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
    Ok((Lease { holder, epoch }, running))
}

/// A `MATERIALIZED` CTE body that locks the lease row for the rest of the transaction while its
/// epoch is `$param`, and yields no row otherwise: a batch goes on only if it yields one.
pub(crate) fn fence_sql(param: usize) -> String {
    format!("SELECT epoch FROM intake_owner WHERE id = 1 AND epoch = ${param} FOR KEY SHARE")
}
