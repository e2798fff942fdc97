//! `ListPeople`: the people posted inside an area, for operators of that area (the console's
//! 人员管理). Read-only like the rest of the service: onboarding, transfers and offboarding are
//! `whistle people` (docs/operations.md, "People come and go").

use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::{people, tokens::Role};
use whistle_wire::convert::timestamp;

use crate::{auth::Principal, contacts::store, Error, Result};

pub(crate) async fn list(
    pool: &sqlx::PgPool,
    principal: &Principal,
    request: &v1::ListPeopleRequest,
) -> Result<v1::ListPeopleResponse> {
    if principal.role != Role::Operator {
        return Err(Error::PermissionDenied(format!(
            "only operator tokens list people; this is a {} token",
            principal.role.as_str()
        )));
    }
    let area = principal.read_area("area_code", &request.area_code)?;
    let filter = people::Filter {
        area_prefix: (area.level() != Level::City).then(|| area.prefix().to_owned()),
        include_left: request.include_left,
    };
    let listed = people::list(pool, &filter).await.map_err(store)?;
    Ok(v1::ListPeopleResponse {
        people: listed
            .into_iter()
            .map(|person| v1::PersonEntry {
                post: people::post(&person.role),
                role: person.role.kind().to_owned(),
                phone_masked: whistle_domain::contact::mask(&person.phone),
                joined_at: person.joined_at.map(timestamp),
                left_at: person.left_at.map(timestamp),
                successor_id: person.successor_id.unwrap_or_default(),
                deputy_id: person.deputy_id.unwrap_or_default(),
                post_name: person.post_name,
                name: person.name,
                person_id: person.id,
            })
            .collect(),
    })
}
