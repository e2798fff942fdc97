//! The city's organisation imported from files (docs/operations.md, "The city's organisation"):
//! the repo's Ordos files, a changed export, refusals, versions and the audit log, against real
//! PostgreSQL; and a running dispatch following an applied version.

use std::path::{Path, PathBuf};

use serde_json::Value;
use whistle_domain::org_sheets;
use whistle_store::org::{Imported, Source};

use crate::harness::*;

fn ordos_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ordos")
}

async fn import(pool: &sqlx::PgPool, input: &whistle_orgfile::Input, apply: bool) -> Imported {
    let source = Source {
        sha256: input.sha256.clone(),
        files: input.files.clone(),
    };
    whistle_store::org::import(pool, &input.org, &source, &admin(), apply)
        .await
        .expect("the import runs")
}

/// The org tables as JSON rows in key order (people's org columns only), to compare databases.
async fn org_rows(pool: &sqlx::PgPool) -> Vec<Vec<Value>> {
    let mut tables = Vec::new();
    for sql in [
        "SELECT to_jsonb(u) - 'boundary' FROM org_units u ORDER BY code",
        "SELECT to_jsonb(d) FROM departments d ORDER BY code",
        "SELECT jsonb_build_object('id', id, 'name', name, 'phone', phone, 'role', role,
                'grid_code', grid_code, 'department_code', department_code, 'area_code', area_code)
         FROM people ORDER BY id",
    ] {
        tables.push(sqlx::query_scalar(sql).fetch_all(pool).await.unwrap());
    }
    tables
}

fn lines(diff: &org_sheets::Diff) -> Vec<String> {
    diff.parts()
        .iter()
        .flat_map(|(_, changes)| changes.iter().map(ToString::to_string))
        .collect()
}

#[tokio::test]
async fn the_ordos_files_import_as_what_seed_wrote_and_again_as_no_changes() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db(); // seeded from the compiled dataset, as `seed` did before the files
    let seeded = org_rows(&db.pool).await;
    // Nothing refers to the org in a fresh database: empty it, then load the repo's files.
    sqlx::raw_sql("DELETE FROM people; DELETE FROM departments; DELETE FROM org_units")
        .execute(&db.pool)
        .await
        .unwrap();
    let input = whistle_orgfile::read_files(&[ordos_dir()]).unwrap();
    assert_eq!(input.files, ["ordos-grids.geojson", "ordos.xlsx"]);

    let Imported::Preview(plan) = import(&db.pool, &input, false).await else {
        panic!("a preview of the whole org");
    };
    assert_eq!(
        plan.diff.summary(),
        "单位 +1869 ~0 -0; 部门 +190 ~0 -0; 人员 +2059 ~0 -0; 网格边界 +1564 ~0 -0"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_units").await,
        0,
        "a preview writes nothing"
    );

    let Imported::Applied { version, .. } = import(&db.pool, &input, true).await else {
        panic!("applied");
    };
    assert_eq!(version, 1);
    assert_eq!(
        org_rows(&db.pool).await,
        seeded,
        "the files are the compiled dataset"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_units WHERE boundary IS NOT NULL AND level = 'grid'")
            .await,
        1564
    );
    let loaded = whistle_store::org::load(&db.pool).await.unwrap();
    assert!(whistle_domain::OrgIndex::build(loaded).is_ok());

    // The same files again: nothing written, no version.
    assert_eq!(import(&db.pool, &input, true).await, Imported::NoChanges);
    let versions = whistle_store::org::versions(&db.pool, 10).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].input_sha256, input.sha256);
    assert_eq!(versions[0].actor, "it-admin");
    assert_eq!(versions[0].summary["单位"]["added"], 1869);

    let entries = whistle_store::audit::list(
        &db.pool,
        &whistle_store::audit::Filter {
            action: Some("org.import".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target, "1");
    let after = entries[0].after.as_ref().unwrap();
    assert_eq!(after["version"], 1);
    assert_eq!(after["counts"]["人员"]["added"], 2059);
    assert_eq!(after["input_sha256"], input.sha256.as_str());
    // Each person's row is on the log with the phone masked.
    let person = whistle_store::audit::list(
        &db.pool,
        &whistle_store::audit::Filter {
            action: Some("org.person".into()),
            target: Some("gw-150602001001001".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let phone = person[0].after.as_ref().unwrap()["phone"].as_str().unwrap();
    assert!(phone.contains("****"), "{phone}");
}

/// Rewrites one CSV file of `dir` with `edit` applied to its text.
fn edit(dir: &Path, file: &str, edit: impl FnOnce(String) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test]
async fn a_changed_export_imports_as_its_diff_once_and_refusals_change_nothing() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let dir = std::env::temp_dir().join(format!("whistle-org-it-{}", uuid::Uuid::now_v7()));
    let state = whistle_store::org::load_state(&mut db.pool.acquire().await.unwrap())
        .await
        .unwrap();
    whistle_orgfile::export(&state, &dir, whistle_orgfile::Format::Csv).unwrap();
    let input = whistle_orgfile::read_files(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(
        import(&db.pool, &input, true).await,
        Imported::NoChanges,
        "export then import changes nothing"
    );

    // A renamed community, a grid worker's new phone, a liaison not in the file, a new grid
    // with its worker and boundary.
    let community = "150602001001";
    let old_name: String = sqlx::query_scalar("SELECT name FROM org_units WHERE code = $1")
        .bind(community)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    edit(&dir, "单位.csv", |text| {
        text.replace(
            &format!("{community},150602001,社区,{old_name},"),
            &format!("{community},150602001,社区,新名社区,"),
        ) + "150602001001099,150602001001,网格,新建网格,,39.81,109.95\r\n"
    });
    let worker_phone: String =
        sqlx::query_scalar("SELECT phone FROM people WHERE id = 'gw-150602001001001'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    edit(&dir, "人员.csv", |text| {
        let kept: Vec<&str> = text
            .split("\r\n")
            .filter(|line| !line.starts_with("li-150602-water,"))
            .collect();
        kept.join("\r\n").replace(&worker_phone, "13912345678")
            + "gw-150602001001099,新网格员,13900000099,网格员,150602001001099\r\n"
    });
    std::fs::write(
        dir.join(whistle_orgfile::BOUNDARIES_FILE),
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"150602001001099"},"geometry":{"type":"Polygon","coordinates":[[[109.949,39.809],[109.951,39.809],[109.951,39.811],[109.949,39.811],[109.949,39.809]]]}}]}"#,
    )
    .unwrap();
    let input = whistle_orgfile::read_files(std::slice::from_ref(&dir)).unwrap();
    let Imported::Preview(plan) = import(&db.pool, &input, false).await else {
        panic!("a preview");
    };
    let liaison: String =
        sqlx::query_scalar("SELECT name FROM people WHERE id = 'li-150602-water'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let masked = whistle_domain::contact::mask(&worker_phone);
    let worker: String =
        sqlx::query_scalar("SELECT name FROM people WHERE id = 'gw-150602001001001'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        lines(&plan.diff),
        [
            format!("~ {community} 新名社区: 名称 {old_name:?} → \"新名社区\""),
            "+ 150602001001099 新建网格".to_owned(),
            format!("~ gw-150602001001001 {worker}: 电话 {masked:?} → \"139****5678\""),
            "+ gw-150602001001099 新网格员".to_owned(),
            format!("= li-150602-water {liaison}: 不在文件中，保留 (not in the file, kept; use `whistle people offboard`)"),
            "+ 150602001001099 新建网格".to_owned(),
        ]
    );
    let Imported::Applied { version, .. } = import(&db.pool, &input, true).await else {
        panic!("applied");
    };
    assert_eq!(version, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM people WHERE id = 'li-150602-water'")
            .await,
        1,
        "an import never removes a person"
    );
    assert_eq!(import(&db.pool, &input, true).await, Imported::NoChanges);
    let logged: Vec<(String, String)> = whistle_store::audit::list(
        &db.pool,
        &whistle_store::audit::Filter {
            action: Some("org".into()),
            limit: 20,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.actor == "it-admin")
    .map(|e| (e.action, e.target))
    .collect();
    let mut logged = logged;
    logged.sort();
    assert_eq!(
        logged,
        [
            ("org.import".to_owned(), "1".to_owned()),
            ("org.person".to_owned(), "gw-150602001001001".to_owned()),
            ("org.person".to_owned(), "gw-150602001001099".to_owned()),
            ("org.unit".to_owned(), "150602001001".to_owned()),
            ("org.unit".to_owned(), "150602001001099".to_owned()),
            ("org.unit".to_owned(), "150602001001099".to_owned()),
        ]
    );

    // Removing the new grid while an incident lies in it: refused, nothing written. Its worker
    // moves to another grid in the same file, so only the incident holds it.
    sqlx::query(
        "INSERT INTO incidents (id, status, level, category, urgency, title, description,
             district_code, street_code, community_code, grid_code, reporter_id, policy_version,
             reported_at, created_at, updated_at)
         VALUES ($1, 'open', 'community', 'heating.no_heat', 'normal', 't', 'd', '150602',
             '150602001', '150602001001', '150602001001099', 'gw-150602001001099', 'v', now(), now(), now())",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&db.pool)
    .await
    .unwrap();
    edit(&dir, "单位.csv", |text| {
        text.replace(
            "150602001001099,150602001001,网格,新建网格,,39.81,109.95\r\n",
            "",
        )
    });
    edit(&dir, "人员.csv", |text| {
        text.replace(
            "gw-150602001001099,新网格员,13900000099,网格员,150602001001099",
            "gw-150602001001099,新网格员,13900000099,网格员,150602001001002",
        )
    });
    std::fs::write(
        dir.join(whistle_orgfile::BOUNDARIES_FILE),
        r#"{"type":"FeatureCollection","features":[]}"#,
    )
    .unwrap();
    let input = whistle_orgfile::read_files(std::slice::from_ref(&dir)).unwrap();
    let Imported::Invalid(problems) = import(&db.pool, &input, true).await else {
        panic!("refused");
    };
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["单位 (不在文件中) 编码 \"150602001001099\": 不能删除：1个事件在此"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_units WHERE code = '150602001001099'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM org_versions").await, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_malformed_workbook_is_answered_with_every_bad_cell_and_nothing_changes() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let before = org_rows(&db.pool).await;
    let mut dataset = whistle_domain::ordos::dataset();
    dataset.units[2].lat = 95.0; // a district
    let [mut units, departments, mut people] = org_sheets::to_sheets(&dataset);
    units.rows[10].cells[1] = "150603".into(); // a street under another district
    people.rows[0].cells[4] = String::new(); // a grid worker without a grid
    let workbook = whistle_orgfile::xlsx(&[units, departments, people]).unwrap();
    let input = whistle_orgfile::read_named([("组织机构.xlsx", workbook.as_slice())]).unwrap();
    let Imported::Invalid(problems) = import(&db.pool, &input, true).await else {
        panic!("refused");
    };
    let street = &dataset.units[10].code;
    let person = &dataset.people[0].id;
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "单位 第4行 纬度 \"95\": 超出范围（-90～90）".to_owned(),
            format!("单位 第12行 编码 \"{street}\": 未以上级编码 150603 开头"),
            "人员 第2行 岗位 \"\": 角色网格员须填写岗位（网格编码）".to_owned(),
        ],
        "{person}"
    );
    assert_eq!(org_rows(&db.pool).await, before);
    assert_eq!(db.count("SELECT count(*) FROM org_versions").await, 0);
}

#[tokio::test]
async fn a_running_dispatch_follows_an_applied_version() {
    let stack = Stack::builder().at(chrono::Utc::now()).start().await;
    let grid = "150602001001099";
    // Before the import dispatch does not know the grid: the report is rejected.
    stack
        .publish(&stack.filed(
            "org-before",
            grid,
            "heating.no_heat",
            whistle_proto::v1::Urgency::Normal,
        ))
        .await;
    eventually("the report rejected", WAIT, || async {
        stack
            .count("SELECT count(*) FROM rejected_reports WHERE report_id = 'org-before'")
            .await
            == 1
    })
    .await
    .unwrap();

    let mut dataset = whistle_store::org::load(stack.pool()).await.unwrap();
    dataset.units.push(whistle_domain::OrgUnit {
        code: grid.parse().unwrap(),
        name: "新建网格".into(),
        classification: String::new(),
        lat: 39.81,
        lon: 109.95,
    });
    dataset.people.push(whistle_domain::Person {
        id: format!("gw-{grid}").parse().unwrap(),
        name: "新网格员".into(),
        phone: "13900000099".into(),
        role: whistle_domain::Role::GridWorker {
            grid: grid.parse().unwrap(),
        },
    });
    let [units, departments, people] = org_sheets::to_sheets(&dataset);
    let workbook = whistle_orgfile::xlsx(&[units, departments, people]).unwrap();
    let input = whistle_orgfile::read_named([("组织机构.xlsx", workbook.as_slice())]).unwrap();
    assert!(matches!(
        import(stack.pool(), &input, true).await,
        Imported::Applied { version: 1, .. }
    ));

    // Dispatch reloads on the notification (or its next poll); until then a report may still be
    // rejected, so file fresh ones until one is accepted.
    let deadline = std::time::Instant::now() + WAIT;
    for attempt in 0.. {
        let id = format!("org-after-{attempt}");
        stack
            .publish(&stack.filed(
                &id,
                grid,
                "heating.no_heat",
                whistle_proto::v1::Urgency::Normal,
            ))
            .await;
        let outcome = loop {
            let accepted = stack
                .count(&format!(
                    "SELECT count(*) FROM reports WHERE report_id = '{id}'"
                ))
                .await;
            let rejected = stack
                .count(&format!(
                    "SELECT count(*) FROM rejected_reports WHERE report_id = '{id}'"
                ))
                .await;
            if accepted + rejected > 0 {
                break accepted == 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        if outcome {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dispatch did not follow org version 1 within {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The query service follows an applied import as well: a street added to a district shows on
/// that district's live street board (an idle row) at the service's next look at the version,
/// with no restart; before the import it is not there.
#[tokio::test]
async fn a_running_query_service_lists_an_imported_street_on_the_live_board() {
    use whistle_proto::v1::{GetScoreboardRequest, ScoreboardKind};

    let stack = Stack::builder()
        .at(chrono::Utc::now())
        .with_query_options(|o| o.policy_poll_interval = std::time::Duration::from_millis(200))
        .start()
        .await;
    let street = "150602099";
    let streets = || async {
        stack
            .client()
            .get_scoreboard(GetScoreboardRequest {
                area_code: "150602".into(),
                month: String::new(),
                kind: ScoreboardKind::Streets as i32,
            })
            .await
            .expect("the street board")
            .into_inner()
            .rows
            .into_iter()
            .map(|row| row.code)
            .collect::<Vec<_>>()
    };
    let before = streets().await;
    assert!(before.iter().any(|code| code == "150602001"), "{before:?}");
    assert!(!before.iter().any(|code| code == street), "{before:?}");

    let mut dataset = whistle_store::org::load(stack.pool()).await.unwrap();
    dataset.units.push(whistle_domain::OrgUnit {
        code: street.parse().unwrap(),
        name: "新建街道".into(),
        classification: "建制街道".into(),
        lat: 39.82,
        lon: 109.96,
    });
    let [units, departments, people] = org_sheets::to_sheets(&dataset);
    let workbook = whistle_orgfile::xlsx(&[units, departments, people]).unwrap();
    let input = whistle_orgfile::read_named([("组织机构.xlsx", workbook.as_slice())]).unwrap();
    assert!(matches!(
        import(stack.pool(), &input, true).await,
        Imported::Applied { version: 1, .. }
    ));

    eventually("the imported street on the live board", WAIT, || async {
        streets().await.iter().any(|code| code == street)
    })
    .await
    .unwrap();
}

/// The query service's NATS auth callout grants from the org as imported, as soon as the import
/// commits: a district added with its department is followed by that district's operator without
/// a restart — here with the version poll a minute away, so only the `whistle_org` notification
/// can bring it in time.
#[tokio::test]
async fn the_auth_callout_grants_from_an_import_as_it_commits() {
    let stack = Stack::builder()
        .at(chrono::Utc::now())
        .with_query_options(|o| o.policy_poll_interval = std::time::Duration::from_secs(60))
        .start()
        .await;
    let district = "150699";
    let department = "150699-heating";
    let mut dataset = whistle_store::org::load(stack.pool()).await.unwrap();
    dataset.units.push(whistle_domain::OrgUnit {
        code: district.parse().unwrap(),
        name: "新区".into(),
        classification: String::new(),
        lat: 39.6,
        lon: 109.8,
    });
    dataset.departments.push(whistle_domain::Department {
        code: department.parse().unwrap(),
        name: "新区供热管理办公室".into(),
        kind: whistle_domain::DepartmentKind::Heating,
        area: district.parse().unwrap(),
    });
    dataset.people.push(whistle_domain::Person {
        id: "op-150699".parse().unwrap(),
        name: "新区指挥中心值班员".into(),
        phone: "13900150699".into(),
        role: whistle_domain::Role::Operator {
            area: district.parse().unwrap(),
        },
    });
    let [units, departments, people] = org_sheets::to_sheets(&dataset);
    let workbook = whistle_orgfile::xlsx(&[units, departments, people]).unwrap();
    let input = whistle_orgfile::read_named([("组织机构.xlsx", workbook.as_slice())]).unwrap();
    assert!(matches!(
        import(stack.pool(), &input, true).await,
        Imported::Applied { version: 1, .. }
    ));

    // The new district's operator subscribes to its department's tasks, on a new connection
    // each time (a connection's grant is made once, when it connects).
    let token = stack
        .token_for(whistle_store::tokens::Role::Operator, district)
        .await;
    let tasks = whistle_wire::subject::department_tasks(department);
    eventually(
        "the operator may follow the imported department",
        WAIT,
        || async {
            let mut operator = stack.connect_as(&token).await;
            let _subscription = operator.client.subscribe(tasks.clone()).await.unwrap();
            operator.client.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let mut refused = false;
            while let Ok(event) = operator.events.try_recv() {
                refused |= is_violation(&event, Some(&tasks));
            }
            !refused
        },
    )
    .await
    .unwrap();
}

/// The console's template downloads are the files `whistle org import` reads: the workbook reads
/// back with its sheets and no rows, the boundaries as an empty FeatureCollection; without a
/// token both are refused.
#[tokio::test]
async fn the_templates_download_with_a_token_and_read_back_as_empty_sheets() {
    let stack = Stack::command_center().await;
    let bearer = format!("authorization: Bearer {}\r\n", stack.token());
    let response = http_get_bytes(stack.query_addr(), "/templates/org.xlsx", &bearer).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head and a body");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-disposition: attachment; filename=\"whistle-org-template.xlsx\"; filename*=utf-8''%e7%bb%84%e7%bb%87%e6%9c%ba%e6%9e%84.xlsx"),
        "{head}"
    );
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&response[split + 4..])
    } else {
        response[split + 4..].to_vec()
    };
    let input = whistle_orgfile::read_named([("组织机构.xlsx", body.as_slice())])
        .expect("the template reads back");
    let [units, departments, people] = org_sheets::to_sheets(&Default::default());
    for (want, read) in [
        (units, input.org.units),
        (departments, input.org.departments),
        (people, input.org.people),
    ] {
        let read = read.unwrap_or_else(|| panic!("sheet {}", want.name));
        assert_eq!(read.headers, want.headers, "{}", want.name);
        assert!(read.rows.is_empty(), "{}", want.name);
    }

    let boundaries = http_get_with(stack.query_addr(), "/templates/grids.geojson", &bearer).await;
    assert!(boundaries.starts_with("HTTP/1.1 200"), "{boundaries}");
    assert!(
        boundaries.contains("{\"type\":\"FeatureCollection\",\"features\":[]}"),
        "{boundaries}"
    );
    for path in ["/templates/org.xlsx", "/templates/grids.geojson"] {
        let refused = http_get(stack.query_addr(), path).await;
        assert!(refused.starts_with("HTTP/1.1 401"), "{path}: {refused}");
    }
}
