//! One generation of aggregates: every incident's facts and the counters of every area, read
//! for an overview or a trend.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering},
        RwLock,
    },
};

use chrono::{DateTime, Utc};
use dashmap::{mapref::entry::Entry as MapEntry, DashMap};
use uuid::Uuid;
use whistle_domain::{incident::Status, policy::LedgerRates, AreaCode, Level};
use whistle_proto::v1;

use super::{
    board::{self, MonthBoard, MonthId, Row},
    contributions, day_of, day_start, hour_of, hour_start,
    late::LateList,
    level_index, micros, status_index, AreaCounters, AreaKey, CategoryId, Change, Day,
    DepartmentId, Facts, Hour, Micros, Update, Urgency, KEPT_DAYS, SETTLED_KEPT,
};
use crate::{area::GridRange, convert, overview, scoreboard, Error, Result};

#[derive(Debug, Default)]
struct Categories {
    ids: HashMap<Box<str>, CategoryId>,
    names: Vec<Box<str>>,
}

/// Department codes, interned.
#[derive(Debug, Default)]
struct Departments {
    ids: HashMap<Box<str>, DepartmentId>,
    codes: Vec<Box<str>>,
}

/// One row a board lists.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub code: String,
    pub name: String,
    /// Where it belongs: a department's area (its district, or the city), a street's own code.
    pub place: String,
    pub row: Row,
}

/// What the boards list, read with each rebuild.
#[derive(Debug, Default)]
pub(crate) struct Org {
    /// The codes of the org units an area may name (city, districts, streets).
    pub units: std::collections::HashSet<String>,
    pub departments: Vec<Member>,
    pub streets: Vec<Member>,
}

/// An incident in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Live(Box<Facts>),
    /// Terminal: its contributions can no longer change, so only the version is kept, and when
    /// it became terminal (an upper bound of every event's time): once that is before the
    /// store's floor the entry is dropped (see [`Store::advance`]).
    Settled {
        version: u64,
        at: Micros,
    },
}

impl Entry {
    /// The entry of `facts` as they stand after a transition at `at`.
    fn of(facts: Facts, at: Micros) -> Entry {
        if facts.status.is_terminal() {
            Entry::Settled {
                version: facts.version,
                at,
            }
        } else {
            Entry::Live(Box::new(facts))
        }
    }

    fn version(&self) -> u64 {
        match self {
            Entry::Live(facts) => facts.version,
            Entry::Settled { version, .. } => *version,
        }
    }
}

/// How much a store holds; see [`Store::sizes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub live: usize,
    pub settled: usize,
    pub months: usize,
    pub areas: usize,
    /// Items of the late list: open incidents and their tasks in progress.
    pub late: usize,
}

/// An event the store cannot apply: the store no longer matches the stream and must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Inconsistency {
    #[error("incident {0} changed but was never reported")]
    Unknown(Uuid),
    #[error("incident {0} changed after it was closed")]
    ChangedAfterClosing(Uuid),
}

/// One generation of aggregates: built by a rebuild, then kept current from the stream.
pub(crate) struct Store {
    /// How ledger cases (挂账) count in the resolution rate: the policy's, fixed for the store's
    /// life, since every change is counted by taking an incident's old items away.
    ledger: LedgerRates,
    incidents: DashMap<Uuid, Entry>,
    areas: DashMap<AreaKey, AreaCounters>,
    late: LateList,
    categories: RwLock<Categories>,
    departments: RwLock<Departments>,
    /// The scoreboard's rows, per month, from `first_month` on.
    boards: DashMap<MonthId, MonthBoard>,
    /// The oldest month with rows: the month of the oldest day counters keep. Older months are
    /// dropped, and changes to them ignored on both sides; `GetScoreboard` reads them from
    /// PostgreSQL.
    first_month: AtomicI32,
    org: RwLock<std::sync::Arc<Org>>,
    /// The stream sequence of `WHISTLE_EVENTS` applied so far.
    applied: AtomicU64,
    /// The latest transition seen (an event's time, or a snapshot's `updated_at`).
    watermark: AtomicI64,
    /// Terminal incidents settled before this are dropped; an event before it about an incident
    /// the store does not hold is one of theirs, and changes nothing. Only moves forward, and
    /// stays [`SETTLED_KEPT`] behind the watermark (and the clock).
    floor: AtomicI64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("incidents", &self.incidents.len())
            .field("areas", &self.areas.len())
            .field("months", &self.boards.len())
            .field("applied", &self.applied())
            .finish()
    }
}

impl Store {
    pub(crate) fn new(applied: u64, ledger: LedgerRates) -> Store {
        Store {
            ledger,
            incidents: DashMap::new(),
            areas: DashMap::new(),
            late: LateList::default(),
            categories: RwLock::default(),
            departments: RwLock::default(),
            boards: DashMap::new(),
            first_month: AtomicI32::new(MonthId::MIN),
            org: RwLock::default(),
            applied: AtomicU64::new(applied),
            watermark: AtomicI64::new(Micros::MIN),
            floor: AtomicI64::new(Micros::MIN),
        }
    }

    /// How the store counts ledger cases in the resolution rate.
    pub(crate) fn ledger(&self) -> LedgerRates {
        self.ledger
    }

    /// Incidents held (live, and terminal ones not yet past the floor) and months of
    /// scoreboard rows: what grows with history unless the pruning keeps it bounded.
    pub(crate) fn sizes(&self) -> Sizes {
        let settled = self
            .incidents
            .iter()
            .filter(|e| matches!(e.value(), Entry::Settled { .. }))
            .count();
        Sizes {
            live: self.incidents.len() - settled,
            settled,
            months: self.boards.len(),
            areas: self.areas.len(),
            late: self.late.len(),
        }
    }

    /// Records that a transition happened at `at`.
    pub(crate) fn observe(&self, at: Micros) {
        self.watermark.fetch_max(at, Ordering::AcqRel);
    }

    fn floor(&self) -> Micros {
        self.floor.load(Ordering::Acquire)
    }

    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(crate) fn set_applied(&self, sequence: u64) {
        self.applied.fetch_max(sequence, Ordering::AcqRel);
    }

    pub(crate) fn category(&self, code: &str) -> CategoryId {
        let known = self
            .categories
            .read()
            .expect("the category lock is never poisoned")
            .ids
            .get(code)
            .copied();
        if let Some(id) = known {
            return id;
        }
        let mut categories = self
            .categories
            .write()
            .expect("the category lock is never poisoned");
        let next = CategoryId(u32::try_from(categories.names.len()).expect("categories fit"));
        let id = *categories.ids.entry(code.into()).or_insert(next);
        if id == next {
            categories.names.push(code.into());
        }
        id
    }

    pub(crate) fn department(&self, code: &str) -> DepartmentId {
        let known = self
            .departments
            .read()
            .expect("the department lock is never poisoned")
            .ids
            .get(code)
            .copied();
        if let Some(id) = known {
            return id;
        }
        let mut departments = self
            .departments
            .write()
            .expect("the department lock is never poisoned");
        let next = DepartmentId(u32::try_from(departments.codes.len()).expect("departments fit"));
        let id = *departments.ids.entry(code.into()).or_insert(next);
        if id == next {
            departments.codes.push(code.into());
        }
        id
    }

    /// The rows the boards list and the units an area may name.
    pub(crate) fn set_org(&self, org: Org) {
        *self.org.write().expect("the org lock is never poisoned") = std::sync::Arc::new(org);
    }

    fn category_name(&self, id: CategoryId) -> String {
        let categories = self
            .categories
            .read()
            .expect("the category lock is never poisoned");
        categories.names[id.0 as usize].to_string()
    }

    /// Moves every area's horizon to `hour`, the clock's current one (pruning what no window or
    /// trend reaches).
    pub(crate) fn advance(&self, hour: Hour) {
        for mut area in self.areas.iter_mut() {
            area.advance(hour);
        }
        let first_day = day_of(hour_start(hour)).saturating_sub(KEPT_DAYS - 1);
        let first_month = board::month_of(day_start(first_day));
        if self.first_month.fetch_max(first_month, Ordering::AcqRel) < first_month {
            self.boards.retain(|month, _| *month >= first_month);
        }
        for mut board in self.boards.iter_mut() {
            board.settle(hour_start(hour));
        }
        // The clock caps the watermark, so one event stamped far ahead (a replica's clock
        // gone wrong) cannot drop incidents the store still needs.
        let now = hour_start(hour.saturating_add(1));
        let floor = self
            .watermark
            .load(Ordering::Acquire)
            .min(now)
            .saturating_sub(SETTLED_KEPT);
        if self.floor.fetch_max(floor, Ordering::AcqRel) < floor {
            self.incidents
                .retain(|_, entry| !matches!(entry, Entry::Settled { at, .. } if *at < floor));
        }
    }

    /// Takes `old`'s contributions away and adds `new`'s, area by area (each area under its lock,
    /// so a reader sees an area before or after the change, never half of it), and replaces the
    /// incident's items on the late list.
    fn replace(&self, id: Uuid, old: Option<&Facts>, new: &Facts, hour: Hour) {
        let removed = old
            .map(|facts| contributions(facts, self.ledger))
            .unwrap_or_default();
        let added = contributions(new, self.ledger);
        // The grid never changes; it is taken from the new facts for a new incident.
        let grid = old.map_or(new.grid, |o| o.grid);
        for key in grid.areas() {
            let mut area = self
                .areas
                .entry(key)
                .or_insert_with(|| AreaCounters::new(hour));
            area.advance(hour);
            for c in &removed {
                area.add(*c, -1);
            }
            for c in &added {
                area.add(*c, 1);
            }
        }
        self.replace_items(old, new, hour);
        self.late.replace(id, old, new);
    }

    /// The scoreboard's side of [`Store::replace`]: each month under its lock, so a board is read
    /// before or after the change, never half of it.
    fn replace_items(&self, old: Option<&Facts>, new: &Facts, hour: Hour) {
        let mut removed = old
            .map(|facts| board::items(facts, self.ledger))
            .unwrap_or_default();
        let mut added = board::items(new, self.ledger);
        if removed == added {
            return;
        }
        removed.sort_by_key(|(month, ..)| *month);
        added.sort_by_key(|(month, ..)| *month);
        let mut months: Vec<MonthId> = removed
            .iter()
            .chain(&added)
            .map(|(month, ..)| *month)
            .collect();
        months.dedup();
        months.sort_unstable();
        months.dedup();
        let horizon = hour_start(hour);
        let first_month = self.first_month.load(Ordering::Acquire);
        for month in months.into_iter().filter(|m| *m >= first_month) {
            let mut board = self
                .boards
                .entry(month)
                .or_insert_with(|| MonthBoard::new(horizon));
            board.settle(horizon);
            for (_, row, item) in removed.iter().filter(|(m, ..)| *m == month) {
                board.add(*row, *item, -1);
            }
            for (_, row, item) in added.iter().filter(|(m, ..)| *m == month) {
                board.add(*row, *item, 1);
            }
        }
    }

    /// `GetScoreboard` at `now`: every department or street of the area, from the month's rows;
    /// `None` for a month older than the rows kept, and for the channel board.
    pub(crate) fn scoreboard(
        &self,
        query: &scoreboard::Query,
        scoring: &whistle_domain::policy::Scoring,
        now: DateTime<Utc>,
    ) -> Result<Option<v1::Scoreboard>> {
        let org = self
            .org
            .read()
            .expect("the org lock is never poisoned")
            .clone();
        if let Some(area) = &query.area {
            if !org.units.contains(area.as_str()) {
                return Err(Error::not_found(format!("no org unit {area}")));
            }
        }
        let range = query.area.as_ref().map(GridRange::of);
        let inside = |place: &str| {
            range
                .as_ref()
                .is_none_or(|r| place >= r.low.as_str() && place < r.high.as_str())
        };
        let members = match query.kind {
            scoreboard::Kind::Departments => &org.departments,
            scoreboard::Kind::Streets => &org.streets,
            // Incidents carry no channel in the events; the channel board is read by SQL.
            scoreboard::Kind::Channels => return Ok(None),
        };
        let month = board::month_of(micros(query.month.start));
        if month < self.first_month.load(Ordering::Acquire) {
            return Ok(None);
        }
        let now = micros(now);
        let board = self.boards.get(&month);
        let listed: Vec<&Member> = members.iter().filter(|m| inside(&m.place)).collect();
        let rows = listed.iter().map(|m| {
            let tally = board
                .as_ref()
                .and_then(|b| b.rows.get(&m.row).map(|r| r.tally(now, b.cutoff)))
                .unwrap_or_default();
            (m.code.clone(), m.name.clone(), tally)
        });
        // The category mix of the street board: the listed streets' incidents by category.
        let mut mix: HashMap<CategoryId, u64> = HashMap::new();
        if let (scoreboard::Kind::Streets, Some(board)) = (query.kind, &board) {
            let streets: std::collections::HashSet<Row> = listed.iter().map(|m| m.row).collect();
            for (row, counters) in &board.rows {
                if let Row::StreetCategory(street, category) = row {
                    if streets.contains(&Row::Street(*street)) {
                        *mix.entry(*category).or_default() +=
                            counters.tally(now, board.cutoff).sample;
                    }
                }
            }
        }
        let categories = mix
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(category, n)| (self.category_name(category), n))
            .collect();
        Ok(Some(scoreboard::assemble(query, scoring, rows, categories)))
    }

    /// Records an incident as read from PostgreSQL (the rebuild), last changed at `updated`,
    /// unless a newer version is held. `hour` is the clock's current hour, as for
    /// [`Store::apply`]. A terminal incident settled before the floor is counted and not kept.
    pub(crate) fn put(&self, id: Uuid, facts: Facts, updated: Micros, hour: Hour) {
        self.observe(updated);
        let dropped = facts.status.is_terminal() && updated < self.floor();
        match self.incidents.entry(id) {
            MapEntry::Occupied(mut held) => {
                if facts.version <= held.get().version() {
                    return;
                }
                if let Entry::Live(old) = held.get() {
                    self.replace(id, Some(old), &facts, hour);
                    if dropped {
                        held.remove();
                    } else {
                        held.insert(Entry::of(facts, updated));
                    }
                }
            }
            MapEntry::Vacant(vacant) => {
                self.replace(id, None, &facts, hour);
                if !dropped {
                    vacant.insert(Entry::of(facts, updated));
                }
            }
        }
    }

    /// Applies one event at the clock's current `hour`; `Ok(false)` when it is not newer than
    /// what the store holds, or is about a terminal incident already dropped (an event before
    /// the floor about an incident the store does not hold).
    pub(crate) fn apply(&self, update: Update, hour: Hour) -> Result<bool, Inconsistency> {
        let Update {
            id,
            version,
            at,
            change,
        } = update;
        self.observe(at);
        match self.incidents.entry(id) {
            MapEntry::Occupied(mut held) => {
                if version <= held.get().version() {
                    return Ok(false);
                }
                let Entry::Live(old) = held.get() else {
                    return Err(Inconsistency::ChangedAfterClosing(id));
                };
                let new = match change {
                    Change::Opened(facts) => facts,
                    Change::Changed(state, kinds) => old.next(version, at, state, kinds),
                };
                self.replace(id, Some(old), &new, hour);
                held.insert(Entry::of(new, at));
                Ok(true)
            }
            // Every event of a dropped incident happened by the time it settled, which was
            // before the floor; a new incident's events come after it (the floor trails the
            // newest event by a day).
            MapEntry::Vacant(_) if at < self.floor() => Ok(false),
            MapEntry::Vacant(vacant) => match change {
                Change::Opened(facts) => {
                    self.replace(id, None, &facts, hour);
                    vacant.insert(Entry::of(facts, at));
                    Ok(true)
                }
                Change::Changed(..) => Err(Inconsistency::Unknown(id)),
            },
        }
    }

    /// `ListOverdue` of an area at `now`, at most `limit` items (overdue.rs's definition).
    pub(crate) fn overdue(
        &self,
        area: &AreaCode,
        limit: usize,
        now: DateTime<Utc>,
    ) -> v1::ListOverdueResponse {
        let late = self.late.list(area, limit, micros(now));
        let org = self
            .org
            .read()
            .expect("the org lock is never poisoned")
            .clone();
        let names: HashMap<&str, &str> = org
            .departments
            .iter()
            .map(|m| (m.code.as_str(), m.name.as_str()))
            .collect();
        let departments = self
            .departments
            .read()
            .expect("the department lock is never poisoned");
        let items = late
            .into_iter()
            .map(|(key, item)| {
                let code = item
                    .department
                    .map_or("", |id| &*departments.codes[id.0 as usize]);
                let due = DateTime::from_timestamp_micros(key.due)
                    .expect("deadlines are stored timestamps");
                v1::OverdueItem {
                    incident_id: key.incident.to_string(),
                    task_id: key.task.map(|t| t.to_string()).unwrap_or_default(),
                    department_code: code.to_owned(),
                    department_name: names.get(code).copied().unwrap_or_default().to_owned(),
                    title: item.title.to_string(),
                    due_at: Some(convert::timestamp(due)),
                    late_by: Some(convert::duration(now - due)),
                    level: whistle_wire::convert::level_to_proto(item.level) as i32,
                    street_code: format!("{:09}", item.grid.street()),
                }
            })
            .collect();
        v1::ListOverdueResponse { items }
    }

    /// An area's open and overdue incidents at `now`, as its overview counts them.
    pub(super) fn open_and_overdue(&self, key: AreaKey, now: DateTime<Utc>) -> (u64, u64) {
        self.areas.get(&key).map_or((0, 0), |area| {
            let count = |n: i64| u64::try_from(n).unwrap_or_default();
            (count(area.open()), count(area.overdue(micros(now))))
        })
    }

    /// The overview of an area at `now` over a window of `window_days` whole days.
    pub(crate) fn overview(
        &self,
        area_code: &str,
        key: AreaKey,
        window_days: i64,
        now: DateTime<Utc>,
    ) -> v1::Overview {
        let mut out = v1::Overview {
            area_code: area_code.to_owned(),
            as_of: Some(convert::timestamp(now)),
            rates: Some(overview::rates(v1::Rates::default())),
            ledger: Some(v1::LedgerSize::default()),
            ..Default::default()
        };
        let Some(area) = self.areas.get(&key) else {
            return out;
        };
        let now = micros(now);
        let today = day_of(now);
        let first = today.saturating_sub(Day::try_from(window_days - 1).unwrap_or(Day::MAX));
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        let named = |pairs: Vec<(String, i64)>| {
            overview::counts(
                pairs
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(key, n)| (key, count(n)))
                    .collect(),
            )
        };

        out.by_status = named(
            Status::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), area.by_status[status_index(*s)]))
                .collect(),
        );
        out.open_incidents = count(area.open());
        out.by_level = named(
            Level::ALL
                .iter()
                .map(|l| (l.as_str().to_owned(), area.open_by_level[level_index(*l)]))
                .collect(),
        );
        out.by_urgency = named(
            Urgency::ALL
                .iter()
                .map(|u| (u.as_str().to_owned(), area.open_by_urgency[*u as usize]))
                .collect(),
        );
        out.by_category = named(
            area.open_by_category
                .iter()
                .map(|(id, n)| (self.category_name(*id), *n))
                .collect(),
        );
        out.overdue = count(area.overdue(now));
        let entered: Vec<Micros> = area
            .ledger
            .iter()
            .flat_map(|(at, n)| std::iter::repeat_n(*at, usize::try_from(*n).unwrap_or_default()))
            .collect();
        out.ledger = Some(overview::ledger_size(&entered, now));

        let on_today = area.days.get(&today).copied().unwrap_or_default();
        out.reported_today = count(on_today.reported.into());
        out.resolved_today = count(on_today.resolved.into());
        out.whistles_today = count(on_today.whistles.into());

        let mut rates = v1::Rates::default();
        let (mut due, mut resolved_in_time) = (0i64, 0i64);
        for (day, d) in area.days.range(first..=today) {
            rates.dispatched += count(d.dispatched.into());
            rates.accepted_in_time += count(d.accepted_in_time.into());
            rates.followed_up += count(d.followed_up.into());
            rates.satisfied += count(d.satisfied.into());
            if *day < today {
                due += i64::from(d.due);
                resolved_in_time += i64::from(d.resolved_in_time);
            }
        }
        // Today's deadlines only up to now: one due later today is not due yet.
        let (due_today, in_time_today) = area.due_by(today, now);
        due += due_today;
        resolved_in_time += in_time_today;
        rates.due = count(due);
        rates.resolved_in_time = count(resolved_in_time);
        out.rates = Some(overview::rates(rates));
        out
    }

    /// The trend of an area: `hours` buckets ending with the hour of `now`, oldest first.
    pub(crate) fn trend(
        &self,
        area_code: &str,
        key: AreaKey,
        hours: u32,
        now: DateTime<Utc>,
    ) -> v1::Trend {
        let current = hour_of(micros(now));
        let first = current.saturating_sub(Hour::try_from(hours).unwrap_or(Hour::MAX) - 1);
        let mut buckets: Vec<v1::TrendBucket> = (first..=current)
            .map(|hour| v1::TrendBucket {
                start: Some(prost_types::Timestamp {
                    seconds: hour_start(hour) / 1_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .collect();
        // `hours` is at least 1 (parse_hours); with 0 the range would be reversed.
        if let Some(area) = self.areas.get(&key).filter(|_| first <= current) {
            let count = |n: i32| u64::try_from(n).unwrap_or_default();
            for (hour, counts) in area.hours.range(first..=current) {
                let bucket = &mut buckets[(hour - first) as usize];
                bucket.reported = count(counts.reported);
                bucket.resolved = count(counts.resolved);
            }
        }
        v1::Trend {
            area_code: area_code.to_owned(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests;
