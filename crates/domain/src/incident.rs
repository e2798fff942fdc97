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
//! `accept_deadline` and resolve by the incident's `resolve_due`: **the SLA clock never restarts**,
//! not on a whistle, a return or a reassignment. The whistle starts a fresh street window for the
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
//!     Handling --> Handling: escalate, window or SLA missed below the street or above it (one level up)
//!     Handling --> Whistled: escalate, window or SLA missed at the street (吹哨)
//!     Whistled --> Accepted: every live task reported in (报到), or the last one not in returned (退单)
//!     Accepted --> Whistled: reassignment (改派) dispatches a new task
//!     Whistled --> Whistled: escalate, window, SLA or report-in missed (督办, to the district)
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

/// Who issues a command. Dispatch builds it from the acting person ([`From<&Person>`]) or, for
/// the staff of a community, street or district office, from its own login records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    GridWorker { id: PersonId, grid: AreaCode },
    Liaison { id: PersonId, department: DepartmentCode },
    /// 指挥中心 operator of the city or a district.
    Operator { id: PersonId, area: AreaCode },
    /// Staff of a unit of the chain (community, street, district or city office), acting for the
    /// incident while it is at that unit's level.
    Handler { id: PersonId, unit: AreaCode },
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
        }
    }
}

/// A command on one incident (the `body` of `whistle.v1.Command`); tasks are named by [`Task::id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// 报到/签收.
    Accept { task: u32, note: String },
    /// 退单; the note is required.
    Return {
        task: u32,
        reason: ReturnReason,
        note: String,
    },
    /// 办结 of a task, or of the incident by its level when `task` is `None`.
    Resolve { task: Option<u32>, note: String },
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
    Supervise { task: Option<u32>, note: String },
    /// 改派.
    Reassign {
        task: u32,
        to: DepartmentCode,
        note: String,
    },
    Comment { text: String },
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
    pub fn department_for(&self, incident: &Incident, kind: DepartmentKind) -> Option<&'a Department> {
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
        let mut live = self.current_tasks().filter(|t| t.status.is_live()).peekable();
        let reported_in = |t: &Task| matches!(t.status, TaskStatus::Accepted | TaskStatus::Resolved);
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
            return fail(format!("follow_up_due {:?} while {}", self.follow_up_due, self.status));
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
            if task.return_reason.is_some() != (task.status == TaskStatus::Returned) {
                return wrong("return_reason is set exactly when returned");
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
            Status::Whistled | Status::Accepted if self.status != self.status_from_tasks() => fail(
                format!("{} but the tasks say {}", self.status, self.status_from_tasks()),
            ),
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
            self.resolve("every department resolved its task".into());
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
                let note = format!("the {} window ran out", self.next.level.as_str());
                self.escalate(note, Vec::new())
            }
            Timer::AcceptDeadline { task: id } => {
                let task = &mut self.next.tasks[task_index(id)];
                task.status = TaskStatus::Supervised;
                task.supervised = true;
                let note = format!("{} missed the report-in deadline", task.department);
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
                self.escalate("the resolve deadline passed".into(), Vec::new())
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
