//! What goes into the machine and what comes out: who acts, the commands and timers, the effects
//! to carry out, the refusals, and the context it reads.

use chrono::{DateTime, Utc};

use super::{Incident, LedgerReason, ReturnReason, Satisfaction};
use crate::{
    calendar::Calendar, policy::Policy, AreaCode, Department, DepartmentCode, DepartmentKind,
    Level, OrgIndex, Person, PersonId, ReportId, Role,
};

/// Longest note on a command, in characters (the `command.proto` limit).
pub const NOTE_MAX: usize = 1_000;
/// Longest resolution note or comment, in characters.
pub const TEXT_MAX: usize = 2_000;

/// Every event kind [`apply`] and [`adopt`] emit. Intake's `incident.reported` is not among them:
/// [`open`] emits only the first timers.
///
/// [`apply`]: super::apply
/// [`adopt`]: super::adopt
/// [`open`]: super::open
pub const EVENT_KINDS: [&str; 38] = [
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
    "incident.rescheduled",
    "incident.extension_requested",
    "incident.extension_approved",
    "incident.extension_denied",
    "incident.extension_withdrawn",
    "incident.ledger_proposed",
    "incident.ledger_approved",
    "incident.ledger_denied",
    "incident.ledger_withdrawn",
    "incident.ledger_review_due",
    "incident.ledger_extended",
    "incident.ledger_returned",
    "incident.adopted",
    "incident.milestone_done",
    "incident.endorsed",
    "task.dispatched",
    "task.accepted",
    "task.returned",
    "task.reassigned",
    "task.resolved",
    "task.supervised",
    "task.reminded",
    "task.disputed",
    "task.dispute_upheld",
    "task.dispute_rejected",
    "task.dispute_withdrawn",
    "task.assist_submitted",
    "task.assist_released",
];

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
    /// 结对领导: a leader acting on the areas paired with them (streets, communities), which
    /// dispatch reads from `leader_pairings` when the leader acts; `paired` empty means none.
    Leader {
        id: PersonId,
        paired: Vec<AreaCode>,
    },
    /// Dispatch itself (automations, admin tools): an operator's authority over every incident.
    System,
    /// The resident of one report, through that report's tracking code (查询码): only their
    /// follow-up answer, `Verify`, on the report's incident (dispatch checked the code).
    Resident {
        report: ReportId,
    },
}

/// The actor of a resident's answer: the person token of its command subject
/// (`whistle.cmd.verify.~resident`) and the actor on the timeline. Not a valid person id, so no
/// person's subject permission (`whistle.cmd.*.{person}`) reaches it: only the query service's.
pub const RESIDENT_ACTOR: &str = "~resident";

impl Actor {
    /// The person id, or `system`.
    pub fn id(&self) -> &str {
        match self {
            Actor::GridWorker { id, .. }
            | Actor::Liaison { id, .. }
            | Actor::Operator { id, .. }
            | Actor::Handler { id, .. }
            | Actor::Leader { id, .. } => id.as_str(),
            Actor::System => "system",
            Actor::Resident { .. } => RESIDENT_ACTOR,
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
            // The pairings are not part of the person: dispatch adds them (`Actor::Leader`).
            Role::Leader { .. } => Actor::Leader {
                id,
                paired: Vec::new(),
            },
        }
    }
}

/// A command on one incident (the `body` of `whistle.v1.Command`); tasks are named by [`Task::id`].
///
/// [`Task::id`]: super::Task::id
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
    /// `assisting` names assisting departments (协办) of the whistle; with them, `departments`
    /// names exactly one lead (主办).
    Escalate {
        note: String,
        departments: Vec<DepartmentCode>,
        assisting: Vec<DepartmentCode>,
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
    /// 领导督办: a paired leader endorses the supervision of an open incident of their areas;
    /// the note (the leader's instruction, 批示) is required.
    Endorse {
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
    /// 延期申请: the handling level (`task` `None`) or a department that reported in asks the
    /// level above for a later deadline; the reason is required.
    RequestExtension {
        task: Option<u32>,
        until: DateTime<Utc>,
        reason: String,
    },
    /// The approving level's answer to the pending request; a denial needs a note.
    DecideExtension {
        approve: bool,
        note: String,
    },
    /// 派单异议: the task's department says it is not its responsibility and proposes `to`; the
    /// reason is required.
    Dispute {
        task: u32,
        to: DepartmentCode,
        reason: String,
    },
    /// The dispatching level's arbitration of the task's pending dispute: upheld reassigns the task
    /// to the proposed department; a rejection needs a note.
    DecideDispute {
        task: u32,
        uphold: bool,
        note: String,
    },
    /// 提交协办意见: an assisting department that reported in submits its part; the note (the
    /// part itself) is required.
    SubmitAssist {
        task: u32,
        note: String,
    },
    /// 免于协办: the dispatching level releases an assisting department that still owes its part,
    /// so the lead need not wait for it; the reason is required.
    ReleaseAssist {
        task: u32,
        note: String,
    },
    /// 申请挂账: the unit handling an open incident proposes it for the long-term ledger, naming
    /// why, who stays answerable for it and when to review it; the note is required. The
    /// responsible unit is a department code or an org unit's area code.
    ProposeLedger {
        reason: LedgerReason,
        note: String,
        responsible: String,
        review_at: DateTime<Utc>,
    },
    /// The approving level's answer to the pending proposal; a denial needs a note.
    DecideLedger {
        approve: bool,
        note: String,
    },
    /// The reviewing level's review of a ledger case: `Some` keeps it in the ledger until that
    /// date, `None` returns it to normal handling with a fresh deadline.
    ReviewLedger {
        extend_to: Option<DateTime<Utc>>,
        note: String,
    },
    /// A proactive case's milestone (1-based, in the order adopted) is done.
    CompleteMilestone {
        milestone: u32,
        note: String,
    },
}

/// What an operator adopts a hotspot topic as a proactive case (主动治理) with, and what dispatch
/// read of the topic from the month's stored proposal ([`adopt`](super::adopt)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// The topic's key and the proposal month it was listed in.
    pub topic_key: String,
    pub month: String,
    /// The topic's place and category (the group's most reported one), as proposed.
    pub grid: AreaCode,
    pub category: crate::CategoryCode,
    /// The topic's `solvable_at`: the case is supervised there, never below the street.
    pub solvable_at: Level,
    /// The topic's evidence sentence.
    pub summary: String,
    /// 主办.
    pub lead: DepartmentCode,
    /// 协办, at most the policy's `assisting.max_per_whistle`.
    pub assisting: Vec<DepartmentCode>,
    /// Title and due date of each milestone, each due by the deadline.
    pub milestones: Vec<(String, DateTime<Utc>)>,
    /// The case's resolve deadline.
    pub deadline: DateTime<Utc>,
    pub note: String,
}

/// Most milestones a proactive case carries.
pub const MAX_MILESTONES: usize = 20;
/// Longest milestone title, in characters.
pub const MILESTONE_TITLE_MAX: usize = 200;
/// Longest a proactive case may be planned for, in days.
pub const MAX_ADOPTION_DAYS: i64 = 366;

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
    /// The approving level's window to answer an extension request ends.
    ExtensionAnswer,
    /// A ledger case's review date (挂账复核).
    LedgerReview,
}

impl Timer {
    /// The stable key stored with the timer: `level_window`, `accept_deadline:{task}`,
    /// `resolve_deadline`, `follow_up_deadline`, `extension_answer`, `ledger_review`.
    pub fn key(&self) -> String {
        match self {
            Timer::LevelWindow => "level_window".to_owned(),
            Timer::AcceptDeadline { task } => format!("accept_deadline:{task}"),
            Timer::ResolveDeadline => "resolve_deadline".to_owned(),
            Timer::FollowUpDeadline => "follow_up_deadline".to_owned(),
            Timer::ExtensionAnswer => "extension_answer".to_owned(),
            Timer::LedgerReview => "ledger_review".to_owned(),
        }
    }

    /// The timer a [`Timer::key`] names.
    pub fn from_key(key: &str) -> Option<Timer> {
        match key {
            "level_window" => Some(Timer::LevelWindow),
            "resolve_deadline" => Some(Timer::ResolveDeadline),
            "follow_up_deadline" => Some(Timer::FollowUpDeadline),
            "extension_answer" => Some(Timer::ExtensionAnswer),
            "ledger_review" => Some(Timer::LedgerReview),
            _ => {
                let task = key.strip_prefix("accept_deadline:")?.parse().ok()?;
                Some(Timer::AcceptDeadline { task }).filter(|timer| timer.key() == key)
            }
        }
    }
}

/// What [`apply`] is asked to do.
///
/// [`apply`]: super::apply
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Actor, Command),
    Timer(Timer),
    /// Recount a provisional working-day deadline on the context's calendar: dispatch sends it to
    /// each open incident that has one after loading a calendar with more years.
    Recalendar,
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

/// What the machine reads besides the incident: the policy it was dispatched under, the org, and
/// the holiday calendar that working-day deadlines are counted on.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub org: &'a OrgIndex,
    pub calendar: &'a Calendar,
}

impl<'a> Context<'a> {
    pub fn new(policy: &'a Policy, org: &'a OrgIndex, calendar: &'a Calendar) -> Context<'a> {
        Context {
            policy,
            org,
            calendar,
        }
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
