//! What one incident adds to the counters of each area containing it, and the counters of an
//! area that add it up.

use std::collections::{btree_map, BTreeMap, HashMap};

use whistle_domain::{
    incident::{Satisfaction, Status},
    policy::LedgerRates,
    Level,
};

use super::{
    day_of, day_start, hour_of, hour_start, CategoryId, Day, Facts, Hour, Micros, Urgency,
    KEPT_DAYS, KEPT_HOURS,
};

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
    /// Open and in the long-term ledger (挂账) since then: never overdue.
    Ledgered(Micros),
    Day(Day, DayMetric),
    Hour(Hour, HourMetric),
    /// Its SLA deadline (not for duplicates), and whether it was resolved by it.
    Due {
        at: Micros,
        in_time: bool,
    },
}

pub(super) const RESOLVED: [Status; 3] =
    [Status::Resolved, Status::Closed, Status::ClosedUnverified];

/// Everything one incident adds to the counters: the definitions of `overview.rs`, per incident,
/// with ledger cases counted in the resolution rate as `ledger` says.
pub(crate) fn contributions(facts: &Facts, ledger: LedgerRates) -> Vec<Contribution> {
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
        match (facts.ledgered, facts.overdue, facts.due) {
            (Some(since), _, _) => out.push(C::Ledgered(since)),
            (None, true, _) => out.push(C::OverdueFlagged),
            (None, false, Some(at)) => out.push(C::Pending(at)),
            (None, false, None) => {}
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
            .map(|at| C::Day(day_of(*at), DayMetric::Whistled)),
    );
    for task in &facts.tasks {
        out.push(C::Day(task.dispatched_day(), DayMetric::Dispatched));
        if task.accepted_in_time {
            out.push(C::Day(task.dispatched_day(), DayMetric::AcceptedInTime));
        }
    }
    let shelved =
        ledger == LedgerRates::Excluded && facts.shelved_round() == Some(facts.reopen_count);
    if let (Some(at), false, false) = (facts.due, facts.status == Status::Duplicate, shelved) {
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
pub(super) struct DayCounts {
    pub(super) reported: i32,
    pub(super) resolved: i32,
    pub(super) whistles: i32,
    pub(super) dispatched: i32,
    pub(super) accepted_in_time: i32,
    pub(super) due: i32,
    pub(super) resolved_in_time: i32,
    pub(super) followed_up: i32,
    pub(super) satisfied: i32,
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
pub(super) struct HourCounts {
    pub(super) reported: i32,
    pub(super) resolved: i32,
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
pub(super) struct DeadlineCounts {
    /// Incidents due then (kept from the start of the area's current day on).
    pub(super) due: i32,
    pub(super) resolved_in_time: i32,
    /// Open, unflagged incidents due then (kept until they leave that state).
    pub(super) pending: i32,
}

const STATUSES: usize = Status::ALL.len();

pub(super) fn status_index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in Status::ALL")
}

pub(super) fn level_index(level: Level) -> usize {
    Level::ALL
        .iter()
        .position(|l| *l == level)
        .expect("every level is in Level::ALL")
}

/// The counters of one area. Entries that drop to zero are removed, so equal counts are equal
/// values (which the tests rely on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AreaCounters {
    pub(super) by_status: [i64; STATUSES],
    pub(super) open_by_level: [i64; 5],
    pub(super) open_by_urgency: [i64; 3],
    pub(super) open_by_category: HashMap<CategoryId, i64>,
    pub(super) overdue_flagged: i64,
    /// Open ledger cases by when they were entered, for the ledger's size and age.
    pub(super) ledger: BTreeMap<Micros, i64>,
    pub(super) days: BTreeMap<Day, DayCounts>,
    /// Only hours with something in them, so a quiet area costs nothing.
    pub(super) hours: BTreeMap<Hour, HourCounts>,
    /// Deadlines from the start of the horizon's hour on, to the microsecond.
    pub(super) deadlines: BTreeMap<Micros, DeadlineCounts>,
    /// Deadlines before the horizon's hour, summed: every one of them is past, so "overdue now"
    /// and "due up to now" walk at most an hour of entries, not every open incident's deadline
    /// (the `due` part counts the horizon's day only).
    pub(super) before_horizon: DeadlineCounts,
    /// The latest hour the counters were pruned for: hour counts from `horizon - 168`, day counts
    /// from its day minus 366 and the `due` part of deadlines from the start of its day are kept.
    pub(super) horizon: Hour,
}

impl AreaCounters {
    /// Incidents being worked on (handling, whistled, accepted).
    pub(super) fn open(&self) -> i64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_open())
            .map(|s| self.by_status[status_index(*s)])
            .sum()
    }

    /// Open incidents flagged overdue, or past their deadline before the flag is set.
    pub(super) fn overdue(&self, now: Micros) -> i64 {
        let pending: i64 = self
            .deadlines_from(hour_start(self.horizon), now, false)
            .map(|(_, d)| i64::from(d.pending))
            .sum();
        self.overdue_flagged + i64::from(self.before_horizon.pending) + pending
    }

    /// Incidents of `today` due up to `now` (inclusive), and of those the ones resolved in time.
    pub(super) fn due_by(&self, today: Day, now: Micros) -> (i64, i64) {
        let mut sums = (0, 0);
        if self.today() == today {
            sums.0 += i64::from(self.before_horizon.due);
            sums.1 += i64::from(self.before_horizon.resolved_in_time);
        }
        let from = hour_start(self.horizon).max(day_start(today));
        for (_, d) in self.deadlines_from(from, now, true) {
            sums.0 += i64::from(d.due);
            sums.1 += i64::from(d.resolved_in_time);
        }
        sums
    }

    /// The entries from `from` to `now` (`now` itself when `inclusive`); none when `now` lies
    /// before `from` (a clock set back).
    fn deadlines_from(
        &self,
        from: Micros,
        now: Micros,
        inclusive: bool,
    ) -> impl Iterator<Item = (&Micros, &DeadlineCounts)> {
        let end = if inclusive {
            now.saturating_add(1)
        } else {
            now
        };
        self.deadlines.range(from..end.max(from))
    }
}

/// Changes the value at `key`, leaving no entry when it ends up at zero.
pub(super) fn with_entry<K: Ord, V: Default + PartialEq>(
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
    pub(super) fn new(hour: Hour) -> AreaCounters {
        AreaCounters {
            by_status: [0; STATUSES],
            open_by_level: [0; 5],
            open_by_urgency: [0; 3],
            open_by_category: HashMap::new(),
            overdue_flagged: 0,
            ledger: BTreeMap::new(),
            days: BTreeMap::new(),
            hours: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            before_horizon: DeadlineCounts::default(),
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
    pub(super) fn advance(&mut self, hour: Hour) {
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
        if today != previous_day {
            self.days = self.days.split_off(&self.first_kept_day());
            self.before_horizon.due = 0;
            self.before_horizon.resolved_in_time = 0;
        }
        let kept = self.deadlines.split_off(&hour_start(hour));
        for (at, counts) in std::mem::replace(&mut self.deadlines, kept) {
            self.before_horizon.pending += counts.pending;
            if at >= day_start(today) {
                self.before_horizon.due += counts.due;
                self.before_horizon.resolved_in_time += counts.resolved_in_time;
            }
        }
    }

    /// The deadline entry at `at`: the map's, or the sum before the horizon's hour.
    fn deadline(&mut self, at: Micros, change: impl FnOnce(&mut DeadlineCounts)) {
        if at < hour_start(self.horizon) {
            change(&mut self.before_horizon);
        } else {
            with_entry(&mut self.deadlines, at, change);
        }
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.by_status.iter().all(|n| *n == 0)
            && self.open_by_level.iter().all(|n| *n == 0)
            && self.open_by_urgency.iter().all(|n| *n == 0)
            && self.open_by_category.is_empty()
            && self.overdue_flagged == 0
            && self.ledger.is_empty()
            && self.days.is_empty()
            && self.hours.is_empty()
            && self.deadlines.is_empty()
            && self.before_horizon == DeadlineCounts::default()
    }

    /// Adds (`sign` 1) or removes (`sign` -1) one contribution.
    pub(super) fn add(&mut self, contribution: Contribution, sign: i32) {
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
            Contribution::Ledgered(since) => with_entry(&mut self.ledger, since, |n| *n += wide),
            Contribution::Pending(at) => {
                self.deadline(at, |d| d.pending += sign);
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
                    self.deadline(at, |d| {
                        d.due += sign;
                        d.resolved_in_time += in_time;
                    });
                }
            }
        }
    }
}
