//! The `whistle.v1.CommandCenter` handlers: authenticate, parse the request, read, answer. Errors
//! become `tonic::Status` through `From<Error>` (error.rs), nowhere else.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use whistle_domain::hotspot;
use whistle_proto::v1;
use whistle_wire::Clock;

use crate::{
    aggregates::Aggregates,
    audit,
    auth::{Auth, Principal},
    catalogue, contacts, devices,
    generated::command_center_server,
    grid_map, hotspots,
    incidents::{self, Filter},
    ledger,
    metrics::Metrics,
    notifications, org_tree, overdue, overview, paired, people, photos,
    replica::Replica,
    reports, scoreboard, session, tasks, trend, watch, Error,
};

/// The handlers' shared state; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct CommandCenter {
    /// The primary: token checks, writes, and reads that must see the latest commit.
    pub pool: PgPool,
    /// The reads that tolerate staleness: the standby's pool when it is current enough.
    pub replica: Replica,
    pub auth: Auth,
    pub feed: watch::Feed,
    pub metrics: Metrics,
    /// Cancelled at shutdown, ending the watch streams.
    pub streams: CancellationToken,
    /// For category names; incidents keep their own policy version.
    pub policy: crate::catalogue::RunningPolicy,
    pub clock: Arc<dyn Clock>,
    /// The live counters `GetOverview`, `GetTrend`, `GetScoreboard` and the map answer from.
    pub aggregates: Aggregates,
    /// Turns for the SQL reads that scan an area (`Options::max_heavy_reads`).
    pub heavy_reads: Arc<tokio::sync::Semaphore>,
    /// The niced threads that compute the scoreboards and late lists from the live aggregates
    /// (`Options::max_board_reads` of them).
    pub boards: crate::boards::Boards,
    /// Opens residents' contacts for those who may see them whole.
    pub keyring: Option<Arc<whistle_store::contacts::Keyring>>,
    pub photos: photos::Photos,
}

impl CommandCenter {
    /// An incident as `principal` may read it: inside the token's area, else PERMISSION_DENIED.
    /// From the standby when `stale_ok` and it is current enough, else from the primary.
    async fn incident(
        &self,
        principal: &Principal,
        incident_id: &str,
        stale_ok: bool,
    ) -> Result<v1::IncidentDetail, Error> {
        let (policy, now) = (&self.policy.get(), self.clock.now());
        let detail = if stale_ok {
            self.replica
                .read(principal, |pool| async move {
                    incidents::get(&pool, policy, incident_id, now).await
                })
                .await?
        } else {
            incidents::get(&self.pool, policy, incident_id, now).await?
        };
        let grid = detail
            .incident
            .as_ref()
            .map(|i| i.grid_code.parse())
            .transpose()
            .map_err(|e| Error::Corrupt(format!("incident grid code: {e}")))?;
        if let Some(grid) = grid.filter(|grid| !principal.may_see(grid)) {
            return Err(principal.outside(&grid));
        }
        Ok(detail)
    }

    /// A proactive case's measure since adoption (`GetHotspotChange` from its adoption, 3
    /// months each side) and whether the caller may mark its milestones done: an operator who
    /// sees it, or a liaison of its live lead department.
    async fn measure_proactive(
        &self,
        principal: &Principal,
        proactive: &mut v1::ProactiveCase,
        tasks: &[v1::Task],
    ) -> Result<(), Error> {
        use whistle_store::tokens::Role;
        let lead_live = |department: &str| {
            tasks.iter().filter_map(|t| t.state.as_ref()).any(|state| {
                state.department_code == department
                    && state.role != v1::TaskRole::Assist as i32
                    && ![
                        v1::TaskStatus::Returned as i32,
                        v1::TaskStatus::Cancelled as i32,
                        v1::TaskStatus::Released as i32,
                    ]
                    .contains(&state.status)
            })
        };
        proactive.may_complete_milestones = match principal.role {
            Role::Operator => true,
            Role::Liaison => principal.department.as_deref().is_some_and(lead_live),
            _ => false,
        };
        let request = v1::GetHotspotChangeRequest {
            key: proactive.topic_key.clone(),
            since: proactive.adopted_at,
            months: 3,
        };
        let (place, since, months) = match hotspots::change_request(&request) {
            Ok(parsed) => parsed,
            // A key dispatch stored is one the analysis made; one that no longer parses is
            // shown without its measure rather than failing the whole incident.
            Err(_) => return Ok(()),
        };
        let policy = self.policy.get();
        let change = {
            let (policy, place) = (&policy, &place);
            self.replica
                .read(principal, |pool| async move {
                    hotspots::change(&pool, policy, place, since, months).await
                })
                .await?
        };
        proactive.change = Some(hotspots::change_response(
            &request,
            &place,
            &change,
            self.clock.now(),
        ));
        Ok(())
    }

    /// Names on each topic the proactive case adopted from it in the response's month.
    async fn mark_adopted(
        &self,
        principal: &Principal,
        response: &mut v1::ListHotspotsResponse,
    ) -> Result<(), Error> {
        let keys: Vec<String> = response.hotspots.iter().map(|h| h.key.clone()).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let month = response.month.clone();
        let adopted = {
            let (keys, month) = (&keys, &month);
            self.replica
                .read(principal, |pool| async move {
                    hotspots::adopted(&pool, keys, month).await
                })
                .await?
        };
        for hotspot in &mut response.hotspots {
            if let Some(id) = adopted.get(&hotspot.key) {
                hotspot.adopted_incident_id = id.to_string();
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl command_center_server::CommandCenter for CommandCenter {
    type WatchEventsStream = watch::Responses;

    async fn watch_events(
        &self,
        request: Request<v1::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let principal = self.auth.principal(&request).await?;
        let request = request.into_inner();
        let area = principal.read_area("area_code", &request.area_code)?;
        let filter = watch::Filter::new(area, &request.kinds)?;
        let permit = self.auth.limits().watch(principal.token_id)?;
        let responses = watch::watch(
            &self.feed,
            filter,
            request.since_sequence,
            self.metrics.clone(),
            self.streams.clone(),
        );
        // The permit lives as long as the response stream, which tonic drops when the client goes.
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            responses,
            move |item| {
                let _held = &permit;
                item
            },
        ))))
    }

    async fn get_overview(
        &self,
        request: Request<v1::GetOverviewRequest>,
    ) -> Result<Response<v1::Overview>, Status> {
        let principal = self.auth.principal(&request).await?;
        let request = request.into_inner();
        let area = principal.read_area("area_code", &request.area_code)?;
        let window = overview::parse_window(request.window.as_ref())?;
        let overview =
            self.aggregates
                .overview(area.as_str(), Some(&area), window, self.clock.now())?;
        Ok(Response::new(overview))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let area = principal.read_area("area_code", &request.get_ref().area_code)?;
        let filter = &Filter::parse(request.get_ref(), &area)?;
        let (policy, now) = (&self.policy.get(), self.clock.now());
        let page = self
            .replica
            .read(&principal, |pool| async move {
                incidents::list(&pool, policy, filter, now).await
            })
            .await?;
        Ok(Response::new(page))
    }

    async fn get_incident(
        &self,
        request: Request<v1::GetIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        let principal = self.auth.principal_or_leader(&request).await?;
        let mut detail = self
            .incident(&principal, &request.get_ref().incident_id, true)
            .await?;
        photos::show(&principal, &mut detail);
        if let Some(pending) = &mut detail.pending_extension {
            pending.may_answer = principal.role == whistle_store::tokens::Role::Operator
                && whistle_wire::convert::level_from_proto(pending.approver)
                    .is_some_and(|approver| principal.area.level() >= approver);
        }
        if let Some(ledger) = &detail.ledger {
            detail.may_decide_ledger = principal.role == whistle_store::tokens::Role::Operator
                && whistle_wire::convert::level_from_proto(ledger.approver)
                    .is_some_and(|approver| principal.area.level() >= approver);
        }
        if let Some(proactive) = &mut detail.proactive {
            self.measure_proactive(&principal, proactive, &detail.tasks)
                .await?;
        }
        let incident_status = detail.incident.as_ref().map_or(0, |i| i.status);
        let ledgered = detail.incident.as_ref().is_some_and(|i| i.ledgered);
        for task in &mut detail.tasks {
            if let Some(state) = &task.state {
                task.verbs = tasks::verbs(
                    &principal,
                    state,
                    incident_status,
                    detail.reopen_count,
                    ledgered,
                )?;
            }
        }
        contacts::show(
            &self.pool,
            self.keyring.as_deref(),
            &principal,
            &mut detail,
            self.clock.now(),
        )
        .await?;
        Ok(Response::new(detail))
    }

    async fn list_overdue(
        &self,
        request: Request<v1::ListOverdueRequest>,
    ) -> Result<Response<v1::ListOverdueResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let area = principal.read_area("area_code", &request.get_ref().area_code)?;
        let limit = overdue::limit(request.get_ref().page_size)?;
        let now = self.clock.now();
        // Up to 5,000 items built from memory: CPU, on the board threads like a live board.
        let aggregates = self.aggregates.clone();
        let live_area = area.clone();
        let live = self
            .boards
            .run(move || aggregates.overdue(&live_area, limit, now))
            .await?;
        if let Some(items) = live {
            return Ok(Response::new(items));
        }
        // While the aggregates load, PostgreSQL answers, as one of the heavy reads.
        let _turn = turn(&self.heavy_reads).await?;
        let area = &area;
        let items = self
            .replica
            .read(&principal, |pool| async move {
                overdue::list(&pool, area, limit, now).await
            })
            .await?;
        Ok(Response::new(items))
    }

    async fn list_ledger(
        &self,
        request: Request<v1::ListLedgerRequest>,
    ) -> Result<Response<v1::ListLedgerResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let area = principal.read_area("area_code", &request.get_ref().area_code)?;
        let limit = ledger::limit(request.get_ref().page_size)?;
        let (policy, area, now) = (&self.policy.get(), &area, self.clock.now());
        let items = self
            .replica
            .read(&principal, |pool| async move {
                ledger::list(&pool, policy, area, limit, now).await
            })
            .await?;
        Ok(Response::new(items))
    }

    async fn get_scoreboard(
        &self,
        request: Request<v1::GetScoreboardRequest>,
    ) -> Result<Response<v1::Scoreboard>, Status> {
        let principal = self.auth.principal(&request).await?;
        let mut request = request.into_inner();
        request.area_code = principal
            .read_area("area_code", &request.area_code)?
            .to_string();
        // One instant for the default month and the "due by now" bound, so they agree.
        let now = self.clock.now();
        let query = scoreboard::Query::parse(&request, now)?;
        let scoring = self.policy.get().scoring();
        let aggregates = self.aggregates.clone();
        let (query, live) = self
            .boards
            .run(move || {
                let live = aggregates.scoreboard(&query, &scoring, now);
                (query, live)
            })
            .await?;
        if let Some(board) = live? {
            return Ok(Response::new(board));
        }
        // A month older than the live rows kept, or the channel board: by SQL, a heavy read like
        // ListOverdue.
        let _turn = turn(&self.heavy_reads).await?;
        let (query, scoring) = (&query, &scoring);
        let board = self
            .replica
            .read(&principal, |pool| async move {
                scoreboard::read(&pool, query, scoring, now).await
            })
            .await?;
        Ok(Response::new(board))
    }

    async fn get_org_tree(
        &self,
        request: Request<v1::GetOrgTreeRequest>,
    ) -> Result<Response<v1::OrgNode>, Status> {
        // The org tree is the city's public structure: any valid token may read all of it
        // (a leader's incident drawer names places from it).
        let principal = self.auth.session_principal(&request).await?;
        let request = &request.into_inner();
        let tree = self
            .replica
            .read(&principal, |pool| async move {
                org_tree::read(&pool, &request.root_code, request.depth).await
            })
            .await?;
        Ok(Response::new(tree))
    }

    async fn get_session(
        &self,
        request: Request<v1::GetSessionRequest>,
    ) -> Result<Response<v1::Session>, Status> {
        let principal = self.auth.session_principal(&request).await?;
        Ok(Response::new(session::read(&self.pool, &principal).await?))
    }

    async fn get_trend(
        &self,
        request: Request<v1::GetTrendRequest>,
    ) -> Result<Response<v1::Trend>, Status> {
        let principal = self.auth.principal(&request).await?;
        let area = principal.read_area("area_code", &request.get_ref().area_code)?;
        let hours = trend::parse_hours(request.get_ref().hours)?;
        let trend = self.aggregates.trend(&area, hours, self.clock.now())?;
        Ok(Response::new(trend))
    }

    async fn get_grid_map(
        &self,
        request: Request<v1::GetGridMapRequest>,
    ) -> Result<Response<v1::GridMap>, Status> {
        let principal = self.auth.principal(&request).await?;
        let area = principal.read_area("area_code", &request.get_ref().area_code)?;
        let (aggregates, area, now) = (&self.aggregates, &area, self.clock.now());
        let map = self
            .replica
            .read(&principal, |pool| async move {
                grid_map::read(&pool, aggregates, area, now).await
            })
            .await?;
        Ok(Response::new(map))
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let query = &tasks::Query::parse(request.get_ref(), &principal)?;
        let (policy, now, caller) = (&self.policy.get(), self.clock.now(), &*principal);
        let tasks = self
            .replica
            .read(&principal, |pool| async move {
                tasks::list(&pool, policy, caller, query, now).await
            })
            .await?;
        Ok(Response::new(tasks))
    }

    async fn list_my_reports(
        &self,
        request: Request<v1::ListMyReportsRequest>,
    ) -> Result<Response<v1::ListMyReportsResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let (policy, now, caller) = (&self.policy.get(), self.clock.now(), &*principal);
        let keyring = self.keyring.as_deref();
        let page_size = request.get_ref().page_size;
        let reports = self
            .replica
            .read(&principal, |pool| async move {
                reports::list_mine(&pool, policy, keyring, caller, page_size, now).await
            })
            .await?;
        Ok(Response::new(reports))
    }

    async fn list_contact_access(
        &self,
        request: Request<v1::ListContactAccessRequest>,
    ) -> Result<Response<v1::ListContactAccessResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let page = contacts::list_access(&self.pool, &principal, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn get_catalogue(
        &self,
        request: Request<v1::GetCatalogueRequest>,
    ) -> Result<Response<v1::Catalogue>, Status> {
        // The catalogue is the policy every report is filed under: any valid token may read it
        // (a member's page and a leader's view name categories from it too).
        self.auth.session_principal(&request).await?;
        Ok(Response::new(catalogue::catalogue(&self.policy.get())))
    }

    async fn list_departments(
        &self,
        request: Request<v1::ListDepartmentsRequest>,
    ) -> Result<Response<v1::ListDepartmentsResponse>, Status> {
        // Like the org tree, the departments are the city's public structure.
        let principal = self.auth.principal(&request).await?;
        let area_code = request.get_ref().area_code.as_str();
        let departments = self
            .replica
            .read(&principal, |pool| async move {
                catalogue::departments(&pool, area_code).await
            })
            .await?;
        Ok(Response::new(v1::ListDepartmentsResponse { departments }))
    }

    async fn get_photo(
        &self,
        request: Request<v1::GetPhotoRequest>,
    ) -> Result<Response<v1::Photo>, Status> {
        let principal = self.auth.principal(&request).await?;
        let request = request.get_ref();
        // From the primary: a photo erased moments ago must not be served from a stale copy.
        let detail = self
            .incident(&principal, &request.incident_id, false)
            .await?;
        let photo = self
            .photos
            .serve(
                &self.pool,
                &principal,
                &detail,
                &request.photo_id,
                self.clock.now(),
            )
            .await?;
        Ok(Response::new(photo))
    }

    async fn list_notifications(
        &self,
        request: Request<v1::ListNotificationsRequest>,
    ) -> Result<Response<v1::ListNotificationsResponse>, Status> {
        let principal = self.auth.principal_or_leader(&request).await?;
        let (caller, request) = (&*principal, request.get_ref());
        let listed = self
            .replica
            .read(&principal, |pool| async move {
                notifications::list(&pool, caller, request).await
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn mark_notifications_read(
        &self,
        request: Request<v1::MarkNotificationsReadRequest>,
    ) -> Result<Response<v1::MarkNotificationsReadResponse>, Status> {
        let principal = self.auth.principal_or_leader(&request).await?;
        let marked =
            notifications::mark_read(&self.pool, &principal, request.get_ref(), self.clock.now())
                .await?;
        // The person's next ListNotifications must show them read, standby or not.
        if let Some(person) = &principal.person {
            self.replica.acted(person).await;
        }
        Ok(Response::new(marked))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::ListAuditEntriesRequest>,
    ) -> Result<Response<v1::ListAuditEntriesResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let page = audit::list(&self.pool, &principal, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn list_offers(
        &self,
        request: Request<v1::ListOffersRequest>,
    ) -> Result<Response<v1::ListOffersResponse>, Status> {
        let principal = self.auth.volunteer_principal(&request).await?;
        let (caller, request) = (&*principal, request.get_ref());
        // A member reads the primary: their own claim must show at once.
        let listed = crate::volunteers::list_offers(&self.pool, caller, request).await?;
        Ok(Response::new(listed))
    }

    async fn get_service_board(
        &self,
        request: Request<v1::GetServiceBoardRequest>,
    ) -> Result<Response<v1::ServiceBoard>, Status> {
        let principal = self.auth.volunteer_principal(&request).await?;
        let (caller, request, now) = (&*principal, request.get_ref(), self.clock.now());
        let board = self
            .replica
            .read(&principal, |pool| async move {
                crate::volunteers::service_board(&pool, caller, request, now).await
            })
            .await?;
        Ok(Response::new(board))
    }

    async fn list_people(
        &self,
        request: Request<v1::ListPeopleRequest>,
    ) -> Result<Response<v1::ListPeopleResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let (caller, request) = (&*principal, request.get_ref());
        let listed = self
            .replica
            .read(&principal, |pool| async move {
                people::list(&pool, caller, request).await
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn list_devices(
        &self,
        request: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let (caller, request) = (&*principal, request.get_ref());
        let listed = self
            .replica
            .read(&principal, |pool| async move {
                devices::list(&pool, caller, request).await
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn list_hotspots(
        &self,
        request: Request<v1::ListHotspotsRequest>,
    ) -> Result<Response<v1::ListHotspotsResponse>, Status> {
        let principal = self.auth.principal(&request).await?;
        let request = request.get_ref();
        let area = principal.read_area("area_code", &request.area_code)?;
        let month = hotspots::month(&request.month, self.clock.now())?;
        let params = hotspots::params(request.page_size)?;
        let policy = self.policy.get();
        // The month's stored proposal, once its first adoption stored it: the list stays the
        // one adopted from.
        let stored = {
            let principal = &principal;
            self.replica
                .read(principal, |pool| async move {
                    hotspots::stored(&pool, month).await
                })
                .await?
        };
        if let Some(mut proposal) = stored {
            proposal.candidates.retain(|c| area.contains(&c.grid));
            proposal.candidates.truncate(params.proposals);
            let mut response = hotspots::response(&area, &proposal, &policy);
            response.stored = true;
            self.mark_adopted(&principal, &mut response).await?;
            return Ok(Response::new(response));
        }
        // Two years of an area's reports: one of the heavy reads.
        let records = {
            let _turn = turn(&self.heavy_reads).await?;
            let (policy, area, params) = (&policy, &area, &params);
            self.replica
                .read(&principal, |pool| async move {
                    hotspots::history(&pool, policy, area, month, params).await
                })
                .await?
        };
        let proposal = self
            .boards
            .run(move || hotspot::propose(&records, month, &params))
            .await?;
        let mut response = hotspots::response(&area, &proposal, &policy);
        self.mark_adopted(&principal, &mut response).await?;
        Ok(Response::new(response))
    }

    async fn list_paired_incidents(
        &self,
        request: Request<v1::ListPairedIncidentsRequest>,
    ) -> Result<Response<v1::ListPairedIncidentsResponse>, Status> {
        self.paired_incidents(request).await
    }

    async fn get_party_panel(
        &self,
        request: Request<v1::GetPartyPanelRequest>,
    ) -> Result<Response<v1::PartyPanel>, Status> {
        let principal = self.auth.principal(&request).await?;
        // From the primary: the panel refreshes on an offer's event and must show its change.
        let panel =
            crate::party::panel(&self.pool, &principal, request.get_ref(), self.clock.now())
                .await?;
        Ok(Response::new(panel))
    }

    async fn get_hotspot_change(
        &self,
        request: Request<v1::GetHotspotChangeRequest>,
    ) -> Result<Response<v1::HotspotChange>, Status> {
        let principal = self.auth.principal(&request).await?;
        let request = request.get_ref();
        let (place, since, months) = hotspots::change_request(request)?;
        if !principal.may_see(&place.grid) {
            return Err(principal.outside(&place.grid).into());
        }
        let policy = self.policy.get();
        let change = {
            let (policy, place) = (&policy, &place);
            self.replica
                .read(&principal, |pool| async move {
                    hotspots::change(&pool, policy, place, since, months).await
                })
                .await?
        };
        Ok(Response::new(hotspots::change_response(
            request,
            &place,
            &change,
            self.clock.now(),
        )))
    }
}

impl CommandCenter {
    /// The leader's view, from the primary: a leader opening it after a notification expects
    /// the incident that caused it.
    pub(crate) async fn paired_incidents(
        &self,
        request: Request<v1::ListPairedIncidentsRequest>,
    ) -> Result<Response<v1::ListPairedIncidentsResponse>, Status> {
        let principal = self.auth.principal_or_leader(&request).await?;
        let listed = paired::list(
            &self.pool,
            &self.policy.get(),
            &principal,
            request.get_ref(),
            self.clock.now(),
        )
        .await?;
        Ok(Response::new(listed))
    }
}

/// Waits for a turn of `turns`; the semaphore closes only at shutdown.
async fn turn(turns: &tokio::sync::Semaphore) -> crate::Result<tokio::sync::SemaphorePermit<'_>> {
    turns
        .acquire()
        .await
        .map_err(|_| Error::Unavailable("the service is shutting down".into()))
}
