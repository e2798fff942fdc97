//! The org tree, departments and people in PostgreSQL: idempotent seeding, loading, and imports
//! applied as numbered versions (docs/operations.md, "The city's organisation").

use sqlx::{PgConnection, PgPool, Row};
use whistle_domain::{
    org_sheets::{self, OrgInput, OrgState, Plan, Problem},
    Department, DepartmentKind, OrgDataset, OrgUnit, Person, Role,
};

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
    let (entries, counts) = upsert(&mut tx, dataset).await?;
    audit::record(&mut tx, actor, now, &entries).await?;
    tx.commit().await?;
    Ok(counts)
}

/// Inserts or updates the dataset's rows (units parents first), returning the audit entries of
/// the rows that changed and their counts.
async fn upsert(tx: &mut PgConnection, dataset: &OrgDataset) -> Result<(Vec<Entry>, SeedCounts)> {
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
            (
                Role::Operator { area } | Role::Handler { unit: area } | Role::Leader { area },
                "area",
            ) => Some(area.to_string()),
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
    let counts = SeedCounts {
        units: unit_rows.len() as u64,
        departments: department_rows.len() as u64,
        people: people_rows.len() as u64,
    };
    Ok((entries, counts))
}

/// Reads the whole org dataset, parents before children, with the people who have not left
/// (those who left act no more: no command, report or notification finds them). Registered Party
/// members are the registry's (`volunteers`), not the org's: tens of thousands of them never
/// enter dispatch's org index or an org import's comparison.
pub async fn load(pool: &PgPool) -> Result<OrgDataset> {
    load_from(&mut *pool.acquire().await?).await
}

/// [`load`] on a connection (an import's transaction).
pub async fn load_from(conn: &mut PgConnection) -> Result<OrgDataset> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| Error::Corrupt(format!("{what}: {e}"));

    let mut units = Vec::new();
    let rows = sqlx::query(
        "SELECT code, name, classification, lat, lon FROM org_units ORDER BY length(code), code",
    )
    .fetch_all(&mut *conn)
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
        .fetch_all(&mut *conn)
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
         WHERE left_at IS NULL AND role <> 'member' ORDER BY id",
    )
    .fetch_all(&mut *conn)
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
            "leader" => Role::Leader {
                area: target(&row, &id, "area_code")?,
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

/// Channel an applied import notifies on commit (its version number); dispatch replicas and the
/// query service's auth callout listen there and reload the org.
pub const CHANNEL: &str = "whistle_org";

/// The org with the grids' boundaries.
pub async fn load_state(conn: &mut PgConnection) -> Result<OrgState> {
    let dataset = load_from(conn).await?;
    let mut boundaries = std::collections::BTreeMap::new();
    for row in sqlx::query("SELECT code, boundary FROM org_units WHERE boundary IS NOT NULL")
        .fetch_all(&mut *conn)
        .await?
    {
        let code: String = row.get("code");
        let boundary: serde_json::Value = row.get("boundary");
        let boundary = serde_json::from_value(boundary)
            .map_err(|e| Error::Corrupt(format!("org_units.boundary of {code}: {e}")))?;
        let code = code
            .parse()
            .map_err(|e| Error::Corrupt(format!("org_units.code {code}: {e}")))?;
        boundaries.insert(code, boundary);
    }
    Ok(OrgState {
        dataset,
        boundaries,
    })
}

/// What the import's files were: recorded with the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub sha256: String,
    pub files: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    /// Bad cells, or removals something refers to: nothing was written.
    Invalid(Vec<Problem>),
    /// The files say what the org already is: nothing was written.
    NoChanges,
    /// The changes, not applied (a preview).
    Preview(Plan),
    /// Applied as this version.
    Applied { version: i64, plan: Plan },
}

/// One applied import.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub number: i64,
    pub actor: String,
    pub applied_at: chrono::DateTime<chrono::Utc>,
    pub input_sha256: String,
    pub files: Vec<String>,
    pub summary: serde_json::Value,
}

/// Checks `input` against the org as it is and, with `apply`, writes the difference in one
/// transaction as the next version: rows upserted and deleted (each on the audit log as
/// `org.unit`, `org.department`, `org.person`), the version row, an `org.import` audit entry with
/// its counts, and a notification on [`CHANNEL`] at commit. Imports are serialised (the version
/// table is locked for the transaction), so each is planned against the org the one before left.
pub async fn import(
    pool: &PgPool,
    input: &OrgInput,
    source: &Source,
    actor: &Actor,
    apply: bool,
) -> Result<Imported> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE org_versions IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let current = load_state(&mut tx).await?;
    let plan = match org_sheets::plan(input, &current) {
        Ok(plan) => plan,
        Err(problems) => return Ok(Imported::Invalid(problems)),
    };
    let refused = references(&mut tx, &plan).await?;
    if !refused.is_empty() {
        return Ok(Imported::Invalid(refused));
    }
    if plan.diff.is_empty() {
        return Ok(Imported::NoChanges);
    }
    if !apply {
        return Ok(Imported::Preview(plan));
    }

    let now = chrono::Utc::now();
    let (mut entries, _) = upsert(&mut tx, &plan.upsert).await?;
    let boundary_rows = sqlx::query(
        "WITH new AS (SELECT * FROM UNNEST($1::text[], $2::jsonb[]) AS n(code, boundary)),
         old AS (SELECT u.code, u.boundary FROM org_units u JOIN new USING (code)),
         up AS (UPDATE org_units u SET boundary = new.boundary FROM new WHERE u.code = new.code
                RETURNING u.code, u.boundary)
         SELECT up.code AS key, up.code AS area,
                (SELECT jsonb_build_object('boundary', o.boundary) FROM old o WHERE o.code = up.code) AS before,
                jsonb_build_object('boundary', up.boundary) AS after
         FROM up",
    )
    .bind(plan.boundaries.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>())
    .bind(
        plan.boundaries
            .iter()
            .map(|(_, b)| serde_json::to_value(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Corrupt(format!("a boundary as JSON: {e}")))?,
    )
    .fetch_all(&mut *tx)
    .await?;
    entries.extend(changes(&boundary_rows, audit::action::ORG_UNIT, false)?);
    let removed_departments = sqlx::query(
        "DELETE FROM departments d WHERE d.code = ANY($1)
         RETURNING d.code AS key, d.area_code AS area, to_jsonb(d) AS before, NULL::jsonb AS after",
    )
    .bind(
        plan.remove_departments
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    entries.extend(changes(
        &removed_departments,
        audit::action::ORG_DEPARTMENT,
        false,
    )?);
    // Children first, one statement each, so that a parent is never deleted under its child.
    for code in &plan.remove_units {
        let rows = sqlx::query(
            "DELETE FROM org_units u WHERE u.code = $1
             RETURNING u.code AS key, u.code AS area, to_jsonb(u) AS before, NULL::jsonb AS after",
        )
        .bind(code.as_str())
        .fetch_all(&mut *tx)
        .await?;
        entries.extend(changes(&rows, audit::action::ORG_UNIT, false)?);
    }

    let number: i64 = sqlx::query_scalar("SELECT coalesce(max(number), 0) + 1 FROM org_versions")
        .fetch_one(&mut *tx)
        .await?;
    let summary = summary(&plan.diff);
    sqlx::query(
        "INSERT INTO org_versions (number, actor, applied_at, input_sha256, files, summary)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(number)
    .bind(&actor.name)
    .bind(now)
    .bind(&source.sha256)
    .bind(&source.files)
    .bind(&summary)
    .execute(&mut *tx)
    .await?;
    entries.push(Entry {
        action: audit::action::ORG_IMPORT,
        target: number.to_string(),
        area_code: String::new(),
        before: None,
        after: Some(serde_json::json!({
            "version": number,
            "input_sha256": source.sha256,
            "files": source.files,
            "counts": summary,
        })),
    });
    audit::record(&mut tx, actor, now, &entries).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(number.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Imported::Applied {
        version: number,
        plan,
    })
}

/// The counts of a diff by part: `{"单位": {"added": 1, "changed": 0, "removed": 0}, …}`.
fn summary(diff: &org_sheets::Diff) -> serde_json::Value {
    let mut summary = serde_json::Map::new();
    for (part, changes) in diff.parts() {
        let counts = org_sheets::Diff::counts(changes);
        summary.insert(
            part.to_owned(),
            serde_json::json!({"added": counts.added, "changed": counts.changed, "removed": counts.removed}),
        );
    }
    serde_json::Value::Object(summary)
}

/// Removals that rows outside the org still refer to: incidents in a unit, tasks of a
/// department, tokens of either. (People, departments and child units are the plan's own check.)
async fn references(tx: &mut PgConnection, plan: &Plan) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    if plan.remove_units.is_empty() && plan.remove_departments.is_empty() {
        return Ok(problems);
    }
    let units: Vec<String> = plan.remove_units.iter().map(|c| c.to_string()).collect();
    let departments: Vec<String> = plan
        .remove_departments
        .iter()
        .map(|c| c.to_string())
        .collect();
    let rows = sqlx::query(
        "SELECT '单位' AS sheet, c.code, '个事件在此' AS what, count(*) AS n
         FROM UNNEST($1::text[]) AS c(code)
         JOIN incidents i ON c.code IN (i.grid_code, i.community_code, i.street_code, i.district_code)
         GROUP BY c.code
         UNION ALL
         SELECT '部门', c.code, '个任务派给它', count(*)
         FROM UNNEST($2::text[]) AS c(code) JOIN tasks t ON t.department_code = c.code
         GROUP BY c.code
         UNION ALL
         SELECT '单位', c.code, '个令牌属于它', count(*)
         FROM UNNEST($1::text[]) AS c(code) JOIN api_tokens t ON t.area_code = c.code
         GROUP BY c.code
         UNION ALL
         SELECT '部门', c.code, '个令牌属于它', count(*)
         FROM UNNEST($2::text[]) AS c(code) JOIN api_tokens t ON t.department_code = c.code
         GROUP BY c.code
         ORDER BY 1, 2, 3",
    )
    .bind(&units)
    .bind(&departments)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let n: i64 = row.try_get("n")?;
        let what: String = row.try_get("what")?;
        problems.push(Problem {
            sheet: row.try_get::<String, _>("sheet")?,
            row: None,
            column: "编码".into(),
            value: row.try_get::<String, _>("code")?,
            reason: format!("不能删除：{n}{what}"),
        });
    }
    Ok(problems)
}

/// The applied imports, newest first.
pub async fn versions(pool: &PgPool, limit: u32) -> Result<Vec<Version>> {
    let rows = sqlx::query(
        "SELECT number, actor, applied_at, input_sha256, files, summary
         FROM org_versions ORDER BY number DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Version {
                number: row.try_get("number")?,
                actor: row.try_get("actor")?,
                applied_at: row.try_get("applied_at")?,
                input_sha256: row.try_get("input_sha256")?,
                files: row.try_get("files")?,
                summary: row.try_get("summary")?,
            })
        })
        .collect()
}

/// The newest applied version's number (0 before the first import), for services that follow
/// the org.
pub async fn current_version(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(number), 0) FROM org_versions")
            .fetch_one(pool)
            .await?,
    )
}
