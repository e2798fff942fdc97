//! 未诉先办: the hotspots of the report history — places and category groups whose reports repeat
//! across months, grow, return after being closed, or come back with a season — ranked into the
//! month's candidate topics (每月一题). Pure: the caller reads the history and passes it in with
//! the month to propose for. The method and its parameters are in docs/proactive.md.
//!
//! A place is the finest the data has: a report's grid, and inside it a cluster of reports of the
//! same category group within `Params::radius_m` of the cluster's first report (a building, a
//! compound, a stretch of road). Reports without coordinates count with the grid's place that
//! holds most of its located reports of the group, or are the grid as a whole.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{AreaCode, Level};

pub mod sim;
#[cfg(test)]
mod tests;

/// Ordos keeps China Standard Time all year; months are counted in it.
fn ordos() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// A calendar month in Ordos time, counted from year 0 so that months subtract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Month(i32);

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        (1..=12)
            .contains(&month)
            .then(|| Month(year * 12 + month as i32 - 1))
    }

    /// The month `at` falls in, in Ordos time.
    pub fn of(at: DateTime<Utc>) -> Month {
        let local = at.with_timezone(&ordos());
        Month(local.year() * 12 + local.month0() as i32)
    }

    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// 1–12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    pub fn plus(self, months: i32) -> Month {
        Month(self.0 + months)
    }

    /// Months from `earlier` to `self`.
    pub fn since(self, earlier: Month) -> i32 {
        self.0 - earlier.0
    }

    /// The month's first instant (midnight of the 1st in Ordos).
    pub fn start(self) -> DateTime<Utc> {
        ordos()
            .with_ymd_and_hms(self.year(), self.month(), 1, 0, 0, 0)
            .single()
            .expect("a fixed offset has no gaps")
            .with_timezone(&Utc)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("month {0:?} is not YYYY-MM")]
pub struct InvalidMonth(pub String);

impl FromStr for Month {
    type Err = InvalidMonth;
    fn from_str(s: &str) -> Result<Month, InvalidMonth> {
        let bad = || InvalidMonth(s.to_owned());
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

/// One report of the history, with what the analysis needs of its incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub report_id: String,
    pub incident_id: String,
    /// When dispatch received it.
    pub at: DateTime<Utc>,
    /// The 15-digit grid.
    pub grid: AreaCode,
    /// The full category code, e.g. `heating.no_heat`; its group is the part before the dot.
    pub category: String,
    /// (lat, lon) of the incident, when the report carried coordinates.
    pub point: Option<(f64, f64)>,
    /// When the report's incident was opened (its first report) and closed, if it is.
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The category's first handling level in the policy.
    pub first_level: Level,
    /// The highest level the incident reached.
    pub level: Level,
}

impl Record {
    pub fn group(&self) -> &str {
        group_of(&self.category)
    }
}

/// A category's group: `heating.no_heat` → `heating`.
pub fn group_of(category: &str) -> &str {
    category
        .split_once('.')
        .map_or(category, |(group, _)| group)
}

/// The method's parameters; the defaults are the documented ones (docs/proactive.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Complete months before the proposal month that are read (two years see a season twice).
    pub lookback_months: u32,
    /// The recent part of the lookback that volume, repeats and returns are counted over.
    pub recent_months: u32,
    /// Reports of one place within this many metres of a cluster's first report are one place.
    pub radius_m: f64,
    /// Reports without coordinates count with the grid's largest place of their group when it
    /// holds at least this share of the group's located reports; else the grid is their place.
    pub unlocated_share: f64,
    /// Steady: at least this many recent months with a report…
    pub min_active_months: u32,
    /// …and at least this many recent reports…
    pub min_reports: u32,
    /// …and no single month holding more than this share of them (a one-off burst); the same
    /// share bars a burst from being returning (of the recent reports) or seasonal (of all).
    pub max_month_share: f64,
    /// Growing: the last 3 months' rate at least this many times the 9 before…
    pub min_growth: f64,
    /// …with at least this many reports in the last 3 months…
    pub min_growth_reports: u32,
    /// …spread over at least 3 of the last 4 months, none holding more than this share of them.
    pub max_growth_month_share: f64,
    /// Returning: an incident opened between `return_min_days` and `return_max_days` after the
    /// place's previous incident of the group closed came back; at least `min_returns` recently,
    /// with at least `min_reports` recent reports.
    pub return_min_days: i64,
    pub return_max_days: i64,
    pub min_returns: u32,
    /// Seasonal: at least `season_share` of the lookback's (at least `min_reports`) reports in a
    /// window of at most `season_max_months` calendar months, in at least 2 seasons with
    /// `season_min_reports` each.
    pub season_share: f64,
    pub season_max_months: u32,
    pub season_min_reports: u32,
    /// A seasonal topic is timely from this many months before its season until its end.
    pub season_lead_months: u32,
    /// How many topics a month's proposal lists.
    pub proposals: usize,
    /// How many incident ids a candidate's evidence names (newest first).
    pub evidence_incidents: usize,
    pub weights: Weights,
}

/// Points per unit of each term of the score (docs/proactive.md, "Score").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// × ln(1 + recent reports).
    pub volume: f64,
    /// × recent months with a report ÷ recent months.
    pub repeats: f64,
    /// × log₂ of the growth ratio, at most 3 doublings.
    pub growth: f64,
    /// × returns, at most 6.
    pub returns: f64,
    /// × ln(1 + recent incidents).
    pub reach: f64,
    /// Added to a seasonal topic whose season is near or on.
    pub season: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            lookback_months: 24,
            recent_months: 12,
            radius_m: 150.0,
            unlocated_share: 0.5,
            min_active_months: 4,
            min_reports: 6,
            max_month_share: 0.5,
            min_growth: 2.0,
            min_growth_reports: 5,
            max_growth_month_share: 0.7,
            return_min_days: 14,
            return_max_days: 120,
            min_returns: 3,
            season_share: 0.8,
            season_max_months: 6,
            season_min_reports: 3,
            season_lead_months: 2,
            proposals: 10,
            evidence_incidents: 50,
            weights: Weights {
                volume: 1.0,
                repeats: 3.0,
                growth: 1.0,
                returns: 0.5,
                reach: 0.5,
                season: 1.5,
            },
        }
    }
}

/// Why a place and group is a candidate; one candidate may be several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 常发: reports in many months, none dominating.
    Steady,
    /// 增长: the last three months well above the nine before.
    Growing,
    /// 复发: comes back after being closed.
    Returning,
    /// 季节性: the same calendar months each year (then not also Steady).
    Seasonal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Steady => "steady",
            Kind::Growing => "growing",
            Kind::Returning => "returning",
            Kind::Seasonal => "seasonal",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Kind::Steady => "常发",
            Kind::Growing => "增长",
            Kind::Returning => "复发",
            Kind::Seasonal => "季节性",
        }
    }
}

/// The calendar months a seasonal topic comes back in, `from` to `to` (wrapping over the new
/// year: 11 → 3 is November to March).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Season {
    pub from: u32,
    pub to: u32,
    /// Seasons of the lookback with at least `season_min_reports`.
    pub seasons: u32,
}

impl Season {
    fn months(self) -> u32 {
        (self.to + 12 - self.from) % 12 + 1
    }

    fn contains(self, calendar_month: u32) -> bool {
        (calendar_month + 12 - self.from) % 12 < self.months()
    }

    /// On, or starting within `lead` months of `month`.
    fn timely(self, month: Month, lead: u32) -> bool {
        (0..=lead).any(|ahead| self.contains(month.plus(ahead as i32).month()))
    }
}

/// One term of a candidate's score: its measured value and the points it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub name: String,
    pub value: f64,
    pub points: f64,
}

/// A candidate topic with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `{grid}/{group}` or `{grid}/{group}@{lat},{lon}` (the cluster's first report, 4 decimals):
    /// stable from one month's proposal to the next while the place keeps its first report.
    pub key: String,
    pub grid: AreaCode,
    /// The centre of the cluster's reports; none when the place is the grid as a whole.
    pub centre: Option<(f64, f64)>,
    pub group: String,
    /// Reports per category of the group over the lookback, most first.
    pub categories: Vec<(String, u32)>,
    /// Sorted.
    pub kinds: Vec<Kind>,
    pub season: Option<Season>,
    /// Reports per month over the whole lookback, oldest first, every month listed.
    pub months: Vec<(Month, u32)>,
    /// Over the recent months.
    pub recent_reports: u32,
    pub active_months: u32,
    pub incidents: u32,
    pub returns: u32,
    /// Rate of the last 3 months ÷ rate of the 9 before (each plus a quarter report a month).
    pub growth: f64,
    /// The lowest level able to solve it for good (docs/proactive.md).
    pub solvable_at: Level,
    pub score: f64,
    pub terms: Vec<Term>,
    /// The incidents behind it, newest first, at most `Params::evidence_incidents`.
    pub incident_ids: Vec<String>,
    /// The evidence in a sentence, for the screen.
    pub summary_zh: String,
}

/// A month's proposal: the ranked candidates of the complete months before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub month: Month,
    /// First and last month read.
    pub from: Month,
    pub to: Month,
    /// Reports read and places (series of one place and group) examined.
    pub reports: usize,
    pub places: usize,
    /// Every candidate, best first (`propose` keeps the first `Params::proposals`).
    pub candidates: Vec<Candidate>,
}

/// The month's candidate topics, at most `params.proposals`, best first.
pub fn propose(records: &[Record], month: Month, params: &Params) -> Proposal {
    let mut proposal = analyse(records, month, params);
    proposal.candidates.truncate(params.proposals);
    proposal
}

/// Every candidate of the lookback before `month`, best first.
pub fn analyse(records: &[Record], month: Month, params: &Params) -> Proposal {
    let lookback = params.lookback_months.max(1) as i32;
    let from = month.plus(-lookback);
    let to = month.plus(-1);
    let (start, end) = (from.start(), month.start());
    let mut in_window: Vec<&Record> = records
        .iter()
        .filter(|r| r.at >= start && r.at < end)
        .collect();
    // In time order, so that ties in clustering go the same way for the same history.
    in_window.sort_by(|a, b| (a.at, &a.report_id).cmp(&(b.at, &b.report_id)));

    // Hashed, then the series in key order: a city's million reports compared once each, not
    // once per level of a tree of strings.
    let mut by_series: HashMap<(&AreaCode, &str), Vec<&Record>> = HashMap::new();
    for record in &in_window {
        by_series
            .entry((&record.grid, record.group()))
            .or_default()
            .push(record);
    }
    let mut by_series: Vec<_> = by_series.into_iter().collect();
    by_series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut places = 0;
    let mut candidates = Vec::new();
    for ((grid, group), series) in by_series {
        for cluster in clusters(&series, params.radius_m, params.unlocated_share) {
            places += 1;
            if let Some(candidate) = examine(grid, group, &cluster, month, params) {
                candidates.push(candidate);
            }
        }
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.key.cmp(&b.key)));
    Proposal {
        month,
        from,
        to,
        reports: in_window.len(),
        places,
        candidates,
    }
}

/// A place's reports: the first report's point (none for the grid as a whole) and the reports.
struct Cluster<'a> {
    anchor: Option<(f64, f64)>,
    records: Vec<&'a Record>,
}

/// Densest first: the located report with the most others within `radius_m` anchors a place
/// holding them all; the rest are clustered again the same way. A dense spot is so taken whole
/// around its middle, where clustering in arrival order could cut it in two at the first report
/// of its edge. Ties go to the earlier report. Unlocated reports join the largest place when it
/// holds at least `unlocated_share` of the located ones — most likely theirs too —, else they
/// are the grid's own place.
fn clusters<'a>(series: &[&'a Record], radius_m: f64, unlocated_share: f64) -> Vec<Cluster<'a>> {
    let located: Vec<(&'a Record, (f64, f64))> = series
        .iter()
        .filter_map(|r| r.point.map(|p| (*r, p)))
        .collect();
    let points: Vec<(f64, f64)> = located.iter().map(|(_, p)| *p).collect();
    let neighbours = neighbours(&points, radius_m);
    // Neighbours not yet taken, each report counting itself.
    let mut density: Vec<usize> = neighbours.iter().map(Vec::len).collect();
    let mut taken = vec![false; located.len()];
    // The densest report not taken, ties to the earlier: a heap of (density, earlier first) with
    // an entry pushed on each change, the outdated ones skipped when they come up.
    let mut heap: BinaryHeap<(usize, Reverse<usize>)> = density
        .iter()
        .enumerate()
        .map(|(i, &d)| (d, Reverse(i)))
        .collect();
    let mut clusters = Vec::new();
    while let Some((d, Reverse(anchor))) = heap.pop() {
        if taken[anchor] || d != density[anchor] {
            continue;
        }
        let mut records = Vec::new();
        for &j in &neighbours[anchor] {
            if taken[j] {
                continue;
            }
            taken[j] = true;
            records.push(j);
            for &k in &neighbours[j] {
                density[k] -= 1;
                if !taken[k] {
                    heap.push((density[k], Reverse(k)));
                }
            }
        }
        records.sort_unstable();
        clusters.push(Cluster {
            anchor: Some(located[anchor].1),
            records: records.into_iter().map(|j| located[j].0).collect(),
        });
    }
    let unlocated: Vec<&'a Record> = series
        .iter()
        .copied()
        .filter(|r| r.point.is_none())
        .collect();
    if unlocated.is_empty() {
        return clusters;
    }
    // The first cluster is the densest, usually also the largest; the largest decides.
    let largest = clusters.iter_mut().enumerate().max_by(|a, b| {
        a.1.records
            .len()
            .cmp(&b.1.records.len())
            .then(b.0.cmp(&a.0))
    });
    match largest {
        Some((_, cluster))
            if cluster.records.len() as f64 >= unlocated_share * located.len() as f64 =>
        {
            cluster.records.extend(unlocated);
            cluster
                .records
                .sort_by(|a, b| (a.at, &a.report_id).cmp(&(b.at, &b.report_id)));
        }
        _ => clusters.push(Cluster {
            anchor: None,
            records: unlocated,
        }),
    }
    clusters
}

/// For each point, the points within `radius_m` of it (itself included), in index order. Only
/// points within the radius in latitude alone are measured: sorted by latitude, each point looks
/// at a band, not at the whole grid.
fn neighbours(points: &[(f64, f64)], radius_m: f64) -> Vec<Vec<usize>> {
    let mut by_lat: Vec<usize> = (0..points.len()).collect();
    by_lat.sort_unstable_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
    // `metres` is never less than the latitude's part of it; a margin keeps rounding out of it.
    let band = radius_m / 110_574.0 * (1.0 + 1e-9) + 1e-12;
    let mut neighbours = vec![Vec::new(); points.len()];
    for (at, &i) in by_lat.iter().enumerate() {
        let lat = points[i].0;
        for &j in by_lat[at..].iter() {
            if points[j].0 - lat > band {
                break;
            }
            if metres(points[i], points[j]) <= radius_m {
                neighbours[i].push(j);
                if j != i {
                    neighbours[j].push(i);
                }
            }
        }
    }
    for list in &mut neighbours {
        list.sort_unstable();
    }
    neighbours
}

/// Equirectangular distance: exact enough within a grid.
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let mean_lat = ((a.0 + b.0) / 2.0).to_radians();
    let dy = (a.0 - b.0) * 110_574.0;
    let dx = (a.1 - b.1) * 111_320.0 * mean_lat.cos();
    (dx * dx + dy * dy).sqrt()
}

/// Whether a place's reports make a candidate, and its score and evidence.
fn examine(
    grid: &AreaCode,
    group: &str,
    cluster: &Cluster<'_>,
    month: Month,
    params: &Params,
) -> Option<Candidate> {
    let lookback = params.lookback_months.max(1) as usize;
    let recent = (params.recent_months.max(1) as usize).min(lookback);
    let from = month.plus(-(lookback as i32));
    let recent_start = month.plus(-(recent as i32)).start();
    let mut counts = vec![0u32; lookback];
    for record in &cluster.records {
        counts[Month::of(record.at).since(from) as usize] += 1;
    }
    let total: u32 = counts.iter().sum();
    let recent_counts = &counts[lookback - recent..];
    let recent_reports: u32 = recent_counts.iter().sum();
    let active_months = recent_counts.iter().filter(|&&c| c > 0).count() as u32;
    let peak = recent_counts.iter().copied().max().unwrap_or(0);

    // A month holding most of the reports is a burst, whatever else came: neither steady, nor
    // returning, nor a season.
    let spread = f64::from(peak) <= params.max_month_share * f64::from(recent_reports);
    let steady =
        active_months >= params.min_active_months && recent_reports >= params.min_reports && spread;

    // Growth: the last 3 months against the (up to) 9 before them.
    let last3_start = lookback.saturating_sub(3);
    let last3: u32 = counts[last3_start..].iter().sum();
    let before_start = last3_start.saturating_sub(9);
    let before_len = last3_start - before_start;
    let before: u32 = counts[before_start..last3_start].iter().sum();
    let growth =
        (f64::from(last3) / 3.0 + 0.25) / (f64::from(before) / before_len.max(1) as f64 + 0.25);
    let last4 = &counts[lookback.saturating_sub(4)..];
    let last4_sum: u32 = last4.iter().sum();
    let growing = growth >= params.min_growth
        && last3 >= params.min_growth_reports
        && last4.iter().filter(|&&c| c > 0).count() >= 3
        && f64::from(last4.iter().copied().max().unwrap_or(0))
            <= params.max_growth_month_share * f64::from(last4_sum);

    // Incidents of the place in opening order, with when each closed.
    let mut incidents: BTreeMap<&str, Span> = BTreeMap::new();
    for record in &cluster.records {
        let span = incidents
            .entry(record.incident_id.as_str())
            .or_insert(Span {
                opened: record.opened_at,
                closed: record.closed_at,
                last_report: record.at,
            });
        span.last_report = span.last_report.max(record.at);
    }
    let mut opened: Vec<&Span> = incidents.values().collect();
    opened.sort_by_key(|span| (span.opened, span.closed));
    let (min_gap, max_gap) = (
        Duration::days(params.return_min_days),
        Duration::days(params.return_max_days),
    );
    let mut returns = 0u32;
    for (i, span) in opened.iter().enumerate() {
        if span.opened < recent_start {
            continue;
        }
        // The latest closing before this one opened.
        let last_closed = opened[..i]
            .iter()
            .filter_map(|earlier| earlier.closed)
            .filter(|closed| *closed <= span.opened)
            .max();
        if let Some(closed) = last_closed {
            let gap = span.opened - closed;
            if gap >= min_gap && gap <= max_gap {
                returns += 1;
            }
        }
    }
    let recent_incidents = opened.iter().filter(|s| s.opened >= recent_start).count() as u32;
    let returning = returns >= params.min_returns && recent_reports >= params.min_reports && spread;

    let lookback_peak = counts.iter().copied().max().unwrap_or(0);
    let season = if f64::from(lookback_peak) <= params.max_month_share * f64::from(total) {
        season(&counts, from, total, params)
    } else {
        None
    };

    let mut kinds = BTreeSet::new();
    if steady && season.is_none() {
        kinds.insert(Kind::Steady);
    }
    if growing {
        kinds.insert(Kind::Growing);
    }
    if returning {
        kinds.insert(Kind::Returning);
    }
    if season.is_some() {
        kinds.insert(Kind::Seasonal);
    }
    if kinds.is_empty() {
        return None;
    }

    let w = &params.weights;
    let doublings = if growing {
        growth.log2().clamp(0.0, 3.0)
    } else {
        0.0
    };
    let timely = season.is_some_and(|s| s.timely(month, params.season_lead_months));
    let terms = vec![
        term(
            "volume",
            f64::from(recent_reports),
            w.volume * f64::from(recent_reports).ln_1p(),
        ),
        term(
            "repeats",
            f64::from(active_months),
            w.repeats * f64::from(active_months) / recent as f64,
        ),
        term("growth", growth, w.growth * doublings),
        term(
            "returns",
            f64::from(returns),
            w.returns * f64::from(returns.min(6)),
        ),
        term(
            "reach",
            f64::from(recent_incidents),
            w.reach * f64::from(recent_incidents).ln_1p(),
        ),
        term(
            "season",
            if timely { 1.0 } else { 0.0 },
            if timely { w.season } else { 0.0 },
        ),
    ];
    let score = terms.iter().map(|t| t.points).sum::<f64>();

    let mut categories: BTreeMap<&str, u32> = BTreeMap::new();
    for record in &cluster.records {
        *categories.entry(record.category.as_str()).or_default() += 1;
    }
    let mut categories: Vec<(String, u32)> = categories
        .into_iter()
        .map(|(c, n)| (c.to_owned(), n))
        .collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let solvable_at = solvable_at(cluster, returns);
    let mut newest: Vec<(DateTime<Utc>, &str)> = incidents
        .iter()
        .map(|(id, span)| (span.last_report, *id))
        .collect();
    newest.sort_by(|a, b| b.cmp(a));
    let incident_ids = newest
        .into_iter()
        .take(params.evidence_incidents)
        .map(|(_, id)| id.to_owned())
        .collect();

    let centre = centre(cluster);
    let key = match cluster.anchor {
        Some((lat, lon)) => format!("{grid}/{group}@{lat:.4},{lon:.4}"),
        None => format!("{grid}/{group}"),
    };
    let months = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| (from.plus(i as i32), n))
        .collect();
    let kinds: Vec<Kind> = kinds.into_iter().collect();
    let summary_zh = summary_zh(
        &kinds,
        recent as u32,
        active_months,
        recent_reports,
        recent_incidents,
        growth,
        returns,
        season,
    );
    Some(Candidate {
        key,
        grid: grid.clone(),
        centre,
        group: group.to_owned(),
        categories,
        kinds,
        season,
        months,
        recent_reports,
        active_months,
        incidents: recent_incidents,
        returns,
        growth,
        solvable_at,
        score,
        terms,
        incident_ids,
        summary_zh,
    })
}

/// An incident of a place: when it opened and closed, and its place's last report on it.
struct Span {
    opened: DateTime<Utc>,
    closed: Option<DateTime<Utc>>,
    last_report: DateTime<Utc>,
}

fn term(name: &str, value: f64, points: f64) -> Term {
    Term {
        name: name.to_owned(),
        value,
        points,
    }
}

/// The smallest window of calendar months holding `season_share` of the reports, if the place
/// filled it in at least two seasons.
fn season(counts: &[u32], from: Month, total: u32, params: &Params) -> Option<Season> {
    if total < params.min_reports {
        return None;
    }
    for len in 1..=params.season_max_months.min(11) {
        let mut best: Option<(u32, Season)> = None;
        for start in 1..=12u32 {
            let window = Season {
                from: start,
                to: (start + len - 2) % 12 + 1,
                seasons: 0,
            };
            let mut inside = 0;
            // Reports per season: a season is named by the month it started in.
            let mut per_season: BTreeMap<i32, u32> = BTreeMap::new();
            for (i, &n) in counts.iter().enumerate() {
                let m = from.plus(i as i32);
                if n > 0 && window.contains(m.month()) {
                    inside += n;
                    let offset = (m.month() + 12 - start) % 12;
                    *per_season.entry(m.plus(-(offset as i32)).0).or_default() += n;
                }
            }
            if f64::from(inside) < params.season_share * f64::from(total) {
                continue;
            }
            let seasons = per_season
                .values()
                .filter(|&&n| n >= params.season_min_reports)
                .count() as u32;
            if seasons >= 2 && best.is_none_or(|(b, _)| inside > b) {
                best = Some((inside, Season { seasons, ..window }));
            }
        }
        if let Some((_, season)) = best {
            return Some(season);
        }
    }
    None
}

/// The category's first handling level, raised to the highest level its incidents reached, and
/// one more when it returned three times or more: the level below fixed it only for a while.
fn solvable_at(cluster: &Cluster<'_>, returns: u32) -> Level {
    let mut first: BTreeMap<Level, u32> = BTreeMap::new();
    for record in &cluster.records {
        *first.entry(record.first_level).or_default() += 1;
    }
    let usual = first
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
        .map_or(Level::Grid, |(level, _)| *level);
    let reached = cluster
        .records
        .iter()
        .map(|r| r.level)
        .max()
        .unwrap_or(Level::Grid);
    let level = usual.max(reached);
    if returns >= 3 {
        Level::ALL
            .iter()
            .copied()
            .find(|l| *l > level)
            .unwrap_or(Level::City)
    } else {
        level
    }
}

fn centre(cluster: &Cluster<'_>) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = cluster.records.iter().filter_map(|r| r.point).collect();
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    let (lat, lon) = points
        .iter()
        .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
    Some((round6(lat / n), round6(lon / n)))
}

fn round6(degrees: f64) -> f64 {
    (degrees * 1e6).round() / 1e6
}

#[allow(clippy::too_many_arguments)]
fn summary_zh(
    kinds: &[Kind],
    recent: u32,
    active: u32,
    reports: u32,
    incidents: u32,
    growth: f64,
    returns: u32,
    season: Option<Season>,
) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name_zh()).collect();
    let mut parts = vec![format!(
        "【{}】近{recent}个月有{active}个月上报，共{reports}件（{incidents}起事件）",
        names.join("、")
    )];
    if kinds.contains(&Kind::Growing) {
        parts.push(format!("近3个月上报为此前9个月的{growth:.1}倍"));
    }
    if returns > 0 {
        parts.push(format!("办结后复发{returns}次"));
    }
    if let Some(season) = season {
        parts.push(format!(
            "每年{}月至{}月集中发生（{}个季度）",
            season.from, season.to, season.seasons
        ));
    }
    parts.join("；")
}

/// A place as a candidate's key names it: `{grid}/{group}` (the grid as a whole) or
/// `{grid}/{group}@{lat},{lon}` (the report anchoring it).
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceKey {
    pub grid: AreaCode,
    pub group: String,
    pub anchor: Option<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a hotspot key ({{grid}}/{{group}} or {{grid}}/{{group}}@{{lat}},{{lon}})")]
pub struct InvalidKey(pub String);

impl FromStr for PlaceKey {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<PlaceKey, InvalidKey> {
        let bad = || InvalidKey(s.to_owned());
        let (grid, rest) = s.split_once('/').ok_or_else(bad)?;
        let grid: AreaCode = grid.parse().map_err(|_| bad())?;
        if grid.level() != Level::Grid {
            return Err(bad());
        }
        let (group, anchor) = match rest.split_once('@') {
            None => (rest, None),
            Some((group, point)) => {
                let (lat, lon) = point.split_once(',').ok_or_else(bad)?;
                let lat: f64 = lat.parse().map_err(|_| bad())?;
                let lon: f64 = lon.parse().map_err(|_| bad())?;
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(bad());
                }
                (group, Some((lat, lon)))
            }
        };
        let valid = !group.is_empty()
            && group
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(bad());
        }
        Ok(PlaceKey {
            grid,
            group: group.to_owned(),
            anchor,
        })
    }
}

/// Reports of one place and group in the whole months before and after a date (its own month
/// left out: the work began in it): the measure of a topic taken on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The months before, oldest first, and after, each with its reports.
    pub before: Vec<(Month, u32)>,
    pub after: Vec<(Month, u32)>,
}

impl Change {
    pub fn before_per_month(&self) -> f64 {
        mean(&self.before)
    }

    pub fn after_per_month(&self) -> f64 {
        mean(&self.after)
    }
}

fn mean(months: &[(Month, u32)]) -> f64 {
    let total: u32 = months.iter().map(|m| m.1).sum();
    f64::from(total) / months.len().max(1) as f64
}

/// The change in reports at `place` between the `months` whole months before `at`'s month and
/// the `months` after it. A located place counts the located reports of its grid and group
/// within `radius_m` of its anchor; the grid as a whole counts the reports without coordinates
/// (as the analysis made it of them).
pub fn change(
    records: &[Record],
    place: &PlaceKey,
    radius_m: f64,
    at: DateTime<Utc>,
    months: u32,
) -> Change {
    let month = Month::of(at);
    let months = months.max(1) as i32;
    let mut before: Vec<(Month, u32)> = (-months..0).map(|i| (month.plus(i), 0)).collect();
    let mut after: Vec<(Month, u32)> = (1..=months).map(|i| (month.plus(i), 0)).collect();
    for record in records {
        if record.grid != place.grid || record.group() != place.group {
            continue;
        }
        let here = match (place.anchor, record.point) {
            (Some(anchor), Some(point)) => metres(anchor, point) <= radius_m,
            (None, None) => true,
            _ => false,
        };
        if !here {
            continue;
        }
        let offset = Month::of(record.at).since(month);
        if (-months..0).contains(&offset) {
            before[(offset + months) as usize].1 += 1;
        } else if (1..=months).contains(&offset) {
            after[(offset - 1) as usize].1 += 1;
        }
    }
    Change { before, after }
}
