//! The resident's page (`/track`, docs/query.md "The resident's page"): tracking codes made at
//! intake and shown only to the reporting worker, the public lookup that reveals nothing for a
//! wrong or expired code and is rate-limited per client, and the resident's answer reaching
//! dispatch as the follow-up (回访), on the timeline and in the satisfaction rate, the first one
//! counting. The browser test of the page is `the_residents_page_works_in_a_real_browser`.

use std::net::SocketAddr;

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1::{self, command::Body, command_reply::Outcome};
use whistle_store::tokens::Role;

use crate::harness::*;

/// A POST of JSON to the query service, as a phone sends it (through a proxy naming
/// `forwarded_for` when given): the status and the body as JSON.
async fn post(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    forwarded_for: Option<&str>,
) -> (u16, Value) {
    let forwarded = forwarded_for
        .map(|f| format!("X-Forwarded-For: {f}\r\n"))
        .unwrap_or_default();
    let (headers, payload) = http_post(
        addr,
        path,
        &format!("Content-Type: application/json\r\n{forwarded}"),
        body.to_string().as_bytes(),
    )
    .await;
    let status: u16 = headers[9..12].parse().unwrap();
    let value = serde_json::from_slice(&payload)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {headers}"));
    (status, value)
}

async fn case(stack: &Stack, code: &str) -> (u16, Value) {
    post(
        stack.query_addr(),
        "/track/api/case",
        &json!({ "code": code }),
        None,
    )
    .await
}

async fn answer(stack: &Stack, code: &str, resolved: bool, satisfaction: &str) -> (u16, Value) {
    post(
        stack.query_addr(),
        "/track/api/answer",
        &json!({ "code": code, "resolved": resolved, "satisfaction": satisfaction }),
        None,
    )
    .await
}

/// Files a report through the report form's RPC as the worker of `grid`; its outcome.
async fn submit(stack: &Stack, token: &str, id: &str, grid: &str) -> v1::SubmitReportResponse {
    let mut report = stack.filed(id, grid, "heating.no_heat", v1::Urgency::Urgent);
    report.contact_phone = "13812345678".into();
    let response = reporting(stack, token)
        .await
        .submit_report(v1::SubmitReportRequest {
            report: Some(report),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(
            v1::ReportOutcome::try_from(response.outcome),
            Ok(v1::ReportOutcome::Incident | v1::ReportOutcome::Attached)
        ),
        "{response:?}"
    );
    response
}

fn is_code(code: &str) -> bool {
    code.len() == 14
        && code.split('-').count() == 3
        && code
            .bytes()
            .filter(|&b| b != b'-')
            .all(|b| whistle_store::tracking::ALPHABET.contains(&b))
}

#[tokio::test]
async fn a_report_gets_a_code_its_worker_alone_sees_and_the_database_holds_no_working_code() {
    let stack = Stack::command_center().await;
    let (_, [grid, other, _], _, _) = places();
    let worker = stack.token_for(Role::GridWorker, &grid).await;
    let opened = submit(&stack, &worker, "track-1", &grid).await;
    let attached = submit(&stack, &worker, "track-2", &grid).await;
    assert_eq!(
        v1::ReportOutcome::try_from(attached.outcome),
        Ok(v1::ReportOutcome::Attached)
    );
    // Every report that opens or joins an incident has its own code.
    assert!(is_code(&opened.tracking_code), "{opened:?}");
    assert!(is_code(&attached.tracking_code), "{attached:?}");
    assert_ne!(opened.tracking_code, attached.tracking_code);

    // The worker's "my reports" shows the same codes; another worker's shows none of them.
    let mine = command_center(&stack.query_url(), &worker)
        .await
        .list_my_reports(v1::ListMyReportsRequest { page_size: 10 })
        .await
        .unwrap()
        .into_inner()
        .reports;
    let codes: Vec<(&str, &str)> = mine
        .iter()
        .map(|r| (r.report_id.as_str(), r.tracking_code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("track-2", attached.tracking_code.as_str()),
            ("track-1", opened.tracking_code.as_str())
        ]
    );
    let someone_else = stack.token_for(Role::GridWorker, &other).await;
    let theirs = command_center(&stack.query_url(), &someone_else)
        .await
        .list_my_reports(v1::ListMyReportsRequest { page_size: 10 })
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert!(theirs.is_empty(), "{theirs:?}");

    // At rest: a MAC and a sealed code, neither of which is the code or any part of it.
    let rows: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT report_id, code_mac, ciphertext FROM tracking_codes ORDER BY report_id",
    )
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for ((report, mac, sealed), filed) in rows.iter().zip([&opened, &attached]) {
        let code = filed.tracking_code.replace('-', "");
        assert_eq!(mac.len(), 32, "{report}");
        assert!(
            !sealed.windows(code.len()).any(|w| w == code.as_bytes()),
            "{report}: the code shows at rest"
        );
    }
    // A dump of every table holds neither code.
    let dump: String = sqlx::query_scalar(
        "SELECT string_agg(t::text, ' ') FROM (
             SELECT row_to_json(c)::text AS t FROM tracking_codes c
             UNION ALL SELECT row_to_json(r)::text FROM reports r
             UNION ALL SELECT row_to_json(tl)::text FROM timeline tl
             UNION ALL SELECT row_to_json(o)::text FROM outbox o) AS everything",
    )
    .fetch_one(stack.pool())
    .await
    .unwrap();
    for code in [&opened.tracking_code, &attached.tracking_code] {
        assert!(!dump.contains(code.as_str()));
        assert!(!dump.contains(&code.replace('-', "")));
    }
}

#[tokio::test]
async fn the_page_shows_the_case_without_personal_data_and_nothing_for_a_wrong_or_expired_code() {
    let stack = Stack::command_center().await;
    let (_, [grid, other, _], _, _) = places();
    let worker = stack.token_for(Role::GridWorker, &grid).await;
    let filed = submit(&stack, &worker, "track-page", &grid).await;
    let incident: Uuid = filed
        .incident
        .as_ref()
        .unwrap()
        .incident_id
        .parse()
        .unwrap();

    // Typed as people type it: lower case, no dashes.
    let typed = filed.tracking_code.replace('-', " ").to_lowercase();
    let (status, shown) = case(&stack, &typed).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["code"], filed.tracking_code.as_str());
    assert_eq!(shown["category"], "室内温度不达标/停暖");
    assert_eq!(shown["status_zh"], "处理中");
    assert_eq!(shown["can_answer"], false);
    assert_eq!(shown["supervised"], false);
    // At the community: the community's name handles it.
    let community: String = sqlx::query_scalar("SELECT name FROM org_units WHERE code = $1")
        .bind(unit(&grid, Level::Community))
        .fetch_one(stack.pool())
        .await
        .unwrap();
    assert_eq!(shown["handlers"], json!([community]));
    assert_eq!(shown["steps"][0]["label"], "已受理");
    assert!(shown["due_at"].is_string());
    // Nothing of the report's text, its reporter, contact or the incident's id.
    let text = shown.to_string();
    for private in [
        "13812345678",
        "138****5678",
        "3号楼",
        "居民反映",
        &format!("gw-{grid}"),
        &incident.to_string(),
        "track-page",
    ] {
        assert!(!text.contains(private), "{private} in {text}");
    }

    // Up the chain and whistled: the departments by name, never a person.
    let community_handler = format!("hd-{}", unit(&grid, Level::Community));
    stack.ok(&community_handler, incident, escalate()).await;
    stack.whistle(&grid, incident).await;
    let (_, shown) = case(&stack, &filed.tracking_code).await;
    let handlers: Vec<String> = serde_json::from_value(shown["handlers"].clone()).unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT d.name FROM tasks t JOIN departments d ON d.code = t.department_code
         WHERE t.incident_id = $1 ORDER BY d.name",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(handlers, names);
    assert!(shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["label"] == format!("已派单至{}", names[0])));
    let people: Vec<String> = sqlx::query_scalar("SELECT name FROM people")
        .fetch_all(stack.pool())
        .await
        .unwrap();
    let text = shown.to_string();
    assert!(people.iter().all(|name| !text.contains(name.as_str())));

    // Wrong, malformed, and (below) expired: one answer, the same bytes.
    let (wrong_status, wrong) = case(&stack, "ZZZZ-ZZZZ-ZZZZ").await;
    let (malformed_status, malformed) = case(&stack, "not a code").await;
    assert_eq!((wrong_status, malformed_status), (404, 404));
    assert_eq!(wrong, malformed);
    assert_eq!(wrong["error"], "not_found");
    let (_, refused) = answer(&stack, "ZZZZ-ZZZZ-ZZZZ", true, "satisfied").await;
    assert_eq!(refused, wrong);

    // Resolved, followed up and closed: a code works until the policy's tracking_codes period
    // (30 days) after closing, then is as unknown as a wrong one.
    let other_worker = stack.token_for(Role::GridWorker, &other).await;
    let closing = submit(&stack, &other_worker, "track-expiry", &other).await;
    let closing_incident: Uuid = closing
        .incident
        .as_ref()
        .unwrap()
        .incident_id
        .parse()
        .unwrap();
    let handler = format!("hd-{}", unit(&other, Level::Community));
    stack.ok(&handler, closing_incident, resolve()).await;
    stack
        .ok(&format!("gw-{other}"), closing_incident, satisfied())
        .await;
    assert_eq!(stack.state(closing_incident).await.0, "closed");
    stack.advance(TimeDelta::days(30) - TimeDelta::minutes(1));
    let (status, shown) = case(&stack, &closing.tracking_code).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status_zh"], "已结案");
    stack.advance(TimeDelta::minutes(1));
    let (status, expired) = case(&stack, &closing.tracking_code).await;
    assert_eq!((status, &expired), (404, &wrong));
    let (_, refused) = answer(&stack, &closing.tracking_code, true, "satisfied").await;
    assert_eq!(refused, wrong);
    // The open case's code still works.
    assert_eq!(case(&stack, &filed.tracking_code).await.0, 200);
}

#[tokio::test]
async fn lookups_are_rate_limited_per_client_behind_the_balancer() {
    let stack = Stack::builder()
        .with_query()
        .with_query_options(|options| {
            options.track_rate = 0.001;
            options.track_burst = 3;
            options.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
        .start()
        .await;
    let addr = stack.query_addr();
    let lookup = |client: &'static str| async move {
        post(
            addr,
            "/track/api/case",
            &json!({ "code": "ZZZZ-ZZZZ-ZZZZ" }),
            Some(client),
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(lookup("203.0.113.7").await.0, 404);
    }
    let (status, limited) = lookup("203.0.113.7").await;
    assert_eq!(status, 429);
    assert_eq!(limited["error"], "rate_limited");
    // A client that names itself first in the header is still the address the balancer saw.
    assert_eq!(lookup("203.0.113.8, 203.0.113.7").await.0, 429);
    // Another client behind the same balancer has its own bucket.
    assert_eq!(lookup("203.0.113.8").await.0, 404);
    // Answers take from the same bucket.
    let (status, _) = post(
        addr,
        "/track/api/answer",
        &json!({ "code": "ZZZZ-ZZZZ-ZZZZ", "resolved": false }),
        Some("203.0.113.7"),
    )
    .await;
    assert_eq!(status, 429);
}

/// The street's row of the streets scoreboard: followed up and satisfied.
async fn street_follow_ups(stack: &Stack, grid: &str) -> (u64, u64) {
    let district = unit(grid, Level::District);
    let street = unit(grid, Level::Street);
    stack.caught_up().await;
    let board = stack
        .client()
        .get_scoreboard(v1::GetScoreboardRequest {
            area_code: district,
            month: String::new(),
            kind: v1::ScoreboardKind::Streets as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let row = board
        .rows
        .iter()
        .find(|r| r.code == street)
        .unwrap_or_else(|| panic!("no row of {street}"));
    let rates = row.rates.as_ref().unwrap();
    (rates.followed_up, rates.satisfied)
}

#[tokio::test]
async fn a_residents_answer_is_the_follow_up_on_the_timeline_and_in_the_rate_the_first_counting() {
    let stack = Stack::command_center().await;
    let (_, [grid, _, _], _, _) = places();
    let worker = stack.token_for(Role::GridWorker, &grid).await;
    let first = submit(&stack, &worker, "track-answer-1", &grid).await;
    let second = submit(&stack, &worker, "track-answer-2", &grid).await;
    let incident: Uuid = first
        .incident
        .as_ref()
        .unwrap()
        .incident_id
        .parse()
        .unwrap();

    // Not resolved yet: nothing to answer on the page.
    let (_, shown) = case(&stack, &first.tracking_code).await;
    assert_eq!(shown["can_answer"], false);
    let community_handler = format!("hd-{}", unit(&grid, Level::Community));
    stack.ok(&community_handler, incident, resolve()).await;
    let (_, shown) = case(&stack, &first.tracking_code).await;
    assert_eq!(
        (&shown["status_zh"], &shown["can_answer"]),
        (&json!("已办结，待回访"), &json!(true))
    );
    assert_eq!(street_follow_ups(&stack, &grid).await, (0, 0));

    // A rating is required with 已解决.
    let (status, _) = answer(&stack, &first.tracking_code, true, "").await;
    assert_eq!(status, 400);
    let (status, ok) = answer(&stack, &first.tracking_code, true, "basically_satisfied").await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(stack.state(incident).await.0, "closed");
    let satisfaction: Option<String> = stack.incident_column(incident, "satisfaction").await;
    assert_eq!(satisfaction.as_deref(), Some("basically_satisfied"));
    // Counted as a follow-up, satisfied, exactly as a worker's call.
    assert_eq!(street_follow_ups(&stack, &grid).await, (1, 1));
    let entries: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, actor_id, note FROM timeline WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert!(entries.contains(&(
        "incident.verified".into(),
        "~resident".into(),
        "居民回访：已解决，基本满意".into()
    )));
    let (_, shown) = case(&stack, &first.tracking_code).await;
    assert_eq!(shown["answered"], "已解决，基本满意");
    assert_eq!(shown["can_answer"], false);

    // The same code answers once; the grid worker's call now comes second and is refused.
    let (status, again) = answer(&stack, &first.tracking_code, false, "").await;
    assert_eq!((status, &again["error"]), (409, &json!("not_now")));
    let late = stack
        .command(&format!("gw-{grid}"), incident, satisfied())
        .await;
    assert!(
        matches!(late.outcome, Some(Outcome::Error(ref e)) if e.code == v1::CommandErrorCode::InvalidTransition as i32),
        "{late:?}"
    );
    // The other report's resident disagrees: kept on the timeline, the verdict and the rate stand.
    let (status, kept) = answer(&stack, &second.tracking_code, false, "").await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(stack.state(incident).await.0, "closed");
    let satisfaction: Option<String> = stack.incident_column(incident, "satisfaction").await;
    assert_eq!(satisfaction.as_deref(), Some("basically_satisfied"));
    assert_eq!(street_follow_ups(&stack, &grid).await, (1, 1));
    let last: (String, String, String) = sqlx::query_as(
        "SELECT kind, actor_id, note FROM timeline WHERE incident_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(
        last,
        (
            "incident.commented".into(),
            "~resident".into(),
            "居民回访：未解决，不满意（未计入满意度：本轮已回访）".into()
        )
    );
    let (_, shown) = case(&stack, &second.tracking_code).await;
    assert_eq!(shown["answered"], "未解决");
}

#[tokio::test]
async fn only_the_query_service_answers_as_a_resident_and_dispatch_checks_the_code() {
    let stack = Stack::command_center().await;
    let (_, [grid, other, _], _, _) = places();
    let worker = stack.token_for(Role::GridWorker, &grid).await;
    let filed = submit(&stack, &worker, "track-forged", &grid).await;
    let incident: Uuid = filed
        .incident
        .as_ref()
        .unwrap()
        .incident_id
        .parse()
        .unwrap();
    let other_worker = stack.token_for(Role::GridWorker, &other).await;
    let elsewhere = submit(&stack, &other_worker, "track-elsewhere", &other).await;
    let community_handler = format!("hd-{}", unit(&grid, Level::Community));
    stack.ok(&community_handler, incident, resolve()).await;

    let verify = |code: &str| {
        Body::Verify(v1::Verify {
            satisfaction: v1::Satisfaction::Satisfied as i32,
            note: String::new(),
            tracking_code: code.into(),
        })
    };
    let refused = |reply: v1::CommandReply, code: v1::CommandErrorCode| {
        assert!(
            matches!(reply.outcome, Some(Outcome::Error(ref e)) if e.code == code as i32),
            "{reply:?}"
        );
    };
    // Even on the resident's subject (the admin can publish there), dispatch wants a code of a
    // report of this very incident.
    refused(
        stack
            .command("~resident", incident, verify("ZZZZ-ZZZZ-ZZZZ"))
            .await,
        v1::CommandErrorCode::NotFound,
    );
    refused(
        stack
            .command("~resident", incident, verify(&elsewhere.tracking_code))
            .await,
        v1::CommandErrorCode::NotFound,
    );
    refused(
        stack.command("~resident", incident, escalate()).await,
        v1::CommandErrorCode::Forbidden,
    );
    // A worker cannot slip a code into their own follow-up.
    refused(
        stack
            .command(
                &format!("gw-{grid}"),
                incident,
                verify(&filed.tracking_code),
            )
            .await,
        v1::CommandErrorCode::InvalidArgument,
    );
    assert_eq!(stack.state(incident).await.0, "resolved");

    // A grid worker's NATS connection may not publish on the resident's subject at all.
    let mut person = stack.connect_as(&worker).await;
    let command = v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: "~resident".into(),
        incident_id: incident.to_string(),
        expected_version: 0,
        body: Some(verify(&filed.tracking_code)),
    };
    let subject = "whistle.cmd.verify.~resident";
    person
        .client
        .publish(subject, prost::Message::encode_to_vec(&command).into())
        .await
        .unwrap();
    person.client.flush().await.unwrap();
    person.expect_violation(subject).await;
    assert_eq!(stack.state(incident).await.0, "resolved");
}

/// The page in headless Chromium at a phone's size, in Chinese: a case counting down to its
/// deadline, one overdue and supervised (已超期 N 小时，已督办), the resident's answer from the page,
/// and a wrong code showing nothing (services/whistle-query/console/e2e/track.test.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_residents_page_works_in_a_real_browser() {
    let chromium = chromium();
    // Brought to real time after the late case was filed 30 hours back: the browser counts on
    // the server's clock anyway, but the timestamps then read as a person would expect.
    let started = Utc::now();
    // Room for every lookup the browser makes from 127.0.0.1.
    let stack = Stack::builder()
        .with_query_options(|options| options.track_burst = 100)
        .at(started - TimeDelta::hours(30))
        .start()
        .await;
    let (district, [grid, other, third], _, _) = places();
    let late_worker = stack.token_for(Role::GridWorker, &other).await;
    let late = submit(&stack, &late_worker, "track-e2e-late", &other).await;
    let late_incident: Uuid = late.incident.as_ref().unwrap().incident_id.parse().unwrap();
    stack.advance(started - stack.now());
    stack.settle().await;
    stack
        .ok(
            &format!("op-{district}"),
            late_incident,
            Body::Supervise(v1::Supervise {
                task_id: String::new(),
                note: "限期办结".into(),
            }),
        )
        .await;
    let worker = stack.token_for(Role::GridWorker, &grid).await;
    let open = submit(&stack, &worker, "track-e2e-open", &grid).await;
    let answer_worker = stack.token_for(Role::GridWorker, &third).await;
    let resolved = submit(&stack, &answer_worker, "track-e2e-answer", &third).await;
    let resolved_incident: Uuid = resolved
        .incident
        .as_ref()
        .unwrap()
        .incident_id
        .parse()
        .unwrap();
    stack
        .ok(
            &format!("hd-{}", unit(&third, Level::Community)),
            resolved_incident,
            resolve(),
        )
        .await;
    assert!(
        stack
            .incident_column::<bool>(late_incident, "overdue")
            .await
    );

    browser_tests(
        &chromium,
        &[
            ("WHISTLE_E2E_FILES", &"e2e/track.test.mjs"),
            ("WHISTLE_CONSOLE_URL", &stack.query_url()),
            ("WHISTLE_TRACK_OPEN", &open.tracking_code),
            ("WHISTLE_TRACK_LATE", &late.tracking_code),
            ("WHISTLE_TRACK_RESOLVED", &resolved.tracking_code),
        ],
    )
    .await;

    // The answer given in the browser reached dispatch: the follow-up, counted.
    assert_eq!(stack.state(resolved_incident).await.0, "closed");
    let satisfaction: Option<String> = stack
        .incident_column(resolved_incident, "satisfaction")
        .await;
    assert_eq!(satisfaction.as_deref(), Some("satisfied"));
    assert_eq!(street_follow_ups(&stack, &third).await, (1, 1));
}
