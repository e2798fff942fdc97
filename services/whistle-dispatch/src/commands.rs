//! Commands over NATS request/reply on `whistle.cmd.{verb}`, served as the NATS micro service
//! `whistle-dispatch` (so `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` answer). Replicas share the
//! endpoints through the service's queue group.
//!
//! Every command is checked (decodes, names its verb, a known actor, an existing incident, the
//! expected version), applied by the state machine, and committed with its reply: a retry with
//! the same command id gets the first reply and changes nothing.

use std::sync::Arc;

use async_nats::service::ServiceExt;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::{
    incident::{self, Actor, Input, Rejection, ReturnReason, Satisfaction},
    DepartmentCode, PersonId, ReportId,
};
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
use whistle_store::incidents;

use crate::{engine, Catalog, Error, Shared};

pub const SERVICE_NAME: &str = "whistle-dispatch";
pub const SUBJECT_PREFIX: &str = "whistle.cmd";
pub const VERBS: [&str; 8] = [
    "accept",
    "return",
    "resolve",
    "escalate",
    "verify",
    "supervise",
    "reassign",
    "comment",
];

/// `Content-Type: application/json` on a request.
fn wants_json(message: &async_nats::Message) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("Content-Type"))
        .is_some_and(|v| v.as_str().starts_with("application/json"))
}

/// The verb of a command body: the last token of the subject it is sent on.
pub fn verb(body: &Body) -> &'static str {
    match body {
        Body::Accept(_) => "accept",
        Body::Return(_) => "return",
        Body::Resolve(_) => "resolve",
        Body::Escalate(_) => "escalate",
        Body::Verify(_) => "verify",
        Body::Supervise(_) => "supervise",
        Body::Reassign(_) => "reassign",
        Body::Comment(_) => "comment",
    }
}

pub(crate) struct Commands {
    pub shared: Arc<Shared>,
    pub client: async_nats::Client,
    pub relay_wakeup: Arc<Notify>,
    pub timer_wakeup: Arc<Notify>,
}

impl Commands {
    /// Registers the service and answers requests until shutdown.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        let service = self
            .client
            .service_builder()
            .description("Whistle dispatch: commands on incidents and department tasks")
            .stats_handler({
                let metrics = self.shared.metrics.clone();
                move |_endpoint, _stats| metrics.snapshot()
            })
            .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| Error::Nats(format!("starting the {SERVICE_NAME} service: {e}")))?;
        let group = service.group(SUBJECT_PREFIX);
        let mut endpoints = Vec::with_capacity(VERBS.len());
        for verb in VERBS {
            let endpoint = group
                .endpoint(verb)
                .await
                .map_err(|e| Error::Nats(format!("adding endpoint {verb}: {e}")))?;
            endpoints.push(endpoint);
        }
        let this = Arc::new(self);
        Ok(tokio::spawn(async move {
            let mut requests = futures::stream::select_all(endpoints);
            loop {
                let request = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    request = requests.next() => match request {
                        Some(request) => request,
                        None => break,
                    },
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let json = wants_json(&request.message);
                    let reply = this.handle(&request.message, json).await;
                    // A client that speaks JSON gets its answer in JSON.
                    let bytes = if json {
                        whistle_proto::to_json(&reply)
                            .map(String::into_bytes)
                            .unwrap_or_default()
                    } else {
                        reply.encode_to_vec()
                    };
                    if let Err(e) = request.respond(Ok(Bytes::from(bytes))).await {
                        debug!(error = %e, "command reply not sent");
                    }
                });
            }
            if let Err(e) = service.stop().await {
                debug!(error = %e, "stopping the service");
            }
            info!("commands stopped");
        }))
    }

    async fn handle(&self, message: &async_nats::Message, json: bool) -> v1::CommandReply {
        let verb = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        let command = if json {
            whistle_proto::from_json::<v1::Command>(&message.payload).map_err(|e| e.to_string())
        } else {
            v1::Command::decode(message.payload.clone()).map_err(|e| e.to_string())
        };
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                return error(
                    CommandErrorCode::InvalidArgument,
                    format!("not a whistle.v1.Command: {e}"),
                )
            }
        };
        match self.execute(verb, command).await {
            Ok(reply) => reply,
            Err(e) => {
                warn!(error = %e, verb, "command failed");
                error(CommandErrorCode::Unavailable, format!("dispatch could not apply the command now ({e}); retry with the same command_id"))
            }
        }
    }

    async fn execute(&self, verb: &str, command: v1::Command) -> Result<v1::CommandReply, Error> {
        let catalog = self.shared.catalog.load();
        let parsed = match parse(verb, &command, &catalog) {
            Ok(parsed) => parsed,
            Err(reply) => return Ok(reply),
        };
        let now = self.shared.clock.now();
        let mut tx = self.shared.pool.begin().await?;
        if let Some(reply) = incidents::command_reply(&mut tx, &command.command_id).await? {
            return Ok(
                v1::CommandReply::decode(reply.as_slice()).unwrap_or_else(|_| {
                    error(CommandErrorCode::Unavailable, "stored reply unreadable")
                }),
            );
        }
        let Some(locked) = incidents::lock(&mut tx, parsed.incident_id).await? else {
            return Ok(error(
                CommandErrorCode::NotFound,
                format!("no incident {}", parsed.incident_id),
            ));
        };
        if command.expected_version != 0 && command.expected_version != locked.state.version {
            return Ok(error(
                CommandErrorCode::Stale,
                format!(
                    "incident is at version {}, not {}",
                    locked.state.version, command.expected_version
                ),
            ));
        }
        let task = parsed.task;
        let input = Input::Command(parsed.actor, parsed.command);
        let state = match engine::transition(
            &mut tx,
            &catalog,
            &locked,
            input,
            &command.actor_id,
            None,
            now,
        )
        .await?
        {
            Ok(state) => state,
            Err(rejection) => return Ok(refusal(&rejection)),
        };
        // A reassignment's task is the one it dispatched.
        let task = if verb == "reassign" {
            state.tasks.last().map(|t| t.id)
        } else {
            task
        };
        let reply = ok_reply(parsed.incident_id, &state, task, now);
        incidents::record_command(
            &mut tx,
            &command.command_id,
            parsed.incident_id,
            verb,
            &command.actor_id,
            &reply.encode_to_vec(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.relay_wakeup.notify_one();
        self.timer_wakeup.notify_one();
        Ok(reply)
    }
}

struct Parsed {
    incident_id: Uuid,
    actor: Actor,
    command: incident::Command,
    task: Option<u32>,
}

fn error(code: CommandErrorCode, message: impl Into<String>) -> v1::CommandReply {
    v1::CommandReply {
        outcome: Some(Outcome::Error(v1::CommandError {
            code: code as i32,
            message: message.into(),
        })),
    }
}

fn refusal(rejection: &Rejection) -> v1::CommandReply {
    let code = match rejection {
        Rejection::Forbidden(_) => CommandErrorCode::Forbidden,
        Rejection::InvalidTransition(_) => CommandErrorCode::InvalidTransition,
        Rejection::InvalidArgument(_) => CommandErrorCode::InvalidArgument,
        Rejection::NotFound(_) => CommandErrorCode::NotFound,
    };
    error(code, rejection.to_string())
}

fn ok_reply(
    incident_id: Uuid,
    state: &incident::Incident,
    task: Option<u32>,
    now: DateTime<Utc>,
) -> v1::CommandReply {
    let task = task.and_then(|id| state.task(id));
    v1::CommandReply {
        outcome: Some(Outcome::Ok(v1::CommandOk {
            incident_id: incident_id.to_string(),
            version: state.version,
            status: crate::convert::status_to_proto(state.status) as i32,
            level: crate::convert::level_to_proto(state.level) as i32,
            task_id: task.map(|t| t.id.to_string()).unwrap_or_default(),
            task_status: task.map_or(0, |t| crate::convert::task_status_to_proto(t.status) as i32),
            applied_at: Some(crate::convert::timestamp(now)),
        })),
    }
}

/// Turns a wire command into the domain's, or the reply that refuses it.
fn parse(verb: &str, command: &v1::Command, catalog: &Catalog) -> Result<Parsed, v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    command
        .command_id
        .parse::<ReportId>()
        .map_err(|e| invalid(format!("command_id: {e}")))?;
    let body = command
        .body
        .as_ref()
        .ok_or_else(|| invalid("the command has no body".into()))?;
    let body_verb = self::verb(body);
    if body_verb != verb {
        return Err(invalid(format!(
            "a {body_verb} command was sent to whistle.cmd.{verb}"
        )));
    }
    let incident_id: Uuid = command.incident_id.parse().map_err(|_| {
        invalid(format!(
            "incident_id {:?} is not a UUID",
            command.incident_id
        ))
    })?;
    let actor_id: PersonId = command
        .actor_id
        .parse()
        .map_err(|e| invalid(format!("actor_id: {e}")))?;
    let person = catalog.org.person(&actor_id).ok_or_else(|| {
        error(
            CommandErrorCode::Forbidden,
            format!("{actor_id} is not a known person"),
        )
    })?;
    let actor = Actor::from(person);

    let task_id = |raw: &str| -> Result<u32, v1::CommandReply> {
        raw.parse::<u32>()
            .map_err(|_| invalid(format!("task_id {raw:?} is not a task number")))
    };
    let optional_task = |raw: &str| -> Result<Option<u32>, v1::CommandReply> {
        if raw.is_empty() {
            Ok(None)
        } else {
            task_id(raw).map(Some)
        }
    };
    let department = |raw: &str| -> Result<DepartmentCode, v1::CommandReply> {
        raw.parse().map_err(|e| invalid(format!("department: {e}")))
    };
    let (command, task) = match body {
        Body::Accept(a) => {
            let task = task_id(&a.task_id)?;
            (
                incident::Command::Accept {
                    task,
                    note: a.note.clone(),
                },
                Some(task),
            )
        }
        Body::Return(r) => {
            let task = task_id(&r.task_id)?;
            let reason = match v1::ReturnReason::try_from(r.reason) {
                Ok(v1::ReturnReason::NotOurDuty) => ReturnReason::NotOurDuty,
                Ok(v1::ReturnReason::WrongArea) => ReturnReason::WrongArea,
                Ok(v1::ReturnReason::UnclearOwnership) => ReturnReason::UnclearOwnership,
                Ok(v1::ReturnReason::OverlappingDuties) => ReturnReason::OverlappingDuties,
                Ok(v1::ReturnReason::InsufficientInformation) => {
                    ReturnReason::InsufficientInformation
                }
                _ => return Err(invalid("a return needs a reason code".into())),
            };
            (
                incident::Command::Return {
                    task,
                    reason,
                    note: r.note.clone(),
                },
                Some(task),
            )
        }
        Body::Resolve(r) => {
            let task = optional_task(&r.task_id)?;
            (
                incident::Command::Resolve {
                    task,
                    note: r.note.clone(),
                },
                task,
            )
        }
        Body::Escalate(e) => {
            let departments = e
                .department_codes
                .iter()
                .map(|d| department(d))
                .collect::<Result<_, _>>()?;
            (
                incident::Command::Escalate {
                    note: e.note.clone(),
                    departments,
                },
                None,
            )
        }
        Body::Verify(v) => {
            let satisfaction = match v1::Satisfaction::try_from(v.satisfaction) {
                Ok(v1::Satisfaction::Satisfied) => Satisfaction::Satisfied,
                Ok(v1::Satisfaction::BasicallySatisfied) => Satisfaction::BasicallySatisfied,
                Ok(v1::Satisfaction::Unsatisfied) => Satisfaction::Unsatisfied,
                _ => return Err(invalid("a follow-up needs the resident's verdict".into())),
            };
            (
                incident::Command::Verify {
                    satisfaction,
                    note: v.note.clone(),
                },
                None,
            )
        }
        Body::Supervise(s) => {
            let task = optional_task(&s.task_id)?;
            (
                incident::Command::Supervise {
                    task,
                    note: s.note.clone(),
                },
                task,
            )
        }
        Body::Reassign(r) => {
            let task = task_id(&r.task_id)?;
            let to = department(&r.to_department_code)?;
            (
                incident::Command::Reassign {
                    task,
                    to,
                    note: r.note.clone(),
                },
                None,
            )
        }
        Body::Comment(c) => (
            incident::Command::Comment {
                text: c.text.clone(),
            },
            None,
        ),
    };
    Ok(Parsed {
        incident_id,
        actor,
        command,
        task,
    })
}
