//! `ListAuditEntries`: the audit log of administration (whistle_store::audit), for operators,
//! within their area. The installation's own entries (migrations, the database roles, the contact
//! keys: no area) belong to the whole city, so only a city operator asking for the city sees them.

use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::{audit, tokens::Role};
use whistle_wire::convert::{timestamp, timestamp_from_proto};

use crate::{
    auth::Principal,
    contacts::store,
    page_token::{self, Cursor},
    Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Longest text filter accepted (ids and codes are far shorter).
const MAX_FILTER: usize = 200;

pub(crate) async fn list(
    pool: &sqlx::PgPool,
    principal: &Principal,
    request: &v1::ListAuditEntriesRequest,
) -> Result<v1::ListAuditEntriesResponse> {
    if principal.role != Role::Operator {
        return Err(Error::PermissionDenied(format!(
            "only operator tokens list the audit log; this is a {} token",
            principal.role.as_str()
        )));
    }
    let area = principal.read_area("area_code", &request.area_code)?;
    let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let text = |field: &str, value: &str| -> Result<Option<String>> {
        if value.len() > MAX_FILTER {
            return Err(Error::invalid(format!(
                "{field} is longer than {MAX_FILTER} bytes"
            )));
        }
        Ok((!value.is_empty()).then(|| value.to_owned()))
    };
    let time = |field: &str, value: &Option<prost_types::Timestamp>| {
        value
            .as_ref()
            .map(|t| {
                timestamp_from_proto(t)
                    .ok_or_else(|| Error::invalid(format!("{field} is not a valid time")))
            })
            .transpose()
    };
    let before = if request.page_token.is_empty() {
        None
    } else {
        let cursor = Cursor::decode(&request.page_token)?;
        Some((cursor.created_at, cursor.id))
    };
    let filter = audit::Filter {
        // The whole city's operator sees everything, the installation's entries included; any
        // other area is a prefix of the org codes the entries name.
        area_prefix: (area.level() != Level::City).then(|| area.prefix().to_owned()),
        actor: text("actor", &request.actor)?,
        action: text("action", &request.action)?,
        target: text("target", &request.target)?,
        since: time("since", &request.since)?,
        until: time("until", &request.until)?,
        before,
        limit: page_size + 1,
    };
    let mut rows = audit::list(pool, &filter).await.map_err(store)?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => Cursor {
            created_at: last.at,
            id: last.id,
        }
        .encode(),
        _ => String::new(),
    };
    let json = |value: Option<serde_json::Value>| value.map(|v| v.to_string()).unwrap_or_default();
    Ok(v1::ListAuditEntriesResponse {
        entries: rows
            .into_iter()
            .map(|row| v1::AuditEntry {
                entry_id: row.id.to_string(),
                at: Some(timestamp(row.at)),
                actor: row.actor,
                os_user: row.os_user.unwrap_or_default(),
                db_role: row.db_role,
                token_id: row.token_id.map(|t| t.to_string()).unwrap_or_default(),
                door: row.door,
                action: row.action,
                target: row.target,
                area_code: row.area_code,
                before_json: json(row.before),
                after_json: json(row.after),
            })
            .collect(),
        next_page_token,
    })
}
