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
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
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

/// The proposal as an operator reads it: one block a topic, its evidence under it.
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
    }
    out
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
