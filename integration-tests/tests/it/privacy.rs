//! Residents' personal data (issue 18, "Trust", item 4): a report's contact travels in no event,
//! is stored apart and sealed, is shown whole only to the roles that must call back (each such
//! read logged, and the log listed for operators), is masked in rejected reports, and survives a
//! key rotation.

use tonic::Code;
use uuid::Uuid;
use whistle_proto::v1;
use whistle_store::{contacts::Keyring, tokens::Role, tracking};

use crate::harness::*;

const PHONE: &str = "13812348000";
const MASKED: &str = "138****8000";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A petitions report from `grid`'s worker with the resident's phone.
fn with_contact(stack: &Stack, id: &str, grid: &str) -> v1::Report {
    let mut report = stack.filed(id, grid, "petition.collective", v1::Urgency::Urgent);
    report.contact_phone = PHONE.into();
    report
}

/// The contacts of the incident's reports as `token` sees them, or the refusal's code.
async fn seen(stack: &Stack, token: &str, incident: Uuid) -> Result<Vec<String>, Code> {
    command_center(&stack.query_url(), token)
        .await
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .map(|detail| {
            detail
                .into_inner()
                .reports
                .into_iter()
                .map(|r| r.contact_phone)
                .collect()
        })
        .map_err(|status| status.code())
}

async fn logged(stack: &Stack) -> i64 {
    stack.count("SELECT count(*) FROM contact_access").await
}

#[tokio::test]
async fn each_role_sees_the_contact_whole_or_masked_and_every_whole_read_is_logged() {
    let stack = Stack::command_center().await;
    let (district, [grid, other_grid, _], other_district, _) = places();
    let incident = stack.file(&with_contact(&stack, "pii-roles", &grid)).await;
    // The street whistles: the petitions department holds an open task.
    stack.whistle(&grid, incident).await;
    let petitions = dept(&grid, "petitions");
    let tasks = stack.tasks(incident).await;
    let task = tasks
        .iter()
        .find(|(_, department, _)| *department == petitions)
        .map(|(id, _, _)| u32::try_from(*id).unwrap())
        .unwrap_or_else(|| panic!("no petitions task: {tasks:?}"));

    let reporter = stack.token_for(Role::GridWorker, &grid).await;
    let other_worker = stack.token_for(Role::GridWorker, &other_grid).await;
    let holder = stack.token_for(Role::Liaison, &petitions).await;
    let other_liaison = stack
        .token_for(Role::Liaison, &dept(&grid, "heating"))
        .await;
    let operator = stack.token_for(Role::Operator, &district).await;
    let far_operator = stack.token_for(Role::Operator, &other_district).await;
    let viewer = stack.token_for(Role::Viewer, &district).await;

    // Who, with which token, sees what, writing how many access log rows.
    type Case<'a> = (&'a str, &'a str, Result<Vec<String>, Code>, i64);
    let cases: [Case; 7] = [
        (
            "the reporting grid worker",
            &reporter,
            Ok(vec![PHONE.into()]),
            1,
        ),
        (
            "another grid's worker",
            &other_worker,
            Err(Code::PermissionDenied),
            0,
        ),
        (
            "the liaison holding the task",
            &holder,
            Ok(vec![PHONE.into()]),
            1,
        ),
        (
            "another department's liaison",
            &other_liaison,
            Ok(vec![MASKED.into()]),
            0,
        ),
        (
            "the district's operator",
            &operator,
            Ok(vec![PHONE.into()]),
            1,
        ),
        (
            "another district's operator",
            &far_operator,
            Err(Code::PermissionDenied),
            0,
        ),
        ("a viewer", &viewer, Ok(vec![MASKED.into()]), 0),
    ];
    for (who, token, expected, rows) in cases {
        let before = logged(&stack).await;
        assert_eq!(seen(&stack, token, incident).await, expected, "{who}");
        assert_eq!(
            logged(&stack).await - before,
            rows,
            "{who}: access log rows"
        );
    }

    // Once the department no longer holds an open task, its liaison sees the mask.
    let liaison = format!("li-{petitions}");
    stack.ok(&liaison, incident, accept(task)).await;
    assert_eq!(
        seen(&stack, &holder, incident).await,
        Ok(vec![PHONE.into()]),
        "an accepted task is still open"
    );
    let resolved = v1::command::Body::Resolve(v1::Resolve {
        task_id: task.to_string(),
        note: "已办结".into(),
        photo_ids: Vec::new(),
    });
    stack.ok(&liaison, incident, resolved).await;
    let before = logged(&stack).await;
    assert_eq!(
        seen(&stack, &holder, incident).await,
        Ok(vec![MASKED.into()])
    );
    assert_eq!(logged(&stack).await, before);

    // Each logged read names its reader and what was read.
    let rows: Vec<(String, Option<String>, Uuid, String, String)> = sqlx::query_as(
        "SELECT role, person_id, incident_id, report_id, door FROM contact_access ORDER BY at, id",
    )
    .fetch_all(stack.pool())
    .await
    .unwrap();
    let expected: Vec<(String, Option<String>, Uuid, String, String)> = [
        ("grid_worker", format!("gw-{grid}")),
        ("liaison", format!("li-{petitions}")),
        ("operator", format!("op-{district}")),
        ("liaison", format!("li-{petitions}")),
    ]
    .into_iter()
    .map(|(role, person)| {
        (
            role.to_owned(),
            Some(person),
            incident,
            "pii-roles".to_owned(),
            "GetIncident".to_owned(),
        )
    })
    .collect();
    assert_eq!(rows, expected);

    // Operators list the log of their area, newest first, page by page; others may not.
    let mut client = command_center(&stack.query_url(), &operator).await;
    let first = client
        .list_contact_access(v1::ListContactAccessRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("ListContactAccess")
        .into_inner();
    let roles = |page: &v1::ListContactAccessResponse| -> Vec<String> {
        page.accesses.iter().map(|a| a.role.clone()).collect()
    };
    assert_eq!(roles(&first), ["liaison", "operator"]);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_contact_access(v1::ListContactAccessRequest {
            incident_id: incident.to_string(),
            page_token: first.next_page_token.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roles(&second), ["liaison", "grid_worker"]);
    assert_eq!(second.accesses[1].person_id, format!("gw-{grid}"));
    assert_eq!(second.accesses[1].incident_id, incident.to_string());
    assert!(second.next_page_token.is_empty());
    // Another district's operator sees nothing of this one's, and may not ask for it.
    let far = command_center(&stack.query_url(), &far_operator)
        .await
        .list_contact_access(v1::ListContactAccessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(far.accesses.is_empty(), "{far:?}");
    for (token, area) in [
        (&far_operator, district.as_str()),
        (&viewer, ""),
        (&holder, ""),
    ] {
        let refused = command_center(&stack.query_url(), token)
            .await
            .list_contact_access(v1::ListContactAccessRequest {
                area_code: area.into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(refused), Code::PermissionDenied, "area {area:?}");
    }
}

#[tokio::test]
async fn the_phone_is_in_no_event_no_stored_report_and_nowhere_in_a_dump_of_the_database() {
    let stack = Stack::command_center().await;
    let (_, [grid, _, _], _, _) = places();
    let incident = stack.file(&with_contact(&stack, "pii-first", &grid)).await;
    // A duplicate, attached to the same incident, brings its own contact.
    let duplicate = stack.file(&with_contact(&stack, "pii-again", &grid)).await;
    assert_eq!(duplicate, incident);
    stack.wait_published("report.attached", 1).await;

    for stored in read_stream(stack.js(), "WHISTLE_EVENTS").await {
        assert!(
            !contains(&stored.payload, PHONE),
            "the phone travels in {}",
            stored.subject
        );
    }
    let outbox: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_all(stack.pool())
        .await
        .unwrap();
    assert!(outbox.iter().all(|payload| !contains(payload, PHONE)));
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM reports")
        .fetch_all(stack.pool())
        .await
        .unwrap();
    assert_eq!(payloads.len(), 2);
    assert!(payloads.iter().all(|payload| !contains(payload, PHONE)));
    assert_eq!(
        stack
            .count("SELECT count(*) FROM report_contacts WHERE masked = '138****8000' AND key_id = 'test-1'")
            .await,
        2
    );
    // Stored sealed, and still there for those who call back.
    let operator = stack.token();
    assert_eq!(
        seen(&stack, operator, incident).await,
        Ok(vec![PHONE.into(), PHONE.into()])
    );

    let bindir = whistle_testkit::find_pg_bindir().expect("PostgreSQL's bin dir (pg_dump)");
    let dump = std::process::Command::new(bindir.join("pg_dump"))
        .args(["--data-only", "--dbname", &stack.db().url])
        .output()
        .expect("running pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        contains(&dump.stdout, "report_contacts"),
        "the dump has the contacts table"
    );
    assert!(contains(&dump.stdout, MASKED), "the dump has the masks");
    assert!(
        !contains(&dump.stdout, PHONE),
        "the dump holds the phone in clear"
    );
}

#[tokio::test]
async fn rejected_reports_keep_the_contact_masked() {
    let mut stack = Stack::start().await;
    let (_, [grid, _, _], _, _) = places();
    // A report that decodes but is invalid (an unknown category), in protobuf …
    let mut invalid = report("pii-rejected", &grid);
    invalid.contact_phone = PHONE.into();
    invalid.category = "weather.too_cold".into();
    stack.publish(&invalid).await;
    // … and bytes that are no report at all, with the phone in them.
    let garbage = format!(r#"{{"reportId": "pii-garbage", "contactPhone": "{PHONE}", "#);
    let mut json = async_nats::HeaderMap::new();
    json.insert("Content-Type", "application/json");
    stack
        .reporter()
        .publish_raw(&subject_for(&grid), json, garbage.clone().into_bytes())
        .await;
    eventually("both rejected", WAIT, || async {
        stream_len(stack.js(), "WHISTLE_REJECTED").await == 2
    })
    .await
    .unwrap();

    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT reason, payload FROM rejected_reports ORDER BY stream_sequence")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    let republished = read_stream(stack.js(), "WHISTLE_REJECTED").await;
    assert_eq!(stored.len(), 2);
    for ((reason, payload), copy) in stored.iter().zip(&republished) {
        assert_eq!(&copy.payload[..], &payload[..], "{reason}: the same bytes");
        assert!(!contains(payload, PHONE), "{reason}");
    }
    assert_eq!(stored[0].0, "unknown_category");
    let kept = <v1::Report as prost::Message>::decode(stored[0].1.as_slice()).unwrap();
    assert_eq!(kept.contact_phone, MASKED);
    assert_eq!(kept.title, invalid.title, "the rest of the report is kept");
    assert_eq!(stored[1].0, "decode_error");
    assert_eq!(stored[1].1, garbage.replace(PHONE, MASKED).into_bytes());
    stack.stop_dispatch().await;
}

#[tokio::test]
async fn a_key_is_rotated_by_rekeying_and_the_old_one_dropped() {
    let mut stack = Stack::command_center().await;
    let (_, [grid, _, _], _, _) = places();
    let incident = stack.file(&with_contact(&stack, "pii-rekey", &grid)).await;
    let old = std::fs::read_to_string(stack.contact_keys()).unwrap();
    let old_line = old.trim().to_owned();

    // A new first line seals from now on; the old one still opens.
    let new_line = Keyring::generate_line("test-2");
    whistle_testkit::write_keyring(stack.contact_keys(), &[new_line.clone(), old_line]).unwrap();
    let keyring = Keyring::load(stack.contact_keys()).unwrap();
    assert_eq!(
        whistle_store::contacts::count_to_rekey(stack.pool(), &keyring)
            .await
            .unwrap(),
        1
    );
    // The resident's tracking code, sealed under the old key too.
    let (key_id, nonce, ciphertext): (String, Vec<u8>, Vec<u8>) = sqlx::query_as(
        "SELECT key_id, nonce, ciphertext FROM tracking_codes WHERE report_id = 'pii-rekey'",
    )
    .fetch_one(stack.pool())
    .await
    .unwrap();
    let code = tracking::open(&keyring, "pii-rekey", &key_id, &nonce, &ciphertext)
        .expect("the old key opens the code");
    assert_eq!(
        tracking::count_to_rekey(stack.pool(), &keyring)
            .await
            .unwrap(),
        1
    );
    // As `whistle contacts rekey` does it: batches until none is left, contacts then codes.
    while whistle_store::contacts::rekey(stack.pool(), &keyring, 1)
        .await
        .unwrap()
        > 0
    {}
    while tracking::rekey(stack.pool(), &keyring, 1).await.unwrap() > 0 {}
    assert_eq!(
        tracking::count_to_rekey(stack.pool(), &keyring)
            .await
            .unwrap(),
        0
    );
    // The resident's code is the same and opens under the new key alone.
    let new_only = Keyring::parse(&new_line).unwrap();
    let found = tracking::find(
        stack.pool(),
        &new_only,
        &code,
        chrono::TimeDelta::days(30),
        stack.now(),
    )
    .await
    .unwrap()
    .expect("the code opens its case after the rekey");
    assert_eq!(found.report_id, "pii-rekey");
    assert_eq!(
        whistle_store::contacts::count_to_rekey(stack.pool(), &keyring)
            .await
            .unwrap(),
        0
    );
    let key: String =
        sqlx::query_scalar("SELECT key_id FROM report_contacts WHERE report_id = 'pii-rekey'")
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert_eq!(key, "test-2");

    // The old line dropped, the services restarted: reads still open the contact, and new
    // contacts are sealed under the new key.
    whistle_testkit::write_keyring(stack.contact_keys(), &[new_line]).unwrap();
    stack.stop_query().await;
    stack.start_query().await;
    stack.restart_dispatch().await;
    let operator = stack.token().to_owned();
    assert_eq!(
        seen(&stack, &operator, incident).await,
        Ok(vec![PHONE.into()])
    );
    let (_, [_, second_grid, _], _, _) = places();
    stack
        .file(&with_contact(&stack, "pii-after", &second_grid))
        .await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM report_contacts WHERE key_id = 'test-2'")
            .await,
        2
    );
}

#[tokio::test]
async fn dispatch_refuses_to_start_without_a_keyring_unless_contacts_are_dropped() {
    let mut stack = Stack::builder()
        .without_dispatch()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    let mut options = stack.dispatch_options();
    options.contact_keys = None;
    let refused = options.build().await.err().expect("refused");
    assert!(refused.to_string().contains("--no-contacts"), "{refused}");

    stack
        .start_dispatch_with(|options| {
            options.contact_keys = None;
            options.no_contacts = true;
        })
        .await;
    let (_, [grid, _, _], _, _) = places();
    let incident = stack
        .file(&with_contact(&stack, "pii-dropped", &grid))
        .await;
    assert_eq!(stack.count("SELECT count(*) FROM report_contacts").await, 0);
    let operator = stack.token().to_owned();
    assert_eq!(
        seen(&stack, &operator, incident).await,
        Ok(vec![String::new()])
    );
}

/// Retention (issue 25, item 7): once an incident has been settled longer than the policy's
/// `[retention] contacts` (180 days for Ordos), dispatch erases its residents' contacts and says
/// so on its timeline, touching nothing else; an open incident and one settled since keep theirs.
/// A resident's request (个人信息保护法) finds their number however it is spelled and erases it
/// at once, open incident or not.
#[tokio::test]
async fn contacts_go_when_their_time_is_up_or_the_resident_asks() {
    let stack = Stack::builder()
        .with_query()
        .at(ten_o_clock_in_ordos())
        .with_dispatch_options(|o| o.retention_interval = std::time::Duration::from_millis(200))
        .start()
        .await;
    let (_, [first, second, third], _, _) = places();
    let with_phone = |id: &str, grid: &str| {
        let mut report = stack.filed(id, grid, "heating.no_heat", v1::Urgency::Normal);
        report.contact_phone = PHONE.into();
        report
    };
    // Handled by its community and closed by the grid worker's satisfied follow-up.
    let settle = |incident: Uuid, grid: String| {
        let stack = &stack;
        async move {
            let community = format!("hd-{}", unit(&grid, whistle_domain::Level::Community));
            stack.ok(&community, incident, resolve()).await;
            stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
            assert_eq!(stack.state(incident).await.0, "closed");
        }
    };
    let row = |table: &'static str, key: &'static str, incident: Uuid| {
        let pool = stack.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t WHERE {key} = $1"
            ))
            .bind(incident)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let contacts = |incident: Uuid| {
        let stack = &stack;
        async move {
            stack
                .count(&format!(
                    "SELECT count(*) FROM report_contacts WHERE incident_id = '{incident}'"
                ))
                .await
        }
    };

    let old = stack.file(&with_phone("keep-old", &first)).await;
    settle(old, first.clone()).await;
    let open = stack.file(&with_phone("keep-open", &second)).await;
    stack.advance(chrono::TimeDelta::days(100));
    let recent = stack.file(&with_phone("keep-recent", &third)).await;
    settle(recent, third.clone()).await;
    let (incident_row, report_row) = (
        row("incidents", "id", old).await,
        row("reports", "incident_id", old).await,
    );
    let before = stack.timeline(old).await;
    assert_eq!(contacts(old).await, 1);

    // 181 days after the first closed, 81 after the second.
    stack.advance(chrono::TimeDelta::days(81));
    eventually("the settled incident's contact erased", WAIT, || async {
        contacts(old).await == 0
    })
    .await
    .unwrap();
    assert_eq!(
        contacts(open).await,
        1,
        "an open incident keeps its contact"
    );
    assert_eq!(contacts(recent).await, 1, "settled 81 days ago: kept");
    let after = stack.timeline(old).await;
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after[before.len()..], ["privacy.erased".to_owned()]);
    let note: String = sqlx::query_scalar(
        "SELECT note FROM timeline WHERE incident_id = $1 AND kind = 'privacy.erased'",
    )
    .bind(old)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert!(note.contains("180 天") && note.contains("1 条"), "{note}");
    assert_eq!(row("incidents", "id", old).await, incident_row);
    assert_eq!(row("reports", "incident_id", old).await, report_row);
    let operator = stack.token().to_owned();
    assert_eq!(seen(&stack, &operator, old).await, Ok(vec![String::new()]));

    // The resident asks: the number spelled another way finds the two reports left.
    let keyring = Keyring::load(stack.contact_keys()).unwrap();
    let mut heard = Vec::new();
    let found = whistle_store::retention::holding(
        stack.pool(),
        &keyring,
        "+86 138-1234-8000",
        |read, found| heard.push((read, found)),
    )
    .await
    .unwrap();
    let mut reports: Vec<String> = found.into_iter().map(|(id, _)| id).collect();
    reports.sort();
    assert_eq!(reports, ["keep-open", "keep-recent"]);
    assert_eq!(heard.last(), Some(&(2, 2)));
    let erased = whistle_store::retention::erase(
        stack.pool(),
        whistle_store::retention::Scope::Reports(&reports),
        &whistle_store::audit::Actor::cli(Some("op-privacy")),
        "依居民申请（PIPL-2026-001）",
        stack.now(),
    )
    .await
    .unwrap();
    assert_eq!(erased, (2, 2));
    assert_eq!(contacts(open).await + contacts(recent).await, 0);
    assert_eq!(seen(&stack, &operator, open).await, Ok(vec![String::new()]));
    let by: (String, String) = sqlx::query_as(
        "SELECT actor_id, note FROM timeline WHERE incident_id = $1 AND kind = 'privacy.erased'",
    )
    .bind(open)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    assert_eq!(by.0, "op-privacy");
    assert!(by.1.contains("PIPL-2026-001"), "{}", by.1);
    // Asked again: nothing left, nothing written.
    assert_eq!(
        whistle_store::retention::erase(
            stack.pool(),
            whistle_store::retention::Scope::Reports(&reports),
            &whistle_store::audit::Actor::cli(Some("op-privacy")),
            "again",
            stack.now(),
        )
        .await
        .unwrap(),
        (0, 0)
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM timeline WHERE kind = 'privacy.erased'")
            .await,
        3
    );
    // Each erasure is on the audit log too, in its incident's area, with who and why.
    let audited: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT actor, door, target, after->>'why' FROM audit_log
         WHERE action = 'contacts.erase' ORDER BY at, target",
    )
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert!(audited[0].0.starts_with("whistle-dispatch@"), "{audited:?}");
    assert_eq!(audited[0].2, old.to_string());
    assert!(audited[0].3.contains("180 天"));
    assert!(audited[1..]
        .iter()
        .all(|a| a.0 == "op-privacy" && a.1 == "cli" && a.3.contains("PIPL-2026-001")));
}
