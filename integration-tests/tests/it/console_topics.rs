//! 每月一题 / 主动治理 in the console, in a real headless Chromium: a compound's history made
//! through intake over the months before this one, then the browser test `e2e/topics.test.mjs`
//! — only operators see the view; the district's operator adopts the topic in its dialog, sees the
//! case with its 主动治理 badge, marks its milestone done — and the server's state checked after.
//! Needs Node.js and Chromium, as `it::console` (deploy/local/test.sh installs both).

use chrono::{Datelike, TimeDelta, TimeZone, Utc};
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adopts_a_topic_in_the_console() {
    let dir = crate::console::console_dir();
    let chromium = chromium();
    // Five monthly pairs of complaints ending before this month began (Ordos time), so the
    // month's proposal, read at the real now the browser shares, holds the compound's topic.
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = Utc::now().with_timezone(&ordos);
    let month_start = ordos
        .with_ymd_and_hms(today.year(), today.month(), 1, 0, 0, 0)
        .unwrap()
        .to_utc();
    let last = month_start - TimeDelta::days(2);
    let stack = Stack::builder()
        .with_query_options(move |options| options.console_dir = Some(dir))
        .at(last - TimeDelta::days(120))
        .start()
        .await;
    let (grid, (lat, lon)) = whistle_domain::ordos::dataset()
        .units
        .into_iter()
        .find(|u| u.level() == Level::Grid && u.code.as_str().starts_with("150602"))
        .map(|u| (u.code.to_string(), (u.lat, u.lon)))
        .unwrap();
    for month in 0..5 {
        if month > 0 {
            stack.advance(TimeDelta::days(30));
            stack.settle().await;
        }
        for n in 0..2 {
            let mut report = stack.filed(
                &format!("ct-{month}-{n}"),
                &grid,
                "property.service",
                v1::Urgency::Normal,
            );
            report.location = Some(v1::Location {
                lat: lat + f64::from(n) * 0.0002,
                lon,
                address: "3号楼".into(),
            });
            stack.file(&report).await;
        }
    }
    stack.advance(Utc::now() - stack.now());
    stack.settle().await;

    let district_operator = stack.token_for(Role::Operator, "150602").await;
    let listed = command_center_on(stack.channel(), &district_operator)
        .list_hotspots(v1::ListHotspotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let [topic] = listed.hotspots.as_slice() else {
        panic!("the compound's topic: {listed:#?}");
    };
    let (lead, assist) = (
        dept(&grid, "urban_management"),
        dept(&grid, "housing_construction"),
    );
    let liaison = stack.token_for(Role::Liaison, &lead).await;
    browser_tests(
        &chromium,
        &[
            ("WHISTLE_E2E_FILES", &"e2e/topics.test.mjs"),
            ("WHISTLE_CONSOLE_URL", &stack.query_url()),
            ("WHISTLE_DISTRICT_OPERATOR_TOKEN", &district_operator),
            ("WHISTLE_LIAISON_TOKEN", &liaison),
            ("WHISTLE_TOPIC_KEY", &topic.key),
            ("WHISTLE_TOPIC_LEAD", &lead),
            ("WHISTLE_TOPIC_ASSIST", &assist),
        ],
    )
    .await;

    // What the browser did reached dispatch: one proactive case, its tasks, its milestone done.
    let cases: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, topic_key FROM incidents WHERE origin = 'proactive'")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    let [(incident, key)] = cases.as_slice() else {
        panic!("one proactive case: {cases:?}");
    };
    assert_eq!(key, &topic.key);
    let tasks: Vec<String> = stack
        .tasks(*incident)
        .await
        .into_iter()
        .map(|(_, department, _)| department)
        .collect();
    assert_eq!(tasks, [lead, assist]);
    let timeline = stack.timeline(*incident).await;
    assert_eq!(timeline[0], "incident.adopted");
    assert!(timeline.iter().any(|k| k == "incident.milestone_done"));
}
