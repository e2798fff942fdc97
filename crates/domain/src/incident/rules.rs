//! The transition rules: [`open`], [`apply`], who may act, and each command and timer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Actor, Adoption, Command, Context, Dispute, Effect, ExtensionRequest, Incident, Input, Ledger,
    LedgerReason, Milestone, Proactive, Provisional, Rejection, ResidentAnswer, Responsible,
    ReturnReason, Satisfaction, Status, Task, TaskRole, TaskStatus, TaskVerb, Timer,
    MAX_ADOPTION_DAYS, MAX_MILESTONES, MILESTONE_TITLE_MAX, NOTE_MAX, TEXT_MAX,
};
use crate::{
    calendar::{Calendar, Due},
    policy::{Category, Policy, Term},
    AreaCode, Department, DepartmentCode, DepartmentKind, Level, PersonId, ReportId,
};

/// A new incident reported from `grid` (a grid code) at `now`: handled at the category's first
/// level, with that level's window and the SLA deadline (counted on `calendar` when it runs in
/// working days) scheduled.
pub fn open(
    grid: AreaCode,
    category: &Category,
    policy: &Policy,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> (Incident, Vec<Effect>) {
    let term = policy.resolve_deadline(category);
    let due = term.due(now, calendar);
    let incident = Incident {
        status: Status::Handling,
        level: category.first_level,
        area: grid,
        category: category.code.clone(),
        reported_at: now,
        resolve_due: due.at,
        provisional: provisional(term, now, due, None),
        level_due: policy
            .window(category, category.first_level)
            .map(|window| now + window),
        follow_up_due: None,
        tasks: Vec::new(),
        reopen_count: 0,
        overdue: false,
        satisfaction: None,
        extension: None,
        extensions: 0,
        ledger: None,
        resident_answers: Vec::new(),
        proactive: None,
        version: 1,
    };
    let effects = timer_effects(&BTreeMap::new(), &incident.timers(), None);
    (incident, effects)
}

/// A proactive case (主动治理) that `actor` adopts from a hotspot topic at `now`: an incident with
/// no report, at the topic's grid and category, supervised at the level that can solve it (the
/// street at least, where departments are summoned), already whistled to the lead and assisting
/// departments as a whistle dispatches them, due at the adopted deadline and with no level window.
/// From then on [`apply`] takes it like any incident.
///
/// Checks, in the order of [`apply`]'s: the category and departments exist (`NotFound`), the actor
/// is an operator whose area contains the topic's grid or `System` (`Forbidden`), then the
/// arguments (`InvalidArgument`).
pub fn adopt(
    adoption: Adoption,
    actor: &Actor,
    ctx: &Context<'_>,
    now: DateTime<Utc>,
) -> Result<(Incident, Vec<Effect>), Rejection> {
    let category = ctx
        .policy
        .category(adoption.category.as_str())
        .ok_or_else(|| {
            Rejection::NotFound(format!(
                "category {} in policy {}",
                adoption.category,
                ctx.policy.version()
            ))
        })?;
    let level = adoption.solvable_at.max(Level::Street);
    let incident = Incident {
        status: Status::Whistled,
        level,
        area: adoption.grid.clone(),
        category: category.code.clone(),
        reported_at: now,
        resolve_due: adoption.deadline,
        provisional: None,
        level_due: None,
        follow_up_due: None,
        tasks: Vec::new(),
        reopen_count: 0,
        overdue: false,
        satisfaction: None,
        extension: None,
        extensions: 0,
        ledger: None,
        resident_answers: Vec::new(),
        proactive: Some(Proactive {
            topic_key: adoption.topic_key.clone(),
            month: adoption.month.clone(),
            adopted_by: acting_person(actor),
            summary: adoption.summary.clone(),
            milestones: adoption
                .milestones
                .iter()
                .map(|(title, due)| Milestone {
                    title: title.trim().to_owned(),
                    due: *due,
                    done_at: None,
                    done_by: None,
                })
                .collect(),
        }),
        version: 1,
    };
    let mut step = Step {
        next: incident,
        events: Vec::new(),
        ctx: *ctx,
        now,
    };
    let named: Vec<DepartmentCode> = std::iter::once(adoption.lead.clone())
        .chain(adoption.assisting.iter().cloned())
        .collect();
    step.check_departments(&named)?;
    if !step.commands_area(actor) {
        return Err(forbidden(
            actor,
            &format!("adopt a topic in {}", adoption.grid),
        ));
    }
    check_text("note", &adoption.note, NOTE_MAX, false)?;
    check_text("topic_key", &adoption.topic_key, NOTE_MAX, true)?;
    let max = ctx.policy.assisting().max_per_whistle as usize;
    if adoption.assisting.len() > max {
        return Err(Rejection::InvalidArgument(format!(
            "{} assisting departments named; the policy allows at most {max}",
            adoption.assisting.len()
        )));
    }
    if adoption.deadline <= now {
        return Err(Rejection::InvalidArgument(format!(
            "deadline {} is not in the future",
            local_date(adoption.deadline)
        )));
    }
    if adoption.deadline > now + chrono::Duration::days(MAX_ADOPTION_DAYS) {
        return Err(Rejection::InvalidArgument(format!(
            "deadline {} is more than {MAX_ADOPTION_DAYS} days ahead",
            local_date(adoption.deadline)
        )));
    }
    if adoption.milestones.len() > MAX_MILESTONES {
        return Err(Rejection::InvalidArgument(format!(
            "{} milestones; at most {MAX_MILESTONES}",
            adoption.milestones.len()
        )));
    }
    for (index, (title, due)) in adoption.milestones.iter().enumerate() {
        let n = index + 1;
        check_text(
            &format!("milestone {n} title"),
            title,
            MILESTONE_TITLE_MAX,
            true,
        )?;
        if *due <= now || *due > adoption.deadline {
            return Err(Rejection::InvalidArgument(format!(
                "milestone {n} is due {}, not between now and the deadline {}",
                local_date(*due),
                local_date(adoption.deadline)
            )));
        }
    }
    let note = with_note(
        format!(
            "主动治理：立项自{}月度选题 {}（{}）",
            adoption.month, adoption.topic_key, adoption.summary
        ),
        &adoption.note,
    );
    step.event("incident.adopted", None, note);
    step.dispatch(adoption.lead, TaskRole::Lead);
    for department in adoption.assisting {
        step.dispatch(department, TaskRole::Assist);
    }
    let Step {
        next, mut events, ..
    } = step;
    events.extend(timer_effects(&BTreeMap::new(), &next.timers(), None));
    Ok((next, events))
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
        Input::Recalendar => {
            step.recalendar();
            None
        }
    };
    step.withdraw_moot_extension();
    step.withdraw_moot_disputes();
    step.withdraw_moot_ledger();
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

/// The record to recount a deadline of `term` from `from` later, if `due` is provisional.
fn provisional(
    term: Term,
    from: DateTime<Utc>,
    due: Due,
    not_before: Option<DateTime<Utc>>,
) -> Option<Provisional> {
    match term {
        Term::WorkingDays(working_days) if due.provisional => Some(Provisional {
            from,
            working_days,
            not_before,
        }),
        _ => None,
    }
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

/// Who may act on an incident (the table in the module documentation).
impl Actor {
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

    /// Who answers an extension request at `approver`: that level's unit (a handler), an operator
    /// whose area is at that level or above and contains the incident, or dispatch itself.
    fn approves(&self, incident: &Incident, approver: Level) -> bool {
        match self {
            Actor::Handler { .. } => self.handles(incident, approver),
            Actor::Operator { area, .. } => {
                area.level() >= approver && area.contains(&incident.area)
            }
            Actor::System => true,
            _ => false,
        }
    }

    /// A leader paired with a street or community that contains the incident.
    fn is_paired_leader(&self, incident: &Incident) -> bool {
        matches!(self, Actor::Leader { paired, .. } if paired.iter().any(|area| area.contains(&incident.area)))
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
            Actor::Leader { .. } => self.is_paired_leader(incident),
            Actor::System => true,
            Actor::Resident { .. } => false,
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

/// The actor's person id for the record; `system` for dispatch itself (and for a resident, who
/// is refused before anything is recorded).
fn acting_person(actor: &Actor) -> PersonId {
    actor
        .id()
        .parse()
        .unwrap_or_else(|_| "system".parse().expect("a valid person id"))
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
            Command::Escalate {
                note,
                departments,
                assisting,
            } => self.escalate_by(actor, note, departments, assisting),
            Command::Verify { satisfaction, note } => self.verify(actor, satisfaction, note),
            Command::Supervise { task, note } => self.supervise(actor, task, note),
            Command::Endorse { note } => self.endorse(actor, note),
            Command::Reassign { task, to, note } => self.reassign(actor, task, to, note),
            Command::RequestExtension {
                task,
                until,
                reason,
            } => self.request_extension(actor, task, until, reason),
            Command::DecideExtension { approve, note } => {
                self.decide_extension(actor, approve, note)
            }
            Command::Dispute { task, to, reason } => self.dispute(actor, task, to, reason),
            Command::DecideDispute { task, uphold, note } => {
                self.decide_dispute(actor, task, uphold, note)
            }
            Command::SubmitAssist { task, note } => self.submit_assist(actor, task, note),
            Command::ReleaseAssist { task, note } => self.release_assist(actor, task, note),
            Command::ProposeLedger {
                reason,
                note,
                responsible,
                review_at,
            } => self.propose_ledger(actor, reason, note, &responsible, review_at),
            Command::DecideLedger { approve, note } => self.decide_ledger(actor, approve, note),
            Command::ReviewLedger { extend_to, note } => self.review_ledger(actor, extend_to, note),
            Command::CompleteMilestone { milestone, note } => {
                self.complete_milestone(actor, milestone, note)
            }
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

    /// Whether `actor` commands the incident's area: an operator whose area contains it, or
    /// dispatch itself.
    fn commands_area(&self, actor: &Actor) -> bool {
        actor.commands(&self.next)
    }

    /// A proactive case's milestone done: by a liaison of the department leading it now, an
    /// operator in area, or `System`, while the case is open.
    fn complete_milestone(
        &mut self,
        actor: &Actor,
        number: u32,
        note: String,
    ) -> Result<(), Rejection> {
        let Some(proactive) = &self.next.proactive else {
            return Err(Rejection::NotFound(format!(
                "milestone {number}: the incident is not a proactive case"
            )));
        };
        let index = usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < proactive.milestones.len())
            .ok_or_else(|| Rejection::NotFound(format!("milestone {number}")))?;
        let leads = match actor {
            Actor::Liaison { department, .. } => self
                .next
                .current_tasks()
                .any(|t| t.department == *department && !t.assists() && t.status.is_live()),
            _ => actor.commands(&self.next),
        };
        if !leads {
            return Err(forbidden(actor, &format!("complete milestone {number}")));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        self.require_open()?;
        let now = self.now;
        let milestone = &mut self
            .next
            .proactive
            .as_mut()
            .expect("checked above")
            .milestones[index];
        if milestone.done_at.is_some() {
            return Err(Rejection::InvalidTransition(format!(
                "milestone {number} is already done"
            )));
        }
        milestone.done_at = Some(now);
        milestone.done_by = Some(acting_person(actor));
        let late = if milestone.due < now {
            "（逾期）"
        } else {
            ""
        };
        let text = format!("里程碑{number}「{}」完成{late}", milestone.title);
        self.event("incident.milestone_done", None, with_note(text, &note));
        Ok(())
    }

    fn accept(&mut self, actor: &Actor, id: u32, note: String) -> Result<(), Rejection> {
        let (task, holder) = self.liaison_task(actor, id, "accept")?;
        check_text("note", &note, NOTE_MAX, false)?;
        self.require_open()?;
        if !TaskVerb::Accept.applies(task.status, true, task.role) {
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
        if !TaskVerb::Return.applies(task.status, true, task.role) {
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
        if task.assists() {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} assists (协办); an assisting department submits its part and the lead resolves"
            )));
        }
        if !TaskVerb::Resolve.applies(task.status, true, task.role) {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; only an accepted task is resolved",
                task.status
            )));
        }
        // The lead (主办) resolves only once every assisting department has submitted its part or
        // been released by the dispatching level.
        let owing: Vec<String> = self
            .next
            .current_tasks()
            .filter(|t| t.owes_part())
            .map(|t| format!("task {} ({}, {})", t.id, t.department, t.status))
            .collect();
        if !owing.is_empty() {
            return Err(Rejection::InvalidTransition(format!(
                "the lead resolves after every assisting department submitted its part or was released; still owed: {}",
                owing.join(", ")
            )));
        }
        let task = &mut self.next.tasks[task_index(id)];
        task.status = TaskStatus::Resolved;
        task.resolved_at = Some(self.now);
        self.event("task.resolved", Some(id), note);
        // A returned task waits for the street's reassignment, so it holds the incident open.
        let done = self.next.current_tasks().all(|t| {
            matches!(
                t.status,
                TaskStatus::Resolved | TaskStatus::Cancelled | TaskStatus::Released
            )
        });
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
        assisting: Vec<DepartmentCode>,
    ) -> Result<(), Rejection> {
        if !actor.handles(&self.next, self.next.level) && !actor.commands(&self.next) {
            return Err(forbidden(actor, "escalate this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        let named: Vec<DepartmentCode> = departments.iter().chain(&assisting).cloned().collect();
        self.check_departments(&named)?;
        if !assisting.is_empty() {
            let max = self.ctx.policy.assisting().max_per_whistle;
            if assisting.len() > max as usize {
                return Err(Rejection::InvalidArgument(format!(
                    "the policy allows {max} assisting department(s) per whistle; {} named",
                    assisting.len()
                )));
            }
            if departments.len() != 1 {
                return Err(Rejection::InvalidArgument(format!(
                    "a whistle with assisting departments names exactly one lead department; {} named",
                    departments.len()
                )));
            }
        }
        self.require_open()?;
        self.require_not_ledgered("escalated")?;
        if self.next.level == Level::City {
            return Err(Rejection::InvalidTransition(
                "the city is the top of the chain".into(),
            ));
        }
        if !named.is_empty() && !self.whistles() {
            return Err(Rejection::InvalidArgument(format!(
                "departments are summoned only by the whistle; the incident is {} at {}",
                self.next.status,
                self.next.level.as_str()
            )));
        }
        self.escalate_with(note, departments, assisting)
    }

    fn verify(
        &mut self,
        actor: &Actor,
        satisfaction: Satisfaction,
        note: String,
    ) -> Result<(), Rejection> {
        if let Actor::Resident { report } = actor {
            return self.resident_answer(report, satisfaction, note);
        }
        if !actor.is_reporter(&self.next) {
            return Err(forbidden(actor, "follow up this incident"));
        }
        check_text("note", &note, NOTE_MAX, false)?;
        if self.next.status != Status::Resolved {
            return Err(self.not_now("followed up"));
        }
        self.follow_up(satisfaction, note)
    }

    /// A resident's answer through their tracking code, on a resolution: once per report and
    /// round of handling. While the incident awaits its follow-up it is that follow-up, exactly as
    /// a grid worker's; once the round was followed up (or closed unverified) it is kept on the
    /// timeline as a comment and changes nothing else. While the incident is being handled there
    /// is no result to answer on.
    fn resident_answer(
        &mut self,
        report: &ReportId,
        satisfaction: Satisfaction,
        note: String,
    ) -> Result<(), Rejection> {
        check_text("note", &note, NOTE_MAX, false)?;
        if self.next.status.is_open() {
            return Err(self.not_now("answered by a resident"));
        }
        let round = self.next.reopen_count;
        if self
            .next
            .resident_answers
            .iter()
            .any(|a| a.report == *report && a.round == round)
        {
            return Err(Rejection::InvalidTransition(
                "this report's resident already answered this round of handling".into(),
            ));
        }
        let counts = self.next.status == Status::Resolved;
        self.next.resident_answers.push(ResidentAnswer {
            report: report.clone(),
            round,
            satisfaction,
            counted: counts,
        });
        let verdict = satisfaction.label_zh();
        let said = if note.is_empty() {
            format!("居民回访：{verdict}")
        } else {
            format!("居民回访：{verdict}。{note}")
        };
        if counts {
            return self.follow_up(satisfaction, said);
        }
        self.event(
            "incident.commented",
            None,
            format!("{said}（未计入满意度：本轮已回访）"),
        );
        Ok(())
    }

    /// 回访: the verdict closes the incident or, unsatisfied, reopens it.
    fn follow_up(&mut self, satisfaction: Satisfaction, note: String) -> Result<(), Rejection> {
        self.next.satisfaction = Some(satisfaction);
        self.next.follow_up_due = None;
        self.event("incident.verified", None, note);
        if satisfaction != Satisfaction::Unsatisfied {
            self.next.status = Status::Closed;
            self.event("incident.closed", None, String::new());
            return Ok(());
        }
        let category = self.category()?;
        // The departments that resolved or submitted their parts do it again, in their roles;
        // assistants only alongside a lead, who alone can resolve.
        let mut redo: Vec<(DepartmentCode, TaskRole)> = self
            .next
            .current_tasks()
            .filter(|t| t.status == TaskStatus::Resolved)
            .map(|t| (t.department.clone(), t.role))
            .collect();
        if !redo.iter().any(|(_, role)| *role == TaskRole::Lead) {
            redo.clear();
        }
        let term = self.ctx.policy.reopen_deadline(category);
        let reopen_due = term.due(self.now, self.ctx.calendar);
        let before = self.next.resolve_due;
        self.next.reopen_count += 1;
        self.next.overdue = false;
        if reopen_due.at > before {
            self.next.resolve_due = reopen_due.at;
            self.next.provisional = provisional(term, self.now, reopen_due, Some(before));
        }
        self.next.level_due = self.window(category, self.next.level);
        self.next.status = if redo.is_empty() {
            Status::Handling
        } else {
            Status::Whistled
        };
        self.event("incident.reopened", None, String::new());
        for (department, role) in redo {
            self.dispatch(department, role);
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
        self.require_not_ledgered("supervised")?;
        let Some(task) = task else {
            self.event("incident.supervised", None, note);
            return Ok(());
        };
        if !TaskVerb::Supervise.applies(
            task.status,
            task.round == self.next.reopen_count,
            task.role,
        ) {
            return Err(Rejection::InvalidTransition(format!(
                "task {} is {}; only a task in progress is supervised",
                task.id, task.status
            )));
        }
        self.next.tasks[task_index(task.id)].supervised = true;
        self.event("task.supervised", Some(task.id), note);
        Ok(())
    }

    /// 领导督办: recorded as its own event, so the timeline, the screen and the handling unit see
    /// the leader's instruction as such. It changes no deadline and no task: the operators'
    /// 督办 and the timers keep their rules.
    fn endorse(&mut self, actor: &Actor, note: String) -> Result<(), Rejection> {
        if !actor.is_paired_leader(&self.next) {
            return Err(forbidden(actor, "endorse a supervision of this incident"));
        }
        check_text("note", &note, NOTE_MAX, true)?;
        self.require_open()?;
        self.event("incident.endorsed", None, note);
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
        self.require_not_ledgered("reassigned")?;
        if !TaskVerb::Reassign.applies(task.status, task.round == self.next.reopen_count, task.role)
        {
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
        self.dispatch(to, task.role);
        self.next.status = self.next.status_from_tasks();
        Ok(())
    }

    fn request_extension(
        &mut self,
        actor: &Actor,
        task: Option<u32>,
        until: DateTime<Utc>,
        reason: String,
    ) -> Result<(), Rejection> {
        let requested_by = match task {
            Some(id) => {
                let (task, liaison) = self.liaison_task(actor, id, "ask to extend")?;
                if task.assists() {
                    return Err(Rejection::InvalidTransition(format!(
                        "task {id} assists (协办); its part has its own deadline and the lead asks for more time"
                    )));
                }
                liaison
            }
            None => match actor {
                Actor::GridWorker { id, .. } | Actor::Handler { id, .. }
                    if actor.handles(&self.next, self.next.level) =>
                {
                    id.clone()
                }
                _ => return Err(forbidden(actor, "ask to extend this incident's deadline")),
            },
        };
        check_text("reason", &reason, NOTE_MAX, true)?;
        let rules = self.ctx.policy.extensions();
        if until <= self.next.resolve_due {
            return Err(Rejection::InvalidArgument(format!(
                "an extension asks for a deadline after the current one ({})",
                self.next.resolve_due.to_rfc3339()
            )));
        }
        if until - self.next.resolve_due > rules.longest {
            return Err(Rejection::InvalidArgument(format!(
                "an extension moves the deadline at most {} h past the current one",
                rules.longest.num_minutes() as f64 / 60.0
            )));
        }
        self.require_open()?;
        self.require_not_ledgered("extended")?;
        let approver = match task {
            Some(id) => {
                let task = self.find(id)?;
                if task.status != TaskStatus::Accepted || task.round != self.next.reopen_count {
                    return Err(Rejection::InvalidTransition(format!(
                        "task {id} is {}; a department asks for more time only while handling it",
                        task.status
                    )));
                }
                Level::District
            }
            None => {
                if self.next.status != Status::Handling {
                    return Err(Rejection::InvalidTransition(format!(
                        "the incident is {}; the departments handling it ask for more time",
                        self.next.status
                    )));
                }
                self.next.level.up().ok_or_else(|| {
                    Rejection::InvalidTransition(
                        "the city is the top of the chain; nobody above it grants more time".into(),
                    )
                })?
            }
        };
        if self.next.overdue || self.now >= self.next.resolve_due {
            return Err(Rejection::InvalidTransition(
                "the deadline has passed; an extension is asked for before it".into(),
            ));
        }
        if let Some(pending) = &self.next.extension {
            return Err(Rejection::InvalidTransition(format!(
                "an extension request by {} is waiting for an answer",
                pending.requested_by
            )));
        }
        if self.next.extensions >= rules.max_per_incident {
            return Err(Rejection::InvalidTransition(format!(
                "the policy allows {} extension(s) per incident and {} were granted",
                rules.max_per_incident, self.next.extensions
            )));
        }
        self.next.extension = Some(ExtensionRequest {
            task,
            requested_by,
            approver,
            until,
            requested_at: self.now,
            answer_due: self.now + rules.answer,
        });
        let note = format!(
            "申请延期至 {}（{}审批）：{reason}",
            until.with_timezone(&beijing()).format("%Y-%m-%d %H:%M"),
            approver.name_zh()
        );
        self.event("incident.extension_requested", task, note);
        Ok(())
    }

    /// The actor answers for `approver`, the level that must `verb` `what` (an extension request,
    /// a ledger proposal or case): its staff, or an operator whose area is at that level or above.
    fn check_approver(
        &self,
        actor: &Actor,
        approver: Level,
        verb: &str,
        what: &str,
    ) -> Result<(), Rejection> {
        if actor.approves(&self.next, approver) {
            return Ok(());
        }
        let level = approver.name_zh();
        Err(forbidden(
            actor,
            &format!("{verb} {what}, which is for the {level} to {verb}"),
        ))
    }

    fn decide_extension(
        &mut self,
        actor: &Actor,
        approve: bool,
        note: String,
    ) -> Result<(), Rejection> {
        let Some(request) = self.next.extension.clone() else {
            return Err(Rejection::InvalidTransition(
                "no extension request is waiting for an answer".into(),
            ));
        };
        self.check_approver(actor, request.approver, "answer", "this extension request")?;
        check_text("note", &note, NOTE_MAX, !approve)?;
        self.next.extension = None;
        if !approve {
            self.event("incident.extension_denied", request.task, note);
            return Ok(());
        }
        self.next.extensions += 1;
        self.next.resolve_due = request.until;
        // The approver's date, not a count: a provisional working-day deadline is not recounted.
        self.next.provisional = None;
        // The leads work to the new deadline; an assistant's part keeps its own, already earlier.
        let round = self.next.reopen_count;
        for task in self.next.tasks.iter_mut().filter(|t| t.round == round) {
            if !task.assists() {
                task.resolve_due = request.until;
            }
        }
        let until = request
            .until
            .with_timezone(&beijing())
            .format("%Y-%m-%d %H:%M");
        let note = if note.trim().is_empty() {
            format!("同意延期至 {until}")
        } else {
            format!("同意延期至 {until}：{note}")
        };
        self.event("incident.extension_approved", request.task, note);
        Ok(())
    }

    /// A pending request lapses unanswered: it counts as denied.
    fn lapse_extension(&mut self, note: &str) {
        if let Some(request) = self.next.extension.take() {
            self.event("incident.extension_denied", request.task, note.to_owned());
        }
    }

    /// A request whose asker is done (the task resolved, the incident resolved) has nothing left
    /// to extend.
    fn withdraw_moot_extension(&mut self) {
        let Some(request) = &self.next.extension else {
            return;
        };
        let asker_busy = match request.task {
            None => true,
            Some(id) => self.next.task(id).is_some_and(|t| {
                t.status == TaskStatus::Accepted && t.round == self.next.reopen_count
            }),
        };
        if self.next.status.is_open() && asker_busy {
            return;
        }
        let task = request.task;
        self.next.extension = None;
        self.event(
            "incident.extension_withdrawn",
            task,
            "已办结，延期申请撤回".into(),
        );
    }

    fn dispute(
        &mut self,
        actor: &Actor,
        id: u32,
        to: DepartmentCode,
        reason: String,
    ) -> Result<(), Rejection> {
        let (task, raised_by) = self.liaison_task(actor, id, "dispute")?;
        let proposed = self
            .ctx
            .org
            .department(&to)
            .ok_or_else(|| Rejection::NotFound(format!("department {to}")))?;
        check_text("reason", &reason, NOTE_MAX, true)?;
        if task.department == to {
            return Err(Rejection::InvalidArgument(format!(
                "task {id} already belongs to {to}; a dispute proposes another department"
            )));
        }
        self.check_serves(proposed)?;
        self.require_open()?;
        self.require_not_ledgered("disputed")?;
        let waiting = matches!(task.status, TaskStatus::Dispatched | TaskStatus::Supervised);
        if !waiting || task.round != self.next.reopen_count {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; a department disputes a task only before reporting in",
                task.status
            )));
        }
        if task.disputed {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} has already been disputed; a task is disputed once"
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
        let note = format!("派单异议，建议改派 {to}：{reason}");
        let task = &mut self.next.tasks[task_index(id)];
        task.disputed = true;
        task.dispute = Some(Dispute {
            proposed: to,
            reason,
            raised_by,
            raised_at: self.now,
        });
        self.event("task.disputed", Some(id), note);
        Ok(())
    }

    fn decide_dispute(
        &mut self,
        actor: &Actor,
        id: u32,
        uphold: bool,
        note: String,
    ) -> Result<(), Rejection> {
        let task = self.find(id)?.clone();
        // The arbitrator is whoever dispatched and may reassign: the street or an operator.
        if !actor.handles(&self.next, Level::Street) && !actor.commands(&self.next) {
            return Err(forbidden(actor, "arbitrate disputes of this incident"));
        }
        check_text("note", &note, NOTE_MAX, !uphold)?;
        let Some(dispute) = task.dispute else {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} has no dispute waiting for arbitration"
            )));
        };
        if !uphold {
            self.next.tasks[task_index(id)].dispute = None;
            self.event("task.dispute_rejected", Some(id), note);
            return Ok(());
        }
        // Upheld is a reassignment: it checks the proposed department again (it may have been
        // summoned since) and keeps resolve_due, the citizen-facing clock.
        let to = dispute.proposed;
        let text = if note.trim().is_empty() {
            format!("异议成立，改派 {to}")
        } else {
            format!("异议成立，改派 {to}：{note}")
        };
        self.next.tasks[task_index(id)].dispute = None;
        self.event("task.dispute_upheld", Some(id), text);
        self.reassign(actor, id, to, note)
    }

    /// A dispute whose task no longer waits to report in (accepted, returned, reassigned, or the
    /// incident resolved) has nothing left to arbitrate.
    fn withdraw_moot_disputes(&mut self) {
        let open = self.next.status.is_open();
        let round = self.next.reopen_count;
        let mut withdrawn = Vec::new();
        for task in &mut self.next.tasks {
            let waiting = matches!(task.status, TaskStatus::Dispatched | TaskStatus::Supervised);
            if task.dispute.is_some() && !(open && waiting && task.round == round) {
                task.dispute = None;
                withdrawn.push(task.id);
            }
        }
        for id in withdrawn {
            self.event("task.dispute_withdrawn", Some(id), "派单异议撤回".into());
        }
    }

    fn submit_assist(&mut self, actor: &Actor, id: u32, note: String) -> Result<(), Rejection> {
        let (task, _) = self.liaison_task(actor, id, "submit a part for")?;
        check_text("note", &note, TEXT_MAX, true)?;
        self.require_open()?;
        if !task.assists() {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is the lead's (主办); the lead resolves, assisting departments submit parts"
            )));
        }
        if !TaskVerb::SubmitAssist.applies(task.status, true, task.role) {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}; an assisting department submits its part after reporting in",
                task.status
            )));
        }
        let task = &mut self.next.tasks[task_index(id)];
        task.status = TaskStatus::Resolved;
        task.resolved_at = Some(self.now);
        self.event("task.assist_submitted", Some(id), note);
        self.next.status = self.next.status_from_tasks();
        Ok(())
    }

    fn release_assist(&mut self, actor: &Actor, id: u32, note: String) -> Result<(), Rejection> {
        let task = self.find(id)?.clone();
        // The dispatching level releases, as it reassigns: the street or an operator.
        if !actor.handles(&self.next, Level::Street) && !actor.commands(&self.next) {
            return Err(forbidden(
                actor,
                "release assisting departments of this incident",
            ));
        }
        check_text("note", &note, NOTE_MAX, true)?;
        self.require_open()?;
        if !task.assists() {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is the lead's (主办); only an assisting department is released"
            )));
        }
        let current = task.round == self.next.reopen_count;
        if !TaskVerb::ReleaseAssist.applies(task.status, current, task.role) {
            return Err(Rejection::InvalidTransition(format!(
                "task {id} is {}{}; only an assistant that still owes its part is released",
                task.status,
                if current { "" } else { " in an earlier round" }
            )));
        }
        self.next.tasks[task_index(id)].status = TaskStatus::Released;
        self.event("task.assist_released", Some(id), note);
        self.next.status = self.next.status_from_tasks();
        Ok(())
    }

    fn propose_ledger(
        &mut self,
        actor: &Actor,
        reason: LedgerReason,
        note: String,
        responsible: &str,
        review_at: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let responsible = self.responsible(responsible)?;
        let proposed_by = self.ledger_proposer(actor)?;
        check_text("note", &note, NOTE_MAX, true)?;
        match &responsible {
            Responsible::Department(code) => {
                let department = self.ctx.org.department(code).expect("found above");
                self.check_serves(department)?;
            }
            Responsible::Unit(unit) if !unit.contains(&self.next.area) => {
                return Err(Rejection::InvalidArgument(format!(
                    "{unit} does not contain {}; the responsible unit is one of the incident's chain",
                    self.next.area
                )));
            }
            Responsible::Unit(_) => {}
        }
        let rules = self.ctx.policy.ledger().ok_or_else(|| {
            Rejection::InvalidTransition(format!(
                "policy {} keeps no long-term ledger",
                self.ctx.policy.version()
            ))
        })?;
        self.check_review_date(review_at, rules.longest_review)?;
        self.require_open()?;
        if let Some(ledger) = &self.next.ledger {
            return Err(Rejection::InvalidTransition(
                if ledger.entered_at.is_some() {
                    "the incident is in the ledger already".into()
                } else {
                    format!(
                        "a ledger proposal by {} is waiting for approval",
                        ledger.proposed_by
                    )
                },
            ));
        }
        let approver = rules.approver_for(self.next.level);
        let text = format!(
            "申请挂账（{}；责任单位 {responsible}；复核日期 {}；{}审批）：{note}",
            reason.name_zh(),
            local_date(review_at),
            approver.name_zh()
        );
        self.next.ledger = Some(Ledger {
            reason,
            note,
            responsible,
            review_at,
            proposed_by,
            proposed_at: self.now,
            approver,
            entered_at: None,
            review_due: false,
        });
        self.event("incident.ledger_proposed", None, text);
        Ok(())
    }

    /// A responsible unit by code: an org unit (an area code of the org tree), else a department.
    fn responsible(&self, code: &str) -> Result<Responsible, Rejection> {
        if let Ok(area) = code.parse::<AreaCode>() {
            if self.ctx.org.unit(&area).is_some() {
                return Ok(Responsible::Unit(area));
            }
        }
        code.parse::<DepartmentCode>()
            .ok()
            .filter(|department| self.ctx.org.department(department).is_some())
            .map(Responsible::Department)
            .ok_or_else(|| Rejection::NotFound(format!("responsible unit {code:?}")))
    }

    /// Who proposes a ledger entry: the unit handling the incident — its level's handler (the
    /// grid worker at the grid), the street that whistled, or a department that reported in.
    fn ledger_proposer(&self, actor: &Actor) -> Result<PersonId, Rejection> {
        let round = self.next.reopen_count;
        let handling = match actor {
            Actor::GridWorker { id, .. } | Actor::Handler { id, .. }
                if actor.handles(&self.next, self.next.level)
                    || actor.handles(&self.next, Level::Street) =>
            {
                Some(id)
            }
            Actor::Liaison { id, department }
                if self.next.tasks.iter().any(|t| {
                    t.department == *department
                        && t.round == round
                        && t.status == TaskStatus::Accepted
                }) =>
            {
                Some(id)
            }
            _ => None,
        };
        handling
            .cloned()
            .ok_or_else(|| forbidden(actor, "propose this incident for the ledger"))
    }

    fn check_review_date(
        &self,
        review_at: DateTime<Utc>,
        longest: chrono::TimeDelta,
    ) -> Result<(), Rejection> {
        if review_at <= self.now {
            return Err(Rejection::InvalidArgument(
                "the review date is in the past; a ledger case is reviewed later".into(),
            ));
        }
        if review_at - self.now > longest {
            return Err(Rejection::InvalidArgument(format!(
                "the review date lies at most {} h ahead",
                longest.num_minutes() as f64 / 60.0
            )));
        }
        Ok(())
    }

    fn decide_ledger(
        &mut self,
        actor: &Actor,
        approve: bool,
        note: String,
    ) -> Result<(), Rejection> {
        let Some(ledger) = self.next.ledger.clone().filter(|l| l.entered_at.is_none()) else {
            return Err(Rejection::InvalidTransition(
                "no ledger proposal is waiting for approval".into(),
            ));
        };
        self.check_approver(actor, ledger.approver, "decide", "this ledger proposal")?;
        check_text("note", &note, NOTE_MAX, !approve)?;
        if !approve {
            self.next.ledger = None;
            self.event("incident.ledger_denied", None, note);
            return Ok(());
        }
        if ledger.review_at <= self.now {
            return Err(Rejection::InvalidTransition(
                "the proposed review date has passed; deny it and propose again".into(),
            ));
        }
        let text = with_note(
            format!("同意挂账，复核日期 {}", local_date(ledger.review_at)),
            &note,
        );
        self.event("incident.ledger_approved", None, text);
        // Normal handling stops: what was waiting on it lapses, and the case leaves the overdue
        // lists (the incident.overdue it had stays on the timeline).
        if let Some(request) = self.next.extension.take() {
            self.event(
                "incident.extension_withdrawn",
                request.task,
                "已挂账，延期申请撤回".into(),
            );
        }
        let mut withdrawn = Vec::new();
        for task in &mut self.next.tasks {
            if task.dispute.take().is_some() {
                withdrawn.push(task.id);
            }
        }
        for id in withdrawn {
            self.event(
                "task.dispute_withdrawn",
                Some(id),
                "已挂账，派单异议撤回".into(),
            );
        }
        self.next.overdue = false;
        self.next.level_due = None;
        self.next.ledger = Some(Ledger {
            entered_at: Some(self.now),
            ..ledger
        });
        Ok(())
    }

    fn review_ledger(
        &mut self,
        actor: &Actor,
        extend_to: Option<DateTime<Utc>>,
        note: String,
    ) -> Result<(), Rejection> {
        let Some(ledger) = self.next.ledger.clone().filter(|l| l.entered_at.is_some()) else {
            return Err(Rejection::InvalidTransition(
                "the incident is not in the ledger".into(),
            ));
        };
        self.check_approver(actor, ledger.approver, "review", "this ledger case")?;
        check_text("note", &note, NOTE_MAX, false)?;
        let rules = self.ctx.policy.ledger().ok_or_else(|| {
            Rejection::InvalidTransition(format!(
                "policy {} keeps no long-term ledger; return the case instead",
                self.ctx.policy.version()
            ))
        });
        if let Some(until) = extend_to {
            self.check_review_date(until, rules?.longest_review)?;
            self.next.ledger = Some(Ledger {
                review_at: until,
                review_due: false,
                ..ledger
            });
            let text = with_note(format!("继续挂账，下次复核 {}", local_date(until)), &note);
            self.event("incident.ledger_extended", None, text);
            return Ok(());
        }
        self.return_from_ledger(note)
    }

    /// Back to normal handling: a fresh SLA deadline (never earlier than the one it had), the
    /// level's window again, and a fresh report-in for a department that had not reported in.
    fn return_from_ledger(&mut self, note: String) -> Result<(), Rejection> {
        let category = self.category()?;
        // A policy that dropped its ledger gives the case its category's term again.
        let term = self.ctx.policy.ledger().map_or_else(
            || self.ctx.policy.resolve_deadline(category),
            |rules| rules.return_resolve,
        );
        let due = term.due(self.now, self.ctx.calendar);
        let before = self.next.resolve_due;
        if due.at > before {
            self.next.resolve_due = due.at;
            self.next.provisional = provisional(term, self.now, due, Some(before));
        }
        let resolve_due = self.next.resolve_due;
        let accept_due = self.now + self.ctx.policy.accept_deadline();
        let round = self.next.reopen_count;
        let part = self.now + self.ctx.policy.assisting().part;
        for task in self.next.tasks.iter_mut().filter(|t| t.round == round) {
            // An assistant gets its part's window again, never past the incident's deadline and
            // never earlier than before.
            task.resolve_due = if task.assists() {
                task.resolve_due.max(part.min(resolve_due))
            } else {
                resolve_due
            };
            if task.status == TaskStatus::Dispatched {
                task.accept_due = task.accept_due.max(accept_due);
            }
        }
        self.next.ledger = None;
        self.next.overdue = false;
        self.next.level_due = self.window(category, self.next.level);
        let text = with_note(
            format!(
                "复核后出账，恢复办理，办结时限 {}",
                resolve_due
                    .with_timezone(&beijing())
                    .format("%Y-%m-%d %H:%M")
            ),
            &note,
        );
        self.event("incident.ledger_returned", None, text);
        Ok(())
    }

    /// A proposal or an entry of an incident no longer open (resolved from the ledger) is done.
    fn withdraw_moot_ledger(&mut self) {
        if self.next.status.is_open() {
            return;
        }
        if let Some(ledger) = self.next.ledger.take() {
            let note = if ledger.entered_at.is_some() {
                "已办结，出账"
            } else {
                "已办结，挂账申请撤回"
            };
            self.event("incident.ledger_withdrawn", None, note.into());
        }
    }

    fn require_not_ledgered(&self, what: &str) -> Result<(), Rejection> {
        if self.next.is_ledgered() {
            Err(Rejection::InvalidTransition(format!(
                "the incident is in the ledger (挂账) and cannot be {what}; the reviewing level returns it to handling first"
            )))
        } else {
            Ok(())
        }
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
                self.escalate(note)
            }
            Timer::AcceptDeadline { task: id } => {
                let task = &mut self.next.tasks[task_index(id)];
                task.status = TaskStatus::Supervised;
                task.supervised = true;
                let note = format!("{} 超过报到时限未报到", task.department);
                self.event("task.supervised", Some(id), note.clone());
                self.event("task.reminded", Some(id), note.clone());
                if self.next.level < Level::District {
                    self.escalate(note)?;
                }
                Ok(())
            }
            Timer::ResolveDeadline => {
                self.lapse_extension("办结时限已过，延期申请未获批准");
                self.next.overdue = true;
                self.event("incident.overdue", None, String::new());
                if self.next.level == Level::City {
                    return Ok(());
                }
                self.escalate("办结时限已过，自动上报".into())
            }
            Timer::ExtensionAnswer => {
                self.lapse_extension("审批时限已过，视为不予延期");
                let escalate = self.ctx.policy.extensions().escalate_unanswered;
                if escalate && self.next.level != Level::City {
                    return self.escalate("延期申请逾期未答复，自动上报".into());
                }
                Ok(())
            }
            Timer::LedgerReview => {
                let ledger = self.next.ledger.as_mut().expect("a ledger case's timer");
                ledger.review_due = true;
                let note = format!("挂账复核日期已到，待{}复核", ledger.approver.name_zh());
                self.event("incident.ledger_review_due", None, note);
                Ok(())
            }
            Timer::FollowUpDeadline => {
                self.next.status = Status::ClosedUnverified;
                self.next.follow_up_due = None;
                self.event("incident.closed_unverified", None, String::new());
                Ok(())
            }
        }
    }

    /// Recounts a provisional resolve deadline on the context's calendar, while the incident is
    /// open and the deadline has not passed (an overdue incident has already been escalated for
    /// it). The recount replaces the weekends-only guess: usually later (the year's holidays),
    /// occasionally earlier (a make-up working Saturday), never before a reopen's floor.
    fn recalendar(&mut self) {
        let Some(record) = self.next.provisional else {
            return;
        };
        if !self.next.status.is_open() || self.next.overdue || self.next.is_ledgered() {
            return;
        }
        let due = self
            .ctx
            .calendar
            .add_working_days(record.from, record.working_days);
        let at = record.not_before.map_or(due.at, |floor| due.at.max(floor));
        self.next.provisional = due.provisional.then_some(record);
        if at == self.next.resolve_due && due.provisional {
            return;
        }
        self.next.resolve_due = at;
        let round = self.next.reopen_count;
        for task in self.next.tasks.iter_mut().filter(|t| t.round == round) {
            task.resolve_due = if task.assists() {
                task.resolve_due.min(at)
            } else {
                at
            };
        }
        let note = if due.provisional {
            "节假日安排更新，办结时限按工作日重新计算（仍为暂定）"
        } else {
            "节假日安排已载入，办结时限按工作日重新计算"
        };
        self.event("incident.rescheduled", None, note.into());
        // A pending extension asking for no more than the recount gave has nothing left to ask.
        if let Some(request) = self.next.extension.take_if(|r| r.until <= at) {
            self.event(
                "incident.extension_withdrawn",
                request.task,
                "时限重算后已不晚于所申请的时限，延期申请撤回".into(),
            );
        }
    }

    /// Whether going up from here is the whistle.
    fn whistles(&self) -> bool {
        self.next.level == Level::Street && self.next.status == Status::Handling
    }

    /// One level up, or the whistle at the street to the category's departments.
    fn escalate(&mut self, note: String) -> Result<(), Rejection> {
        self.escalate_with(note, Vec::new(), Vec::new())
    }

    /// One level up, or the whistle at the street to `named` (else the category's) as leads and
    /// `assisting` as assistants; the caller checked the level is below the city.
    fn escalate_with(
        &mut self,
        note: String,
        named: Vec<DepartmentCode>,
        assisting: Vec<DepartmentCode>,
    ) -> Result<(), Rejection> {
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
            self.dispatch(department, TaskRole::Lead);
        }
        for department in assisting {
            self.dispatch(department, TaskRole::Assist);
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

    fn dispatch(&mut self, department: DepartmentCode, role: TaskRole) {
        let id = u32::try_from(self.next.tasks.len() + 1).expect("fewer than 2^32 tasks");
        let (note, resolve_due) = match role {
            TaskRole::Lead => (department.to_string(), self.next.resolve_due),
            TaskRole::Assist => (
                format!("{department}（协办）"),
                (self.now + self.ctx.policy.assisting().part).min(self.next.resolve_due),
            ),
        };
        self.next.tasks.push(Task {
            id,
            department,
            status: TaskStatus::Dispatched,
            round: self.next.reopen_count,
            dispatched_at: self.now,
            accept_due: self.now + self.ctx.policy.accept_deadline(),
            resolve_due,
            accepted_at: None,
            resolved_at: None,
            holder: None,
            return_reason: None,
            supervised: false,
            dispute: None,
            disputed: false,
            role,
        });
        self.event("task.dispatched", Some(id), note);
    }

    fn resolve(&mut self, note: String) {
        self.next.status = Status::Resolved;
        self.next.level_due = None;
        self.next.follow_up_due = Some(self.now + self.ctx.policy.follow_up_window());
        self.event("incident.resolved", None, note);
    }

    /// The level's window from now; none for a proactive case, which works to its adopted deadline.
    fn window(&self, category: &Category, level: Level) -> Option<DateTime<Utc>> {
        if self.next.proactive.is_some() {
            return None;
        }
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

/// Timeline notes are read in Ordos: Beijing time (UTC+8, no daylight saving).
fn beijing() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset")
}

/// A date as read in Ordos.
fn local_date(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format("%Y-%m-%d").to_string()
}

/// A timeline note with the actor's note after it, if any.
fn with_note(text: String, note: &str) -> String {
    if note.trim().is_empty() {
        text
    } else {
        format!("{text}：{note}")
    }
}

fn task_index(id: u32) -> usize {
    usize::try_from(id).expect("task ids fit in usize") - 1
}
