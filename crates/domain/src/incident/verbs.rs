//! Which commands a task takes in which status: the one statement of the task state rules that
//! dispatch checks (`rules.rs`) and the query service sends with each task, so a console offers
//! only what dispatch will accept.

use super::{TaskRole, TaskStatus};

/// A command aimed at one task (its `whistle.cmd.{verb}` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskVerb {
    /// 签收 / 报到, by the task's department.
    Accept,
    /// 退单, by the task's department, only before it reports in (事不完、人不撤).
    Return,
    /// 办结, by the task's department once it has reported in.
    Resolve,
    /// 督办, by an operator.
    Supervise,
    /// 改派, by an operator or the street.
    Reassign,
    /// 提交协办意见, by an assisting department once it has reported in.
    SubmitAssist,
    /// 免于协办, by an operator or the street, while the assistant still owes its part.
    ReleaseAssist,
}

impl TaskVerb {
    pub const ALL: [TaskVerb; 7] = [
        TaskVerb::Accept,
        TaskVerb::Return,
        TaskVerb::Resolve,
        TaskVerb::Supervise,
        TaskVerb::Reassign,
        TaskVerb::SubmitAssist,
        TaskVerb::ReleaseAssist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskVerb::Accept => "accept",
            TaskVerb::Return => "return",
            TaskVerb::Resolve => "resolve",
            TaskVerb::Supervise => "supervise",
            TaskVerb::Reassign => "reassign",
            TaskVerb::SubmitAssist => "submit_assist",
            TaskVerb::ReleaseAssist => "release_assist",
        }
    }

    /// The task's department acts with these verbs; the others are the command side's.
    pub fn is_department_verb(self) -> bool {
        matches!(
            self,
            TaskVerb::Accept | TaskVerb::Return | TaskVerb::Resolve | TaskVerb::SubmitAssist
        )
    }

    /// Whether a task in `status` with `role` takes this verb; `current_round` says whether the
    /// task belongs to the incident's latest reopen round (tasks of earlier rounds are only
    /// history). Whether the incident is still open, whether the actor may act, and whether a lead's
    /// assistants have all submitted (the incident's, not the task's) are checked apart.
    pub fn applies(self, status: TaskStatus, current_round: bool, role: TaskRole) -> bool {
        let assists = role == TaskRole::Assist;
        match self {
            TaskVerb::Accept | TaskVerb::Return => {
                matches!(status, TaskStatus::Dispatched | TaskStatus::Supervised)
            }
            TaskVerb::Resolve => !assists && status == TaskStatus::Accepted,
            TaskVerb::SubmitAssist => assists && status == TaskStatus::Accepted,
            TaskVerb::ReleaseAssist => {
                assists
                    && current_round
                    && matches!(
                        status,
                        TaskStatus::Dispatched
                            | TaskStatus::Supervised
                            | TaskStatus::Accepted
                            | TaskStatus::Returned
                    )
            }
            TaskVerb::Supervise => current_round && status.is_in_progress(),
            TaskVerb::Reassign => {
                current_round
                    && matches!(
                        status,
                        TaskStatus::Returned | TaskStatus::Dispatched | TaskStatus::Supervised
                    )
            }
        }
    }

    /// Whether the verb applies while the incident is in the long-term ledger (挂账): the
    /// departments go on with their work, but nobody supervises or reassigns a ledger case.
    pub fn applies_in_ledger(self) -> bool {
        // Releasing an assistant lets the lead resolve a case out of the ledger; moving the work
        // elsewhere (reassigning, disputing) waits for its return.
        self.is_department_verb() || self == TaskVerb::ReleaseAssist
    }

    /// The verbs a task takes now, in the order above (the console's fixed action columns).
    pub fn for_task(
        status: TaskStatus,
        current_round: bool,
        incident_open: bool,
        role: TaskRole,
        ledgered: bool,
    ) -> impl Iterator<Item = TaskVerb> {
        TaskVerb::ALL.into_iter().filter(move |verb| {
            incident_open
                && verb.applies(status, current_round, role)
                && (!ledgered || verb.applies_in_ledger())
        })
    }
}

impl std::fmt::Display for TaskVerb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
