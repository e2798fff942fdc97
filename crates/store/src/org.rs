//! The org tree, departments and people in PostgreSQL: idempotent seeding and loading.

use sqlx::{PgPool, Row};
use whistle_domain::{Department, DepartmentKind, OrgDataset, OrgUnit, Person, Role};

use crate::{
    audit::{self, Actor, Entry},
    Error, Result,
};

/// What `seed` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedCounts {
    pub units: u64,
    pub departments: u64,
    pub people: u64,
}

/// The audit log's rows of one upsert: `(key, area, before, after)` of each row it wrote, from a
/// statement of the form `WITH new AS (…), old AS (rows of new's keys), up AS (INSERT … RETURNING
/// *) SELECT …` — every part of one statement sees the table as it was before it, so `old` holds
/// the rows before the change.
fn changes(
    rows: &[sqlx::postgres::PgRow],
    action: &'static str,
    mask_phone: bool,
) -> Result<Vec<Entry>> {
    let masked = |value: Option<serde_json::Value>| {
        value.map(|mut v| {
            if let Some(phone) = v.get_mut("phone").filter(|_| mask_phone) {
                // Staff's phone numbers are personal data too: the log says that one changed.
                let shown = whistle_domain::contact::mask(phone.as_str().unwrap_or_default());
                *phone = serde_json::Value::String(shown);
            }
            v
        })
    };
    rows.iter()
        .map(|row| {
            Ok(Entry {
                action,
                target: row.try_get("key")?,
                area_code: row
                    .try_get::<Option<String>, _>("area")?
                    .unwrap_or_default(),
                before: masked(row.try_get("before")?),
                after: masked(row.try_get("after")?),
            })
        })
        .collect()
}

/// Upserts the whole dataset in one transaction, each unit, department and person written on
/// the audit log (`org.unit`, `org.department`, `org.person`, before and after). Running it again
/// with the same dataset changes nothing and records nothing; with an edited one it updates
/// names, classes and coordinates in place.
pub async fn seed(pool: &PgPool, dataset: &OrgDataset, actor: &Actor) -> Result<SeedCounts> {
    let mut tx = pool.begin().await?;
    let now = chrono::Utc::now();
    let units = &dataset.units;
    let unit_rows = sqlx::query(
        "WITH new AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[])
                 AS n(code, parent_code, level, name, classification, lat, lon)),
         old AS (SELECT u.* FROM org_units u JOIN new USING (code)),
         up AS (
             INSERT INTO org_units (code, parent_code, level, name, classification, lat, lon)
             SELECT * FROM new
             ON CONFLICT (code) DO UPDATE SET
                 parent_code = EXCLUDED.parent_code, level = EXCLUDED.level, name = EXCLUDED.name,
                 classification = EXCLUDED.classification, lat = EXCLUDED.lat, lon = EXCLUDED.lon
             WHERE (org_units.parent_code, org_units.level, org_units.name, org_units.classification, org_units.lat, org_units.lon)
                   IS DISTINCT FROM (EXCLUDED.parent_code, EXCLUDED.level, EXCLUDED.name, EXCLUDED.classification, EXCLUDED.lat, EXCLUDED.lon)
             RETURNING *)
         SELECT up.code AS key, up.code AS area,
                (SELECT to_jsonb(o) FROM old o WHERE o.code = up.code) AS before, to_jsonb(up) AS after
         FROM up",
    )
    .bind(units.iter().map(|u| u.code.to_string()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.code.parent().map(|p| p.to_string())).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.level().as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.classification.as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.lat).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.lon).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;

    let departments = &dataset.departments;
    let department_rows = sqlx::query(
        "WITH new AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
                 AS n(code, name, kind, area_code)),
         old AS (SELECT d.* FROM departments d JOIN new USING (code)),
         up AS (
             INSERT INTO departments (code, name, kind, area_code)
             SELECT * FROM new
             ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, area_code = EXCLUDED.area_code
             WHERE (departments.name, departments.kind, departments.area_code)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.area_code)
             RETURNING *)
         SELECT up.code AS key, up.area_code AS area,
                (SELECT to_jsonb(o) FROM old o WHERE o.code = up.code) AS before, to_jsonb(up) AS after
         FROM up",
    )
    .bind(departments.iter().map(|d| d.code.to_string()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.name.as_str()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.kind.slug()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.area.to_string()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;

    let people = &dataset.people;
    let target = |p: &Person, want: &str| -> Option<String> {
        match (&p.role, want) {
            (Role::GridWorker { grid }, "grid") => Some(grid.to_string()),
            (Role::Liaison { department }, "department") => Some(department.to_string()),
            (Role::Operator { area } | Role::Handler { unit: area }, "area") => {
                Some(area.to_string())
            }
            _ => None,
        }
    };
    // Only the org columns: a person's notification settings are not the dataset's.
    let people_rows = sqlx::query(
        "WITH new AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                 AS n(id, name, phone, role, grid_code, department_code, area_code)),
         old AS (SELECT p.id, p.name, p.phone, p.role, p.grid_code, p.department_code, p.area_code
                 FROM people p JOIN new USING (id)),
         up AS (
             INSERT INTO people (id, name, phone, role, grid_code, department_code, area_code)
             SELECT * FROM new
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, role = EXCLUDED.role,
                 grid_code = EXCLUDED.grid_code, department_code = EXCLUDED.department_code, area_code = EXCLUDED.area_code
             WHERE (people.name, people.phone, people.role, people.grid_code, people.department_code, people.area_code)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.phone, EXCLUDED.role, EXCLUDED.grid_code, EXCLUDED.department_code, EXCLUDED.area_code)
             RETURNING id, name, phone, role, grid_code, department_code, area_code)
         SELECT up.id AS key,
                coalesce(up.area_code, up.grid_code,
                         (SELECT d.area_code FROM departments d WHERE d.code = up.department_code)) AS area,
                (SELECT to_jsonb(o) FROM old o WHERE o.id = up.id) AS before, to_jsonb(up) AS after
         FROM up",
    )
    .bind(people.iter().map(|p| p.id.to_string()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.phone.as_str()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.role.kind()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "grid")).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "department")).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "area")).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;

    let mut entries = changes(&unit_rows, audit::action::ORG_UNIT, false)?;
    entries.extend(changes(
        &department_rows,
        audit::action::ORG_DEPARTMENT,
        false,
    )?);
    entries.extend(changes(&people_rows, audit::action::ORG_PERSON, true)?);
    audit::record(&mut tx, actor, now, &entries).await?;
    tx.commit().await?;
    Ok(SeedCounts {
        units: unit_rows.len() as u64,
        departments: department_rows.len() as u64,
        people: people_rows.len() as u64,
    })
}

/// Reads the whole org dataset, parents before children, with the people who have not left
/// (those who left act no more: no command, report or notification finds them).
pub async fn load(pool: &PgPool) -> Result<OrgDataset> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| Error::Corrupt(format!("{what}: {e}"));

    let mut units = Vec::new();
    let rows = sqlx::query(
        "SELECT code, name, classification, lat, lon FROM org_units ORDER BY length(code), code",
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        let code: String = row.get("code");
        units.push(OrgUnit {
            code: code.parse().map_err(|e| corrupt("org_units.code", &e))?,
            name: row.get("name"),
            classification: row.get("classification"),
            lat: row.get("lat"),
            lon: row.get("lon"),
        });
    }

    let mut departments = Vec::new();
    for row in sqlx::query("SELECT code, name, kind, area_code FROM departments ORDER BY code")
        .fetch_all(pool)
        .await?
    {
        let code: String = row.get("code");
        let kind: String = row.get("kind");
        let area: String = row.get("area_code");
        departments.push(Department {
            code: code.parse().map_err(|e| corrupt("departments.code", &e))?,
            name: row.get("name"),
            kind: DepartmentKind::from_slug(&kind)
                .ok_or_else(|| corrupt("departments.kind", &kind))?,
            area: area
                .parse()
                .map_err(|e| corrupt("departments.area_code", &e))?,
        });
    }

    let mut people = Vec::new();
    for row in sqlx::query(
        "SELECT id, name, phone, role, grid_code, department_code, area_code FROM people
         WHERE left_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?
    {
        let id: String = row.get("id");
        let role: String = row.get("role");
        // The column that names what the role is about, parsed as `T`.
        fn target<T: std::str::FromStr>(
            row: &sqlx::postgres::PgRow,
            id: &str,
            column: &str,
        ) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            let raw: Option<String> = row.get(column);
            let raw =
                raw.ok_or_else(|| Error::Corrupt(format!("people.{column} missing for {id}")))?;
            raw.parse()
                .map_err(|e| Error::Corrupt(format!("people.{column} of {id}: {e}")))
        }
        let role = match role.as_str() {
            "grid_worker" => Role::GridWorker {
                grid: target(&row, &id, "grid_code")?,
            },
            "liaison" => Role::Liaison {
                department: target(&row, &id, "department_code")?,
            },
            "operator" => Role::Operator {
                area: target(&row, &id, "area_code")?,
            },
            "handler" => Role::Handler {
                unit: target(&row, &id, "area_code")?,
            },
            other => return Err(corrupt("people.role", &other)),
        };
        people.push(Person {
            id: id.parse().map_err(|e| corrupt("people.id", &e))?,
            name: row.get("name"),
            phone: row.get("phone"),
            role,
        });
    }
    Ok(OrgDataset {
        units,
        departments,
        people,
    })
}
