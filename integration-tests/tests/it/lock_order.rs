//! The order in which dispatch's transactions lock and write the tables around an incident, held
//! against the order recorded in `integration-tests/lock-order.txt` (docs/operations.md,
//! "Upgrades").
//!
//! During a rolling upgrade replicas of two versions write the same rows at once. If one version
//! takes two locks in the other order than the other — as intake's incident and cluster locks
//! once did (commit `443d8c0`) — PostgreSQL aborts one of two crossing transactions as a
//! deadlock. Such a change looks harmless in a diff, so this test makes it visible: dispatch runs
//! a day's kinds of work (a new incident, a duplicate joining it, escalations, a department
//! reporting in and resolving, deadlines firing) on a private PostgreSQL that logs every
//! statement; each transaction's lock-taking steps (row locks, inserts, updates, deletes,
//! advisory locks) are read back in order, and every order seen must be one recorded. A change
//! fails here, naming the new order; record it (`WHISTLE_BLESS_LOCK_ORDER=1`) only with the
//! upgrade rule it needs written in docs/operations.md.

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeDelta;
use whistle_proto::v1::{self, command::Body};
use whistle_testkit::{find_pg_bindir, PgCluster};

use crate::harness::*;

const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lock-order.txt");

#[tokio::test]
async fn every_transaction_of_dispatch_locks_in_a_recorded_order() {
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("lock-order").unwrap();
    // `%v`: the transaction's virtual id, one per transaction from its first statement on.
    let pg = PgCluster::start_with(
        &bindir,
        work.path(),
        &[
            ("log_statement", "'all'"),
            ("log_line_prefix", "'%v|%u|'"),
            ("logging_collector", "off"),
        ],
    )
    .await
    .unwrap();
    let mut stack = Stack::builder()
        .on_database_server(pg.url("postgres"))
        .at(ten_o_clock_in_ordos())
        .start()
        .await;

    let grid = &grids()[0];
    let incident = stack.whistled("lock-order-1", grid).await;
    assert_eq!(
        stack.report("lock-order-2", grid, "heating.no_heat").await,
        incident,
        "the second report joins the first as a duplicate"
    );
    let (task, department): (i32, String) = sqlx::query_as(
        "SELECT task_id, department_code FROM tasks WHERE incident_id = $1 ORDER BY task_id LIMIT 1",
    )
    .bind(incident)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    let liaison = format!("li-{department}");
    stack
        .ok(
            &liaison,
            incident,
            Body::Accept(v1::Accept {
                task_id: task.to_string(),
                note: String::new(),
            }),
        )
        .await;
    stack
        .ok(
            &liaison,
            incident,
            Body::Resolve(v1::Resolve {
                task_id: task.to_string(),
                note: "办结".into(),
                photo_ids: Vec::new(),
            }),
        )
        .await;
    // A device's detection opens an incident, and its repeat is folded into it (docs/devices.md):
    // intake keeps their readings in the same transaction.
    whistle_store::devices::register(
        stack.pool(),
        "lock-order-sensor",
        whistle_domain::devices::DeviceKind::Smoke,
        &grid.parse().unwrap(),
        "",
        chrono::Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    // Dispatch follows the registry on its notification (at once; the wait is a margin).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for n in 0..2 {
        let mut reading = stack.filed(
            &format!("lock-order-device-{n}"),
            grid,
            "fire.ebike_charging",
            v1::Urgency::Normal,
        );
        reading.reporter_id = "lock-order-sensor".into();
        reading.channel = v1::Channel::Device as i32;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            reading.report_id.as_str(),
        );
        stack
            .js()
            .publish_with_headers(
                whistle_wire::subject::device_reports(&grid.parse().unwrap()),
                headers,
                prost::Message::encode_to_vec(&reading).into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        stack.incident_of(&reading.report_id).await;
    }
    // The other departments' report-in deadlines pass: supervision (督办) fires.
    stack.advance(TimeDelta::minutes(31));
    stack.settle().await;
    stack.intake_drained().await;
    stack.stop_dispatch().await;

    let dispatch_role = user_of(&stack.db().dispatch_url);
    let log = std::fs::read_to_string(work.path().join("pg/postgres.log")).unwrap();
    let seen = orders(&log, &dispatch_role);
    assert!(
        seen.iter()
            .any(|order| order.starts_with("insert reports") || order.contains("→ insert reports")),
        "intake's transaction was read from the log: {seen:#?}"
    );

    if std::env::var_os("WHISTLE_BLESS_LOCK_ORDER").is_some() {
        let text: String = seen.iter().map(|order| format!("{order}\n")).collect();
        std::fs::write(RECORDED, format!("{HEADER}{text}")).unwrap();
        return;
    }
    let recorded: BTreeSet<String> = std::fs::read_to_string(RECORDED)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let new: Vec<&String> = seen.difference(&recorded).collect();
    assert!(
        new.is_empty(),
        "dispatch now locks in an order not recorded in integration-tests/lock-order.txt:\n{}\n\
         Replicas of the previous version still take the recorded orders during a rolling \
         upgrade; two crossing orders over the same rows can deadlock. If the change is meant, \
         write the upgrade rule in docs/operations.md (\"Upgrades\") and record it with \
         WHISTLE_BLESS_LOCK_ORDER=1.",
        new.iter()
            .map(|order| format!("  {order}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const HEADER: &str = "\
# The orders in which dispatch's transactions lock and write the rows around an incident, as
# lock_order::every_transaction_of_dispatch_locks_in_a_recorded_order reads them from PostgreSQL's
# statement log (one transaction a line, its steps in order). Regenerate with
# WHISTLE_BLESS_LOCK_ORDER=1 only with the upgrade rule a change needs in docs/operations.md.
";

/// The user name of a PostgreSQL URL.
fn user_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let credentials = after_scheme.split_once('@').map_or("", |(c, _)| c);
    credentials.split(':').next().unwrap_or_default().to_owned()
}

/// The lock orders of `user`'s transactions in a statement log of `%v|%u|` lines, each as its
/// steps joined by " → "; only transactions that lock or write `incidents` or `tasks`, the rows
/// every kind of work crosses.
fn orders(log: &str, user: &str) -> BTreeSet<String> {
    // Statements by transaction, a statement's continuation lines joined to it.
    let mut statements: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut finish = |current: Option<(String, String)>| {
        if let Some((vxid, sql)) = current {
            statements.entry(vxid).or_default().push(sql);
        }
    };
    for line in log.lines() {
        let mut parts = line.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(vxid), Some(who), Some(rest)) if vxid.contains('/') => {
                finish(current.take());
                let sql = rest.strip_prefix("LOG:  statement: ").or_else(|| {
                    rest.strip_prefix("LOG:  execute ")
                        .and_then(|r| r.split_once(": ").map(|(_, sql)| sql))
                });
                if let (true, Some(sql)) = (who == user, sql) {
                    current = Some((vxid.to_owned(), sql.to_owned()));
                }
            }
            _ => {
                if let Some((_, sql)) = current.as_mut() {
                    sql.push('\n');
                    sql.push_str(line);
                }
            }
        }
    }
    finish(current.take());

    statements
        .values()
        .filter_map(|sqls| {
            let mut steps: Vec<String> = Vec::new();
            for step in sqls.iter().flat_map(|sql| steps_of(sql)) {
                if !steps.contains(&step) {
                    steps.push(step);
                }
            }
            steps
                .iter()
                .any(|s| s.ends_with(" incidents") || s.ends_with(" tasks"))
                .then(|| steps.join(" → "))
        })
        .collect()
}

/// The lock-taking steps of one statement in the order written: `lock T` (a `FOR UPDATE`, `FOR
/// NO KEY UPDATE`, `FOR SHARE` or `FOR KEY SHARE` row lock, on the table of its own `SELECT`),
/// `insert T`, `update T`, `delete T`, `lock table T`, `advisory lock`.
fn steps_of(sql: &str) -> Vec<String> {
    // Words, with each parenthesis a token of its own: a row lock belongs to the SELECT at its
    // own depth, not to a subquery's FROM before it.
    let spaced = sql.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced
        .split(|c: char| c.is_whitespace() || ",;".contains(c))
        .filter(|t| !t.is_empty())
        .collect();
    let word = |i: usize| tokens.get(i).copied().unwrap_or("");
    let is_name = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let mut aliases: BTreeMap<&str, &str> = BTreeMap::new();
    let mut from_at_depth: Vec<&str> = vec![""];
    let mut steps = Vec::new();
    for i in 0..tokens.len() {
        let upper = word(i).to_ascii_uppercase();
        let before = word(i.wrapping_sub(1)).to_ascii_uppercase();
        match upper.as_str() {
            "(" => from_at_depth.push(""),
            ")" if from_at_depth.len() > 1 => {
                from_at_depth.pop();
            }
            "FROM" | "JOIN" if is_name(word(i + 1)) => {
                let table = word(i + 1);
                *from_at_depth.last_mut().expect("depth 0 is never popped") = table;
                if is_name(word(i + 2)) {
                    aliases.insert(word(i + 2), table);
                }
            }
            "INSERT" if word(i + 1).eq_ignore_ascii_case("INTO") => {
                steps.push(format!("insert {}", word(i + 2)));
            }
            "UPDATE" | "SHARE" if before == "FOR" || before == "KEY" => {
                let table = if word(i + 1).eq_ignore_ascii_case("OF") {
                    aliases.get(word(i + 2)).copied().unwrap_or(word(i + 2))
                } else {
                    from_at_depth.last().copied().unwrap_or_default()
                };
                steps.push(format!("lock {table}"));
            }
            // `ON CONFLICT … DO UPDATE` is the insert's.
            "UPDATE" if before != "DO" => steps.push(format!("update {}", word(i + 1))),
            "DELETE" if word(i + 1).eq_ignore_ascii_case("FROM") => {
                steps.push(format!("delete {}", word(i + 2)));
            }
            "LOCK" if word(i + 1).eq_ignore_ascii_case("TABLE") => {
                steps.push(format!("lock table {}", word(i + 2)));
            }
            "PG_ADVISORY_XACT_LOCK" | "PG_TRY_ADVISORY_XACT_LOCK" => {
                steps.push("advisory lock".to_owned());
            }
            _ => {}
        }
    }
    steps
}

#[test]
fn the_steps_of_a_statement_are_read_in_order() {
    assert_eq!(
        steps_of(
            "WITH locked AS (SELECT id FROM incidents WHERE id = ANY($1) ORDER BY id FOR UPDATE)
             UPDATE incidents i SET report_count = 1 FROM locked WHERE i.id = locked.id"
        ),
        ["lock incidents", "update incidents"]
    );
    assert_eq!(
        steps_of(
            "SELECT 1 FROM people p JOIN tasks t ON t.holder_id = p.id WHERE p.id = $1
             FOR UPDATE OF p"
        ),
        ["lock people"]
    );
    assert_eq!(
        steps_of(
            "INSERT INTO timers (incident_id, key, due_at) VALUES ($1, $2, $3)
             ON CONFLICT (incident_id, key) DO UPDATE SET due_at = EXCLUDED.due_at"
        ),
        ["insert timers"]
    );
    assert_eq!(
        steps_of("SELECT pg_advisory_xact_lock(hashtext('whistle.policy_versions'))"),
        ["advisory lock"]
    );
    assert_eq!(
        steps_of(
            "WITH fence AS MATERIALIZED (SELECT epoch FROM intake_owner WHERE id = 1 FOR KEY SHARE),
                  locked AS MATERIALIZED (SELECT id FROM incidents
                      WHERE id = ANY($2) AND EXISTS (SELECT FROM fence) ORDER BY id FOR UPDATE)
             SELECT EXISTS (SELECT FROM fence)"
        ),
        ["lock intake_owner", "lock incidents"]
    );
    assert_eq!(
        steps_of("DELETE FROM timers WHERE incident_id = $1"),
        ["delete timers"]
    );
}

#[test]
fn a_log_is_read_as_each_transaction_s_order() {
    let log = "\
3/7|whistle_dispatch|LOG:  statement: BEGIN
3/7|whistle_dispatch|LOG:  execute sqlx_s_1: SELECT id FROM incidents WHERE id = $1
\t FOR UPDATE
3/7|whistle_dispatch|DETAIL:  parameters: $1 = 'x'
3/7|whistle_dispatch|LOG:  execute sqlx_s_2: INSERT INTO timeline (incident_id) VALUES ($1)
3/8|whistle_query|LOG:  execute sqlx_s_1: UPDATE incidents SET x = 1
4/2|whistle_dispatch|LOG:  execute <unnamed>: INSERT INTO outbox (event_id) VALUES ($1)
";
    assert_eq!(
        orders(log, "whistle_dispatch"),
        BTreeSet::from(["lock incidents → insert timeline".to_owned()])
    );
}
