//! `ListNotifications` and `MarkNotificationsRead`: a person's own notifications, which dispatch
//! writes (whistle_dispatch::notify). Only the caller's: the token's person is the filter.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use whistle_proto::v1;
use whistle_wire::convert::timestamp;

use crate::{auth::Principal, contacts::store, page_token, Error, Result};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 200;
/// Most ids one call may name.
const MAX_IDS: usize = 500;

fn person(principal: &Principal) -> Result<&str> {
    principal.person.as_deref().ok_or_else(|| {
        Error::PermissionDenied(format!(
            "a {} token belongs to no person and has no notifications",
            principal.role.as_str()
        ))
    })
}

pub(crate) async fn list(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::ListNotificationsRequest,
) -> Result<v1::ListNotificationsResponse> {
    let person = person(principal)?;
    let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let before = match &request.before {
        None => None,
        Some(t) => Some(
            DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .ok_or_else(|| Error::InvalidArgument("before: not a valid instant".into()))?,
        ),
    };
    let (listed, unread) =
        whistle_store::notifications::list(pool, person, i64::from(page_size), before)
            .await
            .map_err(store)?;
    Ok(v1::ListNotificationsResponse {
        notifications: listed
            .into_iter()
            .map(|n| v1::Notification {
                notification_id: n.id.to_string(),
                kind: n.kind,
                incident_id: n.incident_id.map(|id| id.to_string()).unwrap_or_default(),
                task_id: n.task_id.and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
                department_code: n.department_code.unwrap_or_default(),
                title: n.title,
                body: n.body,
                created_at: Some(timestamp(n.created_at)),
                read_at: n.read_at.map(timestamp),
                as_deputy: n.as_deputy,
            })
            .collect(),
        unread: u64::try_from(unread).unwrap_or(0),
    })
}

pub(crate) async fn mark_read(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::MarkNotificationsReadRequest,
    now: DateTime<Utc>,
) -> Result<v1::MarkNotificationsReadResponse> {
    let person = person(principal)?;
    if request.notification_ids.len() > MAX_IDS {
        return Err(Error::InvalidArgument(format!(
            "notification_ids: at most {MAX_IDS} at once"
        )));
    }
    let ids = request
        .notification_ids
        .iter()
        .map(|id| {
            id.parse::<Uuid>().map_err(|_| {
                Error::InvalidArgument(format!("notification_ids: {id:?} is not a UUID"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let marked = whistle_store::notifications::mark_read(pool, person, &ids, now)
        .await
        .map_err(store)?;
    Ok(v1::MarkNotificationsReadResponse { marked })
}
