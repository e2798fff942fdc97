//! The late list behind `ListOverdue`, by overdue.rs's definition: every open incident outside
//! the long-term ledger by its SLA deadline, and every task such an incident has in progress by
//! the deadline its department owes (`TaskFact::owed_by`), ordered as the RPC lists them.
//!
//! Whether an item is late depends on the clock, not on an event, so the list holds every item
//! that *may* be late, in deadline order, and a read takes the prefix before now: it walks only
//! what it returns and what lies in the same district outside the area. Dispatch's `overdue`
//! flag can come before a replica's clock reaches the deadline, so flagged incidents are also
//! kept apart, to be read past now.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap},
    sync::{Arc, RwLock},
};

use uuid::Uuid;
use whistle_domain::{AreaCode, Level};

use super::{DepartmentId, Facts, Grid, Micros};

/// An item's place in `ListOverdue`'s order: by deadline, incident, then the incident itself
/// before its tasks (`task_id NULLS FIRST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LateKey {
    pub due: Micros,
    pub incident: Uuid,
    pub task: Option<u32>,
}

impl LateKey {
    /// The first key due at `at` or later.
    fn first_at(at: Micros) -> LateKey {
        LateKey {
            due: at,
            incident: Uuid::nil(),
            task: None,
        }
    }
}

/// What the RPC shows of an item besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LateItem {
    pub grid: Grid,
    pub level: Level,
    pub title: Arc<str>,
    /// The task's department; `None` for the incident itself.
    pub department: Option<DepartmentId>,
    /// Dispatch flagged the incident overdue.
    pub flagged: bool,
}

/// The items an incident may put on the list, whatever the clock says.
fn items(id: Uuid, facts: &Facts) -> Vec<(LateKey, LateItem)> {
    if !facts.status.is_open() || facts.ledgered.is_some() {
        return Vec::new();
    }
    let item = |department, flagged| LateItem {
        grid: facts.grid,
        level: facts.level,
        title: facts.title.clone(),
        department,
        flagged,
    };
    let incident = facts.due.map(|due| {
        (
            LateKey {
                due,
                incident: id,
                task: None,
            },
            item(None, facts.overdue),
        )
    });
    let tasks = facts.tasks.iter().filter_map(|task| {
        task.owed_by.map(|due| {
            (
                LateKey {
                    due,
                    incident: id,
                    task: Some(task.id),
                },
                item(Some(task.department), false),
            )
        })
    });
    incident.into_iter().chain(tasks).collect()
}

/// One district's items.
#[derive(Debug, Default)]
struct District {
    all: BTreeMap<LateKey, LateItem>,
    /// The keys of `all` whose incident dispatch flagged overdue.
    flagged: BTreeSet<LateKey>,
}

/// Every district's items; a read holds the lock only while it walks what it returns.
#[derive(Debug, Default)]
pub(super) struct LateList {
    districts: RwLock<HashMap<u64, District>>,
}

/// An area code as the digits of its grid-code prefix and their count (a city's first four, as
/// in `area.rs`).
fn prefix(area: &AreaCode) -> (u64, u32) {
    let code = area.as_str();
    let code = if area.level() == Level::City {
        &code[..4]
    } else {
        code
    };
    (
        code.parse().expect("area codes are digits"),
        code.len() as u32,
    )
}

impl LateList {
    /// Replaces incident `id`'s items as `old` listed them with those of `new`.
    pub(super) fn replace(&self, id: Uuid, old: Option<&Facts>, new: &Facts) {
        let removed = old.map(|facts| items(id, facts)).unwrap_or_default();
        let added = items(id, new);
        if removed == added {
            return;
        }
        let mut districts = self
            .districts
            .write()
            .expect("the late list's lock is never poisoned");
        let district = districts.entry(new.grid.district()).or_default();
        for (key, _) in removed {
            district.all.remove(&key);
            district.flagged.remove(&key);
        }
        for (key, item) in added {
            if item.flagged {
                district.flagged.insert(key);
            }
            district.all.insert(key, item);
        }
    }

    /// The area's late items at `now`, the longest late first, at most `limit`.
    pub(super) fn list(
        &self,
        area: &AreaCode,
        limit: usize,
        now: Micros,
    ) -> Vec<(LateKey, LateItem)> {
        let (digits, len) = prefix(area);
        let inside = |grid: Grid| grid.prefix(len) == digits;
        // District codes are the first six digits of a grid code.
        let relevant = |district: u64| {
            if len <= 6 {
                district / 10u64.pow(6 - len) == digits
            } else {
                digits / 10u64.pow(len - 6) == district
            }
        };
        let districts = self
            .districts
            .read()
            .expect("the late list's lock is never poisoned");
        let first_ahead = LateKey::first_at(now);
        // Each relevant district's items in order: every late key lies before `now` and every
        // flagged one ahead at or after it, so the two parts chained are in order.
        let mut runs: Vec<_> = districts
            .iter()
            .filter(|(code, _)| relevant(**code))
            .map(|(_, district)| {
                let late = district.all.range(..first_ahead);
                let flagged_ahead = district
                    .flagged
                    .range(first_ahead..)
                    .filter_map(|key| district.all.get_key_value(key));
                late.chain(flagged_ahead)
                    .filter(|(_, item)| inside(item.grid))
                    .peekable()
            })
            .collect();
        // Merged by key, touching only the items returned (a city call reads ten districts).
        let mut heads: BinaryHeap<Reverse<(LateKey, usize)>> = runs
            .iter_mut()
            .enumerate()
            .filter_map(|(run, items)| items.peek().map(|(key, _)| Reverse((**key, run))))
            .collect();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(Reverse((_, run))) = heads.pop() else {
                break;
            };
            let (key, item) = runs[run].next().expect("a head is a peeked item");
            out.push((*key, item.clone()));
            if let Some((next, _)) = runs[run].peek() {
                heads.push(Reverse((**next, run)));
            }
        }
        out
    }

    /// How many items the list holds (shown in `/metrics` with the store's sizes).
    pub(super) fn len(&self) -> usize {
        self.districts
            .read()
            .expect("the late list's lock is never poisoned")
            .values()
            .map(|district| district.all.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use whistle_domain::incident::Status;

    use super::*;
    use crate::aggregates::{
        fixtures::{grid, opened, task, NOW},
        Store, TaskFact,
    };

    const MINUTE: Micros = 60_000_000;

    fn keys(list: &LateList, area: &str, limit: usize, now: Micros) -> Vec<LateKey> {
        list.list(&area.parse().unwrap(), limit, now)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn key(due: Micros, incident: u128, task: Option<u32>) -> LateKey {
        LateKey {
            due,
            incident: id(incident),
            task,
        }
    }

    #[test]
    fn the_area_s_items_past_their_deadlines_come_longest_late_first() {
        let store = Store::new(0, whistle_domain::policy::LedgerRates::Excluded);
        let list = LateList::default();
        // Incident 1 in street 150602001, due an hour ago, with a task owing its report-in
        // since two hours ago and one owing nothing yet; incident 2 in another district, due
        // 30 minutes ago; incident 3 in street 150602002, due in an hour.
        let mut first = opened(&store, grid(0), NOW - 3 * 60 * MINUTE);
        first.due = Some(NOW - 60 * MINUTE);
        let late_task = TaskFact {
            id: 1,
            owed_by: Some(NOW - 120 * MINUTE),
            ..task(&store, NOW - 150 * MINUTE, false)
        };
        let owing_later = TaskFact {
            id: 2,
            owed_by: Some(NOW + MINUTE),
            ..late_task
        };
        first.tasks = [late_task, owing_later].into();
        list.replace(id(1), None, &first);
        let mut second = opened(&store, grid(3), NOW);
        second.due = Some(NOW - 30 * MINUTE);
        list.replace(id(2), None, &second);
        let mut third = opened(&store, grid(2), NOW);
        third.due = Some(NOW + 60 * MINUTE);
        list.replace(id(3), None, &third);

        let city = [
            key(NOW - 120 * MINUTE, 1, Some(1)),
            key(NOW - 60 * MINUTE, 1, None),
            key(NOW - 30 * MINUTE, 2, None),
        ];
        assert_eq!(keys(&list, "150600", 10, NOW), city);
        assert_eq!(keys(&list, "150600", 2, NOW), city[..2]);
        assert_eq!(keys(&list, "150602", 10, NOW), city[..2]);
        assert_eq!(keys(&list, "150602001", 10, NOW), city[..2]);
        assert_eq!(keys(&list, "150602001001002", 10, NOW), []);
        assert_eq!(keys(&list, "150602002", 10, NOW), []);
        assert_eq!(keys(&list, "150603", 10, NOW), city[2..]);
        // Two hours on, everything is late, the task owing later too.
        assert_eq!(keys(&list, "150602", 10, NOW + 120 * MINUTE).len(), 4);

        // Flagged before this clock reaches the deadline: listed already.
        let flagged = Facts {
            version: 2,
            overdue: true,
            ..third.clone()
        };
        list.replace(id(3), Some(&third), &flagged);
        assert_eq!(
            keys(&list, "150602002", 10, NOW),
            [key(NOW + 60 * MINUTE, 3, None)]
        );

        // Resolved or entered in the ledger: off the list, its tasks with it.
        let resolved = Facts {
            version: 2,
            status: Status::Resolved,
            ..first.clone()
        };
        list.replace(id(1), Some(&first), &resolved);
        let ledgered = Facts {
            version: 3,
            ledgered: Some(NOW),
            ..flagged.clone()
        };
        list.replace(id(3), Some(&flagged), &ledgered);
        assert_eq!(keys(&list, "150600", 10, NOW + 120 * MINUTE), city[2..]);
        assert_eq!(list.len(), 1);
    }
}
