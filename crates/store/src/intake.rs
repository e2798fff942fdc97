//! Recording a batch of reports: new incidents (with their engine state and timers), reports
//! attached to an open incident as duplicates, cluster alerts, rejections, and the events that
//! announce them — one transaction, a fixed handful of multi-row statements whatever the batch size.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;
use whistle_domain::incident::Timer;

use crate::{incidents::TimelineRows, Result};

/// The timeline note of an attached report is this followed by the report id; the query service
/// finds a report's attachment by it.
pub const ATTACHED_NOTE_PREFIX: &str = "duplicate report ";

/// An event to publish after commit, written to the outbox in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
}

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
    /// The report as protobuf, kept for the incident's detail view.
    pub report_payload: Vec<u8>,
    pub stream_sequence: Option<i64>,
    /// The engine's state (`whistle_domain::incident::Incident`) as JSON.
    pub state: serde_json::Value,
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

/// Records a batch atomically. Idempotent: a report id or rejection already stored is skipped,
/// together with its event, so redelivering a batch never duplicates an incident or an event.
///
/// A new report of the same category near an open incident (see [`DuplicateRule`]) is attached to
/// it instead of opening one; so is a report that matches an earlier report of the same batch.
pub async fn record(
    conn: &mut PgConnection,
    incidents: &[NewIncident],
    rejections: &[NewRejection],
    duplicates: DuplicateRule,
    clusters: ClusterRule,
    events: &impl IntakeEvents,
) -> Result<Recorded> {
    let mut tx = conn.begin().await?;
    let mut recorded = Recorded::default();

    if !incidents.is_empty() {
        // Reports already recorded (a redelivery) are skipped before anything refers to them. A
        // concurrent insert by another replica makes the commit fail, and the retry skips them.
        let known: HashSet<String> =
            sqlx::query_scalar("SELECT report_id FROM reports WHERE report_id = ANY($1)")
                .bind(
                    incidents
                        .iter()
                        .map(|i| i.report_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let candidates: Vec<&NewIncident> = incidents
            .iter()
            .filter(|i| !known.contains(&i.report_id))
            .collect();
        let placements = place(&mut tx, &candidates, duplicates).await?;

        // Every report row points at its incident (FK deferred to commit: new incidents follow).
        sqlx::query(
            "INSERT INTO reports (report_id, incident_id, reporter_id, grid_code, category, payload, stream_sequence, received_at)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::int8[], $8::timestamptz[])",
        )
        .bind(candidates.iter().map(|i| i.report_id.as_str()).collect::<Vec<_>>())
        .bind(candidates.iter().zip(&placements).map(|(c, p)| p.incident_id().unwrap_or(c.incident_id)).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.reporter_id.as_str()).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.grid_code.as_str()).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.category.as_str()).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.report_payload.as_slice()).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.stream_sequence).collect::<Vec<_>>())
        .bind(candidates.iter().map(|i| i.received_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;

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
        insert_incidents(&mut tx, &fresh, &attached_counts).await?;
        let existing: Vec<(Uuid, i32)> = attached_counts
            .iter()
            .filter(|(id, _)| !fresh.iter().any(|f| f.incident_id == **id))
            .map(|(id, n)| (*id, *n))
            .collect();
        if !existing.is_empty() {
            sqlx::query(
                "UPDATE incidents i SET report_count = i.report_count + t.n, updated_at = $3
                 FROM UNNEST($1::uuid[], $2::int4[]) AS t(id, n) WHERE i.id = t.id",
            )
            .bind(existing.iter().map(|e| e.0).collect::<Vec<_>>())
            .bind(existing.iter().map(|e| e.1).collect::<Vec<_>>())
            .bind(candidates.first().map(|c| c.received_at))
            .execute(&mut *tx)
            .await?;
        }

        // Timeline: the opening entry of each new incident, then one entry per attached report.
        let mut timeline = TimelineRows::default();
        let mut outbox = Vec::new();
        for incident in &fresh {
            timeline.push(
                incident.incident_id,
                "incident.reported",
                &incident.reporter_id,
                incident.received_at,
                format!("report {}", incident.report_id),
                None,
            );
            outbox.push(incident.event.clone());
        }
        for (candidate, placement) in candidates.iter().zip(&placements) {
            if let Placement::Attach(target) = placement {
                timeline.push(
                    target.incident_id,
                    "report.attached",
                    &candidate.reporter_id,
                    candidate.received_at,
                    format!("{ATTACHED_NOTE_PREFIX}{}", candidate.report_id),
                    None,
                );
                outbox.push(events.attached(candidate, target));
                recorded
                    .attached
                    .insert(candidate.report_id.clone(), target.incident_id);
            }
        }
        timeline.append(&mut tx).await?;

        let timers: Vec<(Uuid, Timer, DateTime<Utc>)> = fresh
            .iter()
            .flat_map(|i| i.timers.iter().map(move |(t, at)| (i.incident_id, *t, *at)))
            .collect();
        crate::incidents::schedule(&mut tx, &timers).await?;

        if let Some(now) = candidates.iter().map(|c| c.received_at).max() {
            recorded.clusters = raise_clusters(&mut tx, &candidates, clusters, now).await?;
            outbox.extend(recorded.clusters.iter().map(|c| events.cluster(c)));
        }
        insert_outbox(&mut tx, outbox.iter()).await?;
        recorded.incidents = fresh.iter().map(|i| i.incident_id).collect();
    }

    if !rejections.is_empty() {
        let new_keys: HashSet<String> = sqlx::query_scalar(
            "INSERT INTO rejected_reports (source_key, reason, message, subject, report_id, reporter_id, stream_sequence, payload, received_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::bytea[], $9::timestamptz[])
             ON CONFLICT (source_key) DO NOTHING
             RETURNING source_key",
        )
        .bind(rejections.iter().map(|r| r.source_key.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.message.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.report_id.as_deref()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.reporter_id.as_deref()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.stream_sequence).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>())
        .bind(rejections.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // A batch may hold one message twice (a redelivery after the ack wait lands in the same
        // pull as the first delivery): the row is inserted once, and so is its event.
        let mut unannounced = new_keys.clone();
        let fresh = rejections
            .iter()
            .filter(|r| unannounced.remove(&r.source_key));
        insert_outbox(&mut tx, fresh.map(|r| &r.event)).await?;
        recorded.rejections = new_keys;
    }

    tx.commit().await?;
    Ok(recorded)
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

/// Decides, for each candidate, whether it opens an incident or is attached to an open one (in
/// the database, or opened earlier in this batch). Existing targets are locked, in id order.
async fn place(
    conn: &mut PgConnection,
    candidates: &[&NewIncident],
    rule: DuplicateRule,
) -> Result<Vec<Placement>> {
    let boxes: Vec<Option<[f64; 4]>> = candidates
        .iter()
        .map(|c| c.lat.zip(c.lon).map(|p| search_box(p, rule.radius_m)))
        .collect();
    let bound = |k: usize| boxes.iter().map(|b| b.map(|b| b[k])).collect::<Vec<_>>();
    let matches: Vec<(i64, Uuid, String, String, i32)> = sqlx::query_as(
        "SELECT r.n, m.id, m.district_code, m.street_code, m.report_count
         FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[],
                     $8::float8[], $9::float8[], $10::float8[], $11::float8[]) WITH ORDINALITY
             AS r(category, grid, lat, lon, at, lat_lo, lat_hi, lon_lo, lon_hi, n)
         CROSS JOIN LATERAL (
             SELECT i.id, i.district_code, i.street_code, i.report_count
             FROM incidents i
             WHERE i.category = r.category
               AND i.status IN ('handling', 'whistled', 'accepted')
               AND i.created_at >= r.at - make_interval(secs => $6)
               AND ((r.lat IS NOT NULL
                     AND i.lat BETWEEN r.lat_lo AND r.lat_hi AND i.lon BETWEEN r.lon_lo AND r.lon_hi
                     AND 2 * 6371000 * asin(sqrt(power(sin(radians(i.lat - r.lat) / 2), 2)
                         + cos(radians(r.lat)) * cos(radians(i.lat)) * power(sin(radians(i.lon - r.lon) / 2), 2))) <= $7)
                    OR (i.grid_code = r.grid AND (r.lat IS NULL OR i.lat IS NULL)))
             ORDER BY i.created_at
             LIMIT 1) m",
    )
    .bind(candidates.iter().map(|c| c.category.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.grid_code.as_str()).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.lat).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.lon).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.received_at).collect::<Vec<_>>())
    .bind(rule.window.num_milliseconds() as f64 / 1000.0)
    .bind(rule.radius_m)
    .bind(bound(0))
    .bind(bound(1))
    .bind(bound(2))
    .bind(bound(3))
    .fetch_all(&mut *conn)
    .await?;

    let mut targets: Vec<Uuid> = matches.iter().map(|m| m.1).collect();
    targets.sort();
    targets.dedup();
    if !targets.is_empty() {
        sqlx::query("SELECT id FROM incidents WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&targets)
            .execute(&mut *conn)
            .await?;
    }
    let by_candidate: HashMap<usize, &(i64, Uuid, String, String, i32)> =
        matches.iter().map(|m| (m.0 as usize - 1, m)).collect();

    let mut counts: HashMap<Uuid, i32> = HashMap::new();
    let mut placements: Vec<Placement> = Vec::with_capacity(candidates.len());
    for (n, candidate) in candidates.iter().enumerate() {
        let target = match by_candidate.get(&n) {
            Some((_, id, district, street, count)) => {
                Some((*id, district.clone(), street.clone(), *count))
            }
            // An earlier report of this batch that opened an incident.
            None => candidates[..n]
                .iter()
                .zip(&placements)
                .find_map(|(earlier, placement)| {
                    let opened = matches!(placement, Placement::New)
                        && earlier.category == candidate.category;
                    (opened
                        && is_duplicate(
                            candidate,
                            &earlier.grid_code,
                            earlier.lat.zip(earlier.lon),
                            rule,
                        ))
                    .then(|| {
                        (
                            earlier.incident_id,
                            earlier.district_code.clone(),
                            earlier.street_code.clone(),
                            1,
                        )
                    })
                }),
        };
        placements.push(match target {
            None => Placement::New,
            Some((incident_id, district_code, street_code, stored)) => {
                let added = counts.entry(incident_id).or_default();
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
    Ok(placements)
}

async fn insert_incidents(
    conn: &mut PgConnection,
    fresh: &[&NewIncident],
    attached: &HashMap<Uuid, i32>,
) -> Result<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO incidents (id, status, level, category, urgency, title, description,
             district_code, street_code, community_code, grid_code, lat, lon, address, reporter_id,
             policy_version, occurred_at, reported_at, created_at, updated_at, due_at, level_due_at, state, report_count)
         SELECT id, status, level, category, urgency, title, description, district_code, street_code,
             community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
             reported_at, created_at, created_at, due_at, level_due_at, state, report_count
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[], $11::text[], $12::float8[], $13::float8[], $14::text[],
             $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[],
             $21::timestamptz[], $22::jsonb[], $23::int4[])
             AS t(id, status, level, category, urgency, title, description, district_code, street_code,
                  community_code, grid_code, lat, lon, address, reporter_id, policy_version, occurred_at,
                  reported_at, created_at, due_at, level_due_at, state, report_count)",
    )
    .bind(fresh.iter().map(|i| i.incident_id).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.status).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.level).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.category.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.urgency).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.title.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.description.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.district_code.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.street_code.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.community_code.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.grid_code.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.lat).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.lon).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.address.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.reporter_id.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.policy_version.as_str()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.occurred_at).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.reported_at).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.received_at).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.due_at).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.level_due_at).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| i.state.clone()).collect::<Vec<_>>())
    .bind(fresh.iter().map(|i| 1 + attached.get(&i.incident_id).copied().unwrap_or(0)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Raises one alert per community and category that reached the threshold within the window and
/// has had no alert within it.
async fn raise_clusters(
    conn: &mut PgConnection,
    candidates: &[&NewIncident],
    rule: ClusterRule,
    now: DateTime<Utc>,
) -> Result<Vec<ClusterAlert>> {
    let mut touched: Vec<(String, String)> = candidates
        .iter()
        .map(|c| (c.community_code.clone(), c.category.clone()))
        .collect();
    touched.sort();
    touched.dedup();
    // Replicas racing on the same pair take turns, so only one raises it.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h)
         FROM (SELECT DISTINCT hashtext(c || '/' || k) AS h FROM UNNEST($1::text[], $2::text[]) AS t(c, k) ORDER BY h) AS keys",
    )
        .bind(touched.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
        .bind(touched.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    let window_start = now - rule.window;
    // Pairs with an alert in the window are passed over before their reports are counted: under
    // a steady flow nearly every pair has one, and counting them would grow with rate × window.
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "WITH quiet AS MATERIALIZED (
             SELECT t.community, t.category FROM UNNEST($1::text[], $2::text[]) AS t(community, category)
             WHERE NOT EXISTS (SELECT 1 FROM cluster_alerts a
                               WHERE a.community_code = t.community AND a.category = t.category AND a.raised_at > $3))
         INSERT INTO cluster_alerts (community_code, category, window_start, reports, raised_at)
         SELECT q.community, q.category, $3, c.n, $5
         FROM quiet q
         CROSS JOIN LATERAL (
             SELECT count(*) AS n FROM reports r
             WHERE left(r.grid_code, 12) = q.community AND r.category = q.category AND r.received_at > $3) c
         WHERE c.n >= $4
         RETURNING community_code, category, reports",
    )
    .bind(touched.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
    .bind(touched.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
    .bind(window_start)
    .bind(rule.threshold)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(community_code, category, reports)| ClusterAlert {
            community_code,
            category,
            reports: reports.into(),
            window_start,
        })
        .collect())
}

pub(crate) async fn insert_outbox<'a>(
    conn: &mut PgConnection,
    events: impl Iterator<Item = &'a OutboxEvent>,
) -> Result<()> {
    let (mut ids, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        ids.push(event.event_id);
        subjects.push(event.subject.as_str());
        payloads.push(event.payload.as_slice());
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])",
    )
    .bind(ids)
    .bind(subjects)
    .bind(payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
