//! The incident and its task records: statuses, deadlines, the timers they need and the invariants
//! every state the machine produces keeps.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Timer;
use crate::{AreaCode, CategoryCode, DepartmentCode, Level, PersonId, ReportId};

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
        /// An assisting department's task the dispatching level released (免于协办): it owes
        /// nothing more and no longer holds the lead back.
        Released = "released",
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

    /// Counts towards the incident's status: neither returned, cancelled nor released.
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            TaskStatus::Returned | TaskStatus::Cancelled | TaskStatus::Released
        )
    }
}

named_enum!(
    /// A task's part in the work (主办/协办, `TaskRole`).
    TaskRole {
        /// 主办: does the work and resolves (办结); every task of a whistle without assistants.
        Lead = "lead",
        /// 协办: reports in and submits its part; the lead resolves only after every part.
        Assist = "assist",
    }
);

impl Default for TaskRole {
    /// Tasks recorded before assisting departments existed were all leads.
    fn default() -> TaskRole {
        TaskRole::Lead
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

named_enum!(
    /// Why a case cannot be solved within any deadline and is entered in the ledger (挂账,
    /// `LedgerReason`).
    LedgerReason {
        /// 规划: waits for a plan (urban renewal, a road not yet built).
        Planning = "planning",
        /// 资金: waits for money not yet budgeted.
        Funding = "funding",
        /// 法律: waits for a court, a title, a legal procedure.
        Legal = "legal",
        /// 其他
        Other = "other",
    }
);

impl LedgerReason {
    pub fn name_zh(self) -> &'static str {
        match self {
            LedgerReason::Planning => "规划",
            LedgerReason::Funding => "资金",
            LedgerReason::Legal => "法律",
            LedgerReason::Other => "其他",
        }
    }
}

/// The unit answerable for a ledger case while it waits: a functional department, or an org unit
/// of the chain (a street office, a community) containing the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Responsible {
    Department(DepartmentCode),
    Unit(AreaCode),
}

impl fmt::Display for Responsible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Responsible::Department(code) => code.fmt(f),
            Responsible::Unit(code) => code.fmt(f),
        }
    }
}

/// A case proposed for, or entered in, the long-term ledger (挂账).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub reason: LedgerReason,
    pub note: String,
    pub responsible: Responsible,
    /// When the reviewing level looks at the case again ([`Timer::LedgerReview`]).
    pub review_at: DateTime<Utc>,
    pub proposed_by: PersonId,
    pub proposed_at: DateTime<Utc>,
    /// The level that approves the entry and reviews the case.
    pub approver: Level,
    /// When the approver entered the case; `None` while the proposal waits.
    pub entered_at: Option<DateTime<Utc>>,
    /// The review date came and the reviewing level has not yet extended or returned the case.
    #[serde(default)]
    pub review_due: bool,
}

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
    /// The department's dispute (派单异议) waiting for the dispatching level's arbitration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<Dispute>,
    /// The department disputed this task (once per task; the record stays after arbitration).
    #[serde(default)]
    pub disputed: bool,
    /// Lead (主办) or assisting (协办); an assistant's `resolve_due` is its part's deadline and
    /// `resolved_at` when it submitted the part.
    #[serde(default, skip_serializing_if = "TaskRole::is_lead")]
    pub role: TaskRole,
}

impl TaskRole {
    pub fn is_lead(&self) -> bool {
        *self == TaskRole::Lead
    }
}

impl Task {
    pub fn assists(&self) -> bool {
        self.role == TaskRole::Assist
    }

    /// An assistant that still owes its part: not submitted, not released, not reassigned away.
    /// A returned assistant still owes it until the street reassigns or releases it.
    pub fn owes_part(&self) -> bool {
        self.assists()
            && matches!(
                self.status,
                TaskStatus::Dispatched
                    | TaskStatus::Supervised
                    | TaskStatus::Accepted
                    | TaskStatus::Returned
            )
    }
}

/// A department's claim that a task is not its responsibility (派单异议), naming who it thinks
/// should have it; the level that dispatched the task arbitrates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// The department the disputing one proposes; an upheld dispute reassigns the task to it.
    pub proposed: DepartmentCode,
    pub reason: String,
    pub raised_by: PersonId,
    pub raised_at: DateTime<Utc>,
}

/// How a provisional resolve deadline was counted, to count it again on a fuller calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisional {
    /// The moment it counts from: the report, or the reopen.
    pub from: DateTime<Utc>,
    pub working_days: u32,
    /// After a reopen, the deadline it replaced: a reopen never brings the deadline forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

/// A deadline extension (延期申请) waiting for the level above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionRequest {
    /// The asking department's task, or `None` when the level handling the incident asks.
    pub task: Option<u32>,
    pub requested_by: PersonId,
    /// The level that answers: the one above the asking level; the district for a department.
    pub approver: Level,
    /// The deadline asked for; later than `resolve_due` when asked.
    pub until: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    /// Unanswered by then, it counts as denied ([`Timer::ExtensionAnswer`]).
    pub answer_due: DateTime<Utc>,
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
    /// SLA deadline; moves only later: on a reopen, an approved extension, or when a provisional
    /// working-day deadline is recounted ([`Input::Recalendar`](super::Input::Recalendar)).
    pub resolve_due: DateTime<Utc>,
    /// Set while `resolve_due` is a working-day deadline counted over a year the calendar does
    /// not hold (weekends only), so it can be recounted once the year is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<Provisional>,
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
    /// The extension request waiting for an answer, while open and not overdue.
    #[serde(default)]
    pub extension: Option<ExtensionRequest>,
    /// Extensions approved so far, over every round (capped by the policy).
    #[serde(default)]
    pub extensions: u32,
    /// The ledger (挂账) proposal waiting for approval, or the entry while the case is in the
    /// ledger; only while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Ledger>,
    /// Residents' answers through their tracking codes, one per report and round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resident_answers: Vec<ResidentAnswer>,
    /// A proactive case (主动治理) adopted from a month's hotspot topic, not opened by a report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proactive: Option<Proactive>,
    /// 1 when opened, +1 on every change.
    pub version: u64,
}

/// What makes an incident a proactive case (主动治理): the topic it was adopted from, by whom, and
/// the milestones the adopting operator set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proactive {
    /// The hotspot topic's key (`{grid}/{group}` or `{grid}/{group}@{lat},{lon}`).
    pub topic_key: String,
    /// The proposal month (`YYYY-MM`) the topic was adopted from.
    pub month: String,
    pub adopted_by: PersonId,
    /// The topic's evidence in a sentence, as proposed.
    pub summary: String,
    pub milestones: Vec<Milestone>,
}

/// A step of a proactive case with its own due date; marked done by the lead department or an
/// operator, overdue while not done after `due`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestone {
    pub title: String,
    pub due: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub done_by: Option<PersonId>,
}

impl Milestone {
    /// Not done, and its due date passed.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.done_at.is_none() && self.due < now
    }
}

/// A resident's answer on their report's page (查询码).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentAnswer {
    pub report: ReportId,
    /// `Incident::reopen_count` when they answered.
    pub round: u32,
    pub satisfaction: Satisfaction,
    /// Whether it was the round's follow-up (回访), counted in the satisfaction rate.
    pub counted: bool,
}

impl Satisfaction {
    /// As the timeline says it.
    pub fn label_zh(self) -> &'static str {
        match self {
            Satisfaction::Satisfied => "已解决，满意",
            Satisfaction::BasicallySatisfied => "已解决，基本满意",
            Satisfaction::Unsatisfied => "未解决，不满意",
        }
    }
}

impl Incident {
    /// The timers this incident needs pending, and when each fires.
    pub fn timers(&self) -> BTreeMap<Timer, DateTime<Utc>> {
        let mut timers = BTreeMap::new();
        // A ledger case waits for its review and nothing else: no window, no deadline, no
        // report-in runs out while it is in the ledger.
        if let Some(ledger) = self.ledger.as_ref().filter(|l| l.entered_at.is_some()) {
            if !ledger.review_due {
                timers.insert(Timer::LedgerReview, ledger.review_at);
            }
            return timers;
        }
        if self.status.is_open() {
            if let Some(at) = self.level_due {
                timers.insert(Timer::LevelWindow, at);
            }
            if !self.overdue {
                timers.insert(Timer::ResolveDeadline, self.resolve_due);
            }
            if let Some(request) = &self.extension {
                timers.insert(Timer::ExtensionAnswer, request.answer_due);
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

    /// In the ledger (挂账): approved, not yet returned to normal handling or resolved.
    pub fn is_ledgered(&self) -> bool {
        self.ledger.as_ref().is_some_and(|l| l.entered_at.is_some())
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
    pub(super) fn status_from_tasks(&self) -> Status {
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
    ///
    /// [`open`]: super::open
    /// [`apply`]: super::apply
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |why: String| Err(why);
        if self.version == 0 {
            return fail("version starts at 1".into());
        }
        if self.resolve_due <= self.reported_at {
            return fail("resolve_due is not after reported_at".into());
        }
        let open = self.status.is_open();
        let ledgered = self.is_ledgered();
        // A proactive case works to its adopted deadline: no level's self-handling window.
        let windowed = open && self.level != Level::City && !ledgered && self.proactive.is_none();
        if self.level_due.is_some() != windowed {
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
        if let Some(request) = &self.extension {
            if !open || self.overdue {
                return fail(format!(
                    "an extension request pending while {} (overdue {})",
                    self.status, self.overdue
                ));
            }
            if request.until <= self.resolve_due || request.answer_due <= request.requested_at {
                return fail(format!(
                    "extension request {request:?} asks for no later deadline or has no answer window"
                ));
            }
            // A level's request outlives the level moving on: the deadline is the incident's.
            let asker = match request.task {
                None => request.approver > Level::Grid,
                Some(id) => {
                    request.approver == Level::District
                        && self.task(id).is_some_and(|t| {
                            t.status == TaskStatus::Accepted && t.round == self.reopen_count
                        })
                }
            };
            if !asker {
                return fail(format!(
                    "extension request {request:?} has no asker in progress"
                ));
            }
        }
        if let Some(ledger) = &self.ledger {
            if !open {
                return fail(format!("a ledger entry while {}", self.status));
            }
            if ledger.review_at <= ledger.proposed_at {
                return fail(format!("ledger review {ledger:?} not after the proposal"));
            }
            if ledger.review_due && !ledgered {
                return fail("a ledger review due on a proposal".into());
            }
        }
        if ledgered {
            // A ledger case is never overdue, and nothing of normal handling waits on it.
            if self.overdue {
                return fail("a ledger case is overdue".into());
            }
            if self.extension.is_some() {
                return fail("an extension request pending on a ledger case".into());
            }
            if self.tasks.iter().any(|t| t.dispute.is_some()) {
                return fail("a dispute pending on a ledger case".into());
            }
        }
        if let Some(proactive) = &self.proactive {
            if proactive
                .milestones
                .iter()
                .any(|m| m.done_at.is_some() != m.done_by.is_some())
            {
                return fail("a milestone's done_at and done_by are set together".into());
            }
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
            if task.round == self.reopen_count {
                // A lead works to the incident's deadline; an assistant's part is due no later.
                let due_ok = if task.assists() {
                    task.resolve_due <= self.resolve_due
                } else {
                    task.resolve_due == self.resolve_due
                };
                if !due_ok {
                    return wrong("resolve_due is not the incident's (a part's: not after it)");
                }
                // The lead never resolves before its assistants.
                if !task.assists()
                    && task.status == TaskStatus::Resolved
                    && self.current_tasks().any(Task::owes_part)
                {
                    return wrong("a lead resolved while an assistant still owes its part");
                }
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
            // A released assistant may or may not have reported in before its release.
            let reported_in = match task.status {
                TaskStatus::Accepted | TaskStatus::Resolved => true,
                TaskStatus::Released => task.accepted_at.is_some(),
                _ => false,
            };
            if task.accepted_at.is_some() != reported_in || task.holder.is_some() != reported_in {
                return wrong("accepted_at and holder are set exactly when it reported in");
            }
            if task.resolved_at.is_some() != (task.status == TaskStatus::Resolved) {
                return wrong("resolved_at is set exactly when resolved");
            }
            // A returned task keeps its reason when the street reassigns (cancels) it.
            let returned = task.status == TaskStatus::Returned;
            // A returned assistant may be released instead of reassigned.
            let reassigned = matches!(task.status, TaskStatus::Cancelled | TaskStatus::Released);
            if returned && task.return_reason.is_none()
                || task.return_reason.is_some() && !(returned || reassigned)
            {
                return wrong("return_reason is set when returned, and only if returned");
            }
            if let Some(dispute) = &task.dispute {
                let waiting =
                    matches!(task.status, TaskStatus::Dispatched | TaskStatus::Supervised);
                if !(open && waiting && task.round == self.reopen_count && task.disputed) {
                    return wrong("a dispute pending on a task not waiting to report in");
                }
                if dispute.proposed == task.department {
                    return wrong("a dispute proposes the task's own department");
                }
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
