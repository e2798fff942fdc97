//! `whistle bench fill`: synthetic incidents for the query benchmarks, written by PostgreSQL
//! itself (a million in about three minutes on two cores).

use sqlx::PgPool;

/// Adds `n` incidents in `grids` and `categories`, created over the `days` before now, in one
/// statement.
///
/// Status mix of a month of real work: most closed, a fifth still open. Everything else is
/// derived from the random grid, category and creation time, and the timeline holds what
/// the status implies (a whistle, a resolution, a verification or a close), never later than
/// now, so the query service's rebuild and recounts find what they would in real data.
pub async fn insert(
    pool: &PgPool,
    grids: &[String],
    categories: &[String],
    n: u64,
    days: u32,
) -> anyhow::Result<()> {
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
            RETURNING id, status, created_at, resolved_at, closed_at
         )
         INSERT INTO timeline (incident_id, seq, kind, actor_id, at, note)
         SELECT id, row_number() OVER (PARTITION BY id ORDER BY step), kind, 'system', at,
                'whistle bench fill'
         FROM incidents,
              LATERAL (VALUES
                  (1, 'incident.reported', created_at),
                  (2, CASE WHEN status IN ('whistled', 'accepted') THEN 'incident.whistled' END,
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
    .execute(pool)
    .await?;
    Ok(())
}
