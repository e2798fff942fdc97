//! A simulated report history of Ordos with planted patterns, for testing the hotspot analysis:
//! deterministic for a seed. Background reports fall anywhere at random (busier in some grids),
//! one-off bursts pile many reports on one spot within days and never again, and the planted
//! patterns are the kinds the analysis must find — steady, growing, returning, seasonal.

use chrono::{DateTime, Duration, Utc};

use super::{Kind, Month, Record};
use crate::{ordos, ordos::SplitMix64, AreaCode, Level, OrgDataset};

/// A pattern planted in the history: what kind, where, which group.
#[derive(Debug, Clone, PartialEq)]
pub struct Planted {
    pub kind: Kind,
    pub grid: AreaCode,
    pub centre: (f64, f64),
    pub group: String,
}

/// A one-off burst: many reports at one spot within days, which must not be proposed.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub grid: AreaCode,
    pub centre: (f64, f64),
    pub group: String,
    pub reports: u32,
}

#[derive(Debug, Clone)]
pub struct History {
    /// The proposal month: the history covers the 24 months before it.
    pub month: Month,
    pub records: Vec<Record>,
    pub planted: Vec<Planted>,
    pub bursts: Vec<Burst>,
}

/// Categories the background draws from, with their weight and first handling level (as in
/// policy/ordos.toml).
const CATEGORIES: [(&str, u32, Level); 12] = [
    ("sanitation.garbage", 20, Level::Grid),
    ("sanitation.environment", 10, Level::Grid),
    ("property.service", 14, Level::Community),
    ("traffic.illegal_parking", 12, Level::Grid),
    ("dispute.neighbour", 10, Level::Grid),
    ("noise.residential", 8, Level::Grid),
    ("municipal.street_light", 6, Level::Community),
    ("municipal.road", 6, Level::Community),
    ("environment.cooking_fumes", 5, Level::Community),
    ("water.outage", 4, Level::Community),
    ("heating.no_heat", 3, Level::Community),
    ("noise.construction", 2, Level::Community),
];

const KM_PER_DEG_LAT: f64 = 110.574;
const KM_PER_DEG_LON: f64 = 85.0; // at about 39.8° N

/// The history of the 24 months before `month` for `seed`: about `background` random reports a
/// month, 8 one-off bursts and 12 planted patterns (3 of each kind).
pub fn history(seed: u64, month: Month, background: u32) -> History {
    let dataset = ordos::dataset();
    let grids = grids(&dataset);
    let mut sim = Sim {
        rng: SplitMix64(seed ^ 0x5851_F42D_4C95_7F2D),
        records: Vec::new(),
        next_incident: 0,
    };
    let from = month.plus(-24);
    let (start, end) = (from.start(), month.start());
    let days = (end - start).num_days();

    // Busy grids (town centres) get five times the background of the others.
    let weights: Vec<u32> = grids
        .iter()
        .map(|_| if sim.rng.unit() < 0.15 { 5 } else { 1 })
        .collect();
    let total_weight: u32 = weights.iter().sum();
    for _ in 0..background * 24 {
        let mut pick = sim.rng.below(u64::from(total_weight)) as u32;
        let mut grid = 0;
        while pick >= weights[grid] {
            pick -= weights[grid];
            grid += 1;
        }
        let (code, centre) = &grids[grid];
        let (category, level) = sim.category();
        let point = sim.scatter(*centre, 0.6);
        let at = start + Duration::seconds(sim.rng.below(days as u64 * 86_400) as i64);
        sim.incident(code, category, level, point, &[at]);
    }

    let mut planted = Vec::new();
    let mut bursts = Vec::new();
    // Patterns and bursts in distinct grids, so that each is told apart by place.
    let mut used = std::collections::BTreeSet::new();
    let mut fresh_grid = |sim: &mut Sim| loop {
        let i = sim.rng.below(grids.len() as u64) as usize;
        if used.insert(i) {
            return grids[i].clone();
        }
    };

    for n in 0..12 {
        let kind = [Kind::Steady, Kind::Growing, Kind::Returning, Kind::Seasonal][n % 4];
        let (grid, grid_centre) = fresh_grid(&mut sim);
        let centre = sim.point(grid_centre, 0.3);
        let (category, level) = match (kind, n / 4) {
            (Kind::Seasonal, 0) => ("heating.no_heat", Level::Community),
            (Kind::Seasonal, 1) => ("municipal.road", Level::Community), // rainy-season waterlogging
            (Kind::Seasonal, _) => ("sanitation.snow", Level::Community),
            (Kind::Steady, 0) => ("environment.cooking_fumes", Level::Community),
            (Kind::Steady, 1) => ("property.service", Level::Community),
            (Kind::Steady, _) => ("traffic.illegal_parking", Level::Grid),
            (Kind::Growing, 0) => ("noise.construction", Level::Community),
            (Kind::Growing, 1) => ("sanitation.garbage", Level::Grid),
            (Kind::Growing, _) => ("property.fees", Level::Community),
            (Kind::Returning, 0) => ("water.outage", Level::Community),
            (Kind::Returning, 1) => ("municipal.street_light", Level::Community),
            (Kind::Returning, _) => ("municipal.manhole", Level::Community),
        };
        for m in 0..24 {
            let this = from.plus(m);
            let rate = match kind {
                // One to three reports a month.
                Kind::Steady => 1.0 + sim.rng.unit() * 2.0,
                // Nothing, or the odd report, until the last six months, then rising.
                Kind::Growing if m < 18 => 0.08,
                Kind::Growing => [0.5, 1.0, 2.0, 3.0, 4.0, 5.0][(m - 18) as usize],
                Kind::Returning => 0.0,
                Kind::Seasonal => match (n / 4, this.month()) {
                    (0, 11 | 12 | 1 | 2 | 3) => 3.0,
                    (1, 7 | 8) => 4.0,
                    (2, 12 | 1 | 2) => 3.0,
                    _ => 0.0,
                },
            };
            let count = sim.count(rate);
            let month_start = this.start();
            let month_days = (this.plus(1).start() - month_start).num_days() as u64;
            for _ in 0..count {
                let at = month_start + Duration::seconds(sim.rng.below(month_days * 86_400) as i64);
                let point = sim.scatter(centre, 0.05);
                sim.incident(&grid, category, level, point, &[at]);
            }
        }
        if kind == Kind::Returning {
            // Fixed, and back every two to three months: one to three reports each time (the
            // neighbours notice too), the incident closed within days.
            let mut at = start + Duration::days(20 + sim.rng.below(30) as i64);
            while at < end {
                let mut reports = vec![at];
                for _ in 0..2 {
                    if sim.rng.unit() < 0.5 {
                        reports.push(at + Duration::hours(4 + sim.rng.below(48) as i64));
                    }
                }
                reports.sort();
                reports.retain(|r| *r < end);
                let point = sim.scatter(centre, 0.05);
                sim.incident(&grid, category, level, point, &reports);
                at += Duration::days(55 + sim.rng.below(35) as i64);
            }
        }
        planted.push(Planted {
            kind,
            grid,
            centre,
            group: super::group_of(category).to_owned(),
        });
    }

    for _ in 0..8 {
        let (grid, grid_centre) = fresh_grid(&mut sim);
        let centre = sim.point(grid_centre, 0.3);
        let (category, level) = sim.category();
        let reports = 8 + sim.rng.below(18) as u32;
        let first = start + Duration::seconds(sim.rng.below((days as u64 - 10) * 86_400) as i64);
        let mut times: Vec<DateTime<Utc>> = (0..reports)
            .map(|_| first + Duration::seconds(sim.rng.below(6 * 86_400) as i64))
            .collect();
        times.sort();
        // Reports a few hours apart join one incident, as dispatch's duplicate check does.
        let mut i = 0;
        while i < times.len() {
            let mut j = i + 1;
            while j < times.len() && times[j] - times[j - 1] < Duration::hours(12) {
                j += 1;
            }
            let point = sim.scatter(centre, 0.05);
            sim.incident(&grid, category, level, point, &times[i..j]);
            i = j;
        }
        bursts.push(Burst {
            grid,
            centre,
            group: super::group_of(category).to_owned(),
            reports,
        });
    }

    let mut records = sim.records;
    records.sort_by(|a, b| (a.at, &a.report_id).cmp(&(b.at, &b.report_id)));
    History {
        month,
        records,
        planted,
        bursts,
    }
}

fn grids(dataset: &OrgDataset) -> Vec<(AreaCode, (f64, f64))> {
    dataset
        .units
        .iter()
        .filter(|u| u.level() == Level::Grid)
        .map(|u| (u.code.clone(), (u.lat, u.lon)))
        .collect()
}

struct Sim {
    rng: SplitMix64,
    records: Vec<Record>,
    next_incident: u64,
}

impl Sim {
    fn category(&mut self) -> (&'static str, Level) {
        let total: u32 = CATEGORIES.iter().map(|c| c.1).sum();
        let mut pick = self.rng.below(u64::from(total)) as u32;
        for (code, weight, level) in CATEGORIES {
            if pick < weight {
                return (code, level);
            }
            pick -= weight;
        }
        unreachable!("the pick is below the total weight")
    }

    /// A point within `km` of `centre` (a square, which is enough here).
    fn point(&mut self, centre: (f64, f64), km: f64) -> (f64, f64) {
        let dy = (self.rng.unit() * 2.0 - 1.0) * km;
        let dx = (self.rng.unit() * 2.0 - 1.0) * km;
        (
            centre.0 + dy / KM_PER_DEG_LAT,
            centre.1 + dx / KM_PER_DEG_LON,
        )
    }

    /// A report's point near `centre`, or none for one report in ten, as a phone without a fix
    /// sends.
    fn scatter(&mut self, centre: (f64, f64), km: f64) -> Option<(f64, f64)> {
        let point = self.point(centre, km);
        (self.rng.unit() >= 0.1).then_some(point)
    }

    /// About `rate` (a binomial draw of mean `rate`, no transcendental functions).
    fn count(&mut self, rate: f64) -> u32 {
        if rate <= 0.0 {
            return 0;
        }
        let trials = (rate * 3.0).ceil() as u32;
        let p = rate / f64::from(trials);
        (0..trials).filter(|_| self.rng.unit() < p).count() as u32
    }

    /// One incident with its reports at `times`, closed a day to ten days after its last report,
    /// one in twenty escalated a level.
    fn incident(
        &mut self,
        grid: &AreaCode,
        category: &str,
        first_level: Level,
        point: Option<(f64, f64)>,
        times: &[DateTime<Utc>],
    ) {
        let Some(&opened_at) = times.first() else {
            return;
        };
        self.next_incident += 1;
        let incident_id = format!("sim-incident-{:06}", self.next_incident);
        let last = *times.last().expect("not empty");
        let closed_at = Some(last + Duration::hours(24 + self.rng.below(216) as i64));
        let level = if self.rng.unit() < 0.05 {
            Level::ALL
                .iter()
                .copied()
                .find(|l| *l > first_level)
                .unwrap_or(first_level)
        } else {
            first_level
        };
        for (n, &at) in times.iter().enumerate() {
            self.records.push(Record {
                report_id: format!("{incident_id}-r{n}"),
                incident_id: incident_id.clone(),
                at,
                grid: grid.clone(),
                category: category.to_owned(),
                point,
                opened_at,
                closed_at,
                first_level,
                level,
            });
        }
    }
}
