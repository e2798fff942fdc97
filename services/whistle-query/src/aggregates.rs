//! The live aggregates behind `GetOverview` and `GetTrend`: per-area counters in memory, kept
//! current from `WHISTLE_EVENTS` and rebuilt from PostgreSQL at start, so an overview or a trend
//! reads a few counters instead of scanning the area's incidents, tasks and timeline.
//!
//! **Model.** Per incident the store keeps its [`Facts`] — the handful of fields the overview
//! counts — and its version. The counters are a pure function of the facts: [`contributions`]
//! lists what one incident adds to each area that contains it (everything, the city, its
//! district, street, community and grid). Every event carries the incident as it stands after its
//! transition, so applying one replaces the incident's facts: the old facts' contributions are
//! taken away and the new ones added — by the same function, so adding and removing can never
//! disagree.
//!
//! **Versions.** An event whose version is not newer than the stored one changes nothing, which
//! makes replays and the overlap between the rebuild's snapshot and the stream harmless. One
//! transition publishes several events with the same version (`task.resolved` then
//! `incident.resolved`); each lists the kinds of the whole transition (`transition_kinds`), so the
//! first one seen brings everything, including what only the kinds tell: a whistle, a
//! resolution, a follow-up, and when. Terminal incidents (closed, closed unverified, duplicate)
//! never change again, so they shrink to their version.
//!
//! **Time.** Day figures are kept per area and Shanghai day, the trend's per area and UTC hour
//! (whole hours of Shanghai too). Two figures depend on the time of day: `overdue` (open and past
//! `due_at`, before dispatch's timer sets the flag) and the resolution rate (deadlines up to now,
//! not later today). For those each area keeps its deadlines to the microsecond: those of open,
//! unflagged incidents, and those from today on. Day counters older than the longest window (366
//! days, plus one), hour counters older than the longest trend (168 hours, plus one) and deadline entries of
//! past days are pruned as hours go by; a change to a pruned entry is ignored on both the removing
//! and the adding side, so pruning keeps the diffs consistent.
//!
//! Timestamps are compared in microseconds, truncated as sqlx stores them, so that comparisons
//! such as "reported in by the deadline" give what PostgreSQL gives for the stored values.
//!
//! Feeding the store (rebuild, then follow the stream) is in `aggregates/feed.rs`; reading the
//! snapshot from PostgreSQL in `aggregates/load.rs`.

mod feed;
mod load;

use std::{
    collections::{btree_map, BTreeMap, HashMap},
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use chrono::{DateTime, TimeDelta, Utc};
use dashmap::{mapref::entry::Entry as MapEntry, DashMap};
use uuid::Uuid;
use whistle_domain::{
    incident::{Satisfaction, Status},
    AreaCode, Level,
};
use whistle_proto::v1;

use crate::{convert, overview, trend, Error, Result};

pub(crate) use feed::Feed;

/// Microseconds since the Unix epoch.
pub(crate) type Micros = i64;
/// A calendar day in Asia/Shanghai (UTC+8 all year), counted from 1970-01-01.
pub(crate) type Day = i32;
/// A whole hour of UTC, counted from 1970-01-01T00:00Z; Shanghai's hours are the same hours.
pub(crate) type Hour = i32;

const HOUR: Micros = 3_600_000_000;
const DAY: Micros = 24 * HOUR;
const UTC8: Micros = 8 * HOUR;
/// Days of counters kept: the longest window, plus the day before it, so that a request whose
/// clock read came just before the feed moved to the next day still finds its oldest day.
const KEPT_DAYS: Day = overview::MAX_WINDOW.num_days() as Day + 1;
/// Hours of counters kept: the longest trend, plus the hour before it, so that a request whose
/// clock read came just before the feed moved to the next hour still finds its oldest bucket.
const KEPT_HOURS: Hour = trend::MAX_HOURS as Hour + 1;

pub(crate) fn micros(at: DateTime<Utc>) -> Micros {
    at.timestamp_micros()
}

pub(crate) fn proto_micros(at: &prost_types::Timestamp) -> Micros {
    at.seconds * 1_000_000 + i64::from(at.nanos.div_euclid(1_000))
}

pub(crate) fn day_of(at: Micros) -> Day {
    Day::try_from((at + UTC8).div_euclid(DAY)).unwrap_or(Day::MAX)
}

fn day_start(day: Day) -> Micros {
    i64::from(day).saturating_mul(DAY).saturating_sub(UTC8)
}

pub(crate) fn hour_of(at: Micros) -> Hour {
    Hour::try_from(at.div_euclid(HOUR)).unwrap_or(Hour::MAX)
}

fn hour_start(hour: Hour) -> Micros {
    i64::from(hour).saturating_mul(HOUR)
}

/// An area as the counters key it: the digits of a code prefix and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AreaKey(u64);

/// The prefix lengths of the areas containing a grid: everything, the city (its first four
/// digits, as in `area.rs`), the district, street, community and the grid itself.
const PREFIXES: [u32; 6] = [0, 4, 6, 9, 12, 15];

impl AreaKey {
    fn new(digits: u64, len: u32) -> AreaKey {
        AreaKey((digits << 4) | u64::from(len))
    }

    /// The key of a request's area; `None` is everything.
    pub(crate) fn of(area: Option<&AreaCode>) -> AreaKey {
        let Some(area) = area else {
            return AreaKey(0);
        };
        let code = area.as_str();
        let prefix = if area.level() == Level::City {
            &code[..4]
        } else {
            code
        };
        let digits = prefix.parse().expect("area codes are at most 15 digits");
        AreaKey::new(digits, prefix.len() as u32)
    }
}

/// A 15-digit grid code as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Grid(u64);

impl Grid {
    pub(crate) fn parse(code: &str) -> Option<Grid> {
        (code.len() == 15 && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Grid(code.parse().expect("15 digits fit in a u64")))
    }

    fn areas(self) -> [AreaKey; 6] {
        PREFIXES.map(|len| AreaKey::new(self.0 / 10u64.pow(15 - len), len))
    }
}

/// Urgency as intake stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Urgency {
    Normal,
    Urgent,
    Emergency,
}

impl Urgency {
    const ALL: [Urgency; 3] = [Urgency::Normal, Urgency::Urgent, Urgency::Emergency];

    fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        }
    }

    pub(crate) fn from_db(value: &str) -> Option<Urgency> {
        Urgency::ALL.into_iter().find(|u| u.as_str() == value)
    }

    /// A report's urgency as intake records it: unspecified (or unknown) is normal.
    pub(crate) fn from_report(value: i32) -> Urgency {
        match v1::Urgency::try_from(value) {
            Ok(v1::Urgency::Urgent) => Urgency::Urgent,
            Ok(v1::Urgency::Emergency) => Urgency::Emergency,
            _ => Urgency::Normal,
        }
    }
}

/// A category code, interned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CategoryId(u32);

#[derive(Debug, Default)]
struct Categories {
    ids: HashMap<Box<str>, CategoryId>,
    names: Vec<Box<str>>,
}

/// A department task as the response rate counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskFact {
    pub dispatched: Day,
    /// `accepted_at <= accept_due_at`.
    pub accepted_in_time: bool,
}

/// What the overview counts of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub version: u64,
    pub grid: Grid,
    pub status: Status,
    pub level: Level,
    pub urgency: Urgency,
    pub category: CategoryId,
    /// Dispatch's flag: the SLA deadline passed before resolution.
    pub overdue: bool,
    pub satisfaction: Option<Satisfaction>,
    /// When it was opened.
    pub created: Micros,
    /// The SLA deadline.
    pub due: Option<Micros>,
    /// The latest `incident.resolved`.
    pub resolved: Option<Micros>,
    /// The hours with an `incident.resolved`, each once, in order: a resolution, a reopening and
    /// another resolution count in each hour they happened in.
    pub resolved_hours: Box<[Hour]>,
    /// The day of the latest `incident.verified`.
    pub verified: Option<Day>,
    /// The day of each `incident.whistled`.
    pub whistles: Box<[Day]>,
    pub tasks: Box<[TaskFact]>,
}

/// The incident as an event states it after a transition; its place, urgency and opening day
/// never change and come from the stored facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub status: Status,
    pub level: Level,
    pub category: CategoryId,
    pub overdue: bool,
    pub satisfaction: Option<Satisfaction>,
    pub due: Option<Micros>,
    pub tasks: Box<[TaskFact]>,
}

/// What a transition did besides changing the state, from its event kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub whistles: u8,
    pub resolved: bool,
    pub verified: bool,
}

impl Kinds {
    pub(crate) fn of<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Kinds {
        let mut out = Kinds::default();
        for kind in kinds {
            match kind {
                "incident.whistled" => out.whistles = out.whistles.saturating_add(1),
                "incident.resolved" => out.resolved = true,
                "incident.verified" => out.verified = true,
                _ => {}
            }
        }
        out
    }
}

/// One event about an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    pub id: Uuid,
    pub version: u64,
    /// When the transition happened.
    pub at: Micros,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// `incident.reported`: a new incident, fully described.
    Opened(Facts),
    /// Any later transition.
    Changed(State, Kinds),
}

impl Facts {
    /// The facts after a transition that left the incident in `state`.
    fn next(&self, version: u64, at: Micros, state: State, kinds: Kinds) -> Facts {
        let mut whistles = self.whistles.to_vec();
        whistles.extend(std::iter::repeat_n(day_of(at), usize::from(kinds.whistles)));
        let resolved_hours = if kinds.resolved {
            with_hour(&self.resolved_hours, hour_of(at))
        } else {
            self.resolved_hours.clone()
        };
        Facts {
            version,
            grid: self.grid,
            status: state.status,
            level: state.level,
            urgency: self.urgency,
            category: state.category,
            overdue: state.overdue,
            satisfaction: state.satisfaction,
            created: self.created,
            due: state.due,
            resolved: if kinds.resolved {
                Some(at)
            } else {
                self.resolved
            },
            resolved_hours,
            verified: if kinds.verified {
                Some(day_of(at))
            } else {
                self.verified
            },
            whistles: whistles.into(),
            tasks: state.tasks,
        }
    }
}

/// `hours` with `hour` added once, kept in order.
pub(crate) fn with_hour(hours: &[Hour], hour: Hour) -> Box<[Hour]> {
    let mut out = hours.to_vec();
    if let Err(at) = out.binary_search(&hour) {
        out.insert(at, hour);
    }
    out.into()
}

/// A per-day figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayMetric {
    Reported,
    Resolved,
    Whistled,
    Dispatched,
    AcceptedInTime,
    FollowedUp,
    Satisfied,
}

/// A per-hour figure, for the trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HourMetric {
    Reported,
    Resolved,
}

/// One thing an incident adds to the counters of each area containing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contribution {
    Status(Status),
    /// Open, with what the open breakdowns count.
    Open {
        level: Level,
        urgency: Urgency,
        category: CategoryId,
    },
    /// Open with dispatch's overdue flag.
    OverdueFlagged,
    /// Open, not flagged: overdue once its deadline is past.
    Pending(Micros),
    Day(Day, DayMetric),
    Hour(Hour, HourMetric),
    /// Its SLA deadline (not for duplicates), and whether it was resolved by it.
    Due {
        at: Micros,
        in_time: bool,
    },
}

const RESOLVED: [Status; 3] = [Status::Resolved, Status::Closed, Status::ClosedUnverified];

/// Everything one incident adds to the counters: the definitions of `overview.rs`, per incident.
pub(crate) fn contributions(facts: &Facts) -> Vec<Contribution> {
    use Contribution as C;
    let mut out = Vec::with_capacity(
        7 + facts.whistles.len() + facts.resolved_hours.len() + 2 * facts.tasks.len(),
    );
    out.push(C::Status(facts.status));
    out.push(C::Day(day_of(facts.created), DayMetric::Reported));
    out.push(C::Hour(hour_of(facts.created), HourMetric::Reported));
    if facts.status.is_open() {
        out.push(C::Open {
            level: facts.level,
            urgency: facts.urgency,
            category: facts.category,
        });
        match (facts.overdue, facts.due) {
            (true, _) => out.push(C::OverdueFlagged),
            (false, Some(at)) => out.push(C::Pending(at)),
            (false, None) => {}
        }
    }
    if let Some(at) = facts.resolved {
        out.push(C::Day(day_of(at), DayMetric::Resolved));
    }
    out.extend(
        facts
            .resolved_hours
            .iter()
            .map(|hour| C::Hour(*hour, HourMetric::Resolved)),
    );
    out.extend(
        facts
            .whistles
            .iter()
            .map(|day| C::Day(*day, DayMetric::Whistled)),
    );
    for task in &facts.tasks {
        out.push(C::Day(task.dispatched, DayMetric::Dispatched));
        if task.accepted_in_time {
            out.push(C::Day(task.dispatched, DayMetric::AcceptedInTime));
        }
    }
    if let (Some(at), false) = (facts.due, facts.status == Status::Duplicate) {
        let in_time = RESOLVED.contains(&facts.status) && facts.resolved.is_some_and(|r| r <= at);
        out.push(C::Due { at, in_time });
    }
    if let (Some(day), Some(verdict)) = (facts.verified, facts.satisfaction) {
        out.push(C::Day(day, DayMetric::FollowedUp));
        if verdict != Satisfaction::Unsatisfied {
            out.push(C::Day(day, DayMetric::Satisfied));
        }
    }
    out
}

/// Per-day counts of one area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DayCounts {
    reported: i32,
    resolved: i32,
    whistles: i32,
    dispatched: i32,
    accepted_in_time: i32,
    due: i32,
    resolved_in_time: i32,
    followed_up: i32,
    satisfied: i32,
}

impl DayCounts {
    fn metric(&mut self, metric: DayMetric) -> &mut i32 {
        match metric {
            DayMetric::Reported => &mut self.reported,
            DayMetric::Resolved => &mut self.resolved,
            DayMetric::Whistled => &mut self.whistles,
            DayMetric::Dispatched => &mut self.dispatched,
            DayMetric::AcceptedInTime => &mut self.accepted_in_time,
            DayMetric::FollowedUp => &mut self.followed_up,
            DayMetric::Satisfied => &mut self.satisfied,
        }
    }
}

/// Per-hour counts of one area: the trend's buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HourCounts {
    reported: i32,
    resolved: i32,
}

impl HourCounts {
    fn metric(&mut self, metric: HourMetric) -> &mut i32 {
        match metric {
            HourMetric::Reported => &mut self.reported,
            HourMetric::Resolved => &mut self.resolved,
        }
    }
}

/// Deadlines at one instant of one area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DeadlineCounts {
    /// Incidents due then (kept from the start of the area's current day on).
    due: i32,
    resolved_in_time: i32,
    /// Open, unflagged incidents due then (kept until they leave that state).
    pending: i32,
}

const STATUSES: usize = Status::ALL.len();

fn status_index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in Status::ALL")
}

fn level_index(level: Level) -> usize {
    Level::ALL
        .iter()
        .position(|l| *l == level)
        .expect("every level is in Level::ALL")
}

/// The counters of one area. Entries that drop to zero are removed, so equal counts are equal
/// values (which the tests rely on).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AreaCounters {
    by_status: [i64; STATUSES],
    open_by_level: [i64; 5],
    open_by_urgency: [i64; 3],
    open_by_category: HashMap<CategoryId, i64>,
    overdue_flagged: i64,
    days: BTreeMap<Day, DayCounts>,
    /// Only hours with something in them, so a quiet area costs nothing.
    hours: BTreeMap<Hour, HourCounts>,
    deadlines: BTreeMap<Micros, DeadlineCounts>,
    /// The latest hour the counters were pruned for: hour counts from `horizon - 168`, day counts
    /// from its day minus 366 and the `due` part of deadlines from the start of its day are kept.
    horizon: Hour,
}

impl AreaCounters {
    /// Incidents being worked on (handling, whistled, accepted).
    fn open(&self) -> i64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_open())
            .map(|s| self.by_status[status_index(*s)])
            .sum()
    }

    /// Open incidents flagged overdue, or past their deadline before the flag is set.
    fn overdue(&self, now: Micros) -> i64 {
        let pending: i64 = self
            .deadlines
            .range(..now)
            .map(|(_, d)| i64::from(d.pending))
            .sum();
        self.overdue_flagged + pending
    }
}

/// Changes the value at `key`, leaving no entry when it ends up at zero.
fn with_entry<K: Ord, V: Default + PartialEq>(
    map: &mut BTreeMap<K, V>,
    key: K,
    change: impl FnOnce(&mut V),
) {
    match map.entry(key) {
        btree_map::Entry::Vacant(vacant) => {
            let mut value = V::default();
            change(&mut value);
            if value != V::default() {
                vacant.insert(value);
            }
        }
        btree_map::Entry::Occupied(mut held) => {
            change(held.get_mut());
            if *held.get() == V::default() {
                held.remove();
            }
        }
    }
}

impl AreaCounters {
    fn new(hour: Hour) -> AreaCounters {
        AreaCounters {
            by_status: [0; STATUSES],
            open_by_level: [0; 5],
            open_by_urgency: [0; 3],
            open_by_category: HashMap::new(),
            overdue_flagged: 0,
            days: BTreeMap::new(),
            hours: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            horizon: hour,
        }
    }

    /// The day of the horizon.
    fn today(&self) -> Day {
        day_of(hour_start(self.horizon))
    }

    fn first_kept_day(&self) -> Day {
        self.today().saturating_sub(KEPT_DAYS - 1)
    }

    fn first_kept_hour(&self) -> Hour {
        self.horizon.saturating_sub(KEPT_HOURS - 1)
    }

    /// Moves the horizon to `hour` and drops what no window or trend reaches any more.
    fn advance(&mut self, hour: Hour) {
        if hour <= self.horizon {
            return;
        }
        let previous_day = self.today();
        self.horizon = hour;
        let first_hour = self.first_kept_hour();
        while let Some(oldest) = self.hours.first_entry() {
            if *oldest.key() >= first_hour {
                break;
            }
            oldest.remove();
        }
        let today = self.today();
        if today == previous_day {
            return;
        }
        self.days = self.days.split_off(&self.first_kept_day());
        let kept = self.deadlines.split_off(&day_start(today));
        let past = std::mem::replace(&mut self.deadlines, kept);
        for (at, counts) in past {
            if counts.pending != 0 {
                self.deadlines.insert(
                    at,
                    DeadlineCounts {
                        pending: counts.pending,
                        ..DeadlineCounts::default()
                    },
                );
            }
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_status.iter().all(|n| *n == 0)
            && self.open_by_level.iter().all(|n| *n == 0)
            && self.open_by_urgency.iter().all(|n| *n == 0)
            && self.open_by_category.is_empty()
            && self.overdue_flagged == 0
            && self.days.is_empty()
            && self.hours.is_empty()
            && self.deadlines.is_empty()
    }

    /// Adds (`sign` 1) or removes (`sign` -1) one contribution.
    fn add(&mut self, contribution: Contribution, sign: i32) {
        let wide = i64::from(sign);
        match contribution {
            Contribution::Status(status) => self.by_status[status_index(status)] += wide,
            Contribution::Open {
                level,
                urgency,
                category,
            } => {
                self.open_by_level[level_index(level)] += wide;
                self.open_by_urgency[urgency as usize] += wide;
                let count = self.open_by_category.entry(category).or_default();
                *count += wide;
                if *count == 0 {
                    self.open_by_category.remove(&category);
                }
            }
            Contribution::OverdueFlagged => self.overdue_flagged += wide,
            Contribution::Pending(at) => {
                with_entry(&mut self.deadlines, at, |d| d.pending += sign);
            }
            Contribution::Day(day, metric) => {
                if day >= self.first_kept_day() {
                    with_entry(&mut self.days, day, |d| *d.metric(metric) += sign);
                }
            }
            Contribution::Hour(hour, metric) => {
                if hour >= self.first_kept_hour() {
                    with_entry(&mut self.hours, hour, |h| *h.metric(metric) += sign);
                }
            }
            Contribution::Due { at, in_time } => {
                let in_time = if in_time { sign } else { 0 };
                if day_of(at) >= self.first_kept_day() {
                    with_entry(&mut self.days, day_of(at), |d| {
                        d.due += sign;
                        d.resolved_in_time += in_time;
                    });
                }
                if at >= day_start(self.today()) {
                    with_entry(&mut self.deadlines, at, |d| {
                        d.due += sign;
                        d.resolved_in_time += in_time;
                    });
                }
            }
        }
    }
}

/// An incident in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Live(Box<Facts>),
    /// Terminal: its contributions can no longer change, so only the version is kept.
    Settled {
        version: u64,
    },
}

impl Entry {
    fn of(facts: Facts) -> Entry {
        if facts.status.is_terminal() {
            Entry::Settled {
                version: facts.version,
            }
        } else {
            Entry::Live(Box::new(facts))
        }
    }

    fn version(&self) -> u64 {
        match self {
            Entry::Live(facts) => facts.version,
            Entry::Settled { version } => *version,
        }
    }
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
    incidents: DashMap<Uuid, Entry>,
    areas: DashMap<AreaKey, AreaCounters>,
    categories: RwLock<Categories>,
    /// The stream sequence of `WHISTLE_EVENTS` applied so far.
    applied: AtomicU64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("incidents", &self.incidents.len())
            .field("areas", &self.areas.len())
            .field("applied", &self.applied())
            .finish()
    }
}

impl Store {
    pub(crate) fn new(applied: u64) -> Store {
        Store {
            incidents: DashMap::new(),
            areas: DashMap::new(),
            categories: RwLock::default(),
            applied: AtomicU64::new(applied),
        }
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
    }

    /// Takes `old`'s contributions away and adds `new`'s, area by area (each area under its lock,
    /// so a reader sees an area before or after the change, never half of it).
    fn replace(&self, old: Option<&Facts>, new: &Facts, hour: Hour) {
        let removed = old.map(contributions).unwrap_or_default();
        let added = contributions(new);
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
    }

    /// Records an incident as read from PostgreSQL (the rebuild), unless a newer version is held.
    /// `hour` is the clock's current hour, as for [`Store::apply`].
    pub(crate) fn put(&self, id: Uuid, facts: Facts, hour: Hour) {
        match self.incidents.entry(id) {
            MapEntry::Occupied(mut held) => {
                if facts.version <= held.get().version() {
                    return;
                }
                if let Entry::Live(old) = held.get() {
                    self.replace(Some(old), &facts, hour);
                    held.insert(Entry::of(facts));
                }
            }
            MapEntry::Vacant(vacant) => {
                self.replace(None, &facts, hour);
                vacant.insert(Entry::of(facts));
            }
        }
    }

    /// Applies one event at the clock's current `hour`; `Ok(false)` when it is not newer than
    /// what the store holds.
    pub(crate) fn apply(&self, update: Update, hour: Hour) -> Result<bool, Inconsistency> {
        let Update {
            id,
            version,
            at,
            change,
        } = update;
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
                self.replace(Some(old), &new, hour);
                held.insert(Entry::of(new));
                Ok(true)
            }
            MapEntry::Vacant(vacant) => match change {
                Change::Opened(facts) => {
                    self.replace(None, &facts, hour);
                    vacant.insert(Entry::of(facts));
                    Ok(true)
                }
                Change::Changed(..) => Err(Inconsistency::Unknown(id)),
            },
        }
    }

    /// An area's open and overdue incidents at `now`, as its overview counts them.
    fn open_and_overdue(&self, key: AreaKey, now: DateTime<Utc>) -> (u64, u64) {
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
        for (_, d) in area.deadlines.range(day_start(today)..=now) {
            due += i64::from(d.due);
            resolved_in_time += i64::from(d.resolved_in_time);
        }
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

/// The live aggregates of a query service; cheap to clone. They are ready once the first rebuild
/// has finished; a later rebuild (after the store fell out of step with the stream) replaces
/// them when it is done, and the previous generation answers meanwhile.
#[derive(Clone, Default)]
pub struct Aggregates {
    current: Arc<RwLock<Option<Arc<Store>>>>,
}

impl fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregates")
            .field("applied_sequence", &self.applied_sequence())
            .finish()
    }
}

impl Aggregates {
    /// The last `WHISTLE_EVENTS` sequence the aggregates reflect (the stream's last sequence when
    /// the rebuild started, then each event applied); `None` until the first rebuild finished.
    pub fn applied_sequence(&self) -> Option<u64> {
        self.store().map(|store| store.applied())
    }

    /// Whether the first rebuild has finished.
    pub fn is_ready(&self) -> bool {
        self.store().is_some()
    }

    fn store(&self) -> Option<Arc<Store>> {
        self.current
            .read()
            .expect("the aggregates lock is never poisoned")
            .clone()
    }

    fn install(&self, store: Arc<Store>) {
        *self
            .current
            .write()
            .expect("the aggregates lock is never poisoned") = Some(store);
    }

    /// The open and overdue incidents of each area, as `GetOverview` counts them, for the map;
    /// UNAVAILABLE until the first rebuild finished.
    pub(crate) fn open_and_overdue(
        &self,
        areas: &[AreaCode],
        now: DateTime<Utc>,
    ) -> Result<Vec<(u64, u64)>> {
        let store = self.ready()?;
        Ok(areas
            .iter()
            .map(|area| store.open_and_overdue(AreaKey::of(Some(area)), now))
            .collect())
    }

    fn ready(&self) -> Result<Arc<Store>> {
        self.store().ok_or_else(|| {
            Error::Unavailable(
                "the live aggregates are still loading (from PostgreSQL and WHISTLE_EVENTS); retry shortly"
                    .into(),
            )
        })
    }

    /// `GetTrend` from the aggregates; UNAVAILABLE until the first rebuild finished.
    pub(crate) fn trend(
        &self,
        area: &AreaCode,
        hours: u32,
        now: DateTime<Utc>,
    ) -> Result<v1::Trend> {
        let store = self.ready()?;
        Ok(store.trend(area.as_str(), AreaKey::of(Some(area)), hours, now))
    }

    /// `GetOverview` from the aggregates; UNAVAILABLE until the first rebuild finished.
    pub(crate) fn overview(
        &self,
        area_code: &str,
        area: Option<&AreaCode>,
        window: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<v1::Overview> {
        let store = self.ready()?;
        Ok(store.overview(
            area_code,
            AreaKey::of(area),
            overview::window_days(window),
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Two grids of one street, one of another street, one of another district.
    const GRIDS: [&str; 4] = [
        "150602001001001",
        "150602001001002",
        "150602002001001",
        "150603001001001",
    ];
    const NOW: Micros = 1_780_000_000_000_000;

    fn grid(i: usize) -> Grid {
        Grid::parse(GRIDS[i]).unwrap()
    }

    fn key(code: &str) -> AreaKey {
        if code.is_empty() {
            AreaKey::of(None)
        } else {
            AreaKey::of(Some(&code.parse().unwrap()))
        }
    }

    #[test]
    fn shanghai_days_match_overview_s_calendar_day() {
        for at in [
            "2026-03-01T15:59:59.999999Z",
            "2026-03-01T16:00:00Z",
            "2026-03-01T23:30:00Z",
        ] {
            let at = DateTime::parse_from_rfc3339(at).unwrap().to_utc();
            let (start, end) = overview::shanghai_day(at);
            let day = day_of(micros(at));
            assert_eq!(day_start(day), micros(start));
            assert_eq!(day_start(day + 1), micros(end));
        }
        assert_eq!(
            proto_micros(&prost_types::Timestamp {
                seconds: 1,
                nanos: 999_999_999
            }),
            1_999_999
        );
    }

    #[test]
    fn a_grid_is_in_everything_its_city_district_street_community_and_itself() {
        let areas = grid(0).areas();
        for code in [
            "",
            "150600",
            "150602",
            "150602001",
            "150602001001",
            "150602001001001",
        ] {
            assert!(areas.contains(&key(code)), "{code}");
        }
        for code in ["150603", "150602002", "150602001001002", "150700"] {
            assert!(!areas.contains(&key(code)), "{code}");
        }
        assert!(Grid::parse("15060200100100").is_none());
        assert!(Grid::parse("15060200100100x").is_none());
    }

    fn opened(store: &Store, grid: Grid, at: Micros) -> Facts {
        Facts {
            version: 1,
            grid,
            status: Status::Handling,
            level: Level::Community,
            urgency: Urgency::Urgent,
            category: store.category("heating.no_heat"),
            overdue: false,
            satisfaction: None,
            created: at,
            due: Some(at + 2 * 3_600_000_000),
            resolved: None,
            resolved_hours: Box::new([]),
            verified: None,
            whistles: Box::new([]),
            tasks: Box::new([]),
        }
    }

    fn state_of(facts: &Facts) -> State {
        State {
            status: facts.status,
            level: facts.level,
            category: facts.category,
            overdue: facts.overdue,
            satisfaction: facts.satisfaction,
            due: facts.due,
            tasks: facts.tasks.clone(),
        }
    }

    #[test]
    fn a_transition_s_second_event_and_replays_change_nothing() {
        let store = Store::new(0);
        let id = Uuid::now_v7();
        let hour = hour_of(NOW);
        let facts = opened(&store, grid(0), NOW);
        let open = Update {
            id,
            version: 1,
            at: NOW,
            change: Change::Opened(facts.clone()),
        };
        assert_eq!(store.apply(open.clone(), hour), Ok(true));
        // task.resolved then incident.resolved: one transition, one version.
        let resolved = State {
            status: Status::Resolved,
            ..state_of(&facts)
        };
        let kinds = Kinds::of(["task.resolved", "incident.resolved"]);
        for _ in 0..2 {
            let update = Update {
                id,
                version: 2,
                at: NOW + 60_000_000,
                change: Change::Changed(resolved.clone(), kinds),
            };
            store.apply(update, hour).unwrap();
        }
        assert_eq!(store.apply(open, hour), Ok(false));
        let overview = store.overview(
            "150602",
            key("150602"),
            30,
            DateTime::from_timestamp_micros(NOW + 120_000_000).unwrap(),
        );
        assert_eq!(overview.resolved_today, 1);
        assert_eq!(overview.open_incidents, 0);
        assert_eq!(
            overview::counts(vec![("resolved".into(), 1)]),
            overview.by_status
        );
        let rates = overview.rates.unwrap();
        assert_eq!(
            (rates.due, rates.resolved_in_time),
            (0, 0),
            "due later today"
        );
        let changed = Update {
            id: Uuid::now_v7(),
            version: 2,
            at: NOW,
            change: Change::Changed(resolved, kinds),
        };
        assert!(matches!(
            store.apply(changed, hour),
            Err(Inconsistency::Unknown(_))
        ));
    }

    #[test]
    fn a_closed_incident_keeps_only_its_version_and_its_counts() {
        let store = Store::new(0);
        let id = Uuid::now_v7();
        let hour = hour_of(NOW);
        let facts = opened(&store, grid(1), NOW);
        store
            .apply(
                Update {
                    id,
                    version: 1,
                    at: NOW,
                    change: Change::Opened(facts.clone()),
                },
                hour,
            )
            .unwrap();
        let closed = State {
            status: Status::Closed,
            satisfaction: Some(Satisfaction::Satisfied),
            ..state_of(&facts)
        };
        store
            .apply(
                Update {
                    id,
                    version: 2,
                    at: NOW,
                    change: Change::Changed(closed, Kinds::of(["incident.verified"])),
                },
                hour,
            )
            .unwrap();
        assert_eq!(
            *store.incidents.get(&id).unwrap(),
            Entry::Settled { version: 2 }
        );
        let at = DateTime::from_timestamp_micros(NOW).unwrap();
        let rates = store.overview("", key(""), 1, at).rates.unwrap();
        assert_eq!((rates.followed_up, rates.satisfied), (1, 1));
        let reopened = Update {
            id,
            version: 3,
            at: NOW,
            change: Change::Changed(state_of(&facts), Kinds::default()),
        };
        assert_eq!(
            store.apply(reopened, hour),
            Err(Inconsistency::ChangedAfterClosing(id))
        );
    }

    #[test]
    fn hours_are_whole_hours_of_utc_and_of_shanghai() {
        let at = |s: &str| micros(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let hour = hour_of(at("2026-03-01T15:59:59.999999Z"));
        assert_eq!(hour_start(hour), at("2026-03-01T15:00:00Z"));
        assert_eq!(hour_of(at("2026-03-01T16:00:00Z")), hour + 1);
        // A Shanghai day starts on a UTC hour, so every hour lies in one day.
        let day = day_of(at("2026-03-02T00:30:00+08:00"));
        assert_eq!(hour_start(hour + 1), day_start(day));
        assert_eq!(day_of(hour_start(hour)), day - 1);
        assert_eq!(
            hour_of(-1),
            -1,
            "before 1970, hours still start on the hour"
        );
        assert_eq!(hour_start(-1), -HOUR);
    }

    #[test]
    fn resolution_hours_are_kept_once_each_in_order() {
        assert_eq!(*with_hour(&[], 7), [7]);
        assert_eq!(*with_hour(&[3, 7], 7), [3, 7]);
        assert_eq!(*with_hour(&[3, 7], 5), [3, 5, 7]);
        assert_eq!(*with_hour(&[3, 7], 9), [3, 7, 9]);
    }

    /// The (reported, resolved) buckets of an area's trend.
    fn buckets(store: &Store, area: &str, hours: u32, now: Micros) -> Vec<(u64, u64)> {
        let now = DateTime::from_timestamp_micros(now).unwrap();
        let trend = store.trend(area, key(area), hours, now);
        assert_eq!(trend.buckets.len(), hours as usize);
        let current = hour_of(micros(now));
        for (n, bucket) in trend.buckets.iter().enumerate() {
            let start = bucket.start.as_ref().unwrap();
            let expected = hour_start(current - (hours as Hour - 1) + n as Hour);
            assert_eq!(proto_micros(start), expected);
        }
        trend
            .buckets
            .iter()
            .map(|b| (b.reported, b.resolved))
            .collect()
    }

    #[test]
    fn a_resolution_counts_once_in_its_hour_and_again_in_another_hour() {
        let store = Store::new(0);
        let id = Uuid::now_v7();
        let h0 = hour_of(NOW);
        let at = |hours: Hour, minutes: i64| hour_start(h0 + hours) + minutes * 60_000_000;
        let facts = opened(&store, grid(0), at(0, 5));
        let open = Update {
            id,
            version: 1,
            at: at(0, 5),
            change: Change::Opened(facts.clone()),
        };
        store.apply(open, h0).unwrap();
        let resolved = State {
            status: Status::Resolved,
            ..state_of(&facts)
        };
        let reopened = state_of(&facts);
        // Resolved, reopened and resolved again in the first hour, then again in the third.
        let steps = [
            (
                at(0, 10),
                resolved.clone(),
                Kinds::of(["incident.resolved"]),
            ),
            (
                at(0, 20),
                reopened.clone(),
                Kinds::of(["incident.reopened"]),
            ),
            (
                at(0, 50),
                resolved.clone(),
                Kinds::of(["incident.resolved"]),
            ),
            (at(2, 0), reopened, Kinds::of(["incident.reopened"])),
            (at(2, 30), resolved, Kinds::of(["incident.resolved"])),
        ];
        for (n, (at, state, kinds)) in steps.into_iter().enumerate() {
            let update = Update {
                id,
                version: n as u64 + 2,
                at,
                change: Change::Changed(state, kinds),
            };
            assert_eq!(store.apply(update, hour_of(at)), Ok(true));
        }
        let expected = [(0, 0), (1, 1), (0, 0), (0, 1)];
        for area in ["", "150600", "150602", "150602001001001"] {
            assert_eq!(buckets(&store, area, 4, at(2, 40)), expected, "{area:?}");
        }
        assert_eq!(buckets(&store, "150603", 4, at(2, 40)), [(0, 0); 4]);
        assert_eq!(buckets(&store, "", 1, at(2, 40)), [(0, 1)]);
        let none = store.trend(
            "",
            key(""),
            0,
            DateTime::from_timestamp_micros(NOW).unwrap(),
        );
        assert!(none.buckets.is_empty());
    }

    #[test]
    fn day_counters_outlive_the_longest_window_by_a_day() {
        let store = Store::new(0);
        let facts = opened(&store, grid(0), NOW);
        let due_day = day_of(facts.due.unwrap());
        store.put(Uuid::now_v7(), facts, hour_of(NOW));
        let longest = overview::window_days(overview::MAX_WINDOW);
        let last_day = due_day + Day::try_from(longest).unwrap() - 1;
        let due_in_window = |store: &Store| {
            // A request whose clock read the last microsecond of the window's last day.
            let at = DateTime::from_timestamp_micros(day_start(last_day + 1) - 1).unwrap();
            store.overview("", key(""), longest, at).rates.unwrap().due
        };
        assert_eq!(due_in_window(&store), 1);
        // The feed moved on to the next day before that request read the counters.
        store.advance(hour_of(day_start(last_day + 1)));
        assert_eq!(due_in_window(&store), 1);
        store.advance(hour_of(day_start(last_day + 2)));
        assert_eq!(due_in_window(&store), 0);
        assert!(store.areas.get(&key("150600")).unwrap().days.is_empty());
    }

    #[test]
    fn hour_counters_are_pruned_after_a_week_and_an_hour_consistently() {
        let store = Store::new(0);
        let id = Uuid::now_v7();
        let h0 = hour_of(NOW);
        let facts = opened(&store, grid(0), NOW);
        store.put(id, facts.clone(), h0);
        let week = trend::MAX_HOURS as Hour;
        // The last hour of a week-long trend, still there one hour later (a late reader).
        for now in [h0 + week - 1, h0 + week] {
            store.advance(now);
            let oldest = buckets(&store, "", trend::MAX_HOURS, hour_start(h0 + week - 1));
            assert_eq!(oldest[0], (1, 0));
        }
        store.advance(h0 + week + 1);
        let city = store.areas.get(&key("150600")).unwrap();
        assert!(city.hours.is_empty(), "{:?}", city.hours);
        drop(city);
        // Resolving it now takes nothing away from the pruned hour and adds the new one.
        let now = hour_start(h0 + week + 1);
        let resolved = Update {
            id,
            version: 2,
            at: now,
            change: Change::Changed(
                State {
                    status: Status::Resolved,
                    ..state_of(&facts)
                },
                Kinds::of(["incident.resolved"]),
            ),
        };
        store.apply(resolved, hour_of(now)).unwrap();
        let city = store.areas.get(&key("150600")).unwrap();
        assert_eq!(
            city.hours.iter().map(|(h, c)| (*h, *c)).collect::<Vec<_>>(),
            [(
                h0 + week + 1,
                HourCounts {
                    reported: 0,
                    resolved: 1
                }
            )]
        );
    }

    // --- property: incremental diffs equal a recount from the final facts ---

    fn status() -> impl Strategy<Value = Status> {
        prop::sample::select(Status::ALL.to_vec())
    }

    fn open_status() -> impl Strategy<Value = Status> {
        prop::sample::select(vec![Status::Handling, Status::Whistled, Status::Accepted])
    }

    fn level() -> impl Strategy<Value = Level> {
        prop::sample::select(Level::ALL.to_vec())
    }

    fn satisfaction() -> impl Strategy<Value = Option<Satisfaction>> {
        prop::option::of(prop::sample::select(Satisfaction::ALL.to_vec()))
    }

    /// An offset from NOW: mostly the last few days, sometimes beyond the longest window.
    fn offset() -> impl Strategy<Value = Micros> {
        prop_oneof![
            4 => -4 * DAY..DAY / 2,
            1 => -400 * DAY..2 * DAY,
        ]
    }

    fn tasks() -> impl Strategy<Value = Vec<(Micros, bool)>> {
        prop::collection::vec((offset(), any::<bool>()), 0..3)
    }

    fn kinds() -> impl Strategy<Value = Kinds> {
        (0u8..2, any::<bool>(), any::<bool>()).prop_map(|(whistles, resolved, verified)| Kinds {
            whistles,
            resolved,
            verified,
        })
    }

    /// A transition's new state, its kinds and how long after the previous one it happened.
    #[derive(Debug, Clone)]
    struct Step {
        status: Status,
        level: Level,
        category: usize,
        overdue: bool,
        satisfaction: Option<Satisfaction>,
        due: Option<Micros>,
        tasks: Vec<(Micros, bool)>,
        kinds: Kinds,
        after: Micros,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            (status(), level(), 0usize..3, any::<bool>(), satisfaction()),
            // Sometimes within the hour: resolved, reopened and resolved again in it.
            (
                prop::option::of(offset()),
                tasks(),
                kinds(),
                prop_oneof![3 => 0..DAY, 1 => 0..HOUR / 2],
            ),
        )
            .prop_map(
                |((status, level, category, overdue, satisfaction), (due, tasks, kinds, after))| {
                    Step {
                        status,
                        level,
                        category,
                        overdue,
                        satisfaction,
                        due: due.map(|d| NOW + d),
                        tasks,
                        kinds,
                        after,
                    }
                },
            )
    }

    /// An incident's life: where and when it opened, then its transitions (none after a terminal
    /// status, as in the engine).
    #[derive(Debug, Clone)]
    struct Life {
        grid: usize,
        opened: Micros,
        status: Status,
        urgency: Urgency,
        steps: Vec<Step>,
    }

    fn life() -> impl Strategy<Value = Life> {
        (
            0..GRIDS.len(),
            -5 * DAY..0,
            open_status(),
            prop::sample::select(Urgency::ALL.to_vec()),
            prop::collection::vec(step(), 0..6),
        )
            .prop_map(|(grid, opened, status, urgency, mut steps)| {
                if let Some(end) = steps.iter().position(|s| s.status.is_terminal()) {
                    steps.truncate(end + 1);
                }
                Life {
                    grid,
                    opened: NOW + opened,
                    status,
                    urgency,
                    steps,
                }
            })
    }

    const CATEGORIES: [&str; 3] = [
        "heating.no_heat",
        "municipal.manhole",
        "fire.blocked_access",
    ];

    impl Life {
        /// Its events in order, each transition published `copies` times.
        fn updates(&self, store: &Store, id: Uuid) -> Vec<Update> {
            let mut at = self.opened;
            let mut facts = Facts {
                version: 1,
                grid: grid(self.grid),
                status: self.status,
                level: Level::Grid,
                urgency: self.urgency,
                category: store.category(CATEGORIES[0]),
                overdue: false,
                satisfaction: None,
                created: at,
                due: Some(at + DAY),
                resolved: None,
                resolved_hours: Box::new([]),
                verified: None,
                whistles: Box::new([]),
                tasks: Box::new([]),
            };
            let mut out = vec![Update {
                id,
                version: 1,
                at,
                change: Change::Opened(facts.clone()),
            }];
            for (n, step) in self.steps.iter().enumerate() {
                at += step.after;
                let state = State {
                    status: step.status,
                    level: step.level,
                    category: store.category(CATEGORIES[step.category]),
                    overdue: step.overdue,
                    satisfaction: step.satisfaction,
                    due: step.due,
                    tasks: step
                        .tasks
                        .iter()
                        .map(|(t, ok)| TaskFact {
                            dispatched: day_of(NOW + t),
                            accepted_in_time: *ok,
                        })
                        .collect(),
                };
                let version = n as u64 + 2;
                facts = facts.next(version, at, state.clone(), step.kinds);
                out.push(Update {
                    id,
                    version,
                    at,
                    change: Change::Changed(state, step.kinds),
                });
            }
            out
        }

        /// When each transition happened.
        fn times(&self) -> Vec<Micros> {
            self.steps
                .iter()
                .scan(self.opened, |at, step| {
                    *at += step.after;
                    Some(*at)
                })
                .collect()
        }

        /// The facts after its last transition, as the rebuild reads them from PostgreSQL.
        fn facts(&self, store: &Store, id: Uuid, through: usize) -> Facts {
            let updates = self.updates(store, id);
            let mut facts = None::<Facts>;
            for update in updates.into_iter().take(through + 1) {
                facts = Some(match (facts, update.change) {
                    (_, Change::Opened(f)) => f,
                    (Some(f), Change::Changed(state, kinds)) => {
                        f.next(update.version, update.at, state, kinds)
                    }
                    (None, Change::Changed(..)) => unreachable!("opened first"),
                });
            }
            facts.expect("at least the opening")
        }
    }

    /// The store's counters with every area pruned to `hour`, empty areas left out.
    fn canonical(store: &Store, hour: Hour) -> BTreeMap<AreaKey, AreaCounters> {
        store.advance(hour);
        store
            .areas
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| (*a.key(), a.value().clone()))
            .collect()
    }

    /// What a delivery plan does with the stream.
    #[derive(Debug, Clone)]
    struct Plan {
        lives: Vec<Life>,
        /// Interleaving: which incident's next event comes next (taken modulo those left).
        order: Vec<usize>,
        /// Extra copies of a transition's event right after it (several events per transition).
        copies: Vec<u8>,
        /// Replays of earlier events: (position among delivered, which earlier one).
        replays: Vec<(usize, usize)>,
        /// Hours the clock moves forward between deliveries.
        hours: Vec<u8>,
        /// A rebuild: the snapshot holds the first `.0` deliveries, the stream resumes at `.1`
        /// (at most `.0`: published before the snapshot but after the stream's last sequence
        /// was read).
        rebuild: Option<(usize, usize)>,
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            prop::collection::vec(life(), 1..6),
            prop::collection::vec(any::<usize>(), 40),
            prop::collection::vec(0u8..3, 40),
            prop::collection::vec((any::<usize>(), any::<usize>()), 0..10),
            prop::collection::vec(prop_oneof![6 => Just(0u8), 1 => 1u8..60], 40),
            prop::option::of((any::<usize>(), any::<usize>())),
        )
            .prop_map(|(lives, order, copies, replays, hours, rebuild)| Plan {
                lives,
                order,
                copies,
                replays,
                hours,
                rebuild,
            })
    }

    fn run(plan: &Plan) -> Result<(), TestCaseError> {
        let store = Store::new(0);
        // Both stores intern the categories in the same order, so their ids agree.
        for name in CATEGORIES {
            store.category(name);
        }
        let ids: Vec<Uuid> = plan.lives.iter().map(|_| Uuid::now_v7()).collect();
        let mut queues: Vec<std::collections::VecDeque<(usize, usize, Update)>> = plan
            .lives
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(n, (life, id))| {
                life.updates(&store, *id)
                    .into_iter()
                    .enumerate()
                    .map(|(i, u)| (n, i, u))
                    .collect()
            })
            .collect();
        // The stream: incidents interleaved, transitions repeated, earlier events replayed.
        let mut stream: Vec<(usize, usize, Update)> = Vec::new();
        let mut turn = 0;
        while queues.iter().any(|q| !q.is_empty()) {
            let left: Vec<usize> = (0..queues.len())
                .filter(|q| !queues[*q].is_empty())
                .collect();
            let pick = left[plan.order[turn % plan.order.len()] % left.len()];
            let event = queues[pick].pop_front().expect("not empty");
            for _ in 0..=plan.copies[turn % plan.copies.len()] {
                stream.push(event.clone());
            }
            turn += 1;
        }
        for (position, earlier) in &plan.replays {
            let at = position % (stream.len() + 1);
            if at > 0 {
                let replay = stream[earlier % at].clone();
                stream.insert(at, replay);
            }
        }

        let mut hour = hour_of(NOW) - 72;
        let (start, snapshot) = match plan.rebuild {
            Some((snapshot, resume)) => {
                let snapshot = snapshot % (stream.len() + 1);
                (resume % (snapshot + 1), snapshot)
            }
            None => (0, 0),
        };
        // The snapshot: each incident as of its last event among the first `snapshot` ones.
        let mut last = vec![None::<usize>; plan.lives.len()];
        for (n, i, _) in &stream[..snapshot] {
            last[*n] = Some(last[*n].map_or(*i, |l| l.max(*i)));
        }
        for (n, through) in last.iter().enumerate() {
            if let Some(through) = through {
                store.put(ids[n], plan.lives[n].facts(&store, ids[n], *through), hour);
            }
        }
        for (k, (_, _, update)) in stream[start..].iter().enumerate() {
            hour += Hour::from(plan.hours[k % plan.hours.len()]);
            store
                .apply(update.clone(), hour)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }

        let expected = Store::new(0);
        for name in CATEGORIES {
            expected.category(name);
        }
        for (n, life) in plan.lives.iter().enumerate() {
            let facts = life.facts(&store, ids[n], life.steps.len());
            expected.put(ids[n], facts, hour);
        }
        prop_assert_eq!(canonical(&store, hour), canonical(&expected, hour));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn applying_events_in_order_with_replays_equals_counting_the_final_facts(plan in plan()) {
            run(&plan)?;
        }
    }

    // --- property: the readout follows the definitions of overview.rs ---

    /// The overview of `area` computed straight from the facts, by the documented definitions.
    fn by_definition(
        store: &Store,
        facts: &[Facts],
        area: AreaKey,
        window_days: i64,
        now: Micros,
    ) -> v1::Overview {
        let inside: Vec<&Facts> = facts
            .iter()
            .filter(|f| f.grid.areas().contains(&area))
            .collect();
        let today = day_of(now);
        let first = today - (window_days as Day - 1);
        let window_start = day_start(first);
        let tally = |keys: Vec<String>| {
            let mut map = BTreeMap::<String, u64>::new();
            for k in keys {
                *map.entry(k).or_default() += 1;
            }
            overview::counts(map.into_iter().collect())
        };
        let open: Vec<&&Facts> = inside.iter().filter(|f| f.status.is_open()).collect();
        let in_window = |day: Day| day >= first && day <= today;
        let mut rates = v1::Rates::default();
        for f in &inside {
            for t in f.tasks.iter().filter(|t| in_window(t.dispatched)) {
                rates.dispatched += 1;
                rates.accepted_in_time += u64::from(t.accepted_in_time);
            }
            if let Some(due) = f.due.filter(|d| *d >= window_start && *d <= now) {
                if f.status != Status::Duplicate {
                    rates.due += 1;
                    let resolved =
                        RESOLVED.contains(&f.status) && f.resolved.is_some_and(|r| r <= due);
                    rates.resolved_in_time += u64::from(resolved);
                }
            }
            if let (Some(day), Some(s)) = (f.verified, f.satisfaction) {
                if in_window(day) {
                    rates.followed_up += 1;
                    rates.satisfied += u64::from(s != Satisfaction::Unsatisfied);
                }
            }
        }
        v1::Overview {
            area_code: "x".into(),
            open_incidents: open.len() as u64,
            by_status: tally(
                inside
                    .iter()
                    .map(|f| f.status.as_str().to_owned())
                    .collect(),
            ),
            by_level: tally(open.iter().map(|f| f.level.as_str().to_owned()).collect()),
            by_category: tally(
                open.iter()
                    .map(|f| store.category_name(f.category))
                    .collect(),
            ),
            by_urgency: tally(open.iter().map(|f| f.urgency.as_str().to_owned()).collect()),
            overdue: open
                .iter()
                .filter(|f| f.overdue || f.due.is_some_and(|d| d < now))
                .count() as u64,
            reported_today: inside.iter().filter(|f| day_of(f.created) == today).count() as u64,
            resolved_today: inside
                .iter()
                .filter(|f| f.resolved.is_some_and(|r| day_of(r) == today))
                .count() as u64,
            whistles_today: inside
                .iter()
                .map(|f| f.whistles.iter().filter(|d| **d == today).count() as u64)
                .sum(),
            rates: Some(overview::rates(rates)),
            as_of: Some(convert::timestamp(
                DateTime::from_timestamp_micros(now).unwrap(),
            )),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_overview_counts_what_the_definitions_say(
            lives in prop::collection::vec(life(), 1..12),
            window_days in prop_oneof![Just(1i64), 1i64..40, Just(366i64)],
            later in 0..DAY,
            area in prop::sample::select(vec!["", "150600", "150602", "150602001", "150602001001", "150602001001002", "150603"]),
        ) {
            let store = Store::new(0);
            for name in CATEGORIES {
                store.category(name);
            }
            let now = NOW + later;
            let mut all = Vec::new();
            for life in &lives {
                let id = Uuid::now_v7();
                let facts = life.facts(&store, id, life.steps.len());
                // Only the past has happened; deadlines may lie ahead.
                let past = |at: Micros| at.min(now);
                let facts = Facts {
                    resolved: facts.resolved.map(past),
                    verified: facts.verified.map(|d| d.min(day_of(now))),
                    whistles: facts.whistles.iter().map(|d| (*d).min(day_of(now))).collect(),
                    tasks: facts.tasks.iter().map(|t| TaskFact { dispatched: t.dispatched.min(day_of(now)), ..*t }).collect(),
                    ..facts
                };
                store.put(id, facts.clone(), hour_of(now));
                all.push(facts);
            }
            let at = DateTime::from_timestamp_micros(now).unwrap();
            let got = store.overview("x", key(area), window_days, at);
            prop_assert_eq!(got, by_definition(&store, &all, key(area), window_days, now));
        }
    }

    // --- property: the trend counts what trend.rs defines, from the events as they happened ---

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_trend_counts_what_the_definitions_say(
            lives in prop::collection::vec(life(), 1..12),
            hours in prop_oneof![Just(1u32), 1u32..=168, Just(168u32)],
            later in 0..7 * DAY,
            area in prop::sample::select(vec!["", "150600", "150602", "150602001", "150602001001", "150602001001002", "150603"]),
        ) {
            let store = Store::new(0);
            for name in CATEGORIES {
                store.category(name);
            }
            let now = NOW + later;
            let current = hour_of(now);
            let first = current - (hours as Hour - 1);
            let mut expected = vec![(0u64, 0u64); hours as usize];
            for life in &lives {
                // Only what happened up to now.
                let times: Vec<Micros> = life.times().into_iter().take_while(|at| *at <= now).collect();
                let id = Uuid::now_v7();
                store.put(id, life.facts(&store, id, times.len()), current);
                if !grid(life.grid).areas().contains(&key(area)) {
                    continue;
                }
                if (first..=current).contains(&hour_of(life.opened)) {
                    expected[(hour_of(life.opened) - first) as usize].0 += 1;
                }
                // Each hour with a resolution once, however many it had.
                let mut resolved: Vec<Hour> = life
                    .steps
                    .iter()
                    .zip(&times)
                    .filter(|(step, _)| step.kinds.resolved)
                    .map(|(_, at)| hour_of(*at))
                    .filter(|hour| (first..=current).contains(hour))
                    .collect();
                resolved.dedup();
                for hour in resolved {
                    expected[(hour - first) as usize].1 += 1;
                }
            }
            prop_assert_eq!(buckets(&store, area, hours, now), expected);
        }
    }
}
