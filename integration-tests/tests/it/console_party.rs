//! The Party-building pages of the console in a real headless Chromium (docs/party.md,
//! docs/leaders.md): the browser test `e2e/party.test.mjs` — two Party members of one community
//! on phone-sized pages, one claiming a small wish the city's operator offers, the other told it
//! is taken; the winner completes it with a note and a photo and sees the hours once the community
//! confirms; a paired leader reading the overdue incidents of its areas first and endorsing one
//! (领导督办); axe on both pages — then the server's state checked after. Needs Node.js and
//! Chromium, as `it::console` (deploy/local/test.sh installs both).

use chrono::{TimeDelta, Utc};
use whistle_domain::leaders;
use whistle_proto::v1;

use crate::harness::*;

const GRID: &str = "150602001001001";
const COMMUNITY: &str = "150602001001";
const DISTRICT: &str = "150602";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_claim_and_complete_and_a_leader_endorses_in_the_console() {
    let dir = crate::console::console_dir();
    let chromium = chromium();
    // Three hours back, then brought to the real time the browser shares: a collective petition
    // filed then has missed its 2-hour deadline (overdue in the leader's view), a street light
    // filed now has not.
    let started = Utc::now();
    let mut stack = Stack::builder()
        .with_query_options(move |options| options.console_dir = Some(dir))
        .at(started - TimeDelta::hours(3))
        .without_dispatch()
        .start()
        .await;
    // The leaders before dispatch starts, so its org holds them from the first command.
    let pairings = seed_leaders(stack.pool()).await;
    stack.start_dispatch().await;
    let grid = GRID.parse().unwrap();
    let leader = leaders::concerned(&pairings.pairings, &grid)
        .into_iter()
        .map(|p| p.to_string())
        .find(|p| p.starts_with(&format!("ld-{DISTRICT}-")))
        .expect("a district leader paired with the grid's community");
    let overdue = stack
        .file(&stack.filed(
            "party-late",
            GRID,
            "petition.collective",
            v1::Urgency::Emergency,
        ))
        .await;
    stack.advance(started - stack.now());
    stack.settle().await;
    let fresh = stack
        .file(&stack.filed(
            "party-fresh",
            GRID,
            "municipal.street_light",
            v1::Urgency::Normal,
        ))
        .await;
    stack.caught_up().await;

    let first = "pm-e2e-first";
    let second = "pm-e2e-second";
    let first_token = stack.member_token(first, COMMUNITY).await;
    let second_token = stack.member_token(second, COMMUNITY).await;
    let leader_token = leader_token(stack.pool(), &leader, DISTRICT).await;
    browser_tests(
        &chromium,
        &[
            ("WHISTLE_E2E_FILES", &"e2e/party.test.mjs"),
            ("WHISTLE_CONSOLE_URL", &stack.query_url()),
            ("WHISTLE_OPERATOR_TOKEN", &stack.token()),
            ("WHISTLE_MEMBER_TOKEN", &first_token),
            ("WHISTLE_MEMBER_ID", &first),
            ("WHISTLE_SECOND_MEMBER_TOKEN", &second_token),
            ("WHISTLE_MEMBER_COMMUNITY", &COMMUNITY),
            ("WHISTLE_LEADER_TOKEN", &leader_token),
            ("WHISTLE_LEADER_ID", &leader),
            ("WHISTLE_OVERDUE_INCIDENT_ID", &overdue.to_string()),
            ("WHISTLE_FRESH_INCIDENT_ID", &fresh.to_string()),
        ],
    )
    .await;

    // What the browsers did reached dispatch: the wish claimed by the first member only, done
    // and confirmed, one line of the service ledger; the light bulb claimed once (after the
    // network came back) and given back; the leader's endorsement on the timeline.
    let steps: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT o.state->>'title', t.kind, t.actor_id FROM volunteer_offer_timeline t
         JOIN volunteer_offers o ON o.id = t.offer_id
         WHERE o.community_code = $1 ORDER BY o.state->>'title', t.seq",
    )
    .bind(COMMUNITY)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    let of = |prefix: &str| -> Vec<(&str, &str)> {
        steps
            .iter()
            .filter(|(title, _, _)| title.starts_with(prefix))
            .map(|(_, kind, actor)| (kind.as_str(), actor.as_str()))
            .collect()
    };
    let operator = "op-150600";
    assert_eq!(
        of("帮独居老人代购药品"),
        [
            ("offer.created", operator),
            ("offer.claimed", first),
            ("offer.done", first),
            ("offer.confirmed", operator)
        ],
        "{steps:?}"
    );
    assert_eq!(
        of("帮忙换灯泡"),
        [
            ("offer.created", operator),
            ("offer.claimed", first),
            ("offer.released", first)
        ],
        "{steps:?}"
    );
    let ledger: Vec<(String, i32)> =
        sqlx::query_as("SELECT person_id, minutes FROM service_ledger WHERE community_code = $1")
            .bind(COMMUNITY)
            .fetch_all(stack.pool())
            .await
            .unwrap();
    assert_eq!(ledger, [(first.to_owned(), 90)]);
    let endorsed: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor_id, note FROM timeline WHERE incident_id = $1 AND kind = 'incident.endorsed'",
    )
    .bind(overdue)
    .fetch_all(stack.pool())
    .await
    .unwrap();
    assert_eq!(
        endorsed,
        [(leader.clone(), "请街道今日内处置，结果报我".to_owned())]
    );
}
