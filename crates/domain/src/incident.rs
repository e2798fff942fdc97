//! The incident state machine of the escalation engine: pure, deterministic, property-tested.
//!
//! [`open`] starts an incident from a valid report; [`apply`] takes an incident, an [`Input`] (a
//! command by an actor, or a timer firing) and `now`, and returns the next incident with its
//! [`Effect`]s (events for the timeline and the outbox, timers to schedule or cancel), or a
//! [`Rejection`] that changes nothing. No I/O, no clock, no async: dispatch loads the incident,
//! calls [`apply`] and commits the new state, the events and the timers in one transaction.
//!
//! # Rules
//!
//! **Levels.** An incident opens [`Status::Handling`] at its category's first level with two
//! deadlines: the level's self-handling window (`level_due`) and the SLA resolve deadline
//! (`resolve_due`, counted from the report). It goes one level up along grid → community → street →
//! district → city when the level's window runs out ([`Timer::LevelWindow`]), when the SLA is missed
//! ([`Timer::ResolveDeadline`], which also marks it `overdue`), or when the level escalates
//! ([`Command::Escalate`]). Each level starts its own window; the city has none and nothing above
//! it, so escalating there is refused. **The level never goes down.**
//!
//! **The whistle (吹哨).** At the street, going up while no department has a task is the whistle:
//! the incident becomes [`Status::Whistled`] and stays at the street, which summoned the
//! departments and evaluates them. The departments are those named in `Escalate`, else the
//! category's `summon` kinds resolved for the incident's district (the city's department where the
//! district has none). Each gets a [`Task`] that must report in within the policy's
//! `accept_deadline` and resolve by the incident's `resolve_due`: **the SLA clock does not restart**
//! on a whistle, a return or a reassignment (only a reopen sets a new deadline). The whistle starts a fresh street window for the
//! departments; when it runs out the incident goes to the district with its tasks, and from there
//! to the city. Departments are summoned only by the whistle, so an incident first handled above
//! the street is handled by its level.
//!
//! **Report-in (报到).** Only a liaison of the task's department accepts, while the task is
//! dispatched or supervised: a late report-in is still taken, and `accepted_at` after `accept_due`
//! records it. A missed report-in ([`Timer::AcceptDeadline`]) puts the task under supervision (督办)
//! with a reminder (催办) and escalates the incident to the district command centre if it is below
//! the district. When every *live* task (neither returned nor cancelled) has reported in, the
//! incident is [`Status::Accepted`]; a new task makes it `Whistled` again.
//!
//! **Return (退单) and reassignment (改派).** A department returns its task, with a reason, only
//! before reporting in: once in, it stays until the work is done (事不完、人不撤). The return goes
//! back to the street, whose handler (or an operator) reassigns it to another department serving the
//! area: the old task is cancelled and a new one dispatched with a fresh report-in deadline and the
//! same resolve deadline. Dispatched and supervised tasks can be reassigned too; a department has at
//! most one live task per round.
//!
//! **Resolution (办结).** A liaison resolves their accepted task. When every live task is resolved
//! and no returned task waits for reassignment, the incident is [`Status::Resolved`]. The handling
//! level (or an operator) resolves the incident itself when no task is in progress. A resolved
//! incident waits `follow_up_window` for the follow-up.
//!
//! **Follow-up (回访) and reopening (重办).** A grid worker of the reporting grid records the
//! resident's verdict. Satisfied or basically satisfied closes the incident ([`Status::Closed`]).
//! Unsatisfied reopens it at the level it had: `reopen_count` goes up (tasks carry the `round` they
//! belong to), `overdue` is cleared, `resolve_due` becomes `now + reopen_deadline` (never earlier
//! than it was), and the departments that resolved tasks in the last round are dispatched again
//! (`Whistled`), or, when none did, the level handles it again (`Handling`). No follow-up in time:
//! [`Status::ClosedUnverified`].
//!
//! **Supervision (督办) and comments.** An operator supervises a task in progress or the whole
//! incident while it is being handled; anyone who may act on the incident comments, even after it
//! closed. Neither changes the incident.
//!
//! **Terminal statuses.** `Closed`, `ClosedUnverified` and `Duplicate` refuse every command but
//! `Comment` and ignore timers. `Duplicate` is set by intake when it attaches an incident to another
//! (no command leads there); like the other terminal statuses it holds no task in progress and no
//! deadline.
//!
//! # Who may act
//!
//! | command | actor |
//! | --- | --- |
//! | `Accept`, `Return`, `Resolve` of a task | a liaison of the task's department |
//! | `Resolve` of the incident, `Escalate` | the current level's handler (a grid worker of the grid at grid level, else a [`Actor::Handler`] of that unit), an operator whose area contains the incident, [`Actor::System`] |
//! | `Reassign` | the street's handler, an operator in area, `System` |
//! | `Supervise` | an operator in area, `System` |
//! | `Verify` | a grid worker of the incident's grid |
//! | `Comment` | all of the above, a handler of any unit containing the incident, a liaison of a department that has had a task in it |
//!
//! Checks run in a fixed order, so each refusal has one reason: what the command names must exist
//! (`NotFound`: a task, a department), the actor must have authority (`Forbidden`), the arguments
//! must be well formed (`InvalidArgument`: a missing return note, a department twice or outside the
//! area), and the incident must be in a state the command applies to (`InvalidTransition`; or
//! `InvalidArgument` when an argument clashes with the state, such as departments named where no
//! whistle is blown or a reassignment to a department that already has a live task).
//!
//! # Timers
//!
//! [`Incident::timers`] is the set of timers the incident needs pending, derived from its deadlines.
//! [`apply`] emits exactly the `Schedule`/`Cancel` effects that turn the old set into the new one, so
//! a store that upserts on `Schedule` (one timer per incident and [`Timer::key`]) and deletes the
//! timer it fires always holds `timers()`. A timer applies only when `timers()` holds it due at or
//! before `now`; otherwise it is a no-op: a late firing after the deadline moved, the level changed
//! or the incident closed changes nothing and yields nothing, and an early firing is scheduled again.
//!
//! **Invariant:** `version` goes up by exactly one whenever the incident changes and stays put
//! otherwise (a refusal, a no-op timer, a comment). [`Incident::check_invariants`] lists the rest.
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> Handling: open at the first level
//!     Handling --> Handling: escalate, window or SLA missed away from the street (one level up)
//!     Handling --> Whistled: escalate, window or SLA missed at the street (吹哨)
//!     Whistled --> Accepted: the last live task reports in (报到), or the last one still out returns (退单)
//!     Accepted --> Whistled: reassignment (改派) dispatches a new task
//!     Whistled --> Whistled: escalate, window, SLA or report-in missed (督办, to the district), a return
//!     Accepted --> Accepted: escalate, window or SLA missed (one level up)
//!     Handling --> Resolved: the level resolves (办结)
//!     Whistled --> Resolved: the level resolves, no task in progress
//!     Accepted --> Resolved: every live task resolved, or the level resolves
//!     Resolved --> Closed: satisfied or basically satisfied (回访)
//!     Resolved --> Handling: unsatisfied, no task was resolved (重办)
//!     Resolved --> Whistled: unsatisfied, tasks dispatched again (重办)
//!     Resolved --> ClosedUnverified: no follow-up in time
//!     Closed --> [*]
//!     ClosedUnverified --> [*]
//!     Duplicate --> [*]
//!     note right of Duplicate: set by intake, never by a command
//! ```

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    policy::{Category, Policy},
    AreaCode, CategoryCode, Department, DepartmentCode, DepartmentKind, Level, OrgIndex, Person,
    PersonId, Role,
};

/// Longest note on a command, in characters (the `command.proto` limit).
pub const NOTE_MAX: usize = 1_000;
/// Longest resolution note or comment, in characters.
pub const TEXT_MAX: usize = 2_000;

/// Every event kind [`apply`] emits. Intake's `incident.reported` is not among them: [`open`] emits
/// only the first timers.
pub const EVENT_KINDS: [&str; 17] = [
    "incident.escalated",
    "incident.whistled",
    "incident.resolved",
    "incident.verified",
    "incident.reopened",
    "incident.closed",
    "incident.closed_unverified",
    "incident.overdue",
    "incident.supervised",
    "incident.commented",
    "task.dispatched",
    "task.accepted",
    "task.returned",
    "task.reassigned",
    "task.resolved",
    "task.supervised",
    "task.reminded",
];

/// A fieldless enum named as in `common.proto`, with a snake_case name for the database and serde.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($name), " {:?}"), s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Where an incident stands (`IncidentStatus`; intake opens incidents straight into `Handling`).
    Status {
        /// Handled by its current level, no department task in progress.
        Handling = "handling",
        /// The street blew the whistle and some live task has not reported in (or none is live).
        Whistled = "whistled",
        /// Every live task reported in.
        Accepted = "accepted",
        /// Resolved (办结), waiting for the follow-up (回访).
        Resolved = "resolved",
        /// Followed up and closed.
        Closed = "closed",
        /// No follow-up within the window.
        ClosedUnverified = "closed_unverified",
        /// Attached to another incident by intake.
        Duplicate = "duplicate",
    }
);

impl Status {
    /// Being worked on: handled by a level or by departments.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Handling | Status::Whistled | Status::Accepted)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Closed | Status::ClosedUnverified | Status::Duplicate
        )
    }
}

named_enum!(
    /// Where a department task stands (`TaskStatus`).
    TaskStatus {
        Dispatched = "dispatched",
        Accepted = "accepted",
        Returned = "returned",
        Resolved = "resolved",
        /// Report-in deadline missed (督办); still waiting for the department to report in.
        Supervised = "supervised",
        Cancelled = "cancelled",
    }
);

impl TaskStatus {
    /// The department still owes something: a report-in or the work.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            TaskStatus::Dispatched | TaskStatus::Supervised | TaskStatus::Accepted
        )
    }

    /// Counts towards the incident's status: neither returned nor cancelled.
    pub fn is_live(self) -> bool {
        !matches!(self, TaskStatus::Returned | TaskStatus::Cancelled)
    }
}

named_enum!(
    /// Why a department returns a task (退单, `ReturnReason`).
    ReturnReason {
        /// 非本部门职责
        NotOurDuty = "not_our_duty",
        /// 不属于本辖区
        WrongArea = "wrong_area",
        /// 权属不清
        UnclearOwnership = "unclear_ownership",
        /// 职责交叉
        OverlappingDuties = "overlapping_duties",
        /// 信息不全
        InsufficientInformation = "insufficient_information",
    }
);

named_enum!(
    /// The resident's verdict at follow-up (回访, `Satisfaction`).
    Satisfaction {
        Satisfied = "satisfied",
        BasicallySatisfied = "basically_satisfied",
        /// Reopens the incident (重办).
        Unsatisfied = "unsatisfied",
    }
);

/// A functional department's part in an incident, created by a whistle, a reassignment or a reopen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// 1-based position in [`Incident::tasks`].
    pub id: u32,
    pub department: DepartmentCode,
    pub status: TaskStatus,
    /// The incident's `reopen_count` when the task was dispatched.
    pub round: u32,
    pub dispatched_at: DateTime<Utc>,
    /// Report-in (报到) deadline.
    pub accept_due: DateTime<Utc>,
    /// The incident's SLA deadline when the task was dispatched.
    pub resolve_due: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The liaison who reported in.
    pub holder: Option<PersonId>,
    pub return_reason: Option<ReturnReason>,
    /// Placed under supervision (督办), by an operator or a missed report-in.
    pub supervised: bool,
}

/// The state of one incident as the escalation engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub status: Status,
    /// The level handling it; for tasks, the level supervising the departments.
    pub level: Level,
    /// The grid it was reported from.
    pub area: AreaCode,
    pub category: CategoryCode,
    /// When intake opened it; the SLA counts from here.
    pub reported_at: DateTime<Utc>,
    /// SLA deadline; moves only on a reopen, and only later.
    pub resolve_due: DateTime<Utc>,
    /// End of the current level's window, while open below the city.
    pub level_due: Option<DateTime<Utc>>,
    /// End of the follow-up window, while resolved.
    pub follow_up_due: Option<DateTime<Utc>>,
    pub tasks: Vec<Task>,
    /// How many times an unsatisfied follow-up reopened it; also the current task round.
    pub reopen_count: u32,
    /// The current `resolve_due` passed before resolution.
    pub overdue: bool,
    /// The latest follow-up verdict.
    pub satisfaction: Option<Satisfaction>,
    /// 1 when opened, +1 on every change.
    pub version: u64,
}

/// Who issues a command. Dispatch builds it from the acting person (`Actor::from(&person)`) or,
/// for the staff of a community, street or district office, from its own login records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    GridWorker {
        id: PersonId,
        grid: AreaCode,
    },
    Liaison {
        id: PersonId,
        department: DepartmentCode,
    },
    /// 指挥中心 operator of the city or a district.
    Operator {
        id: PersonId,
        area: AreaCode,
    },
    /// Staff of a unit of the chain (community, street, district or city office), acting for the
    /// incident while it is at that unit's level.
    Handler {
        id: PersonId,
        unit: AreaCode,
    },
    /// Dispatch itself (automations, admin tools): an operator's authority over every incident.
    System,
}

impl Actor {
    /// The person id, or `system`.
    pub fn id(&self) -> &str {
        match self {
            Actor::GridWorker { id, .. }
            | Actor::Liaison { id, .. }
            | Actor::Operator { id, .. }
            | Actor::Handler { id, .. } => id.as_str(),
            Actor::System => "system",
        }
    }

    /// An operator whose area contains the incident, or dispatch itself.
    fn commands(&self, incident: &Incident) -> bool {
        match self {
            Actor::Operator { area, .. } => area.contains(&incident.area),
            Actor::System => true,
            _ => false,
        }
    }

    /// The staff of the incident's unit at `level` (at the grid, its grid worker).
    fn handles(&self, incident: &Incident, level: Level) -> bool {
        let unit = match self {
            Actor::GridWorker { grid, .. } if level == Level::Grid => grid,
            Actor::Handler { unit, .. } if unit.level() == level => unit,
            _ => return false,
        };
        incident.area.at_level(level).as_ref() == Some(unit)
    }

    fn is_reporter(&self, incident: &Incident) -> bool {
        matches!(self, Actor::GridWorker { grid, .. } if *grid == incident.area)
    }

    /// Anyone with a part in the incident.
    fn takes_part(&self, incident: &Incident) -> bool {
        match self {
            Actor::GridWorker { grid, .. } => *grid == incident.area,
            Actor::Liaison { department, .. } => {
                incident.tasks.iter().any(|t| t.department == *department)
            }
            Actor::Operator { area, .. } => area.contains(&incident.area),
            Actor::Handler { unit, .. } => unit.contains(&incident.area),
            Actor::System => true,
        }
    }
}

impl From<&Person> for Actor {
    fn from(person: &Person) -> Actor {
        let id = person.id.clone();
        match &person.role {
            Role::GridWorker { grid } => Actor::GridWorker {
                id,
                grid: grid.clone(),
            },
            Role::Liaison { department } => Actor::Liaison {
                id,
                department: department.clone(),
            },
            Role::Operator { area } => Actor::Operator {
                id,
                area: area.clone(),
            },
            Role::Handler { unit } => Actor::Handler {
                id,
                unit: unit.clone(),
            },
        }
    }
}

/// A command on one incident (the `body` of `whistle.v1.Command`); tasks are named by [`Task::id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// 报到/签收.
    Accept {
        task: u32,
        note: String,
    },
    /// 退单; the note is required.
    Return {
        task: u32,
        reason: ReturnReason,
        note: String,
    },
    /// 办结 of a task, or of the incident by its level when `task` is `None`.
    Resolve {
        task: Option<u32>,
        note: String,
    },
    /// One level up; at the street, the whistle, summoning `departments` or else the category's.
    Escalate {
        note: String,
        departments: Vec<DepartmentCode>,
    },
    /// 回访.
    Verify {
        satisfaction: Satisfaction,
        note: String,
    },
    /// 督办 of a task, or of the incident when `task` is `None`.
    Supervise {
        task: Option<u32>,
        note: String,
    },
    /// 改派.
    Reassign {
        task: u32,
        to: DepartmentCode,
        note: String,
    },
    Comment {
        text: String,
    },
}

/// A durable timer of an incident; at most one of each key is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The current level's window ends (`level_due`).
    LevelWindow,
    /// A task's report-in deadline.
    AcceptDeadline { task: u32 },
    /// The SLA deadline (`resolve_due`).
    ResolveDeadline,
    /// The follow-up window ends (`follow_up_due`).
    FollowUpDeadline,
}

impl Timer {
    /// The stable key stored with the timer: `level_window`, `accept_deadline:{task}`,
    /// `resolve_deadline`, `follow_up_deadline`.
    pub fn key(&self) -> String {
        match self {
            Timer::LevelWindow => "level_window".to_owned(),
            Timer::AcceptDeadline { task } => format!("accept_deadline:{task}"),
            Timer::ResolveDeadline => "resolve_deadline".to_owned(),
            Timer::FollowUpDeadline => "follow_up_deadline".to_owned(),
        }
    }

    /// The timer a [`Timer::key`] names.
    pub fn from_key(key: &str) -> Option<Timer> {
        match key {
            "level_window" => Some(Timer::LevelWindow),
            "resolve_deadline" => Some(Timer::ResolveDeadline),
            "follow_up_deadline" => Some(Timer::FollowUpDeadline),
            _ => {
                let task = key.strip_prefix("accept_deadline:")?.parse().ok()?;
                Some(Timer::AcceptDeadline { task }).filter(|timer| timer.key() == key)
            }
        }
    }
}

/// What [`apply`] is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Actor, Command),
    Timer(Timer),
}

/// What the caller must do after committing the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Record on the timeline and publish; `kind` is one of [`EVENT_KINDS`].
    Event {
        kind: &'static str,
        task: Option<u32>,
        note: String,
    },
    /// Create the timer, or move it if one with the same key is pending.
    Schedule { timer: Timer, at: DateTime<Utc> },
    /// Delete the pending timer, if any.
    Cancel { timer: Timer },
}

/// Why a command was refused; nothing changed. Maps onto `CommandErrorCode` by [`Rejection::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("invalid transition: {0}")]
    InvalidTransition(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl Rejection {
    /// The `CommandErrorCode` name, snake_case: `forbidden`, `invalid_transition`, ….
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Forbidden(_) => "forbidden",
            Rejection::InvalidTransition(_) => "invalid_transition",
            Rejection::InvalidArgument(_) => "invalid_argument",
            Rejection::NotFound(_) => "not_found",
        }
    }
}

/// What the machine reads besides the incident: the policy it was dispatched under and the org.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub org: &'a OrgIndex,
}

impl<'a> Context<'a> {
    pub fn new(policy: &'a Policy, org: &'a OrgIndex) -> Context<'a> {
        Context { policy, org }
    }

    /// The department of `kind` serving the incident's district, or the city's.
    pub fn department_for(
        &self,
        incident: &Incident,
        kind: DepartmentKind,
    ) -> Option<&'a Department> {
        let district = incident.area.at_level(Level::District)?;
        self.org.department_for(&district, kind)
    }
}

/// A new incident reported from `grid` (a grid code) at `now`: handled at the category's first
/// level, with that level's window and the SLA deadline scheduled.
pub fn open(
    grid: AreaCode,
    category: &Category,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (Incident, Vec<Effect>) {
    let incident = Incident {
        status: Status::Handling,
        level: category.first_level,
        area: grid,
        category: category.code.clone(),
        reported_at: now,
        resolve_due: now + policy.resolve_deadline(category),
        level_due: policy
            .window(category, category.first_level)
            .map(|window| now + window),
        follow_up_due: None,
        tasks: Vec::new(),
        reopen_count: 0,
        overdue: false,
        satisfaction: None,
        version: 1,
    };
    let effects = timer_effects(&BTreeMap::new(), &incident.timers(), None);
    (incident, effects)
}

/// Applies a command or a timer to `incident` at `now`.
///
/// A timer is refused only when a whistle it triggers finds no department of a summoned kind in
/// the org (a misconfiguration) or the incident's category is missing from the policy.
pub fn apply(
    incident: &Incident,
    input: Input,
    ctx: &Context<'_>,
    now: DateTime<Utc>,
) -> Result<(Incident, Vec<Effect>), Rejection> {
    let mut step = Step {
        next: incident.clone(),
        events: Vec::new(),
        ctx: *ctx,
        now,
    };
    let fired = match input {
        Input::Command(actor, command) => {
            step.command(&actor, command)?;
            None
        }
        Input::Timer(timer) => {
            step.timer(timer)?;
            Some(timer)
        }
    };
    let Step {
        mut next,
        mut events,
        ..
    } = step;
    if next != *incident {
        next.version = incident.version + 1;
    }
    events.extend(timer_effects(&incident.timers(), &next.timers(), fired));
    Ok((next, events))
}

/// The `Schedule`/`Cancel` effects from one pending set to another. The fired timer is consumed by
/// the store, so it needs no `Cancel`, and a `Schedule` if it is still pending.
fn timer_effects(
    before: &BTreeMap<Timer, DateTime<Utc>>,
    after: &BTreeMap<Timer, DateTime<Utc>>,
    fired: Option<Timer>,
) -> Vec<Effect> {
    let cancels = before
        .keys()
        .filter(|timer| !after.contains_key(timer) && fired != Some(**timer))
        .map(|&timer| Effect::Cancel { timer });
    let schedules = after
        .iter()
        .filter(|(timer, at)| before.get(timer) != Some(at) || fired == Some(**timer))
        .map(|(&timer, &at)| Effect::Schedule { timer, at });
    cancels.chain(schedules).collect()
}

impl Incident {
    /// The timers this incident needs pending, and when each fires.
    pub fn timers(&self) -> BTreeMap<Timer, DateTime<Utc>> {
        let mut timers = BTreeMap::new();
        if self.status.is_open() {
            if let Some(at) = self.level_due {
                timers.insert(Timer::LevelWindow, at);
            }
            if !self.overdue {
                timers.insert(Timer::ResolveDeadline, self.resolve_due);
            }
            for task in &self.tasks {
                if task.status == TaskStatus::Dispatched {
                    timers.insert(Timer::AcceptDeadline { task: task.id }, task.accept_due);
                }
            }
        }
        if let (Status::Resolved, Some(at)) = (self.status, self.follow_up_due) {
            timers.insert(Timer::FollowUpDeadline, at);
        }
        timers
    }

    /// The tasks of the current round (since the last reopen).
    pub fn current_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks
            .iter()
            .filter(move |t| t.round == self.reopen_count)
    }

    pub fn task(&self, id: u32) -> Option<&Task> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.tasks.get(index)
    }

    /// `Accepted` when the current round has live tasks and all of them reported in, else `Whistled`.
    fn status_from_tasks(&self) -> Status {
        let mut live = self
            .current_tasks()
            .filter(|t| t.status.is_live())
            .peekable();
        let reported_in =
            |t: &Task| matches!(t.status, TaskStatus::Accepted | TaskStatus::Resolved);
        if live.peek().is_some() && live.all(reported_in) {
            Status::Accepted
        } else {
            Status::Whistled
        }
    }

    /// Checks what must hold of every incident [`open`] and [`apply`] produce.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |why: String| Err(why);
        if self.version == 0 {
            return fail("version starts at 1".into());
        }
        if self.resolve_due <= self.reported_at {
            return fail("resolve_due is not after reported_at".into());
        }
        let open = self.status.is_open();
        if self.level_due.is_some() != (open && self.level != Level::City) {
            return fail(format!(
                "level_due {:?} while {} at {}",
                self.level_due,
                self.status,
                self.level.as_str()
            ));
        }
        if self.follow_up_due.is_some() != (self.status == Status::Resolved) {
            return fail(format!(
                "follow_up_due {:?} while {}",
                self.follow_up_due, self.status
            ));
        }
        if self.status == Status::Closed
            && !matches!(
                self.satisfaction,
                Some(Satisfaction::Satisfied | Satisfaction::BasicallySatisfied)
            )
        {
            return fail(format!("closed with satisfaction {:?}", self.satisfaction));
        }
        for (index, task) in self.tasks.iter().enumerate() {
            let id = task.id;
            let wrong = |why: &str| fail(format!("task {id}: {why}"));
            if usize::try_from(id).ok() != Some(index + 1) {
                return wrong("ids are not 1, 2, 3, … in order");
            }
            if task.round > self.reopen_count {
                return wrong("round after the incident's");
            }
            if task.round < self.reopen_count && task.status.is_in_progress() {
                return wrong("in progress from an earlier round");
            }
            if task.round == self.reopen_count && task.resolve_due != self.resolve_due {
                return wrong("resolve_due is not the incident's");
            }
            if task.status.is_in_progress() && !open {
                return wrong("in progress while the incident is not open");
            }
            if task.status == TaskStatus::Dispatched && self.status != Status::Whistled {
                return wrong("dispatched while the incident is not whistled");
            }
            if self.level < Level::Street {
                return wrong("exists below the street");
            }
            if task.accept_due <= task.dispatched_at {
                return wrong("accept_due is not after dispatched_at");
            }
            let reported_in = matches!(task.status, TaskStatus::Accepted | TaskStatus::Resolved);
            if task.accepted_at.is_some() != reported_in || task.holder.is_some() != reported_in {
                return wrong("accepted_at and holder are set exactly when it reported in");
            }
            if task.resolved_at.is_some() != (task.status == TaskStatus::Resolved) {
                return wrong("resolved_at is set exactly when resolved");
            }
            // A returned task keeps its reason when the street reassigns (cancels) it.
            let returned = task.status == TaskStatus::Returned;
            let reassigned = task.status == TaskStatus::Cancelled;
            if returned && task.return_reason.is_none()
                || task.return_reason.is_some() && !(returned || reassigned)
            {
                return wrong("return_reason is set when returned, and only if returned");
            }
            if task.status == TaskStatus::Supervised && !task.supervised {
                return wrong("supervised status without the supervised flag");
            }
            let live_now = task.round == self.reopen_count && task.status.is_live();
            let twin = |other: &Task| {
                other.id != id && other.department == task.department && other.status.is_live()
            };
            if live_now && self.current_tasks().any(twin) {
                return wrong("its department has another live task in the round");
            }
        }
        let has_current = self.current_tasks().next().is_some();
        match self.status {
            Status::Handling if has_current => fail("handling with tasks of the round".into()),
            Status::Whistled | Status::Accepted if !has_current => {
                fail(format!("{} without tasks of the round", self.status))
            }
            Status::Whistled | Status::Accepted if self.status != self.status_from_tasks() => {
                fail(format!(
                    "{} but the tasks say {}",
                    self.status,
                    self.status_from_tasks()
                ))
            }
            Status::Resolved if self.tasks.iter().any(|t| t.status.is_in_progress()) => {
                fail("resolved with a task in progress".into())
            }
            _ => Ok(()),
        }
    }
}

/// One application of [`apply`]: the incident being changed and the events so far.
struct Step<'c> {
    next: Incident,
    events: Vec<Effect>,
    ctx: Context<'c>,
    now: DateTime<Utc>,
}

fn forbidden(actor: &Actor, what: &str) -> Rejection {
    Rejection::Forbidden(format!("{} may not {what}", actor.id()))
}

fn check_text(field: &str, text: &str, max: usize, required: bool) -> Result<(), Rejection> {
    if required && text.trim().is_empty() {
        return Err(Rejection::InvalidArgument(format!("{field} is required")));
    }
    if text.chars().count() > max {
        return Err(Rejection::InvalidArgument(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

impl<'c> Step<'c> {
    fn command(&mut self, actor: &Actor, command: Command) -> Result<(), Rejection> {
        match command {
            Command::Accept { task, note } => self.accept(actor, task, note),
            Command::Return { task, reason, note } => self.give_back(actor, task, reason, note),
            Command::Resolve {
                task: Some(task),
                note,
            } => self.resolve_task(actor, task, note),
            Command::Resolve { task: None, note } => self.resolve_incident(actor, note),
            Command::Escalate { note, departments } => self.escalate_by(actor, note, departments),
            Command::Verify { satisfaction, note } => self.verify(actor, satisfaction, note),
            Command::Supervise { task, note } => self.supervise(actor, task, note),
            Command::Reassign { task, to, note } => self.reassign(actor, task, to, note),
            Command::Comment { text } => {
                if !actor.takes_part(&self.next) {
                    return Err(forbidden(actor, "comment on this incident"));
                }
                check_text("text", &text, TEXT_MAX, true)?;
                self.event("incident.commented", None, text);
                Ok(())
            }
        }
    }

    fn accept(&mut self, actor: &Actor, id: u32, note: String) -> Result<(), Rejection> {
        let (task, holder) = self.liaison_task(actor, id, "accept")?;
        check_text("note", &note, NOTE_MAX, false)?;
        self.require_open()?;
        if !matches!(task.status, TaskStatus::Dispatched | TaskStatus::Supervised) {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; only a dispatched or supervised task is accepted",
                task.status
            )));
        }
        let task = &mut self.next.tasks[task_index(id)];
        task.status = TaskStatus::Accepted;
        task.accepted_at = Some(self.now);
        task.holder = Some(holder);
        self.next.status = self.next.status_from_tasks();
        self.event("task.accepted", Some(id), note);
        Ok(())
    }

    fn give_back(
        &mut self,
        actor: &Actor,
        id: u32,
        reason: ReturnReason,
        note: String,
    ) -> Result<(), Rejection> {
        let (task, _) = self.liaison_task(actor, id, "return")?;
        check_text("note", &note, NOTE_MAX, true)?;
        self.require_open()?;
        if !matches!(task.status, TaskStatus::Dispatched | TaskStatus::Supervised) {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; a department returns a task only before reporting in (事不完、人不撤)",
                task.status
            )));
        }
        let task = &mut self.next.tasks[task_index(id)];
        task.status = TaskStatus::Returned;
        task.return_reason = Some(reason);
        self.next.status = self.next.status_from_tasks();
        self.event("task.returned", Some(id), note);
        Ok(())
    }

    fn resolve_task(&mut self, actor: &Actor, id: u32, note: String) -> Result<(), Rejection> {
        let (task, _) = self.liaison_task(actor, id, "resolve")?;
        check_text("note", &note, TEXT_MAX, false)?;
        self.require_open()?;
        if task.status != TaskStatus::Accepted {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; only an accepted task is resolved",
                task.status
            )));
        }
        let task = &mut self.next.tasks[task_index(id)];
        task.status = TaskStatus::Resolved;
        task.resolved_at = Some(self.now);
        self.event("task.resolved", Some(id), note);
        // A returned task waits for the street's reassignment, so it holds the incident open.
        let done = self
            .next
            .current_tasks()
            .all(|t| matches!(t.status, TaskStatus::Resolved | TaskStatus::Cancelled));
        if done {
            self.resolve("各职能部门均已办结".into());
        } else {
            self.next.status = self.next.status_from_tasks();
        }
        Ok(())
    }

    fn resolve_incident(&mut self, actor: &Actor, note: String) -> Result<(), Rejection> {
        if !actor.handles(&self.next, self.next.level) && !actor.commands(&self.next) {
            return Err(forbidden(actor, "resolve this incident"));
        }
        check_text("note", &note, TEXT_MAX, false)?;
        self.require_open()?;
        let busy: Vec<String> = self
            .next
            .current_tasks()
            .filter(|t| t.status.is_in_progress())
            .map(|t| t.id.to_string())
            .collect();
        if !busy.is_empty() {
            return Err(Rejection::InvalidTransition(format!(
                "task {} in progress; each department resolves its own",
                busy.join(", ")
            )));
        }
        self.resolve(note);
        Ok(())
    }

    fn escalate_by(
        &mut self,
        actor: &Actor,
        note: String,
        departments: Vec<DepartmentCode>,
    ) -> Result<(), Rejection> {
        if !actor.handles(&self.next, self.next.level) && !actor.commands(&self.next) {
            return Err(forbidden(actor, "escalate this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        self.check_departments(&departments)?;
        self.require_open()?;
        if self.next.level == Level::City {
            return Err(Rejection::InvalidTransition(
                "the city is the top of the chain".into(),
            ));
        }
        if !departments.is_empty() && !self.whistles() {
            return Err(Rejection::InvalidArgument(format!(
                "departments are summoned only by the whistle; the incident is {} at {}",
                self.next.status,
                self.next.level.as_str()
            )));
        }
        self.escalate(note, departments)
    }

    fn verify(
        &mut self,
        actor: &Actor,
        satisfaction: Satisfaction,
        note: String,
    ) -> Result<(), Rejection> {
        if !actor.is_reporter(&self.next) {
            return Err(forbidden(actor, "follow up this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        if self.next.status != Status::Resolved {
            return Err(self.not_now("followed up"));
        }
        self.next.satisfaction = Some(satisfaction);
        self.next.follow_up_due = None;
        self.event("incident.verified", None, note);
        if satisfaction != Satisfaction::Unsatisfied {
            self.next.status = Status::Closed;
            self.event("incident.closed", None, String::new());
            return Ok(());
        }
        let category = self.category()?;
        let redo: Vec<DepartmentCode> = self
            .next
            .current_tasks()
            .filter(|t| t.status == TaskStatus::Resolved)
            .map(|t| t.department.clone())
            .collect();
        let reopen_due = self.now + self.ctx.policy.reopen_deadline(category);
        self.next.reopen_count += 1;
        self.next.overdue = false;
        self.next.resolve_due = self.next.resolve_due.max(reopen_due);
        self.next.level_due = self.window(category, self.next.level);
        self.next.status = if redo.is_empty() {
            Status::Handling
        } else {
            Status::Whistled
        };
        self.event("incident.reopened", None, String::new());
        for department in redo {
            self.dispatch(department);
        }
        Ok(())
    }

    fn supervise(
        &mut self,
        actor: &Actor,
        task: Option<u32>,
        note: String,
    ) -> Result<(), Rejection> {
        let task = task.map(|id| self.find(id).cloned()).transpose()?;
        if !actor.commands(&self.next) {
            return Err(forbidden(actor, "supervise this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        self.require_open()?;
        let Some(task) = task else {
            self.event("incident.supervised", None, note);
            return Ok(());
        };
        if task.round != self.next.reopen_count || !task.status.is_in_progress() {
            return Err(Rejection::InvalidTransition(format!(
                "task {} is {}; only a task in progress is supervised",
                task.id, task.status
            )));
        }
        self.next.tasks[task_index(task.id)].supervised = true;
        self.event("task.supervised", Some(task.id), note);
        Ok(())
    }

    fn reassign(
        &mut self,
        actor: &Actor,
        id: u32,
        to: DepartmentCode,
        note: String,
    ) -> Result<(), Rejection> {
        let task = self.find(id)?.clone();
        let department = self
            .ctx
            .org
            .department(&to)
            .ok_or_else(|| Rejection::NotFound(format!("department {to}")))?;
        if !actor.handles(&self.next, Level::Street) && !actor.commands(&self.next) {
            return Err(forbidden(actor, "reassign tasks of this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        if task.department == to {
            return Err(Rejection::InvalidArgument(format!(
                "task {id} already belongs to {to}"
            )));
        }
        self.check_serves(department)?;
        self.require_open()?;
        let reassignable = matches!(
            task.status,
            TaskStatus::Returned | TaskStatus::Dispatched | TaskStatus::Supervised
        );
        if task.round != self.next.reopen_count || !reassignable {
            let earlier = if task.round == self.next.reopen_count {
                ""
            } else {
                " in an earlier round"
            };
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}{earlier}; only a returned, dispatched or supervised task is reassigned",
                task.status
            )));
        }
        if self
            .next
            .current_tasks()
            .any(|t| t.department == to && t.status.is_live())
        {
            return Err(Rejection::InvalidArgument(format!(
                "{to} already has a task in this incident"
            )));
        }
        self.next.tasks[task_index(id)].status = TaskStatus::Cancelled;
        self.event("task.reassigned", Some(id), note);
        self.dispatch(to);
        self.next.status = self.next.status_from_tasks();
        Ok(())
    }

    fn timer(&mut self, timer: Timer) -> Result<(), Rejection> {
        let due = self
            .next
            .timers()
            .get(&timer)
            .is_some_and(|at| *at <= self.now);
        if !due {
            return Ok(());
        }
        match timer {
            Timer::LevelWindow => {
                // Timeline notes are shown on the screens as they are, so they are in Chinese.
                let note = format!("{}办理时限已到，自动上报", self.next.level.name_zh());
                self.escalate(note, Vec::new())
            }
            Timer::AcceptDeadline { task: id } => {
                let task = &mut self.next.tasks[task_index(id)];
                task.status = TaskStatus::Supervised;
                task.supervised = true;
                let note = format!("{} 超过报到时限未报到", task.department);
                self.event("task.supervised", Some(id), note.clone());
                self.event("task.reminded", Some(id), note.clone());
                if self.next.level < Level::District {
                    self.escalate(note, Vec::new())?;
                }
                Ok(())
            }
            Timer::ResolveDeadline => {
                self.next.overdue = true;
                self.event("incident.overdue", None, String::new());
                if self.next.level == Level::City {
                    return Ok(());
                }
                self.escalate("办结时限已过，自动上报".into(), Vec::new())
            }
            Timer::FollowUpDeadline => {
                self.next.status = Status::ClosedUnverified;
                self.next.follow_up_due = None;
                self.event("incident.closed_unverified", None, String::new());
                Ok(())
            }
        }
    }

    /// Whether going up from here is the whistle.
    fn whistles(&self) -> bool {
        self.next.level == Level::Street && self.next.status == Status::Handling
    }

    /// One level up, or the whistle at the street; the caller checked the level is below the city.
    fn escalate(&mut self, note: String, named: Vec<DepartmentCode>) -> Result<(), Rejection> {
        let category = self.category()?;
        if !self.whistles() {
            let up = self.next.level.up().expect("escalation below the city");
            self.next.level = up;
            self.next.level_due = self.window(category, up);
            self.event("incident.escalated", None, note);
            return Ok(());
        }
        let departments = if named.is_empty() {
            self.summon(category)?
        } else {
            named
        };
        self.next.status = Status::Whistled;
        self.next.level_due = self.window(category, Level::Street);
        self.event("incident.whistled", None, note);
        for department in departments {
            self.dispatch(department);
        }
        Ok(())
    }

    /// The category's departments for the incident's district.
    fn summon(&self, category: &Category) -> Result<Vec<DepartmentCode>, Rejection> {
        let resolve = |kind: DepartmentKind| {
            let department = self.ctx.department_for(&self.next, kind).ok_or_else(|| {
                Rejection::NotFound(format!(
                    "no {} department serves {}",
                    kind.slug(),
                    self.next.area
                ))
            })?;
            Ok(department.code.clone())
        };
        category.summon.iter().copied().map(resolve).collect()
    }

    /// Departments named in a whistle exist, serve the incident and are named once.
    fn check_departments(&self, named: &[DepartmentCode]) -> Result<(), Rejection> {
        for (index, code) in named.iter().enumerate() {
            let department = self
                .ctx
                .org
                .department(code)
                .ok_or_else(|| Rejection::NotFound(format!("department {code}")))?;
            self.check_serves(department)?;
            if named[..index].contains(code) {
                return Err(Rejection::InvalidArgument(format!("{code} is named twice")));
            }
        }
        Ok(())
    }

    fn check_serves(&self, department: &Department) -> Result<(), Rejection> {
        if department.area.contains(&self.next.area) {
            Ok(())
        } else {
            Err(Rejection::InvalidArgument(format!(
                "{} does not serve {}",
                department.code, self.next.area
            )))
        }
    }

    fn dispatch(&mut self, department: DepartmentCode) {
        let id = u32::try_from(self.next.tasks.len() + 1).expect("fewer than 2^32 tasks");
        let note = department.to_string();
        self.next.tasks.push(Task {
            id,
            department,
            status: TaskStatus::Dispatched,
            round: self.next.reopen_count,
            dispatched_at: self.now,
            accept_due: self.now + self.ctx.policy.accept_deadline(),
            resolve_due: self.next.resolve_due,
            accepted_at: None,
            resolved_at: None,
            holder: None,
            return_reason: None,
            supervised: false,
        });
        self.event("task.dispatched", Some(id), note);
    }

    fn resolve(&mut self, note: String) {
        self.next.status = Status::Resolved;
        self.next.level_due = None;
        self.next.follow_up_due = Some(self.now + self.ctx.policy.follow_up_window());
        self.event("incident.resolved", None, note);
    }

    fn window(&self, category: &Category, level: Level) -> Option<DateTime<Utc>> {
        self.ctx
            .policy
            .window(category, level)
            .map(|window| self.now + window)
    }

    fn category(&self) -> Result<&'c Category, Rejection> {
        let policy = self.ctx.policy;
        let code = &self.next.category;
        policy.category(code.as_str()).ok_or_else(|| {
            Rejection::NotFound(format!("category {code} in policy {}", policy.version()))
        })
    }

    fn find(&self, id: u32) -> Result<&Task, Rejection> {
        self.next
            .task(id)
            .ok_or_else(|| Rejection::NotFound(format!("task {id}")))
    }

    /// The task and the liaison's id, if `actor` is a liaison of the task's department.
    fn liaison_task(
        &self,
        actor: &Actor,
        id: u32,
        verb: &str,
    ) -> Result<(Task, PersonId), Rejection> {
        let task = self.find(id)?;
        match actor {
            Actor::Liaison {
                id: person,
                department,
            } if *department == task.department => Ok((task.clone(), person.clone())),
            _ => Err(forbidden(
                actor,
                &format!("{verb} task {id}, which is {}'s", task.department),
            )),
        }
    }

    fn require_open(&self) -> Result<(), Rejection> {
        if self.next.status.is_open() {
            Ok(())
        } else {
            Err(self.not_now("acted on"))
        }
    }

    fn not_now(&self, what: &str) -> Rejection {
        Rejection::InvalidTransition(format!(
            "the incident is {} and cannot be {what}",
            self.next.status
        ))
    }

    fn event(&mut self, kind: &'static str, task: Option<u32>, note: String) {
        self.events.push(Effect::Event { kind, task, note });
    }
}

fn task_index(id: u32) -> usize {
    usize::try_from(id).expect("task ids fit in usize") - 1
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use chrono::TimeDelta;
    use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};

    use super::*;
    use crate::{ordos, policy};

    struct Fixture {
        policy: Policy,
        org: OrgIndex,
        /// The first grid of 东胜区 (150602), where every test incident is reported.
        grid: AreaCode,
        /// The first grid of 康巴什区 (150603).
        other_grid: AreaCode,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let org = OrgIndex::build(ordos::dataset()).expect("the Ordos dataset is consistent");
            let first_grid = |district: &str| {
                org.units()
                    .map(|u| u.code.clone())
                    .filter(|c| c.level() == Level::Grid && c.as_str().starts_with(district))
                    .min()
                    .expect("the district has grids")
            };
            Fixture {
                policy: policy::builtin("ordos").expect("ordos is builtin"),
                grid: first_grid("150602"),
                other_grid: first_grid("150603"),
                org,
            }
        })
    }

    fn ctx() -> Context<'static> {
        let f = fixture();
        Context::new(&f.policy, &f.org)
    }

    fn t0() -> DateTime<Utc> {
        "2026-11-30T08:00:00Z".parse().unwrap()
    }

    fn mins(minutes: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(minutes)
    }

    fn hours(hours: i64) -> DateTime<Utc> {
        t0() + TimeDelta::hours(hours)
    }

    fn code<T: FromStr>(s: &str) -> T
    where
        T::Err: fmt::Debug,
    {
        s.parse().unwrap()
    }

    fn reporter() -> Actor {
        let grid = fixture().grid.clone();
        Actor::GridWorker {
            id: code(&format!("gw-{grid}")),
            grid,
        }
    }

    fn liaison(department: &str) -> Actor {
        Actor::Liaison {
            id: code(&format!("li-{department}")),
            department: code(department),
        }
    }

    fn operator(area: &str) -> Actor {
        Actor::Operator {
            id: code(&format!("op-{area}")),
            area: code(area),
        }
    }

    fn handler_of(unit: AreaCode) -> Actor {
        Actor::Handler {
            id: code(&format!("staff-{unit}")),
            unit,
        }
    }

    /// The staff of the test grid's unit at `level`.
    fn handler(level: Level) -> Actor {
        handler_of(fixture().grid.at_level(level).unwrap())
    }

    fn open_at(category: &str, now: DateTime<Utc>) -> (Incident, Vec<Effect>) {
        let f = fixture();
        let (incident, effects) = open(
            f.grid.clone(),
            f.policy.category(category).unwrap(),
            &f.policy,
            now,
        );
        incident.check_invariants().unwrap();
        (incident, effects)
    }

    fn act(
        incident: &Incident,
        actor: Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> (Incident, Vec<Effect>) {
        let (next, effects) = apply(incident, Input::Command(actor, command), &ctx(), now)
            .unwrap_or_else(|rejection| panic!("{rejection}"));
        next.check_invariants().unwrap();
        (next, effects)
    }

    fn refused(incident: &Incident, actor: Actor, command: Command) -> Rejection {
        let now = incident.reported_at + TimeDelta::minutes(1);
        apply(incident, Input::Command(actor, command), &ctx(), now).unwrap_err()
    }

    fn fire(incident: &Incident, timer: Timer, now: DateTime<Utc>) -> (Incident, Vec<Effect>) {
        let (next, effects) = apply(incident, Input::Timer(timer), &ctx(), now).unwrap();
        next.check_invariants().unwrap();
        (next, effects)
    }

    fn kinds(effects: &[Effect]) -> Vec<&'static str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Event { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }

    fn timer_effects_of(effects: &[Effect]) -> Vec<Effect> {
        effects
            .iter()
            .filter(|e| !matches!(e, Effect::Event { .. }))
            .cloned()
            .collect()
    }

    fn schedule(timer: Timer, at: DateTime<Utc>) -> Effect {
        Effect::Schedule { timer, at }
    }

    fn cancel(timer: Timer) -> Effect {
        Effect::Cancel { timer }
    }

    fn escalate() -> Command {
        Command::Escalate {
            note: String::new(),
            departments: Vec::new(),
        }
    }

    fn whistle_to(departments: &[&str]) -> Command {
        Command::Escalate {
            note: "beyond the street".into(),
            departments: departments.iter().map(|d| code(d)).collect(),
        }
    }

    fn accept(task: u32) -> Command {
        Command::Accept {
            task,
            note: String::new(),
        }
    }

    fn resolve(task: Option<u32>) -> Command {
        Command::Resolve {
            task,
            note: "done".into(),
        }
    }

    fn verify(satisfaction: Satisfaction) -> Command {
        Command::Verify {
            satisfaction,
            note: String::new(),
        }
    }

    fn reassign(task: u32, to: &str) -> Command {
        Command::Reassign {
            task,
            to: code(to),
            note: String::new(),
        }
    }

    const HEATING: &str = "150602-heating";
    const HOUSING: &str = "150602-housing_construction";

    /// heating.no_heat (community 4h, street 8h, district 12h, SLA 24h) up to the street at 1h and
    /// whistled there at 2h: task 1 heating, task 2 housing construction.
    fn whistled_no_heat() -> Incident {
        let (incident, _) = open_at("heating.no_heat", t0());
        let (street, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
        let (whistled, _) = act(&street, handler(Level::Street), escalate(), hours(2));
        let departments: Vec<&str> = whistled
            .tasks
            .iter()
            .map(|t| t.department.as_str())
            .collect();
        assert_eq!(departments, [HEATING, HOUSING]);
        whistled
    }

    #[test]
    fn self_handled_at_community() {
        let (incident, effects) = open_at("heating.no_heat", t0());
        assert_eq!(
            (incident.status, incident.level, incident.version),
            (Status::Handling, Level::Community, 1)
        );
        assert_eq!(
            effects,
            [
                schedule(Timer::LevelWindow, hours(4)),
                schedule(Timer::ResolveDeadline, hours(24)),
            ]
        );

        let (resolved, effects) = act(
            &incident,
            handler(Level::Community),
            resolve(None),
            hours(1),
        );
        assert_eq!((resolved.status, resolved.version), (Status::Resolved, 2));
        assert_eq!(
            effects,
            [
                Effect::Event {
                    kind: "incident.resolved",
                    task: None,
                    note: "done".into()
                },
                cancel(Timer::LevelWindow),
                cancel(Timer::ResolveDeadline),
                schedule(Timer::FollowUpDeadline, hours(1 + 72)),
            ]
        );

        let (late, effects) = fire(&resolved, Timer::LevelWindow, hours(5));
        assert_eq!(
            (late, effects),
            (resolved.clone(), vec![]),
            "a stale window is a no-op"
        );

        let (closed, effects) = act(
            &resolved,
            reporter(),
            verify(Satisfaction::Satisfied),
            hours(3),
        );
        assert_eq!(kinds(&effects), ["incident.verified", "incident.closed"]);
        assert_eq!(
            timer_effects_of(&effects),
            [cancel(Timer::FollowUpDeadline)]
        );
        assert_eq!((closed.status, closed.version), (Status::Closed, 3));
        assert_eq!(closed.satisfaction, Some(Satisfaction::Satisfied));
        assert!(closed.timers().is_empty());
    }

    #[test]
    fn escalated_to_street_when_the_community_window_runs_out_or_by_hand() {
        let (incident, _) = open_at("heating.no_heat", t0());

        let (early, effects) = fire(&incident, Timer::LevelWindow, hours(3));
        assert_eq!(early, incident, "an early firing changes nothing");
        assert_eq!(
            effects,
            [schedule(Timer::LevelWindow, hours(4))],
            "and is scheduled again"
        );

        let (street, effects) = fire(&incident, Timer::LevelWindow, hours(4));
        assert_eq!(
            (
                street.status,
                street.level,
                street.level_due,
                street.resolve_due
            ),
            (
                Status::Handling,
                Level::Street,
                Some(hours(4 + 8)),
                hours(24)
            )
        );
        assert_eq!(kinds(&effects), ["incident.escalated"]);
        assert_eq!(
            timer_effects_of(&effects),
            [schedule(Timer::LevelWindow, hours(12))]
        );
        assert_eq!(street.version, 2);

        let (by_hand, _) = act(&incident, handler(Level::Community), escalate(), hours(1));
        assert_eq!(
            (by_hand.level, by_hand.level_due),
            (Level::Street, Some(hours(1 + 8)))
        );
        assert!(matches!(
            refused(&incident, handler(Level::Street), escalate()),
            Rejection::Forbidden(_)
        ));
    }

    #[test]
    fn whistle_to_three_departments_two_accept_one_misses() {
        // environment.dust: first handled by the street (4d), district 3d, SLA 7d; summons three.
        let (incident, _) = open_at("environment.dust", t0());
        let (whistled, effects) = act(&incident, handler(Level::Street), escalate(), hours(1));
        let departments = [
            "150602-ecology_environment",
            "150602-housing_construction",
            "150602-transport",
        ];
        assert_eq!(
            (whistled.status, whistled.level, whistled.level_due),
            (Status::Whistled, Level::Street, Some(hours(1 + 4 * 24)))
        );
        assert_eq!(
            kinds(&effects),
            [
                "incident.whistled",
                "task.dispatched",
                "task.dispatched",
                "task.dispatched"
            ]
        );
        for (task, department) in whistled.tasks.iter().zip(departments) {
            assert_eq!(task.department.as_str(), department);
            assert_eq!(task.status, TaskStatus::Dispatched);
            assert_eq!(
                (task.accept_due, task.resolve_due),
                (mins(90), hours(7 * 24))
            );
            assert!(effects.contains(&schedule(Timer::AcceptDeadline { task: task.id }, mins(90))));
        }

        let (one, _) = act(&whistled, liaison(departments[0]), accept(1), mins(70));
        let (two, effects) = act(&one, liaison(departments[1]), accept(2), mins(80));
        assert_eq!(
            two.status,
            Status::Whistled,
            "one department has not reported in"
        );
        assert_eq!(
            timer_effects_of(&effects),
            [cancel(Timer::AcceptDeadline { task: 2 })]
        );

        let (missed, effects) = fire(&two, Timer::AcceptDeadline { task: 3 }, mins(90));
        let task = &missed.tasks[2];
        assert_eq!(
            (task.status, task.supervised),
            (TaskStatus::Supervised, true)
        );
        assert_eq!(
            kinds(&effects),
            ["task.supervised", "task.reminded", "incident.escalated"]
        );
        assert_eq!(
            (missed.status, missed.level, missed.level_due),
            (
                Status::Whistled,
                Level::District,
                Some(mins(90) + TimeDelta::days(3))
            )
        );
        assert_eq!(
            timer_effects_of(&effects),
            [schedule(Timer::LevelWindow, mins(90) + TimeDelta::days(3))],
            "the fired timer needs no cancel"
        );

        let (late, _) = act(&missed, liaison(departments[2]), accept(3), hours(2));
        assert_eq!(
            late.status,
            Status::Accepted,
            "a late report-in is still taken"
        );
        let task = &late.tasks[2];
        assert!(task.accepted_at.unwrap() > task.accept_due);
        assert_eq!(
            task.holder.as_ref().unwrap().as_str(),
            "li-150602-transport"
        );
    }

    #[test]
    fn a_return_and_a_reassignment_keep_the_resolve_deadline() {
        let whistled = whistled_no_heat();
        let give_back = |note: &str| Command::Return {
            task: 2,
            reason: ReturnReason::NotOurDuty,
            note: note.into(),
        };
        assert!(matches!(
            refused(&whistled, liaison(HOUSING), give_back(" ")),
            Rejection::InvalidArgument(_)
        ));

        let (returned, effects) = act(
            &whistled,
            liaison(HOUSING),
            give_back("供热归热力公司"),
            mins(130),
        );
        assert_eq!(kinds(&effects), ["task.returned"]);
        assert_eq!(
            timer_effects_of(&effects),
            [cancel(Timer::AcceptDeadline { task: 2 })]
        );
        assert_eq!(
            returned.tasks[1].return_reason,
            Some(ReturnReason::NotOurDuty)
        );
        assert_eq!(returned.status, Status::Whistled);

        let (accepted, _) = act(&returned, liaison(HEATING), accept(1), mins(135));
        assert_eq!(
            accepted.status,
            Status::Accepted,
            "every live task reported in"
        );
        assert!(matches!(
            refused(
                &accepted,
                liaison(HEATING),
                Command::Return {
                    task: 1,
                    reason: ReturnReason::WrongArea,
                    note: "x".into()
                }
            ),
            Rejection::InvalidTransition(_)
        ));
        assert!(matches!(
            refused(&accepted, handler(Level::Street), reassign(2, HOUSING)),
            Rejection::InvalidArgument(_)
        ));
        assert!(matches!(
            refused(
                &accepted,
                liaison(HEATING),
                reassign(2, "150602-urban_management")
            ),
            Rejection::Forbidden(_)
        ));

        let (reassigned, effects) = act(
            &accepted,
            handler(Level::Street),
            reassign(2, "150602-urban_management"),
            hours(3),
        );
        assert_eq!(kinds(&effects), ["task.reassigned", "task.dispatched"]);
        assert_eq!(reassigned.tasks[1].status, TaskStatus::Cancelled);
        let new = &reassigned.tasks[2];
        assert_eq!(
            (new.id, new.department.as_str(), new.status),
            (3, "150602-urban_management", TaskStatus::Dispatched)
        );
        assert_eq!(
            new.accept_due,
            mins(3 * 60 + 30),
            "a fresh report-in deadline"
        );
        assert_eq!(new.resolve_due, hours(24), "the SLA clock does not restart");
        assert_eq!(reassigned.resolve_due, hours(24));
        assert_eq!(reassigned.tasks[0].resolve_due, hours(24));
        assert_eq!(reassigned.status, Status::Whistled);
        assert!(matches!(
            refused(&reassigned, operator("150602"), reassign(3, HEATING)),
            Rejection::InvalidArgument(_)
        ));
    }

    #[test]
    fn a_returned_task_holds_the_incident_open_until_the_street_decides() {
        let whistled = whistled_no_heat();
        let give_back = Command::Return {
            task: 2,
            reason: ReturnReason::UnclearOwnership,
            note: "权属不清".into(),
        };
        let (returned, _) = act(&whistled, liaison(HOUSING), give_back, mins(130));
        let (accepted, _) = act(&returned, liaison(HEATING), accept(1), mins(135));
        let (done, effects) = act(&accepted, liaison(HEATING), resolve(Some(1)), hours(5));
        assert_eq!(kinds(&effects), ["task.resolved"]);
        assert_eq!(
            done.status,
            Status::Accepted,
            "the return waits for the street"
        );

        let (resolved, effects) = act(&done, handler(Level::Street), resolve(None), hours(6));
        assert_eq!(kinds(&effects), ["incident.resolved"]);
        assert_eq!(resolved.status, Status::Resolved);
        assert_eq!(
            (resolved.tasks[1].status, resolved.tasks[1].return_reason),
            (TaskStatus::Returned, Some(ReturnReason::UnclearOwnership)),
            "the return stays on record"
        );
    }

    #[test]
    fn resolved_unsatisfied_reopened_resolved_satisfied_closed() {
        let whistled = whistled_no_heat();
        let (one, _) = act(&whistled, liaison(HEATING), accept(1), mins(130));
        let (both, _) = act(&one, liaison(HOUSING), accept(2), mins(140));
        assert!(matches!(
            refused(&both, handler(Level::Street), resolve(None)),
            Rejection::InvalidTransition(_)
        ));
        let (half, effects) = act(&both, liaison(HEATING), resolve(Some(1)), hours(5));
        assert_eq!(
            (kinds(&effects), half.status),
            (vec!["task.resolved"], Status::Accepted)
        );
        let (resolved, effects) = act(&half, liaison(HOUSING), resolve(Some(2)), hours(6));
        assert_eq!(kinds(&effects), ["task.resolved", "incident.resolved"]);
        assert_eq!(
            (resolved.status, resolved.follow_up_due),
            (Status::Resolved, Some(hours(6 + 72)))
        );

        let (reopened, effects) = act(
            &resolved,
            reporter(),
            verify(Satisfaction::Unsatisfied),
            hours(10),
        );
        assert_eq!(
            kinds(&effects),
            [
                "incident.verified",
                "incident.reopened",
                "task.dispatched",
                "task.dispatched"
            ]
        );
        let new_due = hours(10) + TimeDelta::days(3);
        assert_eq!(
            (
                reopened.status,
                reopened.level,
                reopened.reopen_count,
                reopened.resolve_due
            ),
            (Status::Whistled, Level::Street, 1, new_due)
        );
        assert_eq!(reopened.level_due, Some(hours(10 + 8)));
        for effect in [
            cancel(Timer::FollowUpDeadline),
            schedule(Timer::ResolveDeadline, new_due),
            schedule(Timer::LevelWindow, hours(18)),
            schedule(Timer::AcceptDeadline { task: 3 }, mins(10 * 60 + 30)),
        ] {
            assert!(effects.contains(&effect), "{effect:?} in {effects:?}");
        }
        let redo: Vec<(u32, &str, u32)> = reopened.tasks[2..]
            .iter()
            .map(|t| (t.id, t.department.as_str(), t.round))
            .collect();
        assert_eq!(redo, [(3, HEATING, 1), (4, HOUSING, 1)]);
        assert!(matches!(
            refused(&reopened, liaison(HEATING), resolve(Some(1))),
            Rejection::InvalidTransition(_)
        ));

        let mut incident = reopened;
        for (task, department) in [(3, HEATING), (4, HOUSING)] {
            (incident, _) = act(&incident, liaison(department), accept(task), hours(11));
        }
        for (task, department) in [(3, HEATING), (4, HOUSING)] {
            (incident, _) = act(
                &incident,
                liaison(department),
                resolve(Some(task)),
                hours(20),
            );
        }
        assert_eq!(incident.status, Status::Resolved);
        let (closed, _) = act(
            &incident,
            reporter(),
            verify(Satisfaction::BasicallySatisfied),
            hours(21),
        );
        assert_eq!((closed.status, closed.reopen_count), (Status::Closed, 1));
    }

    #[test]
    fn a_reopen_without_resolved_tasks_goes_back_to_the_level_and_never_shortens_the_sla() {
        // dispute.neighbour: the grid handles it first; SLA 7 days; a reopen gives 3 days.
        let (incident, _) = open_at("dispute.neighbour", t0());
        let (resolved, _) = act(&incident, reporter(), resolve(None), hours(2));
        let (reopened, _) = act(
            &resolved,
            reporter(),
            verify(Satisfaction::Unsatisfied),
            hours(3),
        );
        assert_eq!(
            (reopened.status, reopened.level, reopened.level_due),
            (Status::Handling, Level::Grid, Some(hours(3 + 24)))
        );
        assert_eq!(
            reopened.resolve_due,
            hours(7 * 24),
            "3 days from now is earlier than the SLA"
        );
    }

    #[test]
    fn no_follow_up_closes_unverified() {
        let (incident, _) = open_at("heating.no_heat", t0());
        let (resolved, _) = act(&incident, operator("150602"), resolve(None), hours(1));
        let (early, _) = fire(&resolved, Timer::FollowUpDeadline, hours(72));
        assert_eq!(early, resolved);
        let (closed, effects) = fire(&resolved, Timer::FollowUpDeadline, hours(73));
        assert_eq!(closed.status, Status::ClosedUnverified);
        assert_eq!(kinds(&effects), ["incident.closed_unverified"]);
        assert!(timer_effects_of(&effects).is_empty());

        let terminal = [
            (operator("150600"), escalate()),
            (operator("150600"), resolve(None)),
            (reporter(), verify(Satisfaction::Satisfied)),
        ];
        for (actor, command) in terminal {
            assert!(matches!(
                refused(&closed, actor, command),
                Rejection::InvalidTransition(_)
            ));
        }
        let comment = Command::Comment {
            text: "居民已搬走".into(),
        };
        let (same, effects) = act(&closed, reporter(), comment, hours(80));
        assert_eq!(
            (kinds(&effects), same),
            (vec!["incident.commented"], closed.clone())
        );
        for timer in [
            Timer::LevelWindow,
            Timer::ResolveDeadline,
            Timer::FollowUpDeadline,
            Timer::AcceptDeadline { task: 1 },
        ] {
            assert_eq!(fire(&closed, timer, hours(500)), (closed.clone(), vec![]));
        }
    }

    #[test]
    fn another_departments_liaison_may_not_accept() {
        let whistled = whistled_no_heat();
        for stranger in [
            liaison(HOUSING),
            liaison("150602-transport"),
            liaison("150603-heating"),
            reporter(),
            operator("150602"),
        ] {
            assert!(matches!(
                refused(&whistled, stranger, accept(1)),
                Rejection::Forbidden(_)
            ));
        }
        assert!(matches!(
            refused(&whistled, liaison(HEATING), accept(9)),
            Rejection::NotFound(_)
        ));
    }

    #[test]
    fn an_operator_outside_the_area_is_forbidden() {
        let (incident, _) = open_at("heating.no_heat", t0());
        let other_community = fixture().other_grid.at_level(Level::Community).unwrap();
        let supervise = Command::Supervise {
            task: None,
            note: String::new(),
        };
        for outsider in [operator("150603"), handler_of(other_community)] {
            for command in [escalate(), resolve(None), supervise.clone()] {
                assert!(matches!(
                    refused(&incident, outsider.clone(), command),
                    Rejection::Forbidden(_)
                ));
            }
        }
        for insider in [operator("150602"), operator("150600"), Actor::System] {
            let (street, _) = act(&incident, insider.clone(), escalate(), hours(1));
            assert_eq!(street.level, Level::Street);
            let (same, effects) = act(&incident, insider, supervise.clone(), hours(1));
            assert_eq!(
                (same, kinds(&effects)),
                (incident.clone(), vec!["incident.supervised"])
            );
        }
    }

    #[test]
    fn a_missed_sla_marks_overdue_and_escalates() {
        // gas.leak goes straight to the district: window 2h, SLA 2h.
        let (incident, _) = open_at("gas.leak", t0());
        assert_eq!(
            (incident.level, incident.level_due),
            (Level::District, Some(hours(2)))
        );
        let (city, effects) = fire(&incident, Timer::ResolveDeadline, hours(2));
        assert!(city.overdue);
        assert_eq!((city.level, city.level_due), (Level::City, None));
        assert_eq!(kinds(&effects), ["incident.overdue", "incident.escalated"]);
        assert_eq!(timer_effects_of(&effects), [cancel(Timer::LevelWindow)]);
        assert_eq!(
            fire(&city, Timer::LevelWindow, hours(2)),
            (city.clone(), vec![])
        );
        assert_eq!(
            fire(&city, Timer::ResolveDeadline, hours(3)),
            (city.clone(), vec![])
        );
        assert!(matches!(
            refused(&city, operator("150600"), escalate()),
            Rejection::InvalidTransition(_)
        ));

        // At the street without tasks, the missed SLA blows the whistle.
        let (street, _) = open_at("environment.dust", t0());
        let (whistled, effects) = fire(&street, Timer::ResolveDeadline, hours(7 * 24));
        assert!(whistled.overdue);
        assert_eq!(
            (whistled.status, whistled.tasks.len()),
            (Status::Whistled, 3)
        );
        assert_eq!(
            kinds(&effects)[..2],
            ["incident.overdue", "incident.whistled"]
        );
    }

    #[test]
    fn departments_named_in_a_whistle_are_checked() {
        let (street, _) = open_at("environment.dust", t0());
        let whistle = |departments: &[&str]| {
            refused(&street, handler(Level::Street), whistle_to(departments))
        };
        assert!(matches!(
            whistle(&["150602-nothing"]),
            Rejection::NotFound(_)
        ));
        assert!(matches!(
            whistle(&["150603-heating"]),
            Rejection::InvalidArgument(_)
        ));
        assert!(matches!(
            whistle(&[HEATING, HEATING]),
            Rejection::InvalidArgument(_)
        ));

        let (whistled, _) = act(
            &street,
            handler(Level::Street),
            whistle_to(&[HEATING, "150600-gas"]),
            hours(1),
        );
        let departments: Vec<&str> = whistled
            .tasks
            .iter()
            .map(|t| t.department.as_str())
            .collect();
        assert_eq!(
            departments,
            [HEATING, "150600-gas"],
            "a city department serves every district"
        );

        let (community, _) = open_at("heating.no_heat", t0());
        assert!(matches!(
            refused(
                &community,
                handler(Level::Community),
                whistle_to(&[HEATING])
            ),
            Rejection::InvalidArgument(_)
        ));
    }

    #[test]
    fn names_and_timer_keys_round_trip() {
        for timer in [
            Timer::LevelWindow,
            Timer::AcceptDeadline { task: 1 },
            Timer::AcceptDeadline { task: 12 },
            Timer::ResolveDeadline,
            Timer::FollowUpDeadline,
        ] {
            assert_eq!(Timer::from_key(&timer.key()), Some(timer));
        }
        for bad in [
            "",
            "accept_deadline:",
            "accept_deadline:01",
            "accept_deadline:+1",
            "level",
        ] {
            assert_eq!(Timer::from_key(bad), None, "{bad:?}");
        }
        for status in Status::ALL {
            assert_eq!(status.as_str().parse(), Ok(*status));
        }
        assert_eq!(Status::ClosedUnverified.as_str(), "closed_unverified");
        assert_eq!(TaskStatus::ALL.len(), 6);
        assert_eq!(
            ReturnReason::InsufficientInformation.as_str(),
            "insufficient_information"
        );
        assert_eq!(
            "basically_satisfied".parse(),
            Ok(Satisfaction::BasicallySatisfied)
        );
        assert!("reported".parse::<Status>().is_err());
        assert_eq!(
            Rejection::InvalidTransition(String::new()).code(),
            "invalid_transition"
        );
        let f = fixture();
        let person = f.org.person(&code("op-150602")).unwrap();
        assert_eq!(Actor::from(person), operator("150602"));
    }

    // Property tests: random walks of commands by random actors and timer firings.

    const CATEGORIES: [&str; 6] = [
        "heating.no_heat",
        "dispute.neighbour",
        "environment.dust",
        "gas.leak",
        "fire.blocked_access",
        "petition.letters",
    ];

    /// Departments commands may name: summoned ones, others, the city's, another district's and
    /// one that does not exist.
    fn departments() -> &'static [DepartmentCode] {
        static DEPARTMENTS: OnceLock<Vec<DepartmentCode>> = OnceLock::new();
        DEPARTMENTS.get_or_init(|| {
            [
                HEATING,
                HOUSING,
                "150602-ecology_environment",
                "150602-transport",
                "150602-urban_management",
                "150602-justice",
                "150602-public_security",
                "150602-fire_rescue",
                "150600-heating",
                "150603-heating",
                "150602-nothing",
            ]
            .map(code)
            .to_vec()
        })
    }

    fn actors() -> &'static [Actor] {
        static ACTORS: OnceLock<Vec<Actor>> = OnceLock::new();
        ACTORS.get_or_init(|| {
            let f = fixture();
            let mut actors = vec![
                reporter(),
                Actor::GridWorker {
                    id: code(&format!("gw-{}", f.other_grid)),
                    grid: f.other_grid.clone(),
                },
                operator("150602"),
                operator("150600"),
                operator("150603"),
                handler_of(f.other_grid.at_level(Level::Street).unwrap()),
                Actor::System,
            ];
            actors.extend(
                [
                    Level::Community,
                    Level::Street,
                    Level::District,
                    Level::City,
                ]
                .map(handler),
            );
            actors.extend(departments()[..10].iter().map(|d| liaison(d.as_str())));
            actors
        })
    }

    #[derive(Debug, Clone)]
    enum Who {
        /// One of [`actors`], entitled or not.
        Anyone(usize),
        /// Whoever the rules entitle to the command in the current state.
        Entitled,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Wait(TimeDelta),
        Act(Who, Command),
        /// A firing whether or not anything is due.
        Fire(Timer),
        /// The department of the first task in progress takes its next step: report in, or resolve.
        Cooperate,
    }

    fn note() -> impl Strategy<Value = String> {
        prop_oneof![3 => Just("说明".to_owned()), 1 => Just(String::new())]
    }

    /// Mostly a task of a first whistle; sometimes none, or one of a reopen or a reassignment.
    fn task_id() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 1u32..4, 1 => 0u32..9]
    }

    fn department() -> impl Strategy<Value = DepartmentCode> {
        prop::sample::select(departments())
    }

    fn command() -> impl Strategy<Value = Command> {
        let named = prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(department(), 1..3),
        ];
        prop_oneof![
            3 => (task_id(), note()).prop_map(|(task, note)| Command::Accept { task, note }),
            2 => (task_id(), prop::sample::select(ReturnReason::ALL), note())
                .prop_map(|(task, reason, note)| Command::Return { task, reason, note }),
            3 => (prop::option::of(task_id()), note())
                .prop_map(|(task, note)| Command::Resolve { task, note }),
            2 => (note(), named).prop_map(|(note, departments)| Command::Escalate { note, departments }),
            2 => (prop::sample::select(Satisfaction::ALL), note())
                .prop_map(|(satisfaction, note)| Command::Verify { satisfaction, note }),
            2 => (prop::option::of(task_id()), note())
                .prop_map(|(task, note)| Command::Supervise { task, note }),
            2 => (task_id(), department(), note())
                .prop_map(|(task, to, note)| Command::Reassign { task, to, note }),
            1 => note().prop_map(|text| Command::Comment { text }),
        ]
    }

    fn who() -> impl Strategy<Value = Who> {
        prop_oneof![
            1 => (0..actors().len()).prop_map(Who::Anyone),
            3 => Just(Who::Entitled),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let timer = prop_oneof![
            Just(Timer::LevelWindow),
            task_id().prop_map(|task| Timer::AcceptDeadline { task }),
            Just(Timer::ResolveDeadline),
            Just(Timer::FollowUpDeadline),
        ];
        // Report-in takes 30 minutes and the shortest SLA 2 hours: mostly short waits.
        prop_oneof![
            3 => (0i64..20).prop_map(|m| Op::Wait(TimeDelta::minutes(m))),
            1 => (0i64..6).prop_map(|h| Op::Wait(TimeDelta::hours(h))),
            1 => (0i64..4).prop_map(|d| Op::Wait(TimeDelta::days(d))),
            12 => (who(), command()).prop_map(|(who, command)| Op::Act(who, command)),
            1 => timer.prop_map(Op::Fire),
            1 => Just(Op::Cooperate),
        ]
    }

    /// An incident, the durable timers a store would hold for it, the clock, and the transitions
    /// seen: `{event kind} from {prior status of its task or incident}` and `{status} -> {status}`.
    struct World {
        incident: Incident,
        store: BTreeMap<Timer, DateTime<Utc>>,
        now: DateTime<Utc>,
        seen: BTreeMap<String, usize>,
    }

    impl World {
        fn actor(&self, who: &Who, command: &Command) -> Actor {
            let index = match who {
                Who::Anyone(index) => return actors()[*index].clone(),
                Who::Entitled => command,
            };
            match index {
                Command::Accept { task, .. }
                | Command::Return { task, .. }
                | Command::Resolve {
                    task: Some(task), ..
                } => match self.incident.task(*task) {
                    Some(task) => liaison(task.department.as_str()),
                    None => liaison(HEATING),
                },
                Command::Resolve { task: None, .. } | Command::Escalate { .. } => {
                    match self.incident.level {
                        Level::Grid => reporter(),
                        level => handler(level),
                    }
                }
                Command::Reassign { .. } => handler(Level::Street),
                Command::Supervise { .. } => operator("150602"),
                Command::Verify { .. } | Command::Comment { .. } => reporter(),
            }
        }

        /// Applies `input` now, as dispatch would, and checks everything that must hold.
        fn step(&mut self, input: Input) -> Result<(), TestCaseError> {
            let before = self.incident.clone();
            let due = match &input {
                Input::Timer(timer) => {
                    // The store hands the timer over and forgets it.
                    self.store.remove(timer);
                    before.timers().get(timer).is_some_and(|at| *at <= self.now)
                }
                Input::Command(..) => false,
            };
            let (next, effects) = match apply(&before, input.clone(), &ctx(), self.now) {
                Ok(applied) => applied,
                Err(rejection) => {
                    prop_assert!(
                        matches!(input, Input::Command(..)),
                        "a timer was refused: {rejection}"
                    );
                    return Ok(());
                }
            };
            next.check_invariants().map_err(TestCaseError::fail)?;

            let changed = Incident {
                version: before.version,
                ..next.clone()
            } != before;
            prop_assert_eq!(next.version, before.version + u64::from(changed));
            if let Input::Timer(_) = input {
                prop_assert_eq!(changed, due, "a timer applies exactly when it is due");
            }
            if before.status.is_terminal() {
                prop_assert!(!changed, "a terminal incident changed");
            }
            prop_assert!(next.level >= before.level, "the level went down");
            if next.reopen_count == before.reopen_count {
                prop_assert_eq!(next.resolve_due, before.resolve_due);
            } else {
                prop_assert_eq!(next.reopen_count, before.reopen_count + 1);
                prop_assert!(next.resolve_due >= before.resolve_due);
            }
            prop_assert!(next.tasks.len() >= before.tasks.len());
            for (old, new) in before.tasks.iter().zip(&next.tasks) {
                let fixed = |t: &Task| {
                    (
                        t.department.clone(),
                        t.round,
                        t.dispatched_at,
                        t.accept_due,
                        t.resolve_due,
                    )
                };
                prop_assert_eq!(fixed(old), fixed(new), "a task's deadlines moved");
            }
            for new in &next.tasks[before.tasks.len()..] {
                prop_assert_eq!(new.resolve_due, next.resolve_due);
                prop_assert_eq!(new.dispatched_at, self.now);
            }
            let events = kinds(&effects);
            prop_assert!(events.iter().all(|kind| EVENT_KINDS.contains(kind)));
            for effect in &effects {
                if let Effect::Event { kind, task, .. } = effect {
                    let from = match task {
                        Some(id) => before.task(*id).map_or("nothing", |t| t.status.as_str()),
                        None => before.status.as_str(),
                    };
                    *self.seen.entry(format!("{kind} from {from}")).or_default() += 1;
                }
            }
            if next.status != before.status {
                *self
                    .seen
                    .entry(format!("{} -> {}", before.status, next.status))
                    .or_default() += 1;
            }
            prop_assert!(!changed || !events.is_empty(), "a change without an event");

            for effect in effects {
                match effect {
                    Effect::Schedule { timer, at } => {
                        self.store.insert(timer, at);
                    }
                    Effect::Cancel { timer } => {
                        self.store.remove(&timer);
                    }
                    Effect::Event { .. } => {}
                }
            }
            self.incident = next;
            prop_assert_eq!(&self.store, &self.incident.timers(), "the store drifted");
            Ok(())
        }

        /// Moves the clock to `until`, firing each timer of the store at its time.
        fn run_until(&mut self, until: DateTime<Utc>) -> Result<(), TestCaseError> {
            for _ in 0..1_000 {
                let next = self
                    .store
                    .iter()
                    .filter(|(_, at)| **at <= until)
                    .min_by_key(|(_, at)| **at)
                    .map(|(timer, at)| (*timer, *at));
                let Some((timer, at)) = next else {
                    self.now = self.now.max(until);
                    return Ok(());
                };
                self.now = self.now.max(at);
                self.step(Input::Timer(timer))?;
            }
            Err(TestCaseError::fail("timers keep firing"))
        }
    }

    /// Runs `ops` on a new incident of `category`, then lets every timer fire until long after.
    fn walk(category: &str, ops: Vec<Op>) -> Result<World, TestCaseError> {
        let (incident, effects) = open_at(category, t0());
        let mut world = World {
            store: incident.timers(),
            incident,
            now: t0(),
            seen: BTreeMap::new(),
        };
        prop_assert_eq!(effects.len(), world.store.len());
        for op in ops {
            match op {
                Op::Wait(delta) => world.run_until(world.now + delta)?,
                Op::Act(who, command) => {
                    let actor = world.actor(&who, &command);
                    world.step(Input::Command(actor, command))?;
                }
                Op::Fire(timer) => world.step(Input::Timer(timer))?,
                Op::Cooperate => {
                    let next_step = world.incident.current_tasks().find_map(|task| {
                        let command = match task.status {
                            TaskStatus::Dispatched | TaskStatus::Supervised => accept(task.id),
                            TaskStatus::Accepted => resolve(Some(task.id)),
                            _ => return None,
                        };
                        Some((liaison(task.department.as_str()), command))
                    });
                    if let Some((actor, command)) = next_step {
                        world.step(Input::Command(actor, command))?;
                    }
                }
            }
        }
        let late = world.now + TimeDelta::days(60);
        world.run_until(late)?;
        let incident = &world.incident;
        prop_assert!(
            incident.timers().values().all(|at| *at > late),
            "a due timer is left"
        );
        for task in &incident.tasks {
            prop_assert!(
                task.status != TaskStatus::Dispatched || task.accept_due > late,
                "task {} is still dispatched past its report-in deadline",
                task.id
            );
        }
        Ok(world)
    }

    fn walks() -> impl Strategy<Value = (&'static str, Vec<Op>)> {
        (
            prop::sample::select(&CATEGORIES[..]),
            prop::collection::vec(op(), 1..120),
        )
    }

    proptest! {
        #[test]
        fn random_walks_keep_every_invariant((category, ops) in walks()) {
            walk(category, ops)?;
        }
    }

    /// Guards the generator: the walks must reach every transition, or the property above
    /// proves little.
    #[test]
    fn random_walks_reach_every_transition() {
        let mut runner = TestRunner::deterministic();
        let mut seen = BTreeMap::<String, usize>::new();
        for _ in 0..1_000 {
            let (category, ops) = walks().new_tree(&mut runner).unwrap().current();
            for (transition, count) in walk(category, ops).unwrap().seen {
                *seen.entry(transition).or_default() += count;
            }
        }
        let missing: Vec<&str> = REACHED
            .into_iter()
            .filter(|t| !seen.contains_key(*t))
            .collect();
        assert!(
            missing.is_empty(),
            "never reached: {missing:?}; reached: {seen:#?}"
        );
    }

    /// Every transition of the machine, as [`World`] names them.
    const REACHED: [&str; 46] = [
        "handling -> whistled",
        "handling -> resolved",
        "whistled -> accepted",
        "whistled -> resolved",
        "accepted -> whistled",
        "accepted -> resolved",
        "resolved -> closed",
        "resolved -> closed_unverified",
        "resolved -> handling",
        "resolved -> whistled",
        "incident.escalated from handling",
        "incident.escalated from whistled",
        "incident.escalated from accepted",
        "incident.whistled from handling",
        "incident.overdue from handling",
        "incident.overdue from whistled",
        "incident.overdue from accepted",
        "incident.resolved from handling",
        "incident.resolved from whistled",
        "incident.resolved from accepted",
        "incident.verified from resolved",
        "incident.reopened from resolved",
        "incident.closed from resolved",
        "incident.closed_unverified from resolved",
        "incident.supervised from handling",
        "incident.supervised from whistled",
        "incident.supervised from accepted",
        "incident.commented from handling",
        "incident.commented from whistled",
        "incident.commented from resolved",
        "incident.commented from closed",
        "incident.commented from closed_unverified",
        "task.dispatched from nothing",
        "task.accepted from dispatched",
        "task.accepted from supervised",
        "task.returned from dispatched",
        "task.returned from supervised",
        "task.reassigned from dispatched",
        "task.reassigned from supervised",
        "task.reassigned from returned",
        "task.resolved from accepted",
        "task.supervised from dispatched",
        "task.supervised from supervised",
        "task.supervised from accepted",
        "task.reminded from dispatched",
        "incident.commented from accepted",
    ];
}
