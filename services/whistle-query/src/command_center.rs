//! The `whistle.v1.CommandCenter` handlers: parse the request, read, answer. Errors become
//! `tonic::Status` through `From<Error>` (error.rs), nowhere else.
//!
//! `WatchEvents` is not implemented here: the generated trait's default answers UNIMPLEMENTED for
//! it (see build.rs).

use std::sync::Arc;

use sqlx::PgPool;
use tonic::{Request, Response, Status};
use whistle_dispatch::Clock;
use whistle_domain::policy::Policy;
use whistle_proto::v1;

use crate::{
    area,
    generated::command_center_server,
    incidents::{self, Filter},
    org_tree, overdue, overview, scoreboard,
};

/// The handlers' shared state; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct CommandCenter {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    /// For category names; incidents keep their own policy version.
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
}

#[tonic::async_trait]
impl command_center_server::CommandCenter for CommandCenter {
    async fn get_overview(
        &self,
        request: Request<v1::GetOverviewRequest>,
    ) -> Result<Response<v1::Overview>, Status> {
        let request = request.into_inner();
        let area = area::parse_optional("area_code", &request.area_code)?;
        let window = overview::parse_window(request.window.as_ref())?;
        let overview = overview::read(
            &self.pool,
            &request.area_code,
            area.as_ref(),
            window,
            self.clock.now(),
        )
        .await?;
        Ok(Response::new(overview))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        let filter = Filter::parse(request.get_ref())?;
        let page = incidents::list(&self.pool, &self.policy, &filter, self.clock.now()).await?;
        Ok(Response::new(page))
    }

    async fn get_incident(
        &self,
        request: Request<v1::GetIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        let detail = incidents::get(
            &self.pool,
            &self.policy,
            &request.get_ref().incident_id,
            self.clock.now(),
        )
        .await?;
        Ok(Response::new(detail))
    }

    async fn list_overdue(
        &self,
        request: Request<v1::ListOverdueRequest>,
    ) -> Result<Response<v1::ListOverdueResponse>, Status> {
        let area = area::parse_optional("area_code", &request.get_ref().area_code)?;
        let items = overdue::list(&self.pool, area.as_ref(), self.clock.now()).await?;
        Ok(Response::new(items))
    }

    async fn get_scoreboard(
        &self,
        request: Request<v1::GetScoreboardRequest>,
    ) -> Result<Response<v1::Scoreboard>, Status> {
        // One instant for the default month and the "due by now" bound, so they agree.
        let now = self.clock.now();
        let query = scoreboard::Query::parse(request.get_ref(), now)?;
        let board = scoreboard::read(&self.pool, &query, &self.policy.weights(), now).await?;
        Ok(Response::new(board))
    }

    async fn get_org_tree(
        &self,
        request: Request<v1::GetOrgTreeRequest>,
    ) -> Result<Response<v1::OrgNode>, Status> {
        let request = request.into_inner();
        let tree = org_tree::read(&self.pool, &request.root_code, request.depth).await?;
        Ok(Response::new(tree))
    }
}
