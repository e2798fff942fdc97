//! What tests do with a running stack: file reports, send commands, wait for dispatch and the
//! query service to catch up, and read the state back.

use std::time::Duration;

use chrono::TimeDelta;
use uuid::Uuid;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};

use super::{events, eventually, report, Count as _, Stack, WAIT};

impl Stack {
    /// Publishes a report and waits for JetStream to store it.
    pub async fn publish(&self, report: &v1::Report) -> async_nats::jetstream::publish::PublishAck {
        self.reporter().publish(report).await
    }

    /// Rows of `sql`, a `count(*)` query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db().count(sql).await
    }

    /// Waits until dispatch's intake consumer has nothing pending and nothing awaiting an ack.
    pub async fn intake_drained(&self) {
        super::intake_drained(self.js()).await;
    }

    /// Files a report and returns its incident id once intake recorded it.
    pub async fn report(&self, report_id: &str, grid: &str, category: &str) -> Uuid {
        let mut sent = report(report_id, grid);
        sent.category = category.into();
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            self.now().timestamp_millis(),
        ));
        sent.occurred_at = None;
        self.publish(&sent).await;
        self.incident_of(report_id).await
    }

    /// A valid report filed now by the worker of `grid`.
    pub fn filed(&self, id: &str, grid: &str, category: &str, urgency: v1::Urgency) -> v1::Report {
        let mut sent = report(id, grid);
        sent.category = category.into();
        sent.urgency = urgency as i32;
        sent.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
            self.now().timestamp_millis(),
        ));
        sent.occurred_at = None;
        sent
    }

    /// Publishes a report and returns its incident once intake recorded it.
    pub async fn file(&self, report: &v1::Report) -> Uuid {
        self.publish(report).await;
        self.incident_of(&report.report_id).await
    }

    pub async fn incident_of(&self, report_id: &str) -> Uuid {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let found: Option<Uuid> =
                sqlx::query_scalar("SELECT incident_id FROM reports WHERE report_id = $1")
                    .bind(report_id)
                    .fetch_optional(self.pool())
                    .await
                    .unwrap();
            if let Some(incident) = found {
                return incident;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "report {report_id} not recorded within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a command over NATS (as the admin, on the actor's subject) and returns dispatch's
    /// reply.
    pub async fn command(
        &self,
        actor: &str,
        incident: Uuid,
        body: impl std::borrow::Borrow<Body>,
    ) -> v1::CommandReply {
        let body = body.borrow();
        let command = v1::Command {
            command_id: Uuid::now_v7().to_string(),
            actor_id: actor.into(),
            incident_id: incident.to_string(),
            expected_version: 0,
            body: Some(body.clone()),
        };
        whistle_wire::CommandClient::new(self.admin().clone())
            .send(&command)
            .await
            .expect("dispatch answers")
    }

    /// Sends a command over NATS that must succeed; its success.
    pub async fn ok(&self, actor: &str, incident: Uuid, body: Body) -> v1::CommandOk {
        match self.command(actor, incident, &body).await.outcome {
            Some(Outcome::Ok(ok)) => ok,
            other => panic!("{actor} {body:?} on {incident}: {other:?}"),
        }
    }

    /// The street of `grid` blows the whistle for `incident` (吹哨), as its handler.
    pub async fn whistle(&self, grid: &str, incident: Uuid) -> v1::CommandOk {
        let street = super::unit(grid, whistle_domain::Level::Street);
        self.ok(&format!("hd-{street}"), incident, super::escalate())
            .await
    }

    /// Files a heating report in `grid`, which its community sends up and its street whistles:
    /// the policy's departments for it are dispatched (heating as task 1, then housing and
    /// construction).
    pub async fn whistled(&self, report_id: &str, grid: &str) -> Uuid {
        let incident = self.report(report_id, grid, "heating.no_heat").await;
        let community = super::unit(grid, whistle_domain::Level::Community);
        self.ok(&format!("hd-{community}"), incident, super::escalate())
            .await;
        self.whistle(grid, incident).await;
        incident
    }

    /// `GetIncident` as the stack's city operator.
    pub async fn detail(&self, incident: Uuid) -> v1::IncidentDetail {
        self.client()
            .get_incident(v1::GetIncidentRequest {
                incident_id: incident.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("GetIncident {incident}: {status}"))
            .into_inner()
    }

    /// Waits until dispatch has fired every timer due at the clock's now.
    pub async fn settle(&self) {
        let now = self.now();
        eventually("due timers fired", WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM timers WHERE due_at <= $1")
                .bind(now)
                .fetch_one(self.pool())
                .await
                .unwrap()
                == 0
        })
        .await
        .unwrap();
    }

    pub async fn list(&self, request: v1::ListIncidentsRequest) -> v1::ListIncidentsResponse {
        self.client()
            .list_incidents(request)
            .await
            .expect("ListIncidents")
            .into_inner()
    }

    /// The ids a filter lists on one page.
    pub async fn ids(&self, request: v1::ListIncidentsRequest) -> Vec<Uuid> {
        self.list(request)
            .await
            .incidents
            .iter()
            .map(|i| i.incident_id.parse().unwrap())
            .collect()
    }

    /// Waits until every event dispatch committed is in `WHISTLE_EVENTS`: intake acks a report
    /// once its rows are committed, and its events may still be on their way from the outbox.
    pub async fn relayed(&self) {
        eventually("the outbox relayed", WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
                .fetch_one(self.pool())
                .await
                .unwrap()
                == 0
        })
        .await
        .unwrap();
    }

    /// Waits until the query's live aggregates reflect every event dispatch has committed: the
    /// outbox relayed, and the stream's last sequence applied.
    pub async fn caught_up(&self) {
        self.relayed().await;
        let last = self
            .js()
            .get_stream("WHISTLE_EVENTS")
            .await
            .expect("WHISTLE_EVENTS exists")
            .cached_info()
            .state
            .last_sequence;
        let aggregates = &self.query().aggregates;
        eventually("the aggregates applied the stream", WAIT, || async {
            aggregates.applied_sequence().is_some_and(|s| s >= last)
        })
        .await
        .unwrap();
    }

    /// `GetOverview` once the aggregates caught up (they follow the stream, so right after a
    /// command they may not have seen its events yet).
    pub async fn overview(&self, area_code: &str, window: Option<TimeDelta>) -> v1::Overview {
        self.caught_up().await;
        self.client()
            .get_overview(v1::GetOverviewRequest {
                area_code: area_code.into(),
                window: window.map(|w| prost_types::Duration {
                    seconds: w.num_seconds(),
                    nanos: 0,
                }),
            })
            .await
            .expect("GetOverview")
            .into_inner()
    }

    /// `ListOverdue` once the aggregates caught up (its late list follows the stream).
    pub async fn overdue(&self, area_code: &str) -> Vec<v1::OverdueItem> {
        self.caught_up().await;
        self.client()
            .list_overdue(v1::ListOverdueRequest {
                area_code: area_code.into(),
                ..Default::default()
            })
            .await
            .expect("ListOverdue")
            .into_inner()
            .items
    }

    pub async fn incident_column<T>(&self, incident: Uuid, column: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(&format!("SELECT {column} FROM incidents WHERE id = $1"))
            .bind(incident)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// Status and level of an incident.
    pub async fn state(&self, incident: Uuid) -> (String, String) {
        sqlx::query_as("SELECT status, level FROM incidents WHERE id = $1")
            .bind(incident)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    pub async fn wait_state(&self, incident: Uuid, status: &str, level: &str) {
        eventually(&format!("incident {status} at {level}"), WAIT, || async {
            self.state(incident).await == (status.to_owned(), level.to_owned())
        })
        .await
        .unwrap();
    }

    /// Task statuses in task order.
    pub async fn tasks(&self, incident: Uuid) -> Vec<(i32, String, String)> {
        sqlx::query_as("SELECT task_id, department_code, status FROM tasks WHERE incident_id = $1 ORDER BY task_id")
            .bind(incident)
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    pub async fn timeline(&self, incident: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM timeline WHERE incident_id = $1 ORDER BY seq")
            .bind(incident)
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    /// Waits until WHISTLE_EVENTS holds exactly `count` events of `kind` (the stream drops a
    /// republished event id, so more would be a double publication).
    pub async fn wait_published(&self, kind: &str, count: usize) {
        eventually(
            &format!("{count} {kind} events, each once"),
            WAIT,
            || async {
                events(self.js())
                    .await
                    .iter()
                    .filter(|(_, e)| e.kind == kind)
                    .count()
                    == count
            },
        )
        .await
        .unwrap();
    }

    /// Events of an incident in WHISTLE_EVENTS, with their subjects.
    pub async fn events_of(&self, incident: Uuid) -> Vec<(String, v1::Event)> {
        events(self.js())
            .await
            .into_iter()
            .filter(|(_, e)| e.incident_id == incident.to_string())
            .collect()
    }
}
