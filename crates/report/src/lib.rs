//! The monthly assessment report (月度考核通报): an XLSX workbook with every department and street
//! of an area and a PDF with the charts put in front of the command centre's leaders.
//!
//! Every figure comes from the query service's `GetScoreboard` (docs/query.md), read through a
//! [`Source`]: the CLI's gRPC client with an operator's token (`whistle report monthly`), or the
//! query service itself for the console's download, with the caller's own authorization. This
//! crate computes nothing that the scoreboard defines; it only sums the street board's counts for
//! the area's totals (every incident of the area is reported from a grid of exactly one street,
//! so the sum is the area's) and turns them into rates with the scoreboard's rule (an empty
//! denominator gives 0).

mod charts;
pub mod evaluation;
mod font;
mod pdf;
mod xlsx;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Months, NaiveDate, Utc};
use whistle_proto::v1::{self, ScoreboardKind};

pub use font::{Font, FONT_ENV};
pub use pdf::pdf;
pub use xlsx::{xlsx, COLUMNS};

/// How many months the trend covers, the report's month last.
pub const TREND_MONTHS: u32 = 6;

/// What a report is made of, as read from the query service.
#[derive(Debug, Clone)]
pub struct Monthly {
    /// Empty for the city.
    pub area_code: String,
    pub area_name: String,
    /// `YYYY-MM`.
    pub month: String,
    pub generated_at: DateTime<Utc>,
    pub departments: v1::Scoreboard,
    pub streets: v1::Scoreboard,
    /// The same month by the channel cases came in by (渠道: grid workers, Open311, 12345).
    pub channels: v1::Scoreboard,
    /// The area's totals month by month, oldest first, the report's month last.
    pub trend: Vec<Totals>,
    /// The category mix (类别构成) of the month: the street board's `categories` with the
    /// catalogue's Chinese names, most first.
    pub categories: Vec<CategoryShare>,
}

/// Incidents of one category reported in the month.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryShare {
    pub code: String,
    /// The catalogue's Chinese name; the code for a category the running policy no longer has.
    pub name: String,
    pub count: u64,
}

/// An area's counts in a month: the street board's rows summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub month: String,
    pub rates: v1::Rates,
    /// Incidents reported in the month (duplicates aside): the street rows' samples summed.
    pub reported: u64,
}

impl Totals {
    /// The sum of `board`'s rows, with the rates recomputed from the summed counts.
    pub fn of(board: &v1::Scoreboard) -> Totals {
        let mut sum = v1::Rates::default();
        let mut reported = 0;
        for row in &board.rows {
            reported += row.sample;
            let Some(rates) = &row.rates else { continue };
            sum.dispatched += rates.dispatched;
            sum.accepted_in_time += rates.accepted_in_time;
            sum.due += rates.due;
            sum.resolved_in_time += rates.resolved_in_time;
            sum.followed_up += rates.followed_up;
            sum.satisfied += rates.satisfied;
        }
        sum.response_rate = ratio(sum.accepted_in_time, sum.dispatched);
        sum.resolution_rate = ratio(sum.resolved_in_time, sum.due);
        sum.satisfaction_rate = ratio(sum.satisfied, sum.followed_up);
        Totals {
            month: board.month.clone(),
            rates: sum,
            reported,
        }
    }
}

/// `numerator / denominator`, 0 for an empty denominator (the scoreboard's rule).
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Where the figures come from: the query service, with the caller's authorization.
#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait Source {
    async fn scoreboard(
        &mut self,
        request: v1::GetScoreboardRequest,
    ) -> Result<v1::Scoreboard, tonic::Status>;
    async fn org_tree(
        &mut self,
        request: v1::GetOrgTreeRequest,
    ) -> Result<v1::OrgNode, tonic::Status>;
    async fn catalogue(&mut self) -> Result<v1::Catalogue, tonic::Status>;
}

/// The CLI's client: the query service over gRPC with a bearer token.
pub type QueryClient = v1::command_center_client::CommandCenterClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        whistle_proto::Bearer,
    >,
>;

impl Source for QueryClient {
    async fn scoreboard(
        &mut self,
        request: v1::GetScoreboardRequest,
    ) -> Result<v1::Scoreboard, tonic::Status> {
        self.get_scoreboard(request).await.map(|r| r.into_inner())
    }

    async fn org_tree(
        &mut self,
        request: v1::GetOrgTreeRequest,
    ) -> Result<v1::OrgNode, tonic::Status> {
        self.get_org_tree(request).await.map(|r| r.into_inner())
    }

    async fn catalogue(&mut self) -> Result<v1::Catalogue, tonic::Status> {
        self.get_catalogue(v1::GetCatalogueRequest {})
            .await
            .map(|r| r.into_inner())
    }
}

/// A call the query service refused or failed, kept whole so that a caller can answer with its
/// code (the console's download answers HTTP 403 for PERMISSION_DENIED, and so on).
#[derive(Debug)]
pub struct Refused {
    pub rpc: String,
    pub status: tonic::Status,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at the query service: {} ({:?})",
            self.rpc,
            self.status.message(),
            self.status.code()
        )
    }
}

impl std::error::Error for Refused {}

fn refused(rpc: &str, status: tonic::Status) -> anyhow::Error {
    Refused {
        rpc: rpc.to_owned(),
        status,
    }
    .into()
}

/// Reads the month's boards of `area_code` (empty: the city; the department board needs the city
/// or a district) and the street boards of the [`TREND_MONTHS`] − 1 months before it. `month`
/// empty means the current month of the query service's clock.
pub async fn gather<S: Source>(
    source: &mut S,
    area_code: &str,
    month: &str,
    generated_at: DateTime<Utc>,
) -> anyhow::Result<Monthly> {
    let board = |kind: ScoreboardKind, month: &str| v1::GetScoreboardRequest {
        area_code: area_code.to_owned(),
        month: month.to_owned(),
        kind: kind as i32,
    };
    let streets = source
        .scoreboard(board(ScoreboardKind::Streets, month))
        .await
        .map_err(|s| refused("GetScoreboard (streets)", s))?;
    // The month the service settled on (the current one when none was asked for).
    let month = streets.month.clone();
    let departments = source
        .scoreboard(board(ScoreboardKind::Departments, &month))
        .await
        .map_err(|s| refused("GetScoreboard (departments)", s))?;
    let channels = source
        .scoreboard(board(ScoreboardKind::Channels, &month))
        .await
        .map_err(|s| refused("GetScoreboard (channels)", s))?;
    for (kind, other) in [("departments", &departments), ("channels", &channels)] {
        if other.month != month {
            bail!(
                "the query service answered month {} for {kind} and {month} for streets",
                other.month
            );
        }
    }
    let mut trend = Vec::new();
    for earlier in months_before(&month, TREND_MONTHS - 1)? {
        let board = source
            .scoreboard(board(ScoreboardKind::Streets, &earlier))
            .await
            .map_err(|s| refused(&format!("GetScoreboard (streets, {earlier})"), s))?;
        trend.push(Totals::of(&board));
    }
    trend.push(Totals::of(&streets));
    let catalogue = source
        .catalogue()
        .await
        .map_err(|s| refused("GetCatalogue", s))?;
    let names: std::collections::HashMap<&str, &str> = catalogue
        .groups
        .iter()
        .flat_map(|g| &g.categories)
        .map(|c| (c.code.as_str(), c.name_zh.as_str()))
        .collect();
    let categories = streets
        .categories
        .iter()
        .map(|c| CategoryShare {
            code: c.key.clone(),
            name: names
                .get(c.key.as_str())
                .unwrap_or(&c.key.as_str())
                .to_string(),
            count: c.count,
        })
        .collect();
    // An empty root is the city.
    let area_name = source
        .org_tree(v1::GetOrgTreeRequest {
            root_code: area_code.to_owned(),
            depth: 0,
        })
        .await
        .map_err(|s| refused("GetOrgTree", s))?
        .name;
    Ok(Monthly {
        area_code: area_code.to_owned(),
        area_name,
        month,
        generated_at,
        departments,
        streets,
        channels,
        trend,
        categories,
    })
}

/// The `count` months before `month` (`YYYY-MM`), oldest first.
fn months_before(month: &str, count: u32) -> anyhow::Result<Vec<String>> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .with_context(|| format!("month {month:?} from the query service"))?;
    (1..=count)
        .rev()
        .map(|back| {
            first
                .checked_sub_months(Months::new(back))
                .map(|d| d.format("%Y-%m").to_string())
                .context("a month before year 1")
        })
        .collect()
}

/// `2026-11` → `2026年11月`.
pub fn month_zh(month: &str) -> String {
    match month.split_once('-') {
        Some((year, m)) => format!("{year}年{}月", m.trim_start_matches('0')),
        None => month.to_owned(),
    }
}

/// The file name of a report, e.g. `whistle-monthly-150602-2026-11.xlsx` (`city` for the city).
pub fn file_name(report: &Monthly, extension: &str) -> String {
    let area = if report.area_code.is_empty() {
        "city"
    } else {
        &report.area_code
    };
    format!("whistle-monthly-{area}-{}.{extension}", report.month)
}

/// A small report for the unit tests of the workbook and the PDF.
#[cfg(test)]
pub(crate) fn sample() -> Monthly {
    let row = |rank, code: &str, name: &str, sample, small_sample, score| v1::ScoreboardRow {
        rank,
        code: code.into(),
        name: name.into(),
        sample,
        small_sample,
        composite_score: score,
        rates: Some(v1::Rates {
            dispatched: sample,
            accepted_in_time: sample / 2,
            response_rate: ratio(sample / 2, sample),
            due: sample,
            resolved_in_time: sample / 3,
            resolution_rate: ratio(sample / 3, sample),
            followed_up: 3,
            satisfied: 2,
            satisfaction_rate: 2.0 / 3.0,
        }),
        return_rate: 0.1,
        redo_rate: 1.0 / 7.0,
        whistle_rate: 0.25,
        dispute_rate: 0.05,
        extension_rate: 0.125,
        ledgered: sample / 10,
        median_time_to_accept: (sample > 0).then_some(prost_types::Duration {
            seconds: 754,
            nanos: 500_000_000,
        }),
    };
    let board = |kind: ScoreboardKind, rows| v1::Scoreboard {
        area_code: "150602".into(),
        month: "2026-11".into(),
        kind: kind as i32,
        rows,
        min_sample: 20,
        categories: Vec::new(),
    };
    let departments = board(
        ScoreboardKind::Departments,
        vec![
            row(1, "150602-heating", "东胜区供热管理中心", 40, false, 81.25),
            row(
                2,
                "150602-urban",
                "东胜区城市管理综合执法局",
                25,
                false,
                64.5,
            ),
            row(3, "150602-water", "东胜区水务局", 6, true, 90.0),
            row(4, "150602-gas", "东胜区燃气公司", 0, false, 0.0),
        ],
    );
    let streets = board(
        ScoreboardKind::Streets,
        vec![
            row(1, "150602001", "交通街道", 30, false, 77.7),
            row(2, "150602002", "公园街道", 12, true, 55.0),
        ],
    );
    let trend = vec![
        Totals {
            month: "2026-10".into(),
            rates: v1::Rates {
                response_rate: 0.7,
                resolution_rate: 0.6,
                satisfaction_rate: 0.9,
                ..Default::default()
            },
            reported: 35,
        },
        Totals::of(&streets),
    ];
    Monthly {
        area_code: "150602".into(),
        area_name: "东胜区".into(),
        month: "2026-11".into(),
        generated_at: DateTime::parse_from_rfc3339("2026-12-01T09:30:00+08:00")
            .unwrap()
            .to_utc(),
        departments,
        streets,
        channels: board(
            ScoreboardKind::Channels,
            vec![
                row(1, "grid_worker", "网格员上报", 36, false, 74.0),
                row(2, "hotline_12345", "12345 热线", 6, true, 61.5),
                row(3, "open311", "Open311 第三方应用", 0, false, 0.0),
            ],
        ),
        trend,
        categories: [
            ("heating.no_heat", "供暖不热", 18),
            ("city.littering", "乱扔垃圾", 9),
            ("roads.pothole", "道路坑洼", 4),
        ]
        .into_iter()
        .map(|(code, name, count)| CategoryShare {
            code: code.into(),
            name: name.into(),
            count,
        })
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_before_cross_the_new_year() {
        assert_eq!(
            months_before("2027-02", 3).unwrap(),
            ["2026-11", "2026-12", "2027-01"]
        );
        assert!(months_before("2027-02", 0).unwrap().is_empty());
        assert!(months_before("February", 1).is_err());
    }

    #[test]
    fn totals_sum_the_counts_and_recompute_the_rates() {
        let row = |dispatched, accepted, sample| v1::ScoreboardRow {
            sample,
            rates: Some(v1::Rates {
                dispatched,
                accepted_in_time: accepted,
                due: 4,
                resolved_in_time: 1,
                response_rate: 0.123, // ignored: recomputed from the sums
                ..Default::default()
            }),
            ..Default::default()
        };
        let board = v1::Scoreboard {
            month: "2026-11".into(),
            rows: vec![row(4, 3, 5), row(0, 0, 0), row(6, 1, 2)],
            ..Default::default()
        };
        let totals = Totals::of(&board);
        assert_eq!(totals.reported, 7);
        assert_eq!(totals.rates.dispatched, 10);
        assert_eq!(totals.rates.response_rate, 0.4);
        assert_eq!(totals.rates.resolution_rate, 0.25);
        assert_eq!(totals.rates.satisfaction_rate, 0.0, "nothing followed up");
    }

    #[test]
    fn months_in_chinese() {
        assert_eq!(month_zh("2026-11"), "2026年11月");
        assert_eq!(month_zh("2027-01"), "2027年1月");
    }
}
