//! The scoreboard's counters: what one incident adds to each (month, department) and (month,
//! street) row, and the counters of a month that add it up. The definitions are scoreboard.rs's
//! SQL, per incident; a month is a calendar month in Shanghai.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike as _, NaiveDate};
use whistle_domain::{incident::Status, policy::LedgerRates};

use super::{
    counters::{with_entry, RESOLVED},
    day_of, day_start, hour_of, hour_start, CategoryId, Day, DepartmentId, Facts, Hour, Mark,
    Micros,
};
use crate::scoreboard::Tally;

/// A calendar month in Shanghai: `year * 12 + month - 1`.
pub(crate) type MonthId = i32;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01, where [`day_of`] counts from.
const EPOCH_FROM_CE: i32 = 719_163;

pub(crate) fn month_of(at: Micros) -> MonthId {
    let date = NaiveDate::from_num_days_from_ce_opt(day_of(at).saturating_add(EPOCH_FROM_CE))
        .unwrap_or(NaiveDate::MAX);
    date.year() * 12 + date.month0() as i32
}

/// A row of a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Row {
    Department(DepartmentId),
    /// The street's 9-digit code as a number.
    Street(u64),
    /// The incidents of one category reported in a street (its sample alone), for the street
    /// board's category mix (类别构成).
    StreetCategory(u64, CategoryId),
}

/// What a row's sample (a department's tasks dispatched in the month, a street's incidents
/// reported in it) adds to the whistle, extension and ledger rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Signals {
    /// Dispatched by a whistle (a task); whistled for (an incident).
    pub whistled: bool,
    /// Its SLA deadline was moved later by an approved extension (延期).
    pub extended: bool,
    /// Entered in the long-term ledger (挂账).
    pub ledgered: bool,
}

/// One thing an incident adds to a row of a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A task dispatched in the month; `sample` is the department board's term of the rates over
    /// its sample (the street board's comes from [`Item::Reported`]).
    Dispatched {
        accepted_in_time: bool,
        returned: bool,
        disputed: bool,
        sample: Option<Signals>,
        /// `accepted_at - dispatched_at`, once reported in.
        wait: Option<Micros>,
    },
    /// A deadline in the month (a live task's `resolve_due_at`, an incident's `due_at`).
    Due { at: Micros, in_time: bool },
    /// The redo rate's base: a task resolved in the month, or an incident first resolved in it.
    Resolved { reopened: bool },
    /// The latest follow-up of the month.
    FollowedUp { satisfied: bool },
    /// An incident reported in the month (the street board's sample).
    Reported(Signals),
}

/// Everything one incident adds to the boards, with ledger cases counted in the resolution rate
/// as `ledger` says.
pub(crate) fn items(facts: &Facts, ledger: LedgerRates) -> Vec<(MonthId, Row, Item)> {
    let street = Row::Street(facts.grid.street());
    let mut out = Vec::with_capacity(4 * facts.tasks.len() + facts.marks.len() + 2);
    // The round the ledger holds out of the resolution rate, if the policy excludes it.
    let shelved = match ledger {
        LedgerRates::Excluded => facts.shelved_round(),
        LedgerRates::Unresolved => None,
    };
    for task in &facts.tasks {
        let month = month_of(task.dispatched);
        let department = Row::Department(task.department);
        let dispatched = |sample| Item::Dispatched {
            accepted_in_time: task.accepted_in_time,
            returned: task.returned,
            disputed: task.disputed,
            sample,
            wait: task.accepted.map(|at| at - task.dispatched),
        };
        let signals = Signals {
            // Dispatched by a whistle: the incident has an `incident.whistled` entry at that
            // instant.
            whistled: facts.whistles.contains(&task.dispatched),
            extended: facts.marked_in_round(task.round, task.dispatched, |m| {
                matches!(m, Mark::Extended(_))
            }),
            ledgered: facts.marked_in_round(task.round, task.dispatched, |m| {
                matches!(m, Mark::Ledgered(_))
            }),
        };
        out.push((month, department, dispatched(Some(signals))));
        out.push((month, street, dispatched(None)));
        if let (true, Some(at), false) = (task.live, task.resolve_due, shelved == Some(task.round))
        {
            let in_time = task.resolved.is_some_and(|r| r <= at);
            out.push((month_of(at), department, Item::Due { at, in_time }));
        }
        if let Some(at) = task.resolved {
            let reopened = facts.reopen_count > task.round;
            out.push((month_of(at), department, Item::Resolved { reopened }));
        }
    }

    let last_reopen = facts.marks.iter().rposition(|m| *m == Mark::Reopened);
    // Per month: the first resolution (its position), and the latest follow-up with the round it
    // judged (the reopens before it).
    let mut first_resolved: Vec<(MonthId, usize)> = Vec::new();
    let mut follow_ups: Vec<(MonthId, bool, u32)> = Vec::new();
    let mut reopens = 0u32;
    for (position, mark) in facts.marks.iter().enumerate() {
        match *mark {
            Mark::Resolved(at) => {
                let month = month_of(at);
                if !first_resolved.iter().any(|(m, _)| *m == month) {
                    first_resolved.push((month, position));
                }
            }
            Mark::Verified { at, satisfied } => {
                let month = month_of(at);
                follow_ups.retain(|(m, ..)| *m != month);
                follow_ups.push((month, satisfied, reopens));
            }
            Mark::Reopened => reopens += 1,
            Mark::Extended(_) | Mark::Ledgered(_) | Mark::Unledgered => {}
        }
    }
    for (month, position) in first_resolved {
        let reopened = last_reopen.is_some_and(|r| r > position);
        out.push((month, street, Item::Resolved { reopened }));
    }
    for (month, satisfied, round) in follow_ups {
        out.push((month, street, Item::FollowedUp { satisfied }));
        // Each department that resolved a task of the judged round, once.
        let mut judged: Vec<DepartmentId> = facts
            .tasks
            .iter()
            .filter(|t| t.round == round && t.resolved.is_some())
            .map(|t| t.department)
            .collect();
        judged.sort_unstable();
        judged.dedup();
        out.extend(
            judged
                .into_iter()
                .map(|d| (month, Row::Department(d), Item::FollowedUp { satisfied })),
        );
    }

    if facts.status != Status::Duplicate {
        if let (Some(at), false) = (facts.due, shelved == Some(facts.reopen_count)) {
            let in_time =
                RESOLVED.contains(&facts.status) && facts.resolved.is_some_and(|r| r <= at);
            out.push((month_of(at), street, Item::Due { at, in_time }));
        }
        let signals = Signals {
            whistled: !facts.whistles.is_empty(),
            extended: facts.marks.iter().any(|m| matches!(m, Mark::Extended(_))),
            ledgered: facts.marks.iter().any(|m| matches!(m, Mark::Ledgered(_))),
        };
        let month = month_of(facts.created);
        out.push((month, street, Item::Reported(signals)));
        let mix = Row::StreetCategory(facts.grid.street(), facts.category);
        out.push((month, mix, Item::Reported(Signals::default())));
    }
    out
}

/// Deadlines at one instant of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DeadlineCounts {
    due: i32,
    resolved_in_time: i32,
}

/// The counters of one row of one month. Entries that drop to zero are removed, so a row with
/// nothing left equals the default and is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RowCounters {
    dispatched: i64,
    accepted_in_time: i64,
    returned: i64,
    disputed: i64,
    /// The row's sample (a department's tasks dispatched, a street's incidents reported) and
    /// what of it was whistled, extended and entered in the ledger.
    sample: i64,
    whistled: i64,
    extended: i64,
    ledgered: i64,
    resolved: i64,
    reopened: i64,
    followed_up: i64,
    satisfied: i64,
    /// The month's deadlines per Shanghai day.
    due_days: BTreeMap<Day, DeadlineCounts>,
    /// From the board's cutoff on ([`MonthBoard::cutoff`]), its deadlines per UTC hour and to the
    /// microsecond: "due up to now" takes today's whole hours, then the current hour's deadlines
    /// up to now, so a read walks one hour of deadlines, not a day's.
    due_hours: BTreeMap<Hour, DeadlineCounts>,
    deadlines: BTreeMap<Micros, DeadlineCounts>,
    /// Times to accept, as a multiset, for the exact median.
    waits: BTreeMap<Micros, i32>,
}

impl RowCounters {
    fn add(&mut self, item: Item, sign: i32, cutoff: Micros) {
        let wide = i64::from(sign);
        let flag = |on: bool| if on { wide } else { 0 };
        match item {
            Item::Dispatched {
                accepted_in_time,
                returned,
                disputed,
                sample,
                wait,
            } => {
                self.dispatched += wide;
                self.accepted_in_time += flag(accepted_in_time);
                self.returned += flag(returned);
                self.disputed += flag(disputed);
                if let Some(signals) = sample {
                    self.add_sample(signals, wide);
                }
                if let Some(wait) = wait {
                    with_entry(&mut self.waits, wait, |n| *n += sign);
                }
            }
            Item::Due { at, in_time } => {
                let change = |d: &mut DeadlineCounts| {
                    d.due += sign;
                    d.resolved_in_time += if in_time { sign } else { 0 };
                };
                with_entry(&mut self.due_days, day_of(at), change);
                // Before the cutoff the entry was pruned (or never kept), on both sides.
                if at >= cutoff {
                    with_entry(&mut self.due_hours, hour_of(at), change);
                    with_entry(&mut self.deadlines, at, change);
                }
            }
            Item::Resolved { reopened } => {
                self.resolved += wide;
                self.reopened += flag(reopened);
            }
            Item::FollowedUp { satisfied } => {
                self.followed_up += wide;
                self.satisfied += flag(satisfied);
            }
            Item::Reported(signals) => self.add_sample(signals, wide),
        }
    }

    fn add_sample(&mut self, signals: Signals, wide: i64) {
        let flag = |on: bool| if on { wide } else { 0 };
        self.sample += wide;
        self.whistled += flag(signals.whistled);
        self.extended += flag(signals.extended);
        self.ledgered += flag(signals.ledgered);
    }

    /// The row's figures at `now`, with deadlines to the microsecond kept from `cutoff` on.
    pub(super) fn tally(&self, now: Micros, cutoff: Micros) -> Tally {
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        let sum = |counts: &mut dyn Iterator<Item = &DeadlineCounts>| {
            counts.fold((0i64, 0i64), |(due, in_time), d| {
                (
                    due + i64::from(d.due),
                    in_time + i64::from(d.resolved_in_time),
                )
            })
        };
        // Deadlines up to now: whole days before today, then today's up to the microsecond. Once
        // the feed has pruned today's (a request whose clock is more than a day behind the
        // feed's), today counts whole.
        let today = day_of(now);
        let (due, resolved_in_time) = if day_start(today) >= cutoff {
            // A Shanghai day starts on a UTC hour, so today is whole hours.
            let hour = hour_of(now);
            let parts = [
                sum(&mut self.due_days.range(..today).map(|(_, d)| d)),
                sum(&mut self
                    .due_hours
                    .range(hour_of(day_start(today))..hour)
                    .map(|(_, d)| d)),
                sum(&mut self.deadlines.range(hour_start(hour)..=now).map(|(_, d)| d)),
            ];
            parts
                .iter()
                .fold((0, 0), |(due, in_time), (d, t)| (due + d, in_time + t))
        } else {
            sum(&mut self.due_days.range(..=today).map(|(_, d)| d))
        };
        Tally {
            dispatched: count(self.dispatched),
            accepted_in_time: count(self.accepted_in_time),
            due: count(due),
            resolved_in_time: count(resolved_in_time),
            followed_up: count(self.followed_up),
            satisfied: count(self.satisfied),
            returned: count(self.returned),
            disputed: count(self.disputed),
            resolved: count(self.resolved),
            reopened: count(self.reopened),
            sample: count(self.sample),
            whistled: count(self.whistled),
            extended: count(self.extended),
            ledgered: count(self.ledgered),
            median_accept_seconds: median_seconds(&self.waits),
        }
    }
}

/// The median of a multiset of durations in seconds, as PostgreSQL's `percentile_cont(0.5)` over
/// `EXTRACT(EPOCH FROM …)::float8` computes it: the middle value, or for an even count
/// `lo + (hi - lo) * 0.5` of the two middle ones (its `float8_lerp`), in the same doubles.
fn median_seconds(waits: &BTreeMap<Micros, i32>) -> Option<f64> {
    let n: i64 = waits.values().map(|c| i64::from(*c)).sum();
    if n <= 0 {
        return None;
    }
    let (low_index, high_index) = ((n - 1) / 2, n / 2);
    let (mut low, mut high) = (None, None);
    let mut seen = 0i64;
    for (wait, count) in waits {
        seen += i64::from(*count);
        if low.is_none() && low_index < seen {
            low = Some(*wait);
        }
        if high_index < seen {
            high = Some(*wait);
            break;
        }
    }
    // PostgreSQL converts the exact decimal number of seconds to the nearest double, which is
    // what dividing the exact microseconds by 1e6 gives.
    let seconds = |micros: Micros| micros as f64 / 1e6;
    let (low, high) = (seconds(low?), seconds(high?));
    Some(if low_index == high_index {
        low
    } else {
        low + (high - low) * 0.5
    })
}

/// The rows of one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MonthBoard {
    pub(super) rows: HashMap<Row, RowCounters>,
    /// Deadlines are kept to the microsecond from the start of the day before the clock's (the
    /// feed's) day: today's are cut at now, and yesterday's too for a request whose clock read
    /// came just before the feed moved to the next day. Earlier ones only count by day.
    pub(super) cutoff: Micros,
}

impl MonthBoard {
    pub(super) fn new(horizon: Micros) -> MonthBoard {
        MonthBoard {
            rows: HashMap::new(),
            cutoff: MonthBoard::cutoff_at(horizon),
        }
    }

    fn cutoff_at(horizon: Micros) -> Micros {
        day_start(day_of(horizon) - 1)
    }

    /// Moves the cutoff to the clock's `horizon`, pruning the deadlines before it.
    pub(super) fn settle(&mut self, horizon: Micros) {
        let cutoff = MonthBoard::cutoff_at(horizon);
        if cutoff <= self.cutoff {
            return;
        }
        self.cutoff = cutoff;
        self.rows.retain(|_, row| {
            row.deadlines = row.deadlines.split_off(&cutoff);
            row.due_hours = row.due_hours.split_off(&hour_of(cutoff));
            *row != RowCounters::default()
        });
    }

    pub(super) fn add(&mut self, row: Row, item: Item, sign: i32) {
        let cutoff = self.cutoff;
        let counters = self.rows.entry(row).or_default();
        counters.add(item, sign, cutoff);
        if *counters == RowCounters::default() {
            self.rows.remove(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::time::{DAY, HOUR};

    #[test]
    fn months_are_calendar_months_in_shanghai() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let january = month_of(at("2027-01-31T23:59:59.999999+08:00"));
        assert_eq!(january, 2027 * 12);
        assert_eq!(month_of(at("2027-02-01T00:00:00+08:00")), january + 1);
        assert_eq!(month_of(at("2027-01-01T00:00:00+08:00")), january);
        assert_eq!(month_of(at("2026-12-31T23:59:59+08:00")), january - 1);
        assert_eq!(month_of(at("1969-12-31T16:00:00Z")), 1970 * 12);
    }

    fn multiset(values: &[Micros]) -> BTreeMap<Micros, i32> {
        let mut out = BTreeMap::new();
        for v in values {
            *out.entry(*v).or_default() += 1;
        }
        out
    }

    #[test]
    fn the_median_is_percentile_cont() {
        assert_eq!(median_seconds(&BTreeMap::new()), None);
        assert_eq!(median_seconds(&multiset(&[1_500_000])), Some(1.5));
        assert_eq!(
            median_seconds(&multiset(&[3_000_000, 1_000_000, 2_000_000])),
            Some(2.0)
        );
        assert_eq!(
            median_seconds(&multiset(&[1_000_000, 4_000_001, 2_000_000, 9_000_000])),
            Some(2.0 + (4.000001 - 2.0) * 0.5)
        );
        // Repeated values count each time.
        assert_eq!(
            median_seconds(&multiset(&[5_000_000, 5_000_000, 1_000_000, 7_000_000])),
            Some(5.0)
        );
    }

    /// The street's deadlines and the department's among `facts`' items.
    fn dues(facts: &Facts, ledger: LedgerRates) -> (usize, usize) {
        let items = items(facts, ledger);
        let count = |street: bool| {
            items
                .iter()
                .filter(|(_, row, item)| {
                    matches!(item, Item::Due { .. }) && matches!(row, Row::Street(_)) == street
                })
                .count()
        };
        (count(true), count(false))
    }

    #[test]
    fn a_ledger_case_leaves_the_resolution_rate_while_the_policy_excludes_it() {
        use crate::aggregates::fixtures::{grid, opened, task, NOW};
        let store = crate::aggregates::Store::new(0, LedgerRates::Excluded);
        let mut facts = opened(&store, grid(0), NOW);
        facts.tasks = Box::new([task(&store, NOW + 10, true)]);
        assert_eq!(dues(&facts, LedgerRates::Excluded), (1, 1));

        // Entered in the ledger: out under `excluded`, in under `unresolved`.
        facts.marks = Box::new([Mark::Ledgered(NOW + 20)]);
        assert_eq!(dues(&facts, LedgerRates::Excluded), (0, 0));
        assert_eq!(dues(&facts, LedgerRates::Unresolved), (1, 1));
        // Resolved out of the ledger: still out (it never went back to a deadline).
        facts.marks = Box::new([Mark::Ledgered(NOW + 20), Mark::Resolved(NOW + 30)]);
        assert_eq!(dues(&facts, LedgerRates::Excluded), (0, 0));
        // Returned to handling: in again, with whatever deadline it has now.
        facts.marks = Box::new([Mark::Ledgered(NOW + 20), Mark::Unledgered]);
        assert_eq!(dues(&facts, LedgerRates::Excluded), (1, 1));
        // A reopen starts a round the ledger does not hold; the earlier round's task stays out.
        facts.marks = Box::new([
            Mark::Ledgered(NOW + 20),
            Mark::Resolved(NOW + 30),
            Mark::Reopened,
        ]);
        facts.reopen_count = 1;
        assert_eq!(dues(&facts, LedgerRates::Excluded), (1, 0));
    }

    #[test]
    fn extensions_and_ledger_entries_count_for_the_tasks_of_their_round_dispatched_before() {
        use crate::aggregates::fixtures::{grid, opened, task, NOW};
        let store = crate::aggregates::Store::new(0, LedgerRates::Excluded);
        let mut facts = opened(&store, grid(0), NOW);
        facts.tasks = Box::new([task(&store, NOW + 10, true), task(&store, NOW + 100, true)]);
        facts.marks = Box::new([Mark::Extended(NOW + 50), Mark::Ledgered(NOW + 60)]);
        let signals: Vec<(Row, Signals)> = items(&facts, LedgerRates::Excluded)
            .into_iter()
            .filter_map(|(_, row, item)| match item {
                Item::Dispatched {
                    sample: Some(s), ..
                } => Some((row, s)),
                Item::Reported(s) if matches!(row, Row::Street(_)) => Some((row, s)),
                _ => None,
            })
            .collect();
        let flags: Vec<(bool, bool)> = signals
            .iter()
            .map(|(_, s)| (s.extended, s.ledgered))
            .collect();
        // The first task was dispatched before both, the second after; the incident had both.
        assert_eq!(flags, [(true, true), (false, false), (true, true)]);
    }

    #[test]
    fn a_row_drops_out_when_everything_is_taken_away() {
        let mut board = MonthBoard::new(0);
        let row = Row::Street(150602001);
        let items = [
            Item::Dispatched {
                accepted_in_time: true,
                returned: true,
                disputed: true,
                sample: Some(Signals {
                    whistled: true,
                    extended: true,
                    ledgered: true,
                }),
                wait: Some(60_000_000),
            },
            Item::Due {
                at: 5,
                in_time: true,
            },
            Item::Resolved { reopened: true },
            Item::FollowedUp { satisfied: true },
            Item::Reported(Signals {
                whistled: true,
                extended: true,
                ledgered: false,
            }),
        ];
        for item in items {
            board.add(row, item, 1);
        }
        let cutoff = board.cutoff;
        assert_eq!(board.rows[&row].tally(10, cutoff).due, 1);
        assert_eq!(board.rows[&row].tally(4, cutoff).due, 0);
        // Two hours on, the deadline counts through its hour.
        assert_eq!(board.rows[&row].tally(2 * HOUR, cutoff).due, 1);
        // Three days on, the deadline counts by its day, and taking it away still empties the row.
        board.settle(3 * DAY);
        assert!(board.rows[&row].deadlines.is_empty() && board.rows[&row].due_hours.is_empty());
        assert_eq!(board.rows[&row].tally(3 * DAY, board.cutoff).due, 1);
        for item in items {
            board.add(row, item, -1);
        }
        assert!(board.rows.is_empty());
    }
}
