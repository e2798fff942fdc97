use std::collections::BTreeMap;

use chrono::DateTime;
use proptest::prelude::*;
use whistle_domain::incident::Satisfaction;

use super::*;
use crate::{
    aggregates::{
        counters::{HourCounts, RESOLVED},
        fixtures::{grid, key, opened, state_of, task, GRIDS, NOW},
        proto_micros,
        time::{DAY, HOUR},
        Kinds, Micros, State, TaskFact,
    },
    trend,
};

#[test]
fn a_transition_s_second_event_and_replays_change_nothing() {
    let store = Store::new(0, LedgerRates::Excluded);
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
    let store = Store::new(0, LedgerRates::Excluded);
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
        Entry::Settled {
            version: 2,
            at: NOW
        }
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
fn terminal_incidents_are_dropped_a_day_after_the_newest_transition_and_stay_dropped() {
    let store = Store::new(0, LedgerRates::Excluded);
    let reference = Store::new(0, LedgerRates::Excluded);
    let hour = hour_of(NOW);
    let mut history = Vec::new();
    for i in 0..100 {
        let id = Uuid::now_v7();
        let facts = opened(&store, grid(i % GRIDS.len()), NOW);
        let closed = State {
            status: Status::Closed,
            satisfaction: Some(Satisfaction::Satisfied),
            ..state_of(&facts)
        };
        let kinds = Kinds::of(["incident.resolved", "incident.verified", "incident.closed"]);
        history.push(Update {
            id,
            version: 1,
            at: NOW,
            change: Change::Opened(facts),
        });
        history.push(Update {
            id,
            version: 2,
            at: NOW + HOUR,
            change: Change::Changed(closed, kinds),
        });
    }
    let still_open = Update {
        id: Uuid::now_v7(),
        version: 1,
        at: NOW,
        change: Change::Opened(opened(&store, grid(0), NOW)),
    };
    history.push(still_open);
    for update in &history {
        assert_eq!(store.apply(update.clone(), hour), Ok(true));
        reference.apply(update.clone(), hour).unwrap();
    }
    let sizes = store.sizes();
    assert_eq!((sizes.live, sizes.settled), (1, 100));

    // Days of the clock alone drop nothing: nothing newer than the closings has been seen.
    store.advance(hour + 72);
    assert_eq!(store.sizes().settled, 100);
    // A transition more than a day after the closings moves the floor past them.
    let later = NOW + HOUR + DAY + HOUR;
    let new = Update {
        id: Uuid::now_v7(),
        version: 1,
        at: later,
        change: Change::Opened(opened(&store, grid(1), later)),
    };
    for s in [&store, &reference] {
        s.apply(new.clone(), hour_of(later)).unwrap();
        // The feed's next look at the clock.
        s.advance(hour_of(later));
    }
    let sizes = store.sizes();
    assert_eq!((sizes.live, sizes.settled), (2, 0));

    // Every old event again — the overlap of a rebuild, a republished outbox row — is ignored,
    // neither resurrected nor taken for an unknown incident.
    for update in &history[..200] {
        assert_eq!(store.apply(update.clone(), hour_of(later)), Ok(false));
    }
    assert_eq!(store.sizes().settled, 0);
    assert_eq!(
        canonical(&store, hour + 72),
        canonical(&reference, hour + 72)
    );
    // A change of an incident never seen, after the floor, is still an inconsistency.
    let unknown = Update {
        id: Uuid::now_v7(),
        version: 2,
        at: later,
        change: Change::Changed(state_of(&opened(&store, grid(0), later)), Kinds::default()),
    };
    assert!(matches!(
        store.apply(unknown, hour_of(later)),
        Err(Inconsistency::Unknown(_))
    ));
}

#[test]
fn scoreboard_months_before_the_kept_days_are_dropped_and_read_elsewhere() {
    let store = Store::new(0, LedgerRates::Excluded);
    let old = NOW - 400 * DAY;
    let mut facts = opened(&store, grid(0), old);
    facts.tasks = Box::new([task(&store, old, true)]);
    store.put(Uuid::now_v7(), facts, old, hour_of(old));
    let now = DateTime::from_timestamp_micros(NOW).unwrap();
    let query = |month: &str| {
        let request = v1::GetScoreboardRequest {
            area_code: String::new(),
            month: month.into(),
            kind: v1::ScoreboardKind::Departments as i32,
        };
        scoreboard::Query::parse(&request, now).unwrap()
    };
    let scoring = whistle_domain::policy::builtin("ordos").unwrap().scoring();
    let old_month = DateTime::from_timestamp_micros(old)
        .unwrap()
        .with_timezone(&crate::overview::shanghai())
        .format("%Y-%m")
        .to_string();
    assert!(store
        .scoreboard(&query(&old_month), &scoring, now)
        .unwrap()
        .is_some());
    assert_eq!(store.sizes().months, 1);

    store.advance(hour_of(NOW));
    assert_eq!(
        store.sizes().months,
        0,
        "400 days back is past the 367 kept"
    );
    assert!(store
        .scoreboard(&query(&old_month), &scoring, now)
        .unwrap()
        .is_none());
    assert!(store
        .scoreboard(&query(""), &scoring, now)
        .unwrap()
        .is_some());
    // Changes to a dropped month are ignored: no row comes back.
    let mut again = opened(&store, grid(1), old);
    again.tasks = Box::new([task(&store, old, false)]);
    store.put(Uuid::now_v7(), again, old, hour_of(NOW));
    assert_eq!(store.sizes().months, 0);
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
    let store = Store::new(0, LedgerRates::Excluded);
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
    let store = Store::new(0, LedgerRates::Excluded);
    let facts = opened(&store, grid(0), NOW);
    let due_day = day_of(facts.due.unwrap());
    store.put(Uuid::now_v7(), facts, NOW, hour_of(NOW));
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
    let store = Store::new(0, LedgerRates::Excluded);
    let id = Uuid::now_v7();
    let h0 = hour_of(NOW);
    let facts = opened(&store, grid(0), NOW);
    store.put(id, facts.clone(), NOW, h0);
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
        ..Kinds::default()
    })
}

/// A transition's new state, its kinds and how long after the previous one it happened.
#[derive(Debug, Clone)]
struct Step {
    status: Status,
    level: Level,
    category: usize,
    overdue: bool,
    /// Entered in the long-term ledger (挂账) then, while it stays there.
    ledgered: Option<Micros>,
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
        prop_oneof![3 => Just(None), 1 => (-40 * DAY..0).prop_map(Some)],
    )
        .prop_map(
            |(
                (status, level, category, overdue, satisfaction),
                (due, tasks, kinds, after),
                ledgered,
            )| Step {
                status,
                level,
                category,
                // The engine clears the flag and drops the entry as the status requires.
                overdue: overdue && ledgered.is_none(),
                ledgered: ledgered.filter(|_| status.is_open()).map(|at| NOW + at),
                satisfaction,
                due: due.map(|d| NOW + d),
                tasks,
                kinds,
                after,
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
            title: "路灯不亮".into(),
            status: self.status,
            level: Level::Grid,
            urgency: self.urgency,
            category: store.category(CATEGORIES[0]),
            overdue: false,
            ledgered: None,
            satisfaction: None,
            created: at,
            due: Some(at + DAY),
            resolved: None,
            resolved_hours: Box::new([]),
            verified: None,
            whistles: Box::new([]),
            tasks: Box::new([]),
            reopen_count: 0,
            marks: Box::new([]),
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
                ledgered: step.ledgered,
                satisfaction: step.satisfaction,
                due: step.due,
                tasks: step
                    .tasks
                    .iter()
                    .zip(1..)
                    .map(|((t, ok), id)| TaskFact {
                        id,
                        ..task(store, NOW + t, *ok)
                    })
                    .collect(),
                reopen_count: 0,
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

/// Delivers `plan`'s stream to a store and compares its counters with the final facts counted
/// at once. `in_time_order`: the stream as dispatch publishes it, in the order the transitions
/// happened (plus replays), with the clock following it and the store advancing as the feed
/// does — so terminal incidents are dropped on the way and replays of theirs must be ignored.
fn run(plan: &Plan, in_time_order: bool) -> Result<(), TestCaseError> {
    let store = Store::new(0, LedgerRates::Excluded);
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
    if in_time_order {
        // Stable: one incident's events keep their order, and a transition's copies theirs.
        stream.sort_by_key(|(_, _, update)| update.at);
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
    let updated = |n: usize, through: usize| {
        std::iter::once(plan.lives[n].opened)
            .chain(plan.lives[n].times())
            .nth(through)
            .expect("an event per transition")
    };
    if in_time_order && snapshot > 0 {
        // The snapshot's newest transition first, as `load::snapshot` does.
        let newest = (0..plan.lives.len())
            .filter_map(|n| last[n].map(|through| updated(n, through)))
            .max()
            .expect("some incident");
        store.observe(newest);
        hour = hour.max(hour_of(newest));
        store.advance(hour);
    }
    for (n, through) in last.iter().enumerate() {
        if let Some(through) = through {
            let facts = plan.lives[n].facts(&store, ids[n], *through);
            store.put(ids[n], facts, updated(n, *through), hour);
        }
    }
    for (k, (_, _, update)) in stream[start..].iter().enumerate() {
        let before = hour;
        hour += Hour::from(plan.hours[k % plan.hours.len()]);
        if in_time_order {
            hour = hour.max(hour_of(update.at));
            if hour > before {
                store.advance(hour);
            }
        }
        store
            .apply(update.clone(), hour)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    let expected = Store::new(0, LedgerRates::Excluded);
    for name in CATEGORIES {
        expected.category(name);
    }
    for (n, life) in plan.lives.iter().enumerate() {
        let facts = life.facts(&store, ids[n], life.steps.len());
        expected.put(ids[n], facts, updated(n, life.steps.len()), hour);
    }
    prop_assert_eq!(canonical(&store, hour), canonical(&expected, hour));
    let boards = |store: &Store| -> BTreeMap<MonthId, MonthBoard> {
        store
            .boards
            .iter()
            .map(|b| (*b.key(), b.value().clone()))
            .filter(|(_, b)| !b.rows.is_empty())
            .collect()
    };
    prop_assert_eq!(boards(&store), boards(&expected));
    // The late list, at times before, among and after the deadlines.
    let city: whistle_domain::AreaCode = "150600".parse().expect("a city code");
    for at in [NOW - 500 * DAY, NOW - DAY, NOW, NOW + DAY, NOW + 500 * DAY] {
        prop_assert_eq!(
            store.late.list(&city, usize::MAX, at),
            expected.late.list(&city, usize::MAX, at)
        );
    }
    // What is held: the live incidents, and the terminal ones settled since the floor.
    let floor = store.floor();
    for (n, life) in plan.lives.iter().enumerate() {
        let terminal = life.steps.last().is_some_and(|s| s.status.is_terminal());
        let dropped = terminal && updated(n, life.steps.len()) < floor;
        prop_assert_eq!(store.incidents.contains_key(&ids[n]), !dropped);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_events_in_order_with_replays_equals_counting_the_final_facts(plan in plan()) {
        run(&plan, false)?;
    }

    #[test]
    fn dropping_settled_incidents_on_the_way_changes_no_count(plan in plan()) {
        run(&plan, true)?;
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
        for t in f.tasks.iter().filter(|t| in_window(t.dispatched_day())) {
            rates.dispatched += 1;
            rates.accepted_in_time += u64::from(t.accepted_in_time);
        }
        if let Some(due) = f.due.filter(|d| *d >= window_start && *d <= now) {
            if f.status != Status::Duplicate {
                rates.due += 1;
                let resolved = RESOLVED.contains(&f.status) && f.resolved.is_some_and(|r| r <= due);
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
            .filter(|f| f.ledgered.is_none() && (f.overdue || f.due.is_some_and(|d| d < now)))
            .count() as u64,
        ledger: Some({
            let mut entered: Vec<Micros> = open.iter().filter_map(|f| f.ledgered).collect();
            entered.sort_unstable();
            overview::ledger_size(&entered, now)
        }),
        reported_today: inside.iter().filter(|f| day_of(f.created) == today).count() as u64,
        resolved_today: inside
            .iter()
            .filter(|f| f.resolved.is_some_and(|r| day_of(r) == today))
            .count() as u64,
        whistles_today: inside
            .iter()
            .map(|f| f.whistles.iter().filter(|at| day_of(**at) == today).count() as u64)
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
        let store = Store::new(0, LedgerRates::Excluded);
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
                whistles: facts.whistles.iter().map(|at| (*at).min(now)).collect(),
                tasks: facts.tasks.iter().map(|t| TaskFact { dispatched: t.dispatched.min(now), ..*t }).collect(),
                ..facts
            };
            store.put(id, facts.clone(), now, hour_of(now));
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
        let store = Store::new(0, LedgerRates::Excluded);
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
            store.put(id, life.facts(&store, id, times.len()), now, current);
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
