//! Lead and assisting departments (主办/协办) end to end: a whistle names a lead and assistants over
//! NATS and through the query service's gRPC door, assistants report in and submit their parts,
//! the dispatching level releases one, and the lead resolves only after every part — refused
//! before, with the parts still owed named; an assistant's missed report-in across a dispatch
//! restart is supervised like any department's, its part still pending.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, CommandErrorCode};
use whistle_store::tokens::Role;

use crate::harness::*;

use super::bodies::{accept, grid_of_street, refusal, resolve, same_instant};

fn whistle_with(lead: &str, assisting: &[&str]) -> Body {
    Body::Escalate(v1::Escalate {
        note: "街道吹哨，协同处置".into(),
        department_codes: vec![lead.to_owned()],
        assisting_department_codes: assisting.iter().map(|d| d.to_string()).collect(),
    })
}

fn submit(task: u32, note: &str) -> Body {
    Body::SubmitAssist(v1::SubmitAssist {
        task_id: task.to_string(),
        note: note.into(),
    })
}

fn release(task: u32, note: &str) -> Body {
    Body::ReleaseAssist(v1::ReleaseAssist {
        task_id: task.to_string(),
        note: note.into(),
    })
}

/// Each task's department, role, status and resolve (part) deadline, in order.
async fn tasks(stack: &Stack, incident: Uuid) -> Vec<(String, String, String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT department_code, role, status, resolve_due_at FROM tasks
         WHERE incident_id = $1 ORDER BY task_id",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap()
}

/// An incident of `category` reported from `grid` and brought to the street by its community.
async fn at_the_street(stack: &Stack, id: &str, grid: &str) -> Uuid {
    let incident = stack.report(id, grid, "heating.no_heat").await;
    let community = format!("hd-{}", unit(grid, Level::Community));
    stack
        .ok(&community, incident, super::bodies::escalate(&[]))
        .await;
    incident
}

#[tokio::test]
async fn the_lead_resolves_over_nats_only_after_every_assistant_submitted_or_was_released() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(7);
    let (heating, housing, urban) = (
        dept(&grid, "heating"),
        dept(&grid, "housing_construction"),
        dept(&grid, "urban_management"),
    );
    let street = format!("hd-{}", unit(&grid, Level::Street));
    let incident = at_the_street(&stack, "assist-1", &grid).await;
    let due: DateTime<Utc> = stack.incident_column(incident, "due_at").await;

    // A whistle with assistants names one lead, at most the policy's three assistants.
    let two_leads = Body::Escalate(v1::Escalate {
        note: String::new(),
        department_codes: vec![heating.clone(), urban.clone()],
        assisting_department_codes: vec![housing.clone()],
    });
    let too_many = whistle_with(
        &heating,
        &[
            &housing,
            &urban,
            &dept(&grid, "transport"),
            &dept(&grid, "justice"),
        ],
    );
    for body in [two_leads, too_many] {
        let reply = stack.command(&street, incident, &body).await;
        assert_eq!(refusal(reply), CommandErrorCode::InvalidArgument);
    }
    let whistled = stack
        .ok(
            &street,
            incident,
            whistle_with(&heating, &[&housing, &urban]),
        )
        .await;
    assert_eq!(whistled.status, v1::IncidentStatus::Whistled as i32);
    let rows = tasks(&stack, incident).await;
    let roles: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            (heating.as_str(), "lead", "dispatched"),
            (housing.as_str(), "assist", "dispatched"),
            (urban.as_str(), "assist", "dispatched"),
        ]
    );
    // heating.no_heat runs 24 hours: the 24-hour part is capped at the incident's deadline.
    assert!(rows.iter().all(|r| same_instant(r.3, due)), "{rows:?}");

    stack.advance(TimeDelta::minutes(5));
    let before = stack.timeline(incident).await;
    let (li_heating, li_housing, li_urban) = (
        format!("li-{heating}"),
        format!("li-{housing}"),
        format!("li-{urban}"),
    );
    // Wrong role, wrong state, bad input: refused, nothing written.
    let cases = [
        (
            li_heating.as_str(),
            submit(2, "意见"),
            CommandErrorCode::Forbidden,
        ),
        (
            li_housing.as_str(),
            submit(2, "意见"),
            CommandErrorCode::InvalidTransition,
        ),
        (
            li_housing.as_str(),
            submit(9, "意见"),
            CommandErrorCode::NotFound,
        ),
        (
            li_housing.as_str(),
            release(3, "不需要"),
            CommandErrorCode::Forbidden,
        ),
        (
            street.as_str(),
            release(3, " "),
            CommandErrorCode::InvalidArgument,
        ),
        (
            street.as_str(),
            release(1, "主办不可免除"),
            CommandErrorCode::InvalidTransition,
        ),
    ];
    for (actor, body, code) in cases {
        let reply = stack.command(actor, incident, &body).await;
        assert_eq!(refusal(reply), code, "{actor} {body:?}");
    }
    assert_eq!(stack.timeline(incident).await, before);

    for (liaison, task) in [(&li_heating, 1), (&li_housing, 2), (&li_urban, 3)] {
        stack.ok(liaison, incident, accept(task)).await;
    }
    let blank = stack.command(&li_housing, incident, submit(2, "")).await;
    assert_eq!(refusal(blank), CommandErrorCode::InvalidArgument);
    let early = stack.command(&li_heating, incident, resolve(Some(1))).await;
    assert_eq!(refusal(early), CommandErrorCode::InvalidTransition);
    let own = stack.command(&li_housing, incident, resolve(Some(2))).await;
    assert_eq!(refusal(own), CommandErrorCode::InvalidTransition);

    stack.advance(TimeDelta::hours(1));
    let part = stack
        .ok(&li_housing, incident, submit(2, "已核查楼内管网，阀门正常"))
        .await;
    assert_eq!(
        (part.task_id.as_str(), part.task_status),
        ("2", v1::TaskStatus::Resolved as i32)
    );
    let still = stack.command(&li_heating, incident, resolve(Some(1))).await;
    assert_eq!(refusal(still), CommandErrorCode::InvalidTransition);
    let released = stack
        .ok(&street, incident, release(3, "经核实无需城管参与"))
        .await;
    assert_eq!(released.task_status, v1::TaskStatus::Released as i32);
    let resolved = stack.ok(&li_heating, incident, resolve(Some(1))).await;
    assert_eq!(resolved.status, v1::IncidentStatus::Resolved as i32);

    let statuses: Vec<String> = tasks(&stack, incident)
        .await
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(statuses, ["resolved", "resolved", "released"]);
    let notes: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, note FROM timeline WHERE incident_id = $1 AND kind LIKE 'task.assist%' ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(
        notes,
        [
            (
                "task.assist_submitted".to_owned(),
                "已核查楼内管网，阀门正常".to_owned()
            ),
            (
                "task.assist_released".to_owned(),
                "经核实无需城管参与".to_owned()
            ),
        ]
    );
    stack.wait_published("task.assist_released", 1).await;
    stack.wait_published("task.assist_submitted", 1).await;
}

#[tokio::test]
async fn assistants_submit_and_are_released_through_the_query_service() {
    let stack = Stack::command_center().await;
    let grid = grid_of_street(4);
    let (heating, housing, urban) = (
        dept(&grid, "heating"),
        dept(&grid, "housing_construction"),
        dept(&grid, "urban_management"),
    );
    let incident = at_the_street(&stack, "assist-2", &grid).await;
    let street = format!("hd-{}", unit(&grid, Level::Street));
    stack
        .ok(
            &street,
            incident,
            whistle_with(&heating, &[&housing, &urban]),
        )
        .await;
    let command = |body: Body| v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: String::new(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(body),
    };
    let liaison = stack.token_for(Role::Liaison, &housing).await;
    let mut department = dispatch(&stack, &liaison).await;
    department.accept(command(accept(2))).await.unwrap();
    // The wrong body for the RPC; a release by the department: refused.
    let wrong = department.submit_assist(command(release(2, "x"))).await;
    assert_eq!(code(wrong), tonic::Code::InvalidArgument);
    let not_its = department.release_assist(command(release(3, "x"))).await;
    assert_eq!(code(not_its), tonic::Code::PermissionDenied);
    let part = department
        .submit_assist(command(submit(2, "住建意见：外网由热力公司维修")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(part.task_status, v1::TaskStatus::Resolved as i32);
    // The lead's workbench row says what its 办结 waits for: two assistants, one part still owed.
    let lead_liaison = stack.token_for(Role::Liaison, &heating).await;
    let mut lead_bench = command_center_on(stack.channel(), &lead_liaison);
    let parts = |tasks: v1::ListTasksResponse| {
        let item = tasks
            .tasks
            .into_iter()
            .find(|t| t.incident.as_ref().unwrap().incident_id == incident.to_string())
            .expect("the lead's task listed");
        (item.assisting, item.parts_owed, item.ledger.is_some())
    };
    let listed = lead_bench
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let urban_name: String = sqlx::query_scalar("SELECT name FROM departments WHERE code = $1")
        .bind(&urban)
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(parts(listed), (2, vec![urban_name], false));
    // The assistant's own row owes nothing of the kind.
    let housing_row = command_center_on(stack.channel(), &liaison)
        .list_tasks(v1::ListTasksRequest {
            statuses: vec![v1::TaskStatus::Resolved as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parts(housing_row), (0, Vec::new(), false));

    // The operator sees the roles, and is offered the release of the assistant still owing.
    let detail = stack.detail(incident).await;
    let seen: Vec<(i32, i32, Vec<String>)> = detail
        .tasks
        .iter()
        .map(|t| {
            let state = t.state.as_ref().unwrap();
            (state.role, state.status, t.verbs.clone())
        })
        .collect();
    assert_eq!(seen[0].0, v1::TaskRole::Lead as i32);
    assert_eq!(seen[1].0, v1::TaskRole::Assist as i32);
    assert!(
        !seen[1].2.contains(&"release_assist".to_owned()),
        "{seen:?}"
    );
    assert!(seen[2].2.contains(&"release_assist".to_owned()), "{seen:?}");
    assert!(
        !seen[0].2.contains(&"release_assist".to_owned()),
        "{seen:?}"
    );

    let operator = stack.token_for(Role::Operator, &grid[..6]).await;
    let mut district = dispatch(&stack, &operator).await;
    let bare = district.release_assist(command(release(3, ""))).await;
    assert_eq!(code(bare), tonic::Code::InvalidArgument);
    let submit_as_operator = district.submit_assist(command(submit(3, "x"))).await;
    assert_eq!(code(submit_as_operator), tonic::Code::PermissionDenied);
    let released = district
        .release_assist(command(release(3, "无需城管参与")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.task_status, v1::TaskStatus::Released as i32);
    // Released, the part is owed no more: the lead's 办结 waits for nothing.
    let listed = lead_bench
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parts(listed), (2, Vec::new(), false));
    let again = district
        .release_assist(command(release(3, "再次免除")))
        .await;
    assert_eq!(code(again), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn an_assistant_misses_its_report_in_across_a_dispatch_restart_and_the_lead_waits_for_its_part(
) {
    let mut stack = Stack::builder().at(Utc::now()).start().await;
    let grid = grid_of_street(8);
    let (heating, housing, urban) = (
        dept(&grid, "heating"),
        dept(&grid, "housing_construction"),
        dept(&grid, "urban_management"),
    );
    let (li_heating, li_housing, li_urban) = (
        format!("li-{heating}"),
        format!("li-{housing}"),
        format!("li-{urban}"),
    );
    let incident = at_the_street(&stack, "assist-3", &grid).await;
    let street = format!("hd-{}", unit(&grid, Level::Street));
    stack
        .ok(
            &street,
            incident,
            whistle_with(&heating, &[&housing, &urban]),
        )
        .await;
    stack.ok(&li_heating, incident, accept(1)).await;
    stack.ok(&li_housing, incident, accept(2)).await;

    // Dispatch is down past the report-in deadline with urban management's part pending.
    stack.stop_dispatch().await;
    stack.advance(TimeDelta::minutes(31));
    stack.start_dispatch().await;
    stack.settle().await;
    eventually("the assistant supervised", WAIT, || async {
        tasks(&stack, incident).await[2].2 == "supervised"
    })
    .await
    .unwrap();
    let level: String = stack.incident_column(incident, "level").await;
    assert_eq!(level, "district");
    let timeline = stack.timeline(incident).await;
    assert!(
        timeline.ends_with(&[
            "task.supervised".to_owned(),
            "task.reminded".to_owned(),
            "incident.escalated".to_owned(),
        ]),
        "{timeline:?}"
    );

    stack
        .ok(&li_housing, incident, submit(2, "住建意见已提交"))
        .await;
    let early = stack.command(&li_heating, incident, resolve(Some(1))).await;
    assert_eq!(refusal(early), CommandErrorCode::InvalidTransition);
    // The supervised assistant reports in late and submits; then the lead resolves.
    stack.ok(&li_urban, incident, accept(3)).await;
    stack
        .ok(&li_urban, incident, submit(3, "城管意见已提交"))
        .await;
    let resolved = stack.ok(&li_heating, incident, resolve(Some(1))).await;
    assert_eq!(resolved.status, v1::IncidentStatus::Resolved as i32);
    let rows = tasks(&stack, incident).await;
    let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect();
    assert_eq!(
        states,
        [
            ("lead", "resolved"),
            ("assist", "resolved"),
            ("assist", "resolved")
        ]
    );
}
