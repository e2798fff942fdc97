//! `whistle bench fill`: synthetic incidents for the query benchmarks, written by PostgreSQL
//! itself (a million in about three minutes on two cores), with their reports if asked.

use sqlx::PgPool;
use whistle_domain::{policy::Policy, Level, OrgDataset, OrgIndex};

/// The department a whistle summons first (`summon[0]`), for every district and category, as
/// `("{district}/{category}", department code)` for [`insert`]'s `departments`.
pub fn summoned_departments(
    policy: &Policy,
    dataset: &OrgDataset,
) -> anyhow::Result<Vec<(String, String)>> {
    let org = OrgIndex::build(dataset.clone())?;
    let mut departments = Vec::new();
    for district in dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::District)
    {
        for category in policy.categories() {
            let Some(kind) = category.summon.first() else {
                continue;
            };
            if let Some(department) = org.department_for(&district.code, *kind) {
                departments.push((
                    format!("{}/{}", district.code, category.code),
                    department.code.to_string(),
                ));
            }
        }
    }
    Ok(departments)
}

/// Adds `n` incidents in `grids` and `categories`, created over the `days` before now, in one
/// statement.
///
/// Status mix of a month of real work: most closed, a fifth still open. Everything else is
/// derived from the random grid, category and creation time, and the timeline holds what
/// the status implies (a whistle, a resolution, a verification or a close), never later than
/// now, so the query service's rebuild and recounts find what they would in real data.
///
/// Incidents the street whistled for (open at the street, or resolved there) get a department
/// task: `departments` names, for each `district/category`, the department a whistle summons
/// (`tasks` are waiting, accepted or resolved as the incident's status says), so workbenches,
/// the overdue list and the department scoreboard have real work to read.
///
/// With `reports`, each incident also gets the report that opened it (received at its creation,
/// an empty payload), so the hotspot analysis (每月一题), which reads reports, has a history.
pub async fn insert(
    pool: &PgPool,
    grids: &[String],
    categories: &[String],
    departments: &[(String, String)],
    n: u64,
    days: u32,
    reports: bool,
) -> anyhow::Result<()> {
    let (keys, codes): (Vec<&str>, Vec<&str>) = departments
        .iter()
        .map(|(k, c)| (k.as_str(), c.as_str()))
        .unzip();
    sqlx::query(
        "WITH new AS (
            SELECT gen_random_uuid() AS id,
                   $1::text[] AS grids, $2::text[] AS categories,
                   now() - random() * make_interval(days => $4) AS created_at,
                   random() AS r, floor(random() * cardinality($1::text[]))::int + 1 AS g,
                   floor(random() * cardinality($2::text[]))::int + 1 AS c
            FROM generate_series(1, $3)
         ), rows AS (
            SELECT id, grids[g] AS grid, categories[c] AS category, created_at, r,
                   CASE WHEN r < 0.55 THEN 'closed' WHEN r < 0.60 THEN 'closed_unverified'
                        WHEN r < 0.65 THEN 'resolved' WHEN r < 0.80 THEN 'handling'
                        WHEN r < 0.90 THEN 'whistled' ELSE 'accepted' END AS status
            FROM new
         ), incidents AS (
            INSERT INTO incidents (id, version, status, level, category, urgency, title,
                description, district_code, street_code, community_code, grid_code, lat, lon,
                address, reporter_id, report_count, policy_version, reported_at, created_at,
                updated_at, due_at, overdue, resolved_at, closed_at, satisfaction)
            SELECT id, 1, status,
                   CASE WHEN status IN ('whistled', 'accepted') THEN 'street'
                        WHEN r < 0.7 THEN 'community' ELSE 'street' END,
                   category, CASE WHEN random() < 0.1 THEN 'urgent' ELSE 'normal' END,
                   '压测事件 ' || category, '由 whistle bench fill 生成的压测数据',
                   left(grid, 6), left(grid, 9), left(grid, 12), grid,
                   39.6 + random(), 109.8 + random(), '', 'gw-' || grid, 1, 'bench',
                   created_at, created_at, created_at, created_at + interval '3 days',
                   status IN ('handling', 'whistled', 'accepted')
                       AND created_at + interval '3 days' < now(),
                   CASE WHEN status IN ('resolved', 'closed', 'closed_unverified')
                        THEN created_at + least(interval '1 day', (now() - created_at) / 3) END,
                   CASE WHEN status IN ('closed', 'closed_unverified')
                        THEN created_at + least(interval '2 days', (now() - created_at) * 2 / 3) END,
                   CASE WHEN status = 'closed' THEN 'satisfied' END
            FROM rows
            RETURNING id, status, level, district_code, grid_code, category, created_at, due_at,
                      resolved_at, closed_at
         ), whistled AS (
            SELECT i.*, d.code AS department,
                   i.created_at + least(interval '1 hour', (now() - i.created_at) / 6) AS whistled_at
            FROM incidents i
            JOIN UNNEST($5::text[], $6::text[]) AS d(key, code)
              ON d.key = i.district_code || '/' || i.category
            WHERE i.status IN ('whistled', 'accepted')
               OR (i.level = 'street' AND i.resolved_at IS NOT NULL)
         ), tasks AS (
            INSERT INTO tasks (incident_id, task_id, round, department_code, status, dispatched_at,
                accept_due_at, resolve_due_at, accepted_at, resolved_at, holder_id, grid_code,
                updated_at)
            SELECT id, 1, 0, department,
                   CASE status WHEN 'whistled' THEN 'dispatched' WHEN 'accepted' THEN 'accepted'
                               ELSE 'resolved' END,
                   whistled_at, whistled_at + interval '30 minutes', due_at,
                   CASE WHEN status <> 'whistled' THEN whistled_at
                        + least(interval '20 minutes',
                                (coalesce(resolved_at, now()) - whistled_at) / 2) END,
                   resolved_at,
                   CASE WHEN status <> 'whistled' THEN 'li-' || department END,
                   grid_code, coalesce(resolved_at, whistled_at)
            FROM whistled
            RETURNING incident_id
         ), reports AS (
            INSERT INTO reports (report_id, incident_id, reporter_id, grid_code, category, payload,
                received_at)
            SELECT 'bench-' || id, id, 'gw-' || grid_code, grid_code, category, '', created_at
            FROM incidents WHERE $7
            RETURNING report_id
         )
         INSERT INTO timeline (incident_id, seq, kind, actor_id, at, note)
         SELECT id, row_number() OVER (PARTITION BY id ORDER BY step), kind, 'system', at,
                'whistle bench fill'
         FROM incidents,
              LATERAL (VALUES
                  (1, 'incident.reported', created_at),
                  (2, CASE WHEN status IN ('whistled', 'accepted')
                                OR (level = 'street' AND resolved_at IS NOT NULL)
                           THEN 'incident.whistled' END,
                      created_at + least(interval '1 hour', (now() - created_at) / 6)),
                  (3, CASE WHEN resolved_at IS NOT NULL THEN 'incident.resolved' END, resolved_at),
                  (4, CASE WHEN status = 'closed' THEN 'incident.verified' END, closed_at),
                  (5, CASE WHEN status = 'closed' THEN 'incident.closed'
                           WHEN status = 'closed_unverified' THEN 'incident.closed_unverified' END,
                      closed_at)
              ) AS entry(step, kind, at)
         WHERE kind IS NOT NULL",
    )
    .bind(grids)
    .bind(categories)
    .bind(i64::try_from(n)?)
    .bind(i32::try_from(days)?)
    .bind(keys)
    .bind(codes)
    .bind(reports)
    .execute(pool)
    .await?;
    Ok(())
}
