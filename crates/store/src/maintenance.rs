//! Table statistics and dead rows on a server whose autovacuum is off.
//!
//! Every statement is planned per execution from the table statistics (see [`crate::connect`]);
//! with autovacuum off nothing refreshes them, and a plan chosen while `incidents` looked empty
//! keeps reading a whole category for each duplicate lookup. The outbox is written and deleted at
//! the intake rate, and its dead rows slow every claim until a vacuum. Dispatch therefore does
//! what autovacuum would, with its default thresholds, when — and only when — it is off.
//!
//! VACUUM and ANALYZE need the table's owner: run by another role PostgreSQL only warns and does
//! nothing. So only the tables the connected role owns (or is a member of the owner of) are
//! considered; with separate roles (`crate::roles`) dispatch owns none, and a server without
//! autovacuum needs this maintenance run as the owner.

use sqlx::PgPool;

use crate::Result;

/// Work on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Analyze(String),
    Vacuum(String),
}

/// A table's counters from `pg_stat_user_tables` and `pg_class`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TableStats {
    pub relname: String,
    pub n_live_tup: i64,
    pub n_dead_tup: i64,
    pub n_mod_since_analyze: i64,
    pub n_ins_since_vacuum: i64,
    /// Rows when last analysed or vacuumed (`pg_class.reltuples`; negative: never).
    pub reltuples: f64,
    /// Seconds since the last ANALYZE; `None`: never analysed.
    pub since_analyze: Option<f64>,
}

/// Statistics stay good enough for plans until a table doubles; re-analysing a large table at
/// every 10 % of changes (autovacuum's rule) would cost a second of the server's CPU each time.
const REANALYZE_AFTER_SECS: f64 = 600.0;

/// What is due on this table now: VACUUM with autovacuum's default rules (50 dead rows + 20 % of
/// the live ones, or 1,000 inserted rows + 20 % of the rows at the last vacuum: without it the
/// visibility map of an insert-only table such as the timeline is never set, and its index-only
/// scans read the heap for every row); ANALYZE with its rule (50 changes + 10 %), but only if the
/// table was never analysed, has more than doubled since, or was last analysed ten minutes ago.
pub fn needed(stats: &TableStats) -> Vec<Work> {
    let live = stats.n_live_tup.max(0) as f64;
    let mut work = Vec::new();
    let inserted = stats.n_ins_since_vacuum as f64 > 1000.0 + 0.2 * stats.reltuples.max(0.0);
    if stats.n_dead_tup as f64 > 50.0 + 0.2 * live || inserted {
        work.push(Work::Vacuum(stats.relname.clone()));
    }
    let changed = stats.n_mod_since_analyze as f64 > 50.0 + 0.1 * live;
    let stale = match stats.since_analyze {
        None => true,
        Some(secs) => {
            secs >= REANALYZE_AFTER_SECS
                || stats.reltuples < 0.0
                || live > 2.0 * stats.reltuples + 50.0
        }
    };
    if changed && stale {
        work.push(Work::Analyze(stats.relname.clone()));
    }
    work
}

/// The work due on the current schema's tables that the current role may maintain; nothing when
/// the server runs autovacuum.
pub async fn due(pool: &PgPool) -> Result<Vec<Work>> {
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await?;
    if autovacuum == "on" {
        return Ok(Vec::new());
    }
    let tables: Vec<TableStats> = sqlx::query_as(
        "SELECT s.relname::text AS relname, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
                s.n_ins_since_vacuum,
                c.reltuples::float8 AS reltuples,
                extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS since_analyze
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.schemaname = current_schema() AND pg_has_role(c.relowner, 'MEMBER')
         ORDER BY s.relname",
    )
    .fetch_all(pool)
    .await?;
    Ok(tables.iter().flat_map(needed).collect())
}

/// True when the server's autovacuum is off and the current role may maintain none of the
/// current schema's tables: then nobody vacuums them unless the owner does.
pub async fn unattended(pool: &PgPool) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT current_setting('autovacuum') = 'off' AND NOT EXISTS (
             SELECT 1 FROM pg_class
             WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'
               AND pg_has_role(relowner, 'MEMBER'))",
    )
    .fetch_one(pool)
    .await?)
}

/// Runs one piece of work (outside any transaction, as VACUUM requires).
pub async fn perform(pool: &PgPool, work: &Work) -> Result<()> {
    let (verb, table) = match work {
        Work::Analyze(table) => ("ANALYZE", table),
        Work::Vacuum(table) => ("VACUUM", table),
    };
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    sqlx::raw_sql(&format!("{verb} {quoted}"))
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(live: i64, dead: i64, modified: i64) -> TableStats {
        TableStats {
            relname: "incidents".into(),
            n_live_tup: live,
            n_dead_tup: dead,
            n_mod_since_analyze: modified,
            n_ins_since_vacuum: 0,
            reltuples: -1.0,
            since_analyze: None,
        }
    }

    fn analyzed(mut stats: TableStats, rows: f64, secs_ago: f64) -> TableStats {
        stats.reltuples = rows;
        stats.since_analyze = Some(secs_ago);
        stats
    }

    fn kinds(work: Vec<Work>) -> Vec<&'static str> {
        work.iter()
            .map(|w| match w {
                Work::Analyze(_) => "analyze",
                Work::Vacuum(_) => "vacuum",
            })
            .collect()
    }

    #[test]
    fn a_table_never_analysed_is_analysed_after_autovacuums_threshold() {
        assert_eq!(kinds(needed(&stats(0, 0, 50))), Vec::<&str>::new());
        assert_eq!(kinds(needed(&stats(0, 0, 51))), ["analyze"]);
        assert_eq!(kinds(needed(&stats(1_000_000, 0, 100_051))), ["analyze"]);
        assert_eq!(
            kinds(needed(&stats(1_000_000, 0, 100_050))),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn an_analysed_table_is_analysed_again_when_it_doubled_or_after_ten_minutes() {
        // 150,000 changes (updates) on a table analysed at 1,000,000 rows a minute ago: not yet.
        let busy = analyzed(stats(1_000_000, 0, 150_000), 1_000_000.0, 60.0);
        assert_eq!(kinds(needed(&busy)), Vec::<&str>::new());
        let doubled = analyzed(stats(2_000_100, 0, 1_000_100), 1_000_000.0, 60.0);
        assert_eq!(kinds(needed(&doubled)), ["analyze"]);
        let later = analyzed(stats(1_000_000, 0, 150_000), 1_000_000.0, 600.0);
        assert_eq!(kinds(needed(&later)), ["analyze"]);
        // Ten minutes on, but nothing changed: nothing to do.
        let quiet = analyzed(stats(1_000_000, 0, 10), 1_000_000.0, 3_600.0);
        assert_eq!(kinds(needed(&quiet)), Vec::<&str>::new());
    }

    #[test]
    fn dead_rows_are_vacuumed_with_autovacuums_rule() {
        // A million rows: vacuum after 200,050 dead rows.
        let table = |dead| analyzed(stats(1_000_000, dead, 0), 1_000_000.0, 1.0);
        assert_eq!(kinds(needed(&table(200_050))), Vec::<&str>::new());
        assert_eq!(kinds(needed(&table(200_051))), ["vacuum"]);
        // The outbox: nearly nothing live, everything deleted.
        let outbox = analyzed(stats(10, 60_000, 60_010), 0.0, 5.0);
        assert_eq!(needed(&outbox), [Work::Vacuum("incidents".into())]);
    }

    #[test]
    fn an_insert_only_table_is_vacuumed_with_autovacuums_insert_rule() {
        // Vacuumed last at a million rows: again after 201,000 inserts.
        let table = |inserted| TableStats {
            n_ins_since_vacuum: inserted,
            ..analyzed(stats(1_000_000 + inserted, 0, 0), 1_000_000.0, 1.0)
        };
        assert_eq!(kinds(needed(&table(201_000))), Vec::<&str>::new());
        assert_eq!(kinds(needed(&table(201_001))), ["vacuum"]);
        // Never vacuumed nor analysed (reltuples -1): after 1,000.
        let new = |inserted| TableStats {
            n_ins_since_vacuum: inserted,
            ..stats(inserted, 0, inserted)
        };
        assert_eq!(kinds(needed(&new(1_000))), ["analyze"]);
        assert_eq!(kinds(needed(&new(1_001))), ["vacuum", "analyze"]);
    }
}
