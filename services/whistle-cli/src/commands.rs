//! The field commands (`whistle accept`, `return`, `resolve`, `escalate`, `verify`, `supervise`,
//! `reassign`, `comment`, `request-extension`, `decide-extension`): each is one NATS request on `whistle.cmd.{verb}.{person}` with a
//! `whistle.v1.Command`, answered by whistle-dispatch with a `whistle.v1.CommandReply`.
//!
//! The actor is the identity: with a token (`--token`) the command is sent on the token's
//! connection as the token's person, and `--as` may only repeat that person. Without a token,
//! `--as` names the person and the connection is the admin's (`--nats-nkey-file`), for
//! operators on the console machine.
//!
//! Building the command is pure ([`Field::build`]); sending it is [`whistle_wire::CommandClient`]'s,
//! as for `whistle simulate`. A refusal is a [`Refused`] error, which `main` turns into exit status 2.

use std::fmt;

use clap::{ArgGroup, Subcommand};
use whistle_domain::PersonId;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};
use whistle_wire::{CommandClient, Verb};

use crate::{door::Acting, Connection};

/// What every field command takes besides its own arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Who acts: a grid worker gw-{grid}, a liaison li-{department}, a community or street handler
    /// hd-{unit}, an operator op-{area}. Default the token's person; with a token it may only
    /// repeat that person.
    #[arg(long = "as", env = "WHISTLE_ACTOR", value_name = "PERSON")]
    pub actor: Option<String>,
    /// Your own command id (1–64 of A-Z a-z 0-9 . _ : -); default a fresh UUIDv7. Sending the same
    /// id again is answered with the first outcome and changes nothing.
    #[arg(long)]
    pub command_id: Option<String>,
    /// Refuse (stale) unless the incident is still at this version.
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// Print dispatch's reply as proto3 JSON.
    #[arg(long)]
    pub json: bool,
}

/// The field commands, one subcommand each.
#[derive(Debug, Subcommand)]
pub enum Field {
    /// 报到/签收: a liaison accepts their department's task.
    Accept(AcceptArgs),
    /// 退单: a liaison returns a task before reporting in, with a reason.
    Return(ReturnArgs),
    /// 办结: a liaison resolves their task, or the handling level resolves the incident (no TASK).
    Resolve(ResolveArgs),
    /// Escalate one level up; at the street this is the whistle (吹哨).
    Escalate(EscalateArgs),
    /// 回访: the reporting grid worker records the resident's verdict.
    Verify(VerifyArgs),
    /// 督办: an operator supervises a task, or the whole incident (no TASK).
    Supervise(SuperviseArgs),
    /// 改派: the street or an operator reassigns a task to another department.
    Reassign(ReassignArgs),
    /// A remark on the incident's timeline.
    Comment(CommentArgs),
    /// 延期申请: the handling level (no TASK) or a liaison asks the level above for a later deadline.
    RequestExtension(RequestExtensionArgs),
    /// Answer the pending 延期申请, as the level above the asker.
    DecideExtension(DecideExtensionArgs),
    /// 派单异议: a liaison disputes its task before reporting in, proposing another department.
    Dispute(DisputeArgs),
    /// Arbitrate a task's pending 派单异议, as the street or an operator (who may reassign).
    DecideDispute(DecideDisputeArgs),
    /// 提交协办意见: a liaison of an assisting department that reported in submits its part.
    SubmitAssist(SubmitAssistArgs),
    /// 免于协办: the street or an operator releases an assisting department that still owes its part.
    ReleaseAssist(ReleaseAssistArgs),
    /// 申请挂账: propose a case no deadline can meet for the long-term ledger, as the unit
    /// handling it (a liaison whose department reported in, the grid's worker at the grid).
    ProposeLedger(ProposeLedgerArgs),
    /// Approve or deny the pending 挂账 proposal, as the approving level (the district, or the
    /// city for district work).
    DecideLedger(DecideLedgerArgs),
    /// Review a ledger case, as the approving level: keep it to a later review date, or return
    /// it to handling with a fresh deadline.
    ReviewLedger(ReviewLedgerArgs),
    /// 主动治理: an operator adopts a topic of the month's proposal (`whistle hotspots`) as a
    /// proactive case, with its lead and assisting departments, milestones and deadline.
    Adopt(AdoptArgs),
    /// Mark a proactive case's milestone done, as its lead department's liaison or an operator.
    CompleteMilestone(CompleteMilestoneArgs),
    /// 领导督办: a leader paired with the incident's street or community endorses its
    /// supervision, with an instruction (批示).
    Endorse(EndorseArgs),
}

#[derive(Debug, clap::Args)]
pub struct EndorseArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The leader's instruction (批示), required.
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// The topic's key, as `whistle hotspots` lists it.
    pub topic: String,
    /// The proposal month it is listed in (YYYY-MM); default the current month.
    #[arg(long)]
    pub month: Option<String>,
    /// 主办: the lead department's code.
    #[arg(long)]
    pub lead: String,
    /// 协办: an assisting department's code (repeat for each).
    #[arg(long = "assist")]
    pub assisting: Vec<String>,
    /// A milestone, `TITLE@WHEN` (WHEN a date YYYY-MM-DD, the end of that day in Ordos, or an
    /// RFC 3339 time); repeat for each.
    #[arg(long = "milestone", value_parser = parse_milestone)]
    pub milestones: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// The case's deadline: a date YYYY-MM-DD (the end of that day in Ordos) or an RFC 3339 time.
    #[arg(long, value_parser = parse_deadline)]
    pub deadline: chrono::DateTime<chrono::Utc>,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct CompleteMilestoneArgs {
    /// Incident id (UUID) of the proactive case.
    pub incident: String,
    /// The milestone's number (1, 2, …, in the order adopted).
    pub milestone: u32,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// A deadline: an RFC 3339 time, or a date meaning the end of that day in Ordos.
pub fn parse_deadline(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = parse_instant(s) {
        return Ok(at);
    }
    let date = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is neither a date YYYY-MM-DD nor an RFC 3339 time"))?;
    let next = date
        .succ_opt()
        .ok_or_else(|| format!("{s:?} is past the last date"))?;
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    Ok(next
        .and_time(chrono::NaiveTime::MIN)
        .and_local_timezone(ordos)
        .single()
        .expect("a fixed offset has no gaps")
        .to_utc()
        - chrono::TimeDelta::seconds(1))
}

/// `TITLE@WHEN`, split at the last `@`.
pub fn parse_milestone(s: &str) -> Result<(String, chrono::DateTime<chrono::Utc>), String> {
    let (title, when) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?}: a milestone is TITLE@YYYY-MM-DD"))?;
    Ok((title.trim().to_owned(), parse_deadline(when)?))
}

#[derive(Debug, clap::Args)]
pub struct SubmitAssistArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The assisting task's number within the incident (1, 2, …).
    pub task: u32,
    /// The part itself (协办意见, required).
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

/// Why a case waits in the ledger.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LedgerReasonArg {
    /// 规划
    Planning,
    /// 资金
    Funding,
    /// 法律
    Legal,
    /// 其他
    Other,
}

impl LedgerReasonArg {
    fn to_proto(self) -> v1::LedgerReason {
        match self {
            LedgerReasonArg::Planning => v1::LedgerReason::Planning,
            LedgerReasonArg::Funding => v1::LedgerReason::Funding,
            LedgerReasonArg::Legal => v1::LedgerReason::Legal,
            LedgerReasonArg::Other => v1::LedgerReason::Other,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ProposeLedgerArgs {
    /// Incident id (UUID).
    pub incident: String,
    #[arg(long, value_enum)]
    pub reason: LedgerReasonArg,
    /// Who stays answerable: a department code or an org unit's area code.
    #[arg(long)]
    pub responsible: String,
    /// The review date, RFC 3339 (e.g. 2027-03-01T09:00:00+08:00).
    #[arg(long, value_parser = parse_instant)]
    pub review_at: chrono::DateTime<chrono::Utc>,
    /// Why (required).
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct ReleaseAssistArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The assisting task's number within the incident (1, 2, …).
    pub task: u32,
    /// Why the assistant is no longer needed (required).
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("decision").required(true).args(["approve", "deny"])))]
pub struct DecideLedgerArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// 同意挂账: the case leaves the deadlines until its review date.
    #[arg(long)]
    pub approve: bool,
    /// 不同意挂账 (a --note is required).
    #[arg(long)]
    pub deny: bool,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("outcome").required(true).args(["extend_to", "return_to_handling"])))]
pub struct ReviewLedgerArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// 继续挂账 until this review date, RFC 3339.
    #[arg(long, value_parser = parse_instant)]
    pub extend_to: Option<chrono::DateTime<chrono::Utc>>,
    /// 出账: back to handling with a fresh deadline.
    #[arg(long = "return")]
    pub return_to_handling: bool,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct DisputeArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// Task number within the incident (1, 2, …).
    pub task: u32,
    /// The department that should have it (e.g. 150602-urban_management).
    #[arg(long)]
    pub to: String,
    /// Why (required).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("ruling").required(true).args(["uphold", "reject"])))]
pub struct DecideDisputeArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// Task number within the incident (1, 2, …).
    pub task: u32,
    /// 异议成立: the task is reassigned to the proposed department; the deadline stays.
    #[arg(long)]
    pub uphold: bool,
    /// 异议不成立: the task stays (a --note is required).
    #[arg(long)]
    pub reject: bool,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct RequestExtensionArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The department's task; leave out when the handling level asks.
    pub task: Option<u32>,
    /// The deadline asked for, RFC 3339 (e.g. 2026-12-08T18:00:00+08:00); later than the current.
    #[arg(long, value_parser = parse_instant)]
    pub until: chrono::DateTime<chrono::Utc>,
    /// Why (required).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("answer").required(true).args(["approve", "deny"])))]
pub struct DecideExtensionArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// 同意延期: the deadline moves to the date asked for.
    #[arg(long)]
    pub approve: bool,
    /// 不予延期 (a --note is required).
    #[arg(long)]
    pub deny: bool,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Parses an RFC 3339 instant.
pub fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|e| {
            format!("{s:?} is not an RFC 3339 time such as 2026-12-08T18:00:00+08:00: {e}")
        })
}

#[derive(Debug, clap::Args)]
pub struct AcceptArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// Task number within the incident (1, 2, …).
    pub task: u32,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct ReturnArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// Task number within the incident (1, 2, …).
    pub task: u32,
    /// not-our-duty, wrong-area, unclear-ownership, overlapping-duties or insufficient-information
    /// (or 非本部门职责, 不属于本辖区, 权属不清, 职责交叉, 信息不全).
    #[arg(long, value_parser = parse_reason)]
    pub reason: v1::ReturnReason,
    /// Why, for the street (required).
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The task resolved; leave out when the handling level resolves the incident itself.
    pub task: Option<u32>,
    /// What was done.
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct EscalateArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// A department to summon when whistling (repeat for several); default the category's. With
    /// --assist, the one lead department (主办).
    #[arg(long = "department", value_name = "DEPARTMENT")]
    pub departments: Vec<String>,
    /// An assisting department (协办) of the whistle (repeat for several).
    #[arg(long = "assist", value_name = "DEPARTMENT")]
    pub assisting: Vec<String>,
    /// Why.
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(group(
    ArgGroup::new("verdict")
        .required(true)
        .args(["satisfied", "basically_satisfied", "unsatisfied", "satisfaction"])
))]
pub struct VerifyArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// 满意: closes the incident.
    #[arg(long)]
    pub satisfied: bool,
    /// 基本满意: closes the incident.
    #[arg(long)]
    pub basically_satisfied: bool,
    /// 不满意: reopens the incident (重办).
    #[arg(long)]
    pub unsatisfied: bool,
    /// The verdict by name: satisfied, basically-satisfied, unsatisfied (or 满意, 基本满意, 不满意).
    #[arg(long, value_parser = parse_satisfaction)]
    pub satisfaction: Option<v1::Satisfaction>,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The task supervised; leave out to supervise the whole incident.
    pub task: Option<u32>,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct ReassignArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// Task number within the incident (1, 2, …).
    pub task: u32,
    /// The department that takes the task over, e.g. 150602-urban_management.
    #[arg(long, value_name = "DEPARTMENT")]
    pub to: String,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct CommentArgs {
    /// Incident id (UUID).
    pub incident: String,
    /// The remark.
    pub text: String,
    #[command(flatten)]
    pub common: Common,
}

/// Parses a return reason: the proto name in kebab or snake case, or its Chinese label.
pub fn parse_reason(s: &str) -> Result<v1::ReturnReason, String> {
    use v1::ReturnReason as R;
    let normal = s.trim().to_ascii_lowercase().replace('_', "-");
    let normal = normal.strip_prefix("return-reason-").unwrap_or(&normal);
    Ok(match normal {
        "not-our-duty" | "非本部门职责" => R::NotOurDuty,
        "wrong-area" | "不属于本辖区" => R::WrongArea,
        "unclear-ownership" | "权属不清" => R::UnclearOwnership,
        "overlapping-duties" | "职责交叉" => R::OverlappingDuties,
        "insufficient-information" | "信息不全" => R::InsufficientInformation,
        _ => {
            return Err(format!(
                "{s:?} is not a return reason; use not-our-duty, wrong-area, unclear-ownership, \
                 overlapping-duties or insufficient-information"
            ))
        }
    })
}

/// Parses a follow-up verdict: the proto name in kebab or snake case, or its Chinese label.
pub fn parse_satisfaction(s: &str) -> Result<v1::Satisfaction, String> {
    use v1::Satisfaction as S;
    let normal = s.trim().to_ascii_lowercase().replace('_', "-");
    let normal = normal.strip_prefix("satisfaction-").unwrap_or(&normal);
    Ok(match normal {
        "satisfied" | "满意" => S::Satisfied,
        "basically-satisfied" | "基本满意" => S::BasicallySatisfied,
        "unsatisfied" | "不满意" => S::Unsatisfied,
        _ => {
            return Err(format!(
                "{s:?} is not a verdict; use satisfied, basically-satisfied or unsatisfied"
            ))
        }
    })
}

/// The Chinese label of a return reason.
pub fn reason_zh(reason: v1::ReturnReason) -> &'static str {
    use v1::ReturnReason as R;
    match reason {
        R::NotOurDuty => "非本部门职责",
        R::WrongArea => "不属于本辖区",
        R::UnclearOwnership => "权属不清",
        R::OverlappingDuties => "职责交叉",
        R::InsufficientInformation => "信息不全",
        R::Unspecified => "未说明",
    }
}

/// The Chinese label of a follow-up verdict.
pub fn satisfaction_zh(satisfaction: v1::Satisfaction) -> &'static str {
    match satisfaction {
        v1::Satisfaction::Satisfied => "满意",
        v1::Satisfaction::BasicallySatisfied => "基本满意",
        v1::Satisfaction::Unsatisfied => "不满意",
        v1::Satisfaction::Unspecified => "未说明",
    }
}

impl VerifyArgs {
    fn verdict(&self) -> Result<v1::Satisfaction, String> {
        match (
            self.satisfied,
            self.basically_satisfied,
            self.unsatisfied,
            self.satisfaction,
        ) {
            (true, false, false, None) => Ok(v1::Satisfaction::Satisfied),
            (false, true, false, None) => Ok(v1::Satisfaction::BasicallySatisfied),
            (false, false, true, None) => Ok(v1::Satisfaction::Unsatisfied),
            (false, false, false, Some(s)) => Ok(s),
            _ => {
                Err("give exactly one of --satisfied, --basically-satisfied, --unsatisfied".into())
            }
        }
    }
}

impl Field {
    fn parts(&self) -> Result<(&str, &Common, Body), String> {
        let note = |n: &Option<String>| n.clone().unwrap_or_default();
        Ok(match self {
            Field::Accept(a) => (
                &a.incident,
                &a.common,
                Body::Accept(v1::Accept {
                    task_id: a.task.to_string(),
                    note: note(&a.note),
                }),
            ),
            Field::Return(a) => (
                &a.incident,
                &a.common,
                Body::Return(v1::Return {
                    task_id: a.task.to_string(),
                    reason: a.reason as i32,
                    note: a.note.clone(),
                }),
            ),
            Field::Resolve(a) => (
                &a.incident,
                &a.common,
                Body::Resolve(v1::Resolve {
                    task_id: a.task.map(|t| t.to_string()).unwrap_or_default(),
                    note: a.note.clone(),
                    photo_ids: Vec::new(),
                }),
            ),
            Field::Escalate(a) => (
                &a.incident,
                &a.common,
                Body::Escalate(v1::Escalate {
                    note: a.note.clone(),
                    department_codes: a.departments.clone(),
                    assisting_department_codes: a.assisting.clone(),
                }),
            ),
            Field::Verify(a) => (
                &a.incident,
                &a.common,
                Body::Verify(v1::Verify {
                    satisfaction: a.verdict()? as i32,
                    note: note(&a.note),
                    tracking_code: String::new(),
                }),
            ),
            Field::Supervise(a) => (
                &a.incident,
                &a.common,
                Body::Supervise(v1::Supervise {
                    task_id: a.task.map(|t| t.to_string()).unwrap_or_default(),
                    note: note(&a.note),
                }),
            ),
            Field::Reassign(a) => (
                &a.incident,
                &a.common,
                Body::Reassign(v1::Reassign {
                    task_id: a.task.to_string(),
                    to_department_code: a.to.clone(),
                    note: note(&a.note),
                }),
            ),
            Field::Comment(a) => (
                &a.incident,
                &a.common,
                Body::Comment(v1::Comment {
                    text: a.text.clone(),
                }),
            ),
            Field::RequestExtension(a) => (
                &a.incident,
                &a.common,
                Body::RequestExtension(v1::RequestExtension {
                    task_id: a.task.map(|t| t.to_string()).unwrap_or_default(),
                    until: Some(whistle_wire::convert::timestamp(a.until)),
                    reason: a.reason.clone(),
                }),
            ),
            Field::DecideExtension(a) => (
                &a.incident,
                &a.common,
                Body::DecideExtension(v1::DecideExtension {
                    approve: a.approve,
                    note: note(&a.note),
                }),
            ),
            Field::ProposeLedger(a) => (
                &a.incident,
                &a.common,
                Body::ProposeLedger(v1::ProposeLedger {
                    reason: a.reason.to_proto() as i32,
                    note: a.note.clone(),
                    responsible: a.responsible.clone(),
                    review_at: Some(whistle_wire::convert::timestamp(a.review_at)),
                }),
            ),
            Field::DecideLedger(a) => (
                &a.incident,
                &a.common,
                Body::DecideLedger(v1::DecideLedger {
                    approve: a.approve,
                    note: note(&a.note),
                }),
            ),
            Field::ReviewLedger(a) => (
                &a.incident,
                &a.common,
                Body::ReviewLedger(v1::ReviewLedger {
                    extend_to: a.extend_to.map(whistle_wire::convert::timestamp),
                    note: note(&a.note),
                }),
            ),
            Field::Dispute(a) => (
                &a.incident,
                &a.common,
                Body::Dispute(v1::Dispute {
                    task_id: a.task.to_string(),
                    to_department_code: a.to.clone(),
                    reason: a.reason.clone(),
                }),
            ),
            Field::DecideDispute(a) => (
                &a.incident,
                &a.common,
                Body::DecideDispute(v1::DecideDispute {
                    task_id: a.task.to_string(),
                    uphold: a.uphold,
                    note: note(&a.note),
                }),
            ),
            Field::SubmitAssist(a) => (
                &a.incident,
                &a.common,
                Body::SubmitAssist(v1::SubmitAssist {
                    task_id: a.task.to_string(),
                    note: a.note.clone(),
                }),
            ),
            Field::ReleaseAssist(a) => (
                &a.incident,
                &a.common,
                Body::ReleaseAssist(v1::ReleaseAssist {
                    task_id: a.task.to_string(),
                    note: a.note.clone(),
                }),
            ),
            // An adoption opens the incident: it names none.
            Field::Adopt(a) => (
                "",
                &a.common,
                Body::Adopt(v1::Adopt {
                    topic_key: a.topic.trim().to_owned(),
                    month: a.month.clone().unwrap_or_default(),
                    lead_department_code: a.lead.clone(),
                    assisting_department_codes: a.assisting.clone(),
                    milestones: a
                        .milestones
                        .iter()
                        .map(|(title, due)| v1::Milestone {
                            title: title.clone(),
                            due: Some(whistle_wire::convert::timestamp(*due)),
                        })
                        .collect(),
                    deadline: Some(whistle_wire::convert::timestamp(a.deadline)),
                    note: note(&a.note),
                }),
            ),
            Field::CompleteMilestone(a) => (
                &a.incident,
                &a.common,
                Body::CompleteMilestone(v1::CompleteMilestone {
                    milestone: a.milestone,
                    note: note(&a.note),
                }),
            ),
            Field::Endorse(a) => (
                &a.incident,
                &a.common,
                Body::Endorse(v1::Endorse {
                    note: a.note.clone(),
                }),
            ),
        })
    }

    /// The person `--as` names, if any.
    pub fn requested_actor(&self) -> Option<&str> {
        self.parts().ok().and_then(|(_, c, _)| c.actor.as_deref())
    }

    /// The verb (subject token) and the command sent as `actor`; `fresh_id` makes the command id
    /// when none is given.
    pub fn build(
        &self,
        actor: &str,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<(&'static str, v1::Command), String> {
        let (incident, common, body) = self.parts()?;
        let command = command(
            incident,
            actor,
            common.command_id.clone().unwrap_or_else(fresh_id),
            common.expected_version.unwrap_or(0),
            body,
        )?;
        let verb = Verb::of(
            command
                .body
                .as_ref()
                .expect("every field command has a body"),
        );
        Ok((verb.as_str(), command))
    }

    fn json(&self) -> bool {
        self.parts().map(|(_, c, _)| c.json).unwrap_or(false)
    }
}

/// A command with its checks done here rather than by a round trip: the incident id is a UUID,
/// the actor a person id, the command id well formed.
pub fn command(
    incident: &str,
    actor: &str,
    command_id: String,
    expected_version: u64,
    body: Body,
) -> Result<v1::Command, String> {
    // An adoption opens its incident, so it names none.
    let incident_id = if matches!(body, Body::Adopt(_)) {
        String::new()
    } else {
        incident
            .trim()
            .parse::<uuid::Uuid>()
            .map_err(|_| {
                format!(
                    "{incident:?} is not an incident id (a UUID); `whistle incident` finds one by its last digits"
                )
            })?
            .to_string()
    };
    actor
        .parse::<PersonId>()
        .map_err(|e| format!("--as {actor:?}: {e}"))?;
    command_id
        .parse::<whistle_domain::ReportId>()
        .map_err(|e| format!("--command-id {command_id:?}: {e}"))?;
    Ok(v1::Command {
        command_id,
        actor_id: actor.to_owned(),
        incident_id,
        expected_version,
        body: Some(body),
    })
}

/// Dispatch refused the command; nothing changed.
#[derive(Debug)]
pub struct Refused {
    /// snake_case `CommandErrorCode`: not_found, forbidden, invalid_transition, stale,
    /// invalid_argument, unavailable, rate_limited.
    pub code: String,
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Dispatch's messages often repeat the code ("forbidden: …"); say it once.
        let repeated = format!("{}: ", self.code.replace('_', " "));
        let message = self
            .message
            .strip_prefix(&repeated)
            .unwrap_or(&self.message);
        write!(f, "refused ({}): {message}", self.code)
    }
}

impl std::error::Error for Refused {}

/// The snake_case name of a proto enum value, without its type prefix.
fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

pub fn status_name(status: i32) -> String {
    v1::IncidentStatus::try_from(status)
        .map(|s| enum_name(s.as_str_name(), "INCIDENT_STATUS_"))
        .unwrap_or_else(|_| status.to_string())
}

pub fn task_status_name(status: i32) -> String {
    v1::TaskStatus::try_from(status)
        .map(|s| enum_name(s.as_str_name(), "TASK_STATUS_"))
        .unwrap_or_else(|_| status.to_string())
}

pub fn level_name(level: i32) -> String {
    v1::Level::try_from(level)
        .map(|l| enum_name(l.as_str_name(), "LEVEL_"))
        .unwrap_or_else(|_| level.to_string())
}

pub fn error_code_name(code: i32) -> String {
    v1::CommandErrorCode::try_from(code)
        .map(|c| enum_name(c.as_str_name(), "COMMAND_ERROR_CODE_"))
        .unwrap_or_else(|_| code.to_string())
}

/// The Chinese word for what a command did, e.g. 已报到; an escalation that whistled is 已吹哨.
pub fn done_zh(command: &v1::Command, ok: &v1::CommandOk) -> String {
    match &command.body {
        Some(Body::Accept(_)) => "已报到".into(),
        Some(Body::Return(_)) => "已退单".into(),
        Some(Body::Resolve(_)) => "已办结".into(),
        Some(Body::Escalate(_)) if ok.status == v1::IncidentStatus::Whistled as i32 => {
            "已吹哨".into()
        }
        Some(Body::Escalate(_)) => "已上报上级".into(),
        Some(Body::Verify(v)) => format!(
            "已回访({})",
            v1::Satisfaction::try_from(v.satisfaction)
                .map(satisfaction_zh)
                .unwrap_or("?")
        ),
        Some(Body::Supervise(_)) => "已督办".into(),
        Some(Body::Reassign(_)) => "已改派".into(),
        Some(Body::Comment(_)) => "已备注".into(),
        Some(Body::RequestExtension(_)) => "已申请延期".into(),
        Some(Body::DecideExtension(d)) if d.approve => "已同意延期".into(),
        Some(Body::DecideExtension(_)) => "已不予延期".into(),
        Some(Body::Dispute(_)) => "已提出派单异议".into(),
        Some(Body::DecideDispute(d)) if d.uphold => "异议成立，已改派".into(),
        Some(Body::DecideDispute(_)) => "异议不成立，维持派单".into(),
        Some(Body::SubmitAssist(_)) => "已提交协办意见".into(),
        Some(Body::ReleaseAssist(_)) => "已免于协办".into(),
        Some(Body::ProposeLedger(_)) => "已申请挂账".into(),
        Some(Body::DecideLedger(d)) if d.approve => "已同意挂账".into(),
        Some(Body::DecideLedger(_)) => "已不同意挂账".into(),
        Some(Body::ReviewLedger(r)) if r.extend_to.is_some() => "已继续挂账".into(),
        Some(Body::ReviewLedger(_)) => "已出账，恢复办理".into(),
        Some(Body::OnboardPerson(_)) => "已入职".into(),
        Some(Body::ChangePerson(_)) => "已变更".into(),
        Some(Body::OffboardPerson(_)) => "已离岗".into(),
        Some(Body::Adopt(_)) => "已立项（主动治理）".into(),
        Some(Body::CompleteMilestone(m)) => format!("里程碑 {} 已完成", m.milestone),
        Some(Body::OfferToVolunteers(_)) => "已派单给志愿者".into(),
        Some(Body::ClaimOffer(_)) => "已接单".into(),
        Some(Body::ReleaseOffer(_)) => "已退回".into(),
        Some(Body::CompleteOffer(_)) => "已完成".into(),
        Some(Body::ConfirmOffer(_)) => "已确认".into(),
        Some(Body::RateOffer(_)) => "已评价".into(),
        Some(Body::WithdrawOffer(_)) => "已撤回".into(),
        Some(Body::Endorse(_)) => "已领导督办".into(),
        None => "完成".into(),
    }
}

/// One line for an applied command, e.g.
/// `已报到: 任务 2 accepted, incident … now accepted at street (version 5)`.
pub fn describe_ok(command: &v1::Command, ok: &v1::CommandOk) -> String {
    let task = if ok.task_id.is_empty() {
        String::new()
    } else {
        format!("任务 {} {}, ", ok.task_id, task_status_name(ok.task_status))
    };
    format!(
        "{}: {task}incident {} now {} at {} (version {})",
        done_zh(command, ok),
        ok.incident_id,
        status_name(ok.status),
        level_name(ok.level),
        ok.version
    )
}

/// The applied outcome, or the refusal as an error.
pub fn outcome(reply: v1::CommandReply) -> Result<v1::CommandOk, Refused> {
    match reply.outcome {
        Some(Outcome::Ok(ok)) => Ok(ok),
        Some(Outcome::Error(e)) => Err(Refused {
            code: error_code_name(e.code),
            message: e.message,
        }),
        None => Err(Refused {
            code: "unspecified".into(),
            message: "dispatch replied with neither an outcome nor an error".into(),
        }),
    }
}

pub async fn run(conn: &Connection, field: Field) -> anyhow::Result<()> {
    let acting = Acting::resolve(conn, field.requested_actor()).await?;
    let (_, command) = field
        .build(acting.person_id(), || uuid::Uuid::now_v7().to_string())
        .map_err(anyhow::Error::msg)?;
    let client = CommandClient::new(acting.connect(conn).await?);
    let reply = client.send(&command).await.map_err(|e| {
        anyhow::anyhow!(
            "{} (command id {})",
            whistle_wire::chain(&e),
            command.command_id
        )
    })?;
    if field.json() {
        println!("{}", whistle_proto::to_json(&reply)?);
    }
    match outcome(reply) {
        Ok(ok) => {
            if !field.json() {
                println!("{}", describe_ok(&command, &ok));
            }
            Ok(())
        }
        Err(refused) => {
            eprintln!("command id {}", command.command_id);
            Err(refused.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const INCIDENT: &str = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        field: Field,
    }

    fn build(args: &[&str]) -> Result<(&'static str, v1::Command), String> {
        let cli = Cli::try_parse_from(std::iter::once("whistle").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let actor = cli.field.requested_actor().ok_or("--as is missing")?;
        cli.field.build(actor, || "fresh-id".to_owned())
    }

    #[test]
    fn accept_names_the_task_and_a_fresh_id() {
        let (verb, command) = build(&[
            "accept",
            INCIDENT,
            "2",
            "--as",
            "li-150602-heating",
            "--note",
            "on our way",
        ])
        .unwrap();
        assert_eq!(verb, "accept");
        assert_eq!(command.command_id, "fresh-id");
        assert_eq!(command.actor_id, "li-150602-heating");
        assert_eq!(command.incident_id, INCIDENT);
        assert_eq!(command.expected_version, 0);
        assert_eq!(
            command.body,
            Some(Body::Accept(v1::Accept {
                task_id: "2".into(),
                note: "on our way".into()
            }))
        );
    }

    #[test]
    fn given_command_id_and_version_are_kept() {
        let (_, command) = build(&[
            "comment",
            INCIDENT,
            "residents called again",
            "--as",
            "op-150602",
            "--command-id",
            "retry-1",
            "--expected-version",
            "7",
        ])
        .unwrap();
        assert_eq!(command.command_id, "retry-1");
        assert_eq!(command.expected_version, 7);
        assert_eq!(
            command.body,
            Some(Body::Comment(v1::Comment {
                text: "residents called again".into()
            }))
        );
    }

    #[test]
    fn return_needs_a_reason_and_a_note() {
        let (verb, command) = build(&[
            "return",
            INCIDENT,
            "1",
            "--reason",
            "wrong-area",
            "--note",
            "the pipe belongs to the next banner",
            "--as",
            "li-150602-water",
        ])
        .unwrap();
        assert_eq!(verb, "return");
        assert_eq!(
            command.body,
            Some(Body::Return(v1::Return {
                task_id: "1".into(),
                reason: v1::ReturnReason::WrongArea as i32,
                note: "the pipe belongs to the next banner".into()
            }))
        );
        assert!(build(&[
            "return",
            INCIDENT,
            "1",
            "--note",
            "x",
            "--as",
            "li-150602-water"
        ])
        .is_err());
        assert!(build(&[
            "return",
            INCIDENT,
            "1",
            "--reason",
            "lazy",
            "--note",
            "x",
            "--as",
            "li-150602-water"
        ])
        .is_err());
    }

    #[test]
    fn resolve_and_supervise_take_an_optional_task() {
        let (_, level) = build(&[
            "resolve",
            INCIDENT,
            "--note",
            "fixed",
            "--as",
            "hd-150602001",
        ])
        .unwrap();
        assert_eq!(
            level.body,
            Some(Body::Resolve(v1::Resolve {
                task_id: String::new(),
                note: "fixed".into(),
                photo_ids: Vec::new(),
            }))
        );
        let (_, task) = build(&[
            "resolve",
            INCIDENT,
            "3",
            "--note",
            "fixed",
            "--as",
            "li-150602-heating",
        ])
        .unwrap();
        assert_eq!(
            task.body,
            Some(Body::Resolve(v1::Resolve {
                task_id: "3".into(),
                note: "fixed".into(),
                photo_ids: Vec::new(),
            }))
        );
        let (verb, whole) = build(&["supervise", INCIDENT, "--as", "op-150602"]).unwrap();
        assert_eq!(verb, "supervise");
        assert_eq!(whole.body, Some(Body::Supervise(v1::Supervise::default())));
    }

    #[test]
    fn escalate_names_departments_and_reassign_the_new_one() {
        let (_, command) = build(&[
            "escalate",
            INCIDENT,
            "--department",
            "150602-heating",
            "--department",
            "150602-housing_construction",
            "--note",
            "no heat in three buildings",
            "--as",
            "hd-150602001",
        ])
        .unwrap();
        assert_eq!(
            command.body,
            Some(Body::Escalate(v1::Escalate {
                assisting_department_codes: Vec::new(),
                note: "no heat in three buildings".into(),
                department_codes: vec![
                    "150602-heating".into(),
                    "150602-housing_construction".into()
                ],
            }))
        );
        let (verb, command) = build(&[
            "reassign",
            INCIDENT,
            "2",
            "--to",
            "150602-urban_management",
            "--as",
            "hd-150602001",
        ])
        .unwrap();
        assert_eq!(verb, "reassign");
        assert_eq!(
            command.body,
            Some(Body::Reassign(v1::Reassign {
                task_id: "2".into(),
                to_department_code: "150602-urban_management".into(),
                note: String::new(),
            }))
        );
    }

    #[test]
    fn verify_takes_exactly_one_verdict() {
        let verdict = |flags: &[&str]| {
            let mut args = vec!["verify", INCIDENT, "--as", "gw-150602001001001"];
            args.extend_from_slice(flags);
            build(&args).map(|(_, c)| match c.body {
                Some(Body::Verify(v)) => v.satisfaction,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(
            verdict(&["--satisfied"]),
            Ok(v1::Satisfaction::Satisfied as i32)
        );
        assert_eq!(
            verdict(&["--basically-satisfied"]),
            Ok(v1::Satisfaction::BasicallySatisfied as i32)
        );
        assert_eq!(
            verdict(&["--unsatisfied"]),
            Ok(v1::Satisfaction::Unsatisfied as i32)
        );
        assert_eq!(
            verdict(&["--satisfaction", "基本满意"]),
            Ok(v1::Satisfaction::BasicallySatisfied as i32)
        );
        assert!(verdict(&[]).is_err());
        assert!(verdict(&["--satisfied", "--unsatisfied"]).is_err());
    }

    #[test]
    fn an_extension_is_asked_with_a_time_and_answered_yes_or_no() {
        let (verb, command) = build(&[
            "request-extension",
            INCIDENT,
            "2",
            "--until",
            "2026-12-08T18:00:00+08:00",
            "--reason",
            "材料未到",
            "--as",
            "li-150602-heating",
        ])
        .unwrap();
        assert_eq!(verb, "request_extension");
        let until = "2026-12-08T10:00:00Z".parse().unwrap();
        assert_eq!(
            command.body,
            Some(Body::RequestExtension(v1::RequestExtension {
                task_id: "2".into(),
                until: Some(whistle_wire::convert::timestamp(until)),
                reason: "材料未到".into(),
            }))
        );
        let bad_time = build(&[
            "request-extension",
            INCIDENT,
            "--until",
            "tomorrow",
            "--reason",
            "x",
            "--as",
            "hd-150602001001",
        ]);
        assert!(bad_time.unwrap_err().contains("RFC 3339"));

        let answer = |flags: &[&str]| {
            let mut args = vec!["decide-extension", INCIDENT, "--as", "op-150602"];
            args.extend_from_slice(flags);
            build(&args).map(|(verb, c)| (verb, c.body))
        };
        assert_eq!(
            answer(&["--deny", "--note", "按期办结"]),
            Ok((
                "decide_extension",
                Some(Body::DecideExtension(v1::DecideExtension {
                    approve: false,
                    note: "按期办结".into()
                }))
            ))
        );
        assert!(matches!(
            answer(&["--approve"]),
            Ok((
                _,
                Some(Body::DecideExtension(v1::DecideExtension {
                    approve: true,
                    ..
                }))
            ))
        ));
        assert!(answer(&[]).is_err());
        assert!(answer(&["--approve", "--deny"]).is_err());
    }

    #[test]
    fn the_ledger_commands_parse() {
        let review_at: chrono::DateTime<chrono::Utc> = "2027-03-01T01:00:00Z".parse().unwrap();
        assert_eq!(
            build(&[
                "propose-ledger",
                INCIDENT,
                "--reason",
                "funding",
                "--responsible",
                "150602-housing_construction",
                "--review-at",
                "2027-03-01T09:00:00+08:00",
                "--note",
                "改造资金未列入预算",
                "--as",
                "li-150602-heating",
            ])
            .map(|(verb, c)| (verb, c.body)),
            Ok((
                "propose_ledger",
                Some(Body::ProposeLedger(v1::ProposeLedger {
                    reason: v1::LedgerReason::Funding as i32,
                    note: "改造资金未列入预算".into(),
                    responsible: "150602-housing_construction".into(),
                    review_at: Some(whistle_wire::convert::timestamp(review_at)),
                }))
            ))
        );
        assert!(build(&[
            "propose-ledger",
            INCIDENT,
            "--reason",
            "weather",
            "--responsible",
            "150602001",
            "--review-at",
            "2027-03-01T09:00:00+08:00",
            "--note",
            "x",
            "--as",
            "li-x",
        ])
        .is_err());
        let decide = |flags: &[&str]| {
            let mut args = vec!["decide-ledger", INCIDENT, "--as", "op-150602"];
            args.extend_from_slice(flags);
            build(&args).map(|(verb, c)| (verb, c.body))
        };
        assert!(matches!(
            decide(&["--approve"]),
            Ok((
                "decide_ledger",
                Some(Body::DecideLedger(v1::DecideLedger { approve: true, .. }))
            ))
        ));
        assert!(decide(&[]).is_err());
        assert!(decide(&["--approve", "--deny"]).is_err());
        let review = |flags: &[&str]| {
            let mut args = vec!["review-ledger", INCIDENT, "--as", "op-150602"];
            args.extend_from_slice(flags);
            build(&args).map(|(verb, c)| (verb, c.body))
        };
        assert_eq!(
            review(&["--return", "--note", "规划已批复"]),
            Ok((
                "review_ledger",
                Some(Body::ReviewLedger(v1::ReviewLedger {
                    extend_to: None,
                    note: "规划已批复".into(),
                }))
            ))
        );
        assert!(matches!(
            review(&["--extend-to", "2027-03-01T09:00:00+08:00"]),
            Ok((
                _,
                Some(Body::ReviewLedger(v1::ReviewLedger {
                    extend_to: Some(_),
                    ..
                }))
            ))
        ));
        assert!(review(&[]).is_err());
        assert!(review(&["--return", "--extend-to", "2027-03-01T09:00:00+08:00"]).is_err());
    }

    #[test]
    fn dispute_and_decide_dispute_parse() {
        assert_eq!(
            build(&[
                "dispute",
                INCIDENT,
                "2",
                "--to",
                "150602-urban_management",
                "--reason",
                "非本部门职责",
                "--as",
                "li-150602-housing_construction",
            ])
            .map(|(verb, c)| (verb, c.body)),
            Ok((
                "dispute",
                Some(Body::Dispute(v1::Dispute {
                    task_id: "2".into(),
                    to_department_code: "150602-urban_management".into(),
                    reason: "非本部门职责".into(),
                }))
            ))
        );
        assert!(build(&["dispute", INCIDENT, "2", "--reason", "x", "--as", "li-x"]).is_err());
        let rule = |flags: &[&str]| {
            let mut args = vec!["decide-dispute", INCIDENT, "2", "--as", "op-150602"];
            args.extend_from_slice(flags);
            build(&args).map(|(verb, c)| (verb, c.body))
        };
        assert_eq!(
            rule(&["--reject", "--note", "职责明确"]),
            Ok((
                "decide_dispute",
                Some(Body::DecideDispute(v1::DecideDispute {
                    task_id: "2".into(),
                    uphold: false,
                    note: "职责明确".into()
                }))
            ))
        );
        assert!(matches!(
            rule(&["--uphold"]),
            Ok((
                _,
                Some(Body::DecideDispute(v1::DecideDispute { uphold: true, .. }))
            ))
        ));
        assert!(rule(&[]).is_err());
        assert!(rule(&["--uphold", "--reject"]).is_err());
    }

    #[test]
    fn assisting_departments_parts_and_releases_parse() {
        let whistle = build(&[
            "escalate",
            INCIDENT,
            "--department",
            "150602-heating",
            "--assist",
            "150602-housing_construction",
            "--assist",
            "150602-urban_management",
            "--note",
            "吹哨",
            "--as",
            "hd-150602001",
        ])
        .map(|(verb, c)| (verb, c.body));
        assert_eq!(
            whistle,
            Ok((
                "escalate",
                Some(Body::Escalate(v1::Escalate {
                    note: "吹哨".into(),
                    department_codes: vec!["150602-heating".into()],
                    assisting_department_codes: vec![
                        "150602-housing_construction".into(),
                        "150602-urban_management".into()
                    ],
                }))
            ))
        );
        assert_eq!(
            build(&[
                "submit-assist",
                INCIDENT,
                "2",
                "--note",
                "已核实管网",
                "--as",
                "li-150602-housing_construction",
            ])
            .map(|(verb, c)| (verb, c.body)),
            Ok((
                "submit_assist",
                Some(Body::SubmitAssist(v1::SubmitAssist {
                    task_id: "2".into(),
                    note: "已核实管网".into(),
                }))
            ))
        );
        assert!(build(&["submit-assist", INCIDENT, "2", "--as", "li-x"]).is_err());
        assert_eq!(
            build(&[
                "release-assist",
                INCIDENT,
                "3",
                "--note",
                "无需参与",
                "--as",
                "hd-150602001",
            ])
            .map(|(verb, c)| (verb, c.body)),
            Ok((
                "release_assist",
                Some(Body::ReleaseAssist(v1::ReleaseAssist {
                    task_id: "3".into(),
                    note: "无需参与".into(),
                }))
            ))
        );
        assert!(build(&["release-assist", INCIDENT, "3", "--as", "hd-150602001"]).is_err());
    }

    #[test]
    fn an_adoption_names_its_topic_departments_milestones_and_deadline() {
        let (verb, command) = build(&[
            "adopt",
            "150602001001001/property@39.8100,109.9900",
            "--lead",
            "150602-urban_management",
            "--assist",
            "150602-housing_construction",
            "--milestone",
            "排查@2027-01-15",
            "--deadline",
            "2027-02-28",
            "--as",
            "op-150602",
        ])
        .unwrap();
        assert_eq!(verb, "adopt");
        assert!(command.incident_id.is_empty());
        let Some(Body::Adopt(adopt)) = command.body else {
            panic!("{command:?}")
        };
        assert_eq!(
            adopt.assisting_department_codes,
            ["150602-housing_construction"]
        );
        assert_eq!(adopt.milestones[0].title, "排查");
        // The end of 28 February in Ordos.
        assert_eq!(
            adopt.deadline.unwrap().seconds,
            "2027-02-28T15:59:59Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .timestamp()
        );
        assert!(build(&["adopt", "k", "--lead", "x", "--as", "op-150602"]).is_err());
        assert!(build(&[
            "adopt",
            "k",
            "--lead",
            "x",
            "--deadline",
            "2027-02-28",
            "--milestone",
            "no date",
            "--as",
            "op-150602"
        ])
        .is_err());
        let (verb, command) = build(&[
            "complete-milestone",
            INCIDENT,
            "2",
            "--as",
            "li-150602-urban_management",
        ])
        .unwrap();
        assert_eq!(verb, "complete_milestone");
        assert!(matches!(
            command.body,
            Some(Body::CompleteMilestone(v1::CompleteMilestone {
                milestone: 2,
                ..
            }))
        ));
    }

    #[test]
    fn bad_ids_are_caught_before_sending() {
        assert!(
            build(&["accept", "not-a-uuid", "1", "--as", "li-150602-heating"])
                .unwrap_err()
                .contains("not an incident id")
        );
        assert!(build(&["accept", INCIDENT, "1", "--as", "li 150602"])
            .unwrap_err()
            .contains("--as"));
        assert!(build(&[
            "accept",
            INCIDENT,
            "1",
            "--as",
            "li-150602-heating",
            "--command-id",
            "has spaces"
        ])
        .unwrap_err()
        .contains("--command-id"));
        assert!(build(&["accept", INCIDENT, "one", "--as", "li-150602-heating"]).is_err());
    }

    #[test]
    fn reasons_parse_in_every_spelling() {
        use v1::ReturnReason as R;
        for (text, reason) in [
            ("not-our-duty", R::NotOurDuty),
            ("not_our_duty", R::NotOurDuty),
            ("RETURN_REASON_NOT_OUR_DUTY", R::NotOurDuty),
            ("wrong-area", R::WrongArea),
            ("unclear-ownership", R::UnclearOwnership),
            ("overlapping-duties", R::OverlappingDuties),
            ("insufficient-information", R::InsufficientInformation),
            ("信息不全", R::InsufficientInformation),
        ] {
            assert_eq!(parse_reason(text), Ok(reason), "{text}");
        }
        assert!(parse_reason("").is_err());
        assert!(parse_reason("unspecified").is_err());
    }

    #[test]
    fn verdicts_parse_in_every_spelling() {
        use v1::Satisfaction as S;
        assert_eq!(parse_satisfaction("satisfied"), Ok(S::Satisfied));
        assert_eq!(
            parse_satisfaction("basically_satisfied"),
            Ok(S::BasicallySatisfied)
        );
        assert_eq!(parse_satisfaction("不满意"), Ok(S::Unsatisfied));
        assert!(parse_satisfaction("meh").is_err());
    }

    #[test]
    fn outcomes_read_as_one_line() {
        let (_, command) = build(&["accept", INCIDENT, "2", "--as", "li-150602-heating"]).unwrap();
        let ok = v1::CommandOk {
            incident_id: INCIDENT.into(),
            version: 5,
            status: v1::IncidentStatus::Accepted as i32,
            level: v1::Level::Street as i32,
            task_id: "2".into(),
            task_status: v1::TaskStatus::Accepted as i32,
            applied_at: None,
            person: None,
            offer: None,
        };
        assert_eq!(
            describe_ok(&command, &ok),
            format!(
                "已报到: 任务 2 accepted, incident {INCIDENT} now accepted at street (version 5)"
            )
        );
        let (_, escalate) = build(&[
            "escalate",
            INCIDENT,
            "--note",
            "beyond us",
            "--as",
            "hd-150602001",
        ])
        .unwrap();
        let whistled = v1::CommandOk {
            status: v1::IncidentStatus::Whistled as i32,
            task_id: String::new(),
            ..ok.clone()
        };
        assert_eq!(
            describe_ok(&escalate, &whistled),
            format!("已吹哨: incident {INCIDENT} now whistled at street (version 5)")
        );
        let refused = outcome(v1::CommandReply {
            outcome: Some(Outcome::Error(v1::CommandError {
                code: v1::CommandErrorCode::Stale as i32,
                message: "incident is at version 6, not 5".into(),
                holdings: None,
            })),
        })
        .unwrap_err();
        assert_eq!(refused.code, "stale");
        assert_eq!(
            refused.to_string(),
            "refused (stale): incident is at version 6, not 5"
        );
        let forbidden = Refused {
            code: "invalid_transition".into(),
            message: "invalid transition: task 1 is resolved".into(),
        };
        assert_eq!(
            forbidden.to_string(),
            "refused (invalid_transition): task 1 is resolved"
        );
    }
}
