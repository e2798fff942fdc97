//! Applying one input (a command or a timer) to one locked incident and writing everything it
//! causes — state, tasks, timers, timeline, events — in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use whistle_domain::{
    incident::{self, Context, Effect, Incident, Input, Rejection, Timer},
    photo::PhotoId,
};
use whistle_store::incidents::{Changes, Locked, TimelineEntry};

use crate::{events, Catalog, Error};

/// Applies a command and saves the outcome (timers go through [`plan`] in batches). A refusal changes nothing; the caller rolls back.
/// `photos` (a resolution's "after" photos) are recorded in the data of the command's first
/// timeline entry.
pub(crate) async fn transition(
    conn: &mut PgConnection,
    catalog: &Catalog,
    locked: &Locked,
    input: Input,
    actor_id: &str,
    photos: &[PhotoId],
    now: DateTime<Utc>,
) -> Result<Result<Incident, Rejection>, Error> {
    let (state, mut changes) = match plan(catalog, locked, input, actor_id, None, now) {
        Ok(planned) => planned,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if let Some(first) = changes.timeline.first_mut().filter(|_| !photos.is_empty()) {
        let mut data = match first.data.take() {
            Some(serde_json::Value::Object(data)) => data,
            _ => serde_json::Map::new(),
        };
        data.insert(
            "photos".into(),
            photos.iter().map(|p| p.as_str()).collect::<Vec<_>>().into(),
        );
        first.data = Some(serde_json::Value::Object(data));
    }
    whistle_store::incidents::save(conn, locked.id, &state, &changes, now).await?;
    Ok(Ok(state))
}

/// Applies `input` and lists what saving the outcome must write, without writing it.
pub(crate) fn plan(
    catalog: &Catalog,
    locked: &Locked,
    input: Input,
    actor_id: &str,
    fired: Option<Timer>,
    now: DateTime<Utc>,
) -> Result<(Incident, Changes), Rejection> {
    let context = Context::new(&catalog.policy, &catalog.org, &catalog.calendar);
    let (state, effects) = incident::apply(&locked.state, input, &context, now)?;
    let origin = events::Origin {
        incident_id: locked.id,
        district_code: &locked.district_code,
        street_code: &locked.street_code,
        community_code: &locked.community_code,
        title: &locked.title,
        actor_id,
    };
    // A fired timer names itself and its deadline on the timeline, so an audit (and the fault
    // suite's checker) can tell which deadline caused the entries and count its firings.
    let fired_with_due = fired.map(|timer| {
        let due = locked.state.timers().get(&timer).copied();
        (timer.key(), due)
    });
    let changes = changes(
        &origin,
        &state,
        effects,
        fired,
        fired_with_due.as_ref(),
        now,
    );
    Ok((state, changes))
}

/// What saving a transition that left the incident in `state` with `effects` must write: its
/// events, timeline entries and timers. `fired` is the timer that caused it, with its key and
/// deadline for the timeline.
pub(crate) fn changes(
    origin: &events::Origin<'_>,
    state: &Incident,
    effects: Vec<Effect>,
    fired: Option<Timer>,
    fired_with_due: Option<&(String, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = Changes {
        fired,
        ..Changes::default()
    };
    // Every event of the transition names all its kinds (see `IncidentChanged.transition_kinds`).
    let transition: Vec<&str> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Event { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    for effect in effects {
        match effect {
            Effect::Event { kind, task, note } => {
                changes.events.push(events::incident_changed(
                    origin,
                    state,
                    kind,
                    &transition,
                    task,
                    &note,
                    now,
                ));
                changes.timeline.push(TimelineEntry {
                    kind: kind.to_owned(),
                    actor_id: origin.actor_id.to_owned(),
                    at: now,
                    note,
                    data: timeline_data(task, fired_with_due),
                });
            }
            Effect::Schedule { timer, at } => changes.schedule.push((timer, at)),
            Effect::Cancel { timer } => changes.cancel.push(timer),
        }
    }
    changes
}

/// The `data` of a timeline entry: the task concerned, and for a timer the key and deadline that
/// fired (`{"timer": "level_window", "due_at": "…"}`).
fn timeline_data(
    task: Option<u32>,
    fired: Option<&(String, Option<DateTime<Utc>>)>,
) -> Option<serde_json::Value> {
    let mut data = serde_json::Map::new();
    if let Some(task) = task {
        data.insert("task".into(), task.into());
    }
    if let Some((key, due)) = fired {
        data.insert("timer".into(), key.as_str().into());
        if let Some(due) = due {
            data.insert(
                "due_at".into(),
                due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into(),
            );
        }
    }
    (!data.is_empty()).then_some(serde_json::Value::Object(data))
}
