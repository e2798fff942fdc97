//! The web console in a real headless Chromium: this test starts a private stack (nats-server,
//! PostgreSQL database, dispatch and a query service serving the built console at `/`), files
//! reports across two districts and whistles one incident so a department has a task, then runs
//! the console's browser tests (`npm run e2e` in services/whistle-query/console, node:test with
//! playwright-core) against it. They check the screen's KPIs against GetOverview, a report from
//! the grid form reaching the ticker, a liaison's accept changing the screen, the drill-down, the
//! wall at three resolutions, the map, the served catalogue, the offline report form (a photo in its
//! queue), photos taken in the form and the workbench shown before/after, the rankings against
//! GetScoreboard, 主办/协办 and 挂账 from the workbench to the screen, 人员管理 (offboarding a liaison
//! who holds a task, with a successor), and that no page logs an error (the full list:
//! docs/console.md).
//!
//! `WHISTLE_E2E_FILES=e2e/people.test.mjs` runs only the browser tests named (npm's `e2e`).
//!
//! Needs Node.js and Chromium: `deploy/local/test.sh` installs both and builds the console
//! (WHISTLE_CONSOLE_DIR); without WHISTLE_CONSOLE_DIR this test builds it with console.sh.

use std::path::{Path, PathBuf};

use chrono::{TimeDelta, Utc};
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built console: WHISTLE_CONSOLE_DIR, or built now by deploy/local/console.sh.
pub(crate) fn console_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WHISTLE_CONSOLE_DIR") {
        return PathBuf::from(dir);
    }
    let out = std::process::Command::new("bash")
        .arg(repo().join("deploy/local/console.sh"))
        .output()
        .expect("running deploy/local/console.sh");
    assert!(
        out.status.success(),
        "building the console failed (deploy/local/console.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let dir = console_dir();
    let chromium = chromium();
    // The manual clock starts three hours back and is then brought to the real time, so the
    // browser's countdowns and the stack agree and something is late: a collective petition filed
    // then and whistled to the petitions office is past its 2-hour deadline (escalated to the
    // city), and the office missed its report-in — one incident that is both overdue and late
    // under a department (the screen must list it once).
    let started = Utc::now();
    let stack = Stack::builder()
        .with_query_options(move |options| options.console_dir = Some(dir))
        .at(started - TimeDelta::hours(3))
        .start()
        .await;
    let (district, [g1, g2, g3], _, far_grid) = places();
    let late = stack
        .file(&stack.filed(
            "e2e-late",
            &g3,
            "petition.collective",
            v1::Urgency::Emergency,
        ))
        .await;
    stack.whistle(&g3, late).await;
    stack.advance(started - stack.now());
    stack.settle().await;

    // Reports in three streets of one district and one in another district, so that the
    // drill-down has something to change at every level.
    let mut whistled = None;
    for (i, (grid, category)) in [
        (&g1, "petition.collective"),
        (&g1, "municipal.manhole"),
        (&g2, "heating.no_heat"),
        (&g3, "heating.no_heat"),
        (&far_grid, "heating.no_heat"),
    ]
    .into_iter()
    .enumerate()
    {
        let incident = stack
            .file(&stack.filed(&format!("e2e-{i}"), grid, category, v1::Urgency::Urgent))
            .await;
        whistled.get_or_insert(incident);
    }
    // The street whistles the petition: the petitions office gets a task to report in on.
    let whistled = whistled.unwrap();
    stack.whistle(&g1, whistled).await;
    stack.caught_up().await;

    let department = dept(&g1, "petitions");
    let liaison = stack.token_for(Role::Liaison, &department).await;
    // 主办/协办 and 挂账: a second department of the district assists the petitions office, and the
    // district's operator is the level that enters and reviews ledger cases (the policy's approver).
    let assisting = dept(&g1, "civil_affairs");
    let assist_liaison = stack.token_for(Role::Liaison, &assisting).await;
    let district_operator = stack.token_for(Role::Operator, &district).await;
    let grid_worker = stack.token_for(Role::GridWorker, &g2).await;
    // 人员管理: two new liaisons of a department of the district; the leaver reported in on a
    // task, so offboarding them needs a successor (the other one).
    let people_department = dept(&g1, "heating");
    let leaver = format!("li-{people_department}-e2e");
    let successor = format!("li-{people_department}-e2e-2");
    for (id, name) in [(&leaver, "离岗测试员"), (&successor, "接替测试员")] {
        let new = whistle_store::people::NewPerson {
            id: id.clone(),
            name: name.into(),
            phone: "13900001111".into(),
            role: whistle_store::people::parse_role("liaison", &people_department).unwrap(),
        };
        // At the stack's clock: dispatch offboards them at its own, never before they joined.
        whistle_store::people::onboard(stack.pool(), &new, stack.now(), &admin())
            .await
            .unwrap();
    }
    let held = stack.whistled("e2e-people", &g1).await;
    // Dispatch learns of the newcomers from the org follower: the report-in waits for that.
    eventually("the e2e leaver reported in", WAIT, || async {
        matches!(
            stack.command(&leaver, held, accept(1)).await.outcome,
            Some(v1::command_reply::Outcome::Ok(_))
        )
    })
    .await
    .unwrap();
    let viewer = stack.token_for(Role::Viewer, &district).await;
    let screenshots = std::env::var("WHISTLE_SCREENSHOT_DIR").unwrap_or_default();
    browser_tests(
        &chromium,
        &[
            ("WHISTLE_CONSOLE_URL", &stack.query_url()),
            ("WHISTLE_OPERATOR_TOKEN", &stack.token()),
            ("WHISTLE_VIEWER_TOKEN", &viewer),
            ("WHISTLE_LIAISON_TOKEN", &liaison),
            ("WHISTLE_DEPARTMENT_CODE", &department),
            ("WHISTLE_TASK_INCIDENT_ID", &whistled.to_string()),
            ("WHISTLE_ASSIST_LIAISON_TOKEN", &assist_liaison),
            ("WHISTLE_ASSIST_DEPARTMENT_CODE", &assisting),
            ("WHISTLE_DISTRICT_OPERATOR_TOKEN", &district_operator),
            ("WHISTLE_GRID_TOKEN", &grid_worker),
            ("WHISTLE_GRID_CODE", &g2),
            ("WHISTLE_DRILL_DISTRICT", &district),
            ("WHISTLE_DRILL_STREET", &unit(&g1, Level::Street)),
            ("WHISTLE_PEOPLE_LEAVER", &leaver),
            ("WHISTLE_PEOPLE_SUCCESSOR", &successor),
            ("WHISTLE_PEOPLE_DEPARTMENT", &people_department),
            ("WHISTLE_PEOPLE_INCIDENT_ID", &held.to_string()),
            ("WHISTLE_SCREENSHOT_DIR", &screenshots),
        ],
    )
    .await;
}
