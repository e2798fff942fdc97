//! The volunteer layer's examples and properties: one claim wins; an offer returns at its claim's
//! deadline, once; points accrue only on confirmed work; volunteers never hold a category the
//! policy reserves for departments; the Ordos registry has the source's scale.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::{
    incident::Satisfaction,
    policy::{builtin, Policy, SlaClass, VolunteerRules},
    AreaCode, Level,
};

fn ordos() -> Policy {
    builtin("ordos").expect("the Ordos policy is built in")
}

fn community() -> AreaCode {
    "150602001001".parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 9, 0, 0).unwrap()
}

fn wish(team: Option<&str>) -> Offer {
    Offer::new(
        NewOffer {
            community: community(),
            kind: OfferKind::Wish,
            title: "帮独居老人更换灯泡".into(),
            detail: String::new(),
            team: team.map(str::to_owned),
            offered_by: "hd-150602001001".parse().unwrap(),
        },
        ordos().volunteers(),
        t0(),
    )
    .unwrap()
    .0
}

fn member(n: usize) -> Claimant {
    Claimant {
        member: format!("pm-150602001001-{n:04}").parse().unwrap(),
        community: Some(community()),
        teams: vec!["vt-150602001001-01".into()],
    }
}

fn photo() -> String {
    "a".repeat(64)
}

#[test]
fn the_ordos_registry_has_the_source_scale_and_shape() {
    let dataset = crate::ordos::dataset();
    let registry = ordos::registry(&dataset);
    assert_eq!(registry.members.len(), ordos::MEMBERS);
    assert_eq!(registry.teams.len(), ordos::TEAMS);
    let communities: BTreeSet<_> = dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Community)
        .map(|u| u.code.clone())
        .collect();
    assert_eq!(communities.len(), 236);
    let ids: BTreeSet<_> = registry.members.iter().map(|m| &m.id).collect();
    assert_eq!(ids.len(), registry.members.len(), "member ids are unique");
    let phones: BTreeSet<_> = registry.members.iter().map(|m| &m.phone).collect();
    assert_eq!(phones.len(), registry.members.len(), "phones are unique");
    let units: BTreeSet<_> = registry.units.iter().map(|u| u.id.as_str()).collect();
    for member in &registry.members {
        assert!(communities.contains(&member.community));
        assert!(
            units.contains(member.unit.as_str()),
            "{} has a registered unit",
            member.id
        );
        assert!(!member.skills.is_empty());
    }
    for unit in &registry.units {
        assert!(communities.contains(&unit.community));
    }
    for community in &communities {
        let teams = registry
            .teams
            .iter()
            .filter(|t| t.community == *community)
            .count();
        assert!(teams >= 3, "{community} has {teams} teams");
    }
    let by_id: std::collections::BTreeMap<_, _> =
        registry.members.iter().map(|m| (&m.id, m)).collect();
    for team in &registry.teams {
        assert!(
            team.members.len() >= 5,
            "{} has {} members",
            team.id,
            team.members.len()
        );
        for id in &team.members {
            assert_eq!(
                by_id[id].community, team.community,
                "a team serves its own community"
            );
        }
    }
    assert_eq!(
        ordos::registry(&dataset),
        registry,
        "the same on every call"
    );
}

#[test]
fn an_offer_walks_from_claim_to_confirmation_and_accrues_once() {
    let rules = ordos().volunteers().clone();
    let offer = wish(None);
    let (offer, step, _) = apply(&offer, Input::Claim(member(1)), &rules, t0()).unwrap();
    assert_eq!(step.kind, "offer.claimed");
    let done_at = t0() + TimeDelta::hours(2);
    let (offer, _, accrual) = apply(
        &offer,
        Input::Complete {
            member: member(1).member,
            note: "换了两个灯泡".into(),
            photos: vec![photo()],
            minutes: 90,
        },
        &rules,
        done_at,
    )
    .unwrap();
    assert!(accrual.is_none(), "marking done earns nothing yet");
    let (offer, _, accrual) = apply(
        &offer,
        Input::Confirm {
            by: "hd-150602001001".parse().unwrap(),
            minutes: None,
            rating: None,
            note: String::new(),
        },
        &rules,
        done_at + TimeDelta::hours(1),
    )
    .unwrap();
    let accrual = accrual.expect("confirmation accrues");
    assert_eq!((accrual.minutes, accrual.points), (90, 15));
    let (offer, step, accrual) = apply(
        &offer,
        Input::Rate {
            by: "hd-150602001001".parse().unwrap(),
            rating: Satisfaction::Satisfied,
            note: "居民很满意".into(),
        },
        &rules,
        done_at + TimeDelta::hours(3),
    )
    .unwrap();
    assert_eq!(step.kind, "offer.rated");
    assert!(accrual.is_none(), "a rating accrues nothing more");
    assert!(matches!(
        offer.status,
        OfferStatus::Confirmed {
            rating: Some(Satisfaction::Satisfied),
            ..
        }
    ));
}

#[test]
fn claimants_outside_the_community_or_team_are_refused() {
    let rules = ordos().volunteers().clone();
    let mut stranger = member(2);
    stranger.community = Some("150602001002".parse().unwrap());
    assert!(matches!(
        apply(&wish(None), Input::Claim(stranger), &rules, t0()),
        Err(Refusal::OtherCommunity { .. })
    ));
    let mut gone = member(3);
    gone.community = None;
    assert!(matches!(
        apply(&wish(None), Input::Claim(gone), &rules, t0()),
        Err(Refusal::NotRegistered(_))
    ));
    let mut outsider = member(4);
    outsider.teams.clear();
    let refusal = apply(
        &wish(Some("vt-150602001001-01")),
        Input::Claim(outsider),
        &rules,
        t0(),
    )
    .unwrap_err();
    assert_eq!(refusal, Refusal::NotInTeam("vt-150602001001-01".into()));
    assert_eq!(refusal.code(), "forbidden");
}

#[test]
fn the_policy_refuses_volunteers_an_emergency_or_a_departments_category() {
    let text = include_str!("../../../../policy/ordos.toml");
    for (listed, why) in [
        ("\"gas.leak\",", "emergency"),
        ("\"petition.letters\",", "above the community"),
        ("\"no.such\",", "not a category"),
    ] {
        let edited = text.replace(
            "categories = [\n    \"dispute.neighbour\",",
            &format!("categories = [\n    {listed}\n    \"dispute.neighbour\","),
        );
        assert_ne!(edited, text);
        let error = Policy::parse(&edited, |_| None).unwrap_err().to_string();
        assert!(
            error.contains("volunteers.categories") && error.contains(why),
            "{error}"
        );
    }
}

#[test]
fn a_unit_gets_the_first_grade_whose_every_bar_it_reaches() {
    let rules = crate::policy::EvaluationRules::DEFAULT;
    let year = |served, minutes, satisfied, unsatisfied| UnitService {
        registered: 10,
        served,
        minutes,
        satisfied,
        unsatisfied,
        ..UnitService::default()
    };
    let grade = |s: &UnitService| evaluate(s, &rules).unwrap().grade;
    // Exactly at the bar counts: 8 of 10 served, 12 hours each, 9 of 10 satisfied.
    assert_eq!(grade(&year(8, 10 * 12 * 60, 9, 1)), Grade::Excellent);
    // One rating short of nine in ten, or a minute short of the hours: good, not excellent.
    assert_eq!(grade(&year(8, 10 * 12 * 60, 8, 2)), Grade::Good);
    assert_eq!(grade(&year(8, 10 * 12 * 60 - 1, 9, 1)), Grade::Good);
    // Nothing rated meets a satisfaction bar.
    assert_eq!(grade(&year(8, 10 * 12 * 60, 0, 0)), Grade::Excellent);
    assert_eq!(grade(&year(5, 10 * 4 * 60, 0, 0)), Grade::Good);
    assert_eq!(grade(&year(5, 10 * 4 * 60 - 1, 0, 0)), Grade::Fair);
    assert_eq!(grade(&year(2, 0, 0, 0)), Grade::Fair);
    assert_eq!(grade(&year(1, 600, 0, 0)), Grade::Poor);
    assert!(evaluate(&UnitService::default(), &rules).is_none());
}

#[test]
fn the_evaluations_bars_are_the_policys_and_checked() {
    let text = include_str!("../../../../policy/ordos.toml");
    let with = |table: &str| text.replacen("[volunteers]\n", &format!("[volunteers]\n{table}"), 1);
    let bars = "evaluation = { excellent = { participation = 60, hours_per_member = 6, satisfaction = 80 }, \
                good = { participation = 30, hours_per_member = 2 }, fair = { participation = 10 } }\n";
    let policy = Policy::parse(&with(bars), |_| None).unwrap();
    let rules = &policy.volunteers().evaluation;
    assert_eq!(rules.excellent.participation_pct, 60);
    assert_eq!(rules.good.hours_per_member, 2);
    assert_eq!(rules.fair.satisfaction_pct, None);
    // A year good by the default bars is excellent by these.
    let year = UnitService {
        registered: 10,
        served: 6,
        minutes: 10 * 6 * 60,
        ..UnitService::default()
    };
    assert_eq!(evaluate(&year, rules).unwrap().grade, Grade::Excellent);
    assert_eq!(
        ordos().volunteers().evaluation,
        crate::policy::EvaluationRules::DEFAULT
    );
    for (bad, why) in [
        (
            bars.replace("participation = 60", "participation = 160"),
            "at most 100",
        ),
        (
            bars.replace("participation = 60", "participation = 20"),
            "excellent than good",
        ),
        (
            bars.replace("hours_per_member = 2", "hours_per_member = 9"),
            "excellent than good",
        ),
        (
            bars.replace("participation = 10", "participation = 40"),
            "good than fair",
        ),
    ] {
        let error = Policy::parse(&with(&bad), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("volunteers.evaluation") && error.contains(why),
            "{error}"
        );
    }
}

fn any_input(members: usize) -> impl Strategy<Value = Input> {
    let person = (0..members).prop_map(|n| member(n).member);
    prop_oneof![
        (0..members).prop_map(|n| Input::Claim(member(n))),
        person.clone().prop_map(|member| Input::Release {
            member,
            note: String::new()
        }),
        (person, 1u32..600).prop_map(|(member, minutes)| Input::Complete {
            member,
            note: "做完了".into(),
            photos: vec![],
            minutes,
        }),
        (proptest::option::of(1u32..600)).prop_map(|minutes| Input::Confirm {
            by: "hd-150602001001".parse().unwrap(),
            minutes,
            rating: None,
            note: String::new(),
        }),
        Just(Input::Rate {
            by: "hd-150602001001".parse().unwrap(),
            rating: Satisfaction::BasicallySatisfied,
            note: String::new(),
        }),
        Just(Input::Withdraw {
            by: "hd-150602001001".parse().unwrap(),
            reason: "居民已自行解决".into(),
        }),
        Just(Input::ClaimDeadline),
    ]
}

proptest! {
    /// However many members claim an open offer, in whatever order the database serialises their
    /// transactions, the first wins and every other is told it is taken.
    #[test]
    fn one_claim_wins(order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(), count in 2usize..8) {
        let rules = ordos().volunteers().clone();
        let mut offer = wish(None);
        let mut winners = Vec::new();
        for &n in order.iter().take(count) {
            match apply(&offer, Input::Claim(member(n)), &rules, t0()) {
                Ok((next, _, _)) => {
                    winners.push(n);
                    offer = next;
                }
                Err(refusal) => prop_assert_eq!(refusal, Refusal::AlreadyClaimed),
            }
        }
        prop_assert_eq!(winners, vec![order[0]]);
        prop_assert_eq!(offer.status.member(), Some(&member(order[0]).member));
    }

    /// A claim not done returns the offer at its deadline — not a moment before — and the timer
    /// fires once: a second firing finds nothing to return.
    #[test]
    fn an_offer_returns_at_its_deadline(claimed_after in 0i64..100_000, fire_at in -100_000i64..100_000) {
        let rules = ordos().volunteers().clone();
        let claimed_at = t0() + TimeDelta::seconds(claimed_after);
        let (claimed, _, _) = apply(&wish(None), Input::Claim(member(1)), &rules, claimed_at).unwrap();
        let deadline = claimed.status.deadline().unwrap();
        prop_assert_eq!(deadline, claimed_at + rules.claim_window);
        let now = deadline + TimeDelta::seconds(fire_at);
        match apply(&claimed, Input::ClaimDeadline, &rules, now) {
            Ok((returned, step, _)) => {
                prop_assert!(now >= deadline);
                prop_assert_eq!(&returned.status, &OfferStatus::Open);
                prop_assert_eq!(returned.returns, 1);
                prop_assert_eq!(step.kind, "offer.returned");
                prop_assert!(apply(&returned, Input::ClaimDeadline, &rules, now).is_err());
                // Back on the list: another member may claim it.
                prop_assert!(apply(&returned, Input::Claim(member(2)), &rules, now).is_ok());
            }
            Err(refusal) => {
                prop_assert!(now < deadline);
                prop_assert_eq!(refusal, Refusal::NotDue(deadline));
            }
        }
        // Work marked done in time is never returned.
        if fire_at < 0 {
            let done = apply(&claimed, Input::Complete {
                member: member(1).member, note: "ok".into(), photos: vec![], minutes: 30,
            }, &rules, now);
            let (done, _, _) = done.unwrap();
            prop_assert!(apply(&done, Input::ClaimDeadline, &rules, deadline + TimeDelta::days(9)).is_err());
        }
    }

    /// Whatever happens to an offer, hours and points accrue once and only by a confirmation, and
    /// what accrued is what the confirmed offer says.
    #[test]
    fn points_only_for_confirmed_work(inputs in proptest::collection::vec((any_input(3), 0i64..200_000), 1..40)) {
        let rules = ordos().volunteers().clone();
        let mut offer = wish(None);
        let mut now = t0();
        let mut accrued = Vec::new();
        for (input, after) in inputs {
            now += TimeDelta::seconds(after);
            let confirming = matches!(input, Input::Confirm { .. });
            if let Ok((next, step, accrual)) = apply(&offer, input, &rules, now) {
                // Each step is published as an event of its kind: the kinds are a closed list.
                prop_assert!(EVENT_KINDS.contains(&step.kind), "{}", step.kind);
                prop_assert_eq!(accrual.is_some(), confirming);
                accrued.extend(accrual);
                offer = next;
            }
        }
        prop_assert!(accrued.len() <= 1);
        match (&offer.status, accrued.first()) {
            (OfferStatus::Confirmed { member, minutes, points, .. }, Some(accrual)) => {
                prop_assert_eq!(member, &accrual.member);
                prop_assert_eq!((*minutes, *points), (accrual.minutes, accrual.points));
                prop_assert_eq!(*points, points_for(*minutes, &rules));
                prop_assert!(*minutes >= 1 && *minutes <= rules.max_minutes);
            }
            (OfferStatus::Confirmed { .. }, None) => prop_assert!(false, "confirmed without accruing"),
            (_, accrual) => prop_assert!(accrual.is_none(), "accrued without a confirmation"),
        }
    }

    /// An incident is offered to volunteers only in a category the policy lists for them, and no
    /// listed category is an emergency or first handled above the community.
    #[test]
    fn volunteers_never_hold_a_reserved_category(index in 0usize..64) {
        let policy = ordos();
        let categories: Vec<_> = policy.categories().collect();
        let category = categories[index % categories.len()];
        let rules: &VolunteerRules = policy.volunteers();
        let offered = Offer::new(
            NewOffer {
                community: community(),
                kind: OfferKind::Incident { incident_id: "0193a000-0000-7000-8000-000000000001".into(), category: category.code.clone() },
                title: category.name_zh.clone(),
                detail: String::new(),
                team: None,
                offered_by: "hd-150602001001".parse().unwrap(),
            },
            rules,
            t0(),
        );
        let reserved = category.sla == SlaClass::Emergency || category.first_level > Level::Community;
        match offered {
            Ok(_) => {
                prop_assert!(rules.allows(&category.code));
                prop_assert!(!reserved, "{} is a department's", category.code);
            }
            Err(refusal) => {
                prop_assert!(!rules.allows(&category.code));
                prop_assert_eq!(refusal, Refusal::Reserved(category.code.clone()));
            }
        }
    }
}
