//! 党建引领 on the command screen, in a real headless Chromium: the Ordos registry and the paired
//! leaders seeded, small wishes offered, claimed and served, an overdue incident endorsed by its
//! paired leader; then the browser test `e2e/party-panel.test.mjs` — the panel's figures are these, a
//! member's claim moves them live, the endorsed incident is marked on the overdue list and the map,
//! and axe-core passes on the screen — and the browser's claim checked on the server after.
//! Needs Node.js and Chromium, as `it::console` (deploy/local/test.sh installs both).

use chrono::{TimeDelta, Utc};
use whistle_domain::{
    policy::builtin,
    volunteer::{self, NewOffer, OfferKind},
    PersonId,
};
use whistle_proto::v1;
use whistle_store::{
    tokens::Role,
    volunteers::{self, Act},
};

use crate::harness::*;

const COMMUNITY: &str = "150602001001";
const GRID: &str = "150602001001001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_party_panel_shows_the_registry_and_moves_on_a_claim_in_the_browser() {
    let dir = crate::console::console_dir();
    let chromium = chromium();
    // Three hours back, so that a collective petition filed then is past its deadline now.
    let started = Utc::now();
    let mut stack = Stack::builder()
        .with_query_options(move |options| options.console_dir = Some(dir))
        .at(started - TimeDelta::hours(3))
        .without_dispatch()
        .start()
        .await;
    seed_leaders(stack.pool()).await;
    let registry = volunteer::ordos::registry(&whistle_domain::ordos::dataset());
    volunteers::seed_registry(stack.pool(), &registry, &admin(), Utc::now())
        .await
        .unwrap();
    stack.start_dispatch().await;
    let endorsed = stack
        .file(&stack.filed(
            "party-e2e",
            GRID,
            "petition.collective",
            v1::Urgency::Emergency,
        ))
        .await;
    stack.advance(started - stack.now());
    stack.settle().await;
    stack
        .ok(
            "ld-150602-01",
            endorsed,
            v1::command::Body::Endorse(v1::Endorse {
                note: "请社区组织党员志愿者协助，本周内办结".into(),
            }),
        )
        .await;

    // Wishes of the community: one claimed, one served for 90 minutes and confirmed, and the
    // newest left open for the browser's member to claim.
    let pool = stack.pool().clone();
    let rules = builtin("ordos").unwrap().volunteers().clone();
    let handler: PersonId = format!("hd-{COMMUNITY}").parse().unwrap();
    let wish = |title: &str| NewOffer {
        community: COMMUNITY.parse().unwrap(),
        kind: OfferKind::Wish,
        title: title.into(),
        detail: String::new(),
        team: None,
        offered_by: handler.clone(),
    };
    let offer = |title: &'static str| {
        let (pool, rules, new) = (pool.clone(), rules.clone(), wish(title));
        async move {
            volunteers::offer(&pool, new, &rules, Utc::now())
                .await
                .unwrap()
                .unwrap()
                .id
        }
    };
    let act = |id, what| {
        let (pool, rules) = (pool.clone(), rules.clone());
        async move {
            volunteers::act(&pool, id, what, &rules, Utc::now())
                .await
                .unwrap()
                .unwrap_or_else(|refused| panic!("{refused}"));
        }
    };
    let members: Vec<PersonId> = registry
        .members
        .iter()
        .filter(|m| m.community.as_str() == COMMUNITY)
        .map(|m| m.id.clone())
        .collect();
    let claimed = offer("e2e 帮独居老人买药").await;
    act(
        claimed,
        Act::Claim {
            member: members[0].clone(),
        },
    )
    .await;
    let served = offer("e2e 更换楼道灯泡").await;
    act(
        served,
        Act::Claim {
            member: members[1].clone(),
        },
    )
    .await;
    let done = Act::Complete {
        member: members[1].clone(),
        note: "已更换".into(),
        photos: Vec::new(),
        minutes: 90,
    };
    act(served, done).await;
    let confirm = Act::Confirm {
        by: handler.clone(),
        minutes: None,
        rating: Some(whistle_domain::incident::Satisfaction::Satisfied),
        note: String::new(),
    };
    act(served, confirm).await;
    let open = offer("e2e 帮独居老人扫雪").await;
    // The browser's member: registered with the community by the harness (one more member).
    let member_token = stack.member_token("pm-150602001001-9301", COMMUNITY).await;
    stack.caught_up().await;

    let in_district = |c: &str| c.starts_with("150602");
    let expect = serde_json::json!({
        "members": registry.members.iter().filter(|m| in_district(m.community.as_str())).count() + 1,
        "teams": registry.teams.iter().filter(|t| in_district(t.community.as_str())).count(),
        "claims": 2,
        "minutes": 90,
        "wishes": 2,
        "newestWish": "e2e 帮独居老人扫雪",
    });
    let district_operator = stack.token_for(Role::Operator, "150602").await;
    browser_tests(
        &chromium,
        &[
            ("WHISTLE_E2E_FILES", &"e2e/party-panel.test.mjs"),
            ("WHISTLE_CONSOLE_URL", &stack.query_url()),
            ("WHISTLE_DISTRICT_OPERATOR_TOKEN", &district_operator),
            ("WHISTLE_PARTY_EXPECT", &expect.to_string()),
            ("WHISTLE_PARTY_MEMBER_TOKEN", &member_token),
            ("WHISTLE_PARTY_OFFER", &open.to_string()),
            ("WHISTLE_PARTY_ENDORSED", &endorsed.to_string()),
            ("WHISTLE_PARTY_ENDORSED_GRID", &GRID),
        ],
    )
    .await;

    // The browser's claim reached dispatch: the wish is the member's.
    let stored = volunteers::get(&pool, open).await.unwrap().unwrap();
    assert_eq!(
        stored.offer.status.member().map(|m| m.as_str()),
        Some("pm-150602001001-9301")
    );
}
