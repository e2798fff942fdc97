//! `whistle audit`: the audit log of administration, newest first, searched by area, actor,
//! action, target and time. An admin command: it reads the database directly (operators search
//! their area's part through the query service, `ListAuditEntries`).

use anyhow::Context as _;
use chrono::{DateTime, Local, NaiveDate, TimeZone as _, Utc};
use whistle_store::audit::{self, Filter};

use crate::{connect_db, Connection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only entries inside this area (an org code); the installation's own entries
    /// (migrations, roles, keys) belong to no area and are left out then.
    #[arg(long)]
    pub area: Option<whistle_domain::AreaCode>,
    /// Only entries of this actor (as recorded: a name given with --actor, an OS user, a
    /// person id, a token id).
    #[arg(long)]
    pub by: Option<String>,
    /// Only this action (`token.create`) or family of actions (`token`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries about this target (a token id, a person id, an org code, an incident id).
    #[arg(long)]
    pub target: Option<String>,
    /// From this time on: RFC 3339 or a local date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Before this time: RFC 3339 or a local date (YYYY-MM-DD, its start).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Most entries.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// One JSON object a line, with the before and after in full.
    #[arg(long)]
    pub json: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("{s:?}: expected RFC 3339 (2026-12-06T08:00:00+08:00) or YYYY-MM-DD")
    })?;
    Local
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?}: no such local time"))
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let pool = connect_db(conn).await?;
    let rows = audit::list(
        &pool,
        &Filter {
            area_prefix: args.area.as_ref().map(|a| a.prefix().to_owned()),
            actor: args.by,
            action: args.action,
            target: args.target,
            since: args.since,
            until: args.until,
            before: None,
            limit: args.limit,
        },
    )
    .await
    .context("reading the audit log")?;
    for row in rows {
        if args.json {
            println!("{}", json(&row));
        } else {
            println!("{}", line(&row));
        }
    }
    Ok(())
}

fn json(row: &audit::Row) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "os_user": row.os_user,
        "db_role": row.db_role,
        "token_id": row.token_id,
        "door": row.door,
        "action": row.action,
        "target": row.target,
        "area_code": row.area_code,
        "before": row.before,
        "after": row.after,
    })
}

/// `2026-12-06 08:00:01  token.revoke   0193…  area 150602  by 王芳 (os alice, db whistle_owner) via cli`
/// and, indented, what changed.
fn line(row: &audit::Row) -> String {
    let mut by = row.actor.clone();
    let mut details = Vec::new();
    if let Some(os) = row.os_user.as_deref().filter(|os| *os != row.actor) {
        details.push(format!("os {os}"));
    }
    details.push(format!("db {}", row.db_role));
    if let Some(token) = row.token_id {
        details.push(format!("token {token}"));
    }
    by.push_str(&format!(" ({})", details.join(", ")));
    let area = if row.area_code.is_empty() {
        "installation".to_owned()
    } else {
        format!("area {}", row.area_code)
    };
    let mut text = format!(
        "{}  {:<15} {}  {area}  by {by} via {}",
        row.at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
        row.action,
        row.target,
        row.door
    );
    for (key, value) in changed(row.before.as_ref(), row.after.as_ref()) {
        text.push_str(&format!("\n    {key}: {value}"));
    }
    text
}

/// The fields that differ between before and after, `before → after` (all of after for a
/// creation).
fn changed(
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> Vec<(String, String)> {
    let empty = serde_json::Map::new();
    let before = before.and_then(|b| b.as_object()).unwrap_or(&empty);
    let after = after.and_then(|a| a.as_object()).unwrap_or(&empty);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (old, new) = (before.get(key), after.get(key));
            (old != new).then(|| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
                };
                let text = if old.is_none() {
                    show(new)
                } else {
                    format!("{} → {}", show(old), show(new))
                };
                (key.clone(), text)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_line_shows_only_what_changed() {
        let before = json!({ "deputy_id": null, "quiet_start": null, "label": "x" });
        let after = json!({ "deputy_id": "li-1", "quiet_start": "22:00", "label": "x" });
        assert_eq!(
            changed(Some(&before), Some(&after)),
            vec![
                ("deputy_id".to_owned(), "null → \"li-1\"".to_owned()),
                ("quiet_start".to_owned(), "null → \"22:00\"".to_owned()),
            ]
        );
        assert_eq!(
            changed(None, Some(&json!({ "role": "viewer" }))),
            vec![("role".to_owned(), "\"viewer\"".to_owned())]
        );
    }

    #[test]
    fn times_are_rfc_3339_or_local_dates() {
        assert_eq!(
            parse_time("2026-12-06T08:00:00+08:00").unwrap(),
            "2026-12-06T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_time("2026-12-06").is_ok());
        assert!(parse_time("yesterday").unwrap_err().contains("YYYY-MM-DD"));
    }
}
