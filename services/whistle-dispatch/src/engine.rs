//! Applying one input (a command or a timer) to one locked incident and writing everything it
//! causes — state, tasks, timers, timeline, events — in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use whistle_domain::incident::{self, Context, Effect, Incident, Input, Rejection, Timer};
use whistle_store::incidents::{Changes, Locked, TimelineEntry};

use crate::{events, Catalog, Error};

/// Applies `input` and saves the outcome. A refusal changes nothing; the caller rolls back.
pub(crate) async fn transition(
    conn: &mut PgConnection,
    catalog: &Catalog,
    locked: &Locked,
    input: Input,
    actor_id: &str,
    fired: Option<Timer>,
    now: DateTime<Utc>,
) -> Result<Result<Incident, Rejection>, Error> {
    let context = Context::new(&catalog.policy, &catalog.org);
    let (state, effects) = match incident::apply(&locked.state, input, &context, now) {
        Ok(next) => next,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let origin = events::Origin {
        incident_id: locked.id,
        district_code: &locked.district_code,
        street_code: &locked.street_code,
        community_code: &locked.community_code,
        title: &locked.title,
        actor_id,
    };
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
                    &origin,
                    &state,
                    kind,
                    &transition,
                    task,
                    &note,
                    now,
                ));
                changes.timeline.push(TimelineEntry {
                    kind: kind.to_owned(),
                    actor_id: actor_id.to_owned(),
                    at: now,
                    note,
                    data: task.map(|task| serde_json::json!({ "task": task })),
                });
            }
            Effect::Schedule { timer, at } => changes.schedule.push((timer, at)),
            Effect::Cancel { timer } => changes.cancel.push(timer),
        }
    }
    whistle_store::incidents::save(conn, locked.id, &state, &changes, now).await?;
    Ok(Ok(state))
}
