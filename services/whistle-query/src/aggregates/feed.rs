//! Feeding the live aggregates: rebuild from PostgreSQL, then follow `WHISTLE_EVENTS`.
//!
//! **Rebuild.** The stream's last sequence S is read first, the snapshot second, and the stream
//! is followed from S + 1. Dispatch writes each event to the outbox in the transaction of its
//! change and publishes it only after that commits, so an event at or before S was committed
//! before the snapshot began and is in it; an event after S is either in the snapshot as well
//! (its version is not newer: ignored) or committed later (newer: applied). The events of one
//! incident arrive in version order: each transition locks the incident, and the relay publishes
//! in outbox order.
//!
//! **Following.** An ordered consumer (ephemeral, no acks; async-nats recreates it after a gap
//! or missed heartbeats, e.g. across a NATS restart) from the next sequence; after an error it is
//! created again from the last sequence applied. The store is rebuilt when it cannot follow any
//! more: the stream was recreated (its last sequence is below the one applied), events not yet
//! applied were removed (max age), or an event after the store's floor changes an incident the
//! store does not know (one before the floor is about a terminal incident already dropped).

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use prost::Message as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;
use whistle_domain::{
    incident::{Satisfaction, Status, TaskStatus},
    policy::LedgerRates,
    Level,
};
use whistle_proto::v1::{self, event::Body};
use whistle_wire::{convert::task_status_to_proto, names::EVENTS_STREAM as EVENTS, Clock};

use super::{
    hour_of, load, micros, proto_micros, Aggregates, Change, Facts, Grid, Hour, Kinds, Micros,
    State, Store, TaskFact, Update, Urgency,
};
use crate::{catalogue::RunningPolicy, Error, Result};

/// Most events applied between two looks at the clock and the shutdown token.
const CHUNK: usize = 1_000;

/// The task that keeps [`Aggregates`] current.
pub(crate) struct Feed {
    pub aggregates: Aggregates,
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub clock: Arc<dyn Clock>,
    /// Pause before trying again after PostgreSQL or NATS failed.
    pub retry: Duration,
    /// The running policy: how it counts ledger cases (挂账) in the resolution rate.
    pub policy: RunningPolicy,
}

impl Feed {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            let rebuilt = tokio::select! {
                _ = shutdown.cancelled() => break,
                rebuilt = self.rebuild() => rebuilt,
            };
            let store = match rebuilt {
                Ok(store) => store,
                Err(e) => {
                    warn!(error = %e, "rebuilding the live aggregates failed; retrying");
                    if self.pause(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            self.aggregates.install(store.clone());
            match self.follow(&store, &shutdown).await {
                None => break,
                Some(reason) => {
                    warn!(%reason, "the live aggregates fell out of step with {EVENTS}; rebuilding")
                }
            }
        }
        info!("live aggregates stopped");
    }

    /// Waits the retry delay; true if shutdown came first.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(self.retry) => false,
        }
    }

    fn ledger(&self) -> LedgerRates {
        self.policy.get().scoring().ledger
    }

    /// The clock's current hour, which the store prunes by.
    fn hour(&self) -> Hour {
        hour_of(micros(self.clock.now()))
    }

    async fn stream_state(&self) -> Result<jetstream::stream::State> {
        let stream = self
            .jetstream
            .get_stream(EVENTS)
            .await
            .map_err(|e| Error::Nats(format!("opening stream {EVENTS}: {e}")))?;
        Ok(stream.cached_info().state.clone())
    }

    async fn rebuild(&self) -> Result<Arc<Store>> {
        let started = std::time::Instant::now();
        // The sequence before the snapshot: see the module docs.
        let sequence = self.stream_state().await?.last_sequence;
        let store = Store::new(sequence, self.ledger());
        let incidents = load::snapshot(&self.pool, &store, self.hour()).await?;
        info!(
            incidents,
            sequence,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "live aggregates rebuilt from PostgreSQL"
        );
        Ok(Arc::new(store))
    }

    /// An ordered consumer from the sequence after `applied`, or why the store must be rebuilt.
    async fn subscribe(&self, applied: u64) -> Result<Result<consumer::pull::Ordered, String>> {
        let stream = self
            .jetstream
            .get_stream(EVENTS)
            .await
            .map_err(|e| Error::Nats(format!("opening stream {EVENTS}: {e}")))?;
        let state = &stream.cached_info().state;
        if state.last_sequence < applied {
            return Ok(Err(format!(
                "{EVENTS} ends at sequence {} but {applied} were applied: it was recreated",
                state.last_sequence
            )));
        }
        if state.first_sequence > applied + 1 {
            return Ok(Err(format!(
                "{EVENTS} starts at sequence {}: events after {applied} were removed unapplied",
                state.first_sequence
            )));
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                description: Some("whistle-query live aggregates".into()),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: applied + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Nats(format!("creating a consumer on {EVENTS}: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::Nats(format!("reading {EVENTS}: {e}")))?;
        Ok(Ok(messages))
    }

    /// Applies events until shutdown (`None`) or until the store must be rebuilt (the reason).
    async fn follow(&self, store: &Store, shutdown: &CancellationToken) -> Option<String> {
        // Hours may have passed since the store last moved (a long rebuild, a pause): the first
        // chunk brings it up to date.
        let mut advanced = None;
        loop {
            let messages = match self.subscribe(store.applied()).await {
                Ok(Ok(messages)) => messages,
                Ok(Err(reason)) => return Some(reason),
                Err(e) => {
                    warn!(error = %e, "cannot follow {EVENTS}; retrying");
                    if self.pause(shutdown).await {
                        return None;
                    }
                    continue;
                }
            };
            let mut chunks = messages.ready_chunks(CHUNK);
            loop {
                // Without `unconstrained`, tokio's cooperative budget cuts every ready chunk at 128.
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return None,
                    next = tokio::task::unconstrained(chunks.next()) => next,
                };
                let Some(chunk) = next else {
                    warn!("the {EVENTS} consumer ended; subscribing again");
                    if self.pause(shutdown).await {
                        return None;
                    }
                    break;
                };
                // An approved policy version that counts ledger cases otherwise: every incident's
                // contributions change, so the store is built anew.
                let ledger = self.ledger();
                if ledger != store.ledger() {
                    return Some(format!(
                        "the running policy counts ledger cases as {} now",
                        ledger.as_str()
                    ));
                }
                let hour = self.hour();
                if advanced.is_none_or(|advanced| hour > advanced) {
                    store.advance(hour);
                    advanced = Some(hour);
                }
                let mut failed = None;
                for item in chunk {
                    match item {
                        Ok(message) => {
                            if let Err(reason) = apply(store, &message, hour) {
                                return Some(reason);
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    warn!(error = %e, applied = store.applied(), "reading {EVENTS} failed; subscribing again");
                    if self.pause(shutdown).await {
                        return None;
                    }
                    break;
                }
            }
        }
    }
}

/// Applies one message of the stream; `Err` when the store must be rebuilt.
fn apply(store: &Store, message: &jetstream::Message, hour: Hour) -> Result<(), String> {
    let sequence = match message.info() {
        Ok(info) => info.stream_sequence,
        Err(e) => {
            warn!(error = %e, "a message of {EVENTS} without JetStream metadata; skipped");
            return Ok(());
        }
    };
    // A recreated ordered consumer that had delivered nothing starts again from the beginning.
    if sequence <= store.applied() {
        return Ok(());
    }
    match v1::Event::decode(message.payload.as_ref()) {
        Ok(event) => match update_of(store, &event) {
            Ok(Some(update)) => {
                store.apply(update, hour).map_err(|e| e.to_string())?;
            }
            Ok(None) => {}
            Err(why) => warn!(sequence, %why, "an event the aggregates cannot read; skipped"),
        },
        Err(e) => {
            warn!(sequence, error = %e, "a message of {EVENTS} that is not a whistle.v1.Event; skipped")
        }
    }
    store.set_applied(sequence);
    Ok(())
}

fn status(value: i32) -> Result<Status, String> {
    Ok(match v1::IncidentStatus::try_from(value) {
        Ok(v1::IncidentStatus::Handling) => Status::Handling,
        Ok(v1::IncidentStatus::Whistled) => Status::Whistled,
        Ok(v1::IncidentStatus::Accepted) => Status::Accepted,
        Ok(v1::IncidentStatus::Resolved) => Status::Resolved,
        Ok(v1::IncidentStatus::Closed) => Status::Closed,
        Ok(v1::IncidentStatus::ClosedUnverified) => Status::ClosedUnverified,
        Ok(v1::IncidentStatus::Duplicate) => Status::Duplicate,
        _ => return Err(format!("incident status {value}")),
    })
}

fn level(value: i32) -> Result<Level, String> {
    whistle_wire::convert::level_from_proto(value).ok_or_else(|| format!("level {value}"))
}

fn satisfaction(value: i32) -> Option<Satisfaction> {
    match v1::Satisfaction::try_from(value) {
        Ok(v1::Satisfaction::Satisfied) => Some(Satisfaction::Satisfied),
        Ok(v1::Satisfaction::BasicallySatisfied) => Some(Satisfaction::BasicallySatisfied),
        Ok(v1::Satisfaction::Unsatisfied) => Some(Satisfaction::Unsatisfied),
        _ => None,
    }
}

fn task(store: &Store, task: &v1::TaskState) -> Result<TaskFact, String> {
    let dispatched = task
        .dispatched_at
        .as_ref()
        .map(proto_micros)
        .ok_or_else(|| format!("task {} without dispatched_at", task.task_id))?;
    let accepted = task.accepted_at.as_ref().map(proto_micros);
    let accepted_in_time = match (accepted, &task.accept_due_at) {
        (Some(accepted), Some(due)) => accepted <= proto_micros(due),
        _ => false,
    };
    let status = TaskStatus::ALL
        .iter()
        .copied()
        .find(|s| task_status_to_proto(*s) as i32 == task.status)
        .ok_or_else(|| format!("task {} status {}", task.task_id, task.status))?;
    let resolve_due = task.resolve_due_at.as_ref().map(proto_micros);
    Ok(TaskFact {
        id: task.task_id,
        department: store.department(&task.department_code),
        round: task.round,
        live: status.is_live(),
        returned: task.return_reason != v1::ReturnReason::Unspecified as i32,
        disputed: task.disputed,
        dispatched,
        accepted,
        accepted_in_time,
        resolve_due,
        resolved: task.resolved_at.as_ref().map(proto_micros),
        owed_by: TaskFact::owed(
            status,
            task.accept_due_at.as_ref().map(proto_micros),
            resolve_due,
        ),
    })
}

/// What an event says about its incident; `None` for events about no incident's state
/// (`report.rejected`, `report.attached`, `cluster.alert`).
pub(super) fn update_of(store: &Store, event: &v1::Event) -> Result<Option<Update>, String> {
    let update = match &event.body {
        Some(Body::IncidentReported(reported)) => {
            let (id, at) = incident_and_time(event)?;
            let report = reported.report.as_ref().ok_or("no report")?;
            // Events from before `version` existed: an opening is version 1.
            let version = reported.version.max(1);
            Update {
                id,
                version,
                at,
                change: Change::Opened(Facts {
                    version,
                    grid: Grid::parse(&event.grid_code)
                        .ok_or_else(|| format!("grid code {:?}", event.grid_code))?,
                    title: report.title.as_str().into(),
                    status: status(reported.status)?,
                    level: level(reported.level)?,
                    urgency: Urgency::from_report(report.urgency),
                    category: store.category(&report.category),
                    overdue: false,
                    ledgered: None,
                    satisfaction: None,
                    created: at,
                    due: reported.due_at.as_ref().map(proto_micros),
                    resolved: None,
                    resolved_hours: Box::new([]),
                    verified: None,
                    whistles: Box::new([]),
                    tasks: Box::new([]),
                    reopen_count: 0,
                    marks: Box::new([]),
                }),
            }
        }
        // A comment changes nothing the aggregates count, nor the version, and may come long
        // after the incident was closed and dropped.
        Some(Body::IncidentChanged(_)) if event.kind == "incident.commented" => return Ok(None),
        // 主动治理: an adopted case opens with its first event, its tasks already dispatched (the
        // `task.dispatched` events of the same version that follow change nothing more).
        Some(Body::IncidentChanged(changed)) if event.kind == "incident.adopted" => {
            let (id, at) = incident_and_time(event)?;
            Update {
                id,
                version: changed.version,
                at,
                change: Change::Opened(Facts {
                    version: changed.version,
                    grid: Grid::parse(&event.grid_code)
                        .ok_or_else(|| format!("grid code {:?}", event.grid_code))?,
                    title: changed.title.as_str().into(),
                    status: status(changed.status)?,
                    level: level(changed.level)?,
                    urgency: Urgency::Normal,
                    category: store.category(&changed.category),
                    overdue: false,
                    ledgered: None,
                    satisfaction: None,
                    created: at,
                    due: changed.due_at.as_ref().map(proto_micros),
                    resolved: None,
                    resolved_hours: Box::new([]),
                    verified: None,
                    whistles: Box::new([]),
                    tasks: changed
                        .tasks
                        .iter()
                        .map(|t| task(store, t))
                        .collect::<Result<_, _>>()?,
                    reopen_count: 0,
                    marks: Box::new([]),
                }),
            }
        }
        Some(Body::IncidentChanged(changed)) => {
            let (id, at) = incident_and_time(event)?;
            // Events from before `transition_kinds` existed name only their own kind.
            let kinds = if changed.transition_kinds.is_empty() {
                Kinds::of([event.kind.as_str()])
            } else {
                Kinds::of(changed.transition_kinds.iter().map(String::as_str))
            };
            Update {
                id,
                version: changed.version,
                at,
                change: Change::Changed(
                    State {
                        status: status(changed.status)?,
                        level: level(changed.level)?,
                        category: store.category(&changed.category),
                        overdue: changed.overdue,
                        ledgered: changed
                            .ledger
                            .as_ref()
                            .and_then(|l| l.entered_at.as_ref())
                            .map(proto_micros),
                        satisfaction: satisfaction(changed.satisfaction),
                        due: changed.due_at.as_ref().map(proto_micros),
                        tasks: changed
                            .tasks
                            .iter()
                            .map(|t| task(store, t))
                            .collect::<Result<_, _>>()?,
                        reopen_count: changed.reopen_count,
                    },
                    kinds,
                ),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(update))
}

fn incident_and_time(event: &v1::Event) -> Result<(Uuid, Micros), String> {
    let id = event
        .incident_id
        .parse()
        .map_err(|e| format!("incident id {:?}: {e}", event.incident_id))?;
    let at = event
        .occurred_at
        .as_ref()
        .map(proto_micros)
        .ok_or("no occurred_at")?;
    Ok((id, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proactive case's first event, as dispatch publishes it: the incident whistled with its
    /// lead's task, version 1.
    fn adopted(kind: &str) -> v1::Event {
        let at = prost_types::Timestamp {
            seconds: 1_796_000_000,
            nanos: 0,
        };
        v1::Event {
            event_id: Uuid::now_v7().to_string(),
            kind: kind.into(),
            occurred_at: Some(at),
            incident_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            district_code: "150602".into(),
            street_code: "150602001".into(),
            community_code: "150602001001".into(),
            grid_code: "150602001001001".into(),
            actor_id: "op-150602".into(),
            body: Some(Body::IncidentChanged(v1::IncidentChanged {
                status: v1::IncidentStatus::Whistled as i32,
                level: v1::Level::Street as i32,
                version: 1,
                category: "property.service".into(),
                title: "主动治理：物业管理".into(),
                tasks: vec![v1::TaskState {
                    task_id: 1,
                    department_code: "150602-urban_management".into(),
                    status: v1::TaskStatus::Dispatched as i32,
                    dispatched_at: Some(at),
                    ..Default::default()
                }],
                transition_kinds: vec!["incident.adopted".into(), "task.dispatched".into()],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn an_adopted_case_opens_with_its_first_event_and_its_tasks() {
        let store = Store::new(0, LedgerRates::Excluded);
        let update = update_of(&store, &adopted("incident.adopted"))
            .unwrap()
            .expect("an update");
        let Change::Opened(facts) = &update.change else {
            panic!("{update:?}")
        };
        assert_eq!((facts.version, facts.tasks.len()), (1, 1));
        assert!(store.apply(update, 0).unwrap());
        // The task's event of the same transition changes nothing more.
        let dispatched = update_of(&store, &adopted("task.dispatched"))
            .unwrap()
            .expect("an update");
        assert!(!store.apply(dispatched, 0).unwrap());
    }
}
