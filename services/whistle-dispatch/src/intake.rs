//! The intake loop: pull a batch of reports, validate, record it in one transaction per lane
//! (lanes divide the reports by category and run at once), publish rejections, then ack.
//!
//! **Invariant:** a message is acked only after everything it caused is committed to PostgreSQL
//! (and, for a rejection, stored in `WHISTLE_REJECTED`). A crash anywhere before the ack means a
//! redelivery, which the report id and the rejection's source key turn into a no-op.
//!
//! A report that PostgreSQL refuses on its own (not because it is unavailable) is isolated by
//! splitting the batch, so it never holds up the others, and after its last allowed delivery it
//! is rejected as `processing_failed` through the same path as an invalid report.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{
    header::{HeaderMap, NATS_MESSAGE_ID},
    jetstream::{self, consumer::PullConsumer, AckKind},
};
use futures::{FutureExt as _, StreamExt};
use prost::Message as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::devices::{DevicePolicy, Reading, Verdict};
use whistle_domain::{
    incident::{self, Effect},
    Level,
};
use whistle_proto::v1;
use whistle_store::intake::{
    lease, Attachment, ClusterAlert, ClusterRule, DuplicateRule, IntakeEvents, Lease, Memory,
    NewIncident, NewReading, NewRejection, OutboxEvent, Owner, Recorded, Rules,
};

use whistle_wire::{
    headers::{
        CONTENT_TYPE, DELIVERY_COUNT, JSON, ORIGINAL_SEQUENCE, ORIGINAL_SHA256, ORIGINAL_SIZE,
        ORIGINAL_SUBJECT, REJECT_MESSAGE, REJECT_REASON,
    },
    subject,
};

use crate::{
    contacts::{self, Contacts, KEPT_OF_TOO_LARGE},
    devices::{self, Registry, Tracks},
    events,
    validate::{self, Inbound, Reason, Rejection, ValidReport},
    Catalog, Shared,
};

pub(crate) struct Intake {
    pub shared: Arc<Shared>,
    /// This replica's name in the intake lease: unique per process, so a restarted replica
    /// waits for its former self's lease to run out like any other.
    pub holder: String,
    /// The memory must be read again before the next batch (a commit with an unknown outcome).
    pub stale: bool,
    /// The devices' rules' memory (docs/devices.md), while this replica holds the lease.
    pub devices: Tracks,
    pub consumer: PullConsumer,
    /// One connection per lane (see [`Options::intake_lanes`](crate::Options)); never empty.
    pub lanes: Vec<whistle_store::Dedicated>,
    pub relay_wakeup: Arc<Notify>,
    /// New incidents bring deadlines the timer loop may not know yet.
    pub timer_wakeup: Arc<Notify>,
}

/// Builds the events that depend on what the batch finds in the database.
struct EventBuilder<'a> {
    catalog: &'a Catalog,
    now: chrono::DateTime<chrono::Utc>,
}

impl IntakeEvents for EventBuilder<'_> {
    fn attached(&self, report: &NewIncident, to: &Attachment) -> OutboxEvent {
        events::report_attached(report, to)
    }

    fn cluster(&self, alert: &ClusterAlert) -> OutboxEvent {
        let name = self
            .catalog
            .policy
            .category(&alert.category)
            .map_or(alert.category.as_str(), |c| c.name_zh.as_str());
        events::cluster_alert(alert, name, self.now)
    }
}

/// One message's fate within a batch.
enum Outcome {
    Valid(Box<NewIncident>),
    /// A device's report: its reading is kept whatever its verdict; it opens or folds into an
    /// incident (`open`, `fold`) or only is kept (`cleared`, `flagged`, `suppressed`: no incident).
    /// Before the rules judge it, the incident is there and the verdict empty.
    Device(Option<Box<NewIncident>>, Box<NewReading>),
    Rejected(Box<NewRejection>, Rejection),
    /// The same report id appeared earlier in this batch.
    Repeat,
}

impl Intake {
    /// Waits for the intake lease, records reports while it holds it, and waits again if it
    /// loses it, until `shutdown`; then hands back what it had not started and releases the
    /// lease so a standby takes over at once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(owner) = self.take_over(&shutdown).await {
            let owner = Arc::new(owner);
            let lost = CancellationToken::new();
            let renewing = tokio::spawn(keep_lease(
                self.shared.clone(),
                owner.lease.clone(),
                lost.clone(),
            ));
            self.pull(&owner, &shutdown, &lost).await;
            renewing.abort();
            self.shared.metrics.intake_released();
            if shutdown.is_cancelled() {
                let released = match self.shared.pool.acquire().await {
                    Ok(mut conn) => lease::release(&mut conn, &owner.lease).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = released {
                    warn!(error = %e, "releasing the intake lease failed; a standby takes over when it expires");
                }
                break;
            }
            warn!(
                epoch = owner.lease.epoch,
                "the intake lease was lost; waiting to take it again"
            );
        }
        info!("intake stopped");
    }

    /// Waits until this replica holds the intake lease, then reads the duplicate and cluster
    /// state from PostgreSQL. `None` on shutdown.
    async fn take_over(&mut self, shutdown: &CancellationToken) -> Option<Owner> {
        let ttl = self.shared.options.intake_lease;
        let mut waiting_logged = false;
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let acquired = match self.shared.pool.acquire().await {
                Ok(mut conn) => lease::acquire(&mut conn, &self.holder, ttl).await,
                Err(e) => Err(e.into()),
            };
            match acquired {
                Ok(Some(lease)) => {
                    let started = std::time::Instant::now();
                    match self.load(&lease).await {
                        Ok(owner) => {
                            let (incidents, pairs) =
                                owner.memory.lock().map(|m| m.len()).unwrap_or_default();
                            info!(
                                epoch = lease.epoch,
                                incidents,
                                pairs,
                                took_ms = started.elapsed().as_millis() as u64,
                                "took the intake lease over"
                            );
                            self.shared
                                .metrics
                                .intake_taken(lease.epoch, self.lanes.len());
                            // Rebuilt from what the last holder committed, before judging.
                            self.devices.stale = true;
                            return Some(owner);
                        }
                        // The lease runs out unrenewed and is taken again, by this replica or another.
                        Err(e) => warn!(error = %e, "reading the intake state failed"),
                    }
                }
                Ok(None) if !waiting_logged => {
                    info!("another replica holds the intake lease; standing by");
                    waiting_logged = true;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "cannot reach PostgreSQL to take the intake lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(lease_tick(ttl)) => {}
            }
        }
    }

    /// The state as of now, read by the owner of `lease` under the rules of the running policy.
    async fn load(&mut self, lease: &Lease) -> whistle_store::Result<Owner> {
        let rules = rules(&self.shared.catalog.load());
        let now = self.shared.clock.now();
        let db = &mut self.lanes[0];
        let conn = db.get().await?;
        let memory = Memory::load(conn, rules, now).await;
        let memory = db.check(memory)?;
        Ok(Owner {
            lease: lease.clone(),
            memory: Mutex::new(memory),
        })
    }

    /// Pulls and records batches until shutdown or the loss of the lease.
    async fn pull(
        &mut self,
        owner: &Owner,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) {
        let batch_size = self.shared.options.batch_size;
        let progress_every = progress_interval(self.shared.options.ack_wait);
        while !shutdown.is_cancelled() && !lost.is_cancelled() {
            let pull = self
                .consumer
                .stream()
                .max_messages_per_batch(batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let messages = match pull {
                Ok(messages) => messages,
                Err(e) => {
                    // NATS is away (restart, network): keep trying until it is back or we stop.
                    warn!(error = %e, "cannot start the intake pull; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = lost.cancelled() => break,
                        _ = tokio::time::sleep(self.shared.options.retry_delay) => continue,
                    }
                }
            };
            // Without `unconstrained`, tokio's cooperative budget cuts every ready chunk at 128.
            let mut chunks = messages.ready_chunks(batch_size);
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        hand_back(&mut chunks).await;
                        break;
                    }
                    _ = lost.cancelled() => {
                        hand_back(&mut chunks).await;
                        break;
                    }
                    next = tokio::task::unconstrained(chunks.next()) => next,
                };
                let Some(chunk) = next else {
                    warn!("intake pull ended; restarting it");
                    break;
                };
                let mut batch = Vec::with_capacity(chunk.len());
                for item in chunk {
                    match item {
                        Ok(message) => batch.push(message),
                        Err(e) => warn!(error = %e, "intake pull reported an error"),
                    }
                }
                if !batch.is_empty() {
                    let in_hand = keep_in_hand(&batch, progress_every);
                    tokio::select! {
                        biased;
                        () = self.process(&batch, owner, lost) => {}
                        never = in_hand => match never {},
                    }
                }
            }
        }
    }

    /// Handles one batch. Never returns an error: a failure leaves the messages unacked (nak with
    /// a delay) so they come back.
    ///
    /// The lanes record their shares of the batch at once (one connection each, so PostgreSQL
    /// works on them in parallel, and dispatch prepares one while another waits); every share
    /// commits or fails on its own, and the acks wait for all of them.
    ///
    /// A share that fails to commit because PostgreSQL is unavailable is retried whole, forever.
    /// Any other failure is split in halves until the report that fails on its own is found, so
    /// the others commit; that report is retried with a growing delay, and rejected as
    /// `processing_failed` once it reaches its last delivery.
    async fn process(
        &mut self,
        batch: &[jetstream::Message],
        owner: &Owner,
        lost: &CancellationToken,
    ) {
        let started = std::time::Instant::now();
        let now = self.shared.clock.now();
        let catalog = self.shared.catalog.load();
        if self.stale || owner_rules(owner) != rules(&catalog) {
            // A changed policy, or a commit whose outcome is unknown: the state is read again.
            match self.load(&owner.lease).await {
                Ok(fresh) => {
                    *owner.memory.lock().unwrap_or_else(|e| e.into_inner()) =
                        fresh.memory.into_inner().unwrap_or_else(|e| e.into_inner());
                    self.stale = false;
                }
                Err(e) => {
                    warn!(error = %e, "reading the intake state failed; the batch will be redelivered");
                    nak_all(batch, self.shared.options.retry_delay).await;
                    return;
                }
            }
        }
        let mut seen = HashSet::with_capacity(batch.len());
        let (registry, generation) = self.shared.devices.load();
        let mut outcomes: Vec<Outcome> = batch
            .iter()
            .map(|m| {
                classify(
                    m,
                    &catalog,
                    &registry,
                    &self.shared.contacts,
                    now,
                    self.shared.options.legacy_channel_subjects,
                    &mut seen,
                )
            })
            .collect();
        self.keep_earlier_rejections(batch, &mut outcomes, now)
            .await;
        let judged = match self
            .judge_devices(batch, &mut outcomes, &registry, generation, now)
            .await
        {
            Ok(judged) => judged,
            Err(e) => {
                warn!(error = %e, "reading the devices' readings failed; the batch will be redelivered");
                nak_all(batch, self.shared.options.retry_delay).await;
                return;
            }
        };

        // The lanes record their shares at once, each in its own transactions.
        let shares = shares(&outcomes, self.lanes.len());
        let lane_results = futures::future::join_all(
            self.lanes
                .iter_mut()
                .zip(shares)
                .filter(|(_, share)| !share.is_empty())
                .map(|(db, share)| record_share(db, owner, &catalog, now, &outcomes, share)),
        )
        .await;
        let mut totals = Totals::default();
        let mut committed = Vec::with_capacity(batch.len());
        let mut unavailable = Vec::new();
        let mut failing = Vec::new();
        for lane in lane_results {
            if lane.lease_lost {
                lost.cancel();
            }
            self.stale |= lane.uncertain;
            totals.merge(lane.totals);
            committed.extend(lane.committed);
            unavailable.extend(lane.unavailable);
            failing.extend(lane.failing);
        }

        let mut backoff = Vec::new();
        for (i, error) in failing {
            let delivered = batch[i].info().map_or(1, |info| info.delivered);
            if delivered < i64::from(self.shared.options.max_report_failures) {
                warn!(error = %error, delivered, "a report failed to record on its own; it will be retried");
                backoff.push((i, delivered));
                continue;
            }
            let (row, rejection) =
                processing_failed(&batch[i], &outcomes[i], &error, delivered, now);
            outcomes[i] = Outcome::Rejected(row, rejection);
            // Recorded like a validation rejection (row and event in one transaction, idempotent
            // by source key), so a crash before the ack redelivers it into a no-op.
            match record(
                &mut self.lanes[0],
                owner,
                &catalog,
                now,
                std::iter::once(&outcomes[i]),
            )
            .await
            {
                Ok(recorded) => {
                    warn!(error = %error, delivered, "a report kept failing to record; rejected as processing_failed");
                    totals.add(&recorded);
                    committed.push(i);
                }
                Err(e) => {
                    warn!(error = %e, "recording a processing_failed rejection failed; it will be redelivered");
                    unavailable.push(i);
                }
            }
        }

        // The devices' memory took in every judged reading: it stays only if all of them
        // committed; otherwise it is rebuilt from what did before the next judgement.
        if !judged.is_empty() {
            let done: HashSet<usize> = committed.iter().copied().collect();
            let failed = |i: usize| matches!(&outcomes[i], Outcome::Rejected(_, r) if r.reason == Reason::ProcessingFailed);
            if judged.iter().all(|&i| done.contains(&i) && !failed(i)) {
                self.devices.stale = false;
            }
        }

        if totals.changed() {
            self.relay_wakeup.notify_one();
        }
        if totals.incidents > 0 {
            self.timer_wakeup.notify_one();
        }

        // Rejections are stored in WHISTLE_REJECTED before their reports are acked. Republishing
        // one that a crashed attempt already stored is dropped by its Nats-Msg-Id.
        let mut failed_rejections = HashSet::new();
        let publishes = committed.iter().filter_map(|&i| match &outcomes[i] {
            Outcome::Rejected(row, rejection) => Some((i, row, rejection)),
            _ => None,
        });
        let mut acks = Vec::new();
        for (i, row, rejection) in publishes {
            let headers = rejected_headers(&batch[i], row, rejection);
            let subject = subject::rejected(rejection.reason.as_str());
            match self
                .shared
                .jetstream
                .publish_with_headers(subject, headers, row.payload.clone().into())
                .await
            {
                Ok(ack) => acks.push((i, ack)),
                Err(e) => {
                    warn!(error = %e, reason = %rejection.reason, "publishing a rejection failed");
                    failed_rejections.insert(i);
                }
            }
        }
        for (i, ack) in acks {
            if let Err(e) = ack.await {
                warn!(error = %e, "storing a rejection was not confirmed");
                failed_rejections.insert(i);
            }
        }

        let mut acked = 0usize;
        for &i in &committed {
            let message = &batch[i];
            let result = if failed_rejections.contains(&i) {
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
            } else {
                acked += 1;
                message.ack().await
            };
            if let Err(e) = result {
                debug!(error = %e, "ack not sent; the message will be redelivered and deduplicated");
            }
        }
        let retry_delay = self.shared.options.retry_delay;
        for &i in &unavailable {
            let _ = batch[i].ack_with(AckKind::Nak(Some(retry_delay))).await;
        }
        for (i, delivered) in backoff {
            let _ = batch[i]
                .ack_with(AckKind::Nak(Some(backoff_delay(retry_delay, delivered))))
                .await;
        }
        let took = started.elapsed();
        self.shared
            .metrics
            .record_batch(acked, totals.incidents, totals.rejections, took);
        if took >= SLOW_BATCH {
            info!(
                batch = batch.len(),
                took_ms = took.as_millis() as u64,
                "a slow intake batch: the reports behind it waited as long"
            );
        }
        debug!(
            batch = batch.len(),
            incidents = totals.incidents,
            attached = totals.attached,
            clusters = totals.clusters,
            rejections = totals.rejections,
            "batch committed"
        );
    }

    /// Applies the per-device rules (docs/devices.md) to the batch's device reports, in batch
    /// order, and returns their indices: `Open` stays an incident; `Fold` too, trying the
    /// device's incident of that detection first (unless the detection opened in this batch,
    /// where the duplicate rule joins them); `RateLimited` becomes a rejection; `Cleared`,
    /// `Flagged` and `Suppressed` are kept only, a flag with its event. A reading already taken by
    /// an earlier delivery is not judged again: kept, it is a repeat; refused, refused again.
    async fn judge_devices(
        &mut self,
        batch: &[jetstream::Message],
        outcomes: &mut [Outcome],
        registry: &Registry,
        generation: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> whistle_store::Result<Vec<usize>> {
        let judged: Vec<usize> = (0..outcomes.len())
            .filter(|&i| matches!(outcomes[i], Outcome::Device(..)))
            .collect();
        if judged.is_empty() {
            return Ok(judged);
        }
        let policy = DevicePolicy::default();
        let pool = &self.shared.pool;
        if self.devices.needs_rebuild(generation) {
            self.devices
                .rebuild(pool, registry, generation, &policy, now)
                .await?;
        }
        let report_ids: Vec<String> = judged
            .iter()
            .filter_map(|&i| match &outcomes[i] {
                Outcome::Device(_, reading) => Some(reading.report_id.clone()),
                _ => None,
            })
            .collect();
        let (kept, refused) = whistle_store::devices::already_taken(
            pool,
            &report_ids,
            Reason::DeviceRateLimited.as_str(),
        )
        .await?;
        // From here the memory takes in readings not yet committed.
        self.devices.stale = true;
        let mut opened_here: HashSet<(String, String)> = HashSet::new();
        let mut folds = Vec::new();
        for &i in &judged {
            let Outcome::Device(incident, reading) = &mut outcomes[i] else {
                continue;
            };
            if kept.contains(&reading.report_id) {
                outcomes[i] = Outcome::Repeat;
                continue;
            }
            let device = registry.get(&reading.device_id);
            let track = self.devices.track(&reading.device_id);
            if device.is_some_and(|d| d.status == devices::Status::Maintenance) {
                track.mark_flagged();
            }
            let verdict = if refused.contains(&reading.report_id) {
                Verdict::RateLimited
            } else {
                let category = reading
                    .category
                    .parse()
                    .expect("validation checked the category");
                let observed = if reading.alarm {
                    Reading::Alarm(category)
                } else {
                    Reading::Clear(category)
                };
                track.observe(&policy, &observed, now)
            };
            let key = (reading.device_id.clone(), reading.category.clone());
            reading.verdict = match verdict {
                Verdict::Open => {
                    opened_here.insert(key);
                    "open"
                }
                Verdict::Fold => {
                    if !opened_here.contains(&key) {
                        folds.push(i);
                    }
                    "fold"
                }
                Verdict::Cleared => "cleared",
                Verdict::Suppressed => "suppressed",
                Verdict::Flagged => {
                    let reason = devices::flag_reason(&policy);
                    let grid = incident
                        .as_ref()
                        .and_then(|i| i.grid_code.parse().ok())
                        .or_else(|| device.map(|d| d.grid.clone()));
                    if let (Some(grid), Some(device)) = (grid, device) {
                        let event = events::device_flagged(
                            &reading.device_id,
                            device.kind,
                            &grid,
                            &reading.category,
                            &reason,
                            now,
                        );
                        reading.flag = Some((reason, event));
                    }
                    "flagged"
                }
                Verdict::RateLimited => {
                    let rejection = Rejection {
                        reason: Reason::DeviceRateLimited,
                        message: format!(
                            "device {} sent more than {} readings at once or {} a minute; \
                             refused, not queued",
                            reading.device_id, policy.burst, policy.per_minute
                        ),
                        report_id: Some(reading.report_id.clone()),
                        reporter_id: Some(reading.device_id.clone()),
                        subject_grid: subject::parse_report(batch[i].subject.as_str())
                            .ok()
                            .map(|s| s.grid),
                    };
                    outcomes[i] =
                        Outcome::Rejected(rejection_row(&batch[i], &rejection, now), rejection);
                    continue;
                }
            };
            if !matches!(verdict, Verdict::Open | Verdict::Fold) {
                *incident = None;
            }
        }
        if !folds.is_empty() {
            let devices: Vec<String> = folds
                .iter()
                .filter_map(|&i| match &outcomes[i] {
                    Outcome::Device(_, reading) => Some(reading.device_id.clone()),
                    _ => None,
                })
                .collect();
            let targets = whistle_store::devices::detection_incidents(pool, &devices).await?;
            for &i in &folds {
                if let Outcome::Device(_, reading) = &mut outcomes[i] {
                    reading.attach_to = targets
                        .get(&(reading.device_id.clone(), reading.category.clone()))
                        .copied();
                }
            }
        }
        Ok(judged)
    }

    /// A report delivered past its last allowed delivery may have been rejected as
    /// `processing_failed` by an attempt that crashed before the ack: it ends that way again
    /// (the row is already there, the republish is deduplicated) rather than being recorded as an
    /// incident as well. On a database error nothing is decided here; recording then fails the
    /// same way and the batch is retried.
    async fn keep_earlier_rejections(
        &self,
        batch: &[jetstream::Message],
        outcomes: &mut [Outcome],
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let limit = i64::from(self.shared.options.max_report_failures);
        let past_limit: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].info().is_ok_and(|info| info.delivered > limit))
            .collect();
        if past_limit.is_empty() {
            return;
        }
        let keys: Vec<String> = past_limit.iter().map(|&i| source_key(&batch[i])).collect();
        let rejected = match whistle_store::intake::already_rejected(
            &self.shared.pool,
            &keys,
            Reason::ProcessingFailed.as_str(),
        )
        .await
        {
            Ok(rejected) => rejected,
            Err(e) => {
                debug!(error = %e, "looking up earlier rejections failed");
                return;
            }
        };
        for (&i, key) in past_limit.iter().zip(&keys) {
            if rejected.contains(key) {
                let delivered = batch[i].info().map_or(limit, |info| info.delivered);
                let (row, rejection) = processing_failed(
                    &batch[i],
                    &outcomes[i],
                    "rejected by an earlier delivery",
                    delivered,
                    now,
                );
                outcomes[i] = Outcome::Rejected(row, rejection);
            }
        }
    }
}

/// The duplicate and cluster rules of a policy.
fn rules(catalog: &Catalog) -> Rules {
    let policy = &catalog.policy;
    Rules {
        duplicates: DuplicateRule {
            radius_m: f64::from(policy.duplicates().radius_m),
            window: policy.duplicates().window,
        },
        clusters: ClusterRule {
            threshold: i64::from(policy.clusters().threshold),
            window: policy.clusters().window,
        },
    }
}

fn owner_rules(owner: &Owner) -> Rules {
    owner
        .memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rules()
}

/// How often a holder renews its lease and a standby tries to take it: a fifth of its time, so
/// a few renewals may fail (a slow or restarting database) before it runs out.
fn lease_tick(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(50))
}

/// Renews the lease until it is lost, then cancels `lost`. It counts as lost when a renewal finds
/// another holder, or when renewals have failed for long enough that it may have run out (the
/// batches are fenced anyway; this stops pulling reports this replica can no longer record).
async fn keep_lease(shared: Arc<Shared>, lease: Lease, lost: CancellationToken) {
    let ttl = shared.options.intake_lease;
    let mut renewed_at = std::time::Instant::now();
    loop {
        tokio::time::sleep(lease_tick(ttl)).await;
        let attempt = std::time::Instant::now();
        let renewed = match shared.pool.acquire().await {
            Ok(mut conn) => lease::renew(&mut conn, &lease, ttl).await,
            Err(e) => Err(e.into()),
        };
        match renewed {
            Ok(true) => renewed_at = attempt,
            Ok(false) => {
                warn!(
                    epoch = lease.epoch,
                    "another replica took the intake lease over"
                );
                lost.cancel();
                return;
            }
            Err(e) if renewed_at.elapsed() >= ttl => {
                warn!(error = %e, "the intake lease could not be renewed in time");
                lost.cancel();
                return;
            }
            Err(e) => debug!(error = %e, "renewing the intake lease failed; retrying"),
        }
    }
}

/// Hands a whole batch back for redelivery after `delay`.
async fn nak_all(batch: &[jetstream::Message], delay: Duration) {
    for message in batch {
        let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
    }
}

/// On shutdown, naks the messages delivered to this replica but not yet taken into a batch, so
/// that another replica gets them now rather than after the ack wait.
async fn hand_back<E>(
    chunks: &mut (impl futures::Stream<Item = Vec<Result<jetstream::Message, E>>> + Unpin),
) {
    let mut handed_back = 0usize;
    while let Some(Some(chunk)) = chunks.next().now_or_never() {
        for message in chunk.into_iter().flatten() {
            if message.ack_with(AckKind::Nak(None)).await.is_ok() {
                handed_back += 1;
            }
        }
    }
    if handed_back > 0 {
        info!(
            handed_back,
            "reports not yet taken into a batch handed back for redelivery"
        );
    }
}

/// A third of the ack wait: two progress messages may be late or lost before JetStream gives up.
fn progress_interval(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(100))
}

/// Tells JetStream every `every` that the batch is still being worked on, so that a batch held
/// longer than the ack wait (a lock wait, a slow commit, a starved machine) is not redelivered
/// meanwhile; the ack wait can then be short, and a crashed replica's reports come back soon.
/// Runs until dropped.
async fn keep_in_hand(batch: &[jetstream::Message], every: Duration) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(every).await;
        for message in batch {
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                debug!(error = %e, "progress not sent; the message may be redelivered and deduplicated");
            }
        }
    }
}

/// Records one lane's share of a batch (indices into `outcomes`) in one transaction. A failure
/// other than PostgreSQL being unavailable splits the share in halves until the report that
/// fails on its own is found, so the others commit.
async fn record_share(
    db: &mut whistle_store::Dedicated,
    owner: &Owner,
    catalog: &Catalog,
    now: chrono::DateTime<chrono::Utc>,
    outcomes: &[Outcome],
    share: Vec<usize>,
) -> LaneResult {
    let mut result = LaneResult::default();
    // Depth first, left half first: reports commit in about their stream order.
    let mut parts = vec![share];
    while let Some(mut part) = parts.pop() {
        match record(db, owner, catalog, now, part.iter().map(|&i| &outcomes[i])).await {
            Ok(recorded) => {
                result.totals.add(&recorded);
                result.committed.extend(part);
            }
            Err(whistle_store::Error::LeaseLost) => {
                warn!(
                    reports = part.len(),
                    "the intake lease passed to another replica; handing the batch back"
                );
                result.lease_lost = true;
                result.unavailable.extend(part);
                result.unavailable.extend(parts.drain(..).flatten());
            }
            Err(e) if is_unavailable(&e) => {
                // The connection may have dropped during the commit: whether it committed is
                // unknown, so the memory is read again before the next batch.
                result.uncertain = true;
                warn!(error = %e, reports = part.len(), "recording the batch failed; it will be redelivered");
                result.unavailable.extend(part);
                result.unavailable.extend(parts.drain(..).flatten());
            }
            Err(e) if part.len() > 1 => {
                debug!(error = %e, reports = part.len(), "a batch failed to commit; splitting it to isolate the failing report");
                let right = part.split_off(part.len() / 2);
                parts.push(right);
                parts.push(part);
            }
            Err(e) => result.failing.push((part[0], e.to_string())),
        }
    }
    result
}

/// Records some of a batch's outcomes in one transaction.
async fn record<'a>(
    db: &mut whistle_store::Dedicated,
    owner: &Owner,
    catalog: &Catalog,
    now: chrono::DateTime<chrono::Utc>,
    outcomes: impl Iterator<Item = &'a Outcome>,
) -> whistle_store::Result<Recorded> {
    let mut incidents = Vec::new();
    let mut rejections = Vec::new();
    let mut readings = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Valid(incident) => incidents.push(&**incident),
            Outcome::Device(incident, reading) => {
                incidents.extend(incident.as_deref());
                readings.push(&**reading);
            }
            Outcome::Rejected(rejection, _) => rejections.push(&**rejection),
            Outcome::Repeat => {}
        }
    }
    let conn = db.get().await?;
    let builder = EventBuilder { catalog, now };
    let result = whistle_store::intake::record_with_readings(
        conn,
        &incidents,
        &rejections,
        &readings,
        &builder,
        owner,
    )
    .await;
    if result.is_ok() {
        db.wrote((incidents.len() + rejections.len() + readings.len()) as u64);
    }
    db.check(result)
}

/// Divides a batch among `lanes` (indices into `outcomes`, in batch order within a share). The
/// valid reports of one category always share a lane, as a duplicate or a cluster never spans
/// categories.
fn shares(outcomes: &[Outcome], lanes: usize) -> Vec<Vec<usize>> {
    divide(
        outcomes.iter().map(|outcome| match outcome {
            Outcome::Valid(incident) | Outcome::Device(Some(incident), _) => {
                Some(incident.category.as_str())
            }
            Outcome::Device(None, _) | Outcome::Rejected(..) | Outcome::Repeat => None,
        }),
        lanes,
    )
}

/// Divides items among `lanes` keeping those with the same key together: the groups, largest
/// first, and then the items without a key go to the lane with the fewest items so far, so that
/// the lanes finish at about the same time. Indices in order within each lane.
fn divide<K: std::hash::Hash + Eq>(
    keys: impl Iterator<Item = Option<K>>,
    lanes: usize,
) -> Vec<Vec<usize>> {
    let mut groups: HashMap<K, Vec<usize>> = HashMap::new();
    let mut rest = Vec::new();
    for (i, key) in keys.enumerate() {
        match key {
            Some(key) => groups.entry(key).or_default().push(i),
            None => rest.push(i),
        }
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    // Ties broken by position, so the division does not depend on the map's order.
    groups.sort_by_key(|g| (std::cmp::Reverse(g.len()), g[0]));
    groups.push(rest);
    let mut shares = vec![Vec::new(); lanes];
    for group in groups {
        let lightest = (0..shares.len())
            .min_by_key(|&l| shares[l].len())
            .expect("at least one lane");
        shares[lightest].extend(group);
    }
    for share in &mut shares {
        share.sort_unstable();
    }
    shares
}

/// What one lane did with its share of a batch.
#[derive(Default)]
struct LaneResult {
    totals: Totals,
    committed: Vec<usize>,
    /// PostgreSQL was unavailable: retried whole.
    unavailable: Vec<usize>,
    /// Reports that failed on their own, with the error.
    failing: Vec<(usize, String)>,
    /// The lease passed to another replica.
    lease_lost: bool,
    /// A commit may or may not have happened.
    uncertain: bool,
}

/// What the committed parts of a batch changed.
#[derive(Default)]
struct Totals {
    incidents: usize,
    attached: usize,
    clusters: usize,
    rejections: usize,
}

impl Totals {
    fn add(&mut self, recorded: &Recorded) {
        self.incidents += recorded.incidents.len();
        self.attached += recorded.attached.len();
        self.clusters += recorded.clusters.len();
        self.rejections += recorded.rejections.len();
    }

    fn merge(&mut self, other: Totals) {
        self.incidents += other.incidents;
        self.attached += other.attached;
        self.clusters += other.clusters;
        self.rejections += other.rejections;
    }

    fn changed(&self) -> bool {
        self.incidents + self.attached + self.clusters + self.rejections > 0
    }
}

/// Whether a failed commit says nothing about the reports themselves: PostgreSQL is down,
/// restarting, overloaded, or the transaction lost a race. Such batches are retried whole and
/// never counted against a report.
fn is_unavailable(error: &whistle_store::Error) -> bool {
    let whistle_store::Error::Database(error) = error else {
        return false;
    };
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08 connection, 40 serialization/deadlock, 53 resources, 57 shutdown/cancel,
            // 58 system error, 55P03 lock not available.
            matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) || code == "55P03"
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// The nak delay of a report that failed on its own: doubling from the retry delay, so a
/// poison report does not spin while it waits for its last delivery.
fn backoff_delay(retry_delay: Duration, delivered: i64) -> Duration {
    let doublings = u32::try_from(delivered.saturating_sub(1))
        .unwrap_or(0)
        .min(6);
    (retry_delay * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A batch taking this long is logged: it held up every report behind it.
const SLOW_BATCH: Duration = Duration::from_millis(250);

/// The `processing_failed` rejection of a report that failed on its own on its last delivery.
fn processing_failed(
    message: &jetstream::Message,
    outcome: &Outcome,
    error: &str,
    delivered: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> (Box<NewRejection>, Rejection) {
    let (report_id, reporter_id, subject_grid) = match outcome {
        Outcome::Valid(incident) | Outcome::Device(Some(incident), _) => (
            Some(incident.report_id.clone()),
            Some(incident.reporter_id.clone()),
            incident.grid_code.parse().ok(),
        ),
        Outcome::Device(None, reading) => (
            Some(reading.report_id.clone()),
            Some(reading.device_id.clone()),
            subject::parse_report(message.subject.as_str())
                .ok()
                .map(|s| s.grid),
        ),
        Outcome::Rejected(_, earlier) => (
            earlier.report_id.clone(),
            earlier.reporter_id.clone(),
            earlier.subject_grid.clone(),
        ),
        Outcome::Repeat => (None, None, None),
    };
    let rejection = Rejection {
        reason: Reason::ProcessingFailed,
        message: format!("recording failed on delivery {delivered}: {error}"),
        report_id,
        reporter_id,
        subject_grid,
    };
    (rejection_row(message, &rejection, now), rejection)
}

fn classify(
    message: &jetstream::Message,
    catalog: &Catalog,
    devices: &Registry,
    contacts: &Contacts,
    now: chrono::DateTime<chrono::Utc>,
    legacy_channels: bool,
    seen: &mut HashSet<String>,
) -> Outcome {
    let headers = message.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let json = is_json(message);
    let inbound = Inbound {
        subject: message.subject.as_str(),
        payload: &message.payload,
        json,
        msg_id: header(NATS_MESSAGE_ID.as_ref()),
        legacy_channels,
    };
    let stream_sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    match validate::validate_with(inbound, &catalog.org, devices, &catalog.policy, now) {
        Ok(valid) => {
            if !seen.insert(valid.report_id.to_string()) {
                return Outcome::Repeat;
            }
            let reading = valid.device.as_ref().map(|device| NewReading {
                report_id: valid.report_id.to_string(),
                device_id: valid.reporter_id.to_string(),
                category: valid.category.to_string(),
                alarm: !device.cleared,
                verdict: "",
                received_at: now,
                stream_sequence: i64::try_from(stream_sequence).ok(),
                attach_to: None,
                flag: None,
            });
            let incident = Box::new(new_incident(valid, catalog, contacts, stream_sequence, now));
            match reading {
                Some(reading) => Outcome::Device(Some(incident), Box::new(reading)),
                None => Outcome::Valid(incident),
            }
        }
        Err(rejection) => Outcome::Rejected(rejection_row(message, &rejection, now), rejection),
    }
}

/// Whether a report says it is proto3 JSON (`Content-Type: application/json`).
fn is_json(message: &jetstream::Message) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE))
        .is_some_and(|v| v.as_str().trim().to_ascii_lowercase().starts_with(JSON))
}

fn rejection_row(
    message: &jetstream::Message,
    rejection: &Rejection,
    now: chrono::DateTime<chrono::Utc>,
) -> Box<NewRejection> {
    let stream_sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    let mut text = rejection.message.clone();
    if rejection.reason == Reason::TooLarge {
        let (size, sha256) = contacts::fingerprint(&message.payload);
        text.push_str(&format!(
            " (only the first {KEPT_OF_TOO_LARGE} bytes are kept, masked; the original had {size} bytes, sha256 {sha256})"
        ));
    }
    Box::new(NewRejection {
        source_key: source_key(message),
        reason: rejection.reason.as_str().to_owned(),
        message: text,
        subject: message.subject.to_string(),
        report_id: rejection.report_id.clone(),
        reporter_id: rejection.reporter_id.clone(),
        stream_sequence: i64::try_from(stream_sequence).ok(),
        // Contacts masked, a too-large payload cut short: see `contacts::kept_payload`.
        payload: contacts::kept_payload(&message.payload, is_json(message), rejection.reason),
        received_at: now,
        event: events::report_rejected(rejection, message.subject.as_str(), stream_sequence, now),
    })
}

/// Identifies a JetStream message across redeliveries: its stream sequence and the time the
/// server stored it (the pair stays unique if the stream is ever recreated).
fn source_key(message: &jetstream::Message) -> String {
    match message.info() {
        Ok(info) => format!(
            "{}:{}:{}",
            info.stream,
            info.stream_sequence,
            info.published.timestamp_nanos_opt().unwrap_or_default()
        ),
        Err(_) => format!("unacked:{}", Uuid::now_v7()),
    }
}

fn new_incident(
    mut valid: ValidReport,
    catalog: &Catalog,
    contacts: &Contacts,
    stream_sequence: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> NewIncident {
    let category = catalog
        .policy
        .category(valid.category.as_str())
        .expect("validation checked the category");
    let (state, effects) = incident::open(
        valid.grid.clone(),
        category,
        &catalog.policy,
        &catalog.calendar,
        now,
    );
    let timers = effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Schedule { timer, at } => Some((timer, at)),
            _ => None,
        })
        .collect();
    let incident_id = Uuid::now_v7();
    // Before the payload and the event are made: neither carries the contact.
    let contact = contacts.take(valid.report_id.as_str(), &mut valid.report);
    let tracking = contacts.tracking_code(valid.report_id.as_str());
    let event = events::incident_reported(&valid, incident_id, &state, &category.name_zh, now);
    let location = valid.report.location.clone().unwrap_or_default();
    let has_location = valid.report.location.is_some();
    NewIncident {
        incident_id,
        report_id: valid.report_id.to_string(),
        reporter_id: valid.reporter_id.to_string(),
        status: state.status.as_str(),
        level: state.level.as_str(),
        category: valid.category.to_string(),
        urgency: urgency_str(valid.urgency),
        title: valid.report.title.clone(),
        description: valid.report.description.clone(),
        district_code: valid.area(Level::District).to_string(),
        street_code: valid.area(Level::Street).to_string(),
        community_code: valid.area(Level::Community).to_string(),
        grid_code: valid.grid.to_string(),
        lat: has_location.then_some(location.lat),
        lon: has_location.then_some(location.lon),
        address: location.address,
        policy_version: catalog.policy.version().to_owned(),
        occurred_at: valid.occurred_at,
        reported_at: valid.reported_at,
        received_at: now,
        due_at: Some(state.resolve_due),
        level_due_at: state.level_due,
        report_payload: valid.report.encode_to_vec(),
        contact,
        tracking,
        photo_ids: valid.report.photo_ids.clone(),
        channel: channel_str(valid.report.channel),
        stream_sequence: i64::try_from(stream_sequence).ok(),
        state: serde_json::to_string(&state).expect("incident state serializes"),
        timers,
        event,
    }
}

/// A report's channel as `reports.channel` stores it; a value this build does not know is a grid
/// worker's, as unspecified is.
pub fn channel_str(channel: i32) -> &'static str {
    match v1::Channel::try_from(channel) {
        Ok(v1::Channel::Open311) => "open311",
        Ok(v1::Channel::Hotline12345) => "hotline_12345",
        Ok(v1::Channel::Device) => "device",
        _ => "grid_worker",
    }
}

pub fn urgency_str(urgency: v1::Urgency) -> &'static str {
    match urgency {
        v1::Urgency::Unspecified | v1::Urgency::Normal => "normal",
        v1::Urgency::Urgent => "urgent",
        v1::Urgency::Emergency => "emergency",
    }
}

fn rejected_headers(
    message: &jetstream::Message,
    row: &NewRejection,
    rejection: &Rejection,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, row.source_key.as_str());
    headers.insert(REJECT_REASON, rejection.reason.as_str());
    // Header values cannot hold newlines.
    headers.insert(
        REJECT_MESSAGE,
        row.message.replace(['\r', '\n'], " ").as_str(),
    );
    headers.insert(ORIGINAL_SUBJECT, message.subject.as_str());
    if let Some(sequence) = row.stream_sequence {
        headers.insert(ORIGINAL_SEQUENCE, sequence.to_string().as_str());
    }
    if let Ok(info) = message.info() {
        headers.insert(DELIVERY_COUNT, info.delivered.to_string().as_str());
    }
    if rejection.reason == Reason::TooLarge {
        let (size, sha256) = contacts::fingerprint(&message.payload);
        headers.insert(ORIGINAL_SIZE, size.to_string().as_str());
        headers.insert(ORIGINAL_SHA256, sha256.as_str());
    }
    if let Some(content_type) = message.headers.as_ref().and_then(|h| h.get(CONTENT_TYPE)) {
        headers.insert(CONTENT_TYPE, content_type.as_str());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_retried_whole_and_other_errors_are_blamed_on_a_report() {
        let store = |e: sqlx::Error| whistle_store::Error::Database(e);
        assert!(is_unavailable(&store(sqlx::Error::PoolTimedOut)));
        assert!(is_unavailable(&store(sqlx::Error::PoolClosed)));
        assert!(is_unavailable(&store(sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        ))));
        assert!(!is_unavailable(&store(sqlx::Error::RowNotFound)));
        assert!(!is_unavailable(&whistle_store::Error::Corrupt("x".into())));
    }

    #[test]
    fn a_batch_is_divided_evenly_with_each_category_in_one_lane() {
        let keys = ["a", "b", "a", "c", "a", "b", "d", "d"];
        // Then two rejections.
        let lanes = divide(keys.iter().map(Some).chain([None, None]), 2);
        // a (3) → lane 0; b (2) → 1; d (2) → 1; c (1) → 0; the rejections together → 0.
        assert_eq!(lanes, [vec![0, 2, 3, 4, 8, 9], vec![1, 5, 6, 7]]);
        let mut all: Vec<usize> = lanes.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "every item once");

        assert_eq!(divide([Some(1), None].into_iter(), 1), [vec![0, 1]]);
        assert_eq!(divide([Some(1)].into_iter(), 3), [vec![0], vec![], vec![]]);
    }

    #[test]
    fn the_backoff_doubles_up_to_a_ceiling() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff_delay(base, 1), Duration::from_secs(1));
        assert_eq!(backoff_delay(base, 2), Duration::from_secs(2));
        assert_eq!(backoff_delay(base, 4), Duration::from_secs(8));
        assert_eq!(backoff_delay(base, 1000), MAX_BACKOFF);
    }
}
