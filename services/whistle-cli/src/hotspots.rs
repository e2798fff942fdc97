//! `whistle hotspots`: 每月一题 — the month's candidate topics of an area (未诉先办), read through
//! the query service's `ListHotspots` with the person's token (docs/proactive.md).

use whistle_proto::v1;

use crate::{door, Connection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Area code; default the token's own area.
    #[arg(long, default_value = "")]
    area: String,
    /// The month to propose for, YYYY-MM (Ordos time); default the current month.
    #[arg(long, default_value = "")]
    month: String,
    /// How many topics, best first (at most 100); default the method's 10.
    #[arg(long, default_value_t = 0)]
    top: u32,
    /// Print the answer as proto3 JSON (every field, the evidence whole).
    #[arg(long)]
    json: bool,
    /// Instead of the list: the measure of the topic of this key (a hotspot's `key`) — its
    /// reports in the whole months before and after --since.
    #[arg(long, requires = "since")]
    change: Option<String>,
    /// When the work on the topic began: YYYY-MM-DD (Ordos) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Whole months on each side for --change (1–12).
    #[arg(long, default_value_t = 3)]
    months: u32,
}

/// `--since`: a date is its midnight in Ordos.
fn since(value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(at.to_utc());
    }
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("--since {value:?}: not YYYY-MM-DD nor an RFC 3339 time"))?;
    let ordos = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    Ok(date
        .and_time(chrono::NaiveTime::MIN)
        .and_local_timezone(ordos)
        .single()
        .expect("a fixed offset has no gaps")
        .to_utc())
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    if let Some(key) = args.change {
        let at = since(args.since.as_deref().unwrap_or_default())?;
        let change = conn
            .query()
            .await?
            .get_hotspot_change(v1::GetHotspotChangeRequest {
                key,
                since: Some(whistle_proto::timestamp_from_unix_millis(
                    at.timestamp_millis(),
                )),
                months: args.months,
            })
            .await
            .map_err(|status| door::grpc_error("GetHotspotChange", status))?
            .into_inner();
        print!("{}", render_change(&change));
        return Ok(());
    }
    let answer = conn
        .query()
        .await?
        .list_hotspots(v1::ListHotspotsRequest {
            area_code: args.area,
            month: args.month,
            page_size: args.top,
        })
        .await
        .map_err(|status| door::grpc_error("ListHotspots", status))?
        .into_inner();
    if args.json {
        println!("{}", whistle_proto::to_json(&answer)?);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

/// The proposal as an operator reads it: one block a topic, its evidence under it, its key (to
/// adopt it with `whistle adopt KEY …`) and the case adopted from it, if any.
pub fn render(answer: &v1::ListHotspotsResponse) -> String {
    let mut out = format!(
        "{} 每月一题 · 区域 {} · 依据 {} 至 {} 的 {} 件上报（{} 处地点·类别）\n",
        answer.month,
        answer.area_code,
        answer.from_month,
        answer.to_month,
        answer.reports,
        answer.places
    );
    if answer.hotspots.is_empty() {
        out.push_str("没有候选议题。\n");
    }
    for (rank, h) in answer.hotspots.iter().enumerate() {
        let place = if h.has_centre {
            format!("网格 {} ({:.5}, {:.5})", h.grid_code, h.lat, h.lon)
        } else {
            format!("网格 {}（整个网格）", h.grid_code)
        };
        let level = v1::Level::try_from(h.solvable_at)
            .map_or_else(|_| "?".to_owned(), |l| level_zh(l).to_owned());
        let group = if h.group_name.is_empty() {
            &h.group
        } else {
            &h.group_name
        };
        out.push_str(&format!(
            "{}. {group} · {place} · 得分 {:.2} · 宜由{level}牵头\n   {}\n",
            rank + 1,
            h.score,
            h.summary
        ));
        let months: Vec<String> = h.months.iter().map(|m| m.count.to_string()).collect();
        out.push_str(&format!("   逐月: {}\n", months.join(" ")));
        let terms: Vec<String> = h
            .terms
            .iter()
            .map(|t| format!("{} {:.2}→{:.2}", t.name, t.value, t.points))
            .collect();
        out.push_str(&format!("   评分: {}\n", terms.join(", ")));
        let shown: Vec<&str> = h.incident_ids.iter().take(5).map(String::as_str).collect();
        out.push_str(&format!(
            "   事件: {}{}\n",
            shown.join(" "),
            if h.incident_ids.len() > shown.len() {
                format!(" …共{}起", h.incident_ids.len())
            } else {
                String::new()
            }
        ));
        out.push_str(&format!("   选题: {}\n", h.key));
        if !h.adopted_incident_id.is_empty() {
            out.push_str(&format!(
                "   已立项（主动治理）: {}\n",
                h.adopted_incident_id
            ));
        }
    }
    if answer.stored {
        out.push_str("（本月选题已存档：立项依据的清单不再随历史变化）\n");
    }
    out
}

/// Before and after, month by month.
pub fn render_change(change: &v1::HotspotChange) -> String {
    let months = |counts: &[v1::Count]| {
        counts
            .iter()
            .map(|c| format!("{} {}", c.key, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} · 网格 {} · {}\n之前: {}（月均 {:.2}）\n之后: {}（月均 {:.2}）{}\n",
        change.key,
        change.grid_code,
        change.group,
        months(&change.before),
        change.before_per_month,
        months(&change.after),
        change.after_per_month,
        if change.complete { "" } else { "，统计中" }
    )
}

fn level_zh(level: v1::Level) -> &'static str {
    match level {
        v1::Level::Grid => "网格",
        v1::Level::Community => "社区",
        v1::Level::Street => "街道",
        v1::Level::District => "区县",
        v1::Level::City => "市级",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_date_in_ordos_or_a_time() {
        assert_eq!(
            since("2026-07-15").unwrap().to_rfc3339(),
            "2026-07-14T16:00:00+00:00"
        );
        assert_eq!(
            since("2026-07-15T08:00:00Z").unwrap().to_rfc3339(),
            "2026-07-15T08:00:00+00:00"
        );
        assert!(since("15/07/2026").is_err());
    }

    #[test]
    fn a_topic_reads_with_its_evidence() {
        let answer = v1::ListHotspotsResponse {
            area_code: "150602".into(),
            month: "2026-06".into(),
            from_month: "2024-06".into(),
            to_month: "2026-05".into(),
            reports: 20,
            places: 2,
            hotspots: vec![v1::Hotspot {
                grid_code: "150602001001001".into(),
                has_centre: true,
                lat: 39.81,
                lon: 109.99,
                group: "property".into(),
                group_name: "物业管理".into(),
                solvable_at: v1::Level::Community as i32,
                score: 5.5,
                summary: "【常发】近12个月有5个月上报，共10件（5起事件）".into(),
                months: vec![v1::Count {
                    key: "2026-05".into(),
                    count: 2,
                }],
                incident_ids: (0..7).map(|i| format!("i{i}")).collect(),
                adopted_incident_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                ..Default::default()
            }],
            stored: true,
        };
        let text = render(&answer);
        assert!(text.contains("2026-06 每月一题 · 区域 150602"), "{text}");
        assert!(text.contains("1. 物业管理 · 网格 150602001001001 (39.81000, 109.99000) · 得分 5.50 · 宜由社区牵头"), "{text}");
        assert!(text.contains("事件: i0 i1 i2 i3 i4 …共7起"), "{text}");
        assert!(
            text.contains("已立项（主动治理）: 0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "{text}"
        );
        assert!(text.contains("已存档"), "{text}");
    }
}
