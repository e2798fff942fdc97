//! Intake's duplicate and cluster state, held in memory by the lease holder ([`super::lease`]):
//! a batch asks it which incidents a report may duplicate and how many reports each
//! (community, category) pair has had in its window, and PostgreSQL is only written, never
//! searched.
//!
//! **What it holds.** Every incident opened within the duplicate window (whatever its status: an
//! incident resolved and reopened is a duplicate again, and the batch reads the statuses of the
//! few incidents a report's candidates name, by primary key and locked), indexed by category,
//! by grid and by a lattice of cells about the radius wide; and per pair the times of its latest
//! `threshold` reports and of its latest alert. The holder is the only writer of reports and
//! incidents, so what it recorded plus what it read on taking over is exactly what PostgreSQL
//! holds — the test `intake_memory_equals_the_sql_lookup` drives both.
//!
//! Times are compared in microseconds, as PostgreSQL stores them.

use std::collections::{HashMap, VecDeque};

type Entries = VecDeque<Entry>;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{community_of, distance_m, search_box, ClusterRule, DuplicateRule, NewIncident};
use crate::Result;

/// The rules the state was built for; a policy that changes them needs a new state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub duplicates: DuplicateRule,
    pub clusters: ClusterRule,
}

impl PartialEq for DuplicateRule {
    fn eq(&self, other: &Self) -> bool {
        self.radius_m == other.radius_m && self.window == other.window
    }
}

impl PartialEq for ClusterRule {
    fn eq(&self, other: &Self) -> bool {
        self.threshold == other.threshold && self.window == other.window
    }
}

/// An incident that reports may be attached to.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Uuid,
    created: i64,
    location: Option<(f64, f64)>,
}

/// The incidents of one category.
#[derive(Default)]
struct Category {
    /// By grid (interned): a report without coordinates matches any of its grid, a located one
    /// the unlocated of its grid. Each list in the order added, about the order of time.
    located_by_grid: HashMap<u32, Entries>,
    unlocated_by_grid: HashMap<u32, Entries>,
    /// The located ones by lattice cell.
    cells: HashMap<(i32, i32), Entries>,
}

/// One (community, category) pair's recent past.
#[derive(Default)]
struct Pair {
    /// Its latest reports' times, oldest first, at most `threshold` of them: all the rule asks is
    /// whether the window holds that many.
    reports: VecDeque<i64>,
    last_alert: Option<i64>,
}

pub struct Memory {
    rules: Rules,
    /// Cell size in degrees of latitude and of longitude (the same number of degrees: wider in
    /// metres than tall, which only means a few more cells to look at away from the equator).
    cell_deg: f64,
    /// By category, interned in `category_ids`.
    categories: Vec<Category>,
    category_ids: HashMap<String, usize>,
    grids: HashMap<String, u32>,
    /// The incidents in the order added, for expiry.
    order: VecDeque<Added>,
    pairs: HashMap<(String, String), Pair>,
    /// The next time pairs are swept for expiry.
    sweep_at: i64,
}

/// Where an incident was added, to remove it when it expires.
struct Added {
    created: i64,
    category: usize,
    grid: u32,
    cell: Option<(i32, i32)>,
    id: Uuid,
}

/// An incident a batch opened.
#[derive(Debug)]
pub(crate) struct Opened {
    pub category: String,
    pub grid: String,
    pub location: Option<(f64, f64)>,
    pub created: DateTime<Utc>,
    pub id: Uuid,
}

/// What a batch added, applied to the memory once it committed.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub incidents: Vec<Opened>,
    /// Reports recorded, new or attached: (community, category, received).
    pub reports: Vec<(String, String, DateTime<Utc>)>,
    /// Alerts raised: (community, category, raised).
    pub alerts: Vec<(String, String, DateTime<Utc>)>,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Candidates for cells beyond this many are looked for by scanning the category (a radius
/// reaching a pole or the antimeridian, or a radius far larger than the cells).
const MAX_CELLS: i64 = 64;

impl Memory {
    pub fn new(rules: Rules) -> Memory {
        // Never narrower than the radius, so a neighbourhood spans a handful of cells.
        let cell_deg = rules.duplicates.radius_m.max(1.0) / 111_000.0;
        Memory {
            rules,
            cell_deg,
            categories: Vec::new(),
            category_ids: HashMap::new(),
            grids: HashMap::new(),
            order: VecDeque::new(),
            pairs: HashMap::new(),
            sweep_at: i64::MIN,
        }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Reads the state from PostgreSQL as of `now`: the incidents opened in the duplicate window
    /// (all but those that can never take a report again) and the reports and alerts in the
    /// cluster window. Run by a new lease holder, after taking the lease.
    pub async fn load(conn: &mut PgConnection, rules: Rules, now: DateTime<Utc>) -> Result<Memory> {
        let mut memory = Memory::new(rules);
        type Incident = (
            Uuid,
            String,
            String,
            Option<f64>,
            Option<f64>,
            DateTime<Utc>,
        );
        let incidents: Vec<Incident> = sqlx::query_as(
            "SELECT id, category, grid_code, lat, lon, created_at FROM incidents
             WHERE created_at >= $1 AND status NOT IN ('closed', 'closed_unverified', 'duplicate')
             ORDER BY created_at, id",
        )
        .bind(now - rules.duplicates.window)
        .fetch_all(&mut *conn)
        .await?;
        for (id, category, grid, lat, lon, created) in incidents {
            memory.add_incident(&category, &grid, lat.zip(lon), micros(created), id);
        }
        let cluster_start = now - rules.clusters.window;
        let reports: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT left(grid_code, 12), category, received_at FROM reports
             WHERE received_at > $1 ORDER BY received_at",
        )
        .bind(cluster_start)
        .fetch_all(&mut *conn)
        .await?;
        for (community, category, at) in reports {
            memory.add_report(community, category, micros(at));
        }
        let alerts: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT community_code, category, max(raised_at) FROM cluster_alerts
             WHERE raised_at > $1 GROUP BY community_code, category",
        )
        .bind(cluster_start)
        .fetch_all(&mut *conn)
        .await?;
        for (community, category, at) in alerts {
            memory
                .pairs
                .entry((community, category))
                .or_default()
                .last_alert = Some(micros(at));
        }
        Ok(memory)
    }

    /// How many incidents and pairs it holds.
    pub fn len(&self) -> (usize, usize) {
        (self.order.len(), self.pairs.len())
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty() && self.pairs.is_empty()
    }

    fn cell(&self, p: (f64, f64)) -> (i32, i32) {
        (
            (p.0 / self.cell_deg).floor() as i32,
            (p.1 / self.cell_deg).floor() as i32,
        )
    }

    fn grid_id(&mut self, grid: &str) -> u32 {
        if let Some(&id) = self.grids.get(grid) {
            return id;
        }
        let id = u32::try_from(self.grids.len()).expect("fewer than 2³² grids");
        self.grids.insert(grid.to_owned(), id);
        id
    }

    fn add_incident(
        &mut self,
        category: &str,
        grid: &str,
        location: Option<(f64, f64)>,
        created: i64,
        id: Uuid,
    ) {
        let grid = self.grid_id(grid);
        let cell = location.map(|p| self.cell(p));
        let entry = Entry {
            id,
            created,
            location,
        };
        let category = match self.category_ids.get(category) {
            Some(&c) => c,
            None => {
                self.categories.push(Category::default());
                self.category_ids
                    .insert(category.to_owned(), self.categories.len() - 1);
                self.categories.len() - 1
            }
        };
        let index = &mut self.categories[category];
        match cell {
            Some(cell) => {
                index
                    .located_by_grid
                    .entry(grid)
                    .or_default()
                    .push_back(entry);
                index.cells.entry(cell).or_default().push_back(entry);
            }
            None => index
                .unlocated_by_grid
                .entry(grid)
                .or_default()
                .push_back(entry),
        }
        self.order.push_back(Added {
            created,
            category,
            grid,
            cell,
            id,
        });
    }

    fn add_report(&mut self, community: String, category: String, at: i64) {
        let threshold = usize::try_from(self.rules.clusters.threshold.max(1)).unwrap_or(usize::MAX);
        let pair = self.pairs.entry((community, category)).or_default();
        // Kept in time order: a report older than all kept (a clock that stepped back) goes
        // where it belongs.
        let at_index = pair.reports.partition_point(|&t| t <= at);
        pair.reports.insert(at_index, at);
        while pair.reports.len() > threshold {
            pair.reports.pop_front();
        }
    }

    /// The incidents `report` duplicates by the rule (same category; within the radius, or in
    /// its grid where either lacks coordinates; opened within the window before it), oldest
    /// first. Whether each is still open is for PostgreSQL to say.
    pub(crate) fn candidates(&self, report: &NewIncident) -> Vec<Uuid> {
        let Some(&category) = self.category_ids.get(&report.category) else {
            return Vec::new();
        };
        let index = &self.categories[category];
        let rule = self.rules.duplicates;
        let since = micros(report.received_at) - rule.window.num_microseconds().unwrap_or(i64::MAX);
        let mut found: Vec<Entry> = Vec::new();
        let grid = self.grids.get(&report.grid_code);
        let in_grid = |map: &HashMap<u32, Entries>| {
            grid.and_then(|g| map.get(g))
                .into_iter()
                .flatten()
                .filter(|e| e.created >= since)
                .copied()
                .collect::<Vec<_>>()
        };
        found.extend(in_grid(&index.unlocated_by_grid));
        match report.lat.zip(report.lon) {
            None => found.extend(in_grid(&index.located_by_grid)),
            Some(p) => {
                let near = |e: &&Entry| {
                    e.created >= since
                        && e.location
                            .is_some_and(|q| distance_m(q, p) <= rule.radius_m)
                };
                let b = search_box(p, rule.radius_m);
                let (lo, hi) = (self.cell((b[0], b[2])), self.cell((b[1], b[3])));
                let cells = (i64::from(hi.0) - i64::from(lo.0) + 1)
                    * (i64::from(hi.1) - i64::from(lo.1) + 1);
                if cells <= MAX_CELLS {
                    for x in lo.0..=hi.0 {
                        for y in lo.1..=hi.1 {
                            found.extend(
                                index
                                    .cells
                                    .get(&(x, y))
                                    .into_iter()
                                    .flatten()
                                    .filter(near)
                                    .copied(),
                            );
                        }
                    }
                } else {
                    found.extend(index.cells.values().flatten().filter(near).copied());
                }
            }
        }
        found.sort_by_key(|e| (e.created, e.id));
        let mut ids: Vec<Uuid> = found.into_iter().map(|e| e.id).collect();
        ids.dedup();
        ids
    }

    /// The reports of `pair` after `window_start`, up to the threshold; `None` if the pair has
    /// had an alert after it (one alert per window).
    pub(crate) fn cluster_count(
        &self,
        community: &str,
        category: &str,
        window_start: DateTime<Utc>,
    ) -> Option<i64> {
        let start = micros(window_start);
        let Some(pair) = self.pairs.get(&(community.to_owned(), category.to_owned())) else {
            return Some(0);
        };
        if pair.last_alert.is_some_and(|t| t > start) {
            return None;
        }
        Some(pair.reports.iter().filter(|&&t| t > start).count() as i64)
    }

    /// Takes in what a committed batch added, and forgets what has left both windows as of `now`.
    pub(crate) fn apply(&mut self, applied: Applied, now: DateTime<Utc>) {
        for o in applied.incidents {
            self.add_incident(&o.category, &o.grid, o.location, micros(o.created), o.id);
        }
        for (community, category, at) in applied.reports {
            self.add_report(community, category, micros(at));
        }
        for (community, category, at) in applied.alerts {
            let pair = self.pairs.entry((community, category)).or_default();
            pair.last_alert = pair.last_alert.max(Some(micros(at)));
        }
        self.expire(micros(now));
    }

    fn expire(&mut self, now: i64) {
        let window = self
            .rules
            .duplicates
            .window
            .num_microseconds()
            .unwrap_or(i64::MAX);
        // Entries added out of time order leave a little late; lookups check the time anyway.
        while self
            .order
            .front()
            .is_some_and(|e| e.created < now.saturating_sub(window))
        {
            let Added {
                category,
                grid,
                cell,
                id,
                ..
            } = self.order.pop_front().expect("checked");
            let index = &mut self.categories[category];
            match cell {
                Some(cell) => {
                    remove(&mut index.located_by_grid, grid, id);
                    remove(&mut index.cells, cell, id);
                }
                None => remove(&mut index.unlocated_by_grid, grid, id),
            }
        }
        if now >= self.sweep_at {
            let start = now.saturating_sub(
                self.rules
                    .clusters
                    .window
                    .num_microseconds()
                    .unwrap_or(i64::MAX),
            );
            self.pairs.retain(|_, pair| {
                pair.reports.back().is_some_and(|&t| t > start)
                    || pair.last_alert.is_some_and(|t| t > start)
            });
            self.sweep_at = now.saturating_add(SWEEP_EVERY_MICROS);
        }
    }
}

/// Pairs are swept this often (they are few: communities × categories).
const SWEEP_EVERY_MICROS: i64 = 10_000_000;

/// Removes an expired entry: nearly always the oldest of its list.
fn remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Entries>, key: K, id: Uuid) {
    if let Some(entries) = map.get_mut(&key) {
        if entries.front().is_some_and(|e| e.id == id) {
            entries.pop_front();
        } else {
            entries.retain(|e| e.id != id);
        }
        if entries.is_empty() {
            map.remove(&key);
        }
    }
}

impl Applied {
    /// The report's pair, as the cluster rule counts it: by its grid's community.
    pub(crate) fn report(&mut self, report: &NewIncident) {
        self.reports.push((
            community_of(&report.grid_code).to_owned(),
            report.category.clone(),
            report.received_at,
        ));
    }
}
