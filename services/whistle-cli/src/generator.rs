//! The realistic report generator `whistle load` and `whistle simulate` send: Ordos grids,
//! categories weighted as a winter city files them, now and then a report built to be rejected.
//!
//! **Where reports are placed.** A city files mostly new problems and a few more reports of one
//! already open ([`Mix::City`], about 15 % duplicates). A new problem goes to a place no earlier
//! problem of its category took in this run: a cell of a square lattice whose cells lie twice the
//! policy's duplicate radius apart, the free cell nearest its grid along a spiral, so it never
//! attaches to another. A duplicate repeats a recent problem's category and grid a few metres from
//! its place. The lattice is split into [`COSETS`] interleaved sublattices and a run uses the one
//! its seed picks, so runs on one database within the duplicate window (24 h) with seeds that
//! differ modulo [`COSETS`] never share a place either. [`Mix::Legacy`] is the mix before: every
//! report within about 100 m of its grid's centre, so nearly all attach once a run has gone on
//! for a while.

use std::collections::HashSet;

use prost::Message as _;
use rand::{rngs::StdRng, Rng, SeedableRng};
use whistle_domain::{
    policy::{Category, Policy, SlaClass},
    AreaCode, Level, OrgUnit,
};
use whistle_proto::v1;

/// How reports are spread over places.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mix {
    /// New problems at distinct places, this share of the reports duplicates of recent ones.
    City { duplicate_share: f64 },
    /// Every report near its grid's centre (the generator before the city mix).
    Legacy,
}

impl Mix {
    /// A city's: about 15 % of reports are duplicates.
    pub const CITY: Mix = Mix::City {
        duplicate_share: 0.15,
    };
}

/// Interleaved sublattices: a run places its problems on one of them, picked by its seed.
pub const COSETS: u64 = 4;

/// How many recent problems a duplicate is drawn from.
const RECENT: usize = 4_096;

/// Metres per degree of latitude.
const METRES_PER_DEGREE: f64 = 111_320.0;

/// The lattice of places for new problems (see the module's doc).
struct Places {
    /// Cell size in degrees of latitude and longitude (at Ordos' latitude).
    cell: (f64, f64),
    /// This run's sublattice: cells (i, j) with (i mod 2, j mod 2) equal to it.
    coset: (i64, i64),
    /// (category index, cell) taken in this run: this generation's and the one before. A place
    /// is free again once it has been out of the duplicate window for a whole generation, which
    /// keeps a simulation running for weeks from growing without bound.
    taken: [HashSet<(usize, i64, i64)>; 2],
    generation_started: std::time::Instant,
    generation: std::time::Duration,
    /// (grid index, category index) → the next spiral step to try from the grid's cell.
    cursor: std::collections::HashMap<(usize, usize), u64>,
    /// Recent problems: (grid index, category index, lat, lon).
    recent: Vec<(usize, usize, f64, f64)>,
    duplicate_radius_m: f64,
}

impl Places {
    fn new(duplicate_radius_m: f64, window: std::time::Duration, seed: u64) -> Places {
        let spacing = 2.0 * duplicate_radius_m;
        let lat = 39.6f64.to_radians();
        let slot = (seed % COSETS) as i64;
        Places {
            cell: (
                spacing / METRES_PER_DEGREE,
                spacing / (METRES_PER_DEGREE * lat.cos()),
            ),
            coset: (slot / 2, slot % 2),
            taken: Default::default(),
            generation_started: std::time::Instant::now(),
            generation: window,
            cursor: Default::default(),
            recent: Vec::with_capacity(RECENT),
            duplicate_radius_m,
        }
    }

    /// A place no problem of `category` took in this run, as near `centre` as is free.
    fn new_problem(
        &mut self,
        grid: usize,
        category: usize,
        centre: (f64, f64),
        rng: &mut StdRng,
    ) -> (f64, f64) {
        // The sublattice's cell nearest the grid's centre.
        let home = |v: f64, size: f64, coset: i64| {
            let i = (v / size).round() as i64;
            i - (i - coset).rem_euclid(2)
        };
        let (i0, j0) = (
            home(centre.0, self.cell.0, self.coset.0),
            home(centre.1, self.cell.1, self.coset.1),
        );
        if self.generation_started.elapsed() >= self.generation {
            self.taken.swap(0, 1);
            self.taken[0].clear();
            self.generation_started = std::time::Instant::now();
        }
        let cursor = self.cursor.entry((grid, category)).or_default();
        let (i, j) = loop {
            let (di, dj) = spiral(*cursor);
            *cursor += 1;
            let key = (category, i0 + 2 * di, j0 + 2 * dj);
            if !self.taken[1].contains(&key) && self.taken[0].insert(key) {
                break (key.1, key.2);
            }
        };
        let place = (i as f64 * self.cell.0, j as f64 * self.cell.1);
        let entry = (grid, category, place.0, place.1);
        if self.recent.len() < RECENT {
            self.recent.push(entry);
        } else {
            let k = rng.random_range(0..RECENT);
            self.recent[k] = entry;
        }
        place
    }

    /// A recent problem's grid and category, and a place within a fifth of the duplicate radius
    /// of it; `None` before the first problem.
    fn duplicate(&self, rng: &mut StdRng) -> Option<(usize, usize, (f64, f64))> {
        if self.recent.is_empty() {
            return None;
        }
        let (grid, category, lat, lon) = self.recent[rng.random_range(0..self.recent.len())];
        let off = 0.2 * self.duplicate_radius_m / METRES_PER_DEGREE / 2f64.sqrt();
        Some((
            grid,
            category,
            (
                lat + rng.random_range(-off..off),
                lon + rng.random_range(-off..off) * self.cell.1 / self.cell.0,
            ),
        ))
    }
}

/// The `n`th cell of a square spiral around (0, 0): ring by ring, every cell once.
fn spiral(n: u64) -> (i64, i64) {
    if n == 0 {
        return (0, 0);
    }
    // Ring k holds the 8k cells after the (2k - 1)² of the rings inside it.
    let mut k = ((((n + 1) as f64).sqrt() - 1.0) / 2.0).ceil() as i64;
    while (2 * k - 1) * (2 * k - 1) > n as i64 {
        k -= 1;
    }
    while (2 * k + 1) * (2 * k + 1) <= n as i64 {
        k += 1;
    }
    let step = n as i64 - (2 * k - 1) * (2 * k - 1);
    let side = step / (2 * k);
    let along = step % (2 * k);
    match side {
        0 => (k, -k + 1 + along),
        1 => (k - 1 - along, k),
        2 => (-k, k - 1 - along),
        _ => (-k + 1 + along, -k),
    }
}

/// The mix of reports a city sends.
pub struct Feed {
    grids: Vec<OrgUnit>,
    /// (code, Chinese name, weight, an emergency class); every weight is positive.
    categories: Vec<(String, String, u32, bool)>,
    rng: StdRng,
    /// Report ids are `{prefix}-{n}`.
    prefix: String,
    sent: u64,
    mix: Mix,
    places: Places,
}

/// One report ready to publish.
pub struct Outgoing {
    pub report_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub json: bool,
    /// Built to be rejected.
    pub invalid: bool,
    /// Its outcome event names its report id (garbage bytes have none).
    pub traceable: bool,
    /// The grid and the grid worker filing it, the category code and the title, for printing.
    pub grid: AreaCode,
    pub reporter_id: String,
    pub category: String,
    pub title: String,
}

/// How often `whistle load` files each category: winter in Ordos, heating dominates.
fn load_weight(category: &Category) -> u32 {
    match category.code.as_str().split('.').next().unwrap_or_default() {
        "heating" => 8,
        "sanitation" | "municipal" | "noise" | "property" => 5,
        "disputes" | "water" | "power" | "public_order" => 3,
        _ => 2,
    }
}

impl Feed {
    /// `whistle load`'s feed. Report ids carry the seed and the start time: a second run with
    /// the same seed repeats the mix, but its reports are new ones, not duplicates JetStream
    /// would drop within its duplicate window (10 minutes).
    pub fn new(policy: &Policy, seed: u64, mix: Mix) -> Feed {
        Feed::weighted(
            policy,
            seed,
            format!(
                "load-{:x}-{:x}",
                seed & 0xff_ffff,
                chrono::Utc::now().timestamp_millis()
            ),
            load_weight,
        )
        .with_mix(mix)
    }

    /// Spreads the reports as `mix` says (the default is [`Mix::CITY`]).
    pub fn with_mix(mut self, mix: Mix) -> Feed {
        self.mix = mix;
        self
    }

    /// A feed whose categories are drawn by `weight` (0 leaves a category out; when every weight
    /// is 0, `whistle load`'s mix is used), with report ids `{prefix}-{n}`.
    pub(crate) fn weighted(
        policy: &Policy,
        seed: u64,
        prefix: String,
        weight: impl Fn(&Category) -> u32,
    ) -> Feed {
        let grids = whistle_domain::ordos::dataset()
            .units
            .into_iter()
            .filter(|u| u.level() == Level::Grid)
            .collect();
        let entry = |c: &Category, weight: u32| {
            (
                c.code.to_string(),
                c.name_zh.clone(),
                weight,
                c.sla == SlaClass::Emergency,
            )
        };
        let mut categories: Vec<_> = policy
            .categories()
            .filter_map(|c| match weight(c) {
                0 => None,
                w => Some(entry(c, w)),
            })
            .collect();
        if categories.is_empty() {
            categories = policy
                .categories()
                .map(|c| entry(c, load_weight(c)))
                .collect();
        }
        Feed {
            grids,
            categories,
            rng: StdRng::seed_from_u64(seed),
            prefix,
            sent: 0,
            mix: Mix::CITY,
            places: Places::new(
                f64::from(policy.duplicates().radius_m),
                policy
                    .duplicates()
                    .window
                    .to_std()
                    .unwrap_or(std::time::Duration::from_secs(86_400)),
                seed,
            ),
        }
    }

    /// The grid, the category (indices) and the place of the next report.
    fn place(&mut self) -> (usize, usize, (f64, f64)) {
        let grid = self.rng.random_range(0..self.grids.len());
        let total: u32 = self.categories.iter().map(|c| c.2).sum();
        let mut pick = self.rng.random_range(0..total);
        let category = self
            .categories
            .iter()
            .position(|c| {
                if pick < c.2 {
                    true
                } else {
                    pick -= c.2;
                    false
                }
            })
            .expect("weights cover the range");
        let centre = (self.grids[grid].lat, self.grids[grid].lon);
        match self.mix {
            Mix::Legacy => {
                let lat = centre.0 + self.rng.random_range(-0.001..0.001);
                let lon = centre.1 + self.rng.random_range(-0.001..0.001);
                (grid, category, (lat, lon))
            }
            Mix::City { duplicate_share } => {
                if self.rng.random_bool(duplicate_share.clamp(0.0, 1.0)) {
                    if let Some(duplicate) = self.places.duplicate(&mut self.rng) {
                        return duplicate;
                    }
                }
                let place = self
                    .places
                    .new_problem(grid, category, centre, &mut self.rng);
                (grid, category, place)
            }
        }
    }

    pub fn next(&mut self, invalid_share: f64) -> Outgoing {
        self.next_at(invalid_share, chrono::Utc::now())
    }

    /// The next report, filed at `now` (a benchmark's simulated time rather than the wall clock).
    pub fn next_at(&mut self, invalid_share: f64, now: chrono::DateTime<chrono::Utc>) -> Outgoing {
        self.sent += 1;
        let report_id = format!("{}-{}", self.prefix, self.sent);
        let (grid, category, (lat, lon)) = self.place();
        let grid = &self.grids[grid];
        let (category, name, _, emergency_class) = self.categories[category].clone();
        let grid_code = grid.code.clone();
        let reporter_id = format!("gw-{}", grid.code);
        let urgency = match self.rng.random_range(0..100) {
            _ if emergency_class => v1::Urgency::Emergency,
            0..2 => v1::Urgency::Emergency,
            2..17 => v1::Urgency::Urgent,
            _ => v1::Urgency::Normal,
        };
        let compound = grid.name.strip_suffix("小区").unwrap_or(&grid.name);
        let mut report = v1::Report {
            report_id: report_id.clone(),
            reporter_id: reporter_id.clone(),
            grid_code: grid.code.to_string(),
            category,
            urgency: urgency as i32,
            title: format!("{compound}小区居民反映{name}"),
            description: format!("网格员巡查发现：{}，涉及{}，请尽快处理。", name, grid.name),
            location: Some(v1::Location {
                lat,
                lon,
                address: grid.name.clone(),
            }),
            occurred_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis() - self.rng.random_range(0..3_600_000),
            )),
            reported_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis(),
            )),
            attachments: (0..self.rng.random_range(0..3))
                .map(|i| v1::Attachment {
                    uri: format!(
                        "https://oss.ordos.example/grid/{}/{report_id}-{i}.jpg",
                        grid.code
                    ),
                    media_type: "image/jpeg".into(),
                    size_bytes: self.rng.random_range(50_000..2_000_000),
                    caption: String::new(),
                })
                .collect(),
            contact_phone: String::new(),
            photo_ids: Vec::new(),
            channel: v1::Channel::Unspecified as i32,
            channel_ref: String::new(),
            cleared: false,
        };
        let mut subject = whistle_wire::subject::report(&grid.code);
        let invalid = self.rng.random_bool(invalid_share.clamp(0.0, 1.0));
        let mut garbage = None;
        if invalid {
            match self.rng.random_range(0..5) {
                0 => report.category = "weather.too_cold".into(),
                1 => report.reporter_id = "gw-150602999999999".into(),
                2 => {
                    report.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
                        now.timestamp_millis() + 86_400_000,
                    ))
                }
                3 => {
                    let unknown: AreaCode =
                        format!("{}999", grid.code.parent().expect("grid has a community"))
                            .parse()
                            .expect("valid");
                    report.grid_code = unknown.to_string();
                    subject = whistle_wire::subject::report(&unknown);
                }
                _ => garbage = Some(b"\xff\xfe not a protobuf report".to_vec()),
            }
        }
        let json = !invalid && self.rng.random_bool(0.1);
        let traceable = garbage.is_none();
        let (category, title) = (report.category.clone(), report.title.clone());
        let payload = match garbage {
            Some(bytes) => bytes,
            None if json => whistle_proto::to_json(&report)
                .expect("reports serialize")
                .into_bytes(),
            None => report.encode_to_vec(),
        };
        Outgoing {
            report_id,
            subject,
            payload,
            json,
            invalid,
            traceable,
            grid: grid_code,
            reporter_id,
            category,
            title,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spiral_visits_every_cell_once_ring_by_ring() {
        let cells: Vec<(i64, i64)> = (0..(41 * 41)).map(spiral).collect();
        let distinct: HashSet<_> = cells.iter().copied().collect();
        assert_eq!(distinct.len(), cells.len());
        // The first (2k + 1)² cells are exactly the square of radius k.
        assert!(cells.iter().all(|&(i, j)| i.abs() <= 20 && j.abs() <= 20));
        assert_eq!(
            cells[..9].iter().map(|c| c.0.abs().max(c.1.abs())).max(),
            Some(1)
        );
        assert_eq!(cells[9].0.abs().max(cells[9].1.abs()), 2);
    }

    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        let lat = 39.6f64.to_radians();
        let dy = (a.0 - b.0) * METRES_PER_DEGREE;
        let dx = (a.1 - b.1) * METRES_PER_DEGREE * lat.cos();
        (dx * dx + dy * dy).sqrt()
    }

    fn policy() -> Policy {
        whistle_wire::policy::load("ordos").unwrap()
    }

    /// Sends `n` reports and returns (category, place, title) of each valid one.
    fn sent(feed: &mut Feed, n: usize) -> Vec<(String, (f64, f64), String)> {
        (0..n)
            .map(|_| feed.next(0.0))
            .map(|out| {
                let report = if out.json {
                    whistle_proto::from_json::<v1::Report>(&out.payload).unwrap()
                } else {
                    v1::Report::decode(out.payload.as_slice()).unwrap()
                };
                let l = report.location.unwrap();
                (report.category, (l.lat, l.lon), report.grid_code)
            })
            .collect()
    }

    #[test]
    fn new_problems_never_fall_within_the_duplicate_radius_of_another() {
        let policy = policy();
        let radius = f64::from(policy.duplicates().radius_m);
        let mut feed = Feed::new(
            &policy,
            7,
            Mix::City {
                duplicate_share: 0.0,
            },
        );
        let reports = sent(&mut feed, 20_000);
        let mut by_category: std::collections::HashMap<&str, Vec<(f64, f64)>> = Default::default();
        for (category, place, _) in &reports {
            by_category.entry(category).or_default().push(*place);
        }
        for places in by_category.values() {
            for (k, a) in places.iter().enumerate() {
                for b in &places[k + 1..] {
                    assert!(metres(*a, *b) > radius, "{a:?} and {b:?}");
                }
            }
        }
    }

    #[test]
    fn runs_whose_seeds_differ_modulo_the_cosets_share_no_place() {
        let policy = policy();
        let radius = f64::from(policy.duplicates().radius_m);
        let plain = Mix::City {
            duplicate_share: 0.0,
        };
        let a = sent(&mut Feed::new(&policy, 8, plain), 3_000);
        let b = sent(&mut Feed::new(&policy, 9, plain), 3_000);
        for (category, place, _) in &a {
            for (other, there, _) in &b {
                assert!(category != other || metres(*place, *there) > radius);
            }
        }
    }

    #[test]
    fn the_duplicate_share_is_what_was_asked_and_each_is_near_a_problem_of_its_kind() {
        let policy = policy();
        let radius = f64::from(policy.duplicates().radius_m);
        let mut feed = Feed::new(
            &policy,
            11,
            Mix::City {
                duplicate_share: 0.3,
            },
        );
        let reports = sent(&mut feed, 5_000);
        let mut seen: Vec<&(String, (f64, f64), String)> = Vec::new();
        let mut duplicates = 0;
        for report in &reports {
            let (category, place, grid) = report;
            let near = seen
                .iter()
                .any(|(c, p, g)| c == category && g == grid && metres(*p, *place) <= radius);
            if near {
                duplicates += 1;
            }
            seen.push(report);
        }
        let share = duplicates as f64 / reports.len() as f64;
        assert!((0.27..0.33).contains(&share), "duplicate share {share}");
    }
}
