//! Erases personal data past the policy's `[retention]` (docs/privacy.md): residents' contacts
//! and photos once their incidents settled long enough, rejected reports by age. A pass every
//! `retention_interval`, in batches, on dispatch's clock. Replicas may run it at once: each
//! skips the incidents (and rows) another holds, and what is erased is not there to erase twice.
//!
//! Between passes, a person's request that erased photos (its commit notifies
//! [`photos::ERASED_CHANNEL`]) wakes the pass's last step at once: the erased photos' bytes leave
//! the bucket. That step writes no audit entry (the request's transaction wrote them) and is
//! idempotent, so replicas woken together both run it safely.

use std::sync::Arc;

use async_nats::jetstream::object_store::DeleteErrorKind;
use chrono::TimeDelta;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whistle_proto::v1;
use whistle_store::{
    audit::Actor,
    photos::{self, Why},
    retention::{self, Scope},
    Error,
};
use whistle_wire::names::PHOTOS_BUCKET;

use crate::{hub::Wakeups, Shared};

/// Incidents (or photos, or rejected reports) erased in one transaction.
const BATCH: u32 = 200;

pub(crate) async fn run(shared: Arc<Shared>, mut erasures: Wakeups, shutdown: CancellationToken) {
    let actor = Actor::service("whistle-dispatch");
    loop {
        // Each kind on its own: one failing leaves the others to do their work.
        match contacts(&shared, &actor, &shutdown).await {
            Ok((0, _)) => {}
            Ok((incidents, contacts)) => {
                info!(
                    incidents,
                    contacts, "residents' contacts past their retention erased"
                )
            }
            Err(e) => {
                warn!(error = %e, "erasing contacts past their retention failed; trying again later")
            }
        }
        match photos(&shared, &actor, &shutdown).await {
            Ok(PhotoPass {
                indexed,
                erased,
                incidents,
                removed,
            }) => {
                if indexed > 0 {
                    info!(
                        reports = indexed,
                        "photos of reports stored before photo retention indexed"
                    );
                }
                if erased > 0 || removed > 0 {
                    info!(
                        photos = erased,
                        incidents, removed, "photos past their retention erased"
                    )
                }
            }
            Err(e) => {
                warn!(error = %e, "erasing photos past their retention failed; trying again later")
            }
        }
        match rejected(&shared, &actor, &shutdown).await {
            Ok(0) => {}
            Ok(rows) => info!(rows, "rejected reports past their retention removed"),
            Err(e) => {
                warn!(error = %e, "removing rejected reports past their retention failed; trying again later")
            }
        }
        match members(&shared, &actor, &shutdown).await {
            Ok(0) => {}
            Ok(members) => info!(
                members,
                "deregistered Party members' names and phones erased"
            ),
            Err(e) => {
                warn!(error = %e, "erasing deregistered Party members' data failed; trying again later")
            }
        }
        let next_pass = tokio::time::Instant::now() + shared.options.retention_interval;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_pass) => break,
                // A request's erasure (or the listener's reconnection, after which one may have
                // been missed): only the bytes are left to do.
                _ = erasures.wait() => match remove_erased(&shared, &shutdown).await {
                    Ok(0) => {}
                    Ok(removed) => info!(removed, "photos erased on request left the bucket"),
                    Err(e) => {
                        warn!(error = %e, "removing erased photos from the bucket failed; trying again at the next pass")
                    }
                },
            }
        }
    }
}

/// Party members' names and phones, kept only while they are registered (docs/party.md): every
/// deregistered member anonymised, a batch at a time.
async fn members(
    shared: &Shared,
    actor: &Actor,
    shutdown: &CancellationToken,
) -> whistle_store::Result<u64> {
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let erased = whistle_store::volunteers::anonymise_deregistered(
            &shared.pool,
            shared.clock.now(),
            actor,
            i64::from(BATCH),
        )
        .await?;
        total += erased;
        if erased < u64::from(BATCH) {
            break;
        }
    }
    Ok(total)
}

/// Residents' contacts: every incident due, a batch at a time. Returns (incidents, contacts)
/// erased.
async fn contacts(
    shared: &Shared,
    actor: &Actor,
    shutdown: &CancellationToken,
) -> whistle_store::Result<(usize, usize)> {
    let kept = shared.catalog.load().policy.retention().contacts;
    let note = format!("保存期限（结案后 {}）届满", spoken(kept));
    let mut total = (0, 0);
    while !shutdown.is_cancelled() {
        let now = shared.clock.now();
        let due = retention::settled_with_contacts(&shared.pool, now - kept, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let (incidents, contacts) =
            retention::erase(&shared.pool, Scope::Incidents(&due), actor, &note, now).await?;
        total = (total.0 + incidents, total.1 + contacts);
        if incidents == 0 {
            // Every one of them is held by another transaction: leave them to the next pass.
            break;
        }
    }
    Ok(total)
}

/// What a photo pass did.
#[derive(Debug, Default)]
struct PhotoPass {
    /// Reports stored before photo references were kept whose photos were recorded.
    indexed: usize,
    erased: usize,
    incidents: usize,
    /// Erased photos whose bytes left the bucket.
    removed: usize,
}

/// Photos: the older reports indexed first (until then none is erased by age), then every photo
/// due erased in the database, then the bytes of every erased photo removed from the bucket
/// (those of a person's request too, and any a failed pass left).
async fn photos(
    shared: &Shared,
    actor: &Actor,
    shutdown: &CancellationToken,
) -> whistle_store::Result<PhotoPass> {
    let mut pass = PhotoPass::default();
    while !shutdown.is_cancelled() {
        let indexed = photos::index_reports(&shared.pool, BATCH * 5, photo_ids_of).await?;
        if indexed == 0 {
            break;
        }
        pass.indexed += indexed;
    }
    if photos::index_pending(&shared.pool).await? {
        // Another replica holds the last of them: its pass erases.
        return Ok(pass);
    }
    let kept = shared.catalog.load().policy.retention().photos;
    let note = format!("保存期限（结案后 {}）届满", spoken(kept));
    while !shutdown.is_cancelled() {
        let now = shared.clock.now();
        let due = photos::due(&shared.pool, now - kept, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let settled_before = now - kept;
        let erased = photos::erase(
            &shared.pool,
            &due,
            Why::Retention { settled_before },
            actor,
            &note,
            now,
        )
        .await?;
        pass.erased += erased.photos.len();
        pass.incidents += erased.incidents.len();
        if erased.photos.is_empty() {
            // Held by other transactions (or erased by another replica meanwhile): next pass.
            break;
        }
    }
    pass.removed = remove_erased(shared, shutdown).await?;
    Ok(pass)
}

/// Removes the bytes of every erased photo still in the bucket, however it was erased; returns
/// how many left it.
async fn remove_erased(
    shared: &Shared,
    shutdown: &CancellationToken,
) -> whistle_store::Result<usize> {
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let waiting = photos::to_remove(&shared.pool, BATCH).await?;
        if waiting.is_empty() {
            break;
        }
        let removed = remove_bytes(shared, &waiting).await;
        photos::removed(&shared.pool, &removed, shared.clock.now()).await?;
        total += removed.len();
        if removed.len() < waiting.len() {
            // The bucket refused some (its error is logged): the next pass tries again.
            break;
        }
    }
    Ok(total)
}

/// A stored report's photos.
fn photo_ids_of(report_id: &str, payload: &[u8]) -> whistle_store::Result<Vec<String>> {
    v1::Report::decode(payload)
        .map(|report| report.photo_ids)
        .map_err(|e| Error::Corrupt(format!("report {report_id:?} payload: {e}")))
}

/// Deletes `photos` from the bucket; answers those now gone (a photo never stored counts).
async fn remove_bytes(shared: &Shared, photos: &[String]) -> Vec<String> {
    let store = match shared.jetstream.get_object_store(PHOTOS_BUCKET).await {
        Ok(store) => store,
        Err(e) => {
            warn!(error = %e, bucket = PHOTOS_BUCKET, "opening the photo bucket to remove erased photos failed");
            return Vec::new();
        }
    };
    let mut gone = Vec::with_capacity(photos.len());
    for photo in photos {
        match store.delete(photo).await {
            Ok(()) => gone.push(photo.clone()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => gone.push(photo.clone()),
            Err(e) => {
                warn!(error = %e, %photo, "removing an erased photo from the bucket failed");
                break;
            }
        }
    }
    gone
}

/// Rejected reports older than `[retention] rejected`, a batch at a time. Returns how many.
async fn rejected(
    shared: &Shared,
    actor: &Actor,
    shutdown: &CancellationToken,
) -> whistle_store::Result<u64> {
    let kept = shared.catalog.load().policy.retention().rejected;
    let note = format!("保存期限（收到后 {}）届满", spoken(kept));
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let now = shared.clock.now();
        let removed =
            retention::remove_rejected(&shared.pool, now - kept, BATCH * 5, actor, &note, now)
                .await?;
        total += removed;
        if removed == 0 {
            break;
        }
    }
    Ok(total)
}

/// A retention period as the timeline says it.
fn spoken(d: TimeDelta) -> String {
    if d.num_days() >= 1 && d.num_hours() % 24 == 0 {
        format!("{} 天", d.num_days())
    } else if d.num_hours() >= 1 && d.num_minutes() % 60 == 0 {
        format!("{} 小时", d.num_hours())
    } else {
        format!("{} 分钟", d.num_minutes().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_said_in_its_largest_whole_unit() {
        assert_eq!(spoken(TimeDelta::days(180)), "180 天");
        assert_eq!(spoken(TimeDelta::hours(72)), "3 天");
        assert_eq!(spoken(TimeDelta::hours(36)), "36 小时");
        assert_eq!(spoken(TimeDelta::minutes(90)), "90 分钟");
    }
}
