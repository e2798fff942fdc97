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
//! **Working-day deadlines.** A working-day SLA (or reopen) term is counted on
//! [`Context::calendar`](crate::incident::Context) (see
//! [`Calendar::add_working_days`](crate::calendar::Calendar::add_working_days)) and lands on a
//! working day. Counted over a year the calendar does not hold, it is [`Incident::provisional`];
//! [`Input::Recalendar`] recounts it on the context's calendar while the incident is open and not
//! overdue (deadline, timer and current-round tasks, with `incident.rescheduled`) and changes
//! nothing otherwise.
//!
//! **Supervision (督办) and comments.** An operator supervises a task in progress or the whole
//! incident while it is being handled; anyone who may act on the incident comments, even after it
//! closed. A leader paired with the incident's street or community (领导结对联系) endorses a 督办
//! of an open incident with an instruction ([`Command::Endorse`], `incident.endorsed`). None of
//! them changes the incident's deadlines, level or tasks.
//!
//! **Deadline extension (延期申请).** Before `resolve_due`, the level handling the incident on its
//! own ([`Status::Handling`]) or a department whose task has reported in asks for a later deadline
//! with a reason ([`Command::RequestExtension`]). The level above answers
//! ([`Command::DecideExtension`]): community for the grid, street for the community, district for
//! the street and for departments, city for the district. One request waits at a time, until
//! [`Timer::ExtensionAnswer`] (the policy's answer window) denies it and, per policy, sends the
//! incident one level up; `resolve_due` passing first also denies it, and the asker finishing
//! withdraws it. An approval moves `resolve_due` of the incident and of the round's tasks to the date
//! asked (later, at most the policy's `longest` past it) and counts towards the policy's cap.
//!
//! **Dispatch dispute (派单异议).** A liaison of the task's department disputes it
//! ([`Command::Dispute`]) while it waits for the report-in (dispatched or supervised): once a
//! department reports in, the task is its own (事不完、人不撤). The dispute names a reason and the
//! department it proposes instead (which must exist, serve the area, differ from the task's and have
//! no live task in the round). A task is disputed at most once, so at most one dispute per task is
//! pending. The level that dispatched arbitrates ([`Command::DecideDispute`]), the same people who
//! reassign: the street's handler, an operator in area, `System`. **Upheld**, it is a reassignment
//! (改派) to the proposed department: the task is cancelled, a new one is dispatched with a fresh
//! report-in deadline, and `resolve_due` (the citizen-facing clock) does not move. **Rejected** (a
//! note is required), the task stays with the department and the dispute stays on record
//! (`Task::disputed`). **The report-in clock does not pause** while a dispute waits: the department
//! still reports in or is supervised, so a dispute never buys time; reporting in, returning the
//! task, its reassignment or the incident's resolution withdraws a pending dispute
//! (`task.dispute_withdrawn`).
//!
//! **Lead and assisting departments (主办/协办).** A whistle may name assisting departments
//! (`Escalate::assisting`, at most the policy's `assisting.max_per_whistle`) besides exactly one
//! lead (`departments`). Each assistant gets a [`Task`] with [`TaskRole::Assist`]: the same
//! report-in clock as any department (a missed one is supervised and escalates alike), and its own
//! part deadline in `resolve_due`: the policy's `assisting.part` after its dispatch, never after the
//! incident's deadline (an extension moves the lead's deadline, not a part's; only the lead asks for
//! one). Once in, the assistant submits its part with a note ([`Command::SubmitAssist`]; the task
//! is `Resolved`, never the incident). The dispatching level (the street's handler, an operator in
//! area, `System`) releases an assistant that still owes its part — dispatched, supervised, in, or
//! returned — with a reason ([`Command::ReleaseAssist`], [`TaskStatus::Released`]). **The lead
//! never resolves before its assistants:** its 办结 is refused, naming what is still owed, until
//! every assistant of the round submitted or was released. A returned or disputed assistant is
//! reassigned as an assistant; a reopen dispatches again the lead and the assistants that
//! submitted, in their roles (assistants only with a lead).
//!
//! **The long-term ledger (挂账).** A case no deadline can meet (planning, funding, legal
//! obstacles) is proposed ([`Command::ProposeLedger`]) by the unit handling it — the level's
//! handler, the street, or a department that reported in — with a [`LedgerReason`], a note, a
//! responsible unit (a department serving the area, or an org unit of the incident's chain) and a
//! review date at most the policy's `longest_review` ahead. The policy's approver (the district in
//! Ordos; the level above for work at or above it, the city at the top) approves or denies
//! ([`Command::DecideLedger`]). Entered, the case keeps its status but **leaves normal handling**:
//! its timers are only [`Timer::LedgerReview`] (no window, no SLA deadline, no report-in, so it is
//! never overdue, escalated or supervised), `overdue` is cleared, a pending extension or dispute is
//! withdrawn, and escalation, supervision, reassignment, extension requests and disputes are
//! refused; the departments still report in, return and resolve, and the incident may be resolved
//! from the ledger (`incident.ledger_withdrawn`). At the review date the case comes back to the
//! approving level (`incident.ledger_review_due`), which reviews it ([`Command::ReviewLedger`])
//! then or earlier: a new review date keeps it in the ledger, none returns it to handling with a
//! fresh SLA deadline of the policy's `return_resolve` (never earlier than the old one), the level's
//! window again and a fresh report-in for a department still to report in.
//!
//! **Proactive cases (主动治理).** [`adopt`] opens an incident from a hotspot topic rather than a
//! report: an operator whose area contains the topic's grid (or `System`) names the lead and
//! assisting departments, milestones and a deadline; the incident is whistled at once at the
//! topic's `solvable_at` (the street at least) with the departments' tasks dispatched as a
//! whistle dispatches them, `resolve_due` is the deadline and **no level window runs** for it
//! (before or after an escalation). Everything else is the rules above. A milestone is marked
//! done once ([`Command::CompleteMilestone`]) by a liaison of a live lead department or an
//! operator in area, while open.
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
//! | `RequestExtension` | the current level's handler (`task` `None`), a liaison of the task's department |
//! | `DecideExtension` | a handler of the approving level's unit, an operator whose area is at that level or above and contains the incident, `System` |
//! | `Dispute` | a liaison of the task's department |
//! | `DecideDispute` | as `Reassign`: the street's handler, an operator in area, `System` |
//! | `SubmitAssist` | a liaison of the assisting task's department |
//! | `ReleaseAssist` | as `Reassign`: the street's handler, an operator in area, `System` |
//! | `ProposeLedger` | the current level's handler, the street's handler, a liaison of a department whose task of the round reported in |
//! | `DecideLedger`, `ReviewLedger` | as `DecideExtension`, at the ledger's approving level |
//! | [`adopt`] | an operator whose area contains the topic's grid, `System` |
//! | `CompleteMilestone` | a liaison of a department with a live lead task, an operator in area, `System` |
//! | `Endorse` (领导督办) | a [`Actor::Leader`] paired with a street or community containing the incident |
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

mod commands;
mod rules;
mod state;
#[cfg(test)]
mod tests;
mod verbs;

pub use commands::{
    Actor, Adoption, Command, Context, Effect, Input, Rejection, Timer, EVENT_KINDS,
    MAX_ADOPTION_DAYS, MAX_MILESTONES, MILESTONE_TITLE_MAX, NOTE_MAX, RESIDENT_ACTOR, TEXT_MAX,
};
pub use rules::{adopt, apply, open};
pub use state::{
    Dispute, ExtensionRequest, Incident, Ledger, LedgerReason, Milestone, Proactive, Provisional,
    ResidentAnswer, Responsible, ReturnReason, Satisfaction, Status, Task, TaskRole, TaskStatus,
};
pub use verbs::TaskVerb;
