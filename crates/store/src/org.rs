//! The org tree, departments and people in PostgreSQL: idempotent seeding and loading.

use sqlx::{PgPool, Row};
use whistle_domain::{Department, DepartmentKind, OrgDataset, OrgUnit, Person, Role};

use crate::{Error, Result};

/// What `seed` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedCounts {
    pub units: u64,
    pub departments: u64,
    pub people: u64,
}

/// Upserts the whole dataset in one transaction. Running it again with the same dataset changes
/// nothing; with an edited one it updates names, classes and coordinates in place.
pub async fn seed(pool: &PgPool, dataset: &OrgDataset) -> Result<SeedCounts> {
    let mut tx = pool.begin().await?;
    let units = &dataset.units;
    let units_written = sqlx::query(
        "INSERT INTO org_units (code, parent_code, level, name, classification, lat, lon)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[])
         ON CONFLICT (code) DO UPDATE SET
             parent_code = EXCLUDED.parent_code, level = EXCLUDED.level, name = EXCLUDED.name,
             classification = EXCLUDED.classification, lat = EXCLUDED.lat, lon = EXCLUDED.lon
         WHERE (org_units.parent_code, org_units.level, org_units.name, org_units.classification, org_units.lat, org_units.lon)
               IS DISTINCT FROM (EXCLUDED.parent_code, EXCLUDED.level, EXCLUDED.name, EXCLUDED.classification, EXCLUDED.lat, EXCLUDED.lon)",
    )
    .bind(units.iter().map(|u| u.code.to_string()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.code.parent().map(|p| p.to_string())).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.level().as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.classification.as_str()).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.lat).collect::<Vec<_>>())
    .bind(units.iter().map(|u| u.lon).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?
    .rows_affected();

    let departments = &dataset.departments;
    let departments_written = sqlx::query(
        "INSERT INTO departments (code, name, kind, area_code)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, area_code = EXCLUDED.area_code
         WHERE (departments.name, departments.kind, departments.area_code)
               IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.area_code)",
    )
    .bind(departments.iter().map(|d| d.code.to_string()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.name.as_str()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.kind.slug()).collect::<Vec<_>>())
    .bind(departments.iter().map(|d| d.area.to_string()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?
    .rows_affected();

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
    let people_written = sqlx::query(
        "INSERT INTO people (id, name, phone, role, grid_code, department_code, area_code)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, role = EXCLUDED.role,
             grid_code = EXCLUDED.grid_code, department_code = EXCLUDED.department_code, area_code = EXCLUDED.area_code
         WHERE (people.name, people.phone, people.role, people.grid_code, people.department_code, people.area_code)
               IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.phone, EXCLUDED.role, EXCLUDED.grid_code, EXCLUDED.department_code, EXCLUDED.area_code)",
    )
    .bind(people.iter().map(|p| p.id.to_string()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.phone.as_str()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.role.kind()).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "grid")).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "department")).collect::<Vec<_>>())
    .bind(people.iter().map(|p| target(p, "area")).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?
    .rows_affected();

    tx.commit().await?;
    Ok(SeedCounts {
        units: units_written,
        departments: departments_written,
        people: people_written,
    })
}

/// Reads the whole org dataset, parents before children.
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
        "SELECT id, name, phone, role, grid_code, department_code, area_code FROM people ORDER BY id",
    )
    .fetch_all(pool)
    .await?
    {
        let id: String = row.get("id");
        let role: String = row.get("role");
        // The column that names what the role is about, parsed as `T`.
        fn target<T: std::str::FromStr>(row: &sqlx::postgres::PgRow, id: &str, column: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            let raw: Option<String> = row.get(column);
            let raw = raw.ok_or_else(|| Error::Corrupt(format!("people.{column} missing for {id}")))?;
            raw.parse().map_err(|e| Error::Corrupt(format!("people.{column} of {id}: {e}")))
        }
        let role = match role.as_str() {
            "grid_worker" => Role::GridWorker { grid: target(&row, &id, "grid_code")? },
            "liaison" => Role::Liaison { department: target(&row, &id, "department_code")? },
            "operator" => Role::Operator { area: target(&row, &id, "area_code")? },
            "handler" => Role::Handler { unit: target(&row, &id, "area_code")? },
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
