//! Residents' contacts in `GetIncident`, and `ListContactAccess`.
//!
//! Dispatch stores a report's contact apart, sealed, with its mask (`whistle_store::contacts`).
//! This service is the only reader that opens them, and only for the roles that must call the
//! resident back: the grid worker who filed the report, the liaison of a department holding an
//! open task on the incident, and operators (whose area holds the incident, or they could not
//! read it). Everyone else gets the mask. Every contact shown whole is recorded in
//! `contact_access` before the answer leaves — the one table this read-only service writes, in a
//! transaction of its own opened read-write (docs/query.md).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use whistle_domain::incident::TaskStatus;
use whistle_proto::v1;
use whistle_store::{
    contacts::{self, Access, AccessFilter, Keyring},
    tokens::Role,
};

use crate::{
    auth::Principal,
    convert,
    page_token::{self, Cursor},
    Error, Result,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// The RPC recorded as the door of an unmasked read in `GetIncident`.
const GET_INCIDENT: &str = "GetIncident";

/// Whether `principal` may see the contact of `report` on `detail` whole.
fn may_unmask(principal: &Principal, detail: &v1::IncidentDetail, report: &v1::Report) -> bool {
    match principal.role {
        Role::Operator => true,
        Role::GridWorker => principal.person.as_deref() == Some(report.reporter_id.as_str()),
        Role::Liaison => principal.department.as_deref().is_some_and(|own| {
            detail
                .tasks
                .iter()
                .filter_map(|t| t.state.as_ref())
                .any(|task| task.department_code == own && in_progress(task.status))
        }),
        Role::Viewer
        | Role::Open311
        | Role::Hotline
        | Role::Member
        | Role::Leader
        | Role::Device => false,
    }
}

/// The task statuses in which a department still owes something (report-in or the work).
fn in_progress(status: i32) -> bool {
    TaskStatus::ALL
        .iter()
        .filter(|s| s.is_in_progress())
        .any(|&s| whistle_wire::convert::task_status_to_proto(s) as i32 == status)
}

/// Fills in the contacts of `detail`'s reports as `principal` may see them, recording the
/// unmasked ones first. Without a keyring everything stays masked.
pub(crate) async fn show(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    principal: &Principal,
    detail: &mut v1::IncidentDetail,
    now: DateTime<Utc>,
) -> Result<()> {
    for report in &mut detail.reports {
        // Reports stored before contacts were sealed apart may still carry one: masked too.
        report.contact_phone = whistle_domain::contact::mask(&report.contact_phone);
    }
    let Some(incident_id) = detail
        .incident
        .as_ref()
        .and_then(|i| i.incident_id.parse::<Uuid>().ok())
    else {
        return Ok(());
    };
    let mut conn = pool.acquire().await?;
    let stored = contacts::of_incident(&mut conn, incident_id)
        .await
        .map_err(store)?;
    drop(conn);
    if stored.is_empty() {
        return Ok(());
    }
    let mut reads = Vec::new();
    let mut shown = Vec::with_capacity(detail.reports.len());
    for report in &detail.reports {
        let Some(contact) = stored.iter().find(|c| c.report_id == report.report_id) else {
            shown.push(None);
            continue;
        };
        let whole = match keyring {
            Some(keyring) if may_unmask(principal, detail, report) => {
                reads.push(Access {
                    token_id: principal.token_id,
                    person_id: principal.person.clone(),
                    role: principal.role.as_str().to_owned(),
                    incident_id,
                    report_id: report.report_id.clone(),
                    door: GET_INCIDENT.to_owned(),
                    photo_id: String::new(),
                });
                Some(contact.open(keyring).map_err(store)?)
            }
            _ => None,
        };
        shown.push(Some(whole.unwrap_or_else(|| contact.masked.clone())));
    }
    // Recorded before the answer leaves: no whole contact without its row.
    contacts::record_access(pool, now, &reads)
        .await
        .map_err(store)?;
    for (report, shown) in detail.reports.iter_mut().zip(shown) {
        if let Some(shown) = shown {
            report.contact_phone = shown;
        }
    }
    Ok(())
}

/// `ListContactAccess`: operators only, within the area they name (default their own).
pub(crate) async fn list_access(
    pool: &PgPool,
    principal: &Principal,
    request: &v1::ListContactAccessRequest,
) -> Result<v1::ListContactAccessResponse> {
    if principal.role != Role::Operator {
        return Err(Error::PermissionDenied(format!(
            "only operator tokens list the contact access log; this is a {} token",
            principal.role.as_str()
        )));
    }
    let area = principal.read_area("area_code", &request.area_code)?;
    let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let incident_id = if request.incident_id.is_empty() {
        None
    } else {
        Some(request.incident_id.parse::<Uuid>().map_err(|_| {
            Error::invalid(format!(
                "incident_id {:?} is not a UUID",
                request.incident_id
            ))
        })?)
    };
    let before = if request.page_token.is_empty() {
        None
    } else {
        let cursor = Cursor::decode(&request.page_token)?;
        Some((cursor.created_at, cursor.id))
    };
    let mut rows = contacts::list_access(
        pool,
        &AccessFilter {
            // The grids' prefix: the city's code (150600) is not its districts' (150602…).
            area_code: Some(area.prefix().to_owned()),
            incident_id,
            before,
            limit: page_size + 1,
        },
    )
    .await
    .map_err(store)?;
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
    Ok(v1::ListContactAccessResponse {
        accesses: rows
            .into_iter()
            .map(|row| v1::ContactAccess {
                access_id: row.id.to_string(),
                at: Some(convert::timestamp(row.at)),
                token_id: row.read.token_id.to_string(),
                person_id: row.read.person_id.unwrap_or_default(),
                role: row.read.role,
                incident_id: row.read.incident_id.to_string(),
                report_id: row.read.report_id,
                door: row.read.door,
                photo_id: row.read.photo_id,
            })
            .collect(),
        next_page_token,
    })
}

pub(crate) fn store(e: whistle_store::Error) -> Error {
    match e {
        whistle_store::Error::Database(e) => Error::Database(e),
        other => Error::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, person: Option<&str>, department: Option<&str>) -> Principal {
        Principal {
            token_id: Uuid::nil(),
            role,
            area: "150602".parse().unwrap(),
            department: department.map(str::to_owned),
            person: person.map(str::to_owned),
            paired: Vec::new(),
        }
    }

    fn detail(task: Option<(&str, TaskStatus)>) -> v1::IncidentDetail {
        v1::IncidentDetail {
            tasks: task
                .into_iter()
                .map(|(department, status)| v1::Task {
                    state: Some(v1::TaskState {
                        department_code: department.into(),
                        status: whistle_wire::convert::task_status_to_proto(status) as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_callers_back_see_a_contact_whole() {
        let report = v1::Report {
            reporter_id: "gw-1".into(),
            ..Default::default()
        };
        let open = detail(Some(("heat-150602", TaskStatus::Accepted)));
        let returned = detail(Some(("heat-150602", TaskStatus::Returned)));
        let liaison = principal(Role::Liaison, Some("li-heat"), Some("heat-150602"));
        assert!(may_unmask(&liaison, &open, &report));
        assert!(may_unmask(
            &liaison,
            &detail(Some(("heat-150602", TaskStatus::Supervised))),
            &report
        ));
        assert!(!may_unmask(&liaison, &returned, &report));
        let other = principal(Role::Liaison, Some("li-water"), Some("water-150602"));
        assert!(!may_unmask(&other, &open, &report));
        assert!(may_unmask(
            &principal(Role::GridWorker, Some("gw-1"), None),
            &open,
            &report
        ));
        assert!(!may_unmask(
            &principal(Role::GridWorker, Some("gw-2"), None),
            &open,
            &report
        ));
        assert!(may_unmask(
            &principal(Role::Operator, Some("op"), None),
            &open,
            &report
        ));
        assert!(!may_unmask(
            &principal(Role::Viewer, None, None),
            &open,
            &report
        ));
    }
}
