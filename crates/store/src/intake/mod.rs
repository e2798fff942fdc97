//! Recording a batch of reports: new incidents (with their engine state and timers), reports
//! attached to an open incident as duplicates, cluster alerts, rejections, and the events that
//! announce them — one transaction, a fixed handful of multi-row statements whatever the batch size.
//!
//! One dispatch replica at a time records reports: the holder of the intake [`lease`], which keeps
//! the duplicate and cluster state in [`memory`].

pub mod lease;
pub mod memory;

use std::{
    collections::{HashMap, HashSet},
    sync::{LazyLock, Mutex},
};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;
use whistle_domain::incident::Timer;

pub use crate::outbox::OutboxEvent;
pub use lease::Lease;
pub use memory::{Memory, Rules};

use crate::{
    contacts::SealedContact, outbox, timeline::TimelineRows, tracking::SealedCode, Error, Result,
};
use memory::{Applied, Opened};

/// The timeline note of an attached report is this followed by the report id; the query service
/// finds a report's attachment by it.
pub const ATTACHED_NOTE_PREFIX: &str = "duplicate report ";

/// A valid report that opens an incident (unless its report id was already recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub incident_id: Uuid,
    pub report_id: String,
    pub reporter_id: String,
    pub status: &'static str,
    pub level: &'static str,
    pub category: String,
    pub urgency: &'static str,
    pub title: String,
    pub description: String,
    pub district_code: String,
    pub street_code: String,
    pub community_code: String,
    pub grid_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub address: String,
    pub policy_version: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The SLA resolve deadline.
    pub due_at: Option<DateTime<Utc>>,
    /// The first level's window.
    pub level_due_at: Option<DateTime<Utc>>,
    /// The report as protobuf, kept for the incident's detail view; without its contact, which
    /// is stored apart, sealed ([`crate::contacts`]).
    pub report_payload: Vec<u8>,
    /// The resident's contact, sealed, if the report gave one and dispatch keeps contacts.
    pub contact: Option<SealedContact>,
    /// The resident's tracking code, sealed, if dispatch keeps a keyring ([`crate::tracking`]).
    pub tracking: Option<SealedCode>,
    /// The report's photos (`Report.photo_ids`), recorded in `photo_refs` for their retention.
    pub photo_ids: Vec<String>,
    /// The channel it came in by (`reports.channel`): `grid_worker`, `open311`, `hotline_12345` or `device`.
    pub channel: &'static str,
    pub stream_sequence: Option<i64>,
    /// The engine's state (`whistle_domain::incident::Incident`) as JSON text: written as it is,
    /// without building a JSON tree for every report.
    pub state: String,
    /// Deadlines the engine set when opening it.
    pub timers: Vec<(Timer, DateTime<Utc>)>,
    /// `incident.reported`, published only if the incident is new.
    pub event: OutboxEvent,
}

/// The rules that make a report a duplicate of an open incident.
#[derive(Debug, Clone, Copy)]
pub struct DuplicateRule {
    /// Same category within this distance (same grid when either has no coordinates) …
    pub radius_m: f64,
    /// … reported within this window, while the incident is open.
    pub window: TimeDelta,
}

/// The rule for cluster alerts (群体性事件苗头).
#[derive(Debug, Clone, Copy)]
pub struct ClusterRule {
    /// This many reports of one category in one community …
    pub threshold: i64,
    /// … within this window raise one alert.
    pub window: TimeDelta,
}

/// The open incident a duplicate report was attached to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub incident_id: Uuid,
    pub district_code: String,
    pub street_code: String,
    /// Reports on the incident including this one.
    pub report_count: i32,
}

/// A cluster alert raised by this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterAlert {
    pub community_code: String,
    pub category: String,
    /// The reports in the window: exact below the threshold, else counted up to it (see
    /// [`lock_and_count`]) plus the batch's own.
    pub reports: i64,
    pub window_start: DateTime<Utc>,
}

/// Builds the events that depend on what the batch finds in the database.
pub trait IntakeEvents {
    /// `report.attached`: `report` became one more report of an open incident.
    fn attached(&self, report: &NewIncident, to: &Attachment) -> OutboxEvent;
    /// `cluster.alert`.
    fn cluster(&self, alert: &ClusterAlert) -> OutboxEvent;
}

/// A report that failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRejection {
    /// Identifies the original JetStream message across redeliveries.
    pub source_key: String,
    pub reason: String,
    pub message: String,
    pub subject: String,
    pub report_id: Option<String>,
    pub reporter_id: Option<String>,
    pub stream_sequence: Option<i64>,
    pub payload: Vec<u8>,
    pub received_at: DateTime<Utc>,
    /// `report.rejected`, published only if this rejection is new.
    pub event: OutboxEvent,
}

/// What a batch changed. Anything not listed was already recorded by an earlier delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub incidents: HashSet<Uuid>,
    /// Report id → the incident it was attached to.
    pub attached: HashMap<String, Uuid>,
    pub clusters: Vec<ClusterAlert>,
    pub rejections: HashSet<String>,
}

/// The lease holder's side of intake: its lease, whose epoch fences every batch, and its state.
pub struct Owner {
    pub lease: Lease,
    pub memory: Mutex<Memory>,
}

impl Owner {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding it cannot leave it half-changed: it is changed only after commit,
        // by code that does not panic; and a dirty state is reloaded by the caller.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A device's report as intake's per-device rules judged it (docs/devices.md): every one intake
/// takes is kept in `device_readings`, whatever its verdict, so the rules' memory is rebuilt from
/// them; the rate-limited ones are rejections instead.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    pub report_id: String,
    pub device_id: String,
    pub category: String,
    /// A detection, or its clearing.
    pub alarm: bool,
    /// `open`, `fold`, `cleared`, `flagged` or `suppressed`.
    pub verdict: &'static str,
    pub received_at: DateTime<Utc>,
    pub stream_sequence: Option<i64>,
    /// For `open` and `fold`: the report is also a [`NewIncident`] of the batch. For `fold`, the
    /// device's incident of this detection, tried before the duplicate rule's candidates (the
    /// report joins it however long the detection lasts, while it is open).
    pub attach_to: Option<Uuid>,
    /// For `flagged`: why, and `device.flagged`, published if the reading is new.
    pub flag: Option<(String, OutboxEvent)>,
}

/// Records a batch atomically. Idempotent: a report id or rejection already stored is skipped,
/// together with its event, so redelivering a batch never duplicates an incident or an event.
///
/// A new report of the same category near an open incident (see [`DuplicateRule`]) is attached to
/// it instead of opening one; so is a report that matches an earlier report of the same batch.
/// The owner's memory names the incidents a report may duplicate; PostgreSQL says, by primary
/// key, which of them are still open. Fails with [`Error::LeaseLost`] (recording nothing) if the
/// owner's lease has passed to another replica.
///
/// Every statement costs a round trip however little it does, and on a busy machine each round
/// trip is a chance to wait for the scheduler, so a batch takes four whatever its size: `BEGIN`,
/// the fence and the candidates' statuses ([`find_open`]), every write in one statement
/// ([`write`]) and `COMMIT` — and one more for rejections. After the commit the owner's memory
/// takes in what the batch added.
pub async fn record(
    conn: &mut PgConnection,
    incidents: &[&NewIncident],
    rejections: &[&NewRejection],
    events: &impl IntakeEvents,
    owner: &Owner,
) -> Result<Recorded> {
    record_with_readings(conn, incidents, rejections, &[], events, owner).await
}

/// [`record`], with devices' readings: those not recorded yet are kept, a `flagged` one puts its
/// device under maintenance and publishes `device.flagged`; a `fold` tries its device's incident
/// first. One more statement when there are readings, fenced like the rest.
pub async fn record_with_readings(
    conn: &mut PgConnection,
    incidents: &[&NewIncident],
    rejections: &[&NewRejection],
    readings: &[&NewReading],
    events: &impl IntakeEvents,
    owner: &Owner,
) -> Result<Recorded> {
    let mut tx = conn.begin().await?;
    let mut recorded = Recorded::default();
    let mut applied = None;

    if !incidents.is_empty() {
        let (rules, candidates) = {
            let memory = owner.memory();
            let folds: HashMap<&str, Uuid> = readings
                .iter()
                .filter_map(|r| Some((r.report_id.as_str(), r.attach_to?)))
                .collect();
            let candidates: Vec<Vec<Uuid>> = incidents
                .iter()
                .map(|r| {
                    let mut candidates = memory.candidates(r);
                    if let Some(&target) = folds.get(r.report_id.as_str()) {
                        candidates.retain(|&c| c != target);
                        candidates.insert(0, target);
                    }
                    candidates
                })
                .collect();
            (memory.rules(), candidates)
        };
        let found = find_open(&mut tx, owner.lease.epoch, incidents, &candidates).await?;
        // Reports already recorded (a redelivery) are skipped before anything refers to them.
        let (fresh, matches): (Vec<&NewIncident>, Vec<Option<Match>>) = incidents
            .iter()
            .zip(found.matches)
            .filter(|(report, _)| !found.known.contains(&report.report_id))
            .map(|(&report, found)| (report, found))
            .unzip();
        let (done, added) = record_candidates(
            &mut tx,
            &fresh,
            &matches,
            &found.counts,
            rules,
            events,
            owner,
        )
        .await?;
        recorded = done;
        applied = Some(added);
    }

    if !readings.is_empty() {
        keep_readings(&mut tx, owner.lease.epoch, readings).await?;
    }

    if !rejections.is_empty() {
        recorded.rejections = reject(&mut tx, rejections).await?;
    }

    tx.commit().await?;
    if let Some((applied, now)) = applied.flatten() {
        owner.memory().apply(applied, now);
    }
    Ok(recorded)
}

/// Places and writes the reports not recorded yet (`candidates`, with the open incident each
/// duplicates); nothing, not even a statement, when there are none. Returns what the memory
/// takes in after the commit, and the batch's time.
async fn record_candidates(
    tx: &mut PgConnection,
    candidates: &[&NewIncident],
    matches: &[Option<Match>],
    stored_counts: &HashMap<Uuid, i32>,
    rules: Rules,
    events: &impl IntakeEvents,
    owner: &Owner,
) -> Result<(Recorded, Option<(Applied, DateTime<Utc>)>)> {
    let mut recorded = Recorded::default();
    let Some(now) = candidates.iter().map(|c| c.received_at).max() else {
        return Ok((recorded, None));
    };
    let window_start = now - rules.clusters.window;
    let pairs = cluster_pairs(candidates.iter().copied());
    let quiet: Vec<Option<i64>> = {
        let memory = owner.memory();
        pairs
            .iter()
            .map(|&(community, category)| memory.cluster_count(community, category, window_start))
            .collect()
    };
    let placements = place(candidates, matches, stored_counts, rules.duplicates);

    let mut batch = Batch::default();
    let mut applied = Applied::default();
    let fresh: Vec<&NewIncident> = candidates
        .iter()
        .zip(&placements)
        .filter(|(_, p)| matches!(p, Placement::New))
        .map(|(i, _)| *i)
        .collect();
    let mut attached_counts: HashMap<Uuid, i32> = HashMap::new();
    for placement in &placements {
        if let Placement::Attach(target) = placement {
            *attached_counts.entry(target.incident_id).or_default() += 1;
        }
    }
    let fresh_ids: HashSet<Uuid> = fresh.iter().map(|f| f.incident_id).collect();
    batch.existing = attached_counts
        .iter()
        .filter(|(id, _)| !fresh_ids.contains(*id))
        .map(|(id, n)| (*id, *n))
        .collect();

    // Timeline: the opening entry of each new incident, then one entry per attached report.
    for incident in &fresh {
        batch.timeline.push_first(
            incident.incident_id,
            "incident.reported",
            &incident.reporter_id,
            incident.received_at,
            format!("report {}", incident.report_id),
        );
        batch.outbox.push(incident.event.clone());
        applied.incidents.push(Opened {
            category: incident.category.clone(),
            grid: incident.grid_code.clone(),
            location: incident.lat.zip(incident.lon),
            created: incident.received_at,
            id: incident.incident_id,
        });
    }
    for (candidate, placement) in candidates.iter().zip(&placements) {
        applied.report(candidate);
        if let Placement::Attach(target) = placement {
            batch.timeline.push(
                target.incident_id,
                "report.attached",
                &candidate.reporter_id,
                candidate.received_at,
                format!("{ATTACHED_NOTE_PREFIX}{}", candidate.report_id),
                None,
            );
            batch.outbox.push(events.attached(candidate, target));
            recorded
                .attached
                .insert(candidate.report_id.clone(), target.incident_id);
        }
    }
    batch.timers = fresh
        .iter()
        .flat_map(|i| i.timers.iter().map(move |(t, at)| (i.incident_id, *t, *at)))
        .collect();
    batch.alerts = raise_clusters(candidates, &pairs, &quiet, rules.clusters, window_start);
    batch
        .outbox
        .extend(batch.alerts.iter().map(|c| events.cluster(c)));
    batch.raised_at = now;
    applied.alerts = batch
        .alerts
        .iter()
        .map(|a| (a.community_code.clone(), a.category.clone(), now))
        .collect();
    recorded.clusters = batch.alerts.clone();
    write(tx, candidates, &placements, &fresh, &attached_counts, batch).await?;
    recorded.incidents = fresh.iter().map(|i| i.incident_id).collect();
    Ok((recorded, Some((applied, now))))
}

/// What [`find_open`] found.
struct Found {
    /// Report ids of the batch already recorded.
    known: HashSet<String>,
    /// Per report, the oldest of its candidates that is open.
    matches: Vec<Option<Match>>,
    /// The report counts of the open candidates, as locked.
    counts: HashMap<Uuid, i32>,
}

/// An open incident a report duplicates, as of the lookup.
#[derive(Debug, Clone)]
struct Match {
    id: Uuid,
    district_code: String,
    street_code: String,
}

/// Candidates of one report whose statuses are read in one round; a report whose first ones are
/// all closed has the next ones read in another (rare: it takes that many closed incidents
/// around one place within the window).
const CANDIDATES_PER_ROUND: usize = 8;

/// Fences the batch by the owner's epoch (see [`lease`]), finds which reports are already
/// recorded, and locks the candidates (in id order, so concurrent transactions take turns) and
/// reads which are open — one statement, and more only for a report whose first
/// [`CANDIDATES_PER_ROUND`] candidates are all closed.
async fn find_open(
    conn: &mut PgConnection,
    epoch: i64,
    reports: &[&NewIncident],
    candidates: &[Vec<Uuid>],
) -> Result<Found> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH fence AS MATERIALIZED ({}),
                  locked AS MATERIALIZED (
                      SELECT id, report_count, district_code, street_code,
                             status IN ('handling', 'whistled', 'accepted') AS open
                      FROM incidents WHERE id = ANY($2) AND EXISTS (SELECT FROM fence)
                      ORDER BY id FOR UPDATE)
             SELECT EXISTS (SELECT FROM fence),
                    ARRAY(SELECT report_id FROM reports WHERE report_id = ANY($3)),
                    ARRAY(SELECT id FROM locked WHERE open),
                    ARRAY(SELECT report_count FROM locked WHERE open),
                    ARRAY(SELECT district_code FROM locked WHERE open),
                    ARRAY(SELECT street_code FROM locked WHERE open)",
            lease::fence_sql(1)
        )
    });
    type Row = (
        bool,
        Vec<String>,
        Vec<Uuid>,
        Vec<i32>,
        Vec<String>,
        Vec<String>,
    );
    let mut found = Found {
        known: HashSet::new(),
        matches: vec![None; reports.len()],
        counts: HashMap::new(),
    };
    let mut open: HashMap<Uuid, Match> = HashMap::new();
    // Per report, how many of its candidates have been read.
    let mut read = vec![0usize; reports.len()];
    let mut first = true;
    loop {
        let mut ids: Vec<Uuid> = Vec::new();
        for (k, candidates) in candidates.iter().enumerate() {
            if found.matches[k].is_none() {
                let end = (read[k] + CANDIDATES_PER_ROUND).min(candidates.len());
                ids.extend(&candidates[read[k]..end]);
            }
        }
        if !first && ids.is_empty() {
            break;
        }
        ids.sort_unstable();
        ids.dedup();
        let report_ids: Vec<&str> = if first {
            reports.iter().map(|r| r.report_id.as_str()).collect()
        } else {
            Vec::new()
        };
        let (fenced, known, open_ids, counts, districts, streets): Row =
            sqlx::query_as(SQL.as_str())
                .bind(epoch)
                .bind(&ids)
                .bind(&report_ids)
                .fetch_one(&mut *conn)
                .await?;
        if !fenced {
            return Err(Error::LeaseLost);
        }
        found.known.extend(known);
        for (((id, count), district_code), street_code) in
            open_ids.into_iter().zip(counts).zip(districts).zip(streets)
        {
            found.counts.insert(id, count);
            open.insert(
                id,
                Match {
                    id,
                    district_code,
                    street_code,
                },
            );
        }
        for (k, candidates) in candidates.iter().enumerate() {
            if found.matches[k].is_some() {
                continue;
            }
            let end = (read[k] + CANDIDATES_PER_ROUND).min(candidates.len());
            found.matches[k] = candidates[read[k]..end]
                .iter()
                .find_map(|id| open.get(id).cloned());
            read[k] = end;
        }
        first = false;
    }
    Ok(found)
}

/// The (community, category) pairs of `reports`, sorted and distinct.
fn cluster_pairs<'a>(
    reports: impl IntoIterator<Item = &'a NewIncident>,
) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = reports
        .into_iter()
        .map(|c| (community_of(&c.grid_code), c.category.as_str()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// The alerts this batch raises: a pair with no alert in the window whose stored reports in it
/// (`stored`, per pair in order; counted up to the threshold) and the batch's own reach the
/// threshold.
fn raise_clusters(
    candidates: &[&NewIncident],
    pairs: &[(&str, &str)],
    stored: &[Option<i64>],
    rule: ClusterRule,
    window_start: DateTime<Utc>,
) -> Vec<ClusterAlert> {
    // As the stored reports are counted: by the grid code's community prefix.
    let mut in_batch: HashMap<(&str, &str), i64> = HashMap::new();
    for c in candidates.iter().filter(|c| c.received_at > window_start) {
        *in_batch
            .entry((community_of(&c.grid_code), c.category.as_str()))
            .or_default() += 1;
    }
    pairs
        .iter()
        .zip(stored)
        .filter_map(|(&(community, category), stored)| {
            let in_batch = in_batch.get(&(community, category)).copied().unwrap_or(0);
            let reports = (*stored)? + in_batch;
            (reports >= rule.threshold).then(|| ClusterAlert {
                community_code: community.to_owned(),
                category: category.to_owned(),
                reports,
                window_start,
            })
        })
        .collect()
}

/// `left(grid_code, 12)`: the community a grid code belongs to.
fn community_of(grid_code: &str) -> &str {
    grid_code
        .char_indices()
        .nth(12)
        .map_or(grid_code, |(end, _)| &grid_code[..end])
}

/// What [`write`] adds besides the reports and new incidents.
#[derive(Default)]
struct Batch<'a> {
    /// Incidents already stored that reports were attached to, with how many.
    existing: Vec<(Uuid, i32)>,
    timeline: TimelineRows<'a>,
    timers: Vec<(Uuid, Timer, DateTime<Utc>)>,
    alerts: Vec<ClusterAlert>,
    raised_at: DateTime<Utc>,
    outbox: Vec<OutboxEvent>,
}

/// One statement for every row the batch adds or changes: each report (pointing at its incident;
/// the foreign key is deferred to commit) and its sealed contact, the new incidents, the report counts of incidents
/// reports were attached to, timers, cluster alerts, events and timeline entries.
async fn write(
    conn: &mut PgConnection,
    candidates: &[&NewIncident],
    placements: &[Placement],
    fresh: &[&NewIncident],
    attached: &HashMap<Uuid, i32>,
    batch: Batch<'_>,
) -> Result<()> {
    // Built once: it is the same text for every batch (and so one prepared statement).
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
        "WITH new_reports AS (
             INSERT INTO reports (report_id, incident_id, reporter_id, grid_code, category, payload, stream_sequence, received_at, channel)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::int8[], $8::timestamptz[], $60::text[])),
         new_incidents AS (
             INSERT INTO incidents (id, status, level, category, urgency, title, description,
                 district_code, street_code, community_code, grid_code, lat, lon, address, reporter_id,
                 policy_version, occurred_at, reported_at, created_at, updated_at, due_at, level_due_at, state, report_count)
             SELECT id, status, level, category, urgency, title, description, district_code, street_code,
                 community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
                 reported_at, created_at, created_at, due_at, level_due_at, state::jsonb, report_count
             FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                 $16::text[], $17::text[], $18::text[], $19::text[], $20::float8[], $21::float8[], $22::text[],
                 $23::text[], $24::text[], $25::timestamptz[], $26::timestamptz[], $27::timestamptz[],
                 $28::timestamptz[], $29::timestamptz[], $30::text[], $31::int4[])
                 AS t(id, status, level, category, urgency, title, description, district_code, street_code,
                      community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
                      reported_at, created_at, due_at, level_due_at, state, report_count)),
         attached_counts AS (
             UPDATE incidents i SET report_count = i.report_count + t.n, updated_at = $34
             FROM UNNEST($32::uuid[], $33::int4[]) AS t(id, n) WHERE i.id = t.id),
         new_timers AS (
             INSERT INTO timers (incident_id, key, due_at)
             SELECT * FROM UNNEST($35::uuid[], $36::text[], $37::timestamptz[])
             ON CONFLICT (incident_id, key) DO UPDATE SET due_at = EXCLUDED.due_at),
         new_alerts AS (
             INSERT INTO cluster_alerts (community_code, category, window_start, reports, raised_at)
             SELECT t.community, t.category, t.window_start, t.reports, $41
             FROM UNNEST($38::text[], $39::text[], $40::timestamptz[], $42::int4[])
                 AS t(community, category, window_start, reports)),
         new_events AS (
             INSERT INTO outbox {}),
         new_contacts AS (
             INSERT INTO report_contacts (report_id, incident_id, key_id, nonce, ciphertext, masked, created_at)
             SELECT t.report_id, t.incident_id, t.key_id, t.nonce, t.ciphertext, t.masked, t.at
             FROM UNNEST($1::text[], $2::uuid[], $53::text[], $54::bytea[], $55::bytea[], $56::text[], $8::timestamptz[])
                 AS t(report_id, incident_id, key_id, nonce, ciphertext, masked, at)
             WHERE t.key_id IS NOT NULL),
         new_photo_refs AS (
             INSERT INTO photo_refs (photo_id, incident_id, report_id)
             SELECT * FROM UNNEST($57::text[], $58::uuid[], $59::text[])
             ON CONFLICT DO NOTHING),
         new_tracking_codes AS (
             INSERT INTO tracking_codes (report_id, incident_id, key_id, code_mac, nonce, ciphertext, created_at)
             SELECT t.report_id, t.incident_id, t.key_id, t.code_mac, t.nonce, t.ciphertext, t.at
             FROM UNNEST($1::text[], $2::uuid[], $61::text[], $62::bytea[], $63::bytea[], $64::bytea[], $8::timestamptz[])
                 AS t(report_id, incident_id, key_id, code_mac, nonce, ciphertext, at)
             WHERE t.key_id IS NOT NULL)
         INSERT INTO timeline {}",
        outbox::select(43),
        TimelineRows::select(46)
        )
    });
    let incident_ids: Vec<Uuid> = candidates
        .iter()
        .zip(placements)
        .map(|(c, p)| p.incident_id().unwrap_or(c.incident_id))
        .collect();
    // (photo, incident, report) of every photo of every report.
    let photo_refs: Vec<(&str, Uuid, &str)> = candidates
        .iter()
        .zip(&incident_ids)
        .flat_map(|(c, &incident)| {
            c.photo_ids
                .iter()
                .map(move |photo| (photo.as_str(), incident, c.report_id.as_str()))
        })
        .collect();
    let query = sqlx::query(SQL.as_str())
        .bind(column(candidates, |i| i.report_id.as_str()))
        .bind(&incident_ids)
        .bind(column(candidates, |i| i.reporter_id.as_str()))
        .bind(column(candidates, |i| i.grid_code.as_str()))
        .bind(column(candidates, |i| i.category.as_str()))
        .bind(column(candidates, |i| i.report_payload.as_slice()))
        .bind(column(candidates, |i| i.stream_sequence))
        .bind(column(candidates, |i| i.received_at))
        .bind(column(fresh, |i| i.incident_id))
        .bind(column(fresh, |i| i.status))
        .bind(column(fresh, |i| i.level))
        .bind(column(fresh, |i| i.category.as_str()))
        .bind(column(fresh, |i| i.urgency))
        .bind(column(fresh, |i| i.title.as_str()))
        .bind(column(fresh, |i| i.description.as_str()))
        .bind(column(fresh, |i| i.district_code.as_str()))
        .bind(column(fresh, |i| i.street_code.as_str()))
        .bind(column(fresh, |i| i.community_code.as_str()))
        .bind(column(fresh, |i| i.grid_code.as_str()))
        .bind(column(fresh, |i| i.lat))
        .bind(column(fresh, |i| i.lon))
        .bind(column(fresh, |i| i.address.as_str()))
        .bind(column(fresh, |i| i.reporter_id.as_str()))
        .bind(column(fresh, |i| i.policy_version.as_str()))
        .bind(column(fresh, |i| i.occurred_at))
        .bind(column(fresh, |i| i.reported_at))
        .bind(column(fresh, |i| i.received_at))
        .bind(column(fresh, |i| i.due_at))
        .bind(column(fresh, |i| i.level_due_at))
        .bind(column(fresh, |i| i.state.as_str()))
        .bind(column(fresh, |i| {
            1 + attached.get(&i.incident_id).copied().unwrap_or(0)
        }))
        .bind(column(&batch.existing, |e| e.0))
        .bind(column(&batch.existing, |e| e.1))
        .bind(candidates.first().map(|c| c.received_at))
        .bind(column(&batch.timers, |t| t.0))
        .bind(column(&batch.timers, |t| t.1.key()))
        .bind(column(&batch.timers, |t| t.2))
        .bind(column(&batch.alerts, |a| a.community_code.as_str()))
        .bind(column(&batch.alerts, |a| a.category.as_str()))
        .bind(column(&batch.alerts, |a| a.window_start))
        .bind(batch.raised_at)
        .bind(column(&batch.alerts, |a| {
            i32::try_from(a.reports).unwrap_or(i32::MAX)
        }));
    let query = outbox::bind(query, &batch.outbox);
    batch
        .timeline
        .bind(query)
        .bind(column(candidates, |i| {
            i.contact.as_ref().map(|c| c.key_id.as_str())
        }))
        .bind(column(candidates, |i| {
            i.contact.as_ref().map(|c| c.nonce.as_slice())
        }))
        .bind(column(candidates, |i| {
            i.contact.as_ref().map(|c| c.ciphertext.as_slice())
        }))
        .bind(column(candidates, |i| {
            i.contact.as_ref().map(|c| c.masked.as_str())
        }))
        .bind(photo_refs.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(photo_refs.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(photo_refs.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(column(candidates, |i| i.channel))
        .bind(column(candidates, |i| {
            i.tracking.as_ref().map(|t| t.key_id.as_str())
        }))
        .bind(column(candidates, |i| {
            i.tracking.as_ref().map(|t| t.code_mac.as_slice())
        }))
        .bind(column(candidates, |i| {
            i.tracking.as_ref().map(|t| t.nonce.as_slice())
        }))
        .bind(column(candidates, |i| {
            i.tracking.as_ref().map(|t| t.ciphertext.as_slice())
        }))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps the readings not kept yet (a redelivery's are skipped, with their events); a new
/// `flagged` one sets its device's status to `maintenance` (a retired device stays retired) and
/// queues its `device.flagged`. Fenced by the owner's epoch: a replica that lost the lease keeps
/// nothing.
async fn keep_readings(
    conn: &mut PgConnection,
    epoch: i64,
    readings: &[&NewReading],
) -> Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH fence AS MATERIALIZED ({}),
                  input AS (
                      SELECT * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[],
                                           $7::timestamptz[], $8::int8[], $9::text[])
                          AS t(report_id, device_id, category, alarm, verdict, received_at, seq, reason)),
                  new_rows AS (
                      INSERT INTO device_readings (report_id, device_id, category, alarm, verdict, received_at, stream_sequence)
                      SELECT DISTINCT ON (report_id) report_id, device_id, category, alarm, verdict, received_at, seq
                      FROM input WHERE EXISTS (SELECT FROM fence)
                      ORDER BY report_id
                      ON CONFLICT (report_id) DO NOTHING
                      RETURNING report_id, device_id, verdict, received_at),
                  flagged AS (
                      UPDATE devices d
                      SET status = 'maintenance', flagged_at = n.received_at, flag_reason = i.reason
                      FROM new_rows n JOIN input i USING (report_id)
                      WHERE n.verdict = 'flagged' AND d.id = n.device_id AND d.status <> 'retired'),
                  new_events AS (
                      INSERT INTO outbox (event_id, subject, payload)
                      SELECT DISTINCT ON (e.report_id) e.event_id, e.subject, e.payload
                      FROM UNNEST($10::text[], $11::uuid[], $12::text[], $13::bytea[])
                          AS e(report_id, event_id, subject, payload)
                      WHERE e.report_id IN (SELECT report_id FROM new_rows WHERE verdict = 'flagged')
                      ORDER BY e.report_id)
             SELECT EXISTS (SELECT FROM fence)",
            lease::fence_sql(1)
        )
    });
    let flags: Vec<(&str, &OutboxEvent)> = readings
        .iter()
        .filter_map(|r| Some((r.report_id.as_str(), &r.flag.as_ref()?.1)))
        .collect();
    let fenced: bool = sqlx::query_scalar(SQL.as_str())
        .bind(epoch)
        .bind(column(readings, |r| r.report_id.as_str()))
        .bind(column(readings, |r| r.device_id.as_str()))
        .bind(column(readings, |r| r.category.as_str()))
        .bind(column(readings, |r| r.alarm))
        .bind(column(readings, |r| r.verdict))
        .bind(column(readings, |r| r.received_at))
        .bind(column(readings, |r| r.stream_sequence))
        .bind(column(readings, |r| r.flag.as_ref().map(|f| f.0.as_str())))
        .bind(column(&flags, |f| f.0))
        .bind(column(&flags, |f| f.1.event_id))
        .bind(column(&flags, |f| f.1.subject.as_str()))
        .bind(column(&flags, |f| f.1.payload.as_slice()))
        .fetch_one(&mut *conn)
        .await?;
    if !fenced {
        return Err(Error::LeaseLost);
    }
    Ok(())
}

/// Records rejections not recorded yet, and the event of each, in one statement; returns the
/// source keys it recorded.
async fn reject(conn: &mut PgConnection, rejections: &[&NewRejection]) -> Result<HashSet<String>> {
    // A batch may hold one message twice (a redelivery after the ack wait lands in the same pull
    // as the first delivery): the row is inserted once, and so is its event.
    // The events are selected here rather than by `outbox::select`: only those of rows inserted.
    let keys: Vec<String> = sqlx::query_scalar(
        "WITH new_rows AS (
             INSERT INTO rejected_reports (source_key, reason, message, subject, report_id, reporter_id, stream_sequence, payload, received_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::bytea[], $9::timestamptz[])
             ON CONFLICT (source_key) DO NOTHING
             RETURNING source_key),
         new_events AS (
             INSERT INTO outbox (event_id, subject, payload)
             SELECT e.event_id, e.subject, e.payload
             FROM (SELECT DISTINCT ON (e.key) e.*
                   FROM UNNEST($1::text[], $10::uuid[], $11::text[], $12::bytea[]) WITH ORDINALITY
                       AS e(key, event_id, subject, payload, n)
                   WHERE e.key IN (SELECT source_key FROM new_rows)
                   ORDER BY e.key, e.n) AS e
             ORDER BY e.n)
         SELECT source_key FROM new_rows",
    )
    .bind(column(rejections, |r| r.source_key.as_str()))
    .bind(column(rejections, |r| r.reason.as_str()))
    .bind(column(rejections, |r| r.message.as_str()))
    .bind(column(rejections, |r| r.subject.as_str()))
    .bind(column(rejections, |r| r.report_id.as_deref()))
    .bind(column(rejections, |r| r.reporter_id.as_deref()))
    .bind(column(rejections, |r| r.stream_sequence))
    .bind(column(rejections, |r| r.payload.as_slice()))
    .bind(column(rejections, |r| r.received_at))
    .bind(column(rejections, |r| r.event.event_id))
    .bind(column(rejections, |r| r.event.subject.as_str()))
    .bind(column(rejections, |r| r.event.payload.as_slice()))
    .fetch_all(&mut *conn)
    .await?;
    Ok(keys.into_iter().collect())
}

/// One column of `rows`, bound as an array parameter.
fn column<'a, T, U>(rows: &'a [T], f: impl FnMut(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Where a candidate report goes.
enum Placement {
    New,
    Attach(Attachment),
}

impl Placement {
    fn incident_id(&self) -> Option<Uuid> {
        match self {
            Placement::New => None,
            Placement::Attach(a) => Some(a.incident_id),
        }
    }
}

/// The sphere of the distances here and of the SQL that repeats them.
const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// Great-circle distance in metres.
fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let (dlat, dlon) = ((b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// A latitude/longitude box (`[lat_lo, lat_hi, lon_lo, lon_hi]`) holding every point within
/// `radius_m` of `p`, so an index on (lat, lon) reads only the neighbourhood; the exact distance
/// is checked after it. Where the circle reaches a pole or crosses the antimeridian the box spans
/// every longitude: wider than needed, never narrower.
fn search_box(p: (f64, f64), radius_m: f64) -> [f64; 4] {
    // A little more than the circle, for rounding.
    const MARGIN_DEG: f64 = 1e-6;
    let angle = radius_m.max(0.0) / EARTH_RADIUS_M;
    let dlat = angle.to_degrees() + MARGIN_DEG;
    let (lat_lo, lat_hi) = (p.0 - dlat, p.0 + dlat);
    let all_lon = [lat_lo.max(-90.0), lat_hi.min(90.0), -180.0, 180.0];
    if lat_lo <= -90.0 || lat_hi >= 90.0 {
        return all_lon;
    }
    // The widest longitude reached on a small circle around p (spherical trigonometry).
    let ratio = angle.sin() / p.0.to_radians().cos();
    if ratio >= 1.0 {
        return all_lon;
    }
    let dlon = ratio.asin().to_degrees() + MARGIN_DEG;
    if p.1 - dlon < -180.0 || p.1 + dlon > 180.0 {
        return all_lon;
    }
    [lat_lo, lat_hi, p.1 - dlon, p.1 + dlon]
}

fn is_duplicate(
    a: &NewIncident,
    b_grid: &str,
    b_location: Option<(f64, f64)>,
    rule: DuplicateRule,
) -> bool {
    match (a.lat.zip(a.lon), b_location) {
        (Some(p), Some(q)) => distance_m(p, q) <= rule.radius_m,
        _ => a.grid_code == b_grid,
    }
}

/// Decides, for each candidate, whether it opens an incident or is attached to an open one: the
/// one the lookup found in the database (`matches`, per candidate; `stored` has its report count
/// as locked), or one opened by an earlier report of this batch.
fn place(
    candidates: &[&NewIncident],
    matches: &[Option<Match>],
    stored: &HashMap<Uuid, i32>,
    rule: DuplicateRule,
) -> Vec<Placement> {
    let mut added: HashMap<Uuid, i32> = HashMap::new();
    // The candidates that opened an incident, per category, in batch order.
    let mut opened: HashMap<&str, Vec<&NewIncident>> = HashMap::new();
    let mut placements: Vec<Placement> = Vec::with_capacity(candidates.len());
    for (&candidate, found) in candidates.iter().zip(matches) {
        let target = match found {
            Some(m) => Some((
                m.id,
                m.district_code.clone(),
                m.street_code.clone(),
                stored.get(&m.id).copied().unwrap_or(1),
            )),
            None => opened
                .get(candidate.category.as_str())
                .into_iter()
                .flatten()
                .find(|earlier| {
                    is_duplicate(
                        candidate,
                        &earlier.grid_code,
                        earlier.lat.zip(earlier.lon),
                        rule,
                    )
                })
                .map(|earlier| {
                    (
                        earlier.incident_id,
                        earlier.district_code.clone(),
                        earlier.street_code.clone(),
                        1,
                    )
                }),
        };
        placements.push(match target {
            None => {
                opened
                    .entry(candidate.category.as_str())
                    .or_default()
                    .push(candidate);
                Placement::New
            }
            Some((incident_id, district_code, street_code, stored)) => {
                let added = added.entry(incident_id).or_default();
                *added += 1;
                Placement::Attach(Attachment {
                    incident_id,
                    district_code,
                    street_code,
                    report_count: stored + *added,
                })
            }
        });
    }
    placements
}

/// The source keys among `keys` that already have a rejection row with `reason`: a report
/// redelivered after its rejection was committed, but before it was acked, must end the same way.
pub async fn already_rejected(
    pool: &PgPool,
    keys: &[String],
    reason: &str,
) -> Result<HashSet<String>> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT source_key FROM rejected_reports WHERE source_key = ANY($1) AND reason = $2",
    )
    .bind(keys)
    .bind(reason)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The point `distance_m` from `p` on `bearing_deg` (the direct geodesic problem on the sphere).
    fn destination(p: (f64, f64), bearing_deg: f64, distance_m: f64) -> (f64, f64) {
        let (lat, lon, bearing) = (p.0.to_radians(), p.1.to_radians(), bearing_deg.to_radians());
        let angle = distance_m / EARTH_RADIUS_M;
        let lat2 = (lat.sin() * angle.cos() + lat.cos() * angle.sin() * bearing.cos()).asin();
        let lon2 = lon
            + (bearing.sin() * angle.sin() * lat.cos()).atan2(angle.cos() - lat.sin() * lat2.sin());
        // Back into [-180, 180].
        let lon2 = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        (lat2.to_degrees(), lon2)
    }

    fn inside(b: [f64; 4], q: (f64, f64)) -> bool {
        (b[0]..=b[1]).contains(&q.0) && (b[2]..=b[3]).contains(&q.1)
    }

    #[test]
    fn the_box_is_the_neighbourhood_in_ordos_and_every_longitude_where_the_circle_wraps() {
        let ordos = (39.6086, 109.7813);
        let b = search_box(ordos, 100.0);
        // About ±0.0009° of latitude and ±0.0012° of longitude at 39.6° N.
        assert!((b[1] - b[0] - 0.0018).abs() < 1e-4, "{b:?}");
        assert!((b[3] - b[2] - 0.00234).abs() < 1e-4, "{b:?}");
        assert!(!inside(b, destination(ordos, 90.0, 150.0)));
        assert_eq!(search_box((10.0, 179.9999), 100.0)[2..], [-180.0, 180.0]);
        assert_eq!(search_box((-10.0, -179.9999), 100.0)[2..], [-180.0, 180.0]);
        assert_eq!(search_box((89.9995, 0.0), 100.0)[2..], [-180.0, 180.0]);
    }

    proptest! {
        #[test]
        fn every_point_within_the_radius_is_in_the_box(
            lat in -90.0f64..=90.0,
            lon in -180.0f64..=180.0,
            radius in 1.0f64..5_000.0,
            bearing in 0.0f64..360.0,
            fraction in 0.0f64..=1.0,
        ) {
            let p = (lat, lon);
            let q = destination(p, bearing, radius * fraction);
            prop_assume!(distance_m(p, q) <= radius);
            let b = search_box(p, radius);
            prop_assert!(inside(b, q), "{q:?} at {} m from {p:?} is outside {b:?}", distance_m(p, q));
        }
    }
}
