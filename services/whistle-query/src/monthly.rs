//! `GET /reports/monthly?month=YYYY-MM&area=CODE&format=xlsx|pdf`: the monthly assessment report
//! (月度考核通报, crates/report, docs/report.md) as a download for the console, on the console's
//! listener with the console's credential (`authorization: Bearer …`).
//!
//! The figures are read by calling this service's own `GetScoreboard` and `GetOrgTree` handlers
//! with the request's authorization, so the download is scoped and refused exactly as those RPCs
//! are (an area outside the token's is 403, a bad month 400, no token 401) and carries the same
//! figures the CLI's `whistle report monthly` writes. Making the files is CPU work (the PDF's
//! charts and font subset), done off the async workers.

use std::sync::{Arc, OnceLock};

use axum::{
    extract::Query,
    response::{IntoResponse, Response},
};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use tonic::{metadata::MetadataValue, Request};
use whistle_proto::v1;
use whistle_report::{Font, Refused, Source};

use crate::{
    command_center::CommandCenter, generated::command_center_server::CommandCenter as Handlers,
};

pub(crate) const PATH: &str = "/reports/monthly";

pub(crate) const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
pub(crate) const PDF: &str = "application/pdf";

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    month: String,
    #[serde(default)]
    area: String,
    format: String,
}

/// This service's handlers, called with the download's authorization.
struct InProcess<'a> {
    handlers: &'a CommandCenter,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl InProcess<'_> {
    fn request<T>(&self, body: T) -> Request<T> {
        let mut request = Request::new(body);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

impl Source for InProcess<'_> {
    async fn scoreboard(
        &mut self,
        request: v1::GetScoreboardRequest,
    ) -> Result<v1::Scoreboard, tonic::Status> {
        Handlers::get_scoreboard(self.handlers, self.request(request))
            .await
            .map(|r| r.into_inner())
    }

    async fn org_tree(
        &mut self,
        request: v1::GetOrgTreeRequest,
    ) -> Result<v1::OrgNode, tonic::Status> {
        Handlers::get_org_tree(self.handlers, self.request(request))
            .await
            .map(|r| r.into_inner())
    }

    async fn catalogue(&mut self) -> Result<v1::Catalogue, tonic::Status> {
        Handlers::get_catalogue(self.handlers, self.request(v1::GetCatalogueRequest {}))
            .await
            .map(|r| r.into_inner())
    }
}

/// The font, read once (the first PDF asked for); a missing font is said on every request.
fn font() -> Result<Font, String> {
    static FONT: OnceLock<Result<Font, String>> = OnceLock::new();
    FONT.get_or_init(|| Font::load().map_err(|e| format!("{e:#}")))
        .clone()
}

pub(crate) async fn download(
    handlers: Arc<CommandCenter>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let (content_type, extension) = match params.format.as_str() {
        "xlsx" => (XLSX, "xlsx"),
        "pdf" => (PDF, "pdf"),
        other => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("format: {other:?} is neither xlsx nor pdf"),
            )
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut source = InProcess {
        handlers: &handlers,
        authorization,
    };
    let now = handlers.clock.now();
    let report = match whistle_report::gather(&mut source, &params.area, &params.month, now).await {
        Ok(report) => report,
        Err(e) => return failure(e),
    };
    let name = whistle_report::file_name(&report, extension);
    let made = tokio::task::spawn_blocking(move || match extension {
        "xlsx" => whistle_report::xlsx(&report),
        _ => {
            let font = font().map_err(anyhow::Error::msg)?;
            whistle_report::pdf(&report, &font)
        }
    })
    .await;
    let bytes = match made {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return failure(e),
        Err(e) => return failure(anyhow::anyhow!("the report's task: {e}")),
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .expect("report file names are ASCII");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response()
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// A refused call keeps its code; anything else is logged and answered 500 without detail.
fn failure(error: anyhow::Error) -> Response {
    if let Some(refused) = error.downcast_ref::<Refused>() {
        let status = match refused.status.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return plain(status, refused.status.message().to_owned());
    }
    tracing::error!(error = format!("{error:#}"), "monthly report");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the report could not be made; the query service's log says why".into(),
    )
}
