//! `whistle incident ID`: one incident with its tasks, reports and whole timeline, read through
//! the query service's `GetIncident` with the person's token (so a person sees only what its
//! role may: contacts masked where they must be, nothing outside its area).

use anyhow::{bail, Context as _};
use chrono::{DateTime, Local, Utc};
use uuid::Uuid;
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tasks::{IncidentDetail, TaskRow};

use crate::{
    door::{self, QueryClient},
    rows,
    tasks::{countdown, pad, stored_reason_zh, task_status_zh},
    watch::{kind_zh, Names},
    Connection,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Incident id (UUID), or its last digits as `whistle watch` prints them.
    id: String,
}

/// The Chinese label of an incident status as stored.
pub fn status_zh(status: &str) -> &str {
    match status {
        "handling" => "处理中",
        "whistled" => "已吹哨",
        "accepted" => "已报到",
        "resolved" => "已办结·待回访",
        "closed" => "已结案",
        "closed_unverified" => "未回访结案",
        "duplicate" => "重复",
        other => other,
    }
}

fn level_zh(level: &str) -> &str {
    level.parse::<Level>().map(Level::name_zh).unwrap_or(level)
}

fn satisfaction_zh(satisfaction: &str) -> &str {
    match satisfaction {
        "satisfied" => "满意",
        "basically_satisfied" => "基本满意",
        "unsatisfied" => "不满意",
        other => other,
    }
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%H:%M:%S").to_string()
}

fn task_line(task: &TaskRow, names: &Names, now: DateTime<Utc>) -> String {
    let mut detail = vec![format!("派单 {}", time(task.dispatched_at))];
    if let Some(deadline) = task.deadline() {
        let what = if task.status == "accepted" {
            "办结"
        } else {
            "报到"
        };
        detail.push(format!(
            "{what}期限 {} ({})",
            time(deadline.at()),
            countdown(deadline.at(), now)
        ));
    }
    if let (Some(at), Some(holder)) = (task.accepted_at, &task.holder_id) {
        let late = if at > task.accept_due_at {
            " 超时报到"
        } else {
            ""
        };
        detail.push(format!("报到 {} {holder}{late}", time(at)));
    }
    if let Some(at) = task.resolved_at {
        detail.push(format!("办结 {}", time(at)));
    }
    if let Some(reason) = &task.return_reason {
        detail.push(format!("退单: {}", stored_reason_zh(reason)));
    }
    if task.supervised {
        detail.push("督办".into());
    }
    if task.round > 0 {
        detail.push(format!("第{}轮", task.round));
    }
    format!(
        "  {:>2}  {} {}  {}",
        task.task_id,
        pad(
            &format!(
                "{} ({})",
                names.department(&task.department_code),
                task.department_code
            ),
            56
        ),
        pad(task_status_zh(&task.status), 16),
        detail.join(" · ")
    )
}

/// The whole view.
fn render(detail: &IncidentDetail, names: &Names, now: DateTime<Utc>) -> String {
    let i = &detail.incident;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "事件 {}  {} ({}) · {} · version {}{}",
        i.id,
        status_zh(&i.status),
        i.status,
        level_zh(&i.level),
        i.version,
        if i.overdue { " · 已超期" } else { "" }
    ));
    line(format!("「{}」", i.title));
    if !i.description.is_empty() {
        line(format!("  {}", i.description));
    }
    line(format!(
        "类别    {} ({}) · 紧急程度 {} · 政策 {}",
        names.category(&i.category),
        i.category,
        i.urgency,
        i.policy_version
    ));
    let coordinates = match (i.lat, i.lon) {
        (Some(lat), Some(lon)) => format!(" ({lat:.5}, {lon:.5})"),
        _ => String::new(),
    };
    line(format!(
        "地点    {} ({}){}{coordinates}",
        names.place_path(&[
            &i.district_code,
            &i.street_code,
            &i.community_code,
            &i.grid_code
        ]),
        i.grid_code,
        if i.address.is_empty() || i.address == names.place(&i.grid_code) {
            String::new()
        } else {
            format!(" {}", i.address)
        },
    ));
    line(format!(
        "上报    {} by {} · {} 份报告",
        local(i.reported_at),
        i.reporter_id,
        i.report_count
    ));
    let mut clocks = Vec::new();
    if let Some(due) = i.due_at {
        let open = matches!(i.status.as_str(), "handling" | "whistled" | "accepted");
        clocks.push(if open {
            format!("办结期限 {} ({})", local(due), countdown(due, now))
        } else {
            format!("办结期限 {}", local(due))
        });
    }
    if let Some(due) = i.level_due_at {
        clocks.push(format!(
            "{}处置期限 {} ({})",
            level_zh(&i.level),
            local(due),
            countdown(due, now)
        ));
    }
    if !clocks.is_empty() {
        line(format!("时限    {}", clocks.join(" · ")));
    }
    let mut outcome = Vec::new();
    if let Some(at) = i.resolved_at {
        outcome.push(format!("办结 {}", local(at)));
    }
    if let Some(s) = &i.satisfaction {
        outcome.push(format!("回访 {}", satisfaction_zh(s)));
    }
    if i.reopen_count > 0 {
        outcome.push(format!("重办 {} 次", i.reopen_count));
    }
    if let Some(at) = i.closed_at {
        outcome.push(format!("结案 {}", local(at)));
    }
    if let Some(of) = i.duplicate_of {
        outcome.push(format!("重复, 并入 {of}"));
    }
    if !outcome.is_empty() {
        line(format!("结果    {}", outcome.join(" · ")));
    }

    line(format!("任务 ({})", detail.tasks.len()));
    for task in &detail.tasks {
        line(task_line(task, names, now));
    }
    if detail.reports.len() > 1 {
        line(format!("报告 ({})", detail.reports.len()));
        for report in &detail.reports {
            let contact = report
                .contact_masked
                .as_ref()
                .map(|masked| format!("  联系电话 {masked}"))
                .unwrap_or_default();
            line(format!(
                "  {}  {}  {}{contact}",
                time(report.received_at),
                report.reporter_id,
                report.report_id
            ));
        }
    } else if let Some(masked) = detail
        .reports
        .first()
        .and_then(|r| r.contact_masked.as_ref())
    {
        // As whistle-query showed it to this token: only it unmasks, for those who call back.
        line(format!("联系电话 {masked}"));
    }
    line(format!("时间线 ({})", detail.timeline.len()));
    for entry in &detail.timeline {
        let task = entry
            .task_id()
            .and_then(|id| detail.tasks.iter().find(|t| t.task_id == id))
            .map(|t| {
                format!(
                    " 任务{} {}",
                    t.task_id,
                    names.department(&t.department_code)
                )
            })
            .unwrap_or_default();
        let note = if entry.note.is_empty() {
            String::new()
        } else {
            format!(" — {}", entry.note)
        };
        line(format!(
            "  #{:<3} {}  {}{task}  by {}{note}",
            entry.seq,
            local(entry.at),
            pad(kind_zh(&entry.kind), 10),
            entry.actor_id
        ));
    }
    out
}

/// How many incidents (newest first, in the token's area) a suffix is looked for among.
const SUFFIX_SEARCH: usize = 20_000;

/// The incident an argument names: a UUID, or the unique incident among the newest
/// [`SUFFIX_SEARCH`] of the token's area whose id ends with it.
async fn resolve_id(query: &mut QueryClient, arg: &str) -> anyhow::Result<Uuid> {
    let arg = arg.trim();
    if let Ok(id) = arg.parse::<Uuid>() {
        return Ok(id);
    }
    if arg.len() < 6 {
        bail!("{arg:?} is neither an incident id (UUID) nor at least its last 6 digits");
    }
    let mut found = Vec::new();
    let (mut page_token, mut seen) = (String::new(), 0);
    loop {
        let page = query
            .list_incidents(v1::ListIncidentsRequest {
                page_size: 500,
                page_token,
                ..Default::default()
            })
            .await
            .map_err(|status| door::grpc_error("ListIncidents", status))?
            .into_inner();
        seen += page.incidents.len();
        found.extend(
            page.incidents
                .iter()
                .filter(|i| i.incident_id.ends_with(arg))
                .filter_map(|i| i.incident_id.parse::<Uuid>().ok()),
        );
        if page.next_page_token.is_empty() || seen >= SUFFIX_SEARCH || found.len() > 6 {
            break;
        }
        page_token = page.next_page_token;
    }
    match found.as_slice() {
        [] => bail!("no incident id ends with {arg:?}"),
        [one] => Ok(*one),
        many => bail!(
            "{arg:?} matches several incidents, give more digits:\n{}",
            many.iter()
                .map(|id| format!("  {id}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let mut query = conn.query().await?;
    let names = Names::fetch(&mut query).await?;
    let id = resolve_id(&mut query, &args.id).await?;
    let detail = query
        .get_incident(v1::GetIncidentRequest {
            incident_id: id.to_string(),
        })
        .await
        .map_err(|status| door::grpc_error("GetIncident", status))?
        .into_inner();
    let detail = rows::incident(&detail).with_context(|| format!("reading incident {id}"))?;
    print!("{}", render(&detail, &names, Utc::now()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_levels_read_in_chinese() {
        assert_eq!(status_zh("closed_unverified"), "未回访结案");
        assert_eq!(status_zh("whistled"), "已吹哨");
        assert_eq!(level_zh("street"), "街道");
        assert_eq!(level_zh("moon"), "moon");
        assert_eq!(satisfaction_zh("basically_satisfied"), "基本满意");
    }
}
