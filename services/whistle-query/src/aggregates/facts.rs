//! What the aggregates know of one incident, and what an event changes of it.

use std::sync::Arc;
use uuid::Uuid;

use whistle_domain::{
    incident::{Satisfaction, Status, TaskStatus},
    Level,
};
use whistle_proto::v1;

use super::{day_of, hour_of, Day, Grid, Hour, Micros};

/// Urgency as intake stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Urgency {
    Normal,
    Urgent,
    Emergency,
}

impl Urgency {
    pub(super) const ALL: [Urgency; 3] = [Urgency::Normal, Urgency::Urgent, Urgency::Emergency];

    pub(super) fn as_str(self) -> &'static str {
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
pub(crate) struct CategoryId(pub(super) u32);

/// A department id, interned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DepartmentId(pub(super) u32);

/// A department task as the overview's response rate and the scoreboard count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskFact {
    /// Its position within the incident, as commands and `ListOverdue` name it.
    pub id: u32,
    pub department: DepartmentId,
    /// The reopen round it belongs to.
    pub round: u32,
    /// Neither returned nor cancelled by a reassignment.
    pub live: bool,
    /// Has a return reason (returned, whether or not reassigned since).
    pub returned: bool,
    /// Its department disputed it (派单异议), whatever the arbitration.
    pub disputed: bool,
    pub dispatched: Micros,
    pub accepted: Option<Micros>,
    /// `accepted_at <= accept_due_at`.
    pub accepted_in_time: bool,
    pub resolve_due: Option<Micros>,
    pub resolved: Option<Micros>,
    /// While the department still owes something, the deadline it owes it by: the report-in
    /// while dispatched or supervised, the work once accepted (`overdue::TASK_DUE`).
    pub owed_by: Option<Micros>,
}

impl TaskFact {
    pub(crate) fn dispatched_day(&self) -> Day {
        day_of(self.dispatched)
    }

    /// [`TaskFact::owed_by`] of a task in `status` with these deadlines.
    pub(crate) fn owed(
        status: TaskStatus,
        accept_due: Option<Micros>,
        resolve_due: Option<Micros>,
    ) -> Option<Micros> {
        match status {
            TaskStatus::Dispatched | TaskStatus::Supervised => accept_due,
            TaskStatus::Accepted => resolve_due,
            _ => None,
        }
    }
}

/// A timeline entry the scoreboard reads, in the incident's timeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// `incident.resolved`.
    Resolved(Micros),
    /// `incident.verified`; satisfied when the next entry is `incident.closed` (the follow-up
    /// closed the incident rather than reopening it).
    Verified { at: Micros, satisfied: bool },
    /// `incident.reopened`.
    Reopened,
    /// `incident.extension_approved`: the SLA deadline of the incident and its round's tasks
    /// moved later (延期).
    Extended(Micros),
    /// `incident.ledger_approved`: entered in the long-term ledger (挂账).
    Ledgered(Micros),
    /// `incident.ledger_returned`: back from the ledger to handling, with a fresh deadline.
    Unledgered,
}

/// What the overview counts of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub version: u64,
    pub grid: Grid,
    /// The title, which never changes (shared by the late list's items).
    pub title: Arc<str>,
    pub status: Status,
    pub level: Level,
    pub urgency: Urgency,
    pub category: CategoryId,
    /// Dispatch's flag: the SLA deadline passed before resolution.
    pub overdue: bool,
    /// When it was entered in the long-term ledger (挂账), while it is there.
    pub ledgered: Option<Micros>,
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
    /// When each `incident.whistled` happened: a task dispatched at one of these came by a
    /// whistle.
    pub whistles: Box<[Micros]>,
    pub tasks: Box<[TaskFact]>,
    /// Unsatisfying follow-ups so far; a task of an earlier round was redone.
    pub reopen_count: u32,
    /// Resolutions, follow-ups, reopens, approved extensions and the ledger's entries and returns,
    /// in timeline order.
    pub marks: Box<[Mark]>,
}

impl Facts {
    /// The reopen round the long-term ledger (挂账) holds: the round of the latest entry in the
    /// ledger, unless the case was returned to handling since. A case resolved out of the ledger
    /// stays held: it never went back to a deadline.
    pub(crate) fn shelved_round(&self) -> Option<u32> {
        let mut round = 0;
        let mut shelved = None;
        for mark in self.marks.iter() {
            match mark {
                Mark::Reopened => round += 1,
                Mark::Ledgered(_) => shelved = Some(round),
                Mark::Unledgered => shelved = None,
                _ => {}
            }
        }
        shelved
    }

    /// Whether a mark `is` one of interest, made in reopen round `round` at or after `since`: a
    /// task dispatched then had its deadline extended, or its case entered in the ledger.
    pub(crate) fn marked_in_round(
        &self,
        round: u32,
        since: Micros,
        is: impl Fn(&Mark) -> bool,
    ) -> bool {
        let mut current = 0;
        self.marks.iter().any(|mark| {
            if *mark == Mark::Reopened {
                current += 1;
            }
            let at = match mark {
                Mark::Extended(at) | Mark::Ledgered(at) => *at,
                _ => return false,
            };
            current == round && at >= since && is(mark)
        })
    }
}

/// The incident as an event states it after a transition; its place, urgency and opening day
/// never change and come from the stored facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub status: Status,
    pub level: Level,
    pub category: CategoryId,
    pub overdue: bool,
    pub ledgered: Option<Micros>,
    pub satisfaction: Option<Satisfaction>,
    pub due: Option<Micros>,
    pub tasks: Box<[TaskFact]>,
    pub reopen_count: u32,
}

/// What a transition did besides changing the state, from its event kinds. Within one
/// transition the engine writes a resolution, a follow-up and a reopen in that order (a follow-up
/// is followed by the closing or the reopen), so flags keep the timeline's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub whistles: u8,
    pub resolved: bool,
    pub verified: bool,
    /// The follow-up's next entry was `incident.closed`.
    pub satisfied: bool,
    pub reopened: bool,
    /// An approved extension, an entry in the ledger or a return from it: each a transition of
    /// its own.
    pub ledger_or_extension: Option<MarkKind>,
}

/// The marks besides resolutions, follow-ups and reopens, by their timeline kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkKind {
    Extended,
    Ledgered,
    Unledgered,
}

impl MarkKind {
    pub(crate) fn of(kind: &str) -> Option<MarkKind> {
        match kind {
            "incident.extension_approved" => Some(MarkKind::Extended),
            "incident.ledger_approved" => Some(MarkKind::Ledgered),
            "incident.ledger_returned" => Some(MarkKind::Unledgered),
            _ => None,
        }
    }

    pub(crate) fn at(self, at: Micros) -> Mark {
        match self {
            MarkKind::Extended => Mark::Extended(at),
            MarkKind::Ledgered => Mark::Ledgered(at),
            MarkKind::Unledgered => Mark::Unledgered,
        }
    }
}

impl Kinds {
    pub(crate) fn of<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Kinds {
        let mut out = Kinds::default();
        let mut previous = "";
        for kind in kinds {
            match kind {
                "incident.whistled" => out.whistles = out.whistles.saturating_add(1),
                "incident.resolved" => out.resolved = true,
                "incident.verified" => out.verified = true,
                "incident.reopened" => out.reopened = true,
                "incident.closed" if previous == "incident.verified" => out.satisfied = true,
                _ => {
                    if let Some(mark) = MarkKind::of(kind) {
                        out.ledger_or_extension = Some(mark);
                    }
                }
            }
            previous = kind;
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
    pub(super) fn next(&self, version: u64, at: Micros, state: State, kinds: Kinds) -> Facts {
        let mut whistles = self.whistles.to_vec();
        whistles.extend(std::iter::repeat_n(at, usize::from(kinds.whistles)));
        let mut marks = self.marks.to_vec();
        marks.extend(kinds.ledger_or_extension.map(|mark| mark.at(at)));
        if kinds.resolved {
            marks.push(Mark::Resolved(at));
        }
        if kinds.verified {
            marks.push(Mark::Verified {
                at,
                satisfied: kinds.satisfied,
            });
        }
        if kinds.reopened {
            marks.push(Mark::Reopened);
        }
        let resolved_hours = if kinds.resolved {
            with_hour(&self.resolved_hours, hour_of(at))
        } else {
            self.resolved_hours.clone()
        };
        Facts {
            version,
            grid: self.grid,
            title: self.title.clone(),
            status: state.status,
            level: state.level,
            urgency: self.urgency,
            category: state.category,
            overdue: state.overdue,
            ledgered: state.ledgered,
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
            reopen_count: state.reopen_count,
            marks: marks.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_up_is_satisfied_when_the_closing_comes_right_after_it() {
        let closed = Kinds::of(["incident.verified", "incident.closed"]);
        assert!(closed.verified && closed.satisfied && !closed.reopened);
        let reopened = Kinds::of(["incident.verified", "incident.reopened", "task.dispatched"]);
        assert!(reopened.verified && !reopened.satisfied && reopened.reopened);
        assert!(!Kinds::of(["incident.closed"]).satisfied);
    }

    #[test]
    fn resolution_hours_are_kept_once_each_in_order() {
        assert_eq!(*with_hour(&[], 7), [7]);
        assert_eq!(*with_hour(&[3, 7], 7), [3, 7]);
        assert_eq!(*with_hour(&[3, 7], 5), [3, 5, 7]);
        assert_eq!(*with_hour(&[3, 7], 9), [3, 7, 9]);
    }
}
