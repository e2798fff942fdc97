//! The org import's empty templates as downloads for the console (docs/operations.md, "The city's
//! organisation"): the workbook `GET /templates/org.xlsx` (单位, 部门, 人员 and 填写说明) and the grid
//! boundaries `GET /templates/grids.geojson`, the same files `whistle org template` writes. They
//! hold no data, but like every door they need a valid token (`authorization: Bearer …`).

use std::sync::Arc;

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use tonic::Request;

use crate::command_center::CommandCenter;

pub(crate) const WORKBOOK_PATH: &str = "/templates/org.xlsx";
pub(crate) const BOUNDARIES_PATH: &str = "/templates/grids.geojson";

/// Which template.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Template {
    Workbook,
    Boundaries,
}

pub(crate) async fn download(
    handlers: Arc<CommandCenter>,
    headers: HeaderMap,
    template: Template,
) -> Response {
    let mut request = Request::new(());
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    if let Err(e) = handlers.auth.principal(&request).await {
        let status = tonic::Status::from(e);
        let code = match status.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return (code, format!("{}\n", status.message())).into_response();
    }
    let (bytes, content_type, ascii_name, name) = match template {
        Template::Workbook => match whistle_orgfile::template_xlsx() {
            Ok(bytes) => (
                bytes,
                crate::monthly::XLSX,
                "whistle-org-template.xlsx",
                whistle_orgfile::WORKBOOK_FILE,
            ),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the org template workbook");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the template could not be made; the query service's log says why\n",
                )
                    .into_response();
            }
        },
        Template::Boundaries => (
            whistle_orgfile::template_geojson(),
            "application/geo+json",
            "whistle-grids-template.geojson",
            whistle_orgfile::BOUNDARIES_FILE,
        ),
    };
    // The Chinese name for browsers (RFC 6266's filename*), an ASCII one for the rest.
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{}",
        percent_encode(name)
    ))
    .expect("an ASCII header");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chinese_file_name_is_percent_encoded_as_utf8() {
        assert_eq!(
            percent_encode("组织机构.xlsx"),
            "%E7%BB%84%E7%BB%87%E6%9C%BA%E6%9E%84.xlsx"
        );
        assert_eq!(percent_encode("a b"), "a%20b");
    }
}
