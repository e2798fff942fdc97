//! The audit log of administration (issue 25, item 4): every administrative action is recorded
//! with its actor, time, area and before/after, in the transaction of the change; nobody — the
//! owner included — may change or delete an entry; operators search their own area's entries
//! (`ListAuditEntries`) and no one else may.

use chrono::{NaiveTime, Utc};
use serde_json::{json, Value};
use tonic::Code;
use uuid::Uuid;
use whistle_proto::v1;
use whistle_store::{
    audit::Actor,
    tokens::{self, NewToken, Role},
};

use crate::harness::*;

const PHONE: &str = "13812348000";

/// One entry as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    actor: String,
    os_user: Option<String>,
    db_role: String,
    token_id: Option<Uuid>,
    door: String,
    area_code: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// The entries of `action` about `target`, oldest first.
async fn logged(stack: &Stack, action: &str, target: &str) -> Vec<Logged> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        Option<String>,
        String,
        Option<Uuid>,
        String,
        String,
        Option<Value>,
        Option<Value>,
    )> = sqlx::query_as(
        "SELECT actor, os_user, db_role, token_id, door, area_code, before, after FROM audit_log
         WHERE action = $1 AND target = $2 ORDER BY at, id",
    )
    .bind(action)
    .bind(target)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(actor, os_user, db_role, token_id, door, area_code, before, after)| Logged {
                actor,
                os_user,
                db_role,
                token_id,
                door,
                area_code,
                before,
                after,
            },
        )
        .collect()
}

fn wang() -> Actor {
    Actor::cli(Some("王芳"))
}

#[tokio::test]
async fn each_administrative_action_is_on_the_log_with_its_actor_and_before_and_after() {
    let mut stack = Stack::command_center().await;
    let owner = stack.db().roles.owner.clone();
    let (district, [grid, ..], _, _) = places();

    // The test database was migrated and seeded through the store: the schema's versions and
    // every unit, department and person created are on the log, the staff's phones masked.
    let migrated = logged(&stack, "schema.migrate", "schema").await;
    assert_eq!(migrated.len(), 1, "{migrated:?}");
    assert_eq!(migrated[0].area_code, "");
    assert_eq!(migrated[0].actor, "whistle-testkit");
    assert_eq!(migrated[0].db_role, owner);
    let versions = migrated[0].after.as_ref().unwrap()["versions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(versions, whistle_store::MIGRATOR.iter().count());
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'org.unit'")
            .await,
        stack.count("SELECT count(*) FROM org_units").await
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'org.person'")
            .await,
        stack.count("SELECT count(*) FROM people").await
    );
    let operator_person = format!("op-{district}");
    let created = logged(&stack, "org.person", &operator_person).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].area_code, district);
    assert_eq!(created[0].before, None);
    let phone = created[0].after.as_ref().unwrap()["phone"]
        .as_str()
        .unwrap();
    assert!(phone.contains("****"), "a staff phone on the log: {phone}");

    // Dispatch recorded the policy version it started with, as its own role; a restart with
    // the same version records nothing more.
    let policy_loads = "SELECT count(*) FROM audit_log WHERE action = 'policy.load'";
    assert_eq!(stack.count(policy_loads).await, 1);
    let (actor, db_role, door): (String, String, String) =
        sqlx::query_as("SELECT actor, db_role, door FROM audit_log WHERE action = 'policy.load'")
            .fetch_one(stack.pool())
            .await
            .unwrap();
    assert!(actor.starts_with("whistle-dispatch@"), "{actor}");
    assert_eq!(db_role, stack.db().roles.dispatch);
    assert_eq!(door, "whistle-dispatch");
    stack.restart_dispatch().await;
    assert_eq!(stack.count(policy_loads).await, 1);

    // Migrating again applies nothing and records nothing.
    whistle_store::migrate(stack.pool(), &wang()).await.unwrap();
    assert_eq!(logged(&stack, "schema.migrate", "schema").await.len(), 1);

    // A token created: who, as what role, where; never its secret.
    let (token, secret) = tokens::create(
        stack.pool(),
        &NewToken {
            role: Some(Role::Operator),
            area_code: Some(district.clone()),
            label: "值班台".into(),
            ..Default::default()
        },
        Utc::now(),
        &wang(),
    )
    .await
    .unwrap();
    let created = logged(&stack, "token.create", &token.id.to_string()).await;
    assert_eq!(created.len(), 1);
    let entry = &created[0];
    assert_eq!(entry.actor, "王芳");
    assert!(entry.os_user.as_deref().is_some_and(|u| !u.is_empty()));
    assert_eq!(entry.db_role, owner);
    assert_eq!(entry.door, "cli");
    assert_eq!(entry.area_code, district);
    assert_eq!(entry.before, None);
    let after = entry.after.clone().unwrap();
    assert_eq!(after["role"], "operator");
    assert_eq!(after["person_id"], json!(operator_person));
    assert_eq!(after["label"], "值班台");
    assert_eq!(after["revoked_at"], Value::Null);
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM audit_log WHERE after::text LIKE '%{}%'",
                &secret[4..20]
            ))
            .await,
        0,
        "the secret is nowhere on the log"
    );

    // Revoked: the revocation time before and after; a second revocation changes and records
    // nothing.
    assert!(tokens::revoke(stack.pool(), token.id, Utc::now(), &wang())
        .await
        .unwrap());
    assert!(!tokens::revoke(stack.pool(), token.id, Utc::now(), &wang())
        .await
        .unwrap());
    let revoked = logged(&stack, "token.revoke", &token.id.to_string()).await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].before.as_ref().unwrap()["revoked_at"],
        Value::Null
    );
    assert!(revoked[0].after.as_ref().unwrap()["revoked_at"].is_string());

    // A person's notification settings, before and after; an unknown person is no entry.
    let liaison = format!("li-{}", dept(&grid, "water"));
    let deputy = format!("li-{}", dept(&grid, "heating"));
    let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    assert!(whistle_store::notifications::set_preferences(
        stack.pool(),
        &liaison,
        Some((t(22), t(7))),
        Some(&deputy),
        &wang(),
    )
    .await
    .unwrap());
    assert!(!whistle_store::notifications::set_preferences(
        stack.pool(),
        "li-nobody",
        None,
        None,
        &wang()
    )
    .await
    .unwrap());
    let notify = logged(&stack, "people.notify", &liaison).await;
    assert_eq!(notify.len(), 1);
    assert_eq!(
        notify[0].area_code, district,
        "a liaison's department's area"
    );
    assert_eq!(
        notify[0].before,
        Some(json!({ "quiet_start": null, "quiet_end": null, "deputy_id": null }))
    );
    assert_eq!(
        notify[0].after,
        Some(json!({ "quiet_start": "22:00", "quiet_end": "07:00", "deputy_id": deputy }))
    );
    assert_eq!(logged(&stack, "people.notify", "li-nobody").await, []);

    // An org change: the unit's row before and after; an unchanged seed records nothing.
    let dataset = whistle_domain::ordos::dataset();
    let mut edited = dataset.clone();
    let street = edited
        .units
        .iter_mut()
        .find(|u| u.code.as_str() == &grid[..9])
        .unwrap();
    let old_name = street.name.clone();
    street.name = "新名街道".into();
    let before = stack.count("SELECT count(*) FROM audit_log").await;
    whistle_store::org::seed(stack.pool(), &edited, &wang())
        .await
        .unwrap();
    assert_eq!(
        stack.count("SELECT count(*) FROM audit_log").await,
        before + 1
    );
    let renamed = logged(&stack, "org.unit", &grid[..9]).await;
    assert_eq!(renamed.len(), 2, "created by the seed, renamed now");
    assert_eq!(renamed[1].area_code, &grid[..9]);
    assert_eq!(renamed[1].before.as_ref().unwrap()["name"], json!(old_name));
    assert_eq!(renamed[1].after.as_ref().unwrap()["name"], "新名街道");
    whistle_store::org::seed(stack.pool(), &edited, &wang())
        .await
        .unwrap();
    assert_eq!(
        stack.count("SELECT count(*) FROM audit_log").await,
        before + 1
    );

    // An unmasked read of a resident's contact, by the token and person that read it, in the
    // incident's grid; the number itself is not copied to the log.
    let mut report = stack.filed(
        "audit-contact",
        &grid,
        "petition.collective",
        v1::Urgency::Urgent,
    );
    report.contact_phone = PHONE.into();
    let incident = stack.file(&report).await;
    let reader = stack.token_for(Role::Operator, &district).await;
    let detail = command_center(&stack.query_url(), &reader)
        .await
        .get_incident(v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.reports[0].contact_phone, PHONE);
    let reads = logged(&stack, "contact.read", &incident.to_string()).await;
    assert_eq!(reads.len(), 1);
    let read = &reads[0];
    assert_eq!(read.actor, operator_person);
    assert_eq!(read.door, "GetIncident");
    assert_eq!(read.area_code, grid);
    assert_eq!(read.db_role, stack.db().roles.query);
    let reader_token = tokens::list(stack.pool())
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.person_id.as_deref() == Some(&operator_person) && t.revoked_at.is_none())
        .unwrap();
    assert_eq!(read.token_id, Some(reader_token.id));
    assert_eq!(
        read.after,
        Some(json!({ "role": "operator", "report_id": "audit-contact", "photo_id": "" }))
    );
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM audit_log WHERE coalesce(after::text, '') LIKE '%{PHONE}%'
                    OR coalesce(before::text, '') LIKE '%{PHONE}%'"
            ))
            .await,
        0
    );

    // The whole city's operator finds them through the query service: by target, by action
    // family, by actor.
    let mut city = stack.client();
    let page = city
        .list_audit_entries(v1::ListAuditEntriesRequest {
            target: token.id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = page.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.revoke", "token.create"], "newest first");
    assert_eq!(page.entries[1].actor, "王芳");
    assert_eq!(page.entries[1].area_code, district);
    let after: Value = serde_json::from_str(&page.entries[1].after_json).unwrap();
    assert_eq!(after["label"], "值班台");
    assert_eq!(page.entries[1].before_json, "");
    let by_wang = city
        .list_audit_entries(v1::ListAuditEntriesRequest {
            actor: "王芳".into(),
            action: "token".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_wang.entries.len(), 2);
    let installation = city
        .list_audit_entries(v1::ListAuditEntriesRequest {
            action: "schema.migrate".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        installation.entries.len(),
        1,
        "the city's operator sees them"
    );
}

#[tokio::test]
async fn nobody_may_change_or_delete_an_entry_not_even_the_owner() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let dispatch = whistle_store::connect(&db.dispatch_url, 1).await.unwrap();
    let query = whistle_store::connect(&db.query_url, 1).await.unwrap();
    let entries = stack.count("SELECT count(*) FROM audit_log").await;
    assert!(entries > 0, "the seed is on the log");
    for (who, pool) in [
        ("owner", &db.pool),
        ("dispatch", &dispatch),
        ("query", &query),
    ] {
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ] {
            let refused = sqlx::raw_sql(sql).execute(pool).await.unwrap_err();
            let code = refused.as_database_error().and_then(|e| e.code());
            assert_eq!(code.as_deref(), Some("42501"), "{who}: {sql}: {refused}");
        }
        // Each may append.
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, door, action, target, area_code)
             VALUES ($1, now(), $2, 'test', 'test.append', 'x', '')",
        )
        .bind(id)
        .bind(who)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{who} may append: {e}"));
    }
    // The owner's refusals are the triggers' (it holds every privilege on its own table).
    let refused = sqlx::raw_sql("DELETE FROM audit_log")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    assert_eq!(
        stack.count("SELECT count(*) FROM audit_log").await,
        entries + 3
    );
    // A program cannot claim another's database role.
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, db_role FROM audit_log WHERE action = 'test.append' ORDER BY actor",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        roles,
        [
            ("dispatch".to_owned(), db.roles.dispatch.clone()),
            ("owner".to_owned(), db.roles.owner.clone()),
            ("query".to_owned(), db.roles.query.clone()),
        ]
    );
}

#[tokio::test]
async fn operators_search_only_their_areas_entries_and_no_one_else_may() {
    let stack = Stack::command_center().await;
    let (district, [grid, ..], other_district, _) = places();
    let create = |area: &str| NewToken {
        role: Some(Role::Viewer),
        area_code: Some(area.to_owned()),
        ..Default::default()
    };
    let mut mine = Vec::new();
    for _ in 0..3 {
        let (token, _) = tokens::create(stack.pool(), &create(&grid), Utc::now(), &wang())
            .await
            .unwrap();
        mine.push(token.id.to_string());
    }
    let (theirs, _) = tokens::create(stack.pool(), &create(&other_district), Utc::now(), &wang())
        .await
        .unwrap();

    let operator = stack.token_for(Role::Operator, &district).await;
    let mut client = command_center(&stack.query_url(), &operator).await;
    let all_of = |page: &v1::ListAuditEntriesResponse| {
        page.entries
            .iter()
            .map(|e| e.area_code.clone())
            .collect::<Vec<_>>()
    };
    // Every entry the district's operator sees is inside the district, its three tokens among
    // them, read page by page without repeats; the other district's and the installation's
    // entries are not.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_entries(v1::ListAuditEntriesRequest {
                action: "token.create".into(),
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(all_of(&page).iter().all(|a| a.starts_with(&district)));
        seen.extend(page.entries.iter().map(|e| e.target.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no entry twice: {seen:?}");
    for id in &mine {
        assert!(seen.contains(id), "{id} missing from {seen:?}");
    }
    assert!(!seen.contains(&theirs.id.to_string()));
    let everything = client
        .list_audit_entries(v1::ListAuditEntriesRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!everything.entries.is_empty());
    assert!(all_of(&everything).iter().all(|a| a.starts_with(&district)));
    // Naming the other district is refused.
    let refused = client
        .list_audit_entries(v1::ListAuditEntriesRequest {
            area_code: other_district.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The city's operator sees the other district's token and the installation's entries.
    let mut city = stack.client();
    let theirs_seen = city
        .list_audit_entries(v1::ListAuditEntriesRequest {
            target: theirs.id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs_seen.entries.len(), 1);
    // Bad filters are the caller's error.
    let bad = city
        .list_audit_entries(v1::ListAuditEntriesRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Liaisons, viewers and grid workers may not search the log, even of their own area.
    for (role, scope) in [
        (Role::Liaison, dept(&grid, "water")),
        (Role::Viewer, district.clone()),
        (Role::GridWorker, grid.clone()),
    ] {
        let token = stack.token_for(role, &scope).await;
        let refused = command_center(&stack.query_url(), &token)
            .await
            .list_audit_entries(v1::ListAuditEntriesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{role:?}");
    }
    let unknown = command_center(&stack.query_url(), "wst_not-a-token")
        .await
        .list_audit_entries(v1::ListAuditEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
}
