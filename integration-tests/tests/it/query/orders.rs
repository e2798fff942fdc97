//! `ListOverdue` and a department's `ListTasks` read partial indexes in the order they list, each
//! part cut at the limit, then merged. On a filled city their answers must equal the definitions
//! written as one plain query that reads and sorts everything — the statements the services ran
//! before the indexes, kept here as the oracle.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use whistle_cli::fill;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

/// `(incident, task, deadline)` of each item, in the order listed.
type Listed = Vec<(Uuid, Option<i32>, Option<DateTime<Utc>>)>;

async fn filled_city() -> Stack {
    let mut stack = Stack::command_center().await;
    let policy = whistle_wire::policy::load("ordos").unwrap();
    let categories: Vec<String> = policy.categories().map(|c| c.code.to_string()).collect();
    let departments =
        fill::summoned_departments(&policy, &whistle_domain::ordos::dataset()).unwrap();
    fill::insert(
        stack.pool(),
        &grids(),
        &categories,
        &departments,
        6_000,
        5,
        false,
    )
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(stack.pool()).await.unwrap();
    // The fill writes PostgreSQL behind the stream's back, as `whistle bench fill` does: the
    // query service reads it at start.
    stack.stop_query().await;
    stack.start_query().await;
    // A day after the fill's newest incident: most open incidents and tasks are late by then,
    // some not yet.
    stack.clock().set(Utc::now() + TimeDelta::days(1));
    stack
}

/// `ListOverdue`'s definition: late open incidents and late tasks of open incidents in the area,
/// the longest late first.
async fn late_by_definition(pool: &PgPool, area: &str, now: DateTime<Utc>) -> Listed {
    sqlx::query_as(
        "WITH scoped AS (
             SELECT * FROM incidents
             WHERE status IN ('handling', 'whistled', 'accepted') AND grid_code LIKE $1 || '%'
         )
         SELECT id, NULL::int AS task_id, due_at FROM scoped WHERE overdue OR due_at < $2
         UNION ALL
         SELECT i.id, t.task_id,
                CASE WHEN t.status IN ('dispatched', 'supervised') THEN t.accept_due_at
                     ELSE t.resolve_due_at END
         FROM tasks t JOIN scoped i ON i.id = t.incident_id
         WHERE (t.status IN ('dispatched', 'supervised') AND t.accept_due_at < $2)
            OR (t.status = 'accepted' AND t.resolve_due_at < $2)
         ORDER BY due_at NULLS LAST, id, task_id NULLS FIRST",
    )
    .bind(area_prefix(area))
    .bind(now)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// `ListTasks`' definition: the department's tasks in `statuses`, those in progress first by the
/// deadline they wait on, then the rest newest first.
async fn workbench_by_definition(
    pool: &PgPool,
    department: &str,
    statuses: &[String],
    limit: i64,
) -> Listed {
    sqlx::query_as(
        "SELECT t.incident_id, t.task_id,
                CASE WHEN t.status IN ('dispatched', 'supervised') THEN t.accept_due_at
                     WHEN t.status = 'accepted' THEN t.resolve_due_at END AS due
         FROM tasks t
         WHERE t.department_code = $1 AND t.status = ANY($2)
         ORDER BY t.status IN ('dispatched', 'supervised', 'accepted') DESC, due,
                  t.updated_at DESC, t.incident_id, t.task_id
         LIMIT $3",
    )
    .bind(department)
    .bind(statuses)
    .bind(limit)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The city's code names its districts by their first four digits.
fn area_prefix(area: &str) -> &str {
    if area.ends_with("00") && area.len() == 6 {
        &area[..4]
    } else {
        area
    }
}

fn instant(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref()
        .map(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap())
}

#[tokio::test]
async fn the_late_list_and_the_workbench_equal_their_definitions_on_a_filled_city() {
    let stack = filled_city().await;
    let now = stack.now();
    let (district, [grid, ..], _, _) = places();
    let street = grid[..9].to_owned();
    for area in ["150600", district.as_str(), street.as_str()] {
        let listed: Listed = stack
            .overdue(area)
            .await
            .iter()
            .map(|item| {
                (
                    item.incident_id.parse().unwrap(),
                    (!item.task_id.is_empty()).then(|| item.task_id.parse().unwrap()),
                    instant(&item.due_at),
                )
            })
            .collect();
        let expected = late_by_definition(stack.pool(), area, now).await;
        assert!(!expected.is_empty(), "nothing late in {area}");
        assert!(
            expected.iter().any(|(_, task, _)| task.is_some()),
            "no late task in {area}"
        );
        assert_eq!(listed, expected, "ListOverdue of {area}");
        let first: Vec<String> = stack
            .client()
            .list_overdue(v1::ListOverdueRequest {
                area_code: area.into(),
                page_size: 7,
            })
            .await
            .unwrap()
            .into_inner()
            .items
            .into_iter()
            .map(|item| item.incident_id)
            .collect();
        let expected: Vec<String> = expected[..7]
            .iter()
            .map(|(id, ..)| id.to_string())
            .collect();
        assert_eq!(first, expected, "the first page of {area}");
    }
    let too_many = stack
        .client()
        .list_overdue(v1::ListOverdueRequest {
            area_code: "150600".into(),
            page_size: 5_001,
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);

    // The busiest department's workbench, in progress and closed-out, cut by a page across both.
    // The fill leaves every task of an open incident in progress: a third of them are closed out
    // here (resolved or returned, at times of their own).
    let department: String = sqlx::query_scalar(
        "SELECT department_code FROM tasks GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )
    .fetch_one(stack.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE tasks t SET status = CASE WHEN n % 2 = 0 THEN 'resolved' ELSE 'returned' END,
                updated_at = t.dispatched_at + n * interval '1 minute'
         FROM (SELECT incident_id, task_id, row_number() OVER (ORDER BY incident_id) AS n
               FROM tasks WHERE department_code = $1) AS numbered
         WHERE (t.incident_id, t.task_id) = (numbered.incident_id, numbered.task_id)
           AND numbered.n % 3 = 0",
    )
    .bind(&department)
    .execute(stack.pool())
    .await
    .unwrap();
    let in_progress: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks
         WHERE department_code = $1 AND status IN ('dispatched', 'supervised', 'accepted')",
    )
    .bind(&department)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert!(in_progress >= 3, "{department}: {in_progress} in progress");
    let liaison = stack.token_for(Role::Liaison, &department).await;
    let mut client = command_center(&stack.query_url(), &liaison).await;
    let every = v1::TaskStatus::Dispatched as i32..=v1::TaskStatus::Cancelled as i32;
    let cases: [(Vec<i32>, u32); 4] = [
        (vec![], 2),
        (vec![], 500),
        (every.clone().collect(), (in_progress + 2) as u32),
        (
            vec![
                v1::TaskStatus::Resolved as i32,
                v1::TaskStatus::Accepted as i32,
            ],
            500,
        ),
    ];
    for (statuses, page_size) in cases {
        let listed: Listed = client
            .list_tasks(v1::ListTasksRequest {
                department_code: department.clone(),
                statuses: statuses.clone(),
                page_size,
            })
            .await
            .unwrap()
            .into_inner()
            .tasks
            .iter()
            .map(|item| {
                let task = item.task.as_ref().unwrap();
                let due = match v1::TaskStatus::try_from(task.status).unwrap() {
                    v1::TaskStatus::Dispatched | v1::TaskStatus::Supervised => &task.accept_due_at,
                    v1::TaskStatus::Accepted => &task.resolve_due_at,
                    _ => &None,
                };
                (
                    item.incident.as_ref().unwrap().incident_id.parse().unwrap(),
                    Some(task.task_id as i32),
                    instant(due),
                )
            })
            .collect();
        // The proto's names are the stored ones in capitals.
        let names: Vec<String> = if statuses.is_empty() {
            ["dispatched", "supervised", "accepted"]
                .map(String::from)
                .to_vec()
        } else {
            statuses
                .iter()
                .map(|s| {
                    let name = v1::TaskStatus::try_from(*s).unwrap().as_str_name();
                    name.strip_prefix("TASK_STATUS_").unwrap().to_lowercase()
                })
                .collect()
        };
        let expected =
            workbench_by_definition(stack.pool(), &department, &names, i64::from(page_size)).await;
        assert!(!expected.is_empty());
        assert_eq!(listed, expected, "ListTasks {statuses:?}, page {page_size}");
    }
}
