//! `whistle bench timers`: how late the running dispatch fires deadlines, with many pending.
//!
//! The fill writes real incidents: each state is the domain's own `incident::open`, backdated so
//! that its first deadline falls where the benchmark wants it, and its `timers` rows are exactly
//! the timers that state needs (as intake writes them). The not-due incidents are opened at the
//! time of the fill, so their deadlines are the policy's windows away (an hour or more). The due
//! ones are filled last, with their first deadlines spread evenly over `--duration` from a few
//! seconds after the fill. Then the benchmark waits, and reads every firing back from the
//! timeline, where the engine records the timer key and deadline of each firing in `data`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use chrono::{DateTime, TimeDelta, Utc};
use hdrhistogram::Histogram;
use rand::Rng;
use uuid::Uuid;
use whistle_domain::{
    calendar::Calendar,
    incident::{self, Timer},
    policy::{Category, Policy},
    AreaCode, Level, Role,
};

use super::TimersArgs;
use crate::{connect_db, Connection};

/// How often the wait polls the `timers` table.
const POLL: Duration = Duration::from_millis(250);

/// A grid of the seeded org tree, with what an incident reported there needs.
struct Grid {
    code: AreaCode,
    reporter: String,
    lat: f64,
    lon: f64,
}

/// One timer that must fire inside the window: (incident, timer key, deadline in µs).
type Planned = (Uuid, String, i64);

pub async fn run(conn: &Connection, args: &TimersArgs) -> anyhow::Result<()> {
    if args.due > args.pending {
        bail!("--due {} is more than --pending {}", args.due, args.pending);
    }
    let pool = connect_db(conn).await?;
    let policy = whistle_wire::policy::load(&conn.policy)?;
    let calendar = Calendar::builtin();
    let grids = seeded_grids(&pool).await?;
    // Where each category's first deadline falls after the report, from the engine itself.
    let categories: Vec<(&Category, TimeDelta)> = policy
        .categories()
        .map(|category| {
            let at = micros(Utc::now());
            let (state, _) =
                incident::open(grids[0].code.clone(), category, &policy, &calendar, at);
            let first = state
                .timers()
                .into_values()
                .min()
                .expect("an open incident has timers");
            (category, first - at)
        })
        .collect();
    let shortest = categories
        .iter()
        .map(|(_, offset)| *offset)
        .min()
        .context("the policy has no categories")?;

    let mut fill = Fill {
        pool: &pool,
        policy: &policy,
        calendar: &calendar,
        grids: &grids,
        categories: &categories,
        batch: args.batch.max(1),
        written: 0,
        total: args.pending,
        started: Instant::now(),
    };
    let fill_started = Utc::now();
    let not_due = args.pending - args.due;
    while fill.written < not_due {
        let n = (not_due - fill.written).min(fill.batch as u64);
        fill.insert(n, |_| None).await?;
    }
    // The due deadlines are placed after the fill ends: its remaining time is estimated from the
    // rate so far (or a cautious 2,000/s), with half again as margin.
    let rate = if fill.written > 0 {
        fill.written as f64 / fill.started.elapsed().as_secs_f64()
    } else {
        2_000.0
    };
    let remaining_fill = Duration::from_secs_f64(1.5 * args.due as f64 / rate);
    let start = micros(
        args.start
            .unwrap_or_else(|| Utc::now() + remaining_fill + args.lead),
    );
    let window = TimeDelta::from_std(args.duration)?;
    let end = start + window;
    let earliest_other = fill_started + shortest;
    if earliest_other <= end + TimeDelta::from_std(args.grace)? {
        bail!(
            "the policy's shortest first deadline is {shortest}: the not-due incidents would come due at {earliest_other}, inside the measured window; use a policy with longer windows"
        );
    }
    let mut planned: Vec<Planned> = Vec::new();
    let due = args.due;
    let first_due = fill.written;
    while fill.written < args.pending {
        let n = (args.pending - fill.written).min(fill.batch as u64);
        let from = fill.written - first_due;
        let placed = fill
            .insert(n, |i| {
                let index = from + i;
                let spread = window.num_microseconds().unwrap_or(i64::MAX) as i128;
                let offset = spread * i128::from(index) / i128::from(due.max(1));
                Some(start + TimeDelta::microseconds(offset as i64))
            })
            .await?;
        planned.extend(
            placed
                .into_iter()
                .filter(|(_, _, due_at)| *due_at <= end.timestamp_micros()),
        );
    }
    eprintln!();
    let fill_seconds = fill.started.elapsed().as_secs_f64();
    sqlx::query("ANALYZE incidents, timers, timeline")
        .execute(&pool)
        .await?;
    let pending_timers: i64 = sqlx::query_scalar("SELECT count(*) FROM timers")
        .fetch_one(&pool)
        .await?;
    let late_start = (Utc::now() - start).num_milliseconds();
    if late_start > 0 {
        eprintln!("warning: the fill ended {late_start} ms after the first deadline");
    }
    eprintln!(
        "{} incidents in {fill_seconds:.1} s; {pending_timers} timers pending; {} due from {start} to {end}; waiting for dispatch to fire them",
        args.pending,
        planned.len(),
    );

    let settled = wait(&pool, start, end, args.grace).await?;
    let firings = read_firings(&pool, &planned).await?;
    let report = Report::new(&planned, &firings, start, end, settled);
    if args.json {
        let mut json = report.json();
        json["pending_incidents"] = args.pending.into();
        json["pending_timers"] = pending_timers.into();
        json["fill_seconds"] = fill_seconds.into();
        json["policy"] = policy.version().into();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{} incidents, {pending_timers} timers pending; {} deadlines from {start} over {:?}",
            args.pending,
            planned.len(),
            args.duration
        );
        print!("{}", report.render());
    }
    Ok(())
}

/// Grids of the seeded org tree that have a grid worker to report from them.
async fn seeded_grids(pool: &sqlx::PgPool) -> anyhow::Result<Vec<Grid>> {
    let org = whistle_store::org::load(pool).await?;
    let mut reporters: HashMap<&AreaCode, &str> = HashMap::new();
    for person in &org.people {
        if let Role::GridWorker { grid } = &person.role {
            reporters.entry(grid).or_insert(person.id.as_str());
        }
    }
    let grids: Vec<Grid> = org
        .units
        .iter()
        .filter(|unit| unit.level() == Level::Grid)
        .filter_map(|unit| {
            Some(Grid {
                code: unit.code.clone(),
                reporter: reporters.get(&unit.code)?.to_string(),
                lat: unit.lat,
                lon: unit.lon,
            })
        })
        .collect();
    if grids.is_empty() {
        bail!("the database has no grids with grid workers: run `whistle seed` first");
    }
    Ok(grids)
}

/// Truncated to the microsecond, PostgreSQL's precision, so that the state's deadlines and the
/// `timers` rows are equal to the last digit.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("a time in range")
}

struct Fill<'a> {
    pool: &'a sqlx::PgPool,
    policy: &'a Policy,
    calendar: &'a Calendar,
    grids: &'a [Grid],
    categories: &'a [(&'a Category, TimeDelta)],
    batch: usize,
    written: u64,
    total: u64,
    started: Instant,
}

impl Fill<'_> {
    /// Inserts `n` incidents with their timeline entry and timers. `first_deadline(i)` places
    /// the i-th one's first deadline; `None` opens it now. Returns the timers written.
    async fn insert(
        &mut self,
        n: u64,
        first_deadline: impl Fn(u64) -> Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<Planned>> {
        let mut rng = rand::rng();
        let now = micros(Utc::now());
        let mut rows = Rows::default();
        let mut timers: Vec<Planned> = Vec::new();
        for i in 0..n {
            let grid = &self.grids[rng.random_range(0..self.grids.len())];
            let (category, offset) = self.categories[rng.random_range(0..self.categories.len())];
            let reported_at = first_deadline(i).map_or(now, |at| at - offset);
            let (state, _) = incident::open(
                grid.code.clone(),
                category,
                self.policy,
                self.calendar,
                reported_at,
            );
            let id = Uuid::now_v7();
            for (timer, at) in state.timers() {
                timers.push((id, Timer::key(&timer), at.timestamp_micros()));
            }
            let area = |level| {
                grid.code
                    .at_level(level)
                    .expect("a grid has every level above it")
                    .to_string()
            };
            rows.id.push(id);
            rows.status.push(state.status.as_str());
            rows.level.push(state.level.as_str());
            rows.category.push(category.code.to_string());
            rows.title
                .push(format!("{}（定时器压测）", category.name_zh));
            rows.district.push(area(Level::District));
            rows.street.push(area(Level::Street));
            rows.community.push(area(Level::Community));
            rows.grid.push(grid.code.to_string());
            rows.lat.push(grid.lat);
            rows.lon.push(grid.lon);
            rows.reporter.push(grid.reporter.clone());
            rows.reported_at.push(reported_at);
            rows.due_at.push(state.resolve_due);
            rows.level_due_at.push(state.level_due);
            rows.state
                .push(serde_json::to_value(&state).context("serializing a state")?);
        }
        let (timer_ids, keys, due_at): (Vec<Uuid>, Vec<String>, Vec<DateTime<Utc>>) = timers
            .iter()
            .map(|(id, key, at)| {
                (
                    *id,
                    key.clone(),
                    DateTime::from_timestamp_micros(*at).expect("a time in range"),
                )
            })
            .fold(Default::default(), |mut acc, (id, key, at)| {
                acc.0.push(id);
                acc.1.push(key);
                acc.2.push(at);
                acc
            });
        // One statement: the incidents, their `incident.reported` entries and their timers (the
        // foreign keys are checked at the end of the statement, after every CTE ran).
        sqlx::query(
            "WITH new AS (
                SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::text[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::float8[],
                    $12::text[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::jsonb[])
                    AS t(id, status, level, category, title, district_code, street_code,
                         community_code, grid_code, lat, lon, reporter_id, reported_at, due_at,
                         level_due_at, state)
             ), incidents AS (
                INSERT INTO incidents (id, status, level, category, urgency, title, description,
                    district_code, street_code, community_code, grid_code, lat, lon, reporter_id,
                    policy_version, reported_at, created_at, updated_at, due_at, level_due_at, state)
                SELECT id, status, level, category, 'normal', title, 'whistle bench timers',
                    district_code, street_code, community_code, grid_code, lat, lon, reporter_id,
                    $17, reported_at, reported_at, reported_at, due_at, level_due_at, state
                FROM new
             ), reported AS (
                INSERT INTO timeline (incident_id, seq, kind, actor_id, at, note)
                SELECT id, 1, 'incident.reported', reporter_id, reported_at, 'whistle bench timers'
                FROM new
             )
             INSERT INTO timers (incident_id, key, due_at)
             SELECT * FROM UNNEST($18::uuid[], $19::text[], $20::timestamptz[])",
        )
        .bind(&rows.id)
        .bind(&rows.status)
        .bind(&rows.level)
        .bind(&rows.category)
        .bind(&rows.title)
        .bind(&rows.district)
        .bind(&rows.street)
        .bind(&rows.community)
        .bind(&rows.grid)
        .bind(&rows.lat)
        .bind(&rows.lon)
        .bind(&rows.reporter)
        .bind(&rows.reported_at)
        .bind(&rows.due_at)
        .bind(&rows.level_due_at)
        .bind(&rows.state)
        .bind(self.policy.version())
        .bind(&timer_ids)
        .bind(&keys)
        .bind(&due_at)
        .execute(self.pool)
        .await
        .context("inserting incidents with timers")?;
        self.written += n;
        eprint!(
            "\r{}/{} incidents ({:.0}/s)",
            self.written,
            self.total,
            self.written as f64 / self.started.elapsed().as_secs_f64()
        );
        Ok(timers)
    }
}

/// Column arrays of a batch of incidents.
#[derive(Default)]
struct Rows {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    level: Vec<&'static str>,
    category: Vec<String>,
    title: Vec<String>,
    district: Vec<String>,
    street: Vec<String>,
    community: Vec<String>,
    grid: Vec<String>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    reporter: Vec<String>,
    reported_at: Vec<DateTime<Utc>>,
    due_at: Vec<DateTime<Utc>>,
    level_due_at: Vec<Option<DateTime<Utc>>>,
    state: Vec<serde_json::Value>,
}

/// Waits until no timer of the window is left, or `grace` after its end; returns when the last
/// one was seen gone (to the poll's resolution), if they all went.
async fn wait(
    pool: &sqlx::PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    grace: Duration,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let give_up = end + TimeDelta::from_std(grace)?;
    let mut last_print = Instant::now();
    loop {
        // Firings reschedule at least a policy window ahead and the other incidents' deadlines
        // are later still (checked before the fill of the due ones), so what the window holds
        // is what has not fired yet.
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM timers WHERE due_at BETWEEN $1 AND $2")
                .bind(start)
                .bind(end)
                .fetch_one(pool)
                .await?;
        let now = Utc::now();
        if left == 0 && now >= end {
            eprintln!();
            return Ok(Some(now));
        }
        if now > give_up {
            eprintln!();
            return Ok(None);
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let to_start = (start - now).num_milliseconds() as f64 / 1000.0;
            eprint!(
                "\r{left} timers of the window not fired yet; first deadline in {to_start:.1} s   "
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every firing of the planned timers' incidents on the timeline: (incident, key, deadline µs)
/// → the distinct times it fired at.
async fn read_firings(
    pool: &sqlx::PgPool,
    planned: &[Planned],
) -> anyhow::Result<HashMap<Planned, Vec<DateTime<Utc>>>> {
    let mut ids: Vec<Uuid> = planned.iter().map(|(id, _, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT incident_id, data->>'timer', data->>'due_at', at FROM timeline
         WHERE incident_id = ANY($1) AND data ? 'timer'",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut firings: HashMap<Planned, Vec<DateTime<Utc>>> = HashMap::new();
    for (id, key, due_at, at) in rows {
        let due_at = DateTime::parse_from_rfc3339(&due_at)
            .with_context(|| format!("timeline due_at {due_at:?}"))?
            .timestamp_micros();
        // One transition writes one entry per event, all at the same time: one firing.
        let times = firings.entry((id, key, due_at)).or_default();
        if !times.contains(&at) {
            times.push(at);
        }
    }
    Ok(firings)
}

/// The figures of a run.
struct Report {
    planned: u64,
    fired: u64,
    within_1s: u64,
    not_fired: u64,
    fired_twice: u64,
    early: u64,
    /// Firings of these incidents' other timers (their later deadlines): none should happen.
    other_firings: u64,
    lag_us: Histogram<u64>,
    first_firing: Option<DateTime<Utc>>,
    last_firing: Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    all_gone_at: Option<DateTime<Utc>>,
}

impl Report {
    fn new(
        planned: &[Planned],
        firings: &HashMap<Planned, Vec<DateTime<Utc>>>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        all_gone_at: Option<DateTime<Utc>>,
    ) -> Report {
        let mut report = Report {
            planned: planned.len() as u64,
            fired: 0,
            within_1s: 0,
            not_fired: 0,
            fired_twice: 0,
            early: 0,
            other_firings: 0,
            lag_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            first_firing: None,
            last_firing: None,
            start,
            end,
            all_gone_at,
        };
        for timer in planned {
            let Some(times) = firings.get(timer) else {
                report.not_fired += 1;
                continue;
            };
            report.fired += 1;
            if times.len() > 1 {
                report.fired_twice += 1;
            }
            let first = *times.iter().min().expect("a firing has a time");
            let lag = first.timestamp_micros() - timer.2;
            if lag < 0 {
                report.early += 1;
            }
            if lag <= 1_000_000 {
                report.within_1s += 1;
            }
            report
                .lag_us
                .saturating_record(u64::try_from(lag).unwrap_or(0).max(1));
            report.first_firing = Some(report.first_firing.map_or(first, |f| f.min(first)));
            report.last_firing = Some(report.last_firing.map_or(first, |l| l.max(first)));
        }
        report.other_firings = firings.len() as u64 - report.fired;
        report
    }

    /// Timers fired per second from the first firing to the last.
    fn rate(&self) -> Option<f64> {
        let (first, last) = (self.first_firing?, self.last_firing?);
        let seconds = (last - first).num_microseconds()? as f64 / 1e6;
        (seconds > 0.0).then(|| self.fired as f64 / seconds)
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.lag_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn json(&self) -> serde_json::Value {
        let since_start = |at: Option<DateTime<Utc>>| {
            at.map(|at| (at - self.start).num_milliseconds() as f64 / 1000.0)
        };
        serde_json::json!({
            "window_start": self.start,
            "window_seconds": (self.end - self.start).num_milliseconds() as f64 / 1000.0,
            "due_timers": self.planned,
            "fired": self.fired,
            "fired_within_1s": self.within_1s,
            "not_fired": self.not_fired,
            "fired_more_than_once": self.fired_twice,
            "fired_early": self.early,
            "other_firings": self.other_firings,
            "lag_ms": {
                "p50": self.ms(0.5),
                "p90": self.ms(0.9),
                "p99": self.ms(0.99),
                "p99_9": self.ms(0.999),
                "max": self.lag_us.max() as f64 / 1000.0,
            },
            "first_firing_s": since_start(self.first_firing),
            "last_firing_s": since_start(self.last_firing),
            "all_fired_seen_s": since_start(self.all_gone_at),
            "firings_per_second": self.rate(),
        })
    }

    fn render(&self) -> String {
        let since_start = |at: Option<DateTime<Utc>>| {
            at.map_or("-".to_owned(), |at| {
                format!(
                    "{:.2} s",
                    (at - self.start).num_milliseconds() as f64 / 1000.0
                )
            })
        };
        format!(
            "due timers {}: fired {} (within 1 s of the deadline {}), not fired {}, fired more than once {}, early {}; other timers fired {}\n\
             lag fired − deadline, ms: p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}\n\
             first firing {} after the first deadline, last {}; all seen fired {}; {} firings/s from first to last\n",
            self.planned,
            self.fired,
            self.within_1s,
            self.not_fired,
            self.fired_twice,
            self.early,
            self.other_firings,
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.lag_us.max() as f64 / 1000.0,
            since_start(self.first_firing),
            since_start(self.last_firing),
            since_start(self.all_gone_at),
            self.rate().map_or("-".to_owned(), |r| format!("{r:.0}")),
        )
    }
}
