//! `ListDevices`: the devices registered in an area, flagged ones first, for operators of that
//! area (docs/devices.md). Read-only like the rest of the service: devices are registered and
//! their flags cleared with `whistle devices`.

use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;
use whistle_wire::convert::timestamp;

use crate::{auth::Principal, contacts::store, Error, Result};

pub(crate) async fn list(
    pool: &sqlx::PgPool,
    principal: &Principal,
    request: &v1::ListDevicesRequest,
) -> Result<v1::ListDevicesResponse> {
    if principal.role != Role::Operator {
        return Err(Error::PermissionDenied(format!(
            "only operator tokens list devices; this is a {} token",
            principal.role.as_str()
        )));
    }
    let area = principal.read_area("area_code", &request.area_code)?;
    let scope = (area.level() != Level::City).then_some(&area);
    let listed = whistle_store::devices::list(pool, scope)
        .await
        .map_err(store)?;
    Ok(v1::ListDevicesResponse {
        devices: listed
            .into_iter()
            .map(|d| v1::DeviceEntry {
                kind: d.kind.slug().to_owned(),
                kind_name: d.kind.name_zh().to_owned(),
                grid_code: d.grid.to_string(),
                status: d.status,
                label: d.label,
                registered_at: Some(timestamp(d.registered_at)),
                flagged_at: d.flagged_at.map(timestamp),
                flag_reason: d.flag_reason.unwrap_or_default(),
                device_id: d.id,
            })
            .collect(),
    })
}
