//! The Party-building layer's volunteers on real PostgreSQL (and dispatch, for the claim
//! deadline's timer): the 双报到 registry at the source's scale, offers claimed by exactly one of
//! several members at once, claims returned at their deadline once, the service ledger fed only
//! by confirmed work, its leaderboards and the units' evaluation, the policy's reserved
//! categories, and members' deregistration and anonymisation (docs/party.md).

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;
use whistle_domain::{
    incident::Satisfaction,
    policy::{builtin, EvaluationRules, VolunteerRules},
    volunteer::{self, NewOffer, OfferKind, OfferStatus, Refusal},
    AreaCode, PersonId,
};
use whistle_store::volunteers::{self, Act, Board, Refused, Stored};

use crate::harness::*;

const COMMUNITY: &str = "150602001001";

fn rules() -> VolunteerRules {
    builtin("ordos").unwrap().volunteers().clone()
}

fn person(id: &str) -> PersonId {
    id.parse().unwrap()
}

fn handler() -> PersonId {
    person(&format!("hd-{COMMUNITY}"))
}

/// Seeds the Ordos registry into the stack's database; returns the registry.
async fn seed(pool: &sqlx::PgPool) -> volunteer::Registry {
    let registry = volunteer::ordos::registry(&whistle_domain::ordos::dataset());
    volunteers::seed_registry(pool, &registry, &admin(), Utc::now())
        .await
        .unwrap();
    registry
}

/// The registered members of `community`, in id order.
fn members_of(registry: &volunteer::Registry, community: &str) -> Vec<PersonId> {
    registry
        .members
        .iter()
        .filter(|m| m.community.as_str() == community)
        .map(|m| m.id.clone())
        .collect()
}

async fn wish(pool: &sqlx::PgPool, team: Option<&str>) -> Stored {
    volunteers::offer(
        pool,
        NewOffer {
            community: COMMUNITY.parse().unwrap(),
            kind: OfferKind::Wish,
            title: "帮独居老人买药".into(),
            detail: "王奶奶腿脚不便，需要每周代购降压药".into(),
            team: team.map(str::to_owned),
            offered_by: handler(),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .expect("the community's handler offers a wish")
}

#[tokio::test]
async fn the_registry_seeds_at_the_source_scale_once_and_stays_out_of_the_org_index() {
    let stack = Stack::builder().database_only().start().await;
    let db = stack.db();
    let staff = whistle_store::org::load(&db.pool)
        .await
        .unwrap()
        .people
        .len();
    let dataset = whistle_domain::ordos::dataset();
    let started = Instant::now();
    let registry = volunteer::ordos::registry(&dataset);
    let generated = started.elapsed();
    let started = Instant::now();
    let counts = volunteers::seed_registry(&db.pool, &registry, &admin(), Utc::now())
        .await
        .unwrap();
    // The cost docs/party.md reports (printed with --nocapture).
    eprintln!(
        "registry of {} units generated in {generated:?}, seeded in {:?}",
        registry.units.len(),
        started.elapsed()
    );
    assert_eq!(counts.members, 21_790);
    assert_eq!(counts.teams, 1_727);
    assert_eq!(counts.units as usize, registry.units.len());
    assert_eq!(
        db.count("SELECT count(*) FROM people WHERE role = 'member'")
            .await,
        21_790
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT community_code) FROM volunteer_teams")
            .await,
        236
    );
    let started = Instant::now();
    let again = volunteers::seed_registry(&db.pool, &registry, &admin(), Utc::now())
        .await
        .unwrap();
    eprintln!("registry seeded again in {:?}", started.elapsed());
    assert_eq!(
        again,
        volunteers::RegistryCounts::default(),
        "seeding again adds nothing"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'volunteers.seed'")
            .await,
        1,
        "one audit entry for the seed that changed something, none for the no-op"
    );
    // Dispatch's org index and the staff lists hold no member.
    let loaded = whistle_store::org::load(&db.pool).await.unwrap();
    assert_eq!(loaded.people.len(), staff);
    let listed = whistle_store::people::list(&db.pool, &Default::default())
        .await
        .unwrap();
    assert!(listed.iter().all(|p| !p.id.starts_with("pm-")));
}

#[tokio::test]
async fn of_members_claiming_one_offer_at_once_exactly_one_wins() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let members = members_of(&registry, COMMUNITY);
    assert!(members.len() >= 8);
    for round in 0..5 {
        let offer = wish(&pool, None).await;
        let claims = members.iter().take(8).map(|member| {
            let (pool, member) = (pool.clone(), member.clone());
            tokio::spawn(async move {
                let outcome = volunteers::act(
                    &pool,
                    offer.id,
                    Act::Claim {
                        member: member.clone(),
                    },
                    &rules(),
                    Utc::now(),
                )
                .await
                .unwrap();
                (member, outcome)
            })
        });
        let outcomes = futures::future::join_all(claims).await;
        let mut winners = Vec::new();
        for joined in outcomes {
            let (member, outcome) = joined.unwrap();
            match outcome {
                Ok(_) => winners.push(member),
                Err(Refused::Rule(Refusal::AlreadyClaimed)) => {}
                Err(other) => panic!("round {round}: {member} refused with {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one claim wins");
        let stored = volunteers::get(&pool, offer.id).await.unwrap().unwrap();
        assert_eq!(stored.offer.status.member(), Some(&winners[0]));
        let claimed_by: String =
            sqlx::query_scalar("SELECT claimed_by FROM volunteer_offers WHERE id = $1")
                .bind(offer.id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(claimed_by, winners[0].as_str());
        let steps = volunteers::timeline(&pool, offer.id).await.unwrap();
        assert_eq!(
            steps.iter().filter(|s| s.1 == "offer.claimed").count(),
            1,
            "one claim on the timeline"
        );
    }
}

#[tokio::test]
async fn claimants_must_be_registered_with_the_community_and_its_team() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let elsewhere = members_of(&registry, "150602001002")[0].clone();
    let offer = wish(&pool, None).await;
    let refused = volunteers::act(
        &pool,
        offer.id,
        Act::Claim { member: elsewhere },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(refused.code(), "forbidden", "{refused}");
    // A grid worker is no member.
    let refused = volunteers::act(
        &pool,
        offer.id,
        Act::Claim {
            member: person("gw-150602001001001"),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(refused, Refused::Rule(Refusal::NotRegistered(_))),
        "{refused}"
    );

    // Offered to one team: only its members.
    let team = registry
        .teams
        .iter()
        .find(|t| t.community.as_str() == COMMUNITY)
        .unwrap();
    let outsider = members_of(&registry, COMMUNITY)
        .into_iter()
        .find(|m| !team.members.contains(m))
        .unwrap();
    let offer = wish(&pool, Some(&team.id)).await;
    let refused = volunteers::act(
        &pool,
        offer.id,
        Act::Claim {
            member: outsider.clone(),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(refused, Refused::Rule(Refusal::NotInTeam(_))),
        "{refused}"
    );
    let listed = volunteers::offers_for_member(&pool, &outsider, 50)
        .await
        .unwrap();
    assert!(
        listed.iter().all(|o| o.id != offer.id),
        "a team's offer is not on an outsider's list"
    );
    let insider = team.members[0].clone();
    let listed = volunteers::offers_for_member(&pool, &insider, 50)
        .await
        .unwrap();
    assert!(listed.iter().any(|o| o.id == offer.id));
    volunteers::act(
        &pool,
        offer.id,
        Act::Claim { member: insider },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .expect("a team member claims");

    // Members never act for the community.
    let refused = volunteers::act(
        &pool,
        offer.id,
        Act::Withdraw {
            by: outsider,
            reason: "不要了".into(),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(refused.code(), "forbidden");
}

#[tokio::test]
async fn a_claim_not_done_returns_the_offer_at_its_deadline_once() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let members = members_of(&registry, COMMUNITY);
    let offer = wish(&pool, None).await;
    let claimed_at = Utc::now();
    let claimed = volunteers::act(
        &pool,
        offer.id,
        Act::Claim {
            member: members[0].clone(),
        },
        &rules(),
        claimed_at,
    )
    .await
    .unwrap()
    .unwrap();
    let deadline = claimed.offer.status.deadline().unwrap();
    assert_eq!(deadline, claimed_at + rules().claim_window);
    assert_eq!(
        volunteers::next_deadline(&pool)
            .await
            .unwrap()
            .map(|d| d.timestamp_micros()),
        Some(deadline.timestamp_micros())
    );
    let before = volunteers::fire_due(&pool, &rules(), deadline - TimeDelta::seconds(1), 100)
        .await
        .unwrap();
    assert!(before.is_empty(), "nothing returns before the deadline");
    // Two replicas' timer loops at once: the offer returns once.
    let both = rules();
    let (a, b) = tokio::join!(
        volunteers::fire_due(&pool, &both, deadline, 100),
        volunteers::fire_due(&pool, &both, deadline, 100)
    );
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    assert!(
        volunteers::fire_due(&pool, &rules(), deadline + TimeDelta::days(1), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = volunteers::get(&pool, offer.id).await.unwrap().unwrap();
    assert_eq!(stored.offer.status, OfferStatus::Open);
    assert_eq!(stored.offer.returns, 1);
    let steps = volunteers::timeline(&pool, offer.id).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        ["offer.created", "offer.claimed", "offer.returned"]
    );
    // Back on the list, another member takes it.
    volunteers::act(
        &pool,
        offer.id,
        Act::Claim {
            member: members[1].clone(),
        },
        &rules(),
        deadline,
    )
    .await
    .unwrap()
    .expect("a returned offer is claimed again");
}

#[tokio::test]
async fn dispatch_returns_a_lapsed_claim_on_its_clock() {
    let stack = Stack::builder().at(Utc::now()).start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let member = members_of(&registry, COMMUNITY)[0].clone();
    let offer = wish(&pool, None).await;
    volunteers::act(
        &pool,
        offer.id,
        Act::Claim { member },
        &rules(),
        stack.now(),
    )
    .await
    .unwrap()
    .unwrap();
    stack.advance(rules().claim_window + TimeDelta::seconds(1));
    eventually("dispatch to return the lapsed claim", WAIT, || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM volunteer_offers WHERE id = $1")
                .bind(offer.id)
                .fetch_one(&pool)
                .await
                .unwrap();
        status == "open"
    })
    .await
    .unwrap();
}

/// Claims, completes and confirms a wish by `member`; returns the offer id.
async fn serve(pool: &sqlx::PgPool, member: &PersonId, minutes: u32, confirm: bool) -> Uuid {
    let offer = wish(pool, None).await;
    let now = Utc::now();
    volunteers::act(
        pool,
        offer.id,
        Act::Claim {
            member: member.clone(),
        },
        &rules(),
        now,
    )
    .await
    .unwrap()
    .unwrap();
    volunteers::act(
        pool,
        offer.id,
        Act::Complete {
            member: member.clone(),
            note: "药已送到".into(),
            photos: vec!["b".repeat(64)],
            minutes,
        },
        &rules(),
        now,
    )
    .await
    .unwrap()
    .unwrap();
    if confirm {
        volunteers::act(
            pool,
            offer.id,
            Act::Confirm {
                by: handler(),
                minutes: None,
                rating: Some(Satisfaction::Satisfied),
                note: String::new(),
            },
            &rules(),
            now,
        )
        .await
        .unwrap()
        .unwrap();
    }
    offer.id
}

#[tokio::test]
async fn hours_and_points_accrue_only_on_confirmed_work_and_feed_boards_and_the_evaluation() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let members = members_of(&registry, COMMUNITY);
    let (first, second) = (&members[0], &members[1]);
    let unconfirmed = serve(&pool, first, 240, false).await;
    assert_eq!(
        stack
            .db()
            .count("SELECT count(*) FROM service_ledger")
            .await,
        0,
        "done is not confirmed"
    );
    serve(&pool, first, 90, true).await;
    serve(&pool, second, 60, true).await;
    serve(&pool, second, 60, true).await;
    assert_eq!(
        stack
            .db()
            .count("SELECT count(*) FROM service_ledger")
            .await,
        3
    );

    let area: AreaCode = "150602".parse().unwrap();
    let (from, to) = (
        Utc::now() - TimeDelta::days(1),
        Utc::now() + TimeDelta::days(1),
    );
    let board = volunteers::leaderboard(&pool, Board::Members, &area, from, to, 10)
        .await
        .unwrap();
    assert_eq!(board.len(), 2);
    assert_eq!(
        (board[0].key.as_str(), board[0].points, board[0].minutes),
        (second.as_str(), 20, 120)
    );
    assert_eq!(
        (board[1].key.as_str(), board[1].points, board[1].minutes),
        (first.as_str(), 15, 90)
    );
    let units = volunteers::leaderboard(&pool, Board::Units, &area, from, to, 10)
        .await
        .unwrap();
    assert_eq!(units.iter().map(|u| u.points).sum::<i64>(), 35);
    assert!(units.iter().all(|u| u.name.ends_with("党支部")));
    // Another district's board holds none of it.
    let other: AreaCode = "150603".parse().unwrap();
    assert!(
        volunteers::leaderboard(&pool, Board::Members, &other, from, to, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The unit of the first member: its year counts the confirmed work only.
    let unit = &registry
        .members
        .iter()
        .find(|m| m.id == *first)
        .unwrap()
        .unit;
    let district: AreaCode = "150602".parse().unwrap();
    let years = volunteers::unit_years(&pool, &district, volunteers::ordos_year(Utc::now()))
        .await
        .unwrap();
    let year = years.iter().find(|y| y.unit_id == *unit).unwrap();
    let registered = registry.members.iter().filter(|m| m.unit == *unit).count() as u32;
    assert_eq!(year.service.registered, registered);
    assert!(year.service.served >= 1);
    assert!(year.service.minutes >= 90);
    let still_done = volunteers::get(&pool, unconfirmed).await.unwrap().unwrap();
    assert_eq!(still_done.offer.status.as_str(), "done");

    // `whistle volunteers evaluate`: the district's workbook and one notice per unit.
    let work = TempDir::new("evaluation").unwrap();
    let out = work.path().join("2026");
    let year = volunteers::ordos_year(Utc::now());
    let written =
        whistle_cli::evaluation::write(&pool, &district, year, &EvaluationRules::DEFAULT, &out)
            .await
            .unwrap();
    assert_eq!(written.units, years.len());
    assert!(
        whistle_cli::evaluation::write(&pool, &district, year, &EvaluationRules::DEFAULT, &out)
            .await
            .is_err(),
        "an evaluation never overwrites another"
    );
    let notice = std::fs::read_to_string(out.join(format!("{unit}.md"))).unwrap();
    assert!(
        notice.contains(&format!("| 报到党员 | {registered} 人 |")),
        "{notice}"
    );
    use calamine::Reader as _;
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(&written.workbook).unwrap();
    let sheet = book.worksheet_range("单位考评").unwrap();
    let row = sheet
        .rows()
        .find(|r| r[0].to_string() == *unit)
        .expect("the unit's row");
    assert_eq!(row[3].to_string(), registered.to_string());
    assert_eq!(
        row[4].to_string(),
        year_row_served(&years, unit).to_string()
    );
}

fn year_row_served(years: &[volunteers::UnitYear], unit: &str) -> u32 {
    years
        .iter()
        .find(|y| y.unit_id == unit)
        .unwrap()
        .service
        .served
}

#[tokio::test]
async fn volunteers_are_offered_only_the_categories_the_policy_lets_them_take() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    seed(&pool).await;
    let incident = |category: &'static str, level: &'static str| {
        let pool = pool.clone();
        async move {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO incidents (id, status, level, category, urgency, title, description, district_code, street_code,
                     community_code, grid_code, reporter_id, policy_version, reported_at, created_at, updated_at)
                 VALUES ($1, 'handling', $3, $2, 'normal', 't', '', '150602', '150602001',
                     '150602001001', '150602001001001', 'gw-150602001001001', 'test', now(), now(), now())",
            )
            .bind(id)
            .bind(category)
            .bind(level)
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    let policy_rules = rules();
    let offer_incident = |id: Uuid| {
        volunteers::offer(
            &pool,
            NewOffer {
                community: COMMUNITY.parse().unwrap(),
                kind: OfferKind::Incident {
                    incident_id: id.to_string(),
                    // The incident's own category counts, whatever the caller says.
                    category: "sanitation.garbage".parse().unwrap(),
                },
                title: "志愿者协助".into(),
                detail: String::new(),
                team: None,
                offered_by: handler(),
            },
            &policy_rules,
            Utc::now(),
        )
    };
    let gas = incident("gas.leak", "community").await;
    let refused = offer_incident(gas).await.unwrap().unwrap_err();
    assert!(
        matches!(&refused, Refused::Rule(Refusal::Reserved(c)) if c.as_str() == "gas.leak"),
        "{refused}"
    );
    let heating = incident("heating.no_heat", "community").await;
    assert!(matches!(
        offer_incident(heating).await.unwrap(),
        Err(Refused::Rule(Refusal::Reserved(_)))
    ));
    let at_street = incident("sanitation.garbage", "street").await;
    assert_eq!(
        offer_incident(at_street).await.unwrap().unwrap_err().code(),
        "invalid_argument"
    );
    let garbage = incident("sanitation.garbage", "community").await;
    let offered = offer_incident(garbage)
        .await
        .unwrap()
        .expect("garbage is volunteers' work");
    assert!(
        matches!(&offered.offer.kind, OfferKind::Incident { category, .. } if category.as_str() == "sanitation.garbage")
    );
    assert!(
        offer_incident(garbage).await.unwrap().is_err(),
        "an incident is on offer once at a time"
    );
    assert_eq!(
        stack
            .db()
            .count("SELECT count(*) FROM volunteer_offers WHERE kind = 'incident'")
            .await,
        1,
        "refusals wrote nothing"
    );
}

#[tokio::test]
async fn a_deregistered_member_gives_back_what_they_hold_and_is_anonymised_by_retention() {
    let stack = Stack::builder().database_only().start().await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    let member = members_of(&registry, COMMUNITY)[0].clone();
    serve(&pool, &member, 120, true).await;
    let held = wish(&pool, None).await;
    volunteers::act(
        &pool,
        held.id,
        Act::Claim {
            member: member.clone(),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();

    assert!(
        volunteers::deregister(&pool, &member, &rules(), Utc::now(), &admin())
            .await
            .unwrap()
    );
    assert!(
        !volunteers::deregister(&pool, &member, &rules(), Utc::now(), &admin())
            .await
            .unwrap(),
        "once"
    );
    let returned = volunteers::get(&pool, held.id).await.unwrap().unwrap();
    assert_eq!(
        returned.offer.status,
        OfferStatus::Open,
        "what they held goes back"
    );
    let refused = volunteers::act(
        &pool,
        held.id,
        Act::Claim {
            member: member.clone(),
        },
        &rules(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(refused, Refused::Rule(Refusal::NotRegistered(_))));

    let erased = volunteers::anonymise_deregistered(&pool, Utc::now(), &admin(), 100)
        .await
        .unwrap();
    assert_eq!(erased, 1);
    let (name, phone): (String, String) =
        sqlx::query_as("SELECT name, phone FROM people WHERE id = $1")
            .bind(member.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), phone.as_str()),
        (volunteers::ANONYMISED_NAME, "")
    );
    assert_eq!(
        volunteers::anonymise_deregistered(&pool, Utc::now(), &admin(), 100)
            .await
            .unwrap(),
        0
    );
    // The service stays on the ledger under the pseudonymous id.
    let area: AreaCode = COMMUNITY.parse().unwrap();
    let board = volunteers::leaderboard(
        &pool,
        Board::Members,
        &area,
        Utc::now() - TimeDelta::days(1),
        Utc::now() + TimeDelta::days(1),
        10,
    )
    .await
    .unwrap();
    assert_eq!(board[0].key, member.as_str());
    assert_eq!(board[0].name, volunteers::ANONYMISED_NAME);
    let entries = stack
        .db()
        .count("SELECT count(*) FROM audit_log WHERE action IN ('volunteers.deregister', 'volunteers.anonymise')")
        .await;
    assert_eq!(entries, 2);
}

/// A volunteer command for the `Dispatch` door or NATS: a fresh id, no incident.
fn volunteer_command(
    actor: &str,
    body: whistle_proto::v1::command::Body,
) -> whistle_proto::v1::Command {
    whistle_proto::v1::Command {
        command_id: Uuid::now_v7().to_string(),
        actor_id: actor.into(),
        incident_id: String::new(),
        expected_version: 0,
        body: Some(body),
    }
}

fn claim(actor: &str, offer: &str) -> whistle_proto::v1::Command {
    volunteer_command(
        actor,
        whistle_proto::v1::command::Body::ClaimOffer(whistle_proto::v1::ClaimOffer {
            offer_id: offer.into(),
        }),
    )
}

#[tokio::test]
async fn members_claim_over_nats_as_themselves_only_and_read_only_their_community() {
    use tonic::Code;
    use whistle_proto::v1::{self, command::Body, command_reply::Outcome, CommandErrorCode};
    use whistle_store::tokens::Role;
    use whistle_wire::{subject, CommandClient, Verb};

    let stack = Stack::command_center().await;
    let (me, rival, far) = (
        "pm-150602001001-9001",
        "pm-150602001001-9002",
        "pm-150602001002-9003",
    );
    let me_token = stack.member_token(me, COMMUNITY).await;
    let rival_token = stack.member_token(rival, COMMUNITY).await;
    let far_token = stack.member_token(far, "150602001002").await;
    let operator = stack.token_for(Role::Operator, "150602").await;

    // The community offers a small wish through the gRPC door, as the district's operator.
    let offered = dispatch(&stack, &operator)
        .await
        .offer_to_volunteers(volunteer_command(
            "",
            Body::OfferToVolunteers(v1::OfferToVolunteers {
                community_code: COMMUNITY.into(),
                title: "帮独居老人扫雪".into(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(offered.status, "open");
    let offer_id = offered.offer_id.clone();

    // Both members claim at once over NATS: exactly one wins.
    let mut mine = stack.connect_as(&me_token).await;
    let mut theirs = stack.connect_as(&rival_token).await;
    let (mine_client, their_client) = (
        CommandClient::new(mine.client.clone()),
        CommandClient::new(theirs.client.clone()),
    );
    let (my_claim, their_claim) = (claim(me, &offer_id), claim(rival, &offer_id));
    let (a, b) = tokio::join!(mine_client.send(&my_claim), their_client.send(&their_claim));
    let outcomes = [(me, a.unwrap()), (rival, b.unwrap())];
    let winners: Vec<&str> = outcomes
        .iter()
        .filter(|(_, reply)| matches!(reply.outcome, Some(Outcome::Ok(_))))
        .map(|(who, _)| *who)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0];
    for (who, reply) in &outcomes {
        if *who != winner {
            assert!(
                matches!(&reply.outcome, Some(Outcome::Error(e)) if e.code == CommandErrorCode::InvalidTransition as i32),
                "{reply:?}"
            );
        }
    }
    let (winner_person, loser) = if winner == me {
        (&mut mine, &mut theirs)
    } else {
        (&mut theirs, &mut mine)
    };
    let loser_id = if winner == me { rival } else { me };

    // The loser, with its own token, cannot act as the winner, nor confirm anything.
    let forged_complete = volunteer_command(
        winner,
        Body::CompleteOffer(v1::CompleteOffer {
            offer_id: offer_id.clone(),
            note: "不是我做的".into(),
            photo_ids: Vec::new(),
            minutes: 60,
        }),
    );
    let sent = CommandClient::new(loser.client.clone())
        .with_timeout(std::time::Duration::from_millis(500))
        .send(&forged_complete)
        .await;
    assert!(sent.is_err());
    loser
        .expect_violation(&subject::command(Verb::CompleteOffer, winner))
        .await;
    let confirm = volunteer_command(
        loser_id,
        Body::ConfirmOffer(v1::ConfirmOffer {
            offer_id: offer_id.clone(),
            ..Default::default()
        }),
    );
    assert!(CommandClient::new(loser.client.clone())
        .with_timeout(std::time::Duration::from_millis(500))
        .send(&confirm)
        .await
        .is_err());
    loser
        .expect_violation(&subject::command(Verb::ConfirmOffer, loser_id))
        .await;
    // On its own subject naming the winner as actor: dispatch refuses the forged actor.
    let request =
        async_nats::Request::new().payload(prost::Message::encode_to_vec(&forged_complete).into());
    let reply = loser
        .client
        .send_request(subject::command(Verb::CompleteOffer, loser_id), request)
        .await
        .unwrap();
    let reply: v1::CommandReply = prost::Message::decode(reply.payload).unwrap();
    assert!(
        matches!(&reply.outcome, Some(Outcome::Error(e)) if e.code == CommandErrorCode::Forbidden as i32),
        "{reply:?}"
    );

    // The winner completes over NATS; the community confirms through the door.
    let done = CommandClient::new(winner_person.client.clone())
        .send(&volunteer_command(
            winner,
            Body::CompleteOffer(v1::CompleteOffer {
                offer_id: offer_id.clone(),
                note: "门前雪已扫净".into(),
                photo_ids: Vec::new(),
                minutes: 90,
            }),
        ))
        .await
        .unwrap();
    assert!(matches!(done.outcome, Some(Outcome::Ok(_))), "{done:?}");
    winner_person.expect_no_violation().await;
    let confirmed = dispatch(&stack, &operator)
        .await
        .confirm_offer(volunteer_command(
            "",
            Body::ConfirmOffer(v1::ConfirmOffer {
                offer_id: offer_id.clone(),
                rating: v1::Satisfaction::Satisfied as i32,
                ..Default::default()
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(
        (
            confirmed.status.as_str(),
            confirmed.minutes,
            confirmed.points
        ),
        ("confirmed", 90, 15)
    );

    // A member reads its own community's offers and board, never another's, and nothing else.
    let mut far_reads = command_center(&stack.query_url(), &far_token).await;
    let listed = far_reads
        .list_offers(v1::ListOffersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed
        .offers
        .iter()
        .all(|o| o.community_code == "150602001002"));
    assert!(listed.offers.is_empty());
    let other_community = far_reads
        .list_offers(v1::ListOffersRequest {
            area_code: COMMUNITY.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(other_community), Code::PermissionDenied);
    let other_board = far_reads
        .get_service_board(v1::GetServiceBoardRequest {
            area_code: COMMUNITY.into(),
            kind: v1::ServiceBoardKind::Members as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(code(other_board), Code::PermissionDenied);
    let incidents = far_reads
        .list_incidents(v1::ListIncidentsRequest::default())
        .await;
    assert_eq!(
        code(incidents),
        Code::PermissionDenied,
        "a member token reads no incidents"
    );
    let mut my_reads = command_center(&stack.query_url(), &me_token).await;
    let board = my_reads
        .get_service_board(v1::GetServiceBoardRequest {
            kind: v1::ServiceBoardKind::Members as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(board.rows.len(), 1);
    assert_eq!(board.rows[0].key, winner);
    assert_eq!(board.rows[0].name, "党***", "a member's name is masked");
    assert_eq!(board.rows[0].points, 15);
    // One month of the year (the member's page shows this month's): the confirmation's month
    // holds it, the next one nothing; a month past December is refused.
    let confirmed_at: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT confirmed_at FROM service_ledger WHERE offer_id = $1::uuid")
            .bind(&offer_id)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    let ordos = confirmed_at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let month_board = |month: u32| v1::GetServiceBoardRequest {
        kind: v1::ServiceBoardKind::Members as i32,
        year: chrono::Datelike::year(&ordos),
        month,
        ..Default::default()
    };
    let this_month = chrono::Datelike::month(&ordos);
    let month = my_reads
        .get_service_board(month_board(this_month))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(month.rows, board.rows);
    let next = my_reads
        .get_service_board(month_board(this_month % 12 + 1))
        .await
        .unwrap()
        .into_inner();
    assert!(next.rows.is_empty() || this_month == 12, "{next:?}");
    assert_eq!(
        code(my_reads.get_service_board(month_board(13)).await),
        Code::InvalidArgument
    );

    // A member's token never sends the community's verbs through the door either.
    let refused = dispatch(&stack, &me_token)
        .await
        .withdraw_offer(volunteer_command(
            "",
            Body::WithdrawOffer(v1::WithdrawOffer {
                offer_id: offer_id.clone(),
                reason: "x".into(),
            }),
        ))
        .await;
    assert_eq!(code(refused), Code::PermissionDenied);
}

/// Applies `act` to `offer` at `at`; panics on a refusal.
async fn act_ok(pool: &sqlx::PgPool, offer: Uuid, act: Act, at: chrono::DateTime<Utc>) -> Stored {
    volunteers::act(pool, offer, act, &rules(), at)
        .await
        .unwrap()
        .unwrap_or_else(|refused| panic!("{refused}"))
}

#[tokio::test]
async fn every_step_of_an_offer_is_published_once_on_its_communitys_event_subject() {
    use whistle_proto::v1;

    let stack = Stack::builder().at(Utc::now()).start().await;
    let pool = stack.pool().clone();
    let (a, b) = ("pm-150602001001-9101", "pm-150602001001-9102");
    stack.member_token(a, COMMUNITY).await;
    stack.member_token(b, COMMUNITY).await;
    let (a, b) = (person(a), person(b));
    let now = stack.now();

    // A wish through its whole life: claimed, given back, claimed and lapsed, claimed, done,
    // confirmed and rated; a second claim while held is refused and publishes nothing.
    let served = wish(&pool, None).await;
    act_ok(&pool, served.id, Act::Claim { member: a.clone() }, now).await;
    let refused = volunteers::act(
        &pool,
        served.id,
        Act::Claim { member: b.clone() },
        &rules(),
        now,
    )
    .await
    .unwrap();
    assert!(refused.is_err(), "a held offer is not claimed twice");
    let release = Act::Release {
        member: a.clone(),
        note: "临时出差".into(),
    };
    act_ok(&pool, served.id, release, now).await;
    let held = act_ok(&pool, served.id, Act::Claim { member: b.clone() }, now).await;
    let deadline = held.offer.status.deadline().unwrap();
    assert_eq!(
        volunteers::fire_due(&pool, &rules(), deadline, 100)
            .await
            .unwrap(),
        [served.id]
    );
    act_ok(&pool, served.id, Act::Claim { member: a.clone() }, deadline).await;
    let complete = Act::Complete {
        member: a.clone(),
        note: "药已送到".into(),
        photos: Vec::new(),
        minutes: 90,
    };
    act_ok(&pool, served.id, complete, deadline).await;
    let confirm = Act::Confirm {
        by: handler(),
        minutes: None,
        rating: None,
        note: String::new(),
    };
    act_ok(&pool, served.id, confirm, deadline).await;
    let rate = Act::Rate {
        by: handler(),
        rating: Satisfaction::Satisfied,
        note: "王奶奶很满意".into(),
    };
    act_ok(&pool, served.id, rate, deadline).await;
    // A second wish the community takes back.
    let withdrawn = wish(&pool, None).await;
    let withdraw = Act::Withdraw {
        by: handler(),
        reason: "家属已解决".into(),
    };
    act_ok(&pool, withdrawn.id, withdraw, deadline).await;

    stack.relayed().await;
    let stored = read_stream(stack.js(), "WHISTLE_EVENTS").await;
    let of = |offer: Uuid| -> Vec<(Stored2, v1::OfferChanged)> {
        stored
            .iter()
            .filter_map(|m| {
                let event = <v1::Event as prost::Message>::decode(m.payload.clone()).unwrap();
                match &event.body {
                    Some(v1::event::Body::OfferChanged(o)) if o.offer_id == offer.to_string() => {
                        let o = o.clone();
                        Some(((m.subject.clone(), m.header("Nats-Msg-Id"), event), o))
                    }
                    _ => None,
                }
            })
            .collect()
    };
    type Stored2 = (String, String, v1::Event);

    for (offer, want) in [
        (
            served.id,
            vec![
                "offer.created",
                "offer.claimed",
                "offer.released",
                "offer.claimed",
                "offer.returned",
                "offer.claimed",
                "offer.done",
                "offer.confirmed",
                "offer.rated",
            ],
        ),
        (withdrawn.id, vec!["offer.created", "offer.withdrawn"]),
    ] {
        let events = of(offer);
        let kinds: Vec<&str> = events
            .iter()
            .map(|((_, _, e), _)| e.kind.as_str())
            .collect();
        assert_eq!(kinds, want, "the offer's events, once each, in order");
        // Exactly its timeline: nothing lost, nothing twice.
        let timeline: Vec<String> = volunteers::timeline(&pool, offer)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.1)
            .collect();
        assert_eq!(kinds, timeline);
        for (n, ((subject, msg_id, event), body)) in events.iter().enumerate() {
            assert_eq!(
                subject,
                &format!("whistle.event.150602.150602001.{}", event.kind)
            );
            assert_eq!(msg_id, &event.event_id, "deduplicated by its event id");
            assert_eq!(body.version, n as u64 + 1, "{}", event.kind);
            assert_eq!(
                (
                    event.community_code.as_str(),
                    event.grid_code.as_str(),
                    event.incident_id.as_str()
                ),
                (COMMUNITY, "", ""),
                "a wish belongs to its community and names no incident"
            );
            assert_eq!(body.offer_kind, "wish");
            assert_eq!(body.title, "帮独居老人买药");
        }
        let ids: std::collections::BTreeSet<&str> = events
            .iter()
            .map(|((_, _, e), _)| e.event_id.as_str())
            .collect();
        assert_eq!(ids.len(), events.len());
    }
    let events = of(served.id);
    let by_kind = |kind: &str| {
        events
            .iter()
            .filter(|((_, _, e), _)| e.kind == kind)
            .collect::<Vec<_>>()
    };
    let claims = by_kind("offer.claimed");
    let claimants: Vec<&str> = claims
        .iter()
        .map(|((_, _, e), o)| {
            assert_eq!(e.actor_id, o.member_id, "the claimant is the actor");
            assert!(o.claim_deadline.is_some());
            o.member_id.as_str()
        })
        .collect();
    assert_eq!(claimants, [a.as_str(), b.as_str(), a.as_str()]);
    let ((_, _, returned), body) = by_kind("offer.returned")[0];
    assert_eq!(
        (returned.actor_id.as_str(), body.status.as_str()),
        ("system", "open")
    );
    let ((_, _, released), body) = by_kind("offer.released")[0];
    assert_eq!(
        (released.actor_id.as_str(), body.note.as_str()),
        (a.as_str(), "临时出差")
    );
    let (_, confirmed) = by_kind("offer.confirmed")[0];
    assert_eq!(
        (
            confirmed.status.as_str(),
            confirmed.minutes,
            confirmed.member_id.as_str()
        ),
        ("confirmed", 90, a.as_str())
    );
    assert!(confirmed.points > 0);
    let (_, rated) = by_kind("offer.rated")[0];
    assert_eq!(rated.rating, v1::Satisfaction::Satisfied as i32);
}

#[tokio::test]
async fn the_screens_party_panel_counts_the_registry_the_days_claims_and_the_endorsed() {
    use tonic::Code;
    use whistle_proto::v1::{self, command::Body};
    use whistle_store::tokens::Role;

    let mut stack = Stack::builder()
        .at(Utc::now())
        .without_dispatch()
        .with_query()
        .start()
        .await;
    seed_leaders(stack.pool()).await;
    let pool = stack.pool().clone();
    let registry = seed(&pool).await;
    stack.start_dispatch().await;
    let members = members_of(&registry, COMMUNITY);
    let now = Utc::now();

    // Two wishes open, one claimed today, one more served and confirmed for 90 minutes.
    let first = wish(&pool, None).await;
    wish(&pool, None).await;
    act_ok(
        &pool,
        first.id,
        Act::Claim {
            member: members[0].clone(),
        },
        now,
    )
    .await;
    serve(&pool, &members[1], 90, true).await;
    // An incident of the community endorsed by its paired leader, another adopted proactively.
    let grid = "150602001001001";
    let endorsed = stack
        .report("party-1", grid, "municipal.street_light")
        .await;
    stack
        .ok(
            "ld-150602-01",
            endorsed,
            Body::Endorse(v1::Endorse {
                note: "请社区组织党员志愿者协助".into(),
            }),
        )
        .await;
    // Another category: a second street light here would be the same incident (a duplicate).
    let proactive = stack.report("party-2", grid, "sanitation.garbage").await;
    // 主动治理's adoption path is it::proactive's; here only the origin the panel reads.
    sqlx::query("UPDATE incidents SET origin = 'proactive' WHERE id = $1")
        .bind(proactive)
        .execute(&pool)
        .await
        .unwrap();

    let operator = stack.token_for(Role::Operator, "150602").await;
    let panel = command_center_on(stack.channel(), &operator)
        .get_party_panel(v1::GetPartyPanelRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(panel.area_code, "150602");
    let in_area = |code: &str| {
        registry
            .members
            .iter()
            .filter(|m| m.community.as_str().starts_with(code))
            .count() as u32
    };
    let teams_in = |code: &str| {
        registry
            .teams
            .iter()
            .filter(|t| t.community.as_str().starts_with(code))
            .count() as u32
    };
    let total = panel.total.clone().unwrap();
    assert_eq!(
        (total.members, total.teams),
        (in_area("150602"), teams_in("150602"))
    );
    assert!(total.members > 0);
    assert!(!panel.children.is_empty(), "the district's streets");
    for child in &panel.children {
        assert_eq!(child.area_code.len(), 9, "{child:?}");
        assert_eq!(
            (child.members, child.teams),
            (in_area(&child.area_code), teams_in(&child.area_code)),
            "{}",
            child.name
        );
    }
    assert_eq!(
        panel.children.iter().map(|c| c.members).sum::<u32>(),
        total.members
    );
    assert_eq!(
        panel.claims_today, 2,
        "the open wish's claim and the served one's"
    );
    assert_eq!(
        (panel.service_minutes_month, panel.confirmed_month),
        (90, 1)
    );
    assert_eq!(panel.open_wishes, 2, "the claimed wish and the open one");
    assert_eq!(panel.newest_wishes.len(), 2);
    assert_eq!(panel.newest_wishes[0].title, "帮独居老人买药");
    assert_eq!((panel.endorsed_open, panel.proactive_open), (1, 1));
    let marked: Vec<(String, bool, bool)> = panel
        .marked
        .iter()
        .map(|m| (m.incident_id.clone(), m.endorsed, m.proactive))
        .collect();
    assert_eq!(
        marked,
        [
            (endorsed.to_string(), true, false),
            (proactive.to_string(), false, true)
        ],
        "endorsed first"
    );
    assert_eq!(panel.marked[0].grid_code, grid);

    // A community's own panel; the city operator reads the district's too.
    let community = command_center_on(stack.channel(), &operator)
        .get_party_panel(v1::GetPartyPanelRequest {
            area_code: COMMUNITY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(community.total.unwrap().members, members.len() as u32);
    assert!(community.children.is_empty());
    assert_eq!(community.claims_today, 2);

    // Outside the token's area, or a liaison's or a member's token: refused.
    let elsewhere = stack.token_for(Role::Operator, "150603").await;
    let denied = command_center_on(stack.channel(), &elsewhere)
        .get_party_panel(v1::GetPartyPanelRequest {
            area_code: "150602".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let member = stack.member_token("pm-150602001001-9201", COMMUNITY).await;
    let denied = command_center_on(stack.channel(), &member)
        .get_party_panel(v1::GetPartyPanelRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}
