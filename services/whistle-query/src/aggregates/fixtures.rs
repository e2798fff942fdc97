//! What the aggregates' tests share: grids in two districts, a fixed now and a new incident.

use whistle_domain::{incident::Status, Level};

use super::{AreaKey, Facts, Grid, Micros, State, Store, TaskFact, Urgency};

/// Two grids of one street, one of another street, one of another district.
pub(super) const GRIDS: [&str; 4] = [
    "150602001001001",
    "150602001001002",
    "150602002001001",
    "150603001001001",
];
pub(super) const NOW: Micros = 1_780_000_000_000_000;

pub(super) fn grid(i: usize) -> Grid {
    Grid::parse(GRIDS[i]).unwrap()
}

pub(super) fn key(code: &str) -> AreaKey {
    if code.is_empty() {
        AreaKey::of(None)
    } else {
        AreaKey::of(Some(&code.parse().unwrap()))
    }
}

pub(super) fn opened(store: &Store, grid: Grid, at: Micros) -> Facts {
    Facts {
        version: 1,
        grid,
        title: "暖气不热".into(),
        status: Status::Handling,
        level: Level::Community,
        urgency: Urgency::Urgent,
        category: store.category("heating.no_heat"),
        overdue: false,
        ledgered: None,
        satisfaction: None,
        created: at,
        due: Some(at + 2 * 3_600_000_000),
        resolved: None,
        resolved_hours: Box::new([]),
        verified: None,
        whistles: Box::new([]),
        tasks: Box::new([]),
        reopen_count: 0,
        marks: Box::new([]),
    }
}

/// A live task of one department dispatched at `at`, reported in within its deadline or not.
pub(super) fn task(store: &Store, at: Micros, in_time: bool) -> TaskFact {
    TaskFact {
        id: 1,
        department: store.department("150602-urban_management"),
        round: 0,
        live: true,
        returned: false,
        disputed: false,
        dispatched: at,
        accepted: in_time.then_some(at + 60_000_000),
        accepted_in_time: in_time,
        resolve_due: Some(at + 86_400_000_000),
        resolved: None,
        // The report-in within 30 minutes, then the work within a day.
        owed_by: Some(
            at + if in_time {
                86_400_000_000
            } else {
                1_800_000_000
            },
        ),
    }
}

pub(super) fn state_of(facts: &Facts) -> State {
    State {
        status: facts.status,
        level: facts.level,
        category: facts.category,
        overdue: facts.overdue,
        ledgered: facts.ledgered,
        satisfaction: facts.satisfaction,
        due: facts.due,
        tasks: facts.tasks.clone(),
        reopen_count: facts.reopen_count,
    }
}
