//! 主动治理: `whistle.cmd.adopt.{operator}` opens a proactive case from a topic of a month's
//! stored hotspot proposal (docs/proactive.md). The topic is read from `hotspot_proposals`; a
//! month with no stored proposal has it computed from the report history and stored first (the
//! month's first adoption), so the list a case was adopted from stays as it was.
//!
//! The adoption is one transaction: an advisory lock on the topic (so two adoptions of one topic
//! at once open one case), the stored reply of a retried command id, the open case of the topic
//! if there is one (refused), the pure `incident::adopt`, then the new incident row and what any
//! transition writes (tasks, timers, timeline, events) and the command's reply. No incident row
//! is locked before the insert: nothing else can hold the new incident.

use chrono::{DateTime, Utc};
use prost::Message as _;
use tracing::{info, warn};
use uuid::Uuid;
use whistle_domain::{
    hotspot::{self, Candidate, Month, Params},
    incident::{self, Actor, Adoption, Context},
    CategoryCode, DepartmentCode,
};
use whistle_proto::v1::{self, command::Body, CommandErrorCode};
use whistle_store::{
    incidents::{self, command_reply, record_command},
    proactive::{self, NewCase},
};
use whistle_wire::Verb;

use crate::{
    commands::{error, ok_reply, replayed, Commands},
    engine, events, Catalog, Error,
};

/// An adoption as the domain takes it, with the topic it names.
struct Request {
    actor: Actor,
    month: Month,
    topic_key: String,
    lead: DepartmentCode,
    assisting: Vec<DepartmentCode>,
    milestones: Vec<(String, DateTime<Utc>)>,
    deadline: DateTime<Utc>,
    note: String,
}

impl Commands {
    /// Checks and applies an adoption; a refusal is the reply.
    pub(crate) async fn adopt(&self, catalog: &Catalog, command: v1::Command) -> v1::CommandReply {
        let now = self.shared.clock.now();
        let request = match parse(&command, catalog, now) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        match self.apply_adopt(catalog, &command, request, now).await {
            Ok(reply) => reply,
            Err(e) => {
                warn!(error = %whistle_wire::chain(&e), "adoption failed");
                error(
                    CommandErrorCode::Unavailable,
                    format!("dispatch could not apply the command now ({e}); retry with the same command_id"),
                )
            }
        }
    }

    async fn apply_adopt(
        &self,
        catalog: &Catalog,
        command: &v1::Command,
        request: Request,
        now: DateTime<Utc>,
    ) -> Result<v1::CommandReply, Error> {
        let verb = Verb::Adopt.as_str();
        // A retry is answered before any work, whatever the proposal or the clock say now.
        {
            let mut conn = self.shared.pool.acquire().await?;
            if let Some(applied) = command_reply(&mut conn, &command.command_id).await? {
                return Ok(replayed(&applied, verb, command));
            }
        }
        let proposal = self.proposal(catalog, request.month, now).await?;
        let Some(topic) = proposal
            .candidates
            .iter()
            .find(|c| c.key == request.topic_key)
        else {
            return Ok(error(
                CommandErrorCode::NotFound,
                format!(
                    "topic {} is not in the proposal of {}",
                    request.topic_key, request.month
                ),
            ));
        };
        let Some(category) = main_category(topic, catalog) else {
            return Ok(error(
                CommandErrorCode::NotFound,
                format!(
                    "no category of topic {} is in policy {}",
                    topic.key,
                    catalog.policy.version()
                ),
            ));
        };
        let adoption = Adoption {
            topic_key: topic.key.clone(),
            month: request.month.to_string(),
            grid: topic.grid.clone(),
            category,
            solvable_at: topic.solvable_at,
            summary: topic.summary_zh.clone(),
            lead: request.lead,
            assisting: request.assisting,
            milestones: request.milestones,
            deadline: request.deadline,
            note: request.note,
        };
        let context = Context::new(&catalog.policy, &catalog.org, &catalog.calendar);

        let mut tx = self.shared.pool.begin().await?;
        proactive::lock_topic(&mut tx, &topic.key).await?;
        // Checked again under the lock: a retry racing its first attempt waits here for it.
        if let Some(applied) = command_reply(&mut tx, &command.command_id).await? {
            return Ok(replayed(&applied, verb, command));
        }
        let (state, effects) = match incident::adopt(adoption, &request.actor, &context, now) {
            Ok(adopted) => adopted,
            Err(rejection) => return Ok(crate::commands::refusal(&rejection)),
        };
        if let Some(open) = proactive::open_case(&mut tx, &topic.key).await? {
            return Ok(error(
                CommandErrorCode::InvalidTransition,
                format!(
                    "topic {} is already adopted as incident {open}, still open",
                    topic.key
                ),
            ));
        }
        let id = Uuid::now_v7();
        let title = title(topic, catalog);
        let description = description(topic, &state);
        let place = |level| {
            state
                .area
                .at_level(level)
                .map(|code| code.to_string())
                .unwrap_or_default()
        };
        let (district, street, community) = (
            place(whistle_domain::Level::District),
            place(whistle_domain::Level::Street),
            place(whistle_domain::Level::Community),
        );
        let origin = events::Origin {
            incident_id: id,
            district_code: &district,
            street_code: &street,
            community_code: &community,
            title: &title,
            actor_id: &command.actor_id,
        };
        let mut changes = engine::changes(&origin, &state, effects, None, None, now);
        // The adoption's entry names its topic for an audit, beside the note the screen shows.
        if let Some(first) = changes.timeline.first_mut() {
            first.data = Some(serde_json::json!({
                "topic_key": topic.key,
                "month": request.month.to_string(),
            }));
        }
        proactive::insert(
            &mut tx,
            &NewCase {
                id,
                state: &state,
                title: &title,
                description: &description,
                point: topic.centre,
                adopted_by: &command.actor_id,
                policy_version: catalog.policy.version(),
                topic_key: &topic.key,
                now,
            },
        )
        .await?;
        incidents::save(&mut tx, id, &state, &changes, now).await?;
        let reply = ok_reply(id, &state, None, now);
        record_command(
            &mut tx,
            &command.command_id,
            Some(id),
            verb,
            &command.actor_id,
            &reply.encode_to_vec(),
            now,
        )
        .await?;
        tx.commit().await?;
        info!(incident_id = %id, topic = %topic.key, actor = %command.actor_id, "topic adopted");
        self.relay_wakeup.notify_one();
        self.timer_wakeup.notify_one();
        Ok(reply)
    }

    /// The month's stored proposal, computed from the history and stored first if the month has
    /// none (every candidate of the city, so each area's list is a part of it).
    async fn proposal(
        &self,
        catalog: &Catalog,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<hotspot::Proposal, Error> {
        let mut conn = self.shared.pool.acquire().await?;
        if let Some(stored) = proactive::proposal(&mut conn, month).await? {
            return Ok(stored);
        }
        let params = Params::default();
        let from = month.plus(-(params.lookback_months as i32)).start();
        let records = proactive::history(&mut conn, &catalog.policy, from, month.start()).await?;
        let proposal =
            tokio::task::spawn_blocking(move || hotspot::analyse(&records, month, &params))
                .await
                .map_err(|e| Error::Hotspots(e.to_string()))?;
        let stored =
            proactive::store_proposal(&mut conn, &proposal, catalog.policy.version(), now).await?;
        info!(%month, candidates = stored.candidates.len(), "hotspot proposal stored");
        Ok(stored)
    }
}

/// The group's most reported category the policy still has.
fn main_category(topic: &Candidate, catalog: &Catalog) -> Option<CategoryCode> {
    topic
        .categories
        .iter()
        .find(|(code, _)| catalog.policy.category(code).is_some())
        .and_then(|(code, _)| code.parse().ok())
}

/// `主动治理：{group name} · {grid name}`.
fn title(topic: &Candidate, catalog: &Catalog) -> String {
    let group = catalog
        .policy
        .group(&topic.group)
        .map_or(topic.group.as_str(), |g| g.name_zh.as_str());
    let grid = catalog
        .org
        .unit(&topic.grid)
        .map_or(topic.grid.as_str(), |u| u.name.as_str());
    format!("主动治理：{group} · {grid}")
}

fn description(topic: &Candidate, state: &incident::Incident) -> String {
    let month = state.proactive.as_ref().map_or("", |p| p.month.as_str());
    format!(
        "{month}月度选题（每月一题）{}：{}",
        topic.key, topic.summary_zh
    )
}

/// The adoption in a command, checked for form; the domain checks the rest.
fn parse(
    command: &v1::Command,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<Request, v1::CommandReply> {
    let invalid = |message: String| error(CommandErrorCode::InvalidArgument, message);
    let (Body::Adopt(body), actor_id) =
        crate::commands::incidentless(Verb::Adopt, command, "opens an incident")?
    else {
        return Err(invalid("an adopt command needs an Adopt body".into()));
    };
    let person = catalog.org.person(&actor_id).ok_or_else(|| {
        error(
            CommandErrorCode::Forbidden,
            format!("{actor_id} is not a known person"),
        )
    })?;
    let this_month = Month::of(now);
    let month = if body.month.is_empty() {
        this_month
    } else {
        body.month
            .parse::<Month>()
            .map_err(|e| invalid(format!("month: {e}")))?
    };
    // A month not yet begun has no complete history to propose from.
    if month > this_month {
        return Err(invalid(format!(
            "month {month} has not begun; topics are proposed for {this_month} at the latest"
        )));
    }
    if body.topic_key.trim().is_empty() {
        return Err(invalid("topic_key is required".into()));
    }
    let department = |raw: &str| -> Result<DepartmentCode, v1::CommandReply> {
        raw.parse()
            .map_err(|e| invalid(format!("department {raw:?}: {e}")))
    };
    if body.lead_department_code.is_empty() {
        return Err(invalid("lead_department_code is required".into()));
    }
    let lead = department(&body.lead_department_code)?;
    let assisting = body
        .assisting_department_codes
        .iter()
        .map(|raw| department(raw))
        .collect::<Result<Vec<_>, _>>()?;
    let timestamp = |what: String, at: Option<&prost_types::Timestamp>| {
        let at = at.ok_or_else(|| invalid(format!("{what} is required")))?;
        whistle_wire::convert::timestamp_from_proto(at)
            .ok_or_else(|| invalid(format!("{what} is not a valid timestamp")))
    };
    let deadline = timestamp("deadline".into(), body.deadline.as_ref())?;
    let milestones = body
        .milestones
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let due = timestamp(format!("milestone {} due", i + 1), m.due.as_ref())?;
            Ok((m.title.clone(), due))
        })
        .collect::<Result<Vec<_>, v1::CommandReply>>()?;
    Ok(Request {
        actor: Actor::from(person),
        month,
        topic_key: body.topic_key.trim().to_owned(),
        lead,
        assisting,
        milestones,
        deadline,
        note: body.note.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use whistle_domain::OrgIndex;

    use super::*;

    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::new(
            OrgIndex::build(whistle_domain::ordos::dataset()).unwrap(),
            whistle_domain::policy::builtin("ordos").unwrap(),
        )
    });

    fn now() -> DateTime<Utc> {
        "2026-12-07T02:00:00Z".parse().unwrap()
    }

    fn command(change: impl FnOnce(&mut v1::Command, &mut v1::Adopt)) -> v1::Command {
        let at = |days: i64| {
            Some(whistle_wire::convert::timestamp(
                now() + chrono::TimeDelta::days(days),
            ))
        };
        let mut adopt = v1::Adopt {
            topic_key: "150602001001001/property@39.8100,109.9900".into(),
            month: String::new(),
            lead_department_code: "150602-urban_management".into(),
            assisting_department_codes: vec!["150602-housing_construction".into()],
            milestones: vec![v1::Milestone {
                title: "排查".into(),
                due: at(10),
            }],
            deadline: at(60),
            note: String::new(),
        };
        let mut command = v1::Command {
            command_id: "adopt-1".into(),
            actor_id: "op-150602".into(),
            incident_id: String::new(),
            expected_version: 0,
            body: None,
        };
        change(&mut command, &mut adopt);
        command.body = Some(Body::Adopt(adopt));
        command
    }

    fn refused(command: &v1::Command) -> (i32, String) {
        match parse(command, &CATALOG, now()) {
            Ok(_) => panic!("{command:?} was taken"),
            Err(v1::CommandReply {
                outcome: Some(v1::command_reply::Outcome::Error(e)),
            }) => (e.code, e.message),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_adoption_names_this_month_by_default_and_its_people_and_dates() {
        let request = parse(&command(|_, _| {}), &CATALOG, now()).unwrap();
        assert_eq!(request.month.to_string(), "2026-12");
        assert_eq!(request.actor.id(), "op-150602");
        assert_eq!(request.lead.as_str(), "150602-urban_management");
        assert_eq!(request.milestones.len(), 1);
        assert_eq!(request.deadline, now() + chrono::TimeDelta::days(60));
    }

    #[test]
    fn a_malformed_adoption_is_refused_before_anything_is_read() {
        let invalid = CommandErrorCode::InvalidArgument as i32;
        for (bad, words) in [
            (
                command(|c, _| c.incident_id = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()),
                "incident_id",
            ),
            (command(|_, a| a.month = "2027-01".into()), "has not begun"),
            (command(|_, a| a.month = "2026-13".into()), "month"),
            (command(|_, a| a.topic_key = " ".into()), "topic_key"),
            (
                command(|_, a| a.lead_department_code = String::new()),
                "lead_department_code",
            ),
            (
                command(|_, a| a.lead_department_code = "a.b".into()),
                "department",
            ),
            (command(|_, a| a.deadline = None), "deadline is required"),
            (
                command(|_, a| a.milestones[0].due = None),
                "milestone 1 due",
            ),
            (command(|c, _| c.command_id = String::new()), "command_id"),
        ] {
            let (code, message) = refused(&bad);
            assert_eq!(code, invalid, "{message}");
            assert!(message.contains(words), "{message} lacks {words}");
        }
        let (code, _) = refused(&command(|c, _| c.actor_id = "op-nobody".into()));
        assert_eq!(code, CommandErrorCode::Forbidden as i32);
    }
}
