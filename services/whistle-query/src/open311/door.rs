//! The routes of the door, its keys and its errors: every resource is `{name}.json` or
//! `{name}.xml`, every call needs a key (the `api_key` parameter or field, or an
//! `authorization: Bearer` header), and every failure is the spec's list of `{code, description}`
//! in the format asked for (JSON when the resource names none).

use std::{borrow::Cow, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use sqlx::PgPool;
use whistle_wire::Clock;

use super::{
    catalogue,
    format::{Format, Node},
    requests, submit,
};
use crate::{
    auth::{Auth, Principal},
    catalogue::RunningPolicy,
    reports::Reporting,
    Error,
};

/// Where the door is served; discovery names its endpoint from here.
pub(crate) const BASE: &str = "/open311/v2";

/// What the door's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct Open311 {
    pub auth: Auth,
    pub pool: PgPool,
    pub reporting: Reporting,
    pub policy: RunningPolicy,
    pub clock: Arc<dyn Clock>,
    /// `https` when the listener speaks TLS, for the endpoint discovery names.
    pub scheme: &'static str,
}

/// The routes under [`BASE`].
pub(crate) fn router(door: Open311) -> Router {
    Router::new()
        .route(&format!("{BASE}/{{file}}"), get(top_get).post(top_post))
        .route(&format!("{BASE}/services/{{file}}"), get(service))
        .route(&format!("{BASE}/requests/{{file}}"), get(request))
        .route(&format!("{BASE}/tokens/{{file}}"), get(token))
        .with_state(Arc::new(door))
}

/// The parameters of a call: the query string, and for a POST the form body after it.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, body: &[u8]) -> Params {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .chain(form_urlencoded::parse(body))
            .map(|(k, v): (Cow<str>, Cow<str>)| (k.into_owned(), v.into_owned()))
            .collect();
        Params(pairs)
    }

    /// The last value of `name`, trimmed; empty counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every `attribute[code]=value`, in order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().filter_map(|(k, v)| {
            k.strip_prefix("attribute[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(|code| (code, v.trim()))
        })
    }
}

/// A failure as the spec answers it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub description: String,
}

impl Failure {
    pub fn bad_request(description: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            description: description.into(),
        }
    }

    pub fn not_found(description: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            description: description.into(),
        }
    }

    fn respond(&self, format: Format) -> Response {
        let error = Node::Object(vec![
            ("code", Node::Integer(i64::from(self.status.as_u16()))),
            ("description", Node::text(self.description.clone())),
        ]);
        Node::List("error", vec![error]).respond(self.status, format, "errors")
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let status = match &error {
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            // The spec answers a bad key 403, whatever is wrong with it.
            Error::Unauthenticated(_) | Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Reason(code, _, _) if *code == tonic::Code::ResourceExhausted => {
                StatusCode::TOO_MANY_REQUESTS
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %error, "open311 call failed");
            return Failure {
                status,
                description: "the server failed; its log says why".into(),
            };
        }
        Failure {
            status,
            description: error.to_string(),
        }
    }
}

/// A handler's answer: a document and its XML root, or a failure.
pub(crate) type Answer = Result<(Node, &'static str), Failure>;

/// The file's format, or a 404 in JSON for a name without one.
fn split(file: &str) -> Result<(&str, Format), Box<Response>> {
    Format::split(file).ok_or_else(|| {
        Box::new(
            Failure::not_found(format!(
                "no resource {file:?}: name it with .json or .xml, as services.json"
            ))
            .respond(Format::Json),
        )
    })
}

fn finish(format: Format, answer: Answer) -> Response {
    match answer {
        Ok((doc, root)) => doc.respond(StatusCode::OK, format, root),
        Err(failure) => failure.respond(format),
    }
}

impl Open311 {
    /// The key of the call, checked; 403 without one.
    pub async fn key(
        &self,
        params: &Params,
        headers: &HeaderMap,
    ) -> Result<Arc<Principal>, Failure> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(secret) = params.get("api_key").or(bearer) else {
            return Err(Failure {
                status: StatusCode::FORBIDDEN,
                description:
                    "api_key is required (a key of role open311 or hotline, from the city)".into(),
            });
        };
        Ok(self.auth.open311_key(secret).await?)
    }
}

async fn top_get(
    State(door): State<Arc<Open311>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (name, format) = match split(&file) {
        Ok(split) => split,
        Err(response) => return *response,
    };
    let params = Params::parse(query.as_deref(), &[]);
    let answer = async {
        let key = door.key(&params, &headers).await?;
        match name {
            "discovery" => Ok(catalogue::discovery(door.scheme, &headers)),
            "services" => Ok(catalogue::services(&door.policy.get())),
            "requests" => requests::list(&door, &key, &params).await,
            "servicerequestupdates" => requests::updates(&door, &key, &params).await,
            _ => Err(Failure::not_found(format!("no resource {name:?}"))),
        }
    }
    .await;
    finish(format, answer)
}

async fn top_post(
    State(door): State<Arc<Open311>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (name, format) = match split(&file) {
        Ok(split) => split,
        Err(response) => return *response,
    };
    let params = Params::parse(query.as_deref(), &body);
    let answer = async {
        let key = door.key(&params, &headers).await?;
        match name {
            "requests" => submit::file(&door, &key, &params).await,
            _ => Err(Failure {
                status: StatusCode::METHOD_NOT_ALLOWED,
                description: format!("{name} cannot be posted to; only requests can"),
            }),
        }
    }
    .await;
    finish(format, answer)
}

async fn service(
    State(door): State<Arc<Open311>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (code, format) = match split(&file) {
        Ok(split) => split,
        Err(response) => return *response,
    };
    let params = Params::parse(query.as_deref(), &[]);
    let answer = async {
        let key = door.key(&params, &headers).await?;
        catalogue::definition(&door.policy.get(), code, key.role)
    }
    .await;
    finish(format, answer)
}

async fn request(
    State(door): State<Arc<Open311>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (id, format) = match split(&file) {
        Ok(split) => split,
        Err(response) => return *response,
    };
    let params = Params::parse(query.as_deref(), &[]);
    let answer = async {
        let key = door.key(&params, &headers).await?;
        requests::one(&door, &key, id, &params).await
    }
    .await;
    finish(format, answer)
}

async fn token(
    State(door): State<Arc<Open311>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (token, format) = match split(&file) {
        Ok(split) => split,
        Err(response) => return *response,
    };
    let params = Params::parse(query.as_deref(), &[]);
    let answer = async {
        let key = door.key(&params, &headers).await?;
        requests::token(&door, &key, token).await
    }
    .await;
    finish(format, answer)
}
