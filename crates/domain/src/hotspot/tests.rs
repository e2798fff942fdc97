use chrono::{Duration, TimeZone, Utc};

use super::sim::{self, History};
use super::*;

fn month(s: &str) -> Month {
    s.parse().expect("a month")
}

/// A candidate is of a planted pattern when it is in its grid and group, near its centre.
fn of(candidate: &Candidate, grid: &AreaCode, group: &str, centre: (f64, f64)) -> bool {
    &candidate.grid == grid
        && candidate.group == group
        && candidate.centre.is_none_or(|c| metres(c, centre) <= 300.0)
}

/// Every planted pattern found with its kind, no burst proposed, precision at least 0.9.
fn check(history: &History) -> (usize, usize) {
    let proposal = analyse(&history.records, history.month, &Params::default());
    for planted in &history.planted {
        let found: Vec<&Candidate> = proposal
            .candidates
            .iter()
            .filter(|c| of(c, &planted.grid, &planted.group, planted.centre))
            .collect();
        assert!(
            found.iter().any(|c| c.kinds.contains(&planted.kind)),
            "planted {planted:?} not found as {:?}: {found:#?}",
            planted.kind
        );
        if planted.kind == Kind::Seasonal {
            assert!(
                found.iter().all(|c| !c.kinds.contains(&Kind::Steady)),
                "a seasonal pattern is not also steady: {found:#?}"
            );
        }
    }
    for burst in &history.bursts {
        let proposed: Vec<&Candidate> = proposal
            .candidates
            .iter()
            .filter(|c| of(c, &burst.grid, &burst.group, burst.centre))
            .collect();
        assert!(
            proposed.is_empty(),
            "burst {burst:?} proposed: {proposed:#?}"
        );
    }
    let true_positives = proposal
        .candidates
        .iter()
        .filter(|c| {
            history
                .planted
                .iter()
                .any(|p| of(c, &p.grid, &p.group, p.centre))
        })
        .count();
    let precision = true_positives as f64 / proposal.candidates.len() as f64;
    let noise: Vec<&Candidate> = proposal
        .candidates
        .iter()
        .filter(|c| {
            !history
                .planted
                .iter()
                .any(|p| of(c, &p.grid, &p.group, p.centre))
        })
        .collect();
    assert!(
        precision >= 0.9,
        "precision {precision:.2}: {true_positives} of {}; not planted: {noise:#?}",
        proposal.candidates.len()
    );
    (true_positives, proposal.candidates.len())
}

#[test]
fn finds_every_planted_pattern_and_not_the_noise() {
    // Twelve seeds, one proposal month of each calendar month (seasons on, near and far), so
    // that no one lucky draw passes.
    let (mut found, mut candidates) = (0, 0);
    for seed in 1..=12u64 {
        let at = month("2026-01").plus(seed as i32 - 1);
        let history = sim::history(seed, at, 600);
        assert_eq!(history.planted.len(), 12);
        assert_eq!(history.bursts.len(), 8);
        let (planted, all) = check(&history);
        found += planted;
        candidates += all;
    }
    assert!(
        found as f64 >= 0.9 * candidates as f64,
        "{found} of {candidates} candidates planted"
    );
}

#[test]
fn the_history_is_deterministic_for_a_seed() {
    let a = sim::history(7, month("2026-12"), 100);
    let b = sim::history(7, month("2026-12"), 100);
    let c = sim::history(8, month("2026-12"), 100);
    assert_eq!(a.records, b.records);
    assert_ne!(a.records, c.records);
    let proposal_a = propose(&a.records, a.month, &Params::default());
    let proposal_b = propose(&b.records, b.month, &Params::default());
    assert_eq!(proposal_a, proposal_b);
    assert!(proposal_a.candidates.len() <= Params::default().proposals);
    assert!(proposal_a
        .candidates
        .windows(2)
        .all(|w| w[0].score >= w[1].score));
}

fn grid() -> AreaCode {
    "150602001001001".parse().expect("a grid")
}

fn record(n: u32, at: DateTime<Utc>, category: &str, closed_days: i64) -> Record {
    Record {
        report_id: format!("r{n}"),
        incident_id: format!("i{n}"),
        at,
        grid: grid(),
        category: category.to_owned(),
        point: Some((39.81, 109.99)),
        opened_at: at,
        closed_at: Some(at + Duration::days(closed_days)),
        first_level: Level::Community,
        level: Level::Community,
    }
}

fn day(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 4, 0, 0).unwrap()
}

#[test]
fn months_are_counted_in_ordos_time() {
    // 16:30 UTC on 31 January is 00:30 on 1 February in Ordos.
    let at = Utc.with_ymd_and_hms(2026, 1, 31, 16, 30, 0).unwrap();
    assert_eq!(Month::of(at), month("2026-02"));
    assert_eq!(
        month("2026-02").start(),
        Utc.with_ymd_and_hms(2026, 1, 31, 16, 0, 0).unwrap()
    );
    assert_eq!(month("2027-01").since(month("2026-11")), 2);
    assert_eq!(month("2026-12").plus(1).to_string(), "2027-01");
    for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
        assert!(bad.parse::<Month>().is_err(), "{bad}");
    }
}

#[test]
fn a_heating_season_is_told_apart_from_a_steady_repeat() {
    let mut records = Vec::new();
    let mut n = 0;
    for (year, months) in [
        (2024, [11, 12]),
        (2025, [1, 2]),
        (2025, [11, 12]),
        (2026, [1, 2]),
    ] {
        for m in months {
            for d in [3, 12, 21] {
                n += 1;
                records.push(record(n, day(year, m, d), "heating.no_heat", 3));
            }
        }
    }
    let proposal = analyse(&records, month("2026-10"), &Params::default());
    let [candidate] = proposal.candidates.as_slice() else {
        panic!("one candidate: {proposal:#?}");
    };
    assert_eq!(candidate.kinds, vec![Kind::Seasonal]);
    let season = candidate.season.expect("a season");
    assert_eq!((season.from, season.to, season.seasons), (11, 2, 2));
    // October: the season starts next month, so it is timely and scores for it.
    let timely = candidate.terms.iter().find(|t| t.name == "season").unwrap();
    assert_eq!(timely.points, Params::default().weights.season);
    // In May it is not.
    let may = analyse(&records, month("2026-05"), &Params::default());
    let term = may.candidates[0]
        .terms
        .iter()
        .find(|t| t.name == "season")
        .unwrap();
    assert_eq!(term.points, 0.0);
    assert!(
        candidate.summary_zh.contains("季节性"),
        "{}",
        candidate.summary_zh
    );
}

#[test]
fn a_one_off_burst_is_not_a_topic() {
    let records: Vec<Record> = (0..30)
        .map(|n| record(n, day(2026, 5, 1 + n % 5), "sanitation.garbage", 2))
        .collect();
    let proposal = analyse(&records, month("2026-09"), &Params::default());
    assert!(proposal.candidates.is_empty(), "{proposal:#?}");
    assert_eq!(proposal.reports, 30);
}

#[test]
fn returns_after_closing_raise_the_level_that_can_solve_it() {
    // A street light fixed and broken again every two months.
    let records: Vec<Record> = (0..6)
        .map(|n| record(n, day(2026, 1 + 2 * n, 10), "municipal.street_light", 5))
        .collect();
    let proposal = analyse(&records, month("2027-01"), &Params::default());
    let [candidate] = proposal.candidates.as_slice() else {
        panic!("one candidate: {proposal:#?}");
    };
    assert!(candidate.kinds.contains(&Kind::Returning), "{candidate:#?}");
    assert_eq!(candidate.returns, 5);
    // The community fixed it five times for a while: the street should solve it for good.
    assert_eq!(candidate.solvable_at, Level::Street);
    assert_eq!(
        candidate.incident_ids.first().map(String::as_str),
        Some("i5")
    );
    let months: u32 = candidate.months.iter().map(|m| m.1).sum();
    assert_eq!(months, 6);
    assert_eq!(candidate.months.len(), 24);
}

#[test]
fn growth_is_measured_against_the_months_before() {
    let mut records = Vec::new();
    let mut n = 0;
    for (m, count) in [(7, 1), (8, 2), (9, 3), (10, 4)] {
        for d in 0..count {
            n += 1;
            records.push(record(n, day(2026, m, 2 + d * 6), "noise.construction", 3));
        }
    }
    let proposal = analyse(&records, month("2026-11"), &Params::default());
    let [candidate] = proposal.candidates.as_slice() else {
        panic!("one candidate: {proposal:#?}");
    };
    assert!(candidate.kinds.contains(&Kind::Growing), "{candidate:#?}");
    // 9 reports in the last 3 months, 1 in the 9 before: (3 + 0.25) / (1/9 + 0.25).
    assert!((candidate.growth - 3.25 / (1.0 / 9.0 + 0.25)).abs() < 1e-9);
}

#[test]
fn the_change_compares_the_months_either_side() {
    let mut records: Vec<Record> = (0..6)
        .map(|n| record(n, day(2026, 1 + n, 10), "property.service", 2))
        .collect();
    records.push(record(10, day(2026, 9, 3), "property.service", 2));
    // Another group, another place and a report without coordinates do not count.
    records.push(record(11, day(2026, 5, 3), "noise.residential", 2));
    let mut far = record(12, day(2026, 5, 4), "property.service", 2);
    far.point = Some((39.90, 109.99));
    records.push(far);
    let mut unlocated = record(13, day(2026, 5, 5), "property.service", 2);
    unlocated.point = None;
    records.push(unlocated);
    let place: PlaceKey = format!("{}/property@39.8100,109.9900", grid())
        .parse()
        .unwrap();
    let change = change(&records, &place, 150.0, day(2026, 7, 15), 3);
    let counts = |months: &[(Month, u32)]| -> Vec<(String, u32)> {
        months.iter().map(|(m, n)| (m.to_string(), *n)).collect()
    };
    assert_eq!(
        counts(&change.before),
        [
            ("2026-04".into(), 1),
            ("2026-05".into(), 1),
            ("2026-06".into(), 1)
        ]
    );
    assert_eq!(
        counts(&change.after),
        [
            ("2026-08".into(), 0),
            ("2026-09".into(), 1),
            ("2026-10".into(), 0)
        ]
    );
    assert_eq!(change.before_per_month(), 1.0);
    assert_eq!(change.after_per_month(), 1.0 / 3.0);
    // The grid as a whole counts its reports without coordinates.
    let whole: PlaceKey = format!("{}/property", grid()).parse().unwrap();
    let change = super::change(&records, &whole, 150.0, day(2026, 7, 15), 3);
    assert_eq!(change.before.iter().map(|m| m.1).sum::<u32>(), 1);
}

#[test]
fn a_key_names_its_place_or_is_refused() {
    let key: PlaceKey = "150602001001001/heating@39.8123,109.9876".parse().unwrap();
    assert_eq!(key.grid.as_str(), "150602001001001");
    assert_eq!(key.group, "heating");
    assert_eq!(key.anchor, Some((39.8123, 109.9876)));
    let whole: PlaceKey = "150602001001001/heating".parse().unwrap();
    assert_eq!(whole.anchor, None);
    for bad in [
        "",
        "150602001001001",
        "150602001/heating",
        "150602001001001/",
        "150602001001001/Heating",
        "150602001001001/heating@39.8",
        "150602001001001/heating@91,109",
        "150602001001001/heating@x,y",
    ] {
        assert!(bad.parse::<PlaceKey>().is_err(), "{bad}");
    }
    // Every candidate's key parses back to its place.
    let history = sim::history(3, month("2026-10"), 200);
    for candidate in analyse(&history.records, history.month, &Params::default()).candidates {
        let key: PlaceKey = candidate.key.parse().unwrap();
        assert_eq!((key.grid, key.group), (candidate.grid, candidate.group));
    }
}

#[test]
fn short_lookbacks_are_read_without_failing() {
    let history = sim::history(4, month("2026-08"), 100);
    for lookback in 1..=4 {
        let params = Params {
            lookback_months: lookback,
            recent_months: lookback,
            ..Params::default()
        };
        let proposal = analyse(&history.records, history.month, &params);
        assert_eq!(proposal.from, history.month.plus(-(lookback as i32)));
    }
}

proptest::proptest! {
    /// The banded neighbour search finds exactly the pairs that measuring every pair finds, on
    /// points packed tightly enough that many pairs lie near the radius.
    #[test]
    fn neighbours_by_band_are_every_pair_within_the_radius(
        points in proptest::collection::vec((0u32..4_000, 0u32..4_000), 0..120),
        radius_m in 10.0f64..400.0,
    ) {
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .map(|(y, x)| (39.8 + f64::from(y) * 1e-6, 109.9 + f64::from(x) * 1e-6))
            .collect();
        let every_pair: Vec<Vec<usize>> = points
            .iter()
            .map(|a| {
                (0..points.len())
                    .filter(|&j| metres(*a, points[j]) <= radius_m)
                    .collect()
            })
            .collect();
        proptest::prop_assert_eq!(neighbours(&points, radius_m), every_pair);
    }
}
