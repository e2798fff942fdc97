//! `GetScoreboard`: the monthly ranking of departments or streets by the three rates (三率). The
//! service answers from the live aggregates' per-month rows (aggregates/board.rs); the SQL here,
//! over `tasks`, `incidents` and `timeline` in one read-only REPEATABLE READ snapshot, is the
//! definition they must equal, kept as [`recount`] for the tests and for operators.
//!
//! **The request.** `month` is `YYYY-MM`, a calendar month in Asia/Shanghai (UTC+8): `[the 1st
//! 00:00, the next 1st 00:00)`; empty means the month of the clock's now there. `kind` must be
//! `DEPARTMENTS` or `STREETS` (UNSPECIFIED is INVALID_ARGUMENT: the two boards rank different
//! things, so the caller says which). `area_code` empty means the city. The department board takes
//! the city or a district (departments serve a district or the whole city); the street board the
//! city, a district or a street. A smaller area is INVALID_ARGUMENT, a well-formed code that is
//! not in the org tree NOT_FOUND.
//!
//! **The rows.** Departments: every department whose area (its district, or the city for a city
//! department) is inside the requested area, judged on its own tasks. Streets: every org unit of
//! level street inside the area, judged on the incidents reported from its grids and their tasks.
//! Every row is listed, with zeros when nothing happened.
//!
//! **The rule for "in the month".** The month picks the items by the moment that puts them in a
//! denominator (a dispatch, a deadline, a follow-up, a resolution, a report); their outcome is the
//! one known now. A task dispatched at 23:50 on the last day and accepted at 00:05 counts in the
//! month it was dispatched in.
//!
//! **The three rates**, the same as `GetOverview`'s (overview.rs) with the month as the window:
//! - response: tasks dispatched in the month that reported in (报到) by `accept_due_at`, over tasks
//!   dispatched in the month (`accepted_in_time` / `dispatched`);
//! - resolution, departments: the department's live tasks (neither returned nor cancelled by a
//!   reassignment) whose `resolve_due_at` fell in the month, up to now, resolved by it
//!   (`resolved_in_time` / `due`); streets: the street's incidents (duplicates aside) whose SLA
//!   deadline `due_at` fell in the month, up to now, resolved (resolved, closed, closed unverified)
//!   by it (a reopen moves `due_at`, so a reopened incident counts in the month of its new
//!   deadline);
//! - satisfaction: incidents followed up (回访, an `incident.verified` entry) in the month, where
//!   the verdict of the latest follow-up in the month was satisfied or basically satisfied (the
//!   follow-up closed the incident rather than reopening it), over incidents followed up. Read from
//!   the timeline rather than `incidents.satisfaction`, so a later follow-up does not rewrite a
//!   past month. A department is judged on a follow-up when it resolved a task of the round that
//!   follow-up judged (the round is the number of `incident.reopened` entries before it).
//!
//! An empty denominator gives a rate of 0, with the counts shown.
//!
//! **The composite score** is on a 0–100 scale: 100 × (the `[weights]` of the policy the service
//! runs with × the three rates), 30 / 35 / 35 in Ordos, rounded to 1e-6 so that equal scores
//! reached by different sums tie. **Rank**: 1 is the best; rows with activity and a full sample come first, then rows
//! with activity whose sample (a department's tasks dispatched in the month, a street's incidents
//! reported in it) is below the policy's `[rankings] min_sample` (marked `small_sample`), then rows
//! without activity; within each, by composite score, highest first, then by code; every row has
//! its own rank.
//!
//! **Health signals** (ratios with the same empty-denominator rule):
//! - `return_rate` (退单率): tasks dispatched in the month that were returned (a `return_reason`,
//!   whether or not they were reassigned since), over tasks dispatched in the month;
//! - `dispute_rate` (派单异议率): tasks dispatched in the month that their department disputed
//!   (`tasks.disputed`: upheld, rejected or withdrawn alike — a department that disputes much
//!   shows here even when the street keeps the task with it), over tasks dispatched in the month;
//! - `redo_rate` (重办率): departments, tasks resolved in the month whose round the resident then
//!   found unsatisfying (the incident's `reopen_count` is above the task's round), over tasks
//!   resolved in the month; streets, incidents with an `incident.resolved` entry in the month that
//!   were reopened (`incident.reopened`) after the first such entry, over those incidents;
//! - `whistle_rate` (吹哨率): streets, incidents reported in the month (duplicates aside) that the
//!   street has whistled for (an `incident.whistled` entry), over incidents reported in the month;
//!   departments, tasks dispatched in the month by a whistle (an `incident.whistled` entry of the
//!   incident at the task's `dispatched_at`), over tasks dispatched in the month; the rest came by
//!   a reassignment (改派) after another department's return, or by a reopen (重办);
//! - `median_time_to_accept`: the median of `accepted_at - dispatched_at` over the tasks dispatched
//!   in the month that have reported in (the mean of the two middle values for an even count,
//!   `percentile_cont`); absent when none has.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use sqlx::{postgres::PgRow, PgConnection, PgPool, Row};
use whistle_domain::{
    incident::{Status, TaskStatus},
    policy::{LedgerRates, Scoring, Weights},
    AreaCode, Level,
};
use whistle_proto::v1;

use crate::{area, area::GridRange, convert, overview, overview::shanghai, Error, Result};

const WHISTLED: &str = "incident.whistled";
const RESOLVED: &str = "incident.resolved";
const VERIFIED: &str = "incident.verified";
const CLOSED: &str = "incident.closed";
const REOPENED: &str = "incident.reopened";
const EXTENDED: &str = "incident.extension_approved";
const LEDGERED: &str = "incident.ledger_approved";
const UNLEDGERED: &str = "incident.ledger_returned";

/// A calendar month in Asia/Shanghai as UTC instants `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Month {
    /// `YYYY-MM`.
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Month {
    /// `YYYY-MM`, or the month of `now` in Shanghai when empty.
    pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Month> {
        let invalid = || {
            Error::invalid(format!(
                "month: {text:?} is not a month; expected YYYY-MM, e.g. 2026-03"
            ))
        };
        let first = if text.is_empty() {
            now.with_timezone(&shanghai())
                .date_naive()
                .with_day(1)
                .expect("every month has a 1st")
        } else {
            first_day(text).ok_or_else(invalid)?
        };
        let next = first
            .checked_add_months(Months::new(1))
            .ok_or_else(invalid)?;
        Ok(Month {
            label: first.format("%Y-%m").to_string(),
            start: midnight(first),
            end: midnight(next),
        })
    }
}

/// The 1st of a `YYYY-MM` month: exactly four digits, a dash, two digits, a month from 01 to 12.
fn first_day(text: &str) -> Option<NaiveDate> {
    let (year, month) = text.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(year, 4) || !digits(month, 2) {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)
}

/// 00:00 of `day` in Shanghai, as a UTC instant.
fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(shanghai())
        .single()
        .expect("a fixed offset maps every local time once")
        .with_timezone(&Utc)
}

/// What is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Departments,
    Streets,
    /// The channels cases came in by (渠道), read by SQL only.
    Channels,
}

impl Kind {
    pub fn parse(value: i32) -> Result<Kind> {
        match v1::ScoreboardKind::try_from(value).ok() {
            Some(v1::ScoreboardKind::Departments) => Ok(Kind::Departments),
            Some(v1::ScoreboardKind::Streets) => Ok(Kind::Streets),
            Some(v1::ScoreboardKind::Channels) => Ok(Kind::Channels),
            Some(v1::ScoreboardKind::Unspecified) | None => Err(Error::invalid(format!(
                "kind: {value} is not a scoreboard kind; use SCOREBOARD_KIND_DEPARTMENTS, \
                 SCOREBOARD_KIND_STREETS or SCOREBOARD_KIND_CHANNELS"
            ))),
        }
    }

    fn to_proto(self) -> v1::ScoreboardKind {
        match self {
            Kind::Departments => v1::ScoreboardKind::Departments,
            Kind::Streets => v1::ScoreboardKind::Streets,
            Kind::Channels => v1::ScoreboardKind::Channels,
        }
    }
}

/// The channels of the channel board (`reports.channel`), with their names, and the proactive
/// cases (主动治理), which no report opened (`incidents.origin`).
pub(crate) const CHANNELS: [(&str, &str); 5] = [
    ("grid_worker", "网格员上报"),
    ("open311", "Open311 第三方应用"),
    ("hotline_12345", "12345 热线"),
    ("device", "感知设备"),
    ("proactive", "主动治理"),
];

/// A checked `GetScoreboardRequest`.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    area_code: String,
    pub area: Option<AreaCode>,
    pub month: Month,
    pub kind: Kind,
}

impl Query {
    pub fn parse(request: &v1::GetScoreboardRequest, now: DateTime<Utc>) -> Result<Query> {
        let kind = Kind::parse(request.kind)?;
        let area = area::parse_optional("area_code", &request.area_code)?;
        if let Some(area) = &area {
            check_scope(kind, area)?;
        }
        Ok(Query {
            area_code: request.area_code.clone(),
            area,
            month: Month::parse(&request.month, now)?,
            kind,
        })
    }
}

/// The department board takes the city or a district, the street board also a street: below
/// that, no department or street is inside the area. The channel board takes any area.
fn check_scope(kind: Kind, area: &AreaCode) -> Result<()> {
    let (lowest, takes) = match kind {
        Kind::Departments => (Level::District, "the city or a district"),
        Kind::Streets => (Level::Street, "the city, a district or a street"),
        Kind::Channels => return Ok(()),
    };
    if area.level() >= lowest {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "area_code: the {} scoreboard takes {takes}, not the {} {area}",
        match kind {
            Kind::Departments => "department",
            Kind::Streets => "street",
            Kind::Channels => "channel",
        },
        area.level().as_str()
    )))
}

/// What one row counts; the SQL or the live aggregates fill it, [`Tally::row`] turns it into
/// rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    pub dispatched: u64,
    pub accepted_in_time: u64,
    pub due: u64,
    pub resolved_in_time: u64,
    pub followed_up: u64,
    pub satisfied: u64,
    /// Of the dispatched tasks.
    pub returned: u64,
    /// Of the dispatched tasks: disputed by their department (派单异议), upheld or not.
    pub disputed: u64,
    /// The redo rate's denominator and numerator.
    pub resolved: u64,
    pub reopened: u64,
    /// The row's sample (departments: tasks dispatched; streets: incidents reported), the base of
    /// the whistle, extension and ledger figures, and of it: whistled, extended, ledgered.
    pub sample: u64,
    pub whistled: u64,
    pub extended: u64,
    pub ledgered: u64,
    pub median_accept_seconds: Option<f64>,
}

impl Tally {
    /// Anything to show: a row without activity ranks after every row with some.
    fn is_active(&self) -> bool {
        [
            self.dispatched,
            self.due,
            self.followed_up,
            self.resolved,
            self.sample,
        ]
        .iter()
        .any(|&n| n > 0)
    }

    /// Where the row ranks: full samples first, then small samples with activity, then rows
    /// without any.
    fn tier(&self, min_sample: u32) -> Tier {
        if !self.is_active() {
            Tier::Idle
        } else if self.sample < u64::from(min_sample) {
            Tier::Small
        } else {
            Tier::Full
        }
    }

    /// The row without its rank.
    fn row(&self, code: String, name: String, scoring: &Scoring) -> v1::ScoreboardRow {
        let weights = &scoring.weights;
        let rates = v1::Rates {
            response_rate: ratio(self.accepted_in_time, self.dispatched),
            resolution_rate: ratio(self.resolved_in_time, self.due),
            satisfaction_rate: ratio(self.satisfied, self.followed_up),
            dispatched: self.dispatched,
            accepted_in_time: self.accepted_in_time,
            due: self.due,
            resolved_in_time: self.resolved_in_time,
            followed_up: self.followed_up,
            satisfied: self.satisfied,
        };
        v1::ScoreboardRow {
            rank: 0,
            code,
            name,
            composite_score: composite(weights, &rates),
            rates: Some(rates),
            return_rate: ratio(self.returned, self.dispatched),
            dispute_rate: ratio(self.disputed, self.dispatched),
            redo_rate: ratio(self.reopened, self.resolved),
            whistle_rate: ratio(self.whistled, self.sample),
            extension_rate: ratio(self.extended, self.sample),
            ledgered: self.ledgered,
            median_time_to_accept: self.median_accept_seconds.map(|seconds| {
                // percentile_cont gives seconds as a double; whole microseconds are what
                // PostgreSQL stored.
                convert::duration(TimeDelta::microseconds((seconds * 1e6).round() as i64))
            }),
            sample: self.sample,
            small_sample: self.sample < u64::from(scoring.min_sample),
        }
    }
}

/// The three groups a board ranks one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// Activity and at least `min_sample`.
    Full,
    /// Activity, but fewer than `min_sample`: rates from a handful of cases.
    Small,
    /// Nothing happened.
    Idle,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// 0–100, rounded to 1e-6: 30 + 35 + 35 of full rates is 99.99999999999999 in floating point.
fn composite(weights: &Weights, rates: &v1::Rates) -> f64 {
    let score = 100.0
        * weights.composite(
            rates.response_rate,
            rates.resolution_rate,
            rates.satisfaction_rate,
        );
    (score * 1e6).round() / 1e6
}

/// Ranks rows: by tier (full sample, small sample, no activity), then by composite score (highest
/// first), then by code.
fn rank(mut rows: Vec<(Tier, v1::ScoreboardRow)>) -> Vec<v1::ScoreboardRow> {
    rows.sort_by(|(a_tier, a), (b_tier, b)| {
        a_tier
            .cmp(b_tier)
            .then(b.composite_score.total_cmp(&a.composite_score))
            .then_with(|| a.code.cmp(&b.code))
    });
    rows.into_iter()
        .zip(1..)
        .map(|((_, row), rank)| v1::ScoreboardRow { rank, ..row })
        .collect()
}

/// The final select of both boards: one row per board member with its counts from the CTEs
/// `dispatched`, `due`, `resolved` and `satisfaction`; the sample (`sample`) and the CTE that
/// counts what of it was whistled, extended and ledgered (`of`), and any further join, are the
/// board's own.
fn select_rows(sample: &str, of: &str, join: &str) -> String {
    format!(
        "SELECT b.code, b.name,
               coalesce(d.dispatched, 0) AS dispatched,
               coalesce(d.accepted_in_time, 0) AS accepted_in_time,
               coalesce(due.due, 0) AS due,
               coalesce(due.resolved_in_time, 0) AS resolved_in_time,
               coalesce(s.followed_up, 0) AS followed_up,
               coalesce(s.satisfied, 0) AS satisfied,
               coalesce(d.returned, 0) AS returned,
               coalesce(d.disputed, 0) AS disputed,
               coalesce(r.resolved, 0) AS resolved,
               coalesce(r.reopened, 0) AS reopened,
               coalesce({sample}, 0) AS sample,
               coalesce({of}.whistled, 0) AS whistled,
               coalesce({of}.extended, 0) AS extended,
               coalesce({of}.ledgered, 0) AS ledgered,
               d.median_accept
        FROM board b
             LEFT JOIN dispatched d ON d.code = b.code
             LEFT JOIN due ON due.code = b.code
             LEFT JOIN resolved r ON r.code = b.code
             LEFT JOIN satisfaction s ON s.code = b.code
             {join}"
    )
}

/// The latest follow-up in the month of each incident: its verdict (satisfied when the follow-up
/// closed the incident, the entry right after it in the same transition) and the task round it
/// judged. Binds the month as `$3` and `$4`.
fn follow_ups() -> String {
    format!(
        "follow_ups AS (
            SELECT DISTINCT ON (v.incident_id) v.incident_id,
                   EXISTS (SELECT 1 FROM timeline c WHERE c.incident_id = v.incident_id
                           AND c.seq = v.seq + 1 AND c.kind = '{CLOSED}') AS satisfied,
                   (SELECT count(*) FROM timeline r WHERE r.incident_id = v.incident_id
                    AND r.kind = '{REOPENED}' AND r.seq < v.seq) AS round
            FROM timeline v
            WHERE v.kind = '{VERIFIED}' AND v.at >= $3 AND v.at < $4
            ORDER BY v.incident_id, v.seq DESC
        )"
    )
}

/// The incidents whose round the long-term ledger (挂账) holds out of the resolution rate, with
/// that round: the latest entry in the ledger with no return to handling after it. Empty unless
/// the boolean parameter `excluded` (`$n`: the policy's `[ledger] rates` is `excluded`) is true.
pub(crate) fn shelved(excluded: &str) -> String {
    format!(
        "shelved AS (
            SELECT x.incident_id,
                   (SELECT count(*) FROM timeline r WHERE r.incident_id = x.incident_id
                    AND r.kind = '{REOPENED}' AND r.seq < x.seq) AS round
            FROM (SELECT DISTINCT ON (incident_id) incident_id, seq, kind FROM timeline
                  WHERE {excluded} AND kind IN ('{LEDGERED}', '{UNLEDGERED}')
                  ORDER BY incident_id, seq DESC) x
            WHERE x.kind = '{LEDGERED}'
        )"
    )
}

/// Whether the incident `incident` has a `kind` entry made in reopen round `round` at or after
/// `since`: an extension that moved the deadline of a task dispatched then, or the entry of its
/// case in the ledger.
fn marked_in_round(kind: &str, incident: &str, round: &str, since: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM timeline e WHERE e.incident_id = {incident} AND e.kind = '{kind}'
                 AND e.at >= {since}
                 AND (SELECT count(*) FROM timeline r WHERE r.incident_id = e.incident_id
                      AND r.kind = '{REOPENED}' AND r.seq < e.seq) = {round})"
    )
}

/// Response, return and time-to-accept columns over the tasks `t` dispatched in the month, grouped
/// by the caller.
const DISPATCHED_COLUMNS: &str = "count(*) AS dispatched,
           count(*) FILTER (WHERE t.accepted_at <= t.accept_due_at) AS accepted_in_time,
           count(*) FILTER (WHERE t.return_reason IS NOT NULL) AS returned,
           count(*) FILTER (WHERE t.disputed) AS disputed,
           percentile_cont(0.5) WITHIN GROUP
               (ORDER BY EXTRACT(EPOCH FROM t.accepted_at - t.dispatched_at)::float8) AS median_accept";

/// The department board. `$1`, `$2`: the area's range of codes (NULL: the city); `$3`, `$4`: the
/// month; `$5`: now. The stored names are the domain's, written into the text.
fn departments_sql() -> String {
    // A released assistant (免于协办) owes nothing, like a cancelled task: it is not due.
    let not_live = format!(
        "'{}', '{}', '{}'",
        TaskStatus::Returned.as_str(),
        TaskStatus::Cancelled.as_str(),
        TaskStatus::Released.as_str()
    );
    format!(
        "WITH board AS (
            SELECT code, name FROM departments
            WHERE $1::text IS NULL OR (area_code ~>=~ $1 AND area_code ~<~ $2)
        ),
        dispatched AS (
            SELECT t.department_code AS code, {DISPATCHED_COLUMNS},
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM timeline w WHERE w.incident_id = t.incident_id
                       AND w.kind = '{WHISTLED}' AND w.at = t.dispatched_at)) AS whistled,
                   count(*) FILTER (WHERE {extended}) AS extended,
                   count(*) FILTER (WHERE {ledgered}) AS ledgered
            FROM tasks t JOIN board b ON b.code = t.department_code
            WHERE t.dispatched_at >= $3 AND t.dispatched_at < $4
            GROUP BY t.department_code
        ),
        {shelved},
        due AS (
            SELECT t.department_code AS code, count(*) AS due,
                   count(*) FILTER (WHERE t.resolved_at <= t.resolve_due_at) AS resolved_in_time
            FROM tasks t JOIN board b ON b.code = t.department_code
            WHERE t.resolve_due_at >= $3 AND t.resolve_due_at < $4 AND t.resolve_due_at <= $5
              AND t.status NOT IN ({not_live})
              AND NOT EXISTS (SELECT 1 FROM shelved s
                              WHERE s.incident_id = t.incident_id AND s.round = t.round)
            GROUP BY t.department_code
        ),
        resolved AS (
            SELECT t.department_code AS code, count(*) AS resolved,
                   count(*) FILTER (WHERE i.reopen_count > t.round) AS reopened
            FROM tasks t JOIN board b ON b.code = t.department_code
                 JOIN incidents i ON i.id = t.incident_id
            WHERE t.resolved_at >= $3 AND t.resolved_at < $4
            GROUP BY t.department_code
        ),
        {follow_ups},
        satisfaction AS (
            SELECT t.department_code AS code, count(DISTINCT f.incident_id) AS followed_up,
                   count(DISTINCT f.incident_id) FILTER (WHERE f.satisfied) AS satisfied
            FROM follow_ups f
                 JOIN tasks t ON t.incident_id = f.incident_id AND t.round = f.round
                              AND t.resolved_at IS NOT NULL
                 JOIN board b ON b.code = t.department_code
            GROUP BY t.department_code
        )
        {select}",
        follow_ups = follow_ups(),
        shelved = shelved("$6"),
        extended = marked_in_round(EXTENDED, "t.incident_id", "t.round", "t.dispatched_at"),
        ledgered = marked_in_round(LEDGERED, "t.incident_id", "t.round", "t.dispatched_at"),
        select = select_rows("d.dispatched", "d", ""),
    )
}

/// The street board, with the same parameters as [`departments_sql`].
fn streets_sql() -> String {
    let street = Level::Street.as_str();
    incidents_board_sql(
        &format!(
            "SELECT code, name FROM org_units
            WHERE level = '{street}' AND ($1::text IS NULL OR (code ~>=~ $1 AND code ~<~ $2))"
        ),
        "i.street_code",
        "TRUE",
    )
}

/// The channel board, with the same parameters as [`departments_sql`]: the street board's
/// definitions with an incident's channel — its first report's, or `proactive` for a case
/// adopted without one — in place of its street.
fn channels_sql() -> String {
    let board = CHANNELS
        .iter()
        .map(|(code, name)| format!("('{code}', '{name}')"))
        .collect::<Vec<_>>()
        .join(", ");
    incidents_board_sql(
        &format!("SELECT * FROM (VALUES {board}) AS c(code, name)"),
        "coalesce((SELECT rc.channel FROM reports rc WHERE rc.incident_id = i.id
                   ORDER BY rc.received_at, rc.report_id LIMIT 1), i.origin)",
        "($1::text IS NULL OR (i.grid_code ~>=~ $1 AND i.grid_code ~<~ $2))",
    )
}

/// A board whose rows group incidents `i`: `board` lists the rows (code, name), `key` is the
/// row code of incident `i`, `scope` the condition on `i` of the area.
fn incidents_board_sql(board: &str, key: &str, scope: &str) -> String {
    let resolved_statuses = convert::resolved_statuses()
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let duplicate = Status::Duplicate.as_str();
    format!(
        "WITH board AS ({board}),
        dispatched AS (
            SELECT {key} AS code, {DISPATCHED_COLUMNS}
            FROM tasks t JOIN incidents i ON i.id = t.incident_id
                 JOIN board b ON b.code = {key}
            WHERE t.dispatched_at >= $3 AND t.dispatched_at < $4 AND {scope}
            GROUP BY 1
        ),
        {shelved},
        due AS (
            SELECT {key} AS code, count(*) AS due,
                   count(*) FILTER (WHERE i.status IN ({resolved_statuses})
                                    AND i.resolved_at <= i.due_at) AS resolved_in_time
            FROM incidents i JOIN board b ON b.code = {key}
            WHERE i.due_at >= $3 AND i.due_at < $4 AND i.due_at <= $5 AND i.status <> '{duplicate}'
              AND {scope}
              AND NOT EXISTS (SELECT 1 FROM shelved s
                              WHERE s.incident_id = i.id AND s.round = i.reopen_count)
            GROUP BY 1
        ),
        resolved AS (
            SELECT {key} AS code, count(*) AS resolved,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM timeline r WHERE r.incident_id = x.incident_id
                       AND r.kind = '{REOPENED}' AND r.seq > x.seq)) AS reopened
            FROM (SELECT incident_id, min(seq) AS seq FROM timeline
                  WHERE kind = '{RESOLVED}' AND at >= $3 AND at < $4
                  GROUP BY incident_id) x
                 JOIN incidents i ON i.id = x.incident_id
                 JOIN board b ON b.code = {key}
            WHERE {scope}
            GROUP BY 1
        ),
        {follow_ups},
        satisfaction AS (
            SELECT {key} AS code, count(*) AS followed_up,
                   count(*) FILTER (WHERE f.satisfied) AS satisfied
            FROM follow_ups f JOIN incidents i ON i.id = f.incident_id
                 JOIN board b ON b.code = {key}
            WHERE {scope}
            GROUP BY 1
        ),
        reported AS (
            SELECT {key} AS code, count(*) AS reported,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM timeline w WHERE w.incident_id = i.id
                       AND w.kind = '{WHISTLED}')) AS whistled,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM timeline e WHERE e.incident_id = i.id
                       AND e.kind = '{EXTENDED}')) AS extended,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM timeline e WHERE e.incident_id = i.id
                       AND e.kind = '{LEDGERED}')) AS ledgered
            FROM incidents i JOIN board b ON b.code = {key}
            WHERE i.created_at >= $3 AND i.created_at < $4 AND i.status <> '{duplicate}'
              AND {scope}
            GROUP BY 1
        )
        {select}",
        follow_ups = follow_ups(),
        shelved = shelved("$6"),
        select = select_rows(
            "rp.reported",
            "rp",
            "LEFT JOIN reported rp ON rp.code = b.code"
        ),
    )
}

fn count(row: &PgRow, column: &str) -> Result<u64> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

fn tally(row: &PgRow) -> Result<Tally> {
    Ok(Tally {
        dispatched: count(row, "dispatched")?,
        accepted_in_time: count(row, "accepted_in_time")?,
        due: count(row, "due")?,
        resolved_in_time: count(row, "resolved_in_time")?,
        followed_up: count(row, "followed_up")?,
        satisfied: count(row, "satisfied")?,
        returned: count(row, "returned")?,
        disputed: count(row, "disputed")?,
        resolved: count(row, "resolved")?,
        reopened: count(row, "reopened")?,
        sample: count(row, "sample")?,
        whistled: count(row, "whistled")?,
        extended: count(row, "extended")?,
        ledgered: count(row, "ledgered")?,
        median_accept_seconds: row.try_get("median_accept")?,
    })
}

/// The board of the query from each listed row's counts, scored and ranked, with the street
/// board's category mix (category code, incidents reported; in any order).
pub(crate) fn assemble(
    query: &Query,
    scoring: &Scoring,
    rows: impl Iterator<Item = (String, String, Tally)>,
    categories: Vec<(String, u64)>,
) -> v1::Scoreboard {
    let kind = query.kind;
    let rows = rows
        .map(|(code, name, tally)| {
            (
                tally.tier(scoring.min_sample),
                tally.row(code, name, scoring),
            )
        })
        .collect();
    v1::Scoreboard {
        area_code: query.area_code.clone(),
        month: query.month.label.clone(),
        kind: kind.to_proto() as i32,
        rows: rank(rows),
        min_sample: scoring.min_sample,
        categories: overview::counts(categories),
    }
}

/// `GetScoreboard` by SQL: the definition the live board must equal (the request as the service
/// takes it once the area is the caller's, `now` for the default month and "due by now").
pub async fn recount(
    pool: &PgPool,
    request: &v1::GetScoreboardRequest,
    scoring: &Scoring,
    now: DateTime<Utc>,
) -> Result<v1::Scoreboard> {
    read(pool, &Query::parse(request, now)?, scoring, now).await
}

/// The board of a checked query by SQL: the definition, and `GetScoreboard`'s answer for a
/// month older than the live aggregates keep.
pub(crate) async fn read(
    pool: &PgPool,
    query: &Query,
    scoring: &Scoring,
    now: DateTime<Utc>,
) -> Result<v1::Scoreboard> {
    let range = query.area.as_ref().map(GridRange::of);
    let low = range.as_ref().map(|r| r.low.clone());
    let high = range.as_ref().map(|r| r.high.clone());

    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let conn: &mut PgConnection = &mut tx;

    if let Some(area) = &query.area {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM org_units WHERE code = $1)")
                .bind(area.as_str())
                .fetch_one(&mut *conn)
                .await?;
        if !known {
            return Err(Error::not_found(format!("no org unit {area}")));
        }
    }
    let sql = match query.kind {
        Kind::Departments => departments_sql(),
        Kind::Streets => streets_sql(),
        Kind::Channels => channels_sql(),
    };
    let found = sqlx::query(&sql)
        .bind(&low)
        .bind(&high)
        .bind(query.month.start)
        .bind(query.month.end)
        .bind(now)
        .bind(scoring.ledger == LedgerRates::Excluded)
        .fetch_all(&mut *conn)
        .await?;
    let categories = match query.kind {
        Kind::Departments | Kind::Channels => Vec::new(),
        Kind::Streets => {
            let mix: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT i.category, count(*) FROM incidents i
                 JOIN org_units b ON b.code = i.street_code AND b.level = '{street}'
                 WHERE ($1::text IS NULL OR (i.street_code ~>=~ $1 AND i.street_code ~<~ $2))
                   AND i.created_at >= $3 AND i.created_at < $4 AND i.status <> '{duplicate}'
                 GROUP BY i.category",
                street = Level::Street.as_str(),
                duplicate = Status::Duplicate.as_str(),
            ))
            .bind(&low)
            .bind(&high)
            .bind(query.month.start)
            .bind(query.month.end)
            .fetch_all(&mut *conn)
            .await?;
            mix.into_iter()
                .map(|(code, n)| (code, u64::try_from(n).unwrap_or_default()))
                .collect()
        }
    };
    tx.commit().await?;

    let rows = found
        .iter()
        .map(|row| Ok((row.try_get("code")?, row.try_get("name")?, tally(row)?)))
        .collect::<Result<Vec<(String, String, Tally)>>>()?;
    Ok(assemble(query, scoring, rows.into_iter(), categories))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    fn ordos() -> Scoring {
        whistle_domain::policy::builtin("ordos").unwrap().scoring()
    }

    #[test]
    fn a_month_is_its_calendar_month_in_shanghai() {
        let now = at("2026-05-20T00:00:00Z");
        let march = Month::parse("2026-03", now).unwrap();
        assert_eq!(
            march,
            Month {
                label: "2026-03".into(),
                start: at("2026-02-28T16:00:00Z"),
                end: at("2026-03-31T16:00:00Z"),
            }
        );
        let december = Month::parse("2026-12", now).unwrap();
        assert_eq!(
            (december.start, december.end),
            (at("2026-11-30T16:00:00Z"), at("2026-12-31T16:00:00Z"))
        );
        let leap = Month::parse("2028-02", now).unwrap();
        assert_eq!(leap.end - leap.start, TimeDelta::days(29));
    }

    #[test]
    fn no_month_is_the_month_of_now_in_shanghai() {
        // 16:30 UTC on 31 March is already 00:30 on 1 April in Ordos.
        let april = Month::parse("", at("2026-03-31T16:30:00Z")).unwrap();
        assert_eq!(april.label, "2026-04");
        assert_eq!(april.start, at("2026-03-31T16:00:00Z"));
        let march = Month::parse("", at("2026-03-31T15:59:59Z")).unwrap();
        assert_eq!(march.label, "2026-03");
    }

    #[test]
    fn a_month_must_be_yyyy_mm() {
        let now = at("2026-05-20T00:00:00Z");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-3",
            "26-03",
            "2026/03",
            "2026-03-01",
            "202a-03",
            "-2026-03",
            "2026-+3",
            "２０２６-03",
            " 2026-03",
            "2026",
        ] {
            let error = Month::parse(bad, now).unwrap_err();
            let Error::InvalidArgument(message) = error else {
                panic!("{bad:?}: {error:?}")
            };
            assert!(
                message.starts_with("month: ") && message.contains("YYYY-MM"),
                "{message}"
            );
        }
    }

    #[test]
    fn kind_must_be_named_and_the_area_large_enough() {
        assert_eq!(Kind::parse(1).unwrap(), Kind::Departments);
        assert_eq!(Kind::parse(2).unwrap(), Kind::Streets);
        assert_eq!(Kind::parse(3).unwrap(), Kind::Channels);
        for bad in [0, 4, -1] {
            assert!(matches!(Kind::parse(bad), Err(Error::InvalidArgument(_))));
        }
        let area = |code: &str| code.parse::<AreaCode>().unwrap();
        for ok in ["150600", "150602"] {
            check_scope(Kind::Departments, &area(ok)).unwrap();
        }
        for ok in ["150600", "150602", "150602001"] {
            check_scope(Kind::Streets, &area(ok)).unwrap();
        }
        let Err(Error::InvalidArgument(message)) =
            check_scope(Kind::Departments, &area("150602001"))
        else {
            panic!("a street is too small for departments")
        };
        assert_eq!(
            message,
            "area_code: the department scoreboard takes the city or a district, not the street 150602001"
        );
        assert!(check_scope(Kind::Streets, &area("150602001001")).is_err());
        assert!(check_scope(Kind::Streets, &area("150602001001001")).is_err());
        for any in ["150600", "150602001001", "150602001001001"] {
            check_scope(Kind::Channels, &area(any)).unwrap();
        }
    }

    #[test]
    fn a_row_s_rates_signals_and_score() {
        let tally = Tally {
            dispatched: 4,
            accepted_in_time: 3,
            due: 2,
            resolved_in_time: 1,
            followed_up: 0,
            satisfied: 0,
            returned: 1,
            disputed: 2,
            resolved: 2,
            reopened: 1,
            sample: 4,
            whistled: 3,
            extended: 1,
            ledgered: 2,
            median_accept_seconds: Some(1650.0000004),
        };
        let row = tally.row("c".into(), "n".into(), &ordos());
        let rates = row.rates.unwrap();
        assert_eq!(
            (
                rates.response_rate,
                rates.resolution_rate,
                rates.satisfaction_rate
            ),
            (0.75, 0.5, 0.0)
        );
        // 30 × 0.75 + 35 × 0.5 + 35 × 0.
        assert_eq!(row.composite_score, 40.0);
        assert_eq!(
            (row.return_rate, row.redo_rate, row.whistle_rate),
            (0.25, 0.5, 0.75)
        );
        assert_eq!(row.dispute_rate, 0.5);
        assert_eq!((row.extension_rate, row.ledgered), (0.25, 2));
        let median = row.median_time_to_accept.unwrap();
        assert_eq!((median.seconds, median.nanos), (1650, 0));
        assert!(tally.is_active());

        let idle = Tally::default().row("c".into(), "n".into(), &ordos());
        assert_eq!(idle.composite_score, 0.0);
        assert_eq!(idle.median_time_to_accept, None);
        assert!(!Tally::default().is_active());
        // Reports alone are activity on the street board.
        assert!(Tally {
            sample: 1,
            ..Tally::default()
        }
        .is_active());
    }

    #[test]
    fn full_rates_score_exactly_100() {
        let full = Tally {
            dispatched: 3,
            accepted_in_time: 3,
            due: 7,
            resolved_in_time: 7,
            followed_up: 1,
            satisfied: 1,
            ..Tally::default()
        };
        assert_eq!(
            full.row("c".into(), "n".into(), &ordos()).composite_score,
            100.0
        );
    }

    #[test]
    fn a_small_sample_is_marked_below_the_policy_s_minimum() {
        let scoring = Scoring {
            min_sample: 20,
            ..ordos()
        };
        // 19 tasks dispatched to a department; 25 incidents reported in a street.
        let small = Tally {
            dispatched: 19,
            accepted_in_time: 19,
            sample: 19,
            ..Tally::default()
        };
        let department = small.row("d".into(), "n".into(), &scoring);
        assert_eq!((department.sample, department.small_sample), (19, true));
        assert_eq!(small.tier(20), Tier::Small);
        assert_eq!(small.tier(19), Tier::Full);
        let full = Tally {
            sample: 25,
            ..Tally::default()
        };
        let street = full.row("s".into(), "n".into(), &scoring);
        assert_eq!((street.sample, street.small_sample), (25, false));
        assert_eq!(full.tier(20), Tier::Full);
        assert_eq!(Tally::default().tier(1), Tier::Idle);
        assert!(
            Tally::default()
                .row("i".into(), "n".into(), &scoring)
                .small_sample
        );
    }

    #[test]
    fn ranks_put_full_samples_first_then_small_ones_then_idle_rows() {
        let row = |code: &str, score: f64| v1::ScoreboardRow {
            code: code.into(),
            composite_score: score,
            ..Default::default()
        };
        let ranked = rank(vec![
            (Tier::Idle, row("a-idle", 0.0)),
            (Tier::Full, row("d", 35.0)),
            (Tier::Full, row("c", 100.0)),
            (Tier::Small, row("small-100", 100.0)),
            (Tier::Full, row("zero", 0.0)),
            (Tier::Small, row("small-50", 50.0)),
            (Tier::Full, row("b", 35.0)),
            (Tier::Idle, row("0-idle", 0.0)),
            (Tier::Full, row("a", 100.0)),
        ]);
        let order: Vec<(u32, &str)> = ranked.iter().map(|r| (r.rank, r.code.as_str())).collect();
        assert_eq!(
            order,
            [
                (1, "a"),
                (2, "c"),
                (3, "b"),
                (4, "d"),
                (5, "zero"),
                (6, "small-100"),
                (7, "small-50"),
                (8, "0-idle"),
                (9, "a-idle")
            ]
        );
        assert!(rank(Vec::new()).is_empty());
    }
}
