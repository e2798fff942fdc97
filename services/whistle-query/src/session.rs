//! `GetSession`: who a token belongs to, with display names, so a console can route its user to
//! the views their role may see. Every role the console serves may ask, members and leaders
//! included (their pages are `#/offers` and `#/paired`).

use sqlx::{PgPool, Row};
use whistle_domain::volunteer;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::{auth::Principal, convert, Error, Result};

pub(crate) async fn read(pool: &PgPool, principal: &Principal) -> Result<v1::Session> {
    let row = sqlx::query(
        "SELECT t.expires_at, o.name AS area_name, coalesce(d.name, '') AS department_name,
                coalesce(p.name, '') AS person_name
         FROM api_tokens t
         JOIN org_units o ON o.code = t.area_code
         LEFT JOIN departments d ON d.code = t.department_code
         LEFT JOIN people p ON p.id = t.person_id
         WHERE t.id = $1",
    )
    .bind(principal.token_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::Unauthenticated("the token no longer exists".into()))?;
    Ok(v1::Session {
        role: principal.role.as_str().to_owned(),
        area_code: principal.area.to_string(),
        area_name: row.try_get("area_name")?,
        department_code: principal.department.clone().unwrap_or_default(),
        department_name: row.try_get("department_name")?,
        person_id: principal.person.clone().unwrap_or_default(),
        person_name: match principal.role {
            // A member's name is masked wherever it is shown (docs/party.md, item 7), their own
            // phone page too: the page may be open on a shared phone.
            Role::Member => volunteer::mask_name(&row.try_get::<String, _>("person_name")?),
            _ => row.try_get("person_name")?,
        },
        expires_at: row
            .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("expires_at")?
            .map(convert::timestamp),
    })
}
