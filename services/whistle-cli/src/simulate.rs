//! `whistle simulate`: plays everyone at once against a running platform.
//!
//! Grid workers file reports at a fixed rate; the community or street handler (`hd-{unit}`)
//! resolves some incidents and escalates the others (at the street, the whistle); liaisons
//! (`li-{department}`) watch `whistle.task.*.task.dispatched` and report in (most in time, some
//! late so they are supervised), return some tasks, which the street reassigns within the
//! district, and resolve, some after asking the district for more time (延期申请), which the
//! district operator approves, denies or leaves to its timer; grid workers follow up resolved
//! incidents; communities offer small wishes (微心愿) and some incidents to their Party members,
//! who claim them (sometimes two at once), do them, and the community confirms and rates the work
//! (`party`). Delays are shares of the
//! deadlines each person faces (read from the events and the policy), so the same mix runs on the
//! real policy in hours and on `ordos-demo` in minutes. Only incidents this run filed are played.
//!
//! All randomness comes from `StdRng`s seeded by `--seed` (one draws the reports, one every
//! decision and delay); every spawned task stops on Ctrl-C or at the end of `--duration` plus
//! `--drain`.

mod board;
mod devices;
mod party;
pub(crate) mod plan;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer},
    HeaderMap,
};
use chrono::{DateTime, Local, TimeDelta, Utc};
use futures::StreamExt;
use prost::Message as _;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use whistle_domain::{policy::Policy, AreaCode, Level};
use whistle_proto::v1::{self, command::Body, event::Body as EventBody};
use whistle_wire::{
    names::{ServiceRequest, DISPATCH_SERVICE, EVENTS_STREAM},
    subject::{ALL_INCIDENT_EVENTS, ALL_TASK_EVENTS},
    CommandClient,
};

use self::{
    board::Board,
    plan::{ExtensionAnswer, FollowUp, LevelMove, LiaisonMove},
};
use crate::{
    commands::{self, reason_zh, satisfaction_zh},
    generator::Feed,
    tasks::pad,
    watch::{short, Names},
    Connection,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Reports per second filed by grid workers.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// How long grid workers file reports; default until Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration)]
    duration: Option<Duration>,
    /// After --duration, how long everyone else keeps playing (reporting in, resolving, following
    /// up) before simulate stops.
    #[arg(long, value_parser = crate::parse_duration, default_value = "0s")]
    drain: Duration,
    /// Random seed, for a repeatable mix of decisions.
    #[arg(long)]
    seed: Option<u64>,
    /// How often to print the counts of incidents by status.
    #[arg(long, value_parser = crate::parse_duration, default_value = "30s")]
    summary_every: Duration,
    /// Play no devices (by default a steady sensor, one in a storm and a flapping one report
    /// from the org's first grid, registered there if they are not: docs/devices.md).
    #[arg(long)]
    no_devices: bool,
}

/// One command a simulated person sends, with what to print about it.
#[derive(Clone)]
struct Action {
    /// 吹哨, 报到, 退单, …
    verb: &'static str,
    actor: String,
    incident: String,
    title: String,
    /// Printed after the title, e.g. `任务 2 → 东胜区水利局`.
    detail: String,
    expected_version: u64,
    body: Body,
}

struct Sim {
    client: async_nats::Client,
    commands: CommandClient,
    policy: Policy,
    names: Names,
    rng: Mutex<StdRng>,
    board: Mutex<Board>,
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Report ids of this run start with it.
    prefix: String,
    /// The task whose department proposed each incident for the ledger (挂账): it resolves once
    /// the proposal is denied or the case is returned to handling.
    ledger_tasks: Mutex<std::collections::HashMap<String, v1::TaskState>>,
    /// The Ordos registry's members and teams, who claim the communities' offers.
    volunteers: party::Volunteers,
}

/// Prints one line: time, verb, actor, what.
fn say(verb: &str, actor: &str, what: &str) {
    println!(
        "{} {} {} {what}",
        Local::now().format("%H:%M:%S"),
        pad(verb, 8),
        pad(actor, 31)
    );
}

/// How far a protobuf timestamp (seconds, nanos) lies ahead of now; negative when past.
fn since_now(at: Option<(i64, i32)>) -> Option<TimeDelta> {
    let (seconds, nanos) = at?;
    let at = DateTime::from_timestamp(seconds, nanos.max(0) as u32)?;
    Some(at - Utc::now())
}

impl Sim {
    fn rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().expect("not poisoned"))
    }

    fn board<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        f(&mut self.board.lock().expect("not poisoned"))
    }

    /// A yes-or-no decision of a deciding level: yes with probability `share`, taken after a
    /// delay of `units` report-in deadlines, with a reason for a no picked from `noes`.
    fn verdict(
        &self,
        share: f64,
        units: std::ops::Range<f64>,
        noes: &[&'static str],
    ) -> (bool, Duration, &'static str) {
        let unit = self.unit();
        self.rng(|rng| {
            (
                rng.random_bool(share),
                unit.mul_f64(rng.random_range(units)),
                plan::pick(rng, noes),
            )
        })
    }

    /// The policy's report-in deadline, the unit most delays are measured in.
    fn unit(&self) -> Duration {
        self.policy
            .accept_deadline()
            .to_std()
            .unwrap_or(Duration::from_secs(30))
    }

    /// Sleeps, or returns false if the run stops first.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Sends the action's command and prints the outcome; true if it was applied.
    async fn perform(&self, action: &Action) -> bool {
        let command = v1::Command {
            command_id: uuid::Uuid::now_v7().to_string(),
            actor_id: action.actor.clone(),
            incident_id: action.incident.clone(),
            expected_version: action.expected_version,
            body: Some(action.body.clone()),
        };
        let reply = tokio::select! {
            _ = self.stop.cancelled() => return false,
            reply = self.commands.send(&command) => reply,
        };
        let what = format!(
            "「{}」{}  #{}",
            action.title,
            action.detail,
            short(&action.incident)
        );
        match reply.map(commands::outcome) {
            Ok(Ok(ok)) => {
                self.board(|b| b.done += 1);
                say(
                    action.verb,
                    &action.actor,
                    &format!("{what} → {}", commands::status_name(ok.status)),
                );
                true
            }
            Ok(Err(refused)) => {
                self.board(|b| *b.refused.entry(refused.code.clone()).or_default() += 1);
                say(
                    &format!("✗{}", action.verb),
                    &action.actor,
                    &format!("{what} — {refused}"),
                );
                false
            }
            Err(e) => {
                self.board(|b| b.unanswered += 1);
                say(
                    &format!("✗{}", action.verb),
                    &action.actor,
                    &format!("{what} — {e}"),
                );
                false
            }
        }
    }

    /// Performs the action after `delay`, in a task that stops with the run.
    fn later(self: &Arc<Self>, delay: Duration, action: Action) {
        let sim = self.clone();
        self.tracker.spawn(async move {
            if sim.sleep(delay).await {
                sim.perform(&action).await;
            }
        });
    }

    /// The handling level decides what to do with an incident it holds at `version`.
    fn hold(
        self: &Arc<Self>,
        event: &v1::Event,
        level: Level,
        version: u64,
        title: &str,
        category: &str,
        window_left: Option<TimeDelta>,
    ) {
        let Ok(grid) = event.grid_code.parse::<AreaCode>() else {
            return;
        };
        let Some(actor) = plan::level_actor(&grid, level) else {
            return;
        };
        let unit = self.unit();
        // A level with no window (the city) answers within a few report-in deadlines.
        let window = window_left
            .unwrap_or_else(|| TimeDelta::from_std(unit * 4).unwrap_or(TimeDelta::minutes(2)));
        let (choice, delay, note) = self.rng(|rng| {
            let choice = plan::level_move(rng, level);
            let cap = unit.mul_f64(rng.random_range(1.0..4.0));
            let delay = plan::share_of(rng, window, 0.05, 0.45, cap);
            let note = match (choice, level) {
                (LevelMove::Resolve, _) => plan::pick(rng, plan::RESOLVE_NOTES),
                (_, Level::Street) => plan::pick(rng, plan::WHISTLE_NOTES),
                _ => plan::pick(rng, plan::ESCALATE_NOTES),
            };
            (choice, delay, note)
        });
        let place = self
            .names
            .place_path(&[&event.district_code, &event.street_code]);
        // Some whistles name one lead and one or two assisting departments (主办/协办).
        let assisted = if choice == LevelMove::Escalate && level == Level::Street {
            let summon = self
                .policy
                .category(category)
                .map(|c| c.summon.clone())
                .unwrap_or_default();
            self.rng(|rng| {
                rng.random_bool(plan::ASSIST_SHARE)
                    .then(|| {
                        plan::assisting(rng, &event.district_code, &summon, |code| {
                            self.names.knows_department(code)
                        })
                    })
                    .flatten()
            })
        } else {
            None
        };
        // 社区派单: a community offers some of what it handles to its Party members.
        let offered = level == Level::Community
            && self.policy.volunteers().categories.contains(category)
            && self.rng(|rng| rng.random_bool(party::INCIDENT_OFFER_SHARE));
        if offered {
            self.offer_incident(event, title);
        }
        let category = self.names.category(category).to_owned();
        let (verb, body) = match choice {
            LevelMove::Wait => {
                say(
                    "搁置",
                    &actor,
                    &format!(
                        "「{title}」 {}未处置, 等待时限升级  #{}",
                        level.name_zh(),
                        short(&event.incident_id)
                    ),
                );
                return;
            }
            LevelMove::Resolve => (
                "办结",
                Body::Resolve(v1::Resolve {
                    task_id: String::new(),
                    note: note.into(),
                    photo_ids: Vec::new(),
                }),
            ),
            LevelMove::Escalate if level == Level::Street && assisted.is_some() => {
                let (lead, assisting) = assisted.unwrap_or_default();
                (
                    "吹哨(主办+协办)",
                    Body::Escalate(v1::Escalate {
                        note: note.into(),
                        department_codes: vec![lead],
                        assisting_department_codes: assisting,
                    }),
                )
            }
            LevelMove::Escalate if level == Level::Street => (
                "吹哨",
                Body::Escalate(v1::Escalate {
                    assisting_department_codes: Vec::new(),
                    note: note.into(),
                    department_codes: Vec::new(),
                }),
            ),
            LevelMove::Escalate => (
                "上报上级",
                Body::Escalate(v1::Escalate {
                    assisting_department_codes: Vec::new(),
                    note: note.into(),
                    department_codes: Vec::new(),
                }),
            ),
        };
        self.later(
            delay,
            Action {
                verb,
                actor,
                incident: event.incident_id.clone(),
                title: title.to_owned(),
                detail: if choice == LevelMove::Resolve {
                    format!(" [{category}] {place} ({}自办)", level.name_zh())
                } else {
                    format!(" [{category}] {place}")
                },
                expected_version: version,
                body,
            },
        );
    }

    /// A liaison sees their department's new task; for an assisting one, the street sometimes
    /// decides it is not needed after all (免于协办).
    fn dispatched(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(task) = &changed.task else { return };
        let department = task.department_code.clone();
        let actor = format!("li-{department}");
        let unit = self.unit();
        let accept_left = since_now(task.accept_due_at.as_ref().map(|t| (t.seconds, t.nanos)))
            .unwrap_or_default();
        let assists = task.role == v1::TaskRole::Assist as i32;
        let with_assistants = changed
            .tasks
            .iter()
            .any(|t| t.round == changed.reopen_count && t.role == v1::TaskRole::Assist as i32);
        if assists {
            let release = self.rng(|rng| {
                rng.random_bool(plan::RELEASE_SHARE).then(|| {
                    (
                        plan::share_of(rng, accept_left, 0.3, 0.9, unit),
                        plan::pick(rng, plan::RELEASE_NOTES),
                    )
                })
            });
            if let Some((delay, note)) = release {
                self.later(
                    delay,
                    Action {
                        verb: "免于协办",
                        actor: format!("hd-{}", event.street_code),
                        incident: event.incident_id.clone(),
                        title: changed.title.clone(),
                        detail: format!(
                            " 任务{} {}",
                            task.task_id,
                            self.names.department(&department)
                        ),
                        expected_version: 0,
                        body: Body::ReleaseAssist(v1::ReleaseAssist {
                            task_id: task.task_id.to_string(),
                            note: note.into(),
                        }),
                    },
                );
                return;
            }
        }
        let (choice, delay) = self.rng(|rng| {
            let choice = plan::liaison_move(rng);
            let delay = match choice {
                LiaisonMove::Accept { late: true } => {
                    accept_left.to_std().unwrap_or_default()
                        + unit.mul_f64(rng.random_range(0.1..0.6))
                }
                LiaisonMove::Accept { late: false } => {
                    plan::share_of(rng, accept_left, 0.1, 0.8, unit)
                }
                LiaisonMove::Return(_) | LiaisonMove::Dispute => {
                    plan::share_of(rng, accept_left, 0.2, 0.7, unit)
                }
            };
            (choice, delay)
        });
        let task_id = task.task_id.to_string();
        let department_name = self.names.department(&department).to_owned();
        let base = |verb, detail: String, body| Action {
            verb,
            actor: actor.clone(),
            incident: event.incident_id.clone(),
            title: changed.title.clone(),
            detail,
            expected_version: 0,
            body,
        };
        match choice {
            LiaisonMove::Dispute => {
                let summon = self
                    .policy
                    .category(&changed.category)
                    .map(|c| c.summon.clone())
                    .unwrap_or_default();
                let busy = live_departments(changed);
                let (to, reason) = self.rng(|rng| {
                    (
                        plan::reassign_target(
                            rng,
                            &event.district_code,
                            &summon,
                            &department,
                            &busy,
                        ),
                        plan::pick(rng, plan::DISPUTE_REASONS),
                    )
                });
                let Some(to) = to else { return };
                self.later(
                    delay,
                    base(
                        "派单异议",
                        format!(
                            " 任务{task_id} {department_name} → {}",
                            self.names.department(&to)
                        ),
                        Body::Dispute(v1::Dispute {
                            task_id,
                            to_department_code: to,
                            reason: reason.into(),
                        }),
                    ),
                );
            }
            LiaisonMove::Return(reason) => self.later(
                delay,
                base(
                    "退单",
                    format!(" 任务{task_id} {department_name}: {}", reason_zh(reason)),
                    Body::Return(v1::Return {
                        task_id,
                        reason: reason as i32,
                        note: plan::return_note(reason).into(),
                    }),
                ),
            ),
            LiaisonMove::Accept { late } => {
                let accept = base(
                    if late { "超时报到" } else { "报到" },
                    format!(
                        " 任务{task_id} {department_name}{}",
                        if assists { "（协办）" } else { "" }
                    ),
                    Body::Accept(v1::Accept {
                        task_id: task_id.clone(),
                        note: String::new(),
                    }),
                );
                let resolve_due = task.resolve_due_at.as_ref().map(|t| (t.seconds, t.nanos));
                let ledger_task = task.clone();
                let sim = self.clone();
                self.tracker.spawn(async move {
                    if !sim.sleep(delay).await || !sim.perform(&accept).await {
                        return;
                    }
                    // Now and then a case no deadline can meet: the department proposes it for
                    // the ledger and resolves only once the ledger lets go of it (see
                    // `ledger_left`).
                    let ledger = sim.rng(|rng| {
                        rng.random_bool(plan::LEDGER_SHARE).then(|| {
                            (
                                *plan::LEDGER_NOTES
                                    .get(rng.random_range(0..plan::LEDGER_NOTES.len()))
                                    .expect("in range"),
                                unit.mul_f64(rng.random_range(3.0..8.0)),
                            )
                        })
                    });
                    if let Some(((reason, note), review_in)) = ledger {
                        let review_at =
                            Utc::now() + TimeDelta::from_std(review_in).unwrap_or_default();
                        let propose = Action {
                            verb: "申请挂账",
                            body: Body::ProposeLedger(v1::ProposeLedger {
                                reason: reason as i32,
                                note: note.into(),
                                responsible: department.clone(),
                                review_at: Some(whistle_wire::convert::timestamp(review_at)),
                            }),
                            ..accept.clone()
                        };
                        if sim.perform(&propose).await {
                            sim.ledger_tasks
                                .lock()
                                .expect("not poisoned")
                                .insert(propose.incident.clone(), ledger_task);
                            return;
                        }
                    }
                    let mut resolve_left = since_now(resolve_due).unwrap_or_default();
                    // An assistant submits its part before its part's deadline, mostly early.
                    if assists {
                        let (delay, note) = sim.rng(|rng| {
                            let cap = unit.mul_f64(rng.random_range(1.0..4.0));
                            (
                                plan::share_of(rng, resolve_left, 0.1, 0.6, cap),
                                plan::pick(rng, plan::ASSIST_NOTES),
                            )
                        });
                        if sim.sleep(delay).await {
                            let submit = Action {
                                verb: "提交协办意见",
                                body: Body::SubmitAssist(v1::SubmitAssist {
                                    task_id: task_id.clone(),
                                    note: note.into(),
                                }),
                                ..accept
                            };
                            sim.perform(&submit).await;
                        }
                        return;
                    }
                    let extend = sim.rng(|rng| {
                        rng.random_bool(plan::EXTEND_SHARE)
                            .then(|| plan::pick(rng, plan::EXTENSION_REASONS))
                    });
                    if let (Some(reason), Some((seconds, nanos))) = (extend, resolve_due) {
                        // Half the time left again, asked at once: the department then works
                        // on as if it were granted, and the district's answer decides.
                        let due = DateTime::from_timestamp(seconds, nanos.max(0) as u32);
                        if let Some(due) = due.filter(|_| resolve_left > TimeDelta::zero()) {
                            let until = due + resolve_left / 2;
                            let ask = Action {
                                verb: "申请延期",
                                body: Body::RequestExtension(v1::RequestExtension {
                                    task_id: task_id.clone(),
                                    until: Some(whistle_wire::convert::timestamp(until)),
                                    reason: reason.into(),
                                }),
                                ..accept.clone()
                            };
                            if sim.perform(&ask).await {
                                resolve_left += resolve_left / 2;
                            }
                        }
                    }
                    let (delay, note) = sim.rng(|rng| {
                        let cap = unit.mul_f64(rng.random_range(2.0..8.0));
                        (
                            plan::share_of(rng, resolve_left, 0.2, 0.8, cap),
                            plan::pick(rng, plan::RESOLVE_NOTES),
                        )
                    });
                    if !sim.sleep(delay).await {
                        return;
                    }
                    let resolve = Action {
                        verb: "办结",
                        body: Body::Resolve(v1::Resolve {
                            task_id: task_id.clone(),
                            note: note.into(),
                            photo_ids: Vec::new(),
                        }),
                        ..accept
                    };
                    // A lead whose assistants still owe their parts is refused (named in the
                    // refusal) and tries again a little later, a few times.
                    let attempts = if with_assistants { 4 } else { 1 };
                    for _ in 0..attempts {
                        if sim.perform(&resolve).await || !sim.sleep(unit).await {
                            return;
                        }
                    }
                });
            }
        }
    }

    /// The district operator answers a department's extension request, or lets its timer do so.
    fn extension_requested(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        // Departments ask the district; this simulation has no level ask for more time.
        if changed.task.is_none() || event.district_code.is_empty() {
            return;
        }
        let district = event.district_code.clone();
        let unit = self.unit();
        let (answer, delay, denial) = self.rng(|rng| {
            (
                plan::extension_answer(rng),
                unit.mul_f64(rng.random_range(0.2..2.0)),
                plan::pick(rng, plan::EXTENSION_DENIALS),
            )
        });
        let (verb, approve, note) = match answer {
            ExtensionAnswer::Ignore => return,
            ExtensionAnswer::Approve => ("同意延期", true, String::new()),
            ExtensionAnswer::Deny => ("不予延期", false, denial.to_owned()),
        };
        self.later(
            delay,
            Action {
                verb,
                actor: format!("op-{district}"),
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: String::new(),
                expected_version: 0,
                body: Body::DecideExtension(v1::DecideExtension { approve, note }),
            },
        );
    }

    /// The operator of the approving level (the district, or the city for district work).
    fn ledger_approver(event: &v1::Event, changed: &v1::IncidentChanged) -> Option<String> {
        let ledger = changed.ledger.as_ref()?;
        let district = event.district_code.get(..6)?;
        Some(match v1::Level::try_from(ledger.approver) {
            Ok(v1::Level::City) => format!("op-{}00", &district[..4]),
            _ => format!("op-{district}"),
        })
    }

    /// The approving level enters the proposed case in the ledger, or denies it.
    fn ledger_proposed(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(actor) = Self::ledger_approver(event, changed) else {
            return;
        };
        let (approve, delay, denial) =
            self.verdict(plan::LEDGER_APPROVE_SHARE, 0.2..1.0, plan::LEDGER_DENIALS);
        let (verb, note) = if approve {
            ("同意挂账", String::new())
        } else {
            ("不同意挂账", denial.to_owned())
        };
        self.later(
            delay,
            Action {
                verb,
                actor,
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: String::new(),
                expected_version: 0,
                body: Body::DecideLedger(v1::DecideLedger { approve, note }),
            },
        );
    }

    /// At the review date the approving level keeps the case a while longer, or returns it.
    fn ledger_review_due(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(actor) = Self::ledger_approver(event, changed) else {
            return;
        };
        let unit = self.unit();
        let (extend, delay, again) = self.rng(|rng| {
            (
                rng.random_bool(plan::LEDGER_EXTEND_SHARE),
                unit.mul_f64(rng.random_range(0.2..1.0)),
                unit.mul_f64(rng.random_range(3.0..6.0)),
            )
        });
        let (verb, extend_to, note) = if extend {
            let at = Utc::now() + TimeDelta::from_std(delay + again).unwrap_or_default();
            (
                "继续挂账",
                Some(whistle_wire::convert::timestamp(at)),
                "条件尚未具备，继续挂账",
            )
        } else {
            ("出账", None, "条件已具备，恢复办理")
        };
        self.later(
            delay,
            Action {
                verb,
                actor,
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: String::new(),
                expected_version: 0,
                body: Body::ReviewLedger(v1::ReviewLedger {
                    extend_to,
                    note: note.into(),
                }),
            },
        );
    }

    /// Denied or returned to handling: the department that proposed the case resolves its task
    /// (the others went on working on theirs).
    fn ledger_left(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let unit = self.unit();
        let proposer = self
            .ledger_tasks
            .lock()
            .expect("not poisoned")
            .remove(&event.incident_id);
        let still_accepted = |task: &v1::TaskState| {
            changed
                .tasks
                .iter()
                .any(|t| t.task_id == task.task_id && t.status == v1::TaskStatus::Accepted as i32)
        };
        for task in proposer.iter().filter(|t| still_accepted(t)) {
            let (delay, note) = self.rng(|rng| {
                (
                    unit.mul_f64(rng.random_range(0.5..2.0)),
                    plan::pick(rng, plan::RESOLVE_NOTES),
                )
            });
            self.later(
                delay,
                Action {
                    verb: "办结",
                    actor: format!("li-{}", task.department_code),
                    incident: event.incident_id.clone(),
                    title: changed.title.clone(),
                    detail: format!(
                        " 任务{} {}",
                        task.task_id,
                        self.names.department(&task.department_code)
                    ),
                    expected_version: 0,
                    body: Body::Resolve(v1::Resolve {
                        task_id: task.task_id.to_string(),
                        note: note.into(),
                        photo_ids: Vec::new(),
                    }),
                },
            );
        }
    }

    /// The street arbitrates a department's dispute: upheld (the task goes to the proposed
    /// department, the deadline unchanged) or rejected with a note.
    fn disputed(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(task) = &changed.task else { return };
        let (uphold, delay, rejection) =
            self.verdict(plan::UPHOLD_SHARE, 0.1..0.5, plan::DISPUTE_REJECTIONS);
        let (verb, note) = if uphold {
            ("异议成立", String::new())
        } else {
            ("异议不成立", rejection.to_owned())
        };
        self.later(
            delay,
            Action {
                verb,
                actor: format!("hd-{}", event.street_code),
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: format!(
                    " 任务{} {}",
                    task.task_id,
                    self.names.department(&task.department_code)
                ),
                expected_version: 0,
                body: Body::DecideDispute(v1::DecideDispute {
                    task_id: task.task_id.to_string(),
                    uphold,
                    note,
                }),
            },
        );
    }

    /// A department whose dispute was rejected reports in: the task is its.
    fn dispute_rejected(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(task) = &changed.task else { return };
        let delay = self.unit().mul_f64(0.2);
        self.later(
            delay,
            Action {
                verb: "报到",
                actor: format!("li-{}", task.department_code),
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: format!(
                    " 任务{} {}（异议未获支持）",
                    task.task_id,
                    self.names.department(&task.department_code)
                ),
                expected_version: 0,
                body: Body::Accept(v1::Accept {
                    task_id: task.task_id.to_string(),
                    note: String::new(),
                }),
            },
        );
    }

    /// The street reassigns a returned task to another department of the district.
    fn returned(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let Some(task) = &changed.task else { return };
        let summon = self
            .policy
            .category(&changed.category)
            .map(|c| c.summon.clone())
            .unwrap_or_default();
        let busy = live_departments(changed);
        let unit = self.unit();
        let (to, delay) = self.rng(|rng| {
            (
                plan::reassign_target(
                    rng,
                    &event.district_code,
                    &summon,
                    &task.department_code,
                    &busy,
                ),
                unit.mul_f64(rng.random_range(0.1..0.5)),
            )
        });
        let Some(to) = to else { return };
        let actor = format!("hd-{}", event.street_code);
        self.later(
            delay,
            Action {
                verb: "改派",
                actor,
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: format!(
                    " 任务{} {} → {}",
                    task.task_id,
                    self.names.department(&task.department_code),
                    self.names.department(&to)
                ),
                expected_version: 0,
                body: Body::Reassign(v1::Reassign {
                    task_id: task.task_id.to_string(),
                    to_department_code: to,
                    note: "退单后由街道改派主责部门".into(),
                }),
            },
        );
    }

    /// The reporting grid worker follows up a resolved incident (or never does).
    fn resolved(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let actor = format!("gw-{}", event.grid_code);
        let window = self.policy.follow_up_window();
        let unit = self.unit();
        let (choice, delay, note) = self.rng(|rng| {
            let cap = unit.mul_f64(rng.random_range(1.0..6.0));
            (
                plan::follow_up(rng),
                plan::share_of(rng, window, 0.01, 0.06, cap),
                plan::pick(rng, plan::VERIFY_NOTES),
            )
        });
        let FollowUp::Verdict(satisfaction) = choice else {
            say(
                "未回访",
                &actor,
                &format!(
                    "「{}」 不回访, 等待时限结案  #{}",
                    changed.title,
                    short(&event.incident_id)
                ),
            );
            return;
        };
        self.later(
            delay,
            Action {
                verb: "回访",
                actor,
                incident: event.incident_id.clone(),
                title: changed.title.clone(),
                detail: format!(" {}", satisfaction_zh(satisfaction)),
                expected_version: changed.version,
                body: Body::Verify(v1::Verify {
                    satisfaction: satisfaction as i32,
                    note: note.into(),
                    tracking_code: String::new(),
                }),
            },
        );
    }

    /// Reacts to one event of `WHISTLE_EVENTS`.
    fn on_event(self: &Arc<Self>, event: &v1::Event) {
        match &event.body {
            Some(EventBody::IncidentReported(reported)) => {
                let Some(report) = &reported.report else {
                    return;
                };
                if !report.report_id.starts_with(&self.prefix) {
                    return;
                }
                self.board(|b| {
                    b.incidents.insert(
                        event.incident_id.clone(),
                        (1, commands::status_name(reported.status)),
                    );
                    *b.events.entry(event.kind.clone()).or_default() += 1;
                });
                let level = level_of(reported.level);
                let window = self
                    .policy
                    .category(&report.category)
                    .and_then(|c| self.policy.window(c, level));
                self.hold(event, level, 1, &report.title, &report.category, window);
            }
            Some(EventBody::ReportAttached(attached)) => {
                let ours = attached
                    .report
                    .as_ref()
                    .is_some_and(|r| r.report_id.starts_with(&self.prefix));
                if ours {
                    self.board(|b| b.attached += 1);
                }
            }
            Some(EventBody::ReportRejected(rejected))
                if rejected.report_id.starts_with(&self.prefix) =>
            {
                self.board(|b| b.rejected += 1);
                say(
                    "上报被拒",
                    &rejected.reporter_id,
                    &format!("{}: {}", rejected.reason, rejected.message),
                );
            }
            Some(EventBody::IncidentChanged(changed)) => {
                let ours = self.board(|b| {
                    let ours = b.is_ours(&event.incident_id);
                    if ours {
                        b.saw(&event.incident_id, changed.version, changed.status);
                        *b.events.entry(event.kind.clone()).or_default() += 1;
                    }
                    ours
                });
                if ours {
                    self.on_change(event, changed);
                }
            }
            _ => {}
        }
    }

    fn on_change(self: &Arc<Self>, event: &v1::Event, changed: &v1::IncidentChanged) {
        let handling = changed.status == v1::IncidentStatus::Handling as i32;
        match event.kind.as_str() {
            "incident.escalated" | "incident.reopened" if handling => self.hold(
                event,
                level_of(changed.level),
                changed.version,
                &changed.title,
                &changed.category,
                since_now(changed.level_due_at.as_ref().map(|t| (t.seconds, t.nanos))),
            ),
            "incident.resolved" => self.resolved(event, changed),
            "task.dispatched" => self.dispatched(event, changed),
            "task.returned" => self.returned(event, changed),
            "incident.extension_requested" => self.extension_requested(event, changed),
            "task.disputed" => self.disputed(event, changed),
            "task.dispute_rejected" => self.dispute_rejected(event, changed),
            "incident.ledger_proposed" => self.ledger_proposed(event, changed),
            "incident.ledger_review_due" => self.ledger_review_due(event, changed),
            "incident.ledger_denied" | "incident.ledger_returned" => {
                self.ledger_left(event, changed)
            }
            _ => {}
        }
    }

    /// Follows one ordered consumer until the run stops.
    async fn follow(self: Arc<Self>, mut messages: consumer::pull::Ordered, filter: &'static str) {
        loop {
            let message = tokio::select! {
                _ = self.stop.cancelled() => return,
                next = messages.next() => next,
            };
            match message {
                Some(Ok(message)) => match v1::Event::decode(message.payload.clone()) {
                    Ok(event) => self.on_event(&event),
                    Err(e) => eprintln!("{filter}: not a whistle.v1.Event ({e}), skipped"),
                },
                Some(Err(e)) => {
                    eprintln!("{filter}: {e}; the ordered consumer resumes");
                    if !self.sleep(Duration::from_millis(500)).await {
                        return;
                    }
                }
                None => {
                    eprintln!("{filter}: the event stream ended");
                    return;
                }
            }
        }
    }

    /// Grid workers file reports at `rate` per second until `until` (or the run stops).
    async fn report(self: Arc<Self>, mut feed: Feed, rate: f64, until: Option<Duration>) {
        let js = jetstream::new(self.client.clone());
        let start = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let elapsed = start.elapsed();
            if until.is_some_and(|until| elapsed >= until) {
                say(
                    "停止上报",
                    "",
                    "grid workers stop filing; the others keep playing",
                );
                return;
            }
            let due = (elapsed.as_secs_f64() * rate) as u64;
            while sent < due {
                sent += 1;
                let out = feed.next(0.0);
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, out.report_id.as_str());
                if out.json {
                    headers.insert("Content-Type", "application/json");
                }
                let published = js
                    .publish_with_headers(
                        whistle_wire::subject::report(&out.grid),
                        headers,
                        out.payload.into(),
                    )
                    .await;
                let acked = match published {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let what = format!(
                    "{} [{}] 「{}」",
                    self.names.place_path(&[
                        out.grid
                            .at_level(Level::District)
                            .as_ref()
                            .map_or("", |c| c.as_str()),
                        out.grid
                            .at_level(Level::Street)
                            .as_ref()
                            .map_or("", |c| c.as_str()),
                        out.grid
                            .at_level(Level::Community)
                            .as_ref()
                            .map_or("", |c| c.as_str()),
                    ]),
                    self.names.category(&out.category),
                    out.title
                );
                match acked {
                    Ok(()) => {
                        self.board(|b| b.reports += 1);
                        say("上报", &out.reporter_id, &what);
                    }
                    Err(e) => {
                        self.board(|b| b.publish_errors += 1);
                        say("✗上报", &out.reporter_id, &format!("{what} — {e}"));
                    }
                }
            }
        }
    }
}

/// The level of an event's wire value; an unknown one counts as the top.
pub(crate) fn level_of(level: i32) -> Level {
    whistle_wire::convert::level_from_proto(level).unwrap_or(Level::City)
}

/// Whether whistle-dispatch answers on NATS (its micro service responds to `$SRV.PING`).
async fn dispatch_is_up(client: &async_nats::Client) -> bool {
    let ping = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(Duration::from_secs(3)));
    client
        .send_request(ServiceRequest::Ping.subject(DISPATCH_SERVICE), ping)
        .await
        .is_ok()
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be positive"
    );
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let client = crate::door::nats_admin(conn).await?;
    anyhow::ensure!(
        dispatch_is_up(&client).await,
        "whistle-dispatch does not answer on {} (no responders to $SRV.PING): start it first",
        conn.nats_url
    );
    let js = jetstream::new(client.clone());
    // Both consumers exist before the first report, so no event of this run is missed.
    let [incident_events, task_events] = follow_new_events(&js).await?;

    let prefix = format!(
        "sim-{:x}-{:x}-",
        seed & 0xff_ffff,
        Utc::now().timestamp_millis()
    );
    // The fast categories, and now and then one the policy lets volunteers take, so that
    // communities have incidents to offer their Party members (社区派单).
    let volunteer_categories = policy.volunteers().categories.clone();
    let feed = Feed::weighted(
        &policy,
        seed,
        prefix.trim_end_matches('-').to_owned(),
        |category| {
            plan::category_weight(category).max(u32::from(
                volunteer_categories.contains(category.code.as_str()),
            ))
        },
    );
    let names = Names::new(&policy);
    eprintln!(
        "simulate: policy {} (report-in {} s, follow-up {} s), {} reports/s, seed {seed}{} (Ctrl-C to stop)",
        policy.version(),
        policy.accept_deadline().num_seconds(),
        policy.follow_up_window().num_seconds(),
        args.rate,
        match args.duration {
            Some(d) => format!(", reports for {d:?} then {:?} more", args.drain),
            None => String::new(),
        }
    );
    let sim = Arc::new(Sim {
        commands: CommandClient::new(client.clone()),
        client,
        policy,
        names,
        rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed)),
        board: Mutex::default(),
        ledger_tasks: Mutex::default(),
        volunteers: party::Volunteers::ordos(),
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        prefix,
    });
    sim.tracker
        .spawn(sim.clone().follow(incident_events, ALL_INCIDENT_EVENTS));
    sim.tracker
        .spawn(sim.clone().follow(task_events, ALL_TASK_EVENTS));
    sim.tracker
        .spawn(sim.clone().report(feed, args.rate, args.duration));
    if !args.no_devices {
        let devices_stop = sim.stop.child_token();
        if let Some(duration) = args.duration {
            // The devices stop filing with the grid workers.
            let stop = devices_stop.clone();
            sim.tracker.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(duration) => stop.cancel(),
                }
            });
        }
        sim.tracker.spawn(devices::play(
            conn.database_url.clone(),
            conn.audit_actor(),
            sim.client.clone(),
            sim.prefix.clone(),
            devices_stop,
        ));
    }
    // One small wish for about every twenty reports.
    sim.tracker.spawn(
        sim.clone()
            .wishes(Duration::from_secs_f64(20.0 / args.rate), args.duration),
    );
    {
        let sim = sim.clone();
        let every = args.summary_every.max(Duration::from_secs(1));
        sim.tracker.clone().spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = sim.stop.cancelled() => return,
                    _ = ticker.tick() => println!(
                        "── {} {}",
                        Local::now().format("%H:%M:%S"),
                        sim.board(|b| b.summary())
                    ),
                }
            }
        });
    }

    let end = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d + args.drain).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("stopping: Ctrl-C"),
        _ = end => eprintln!("stopping: --duration and --drain are over"),
    }
    sim.stop.cancel();
    sim.tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), sim.tracker.wait())
        .await
        .is_err()
    {
        eprintln!("some tasks did not stop within 5 s");
    }
    println!(
        "══ {} 结束: {}",
        Local::now().format("%H:%M:%S"),
        sim.board(|b| b.summary())
    );
    let (publish_errors, rejected) = sim.board(|b| (b.publish_errors, b.rejected));
    if publish_errors + rejected > 0 {
        println!("publish errors {publish_errors}, reports rejected {rejected}");
    }
    Ok(())
}

/// Ordered consumers of `WHISTLE_EVENTS`' incident and task events from now on, in that order.
pub(crate) async fn follow_new_events(
    js: &jetstream::Context,
) -> anyhow::Result<[consumer::pull::Ordered; 2]> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .context("opening WHISTLE_EVENTS")?;
    let follow = |filter: &'static str| {
        let stream = &stream;
        async move {
            let config = consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            };
            anyhow::Ok(
                stream
                    .create_consumer(config)
                    .await
                    .with_context(|| format!("creating an ordered consumer on {filter}"))?
                    .messages()
                    .await?,
            )
        }
    };
    Ok([
        follow(ALL_INCIDENT_EVENTS).await?,
        follow(ALL_TASK_EVENTS).await?,
    ])
}

/// The departments with a live task (neither returned nor cancelled) in the current round.
fn live_departments(changed: &v1::IncidentChanged) -> Vec<String> {
    changed
        .tasks
        .iter()
        .filter(|t| t.round == changed.reopen_count)
        .filter(|t| {
            !matches!(
                v1::TaskStatus::try_from(t.status),
                Ok(v1::TaskStatus::Returned | v1::TaskStatus::Cancelled | v1::TaskStatus::Released)
            )
        })
        .map(|t| t.department_code.clone())
        .collect()
}
