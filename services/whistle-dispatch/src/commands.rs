//! Commands over NATS request/reply on `whistle.cmd.{verb}.{person}`, served as the NATS micro
//! service `whistle-dispatch` (so `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` answer). Replicas
//! share the endpoints through the service's queue group.
//!
//! **The actor is the identity:** nats-server lets a person's connection publish only on its own
//! person's subjects, so a command whose `actor_id` is not the subject's person is refused
//! `forbidden` before anything is read or written.
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
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};
use uuid::Uuid;
use whistle_domain::{
    incident::{
        self, Actor, Input, LedgerReason, Rejection, ReturnReason, Satisfaction, RESIDENT_ACTOR,
    },
    photo::{PhotoId, MAX_PHOTOS},
    DepartmentCode, PersonId, ReportId,
};
use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
use whistle_store::incidents::{self, Applied};
use whistle_wire::{
    headers,
    names::DISPATCH_SERVICE,
    subject::{self, COMMAND_GROUP},
    Verb,
};

use crate::{contacts::Contacts, engine, Catalog, Error, Shared};

pub(crate) struct Commands {
    pub shared: Arc<Shared>,
    pub client: async_nats::Client,
    pub relay_wakeup: Arc<Notify>,
    pub timer_wakeup: Arc<Notify>,
    /// Commands per acting person.
    pub limiter: whistle_auth::RateLimiter<String>,
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
            .start(DISPATCH_SERVICE, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|source| Error::Service {
                what: format!("starting the {DISPATCH_SERVICE} service"),
                source,
            })?;
        let group = service.group(COMMAND_GROUP);
        let mut endpoints = Vec::with_capacity(Verb::ALL.len());
        for verb in Verb::ALL {
            // `{verb}.>`: every person's commands of the verb, the person after it.
            let endpoint = group
                .endpoint_builder()
                .name(verb.as_str())
                .add(format!("{verb}.>"))
                .await
                .map_err(|source| Error::Service {
                    what: format!("adding endpoint {verb}"),
                    source,
                })?;
            endpoints.push(endpoint);
        }
        let this = Arc::new(self);
        // Handlers run concurrently; the loop waits for every one before it returns, so a command
        // committing during shutdown has its events in the outbox before the relay's last drain.
        let handlers = TaskTracker::new();
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
                handlers.spawn(async move {
                    let started = std::time::Instant::now();
                    let json = headers::wants_json(request.message.headers.as_ref());
                    let reply = this.handle(&request.message, json).await;
                    let outcome = crate::metrics::outcome_label(&reply);
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
                    this.shared.metrics.record_command(
                        verb_label(request.message.subject.as_str()),
                        outcome,
                        started.elapsed(),
                    );
                });
            }
            handlers.close();
            handlers.wait().await;
            if let Err(e) = service.stop().await {
                debug!(error = %e, "stopping the service");
            }
            info!("commands stopped");
        }))
    }

    async fn handle(&self, message: &async_nats::Message, json: bool) -> v1::CommandReply {
        // Endpoints exist only for the contract's verbs, but a subject may lack a valid person.
        let (verb, person) = match subject::parse_command(message.subject.as_str()) {
            Ok(parsed) => parsed,
            Err(e) => return error(CommandErrorCode::InvalidArgument, e.to_string()),
        };
        let command = match decode_bytes(&message.payload, json) {
            Ok(command) => command,
            Err(reply) => return reply,
        };
        if let Err(reply) = check_actor(person, &command) {
            warn!(%verb, subject_person = person, actor = %command.actor_id, "forged actor refused");
            return reply;
        }
        let catalog = self.shared.catalog.load();
        // A resident is known by their report's tracking code, and limited per report.
        let resident = if person == RESIDENT_ACTOR {
            match self.resident(verb, &command, &catalog).await {
                Ok(report) => Some(report),
                Err(reply) => return reply,
            }
        } else {
            None
        };
        let limited_as = match &resident {
            Some(report) => format!("{RESIDENT_ACTOR}:{report}"),
            None => command.actor_id.clone(),
        };
        if let Err(limited) = self.limiter.take(&limited_as) {
            debug!(%verb, person, "command rate limited");
            return error(
                CommandErrorCode::RateLimited,
                format!("{person} sent {limited}"),
            );
        }
        if verb.is_people() {
            let token_id = headers::token_id(message.headers.as_ref());
            return self.people(verb, &catalog, command, token_id).await;
        }
        // An adoption opens an incident rather than acting on one (adopt.rs).
        if verb == Verb::Adopt {
            return self.adopt(&catalog, command).await;
        }
        if verb.is_volunteer() {
            return self.volunteer(verb, &catalog, command).await;
        }
        let verb = verb.as_str();
        let parsed = match parse(verb, &command, &catalog, resident) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        match self.execute(verb, &catalog, command, parsed).await {
            Ok(reply) => reply,
            Err(e) => {
                warn!(error = %whistle_wire::chain(&e), verb, "command failed");
                error(CommandErrorCode::Unavailable, format!("dispatch could not apply the command now ({e}); retry with the same command_id"))
            }
        }
    }

    /// The report whose tracking code a resident's answer carries, checked: a follow-up
    /// (`verify`) on that report's incident, with a code that is known and not expired. Any
    /// other code is `not_found`, whatever the reason, as on the public page.
    async fn resident(
        &self,
        verb: Verb,
        command: &v1::Command,
        catalog: &Catalog,
    ) -> Result<ReportId, v1::CommandReply> {
        let Some(Body::Verify(verify)) = command.body.as_ref().filter(|_| verb == Verb::Verify)
        else {
            return Err(error(
                CommandErrorCode::Forbidden,
                "a resident only answers the follow-up (verify)",
            ));
        };
        let not_found = || {
            error(
                CommandErrorCode::NotFound,
                "no such tracking code, or it expired",
            )
        };
        let Contacts::Sealed(keyring) = &self.shared.contacts else {
            return Err(not_found());
        };
        let found = whistle_store::tracking::find(
            &self.shared.pool,
            keyring,
            &verify.tracking_code,
            catalog.policy.retention().tracking_codes,
            self.shared.clock.now(),
        )
        .await
        .map_err(|e| {
            warn!(error = %whistle_wire::chain(&e), "looking up a tracking code failed");
            error(
                CommandErrorCode::Unavailable,
                "dispatch could not check the tracking code now; retry with the same command_id",
            )
        })?
        .ok_or_else(not_found)?;
        if found.incident_id.to_string() != command.incident_id {
            return Err(not_found());
        }
        found.report_id.parse().map_err(|_| not_found())
    }

    async fn execute(
        &self,
        verb: &str,
        catalog: &Catalog,
        command: v1::Command,
        parsed: Parsed,
    ) -> Result<v1::CommandReply, Error> {
        let now = self.shared.clock.now();
        let mut parsed = parsed;
        // A leader acts on the areas paired with them, read before the incident's transaction
        // (no lock taken, so the command's lock order is unchanged).
        if let Actor::Leader { id, paired } = &mut parsed.actor {
            let mut conn = self.shared.pool.acquire().await?;
            *paired = whistle_store::leaders::areas_of(&mut conn, id.as_str()).await?;
        }
        let mut tx = self.shared.pool.begin().await?;
        if let Some(applied) = incidents::command_reply(&mut tx, &command.command_id).await? {
            return Ok(replayed(&applied, verb, &command));
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
        let photos = parsed.photos;
        let input = Input::Command(parsed.actor, parsed.command);
        let state = match engine::transition(
            &mut tx,
            catalog,
            &locked,
            input,
            &command.actor_id,
            &photos,
            now,
        )
        .await?
        {
            Ok(state) => state,
            Err(rejection) => return Ok(refusal(&rejection)),
        };
        // Checked once the state machine accepted the resolution, so a refusal it would give
        // (forbidden, wrong state) comes first; returning drops the transaction unapplied.
        let requires_photo = catalog
            .policy
            .category(locked.state.category.as_str())
            .is_some_and(|c| c.after_photo_required);
        if verb == Verb::Resolve.as_str() && requires_photo && photos.is_empty() {
            return Ok(error(
                CommandErrorCode::PhotoRequired,
                format!(
                    "category {} requires an after photo with a resolution",
                    locked.state.category
                ),
            ));
        }
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
            Some(parsed.incident_id),
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

/// A command as the engine takes it: who acts, on which incident, doing what.
#[derive(Debug)]
pub struct Parsed {
    incident_id: Uuid,
    actor: Actor,
    command: incident::Command,
    task: Option<u32>,
    /// A resolution's "after" photos.
    photos: Vec<PhotoId>,
}

/// The verb of a command subject as a metric label (`whistle.cmd.{verb}.…`); the endpoints take
/// only the contract's verbs, so anything else is a malformed subject.
fn verb_label(subject: &str) -> &'static str {
    subject
        .strip_prefix(COMMAND_GROUP)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split('.').next())
        .and_then(|verb| verb.parse::<Verb>().ok())
        .map_or("invalid", Verb::as_str)
}

/// The answer to a command whose id was applied before: the first outcome to the same sender's
/// retry of the same verb, and a refusal to anything else — an id never hands one person's
/// outcome to another, nor applies a different command as a retry.
pub(crate) fn replayed(applied: &Applied, verb: &str, command: &v1::Command) -> v1::CommandReply {
    if applied.actor_id != command.actor_id || applied.verb != verb {
        return error(
            CommandErrorCode::InvalidArgument,
            format!(
                "command_id {:?} was already used for another command; use a new id for each command",
                command.command_id
            ),
        );
    }
    v1::CommandReply::decode(applied.reply.as_slice())
        .unwrap_or_else(|_| error(CommandErrorCode::Unavailable, "stored reply unreadable"))
}

/// The envelope of a command that names no incident (the people's, the volunteers', an
/// adoption): a valid command id, its verb's body, no incident nor expected version, and the
/// actor's id, which the caller checks. `instead` says what the verb does instead, for the error.
pub(crate) fn incidentless<'c>(
    verb: Verb,
    command: &'c v1::Command,
    instead: &str,
) -> Result<(&'c Body, PersonId), v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    let body = envelope(verb.as_str(), command)?;
    if !command.incident_id.is_empty() || command.expected_version != 0 {
        return Err(invalid(format!(
            "{verb} {instead}: leave incident_id empty and expected_version 0"
        )));
    }
    let actor = command
        .actor_id
        .parse()
        .map_err(|e| invalid(format!("actor_id: {e}")))?;
    Ok((body, actor))
}

pub(crate) fn error(code: CommandErrorCode, message: impl Into<String>) -> v1::CommandReply {
    v1::CommandReply {
        outcome: Some(Outcome::Error(v1::CommandError {
            code: code as i32,
            message: message.into(),
            holdings: None,
        })),
    }
}

pub(crate) fn refusal(rejection: &Rejection) -> v1::CommandReply {
    let code = match rejection {
        Rejection::Forbidden(_) => CommandErrorCode::Forbidden,
        Rejection::InvalidTransition(_) => CommandErrorCode::InvalidTransition,
        Rejection::InvalidArgument(_) => CommandErrorCode::InvalidArgument,
        Rejection::NotFound(_) => CommandErrorCode::NotFound,
    };
    error(code, rejection.to_string())
}

pub(crate) fn ok_reply(
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
            status: whistle_wire::convert::status_to_proto(state.status) as i32,
            level: whistle_wire::convert::level_to_proto(state.level) as i32,
            task_id: task.map(|t| t.id.to_string()).unwrap_or_default(),
            task_status: task.map_or(0, |t| {
                whistle_wire::convert::task_status_to_proto(t.status) as i32
            }),
            applied_at: Some(whistle_wire::convert::timestamp(now)),
            person: None,
            offer: None,
        })),
    }
}

/// Refuses a command whose actor is not the person its subject names (the one nats-server
/// authenticated): `forbidden`, before the database is touched.
pub fn check_actor(person: &str, command: &v1::Command) -> Result<(), v1::CommandReply> {
    if command.actor_id == person {
        return Ok(());
    }
    Err(error(
        CommandErrorCode::Forbidden,
        format!(
            "actor_id {:?} is not the sender {person:?}: a command acts as the person of its subject",
            command.actor_id
        ),
    ))
}

/// Decodes a command as it arrives on `whistle.cmd.{verb}.{person}` (protobuf, or proto3 JSON) and checks it
/// against the org tree and policy; a refusal is the reply to send. Pure (no I/O), so any bytes can
/// be thrown at it (fuzz/ does).
pub fn decode(
    verb: &str,
    payload: &[u8],
    json: bool,
    catalog: &Catalog,
) -> Result<(v1::Command, Parsed), v1::CommandReply> {
    let command = decode_bytes(payload, json)?;
    let parsed = parse(verb, &command, catalog, None)?;
    Ok((command, parsed))
}

/// The command in a request's bytes (protobuf, or proto3 JSON), or the reply refusing them.
fn decode_bytes(payload: &[u8], json: bool) -> Result<v1::Command, v1::CommandReply> {
    if json {
        whistle_proto::from_json::<v1::Command>(payload).map_err(|e| e.to_string())
    } else {
        v1::Command::decode(payload).map_err(|e| e.to_string())
    }
    .map_err(|e| {
        error(
            CommandErrorCode::InvalidArgument,
            format!("not a whistle.v1.Command: {e}"),
        )
    })
}

/// What every command must carry, whatever it acts on: a valid command id and a body of the verb
/// of its subject (`verb`).
fn envelope<'c>(verb: &str, command: &'c v1::Command) -> Result<&'c Body, v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    command
        .command_id
        .parse::<ReportId>()
        .map_err(|e| invalid(format!("command_id: {e}")))?;
    let body = command
        .body
        .as_ref()
        .ok_or_else(|| invalid("the command has no body".into()))?;
    let body_verb = Verb::of(body).as_str();
    if body_verb != verb {
        return Err(invalid(format!(
            "a {body_verb} command was sent to whistle.cmd.{verb}.*"
        )));
    }
    Ok(body)
}

/// `resident`: the report whose checked tracking code the command carries; the actor is then
/// that report's resident, else the person of `actor_id`.
fn parse(
    verb: &str,
    command: &v1::Command,
    catalog: &Catalog,
    resident: Option<ReportId>,
) -> Result<Parsed, v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    let body = envelope(verb, command)?;
    let incident_id: Uuid = command.incident_id.parse().map_err(|_| {
        invalid(format!(
            "incident_id {:?} is not a UUID",
            command.incident_id
        ))
    })?;
    let actor = match resident {
        Some(report) => Actor::Resident { report },
        None => {
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
            Actor::from(person)
        }
    };
    let is_resident = matches!(actor, Actor::Resident { .. });

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
    let mut photos = Vec::new();
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
            if r.photo_ids.len() > MAX_PHOTOS {
                return Err(invalid(format!(
                    "{} photos; at most {MAX_PHOTOS}",
                    r.photo_ids.len()
                )));
            }
            photos = r
                .photo_ids
                .iter()
                .map(|p| p.parse::<PhotoId>().map_err(|e| invalid(e.to_string())))
                .collect::<Result<_, _>>()?;
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
            let assisting = e
                .assisting_department_codes
                .iter()
                .map(|d| department(d))
                .collect::<Result<_, _>>()?;
            (
                incident::Command::Escalate {
                    note: e.note.clone(),
                    departments,
                    assisting,
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
            if !v.tracking_code.is_empty() && !is_resident {
                return Err(invalid(
                    "tracking_code is for a resident's answer, sent as ~resident".into(),
                ));
            }
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
        Body::RequestExtension(r) => {
            let task = optional_task(&r.task_id)?;
            let until = r.until.as_ref().ok_or_else(|| {
                invalid("an extension request needs the deadline asked for (until)".into())
            })?;
            let until = whistle_wire::convert::timestamp_from_proto(until)
                .ok_or_else(|| invalid("until is not a valid timestamp".into()))?;
            (
                incident::Command::RequestExtension {
                    task,
                    until,
                    reason: r.reason.clone(),
                },
                task,
            )
        }
        Body::DecideExtension(d) => (
            incident::Command::DecideExtension {
                approve: d.approve,
                note: d.note.clone(),
            },
            None,
        ),
        Body::Dispute(d) => {
            let task = task_id(&d.task_id)?;
            let to = department(&d.to_department_code)?;
            (
                incident::Command::Dispute {
                    task,
                    to,
                    reason: d.reason.clone(),
                },
                Some(task),
            )
        }
        // The reply names the disputed task: cancelled when upheld, as it was when rejected.
        Body::DecideDispute(d) => {
            let task = task_id(&d.task_id)?;
            (
                incident::Command::DecideDispute {
                    task,
                    uphold: d.uphold,
                    note: d.note.clone(),
                },
                Some(task),
            )
        }
        Body::SubmitAssist(a) => {
            let task = task_id(&a.task_id)?;
            (
                incident::Command::SubmitAssist {
                    task,
                    note: a.note.clone(),
                },
                Some(task),
            )
        }
        Body::ReleaseAssist(a) => {
            let task = task_id(&a.task_id)?;
            (
                incident::Command::ReleaseAssist {
                    task,
                    note: a.note.clone(),
                },
                Some(task),
            )
        }
        Body::ProposeLedger(l) => {
            let reason = match v1::LedgerReason::try_from(l.reason) {
                Ok(v1::LedgerReason::Planning) => LedgerReason::Planning,
                Ok(v1::LedgerReason::Funding) => LedgerReason::Funding,
                Ok(v1::LedgerReason::Legal) => LedgerReason::Legal,
                Ok(v1::LedgerReason::Other) => LedgerReason::Other,
                _ => {
                    return Err(invalid(
                        "a ledger proposal needs a reason: planning, funding, legal or other"
                            .into(),
                    ))
                }
            };
            if l.responsible.is_empty() {
                return Err(invalid(
                    "a ledger proposal names the responsible unit (a department or an org unit)"
                        .into(),
                ));
            }
            let review_at = l.review_at.as_ref().ok_or_else(|| {
                invalid("a ledger proposal needs its review date (review_at)".into())
            })?;
            let review_at = whistle_wire::convert::timestamp_from_proto(review_at)
                .ok_or_else(|| invalid("review_at is not a valid timestamp".into()))?;
            (
                incident::Command::ProposeLedger {
                    reason,
                    note: l.note.clone(),
                    responsible: l.responsible.clone(),
                    review_at,
                },
                None,
            )
        }
        Body::DecideLedger(d) => (
            incident::Command::DecideLedger {
                approve: d.approve,
                note: d.note.clone(),
            },
            None,
        ),
        Body::ReviewLedger(r) => {
            let extend_to = r
                .extend_to
                .as_ref()
                .map(|at| {
                    whistle_wire::convert::timestamp_from_proto(at)
                        .ok_or_else(|| invalid("extend_to is not a valid timestamp".into()))
                })
                .transpose()?;
            (
                incident::Command::ReviewLedger {
                    extend_to,
                    note: r.note.clone(),
                },
                None,
            )
        }
        Body::CompleteMilestone(m) => (
            incident::Command::CompleteMilestone {
                milestone: m.milestone,
                note: m.note.clone(),
            },
            None,
        ),
        Body::Endorse(e) => (
            incident::Command::Endorse {
                note: e.note.clone(),
            },
            None,
        ),
        // Handled apart (people.rs, adopt.rs, volunteers.rs) before an incident is looked for.
        Body::OnboardPerson(_)
        | Body::ChangePerson(_)
        | Body::OffboardPerson(_)
        | Body::Adopt(_)
        | Body::OfferToVolunteers(_)
        | Body::ClaimOffer(_)
        | Body::ReleaseOffer(_)
        | Body::CompleteOffer(_)
        | Body::ConfirmOffer(_)
        | Body::RateOffer(_)
        | Body::WithdrawOffer(_) => return Err(invalid(format!("{verb} acts on no incident"))),
    };
    Ok(Parsed {
        incident_id,
        actor,
        command,
        task,
        photos,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;
    use whistle_domain::OrgIndex;

    use super::*;

    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::new(
            OrgIndex::build(whistle_domain::ordos::dataset()).unwrap(),
            whistle_domain::policy::builtin("ordos").unwrap(),
        )
    });

    #[test]
    fn a_command_acts_only_as_its_subjects_person() {
        let command = accept();
        assert!(check_actor("li-150602-petitions", &command).is_ok());
        for sender in ["op-150600", "li-150602-petitions.x", ""] {
            let reply = check_actor(sender, &command).unwrap_err();
            let Some(Outcome::Error(error)) = reply.outcome else {
                panic!("{reply:?}");
            };
            assert_eq!(error.code, CommandErrorCode::Forbidden as i32, "{sender}");
        }
    }

    fn accept() -> v1::Command {
        v1::Command {
            command_id: "c-1".into(),
            actor_id: "li-150602-petitions".into(),
            incident_id: Uuid::nil().to_string(),
            expected_version: 0,
            body: Some(Body::Accept(v1::Accept {
                task_id: "1".into(),
                note: String::new(),
            })),
        }
    }

    fn refusal(result: Result<(v1::Command, Parsed), v1::CommandReply>) -> (i32, String) {
        match result.expect_err("refused").outcome {
            Some(Outcome::Error(e)) => (e.code, e.message),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn a_command_decodes_from_protobuf_and_json() {
        let bytes = accept().encode_to_vec();
        let (command, parsed) = decode("accept", &bytes, false, &CATALOG).unwrap();
        assert_eq!(command, accept());
        assert_eq!(parsed.task, Some(1));
        let json = whistle_proto::to_json(&accept()).unwrap();
        let (command, _) = decode("accept", json.as_bytes(), true, &CATALOG).unwrap();
        assert_eq!(command, accept());
    }

    #[test]
    fn malformed_commands_are_refused_with_a_reason() {
        let invalid = CommandErrorCode::InvalidArgument as i32;
        let with = |change: &dyn Fn(&mut v1::Command)| {
            let mut command = accept();
            change(&mut command);
            command.encode_to_vec()
        };
        for (verb, bytes, json, needle) in [
            (
                "accept",
                b"\xff\xff\xff".to_vec(),
                false,
                "not a whistle.v1.Command",
            ),
            (
                "accept",
                b"{\"commandId\": ".to_vec(),
                true,
                "not a whistle.v1.Command",
            ),
            (
                "accept",
                b"{\"note\": \"\xc3\x28\"}".to_vec(),
                true,
                "not a whistle.v1.Command",
            ),
            (
                "resolve",
                with(&|_| {}),
                false,
                "a accept command was sent to whistle.cmd.resolve.*",
            ),
            ("accept", with(&|c| c.body = None), false, "no body"),
            (
                "accept",
                with(&|c| c.command_id = "has space".into()),
                false,
                "command_id",
            ),
            (
                "accept",
                with(&|c| c.incident_id = "42".into()),
                false,
                "not a UUID",
            ),
        ] {
            let (code, message) = refusal(decode(verb, &bytes, json, &CATALOG));
            assert_eq!(code, invalid, "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        let (code, message) = refusal(decode(
            "accept",
            &with(&|c| c.actor_id = "nobody".into()),
            false,
            &CATALOG,
        ));
        assert_ne!(code, CommandErrorCode::Unspecified as i32);
        assert!(message.contains("nobody"), "{message}");
    }

    #[test]
    fn an_extension_request_needs_a_valid_deadline() {
        let ask = |until: Option<prost_types::Timestamp>| {
            let command = v1::Command {
                body: Some(Body::RequestExtension(v1::RequestExtension {
                    task_id: "1".into(),
                    until,
                    reason: "材料未到".into(),
                })),
                ..accept()
            };
            decode(
                "request_extension",
                &command.encode_to_vec(),
                false,
                &CATALOG,
            )
        };
        let invalid = CommandErrorCode::InvalidArgument as i32;
        let (code, message) = refusal(ask(None));
        assert_eq!(code, invalid);
        assert!(message.contains("until"), "{message}");
        let out_of_range = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        let (code, message) = refusal(ask(Some(out_of_range)));
        assert_eq!(code, invalid);
        assert!(message.contains("not a valid timestamp"), "{message}");
        let until: DateTime<Utc> = "2026-12-08T10:00:00Z".parse().unwrap();
        let (_, parsed) = ask(Some(whistle_wire::convert::timestamp(until))).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::RequestExtension {
                task: Some(1),
                until,
                reason: "材料未到".into(),
            }
        );
        assert_eq!(parsed.task, Some(1));
    }

    #[test]
    fn a_ledger_proposal_names_its_reason_unit_and_review_date() {
        let send = |verb: &str, body: Body| {
            let command = v1::Command {
                body: Some(body),
                ..accept()
            };
            decode(verb, &command.encode_to_vec(), false, &CATALOG)
        };
        let review_at: DateTime<Utc> = "2027-01-15T02:00:00Z".parse().unwrap();
        let propose = |reason: v1::LedgerReason, responsible: &str, at: Option<DateTime<Utc>>| {
            Body::ProposeLedger(v1::ProposeLedger {
                reason: reason as i32,
                note: "待老旧小区改造".into(),
                responsible: responsible.into(),
                review_at: at.map(whistle_wire::convert::timestamp),
            })
        };
        let invalid = CommandErrorCode::InvalidArgument as i32;
        for (body, word) in [
            (
                propose(v1::LedgerReason::Unspecified, "150602001", Some(review_at)),
                "reason",
            ),
            (
                propose(v1::LedgerReason::Funding, "", Some(review_at)),
                "responsible",
            ),
            (
                propose(v1::LedgerReason::Funding, "150602001", None),
                "review_at",
            ),
        ] {
            let (code, message) = refusal(send("propose_ledger", body));
            assert_eq!(code, invalid, "{message}");
            assert!(message.contains(word), "{message}");
        }
        let (_, parsed) = send(
            "propose_ledger",
            propose(v1::LedgerReason::Planning, "150602001", Some(review_at)),
        )
        .unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::ProposeLedger {
                reason: LedgerReason::Planning,
                note: "待老旧小区改造".into(),
                responsible: "150602001".into(),
                review_at,
            }
        );
        let decide = Body::DecideLedger(v1::DecideLedger {
            approve: true,
            note: String::new(),
        });
        let (_, parsed) = send("decide_ledger", decide).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::DecideLedger {
                approve: true,
                note: String::new(),
            }
        );
        let back = Body::ReviewLedger(v1::ReviewLedger {
            extend_to: None,
            note: "规划已批复".into(),
        });
        let (_, parsed) = send("review_ledger", back).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::ReviewLedger {
                extend_to: None,
                note: "规划已批复".into(),
            }
        );
        let keep = Body::ReviewLedger(v1::ReviewLedger {
            extend_to: Some(whistle_wire::convert::timestamp(review_at)),
            note: String::new(),
        });
        let (_, parsed) = send("review_ledger", keep).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::ReviewLedger {
                extend_to: Some(review_at),
                note: String::new(),
            }
        );
    }

    #[test]
    fn a_dispute_names_its_task_and_a_department() {
        let send = |verb: &str, body: Body| {
            let command = v1::Command {
                body: Some(body),
                ..accept()
            };
            decode(verb, &command.encode_to_vec(), false, &CATALOG)
        };
        let dispute = |task: &str, to: &str| {
            Body::Dispute(v1::Dispute {
                task_id: task.into(),
                to_department_code: to.into(),
                reason: "非本部门职责".into(),
            })
        };
        let invalid = CommandErrorCode::InvalidArgument as i32;
        let (code, message) = refusal(send("dispute", dispute("", "150602-transport")));
        assert_eq!(code, invalid, "{message}");
        let (code, message) = refusal(send("dispute", dispute("1", "150602.transport")));
        assert_eq!(code, invalid, "{message}");
        let (_, parsed) = send("dispute", dispute("2", "150602-transport")).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::Dispute {
                task: 2,
                to: "150602-transport".parse().unwrap(),
                reason: "非本部门职责".into(),
            }
        );
        assert_eq!(parsed.task, Some(2));
        let decide = Body::DecideDispute(v1::DecideDispute {
            task_id: "2".into(),
            uphold: false,
            note: "职责明确".into(),
        });
        let (_, parsed) = send("decide_dispute", decide).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::DecideDispute {
                task: 2,
                uphold: false,
                note: "职责明确".into(),
            }
        );
    }

    #[test]
    fn assisting_departments_and_parts_are_decoded() {
        let send = |verb: &str, body: Body| {
            let command = v1::Command {
                body: Some(body),
                ..accept()
            };
            decode(verb, &command.encode_to_vec(), false, &CATALOG)
        };
        let whistle = |assisting: &[&str]| {
            Body::Escalate(v1::Escalate {
                note: String::new(),
                department_codes: vec!["150602-heating".into()],
                assisting_department_codes: assisting.iter().map(|d| d.to_string()).collect(),
            })
        };
        let invalid = CommandErrorCode::InvalidArgument as i32;
        let (code, message) = refusal(send("escalate", whistle(&["150602 transport"])));
        assert_eq!(code, invalid, "{message}");
        let (_, parsed) = send("escalate", whistle(&["150602-transport"])).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::Escalate {
                note: String::new(),
                departments: vec!["150602-heating".parse().unwrap()],
                assisting: vec!["150602-transport".parse().unwrap()],
            }
        );
        let submit = |task: &str| {
            Body::SubmitAssist(v1::SubmitAssist {
                task_id: task.into(),
                note: "协办意见".into(),
            })
        };
        let (code, message) = refusal(send("submit_assist", submit("x")));
        assert_eq!(code, invalid, "{message}");
        let (_, parsed) = send("submit_assist", submit("3")).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::SubmitAssist {
                task: 3,
                note: "协办意见".into(),
            }
        );
        assert_eq!(parsed.task, Some(3));
        let release = Body::ReleaseAssist(v1::ReleaseAssist {
            task_id: "3".into(),
            note: "无需参与".into(),
        });
        let (_, parsed) = send("release_assist", release).unwrap();
        assert_eq!(
            parsed.command,
            incident::Command::ReleaseAssist {
                task: 3,
                note: "无需参与".into(),
            }
        );
        // The verb of the subject must be the body's.
        assert!(send("resolve", submit("3")).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..1024), json in any::<bool>(), verb in 0usize..Verb::ALL.len()) {
            let _ = decode(Verb::ALL[verb].as_str(), &payload, json, &CATALOG);
        }

        #[test]
        fn arbitrary_fields_are_decoded_or_refused(id in "\\PC{0,80}", actor in "\\PC{0,40}", incident in "\\PC{0,40}", task in "\\PC{0,12}", reason in any::<i32>()) {
            let command = v1::Command {
                command_id: id,
                actor_id: actor,
                incident_id: incident,
                expected_version: 0,
                body: Some(Body::Return(v1::Return { task_id: task, reason, note: "x".into() })),
            };
            if let Err(reply) = decode("return", &command.encode_to_vec(), false, &CATALOG) {
                prop_assert!(matches!(reply.outcome, Some(Outcome::Error(_))));
            }
        }
    }
}
